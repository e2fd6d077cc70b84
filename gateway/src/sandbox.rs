//! The sandbox channel: a simulated third party built into paycenter, for development and tests.
//!
//! It behaves like a real channel: it keeps its own record of trades (the [`SandboxProvider`]),
//! signs every callback under the channel account's own `signing_secret`
//! (`Sandbox-Signature: t=..,v1=..`, HMAC-SHA256 over `"<t>.<body>"`), and delivers callbacks
//! asynchronously over HTTP to `/callbacks/sandbox/{channel_account_id}`, retrying a few times.
//! Its payments answer `checkout_url` (paycenter's checkout page); `pay` plays the user.
//!
//! The provider's record lives in memory, as a third party's would live on its own servers:
//! after a restart of paycenter, trades started before it can no longer be paid in the sandbox.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{NaiveDate, Utc};
use paycenter_domain::ids::{ChannelAccountId, ChannelTradeNo, RefundId, TradeNo};
use paycenter_domain::payment::{Channel, InvokeMethod};
use paycenter_domain::{Currency, Money};
use serde::{Deserialize, Serialize};

use crate::http::HttpClient;
use crate::{
    BillRow, BoxFuture, CallbackAnswer, CallbackNotice, CallbackRequest, ChannelOrder,
    ChannelPaymentStatus, CreatePayment, GatewayError, Initiated, PaymentAction, PaymentChannel,
    RefundStatus,
};

/// The callback signature header.
pub const SIGNATURE_HEADER: &str = "sandbox-signature";
/// How far a callback's timestamp may be from now.
pub const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;
/// The most trades the provider remembers: beyond it the oldest are forgotten (a query about
/// one answers that the sandbox does not know it), so a long-running service's sandbox keeps
/// working in bounded memory (about 300 bytes a trade, see [`KeptTrade`]).
pub const MAX_TRADES: usize = 100_000;
/// The shortest signing secret accepted.
pub const MIN_SECRET_LEN: usize = 16;
/// Delays before each callback delivery attempt.
const CALLBACK_RETRY_DELAYS_MS: [u64; 4] = [0, 200, 1_000, 5_000];

/// Where a sandbox trade stands at the provider.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxTradeStatus {
    Pending,
    Paid,
    Failed,
    Closed,
}

/// A trade as the sandbox provider records it.
#[allow(missing_docs)]
#[derive(Debug, Clone)]
pub struct SandboxTrade {
    pub channel_account_id: ChannelAccountId,
    pub trade_no: TradeNo,
    pub channel_trade_no: ChannelTradeNo,
    pub amount: Money,
    pub subject: String,
    pub status: SandboxTradeStatus,
    pub expires_at_unix: i64,
    pub refunded_minor: i64,
    /// Refunds accepted, by paycenter's refund id: a repeated id is the same refund.
    pub refund_ids: Vec<RefundId>,
    pub paid_on: Option<NaiveDate>,
}

/// Where a trade's callbacks go and the secret that signs them: one per channel account, shared
/// by its trades.
#[derive(Debug, PartialEq, Eq)]
struct TradeRoute {
    channel_account_id: ChannelAccountId,
    callback_url: String,
    signing_secret: String,
}

/// A trade as the provider keeps it: what [`SandboxTrade`] shows without what can be derived
/// (its number is the key, the channel's number is made from it) or shared (the route). The
/// provider keeps up to [`MAX_TRADES`] of them, so each byte here is a hundred kilobytes of
/// the server's memory.
#[derive(Debug)]
struct KeptTrade {
    route: Arc<TradeRoute>,
    amount: Money,
    subject: Box<str>,
    status: SandboxTradeStatus,
    expires_at_unix: i64,
    refunded_minor: i64,
    refund_ids: Vec<RefundId>,
    paid_on: Option<NaiveDate>,
}

impl KeptTrade {
    fn view(&self, trade_no: &TradeNo) -> SandboxTrade {
        SandboxTrade {
            channel_account_id: self.route.channel_account_id.clone(),
            trade_no: trade_no.clone(),
            channel_trade_no: sandbox_trade_no(trade_no),
            amount: self.amount,
            subject: self.subject.to_string(),
            status: self.status,
            expires_at_unix: self.expires_at_unix,
            refunded_minor: self.refunded_minor,
            refund_ids: self.refund_ids.clone(),
            paid_on: self.paid_on,
        }
    }
}

