//! The read model and its fold. `apply` takes events in global order and never fails: events
//! are facts. It asserts what must hold (known streams, positions in order).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use paycenter_domain::envelope::RecordedEvent;
use paycenter_domain::events::*;
use paycenter_domain::ids::*;
use paycenter_domain::notification::{Notification, NotificationStatus};
use paycenter_domain::payment::{
    AnomalyKind, AttemptStatus, Channel, InvokeMethod, RefundKind, RefundStatus, Split,
};
use paycenter_domain::vocabulary::{PayoutStatus, ShareStatus, WebhookType};
use paycenter_domain::Money;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::tables::{prefix_end, Backing, Checkpoint, Key, Map, Resident, Retired, TableError};

mod alerts;
mod lists;
mod operators;
pub use alerts::*;
pub use lists::*;
pub use operators::*;

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

impl RefundView {
    /// The refund as it was requested (the `refund.created` entry of the feed).
    pub fn as_requested(&self) -> RefundView {
        RefundView {
            status: RefundStatus::Pending,
            settled_at: None,
            ..self.clone()
        }
    }
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
    /// How routing chose the account, for `"route": "auto"` payments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteRecord>,
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
    /// Whether its splits are paid at the channel (`none`: ledger only).
    #[serde(default)]
    pub share_mode: paycenter_domain::vocabulary::ShareMode,
    /// Its share at the channel, once asked for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub share: Option<ShareView>,
}

/// A payout as it stands.
#[allow(missing_docs)] // Fields are named for what they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutView {
    pub requested: paycenter_domain::events::PayoutRequested,
    pub status: PayoutStatus,
    pub channel_payout_no: Option<String>,
    pub failure_reason: Option<String>,
    pub settled_at: Option<DateTime<Utc>>,
    /// What the receiving user confirms the payout with, while the channel waits for it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub confirmation: Option<PayoutConfirmationView>,
}

/// What a payout waiting for its user needs on the user's side (`wx.requestMerchantTransfer`).
#[allow(missing_docs)] // Fields are named for what they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutConfirmationView {
    pub package_info: String,
    pub channel_merchant_id: String,
    pub channel_app_id: String,
}

/// A payment's share at the channel: what each receiver gets and where each stands.
#[allow(missing_docs)] // Fields are named for what they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareView {
    pub share_id: String,
    pub lines: Vec<ShareLineView>,
    /// Failures of this share so far, and the channel's last words.
    pub failures: u32,
    pub last_error: Option<String>,
}

/// One receiver's share.
#[allow(missing_docs)] // Fields are named for what they hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShareLineView {
    pub receiver: String,
    pub amount: Money,
    /// What it gave back for refunds.
    pub returned: Money,
    pub status: paycenter_domain::vocabulary::ShareStatus,
}

impl PaymentView {
    /// The payment as it was when it started (the `payment.created` entry of the feed): what
    /// its start set, with everything later events change back to its initial value. Every
    /// field is named, so a new one must be placed on one side or the other.
    pub fn as_started(&self) -> PaymentView {
        PaymentView {
            trade_no: self.trade_no.clone(),
            order_no: self.order_no.clone(),
            channel_trade_no: None,
            channel_reference: None,
            checkout_qr_code: None,
            merchant_id: self.merchant_id.clone(),
            app_id: self.app_id.clone(),
            channel_account_id: self.channel_account_id.clone(),
            channel: self.channel,
            invoke_method: self.invoke_method,
            amount: self.amount,
            fee: self.fee,
            subject: self.subject.clone(),
            status: AttemptStatus::Pending,
            created_at: self.created_at,
            expires_at: self.expires_at,
            return_url: self.return_url.clone(),
            route: self.route.clone(),
            paid_at: None,
            refunds: Vec::new(),
            splits: self.splits.clone(),
            anomalies: Vec::new(),
            channel_close: None,
            order_stream: self.order_stream.clone(),
            share_mode: self.share_mode,
            share: None,
        }
    }

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
    pub subject: NotificationSubject,
    pub occurred_at: DateTime<Utc>,
}

/// What a notification tells of: its payload is that thing as it stands when scheduled.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum NotificationSubject {
    /// A payment, and the refund the outcome is about, if any.
    Payment {
        /// The payment.
        trade_no: TradeNo,
        /// The refund.
        refund_id: Option<RefundId>,
    },
    /// A payout.
    Payout {
        /// The payout.
        payout_id: String,
    },
}

/// One entry of an app's event feed.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeedItem {
    pub cursor: u64,
    /// The notification's id, or for an entry with no webhook the `evt_` id of its event.
    pub id: String,
    pub event_type: String,
    pub created_at: DateTime<Utc>,
    pub data: FeedData,
}

/// What a feed entry carries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum FeedData {
    /// A webhook's payload, as scheduled.
    Notification(serde_json::Value),
    /// `payment.created`: the payment as it started ([`PaymentView::as_started`]).
    PaymentCreated(TradeNo),
    /// `refund.created`: the refund as requested ([`RefundView::as_requested`]).
    RefundCreated(TradeNo, RefundId),
}

/// The feed's `evt_` id of an event that has no webhook.
pub fn feed_event_id(event_id: Uuid) -> String {
    format!("evt_{}", event_id.simple())
}

/// What the read model keeps as single values, written with every commit.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Scalars {
    status_counts: BTreeMap<String, u64>,
    anomaly_counts: BTreeMap<String, u64>,
    /// Attempts recorded on an order stream named before order numbers lived in their app's
    /// namespace; absent in files written before it was counted (unknown).
    #[serde(default)]
    older_order_streams: Option<u64>,
}

/// Committed entries each table keeps in memory besides its file (see `tables::Map`): the
/// payments and notifications just written are the ones read next. Bounded: a few MB in all.
const RECENT_PAYMENTS: usize = 8_192;
const RECENT_NOTIFICATIONS: usize = 4_096;
const RECENT_OTHER: usize = 1_024;

/// Every table of the model, with its space (and, for a `Map`, how many committed entries it
/// keeps in memory): `open`, `commit` and `digest` walk this one list, so a table added here is
/// attached, written and digested alike.
macro_rules! model_tables {
    ($apply:ident) => {
        $apply! {
            resident: [
                (merchants, MERCHANTS),
                (channel_accounts, CHANNEL_ACCOUNTS),
                (apps, APPS),
                (apps_by_key_sha256, APPS_BY_KEY),
                (previous_api_keys, PREVIOUS_API_KEYS),
                (previous_webhook_secrets, PREVIOUS_WEBHOOK_SECRETS),
                (disabled_apps, DISABLED_APPS),
                (disabled_channel_accounts, DISABLED_CHANNEL_ACCOUNTS),
                (channel_accounts_created, CHANNEL_ACCOUNTS_CREATED),
                (stats_currencies, STATS_CURRENCIES),
                (operators, OPERATORS),
                (alert_channels, ALERT_CHANNELS),
                (open_alerts, OPEN_ALERTS),
                (webhook_health, WEBHOOK_HEALTH),
                (anomalies_unalerted, ANOMALIES_UNALERTED),
                (routing, ROUTING),
                (breakers, BREAKERS),
                (receivers, RECEIVERS),
            ],
            mapped: [
                (payments, PAYMENTS, RECENT_PAYMENTS),
                (orders_under_older_names, ORDERS_UNDER_OLDER_NAMES, RECENT_OTHER),
                (payments_by_channel_trade_no, PAYMENTS_BY_CHANNEL_TRADE_NO, RECENT_OTHER),
                (refund_trade_nos, REFUND_TRADE_NOS, RECENT_OTHER),
                (settlements, SETTLEMENTS, RECENT_OTHER),
                (notifications, NOTIFICATIONS, RECENT_NOTIFICATIONS),
                (notifications_due, NOTIFICATIONS_DUE, RECENT_OTHER),
                (notifications_by_app, NOTIFICATIONS_BY_APP, RECENT_OTHER),
                (feeds, FEEDS, RECENT_OTHER),
                (unscheduled, UNSCHEDULED, RECENT_OTHER),
                (unscheduled_positions, UNSCHEDULED_POSITIONS, RECENT_OTHER),
                (sweep_queue, SWEEP_QUEUE, RECENT_OTHER),
                (sweep_keys, SWEEP_KEYS, RECENT_OTHER),
                (shares_to_submit, SHARES_TO_SUBMIT, RECENT_OTHER),
                (share_positions, SHARE_POSITIONS, RECENT_OTHER),
                (payouts, PAYOUTS, RECENT_OTHER),
                (payouts_listed, PAYOUTS_LISTED, RECENT_OTHER),
                (payouts_to_submit, PAYOUTS_TO_SUBMIT, RECENT_OTHER),
                (payout_positions, PAYOUT_POSITIONS, RECENT_OTHER),
                (payouts_settled, PAYOUTS_SETTLED, RECENT_OTHER),
                (refunds_to_submit, REFUNDS_TO_SUBMIT, RECENT_OTHER),
                (refund_positions, REFUND_POSITIONS, RECENT_OTHER),
                (closes_to_confirm, CLOSES_TO_CONFIRM, RECENT_OTHER),
                (close_positions, CLOSE_POSITIONS, RECENT_OTHER),
                (reconciliations, RECONCILIATIONS, RECENT_OTHER),
                (scheduled_reconciliations, SCHEDULED_RECONCILIATIONS, RECENT_OTHER),
                (checkouts, CHECKOUTS, RECENT_OTHER),
                (payments_listed, PAYMENTS_LISTED, RECENT_OTHER),
                (payments_listed_by_app, PAYMENTS_LISTED_BY_APP, RECENT_OTHER),
                (payments_listed_by_merchant, PAYMENTS_LISTED_BY_MERCHANT, RECENT_OTHER),
                (refunds_listed, REFUNDS_LISTED, RECENT_OTHER),
                (refunds_listed_by_app, REFUNDS_LISTED_BY_APP, RECENT_OTHER),
                (refunds_listed_by_merchant, REFUNDS_LISTED_BY_MERCHANT, RECENT_OTHER),
                (reconciliations_listed, RECONCILIATIONS_LISTED, RECENT_OTHER),
                (reconciliations_listed_by_account, RECONCILIATIONS_LISTED_BY_ACCOUNT, RECENT_OTHER),
                (merchant_stats, MERCHANT_STATS, RECENT_OTHER),
                (actions, ACTIONS, RECENT_OTHER),
                (alerts, ALERTS, RECENT_OTHER),
                (alerts_listed, ALERTS_LISTED, RECENT_OTHER),
                (alert_deliveries_due, ALERT_DELIVERIES_DUE, RECENT_OTHER),
                (alert_delivery_due_at, ALERT_DELIVERY_DUE_AT, RECENT_OTHER),
            ]
        }
    };
}

