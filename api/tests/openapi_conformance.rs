//! `/openapi.json` held to the running binary by schemathesis, a property-based API tester
//! that reads only the document: it generates valid and invalid requests for every operation
//! and checks that no answer is a server error and every answer fits the document (status,
//! content type, headers, body schema), and that invalid data is refused.
//!
//! The test makes a merchant, channel accounts, apps, payments, a delivered notification and a
//! reconciliation first; `tests/schemathesis/hooks.py` points most generated cases at them so
//! that every operation also reaches its success. It prints, per operation, the cases sent and
//! how many answered 2xx, and fails when an operation never succeeded.
//!
//! Schemathesis lives in the channel SDKs' virtual environment (`scripts/ensure-channel-sdks.sh`):
//! `PAYCENTER_TEST_PYTHON` names its interpreter (default `.venv/bin/python`). Without it the
//! test prints why it skipped, unless `PAYCENTER_REQUIRE_SDKS=1` makes that a failure.
//! `PAYCENTER_SCHEMATHESIS_EXAMPLES` sets the examples per operation (default 30),
//! `PAYCENTER_SCHEMATHESIS_SEED` the generator's seed (default 20261202, so CI is repeatable).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use paycenter_api::http::routes::ROUTES;
use serde_json::{json, Value};

mod support;

const ADMIN_TOKEN: &str = "admin-token-for-the-conformance-run";

use support::{acknowledging_webhook_sink as webhook_sink, Process};

/// The `st` command of the venv, or `None` (skipped, said why).
fn schemathesis() -> Option<PathBuf> {
    let python = std::env::var("PAYCENTER_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|_| {
            PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"))
        });
    let st = python.with_file_name("st");
    let usable = Command::new(&st)
        .arg("--version")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if usable {
        return Some(st);
    }
    let why = format!(
        "no schemathesis at {} (set PAYCENTER_TEST_PYTHON; .ci/run makes .venv)",
        st.display()
    );
    if std::env::var("PAYCENTER_REQUIRE_SDKS").as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}

fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    support::call_within(method, url, token, body, Duration::from_secs(15))
}

fn start_paycenter(data_dir: &Path) -> (Process, String) {
    support::start_paycenter(
        data_dir,
        ADMIN_TOKEN,
        &[
            // The webhook receiver below listens on loopback.
            ("PAYCENTER_ALLOW_PRIVATE_EGRESS", "1"),
            ("PAYCENTER_MIN_ATTEMPT_INTERVAL_MS", "0"),
            // Thousands of generated requests from one app must not be throttled.
            ("PAYCENTER_APP_RATE_LIMIT_PER_SECOND", "100000"),
            ("PAYCENTER_APP_RATE_LIMIT_BURST", "100000"),
            ("RUST_LOG", "warn"),
        ],
    )
}

fn wait_for(what: &str, done: impl FnMut() -> bool) {
    support::wait_for_within(
        what,
        Duration::from_secs(30),
        Duration::from_millis(50),
        done,
    )
}

