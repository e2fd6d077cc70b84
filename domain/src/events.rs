//! Every fact paycenter records. One enum, one variant per event type; the type name on the
//! envelope is [`Event::event_type`] and the payload is the variant's fields as JSON.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::envelope::{event_id_for, NewEvent, RecordedEvent};
use crate::ids::{
    AppId, ChannelAccountId, ChannelTradeNo, MerchantId, NotificationId, OperatorId, OrderNo,
    RefundId, RefundNo, TradeNo,
};
use crate::money::{Money, Rate};
use crate::shares::{RefundShares, Split};
use crate::vocabulary::{
    AccountMode, AlertChannelKind, AlertMessage, AlertRule, BreakerState, OperatorRole, ShareMode,
};
use crate::vocabulary::{
    AnomalyKind, Channel, CloseReason, DuplicateCause, InvokeMethod, OutcomeSource, RefundKind,
};

/// The schema version every event type is at today.
pub const SCHEMA_VERSION: u32 = 1;

/// A merchant was onboarded.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantOnboarded {
    pub merchant_id: MerchantId,
    pub name: String,
    pub onboarded_at: DateTime<Utc>,
}

/// A merchant's channel account was activated (or re-activated with new parameters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAccountActivated {
    pub channel_account_id: ChannelAccountId,
    pub merchant_id: MerchantId,
    pub channel: Channel,
    /// The channel parameters, encrypted by the service (AES-256-GCM) before they reach the domain.
    pub params_sealed: String,
    pub fee_rate: Rate,
    /// Addresses allowed to post callbacks; empty means any.
    pub callback_ip_allowlist: Vec<String>,
    /// The offset from UTC, in minutes, of the days this account's bills cover, when it is not
    /// its channel's (Beijing time for Alipay and WeChat Pay, UTC for the others).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bill_utc_offset_minutes: Option<i32>,
    /// Direct (left out), a provider, or a sub-merchant under `provider_account_id`.
    #[serde(default, skip_serializing_if = "AccountMode::is_direct")]
    pub mode: AccountMode,
    /// The provider account whose keys make and sign this sub-merchant's requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider_account_id: Option<ChannelAccountId>,
    pub activated_at: DateTime<Utc>,
}

/// Where a payout goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutReceiver {
    pub kind: crate::vocabulary::PayoutReceiverKind,
    pub account: String,
    /// The receiver's real name (checked by the channel), sealed under the master key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_sealed: Option<String>,
}

/// A payout was decided: its amount is held for it until it settles.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutRequested {
    pub payout_id: String,
    pub payout_no: String,
    pub merchant_id: MerchantId,
    pub channel_account_id: ChannelAccountId,
    pub channel: Channel,
    pub amount: Money,
    pub receiver: PayoutReceiver,
    /// The app told of the payout's outcome by webhook; `None`: every app of the merchant.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub app_id: Option<AppId>,
    pub requested_at: DateTime<Utc>,
}

/// The channel took the payout and waits for the receiving user to confirm it (WeChat Pay's
/// merchant transfer): the app hands `package_info` to the user's WeChat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutAwaitingConfirmation {
    pub payout_id: String,
    pub merchant_id: MerchantId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_payout_no: Option<String>,
    pub package_info: String,
    /// The paying merchant's id at the channel and the app id the receiver's openid belongs
    /// to, as `wx.requestMerchantTransfer` asks for them.
    pub channel_merchant_id: String,
    pub channel_app_id: String,
    pub at: DateTime<Utc>,
}

/// The channel paid the payout: posted in the ledger (payable against clearing).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutSucceeded {
    pub payout_id: String,
    pub merchant_id: MerchantId,
    pub channel_account_id: ChannelAccountId,
    pub amount: Money,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_payout_no: Option<String>,
    pub succeeded_at: DateTime<Utc>,
}

/// The payout failed: its amount is the merchant's again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutFailed {
    pub payout_id: String,
    pub merchant_id: MerchantId,
    pub reason: String,
    pub failed_at: DateTime<Utc>,
}

/// A split receiver was bound at the channel under one channel account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverBound {
    pub merchant_id: MerchantId,
    pub receiver_id: String,
    pub channel_account_id: ChannelAccountId,
    /// The channel's word for the account's type (WeChat Pay `MERCHANT_ID | PERSONAL_OPENID`,
    /// Alipay `loginName | userId`).
    pub kind: String,
    /// The receiver's account at the channel.
    pub account: String,
    /// The receiver's real name, sealed under the master key (personal data).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name_sealed: Option<String>,
    pub bound_at: DateTime<Utc>,
}