/// The sandbox's number of a trade.
fn sandbox_trade_no(trade_no: &TradeNo) -> ChannelTradeNo {
    ChannelTradeNo::parse(&format!("SBX{trade_no}")).expect("trade numbers are short")
}

/// The provider's trades.
#[derive(Debug, Default)]
struct TradeBook {
    trades: HashMap<TradeNo, KeptTrade>,
    /// The trades' numbers, oldest first, for forgetting the oldest.
    arrivals: std::collections::VecDeque<TradeNo>,
    /// The route of the last trade created, shared with the next one when it is the same.
    last_route: Option<Arc<TradeRoute>>,
}

/// The user's choice at the sandbox checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SandboxOutcome {
    /// Pay.
    Success,
    /// Decline.
    Failure,
}

/// Why the provider refused something (the sandbox's own error answers).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SandboxError {
    /// No such trade at the sandbox.
    #[error("the sandbox has no trade {0}")]
    UnknownTrade(String),
    /// Not pending any more.
    #[error("trade {trade_no} is {status:?} at the sandbox")]
    NotPending {
        /// The trade.
        trade_no: String,
        /// Where it stands.
        status: SandboxTradeStatus,
    },
    /// Its time ran out.
    #[error("trade {0} has expired")]
    Expired(String),
}

/// The callback body the sandbox sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct CallbackBody {
    kind: String,
    trade_no: String,
    #[serde(default)]
    channel_trade_no: Option<String>,
    #[serde(default)]
    amount: Option<String>,
    #[serde(default)]
    currency: Option<String>,
    #[serde(default)]
    refund_id: Option<String>,
    #[serde(default)]
    channel_refund_no: Option<String>,
    #[serde(default)]
    reason: Option<String>,
}

impl CallbackBody {
    /// A notice of `kind` about the trade `trade_no`, with nothing else filled in.
    fn about(kind: &str, trade_no: &TradeNo) -> CallbackBody {
        CallbackBody {
            kind: kind.to_owned(),
            trade_no: trade_no.to_string(),
            channel_trade_no: Some(sandbox_trade_no(trade_no).to_string()),
            amount: None,
            currency: None,
            refund_id: None,
            channel_refund_no: None,
            reason: None,
        }
    }

    /// The same notice carrying an amount.
    fn with_amount(self, amount: Money) -> CallbackBody {
        CallbackBody {
            amount: Some(amount.to_major_string()),
            currency: Some(amount.currency().code().into()),
            ..self
        }
    }
}

/// The simulated third party: its trades and its callback sender.
pub struct SandboxProvider {
    book: Mutex<TradeBook>,
    http: HttpClient,
}

impl SandboxProvider {
    /// An empty provider.
    pub fn new() -> Arc<SandboxProvider> {
        Self::with_outbound(&crate::http::OutboundConfig::default())
    }

    /// An empty provider whose callbacks trust what `outbound` trusts. The sandbox only ever
    /// calls paycenter itself (its `--public-url`), so the egress rule does not apply to it:
    /// it works on loopback without `PAYCENTER_ALLOW_PRIVATE_EGRESS`.
    pub fn with_outbound(outbound: &crate::http::OutboundConfig) -> Arc<SandboxProvider> {
        let own = crate::http::OutboundConfig {
            egress: crate::egress::EgressPolicy {
                allow_private: true,
            },
            ..outbound.clone()
        };
        Arc::new(SandboxProvider {
            book: Mutex::new(TradeBook::default()),
            http: HttpClient::new(&own, 5_000).expect("the sandbox's client builds"),
        })
    }

    /// A trade, if the sandbox knows it.
    pub fn trade(&self, trade_no: &TradeNo) -> Option<SandboxTrade> {
        self.book
            .lock()
            .expect("sandbox lock")
            .trades
            .get(trade_no)
            .map(|trade| trade.view(trade_no))
    }

