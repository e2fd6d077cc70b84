//! The registry's use cases: onboarding merchants, registering apps, rotating an app's key or
//! webhook secret (the old one valid for a grace period), and turning apps and channel
//! accounts off and on. New secrets are made here and answered once; the log keeps a hash of
//! the API key and the webhook secret sealed under the master key.

use chrono::{DateTime, Duration, Utc};
use paycenter_domain::events::{AppRegistered, Event, MerchantOnboarded};
use paycenter_domain::ids::{AppId, ChannelAccountId, MerchantId};
use paycenter_domain::{registry, streams};

use crate::error::{ErrorCode, Refusal};
use crate::keys::api_key_sha256;
use crate::service::random_hex;
use crate::state::AppState;

/// Onboards a merchant named `name`.
pub async fn onboard_merchant(
    state: &AppState,
    name: String,
) -> Result<MerchantOnboarded, Refusal> {
    let merchant_id = MerchantId::from_entropy(rand::random::<u128>());
    let command = MerchantOnboarded {
        merchant_id: merchant_id.clone(),
        name,
        onboarded_at: state.clock.now(),
    };
    state
        .execute(
            &streams::merchant(&merchant_id),
            merchant_id.as_str(),
            |history, now| {
                registry::onboard_merchant(
                    !history.is_empty(),
                    MerchantOnboarded {
                        onboarded_at: now,
                        ..command.clone()
                    },
                )
            },
        )
        .await?;
    Ok(command)
}

/// An app registered, with the secrets shown this once.
pub struct AppCreated {
    /// What was recorded.
    pub app: AppRegistered,
    /// The API key (the log keeps its SHA-256).
    pub api_key: String,
    /// The webhook secret (the log keeps it sealed).
    pub webhook_secret: String,
}

/// Registers an app acting for `merchant_ids` (each must exist), its webhooks going to
/// `notify_url` (already checked against the egress rule).
pub async fn register_app(
    state: &AppState,
    name: String,
    merchant_ids: Vec<MerchantId>,
    notify_url: String,
) -> Result<AppCreated, Refusal> {
    let missing = {
        let model = state.model_for_request()?;
        merchant_ids
            .iter()
            .find(|merchant_id| !model.merchants().contains_key(*merchant_id))
            .cloned()
    };
    let app_id = AppId::from_entropy(rand::random::<u128>());
    let api_key = format!("pk_{}", random_hex(24));
    let webhook_secret = format!("whsec_{}", random_hex(24));
    let command = AppRegistered {
        app_id: app_id.clone(),
        name,
        merchant_ids,
        notify_url,
        api_key_sha256: api_key_sha256(&api_key),
        webhook_secret_sealed: state
            .master_key
            .seal(app_id.as_str(), webhook_secret.as_bytes()),
        registered_at: state.clock.now(),
    };
    state
        .execute(&streams::app(&app_id), app_id.as_str(), |history, now| {
            registry::register_app(
                !history.is_empty(),
                missing.clone(),
                AppRegistered {
                    registered_at: now,
                    ..command.clone()
                },
            )
        })
        .await?;
    Ok(AppCreated {
        app: command,
        api_key,
        webhook_secret,
    })
}

/// A new credential, and until when the one it replaces still works.
pub struct Rotated {
    /// The new key or secret, shown this once.
    pub value: String,
    /// The old one works until then.
    pub previous_valid_until: DateTime<Utc>,
}

fn app_not_found(app_id: &AppId, refusal: Refusal) -> Refusal {
    if refusal.code == ErrorCode::AppNotFound {
        Refusal::not_found(ErrorCode::AppNotFound, format!("app {app_id} not found"))
    } else {
        refusal
    }
}

/// Gives an app a new API key; the old one works for `grace`.
pub async fn rotate_api_key(
    state: &AppState,
    app_id: &AppId,
    grace: Duration,
) -> Result<Rotated, Refusal> {
    let api_key = format!("pk_{}", random_hex(24));
    let api_key_hash = api_key_sha256(&api_key);
    let (decided, _) = state
        .execute(
            &streams::app(app_id),
            &format!("rotate-key-{app_id}-{}", random_hex(8)),
            |history, now| {
                registry::rotate_api_key(history, app_id, api_key_hash.clone(), grace, now)
            },
        )
        .await
        .map_err(|refusal| app_not_found(app_id, refusal))?;
    let Some(Event::AppApiKeyRotated(rotated)) = decided.first() else {
        return Err(Refusal::internal("rotate key", "nothing decided"));
    };
    Ok(Rotated {
        value: api_key,
        previous_valid_until: rotated.previous_valid_until,
    })
}

/// Gives an app a new webhook secret; webhooks carry a signature with each until `grace` ends.
pub async fn rotate_webhook_secret(
    state: &AppState,
    app_id: &AppId,
    grace: Duration,
) -> Result<Rotated, Refusal> {
    let webhook_secret = format!("whsec_{}", random_hex(24));
    let sealed = state
        .master_key
        .seal(app_id.as_str(), webhook_secret.as_bytes());
    let (decided, _) = state
        .execute(
            &streams::app(app_id),
            &format!("rotate-webhook-secret-{app_id}-{}", random_hex(8)),
            |history, now| {
                registry::rotate_webhook_secret(history, app_id, sealed.clone(), grace, now)
            },
        )
        .await
        .map_err(|refusal| app_not_found(app_id, refusal))?;
    let Some(Event::AppWebhookSecretRotated(rotated)) = decided.first() else {
        return Err(Refusal::internal(
            "rotate webhook secret",
            "nothing decided",
        ));
    };
    Ok(Rotated {
        value: webhook_secret,
        previous_valid_until: rotated.previous_valid_until,
    })
}

/// Turns an app off (its requests answer `403 app_disabled`) or on again.
pub async fn set_app_enabled(
    state: &AppState,
    app_id: &AppId,
    enabled: bool,
) -> Result<(), Refusal> {
    state
        .execute(
            &streams::app(app_id),
            &format!("access-{app_id}-{}", random_hex(8)),
            |history, now| registry::set_app_enabled(history, app_id, enabled, now),
        )
        .await
        .map(|_| ())
        .map_err(|refusal| app_not_found(app_id, refusal))
}

/// Turns a merchant's channel account off (no new payments; callbacks, refunds and
/// reconciliation go on) or on again.
pub async fn set_channel_account_enabled(
    state: &AppState,
    merchant_id: &MerchantId,
    channel_account_id: &ChannelAccountId,
    enabled: bool,
) -> Result<(), Refusal> {
    if state
        .channel_account(channel_account_id)
        .is_none_or(|account| &account.merchant_id != merchant_id)
    {
        return Err(Refusal::not_found(
            ErrorCode::ChannelAccountNotFound,
            format!("merchant {merchant_id} has no channel account {channel_account_id}"),
        ));
    }
    state
        .execute(
            &streams::channel_account(channel_account_id),
            &format!("access-{channel_account_id}-{}", random_hex(8)),
            |history, now| {
                registry::set_channel_account_enabled(history, channel_account_id, enabled, now)
            },
        )
        .await
        .map(|_| ())
}
