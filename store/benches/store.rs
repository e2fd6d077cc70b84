//! Store benchmark: durable appends/s and latency with 1, 8 and 64 concurrent writers, and
//! `read_all` events/s, beside the machine's own baseline (fsyncs/s; plain SQLite insert +
//! commit per row at the same durability) measured in the same run.
//!
//! Writers are OS threads calling the blocking `append` (1, 8, 64), and 64 async tasks calling
//! `append_async` on a 2-thread runtime, as the HTTP service does.
//!
//! Each embedded store row also stands beside a closed loop of as many writers of the same kind,
//! measured just before and just after it: a bare group commit whose writers wait for their
//! record, as the store's callers do (`paycenter_store::ceiling`). Its ratio says how much of
//! the gap to the durability ceiling the store's own work makes (a reference, not a bound).
//!
//! Run: `cargo bench -p paycenter-store --bench store` (release profile). Optional env:
//! `PAYCENTER_BENCH_SECONDS` (per measurement, default 5), `PAYCENTER_BENCH_READ_EVENTS`
//! (events for the read measurement, default 1,000,000), `PAYCENTER_BENCH_DIR` (where the
//! files go, default a temporary directory under the current one, so it is the same disk).

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use paycenter_store::ceiling::{ClosedLoop, Writers};
use paycenter_store::{
    EventStore, ExpectedRevision, NewEvent, PostgresStore, SqliteConfig, SqliteStore,
};

/// A payload of the size of a real payment event.
const PAYLOAD: &str = r#"{"trade_no":"202611221200000001234567890123","merchant_id":"mch_0000000000000000000000000000002a","order_no":"ORDER-000042","amount":{"amount_minor":12345,"currency":"CNY"},"channel":"sandbox","invoke_method":"wap"}"#;

/// Writers of the largest row, and so the batch of the durability ceiling they are held to.
const GROUP_COMMIT_BATCH: usize = 64;
/// About the bytes one event takes in the log's file (payload, ids, hashes, index entries).
const RECORD_BYTES: usize = 1024;

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

fn new_event() -> NewEvent {
    NewEvent {
        event_id: uuid::Uuid::new_v4(),
        event_type: "payment.attempt_started".to_owned(),
        schema_version: 1,
        correlation_id: None,
        causation_id: None,
        payload: PAYLOAD.to_owned(),
    }
}

fn percentile(sorted_us: &[u64], fraction: f64) -> u64 {
    if sorted_us.is_empty() {
        return 0;
    }
    let index = ((sorted_us.len() as f64 - 1.0) * fraction).round() as usize;
    sorted_us[index]
}

fn fsyncs_per_second(dir: &Path, seconds: u64) -> f64 {
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).unwrap();
    let block = vec![7u8; 4096];
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        file.write_all(&block).unwrap();
        file.sync_data().unwrap();
        n += 1;
    }
    std::fs::remove_file(&path).unwrap();
    n as f64 / started.elapsed().as_secs_f64()
}

/// The durability ceiling for `batch` concurrent writers (`paycenter_store::ceiling`).
fn group_commit_records_per_second(
    dir: &Path,
    batch: usize,
    record_bytes: usize,
    seconds: u64,
) -> f64 {
    paycenter_store::ceiling::group_commit_records_per_second(
        dir,
        batch,
        record_bytes,
        Duration::from_secs(seconds),
    )
    .unwrap()
}

/// The closed loop of `writers` (`paycenter_store::ceiling`), records of an event's size.
fn closed_loop(dir: &Path, writers: Writers, seconds: u64) -> ClosedLoop {
    paycenter_store::ceiling::closed_loop_group_commit(
        dir,
        writers,
        RECORD_BYTES,
        Duration::from_secs(seconds),
    )
    .unwrap()
}

/// An embedded store's run between two runs of its closed loop, so the ratio between them is
/// given against both.
fn between_closed_loops(
    dir: &Path,
    writers: Writers,
    seconds: u64,
    run: impl FnOnce() -> AppendFigures,
) -> (AppendFigures, Option<[ClosedLoop; 2]>) {
    let before = closed_loop(dir, writers.clone(), seconds);
    let figures = run();
    let after = closed_loop(dir, writers, seconds);
    (figures, Some([before, after]))
}

