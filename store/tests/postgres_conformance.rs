//! The conformance suite against the PostgreSQL backend, each store in a fresh schema.
//!
//! Needs a server: `PAYCENTER_TEST_POSTGRES_URL` (default `host=127.0.0.1 user=postgres
//! dbname=postgres`). Without one the test says why it skipped, unless
//! `PAYCENTER_REQUIRE_POSTGRES=1` (CI sets it), when it fails instead.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use paycenter_store::{conformance, EventStore, PostgresStore};

fn url() -> String {
    std::env::var("PAYCENTER_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=postgres".to_owned())
}

/// Whether the server answers; skips (or fails under CI) when it does not.
fn postgres_available() -> bool {
    match postgres::Client::connect(&url(), postgres::NoTls) {
        Ok(_) => true,
        Err(error) => {
            if std::env::var("PAYCENTER_REQUIRE_POSTGRES").is_ok_and(|value| value == "1") {
                panic!("PostgreSQL is required (PAYCENTER_REQUIRE_POSTGRES=1) but not reachable at {:?}: {error}", url());
            }
            eprintln!(
                "skipped: no PostgreSQL at {:?} ({error}); set PAYCENTER_TEST_POSTGRES_URL",
                url()
            );
            false
        }
    }
}

static SCHEMA_COUNTER: AtomicUsize = AtomicUsize::new(0);

