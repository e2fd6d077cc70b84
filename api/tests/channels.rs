//! The real channels against software paycenter did not write: Alipay's and WeChat Pay's
//! protocols against local fake gateways that check paycenter's signatures with the channels'
//! own Python SDKs (and sign with them), and Stripe against `localstripe` and the `stripe`
//! package. The SDKs live in a Python virtual environment that `.ci/run` creates: set
//! `PAYCENTER_TEST_PYTHON` to its interpreter (default `.venv/bin/python`). Without it these
//! tests print why they skipped, unless `PAYCENTER_REQUIRE_SDKS=1` makes that a failure.

use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::{json, Value};

mod support;

const ADMIN_TOKEN: &str = "admin-token-for-channel-tests";

use support::{acknowledging_webhook_sink as webhook_sink, Process};

/// The venv interpreter with every SDK importable, or `None` (skipped, said why).
fn python() -> Option<PathBuf> {
    support::python_with("alipay, alipay.aop.api, wechatpayv3, stripe, localstripe")
}

/// The certificates of every fake gateway in this test process: a CA made here, which
/// paycenter is told of (`PAYCENTER_CA_FILE`), and a certificate for `localhost`.
fn pki() -> &'static support::TestPki {
    static PKI: std::sync::OnceLock<support::TestPki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| support::TestPki::new(&["localhost", "127.0.0.1"]))
}

/// A fake gateway, over HTTPS, as real gateways are.
fn fake(python: &std::path::Path, script: &str) -> (Process, Value) {
    fake_with(python, script, &[])
}

/// A fake gateway with extra environment (its test switches).
fn fake_with(python: &std::path::Path, script: &str, env: &[(&str, &str)]) -> (Process, Value) {
    support::spawn_fake(python, script, pki(), env)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn start_paycenter(data_dir: &std::path::Path) -> (Process, String) {
    let ca_file = pki().ca_path.to_str().unwrap().to_owned();
    support::start_paycenter(
        data_dir,
        ADMIN_TOKEN,
        &[
            // Webhook receivers and fake gateways listen on loopback.
            ("PAYCENTER_ALLOW_PRIVATE_EGRESS", "1"),
            ("PAYCENTER_CA_FILE", &ca_file),
            ("PAYCENTER_MIN_ATTEMPT_INTERVAL_MS", "0"),
            ("PAYCENTER_SWEEP_AFTER_SECONDS", "2"),
            ("PAYCENTER_CHANNEL_TIMEOUT_MS", "5000"),
            ("RUST_LOG", "info"),
        ],
    )
}

fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    support::call_within(method, url, token, body, Duration::from_secs(15))
}

fn wait_for(what: &str, done: impl FnMut() -> bool) {
    support::wait_for_within(
        what,
        Duration::from_secs(30),
        Duration::from_millis(100),
        done,
    )
}

struct Shop {
    base: String,
    merchant_id: String,
    channel_account_id: String,
    api_key: String,
}

impl Shop {
    fn open(base: &str, channel: &str, params: Value) -> Shop {
        Shop::open_account(
            base,
            json!({"channel": channel, "params": params, "callback_ip_allowlist": ["127.0.0.0/8"]}),
        )
    }

    /// A merchant, its channel account as `account` asks, and an app of its own.
    fn open_account(base: &str, account: Value) -> Shop {
        let (status, merchant) = call(
            "POST",
            &format!("{base}/v1/merchants"),
            ADMIN_TOKEN,
            Some(json!({"name": "Tea House"})),
        );
        assert_eq!(status, 201, "{merchant}");
        let merchant_id = merchant["merchant_id"].as_str().unwrap().to_owned();
        let (status, account) = call(
            "POST",
            &format!("{base}/v1/merchants/{merchant_id}/channel-accounts"),
            ADMIN_TOKEN,
            Some(account),
        );
        assert_eq!(status, 201, "{account}");
        assert!(
            !account.to_string().contains("PRIVATE"),
            "no key comes back: {account}"
        );
        let (status, app) = call(
            "POST",
            &format!("{base}/v1/apps"),
            ADMIN_TOKEN,
            Some(
                json!({"name": "tea", "merchant_ids": [merchant_id], "notify_url": webhook_sink()}),
            ),
        );
        assert_eq!(status, 201, "{app}");
        Shop {
            base: base.to_owned(),
            merchant_id,
            channel_account_id: account["channel_account_id"].as_str().unwrap().to_owned(),
            api_key: app["api_key"].as_str().unwrap().to_owned(),
        }
    }

    fn pay(&self, order_no: &str, amount: &str, invoke_method: &str, extra: Value) -> (u16, Value) {
        let mut body = json!({
            "merchant_id": self.merchant_id, "channel_account_id": self.channel_account_id,
            "order_no": order_no, "amount": amount, "currency": "CNY",
            "invoke_method": invoke_method, "subject": "oolong tea",
        });
        for (key, value) in extra.as_object().unwrap() {
            body[key] = value.clone();
        }
        call(
            "POST",
            &format!("{}/v1/payments", self.base),
            &self.api_key,
            Some(body),
        )
    }

    /// A `native_qr` payment (with `extra` fields) that the fake gateway at `gateway` then
    /// marks paid and notifies: answers its trade number.
    fn paid_at_fake(&self, gateway: &str, order_no: &str, amount: &str, extra: Value) -> String {
        let (status, paying) = self.pay(order_no, amount, "native_qr", extra);
        assert_eq!(status, 201, "{paying}");
        let trade_no = paying["trade_no"].as_str().unwrap().to_owned();
        post_json(
            &format!("{gateway}/__control/pay"),
            json!({ "out_trade_no": trade_no }),
        );
        trade_no
    }

    fn payment(&self, trade_no: &str) -> Value {
        call(
            "GET",
            &format!("{}/v1/payments/{trade_no}", self.base),
            &self.api_key,
            None,
        )
        .1
    }

    fn wait_status(&self, trade_no: &str, status: &str) {
        wait_for(&format!("{trade_no} {status}"), || {
            self.payment(trade_no)["status"] == status
        });
    }

    fn refund(&self, trade_no: &str, refund_no: &str, amount: &str) -> Value {
        let (status, refund) = call(
            "POST",
            &format!("{}/v1/payments/{trade_no}/refunds", self.base),
            &self.api_key,
            Some(json!({"refund_no": refund_no, "amount": amount})),
        );
        assert_eq!(status, 201, "{refund}");
        refund
    }

    fn wait_refund_succeeded(&self, trade_no: &str) {
        wait_for("refund succeeded", || {
            self.payment(trade_no)["refunds"]
                .as_array()
                .is_some_and(|refunds| {
                    !refunds.is_empty()
                        && refunds.iter().all(|refund| refund["status"] == "succeeded")
                })
        });
    }

    /// Asks for a payout of `amount` CNY from this shop's account to `receiver`.
    fn payout(&self, payout_no: &str, amount: &str, receiver: Value) -> (u16, Value) {
        call(
            "POST",
            &format!("{}/v1/payouts", self.base),
            ADMIN_TOKEN,
            Some(
                json!({"merchant_id": self.merchant_id, "channel_account_id": self.channel_account_id,
                        "payout_no": payout_no, "amount": amount, "currency": "CNY", "receiver": receiver}),
            ),
        )
    }

    /// Reconciles today's bill: today in Beijing, the business day of Alipay's and WeChat
    /// Pay's bills (whatever the hour in UTC).
    fn reconcile_today(&self) -> Value {
        let beijing = chrono::FixedOffset::east_opt(8 * 3_600).unwrap();
        let today = chrono::Utc::now()
            .with_timezone(&beijing)
            .date_naive()
            .to_string();
        let (status, result) = call(
            "POST",
            &format!("{}/v1/reconciliations", self.base),
            ADMIN_TOKEN,
            Some(json!({"channel_account_id": self.channel_account_id, "date": today})),
        );
        assert_eq!(status, 201, "{result}");
        result
    }
}

fn post_json(url: &str, body: Value) -> Value {
    pki()
        .client()
        .post(url)
        .timeout(Duration::from_secs(20))
        .send_json(body)
        .unwrap()
        .into_json()
        .unwrap()
}

/// A fake gateway's start line made into account parameters: what it prints beside the keys
/// (its port, the sub-merchant ids it knows) is not a parameter.
fn strip_fake_fields(params: &mut Value) {
    let fields = params.as_object_mut().unwrap();
    for name in ["port", "sub_mchids", "app_auth_tokens"] {
        fields.remove(name);
    }
}

fn query_of(url: &str) -> String {
    url.split_once('?').unwrap().1.to_owned()
}

