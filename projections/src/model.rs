//! The read model and its fold. `apply` takes events in global order and never fails: events
//! are facts. It asserts what must hold (known streams, positions in order).

use std::collections::{BTreeMap, BTreeSet, HashMap};

use chrono::{DateTime, Utc};
use paycenter_domain::envelope::RecordedEvent;
use paycenter_domain::events::*;
use paycenter_domain::ids::*;
use paycenter_domain::notification::{Notification, NotificationStatus};
use paycenter_domain::payment::{
    AnomalyKind, AttemptStatus, Channel, InvokeMethod, RefundKind, RefundStatus, Split,
};
use paycenter_domain::vocabulary::WebhookType;
use paycenter_domain::Money;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

/// A refund as the API shows it.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundView {
    pub refund_id: RefundId,
    pub refund_no: RefundNo,
    pub trade_no: TradeNo,
    pub amount: Money,
    pub reason: String,
    pub kind: RefundKind,
    pub status: RefundStatus,
    pub requested_at: DateTime<Utc>,
    /// When it succeeded or failed.
    #[serde(default)]
    pub settled_at: Option<DateTime<Utc>>,
}

/// A verified report that contradicted its attempt, as the API shows it.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AnomalyView {
    pub kind: AnomalyKind,
    /// The channel account that reported it; the money is refunded there.
    pub channel_account_id: ChannelAccountId,
    pub channel_trade_no: ChannelTradeNo,
    pub reported_amount: Money,
    pub refund_id: RefundId,
    pub refund_status: RefundStatus,
    pub detected_at: DateTime<Utc>,
}

/// How the close of a superseded attempt at its own channel stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCloseView {
    /// `pending` until a try settles it: `closed`, `paid`, `gave_up`.
    pub status: String,
    /// Tries so far.
    pub attempts: u32,
    /// Why the last try failed, if it did.
    pub last_error: Option<String>,
}

/// Where a projection stopped, and why: an event it could not apply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Stopped {
    /// The position of the event it could not apply; it applied everything before.
    pub position: u64,
    /// That event's type.
    pub event_type: String,
    /// Why.
    pub reason: String,
}

/// A payment attempt as the API shows it.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PaymentView {
    pub trade_no: TradeNo,
    pub order_no: OrderNo,
    pub channel_trade_no: Option<ChannelTradeNo>,
    /// The channel's handle before payment (Stripe's PaymentIntent id).
    #[serde(default)]
    pub channel_reference: Option<String>,
    /// The QR code paycenter's checkout page shows (WeChat Pay `pc` payments).
    #[serde(default)]
    pub checkout_qr_code: Option<String>,
    pub merchant_id: MerchantId,
    pub app_id: AppId,
    pub channel_account_id: ChannelAccountId,
    pub channel: Channel,
    pub invoke_method: InvokeMethod,
    pub amount: Money,
    pub fee: Money,
    pub subject: String,
    pub status: AttemptStatus,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Where the cashier sends the user back to (absent from snapshots made before it).
    #[serde(default)]
    pub return_url: Option<String>,
    pub paid_at: Option<DateTime<Utc>>,
    pub refunds: Vec<RefundView>,
    pub splits: Vec<Split>,
    /// Reports that contradicted this attempt, oldest first.
    #[serde(default)]
    pub anomalies: Vec<AnomalyView>,
    /// For an attempt superseded by a newer one: its close at its own channel.
    #[serde(default)]
    pub channel_close: Option<ChannelCloseView>,
    /// The order stream and its revision after the last event of this payment's order.
    pub order_stream: String,
}

impl PaymentView {
    /// Σ succeeded refunds.
    pub fn refunded(&self) -> Money {
        self.refunds
            .iter()
            .filter(|refund| refund.status == RefundStatus::Succeeded)
            .fold(Money::zero(self.amount.currency()), |sum, refund| {
                sum.checked_add(refund.amount).expect("refunds ≤ amount")
            })
    }
}

/// An event that an app must be told about, waiting for its notification to be scheduled.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationDraft {
    /// Derived from the source event id, so scheduling twice appends nothing new.
    pub notification_id: NotificationId,
    pub app_id: AppId,
    pub merchant_id: MerchantId,
    pub webhook_type: String,
    pub trade_no: TradeNo,
    pub refund_id: Option<RefundId>,
    pub occurred_at: DateTime<Utc>,
}

