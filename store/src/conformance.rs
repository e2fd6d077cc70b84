//! The behaviour every backend must show, written once. A backend's test file calls
//! [`run_all`] with a factory of fresh, empty stores; a failing check panics with its name.

use std::sync::Arc;
use std::time::Duration;

use crate::subscription::Subscription;
use crate::{EventStore, ExpectedRevision, NewEvent, StoreError};

/// Makes a fresh, empty store.
pub type StoreFactory<'a> = &'a dyn Fn() -> Arc<dyn EventStore>;

/// One conformance check: it gets a fresh, empty store and panics on a failure.
pub type Check = fn(Arc<dyn EventStore>);

/// Every check, by name.
pub const CHECKS: &[(&str, Check)] = &[
    (
        "append_assigns_positions_and_revisions",
        append_assigns_positions_and_revisions,
    ),
    (
        "expected_revision_is_enforced",
        expected_revision_is_enforced,
    ),
    (
        "reappending_stored_ids_is_a_no_op",
        reappending_stored_ids_is_a_no_op,
    ),
    (
        "partial_id_overlap_is_a_conflict",
        partial_id_overlap_is_a_conflict,
    ),
    (
        "a_refused_batch_writes_nothing",
        a_refused_batch_writes_nothing,
    ),
    (
        "malformed_appends_are_refused",
        malformed_appends_are_refused,
    ),
    ("read_all_pages_in_order", read_all_pages_in_order),
    ("read_stream_from_revision", read_stream_from_revision),
    ("envelope_round_trips", envelope_round_trips),
    (
        "concurrent_appends_are_gap_free",
        concurrent_appends_are_gap_free,
    ),
    (
        "concurrent_exact_appends_to_one_stream_serialize",
        concurrent_exact_appends_to_one_stream_serialize,
    ),
    (
        "concurrent_creations_of_one_stream_admit_one",
        concurrent_creations_of_one_stream_admit_one,
    ),
    (
        "subscription_catches_up_then_follows_live",
        subscription_catches_up_then_follows_live,
    ),
    ("chain_verifies", chain_verifies),
    (
        "async_appends_follow_the_same_rules",
        async_appends_follow_the_same_rules,
    ),
];

/// Runs every check against fresh stores from `factory`.
pub fn run_all(factory: StoreFactory<'_>) {
    for (name, check) in CHECKS {
        eprintln!("conformance: {name}");
        check(factory());
    }
}

/// A test event with a fresh id.
pub fn event(event_type: &str, payload: &str) -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: event_type.to_owned(),
        schema_version: 1,
        correlation_id: None,
        causation_id: None,
        payload: payload.to_owned(),
    }
}

fn append_assigns_positions_and_revisions(store: Arc<dyn EventStore>) {
    assert_eq!(store.head_position().unwrap(), 0);
    let first = store
        .append(
            "a",
            ExpectedRevision::NoStream,
            vec![event("t", "{}"), event("t", "{}")],
        )
        .unwrap();
    assert_eq!(
        (
            first.first_position,
            first.last_position,
            first.last_revision
        ),
        (1, 2, 1)
    );
    assert!(!first.already_stored);
    let second = store
        .append("b", ExpectedRevision::Any, vec![event("t", "{}")])
        .unwrap();
    assert_eq!(
        (
            second.first_position,
            second.last_position,
            second.last_revision
        ),
        (3, 3, 0)
    );
    let third = store
        .append("a", ExpectedRevision::Exact(1), vec![event("t", "{}")])
        .unwrap();
    assert_eq!((third.first_position, third.last_revision), (4, 2));
    assert_eq!(store.head_position().unwrap(), 4);
}

