//! Random, truncated and bit-flipped callbacks never panic, and whatever a channel accepts
//! reports exactly what the genuine callback reported: a forged or damaged callback can never
//! record anything else.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Key, Nonce};
use base64::Engine;
use paycenter_gateway::alipay::AlipayChannel;
use paycenter_gateway::rsa_sha256::PrivateKey;
use paycenter_gateway::stripe::StripeChannel;
use paycenter_gateway::wechatpay::WechatpayChannel;
use paycenter_gateway::{CallbackNotice, CallbackRequest, PaymentChannel};
use proptest::prelude::*;

fn client() -> paycenter_gateway::http::HttpClient {
    paycenter_gateway::http::HttpClient::new(&Default::default(), 1_000).unwrap()
}
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde_json::json;

const TRADE_NO: &str = "202611220000000000000000000042";

fn key_pair() -> (String, String) {
    let key = rsa::RsaPrivateKey::new(&mut rand::thread_rng(), 2048).unwrap();
    (
        key.to_pkcs8_pem(LineEnding::LF).unwrap().to_string(),
        key.to_public_key()
            .to_public_key_pem(LineEnding::LF)
            .unwrap(),
    )
}

/// A channel, its account parameters, and one genuine callback.
struct Case {
    channel: Box<dyn PaymentChannel>,
    params: serde_json::Value,
    request: CallbackRequest,
}

fn alipay_case() -> Case {
    let (app_private, _) = key_pair();
    let (alipay_private, alipay_public) = key_pair();
    let params = json!({"app_id": "2021000000000001", "app_private_key": app_private, "alipay_public_key": alipay_public});
    let fields = [
        ("app_id", "2021000000000001"),
        ("out_trade_no", TRADE_NO),
        ("total_amount", "12.50"),
        ("trade_no", "2026112222001400000000000001"),
        ("trade_status", "TRADE_SUCCESS"),
    ];
    let content = fields
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join("&");
    let sign = PrivateKey::parse(&alipay_private)
        .unwrap()
        .sign_base64(content.as_bytes());
    let mut form: Vec<(&str, &str)> = fields.to_vec();
    form.push(("sign_type", "RSA2"));
    form.push(("sign", &sign));
    Case {
        channel: Box::new(AlipayChannel::new(client())),
        params,
        request: CallbackRequest {
            headers: vec![(
                "content-type".into(),
                "application/x-www-form-urlencoded".into(),
            )],
            body: serde_urlencoded::to_string(&form).unwrap().into_bytes(),
        },
    }
}

fn wechatpay_case() -> Case {
    let (merchant_private, _) = key_pair();
    let (platform_private, platform_public) = key_pair();
    let api_v3_key = "0123456789abcdef0123456789abcdef";
    let params = json!({
        "mchid": "1900000109", "appid": "wx8888888888888888", "merchant_serial_no": "SERIAL",
        "merchant_private_key": merchant_private, "api_v3_key": api_v3_key,
        "platform_public_key": platform_public, "platform_public_key_id": "PUB_KEY_ID_1",
    });
    let plain = json!({"mchid": "1900000109", "out_trade_no": TRADE_NO, "transaction_id": "4200000000000000000000000001",
        "trade_state": "SUCCESS", "amount": {"total": 1250, "currency": "CNY"}}).to_string();
    let cipher = Aes256Gcm::new(Key::<Aes256Gcm>::from_slice(api_v3_key.as_bytes()));
    let ciphertext = cipher
        .encrypt(
            Nonce::from_slice(b"abcdefghijkl"),
            Payload {
                msg: plain.as_bytes(),
                aad: b"transaction",
            },
        )
        .unwrap();
    let body = json!({"id": "n1", "event_type": "TRANSACTION.SUCCESS", "resource_type": "encrypt-resource",
        "resource": {"algorithm": "AEAD_AES_256_GCM", "nonce": "abcdefghijkl", "associated_data": "transaction",
            "ciphertext": base64::engine::general_purpose::STANDARD.encode(ciphertext)}}).to_string();
    let timestamp = chrono::Utc::now().timestamp().to_string();
    let signature = PrivateKey::parse(&platform_private)
        .unwrap()
        .sign_base64(format!("{timestamp}\nnonce1\n{body}\n").as_bytes());
    Case {
        channel: Box::new(WechatpayChannel::new(client())),
        params,
        request: CallbackRequest {
            headers: vec![
                ("wechatpay-timestamp".into(), timestamp),
                ("wechatpay-nonce".into(), "nonce1".into()),
                ("wechatpay-signature".into(), signature),
                ("wechatpay-serial".into(), "PUB_KEY_ID_1".into()),
            ],
            body: body.into_bytes(),
        },
    }
}

