//! Durability and integrity of the embedded store: a single writer per directory, tampering and
//! lost tails refused with the position named, and acknowledged appends surviving SIGKILL.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paycenter_store::conformance::event;
use paycenter_store::sqlite::DB_FILE_NAME;
use paycenter_store::{EventStore, ExpectedRevision, SqliteConfig, SqliteStore, StoreError};
use rand::Rng;

/// Fills of the stream index every 100 events, so a kill lands inside one as often as not.
fn open(dir: &Path) -> Result<SqliteStore, StoreError> {
    let config = SqliteConfig {
        stream_index_fill_events: 100,
        max_stream_tail_events: 1_000,
        ..SqliteConfig::default()
    };
    SqliteStore::open(dir, config)
}

fn fill(dir: &Path, n_events: usize) {
    let store = open(dir).unwrap();
    for n in 0..n_events {
        store
            .append(
                &format!("s{}", n % 5),
                ExpectedRevision::Any,
                vec![event("t", &format!("{{\"n\":{n}}}"))],
            )
            .unwrap();
    }
}

fn tamper(dir: &Path, sql: &str) {
    let connection = rusqlite::Connection::open(dir.join(DB_FILE_NAME)).unwrap();
    connection.execute_batch(sql).unwrap();
}

fn expect_corrupted_at(dir: &Path, expected_position: u64) -> String {
    match open(dir) {
        Err(StoreError::Corrupted { position, reason }) => {
            assert_eq!(position, expected_position, "{reason}");
            reason
        }
        Err(other) => panic!("expected Corrupted at {expected_position}, got {other}"),
        Ok(_) => panic!("a tampered log was opened"),
    }
}

#[test]
fn a_second_writer_is_refused_and_readers_may_share() {
    let dir = tempfile::tempdir().unwrap();
    let writer = open(dir.path()).unwrap();
    writer
        .append("s", ExpectedRevision::Any, vec![event("t", "{}")])
        .unwrap();
    match open(dir.path()) {
        Err(StoreError::Locked { path }) => assert!(path.ends_with("paycenter.lock")),
        Err(other) => panic!("expected Locked, got {other}"),
        Ok(_) => panic!("two writers opened one directory"),
    }
    let reader = SqliteStore::open_read_only(dir.path()).unwrap();
    assert_eq!(reader.read_all(0, 10).unwrap().len(), 1);
    assert!(matches!(
        reader.append("s", ExpectedRevision::Any, vec![event("t", "{}")]),
        Err(StoreError::ReadOnly)
    ));
    drop(writer);
    let reopened = open(dir.path()).unwrap();
    assert_eq!(reopened.head_position().unwrap(), 1);
}

#[test]
fn a_changed_payload_byte_is_refused_naming_its_position() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 20);
    tamper(
        dir.path(),
        "UPDATE events SET payload = '{\"n\":17}' WHERE global_position = 13",
    );
    let reason = expect_corrupted_at(dir.path(), 13);
    assert!(reason.contains("hash"), "{reason}");
}

#[test]
fn a_rewritten_chain_suffix_is_still_caught_by_the_next_link() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 10);
    // Changing a stored hash breaks that event's own check first.
    tamper(
        dir.path(),
        "UPDATE events SET hash = zeroblob(32) WHERE global_position = 4",
    );
    expect_corrupted_at(dir.path(), 4);
}

#[test]
fn a_truncated_tail_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 20);
    tamper(dir.path(), "DELETE FROM events WHERE global_position > 15");
    let reason = expect_corrupted_at(dir.path(), 16);
    assert!(reason.contains("recorded head"), "{reason}");
}

#[test]
fn a_removed_middle_event_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 20);
    tamper(dir.path(), "DELETE FROM events WHERE global_position = 7");
    expect_corrupted_at(dir.path(), 8);
}

#[test]
fn a_flipped_byte_in_the_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 200);
    // Move everything from the WAL into the main file so the flip hits the real data.
    tamper(dir.path(), "PRAGMA wal_checkpoint(TRUNCATE)");
    let db_path = dir.path().join(DB_FILE_NAME);
    let mut bytes = std::fs::read(&db_path).unwrap();
    // Find a stored payload and flip one byte inside it.
    let needle = b"{\"n\":123}";
    let offset = bytes
        .windows(needle.len())
        .position(|window| window == needle)
        .expect("payload in file");
    bytes[offset + 5] ^= 0x01;
    std::fs::write(&db_path, &bytes).unwrap();
    let reason = expect_corrupted_at(dir.path(), 124);
    assert!(reason.contains("hash"), "{reason}");
}

#[test]
fn a_truncated_file_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path(), 2_000);
    tamper(dir.path(), "PRAGMA wal_checkpoint(TRUNCATE)");
    let db_path = dir.path().join(DB_FILE_NAME);
    let length = std::fs::metadata(&db_path).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&db_path)
        .unwrap()
        .set_len(length / 2)
        .unwrap();
    match open(dir.path()) {
        Err(StoreError::Corrupted { .. }) | Err(StoreError::Backend(_)) => {}
        Err(other) => panic!("unexpected error {other}"),
        Ok(_) => panic!("a truncated file was opened"),
    }
}

/// Environment variable that turns the `crash_child` test into the appending child process.
const CHILD_DIR_ENV: &str = "PAYCENTER_CRASH_CHILD_DIR";
const EVENTS_PER_APPEND: usize = 3;
const CHILD_THREADS: usize = 8;

