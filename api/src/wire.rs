//! Typed wire bodies: every JSON request paycenter reads and every JSON answer it writes, as
//! Rust types. They are the compatibility promise to apps (kept apart from domain types,
//! converted by hand) and the one source of `/openapi.json`'s schemas ([`crate::http::openapi`]).
//!
//! Requests deny unknown fields in their schemas (`additionalProperties: false`); at run time
//! [`crate::http::dto::check_fields`] refuses them first, naming the field (`400 unknown_field`).
//! Amounts are decimal strings in major units (`"12.34"`); a request's amount is read as any
//! JSON value so that a JSON number gets its own clear `400 invalid_amount`.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use utoipa::ToSchema;

use crate::error::{ErrorCode, Refusal};
use paycenter_projections::model::{PaymentView, RefundView};

/// The most characters of an unknown field's name a refusal repeats.
const MAX_SHOWN_NAME_CHARS: usize = 64;

/// A field a body may carry and the most characters its string (or each string of its
/// array) may have; 0 for fields that are not text (their handler checks their type).
pub type FieldLimit = (&'static str, usize);

/// Refuses fields the endpoint does not know (`400 unknown_field`) and over-long strings
/// (`400 field_too_long`), naming the field in `error.field`; `prefix` names where the object
/// sits (`"splits[0]."`, `"params."`).
pub fn check_fields(
    object: &Map<String, Value>,
    prefix: &str,
    known: &[FieldLimit],
) -> Result<(), Refusal> {
    for (name, value) in object {
        let Some((_, max_chars)) = known.iter().find(|(known_name, _)| known_name == name) else {
            let shown: String = name.chars().take(MAX_SHOWN_NAME_CHARS).collect();
            return Err(Refusal::new(
                ErrorCode::UnknownField,
                format!("{prefix}{shown} is not a field of this request"),
            )
            .with_field(format!("{prefix}{shown}")));
        };
        let too_long = *max_chars > 0
            && match value {
                Value::String(text) => text.chars().count() > *max_chars,
                Value::Array(items) => items.iter().any(|item| {
                    item.as_str()
                        .is_some_and(|text| text.chars().count() > *max_chars)
                }),
                _ => false,
            };
        if too_long {
            return Err(Refusal::new(
                ErrorCode::FieldTooLong,
                format!("{prefix}{name} is longer than {max_chars} characters"),
            )
            .with_field(format!("{prefix}{name}")));
        }
    }
    Ok(())
}

/// Reads a JSON object already checked by [`crate::http::dto::check_fields`] into its request type.
/// A missing field or one of the wrong type is `400 invalid_request` naming it in `error.field`.
pub fn read<T: serde::de::DeserializeOwned>(
    object: &serde_json::Map<String, Value>,
) -> Result<T, Refusal> {
    read_owned(object.clone())
}

/// [`read`], taking the object (no copy): for handlers that need nothing else of it.
pub fn read_owned<T: serde::de::DeserializeOwned>(
    object: serde_json::Map<String, Value>,
) -> Result<T, Refusal> {
    serde_path_to_error::deserialize(Value::Object(object)).map_err(|error| {
        let inner = error.inner().to_string();
        let path = error.path().to_string();
        // serde names a missing field only in its message: "missing field `name`".
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.strip_suffix('`'));
        match missing {
            Some(field) => Refusal::invalid(format!("{field} is required")).with_field(field),
            None => Refusal::invalid(format!("{path}: {inner}")).with_field(path),
        }
    })
}

/// Serializes an answer type.
pub fn to_value<T: Serialize>(answer: &T) -> Value {
    serde_json::to_value(answer).expect("wire answers always serialize")
}

// ---------------------------------------------------------------------------------------
// Errors

/// Every refusal: `{"error": {...}}` with a stable `code` for programs and a sentence.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

/// What went wrong.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    /// Stable snake_case code, e.g. `invalid_amount`, `payment_not_found`.
    #[schema(example = "invalid_amount")]
    pub code: String,
    /// A sentence for humans.
    pub message: String,
    /// The field at fault (`unknown_field`, `field_too_long`, ...), when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
    /// Seconds to wait before trying again (`429 rate_limited`, `409 attempt_too_soon`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<u64>,
}

// ---------------------------------------------------------------------------------------
// Merchants, channel accounts, apps (admin)

/// `POST /v1/merchants`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateMerchantRequest {
    /// 1 to 128 characters.
    #[schema(min_length = 1, max_length = 128, example = "Acme Property")]
    pub name: String,
}

/// A merchant.
#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantAnswer {
    #[schema(example = "mch_01jd8x3k5n7q9r2t4v6w8y0z1a")]
    pub merchant_id: String,
    pub name: String,
    /// When it was onboarded (RFC 3339).
    pub created_at: String,
}

/// `GET /v1/merchants`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct MerchantsList {
    pub data: Vec<MerchantAnswer>,
    /// Whether more follow (ask again with `starting_after` = the last item's id).
    pub has_more: bool,
}

/// `GET /v1/merchants/{merchant_id}/channel-accounts`: newest first. Parameters are never
/// answered: they hold the account's keys.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelAccountsList {
    pub data: Vec<ChannelAccountAnswer>,
    pub has_more: bool,
}

/// An app as operators see it (its key and webhook secret are never answered again).
#[derive(Debug, Serialize, ToSchema)]
pub struct AppAnswer {
    pub app_id: String,
    pub name: String,
    pub merchant_ids: Vec<String>,
    pub notify_url: String,
    /// `active` or `disabled`.
    pub status: String,
    pub created_at: String,
}

/// `POST /v1/operators`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateOperatorRequest {
    /// The address the operator signs in with (kept lowercase; one operator per address).
    #[schema(max_length = 254, example = "finance@example.com")]
    pub email: String,
    /// 1 to 128 characters.
    #[schema(min_length = 1, max_length = 128, example = "Li Na")]
    pub name: String,
    /// What the operator may do: `admin` everything; `finance` read, refunds, reconciliation,
    /// audit; `ops` read, notifications, projections; `viewer` read.
    #[schema(pattern = "^(admin|finance|ops|viewer)$", example = "finance")]
    pub role: String,
    /// 12 to 128 characters; when absent one is generated and answered once.
    #[schema(min_length = 12, max_length = 128)]
    pub password: Option<String>,
}

/// An operator of the console (the password is never answered).
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorAnswer {
    #[schema(example = "op_3f9a0c1b2d4e5f60718293a4")]
    pub operator_id: String,
    pub email: String,
    pub name: String,
    #[schema(pattern = "^(admin|finance|ops|viewer)$")]
    pub role: String,
    /// False once disabled: the operator cannot sign in.
    pub enabled: bool,
    /// RFC 3339.
    pub created_at: String,
}