/// One entry of an app's event feed.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedItem {
    pub cursor: u64,
    pub notification_id: NotificationId,
    pub webhook_type: String,
    pub created_at: DateTime<Utc>,
    pub data: serde_json::Value,
}

/// Everything the service reads.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ReadModel {
    /// Last global position applied.
    pub position: u64,
    /// Merchants by id, with their names.
    pub merchants: HashMap<MerchantId, String>,
    /// Channel accounts by id: their latest activation.
    pub channel_accounts: HashMap<ChannelAccountId, ChannelAccountActivated>,
    /// Apps by id.
    pub apps: HashMap<AppId, AppRegistered>,
    /// App ids by hex SHA-256 of their API key.
    #[serde(skip)] // Derived from the rest: rebuilt by `reindex` after a load.
    pub apps_by_key_sha256: HashMap<String, AppId>,
    /// Rotated-out API keys (hex SHA-256) still accepted: their app and until when.
    #[serde(default)]
    pub previous_api_keys: HashMap<String, (AppId, DateTime<Utc>)>,
    /// Rotated-out webhook secrets (sealed) still signing beside the new one, until when.
    #[serde(default)]
    pub previous_webhook_secrets: HashMap<AppId, (String, DateTime<Utc>)>,
    /// Apps that are disabled.
    #[serde(default)]
    pub disabled_apps: std::collections::HashSet<AppId>,
    /// Channel accounts that are disabled (no new payments).
    #[serde(default)]
    pub disabled_channel_accounts: std::collections::HashSet<ChannelAccountId>,
    /// Payments by trade number.
    pub payments: HashMap<TradeNo, PaymentView>,
    /// Trade numbers by merchant and order number, oldest first.
    #[serde(skip)] // Derived from the rest: rebuilt by `reindex` after a load.
    /// An `order_no` lives in its app's namespace: keyed by app, merchant and order number.
    pub payments_by_order: HashMap<(AppId, MerchantId, OrderNo), Vec<TradeNo>>,
    /// Trade numbers by channel trade number.
    #[serde(skip)] // Derived from the rest: rebuilt by `reindex` after a load.
    pub payments_by_channel_trade_no: HashMap<ChannelTradeNo, TradeNo>,
    /// Trade number of each refund.
    #[serde(skip)] // Derived from the rest: rebuilt by `reindex` after a load.
    pub refund_trade_nos: HashMap<RefundId, TradeNo>,
    /// Revision of each order stream.
    pub order_revisions: HashMap<String, u64>,
    /// Notifications (the outbox) by id, with their stream revision.
    pub notifications: HashMap<NotificationId, (Notification, u64)>,
    /// Pending notifications by when their next attempt is due, soonest first: the dispatcher
    /// takes the head instead of scanning the whole outbox.
    #[serde(skip)] // Derived from the rest: rebuilt by `reindex` after a load.
    pub notifications_due: BTreeSet<(DateTime<Utc>, NotificationId)>,
    /// Payments the sweeper may have to ask about (pending, or paid with a refund pending), by
    /// when the oldest pending thing of each started: the sweeper reads the head, never every
    /// payment ever made.
    #[serde(skip)] // Derived from the rest: rebuilt by `reindex` after a load.
    pub sweep_queue: BTreeSet<(DateTime<Utc>, TradeNo)>,
    /// Payments by status, and anomalies by kind, kept as events arrive: what `/metrics`
    /// reports without walking every payment on each scrape.
    #[serde(skip)] // Derived from the rest: rebuilt by `reindex` after a load.
    pub status_counts: HashMap<&'static str, u64>,
    /// Anomalies by kind (see `status_counts`).
    #[serde(skip)]
    pub anomaly_counts: HashMap<&'static str, u64>,
    /// Each payment's key in `sweep_queue`.
    #[serde(skip)]
    sweep_keys: HashMap<TradeNo, DateTime<Utc>>,
    /// Anomalies the payment being applied had before the event (for `anomaly_counts`).
    #[serde(skip)]
    counted_anomalies_before: usize,
    /// Outcomes whose notification is not scheduled yet, by position.
    pub unscheduled: BTreeMap<u64, NotificationDraft>,
    /// Refunds requested and not settled, by position of their request.
    pub refunds_to_submit: BTreeMap<u64, RefundId>,
    /// Attempts superseded by a newer one and not yet closed at their own channel, by
    /// position of their close.
    #[serde(default)]
    pub closes_to_confirm: BTreeMap<u64, TradeNo>,
    /// Each app's feed, oldest first.
    pub feeds: HashMap<AppId, Vec<FeedItem>>,
    /// Double-entry balances.
    pub ledger: crate::balances::Ledger,
    /// Set when the balances projection stopped at an event it could not apply; the rest of
    /// the read model goes on.
    pub ledger_stopped: Option<Stopped>,
    /// Reconciliation results by id.
    pub reconciliations: HashMap<String, ReconciliationCompleted>,
    /// Aggregated cashiers by id.
    #[serde(default)]
    pub checkouts: HashMap<String, CheckoutOpened>,
}

