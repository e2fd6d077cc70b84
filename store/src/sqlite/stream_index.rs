//! The stream index of the embedded store: which positions hold each stream's events, kept out
//! of the log's file.
//!
//! An index on `(stream_id, stream_revision)` inside the log's file costs a random B-tree leaf
//! per append, written whole into the WAL and fsynced with its batch: with 64 appends per
//! batch that was 7 KB written per 215-byte event (docs/benchmarks.md). Instead:
//! - the log's file holds the events by position only, so a batch writes the file's last pages;
//! - the events after the last fill are indexed in memory ([`StreamTail`]), where the writer
//!   finds stream heads and readers find the newest events of a stream;
//! - the indexer thread moves durable events from the tail into a second SQLite file,
//!   [`INDEX_FILE_NAME`], in chunks sorted by stream, off the append path.
//!
//! That file is derived from the log. It records the last position it has indexed and that
//! event's hash, in the same transaction as the entries; a store opened with the file missing,
//! from another log, or ahead of the log refills it from the log (deleting it while the service
//! is stopped is always safe). A reader takes the tail's part of a stream first and asks the
//! file second: an entry missing from the tail was removed after the fill that holds it
//! committed, so the file, read afterwards, has it.

use std::collections::{HashMap, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use rusqlite::{params, Connection, OptionalExtension};

use super::known_streams::{KnownStreams, SavedFilter, SAVE_INTERVAL};
use super::{blob32, open_connection, read_position_and_hash, record_failure, Head};
use crate::StoreError;

/// The index file inside the data directory.
pub const INDEX_FILE_NAME: &str = "streams.sqlite3";

const INDEX_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS stream_index (
    stream_id       TEXT    NOT NULL,
    stream_revision INTEGER NOT NULL,
    global_position INTEGER NOT NULL,
    PRIMARY KEY (stream_id, stream_revision)
) WITHOUT ROWID;
-- The last event the index holds, with its hash: the log it was filled from.
CREATE TABLE IF NOT EXISTS indexed_through (
    id       INTEGER PRIMARY KEY CHECK (id = 1),
    position INTEGER NOT NULL,
    hash     BLOB    NOT NULL
);
";

/// Events read from the log per transaction when the index file is refilled at open.
const OPEN_FILL_CHUNK_EVENTS: usize = 262_144;

/// One event of the tail.
#[derive(Debug, Clone)]
struct TailEntry {
    position: u64,
    stream_id: Arc<str>,
    revision: u64,
    hash: [u8; 32],
}

/// The events after the index file's last fill, by stream.
#[derive(Debug, Default)]
pub(super) struct StreamTail {
    /// Every event after this position is here; those at or before it are in the index file.
    indexed_through: u64,
    /// The events after `indexed_through`, in log order: what the next fill takes.
    order: VecDeque<TailEntry>,
    /// Each stream's events after `indexed_through`, as (revision, position), by revision.
    streams: HashMap<Arc<str>, Vec<(u64, u64)>>,
}

/// A stream's events in the tail, as a reader sees them.
#[derive(Debug, Default)]
pub(super) struct TailSlice {
    /// The stream's first revision in the tail, durable or not: the index file holds the
    /// revisions below it. `None` when the tail has none of the stream.
    pub first_revision: Option<u64>,
    /// (revision, position) of the stream's events in the tail from the revision asked for,
    /// through the position asked for.
    pub events: Vec<(u64, u64)>,
}

impl StreamTail {
    /// Adds a committed event, which follows the last one kept.
    fn push(&mut self, position: u64, stream_id: &str, revision: u64, hash: [u8; 32]) {
        if let Some(last) = self.order.back() {
            assert_eq!(position, last.position + 1, "the tail follows the log");
        } else {
            assert_eq!(
                position,
                self.indexed_through + 1,
                "the tail follows the index"
            );
        }
        let key = match self.streams.get_key_value(stream_id) {
            Some((key, _)) => key.clone(),
            None => Arc::from(stream_id),
        };
        let revisions = self.streams.entry(key.clone()).or_default();
        if let Some(&(last_revision, _)) = revisions.last() {
            assert_eq!(revision, last_revision + 1, "a stream's revisions follow");
        }
        revisions.push((revision, position));
        self.order.push_back(TailEntry {
            position,
            stream_id: key,
            revision,
            hash,
        });
    }

    /// The last position the index file holds.
    pub fn indexed_through(&self) -> u64 {
        self.indexed_through
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    /// The revision of the stream's last event in the tail.
    pub fn head(&self, stream_id: &str) -> Option<u64> {
        self.streams
            .get(stream_id)
            .and_then(|revisions| revisions.last())
            .map(|&(revision, _)| revision)
    }

    /// The stream's events in the tail from `from_revision` through `through_position`.
    pub fn slice(&self, stream_id: &str, from_revision: u64, through_position: u64) -> TailSlice {
        let Some(revisions) = self.streams.get(stream_id) else {
            return TailSlice::default();
        };
        TailSlice {
            first_revision: revisions.first().map(|&(revision, _)| revision),
            events: revisions
                .iter()
                .filter(|&&(revision, position)| {
                    revision >= from_revision && position <= through_position
                })
                .copied()
                .collect(),
        }
    }

    /// How many events of the tail are at or before `position`.
    fn count_through(&self, position: u64) -> usize {
        self.order
            .partition_point(|entry| entry.position <= position)
    }

    /// The first `count` events of the tail.
    fn first_entries(&self, count: usize) -> Vec<TailEntry> {
        self.order.iter().take(count).cloned().collect()
    }

    /// Drops the events through `position`, which the index file now holds.
    fn forget_through(&mut self, position: u64) {
        let mut dropped_per_stream: HashMap<Arc<str>, usize> = HashMap::new();
        while self
            .order
            .front()
            .is_some_and(|entry| entry.position <= position)
        {
            let entry = self.order.pop_front().expect("a front entry");
            *dropped_per_stream.entry(entry.stream_id).or_default() += 1;
        }
        for (stream_id, n_dropped) in dropped_per_stream {
            let revisions = self.streams.get_mut(&stream_id).expect("a tail stream");
            // A stream's oldest events are the first dropped.
            revisions.drain(..n_dropped);
            if revisions.is_empty() {
                self.streams.remove(&stream_id);
            }
        }
        self.indexed_through = position.max(self.indexed_through);
    }
}

/// The tail, shared by the writer (adds), the indexer (removes) and readers.
#[derive(Debug, Default)]
pub(super) struct SharedTail {
    pub state: Mutex<StreamTail>,
    /// Signalled when the tail grows or shrinks.
    changed: Condvar,
}

impl SharedTail {
    /// Wakes the indexer if it waits for the tail to grow (it has something else to do).
    pub fn wake(&self) {
        self.changed.notify_all();
    }

    /// Adds a committed batch: (position, stream, revision, hash) in log order.
    pub fn push_committed<'a>(&self, events: impl Iterator<Item = (u64, &'a str, u64, [u8; 32])>) {
        let mut tail = self.state.lock().expect("stream tail lock");
        for (position, stream_id, revision, hash) in events {
            tail.push(position, stream_id, revision, hash);
        }
        drop(tail);
        self.changed.notify_all();
    }

    /// Blocks while the tail holds `max_events` or more, so memory stays bounded when the
    /// indexer falls behind. Gives up (`false`) when `give_up` says so.
    pub fn wait_for_room(&self, max_events: usize, give_up: impl Fn() -> bool) -> bool {
        let mut tail = self.state.lock().expect("stream tail lock");
        while tail.len() >= max_events {
            if give_up() {
                return false;
            }
            tail = self
                .changed
                .wait_timeout(tail, Duration::from_millis(50))
                .expect("stream tail lock")
                .0;
        }
        true
    }
}

