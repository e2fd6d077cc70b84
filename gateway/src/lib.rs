//! paycenter's channel adapters: one module per payment channel behind one small trait.
//!
//! An adapter turns a payment command into the channel's own request, and the channel's own
//! callback back into a verified [`CallbackNotice`]. Adapters decide nothing about payments:
//! the domain does; they only speak the channel's protocol.
//!
//! # Layout
//! - [`PaymentChannel`], [`CreatePayment`], [`PaymentAction`], [`CallbackNotice`], [`GatewayError`].
//! - [`secret`]: `Secret`, a string whose `Debug` prints nothing.
//! - [`signing`]: HMAC-SHA256 signatures with a timestamp (`t=...,v1=...`), shared by the
//!   sandbox channel and paycenter's own webhooks.
//! - [`egress`]: where paycenter may send requests (no link-local, multicast or unspecified
//!   addresses; loopback and private ranges only when the operator allows them).
//! - [`http`]: the outbound HTTP client with a timeout on every call.
//! - [`rsa_sha256`]: RSA keys in the forms channel consoles hand out; SHA256withRSA.
//! - [`sandbox`]: paycenter's built-in simulated third party.
//! - [`alipay`], [`wechatpay`], [`stripe`]: the real channels, each with its wire types beside it.
//! - [`bills`]: parsers of the channels' daily bill files.
//! - [`registry`]: `ChannelRegistry`, the adapter of each channel.
#![warn(missing_docs)]

mod account_cache;
pub mod alipay;
pub mod bills;
pub mod egress;
pub mod http;
pub mod registry;
pub mod rsa_sha256;
pub mod sandbox;
pub mod secret;
pub mod signing;
pub mod stripe;
pub mod wechatpay;

use std::future::Future;
use std::pin::Pin;

use paycenter_domain::ids::{ChannelAccountId, ChannelTradeNo, RefundId, TradeNo};
use paycenter_domain::payment::{Channel, InvokeMethod};
use paycenter_domain::Money;
use serde::Serialize;

pub use secret::Secret;

/// A boxed future, so the trait stays object safe.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// Why a channel call failed.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// The channel does not offer this invoke method.
    #[error("{channel} does not support invoke method {invoke_method}; supported: {supported}")]
    UnsupportedInvokeMethod {
        /// The channel.
        channel: &'static str,
        /// What was asked.
        invoke_method: &'static str,
        /// What it supports, comma separated.
        supported: String,
    },
    /// The channel account's parameters are unusable.
    #[error("invalid channel parameters: {reason}")]
    InvalidParams {
        /// What is wrong.
        reason: String,
    },
    /// The channel answered that it will not take this trade (a business refusal): no trade
    /// exists there, so another account may be tried.
    #[error("channel refused: {reason}")]
    Refused {
        /// What the channel said.
        reason: String,
    },
    /// The channel could not be reached or answered an error.
    #[error("channel unavailable: {reason}")]
    Unavailable {
        /// What happened.
        reason: String,
    },
    /// The payment lacks something this channel and invoke method need.
    #[error("{channel} {invoke_method} payments need {field}")]
    MissingPaymentField {
        /// The channel.
        channel: &'static str,
        /// The invoke method.
        invoke_method: &'static str,
        /// The request field to add.
        field: &'static str,
    },
    /// A callback failed verification (signature, format, freshness).
    #[error("callback rejected: {reason}")]
    CallbackRejected {
        /// Why.
        reason: String,
    },
}

