//! `paycenter-replay` as a user runs it, against a store filled through the domain's own
//! decisions.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use chrono::Utc;
use paycenter_domain::events::*;
use paycenter_domain::ids::*;
use paycenter_domain::payment::*;
use paycenter_domain::{streams, Currency, Money, Rate};
use paycenter_store::{EventStore, ExpectedRevision, SqliteConfig, SqliteStore};

fn replay(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_paycenter-replay"))
        .args(args)
        .output()
        .unwrap()
}

fn stdout_json(output: &Output) -> serde_json::Value {
    assert!(
        output.status.success(),
        "stderr: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Decides `command` on the order stream and appends it.
fn order_command(store: &dyn EventStore, stream: &str, command_id: &str, command: OrderCommand) {
    let recorded = store.read_stream(stream, 0).unwrap();
    let history: Vec<Event> = recorded
        .iter()
        .map(|event| Event::decode(event).unwrap())
        .collect();
    let events = Order::from_events(&history)
        .decide(&command, Utc::now())
        .unwrap();
    let expected = recorded.last().map_or(ExpectedRevision::NoStream, |event| {
        ExpectedRevision::Exact(event.stream_revision)
    });
    store
        .append(
            stream,
            expected,
            Event::to_new_events(&events, command_id, None),
        )
        .unwrap();
}

struct Fixture {
    merchant_id: MerchantId,
    trade_no: TradeNo,
    /// A time after the attempt started and before it was paid.
    between: chrono::DateTime<Utc>,
}

/// A merchant, one payment of 100.00 at 1% paid, 40.00 of it refunded: 5 events, in the
/// embedded store in `dir`.
fn fill(dir: &Path) -> Fixture {
    let store = SqliteStore::open(dir, SqliteConfig::default()).unwrap();
    fill_store(&store)
}

/// The same five events in `store`.
fn fill_store(store: &dyn EventStore) -> Fixture {
    let merchant_id = MerchantId::from_entropy(1);
    let onboard = Event::MerchantOnboarded(MerchantOnboarded {
        merchant_id: merchant_id.clone(),
        name: "Acme".into(),
        onboarded_at: Utc::now(),
    });
    store
        .append(
            &streams::merchant(&merchant_id),
            ExpectedRevision::NoStream,
            Event::to_new_events(&[onboard], "m1", None),
        )
        .unwrap();
    let order_no = OrderNo::parse("O-1").unwrap();
    let stream = streams::order(&AppId::from_entropy(1), &merchant_id, &order_no);
    // Fixed digits: a test below tampers with "10000" (the amount) and must not hit the trade
    // number by chance (a time stamp ending in 1 before zero padding would).
    let trade_no = TradeNo::generate(
        chrono::DateTime::from_timestamp_millis(1_796_233_533_456).expect("a valid instant"),
        7_777_777_777_777,
    );
    assert!(!trade_no.as_str().contains("10000"), "{trade_no}");
    let amount = Money::from_minor(10_000, Currency::CNY);
    order_command(
        store,
        &stream,
        "start",
        OrderCommand::StartAttempt(StartAttempt {
            trade_no: trade_no.clone(),
            merchant_id: merchant_id.clone(),
            order_no,
            app_id: AppId::from_entropy(1),
            channel_account_id: ChannelAccountId::from_entropy(1),
            channel: Channel::Sandbox,
            invoke_method: InvokeMethod::Pc,
            amount,
            fee_rate: Rate::parse("0.01").unwrap(),
            splits: vec![],
            subject: "rent".into(),
            expire_seconds: 600,
            min_attempt_interval_ms: 15_000,
            return_url: None,
            route: None,
            failover_from: None,
            share: paycenter_domain::vocabulary::ShareMode::None,
        }),
    );
    std::thread::sleep(Duration::from_millis(20));
    let between = Utc::now();
    std::thread::sleep(Duration::from_millis(20));
    order_command(
        store,
        &stream,
        "paid",
        OrderCommand::RecordSuccess {
            channel_account_id: ChannelAccountId::from_entropy(1),
            trade_no: trade_no.clone(),
            channel_trade_no: ChannelTradeNo::parse("CH1").unwrap(),
            amount,
            source: OutcomeSource::Callback,
        },
    );
    let refund_id = RefundId::parse("rf_1").unwrap();
    order_command(
        store,
        &stream,
        "refund",
        OrderCommand::RequestRefund {
            trade_no: trade_no.clone(),
            refund_id: refund_id.clone(),
            refund_no: RefundNo::parse("R1").unwrap(),
            amount: Money::from_minor(4_000, Currency::CNY),
            reason: String::new(),
        },
    );
    order_command(
        store,
        &stream,
        "refunded",
        OrderCommand::RecordRefundSuccess {
            trade_no: trade_no.clone(),
            refund_id,
            channel_refund_no: None,
        },
    );
    Fixture {
        merchant_id,
        trade_no,
        between,
    }
}

#[test]
fn verify_audit_export_stats() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = fill(dir.path());
    let data_dir = dir.path().to_str().unwrap();

    let verified = stdout_json(&replay(&["verify", "--data-dir", data_dir]));
    assert_eq!(verified["ok"], true);
    assert_eq!(verified["events"], 5);
    assert_eq!(
        verified["ledger_totals"]["CNY"]["debits"],
        verified["ledger_totals"]["CNY"]["credits"]
    );

    // Now: paid 100.00, 40.00 refunded; fee 1.00 gives back 0.40.
    let now = stdout_json(&replay(&[
        "audit",
        "--at",
        &Utc::now().to_rfc3339(),
        "--data-dir",
        data_dir,
    ]));
    assert_eq!(now["chain"]["verified"], true, "audits verify first");
    assert_eq!(now["chain"]["events"], 5);
    assert_eq!(now["payments"][0]["status"], "succeeded");
    assert_eq!(now["payments"][0]["refunded_amount"], "40.00");
    let accounts = &now["balances"][0]["accounts"];
    let balance = |name: &str| {
        accounts
            .as_array()
            .unwrap()
            .iter()
            .find(|account| account["account"].as_str().unwrap().starts_with(name))
            .unwrap()["balance"]
            .clone()
    };
    assert_eq!(
        (balance("clearing:"), balance("payable"), balance("fee")),
        ("60.00".into(), "59.40".into(), "0.60".into())
    );

    // Between start and payment: pending, nothing posted; later events ignored.
    let then = stdout_json(&replay(&[
        "audit",
        "--at",
        &fixture.between.to_rfc3339(),
        "--merchant",
        fixture.merchant_id.as_str(),
        "--data-dir",
        data_dir,
    ]));
    assert_eq!(then["payments"][0]["trade_no"], fixture.trade_no.as_str());
    assert_eq!(then["payments"][0]["status"], "pending");
    assert_eq!(then["balances"][0]["accounts"], serde_json::json!([]));
    assert_eq!(then["position"], 2);
    let csv = replay(&[
        "audit",
        "--at",
        &Utc::now().to_rfc3339(),
        "--format",
        "csv",
        "--data-dir",
        data_dir,
    ]);
    let csv = String::from_utf8(csv.stdout).unwrap();
    assert!(csv.starts_with("record,merchant_id,key,currency,amount,status,refunded_amount\n"));
    assert!(csv.contains(&format!(
        "payment,{},{},CNY,100.00,succeeded,40.00",
        fixture.merchant_id, fixture.trade_no
    )));

    let jsonl = replay(&["export", "--data-dir", data_dir]);
    assert!(jsonl.status.success());
    assert!(String::from_utf8_lossy(&jsonl.stderr).contains("hash chain verified: 5 events"));
    let lines: Vec<serde_json::Value> = String::from_utf8(jsonl.stdout)
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str(line).unwrap())
        .collect();
    assert_eq!(lines.len(), 5);
    assert_eq!(lines[4]["event_type"], "refund.succeeded");
    assert_eq!(lines[1]["hash"], lines[2]["prev_hash"]);
    let from_three = replay(&[
        "export",
        "--format",
        "csv",
        "--from",
        "3",
        "--data-dir",
        data_dir,
    ]);
    assert_eq!(
        String::from_utf8(from_three.stdout)
            .unwrap()
            .lines()
            .count(),
        1 + 3
    );

    let stats = stdout_json(&replay(&["stats", "--data-dir", data_dir]));
    assert_eq!(stats["events"], 5);
    assert_eq!(stats["streams"], 2);
    assert_eq!(stats["events_by_type"]["payment.succeeded"], 1);
    assert_eq!(stats["events_by_stream_category"]["order"], 4);
}

