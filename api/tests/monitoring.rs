//! `/metrics` against what `docs/monitoring/` asks of it: after a payment flow (a sandbox
//! payment paid and refunded, another left pending for the sweeper's queries, a third closed),
//! every series the Grafana dashboard and the Prometheus rules name is exposed, and the ones
//! the flow exercised are not zero. `promtool check rules` and `promtool test rules` (Debian's
//! `prometheus` package) pass on the rules.

mod support;

use std::collections::BTreeSet;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::{json, Value};
use support::{acknowledging_webhook_sink, call_within, start_paycenter};

const ADMIN_TOKEN: &str = "monitoring-admin-token-0123456789";

fn monitoring_dir() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/monitoring"))
}

/// Every `paycenter_*` metric a file names (histograms by their base name).
fn series_named(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    for (start, _) in text.match_indices("paycenter_") {
        let name: String = text[start..]
            .chars()
            .take_while(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '_')
            .collect();
        let base = ["_bucket", "_sum", "_count"]
            .iter()
            .find_map(|suffix| name.strip_suffix(suffix))
            .unwrap_or(&name)
            .to_owned();
        names.insert(base);
    }
    names
}

/// The value of the exposed sample whose line starts with `selector` (name and labels), if any.
fn sample(metrics: &str, selector: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|line| line.starts_with(selector))
        .and_then(|line| line.rsplit(' ').next())
        .and_then(|value| value.parse().ok())
}

fn samples_sum(metrics: &str, prefix: &str, contains: &[&str]) -> f64 {
    metrics
        .lines()
        .filter(|line| line.starts_with(prefix) && contains.iter().all(|part| line.contains(part)))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[test]
fn metrics_carry_every_series_the_dashboard_and_the_rules_name() {
    let data_dir = tempfile::tempdir().unwrap();
    let (_server, base) = start_paycenter(
        data_dir.path(),
        ADMIN_TOKEN,
        &[
            ("PAYCENTER_ALLOW_PRIVATE_EGRESS", "1"),
            ("PAYCENTER_MIN_ATTEMPT_INTERVAL_MS", "0"),
            ("PAYCENTER_SWEEP_AFTER_SECONDS", "1"),
        ],
    );
    let call = |method: &str, path: &str, token: &str, body: Option<Value>| {
        call_within(
            method,
            &format!("{base}{path}"),
            token,
            body,
            Duration::from_secs(30),
        )
    };
    let (_, merchant) = call(
        "POST",
        "/v1/merchants",
        ADMIN_TOKEN,
        Some(json!({"name": "Watched"})),
    );
    let merchant_id = merchant["merchant_id"].as_str().unwrap().to_owned();
    let (_, account) = call(
        "POST",
        &format!("/v1/merchants/{merchant_id}/channel-accounts"),
        ADMIN_TOKEN,
        Some(json!({"channel": "sandbox", "params": {}})),
    );
    let account_id = account["channel_account_id"].as_str().unwrap().to_owned();
    let (_, app) = call(
        "POST",
        "/v1/apps",
        ADMIN_TOKEN,
        Some(
            json!({"name": "Watched app", "merchant_ids": [merchant_id], "notify_url": acknowledging_webhook_sink()}),
        ),
    );
    let key = app["api_key"].as_str().unwrap().to_owned();
    let pay = |order_no: &str| {
        let (status, created) = call(
            "POST",
            "/v1/payments",
            &key,
            Some(
                json!({"merchant_id": merchant_id, "channel_account_id": account_id, "order_no": order_no, "amount": "20.00", "currency": "CNY", "invoke_method": "pc", "subject": "fee"}),
            ),
        );
        assert_eq!(status, 201, "{created}");
        created["trade_no"].as_str().unwrap().to_owned()
    };
    let paid = pay("M-1");
    let (status, _) = call(
        "POST",
        &format!("/sandbox/pay/{paid}"),
        "",
        Some(json!({"outcome": "success"})),
    );
    assert_eq!(status, 202);
    support::wait_for_within(
        "paid",
        Duration::from_secs(20),
        Duration::from_millis(50),
        || call("GET", &format!("/v1/payments/{paid}"), &key, None).1["status"] == "succeeded",
    );
    let (status, refund) = call(
        "POST",
        &format!("/v1/payments/{paid}/refunds"),
        &key,
        Some(json!({"refund_no": "MR-1", "amount": "5.00"})),
    );
    assert_eq!(status, 201, "{refund}");
    let _pending = pay("M-2");
    let closed = pay("M-3");
    let (status, _) = call("POST", &format!("/v1/payments/{closed}/close"), &key, None);
    assert_eq!(status, 200);

    let scrape = || {
        ureq::get(&format!("{base}/metrics"))
            .call()
            .unwrap()
            .into_string()
            .unwrap()
    };
    // The refund reaches the channel and the sweeper asks about the pending payment.
    support::wait_for_within(
        "refund and query calls",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let metrics = scrape();
            samples_sum(
                &metrics,
                "paycenter_channel_calls_total",
                &["operation=\"refund\""],
            ) > 0.0
                && samples_sum(
                    &metrics,
                    "paycenter_channel_calls_total",
                    &["operation=\"query\""],
                ) > 0.0
        },
    );
    let metrics = scrape();

    let mut named = BTreeSet::new();
    for file in ["grafana-dashboard.json", "paycenter-rules.yml"] {
        named.extend(series_named(
            &std::fs::read_to_string(monitoring_dir().join(file)).unwrap(),
        ));
    }
    assert!(named.len() >= 12, "{named:?}");
    for name in &named {
        assert!(
            metrics.contains(&format!("# TYPE {name} ")),
            "{name} is not exposed:\n{metrics}"
        );
    }

    // What the flow exercised is counted.
    let account = format!("channel_account_id=\"{account_id}\"");
    for (prefix, parts) in [
        (
            "paycenter_channel_calls_total",
            vec![account.as_str(), "operation=\"initiate\"", "outcome=\"ok\""],
        ),
        (
            "paycenter_channel_calls_total",
            vec![account.as_str(), "operation=\"refund\"", "outcome=\"ok\""],
        ),
        (
            "paycenter_channel_calls_total",
            vec![account.as_str(), "operation=\"query\""],
        ),
        (
            "paycenter_channel_call_duration_seconds_count",
            vec![account.as_str(), "operation=\"initiate\""],
        ),
        (
            "paycenter_channel_call_duration_seconds_bucket",
            vec![account.as_str(), "le=\"+Inf\""],
        ),
        (
            "paycenter_http_requests_total",
            vec!["route=\"create_payment\"", "status=\"201\""],
        ),
        (
            "paycenter_http_request_duration_seconds_count",
            vec!["route=\"create_payment\""],
        ),
        ("paycenter_payments", vec!["status=\"succeeded\""]),
        ("paycenter_payments", vec!["status=\"pending\""]),
    ] {
        assert!(
            samples_sum(&metrics, prefix, &parts) > 0.0,
            "{prefix} {parts:?} is zero:\n{metrics}"
        );
    }
    assert_eq!(
        sample(&metrics, "paycenter_store_accepting_appends"),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &metrics,
            "paycenter_projection_running{projection=\"balances\"}"
        ),
        Some(1.0)
    );
    assert_eq!(sample(&metrics, "paycenter_chain_broken"), Some(0.0));
}

