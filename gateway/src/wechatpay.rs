//! WeChat Pay, API v3: JSON over HTTPS, requests signed `WECHATPAY2-SHA256-RSA2048` with the
//! merchant's private key, answers and notifies signed with WeChat Pay's platform public key
//! (the "WeChat Pay public key" mode: `platform_public_key` and its id `PUB_KEY_ID_...`), and
//! notify resources encrypted with AES-256-GCM under the merchant's APIv3 key.
//!
//! | invoke method | WeChat Pay call | action |
//! |---|---|---|
//! | `native_qr` | `/v3/pay/transactions/native` | `qr_code` (`code_url`) |
//! | `pc` | `/v3/pay/transactions/native` | `checkout_url` (paycenter's page shows the QR) |
//! | `jsapi`, `mini_program` | `/v3/pay/transactions/jsapi` | `jsapi_params` for `wx.requestPayment` |
//! | `app` | `/v3/pay/transactions/app` | `app_params` for the app SDK |
//! | `wap` | `/v3/pay/transactions/h5` | `redirect_url` (`h5_url`) |

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use chrono::{FixedOffset, NaiveDate, TimeZone, Utc};
use paycenter_domain::ids::{ChannelAccountId, ChannelTradeNo, RefundId, TradeNo};
use paycenter_domain::payment::{Channel, InvokeMethod};
use paycenter_domain::{Currency, Money};
use rand::distributions::{Alphanumeric, DistString};
use serde_json::{json, Value};
use sha1::Digest;

use crate::http::{HttpAnswer, HttpClient};
use crate::rsa_sha256::{PrivateKey, PublicKey};
use crate::{
    gateway_url_param, refuse_unknown_params, required_param, unavailable, BillRow, BoxFuture,
    CallbackAnswer, CallbackNotice, CallbackRequest, ChannelOrder, ChannelPaymentStatus,
    CreatePayment, GatewayError, Initiated, PaymentAction, PaymentChannel, RefundStatus,
};

/// WeChat Pay's production API.
pub const DEFAULT_GATEWAY_URL: &str = "https://api.mch.weixin.qq.com";

/// How far a signed answer's or notify's timestamp may be from now.
const TIMESTAMP_TOLERANCE_SECONDS: i64 = 300;

const METHODS: &[InvokeMethod] = &[
    InvokeMethod::NativeQr,
    InvokeMethod::Pc,
    InvokeMethod::Jsapi,
    InvokeMethod::MiniProgram,
    InvokeMethod::App,
    InvokeMethod::Wap,
];

const PARAM_NAMES: &[&str] = &[
    "mchid",
    "appid",
    "merchant_serial_no",
    "merchant_private_key",
    "api_v3_key",
    "platform_public_key",
    "platform_public_key_id",
    "gateway_url",
];

/// A channel account's parameters, parsed.
struct Account {
    mchid: String,
    appid: String,
    merchant_serial_no: String,
    merchant_private_key: PrivateKey,
    api_v3_key: [u8; 32],
    platform_public_key: PublicKey,
    platform_public_key_id: String,
    gateway_url: String,
}

fn nonce() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

/// Checks `Wechatpay-*` headers and the body against the platform key: the scheme of both
/// answers and notifies.
fn verify_signed(
    account: &Account,
    header: &dyn Fn(&str) -> Option<String>,
    body: &[u8],
    now_unix: i64,
) -> Result<(), String> {
    let timestamp = header("wechatpay-timestamp").ok_or("no Wechatpay-Timestamp header")?;
    let nonce = header("wechatpay-nonce").ok_or("no Wechatpay-Nonce header")?;
    let signature = header("wechatpay-signature").ok_or("no Wechatpay-Signature header")?;
    let serial = header("wechatpay-serial").ok_or("no Wechatpay-Serial header")?;
    if serial != account.platform_public_key_id {
        return Err(format!("signed with an unknown key {serial:?}"));
    }
    let timestamp_unix: i64 = timestamp.parse().map_err(|_| "bad Wechatpay-Timestamp")?;
    if (now_unix - timestamp_unix).abs() > TIMESTAMP_TOLERANCE_SECONDS {
        return Err("Wechatpay-Timestamp outside the tolerance".into());
    }
    let body = std::str::from_utf8(body).map_err(|_| "body is not UTF-8")?;
    let message = format!("{timestamp}\n{nonce}\n{body}\n");
    if !account
        .platform_public_key
        .verify_base64(message.as_bytes(), &signature)
    {
        return Err("signature does not verify".into());
    }
    Ok(())
}

