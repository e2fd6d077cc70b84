//! The embedded backend: one SQLite file in WAL mode; an append is acknowledged only after
//! the WAL holding it has been fsynced.
//!
//! Two threads share the work (pipelined group commit):
//! - the **writer** owns the write connection. Appends queue on a bounded channel; the writer
//!   takes whatever has queued (up to `max_batch_appends`), checks each append against the
//!   state the batch has built so far, and writes them all in one transaction. Each append
//!   keeps its own atomicity because its checks run before any of its rows are written; a
//!   failed commit fails every append of the batch.
//! - the **syncer** takes committed batches, calls `fdatasync` on the WAL file once for all that
//!   have queued, and only then advances the durable head and acknowledges them. Tasks are
//!   answered at once; more than two parked threads are woken by an **answerer** thread, so
//!   the next `fdatasync` does not wait for a futex wake per thread.
//!
//! The transaction commits with `synchronous=NORMAL` (SQLite does not fsync the WAL at commit,
//! but does at every checkpoint), so the writer prepares batch N+1 while batch N is being
//! synced. Durability comes from the syncer's `fdatasync`, which covers every WAL frame written
//! before it. Readers see only events at or below the durable head, so nothing that a power
//! loss could take back is ever acknowledged, read by a projection or shown to a user.
//!
//! Which positions hold a stream's events is indexed outside the log's file, by a third
//! thread ([`stream_index`]): an index there would cost every append a random page write.
//!
//! Readers use their own connections; WAL lets them read while the writer writes, and they
//! only ever see whole committed transactions, so the global log has no holes for them. The
//! last events committed are also kept in memory ([`RecentEvents`]), in log order: each
//! projection's follower reads the batch just written, and serving it from there spares every
//! follower a query whose pages SQLite has dropped from its cache at the writer's commit.

mod known_streams;
mod stream_index;

use std::collections::{HashMap, VecDeque};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};

use crate::chain::{ChainVerifier, HashInput, GENESIS_HASH};
use crate::queue::{next_batch, poll_head, replayed, AppendQueue, AppendRequest, Reply, Waiter};
use crate::{
    AppendOutcome, ChainReport, EventStore, ExpectedRevision, NewEvent, RecordedEvent, StoreError,
};
use crate::{MAX_READ_ALL_LIMIT, MAX_STREAM_EVENTS};
pub use known_streams::FILTER_FILE_NAME;
pub use stream_index::INDEX_FILE_NAME;
use stream_index::{HeadLookup, IndexFile, Indexer, SharedTail};

/// The database file inside the data directory.
pub const DB_FILE_NAME: &str = "events.sqlite3";
/// The lock file that keeps a second writer out.
pub const LOCK_FILE_NAME: &str = "paycenter.lock";

/// Tuning of the embedded store.
#[derive(Debug, Clone)]
pub struct SqliteConfig {
    /// Appends waiting for the writer before `append` blocks (back-pressure).
    pub queue_capacity: usize,
    /// Most appends one transaction (one fsync) carries.
    pub max_batch_appends: usize,
    /// Walk the whole chain when opening (refuse a corrupted log at once).
    pub verify_on_open: bool,
    /// A point of the chain verified before (by a sealed checkpoint the caller checked): the
    /// walk at open starts there instead of at position 1, when the log still holds that event
    /// with that hash. Whatever lies below it is for a background walk and for `verify`.
    pub trusted_checkpoint: Option<ChainReport>,
    /// Idle read connections kept for reuse.
    pub max_idle_readers: usize,
    /// WAL pages written before SQLite checkpoints them into the main file.
    pub wal_autocheckpoint_pages: u32,
    /// The writer's page cache, in KiB.
    pub cache_size_kib: u32,
    /// Appends are recognized as replays by their event ids within the last this many events
    /// (an append retried after a lost answer comes back within seconds; an older one meets
    /// its stream's expected revision instead). Bounds the writer's memory and start-up.
    pub event_id_window: usize,
    /// The last this many committed events are kept in memory for `read_all` (0: none).
    pub recent_events: usize,
    /// How long `open` keeps trying for the directory lock before reporting `Locked`.
    /// A child process forked by this program holds a copy of the lock until it execs,
    /// so a lock just released can look taken for a moment.
    pub lock_wait_ms: u64,
    /// Durable events indexed in memory before the indexer writes them, sorted by stream,
    /// into the stream index file in one transaction (see [`stream_index`]).
    pub stream_index_fill_events: usize,
    /// Events the in-memory stream index may hold before appends wait for the indexer.
    pub max_stream_tail_events: usize,
    /// The largest filter of the streams the index file holds, in bytes (12 bits per stream):
    /// it spares the writer a lookup in the file for each new stream. Built at open from a
    /// scan of the file, between fills; 0 builds none. Past the size, it is kept as it is and
    /// answers with more "maybe" (each one a lookup).
    pub max_stream_filter_bytes: usize,
}

/// The WAL is truncated back to this size after a checkpoint, so its disk use stays bounded.
const WAL_SIZE_LIMIT_BYTES: u64 = 128 << 20;

impl Default for SqliteConfig {
    fn default() -> Self {
        SqliteConfig {
            queue_capacity: 16_384,
            max_batch_appends: 4_096,
            verify_on_open: true,
            trusted_checkpoint: None,
            event_id_window: 250_000,
            // About 1 KB each: a few MB, and several seconds of the log at full load, so a
            // follower that falls behind by a batch or two still reads from memory.
            recent_events: 8_192,
            // Above the number of reads in flight under load (64 connections, each request
            // reading its stream on a blocking thread): fewer made the pool open and drop
            // connections, each open parsing the schema again (a profile showed SQLite's
            // parser at ~3 % of the service's time; docs/benchmarks.md).
            max_idle_readers: 128,
            wal_autocheckpoint_pages: 16_384,
            // 32 MiB rather than 64: with mimalloc as the service's allocator, the server's peak
            // under a minute of load stayed at 257-265 MB instead of 283 MB, with no loss of
            // payments/s (docs/benchmarks.md).
            cache_size_kib: 32 << 10,
            lock_wait_ms: 2_000,
            // About 200 bytes each in memory: 32,768 is a few MB, and a few seconds of the log
            // at full load. Larger fills share more of the index file's leaves per entry.
            stream_index_fill_events: 32_768,
            max_stream_tail_events: 131_072,
            // 1.5 bytes per stream: 44M streams. A 10M-event log starts with 15 MB.
            max_stream_filter_bytes: 64 << 20,
        }
    }
}

/// The durable head of the log: the last position whose WAL frames are fsynced. Shared with
/// readers, which never look past it.
struct Head {
    position: Mutex<u64>,
    advanced: Condvar,
}

impl Head {
    fn durable_position(&self) -> u64 {
        *self.position.lock().expect("head lock")
    }
}

/// The embedded event store. Dropping it stops the writer after it drains its queue.
pub struct SqliteStore {
    db_path: PathBuf,
    writer: Option<AppendQueue>,
    writer_thread: Option<JoinHandle<()>>,
    syncer_thread: Option<JoinHandle<()>>,
    head: Arc<Head>,
    /// Why the writer or syncer stopped, once one has.
    failure: Arc<Mutex<Option<String>>>,
    idle_readers: Mutex<Vec<Connection>>,
    max_idle_readers: usize,
    /// The last events the writer committed (empty when opened read-only).
    recent: Arc<Mutex<RecentEvents>>,
    /// The stream index file; read connections attach it when `index_attached`.
    index_file: IndexFile,
    index_attached: bool,
    /// The events not yet in the index file (empty when opened read-only).
    tail: Arc<SharedTail>,
    indexer_thread: Option<JoinHandle<()>>,
    /// The filter of the index file's streams (none built when opened read-only).
    known_streams: Arc<known_streams::KnownStreams>,
    /// Tells the indexer to stop.
    stopping: Arc<AtomicBool>,
    _lock_file: Option<File>,
}