/// What paycenter asks a channel to start.
#[derive(Debug, Clone)]
pub struct CreatePayment {
    /// The channel account.
    pub channel_account_id: ChannelAccountId,
    /// paycenter's serial, sent as the channel's merchant order number.
    pub trade_no: TradeNo,
    /// How much.
    pub amount: Money,
    /// What for (shown to the user).
    pub subject: String,
    /// How the user pays.
    pub invoke_method: InvokeMethod,
    /// Unix seconds after which the channel must refuse payment.
    pub expires_at_unix: i64,
    /// Where the channel posts its callbacks for this channel account.
    pub notify_url: String,
    /// paycenter's checkout page for this payment (channels without a page of their own).
    pub checkout_url: String,
    /// The payer's id at the channel (WeChat Pay `openid`, Alipay `buyer_id`), when the app
    /// gave one; JSAPI and mini-program payments need it.
    pub payer_id: Option<String>,
    /// The payer's IP address as the app saw it (WeChat Pay H5 needs it).
    pub client_ip: Option<String>,
    /// Whether the money is to be shared with receivers at the channel later: the channel
    /// holds it back until then (WeChat Pay `settle_info.profit_sharing`).
    pub profit_sharing: bool,
}

/// A split receiver as its channel knows it.
#[derive(Debug, Clone)]
pub struct Receiver {
    /// The channel's word for the account's type ([`PaymentChannel::receiver_kinds`]).
    pub kind: String,
    /// The account at the channel (a merchant id, an openid, a login name, a user id).
    pub account: String,
    /// The receiver's real name, where the channel checks it.
    pub name: Option<Secret>,
}

/// One receiver's share as the channel is asked to pay it.
#[derive(Debug, Clone)]
pub struct ShareLine {
    /// The receiver as its channel knows it.
    pub receiver: Receiver,
    /// How much.
    pub amount: Money,
    /// What the receiver is told (the receiver id).
    pub description: String,
}

/// What a channel says of a share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareResult {
    /// Paid to every receiver.
    Shared {
        /// The channel's id of the share.
        channel_share_no: Option<String>,
    },
    /// Taken, not settled yet: ask again later (the same share id is the same share).
    Pending,
    /// Refused for good; the money stays with the merchant.
    Failed {
        /// The channel's words.
        reason: String,
    },
}

/// A payout as a channel is asked to make it.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// paycenter's id of it: the channel's order number (the same id is the same transfer).
    pub payout_id: String,
    /// How much.
    pub amount: Money,
    /// The receiver's type in paycenter's words (`alipay_login`, `alipay_user_id`,
    /// `wechat_openid`, `sandbox`).
    pub receiver_kind: &'static str,
    /// The receiver's account at the channel.
    pub receiver_account: String,
    /// The receiver's real name, where the channel checks it.
    pub receiver_name: Option<Secret>,
    /// What the receiver is told.
    pub remark: String,
    /// Where the channel reports the outcome (WeChat Pay), if it reports by callback.
    pub notify_url: Option<String>,
}

/// What a channel needs the receiving user to confirm before it pays (WeChat Pay's merchant
/// transfer): the app hands `package_info` to `wx.requestMerchantTransfer` with the ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferConfirmation {
    /// The channel's id of the transfer.
    pub channel_payout_no: Option<String>,
    /// The confirmation page's package, as the channel answered it.
    pub package_info: String,
    /// The paying merchant's id at the channel (`mchId`).
    pub channel_merchant_id: String,
    /// The app id the receiver's openid belongs to (`appId`).
    pub channel_app_id: String,
}

/// A transfer as the channel has it when asked (the daily reconciliation's question).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransferAtChannel {
    /// Where it stands.
    pub status: TransferStatus,
    /// How much the channel says it moves.
    pub amount: Money,
}

/// What a channel says of a payout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TransferStatus {
    /// Paid.
    Succeeded {
        /// The channel's id of the transfer.
        channel_payout_no: Option<String>,
    },
    /// Taken, not settled: ask again later.
    Pending,
    /// Taken, waiting for the receiving user to confirm it.
    AwaitingConfirmation(TransferConfirmation),
    /// Refused or failed for good.
    Failed {
        /// The channel's words.
        reason: String,
    },
}