/// When a notification's next attempt is due, while it is pending.
fn due_at(state: &Notification) -> Option<DateTime<Utc>> {
    match state.status {
        NotificationStatus::Pending => state.next_attempt_at,
        _ => None,
    }
}

/// The projection's name and version, as operators see them.
pub const NAME: &str = "read_model";
/// Bumped whenever `apply` changes what it derives: a new version needs a rebuild.
pub const VERSION: u32 = 2;

/// Feeds `hasher` every entry of a map in key order, so the digest does not depend on
/// hash-map iteration order.
fn hash_sorted<K: Ord + std::fmt::Debug, V: std::fmt::Debug>(
    hasher: &mut Sha256,
    label: &str,
    map: &HashMap<K, V>,
) {
    let mut entries: Vec<(&K, &V)> = map.iter().collect();
    entries.sort_by(|a, b| a.0.cmp(b.0));
    hasher.update(label.as_bytes());
    for (key, value) in entries {
        hasher.update(format!("{key:?}={value:?};").as_bytes());
    }
}

/// The notification id for the webhook caused by event `source_event_id`.
pub fn notification_id_for(source_event_id: Uuid) -> NotificationId {
    NotificationId::from_entropy(source_event_id.as_u128())
}

impl ReadModel {
    /// Applies one stored event. Events must come in global order without gaps.
    pub fn apply(&mut self, recorded: &RecordedEvent) {
        assert_eq!(
            recorded.global_position,
            self.position + 1,
            "the read model folds the log in order"
        );
        self.position = recorded.global_position;
        let event = match Event::decode(recorded) {
            Ok(event) => event,
            Err(error) => {
                // A type this version does not know (written by a newer one): skip it loudly.
                tracing::warn!(%error, "event skipped by the read model");
                return;
            }
        };
        if recorded.stream_id.starts_with("order-") {
            self.order_revisions
                .insert(recorded.stream_id.clone(), recorded.stream_revision);
        }
        let position = recorded.global_position;
        let touched_payment = event.trade_no().cloned();
        if let Some(payment) = touched_payment
            .as_ref()
            .and_then(|trade_no| self.payments.get(trade_no))
        {
            let (status, anomalies) = (payment.status, payment.anomalies.len());
            self.count_payment(status, -1);
            self.counted_anomalies_before = anomalies;
        } else {
            self.counted_anomalies_before = 0;
        }
        if self.ledger_stopped.is_none() {
            if let Err(error) = self.ledger.apply(&event) {
                tracing::error!(
                    position,
                    event_type = %recorded.event_type,
                    %error,
                    "the balances projection stopped"
                );
                self.ledger_stopped = Some(Stopped {
                    position,
                    event_type: recorded.event_type.clone(),
                    reason: error.to_string(),
                });
            }
        }
        match event {
            Event::MerchantOnboarded(event) => {
                self.merchants.insert(event.merchant_id, event.name);
            }
            Event::ChannelAccountActivated(event) => {
                self.channel_accounts
                    .insert(event.channel_account_id.clone(), event);
            }
            Event::AppRegistered(event) => {
                self.apps_by_key_sha256
                    .insert(event.api_key_sha256.clone(), event.app_id.clone());
                self.apps.insert(event.app_id.clone(), event);
            }
            Event::AppApiKeyRotated(event) => {
                self.apps_by_key_sha256
                    .remove(&event.previous_api_key_sha256);
                self.apps_by_key_sha256
                    .insert(event.api_key_sha256.clone(), event.app_id.clone());
                self.previous_api_keys
                    .retain(|_, (app_id, _)| app_id != &event.app_id);
                self.previous_api_keys.insert(
                    event.previous_api_key_sha256,
                    (event.app_id.clone(), event.previous_valid_until),
                );
                if let Some(app) = self.apps.get_mut(&event.app_id) {
                    app.api_key_sha256 = event.api_key_sha256;
                }
            }
            Event::AppWebhookSecretRotated(event) => {
                self.previous_webhook_secrets.insert(
                    event.app_id.clone(),
                    (
                        event.previous_webhook_secret_sealed,
                        event.previous_valid_until,
                    ),
                );
                if let Some(app) = self.apps.get_mut(&event.app_id) {
                    app.webhook_secret_sealed = event.webhook_secret_sealed;
                }
            }
            Event::AppAccessChanged(event) => {
                if event.enabled {
                    self.disabled_apps.remove(&event.app_id);
                } else {
                    self.disabled_apps.insert(event.app_id);
                }
            }
            Event::ChannelAccountAccessChanged(event) => {
                if event.enabled {
                    self.disabled_channel_accounts
                        .remove(&event.channel_account_id);
                } else {
                    self.disabled_channel_accounts
                        .insert(event.channel_account_id);
                }
            }
            Event::PaymentAttemptStarted(event) => {
                let view = PaymentView {
                    trade_no: event.trade_no.clone(),
                    order_no: event.order_no.clone(),
                    channel_trade_no: None,
                    channel_reference: None,
                    checkout_qr_code: None,
                    merchant_id: event.merchant_id.clone(),
                    app_id: event.app_id.clone(),
                    channel_account_id: event.channel_account_id.clone(),
                    channel: event.channel,
                    invoke_method: event.invoke_method,
                    amount: event.amount,
                    fee: event.fee,
                    subject: event.subject.clone(),
                    status: AttemptStatus::Pending,
                    created_at: event.started_at,
                    expires_at: event.expires_at,
                    return_url: event.return_url.clone(),
                    paid_at: None,
                    refunds: Vec::new(),
                    splits: event.splits.clone(),
                    anomalies: Vec::new(),
                    channel_close: None,
                    order_stream: recorded.stream_id.clone(),
                };
                self.payments_by_order
                    .entry((event.app_id, event.merchant_id, event.order_no))
                    .or_default()
                    .push(event.trade_no.clone());
                self.payments.insert(event.trade_no, view);
            }
            Event::PaymentAttemptInitiated(event) => {
                let payment = self.payment_mut(&event.trade_no);
                payment.channel_reference = event.channel_reference;
                payment.checkout_qr_code = event.checkout_qr_code;
            }
            Event::ChannelCloseAttempted(event) => {
                use paycenter_domain::events::ChannelCloseOutcome;
                if event.outcome != ChannelCloseOutcome::Failed {
                    self.closes_to_confirm
                        .retain(|_, trade_no| trade_no != &event.trade_no);
                }
                self.payment_mut(&event.trade_no).channel_close = Some(ChannelCloseView {
                    status: match event.outcome {
                        ChannelCloseOutcome::Closed => "closed",
                        ChannelCloseOutcome::Paid => "paid",
                        ChannelCloseOutcome::Failed => "pending",
                        ChannelCloseOutcome::GaveUp => "gave_up",
                    }
                    .to_owned(),
                    attempts: event.attempt_no,
                    last_error: event.error,
                });
            }
            Event::PaymentAttemptClosed(event) => {
                if event.reason == paycenter_domain::payment::CloseReason::Superseded {
                    // Closed in paycenter before its channel heard of it: the reactor closes it
                    // there, with its own account's parameters.
                    self.closes_to_confirm
                        .insert(position, event.trade_no.clone());
                    self.payment_mut(&event.trade_no).channel_close = Some(ChannelCloseView {
                        status: "pending".to_owned(),
                        attempts: 0,
                        last_error: None,
                    });
                }
                let payment = self.payment_mut(&event.trade_no);
                payment.status = AttemptStatus::Closed;
                let draft = self.draft(
                    recorded.event_id,
                    &event.trade_no,
                    WebhookType::PaymentClosed.as_str(),
                    None,
                    event.closed_at,
                );
                self.unscheduled.insert(position, draft);
            }
            Event::PaymentSucceeded(event) => {
                let payment = self.payment_mut(&event.trade_no);
                payment.status = AttemptStatus::Succeeded;
                payment.channel_trade_no = Some(event.channel_trade_no.clone());
                payment.paid_at = Some(event.paid_at);
                self.payments_by_channel_trade_no
                    .insert(event.channel_trade_no, event.trade_no.clone());
                let draft = self.draft(
                    recorded.event_id,
                    &event.trade_no,
                    WebhookType::PaymentSucceeded.as_str(),
                    None,
                    event.paid_at,
                );
                self.unscheduled.insert(position, draft);
            }
            Event::PaymentFailed(event) => {
                self.payment_mut(&event.trade_no).status = AttemptStatus::Failed;
                let draft = self.draft(
                    recorded.event_id,
                    &event.trade_no,
                    WebhookType::PaymentFailed.as_str(),
                    None,
                    event.failed_at,
                );
                self.unscheduled.insert(position, draft);
            }
            // Idempotency records are read from their own stream when a key is reused.
            // Failed looks of the daily reconciliation are kept in the log for audits only.
            Event::DuplicatePaymentDetected(_)
            | Event::IdempotencyKeyRecorded(_)
            | Event::ReconciliationFetchFailed(_) => {}
            Event::CheckoutOpened(opened) => {
                self.checkouts.insert(opened.checkout_id.clone(), opened);
            }
            Event::ReconciliationCompleted(completed) => {
                self.reconciliations
                    .insert(completed.reconciliation_id.clone(), completed);
            }
            Event::RefundRequested(event) => {
                self.refund_trade_nos
                    .insert(event.refund_id.clone(), event.trade_no.clone());
                self.refunds_to_submit
                    .insert(position, event.refund_id.clone());
                self.payment_mut(&event.trade_no).refunds.push(RefundView {
                    refund_id: event.refund_id,
                    refund_no: event.refund_no,
                    trade_no: event.trade_no.clone(),
                    amount: event.amount,
                    reason: event.reason,
                    kind: event.kind,
                    status: RefundStatus::Pending,
                    requested_at: event.requested_at,
                    settled_at: None,
                });
            }
            Event::PaymentAnomalyDetected(event) => {
                self.refund_trade_nos
                    .insert(event.refund_id.clone(), event.trade_no.clone());
                self.refunds_to_submit
                    .insert(position, event.refund_id.clone());
                self.payment_mut(&event.trade_no)
                    .anomalies
                    .push(AnomalyView {
                        kind: event.kind,
                        channel_account_id: event.channel_account_id,
                        channel_trade_no: event.channel_trade_no,
                        reported_amount: event.reported_amount,
                        refund_id: event.refund_id,
                        refund_status: RefundStatus::Pending,
                        detected_at: event.detected_at,
                    });
                let draft = self.draft(
                    recorded.event_id,
                    &event.trade_no,
                    WebhookType::PaymentAnomalyDetected.as_str(),
                    None,
                    event.detected_at,
                );
                self.unscheduled.insert(position, draft);
            }
            Event::RefundSucceeded(event) => {
                if self.settle_refund(
                    &event.trade_no,
                    &event.refund_id,
                    RefundStatus::Succeeded,
                    event.succeeded_at,
                ) {
                    return; // An anomaly's refund: shown on the payment, no webhook of its own.
                }
                let draft = self.draft(
                    recorded.event_id,
                    &event.trade_no,
                    WebhookType::RefundSucceeded.as_str(),
                    Some(event.refund_id),
                    event.succeeded_at,
                );
                self.unscheduled.insert(position, draft);
            }
            Event::RefundFailed(event) => {
                if self.settle_refund(
                    &event.trade_no,
                    &event.refund_id,
                    RefundStatus::Failed,
                    event.failed_at,
                ) {
                    return;
                }
                let draft = self.draft(
                    recorded.event_id,
                    &event.trade_no,
                    WebhookType::RefundFailed.as_str(),
                    Some(event.refund_id),
                    event.failed_at,
                );
                self.unscheduled.insert(position, draft);
            }
            Event::NotificationScheduled(scheduled) => {
                self.unscheduled
                    .retain(|_, draft| draft.notification_id != scheduled.notification_id);
                self.feeds
                    .entry(scheduled.app_id.clone())
                    .or_default()
                    .push(FeedItem {
                        cursor: position,
                        notification_id: scheduled.notification_id.clone(),
                        webhook_type: scheduled.webhook_type.clone(),
                        created_at: scheduled.created_at,
                        data: scheduled.data.clone(),
                    });
                let notification_id = scheduled.notification_id.clone();
                let state = Notification::from_events([&Event::NotificationScheduled(scheduled)])
                    .expect("scheduled");
                if let Some(at) = due_at(&state) {
                    self.notifications_due.insert((at, notification_id.clone()));
                }
                self.notifications
                    .insert(notification_id, (state, recorded.stream_revision));
            }
            Event::WebhookAttempted(WebhookAttempted {
                ref notification_id,
                ..
            })
            | Event::NotificationDelivered(NotificationDelivered {
                ref notification_id,
                ..
            })
            | Event::NotificationFailed(NotificationFailed {
                ref notification_id,
                ..
            })
            | Event::NotificationRedeliveryRequested(NotificationRedeliveryRequested {
                ref notification_id,
                ..
            }) => {
                let notification_id = notification_id.clone();
                let (state, revision) = self
                    .notifications
                    .remove(&notification_id)
                    .expect("notification events follow scheduling");
                if let Some(at) = due_at(&state) {
                    self.notifications_due
                        .remove(&(at, notification_id.clone()));
                }
                let mut state = Some(state);
                Notification::apply(&mut state, &event);
                if let Some(at) = state.as_ref().and_then(due_at) {
                    self.notifications_due.insert((at, notification_id.clone()));
                }
                assert_eq!(
                    recorded.stream_revision,
                    revision + 1,
                    "notification revisions are gap-free"
                );
                self.notifications.insert(
                    notification_id,
                    (state.expect("still scheduled"), recorded.stream_revision),
                );
            }
        }
        if let Some(trade_no) = touched_payment {
            if let Some(payment) = self.payments.get(&trade_no) {
                let status = payment.status;
                let new_kinds: Vec<AnomalyKind> = payment.anomalies
                    [self.counted_anomalies_before.min(payment.anomalies.len())..]
                    .iter()
                    .map(|anomaly| anomaly.kind)
                    .collect();
                self.count_payment(status, 1);
                for kind in new_kinds {
                    *self.anomaly_counts.entry(kind.as_str()).or_default() += 1;
                }
            }
            self.requeue_for_sweep(&trade_no);
        }
    }

