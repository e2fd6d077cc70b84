//! Alerts over real HTTP and TLS: destinations added, checked, redacted, tested and deleted; a
//! fake DingTalk robot (`tests/fakes/dingtalk_robot.py`, over HTTPS) that checks each request's
//! `sign` by the published algorithm and by `dingtalkchatbot` from PyPI and answers as DingTalk
//! does (errcode 0, 310000 for a bad signature); rules raised once while their condition holds
//! and resolved once after; a delivery that failed retried after `kill -9` and a restart; a
//! webhook destination's alerts signed like app webhooks.

mod support;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;
use support::{call_within, Process, TestPki};

const ADMIN_TOKEN: &str = "alerts-admin-token-0123456789";
const ROBOT_SECRET: &str = "SECfake0123456789abcdef";

fn call(method: &str, url: &str, body: Option<Value>) -> (u16, Value) {
    call_within(method, url, ADMIN_TOKEN, body, Duration::from_secs(30))
}

/// The venv's interpreter with `dingtalkchatbot`, or `None` (skipped, said why).
fn python() -> Option<PathBuf> {
    support::python_with("dingtalkchatbot")
}

fn pki() -> &'static TestPki {
    static PKI: std::sync::OnceLock<TestPki> = std::sync::OnceLock::new();
    PKI.get_or_init(|| TestPki::new(&["localhost", "127.0.0.1"]))
}

/// The fake robot: its process, its URL (with the access token) and where it lists what it took.
fn robot(python: &Path, env: &[(&str, &str)]) -> (Process, String, String) {
    let (process, started) = support::spawn_fake(python, "dingtalk_robot.py", pki(), env);
    (
        process,
        started["url"].as_str().unwrap().to_owned(),
        started["messages_url"].as_str().unwrap().to_owned(),
    )
}

/// The messages the robot took.
fn robot_messages(messages_url: &str) -> Vec<Value> {
    ureq::get(messages_url).call().unwrap().into_json().unwrap()
}

fn start(data_dir: &Path, extra: &[(&str, &str)]) -> (Process, String) {
    let ca_file = pki().ca_path.to_str().unwrap().to_owned();
    let mut env = vec![
        ("PAYCENTER_ALLOW_PRIVATE_EGRESS", "1"),
        ("PAYCENTER_CA_FILE", ca_file.as_str()),
        ("PAYCENTER_MIN_ATTEMPT_INTERVAL_MS", "0"),
        ("PAYCENTER_ALERT_INTERVAL_SECONDS", "1"),
        // The machine's disk is never that empty, unless a test says so.
        ("PAYCENTER_ALERT_DISK_FREE_MB", "0"),
    ];
    env.extend_from_slice(extra);
    support::start_paycenter(data_dir, ADMIN_TOKEN, &env)
}

fn add_robot(base: &str, url: &str, secret: &str) -> String {
    let (status, channel) = call(
        "POST",
        &format!("{base}/v1/alert-channels"),
        Some(
            json!({"kind": "dingtalk", "url": url, "secret": secret, "at_mobiles": ["13800000000"]}),
        ),
    );
    assert_eq!(status, 201, "{channel}");
    channel["alert_channel_id"].as_str().unwrap().to_owned()
}

fn alerts(base: &str, status: &str) -> Vec<Value> {
    let (code, list) = call(
        "GET",
        &format!("{base}/v1/alerts?status={status}&limit=100"),
        None,
    );
    assert_eq!(code, 200, "{list}");
    list["data"].as_array().unwrap().clone()
}

fn wait_for(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    support::wait_for_within(
        what,
        Duration::from_secs(seconds),
        Duration::from_millis(200),
        &mut done,
    );
}