/// The spaces of the read model's file: one per table, never reused for another.
mod space {
    pub const MERCHANTS: u16 = 1;
    pub const CHANNEL_ACCOUNTS: u16 = 2;
    pub const APPS: u16 = 3;
    pub const APPS_BY_KEY: u16 = 4;
    pub const PREVIOUS_API_KEYS: u16 = 5;
    pub const PREVIOUS_WEBHOOK_SECRETS: u16 = 6;
    pub const DISABLED_APPS: u16 = 7;
    pub const DISABLED_CHANNEL_ACCOUNTS: u16 = 8;
    pub const PAYMENTS: u16 = 10;
    // 11 held every order's trade numbers until version 8: a row per payment at a random place
    // in its tree. An order's attempts are read from its own stream now.
    pub const PAYMENTS_BY_CHANNEL_TRADE_NO: u16 = 12;
    pub const REFUND_TRADE_NOS: u16 = 13;
    // 14 held each order stream's revision until version 8's last files: written with every
    // order event and never read. Files written before keep those rows; nothing reads them,
    // the digest leaves them out, and a rebuild does not write them.
    pub const SETTLEMENTS: u16 = 15;
    pub const ORDERS_UNDER_OLDER_NAMES: u16 = 16;
    pub const NOTIFICATIONS: u16 = 20;
    pub const NOTIFICATIONS_DUE: u16 = 21;
    pub const NOTIFICATIONS_BY_APP: u16 = 22;
    pub const FEEDS: u16 = 23;
    pub const UNSCHEDULED: u16 = 24;
    pub const UNSCHEDULED_POSITIONS: u16 = 25;
    pub const SWEEP_QUEUE: u16 = 30;
    pub const SWEEP_KEYS: u16 = 31;
    pub const REFUNDS_TO_SUBMIT: u16 = 32;
    pub const REFUND_POSITIONS: u16 = 33;
    pub const CLOSES_TO_CONFIRM: u16 = 34;
    pub const CLOSE_POSITIONS: u16 = 35;
    pub const RECONCILIATIONS: u16 = 40;
    pub const SCHEDULED_RECONCILIATIONS: u16 = 41;
    pub const CHECKOUTS: u16 = 42;
    // 50 to 54 held the ledger until version 8 (now the balances projection's own file).
    pub const CHANNEL_ACCOUNTS_CREATED: u16 = 60;
    pub const STATS_CURRENCIES: u16 = 61;
    pub const PAYMENTS_LISTED: u16 = 62;
    pub const PAYMENTS_LISTED_BY_APP: u16 = 63;
    pub const PAYMENTS_LISTED_BY_MERCHANT: u16 = 64;
    pub const REFUNDS_LISTED: u16 = 65;
    pub const REFUNDS_LISTED_BY_APP: u16 = 66;
    pub const REFUNDS_LISTED_BY_MERCHANT: u16 = 67;
    pub const RECONCILIATIONS_LISTED: u16 = 68;
    pub const RECONCILIATIONS_LISTED_BY_ACCOUNT: u16 = 69;
    pub const MERCHANT_STATS: u16 = 70;
    pub const OPERATORS: u16 = 71;
    pub const ACTIONS: u16 = 72;
    pub const ALERT_CHANNELS: u16 = 73;
    pub const OPEN_ALERTS: u16 = 74;
    pub const WEBHOOK_HEALTH: u16 = 75;
    pub const ANOMALIES_UNALERTED: u16 = 76;
    pub const ALERTS: u16 = 77;
    pub const ALERTS_LISTED: u16 = 78;
    pub const ALERT_DELIVERIES_DUE: u16 = 79;
    pub const ALERT_DELIVERY_DUE_AT: u16 = 80;
    pub const ROUTING: u16 = 81;
    pub const BREAKERS: u16 = 82;
    pub const RECEIVERS: u16 = 83;
    pub const SHARES_TO_SUBMIT: u16 = 84;
    pub const SHARE_POSITIONS: u16 = 85;
    pub const PAYOUTS: u16 = 86;
    pub const PAYOUTS_LISTED: u16 = 87;
    pub const PAYOUTS_TO_SUBMIT: u16 = 88;
    pub const PAYOUT_POSITIONS: u16 = 89;
    pub const PAYOUTS_SETTLED: u16 = 90;
}

