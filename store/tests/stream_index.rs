//! The embedded store's stream index file (`streams.sqlite3`): derived from the log, refilled
//! when it is missing, from another log or ahead of the log, and read together with the events
//! not yet in it, by the writing process and by read-only readers alike.

use std::path::Path;
use std::sync::Arc;

use paycenter_store::conformance::event;
use paycenter_store::sqlite::{DB_FILE_NAME, FILTER_FILE_NAME, INDEX_FILE_NAME};
use paycenter_store::{EventStore, ExpectedRevision, SqliteConfig, SqliteStore, StoreError};

/// A store whose stream index is filled every 4 durable events, the tail holding at most 16.
fn open_small_fills(dir: &Path) -> SqliteStore {
    let config = SqliteConfig {
        stream_index_fill_events: 4,
        max_stream_tail_events: 16,
        ..SqliteConfig::default()
    };
    SqliteStore::open(dir, config).unwrap()
}

/// Appends `n_rounds` events to each of streams `a`, `b`, `c`, one at a time, expecting the
/// exact revision each time.
fn append_rounds(store: &SqliteStore, first_round: u64, n_rounds: u64) {
    for round in first_round..first_round + n_rounds {
        for stream_id in ["a", "b", "c"] {
            let expected = if round == 0 {
                ExpectedRevision::NoStream
            } else {
                ExpectedRevision::Exact(round - 1)
            };
            store
                .append(
                    stream_id,
                    expected,
                    vec![event("t", &format!("{{\"round\":{round}}}"))],
                )
                .unwrap();
        }
    }
}

/// Creates `n` streams `{prefix}{i}`, one event each.
fn create_streams(store: &SqliteStore, prefix: &str, n: usize) {
    for idx in 0..n {
        store
            .append(
                &format!("{prefix}{idx}"),
                ExpectedRevision::NoStream,
                vec![event("t", "{}")],
            )
            .unwrap();
    }
}

/// Creating `stream_id`, which holds one event, again must be refused.
fn assert_not_created_twice(store: &SqliteStore, stream_id: &str) {
    let outcome = store.append(
        stream_id,
        ExpectedRevision::NoStream,
        vec![event("t", "{}")],
    );
    assert!(
        matches!(
            outcome,
            Err(StoreError::WrongExpectedRevision {
                actual: Some(0),
                ..
            })
        ),
        "{stream_id} created twice: {outcome:?}"
    );
}

/// Removes `dir`'s files named `base` + each suffix, where they exist.
fn remove_files(dir: &Path, base: &str, suffixes: &[&str]) {
    for suffix in suffixes {
        let _ = std::fs::remove_file(dir.join(format!("{base}{suffix}")));
    }
}

/// Puts the stopped SQLite database `base` of `from` (its file and WAL) in place of `to`'s,
/// whose files, shared memory included, are removed first.
fn replace_database(from: &Path, to: &Path, base: &str) {
    remove_files(to, base, &["", "-wal", "-shm"]);
    for suffix in ["", "-wal"] {
        let name = format!("{base}{suffix}");
        if from.join(&name).exists() {
            std::fs::copy(from.join(&name), to.join(&name)).unwrap();
        }
    }
}

/// Each stream read whole and from a middle revision, checked against the log itself.
fn assert_streams_read_as_logged(store: &dyn EventStore, n_rounds: u64) {
    let log = store.read_all(1, 100_000).unwrap();
    for stream_id in ["a", "b", "c"] {
        let expected: Vec<_> = log
            .iter()
            .filter(|event| event.stream_id == stream_id)
            .cloned()
            .collect();
        assert_eq!(expected.len() as u64, n_rounds, "{stream_id} in the log");
        assert_eq!(store.read_stream(stream_id, 0).unwrap(), expected);
        let from = n_rounds / 2;
        assert_eq!(
            store.read_stream(stream_id, from).unwrap(),
            expected[from as usize..].to_vec(),
            "{stream_id} from revision {from}"
        );
    }
}

