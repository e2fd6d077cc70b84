//! Payouts: decided on the merchant's payout stream against what it earned (no more than that,
//! whatever runs at once), then paid by the payout submitter under a lease, the outcome
//! recorded once. A failed payout's amount is the merchant's again.

use paycenter_domain::events::{PayoutReceiver, PayoutRequested};
use paycenter_domain::ids::{AppId, ChannelAccountId, MerchantId};
use paycenter_domain::payouts::{self, PayoutOutcome};
use paycenter_domain::reconciliation::{
    reconcile_payouts, PayoutAtChannel, PayoutRecord, PayoutsReconciled, MAX_PAYOUTS_CHECKED,
};
use paycenter_domain::vocabulary::{PayoutReceiverKind, PayoutStatus};
use paycenter_domain::{streams, Money};
use paycenter_gateway::{GatewayError, Secret, Transfer, TransferStatus};
use paycenter_projections::model::PayoutView;

use crate::error::{ErrorCode, Refusal};
use crate::service::{take_lease, Submission};
use crate::state::AppState;

/// A payout submission's lease: a repeated payout id is the same transfer at the channel.
pub const PAYOUT_LEASE_MS: u64 = 30_000;

/// What an operator asks to pay out.
pub struct CreatePayout {
    /// Whose money.
    pub merchant_id: MerchantId,
    /// The account it leaves from.
    pub channel_account_id: ChannelAccountId,
    /// The operator's number for it, unique per merchant.
    pub payout_no: String,
    /// How much.
    pub amount: Money,
    /// Where it goes.
    pub receiver_kind: PayoutReceiverKind,
    /// The receiver's account at the channel.
    pub receiver_account: String,
    /// The receiver's real name, where the channel checks it.
    pub receiver_name: Option<String>,
    /// The app told of the outcome; `None`: every app of the merchant.
    pub app_id: Option<AppId>,
}

/// Decides a payout and answers it (a replay of the same `payout_no` and terms answers the
/// payout recorded first).
pub async fn create(state: &AppState, command: CreatePayout) -> Result<PayoutView, Refusal> {
    payouts::check_payout_no(&command.payout_no).map_err(Refusal::from)?;
    crate::service::known_merchant(&*state.model_for_request()?, &command.merchant_id)?;
    if let Some(app_id) = &command.app_id {
        let serves_merchant = state
            .model_for_request()?
            .apps()
            .get(app_id)
            .is_some_and(|app| app.merchant_ids.contains(&command.merchant_id));
        if !serves_merchant {
            return Err(Refusal::not_found(
                ErrorCode::AppNotFound,
                format!(
                    "app {app_id} not found for merchant {}",
                    command.merchant_id
                ),
            )
            .with_field("app_id"));
        }
    }
    let account = crate::service::accounts::paying_account(
        state,
        &command.merchant_id,
        &command.channel_account_id,
        "a payout",
    )?;
    crate::service::accounts::channel_word(
        account.channel,
        state.channel(account.channel)?.payout_receiver_kinds(),
        command.receiver_kind.as_str(),
        "receiver.type",
        "payouts",
    )?;
    let payout_id = payouts::payout_id(&command.merchant_id, &command.payout_no);
    let decided = PayoutRequested {
        payout_id: payout_id.clone(),
        payout_no: command.payout_no,
        merchant_id: command.merchant_id.clone(),
        channel_account_id: command.channel_account_id,
        channel: account.channel,
        amount: command.amount,
        receiver: PayoutReceiver {
            kind: command.receiver_kind,
            account: command.receiver_account,
            name_sealed: command
                .receiver_name
                .map(|name| state.master_key.seal(&payout_id, name.as_bytes())),
        },
        app_id: command.app_id.clone(),
        requested_at: state.clock.now(),
    };
    let currency = command.amount.currency();
    // Balances that stopped at an event they could not post are no ground to pay out on
    // (503); else they have every event the read model has.
    drop(state.balances().await?);
    state
        .execute(
            &streams::payouts(&command.merchant_id),
            &format!("payout-{}", crate::service::random_hex(8)),
            |history, now| {
                // What the merchant earned, as the ledger has it now: payable + paid out, which
                // payouts do not move, so a payout the ledger has not folded yet is not
                // counted twice; every payout not failed is taken off in the domain.
                let earned = state
                    .balances
                    .lock()
                    .ledger()
                    .earned_payable(&command.merchant_id, currency);
                payouts::request(
                    history,
                    earned,
                    PayoutRequested {
                        requested_at: now,
                        ..decided.clone()
                    },
                )
            },
        )
        .await?;
    state
        .model_for_request()?
        .payout(&payout_id)
        .map_err(Refusal::from)?
        .ok_or_else(|| Refusal::internal("payouts", "a recorded payout is not in the read model"))
}