/// `POST /v1/operators`: the operator, and the password when paycenter generated it (shown
/// this once).
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorCreatedAnswer {
    pub operator_id: String,
    pub email: String,
    pub name: String,
    #[schema(pattern = "^(admin|finance|ops|viewer)$")]
    pub role: String,
    pub enabled: bool,
    pub created_at: String,
    /// Only when generated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
}

impl OperatorCreatedAnswer {
    /// The operator, with the generated password if there is one.
    pub fn of(operator: OperatorAnswer, password: Option<String>) -> OperatorCreatedAnswer {
        OperatorCreatedAnswer {
            operator_id: operator.operator_id,
            email: operator.email,
            name: operator.name,
            role: operator.role,
            enabled: operator.enabled,
            created_at: operator.created_at,
            password,
        }
    }
}

/// `GET /v1/operators`: by e-mail address.
#[derive(Debug, Serialize, ToSchema)]
pub struct OperatorsList {
    pub data: Vec<OperatorAnswer>,
    pub has_more: bool,
}

/// An operator as answered.
pub fn operator_answer(operator: &paycenter_projections::model::OperatorView) -> OperatorAnswer {
    OperatorAnswer {
        operator_id: operator.operator_id.to_string(),
        email: operator.email.clone(),
        name: operator.name.clone(),
        role: operator.role.as_str().to_owned(),
        enabled: operator.enabled,
        created_at: operator.created_at.to_rfc3339(),
    }
}

/// `POST /v1/alert-channels`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAlertChannelRequest {
    /// `dingtalk` (a group's custom robot) or `webhook` (a signed JSON POST).
    #[schema(pattern = "^(dingtalk|webhook)$", example = "dingtalk")]
    pub kind: String,
    /// DingTalk: the robot's webhook URL with its `access_token`; webhook: where to POST.
    #[schema(example = "https://oapi.dingtalk.com/robot/send?access_token=…")]
    pub url: String,
    /// DingTalk: the robot's signing secret (optional); webhook: required, signs each alert.
    #[schema(min_length = 8, max_length = 256)]
    pub secret: Option<String>,
    /// DingTalk: mobile numbers each message @-mentions.
    pub at_mobiles: Option<Vec<String>>,
}

/// An alert destination (its secret never answered; a DingTalk token redacted in `url`).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertChannelAnswer {
    #[schema(example = "alc_5f0c9d2e8b7a6c4d3e2f1a0b9c8d7e6f")]
    pub alert_channel_id: String,
    #[schema(pattern = "^(dingtalk|webhook)$")]
    pub kind: String,
    pub url: String,
    pub has_secret: bool,
    pub at_mobiles: Vec<String>,
    pub created_at: String,
}

/// One receiver's share of a payment at the channel.
#[derive(Debug, Serialize, ToSchema)]
pub struct ShareAnswer {
    pub receiver: String,
    pub amount: String,
    /// Given back for refunds so far.
    pub returned: String,
    /// `pending`, `shared`, `returned` (all given back) or `failed`.
    #[schema(pattern = "^(pending|shared|returned|failed)$")]
    pub status: String,
}

/// `POST /v1/merchants/{merchant_id}/receivers`: a split receiver to bind at the channel.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReceiverRequest {
    /// The merchant's account it is bound under (direct or sub-merchant).
    pub channel_account_id: String,
    /// The id a payment's `splits[].receiver` names it by: 1 to 64 of `A-Z a-z 0-9 _ - .`.
    #[schema(pattern = "^[A-Za-z0-9_.-]{1,64}$", example = "store-7")]
    pub receiver_id: String,
    /// The channel's word for its type: WeChat Pay `MERCHANT_ID | PERSONAL_OPENID`, Alipay
    /// `loginName | userId`, the sandbox `merchant | user`.
    #[serde(rename = "type")]
    #[schema(example = "MERCHANT_ID")]
    pub kind: String,
    /// Its account at the channel.
    pub account: String,
    /// Its real name (WeChat Pay needs a merchant's full name; sent sealed, never returned).
    #[serde(default)]
    pub name: Option<String>,
}

/// A split receiver (its name is never returned).
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiverAnswer {
    pub receiver_id: String,
    pub merchant_id: String,
    pub channel_account_id: String,
    #[serde(rename = "type")]
    pub kind: String,
    pub account: String,
    /// `bound`, or `removed` in the answer to its removal.
    #[schema(pattern = "^(bound|removed)$")]
    pub status: String,
    pub created_at: String,
}

/// `GET /v1/merchants/{merchant_id}/receivers`: every bound receiver, in the order bound.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReceiversList {
    pub data: Vec<ReceiverAnswer>,
    pub has_more: bool,
}

/// A bound receiver.
pub fn receiver_answer(bound: &paycenter_domain::events::ReceiverBound) -> ReceiverAnswer {
    ReceiverAnswer {
        receiver_id: bound.receiver_id.clone(),
        merchant_id: bound.merchant_id.to_string(),
        channel_account_id: bound.channel_account_id.to_string(),
        kind: bound.kind.clone(),
        account: bound.account.clone(),
        status: "bound".to_owned(),
        created_at: bound.bound_at.to_rfc3339(),
    }
}

/// `POST /v1/payouts`: pay money the merchant holds out to an account at a channel.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePayoutRequest {
    pub merchant_id: String,
    /// The merchant's account the money leaves from (direct or sub-merchant).
    pub channel_account_id: String,
    /// The operator's number for it, unique per merchant: the same number and terms answer the
    /// same payout; other terms `409 payout_no_reused`.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "PO-2026-12-001")]
    pub payout_no: String,
    #[schema(value_type = String, pattern = "^[0-9]{1,15}([.][0-9]{1,3})?$", example = "100.00")]
    pub amount: Value,
    #[schema(example = "CNY")]
    pub currency: String,
    pub receiver: PayoutReceiverBody,
    /// The app told of the outcome by webhook (`payout.succeeded`, `payout.failed`,
    /// `payout.awaiting_confirmation`); without it, every app of the merchant.
    #[serde(default)]
    pub app_id: Option<String>,
}

/// Where a payout goes.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PayoutReceiverBody {
    /// `alipay_login`, `alipay_user_id`, `wechat_openid` or `sandbox`, as the channel takes.
    #[serde(rename = "type")]
    #[schema(pattern = "^(alipay_login|alipay_user_id|wechat_openid|sandbox)$")]
    pub kind: String,
    pub account: String,
    /// The receiver's real name, where the channel checks it (sealed; never returned).
    #[serde(default, skip_serializing)]
    pub name: Option<String>,
}