/// The child of the crash test: appends forever from several threads and prints a line for
/// every acknowledged append. Does nothing unless started by the parent.
#[test]
fn crash_child() {
    let Ok(dir) = std::env::var(CHILD_DIR_ENV) else {
        return;
    };
    let run_id: String = std::env::var("PAYCENTER_CRASH_RUN").unwrap();
    let store: Arc<dyn EventStore> = Arc::new(open(Path::new(&dir)).unwrap());
    println!("READY");
    let threads: Vec<_> = (0..CHILD_THREADS)
        .map(|thread_idx| {
            let store = store.clone();
            let run_id = run_id.clone();
            std::thread::spawn(move || {
                // Bounded so a parent that never kills cannot leave it running forever.
                for append_idx in 0..1_000_000 {
                    let stream_id = format!("r{run_id}-t{thread_idx}-a{append_idx}");
                    let events = (0..EVENTS_PER_APPEND)
                        .map(|_| event("t", "{\"crash\":true}"))
                        .collect();
                    let outcome = store
                        .append(&stream_id, ExpectedRevision::NoStream, events)
                        .unwrap();
                    let mut stdout = std::io::stdout().lock();
                    writeln!(
                        stdout,
                        "ACK {stream_id} {} {}",
                        outcome.first_position, outcome.last_position
                    )
                    .unwrap();
                    stdout.flush().unwrap();
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    let n_kills: usize = std::env::var("PAYCENTER_CRASH_KILLS")
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(50);
    let dir = tempfile::tempdir().unwrap();
    let mut rng = rand::thread_rng();
    let mut acknowledged: HashMap<String, (u64, u64)> = HashMap::new();
    let started = Instant::now();
    for run_idx in 0..n_kills {
        let mut child = Command::new(std::env::current_exe().unwrap())
            .args(["crash_child", "--exact", "--nocapture", "--test-threads=1"])
            .env(CHILD_DIR_ENV, dir.path())
            .env("PAYCENTER_CRASH_RUN", run_idx.to_string())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (ready_sender, ready) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut acks = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                // libtest may print its own "test crash_child ... " before the marker.
                if line.ends_with("READY") {
                    let _ = ready_sender.send(());
                }
                if let Some(rest) = line.find("ACK ").map(|at| &line[at + 4..]) {
                    let parts: Vec<&str> = rest.split(' ').collect();
                    // A line cut short by the kill is not an acknowledgement we can rely on.
                    if parts.len() == 3 {
                        if let (Ok(first), Ok(last)) = (parts[1].parse(), parts[2].parse()) {
                            acks.push((parts[0].to_owned(), (first, last)));
                        }
                    }
                }
            }
            acks
        });
        ready
            .recv_timeout(Duration::from_secs(60))
            .expect("child opened the store");
        std::thread::sleep(Duration::from_millis(rng.gen_range(5..120)));
        child.kill().unwrap(); // SIGKILL on Unix.
        child.wait().unwrap();
        let acks = reader.join().unwrap();
        acknowledged.extend(acks);

        // Restart: the log must verify and hold every acknowledged append, whole.
        let store = open(dir.path()).expect("the log verifies after a kill");
        let mut stored: HashMap<String, Vec<u64>> = HashMap::new();
        let mut next_position = 1;
        loop {
            let page = store.read_all(next_position, 10_000).unwrap();
            let Some(last) = page.last() else { break };
            next_position = last.global_position + 1;
            for event in page {
                stored
                    .entry(event.stream_id)
                    .or_default()
                    .push(event.global_position);
            }
        }
        assert_eq!(
            next_position - 1,
            store.head_position().unwrap(),
            "read the whole log"
        );
        for (stream_id, positions) in &stored {
            assert_eq!(
                positions.len(),
                EVENTS_PER_APPEND,
                "stream {stream_id} is all or nothing"
            );
        }
        for (stream_id, (first, last)) in &acknowledged {
            let positions = stored
                .get(stream_id)
                .unwrap_or_else(|| panic!("acknowledged append {stream_id} was lost"));
            assert_eq!(
                (positions[0], positions[EVENTS_PER_APPEND - 1]),
                (*first, *last),
                "{stream_id}"
            );
        }
        // Read by stream, the streams of this run (split between the stream index file and
        // what the open read back from the log) hold the same events, and cannot be created
        // again.
        let run_prefix = format!("r{run_idx}-");
        for (stream_id, positions) in stored.iter().filter(|(id, _)| id.starts_with(&run_prefix)) {
            let by_stream: Vec<u64> = store
                .read_stream(stream_id, 0)
                .unwrap()
                .iter()
                .map(|event| event.global_position)
                .collect();
            assert_eq!(&by_stream, positions, "{stream_id} read by stream");
        }
        if let Some(stream_id) = stored.keys().find(|id| id.starts_with(&run_prefix)) {
            assert!(matches!(
                store.append(
                    stream_id,
                    ExpectedRevision::NoStream,
                    vec![event("t", "{}")]
                ),
                Err(StoreError::WrongExpectedRevision {
                    actual: Some(2),
                    ..
                })
            ));
        }
    }
    let store = open(dir.path()).unwrap();
    let report = store.verify_chain().unwrap();
    eprintln!(
        "crash test: {n_kills} kills, {} acknowledged appends, {} events on the chain, {:?}",
        acknowledged.len(),
        report.n_events,
        started.elapsed()
    );
    assert!(
        acknowledged.len() >= n_kills,
        "the children acknowledged appends before being killed"
    );
}
