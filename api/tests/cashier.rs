//! The cashier in a real browser (Debian's chromium, driven by `api/tests/browser/cashier.mjs`)
//! against the release-like `paycenter` binary: pay in the sandbox on a phone-sized screen and
//! come back to the app's `return_url`; switch languages; a link without its token shows
//! nothing; and over plain HTTP: the security headers, `return_url` refusals, the sandbox
//! turned off. Screenshots go to `target/cashier-screenshots/`.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::{acknowledging_webhook_sink, call_within, run_browser, start_paycenter, Process};

const ADMIN_TOKEN: &str = "cashier-admin-token-0123456789";

fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    call_within(method, url, token, body, Duration::from_secs(30))
}

/// An app's web page the cashier sends people back to: it records each request line.
fn app_return_page() -> (String, Arc<Mutex<Vec<String>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/paid", listener.local_addr().unwrap());
    let seen: Arc<Mutex<Vec<String>>> = Arc::default();
    let recorded = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(10_000) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 16_384];
            let n = stream.read(&mut buffer).unwrap_or(0);
            let request = String::from_utf8_lossy(&buffer[..n]);
            if let Some(line) = request.lines().next() {
                recorded.lock().unwrap().push(line.to_owned());
            }
            let body = "<!doctype html><title>Back at the app</title><p>Thanks.</p>";
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    (url, seen)
}

struct Shop {
    _server: Process,
    _data_dir: tempfile::TempDir,
    base: String,
    merchant_id: String,
    channel_account_id: String,
    api_key: String,
}

fn open_shop(env: &[(&str, &str)]) -> Shop {
    let data_dir = tempfile::tempdir().unwrap();
    let mut env = env.to_vec();
    env.push(("PAYCENTER_ALLOW_PRIVATE_EGRESS", "1"));
    env.push(("PAYCENTER_MIN_ATTEMPT_INTERVAL_MS", "0"));
    let (server, base) = start_paycenter(data_dir.path(), ADMIN_TOKEN, &env);
    let (status, merchant) = call(
        "POST",
        &format!("{base}/v1/merchants"),
        ADMIN_TOKEN,
        Some(json!({"name": "阳光物业 Sunshine Property"})),
    );
    assert_eq!(status, 201, "{merchant}");
    let merchant_id = merchant["merchant_id"].as_str().unwrap().to_owned();
    let (status, account) = call(
        "POST",
        &format!("{base}/v1/merchants/{merchant_id}/channel-accounts"),
        ADMIN_TOKEN,
        Some(json!({"channel": "sandbox", "params": {"signing_secret": "cashier-sandbox-secret"}})),
    );
    let channel_account_id = if status == 201 {
        account["channel_account_id"].as_str().unwrap().to_owned()
    } else {
        String::new() // The sandbox is off: the caller checks the refusal itself.
    };
    let (status, app) = call(
        "POST",
        &format!("{base}/v1/apps"),
        ADMIN_TOKEN,
        Some(
            json!({"name": "rent", "merchant_ids": [merchant_id], "notify_url": acknowledging_webhook_sink()}),
        ),
    );
    assert_eq!(status, 201, "{app}");
    Shop {
        _server: server,
        _data_dir: data_dir,
        base,
        merchant_id,
        channel_account_id,
        api_key: app["api_key"].as_str().unwrap().to_owned(),
    }
}