/// A payout.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutAnswer {
    pub payout_id: String,
    pub payout_no: String,
    pub merchant_id: String,
    pub channel_account_id: String,
    pub amount: String,
    pub currency: String,
    pub receiver: PayoutReceiverAnswer,
    /// `pending`, `awaiting_confirmation` (the receiving user must confirm it: see
    /// `confirmation`), `succeeded` or `failed` (its amount is the merchant's again).
    #[schema(pattern = "^(pending|awaiting_confirmation|succeeded|failed)$")]
    pub status: String,
    pub channel_payout_no: Option<String>,
    pub failure_reason: Option<String>,
    /// The app told of the outcome; `null`: every app of the merchant.
    pub app_id: Option<String>,
    /// While `awaiting_confirmation`: what the app hands to `wx.requestMerchantTransfer`
    /// (`package`, `mchId`, `appId`) so the user confirms the transfer in WeChat.
    pub confirmation: Option<PayoutConfirmationAnswer>,
    pub created_at: String,
    pub settled_at: Option<String>,
}

/// What the receiving user confirms a payout with.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutConfirmationAnswer {
    pub package_info: String,
    /// The paying merchant's id at the channel (`mchId`).
    pub mch_id: String,
    /// The app id the receiver's openid belongs to (`appId`).
    pub app_id: String,
}

/// Where a payout went (its name is never returned).
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutReceiverAnswer {
    #[serde(rename = "type")]
    pub kind: String,
    pub account: String,
}

/// `GET /v1/payouts`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutsList {
    pub data: Vec<PayoutAnswer>,
    pub has_more: bool,
}

/// A payout as the API answers it.
pub fn payout_answer(payout: &paycenter_projections::model::PayoutView) -> PayoutAnswer {
    let requested = &payout.requested;
    PayoutAnswer {
        payout_id: requested.payout_id.clone(),
        payout_no: requested.payout_no.clone(),
        merchant_id: requested.merchant_id.to_string(),
        channel_account_id: requested.channel_account_id.to_string(),
        amount: requested.amount.to_major_string(),
        currency: requested.amount.currency().code().to_owned(),
        receiver: PayoutReceiverAnswer {
            kind: requested.receiver.kind.as_str().to_owned(),
            account: requested.receiver.account.clone(),
        },
        status: payout.status.as_str().to_owned(),
        channel_payout_no: payout.channel_payout_no.clone(),
        failure_reason: payout.failure_reason.clone(),
        app_id: requested.app_id.as_ref().map(ToString::to_string),
        confirmation: payout
            .confirmation
            .as_ref()
            .map(|confirmation| PayoutConfirmationAnswer {
                package_info: confirmation.package_info.clone(),
                mch_id: confirmation.channel_merchant_id.clone(),
                app_id: confirmation.channel_app_id.clone(),
            }),
        created_at: requested.requested_at.to_rfc3339(),
        settled_at: payout.settled_at.map(|at| at.to_rfc3339()),
    }
}

/// `GET /v1/alert-channels`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertChannelsList {
    pub data: Vec<AlertChannelAnswer>,
    pub has_more: bool,
}

/// `DELETE /v1/alert-channels/{id}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertChannelDeletedAnswer {
    pub alert_channel_id: String,
    pub deleted: bool,
}

/// `POST /v1/alert-channels/{id}/test`: whether the destination took the test message, and
/// what it answered when it did not (a DingTalk `errcode`, an HTTP status, a network error).
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertChannelTestAnswer {
    pub alert_channel_id: String,
    pub delivered: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// One message of an alert to one destination.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertDeliveryAnswer {
    pub alert_channel_id: String,
    /// `raised` or `resolved`.
    pub message: String,
    /// `pending`, `delivered` or `failed` (given up).
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    pub next_attempt_at: Option<String>,
}

/// An alert.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertAnswer {
    #[schema(example = "alr_0f1e2d3c4b5a69788796a5b4c3d2e1f0")]
    pub alert_id: String,
    /// The rule that raised it, e.g. `webhooks_failing`.
    pub rule: String,
    /// What it is about: an account, an app, a payment, a projection.
    pub subject: String,
    /// `open` or `resolved`.
    #[schema(pattern = "^(open|resolved)$")]
    pub status: String,
    pub summary: String,
    pub details: String,
    pub raised_at: String,
    pub resolved_at: Option<String>,
    pub resolution: Option<String>,
    pub deliveries: Vec<AlertDeliveryAnswer>,
}

/// `GET /v1/alerts`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AlertsList {
    pub data: Vec<AlertAnswer>,
    pub has_more: bool,
}

/// An alert destination as answered.
pub fn alert_channel_answer(
    channel: &paycenter_projections::model::AlertChannelView,
) -> AlertChannelAnswer {
    AlertChannelAnswer {
        alert_channel_id: channel.alert_channel_id.clone(),
        kind: channel.kind.as_str().to_owned(),
        url: channel.url_shown.clone(),
        has_secret: channel.secret_sealed.is_some(),
        at_mobiles: channel.at_mobiles.clone(),
        created_at: channel.created_at.to_rfc3339(),
    }
}

/// An alert as answered.
pub fn alert_answer(alert: &paycenter_projections::model::AlertView) -> AlertAnswer {
    AlertAnswer {
        alert_id: alert.alert_id.clone(),
        rule: alert.rule.as_str().to_owned(),
        subject: alert.subject.clone(),
        status: alert.status().to_owned(),
        summary: alert.summary.clone(),
        details: alert.details.clone(),
        raised_at: alert.raised_at.to_rfc3339(),
        resolved_at: alert.resolved_at.map(|at| at.to_rfc3339()),
        resolution: alert.resolution.clone(),
        deliveries: alert
            .deliveries
            .iter()
            .map(|delivery| AlertDeliveryAnswer {
                alert_channel_id: delivery.alert_channel_id.clone(),
                message: delivery.message.as_str().to_owned(),
                status: delivery.status.clone(),
                attempts: delivery.attempts,
                last_error: delivery.last_error.clone(),
                next_attempt_at: delivery.next_attempt_at.map(|at| at.to_rfc3339()),
            })
            .collect(),
    }
}

/// An alert as JSON (the webhook destinations' `data`).
pub fn alert_json(alert: &paycenter_projections::model::AlertView) -> Value {
    to_value(&alert_answer(alert))
}

/// `GET /v1/apps`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppsList {
    pub data: Vec<AppAnswer>,
    pub has_more: bool,
}

/// `GET /v1/payments` (a list): newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentsList {
    pub data: Vec<PaymentAnswer>,
    pub has_more: bool,
}

/// `GET /v1/payments`: a list, or with `merchant_id` + `order_no` or `channel_trade_no` the one
/// payment found (with `attempts`).
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum FindPaymentsAnswer {
    List(PaymentsList),
    One(Box<PaymentAnswer>),
}

/// `GET /v1/refunds`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundsList {
    pub data: Vec<RefundAnswer>,
    pub has_more: bool,
}

/// `GET /v1/reconciliations`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationsList {
    pub data: Vec<ReconciliationAnswer>,
    pub has_more: bool,
}

/// A count and the money it adds up to.
#[derive(Debug, Serialize, ToSchema)]
pub struct TallyAnswer {
    pub count: u64,
    #[schema(example = "1024.50")]
    pub amount: String,
}

