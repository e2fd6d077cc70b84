//! Alipay (OpenAPI v2 gateway, `RSA2` signatures).
//!
//! Requests are form parameters signed with the app's private key; answers and notifies are
//! signed with Alipay's public key. `gateway_url` is the full gateway endpoint
//! (`https://openapi.alipay.com/gateway.do` by default).
//!
//! | invoke method | Alipay method | action |
//! |---|---|---|
//! | `pc` | `alipay.trade.page.pay` | `redirect_url` (the signed gateway URL) |
//! | `wap` | `alipay.trade.wap.pay` | `redirect_url` |
//! | `app` | `alipay.trade.app.pay` | `app_params` `{order_string}` |
//! | `native_qr` | `alipay.trade.precreate` (server call) | `qr_code` |
//! | `mini_program` | `alipay.trade.create` (server call) | `jsapi_params` `{trade_no}` for `my.tradePay` |
//!
//! Refunds settle in the call's answer; the notify reports payments only.

pub mod wire;

use std::collections::BTreeMap;

use chrono::{FixedOffset, NaiveDate, TimeZone, Utc};
use paycenter_domain::ids::{ChannelAccountId, ChannelTradeNo, RefundId, TradeNo};
use paycenter_domain::payment::{Channel, InvokeMethod};
use paycenter_domain::{Currency, Money};
use serde_json::{json, Value};

use crate::account_cache::AccountCache;
use crate::http::HttpClient;
use crate::rsa_sha256::{PrivateKey, PublicKey};
use crate::{
    gateway_url_param, refuse_unknown_params, required_param, unavailable, BillRow, BoxFuture,
    CallbackAnswer, CallbackNotice, CallbackRequest, ChannelOrder, ChannelPaymentStatus,
    CreatePayment, GatewayError, Initiated, PaymentAction, PaymentChannel, Receiver, RefundStatus,
    ShareLine, ShareResult, Transfer, TransferAtChannel, TransferStatus,
};

/// Alipay's production gateway.
pub const DEFAULT_GATEWAY_URL: &str = "https://openapi.alipay.com/gateway.do";

const METHODS: &[InvokeMethod] = &[
    InvokeMethod::Pc,
    InvokeMethod::Wap,
    InvokeMethod::App,
    InvokeMethod::NativeQr,
    InvokeMethod::MiniProgram,
];

const PARAM_NAMES: &[&str] = &[
    "app_id",
    "app_private_key",
    "alipay_public_key",
    "gateway_url",
    "app_cert_sn",
    "alipay_root_cert_sn",
];

/// A sub-merchant's parameters: the token its authorization of the provider's third-party
/// application gave (`app_auth_token`), sent with every request made for it.
const SUB_MERCHANT_PARAM_NAMES: &[&str] = &["app_auth_token"];

/// The code of a successful Alipay business answer.
const CODE_SUCCESS: &str = "10000";

/// Alipay's clock: `timestamp` and `time_expire` are Beijing time.
fn beijing() -> FixedOffset {
    FixedOffset::east_opt(8 * 3600).expect("a valid offset")
}

/// A channel account's parameters, parsed.
struct Account {
    app_id: String,
    app_private_key: PrivateKey,
    alipay_public_key: PublicKey,
    gateway_url: String,
    /// Set when the call is for a sub-merchant: the app is then the provider's third-party
    /// application acting with the sub-merchant's authorization.
    app_auth_token: Option<zeroize::Zeroizing<String>>,
    /// The app the sub-merchant's token authorized, as Alipay told at activation: a notify
    /// for the sub-merchant names it (`auth_app_id`).
    auth_app_id: Option<String>,
    /// Public-key-certificate mode (which Alipay requires for transfers): the serial numbers of
    /// the app's certificate and of Alipay's root certificate, sent with every request.
    cert_sns: Option<(String, String)>,
}