    /// The user pays (or declines) at the checkout; the callback follows asynchronously.
    ///
    /// `race_close` plays a user who paid while paycenter was closing the trade: a closed trade
    /// is paid anyway, as happens at real channels, so the late-payment path can be exercised.
    ///
    /// `reported`, when given, is the money the sandbox takes and reports instead of the
    /// trade's amount: a channel whose report contradicts the attempt.
    pub fn pay(
        self: &Arc<Self>,
        trade_no: &TradeNo,
        outcome: SandboxOutcome,
        race_close: bool,
        reported: Option<Money>,
    ) -> Result<(), SandboxError> {
        let now_unix = Utc::now().timestamp();
        let (route, body) = {
            let mut book = self.book.lock().expect("sandbox lock");
            let trade = book
                .trades
                .get_mut(trade_no)
                .ok_or_else(|| SandboxError::UnknownTrade(trade_no.to_string()))?;
            let payable = trade.status == SandboxTradeStatus::Pending
                || (race_close && trade.status == SandboxTradeStatus::Closed);
            if !payable {
                return Err(SandboxError::NotPending {
                    trade_no: trade_no.to_string(),
                    status: trade.status,
                });
            }
            if now_unix > trade.expires_at_unix {
                return Err(SandboxError::Expired(trade_no.to_string()));
            }
            let body = match outcome {
                SandboxOutcome::Success => {
                    trade.status = SandboxTradeStatus::Paid;
                    trade.paid_on = Some(Utc::now().date_naive());
                    if let Some(reported) = reported {
                        trade.amount = reported;
                    }
                    CallbackBody::about("payment.paid", trade_no).with_amount(trade.amount)
                }
                SandboxOutcome::Failure => {
                    trade.status = SandboxTradeStatus::Failed;
                    CallbackBody {
                        reason: Some("the user declined".into()),
                        ..CallbackBody::about("payment.failed", trade_no)
                    }
                }
            };
            (trade.route.clone(), body)
        };
        self.send_callback(&route, body);
        Ok(())
    }

    /// Delivers a signed callback in the background, retrying a few times like a real channel.
    fn send_callback(self: &Arc<Self>, route: &TradeRoute, body: CallbackBody) {
        let provider = self.clone();
        let url = route.callback_url.clone();
        let secret = route.signing_secret.clone();
        let body = serde_json::to_vec(&body).expect("callback bodies serialize");
        tokio::spawn(async move {
            for delay_ms in CALLBACK_RETRY_DELAYS_MS {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                let header = crate::signing::signature_header(
                    secret.as_bytes(),
                    Utc::now().timestamp(),
                    &body,
                );
                let headers = [
                    ("content-type", "application/json".to_owned()),
                    ("sandbox-signature", header),
                ];
                match provider.http.post(&url, &headers, body.clone()).await {
                    Ok(answer) if (200..300).contains(&answer.status) => return,
                    Ok(answer) => {
                        tracing::warn!(status = answer.status, "sandbox callback not acknowledged")
                    }
                    Err(error) => tracing::warn!(%error, "sandbox callback failed"),
                }
            }
        });
    }

    /// The day's bill: every trade paid that day, for reconciliation.
    pub fn bill(&self, channel_account_id: &ChannelAccountId, day: NaiveDate) -> Vec<SandboxTrade> {
        let book = self.book.lock().expect("sandbox lock");
        let mut rows: Vec<SandboxTrade> = book
            .trades
            .iter()
            .filter(|(_, trade)| {
                &trade.route.channel_account_id == channel_account_id && trade.paid_on == Some(day)
            })
            .map(|(trade_no, trade)| trade.view(trade_no))
            .collect();
        rows.sort_by(|a, b| a.trade_no.cmp(&b.trade_no));
        rows
    }
}

/// The sandbox adapter: what paycenter calls.
pub struct SandboxChannel {
    provider: Arc<SandboxProvider>,
    /// paycenter's public base URL: checkout pages and callbacks hang off it.
    public_url: String,
}

impl SandboxChannel {
    /// An adapter in front of `provider`.
    pub fn new(provider: Arc<SandboxProvider>, public_url: &str) -> SandboxChannel {
        SandboxChannel {
            provider,
            public_url: public_url.trim_end_matches('/').to_owned(),
        }
    }

    fn secret(params: &serde_json::Value) -> Result<String, GatewayError> {
        params
            .get("signing_secret")
            .and_then(|secret| secret.as_str())
            .filter(|secret| secret.len() >= MIN_SECRET_LEN)
            .map(str::to_owned)
            .ok_or_else(|| GatewayError::InvalidParams {
                reason: format!(
                    "signing_secret must be a string of at least {MIN_SECRET_LEN} characters"
                ),
            })
    }
}

const SANDBOX_METHODS: &[InvokeMethod] = &[
    InvokeMethod::Pc,
    InvokeMethod::Wap,
    InvokeMethod::App,
    InvokeMethod::MiniProgram,
    InvokeMethod::Jsapi,
    InvokeMethod::NativeQr,
];