/// The resources the run acts on, by the names of the parameters and fields that take them.
fn seed(base: &str) -> (Value, String) {
    let admin = |method: &str, path: &str, body: Value| {
        let (status, answer) = call(method, &format!("{base}{path}"), ADMIN_TOKEN, Some(body));
        assert!((200..300).contains(&status), "{path}: {status} {answer}");
        answer
    };
    let merchant_id = admin("POST", "/v1/merchants", json!({"name": "Conformance"}))["merchant_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let accounts = format!("/v1/merchants/{merchant_id}/channel-accounts");
    let account = |body: Value| {
        admin("POST", &accounts, body)["channel_account_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let channel_account_id =
        account(json!({"channel": "sandbox", "params": {}, "fee_rate": "0.006"}));
    let victim_channel_account_id = account(json!({"channel": "sandbox", "params": {}}));
    let notify_url = webhook_sink();
    let app = admin(
        "POST",
        "/v1/apps",
        json!({"name": "conformance", "merchant_ids": [merchant_id], "notify_url": notify_url}),
    );
    let api_key = app["api_key"].as_str().unwrap().to_owned();
    let lister_app_id = app["app_id"].as_str().unwrap().to_owned();
    let victim_app_id = admin(
        "POST",
        "/v1/apps",
        json!({"name": "victim", "merchant_ids": [merchant_id], "notify_url": notify_url}),
    )["app_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let pay = |order_no: &str| {
        let (status, answer) = call(
            "POST",
            &format!("{base}/v1/payments"),
            &api_key,
            Some(json!({
                "merchant_id": merchant_id, "channel_account_id": channel_account_id,
                "order_no": order_no, "amount": "100.00", "currency": "CNY",
                "invoke_method": "pc", "subject": "conformance",
            })),
        );
        assert_eq!(status, 201, "{answer}");
        answer["trade_no"].as_str().unwrap().to_owned()
    };
    let trade_no = pay("st-pending");
    // Its own pending trade for the sandbox's pay: close_payment acts on `trade_no`.
    let sandbox_trade_no = pay("st-sandbox");
    let checkout_token = checkout_token(base, &api_key, &merchant_id, &channel_account_id);
    let paid_trade_no = pay("st-paid");
    let (status, answer) = call(
        "POST",
        &format!("{base}/sandbox/pay/{paid_trade_no}"),
        "",
        Some(json!({"outcome": "success"})),
    );
    assert_eq!(status, 202, "{answer}");
    let mut channel_trade_no = String::new();
    wait_for("the paid payment", || {
        let (_, payment) = call(
            "GET",
            &format!("{base}/v1/payments/{paid_trade_no}"),
            &api_key,
            None,
        );
        channel_trade_no = payment["channel_trade_no"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        payment["status"] == "succeeded"
    });
    let mut notification_id = String::new();
    wait_for("a delivered webhook", || {
        let (_, answer) = call(
            "GET",
            &format!("{base}/v1/notifications?status=delivered"),
            &api_key,
            None,
        );
        notification_id = answer["notifications"][0]["id"]
            .as_str()
            .unwrap_or("")
            .to_owned();
        !notification_id.is_empty()
    });
    let today = chrono::Utc::now().date_naive().to_string();
    let reconciliation_id = admin(
        "POST",
        "/v1/reconciliations",
        json!({"channel_account_id": channel_account_id, "date": today}),
    )["reconciliation_id"]
        .as_str()
        .unwrap()
        .to_owned();
    // Alert destinations: one the test reaches (the acknowledging sink), one to delete.
    let alert_channel = |name: &str| {
        admin(
            "POST",
            "/v1/alert-channels",
            json!({"kind": "webhook", "url": format!("{notify_url}?{name}"), "secret": "conformance-alert-secret"}),
        )["alert_channel_id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let alert_channel_id = alert_channel("kept");
    let victim_alert_channel_id = alert_channel("deleted");
    // Split receivers: one a shared payment names, one to unbind.
    let receivers = format!("/v1/merchants/{merchant_id}/receivers");
    for receiver_id in ["st-store", "st-victim"] {
        admin(
            "POST",
            &receivers,
            json!({"channel_account_id": channel_account_id, "receiver_id": receiver_id,
                   "type": "merchant", "account": format!("{receiver_id}-account")}),
        );
    }
    // A paid payment shared by hand: share_payment asks for its share (again and again).
    let (status, shared) = call(
        "POST",
        &format!("{base}/v1/payments"),
        &api_key,
        Some(json!({
            "merchant_id": merchant_id, "channel_account_id": channel_account_id,
            "order_no": "st-shared", "amount": "100.00", "currency": "CNY",
            "invoke_method": "pc", "subject": "conformance", "share": "manual",
            "splits": [{"receiver": "st-store", "amount": "10.00"}],
        })),
    );
    assert_eq!(status, 201, "{shared}");
    let share_trade_no = shared["trade_no"].as_str().unwrap().to_owned();
    let (status, answer) = call(
        "POST",
        &format!("{base}/sandbox/pay/{share_trade_no}"),
        "",
        Some(json!({"outcome": "success"})),
    );
    assert_eq!(status, 202, "{answer}");
    wait_for("the shared payment paid", || {
        let (_, payment) = call(
            "GET",
            &format!("{base}/v1/payments/{share_trade_no}"),
            &api_key,
            None,
        );
        payment["status"] == "succeeded"
    });
    // A payout of what the paid payments earned.
    let payout_id = admin(
        "POST",
        "/v1/payouts",
        json!({"merchant_id": merchant_id, "channel_account_id": channel_account_id,
               "payout_no": "st-payout", "amount": "1.00", "currency": "CNY",
               "receiver": {"type": "sandbox", "account": "st-wallet"}}),
    )["payout_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let ids = json!({
        "payout_id": payout_id,
        "victim_receiver_id": "st-victim",
        "share_trade_no": share_trade_no,
        "alert_channel_id": alert_channel_id,
        "victim_alert_channel_id": victim_alert_channel_id,
        "merchant_id": merchant_id,
        "channel_account_id": channel_account_id,
        "victim_channel_account_id": victim_channel_account_id,
        "victim_app_id": victim_app_id,
        "lister_app_id": lister_app_id,
        "trade_no": trade_no,
        "paid_trade_no": paid_trade_no,
        "order_no": "st-paid",
        "channel_trade_no": channel_trade_no,
        "notification_id": notification_id,
        "reconciliation_id": reconciliation_id,
        "date": today,
        "t": checkout_token.1,
        "sandbox_trade_no": sandbox_trade_no,
        "checkout_trade_no": checkout_token.0,
    });
    (ids, api_key)
}

/// A payment made for the cashier's routes: its trade number and its checkout link's token.
fn checkout_token(
    base: &str,
    api_key: &str,
    merchant_id: &str,
    channel_account_id: &str,
) -> (String, String) {
    let (status, answer) = call(
        "POST",
        &format!("{base}/v1/payments"),
        api_key,
        Some(json!({
            "merchant_id": merchant_id, "channel_account_id": channel_account_id,
            "order_no": "st-cashier", "amount": "100.00", "currency": "CNY",
            "invoke_method": "pc", "subject": "conformance",
        })),
    );
    assert_eq!(status, 201, "{answer}");
    let url = answer["action"]["url"].as_str().unwrap();
    let token = url
        .split_once("?t=")
        .map(|(_, token)| token.to_owned())
        .unwrap();
    (answer["trade_no"].as_str().unwrap().to_owned(), token)
}

/// The route a request went to, by matching its path against the route table.
fn operation_of(method: &str, path: &str) -> Option<&'static str> {
    let segments: Vec<&str> = path.split('/').collect();
    ROUTES
        .iter()
        .find(|route| {
            let pattern: Vec<&str> = route.path.split('/').collect();
            route.method.eq_ignore_ascii_case(method)
                && pattern.len() == segments.len()
                && pattern
                    .iter()
                    .zip(&segments)
                    .all(|(expected, actual)| expected.starts_with('{') || expected == actual)
        })
        .map(|route| route.operation.id())
}

/// One request schemathesis sent: method, path, status, and the error's code and sentence
/// when refused.
type SentRequest = (String, String, u16, Option<String>, Option<String>);

/// Runs schemathesis over the operations of `tags` with `token`; answers its exit status and
/// every request it sent.
fn run_schemathesis(
    st: &Path,
    base: &str,
    token: &str,
    tags: &[&str],
    ids: &Value,
    work_dir: &Path,
) -> (bool, Vec<SentRequest>) {
    let har = work_dir.join(format!("{}.har", tags.join("-")));
    let examples =
        std::env::var("PAYCENTER_SCHEMATHESIS_EXAMPLES").unwrap_or_else(|_| "30".to_owned());
    let seed =
        std::env::var("PAYCENTER_SCHEMATHESIS_SEED").unwrap_or_else(|_| "20261202".to_owned());
    let mut command = Command::new(st);
    command
        .current_dir(work_dir)
        .arg("run")
        .arg(format!("{base}/openapi.json"))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection",
        ])
        .args(["--max-examples", &examples])
        // One worker: the generator's caches are not safe across threads.
        .args(["--workers", "1"])
        .args(["--seed", &seed])
        .args(["--suppress-health-check", "all"])
        .args(["--report", "har", "--report-har-path"])
        .arg(&har)
        .arg("--no-color")
        .env(
            "PYTHONPATH",
            concat!(env!("CARGO_MANIFEST_DIR"), "/tests/schemathesis"),
        )
        .env("SCHEMATHESIS_HOOKS", "hooks")
        .env("PAYCENTER_ST_IDS", ids.to_string())
        .env("PAYCENTER_ST_SEED", &seed);
    for tag in tags {
        command.args(["--include-tag", tag]);
    }
    let output = command.output().unwrap();
    let printed = String::from_utf8_lossy(&output.stdout);
    println!("{printed}");
    eprintln!("{}", String::from_utf8_lossy(&output.stderr));
    let har: Value = serde_json::from_slice(&std::fs::read(&har).unwrap()).unwrap();
    let requests = har["log"]["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|entry| {
            let url = entry["request"]["url"].as_str().unwrap();
            let path = url
                .strip_prefix(base)
                .unwrap_or(url)
                .split('?')
                .next()
                .unwrap()
                .to_owned();
            let error = entry["response"]["content"]["text"]
                .as_str()
                .and_then(|text| serde_json::from_str::<Value>(text).ok())
                .map(|body| body["error"].clone());
            let code = error
                .as_ref()
                .and_then(|error| error["code"].as_str().map(str::to_owned));
            let message = error
                .as_ref()
                .and_then(|error| error["message"].as_str().map(str::to_owned));
            (
                entry["request"]["method"].as_str().unwrap().to_owned(),
                path,
                entry["response"]["status"].as_u64().unwrap_or(0) as u16,
                code,
                message,
            )
        })
        .collect();
    (output.status.success(), requests)
}

#[test]
fn every_answer_fits_the_openapi_document() {
    let Some(st) = schemathesis() else { return };
    let dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(dir.path());
    let (ids, api_key) = seed(&base);

    let (admin_passed, mut requests) = run_schemathesis(
        &st,
        &base,
        ADMIN_TOKEN,
        &["admin", "public"],
        &ids,
        dir.path(),
    );
    let (app_passed, app_requests) =
        run_schemathesis(&st, &base, &api_key, &["app"], &ids, dir.path());
    requests.extend(app_requests);

    // (cases, 2xx) per operation.
    let mut counts: BTreeMap<&str, (u64, u64)> = ROUTES
        .iter()
        .map(|route| (route.operation.id(), (0, 0)))
        .collect();
    let mut n_unmatched = 0;
    // The statuses of each operation, for the few that rarely succeed (what held them back).
    let mut statuses: BTreeMap<&str, BTreeMap<String, u64>> = BTreeMap::new();
    // The refusals' sentences of each operation (a few), said when it never succeeded.
    let mut messages: BTreeMap<&str, std::collections::BTreeSet<&str>> = BTreeMap::new();
    for (method, path, status, code, message) in &requests {
        let Some(operation) = operation_of(method, path) else {
            n_unmatched += 1;
            continue;
        };
        *statuses
            .entry(operation)
            .or_default()
            .entry(format!("{status} {}", code.as_deref().unwrap_or("")))
            .or_default() += 1;
        if let Some(message) = message {
            let seen = messages.entry(operation).or_default();
            if seen.len() < 8 {
                seen.insert(message);
            }
        }
        let entry = counts.get_mut(operation).unwrap();
        entry.0 += 1;
        if (200..300).contains(status) {
            entry.1 += 1;
        }
        assert!(*status < 500, "{method} {path} answered {status}");
    }
    println!("| operation | cases | 2xx |\n|---|---|---|");
    for (operation, (cases, successes)) in &counts {
        println!("| {operation} | {cases} | {successes} |");
    }
    println!("requests outside the route table (unknown paths, other methods): {n_unmatched}");
    for (operation, (cases, successes)) in &counts {
        if *successes * 10 < *cases {
            println!(
                "{operation} answered {:?}; refusals said {:?}",
                statuses.get(operation),
                messages.get(operation)
            );
        }
    }
    assert!(
        admin_passed,
        "schemathesis found failures in the admin and public operations (above)"
    );
    assert!(
        app_passed,
        "schemathesis found failures in the app operations (above)"
    );
    // A callback succeeds only with the channel's own signature, which no generator makes; the
    // cashier's pick answers a redirect or a page, and needs the link's token in its form.
    let cannot_succeed = ["channel_callback", "cashier_pick", "cashier_wechat"];
    for (operation, (cases, successes)) in &counts {
        assert!(*cases > 0, "{operation} was never tried");
        if !cannot_succeed.contains(operation) {
            assert!(
                *successes > 0,
                "{operation} never answered 2xx: {:?}; refusals said {:?}",
                statuses.get(operation),
                messages.get(operation)
            );
        }
    }
}
