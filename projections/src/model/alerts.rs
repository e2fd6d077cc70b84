//! Alerts as the read model sees them: destinations, alerts (open and resolved, newest first),
//! the open one of each condition, deliveries due by deadline, and what the rules read that the
//! rest of the model does not keep (each app's webhook health, anomalies not yet alerted).

use chrono::{DateTime, Utc};
use paycenter_domain::alerts::{AlertChannelKind, AlertRule, Condition};
use paycenter_domain::events::*;
use paycenter_domain::ids::{AppId, TradeNo};
use paycenter_domain::vocabulary::AlertMessage;
use serde::{Deserialize, Serialize};

use super::ReadModel;
use crate::tables::{DescendingStep, Key, TableError};

/// An alert destination (its URL and secret sealed; never answered).
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertChannelView {
    pub alert_channel_id: String,
    pub kind: AlertChannelKind,
    pub url_sealed: String,
    pub url_shown: String,
    pub secret_sealed: Option<String>,
    pub at_mobiles: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// One message of an alert to one destination.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDeliveryView {
    pub alert_channel_id: String,
    pub message: AlertMessage,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// An alert.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertView {
    pub alert_id: String,
    pub rule: AlertRule,
    pub subject: String,
    pub summary: String,
    pub details: String,
    pub raised_at: DateTime<Utc>,
    pub resolved_at: Option<DateTime<Utc>>,
    pub resolution: Option<String>,
    pub deliveries: Vec<AlertDeliveryView>,
}

impl AlertView {
    /// `open` or `resolved`.
    pub fn status(&self) -> &'static str {
        if self.resolved_at.is_some() {
            "resolved"
        } else {
            "open"
        }
    }
}

/// A delivery to make: which message of which alert to which destination, and its attempt.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeliveryTask {
    pub alert_id: String,
    pub alert_channel_id: String,
    pub message: AlertMessage,
    /// The attempt this will be (1 for the first).
    pub attempt: u32,
}

impl DeliveryTask {
    fn key(&self) -> String {
        format!(
            "{}/{}/{}",
            self.alert_id,
            self.alert_channel_id,
            self.message.as_str()
        )
    }
}

/// What the webhook rule reads of one app.
#[allow(missing_docs)]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookHealth {
    /// The first failed attempt since the last delivery.
    pub failing_since: Option<DateTime<Utc>>,
    /// The last notification given up, since the last delivery.
    pub exhausted_at: Option<DateTime<Utc>>,
    pub last_delivered_at: Option<DateTime<Utc>>,
}

impl ReadModel {
    /// Folds what alerts and their rules read; called with every event before the model's own
    /// fold.
    pub(super) fn apply_alert_inputs(&mut self, event: &Event, position: u64) {
        match event {
            Event::AlertChannelCreated(created) => {
                self.alert_channels.insert(
                    created.alert_channel_id.clone(),
                    AlertChannelView {
                        alert_channel_id: created.alert_channel_id.clone(),
                        kind: created.kind,
                        url_sealed: created.url_sealed.clone(),
                        url_shown: created.url_shown.clone(),
                        secret_sealed: created.secret_sealed.clone(),
                        at_mobiles: created.at_mobiles.clone(),
                        created_at: created.created_at,
                    },
                );
            }
            Event::AlertChannelDeleted(deleted) => {
                self.alert_channels.remove(&deleted.alert_channel_id);
            }
            Event::AlertRaised(raised) => self.apply_alert_raised(raised),
            Event::AlertResolved(resolved) => self.apply_alert_resolved(resolved),
            Event::AlertDelivered(delivered) => {
                let task = DeliveryTask {
                    alert_id: delivered.alert_id.clone(),
                    alert_channel_id: delivered.alert_channel_id.clone(),
                    message: delivered.message,
                    attempt: delivered.attempt,
                };
                self.unqueue_delivery(&task.key());
                self.update_delivery(&task, |delivery| {
                    delivery.status = "delivered".to_owned();
                    delivery.attempts = task.attempt;
                    delivery.next_attempt_at = None;
                });
            }
            Event::AlertDeliveryFailed(failed) => {
                let task = DeliveryTask {
                    alert_id: failed.alert_id.clone(),
                    alert_channel_id: failed.alert_channel_id.clone(),
                    message: failed.message,
                    attempt: failed.attempt,
                };
                self.unqueue_delivery(&task.key());
                if let Some(next) = failed.next_attempt_at {
                    self.queue_delivery(
                        next,
                        DeliveryTask {
                            attempt: failed.attempt + 1,
                            ..task.clone()
                        },
                    );
                }
                self.update_delivery(&task, |delivery| {
                    delivery.status = if failed.next_attempt_at.is_some() {
                        "pending".to_owned()
                    } else {
                        "failed".to_owned()
                    };
                    delivery.attempts = task.attempt;
                    delivery.last_error = Some(failed.error.clone());
                    delivery.next_attempt_at = failed.next_attempt_at;
                });
            }
            Event::WebhookAttempted(attempted) if !attempted.succeeded => {
                if let Some(app_id) = self.notification_app(&attempted.notification_id) {
                    let health = self.webhook_health.get_or_default(&app_id);
                    health.failing_since.get_or_insert(attempted.attempted_at);
                }
            }
            Event::NotificationDelivered(delivered) => {
                if let Some(app_id) = self.notification_app(&delivered.notification_id) {
                    let health = self.webhook_health.get_or_default(&app_id);
                    *health = WebhookHealth {
                        last_delivered_at: Some(delivered.delivered_at),
                        ..WebhookHealth::default()
                    };
                }
            }
            Event::NotificationFailed(failed) => {
                if let Some(app_id) = self.notification_app(&failed.notification_id) {
                    self.webhook_health.get_or_default(&app_id).exhausted_at =
                        Some(failed.failed_at);
                }
            }
            Event::PaymentAnomalyDetected(detected) => {
                self.anomalies_unalerted
                    .insert(detected.trade_no.clone(), position);
            }
            _ => {}
        }
    }

