//! The webhook notification aggregate: schedule, retries, exhaustion, redelivery.

use chrono::{DateTime, Duration, TimeZone, Utc};
use paycenter_domain::events::*;
use paycenter_domain::ids::*;
use paycenter_domain::notification::*;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn scheduled() -> Notification {
    let event = Event::NotificationScheduled(NotificationScheduled {
        notification_id: NotificationId::from_entropy(1),
        app_id: AppId::from_entropy(1),
        merchant_id: MerchantId::from_entropy(1),
        webhook_type: "payment.succeeded".into(),
        data: serde_json::json!({"trade_no": "1"}),
        created_at: t0(),
    });
    Notification::from_events([&event]).unwrap()
}

fn apply_all(notification: Notification, events: &[Event]) -> Notification {
    let mut state = Some(notification);
    events
        .iter()
        .for_each(|event| Notification::apply(&mut state, event));
    state.unwrap()
}

fn failed_attempt() -> DeliveryOutcome {
    DeliveryOutcome {
        http_status: Some(500),
        error: None,
    }
}

#[test]
fn the_default_schedule_is_the_documented_one() {
    let schedule = RetrySchedule::default();
    let minutes: Vec<u64> = schedule
        .retry_delays_ms
        .iter()
        .map(|ms| ms / 1000)
        .collect();
    assert_eq!(
        minutes,
        [15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600]
    );
    assert_eq!(schedule.max_attempts(), 16);
}

#[test]
fn failures_follow_the_schedule_then_give_up() {
    let schedule = RetrySchedule {
        retry_delays_ms: vec![1_000, 2_000],
    };
    let mut notification = scheduled();
    let mut now = t0();
    let mut expected_waits = vec![1_000, 2_000].into_iter();
    loop {
        let events = notification
            .decide_attempt(&failed_attempt(), &schedule, now)
            .unwrap();
        notification = apply_all(notification, &events);
        match notification.status {
            NotificationStatus::Pending => {
                let next = notification.next_attempt_at.unwrap();
                assert_eq!(
                    (next - now).num_milliseconds(),
                    expected_waits.next().unwrap()
                );
                now = next;
            }
            NotificationStatus::Failed => {
                assert_eq!(events.last().unwrap().event_type(), "notification.failed");
                break;
            }
            NotificationStatus::Delivered => unreachable!(),
        }
    }
    assert_eq!(notification.n_attempts_total, 3);
    assert!(notification
        .decide_attempt(&failed_attempt(), &schedule, now)
        .is_err());
    // Redelivery starts a fresh round.
    let events = notification
        .decide_redeliver(now + Duration::hours(1))
        .unwrap();
    let notification = apply_all(notification, &events);
    assert_eq!(notification.status, NotificationStatus::Pending);
    let ok = DeliveryOutcome {
        http_status: Some(204),
        error: None,
    };
    let events = notification
        .decide_attempt(&ok, &schedule, now + Duration::hours(1))
        .unwrap();
    let Event::WebhookAttempted(attempt) = &events[0] else {
        unreachable!()
    };
    assert_eq!(attempt.attempt_no, 4);
    assert_eq!(
        apply_all(notification, &events).status,
        NotificationStatus::Delivered
    );
}

#[test]
fn only_2xx_acknowledges() {
    for (status, acknowledged) in [
        (200, true),
        (299, true),
        (301, false),
        (404, false),
        (500, false),
    ] {
        assert_eq!(
            DeliveryOutcome {
                http_status: Some(status),
                error: None
            }
            .acknowledged(),
            acknowledged,
            "{status}"
        );
    }
    assert!(!DeliveryOutcome {
        http_status: None,
        error: Some("refused".into())
    }
    .acknowledged());
}