    fn count_payment(&mut self, status: AttemptStatus, change: i64) {
        let count = self.status_counts.entry(status.as_str()).or_default();
        *count = count
            .checked_add_signed(change)
            .expect("a payment counted before it is uncounted");
    }

    /// Puts `trade_no` where the sweeper will find it (or takes it out) after it changed.
    fn requeue_for_sweep(&mut self, trade_no: &TradeNo) {
        if let Some(old) = self.sweep_keys.remove(trade_no) {
            self.sweep_queue.remove(&(old, trade_no.clone()));
        }
        let Some(payment) = self.payments.get(trade_no) else {
            return;
        };
        let since = match payment.status {
            AttemptStatus::Pending => Some(payment.created_at),
            AttemptStatus::Succeeded => payment
                .refunds
                .iter()
                .filter(|refund| refund.status == RefundStatus::Pending)
                .map(|refund| refund.requested_at)
                .min(),
            AttemptStatus::Failed | AttemptStatus::Closed => None,
        };
        if let Some(since) = since {
            self.sweep_queue.insert((since, trade_no.clone()));
            self.sweep_keys.insert(trade_no.clone(), since);
        }
    }

    fn payment_mut(&mut self, trade_no: &TradeNo) -> &mut PaymentView {
        self.payments
            .get_mut(trade_no)
            .expect("payment events follow the attempt's start")
    }

