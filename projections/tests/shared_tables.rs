//! Projections in tables that nodes on one PostgreSQL database share: a fold into them equals
//! a fold into a file; a commit from a position the tables have left is fenced and writes
//! nothing; a reader node serves what the writer commits; when the writer stops, a reader
//! takes the lease over and folds on from the tables' checkpoint.
//!
//! Needs a server: `PAYCENTER_TEST_POSTGRES_URL` (default `host=127.0.0.1 user=postgres
//! dbname=postgres`). Without one the test says why it skipped, unless
//! `PAYCENTER_REQUIRE_POSTGRES=1` (CI sets it), when it fails instead.

mod support;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use paycenter_projections::balances::Balances;
use paycenter_projections::follow::FollowerHealth;
use paycenter_projections::projection::Role;
use paycenter_projections::shared::{self, SharedTables};
use paycenter_projections::tables::postgres::Change;
use paycenter_projections::tables::{Backing, Checkpoint};
use paycenter_projections::{Projection, ReadModel};
use paycenter_store::{EventStore, PostgresStore};
use support::add_orders;

fn url() -> String {
    std::env::var("PAYCENTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=postgres".to_owned())
}

/// A store in a schema of its own, or `None` (the test skips) when no server answers and
/// none is required.
fn store(name: &str) -> Option<(PostgresStore, String)> {
    let schema = format!("pc_shared_{name}_{}", std::process::id());
    match PostgresStore::open(&url(), &schema) {
        Ok(store) => Some((store, schema)),
        Err(error) => {
            if std::env::var("PAYCENTER_REQUIRE_POSTGRES").is_ok_and(|value| value == "1") {
                panic!("PostgreSQL is required (PAYCENTER_REQUIRE_POSTGRES=1) but not reachable at {:?}: {error}", url());
            }
            eprintln!("skipped: no PostgreSQL at {:?} ({error})", url());
            None
        }
    }
}

fn tables(schema: &str, node_id: &str) -> SharedTables {
    SharedTables {
        url: url(),
        schema: schema.to_owned(),
        node_id: node_id.to_owned(),
    }
}

#[test]
fn a_fold_into_shared_tables_equals_a_fold_into_a_file_and_resumes() {
    let Some((store, schema)) = store("fold") else {
        return;
    };
    add_orders(&store, 0, 300);
    let head = store.head_position().unwrap();
    let dir = tempfile::tempdir().unwrap();

    let mut in_file = ReadModel::open(&dir.path().join("model.sqlite"), &store).unwrap();
    in_file.catch_up(&store, head).unwrap();
    let shared_backing = Backing::open_postgres(&url(), &schema, "read_model").unwrap();
    let mut in_tables = ReadModel::open_on(shared_backing.clone(), &store, Role::Writer).unwrap();
    in_tables.catch_up(&store, head).unwrap();
    assert_eq!(in_tables.position(), head);
    assert_eq!(
        ReadModel::file_digest(&shared_backing).unwrap(),
        ReadModel::file_digest(in_file.backing().unwrap()).unwrap(),
        "the tables hold what the file holds"
    );
    assert!(shared_backing.size_bytes() > 0);

    let mut balances_file = Balances::open(&dir.path().join("balances.sqlite"), &store).unwrap();
    balances_file.catch_up(&store, head).unwrap();
    let balances_backing = Backing::open_postgres(&url(), &schema, "balances").unwrap();
    let mut balances_tables =
        Balances::open_on(balances_backing.clone(), &store, Role::Writer).unwrap();
    balances_tables.catch_up(&store, head).unwrap();
    assert_eq!(
        Balances::file_digest(&balances_backing).unwrap(),
        Balances::file_digest(balances_file.backing().unwrap()).unwrap()
    );

    // Reopened, it resumes at the checkpoint and folds on from there alone.
    drop(in_tables);
    add_orders(&store, 300, 20);
    let new_head = store.head_position().unwrap();
    let mut resumed = ReadModel::open_on(
        Backing::open_postgres(&url(), &schema, "read_model").unwrap(),
        &store,
        Role::Writer,
    )
    .unwrap();
    assert_eq!(resumed.position(), head);
    resumed.catch_up(&store, new_head).unwrap();
    in_file.catch_up(&store, new_head).unwrap();
    assert_eq!(resumed.digest().unwrap(), in_file.digest().unwrap());

    drop((resumed, in_file, balances_tables, balances_file, store));
    PostgresStore::drop_schema(&url(), &schema).unwrap();
}