/// What a channel answered when a payment was started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Initiated {
    /// What the user must be shown.
    pub action: PaymentAction,
    /// The channel's own handle on the payment when it gives one before payment (Stripe's
    /// PaymentIntent id); later queries, closes and refunds need it.
    pub channel_reference: Option<String>,
    /// What paycenter's checkout page shows as a QR code, for channels whose `pc` payments are
    /// paid by scanning (WeChat Pay's `code_url`).
    pub checkout_qr_code: Option<String>,
}

/// A payment as later channel calls name it.
#[derive(Debug, Clone)]
pub struct ChannelOrder {
    /// paycenter's serial (the channel's merchant order number).
    pub trade_no: TradeNo,
    /// The channel's handle from [`Initiated::channel_reference`], when it gave one.
    pub channel_reference: Option<String>,
    /// The channel's id once paid.
    pub channel_trade_no: Option<ChannelTradeNo>,
    /// The payment's amount (WeChat Pay's refund call repeats it).
    pub amount: Money,
    /// Where the channel posts its callbacks for this channel account.
    pub notify_url: String,
    /// For a refund of a shared payment: what each receiver gives back of it, for channels
    /// that take shares back within the refund itself (Alipay's `refund_royalty_parameters`).
    pub share_returns: Vec<ShareLine>,
}

/// What a channel says of a refund, when submitted or asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RefundStatus {
    /// Accepted, not settled: the outcome comes by callback or a later query.
    Pending,
    /// Refunded.
    Succeeded {
        /// The channel's refund id.
        channel_refund_no: String,
    },
    /// Refused or failed.
    Failed {
        /// The channel's words.
        reason: String,
    },
}

/// What the app must show the user to pay: the `action` of the create answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PaymentAction {
    /// Send the user's browser here.
    RedirectUrl {
        /// The URL.
        url: String,
    },
    /// Post this form from the user's browser.
    FormPost {
        /// Where to post.
        url: String,
        /// The fields.
        fields: Vec<(String, String)>,
    },
    /// Show this QR code content.
    QrCode {
        /// The content to encode.
        qr_code: String,
    },
    /// Hand these parameters to the channel's app SDK.
    AppParams {
        /// The parameters (signed order string and the like).
        params: serde_json::Value,
    },
    /// Hand these parameters to the JSAPI / mini-program front end.
    JsapiParams {
        /// The parameters.
        params: serde_json::Value,
    },
    /// Send the user to paycenter's own checkout page.
    CheckoutUrl {
        /// The URL.
        url: String,
    },
}

/// A verified outcome reported by a channel callback.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallbackNotice {
    /// The payment was paid.
    PaymentSucceeded {
        /// paycenter's serial.
        trade_no: TradeNo,
        /// The channel's id.
        channel_trade_no: ChannelTradeNo,
        /// What was paid.
        amount: Money,
    },
    /// The payment failed.
    PaymentFailed {
        /// paycenter's serial.
        trade_no: TradeNo,
        /// The channel's words.
        reason: String,
    },
    /// A refund completed.
    RefundSucceeded {
        /// paycenter's serial of the payment.
        trade_no: TradeNo,
        /// paycenter's refund id.
        refund_id: RefundId,
        /// The channel's refund id.
        channel_refund_no: String,
    },
    /// A refund failed.
    RefundFailed {
        /// paycenter's serial of the payment.
        trade_no: TradeNo,
        /// paycenter's refund id.
        refund_id: RefundId,
        /// The channel's words.
        reason: String,
    },
    /// A payout (transfer) reached a state the channel reports.
    PayoutReported {
        /// paycenter's payout id.
        payout_id: String,
        /// Where it stands.
        status: TransferStatus,
    },
    /// A notice type paycenter does not handle: acknowledged, recorded nowhere.
    Unknown {
        /// The channel's type name.
        kind: String,
    },
}

