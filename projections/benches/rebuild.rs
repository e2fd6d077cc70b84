//! Rebuild speed: fold a log of about 1,000,000 events of payments and their webhooks from
//! position 1, through
//! `read_all`, JSON decoding and `apply`, into (a) the balances ledger alone, in memory and as
//! the balances projection into its own file, and (b) the whole read model. Each rate is also
//! printed as a ratio of `read_all` in the same run. The log is written first through the order aggregate's own decisions, each
//! outcome's webhook scheduled, attempted and delivered as the service records them (so a
//! server started on the log has no backlog of webhooks to schedule).
//!
//! Run: `cargo bench -p paycenter-projections --bench rebuild`. Optional env:
//! `PAYCENTER_BENCH_EVENTS` (default 1,000,000); `PAYCENTER_BENCH_DATA_DIR`: fill the log in
//! that (new) directory and keep it, a data directory `paycenter serve` opens (the memory and
//! start-up figures of `docs/benchmarks.md` are measured on it); a directory that already holds
//! a log is not filled again but measured as it is; `PAYCENTER_BENCH_MODEL_FOLDS=0`:
//! only the fill, `read_all` and the balances folds (for logs too long to fold in memory);
//! `PAYCENTER_BENCH_POSTGRES_URL` (`postgres://…`): the balances and the whole read model are
//! also folded into the tables nodes on one PostgreSQL database share (in a fresh schema,
//! dropped after), as the first node of a cluster folds them.

use std::sync::Arc;
use std::time::Instant;

use chrono::{TimeZone, Utc};
use paycenter_domain::events::Event;
use paycenter_domain::ids::*;
use paycenter_domain::payment::*;
use paycenter_domain::{streams, Currency, Money, Rate};
use paycenter_projections::balances::{Balances, Ledger};
use paycenter_projections::{Projection as _, ReadModel};
use paycenter_store::{EventStore, ExpectedRevision, SqliteConfig, SqliteStore};

const PAGE_EVENTS: usize = 10_000;

/// The events of one order: started, paid (with a split), and every fourth refunded in part.
fn order_events(order_idx: u64) -> (String, Vec<Event>) {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let merchant_id = MerchantId::from_entropy(u128::from(order_idx % 100));
    let order_no = OrderNo::parse(&format!("O{order_idx}")).unwrap();
    let trade_no = TradeNo::generate(t0, order_idx);
    let cny = |minor| Money::from_minor(minor, Currency::CNY);
    let amount = cny(1_000 + (order_idx % 50_000) as i64);
    let mut order = Order::default();
    let mut events = Vec::new();
    let mut run = |command: OrderCommand| {
        let decided = order.decide(&command, t0).unwrap();
        decided.iter().for_each(|event| order.apply(event));
        events.extend(decided);
    };
    run(OrderCommand::StartAttempt(StartAttempt {
        trade_no: trade_no.clone(),
        merchant_id: merchant_id.clone(),
        order_no: order_no.clone(),
        app_id: AppId::from_entropy(1),
        channel_account_id: ChannelAccountId::from_entropy(u128::from(order_idx % 100)),
        channel: Channel::Sandbox,
        invoke_method: InvokeMethod::Wap,
        amount,
        fee_rate: Rate::parse("0.006").unwrap(),
        splits: vec![Split {
            receiver: "platform".into(),
            amount: cny(100),
        }],
        subject: "rent".into(),
        expire_seconds: 900,
        min_attempt_interval_ms: 15_000,
        return_url: None,
        route: None,
        failover_from: None,
        share: paycenter_domain::vocabulary::ShareMode::None,
    }));
    run(OrderCommand::RecordSuccess {
        channel_account_id: ChannelAccountId::from_entropy(u128::from(order_idx % 100)),
        trade_no: trade_no.clone(),
        channel_trade_no: ChannelTradeNo::parse(&format!("C{order_idx}")).unwrap(),
        amount,
        source: OutcomeSource::Callback,
    });
    if order_idx.is_multiple_of(4) {
        let refund_id = RefundId::parse(&format!("rf_{order_idx}")).unwrap();
        run(OrderCommand::RequestRefund {
            trade_no: trade_no.clone(),
            refund_id: refund_id.clone(),
            refund_no: RefundNo::parse("R1").unwrap(),
            amount: cny(500),
            reason: String::new(),
        });
        run(OrderCommand::RecordRefundSuccess {
            trade_no,
            refund_id,
            channel_refund_no: None,
        });
    }
    (
        streams::order(&AppId::from_entropy(1), &merchant_id, &order_no),
        events,
    )
}