fn checkpoint(position: u64) -> Checkpoint {
    Checkpoint {
        name: "t".into(),
        version: 1,
        position,
        hash_at_position: String::new(),
        scalars: "{}".into(),
    }
}

#[test]
fn a_commit_from_a_position_the_tables_left_is_fenced_and_writes_nothing() {
    let Some((store, schema)) = store("fence") else {
        return;
    };
    let first = Backing::open_postgres(&url(), &schema, "fenced").unwrap();
    let second = Backing::open_postgres(&url(), &schema, "fenced").unwrap();
    // Both opened at 0; the second commits first and so takes the tables over.
    second
        .commit(
            &[(1, b"a".to_vec(), Some("\"second\"".into()))],
            &checkpoint(5),
        )
        .unwrap();
    let error = first
        .commit(
            &[
                (1, b"a".to_vec(), Some("\"first\"".into())),
                (1, b"b".to_vec(), Some("\"first\"".into())),
            ],
            &checkpoint(7),
        )
        .unwrap_err();
    assert!(error.reason.contains("another node"), "{error}");
    assert!(first.fenced());
    assert!(!second.fenced());
    assert_eq!(
        first.all(1).unwrap(),
        vec![(b"a".to_vec(), "\"second\"".to_owned())]
    );
    assert_eq!(first.checkpoint().unwrap().unwrap().position, 5);
    // A fenced backing stays fenced: it never writes again, even from the right position.
    assert!(first.commit(&[], &checkpoint(9)).is_err());
    // The one that moved the checkpoint goes on; a row written twice in one batch keeps the
    // last value, and a removal removes.
    second
        .commit(
            &[
                (1, b"b".to_vec(), Some("\"one\"".into())),
                (1, b"b".to_vec(), Some("\"two\"".into())),
                (1, b"a".to_vec(), None),
            ],
            &checkpoint(8),
        )
        .unwrap();
    assert_eq!(
        second.all(1).unwrap(),
        vec![(b"b".to_vec(), "\"two\"".to_owned())]
    );
    let Change::Moved(moved) = second.moved_since(5).unwrap() else {
        panic!("the checkpoint moved from 5");
    };
    assert_eq!(moved.checkpoint.position, 8);
    assert_eq!(moved.changed_spaces, vec![1]);
    assert!(matches!(second.moved_since(8).unwrap(), Change::None));

    drop(store);
    PostgresStore::drop_schema(&url(), &schema).unwrap();
}

/// One node's projection on the shared tables, as the service hosts it.
struct Node<P> {
    model: Arc<RwLock<P>>,
    health: Arc<FollowerHealth>,
    announced: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    coordinator: std::cell::Cell<Option<std::thread::JoinHandle<()>>>,
}

fn start_node<P: Projection>(store: &Arc<dyn EventStore>, schema: &str, node_id: &str) -> Node<P> {
    let tables = tables(schema, node_id);
    let model = Arc::new(RwLock::new(
        shared::open_reader::<P>(&tables, store.as_ref(), Duration::from_secs(10)).unwrap(),
    ));
    let announced = Arc::new(AtomicU64::new(model.read().unwrap().position()));
    let stop = Arc::new(AtomicBool::new(false));
    let heard = announced.clone();
    let health = Arc::new(FollowerHealth::default());
    let coordinator = shared::run_shared(
        store.clone(),
        tables,
        model.clone(),
        health.clone(),
        Arc::new(move |position| heard.store(position, Ordering::SeqCst)),
        50_000,
        stop.clone(),
    )
    .unwrap();
    Node {
        model,
        health,
        announced,
        stop,
        coordinator: std::cell::Cell::new(Some(coordinator)),
    }
}