/// The sandbox's id of a refund.
fn sandbox_refund_no(refund_id: &RefundId) -> String {
    format!("SBXR{}", refund_id.as_str().trim_start_matches("rf_"))
}

impl PaymentChannel for SandboxChannel {
    fn channel(&self) -> Channel {
        Channel::Sandbox
    }

    fn supported_invoke_methods(&self) -> &'static [InvokeMethod] {
        SANDBOX_METHODS
    }

    fn param_names(&self) -> &'static [&'static str] {
        &["signing_secret"]
    }

    fn receiver_kinds(&self) -> &'static [&'static str] {
        &["merchant", "user"]
    }

    fn payout_receiver_kinds(&self) -> &'static [&'static str] {
        &["sandbox"]
    }

    /// The sandbox pays out at once; a wallet whose account starts with `fail` refuses.
    fn transfer<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        transfer: &'a crate::Transfer,
    ) -> BoxFuture<'a, Result<crate::TransferStatus, GatewayError>> {
        Box::pin(async move {
            if transfer.receiver_account.starts_with("fail") {
                return Ok(crate::TransferStatus::Failed {
                    reason: format!(
                        "sandbox: wallet {} refused the transfer",
                        transfer.receiver_account
                    ),
                });
            }
            Ok(crate::TransferStatus::Succeeded {
                channel_payout_no: Some(format!("SBXP-{}", transfer.payout_id)),
            })
        })
    }

    /// The sandbox keeps no transfers: it answers what `transfer` did with the same payout.
    fn query_transfer<'a>(
        &'a self,
        params: &'a serde_json::Value,
        transfer: &'a crate::Transfer,
    ) -> BoxFuture<'a, Result<Option<crate::TransferAtChannel>, GatewayError>> {
        Box::pin(async move {
            let status = self.transfer(params, transfer).await?;
            Ok(Some(crate::TransferAtChannel {
                status,
                amount: transfer.amount,
            }))
        })
    }

    fn shares_at_channel(&self) -> bool {
        true
    }

    /// The sandbox pays shares at once (paycenter is the channel here); a receiver account
    /// starting with `refuse` is refused, as a channel refuses an unbound or frozen receiver.
    fn share_payment<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        order: &'a ChannelOrder,
        share_id: &'a str,
        lines: &'a [crate::ShareLine],
    ) -> BoxFuture<'a, Result<crate::ShareResult, GatewayError>> {
        Box::pin(async move {
            if let Some(line) = lines
                .iter()
                .find(|line| line.receiver.account.starts_with("refuse"))
            {
                return Ok(crate::ShareResult::Failed {
                    reason: format!("sandbox: receiver {} refused", line.receiver.account),
                });
            }
            Ok(crate::ShareResult::Shared {
                channel_share_no: Some(format!("SBXS-{}-{share_id}", order.trade_no)),
            })
        })
    }

    fn return_share<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        _order: &'a ChannelOrder,
        _share_id: &'a str,
        _return_id: &'a str,
        _line: &'a crate::ShareLine,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async { Ok(()) })
    }

    /// The sandbox binds any receiver of its kinds (paycenter is the channel here).
    fn bind_receiver<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        _receiver: &'a crate::Receiver,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async { Ok(()) })
    }

    fn unbind_receiver<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        _receiver: &'a crate::Receiver,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async { Ok(()) })
    }

    /// A sandbox sub-merchant is named by an id of the operator's choosing; it pays and
    /// signs with its provider's secret, as a real channel's sub-merchant does.
    fn sub_merchant_param_names(&self) -> &'static [&'static str] {
        &["sub_merchant_id"]
    }

    fn validate_sub_merchant_params(
        &self,
        params: &serde_json::Value,
    ) -> Result<serde_json::Value, GatewayError> {
        crate::sub_merchant_ids(params, &["sub_merchant_id"], &["sub_merchant_id"])
    }

    fn validate_params(
        &self,
        params: &serde_json::Value,
    ) -> Result<serde_json::Value, GatewayError> {
        let Some(object) = params.as_object() else {
            return Err(GatewayError::InvalidParams {
                reason: "params must be an object".into(),
            });
        };
        if let Some(unknown) = object.keys().find(|key| key.as_str() != "signing_secret") {
            return Err(GatewayError::InvalidParams {
                reason: format!("unknown sandbox parameter {unknown:?}"),
            });
        }
        let secret = Self::secret(params)?;
        Ok(serde_json::json!({ "signing_secret": secret }))
    }

    fn create_payment<'a>(
        &'a self,
        params: &'a serde_json::Value,
        request: &'a CreatePayment,
    ) -> BoxFuture<'a, Result<Initiated, GatewayError>> {
        Box::pin(async move {
            let signing_secret = Self::secret(params)?;
            let route = TradeRoute {
                channel_account_id: request.channel_account_id.clone(),
                callback_url: format!(
                    "{}/callbacks/sandbox/{}",
                    self.public_url, request.channel_account_id
                ),
                signing_secret,
            };
            let mut book = self.provider.book.lock().expect("sandbox lock");
            let book = &mut *book;
            if !book.trades.contains_key(&request.trade_no) {
                let route = match &book.last_route {
                    Some(last) if **last == route => last.clone(),
                    _ => Arc::new(route),
                };
                book.last_route = Some(route.clone());
                book.arrivals.push_back(request.trade_no.clone());
                while book.arrivals.len() > MAX_TRADES {
                    let oldest = book.arrivals.pop_front().expect("longer than the limit");
                    book.trades.remove(&oldest);
                }
                book.trades.insert(
                    request.trade_no.clone(),
                    KeptTrade {
                        route,
                        amount: request.amount,
                        subject: request.subject.as_str().into(),
                        status: SandboxTradeStatus::Pending,
                        expires_at_unix: request.expires_at_unix,
                        refunded_minor: 0,
                        refund_ids: Vec::new(),
                        paid_on: None,
                    },
                );
            }
            Ok(Initiated {
                action: PaymentAction::CheckoutUrl {
                    url: request.checkout_url.clone(),
                },
                channel_reference: None,
                checkout_qr_code: None,
            })
        })
    }

    fn close_payment<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        order: &'a ChannelOrder,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        let trade_no = &order.trade_no;
        Box::pin(async move {
            let mut book = self.provider.book.lock().expect("sandbox lock");
            if let Some(trade) = book.trades.get_mut(trade_no) {
                if trade.status == SandboxTradeStatus::Pending {
                    trade.status = SandboxTradeStatus::Closed;
                }
            }
            Ok(())
        })
    }

    fn refund<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        order: &'a ChannelOrder,
        refund_id: &'a RefundId,
        amount: Money,
    ) -> BoxFuture<'a, Result<RefundStatus, GatewayError>> {
        let trade_no = &order.trade_no;
        Box::pin(async move {
            let (route, body) = {
                let mut book = self.provider.book.lock().expect("sandbox lock");
                let trade =
                    book.trades
                        .get_mut(trade_no)
                        .ok_or_else(|| GatewayError::Unavailable {
                            reason: SandboxError::UnknownTrade(trade_no.to_string()).to_string(),
                        })?;
                let repeated = trade.refund_ids.contains(refund_id);
                let refundable = repeated
                    || (trade.status == SandboxTradeStatus::Paid
                        && trade.refunded_minor + amount.amount_minor()
                            <= trade.amount.amount_minor());
                let body = if refundable {
                    // A repeated refund id is answered again, never refunded twice.
                    if !repeated {
                        trade.refunded_minor += amount.amount_minor();
                        trade.refund_ids.push(refund_id.clone());
                    }
                    CallbackBody {
                        refund_id: Some(refund_id.to_string()),
                        channel_refund_no: Some(sandbox_refund_no(refund_id)),
                        ..CallbackBody::about("refund.succeeded", trade_no).with_amount(amount)
                    }
                } else {
                    CallbackBody {
                        refund_id: Some(refund_id.to_string()),
                        reason: Some("the sandbox cannot refund this trade".into()),
                        ..CallbackBody::about("refund.failed", trade_no).with_amount(amount)
                    }
                };
                (trade.route.clone(), body)
            };
            self.provider.send_callback(&route, body);
            // Like most channels, the sandbox tells the outcome by callback.
            Ok(RefundStatus::Pending)
        })
    }

    fn query_refund<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        order: &'a ChannelOrder,
        refund_id: &'a RefundId,
    ) -> BoxFuture<'a, Result<RefundStatus, GatewayError>> {
        Box::pin(async move {
            let refunded = self
                .provider
                .trade(&order.trade_no)
                .is_some_and(|trade| trade.refund_ids.contains(refund_id));
            Ok(if refunded {
                RefundStatus::Succeeded {
                    channel_refund_no: sandbox_refund_no(refund_id),
                }
            } else {
                RefundStatus::Pending
            })
        })
    }

    fn query_payment<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        order: &'a ChannelOrder,
    ) -> BoxFuture<'a, Result<ChannelPaymentStatus, GatewayError>> {
        let trade_no = &order.trade_no;
        Box::pin(async move {
            let Some(trade) = self.provider.trade(trade_no) else {
                return Ok(ChannelPaymentStatus::NotFound);
            };
            Ok(match trade.status {
                SandboxTradeStatus::Pending => ChannelPaymentStatus::Pending,
                SandboxTradeStatus::Paid => ChannelPaymentStatus::Paid {
                    channel_trade_no: trade.channel_trade_no,
                    amount: trade.amount,
                },
                SandboxTradeStatus::Failed => ChannelPaymentStatus::Failed {
                    reason: "the user declined".into(),
                },
                SandboxTradeStatus::Closed => ChannelPaymentStatus::Closed,
            })
        })
    }

    fn daily_bill<'a>(
        &'a self,
        _params: &'a serde_json::Value,
        channel_account_id: &'a ChannelAccountId,
        day: NaiveDate,
    ) -> BoxFuture<'a, Result<Vec<BillRow>, GatewayError>> {
        Box::pin(async move {
            Ok(self
                .provider
                .bill(channel_account_id, day)
                .into_iter()
                .map(|trade| BillRow {
                    refunded: Money::from_minor(trade.refunded_minor, trade.amount.currency()),
                    trade_no: trade.trade_no,
                    channel_trade_no: trade.channel_trade_no,
                    amount: trade.amount,
                })
                .collect())
        })
    }

    fn verify_callback(
        &self,
        params: &serde_json::Value,
        request: &CallbackRequest,
    ) -> Result<CallbackNotice, GatewayError> {
        let rejected = |reason: &str| GatewayError::CallbackRejected {
            reason: reason.to_owned(),
        };
        let secret = Self::secret(params)?;
        let header = request
            .header(SIGNATURE_HEADER)
            .ok_or_else(|| rejected("missing Sandbox-Signature header"))?;
        crate::signing::verify(
            secret.as_bytes(),
            header,
            &request.body,
            Utc::now().timestamp(),
            SIGNATURE_TOLERANCE_SECONDS,
        )
        .map_err(|reason| rejected(&reason))?;
        let body: CallbackBody = serde_json::from_slice(&request.body)
            .map_err(|_| rejected("body is not a sandbox notice"))?;
        let trade_no = TradeNo::parse(&body.trade_no).map_err(|_| rejected("bad trade_no"))?;
        let amount = || -> Result<Money, GatewayError> {
            let currency: Currency = body
                .currency
                .as_deref()
                .unwrap_or("")
                .parse()
                .map_err(|_| rejected("bad currency"))?;
            Money::parse_positive(body.amount.as_deref().unwrap_or(""), currency)
                .map_err(|_| rejected("bad amount"))
        };
        let refund_id = || {
            RefundId::parse(body.refund_id.as_deref().unwrap_or(""))
                .map_err(|_| rejected("bad refund_id"))
        };
        Ok(match body.kind.as_str() {
            "payment.paid" => CallbackNotice::PaymentSucceeded {
                trade_no,
                channel_trade_no: ChannelTradeNo::parse(
                    body.channel_trade_no.as_deref().unwrap_or(""),
                )
                .map_err(|_| rejected("bad channel_trade_no"))?,
                amount: amount()?,
            },
            "payment.failed" => CallbackNotice::PaymentFailed {
                trade_no,
                reason: body.reason.unwrap_or_default(),
            },
            "refund.succeeded" => CallbackNotice::RefundSucceeded {
                trade_no,
                refund_id: refund_id()?,
                channel_refund_no: body.channel_refund_no.unwrap_or_default(),
            },
            "refund.failed" => CallbackNotice::RefundFailed {
                trade_no,
                refund_id: refund_id()?,
                reason: body.reason.unwrap_or_default(),
            },
            other => CallbackNotice::Unknown {
                kind: other.chars().take(64).collect(),
            },
        })
    }

    fn callback_answer(&self, accepted: bool) -> CallbackAnswer {
        if accepted {
            CallbackAnswer {
                status: 200,
                content_type: "application/json",
                body: "{\"received\":true}".into(),
            }
        } else {
            CallbackAnswer {
                status: 400,
                content_type: "application/json",
                body: "{\"received\":false}".into(),
            }
        }
    }
}