#[test]
fn verify_names_the_first_bad_position() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let data_dir = dir.path().to_str().unwrap();
    let connection = rusqlite::Connection::open(dir.path().join("events.sqlite3")).unwrap();
    connection.execute("UPDATE events SET payload = replace(payload, '10000', '10001') WHERE global_position = 3", []).unwrap();
    let output = replay(&["verify", "--data-dir", data_dir]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("position 3"), "{stderr}");
    // Audits and exports verify first: nothing is read from a broken chain...
    let at = Utc::now().to_rfc3339();
    for args in [
        vec!["audit", "--at", &at, "--data-dir", data_dir],
        vec!["export", "--data-dir", data_dir],
    ] {
        let output = replay(&args);
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        assert!(String::from_utf8_lossy(&output.stderr).contains("position 3"));
    }
    // ...unless told not to, which they say.
    let unverified = stdout_json(&replay(&[
        "audit",
        "--at",
        &at,
        "--no-verify",
        "--data-dir",
        data_dir,
    ]));
    assert_eq!(unverified["chain"]["verified"], false);
    let exported = replay(&["export", "--no-verify", "--data-dir", data_dir]);
    assert!(exported.status.success());
    assert!(String::from_utf8_lossy(&exported.stderr).contains("NOT verified"));
    assert_eq!(String::from_utf8_lossy(&exported.stdout).lines().count(), 5);
}