    fn notification_app(
        &self,
        notification_id: &paycenter_domain::ids::NotificationId,
    ) -> Option<AppId> {
        self.notifications
            .peek(notification_id, |(notification, _)| {
                notification.scheduled.app_id.clone()
            })
    }

    fn apply_alert_raised(&mut self, raised: &AlertRaised) {
        let condition = Condition {
            rule: raised.rule,
            subject: raised.subject.clone(),
        };
        if raised.rule == AlertRule::Anomaly {
            if let Ok(trade_no) = TradeNo::parse(&raised.subject) {
                self.anomalies_unalerted.remove(&trade_no);
            }
        }
        self.open_alerts
            .insert(condition.stream(), (condition, raised.alert_id.clone()));
        // Every destination known now gets the message, in the log's order on every node.
        let mut channel_ids: Vec<String> = self.alert_channels.keys().cloned().collect();
        channel_ids.sort();
        let deliveries = channel_ids
            .iter()
            .map(|alert_channel_id| {
                self.queue_delivery(
                    raised.raised_at,
                    DeliveryTask {
                        alert_id: raised.alert_id.clone(),
                        alert_channel_id: alert_channel_id.clone(),
                        message: AlertMessage::Raised,
                        attempt: 1,
                    },
                );
                pending_delivery(alert_channel_id, AlertMessage::Raised)
            })
            .collect();
        self.alerts_listed.insert(
            &(raised.raised_at, raised.alert_id.clone()),
            raised.alert_id.clone(),
        );
        self.alerts.insert(
            raised.alert_id.as_str(),
            AlertView {
                alert_id: raised.alert_id.clone(),
                rule: raised.rule,
                subject: raised.subject.clone(),
                summary: raised.summary.clone(),
                details: raised.details.clone(),
                raised_at: raised.raised_at,
                resolved_at: None,
                resolution: None,
                deliveries,
            },
        );
    }