/// A split receiver was unbound at the channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReceiverRemoved {
    pub merchant_id: MerchantId,
    pub receiver_id: String,
    pub removed_at: DateTime<Utc>,
}

/// An app was registered. Its secrets appear here only hashed or sealed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppRegistered {
    pub app_id: AppId,
    pub name: String,
    pub merchant_ids: Vec<MerchantId>,
    pub notify_url: String,
    /// Hex SHA-256 of the API key: enough to authenticate, useless to an attacker reading events.
    pub api_key_sha256: String,
    /// The webhook secret, encrypted under the master key (paycenter must sign with it).
    pub webhook_secret_sealed: String,
    pub registered_at: DateTime<Utc>,
}

/// An app's API key was replaced; the previous one keeps working until `previous_valid_until`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppApiKeyRotated {
    pub app_id: AppId,
    /// Hex SHA-256 of the new key.
    pub api_key_sha256: String,
    pub previous_api_key_sha256: String,
    pub previous_valid_until: DateTime<Utc>,
    pub rotated_at: DateTime<Utc>,
}

/// An app's webhook secret was replaced; until `previous_valid_until` webhooks carry a
/// signature with each.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppWebhookSecretRotated {
    pub app_id: AppId,
    /// The new secret, sealed under the master key for this app.
    pub webhook_secret_sealed: String,
    pub previous_webhook_secret_sealed: String,
    pub previous_valid_until: DateTime<Utc>,
    pub rotated_at: DateTime<Utc>,
}

/// An app was disabled (`enabled: false`: every request answers `403 app_disabled`) or
/// enabled again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppAccessChanged {
    pub app_id: AppId,
    pub enabled: bool,
    pub changed_at: DateTime<Utc>,
}

/// A channel account was disabled (it takes no new payments; callbacks, refunds and
/// reconciliation go on) or enabled again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelAccountAccessChanged {
    pub channel_account_id: ChannelAccountId,
    pub enabled: bool,
    pub changed_at: DateTime<Utc>,
}

/// An operator of the console was created. The password appears only as its argon2id hash
/// (a PHC string, salted).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorCreated {
    pub operator_id: OperatorId,
    /// Lowercase; unique (the id is derived from it).
    pub email: String,
    pub name: String,
    pub role: OperatorRole,
    pub password_hash: String,
    pub created_at: DateTime<Utc>,
}

/// An operator was disabled (cannot sign in; open sessions end) or enabled again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperatorAccessChanged {
    pub operator_id: OperatorId,
    pub enabled: bool,
    pub changed_at: DateTime<Utc>,
}

/// An alert destination was added. Its URL (a DingTalk robot's carries its access token) and
/// secret are sealed under the master key; `url_shown` is the URL with its token redacted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertChannelCreated {
    pub alert_channel_id: String,
    pub kind: AlertChannelKind,
    pub url_sealed: String,
    pub url_shown: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret_sealed: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub at_mobiles: Vec<String>,
    pub created_at: DateTime<Utc>,
}

/// An alert destination was deleted: it gets no more messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertChannelDeleted {
    pub alert_channel_id: String,
    pub deleted_at: DateTime<Utc>,
}

/// A condition began to hold: an alert, sent to every destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertRaised {
    pub alert_id: String,
    pub rule: AlertRule,
    /// What the rule is about (an account, an app, a projection...).
    pub subject: String,
    pub summary: String,
    /// Markdown lines with the figures behind it.
    pub details: String,
    pub raised_at: DateTime<Utc>,
}

/// The condition of an open alert stopped holding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertResolved {
    pub alert_id: String,
    pub summary: String,
    pub resolved_at: DateTime<Utc>,
}

/// A message of an alert reached a destination.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDelivered {
    pub alert_id: String,
    pub alert_channel_id: String,
    pub message: AlertMessage,
    pub attempt: u32,
    pub delivered_at: DateTime<Utc>,
}

/// A message of an alert did not reach a destination; tried again at `next_attempt_at`, or
/// given up when there is none.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertDeliveryFailed {
    pub alert_id: String,
    pub alert_channel_id: String,
    pub message: AlertMessage,
    pub attempt: u32,
    pub error: String,
    pub next_attempt_at: Option<DateTime<Utc>>,
    pub failed_at: DateTime<Utc>,
}

