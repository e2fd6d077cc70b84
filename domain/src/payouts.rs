//! Payouts: money paid out of what a merchant holds in paycenter (its `payable`) to an account
//! at a channel (the merchant's own, a split receiver's, a user's wallet). All payouts of a
//! merchant live in one stream, so two decided at once never both pass the balance check: the
//! second meets the first's event (optimistic concurrency) and is decided again.
//!
//! What a merchant may pay out is what it has earned (its payable as payments and refunds left
//! it, before any payout: `payable + paid_out` in the ledger) less every payout not failed. A
//! failed payout gives its amount back at once; a succeeded one is posted in the ledger.

use chrono::{DateTime, Utc};
use sha2::{Digest, Sha256};

use crate::error::DomainError;
use crate::events::{
    Event, PayoutAwaitingConfirmation, PayoutFailed, PayoutRequested, PayoutSucceeded,
};
use crate::money::Money;
use crate::vocabulary::PayoutStatus;

/// A payout's id: derived from the merchant and its `payout_no`, so a replay finds it.
pub fn payout_id(merchant_id: &crate::ids::MerchantId, payout_no: &str) -> String {
    let digest = Sha256::digest(format!("{merchant_id}/{payout_no}").as_bytes());
    format!("po_{}", &hex::encode(digest)[..32])
}

/// A payout number: 1 to 64 of `A-Z a-z 0-9 _ -`, unique per merchant.
pub fn check_payout_no(payout_no: &str) -> Result<(), DomainError> {
    let valid = !payout_no.is_empty()
        && payout_no.len() <= 64
        && payout_no
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-'));
    if !valid {
        return Err(DomainError::InvalidField {
            field: "payout_no",
            reason: "must be 1 to 64 of A-Z, a-z, 0-9, _ and -".to_owned(),
        });
    }
    Ok(())
}

/// Each payout of a merchant's stream with where it stands, oldest first.
pub fn payouts(history: &[Event]) -> Vec<(&PayoutRequested, PayoutStatus)> {
    let mut payouts: Vec<(&PayoutRequested, PayoutStatus)> = Vec::new();
    for event in history {
        match event {
            Event::PayoutRequested(requested) => {
                payouts.push((requested, PayoutStatus::Pending));
            }
            Event::PayoutSucceeded(succeeded) => {
                set(&mut payouts, &succeeded.payout_id, PayoutStatus::Succeeded)
            }
            Event::PayoutFailed(failed) => {
                set(&mut payouts, &failed.payout_id, PayoutStatus::Failed)
            }
            Event::PayoutAwaitingConfirmation(waiting) => set(
                &mut payouts,
                &waiting.payout_id,
                PayoutStatus::AwaitingConfirmation,
            ),
            _ => {}
        }
    }
    payouts
}

fn set(payouts: &mut [(&PayoutRequested, PayoutStatus)], payout_id: &str, status: PayoutStatus) {
    if let Some(entry) = payouts
        .iter_mut()
        .find(|(requested, _)| requested.payout_id == payout_id)
    {
        entry.1 = status;
    }
}

/// Decides a payout. `earned_minor` is what the merchant earned in the payout's currency
/// (`payable + paid_out` of the ledger). The same `payout_no` with the same terms records
/// nothing (a replay); with other terms it is refused.
pub fn request(
    history: &[Event],
    earned_minor: i64,
    command: PayoutRequested,
) -> Result<Vec<Event>, DomainError> {
    check_payout_no(&command.payout_no)?;
    let payouts = payouts(history);
    if let Some((earlier, _)) = payouts
        .iter()
        .find(|(requested, _)| requested.payout_no == command.payout_no)
    {
        let same = earlier.channel_account_id == command.channel_account_id
            && earlier.amount == command.amount
            && earlier.receiver.kind == command.receiver.kind
            && earlier.receiver.account == command.receiver.account
            && earlier.app_id == command.app_id;
        if same {
            return Ok(Vec::new());
        }
        return Err(DomainError::PayoutNoReused {
            payout_no: command.payout_no,
        });
    }
    let currency = command.amount.currency();
    let committed_minor: i64 = payouts
        .iter()
        .filter(|(requested, status)| {
            *status != PayoutStatus::Failed && requested.amount.currency() == currency
        })
        .map(|(requested, _)| requested.amount.amount_minor())
        .sum();
    let available_minor = earned_minor - committed_minor;
    if command.amount.amount_minor() > available_minor {
        return Err(DomainError::InsufficientBalance {
            available: Money::from_minor(available_minor.max(0), currency),
        });
    }
    Ok(vec![Event::PayoutRequested(command)])
}

/// What the channel said of a payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayoutOutcome {
    /// Paid to the receiver.
    Succeeded {
        /// The channel's id of the transfer.
        channel_payout_no: Option<String>,
    },
    /// Refused or failed: the money stays with the merchant.
    Failed {
        /// The channel's words.
        reason: String,
    },
    /// Taken, waiting for the receiving user to confirm it.
    AwaitingConfirmation {
        /// The channel's id of the transfer.
        channel_payout_no: Option<String>,
        /// What the user confirms with, and the ids that go with it.
        package_info: String,
        /// The paying merchant's id at the channel.
        channel_merchant_id: String,
        /// The app id the receiver's openid belongs to.
        channel_app_id: String,
    },
}

