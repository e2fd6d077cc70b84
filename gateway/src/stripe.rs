//! Stripe: PaymentIntents over Stripe's form-encoded REST API, authenticated by the secret key;
//! webhooks signed `Stripe-Signature: t=...,v1=...` (HMAC-SHA256 of `"<t>.<body>"` under the
//! endpoint's signing secret, 300 s tolerance).
//!
//! `pc` and `wap` create a PaymentIntent and answer `jsapi_params`
//! `{client_secret, payment_intent_id, publishable_key?}`: what Stripe.js needs to confirm it in
//! the browser. The PaymentIntent id is recorded as the attempt's channel reference.

use chrono::{NaiveDate, Utc};
use paycenter_domain::ids::{ChannelAccountId, ChannelTradeNo, RefundId, TradeNo};
use paycenter_domain::payment::{Channel, InvokeMethod};
use paycenter_domain::{Currency, Money};
use serde_json::{json, Value};

use crate::account_cache::AccountCache;
use crate::http::HttpClient;
use crate::{
    gateway_url_param, refuse_unknown_params, required_param, unavailable, BillRow, BoxFuture,
    CallbackAnswer, CallbackNotice, CallbackRequest, ChannelOrder, ChannelPaymentStatus,
    CreatePayment, GatewayError, Initiated, PaymentAction, PaymentChannel, RefundStatus,
};

/// Stripe's production API.
pub const DEFAULT_GATEWAY_URL: &str = "https://api.stripe.com";

/// Stripe's default webhook tolerance.
pub const SIGNATURE_TOLERANCE_SECONDS: i64 = 300;

const METHODS: &[InvokeMethod] = &[InvokeMethod::Pc, InvokeMethod::Wap];

const PARAM_NAMES: &[&str] = &[
    "secret_key",
    "webhook_secret",
    "publishable_key",
    "gateway_url",
];

struct Account {
    secret_key: zeroize::Zeroizing<String>,
    webhook_secret: zeroize::Zeroizing<String>,
    publishable_key: Option<String>,
    gateway_url: String,
}

impl Account {
    fn parse(params: &Value) -> Result<Account, GatewayError> {
        let invalid = |reason: &str| GatewayError::InvalidParams {
            reason: reason.to_owned(),
        };
        let secret_key = required_param(params, "secret_key")?;
        if !(secret_key.starts_with("sk_") || secret_key.starts_with("rk_")) {
            return Err(invalid(
                "secret_key must be a Stripe secret key (sk_...) or restricted key (rk_...)",
            ));
        }
        let webhook_secret = required_param(params, "webhook_secret")?;
        if !webhook_secret.starts_with("whsec_") {
            return Err(invalid(
                "webhook_secret must be an endpoint signing secret (whsec_...)",
            ));
        }
        let publishable_key = match params.get("publishable_key") {
            None => None,
            Some(value) => {
                let key = value.as_str().filter(|key| key.starts_with("pk_"));
                Some(
                    key.ok_or_else(|| {
                        invalid("publishable_key must be a publishable key (pk_...)")
                    })?
                    .to_owned(),
                )
            }
        };
        Ok(Account {
            secret_key: zeroize::Zeroizing::new(secret_key.to_owned()),
            webhook_secret: zeroize::Zeroizing::new(webhook_secret.to_owned()),
            publishable_key,
            gateway_url: gateway_url_param(params, DEFAULT_GATEWAY_URL)?,
        })
    }

    /// Calls the API with a form body; answers the status and the JSON answer.
    async fn call(
        &self,
        http: &HttpClient,
        method: &str,
        path: &str,
        form: &[(&str, String)],
        idempotency_key: Option<&str>,
    ) -> Result<(u16, Value), GatewayError> {
        let mut headers = vec![
            (
                "authorization",
                format!("Bearer {}", self.secret_key.as_str()),
            ),
            (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            ),
        ];
        if let Some(key) = idempotency_key {
            headers.push(("idempotency-key", key.to_owned()));
        }
        let body = serde_urlencoded::to_string(form).expect("strings encode");
        let answer = http
            .send(
                method,
                &format!("{}{path}", self.gateway_url),
                &headers,
                body.into_bytes(),
            )
            .await
            .map_err(|error| unavailable(format!("stripe {path}: {error}")))?;
        if answer.status >= 500 || answer.status == 429 || answer.status == 401 {
            return Err(unavailable(format!(
                "stripe {path}: HTTP {}",
                answer.status
            )));
        }
        let value: Value = serde_json::from_slice(&answer.body)
            .map_err(|_| unavailable(format!("stripe {path}: answer is not JSON")))?;
        Ok((answer.status, value))
    }
}

