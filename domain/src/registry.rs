//! The slow-moving aggregates: merchants, channel accounts and apps. Each lives in its own
//! stream and is created once; a channel account may be re-activated to rotate its keys.

use chrono::{DateTime, Duration, Utc};

use crate::error::DomainError;
use crate::events::{
    AppAccessChanged, AppApiKeyRotated, AppRegistered, AppWebhookSecretRotated,
    ChannelAccountAccessChanged, ChannelAccountActivated, Event, MerchantOnboarded,
};
use crate::ids::{AppId, ChannelAccountId};
use crate::vocabulary::AccountMode;

/// The most merchants one app may act for.
pub const MAX_MERCHANTS_PER_APP: usize = 1_000;

/// A name of 1 to 128 printable characters (merchants, apps, operators).
pub(crate) fn check_name(field: &'static str, name: &str) -> Result<(), DomainError> {
    let trimmed = name.trim();
    if trimmed.is_empty() || name.chars().count() > 128 || name.chars().any(char::is_control) {
        return Err(DomainError::InvalidField {
            field,
            reason: "must be 1 to 128 printable characters".to_owned(),
        });
    }
    Ok(())
}

/// Onboards a merchant. `exists` is whether the merchant's stream already has events.
pub fn onboard_merchant(
    exists: bool,
    command: MerchantOnboarded,
) -> Result<Vec<Event>, DomainError> {
    if exists {
        return Err(DomainError::AlreadyExists {
            kind: "merchant",
            id: command.merchant_id.to_string(),
        });
    }
    check_name("name", &command.name)?;
    Ok(vec![Event::MerchantOnboarded(command)])
}

/// Activates a channel account for an existing merchant. Re-activation of the same account
/// (key rotation) is allowed only for the same merchant, channel, mode and provider.
/// `provider` is the latest activation of the account `command.provider_account_id` names,
/// when it names one that exists.
pub fn activate_channel_account(
    previous: Option<&ChannelAccountActivated>,
    merchant_exists: bool,
    provider: Option<&ChannelAccountActivated>,
    command: ChannelAccountActivated,
) -> Result<Vec<Event>, DomainError> {
    if !merchant_exists {
        return Err(DomainError::MerchantNotFound {
            merchant_id: command.merchant_id.clone(),
        });
    }
    if let Some(previous) = previous {
        if previous.merchant_id != command.merchant_id || previous.channel != command.channel {
            return Err(DomainError::AlreadyExists {
                kind: "channel account",
                id: command.channel_account_id.to_string(),
            });
        }
        if previous.mode != command.mode
            || previous.provider_account_id != command.provider_account_id
        {
            return Err(DomainError::InvalidAccountMode {
                reason: format!(
                    "channel account {} keeps its mode ({}) and provider; activate a new account for another",
                    command.channel_account_id, previous.mode
                ),
            });
        }
    }
    check_provider(provider, &command)?;
    if command.callback_ip_allowlist.len() > 64 {
        return Err(DomainError::InvalidField {
            field: "callback_ip_allowlist",
            reason: "at most 64 entries".to_owned(),
        });
    }
    Ok(vec![Event::ChannelAccountActivated(command)])
}

/// A sub-merchant names an existing provider account of its own channel; no other account
/// names a provider.
fn check_provider(
    provider: Option<&ChannelAccountActivated>,
    command: &ChannelAccountActivated,
) -> Result<(), DomainError> {
    let invalid = |reason: String| Err(DomainError::InvalidAccountMode { reason });
    let Some(provider_account_id) = &command.provider_account_id else {
        if command.mode == AccountMode::SubMerchant {
            return invalid("a sub_merchant account needs provider_account_id".to_owned());
        }
        return Ok(());
    };
    if command.mode != AccountMode::SubMerchant {
        return invalid(format!(
            "provider_account_id is for sub_merchant accounts, not {} ones",
            command.mode
        ));
    }
    if *provider_account_id == command.channel_account_id {
        return invalid("an account cannot be its own provider".to_owned());
    }
    let Some(provider) =
        provider.filter(|provider| provider.channel_account_id == *provider_account_id)
    else {
        return Err(DomainError::ChannelAccountNotFound {
            channel_account_id: provider_account_id.clone(),
        });
    };
    if provider.mode != AccountMode::Provider {
        return invalid(format!(
            "channel account {provider_account_id} is a {} account, not a provider",
            provider.mode
        ));
    }
    if provider.channel != command.channel {
        return invalid(format!(
            "provider {provider_account_id} is a {} account; a {} sub-merchant needs a provider of its channel",
            provider.channel, command.channel
        ));
    }
    Ok(())
}