fn expected_revision_is_enforced(store: Arc<dyn EventStore>) {
    store
        .append("s", ExpectedRevision::NoStream, vec![event("t", "{}")])
        .unwrap();
    let cases = [
        (ExpectedRevision::NoStream, Some(0)),
        (ExpectedRevision::Exact(1), Some(0)),
        (ExpectedRevision::Exact(5), Some(0)),
    ];
    for (expected, actual_seen) in cases {
        match store.append("s", expected, vec![event("t", "{}")]) {
            Err(StoreError::WrongExpectedRevision { actual, .. }) => {
                assert_eq!(actual, actual_seen)
            }
            other => panic!("{expected:?}: expected WrongExpectedRevision, got {other:?}"),
        }
    }
    match store.append(
        "missing",
        ExpectedRevision::Exact(0),
        vec![event("t", "{}")],
    ) {
        Err(StoreError::WrongExpectedRevision { actual: None, .. }) => {}
        other => panic!("expected WrongExpectedRevision on a missing stream, got {other:?}"),
    }
    assert_eq!(
        store.head_position().unwrap(),
        1,
        "refused appends write nothing"
    );
}

fn reappending_stored_ids_is_a_no_op(store: Arc<dyn EventStore>) {
    let batch = vec![event("t", "{\"n\":1}"), event("t", "{\"n\":2}")];
    let first = store
        .append("s", ExpectedRevision::NoStream, batch.clone())
        .unwrap();
    store
        .append("other", ExpectedRevision::Any, vec![event("t", "{}")])
        .unwrap();
    // A retried command carries the same ids and the same expectation that held the first time.
    let again = store
        .append("s", ExpectedRevision::NoStream, batch)
        .unwrap();
    assert!(again.already_stored);
    assert_eq!(
        (
            again.first_position,
            again.last_position,
            again.last_revision
        ),
        (first.first_position, first.last_position, 1)
    );
    assert_eq!(store.head_position().unwrap(), 3);
}

fn partial_id_overlap_is_a_conflict(store: Arc<dyn EventStore>) {
    let stored = event("t", "{}");
    store
        .append("s", ExpectedRevision::Any, vec![stored.clone()])
        .unwrap();
    for batch in [
        vec![event("t", "{}"), stored.clone()],
        vec![stored.clone(), event("t", "{}")],
    ] {
        match store.append("s", ExpectedRevision::Any, batch) {
            Err(StoreError::EventIdConflict { .. }) => {}
            other => panic!("expected EventIdConflict, got {other:?}"),
        }
    }
    match store.append("elsewhere", ExpectedRevision::Any, vec![stored]) {
        Err(StoreError::EventIdConflict { .. }) => {}
        other => panic!("an id stored in another stream is a conflict, got {other:?}"),
    }
    assert_eq!(store.head_position().unwrap(), 1);
}

fn a_refused_batch_writes_nothing(store: Arc<dyn EventStore>) {
    store
        .append("s", ExpectedRevision::Any, vec![event("t", "{}")])
        .unwrap();
    let refused = store.append(
        "s",
        ExpectedRevision::Exact(9),
        vec![event("t", "{}"), event("t", "{}"), event("t", "{}")],
    );
    assert!(refused.is_err());
    assert_eq!(store.read_stream("s", 0).unwrap().len(), 1);
    assert_eq!(store.read_all(0, 100).unwrap().len(), 1);
}

fn malformed_appends_are_refused(store: Arc<dyn EventStore>) {
    let duplicate = event("t", "{}");
    let cases: Vec<(&str, Vec<NewEvent>)> = vec![
        ("", vec![event("t", "{}")]),
        ("s", vec![]),
        ("s", vec![duplicate.clone(), duplicate]),
        ("s", vec![event("", "{}")]),
    ];
    for (stream_id, events) in cases {
        match store.append(stream_id, ExpectedRevision::Any, events) {
            Err(StoreError::InvalidAppend { .. }) => {}
            other => panic!("expected InvalidAppend for stream {stream_id:?}, got {other:?}"),
        }
    }
    assert_eq!(store.head_position().unwrap(), 0);
}

fn read_all_pages_in_order(store: Arc<dyn EventStore>) {
    for n in 0..25 {
        store
            .append(
                &format!("s{}", n % 3),
                ExpectedRevision::Any,
                vec![event("t", &format!("{{\"n\":{n}}}"))],
            )
            .unwrap();
    }
    let mut next = 0;
    let mut seen = Vec::new();
    loop {
        let page = store.read_all(next, 7).unwrap();
        if page.is_empty() {
            break;
        }
        assert!(page.len() <= 7);
        next = page.last().unwrap().global_position + 1;
        seen.extend(page.into_iter().map(|event| event.global_position));
    }
    assert_eq!(seen, (1..=25).collect::<Vec<_>>());
    assert!(store.read_all(26, 10).unwrap().is_empty());
}

