//! Snapshots: save then load gives the same read model (digest); a loaded snapshot caught up
//! equals a fresh fold; a snapshot that disagrees with the log is refused with a reason.

use chrono::Utc;
use paycenter_domain::events::Event;
use paycenter_domain::ids::*;
use paycenter_domain::payment::*;
use paycenter_domain::{streams, Currency, Money, Rate};
use paycenter_projections::{snapshot, ReadModel};
use paycenter_store::{EventStore, ExpectedRevision, SqliteConfig, SqliteStore};

fn add_orders(store: &SqliteStore, first_order: u64, n_orders: u64) {
    for order_idx in first_order..first_order + n_orders {
        let merchant_id = MerchantId::from_entropy(u128::from(order_idx % 3));
        let order_no = OrderNo::parse(&format!("O{order_idx}")).unwrap();
        let trade_no = TradeNo::generate(Utc::now(), order_idx);
        let amount = Money::from_minor(1_000 + order_idx as i64, Currency::CNY);
        let mut order = Order::default();
        let mut events = Vec::new();
        let mut run = |command: OrderCommand| {
            let decided = order.decide(&command, Utc::now()).unwrap();
            decided.iter().for_each(|event| order.apply(event));
            events.extend(decided);
        };
        run(OrderCommand::StartAttempt(StartAttempt {
            trade_no: trade_no.clone(),
            merchant_id: merchant_id.clone(),
            order_no: order_no.clone(),
            app_id: AppId::from_entropy(1),
            channel_account_id: ChannelAccountId::from_entropy(1),
            channel: Channel::Sandbox,
            invoke_method: InvokeMethod::Pc,
            amount,
            fee_rate: Rate::parse("0.006").unwrap(),
            splits: vec![Split {
                receiver: "partner".into(),
                amount: Money::from_minor(100, Currency::CNY),
            }],
            subject: "rent".into(),
            expire_seconds: 600,
            min_attempt_interval_ms: 0,
            return_url: None,
        }));
        if order_idx % 4 != 3 {
            run(OrderCommand::RecordSuccess {
                channel_account_id: ChannelAccountId::from_entropy(1),
                trade_no: trade_no.clone(),
                channel_trade_no: ChannelTradeNo::parse(&format!("C{order_idx}")).unwrap(),
                amount,
                source: OutcomeSource::Callback,
            });
        }
        if order_idx % 4 == 0 {
            let refund_id = RefundId::parse(&format!("rf_{order_idx}")).unwrap();
            run(OrderCommand::RequestRefund {
                trade_no: trade_no.clone(),
                refund_id: refund_id.clone(),
                refund_no: RefundNo::parse("R").unwrap(),
                amount: Money::from_minor(300, Currency::CNY),
                reason: String::new(),
            });
            run(OrderCommand::RecordRefundSuccess {
                trade_no,
                refund_id,
                channel_refund_no: None,
            });
        }
        let stream = streams::order(&AppId::from_entropy(1), &merchant_id, &order_no);
        store
            .append(
                &stream,
                ExpectedRevision::NoStream,
                Event::to_new_events(&events, &stream, None),
            )
            .unwrap();
    }
}

#[test]
fn snapshots_round_trip_and_resume() {
    let data = tempfile::tempdir().unwrap();
    let snapshots = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path(), SqliteConfig::default()).unwrap();
    add_orders(&store, 0, 40);
    let live = ReadModel::fold_from_start(&store, store.head_position().unwrap()).unwrap();
    assert_eq!(
        snapshot::load(snapshots.path(), &store)
            .unwrap()
            .map(|model| model.position),
        None,
        "no snapshot yet"
    );
    snapshot::save(snapshots.path(), &store, &live).unwrap();
    let loaded = snapshot::load(snapshots.path(), &store)
        .unwrap()
        .expect("a snapshot");
    assert_eq!(
        loaded.digest(),
        live.digest(),
        "save then load is the same model, indexes included"
    );
    // The sweeper's queue holds exactly the unpaid attempts (every fourth), in a fold and in
    // a loaded snapshot alike.
    let pending: std::collections::BTreeSet<&TradeNo> = live
        .payments
        .values()
        .filter(|payment| payment.status == AttemptStatus::Pending)
        .map(|payment| &payment.trade_no)
        .collect();
    assert_eq!(pending.len(), 10);
    let queued: std::collections::BTreeSet<&TradeNo> = live
        .sweep_queue
        .iter()
        .map(|(_, trade_no)| trade_no)
        .collect();
    assert_eq!(queued, pending);
    assert_eq!(loaded.sweep_queue, live.sweep_queue);
    // The counts /metrics reports, kept as events arrived, agree with a count of the payments.
    assert_eq!(live.status_counts.get("pending"), Some(&10));
    assert_eq!(live.status_counts.get("succeeded"), Some(&30));
    assert_eq!(loaded.status_counts, live.status_counts);
    let merchant = MerchantId::from_entropy(0);
    assert_eq!(
        loaded
            .payments_of_order(
                &AppId::from_entropy(1),
                &merchant,
                &OrderNo::parse("O3").unwrap()
            )
            .len(),
        1
    );

    // The log moves on; the snapshot resumes from its checkpoint and catches up.
    add_orders(&store, 40, 20);
    let head = store.head_position().unwrap();
    let mut resumed = snapshot::load(snapshots.path(), &store)
        .unwrap()
        .expect("still valid");
    assert_eq!(resumed.position, live.position);
    resumed.catch_up(&store, head).unwrap();
    assert_eq!(
        resumed.digest(),
        ReadModel::fold_from_start(&store, head).unwrap().digest()
    );
}

#[test]
fn a_snapshot_that_disagrees_with_the_log_is_refused() {
    let data = tempfile::tempdir().unwrap();
    let other_data = tempfile::tempdir().unwrap();
    let snapshots = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(data.path(), SqliteConfig::default()).unwrap();
    add_orders(&store, 0, 10);
    let model = ReadModel::fold_from_start(&store, store.head_position().unwrap()).unwrap();
    snapshot::save(snapshots.path(), &store, &model).unwrap();

    // Another log of the same length: the checkpoint's hash does not match.
    let other = SqliteStore::open(other_data.path(), SqliteConfig::default()).unwrap();
    add_orders(&other, 100, 10);
    let refused = snapshot::load(snapshots.path(), &other).unwrap_err();
    assert!(
        refused.contains("not the one the snapshot was taken at"),
        "{refused}"
    );

    // A shorter log: the snapshot is past its head.
    let empty_data = tempfile::tempdir().unwrap();
    let empty = SqliteStore::open(empty_data.path(), SqliteConfig::default()).unwrap();
    assert!(snapshot::load(snapshots.path(), &empty)
        .unwrap_err()
        .contains("past the log's head"));

    // A damaged file.
    let file = snapshot::path(snapshots.path());
    let bytes = std::fs::read(&file).unwrap();
    std::fs::write(&file, &bytes[..bytes.len() / 2]).unwrap();
    assert!(snapshot::load(snapshots.path(), &store)
        .unwrap_err()
        .contains("snapshot body"));
}
