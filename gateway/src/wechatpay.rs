//! WeChat Pay, API v3: JSON over HTTPS, requests signed `WECHATPAY2-SHA256-RSA2048` with the
//! merchant's private key, answers and notifies signed by WeChat Pay, and notify resources
//! encrypted with AES-256-GCM under the merchant's APIv3 key.
//!
//! WeChat Pay signs in one of two ways, and an account may use both while it moves from one to
//! the other: with the platform public key (`platform_public_key` and its id `PUB_KEY_ID_...`),
//! or with platform certificates downloaded from `/v3/certificates` ([`certificates`]). Every
//! answer and notify names its signer in `Wechatpay-Serial`; an account given no public key is
//! in certificate mode.
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

pub(crate) mod certificates;

use self::certificates::{
    CertificateCache, CertificateSet, Freshness, MerchantKey, PlatformCertificate,
    MAX_CERTIFICATES_PER_DOWNLOAD,
};
use crate::account_cache::AccountCache;
use crate::http::{HttpAnswer, HttpClient};
use crate::rsa_sha256::{PrivateKey, PublicKey};
use crate::{
    gateway_url_param, refuse_unknown_params, required_param, unavailable, url_param, BillRow,
    BoxFuture, CallbackAnswer, CallbackNotice, CallbackRequest, ChannelOrder, ChannelPaymentStatus,
    CreatePayment, GatewayError, Initiated, PaymentAction, PaymentChannel, Receiver, RefundStatus,
    ShareLine, ShareResult, Transfer, TransferAtChannel, TransferConfirmation, TransferStatus,
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
    "oauth_app_secret",
    "oauth_url",
    "oauth_api_url",
    "transfer_scene_id",
    "transfer_scene_report_infos",
];

/// A sub-merchant's parameters: the ids WeChat Pay assigned it under its service provider.
const SUB_MERCHANT_PARAM_NAMES: &[&str] = &["sub_mchid", "sub_appid"];

/// WeChat's OAuth pages (where a person inside WeChat is sent to be identified).
const DEFAULT_OAUTH_URL: &str = "https://open.weixin.qq.com";
/// WeChat's OAuth API (where a code becomes an `openid`).
const DEFAULT_OAUTH_API_URL: &str = "https://api.weixin.qq.com";

/// The official account's OAuth (`snsapi_base`), when the account has its AppSecret: how
/// paycenter learns a payer's `openid` inside WeChat for a JSAPI payment.
struct OAuth {
    app_secret: zeroize::Zeroizing<String>,
    authorize_url: String,
    api_url: String,
}

/// The platform public key and its id (`PUB_KEY_ID_...`), as the merchant copied them.
struct PlatformPublicKey {
    key: PublicKey,
    id: String,
}

/// A channel account's parameters, parsed.
struct Account {
    mchid: String,
    appid: String,
    merchant_serial_no: String,
    merchant_private_key: PrivateKey,
    api_v3_key: zeroize::Zeroizing<[u8; 32]>,
    /// `None`: the account verifies with platform certificates only.
    platform_public_key: Option<PlatformPublicKey>,
    gateway_url: String,
    /// `None`: the account identifies no payer (the cashier shows WeChat's QR inside WeChat).
    oauth: Option<OAuth>,
    /// Set when the call is for a sub-merchant: the account is then its service provider
    /// (`mchid`, `appid` are `sp_mchid`, `sp_appid`) and the partner endpoints are used.
    sub_merchant: Option<SubMerchant>,
    /// The merchant transfer scene WeChat Pay granted (`None`: the account pays nothing out).
    transfer_scene: Option<TransferScene>,
}

/// A merchant transfer scene: its id and the report lines WeChat Pay asks of it (for scene
/// 1000, `活动名称` and `奖励说明`).
struct TransferScene {
    id: String,
    report_infos: Vec<Value>,
}

impl TransferScene {
    fn parse(params: &Value) -> Result<Option<TransferScene>, GatewayError> {
        let invalid = |reason: &str| GatewayError::InvalidParams {
            reason: reason.to_owned(),
        };
        let Some(id) = params
            .get("transfer_scene_id")
            .filter(|value| !value.is_null())
        else {
            if params
                .get("transfer_scene_report_infos")
                .is_some_and(|value| !value.is_null())
            {
                return Err(invalid(
                    "transfer_scene_report_infos needs transfer_scene_id",
                ));
            }
            return Ok(None);
        };
        let id = id
            .as_str()
            .map(str::trim)
            .filter(|id| !id.is_empty() && id.len() <= 16 && id.bytes().all(|b| b.is_ascii_digit()))
            .ok_or_else(|| invalid("transfer_scene_id must be WeChat Pay's numeric scene id"))?;
        let report_infos = match params
            .get("transfer_scene_report_infos")
            .filter(|value| !value.is_null())
        {
            None => Vec::new(),
            Some(text) => {
                let lines: Vec<Value> = text
                    .as_str()
                    .and_then(|text| serde_json::from_str(text).ok())
                    .ok_or_else(|| {
                        invalid("transfer_scene_report_infos must be a JSON array text of {info_type, info_content}")
                    })?;
                let well_formed =
                    lines.len() <= 8
                        && lines.iter().all(|line| {
                            line.as_object().is_some_and(|fields| {
                                fields.len() == 2
                                    && ["info_type", "info_content"].iter().all(|name| {
                                        fields.get(*name).and_then(Value::as_str).is_some_and(
                                            |text| !text.is_empty() && text.chars().count() <= 64,
                                        )
                                    })
                            })
                        });
                if !well_formed {
                    return Err(invalid("transfer_scene_report_infos: at most 8 objects of exactly info_type and info_content (1 to 64 characters each)"));
                }
                lines
            }
        };
        Ok(Some(TransferScene {
            id: id.to_owned(),
            report_infos,
        }))
    }
}