    /// Settles a refund; true when it was the refund of an anomaly's money.
    fn settle_refund(
        &mut self,
        trade_no: &TradeNo,
        refund_id: &RefundId,
        status: RefundStatus,
        settled_at: DateTime<Utc>,
    ) -> bool {
        self.refunds_to_submit
            .retain(|_, pending| pending != refund_id);
        let payment = self.payment_mut(trade_no);
        if let Some(refund) = payment
            .refunds
            .iter_mut()
            .find(|refund| &refund.refund_id == refund_id)
        {
            refund.status = status;
            refund.settled_at = Some(settled_at);
            return false;
        }
        let anomaly = payment
            .anomalies
            .iter_mut()
            .find(|anomaly| &anomaly.refund_id == refund_id)
            .expect("refund was requested");
        anomaly.refund_status = status;
        true
    }

    fn draft(
        &self,
        source_event_id: Uuid,
        trade_no: &TradeNo,
        webhook_type: &'static str,
        refund_id: Option<RefundId>,
        occurred_at: DateTime<Utc>,
    ) -> NotificationDraft {
        let payment = &self.payments[trade_no];
        NotificationDraft {
            notification_id: notification_id_for(source_event_id),
            app_id: payment.app_id.clone(),
            merchant_id: payment.merchant_id.clone(),
            webhook_type: webhook_type.to_owned(),
            trade_no: trade_no.clone(),
            refund_id,
            occurred_at,
        }
    }