/// Pays payout `payout_id` at its channel under a lease and records the outcome.
pub async fn submit(state: &AppState, payout_id: &str) -> Submission {
    let payout = match state.model_lock().payout(payout_id) {
        Ok(Some(payout)) => payout,
        Ok(None) => return Submission::NothingToDo,
        Err(error) => return Submission::Failed(error.to_string()),
    };
    if !matches!(
        payout.status,
        PayoutStatus::Pending | PayoutStatus::AwaitingConfirmation
    ) {
        return Submission::NothingToDo;
    }
    let requested = &payout.requested;
    let (adapter, params) = match state.account_adapter(&requested.channel_account_id) {
        Ok(found) => found,
        Err(refusal) => return Submission::Failed(refusal.message),
    };
    if !take_lease(state, &format!("payout:{payout_id}"), PAYOUT_LEASE_MS) {
        return Submission::HeldElsewhere;
    }
    let receiver_name = match &requested.receiver.name_sealed {
        None => None,
        Some(sealed) => match state.master_key.open(payout_id, sealed) {
            Ok(bytes) => Some(Secret::new(String::from_utf8_lossy(&bytes).into_owned())),
            Err(error) => return Submission::Failed(format!("the receiver's name: {error}")),
        },
    };
    let transfer = transfer_of(state, payout_id, requested, receiver_name);
    let call = adapter.transfer(&params, &transfer);
    let outcome = match crate::service::channel_call(
        state,
        requested.channel,
        &requested.channel_account_id,
        "transfer",
        call,
    )
    .await
    {
        Ok(status) => status,
        Err(GatewayError::Refused { reason }) => TransferStatus::Failed { reason },
        // Unknown: the same payout id is asked again later, never paid twice.
        Err(error) => return Submission::Failed(error.to_string()),
    };
    // Waiting on the user: asked about again in a minute, not in seconds (a bill waiting for
    // its user answers plain "pending" to a query).
    let waiting = match outcome {
        TransferStatus::AwaitingConfirmation(_) => true,
        TransferStatus::Pending => payout.status == PayoutStatus::AwaitingConfirmation,
        _ => false,
    };
    match record(state, &requested.merchant_id, payout_id, outcome).await {
        Ok(()) if waiting => Submission::Waiting,
        Ok(()) => Submission::Accepted,
        Err(refusal) => Submission::Failed(format!("recording the payout: {}", refusal.message)),
    }
}

/// The payout as its channel is asked to make it (and, by the reconciliation, about it).
fn transfer_of(
    state: &AppState,
    payout_id: &str,
    requested: &PayoutRequested,
    receiver_name: Option<Secret>,
) -> Transfer {
    Transfer {
        payout_id: payout_id.to_owned(),
        amount: requested.amount,
        receiver_kind: requested.receiver.kind.as_str(),
        receiver_account: requested.receiver.account.clone(),
        receiver_name,
        remark: format!("payout {}", requested.payout_no),
        notify_url: Some(state.notify_url(requested.channel, &requested.channel_account_id)),
    }
}