/// Everything the service reads. Queries are the methods below; what grows with history is
/// kept in the model's file when it has one ([`ReadModel::open`]), in memory otherwise.
#[derive(Debug, Default)]
pub struct ReadModel {
    /// Last global position applied.
    position: u64,
    /// SHA-256 of the event at `position`.
    hash_at_position: [u8; 32],
    /// The file, when the model has one.
    backing: Option<Arc<Backing>>,
    merchants: Resident<MerchantId, MerchantOnboarded>,
    /// When each channel account was first activated.
    channel_accounts_created: Resident<ChannelAccountId, DateTime<Utc>>,
    /// The currencies of each merchant's statistics.
    stats_currencies: Resident<MerchantId, Vec<String>>,
    /// Each channel account's latest activation.
    channel_accounts: Resident<ChannelAccountId, ChannelAccountActivated>,
    apps: Resident<AppId, AppRegistered>,
    /// App ids by hex SHA-256 of their API key.
    apps_by_key_sha256: Resident<String, AppId>,
    /// Rotated-out API keys (hex SHA-256) still accepted: their app and until when.
    previous_api_keys: Resident<String, (AppId, DateTime<Utc>)>,
    /// Rotated-out webhook secrets (sealed) still signing beside the new one, until when.
    previous_webhook_secrets: Resident<AppId, (String, DateTime<Utc>)>,
    disabled_apps: Resident<AppId, ()>,
    disabled_channel_accounts: Resident<ChannelAccountId, ()>,
    payments: Map<TradeNo, PaymentView>,
    /// The stream of each order recorded before order numbers lived in their app's namespace,
    /// by app, merchant and order number. Every other order's stream is
    /// `streams::order(app, merchant, order_no)`, and no row is kept for it.
    orders_under_older_names: Map<(AppId, MerchantId, OrderNo), String>,
    payments_by_channel_trade_no: Map<ChannelTradeNo, TradeNo>,
    /// Trade number of each refund (and of each anomaly's refund).
    refund_trade_nos: Map<RefundId, TradeNo>,
    /// Money that moved at a channel account (a payment paid, a refund succeeded), by account
    /// and instant: what a reconciliation of one account's day reads.
    settlements: Map<(ChannelAccountId, DateTime<Utc>, TradeNo), TradeNo>,
    /// Notifications (the outbox) with their stream revision.
    notifications: Map<NotificationId, (Notification, u64)>,
    /// Pending notifications by when their next attempt is due: the dispatcher reads the head.
    notifications_due: Map<(DateTime<Utc>, NotificationId), NotificationId>,
    /// Each app's notifications by creation.
    notifications_by_app: Map<(AppId, DateTime<Utc>, NotificationId), NotificationId>,
    /// Each app's feed by cursor.
    feeds: Map<(AppId, u64), FeedItem>,
    /// Outcomes whose notification is not scheduled yet, by position and id (one outcome may
    /// tell several apps), and the way back.
    unscheduled: Map<(u64, NotificationId), NotificationDraft>,
    unscheduled_positions: Map<NotificationId, u64>,
    /// Payments the sweeper may have to ask about (pending, or paid with a refund pending), by
    /// when the oldest pending thing of each started; and each one's key there.
    sweep_queue: Map<(DateTime<Utc>, TradeNo), TradeNo>,
    sweep_keys: Map<TradeNo, DateTime<Utc>>,
    /// Payouts by id, by when they were asked for (newest first: `(merchant or "", requested
    /// at, id)` keys, in all and by merchant), and those not settled by position (and back).
    payouts: Map<str, PayoutView>,
    payouts_listed: Map<(String, DateTime<Utc>, String), String>,
    payouts_to_submit: Map<u64, String>,
    payout_positions: Map<str, u64>,
    /// Payouts settled (paid or failed) by account and instant: what a reconciliation of one
    /// account's day asks the channel about.
    payouts_settled: Map<(ChannelAccountId, DateTime<Utc>, String), String>,
    /// Shares asked for and not settled, by position of their request (and the way back).
    shares_to_submit: Map<u64, TradeNo>,
    share_positions: Map<TradeNo, u64>,
    /// Refunds requested and not settled, by position of their request (and the way back).
    refunds_to_submit: Map<u64, RefundId>,
    refund_positions: Map<RefundId, u64>,
    /// Attempts superseded by a newer one and not yet closed at their own channel, by
    /// position of their close (and the way back).
    closes_to_confirm: Map<u64, TradeNo>,
    close_positions: Map<TradeNo, u64>,
    reconciliations: Map<str, ReconciliationCompleted>,
    /// Days the daily schedule reconciled, by account.
    scheduled_reconciliations: Map<(ChannelAccountId, String), ()>,
    /// Aggregated cashiers by id.
    checkouts: Map<str, CheckoutOpened>,
    /// Lists, newest first (see `lists`): payments and refunds by creation, in all, by app
    /// and by merchant; reconciliations by completion, in all and by account.
    payments_listed: Map<[u8], PaymentEntry>,
    payments_listed_by_app: Map<[u8], PaymentEntry>,
    payments_listed_by_merchant: Map<[u8], PaymentEntry>,
    refunds_listed: Map<[u8], RefundEntry>,
    refunds_listed_by_app: Map<[u8], RefundEntry>,
    refunds_listed_by_merchant: Map<[u8], RefundEntry>,
    reconciliations_listed: Map<[u8], ReconciliationEntry>,
    reconciliations_listed_by_account: Map<[u8], ReconciliationEntry>,
    /// Statistics by merchant, currency and quarter hour.
    merchant_stats: Map<(MerchantId, String, DateTime<Utc>), StatsBucket>,
    /// The console's operators.
    operators: Resident<OperatorId, OperatorView>,
    /// Events recorded in someone's name, by position (see `operators`).
    actions: Map<u64, ActionEntry>,
    /// Alert destinations, by id (see `alerts`).
    alert_channels: Resident<String, AlertChannelView>,
    /// The open alert of each condition, by the condition's stream.
    open_alerts: Resident<String, (paycenter_domain::alerts::Condition, String)>,
    /// What the webhook alert reads of each app.
    webhook_health: Resident<AppId, WebhookHealth>,
    /// Payments with an anomaly no alert was raised for yet, with the anomaly's position.
    anomalies_unalerted: Resident<TradeNo, u64>,
    /// Alerts by id, and by when they were raised (newest first).
    alerts: Map<str, AlertView>,
    alerts_listed: Map<(DateTime<Utc>, String), String>,
    /// Deliveries due, by deadline (and the way back from a delivery to its deadline).
    alert_deliveries_due: Map<(DateTime<Utc>, String), DeliveryTask>,
    alert_delivery_due_at: Map<str, DateTime<Utc>>,
    /// Each merchant's routing rules.
    routing: Resident<MerchantId, Vec<RoutingRule>>,
    /// Each channel account's breaker (absent: closed) and when it last changed.
    breakers: Resident<ChannelAccountId, (paycenter_domain::routing::BreakerState, DateTime<Utc>)>,
    /// Each merchant's bound split receivers, in the order bound (bounded per merchant by
    /// `receivers::MAX_RECEIVERS_PER_MERCHANT`).
    receivers: Resident<MerchantId, Vec<paycenter_domain::events::ReceiverBound>>,
    /// Payments by status, and anomalies by kind, kept as events arrive: what `/metrics`
    /// reports without walking every payment on each scrape.
    status_counts: BTreeMap<String, u64>,
    anomaly_counts: BTreeMap<String, u64>,
    /// Anomalies the payment being applied had before the event (for `anomaly_counts`).
    counted_anomalies_before: usize,
    /// Attempts recorded on an order stream of an older name (see
    /// [`ReadModel::orders_may_live_under_older_names`]).
    older_order_streams: u64,
    /// The file was written before `older_order_streams` was counted: it is not known.
    older_order_streams_unknown: bool,
}

/// A batch taken by [`ReadModel::prepare_commit`], to be written to the model's file.
#[derive(Debug)]
pub struct PendingCommit {
    backing: Arc<Backing>,
    writes: Vec<crate::tables::Write>,
    checkpoint: Checkpoint,
}

impl PendingCommit {
    /// Writes the batch and its checkpoint in one transaction.
    pub fn write(&self) -> Result<(), TableError> {
        self.backing.commit(&self.writes, &self.checkpoint)
    }

    /// The position it brings the file to.
    pub fn position(&self) -> u64 {
        self.checkpoint.position
    }
}

impl crate::projection::PendingWrite for PendingCommit {
    fn write(&self) -> Result<(), TableError> {
        PendingCommit::write(self)
    }
}

impl crate::projection::Projection for ReadModel {
    const NAME: &'static str = NAME;
    const VERSION: u32 = VERSION;
    type Commit = PendingCommit;

    fn open_on(
        backing: Arc<Backing>,
        store: &dyn paycenter_store::EventStore,
        role: crate::projection::Role,
    ) -> Result<Self, ModelError> {
        ReadModel::open_on(backing, store, role)
    }

    fn resident_spaces() -> Vec<u16> {
        macro_rules! resident_spaces {
            (resident: [$(($resident:ident, $resident_space:ident)),* $(,)?],
             mapped: [$(($mapped:ident, $mapped_space:ident, $recent:ident)),* $(,)?]) => {
                vec![$(space::$resident_space),*]
            };
        }
        model_tables!(resident_spaces)
    }

    fn refresh(
        &mut self,
        checkpoint: &Checkpoint,
        spaces: &[(u16, crate::tables::Rows)],
    ) -> Result<(), ModelError> {
        let backing = self.backing.clone().expect("a reader has tables");
        let scalars: Scalars =
            crate::projection::decode_scalars(&backing, Some(&checkpoint.scalars))?;
        macro_rules! reload_changed {
            (resident: [$(($resident:ident, $resident_space:ident)),* $(,)?],
             mapped: [$(($mapped:ident, $mapped_space:ident, $recent:ident)),* $(,)?]) => {
                for (space, rows) in spaces {
                    $(if *space == space::$resident_space {
                        self.$resident.reload(rows)?;
                    })*
                }
            };
        }
        model_tables!(reload_changed);
        self.position = checkpoint.position;
        self.hash_at_position = crate::projection::hash_of(checkpoint);
        self.status_counts = scalars.status_counts;
        self.anomaly_counts = scalars.anomaly_counts;
        self.older_order_streams_unknown = scalars.older_order_streams.is_none();
        self.older_order_streams = scalars.older_order_streams.unwrap_or(0);
        Ok(())
    }

    fn backing(&self) -> Option<&Arc<Backing>> {
        ReadModel::backing(self)
    }

    fn position(&self) -> u64 {
        ReadModel::position(self)
    }

    fn apply(&mut self, event: &RecordedEvent) {
        ReadModel::apply(self, event)
    }

    fn prepare_commit(&mut self) -> Option<PendingCommit> {
        ReadModel::prepare_commit(self)
    }

    fn stage(&mut self) {
        ReadModel::stage(self)
    }

    fn finish_commit(&mut self) -> Retired {
        ReadModel::finish_commit(self)
    }

    fn digest(&self) -> Result<String, TableError> {
        ReadModel::digest(self)
    }
}