/// One bucket of a merchant's statistics: `payments` by when they started; `succeeded`,
/// `fees`, `by_channel` and `by_invoke_method` by when they were paid; `refunds` (those that
/// succeeded) by when they did.
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsBucketAnswer {
    /// The bucket's start in the asked zone (RFC 3339 with its offset).
    pub start: String,
    pub payments: TallyAnswer,
    pub succeeded: TallyAnswer,
    pub refunds: TallyAnswer,
    pub fees: String,
    pub by_channel: std::collections::BTreeMap<String, TallyAnswer>,
    pub by_invoke_method: std::collections::BTreeMap<String, TallyAnswer>,
}

/// `GET /v1/merchants/{merchant_id}/stats`
#[derive(Debug, Serialize, ToSchema)]
pub struct StatsAnswer {
    pub merchant_id: String,
    pub currency: String,
    /// `day` or `hour`.
    pub granularity: String,
    /// The IANA zone the buckets are cut in.
    pub tz: String,
    pub buckets: Vec<StatsBucketAnswer>,
}

/// `POST /v1/merchants/{merchant_id}/channel-accounts` and its `PUT` (key rotation).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelAccountRequest {
    /// `sandbox`, `alipay`, `wechatpay` or `stripe`.
    #[schema(pattern = "^(sandbox|alipay|wechatpay|stripe)$", example = "sandbox")]
    pub channel: String,
    /// The channel's parameters (keys, ids; see the README's channel table). Unknown names are
    /// refused; secrets are sealed and never returned.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Option<Value>,
    /// The platform's fee as a decimal fraction, e.g. `"0.006"`.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^0?[.][0-9]{1,6}$|^0$", example = "0.006")]
    pub fee_rate: Option<Value>,
    /// IP addresses or CIDR blocks callbacks may come from (empty: any).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub callback_ip_allowlist: Option<Value>,
    /// The UTC offset of the days the channel's bills cover, e.g. `"+08:00"`.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(Z|[+-][0-9]{2}:[0-9]{2})$", example = "+08:00")]
    pub bill_utc_offset: Option<Value>,
    /// `direct` (default: the merchant's own keys), `provider` (a service provider's keys;
    /// it acts for sub-merchants and takes no payments itself) or `sub_merchant` (only the ids
    /// the channel assigned it, under `provider_account_id`).
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(direct|provider|sub_merchant)$", example = "direct")]
    pub mode: Option<Value>,
    /// For a `sub_merchant`: the provider account (same channel) whose keys make its requests.
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub provider_account_id: Option<Value>,
}

/// `PUT /v1/merchants/{merchant_id}/channel-accounts/{channel_account_id}`: new parameters for
/// the same account. Left out, `callback_ip_allowlist` keeps its value; `channel`, if given,
/// must be the account's.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateChannelAccountRequest {
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(sandbox|alipay|wechatpay|stripe)$")]
    pub channel: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Object)]
    pub params: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^0?[.][0-9]{1,6}$|^0$", example = "0.006")]
    pub fee_rate: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>)]
    pub callback_ip_allowlist: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(Z|[+-][0-9]{2}:[0-9]{2})$", example = "+08:00")]
    pub bill_utc_offset: Option<Value>,
    /// If given, the account's own mode (a rotation keeps it).
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(direct|provider|sub_merchant)$")]
    pub mode: Option<Value>,
    /// If given, the account's own provider (a rotation keeps it).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub provider_account_id: Option<Value>,
}

/// A channel account (its parameters are never returned).
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelAccountAnswer {
    pub channel_account_id: String,
    pub merchant_id: String,
    pub channel: String,
    /// `active` or `disabled` (a sub-merchant whose provider is disabled is disabled).
    pub status: String,
    /// `direct`, `provider` or `sub_merchant`.
    #[schema(pattern = "^(direct|provider|sub_merchant)$")]
    pub mode: String,
    /// A sub-merchant's provider account.
    pub provider_account_id: Option<String>,
    #[schema(example = "0.006")]
    pub fee_rate: String,
    pub callback_ip_allowlist: Vec<String>,
    pub bill_utc_offset: Option<String>,
    /// When it was first activated (RFC 3339).
    pub created_at: String,
    /// When it was last activated (a key rotation activates it again).
    pub updated_at: String,
    /// The account's circuit breaker: `closed` (taking payments), `open` (failing: routing
    /// passes it over) or `half_open` (the next routed payment is a probe).
    #[schema(pattern = "^(closed|open|half_open)$")]
    pub breaker: String,
}

/// `POST .../channel-accounts/{channel_account_id}/disable | enable`
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelAccountStatusAnswer {
    pub channel_account_id: String,
    pub merchant_id: String,
    /// `active` or `disabled`.
    pub status: String,
}

/// One double-entry account of a merchant.
#[derive(Debug, Serialize, ToSchema)]
pub struct BalanceLine {
    /// `clearing`, `payable`, `fee`, `split:<receiver>`, ...
    pub account: String,
    pub currency: String,
    #[schema(example = "69.58")]
    pub balance: String,
}

/// `GET /v1/merchants/{merchant_id}/balances`
#[derive(Debug, Serialize, ToSchema)]
pub struct BalancesAnswer {
    pub merchant_id: String,
    pub accounts: Vec<BalanceLine>,
}

/// `POST /v1/apps`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateAppRequest {
    #[schema(min_length = 1, max_length = 128)]
    pub name: String,
    /// The merchants the app acts for.
    #[schema(value_type = Vec<String>)]
    pub merchant_ids: Value,
    /// Where webhooks go (`http` or `https`).
    #[schema(
        format = "uri",
        max_length = 2048,
        example = "https://app.example.com/paycenter/hooks"
    )]
    pub notify_url: String,
}

/// A registered app; `api_key` and `webhook_secret` are shown this once.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppCreatedAnswer {
    pub app_id: String,
    pub name: String,
    pub merchant_ids: Vec<String>,
    pub notify_url: String,
    pub api_key: String,
    pub webhook_secret: String,
}

/// `POST /v1/apps/{app_id}/rotate-key | rotate-webhook-secret` (body optional).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateRequest {
    /// How long the previous credential keeps working (default 86400, at most 30 days).
    #[serde(default)]
    #[schema(value_type = Option<u64>, maximum = 2592000)]
    pub grace_seconds: Option<Value>,
}

/// What an app action answers: the new key or secret (once), or the app's status.
#[derive(Debug, Serialize, ToSchema)]
pub struct AppActionAnswer {
    pub app_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_key_valid_until: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub webhook_secret: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub previous_secret_valid_until: Option<String>,
    /// `active` or `disabled` (enable and disable).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
}

// ---------------------------------------------------------------------------------------
// Payments (apps)

/// One receiver's share of a payment.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SplitRequest {
    #[schema(min_length = 1, max_length = 64)]
    pub receiver: String,
    #[schema(value_type = String, pattern = "^[0-9]{1,15}([.][0-9]{1,3})?$", example = "10.00")]
    pub amount: Value,
}