impl Shop {
    fn pay(&self, order_no: &str, extra: Value) -> (u16, Value) {
        let mut body = json!({
            "merchant_id": self.merchant_id, "channel_account_id": self.channel_account_id,
            "order_no": order_no, "amount": "88.00", "currency": "CNY", "invoke_method": "pc",
            "subject": "物业费 2026年12月",
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
}

fn get(url: &str) -> (u16, Vec<(String, String)>, String) {
    let response = match ureq::get(url).call() {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{url}: {error}"),
    };
    let headers = response
        .headers_names()
        .into_iter()
        .map(|name| {
            (
                name.clone(),
                response.header(&name).unwrap_or("").to_owned(),
            )
        })
        .collect();
    (response.status(), headers, response.into_string().unwrap())
}

#[test]
fn a_person_pays_on_a_phone_in_chinese_and_comes_back_to_the_app() {
    let shop = open_shop(&[]);
    let (return_url, returns) = app_return_page();
    let (status, created) = shop.pay(
        "ORDER-BROWSER-1",
        json!({"return_url": format!("{return_url}?from=cashier")}),
    );
    assert_eq!(status, 201, "{created}");
    let url = created["action"]["url"].as_str().unwrap().to_owned();
    assert!(
        url.contains("?t="),
        "the checkout link carries its token: {url}"
    );
    let trade_no = created["trade_no"].as_str().unwrap().to_owned();

    let Some(result) = run_browser("pay", json!({"url": url, "return_prefix": return_url})) else {
        return;
    };
    let before = &result["before"];
    assert_eq!(before["status_code"], 200, "{result}");
    assert_eq!(before["amount"], "CNY 88.00", "{result}");
    assert!(
        before["merchant"].as_str().unwrap().contains("阳光物业"),
        "{result}"
    );
    assert!(
        before["pay"].as_str().unwrap().starts_with("支付"),
        "Chinese by Accept-Language: {result}"
    );
    assert_eq!(
        before["overflows"], false,
        "the page fits a phone: {result}"
    );
    assert!(
        result["after"]["status"]
            .as_str()
            .unwrap()
            .contains("支付成功"),
        "{result}"
    );
    assert_eq!(
        result["console_errors"],
        json!([]),
        "no script or policy errors: {result}"
    );
    // Back at the app, with the order, the trade and the status in the query.
    let returned = result["returned"].as_str().unwrap();
    for expected in [
        "from=cashier".to_owned(),
        "order_no=ORDER-BROWSER-1".to_owned(),
        format!("trade_no={trade_no}"),
        "status=succeeded".to_owned(),
    ] {
        assert!(returned.contains(&expected), "{expected} in {returned}");
    }
    assert!(returns
        .lock()
        .unwrap()
        .iter()
        .any(|line| line.contains("status=succeeded")));
    // The app confirms by the API: the payment is paid.
    let (status, payment) = call(
        "GET",
        &format!("{}/v1/payments/{trade_no}", shop.base),
        &shop.api_key,
        None,
    );
    assert_eq!(
        (status, payment["status"].as_str()),
        (200, Some("succeeded"))
    );
}

#[test]
fn a_declined_payment_shows_its_failure_and_goes_back_too() {
    let shop = open_shop(&[]);
    let (return_url, _returns) = app_return_page();
    let (status, created) = shop.pay("ORDER-BROWSER-2", json!({"return_url": return_url}));
    assert_eq!(status, 201, "{created}");
    let Some(result) = run_browser(
        "pay",
        json!({
            "url": created["action"]["url"], "button": "#decline", "expect_status": "failed",
            "return_prefix": return_url,
        }),
    ) else {
        return;
    };
    assert!(
        result["after"]["status"]
            .as_str()
            .unwrap()
            .contains("支付失败"),
        "{result}"
    );
    assert!(
        result["returned"]
            .as_str()
            .unwrap()
            .contains("status=failed"),
        "{result}"
    );
}

#[test]
fn the_language_switches_and_a_link_without_its_token_shows_nothing() {
    let shop = open_shop(&[]);
    let (status, created) = shop.pay("ORDER-BROWSER-3", json!({}));
    assert_eq!(status, 201, "{created}");
    let url = created["action"]["url"].as_str().unwrap().to_owned();
    let trade_no = created["trade_no"].as_str().unwrap().to_owned();
    let bare = format!("{}/checkout/{trade_no}", shop.base);

    // Over HTTP: the page's headers, and nothing without the token.
    let (status, headers, page) = get(&url);
    assert_eq!(status, 200);
    let header = |name: &str| {
        headers
            .iter()
            .find(|(key, _)| key.eq_ignore_ascii_case(name))
            .map(|(_, value)| value.clone())
            .unwrap_or_default()
    };
    assert!(header("content-security-policy").contains("frame-ancestors 'none'"));
    assert!(header("content-security-policy").contains("script-src 'self'"));
    assert_eq!(header("x-content-type-options"), "nosniff");
    assert_eq!(header("referrer-policy"), "no-referrer");
    assert!(page.contains("88.00"));
    for link in [
        bare.clone(),
        format!("{bare}?t=AAAAAAAAAAAAAAAAAAAAAA"),
        format!("{url}x"),
    ] {
        let (status, _, page) = get(&link);
        assert_eq!(status, 404, "{link}");
        assert!(
            !page.contains("88.00") && !page.contains("阳光物业") && !page.contains("物业费"),
            "{page}"
        );
    }
    let (status, _, answer) = get(&format!("{}/checkout/{trade_no}/status", shop.base));
    assert_eq!(status, 404, "{answer}");
    let status_url = url.replace(
        &format!("/checkout/{trade_no}?"),
        &format!("/checkout/{trade_no}/status?"),
    );
    let (status, _, answer) = get(&status_url);
    assert_eq!(status, 200, "{answer}");
    assert!(answer.contains("\"status\":\"pending\""), "{answer}");

    let Some(languages) = run_browser("language", json!({"url": format!("{url}&lang=en")})) else {
        return;
    };
    assert_eq!(languages["english"]["lang"], "en", "{languages}");
    assert!(
        languages["english"]["pay"]
            .as_str()
            .unwrap()
            .starts_with("Pay"),
        "{languages}"
    );
    assert_eq!(languages["chinese"]["lang"], "zh", "{languages}");
    assert!(
        languages["chinese"]["pay"]
            .as_str()
            .unwrap()
            .starts_with("支付"),
        "{languages}"
    );
    let invalid = run_browser("invalid", json!({"url": bare})).unwrap();
    assert_eq!(invalid["status_code"], 404, "{invalid}");
    assert!(
        !invalid["body"].as_str().unwrap().contains("88.00"),
        "{invalid}"
    );
}

#[test]
fn return_urls_are_checked_and_the_sandbox_can_be_turned_off() {
    let shop = open_shop(&[]);
    for (return_url, status, code) in [
        (json!("ftp://example.com/paid"), 422, "invalid_return_url"),
        (
            json!("http://169.254.169.254/latest"),
            422,
            "invalid_return_url",
        ),
        (json!(12), 400, "invalid_request"),
    ] {
        let (answer_status, answer) =
            shop.pay("ORDER-BAD-RETURN", json!({"return_url": return_url}));
        assert_eq!(
            (answer_status, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{return_url}: {answer}"
        );
    }

    let off = open_shop(&[("PAYCENTER_SANDBOX", "0")]);
    assert!(
        off.channel_account_id.is_empty(),
        "no sandbox account can be activated"
    );
    let (status, refused) = call(
        "POST",
        &format!(
            "{}/v1/merchants/{}/channel-accounts",
            off.base, off.merchant_id
        ),
        ADMIN_TOKEN,
        Some(json!({"channel": "sandbox", "params": {"signing_secret": "cashier-sandbox-secret"}})),
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("unsupported_channel")),
        "{refused}"
    );
    let (status, absent) = call(
        "POST",
        &format!("{}/sandbox/pay/20261202000000000000000000000001", off.base),
        "",
        Some(json!({"outcome": "success"})),
    );
    assert_eq!(
        (status, absent["error"]["code"].as_str()),
        (404, Some("route_not_found")),
        "{absent}"
    );
}

#[test]
fn the_aggregated_cashier_lets_the_person_pick_the_account() {
    let shop = open_shop(&[]);
    // A second sandbox account: the cashier offers both.
    let (status, second) = call(
        "POST",
        &format!(
            "{}/v1/merchants/{}/channel-accounts",
            shop.base, shop.merchant_id
        ),
        ADMIN_TOKEN,
        Some(
            json!({"channel": "sandbox", "params": {"signing_secret": "cashier-sandbox-secret-2"}}),
        ),
    );
    assert_eq!(status, 201, "{second}");
    let (return_url, _returns) = app_return_page();
    let cashier_body = json!({
        "merchant_id": shop.merchant_id, "order_no": "ORDER-CASHIER-1", "amount": "66.00",
        "currency": "CNY", "invoke_method": "cashier", "subject": "停车费", "return_url": return_url,
    });
    let (status, opened) = call(
        "POST",
        &format!("{}/v1/payments", shop.base),
        &shop.api_key,
        Some(cashier_body.clone()),
    );
    assert_eq!(status, 201, "{opened}");
    assert_eq!(opened["invoke_method"], "cashier");
    assert_eq!(opened["status"], "pending");
    let checkout_id = opened["checkout_id"].as_str().unwrap().to_owned();
    assert!(checkout_id.starts_with("co_"), "{opened}");
    // Opening it again is the same cashier; another amount is another order.
    let (status, again) = call(
        "POST",
        &format!("{}/v1/payments", shop.base),
        &shop.api_key,
        Some(cashier_body.clone()),
    );
    assert_eq!(
        (status, again["checkout_id"].as_str()),
        (201, Some(checkout_id.as_str())),
        "{again}"
    );
    let mut other_amount = cashier_body.clone();
    other_amount["amount"] = json!("67.00");
    let (status, refused) = call(
        "POST",
        &format!("{}/v1/payments", shop.base),
        &shop.api_key,
        Some(other_amount),
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("order_amount_mismatch")),
        "{refused}"
    );
    // A cashier names no account; an attempt must.
    let mut with_account = cashier_body.clone();
    with_account["channel_account_id"] = json!(shop.channel_account_id);
    let (status, refused) = call(
        "POST",
        &format!("{}/v1/payments", shop.base),
        &shop.api_key,
        Some(with_account),
    );
    assert_eq!(
        (status, refused["error"]["field"].as_str()),
        (400, Some("channel_account_id")),
        "{refused}"
    );
    let (status, refused) = shop.pay("ORDER-NO-ACCOUNT", json!({"channel_account_id": null}));
    assert_eq!(
        (status, refused["error"]["field"].as_str()),
        (400, Some("channel_account_id")),
        "{refused}"
    );
    // Without its token the cashier shows nothing.
    let (status, _, page) = get(&format!("{}/checkout/{checkout_id}", shop.base));
    assert_eq!(status, 404);
    assert!(!page.contains("66.00"), "{page}");

    let Some(result) = run_browser(
        "pay",
        json!({
            "url": opened["action"]["url"], "pick": "#choices button >> nth=1",
            "return_prefix": return_url,
        }),
    ) else {
        return;
    };
    assert_eq!(
        result["before"]["choices"].as_array().map(Vec::len),
        Some(2),
        "{result}"
    );
    assert_eq!(result["before"]["amount"], "CNY 66.00", "{result}");
    assert!(
        result["returned"]
            .as_str()
            .unwrap()
            .contains("status=succeeded"),
        "{result}"
    );
    // The order lookup shows the attempt the pick started, paid, at the account picked.
    let (status, found) = call(
        "GET",
        &format!(
            "{}/v1/payments?merchant_id={}&order_no=ORDER-CASHIER-1",
            shop.base, shop.merchant_id
        ),
        &shop.api_key,
        None,
    );
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["status"], "succeeded", "{found}");
    assert_eq!(
        found["attempts"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
    let mut offered = [
        shop.channel_account_id.clone(),
        second["channel_account_id"].as_str().unwrap().to_owned(),
    ];
    offered.sort();
    assert_eq!(
        found["channel_account_id"].as_str(),
        Some(offered[1].as_str()),
        "the second button's account: {found}"
    );
}
