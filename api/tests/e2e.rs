//! End to end over real HTTP: the `paycenter` binary as a child process on loopback, a local
//! webhook receiver that checks every signature with an independent HMAC, and a restart.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hmac::{Hmac, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

mod support;

const ADMIN_TOKEN: &str = "e2e-admin-token-0123456789";
/// The sandbox account's signing secret, so tests can sign callbacks as the sandbox does.
const SANDBOX_SECRET: &str = "e2e-sandbox-secret-0123456789";

struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a test server keeps its events: the embedded store, or a PostgreSQL schema.
#[derive(Clone, Copy)]
enum StoreChoice<'a> {
    Embedded,
    Postgres { url: &'a str, schema: &'a str },
}

fn spawn_server(
    data_dir: &std::path::Path,
    listen: &str,
    retry_schedule_ms: &str,
    store: StoreChoice<'_>,
) -> (Child, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paycenter"));
    command.args([
        "serve",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--listen",
        listen,
    ]);
    if let StoreChoice::Postgres { url, schema } = store {
        command
            .args(["--store", url])
            .env("PAYCENTER_POSTGRES_SCHEMA", schema)
            // Nodes sharing a database share the master key.
            .env("PAYCENTER_MASTER_KEY", SHARED_MASTER_KEY)
            // A short webhook timeout, so an attempt's lease ends soon after a node dies.
            .env("PAYCENTER_WEBHOOK_TIMEOUT_MS", "1000")
            .env("PAYCENTER_NODE_ID", format!("node-{listen}"));
    }
    let mut child = command
        .env("PAYCENTER_ADMIN_TOKEN", ADMIN_TOKEN)
        .env("PAYCENTER_MIN_ATTEMPT_INTERVAL_MS", "1000")
        .env("PAYCENTER_WEBHOOK_RETRY_SCHEDULE_MS", retry_schedule_ms)
        // Frequent snapshots, so restarts after SIGKILL resume from an older one and catch up.
        .env("PAYCENTER_SNAPSHOT_INTERVAL_SECONDS", "1")
        // Everything down to debug, kept beside the data, so tests can check what is logged.
        .env("RUST_LOG", "debug")
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(data_dir.join("server.log"))
                .unwrap(),
        ))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("paycenter listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_owned();
    (child, base)
}

/// The master key of nodes on PostgreSQL (32 bytes, base64).
const SHARED_MASTER_KEY: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";

/// The webhook retry schedule of most tests: three quick retries.
const QUICK_RETRIES_MS: &str = "100,100,100";

fn start_server(data_dir: &std::path::Path) -> Server {
    start_server_with(data_dir, QUICK_RETRIES_MS, StoreChoice::Embedded)
}

fn start_server_with(
    data_dir: &std::path::Path,
    retry_schedule_ms: &str,
    store: StoreChoice<'_>,
) -> Server {
    // The public URL (for callbacks) must name the real port, so pick a free one first.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let (child, base) = spawn_server(
        data_dir,
        &format!("127.0.0.1:{port}"),
        retry_schedule_ms,
        store,
    );
    Server { child, base }
}

static WEBHOOK_SECRET: Mutex<String> = Mutex::new(String::new());

/// A webhook receiver on loopback: records every delivery whose signature verifies, answers
/// with the status the test sets.
struct Receiver {
    url: String,
    deliveries: Arc<Mutex<Vec<Value>>>,
    bad_signatures: Arc<Mutex<usize>>,
    answer_status: Arc<Mutex<u16>>,
}