/// The last events committed, in log order, at most `capacity`: what `read_all` serves
/// without a query when the range asked for starts inside it. Committed is not durable: reads
/// stop at the durable head as they do in the file.
#[derive(Debug, Default)]
struct RecentEvents {
    events: VecDeque<RecordedEvent>,
    capacity: usize,
}

impl RecentEvents {
    fn new(capacity: usize) -> RecentEvents {
        RecentEvents {
            events: VecDeque::with_capacity(capacity.min(1 << 16)),
            capacity,
        }
    }

    /// Adds a committed batch, which follows the last event kept.
    fn push_committed(&mut self, batch: Vec<RecordedEvent>) {
        if self.capacity == 0 {
            return;
        }
        for event in batch {
            if let Some(last) = self.events.back() {
                assert_eq!(
                    event.global_position,
                    last.global_position + 1,
                    "committed events come in log order"
                );
            }
            if self.events.len() == self.capacity {
                self.events.pop_front();
            }
            self.events.push_back(event);
        }
    }

    /// The events from `from_position` through `through_position`, at most `limit`; `None`
    /// when `from_position` is older than what is kept (the file has it).
    fn read(
        &self,
        from_position: u64,
        through_position: u64,
        limit: usize,
    ) -> Option<Vec<RecordedEvent>> {
        let first = self.events.front()?.global_position;
        let skip = usize::try_from(from_position.checked_sub(first)?).ok()?;
        Some(
            self.events
                .iter()
                .skip(skip)
                .take_while(|event| event.global_position <= through_position)
                .take(limit)
                .cloned()
                .collect(),
        )
    }

    /// The event at `position`, when kept.
    fn get(&self, position: u64) -> Option<RecordedEvent> {
        let first = self.events.front()?.global_position;
        let idx = usize::try_from(position.checked_sub(first)?).ok()?;
        self.events.get(idx).cloned()
    }
}

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events (
    global_position INTEGER PRIMARY KEY,
    stream_id       TEXT    NOT NULL,
    stream_revision INTEGER NOT NULL,
    -- Unique within the writer's window (see `Writer::event_ids`), not by an index: a B-tree
    -- over random ids would cost a page write per append. Stores created before this change
    -- keep their unique index, which still holds.
    event_id        BLOB    NOT NULL,
    event_type      TEXT    NOT NULL,
    schema_version  INTEGER NOT NULL,
    recorded_at_us  INTEGER NOT NULL,
    correlation_id  BLOB,
    causation_id    BLOB,
    payload         TEXT    NOT NULL,
    prev_hash       BLOB    NOT NULL,
    hash            BLOB    NOT NULL
    -- No index on (stream_id, stream_revision): the writer keeps revisions unique, and the
    -- stream index lives in its own file (`stream_index`). Stores created before this
    -- change keep their unique index, which still holds.
);
-- The chain head, written in the same transaction as the events: a log whose last event does
-- not match it has lost its tail.
CREATE TABLE IF NOT EXISTS chain_head (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL,
    hash     BLOB    NOT NULL
);
";

/// A query of whole events (the columns `row_to_event` reads) with `$rest` after
/// `FROM events e`; the columns are named through `e`, so `$rest` may join other tables.
macro_rules! select_events {
    ($rest:literal) => {
        concat!(
            "SELECT e.global_position, e.stream_id, e.stream_revision, e.event_id, e.event_type, ",
            "e.schema_version, e.recorded_at_us, e.correlation_id, e.causation_id, e.payload, ",
            "e.prev_hash, e.hash FROM events e ",
            $rest
        )
    };
}
const READ_ALL_SQL: &str = select_events!(
    "WHERE global_position >= ?1 AND global_position <= ?2 ORDER BY global_position"
);
/// A stream's events, by a scan where the log has no index of streams (a store opened read-only
/// before any writer made the stream index file); stores created before the stream index file
/// kept an index in the log that serves it.
const READ_STREAM_SQL: &str = select_events!(
    "WHERE stream_id = ?1 AND stream_revision >= ?2 AND global_position <= ?3 \
     ORDER BY stream_revision"
);
/// The schema name the stream index file is attached under.
const INDEX_SCHEMA_NAME: &str = "streams";
/// A stream's events the index file holds, from revision ?2 up to (not with) revision ?3.
const READ_INDEXED_STREAM_SQL: &str = select_events!(
    "JOIN streams.stream_index i ON i.global_position = e.global_position \
     WHERE i.stream_id = ?1 AND i.stream_revision >= ?2 AND i.stream_revision < ?3 \
     AND e.global_position <= ?4 ORDER BY i.stream_revision"
);
/// A stream's events for a reader without the writer's tail: those in the index file, then
/// those after it by a scan of the log's end, in one statement (one snapshot of both files).
const READ_STREAM_WITH_INDEX_SQL: &str = concat!(
    select_events!(
        "JOIN streams.stream_index i ON i.global_position = e.global_position \
         WHERE i.stream_id = ?1 AND i.stream_revision >= ?2 AND e.global_position <= ?3 "
    ),
    "UNION ALL ",
    select_events!(
        "WHERE e.global_position > COALESCE((SELECT position FROM streams.indexed_through), 0) \
         AND e.stream_id = ?1 AND e.stream_revision >= ?2 AND e.global_position <= ?3 \
         ORDER BY 3"
    )
);
const READ_EVENT_AT_SQL: &str = select_events!("WHERE global_position = ?1");

fn blob16(bytes: Option<Vec<u8>>, column: &str) -> rusqlite::Result<Option<uuid::Uuid>> {
    match bytes {
        None => Ok(None),
        Some(bytes) => uuid::Uuid::from_slice(&bytes).map(Some).map_err(|_| {
            rusqlite::Error::InvalidColumnType(0, column.to_owned(), rusqlite::types::Type::Blob)
        }),
    }
}

fn blob32(bytes: Vec<u8>, column: &str) -> rusqlite::Result<[u8; 32]> {
    bytes.try_into().map_err(|_| {
        rusqlite::Error::InvalidColumnType(0, column.to_owned(), rusqlite::types::Type::Blob)
    })
}

fn row_to_event(row: &rusqlite::Row<'_>) -> rusqlite::Result<RecordedEvent> {
    let recorded_at_us: i64 = row.get(6)?;
    Ok(RecordedEvent {
        global_position: row.get::<_, i64>(0)? as u64,
        stream_id: row.get(1)?,
        stream_revision: row.get::<_, i64>(2)? as u64,
        event_id: blob16(Some(row.get(3)?), "event_id")?.expect("not null"),
        event_type: row.get(4)?,
        schema_version: row.get(5)?,
        recorded_at: DateTime::from_timestamp_micros(recorded_at_us)
            .ok_or_else(|| rusqlite::Error::IntegralValueOutOfRange(6, recorded_at_us))?,
        correlation_id: blob16(row.get(7)?, "correlation_id")?,
        causation_id: blob16(row.get(8)?, "causation_id")?,
        payload: row.get(9)?,
        prev_hash: blob32(row.get(10)?, "prev_hash")?,
        hash: blob32(row.get(11)?, "hash")?,
    })
}