/// The commands read an EventStoreDB log as they read the embedded one (its in-memory log:
/// the server cannot run here); PostgreSQL is covered by the API's two-node test.
#[test]
fn the_commands_read_an_eventstoredb_log_alike() {
    use paycenter_replay_tools::commands::{self, AuditFormat, ChainCheck, ExportFormat};
    let dir = tempfile::tempdir().unwrap();
    let sqlite_fixture = fill(dir.path());
    let sqlite = SqliteStore::open_read_only(dir.path()).unwrap();
    let esdb = paycenter_store::EventStoreDbStore::in_memory("paycenter-log").unwrap();
    let esdb_fixture = fill_store(&esdb);
    let run = |store: &dyn EventStore, command: &str, fixture: &Fixture| -> Vec<u8> {
        let mut out = Vec::new();
        match command {
            "verify" => commands::verify(store, &mut out),
            "stats" => commands::stats(store, &mut out),
            "export" => commands::export(store, ExportFormat::Jsonl, 1, &mut out),
            "audit" => {
                let chain = commands::check_chain(store, true).unwrap();
                assert!(matches!(chain, ChainCheck::Verified { events: 5, .. }));
                commands::audit(
                    store,
                    Utc::now(),
                    Some(&fixture.merchant_id),
                    AuditFormat::Json,
                    &chain,
                    &mut out,
                )
            }
            _ => unreachable!(),
        }
        .unwrap();
        out
    };
    let json = |bytes: &[u8]| -> serde_json::Value { serde_json::from_slice(bytes).unwrap() };
    let (verified_sqlite, verified_esdb) = (
        json(&run(&sqlite, "verify", &sqlite_fixture)),
        json(&run(&esdb, "verify", &esdb_fixture)),
    );
    assert_eq!(verified_esdb["events"], 5);
    assert_eq!(
        verified_esdb["ledger_totals"],
        verified_sqlite["ledger_totals"]
    );
    assert_eq!(
        json(&run(&esdb, "stats", &esdb_fixture)),
        json(&run(&sqlite, "stats", &sqlite_fixture))
    );
    let (audit_sqlite, audit_esdb) = (
        json(&run(&sqlite, "audit", &sqlite_fixture)),
        json(&run(&esdb, "audit", &esdb_fixture)),
    );
    assert_eq!(
        audit_esdb["balances"][0]["accounts"],
        audit_sqlite["balances"][0]["accounts"]
    );
    assert_eq!(audit_esdb["payments"][0]["refunded_amount"], "40.00");
    let exported = String::from_utf8(run(&esdb, "export", &esdb_fixture)).unwrap();
    let types: Vec<String> = exported
        .lines()
        .map(|line| {
            json(line.as_bytes())["event_type"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(types.len(), 5);
    assert_eq!(types.last().unwrap(), "refund.succeeded");
}

#[test]
fn verify_catches_a_ledger_breaking_event_on_a_sound_chain() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = fill(dir.path());
    {
        // Appended through the store, so the chain is sound: a refund nobody requested.
        let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
        let bogus = Event::RefundSucceeded(RefundSucceeded {
            refund_id: RefundId::parse("rf_never_requested").unwrap(),
            trade_no: fixture.trade_no.clone(),
            channel_refund_no: None,
            succeeded_at: Utc::now(),
        });
        store
            .append(
                "order-bogus",
                ExpectedRevision::Any,
                Event::to_new_events(&[bogus], "bogus", None),
            )
            .unwrap();
    }
    let output = replay(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("invariant broken at position 6"),
        "{stderr}"
    );
}

#[test]
fn help_and_bad_input() {
    for command in ["verify", "audit", "export", "stats", "rebuild"] {
        let output = replay(&[command, "--help"]);
        assert!(output.status.success());
        assert!(String::from_utf8_lossy(&output.stdout)
            .contains(&format!("paycenter-replay {command}")));
    }
    assert!(replay(&["--help"]).status.success());
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let data_dir = dir.path().to_str().unwrap();
    // A usage error exits 2, a command that cannot do its work 1; each says why on stderr.
    for (args, code, says) in [
        (vec!["frobnicate"], 2, "frobnicate"),
        (vec!["audit", "--data-dir", data_dir], 2, "--at"),
        (
            vec!["audit", "--at", "yesterday", "--data-dir", data_dir],
            1,
            "yesterday",
        ),
        (
            vec!["export", "--format", "xml", "--data-dir", data_dir],
            2,
            "xml",
        ),
        (
            vec!["export", "--from", "first", "--data-dir", data_dir],
            2,
            "first",
        ),
        (
            vec![
                "rebuild",
                "--all",
                "--projection",
                "balances",
                "--data-dir",
                data_dir,
            ],
            2,
            "--projection",
        ),
        (
            vec!["verify", "--data-dir", "/nonexistent/paycenter"],
            1,
            "nonexistent",
        ),
        (vec!["verify", "--bogus", "x"], 2, "--bogus"),
    ] {
        let output = replay(&args);
        assert_eq!(output.status.code(), Some(code), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(says), "{args:?} names {says:?}: {stderr}");
    }
    // The log's options may come before the command too.
    let stats = replay(&["--data-dir", data_dir, "stats"]);
    assert!(stats.status.success(), "{stats:?}");
}

#[test]
fn rebuild_reports_the_digest_a_live_fold_has() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let data_dir = dir.path().to_str().unwrap();
    let first = stdout_json(&replay(&["rebuild", "--all", "--data-dir", data_dir]));
    let second = stdout_json(&replay(&[
        "rebuild",
        "--projection",
        "read_model",
        "--data-dir",
        data_dir,
    ]));
    assert_eq!(
        first["projections"][0]["digest"],
        second["projections"][0]["digest"]
    );
    assert_eq!(first["projections"][0]["position"], 5);
    // The same fold the server runs at start and for online rebuilds.
    let store = SqliteStore::open_read_only(dir.path()).unwrap();
    let live =
        paycenter_projections::ReadModel::fold_from_start(&store, store.head_position().unwrap())
            .unwrap();
    assert_eq!(first["projections"][0]["digest"], live.digest().unwrap());
    // It wrote the file the server opens next, and that file is the same model.
    let loaded = paycenter_projections::persisted::open_live::<paycenter_projections::ReadModel>(
        &dir.path().join("projections"),
        &store,
    )
    .unwrap();
    assert_eq!(loaded.position(), 5);
    assert_eq!(loaded.digest().unwrap(), live.digest().unwrap());
    assert_eq!(
        second["projections"][0]["file"],
        loaded.backing().unwrap().path().display().to_string()
    );
    let unknown = replay(&["rebuild", "--projection", "nope", "--data-dir", data_dir]);
    assert_eq!(unknown.status.code(), Some(1));
}

#[test]
fn verify_names_an_event_id_stored_twice() {
    use paycenter_store::conformance::event;
    let dir = tempfile::tempdir().unwrap();
    {
        // A writer that remembers one id only lets an old id through under another stream:
        // the chain is sound, the log is not.
        let store = SqliteStore::open(
            dir.path(),
            SqliteConfig {
                event_id_window: 1,
                ..SqliteConfig::default()
            },
        )
        .unwrap();
        let repeated = event("t", "{}");
        store
            .append("a", ExpectedRevision::NoStream, vec![repeated.clone()])
            .unwrap();
        store
            .append("b", ExpectedRevision::NoStream, vec![event("t", "{}")])
            .unwrap();
        store
            .append("c", ExpectedRevision::NoStream, vec![repeated])
            .unwrap();
    }
    let output = replay(&["verify", "--data-dir", dir.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("stored twice") && stderr.contains("position 3"),
        "{stderr}"
    );
}