fn start_receiver() -> Receiver {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let deliveries: Arc<Mutex<Vec<Value>>> = Arc::default();
    let bad_signatures: Arc<Mutex<usize>> = Arc::default();
    let answer_status = Arc::new(Mutex::new(200u16));
    let receiver = Receiver {
        url,
        deliveries: deliveries.clone(),
        bad_signatures: bad_signatures.clone(),
        answer_status: answer_status.clone(),
    };
    std::thread::spawn(move || {
        for stream in listener.incoming().take(10_000) {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut content_length = 0usize;
            let mut signature = String::new();
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                let lower = line.to_ascii_lowercase();
                if let Some(value) = lower.strip_prefix("content-length:") {
                    content_length = value.trim().parse().unwrap_or(0);
                }
                if lower.starts_with("paycenter-signature:") {
                    signature = line["paycenter-signature:".len()..].trim().to_owned();
                }
            }
            let mut body = vec![0u8; content_length];
            if reader.read_exact(&mut body).is_err() {
                continue;
            }
            let secret = WEBHOOK_SECRET.lock().unwrap().clone();
            if verify_signature(&secret, &signature, &body) {
                deliveries
                    .lock()
                    .unwrap()
                    .push(serde_json::from_slice(&body).unwrap());
            } else {
                *bad_signatures.lock().unwrap() += 1;
            }
            let status = *answer_status.lock().unwrap();
            let _ = write!(
                stream,
                "HTTP/1.1 {status} X\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    receiver
}

/// Checks `t=..,v1=..` with the `hmac` crate directly, independent of paycenter's signing code.
fn verify_signature(secret: &str, header: &str, body: &[u8]) -> bool {
    let mut timestamp = "";
    let mut v1 = "";
    for part in header.split(',') {
        if let Some(value) = part.strip_prefix("t=") {
            timestamp = value;
        }
        if let Some(value) = part.strip_prefix("v1=") {
            v1 = value;
        }
    }
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(format!("{timestamp}.").as_bytes());
    mac.update(body);
    hex::encode(mac.finalize().into_bytes()) == v1
}

fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    support::call_within(method, url, token, body, Duration::from_secs(10))
}

fn wait_for(what: &str, done: impl FnMut() -> bool) {
    support::wait_for_within(
        what,
        Duration::from_secs(20),
        Duration::from_millis(50),
        done,
    )
}

/// Waits until no webhook is pending, so nothing appends in the background: "recorded
/// nothing" checks compare log positions and must not see a delivery attempt land meanwhile.
fn wait_until_quiet(base: &str, api_key: &str) {
    wait_for("no pending notification", || {
        call(
            "GET",
            &format!("{base}/v1/notifications?status=pending"),
            api_key,
            None,
        )
        .1["notifications"]
            .as_array()
            .is_some_and(|items| items.is_empty())
    });
}

/// Plays the user paying in the sandbox and waits for the callback to be recorded; answers
/// the payment as it then stands.
fn pay_in_sandbox(base: &str, api_key: &str, trade_no: &str) -> Value {
    let (status, answer) = call(
        "POST",
        &format!("{base}/sandbox/pay/{trade_no}"),
        "",
        Some(json!({"outcome": "success"})),
    );
    assert_eq!(status, 202, "{answer}");
    wait_for("payment succeeded", || {
        call(
            "GET",
            &format!("{base}/v1/payments/{trade_no}"),
            api_key,
            None,
        )
        .1["status"]
            == "succeeded"
    });
    call(
        "GET",
        &format!("{base}/v1/payments/{trade_no}"),
        api_key,
        None,
    )
    .1
}

struct Setup {
    merchant_id: String,
    channel_account_id: String,
    api_key: String,
}

fn onboard(base: &str, notify_url: &str) -> Setup {
    let (status, merchant) = call(
        "POST",
        &format!("{base}/v1/merchants"),
        ADMIN_TOKEN,
        Some(json!({"name": "Acme Property"})),
    );
    assert_eq!(status, 201, "{merchant}");
    let merchant_id = merchant["merchant_id"].as_str().unwrap().to_owned();
    let (status, account) = call(
        "POST",
        &format!("{base}/v1/merchants/{merchant_id}/channel-accounts"),
        ADMIN_TOKEN,
        Some(
            json!({"channel": "sandbox", "params": {"signing_secret": SANDBOX_SECRET}, "fee_rate": "0.006"}),
        ),
    );
    assert_eq!(status, 201, "{account}");
    assert_eq!(account["status"], "active");
    let (status, app) = call(
        "POST",
        &format!("{base}/v1/apps"),
        ADMIN_TOKEN,
        Some(json!({"name": "rent", "merchant_ids": [merchant_id], "notify_url": notify_url})),
    );
    assert_eq!(status, 201, "{app}");
    *WEBHOOK_SECRET.lock().unwrap() = app["webhook_secret"].as_str().unwrap().to_owned();
    Setup {
        merchant_id,
        channel_account_id: account["channel_account_id"].as_str().unwrap().to_owned(),
        api_key: app["api_key"].as_str().unwrap().to_owned(),
    }
}

fn payment_body(setup: &Setup, order_no: &str, amount: &str) -> Value {
    json!({
        "merchant_id": setup.merchant_id, "channel_account_id": setup.channel_account_id, "order_no": order_no,
        "amount": amount, "currency": "CNY", "invoke_method": "pc", "subject": "rent for May"
    })
}

#[test]
fn payment_lifecycle_webhooks_refunds_and_restart() {
    let World {
        _serial,
        data_dir,
        receiver,
        server,
        setup,
    } = World::start(200);
    let base = server.base.clone();
    let key = setup.api_key.clone();

    // Create: the initiation result only.
    let (status, created) = call(
        "POST",
        &format!("{base}/v1/payments"),
        &key,
        Some(payment_body(&setup, "ORDER-1", "100.00")),
    );
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["status"], "pending");
    assert_eq!(created["action"]["type"], "checkout_url");
    let trade_no = created["trade_no"].as_str().unwrap().to_owned();

    // The checkout page is real HTML with the amount and a pay button.
    let page = ureq::get(&format!("{base}/checkout/{trade_no}"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        page.contains("100.00") && page.contains("Acme Property") && page.contains("/sandbox/pay/")
    );

    // A second attempt too soon is refused with retry_after.
    let (status, refused) = call(
        "POST",
        &format!("{base}/v1/payments"),
        &key,
        Some(payment_body(&setup, "ORDER-1", "100.00")),
    );
    assert_eq!(status, 409, "{refused}");
    assert_eq!(refused["error"]["code"], "attempt_too_soon");
    assert!(refused["error"]["retry_after"].as_u64().unwrap() >= 1);

    // The user pays; the outcome arrives through the sandbox's signed callback.
    let payment = pay_in_sandbox(&base, &key, &trade_no);
    assert_eq!(payment["amount"], "100.00");
    assert_eq!(payment["fee"], "0.60");
    let channel_trade_no = payment["channel_trade_no"].as_str().unwrap().to_owned();
    wait_for("payment.succeeded webhook", || {
        receiver
            .deliveries
            .lock()
            .unwrap()
            .iter()
            .any(|hook| hook["type"] == "payment.succeeded")
    });

    // Every id finds it.
    let (_, by_order) = call(
        "GET",
        &format!(
            "{base}/v1/payments?merchant_id={}&order_no=ORDER-1",
            setup.merchant_id
        ),
        &key,
        None,
    );
    assert_eq!(by_order["trade_no"], trade_no.as_str());
    let (_, by_channel) = call(
        "GET",
        &format!("{base}/v1/payments?channel_trade_no={channel_trade_no}"),
        &key,
        None,
    );
    assert_eq!(by_channel["trade_no"], trade_no.as_str());

    // The channel repeating its callback (correctly signed) changes nothing.
    wait_until_quiet(&base, &key);
    let position =
        call("GET", &format!("{base}/healthz"), "", None).1["read_model_position"].clone();
    let repeat = json!({
        "kind": "payment.paid", "trade_no": trade_no, "channel_trade_no": channel_trade_no,
        "amount": "100.00", "currency": "CNY"
    })
    .to_string();
    for _ in 0..3 {
        let now = chrono::Utc::now().timestamp();
        let mut mac = Hmac::<Sha256>::new_from_slice(SANDBOX_SECRET.as_bytes()).unwrap();
        mac.update(format!("{now}.{repeat}").as_bytes());
        let signature = format!("t={now},v1={}", hex::encode(mac.finalize().into_bytes()));
        let answer = ureq::post(&format!(
            "{base}/callbacks/sandbox/{}",
            setup.channel_account_id
        ))
        .set("sandbox-signature", &signature)
        .send_string(&repeat)
        .unwrap();
        assert_eq!(answer.status(), 200, "a repeated callback is acknowledged");
    }
    assert_eq!(
        call("GET", &format!("{base}/healthz"), "", None).1["read_model_position"],
        position,
        "and records nothing"
    );

    // Paid orders refuse new attempts.
    std::thread::sleep(Duration::from_millis(1_100));
    let (status, refused) = call(
        "POST",
        &format!("{base}/v1/payments"),
        &key,
        Some(payment_body(&setup, "ORDER-1", "100.00")),
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("order_already_paid"))
    );

    // Refunds: partial, replay, over the limit.
    let refund = |refund_no: &str, amount: &str| {
        call(
            "POST",
            &format!("{base}/v1/payments/{trade_no}/refunds"),
            &key,
            Some(json!({"refund_no": refund_no, "amount": amount})),
        )
    };
    let (status, first) = refund("RF-1", "30.00");
    assert_eq!(status, 201, "{first}");
    assert_eq!(first["status"], "pending");
    let (status, replay) = refund("RF-1", "30.00");
    assert_eq!(
        (status, replay["refund_id"].clone()),
        (201, first["refund_id"].clone())
    );
    let (status, reused) = refund("RF-1", "31.00");
    assert_eq!(
        (status, reused["error"]["code"].as_str()),
        (409, Some("refund_no_reused"))
    );
    let (status, too_much) = refund("RF-2", "70.01");
    assert_eq!(
        (status, too_much["error"]["code"].as_str()),
        (422, Some("refund_exceeds_available"))
    );
    wait_for("refund succeeded", || {
        call("GET", &format!("{base}/v1/payments/{trade_no}"), &key, None).1["refunded_amount"]
            == "30.00"
    });
    wait_for("refund.succeeded webhook", || {
        receiver
            .deliveries
            .lock()
            .unwrap()
            .iter()
            .any(|hook| hook["type"] == "refund.succeeded")
    });
    assert_eq!(
        *receiver.bad_signatures.lock().unwrap(),
        0,
        "every webhook signature verifies"
    );

    // Balances: 100.00 paid at 0.6%, 30.00 refunded (the fee gives back its 0.18 share).
    let (status, balances) = call(
        "GET",
        &format!("{base}/v1/merchants/{}/balances", setup.merchant_id),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(status, 200, "{balances}");
    let balance_of = |prefix: &str| {
        balances["accounts"]
            .as_array()
            .unwrap()
            .iter()
            .find(|account| account["account"].as_str().unwrap().starts_with(prefix))
            .unwrap()["balance"]
            .clone()
    };
    assert_eq!(balance_of("clearing:"), "70.00");
    assert_eq!(balance_of("payable"), "69.58");
    assert_eq!(balance_of("fee"), "0.42");
    let (status, _) = call(
        "GET",
        &format!("{base}/v1/merchants/{}/balances", setup.merchant_id),
        &key,
        None,
    );
    assert_eq!(status, 401, "balances are for the admin");

    // The event feed lists the app's events in order with stable cursors.
    let (_, feed) = call(
        "GET",
        &format!("{base}/v1/events?after=0&limit=10"),
        &key,
        None,
    );
    let types: Vec<&str> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| event["type"].as_str().unwrap())
        .collect();
    assert_eq!(types, ["payment.succeeded", "refund.succeeded"]);
    let (_, rest) = call(
        "GET",
        &format!(
            "{base}/v1/events?after={}",
            feed["events"][0]["cursor"].as_str().unwrap()
        ),
        &key,
        None,
    );
    assert_eq!(rest["events"].as_array().unwrap().len(), 1);

    // A callback with a bad signature is refused and records nothing.
    wait_until_quiet(&base, &key);
    let position =
        call("GET", &format!("{base}/healthz"), "", None).1["read_model_position"].clone();
    let forged = ureq::post(&format!(
        "{base}/callbacks/sandbox/{}",
        setup.channel_account_id
    ))
    .set("sandbox-signature", "t=1,v1=00")
    .send_string(&json!({"kind": "payment.paid", "trade_no": trade_no}).to_string());
    assert!(matches!(forged, Err(ureq::Error::Status(400, _))));
    assert_eq!(
        call("GET", &format!("{base}/healthz"), "", None).1["read_model_position"],
        position
    );

    // Metrics saw it all.
    let metrics = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    for line in [
        "paycenter_http_requests_total{route=\"create_payment\",status=\"201\"} 1",
        "paycenter_http_requests_total{route=\"create_payment\",status=\"409\"} 2",
        "paycenter_payments{status=\"succeeded\"} 1",
        "paycenter_callback_verification_failures_total 1",
    ] {
        assert!(
            metrics.lines().any(|metric| metric == line),
            "missing {line} in\n{metrics}"
        );
    }
    assert!(metrics.contains(
        "paycenter_http_request_duration_seconds_bucket{route=\"create_payment\",le=\"+Inf\"} 3"
    ));

    // No secret reached the log, even at debug level.
    let log = std::fs::read_to_string(data_dir.path().join("server.log")).unwrap();
    assert!(log.contains("paycenter listening"), "the log was captured");
    for secret in [
        key.as_str(),
        WEBHOOK_SECRET.lock().unwrap().as_str(),
        ADMIN_TOKEN,
    ] {
        assert!(!log.contains(secret), "a secret was logged");
    }

    // Restart keeps everything.
    wait_until_quiet(&base, &key);
    let before = call("GET", &format!("{base}/v1/payments/{trade_no}"), &key, None).1;
    let projection_before = call(
        "GET",
        &format!("{base}/v1/admin/projections"),
        ADMIN_TOKEN,
        None,
    )
    .1["projections"][0]
        .clone();
    // SIGTERM: paycenter finishes what is in flight, closes the store and exits cleanly.
    let mut server = server;
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = server.child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "paycenter did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "clean exit on SIGTERM: {exit:?}");
    let log = std::fs::read_to_string(data_dir.path().join("server.log")).unwrap();
    assert!(log.contains("paycenter stopped"), "shutdown was logged");
    drop(server);
    let server = start_server(data_dir.path());
    let after = call(
        "GET",
        &format!("{}/v1/payments/{trade_no}", server.base),
        &key,
        None,
    )
    .1;
    assert_eq!(before, after);
    // It resumed from the snapshot saved at shutdown, at the position it stopped at.
    let projection_after = call(
        "GET",
        &format!("{}/v1/admin/projections", server.base),
        ADMIN_TOKEN,
        None,
    )
    .1["projections"][0]
        .clone();
    assert_eq!(
        projection_after["started_from_snapshot"],
        projection_before["position"]
    );
    assert_eq!(projection_after["digest"], projection_before["digest"]);
    // A replayed request decides nothing and waits for the model to have what it read: it
    // must answer at once after a resume, not wait for an event that never comes.
    let started = Instant::now();
    let (status, replayed) = call(
        "POST",
        &format!("{}/v1/payments/{trade_no}/refunds", server.base),
        &key,
        Some(json!({"refund_no": "RF-1", "amount": "30.00"})),
    );
    assert_eq!(status, 201, "{replayed}");
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "the replay answered promptly"
    );
}