#[test]
fn alert_destinations_are_checked_redacted_tested_and_deleted() {
    let Some(python) = python() else { return };
    let (_robot, robot_url, messages_url) = robot(&python, &[("FAKE_SECRET", ROBOT_SECRET)]);
    let data_dir = tempfile::tempdir().unwrap();
    let (_server, base) = start(data_dir.path(), &[]);
    let url = format!("{base}/v1/alert-channels");

    let robot_id = add_robot(&base, &robot_url, ROBOT_SECRET);
    let (status, list) = call("GET", &url, None);
    assert_eq!(status, 200);
    let shown = list["data"][0]["url"].as_str().unwrap();
    assert!(
        !shown.contains("fake-robot-access-token"),
        "the token is redacted: {shown}"
    );
    assert_eq!(list["data"][0]["has_secret"], true);
    assert!(!list.to_string().contains(ROBOT_SECRET), "{list}");

    // The test message reaches the robot, signed as DingTalk and dingtalkchatbot sign.
    let (status, tested) = call("POST", &format!("{url}/{robot_id}/test"), None);
    assert_eq!(
        (status, tested["delivered"].as_bool()),
        (200, Some(true)),
        "{tested}"
    );
    let messages = robot_messages(&messages_url);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["msgtype"], "markdown");
    assert_eq!(messages[0]["at"]["atMobiles"], json!(["13800000000"]));

    // A wrong secret: the robot answers 310000, and the test says so.
    let wrong = add_robot(&base, &robot_url, "SECnot-the-robots-secret");
    let (status, refused) = call("POST", &format!("{url}/{wrong}/test"), None);
    assert_eq!(
        (status, refused["delivered"].as_bool()),
        (200, Some(false)),
        "{refused}"
    );
    assert!(
        refused["error"].as_str().unwrap().contains("310000"),
        "{refused}"
    );

    for (body, status, code) in [
        (
            json!({"kind": "dingtalk", "url": "http://169.254.169.254/robot/send?access_token=x"}),
            422,
            "invalid_alert_url",
        ),
        (
            json!({"kind": "dingtalk", "url": "ftp://example.com/robot"}),
            422,
            "invalid_alert_url",
        ),
        (
            json!({"kind": "dingtalk", "url": "https://oapi.dingtalk.com/robot/send"}),
            422,
            "invalid_alert_url",
        ),
        (
            json!({"kind": "webhook", "url": "https://hooks.example.com/alerts"}),
            400,
            "invalid_request",
        ),
        (
            json!({"kind": "pager", "url": "https://hooks.example.com/alerts"}),
            400,
            "invalid_request",
        ),
        (
            json!({"kind": "webhook", "url": "https://hooks.example.com/a", "secret": "0123456789", "cc": 1}),
            400,
            "unknown_field",
        ),
        (
            json!({"kind": "dingtalk", "url": robot_url, "at_mobiles": ["not a phone"]}),
            400,
            "invalid_request",
        ),
    ] {
        let (got, answer) = call("POST", &url, Some(body.clone()));
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{body} → {answer}"
        );
    }

    let (status, deleted) = call("DELETE", &format!("{url}/{wrong}"), None);
    assert_eq!(
        (status, deleted["deleted"].as_bool()),
        (200, Some(true)),
        "{deleted}"
    );
    let (status, missing) = call("DELETE", &format!("{url}/{wrong}"), None);
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("alert_channel_not_found"))
    );
    let (_, list) = call("GET", &url, None);
    assert_eq!(list["data"].as_array().unwrap().len(), 1, "{list}");
}

/// What a receiver got: each body with its `Paycenter-Signature` header.
type Received = Arc<Mutex<Vec<(String, String)>>>;