/// One routing rule of a merchant: the accounts, in priority order, for payments of an invoke
/// method and currency (any when absent); with weights, the order is drawn in proportion.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoutingRule {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub invoke_method: Option<InvokeMethod>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<crate::money::Currency>,
    pub channel_account_ids: Vec<ChannelAccountId>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<u32>>,
}

/// A merchant's routing rules were set (replacing the earlier ones).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MerchantRoutingSet {
    pub merchant_id: MerchantId,
    pub rules: Vec<RoutingRule>,
    pub set_at: DateTime<Utc>,
}

/// A channel account's breaker changed state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelBreakerChanged {
    pub channel_account_id: ChannelAccountId,
    pub from: BreakerState,
    pub to: BreakerState,
    pub reason: String,
    pub changed_at: DateTime<Utc>,
}

/// An account routing left out, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteSkip {
    pub channel_account_id: ChannelAccountId,
    pub reason: String,
}

/// How an attempt's account was chosen by routing (`"route": "auto"`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouteRecord {
    pub account_chosen: ChannelAccountId,
    pub reason: String,
    pub skipped: Vec<RouteSkip>,
}

/// A payment attempt for an order was started at a channel.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAttemptStarted {
    pub trade_no: TradeNo,
    pub merchant_id: MerchantId,
    pub order_no: OrderNo,
    pub app_id: AppId,
    pub channel_account_id: ChannelAccountId,
    pub channel: Channel,
    pub invoke_method: InvokeMethod,
    pub amount: Money,
    /// The platform's fee, `amount × fee_rate` rounded half-even.
    pub fee: Money,
    pub splits: Vec<Split>,
    pub subject: String,
    pub started_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    /// Where the cashier sends the user back to once the attempt settles (absent from
    /// attempts recorded before it existed, and when the app gave none).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub return_url: Option<String>,
    /// How routing chose the account, for `"route": "auto"` payments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteRecord>,
    /// Whether the splits are paid to their receivers at the channel (absent: ledger only).
    #[serde(default, skip_serializing_if = "ShareMode::is_none")]
    pub share: ShareMode,
}

/// A paid attempt's splits are to be paid to their receivers at the channel: what each
/// receiver gets, decided here (what its split still holds after refunds so far).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentShareRequested {
    pub trade_no: TradeNo,
    pub merchant_id: MerchantId,
    /// The channel's order number for this share (WeChat Pay `out_order_no`, Alipay
    /// `out_request_no`): derived from the trade number and the request's ordinal.
    pub share_id: String,
    pub lines: Vec<Split>,
    pub requested_at: DateTime<Utc>,
}

/// The channel paid the share's lines to their receivers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentShared {
    pub trade_no: TradeNo,
    pub merchant_id: MerchantId,
    pub share_id: String,
    pub lines: Vec<Split>,
    /// The channel's id of the share, when it gives one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel_share_no: Option<String>,
    pub shared_at: DateTime<Utc>,
}

/// The channel did not take the share. `will_retry`: it could not be reached or said to try
/// again, and paycenter will; otherwise the share failed for good and the money stays with the
/// merchant (a new share may be asked for).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentShareFailed {
    pub trade_no: TradeNo,
    pub share_id: String,
    pub reason: String,
    pub will_retry: bool,
    pub failed_at: DateTime<Utc>,
}

/// Before a refund of a shared payment, the receivers gave back their shares of it (the
/// division `refund.requested` recorded).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentShareReturned {
    pub trade_no: TradeNo,
    pub merchant_id: MerchantId,
    pub refund_id: RefundId,
    pub lines: Vec<Split>,
    pub returned_at: DateTime<Utc>,
}

/// An app opened the aggregated cashier for an order: the person picks the channel there,
/// and each pick starts an attempt of the order (with its own `trade_no`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CheckoutOpened {
    /// `co_` and 32 hex digits, derived from the app, the merchant and the order number.
    pub checkout_id: String,
    pub app_id: AppId,
    pub merchant_id: MerchantId,
    pub order_no: OrderNo,
    pub amount: Money,
    pub subject: String,
    pub splits: Vec<Split>,
    /// Each attempt's expiry, in seconds from its start.
    pub expire_seconds: u32,
    pub return_url: Option<String>,
    /// The accounts the person may pick from; empty: every active account of the merchant.
    pub channel_account_ids: Vec<ChannelAccountId>,
    pub opened_at: DateTime<Utc>,
    /// After this the cashier starts no attempt.
    pub expires_at: DateTime<Utc>,
}