/// `POST /v1/payments`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreatePaymentRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub merchant_id: String,
    /// The account to pay through; required unless `invoke_method` is `cashier`, which takes
    /// none (the person picks one of the merchant's accounts on paycenter's page).
    #[serde(default)]
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub channel_account_id: Option<String>,
    /// With `cashier`: the accounts to offer (default: every active account of the merchant).
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, max_items = 16)]
    pub channel_account_ids: Option<Value>,
    /// The app's own order number (its namespace: one app's orders never meet another's).
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$", example = "R-2026-001")]
    pub order_no: String,
    /// Major units as a decimal string, no more decimals than the currency has.
    #[schema(value_type = String, pattern = "^[0-9]{1,15}([.][0-9]{1,3})?$", example = "100.00")]
    pub amount: Value,
    #[schema(
        pattern = "^(CNY|USD|EUR|GBP|HKD|SGD|AUD|CAD|CHF|JPY|KRW|BHD|KWD)$",
        example = "CNY"
    )]
    pub currency: String,
    /// `pc`, `wap`, `app`, `mini_program`, `jsapi` or `native_qr`.
    #[schema(
        pattern = "^(pc|wap|app|mini_program|jsapi|native_qr|cashier)$",
        example = "pc"
    )]
    pub invoke_method: String,
    #[schema(min_length = 1, max_length = 256)]
    pub subject: String,
    #[serde(default)]
    #[schema(value_type = Option<Vec<SplitRequest>>)]
    pub splits: Option<Value>,
    /// Seconds until the attempt expires unpaid.
    #[serde(default)]
    #[schema(value_type = Option<u64>, minimum = 60, maximum = 604800)]
    pub expire_seconds: Option<Value>,
    /// The payer at the channel (WeChat openid, Alipay buyer id), where the method needs it.
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 128)]
    pub payer_id: Option<Value>,
    /// The payer's IP (WeChat Pay H5).
    #[serde(default)]
    #[schema(value_type = Option<String>)]
    pub client_ip: Option<Value>,
    /// Where the cashier sends the user back to once the payment settles, with `order_no`,
    /// `trade_no` and `status` added to its query (the app confirms the status by the API).
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 2048, example = "https://app.example.com/paid")]
    pub return_url: Option<Value>,
    /// `auto` instead of `channel_account_id`: paycenter picks a healthy account by the
    /// merchant's routing rules, and tries the next after a definite refusal.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^auto$")]
    pub route: Option<Value>,
    /// With `route: auto`: channels to prefer, in order (`alipay`, `wechatpay`, `stripe`,
    /// `sandbox`); accounts of other channels are left out.
    #[serde(default)]
    #[schema(value_type = Option<Vec<String>>, max_items = 4)]
    pub preferred_channels: Option<Value>,
    /// `none` (default: splits live in paycenter's ledger only), `auto` (paid to their
    /// receivers at the channel as soon as the payment succeeds) or `manual` (when the app
    /// asks by `POST /v1/payments/{trade_no}/share`). Sharing needs splits naming receivers
    /// bound under the payment's account.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(none|auto|manual)$")]
    pub share: Option<Value>,
}

/// How routing chose a payment's account (`"route": "auto"`).
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteAnswer {
    pub account_chosen: String,
    pub reason: String,
    pub skipped: Vec<RouteSkipAnswer>,
}

/// An account routing left out.
#[derive(Debug, Serialize, ToSchema)]
pub struct RouteSkipAnswer {
    pub channel_account_id: String,
    pub reason: String,
}

/// A route as answered.
pub fn route_answer(route: &paycenter_domain::events::RouteRecord) -> RouteAnswer {
    RouteAnswer {
        account_chosen: route.account_chosen.to_string(),
        reason: route.reason.clone(),
        skipped: route
            .skipped
            .iter()
            .map(|skip| RouteSkipAnswer {
                channel_account_id: skip.channel_account_id.to_string(),
                reason: skip.reason.clone(),
            })
            .collect(),
    }
}

/// One routing rule (`PUT /v1/merchants/{merchant_id}/routing`).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingRuleBody {
    /// Only payments of this invoke method (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^(pc|wap|app|mini_program|jsapi|native_qr)$")]
    pub invoke_method: Option<String>,
    /// Only payments in this currency (any when absent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(pattern = "^[A-Z]{3}$")]
    pub currency: Option<String>,
    /// The merchant's accounts, first choice first (1 to 16).
    #[schema(min_items = 1, max_items = 16)]
    pub channel_account_ids: Vec<String>,
    /// One weight (1 to 1000) per account: the order is drawn in proportion.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weights: Option<Vec<u32>>,
}

/// `PUT|GET /v1/merchants/{merchant_id}/routing`.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RoutingBody {
    /// The first rule that fits a payment (invoke method, currency) gives its accounts.
    #[schema(max_items = 32)]
    pub rules: Vec<RoutingRuleBody>,
}

/// What the user must be shown to pay: `type` says which fields come with it.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentActionAnswer {
    /// `redirect_url`, `form_post`, `qr_code`, `app_params`, `jsapi_params` or `checkout_url`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Where to send the person; for `qr_code`, paycenter's page drawing the QR as an image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub qr_code: Option<String>,
    /// `form_post`: the form's fields as `[name, value]` pairs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<Vec<String>>>,
    /// Parameters for the channel's app or JS SDK.
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>)]
    pub params: Option<Value>,
}

impl PaymentActionAnswer {
    /// The wire form of a channel's action.
    pub fn from_action(action: &paycenter_gateway::PaymentAction) -> PaymentActionAnswer {
        use paycenter_gateway::PaymentAction;
        let mut answer = PaymentActionAnswer {
            kind: String::new(),
            url: None,
            qr_code: None,
            fields: None,
            params: None,
        };
        answer.kind = match action {
            PaymentAction::RedirectUrl { url } => {
                answer.url = Some(url.clone());
                "redirect_url"
            }
            PaymentAction::FormPost { url, fields } => {
                answer.url = Some(url.clone());
                answer.fields = Some(
                    fields
                        .iter()
                        .map(|(name, value)| vec![name.clone(), value.clone()])
                        .collect(),
                );
                "form_post"
            }
            PaymentAction::QrCode { qr_code } => {
                answer.qr_code = Some(qr_code.clone());
                "qr_code"
            }
            PaymentAction::AppParams { params } => {
                answer.params = Some(params.clone());
                "app_params"
            }
            PaymentAction::JsapiParams { params } => {
                answer.params = Some(params.clone());
                "jsapi_params"
            }
            PaymentAction::CheckoutUrl { url } => {
                answer.url = Some(url.clone());
                "checkout_url"
            }
        }
        .to_owned();
        answer
    }
}