/// What a channel says of a payment when asked (the lost-callback sweeper's question).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelPaymentStatus {
    /// Not paid yet.
    Pending,
    /// Paid.
    Paid {
        /// The channel's id.
        channel_trade_no: ChannelTradeNo,
        /// What was paid.
        amount: Money,
    },
    /// Failed or declined.
    Failed {
        /// The channel's words.
        reason: String,
    },
    /// Closed unpaid.
    Closed,
    /// The channel does not know it.
    NotFound,
}

/// One line of a channel's daily bill.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillRow {
    /// paycenter's serial, as the channel knows it.
    pub trade_no: TradeNo,
    /// The channel's id.
    pub channel_trade_no: ChannelTradeNo,
    /// What was paid.
    pub amount: Money,
    /// Refunded so far.
    pub refunded: Money,
}

/// An HTTP request as a callback arrives: enough for any channel to verify it.
#[derive(Debug, Clone)]
pub struct CallbackRequest {
    /// Header names lowercased, values as received.
    pub headers: Vec<(String, String)>,
    /// The raw body.
    pub body: Vec<u8>,
}

impl CallbackRequest {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The answer a channel expects to a callback, in its own protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallbackAnswer {
    /// HTTP status.
    pub status: u16,
    /// Content type.
    pub content_type: &'static str,
    /// Body.
    pub body: String,
}

/// A payment channel as paycenter uses it. One implementation per channel; each channel
/// account's decrypted parameters are passed in on every call.
pub trait PaymentChannel: Send + Sync {
    /// Which channel.
    fn channel(&self) -> Channel;

    /// The invoke methods it supports.
    fn supported_invoke_methods(&self) -> &'static [InvokeMethod];

    /// The payment request fields (`payer_id`, `client_ip`) an invoke method needs here.
    fn required_payment_fields(&self, _invoke_method: InvokeMethod) -> &'static [&'static str] {
        &[]
    }

