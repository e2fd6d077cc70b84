//! Refunds: an app asks for one (decided and recorded at once), then it is submitted to the
//! attempt's channel (the refund submitter does that, after a restart too) and its outcome
//! recorded when the channel tells it.

use paycenter_domain::ids::{RefundId, RefundNo};
use paycenter_domain::payment::{app_refund_id, Order, OrderCommand, OutcomeSource};
use paycenter_domain::Money;
use paycenter_projections::model::PaymentView;

use crate::error::Refusal;
use crate::service::outcomes::{record, refund_notice, refund_target};
use crate::service::shares::ReturnFailure;
use crate::service::{take_lease, Submission};
use crate::state::AppState;

/// A refund submission's lease; channels treat a repeated refund id as the same refund, so a
/// second submission after a crash is harmless.
pub const REFUND_LEASE_MS: u64 = 30_000;

/// What an app asks to refund.
pub struct RequestRefund {
    /// The app's refund number (unique per payment).
    pub refund_no: RefundNo,
    /// How much, in the payment's currency.
    pub amount: Money,
    /// Why, for the channel and the user.
    pub reason: String,
}

/// Records an app's refund of `payment` (the domain keeps refunds within what was paid, in
/// the payment's currency) and answers its id. The same request again decides the same refund and appends nothing.
pub async fn request(
    state: &AppState,
    payment: &PaymentView,
    request: RequestRefund,
) -> Result<RefundId, Refusal> {
    let refund_id = app_refund_id(&payment.trade_no, &request.refund_no);
    let command = OrderCommand::RequestRefund {
        trade_no: payment.trade_no.clone(),
        refund_id: refund_id.clone(),
        refund_no: request.refund_no,
        amount: request.amount,
        reason: request.reason,
    };
    state
        .execute(
            &payment.order_stream,
            &format!("refund-{refund_id}"),
            |history, now| Order::from_events(history).decide(&command, now),
        )
        .await?;
    Ok(refund_id)
}

/// Submits refund `refund_id` to its channel under a lease, and records the outcome when the
/// channel answers it at once (Alipay, Stripe), as its callback would have.
pub async fn submit(state: &AppState, refund_id: &RefundId) -> Submission {
    let found = {
        let model = state.model_lock();
        let payment = match model.payment_of_refund(refund_id) {
            Ok(payment) => payment,
            Err(error) => return Submission::Failed(error.to_string()),
        };
        payment.and_then(|payment| {
            let target = refund_target(&payment, refund_id)?;
            let account = model.channel_accounts().get(&target.channel_account_id)?;
            Some((payment.clone(), target, account.clone()))
        })
    };
    let Some((payment, target, account)) = found else {
        return Submission::NothingToDo;
    };
    let adapter = match state.channel(account.channel) {
        Ok(adapter) => adapter,
        Err(refusal) => return Submission::Failed(refusal.message),
    };
    let params = match state.channel_params(&account) {
        Ok(params) => params,
        Err(refusal) => return Submission::Failed(refusal.message),
    };
    if !take_lease(state, &format!("refund:{refund_id}"), REFUND_LEASE_MS) {
        return Submission::HeldElsewhere;
    }
    // A shared payment's receivers give their shares of the refund back first.
    let mut share_returns = Vec::new();
    if target.reported.is_none() {
        match crate::service::shares::return_for_refund(state, &payment, refund_id).await {
            Ok(lines) => share_returns = lines,
            Err(ReturnFailure::Retry(why)) => return Submission::Failed(why),
            Err(ReturnFailure::Refused(why)) => {
                // The receivers' part cannot come back: the refund fails, as a channel's
                // refusal would, and the app hears refund.failed with the reason.
                let notice = paycenter_gateway::CallbackNotice::RefundFailed {
                    trade_no: payment.trade_no.clone(),
                    refund_id: refund_id.clone(),
                    reason: why,
                };
                return record_answer(state, &target.channel_account_id, notice).await;
            }
        }
    }
    let mut order = target.channel_order(state, &payment);
    order.share_returns = share_returns;
    let refund = adapter.refund(&params, &order, refund_id, target.amount);
    let status = match crate::service::channel_call(
        state,
        account.channel,
        &account.channel_account_id,
        "refund",
        refund,
    )
    .await
    {
        Ok(status) => status,
        Err(error) => return Submission::Failed(error.to_string()),
    };
    let Some(notice) = refund_notice(&payment.trade_no, refund_id, status) else {
        return Submission::Accepted;
    };
    record_answer(state, &target.channel_account_id, notice).await
}

/// Records a refund's outcome known at submission (the channel's answer, or a refusal before
/// it was asked), as its callback would have been.
async fn record_answer(
    state: &AppState,
    channel_account_id: &paycenter_domain::ids::ChannelAccountId,
    notice: paycenter_gateway::CallbackNotice,
) -> Submission {
    match record(state, channel_account_id, notice, OutcomeSource::Query).await {
        Ok(()) => Submission::Accepted,
        Err(refusal) => {
            Submission::Failed(format!("recording the outcome failed: {}", refusal.message))
        }
    }
}