fn plain_sqlite_commits_per_second(dir: &Path, seconds: u64) -> f64 {
    let connection = rusqlite::Connection::open(dir.join("plain.sqlite3")).unwrap();
    connection
        .query_row("PRAGMA journal_mode=WAL", [], |_| Ok(()))
        .unwrap();
    connection.execute_batch("PRAGMA synchronous=FULL; CREATE TABLE t (id INTEGER PRIMARY KEY, payload TEXT NOT NULL);").unwrap();
    let mut insert = connection
        .prepare("INSERT INTO t (payload) VALUES (?1)")
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(seconds);
    let started = Instant::now();
    let mut n = 0u64;
    while Instant::now() < deadline {
        connection.execute_batch("BEGIN").unwrap();
        insert.execute([PAYLOAD]).unwrap();
        connection.execute_batch("COMMIT").unwrap();
        n += 1;
    }
    n as f64 / started.elapsed().as_secs_f64()
}

/// The baseline for PostgreSQL: what a Message DB-style `write_message` reaches on this
/// machine and server, with `n_writers` connections each writing one message per transaction
/// (a stream advisory lock, the stream's version read, one insert into a table with a bigserial
/// position, a random uuid key and a stream index; synchronous_commit on).
fn message_db_style_writes_per_second(url: &str, n_writers: usize, seconds: u64) -> f64 {
    let schema = format!("pc_bench_msgdb_{}", std::process::id());
    let mut admin = postgres::Client::connect(url, postgres::NoTls).unwrap();
    admin
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE;
             CREATE SCHEMA {schema};
             CREATE TABLE {schema}.messages (
                 global_position BIGSERIAL PRIMARY KEY,
                 position BIGINT NOT NULL,
                 time TIMESTAMP NOT NULL DEFAULT (now() AT TIME ZONE 'utc'),
                 stream_name TEXT NOT NULL,
                 type TEXT NOT NULL,
                 data TEXT,
                 metadata TEXT,
                 id UUID NOT NULL UNIQUE
             );
             CREATE UNIQUE INDEX ON {schema}.messages (stream_name, position);
             CREATE FUNCTION {schema}.write_message(id UUID, stream_name TEXT, type TEXT, data TEXT, expected_version BIGINT)
             RETURNS BIGINT AS $$
             DECLARE
                 stream_version BIGINT;
             BEGIN
                 PERFORM pg_advisory_xact_lock(hashtext(stream_name));
                 SELECT COALESCE(MAX(m.position), -1) INTO stream_version FROM {schema}.messages m WHERE m.stream_name = write_message.stream_name;
                 IF expected_version IS NOT NULL AND expected_version <> stream_version THEN
                     RAISE EXCEPTION 'Wrong expected version';
                 END IF;
                 INSERT INTO {schema}.messages (id, stream_name, position, type, data)
                     VALUES (write_message.id, write_message.stream_name, stream_version + 1, write_message.type, write_message.data);
                 RETURN stream_version + 1;
             END;
             $$ LANGUAGE plpgsql;"
        ))
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let threads: Vec<_> = (0..n_writers)
        .map(|writer_idx| {
            let url = url.to_owned();
            let schema = schema.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut client = postgres::Client::connect(&url, postgres::NoTls).unwrap();
                let write = client
                    .prepare(&format!(
                        "SELECT {schema}.write_message($1, $2, 'payment.attempt_started', $3, $4)"
                    ))
                    .unwrap();
                let mut n_written = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let stream_name = format!("order-{writer_idx}-{n_written}");
                    client
                        .query_one(
                            &write,
                            &[&uuid::Uuid::new_v4(), &stream_name, &PAYLOAD, &-1i64],
                        )
                        .unwrap();
                    n_written += 1;
                }
                n_written
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let n_written: u64 = threads
        .into_iter()
        .map(|thread| thread.join().unwrap())
        .sum();
    let rate = n_written as f64 / started.elapsed().as_secs_f64();
    admin
        .batch_execute(&format!("DROP SCHEMA {schema} CASCADE"))
        .unwrap();
    rate
}