/// A payout's `out_bill_no`: WeChat Pay takes letters and digits only, so the payout id
/// without its `po_`.
fn out_bill_no(payout_id: &str) -> &str {
    payout_id.strip_prefix("po_").unwrap_or(payout_id)
}

/// A transfer bill's state in paycenter's words. A bill waiting for the user is waiting only
/// when the answer carries the package the user confirms with (a query does not).
fn transfer_bill_status(account: &Account, bill: &Value) -> TransferStatus {
    let channel_payout_no = bill["transfer_bill_no"].as_str().map(str::to_owned);
    match bill["state"].as_str() {
        Some("SUCCESS") => TransferStatus::Succeeded { channel_payout_no },
        Some(state @ ("FAIL" | "CANCELLED")) => TransferStatus::Failed {
            reason: bill["fail_reason"]
                .as_str()
                .filter(|reason| !reason.is_empty())
                .unwrap_or(state)
                .to_owned(),
        },
        Some("WAIT_USER_CONFIRM") => match bill["package_info"].as_str() {
            Some(package_info) => TransferStatus::AwaitingConfirmation(TransferConfirmation {
                channel_payout_no,
                package_info: package_info.to_owned(),
                channel_merchant_id: account.mchid.clone(),
                channel_app_id: account.appid.clone(),
            }),
            None => TransferStatus::Pending,
        },
        _ => TransferStatus::Pending,
    }
}

/// A sub-merchant under a WeChat Pay service provider (partner mode).
struct SubMerchant {
    sub_mchid: String,
    /// The sub-merchant's own official account or mini program, when payers are identified
    /// under it (`sub_openid`); else payers are the provider's (`sp_openid`).
    sub_appid: Option<String>,
}

fn nonce() -> String {
    Alphanumeric.sample_string(&mut rand::thread_rng(), 32)
}

/// The `Wechatpay-*` headers of a signed answer or notify.
struct SignedHeaders {
    timestamp: String,
    nonce: String,
    signature: String,
    serial: String,
}

impl SignedHeaders {
    fn read(header: &dyn Fn(&str) -> Option<String>) -> Result<SignedHeaders, String> {
        Ok(SignedHeaders {
            timestamp: header("wechatpay-timestamp").ok_or("no Wechatpay-Timestamp header")?,
            nonce: header("wechatpay-nonce").ok_or("no Wechatpay-Nonce header")?,
            signature: header("wechatpay-signature").ok_or("no Wechatpay-Signature header")?,
            serial: header("wechatpay-serial").ok_or("no Wechatpay-Serial header")?,
        })
    }

    /// Checks the timestamp and the signature over the body with `key` (the key the serial
    /// names, or `None` when no key by that serial is known and valid).
    fn verify(&self, key: Option<&PublicKey>, body: &[u8], now_unix: i64) -> Result<(), String> {
        let Some(key) = key else {
            return Err(format!("signed with an unknown key {:?}", self.serial));
        };
        let timestamp_unix: i64 = self
            .timestamp
            .parse()
            .map_err(|_| "bad Wechatpay-Timestamp")?;
        if (now_unix - timestamp_unix).abs() > TIMESTAMP_TOLERANCE_SECONDS {
            return Err("Wechatpay-Timestamp outside the tolerance".into());
        }
        let body = std::str::from_utf8(body).map_err(|_| "body is not UTF-8")?;
        let message = format!("{}\n{}\n{body}\n", self.timestamp, self.nonce);
        if !key.verify_base64(message.as_bytes(), &self.signature) {
            return Err("signature does not verify".into());
        }
        Ok(())
    }
}

/// Opens an AEAD_AES_256_GCM envelope (a notify's `resource`, a certificate's
/// `encrypt_certificate`) with the APIv3 key.
fn open_envelope(api_v3_key: &[u8; 32], envelope: &Value) -> Result<Vec<u8>, String> {
    if envelope["algorithm"].as_str() != Some("AEAD_AES_256_GCM") {
        return Err("envelope algorithm is not AEAD_AES_256_GCM".into());
    }
    let ciphertext = base64::engine::general_purpose::STANDARD
        .decode(envelope["ciphertext"].as_str().unwrap_or(""))
        .map_err(|_| "envelope ciphertext is not base64")?;
    let nonce = envelope["nonce"].as_str().unwrap_or("");
    if nonce.len() != 12 {
        return Err("envelope nonce must be 12 bytes".into());
    }
    let associated_data = envelope["associated_data"].as_str().unwrap_or("");
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(api_v3_key));
    cipher
        .decrypt(
            Nonce::from_slice(nonce.as_bytes()),
            Payload {
                msg: &ciphertext,
                aad: associated_data.as_bytes(),
            },
        )
        .map_err(|_| "envelope does not decrypt under the APIv3 key".into())
}

