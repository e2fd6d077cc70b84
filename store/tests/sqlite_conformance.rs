//! The conformance suite against the embedded SQLite backend, each store in a fresh directory.

use std::sync::{Arc, Mutex};

use paycenter_store::{conformance, EventStore, SqliteConfig, SqliteStore};

#[test]
fn sqlite_store_passes_the_conformance_suite() {
    let dirs = Mutex::new(Vec::new());
    let factory = || -> Arc<dyn EventStore> {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
        dirs.lock().unwrap().push(dir);
        Arc::new(store)
    };
    conformance::run_all(&factory);
}

/// The idempotency index lives in the writer's memory: a reopened store must rebuild it, or a
/// retried command would append its events twice.
#[test]
fn a_reopened_store_still_recognizes_every_stored_event_id() {
    use paycenter_store::conformance::event;
    use paycenter_store::{EventStore, ExpectedRevision, SqliteConfig, SqliteStore, StoreError};

    let dir = tempfile::tempdir().unwrap();
    let (first, second) = (event("t", "{\"n\":1}"), event("t", "{\"n\":2}"));
    {
        let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
        store
            .append("other", ExpectedRevision::NoStream, vec![event("t", "{}")])
            .unwrap();
        store
            .append(
                "a",
                ExpectedRevision::NoStream,
                vec![first.clone(), second.clone()],
            )
            .unwrap();
    }
    let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
    let replay = store
        .append(
            "a",
            ExpectedRevision::NoStream,
            vec![first.clone(), second.clone()],
        )
        .unwrap();
    assert!(replay.already_stored);
    assert_eq!((replay.first_position, replay.last_position), (2, 3));
    // A stored id with a new one, or a stored id under another stream, is a conflict.
    assert!(matches!(
        store.append(
            "a",
            ExpectedRevision::Any,
            vec![first.clone(), event("t", "{}")]
        ),
        Err(StoreError::EventIdConflict { .. })
    ));
    assert!(matches!(
        store.append("b", ExpectedRevision::Any, vec![second]),
        Err(StoreError::EventIdConflict { .. })
    ));
    assert_eq!(store.head_position().unwrap(), 3);
}

#[test]
fn event_ids_are_recognized_within_the_window_and_memory_stays_bounded() {
    use paycenter_store::conformance::event;
    use paycenter_store::{EventStore, ExpectedRevision, SqliteConfig, SqliteStore, StoreError};

    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        event_id_window: 3,
        ..SqliteConfig::default()
    };
    let events: Vec<_> = (0..5)
        .map(|n| event("t", &format!("{{\"n\":{n}}}")))
        .collect();
    {
        let store = SqliteStore::open(dir.path(), config.clone()).unwrap();
        for (n, event) in events.iter().enumerate() {
            store
                .append(
                    &format!("s{n}"),
                    ExpectedRevision::NoStream,
                    vec![event.clone()],
                )
                .unwrap();
        }
        // The newest ids are recognized while the store runs...
        let replay = store
            .append("s4", ExpectedRevision::NoStream, vec![events[4].clone()])
            .unwrap();
        assert!(replay.already_stored);
    }
    // ...and after it reopens, from the tail it loads.
    let store = SqliteStore::open(dir.path(), config).unwrap();
    let replay = store
        .append("s2", ExpectedRevision::NoStream, vec![events[2].clone()])
        .unwrap();
    assert!(replay.already_stored);
    assert_eq!(replay.first_position, 3);
    // An id older than the window meets its stream's revision instead: still refused.
    let old = store.append("s0", ExpectedRevision::NoStream, vec![events[0].clone()]);
    assert!(
        matches!(old, Err(StoreError::WrongExpectedRevision { .. })),
        "{old:?}"
    );
    assert_eq!(store.head_position().unwrap(), 5, "nothing appended twice");
}

#[test]
fn a_reopened_store_records_no_instant_before_the_last_one() {
    use paycenter_store::conformance::event;
    use paycenter_store::ExpectedRevision;

    let dir = tempfile::tempdir().unwrap();
    {
        let store = SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap();
        store
            .append("a", ExpectedRevision::NoStream, vec![event("t", "{}")])
            .unwrap();
    }
    // The last event recorded an hour ahead of this clock (a clock set back since): the next
    // one must not be recorded before it. (The change breaks the chain, so this store is
    // opened without verifying it.)
    let ahead_us = chrono::Utc::now().timestamp_micros() + 3_600_000_000;
    rusqlite::Connection::open(dir.path().join("events.sqlite3"))
        .unwrap()
        .execute(
            "UPDATE events SET recorded_at_us = ?1 WHERE global_position = 1",
            [ahead_us],
        )
        .unwrap();
    let config = SqliteConfig {
        verify_on_open: false,
        ..SqliteConfig::default()
    };
    let store = SqliteStore::open(dir.path(), config).unwrap();
    store
        .append("b", ExpectedRevision::NoStream, vec![event("t", "{}")])
        .unwrap();
    let events = store.read_all(1, 10).unwrap();
    assert_eq!(events.len(), 2);
    assert!(events[1].recorded_at.timestamp_micros() >= ahead_us);
}
