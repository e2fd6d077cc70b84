//! Payouts: decided on the merchant's payout stream against what it earned (no more than that,
//! whatever runs at once), then paid by the payout submitter under a lease, the outcome
//! recorded once. A failed payout's amount is the merchant's again.

use paycenter_domain::events::{PayoutReceiver, PayoutRequested};
use paycenter_domain::ids::{ChannelAccountId, MerchantId};
use paycenter_domain::payouts::{self, PayoutOutcome};
use paycenter_domain::vocabulary::PayoutReceiverKind;
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
}

/// Decides a payout and answers it (a replay of the same `payout_no` and terms answers the
/// payout recorded first).
pub async fn create(state: &AppState, command: CreatePayout) -> Result<PayoutView, Refusal> {
    payouts::check_payout_no(&command.payout_no).map_err(Refusal::from)?;
    crate::service::known_merchant(&*state.read_model()?, &command.merchant_id)?;
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
        requested_at: state.clock.now(),
    };
    let currency = command.amount.currency();
    // Balances that stopped at an event they could not post are no ground to pay out on.
    if let Some(stopped) = state.read_model()?.ledger_stopped() {
        return Err(Refusal::read_model_unavailable(format!(
            "the balances projection stopped at position {} ({}): no payout until it runs again",
            stopped.position, stopped.event_type
        )));
    }
    state
        .execute(
            &streams::payouts(&command.merchant_id),
            &format!("payout-{}", crate::service::random_hex(8)),
            |history, now| {
                // What the merchant earned, as the ledger has it now: payable + paid out, which
                // payouts do not move, so a payout the ledger has not folded yet is not
                // counted twice; every payout not failed is taken off in the domain.
                let earned = state
                    .model_lock()
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
        .read_model()?
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
    if payout.status != paycenter_domain::vocabulary::PayoutStatus::Pending {
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
    let transfer = Transfer {
        payout_id: payout_id.to_owned(),
        amount: requested.amount,
        receiver_kind: requested.receiver.kind.as_str(),
        receiver_account: requested.receiver.account.clone(),
        receiver_name,
        remark: format!("payout {}", requested.payout_no),
    };
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
        Ok(TransferStatus::Succeeded { channel_payout_no }) => {
            PayoutOutcome::Succeeded { channel_payout_no }
        }
        Ok(TransferStatus::Pending) => return Submission::Accepted,
        Ok(TransferStatus::Failed { reason }) | Err(GatewayError::Refused { reason }) => {
            PayoutOutcome::Failed { reason }
        }
        // Unknown: the same payout id is asked again later, never paid twice.
        Err(error) => return Submission::Failed(error.to_string()),
    };
    let recorded = state
        .execute(
            &streams::payouts(&requested.merchant_id),
            &format!("payout-outcome-{payout_id}"),
            |history, now| {
                Ok(payouts::record_outcome(
                    history,
                    payout_id,
                    outcome.clone(),
                    now,
                ))
            },
        )
        .await;
    match recorded {
        Ok(_) => Submission::Accepted,
        Err(refusal) => Submission::Failed(format!("recording the payout: {}", refusal.message)),
    }
}

/// The refusal for an unknown payout.
pub fn not_found(payout_id: &str) -> Refusal {
    Refusal::not_found(
        ErrorCode::PayoutNotFound,
        format!("payout {payout_id:?} not found"),
    )
}