/// Registers an app for merchants that all exist.
pub fn register_app(
    exists: bool,
    missing_merchant: Option<crate::ids::MerchantId>,
    command: AppRegistered,
) -> Result<Vec<Event>, DomainError> {
    if exists {
        return Err(DomainError::AlreadyExists {
            kind: "app",
            id: command.app_id.to_string(),
        });
    }
    check_name("name", &command.name)?;
    if command.merchant_ids.is_empty() || command.merchant_ids.len() > MAX_MERCHANTS_PER_APP {
        return Err(DomainError::InvalidField {
            field: "merchant_ids",
            reason: format!("must list 1 to {MAX_MERCHANTS_PER_APP} merchants"),
        });
    }
    if let Some(merchant_id) = missing_merchant {
        return Err(DomainError::MerchantNotFound { merchant_id });
    }
    Ok(vec![Event::AppRegistered(command)])
}

/// What an app's stream says of it now: registered, its current key and secret, enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppState {
    /// The registration.
    pub registered: AppRegistered,
    /// Hex SHA-256 of the current API key.
    pub api_key_sha256: String,
    /// The current webhook secret, sealed.
    pub webhook_secret_sealed: String,
    /// False while disabled.
    pub enabled: bool,
}

impl AppState {
    /// Folds an app's stream; `None` when it holds no registration.
    pub fn from_events(events: &[Event]) -> Option<AppState> {
        let mut state: Option<AppState> = None;
        for event in events {
            match event {
                Event::AppRegistered(registered) => {
                    state = Some(AppState {
                        api_key_sha256: registered.api_key_sha256.clone(),
                        webhook_secret_sealed: registered.webhook_secret_sealed.clone(),
                        registered: registered.clone(),
                        enabled: true,
                    });
                }
                Event::AppApiKeyRotated(rotated) => {
                    let app = state.as_mut().expect("rotations follow registration");
                    app.api_key_sha256 = rotated.api_key_sha256.clone();
                }
                Event::AppWebhookSecretRotated(rotated) => {
                    let app = state.as_mut().expect("rotations follow registration");
                    app.webhook_secret_sealed = rotated.webhook_secret_sealed.clone();
                }
                Event::AppAccessChanged(changed) => {
                    state.as_mut().expect("changes follow registration").enabled = changed.enabled;
                }
                _ => {}
            }
        }
        state
    }
}

/// The longest grace period of a rotated credential: 30 days.
pub const MAX_ROTATION_GRACE_SECONDS: i64 = 30 * 86_400;

fn app_of(events: &[Event], app_id: &AppId) -> Result<AppState, DomainError> {
    AppState::from_events(events).ok_or_else(|| DomainError::AppNotFound {
        app_id: app_id.clone(),
    })
}

/// Replaces an app's API key (its hash given); the previous key works `grace` longer.
pub fn rotate_api_key(
    events: &[Event],
    app_id: &AppId,
    api_key_sha256: String,
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let app = app_of(events, app_id)?;
    Ok(vec![Event::AppApiKeyRotated(AppApiKeyRotated {
        app_id: app_id.clone(),
        api_key_sha256,
        previous_api_key_sha256: app.api_key_sha256,
        previous_valid_until: now + grace,
        rotated_at: now,
    })])
}

/// Replaces an app's webhook secret (sealed); webhooks carry both signatures `grace` longer.
pub fn rotate_webhook_secret(
    events: &[Event],
    app_id: &AppId,
    webhook_secret_sealed: String,
    grace: Duration,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let app = app_of(events, app_id)?;
    Ok(vec![Event::AppWebhookSecretRotated(
        AppWebhookSecretRotated {
            app_id: app_id.clone(),
            webhook_secret_sealed,
            previous_webhook_secret_sealed: app.webhook_secret_sealed,
            previous_valid_until: now + grace,
            rotated_at: now,
        },
    )])
}

/// Disables or enables an app; nothing when it already is so.
pub fn set_app_enabled(
    events: &[Event],
    app_id: &AppId,
    enabled: bool,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let app = app_of(events, app_id)?;
    if app.enabled == enabled {
        return Ok(Vec::new());
    }
    Ok(vec![Event::AppAccessChanged(AppAccessChanged {
        app_id: app_id.clone(),
        enabled,
        changed_at: now,
    })])
}

/// Disables or enables a channel account; nothing when it already is so.
pub fn set_channel_account_enabled(
    events: &[Event],
    channel_account_id: &ChannelAccountId,
    enabled: bool,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let mut current: Option<bool> = None;
    for event in events {
        match event {
            Event::ChannelAccountActivated(_) if current.is_none() => current = Some(true),
            Event::ChannelAccountAccessChanged(changed) => current = Some(changed.enabled),
            _ => {}
        }
    }
    let Some(current) = current else {
        return Err(DomainError::ChannelAccountNotFound {
            channel_account_id: channel_account_id.clone(),
        });
    };
    if current == enabled {
        return Ok(Vec::new());
    }
    Ok(vec![Event::ChannelAccountAccessChanged(
        ChannelAccountAccessChanged {
            channel_account_id: channel_account_id.clone(),
            enabled,
            changed_at: now,
        },
    )])
}