fn error_text(status: u16, body: &Value) -> String {
    format!(
        "HTTP {status} {}",
        body["error"]["message"].as_str().unwrap_or("")
    )
}

/// Stripe writes currencies in lower case.
fn currency_of(code: &str) -> Option<Currency> {
    code.to_ascii_uppercase().parse().ok()
}

fn refund_status(refund: &Value) -> RefundStatus {
    let channel_refund_no = refund["id"].as_str().unwrap_or("").to_owned();
    match refund["status"].as_str() {
        Some("succeeded") => RefundStatus::Succeeded { channel_refund_no },
        Some("failed") | Some("canceled") => RefundStatus::Failed {
            reason: format!(
                "refund {} {}",
                refund["status"].as_str().unwrap_or(""),
                refund["failure_reason"].as_str().unwrap_or("")
            ),
        },
        // pending, requires_action and anything unknown.
        _ => RefundStatus::Pending,
    }
}

/// The Stripe channel.
pub struct StripeChannel {
    http: HttpClient,
    accounts: AccountCache<Account>,
}

impl StripeChannel {
    /// An adapter calling the channel through `http` (the process's guarded outbound
    /// client, with the channel timeout).
    pub fn new(http: HttpClient) -> StripeChannel {
        StripeChannel {
            http,
            accounts: AccountCache::default(),
        }
    }
}

/// The PaymentIntent of an order: its recorded reference, else its id once paid.
fn payment_intent_of(order: &ChannelOrder) -> Option<String> {
    order
        .channel_reference
        .clone()
        .or_else(|| order.channel_trade_no.as_ref().map(ToString::to_string))
        .filter(|id| id.starts_with("pi_"))
}

impl PaymentChannel for StripeChannel {
    fn channel(&self) -> Channel {
        Channel::Stripe
    }