/// The webhook of the outcome `source_event_id`, as the service records it: scheduled, attempted
/// once and acknowledged.
fn webhook_events(
    order_idx: u64,
    source_event_id: uuid::Uuid,
    webhook_type: &str,
) -> (String, Vec<Event>) {
    use paycenter_domain::events::{
        NotificationDelivered, NotificationScheduled, WebhookAttempted,
    };
    let at = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 1).unwrap();
    let notification_id = paycenter_projections::model::notification_id_for(source_event_id);
    let events = vec![
        Event::NotificationScheduled(NotificationScheduled {
            notification_id: notification_id.clone(),
            app_id: AppId::from_entropy(1),
            merchant_id: MerchantId::from_entropy(u128::from(order_idx % 100)),
            webhook_type: webhook_type.to_owned(),
            data: serde_json::json!({"payment": {"order_no": format!("O{order_idx}")}}),
            created_at: at,
        }),
        Event::WebhookAttempted(WebhookAttempted {
            notification_id: notification_id.clone(),
            attempt_no: 1,
            succeeded: true,
            http_status: Some(200),
            error: None,
            attempted_at: at,
            next_attempt_at: None,
        }),
        Event::NotificationDelivered(NotificationDelivered {
            notification_id: notification_id.clone(),
            delivered_at: at,
        }),
    ];
    (streams::notification(&notification_id), events)
}