/// A receiver of webhook alerts: its URL and what it got.
fn alert_receiver() -> (String, Received) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/alerts", listener.local_addr().unwrap());
    let seen: Received = Arc::default();
    let recorded = seen.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().take(10_000) {
            let Ok(mut stream) = stream else { continue };
            let mut request = Vec::new();
            let mut buffer = [0u8; 16_384];
            // Headers, then the body by its Content-Length.
            loop {
                let n = stream.read(&mut buffer).unwrap_or(0);
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buffer[..n]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some((head, body)) = text.split_once("\r\n\r\n") {
                    let length: usize = head
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length:")
                                .map(|v| v.trim().parse().unwrap_or(0))
                        })
                        .unwrap_or(0);
                    if body.len() >= length {
                        let signature = head
                            .lines()
                            .find_map(|line| {
                                line.to_ascii_lowercase()
                                    .starts_with("paycenter-signature:")
                                    .then(|| line.split_once(':').unwrap().1.trim().to_owned())
                            })
                            .unwrap_or_default();
                        recorded.lock().unwrap().push((body.to_owned(), signature));
                        break;
                    }
                }
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    (url, seen)
}

#[test]
fn a_condition_alerts_once_and_its_delivery_survives_kill_9() {
    let Some(python) = python() else { return };
    // The robot refuses the first request: the first delivery fails and is retried.
    let (_robot, robot_url, messages_url) = robot(
        &python,
        &[("FAKE_SECRET", ROBOT_SECRET), ("FAKE_FAIL_FIRST", "1")],
    );
    let (hook_url, hooks) = alert_receiver();
    let data_dir = tempfile::tempdir().unwrap();
    // The disk is "nearly full" for as long as the threshold says any free space is too little.
    let full_disk = [("PAYCENTER_ALERT_DISK_FREE_MB", "100000000")];
    let (server, base) = start(data_dir.path(), &full_disk);
    add_robot(&base, &robot_url, ROBOT_SECRET);
    let (status, hook) = call(
        "POST",
        &format!("{base}/v1/alert-channels"),
        Some(json!({"kind": "webhook", "url": hook_url, "secret": "alert-hook-secret-0123"})),
    );
    assert_eq!(status, 201, "{hook}");

    wait_for("the disk alert", 20, || {
        alerts(&base, "open")
            .iter()
            .any(|alert| alert["rule"] == "disk_low")
    });
    // The robot's first answer was a refusal: the delivery waits for its retry.
    wait_for("a failed first delivery", 20, || {
        alerts(&base, "open").iter().any(|alert| {
            alert["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .any(|delivery| delivery["attempts"] == 1 && delivery["status"] == "pending")
        })
    });
    // kill -9, and start again: the retry is in the log, not in the dead process.
    let mut server = server;
    server.0.kill().unwrap();
    server.0.wait().unwrap();
    let (server, base) = start(data_dir.path(), &full_disk);
    wait_for("the retried delivery", 40, || {
        let open = alerts(&base, "open");
        open.len() == 1
            && open[0]["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|delivery| delivery["status"] == "delivered")
    });
    // Still one alert: the condition held across the restart and raised nothing new.
    std::thread::sleep(Duration::from_secs(3));
    let all = alerts(&base, "open");
    assert_eq!(all.len(), 1, "{all:?}");
    let robot_delivery = all[0]["deliveries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|delivery| delivery["attempts"] == 2)
        .cloned();
    assert!(
        robot_delivery.is_some(),
        "the robot's delivery took two attempts: {all:?}"
    );
    let messages = robot_messages(&messages_url);
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert!(
        messages[0]["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("disk_low"),
        "{messages:?}"
    );

    // The condition stops (a sane threshold): resolved once, and told to both destinations.
    drop(server);
    let (_server, base) = start(data_dir.path(), &[]);
    wait_for("the resolution", 30, || {
        let resolved = alerts(&base, "resolved");
        resolved.len() == 1
            && resolved[0]["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|delivery| {
                    delivery["message"] == "resolved" && delivery["status"] == "delivered"
                })
                .count()
                == 2
    });
    assert!(alerts(&base, "open").is_empty());
    let messages = robot_messages(&messages_url);
    assert_eq!(messages.len(), 2, "{messages:?}");
    assert!(
        messages[1]["markdown"]["text"]
            .as_str()
            .unwrap()
            .contains("RESOLVED"),
        "{messages:?}"
    );

    // The webhook destination got both, signed with its secret like app webhooks. Delivery is
    // at least once: a kill between the destination's answer and the record of its delivery
    // sends the message again after the restart, under the same id, which a receiver dedupes by.
    let hooks = hooks.lock().unwrap().clone();
    let mut ids_and_types: Vec<(String, String)> = Vec::new();
    for (body, _) in &hooks {
        let body: Value = serde_json::from_str(body).unwrap();
        let id = body["id"].as_str().unwrap().to_owned();
        let kind = body["type"].as_str().unwrap().to_owned();
        match ids_and_types.iter().find(|(seen, _)| *seen == id) {
            Some((_, seen_kind)) => assert_eq!(*seen_kind, kind, "one id, two messages: {hooks:?}"),
            None => ids_and_types.push((id, kind)),
        }
    }
    let types: Vec<&str> = ids_and_types
        .iter()
        .map(|(_, kind)| kind.as_str())
        .collect();
    assert_eq!(types, ["alert.raised", "alert.resolved"], "{hooks:?}");
    for (body, header) in &hooks {
        let (t, v1) = header.split_once(",v1=").unwrap();
        let t = t.strip_prefix("t=").unwrap();
        let mut mac = Hmac::<Sha256>::new_from_slice(b"alert-hook-secret-0123").unwrap();
        mac.update(format!("{t}.{body}").as_bytes());
        assert_eq!(hex::encode(mac.finalize().into_bytes()), v1, "{header}");
    }
}

#[test]
fn webhooks_reconciliation_and_anomalies_raise_and_resolve_over_http() {
    let Some(python) = python() else { return };
    let (_robot, robot_url, messages_url) = robot(&python, &[("FAKE_SECRET", ROBOT_SECRET)]);
    let data_dir = tempfile::tempdir().unwrap();
    let (_server, base) = start(
        data_dir.path(),
        &[
            ("PAYCENTER_ALERT_WEBHOOK_FAILING_SECONDS", "2"),
            (
                "PAYCENTER_WEBHOOK_RETRY_SCHEDULE_MS",
                "500,1000,1000,1000,1000,1000,1000,1000,1000,1000",
            ),
        ],
    );
    add_robot(&base, &robot_url, ROBOT_SECRET);
    let (_, merchant) = call(
        "POST",
        &format!("{base}/v1/merchants"),
        Some(json!({"name": "Alerted"})),
    );
    let merchant_id = merchant["merchant_id"].as_str().unwrap().to_owned();
    let (_, account) = call(
        "POST",
        &format!("{base}/v1/merchants/{merchant_id}/channel-accounts"),
        Some(json!({"channel": "sandbox", "params": {}})),
    );
    let account_id = account["channel_account_id"].as_str().unwrap().to_owned();
    // The app's receiver is down: a port nobody listens on (taken again later).
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (_, app) = call(
        "POST",
        &format!("{base}/v1/apps"),
        Some(
            json!({"name": "Down app", "merchant_ids": [merchant_id], "notify_url": format!("http://127.0.0.1:{port}/hooks")}),
        ),
    );
    let api_key = app["api_key"].as_str().unwrap().to_owned();
    let app_id = app["app_id"].as_str().unwrap().to_owned();
    let pay = |order_no: &str, reported: Option<&str>| {
        let (status, created) = call_within(
            "POST",
            &format!("{base}/v1/payments"),
            &api_key,
            Some(
                json!({"merchant_id": merchant_id, "channel_account_id": account_id, "order_no": order_no, "amount": "10.00", "currency": "CNY", "invoke_method": "pc", "subject": "rent"}),
            ),
            Duration::from_secs(30),
        );
        assert_eq!(status, 201, "{created}");
        let trade_no = created["trade_no"].as_str().unwrap().to_owned();
        let mut body = json!({"outcome": "success"});
        if let Some(amount) = reported {
            body["amount"] = json!(amount);
        }
        let (status, paid) = call(
            "POST",
            &format!("{base}/sandbox/pay/{trade_no}"),
            Some(body),
        );
        assert!(status < 300, "{paid}");
        trade_no
    };

    // Webhooks failing for longer than 2 s: one alert for the app.
    let paid = pay("A-1", None);
    wait_for("the webhook alert", 30, || {
        alerts(&base, "open")
            .iter()
            .any(|alert| alert["rule"] == "webhooks_failing" && alert["subject"] == app_id)
    });
    // An anomaly: the channel reports 9.99 for a 10.00 attempt.
    let anomalous = pay("A-2", Some("9.99"));
    wait_for("the anomaly alert", 30, || {
        alerts(&base, "open")
            .iter()
            .chain(alerts(&base, "resolved").iter())
            .any(|alert| alert["rule"] == "anomaly" && alert["subject"] == anomalous)
    });
    // The reported money is refunded by the sandbox: the anomaly resolves.
    wait_for("the anomaly resolved", 30, || {
        alerts(&base, "resolved")
            .iter()
            .any(|alert| alert["rule"] == "anomaly")
    });

    // A bill with a trade paycenter never saw: discrepancies.
    let upload = |date: String, bill: String| {
        let response = ureq::post(&format!(
            "{base}/v1/reconciliations/upload?channel_account_id={account_id}&date={date}"
        ))
        .set("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_bytes(bill.as_bytes())
        .unwrap();
        response.into_json::<Value>().unwrap()
    };
    let today = chrono::Utc::now().format("%Y-%m-%d").to_string();
    let reconciled = upload(
        today,
        "trade_no,channel_trade_no,amount,currency\n2099010100000000000000000001,SBX1,1.00,CNY\n"
            .to_owned(),
    );
    assert!(
        !reconciled["discrepancies"].as_array().unwrap().is_empty(),
        "{reconciled}"
    );
    wait_for("the reconciliation alert", 30, || {
        alerts(&base, "open").iter().any(|alert| {
            alert["rule"] == "reconciliation_discrepancies" && alert["subject"] == account_id
        })
    });

    // No storm: each condition has one open alert while it holds.
    std::thread::sleep(Duration::from_secs(3));
    let open = alerts(&base, "open");
    for rule in ["webhooks_failing", "reconciliation_discrepancies"] {
        assert_eq!(
            open.iter().filter(|alert| alert["rule"] == rule).count(),
            1,
            "{open:?}"
        );
    }

    // The app's receiver comes back on its port: a delivery succeeds, the alert resolves.
    let receiver = TcpListener::bind(format!("127.0.0.1:{port}")).unwrap();
    std::thread::spawn(move || {
        for stream in receiver.incoming().take(1_000) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 65_536];
            let _ = stream.read(&mut buffer);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    let (status, _) = call("GET", &format!("{base}/v1/payments/{paid}"), None);
    assert_eq!(status, 200);
    wait_for("the webhook alert resolved", 40, || {
        alerts(&base, "resolved")
            .iter()
            .any(|alert| alert["rule"] == "webhooks_failing")
    });
    // A later run that is clean (a day without payments) resolves the reconciliation alert.
    let day_before = (chrono::Utc::now() - chrono::Duration::days(2))
        .format("%Y-%m-%d")
        .to_string();
    let clean = upload(
        day_before,
        "trade_no,channel_trade_no,amount,currency\n".to_owned(),
    );
    assert!(
        clean["discrepancies"].as_array().unwrap().is_empty(),
        "{clean}"
    );
    wait_for("the reconciliation alert resolved", 30, || {
        alerts(&base, "resolved")
            .iter()
            .any(|alert| alert["rule"] == "reconciliation_discrepancies")
    });

    // Every raise and resolve reached the robot, signed.
    wait_for("every message delivered", 30, || {
        alerts(&base, "resolved").iter().all(|alert| {
            alert["deliveries"]
                .as_array()
                .unwrap()
                .iter()
                .all(|delivery| delivery["status"] == "delivered")
        })
    });
    let texts: Vec<String> = robot_messages(&messages_url)
        .iter()
        .map(|message| message["markdown"]["text"].as_str().unwrap().to_owned())
        .collect();
    for rule in [
        "webhooks_failing",
        "anomaly",
        "reconciliation_discrepancies",
    ] {
        assert_eq!(
            texts
                .iter()
                .filter(|text| text.contains(rule) && text.contains("ALERT"))
                .count(),
            1,
            "{rule}: {texts:?}"
        );
        assert_eq!(
            texts
                .iter()
                .filter(|text| text.contains(rule) && text.contains("RESOLVED"))
                .count(),
            1,
            "{rule}: {texts:?}"
        );
    }
}

#[test]
fn a_store_refusing_appends_is_told_directly_once() {
    let (hook_url, hooks) = alert_receiver();
    let data_dir = tempfile::tempdir().unwrap();
    let fault = data_dir.path().join("inject-fsync-failure");
    let fault_env = fault.to_str().unwrap().to_owned();
    let (_server, base) = start(
        data_dir.path(),
        &[("PAYCENTER_FAULT_FSYNC_FAIL_FILE", fault_env.as_str())],
    );
    let (status, hook) = call(
        "POST",
        &format!("{base}/v1/alert-channels"),
        Some(json!({"kind": "webhook", "url": hook_url, "secret": "alert-hook-secret-0123"})),
    );
    assert_eq!(status, 201, "{hook}");
    // The store's fsyncs fail from now on: the write is refused, and no alert can be recorded.
    std::fs::write(&fault, b"").unwrap();
    let (status, refused) = call(
        "POST",
        &format!("{base}/v1/merchants"),
        Some(json!({"name": "After"})),
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (503, Some("store_unavailable")),
        "{refused}"
    );
    let told = || {
        hooks
            .lock()
            .unwrap()
            .iter()
            .map(|(body, _)| serde_json::from_str::<Value>(body).unwrap())
            .filter(|message| {
                message["type"] == "alert.unrecorded" && message["data"]["condition"] == "store"
            })
            .count()
    };
    wait_for("the direct alert", 20, || told() >= 1);
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(told(), 1, "told once per outage");
}

#[test]
fn a_read_model_falling_behind_alerts_and_resolves_once_it_catches_up() {
    let data_dir = tempfile::tempdir().unwrap();
    let pause = data_dir.path().join("pause-follower");
    let pause_env = pause.to_str().unwrap().to_owned();
    let (_server, base) = start(
        data_dir.path(),
        &[
            ("PAYCENTER_FAULT_FOLLOWER_PAUSE_FILE", pause_env.as_str()),
            ("PAYCENTER_ALERT_PROJECTION_LAG_SECONDS", "1"),
        ],
    );
    // The follower pauses; a write is recorded (and waits for the read model in vain).
    std::fs::write(&pause, b"").unwrap();
    // The follower looks at the file between reads of the log (at most 200 ms apart).
    std::thread::sleep(Duration::from_millis(500));
    let (status, _) = call(
        "POST",
        &format!("{base}/v1/merchants"),
        Some(json!({"name": "Behind"})),
    );
    assert_eq!(status, 201);
    // Long enough for the oldest unapplied event to be over a second old, and for a round of
    // the rules to see it (its raise waits for the paused read model too).
    std::thread::sleep(Duration::from_secs(4));
    std::fs::remove_file(&pause).unwrap();
    // Once the follower runs again the raise is in the read model, then the resolution.
    wait_for("the lag alert raised and resolved", 40, || {
        alerts(&base, "resolved")
            .iter()
            .any(|alert| alert["rule"] == "projection_lagging" && alert["subject"] == "read_model")
    });
    // The pause holds the balances' follower too, so it may have raised its own lag alert; the
    // rules resolve that one in their own round. Every lag alert is resolved in the end.
    wait_for("no lag alert left open", 40, || {
        alerts(&base, "open")
            .iter()
            .all(|alert| alert["rule"] != "projection_lagging")
    });
}