/// The channel accepted a payment attempt and gave paycenter what later calls need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAttemptInitiated {
    pub trade_no: TradeNo,
    /// The channel's own handle on the payment before it is paid (Stripe's PaymentIntent id).
    pub channel_reference: Option<String>,
    /// What paycenter's checkout page shows as a QR code (WeChat Pay's `code_url` for `pc`).
    pub checkout_qr_code: Option<String>,
    pub initiated_at: DateTime<Utc>,
}

/// A pending attempt was closed: the user will not pay it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAttemptClosed {
    pub trade_no: TradeNo,
    pub reason: CloseReason,
    pub closed_at: DateTime<Utc>,
}

/// paycenter asked an abandoned attempt's own channel to close it (one event per try).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelCloseAttempted {
    pub trade_no: TradeNo,
    /// 1 for the first try.
    pub attempt_no: u32,
    pub outcome: ChannelCloseOutcome,
    /// Why the try failed, when it did.
    pub error: Option<String>,
    pub attempted_at: DateTime<Utc>,
}

/// What one try to close an attempt at its channel learnt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ChannelCloseOutcome {
    /// The channel closed it (or had already).
    Closed,
    /// The channel says it was paid: the payment is recorded and refunded as a duplicate.
    Paid,
    /// The try failed; another follows, up to the limit.
    Failed,
    /// The last try failed: no more are made (operators are told in the log and metrics).
    GaveUp,
}

/// The channel reported the attempt paid.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentSucceeded {
    pub trade_no: TradeNo,
    pub channel_trade_no: ChannelTradeNo,
    pub amount: Money,
    pub source: OutcomeSource,
    pub paid_at: DateTime<Utc>,
}

/// The channel reported the attempt failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentFailed {
    pub trade_no: TradeNo,
    pub reason: String,
    pub source: OutcomeSource,
    pub failed_at: DateTime<Utc>,
}

/// An attempt was paid although the order was already paid or the attempt closed; its refund follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DuplicatePaymentDetected {
    pub trade_no: TradeNo,
    /// The attempt that keeps the order's payment, if any.
    pub kept_trade_no: Option<TradeNo>,
    pub cause: DuplicateCause,
    pub detected_at: DateTime<Utc>,
}

/// A refund was requested (by the app, or automatically for a duplicate payment).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundRequested {
    pub refund_id: RefundId,
    pub refund_no: RefundNo,
    pub trade_no: TradeNo,
    pub amount: Money,
    pub reason: String,
    pub kind: RefundKind,
    /// What each part of the payment gives back, decided with the refund (see
    /// `domain::shares`). Absent only in refunds recorded before shares were: those are
    /// divided by the same rule when folded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shares: Option<RefundShares>,
    pub requested_at: DateTime<Utc>,
}

/// A verified channel report contradicted its attempt (another amount, currency or channel
/// account). The attempt is not paid by it; the reported money is refunded under `refund_id`
/// (settled by `refund.succeeded` / `refund.failed` with that id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentAnomalyDetected {
    pub trade_no: TradeNo,
    pub kind: AnomalyKind,
    /// The channel account that reported it (and at which the money is refunded).
    pub channel_account_id: ChannelAccountId,
    pub channel_trade_no: ChannelTradeNo,
    pub reported_amount: Money,
    pub refund_id: RefundId,
    pub source: OutcomeSource,
    pub detected_at: DateTime<Utc>,
}

/// The channel completed a refund.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundSucceeded {
    pub refund_id: RefundId,
    pub trade_no: TradeNo,
    pub channel_refund_no: Option<String>,
    pub succeeded_at: DateTime<Utc>,
}

/// The channel refused or failed a refund; its amount is available again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundFailed {
    pub refund_id: RefundId,
    pub trade_no: TradeNo,
    pub reason: String,
    pub failed_at: DateTime<Utc>,
}

/// A webhook to an app was scheduled.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NotificationScheduled {
    pub notification_id: NotificationId,
    pub app_id: AppId,
    pub merchant_id: MerchantId,
    /// `payment.succeeded`, `refund.failed`, ...
    pub webhook_type: String,
    /// The webhook's `data` object.
    pub data: serde_json::Value,
    pub created_at: DateTime<Utc>,
}