fn open_connection(db_path: &Path, read_only: bool) -> Result<Connection, StoreError> {
    let flags = if read_only {
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX
    } else {
        OpenFlags::SQLITE_OPEN_READ_WRITE
            | OpenFlags::SQLITE_OPEN_CREATE
            | OpenFlags::SQLITE_OPEN_NO_MUTEX
    };
    let connection = Connection::open_with_flags(db_path, flags)?;
    connection.busy_timeout(Duration::from_secs(5))?;
    if read_only {
        // Up to `max_idle_readers` of these stay open: each one's page cache is kept small so
        // the pool's memory stays bounded (the kernel's page cache serves repeated reads).
        connection.execute_batch(&format!("PRAGMA cache_size=-{READER_CACHE_KIB};"))?;
    }
    Ok(connection)
}

/// The (position, hash) row `sql` selects from a one-row table (the chain head, the stream
/// index's last entry); position 0 and the genesis hash when the table is empty.
fn read_position_and_hash(
    connection: &Connection,
    sql: &str,
) -> Result<(u64, [u8; 32]), StoreError> {
    let row: Option<(i64, Vec<u8>)> = connection
        .query_row(sql, [], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?;
    match row {
        None => Ok((0, GENESIS_HASH)),
        Some((position, hash)) => Ok((position as u64, blob32(hash, "hash")?)),
    }
}

/// Page cache of each read connection, in KiB (SQLite's default is 2,000).
const READER_CACHE_KIB: u32 = 512;

/// Attaches the stream index file to a read connection, as [`INDEX_SCHEMA_NAME`].
fn attach_index(connection: &Connection, index_file: &IndexFile) -> Result<(), StoreError> {
    connection.execute(
        &format!("ATTACH DATABASE ?1 AS {INDEX_SCHEMA_NAME}"),
        [index_file.path.to_string_lossy()],
    )?;
    connection.execute_batch(&format!(
        "PRAGMA {INDEX_SCHEMA_NAME}.cache_size=-{READER_CACHE_KIB};"
    ))?;
    Ok(())
}

/// Takes the exclusive lock on `lock_file`, retrying for up to `wait_ms`.
fn take_lock(lock_file: &File, lock_path: &Path, wait_ms: u64) -> Result<(), StoreError> {
    const RETRY_INTERVAL_MS: u64 = 10;
    let deadline = std::time::Instant::now() + std::time::Duration::from_millis(wait_ms);
    loop {
        if lock_file.try_lock().is_ok() {
            return Ok(());
        }
        if std::time::Instant::now() >= deadline {
            return Err(StoreError::Locked {
                path: lock_path.display().to_string(),
            });
        }
        std::thread::sleep(std::time::Duration::from_millis(RETRY_INTERVAL_MS));
    }
}

impl SqliteStore {
    /// Opens (creating if needed) the store in `data_dir` for writing. Takes the directory's
    /// lock, verifies the chain when configured, and starts the writer.
    pub fn open(data_dir: &Path, config: SqliteConfig) -> Result<SqliteStore, StoreError> {
        assert!(config.queue_capacity > 0 && config.max_batch_appends > 0);
        std::fs::create_dir_all(data_dir)?;
        let lock_path = data_dir.join(LOCK_FILE_NAME);
        let lock_file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)?;
        take_lock(&lock_file, &lock_path, config.lock_wait_ms)?;
        let db_path = data_dir.join(DB_FILE_NAME);
        let connection = open_connection(&db_path, false)?;
        // WAL: readers never block the writer. NORMAL: commits do not fsync (the syncer does,
        // before acknowledging), checkpoints do.
        let journal_mode: String =
            connection.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "could not enable WAL (got {journal_mode})"
            )));
        }
        connection.execute_batch("PRAGMA synchronous=NORMAL; PRAGMA foreign_keys=OFF;")?;
        // Checkpoints copy every page dirtied since the last one back into the main file. Random
        // index keys (event ids, stream ids) dirty a page per append, so rarer checkpoints copy
        // each hot page once instead of many times: this setting is worth ~40% throughput.
        connection.execute_batch(&format!(
            "PRAGMA wal_autocheckpoint={}; PRAGMA cache_size=-{}; PRAGMA journal_size_limit={};",
            config.wal_autocheckpoint_pages, config.cache_size_kib, WAL_SIZE_LIMIT_BYTES
        ))?;
        connection.execute_batch(SCHEMA)?;
        // A write now makes sure the WAL file exists; it lives until the last connection closes,
        // which is after the syncer stops, so the syncer's handle stays valid.
        connection.execute_batch("BEGIN IMMEDIATE; CREATE TABLE IF NOT EXISTS store_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             INSERT INTO store_meta (key, value) VALUES ('schema_version', '1') ON CONFLICT (key) DO NOTHING;
             UPDATE store_meta SET value = value WHERE key = 'schema_version'; COMMIT;")?;
        let wal_path = data_dir.join(format!("{DB_FILE_NAME}-wal"));
        let wal_file = File::open(&wal_path)?;
        // Whatever an earlier process committed without syncing is made durable before we serve.
        wal_file.sync_data()?;
        assert!(
            config.max_stream_tail_events > config.stream_index_fill_events
                && config.stream_index_fill_events > 0,
            "the tail holds more than one fill"
        );
        let index_file = IndexFile::in_dir(data_dir);

        let head = Arc::new(Head {
            position: Mutex::new(0),
            advanced: Condvar::new(),
        });
        let failure = Arc::new(Mutex::new(None));
        let mut store = SqliteStore {
            db_path,
            writer: None,
            writer_thread: None,
            syncer_thread: None,
            head: head.clone(),
            failure: failure.clone(),
            idle_readers: Mutex::new(Vec::new()),
            max_idle_readers: config.max_idle_readers,
            recent: Arc::new(Mutex::new(RecentEvents::new(config.recent_events))),
            index_file: index_file.clone(),
            // Set once the file is caught up with the log (below): a refill replaces it, and a
            // reader attached before would keep reading the replaced file.
            index_attached: false,
            tail: Arc::new(SharedTail::default()),
            indexer_thread: None,
            known_streams: Arc::new(known_streams::KnownStreams::new(
                config.max_stream_filter_bytes,
            )),
            stopping: Arc::new(AtomicBool::new(false)),
            _lock_file: Some(lock_file),
        };
        let (head_position, head_hash) = if config.verify_on_open {
            let report = match config.trusted_checkpoint {
                Some(checkpoint) => store.verify_tail(checkpoint)?,
                None => store.verify_chain()?,
            };
            (report.n_events, report.head_hash)
        } else {
            store.recorded_head()?
        };
        *head.position.lock().expect("head lock") = head_position;
        // Read through a connection of its own, so the writer's page cache does not keep the
        // pages read (see `load_event_ids`). The index's catch-up and the saved filter's
        // later streams share it; it is closed before the writer starts.
        let log_reader = open_connection(&store.db_path, true)?;
        let (index_connection, tail) = stream_index::open_and_catch_up(
            &index_file,
            &log_reader,
            head_position,
            config.max_stream_tail_events,
        )?;
        if let Some(saved) = stream_index::saved_filter_for(
            data_dir,
            &log_reader,
            head_position,
            tail.indexed_through(),
            config.max_stream_filter_bytes,
        )? {
            store.known_streams.install(saved);
        }
        drop(log_reader);
        *store.tail.state.lock().expect("stream tail lock") = tail;
        store.idle_readers.lock().expect("reader pool lock").clear();
        store.index_attached = true;
        let index_reader = open_connection(&index_file.path, true)?;
        // Every new stream's append looks its head up here: keep the index's upper levels.
        index_reader.execute_batch("PRAGMA cache_size=-16384;")?;

        let (queue, receiver) = AppendQueue::new(config.queue_capacity);
        let (sync_sender, sync_receiver) = sync_channel(SYNC_QUEUE_BATCHES);
        let mut writer = Writer {
            connection,
            head_position,
            head_hash,
            last_recorded_at_us: 0,
            max_batch_appends: config.max_batch_appends,
            syncer: sync_sender,
            event_ids: EventIdIndex::new(config.event_id_window),
            batch_event_ids: Vec::new(),
            recent: store.recent.clone(),
            batch_recorded: Vec::new(),
            tail: store.tail.clone(),
            max_tail_events: config.max_stream_tail_events,
            heads: HeadLookup::new(index_reader, store.known_streams.clone()),
            batch_heads: HashMap::new(),
            failure: failure.clone(),
            stopped: false,
        };
        writer.last_recorded_at_us = writer.load_last_recorded_at()?;
        writer.load_event_ids(&open_connection(&store.db_path, true)?)?;
        let indexer = Indexer {
            connection: index_connection,
            tail: store.tail.clone(),
            head: head.clone(),
            fill_events: config.stream_index_fill_events,
            stopping: store.stopping.clone(),
            failure: failure.clone(),
            known: store.known_streams.clone(),
            data_dir: data_dir.to_owned(),
        };
        let syncer = Syncer {
            wal_file,
            head,
            failure,
        };
        let syncer_thread = std::thread::Builder::new()
            .name("store-syncer".to_owned())
            .spawn(move || syncer.run(sync_receiver))?;
        let writer_thread = std::thread::Builder::new()
            .name("store-writer".to_owned())
            .spawn(move || writer.run(receiver))?;
        let indexer_thread = std::thread::Builder::new()
            .name("store-indexer".to_owned())
            .spawn(move || indexer.run())?;
        store.writer = Some(queue);
        store.writer_thread = Some(writer_thread);
        store.syncer_thread = Some(syncer_thread);
        store.indexer_thread = Some(indexer_thread);
        Ok(store)
    }

    /// Opens an existing store for reading only, without the lock: replay tools use this
    /// beside a running server. `append` answers [`StoreError::ReadOnly`].
    pub fn open_read_only(data_dir: &Path) -> Result<SqliteStore, StoreError> {
        let db_path = data_dir.join(DB_FILE_NAME);
        if !db_path.exists() {
            return Err(StoreError::Backend(format!(
                "no event store at {}",
                db_path.display()
            )));
        }
        // A log no writer of this version has opened has no stream index file: its streams
        // are read by the log's own index (older stores) or a scan.
        let index_file = IndexFile::in_dir(data_dir);
        let index_attached =
            stream_index::usable_by_reader(&index_file, &open_connection(&db_path, true)?)?;
        let store = SqliteStore {
            db_path,
            writer: None,
            writer_thread: None,
            syncer_thread: None,
            head: Arc::new(Head {
                position: Mutex::new(0),
                advanced: Condvar::new(),
            }),
            failure: Arc::new(Mutex::new(None)),
            idle_readers: Mutex::new(Vec::new()),
            max_idle_readers: 4,
            recent: Arc::new(Mutex::new(RecentEvents::new(0))),
            index_file,
            index_attached,
            tail: Arc::new(SharedTail::default()),
            indexer_thread: None,
            known_streams: Arc::new(known_streams::KnownStreams::new(0)),
            stopping: Arc::new(AtomicBool::new(false)),
            _lock_file: None,
        };
        Ok(store)
    }

    /// Whether the filter of the streams the index file holds answers yet: built by a scan of
    /// that file after the open. Until it does, every new stream is looked up in the file.
    pub fn stream_filter_ready(&self) -> bool {
        self.known_streams.is_ready()
    }

    /// Saves the filter of known streams now (the indexer does, between its fills), so the
    /// next open reads it instead of scanning the index file; waits at most `timeout_ms` for
    /// it. For a process about to end: it also saves on its own once a minute, and when the
    /// store is dropped. Whether a save was done; `false` for a store opened read-only.
    pub fn save_stream_filter(&self, timeout_ms: u64) -> bool {
        if self.indexer_thread.is_none() {
            return false;
        }
        let done_before = self.known_streams.request_save();
        self.tail.wake();
        self.known_streams
            .wait_saved(done_before, Duration::from_millis(timeout_ms))
    }

    /// The database file.
    pub fn db_path(&self) -> &Path {
        &self.db_path
    }

    fn with_reader<T>(
        &self,
        read: impl FnOnce(&Connection) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let pooled = self.idle_readers.lock().expect("reader pool lock").pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => {
                let connection = open_connection(&self.db_path, true)?;
                if self.index_attached {
                    attach_index(&connection, &self.index_file)?;
                }
                connection
            }
        };
        let result = read(&connection);
        let mut idle = self.idle_readers.lock().expect("reader pool lock");
        if idle.len() < self.max_idle_readers {
            idle.push(connection);
        }
        result
    }

    /// The last position readers may see: the durable head when this process writes; what
    /// another process has committed when opened read-only (it acknowledges only synced data).
    fn readable_head(&self) -> Result<u64, StoreError> {
        if self.writer.is_some() {
            return Ok(self.head.durable_position());
        }
        self.with_reader(|connection| {
            let head: Option<i64> =
                connection.query_row("SELECT MAX(global_position) FROM events", [], |row| {
                    row.get(0)
                })?;
            Ok(head.unwrap_or(0) as u64)
        })
    }

    /// A stream's events through `durable` while this process writes: the older ones from the
    /// index file, the newer ones from the tail in memory. The tail is read first: an event
    /// missing from it was dropped after the fill holding it committed, so the index file,
    /// read afterwards, has it; and the file is asked only for revisions below the tail's, so
    /// nothing is read twice.
    fn read_stream_with_tail(
        &self,
        stream_id: &str,
        from_revision: u64,
        durable: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let slice = self.tail.state.lock().expect("stream tail lock").slice(
            stream_id,
            from_revision,
            durable,
        );
        let below_revision = slice.first_revision.unwrap_or(i64::MAX as u64);
        let kept: Vec<Option<RecordedEvent>> = {
            let recent = self.recent.lock().expect("recent events lock");
            slice
                .events
                .iter()
                .map(|&(_, position)| recent.get(position))
                .collect()
        };
        self.with_reader(|connection| {
            let mut events = Vec::with_capacity(slice.events.len());
            if from_revision < below_revision {
                let mut statement = connection.prepare_cached(READ_INDEXED_STREAM_SQL)?;
                let rows = statement.query_map(
                    params![
                        stream_id,
                        from_revision as i64,
                        below_revision as i64,
                        durable as i64
                    ],
                    row_to_event,
                )?;
                for row in rows.take(MAX_STREAM_EVENTS + 1) {
                    events.push(row?);
                }
            }
            let mut at_position = connection.prepare_cached(READ_EVENT_AT_SQL)?;
            for (&(revision, position), kept) in slice.events.iter().zip(kept) {
                let event = match kept {
                    Some(event) => event,
                    None => at_position.query_row(params![position as i64], row_to_event)?,
                };
                if (event.stream_revision, event.stream_id.as_str()) != (revision, stream_id) {
                    return Err(StoreError::Corrupted {
                        position,
                        reason: format!(
                            "the stream index points at this event for revision {revision} of {stream_id}"
                        ),
                    });
                }
                events.push(event);
            }
            Ok(events)
        })
    }

    /// Verifies the chain from `checkpoint` to the recorded head (see [`chain::verify_tail`]).
    fn verify_tail(&self, checkpoint: ChainReport) -> Result<ChainReport, StoreError> {
        let recorded = self.recorded_head()?;
        crate::chain::verify_tail(self, checkpoint, recorded)
    }

    /// The head as recorded in `chain_head` (not verified).
    fn recorded_head(&self) -> Result<(u64, [u8; 32]), StoreError> {
        self.with_reader(|connection| {
            read_position_and_hash(
                connection,
                "SELECT position, hash FROM chain_head WHERE id = 1",
            )
        })
    }
}

