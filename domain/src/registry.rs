//! The slow-moving aggregates: merchants, channel accounts and apps. Each lives in its own
//! stream and is created once; a channel account may be re-activated to rotate its keys.

use crate::error::DomainError;
use crate::events::{AppRegistered, ChannelAccountActivated, Event, MerchantOnboarded};

/// The most merchants one app may act for.
pub const MAX_MERCHANTS_PER_APP: usize = 1_000;

fn check_name(field: &'static str, name: &str) -> Result<(), DomainError> {
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
/// (key rotation) is allowed only for the same merchant and channel.
pub fn activate_channel_account(
    previous: Option<&ChannelAccountActivated>,
    merchant_exists: bool,
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
    }
    if command.callback_ip_allowlist.len() > 64 {
        return Err(DomainError::InvalidField {
            field: "callback_ip_allowlist",
            reason: "at most 64 entries".to_owned(),
        });
    }
    Ok(vec![Event::ChannelAccountActivated(command)])
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
