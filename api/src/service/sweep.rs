//! The sweeper's use case: a payment or refund still pending `sweep_after_seconds` after it
//! started is queried at its channel, and the answer recorded exactly as its callback would
//! have been (a lost callback loses nothing); a payment past its expiry that the channel has
//! not seen paid is closed.

use chrono::{DateTime, Utc};
use paycenter_domain::ids::RefundId;
use paycenter_domain::payment::{AttemptStatus, CloseReason, OutcomeSource, RefundStatus};
use paycenter_gateway::{CallbackNotice, ChannelPaymentStatus};
use paycenter_projections::model::PaymentView;

use crate::error::Refusal;
use crate::service::channel_call;
use crate::service::closes::record_close;
use crate::service::outcomes::{record, refund_notice};
use crate::state::AppState;

/// What the sweeper asks about: a payment, or one refund of it.
pub enum SweepItem {
    /// A pending payment.
    Payment(PaymentView),
    /// A pending refund of a paid payment.
    Refund(PaymentView, RefundId),
}

impl SweepItem {
    /// The payment it is of.
    pub fn payment(&self) -> &PaymentView {
        match self {
            SweepItem::Payment(payment) | SweepItem::Refund(payment, _) => payment,
        }
    }

    /// Its key in leases and in the sweeper's memory: the trade number or the refund id.
    pub fn key(&self) -> String {
        match self {
            SweepItem::Payment(payment) => payment.trade_no.to_string(),
            SweepItem::Refund(_, refund_id) => refund_id.to_string(),
        }
    }
}

/// Up to `limit` items pending for at least `sweep_after` at `now` whose key `skip` does not
/// exclude. Read from the read model's sweep queue (oldest first), so a round costs what is
/// overdue, not every payment ever made.
pub fn due(
    state: &AppState,
    now: DateTime<Utc>,
    sweep_after: chrono::Duration,
    limit: usize,
    skip: impl Fn(&str) -> bool,
) -> Vec<SweepItem> {
    // Candidates read per round, past those `skip` excludes (the ones in flight).
    let max_scanned = limit.saturating_mul(4).max(1_024);
    let model = state.model_lock();
    let candidates = model
        .sweep_candidates(now - sweep_after, max_scanned)
        .unwrap_or_else(|error| {
            tracing::error!(%error, "reading the sweep queue failed; trying again next round");
            Vec::new()
        });
    let mut items = Vec::new();
    for trade_no in &candidates {
        if items.len() >= limit {
            break;
        }
        let Ok(Some(payment)) = model.payment(trade_no) else {
            continue;
        };
        match payment.status {
            AttemptStatus::Pending if !skip(payment.trade_no.as_str()) => {
                items.push(SweepItem::Payment(payment.clone()));
            }
            AttemptStatus::Succeeded => {
                for refund in &payment.refunds {
                    if refund.status == RefundStatus::Pending
                        && now - refund.requested_at >= sweep_after
                        && !skip(refund.refund_id.as_str())
                    {
                        items.push(SweepItem::Refund(payment.clone(), refund.refund_id.clone()));
                    }
                }
            }
            _ => {}
        }
    }
    items
}

/// Asks the channel about one item and records the answer.
pub async fn query(state: &AppState, item: &SweepItem) -> Result<(), Refusal> {
    let payment = item.payment();
    let (adapter, params) = state.account_adapter(&payment.channel_account_id)?;
    let order = state.channel_order(payment);
    let record = |notice: CallbackNotice| {
        record(
            state,
            &payment.channel_account_id,
            notice,
            OutcomeSource::Query,
        )
    };
    match item {
        SweepItem::Refund(_, refund_id) => {
            let query = adapter.query_refund(&params, &order, refund_id);
            let status = channel_call(
                state,
                payment.channel,
                &payment.channel_account_id,
                "query",
                query,
            )
            .await
            .map_err(Refusal::channel_unavailable)?;
            if let Some(notice) = refund_notice(&payment.trade_no, refund_id, status) {
                tracing::info!(%refund_id, "sweeper learnt a refund's outcome by query");
                record(notice).await?;
            }
            Ok(())
        }
        SweepItem::Payment(_) => {
            let query = adapter.query_payment(&params, &order);
            let answer = channel_call(
                state,
                payment.channel,
                &payment.channel_account_id,
                "query",
                query,
            )
            .await;
            // For the stuck-payments alert: a pending payment the channel does not answer for.
            match &answer {
                Ok(_) => state
                    .channel_outcomes
                    .query_answered(&payment.channel_account_id),
                Err(_) => state.channel_outcomes.query_failed(
                    &payment.channel_account_id,
                    &payment.trade_no,
                    payment.created_at,
                ),
            }
            let status = answer.map_err(Refusal::channel_unavailable)?;
            let expired = state.clock.now() > payment.expires_at;
            match status {
                ChannelPaymentStatus::Paid {
                    channel_trade_no,
                    amount,
                } => {
                    tracing::info!(trade_no = %payment.trade_no, "sweeper learnt a payment by query");
                    record(CallbackNotice::PaymentSucceeded {
                        trade_no: payment.trade_no.clone(),
                        channel_trade_no,
                        amount,
                    })
                    .await
                }
                ChannelPaymentStatus::Failed { reason } => {
                    record(CallbackNotice::PaymentFailed {
                        trade_no: payment.trade_no.clone(),
                        reason,
                    })
                    .await
                }
                ChannelPaymentStatus::Closed
                | ChannelPaymentStatus::Pending
                | ChannelPaymentStatus::NotFound => {
                    if !expired {
                        return Ok(());
                    }
                    // Past its expiry and not paid: close it at the channel first, so a user
                    // cannot pay it after paycenter records the close.
                    if status != ChannelPaymentStatus::Closed {
                        adapter
                            .close_payment(&params, &order)
                            .await
                            .map_err(Refusal::channel_unavailable)?;
                    }
                    record_close(state, payment, CloseReason::Expired).await
                }
            }
        }
    }
}