    /// The currencies it takes; `None` when it takes any.
    fn supported_currencies(&self) -> Option<&'static [paycenter_domain::Currency]> {
        None
    }

    /// The names a channel account's `params` may carry.
    fn param_names(&self) -> &'static [&'static str];

    /// The names a sub-merchant account's `params` may carry: the ids the channel assigned it
    /// under a provider (WeChat Pay `sub_mchid`, `sub_appid`; Alipay `app_auth_token`). Empty
    /// where paycenter has no provider mode for this channel.
    fn sub_merchant_param_names(&self) -> &'static [&'static str] {
        &[]
    }

    /// Checks a sub-merchant's parameters at activation; answers them normalized. Calls for the
    /// sub-merchant then get its provider's parameters with these added ([`acting_for`]).
    fn validate_sub_merchant_params(
        &self,
        _params: &serde_json::Value,
    ) -> Result<serde_json::Value, GatewayError> {
        Err(GatewayError::InvalidParams {
            reason: format!("{} has no provider mode in paycenter", self.channel()),
        })
    }

    /// Asks the channel about a sub-merchant at activation, with `params` as its calls will
    /// be made ([`acting_for`]): Alipay checks the `app_auth_token` and tells which app it
    /// authorized. Answers ids learned there, kept beside the sub-merchant's own (and used to
    /// check that its callbacks are its own); `InvalidParams` when the channel refuses it.
    fn verify_sub_merchant<'a>(
        &'a self,
        _params: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, serde_json::Value>, GatewayError>> {
        Box::pin(async { Ok(serde_json::Map::new()) })
    }

    /// The receiver types this channel binds, in its own words (WeChat Pay `MERCHANT_ID`,
    /// `PERSONAL_OPENID`; Alipay `loginName`, `userId`); empty where paycenter shares no money
    /// at this channel.
    fn receiver_kinds(&self) -> &'static [&'static str] {
        &[]
    }

    /// The payout receiver types this channel pays to, in paycenter's words; empty where
    /// paycenter pays out nothing at this channel.
    fn payout_receiver_kinds(&self) -> &'static [&'static str] {
        &[]
    }

    /// Pays a payout out of the account (Alipay `alipay.fund.trans.uni.transfer`, the
    /// sandbox). Asked again with the same `payout_id`, it answers where that one stands.
    fn transfer<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        _transfer: &'a Transfer,
    ) -> BoxFuture<'a, Result<TransferStatus, GatewayError>> {
        Box::pin(async { Err(unavailable("this channel pays nothing out")) })
    }

    /// Asks where the transfer `transfer.payout_id` stands, without making it: `None` when the
    /// channel has no such transfer.
    fn query_transfer<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        _transfer: &'a Transfer,
    ) -> BoxFuture<'a, Result<Option<TransferAtChannel>, GatewayError>> {
        Box::pin(async { Err(unavailable("this channel pays nothing out")) })
    }

    /// Whether paycenter shares payments' money with receivers at this channel.
    fn shares_at_channel(&self) -> bool {
        false
    }

    /// Pays a paid payment's shares to their receivers (WeChat Pay's profit-sharing order, with
    /// the rest unfrozen for the merchant). Submitting the same `share_id` again is the same
    /// share: it answers where that one stands. `Refused` when the channel will not.
    fn share_payment<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        _order: &'a ChannelOrder,
        _share_id: &'a str,
        _lines: &'a [ShareLine],
    ) -> BoxFuture<'a, Result<ShareResult, GatewayError>> {
        Box::pin(async { Err(unavailable("this channel shares no payments")) })
    }

    /// Whether this channel takes receivers' shares back within the refund itself (Alipay's
    /// `refund_royalty_parameters`, from [`ChannelOrder::share_returns`]) rather than by
    /// [`PaymentChannel::return_share`] before it.
    fn returns_shares_within_refund(&self) -> bool {
        false
    }

    /// Takes one receiver's share of a refund back from it (WeChat Pay's return order), before
    /// the refund; `return_id` names this return at the channel (the same id is the same
    /// return). `Refused` when the channel will not.
    fn return_share<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        _order: &'a ChannelOrder,
        _share_id: &'a str,
        _return_id: &'a str,
        _line: &'a ShareLine,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async { Err(unavailable("this channel shares no payments")) })
    }

    /// Binds a split receiver at the channel, for the account `params` describe (WeChat Pay's
    /// `receivers/add`, Alipay's `royalty.relation.bind`). Binding again what is bound is not an
    /// error at either channel. `Refused` when the channel will not bind it.
    fn bind_receiver<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        _receiver: &'a Receiver,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async { Err(unavailable("this channel binds no split receivers")) })
    }

    /// Unbinds a split receiver at the channel.
    fn unbind_receiver<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        _receiver: &'a Receiver,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async { Err(unavailable("this channel binds no split receivers")) })
    }

    /// When the account's credentials stop working (Unix seconds), when the channel's keys
    /// expire and the adapter knows it: WeChat Pay's newest valid platform certificate, once
    /// downloaded. `None`: no expiry, or not known yet.
    fn credentials_expire_at(&self, _params: &serde_json::Value) -> Option<i64> {
        None
    }

    /// Checks a channel account's parameters at activation; answers them normalized.
    fn validate_params(
        &self,
        params: &serde_json::Value,
    ) -> Result<serde_json::Value, GatewayError>;

    /// Checks a channel account against the channel itself at activation, where the channel
    /// offers a way to without moving money (WeChat Pay in certificate mode: its platform
    /// certificates must download and open under the APIv3 key). `InvalidParams` when the
    /// channel refuses the account, `Unavailable` when it cannot be reached.
    fn verify_account<'a>(
        &'a self,
        _params: &'a serde_json::Value,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async { Ok(()) })
    }

    /// Where to send a person, inside the channel's own app, so that the channel tells
    /// paycenter who they are (WeChat's OAuth, `snsapi_base`): `None` where the channel or the
    /// account has no such thing. `redirect_uri` is where the channel sends them back with a
    /// `code`.
    fn payer_authorization_url(
        &self,
        _params: &serde_json::Value,
        _redirect_uri: &str,
        _state: &str,
    ) -> Option<String> {
        None
    }

    /// The payer's id at the channel (WeChat's `openid`) for the `code` its authorization sent
    /// back.
    fn payer_id_from_code<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        _code: &'a str,
    ) -> BoxFuture<'a, Result<String, GatewayError>> {
        Box::pin(async { Err(unavailable("this channel does not identify payers")) })
    }

    /// Starts a payment at the channel and answers what the user must be shown.
    fn create_payment<'a>(
        &'a self,
        params: &'a serde_json::Value,
        request: &'a CreatePayment,
    ) -> BoxFuture<'a, Result<Initiated, GatewayError>>;

    /// Closes a pending payment at the channel.
    fn close_payment<'a>(
        &'a self,
        params: &'a serde_json::Value,
        order: &'a ChannelOrder,
    ) -> BoxFuture<'a, Result<(), GatewayError>>;

    /// Asks the channel to refund. A repeated `refund_id` is the same refund at every channel.
    /// Channels that settle at once answer the outcome; the others answer `Pending` and tell it
    /// by callback or a later [`PaymentChannel::query_refund`].
    fn refund<'a>(
        &'a self,
        params: &'a serde_json::Value,
        order: &'a ChannelOrder,
        refund_id: &'a RefundId,
        amount: Money,
    ) -> BoxFuture<'a, Result<RefundStatus, GatewayError>>;

    /// Asks the channel where a refund stands.
    fn query_refund<'a>(
        &'a self,
        params: &'a serde_json::Value,
        order: &'a ChannelOrder,
        refund_id: &'a RefundId,
    ) -> BoxFuture<'a, Result<RefundStatus, GatewayError>>;

    /// Asks the channel where a payment stands.
    fn query_payment<'a>(
        &'a self,
        params: &'a serde_json::Value,
        order: &'a ChannelOrder,
    ) -> BoxFuture<'a, Result<ChannelPaymentStatus, GatewayError>>;

    /// The channel's bill of payments made on `day` (in the channel's time zone; UTC for the sandbox).
    fn daily_bill<'a>(
        &'a self,
        params: &'a serde_json::Value,
        channel_account_id: &'a ChannelAccountId,
        day: chrono::NaiveDate,
    ) -> BoxFuture<'a, Result<Vec<BillRow>, GatewayError>>;

    /// Fetches what verifying this callback needs from the channel and is not at hand (WeChat
    /// Pay: the platform certificate its `Wechatpay-Serial` names). Failures are left for
    /// [`PaymentChannel::verify_callback`] to report.
    fn prepare_callback<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        _request: &'a CallbackRequest,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    /// Verifies a callback and reads what it reports. A bad signature is an error. Reads only
    /// what is at hand: [`PaymentChannel::prepare_callback`] runs first.
    fn verify_callback(
        &self,
        params: &serde_json::Value,
        request: &CallbackRequest,
    ) -> Result<CallbackNotice, GatewayError>;

    /// The answer for a callback that was recorded (`accepted`) or refused.
    fn callback_answer(&self, accepted: bool) -> CallbackAnswer;
}