fn main() {
    let n_events_wanted: u64 = std::env::var("PAYCENTER_BENCH_EVENTS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(1_000_000);
    let dir = tempfile::Builder::new()
        .prefix("paycenter-bench-")
        .tempdir_in(std::env::current_dir().unwrap())
        .unwrap();
    let kept_dir = std::env::var_os("PAYCENTER_BENCH_DATA_DIR").map(std::path::PathBuf::from);
    let data_dir = kept_dir.clone().unwrap_or_else(|| dir.path().to_owned());
    let store: Arc<dyn EventStore> =
        Arc::new(SqliteStore::open(&data_dir, SqliteConfig::default()).unwrap());

    // Fill from 16 threads so group commit batches the appends.
    let fill_started = Instant::now();
    // 2.5 order events and 3.75 webhook events per order on average.
    let n_orders = n_events_wanted * 4 / 25;
    // A kept directory that already holds a log is measured as it is: a 10M fill takes minutes,
    // and two builds compared on one log are compared on the same events.
    let reused = store.head_position().unwrap() > 0;
    const N_THREADS: u64 = 16;
    let threads: Vec<_> = (0..if reused { 0 } else { N_THREADS })
        .map(|thread_idx| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut order_idx = thread_idx;
                while order_idx < n_orders {
                    let (stream, events) = order_events(order_idx);
                    let new_events = Event::to_new_events(&events, &stream, None);
                    let outcome_ids: Vec<(uuid::Uuid, &'static str)> = events
                        .iter()
                        .zip(&new_events)
                        .filter_map(|(event, new_event)| match event {
                            Event::PaymentSucceeded(_) => {
                                Some((new_event.event_id, "payment.succeeded"))
                            }
                            Event::RefundSucceeded(_) => {
                                Some((new_event.event_id, "refund.succeeded"))
                            }
                            _ => None,
                        })
                        .collect();
                    store
                        .append(&stream, ExpectedRevision::NoStream, new_events)
                        .unwrap();
                    for (source_event_id, webhook_type) in outcome_ids {
                        let (stream, events) =
                            webhook_events(order_idx, source_event_id, webhook_type);
                        store
                            .append(
                                &stream,
                                ExpectedRevision::NoStream,
                                Event::to_new_events(&events, &stream, None),
                            )
                            .unwrap();
                    }
                    order_idx += N_THREADS;
                }
            })
        })
        .collect();
    threads
        .into_iter()
        .for_each(|thread| thread.join().unwrap());
    let n_events = store.head_position().unwrap();
    let fill_seconds = fill_started.elapsed().as_secs_f64();

    let fold = |apply: &mut dyn FnMut(&paycenter_domain::envelope::RecordedEvent)| {
        let started = Instant::now();
        let mut next_position = 1;
        loop {
            let page = store.read_all(next_position, PAGE_EVENTS).unwrap();
            let Some(last) = page.last() else { break };
            next_position = last.global_position + 1;
            page.iter().for_each(&mut *apply);
        }
        n_events as f64 / started.elapsed().as_secs_f64()
    };
    // The baseline first: every figure below is quoted as a ratio of it.
    let read_rate = fold(&mut |_| {});
    let mut ledger = Ledger::default();
    let ledger_rate = fold(&mut |recorded| ledger.apply_recorded(recorded).unwrap());
    // A full rebuild of the balances projection into its own file, as the online rebuild and
    // `paycenter-replay rebuild --projection balances` run it: read, apply, commit per page.
    let balances_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut balances =
        Balances::open(&balances_dir.path().join("balances.sqlite"), store.as_ref()).unwrap();
    balances.catch_up(store.as_ref(), n_events).unwrap();
    let balances_file_rate = n_events as f64 / started.elapsed().as_secs_f64();
    let balances_file_bytes = balances.backing().unwrap().size_bytes();
    for merchant_id in (0..100).map(MerchantId::from_entropy) {
        assert_eq!(
            balances.ledger().merchant_balances(&merchant_id),
            ledger.merchant_balances(&merchant_id)
        );
    }
    drop(balances);
    ledger.check().unwrap();
    // The same balances as folding fully decoded events: the two paths agree.
    let mut full_ledger = Ledger::default();
    let full_decode_rate = fold(&mut |recorded| {
        full_ledger
            .apply(&Event::decode(recorded).unwrap())
            .unwrap()
    });
    let sample: Vec<MerchantId> = (0..100).map(MerchantId::from_entropy).collect();
    for merchant_id in &sample {
        assert_eq!(
            ledger.merchant_balances(merchant_id),
            full_ledger.merchant_balances(merchant_id)
        );
    }
    // The table's head and the rows every run has; the model folds' rows follow.
    let ratio = |rate: f64| rate / read_rate;
    let print_common_rows = || {
        if reused {
            println!("# paycenter rebuild ({n_events} events of the log already in PAYCENTER_BENCH_DATA_DIR)");
        } else {
            println!(
                "# paycenter rebuild ({n_events} events, {n_orders} orders; filled in {fill_seconds:.1} s)"
            );
        }
        println!();
        println!("| fold from position 1 | events/s | × read_all |");
        println!("|---|---|---|");
        println!("| read_all only (baseline) | {read_rate:.0} | 1 |");
        println!("| balances in memory: read + decode of the fields it reads + apply (`Ledger::apply_recorded`) | {ledger_rate:.0} | {:.2} |", ratio(ledger_rate));
        println!(
            "| **balances projection into its own file** (the same + commit per 10,000 events; file {:.0} MB) | {balances_file_rate:.0} | **{:.2}** |",
            balances_file_bytes as f64 / 1e6,
            ratio(balances_file_rate)
        );
        println!("| balances from fully decoded events (`Event::decode` + `Ledger::apply`) | {full_decode_rate:.0} | {:.2} |", ratio(full_decode_rate));
    };
    // `PAYCENTER_BENCH_MODEL_FOLDS=0` skips the two folds of the whole model (at 10M events the
    // one in memory needs about 14 GB; `paycenter-replay rebuild` times the one into the file).
    if std::env::var("PAYCENTER_BENCH_MODEL_FOLDS").as_deref() == Ok("0") {
        print_common_rows();
        return;
    }
    let mut model = ReadModel::default();
    let model_rate = fold(&mut |recorded| model.apply(recorded));
    assert_eq!(model.position(), n_events);
    drop(model);
    // The same fold into the model's own file, committed every page: what a start without a
    // file and an online rebuild run.
    let model_dir = tempfile::tempdir().unwrap();
    let started = Instant::now();
    let mut file_model =
        ReadModel::open(&model_dir.path().join("read_model.sqlite"), store.as_ref()).unwrap();
    file_model.catch_up(store.as_ref(), n_events).unwrap();
    let file_model_rate = n_events as f64 / started.elapsed().as_secs_f64();
    let file_bytes = file_model.backing().unwrap().size_bytes();
    // Into the shared tables of PostgreSQL, when a server is given: the same folds, committed
    // per page into the tables.
    let shared_rows = std::env::var("PAYCENTER_BENCH_POSTGRES_URL")
        .ok()
        .map(|url| {
            let schema = format!("pc_bench_{}", std::process::id());
            let started = Instant::now();
            let backing = paycenter_projections::tables::Backing::open_postgres(
                &url,
                &schema,
                Balances::NAME,
            )
            .unwrap();
            let mut balances = Balances::open_on(
                backing.clone(),
                store.as_ref(),
                paycenter_projections::projection::Role::Writer,
            )
            .unwrap();
            balances.catch_up(store.as_ref(), n_events).unwrap();
            let balances_rate = n_events as f64 / started.elapsed().as_secs_f64();
            let started = Instant::now();
            let backing =
                paycenter_projections::tables::Backing::open_postgres(&url, &schema, "read_model")
                    .unwrap();
            let mut model = ReadModel::open_on(
                backing.clone(),
                store.as_ref(),
                paycenter_projections::projection::Role::Writer,
            )
            .unwrap();
            model.catch_up(store.as_ref(), n_events).unwrap();
            let model_rate = n_events as f64 / started.elapsed().as_secs_f64();
            let model_bytes = backing.size_bytes();
            drop((balances, model, backing));
            let mut admin = postgres::Client::connect(&url, postgres::NoTls).unwrap();
            admin
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                .unwrap();
            (balances_rate, model_rate, model_bytes)
        });
    print_common_rows();
    if let Some((balances_rate, model_rate, model_bytes)) = shared_rows {
        println!(
            "| balances into PostgreSQL's shared tables (commit per 10,000 events) | {balances_rate:.0} | {:.3} |",
            ratio(balances_rate)
        );
        println!(
            "| whole read model into PostgreSQL's shared tables (commit per 10,000 events; rows {:.0} MB) | {model_rate:.0} | {:.3} |",
            model_bytes as f64 / 1e6,
            ratio(model_rate)
        );
    }
    println!(
        "| whole read model in memory (read + decode + apply) | {model_rate:.0} | {:.3} |",
        ratio(model_rate)
    );
    println!(
        "| whole read model into its file (read + decode + apply + commit per 10,000 events; file {:.0} MB) | {file_model_rate:.0} | {:.3} |",
        file_bytes as f64 / 1e6,
        ratio(file_model_rate)
    );
}