/// Records a payout's outcome, once: a success or failure while it is not settled, a wait for
/// the user's confirmation only while it is pending.
pub fn record_outcome(
    history: &[Event],
    payout_id: &str,
    outcome: PayoutOutcome,
    now: DateTime<Utc>,
) -> Vec<Event> {
    let Some((requested, status)) = payouts(history)
        .into_iter()
        .find(|(requested, _)| requested.payout_id == payout_id)
    else {
        return Vec::new();
    };
    let open = match outcome {
        PayoutOutcome::AwaitingConfirmation { .. } => status == PayoutStatus::Pending,
        _ => matches!(
            status,
            PayoutStatus::Pending | PayoutStatus::AwaitingConfirmation
        ),
    };
    if !open {
        return Vec::new();
    }
    match outcome {
        PayoutOutcome::AwaitingConfirmation {
            channel_payout_no,
            package_info,
            channel_merchant_id,
            channel_app_id,
        } => vec![Event::PayoutAwaitingConfirmation(
            PayoutAwaitingConfirmation {
                payout_id: payout_id.to_owned(),
                merchant_id: requested.merchant_id.clone(),
                channel_payout_no,
                package_info,
                channel_merchant_id,
                channel_app_id,
                at: now,
            },
        )],
        PayoutOutcome::Succeeded { channel_payout_no } => {
            vec![Event::PayoutSucceeded(PayoutSucceeded {
                payout_id: payout_id.to_owned(),
                merchant_id: requested.merchant_id.clone(),
                channel_account_id: requested.channel_account_id.clone(),
                amount: requested.amount,
                channel_payout_no,
                succeeded_at: now,
            })]
        }
        PayoutOutcome::Failed { reason } => vec![Event::PayoutFailed(PayoutFailed {
            payout_id: payout_id.to_owned(),
            merchant_id: requested.merchant_id.clone(),
            reason: reason.chars().take(512).collect(),
            failed_at: now,
        })],
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::PayoutReceiver;
    use crate::ids::{ChannelAccountId, MerchantId};
    use crate::vocabulary::{Channel, PayoutReceiverKind};
    use crate::Currency;

    fn requested(payout_no: &str, minor: i64) -> PayoutRequested {
        let merchant_id = MerchantId::from_entropy(1);
        PayoutRequested {
            payout_id: payout_id(&merchant_id, payout_no),
            payout_no: payout_no.to_owned(),
            merchant_id,
            channel_account_id: ChannelAccountId::from_entropy(2),
            channel: Channel::Sandbox,
            amount: Money::from_minor(minor, Currency::CNY),
            receiver: PayoutReceiver {
                kind: PayoutReceiverKind::Sandbox,
                account: "wallet".to_owned(),
                name_sealed: None,
            },
            app_id: None,
            requested_at: DateTime::<Utc>::UNIX_EPOCH,
        }
    }

    #[test]
    fn payouts_stay_within_what_was_earned_less_those_not_failed() {
        let mut history = request(&[], 10_000, requested("a", 6_000)).unwrap();
        assert!(matches!(
            request(&history, 10_000, requested("b", 4_001)),
            Err(DomainError::InsufficientBalance { available }) if available.amount_minor() == 4_000
        ));
        // A replay records nothing; another amount under the number is refused.
        assert!(request(&history, 10_000, requested("a", 6_000))
            .unwrap()
            .is_empty());
        assert!(matches!(
            request(&history, 10_000, requested("a", 5_000)),
            Err(DomainError::PayoutNoReused { .. })
        ));
        // A failed payout gives its amount back; an outcome is recorded once.
        let id = requested("a", 6_000).payout_id;
        let failed = PayoutOutcome::Failed {
            reason: "refused".into(),
        };
        history.extend(record_outcome(
            &history,
            &id,
            failed.clone(),
            DateTime::<Utc>::UNIX_EPOCH,
        ));
        assert!(record_outcome(&history, &id, failed, DateTime::<Utc>::UNIX_EPOCH).is_empty());
        assert_eq!(
            request(&history, 10_000, requested("b", 10_000))
                .unwrap()
                .len(),
            1
        );
    }

    #[test]
    fn a_payout_waiting_for_its_user_still_holds_its_amount_and_settles_once() {
        let mut history = request(&[], 10_000, requested("a", 6_000)).unwrap();
        let id = requested("a", 6_000).payout_id;
        let waiting = PayoutOutcome::AwaitingConfirmation {
            channel_payout_no: Some("1330".into()),
            package_info: "pkg".into(),
            channel_merchant_id: "1900".into(),
            channel_app_id: "wx1".into(),
        };
        let at = DateTime::<Utc>::UNIX_EPOCH;
        history.extend(record_outcome(&history, &id, waiting.clone(), at));
        assert_eq!(payouts(&history)[0].1, PayoutStatus::AwaitingConfirmation);
        // Heard again (the callback after the query): nothing more.
        assert!(record_outcome(&history, &id, waiting.clone(), at).is_empty());
        assert!(matches!(
            request(&history, 10_000, requested("b", 4_001)),
            Err(DomainError::InsufficientBalance { .. })
        ));
        let paid = PayoutOutcome::Succeeded {
            channel_payout_no: Some("1330".into()),
        };
        history.extend(record_outcome(&history, &id, paid.clone(), at));
        assert_eq!(payouts(&history)[0].1, PayoutStatus::Succeeded);
        assert!(record_outcome(&history, &id, paid, at).is_empty());
        assert!(record_outcome(&history, &id, waiting, at).is_empty());
    }
}