/// Records what the channel said of payout `payout_id` (by answer, query or callback), once:
/// the same command id whichever way it was heard.
async fn record(
    state: &AppState,
    merchant_id: &MerchantId,
    payout_id: &str,
    status: TransferStatus,
) -> Result<(), Refusal> {
    let (outcome, command_id) = match status {
        TransferStatus::Pending => return Ok(()),
        TransferStatus::Succeeded { channel_payout_no } => (
            PayoutOutcome::Succeeded { channel_payout_no },
            format!("payout-outcome-{payout_id}"),
        ),
        TransferStatus::Failed { reason } => (
            PayoutOutcome::Failed { reason },
            format!("payout-outcome-{payout_id}"),
        ),
        TransferStatus::AwaitingConfirmation(confirmation) => (
            PayoutOutcome::AwaitingConfirmation {
                channel_payout_no: confirmation.channel_payout_no,
                package_info: confirmation.package_info,
                channel_merchant_id: confirmation.channel_merchant_id,
                channel_app_id: confirmation.channel_app_id,
            },
            format!("payout-waiting-{payout_id}"),
        ),
    };
    state
        .execute(
            &streams::payouts(merchant_id),
            &command_id,
            |history, now| {
                Ok(payouts::record_outcome(
                    history,
                    payout_id,
                    outcome.clone(),
                    now,
                ))
            },
        )
        .await
        .map(|_| ())
}

/// Records a payout's outcome the channel reported by callback to account
/// `channel_account_id` (which must be the payout's own).
pub async fn record_reported(
    state: &AppState,
    channel_account_id: &ChannelAccountId,
    payout_id: &str,
    status: TransferStatus,
) -> Result<(), Refusal> {
    let payout = state
        .model_for_request()?
        .payout(payout_id)?
        .ok_or_else(|| not_found(payout_id))?;
    if &payout.requested.channel_account_id != channel_account_id {
        return Err(Refusal::invalid(
            "callback for a payout of another channel account",
        ));
    }
    record(state, &payout.requested.merchant_id, payout_id, status).await
}

/// Asks the channel about each payout of `account` settled in `[from, to)` (at most
/// [`MAX_PAYOUTS_CHECKED`]) and compares: the payouts part of a day's reconciliation.
pub async fn reconcile_day(
    state: &AppState,
    account: &paycenter_domain::events::ChannelAccountActivated,
    from: chrono::DateTime<chrono::Utc>,
    to: chrono::DateTime<chrono::Utc>,
) -> Result<Option<PayoutsReconciled>, Refusal> {
    let settled: Vec<paycenter_projections::model::PayoutView> = {
        let model = state.model_for_request()?;
        let ids = model.payouts_settled_between(
            &account.channel_account_id,
            from,
            to,
            MAX_PAYOUTS_CHECKED,
        )?;
        let mut settled = Vec::with_capacity(ids.len());
        for payout_id in ids {
            settled.extend(model.payout(&payout_id)?);
        }
        settled
    };
    if settled.is_empty() {
        return Ok(None);
    }
    let (adapter, params) = state.account_adapter(&account.channel_account_id)?;
    let mut checked = Vec::with_capacity(settled.len());
    for payout in settled {
        let requested = &payout.requested;
        let transfer = transfer_of(state, &requested.payout_id, requested, None);
        let at_channel = crate::service::channel_call(
            state,
            requested.channel,
            &requested.channel_account_id,
            "query_transfer",
            adapter.query_transfer(&params, &transfer),
        )
        .await
        .map_err(|error| {
            Refusal::new(
                ErrorCode::ChannelUnavailable,
                format!("asking about payout {}: {error}", requested.payout_id),
            )
        })?;
        checked.push((
            PayoutRecord {
                payout_id: requested.payout_id.clone(),
                payout_no: requested.payout_no.clone(),
                amount: requested.amount,
                status: payout.status,
            },
            at_channel.map(|found| PayoutAtChannel {
                status: match found.status {
                    TransferStatus::Succeeded { .. } => PayoutStatus::Succeeded,
                    TransferStatus::Failed { .. } => PayoutStatus::Failed,
                    TransferStatus::Pending => PayoutStatus::Pending,
                    TransferStatus::AwaitingConfirmation(_) => PayoutStatus::AwaitingConfirmation,
                },
                amount: found.amount,
            }),
        ));
    }
    Ok(Some(reconcile_payouts(&checked)))
}

/// The refusal for an unknown payout.
pub fn not_found(payout_id: &str) -> Refusal {
    Refusal::not_found(
        ErrorCode::PayoutNotFound,
        format!("payout {payout_id:?} not found"),
    )
}