impl Account {
    fn parse(params: &Value) -> Result<Account, GatewayError> {
        let invalid = |reason: String| GatewayError::InvalidParams { reason };
        let app_id = required_param(params, "app_id")?;
        if !app_id.chars().all(|c| c.is_ascii_digit()) || app_id.len() > 32 {
            return Err(invalid("app_id must be Alipay's numeric app id".into()));
        }
        Ok(Account {
            app_id: app_id.to_owned(),
            app_private_key: PrivateKey::parse(required_param(params, "app_private_key")?)
                .map_err(|reason| invalid(format!("app_private_key: {reason}")))?,
            alipay_public_key: PublicKey::parse(required_param(params, "alipay_public_key")?)
                .map_err(|reason| invalid(format!("alipay_public_key: {reason}")))?,
            gateway_url: gateway_url_param(params, DEFAULT_GATEWAY_URL)?,
            app_auth_token: match params
                .get("app_auth_token")
                .filter(|value| !value.is_null())
            {
                None => None,
                Some(_) => Some(zeroize::Zeroizing::new(
                    required_param(params, "app_auth_token")?.to_owned(),
                )),
            },
            auth_app_id: params
                .get("auth_app_id")
                .and_then(Value::as_str)
                .map(str::to_owned),
            cert_sns: match (
                params.get("app_cert_sn").filter(|value| !value.is_null()),
                params
                    .get("alipay_root_cert_sn")
                    .filter(|value| !value.is_null()),
            ) {
                (None, None) => None,
                (Some(_), Some(_)) => Some((
                    required_param(params, "app_cert_sn")?.trim().to_owned(),
                    required_param(params, "alipay_root_cert_sn")?
                        .trim()
                        .to_owned(),
                )),
                _ => return Err(invalid(
                    "app_cert_sn and alipay_root_cert_sn go together (public-key-certificate mode)"
                        .into(),
                )),
            },
        })
    }

    /// The common parameters plus `biz_content`, signed.
    fn signed_params(
        &self,
        method: &str,
        biz_content: &Value,
        notify_url: Option<&str>,
    ) -> BTreeMap<String, String> {
        let mut params = BTreeMap::new();
        let now = Utc::now().with_timezone(&beijing());
        for (key, value) in [
            ("app_id", self.app_id.as_str()),
            ("method", method),
            ("format", "JSON"),
            ("charset", "utf-8"),
            ("sign_type", "RSA2"),
            ("version", "1.0"),
        ] {
            params.insert(key.to_owned(), value.to_owned());
        }
        params.insert(
            "timestamp".into(),
            now.format("%Y-%m-%d %H:%M:%S").to_string(),
        );
        params.insert("biz_content".into(), biz_content.to_string());
        if let Some(url) = notify_url {
            params.insert("notify_url".into(), url.to_owned());
        }
        if let Some(token) = &self.app_auth_token {
            params.insert("app_auth_token".into(), token.to_string());
        }
        if let Some((app_cert_sn, alipay_root_cert_sn)) = &self.cert_sns {
            params.insert("app_cert_sn".into(), app_cert_sn.clone());
            params.insert("alipay_root_cert_sn".into(), alipay_root_cert_sn.clone());
        }
        let content = wire::sign_content(&params, &["sign"]);
        params.insert(
            "sign".into(),
            self.app_private_key.sign_base64(content.as_bytes()),
        );
        params
    }

    /// Calls the gateway and answers the verified business answer, whatever its code.
    async fn call(
        &self,
        http: &HttpClient,
        method: &str,
        biz_content: &Value,
        notify_url: Option<&str>,
    ) -> Result<Value, GatewayError> {
        let params = self.signed_params(method, biz_content, notify_url);
        let body = serde_urlencoded::to_string(&params).expect("strings encode");
        let answer = http
            .post(
                &self.gateway_url,
                &[(
                    "content-type",
                    "application/x-www-form-urlencoded;charset=utf-8".to_owned(),
                )],
                body.into_bytes(),
            )
            .await
            .map_err(|error| unavailable(format!("alipay {method}: {error}")))?;
        if answer.status != 200 {
            return Err(unavailable(format!(
                "alipay {method}: HTTP {}",
                answer.status
            )));
        }
        let text = String::from_utf8(answer.body)
            .map_err(|_| unavailable(format!("alipay {method}: answer is not UTF-8")))?;
        let node_name = format!("{}_response", method.replace('.', "_"));
        let envelope: Value = serde_json::from_str(&text)
            .map_err(|_| unavailable(format!("alipay {method}: answer is not JSON")))?;
        let Some(span) = wire::object_span(&text, &node_name) else {
            let message = envelope["error_response"]["sub_msg"]
                .as_str()
                .or(envelope["error_response"]["msg"].as_str())
                .unwrap_or("no answer node");
            return Err(unavailable(format!("alipay {method}: {message}")));
        };
        let node: Value = serde_json::from_str(span)
            .map_err(|_| unavailable(format!("alipay {method}: answer node is not JSON")))?;
        // An error answer before the app is known (bad app id, bad signature) is unsigned.
        let signature = envelope["sign"].as_str().unwrap_or("");
        if signature.is_empty() && node["code"].as_str() != Some(CODE_SUCCESS) {
            return Err(unavailable(format!(
                "alipay {method}: {} {}",
                node["code"].as_str().unwrap_or("?"),
                node["sub_msg"]
                    .as_str()
                    .or(node["msg"].as_str())
                    .unwrap_or("")
            )));
        }
        if !self
            .alipay_public_key
            .verify_base64(span.as_bytes(), signature)
        {
            return Err(unavailable(format!(
                "alipay {method}: the answer's signature does not verify"
            )));
        }
        Ok(node)
    }
}