#[test]
fn alipay_speaks_rsa2_as_both_sdks_check_it() {
    let Some(python) = python() else { return };
    let (_gateway, keys) = fake(&python, "alipay_gateway.py");
    let gateway = format!("https://localhost:{}", keys["port"]);
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(dir.path());

    // Activation checks the keys: a wrong one is refused now, not at the first payment.
    let mut params = json!({
        "app_id": keys["app_id"], "app_private_key": keys["app_private_key"],
        "alipay_public_key": keys["alipay_public_key"], "gateway_url": format!("{gateway}/gateway.do"),
    });
    let (status, merchant) = call(
        "POST",
        &format!("{base}/v1/merchants"),
        ADMIN_TOKEN,
        Some(json!({"name": "x"})),
    );
    assert_eq!(status, 201);
    for (field, value) in [
        ("app_private_key", "MIIBroken"),
        ("alipay_public_key", "not a key"),
        ("app_id", "abc"),
    ] {
        let mut wrong = params.clone();
        wrong[field] = json!(value);
        let (status, answer) = call(
            "POST",
            &format!(
                "{base}/v1/merchants/{}/channel-accounts",
                merchant["merchant_id"].as_str().unwrap()
            ),
            ADMIN_TOKEN,
            Some(json!({"channel": "alipay", "params": wrong})),
        );
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some("invalid_channel_params")),
            "{field}: {answer}"
        );
    }
    let shop = Shop::open(&base, "alipay", params.take());

    // The request parser: every supported method, and clear refusals.
    let (status, answer) = shop.pay("o-jsapi", "1.00", "jsapi", json!({}));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("unsupported_invoke_method")),
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("pc, wap, app, native_qr, mini_program"),
        "{answer}"
    );
    let (status, answer) = shop.pay("o-usd", "1.00", "pc", json!({"currency": "USD"}));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("unsupported_currency")),
        "{answer}"
    );
    let (status, answer) = shop.pay("o-mini", "1.00", "mini_program", json!({}));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("missing_channel_field")),
        "{answer}"
    );

    let (status, pc) = shop.pay("o-pc", "12.50", "pc", json!({}));
    assert_eq!(status, 201, "{pc}");
    assert_eq!(pc["action"]["type"], "redirect_url");
    let url = pc["action"]["url"].as_str().unwrap();
    assert!(url.starts_with(&format!("{gateway}/gateway.do?")), "{url}");
    let verdict = post_json(
        &format!("{gateway}/__control/verify_query"),
        json!({"query": query_of(url)}),
    );
    assert_eq!(
        (
            verdict["python_sdk"].as_bool(),
            verdict["official_sdk"].as_bool()
        ),
        (Some(true), Some(true)),
        "{verdict}"
    );
    assert_eq!(verdict["params"]["method"], "alipay.trade.page.pay");
    assert_eq!(verdict["params"]["sign_type"], "RSA2");

    let (status, wap) = shop.pay("o-wap", "3.00", "wap", json!({}));
    assert_eq!(status, 201, "{wap}");
    let verdict = post_json(
        &format!("{gateway}/__control/verify_query"),
        json!({"query": query_of(wap["action"]["url"].as_str().unwrap())}),
    );
    assert_eq!(verdict["params"]["method"], "alipay.trade.wap.pay");
    assert_eq!(verdict["python_sdk"], true);

    let (status, app) = shop.pay("o-app", "8.00", "app", json!({}));
    assert_eq!(status, 201, "{app}");
    assert_eq!(app["action"]["type"], "app_params");
    let order_string = app["action"]["params"]["order_string"].as_str().unwrap();
    let verdict = post_json(
        &format!("{gateway}/__control/verify_query"),
        json!({"query": order_string}),
    );
    assert_eq!(
        (
            verdict["python_sdk"].as_bool(),
            verdict["official_sdk"].as_bool()
        ),
        (Some(true), Some(true)),
        "{verdict}"
    );

    let (status, qr) = shop.pay("o-qr", "5.00", "native_qr", json!({}));
    assert_eq!(status, 201, "{qr}");
    assert_eq!(qr["action"]["type"], "qr_code");
    assert!(qr["action"]["qr_code"]
        .as_str()
        .unwrap()
        .starts_with("https://qr.alipay.example/"));
    let (status, mini) = shop.pay(
        "o-mini",
        "2.00",
        "mini_program",
        json!({"payer_id": "2088102146225135"}),
    );
    assert_eq!(status, 201, "{mini}");
    assert_eq!(mini["action"]["type"], "jsapi_params");
    assert!(mini["action"]["params"]["trade_no"]
        .as_str()
        .unwrap()
        .starts_with("2026"));

    // A notify with one changed field is refused and records nothing.
    let pc_trade = pc["trade_no"].as_str().unwrap();
    let tampered = post_json(
        &format!("{gateway}/__control/pay"),
        json!({"out_trade_no": pc_trade, "tamper": true}),
    );
    assert_eq!(
        (tampered["status"].as_u64(), tampered["answer"].as_str()),
        (Some(400), Some("failure")),
        "{tampered}"
    );
    assert_eq!(shop.payment(pc_trade)["status"], "pending");

    // Random and truncated bodies over real HTTP: all refused, nothing recorded.
    let genuine = serde_urlencoded::to_string(
        tampered["notify"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
            .collect::<Vec<_>>(),
    )
    .unwrap();
    let callback_url = format!("{base}/callbacks/alipay/{}", shop.channel_account_id);
    let mut seed: u64 = 0x5eed;
    for round in 0..60 {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let body: Vec<u8> = match round % 3 {
            0 => genuine.as_bytes()[..(seed as usize) % genuine.len()].to_vec(),
            1 => (0..(seed % 300))
                .map(|i| (seed >> (i % 56)) as u8)
                .collect(),
            _ => {
                let mut bytes = genuine.clone().into_bytes();
                let at = (seed as usize) % bytes.len();
                bytes[at] ^= 1 + (seed >> 8) as u8 % 255;
                bytes
            }
        };
        let status = match ureq::post(&callback_url)
            .set("content-type", "application/x-www-form-urlencoded")
            .send_bytes(&body)
        {
            Ok(response) => response.status(),
            Err(ureq::Error::Status(status, _)) => status,
            Err(error) => panic!("{error}"),
        };
        assert!((400..500).contains(&status), "round {round}: {status}");
    }
    assert_eq!(shop.payment(pc_trade)["status"], "pending");

    // Notifies signed by either SDK are accepted and answered exactly `success`.
    let paid = post_json(
        &format!("{gateway}/__control/pay"),
        json!({"out_trade_no": pc_trade, "signer": "python"}),
    );
    assert_eq!(
        (paid["status"].as_u64(), paid["answer"].as_str()),
        (Some(200), Some("success")),
        "{paid}"
    );
    let payment = shop.payment(pc_trade);
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["channel_trade_no"], paid["trade_no"]);
    let app_trade = app["trade_no"].as_str().unwrap();
    let paid = post_json(
        &format!("{gateway}/__control/pay"),
        json!({"out_trade_no": app_trade, "signer": "official"}),
    );
    assert_eq!(paid["answer"], "success", "{paid}");
    assert_eq!(shop.payment(app_trade)["status"], "succeeded");

    // A lost notify: the sweeper asks alipay.trade.query and records the payment.
    let qr_trade = qr["trade_no"].as_str().unwrap();
    post_json(
        &format!("{gateway}/__control/pay"),
        json!({"out_trade_no": qr_trade, "send": false}),
    );
    shop.wait_status(qr_trade, "succeeded");

    // Refunds settle in alipay.trade.refund's answer.
    shop.refund(pc_trade, "r-1", "2.50");
    shop.wait_refund_succeeded(pc_trade);
    assert_eq!(shop.payment(pc_trade)["refunded_amount"], "2.50");

    // Rotating the account's allowlist to exclude loopback: its callbacks are now refused.
    let (status, rotated) = call(
        "PUT",
        &format!(
            "{base}/v1/merchants/{}/channel-accounts/{}",
            shop.merchant_id, shop.channel_account_id
        ),
        ADMIN_TOKEN,
        Some(
            json!({"params": {"app_id": keys["app_id"], "app_private_key": keys["app_private_key"],
            "alipay_public_key": keys["alipay_public_key"], "gateway_url": format!("{gateway}/gateway.do")},
            "callback_ip_allowlist": ["198.51.100.0/24"]}),
        ),
    );
    assert_eq!(status, 200, "{rotated}");
    let wap_trade = wap["trade_no"].as_str().unwrap();
    let refused = post_json(
        &format!("{gateway}/__control/pay"),
        json!({"out_trade_no": wap_trade}),
    );
    assert_eq!(refused["status"], 403, "{refused}");
    // The refused notify is not lost: the sweeper learns the payment by query.
    shop.wait_status(wap_trade, "succeeded");

    // The bill (a zip of GBK CSV) matches paycenter's record exactly.
    let result = shop.reconcile_today();
    assert_eq!(result["discrepancies"], json!([]), "{result}");
    // Four payments and the refund, each matched.
    assert_eq!(result["matched"], 5, "{result}");

    let stats: Value = pki()
        .client()
        .get(&format!("{gateway}/__control/stats"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(
        stats["rejected"], 0,
        "every request paycenter signed verifies: {stats}"
    );
    assert!(stats["verified"].as_u64().unwrap() >= 6, "{stats}");
}

#[test]
fn wechatpay_v3_signs_verifies_and_decrypts_as_the_sdk_does() {
    let Some(python) = python() else { return };
    let (_gateway, keys) = fake(&python, "wechatpay_gateway.py");
    let gateway = format!("https://localhost:{}", keys["port"]);
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(dir.path());
    let mut params = keys.clone();
    strip_fake_fields(&mut params);
    params["gateway_url"] = json!(gateway);
    let shop = Shop::open(&base, "wechatpay", params);

    let (status, qr) = shop.pay("w-qr", "8.00", "native_qr", json!({}));
    assert_eq!(status, 201, "{qr}");
    assert!(qr["action"]["qr_code"]
        .as_str()
        .unwrap()
        .starts_with("weixin://wxpay/bizpayurl"));
    // paycenter's page draws the same QR as an image, for apps that send the person there.
    let qr_page = ureq::get(qr["action"]["url"].as_str().unwrap())
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        qr_page.contains("<svg") && qr_page.contains("id=\"qr\""),
        "{qr_page}"
    );

    let (status, pc) = shop.pay("w-pc", "6.00", "pc", json!({}));
    assert_eq!(status, 201, "{pc}");
    assert_eq!(pc["action"]["type"], "checkout_url");
    let page = ureq::get(pc["action"]["url"].as_str().unwrap())
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        page.contains("<svg") && page.contains("id=\"qr\""),
        "the checkout page draws the QR: {page}"
    );
    // Drawn in a real browser, the QR reads back as WeChat Pay's code_url.
    let png = std::env::temp_dir().join(format!("paycenter-qr-{}.png", std::process::id()));
    if support::run_browser(
        "qr",
        json!({"url": pc["action"]["url"], "png": png.to_str().unwrap()}),
    )
    .is_some()
    {
        let decoded = std::process::Command::new("zbarimg")
            .args(["--raw", "-q", png.to_str().unwrap()])
            .output()
            .expect("zbarimg (zbar-tools) runs");
        let decoded = String::from_utf8_lossy(&decoded.stdout).trim().to_owned();
        assert!(
            decoded.starts_with("weixin://wxpay/bizpayurl"),
            "the QR decodes to the code_url: {decoded:?}"
        );
    }

    let (status, answer) = shop.pay("w-js", "1.00", "jsapi", json!({}));
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (422, Some("missing_channel_field")),
        "{answer}"
    );
    let (status, jsapi) = shop.pay(
        "w-js",
        "1.00",
        "jsapi",
        json!({"payer_id": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}),
    );
    assert_eq!(status, 201, "{jsapi}");
    let js = &jsapi["action"]["params"];
    let message = format!(
        "{}\n{}\n{}\n{}\n",
        js["appId"].as_str().unwrap(),
        js["timeStamp"].as_str().unwrap(),
        js["nonceStr"].as_str().unwrap(),
        js["package"].as_str().unwrap()
    );
    let verdict = post_json(
        &format!("{gateway}/__control/verify"),
        json!({"message": message, "signature": js["paySign"]}),
    );
    assert_eq!(verdict["verified"], true, "paySign verifies with the SDK");

    let (status, app) = shop.pay("w-app", "2.00", "app", json!({}));
    assert_eq!(status, 201, "{app}");
    let a = &app["action"]["params"];
    let message = format!(
        "{}\n{}\n{}\n{}\n",
        a["appid"].as_str().unwrap(),
        a["timestamp"].as_str().unwrap(),
        a["noncestr"].as_str().unwrap(),
        a["prepayid"].as_str().unwrap()
    );
    let verdict = post_json(
        &format!("{gateway}/__control/verify"),
        json!({"message": message, "signature": a["sign"]}),
    );
    assert_eq!(verdict["verified"], true);

    let (status, wap) = shop.pay("w-wap", "2.00", "wap", json!({"client_ip": "203.0.113.9"}));
    assert_eq!(status, 201, "{wap}");
    assert_eq!(wap["action"]["type"], "redirect_url");

    // A notify whose body changed after signing is refused (4xx) and records nothing.
    let qr_trade = qr["trade_no"].as_str().unwrap();
    let tampered = post_json(
        &format!("{gateway}/__control/pay"),
        json!({"out_trade_no": qr_trade, "tamper": true}),
    );
    assert_eq!(tampered["status"], 400, "{tampered}");
    assert_eq!(shop.payment(qr_trade)["status"], "pending");
    // Signed with the platform key by the SDK, resource sealed with AES-256-GCM: accepted.
    let paid = post_json(
        &format!("{gateway}/__control/pay"),
        json!({"out_trade_no": qr_trade}),
    );
    assert_eq!(paid["status"], 204, "{paid}");
    let payment = shop.payment(qr_trade);
    assert_eq!(payment["status"], "succeeded");
    assert_eq!(payment["channel_trade_no"], paid["transaction_id"]);

    // The refund is PROCESSING at first; its REFUND.SUCCESS notify settles it.
    shop.refund(qr_trade, "wr-1", "3.00");
    shop.wait_refund_succeeded(qr_trade);

    let result = shop.reconcile_today();
    assert_eq!(result["discrepancies"], json!([]), "{result}");
    // The payment and its refund.
    assert_eq!(result["matched"], 2, "{result}");
    let stats: Value = pki()
        .client()
        .get(&format!("{gateway}/__control/stats"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(stats["rejected"], 0, "{stats}");
}

#[test]
fn stripe_payment_webhook_and_refund_against_localstripe() {
    let Some(python) = python() else { return };
    let port = free_port();
    let localstripe = Process(
        Command::new(&python)
            .args([
                "-m",
                "localstripe",
                "--port",
                &port.to_string(),
                "--from-scratch",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let stripe_url = format!("http://127.0.0.1:{port}");
    wait_for("localstripe", || {
        ureq::get(&format!("{stripe_url}/js.stripe.com/v3/"))
            .call()
            .is_ok()
    });
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(dir.path());
    let webhook_secret = "whsec_paycenter_test";
    let shop = Shop::open(
        &base,
        "stripe",
        json!({"secret_key": "sk_test_paycenter", "webhook_secret": webhook_secret, "gateway_url": stripe_url}),
    );
    ureq::post(&format!("{stripe_url}/_config/webhooks/paycenter"))
        .send_json(json!({"url": format!("{base}/callbacks/stripe/{}", shop.channel_account_id), "secret": webhook_secret}))
        .unwrap();

    let (status, payment) = shop.pay("s-1", "19.99", "pc", json!({"currency": "USD"}));
    assert_eq!(status, 201, "{payment}");
    assert_eq!(payment["action"]["type"], "jsapi_params");
    let intent = payment["action"]["params"]["payment_intent_id"]
        .as_str()
        .unwrap();
    assert!(payment["action"]["params"]["client_secret"]
        .as_str()
        .unwrap()
        .starts_with(intent));
    let trade_no = payment["trade_no"].as_str().unwrap();

    // The user pays with Stripe's test card; localstripe's signed webhook records it.
    let output = Command::new(&python)
        .args([
            &format!("{}/tests/fakes/stripe_tools.py", env!("CARGO_MANIFEST_DIR")),
            "pay",
            &stripe_url,
            intent,
        ])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    shop.wait_status(trade_no, "succeeded");
    assert_eq!(shop.payment(trade_no)["channel_trade_no"], intent);

    shop.refund(trade_no, "sr-1", "4.99");
    shop.wait_refund_succeeded(trade_no);
    assert_eq!(shop.payment(trade_no)["refunded_amount"], "4.99");
    drop(localstripe);
}

#[test]
fn stripe_signatures_agree_with_the_stripe_package_both_ways() {
    let Some(python) = python() else { return };
    let tool = format!("{}/tests/fakes/stripe_tools.py", env!("CARGO_MANIFEST_DIR"));
    let secret = "whsec_both_ways";
    let payload = r#"{"id":"evt_1","type":"payment_intent.succeeded"}"#;
    let run = |args: &[&str]| {
        let mut child = Command::new(&python)
            .arg(&tool)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(payload.as_bytes())
            .unwrap();
        let output = child.wait_with_output().unwrap();
        (
            output.status.success(),
            String::from_utf8(output.stdout).unwrap().trim().to_owned(),
        )
    };
    // The package's header verifies with paycenter's code...
    let (ok, header) = run(&["sign", secret]);
    assert!(ok);
    let now = chrono::Utc::now().timestamp();
    assert!(paycenter_gateway::signing::verify(
        secret.as_bytes(),
        &header,
        payload.as_bytes(),
        now,
        300
    )
    .is_ok());
    assert!(paycenter_gateway::signing::verify(
        b"whsec_other",
        &header,
        payload.as_bytes(),
        now,
        300
    )
    .is_err());
    // ...and paycenter's header verifies with the package; a wrong secret does not.
    let ours =
        paycenter_gateway::signing::signature_header(secret.as_bytes(), now, payload.as_bytes());
    assert!(run(&["verify", secret, &ours]).0);
    assert!(!run(&["verify", "whsec_other", &ours]).0);
}

/// A WeChat Pay merchant on platform certificates (no platform public key): paycenter
/// downloads `/v3/certificates`, opens each with the APIv3 key, verifies answers and notifies
/// with the certificate `Wechatpay-Serial` names, and refreshes before expiry. The fake's
/// certificates live 6 s, so the run crosses several rotations.
#[test]
fn wechatpay_platform_certificates_are_downloaded_verified_and_refreshed() {
    let Some(python) = python() else { return };
    let (_gateway, keys) = fake_with(
        &python,
        "wechatpay_gateway.py",
        &[("FAKE_WECHAT_CERTIFICATE_SECONDS", "6")],
    );
    assert!(keys.get("platform_public_key").is_none(), "{keys}");
    let gateway = format!("https://localhost:{}", keys["port"]);
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(dir.path());
    let mut params = keys.clone();
    strip_fake_fields(&mut params);
    params["gateway_url"] = json!(gateway);

    let (_, merchant) = call(
        "POST",
        &format!("{base}/v1/merchants"),
        ADMIN_TOKEN,
        Some(json!({"name": "refused keys"})),
    );
    // Activation with `params` changed in `field`: refused as invalid_channel_params.
    let refused = |field: &str, value: &str| -> Value {
        let mut changed = params.clone();
        changed[field] = json!(value);
        let (status, answer) = call(
            "POST",
            &format!(
                "{base}/v1/merchants/{}/channel-accounts",
                merchant["merchant_id"].as_str().unwrap()
            ),
            ADMIN_TOKEN,
            Some(json!({"channel": "wechatpay", "params": changed})),
        );
        assert_eq!(
            (status, answer["error"]["code"].as_str()),
            (422, Some("invalid_channel_params")),
            "{field}: {answer}"
        );
        answer
    };
    // A public key without its id (or the other way round) is neither mode.
    refused(
        "platform_public_key_id",
        "PUB_KEY_ID_0119000001092025010100000000000001",
    );
    // Activation downloads the certificates: an APIv3 key that does not open them is refused
    // now, not at the first payment.
    let answer = refused("api_v3_key", "0123456789abcdef0123456789abcdef");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("APIv3 key"),
        "{answer}"
    );

    let stats = || -> Value {
        pki()
            .client()
            .get(&format!("{gateway}/__control/stats"))
            .call()
            .unwrap()
            .into_json()
            .unwrap()
    };
    let shop = Shop::open(&base, "wechatpay", params);
    let downloads_at_activation = stats()["certificate_downloads"].as_u64().unwrap();
    let (status, first) = shop.pay("cert-0", "8.00", "native_qr", json!({}));
    assert_eq!(
        status, 201,
        "the answer verifies with a downloaded certificate: {first}"
    );
    assert_eq!(
        stats()["certificate_downloads"],
        downloads_at_activation,
        "the certificates downloaded at activation serve the first payment"
    );

    // A notify signed by a certificate WeChat Pay never listed is refused and pays nothing.
    let trade = first["trade_no"].as_str().unwrap().to_owned();
    let forged = post_json(
        &format!("{gateway}/__control/pay"),
        json!({"out_trade_no": trade, "signer": "unlisted"}),
    );
    assert_eq!(forged["status"], 400, "{forged}");
    assert_eq!(shop.payment(&trade)["status"], "pending");

    // Three certificate lifetimes of payments: every answer verifies across the rotations.
    let started = std::time::Instant::now();
    let mut order_index = 1;
    while started.elapsed() < Duration::from_secs(15) {
        let (status, answer) = shop.pay(
            &format!("cert-{order_index}"),
            "1.00",
            "native_qr",
            json!({}),
        );
        assert_eq!(
            status,
            201,
            "payment {order_index} after {:?}: {answer}",
            started.elapsed()
        );
        order_index += 1;
        std::thread::sleep(Duration::from_millis(700));
    }
    // The genuine notify, signed by today's certificate, pays; the refund's notify settles it.
    let paid = post_json(
        &format!("{gateway}/__control/pay"),
        json!({"out_trade_no": trade}),
    );
    assert_eq!(paid["status"], 204, "{paid}");
    assert_eq!(shop.payment(&trade)["status"], "succeeded");
    shop.refund(&trade, "cert-refund", "8.00");
    shop.wait_refund_succeeded(&trade);

    let stats = stats();
    assert_eq!(stats["rejected"], 0, "{stats}");
    let serials = stats["signing_serials"].as_array().unwrap();
    assert!(
        serials.len() >= 3,
        "answers were signed by at least three certificates in turn: {stats}"
    );
    let downloads = stats["certificate_downloads"].as_u64().unwrap();
    // Refreshed halfway to each expiry (about every 3 s), not at every call.
    assert!(
        (4..=12).contains(&downloads),
        "{downloads} downloads for {order_index} payments: {stats}"
    );
}

/// The seeds' own scenario: a user gives up on WeChat Pay and pays with Alipay. The abandoned
/// WeChat trade is closed at WeChat Pay with its own account's keys (the fake gateway fails the
/// first two tries: the reactor retries), and when the user pays it after all, that payment
/// is refunded at WeChat Pay while the Alipay one is kept.
#[test]
fn switching_from_wechatpay_to_alipay_closes_and_refunds_at_wechatpay() {
    let Some(python) = python() else { return };
    let (_wechat, wechat_keys) = fake(&python, "wechatpay_gateway.py");
    let (_alipay, alipay_keys) = fake(&python, "alipay_gateway.py");
    let wechat = format!("https://localhost:{}", wechat_keys["port"]);
    let alipay = format!("https://localhost:{}", alipay_keys["port"]);
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(dir.path());
    let mut wechat_params = wechat_keys.clone();
    strip_fake_fields(&mut wechat_params);
    wechat_params["gateway_url"] = json!(wechat);
    let shop = Shop::open(&base, "wechatpay", wechat_params);
    let (status, account) = call(
        "POST",
        &format!("{base}/v1/merchants/{}/channel-accounts", shop.merchant_id),
        ADMIN_TOKEN,
        Some(json!({"channel": "alipay", "params": {
            "app_id": alipay_keys["app_id"], "app_private_key": alipay_keys["app_private_key"],
            "alipay_public_key": alipay_keys["alipay_public_key"], "gateway_url": format!("{alipay}/gateway.do")},
            "callback_ip_allowlist": ["127.0.0.0/8"]})),
    );
    assert_eq!(status, 201, "{account}");
    let alipay_account = account["channel_account_id"].as_str().unwrap().to_owned();
    post_json(&format!("{wechat}/__control/fail_closes"), json!({"n": 2}));

    let (status, first) = shop.pay("switch-1", "5.00", "native_qr", json!({}));
    assert_eq!(status, 201, "{first}");
    let wechat_trade = first["trade_no"].as_str().unwrap().to_owned();
    let (status, second) = shop.pay(
        "switch-1",
        "5.00",
        "native_qr",
        json!({"channel_account_id": alipay_account}),
    );
    assert_eq!(status, 201, "{second}");
    let alipay_trade = second["trade_no"].as_str().unwrap().to_owned();
    wait_for("the WeChat trade closed at WeChat Pay", || {
        shop.payment(&wechat_trade)["channel_close"]["status"] == "closed"
    });
    let close = &shop.payment(&wechat_trade)["channel_close"];
    assert_eq!(
        close["attempts"], 3,
        "two failures, then the close: {close}"
    );
    let trade = post_json(
        &format!("{wechat}/__control/trade"),
        json!({"out_trade_no": wechat_trade}),
    );
    assert_eq!(trade["state"], "CLOSED");
    let stats: Value = pki()
        .client()
        .get(&format!("{wechat}/__control/stats"))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    assert_eq!(
        (stats["failed_closes"].as_u64(), stats["closes"].as_u64()),
        (Some(2), Some(1))
    );

    // The user pays with Alipay (kept), then pays the WeChat QR after all (refunded there).
    let paid = post_json(
        &format!("{alipay}/__control/pay"),
        json!({"out_trade_no": alipay_trade, "signer": "python"}),
    );
    assert_eq!(paid["status"], 200, "{paid}");
    shop.wait_status(&alipay_trade, "succeeded");
    let paid = post_json(
        &format!("{wechat}/__control/pay"),
        json!({"out_trade_no": wechat_trade}),
    );
    assert_eq!(paid["status"], 204, "{paid}");
    shop.wait_refund_succeeded(&wechat_trade);
    let late = shop.payment(&wechat_trade);
    assert_eq!(
        (
            late["refunds"][0]["kind"].as_str(),
            late["refunded_amount"].as_str()
        ),
        (Some("automatic"), Some("5.00")),
        "{late}"
    );
    assert_eq!(shop.payment(&alipay_trade)["refunded_amount"], "0.00");
}

#[test]
fn the_cashier_inside_wechat_learns_the_payer_by_oauth_and_pays_by_jsapi() {
    let Some(python) = python() else { return };
    let (_gateway, keys) = fake(&python, "wechatpay_gateway.py");
    let gateway = format!("https://localhost:{}", keys["port"]);
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(dir.path());
    let mut params = keys.clone();
    strip_fake_fields(&mut params);
    params["gateway_url"] = json!(gateway);
    params["oauth_url"] = json!(gateway);
    params["oauth_api_url"] = json!(gateway);
    let shop = Shop::open(&base, "wechatpay", params);
    let (status, opened) = shop.pay(
        "w-cashier",
        "9.00",
        "cashier",
        json!({"channel_account_id": null}),
    );
    assert_eq!(status, 201, "{opened}");
    let cashier_url = opened["action"]["url"].as_str().unwrap().to_owned();

    // Opened inside WeChat: off to WeChat's OAuth (snsapi_base), which sends the person back.
    let wechat_user_agent =
        "Mozilla/5.0 (Linux; Android 14; Pixel 8) Mobile Safari/537.36 MicroMessenger/8.0.47";
    let browser = pki().client();
    let follow = |url: &str| {
        let answer = match browser.get(url).set("user-agent", wechat_user_agent).call() {
            Ok(answer) => answer,
            Err(ureq::Error::Status(_, answer)) => answer,
            Err(error) => panic!("{url}: {error}"),
        };
        let location = answer.header("location").map(str::to_owned);
        (
            answer.status(),
            location,
            answer.into_string().unwrap_or_default(),
        )
    };
    let (status, to_oauth, _) = follow(&cashier_url);
    assert_eq!(status, 303);
    let to_oauth = to_oauth.unwrap();
    assert!(
        to_oauth.starts_with(&format!("{gateway}/connect/oauth2/authorize?appid="))
            && to_oauth.contains("scope=snsapi_base")
            && to_oauth.ends_with("#wechat_redirect"),
        "{to_oauth}"
    );
    let (status, back, _) = follow(to_oauth.trim_end_matches("#wechat_redirect"));
    assert_eq!(status, 302);
    let back = back.unwrap();
    assert!(
        back.starts_with(&format!("{base}/checkout/")) && back.contains("code="),
        "{back}"
    );
    // Back at paycenter: the code becomes the openid and a JSAPI attempt starts for them.
    let (status, _, page) = follow(&back);
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("id=\"wechat-pay\"") && page.contains("prepay_id"),
        "{page}"
    );
    let (status, found) = call(
        "GET",
        &format!(
            "{base}/v1/payments?merchant_id={}&order_no=w-cashier",
            shop.merchant_id
        ),
        &shop.api_key,
        None,
    );
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["invoke_method"], "jsapi", "{found}");
    let trade = post_json(
        &format!("{gateway}/__control/trade"),
        json!({"out_trade_no": found["trade_no"]}),
    );
    assert_eq!(trade["trade_type"], "JSAPI", "{trade}");
    assert!(
        trade["payer_openid"]
            .as_str()
            .is_some_and(|openid| openid.starts_with('o')),
        "{trade}"
    );
    // A code used twice is refused by WeChat: the person is back at the choice, told why.
    let (status, _, page) = follow(&back);
    assert_eq!(status, 200);
    assert!(page.contains("id=\"error\""), "{page}");
}

#[test]
fn the_cashier_opened_inside_alipay_starts_the_alipay_attempt_by_itself() {
    let Some(python) = python() else { return };
    let (_gateway, keys) = fake(&python, "alipay_gateway.py");
    let gateway = format!("https://localhost:{}", keys["port"]);
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(dir.path());
    let shop = Shop::open(
        &base,
        "alipay",
        json!({
            "app_id": keys["app_id"], "app_private_key": keys["app_private_key"],
            "alipay_public_key": keys["alipay_public_key"], "gateway_url": format!("{gateway}/gateway.do"),
        }),
    );
    let (status, opened) = shop.pay(
        "a-cashier",
        "12.00",
        "cashier",
        json!({"channel_account_id": null}),
    );
    assert_eq!(status, 201, "{opened}");
    let answer = match ureq::AgentBuilder::new()
        .redirects(0)
        .build()
        .get(opened["action"]["url"].as_str().unwrap())
        .set("user-agent", "Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148 AlipayClient/10.5.90")
        .call()
    {
        Ok(answer) => answer,
        Err(ureq::Error::Status(_, answer)) => answer,
        Err(error) => panic!("{error}"),
    };
    // On to Alipay: its page (a redirect), or a page posting its form.
    let status = answer.status();
    let location = answer.header("location").unwrap_or("").to_owned();
    let page = answer.into_string().unwrap_or_default();
    assert!(
        (status == 303 && location.starts_with(&gateway))
            || (status == 200 && page.contains("id=\"channel-form\"")),
        "{status} {location} {page}"
    );
    let (status, found) = call(
        "GET",
        &format!(
            "{base}/v1/payments?merchant_id={}&order_no=a-cashier",
            shop.merchant_id
        ),
        &shop.api_key,
        None,
    );
    assert_eq!(status, 200, "{found}");
    assert_eq!(
        (found["channel"].as_str(), found["invoke_method"].as_str()),
        (Some("alipay"), Some("wap")),
        "{found}"
    );
}

/// paycenter with the breaker and the channel timeout short enough for a test.
fn start_routing_paycenter(data_dir: &std::path::Path) -> (Process, String) {
    let ca_file = pki().ca_path.to_str().unwrap().to_owned();
    support::start_paycenter(
        data_dir,
        ADMIN_TOKEN,
        &[
            ("PAYCENTER_ALLOW_PRIVATE_EGRESS", "1"),
            ("PAYCENTER_CA_FILE", &ca_file),
            ("PAYCENTER_MIN_ATTEMPT_INTERVAL_MS", "15000"),
            ("PAYCENTER_CHANNEL_TIMEOUT_MS", "1000"),
            ("PAYCENTER_BREAKER_MIN_CALLS", "2"),
            ("PAYCENTER_BREAKER_OPEN_SECONDS", "2"),
            ("PAYCENTER_BREAKER_WINDOW_SECONDS", "60"),
            // The failure-rate alert watches the same calls.
            ("PAYCENTER_ALERT_INTERVAL_SECONDS", "1"),
            ("PAYCENTER_ALERT_CHANNEL_MIN_ATTEMPTS", "2"),
            ("PAYCENTER_ALERT_CHANNEL_WINDOW_SECONDS", "60"),
            ("PAYCENTER_ALERT_DISK_FREE_MB", "0"),
        ],
    )
}

/// The Alipay parameters of a fake gateway.
fn alipay_params(keys: &Value) -> Value {
    json!({
        "app_id": keys["app_id"], "app_private_key": keys["app_private_key"],
        "alipay_public_key": keys["alipay_public_key"],
        "gateway_url": format!("https://localhost:{}/gateway.do", keys["port"]),
    })
}

/// A second account of the shop's merchant, at another fake gateway.
fn second_account(shop: &Shop, params: Value) -> String {
    let (status, account) = call(
        "POST",
        &format!(
            "{}/v1/merchants/{}/channel-accounts",
            shop.base, shop.merchant_id
        ),
        ADMIN_TOKEN,
        Some(
            json!({"channel": "alipay", "params": params, "callback_ip_allowlist": ["127.0.0.0/8"]}),
        ),
    );
    assert_eq!(status, 201, "{account}");
    account["channel_account_id"].as_str().unwrap().to_owned()
}

fn precreates(keys: &Value) -> u64 {
    let stats: Value = pki()
        .client()
        .get(&format!(
            "https://localhost:{}/__control/stats",
            keys["port"]
        ))
        .call()
        .unwrap()
        .into_json()
        .unwrap();
    stats["precreate"].as_u64().unwrap()
}

/// How the fake Alipay gateway answers from now on (`{"precreate": …}`, `{"query": …}`).
fn set_mode(keys: &Value, mode: Value) {
    post_json(
        &format!("https://localhost:{}/__control/mode", keys["port"]),
        mode,
    );
}

fn route(shop: &Shop, rules: Value) -> (u16, Value) {
    call(
        "PUT",
        &format!("{}/v1/merchants/{}/routing", shop.base, shop.merchant_id),
        ADMIN_TOKEN,
        Some(json!({ "rules": rules })),
    )
}

fn pay_routed(shop: &Shop, order_no: &str) -> (u16, Value) {
    shop.pay(
        order_no,
        "30.00",
        "native_qr",
        json!({"channel_account_id": null, "route": "auto"}),
    )
}

#[test]
fn routing_fails_over_after_a_refusal_and_tells_why() {
    let Some(python) = python() else { return };
    let (_refusing, refusing_keys) = fake_with(
        &python,
        "alipay_gateway.py",
        &[("FAKE_PRECREATE", "refuse")],
    );
    let (_taking, taking_keys) = fake(&python, "alipay_gateway.py");
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_routing_paycenter(dir.path());
    let shop = Shop::open(&base, "alipay", alipay_params(&refusing_keys));
    let refusing = shop.channel_account_id.clone();
    let taking = second_account(&shop, alipay_params(&taking_keys));

    // No rules yet: nothing to route by.
    let (status, refused) = pay_routed(&shop, "r-0");
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("no_route")),
        "{refused}"
    );
    // Rules are checked: the merchant's own accounts, one weight each.
    for (rules, field_hint) in [
        (
            json!([{"channel_account_ids": ["ca_not_the_merchants"]}]),
            "not a channel account",
        ),
        (
            json!([{"channel_account_ids": [refusing, refusing]}]),
            "twice",
        ),
        (
            json!([{"channel_account_ids": [refusing, taking], "weights": [1]}]),
            "weight",
        ),
        (json!([{"channel_account_ids": []}]), "1 to 16"),
    ] {
        let (status, answer) = route(&shop, rules.clone());
        assert_eq!(status, 400, "{rules} → {answer}");
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains(field_hint),
            "{answer}"
        );
    }
    let rules = json!([{"invoke_method": "native_qr", "currency": "CNY", "channel_account_ids": [refusing, taking]}]);
    let (status, set) = route(&shop, rules.clone());
    assert_eq!((status, &set["rules"]), (200, &rules), "{set}");
    let (_, got) = call(
        "GET",
        &format!("{base}/v1/merchants/{}/routing", shop.merchant_id),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(got["rules"], rules);

    // The first account refuses (a definite answer: no trade there): the second takes it, in
    // the same request, though the order's attempts are otherwise 15 s apart.
    let (status, created) = pay_routed(&shop, "r-1");
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["channel_account_id"], taking.as_str(), "{created}");
    assert_eq!(
        created["route"]["account_chosen"],
        taking.as_str(),
        "{created}"
    );
    let skipped = &created["route"]["skipped"];
    assert_eq!(
        skipped[0]["channel_account_id"],
        refusing.as_str(),
        "{created}"
    );
    assert!(
        skipped[0]["reason"]
            .as_str()
            .unwrap()
            .contains("ACQ.ACCESS_FORBIDDEN"),
        "{created}"
    );
    assert_eq!(
        (precreates(&refusing_keys), precreates(&taking_keys)),
        (1, 1)
    );
    let (_, order) = call(
        "GET",
        &format!(
            "{base}/v1/payments?merchant_id={}&order_no=r-1",
            shop.merchant_id
        ),
        &shop.api_key,
        None,
    );
    let attempts = order["attempts"].as_array().unwrap();
    assert_eq!(attempts.len(), 2, "{order}");
    assert_eq!(
        (
            attempts[0]["status"].as_str(),
            attempts[0]["channel_account_id"].as_str()
        ),
        (Some("failed"), Some(refusing.as_str()))
    );
    assert_eq!(
        attempts[1]["route"]["account_chosen"],
        taking.as_str(),
        "{order}"
    );

    // Bad requests say so.
    for (extra, field) in [
        (json!({"route": "auto"}), "channel_account_id"),
        (
            json!({"channel_account_id": null, "route": "manual"}),
            "route",
        ),
        (
            json!({"channel_account_id": null, "route": "auto", "preferred_channels": ["paypal"]}),
            "preferred_channels",
        ),
    ] {
        let (status, answer) = shop.pay("r-bad", "30.00", "native_qr", extra.clone());
        assert_eq!(
            (status, answer["error"]["field"].as_str()),
            (400, Some(field)),
            "{extra} → {answer}"
        );
    }
}

