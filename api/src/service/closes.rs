//! Closing attempts: an app closes its pending attempt; the sweeper closes one past its expiry;
//! an attempt superseded by a newer one is closed at its own channel until the channel confirms.
//! A channel is always closed before paycenter records the close, so a user cannot pay an
//! attempt paycenter already calls closed.

use paycenter_domain::events::ChannelCloseOutcome;
use paycenter_domain::payment::{
    decide_channel_close, AttemptStatus, CloseReason, Order, OrderCommand, OutcomeSource,
};
use paycenter_gateway::{CallbackNotice, ChannelPaymentStatus};
use paycenter_projections::model::PaymentView;

use crate::error::Refusal;
use crate::service::channel_call;
use crate::service::outcomes::record;
use crate::state::AppState;

/// Closes `payment` at its channel (while it is pending there) and records the close.
pub async fn close(
    state: &AppState,
    payment: &PaymentView,
    reason: CloseReason,
) -> Result<(), Refusal> {
    if payment.status == AttemptStatus::Pending {
        let (adapter, params) = state.account_adapter(&payment.channel_account_id)?;
        adapter
            .close_payment(&params, &state.channel_order(payment))
            .await
            .map_err(Refusal::channel_unavailable)?;
    }
    record_close(state, payment, reason).await
}

/// Records the close of an attempt the channel already has closed (or never saw).
pub async fn record_close(
    state: &AppState,
    payment: &PaymentView,
    reason: CloseReason,
) -> Result<(), Refusal> {
    let command = OrderCommand::Close {
        trade_no: payment.trade_no.clone(),
        reason,
    };
    state
        .execute(
            &payment.order_stream,
            &format!("close-{}", payment.trade_no),
            |history, now| Order::from_events(history).decide(&command, now),
        )
        .await
        .map(|_| ())
}

/// One try to close an attempt superseded by a newer one, recorded as
/// `payment.channel_close_attempted` whatever it came to; answers the outcome (a `Failed` one
/// is tried again later).
pub async fn close_abandoned(state: &AppState, payment: &PaymentView) -> ChannelCloseOutcome {
    let (outcome, error) = close_at_channel(state, payment).await;
    let trade_no = payment.trade_no.clone();
    let result = state
        .execute(
            &payment.order_stream,
            &format!("channel-close-{trade_no}-{:016x}", rand::random::<u64>()),
            |history, now| {
                Ok(decide_channel_close(
                    history,
                    &trade_no,
                    outcome,
                    error.clone(),
                    now,
                ))
            },
        )
        .await;
    if let Err(refusal) = result {
        tracing::warn!(code = refusal.code.as_str(), message = %refusal.message, %trade_no, "recording a channel close failed");
    }
    if outcome == ChannelCloseOutcome::Failed {
        tracing::warn!(%trade_no, error = error.as_deref().unwrap_or(""), "closing an abandoned attempt at its channel failed");
    }
    outcome
}

/// Closes at the attempt's own channel; when that fails, asks the channel how the trade stands
/// (a paid one is recorded as paid, which the domain refunds as a duplicate).
async fn close_at_channel(
    state: &AppState,
    payment: &PaymentView,
) -> (ChannelCloseOutcome, Option<String>) {
    let (adapter, params) = match state.account_adapter(&payment.channel_account_id) {
        Ok(found) => found,
        Err(refusal) => return (ChannelCloseOutcome::Failed, Some(refusal.message)),
    };
    let order = state.channel_order(payment);
    let account = &payment.channel_account_id;
    let close = adapter.close_payment(&params, &order);
    let close_error = match channel_call(state, payment.channel, account, "close", close).await {
        Ok(()) => return (ChannelCloseOutcome::Closed, None),
        Err(error) => error.to_string(),
    };
    let query = adapter.query_payment(&params, &order);
    match channel_call(state, payment.channel, account, "query", query).await {
        Ok(ChannelPaymentStatus::Paid {
            channel_trade_no,
            amount,
        }) => {
            let notice = CallbackNotice::PaymentSucceeded {
                trade_no: payment.trade_no.clone(),
                channel_trade_no,
                amount,
            };
            match record(
                state,
                &payment.channel_account_id,
                notice,
                OutcomeSource::Query,
            )
            .await
            {
                Ok(()) => (ChannelCloseOutcome::Paid, Some(close_error)),
                Err(refusal) => (ChannelCloseOutcome::Failed, Some(refusal.message)),
            }
        }
        Ok(ChannelPaymentStatus::Closed | ChannelPaymentStatus::Failed { .. }) => {
            (ChannelCloseOutcome::Closed, Some(close_error))
        }
        // Unknown to the channel (some create a trade only when the user opens its page, which
        // stays possible until expiry): keep trying, as for a pending one.
        Ok(ChannelPaymentStatus::Pending | ChannelPaymentStatus::NotFound) => {
            (ChannelCloseOutcome::Failed, Some(close_error))
        }
        Err(query_error) => (
            ChannelCloseOutcome::Failed,
            Some(format!("{close_error}; query: {query_error}")),
        ),
    }
}