/// The receiver's secret is process-wide: the tests run one at a time.
static SERIAL: Mutex<()> = Mutex::new(());

/// A running paycenter with one onboarded merchant, sandbox account and app, and a webhook
/// receiver answering `receiver_status`.
struct World {
    _serial: std::sync::MutexGuard<'static, ()>,
    data_dir: tempfile::TempDir,
    receiver: Receiver,
    server: Server,
    setup: Setup,
}

impl World {
    fn start(receiver_status: u16) -> World {
        let serial = SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let data_dir = tempfile::tempdir().unwrap();
        let receiver = start_receiver();
        *receiver.answer_status.lock().unwrap() = receiver_status;
        let server = start_server(data_dir.path());
        let setup = onboard(&server.base, &receiver.url);
        World {
            _serial: serial,
            data_dir,
            receiver,
            server,
            setup,
        }
    }
}

#[test]
fn webhooks_are_retried_then_marked_failed_and_redeliverable() {
    let World {
        _serial,
        data_dir: _data_dir,
        receiver,
        server,
        setup,
    } = World::start(500);
    let base = server.base.clone();
    let key = setup.api_key.clone();
    let (_, created) = call(
        "POST",
        &format!("{base}/v1/payments"),
        &key,
        Some(payment_body(&setup, "ORDER-9", "5.00")),
    );
    let trade_no = created["trade_no"].as_str().unwrap().to_owned();
    call(
        "POST",
        &format!("{base}/sandbox/pay/{trade_no}"),
        "",
        Some(json!({"outcome": "failure"})),
    );
    // Schedule 100,100,100 ms: four attempts, then failed.
    wait_for("notification failed", || {
        call(
            "GET",
            &format!("{base}/v1/notifications?status=failed"),
            &key,
            None,
        )
        .1["notifications"]
            .as_array()
            .is_some_and(|items| !items.is_empty())
    });
    let (_, failed) = call(
        "GET",
        &format!("{base}/v1/notifications?status=failed"),
        &key,
        None,
    );
    assert_eq!(failed["notifications"][0]["attempts"], 4);
    assert_eq!(failed["notifications"][0]["type"], "payment.failed");
    assert_eq!(
        receiver.deliveries.lock().unwrap().len(),
        4,
        "each attempt reached the receiver, signed"
    );
    *receiver.answer_status.lock().unwrap() = 200;
    let id = failed["notifications"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, _) = call(
        "POST",
        &format!("{base}/v1/notifications/{id}/redeliver"),
        &key,
        None,
    );
    assert_eq!(status, 202);
    wait_for("delivered", || {
        call(
            "GET",
            &format!("{base}/v1/notifications?status=delivered"),
            &key,
            None,
        )
        .1["notifications"]
            .as_array()
            .is_some_and(|items| items.len() == 1)
    });
}

