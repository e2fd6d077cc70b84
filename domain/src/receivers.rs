//! Split receivers: the parties a merchant's payments may share money with at the channel
//! (WeChat Pay's profit-sharing receivers, Alipay's royalty relations). Each is bound at the
//! channel, under one channel account, before a payment may name it; each lives in its own
//! stream and may be removed and bound again.

use chrono::{DateTime, Utc};

use crate::error::DomainError;
use crate::events::{Event, ReceiverBound, ReceiverRemoved};

/// The most receivers one merchant may have bound at once.
pub const MAX_RECEIVERS_PER_MERCHANT: usize = 1_000;

/// A receiver id: 1 to 64 of `A-Z a-z 0-9 _ - .`, chosen by the operator and named by splits.
pub fn check_receiver_id(receiver_id: &str) -> Result<(), DomainError> {
    let valid = !receiver_id.is_empty()
        && receiver_id.len() <= 64
        && receiver_id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
    if !valid {
        return Err(DomainError::InvalidField {
            field: "receiver_id",
            reason: "must be 1 to 64 of A-Z, a-z, 0-9, _, - and .".to_owned(),
        });
    }
    Ok(())
}

/// The receiver as its stream leaves it: bound (and how), or not (never, or removed).
pub fn current(history: &[Event]) -> Option<&ReceiverBound> {
    let mut bound = None;
    for event in history {
        match event {
            Event::ReceiverBound(event) => bound = Some(event),
            Event::ReceiverRemoved(_) => bound = None,
            _ => {}
        }
    }
    bound
}

/// Binds a receiver. Binding again what is bound the same way records nothing (a replay);
/// binding another account or type under a bound id is refused.
pub fn bind(
    history: &[Event],
    n_bound_of_merchant: usize,
    command: ReceiverBound,
) -> Result<Vec<Event>, DomainError> {
    check_receiver_id(&command.receiver_id)?;
    if let Some(bound) = current(history) {
        let same = bound.channel_account_id == command.channel_account_id
            && bound.kind == command.kind
            && bound.account == command.account;
        if same {
            return Ok(Vec::new());
        }
        return Err(DomainError::AlreadyExists {
            kind: "receiver",
            id: command.receiver_id,
        });
    }
    if n_bound_of_merchant >= MAX_RECEIVERS_PER_MERCHANT {
        return Err(DomainError::InvalidField {
            field: "receiver_id",
            reason: format!(
                "a merchant has at most {MAX_RECEIVERS_PER_MERCHANT} receivers; remove one first"
            ),
        });
    }
    if command.account.is_empty() || command.account.chars().count() > 128 {
        return Err(DomainError::InvalidField {
            field: "account",
            reason: "must be 1 to 128 characters".to_owned(),
        });
    }
    Ok(vec![Event::ReceiverBound(command)])
}

/// Removes a bound receiver.
pub fn remove(history: &[Event], now: DateTime<Utc>) -> Result<Vec<Event>, DomainError> {
    let Some(bound) = current(history) else {
        return Err(DomainError::ReceiverNotFound);
    };
    Ok(vec![Event::ReceiverRemoved(ReceiverRemoved {
        merchant_id: bound.merchant_id.clone(),
        receiver_id: bound.receiver_id.clone(),
        removed_at: now,
    })])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::{ChannelAccountId, MerchantId};

    fn bound(account: &str) -> ReceiverBound {
        ReceiverBound {
            merchant_id: MerchantId::from_entropy(1),
            receiver_id: "store-7".to_owned(),
            channel_account_id: ChannelAccountId::from_entropy(2),
            kind: "MERCHANT_ID".to_owned(),
            account: account.to_owned(),
            name_sealed: None,
            bound_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[test]
    fn binds_once_replays_quietly_refuses_another_and_binds_again_after_removal() {
        let first = bind(&[], 0, bound("1900000301")).unwrap();
        assert_eq!(first.len(), 1);
        assert!(bind(&first, 1, bound("1900000301")).unwrap().is_empty());
        assert!(matches!(
            bind(&first, 1, bound("1900000302")),
            Err(DomainError::AlreadyExists { .. })
        ));
        let mut history = first;
        history.extend(remove(&history, DateTime::<Utc>::UNIX_EPOCH).unwrap());
        assert!(current(&history).is_none());
        assert_eq!(bind(&history, 0, bound("1900000302")).unwrap().len(), 1);
        assert!(matches!(
            remove(&[], DateTime::<Utc>::UNIX_EPOCH),
            Err(DomainError::ReceiverNotFound)
        ));
    }

    #[test]
    fn refuses_bad_ids_and_too_many() {
        let mut command = bound("x");
        command.receiver_id = "has space".to_owned();
        assert!(bind(&[], 0, command).is_err());
        assert!(bind(&[], MAX_RECEIVERS_PER_MERCHANT, bound("x")).is_err());
    }
}
