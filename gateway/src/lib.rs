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
//! - [`http`]: the outbound HTTP client with a timeout on every call.
//! - [`sandbox`]: paycenter's built-in simulated third party.
#![warn(missing_docs)]

pub mod http;
pub mod sandbox;
pub mod secret;
pub mod signing;

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
    /// The channel could not be reached or answered an error.
    #[error("channel unavailable: {reason}")]
    Unavailable {
        /// What happened.
        reason: String,
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

    /// Checks a channel account's parameters at activation; answers them normalized.
    fn validate_params(
        &self,
        params: &serde_json::Value,
    ) -> Result<serde_json::Value, GatewayError>;

    /// Starts a payment at the channel and answers what the user must be shown.
    fn create_payment<'a>(
        &'a self,
        params: &'a serde_json::Value,
        request: &'a CreatePayment,
    ) -> BoxFuture<'a, Result<PaymentAction, GatewayError>>;

    /// Closes a pending payment at the channel.
    fn close_payment<'a>(
        &'a self,
        params: &'a serde_json::Value,
        trade_no: &'a TradeNo,
    ) -> BoxFuture<'a, Result<(), GatewayError>>;

    /// Asks the channel to refund; the outcome arrives by callback.
    fn refund<'a>(
        &'a self,
        params: &'a serde_json::Value,
        trade_no: &'a TradeNo,
        refund_id: &'a RefundId,
        amount: Money,
    ) -> BoxFuture<'a, Result<(), GatewayError>>;

    /// Asks the channel where a payment stands.
    fn query_payment<'a>(
        &'a self,
        params: &'a serde_json::Value,
        trade_no: &'a TradeNo,
    ) -> BoxFuture<'a, Result<ChannelPaymentStatus, GatewayError>>;

    /// The channel's bill of payments made on `day` (in the channel's time zone; UTC for the sandbox).
    fn daily_bill<'a>(
        &'a self,
        params: &'a serde_json::Value,
        channel_account_id: &'a ChannelAccountId,
        day: chrono::NaiveDate,
    ) -> BoxFuture<'a, Result<Vec<BillRow>, GatewayError>>;

    /// Verifies a callback and reads what it reports. A bad signature is an error.
    fn verify_callback(
        &self,
        params: &serde_json::Value,
        request: &CallbackRequest,
    ) -> Result<CallbackNotice, GatewayError>;

    /// The answer for a callback that was recorded (`accepted`) or refused.
    fn callback_answer(&self, accepted: bool) -> CallbackAnswer;
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
        channel: channel.channel().name(),
        invoke_method: invoke_method.name(),
        supported: channel
            .supported_invoke_methods()
            .iter()
            .map(|method| method.name())
            .collect::<Vec<_>>()
            .join(", "),
    })
}