#[test]
fn bad_input_answers_4xx_with_a_code_and_records_nothing() {
    let World {
        _serial,
        data_dir: _data_dir,
        receiver: _receiver,
        server,
        setup,
    } = World::start(200);
    let base = server.base.clone();
    let key = setup.api_key.clone();
    let healthz = |base: &str| {
        call("GET", &format!("{base}/healthz"), "", None).1["read_model_position"]
            .as_u64()
            .unwrap()
    };
    let position_before = healthz(&base);

    let good = payment_body(&setup, "ORDER-X", "10.00");
    let with = |field: &str, value: Value| {
        let mut body = good.clone();
        body[field] = value;
        body
    };
    let without = |field: &str| {
        let mut body = good.clone();
        body.as_object_mut().unwrap().remove(field);
        body
    };
    let cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "missing merchant_id",
            without("merchant_id"),
            400,
            "invalid_request",
        ),
        ("missing amount", without("amount"), 400, "invalid_request"),
        (
            "missing currency",
            without("currency"),
            400,
            "invalid_request",
        ),
        (
            "missing order_no",
            without("order_no"),
            400,
            "invalid_request",
        ),
        (
            "missing subject",
            without("subject"),
            400,
            "invalid_request",
        ),
        (
            "amount as number",
            with("amount", json!(10.0)),
            400,
            "invalid_amount",
        ),
        (
            "too many decimals",
            with("amount", json!("10.001")),
            400,
            "invalid_amount",
        ),
        ("zero", with("amount", json!("0")), 400, "invalid_amount"),
        (
            "negative",
            with("amount", json!("-1.00")),
            400,
            "invalid_amount",
        ),
        (
            "non-numeric",
            with("amount", json!("ten")),
            400,
            "invalid_amount",
        ),
        (
            "absurdly large",
            with("amount", json!("100000000000.00")),
            400,
            "invalid_amount",
        ),
        (
            "unknown currency",
            with("currency", json!("XYZ")),
            400,
            "invalid_currency",
        ),
        (
            "bad invoke method",
            with("invoke_method", json!("telepathy")),
            422,
            "unsupported_invoke_method",
        ),
        (
            "wrong type order_no",
            with("order_no", json!(12)),
            400,
            "invalid_request",
        ),
        (
            "order_no too long",
            with("order_no", json!("x".repeat(65))),
            400,
            "invalid_request",
        ),
        (
            "foreign merchant",
            with("merchant_id", json!("mch_00000000000000000000000000000001")),
            403,
            "merchant_not_allowed",
        ),
        (
            "malformed merchant id",
            with("merchant_id", json!("nope")),
            400,
            "invalid_request",
        ),
        (
            "unknown channel account",
            with(
                "channel_account_id",
                json!("ca_00000000000000000000000000000001"),
            ),
            404,
            "channel_account_not_found",
        ),
        (
            "splits over amount",
            with("splits", json!([{"receiver": "x", "amount": "10.01"}])),
            422,
            "splits_exceed_amount",
        ),
        (
            "bad expire_seconds",
            with("expire_seconds", json!(-5)),
            400,
            "invalid_request",
        ),
    ];
    for (name, body, status, code) in cases {
        let (got_status, answer) = call("POST", &format!("{base}/v1/payments"), &key, Some(body));
        assert_eq!(
            (got_status, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {answer}"
        );
        assert!(
            !answer["error"]["message"].as_str().unwrap().is_empty(),
            "{name}"
        );
    }
    // Admin and refund bodies.
    let merchants = format!("{base}/v1/merchants");
    let accounts = format!("{base}/v1/merchants/{}/channel-accounts", setup.merchant_id);
    let apps = format!("{base}/v1/apps");
    let admin_cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        (
            "merchant without name",
            merchants.as_str(),
            json!({}),
            400,
            "invalid_request",
        ),
        (
            "merchant name not a string",
            merchants.as_str(),
            json!({"name": 5}),
            400,
            "invalid_request",
        ),
        (
            "unknown channel",
            accounts.as_str(),
            json!({"channel": "paypal", "params": {}}),
            422,
            "unsupported_channel",
        ),
        (
            "params not an object",
            accounts.as_str(),
            json!({"channel": "sandbox", "params": "x"}),
            400,
            "invalid_request",
        ),
        (
            "short sandbox secret",
            accounts.as_str(),
            json!({"channel": "sandbox", "params": {"signing_secret": "x"}}),
            422,
            "invalid_channel_params",
        ),
        (
            "fee rate over 1",
            accounts.as_str(),
            json!({"channel": "sandbox", "params": {}, "fee_rate": "1.5"}),
            400,
            "invalid_fee_rate",
        ),
        (
            "app without notify_url",
            apps.as_str(),
            json!({"name": "a", "merchant_ids": [setup.merchant_id]}),
            400,
            "invalid_request",
        ),
        (
            "notify_url not http",
            apps.as_str(),
            json!({"name": "a", "merchant_ids": [setup.merchant_id], "notify_url": "ftp://x/y"}),
            400,
            "invalid_request",
        ),
        (
            "app for an unknown merchant",
            apps.as_str(),
            json!({"name": "a", "merchant_ids": ["mch_00000000000000000000000000000001"], "notify_url": "http://127.0.0.1:9/x"}),
            404,
            "merchant_not_found",
        ),
        (
            "app without merchants",
            apps.as_str(),
            json!({"name": "a", "merchant_ids": [], "notify_url": "http://127.0.0.1:9/x"}),
            400,
            "invalid_request",
        ),
    ];
    for (name, url, body, status, code) in admin_cases {
        let (got_status, answer) = call("POST", url, ADMIN_TOKEN, Some(body));
        assert_eq!(
            (got_status, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {answer}"
        );
    }
    let (status, answer) = call(
        "POST",
        &format!("{base}/v1/merchants/mch_00000000000000000000000000000001/channel-accounts"),
        ADMIN_TOKEN,
        Some(json!({"channel": "sandbox", "params": {}})),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("merchant_not_found"))
    );
    assert_eq!(
        healthz(&base),
        position_before,
        "refused payments and admin requests record nothing"
    );
    let (_, created) = call(
        "POST",
        &format!("{base}/v1/payments"),
        &key,
        Some(payment_body(&setup, "ORDER-R", "10.00")),
    );
    let position_with_payment = healthz(&base);
    let refunds = format!(
        "{base}/v1/payments/{}/refunds",
        created["trade_no"].as_str().unwrap()
    );
    let refund_cases: Vec<(&str, Value, u16, &str)> = vec![
        (
            "missing refund_no",
            json!({"amount": "1.00"}),
            400,
            "invalid_request",
        ),
        (
            "missing amount",
            json!({"refund_no": "R1"}),
            400,
            "invalid_request",
        ),
        (
            "too many decimals",
            json!({"refund_no": "R1", "amount": "1.001"}),
            400,
            "invalid_amount",
        ),
        (
            "unpaid payment",
            json!({"refund_no": "R1", "amount": "1.00"}),
            409,
            "payment_not_refundable",
        ),
    ];
    for (name, body, status, code) in refund_cases {
        let (got_status, answer) = call("POST", &refunds, &key, Some(body));
        assert_eq!(
            (got_status, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{name}: {answer}"
        );
    }
    assert_eq!(
        healthz(&base),
        position_with_payment,
        "refused refunds record nothing"
    );

    // Auth.
    let no_auth = ureq::post(&format!("{base}/v1/payments")).send_json(good.clone());
    let Err(ureq::Error::Status(401, response)) = no_auth else {
        panic!("a request without Authorization was accepted")
    };
    assert_eq!(
        response.into_json::<Value>().unwrap()["error"]["code"],
        "unauthorized"
    );
    let (status, answer) = call(
        "POST",
        &format!("{base}/v1/payments"),
        "wrong-key",
        Some(good.clone()),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (401, Some("unauthorized"))
    );
    let (status, _) = call(
        "POST",
        &format!("{base}/v1/merchants"),
        &key,
        Some(json!({"name": "x"})),
    );
    assert_eq!(status, 401, "an app key is no admin token");
    let (status, answer) = call(
        "POST",
        &format!("{base}/v1/merchants"),
        ADMIN_TOKEN,
        Some(json!({"name": ""})),
    );
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    // Malformed JSON and oversized bodies.
    let malformed = ureq::post(&format!("{base}/v1/payments"))
        .set("authorization", &format!("Bearer {key}"))
        .send_string("{not json");
    let Err(ureq::Error::Status(400, response)) = malformed else {
        panic!("malformed JSON accepted")
    };
    assert_eq!(
        response.into_json::<Value>().unwrap()["error"]["code"],
        "invalid_json"
    );
    // Oversized: over a raw socket, because the server may answer 413 and close before a
    // client has finished sending, which HTTP clients report as a transport error.
    let mut socket = std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let huge = format!("{{\"name\": \"{}\"}}", "x".repeat(100_000));
    write!(
        socket,
        "POST /v1/merchants HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {ADMIN_TOKEN}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
        huge.len()
    )
    .unwrap();
    let _ = socket.write_all(huge.as_bytes());
    let mut answer = String::new();
    let _ = socket.read_to_string(&mut answer);
    assert!(
        answer.starts_with("HTTP/1.1 413"),
        "{}",
        &answer[..answer.len().min(200)]
    );
    assert!(answer.contains("payload_too_large"));
    // Nothing was recorded by any of it.
    assert_eq!(healthz(&base), position_with_payment);
    let (status, answer) = call("GET", &format!("{base}/v1/payments/12345678"), &key, None);
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("payment_not_found"))
    );
    let (status, answer) = call("GET", &format!("{base}/nowhere"), "", None);
    assert_eq!(
        (status, answer["error"]["code"].as_str()),
        (404, Some("route_not_found"))
    );
}