fn read_stream_from_revision(store: Arc<dyn EventStore>) {
    for n in 0..5 {
        store
            .append(
                "x",
                ExpectedRevision::Any,
                vec![event("t", &format!("{{\"n\":{n}}}"))],
            )
            .unwrap();
        store
            .append("y", ExpectedRevision::Any, vec![event("t", "{}")])
            .unwrap();
    }
    let events = store.read_stream("x", 2).unwrap();
    assert_eq!(
        events
            .iter()
            .map(|event| event.stream_revision)
            .collect::<Vec<_>>(),
        vec![2, 3, 4]
    );
    assert_eq!(events[0].payload, "{\"n\":2}");
    assert!(store.read_stream("none", 0).unwrap().is_empty());
}

fn envelope_round_trips(store: Arc<dyn EventStore>) {
    let mut sent = event(
        "payment.succeeded",
        "{\"amount\":{\"amount_minor\":1234,\"currency\":\"CNY\"},\"note\":\"äö€\"}",
    );
    sent.correlation_id = Some(uuid::Uuid::new_v4());
    sent.causation_id = Some(uuid::Uuid::new_v4());
    sent.schema_version = 3;
    let before = chrono::Utc::now() - chrono::Duration::seconds(1);
    store
        .append("s", ExpectedRevision::Any, vec![sent.clone()])
        .unwrap();
    let stored = store.read_all(0, 1).unwrap().remove(0);
    assert_eq!(stored.event_id, sent.event_id);
    assert_eq!(stored.event_type, sent.event_type);
    assert_eq!(stored.schema_version, 3);
    assert_eq!(stored.correlation_id, sent.correlation_id);
    assert_eq!(stored.causation_id, sent.causation_id);
    assert_eq!(
        stored.payload, sent.payload,
        "payload bytes are kept exactly"
    );
    assert!(
        stored.recorded_at >= before
            && stored.recorded_at <= chrono::Utc::now() + chrono::Duration::seconds(1)
    );
    assert_eq!(stored.prev_hash, crate::chain::GENESIS_HASH);
    assert_eq!(
        stored.hash,
        crate::chain::compute_hash(&stored.prev_hash, &stored)
    );
    assert_eq!(store.read_stream("s", 0).unwrap()[0], stored);
}