impl Drop for SqliteStore {
    fn drop(&mut self) {
        // Closing the channel lets the writer finish what is queued and stop.
        self.writer.take();
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
        // The writer dropped its end of the sync queue when it stopped; the syncer drains it.
        if let Some(thread) = self.syncer_thread.take() {
            let _ = thread.join();
        }
        // The tail it leaves is read again from the log at the next open.
        self.stopping.store(true, Ordering::Release);
        if let Some(thread) = self.indexer_thread.take() {
            let _ = thread.join();
        }
    }
}

impl EventStore for SqliteStore {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.writer
            .as_ref()
            .ok_or(StoreError::ReadOnly)?
            .append(stream_id, expected, events)
    }

    fn append_async(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> crate::AppendFuture {
        match &self.writer {
            Some(queue) => queue.append_async(stream_id, expected, events),
            None => Box::pin(async { Err(StoreError::ReadOnly) }),
        }
    }

    fn reads_are_local(&self) -> bool {
        true
    }

    fn read_stream(
        &self,
        stream_id: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let durable = self.readable_head()?;
        let events = if self.writer.is_some() {
            self.read_stream_with_tail(stream_id, from_revision, durable)?
        } else {
            self.with_reader(|connection| {
                // No `LIMIT ?`: SQLite plans with a bound LIMIT's value and so prepares the
                // statement again at every run; rows are stepped lazily and the take stops them.
                let sql = if self.index_attached {
                    READ_STREAM_WITH_INDEX_SQL
                } else {
                    READ_STREAM_SQL
                };
                let mut statement = connection.prepare_cached(sql)?;
                let rows = statement.query_map(
                    params![stream_id, from_revision as i64, durable as i64],
                    row_to_event,
                )?;
                Ok(rows
                    .take(MAX_STREAM_EVENTS + 1)
                    .collect::<Result<Vec<_>, _>>()?)
            })?
        };
        if events.len() > MAX_STREAM_EVENTS {
            return Err(StoreError::Backend(format!(
                "stream {stream_id} exceeds {MAX_STREAM_EVENTS} events"
            )));
        }
        Ok(events)
    }

    fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = limit.min(MAX_READ_ALL_LIMIT);
        let durable = self.readable_head()?;
        if let Some(events) =
            self.recent
                .lock()
                .expect("recent events lock")
                .read(from_position, durable, limit)
        {
            return Ok(events);
        }
        self.with_reader(|connection| {
            // No `LIMIT ?` (see `read_stream`): the take stops the lazy rows.
            let mut statement = connection.prepare_cached(READ_ALL_SQL)?;
            let rows =
                statement.query_map(params![from_position as i64, durable as i64], row_to_event)?;
            let mut events = Vec::with_capacity(limit.min(4_096));
            for row in rows.take(limit) {
                events.push(row?);
            }
            Ok(events)
        })
    }

    fn head_position(&self) -> Result<u64, StoreError> {
        self.readable_head()
    }

    fn wait_for_head(&self, after_position: u64, timeout: Duration) -> Result<u64, StoreError> {
        if self.writer.is_none() {
            // Another process writes: poll, in short steps, until the timeout.
            return poll_head(
                || self.head_position(),
                after_position,
                timeout,
                Duration::from_millis(20),
            );
        }
        let position = self.head.position.lock().expect("head lock");
        let (position, _) = self
            .head
            .advanced
            .wait_timeout_while(position, timeout, |position| *position <= after_position)
            .expect("head lock");
        Ok(*position)
    }

    /// One process owns the directory (the lock file), so every lease is already its own.
    fn health(&self) -> crate::StoreHealth {
        let failure = self
            .failure
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone();
        crate::StoreHealth {
            accepting_appends: self.writer.is_some() && failure.is_none(),
            last_error: failure,
        }
    }

    fn try_lease(&self, _name: &str, _owner: &str, _ttl_ms: u64) -> Result<bool, StoreError> {
        Ok(true)
    }

    fn verify_chain(&self) -> Result<ChainReport, StoreError> {
        const BATCH: usize = 10_000;
        let mut verifier = ChainVerifier::default();
        let mut next_position = 1;
        loop {
            let events = self
                .read_all(next_position, BATCH)
                .map_err(|error| match error {
                    // SQLite reports a damaged file as an error while reading; name where we were.
                    StoreError::Backend(reason) => StoreError::Corrupted {
                        position: next_position,
                        reason,
                    },
                    other => other,
                })?;
            for event in &events {
                verifier.check(event)?;
            }
            if events.len() < BATCH {
                break;
            }
            next_position += BATCH as u64;
        }
        let report = verifier.report();
        let (recorded_position, recorded_hash) = self.recorded_head()?;
        // While serving, the recorded head may be ahead of what readers see (not yet synced).
        let serving_ahead = self.writer.is_some() && recorded_position > report.n_events;
        if !serving_ahead
            && (recorded_position != report.n_events || recorded_hash != report.head_hash)
        {
            return Err(StoreError::Corrupted {
                position: report.n_events.min(recorded_position) + 1,
                reason: format!(
                    "the log ends at position {} but its recorded head is position {recorded_position}: events were removed or added outside paycenter",
                    report.n_events
                ),
            });
        }
        Ok(report)
    }
}