/// A transfer's state as Alipay answers it (`status`: SUCCESS, DEALING, FAIL, ...).
fn transfer_status(node: &Value) -> TransferStatus {
    match node["status"].as_str() {
        Some("SUCCESS") => TransferStatus::Succeeded {
            channel_payout_no: node["order_id"].as_str().map(str::to_owned),
        },
        Some("FAIL") | Some("REFUND") | Some("CLOSED") => TransferStatus::Failed {
            reason: node["fail_reason"]
                .as_str()
                .or(node["error_code"].as_str())
                .unwrap_or("FAIL")
                .to_owned(),
        },
        _ => TransferStatus::Pending,
    }
}

/// `"12.34"` in the currency's major unit, as Alipay writes amounts.
fn yuan(amount: Money) -> String {
    amount.to_major_string()
}

/// A business answer that is not a success, as an error.
fn business_error(method: &str, node: &Value) -> GatewayError {
    unavailable(format!(
        "alipay {method}: {} {} {}",
        node["code"].as_str().unwrap_or("?"),
        node["sub_code"].as_str().unwrap_or(""),
        node["sub_msg"]
            .as_str()
            .or(node["msg"].as_str())
            .unwrap_or("")
    ))
}

/// A create call's business error: a refusal (no trade exists at Alipay) unless Alipay says
/// its own system failed, when the trade's state is unknown.
fn creation_error(method: &str, node: &Value) -> GatewayError {
    match business_error(method, node) {
        GatewayError::Unavailable { reason } if sub_code(node) != "ACQ.SYSTEM_ERROR" => {
            GatewayError::Refused { reason }
        }
        other => other,
    }
}

fn sub_code(node: &Value) -> &str {
    node["sub_code"].as_str().unwrap_or("")
}

/// The Alipay channel.
pub struct AlipayChannel {
    http: HttpClient,
    accounts: AccountCache<Account>,
}

impl AlipayChannel {
    /// An adapter calling the channel through `http` (the process's guarded outbound
    /// client, with the channel timeout).
    pub fn new(http: HttpClient) -> AlipayChannel {
        AlipayChannel {
            http,
            accounts: AccountCache::default(),
        }
    }

    /// `alipay.fund.trans.common.query` of the transfer `out_biz_no`: its answer, or `None`
    /// when Alipay has no such transfer.
    async fn transfer_query(
        &self,
        account: &Account,
        out_biz_no: &str,
    ) -> Result<Option<Value>, GatewayError> {
        let method = "alipay.fund.trans.common.query";
        let node = account
            .call(
                &self.http,
                method,
                &json!({
                    "out_biz_no": out_biz_no,
                    "product_code": "TRANS_ACCOUNT_NO_PWD",
                    "biz_scene": "DIRECT_TRANSFER",
                }),
                None,
            )
            .await?;
        if node["code"].as_str() == Some(CODE_SUCCESS) {
            return Ok(Some(node));
        }
        if sub_code(&node) == "ORDER_NOT_EXIST" {
            return Ok(None);
        }
        Err(business_error(method, &node))
    }