/// Why the read model could not open its file or fold the log.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The file cannot be read or written.
    #[error(transparent)]
    Table(#[from] TableError),
    /// The file was written by another projection or version: it is rebuilt.
    #[error("the file holds {name} v{version}, which is not what this version folds")]
    OtherVersion {
        /// What the file holds.
        name: String,
        /// See `name`.
        version: u32,
    },
    /// The file does not match the log (another log, or one cut short).
    #[error("the file is at position {position}, which the log does not hold as it was")]
    NotThisLog {
        /// The file's checkpoint.
        position: u64,
    },
    /// Reading the log failed.
    #[error("event store: {0}")]
    Store(#[from] paycenter_store::StoreError),
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
pub const VERSION: u32 = 9;

/// Since when the sweeper may have to ask about a payment: while pending, since its start;
/// paid with refunds pending, since the oldest of them; otherwise never.
fn sweep_since(payment: &PaymentView) -> Option<DateTime<Utc>> {
    match payment.status {
        AttemptStatus::Pending => Some(payment.created_at),
        AttemptStatus::Succeeded => payment
            .refunds
            .iter()
            .filter(|refund| refund.status == RefundStatus::Pending)
            .map(|refund| refund.requested_at)
            .min(),
        AttemptStatus::Failed | AttemptStatus::Closed => None,
    }
}

/// The notification id for the webhook caused by event `source_event_id`.
pub fn notification_id_for(source_event_id: Uuid) -> NotificationId {
    NotificationId::from_entropy(source_event_id.as_u128())
}

impl ReadModel {
    /// Opens the read model kept in the file at `path` (creating it if needed), resuming
    /// from its checkpoint. The file must have been written by this version from this log.
    pub fn open(
        path: &Path,
        store: &dyn paycenter_store::EventStore,
    ) -> Result<ReadModel, ModelError> {
        ReadModel::open_on(Backing::open(path)?, store, crate::projection::Role::Writer)
    }

    /// Opens the read model kept in `backing` (see [`crate::Projection::open_on`]).
    pub fn open_on(
        backing: Arc<Backing>,
        store: &dyn paycenter_store::EventStore,
        role: crate::projection::Role,
    ) -> Result<ReadModel, ModelError> {
        let mut model = ReadModel::default();
        let mut scalars = Scalars::default();
        if let Some(resumed) = crate::projection::resume::<ReadModel>(&backing, store)? {
            model.position = resumed.position;
            model.hash_at_position = resumed.hash_at_position;
            scalars = crate::projection::decode_scalars(&backing, Some(&resumed.scalars))?;
        }
        macro_rules! attach_all {
            (resident: [$(($resident:ident, $resident_space:ident)),* $(,)?],
             mapped: [$(($mapped:ident, $mapped_space:ident, $recent:ident)),* $(,)?]) => {
                $(model.$resident.attach(&backing, space::$resident_space)?;)*
                $(model.$mapped.attach(&backing, space::$mapped_space, role.recent_capacity($recent));)*
            };
        }
        model_tables!(attach_all);
        model.status_counts = scalars.status_counts;
        model.anomaly_counts = scalars.anomaly_counts;
        // A new file counts from the start; one resumed without the count does not know it.
        match (model.position, scalars.older_order_streams) {
            (0, _) => {}
            (_, Some(older)) => model.older_order_streams = older,
            (_, None) => model.older_order_streams_unknown = true,
        }
        model.backing = Some(backing);
        Ok(model)
    }

    /// Writes what was applied since the last commit, with the checkpoint, in one
    /// transaction. Without a file, does nothing.
    pub fn commit(&mut self) -> Result<(), TableError> {
        let Some(pending) = self.prepare_commit() else {
            return Ok(());
        };
        let written = pending.write();
        self.finish_commit();
        written
    }

    /// The first half of a commit: takes what was applied since the last one, which stays
    /// readable until [`ReadModel::finish_commit`], while [`PendingCommit::write`] writes it
    /// without the model's lock. `None` without a file.
    pub fn prepare_commit(&mut self) -> Option<PendingCommit> {
        let backing = self.backing.clone()?;
        let mut writes = Vec::new();
        macro_rules! drain_all {
            (resident: [$(($resident:ident, $resident_space:ident)),* $(,)?],
             mapped: [$(($mapped:ident, $mapped_space:ident, $recent:ident)),* $(,)?]) => {
                $(self.$resident.drain_into(&mut writes);)*
                $(self.$mapped.drain_into(&mut writes);)*
            };
        }
        model_tables!(drain_all);
        let scalars = Scalars {
            status_counts: self.status_counts.clone(),
            anomaly_counts: self.anomaly_counts.clone(),
            older_order_streams: (!self.older_order_streams_unknown)
                .then_some(self.older_order_streams),
        };
        let checkpoint = crate::projection::checkpoint::<ReadModel>(
            self.position,
            self.hash_at_position,
            serde_json::to_string(&scalars).expect("scalars serialize"),
        );
        Some(PendingCommit {
            backing,
            writes,
            checkpoint,
        })
    }

    /// Makes what was applied since the last commit read as committed, without writing it:
    /// the next [`ReadModel::prepare_commit`] writes it. Cheap (nothing is encoded), so the
    /// follower stages every batch and writes every few milliseconds.
    pub fn stage(&mut self) {
        macro_rules! stage_all {
            (resident: [$(($resident:ident, $resident_space:ident)),* $(,)?],
             mapped: [$(($mapped:ident, $mapped_space:ident, $recent:ident)),* $(,)?]) => {
                $(self.$resident.stage();)*
                $(self.$mapped.stage();)*
            };
        }
        model_tables!(stage_all);
    }

    /// The second half of a commit, once its write is done (or failed: the projection stops
    /// then, and what it applied stays readable until the process ends).
    /// Answers the rows this took out of memory, to be freed without the model's lock.
    pub fn finish_commit(&mut self) -> Retired {
        let mut retired = Retired::default();
        macro_rules! finish_all {
            (resident: [$(($resident:ident, $resident_space:ident)),* $(,)?],
             mapped: [$(($mapped:ident, $mapped_space:ident, $recent:ident)),* $(,)?]) => {
                $(self.$resident.finish_commit();)*
                $(retired.append(self.$mapped.finish_commit());)*
            };
        }
        model_tables!(finish_all);
        retired
    }

    /// The file this model is kept in, if any.
    pub fn backing(&self) -> Option<&Arc<Backing>> {
        self.backing.as_ref()
    }

    /// Last global position applied.
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Applies one stored event. Events must come in global order without gaps.
    pub fn apply(&mut self, recorded: &RecordedEvent) {
        assert_eq!(
            recorded.global_position,
            self.position + 1,
            "the read model folds the log in order"
        );
        self.position = recorded.global_position;
        self.hash_at_position = recorded.hash;
        let event = match Event::decode(recorded) {
            Ok(event) => event,
            Err(error) => {
                // A type this version does not know (written by a newer one): skip it loudly.
                tracing::warn!(%error, "event skipped by the read model");
                return;
            }
        };
        let position = recorded.global_position;
        let touched_payment = event.trade_no().cloned();
        let started_attempt = matches!(event, Event::PaymentAttemptStarted(_));
        let peek_before = |payments: &Map<TradeNo, PaymentView>, trade_no: &TradeNo| {
            payments.peek(trade_no, |payment| {
                (payment.status, payment.anomalies.len())
            })
        };
        let before = match (started_attempt, touched_payment.as_ref()) {
            // A started attempt's trade number is new (made at its start): the read, a miss in
            // the file for every payment, is skipped. Debug builds check that it would miss.
            (true, Some(trade_no)) => {
                debug_assert!(
                    peek_before(&self.payments, trade_no).is_none(),
                    "an attempt started with a trade number already recorded"
                );
                None
            }
            (_, Some(trade_no)) => peek_before(&self.payments, trade_no),
            (_, None) => None,
        };
        let status_before = before.map(|(status, _)| status);
        if let Some((status, n_anomalies)) = before {
            self.count_payment(status, -1);
            self.counted_anomalies_before = n_anomalies;
        } else {
            self.counted_anomalies_before = 0;
        }
        self.record_action(recorded);
        self.apply_alert_inputs(&event, position);
        match event {
            Event::MerchantOnboarded(event) => {
                self.merchants.insert(event.merchant_id.clone(), event);
            }
            Event::OperatorCreated(event) => self.apply_operator_created(event),
            Event::OperatorAccessChanged(event) => self.apply_operator_access(event),
            Event::MerchantRoutingSet(event) => {
                self.routing.insert(event.merchant_id, event.rules);
            }
            Event::PayoutRequested(event) => {
                let payout_id = event.payout_id.clone();
                for scope in [String::new(), event.merchant_id.to_string()] {
                    self.payouts_listed.insert(
                        &(scope, event.requested_at, payout_id.clone()),
                        payout_id.clone(),
                    );
                }
                self.payouts_to_submit.insert(&position, payout_id.clone());
                self.payout_positions.insert(payout_id.as_str(), position);
                self.payouts.insert(
                    payout_id.as_str(),
                    PayoutView {
                        requested: event,
                        status: PayoutStatus::Pending,
                        channel_payout_no: None,
                        failure_reason: None,
                        settled_at: None,
                        confirmation: None,
                    },
                );
            }
            Event::PayoutSucceeded(event) => {
                self.settle_payout(&event.payout_id, event.succeeded_at, |payout| {
                    payout.status = PayoutStatus::Succeeded;
                    payout.channel_payout_no = event.channel_payout_no.clone();
                    payout.confirmation = None;
                });
                self.queue_payout_drafts(
                    position,
                    recorded.event_id,
                    &event.payout_id,
                    WebhookType::PayoutSucceeded,
                    event.succeeded_at,
                );
            }
            Event::PayoutFailed(event) => {
                self.settle_payout(&event.payout_id, event.failed_at, |payout| {
                    payout.status = PayoutStatus::Failed;
                    payout.failure_reason = Some(event.reason.clone());
                    payout.confirmation = None;
                });
                self.queue_payout_drafts(
                    position,
                    recorded.event_id,
                    &event.payout_id,
                    WebhookType::PayoutFailed,
                    event.failed_at,
                );
            }
            Event::PayoutAwaitingConfirmation(event) => {
                // Still to be asked about (the user may never confirm): it stays queued.
                if let Some(payout) = self.payouts.get_mut(&event.payout_id) {
                    payout.status = PayoutStatus::AwaitingConfirmation;
                    payout.channel_payout_no = event.channel_payout_no.clone();
                    payout.confirmation = Some(PayoutConfirmationView {
                        package_info: event.package_info.clone(),
                        channel_merchant_id: event.channel_merchant_id.clone(),
                        channel_app_id: event.channel_app_id.clone(),
                    });
                }
                self.queue_payout_drafts(
                    position,
                    recorded.event_id,
                    &event.payout_id,
                    WebhookType::PayoutAwaitingConfirmation,
                    event.at,
                );
            }
            Event::ReceiverBound(event) => {
                let bound = self.receivers.get_or_default(&event.merchant_id);
                bound.retain(|receiver| receiver.receiver_id != event.receiver_id);
                bound.push(event);
            }
            Event::ReceiverRemoved(event) => {
                if let Some(bound) = self.receivers.get_mut(&event.merchant_id) {
                    bound.retain(|receiver| receiver.receiver_id != event.receiver_id);
                }
            }
            Event::ChannelBreakerChanged(event) => {
                self.breakers
                    .insert(event.channel_account_id, (event.to, event.changed_at));
            }
            // Folded by `apply_alert_inputs` above.
            Event::AlertChannelCreated(_)
            | Event::AlertChannelDeleted(_)
            | Event::AlertRaised(_)
            | Event::AlertResolved(_)
            | Event::AlertDelivered(_)
            | Event::AlertDeliveryFailed(_) => {}
            Event::ChannelAccountActivated(event) => {
                if !self
                    .channel_accounts_created
                    .contains_key(&event.channel_account_id)
                {
                    self.channel_accounts_created
                        .insert(event.channel_account_id.clone(), event.activated_at);
                }
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
                    self.disabled_apps.insert(event.app_id, ());
                }
            }
            Event::ChannelAccountAccessChanged(event) => {
                if event.enabled {
                    self.disabled_channel_accounts
                        .remove(&event.channel_account_id);
                } else {
                    self.disabled_channel_accounts
                        .insert(event.channel_account_id, ());
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
                    route: event.route.clone(),
                    share_mode: event.share,
                    share: None,
                    paid_at: None,
                    refunds: Vec::new(),
                    splits: event.splits.clone(),
                    anomalies: Vec::new(),
                    channel_close: None,
                    order_stream: recorded.stream_id.clone(),
                };
                if !paycenter_domain::streams::is_order(
                    &recorded.stream_id,
                    &event.app_id,
                    &event.merchant_id,
                    &event.order_no,
                ) {
                    self.older_order_streams += 1;
                    self.orders_under_older_names.insert(
                        &(event.app_id.clone(), event.merchant_id, event.order_no),
                        recorded.stream_id.clone(),
                    );
                }
                self.count_started(&view);
                self.feeds.insert(
                    &(event.app_id, position),
                    FeedItem {
                        cursor: position,
                        id: feed_event_id(recorded.event_id),
                        event_type: "payment.created".to_owned(),
                        created_at: event.started_at,
                        data: FeedData::PaymentCreated(event.trade_no.clone()),
                    },
                );
                self.payments.insert(&event.trade_no, view);
            }
            Event::PaymentAttemptInitiated(event) => {
                let payment = self.payment_mut(&event.trade_no);
                payment.channel_reference = event.channel_reference;
                payment.checkout_qr_code = event.checkout_qr_code;
            }
            Event::ChannelCloseAttempted(event) => {
                use paycenter_domain::events::ChannelCloseOutcome;
                if event.outcome != ChannelCloseOutcome::Failed {
                    if let Some(close_position) = self.close_positions.remove(&event.trade_no) {
                        self.closes_to_confirm.delete(&close_position);
                    }
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
                        .insert(&position, event.trade_no.clone());
                    if let Some(earlier) = self.close_positions.remove(&event.trade_no) {
                        self.closes_to_confirm.delete(&earlier);
                    }
                    self.close_positions.insert(&event.trade_no, position);
                    self.payment_mut(&event.trade_no).channel_close = Some(ChannelCloseView {
                        status: "pending".to_owned(),
                        attempts: 0,
                        last_error: None,
                    });
                }
                let payment = self.payment_mut(&event.trade_no);
                payment.status = AttemptStatus::Closed;
                self.queue_draft(
                    position,
                    recorded.event_id,
                    &event.trade_no,
                    WebhookType::PaymentClosed,
                    None,
                    event.closed_at,
                );
            }
            Event::PaymentSucceeded(event) => {
                let payment = self.payment_mut(&event.trade_no);
                payment.status = AttemptStatus::Succeeded;
                payment.channel_trade_no = Some(event.channel_trade_no.clone());
                payment.paid_at = Some(event.paid_at);
                let (paid, account) = (PaidTerms::of(payment), payment.channel_account_id.clone());
                self.count_paid(paid, event.paid_at);
                let settlement = (account, event.paid_at, event.trade_no.clone());
                self.settlements.insert(&settlement, event.trade_no.clone());
                self.payments_by_channel_trade_no
                    .insert(&event.channel_trade_no, event.trade_no.clone());
                self.queue_draft(
                    position,
                    recorded.event_id,
                    &event.trade_no,
                    WebhookType::PaymentSucceeded,
                    None,
                    event.paid_at,
                );
            }
            Event::PaymentFailed(event) => {
                self.payment_mut(&event.trade_no).status = AttemptStatus::Failed;
                self.queue_draft(
                    position,
                    recorded.event_id,
                    &event.trade_no,
                    WebhookType::PaymentFailed,
                    None,
                    event.failed_at,
                );
            }
            // Idempotency records are read from their own stream when a key is reused.
            // Failed looks of the daily reconciliation are kept in the log for audits only.
            Event::DuplicatePaymentDetected(_)
            | Event::IdempotencyKeyRecorded(_)
            | Event::ReconciliationFetchFailed(_) => {}
            Event::CheckoutOpened(opened) => {
                self.checkouts
                    .insert(opened.checkout_id.as_str(), opened.clone());
            }
            Event::ReconciliationCompleted(completed) => {
                if completed.source == "scheduled" {
                    self.scheduled_reconciliations.insert(
                        &(
                            completed.channel_account_id.clone(),
                            completed.date.to_string(),
                        ),
                        (),
                    );
                }
                self.index_reconciliation(&completed);
                self.reconciliations
                    .insert(completed.reconciliation_id.as_str(), completed.clone());
            }
            Event::RefundRequested(event) => {
                self.refund_trade_nos
                    .insert(&event.refund_id, event.trade_no.clone());
                self.refunds_to_submit
                    .insert(&position, event.refund_id.clone());
                self.refund_positions.insert(&event.refund_id, position);
                let refund = RefundView {
                    refund_id: event.refund_id.clone(),
                    refund_no: event.refund_no,
                    trade_no: event.trade_no.clone(),
                    amount: event.amount,
                    reason: event.reason,
                    kind: event.kind,
                    status: RefundStatus::Pending,
                    requested_at: event.requested_at,
                    settled_at: None,
                };
                let payment = self.payment_mut(&event.trade_no);
                let (entry, app_id) = (RefundEntry::of(payment, &refund), payment.app_id.clone());
                payment.refunds.push(refund);
                self.index_refund(entry, event.requested_at);
                self.feeds.insert(
                    &(app_id, position),
                    FeedItem {
                        cursor: position,
                        id: feed_event_id(recorded.event_id),
                        event_type: "refund.created".to_owned(),
                        created_at: event.requested_at,
                        data: FeedData::RefundCreated(event.trade_no, event.refund_id),
                    },
                );
            }
            Event::PaymentAnomalyDetected(event) => {
                self.refund_trade_nos
                    .insert(&event.refund_id, event.trade_no.clone());
                self.refunds_to_submit
                    .insert(&position, event.refund_id.clone());
                self.refund_positions.insert(&event.refund_id, position);
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
                self.queue_draft(
                    position,
                    recorded.event_id,
                    &event.trade_no,
                    WebhookType::PaymentAnomalyDetected,
                    None,
                    event.detected_at,
                );
            }
            Event::RefundSucceeded(event) => {
                let anomaly_refund = self.settle_refund(
                    &event.trade_no,
                    &event.refund_id,
                    RefundStatus::Succeeded,
                    event.succeeded_at,
                );
                // An anomaly's refund is shown on the payment, with no webhook of its own.
                if !anomaly_refund {
                    let account = self.payment_mut(&event.trade_no).channel_account_id.clone();
                    self.settlements.insert(
                        &(account, event.succeeded_at, event.trade_no.clone()),
                        event.trade_no.clone(),
                    );
                    self.queue_draft(
                        position,
                        recorded.event_id,
                        &event.trade_no,
                        WebhookType::RefundSucceeded,
                        Some(event.refund_id),
                        event.succeeded_at,
                    );
                }
            }
            Event::PaymentShareRequested(event) => {
                let currency = event.lines.first().map(|line| line.amount.currency());
                self.payment_mut(&event.trade_no).share = Some(ShareView {
                    share_id: event.share_id,
                    lines: event
                        .lines
                        .into_iter()
                        .map(|line| ShareLineView {
                            receiver: line.receiver,
                            returned: Money::zero(currency.expect("a share has lines")),
                            amount: line.amount,
                            status: ShareStatus::Pending,
                        })
                        .collect(),
                    failures: 0,
                    last_error: None,
                });
                let trade_no = event.trade_no;
                if let Some(earlier) = self.share_positions.remove(&trade_no) {
                    self.shares_to_submit.delete(&earlier);
                }
                self.shares_to_submit.insert(&position, trade_no.clone());
                self.share_positions.insert(&trade_no, position);
            }
            Event::PaymentShared(event) => {
                if let Some(share) = self.payment_mut(&event.trade_no).share.as_mut() {
                    for line in &mut share.lines {
                        line.status = ShareStatus::Shared;
                    }
                }
                self.unqueue_share(&event.trade_no);
                self.queue_draft(
                    position,
                    recorded.event_id,
                    &event.trade_no,
                    WebhookType::PaymentShared,
                    None,
                    event.shared_at,
                );
            }
            Event::PaymentShareFailed(event) => {
                if let Some(share) = self.payment_mut(&event.trade_no).share.as_mut() {
                    share.failures += 1;
                    share.last_error = Some(event.reason);
                    if !event.will_retry {
                        for line in &mut share.lines {
                            line.status = ShareStatus::Failed;
                        }
                    }
                }
                if !event.will_retry {
                    self.unqueue_share(&event.trade_no);
                    self.queue_draft(
                        position,
                        recorded.event_id,
                        &event.trade_no,
                        WebhookType::PaymentShareFailed,
                        None,
                        event.failed_at,
                    );
                }
            }
            Event::PaymentShareReturned(event) => {
                if let Some(share) = self.payment_mut(&event.trade_no).share.as_mut() {
                    for returned in event.lines {
                        if let Some(line) = share
                            .lines
                            .iter_mut()
                            .find(|line| line.receiver == returned.receiver)
                        {
                            line.returned = line
                                .returned
                                .checked_add(returned.amount)
                                .expect("returns ≤ shared");
                            if line.returned == line.amount {
                                line.status = ShareStatus::Returned;
                            }
                        }
                    }
                }
            }
            Event::RefundFailed(event) => {
                let anomaly_refund = self.settle_refund(
                    &event.trade_no,
                    &event.refund_id,
                    RefundStatus::Failed,
                    event.failed_at,
                );
                if !anomaly_refund {
                    self.queue_draft(
                        position,
                        recorded.event_id,
                        &event.trade_no,
                        WebhookType::RefundFailed,
                        Some(event.refund_id),
                        event.failed_at,
                    );
                }
            }
            Event::NotificationScheduled(scheduled) => {
                if let Some(draft_position) = self
                    .unscheduled_positions
                    .remove(&scheduled.notification_id)
                {
                    self.unscheduled
                        .delete(&(draft_position, scheduled.notification_id.clone()));
                }
                self.feeds.insert(
                    &(scheduled.app_id.clone(), position),
                    FeedItem {
                        cursor: position,
                        id: scheduled.notification_id.to_string(),
                        event_type: scheduled.webhook_type.clone(),
                        created_at: scheduled.created_at,
                        data: FeedData::Notification(scheduled.data.clone()),
                    },
                );
                let notification_id = scheduled.notification_id.clone();
                self.notifications_by_app.insert(
                    &(
                        scheduled.app_id.clone(),
                        scheduled.created_at,
                        notification_id.clone(),
                    ),
                    notification_id.clone(),
                );
                let state = Notification::from_events([&Event::NotificationScheduled(scheduled)])
                    .expect("scheduled");
                if let Some(at) = due_at(&state) {
                    self.notifications_due
                        .insert(&(at, notification_id.clone()), notification_id.clone());
                }
                self.notifications
                    .insert(&notification_id, (state, recorded.stream_revision));
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
                    .get(&notification_id)
                    .expect("notification events follow scheduling");
                if let Some(at) = due_at(&state) {
                    self.notifications_due
                        .delete(&(at, notification_id.clone()));
                }
                let mut state = Some(state);
                Notification::apply(&mut state, &event);
                let state = state.expect("still scheduled");
                if let Some(at) = due_at(&state) {
                    self.notifications_due
                        .insert(&(at, notification_id.clone()), notification_id.clone());
                }
                assert_eq!(
                    recorded.stream_revision,
                    revision + 1,
                    "notification revisions are gap-free"
                );
                self.notifications
                    .insert(&notification_id, (state, recorded.stream_revision));
            }
        }
        if let Some(trade_no) = touched_payment {
            let counted_before = self.counted_anomalies_before;
            let after = self.payments.peek(&trade_no, |payment| {
                let new_anomalies: Vec<AnomalyKind> = payment.anomalies
                    [counted_before.min(payment.anomalies.len())..]
                    .iter()
                    .map(|anomaly| anomaly.kind)
                    .collect();
                // Its lists' entries, when its status changed (or it just started).
                let listed = (status_before != Some(payment.status))
                    .then(|| (PaymentEntry::of(payment), payment.created_at));
                (payment.status, new_anomalies, sweep_since(payment), listed)
            });
            if let Some((status, new_anomalies, since, listed)) = after {
                self.count_payment(status, 1);
                for kind in new_anomalies {
                    *self
                        .anomaly_counts
                        .entry(kind.as_str().to_owned())
                        .or_default() += 1;
                }
                self.requeue_for_sweep(&trade_no, since, started_attempt);
                if let Some((entry, created_at)) = listed {
                    self.index_payment(entry, created_at);
                }
            }
        }
    }

    fn count_payment(&mut self, status: AttemptStatus, change: i64) {
        let count = self
            .status_counts
            .entry(status.as_str().to_owned())
            .or_default();
        *count = count
            .checked_add_signed(change)
            .expect("a payment counted before it is uncounted");
    }

    /// Puts a payment where the sweeper will find it (at `since`, or takes it out) after it
    /// changed. A payment that just `started` has no place yet: the read of its old one, a miss
    /// in the file for every new payment, is skipped. Debug builds check that it would miss.
    fn requeue_for_sweep(
        &mut self,
        trade_no: &TradeNo,
        since: Option<DateTime<Utc>>,
        started: bool,
    ) {
        let old = match started {
            true => {
                debug_assert!(
                    self.sweep_keys.get(trade_no).is_none(),
                    "a payment just started is already queued for the sweep"
                );
                None
            }
            false => self.sweep_keys.get(trade_no),
        };
        if old == since {
            return;
        }
        if let Some(old) = old {
            self.sweep_queue.delete(&(old, trade_no.clone()));
            self.sweep_keys.delete(trade_no);
        }
        if let Some(since) = since {
            self.sweep_queue
                .insert(&(since, trade_no.clone()), trade_no.clone());
            self.sweep_keys.insert(trade_no, since);
        }
    }

    /// A payout settled at `at`: `settle` changes its view, it leaves the queue and joins its
    /// account's settled payouts.
    fn settle_payout(
        &mut self,
        payout_id: &str,
        at: DateTime<Utc>,
        settle: impl FnOnce(&mut PayoutView),
    ) {
        if let Some(payout) = self.payouts.get_mut(payout_id) {
            settle(payout);
            payout.settled_at = Some(at);
            let account = payout.requested.channel_account_id.clone();
            self.payouts_settled
                .insert(&(account, at, payout_id.to_owned()), payout_id.to_owned());
        }
        if let Some(position) = self.payout_positions.remove(payout_id) {
            self.payouts_to_submit.delete(&position);
        }
    }

    /// A share settled: it leaves the queue of shares to submit.
    fn unqueue_share(&mut self, trade_no: &TradeNo) {
        if let Some(position) = self.share_positions.remove(trade_no) {
            self.shares_to_submit.delete(&position);
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
        if let Some(request_position) = self.refund_positions.remove(refund_id) {
            self.refunds_to_submit.delete(&request_position);
        }
        let payment = self.payment_mut(trade_no);
        let settled = match payment
            .refunds
            .iter()
            .position(|refund| &refund.refund_id == refund_id)
        {
            Some(index) => {
                let refund = &mut payment.refunds[index];
                refund.status = status;
                refund.settled_at = Some(settled_at);
                let refund = &payment.refunds[index];
                Some((
                    RefundEntry::of(payment, refund),
                    refund.requested_at,
                    payment.merchant_id.clone(),
                    refund.amount,
                ))
            }
            None => None,
        };
        if let Some((entry, requested_at, merchant_id, amount)) = settled {
            self.index_refund(entry, requested_at);
            if status == RefundStatus::Succeeded {
                self.count_refunded(&merchant_id, amount, settled_at);
            }
            return false;
        }
        let payment = self.payment_mut(trade_no);
        let anomaly = payment
            .anomalies
            .iter_mut()
            .find(|anomaly| &anomaly.refund_id == refund_id)
            .expect("refund was requested");
        anomaly.refund_status = status;
        true
    }

    /// Queues the notification an outcome at `position` asks for, until it is scheduled.
    fn queue_draft(
        &mut self,
        position: u64,
        source_event_id: Uuid,
        trade_no: &TradeNo,
        webhook_type: WebhookType,
        refund_id: Option<RefundId>,
        occurred_at: DateTime<Utc>,
    ) {
        let (app_id, merchant_id) = self
            .payments
            .peek(trade_no, |payment| {
                (payment.app_id.clone(), payment.merchant_id.clone())
            })
            .expect("outcomes follow the attempt's start");
        self.queue(
            position,
            NotificationDraft {
                notification_id: notification_id_for(source_event_id),
                app_id,
                merchant_id,
                webhook_type: webhook_type.as_str().to_owned(),
                subject: NotificationSubject::Payment {
                    trade_no: trade_no.clone(),
                    refund_id,
                },
                occurred_at,
            },
        );
    }

    /// Queues the notifications a payout's outcome at `position` asks for: to the app the
    /// payout names, else to every app of its merchant (each with an id of its own).
    fn queue_payout_drafts(
        &mut self,
        position: u64,
        source_event_id: Uuid,
        payout_id: &str,
        webhook_type: WebhookType,
        occurred_at: DateTime<Utc>,
    ) {
        let Some(payout) = self.payouts.get(payout_id) else {
            return;
        };
        let merchant_id = payout.requested.merchant_id.clone();
        let mut app_ids: Vec<AppId> = match &payout.requested.app_id {
            Some(app_id) => vec![app_id.clone()],
            None => self
                .apps
                .iter()
                .filter(|(_, app)| app.merchant_ids.contains(&merchant_id))
                .map(|(app_id, _)| app_id.clone())
                .collect(),
        };
        app_ids.sort();
        for app_id in app_ids {
            let notification_id = NotificationId::from_entropy(
                source_event_id.as_u128()
                    ^ u128::from_be_bytes(
                        Sha256::digest(app_id.as_str().as_bytes())[..16]
                            .try_into()
                            .expect("16 bytes"),
                    ),
            );
            self.queue(
                position,
                NotificationDraft {
                    notification_id,
                    app_id,
                    merchant_id: merchant_id.clone(),
                    webhook_type: webhook_type.as_str().to_owned(),
                    subject: NotificationSubject::Payout {
                        payout_id: payout_id.to_owned(),
                    },
                    occurred_at,
                },
            );
        }
    }

    fn queue(&mut self, position: u64, draft: NotificationDraft) {
        self.unscheduled_positions
            .insert(&draft.notification_id, position);
        self.unscheduled
            .insert(&(position, draft.notification_id.clone()), draft);
    }

    /// A SHA-256 over a canonical dump of everything derived (tables in key order): two
    /// read models folded from the same log have the same digest, in memory or in a file.
    /// Used to check that a rebuild reproduces the live model byte for byte.
    pub fn digest(&self) -> Result<String, TableError> {
        let mut hasher = Sha256::new();
        hasher.update(format!("position={};", self.position).as_bytes());
        let label = std::cell::Cell::new(0u16);
        let mut visit = |key: &[u8], value: &str| {
            crate::projection::digest_row(&mut hasher, label.get(), key, value)
        };
        // Each table in turn; `label` separates them (set before each).
        macro_rules! visit_all {
            (resident: [$(($resident:ident, $resident_space:ident)),* $(,)?],
             mapped: [$(($mapped:ident, $mapped_space:ident, $recent:ident)),* $(,)?]) => {
                $(
                    label.set(label.get() + 1);
                    self.$resident.visit_all(&mut visit);
                )*
                $(
                    label.set(label.get() + 1);
                    self.$mapped.visit_all(&mut visit)?;
                )*
            };
        }
        model_tables!(visit_all);
        hasher.update(
            format!(
                "status_counts={:?};anomaly_counts={:?}",
                self.status_counts, self.anomaly_counts
            )
            .as_bytes(),
        );
        Ok(hex::encode(hasher.finalize()))
    }

    /// [`ReadModel::digest`] of the model as its file holds it at its last commit, and that
    /// commit's position, read from the file alone (one read transaction): operators ask for
    /// it while the service runs, and walking a long file under the model's lock would hold
    /// the fold, and every command waiting on it, for as long.
    pub fn file_digest(backing: &Backing) -> Result<(u64, String), TableError> {
        // The spaces in the order `digest` visits its tables, each with its label.
        let mut spaces: Vec<u16> = Vec::new();
        let mut labels: Vec<u16> = Vec::new();
        macro_rules! spaces_in_order {
            (resident: [$(($resident:ident, $resident_space:ident)),* $(,)?],
             mapped: [$(($mapped:ident, $mapped_space:ident, $recent:ident)),* $(,)?]) => {
                $(
                    spaces.push(space::$resident_space);
                    labels.push(labels.len() as u16 + 1);
                )*
                $(
                    spaces.push(space::$mapped_space);
                    labels.push(labels.len() as u16 + 1);
                )*
            };
        }
        model_tables!(spaces_in_order);
        let (position, mut hasher, scalars_text) =
            crate::projection::hash_file_rows(backing, &spaces, &labels)?;
        let scalars: Scalars = crate::projection::decode_scalars(backing, scalars_text.as_deref())?;
        // As `digest` closes.
        hasher.update(
            format!(
                "status_counts={:?};anomaly_counts={:?}",
                scalars.status_counts, scalars.anomaly_counts
            )
            .as_bytes(),
        );
        Ok((position, hex::encode(hasher.finalize())))
    }

    /// Folds the log from position 1 up to `until_position` (inclusive) into a fresh
    /// in-memory model.
    pub fn fold_from_start(
        store: &dyn paycenter_store::EventStore,
        until_position: u64,
    ) -> Result<ReadModel, ModelError> {
        let mut model = ReadModel::default();
        model.catch_up(store, until_position)?;
        Ok(model)
    }

    /// Applies the events after this model's position up to `until_position` (inclusive),
    /// committing after every page (in memory, without a file: applies only).
    pub fn catch_up(
        &mut self,
        store: &dyn paycenter_store::EventStore,
        until_position: u64,
    ) -> Result<(), ModelError> {
        crate::projection::Projection::catch_up(self, store, until_position)
    }

    // ----- Queries -----

    /// Merchants as onboarded.
    pub fn merchants(&self) -> &HashMap<MerchantId, MerchantOnboarded> {
        &self.merchants
    }

    /// Each channel account's latest activation.
    pub fn channel_accounts(&self) -> &HashMap<ChannelAccountId, ChannelAccountActivated> {
        &self.channel_accounts
    }

    /// Registered apps.
    pub fn apps(&self) -> &HashMap<AppId, AppRegistered> {
        &self.apps
    }

    /// When a channel account was first activated.
    pub fn channel_account_created_at(
        &self,
        channel_account_id: &ChannelAccountId,
    ) -> Option<DateTime<Utc>> {
        self.channel_accounts_created
            .get(channel_account_id)
            .copied()
    }

    /// Whether the app was disabled.
    pub fn is_app_disabled(&self, app_id: &AppId) -> bool {
        self.disabled_apps.contains_key(app_id)
    }

    /// A merchant's routing rules (empty when it has none).
    pub fn routing(&self, merchant_id: &MerchantId) -> &[RoutingRule] {
        self.routing.get(merchant_id).map_or(&[], Vec::as_slice)
    }

    /// A merchant's bound split receivers, in the order bound.
    pub fn receivers(
        &self,
        merchant_id: &MerchantId,
    ) -> &[paycenter_domain::events::ReceiverBound] {
        self.receivers.get(merchant_id).map_or(&[], Vec::as_slice)
    }

    /// One bound receiver of a merchant.
    pub fn receiver(
        &self,
        merchant_id: &MerchantId,
        receiver_id: &str,
    ) -> Option<&paycenter_domain::events::ReceiverBound> {
        self.receivers(merchant_id)
            .iter()
            .find(|receiver| receiver.receiver_id == receiver_id)
    }

    /// A channel account's breaker and when it last changed (closed, never, when it has none).
    pub fn breaker(
        &self,
        channel_account_id: &ChannelAccountId,
    ) -> (
        paycenter_domain::routing::BreakerState,
        Option<DateTime<Utc>>,
    ) {
        self.breakers.get(channel_account_id).map_or(
            (paycenter_domain::routing::BreakerState::Closed, None),
            |(state, at)| (*state, Some(*at)),
        )
    }

    /// Every breaker that is not closed.
    pub fn breakers(&self) -> Vec<(ChannelAccountId, paycenter_domain::routing::BreakerState)> {
        self.breakers
            .iter()
            .map(|(account, (state, _))| (account.clone(), *state))
            .collect()
    }

    /// Whether the channel account was disabled (no new payments), or is a sub-merchant whose
    /// provider was (its requests would be made with the provider's keys).
    pub fn is_channel_account_disabled(&self, channel_account_id: &ChannelAccountId) -> bool {
        if self
            .disabled_channel_accounts
            .contains_key(channel_account_id)
        {
            return true;
        }
        self.channel_accounts
            .get(channel_account_id)
            .and_then(|account| account.provider_account_id.as_ref())
            .is_some_and(|provider| self.disabled_channel_accounts.contains_key(provider))
    }

    /// The app's rotated-out webhook secret (sealed) and until when it still signs.
    pub fn previous_webhook_secret(&self, app_id: &AppId) -> Option<&(String, DateTime<Utc>)> {
        self.previous_webhook_secrets.get(app_id)
    }

    /// Payments by status.
    pub fn status_counts(&self) -> &BTreeMap<String, u64> {
        &self.status_counts
    }

    /// Anomalies by kind.
    pub fn anomaly_counts(&self) -> &BTreeMap<String, u64> {
        &self.anomaly_counts
    }

    /// A payment attempt by trade number.
    pub fn payment(&self, trade_no: &TradeNo) -> Result<Option<PaymentView>, TableError> {
        self.payments.try_get(trade_no)
    }

    /// Every payment attempt in trade-number order, one at a time (for offline audits).
    pub fn for_each_payment(&self, visit: &mut dyn FnMut(PaymentView)) -> Result<(), TableError> {
        let mut failure = None;
        self.payments.visit_all(&mut |_, text| {
            if failure.is_some() {
                return;
            }
            match serde_json::from_str(text) {
                Ok(payment) => visit(payment),
                Err(error) => failure = Some(error.to_string()),
            }
        })?;
        match failure {
            None => Ok(()),
            Some(reason) => Err(TableError {
                path: String::new(),
                reason: format!("a payment does not decode: {reason}"),
            }),
        }
    }

    /// The payment attempt a channel's trade number belongs to.
    pub fn payment_by_channel_trade_no(
        &self,
        channel_trade_no: &ChannelTradeNo,
    ) -> Result<Option<PaymentView>, TableError> {
        match self
            .payments_by_channel_trade_no
            .try_get(channel_trade_no)?
        {
            Some(trade_no) => self.payment(&trade_no),
            None => Ok(None),
        }
    }

    /// The payment attempt a refund (or an anomaly's refund) belongs to.
    pub fn payment_of_refund(
        &self,
        refund_id: &RefundId,
    ) -> Result<Option<PaymentView>, TableError> {
        match self.refund_trade_nos.try_get(refund_id)? {
            Some(trade_no) => self.payment(&trade_no),
            None => Ok(None),
        }
    }

    /// Whether an order may have its attempts on a stream of an older name (recorded before
    /// order numbers lived in their app's namespace): false once the model knows that no
    /// attempt was ever recorded so, and then an order's stream is always
    /// `streams::order(app, merchant, order_no)` and a new order needs no lookup.
    pub fn orders_may_live_under_older_names(&self) -> bool {
        self.older_order_streams_unknown || self.older_order_streams > 0
    }

    /// The stream of an app's order: the older name it was recorded under, if any, else
    /// `streams::order(app, merchant, order_no)`. Its `payment.attempt_started` events name
    /// the order's attempts, oldest first.
    pub fn order_stream(
        &self,
        app_id: &AppId,
        merchant_id: &MerchantId,
        order_no: &OrderNo,
    ) -> Result<String, TableError> {
        let own_name = || paycenter_domain::streams::order(app_id, merchant_id, order_no);
        if !self.orders_may_live_under_older_names() {
            return Ok(own_name());
        }
        let key = (app_id.clone(), merchant_id.clone(), order_no.clone());
        Ok(self
            .orders_under_older_names
            .try_get(&key)?
            .unwrap_or_else(own_name))
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

    /// A notification and its stream revision.
    pub fn notification(
        &self,
        notification_id: &NotificationId,
    ) -> Result<Option<(Notification, u64)>, TableError> {
        self.notifications.try_get(notification_id)
    }

    /// An app's notifications, oldest first, in `status` if given, at most `limit`; reads at
    /// most `max_scanned` of them.
    pub fn notifications_of_app(
        &self,
        app_id: &AppId,
        status: Option<NotificationStatus>,
        limit: usize,
        max_scanned: usize,
    ) -> Result<Vec<Notification>, TableError> {
        let ids = self
            .notifications_by_app
            .with_prefix(&app_id.encoded(), max_scanned)?;
        let mut found = Vec::new();
        for notification_id in ids {
            let Some((notification, _)) = self.notification(&notification_id)? else {
                continue;
            };
            if status.is_none_or(|status| notification.status == status) {
                found.push(notification);
                if found.len() == limit {
                    break;
                }
            }
        }
        Ok(found)
    }

    /// Notifications due at `now`, oldest due first, at most `limit`: read off the head of
    /// the due queue, so the cost is `limit`'s, not the outbox's.
    pub fn due_notifications(
        &self,
        now: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<(Notification, u64)>, TableError> {
        let end = (now + chrono::Duration::microseconds(1)).encoded();
        let ids = self.notifications_due.range(&[], &end, limit)?;
        let mut due = Vec::with_capacity(ids.len());
        for notification_id in ids {
            if let Some(entry) = self.notification(&notification_id)? {
                due.push(entry);
            }
        }
        Ok(due)
    }

    /// An app's feed after `cursor`, oldest first, at most `limit`.
    pub fn feed_after(
        &self,
        app_id: &AppId,
        cursor: u64,
        limit: usize,
    ) -> Result<Vec<FeedItem>, TableError> {
        let Some(first) = cursor.checked_add(1) else {
            return Ok(Vec::new());
        };
        let prefix = app_id.encoded();
        let start = (app_id.clone(), first).encoded();
        self.feeds
            .range(&start, &crate::tables::prefix_end(&prefix), limit)
    }

    /// Outcomes whose notification is not scheduled yet, oldest first, at most `limit`.
    pub fn unscheduled(&self, limit: usize) -> Result<Vec<NotificationDraft>, TableError> {
        self.unscheduled.first(limit)
    }

    /// Ids of the payouts of account `channel_account_id` settled in `[from, to)`, oldest
    /// first, at most `limit`.
    pub fn payouts_settled_between(
        &self,
        channel_account_id: &ChannelAccountId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<String>, TableError> {
        let mut start = channel_account_id.encoded();
        from.encode_into(&mut start);
        let mut end = channel_account_id.encoded();
        to.encode_into(&mut end);
        self.payouts_settled.range(&start, &end, limit)
    }

    /// A payout by id.
    pub fn payout(&self, payout_id: &str) -> Result<Option<PayoutView>, TableError> {
        self.payouts.try_get(payout_id)
    }

    /// Payouts newest first, of one merchant or of all (`None`), after `starting_after` (a
    /// payout id of the previous page), at most `limit`.
    pub fn payouts_page(
        &self,
        merchant_id: Option<&MerchantId>,
        starting_after: Option<&PayoutView>,
        limit: usize,
    ) -> Result<Vec<PayoutView>, TableError> {
        let scope = merchant_id.map(ToString::to_string).unwrap_or_default();
        let start = scope.encoded();
        let end = match starting_after {
            Some(after) => (
                scope,
                after.requested.requested_at,
                after.requested.payout_id.clone(),
            )
                .encoded(),
            None => prefix_end(&start),
        };
        let step = self.payouts_listed.range_desc(&start, &end, limit)?;
        let mut payouts = Vec::with_capacity(step.entries.len());
        for (_, payout_id) in step.entries {
            if let Some(payout) = self.payouts.try_get(payout_id.as_str())? {
                payouts.push(payout);
            }
        }
        Ok(payouts)
    }

    /// Payouts not settled, oldest request first.
    pub fn payouts_to_submit(&self, limit: usize) -> Result<Vec<String>, TableError> {
        self.payouts_to_submit.first(limit)
    }

    /// Whether a payout is still to be settled.
    pub fn payout_pending(&self, payout_id: &str) -> Result<bool, TableError> {
        Ok(self.payout_positions.try_get(payout_id)?.is_some())
    }

    /// Payments whose share is asked for and not settled, oldest request first.
    pub fn shares_to_submit(&self, limit: usize) -> Result<Vec<TradeNo>, TableError> {
        self.shares_to_submit.first(limit)
    }

    /// Whether a payment's share is still to be settled.
    pub fn share_pending(&self, trade_no: &TradeNo) -> Result<bool, TableError> {
        Ok(self.share_positions.try_get(trade_no)?.is_some())
    }

    /// Refunds requested and not settled, oldest first, at most `limit`.
    pub fn refunds_to_submit(&self, limit: usize) -> Result<Vec<RefundId>, TableError> {
        self.refunds_to_submit.first(limit)
    }

    /// Whether a refund still waits to be submitted or to settle.
    pub fn refund_pending(&self, refund_id: &RefundId) -> Result<bool, TableError> {
        Ok(self.refund_positions.try_get(refund_id)?.is_some())
    }

    /// Superseded attempts still to close at their channel, oldest first, at most `limit`.
    pub fn closes_to_confirm(&self, limit: usize) -> Result<Vec<TradeNo>, TableError> {
        self.closes_to_confirm.first(limit)
    }

    /// Whether a superseded attempt is still to close at its channel.
    pub fn close_pending(&self, trade_no: &TradeNo) -> Result<bool, TableError> {
        Ok(self.close_positions.try_get(trade_no)?.is_some())
    }

    /// Payments the sweeper may have to ask about whose oldest pending thing started at or
    /// before `started_by`, the longest waiting first, at most `limit`.
    pub fn sweep_candidates(
        &self,
        started_by: DateTime<Utc>,
        limit: usize,
    ) -> Result<Vec<TradeNo>, TableError> {
        let end = (started_by + chrono::Duration::microseconds(1)).encoded();
        self.sweep_queue.range(&[], &end, limit)
    }

    /// A reconciliation's result.
    pub fn reconciliation(
        &self,
        reconciliation_id: &str,
    ) -> Result<Option<ReconciliationCompleted>, TableError> {
        // The id comes from a request (a path, a list's `starting_after`): one holding a NUL
        // is no stored id, and `try_get` says so.
        self.reconciliations.try_get(reconciliation_id)
    }

    /// Payments of `channel_account_id` paid or refunded in `[from, to)`, each once, in the
    /// order their first movement came.
    pub fn payments_settled_between(
        &self,
        channel_account_id: &ChannelAccountId,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<Vec<TradeNo>, TableError> {
        let mut start = channel_account_id.encoded();
        from.encode_into(&mut start);
        let mut end = channel_account_id.encoded();
        to.encode_into(&mut end);
        let mut seen = std::collections::HashSet::new();
        Ok(self
            .settlements
            .range(&start, &end, usize::MAX)?
            .into_iter()
            .filter(|trade_no| seen.insert(trade_no.clone()))
            .collect())
    }

    /// Whether the daily schedule reconciled `channel_account_id`'s `date`.
    pub fn scheduled_reconciliation_done(
        &self,
        channel_account_id: &ChannelAccountId,
        date: chrono::NaiveDate,
    ) -> Result<bool, TableError> {
        Ok(self
            .scheduled_reconciliations
            .try_get(&(channel_account_id.clone(), date.to_string()))?
            .is_some())
    }

    /// An aggregated cashier.
    pub fn checkout(&self, checkout_id: &str) -> Result<Option<CheckoutOpened>, TableError> {
        self.checkouts.try_get(checkout_id)
    }
}
