//! Activating a merchant's channel account, or activating it again with new parameters (a key
//! rotation): the parameters are checked by the channel's adapter and, where the channel can
//! tell a wrong account without moving money, by the channel itself, then sealed under the
//! master key and recorded as `channel_account.activated`.

use paycenter_domain::events::{ChannelAccountActivated, Event};
use paycenter_domain::ids::{ChannelAccountId, MerchantId};
use paycenter_domain::payment::Channel;
use paycenter_domain::vocabulary::AccountMode;
use paycenter_domain::{registry, streams, Rate};
use serde_json::{json, Map, Value};

use crate::error::{ErrorCode, Refusal};
use crate::state::AppState;
use crate::wire::{check_fields, FieldLimit};

/// The longest channel parameter (PEM keys are a few KiB).
pub const MAX_PARAM_CHARS: usize = 16_384;

/// What an operator asks for, read from the request.
pub struct ActivateAccount {
    /// The merchant.
    pub merchant_id: MerchantId,
    /// The account activated again, for a rotation; `None` for a new account.
    pub existing: Option<ChannelAccountId>,
    /// The channel; a rotation may leave it out (it keeps its channel).
    pub channel: Option<Channel>,
    /// The channel's parameters, as given (checked here against the adapter's names).
    pub params: Map<String, Value>,
    /// The platform's fee rate.
    pub fee_rate: Rate,
    /// Callback addresses allowed; `None` keeps the account's (none for a new one).
    pub callback_ip_allowlist: Option<Vec<String>>,
    /// The bill's UTC offset in minutes; `None` keeps the account's.
    pub bill_utc_offset_minutes: Option<i32>,
    /// Direct, provider or sub-merchant; `None` keeps the account's (direct for a new one).
    pub mode: Option<AccountMode>,
    /// A sub-merchant's provider; `None` keeps the account's.
    pub provider_account_id: Option<ChannelAccountId>,
}

/// An activation recorded.
pub struct Activated {
    /// What was recorded (the parameters sealed).
    pub activation: ChannelAccountActivated,
    /// Whether the account is new (else rotated).
    pub is_new: bool,
}

/// Activates (or activates again) a channel account.
pub async fn activate(state: &AppState, command: ActivateAccount) -> Result<Activated, Refusal> {
    let ActivateAccount {
        merchant_id,
        existing,
        channel,
        params,
        fee_rate,
        callback_ip_allowlist,
        bill_utc_offset_minutes,
        mode,
        provider_account_id,
    } = command;
    crate::service::known_merchant(&*state.model_for_request()?, &merchant_id)?;
    let existing = match existing {
        None => None,
        Some(channel_account_id) => Some(
            state
                .channel_account(&channel_account_id)
                .filter(|account| account.merchant_id == merchant_id)
                .ok_or_else(|| {
                    Refusal::not_found(
                        ErrorCode::ChannelAccountNotFound,
                        format!(
                            "merchant {merchant_id} has no channel account {channel_account_id}"
                        ),
                    )
                })?,
        ),
    };
    let channel = match (&existing, channel) {
        (Some(account), Some(channel)) if account.channel != channel => {
            return Err(Refusal::new(
                ErrorCode::ChannelMismatch,
                "a channel account keeps its channel; activate a new account for another channel",
            ))
        }
        (_, Some(channel)) => channel,
        (Some(account), None) => account.channel,
        (None, None) => return Err(Refusal::invalid("channel is required").with_field("channel")),
    };
    let callback_ip_allowlist = callback_ip_allowlist.unwrap_or_else(|| {
        existing
            .as_ref()
            .map(|account| account.callback_ip_allowlist.clone())
            .unwrap_or_default()
    });
    let bill_utc_offset_minutes = bill_utc_offset_minutes.or_else(|| {
        existing
            .as_ref()
            .and_then(|account| account.bill_utc_offset_minutes)
    });
    let mode = mode
        .or_else(|| existing.as_ref().map(|account| account.mode))
        .unwrap_or_default();
    let provider_account_id = provider_account_id.or_else(|| {
        existing
            .as_ref()
            .and_then(|account| account.provider_account_id.clone())
    });
    let provider = provider_account_id
        .as_ref()
        .and_then(|provider_account_id| state.channel_account(provider_account_id));
    let channel_account_id = existing
        .as_ref()
        .map(|account| account.channel_account_id.clone())
        .unwrap_or_else(|| ChannelAccountId::from_entropy(rand::random::<u128>()));
    let activation = |params: &Value| ChannelAccountActivated {
        channel_account_id: channel_account_id.clone(),
        merchant_id: merchant_id.clone(),
        channel,
        params_sealed: state
            .master_key
            .seal(channel_account_id.as_str(), params.to_string().as_bytes()),
        fee_rate,
        callback_ip_allowlist: callback_ip_allowlist.clone(),
        bill_utc_offset_minutes,
        mode,
        provider_account_id: provider_account_id.clone(),
        activated_at: state.clock.now(),
    };
    let adapter = state.channel(channel)?;
    if mode != AccountMode::Direct && adapter.sub_merchant_param_names().is_empty() {
        return Err(Refusal::new(
            ErrorCode::InvalidAccountMode,
            format!("{channel} has no provider mode in paycenter; activate a direct account"),
        )
        .with_field("mode"));
    }
    if mode == AccountMode::SubMerchant {
        let known_params: Vec<FieldLimit> = adapter
            .sub_merchant_param_names()
            .iter()
            .map(|name| (*name, MAX_PARAM_CHARS))
            .collect();
        check_fields(&params, "params.", &known_params)?;
        // Only the ids the channel assigned: the keys are the provider's, read at every call.
        let mut params = adapter
            .validate_sub_merchant_params(&Value::Object(params))
            .map_err(|error| Refusal::new(ErrorCode::InvalidChannelParams, error.to_string()))?;
        let Some(provider_account) = &provider else {
            return Err(match &provider_account_id {
                Some(provider_account_id) => Refusal::not_found(
                    ErrorCode::ChannelAccountNotFound,
                    format!("provider channel account {provider_account_id} not found"),
                ),
                None => Refusal::new(
                    ErrorCode::InvalidAccountMode,
                    "a sub_merchant account needs provider_account_id",
                )
                .with_field("provider_account_id"),
            });
        };
        if provider_account.mode == AccountMode::Provider && provider_account.channel == channel {
            // Asked of the channel with the provider's keys, as every later call will be.
            let acting = crate::channel_params::acting_for(
                &*state.channel_params(provider_account)?,
                &params,
            );
            let learned = adapter
                .verify_sub_merchant(&acting)
                .await
                .map_err(channel_refused)?;
            if let Some(ids) = params.as_object_mut() {
                ids.extend(learned);
            }
        }
        return record(state, existing, activation(&params), provider).await;
    }
    let known_params: Vec<FieldLimit> = adapter
        .param_names()
        .iter()
        .map(|name| (*name, MAX_PARAM_CHARS))
        .collect();
    check_fields(&params, "params.", &known_params)?;
    let mut params = Value::Object(params);
    if let Some(gateway_url) = params.get("gateway_url") {
        let text = gateway_url.as_str().unwrap_or("");
        paycenter_gateway::egress::check_url(text, state.config.egress).map_err(|refused| {
            Refusal::new(
                ErrorCode::InvalidChannelParams,
                format!("gateway_url: {refused}"),
            )
            .with_field("params.gateway_url")
        })?;
    }
    if channel == Channel::Sandbox && params.get("signing_secret").is_none() {
        // The sandbox is paycenter's own: it can make up the secret it shares with itself.
        params["signing_secret"] = json!(crate::service::random_hex(32));
    }
    let params = adapter
        .validate_params(&params)
        .map_err(|error| Refusal::new(ErrorCode::InvalidChannelParams, error.to_string()))?;
    // Where the channel can tell a wrong account without moving money, it is asked now, not
    // at the first payment.
    adapter
        .verify_account(&params)
        .await
        .map_err(channel_refused)?;
    record(state, existing, activation(&params), provider).await
}