    fn apply_alert_resolved(&mut self, resolved: &AlertResolved) {
        let Some(mut alert) = self.alerts.get(resolved.alert_id.as_str()) else {
            return;
        };
        let condition = Condition {
            rule: alert.rule,
            subject: alert.subject.clone(),
        };
        self.open_alerts.remove(&condition.stream());
        alert.resolved_at = Some(resolved.resolved_at);
        alert.resolution = Some(resolved.summary.clone());
        // The resolve message goes where the raise went.
        let mut channel_ids: Vec<String> = alert
            .deliveries
            .iter()
            .filter(|delivery| delivery.message == AlertMessage::Raised)
            .map(|delivery| delivery.alert_channel_id.clone())
            .collect();
        channel_ids.sort();
        channel_ids.dedup();
        for alert_channel_id in channel_ids {
            self.queue_delivery(
                resolved.resolved_at,
                DeliveryTask {
                    alert_id: alert.alert_id.clone(),
                    alert_channel_id: alert_channel_id.clone(),
                    message: AlertMessage::Resolved,
                    attempt: 1,
                },
            );
            alert
                .deliveries
                .push(pending_delivery(&alert_channel_id, AlertMessage::Resolved));
        }
        self.alerts.insert(resolved.alert_id.as_str(), alert);
    }

    fn queue_delivery(&mut self, due: DateTime<Utc>, task: DeliveryTask) {
        let key = task.key();
        self.alert_deliveries_due.insert(&(due, key.clone()), task);
        self.alert_delivery_due_at.insert(key.as_str(), due);
    }

    fn unqueue_delivery(&mut self, key: &str) {
        if let Some(due) = self.alert_delivery_due_at.remove(key) {
            self.alert_deliveries_due.delete(&(due, key.to_owned()));
        }
    }

    fn update_delivery(
        &mut self,
        task: &DeliveryTask,
        change: impl FnOnce(&mut AlertDeliveryView),
    ) {
        let Some(mut alert) = self.alerts.get(task.alert_id.as_str()) else {
            return;
        };
        if let Some(delivery) = alert.deliveries.iter_mut().find(|delivery| {
            delivery.alert_channel_id == task.alert_channel_id && delivery.message == task.message
        }) {
            change(delivery);
        }
        self.alerts.insert(task.alert_id.as_str(), alert);
    }

    /// The alert `alert_id`.
    pub fn alert(&self, alert_id: &str) -> Result<Option<AlertView>, TableError> {
        self.alerts.try_get(alert_id)
    }

    /// One step of the alerts list, newest first, below `below` (a key this step answered).
    pub fn alerts_step(&self, below: Option<&[u8]>) -> Result<DescendingStep<String>, TableError> {
        let end = below.map_or_else(|| vec![u8::MAX; 9], <[u8]>::to_vec);
        self.alerts_listed
            .range_desc(&[], &end, super::LIST_STEP_ROWS)
    }

    /// Where the alerts list continues after `alert_id`.
    pub fn alert_list_key(&self, alert_id: &str) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self
            .alerts
            .try_get(alert_id)?
            .map(|alert| (alert.raised_at, alert.alert_id).encoded()))
    }

    /// Alert destinations, by id.
    pub fn alert_channels(&self) -> Vec<&AlertChannelView> {
        let mut channels: Vec<&AlertChannelView> = self.alert_channels.values().collect();
        channels.sort_by(|a, b| a.alert_channel_id.cmp(&b.alert_channel_id));
        channels
    }

    /// The destination `alert_channel_id`.
    pub fn alert_channel(&self, alert_channel_id: &str) -> Option<&AlertChannelView> {
        self.alert_channels.get(alert_channel_id)
    }

    /// Deliveries due at `now`, the earliest first, at most `limit`.
    pub fn alert_deliveries_due(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<DeliveryTask>, TableError> {
        let end = (now, String::new()).encoded();
        self.alert_deliveries_due.range(&[], &end, limit)
    }

    /// The open alert of each condition: (condition, alert id).
    pub fn open_alerts(&self) -> Vec<(Condition, String)> {
        self.open_alerts.values().cloned().collect()
    }

    /// Each app's webhook health.
    pub fn webhook_health(&self) -> Vec<(AppId, WebhookHealth)> {
        self.webhook_health
            .iter()
            .map(|(app_id, health)| (app_id.clone(), health.clone()))
            .collect()
    }

    /// Payments with an anomaly no alert has been raised for yet.
    pub fn anomalies_unalerted(&self) -> Vec<TradeNo> {
        self.anomalies_unalerted.keys().cloned().collect()
    }
}

fn pending_delivery(alert_channel_id: &str, message: AlertMessage) -> AlertDeliveryView {
    AlertDeliveryView {
        alert_channel_id: alert_channel_id.to_owned(),
        message,
        status: "pending".to_owned(),
        attempts: 0,
        last_error: None,
        next_attempt_at: None,
    }
}