fn stripe_case() -> Case {
    let body = json!({"id": "evt_1", "type": "payment_intent.succeeded", "data": {"object": {
        "id": "pi_123", "amount": 1250, "amount_received": 1250, "currency": "usd", "metadata": {"trade_no": TRADE_NO}}}})
    .to_string();
    let header = paycenter_gateway::signing::signature_header(
        b"whsec_fuzz",
        chrono::Utc::now().timestamp(),
        body.as_bytes(),
    );
    Case {
        channel: Box::new(StripeChannel::new(client())),
        params: json!({"secret_key": "sk_test_fuzz", "webhook_secret": "whsec_fuzz"}),
        request: CallbackRequest {
            headers: vec![("stripe-signature".into(), header)],
            body: body.into_bytes(),
        },
    }
}

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(usize),
    FlipByte(usize, u8),
    DropHeader(usize),
    CorruptHeader(usize, usize, u8),
    Garbage(Vec<u8>),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1u8..=255).prop_map(|(at, bits)| Mutation::FlipByte(at, bits)),
        any::<usize>().prop_map(Mutation::DropHeader),
        (any::<usize>(), any::<usize>(), 1u8..=255)
            .prop_map(|(h, at, bits)| Mutation::CorruptHeader(h, at, bits)),
        proptest::collection::vec(any::<u8>(), 0..512).prop_map(Mutation::Garbage),
    ]
}

fn mutate(request: &CallbackRequest, mutation: &Mutation) -> CallbackRequest {
    let mut request = request.clone();
    match mutation {
        Mutation::Truncate(at) => request.body.truncate(at % (request.body.len() + 1)),
        Mutation::FlipByte(at, bits) => {
            let at = at % request.body.len();
            request.body[at] ^= bits;
        }
        Mutation::DropHeader(index) => {
            let index = index % request.headers.len();
            request.headers.remove(index);
        }
        Mutation::CorruptHeader(index, at, bits) => {
            let index = index % request.headers.len();
            let mut bytes = request.headers[index].1.clone().into_bytes();
            if !bytes.is_empty() {
                let at = at % bytes.len();
                bytes[at] ^= bits;
            }
            request.headers[index].1 = String::from_utf8_lossy(&bytes).into_owned();
        }
        Mutation::Garbage(bytes) => request.body = bytes.clone(),
    }
    request
}

fn check(case: &Case, mutations: &[Mutation]) -> Result<(), TestCaseError> {
    let genuine = case
        .channel
        .verify_callback(&case.params, &case.request)
        .unwrap();
    prop_assert!(
        matches!(genuine, CallbackNotice::PaymentSucceeded { .. }),
        "{genuine:?}"
    );
    for mutation in mutations {
        let damaged = mutate(&case.request, mutation);
        match case.channel.verify_callback(&case.params, &damaged) {
            Err(_) => {}
            // Accepted only when it says exactly what the genuine one did (say, a flip inside
            // an unsigned header of no consequence).
            Ok(notice) => prop_assert_eq!(&notice, &genuine, "{:?} was accepted", mutation),
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn damaged_alipay_notifies_record_nothing_else(mutations in proptest::collection::vec(mutation(), 1..8)) {
        thread_local!(static CASE: Case = alipay_case());
        CASE.with(|case| check(case, &mutations))?;
    }

    #[test]
    fn damaged_wechatpay_notifies_record_nothing_else(mutations in proptest::collection::vec(mutation(), 1..8)) {
        thread_local!(static CASE: Case = wechatpay_case());
        CASE.with(|case| check(case, &mutations))?;
    }

    #[test]
    fn damaged_stripe_webhooks_record_nothing_else(mutations in proptest::collection::vec(mutation(), 1..8)) {
        thread_local!(static CASE: Case = stripe_case());
        CASE.with(|case| check(case, &mutations))?;
    }
}