/// Stream heads known only to the index file still decide expected revisions.
fn assert_heads_enforced(store: &SqliteStore, head_revision: u64) {
    assert!(matches!(
        store.append("a", ExpectedRevision::NoStream, vec![event("t", "{}")]),
        Err(StoreError::WrongExpectedRevision { actual: Some(actual), .. }) if actual == head_revision
    ));
    assert!(matches!(
        store.append(
            "b",
            ExpectedRevision::Exact(head_revision + 1),
            vec![event("t", "{}")]
        ),
        Err(StoreError::WrongExpectedRevision { .. })
    ));
}

#[test]
fn streams_split_between_the_index_file_and_the_tail_read_whole_and_keep_their_heads() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_small_fills(dir.path());
    append_rounds(&store, 0, 30);
    assert_streams_read_as_logged(&store, 30);
    assert_heads_enforced(&store, 29);
    // A reader in another process (no tail in memory) reads the same, by the index file and a
    // scan of what lies after it.
    let reader = SqliteStore::open_read_only(dir.path()).unwrap();
    assert_streams_read_as_logged(&reader, 30);
    drop(store);
    let store = open_small_fills(dir.path());
    assert_heads_enforced(&store, 29);
    append_rounds(&store, 30, 5);
    assert_streams_read_as_logged(&store, 35);
    assert_streams_read_as_logged(&reader, 35);
}

#[test]
fn a_missing_index_file_is_refilled_from_the_log() {
    let dir = tempfile::tempdir().unwrap();
    append_rounds(&open_small_fills(dir.path()), 0, 20);
    remove_files(dir.path(), INDEX_FILE_NAME, &["", "-wal", "-shm"]);
    // A reader before any writer rebuilt it scans the log.
    let reader = SqliteStore::open_read_only(dir.path()).unwrap();
    assert_streams_read_as_logged(&reader, 20);
    let store = open_small_fills(dir.path());
    assert!(dir.path().join(INDEX_FILE_NAME).exists());
    assert_streams_read_as_logged(&store, 20);
    assert_heads_enforced(&store, 19);
}

#[test]
fn an_index_file_that_is_not_a_database_is_replaced_not_a_reason_to_stop() {
    let dir = tempfile::tempdir().unwrap();
    append_rounds(&open_small_fills(dir.path()), 0, 20);
    remove_files(dir.path(), INDEX_FILE_NAME, &["-wal", "-shm"]);
    std::fs::write(dir.path().join(INDEX_FILE_NAME), vec![0x5a; 5_000]).unwrap();
    let reader = SqliteStore::open_read_only(dir.path()).unwrap();
    assert_streams_read_as_logged(&reader, 20);
    let store = open_small_fills(dir.path());
    assert_streams_read_as_logged(&store, 20);
    assert_heads_enforced(&store, 19);
}

#[test]
fn an_index_file_of_another_log_is_refilled_from_this_one() {
    let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    append_rounds(&open_small_fills(ours.path()), 0, 20);
    {
        // Another log whose streams have other names and lengths.
        create_streams(&open_small_fills(theirs.path()), "other-", 40);
    }
    replace_database(theirs.path(), ours.path(), INDEX_FILE_NAME);
    let indexed_through: i64 = rusqlite::Connection::open(ours.path().join(INDEX_FILE_NAME))
        .unwrap()
        .query_row("SELECT position FROM indexed_through", [], |row| row.get(0))
        .unwrap();
    assert!(
        indexed_through > 20,
        "the copied index names events of the other log"
    );
    // A reader before any writer refilled it does not trust it: it scans the log.
    let reader = SqliteStore::open_read_only(ours.path()).unwrap();
    assert_streams_read_as_logged(&reader, 20);
    let store = open_small_fills(ours.path());
    assert_streams_read_as_logged(&store, 20);
    assert_heads_enforced(&store, 19);
    assert!(store.read_stream("other-3", 0).unwrap().is_empty());
}