/// A merchant's account that takes payments (direct or sub-merchant, not a provider), for an
/// operation that moves its money (`operation` says which in the refusal).
pub fn paying_account(
    state: &AppState,
    merchant_id: &MerchantId,
    channel_account_id: &ChannelAccountId,
    operation: &str,
) -> Result<ChannelAccountActivated, Refusal> {
    let account = state
        .channel_account(channel_account_id)
        .filter(|account| &account.merchant_id == merchant_id)
        .ok_or_else(|| {
            Refusal::not_found(
                ErrorCode::ChannelAccountNotFound,
                format!("merchant {merchant_id} has no channel account {channel_account_id}"),
            )
            .with_field("channel_account_id")
        })?;
    if !account.mode.takes_payments() {
        return Err(Refusal::new(
            ErrorCode::InvalidAccountMode,
            format!("{operation} needs an account that takes payments (direct or sub-merchant), not a provider"),
        )
        .with_field("channel_account_id"));
    }
    Ok(account)
}

/// `given` is one of the channel's `words` for `field` (receiver types); a channel with none
/// does not do `operation` in paycenter.
pub fn channel_word(
    channel: Channel,
    words: &[&str],
    given: &str,
    field: &str,
    operation: &str,
) -> Result<(), Refusal> {
    if words.is_empty() {
        return Err(Refusal::new(
            ErrorCode::UnsupportedChannel,
            format!("paycenter does no {operation} at {channel} yet"),
        ));
    }
    if !words.contains(&given) {
        return Err(Refusal::invalid(format!(
            "{field} must be one of {} at {channel}",
            words.join(", ")
        ))
        .with_field(field));
    }
    Ok(())
}

/// What the channel said of an account at activation: it could not be reached, or it refused
/// the account's parameters.
fn channel_refused(error: paycenter_gateway::GatewayError) -> Refusal {
    match error {
        paycenter_gateway::GatewayError::Unavailable { .. } => Refusal::channel_unavailable(error),
        _ => Refusal::new(ErrorCode::InvalidChannelParams, error.to_string()),
    }
}

/// Records an activation (parameters sealed), the domain deciding over the account's stream
/// and its provider.
async fn record(
    state: &AppState,
    existing: Option<ChannelAccountActivated>,
    activation: ChannelAccountActivated,
    provider: Option<ChannelAccountActivated>,
) -> Result<Activated, Refusal> {
    let decided = activation.clone();
    let (events, _) = state
        .execute(
            &streams::channel_account(&activation.channel_account_id),
            &format!("activate-{}", crate::service::random_hex(8)),
            |history, now| {
                let previous = history.iter().rev().find_map(|event| match event {
                    Event::ChannelAccountActivated(activated) => Some(activated),
                    _ => None,
                });
                registry::activate_channel_account(
                    previous,
                    true,
                    provider.as_ref(),
                    ChannelAccountActivated {
                        activated_at: now,
                        ..decided.clone()
                    },
                )
            },
        )
        .await?;
    let activation = events
        .into_iter()
        .find_map(|event| match event {
            Event::ChannelAccountActivated(activated) => Some(activated),
            _ => None,
        })
        .unwrap_or(activation);
    Ok(Activated {
        activation,
        is_new: existing.is_none(),
    })
}