fn concurrent_appends_are_gap_free(store: Arc<dyn EventStore>) {
    const N_THREADS: usize = 8;
    const N_APPENDS: usize = 50;
    let threads: Vec<_> = (0..N_THREADS)
        .map(|thread_idx| {
            let store = store.clone();
            std::thread::spawn(move || {
                (0..N_APPENDS)
                    .map(|append_idx| {
                        let stream_id = format!("t{thread_idx}-{append_idx}");
                        store
                            .append(
                                &stream_id,
                                ExpectedRevision::NoStream,
                                vec![event("t", "{}"), event("t", "{}")],
                            )
                            .unwrap()
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let mut positions: Vec<u64> = Vec::new();
    for thread in threads {
        for outcome in thread.join().unwrap() {
            assert_eq!(
                outcome.last_position,
                outcome.first_position + 1,
                "a batch is contiguous"
            );
            positions.extend([outcome.first_position, outcome.last_position]);
        }
    }
    positions.sort_unstable();
    let total = (N_THREADS * N_APPENDS * 2) as u64;
    assert_eq!(positions, (1..=total).collect::<Vec<_>>());
    assert_eq!(store.head_position().unwrap(), total);
    store.verify_chain().unwrap();
}

/// Many writers create the same stream at once, each also creating a stream of its own: one
/// creation of the shared stream wins, every other is refused (naming the winner's revision)
/// without taking the appends batched with it down, and the log stays one gap-free chain.
fn concurrent_creations_of_one_stream_admit_one(store: Arc<dyn EventStore>) {
    const N_THREADS: usize = 16;
    let threads: Vec<_> = (0..N_THREADS)
        .map(|thread_idx| {
            let store = store.clone();
            std::thread::spawn(move || {
                let shared = store.append(
                    "created-once",
                    ExpectedRevision::NoStream,
                    vec![event("t", "{}"), event("t", "{}")],
                );
                let own = store
                    .append(
                        &format!("own-{thread_idx}"),
                        ExpectedRevision::NoStream,
                        vec![event("t", "{}")],
                    )
                    .unwrap();
                (shared, own)
            })
        })
        .collect();
    let mut n_won = 0;
    for thread in threads {
        let (shared, own) = thread.join().unwrap();
        assert_eq!(own.last_revision, 0);
        match shared {
            Ok(outcome) => {
                assert_eq!(outcome.last_revision, 1);
                n_won += 1;
            }
            Err(StoreError::WrongExpectedRevision {
                actual: Some(1), ..
            }) => {}
            other => panic!("expected WrongExpectedRevision naming revision 1, got {other:?}"),
        }
    }
    assert_eq!(n_won, 1, "exactly one creation of the shared stream wins");
    assert_eq!(store.read_stream("created-once", 0).unwrap().len(), 2);
    assert_eq!(store.head_position().unwrap(), 2 + N_THREADS as u64);
    assert_eq!(store.verify_chain().unwrap().n_events, 2 + N_THREADS as u64);
}

fn concurrent_exact_appends_to_one_stream_serialize(store: Arc<dyn EventStore>) {
    store
        .append(
            "counter",
            ExpectedRevision::NoStream,
            vec![event("t", "{}")],
        )
        .unwrap();
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || {
                let mut n_won = 0;
                for _ in 0..200 {
                    let last = store
                        .read_stream("counter", 0)
                        .unwrap()
                        .last()
                        .unwrap()
                        .stream_revision;
                    match store.append(
                        "counter",
                        ExpectedRevision::Exact(last),
                        vec![event("t", "{}")],
                    ) {
                        Ok(_) => n_won += 1,
                        Err(StoreError::WrongExpectedRevision { .. }) => {}
                        Err(other) => panic!("{other}"),
                    }
                    if n_won == 10 {
                        break;
                    }
                }
                n_won
            })
        })
        .collect();
    let n_won: usize = threads
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .sum();
    let revisions: Vec<u64> = store
        .read_stream("counter", 0)
        .unwrap()
        .iter()
        .map(|event| event.stream_revision)
        .collect();
    assert_eq!(
        revisions,
        (0..=n_won as u64).collect::<Vec<_>>(),
        "every win appended exactly one revision"
    );
}

fn subscription_catches_up_then_follows_live(store: Arc<dyn EventStore>) {
    for _ in 0..10 {
        store
            .append("before", ExpectedRevision::Any, vec![event("t", "{}")])
            .unwrap();
    }
    let mut subscription = Subscription::new(store.clone(), 4);
    let writer = {
        let store = store.clone();
        std::thread::spawn(move || {
            for _ in 0..20 {
                store
                    .append("live", ExpectedRevision::Any, vec![event("t", "{}")])
                    .unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
    };
    let mut positions = Vec::new();
    while positions.len() < 27 {
        let event = subscription
            .next_timeout(Duration::from_secs(10))
            .unwrap()
            .expect("live events arrive");
        positions.push(event.global_position);
    }
    writer.join().unwrap();
    assert_eq!(positions, (4..=30).collect::<Vec<_>>());
    assert!(subscription
        .next_timeout(Duration::from_millis(50))
        .unwrap()
        .is_none());
}

fn chain_verifies(store: Arc<dyn EventStore>) {
    assert_eq!(store.verify_chain().unwrap().n_events, 0);
    for n in 0..30 {
        store
            .append(
                &format!("s{}", n % 4),
                ExpectedRevision::Any,
                vec![event("t", "{}")],
            )
            .unwrap();
    }
    let report = store.verify_chain().unwrap();
    assert_eq!(report.n_events, 30);
    let events = store.read_all(0, 100).unwrap();
    assert_eq!(report.head_hash, events.last().unwrap().hash);
    for pair in events.windows(2) {
        assert_eq!(
            pair[1].prev_hash, pair[0].hash,
            "each event links to the one before"
        );
    }
}

fn async_appends_follow_the_same_rules(store: Arc<dyn EventStore>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        // Many appends in flight from one thread: each lands whole, positions gap-free.
        let futures: Vec<_> = (0..100)
            .map(|n| {
                store.append_async(
                    &format!("async-{n}"),
                    ExpectedRevision::NoStream,
                    vec![event("t", "{}"), event("t", "{}")],
                )
            })
            .collect();
        let mut positions = Vec::new();
        for future in futures {
            let outcome = future.await.unwrap();
            positions.extend(outcome.first_position..=outcome.last_position);
        }
        positions.sort_unstable();
        assert_eq!(positions, (1..=200).collect::<Vec<_>>());
        match store
            .append_async(
                "async-0",
                ExpectedRevision::NoStream,
                vec![event("t", "{}")],
            )
            .await
        {
            Err(StoreError::WrongExpectedRevision {
                actual: Some(1), ..
            }) => {}
            other => panic!("expected WrongExpectedRevision, got {other:?}"),
        }
        match store
            .append_async("", ExpectedRevision::Any, vec![event("t", "{}")])
            .await
        {
            Err(StoreError::InvalidAppend { .. }) => {}
            other => panic!("expected InvalidAppend, got {other:?}"),
        }
    });
    // Acknowledged means readable.
    assert_eq!(store.head_position().unwrap(), 200);
}

/// Two stores on one shared log, as two nodes see it: 4 writers on each append concurrently
/// (`appends_per_writer` appends of `events_per_append` events, each to a new stream), which
/// must form one gap-free chain that verifies from either node; then both append to one stream
/// expecting revision 0, and exactly one wins while the other gets `WrongExpectedRevision`;
/// each node reads what the other wrote.
pub fn two_nodes_share_one_chain(
    node_a: Arc<dyn EventStore>,
    node_b: Arc<dyn EventStore>,
    appends_per_writer: usize,
    events_per_append: usize,
) {
    const WRITERS_PER_NODE: usize = 4;
    let nodes = [node_a, node_b];
    let writers: Vec<_> = nodes
        .iter()
        .enumerate()
        .flat_map(|(node_idx, node)| {
            (0..WRITERS_PER_NODE).map(move |writer_idx| {
                let node = node.clone();
                std::thread::spawn(move || {
                    for append_idx in 0..appends_per_writer {
                        let events = (0..events_per_append).map(|_| event("t", "{}")).collect();
                        node.append(
                            &format!("n{node_idx}-w{writer_idx}-{append_idx}"),
                            ExpectedRevision::NoStream,
                            events,
                        )
                        .unwrap();
                    }
                })
            })
        })
        .collect();
    writers
        .into_iter()
        .for_each(|writer| writer.join().unwrap());
    let n_events = (2 * WRITERS_PER_NODE * appends_per_writer * events_per_append) as u64;
    assert_eq!(nodes[0].head_position().unwrap(), n_events);
    assert_eq!(nodes[1].verify_chain().unwrap().n_events, n_events);

    nodes[0]
        .append("shared", ExpectedRevision::NoStream, vec![event("t", "{}")])
        .unwrap();
    let results: Vec<Result<_, StoreError>> = nodes
        .iter()
        .map(|node| {
            let node = node.clone();
            std::thread::spawn(move || {
                node.append("shared", ExpectedRevision::Exact(0), vec![event("t", "{}")])
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|appender| appender.join().unwrap())
        .collect();
    assert_eq!(
        results.iter().filter(|result| result.is_ok()).count(),
        1,
        "{results:?}"
    );
    assert!(results
        .iter()
        .any(|result| matches!(result, Err(StoreError::WrongExpectedRevision { .. }))));
    for node in &nodes {
        assert_eq!(node.read_stream("shared", 0).unwrap().len(), 2);
    }
}
