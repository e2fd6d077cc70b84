//! The console (`/console`) and its operators (`/v1/operators`), against the `paycenter`
//! binary: operators made by the admin API; the back office driven in Debian's chromium
//! (`api/tests/browser/console.mjs`): sign in, onboard a merchant, activate a sandbox
//! account, register an app, find a payment by its order number, refund it, and see the
//! refund and its operator in the payment's timeline; list the projections and rebuild the
//! balances online; a viewer refused a refund by the server;
//! a form without its CSRF token refused. Over plain HTTP: cookies, sign-in throttling,
//! sign-out and disabled operators. Screenshots go to `target/console-screenshots/`.

mod support;

use std::collections::HashMap;
use std::time::Duration;

use serde_json::{json, Value};
use support::{acknowledging_webhook_sink, call_within, run_browser_script, start_paycenter};

const ADMIN_TOKEN: &str = "console-admin-token-0123456789";
const ADMIN_PASSWORD: &str = "admin password 0123";
const VIEWER_PASSWORD: &str = "viewer password 0123";

fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    call_within(method, url, token, body, Duration::from_secs(30))
}

fn create_operator(base: &str, email: &str, role: &str, password: Option<&str>) -> Value {
    let mut body = json!({"email": email, "name": format!("{role} operator"), "role": role});
    if let Some(password) = password {
        body["password"] = json!(password);
    }
    let (status, operator) = call(
        "POST",
        &format!("{base}/v1/operators"),
        ADMIN_TOKEN,
        Some(body),
    );
    assert_eq!(status, 201, "{operator}");
    operator
}

#[test]
fn operators_are_made_by_the_admin_with_passwords_never_answered() {
    let data_dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(data_dir.path(), ADMIN_TOKEN, &[]);
    let url = format!("{base}/v1/operators");
    let given = create_operator(
        &base,
        " Finance@Example.COM ",
        "finance",
        Some("twelve chars!!"),
    );
    assert_eq!(given["email"], "finance@example.com");
    assert_eq!(given["role"], "finance");
    assert!(
        given.get("password").is_none(),
        "a given password is not answered: {given}"
    );
    let generated = create_operator(&base, "ops@example.com", "ops", None);
    let password = generated["password"].as_str().unwrap();
    assert!(password.len() >= 12, "{generated}");

    for (body, status, code) in [
        (
            json!({"email": "finance@example.com", "name": "Again", "role": "viewer"}),
            409,
            "already_exists",
        ),
        (
            json!({"email": "x@example.com", "name": "X", "role": "boss"}),
            400,
            "invalid_request",
        ),
        (
            json!({"email": "not an address", "name": "X", "role": "viewer"}),
            400,
            "invalid_request",
        ),
        (
            json!({"email": "y@example.com", "name": "Y", "role": "viewer", "password": "short"}),
            400,
            "invalid_request",
        ),
        (
            json!({"email": "z@example.com", "name": "Z", "role": "viewer", "admin": true}),
            400,
            "unknown_field",
        ),
        (
            json!({"email": "z@example.com", "name": "", "role": "viewer"}),
            400,
            "invalid_request",
        ),
    ] {
        let (got, answer) = call("POST", &url, ADMIN_TOKEN, Some(body.clone()));
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body} → {answer}"
        );
    }
    let (status, _) = call("POST", &url, "not-the-admin-token", Some(json!({})));
    assert_eq!(status, 401);

    let (status, list) = call("GET", &url, ADMIN_TOKEN, None);
    assert_eq!(status, 200);
    let emails: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["email"].as_str().unwrap())
        .collect();
    assert_eq!(emails, ["finance@example.com", "ops@example.com"]);
    let text = list.to_string();
    assert!(
        !text.contains("argon2") && !text.contains(password),
        "{text}"
    );

    let operator_id = generated["operator_id"].as_str().unwrap();
    let (status, disabled) = call(
        "POST",
        &format!("{url}/{operator_id}/disable"),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(
        (status, disabled["enabled"].as_bool()),
        (200, Some(false)),
        "{disabled}"
    );
    let (status, missing) = call("POST", &format!("{url}/op_0000/disable"), ADMIN_TOKEN, None);
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("operator_not_found"))
    );
    // Signing in needs an enabled operator.
    let console = Console::new(&base);
    assert_eq!(console.sign_in("ops@example.com", password).0, 401);
    let (status, _) = call(
        "POST",
        &format!("{url}/{operator_id}/enable"),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(status, 200);
    assert_eq!(console.sign_in("ops@example.com", password).0, 303);
}