struct AppendFigures {
    appends_per_second: f64,
    p50_us: u64,
    p99_us: u64,
    /// What this process wrote per append (bytes, write calls): for the embedded store, the
    /// WAL's frames and the checkpoints' pages, since the writers themselves write nothing.
    written_per_append: Option<(f64, f64)>,
}

/// This process's bytes written and write calls so far (`wchar`, `syscw` of `/proc/self/io`;
/// Linux only). Sockets count too, so it says nothing of a server's disk writes.
fn process_writes() -> Option<(u64, u64)> {
    let io = std::fs::read_to_string("/proc/self/io").ok()?;
    let field = |name: &str| {
        io.lines()
            .find_map(|line| line.strip_prefix(name)?.trim().parse::<u64>().ok())
    };
    Some((field("wchar:")?, field("syscw:")?))
}

impl AppendFigures {
    /// Figures of one run, after checking that every acknowledged append is in the log.
    /// `writes_before`: [`process_writes`] as the run started.
    fn from_run(
        store: &dyn EventStore,
        mut latencies_us: Vec<u64>,
        elapsed_seconds: f64,
        writes_before: Option<(u64, u64)>,
    ) -> AppendFigures {
        latencies_us.sort_unstable();
        let n_appends = latencies_us.len();
        assert_eq!(
            store.head_position().unwrap(),
            n_appends as u64,
            "every acknowledged append is in the log"
        );
        let written_per_append = match (writes_before, process_writes()) {
            (Some((bytes_before, calls_before)), Some((bytes, calls))) if n_appends > 0 => Some((
                (bytes - bytes_before) as f64 / n_appends as f64,
                (calls - calls_before) as f64 / n_appends as f64,
            )),
            _ => None,
        };
        AppendFigures {
            appends_per_second: n_appends as f64 / elapsed_seconds,
            p50_us: percentile(&latencies_us, 0.50),
            p99_us: percentile(&latencies_us, 0.99),
            written_per_append,
        }
    }
}