    fn supported_invoke_methods(&self) -> &'static [InvokeMethod] {
        METHODS
    }

    fn param_names(&self) -> &'static [&'static str] {
        PARAM_NAMES
    }

    fn validate_params(&self, params: &Value) -> Result<Value, GatewayError> {
        refuse_unknown_params(params, PARAM_NAMES)?;
        let account = self.accounts.get_or_parse(params, Account::parse)?;
        let mut normalized = json!({
            "secret_key": account.secret_key.as_str(),
            "webhook_secret": account.webhook_secret.as_str(),
        });
        if let Some(key) = &account.publishable_key {
            normalized["publishable_key"] = json!(key);
        }
        if params.get("gateway_url").is_some() {
            normalized["gateway_url"] = json!(account.gateway_url);
        }
        Ok(normalized)
    }

    fn create_payment<'a>(
        &'a self,
        params: &'a Value,
        request: &'a CreatePayment,
    ) -> BoxFuture<'a, Result<Initiated, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let form = [
                ("amount", request.amount.amount_minor().to_string()),
                (
                    "currency",
                    request.amount.currency().code().to_ascii_lowercase(),
                ),
                ("metadata[trade_no]", request.trade_no.to_string()),
                (
                    "metadata[channel_account_id]",
                    request.channel_account_id.to_string(),
                ),
                ("payment_method_types[]", "card".to_owned()),
            ];
            // The trade number as idempotency key: a retried create is the same PaymentIntent.
            let (status, intent) = account
                .call(
                    &self.http,
                    "POST",
                    "/v1/payment_intents",
                    &form,
                    Some(request.trade_no.as_str()),
                )
                .await?;
            if status != 200 {
                let reason = format!("stripe create: {}", error_text(status, &intent));
                // A 4xx is Stripe refusing the request: no PaymentIntent was made (409, a
                // request with this idempotency key still running, is the exception). A 5xx
                // leaves it unknown.
                return Err(if (400..500).contains(&status) && status != 409 {
                    GatewayError::Refused { reason }
                } else {
                    unavailable(reason)
                });
            }
            let id = intent["id"].as_str().filter(|id| id.starts_with("pi_"));
            let client_secret = intent["client_secret"].as_str();
            let (Some(id), Some(client_secret)) = (id, client_secret) else {
                return Err(unavailable("stripe create answered no id or client_secret"));
            };
            let mut action = json!({ "client_secret": client_secret, "payment_intent_id": id });
            if let Some(key) = &account.publishable_key {
                action["publishable_key"] = json!(key);
            }
            Ok(Initiated {
                action: PaymentAction::JsapiParams { params: action },
                channel_reference: Some(id.to_owned()),
                checkout_qr_code: None,
            })
        })
    }

    fn close_payment<'a>(
        &'a self,
        params: &'a Value,
        order: &'a ChannelOrder,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let Some(intent_id) = payment_intent_of(order) else {
                return Ok(());
            };
            let path = format!("/v1/payment_intents/{intent_id}/cancel");
            let (status, answer) = account.call(&self.http, "POST", &path, &[], None).await?;
            if status == 200 || answer["status"].as_str() == Some("canceled") {
                return Ok(());
            }
            Err(unavailable(format!(
                "stripe cancel: {}",
                error_text(status, &answer)
            )))
        })
    }

    fn refund<'a>(
        &'a self,
        params: &'a Value,
        order: &'a ChannelOrder,
        refund_id: &'a RefundId,
        amount: Money,
    ) -> BoxFuture<'a, Result<RefundStatus, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let Some(intent_id) = payment_intent_of(order) else {
                return Ok(RefundStatus::Failed {
                    reason: "no PaymentIntent recorded for this payment".into(),
                });
            };
            let form = [
                ("payment_intent", intent_id),
                ("amount", amount.amount_minor().to_string()),
                ("metadata[refund_id]", refund_id.to_string()),
                ("metadata[trade_no]", order.trade_no.to_string()),
            ];
            let (status, answer) = account
                .call(
                    &self.http,
                    "POST",
                    "/v1/refunds",
                    &form,
                    Some(refund_id.as_str()),
                )
                .await?;
            if status == 200 {
                return Ok(refund_status(&answer));
            }
            // 400/402/404: Stripe refused the refund itself.
            Ok(RefundStatus::Failed {
                reason: error_text(status, &answer),
            })
        })
    }

    fn query_refund<'a>(
        &'a self,
        params: &'a Value,
        order: &'a ChannelOrder,
        refund_id: &'a RefundId,
    ) -> BoxFuture<'a, Result<RefundStatus, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let Some(intent_id) = payment_intent_of(order) else {
                return Ok(RefundStatus::Pending);
            };
            let path = format!("/v1/refunds?payment_intent={intent_id}&limit=100");
            let (status, answer) = account.call(&self.http, "GET", &path, &[], None).await?;
            if status != 200 {
                return Err(unavailable(format!(
                    "stripe refund list: {}",
                    error_text(status, &answer)
                )));
            }
            let found = answer["data"].as_array().and_then(|refunds| {
                refunds.iter().find(|refund| {
                    refund["metadata"]["refund_id"].as_str() == Some(refund_id.as_str())
                })
            });
            Ok(found.map_or(RefundStatus::Pending, refund_status))
        })
    }

    fn query_payment<'a>(
        &'a self,
        params: &'a Value,
        order: &'a ChannelOrder,
    ) -> BoxFuture<'a, Result<ChannelPaymentStatus, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let Some(intent_id) = payment_intent_of(order) else {
                return Ok(ChannelPaymentStatus::NotFound);
            };
            let path = format!("/v1/payment_intents/{intent_id}");
            let (status, intent) = account.call(&self.http, "GET", &path, &[], None).await?;
            if status == 404 {
                return Ok(ChannelPaymentStatus::NotFound);
            }
            if status != 200 {
                return Err(unavailable(format!(
                    "stripe query: {}",
                    error_text(status, &intent)
                )));
            }
            Ok(match intent["status"].as_str() {
                Some("succeeded") => {
                    paid_intent(&intent)
                        .ok_or_else(|| {
                            unavailable("stripe query: succeeded without a usable amount")
                        })?
                        .1
                }
                Some("canceled") => ChannelPaymentStatus::Closed,
                // requires_payment_method after a decline can still be paid with another card.
                _ => ChannelPaymentStatus::Pending,
            })
        })
    }

    fn daily_bill<'a>(
        &'a self,
        _params: &'a Value,
        _channel_account_id: &'a ChannelAccountId,
        _day: NaiveDate,
    ) -> BoxFuture<'a, Result<Vec<BillRow>, GatewayError>> {
        Box::pin(async move {
            Err(unavailable(
                "stripe has no daily trade bill; upload a CSV export to reconcile Stripe",
            ))
        })
    }

    fn verify_callback(
        &self,
        params: &Value,
        request: &CallbackRequest,
    ) -> Result<CallbackNotice, GatewayError> {
        let rejected = |reason: &str| GatewayError::CallbackRejected {
            reason: reason.to_owned(),
        };
        let account = self.accounts.get_or_parse(params, Account::parse)?;
        let header = request
            .header("stripe-signature")
            .ok_or_else(|| rejected("no Stripe-Signature header"))?;
        crate::signing::verify(
            account.webhook_secret.as_bytes(),
            header,
            &request.body,
            Utc::now().timestamp(),
            SIGNATURE_TOLERANCE_SECONDS,
        )
        .map_err(|why| rejected(&why))?;
        let event: Value =
            serde_json::from_slice(&request.body).map_err(|_| rejected("body is not JSON"))?;
        let object = &event["data"]["object"];
        let kind = event["type"].as_str().unwrap_or("");
        let metadata = |name: &str| object["metadata"][name].as_str().unwrap_or("");
        Ok(match kind {
            "payment_intent.succeeded" => {
                let trade_no = TradeNo::parse(metadata("trade_no"))
                    .map_err(|_| rejected("no trade_no in the PaymentIntent's metadata"))?;
                let Some((channel_trade_no, ChannelPaymentStatus::Paid { amount, .. })) =
                    paid_intent(object)
                else {
                    return Err(rejected("succeeded without a usable id or amount"));
                };
                CallbackNotice::PaymentSucceeded {
                    trade_no,
                    channel_trade_no,
                    amount,
                }
            }
            "refund.updated" | "refund.created" | "charge.refund.updated" => {
                let (Ok(trade_no), Ok(refund_id)) = (
                    TradeNo::parse(metadata("trade_no")),
                    RefundId::parse(metadata("refund_id")),
                ) else {
                    return Ok(CallbackNotice::Unknown {
                        kind: kind.to_owned(),
                    });
                };
                match refund_status(object) {
                    RefundStatus::Succeeded { channel_refund_no } => {
                        CallbackNotice::RefundSucceeded {
                            trade_no,
                            refund_id,
                            channel_refund_no,
                        }
                    }
                    RefundStatus::Failed { reason } => CallbackNotice::RefundFailed {
                        trade_no,
                        refund_id,
                        reason,
                    },
                    RefundStatus::Pending => CallbackNotice::Unknown {
                        kind: kind.to_owned(),
                    },
                }
            }
            // payment_intent.payment_failed is not final (the user may try another card), and
            // paycenter cancels intents itself: both stay pending until paid, closed or expired.
            other => CallbackNotice::Unknown {
                kind: other.chars().take(64).collect(),
            },
        })
    }

    fn callback_answer(&self, accepted: bool) -> CallbackAnswer {
        CallbackAnswer {
            status: if accepted { 200 } else { 400 },
            content_type: "application/json",
            body: json!({ "received": accepted }).to_string(),
        }
    }
}

/// A succeeded PaymentIntent's id and amount received.
fn paid_intent(intent: &Value) -> Option<(ChannelTradeNo, ChannelPaymentStatus)> {
    let id = ChannelTradeNo::parse(intent["id"].as_str()?).ok()?;
    let currency = currency_of(intent["currency"].as_str()?)?;
    let minor = intent["amount_received"]
        .as_i64()
        .filter(|received| *received > 0)
        .or_else(|| intent["amount"].as_i64())
        .filter(|amount| *amount > 0)?;
    Some((
        id.clone(),
        ChannelPaymentStatus::Paid {
            channel_trade_no: id,
            amount: Money::from_minor(minor, currency),
        },
    ))
}