/// Waits until `node` announced `position` and its model is there.
fn wait_for<P: Projection>(node: &Node<P>, position: u64, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while node.announced.load(Ordering::SeqCst) < position
        || node.model.read().unwrap().position() < position
    {
        assert!(
            Instant::now() < deadline,
            "{what}: never reached {position}"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn a_reader_serves_what_the_writer_commits_and_takes_over_when_it_stops() {
    let Some((store, schema)) = store("handover") else {
        return;
    };
    let store: Arc<dyn EventStore> = Arc::new(store);
    add_orders(store.as_ref(), 0, 50);
    let head = store.head_position().unwrap();

    // The first node takes the lease before it serves, and folds the log into the tables.
    let node_a = start_node::<ReadModel>(&store, &schema, "node-a");
    wait_for(&node_a, head, "the writer");
    let node_b = start_node::<ReadModel>(&store, &schema, "node-b");
    wait_for(&node_b, head, "the reader");

    // What A folds, B serves once A has committed it: the same digest at the same position.
    add_orders(store.as_ref(), 50, 30);
    let head = store.head_position().unwrap();
    wait_for(&node_a, head, "the writer");
    wait_for(&node_b, head, "the reader");
    let digest_a = node_a.model.read().unwrap().digest().unwrap();
    let digest_b = node_b.model.read().unwrap().digest().unwrap();
    assert_eq!(digest_a, digest_b, "the reader reads the writer's tables");
    assert_eq!(
        node_a.model.read().unwrap().status_counts(),
        node_b.model.read().unwrap().status_counts(),
        "the reader takes the writer's scalars"
    );
    assert_eq!(
        node_a.model.read().unwrap().merchants().len(),
        node_b.model.read().unwrap().merchants().len()
    );

    // A stops cleanly: it commits what it staged and gives the lease up (a killed node's
    // lease runs out instead: `api/tests/e2e.rs::two_nodes_share_one_database`). B takes over
    // and folds what comes next into the tables.
    node_a.stop.store(true, Ordering::SeqCst);
    node_a.coordinator.take().unwrap().join().unwrap();
    let mut sql = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
    let given_up: bool = sql
        .query_one(
            &format!("SELECT owner <> 'node-a' OR expires_at <= now() FROM {schema}.leases WHERE name = 'projection:read_model'"),
            &[],
        )
        .unwrap()
        .get(0);
    assert!(given_up, "A gave its lease up as it stopped");
    add_orders(store.as_ref(), 80, 30);
    let head = store.head_position().unwrap();
    let started = Instant::now();
    wait_for(&node_b, head, "the reader, once it took over");
    assert!(
        started.elapsed()
            < Duration::from_millis(shared::LEASE_TTL_MS + shared::LEASE_RENEW_MS + 20_000),
        "took over in {:?}",
        started.elapsed()
    );
    let backing = Backing::open_postgres(&url(), &schema, "read_model").unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while backing.checkpoint().unwrap().unwrap().position < head {
        assert!(
            Instant::now() < deadline,
            "B never committed what it folded"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut reference = ReadModel::default();
    reference.catch_up(store.as_ref(), head).unwrap();
    assert_eq!(
        node_b.model.read().unwrap().digest().unwrap(),
        reference.digest().unwrap(),
        "the tables, folded by two nodes in turn, are the fold of the log"
    );

    node_b.stop.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    drop((node_a, node_b, store));
    PostgresStore::drop_schema(&url(), &schema).unwrap();
}

/// The tables of `projection` in `schema`, by name.
fn tables_of(sql: &mut postgres::Client, schema: &str, projection: &str) -> Vec<String> {
    sql.query(
        "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE $2 ORDER BY 1",
        &[&schema, &format!("rm_{projection}_g%")],
    )
    .unwrap()
    .iter()
    .map(|row| row.get(0))
    .collect()
}

#[test]
fn a_rebuild_folds_a_new_generation_that_every_node_moves_to() {
    let Some((store, schema)) = store("rebuild") else {
        return;
    };
    let mut sql = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
    let store: Arc<dyn EventStore> = Arc::new(store);
    add_orders(store.as_ref(), 0, 40);
    let node_a = start_node::<ReadModel>(&store, &schema, "node-a");
    let node_b = start_node::<ReadModel>(&store, &schema, "node-b");
    assert!(
        node_a.health.writes_shared_tables(),
        "the first node writes"
    );
    assert!(!node_b.health.writes_shared_tables(), "the second reads");
    let head = store.head_position().unwrap();
    wait_for(&node_b, head, "the reader");
    assert_eq!(
        tables_of(&mut sql, &schema, "read_model"),
        [
            "rm_read_model_g0_checkpoint",
            "rm_read_model_g0_rows",
            "rm_read_model_g0_spaces"
        ]
    );

    // The writer rebuilds while orders keep coming.
    let rebuilt = std::thread::scope(|scope| {
        let rebuild = scope.spawn(|| {
            paycenter_projections::rebuild::rebuild_online_shared(
                store.as_ref(),
                &node_a.model,
                &tables(&schema, "node-a"),
            )
            .unwrap()
        });
        add_orders(store.as_ref(), 40, 20);
        rebuild.join().unwrap()
    });
    assert!(rebuilt.identical, "the fresh fold equals the live tables");
    // The old generation stays a moment for readers to move off it, then goes.
    let deadline = Instant::now() + Duration::from_secs(20);
    while tables_of(&mut sql, &schema, "read_model")
        != [
            "rm_read_model_g1_checkpoint",
            "rm_read_model_g1_rows",
            "rm_read_model_g1_spaces",
        ]
    {
        assert!(
            Instant::now() < deadline,
            "the new generation is live and the old one dropped: {:?}",
            tables_of(&mut sql, &schema, "read_model")
        );
        std::thread::sleep(Duration::from_millis(50));
    }

    // Both nodes go on with the new generation: the writer folds into it, the reader reads it.
    add_orders(store.as_ref(), 60, 10);
    let head = store.head_position().unwrap();
    wait_for(&node_a, head, "the writer");
    wait_for(&node_b, head, "the reader");
    let mut reference = ReadModel::default();
    reference.catch_up(store.as_ref(), head).unwrap();
    assert_eq!(
        node_a.model.read().unwrap().digest().unwrap(),
        reference.digest().unwrap()
    );
    assert_eq!(
        node_b.model.read().unwrap().digest().unwrap(),
        reference.digest().unwrap()
    );

    // A node that starts now opens the live generation.
    let node_c = start_node::<ReadModel>(&store, &schema, "node-c");
    wait_for(&node_c, head, "a new reader");
    assert_eq!(
        node_c.model.read().unwrap().digest().unwrap(),
        reference.digest().unwrap()
    );

    for node in [&node_a, &node_b, &node_c] {
        node.stop.store(true, Ordering::SeqCst);
    }
    std::thread::sleep(Duration::from_millis(300));
    drop((node_a, node_b, node_c, store));
    PostgresStore::drop_schema(&url(), &schema).unwrap();
}

#[test]
fn tables_of_another_version_are_folded_again_by_the_node_that_takes_the_lease() {
    let Some((store, schema)) = store("upgrade") else {
        return;
    };
    let store: Arc<dyn EventStore> = Arc::new(store);
    add_orders(store.as_ref(), 0, 20);
    let head = store.head_position().unwrap();
    // Tables an earlier version of the read model wrote.
    let old = Backing::open_postgres(&url(), &schema, "read_model").unwrap();
    old.commit(
        &[(
            1,
            b"stale".to_vec(),
            Some("\"an earlier version's row\"".into()),
        )],
        &Checkpoint {
            name: "read_model".into(),
            version: 1,
            position: 3,
            hash_at_position: String::new(),
            scalars: "{}".into(),
        },
    )
    .unwrap();
    drop(old);

    let node = start_node::<ReadModel>(&store, &schema, "node-a");
    wait_for(&node, head, "the upgraded node");
    let mut reference = ReadModel::default();
    reference.catch_up(store.as_ref(), head).unwrap();
    assert_eq!(
        node.model.read().unwrap().digest().unwrap(),
        reference.digest().unwrap()
    );
    let backing = Backing::open_postgres(&url(), &schema, "read_model").unwrap();
    assert!(
        !backing
            .all(1)
            .unwrap()
            .iter()
            .any(|(key, _)| key == b"stale"),
        "the old rows are gone"
    );

    node.stop.store(true, Ordering::SeqCst);
    std::thread::sleep(Duration::from_millis(300));
    drop((node, store));
    PostgresStore::drop_schema(&url(), &schema).unwrap();
}

#[test]
fn a_fold_that_stops_on_the_writer_stops_the_readers_too_and_says_where() {
    use paycenter_domain::events::{Event, PaymentSucceeded};
    use paycenter_domain::ids::{ChannelTradeNo, TradeNo};
    let Some((store, schema)) = store("stop") else {
        return;
    };
    let store: Arc<dyn EventStore> = Arc::new(store);
    add_orders(store.as_ref(), 0, 10);
    let writer = start_node::<Balances>(&store, &schema, "node-a");
    let reader = start_node::<Balances>(&store, &schema, "node-b");
    assert!(writer.health.writes_shared_tables());
    wait_for(&reader, store.head_position().unwrap(), "the reader");

    // A payment that succeeds without having started: the ledger refuses it (a bug upstream).
    let poison = Event::PaymentSucceeded(PaymentSucceeded {
        trade_no: TradeNo::generate(chrono::Utc::now(), 999_999),
        channel_trade_no: ChannelTradeNo::parse("C-poison").unwrap(),
        amount: paycenter_domain::Money::from_minor(100, paycenter_domain::Currency::CNY),
        source: paycenter_domain::payment::OutcomeSource::Callback,
        paid_at: chrono::Utc::now(),
    });
    store
        .append(
            "order-poison",
            paycenter_store::ExpectedRevision::NoStream,
            Event::to_new_events(&[poison], "order-poison", None),
        )
        .unwrap();
    let poison_position = store.head_position().unwrap();
    let deadline = Instant::now() + Duration::from_secs(20);
    let stopped_at = |node: &Node<Balances>| node.health.stopped().map(|stopped| stopped.position);
    while stopped_at(&writer) != Some(poison_position)
        || stopped_at(&reader) != Some(poison_position)
    {
        assert!(
            Instant::now() < deadline,
            "writer {:?}, reader {:?}",
            writer.health.stopped(),
            reader.health.stopped()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let reported = reader.health.stopped().unwrap();
    assert_eq!(reported.event_type, "payment.succeeded");
    assert!(
        reported.reason.contains("before it started"),
        "{}",
        reported.reason
    );
    // The writer keeps the lease: the next node would stop at the same event.
    assert!(writer.health.writes_shared_tables());

    for node in [&writer, &reader] {
        node.stop.store(true, Ordering::SeqCst);
    }
    std::thread::sleep(Duration::from_millis(300));
    drop((writer, reader, store));
    PostgresStore::drop_schema(&url(), &schema).unwrap();
}

/// The tables' blocking clients close on a thread of their own when the last reference to
/// them goes on a runtime's worker thread (see the store's test of the same name).
#[test]
fn tables_dropped_on_a_runtime_thread_close_their_connections_cleanly() {
    let Some((store, schema)) = store("drop") else {
        return;
    };
    let backing = Backing::open_postgres(&url(), &schema, "read_model").unwrap();
    // A read leaves a connection in the pool.
    assert!(backing.checkpoint().unwrap().is_none());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(async move { tokio::spawn(async move { drop(backing) }).await })
        .expect("the tables' drop on a worker thread does not panic");
    drop(store);
    PostgresStore::drop_schema(&url(), &schema).unwrap();
}