fn fresh_schema() -> String {
    format!(
        "pc_test_{}_{}",
        std::process::id(),
        SCHEMA_COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

#[test]
fn postgres_store_passes_the_conformance_suite() {
    if !postgres_available() {
        return;
    }
    let schemas = Mutex::new(Vec::new());
    let factory = || -> Arc<dyn EventStore> {
        let schema = fresh_schema();
        let store = PostgresStore::open(&url(), &schema).unwrap();
        schemas.lock().unwrap().push(schema);
        Arc::new(store)
    };
    conformance::run_all(&factory);
    for schema in schemas.into_inner().unwrap() {
        PostgresStore::drop_schema(&url(), &schema).unwrap();
    }
}

#[test]
fn two_nodes_on_one_database_share_one_gap_free_chain() {
    if !postgres_available() {
        return;
    }
    let schema = fresh_schema();
    let node_a: Arc<dyn EventStore> = Arc::new(PostgresStore::open(&url(), &schema).unwrap());
    let node_b: Arc<dyn EventStore> = Arc::new(PostgresStore::open(&url(), &schema).unwrap());
    conformance::two_nodes_share_one_chain(node_a.clone(), node_b.clone(), 50, 1);
    drop((node_a, node_b));
    PostgresStore::drop_schema(&url(), &schema).unwrap();
}

#[test]
fn a_lease_has_one_holder_until_it_expires() {
    if !postgres_available() {
        return;
    }
    // Long enough that a loaded machine (the whole suite runs at once) cannot let a lease
    // lapse between two calls that expect it held.
    const LEASE_MS: u64 = 3_000;
    let schema = fresh_schema();
    let node_a = PostgresStore::open(&url(), &schema).unwrap();
    let node_b = PostgresStore::open(&url(), &schema).unwrap();
    assert!(node_a
        .try_lease("webhook:ntf_1:1", "node-a", LEASE_MS)
        .unwrap());
    assert!(!node_b
        .try_lease("webhook:ntf_1:1", "node-b", LEASE_MS)
        .unwrap());
    // The holder renews; other names are independent.
    assert!(node_a
        .try_lease("webhook:ntf_1:1", "node-a", LEASE_MS)
        .unwrap());
    assert!(node_b
        .try_lease("webhook:ntf_1:2", "node-b", LEASE_MS)
        .unwrap());
    // Concurrent takers of a free lease: exactly one wins.
    let winners: usize = std::thread::scope(|scope| {
        let takers: Vec<_> = (0..8)
            .map(|taker_idx| {
                let store = if taker_idx % 2 == 0 { &node_a } else { &node_b };
                scope.spawn(move || {
                    store
                        .try_lease("refund:rf_x", &format!("taker-{taker_idx}"), 60_000)
                        .unwrap()
                })
            })
            .collect();
        takers
            .into_iter()
            .map(|taker| taker.join().unwrap() as usize)
            .sum()
    });
    assert_eq!(winners, 1);
    // Once expired, another node takes it over.
    std::thread::sleep(std::time::Duration::from_millis(LEASE_MS + 500));
    assert!(node_b
        .try_lease("webhook:ntf_1:1", "node-b", LEASE_MS)
        .unwrap());
    assert!(!node_a
        .try_lease("webhook:ntf_1:1", "node-a", LEASE_MS)
        .unwrap());
    drop((node_a, node_b));
    PostgresStore::drop_schema(&url(), &schema).unwrap();
}

#[test]
fn a_start_verifies_from_a_sealed_checkpoint_and_a_full_walk_still_finds_a_break_below() {
    use paycenter_store::ExpectedRevision;
    if !postgres_available() {
        return;
    }
    let schema = fresh_schema();
    let append = |store: &PostgresStore, n_events: usize| {
        for event_idx in 0..n_events {
            store
                .append(
                    &format!("s-{event_idx}-{}", store.head_position().unwrap()),
                    ExpectedRevision::NoStream,
                    vec![conformance::event("thing.happened", r#"{"n":1}"#)],
                )
                .unwrap();
        }
    };
    let store = PostgresStore::open(&url(), &schema).unwrap();
    append(&store, 10);
    let checkpoint = store.verify_chain().unwrap();
    assert_eq!(checkpoint.n_events, 10);
    append(&store, 5);
    drop(store);
    let mut sql = postgres::Client::connect(&url(), postgres::NoTls).unwrap();
    let tamper = |sql: &mut postgres::Client, position: i64| {
        sql.execute(
            &format!(
                "UPDATE {schema}.events SET payload = '{{\"n\":2}}' WHERE global_position = $1"
            ),
            &[&position],
        )
        .unwrap();
    };
    // A change below the checkpoint: the start, verifying from it, does not walk there...
    tamper(&mut sql, 3);
    let from_checkpoint = PostgresStore::open_from(&url(), &schema, Some(checkpoint)).unwrap();
    // ...a whole walk (the background one, `paycenter-replay verify`) does.
    let broken = from_checkpoint.verify_chain().unwrap_err().to_string();
    assert!(broken.contains("position 3"), "{broken}");
    drop(from_checkpoint);
    // A change past the checkpoint stops the start, naming it.
    tamper(&mut sql, 12);
    let refused = PostgresStore::open_from(&url(), &schema, Some(checkpoint))
        .err()
        .expect("a broken tail is refused")
        .to_string();
    assert!(refused.contains("position 12"), "{refused}");
    // A checkpoint the log does not hold as it was: the whole chain is walked.
    let forged = paycenter_store::ChainReport {
        n_events: 10,
        head_hash: [7; 32],
    };
    let refused = PostgresStore::open_from(&url(), &schema, Some(forged))
        .err()
        .expect("the whole walk finds position 3")
        .to_string();
    assert!(refused.contains("position 3"), "{refused}");
    PostgresStore::drop_schema(&url(), &schema).unwrap();
}

/// A service's last reference to its store may go on a runtime's worker thread (a task
/// dropped as the runtime shuts down). The store's blocking clients then close their
/// connections on a thread of their own: dropped there directly, they panic ("Cannot start a
/// runtime from within a runtime"), and a panic during that shutdown aborted `serve`.
#[test]
fn a_store_dropped_on_a_runtime_thread_closes_its_connections_cleanly() {
    if !postgres_available() {
        return;
    }
    let schema = fresh_schema();
    let store = PostgresStore::open(&url(), &schema).unwrap();
    // A read leaves a connection in the pool.
    assert_eq!(store.head_position().unwrap(), 0);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    runtime
        .block_on(async move { tokio::spawn(async move { drop(store) }).await })
        .expect("the store's drop on a worker thread does not panic");
    PostgresStore::drop_schema(&url(), &schema).unwrap();
}