/// One delivery attempt of a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookAttempted {
    pub notification_id: NotificationId,
    /// 1 for the first attempt.
    pub attempt_no: u32,
    pub succeeded: bool,
    pub http_status: Option<u16>,
    pub error: Option<String>,
    pub attempted_at: DateTime<Utc>,
    /// When the next attempt is due; `None` once delivered or given up.
    pub next_attempt_at: Option<DateTime<Utc>>,
}

/// The app acknowledged a webhook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationDelivered {
    pub notification_id: NotificationId,
    pub delivered_at: DateTime<Utc>,
}

/// Every attempt of a webhook failed; an alert follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationFailed {
    pub notification_id: NotificationId,
    pub n_attempts: u32,
    pub failed_at: DateTime<Utc>,
}

/// An operator asked for a webhook to be delivered again, on a fresh schedule.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NotificationRedeliveryRequested {
    pub notification_id: NotificationId,
    pub requested_at: DateTime<Utc>,
}

/// An app's request under an `Idempotency-Key` succeeded; a retry with the same key and body
/// gets this answer again, with another body a conflict.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdempotencyKeyRecorded {
    pub app_id: AppId,
    /// Hex SHA-256 of the key (keys are the app's, possibly sensitive, and unbounded in form).
    pub key_sha256: String,
    /// Hex SHA-256 of the request body.
    pub request_sha256: String,
    pub status: u16,
    pub body: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

/// A reconciliation of one channel account's day ran; its result, whole.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationCompleted {
    pub reconciliation_id: String,
    pub merchant_id: MerchantId,
    pub channel_account_id: ChannelAccountId,
    pub date: chrono::NaiveDate,
    /// `fetched` from the channel, or `uploaded` by an operator.
    pub source: String,
    pub n_bill_lines: u64,
    pub n_matched: u64,
    pub discrepancies: Vec<crate::reconciliation::Discrepancy>,
    /// Payouts that settled that day, each asked of the channel (absent before payouts were
    /// reconciled).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub payouts: Option<crate::reconciliation::PayoutsReconciled>,
    pub completed_at: DateTime<Utc>,
}

/// A scheduled reconciliation could not run (the bill is not published yet, the channel did
/// not answer); it is tried again at the next look.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationFetchFailed {
    pub channel_account_id: ChannelAccountId,
    pub date: chrono::NaiveDate,
    pub reason: String,
    pub attempted_at: DateTime<Utc>,
}

/// Declares [`Event`] from one list of `Variant => "type.name"` pairs, and from the same list
/// the three places that must agree on it: `event_type`, `payload_json` and `decode`. Each
/// variant holds the struct of the same name, whose fields are the payload.
macro_rules! events {
    ($($variant:ident => $name:literal,)+) => {
        /// Every event paycenter records.
        #[allow(missing_docs)]
        #[derive(Debug, Clone, PartialEq)]
        pub enum Event {
            $($variant($variant),)+
        }

        impl Event {
            /// The envelope's type name of this event.
            pub fn event_type(&self) -> &'static str {
                match self {
                    $(Event::$variant(_) => $name,)+
                }
            }

            /// The payload as JSON text: the variant's fields, serialized directly.
            pub fn payload_json(&self) -> String {
                let json = match self {
                    $(Event::$variant(event) => serde_json::to_string(event),)+
                };
                json.expect("events always serialize")
            }

            /// Decodes a stored event straight from its payload text, by its type name.
            pub fn decode(recorded: &RecordedEvent) -> Result<Event, DecodeError> {
                let fail = |reason: String| DecodeError {
                    global_position: recorded.global_position,
                    event_type: recorded.event_type.clone(),
                    reason,
                };
                match recorded.event_type.as_str() {
                    $($name => serde_json::from_str(&recorded.payload).map(Event::$variant).map_err(|error| fail(error.to_string())),)+
                    _ => Err(fail("unknown event type".to_owned())),
                }
            }
        }
    };
}