    /// A SHA-256 over a canonical dump of everything derived (maps in key order): two read
    /// models folded from the same log have the same digest, whatever order their hash maps
    /// keep. Used to check that a rebuild reproduces the live model byte for byte.
    pub fn digest(&self) -> String {
        let mut hasher = Sha256::new();
        hasher.update(format!("position={};", self.position).as_bytes());
        hash_sorted(&mut hasher, "merchants", &self.merchants);
        hash_sorted(&mut hasher, "channel_accounts", &self.channel_accounts);
        hash_sorted(&mut hasher, "apps", &self.apps);
        hash_sorted(&mut hasher, "apps_by_key", &self.apps_by_key_sha256);
        hash_sorted(&mut hasher, "previous_api_keys", &self.previous_api_keys);
        hash_sorted(
            &mut hasher,
            "previous_webhook_secrets",
            &self.previous_webhook_secrets,
        );
        let mut disabled: Vec<String> = self
            .disabled_apps
            .iter()
            .map(ToString::to_string)
            .chain(
                self.disabled_channel_accounts
                    .iter()
                    .map(ToString::to_string),
            )
            .collect();
        disabled.sort();
        hasher.update(format!("disabled={disabled:?};").as_bytes());
        hash_sorted(&mut hasher, "payments", &self.payments);
        hash_sorted(&mut hasher, "payments_by_order", &self.payments_by_order);
        hash_sorted(
            &mut hasher,
            "payments_by_channel_trade_no",
            &self.payments_by_channel_trade_no,
        );
        hash_sorted(&mut hasher, "refund_trade_nos", &self.refund_trade_nos);
        hash_sorted(&mut hasher, "order_revisions", &self.order_revisions);
        hash_sorted(&mut hasher, "notifications", &self.notifications);
        hasher.update(
            format!(
                "unscheduled={:?};refunds_to_submit={:?};closes_to_confirm={:?};",
                self.unscheduled, self.refunds_to_submit, self.closes_to_confirm
            )
            .as_bytes(),
        );
        hash_sorted(&mut hasher, "feeds", &self.feeds);
        hash_sorted(&mut hasher, "reconciliations", &self.reconciliations);
        hash_sorted(&mut hasher, "checkouts", &self.checkouts);
        let mut merchants: Vec<&MerchantId> = self.merchants.keys().collect();
        merchants.sort();
        for merchant_id in merchants {
            hasher.update(
                format!(
                    "balances {merchant_id}={:?};",
                    self.ledger.merchant_balances(merchant_id)
                )
                .as_bytes(),
            );
        }
        hasher.update(format!("totals={:?}", self.ledger.totals()).as_bytes());
        hasher.update(format!("ledger_stopped={:?}", self.ledger_stopped).as_bytes());
        hex::encode(hasher.finalize())
    }