impl Account {
    fn parse(params: &Value) -> Result<Account, GatewayError> {
        let invalid = |reason: String| GatewayError::InvalidParams { reason };
        let api_v3_key = required_param(params, "api_v3_key")?;
        let api_v3_key: [u8; 32] = api_v3_key
            .as_bytes()
            .try_into()
            .map_err(|_| invalid("api_v3_key must be 32 characters".into()))?;
        let present = |name: &str| params.get(name).is_some_and(|value| !value.is_null());
        let platform_public_key = match (
            present("platform_public_key"),
            present("platform_public_key_id"),
        ) {
            (false, false) => None,
            (true, true) => Some(PlatformPublicKey {
                key: PublicKey::parse(required_param(params, "platform_public_key")?).map_err(
                    |reason| invalid(format!("platform_public_key: {reason}")),
                )?,
                id: required_param(params, "platform_public_key_id")?.to_owned(),
            }),
            _ => {
                return Err(invalid(
                    "platform_public_key and platform_public_key_id go together (leave both out to verify with platform certificates)"
                        .into(),
                ))
            }
        };
        Ok(Account {
            mchid: required_param(params, "mchid")?.to_owned(),
            appid: required_param(params, "appid")?.to_owned(),
            merchant_serial_no: required_param(params, "merchant_serial_no")?.to_owned(),
            merchant_private_key: PrivateKey::parse(required_param(
                params,
                "merchant_private_key",
            )?)
            .map_err(|reason| invalid(format!("merchant_private_key: {reason}")))?,
            api_v3_key: zeroize::Zeroizing::new(api_v3_key),
            platform_public_key,
            gateway_url: gateway_url_param(params, DEFAULT_GATEWAY_URL)?,
            oauth: match params
                .get("oauth_app_secret")
                .filter(|value| !value.is_null())
            {
                None => None,
                Some(_) => Some(OAuth {
                    app_secret: zeroize::Zeroizing::new(
                        required_param(params, "oauth_app_secret")?
                            .trim()
                            .to_owned(),
                    ),
                    authorize_url: url_param(params, "oauth_url", DEFAULT_OAUTH_URL)?,
                    api_url: url_param(params, "oauth_api_url", DEFAULT_OAUTH_API_URL)?,
                }),
            },
            sub_merchant: match params.get("sub_mchid").filter(|value| !value.is_null()) {
                None => None,
                Some(_) => Some(SubMerchant {
                    sub_mchid: required_param(params, "sub_mchid")?.to_owned(),
                    sub_appid: params
                        .get("sub_appid")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                }),
            },
            transfer_scene: TransferScene::parse(params)?,
        })
    }

    /// The app id a payer's `openid` and the payment's signature belong to: the
    /// sub-merchant's own where it has one, else the account's (the provider's).
    fn payer_appid(&self) -> &str {
        self.sub_merchant
            .as_ref()
            .and_then(|sub| sub.sub_appid.as_deref())
            .unwrap_or(&self.appid)
    }

    /// `?sub_mchid=...` (or `&...` after an existing query) for a sub-merchant's GET paths.
    fn sub_mchid_query(&self, separator: char) -> String {
        self.sub_merchant
            .as_ref()
            .map(|sub| format!("{separator}sub_mchid={}", sub.sub_mchid))
            .unwrap_or_default()
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

    /// Sends a signed request; answers what came back, unverified.
    async fn send(
        &self,
        http: &HttpClient,
        method: &str,
        path_and_query: &str,
        body_text: String,
        signer_serial: Option<String>,
    ) -> Result<HttpAnswer, GatewayError> {
        let mut headers = vec![
            (
                "authorization",
                self.authorization(method, path_and_query, &body_text),
            ),
            ("accept", "application/json".to_owned()),
            ("content-type", "application/json".to_owned()),
            ("user-agent", "paycenter".to_owned()),
        ];
        if let Some(serial) = signer_serial {
            headers.push(("wechatpay-serial", serial));
        }
        let url = format!("{}{path_and_query}", self.gateway_url);
        let answer = http
            .send(method, &url, &headers, body_text.into_bytes())
            .await
            .map_err(|error| unavailable(format!("wechatpay {path_and_query}: {error}")))?;
        if answer.status >= 500 {
            return Err(unavailable(format!(
                "wechatpay {path_and_query}: HTTP {}",
                answer.status
            )));
        }
        Ok(answer)
    }

    /// Decrypts a notify's `resource` with the APIv3 key.
    fn decrypt_resource(&self, resource: &Value) -> Result<Value, String> {
        let plaintext = open_envelope(&self.api_v3_key, resource)?;
        serde_json::from_slice(&plaintext).map_err(|_| "decrypted resource is not JSON".into())
    }

    fn merchant_key(&self) -> MerchantKey {
        MerchantKey {
            gateway_url: self.gateway_url.clone(),
            mchid: self.mchid.clone(),
        }
    }

    /// Whether `serial` names the platform public key (no certificate needed).
    fn is_public_key_serial(&self, serial: &str) -> bool {
        self.platform_public_key
            .as_ref()
            .is_some_and(|public| public.id == serial)
    }
}

/// Reads a `/v3/certificates` answer: every certificate opened with the APIv3 key and parsed,
/// its serial checked against the one listed beside it.
fn read_certificates(
    api_v3_key: &[u8; 32],
    body: &Value,
) -> Result<Vec<PlatformCertificate>, String> {
    let listed = body["data"]
        .as_array()
        .ok_or("the certificates answer has no data")?;
    if listed.is_empty() || listed.len() > MAX_CERTIFICATES_PER_DOWNLOAD {
        return Err(format!(
            "the certificates answer lists {} certificates",
            listed.len()
        ));
    }
    listed
        .iter()
        .map(|item| {
            let pem = open_envelope(api_v3_key, &item["encrypt_certificate"])
                .map_err(|why| format!("certificate: {why}"))?;
            let certificate = PlatformCertificate::parse_pem(&pem)?;
            let listed_serial = item["serial_no"].as_str().unwrap_or("");
            if certificates::normalize_serial(listed_serial) != certificate.serial_no {
                return Err(format!(
                    "certificate listed as {listed_serial:?} has serial {}",
                    certificate.serial_no
                ));
            }
            Ok(certificate)
        })
        .collect()
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
    accounts: AccountCache<Account>,
    certificates: CertificateCache,
}

impl WechatpayChannel {
    /// An adapter calling the channel through `http` (the process's guarded outbound
    /// client, with the channel timeout).
    pub fn new(http: HttpClient) -> WechatpayChannel {
        WechatpayChannel {
            http,
            accounts: AccountCache::default(),
            certificates: CertificateCache::default(),
        }
    }