#[test]
fn an_index_file_ahead_of_a_restored_log_is_refilled() {
    let dir = tempfile::tempdir().unwrap();
    let backup = tempfile::tempdir().unwrap();
    append_rounds(&open_small_fills(dir.path()), 0, 10);
    // The log's files are copied while stopped...
    replace_database(dir.path(), backup.path(), DB_FILE_NAME);
    // ...the log grows and the index follows it...
    append_rounds(&open_small_fills(dir.path()), 10, 10);
    // ...and the copy is put back: the index names events the log no longer has.
    replace_database(backup.path(), dir.path(), DB_FILE_NAME);
    let store = open_small_fills(dir.path());
    assert_eq!(store.head_position().unwrap(), 30);
    assert_streams_read_as_logged(&store, 10);
    assert_heads_enforced(&store, 9);
    append_rounds(&store, 10, 1);
    assert_streams_read_as_logged(&store, 11);
}

/// Writers that each extend their own stream with exact revisions, and readers that check
/// every read of a stream is whole (revisions 0..n, no gap, no repeat) and never shorter than
/// what was acknowledged before the read began, while fills move events out of the tail.
#[test]
fn concurrent_reads_see_whole_streams_while_fills_move_them() {
    const WRITERS: usize = 4;
    const APPENDS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(open_small_fills(dir.path()));
    let acknowledged: Arc<Vec<std::sync::atomic::AtomicU64>> = Arc::new(
        (0..WRITERS)
            .map(|_| std::sync::atomic::AtomicU64::new(0))
            .collect(),
    );
    let writers: Vec<_> = (0..WRITERS)
        .map(|writer_idx| {
            let (store, acknowledged) = (store.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                for revision in 0..APPENDS {
                    let expected = match revision {
                        0 => ExpectedRevision::NoStream,
                        _ => ExpectedRevision::Exact(revision - 1),
                    };
                    store
                        .append(&format!("w{writer_idx}"), expected, vec![event("t", "{}")])
                        .unwrap();
                    acknowledged[writer_idx]
                        .store(revision + 1, std::sync::atomic::Ordering::SeqCst);
                }
            })
        })
        .collect();
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (store, acknowledged) = (store.clone(), acknowledged.clone());
            std::thread::spawn(move || {
                let mut n_reads = 0;
                loop {
                    let mut all_done = true;
                    for writer_idx in 0..WRITERS {
                        let at_least =
                            acknowledged[writer_idx].load(std::sync::atomic::Ordering::SeqCst);
                        all_done &= at_least == APPENDS;
                        let events = store.read_stream(&format!("w{writer_idx}"), 0).unwrap();
                        assert!(
                            events.len() as u64 >= at_least,
                            "an acknowledged event is missing"
                        );
                        for (idx, event) in events.iter().enumerate() {
                            assert_eq!(event.stream_revision, idx as u64, "revisions are whole");
                        }
                        n_reads += 1;
                    }
                    if all_done {
                        return n_reads;
                    }
                }
            })
        })
        .collect();
    for writer in writers {
        writer.join().unwrap();
    }
    for reader in readers {
        assert!(reader.join().unwrap() > 0);
    }
}