    /// Folds the log from position 1 up to `until_position` (inclusive) into a fresh model.
    pub fn fold_from_start(
        store: &dyn paycenter_store::EventStore,
        until_position: u64,
    ) -> Result<ReadModel, paycenter_store::StoreError> {
        let mut model = ReadModel::default();
        model.catch_up(store, until_position)?;
        Ok(model)
    }

    /// Applies the events after this model's position up to `until_position` (inclusive).
    pub fn catch_up(
        &mut self,
        store: &dyn paycenter_store::EventStore,
        until_position: u64,
    ) -> Result<(), paycenter_store::StoreError> {
        const PAGE_EVENTS: usize = 10_000;
        while self.position < until_position {
            let wanted = usize::try_from(until_position - self.position)
                .unwrap_or(usize::MAX)
                .min(PAGE_EVENTS);
            let page = store.read_all(self.position + 1, wanted)?;
            if page.is_empty() {
                break;
            }
            page.iter().for_each(|event| self.apply(event));
        }
        Ok(())
    }

    /// Rebuilds the lookup indexes from the state they index (after a snapshot load, which
    /// does not store them).
    pub fn reindex(&mut self) {
        self.status_counts.clear();
        self.anomaly_counts.clear();
        for payment in self.payments.values() {
            *self
                .status_counts
                .entry(payment.status.as_str())
                .or_default() += 1;
            for anomaly in &payment.anomalies {
                *self
                    .anomaly_counts
                    .entry(anomaly.kind.as_str())
                    .or_default() += 1;
            }
        }
        self.notifications_due = self
            .notifications
            .iter()
            .filter_map(|(id, (state, _))| Some((due_at(state)?, id.clone())))
            .collect();
        self.sweep_queue.clear();
        self.sweep_keys.clear();
        let trade_nos: Vec<TradeNo> = self.payments.keys().cloned().collect();
        for trade_no in &trade_nos {
            self.requeue_for_sweep(trade_no);
        }
        self.apps_by_key_sha256 = self
            .apps
            .values()
            .map(|app| (app.api_key_sha256.clone(), app.app_id.clone()))
            .collect();
        let mut attempts: Vec<&PaymentView> = self.payments.values().collect();
        // Attempts of one order start one after another: creation time orders them.
        attempts.sort_by(|a, b| (a.created_at, &a.trade_no).cmp(&(b.created_at, &b.trade_no)));
        self.payments_by_order.clear();
        for payment in attempts {
            self.payments_by_order
                .entry((
                    payment.app_id.clone(),
                    payment.merchant_id.clone(),
                    payment.order_no.clone(),
                ))
                .or_default()
                .push(payment.trade_no.clone());
        }
        self.payments_by_channel_trade_no = self
            .payments
            .values()
            .filter_map(|payment| {
                payment
                    .channel_trade_no
                    .clone()
                    .map(|channel_trade_no| (channel_trade_no, payment.trade_no.clone()))
            })
            .collect();
        self.refund_trade_nos = self
            .payments
            .values()
            .flat_map(|payment| {
                let refund_ids = payment.refunds.iter().map(|refund| &refund.refund_id);
                let anomaly_refund_ids = payment.anomalies.iter().map(|anomaly| &anomaly.refund_id);
                refund_ids
                    .chain(anomaly_refund_ids)
                    .map(|refund_id| (refund_id.clone(), payment.trade_no.clone()))
            })
            .collect();
    }