/// `promtool`, or `None` (skipped, said why, unless `PAYCENTER_REQUIRE_PROMTOOL=1`).
fn promtool() -> Option<&'static str> {
    if Command::new("promtool")
        .arg("--version")
        .output()
        .is_ok_and(|output| output.status.success())
    {
        return Some("promtool");
    }
    let why = "no promtool (Debian's prometheus package; .ci/run installs it)";
    if std::env::var("PAYCENTER_REQUIRE_PROMTOOL").as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}

#[test]
fn the_prometheus_rules_check_and_pass_their_tests() {
    let Some(promtool) = promtool() else { return };
    for args in [
        ["check", "rules", "paycenter-rules.yml"],
        ["test", "rules", "paycenter-rules.test.yml"],
    ] {
        let output = Command::new(promtool)
            .args(args)
            .current_dir(monitoring_dir())
            .output()
            .unwrap();
        assert!(
            output.status.success(),
            "promtool {args:?}: {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    // The dashboard is JSON Grafana reads: panels with Prometheus queries.
    let dashboard: Value = serde_json::from_str(
        &std::fs::read_to_string(monitoring_dir().join("grafana-dashboard.json")).unwrap(),
    )
    .unwrap();
    let panels = dashboard["panels"].as_array().unwrap();
    assert!(panels.len() >= 10);
    assert!(panels.iter().all(|panel| panel["targets"]
        .as_array()
        .is_some_and(|targets| targets.iter().all(|target| target["expr"].is_string()))));
}