events! {
    MerchantOnboarded => "merchant.onboarded",
    ChannelAccountActivated => "channel_account.activated",
    AppRegistered => "app.registered",
    AppApiKeyRotated => "app.api_key_rotated",
    AppWebhookSecretRotated => "app.webhook_secret_rotated",
    AppAccessChanged => "app.access_changed",
    ChannelAccountAccessChanged => "channel_account.access_changed",
    PaymentAttemptStarted => "payment.attempt_started",
    PaymentAttemptInitiated => "payment.attempt_initiated",
    PaymentAttemptClosed => "payment.attempt_closed",
    PaymentSucceeded => "payment.succeeded",
    PaymentFailed => "payment.failed",
    DuplicatePaymentDetected => "payment.duplicate_detected",
    PaymentAnomalyDetected => "payment.anomaly_detected",
    ChannelCloseAttempted => "payment.channel_close_attempted",
    RefundRequested => "refund.requested",
    RefundSucceeded => "refund.succeeded",
    RefundFailed => "refund.failed",
    NotificationScheduled => "notification.scheduled",
    WebhookAttempted => "notification.attempted",
    NotificationDelivered => "notification.delivered",
    NotificationFailed => "notification.failed",
    NotificationRedeliveryRequested => "notification.redelivery_requested",
    IdempotencyKeyRecorded => "idempotency_key.recorded",
    ReconciliationCompleted => "reconciliation.completed",
    ReconciliationFetchFailed => "reconciliation.fetch_failed",
    CheckoutOpened => "checkout.opened",
    OperatorCreated => "operator.created",
    OperatorAccessChanged => "operator.access_changed",
    AlertChannelCreated => "alert_channel.created",
    AlertChannelDeleted => "alert_channel.deleted",
    AlertRaised => "alert.raised",
    AlertResolved => "alert.resolved",
    AlertDelivered => "alert.delivered",
    AlertDeliveryFailed => "alert.delivery_failed",
    MerchantRoutingSet => "merchant.routing_set",
    ChannelBreakerChanged => "channel_account.breaker_changed",
    PaymentShareRequested => "payment.share_requested",
    PaymentShared => "payment.shared",
    PaymentShareFailed => "payment.share_failed",
    PaymentShareReturned => "payment.share_returned",
    PayoutRequested => "payout.requested",
    PayoutSucceeded => "payout.succeeded",
    PayoutFailed => "payout.failed",
    PayoutAwaitingConfirmation => "payout.awaiting_confirmation",
    ReceiverBound => "receiver.bound",
    ReceiverRemoved => "receiver.removed",
}

/// Why a stored event could not be turned back into an [`Event`].
#[derive(Debug, thiserror::Error)]
#[error("event at position {global_position} ({event_type}) does not decode: {reason}")]
pub struct DecodeError {
    /// Where it is.
    pub global_position: u64,
    /// Its type name.
    pub event_type: String,
    /// What is wrong.
    pub reason: String,
}

impl Event {
    /// The payment attempt an order event is about; `None` for every other event.
    pub fn trade_no(&self) -> Option<&TradeNo> {
        match self {
            Event::PaymentAttemptStarted(event) => Some(&event.trade_no),
            Event::PaymentAttemptInitiated(event) => Some(&event.trade_no),
            Event::PaymentAttemptClosed(event) => Some(&event.trade_no),
            Event::PaymentSucceeded(event) => Some(&event.trade_no),
            Event::PaymentFailed(event) => Some(&event.trade_no),
            Event::DuplicatePaymentDetected(event) => Some(&event.trade_no),
            Event::PaymentAnomalyDetected(event) => Some(&event.trade_no),
            Event::ChannelCloseAttempted(event) => Some(&event.trade_no),
            Event::RefundRequested(event) => Some(&event.trade_no),
            Event::RefundSucceeded(event) => Some(&event.trade_no),
            Event::RefundFailed(event) => Some(&event.trade_no),
            Event::PaymentShareRequested(event) => Some(&event.trade_no),
            Event::PaymentShared(event) => Some(&event.trade_no),
            Event::PaymentShareFailed(event) => Some(&event.trade_no),
            Event::PaymentShareReturned(event) => Some(&event.trade_no),
            _ => None,
        }
    }

    /// Envelopes for the events a command decided, with ids derived from `command_id`.
    pub fn to_new_events(
        events: &[Event],
        command_id: &str,
        correlation_id: Option<uuid::Uuid>,
    ) -> Vec<NewEvent> {
        let causation_id = Some(uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            command_id.as_bytes(),
        ));
        events
            .iter()
            .enumerate()
            .map(|(event_idx, event)| NewEvent {
                event_id: event_id_for(command_id, event_idx),
                event_type: event.event_type().to_owned(),
                schema_version: SCHEMA_VERSION,
                correlation_id,
                causation_id,
                payload: event.payload_json(),
            })
            .collect()
    }
}