/// Where the index file is and how it is filled.
#[derive(Debug, Clone)]
pub(super) struct IndexFile {
    pub path: PathBuf,
}

impl IndexFile {
    pub fn in_dir(data_dir: &Path) -> IndexFile {
        IndexFile {
            path: data_dir.join(INDEX_FILE_NAME),
        }
    }

    pub fn exists(&self) -> bool {
        self.path.exists()
    }

    /// Opens the file for writing (creating it), with its schema.
    fn open_for_writing(&self) -> Result<Connection, StoreError> {
        let connection = open_connection(&self.path, false)?;
        let journal_mode: String =
            connection.query_row("PRAGMA journal_mode=WAL", [], |row| row.get(0))?;
        if !journal_mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::Backend(format!(
                "could not enable WAL on the stream index (got {journal_mode})"
            )));
        }
        // NORMAL: a power loss may take back the last fills, never leave the file torn; what
        // it takes back is refilled from the log at the next open. The WAL is cut back after
        // its checkpoints (a fill at open is one large transaction that grows it past the
        // checkpoint's threshold).
        connection.execute_batch(
            "PRAGMA synchronous=NORMAL; PRAGMA wal_autocheckpoint=16384; PRAGMA cache_size=-16384; PRAGMA journal_size_limit=134217728;",
        )?;
        connection.execute_batch(INDEX_SCHEMA)?;
        Ok(connection)
    }

    /// Removes the file and its WAL, to refill it from the log.
    fn remove(&self) -> Result<(), StoreError> {
        for suffix in ["", "-wal", "-shm"] {
            let mut path = self.path.clone().into_os_string();
            path.push(suffix);
            match std::fs::remove_file(&path) {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }
}

/// The last event the file indexed, and its hash.
fn read_indexed_through(connection: &Connection) -> Result<(u64, [u8; 32]), StoreError> {
    read_position_and_hash(
        connection,
        "SELECT position, hash FROM indexed_through WHERE id = 1",
    )
}

/// Whether the index file was filled from this log: the event it indexed last
/// (`indexed`, from [`read_indexed_through`]) is in the log, at or below `log_head`, with the
/// hash it recorded.
fn belongs_to_log(
    (indexed_through, indexed_hash): (u64, [u8; 32]),
    log: &Connection,
    log_head: u64,
) -> Result<bool, StoreError> {
    if indexed_through == 0 {
        return Ok(true);
    }
    if indexed_through > log_head {
        return Ok(false);
    }
    let hash: Option<Vec<u8>> = log
        .query_row(
            "SELECT hash FROM events WHERE global_position = ?1",
            [indexed_through as i64],
            |row| row.get(0),
        )
        .optional()?;
    Ok(hash.is_some_and(|hash| hash[..] == indexed_hash[..]))
}

/// For a reader without the writer: whether the index file exists and belongs to the log as
/// it stands (a writer refills one that does not at its next open; until then, readers scan).
pub(super) fn usable_by_reader(file: &IndexFile, log: &Connection) -> Result<bool, StoreError> {
    if !file.exists() {
        return Ok(false);
    }
    let log_head: Option<i64> =
        log.query_row("SELECT MAX(global_position) FROM events", [], |row| {
            row.get(0)
        })?;
    // One that cannot be read is not used: the reader scans, and the writer's next open
    // replaces it.
    let usable = open_connection(&file.path, true)
        .and_then(|index| read_indexed_through(&index))
        .and_then(|indexed| belongs_to_log(indexed, log, log_head.unwrap_or(0) as u64));
    Ok(usable.unwrap_or(false))
}

/// Writes `entries` (sorted here by stream) and moves `indexed_through` to the last of them,
/// in one transaction.
fn write_fill(connection: &Connection, entries: &mut [TailEntry]) -> Result<u64, StoreError> {
    let last = entries.last().expect("a fill is not empty").clone();
    // Sorted, consecutive inserts land in the same leaves.
    entries.sort_unstable_by(|a, b| (&a.stream_id, a.revision).cmp(&(&b.stream_id, b.revision)));
    connection.execute_batch("BEGIN IMMEDIATE")?;
    let written = (|| -> Result<(), StoreError> {
        let mut insert = connection.prepare_cached(
            "INSERT INTO stream_index (stream_id, stream_revision, global_position) VALUES (?1, ?2, ?3)",
        )?;
        for entry in entries.iter() {
            insert.execute(params![
                &*entry.stream_id,
                entry.revision as i64,
                entry.position as i64
            ])?;
        }
        connection
            .prepare_cached(
                "INSERT INTO indexed_through (id, position, hash) VALUES (1, ?1, ?2) \
                 ON CONFLICT (id) DO UPDATE SET position = excluded.position, hash = excluded.hash",
            )?
            .execute(params![last.position as i64, &last.hash[..]])?;
        Ok(())
    })();
    match written {
        Ok(()) => {
            connection.execute_batch("COMMIT")?;
            Ok(last.position)
        }
        Err(error) => {
            let _ = connection.execute_batch("ROLLBACK");
            Err(error)
        }
    }
}

/// The filter saved by the last process (see `known_streams`), made to hold every stream of
/// the index file through `indexed_through`: `None` when there is none to use, which leaves the
/// indexer to scan the file. The saved filter must come from this log (the event at its
/// position has its hash); the streams of the log's events after its position, through
/// `indexed_through`, are added to it.
pub(super) fn saved_filter_for(
    data_dir: &Path,
    log: &Connection,
    log_head: u64,
    indexed_through: u64,
    max_bytes: usize,
) -> Result<Option<SavedFilter>, StoreError> {
    let Some(mut saved) = SavedFilter::load(data_dir, max_bytes) else {
        return Ok(None);
    };
    if !belongs_to_log((saved.position, saved.hash), log, log_head)? {
        tracing::warn!(
            position = saved.position,
            "the saved filter of known streams is not of this log; the index is scanned instead"
        );
        return Ok(None);
    }
    if saved.position < indexed_through {
        let mut select = log.prepare(
            "SELECT stream_id FROM events WHERE global_position > ?1 AND global_position <= ?2",
        )?;
        let mut rows = select.query(params![saved.position as i64, indexed_through as i64])?;
        while let Some(row) = rows.next()? {
            let stream_id: String = row.get(0)?;
            saved.insert(&stream_id);
        }
    }
    Ok(Some(saved))
}

/// Brings the index file up to the log at open: refills it when it does not belong to this
/// log, indexes whatever lies beyond the tail's bound, and returns the connection with the
/// tail of the events it leaves out (those after its last fill).
pub(super) fn open_and_catch_up(
    file: &IndexFile,
    log: &Connection,
    log_head: u64,
    max_tail_events: usize,
) -> Result<(Connection, StreamTail), StoreError> {
    // The file is derived: one that cannot be opened as an index (damaged, not a database) is
    // replaced, not a reason to refuse to start. An error that removing it does not cure (a
    // directory that refuses writes) still stops the open.
    let opened = file.open_for_writing().and_then(|connection| {
        let indexed = read_indexed_through(&connection)?;
        Ok((connection, indexed))
    });
    let (mut connection, indexed) = match opened {
        Ok(opened) => opened,
        Err(error) => {
            tracing::warn!(%error, "the stream index file cannot be read; refilling it from the log");
            file.remove()?;
            (file.open_for_writing()?, (0, crate::chain::GENESIS_HASH))
        }
    };
    let mut indexed_through = indexed.0;
    if !belongs_to_log(indexed, log, log_head)? {
        tracing::warn!(
            indexed_through,
            log_head,
            "the stream index does not match the log; refilling it from the log"
        );
        drop(connection);
        file.remove()?;
        connection = file.open_for_writing()?;
        indexed_through = 0;
    }
    let mut tail = StreamTail {
        indexed_through,
        ..StreamTail::default()
    };
    let mut select = log.prepare(
        "SELECT global_position, stream_id, stream_revision, hash FROM events \
         WHERE global_position > ?1 AND global_position <= ?2 ORDER BY global_position",
    )?;
    let mut chunk: Vec<TailEntry> = Vec::new();
    loop {
        let remaining = log_head - indexed_through;
        if remaining == 0 {
            break;
        }
        // What is left goes into the tail when it leaves the tail room to grow; more is
        // written to the file first, in chunks.
        let in_memory = remaining <= (max_tail_events / 2) as u64;
        let through = if in_memory {
            log_head
        } else {
            indexed_through + remaining.min(OPEN_FILL_CHUNK_EVENTS as u64)
        };
        let mut rows = select.query(params![indexed_through as i64, through as i64])?;
        while let Some(row) = rows.next()? {
            let position = row.get::<_, i64>(0)? as u64;
            let stream_id: String = row.get(1)?;
            let revision = row.get::<_, i64>(2)? as u64;
            let hash = blob32(row.get(3)?, "hash")?;
            if in_memory {
                tail.push(position, &stream_id, revision, hash);
            } else {
                chunk.push(TailEntry {
                    position,
                    stream_id: Arc::from(stream_id),
                    revision,
                    hash,
                });
            }
        }
        if in_memory {
            break;
        }
        let n_read = chunk.len() as u64;
        assert_eq!(n_read, through - indexed_through, "the log has no holes");
        indexed_through = write_fill(&connection, &mut chunk)?;
        chunk.clear();
        tail.indexed_through = indexed_through;
        tracing::info!(
            indexed_through,
            log_head,
            "stream index filled from the log"
        );
    }
    drop(select);
    Ok((connection, tail))
}

/// The writer's lookups of stream heads: the tail, else the index file. A stream the tail does
/// not hold cannot enter it meanwhile (only the writer adds to it), so the file, read after the
/// tail, has every event of it, provided its snapshot holds every fill that moved events out
/// of the tail.
pub(super) struct HeadLookup {
    reader: Connection,
    /// Spares the lookup in the file for a stream it certainly does not hold.
    known: Arc<KnownStreams>,
    /// While `reader` holds a read transaction open: the tail's `indexed_through` when it
    /// began. One transaction serves a batch's lookups (each transaction takes and releases the
    /// WAL's shared-memory locks, a third of the writer's time when every lookup had its own);
    /// it is begun again when a fill has moved events out of the tail since.
    snapshot: Option<u64>,
}

impl HeadLookup {
    pub fn new(reader: Connection, known: Arc<KnownStreams>) -> HeadLookup {
        HeadLookup {
            reader,
            known,
            snapshot: None,
        }
    }

    /// The revision of the stream's last event in the tail or the file.
    pub fn head(&mut self, tail: &SharedTail, stream_id: &str) -> Result<Option<u64>, StoreError> {
        let indexed_through = {
            let tail = tail.state.lock().expect("stream tail lock");
            if let Some(revision) = tail.head(stream_id) {
                return Ok(Some(revision));
            }
            tail.indexed_through()
        };
        // The indexer adds a fill's streams to the filter before it takes them out of the tail
        // (under the tail's lock, taken above after it): a stream absent from the tail is in
        // the filter whenever the file holds it.
        if !self.known.file_may_hold(stream_id) {
            return Ok(None);
        }
        // A snapshot begun before a later fill would miss the events that fill moved out of
        // the tail.
        if self.snapshot != Some(indexed_through) {
            self.end_snapshot();
            // Deferred: the snapshot is taken at the first read, after `indexed_through` was
            // read, so it holds at least the fills through it.
            self.reader.execute_batch("BEGIN")?;
            self.snapshot = Some(indexed_through);
        }
        let head: Option<i64> = self
            .reader
            .prepare_cached("SELECT MAX(stream_revision) FROM stream_index WHERE stream_id = ?1")?
            .query_row(params![stream_id], |row| row.get(0))?;
        Ok(head.map(|revision| revision as u64))
    }

    /// Ends the read transaction, so the file's checkpoints are not held back.
    pub fn end_snapshot(&mut self) {
        if self.snapshot.take().is_some() {
            let _ = self.reader.execute_batch("COMMIT");
        }
    }
}

/// The indexer thread's state: the only code that writes the index file.
pub(super) struct Indexer {
    pub connection: Connection,
    pub tail: Arc<SharedTail>,
    pub head: Arc<Head>,
    /// Durable events in the tail before a fill starts; also the most one fill takes.
    pub fill_events: usize,
    pub stopping: Arc<AtomicBool>,
    pub failure: Arc<Mutex<Option<String>>>,
    pub known: Arc<KnownStreams>,
    /// Where the filter of known streams is saved.
    pub data_dir: PathBuf,
}

/// Stream ids read per chunk of the scan that builds the filter of known streams, between
/// fills.
const FILTER_SCAN_CHUNK_STREAMS: usize = 65_536;

impl Indexer {
    pub fn run(self) {
        // Every stream the file holds is in it at least once: its events are an upper bound.
        let events_in_file = self
            .tail
            .state
            .lock()
            .expect("stream tail lock")
            .indexed_through;
        // A filter read from its file at open needs no scan.
        if !self.known.is_ready() {
            self.known
                .begin_build(usize::try_from(events_in_file).unwrap_or(usize::MAX));
        }
        let mut last_saved = Instant::now();
        loop {
            if self.known.take_save_request() {
                self.save_filter();
                self.known.note_saved();
                last_saved = Instant::now();
            }
            let durable = self.head.durable_position();
            let mut entries = {
                let tail = self.tail.state.lock().expect("stream tail lock");
                let n_durable = tail.count_through(durable);
                if n_durable < self.fill_events {
                    if self.stopping.load(Ordering::Acquire) {
                        drop(tail);
                        self.save_filter();
                        return;
                    }
                    if self.known.is_building() {
                        drop(tail);
                        self.scan_for_filter();
                        continue;
                    }
                    // Durability advances without touching the tail: look again shortly.
                    let _ = self
                        .tail
                        .changed
                        .wait_timeout(tail, Duration::from_millis(20))
                        .expect("stream tail lock");
                    continue;
                }
                tail.first_entries(self.fill_events)
            };
            match write_fill(&self.connection, &mut entries) {
                Ok(indexed_through) => {
                    // Sorted by stream: each stream once.
                    let mut previous: Option<&str> = None;
                    let filled = entries.iter().filter_map(|entry| {
                        let stream_id = &*entry.stream_id;
                        let new = previous != Some(stream_id);
                        previous = Some(stream_id);
                        new.then_some(stream_id)
                    });
                    if let Some(capacity) = self.known.add_filled(filled) {
                        self.known.begin_build(capacity);
                    }
                    self.tail
                        .state
                        .lock()
                        .expect("stream tail lock")
                        .forget_through(indexed_through);
                    self.tail.changed.notify_all();
                    if last_saved.elapsed() >= SAVE_INTERVAL && self.known.is_ready() {
                        self.save_filter();
                        last_saved = Instant::now();
                    }
                }
                Err(error) => {
                    // The writer stops once the tail is full; appends are refused with this.
                    record_failure(
                        &self.failure,
                        format!("writing the stream index failed: {error}"),
                    );
                    self.tail.changed.notify_all();
                    return;
                }
            }
        }
    }

    /// Saves the filter in use as holding the index file's streams through its last fill. A
    /// save that fails costs the next open a scan, nothing else.
    fn save_filter(&self) {
        let saved = read_indexed_through(&self.connection).and_then(|(position, hash)| {
            self.known
                .save(&self.data_dir, position, &hash)
                .map_err(StoreError::from)
        });
        if let Err(error) = saved {
            tracing::warn!(%error, "saving the filter of known streams failed; the next open scans the index");
        }
    }

    /// Reads the next chunk of the file's stream ids into the filter being built. A scan that
    /// fails leaves no filter: every stream is then looked up in the file, as without one.
    fn scan_for_filter(&self) {
        let from = self.known.scan_from();
        let scanned = read_stream_ids(&self.connection, from.as_deref(), FILTER_SCAN_CHUNK_STREAMS);
        match scanned {
            Ok(ids) => {
                let last_chunk = ids.len() < FILTER_SCAN_CHUNK_STREAMS;
                self.known.add_scanned(&ids, last_chunk);
            }
            Err(error) => {
                tracing::warn!(%error, "scanning the stream index for the filter of known streams failed; every new stream is looked up in the file");
                self.known.abandon_build();
            }
        }
    }
}

/// The file's stream ids after `after` (from the first with `None`), in order, at most `limit`.
fn read_stream_ids(
    connection: &Connection,
    after: Option<&str>,
    limit: usize,
) -> Result<Vec<String>, StoreError> {
    let limit = i64::try_from(limit).unwrap_or(i64::MAX);
    let mut ids = Vec::new();
    let mut statement;
    let mut rows = match after {
        None => {
            statement = connection.prepare_cached(
                "SELECT DISTINCT stream_id FROM stream_index ORDER BY stream_id LIMIT ?1",
            )?;
            statement.query(params![limit])?
        }
        Some(after) => {
            statement = connection.prepare_cached(
                "SELECT DISTINCT stream_id FROM stream_index WHERE stream_id > ?1 \
                 ORDER BY stream_id LIMIT ?2",
            )?;
            statement.query(params![after, limit])?
        }
    };
    while let Some(row) = rows.next()? {
        ids.push(row.get(0)?);
    }
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_answers_heads_and_slices_and_forgets_in_log_order() {
        let mut tail = StreamTail {
            indexed_through: 10,
            ..StreamTail::default()
        };
        // a: revisions 3, 4, 5 at 11, 13, 14; b: 0 at 12.
        tail.push(11, "a", 3, [1; 32]);
        tail.push(12, "b", 0, [2; 32]);
        tail.push(13, "a", 4, [3; 32]);
        tail.push(14, "a", 5, [4; 32]);
        assert_eq!(tail.head("a"), Some(5));
        assert_eq!(tail.head("c"), None);
        let slice = tail.slice("a", 4, 13);
        assert_eq!(slice.first_revision, Some(3));
        assert_eq!(slice.events, vec![(4, 13)]);
        assert_eq!(tail.count_through(12), 2);
        tail.forget_through(13);
        assert_eq!(tail.indexed_through, 13);
        assert_eq!(tail.len(), 1);
        assert_eq!(tail.head("b"), None, "b is wholly in the file now");
        assert_eq!(tail.slice("a", 0, 100).first_revision, Some(5));
        tail.push(15, "b", 1, [5; 32]);
        assert_eq!(tail.slice("b", 0, 100).events, vec![(1, 15)]);
    }

    #[test]
    fn the_scan_for_the_filter_reads_each_stream_once_across_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let file = IndexFile::in_dir(dir.path());
        let writer = file.open_for_writing().unwrap();
        let tail = SharedTail::default();
        // Ten streams of one to three events each, interleaved in the log.
        let mut events = Vec::new();
        for revision in 0..3u64 {
            for n in 0..10u64 {
                if revision <= n % 3 {
                    events.push((format!("s{n}"), revision));
                }
            }
        }
        tail.push_committed(
            events
                .iter()
                .enumerate()
                .map(|(idx, (stream_id, revision))| {
                    (idx as u64 + 1, stream_id.as_str(), *revision, [0; 32])
                }),
        );
        let mut entries = tail.state.lock().unwrap().first_entries(events.len());
        write_fill(&writer, &mut entries).unwrap();
        let mut scanned: Vec<String> = Vec::new();
        loop {
            let chunk = read_stream_ids(&writer, scanned.last().map(String::as_str), 3).unwrap();
            let last_chunk = chunk.len() < 3;
            scanned.extend(chunk);
            if last_chunk {
                break;
            }
        }
        let mut expected: Vec<String> = (0..10).map(|n| format!("s{n}")).collect();
        expected.sort();
        assert_eq!(scanned, expected);
    }

    /// A lookup that begins the file's snapshot, a fill that then moves a stream out of the
    /// tail, and a lookup of that stream: the second must see the fill, or the stream would
    /// look new and could be created twice.
    #[test]
    fn a_head_lookup_after_a_fill_sees_what_the_fill_moved() {
        let dir = tempfile::tempdir().unwrap();
        let file = IndexFile::in_dir(dir.path());
        let writer = file.open_for_writing().unwrap();
        let tail = SharedTail::default();
        tail.push_committed([(1, "moved", 0, [1; 32]), (2, "moved", 1, [2; 32])].into_iter());
        // No filter of known streams: every lookup the tail cannot answer reads the file.
        let no_filter = Arc::new(KnownStreams::new(0));
        let mut heads = HeadLookup::new(open_connection(&file.path, true).unwrap(), no_filter);
        assert_eq!(
            heads.head(&tail, "moved").unwrap(),
            Some(1),
            "from the tail"
        );
        assert_eq!(
            heads.head(&tail, "absent").unwrap(),
            None,
            "begins the snapshot"
        );
        let mut entries = tail.state.lock().unwrap().first_entries(2);
        let indexed_through = write_fill(&writer, &mut entries).unwrap();
        tail.state.lock().unwrap().forget_through(indexed_through);
        assert_eq!(tail.state.lock().unwrap().head("moved"), None);
        assert_eq!(
            heads.head(&tail, "moved").unwrap(),
            Some(1),
            "from the file"
        );
        heads.end_snapshot();
        assert_eq!(heads.head(&tail, "moved").unwrap(), Some(1));
    }

    #[test]
    #[should_panic(expected = "a stream's revisions follow")]
    fn the_tail_refuses_a_revision_out_of_order() {
        let mut tail = StreamTail::default();
        tail.push(1, "a", 0, [0; 32]);
        tail.push(2, "a", 2, [0; 32]);
    }
}