    /// Binds or unbinds one royalty receiver (`method`): a business refusal is `Refused`.
    async fn royalty_relation(
        &self,
        method: &str,
        params: &Value,
        receiver: &Receiver,
    ) -> Result<(), GatewayError> {
        let account = self.accounts.get_or_parse(params, Account::parse)?;
        let mut entry = json!({ "type": receiver.kind, "account": receiver.account });
        if let Some(name) = &receiver.name {
            entry["name"] = json!(name.expose());
        }
        let biz = json!({
            "receiver_list": [entry],
            "out_request_no": format!("rel{}", hex::encode(rand::random::<[u8; 12]>())),
        });
        let node = account.call(&self.http, method, &biz, None).await?;
        if node["code"].as_str() == Some(CODE_SUCCESS) {
            return Ok(());
        }
        Err(match business_error(method, &node) {
            GatewayError::Unavailable { reason } if sub_code(&node) != "ACQ.SYSTEM_ERROR" => {
                GatewayError::Refused { reason }
            }
            other => other,
        })
    }

    fn signed_url(account: &Account, params: &BTreeMap<String, String>) -> String {
        format!(
            "{}?{}",
            account.gateway_url,
            serde_urlencoded::to_string(params).expect("strings encode")
        )
    }
}

impl PaymentChannel for AlipayChannel {
    fn channel(&self) -> Channel {
        Channel::Alipay
    }

