//! Recording what a channel reported, by callback or in answer to a query, and where each
//! refund is sent. The callback handler, the sweeper, the refund submitter and the channel
//! closer all record outcomes here, with the same command ids, so a fact heard twice is
//! recorded once.

use paycenter_domain::ids::{ChannelAccountId, RefundId};
use paycenter_domain::payment::{Order, OrderCommand, OutcomeSource};
use paycenter_gateway::CallbackNotice;

use crate::error::{ErrorCode, Refusal};
use crate::state::AppState;

/// Where and how much a refund gives back: an app's or automatic refund at the payment's own
/// account, or an anomaly's reported money at the account that reported it.
pub struct RefundTarget {
    /// The account the refund is asked of.
    pub channel_account_id: ChannelAccountId,
    /// How much it gives back.
    pub amount: paycenter_domain::Money,
    /// The payment as the channel knows it: for an anomaly, the money the channel reported
    /// under its own trade number.
    pub reported: Option<(
        paycenter_domain::ids::ChannelTradeNo,
        paycenter_domain::Money,
    )>,
}

impl RefundTarget {
    /// The payment as the refund's channel call names it.
    pub fn channel_order(
        &self,
        state: &AppState,
        payment: &paycenter_projections::model::PaymentView,
    ) -> paycenter_gateway::ChannelOrder {
        let mut order = state.channel_order(payment);
        if let Some((channel_trade_no, reported_amount)) = &self.reported {
            order.channel_trade_no = Some(channel_trade_no.clone());
            order.amount = *reported_amount;
            order.notify_url = state.notify_url(payment.channel, &self.channel_account_id);
        }
        order
    }
}

/// The refund `refund_id` of `payment`, wherever it lives.
pub fn refund_target(
    payment: &paycenter_projections::model::PaymentView,
    refund_id: &RefundId,
) -> Option<RefundTarget> {
    if let Some(refund) = payment
        .refunds
        .iter()
        .find(|refund| &refund.refund_id == refund_id)
    {
        return Some(RefundTarget {
            channel_account_id: payment.channel_account_id.clone(),
            amount: refund.amount,
            reported: None,
        });
    }
    let anomaly = payment
        .anomalies
        .iter()
        .find(|anomaly| &anomaly.refund_id == refund_id)?;
    Some(RefundTarget {
        channel_account_id: anomaly.channel_account_id.clone(),
        amount: anomaly.reported_amount,
        reported: Some((anomaly.channel_trade_no.clone(), anomaly.reported_amount)),
    })
}

/// Records what a channel reported, by callback or in answer to a query: the same commands,
/// with the same command ids, so hearing a fact twice records it once.
pub async fn record(
    state: &AppState,
    channel_account_id: &ChannelAccountId,
    notice: CallbackNotice,
    source: OutcomeSource,
) -> Result<(), Refusal> {
    let trade_no = match &notice {
        CallbackNotice::PaymentSucceeded { trade_no, .. }
        | CallbackNotice::PaymentFailed { trade_no, .. }
        | CallbackNotice::RefundSucceeded { trade_no, .. }
        | CallbackNotice::RefundFailed { trade_no, .. } => trade_no.clone(),
        CallbackNotice::Unknown { kind } => {
            tracing::info!(kind, "callback of an unhandled kind acknowledged");
            return Ok(());
        }
        CallbackNotice::PayoutReported { payout_id, status } => {
            return crate::service::payouts::record_reported(
                state,
                channel_account_id,
                payout_id,
                status.clone(),
            )
            .await;
        }
    };
    let (stream_id, attempt_account_id, attempt_amount) = {
        let model = state.model_for_request()?;
        let payment = model.payment(&trade_no)?.ok_or_else(|| {
            Refusal::not_found(
                ErrorCode::PaymentNotFound,
                format!("payment {trade_no} not found"),
            )
        })?;
        // A payment report from another account is an anomaly the domain records; anything
        // else must come from the account the payment (or the refund) belongs to.
        let reporter_may_speak = match &notice {
            CallbackNotice::PaymentSucceeded { .. } => true,
            CallbackNotice::RefundSucceeded { refund_id, .. }
            | CallbackNotice::RefundFailed { refund_id, .. } => refund_target(&payment, refund_id)
                .is_none_or(|target| &target.channel_account_id == channel_account_id),
            _ => &payment.channel_account_id == channel_account_id,
        };
        if !reporter_may_speak {
            return Err(Refusal::invalid(
                "callback for a payment of another channel account",
            ));
        }
        (
            payment.order_stream.clone(),
            payment.channel_account_id.clone(),
            payment.amount,
        )
    };
    let (command, command_id) = match notice {
        CallbackNotice::PaymentSucceeded {
            trade_no,
            channel_trade_no,
            amount,
        } => {
            // A report that agrees with the attempt keeps the id it always had; one that
            // contradicts it gets an id of its own, so a later genuine report is not mistaken
            // for a replay of it.
            let command_id =
                if &attempt_account_id == channel_account_id && attempt_amount == amount {
                    format!("paid-{trade_no}")
                } else {
                    format!(
                        "anomaly-{}",
                        paycenter_domain::payment::anomaly_refund_id(
                            &trade_no,
                            channel_account_id,
                            &channel_trade_no,
                            amount
                        )
                    )
                };
            (
                OrderCommand::RecordSuccess {
                    trade_no,
                    channel_account_id: channel_account_id.clone(),
                    channel_trade_no,
                    amount,
                    source,
                },
                command_id,
            )
        }
        CallbackNotice::PaymentFailed { trade_no, reason } => {
            let command_id = format!("failed-{trade_no}");
            (
                OrderCommand::RecordFailure {
                    trade_no,
                    reason,
                    source,
                },
                command_id,
            )
        }
        CallbackNotice::RefundSucceeded {
            trade_no,
            refund_id,
            channel_refund_no,
        } => {
            let command_id = format!("refunded-{refund_id}");
            (
                OrderCommand::RecordRefundSuccess {
                    trade_no,
                    refund_id,
                    channel_refund_no: Some(channel_refund_no),
                },
                command_id,
            )
        }
        CallbackNotice::RefundFailed {
            trade_no,
            refund_id,
            reason,
        } => {
            let command_id = format!("refund-failed-{refund_id}");
            (
                OrderCommand::RecordRefundFailure {
                    trade_no,
                    refund_id,
                    reason,
                },
                command_id,
            )
        }
        CallbackNotice::Unknown { .. } | CallbackNotice::PayoutReported { .. } => {
            unreachable!("handled above")
        }
    };
    state
        .execute(&stream_id, &command_id, |history, now| {
            Order::from_events(history).decide(&command, now)
        })
        .await?;
    Ok(())
}

/// A settled refund status as the notice a callback would have brought; `None` while pending.
pub fn refund_notice(
    trade_no: &paycenter_domain::ids::TradeNo,
    refund_id: &RefundId,
    status: paycenter_gateway::RefundStatus,
) -> Option<CallbackNotice> {
    use paycenter_gateway::RefundStatus;
    match status {
        RefundStatus::Pending => None,
        RefundStatus::Succeeded { channel_refund_no } => Some(CallbackNotice::RefundSucceeded {
            trade_no: trade_no.clone(),
            refund_id: refund_id.clone(),
            channel_refund_no,
        }),
        RefundStatus::Failed { reason } => Some(CallbackNotice::RefundFailed {
            trade_no: trade_no.clone(),
            refund_id: refund_id.clone(),
            reason,
        }),
    }
}