/// A stream created a moment ago is refused a second creation, whether the writer finds it in
/// the tail or in the index file, with 64 writers and a fill every two events. (The case of a
/// fill landing between two lookups of one batch is made deterministic by the unit test
/// `a_head_lookup_after_a_fill_sees_what_the_fill_moved`.)
#[test]
fn a_stream_is_not_created_twice_while_fills_move_streams_into_the_index_file() {
    const THREADS: usize = 64;
    const STREAMS_PER_THREAD: usize = 300;
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(
        SqliteStore::open(
            dir.path(),
            SqliteConfig {
                stream_index_fill_events: 2,
                max_stream_tail_events: 64,
                ..SqliteConfig::default()
            },
        )
        .unwrap(),
    );
    let threads: Vec<_> = (0..THREADS)
        .map(|thread_idx| {
            let store = store.clone();
            std::thread::spawn(move || {
                for n in 0..STREAMS_PER_THREAD {
                    store
                        .append(
                            &format!("t{thread_idx}-{n}"),
                            ExpectedRevision::NoStream,
                            vec![event("t", "{}")],
                        )
                        .unwrap();
                    // One created a few appends ago: in the tail, or just moved out of it.
                    let again = format!("t{thread_idx}-{}", n.saturating_sub(3));
                    assert_not_created_twice(&store, &again);
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    assert_eq!(
        store.head_position().unwrap(),
        (THREADS * STREAMS_PER_THREAD) as u64
    );
}

/// Streams the index file held before the open: once the filter of known streams is built from
/// the file, each must still be found (a stream the filter wrongly called new would be created
/// twice), and new streams are created.
#[test]
fn streams_in_the_index_file_before_the_open_are_found_by_the_filter_of_known_streams() {
    const N_STREAMS: usize = 3_000;
    let dir = tempfile::tempdir().unwrap();
    create_streams(&open_small_fills(dir.path()), "old-", N_STREAMS);
    // The close saved the filter; without it (a process killed before its first save) the
    // open scans the index file.
    std::fs::remove_file(dir.path().join(FILTER_FILE_NAME)).unwrap();
    let store = open_small_fills(dir.path());
    // The scan runs on the indexer's thread as soon as it is idle: milliseconds here.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !store.stream_filter_ready() {
        assert!(
            std::time::Instant::now() < deadline,
            "the filter was not built"
        );
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    for idx in 0..N_STREAMS {
        assert_not_created_twice(&store, &format!("old-{idx}"));
    }
    create_streams(&store, "new-", 100);
    store
        .append("old-7", ExpectedRevision::Exact(0), vec![event("t", "{}")])
        .unwrap();
}

/// The filter saved by an earlier process answers from the open, without a scan: one saved at a
/// close, older than the index file (as after a kill between two saves), has the streams of
/// the log's events after it added; one damaged or of another log is ignored and the index is
/// scanned. In every case, no stream the index holds is created twice.
#[test]
fn a_saved_filter_of_known_streams_answers_from_the_open_and_never_misses_a_stream() {
    const N_STREAMS: usize = 500;
    let dir = tempfile::tempdir().unwrap();
    let filter_path = dir.path().join(FILTER_FILE_NAME);
    create_streams(&open_small_fills(dir.path()), "first-", N_STREAMS);
    let saved_after_first = std::fs::read(&filter_path).expect("the close saved the filter");
    {
        let store = open_small_fills(dir.path());
        assert!(store.stream_filter_ready(), "read from its file at open");
        create_streams(&store, "second-", N_STREAMS);
    }
    // The filter of the first close: the second process's streams are only in the log and the
    // index file after its position.
    std::fs::write(&filter_path, &saved_after_first).unwrap();
    let store = open_small_fills(dir.path());
    assert!(store.stream_filter_ready(), "read from its file at open");
    for prefix in ["first-", "second-"] {
        for idx in 0..N_STREAMS {
            assert_not_created_twice(&store, &format!("{prefix}{idx}"));
        }
    }
    create_streams(&store, "third-", 10);
    drop(store);

    // Damaged: one bit flipped in the blocks.
    let mut damaged = std::fs::read(&filter_path).unwrap();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x10;
    std::fs::write(&filter_path, &damaged).unwrap();
    let store = open_small_fills(dir.path());
    for idx in 0..N_STREAMS {
        assert_not_created_twice(&store, &format!("second-{idx}"));
    }
    drop(store);

    // Of another log: a store whose events differ, its filter copied over.
    let other = tempfile::tempdir().unwrap();
    create_streams(&open_small_fills(other.path()), "other-", 10);
    std::fs::copy(other.path().join(FILTER_FILE_NAME), &filter_path).unwrap();
    let store = open_small_fills(dir.path());
    for prefix in ["first-", "second-", "third-"] {
        assert_not_created_twice(&store, &format!("{prefix}7"));
    }
    create_streams(&store, "other-", 10);
}