impl Account {
    fn parse(params: &Value) -> Result<Account, GatewayError> {
        let invalid = |reason: String| GatewayError::InvalidParams { reason };
        let api_v3_key = required_param(params, "api_v3_key")?;
        let api_v3_key: [u8; 32] = api_v3_key
            .as_bytes()
            .try_into()
            .map_err(|_| invalid("api_v3_key must be 32 characters".into()))?;
        Ok(Account {
            mchid: required_param(params, "mchid")?.to_owned(),
            appid: required_param(params, "appid")?.to_owned(),
            merchant_serial_no: required_param(params, "merchant_serial_no")?.to_owned(),
            merchant_private_key: PrivateKey::parse(required_param(
                params,
                "merchant_private_key",
            )?)
            .map_err(|reason| invalid(format!("merchant_private_key: {reason}")))?,
            api_v3_key,
            platform_public_key: PublicKey::parse(required_param(params, "platform_public_key")?)
                .map_err(|reason| {
                invalid(format!("platform_public_key: {reason}"))
            })?,
            platform_public_key_id: required_param(params, "platform_public_key_id")?.to_owned(),
            gateway_url: gateway_url_param(params, DEFAULT_GATEWAY_URL)?,
        })
    }

    /// The `Authorization` header of a request.
    fn authorization(&self, method: &str, path_and_query: &str, body: &str) -> String {
        let timestamp = Utc::now().timestamp();
        let nonce = nonce();
        let message = format!("{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body}\n");
        let signature = self.merchant_private_key.sign_base64(message.as_bytes());
        format!(
            "WECHATPAY2-SHA256-RSA2048 mchid=\"{}\",nonce_str=\"{nonce}\",signature=\"{signature}\",timestamp=\"{timestamp}\",serial_no=\"{}\"",
            self.mchid, self.merchant_serial_no
        )
    }

    /// Calls the API; answers the status and the JSON body (`null` when empty) once the
    /// answer's signature verifies.
    async fn call(
        &self,
        http: &HttpClient,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), GatewayError> {
        let body_text = body.map(Value::to_string).unwrap_or_default();
        let headers = [
            (
                "authorization",
                self.authorization(method, path_and_query, &body_text),
            ),
            ("accept", "application/json".to_owned()),
            ("content-type", "application/json".to_owned()),
            ("user-agent", "paycenter".to_owned()),
            ("wechatpay-serial", self.platform_public_key_id.clone()),
        ];
        let url = format!("{}{path_and_query}", self.gateway_url);
        let answer: HttpAnswer = http
            .send(method, &url, &headers, body_text.into_bytes())
            .await
            .map_err(|error| unavailable(format!("wechatpay {path_and_query}: {error}")))?;
        if answer.status >= 500 {
            return Err(unavailable(format!(
                "wechatpay {path_and_query}: HTTP {}",
                answer.status
            )));
        }
        let header = |name: &str| answer.header(name).map(str::to_owned);
        verify_signed(self, &header, &answer.body, Utc::now().timestamp()).map_err(|why| {
            unavailable(format!(
                "wechatpay {path_and_query}: HTTP {} answer refused: {why}",
                answer.status
            ))
        })?;
        let value = if answer.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&answer.body).map_err(|_| {
                unavailable(format!("wechatpay {path_and_query}: answer is not JSON"))
            })?
        };
        Ok((answer.status, value))
    }

    /// Decrypts a notify's `resource` with the APIv3 key.
    fn decrypt_resource(&self, resource: &Value) -> Result<Value, String> {
        if resource["algorithm"].as_str() != Some("AEAD_AES_256_GCM") {
            return Err("resource algorithm is not AEAD_AES_256_GCM".into());
        }
        let ciphertext = base64::engine::general_purpose::STANDARD
            .decode(resource["ciphertext"].as_str().unwrap_or(""))
            .map_err(|_| "resource ciphertext is not base64")?;
        let nonce = resource["nonce"].as_str().unwrap_or("");
        if nonce.len() != 12 {
            return Err("resource nonce must be 12 bytes".into());
        }
        let associated_data = resource["associated_data"].as_str().unwrap_or("");
        let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(&self.api_v3_key));
        let plaintext = cipher
            .decrypt(
                Nonce::from_slice(nonce.as_bytes()),
                Payload {
                    msg: &ciphertext,
                    aad: associated_data.as_bytes(),
                },
            )
            .map_err(|_| "resource does not decrypt under the APIv3 key")?;
        serde_json::from_slice(&plaintext).map_err(|_| "decrypted resource is not JSON".into())
    }
}