    fn supported_invoke_methods(&self) -> &'static [InvokeMethod] {
        METHODS
    }

    fn required_payment_fields(&self, invoke_method: InvokeMethod) -> &'static [&'static str] {
        match invoke_method {
            InvokeMethod::MiniProgram => &["payer_id"],
            _ => &[],
        }
    }

    fn supported_currencies(&self) -> Option<&'static [Currency]> {
        Some(&[Currency::CNY])
    }

    fn param_names(&self) -> &'static [&'static str] {
        PARAM_NAMES
    }

    fn sub_merchant_param_names(&self) -> &'static [&'static str] {
        SUB_MERCHANT_PARAM_NAMES
    }

    fn validate_sub_merchant_params(&self, params: &Value) -> Result<Value, GatewayError> {
        crate::sub_merchant_ids(params, SUB_MERCHANT_PARAM_NAMES, SUB_MERCHANT_PARAM_NAMES)
    }

    fn receiver_kinds(&self) -> &'static [&'static str] {
        &["loginName", "userId"]
    }

    fn shares_at_channel(&self) -> bool {
        true
    }

    fn share_payment<'a>(
        &'a self,
        params: &'a Value,
        order: &'a ChannelOrder,
        share_id: &'a str,
        lines: &'a [ShareLine],
    ) -> BoxFuture<'a, Result<ShareResult, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let trade_no = order
                .channel_trade_no
                .as_ref()
                .ok_or_else(|| unavailable("alipay settle: the payment has no trade_no"))?;
            let method = "alipay.trade.order.settle";
            let biz = json!({
                // The same out_request_no is the same settlement at Alipay.
                "out_request_no": share_id,
                "trade_no": trade_no,
                "royalty_parameters": lines.iter().map(|line| json!({
                    "royalty_type": "transfer",
                    "trans_in_type": line.receiver.kind,
                    "trans_in": line.receiver.account,
                    "amount": yuan(line.amount),
                    "desc": line.description,
                })).collect::<Vec<_>>(),
                // The rest is unfrozen for the merchant.
                "extend_params": { "royalty_finish": "true" },
            });
            let node = account.call(&self.http, method, &biz, None).await?;
            if node["code"].as_str() == Some(CODE_SUCCESS) {
                return Ok(ShareResult::Shared {
                    channel_share_no: node["settle_no"].as_str().map(str::to_owned),
                });
            }
            if node["code"].as_str() == Some("40004") && sub_code(&node) != "ACQ.SYSTEM_ERROR" {
                return Ok(ShareResult::Failed {
                    reason: format!(
                        "{} {}",
                        sub_code(&node),
                        node["sub_msg"].as_str().unwrap_or("")
                    ),
                });
            }
            Err(business_error(method, &node))
        })
    }

    fn returns_shares_within_refund(&self) -> bool {
        true
    }

    fn bind_receiver<'a>(
        &'a self,
        params: &'a Value,
        receiver: &'a Receiver,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(self.royalty_relation("alipay.trade.royalty.relation.bind", params, receiver))
    }

    fn unbind_receiver<'a>(
        &'a self,
        params: &'a Value,
        receiver: &'a Receiver,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(self.royalty_relation("alipay.trade.royalty.relation.unbind", params, receiver))
    }

    fn verify_sub_merchant<'a>(
        &'a self,
        params: &'a Value,
    ) -> BoxFuture<'a, Result<serde_json::Map<String, Value>, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let Some(token) = &account.app_auth_token else {
                return Err(GatewayError::InvalidParams {
                    reason: "app_auth_token is required".into(),
                });
            };
            let method = "alipay.open.auth.token.app.query";
            let node = account
                .call(
                    &self.http,
                    method,
                    &json!({ "app_auth_token": token.as_str() }),
                    None,
                )
                .await?;
            let auth_app_id = node["auth_app_id"].as_str().unwrap_or("");
            if node["code"].as_str() != Some(CODE_SUCCESS)
                || node["status"].as_str() != Some("valid")
                || auth_app_id.is_empty()
            {
                return Err(GatewayError::InvalidParams {
                    reason: format!(
                        "Alipay does not know this app_auth_token as valid for the provider's app: {} {}",
                        node["sub_code"].as_str().or(node["status"].as_str()).unwrap_or("?"),
                        node["sub_msg"].as_str().unwrap_or("")
                    ),
                });
            }
            let mut learned = serde_json::Map::new();
            learned.insert("auth_app_id".into(), json!(auth_app_id));
            Ok(learned)
        })
    }

    fn validate_params(&self, params: &Value) -> Result<Value, GatewayError> {
        refuse_unknown_params(params, PARAM_NAMES)?;
        let account = self.accounts.get_or_parse(params, Account::parse)?;
        let mut normalized = json!({
            "app_id": account.app_id,
            "app_private_key": required_param(params, "app_private_key")?.trim(),
            "alipay_public_key": required_param(params, "alipay_public_key")?.trim(),
        });
        if params.get("gateway_url").is_some() {
            normalized["gateway_url"] = json!(account.gateway_url);
        }
        if let Some((app_cert_sn, alipay_root_cert_sn)) = &account.cert_sns {
            normalized["app_cert_sn"] = json!(app_cert_sn);
            normalized["alipay_root_cert_sn"] = json!(alipay_root_cert_sn);
        }
        Ok(normalized)
    }

    fn payout_receiver_kinds(&self) -> &'static [&'static str] {
        &["alipay_login", "alipay_user_id"]
    }

    fn transfer<'a>(
        &'a self,
        params: &'a Value,
        transfer: &'a Transfer,
    ) -> BoxFuture<'a, Result<TransferStatus, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            if account.cert_sns.is_none() {
                return Err(GatewayError::Refused {
                    reason: "Alipay pays out only in public-key-certificate mode: give the account app_cert_sn and alipay_root_cert_sn".into(),
                });
            }
            // Asked again after a lost answer or a restart: the same out_biz_no answers where
            // that transfer stands.
            if let Some(found) = self.transfer_query(&account, &transfer.payout_id).await? {
                return Ok(transfer_status(&found));
            }
            let identity_type = match transfer.receiver_kind {
                "alipay_login" => "ALIPAY_LOGON_ID",
                _ => "ALIPAY_USER_ID",
            };
            let mut payee = json!({
                "identity": transfer.receiver_account,
                "identity_type": identity_type,
            });
            if let Some(name) = &transfer.receiver_name {
                payee["name"] = json!(name.expose());
            }
            let method = "alipay.fund.trans.uni.transfer";
            let node = account
                .call(
                    &self.http,
                    method,
                    &json!({
                        "out_biz_no": transfer.payout_id,
                        "trans_amount": yuan(transfer.amount),
                        "product_code": "TRANS_ACCOUNT_NO_PWD",
                        "biz_scene": "DIRECT_TRANSFER",
                        "order_title": transfer.remark,
                        "payee_info": payee,
                    }),
                    None,
                )
                .await?;
            if node["code"].as_str() == Some(CODE_SUCCESS) {
                return Ok(transfer_status(&node));
            }
            if node["code"].as_str() == Some("40004") && sub_code(&node) != "SYSTEM_ERROR" {
                return Ok(TransferStatus::Failed {
                    reason: format!(
                        "{} {}",
                        sub_code(&node),
                        node["sub_msg"].as_str().unwrap_or("")
                    ),
                });
            }
            Err(business_error(method, &node))
        })
    }

    fn query_transfer<'a>(
        &'a self,
        params: &'a Value,
        transfer: &'a Transfer,
    ) -> BoxFuture<'a, Result<Option<TransferAtChannel>, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let Some(found) = self.transfer_query(&account, &transfer.payout_id).await? else {
                return Ok(None);
            };
            let amount = found["trans_amount"]
                .as_str()
                .and_then(|text| Money::parse_positive(text, Currency::CNY).ok())
                .ok_or_else(|| unavailable("alipay transfer query: no trans_amount"))?;
            Ok(Some(TransferAtChannel {
                status: transfer_status(&found),
                amount,
            }))
        })
    }

    fn create_payment<'a>(
        &'a self,
        params: &'a Value,
        request: &'a CreatePayment,
    ) -> BoxFuture<'a, Result<Initiated, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let time_expire = beijing()
                .timestamp_opt(request.expires_at_unix, 0)
                .single()
                .ok_or_else(|| unavailable("expiry out of range"))?
                .format("%Y-%m-%d %H:%M:%S")
                .to_string();
            let mut biz = json!({
                "out_trade_no": request.trade_no,
                "total_amount": yuan(request.amount),
                "subject": request.subject,
                "time_expire": time_expire,
            });
            if request.profit_sharing {
                // Held back at Alipay until alipay.trade.order.settle pays the receivers.
                biz["extend_params"] = json!({ "royalty_freeze": "true" });
            }
            if request.invoke_method == InvokeMethod::MiniProgram {
                // alipay.trade.create charges a known buyer.
                let buyer_id =
                    request
                        .payer_id
                        .as_deref()
                        .ok_or(GatewayError::MissingPaymentField {
                            channel: "alipay",
                            invoke_method: "mini_program",
                            field: "payer_id",
                        })?;
                biz["buyer_id"] = json!(buyer_id);
            }
            let notify_url = Some(request.notify_url.as_str());
            let (method, product_code) = match request.invoke_method {
                InvokeMethod::Pc => ("alipay.trade.page.pay", Some("FAST_INSTANT_TRADE_PAY")),
                InvokeMethod::Wap => ("alipay.trade.wap.pay", Some("QUICK_WAP_WAY")),
                InvokeMethod::App => ("alipay.trade.app.pay", Some("QUICK_MSECURITY_PAY")),
                InvokeMethod::NativeQr => ("alipay.trade.precreate", None),
                InvokeMethod::MiniProgram => ("alipay.trade.create", Some("JSAPI_PAY")),
                other => {
                    return Err(crate::check_invoke_method(self, other).unwrap_err());
                }
            };
            if let Some(code) = product_code {
                biz["product_code"] = json!(code);
            }
            let action = match request.invoke_method {
                InvokeMethod::Pc | InvokeMethod::Wap => PaymentAction::RedirectUrl {
                    url: Self::signed_url(
                        &account,
                        &account.signed_params(method, &biz, notify_url),
                    ),
                },
                InvokeMethod::App => PaymentAction::AppParams {
                    params: json!({
                        "order_string": serde_urlencoded::to_string(
                            account.signed_params(method, &biz, notify_url)
                        ).expect("strings encode"),
                    }),
                },
                InvokeMethod::NativeQr => {
                    let node = account.call(&self.http, method, &biz, notify_url).await?;
                    if node["code"].as_str() != Some(CODE_SUCCESS) {
                        return Err(creation_error(method, &node));
                    }
                    let qr_code = node["qr_code"]
                        .as_str()
                        .ok_or_else(|| unavailable("alipay precreate answered no qr_code"))?;
                    PaymentAction::QrCode {
                        qr_code: qr_code.to_owned(),
                    }
                }
                _ => {
                    let node = account.call(&self.http, method, &biz, notify_url).await?;
                    if node["code"].as_str() != Some(CODE_SUCCESS) {
                        return Err(creation_error(method, &node));
                    }
                    let trade_no = node["trade_no"]
                        .as_str()
                        .ok_or_else(|| unavailable("alipay create answered no trade_no"))?;
                    PaymentAction::JsapiParams {
                        params: json!({ "trade_no": trade_no }),
                    }
                }
            };
            Ok(Initiated {
                action,
                channel_reference: None,
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
            let method = "alipay.trade.close";
            let node = account
                .call(
                    &self.http,
                    method,
                    &json!({ "out_trade_no": order.trade_no }),
                    None,
                )
                .await?;
            // A trade the user never opened does not exist at Alipay: nothing to close.
            if node["code"].as_str() == Some(CODE_SUCCESS)
                || sub_code(&node) == "ACQ.TRADE_NOT_EXIST"
            {
                return Ok(());
            }
            Err(business_error(method, &node))
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
            let method = "alipay.trade.refund";
            let mut biz = json!({
                "out_trade_no": order.trade_no,
                "refund_amount": yuan(amount),
                // The same out_request_no is the same refund at Alipay.
                "out_request_no": refund_id,
            });
            if !order.share_returns.is_empty() {
                // Each receiver gives its share of the refund back within the refund.
                biz["refund_royalty_parameters"] = json!(order
                    .share_returns
                    .iter()
                    .map(|line| json!({
                        "royalty_type": "transfer",
                        "trans_out_type": line.receiver.kind,
                        "trans_out": line.receiver.account,
                        "amount": yuan(line.amount),
                    }))
                    .collect::<Vec<_>>());
            }
            let node = account.call(&self.http, method, &biz, None).await?;
            match node["code"].as_str() {
                Some(CODE_SUCCESS) => Ok(RefundStatus::Succeeded {
                    channel_refund_no: refund_id.to_string(),
                }),
                // 40004: a business refusal (not refundable, amount too large, ...).
                Some("40004") => Ok(RefundStatus::Failed {
                    reason: format!(
                        "{} {}",
                        sub_code(&node),
                        node["sub_msg"].as_str().unwrap_or("")
                    ),
                }),
                // 20000 and the rest: unknown outcome; asked again later with the same id.
                _ => Err(business_error(method, &node)),
            }
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
            let method = "alipay.trade.fastpay.refund.query";
            let node = account
                .call(
                    &self.http,
                    method,
                    &json!({ "out_trade_no": order.trade_no, "out_request_no": refund_id }),
                    None,
                )
                .await?;
            if node["code"].as_str() != Some(CODE_SUCCESS) {
                return Err(business_error(method, &node));
            }
            Ok(match node["refund_status"].as_str() {
                Some("REFUND_SUCCESS") => RefundStatus::Succeeded {
                    channel_refund_no: refund_id.to_string(),
                },
                _ => RefundStatus::Pending,
            })
        })
    }

    fn query_payment<'a>(
        &'a self,
        params: &'a Value,
        order: &'a ChannelOrder,
    ) -> BoxFuture<'a, Result<ChannelPaymentStatus, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let method = "alipay.trade.query";
            let node = account
                .call(
                    &self.http,
                    method,
                    &json!({ "out_trade_no": order.trade_no }),
                    None,
                )
                .await?;
            if node["code"].as_str() != Some(CODE_SUCCESS) {
                if sub_code(&node) == "ACQ.TRADE_NOT_EXIST" {
                    return Ok(ChannelPaymentStatus::NotFound);
                }
                return Err(business_error(method, &node));
            }
            Ok(match node["trade_status"].as_str() {
                Some("TRADE_SUCCESS") | Some("TRADE_FINISHED") => {
                    let channel_trade_no = node["trade_no"]
                        .as_str()
                        .and_then(|text| ChannelTradeNo::parse(text).ok())
                        .ok_or_else(|| unavailable("alipay query answered no usable trade_no"))?;
                    let amount = node["total_amount"]
                        .as_str()
                        .and_then(|text| Money::parse_positive(text, Currency::CNY).ok())
                        .ok_or_else(|| unavailable("alipay query answered no usable amount"))?;
                    ChannelPaymentStatus::Paid {
                        channel_trade_no,
                        amount,
                    }
                }
                Some("TRADE_CLOSED") => ChannelPaymentStatus::Closed,
                // WAIT_BUYER_PAY and anything unknown: not decided yet.
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
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let method = "alipay.data.dataservice.bill.downloadurl.query";
            let node = account
                .call(
                    &self.http,
                    method,
                    &json!({ "bill_type": "trade", "bill_date": day.format("%Y-%m-%d").to_string() }),
                    None,
                )
                .await?;
            if node["code"].as_str() != Some(CODE_SUCCESS) {
                return Err(business_error(method, &node));
            }
            let url = node["bill_download_url"]
                .as_str()
                .ok_or_else(|| unavailable("alipay answered no bill_download_url"))?;
            let answer = self
                .http
                .get(url, &[])
                .await
                .map_err(|error| unavailable(format!("alipay bill download: {error}")))?;
            if answer.status != 200 {
                return Err(unavailable(format!(
                    "alipay bill download: HTTP {}",
                    answer.status
                )));
            }
            crate::bills::alipay_zip(&answer.body).map_err(unavailable)
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
        let form = wire::parse_form(&request.body).ok_or_else(|| rejected("body is not a form"))?;
        let signature = form
            .get("sign")
            .ok_or_else(|| rejected("the notify has no sign"))?;
        if form.get("sign_type").is_some_and(|kind| kind != "RSA2") {
            return Err(rejected("sign_type must be RSA2"));
        }
        let content = wire::sign_content(&form, &["sign", "sign_type"]);
        if !account
            .alipay_public_key
            .verify_base64(content.as_bytes(), signature)
        {
            return Err(rejected("the notify's signature does not verify"));
        }
        if form.get("app_id") != Some(&account.app_id) {
            return Err(rejected("the notify is for another app_id"));
        }
        // A sub-merchant's notify names the app its token authorized: one sub-merchant's
        // notify never settles another's payment, though one provider signs for both.
        if let Some(auth_app_id) = &account.auth_app_id {
            if form.get("auth_app_id") != Some(auth_app_id) {
                return Err(rejected("the notify is for another sub-merchant"));
            }
        }
        let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
        // A transfer's change (a payout), as Alipay's message service sends it: its fields in
        // `biz_content`, signed with the rest of the form.
        if field("msg_method") == "alipay.fund.trans.order.changed" {
            let biz: Value = serde_json::from_str(field("biz_content"))
                .map_err(|_| rejected("biz_content is not JSON"))?;
            let payout_id = biz["out_biz_no"]
                .as_str()
                .filter(|id| id.starts_with("po_") && id.len() <= 64)
                .ok_or_else(|| rejected("bad out_biz_no"))?;
            return Ok(CallbackNotice::PayoutReported {
                payout_id: payout_id.to_owned(),
                status: transfer_status(&biz),
            });
        }
        // Refund notifies carry out_biz_no; paycenter learns refunds from the refund call.
        if !field("out_biz_no").is_empty() || !field("refund_fee").is_empty() {
            return Ok(CallbackNotice::Unknown {
                kind: "refund".into(),
            });
        }
        let trade_no =
            TradeNo::parse(field("out_trade_no")).map_err(|_| rejected("bad out_trade_no"))?;
        Ok(match field("trade_status") {
            "TRADE_SUCCESS" | "TRADE_FINISHED" => CallbackNotice::PaymentSucceeded {
                trade_no,
                channel_trade_no: ChannelTradeNo::parse(field("trade_no"))
                    .map_err(|_| rejected("bad trade_no"))?,
                amount: Money::parse_positive(field("total_amount"), Currency::CNY)
                    .map_err(|_| rejected("bad total_amount"))?,
            },
            // WAIT_BUYER_PAY, TRADE_CLOSED (paycenter closes trades itself) and the unknown.
            other => CallbackNotice::Unknown {
                kind: other.chars().take(64).collect(),
            },
        })
    }

    fn callback_answer(&self, accepted: bool) -> CallbackAnswer {
        // Alipay stops retrying only on the exact body `success`.
        CallbackAnswer {
            status: if accepted { 200 } else { 400 },
            content_type: "text/plain",
            body: if accepted { "success" } else { "failure" }.to_owned(),
        }
    }
}
