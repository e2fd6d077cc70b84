//! Shares at the channel: a payment's splits paid to their bound receivers (asked for at
//! success for `share: "auto"`, by the app for `"manual"`), submitted by the share submitter
//! under a lease and retried a bounded number of times; and, before a refund of a shared
//! payment, each receiver's share of it taken back.

use paycenter_domain::ids::{RefundId, TradeNo};
use paycenter_domain::payment::sharing::ShareOutcome;
use paycenter_domain::payment::{Order, OrderCommand};
use paycenter_domain::vocabulary::ShareStatus;
use paycenter_gateway::{GatewayError, Receiver, ShareLine, ShareResult};
use paycenter_projections::model::PaymentView;

use crate::error::Refusal;
use crate::service::{take_lease, Submission};
use crate::state::AppState;

/// A share submission's lease: the channel treats a repeated share id as the same share.
pub const SHARE_LEASE_MS: u64 = 30_000;

/// Asks for the share of `payment` (`POST /v1/payments/{trade_no}/share`); asking again while
/// it is pending or done changes nothing.
pub async fn request(state: &AppState, payment: &PaymentView) -> Result<(), Refusal> {
    let trade_no = payment.trade_no.clone();
    state
        .execute(
            &payment.order_stream,
            &format!("share-{trade_no}-{}", crate::service::random_hex(4)),
            |history, now| {
                Order::from_events(history).decide(
                    &OrderCommand::RequestShare {
                        trade_no: trade_no.clone(),
                    },
                    now,
                )
            },
        )
        .await?;
    Ok(())
}

/// The channel's lines of a share: each receiver as bound (its kind and account at the
/// channel). A receiver removed since is an error: the channel would not pay it.
fn share_lines(
    state: &AppState,
    payment: &PaymentView,
    lines: &[(String, paycenter_domain::Money)],
) -> Result<Vec<ShareLine>, String> {
    let model = state.model_lock();
    lines
        .iter()
        .map(|(receiver_id, amount)| {
            let bound = model
                .receiver(&payment.merchant_id, receiver_id)
                .filter(|bound| bound.channel_account_id == payment.channel_account_id)
                .ok_or_else(|| format!("receiver {receiver_id} is no longer bound"))?;
            Ok(ShareLine {
                receiver: Receiver {
                    kind: bound.kind.clone(),
                    account: bound.account.clone(),
                    name: None,
                },
                amount: *amount,
                description: receiver_id.clone(),
            })
        })
        .collect()
}

/// Records what the channel said of share `share_id` of `payment`.
async fn record_outcome(
    state: &AppState,
    payment: &PaymentView,
    share_id: &str,
    outcome: ShareOutcome,
) -> Result<(), Refusal> {
    let trade_no = payment.trade_no.clone();
    // One command id per report kind: a success is recorded once; each failure is its own.
    let command_id = match &outcome {
        ShareOutcome::Shared { .. } => format!("shared-{share_id}"),
        ShareOutcome::Failed { .. } => {
            format!("share-failed-{share_id}-{}", crate::service::random_hex(4))
        }
    };
    state
        .execute(&payment.order_stream, &command_id, |history, now| {
            Order::from_events(history).decide(
                &OrderCommand::RecordShareOutcome {
                    trade_no: trade_no.clone(),
                    share_id: share_id.to_owned(),
                    outcome: outcome.clone(),
                },
                now,
            )
        })
        .await?;
    Ok(())
}

/// Submits the pending share of payment `trade_no` to its channel and records the outcome.
pub async fn submit(state: &AppState, trade_no: &TradeNo) -> Submission {
    let payment = match state.model_lock().payment(trade_no) {
        Ok(Some(payment)) => payment,
        Ok(None) => return Submission::NothingToDo,
        Err(error) => return Submission::Failed(error.to_string()),
    };
    let Some(share) = payment.share.as_ref().filter(|share| {
        share
            .lines
            .iter()
            .all(|line| line.status == ShareStatus::Pending)
    }) else {
        return Submission::NothingToDo;
    };
    let share_id = share.share_id.clone();
    let wanted: Vec<(String, paycenter_domain::Money)> = share
        .lines
        .iter()
        .map(|line| (line.receiver.clone(), line.amount))
        .collect();
    let (adapter, params) = match state.account_adapter(&payment.channel_account_id) {
        Ok(found) => found,
        Err(refusal) => return Submission::Failed(refusal.message),
    };
    if !take_lease(state, &format!("share:{trade_no}"), SHARE_LEASE_MS) {
        return Submission::HeldElsewhere;
    }
    let outcome = match share_lines(state, &payment, &wanted) {
        Err(reason) => ShareOutcome::Failed {
            reason,
            definite: true,
        },
        Ok(lines) => {
            let order = state.channel_order(&payment);
            let call = adapter.share_payment(&params, &order, &share_id, &lines);
            match crate::service::channel_call(
                state,
                payment.channel,
                &payment.channel_account_id,
                "share",
                call,
            )
            .await
            {
                Ok(ShareResult::Shared { channel_share_no }) => {
                    ShareOutcome::Shared { channel_share_no }
                }
                // Taken, not settled: asked again on a later round.
                Ok(ShareResult::Pending) => return Submission::Accepted,
                Ok(ShareResult::Failed { reason }) => ShareOutcome::Failed {
                    reason,
                    definite: true,
                },
                Err(GatewayError::Refused { reason }) => ShareOutcome::Failed {
                    reason,
                    definite: true,
                },
                Err(error) => ShareOutcome::Failed {
                    reason: error.to_string(),
                    definite: false,
                },
            }
        }
    };
    let failed = matches!(outcome, ShareOutcome::Failed { .. });
    if let Err(refusal) = record_outcome(state, &payment, &share_id, outcome).await {
        return Submission::Failed(format!("recording the share failed: {}", refusal.message));
    }
    if failed {
        // Recorded; a failure that will be retried waits for the submitter's backoff.
        return Submission::Failed(format!("share {share_id} failed at the channel"));
    }
    Submission::Accepted
}