/// The ids of the most recent events and their positions (see `Writer::event_ids`).
struct EventIdIndex {
    positions: HashMap<uuid::Uuid, u64>,
    /// The ids in `positions`, oldest first, for eviction.
    order: std::collections::VecDeque<uuid::Uuid>,
    window: usize,
}

impl EventIdIndex {
    /// Both tables are sized for the whole window at once (about 17 MB for 250,000 ids), so
    /// the memory they take does not depend on how long the log is, and never doubles on a
    /// resize under load.
    fn new(window: usize) -> EventIdIndex {
        assert!(window > 0, "an empty window would recognize no replay");
        EventIdIndex {
            positions: HashMap::with_capacity(window),
            order: std::collections::VecDeque::with_capacity(window),
            window,
        }
    }

    fn get(&self, event_id: &uuid::Uuid) -> Option<u64> {
        self.positions.get(event_id).copied()
    }

    /// Adds an id, forgetting the oldest beyond the window (first, so neither table ever
    /// holds more than the window it was sized for).
    fn remember(&mut self, event_id: uuid::Uuid, position: u64) {
        while self.order.len() >= self.window {
            let oldest = self.order.pop_front().expect("a full window");
            self.positions.remove(&oldest);
        }
        self.positions.insert(event_id, position);
        self.order.push_back(event_id);
    }

    /// Takes back the newest id (a rolled-back append), newest first.
    fn forget_newest(&mut self, event_id: &uuid::Uuid) {
        self.positions.remove(event_id);
        // Pushed at the back in this order, unless the window already let it go.
        if self.order.back() == Some(event_id) {
            self.order.pop_back();
        }
    }
}

/// The writer thread's state: the only code that writes the database.
struct Writer {
    connection: Connection,
    /// Last position written (committed, maybe not yet synced).
    head_position: u64,
    head_hash: [u8; 32],
    last_recorded_at_us: i64,
    max_batch_appends: usize,
    syncer: SyncSender<CommittedBatch>,
    /// The ids of the last `event_id_window` events and their positions: the idempotency
    /// index. The writer alone appends (it holds the directory lock), so this map is
    /// authoritative for its window. Built from the table's tail at open; about 60 bytes per
    /// id, so memory and start-up do not grow with the log.
    event_ids: EventIdIndex,
    /// Ids added to `event_ids` by the batch in progress, removed again if it rolls back.
    batch_event_ids: Vec<uuid::Uuid>,
    /// Shared with the store: the last events committed.
    recent: Arc<Mutex<RecentEvents>>,
    /// The events the batch in progress wrote, for `recent` and `tail` once it commits.
    batch_recorded: Vec<RecordedEvent>,
    /// Shared with the store and the indexer: the streams' events not yet in the index file.
    tail: Arc<SharedTail>,
    /// Appends wait while the tail holds this many events.
    max_tail_events: usize,
    /// Stream heads from the tail and the index file.
    heads: HeadLookup,
    /// The heads of the streams the batch in progress appended to (not yet in the tail).
    batch_heads: HashMap<String, u64>,
    /// Shared with the store: why appends stopped.
    failure: Arc<Mutex<Option<String>>>,
    /// Set once the syncer is gone: the writer takes no more appends.
    stopped: bool,
}