    /// All attempts of an app's order, oldest first.
    pub fn payments_of_order(
        &self,
        app_id: &AppId,
        merchant_id: &MerchantId,
        order_no: &OrderNo,
    ) -> Vec<&PaymentView> {
        self.payments_by_order
            .get(&(app_id.clone(), merchant_id.clone(), order_no.clone()))
            .map(|trade_nos| {
                trade_nos
                    .iter()
                    .map(|trade_no| &self.payments[trade_no])
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The app that owns a presented API key (hex SHA-256), if the key is current or still
    /// in its grace period at `now`.
    pub fn app_for_key(&self, api_key_sha256: &str, now: DateTime<Utc>) -> Option<&AppRegistered> {
        let app_id = match self.apps_by_key_sha256.get(api_key_sha256) {
            Some(app_id) => app_id,
            None => match self.previous_api_keys.get(api_key_sha256) {
                Some((app_id, valid_until)) if now < *valid_until => app_id,
                _ => return None,
            },
        };
        self.apps.get(app_id)
    }

    /// Notifications due at `now`, oldest due first, at most `limit`: read off the head of
    /// `notifications_due`, so the cost is `limit`'s, not the outbox's.
    pub fn due_notifications(&self, now: DateTime<Utc>, limit: usize) -> Vec<(&Notification, u64)> {
        self.notifications_due
            .iter()
            .take_while(|(at, _)| *at <= now)
            .take(limit)
            .filter_map(|(_, id)| self.notifications.get(id))
            .map(|(state, revision)| (state, *revision))
            .collect()
    }
}