/// The parameters a call for a sub-merchant is made with: its provider's (keys, provider ids)
/// plus the sub-merchant's own ids. The adapter tells a sub-merchant by those ids, so rotating
/// the provider's keys reaches every sub-merchant at the next call.
pub fn acting_for(
    provider_params: &serde_json::Value,
    sub_merchant_params: &serde_json::Value,
) -> serde_json::Value {
    let mut merged = provider_params.clone();
    if let (Some(merged), Some(own)) = (merged.as_object_mut(), sub_merchant_params.as_object()) {
        for (name, value) in own {
            merged.insert(name.clone(), value.clone());
        }
    }
    merged
}

/// Sub-merchant parameters: only `allowed` names, each an id of 1 to 128 visible ASCII
/// characters, every name in `required` present. Answers them as given.
pub(crate) fn sub_merchant_ids(
    params: &serde_json::Value,
    allowed: &[&str],
    required: &[&str],
) -> Result<serde_json::Value, GatewayError> {
    refuse_unknown_params(params, allowed)?;
    for name in required {
        required_param(params, name)?;
    }
    for name in allowed {
        let Some(value) = params.get(*name).filter(|value| !value.is_null()) else {
            continue;
        };
        let valid = value.as_str().is_some_and(|text| {
            !text.is_empty() && text.len() <= 128 && text.bytes().all(|b| b.is_ascii_graphic())
        });
        if !valid {
            return Err(GatewayError::InvalidParams {
                reason: format!("{name} must be the id the channel assigned (1 to 128 visible ASCII characters)"),
            });
        }
    }
    Ok(params.clone())
}

