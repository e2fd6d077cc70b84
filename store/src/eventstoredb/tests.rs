//! The backend's logic on an in-memory log: the conformance suite, several nodes on one log,
//! lost answers, tampering and leases. The gRPC transport is tested in
//! `store/tests/eventstoredb_conformance.rs` against a real server when one is configured.

use std::sync::Arc;

use super::memory::MemoryLog;
use super::{EventStoreDbStore, DEFAULT_LOG_STREAM};
use crate::conformance::{self, event};
use crate::{EventStore, ExpectedRevision, StoreError};

fn node(log: &Arc<MemoryLog>) -> EventStoreDbStore {
    EventStoreDbStore::open(log.clone(), DEFAULT_LOG_STREAM).unwrap()
}

#[test]
fn passes_the_conformance_suite() {
    conformance::run_all(&|| -> Arc<dyn EventStore> { Arc::new(node(&Arc::default())) });
}

#[test]
fn two_nodes_on_one_log_share_one_gap_free_chain() {
    let log: Arc<MemoryLog> = Arc::default();
    conformance::two_nodes_share_one_chain(Arc::new(node(&log)), Arc::new(node(&log)), 50, 2);
}

#[test]
fn a_lost_answer_is_settled_by_reading_the_log_back() {
    let log: Arc<MemoryLog> = Arc::default();
    let store = node(&log);
    store
        .append("a", ExpectedRevision::NoStream, vec![event("t", "{}")])
        .unwrap();
    log.lose_next_answer();
    let outcome = store
        .append(
            "a",
            ExpectedRevision::Exact(0),
            vec![event("t", "{}"), event("t", "{}")],
        )
        .unwrap();
    assert_eq!(
        (
            outcome.first_position,
            outcome.last_position,
            outcome.last_revision
        ),
        (2, 3, 2)
    );
    assert!(
        !outcome.already_stored,
        "this call wrote them, though its answer was lost"
    );
    // Written once, not twice.
    assert_eq!(store.head_position().unwrap(), 3);
    assert_eq!(store.verify_chain().unwrap().n_events, 3);
}

#[test]
fn a_reopened_node_knows_every_id_and_revision() {
    let log: Arc<MemoryLog> = Arc::default();
    let first = event("t", "{\"n\":1}");
    {
        let store = node(&log);
        store
            .append("a", ExpectedRevision::NoStream, vec![first.clone()])
            .unwrap();
        store
            .append("b", ExpectedRevision::NoStream, vec![event("t", "{}")])
            .unwrap();
    }
    let reopened = node(&log);
    let replay = reopened
        .append("a", ExpectedRevision::NoStream, vec![first])
        .unwrap();
    assert!(replay.already_stored);
    assert_eq!(replay.first_position, 1);
    assert!(matches!(
        reopened.append("a", ExpectedRevision::NoStream, vec![event("t", "{}")]),
        Err(StoreError::WrongExpectedRevision {
            actual: Some(0),
            ..
        })
    ));
}

#[test]
fn tampering_is_refused_with_the_position_named() {
    let log: Arc<MemoryLog> = Arc::default();
    {
        let store = node(&log);
        for _ in 0..3 {
            store
                .append(
                    "a",
                    ExpectedRevision::Any,
                    vec![event("t", "{\"amount\":\"1.00\"}")],
                )
                .unwrap();
        }
    }
    let original = super::LogBackend::read_forward(log.as_ref(), DEFAULT_LOG_STREAM, 1, 1)
        .unwrap()
        .remove(0)
        .data;
    log.overwrite(DEFAULT_LOG_STREAM, 1, original.replace("1.00", "9.00"));
    match EventStoreDbStore::open(log.clone(), DEFAULT_LOG_STREAM) {
        Err(StoreError::Corrupted { position: 2, .. }) => {}
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a tampered log opened"),
    }
    log.overwrite(DEFAULT_LOG_STREAM, 1, "not json".to_owned());
    assert!(matches!(
        EventStoreDbStore::open(log.clone(), DEFAULT_LOG_STREAM),
        Err(StoreError::Corrupted { position: 2, .. })
    ));
}

#[test]
fn a_lease_has_one_holder_until_it_expires() {
    let log: Arc<MemoryLog> = Arc::default();
    let (node_a, node_b) = (node(&log), node(&log));
    assert!(node_a.try_lease("webhook:ntf_1:1", "node-a", 300).unwrap());
    assert!(!node_b.try_lease("webhook:ntf_1:1", "node-b", 300).unwrap());
    assert!(node_a.try_lease("webhook:ntf_1:1", "node-a", 300).unwrap());
    assert!(node_b.try_lease("webhook:ntf_1:2", "node-b", 300).unwrap());
    let node_a = Arc::new(node_a);
    let winners: usize = (0..8)
        .map(|taker_idx| {
            let node_a = node_a.clone();
            std::thread::spawn(move || {
                node_a
                    .try_lease("refund:rf_x", &format!("taker-{taker_idx}"), 60_000)
                    .unwrap() as usize
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|taker| taker.join().unwrap())
        .sum();
    assert_eq!(winners, 1);
    std::thread::sleep(std::time::Duration::from_millis(400));
    assert!(node_b.try_lease("webhook:ntf_1:1", "node-b", 300).unwrap());
    assert!(!node_a.try_lease("webhook:ntf_1:1", "node-a", 300).unwrap());
}

#[test]
fn system_stream_names_are_refused_for_the_log() {
    assert!(EventStoreDbStore::open(Arc::new(MemoryLog::default()), "$all").is_err());
    assert!(EventStoreDbStore::open(Arc::new(MemoryLog::default()), "").is_err());
}