    /// Calls the API; answers the status and the JSON body (`null` when empty) once the
    /// answer's signature verifies.
    async fn call(
        &self,
        account: &Account,
        method: &str,
        path_and_query: &str,
        body: Option<&Value>,
    ) -> Result<(u16, Value), GatewayError> {
        let body_text = body.map(Value::to_string).unwrap_or_default();
        self.ensure_certificates(account, None).await;
        let answer = account
            .send(
                &self.http,
                method,
                path_and_query,
                body_text,
                self.signer_serial(account),
            )
            .await?;
        let refused = |why: String| {
            unavailable(format!(
                "wechatpay {path_and_query}: HTTP {} answer refused: {why}",
                answer.status
            ))
        };
        let header = |name: &str| answer.header(name).map(str::to_owned);
        let signed = SignedHeaders::read(&header).map_err(refused)?;
        self.ensure_certificates(account, Some(&signed.serial))
            .await;
        let now_unix = Utc::now().timestamp();
        let key = self.verifying_key(account, &signed.serial, now_unix);
        signed
            .verify(key.as_ref(), &answer.body, now_unix)
            .map_err(refused)?;
        let value = if answer.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&answer.body).map_err(|_| {
                unavailable(format!("wechatpay {path_and_query}: answer is not JSON"))
            })?
        };
        Ok((answer.status, value))
    }

    /// A receiver as `receivers/add` and `receivers/delete` name it: the account's app (and,
    /// in partner mode, the sub-merchant) with the receiver's type and account.
    fn receiver_body(&self, account: &Account, receiver: &Receiver) -> Value {
        let mut body = json!({
            "appid": account.appid,
            "type": receiver.kind,
            "account": receiver.account,
        });
        if let Some(sub) = &account.sub_merchant {
            body["sub_mchid"] = json!(sub.sub_mchid);
            if let Some(sub_appid) = &sub.sub_appid {
                if receiver.kind == "PERSONAL_OPENID" {
                    // A personal openid under the sub-merchant's own app.
                    body["sub_appid"] = json!(sub_appid);
                }
            }
        }
        body
    }

    /// `text` sealed (RSA-OAEP) under the platform key the requests' `Wechatpay-Serial` names,
    /// as WeChat Pay wants names sent.
    async fn seal_for_platform(
        &self,
        account: &Account,
        text: &str,
    ) -> Result<String, GatewayError> {
        self.ensure_certificates(account, None).await;
        let now_unix = Utc::now().timestamp();
        let key = self
            .signer_serial(account)
            .and_then(|serial| self.verifying_key(account, &serial, now_unix))
            .ok_or_else(|| unavailable("wechatpay: no platform key to seal the name"))?;
        key.encrypt_oaep_base64(text.as_bytes())
            .map_err(unavailable)
    }

    /// `GET .../transfer-bills/out-bill-no/{no}`: the bill, or `None` when WeChat Pay has none.
    async fn transfer_bill(
        &self,
        account: &Account,
        payout_id: &str,
    ) -> Result<Option<Value>, GatewayError> {
        let path = format!(
            "/v3/fund-app/mch-transfer/transfer-bills/out-bill-no/{}",
            out_bill_no(payout_id)
        );
        let (status, answer) = self.call(account, "GET", &path, None).await?;
        match status {
            200 => Ok(Some(answer)),
            404 => Ok(None),
            _ => Err(unavailable(format!(
                "wechatpay transfer query: {}",
                error_text(status, &answer)
            ))),
        }
    }

    /// The serial sent as `Wechatpay-Serial`: the platform public key's id, else the newest
    /// platform certificate at hand.
    fn signer_serial(&self, account: &Account) -> Option<String> {
        if let Some(public) = &account.platform_public_key {
            return Some(public.id.clone());
        }
        let set = self.certificates.get(&account.merchant_key())?;
        set.newest_serial(Utc::now().timestamp()).map(str::to_owned)
    }

    /// The key that verifies a signature by `serial` at `now_unix`, if any is known.
    fn verifying_key(&self, account: &Account, serial: &str, now_unix: i64) -> Option<PublicKey> {
        if let Some(public) = account
            .platform_public_key
            .as_ref()
            .filter(|public| public.id == serial)
        {
            return Some(public.key.clone());
        }
        let set = self.certificates.get(&account.merchant_key())?;
        set.key_for(serial, now_unix).cloned()
    }

    /// Downloads the account's platform certificates when it uses them and they are missing,
    /// due for refresh, or lack `serial`. A failed download is logged and leaves the set at
    /// hand; the verification that follows says what is missing.
    async fn ensure_certificates(&self, account: &Account, serial: Option<&str>) {
        if account.platform_public_key.is_some()
            && serial.is_none_or(|serial| account.is_public_key_serial(serial))
        {
            return;
        }
        let merchant = account.merchant_key();
        if self
            .certificates
            .freshness(&merchant, serial, Utc::now().timestamp())
            != Freshness::Download
        {
            return;
        }
        let _turn = self.certificates.download_turn().await;
        let attempted_at_unix = Utc::now().timestamp();
        if self
            .certificates
            .freshness(&merchant, serial, attempted_at_unix)
            != Freshness::Download
        {
            return;
        }
        match self.download_certificates(account).await {
            Ok(set) => {
                tracing::info!(
                    mchid = %account.mchid,
                    refresh_at_unix = set.refresh_at_unix(),
                    "wechatpay platform certificates downloaded"
                );
                self.certificates
                    .record_download(&merchant, attempted_at_unix, Some(set));
            }
            Err(why) => {
                let why = why.to_string();
                tracing::warn!(mchid = %account.mchid, %why, "wechatpay platform certificates not downloaded");
                self.certificates
                    .record_download(&merchant, attempted_at_unix, None);
            }
        }
    }

    /// `GET /v3/certificates`: the certificates, opened with the APIv3 key (which vouches for
    /// them), and the answer's signature checked with the certificate it names.
    ///
    /// A channel that cannot be reached is `Unavailable`; an answer that refuses the account
    /// (a 4xx), or certificates that do not open under the APIv3 key or do not verify, make the
    /// account's parameters wrong: `InvalidParams`.
    async fn download_certificates(
        &self,
        account: &Account,
    ) -> Result<CertificateSet, GatewayError> {
        const PATH: &str = "/v3/certificates";
        let refused = |reason: String| GatewayError::InvalidParams {
            reason: format!("wechatpay {PATH}: {reason}"),
        };
        let fetched_at_unix = Utc::now().timestamp();
        let answer = account
            .send(&self.http, "GET", PATH, String::new(), None)
            .await?;
        let body: Value = serde_json::from_slice(&answer.body).map_err(|_| {
            unavailable(format!(
                "wechatpay {PATH}: HTTP {} answer is not JSON",
                answer.status
            ))
        })?;
        if answer.status != 200 {
            return Err(refused(error_text(answer.status, &body)));
        }
        let certificates = read_certificates(&account.api_v3_key, &body).map_err(refused)?;
        let header = |name: &str| answer.header(name).map(str::to_owned);
        let signed = SignedHeaders::read(&header).map_err(refused)?;
        let now_unix = Utc::now().timestamp();
        let key = account
            .platform_public_key
            .as_ref()
            .filter(|public| public.id == signed.serial)
            .map(|public| &public.key)
            .or_else(|| {
                certificates
                    .iter()
                    .find(|certificate| {
                        certificate.serial_no == certificates::normalize_serial(&signed.serial)
                    })
                    .map(|certificate| &certificate.public_key)
            });
        signed
            .verify(key, &answer.body, now_unix)
            .map_err(|why| refused(format!("answer refused: {why}")))?;
        Ok(CertificateSet::new(fetched_at_unix, certificates))
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

    fn credentials_expire_at(&self, params: &Value) -> Option<i64> {
        let account = self.accounts.get_or_parse(params, Account::parse).ok()?;
        let set = self.certificates.get(&account.merchant_key())?;
        set.newest_not_after(chrono::Utc::now().timestamp())
    }

    fn param_names(&self) -> &'static [&'static str] {
        PARAM_NAMES
    }

    fn sub_merchant_param_names(&self) -> &'static [&'static str] {
        SUB_MERCHANT_PARAM_NAMES
    }

    fn receiver_kinds(&self) -> &'static [&'static str] {
        &["MERCHANT_ID", "PERSONAL_OPENID"]
    }

    fn payout_receiver_kinds(&self) -> &'static [&'static str] {
        &["wechat_openid"]
    }

    /// The merchant transfer (`/v3/fund-app/mch-transfer/transfer-bills`), in its
    /// user-confirmation form: WeChat Pay answers `WAIT_USER_CONFIRM` and a `package_info`
    /// that the receiving user confirms in WeChat; the outcome comes by notify or query.
    fn transfer<'a>(
        &'a self,
        params: &'a Value,
        transfer: &'a Transfer,
    ) -> BoxFuture<'a, Result<TransferStatus, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let refused = |reason: &str| GatewayError::Refused {
                reason: reason.to_owned(),
            };
            if account.sub_merchant.is_some() {
                return Err(refused("WeChat Pay's merchant transfer pays from a direct merchant's own account, not through a service provider"));
            }
            let Some(scene) = &account.transfer_scene else {
                return Err(refused("the account has no transfer_scene_id: give it the merchant transfer scene WeChat Pay granted"));
            };
            if transfer.amount.currency() != Currency::CNY {
                return Err(refused("WeChat Pay transfers CNY only"));
            }
            // Asked again after a lost answer or a restart: the same out_bill_no answers where
            // that transfer stands.
            if let Some(bill) = self.transfer_bill(&account, &transfer.payout_id).await? {
                return Ok(transfer_bill_status(&account, &bill));
            }
            let mut body = json!({
                "appid": account.appid,
                "out_bill_no": out_bill_no(&transfer.payout_id),
                "transfer_scene_id": scene.id,
                "openid": transfer.receiver_account,
                "transfer_amount": transfer.amount.amount_minor(),
                "transfer_remark": transfer.remark.chars().take(32).collect::<String>(),
                "notify_url": transfer.notify_url,
            });
            if !scene.report_infos.is_empty() {
                body["transfer_scene_report_infos"] = json!(scene.report_infos);
            }
            if let Some(name) = &transfer.receiver_name {
                body["user_name"] = json!(self.seal_for_platform(&account, name.expose()).await?);
            }
            let path = "/v3/fund-app/mch-transfer/transfer-bills";
            let (status, answer) = self.call(&account, "POST", path, Some(&body)).await?;
            match status {
                200 => Ok(transfer_bill_status(&account, &answer)),
                // Too many calls, or WeChat Pay's own trouble: nothing was decided.
                429 | 500..=599 => Err(unavailable(format!(
                    "wechatpay {path}: {}",
                    error_text(status, &answer)
                ))),
                _ => Ok(TransferStatus::Failed {
                    reason: format!("wechatpay {path}: {}", error_text(status, &answer)),
                }),
            }
        })
    }

    fn query_transfer<'a>(
        &'a self,
        params: &'a Value,
        transfer: &'a Transfer,
    ) -> BoxFuture<'a, Result<Option<TransferAtChannel>, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let Some(bill) = self.transfer_bill(&account, &transfer.payout_id).await? else {
                return Ok(None);
            };
            let amount = bill["transfer_amount"]
                .as_i64()
                .map(|minor| Money::from_minor(minor, Currency::CNY))
                .ok_or_else(|| unavailable("wechatpay transfer query: no transfer_amount"))?;
            Ok(Some(TransferAtChannel {
                status: transfer_bill_status(&account, &bill),
                amount,
            }))
        })
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
            let transaction_id = order
                .channel_trade_no
                .as_ref()
                .ok_or_else(|| unavailable("wechatpay share: the payment has no transaction_id"))?;
            // Asked again after a lost answer or a restart: the order may exist already.
            let query = format!(
                "/v3/profitsharing/orders/{share_id}?transaction_id={transaction_id}{}",
                account.sub_mchid_query('&')
            );
            let (status, answer) = self.call(&account, "GET", &query, None).await?;
            if status == 200 {
                return Ok(share_result(&answer));
            }
            if status != 404 {
                return Err(unavailable(format!(
                    "wechatpay share query: {}",
                    error_text(status, &answer)
                )));
            }
            let mut body = json!({
                "appid": account.appid,
                "transaction_id": transaction_id,
                "out_order_no": share_id,
                "receivers": lines.iter().map(|line| json!({
                    "type": line.receiver.kind,
                    "account": line.receiver.account,
                    "amount": line.amount.amount_minor(),
                    "description": line.description.chars().take(80).collect::<String>(),
                })).collect::<Vec<_>>(),
                // What is not shared goes to the merchant at once.
                "unfreeze_unsplit": true,
            });
            if let Some(sub) = &account.sub_merchant {
                body["sub_mchid"] = json!(sub.sub_mchid);
            }
            let path = "/v3/profitsharing/orders";
            let (status, answer) = self.call(&account, "POST", path, Some(&body)).await?;
            match status {
                200 => Ok(share_result(&answer)),
                400..=499 => Err(GatewayError::Refused {
                    reason: format!("wechatpay {path}: {}", error_text(status, &answer)),
                }),
                _ => Err(unavailable(format!(
                    "wechatpay {path}: {}",
                    error_text(status, &answer)
                ))),
            }
        })
    }

    fn return_share<'a>(
        &'a self,
        params: &'a Value,
        _order: &'a ChannelOrder,
        share_id: &'a str,
        return_id: &'a str,
        line: &'a ShareLine,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async move {
            if line.receiver.kind != "MERCHANT_ID" {
                return Err(GatewayError::Refused {
                    reason: "WeChat Pay takes shares back from merchant receivers only".into(),
                });
            }
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let mut body = json!({
                "out_order_no": share_id,
                "out_return_no": return_id,
                "return_mchid": line.receiver.account,
                "amount": line.amount.amount_minor(),
                "description": format!("refund {return_id}"),
            });
            if let Some(sub) = &account.sub_merchant {
                body["sub_mchid"] = json!(sub.sub_mchid);
            }
            let path = "/v3/profitsharing/return-orders";
            let (status, answer) = self.call(&account, "POST", path, Some(&body)).await?;
            refused_unless_ok(path, status, &answer)?;
            match answer["result"].as_str() {
                Some("SUCCESS") => Ok(()),
                Some("FAILED") => Err(GatewayError::Refused {
                    reason: format!(
                        "wechatpay return: {}",
                        answer["fail_reason"].as_str().unwrap_or("FAILED")
                    ),
                }),
                // PROCESSING: asked again, the same out_return_no answers where it stands.
                _ => Err(unavailable("wechatpay return: still processing")),
            }
        })
    }

    fn bind_receiver<'a>(
        &'a self,
        params: &'a Value,
        receiver: &'a Receiver,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let mut body = self.receiver_body(&account, receiver);
            // A merchant receiver is bound under its full name; WeChat Pay wants it sealed
            // under the platform key its Wechatpay-Serial names.
            if let Some(name) = &receiver.name {
                body["name"] = json!(self.seal_for_platform(&account, name.expose()).await?);
            } else if receiver.kind == "MERCHANT_ID" {
                return Err(GatewayError::Refused {
                    reason: "a MERCHANT_ID receiver needs its full name".into(),
                });
            }
            body["relation_type"] = json!("PARTNER");
            let path = "/v3/profitsharing/receivers/add";
            let (status, answer) = self.call(&account, "POST", path, Some(&body)).await?;
            refused_unless_ok(path, status, &answer)
        })
    }

    fn unbind_receiver<'a>(
        &'a self,
        params: &'a Value,
        receiver: &'a Receiver,
    ) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let body = self.receiver_body(&account, receiver);
            let path = "/v3/profitsharing/receivers/delete";
            let (status, answer) = self.call(&account, "POST", path, Some(&body)).await?;
            refused_unless_ok(path, status, &answer)
        })
    }

    fn validate_sub_merchant_params(&self, params: &Value) -> Result<Value, GatewayError> {
        let ids = crate::sub_merchant_ids(params, SUB_MERCHANT_PARAM_NAMES, &["sub_mchid"])?;
        if !required_param(&ids, "sub_mchid")?
            .bytes()
            .all(|b| b.is_ascii_digit())
        {
            return Err(GatewayError::InvalidParams {
                reason: "sub_mchid must be WeChat Pay's numeric merchant id".into(),
            });
        }
        Ok(ids)
    }

    fn validate_params(&self, params: &Value) -> Result<Value, GatewayError> {
        refuse_unknown_params(params, PARAM_NAMES)?;
        let account = self.accounts.get_or_parse(params, Account::parse)?;
        let mut normalized = json!({});
        for name in PARAM_NAMES {
            let optional = matches!(
                *name,
                "gateway_url"
                    | "platform_public_key"
                    | "platform_public_key_id"
                    | "oauth_app_secret"
                    | "oauth_url"
                    | "oauth_api_url"
                    | "transfer_scene_id"
                    | "transfer_scene_report_infos"
            );
            if optional && params.get(*name).is_none_or(Value::is_null) {
                continue;
            }
            normalized[*name] = json!(required_param(params, name)?.trim());
        }
        if params.get("gateway_url").is_some() {
            normalized["gateway_url"] = json!(account.gateway_url);
        }
        Ok(normalized)
    }

    fn payer_authorization_url(
        &self,
        params: &Value,
        redirect_uri: &str,
        state: &str,
    ) -> Option<String> {
        let account = self.accounts.get_or_parse(params, Account::parse).ok()?;
        let oauth = account.oauth.as_ref()?;
        let query = serde_urlencoded::to_string([
            ("appid", account.appid.as_str()),
            ("redirect_uri", redirect_uri),
            ("response_type", "code"),
            ("scope", "snsapi_base"),
            ("state", state),
        ])
        .ok()?;
        Some(format!(
            "{}/connect/oauth2/authorize?{query}#wechat_redirect",
            oauth.authorize_url
        ))
    }

    fn payer_id_from_code<'a>(
        &'a self,
        params: &'a Value,
        code: &'a str,
    ) -> BoxFuture<'a, Result<String, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let oauth = account
                .oauth
                .as_ref()
                .ok_or_else(|| unavailable("this account has no oauth_app_secret"))?;
            let query = serde_urlencoded::to_string([
                ("appid", account.appid.as_str()),
                ("secret", oauth.app_secret.as_str()),
                ("code", code),
                ("grant_type", "authorization_code"),
            ])
            .map_err(|error| unavailable(error.to_string()))?;
            let answer = self
                .http
                .get(
                    &format!("{}/sns/oauth2/access_token?{query}", oauth.api_url),
                    &[],
                )
                .await
                .map_err(unavailable)?;
            let body: Value = serde_json::from_slice(&answer.body)
                .map_err(|_| unavailable("wechat oauth answered no JSON"))?;
            if let Some(errcode) = body
                .get("errcode")
                .and_then(Value::as_i64)
                .filter(|code| *code != 0)
            {
                return Err(unavailable(format!(
                    "wechat oauth refused the code: {errcode} {}",
                    body.get("errmsg").and_then(Value::as_str).unwrap_or("")
                )));
            }
            body.get("openid")
                .and_then(Value::as_str)
                .filter(|openid| (1..=128).contains(&openid.len()))
                .map(str::to_owned)
                .ok_or_else(|| unavailable("wechat oauth answered no openid"))
        })
    }

    fn verify_account<'a>(&'a self, params: &'a Value) -> BoxFuture<'a, Result<(), GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            if account.platform_public_key.is_some() {
                // Public-key mode: nothing to fetch; the first answer is verified with the key.
                return Ok(());
            }
            let attempted_at_unix = Utc::now().timestamp();
            let set = self.download_certificates(&account).await?;
            self.certificates.record_download(
                &account.merchant_key(),
                attempted_at_unix,
                Some(set),
            );
            Ok(())
        })
    }

    fn create_payment<'a>(
        &'a self,
        params: &'a Value,
        request: &'a CreatePayment,
    ) -> BoxFuture<'a, Result<Initiated, GatewayError>> {
        Box::pin(async move {
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let missing = |field: &'static str| GatewayError::MissingPaymentField {
                channel: "wechatpay",
                invoke_method: request.invoke_method.as_str(),
                field,
            };
            let time_expire = FixedOffset::east_opt(8 * 3600)
                .expect("a valid offset")
                .timestamp_opt(request.expires_at_unix, 0)
                .single()
                .ok_or_else(|| unavailable("expiry out of range"))?
                .to_rfc3339();
            let mut body = json!({
                "description": request.subject.chars().take(127).collect::<String>(),
                "out_trade_no": request.trade_no,
                "time_expire": time_expire,
                "notify_url": request.notify_url,
                "amount": { "total": request.amount.amount_minor(), "currency": "CNY" },
            });
            if request.profit_sharing {
                // Held back at WeChat Pay until the profit-sharing order pays the receivers.
                body["settle_info"] = json!({ "profit_sharing": true });
            }
            // Partner mode: the provider's ids as sp_*, the sub-merchant's beside them.
            let (prefix, payer_field) = match &account.sub_merchant {
                None => {
                    body["appid"] = json!(account.appid);
                    body["mchid"] = json!(account.mchid);
                    ("/v3/pay/transactions", "openid")
                }
                Some(sub) => {
                    body["sp_appid"] = json!(account.appid);
                    body["sp_mchid"] = json!(account.mchid);
                    body["sub_mchid"] = json!(sub.sub_mchid);
                    if let Some(sub_appid) = &sub.sub_appid {
                        body["sub_appid"] = json!(sub_appid);
                    }
                    let payer_field = if sub.sub_appid.is_some() {
                        "sub_openid"
                    } else {
                        "sp_openid"
                    };
                    ("/v3/pay/partner/transactions", payer_field)
                }
            };
            let kind = match request.invoke_method {
                InvokeMethod::NativeQr | InvokeMethod::Pc => "native",
                InvokeMethod::Jsapi | InvokeMethod::MiniProgram => {
                    let openid = request
                        .payer_id
                        .as_deref()
                        .ok_or_else(|| missing("payer_id"))?;
                    body["payer"] = json!({ payer_field: openid });
                    "jsapi"
                }
                InvokeMethod::App => "app",
                InvokeMethod::Wap => {
                    let client_ip = request
                        .client_ip
                        .as_deref()
                        .ok_or_else(|| missing("client_ip"))?;
                    body["scene_info"] =
                        json!({ "payer_client_ip": client_ip, "h5_info": { "type": "Wap" } });
                    "h5"
                }
            };
            let path = &format!("{prefix}/{kind}");
            let (status, answer) = self.call(&account, "POST", path, Some(&body)).await?;
            if status != 200 {
                let reason = format!("wechatpay {path}: {}", error_text(status, &answer));
                // A signed 4xx is WeChat Pay refusing the order: no trade exists there. A 5xx
                // (SYSTEM_ERROR) leaves its state unknown.
                return Err(if (400..500).contains(&status) {
                    GatewayError::Refused { reason }
                } else {
                    unavailable(reason)
                });
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
                    let appid = account.payer_appid();
                    let message = format!("{appid}\n{timestamp}\n{nonce}\n{package}\n");
                    (
                        PaymentAction::JsapiParams {
                            params: json!({
                                "appId": appid,
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
                    let appid = account.payer_appid();
                    let message = format!("{appid}\n{timestamp}\n{nonce}\n{prepay_id}\n");
                    let partnerid = account
                        .sub_merchant
                        .as_ref()
                        .map_or(&account.mchid, |sub| &sub.sub_mchid);
                    (
                        PaymentAction::AppParams {
                            params: json!({
                                "appid": appid,
                                "partnerid": partnerid,
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
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let (path, body) = match &account.sub_merchant {
                None => (
                    format!("/v3/pay/transactions/out-trade-no/{}/close", order.trade_no),
                    json!({ "mchid": account.mchid }),
                ),
                Some(sub) => (
                    format!(
                        "/v3/pay/partner/transactions/out-trade-no/{}/close",
                        order.trade_no
                    ),
                    json!({ "sp_mchid": account.mchid, "sub_mchid": sub.sub_mchid }),
                ),
            };
            let (status, answer) = self.call(&account, "POST", &path, Some(&body)).await?;
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
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let mut body = json!({
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
            if let Some(sub) = &account.sub_merchant {
                body["sub_mchid"] = json!(sub.sub_mchid);
            }
            let (status, answer) = self
                .call(&account, "POST", "/v3/refund/domestic/refunds", Some(&body))
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
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let path = format!(
                "/v3/refund/domestic/refunds/{refund_id}{}",
                account.sub_mchid_query('?')
            );
            let (status, answer) = self.call(&account, "GET", &path, None).await?;
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
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let path = match &account.sub_merchant {
                None => format!(
                    "/v3/pay/transactions/out-trade-no/{}?mchid={}",
                    order.trade_no, account.mchid
                ),
                Some(sub) => format!(
                    "/v3/pay/partner/transactions/out-trade-no/{}?sp_mchid={}&sub_mchid={}",
                    order.trade_no, account.mchid, sub.sub_mchid
                ),
            };
            let (status, answer) = self.call(&account, "GET", &path, None).await?;
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
            let account = self.accounts.get_or_parse(params, Account::parse)?;
            let path = format!(
                "/v3/bill/tradebill?bill_date={}{}&bill_type=ALL",
                day.format("%Y-%m-%d"),
                account.sub_mchid_query('&')
            );
            let (status, answer) = self.call(&account, "GET", &path, None).await?;
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

    fn prepare_callback<'a>(
        &'a self,
        params: &'a Value,
        request: &'a CallbackRequest,
    ) -> BoxFuture<'a, ()> {
        Box::pin(async move {
            let (Ok(account), Some(serial)) = (
                self.accounts.get_or_parse(params, Account::parse),
                request.header("wechatpay-serial"),
            ) else {
                return;
            };
            self.ensure_certificates(&account, Some(serial)).await;
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
        let header = |name: &str| request.header(name).map(str::to_owned);
        let signed = SignedHeaders::read(&header).map_err(|why| rejected(&why))?;
        let now_unix = Utc::now().timestamp();
        let key = self.verifying_key(&account, &signed.serial, now_unix);
        signed
            .verify(key.as_ref(), &request.body, now_unix)
            .map_err(|why| rejected(&why))?;
        let notice: Value =
            serde_json::from_slice(&request.body).map_err(|_| rejected("body is not JSON"))?;
        let event_type = notice["event_type"].as_str().unwrap_or("");
        let resource = account
            .decrypt_resource(&notice["resource"])
            .map_err(|why| rejected(&why))?;
        // A notify names its merchant (`mchid`), or in partner mode its provider and
        // sub-merchant: a notify of one sub-merchant never settles another's payment.
        let names = |field: &str, expected: &str| {
            resource[field]
                .as_str()
                .is_none_or(|named| named == expected)
        };
        let ours = match &account.sub_merchant {
            // A transfer notify says `mch_id`.
            None => names("mchid", &account.mchid) && names("mch_id", &account.mchid),
            Some(sub) => {
                names("sp_mchid", &account.mchid)
                    && resource["sub_mchid"].as_str() == Some(sub.sub_mchid.as_str())
            }
        };
        if !ours {
            return Err(rejected("the notify is for another merchant"));
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
            "MCHTRANSFER.BILL.FINISHED" => {
                let no = field("out_bill_no");
                if no.len() != 32 || !no.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(rejected("bad out_bill_no"));
                }
                CallbackNotice::PayoutReported {
                    payout_id: format!("po_{no}"),
                    status: transfer_bill_status(&account, &resource),
                }
            }
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

/// A profit-sharing order's state: every receiver paid, one closed (refused), or not yet.
fn share_result(order: &Value) -> ShareResult {
    let receivers = order["receivers"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if let Some(closed) = receivers
        .iter()
        .find(|receiver| receiver["result"].as_str() == Some("CLOSED"))
    {
        return ShareResult::Failed {
            reason: format!(
                "receiver {} closed: {}",
                closed["account"].as_str().unwrap_or("?"),
                closed["fail_reason"].as_str().unwrap_or("?")
            ),
        };
    }
    let all_paid = !receivers.is_empty()
        && receivers
            .iter()
            .all(|receiver| receiver["result"].as_str() == Some("SUCCESS"));
    if order["state"].as_str() == Some("FINISHED") && all_paid {
        return ShareResult::Shared {
            channel_share_no: order["order_id"].as_str().map(str::to_owned),
        };
    }
    ShareResult::Pending
}

/// `Ok` on 200; a signed 4xx is WeChat Pay refusing (`Refused`), anything else unknown.
fn refused_unless_ok(path: &str, status: u16, answer: &Value) -> Result<(), GatewayError> {
    match status {
        200 | 204 => Ok(()),
        400..=499 => Err(GatewayError::Refused {
            reason: format!("wechatpay {path}: {}", error_text(status, answer)),
        }),
        _ => Err(unavailable(format!(
            "wechatpay {path}: {}",
            error_text(status, answer)
        ))),
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