/// A client of the console over plain HTTP, keeping its cookies by hand.
struct Console {
    base: String,
    agent: ureq::Agent,
    cookies: std::cell::RefCell<HashMap<String, String>>,
}

impl Console {
    fn new(base: &str) -> Console {
        Console {
            base: base.to_owned(),
            agent: ureq::AgentBuilder::new()
                .redirects(0)
                .timeout(Duration::from_secs(30))
                .build(),
            cookies: Default::default(),
        }
    }

    fn keep_cookies(&self, response: &ureq::Response) -> Vec<String> {
        let set: Vec<String> = response
            .all("set-cookie")
            .into_iter()
            .map(str::to_owned)
            .collect();
        for cookie in &set {
            let pair = cookie.split(';').next().unwrap();
            let (name, value) = pair.split_once('=').unwrap();
            if value.is_empty() {
                self.cookies.borrow_mut().remove(name);
            } else {
                self.cookies
                    .borrow_mut()
                    .insert(name.to_owned(), value.to_owned());
            }
        }
        set
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .borrow()
            .iter()
            .map(|(name, value)| format!("{name}={value}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    /// Status, body, `Location` and the `Set-Cookie` headers of a request.
    fn request(
        &self,
        method: &str,
        path: &str,
        form: Option<&[(&str, &str)]>,
    ) -> (u16, String, Option<String>, Vec<String>) {
        let request = self
            .agent
            .request(method, &format!("{}{path}", self.base))
            .set("cookie", &self.cookie_header());
        let result = match form {
            Some(form) => request.send_form(form),
            None => request.call(),
        };
        let response = match result {
            Ok(response) | Err(ureq::Error::Status(_, response)) => response,
            Err(error) => panic!("{method} {path}: {error}"),
        };
        let set = self.keep_cookies(&response);
        let location = response.header("location").map(str::to_owned);
        (
            response.status(),
            response.into_string().unwrap(),
            location,
            set,
        )
    }

    fn hidden_token(html: &str) -> String {
        let start = html
            .find("name=\"_csrf\" value=\"")
            .expect("a form with a token")
            + 20;
        html[start..start + 64].to_owned()
    }

    /// Signs in: the status of the answer to the form, and its `Set-Cookie` headers.
    fn sign_in(&self, email: &str, password: &str) -> (u16, Vec<String>) {
        let (_, page, _, _) = self.request("GET", "/console/sign-in", None);
        let token = Console::hidden_token(&page);
        let (status, _, _, set) = self.request(
            "POST",
            "/console/sign-in",
            Some(&[("_csrf", &token), ("email", email), ("password", password)]),
        );
        (status, set)
    }
}

#[test]
fn console_sessions_cookies_and_sign_in_throttling_over_http() {
    let data_dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(data_dir.path(), ADMIN_TOKEN, &[]);
    create_operator(&base, "admin@example.com", "admin", Some(ADMIN_PASSWORD));
    let console = Console::new(&base);

    // Nothing without a session: pages send the reader to sign in.
    let (status, _, location, _) = console.request("GET", "/console/payments", None);
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/console/sign-in"))
    );
    let (status, _, _, _) = console.request("GET", "/console/assets/console.css", None);
    assert_eq!(status, 200);

    // The sign-in form needs its own token.
    let (status, page, _, _) = console.request(
        "POST",
        "/console/sign-in",
        Some(&[("email", "admin@example.com"), ("password", ADMIN_PASSWORD)]),
    );
    assert_eq!(status, 403, "{page}");

    let (status, set) = console.sign_in("admin@example.com", ADMIN_PASSWORD);
    assert_eq!(status, 303);
    let session = set
        .iter()
        .find(|cookie| cookie.starts_with("pc_console="))
        .expect("a session cookie");
    for attribute in ["HttpOnly", "SameSite=Strict", "Path=/console"] {
        assert!(session.contains(attribute), "{session}");
    }
    assert!(!session.contains("Secure"), "plain http: {session}");
    let (status, page, _, _) = console.request("GET", "/console/payments", None);
    assert_eq!(status, 200);
    assert!(page.contains("admin@example.com"), "{page}");
    // Security headers on every page.
    let response = ureq::get(&format!("{base}/console/sign-in"))
        .call()
        .unwrap();
    let policy = response.header("content-security-policy").unwrap();
    assert!(
        policy.contains("default-src 'none'") && policy.contains("frame-ancestors 'none'"),
        "{policy}"
    );

    // A form of the session without its token, or with another, changes nothing.
    let (status, page, _, _) =
        console.request("POST", "/console/merchants", Some(&[("name", "No token")]));
    assert_eq!(status, 403, "{page}");
    let (status, _, _, _) = console.request(
        "POST",
        "/console/merchants",
        Some(&[("name", "Bad token"), ("_csrf", &"0".repeat(64))]),
    );
    assert_eq!(status, 403);
    let (_, merchants) = call("GET", &format!("{base}/v1/merchants"), ADMIN_TOKEN, None);
    assert_eq!(
        merchants["data"].as_array().unwrap().len(),
        0,
        "{merchants}"
    );

    // Sign-out ends the session on the server, not only in the browser.
    let (_, page, _, _) = console.request("GET", "/console/payments", None);
    let token = Console::hidden_token(&page);
    let stolen = console.cookies.borrow().get("pc_console").cloned().unwrap();
    let (status, _, location, _) =
        console.request("POST", "/console/sign-out", Some(&[("_csrf", &token)]));
    assert_eq!(
        (status, location.as_deref()),
        (303, Some("/console/sign-in"))
    );
    console
        .cookies
        .borrow_mut()
        .insert("pc_console".into(), stolen);
    let (status, _, _, _) = console.request("GET", "/console/payments", None);
    assert_eq!(status, 303, "a signed-out session's cookie opens nothing");

    // Five wrong passwords, then even the right one waits.
    let other = Console::new(&base);
    for _ in 0..5 {
        assert_eq!(
            other.sign_in("admin@example.com", "wrong password!!").0,
            401
        );
    }
    assert_eq!(other.sign_in("admin@example.com", ADMIN_PASSWORD).0, 429);
    assert_eq!(
        other.sign_in("nobody@example.com", ADMIN_PASSWORD).0,
        429,
        "the same client IP is throttled too"
    );

    // Over https the cookie is Secure.
    let https_dir = tempfile::tempdir().unwrap();
    let (_https_server, https_base) = start_paycenter(
        https_dir.path(),
        ADMIN_TOKEN,
        &[("PAYCENTER_PUBLIC_URL", "https://pay.example.com")],
    );
    create_operator(
        &https_base,
        "admin@example.com",
        "admin",
        Some(ADMIN_PASSWORD),
    );
    let (status, set) = Console::new(&https_base).sign_in("admin@example.com", ADMIN_PASSWORD);
    assert_eq!(status, 303);
    assert!(
        set.iter()
            .any(|cookie| cookie.starts_with("pc_console=") && cookie.contains("Secure")),
        "{set:?}"
    );
}

#[test]
fn the_console_onboards_finds_and_refunds_in_a_real_browser() {
    let data_dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(
        data_dir.path(),
        ADMIN_TOKEN,
        &[
            ("PAYCENTER_ALLOW_PRIVATE_EGRESS", "1"),
            ("PAYCENTER_MIN_ATTEMPT_INTERVAL_MS", "0"),
        ],
    );
    create_operator(&base, "admin@example.com", "admin", Some(ADMIN_PASSWORD));
    create_operator(&base, "viewer@example.com", "viewer", Some(VIEWER_PASSWORD));
    let signed_in =
        |email: &str, password: &str| json!({"base": base, "email": email, "password": password});

    let mut input = signed_in("admin@example.com", ADMIN_PASSWORD);
    input["merchant_name"] = json!("阳光物业 Sunshine Property");
    input["signing_secret"] = json!("console-sandbox-secret");
    input["app_name"] = json!("Resident app");
    input["notify_url"] = json!(acknowledging_webhook_sink());
    let Some(onboarded) = run_browser_script("console", "onboard", input) else {
        return;
    };
    assert_eq!(
        onboarded["signed_in_as"], "admin@example.com (admin)",
        "{onboarded}"
    );
    assert_eq!(onboarded["apps_page_shows_key"], false, "{onboarded}");
    assert_eq!(onboarded["console_errors"], json!([]), "{onboarded}");
    let merchant_id = onboarded["merchant_id"].as_str().unwrap();
    let accounts = onboarded["accounts"].as_array().unwrap();
    assert_eq!(accounts.len(), 1, "{onboarded}");
    assert!(
        accounts[0].as_str().unwrap().contains("sandbox"),
        "{onboarded}"
    );
    let api_key = onboarded["api_key"].as_str().unwrap();
    assert_eq!(
        onboarded["routing"][0]["channel_account_ids"][0].as_str(),
        accounts[0].as_str().unwrap().split('\t').next(),
        "{onboarded}"
    );

    // The app the console registered pays with its key.
    let (status, accounts) = call(
        "GET",
        &format!("{base}/v1/merchants/{merchant_id}/channel-accounts"),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(status, 200);
    let channel_account_id = accounts["data"][0]["channel_account_id"].as_str().unwrap();
    // A split receiver, paid its share at the (sandbox) channel.
    let (status, bound) = call(
        "POST",
        &format!("{base}/v1/merchants/{merchant_id}/receivers"),
        ADMIN_TOKEN,
        Some(
            json!({"channel_account_id": channel_account_id, "receiver_id": "store-7",
                    "type": "merchant", "account": "store-7@example.com"}),
        ),
    );
    assert_eq!(status, 201, "{bound}");
    let (status, created) = call(
        "POST",
        &format!("{base}/v1/payments"),
        api_key,
        Some(json!({
            "merchant_id": merchant_id, "order_no": "ORDER-2026-0042", "amount": "88.00",
            "currency": "CNY", "subject": "物业费 December", "channel_account_id": channel_account_id,
            "invoke_method": "pc", "share": "auto",
            "splits": [{"receiver": "store-7", "amount": "10.00"}],
        })),
    );
    assert_eq!(status, 201, "{created}");
    let trade_no = created["trade_no"].as_str().unwrap();
    let (status, paid) = call(
        "POST",
        &format!("{base}/sandbox/pay/{trade_no}"),
        "",
        Some(json!({"outcome": "success"})),
    );
    assert!(status < 300, "{paid}");
    support::wait_for_within(
        "the payment succeeds",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || {
            call(
                "GET",
                &format!("{base}/v1/payments/{trade_no}"),
                api_key,
                None,
            )
            .1["status"]
                == "succeeded"
        },
    );

    // Two payouts of what the merchant earned: one paid, one refused by its wallet.
    for (payout_no, wallet) in [("PO-1", "wallet-7"), ("PO-2", "fail-wallet")] {
        let (status, payout) = call(
            "POST",
            &format!("{base}/v1/payouts"),
            ADMIN_TOKEN,
            Some(
                json!({"merchant_id": merchant_id, "channel_account_id": channel_account_id,
                        "payout_no": payout_no, "amount": "5.00", "currency": "CNY",
                        "receiver": {"type": "sandbox", "account": wallet}}),
            ),
        );
        assert_eq!(status, 201, "{payout}");
        let payout_id = payout["payout_id"].as_str().unwrap().to_owned();
        support::wait_for_within(
            "the payout settles",
            Duration::from_secs(20),
            Duration::from_millis(50),
            || {
                call(
                    "GET",
                    &format!("{base}/v1/payouts/{payout_id}"),
                    ADMIN_TOKEN,
                    None,
                )
                .1["status"]
                    != "pending"
            },
        );
    }

    let mut input = signed_in("admin@example.com", ADMIN_PASSWORD);
    input["order_no"] = json!("ORDER-2026-0042");
    input["merchant_id"] = json!(merchant_id);
    input["refund_no"] = json!("RF-1");
    input["refund_amount"] = json!("8.80");
    let refunded = run_browser_script("console", "refund", input).unwrap();
    assert_eq!(refunded["found"]["trade_no"], trade_no, "{refunded}");
    assert_eq!(refunded["found"]["status"], "succeeded", "{refunded}");
    assert!(
        refunded["requested"].as_str().unwrap().contains("rf_"),
        "{refunded}"
    );
    assert!(
        refunded["refunds"][0].as_str().unwrap().contains("8.80"),
        "{refunded}"
    );
    // The share paid at the channel, and the receiver on the merchant's page.
    let share_row = refunded["shares"][0].as_str().unwrap();
    assert!(
        share_row.contains("store-7")
            && share_row.contains("10.00")
            && share_row.contains("shared"),
        "{refunded}"
    );
    assert!(
        refunded["receivers"][0]
            .as_str()
            .unwrap()
            .contains("store-7@example.com"),
        "{refunded}"
    );
    // The payouts page: the paid one and the refused one with its reason, newest first.
    let payouts: Vec<&str> = refunded["payouts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_str().unwrap())
        .collect();
    assert_eq!(payouts.len(), 2, "{refunded}");
    assert!(
        payouts[0].contains("PO-2")
            && payouts[0].contains("failed")
            && payouts[0].contains("refused"),
        "{refunded}"
    );
    assert!(
        payouts[1].contains("PO-1")
            && payouts[1].contains("succeeded")
            && payouts[1].contains("5.00"),
        "{refunded}"
    );
    assert_eq!(
        refunded["payouts_zh"],
        json!({"heading": "付款", "rows": 2}),
        "{refunded}"
    );
    // The timeline (newest first) shows the refund and who asked for it.
    let timeline = refunded["timeline"].as_array().unwrap();
    let refund_event = timeline
        .iter()
        .find(|entry| entry["type"] == "refund.requested")
        .expect("the refund in the timeline");
    assert!(
        refund_event["actor"]
            .as_str()
            .unwrap()
            .contains("admin@example.com"),
        "{refunded}"
    );
    assert!(
        timeline
            .iter()
            .any(|entry| entry["type"] == "payment.succeeded" && entry["actor"].is_null()),
        "{refunded}"
    );
    assert_eq!(refunded["no_token"]["status"], 403, "{refunded}");
    // The audit folds the ledger afresh: the payment's money is there.
    let audit = refunded["audit"].as_array().unwrap();
    assert!(!audit.is_empty(), "{refunded}");
    assert!(
        audit
            .iter()
            .any(|row| row.as_str().unwrap().contains("CNY")),
        "{refunded}"
    );
    // The app's webhooks: the payment's, delivered to the sink, and delivered again on request.
    assert!(
        refunded["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|row| row.as_str().unwrap().contains("payment.succeeded")),
        "{refunded}"
    );
    assert_eq!(refunded["redelivered"], true, "{refunded}");
    let trail: Vec<&str> = refunded["trail"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_str().unwrap())
        .collect();
    assert!(
        trail
            .iter()
            .any(|row| row.contains("refund.requested") && row.contains("admin@example.com")),
        "{trail:?}"
    );
    assert!(
        trail
            .iter()
            .any(|row| row.contains("merchant.onboarded") && row.contains("admin@example.com")),
        "{trail:?}"
    );
    assert!(
        trail
            .iter()
            .any(|row| row.contains("operator.created") && row.contains("admin token")),
        "{trail:?}"
    );
    assert_eq!(refunded["chinese"]["lang"], "zh-CN", "{refunded}");
    assert!(
        refunded["chinese"]["heading"]
            .as_str()
            .unwrap()
            .contains("支付"),
        "{refunded}"
    );
    assert_eq!(refunded["console_errors"], json!([]), "{refunded}");

    // Alerts: a destination added and tested from the console.
    let mut input = signed_in("admin@example.com", ADMIN_PASSWORD);
    input["hook_url"] = json!(acknowledging_webhook_sink());
    let alerts = run_browser_script("console", "alerts", input).unwrap();
    assert_eq!(alerts["added"], "Added.", "{alerts}");
    assert_eq!(
        alerts["tested"], "The test message was delivered.",
        "{alerts}"
    );
    assert!(
        alerts["channels"][0].as_str().unwrap().contains("webhook"),
        "{alerts}"
    );
    assert_eq!(alerts["console_errors"], json!([]), "{alerts}");

    // Projections: both listed, the balances rebuilt online from the page, and the rebuilt
    // balances identical to the live ones.
    let projections = run_browser_script(
        "console",
        "projections",
        signed_in("admin@example.com", ADMIN_PASSWORD),
    )
    .unwrap();
    let rows: Vec<&str> = projections["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| row.as_str().unwrap())
        .collect();
    assert_eq!(rows.len(), 2, "{projections}");
    assert!(
        rows[0].starts_with("read_model") && rows[1].starts_with("balances"),
        "{projections}"
    );
    assert_eq!(projections["started"], "Rebuild started.", "{projections}");
    assert_eq!(projections["console_errors"], json!([]), "{projections}");
    support::wait_for_within(
        "the balances rebuilt",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || {
            let (_, listed) = call(
                "GET",
                &format!("{base}/v1/admin/projections"),
                ADMIN_TOKEN,
                None,
            );
            listed["projections"][1]["last_rebuild"]["identical"] == true
        },
    );

    // A viewer reads, and the server refuses the refund the page did not offer.
    let mut input = signed_in("viewer@example.com", VIEWER_PASSWORD);
    input["trade_no"] = json!(trade_no);
    let viewer = run_browser_script("console", "viewer", input).unwrap();
    assert_eq!(viewer["has_refund_form"], false, "{viewer}");
    assert_eq!(viewer["crafted"]["status"], 403, "{viewer}");
    assert!(
        viewer["crafted"]["body"]
            .as_str()
            .unwrap()
            .contains("forbidden"),
        "{viewer}"
    );
    assert_eq!(viewer["can_onboard"], false, "{viewer}");
    assert!(
        viewer["after_sign_out_visit"]
            .as_str()
            .unwrap()
            .ends_with("/console/sign-in"),
        "{viewer}"
    );

    // One refund in all: neither the tokenless form nor the viewer's made one.
    let (_, payment) = call(
        "GET",
        &format!("{base}/v1/payments/{trade_no}"),
        api_key,
        None,
    );
    assert_eq!(payment["refunds"].as_array().unwrap().len(), 1, "{payment}");
}

/// The first version's log (`projections/tests/fixtures/legacy-v1`, written before order
/// numbers lived in their app's namespace, so its orders keep their older stream names): a
/// payment's page shows the events of its own order, found by the stream the payment was
/// recorded on; a new attempt on an order paid there is decided over that stream, so it is
/// refused as paid, not taken again on a stream of the new name, and a lookup by order number
/// finds its attempts there.
#[test]
fn orders_recorded_under_an_older_stream_name_keep_their_stream() {
    let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../projections/tests/fixtures/legacy-v1");
    let data_dir = tempfile::tempdir().unwrap();
    std::fs::copy(
        fixture.join("events.sqlite3"),
        data_dir.path().join("events.sqlite3"),
    )
    .unwrap();
    let merchant_id = std::fs::read_to_string(fixture.join("merchant_id")).unwrap();
    // The test key `scripts/make-legacy-fixture.sh` wrote the log under.
    let (_server, base) = start_paycenter(
        data_dir.path(),
        ADMIN_TOKEN,
        &[(
            "PAYCENTER_MASTER_KEY",
            "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
        )],
    );
    create_operator(&base, "admin@example.com", "admin", Some(ADMIN_PASSWORD));
    let console = Console::new(&base);
    assert_eq!(console.sign_in("admin@example.com", ADMIN_PASSWORD).0, 303);
    let (status, _, location, _) = console.request(
        "GET",
        &format!("/console/payments?merchant_id={}&q=F-1", merchant_id.trim()),
        None,
    );
    assert_eq!(status, 303, "one payment of order F-1");
    let location = location.unwrap();
    assert!(location.starts_with("/console/payments/"), "{location}");
    let (status, page, _, _) = console.request("GET", &location, None);
    assert_eq!(status, 200, "{page}");
    let timeline = &page[page.find("id=\"timeline\"").expect("a timeline")..];
    for event_type in ["payment.attempt_started", "payment.succeeded"] {
        assert!(
            timeline.contains(&format!("data-type=\"{event_type}\"")),
            "{event_type} missing from the timeline: {timeline}"
        );
    }

    // The app of the fixture, with a key of its own again (its first key was never kept).
    let (status, rotated) = call(
        "POST",
        &format!("{base}/v1/apps/app_2b15bb34cdb0db2076f2780e9199eba4/rotate-key"),
        ADMIN_TOKEN,
        Some(json!({"grace_seconds": 0})),
    );
    assert_eq!(status, 200, "{rotated}");
    let api_key = rotated["api_key"].as_str().unwrap();
    let (status, refused) = call(
        "POST",
        &format!("{base}/v1/payments"),
        api_key,
        Some(json!({
            "merchant_id": merchant_id.trim(),
            "channel_account_id": "ca_475e01fd691fcf2b9f8827fc0eadcaf8",
            "order_no": "F-1", "amount": "100.00", "currency": "CNY",
            "invoke_method": "pc", "subject": "rent",
            "splits": [{"receiver": "platform", "amount": "5.00"}, {"receiver": "owner", "amount": "20.00"}]
        })),
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("order_already_paid")),
        "{refused}"
    );
    // The app finds the order by its number: its attempts are read from the older stream.
    let (status, found) = call(
        "GET",
        &format!(
            "{base}/v1/payments?merchant_id={}&order_no=F-1",
            merchant_id.trim()
        ),
        api_key,
        None,
    );
    assert_eq!(status, 200, "{found}");
    assert_eq!(found["status"], "succeeded", "{found}");
    assert_eq!(
        found["attempts"].as_array().map(Vec::len),
        Some(1),
        "{found}"
    );
}
