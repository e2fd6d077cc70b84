//! The webhook notification aggregate: one stream per notification, holding every delivery
//! attempt. The retry schedule is data, so tests shrink it and operators tune it.

use chrono::{DateTime, Duration, Utc};

use crate::error::DomainError;
use crate::events::{
    Event, NotificationDelivered, NotificationFailed, NotificationRedeliveryRequested,
    NotificationScheduled, WebhookAttempted,
};
use crate::ids::NotificationId;
pub use crate::vocabulary::NotificationStatus;

/// Delays before each retry, after the first immediate attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RetrySchedule {
    /// `retry_delays_ms[k]` is the wait after failed attempt `k + 1`.
    pub retry_delays_ms: Vec<u64>,
}

impl Default for RetrySchedule {
    /// 15s, 15s, 30s, 3m, 10m, 20m, 30m, 30m, 30m, 60m, 3h, 3h, 3h, 6h, 6h.
    fn default() -> Self {
        const MINUTE_MS: u64 = 60_000;
        RetrySchedule {
            retry_delays_ms: vec![
                15_000,
                15_000,
                30_000,
                3 * MINUTE_MS,
                10 * MINUTE_MS,
                20 * MINUTE_MS,
                30 * MINUTE_MS,
                30 * MINUTE_MS,
                30 * MINUTE_MS,
                60 * MINUTE_MS,
                180 * MINUTE_MS,
                180 * MINUTE_MS,
                180 * MINUTE_MS,
                360 * MINUTE_MS,
                360 * MINUTE_MS,
            ],
        }
    }
}

impl RetrySchedule {
    /// Attempts in all: the first plus one per delay.
    pub fn max_attempts(&self) -> u32 {
        u32::try_from(self.retry_delays_ms.len() + 1).expect("schedules are short")
    }
}

/// The state of one notification.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Notification {
    /// As scheduled.
    pub scheduled: NotificationScheduled,
    /// Where it stands.
    pub status: NotificationStatus,
    /// Attempts since scheduling or the last redelivery request.
    pub n_attempts_in_round: u32,
    /// Attempts in all.
    pub n_attempts_total: u32,
    /// When the next attempt is due, while pending.
    pub next_attempt_at: Option<DateTime<Utc>>,
    /// Why the last attempt was not acknowledged (a transport error or the app's status);
    /// `None` before the first attempt and after a 2xx.
    #[serde(default)]
    pub last_error: Option<String>,
}

/// What one delivery attempt saw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryOutcome {
    /// The app's HTTP status, if it answered.
    pub http_status: Option<u16>,
    /// Transport error, if it did not.
    pub error: Option<String>,
}

impl DeliveryOutcome {
    /// A 2xx answer acknowledges.
    pub fn acknowledged(&self) -> bool {
        matches!(self.http_status, Some(200..=299))
    }
}

impl Notification {
    /// Folds a notification's events, oldest first; `None` when there are none.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Option<Notification> {
        let mut state: Option<Notification> = None;
        for event in events {
            Notification::apply(&mut state, event);
        }
        state
    }

    /// Folds one event.
    pub fn apply(state: &mut Option<Notification>, event: &Event) {
        if let Event::NotificationScheduled(scheduled) = event {
            assert!(state.is_none(), "a notification is scheduled once");
            *state = Some(Notification {
                scheduled: scheduled.clone(),
                status: NotificationStatus::Pending,
                n_attempts_in_round: 0,
                n_attempts_total: 0,
                next_attempt_at: Some(scheduled.created_at),
                last_error: None,
            });
            return;
        }
        let Some(notification) = state.as_mut() else {
            panic!("notification events follow its scheduling");
        };
        match event {
            Event::WebhookAttempted(attempted) => {
                assert_eq!(
                    notification.status,
                    NotificationStatus::Pending,
                    "only pending notifications are attempted"
                );
                notification.n_attempts_in_round += 1;
                notification.n_attempts_total += 1;
                assert_eq!(
                    attempted.attempt_no, notification.n_attempts_total,
                    "attempts are numbered without gaps"
                );
                notification.next_attempt_at = attempted.next_attempt_at;
                notification.last_error = match (&attempted.error, attempted.http_status) {
                    _ if attempted.succeeded => None,
                    (Some(error), _) => Some(error.clone()),
                    (None, Some(status)) => Some(format!("the app answered HTTP {status}")),
                    (None, None) => Some("no answer".to_owned()),
                };
            }
            Event::NotificationDelivered(_) => {
                notification.status = NotificationStatus::Delivered;
                notification.next_attempt_at = None;
            }
            Event::NotificationFailed(_) => {
                notification.status = NotificationStatus::Failed;
                notification.next_attempt_at = None;
            }
            Event::NotificationRedeliveryRequested(requested) => {
                notification.status = NotificationStatus::Pending;
                notification.n_attempts_in_round = 0;
                notification.next_attempt_at = Some(requested.requested_at);
            }
            _ => {}
        }
    }

    /// Records one delivery attempt and decides what follows: delivered, the next retry, or
    /// given up once the schedule is exhausted.
    pub fn decide_attempt(
        &self,
        outcome: &DeliveryOutcome,
        schedule: &RetrySchedule,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        let notification_id = self.scheduled.notification_id.clone();
        if self.status != NotificationStatus::Pending {
            return Err(DomainError::NotificationSettled { notification_id });
        }
        let attempt_no = self.n_attempts_total + 1;
        let attempt_in_round = self.n_attempts_in_round + 1;
        let succeeded = outcome.acknowledged();
        let exhausted = !succeeded && attempt_in_round >= schedule.max_attempts();
        let next_attempt_at = if succeeded || exhausted {
            None
        } else {
            let delay_ms = schedule.retry_delays_ms[(attempt_in_round - 1) as usize];
            Some(now + Duration::milliseconds(i64::try_from(delay_ms).expect("delays fit i64")))
        };
        let mut events = vec![Event::WebhookAttempted(WebhookAttempted {
            notification_id: notification_id.clone(),
            attempt_no,
            succeeded,
            http_status: outcome.http_status,
            error: outcome.error.clone(),
            attempted_at: now,
            next_attempt_at,
        })];
        if succeeded {
            events.push(Event::NotificationDelivered(NotificationDelivered {
                notification_id,
                delivered_at: now,
            }));
        } else if exhausted {
            events.push(Event::NotificationFailed(NotificationFailed {
                notification_id,
                n_attempts: attempt_no,
                failed_at: now,
            }));
        }
        Ok(events)
    }

    /// An operator's request to deliver again. Allowed once the notification has settled.
    pub fn decide_redeliver(&self, now: DateTime<Utc>) -> Result<Vec<Event>, DomainError> {
        if self.status == NotificationStatus::Pending {
            return Ok(Vec::new()); // Already on its way.
        }
        Ok(vec![Event::NotificationRedeliveryRequested(
            NotificationRedeliveryRequested {
                notification_id: self.scheduled.notification_id.clone(),
                requested_at: now,
            },
        )])
    }
}

/// The stream name of a notification.
pub fn notification_stream(notification_id: &NotificationId) -> String {
    format!("notification-{notification_id}")
}