#[test]
fn a_timeout_is_asked_about_not_routed_elsewhere() {
    let Some(python) = python() else { return };
    // The first gateway makes the trade and answers after paycenter stopped waiting.
    let (_slow, slow_keys) = fake_with(
        &python,
        "alipay_gateway.py",
        &[("FAKE_PRECREATE", "slow:2.5")],
    );
    let (_taking, taking_keys) = fake(&python, "alipay_gateway.py");
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_routing_paycenter(dir.path());
    let shop = Shop::open(&base, "alipay", alipay_params(&slow_keys));
    let slow = shop.channel_account_id.clone();
    let taking = second_account(&shop, alipay_params(&taking_keys));
    let (status, _) = route(&shop, json!([{"channel_account_ids": [slow, taking]}]));
    assert_eq!(status, 200);
    let (status, answer) = pay_routed(&shop, "t-1");
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (502, Some("channel_unavailable")),
        "{answer}"
    );
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not routed elsewhere"),
        "{answer}"
    );
    // The trade exists at the first channel: the second was never asked.
    assert_eq!(precreates(&taking_keys), 0);
    assert_eq!(precreates(&slow_keys), 1);
}

#[test]
fn the_breaker_opens_on_failures_and_closes_after_a_good_probe() {
    let Some(python) = python() else { return };
    let (_flaky, flaky_keys) = fake_with(
        &python,
        "alipay_gateway.py",
        &[("FAKE_PRECREATE", "refuse")],
    );
    let (_taking, taking_keys) = fake(&python, "alipay_gateway.py");
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_routing_paycenter(dir.path());
    let shop = Shop::open(&base, "alipay", alipay_params(&flaky_keys));
    let flaky = shop.channel_account_id.clone();
    let taking = second_account(&shop, alipay_params(&taking_keys));
    let (status, _) = route(&shop, json!([{"channel_account_ids": [flaky, taking]}]));
    assert_eq!(status, 200);
    let breaker = || {
        let metrics = ureq::get(&format!("{base}/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap();
        metrics
            .lines()
            .find(|line| {
                line.starts_with(&format!(
                    "paycenter_channel_breaker_state{{channel_account_id=\"{flaky}\"}}"
                ))
            })
            .and_then(|line| line.rsplit(' ').next()?.parse::<u8>().ok())
    };

    // Two refusals of two calls: the breaker opens.
    for order_no in ["b-1", "b-2"] {
        let (status, created) = pay_routed(&shop, order_no);
        assert_eq!(
            (status, created["channel_account_id"].as_str()),
            (201, Some(taking.as_str())),
            "{created}"
        );
    }
    assert_eq!(breaker(), Some(2), "open");
    // The failure rate raises an alert too.
    let alerts = |status: &str| -> Vec<Value> {
        let (_, list) = call(
            "GET",
            &format!("{base}/v1/alerts?status={status}"),
            ADMIN_TOKEN,
            None,
        );
        list["data"].as_array().unwrap().clone()
    };
    let failing = |alert: &Value| {
        alert["rule"] == "channel_failure_rate" && alert["subject"] == flaky.as_str()
    };
    support::wait_for_within(
        "the failure-rate alert",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || alerts("open").iter().any(failing),
    );
    // Open: passed over without being asked.
    let (status, created) = pay_routed(&shop, "b-3");
    assert_eq!(status, 201, "{created}");
    assert_eq!(
        created["route"]["skipped"][0]["reason"], "breaker open",
        "{created}"
    );
    assert_eq!(precreates(&flaky_keys), 2);

    // The channel recovers; once the breaker's time is up, the next payment is a probe, and it
    // succeeds: closed again.
    set_mode(&flaky_keys, json!({"precreate": "ok"}));
    std::thread::sleep(Duration::from_millis(2_500));
    let (status, created) = pay_routed(&shop, "b-4");
    assert_eq!(
        (status, created["channel_account_id"].as_str()),
        (201, Some(flaky.as_str())),
        "{created}"
    );
    assert_eq!(breaker(), Some(0), "closed");
    // Closed with a clean slate: the failure-rate alert resolves.
    support::wait_for_within(
        "the failure-rate alert resolved",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || alerts("resolved").iter().any(failing),
    );
    let (status, created) = pay_routed(&shop, "b-5");
    assert_eq!(
        (status, created["channel_account_id"].as_str()),
        (201, Some(flaky.as_str())),
        "{created}"
    );
}

#[test]
fn payments_stuck_behind_a_failing_query_alert_until_the_channel_answers() {
    let Some(python) = python() else { return };
    let (_gateway, keys) = fake(&python, "alipay_gateway.py");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = pki().ca_path.to_str().unwrap().to_owned();
    let (_server, base) = support::start_paycenter(
        dir.path(),
        ADMIN_TOKEN,
        &[
            ("PAYCENTER_ALLOW_PRIVATE_EGRESS", "1"),
            ("PAYCENTER_CA_FILE", &ca_file),
            ("PAYCENTER_SWEEP_AFTER_SECONDS", "2"),
            ("PAYCENTER_ALERT_INTERVAL_SECONDS", "1"),
            ("PAYCENTER_ALERT_DISK_FREE_MB", "0"),
        ],
    );
    let shop = Shop::open(&base, "alipay", alipay_params(&keys));
    let (status, created) = shop.pay("s-1", "8.00", "native_qr", json!({}));
    assert_eq!(status, 201, "{created}");
    set_mode(&keys, json!({"query": "fail"}));
    let alerts = |status: &str| -> Vec<Value> {
        let (_, list) = call(
            "GET",
            &format!("{base}/v1/alerts?status={status}"),
            ADMIN_TOKEN,
            None,
        );
        list["data"].as_array().unwrap().clone()
    };
    let stuck = |alert: &Value| {
        alert["rule"] == "stuck_payments" && alert["subject"] == shop.channel_account_id.as_str()
    };
    support::wait_for_within(
        "the stuck-payments alert",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || alerts("open").iter().any(stuck),
    );
    let open = alerts("open");
    let alert = open.iter().find(|alert| stuck(alert)).unwrap();
    assert!(
        alert["details"]
            .as_str()
            .unwrap()
            .contains(created["trade_no"].as_str().unwrap()),
        "{alert}"
    );
    // The channel answers again: resolved.
    set_mode(&keys, json!({"query": "ok"}));
    support::wait_for_within(
        "the stuck-payments alert resolved",
        Duration::from_secs(30),
        Duration::from_millis(250),
        || alerts("resolved").iter().any(stuck),
    );
}

#[test]
fn platform_certificates_expiring_soon_raise_an_alert() {
    let Some(python) = python() else { return };
    // Certificates of an hour: well within the 14 days the alert looks ahead.
    let (_gateway, keys) = fake_with(
        &python,
        "wechatpay_gateway.py",
        &[("FAKE_WECHAT_CERTIFICATE_SECONDS", "3600")],
    );
    let mut params = keys.clone();
    strip_fake_fields(&mut params);
    params["gateway_url"] = json!(format!("https://localhost:{}", keys["port"]));
    let dir = tempfile::tempdir().unwrap();
    let ca_file = pki().ca_path.to_str().unwrap().to_owned();
    let start = |expiry_days: &str| {
        support::start_paycenter(
            dir.path(),
            ADMIN_TOKEN,
            &[
                ("PAYCENTER_ALLOW_PRIVATE_EGRESS", "1"),
                ("PAYCENTER_CA_FILE", &ca_file),
                ("PAYCENTER_ALERT_INTERVAL_SECONDS", "1"),
                ("PAYCENTER_ALERT_DISK_FREE_MB", "0"),
                ("PAYCENTER_ALERT_CREDENTIALS_EXPIRY_DAYS", expiry_days),
            ],
        )
    };
    let (server, base) = start("14");
    // Activation downloads the platform certificates: their expiry is known from then on.
    let shop = Shop::open(&base, "wechatpay", params);
    let alerts = |base: &str, status: &str| -> Vec<Value> {
        let (_, list) = call(
            "GET",
            &format!("{base}/v1/alerts?status={status}"),
            ADMIN_TOKEN,
            None,
        );
        list["data"].as_array().unwrap().clone()
    };
    let expiring = |alert: &Value| {
        alert["rule"] == "credentials_expiring"
            && alert["subject"] == shop.channel_account_id.as_str()
    };
    support::wait_for_within(
        "the expiry alert",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || alerts(&base, "open").iter().any(expiring),
    );
    // Looking less far ahead (0 days), the same certificates are fine: resolved. The restart
    // downloads them again at the first call that needs them; a payment makes one.
    drop(server);
    let (_server, base) = start("0");
    let (status, created) = shop_pay_at(&base, &shop, "exp-1");
    assert_eq!(status, 201, "{created}");
    support::wait_for_within(
        "the expiry alert resolved",
        Duration::from_secs(20),
        Duration::from_millis(250),
        || alerts(&base, "resolved").iter().any(expiring),
    );
}

/// `shop.pay` against another start of the server (its base changed).
fn shop_pay_at(base: &str, shop: &Shop, order_no: &str) -> (u16, Value) {
    call(
        "POST",
        &format!("{base}/v1/payments"),
        &shop.api_key,
        Some(json!({
            "merchant_id": shop.merchant_id, "channel_account_id": shop.channel_account_id,
            "order_no": order_no, "amount": "5.00", "currency": "CNY", "invoke_method": "native_qr",
            "subject": "oolong tea",
        })),
    )
}

/// A sub-merchant's account body under `provider_account_id`.
fn sub_merchant(channel: &str, provider_account_id: &str, params: Value) -> Value {
    json!({
        "channel": channel, "mode": "sub_merchant", "provider_account_id": provider_account_id,
        "params": params, "callback_ip_allowlist": ["127.0.0.0/8"],
    })
}

/// What activating `body` for a new merchant answers (the hostile cases of provider mode).
fn activation_refused(base: &str, body: Value) -> (u16, Value) {
    let (status, merchant) = call(
        "POST",
        &format!("{base}/v1/merchants"),
        ADMIN_TOKEN,
        Some(json!({"name": "Refused"})),
    );
    assert_eq!(status, 201, "{merchant}");
    call(
        "POST",
        &format!(
            "{base}/v1/merchants/{}/channel-accounts",
            merchant["merchant_id"].as_str().unwrap()
        ),
        ADMIN_TOKEN,
        Some(body),
    )
}

/// What a fake gateway tells of itself at `/__control/{what}` (stats, receivers, shares, ...).
fn gateway_control(gateway: &str, what: &str) -> Value {
    pki()
        .client()
        .get(&format!("{gateway}/__control/{what}"))
        .call()
        .unwrap()
        .into_json()
        .unwrap()
}

fn gateway_stats(gateway: &str) -> Value {
    gateway_control(gateway, "stats")
}

#[test]
fn wechatpay_sub_merchants_under_one_provider_pay_refund_and_reconcile_apart() {
    let Some(python) = python() else { return };
    let (_gateway, keys) = fake(&python, "wechatpay_gateway.py");
    let gateway = format!("https://localhost:{}", keys["port"]);
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(dir.path());
    let mut provider_params = keys.clone();
    strip_fake_fields(&mut provider_params);
    provider_params["gateway_url"] = json!(gateway);

    // The platform's provider account acts for sub-merchants and takes no payment itself.
    let platform = Shop::open_account(
        &base,
        json!({"channel": "wechatpay", "mode": "provider", "params": provider_params,
               "callback_ip_allowlist": ["127.0.0.0/8"]}),
    );
    let provider_id = platform.channel_account_id.clone();
    let (status, refused) = platform.pay("own", "1.00", "native_qr", json!({}));
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("invalid_account_mode")),
        "{refused}"
    );

    // Hostile activations: each refused with its reason, nothing recorded.
    let direct = Shop::open(&base, "sandbox", json!({}));
    for (body, expected) in [
        (
            json!({"channel": "wechatpay", "mode": "sub_merchant", "params": {"sub_mchid": "1900000201"}}),
            (422, "invalid_account_mode"),
        ),
        (
            sub_merchant("alipay", &provider_id, json!({"app_auth_token": "x"})),
            (422, "invalid_account_mode"),
        ),
        (
            sub_merchant(
                "sandbox",
                &direct.channel_account_id,
                json!({"sub_merchant_id": "s1"}),
            ),
            (422, "invalid_account_mode"),
        ),
        (
            sub_merchant(
                "wechatpay",
                "ca_doesnotexist000000000000",
                json!({"sub_mchid": "1900000201"}),
            ),
            (404, "channel_account_not_found"),
        ),
        (
            sub_merchant(
                "wechatpay",
                &provider_id,
                json!({"sub_mchid": "1900000201", "api_v3_key": "k"}),
            ),
            (400, "unknown_field"),
        ),
        (
            sub_merchant(
                "wechatpay",
                &provider_id,
                json!({"sub_mchid": "19000-0201"}),
            ),
            (422, "invalid_channel_params"),
        ),
        (
            json!({"channel": "stripe", "mode": "provider", "params": {}}),
            (422, "invalid_account_mode"),
        ),
        (
            json!({"channel": "wechatpay", "mode": "direct", "provider_account_id": provider_id,
                   "params": provider_params}),
            (422, "invalid_account_mode"),
        ),
    ] {
        let (status, answer) = activation_refused(&base, body.clone());
        assert_eq!(
            (status, answer["error"]["code"].as_str().unwrap_or("")),
            expected,
            "{body} -> {answer}"
        );
    }

    let sub_mchids: Vec<String> = keys["sub_mchids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|id| id.as_str().unwrap().to_owned())
        .collect();
    let shops: Vec<Shop> = sub_mchids
        .iter()
        .map(|sub_mchid| {
            Shop::open_account(
                &base,
                sub_merchant("wechatpay", &provider_id, json!({ "sub_mchid": sub_mchid })),
            )
        })
        .collect();
    let (_, listed) = call(
        "GET",
        &format!(
            "{base}/v1/merchants/{}/channel-accounts",
            shops[0].merchant_id
        ),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(listed["data"][0]["mode"], "sub_merchant", "{listed}");
    assert_eq!(
        listed["data"][0]["provider_account_id"],
        provider_id.as_str()
    );

    // A split receiver bound at WeChat Pay for the first sub-merchant, its name sealed under the
    // platform key (the gateway decrypts it with the SDK).
    let receivers_url = format!("{base}/v1/merchants/{}/receivers", shops[0].merchant_id);
    let store = json!({
        "channel_account_id": shops[0].channel_account_id, "receiver_id": "store-7",
        "type": "MERCHANT_ID", "account": "1900000301", "name": "深圳茶叶有限公司",
    });
    let (status, bound) = call("POST", &receivers_url, ADMIN_TOKEN, Some(store.clone()));
    assert_eq!(status, 201, "{bound}");
    assert_eq!(bound["status"], "bound");
    assert!(
        bound.get("name").is_none(),
        "the name is never returned: {bound}"
    );
    let (status, again) = call("POST", &receivers_url, ADMIN_TOKEN, Some(store.clone()));
    assert_eq!(status, 201, "binding the same receiver again replays it");
    assert_eq!(again["created_at"], bound["created_at"]);
    let at_channel = gateway_control(&gateway, "receivers");
    assert_eq!(
        at_channel[sub_mchids[0].as_str()],
        json!([{"type": "MERCHANT_ID", "account": "1900000301", "name": "深圳茶叶有限公司"}]),
        "{at_channel}"
    );
    for (change, expected) in [
        (json!({"account": "1900000399"}), (409, "already_exists")),
        (json!({"type": "userId"}), (400, "invalid_request")),
        (
            json!({"receiver_id": "no spaces"}),
            (400, "invalid_request"),
        ),
        (
            json!({"receiver_id": "r2", "name": null}),
            (422, "channel_refused"),
        ),
        (
            json!({"receiver_id": "r3", "account": "refuse-me"}),
            (422, "channel_refused"),
        ),
        (
            json!({"receiver_id": "r4", "channel_account_id": provider_id}),
            (404, "channel_account_not_found"),
        ),
        (
            json!({"receiver_id": "r5", "extra": 1}),
            (400, "unknown_field"),
        ),
    ] {
        let mut body = store.clone();
        for (key, value) in change.as_object().unwrap() {
            body[key] = value.clone();
        }
        let (status, answer) = call("POST", &receivers_url, ADMIN_TOKEN, Some(body.clone()));
        assert_eq!(
            (status, answer["error"]["code"].as_str().unwrap_or("")),
            expected,
            "{body} -> {answer}"
        );
    }
    let (_, listed) = call("GET", &receivers_url, ADMIN_TOKEN, None);
    assert_eq!(listed["data"].as_array().unwrap().len(), 1, "{listed}");
    let (status, removed) = call(
        "DELETE",
        &format!("{receivers_url}/store-7"),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(
        (status, removed["status"].as_str()),
        (200, Some("removed")),
        "{removed}"
    );
    let (status, again) = call(
        "DELETE",
        &format!("{receivers_url}/store-7"),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(
        (status, again["error"]["code"].as_str()),
        (404, Some("receiver_not_found"))
    );
    let (_, listed) = call("GET", &receivers_url, ADMIN_TOKEN, None);
    assert_eq!(listed["data"], json!([]));
    let at_channel = gateway_control(&gateway, "receivers");
    assert_eq!(
        at_channel[sub_mchids[0].as_str()],
        json!([]),
        "unbound at WeChat Pay too"
    );

    let mut trades = Vec::new();
    for (index, shop) in shops.iter().enumerate() {
        let amount = format!("{}.00", index + 5);
        let (status, paying) = shop.pay(&format!("sub-{index}"), &amount, "native_qr", json!({}));
        assert_eq!(status, 201, "{paying}");
        let trade_no = paying["trade_no"].as_str().unwrap().to_owned();
        let at_channel = post_json(
            &format!("{gateway}/__control/trade"),
            json!({ "out_trade_no": trade_no }),
        );
        assert_eq!(
            at_channel["sub_mchid"],
            sub_mchids[index].as_str(),
            "{at_channel}"
        );
        trades.push(trade_no);
    }
    // A JSAPI payment of a sub-merchant: the provider's openid, signed under the provider's app.
    let (status, jsapi) = shops[0].pay(
        "sub-js",
        "1.00",
        "jsapi",
        json!({"payer_id": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}),
    );
    assert_eq!(status, 201, "{jsapi}");
    assert_eq!(jsapi["action"]["params"]["appId"], keys["appid"]);

    // The first sub-merchant's paid notify posted to the second's callback address is refused
    // there and settles nothing.
    let crossing = post_json(
        &format!("{gateway}/__control/pay"),
        json!({
            "out_trade_no": trades[0],
            "notify_url": format!("{base}/callbacks/wechatpay/{}", shops[1].channel_account_id),
        }),
    );
    assert_eq!(crossing["status"], 400, "{crossing}");
    assert_eq!(shops[0].payment(&trades[0])["status"], "pending");
    for (shop, trade_no) in shops.iter().zip(&trades) {
        let paid = post_json(
            &format!("{gateway}/__control/pay"),
            json!({ "out_trade_no": trade_no }),
        );
        assert_eq!(paid["status"], 204, "{paid}");
        shop.wait_status(trade_no, "succeeded");
        // Another merchant's app cannot see it.
        let (status, _) = call(
            "GET",
            &format!("{base}/v1/payments/{trade_no}"),
            &shops
                .iter()
                .find(|other| other.merchant_id != shop.merchant_id)
                .unwrap()
                .api_key,
            None,
        );
        assert_eq!(status, 404);
    }
    // Refunds go out for each sub-merchant and settle by its partner-mode notify.
    for (index, (shop, trade_no)) in shops.iter().zip(&trades).enumerate() {
        shop.refund(trade_no, &format!("sub-refund-{index}"), "1.00");
        shop.wait_refund_succeeded(trade_no);
    }
    // Each sub-merchant's bill holds its own payment and refund, nothing of the other's.
    for shop in &shops {
        let result = shop.reconcile_today();
        assert_eq!(result["discrepancies"], json!([]), "{result}");
        assert_eq!(result["matched"], 2, "{result}");
    }
    // The provider's own bill is not reconciled on its account: its sub-merchants' are.
    let (status, refused) = call(
        "POST",
        &format!("{base}/v1/reconciliations"),
        ADMIN_TOKEN,
        Some(json!({"channel_account_id": provider_id, "date": "2026-01-01"})),
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("invalid_account_mode"))
    );

    // A disabled provider takes its sub-merchants' payments down with it.
    let provider_path = format!(
        "{base}/v1/merchants/{}/channel-accounts/{provider_id}",
        platform.merchant_id
    );
    let (status, _) = call(
        "POST",
        &format!("{provider_path}/disable"),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(status, 200);
    let (status, refused) = shops[1].pay("sub-off", "1.00", "native_qr", json!({}));
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("channel_account_disabled")),
        "{refused}"
    );
    let (status, _) = call(
        "POST",
        &format!("{provider_path}/enable"),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(status, 200);

    // The provider's keys rotated (here: to another gateway with other keys) reach every
    // sub-merchant at its next call.
    let (_second, second_keys) = fake(&python, "wechatpay_gateway.py");
    let second = format!("https://localhost:{}", second_keys["port"]);
    let mut rotated = second_keys.clone();
    strip_fake_fields(&mut rotated);
    rotated["gateway_url"] = json!(second);
    let (status, answer) = call(
        "PUT",
        &provider_path,
        ADMIN_TOKEN,
        Some(json!({ "params": rotated })),
    );
    assert_eq!(status, 200, "{answer}");
    let (status, paying) = shops[1].pay("sub-rotated", "2.00", "native_qr", json!({}));
    assert_eq!(status, 201, "{paying}");
    let at_second = post_json(
        &format!("{second}/__control/trade"),
        json!({ "out_trade_no": paying["trade_no"] }),
    );
    assert_eq!(
        at_second["sub_mchid"],
        sub_mchids[1].as_str(),
        "{at_second}"
    );

    let stats = gateway_stats(&gateway);
    assert_eq!(stats["rejected"], 0, "{stats}");
    assert_eq!(stats["sdk_mismatches"], json!([]), "{stats}");
    // Three payments and two refunds in partner mode, each rebuilt by the SDK and equal.
    assert!(stats["sdk_checked"].as_u64().unwrap() >= 5, "{stats}");
}

#[test]
fn alipay_sub_merchants_act_through_the_providers_app_with_their_own_tokens() {
    let Some(python) = python() else { return };
    let (_gateway, keys) = fake(&python, "alipay_gateway.py");
    let gateway = format!("https://localhost:{}", keys["port"]);
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(dir.path());
    let platform = Shop::open_account(
        &base,
        json!({"channel": "alipay", "mode": "provider", "params": alipay_params(&keys),
               "callback_ip_allowlist": ["127.0.0.0/8"]}),
    );
    let tokens: Vec<String> = keys["app_auth_tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|token| token.as_str().unwrap().to_owned())
        .collect();
    let (status, refused) = activation_refused(
        &base,
        sub_merchant("alipay", &platform.channel_account_id, json!({})),
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("invalid_channel_params")),
        "{refused}"
    );
    let shops: Vec<Shop> = tokens
        .iter()
        .map(|token| {
            Shop::open_account(
                &base,
                sub_merchant(
                    "alipay",
                    &platform.channel_account_id,
                    json!({ "app_auth_token": token }),
                ),
            )
        })
        .collect();
    // A royalty receiver bound for the first sub-merchant, under its own token.
    let (status, bound) = call(
        "POST",
        &format!("{base}/v1/merchants/{}/receivers", shops[0].merchant_id),
        ADMIN_TOKEN,
        Some(
            json!({"channel_account_id": shops[0].channel_account_id, "receiver_id": "agent",
                    "type": "loginName", "account": "agent@example.com", "name": "王小二"}),
        ),
    );
    assert_eq!(status, 201, "{bound}");
    let relations = gateway_control(&gateway, "relations");
    assert_eq!(
        relations[tokens[0].as_str()],
        json!([{"type": "loginName", "account": "agent@example.com", "name": "王小二"}]),
        "{relations}"
    );
    let mut trades = Vec::new();
    for (index, shop) in shops.iter().enumerate() {
        let (status, paying) =
            shop.pay(&format!("ali-sub-{index}"), "9.00", "native_qr", json!({}));
        assert_eq!(status, 201, "{paying}");
        trades.push(paying["trade_no"].as_str().unwrap().to_owned());
    }
    // A page payment's signed URL carries the token too, and both SDKs verify it.
    let (status, page) = shops[0].pay("ali-sub-page", "3.00", "pc", json!({}));
    assert_eq!(status, 201, "{page}");
    let verdict = post_json(
        &format!("{gateway}/__control/verify_query"),
        json!({"query": query_of(page["action"]["url"].as_str().unwrap())}),
    );
    assert_eq!(
        (
            verdict["python_sdk"].as_bool(),
            verdict["official_sdk"].as_bool()
        ),
        (Some(true), Some(true)),
        "{verdict}"
    );
    assert_eq!(verdict["params"]["app_auth_token"], tokens[0].as_str());

    let crossing = post_json(
        &format!("{gateway}/__control/pay"),
        json!({
            "out_trade_no": trades[0],
            "notify_url": format!("{base}/callbacks/alipay/{}", shops[1].channel_account_id),
        }),
    );
    assert_eq!(crossing["status"], 400, "{crossing}");
    assert_eq!(shops[0].payment(&trades[0])["status"], "pending");
    for (shop, trade_no) in shops.iter().zip(&trades) {
        let paid = post_json(
            &format!("{gateway}/__control/pay"),
            json!({ "out_trade_no": trade_no }),
        );
        assert_eq!(paid["status"], 200, "{paid}");
        assert!(paid["notify"]["auth_app_id"].is_string(), "{paid}");
        shop.wait_status(trade_no, "succeeded");
        shop.refund(trade_no, "ali-sub-refund", "4.00");
        shop.wait_refund_succeeded(trade_no);
    }
    for shop in &shops {
        let result = shop.reconcile_today();
        assert_eq!(result["discrepancies"], json!([]), "{result}");
        assert_eq!(result["matched"], 2, "{result}");
    }

    // A split settled at Alipay for the first sub-merchant, then a refund that takes the
    // agent's share of it back within the refund (refund_royalty_parameters).
    let (status, shared) = shops[0].pay(
        "ali-share",
        "10.00",
        "native_qr",
        json!({"share": "auto", "splits": [{"receiver": "agent", "amount": "2.00"}]}),
    );
    assert_eq!(status, 201, "{shared}");
    let shared_trade = shared["trade_no"].as_str().unwrap().to_owned();
    post_json(
        &format!("{gateway}/__control/pay"),
        json!({ "out_trade_no": shared_trade }),
    );
    wait_for("settled at Alipay", || {
        shops[0].payment(&shared_trade)["shares"][0]["status"] == "shared"
    });
    shops[0].refund(&shared_trade, "ali-share-refund", "5.00");
    shops[0].wait_refund_succeeded(&shared_trade);
    assert_eq!(
        shops[0].payment(&shared_trade)["shares"][0]["returned"],
        "1.00"
    );
    let settlements = gateway_control(&gateway, "settlements");
    let settlement = settlements.as_object().unwrap().values().next().unwrap();
    assert_eq!(
        settlement["royalties"][0]["trans_in"], "agent@example.com",
        "{settlements}"
    );
    assert_eq!(settlement["royalty_finish"], "true");
    assert_eq!(settlement["returned"][0]["amount"], "1.00", "{settlements}");

    let stats = gateway_stats(&gateway);
    assert_eq!(stats["rejected"], 0, "{stats}");
    assert!(
        stats["with_app_auth_token"].as_u64().unwrap() >= 8,
        "every call for a sub-merchant carried its token: {stats}"
    );
}

/// A merchant's balance of `account` in CNY (major units), zero when absent.
fn balance_of(shop: &Shop, account: &str) -> String {
    support::balance(&shop.base, ADMIN_TOKEN, &shop.merchant_id, account)
}

#[test]
fn wechatpay_splits_are_shared_at_the_channel_and_taken_back_for_refunds() {
    let Some(python) = python() else { return };
    let (_gateway, keys) = fake(&python, "wechatpay_gateway.py");
    let gateway = format!("https://localhost:{}", keys["port"]);
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = start_paycenter(dir.path());
    let mut provider_params = keys.clone();
    strip_fake_fields(&mut provider_params);
    provider_params["gateway_url"] = json!(gateway);
    let platform = Shop::open_account(
        &base,
        json!({"channel": "wechatpay", "mode": "provider", "params": provider_params,
               "callback_ip_allowlist": ["127.0.0.0/8"]}),
    );
    let sub_mchid = keys["sub_mchids"][0].as_str().unwrap();
    let shop = Shop::open_account(
        &base,
        sub_merchant(
            "wechatpay",
            &platform.channel_account_id,
            json!({ "sub_mchid": sub_mchid }),
        ),
    );
    let receivers_url = format!("{base}/v1/merchants/{}/receivers", shop.merchant_id);
    for (receiver_id, account) in [
        ("store", "1900000301"),
        ("closed-store", "close-1900000302"),
    ] {
        let (status, bound) = call(
            "POST",
            &receivers_url,
            ADMIN_TOKEN,
            Some(
                json!({"channel_account_id": shop.channel_account_id, "receiver_id": receiver_id,
                        "type": "MERCHANT_ID", "account": account, "name": "深圳茶叶有限公司"}),
            ),
        );
        assert_eq!(status, 201, "{bound}");
    }
    let (status, bound) = call(
        "POST",
        &receivers_url,
        ADMIN_TOKEN,
        Some(
            json!({"channel_account_id": shop.channel_account_id, "receiver_id": "fan",
                    "type": "PERSONAL_OPENID", "account": "oFan0123456789"}),
        ),
    );
    assert_eq!(status, 201, "{bound}");

    // Refused before anything is recorded: an unbound receiver, a channel that shares nothing.
    let (status, refused) = shop.pay(
        "share-unbound",
        "10.00",
        "native_qr",
        json!({"share": "auto", "splits": [{"receiver": "nobody", "amount": "1.00"}]}),
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("invalid_splits")),
        "{refused}"
    );
    let (status, refused) = shop.pay(
        "share-bad",
        "10.00",
        "native_qr",
        json!({"share": "always"}),
    );
    assert_eq!(
        (status, refused["error"]["field"].as_str()),
        (400, Some("share"))
    );

    // Auto: shared as soon as it is paid; a refund takes the store's part back first.
    let (status, auto) = shop.pay(
        "share-auto",
        "100.00",
        "native_qr",
        json!({"share": "auto", "splits": [{"receiver": "store", "amount": "30.00"}]}),
    );
    assert_eq!(status, 201, "{auto}");
    let auto_trade = auto["trade_no"].as_str().unwrap().to_owned();
    let paid = post_json(
        &format!("{gateway}/__control/pay"),
        json!({ "out_trade_no": auto_trade }),
    );
    assert_eq!(paid["status"], 204, "{paid}");
    wait_for("the auto share paid", || {
        shop.payment(&auto_trade)["shares"]
            == json!([{"receiver": "store", "amount": "30.00", "returned": "0.00", "status": "shared"}])
    });
    let orders = gateway_control(&gateway, "shares");
    let order = orders
        .as_object()
        .unwrap()
        .values()
        .find(|order| order["transaction_id"] == paid["transaction_id"])
        .unwrap_or_else(|| panic!("{orders}"));
    assert_eq!(order["receivers"][0]["amount"], 3000, "{order}");
    assert_eq!(order["unfreeze_unsplit"], true);
    assert_eq!(balance_of(&shop, "split:store"), "0.00");
    assert_eq!(balance_of(&shop, "shared:store"), "30.00");

    shop.refund(&auto_trade, "share-refund-1", "20.00");
    shop.wait_refund_succeeded(&auto_trade);
    let payment = shop.payment(&auto_trade);
    assert_eq!(payment["shares"][0]["returned"], "6.00", "{payment}");
    assert_eq!(payment["shares"][0]["status"], "shared");
    assert_eq!(balance_of(&shop, "shared:store"), "24.00");
    assert_eq!(balance_of(&shop, "split:store"), "0.00");
    let orders = gateway_control(&gateway, "shares");
    let returned: i64 = orders
        .as_object()
        .unwrap()
        .values()
        .flat_map(|order| order["returns"].as_array().unwrap().clone())
        .map(|ret| ret["amount"].as_i64().unwrap())
        .sum();
    assert_eq!(
        returned, 600,
        "the store gave back 20 % of its 30.00: {orders}"
    );

    // Manual: shared when the app asks; the channel failing twice is retried and reported.
    let manual_trade = shop.paid_at_fake(
        &gateway,
        "share-manual",
        "50.00",
        json!({"share": "manual", "splits": [{"receiver": "store", "amount": "5.00"}]}),
    );
    shop.wait_status(&manual_trade, "succeeded");
    assert_eq!(shop.payment(&manual_trade)["shares"], json!([]));
    post_json(&format!("{gateway}/__control/fail_shares"), json!({"n": 2}));
    let (status, asked) = call(
        "POST",
        &format!("{base}/v1/payments/{manual_trade}/share"),
        &shop.api_key,
        None,
    );
    assert_eq!(status, 202, "{asked}");
    assert_eq!(asked["shares"][0]["status"], "pending", "{asked}");
    wait_for("the manual share paid after two failures", || {
        shop.payment(&manual_trade)["shares"][0]["status"] == "shared"
    });
    let payment = shop.payment(&manual_trade);
    assert!(
        payment["share_error"].as_str().unwrap().contains("500"),
        "the failures are reported: {payment}"
    );
    // Asking again changes nothing.
    let (status, again) = call(
        "POST",
        &format!("{base}/v1/payments/{manual_trade}/share"),
        &shop.api_key,
        None,
    );
    assert_eq!(
        (status, again["shares"][0]["status"].as_str()),
        (202, Some("shared"))
    );

    // A receiver the channel closes fails the share for good; the money stays with the merchant.
    let closing_trade = shop.paid_at_fake(
        &gateway,
        "share-closed",
        "10.00",
        json!({"share": "auto", "splits": [{"receiver": "closed-store", "amount": "1.00"}]}),
    );
    wait_for("the closed share failed", || {
        shop.payment(&closing_trade)["shares"][0]["status"] == "failed"
    });
    assert!(shop.payment(&closing_trade)["share_error"]
        .as_str()
        .unwrap()
        .contains("ACCOUNT_ABNORMAL"));
    assert_eq!(balance_of(&shop, "split:closed-store"), "1.00");

    // WeChat Pay takes nothing back from a personal receiver: a refund that would need it
    // fails with the reason (and the shared money stays shared).
    let fan_trade = shop.paid_at_fake(
        &gateway,
        "share-fan",
        "10.00",
        json!({"share": "auto", "splits": [{"receiver": "fan", "amount": "1.00"}]}),
    );
    wait_for("the fan's share paid", || {
        shop.payment(&fan_trade)["shares"][0]["status"] == "shared"
    });
    shop.refund(&fan_trade, "share-fan-refund", "5.00");
    wait_for("the refund failed", || {
        shop.payment(&fan_trade)["refunds"][0]["status"] == "failed"
    });
    assert_eq!(balance_of(&shop, "shared:fan"), "1.00");

    // A payment made without sharing cannot be shared later.
    let (status, plain) = shop.pay("share-none", "10.00", "native_qr", json!({}));
    assert_eq!(status, 201, "{plain}");
    let plain_trade = plain["trade_no"].as_str().unwrap().to_owned();
    post_json(
        &format!("{gateway}/__control/pay"),
        json!({ "out_trade_no": plain_trade }),
    );
    shop.wait_status(&plain_trade, "succeeded");
    let (status, refused) = call(
        "POST",
        &format!("{base}/v1/payments/{plain_trade}/share"),
        &shop.api_key,
        None,
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("payment_not_shareable")),
        "{refused}"
    );
    // The app hears of each settled share: payment.shared, payment.share_failed (its feed
    // carries what its webhooks carried).
    wait_for("the share webhooks", || {
        let (_, feed) = call("GET", &format!("{base}/v1/events"), &shop.api_key, None);
        let events = feed["events"].as_array().cloned().unwrap_or_default();
        let has = |kind: &str, trade_no: &str| {
            events.iter().any(|event| {
                event["type"] == kind && event["data"]["payment"]["trade_no"] == trade_no
            })
        };
        has("payment.shared", &auto_trade) && has("payment.share_failed", &closing_trade)
    });

    // A share asked for survives kill -9: the restarted service submits it.
    let late_trade = shop.paid_at_fake(
        &gateway,
        "share-restart",
        "20.00",
        json!({"share": "manual", "splits": [{"receiver": "store", "amount": "2.00"}]}),
    );
    shop.wait_status(&late_trade, "succeeded");
    post_json(&format!("{gateway}/__control/fail_shares"), json!({"n": 3}));
    let (status, _) = call(
        "POST",
        &format!("{base}/v1/payments/{late_trade}/share"),
        &shop.api_key,
        None,
    );
    assert_eq!(status, 202);
    drop(server); // SIGKILL
    let (_server, base) = start_paycenter(dir.path());
    let shop = Shop { base, ..shop };
    wait_for("the share submitted after the restart", || {
        shop.payment(&late_trade)["shares"][0]["status"] == "shared"
    });

    let stats = gateway_stats(&gateway);
    assert_eq!(stats["sdk_mismatches"], json!([]), "{stats}");
}

#[test]
fn alipay_pays_out_in_certificate_mode_as_both_sdks_check_it() {
    let Some(python) = python() else { return };
    let (_gateway, keys) = fake(&python, "alipay_gateway.py");
    let gateway = format!("https://localhost:{}", keys["port"]);
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(dir.path());
    let mut params = alipay_params(&keys);
    params["app_cert_sn"] = json!("c3a9f1e0b2d4c6e8a0f2b4d6e8c0a2f4");
    params["alipay_root_cert_sn"] =
        json!("687b59193f3f462dd5336e5abf83c5d8_02941eef3187dddf3d3b83462e1dfcf6");
    let shop = Shop::open(&base, "alipay", params);
    // Something earned: a paid precreate.
    let trade_no = shop.paid_at_fake(&gateway, "po-earn", "50.00", json!({}));
    shop.wait_status(&trade_no, "succeeded");
    let wait_payout =
        |payout_id: &str, status: &str| support::wait_payout(&base, ADMIN_TOKEN, payout_id, status);
    let (status, paying) = shop.payout(
        "po-1",
        "20.00",
        json!({"type": "alipay_login", "account": "landlord@example.com", "name": "张三"}),
    );
    assert_eq!(status, 201, "{paying}");
    let paid = wait_payout(paying["payout_id"].as_str().unwrap(), "succeeded");
    let transfers = gateway_control(&gateway, "transfers");
    let transfer = &transfers[paying["payout_id"].as_str().unwrap()];
    assert_eq!(transfer["trans_amount"], "20.00", "{transfers}");
    assert_eq!(transfer["payee_info"]["name"], "张三");
    assert_eq!(paid["channel_payout_no"], transfer["order_id"]);
    // A payee Alipay does not know: failed, the money the merchant's again.
    let (status, failing) = shop.payout(
        "po-2",
        "30.00",
        json!({"type": "alipay_user_id", "account": "nobody-2088000000000000"}),
    );
    assert_eq!(status, 201, "{failing}");
    let failed = wait_payout(failing["payout_id"].as_str().unwrap(), "failed");
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .contains("PAYEE_NOT_EXIST"),
        "{failed}"
    );
    let (status, last) = shop.payout(
        "po-3",
        "30.00",
        json!({"type": "alipay_user_id", "account": "2088000000000001"}),
    );
    assert_eq!(status, 201, "{last}");
    wait_payout(last["payout_id"].as_str().unwrap(), "succeeded");
    assert_eq!(balance_of(&shop, "payable"), "0.00");
    // The day's reconciliation asks Alipay about each (alipay.fund.trans.common.query).
    assert_eq!(
        shop.reconcile_today()["payouts"],
        json!({"checked": 3, "matched": 3, "discrepancies": []})
    );
    // A transfer Alipay leaves dealing settles by its change message (signed as a notify).
    let trade_no = shop.paid_at_fake(&gateway, "po-earn-2", "10.00", json!({}));
    shop.wait_status(&trade_no, "succeeded");
    let (status, dealing) = shop.payout(
        "po-4",
        "10.00",
        json!({"type": "alipay_user_id", "account": "slow-2088000000000002"}),
    );
    assert_eq!(status, 201, "{dealing}");
    let dealing_id = dealing["payout_id"].as_str().unwrap();
    wait_for("the transfer taken", || {
        gateway_control(&gateway, "transfers")[dealing_id]["status"] == "DEALING"
    });
    let changed = post_json(
        &format!("{gateway}/__control/transfer_changed"),
        json!({"out_biz_no": dealing_id, "status": "SUCCESS",
               "notify_url": format!("{base}/callbacks/alipay/{}", shop.channel_account_id)}),
    );
    assert_eq!(
        (changed["status"].as_u64(), changed["answer"].as_str()),
        (Some(200), Some("success")),
        "{changed}"
    );
    wait_payout(dealing_id, "succeeded");
    assert_eq!(balance_of(&shop, "payable"), "0.00");
    assert_eq!(gateway_stats(&gateway)["rejected"], 0);
    // Without certificate mode Alipay pays nothing out: refused, recorded as failed.
    let plain = Shop::open(&base, "alipay", alipay_params(&keys));
    let trade_no = plain.paid_at_fake(&gateway, "po-plain", "5.00", json!({}));
    plain.wait_status(&trade_no, "succeeded");
    let (status, refused) = plain.payout(
        "po-plain",
        "1.00",
        json!({"type": "alipay_user_id", "account": "2088000000000001"}),
    );
    assert_eq!(status, 201, "{refused}");
    let failed = wait_payout(refused["payout_id"].as_str().unwrap(), "failed");
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .contains("certificate"),
        "{failed}"
    );
}