/// A required string parameter of a channel account.
pub(crate) fn required_param<'a>(
    params: &'a serde_json::Value,
    name: &str,
) -> Result<&'a str, GatewayError> {
    params
        .get(name)
        .and_then(serde_json::Value::as_str)
        .filter(|value| !value.trim().is_empty())
        .ok_or_else(|| GatewayError::InvalidParams {
            reason: format!("{name} is required (a non-empty string)"),
        })
}

/// Refuses parameters other than `allowed`, so a misspelt name is caught at activation.
pub(crate) fn refuse_unknown_params(
    params: &serde_json::Value,
    allowed: &[&str],
) -> Result<(), GatewayError> {
    let Some(object) = params.as_object() else {
        return Err(GatewayError::InvalidParams {
            reason: "params must be an object".into(),
        });
    };
    if let Some(unknown) = object.keys().find(|key| !allowed.contains(&key.as_str())) {
        return Err(GatewayError::InvalidParams {
            reason: format!(
                "unknown parameter {unknown:?}; expected some of {}",
                allowed.join(", ")
            ),
        });
    }
    Ok(())
}

/// An optional `gateway_url` parameter: an absolute http(s) URL without a trailing slash.
pub(crate) fn gateway_url_param(
    params: &serde_json::Value,
    default_url: &str,
) -> Result<String, GatewayError> {
    url_param(params, "gateway_url", default_url)
}

/// An optional absolute http(s) URL parameter `name`, without its trailing `/`.
pub(crate) fn url_param(
    params: &serde_json::Value,
    name: &str,
    default_url: &str,
) -> Result<String, GatewayError> {
    let Some(value) = params.get(name).filter(|value| !value.is_null()) else {
        return Ok(default_url.to_owned());
    };
    let url = value.as_str().unwrap_or("");
    let valid = (url.starts_with("http://") || url.starts_with("https://"))
        && url.len() <= 512
        && !url.chars().any(char::is_whitespace);
    if !valid {
        return Err(GatewayError::InvalidParams {
            reason: format!("{name} must be an absolute http(s) URL"),
        });
    }
    Ok(url.trim_end_matches('/').to_owned())
}

/// A channel answer that could not be understood: the channel is treated as unavailable.
pub(crate) fn unavailable(reason: impl Into<String>) -> GatewayError {
    GatewayError::Unavailable {
        reason: reason.into(),
    }
}

/// Checks the invoke method against what a channel supports.
pub fn check_invoke_method(
    channel: &dyn PaymentChannel,
    invoke_method: InvokeMethod,
) -> Result<(), GatewayError> {
    if channel.supported_invoke_methods().contains(&invoke_method) {
        return Ok(());
    }
    Err(GatewayError::UnsupportedInvokeMethod {
        channel: channel.channel().as_str(),
        invoke_method: invoke_method.as_str(),
        supported: channel
            .supported_invoke_methods()
            .iter()
            .map(|method| method.as_str())
            .collect::<Vec<_>>()
            .join(", "),
    })
}