/// The initiation of a payment attempt (never its final result).
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentCreatedAnswer {
    pub trade_no: String,
    pub order_no: String,
    pub merchant_id: String,
    pub channel_account_id: String,
    /// Always `pending`.
    pub status: String,
    pub channel: String,
    pub invoke_method: String,
    pub amount: String,
    pub currency: String,
    pub expires_at: String,
    pub action: PaymentActionAnswer,
    /// How routing chose the account (`"route": "auto"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteAnswer>,
}

/// The aggregated cashier of an order (`invoke_method: "cashier"`): the person picks the
/// channel account on the page at `action.url`; each pick starts an attempt with its own
/// `trade_no`, which webhooks and the order lookup show.
#[derive(Debug, Serialize, ToSchema)]
pub struct CashierCreatedAnswer {
    /// `co_` and 32 hex digits.
    #[schema(pattern = "^co_[0-9a-f]{32}$")]
    pub checkout_id: String,
    pub order_no: String,
    pub merchant_id: String,
    /// Always `pending`.
    pub status: String,
    /// Always `cashier`.
    pub invoke_method: String,
    pub amount: String,
    pub currency: String,
    pub expires_at: String,
    /// `checkout_url`: the cashier page.
    pub action: PaymentActionAnswer,
}

/// What `POST /v1/payments` answers: an attempt's initiation, or the aggregated cashier.
#[derive(Debug, Serialize, ToSchema)]
#[serde(untagged)]
pub enum CreatePaymentAnswer {
    Attempt(PaymentCreatedAnswer),
    Cashier(CashierCreatedAnswer),
}

/// A refund.
#[derive(Debug, Serialize, ToSchema)]
pub struct RefundAnswer {
    pub refund_id: String,
    pub refund_no: String,
    pub trade_no: String,
    pub amount: String,
    pub currency: String,
    /// The app's reason, or why paycenter refunded automatically (empty when none was given).
    pub reason: String,
    /// `app` or `automatic` (a duplicate or late payment).
    pub kind: String,
    /// `pending`, `succeeded` or `failed`.
    pub status: String,
    pub created_at: String,
}

/// One receiver's share.
#[derive(Debug, Serialize, ToSchema)]
pub struct SplitAnswer {
    pub receiver: String,
    pub amount: String,
}

/// Where closing an abandoned attempt at its channel stands.
#[derive(Debug, Serialize, ToSchema)]
pub struct ChannelCloseAnswer {
    pub status: String,
    pub attempts: u32,
    pub last_error: Option<String>,
}

/// A verified callback that contradicted its attempt; the reported money is refunded.
#[derive(Debug, Serialize, ToSchema)]
pub struct AnomalyAnswer {
    /// `amount_mismatch`, `currency_mismatch` or `account_mismatch`.
    pub kind: String,
    pub reported_amount: String,
    pub reported_currency: String,
    pub reported_channel_account_id: String,
    pub reported_channel_trade_no: String,
    pub detected_at: String,
    pub refund_id: String,
    pub refund_status: String,
}

/// The payment object.
#[derive(Debug, Serialize, ToSchema)]
pub struct PaymentAnswer {
    pub trade_no: String,
    pub order_no: String,
    pub channel_trade_no: Option<String>,
    pub merchant_id: String,
    pub channel_account_id: String,
    pub channel: String,
    pub invoke_method: String,
    pub amount: String,
    pub currency: String,
    pub fee: String,
    pub subject: String,
    /// `pending`, `succeeded`, `failed` or `closed`.
    pub status: String,
    pub refunded_amount: String,
    pub created_at: String,
    pub expires_at: String,
    pub paid_at: Option<String>,
    pub refunds: Vec<RefundAnswer>,
    pub splits: Vec<SplitAnswer>,
    pub channel_close: Option<ChannelCloseAnswer>,
    pub anomalies: Vec<AnomalyAnswer>,
    /// How routing chose the account (`"route": "auto"`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<RouteAnswer>,
    /// `none`, `auto` or `manual`: whether its splits are paid at the channel.
    #[schema(pattern = "^(none|auto|manual)$")]
    pub share: String,
    /// Each receiver's share at the channel, once asked for (else empty).
    pub shares: Vec<ShareAnswer>,
    /// The channel's last words on a share that failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub share_error: Option<String>,
    /// Every attempt of the order, oldest first (lookups by order or channel trade number).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(no_recursion)]
    pub attempts: Option<Vec<PaymentAnswer>>,
}

/// `POST /v1/payments/{trade_no}/refunds`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRefundRequest {
    /// The app's refund number: the same number is the same refund.
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub refund_no: String,
    #[schema(value_type = String, pattern = "^[0-9]{1,15}([.][0-9]{1,3})?$", example = "30.00")]
    pub amount: Value,
    /// If given, the payment's currency.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(CNY|USD|EUR|GBP|HKD|SGD|AUD|CAD|CHF|JPY|KRW|BHD|KWD)$")]
    pub currency: Option<Value>,
    #[serde(default)]
    #[schema(value_type = Option<String>, max_length = 256)]
    pub reason: Option<Value>,
}

/// One item of the app's feed: everything an app needs to mirror the payments it started, in
/// log order. `type` and its `data`:
/// - `payment.created`: `{payment}`, the payment as it started (`status` `pending`; no webhook);
/// - `payment.succeeded`, `payment.failed`, `payment.closed`: `{payment}` as it stood when its
///   webhook was scheduled (the webhook's own `data`);
/// - `payment.anomaly_detected`: `{payment}` with the report under `anomalies` (also a webhook);
/// - `payment.shared`, `payment.share_failed`: `{payment}` with its `shares` (and `share_error`)
///   as scheduled (the webhook's `data`);
/// - `refund.created`: `{payment, refund}`, the refund as requested (`status` `pending`; no
///   webhook) and its payment as it stands when read;
/// - `refund.succeeded`, `refund.failed`: `{payment, refund}` as scheduled (the webhook's `data`).
#[derive(Debug, Serialize, ToSchema)]
pub struct FeedItem {
    /// The webhook's notification id; `evt_…` (the event's id) for the types with no webhook.
    pub id: String,
    /// Increasing; pass the last one seen as `after` to read on.
    pub cursor: String,
    /// See the type's description.
    #[serde(rename = "type")]
    pub kind: String,
    pub created_at: String,
    #[schema(value_type = Object)]
    pub data: Value,
}

/// `GET /v1/events`: the app's feed, everything it needs to mirror the payments it started,
/// in log order. Each event is `{id, cursor, type, created_at, data}`; `id` is the webhook's
/// notification id, or `evt_…` for the two types with no webhook. `type` and its `data`:
/// `payment.created`: `{payment}` as it started (`status` `pending`); `payment.succeeded`,
/// `payment.failed`, `payment.closed`: `{payment}` as its webhook carried it;
/// `payment.anomaly_detected`: `{payment}` with the report under `anomalies`;
/// `payment.shared`, `payment.share_failed`: `{payment}` with its `shares`; `refund.created`:
/// `{payment, refund}`, the refund as requested (`status` `pending`) and the payment as it stands
/// when read; `refund.succeeded`, `refund.failed`: `{payment, refund}` as the webhook carried them.
#[derive(Debug, Serialize, ToSchema)]
pub struct EventsAnswer {
    pub events: Vec<FeedItem>,
    pub next_cursor: String,
}

