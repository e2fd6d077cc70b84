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

/// The same suite with the stream index filled every few events, so reads, stream heads and
/// revision checks meet streams split between the index file and the tail, while fills run.
#[test]
fn sqlite_store_passes_the_conformance_suite_with_constant_index_fills() {
    let dirs = Mutex::new(Vec::new());
    let factory = || -> Arc<dyn EventStore> {
        let dir = tempfile::tempdir().unwrap();
        let config = SqliteConfig {
            stream_index_fill_events: 3,
            max_stream_tail_events: 8,
            ..SqliteConfig::default()
        };
        let store = SqliteStore::open(dir.path(), config).unwrap();
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

/// SQLite's checkpoints copy the WAL into the main file at `wal_autocheckpoint_pages` and the
/// WAL restarts, so it stays bounded under a steady stream of appends. Without checkpoints this
/// log's WAL would pass 30 MB.
#[test]
fn the_wal_stays_bounded_while_checkpoints_copy_it_into_the_main_file() {
    use paycenter_store::conformance::event;
    use paycenter_store::sqlite::DB_FILE_NAME;
    use paycenter_store::ExpectedRevision;

    const THRESHOLD_FRAMES: u32 = 1_024;
    const N_APPENDS: usize = 4_000;
    let dir = tempfile::tempdir().unwrap();
    let config = SqliteConfig {
        wal_autocheckpoint_pages: THRESHOLD_FRAMES,
        ..SqliteConfig::default()
    };
    let payload = format!("{{\"pad\":\"{}\"}}", "x".repeat(4_000));
    let wal_path = dir.path().join(format!("{DB_FILE_NAME}-wal"));
    let main_path = dir.path().join(DB_FILE_NAME);
    let mut largest_wal_bytes = 0;
    {
        let store = Arc::new(SqliteStore::open(dir.path(), config.clone()).unwrap());
        // Eight writers, so batches form as they do under load.
        let threads: Vec<_> = (0..8)
            .map(|thread| {
                let store = store.clone();
                let payload = payload.clone();
                std::thread::spawn(move || {
                    for n in 0..N_APPENDS / 8 {
                        store
                            .append(
                                &format!("s{thread}-{n}"),
                                ExpectedRevision::NoStream,
                                vec![event("t", &payload)],
                            )
                            .unwrap();
                    }
                })
            })
            .collect();
        while !threads.iter().all(|thread| thread.is_finished()) {
            let wal_bytes = std::fs::metadata(&wal_path).map_or(0, |metadata| metadata.len());
            largest_wal_bytes = largest_wal_bytes.max(wal_bytes);
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        for thread in threads {
            thread.join().unwrap();
        }
        assert_eq!(store.head_position().unwrap(), N_APPENDS as u64);
        let main_bytes = std::fs::metadata(&main_path).unwrap().len();
        assert!(
            main_bytes > 10 << 20,
            "the events reached the main file while the store ran ({main_bytes} bytes)"
        );
    }
    // About 4 KiB per append: 16 MB of events, more than that in WAL frames. The WAL restarts
    // after each checkpoint, so its file stays within a few thresholds.
    let bound_bytes = 4 * u64::from(THRESHOLD_FRAMES) * 4_096;
    assert!(
        largest_wal_bytes <= bound_bytes,
        "the WAL reached {largest_wal_bytes} bytes (bound {bound_bytes})"
    );
    let store = SqliteStore::open(dir.path(), config).unwrap();
    assert_eq!(store.head_position().unwrap(), N_APPENDS as u64);
    let all = store.read_all(1, N_APPENDS).unwrap();
    assert_eq!(all.len(), N_APPENDS);
}

/// Parked threads and tasks appending at once are all answered, each after its append is
/// durable: threads past the syncer's few are woken by the answerer thread, tasks by the
/// syncer, and a refused append is answered as refused.
#[test]
fn parked_threads_and_tasks_appending_together_are_all_answered() {
    use paycenter_store::conformance::event;
    use paycenter_store::{ExpectedRevision, StoreError};

    const N_THREADS: usize = 24;
    const N_TASKS: usize = 24;
    const APPENDS_EACH: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path(), SqliteConfig::default()).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let tasks: Vec<_> = (0..N_TASKS)
        .map(|task_idx| {
            let store = store.clone();
            runtime.spawn(async move {
                for append_idx in 0..APPENDS_EACH {
                    let stream_id = format!("task{task_idx}-{append_idx}");
                    let outcome = store
                        .append_async(
                            &stream_id,
                            ExpectedRevision::NoStream,
                            vec![event("t", "{}")],
                        )
                        .await
                        .unwrap();
                    assert!(store.head_position().unwrap() >= outcome.last_position);
                }
            })
        })
        .collect();
    let threads: Vec<_> = (0..N_THREADS)
        .map(|thread_idx| {
            let store = store.clone();
            std::thread::spawn(move || {
                for append_idx in 0..APPENDS_EACH {
                    let stream_id = format!("thread{thread_idx}-{append_idx}");
                    let outcome = store
                        .append(
                            &stream_id,
                            ExpectedRevision::NoStream,
                            vec![event("t", "{}")],
                        )
                        .unwrap();
                    // Answered only once durable: the durable head is already there.
                    assert!(store.head_position().unwrap() >= outcome.last_position);
                    let again = store.append(
                        &stream_id,
                        ExpectedRevision::NoStream,
                        vec![event("t", "{}")],
                    );
                    assert!(
                        matches!(again, Err(StoreError::WrongExpectedRevision { .. })),
                        "{again:?}"
                    );
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    runtime.block_on(async {
        for task in tasks {
            task.await.unwrap();
        }
    });
    assert_eq!(
        store.head_position().unwrap(),
        ((N_THREADS + N_TASKS) * APPENDS_EACH) as u64
    );
}