/// Why receivers' shares of a refund were not taken back.
#[derive(Debug)]
pub enum ReturnFailure {
    /// Not now (the share still settling, the channel unreachable): the refund waits.
    Retry(String),
    /// The channel will not take it back: the refund cannot be made as divided.
    Refused(String),
}

/// Before refund `refund_id` of a shared payment goes to the channel: each receiver gives back
/// its share of the refund there, then that is recorded. A channel that takes shares back
/// within the refund itself (Alipay) is asked nothing here: the lines go with the refund, and
/// the return is recorded with the refund's success. Answers the lines (decided now or on an
/// earlier try); nothing when the payment was not shared.
pub async fn return_for_refund(
    state: &AppState,
    payment: &PaymentView,
    refund_id: &RefundId,
) -> Result<Vec<ShareLine>, ReturnFailure> {
    let Some(share) = &payment.share else {
        return Ok(Vec::new());
    };
    if share
        .lines
        .iter()
        .any(|line| line.status == ShareStatus::Pending)
    {
        return Err(ReturnFailure::Retry(format!(
            "payment {} is being shared at the channel; its refund waits for the share to settle",
            payment.trade_no
        )));
    }
    let command = OrderCommand::RecordShareReturn {
        trade_no: payment.trade_no.clone(),
        refund_id: refund_id.clone(),
    };
    // What is to be given back, as the domain decides it (recorded only once given back).
    let retry = ReturnFailure::Retry;
    let loaded = state
        .load_stream(&payment.order_stream)
        .map_err(|refusal| retry(refusal.message))?;
    let decided = Order::from_events(&loaded.events)
        .decide(&command, state.clock.now())
        .map_err(|error| retry(error.to_string()))?;
    let Some(paycenter_domain::Event::PaymentShareReturned(returned)) = decided.first() else {
        // Given back on an earlier try (or nothing to give back): what was recorded.
        let recorded = loaded.events.iter().find_map(|event| match event {
            paycenter_domain::Event::PaymentShareReturned(returned)
                if &returned.refund_id == refund_id =>
            {
                Some(returned)
            }
            _ => None,
        });
        let Some(recorded) = recorded else {
            return Ok(Vec::new());
        };
        let wanted: Vec<(String, paycenter_domain::Money)> = recorded
            .lines
            .iter()
            .map(|line| (line.receiver.clone(), line.amount))
            .collect();
        return share_lines(state, payment, &wanted).map_err(ReturnFailure::Refused);
    };
    let wanted: Vec<(String, paycenter_domain::Money)> = returned
        .lines
        .iter()
        .map(|line| (line.receiver.clone(), line.amount))
        .collect();
    let lines = share_lines(state, payment, &wanted).map_err(ReturnFailure::Refused)?;
    let (adapter, params) = state
        .account_adapter(&payment.channel_account_id)
        .map_err(|refusal| retry(refusal.message))?;
    if adapter.returns_shares_within_refund() {
        // Sent with the refund; recorded with its success (the domain adds the return then).
        return Ok(lines);
    }
    let order = state.channel_order(payment);
    for (line_idx, line) in lines.iter().enumerate() {
        // One return per refund and receiver: the same id is the same return at the channel.
        let return_id = format!("{}R{line_idx}", refund_id.as_str().replace('_', ""));
        let call = adapter.return_share(&params, &order, &share.share_id, &return_id, line);
        crate::service::channel_call(
            state,
            payment.channel,
            &payment.channel_account_id,
            "return_share",
            call,
        )
        .await
        .map_err(|error| {
            let why = format!("taking {}'s share back: {error}", line.description);
            match error {
                GatewayError::Refused { .. } => ReturnFailure::Refused(why),
                _ => ReturnFailure::Retry(why),
            }
        })?;
    }
    state
        .execute(
            &payment.order_stream,
            &format!("share-returned-{refund_id}"),
            |history, now| Order::from_events(history).decide(&command, now),
        )
        .await
        .map_err(|refusal| retry(refusal.message))?;
    Ok(lines)
}