/// Committed batches waiting for the syncer before `append` blocks.
const SYNC_QUEUE_BATCHES: usize = 64;
/// Most committed batches one fsync acknowledges.
const MAX_BATCHES_PER_SYNC: usize = 1_024;

/// A committed batch waiting for its fsync.
struct CommittedBatch {
    last_position: u64,
    replies: Vec<Planned>,
}

/// The syncer thread's state.
struct Syncer {
    wal_file: File,
    head: Arc<Head>,
    failure: Arc<Mutex<Option<String>>>,
}

/// Records why the store stopped accepting appends (the first reason wins).
fn record_failure(failure: &Mutex<Option<String>>, reason: String) {
    let mut slot = failure
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    if slot.is_none() {
        tracing::error!(%reason, "the event store stopped accepting appends");
        *slot = Some(reason);
    }
}

/// Test builds only (`fault-injection` feature): while the file named by
/// `PAYCENTER_FAULT_FSYNC_FAIL_FILE` exists, every `fdatasync` of the log reports failure, so
/// tests can watch the store stop (tests run as root: file permissions stop nothing).
#[cfg(feature = "fault-injection")]
fn injected_fsync_failure() -> Option<std::io::Error> {
    let path = std::env::var_os("PAYCENTER_FAULT_FSYNC_FAIL_FILE")?;
    Path::new(&path)
        .exists()
        .then(|| std::io::Error::other("fault injected by PAYCENTER_FAULT_FSYNC_FAIL_FILE"))
}

#[cfg(not(feature = "fault-injection"))]
fn injected_fsync_failure() -> Option<std::io::Error> {
    None
}

impl Syncer {
    fn sync(&self) -> std::io::Result<()> {
        if let Some(error) = injected_fsync_failure() {
            return Err(error);
        }
        self.wal_file.sync_data()
    }

    fn run(self, receiver: Receiver<CommittedBatch>) {
        // Waking parked threads is handed to a thread of its own, so the next `fdatasync` need
        // not wait for it: with 64 threads appending, waking them one by one, a futex call
        // each, held the next sync back (`docs/benchmarks.md`, "answering parked threads").
        std::thread::scope(|scope| {
            let (to_answerer, parked) = sync_channel::<Vec<Planned>>(SYNC_QUEUE_BATCHES);
            let answerer = std::thread::Builder::new()
                .name("store-answerer".to_owned())
                .spawn_scoped(scope, move || {
                    for replies in parked {
                        answer(replies);
                    }
                });
            match answerer {
                Ok(_) => self.sync_loop(&receiver, Some(&to_answerer)),
                Err(error) => {
                    tracing::warn!(%error, "no thread to answer parked appenders; the syncer answers them");
                    self.sync_loop(&receiver, None);
                }
            }
            // Dropping the sender ends the answerer once it has answered everything handed to it.
            drop(to_answerer);
        });
    }

    /// Syncs committed batches until the writer is gone or an `fdatasync` fails; replies to
    /// parked threads go to `answerer` when there are more than a few.
    fn sync_loop(
        &self,
        receiver: &Receiver<CommittedBatch>,
        answerer: Option<&SyncSender<Vec<Planned>>>,
    ) {
        while let Ok(first) = receiver.recv() {
            let mut batches = vec![first];
            while batches.len() < MAX_BATCHES_PER_SYNC {
                match receiver.try_recv() {
                    Ok(batch) => batches.push(batch),
                    Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
                }
            }
            // After a failed fsync the kernel may have dropped the dirty pages: nothing written
            // since the last good sync can be trusted, so stop acknowledging anything. The
            // waiting callers' replies are dropped with the batches: they hear `Closed`.
            if let Err(error) = self.sync() {
                record_failure(
                    &self.failure,
                    format!(
                        "fdatasync of the event log failed, refusing to acknowledge more: {error}"
                    ),
                );
                return;
            }
            let last_position = batches.last().expect("non-empty").last_position;
            {
                let mut position = self.head.position.lock().expect("head lock");
                assert!(
                    last_position >= *position,
                    "the durable head never moves back"
                );
                *position = last_position;
            }
            self.head.advanced.notify_all();
            let mut to_threads = Vec::new();
            for planned in batches.into_iter().flat_map(|batch| batch.replies) {
                match planned.waiter {
                    Waiter::Thread => to_threads.push(planned),
                    Waiter::Task => planned.answer(),
                }
            }
            match answerer {
                Some(answerer) if to_threads.len() > MAX_THREADS_WOKEN_BY_SYNCER => {
                    if let Err(returned) = answerer.send(to_threads) {
                        answer(returned.0);
                    }
                }
                _ => answer(to_threads),
            }
        }
    }
}

/// Parked threads the syncer wakes itself; more are handed to the answerer. One or two cost
/// less than the hand-over, which delays a lone appender's answer by a thread switch.
const MAX_THREADS_WOKEN_BY_SYNCER: usize = 2;

/// Sends each reply.
fn answer(replies: Vec<Planned>) {
    for planned in replies {
        planned.answer();
    }
}

/// A validated append waiting in the current batch.
struct Planned {
    reply: Reply,
    waiter: Waiter,
    outcome: Result<AppendOutcome, StoreError>,
}

impl Planned {
    /// Sends the reply. A caller that gave up waiting is no reason to stop.
    fn answer(self) {
        let _ = self.reply.send(self.outcome);
    }
}

impl Writer {
    /// When the last event was recorded. The writer never records an instant before the last
    /// one (`try_write_batch` takes the later of now and it), so the log's last row holds the
    /// latest: read by the primary key, not by a scan of the whole table (seconds at 10M
    /// events, at every start).
    fn load_last_recorded_at(&self) -> Result<i64, StoreError> {
        let last: Option<i64> = self
            .connection
            .query_row(
                "SELECT recorded_at_us FROM events ORDER BY global_position DESC LIMIT 1",
                [],
                |row| row.get(0),
            )
            .optional()?;
        Ok(last.unwrap_or(0))
    }

    /// Fills the idempotency index from the table's last `event_id_window` events, refusing
    /// a log that repeats an id there.
    /// Loads the window of event ids through `reader`, a connection of its own: read through
    /// the writer's, the window's pages (every row of the last events) would stay in the
    /// writer's page cache, and the memory at start would grow with the window.
    fn load_event_ids(&mut self, reader: &Connection) -> Result<(), StoreError> {
        let first_position = self
            .head_position
            .saturating_sub(self.event_ids.window as u64);
        let mut select = reader.prepare(
            "SELECT event_id, global_position FROM events WHERE global_position > ?1 ORDER BY global_position",
        )?;
        let mut rows = select.query([first_position as i64])?;
        while let Some(row) = rows.next()? {
            let position = row.get::<_, i64>(1)? as u64;
            let event_id = blob16(Some(row.get(0)?), "event_id")?.expect("not null");
            if self.event_ids.get(&event_id).is_some() {
                return Err(StoreError::Corrupted {
                    position,
                    reason: format!("event id {event_id} is stored twice"),
                });
            }
            self.event_ids.remember(event_id, position);
        }
        Ok(())
    }