fn durable_appends(store: Arc<dyn EventStore>, n_writers: usize, seconds: u64) -> AppendFigures {
    let stop = Arc::new(AtomicBool::new(false));
    let writes_before = process_writes();
    let started = Instant::now();
    let threads: Vec<_> = (0..n_writers)
        .map(|writer_idx| {
            let store = store.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                let mut latencies_us = Vec::with_capacity(100_000);
                let mut append_idx = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let stream_id = format!("order-{writer_idx}-{append_idx}");
                    let event = new_event();
                    let before = Instant::now();
                    store
                        .append(&stream_id, ExpectedRevision::NoStream, vec![event])
                        .unwrap();
                    latencies_us.push(before.elapsed().as_micros() as u64);
                    append_idx += 1;
                }
                latencies_us
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let latencies_us: Vec<u64> = threads
        .into_iter()
        .flat_map(|thread| thread.join().unwrap())
        .collect();
    AppendFigures::from_run(
        store.as_ref(),
        latencies_us,
        started.elapsed().as_secs_f64(),
        writes_before,
    )
}

/// 64 writers as async tasks on a 2-thread runtime: how the HTTP service drives the store.
fn durable_appends_async(
    store: Arc<dyn EventStore>,
    n_writers: usize,
    seconds: u64,
) -> AppendFigures {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writes_before = process_writes();
    let started = Instant::now();
    let tasks: Vec<_> = (0..n_writers)
        .map(|writer_idx| {
            let store = store.clone();
            let stop = stop.clone();
            runtime.spawn(async move {
                let mut latencies_us = Vec::with_capacity(100_000);
                let mut append_idx = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let stream_id = format!("order-{writer_idx}-{append_idx}");
                    let before = Instant::now();
                    store
                        .append_async(&stream_id, ExpectedRevision::NoStream, vec![new_event()])
                        .await
                        .unwrap();
                    latencies_us.push(before.elapsed().as_micros() as u64);
                    append_idx += 1;
                }
                latencies_us
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let latencies_us: Vec<u64> = runtime
        .block_on(async { futures_join(tasks).await })
        .into_iter()
        .flatten()
        .collect();
    AppendFigures::from_run(
        store.as_ref(),
        latencies_us,
        started.elapsed().as_secs_f64(),
        writes_before,
    )
}

async fn futures_join(tasks: Vec<tokio::task::JoinHandle<Vec<u64>>>) -> Vec<Vec<u64>> {
    let mut results = Vec::with_capacity(tasks.len());
    for task in tasks {
        results.push(task.await.unwrap());
    }
    results
}

/// The machine's read baseline: a raw scan of the same table through SQLite, every column
/// touched, nothing decoded or allocated per row.
fn raw_sqlite_rows_per_second(db_path: &Path) -> f64 {
    let connection =
        rusqlite::Connection::open_with_flags(db_path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut select = connection
        .prepare("SELECT global_position, stream_id, stream_revision, event_id, event_type, schema_version, recorded_at_us, correlation_id, causation_id, payload, prev_hash, hash FROM events ORDER BY global_position")
        .unwrap();
    let started = Instant::now();
    let mut rows = select.query([]).unwrap();
    let (mut n_rows, mut n_bytes) = (0u64, 0usize);
    while let Some(row) = rows.next().unwrap() {
        for column_idx in 0..12 {
            n_bytes += match row.get_ref(column_idx).unwrap() {
                rusqlite::types::ValueRef::Text(bytes) | rusqlite::types::ValueRef::Blob(bytes) => {
                    bytes.len()
                }
                _ => 8,
            };
        }
        n_rows += 1;
    }
    assert!(n_bytes > 0);
    n_rows as f64 / started.elapsed().as_secs_f64()
}

fn read_all_events_per_second(dir: &Path, n_events: u64) -> (f64, f64, f64) {
    let store = SqliteStore::open(&dir.join("read"), SqliteConfig::default()).unwrap();
    const BATCH: u64 = 1_000;
    let fill_started = Instant::now();
    for batch_idx in 0..n_events.div_ceil(BATCH) {
        let events = (0..BATCH.min(n_events - batch_idx * BATCH))
            .map(|_| new_event())
            .collect();
        store
            .append(
                &format!("bulk-{batch_idx}"),
                ExpectedRevision::NoStream,
                events,
            )
            .unwrap();
    }
    let fill_seconds = fill_started.elapsed().as_secs_f64();
    let raw_rate = raw_sqlite_rows_per_second(store.db_path());
    let started = Instant::now();
    let mut next = 1;
    let mut n_read = 0u64;
    loop {
        let page = store.read_all(next, 10_000).unwrap();
        let Some(last) = page.last() else { break };
        next = last.global_position + 1;
        n_read += page.len() as u64;
    }
    let read_seconds = started.elapsed().as_secs_f64();
    assert_eq!(n_read, n_events);
    let verify_started = Instant::now();
    store.verify_chain().unwrap();
    let verify_seconds = verify_started.elapsed().as_secs_f64();
    eprintln!(
        "filled {n_events} events in {fill_seconds:.1} s; verify_chain {:.0} events/s",
        n_events as f64 / verify_seconds
    );
    (
        raw_rate,
        n_read as f64 / read_seconds,
        n_events as f64 / verify_seconds,
    )
}

fn main() {
    // `cargo bench` passes `--bench`; nothing else is expected.
    let seconds = env_number("PAYCENTER_BENCH_SECONDS", 5);
    let n_read_events = env_number("PAYCENTER_BENCH_READ_EVENTS", 1_000_000);
    let base = std::env::var("PAYCENTER_BENCH_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| std::env::current_dir().unwrap());
    let dir = tempfile::Builder::new()
        .prefix("paycenter-bench-")
        .tempdir_in(base)
        .unwrap();

    println!(
        "# paycenter store benchmark ({} s per measurement, payload {} bytes)",
        seconds,
        PAYLOAD.len()
    );
    println!();
    let fsyncs = fsyncs_per_second(dir.path(), seconds);
    let plain = plain_sqlite_commits_per_second(dir.path(), seconds);
    // The same batch as 64 writers' group commit, records of about an event row's size.
    let ceiling_before =
        group_commit_records_per_second(dir.path(), GROUP_COMMIT_BATCH, RECORD_BYTES, seconds);
    // Half the batch: what each sync of a closed loop of 64 writers carries (the other half is
    // being answered and written meanwhile), so its bound.
    let half_batch = GROUP_COMMIT_BATCH / 2;
    let half_batch_ceiling =
        group_commit_records_per_second(dir.path(), half_batch, RECORD_BYTES, seconds);
    println!("| baseline | figure |");
    println!("|---|---|");
    println!("| fsync (4 KiB write + fdatasync) | {fsyncs:.0} /s |");
    println!(
        "| durability ceiling: {RECORD_BYTES}-byte records, one fdatasync per {GROUP_COMMIT_BATCH} (before the SQLite rows) | {ceiling_before:.0} records/s |"
    );
    println!(
        "| the same, one fdatasync per {half_batch} | {half_batch_ceiling:.0} records/s ({:.3} × the first) |",
        half_batch_ceiling / ceiling_before
    );
    println!(
        "| plain SQLite, WAL + synchronous=FULL, insert + commit per row | {plain:.0} rows/s |"
    );
    // PAYCENTER_BENCH_BACKENDS picks backends ("sqlite,postgres" by default).
    let backends =
        std::env::var("PAYCENTER_BENCH_BACKENDS").unwrap_or_else(|_| "sqlite,postgres".into());
    let run_sqlite = backends.split(',').any(|name| name.trim() == "sqlite");
    let run_postgres = backends.split(',').any(|name| name.trim() == "postgres");
    // PostgreSQL side by side when a server answers (PAYCENTER_BENCH_POSTGRES_URL).
    let postgres_url = std::env::var("PAYCENTER_BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "host=127.0.0.1 user=postgres dbname=postgres".into());
    if run_postgres && postgres::Client::connect(&postgres_url, postgres::NoTls).is_ok() {
        let baseline_writers = 8;
        let baseline = message_db_style_writes_per_second(&postgres_url, baseline_writers, seconds);
        println!(
            "| PostgreSQL: Message DB-style write_message, {baseline_writers} connections, one message per transaction | {baseline:.0} messages/s |"
        );
    }
    println!();
    println!(
        "| backend | writers | durable appends/s (1 event each) | p50 latency | p99 latency |"
    );
    println!("|---|---|---|---|---|");
    let sqlite = |name: String| -> Arc<dyn EventStore> {
        Arc::new(SqliteStore::open(&dir.path().join(name), SqliteConfig::default()).unwrap())
    };
    // PAYCENTER_BENCH_WRITERS picks the writer counts ("1,8,64" by default).
    let writer_counts: Vec<usize> = std::env::var("PAYCENTER_BENCH_WRITERS")
        .unwrap_or_else(|_| "1,8,64".into())
        .split(',')
        .map(|count| {
            count
                .trim()
                .parse()
                .expect("PAYCENTER_BENCH_WRITERS: numbers")
        })
        .collect();
    type Row = (&'static str, String, AppendFigures, Option<[ClosedLoop; 2]>);
    let mut rows: Vec<Row> = Vec::new();
    for &n_writers in writer_counts.iter().filter(|_| run_sqlite) {
        let (figures, closed_loops) =
            between_closed_loops(dir.path(), Writers::Threads(n_writers), seconds, || {
                durable_appends(sqlite(format!("writers-{n_writers}")), n_writers, seconds)
            });
        rows.push((
            "SQLite",
            format!("{n_writers} threads"),
            figures,
            closed_loops,
        ));
    }
    if run_sqlite {
        // The closed loop's tasks run on a runtime like the one `durable_appends_async` builds.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        let writers = Writers::Tasks(64, runtime.handle().clone());
        let (figures, closed_loops) = between_closed_loops(dir.path(), writers, seconds, || {
            durable_appends_async(sqlite("async-64".into()), 64, seconds)
        });
        rows.push((
            "SQLite",
            "64 async tasks on 2 threads".into(),
            figures,
            closed_loops,
        ));
    }
    if !run_postgres {
        eprintln!("PostgreSQL rows skipped: not in PAYCENTER_BENCH_BACKENDS");
    } else if postgres::Client::connect(&postgres_url, postgres::NoTls).is_ok() {
        for &n_writers in &writer_counts {
            let schema = format!("pc_bench_{}_{n_writers}", std::process::id());
            let store: Arc<dyn EventStore> =
                Arc::new(PostgresStore::open(&postgres_url, &schema).unwrap());
            rows.push((
                "PostgreSQL",
                format!("{n_writers} threads"),
                durable_appends(store, n_writers, seconds),
                None,
            ));
            PostgresStore::drop_schema(&postgres_url, &schema).unwrap();
        }
    } else {
        eprintln!("PostgreSQL rows skipped: no server at {postgres_url:?}");
    }
    // Measured again after the appends: the disk drifts, so each ratio is given against both.
    let ceiling_after =
        group_commit_records_per_second(dir.path(), GROUP_COMMIT_BATCH, RECORD_BYTES, seconds);
    // (lower, higher) of `figure` ÷ each of two baselines.
    let against = |figure: f64, baselines: [f64; 2]| {
        let [first, second] = baselines.map(|baseline| figure / baseline);
        (first.min(second), first.max(second))
    };
    for (backend, label, figures, closed_loops) in &rows {
        let rate = figures.appends_per_second;
        let (ceiling_low, ceiling_high) = against(rate, [ceiling_before, ceiling_after]);
        let of_closed_loop = match closed_loops {
            Some(closed_loops) => {
                let (low, high) = against(rate, closed_loops.map(|run| run.records_per_second));
                format!("; {low:.2}–{high:.2} × its closed loop")
            }
            None => String::new(),
        };
        println!(
            "| {backend} | {label} | {rate:.0} ({ceiling_low:.3}–{ceiling_high:.3} × the durability ceiling{of_closed_loop}) | {:.2} ms | {:.2} ms |",
            figures.p50_us as f64 / 1000.0,
            figures.p99_us as f64 / 1000.0
        );
    }
    println!();
    println!(
        "durability ceiling ({RECORD_BYTES}-byte records, one fdatasync per {GROUP_COMMIT_BATCH}): {ceiling_before:.0} records/s before the appends, {ceiling_after:.0} after"
    );
    println!();
    println!("| closed loop (bare group commit, {RECORD_BYTES}-byte records) | writers | records/s, before and after the store | × the durability ceiling | records per fdatasync |");
    println!("|---|---|---|---|---|");
    for (_, label, _, closed_loops) in &rows {
        let Some([before, after]) = closed_loops else {
            continue;
        };
        // Lowest and highest of the two loops' rates over the two ceilings.
        let quotients = [before, after]
            .map(|run| against(run.records_per_second, [ceiling_before, ceiling_after]));
        let low = quotients[0].0.min(quotients[1].0);
        let high = quotients[0].1.max(quotients[1].1);
        println!(
            "| closed loop | {label} | {:.0}, {:.0} | {low:.3}–{high:.3} | {:.1}, {:.1} |",
            before.records_per_second,
            after.records_per_second,
            before.records_per_sync,
            after.records_per_sync
        );
    }
    // What one append costs the disk, beside what it holds: the gap is the index pages and the
    // checkpoints' copies (`docs/benchmarks.md`).
    println!();
    println!("| embedded store | writers | bytes written per append | write calls per append |");
    println!("|---|---|---|---|");
    for (backend, label, figures, _) in &rows {
        if let ("SQLite", Some((bytes, calls))) = (*backend, figures.written_per_append) {
            println!("| {backend} | {label} | {bytes:.0} | {calls:.1} |");
        }
    }
    println!("(one append holds a {}-byte payload)", PAYLOAD.len());
    println!();
    let (raw_rate, read_rate, verify_rate) = read_all_events_per_second(dir.path(), n_read_events);
    println!("| read | events/s |");
    println!("|---|---|");
    println!(
        "| baseline: raw SQLite scan of the same table, every column touched | {raw_rate:.0} |"
    );
    println!("| read_all, pages of 10,000, {n_read_events} events | {read_rate:.0} |");
    println!("| verify_chain (read + SHA-256 per event) | {verify_rate:.0} |");
}