/// One webhook notification.
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationAnswer {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: String,
    /// `pending`, `delivered` or `failed`.
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at: Option<String>,
    /// Why the last attempt was not acknowledged.
    pub last_error: Option<String>,
    pub created_at: String,
    #[schema(value_type = Object)]
    pub data: Value,
}

/// `GET /v1/notifications`
#[derive(Debug, Serialize, ToSchema)]
pub struct NotificationsAnswer {
    pub notifications: Vec<NotificationAnswer>,
}

/// `POST /v1/notifications/{notification_id}/redeliver`
#[derive(Debug, Serialize, ToSchema)]
pub struct RedeliverAnswer {
    pub id: String,
    pub status: String,
}

// ---------------------------------------------------------------------------------------
// Reconciliation, projections (admin)

/// `POST /v1/reconciliations`
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReconcileRequest {
    #[schema(pattern = "^[A-Za-z0-9_-]{1,64}$")]
    pub channel_account_id: String,
    /// The channel's business day, `YYYY-MM-DD`.
    #[schema(format = Date, example = "2026-11-22")]
    pub date: String,
}

/// One difference between the bill and paycenter's record.
#[derive(Debug, Serialize, ToSchema)]
pub struct DiscrepancyAnswer {
    /// `missing_in_paycenter`, `missing_in_channel`, `amount_mismatch`, `status_mismatch`,
    /// `refund_missing_in_paycenter`, `refund_missing_in_channel` or `refund_amount_mismatch`.
    pub kind: String,
    pub trade_no: String,
    pub order_no: Option<String>,
    pub channel_trade_no: Option<String>,
    pub paycenter_amount: Option<String>,
    pub channel_amount: Option<String>,
    pub paycenter_status: Option<String>,
}

/// A reconciliation's result.
#[derive(Debug, Serialize, ToSchema)]
pub struct ReconciliationAnswer {
    pub reconciliation_id: String,
    pub merchant_id: String,
    pub channel_account_id: String,
    pub date: String,
    /// `fetched`, `uploaded` or `scheduled`.
    pub source: String,
    pub bill_lines: u64,
    pub matched: u64,
    pub created_at: String,
    pub discrepancies: Vec<DiscrepancyAnswer>,
    /// The payouts that settled that day, each asked of the channel; `null` when none did.
    pub payouts: Option<PayoutsReconciledAnswer>,
}

/// The payouts part of a reconciliation.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutsReconciledAnswer {
    pub checked: u64,
    pub matched: u64,
    pub discrepancies: Vec<PayoutDiscrepancyAnswer>,
}

/// A payout on which paycenter and its channel disagree.
#[derive(Debug, Serialize, ToSchema)]
pub struct PayoutDiscrepancyAnswer {
    /// `payout_missing_in_channel`, `payout_amount_mismatch` or `payout_status_mismatch`.
    pub kind: String,
    pub payout_id: String,
    pub payout_no: String,
    pub paycenter_amount: String,
    pub paycenter_status: String,
    pub channel_amount: Option<String>,
    pub channel_status: Option<String>,
}

/// The read model's checkpoint in its file (committed with every batch it applies).
#[derive(Debug, Serialize, ToSchema)]
pub struct SnapshotAnswer {
    pub position: u64,
    pub saved_at: Option<String>,
}

/// The last online rebuild.
#[derive(Debug, Serialize, ToSchema)]
pub struct RebuildAnswer {
    pub finished_at: String,
    pub position: u64,
    pub identical: bool,
    pub seconds: f64,
}

/// A projection's status.
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionAnswer {
    pub name: String,
    pub version: u32,
    pub position: u64,
    pub head: u64,
    pub lag: u64,
    pub digest: String,
    pub rebuilding: bool,
    /// The checkpoint this process resumed the read model's file from (none: folded from 1).
    pub started_from_snapshot: Option<u64>,
    pub snapshot: Option<SnapshotAnswer>,
    /// Bytes the read model's file and its write-ahead log take on disk.
    pub file_bytes: Option<u64>,
    pub last_rebuild: Option<RebuildAnswer>,
}

/// `GET /v1/admin/projections`
#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectionsAnswer {
    pub projections: Vec<ProjectionAnswer>,
}

// ---------------------------------------------------------------------------------------
// Sandbox, health

/// `POST /sandbox/pay/{trade_no}` (JSON; the checkout page posts a form with `outcome`).
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxPayRequest {
    /// `success` or `failure`.
    #[schema(pattern = "^(success|failure)$", example = "success")]
    pub outcome: String,
    /// Pay a trade paycenter already closed (a payment racing the close).
    #[serde(default)]
    #[schema(value_type = Option<bool>)]
    pub race_close: Option<Value>,
    /// Report another amount than the attempt's (plays a contradicting callback).
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^[0-9]{1,15}([.][0-9]{1,3})?$")]
    pub amount: Option<Value>,
    /// Report another currency than the attempt's.
    #[serde(default)]
    #[schema(value_type = Option<String>, pattern = "^(CNY|USD|EUR|GBP|HKD|SGD|AUD|CAD|CHF|JPY|KRW|BHD|KWD)$")]
    pub currency: Option<Value>,
}

/// The sandbox took the user's action; its callback follows.
#[derive(Debug, Serialize, ToSchema)]
pub struct SandboxPayAnswer {
    pub trade_no: String,
    pub outcome: String,
    pub message: String,
}

/// `GET /checkout/{trade_no}/status`: what the cashier page polls.
#[derive(Debug, Serialize, ToSchema)]
pub struct CheckoutStatusAnswer {
    pub trade_no: String,
    /// `pending`, `succeeded`, `failed` or `closed`.
    #[schema(pattern = "^(pending|succeeded|failed|closed)$")]
    pub status: String,
    /// Pending past its expiry: it can no longer be paid.
    pub expired: bool,
}

/// `GET /healthz`: `ok` only when the store appends and every projection runs.
#[derive(Debug, Serialize, ToSchema)]
pub struct HealthAnswer {
    /// `ok` or `degraded`.
    pub status: String,
    /// Each component (`store`, each projection) with its status and position.
    #[schema(value_type = Object)]
    pub components: Value,
    pub read_model_position: u64,
}