#[test]
fn wechatpay_pays_out_by_merchant_transfer_once_the_user_confirms() {
    let Some(python) = python() else { return };
    let (_gateway, keys) = fake(&python, "wechatpay_gateway.py");
    let gateway = format!("https://localhost:{}", keys["port"]);
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(dir.path());
    let mut params = keys.clone();
    strip_fake_fields(&mut params);
    params["gateway_url"] = json!(gateway);
    // Hostile scene parameters are refused at activation.
    for (scene, infos) in [
        (json!("scene-1000"), json!(null)),
        (json!("1000"), json!("not json")),
        (json!("1000"), json!("[{\"info_type\": \"活动名称\"}]")),
        (json!(null), json!("[]")),
    ] {
        let mut hostile = params.clone();
        hostile["transfer_scene_id"] = scene;
        hostile["transfer_scene_report_infos"] = infos;
        let (status, refused) =
            activation_refused(&base, json!({"channel": "wechatpay", "params": hostile}));
        assert_eq!(
            (status, refused["error"]["code"].as_str()),
            (422, Some("invalid_channel_params")),
            "{refused}"
        );
    }
    let mut with_scene = params.clone();
    with_scene["transfer_scene_id"] = json!("1000");
    with_scene["transfer_scene_report_infos"] = json!(
        "[{\"info_type\": \"活动名称\", \"info_content\": \"押金退还\"}, {\"info_type\": \"奖励说明\", \"info_content\": \"退租押金\"}]"
    );
    let shop = Shop::open(&base, "wechatpay", with_scene);
    let trade_no = shop.paid_at_fake(&gateway, "deposit", "50.00", json!({}));
    shop.wait_status(&trade_no, "succeeded");
    let wait_payout =
        |payout_id: &str, status: &str| support::wait_payout(&base, ADMIN_TOKEN, payout_id, status);

    // The transfer waits for its user: the app gets what wx.requestMerchantTransfer needs.
    let (status, paying) = shop.payout(
        "deposit-back",
        "20.00",
        json!({"type": "wechat_openid", "account": "oTenant0123456789", "name": "张三"}),
    );
    assert_eq!(status, 201, "{paying}");
    let payout_id = paying["payout_id"].as_str().unwrap().to_owned();
    let waiting = wait_payout(&payout_id, "awaiting_confirmation");
    let out_bill_no = payout_id.strip_prefix("po_").unwrap();
    let bills = gateway_control(&gateway, "transfers");
    let bill = &bills[out_bill_no];
    assert_eq!(
        waiting["confirmation"],
        json!({"package_info": bill["package_info"], "mch_id": keys["mchid"], "app_id": keys["appid"]}),
        "{waiting}"
    );
    assert_eq!(bill["transfer_amount"], 2000, "{bill}");
    assert_eq!(
        bill["user_name"], "张三",
        "the name decrypts under the platform key"
    );
    assert_eq!(bill["transfer_scene_id"], "1000");
    assert_eq!(
        bill["transfer_scene_report_infos"][0]["info_content"],
        "押金退还"
    );
    assert!(
        bill["notify_url"]
            .as_str()
            .unwrap()
            .ends_with(&format!("/callbacks/wechatpay/{}", shop.channel_account_id)),
        "{bill}"
    );
    // Still held: 50.00 earned, 20.00 waiting.
    let (status, refused) = shop.payout(
        "too-much",
        "30.01",
        json!({"type": "wechat_openid", "account": "oTenant0123456789"}),
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("insufficient_balance")),
        "{refused}"
    );
    // The user confirms; WeChat Pay's notify settles it.
    let notified = post_json(
        &format!("{gateway}/__control/settle_transfer"),
        json!({"out_bill_no": out_bill_no, "state": "SUCCESS"}),
    );
    assert_eq!(notified["status"], 204, "{notified}");
    let paid = wait_payout(&payout_id, "succeeded");
    assert_eq!(paid["channel_payout_no"], bill["transfer_bill_no"]);
    assert_eq!(paid["confirmation"], Value::Null);
    assert_eq!(balance_of(&shop, "payable"), "30.00");
    assert_eq!(balance_of(&shop, "paid_out"), "20.00");

    // An openid WeChat Pay will not pay: failed at once, the money the merchant's again.
    let (status, failing) = shop.payout(
        "refused",
        "10.00",
        json!({"type": "wechat_openid", "account": "refuse-oUser"}),
    );
    assert_eq!(status, 201, "{failing}");
    let failed = wait_payout(failing["payout_id"].as_str().unwrap(), "failed");
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .contains("NO_AUTH"),
        "{failed}"
    );
    // A user who lets the transfer fail: told by notify.
    let (status, lapsing) = shop.payout(
        "lapsing",
        "5.00",
        json!({"type": "wechat_openid", "account": "oOther0123456789"}),
    );
    assert_eq!(status, 201, "{lapsing}");
    let lapsing_id = lapsing["payout_id"].as_str().unwrap().to_owned();
    wait_payout(&lapsing_id, "awaiting_confirmation");
    post_json(
        &format!("{gateway}/__control/settle_transfer"),
        json!({"out_bill_no": lapsing_id.strip_prefix("po_").unwrap(), "state": "FAIL"}),
    );
    let lapsed = wait_payout(&lapsing_id, "failed");
    assert_eq!(lapsed["failure_reason"], "PAYEE_ACCOUNT_ABNORMAL");
    assert_eq!(balance_of(&shop, "payable"), "30.00");

    // The app heard each step by webhook.
    wait_for("the payout webhooks", || {
        let (_, feed) = call("GET", &format!("{base}/v1/events"), &shop.api_key, None);
        let events = feed["events"].as_array().cloned().unwrap_or_default();
        let has = |kind: &str, id: &str| {
            events
                .iter()
                .any(|event| event["type"] == kind && event["data"]["payout"]["payout_id"] == id)
        };
        has("payout.awaiting_confirmation", &payout_id)
            && has("payout.succeeded", &payout_id)
            && has("payout.failed", &lapsing_id)
    });

    // The day's reconciliation asks WeChat Pay about each settled payout: all agree, until
    // the channel's record of one changes.
    let reconciled = shop.reconcile_today();
    assert_eq!(
        reconciled["payouts"],
        json!({"checked": 3, "matched": 3, "discrepancies": []}),
        "{reconciled}"
    );
    post_json(
        &format!("{gateway}/__control/settle_transfer"),
        json!({"out_bill_no": out_bill_no, "state": "FAIL", "notify": false}),
    );
    let reconciled = shop.reconcile_today();
    assert_eq!(reconciled["payouts"]["matched"], 2, "{reconciled}");
    assert_eq!(
        reconciled["payouts"]["discrepancies"],
        json!([{"kind": "payout_status_mismatch", "payout_id": payout_id, "payout_no": "deposit-back",
                "paycenter_amount": "20.00", "paycenter_status": "succeeded",
                "channel_amount": "20.00", "channel_status": "failed"}]),
        "{reconciled}"
    );

    // Every transfer call was the one the SDK builds, signed as it checks.
    let stats = gateway_stats(&gateway);
    assert_eq!(stats["rejected"], 0, "{stats}");
    assert_eq!(stats["sdk_mismatches"], json!([]), "{stats}");

    // An account WeChat Pay granted no transfer scene pays nothing out: failed with the reason.
    let plain = Shop::open(&base, "wechatpay", params.clone());
    let trade_no = plain.paid_at_fake(&gateway, "plain", "5.00", json!({}));
    plain.wait_status(&trade_no, "succeeded");
    let (status, refused) = plain.payout(
        "no-scene",
        "1.00",
        json!({"type": "wechat_openid", "account": "oTenant0123456789"}),
    );
    assert_eq!(status, 201, "{refused}");
    let failed = wait_payout(refused["payout_id"].as_str().unwrap(), "failed");
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .contains("transfer_scene_id"),
        "{failed}"
    );
}