fn error_text(status: u16, body: &Value) -> String {
    format!(
        "HTTP {status} {} {}",
        body["code"].as_str().unwrap_or(""),
        body["message"].as_str().unwrap_or("")
    )
}

/// Maps a refund's `status` conservatively.
fn refund_status(body: &Value) -> RefundStatus {
    let channel_refund_no = body["refund_id"].as_str().unwrap_or("").to_owned();
    match body["status"].as_str() {
        Some("SUCCESS") => RefundStatus::Succeeded { channel_refund_no },
        Some("CLOSED") | Some("ABNORMAL") => RefundStatus::Failed {
            reason: format!("refund {}", body["status"].as_str().unwrap_or("")),
        },
        _ => RefundStatus::Pending,
    }
}

/// The WeChat Pay channel.
pub struct WechatpayChannel {
    http: HttpClient,
}

impl WechatpayChannel {
    /// An adapter calling the channel through `http` (the process's guarded outbound
    /// client, with the channel timeout).
    pub fn new(http: HttpClient) -> WechatpayChannel {
        WechatpayChannel { http }
    }
}

impl PaymentChannel for WechatpayChannel {
    fn channel(&self) -> Channel {
        Channel::Wechatpay
    }

    fn supported_invoke_methods(&self) -> &'static [InvokeMethod] {
        METHODS
    }

    fn required_payment_fields(&self, invoke_method: InvokeMethod) -> &'static [&'static str] {
        match invoke_method {
            InvokeMethod::Jsapi | InvokeMethod::MiniProgram => &["payer_id"],
            InvokeMethod::Wap => &["client_ip"],
            _ => &[],
        }
    }

    fn supported_currencies(&self) -> Option<&'static [Currency]> {
        Some(&[Currency::CNY])
    }

    fn param_names(&self) -> &'static [&'static str] {
        PARAM_NAMES
    }

    fn validate_params(&self, params: &Value) -> Result<Value, GatewayError> {
        refuse_unknown_params(params, PARAM_NAMES)?;
        let account = Account::parse(params)?;
        let mut normalized = json!({});
        for name in PARAM_NAMES.iter().filter(|name| **name != "gateway_url") {
            normalized[*name] = json!(required_param(params, name)?.trim());
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
            let account = Account::parse(params)?;
            let missing = |field: &'static str| GatewayError::MissingPaymentField {
                channel: "wechatpay",
                invoke_method: request.invoke_method.name(),
                field,
            };
            let time_expire = FixedOffset::east_opt(8 * 3600)
                .expect("a valid offset")
                .timestamp_opt(request.expires_at_unix, 0)
                .single()
                .ok_or_else(|| unavailable("expiry out of range"))?
                .to_rfc3339();
            let mut body = json!({
                "appid": account.appid,
                "mchid": account.mchid,
                "description": request.subject.chars().take(127).collect::<String>(),
                "out_trade_no": request.trade_no,
                "time_expire": time_expire,
                "notify_url": request.notify_url,
                "amount": { "total": request.amount.amount_minor(), "currency": "CNY" },
            });
            let path = match request.invoke_method {
                InvokeMethod::NativeQr | InvokeMethod::Pc => "/v3/pay/transactions/native",
                InvokeMethod::Jsapi | InvokeMethod::MiniProgram => {
                    let openid = request
                        .payer_id
                        .as_deref()
                        .ok_or_else(|| missing("payer_id"))?;
                    body["payer"] = json!({ "openid": openid });
                    "/v3/pay/transactions/jsapi"
                }
                InvokeMethod::App => "/v3/pay/transactions/app",
                InvokeMethod::Wap => {
                    let client_ip = request
                        .client_ip
                        .as_deref()
                        .ok_or_else(|| missing("client_ip"))?;
                    body["scene_info"] =
                        json!({ "payer_client_ip": client_ip, "h5_info": { "type": "Wap" } });
                    "/v3/pay/transactions/h5"
                }
            };
            let (status, answer) = account.call(&self.http, "POST", path, Some(&body)).await?;
            if status != 200 {
                return Err(unavailable(format!(
                    "wechatpay {path}: {}",
                    error_text(status, &answer)
                )));
            }
            let field = |name: &str| {
                answer[name]
                    .as_str()
                    .map(str::to_owned)
                    .ok_or_else(|| unavailable(format!("wechatpay {path} answered no {name}")))
            };
            let timestamp = Utc::now().timestamp().to_string();
            let nonce = nonce();
            let (action, checkout_qr_code) = match request.invoke_method {
                InvokeMethod::NativeQr => (
                    PaymentAction::QrCode {
                        qr_code: field("code_url")?,
                    },
                    None,
                ),
                InvokeMethod::Pc => (
                    PaymentAction::CheckoutUrl {
                        url: request.checkout_url.clone(),
                    },
                    Some(field("code_url")?),
                ),
                InvokeMethod::Jsapi | InvokeMethod::MiniProgram => {
                    let package = format!("prepay_id={}", field("prepay_id")?);
                    let message = format!("{}\n{timestamp}\n{nonce}\n{package}\n", account.appid);
                    (
                        PaymentAction::JsapiParams {
                            params: json!({
                                "appId": account.appid,
                                "timeStamp": timestamp,
                                "nonceStr": nonce,
                                "package": package,
                                "signType": "RSA",
                                "paySign": account.merchant_private_key.sign_base64(message.as_bytes()),
                            }),
                        },
                        None,
                    )
                }
                InvokeMethod::App => {
                    let prepay_id = field("prepay_id")?;
                    let message = format!("{}\n{timestamp}\n{nonce}\n{prepay_id}\n", account.appid);
                    (
                        PaymentAction::AppParams {
                            params: json!({
                                "appid": account.appid,
                                "partnerid": account.mchid,
                                "prepayid": prepay_id,
                                "package": "Sign=WXPay",
                                "noncestr": nonce,
                                "timestamp": timestamp,
                                "sign": account.merchant_private_key.sign_base64(message.as_bytes()),
                            }),
                        },
                        None,
                    )
                }
                InvokeMethod::Wap => (
                    PaymentAction::RedirectUrl {
                        url: field("h5_url")?,
                    },
                    None,
                ),
            };
            Ok(Initiated {
                action,
                channel_reference: None,
                checkout_qr_code,
            })
        })
    }

    fn close_payment<'a>(
        &'a self,
        params: &'a Value,
        order: &'a ChannelOrder,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async move {
            let account = Account::parse(params)?;
            let path = format!("/v3/pay/transactions/out-trade-no/{}/close", order.trade_no);
            let body = json!({ "mchid": account.mchid });
            let (status, answer) = account.call(&self.http, "POST", &path, Some(&body)).await?;
            match status {
                200 | 204 => Ok(()),
                404 => Ok(()),
                _ => Err(unavailable(format!(
                    "wechatpay close: {}",
                    error_text(status, &answer)
                ))),
            }
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
            let account = Account::parse(params)?;
            let body = json!({
                "out_trade_no": order.trade_no,
                // The same out_refund_no is the same refund at WeChat Pay.
                "out_refund_no": refund_id,
                "notify_url": order.notify_url,
                "amount": {
                    "refund": amount.amount_minor(),
                    "total": order.amount.amount_minor(),
                    "currency": "CNY",
                },
            });
            let (status, answer) = account
                .call(
                    &self.http,
                    "POST",
                    "/v3/refund/domestic/refunds",
                    Some(&body),
                )
                .await?;
            match status {
                200 => Ok(refund_status(&answer)),
                // A business refusal: not enough balance, bad amount, unpaid trade, ...
                400 | 403 | 404 => Ok(RefundStatus::Failed {
                    reason: error_text(status, &answer),
                }),
                _ => Err(unavailable(format!(
                    "wechatpay refund: {}",
                    error_text(status, &answer)
                ))),
            }
        })
    }

    fn query_refund<'a>(
        &'a self,
        params: &'a Value,
        _order: &'a ChannelOrder,
        refund_id: &'a RefundId,
    ) -> BoxFuture<'a, Result<RefundStatus, GatewayError>> {
        Box::pin(async move {
            let account = Account::parse(params)?;
            let path = format!("/v3/refund/domestic/refunds/{refund_id}");
            let (status, answer) = account.call(&self.http, "GET", &path, None).await?;
            if status != 200 {
                return Err(unavailable(format!(
                    "wechatpay refund query: {}",
                    error_text(status, &answer)
                )));
            }
            Ok(refund_status(&answer))
        })
    }

    fn query_payment<'a>(
        &'a self,
        params: &'a Value,
        order: &'a ChannelOrder,
    ) -> BoxFuture<'a, Result<ChannelPaymentStatus, GatewayError>> {
        Box::pin(async move {
            let account = Account::parse(params)?;
            let path = format!(
                "/v3/pay/transactions/out-trade-no/{}?mchid={}",
                order.trade_no, account.mchid
            );
            let (status, answer) = account.call(&self.http, "GET", &path, None).await?;
            if status == 404 {
                return Ok(ChannelPaymentStatus::NotFound);
            }
            if status != 200 {
                return Err(unavailable(format!(
                    "wechatpay query: {}",
                    error_text(status, &answer)
                )));
            }
            Ok(match answer["trade_state"].as_str() {
                Some("SUCCESS") | Some("REFUND") => paid_status(&answer).ok_or_else(|| {
                    unavailable("wechatpay query: paid without transaction_id or amount")
                })?,
                Some("CLOSED") | Some("REVOKED") => ChannelPaymentStatus::Closed,
                Some("PAYERROR") => ChannelPaymentStatus::Failed {
                    reason: answer["trade_state_desc"]
                        .as_str()
                        .unwrap_or("PAYERROR")
                        .to_owned(),
                },
                // NOTPAY, USERPAYING and anything unknown: not decided yet.
                _ => ChannelPaymentStatus::Pending,
            })
        })
    }

    fn daily_bill<'a>(
        &'a self,
        params: &'a Value,
        _channel_account_id: &'a ChannelAccountId,
        day: NaiveDate,
    ) -> BoxFuture<'a, Result<Vec<BillRow>, GatewayError>> {
        Box::pin(async move {
            let account = Account::parse(params)?;
            let path = format!(
                "/v3/bill/tradebill?bill_date={}&bill_type=ALL",
                day.format("%Y-%m-%d")
            );
            let (status, answer) = account.call(&self.http, "GET", &path, None).await?;
            if status != 200 {
                return Err(unavailable(format!(
                    "wechatpay tradebill: {}",
                    error_text(status, &answer)
                )));
            }
            let download_url = answer["download_url"]
                .as_str()
                .ok_or_else(|| unavailable("wechatpay tradebill answered no download_url"))?;
            // The download is authorized like any call, but its answer is not signed: the
            // SHA-1 from the signed answer above vouches for it.
            let path_and_query = download_url
                .split_once("://")
                .and_then(|(_, rest)| rest.find('/').map(|slash| &rest[slash..]))
                .ok_or_else(|| unavailable("wechatpay download_url is not a URL"))?;
            let file = self
                .http
                .get(
                    download_url,
                    &[(
                        "authorization",
                        account.authorization("GET", path_and_query, ""),
                    )],
                )
                .await
                .map_err(|error| unavailable(format!("wechatpay bill download: {error}")))?;
            if file.status != 200 {
                return Err(unavailable(format!(
                    "wechatpay bill download: HTTP {}",
                    file.status
                )));
            }
            let expected = answer["hash_value"].as_str().unwrap_or("");
            if answer["hash_type"].as_str() == Some("SHA1")
                && !hex::encode(sha1::Sha1::digest(&file.body)).eq_ignore_ascii_case(expected)
            {
                return Err(unavailable(
                    "wechatpay bill: SHA-1 does not match the signed hash",
                ));
            }
            crate::bills::wechatpay_tradebill(&file.body).map_err(unavailable)
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
        let account = Account::parse(params)?;
        let header = |name: &str| request.header(name).map(str::to_owned);
        verify_signed(&account, &header, &request.body, Utc::now().timestamp())
            .map_err(|why| rejected(&why))?;
        let notice: Value =
            serde_json::from_slice(&request.body).map_err(|_| rejected("body is not JSON"))?;
        let event_type = notice["event_type"].as_str().unwrap_or("");
        let resource = account
            .decrypt_resource(&notice["resource"])
            .map_err(|why| rejected(&why))?;
        if resource["mchid"]
            .as_str()
            .is_some_and(|mchid| mchid != account.mchid)
        {
            return Err(rejected("the notify is for another mchid"));
        }
        let field = |name: &str| resource[name].as_str().unwrap_or("");
        let trade_no =
            || TradeNo::parse(field("out_trade_no")).map_err(|_| rejected("bad out_trade_no"));
        let refund_id =
            || RefundId::parse(field("out_refund_no")).map_err(|_| rejected("bad out_refund_no"));
        Ok(match event_type {
            "TRANSACTION.SUCCESS" if field("trade_state") == "SUCCESS" => {
                let trade_no = trade_no()?;
                let Some(ChannelPaymentStatus::Paid {
                    channel_trade_no,
                    amount,
                }) = paid_status(&resource)
                else {
                    return Err(rejected("paid without transaction_id or amount"));
                };
                CallbackNotice::PaymentSucceeded {
                    trade_no,
                    channel_trade_no,
                    amount,
                }
            }
            "REFUND.SUCCESS" => CallbackNotice::RefundSucceeded {
                trade_no: trade_no()?,
                refund_id: refund_id()?,
                channel_refund_no: field("refund_id").to_owned(),
            },
            "REFUND.ABNORMAL" | "REFUND.CLOSED" => CallbackNotice::RefundFailed {
                trade_no: trade_no()?,
                refund_id: refund_id()?,
                reason: event_type.to_owned(),
            },
            other => CallbackNotice::Unknown {
                kind: other.chars().take(64).collect(),
            },
        })
    }

    fn callback_answer(&self, accepted: bool) -> CallbackAnswer {
        if accepted {
            return CallbackAnswer {
                status: 204,
                content_type: "application/json",
                body: String::new(),
            };
        }
        CallbackAnswer {
            status: 400,
            content_type: "application/json",
            body: json!({ "code": "FAIL", "message": "refused" }).to_string(),
        }
    }
}

/// A paid transaction's id and amount (`amount.total` in minor units, CNY).
fn paid_status(transaction: &Value) -> Option<ChannelPaymentStatus> {
    let channel_trade_no = ChannelTradeNo::parse(transaction["transaction_id"].as_str()?).ok()?;
    let total = transaction["amount"]["total"]
        .as_i64()
        .filter(|total| *total > 0)?;
    if transaction["amount"]["currency"]
        .as_str()
        .is_some_and(|currency| currency != "CNY")
    {
        return None;
    }
    Some(ChannelPaymentStatus::Paid {
        channel_trade_no,
        amount: Money::from_minor(total, Currency::CNY),
    })
}