/// A channel account as operators see it: never its parameters (they hold its keys).
pub fn channel_account_answer(
    model: &paycenter_projections::ReadModel,
    account: &paycenter_domain::events::ChannelAccountActivated,
) -> ChannelAccountAnswer {
    let status = if model.is_channel_account_disabled(&account.channel_account_id) {
        "disabled"
    } else {
        "active"
    };
    ChannelAccountAnswer {
        channel_account_id: account.channel_account_id.to_string(),
        merchant_id: account.merchant_id.to_string(),
        channel: account.channel.as_str().to_owned(),
        status: status.to_owned(),
        mode: account.mode.as_str().to_owned(),
        provider_account_id: account
            .provider_account_id
            .as_ref()
            .map(ToString::to_string),
        fee_rate: account.fee_rate.to_text(),
        callback_ip_allowlist: account.callback_ip_allowlist.clone(),
        bill_utc_offset: account.bill_utc_offset_minutes.map(format_utc_offset),
        created_at: model
            .channel_account_created_at(&account.channel_account_id)
            .unwrap_or(account.activated_at)
            .to_rfc3339(),
        updated_at: account.activated_at.to_rfc3339(),
        breaker: model
            .breaker(&account.channel_account_id)
            .0
            .as_str()
            .to_owned(),
    }
}

/// An offset from UTC in minutes as `+08:00`.
fn format_utc_offset(minutes: i32) -> String {
    let sign = if minutes < 0 { '-' } else { '+' };
    format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60)
}

/// A merchant.
pub fn merchant_answer(onboarded: &paycenter_domain::events::MerchantOnboarded) -> MerchantAnswer {
    MerchantAnswer {
        merchant_id: onboarded.merchant_id.to_string(),
        name: onboarded.name.clone(),
        created_at: onboarded.onboarded_at.to_rfc3339(),
    }
}

/// A refund as apps see it.
pub fn refund_answer(refund: &RefundView) -> RefundAnswer {
    RefundAnswer {
        refund_id: refund.refund_id.to_string(),
        refund_no: refund.refund_no.to_string(),
        trade_no: refund.trade_no.to_string(),
        amount: refund.amount.to_major_string(),
        currency: refund.amount.currency().code().to_owned(),
        reason: refund.reason.clone(),
        kind: match refund.kind {
            paycenter_domain::payment::RefundKind::App => "app",
            paycenter_domain::payment::RefundKind::Automatic => "automatic",
        }
        .to_owned(),
        status: refund.status.as_str().to_owned(),
        created_at: refund.requested_at.to_rfc3339(),
    }
}

/// A refund as apps see it, as JSON.
pub fn refund_json(refund: &RefundView) -> Value {
    to_value(&refund_answer(refund))
}

/// The payment object (design §3).
pub fn payment_answer(payment: &PaymentView) -> PaymentAnswer {
    PaymentAnswer {
        trade_no: payment.trade_no.to_string(),
        order_no: payment.order_no.to_string(),
        channel_trade_no: payment.channel_trade_no.as_ref().map(ToString::to_string),
        merchant_id: payment.merchant_id.to_string(),
        channel_account_id: payment.channel_account_id.to_string(),
        channel: payment.channel.as_str().to_owned(),
        invoke_method: payment.invoke_method.as_str().to_owned(),
        amount: payment.amount.to_major_string(),
        currency: payment.amount.currency().code().to_owned(),
        fee: payment.fee.to_major_string(),
        subject: payment.subject.clone(),
        status: payment.status.as_str().to_owned(),
        refunded_amount: payment.refunded().to_major_string(),
        created_at: payment.created_at.to_rfc3339(),
        expires_at: payment.expires_at.to_rfc3339(),
        paid_at: payment.paid_at.map(|at| at.to_rfc3339()),
        refunds: payment.refunds.iter().map(refund_answer).collect(),
        splits: payment
            .splits
            .iter()
            .map(|split| SplitAnswer {
                receiver: split.receiver.clone(),
                amount: split.amount.to_major_string(),
            })
            .collect(),
        channel_close: payment
            .channel_close
            .as_ref()
            .map(|close| ChannelCloseAnswer {
                status: close.status.clone(),
                attempts: close.attempts,
                last_error: close.last_error.clone(),
            }),
        anomalies: payment
            .anomalies
            .iter()
            .map(|anomaly| AnomalyAnswer {
                kind: anomaly.kind.as_str().to_owned(),
                reported_amount: anomaly.reported_amount.to_major_string(),
                reported_currency: anomaly.reported_amount.currency().code().to_owned(),
                reported_channel_account_id: anomaly.channel_account_id.to_string(),
                reported_channel_trade_no: anomaly.channel_trade_no.to_string(),
                detected_at: anomaly.detected_at.to_rfc3339(),
                refund_id: anomaly.refund_id.to_string(),
                refund_status: anomaly.refund_status.as_str().to_owned(),
            })
            .collect(),
        route: payment.route.as_ref().map(route_answer),
        share: payment.share_mode.as_str().to_owned(),
        shares: payment
            .share
            .iter()
            .flat_map(|share| &share.lines)
            .map(|line| ShareAnswer {
                receiver: line.receiver.clone(),
                amount: line.amount.to_major_string(),
                returned: line.returned.to_major_string(),
                status: line.status.as_str().to_owned(),
            })
            .collect(),
        share_error: payment
            .share
            .as_ref()
            .and_then(|share| share.last_error.clone()),
        attempts: None,
    }
}

/// The payment object as JSON.
pub fn payment_json(payment: &PaymentView) -> Value {
    to_value(&payment_answer(payment))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn object(value: Value) -> serde_json::Map<String, Value> {
        match value {
            Value::Object(object) => object,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_missing_or_mistyped_field_is_named() {
        let missing = read::<CreateMerchantRequest>(&object(json!({}))).unwrap_err();
        assert_eq!(missing.code, crate::error::ErrorCode::InvalidRequest);
        assert_eq!(missing.body()["error"]["field"], "name");
        assert_eq!(missing.message, "name is required");
        let mistyped =
            read::<CreatePaymentRequest>(&object(json!({"merchant_id": 5}))).unwrap_err();
        assert_eq!(mistyped.body()["error"]["field"], "merchant_id");
        assert!(
            mistyped.message.contains("expected a string"),
            "{}",
            mistyped.message
        );
        let fine: CreateMerchantRequest = read(&object(json!({"name": "Acme"}))).unwrap();
        assert_eq!(fine.name, "Acme");
    }

    #[test]
    fn every_action_kind_has_its_fields() {
        let qr = PaymentActionAnswer::from_action(&paycenter_gateway::PaymentAction::QrCode {
            qr_code: "weixin://x".into(),
        });
        assert_eq!(
            to_value(&qr),
            json!({"type": "qr_code", "qr_code": "weixin://x"})
        );
        let form = PaymentActionAnswer::from_action(&paycenter_gateway::PaymentAction::FormPost {
            url: "https://pay.example/gateway".into(),
            fields: vec![("a".into(), "1".into())],
        });
        assert_eq!(
            to_value(&form),
            json!({"type": "form_post", "url": "https://pay.example/gateway", "fields": [["a", "1"]]})
        );
    }
}