fn create_with_key(base: &str, api_key: &str, idempotency_key: &str, body: &Value) -> (u16, Value) {
    let result = ureq::post(&format!("{base}/v1/payments"))
        .set("authorization", &format!("Bearer {api_key}"))
        .set("idempotency-key", idempotency_key)
        .timeout(Duration::from_secs(10))
        .send_json(body.clone());
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{error}"),
    };
    (response.status(), response.into_json().unwrap())
}

#[test]
fn idempotency_keys_replay_and_concurrent_duplicates_have_one_effect() {
    let World {
        _serial,
        data_dir,
        receiver: _receiver,
        server,
        setup,
    } = World::start(200);
    let base = server.base.clone();
    let key = setup.api_key.clone();
    let body = payment_body(&setup, "ORDER-IDEM", "12.00");

    // Eight concurrent requests with one key: one attempt, eight identical answers.
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| scope.spawn(|| create_with_key(&base, &key, "key-1", &body)))
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    for answer in &answers {
        assert_eq!(answer, &answers[0], "every duplicate gets the first answer");
    }
    assert_eq!(answers[0].0, 201, "{}", answers[0].1);
    let trade_no = answers[0].1["trade_no"].as_str().unwrap().to_owned();
    let (_, order) = call(
        "GET",
        &format!(
            "{base}/v1/payments?merchant_id={}&order_no=ORDER-IDEM",
            setup.merchant_id
        ),
        &key,
        None,
    );
    assert_eq!(order["attempts"].as_array().unwrap().len(), 1, "one effect");

    // Same key, another body: refused, nothing recorded.
    let (status, reused) = create_with_key(
        &base,
        &key,
        "key-1",
        &payment_body(&setup, "ORDER-OTHER", "12.00"),
    );
    assert_eq!(
        (status, reused["error"]["code"].as_str()),
        (409, Some("idempotency_key_reused"))
    );
    let (status, bad) = create_with_key(&base, &key, "", &body);
    assert_eq!(
        (status, bad["error"]["code"].as_str()),
        (400, Some("invalid_idempotency_key"))
    );

    // Concurrent identical refunds: one refund.
    pay_in_sandbox(&base, &key, &trade_no);
    let refunds: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..8)
            .map(|_| {
                scope.spawn(|| {
                    call(
                        "POST",
                        &format!("{base}/v1/payments/{trade_no}/refunds"),
                        &key,
                        Some(json!({"refund_no": "R-SAME", "amount": "5.00"})),
                    )
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    for (status, refund) in &refunds {
        assert_eq!(*status, 201, "{refund}");
        assert_eq!(refund["refund_id"], refunds[0].1["refund_id"]);
    }
    let (_, payment) = call("GET", &format!("{base}/v1/payments/{trade_no}"), &key, None);
    assert_eq!(
        payment["refunds"].as_array().unwrap().len(),
        1,
        "one refund"
    );

    // Keys survive a restart.
    drop(server);
    let server = start_server(data_dir.path());
    let (status, replayed) = create_with_key(&server.base, &key, "key-1", &body);
    assert_eq!((status, replayed), answers[0]);
}

#[test]
fn a_superseded_attempt_paid_late_is_refunded_automatically_and_the_app_hears_both() {
    let World {
        _serial,
        data_dir: _data_dir,
        receiver,
        server,
        setup,
    } = World::start(200);
    let base = server.base.clone();
    let key = setup.api_key.clone();
    let create = || {
        call(
            "POST",
            &format!("{base}/v1/payments"),
            &key,
            Some(payment_body(&setup, "ORDER-DUP", "50.00")),
        )
    };
    let (status, first) = create();
    assert_eq!(status, 201, "{first}");
    let first = first["trade_no"].as_str().unwrap().to_owned();
    std::thread::sleep(Duration::from_millis(1_100));
    // The user gives up on the first attempt and pays with a second one: the first is closed.
    let (status, second) = create();
    assert_eq!(status, 201, "{second}");
    let second = second["trade_no"].as_str().unwrap().to_owned();
    assert_eq!(
        call("GET", &format!("{base}/v1/payments/{first}"), &key, None).1["status"],
        "closed"
    );
    pay_in_sandbox(&base, &key, &second);

    // The first attempt was paid anyway, racing the close: recorded, then refunded in full.
    let (status, refused) = call(
        "POST",
        &format!("{base}/sandbox/pay/{first}"),
        "",
        Some(json!({"outcome": "success"})),
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (409, Some("sandbox_trade_not_payable"))
    );
    let (status, _) = call(
        "POST",
        &format!("{base}/sandbox/pay/{first}"),
        "",
        Some(json!({"outcome": "success", "race_close": true})),
    );
    assert_eq!(status, 202);
    wait_for("late payment refunded", || {
        let payment = call("GET", &format!("{base}/v1/payments/{first}"), &key, None).1;
        payment["status"] == "succeeded" && payment["refunded_amount"] == "50.00"
    });
    let (_, late) = call("GET", &format!("{base}/v1/payments/{first}"), &key, None);
    assert_eq!(late["refunds"][0]["kind"], "automatic");
    assert_eq!(late["refunds"][0]["status"], "succeeded");
    let (_, kept) = call("GET", &format!("{base}/v1/payments/{second}"), &key, None);
    assert_eq!(
        kept["refunded_amount"], "0.00",
        "the kept payment is untouched"
    );

    // The app hears every fact, by webhook and in its feed.
    let expected = [
        ("payment.closed", &first),
        ("payment.succeeded", &second),
        ("payment.succeeded", &first),
        ("refund.succeeded", &first),
    ];
    wait_for("all four webhooks", || {
        receiver.deliveries.lock().unwrap().len() >= expected.len()
    });
    let (_, feed) = call("GET", &format!("{base}/v1/events?after=0"), &key, None);
    let seen: Vec<(String, String)> = feed["events"]
        .as_array()
        .unwrap()
        .iter()
        .map(|event| {
            (
                event["type"].as_str().unwrap().to_owned(),
                event["data"]["payment"]["trade_no"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            )
        })
        .collect();
    let expected: Vec<(String, String)> = expected
        .iter()
        .map(|(kind, trade_no)| (kind.to_string(), trade_no.to_string()))
        .collect();
    assert_eq!(seen, expected);
    assert_eq!(*receiver.bad_signatures.lock().unwrap(), 0);
}

#[test]
fn a_pending_webhook_is_delivered_after_a_crash() {
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let data_dir = tempfile::tempdir().unwrap();
    let receiver = start_receiver();
    *receiver.answer_status.lock().unwrap() = 503;
    // Slow retries: the webhook is still pending when the server dies.
    let server = start_server_with(
        data_dir.path(),
        "1000,1000,1000,1000,1000,1000",
        StoreChoice::Embedded,
    );
    let setup = onboard(&server.base, &receiver.url);
    let (_, created) = call(
        "POST",
        &format!("{}/v1/payments", server.base),
        &setup.api_key,
        Some(payment_body(&setup, "ORDER-CRASH", "8.00")),
    );
    let trade_no = created["trade_no"].as_str().unwrap().to_owned();
    call(
        "POST",
        &format!("{}/sandbox/pay/{trade_no}", server.base),
        "",
        Some(json!({"outcome": "failure"})),
    );
    wait_for("a first, refused delivery", || {
        !receiver.deliveries.lock().unwrap().is_empty()
    });
    drop(server); // SIGKILL
    *receiver.answer_status.lock().unwrap() = 200;
    let server = start_server_with(
        data_dir.path(),
        "1000,1000,1000,1000,1000,1000",
        StoreChoice::Embedded,
    );
    wait_for("delivered after restart", || {
        call(
            "GET",
            &format!("{}/v1/notifications?status=delivered", server.base),
            &setup.api_key,
            None,
        )
        .1["notifications"]
            .as_array()
            .is_some_and(|items| items.len() == 1)
    });
    let deliveries = receiver.deliveries.lock().unwrap();
    assert!(deliveries.len() >= 2);
    assert!(
        deliveries
            .iter()
            .all(|delivery| delivery["id"] == deliveries[0]["id"]),
        "the same notification, retried"
    );
}

#[test]
fn reconciliation_finds_exactly_the_seeded_discrepancies() {
    let World {
        _serial,
        data_dir: _data_dir,
        receiver: _receiver,
        server,
        setup,
    } = World::start(200);
    let base = server.base.clone();
    let key = setup.api_key.clone();
    let create = |order_no: &str, amount: &str| {
        let (status, created) = call(
            "POST",
            &format!("{base}/v1/payments"),
            &key,
            Some(payment_body(&setup, order_no, amount)),
        );
        assert_eq!(status, 201, "{created}");
        created["trade_no"].as_str().unwrap().to_owned()
    };
    let pay = |trade_no: &str| {
        pay_in_sandbox(&base, &key, trade_no)["channel_trade_no"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (matched, missing_in_channel, amount_differs, pending) = (
        create("REC-A", "10.00"),
        create("REC-B", "20.00"),
        create("REC-C", "30.00"),
        create("REC-D", "40.00"),
    );
    let (channel_a, channel_c) = (pay(&matched), pay(&amount_differs));
    pay(&missing_in_channel);
    let today = chrono::Utc::now().date_naive().to_string();

    // The sandbox's own bill agrees with paycenter.
    let (status, fetched) = call(
        "POST",
        &format!("{base}/v1/reconciliations"),
        ADMIN_TOKEN,
        Some(json!({"channel_account_id": setup.channel_account_id, "date": today})),
    );
    assert_eq!(status, 201, "{fetched}");
    assert_eq!(
        (
            fetched["source"].as_str(),
            fetched["bill_lines"].as_u64(),
            fetched["matched"].as_u64()
        ),
        (Some("fetched"), Some(3), Some(3))
    );
    assert_eq!(fetched["discrepancies"], json!([]));

    // An uploaded bill with one discrepancy of each kind.
    let unknown = "20261122000000000999999999999";
    let bill = format!(
        "trade_no,channel_trade_no,amount,currency\n{matched},{channel_a},10.00,CNY\n{amount_differs},{channel_c},30.01,CNY\n{pending},SBXPENDING,40.00,CNY\n{unknown},SBXUNKNOWN,5.00,CNY\n"
    );
    let upload = |body: &str| {
        let result = ureq::post(&format!(
            "{base}/v1/reconciliations/upload?channel_account_id={}&date={today}",
            setup.channel_account_id
        ))
        .set("authorization", &format!("Bearer {ADMIN_TOKEN}"))
        .send_string(body);
        match result {
            Ok(response) => (response.status(), response.into_json::<Value>().unwrap()),
            Err(ureq::Error::Status(status, response)) => {
                (status, response.into_json::<Value>().unwrap())
            }
            Err(error) => panic!("{error}"),
        }
    };
    let (status, uploaded) = upload(&bill);
    assert_eq!(status, 201, "{uploaded}");
    assert_eq!(uploaded["matched"], 1);
    let mut found: Vec<(String, String)> = uploaded["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .map(|discrepancy| {
            (
                discrepancy["kind"].as_str().unwrap().to_owned(),
                discrepancy["trade_no"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    found.sort();
    let mut expected = vec![
        ("amount_mismatch".to_owned(), amount_differs.clone()),
        ("missing_in_channel".to_owned(), missing_in_channel.clone()),
        ("missing_in_paycenter".to_owned(), unknown.to_owned()),
        ("status_mismatch".to_owned(), pending.clone()),
    ];
    expected.sort();
    assert_eq!(found, expected);
    let mismatch = uploaded["discrepancies"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["kind"] == "amount_mismatch")
        .unwrap();
    assert_eq!(
        (
            mismatch["paycenter_amount"].as_str(),
            mismatch["channel_amount"].as_str(),
            mismatch["order_no"].as_str()
        ),
        (Some("30.00"), Some("30.01"), Some("REC-C"))
    );

    // Results are kept (as events) and read back.
    let id = uploaded["reconciliation_id"].as_str().unwrap();
    let (status, read_back) = call(
        "GET",
        &format!("{base}/v1/reconciliations/{id}"),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!((status, read_back), (200, uploaded.clone()));

    // A bad bill is refused with its line, and records nothing.
    wait_until_quiet(&base, &key);
    let position =
        call("GET", &format!("{base}/healthz"), "", None).1["read_model_position"].clone();
    let (status, refused) =
        upload("trade_no,channel_trade_no,amount,currency\nnot-a-trade,X,1.00,CNY\n");
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("invalid_bill"))
    );
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("line 2"));
    let (status, refused) = upload("wrong,header\n");
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("invalid_bill"))
    );
    let (status, refused) = call(
        "POST",
        &format!("{base}/v1/reconciliations"),
        ADMIN_TOKEN,
        Some(json!({"channel_account_id": setup.channel_account_id, "date": "22/11/2026"})),
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("invalid_request"))
    );
    assert_eq!(
        call("GET", &format!("{base}/healthz"), "", None).1["read_model_position"],
        position
    );
    let (status, _) = call(
        "GET",
        &format!("{base}/v1/reconciliations/rec_nope"),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(status, 404);
}

#[test]
fn an_online_rebuild_reproduces_the_live_read_model_while_queries_keep_answering() {
    let World {
        _serial,
        data_dir: _data_dir,
        receiver: _receiver,
        server,
        setup,
    } = World::start(200);
    let base = server.base.clone();
    let key = setup.api_key.clone();
    let mut trade_nos = Vec::new();
    for order_idx in 0..6 {
        let (_, created) = call(
            "POST",
            &format!("{base}/v1/payments"),
            &key,
            Some(payment_body(&setup, &format!("RB-{order_idx}"), "15.00")),
        );
        let trade_no = created["trade_no"].as_str().unwrap().to_owned();
        let outcome = if order_idx % 3 == 0 {
            "failure"
        } else {
            "success"
        };
        call(
            "POST",
            &format!("{base}/sandbox/pay/{trade_no}"),
            "",
            Some(json!({"outcome": outcome})),
        );
        trade_nos.push(trade_no);
    }
    wait_for("outcomes", || {
        trade_nos.iter().all(|trade_no| {
            call("GET", &format!("{base}/v1/payments/{trade_no}"), &key, None).1["status"]
                != "pending"
        })
    });
    call(
        "POST",
        &format!("{base}/v1/payments/{}/refunds", trade_nos[1]),
        &key,
        Some(json!({"refund_no": "RB", "amount": "5.00"})),
    );
    wait_for("refund", || {
        call(
            "GET",
            &format!("{base}/v1/payments/{}", trade_nos[1]),
            &key,
            None,
        )
        .1["refunded_amount"]
            == "5.00"
    });
    wait_until_quiet(&base, &key);

    let projection = |base: &str| {
        call(
            "GET",
            &format!("{base}/v1/admin/projections"),
            ADMIN_TOKEN,
            None,
        )
        .1["projections"][0]
            .clone()
    };
    let before = projection(&base);
    assert_eq!(
        (before["name"].as_str(), before["lag"].as_u64()),
        (Some("read_model"), Some(0))
    );
    let balances_before = call(
        "GET",
        &format!("{base}/v1/merchants/{}/balances", setup.merchant_id),
        ADMIN_TOKEN,
        None,
    )
    .1;

    // Queries keep answering while the rebuild runs.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (base, key, trade_no, stop) = (
            base.clone(),
            key.clone(),
            trade_nos[1].clone(),
            stop.clone(),
        );
        std::thread::spawn(move || {
            let mut n_reads = 0;
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let (status, _) =
                    call("GET", &format!("{base}/v1/payments/{trade_no}"), &key, None);
                assert_eq!(status, 200, "queries answer during a rebuild");
                n_reads += 1;
            }
            n_reads
        })
    };
    let (status, started) = call(
        "POST",
        &format!("{base}/v1/admin/projections/read_model/rebuild"),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(status, 202, "{started}");
    wait_for("rebuild finished", || {
        let now = projection(&base);
        now["rebuilding"] == false && now["last_rebuild"].is_object()
    });
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    assert!(reader.join().unwrap() > 0);

    let after = projection(&base);
    assert_eq!(
        after["last_rebuild"]["identical"], true,
        "the rebuilt model equals the live one"
    );
    assert_eq!(after["digest"], before["digest"]);
    assert_eq!(after["position"], before["position"]);
    assert_eq!(
        call(
            "GET",
            &format!("{base}/v1/merchants/{}/balances", setup.merchant_id),
            ADMIN_TOKEN,
            None
        )
        .1,
        balances_before
    );
    // No webhook is sent again: the outbox after the rebuild has nothing pending.
    assert_eq!(
        call(
            "GET",
            &format!("{base}/v1/notifications?status=pending"),
            &key,
            None
        )
        .1["notifications"],
        json!([])
    );

    let metrics = ureq::get(&format!("{base}/metrics"))
        .call()
        .unwrap()
        .into_string()
        .unwrap();
    assert!(
        metrics.contains("paycenter_projection_lag_events{projection=\"read_model\"} 0"),
        "{metrics}"
    );
    let (status, unknown) = call(
        "POST",
        &format!("{base}/v1/admin/projections/nope/rebuild"),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(
        (status, unknown["error"]["code"].as_str()),
        (404, Some("projection_not_found"))
    );
    let (status, _) = call(
        "POST",
        &format!("{base}/v1/admin/projections/read_model/rebuild"),
        &key,
        None,
    );
    assert_eq!(status, 401);
}

#[test]
fn the_service_runs_on_postgresql() {
    let Some(mut client) = test_postgres() else {
        return;
    };
    // `serve --store` takes a URL; the tests' key=value form names the same server.
    let store_url = "postgres://postgres:postgres@127.0.0.1:5432/postgres";
    let schema = format!("pc_e2e_{}", std::process::id());
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let data_dir = tempfile::tempdir().unwrap();
    let receiver = start_receiver();
    let store = StoreChoice::Postgres {
        url: store_url,
        schema: &schema,
    };
    let server = start_server_with(data_dir.path(), QUICK_RETRIES_MS, store);
    let setup = onboard(&server.base, &receiver.url);
    let (base, key) = (server.base.clone(), setup.api_key.clone());
    let (status, created) = call(
        "POST",
        &format!("{base}/v1/payments"),
        &key,
        Some(payment_body(&setup, "PG-1", "42.00")),
    );
    assert_eq!(status, 201, "{created}");
    let trade_no = created["trade_no"].as_str().unwrap().to_owned();
    pay_in_sandbox(&base, &key, &trade_no);
    let (status, refund) = call(
        "POST",
        &format!("{base}/v1/payments/{trade_no}/refunds"),
        &key,
        Some(json!({"refund_no": "PG-R", "amount": "2.00"})),
    );
    assert_eq!(status, 201, "{refund}");
    wait_for("refund", || {
        call("GET", &format!("{base}/v1/payments/{trade_no}"), &key, None).1["refunded_amount"]
            == "2.00"
    });
    wait_for("webhooks", || {
        receiver.deliveries.lock().unwrap().len() >= 2
    });
    let before = call("GET", &format!("{base}/v1/payments/{trade_no}"), &key, None).1;
    drop(server); // SIGKILL
    let server = start_server_with(data_dir.path(), QUICK_RETRIES_MS, store);
    assert_eq!(
        call(
            "GET",
            &format!("{}/v1/payments/{trade_no}", server.base),
            &key,
            None
        )
        .1,
        before
    );
    drop(server);
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
}

/// Connects to the test PostgreSQL server, or skips (or fails, when it is required).
fn test_postgres() -> Option<postgres::Client> {
    let url = std::env::var("PAYCENTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=postgres".to_owned());
    match postgres::Client::connect(&url, postgres::NoTls) {
        Ok(client) => Some(client),
        Err(error) => {
            if std::env::var("PAYCENTER_REQUIRE_POSTGRES").is_ok_and(|value| value == "1") {
                panic!("PostgreSQL is required but not reachable: {error}");
            }
            eprintln!("skipped: no PostgreSQL at {url:?} ({error})");
            None
        }
    }
}

#[test]
fn two_nodes_share_one_database() {
    let Some(mut sql) = test_postgres() else {
        return;
    };
    let store_url = "postgres://postgres:postgres@127.0.0.1:5432/postgres";
    let schema = format!("pc_cluster_{}", std::process::id());
    let _serial = SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let store = StoreChoice::Postgres {
        url: store_url,
        schema: &schema,
    };
    // Retries every 300 ms for a while: webhooks stay pending across the SIGKILL below.
    let retries_ms =
        "300,300,300,300,300,300,300,300,300,300,300,300,300,300,300,300,300,300,300,300";
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let node_a = start_server_with(dir_a.path(), retries_ms, store);
    let node_b = start_server_with(dir_b.path(), retries_ms, store);
    let receiver = start_receiver();
    let setup = onboard(&node_a.base, &receiver.url);
    let key = setup.api_key.clone();
    // Node B follows the same log: the app onboarded on A is known there.
    wait_for("node B knows the app", || {
        call(
            "GET",
            &format!("{}/v1/notifications", node_b.base),
            &key,
            None,
        )
        .0 == 200
    });

    // Payments on both nodes; each is paid through the node that created it (the sandbox's
    // simulated third party lives in that node's memory).
    let mut trade_nos = Vec::new();
    for (payment_idx, node) in [&node_a, &node_b, &node_a, &node_b].into_iter().enumerate() {
        let (status, created) = call(
            "POST",
            &format!("{}/v1/payments", node.base),
            &key,
            Some(payment_body(&setup, &format!("C-{payment_idx}"), "10.00")),
        );
        assert_eq!(status, 201, "{created}");
        let trade_no = created["trade_no"].as_str().unwrap().to_owned();
        pay_in_sandbox(&node.base, &key, &trade_no);
        trade_nos.push(trade_no);
    }

    // Conflicting refunds spread over both nodes at once: 24 refunds of 1.00 against 10.00.
    let target = trade_nos[0].clone();
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let requests: Vec<_> = (0..24)
            .map(|refund_idx| {
                let base = if refund_idx % 2 == 0 {
                    &node_a.base
                } else {
                    &node_b.base
                };
                let (key, target) = (&key, &target);
                scope.spawn(move || {
                    call(
                        "POST",
                        &format!("{base}/v1/payments/{target}/refunds"),
                        key,
                        Some(json!({"refund_no": format!("CR-{refund_idx}"), "amount": "1.00"})),
                    )
                })
            })
            .collect();
        requests
            .into_iter()
            .map(|request| request.join().unwrap())
            .collect()
    });
    let n_accepted = answers.iter().filter(|(status, _)| *status == 201).count();
    for (status, answer) in &answers {
        assert!(
            *status == 201 || *status == 422 || *status == 409,
            "{status} {answer}"
        );
        if *status == 422 {
            assert_eq!(
                answer["error"]["code"], "refund_exceeds_available",
                "{answer}"
            );
        }
    }
    assert!(
        n_accepted <= 10,
        "{n_accepted} refunds of 1.00 accepted against 10.00"
    );
    assert!(n_accepted >= 1);
    // Every accepted refund is on the payment, as seen from either node, and no more. (Whether
    // each then succeeds depends on which node's sandbox submits it: see the sandbox's note.)
    let requested_on = |base: &str| -> (usize, i64) {
        let payment = call("GET", &format!("{base}/v1/payments/{target}"), &key, None).1;
        let refunds = payment["refunds"].as_array().unwrap().clone();
        let sum_minor = refunds
            .iter()
            .map(|refund| {
                refund["amount"]
                    .as_str()
                    .unwrap()
                    .replace('.', "")
                    .parse::<i64>()
                    .unwrap()
            })
            .sum();
        (refunds.len(), sum_minor)
    };
    let expected = (n_accepted, n_accepted as i64 * 100);
    wait_for("both nodes agree on the refunds", || {
        requested_on(&node_a.base) == expected && requested_on(&node_b.base) == expected
    });

    // Webhooks fail for now, so they stay pending; then node A dies mid-schedule.
    *receiver.answer_status.lock().unwrap() = 500;
    let (status, late) = call(
        "POST",
        &format!("{}/v1/payments", node_a.base),
        &key,
        Some(payment_body(&setup, "C-late", "3.00")),
    );
    assert_eq!(status, 201, "{late}");
    let late_trade_no = late["trade_no"].as_str().unwrap().to_owned();
    pay_in_sandbox(&node_a.base, &key, &late_trade_no);
    std::thread::sleep(Duration::from_millis(500));
    drop(node_a); // SIGKILL
    *receiver.answer_status.lock().unwrap() = 200;
    // Node B has everything A acknowledged, and delivers what A left pending.
    assert_eq!(
        call(
            "GET",
            &format!("{}/v1/payments/{late_trade_no}", node_b.base),
            &key,
            None
        )
        .1["status"],
        "succeeded"
    );
    wait_until_quiet(&node_b.base, &key);
    let delivered_ids: std::collections::HashSet<String> = receiver
        .deliveries
        .lock()
        .unwrap()
        .iter()
        .filter_map(|delivery| delivery["id"].as_str().map(str::to_owned))
        .collect();
    let (_, listed) = call(
        "GET",
        &format!("{}/v1/notifications?status=delivered", node_b.base),
        &key,
        None,
    );
    let listed = listed["notifications"].as_array().unwrap().clone();
    // Four payments succeeded, the late one too, and each accepted refund was heard of.
    assert!(listed.len() >= 5, "{listed:?}");
    for notification in &listed {
        let id = notification["id"].as_str().unwrap();
        assert!(
            delivered_ids.contains(id),
            "{id} marked delivered but never received"
        );
    }

    // The SQL read models reach the head and agree with the service (refunds still settling
    // move both, so compare until one reading of each agrees).
    let (base_b, merchant_id) = (node_b.base.clone(), setup.merchant_id.clone());
    let minor = |text: &Value| -> i64 { text.as_str().unwrap().replace('.', "").parse().unwrap() };
    wait_for(
        "SQL read models at the head, agreeing with the service",
        || {
            let head: i64 = sql
                .query_one(&format!("SELECT position FROM {schema}.chain_head"), &[])
                .unwrap()
                .get(0);
            let checkpoint: i64 = sql
            .query_one(
                &format!("SELECT position FROM {schema}.rm_checkpoints WHERE name = 'sql_read_models'"),
                &[],
            )
            .unwrap()
            .get(0);
            let payment = call("GET", &format!("{base_b}/v1/payments/{target}"), &key, None).1;
            let row = sql
            .query_one(
                &format!("SELECT status, amount_minor, refunded_minor FROM {schema}.rm_payments WHERE trade_no = $1"),
                &[&target],
            )
            .unwrap();
            let n_payment_rows: i64 = sql
                .query_one(&format!("SELECT COUNT(*) FROM {schema}.rm_payments"), &[])
                .unwrap()
                .get(0);
            let balances = call(
                "GET",
                &format!("{base_b}/v1/merchants/{merchant_id}/balances"),
                ADMIN_TOKEN,
                None,
            )
            .1;
            let balances_agree = balances["accounts"].as_array().unwrap().iter().all(|account| {
            sql.query_opt(
                &format!("SELECT balance_minor FROM {schema}.rm_balances WHERE merchant_id = $1 AND account = $2 AND currency = $3"),
                &[
                    &merchant_id,
                    &account["account"].as_str().unwrap(),
                    &account["currency"].as_str().unwrap(),
                ],
            )
            .unwrap()
            .is_some_and(|row| row.get::<_, i64>(0) == minor(&account["balance"]))
        });
            checkpoint == head
                && n_payment_rows == 5
                && row.get::<_, String>(0) == "succeeded"
                && row.get::<_, i64>(1) == 1_000
                && row.get::<_, i64>(2) == minor(&payment["refunded_amount"])
                && balances_agree
        },
    );
    drop(node_b);
    sql.batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .unwrap();
}