    fn run(mut self, receiver: Receiver<AppendRequest>) {
        while let Some(batch) = next_batch(&receiver, self.max_batch_appends) {
            let failure = self.failure.clone();
            let has_room = self.tail.wait_for_room(self.max_tail_events, || {
                failure
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .is_some()
            });
            if !has_room {
                // The indexer stopped (its reason is recorded): no append is taken any more.
                let reason = self
                    .failure
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner())
                    .clone()
                    .unwrap_or_default();
                for request in batch {
                    let _ = request.reply.send(Err(StoreError::Backend(reason.clone())));
                }
                return;
            }
            self.write_batch(batch);
            if self.stopped {
                return;
            }
        }
    }

    fn write_batch(&mut self, mut batch: Vec<AppendRequest>) {
        let start_position = self.head_position;
        let start_hash = self.head_hash;
        let start_recorded_at_us = self.last_recorded_at_us;
        let written = self.try_write_batch(&mut batch);
        // The index file's snapshot is not kept between batches: it would hold its
        // checkpoints back.
        self.heads.end_snapshot();
        let outcomes = match written {
            Ok(outcomes) => outcomes,
            Err(error) => {
                // Nothing of the batch is durable: roll back and fail every append in it.
                let _ = self.connection.execute_batch("ROLLBACK");
                self.batch_recorded.clear();
                self.batch_heads.clear();
                for event_id in self.batch_event_ids.drain(..).rev() {
                    self.event_ids.forget_newest(&event_id);
                }
                self.head_position = start_position;
                self.head_hash = start_hash;
                self.last_recorded_at_us = start_recorded_at_us;
                let reason = error.to_string();
                for request in batch {
                    let _ = request.reply.send(Err(StoreError::Backend(reason.clone())));
                }
                return;
            }
        };
        assert_eq!(outcomes.len(), batch.len(), "one outcome per append");
        self.batch_event_ids.clear();
        let replies = batch
            .into_iter()
            .zip(outcomes)
            .map(|(request, outcome)| Planned {
                reply: request.reply,
                waiter: request.waiter,
                outcome,
            })
            .collect();
        // Refusals (wrong revision, conflicts) and replays of stored ids are answered after the
        // sync too: a replay may point at events that are committed but not yet durable.
        let committed = CommittedBatch {
            last_position: self.head_position,
            replies,
        };
        if self.syncer.send(committed).is_err() {
            // The syncer stopped (a failed fsync): dropping the replies fails the callers, and
            // the writer stops too, so every later append is refused with `Closed`.
            record_failure(
                &self.failure,
                "the store syncer has stopped; no append can be made durable".to_owned(),
            );
            self.stopped = true;
        }
    }

    /// Writes the batch's appends in one transaction. Their events' text moves into the
    /// recorded events: a failed batch only answers its callers, so nothing reads it again.
    fn try_write_batch(
        &mut self,
        batch: &mut [AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        // Cached like every other statement: `execute_batch` would compile it again each time.
        self.connection
            .prepare_cached("BEGIN IMMEDIATE")?
            .execute([])?;
        // One clock reading per batch, never behind the last recorded time, so `recorded_at`
        // is monotonic along the log (audits "as of" a time rely on it).
        let now_us = Utc::now().timestamp_micros().max(self.last_recorded_at_us);
        let recorded_at = DateTime::from_timestamp_micros(now_us).expect("clock in range");
        let mut outcomes = Vec::with_capacity(batch.len());
        let head_before = self.head_position;
        for request in batch {
            outcomes.push(self.append_one(request, recorded_at)?);
        }
        if self.head_position != head_before {
            self.connection
                .prepare_cached("INSERT INTO chain_head (id, position, hash) VALUES (1, ?1, ?2) \
                                 ON CONFLICT (id) DO UPDATE SET position = excluded.position, hash = excluded.hash")?
                .execute(params![self.head_position as i64, &self.head_hash[..]])?;
        }
        self.connection.prepare_cached("COMMIT")?.execute([])?;
        self.last_recorded_at_us = now_us;
        self.batch_heads.clear();
        self.tail
            .push_committed(self.batch_recorded.iter().map(|event| {
                (
                    event.global_position,
                    event.stream_id.as_str(),
                    event.stream_revision,
                    event.hash,
                )
            }));
        self.recent
            .lock()
            .expect("recent events lock")
            .push_committed(std::mem::take(&mut self.batch_recorded));
        Ok(outcomes)
    }

    /// Checks one append against the batch-so-far and writes its rows. An `Err` inside the
    /// outer `Ok` is the append's own refusal (nothing written); the outer `Err` is I/O.
    fn append_one(
        &mut self,
        request: &mut AppendRequest,
        recorded_at: DateTime<Utc>,
    ) -> Result<Result<AppendOutcome, StoreError>, StoreError> {
        if let Some(replayed) = self.find_stored(request)? {
            return Ok(replayed);
        }
        let current = self.stream_head(&request.stream_id)?;
        if !request.expected.is_satisfied_by(current) {
            return Ok(Err(self.wrong_revision(request, current)));
        }
        let first_position = self.head_position + 1;
        let mut revision = current.map_or(0, |revision| revision + 1);
        let mut insert = self.connection.prepare_cached(
            "INSERT INTO events (global_position, stream_id, stream_revision, event_id, event_type, schema_version, \
             recorded_at_us, correlation_id, causation_id, payload, prev_hash, hash) \
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
        )?;
        let recorded_at_us = recorded_at.timestamp_micros();
        for new_event in &mut request.events {
            let global_position = self.head_position + 1;
            let hash = HashInput {
                global_position,
                stream_id: &request.stream_id,
                stream_revision: revision,
                event_id: &new_event.event_id,
                event_type: &new_event.event_type,
                schema_version: new_event.schema_version,
                recorded_at_us,
                correlation_id: new_event.correlation_id,
                causation_id: new_event.causation_id,
                payload: &new_event.payload,
            }
            .hash(&self.head_hash);
            let inserted = insert.execute(params![
                global_position as i64,
                request.stream_id,
                revision as i64,
                &new_event.event_id.as_bytes()[..],
                new_event.event_type,
                new_event.schema_version,
                recorded_at_us,
                new_event
                    .correlation_id
                    .as_ref()
                    .map(|id| &id.as_bytes()[..]),
                new_event.causation_id.as_ref().map(|id| &id.as_bytes()[..]),
                new_event.payload,
                &self.head_hash[..],
                &hash[..],
            ]);
            inserted?;
            self.event_ids.remember(new_event.event_id, global_position);
            self.batch_event_ids.push(new_event.event_id);
            self.batch_recorded.push(RecordedEvent {
                global_position,
                stream_id: request.stream_id.clone(),
                stream_revision: revision,
                event_id: new_event.event_id,
                event_type: std::mem::take(&mut new_event.event_type),
                schema_version: new_event.schema_version,
                recorded_at,
                correlation_id: new_event.correlation_id,
                causation_id: new_event.causation_id,
                payload: std::mem::take(&mut new_event.payload),
                prev_hash: self.head_hash,
                hash,
            });
            self.head_position = global_position;
            self.head_hash = hash;
            revision += 1;
        }
        self.batch_heads
            .insert(request.stream_id.clone(), revision - 1);
        Ok(Ok(AppendOutcome {
            first_position,
            last_position: self.head_position,
            last_revision: revision - 1,
            already_stored: false,
        }))
    }

    /// The revision of the stream's last event, `None` when it has none: from the batch in
    /// progress, else the tail, else the index file.
    fn stream_head(&mut self, stream_id: &str) -> Result<Option<u64>, StoreError> {
        if let Some(&revision) = self.batch_heads.get(stream_id) {
            return Ok(Some(revision));
        }
        self.heads.head(&self.tail, stream_id)
    }

    fn wrong_revision(&self, request: &AppendRequest, actual: Option<u64>) -> StoreError {
        StoreError::WrongExpectedRevision {
            stream_id: request.stream_id.clone(),
            expected: request.expected,
            actual,
        }
    }

    /// A re-append of stored event ids answers their original positions; a partial overlap is
    /// a conflict (two different commands claimed the same id).
    fn find_stored(
        &self,
        request: &AppendRequest,
    ) -> Result<Option<Result<AppendOutcome, StoreError>>, StoreError> {
        // Nearly every append is new: answered without collecting the positions.
        if !request
            .events
            .iter()
            .any(|event| self.event_ids.get(&event.event_id).is_some())
        {
            return Ok(None);
        }
        let positions: Vec<Option<u64>> = request
            .events
            .iter()
            .map(|event| self.event_ids.get(&event.event_id))
            .collect();
        let n_stored = positions
            .iter()
            .filter(|position| position.is_some())
            .count();
        let conflict = |event_idx: usize| {
            Ok(Some(Err(StoreError::EventIdConflict {
                event_id: request.events[event_idx].event_id,
            })))
        };
        if n_stored < positions.len() {
            // Name the first id that breaks the pattern set by the append's first id.
            let first_is_stored = positions[0].is_some();
            let breaking = positions
                .iter()
                .position(|position| position.is_some() != first_is_stored)
                .expect("mixed stored and new ids");
            return conflict(breaking);
        }
        // Every id is stored: a replay if they are this stream's, in this order.
        let mut lookup = self.connection.prepare_cached(
            "SELECT stream_id, stream_revision FROM events WHERE global_position = ?1",
        )?;
        let mut found: Vec<(u64, u64)> = Vec::with_capacity(positions.len());
        for (event_idx, position) in positions.into_iter().enumerate() {
            let position = position.expect("every id is stored");
            let (stream_id, revision): (String, i64) = lookup
                .query_row(params![position as i64], |row| {
                    Ok((row.get(0)?, row.get(1)?))
                })?;
            if stream_id != request.stream_id {
                return conflict(event_idx);
            }
            found.push((position, revision as u64));
        }
        Ok(Some(replayed(&found, request.events[0].event_id)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance;

    /// The bundled SQLite is built with the options of `.cargo/config.toml`: no page cache
    /// shared by every connection behind one mutex, no mutex around every allocation for
    /// statistics. (A build that lost them, say under another `LIBSQLITE3_FLAGS`, still
    /// works, slower; this says so.)
    #[test]
    fn sqlite_is_built_without_process_wide_mutexes() {
        let connection = Connection::open_in_memory().unwrap();
        let mut statement = connection.prepare("PRAGMA compile_options").unwrap();
        let options: Vec<String> = statement
            .query_map([], |row| row.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert!(
            !options
                .iter()
                .any(|option| option == "ENABLE_MEMORY_MANAGEMENT"),
            "{options:?}"
        );
        assert!(
            options.iter().any(|option| option == "DEFAULT_MEMSTATUS=0"),
            "{options:?}"
        );
    }

    /// Reads are prepared once per connection: a statement whose plan depends on a bound value
    /// (a `LIMIT ?`) is compiled again at every run, which a profile of the payment path showed.
    #[test]
    fn reads_are_not_prepared_again_at_every_run() {
        fn assert_prepared_once(store: &SqliteStore, statements: &[&str]) {
            let idle = store.idle_readers.lock().unwrap();
            assert_eq!(idle.len(), 1, "one pooled reader served every read");
            for sql in statements {
                let statement = idle[0].prepare_cached(sql).unwrap();
                // (The open read the log too.)
                assert!(
                    statement.get_status(rusqlite::StatementStatus::Run) >= 20,
                    "{sql}"
                );
                assert_eq!(
                    statement.get_status(rusqlite::StatementStatus::RePrepare),
                    0,
                    "{sql}"
                );
            }
        }
        let dir = tempfile::tempdir().unwrap();
        // Nothing kept in memory: every read is a query.
        let config = SqliteConfig {
            recent_events: 0,
            ..SqliteConfig::default()
        };
        let store = SqliteStore::open(dir.path(), config.clone()).unwrap();
        for round in 0..20u64 {
            store
                .append(
                    &format!("s-{round}"),
                    ExpectedRevision::NoStream,
                    vec![conformance::event("thing.happened", "{}")],
                )
                .unwrap();
            assert_eq!(store.read_all(round + 1, 10).unwrap().len(), 1);
            assert_eq!(
                store.read_stream(&format!("s-{round}"), 0).unwrap().len(),
                1
            );
        }
        // The streams are in the tail (far below one fill): read by position.
        assert_prepared_once(&store, &[READ_ALL_SQL, READ_EVENT_AT_SQL]);
        drop(store);
        // Reopened with a tail of at most 4 events, the open moves all 20 into the index file.
        let store = SqliteStore::open(
            dir.path(),
            SqliteConfig {
                stream_index_fill_events: 2,
                max_stream_tail_events: 4,
                ..config
            },
        )
        .unwrap();
        for round in 0..20u64 {
            assert_eq!(
                store.read_stream(&format!("s-{round}"), 0).unwrap().len(),
                1
            );
        }
        assert_prepared_once(&store, &[READ_INDEXED_STREAM_SQL]);
    }

    /// `read_all` from memory answers exactly what the file holds: the same events, byte for
    /// byte and hash for hash, from any position, across the edge of what is kept, through the
    /// head and past it; a store reopened (nothing in memory yet) reads the file.
    #[test]
    fn recent_events_read_as_the_file_holds_them() {
        let dir = tempfile::tempdir().unwrap();
        let config = SqliteConfig {
            recent_events: 50,
            ..SqliteConfig::default()
        };
        let store = SqliteStore::open(dir.path(), config.clone()).unwrap();
        let mut n_events = 0u64;
        for round in 0..40u64 {
            let events: Vec<NewEvent> = (0..1 + round % 3)
                .map(|idx| {
                    conformance::event(
                        "thing.happened",
                        &format!("{{\"round\":{round},\"idx\":{idx}}}"),
                    )
                })
                .collect();
            n_events += events.len() as u64;
            store
                .append(&format!("s-{}", round % 7), ExpectedRevision::Any, events)
                .unwrap();
        }
        assert_eq!(store.head_position().unwrap(), n_events);
        let file = SqliteStore::open_read_only(dir.path()).unwrap();
        let kept_from = n_events - 49;
        for (from, limit) in [
            (1, 1_000),
            (kept_from - 1, 10),
            (kept_from, 1_000),
            (kept_from + 7, 5),
            (n_events, 10),
            (n_events + 1, 10),
            (n_events + 100, 10),
        ] {
            let from_memory = store.read_all(from, limit).unwrap();
            let from_file = file.read_all(from, limit).unwrap();
            assert_eq!(from_memory, from_file, "from {from}, limit {limit}");
        }
        assert_eq!(store.read_all(kept_from, 1_000).unwrap().len(), 50);
        assert!(store
            .recent
            .lock()
            .unwrap()
            .read(kept_from - 1, n_events, 10)
            .is_none());
        assert_eq!(
            store
                .recent
                .lock()
                .unwrap()
                .read(kept_from, n_events, 1_000)
                .unwrap()
                .len(),
            50,
            "the last 50 are kept"
        );
        drop(store);
        let reopened = SqliteStore::open(dir.path(), config).unwrap();
        assert_eq!(
            reopened.read_all(1, 1_000).unwrap(),
            file.read_all(1, 1_000).unwrap()
        );
    }
}
