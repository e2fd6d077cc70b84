//! Alerts: conditions that should wake someone up, raised once while they hold and resolved
//! once when they stop (no storms), each delivered to every alert destination and retried
//! until delivered. One stream per condition (`alert-{rule}-{subject digest}`) holds its
//! alerts one after the other and their deliveries, so "is one open?" is a fold of one stream.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};

use crate::error::DomainError;
use crate::events::{AlertDelivered, AlertDeliveryFailed, AlertRaised, AlertResolved, Event};
use crate::vocabulary::AlertMessage;
pub use crate::vocabulary::{AlertChannelKind, AlertRule};

/// Delivery attempts of one message to one destination before it is given up (and said so in
/// the log).
pub const MAX_DELIVERY_ATTEMPTS: u32 = 12;

/// When attempt `attempt` (1-based) failed, the next is due after this long: 15 s doubling,
/// at most an hour.
pub fn retry_after(attempt: u32) -> Duration {
    let seconds = 15i64.saturating_mul(1i64 << attempt.saturating_sub(1).min(8));
    Duration::seconds(seconds.min(3_600))
}

/// The condition an alert is about: a rule and what it is about (an account, an app, a
/// projection, the store).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Condition {
    pub rule: AlertRule,
    /// What the rule is about, e.g. `ca_…`, `app_…`, `read_model`, `disk`.
    pub subject: String,
}

impl Condition {
    /// The condition's stream.
    pub fn stream(&self) -> String {
        use sha2::{Digest, Sha256};
        let digest = Sha256::digest(self.subject.as_bytes());
        format!(
            "alert-{}-{}",
            self.rule.as_str(),
            &hex::encode(digest)[..24]
        )
    }

    /// The id of the `n`th alert (from 0) of this condition: derived, so every node deciding
    /// the same raise decides the same id.
    pub fn alert_id(&self, n: u64) -> String {
        use sha2::{Digest, Sha256};
        let digest =
            Sha256::digest(format!("{}/{}/{n}", self.rule.as_str(), self.subject).as_bytes());
        format!("alr_{}", &hex::encode(digest)[..32])
    }
}

/// A condition's stream, folded.
#[derive(Debug, Default)]
struct ConditionState {
    n_alerts: u64,
    open: Option<String>,
}

fn fold(history: &[Event]) -> ConditionState {
    let mut state = ConditionState::default();
    for event in history {
        match event {
            Event::AlertRaised(raised) => {
                state.n_alerts += 1;
                state.open = Some(raised.alert_id.clone());
            }
            Event::AlertResolved(_) => state.open = None,
            _ => {}
        }
    }
    state
}

/// What a rule saw.
#[derive(Debug, Clone)]
pub struct Observation {
    pub condition: Condition,
    /// One line: what is wrong.
    pub summary: String,
    /// The figures behind it (a few lines of markdown).
    pub details: String,
}

/// Raises an alert for the condition, unless one is open already.
pub fn raise(
    history: &[Event],
    observation: &Observation,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let state = fold(history);
    if state.open.is_some() {
        return Ok(Vec::new());
    }
    Ok(vec![Event::AlertRaised(AlertRaised {
        alert_id: observation.condition.alert_id(state.n_alerts),
        rule: observation.condition.rule,
        subject: observation.condition.subject.chars().take(256).collect(),
        summary: observation.summary.chars().take(512).collect(),
        details: observation.details.chars().take(4_096).collect(),
        raised_at: now,
    })])
}

/// Resolves the condition's open alert, if there is one.
pub fn resolve(
    history: &[Event],
    summary: &str,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let Some(alert_id) = fold(history).open else {
        return Ok(Vec::new());
    };
    Ok(vec![Event::AlertResolved(AlertResolved {
        alert_id,
        summary: summary.chars().take(512).collect(),
        resolved_at: now,
    })])
}

/// Records one delivery attempt of `message` of `alert_id` to `alert_channel_id`: delivered,
/// or failed with the next attempt's time (none after [`MAX_DELIVERY_ATTEMPTS`]).
pub fn record_delivery(
    alert_id: &str,
    alert_channel_id: &str,
    message: AlertMessage,
    attempt: u32,
    outcome: Result<(), String>,
    now: DateTime<Utc>,
) -> Vec<Event> {
    match outcome {
        Ok(()) => vec![Event::AlertDelivered(AlertDelivered {
            alert_id: alert_id.to_owned(),
            alert_channel_id: alert_channel_id.to_owned(),
            message,
            attempt,
            delivered_at: now,
        })],
        Err(error) => vec![Event::AlertDeliveryFailed(AlertDeliveryFailed {
            alert_id: alert_id.to_owned(),
            alert_channel_id: alert_channel_id.to_owned(),
            message,
            attempt,
            error: error.chars().take(512).collect(),
            next_attempt_at: (attempt < MAX_DELIVERY_ATTEMPTS).then(|| now + retry_after(attempt)),
            failed_at: now,
        })],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn observation() -> Observation {
        Observation {
            condition: Condition {
                rule: AlertRule::WebhooksFailing,
                subject: "app_1".to_owned(),
            },
            summary: "webhooks failing".to_owned(),
            details: String::new(),
        }
    }

    #[test]
    fn a_condition_raises_once_until_it_resolves_then_again_with_a_new_id() {
        let now = DateTime::from_timestamp(1_764_662_400, 0).expect("a valid instant");
        let first = raise(&[], &observation(), now).unwrap();
        assert_eq!(first.len(), 1);
        assert!(
            raise(&first, &observation(), now).unwrap().is_empty(),
            "no storm"
        );
        let resolved = resolve(&first, "fine again", now).unwrap();
        assert_eq!(resolved.len(), 1);
        let history: Vec<Event> = first.iter().chain(&resolved).cloned().collect();
        assert!(resolve(&history, "fine", now).unwrap().is_empty());
        let second = raise(&history, &observation(), now).unwrap();
        let id = |events: &[Event]| match &events[0] {
            Event::AlertRaised(raised) => raised.alert_id.clone(),
            other => panic!("{other:?}"),
        };
        assert_ne!(id(&first), id(&second));
        assert_eq!(id(&first), observation().condition.alert_id(0));
    }

    #[test]
    fn deliveries_back_off_to_an_hour_and_are_given_up() {
        assert_eq!(retry_after(1), Duration::seconds(15));
        assert_eq!(retry_after(2), Duration::seconds(30));
        assert_eq!(retry_after(12), Duration::seconds(3_600));
        let now = DateTime::from_timestamp(1_764_662_400, 0).expect("a valid instant");
        let last = record_delivery(
            "alr_1",
            "alc_1",
            AlertMessage::Raised,
            MAX_DELIVERY_ATTEMPTS,
            Err("down".into()),
            now,
        );
        assert!(
            matches!(&last[0], Event::AlertDeliveryFailed(failed) if failed.next_attempt_at.is_none())
        );
        let first = record_delivery(
            "alr_1",
            "alc_1",
            AlertMessage::Raised,
            1,
            Err("down".into()),
            now,
        );
        assert!(
            matches!(&first[0], Event::AlertDeliveryFailed(failed) if failed.next_attempt_at == Some(now + Duration::seconds(15)))
        );
    }
}
