//! Split receivers: bound at the channel first (WeChat Pay's `receivers/add`, Alipay's
//! `royalty.relation.bind`), recorded once the channel took them; unbound there before their
//! removal is recorded. A payment's split may then name a receiver, and its share is paid to
//! it at the channel.

use paycenter_domain::events::{Event, ReceiverBound};
use paycenter_domain::ids::{ChannelAccountId, MerchantId};
use paycenter_domain::{receivers, streams};
use paycenter_gateway::{GatewayError, Receiver, Secret};

use crate::error::{ErrorCode, Refusal};
use crate::state::AppState;

/// What an operator asks to bind.
pub struct BindReceiver {
    /// The merchant whose payments will share with it.
    pub merchant_id: MerchantId,
    /// The account (of that merchant) it is bound under.
    pub channel_account_id: ChannelAccountId,
    /// The id splits name it by.
    pub receiver_id: String,
    /// The channel's word for its type.
    pub kind: String,
    /// Its account at the channel.
    pub account: String,
    /// Its real name, where the channel checks it.
    pub name: Option<String>,
}

/// A channel's answer to a receiver call, as a refusal: the channel's own refusal is 422.
fn channel_refusal(error: GatewayError) -> Refusal {
    match error {
        GatewayError::Refused { reason } => Refusal::new(ErrorCode::ChannelRefused, reason),
        other => Refusal::channel_unavailable(other),
    }
}

/// Binds a receiver at the channel and records it; answers it (binding the same receiver the
/// same way again answers the one recorded, without asking the channel).
pub async fn bind(state: &AppState, command: BindReceiver) -> Result<ReceiverBound, Refusal> {
    receivers::check_receiver_id(&command.receiver_id).map_err(Refusal::from)?;
    let n_bound = {
        let model = state.model_for_request()?;
        crate::service::known_merchant(&model, &command.merchant_id)?;
        model.receivers(&command.merchant_id).len()
    };
    let account = crate::service::accounts::paying_account(
        state,
        &command.merchant_id,
        &command.channel_account_id,
        "a receiver",
    )?;
    let adapter = state.channel(account.channel)?;
    crate::service::accounts::channel_word(
        account.channel,
        adapter.receiver_kinds(),
        &command.kind,
        "type",
        "sharing",
    )?;
    let decided = ReceiverBound {
        merchant_id: command.merchant_id.clone(),
        receiver_id: command.receiver_id.clone(),
        channel_account_id: command.channel_account_id.clone(),
        kind: command.kind.clone(),
        account: command.account.clone(),
        name_sealed: command.name.as_ref().map(|name| {
            state.master_key.seal(
                &format!("receiver-{}", command.receiver_id),
                name.as_bytes(),
            )
        }),
        bound_at: state.clock.now(),
    };
    // Decided before the channel is asked: a replay or a conflict never reaches it.
    let stream = streams::receiver(&decided.merchant_id, &decided.receiver_id);
    let history = state.load_stream(&stream)?.events;
    if receivers::bind(&history, n_bound, decided.clone())?.is_empty() {
        return Ok(receivers::current(&history)
            .cloned()
            .expect("a replay has what it replays"));
    }
    let params = state.channel_params(&account)?;
    let receiver = Receiver {
        kind: command.kind,
        account: command.account,
        name: command.name.map(Secret::new),
    };
    crate::service::channel_call(
        state,
        account.channel,
        &account.channel_account_id,
        "bind_receiver",
        adapter.bind_receiver(&params, &receiver),
    )
    .await
    .map_err(channel_refusal)?;
    let (events, _) = state
        .execute(
            &stream,
            &format!("bind-{}", crate::service::random_hex(8)),
            |history, now| {
                receivers::bind(
                    history,
                    n_bound,
                    ReceiverBound {
                        bound_at: now,
                        ..decided.clone()
                    },
                )
            },
        )
        .await?;
    let recorded = events.into_iter().find_map(|event| match event {
        Event::ReceiverBound(bound) => Some(bound),
        _ => None,
    });
    Ok(recorded.unwrap_or(decided))
}

/// Unbinds a receiver at the channel and records its removal; answers what was bound.
pub async fn remove(
    state: &AppState,
    merchant_id: &MerchantId,
    receiver_id: &str,
) -> Result<ReceiverBound, Refusal> {
    let not_found = || {
        Refusal::not_found(
            ErrorCode::ReceiverNotFound,
            format!("merchant {merchant_id} has no receiver {receiver_id:?}"),
        )
    };
    let bound = state
        .model_for_request()?
        .receiver(merchant_id, receiver_id)
        .cloned()
        .ok_or_else(not_found)?;
    let account = state
        .channel_account(&bound.channel_account_id)
        .ok_or_else(not_found)?;
    let adapter = state.channel(account.channel)?;
    let params = state.channel_params(&account)?;
    let receiver = Receiver {
        kind: bound.kind.clone(),
        account: bound.account.clone(),
        name: None,
    };
    match crate::service::channel_call(
        state,
        account.channel,
        &account.channel_account_id,
        "unbind_receiver",
        adapter.unbind_receiver(&params, &receiver),
    )
    .await
    {
        // A channel that no longer knows it has nothing to unbind.
        Ok(()) | Err(GatewayError::Refused { .. }) => {}
        Err(error) => return Err(Refusal::channel_unavailable(error)),
    }
    let (events, _) = state
        .execute(
            &streams::receiver(merchant_id, receiver_id),
            &format!("unbind-{}", crate::service::random_hex(8)),
            receivers::remove,
        )
        .await?;
    if !events
        .iter()
        .any(|event| matches!(event, Event::ReceiverRemoved(_)))
    {
        return Err(not_found());
    }
    Ok(bound)
}
