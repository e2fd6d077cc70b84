//! The EventStoreDB / KurrentDB backend.
//!
//! # One log stream
//! EventStoreDB appends atomically to one stream only, and its `$all` positions are
//! transaction-file offsets with gaps between them: neither gives paycenter a gap-free global
//! log with atomic multi-stream batches. So paycenter writes its whole log into **one**
//! EventStoreDB stream (`paycenter-log` unless configured): the event at EventStoreDB stream
//! revision `r` is paycenter's global position `r + 1`.
//! - **Gap-free positions.** EventStoreDB stream revisions are contiguous; the log stream must
//!   never carry `$maxCount`, `$maxAge` or `$tb` metadata (a truncated log fails verification).
//! - **Atomic appends and group commit.** A batch of paycenter appends is one EventStoreDB
//!   append of several events to one stream, written all or nothing.
//! - **Serialized across nodes.** Every append names the log's expected revision: the head
//!   the batch was planned on. A node that loses the race gets `WrongExpectedVersion`, reads
//!   what the winner wrote and plans its batch again. This is the PostgreSQL backend's lock on
//!   the chain head row, done optimistically.
//! - **Per-stream revisions and idempotent ids.** Each node keeps an index of the log in
//!   memory (stream → positions, event id → position), built by reading the log when the
//!   store opens and kept current by its own appends and by catching up before each decision.
//!   About 80 bytes per event.
//! - **The hash chain.** Each EventStoreDB event's data is the whole envelope, `prev_hash` and
//!   `hash` included (JSON); every event the index reads is verified against the chain.
//! - **Leases.** One stream per lease name; taking a lease is an append with an expected
//!   revision, so two takers never both win. Expiry uses the nodes' clocks, which must agree
//!   to well within a lease's time to live.
//!
//! The transport sits behind [`LogBackend`]: the gRPC client of the `eventstore` crate
//! (cargo feature `eventstoredb`, see `grpc`) in production, and an in-memory log with the same
//! append rule in this module's unit tests and for tests of what reads a log
//! ([`EventStoreDbStore::in_memory`]).

#[cfg(feature = "eventstoredb")]
mod grpc;
mod memory;

use std::collections::{HashMap, VecDeque};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

use crate::chain::ChainVerifier;
use crate::queue::{next_batch, plan_batch, poll_head, AppendQueue, AppendRequest, Stored};
use crate::{
    AppendFuture, AppendOutcome, ChainReport, EventStore, ExpectedRevision, NewEvent,
    RecordedEvent, StoreError, MAX_READ_ALL_LIMIT, MAX_STREAM_EVENTS,
};

/// The default name of the stream that holds paycenter's log.
pub const DEFAULT_LOG_STREAM: &str = "paycenter-log";

/// Whether `url` names an EventStoreDB / KurrentDB server (`esdb://`, `esdb+discover://`).
pub fn is_eventstoredb_url(url: &str) -> bool {
    url.starts_with("esdb://") || url.starts_with("esdb+discover://")
}

/// The stream holding the log: `PAYCENTER_EVENTSTOREDB_STREAM`, default [`DEFAULT_LOG_STREAM`].
pub fn configured_log_stream() -> String {
    std::env::var("PAYCENTER_EVENTSTOREDB_STREAM").unwrap_or_else(|_| DEFAULT_LOG_STREAM.to_owned())
}

/// An event as EventStoreDB holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRecord {
    /// Its revision in its EventStoreDB stream.
    pub revision: u64,
    /// EventStoreDB's event id: paycenter's event id.
    pub event_id: uuid::Uuid,
    /// EventStoreDB's event type: paycenter's event type.
    pub event_type: String,
    /// The data: JSON text.
    pub data: String,
}

/// Why an append to a log stream did not succeed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppendFailure {
    /// The stream is not at the expected revision: nothing was written.
    WrongExpectedRevision,
    /// The server's answer never came or was an error: the events may or may not be written.
    Unknown(String),
}

/// What paycenter needs of EventStoreDB: streams appended with an expected revision, read
/// forward, and their last event. Methods block.
pub trait LogBackend: Send + Sync {
    /// Appends `records` (their `revision` is ignored) if the stream's last revision is
    /// `expected_last` (`None`: the stream must not exist), all or nothing.
    fn append(
        &self,
        stream: &str,
        expected_last: Option<u64>,
        records: Vec<LogRecord>,
    ) -> Result<(), AppendFailure>;

    /// Up to `max_count` events from `from_revision` on; empty when the stream does not exist.
    fn read_forward(
        &self,
        stream: &str,
        from_revision: u64,
        max_count: usize,
    ) -> Result<Vec<LogRecord>, StoreError>;

    /// The stream's last event, `None` when it does not exist.
    fn read_last(&self, stream: &str) -> Result<Option<LogRecord>, StoreError>;

    /// Lets the server drop all but the last `max_count` events of `stream`.
    fn cap_stream(&self, stream: &str, max_count: u64) -> Result<(), StoreError>;
}

/// The envelope as the data of an EventStoreDB event. The event id and type are
/// EventStoreDB's own fields.
#[derive(Debug, Serialize, Deserialize)]
struct StoredEnvelope {
    global_position: u64,
    stream_id: String,
    stream_revision: u64,
    schema_version: u32,
    recorded_at_us: i64,
    correlation_id: Option<uuid::Uuid>,
    causation_id: Option<uuid::Uuid>,
    payload: String,
    prev_hash: String,
    hash: String,
}

fn encode(event: &RecordedEvent) -> LogRecord {
    let envelope = StoredEnvelope {
        global_position: event.global_position,
        stream_id: event.stream_id.clone(),
        stream_revision: event.stream_revision,
        schema_version: event.schema_version,
        recorded_at_us: event.recorded_at.timestamp_micros(),
        correlation_id: event.correlation_id,
        causation_id: event.causation_id,
        payload: event.payload.clone(),
        prev_hash: hex::encode(event.prev_hash),
        hash: hex::encode(event.hash),
    };
    LogRecord {
        revision: event.global_position - 1,
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        data: serde_json::to_string(&envelope).expect("an envelope serializes"),
    }
}

fn decode(record: LogRecord) -> Result<RecordedEvent, StoreError> {
    let position = record.revision + 1;
    let corrupted = |reason: String| StoreError::Corrupted { position, reason };
    let envelope: StoredEnvelope = serde_json::from_str(&record.data)
        .map_err(|error| corrupted(format!("event data is not a paycenter envelope: {error}")))?;
    if envelope.global_position != position {
        return Err(corrupted(format!(
            "envelope says position {} at log revision {}",
            envelope.global_position, record.revision
        )));
    }
    let hash32 = |text: &str, field: &str| -> Result<[u8; 32], StoreError> {
        hex::decode(text)
            .ok()
            .and_then(|bytes| <[u8; 32]>::try_from(bytes).ok())
            .ok_or_else(|| corrupted(format!("{field} is not 32 hex bytes")))
    };
    Ok(RecordedEvent {
        global_position: position,
        stream_revision: envelope.stream_revision,
        event_id: record.event_id,
        event_type: record.event_type,
        schema_version: envelope.schema_version,
        recorded_at: DateTime::from_timestamp_micros(envelope.recorded_at_us)
            .ok_or_else(|| corrupted("recorded_at is out of range".to_owned()))?,
        correlation_id: envelope.correlation_id,
        causation_id: envelope.causation_id,
        prev_hash: hash32(&envelope.prev_hash, "prev_hash")?,
        hash: hash32(&envelope.hash, "hash")?,
        stream_id: envelope.stream_id,
        payload: envelope.payload,
    })
}

/// Where an event id sits in the log.
struct Located {
    position: u64,
    revision: u64,
    stream_id: Arc<str>,
}

/// A node's index of the log, verified as it grows.
#[derive(Default)]
struct Index {
    verifier: ChainVerifier,
    stream_positions: HashMap<Arc<str>, Vec<u64>>,
    event_ids: HashMap<uuid::Uuid, Located>,
    last_recorded_at_us: i64,
}

impl Index {
    fn head(&self) -> (u64, [u8; 32]) {
        let report = self.verifier.report();
        (report.n_events, report.head_hash)
    }

    /// Adds the next event of the log, refusing it unless it continues the chain.
    fn absorb(&mut self, event: &RecordedEvent) -> Result<(), StoreError> {
        self.verifier.check(event)?;
        let stream_id: Arc<str> = match self
            .stream_positions
            .get_key_value(event.stream_id.as_str())
        {
            Some((stream_id, _)) => stream_id.clone(),
            None => Arc::from(event.stream_id.as_str()),
        };
        let positions = self.stream_positions.entry(stream_id.clone()).or_default();
        assert_eq!(
            positions.len() as u64,
            event.stream_revision,
            "the verifier checked the revision"
        );
        positions.push(event.global_position);
        self.event_ids.insert(
            event.event_id,
            Located {
                position: event.global_position,
                revision: event.stream_revision,
                stream_id,
            },
        );
        self.last_recorded_at_us = self
            .last_recorded_at_us
            .max(event.recorded_at.timestamp_micros());
        Ok(())
    }

    /// What the batch planner needs to know of `batch`: its stored ids and stream revisions.
    fn lookups(
        &self,
        batch: &[AppendRequest],
    ) -> (HashMap<uuid::Uuid, Stored>, HashMap<String, u64>) {
        let mut stored = HashMap::new();
        let mut revisions = HashMap::new();
        for request in batch {
            for event in &request.events {
                if let Some(located) = self.event_ids.get(&event.event_id) {
                    stored.insert(
                        event.event_id,
                        Stored {
                            position: located.position,
                            stream_id: located.stream_id.to_string(),
                            revision: located.revision,
                        },
                    );
                }
            }
            if let Some(positions) = self.stream_positions.get(request.stream_id.as_str()) {
                revisions.insert(request.stream_id.clone(), positions.len() as u64 - 1);
            }
        }
        (stored, revisions)
    }
}

/// Events read per request while catching up or verifying.
const READ_PAGE_EVENTS: usize = 1_024;
/// Most appends one EventStoreDB append carries.
const MAX_BATCH_APPENDS: usize = 256;
/// Estimated bytes one EventStoreDB append may carry: under the server's default
/// `MaxAppendSize` of 1 MiB. An append larger on its own is sent alone.
const MAX_BATCH_BYTES: usize = 900 * 1024;
/// Bytes an event's envelope adds to its payload, estimated generously.
const ENVELOPE_OVERHEAD_BYTES: usize = 512;
/// Times a batch is planned again after losing the log to another node.
const MAX_WRITE_ATTEMPTS: usize = 256;
/// Longest pause before planning again after losing the log to another node.
const MAX_BACKOFF_US: u64 = 5_000;
/// Appends waiting for the writer before callers block.
const QUEUE_APPENDS: usize = 4_096;
/// Events kept by a lease stream: the latest grant is all that matters.
const LEASE_STREAM_MAX_COUNT: u64 = 8;

/// What the writer thread and the readers share.
struct Shared {
    backend: Arc<dyn LogBackend>,
    log_stream: String,
    index: Mutex<Index>,
}

impl Shared {
    /// Reads what the log holds beyond the index and verifies it onto the chain. The loop
    /// ends at the log's end, which only grows by what other nodes write meanwhile.
    fn catch_up(&self, index: &mut Index) -> Result<(), StoreError> {
        loop {
            let (head_position, _) = index.head();
            let records =
                self.backend
                    .read_forward(&self.log_stream, head_position, READ_PAGE_EVENTS)?;
            let n_records = records.len();
            for record in records {
                index.absorb(&decode(record)?)?;
            }
            if n_records < READ_PAGE_EVENTS {
                return Ok(());
            }
        }
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().expect("index lock")
    }

    /// The events at `positions` (ascending), read in runs of consecutive positions.
    fn read_positions(&self, positions: &[u64]) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut events = Vec::with_capacity(positions.len());
        let mut run_start = 0;
        while run_start < positions.len() {
            let mut run_end = run_start + 1;
            while run_end < positions.len() && positions[run_end] == positions[run_end - 1] + 1 {
                run_end += 1;
            }
            let run_len = run_end - run_start;
            let records =
                self.backend
                    .read_forward(&self.log_stream, positions[run_start] - 1, run_len)?;
            if records.len() != run_len {
                return Err(StoreError::Corrupted {
                    position: positions[run_start],
                    reason: "an indexed event is missing from the log".to_owned(),
                });
            }
            for record in records {
                events.push(decode(record)?);
            }
            run_start = run_end;
        }
        Ok(events)
    }
}

/// The EventStoreDB / KurrentDB backend (see the module documentation).
pub struct EventStoreDbStore {
    shared: Arc<Shared>,
    queue: Option<AppendQueue>,
    writer: Option<JoinHandle<()>>,
}

impl EventStoreDbStore {
    /// Connects to the server at `connection_string` (`esdb://host:2113?tls=false`, or
    /// `esdb+discover://` for a cluster), reads and verifies the log stream `log_stream`, and
    /// starts the writer.
    #[cfg(feature = "eventstoredb")]
    pub fn connect(connection_string: &str, log_stream: &str) -> Result<Self, StoreError> {
        let backend = grpc::GrpcLog::connect(connection_string)?;
        Self::open(Arc::new(backend), log_stream)
    }

    /// A log held in memory with EventStoreDB's append rules, where no server can run: the
    /// backend's whole logic over it, for tests of what reads a log (the replay tools).
    pub fn in_memory(log_stream: &str) -> Result<Self, StoreError> {
        Self::open(Arc::new(memory::MemoryLog::default()), log_stream)
    }

    /// Opens the log stream `log_stream` through `backend`: reads and verifies all of it into
    /// the index, then starts the writer.
    pub fn open(backend: Arc<dyn LogBackend>, log_stream: &str) -> Result<Self, StoreError> {
        if log_stream.is_empty() || log_stream.starts_with('$') {
            return Err(StoreError::InvalidAppend {
                reason: "the log stream name must be non-empty and not a system stream ($...)"
                    .to_owned(),
            });
        }
        let shared = Arc::new(Shared {
            backend,
            log_stream: log_stream.to_owned(),
            index: Mutex::new(Index::default()),
        });
        shared.catch_up(&mut shared.lock_index())?;
        let (queue, receiver) = AppendQueue::new(QUEUE_APPENDS);
        let writer_shared = shared.clone();
        let writer = std::thread::Builder::new()
            .name("paycenter-esdb-writer".to_owned())
            .spawn(move || run_writer(&writer_shared, &receiver))?;
        Ok(EventStoreDbStore {
            shared,
            queue: Some(queue),
            writer: Some(writer),
        })
    }

    fn queue(&self) -> &AppendQueue {
        self.queue.as_ref().expect("the queue lives until drop")
    }
}

impl Drop for EventStoreDbStore {
    fn drop(&mut self) {
        // Closing the queue lets the writer finish what is queued and stop.
        drop(self.queue.take());
        if let Some(writer) = self.writer.take() {
            let _ = writer.join();
        }
    }
}

fn run_writer(shared: &Shared, receiver: &Receiver<AppendRequest>) {
    while let Some(batch) = next_batch(receiver, MAX_BATCH_APPENDS) {
        let mut pending = VecDeque::from(batch);
        while !pending.is_empty() {
            let chunk = take_chunk(&mut pending);
            write_chunk(shared, chunk);
        }
    }
}

/// The longest prefix of `pending` that fits one EventStoreDB append (at least one append).
fn take_chunk(pending: &mut VecDeque<AppendRequest>) -> Vec<AppendRequest> {
    let mut chunk = Vec::new();
    let mut chunk_bytes = 0;
    while let Some(next) = pending.front() {
        let next_bytes: usize = next
            .events
            .iter()
            .map(|event| event.payload.len() + ENVELOPE_OVERHEAD_BYTES)
            .sum();
        if !chunk.is_empty() && chunk_bytes + next_bytes > MAX_BATCH_BYTES {
            break;
        }
        chunk_bytes += next_bytes;
        chunk.push(pending.pop_front().expect("front exists"));
    }
    chunk
}

/// Plans `chunk` on the index, appends it to the log with the head as the expected revision,
/// and answers every append once the log has it (or has refused it).
fn write_chunk(shared: &Shared, chunk: Vec<AppendRequest>) {
    // Appends planned as new writes in an attempt that may have landed: found stored later,
    // they were written by this very call, not replayed.
    let mut maybe_written = vec![false; chunk.len()];
    let mut needs_catch_up = false;
    let mut last_failure = String::new();
    for attempt in 0..MAX_WRITE_ATTEMPTS {
        if attempt > 0 {
            backoff(attempt);
        }
        let mut index = shared.lock_index();
        if needs_catch_up {
            if let Err(error) = shared.catch_up(&mut index) {
                drop(index);
                fail_all(chunk, &error.to_string());
                return;
            }
        }
        let (mut stored, mut revisions) = index.lookups(&chunk);
        let planned_head = index.head();
        // One clock reading per batch, never behind the log, so `recorded_at` is monotonic.
        let recorded_at_us = Utc::now().timestamp_micros().max(index.last_recorded_at_us);
        drop(index);
        let plan = plan_batch(
            &chunk,
            planned_head,
            recorded_at_us,
            &mut stored,
            &mut revisions,
        );
        if plan.events.is_empty() {
            answer(chunk, plan.outcomes, &maybe_written);
            return;
        }
        let records = plan.events.iter().map(encode).collect();
        let expected_last = planned_head.0.checked_sub(1);
        match shared
            .backend
            .append(&shared.log_stream, expected_last, records)
        {
            Ok(()) if !needs_catch_up || maybe_written.iter().all(|written| !written) => {
                let mut index = shared.lock_index();
                if index.head() == planned_head {
                    for event in &plan.events {
                        index
                            .absorb(event)
                            .expect("a planned batch continues the chain it was planned on");
                    }
                    drop(index);
                    answer(chunk, plan.outcomes, &maybe_written);
                    return;
                }
                // A reader caught up past the plan meanwhile: the log, not the plan, says
                // where the events are.
                drop(index);
                mark_planned_writes(&plan.outcomes, &mut maybe_written);
                needs_catch_up = true;
            }
            Ok(()) => {
                // An earlier attempt's answer was lost, and EventStoreDB answers a repeated
                // append of the same ids as a success: read back what the log really holds.
                mark_planned_writes(&plan.outcomes, &mut maybe_written);
                needs_catch_up = true;
            }
            Err(AppendFailure::WrongExpectedRevision) => {
                // Another node wrote first: nothing of this attempt is in the log.
                needs_catch_up = true;
            }
            Err(AppendFailure::Unknown(reason)) => {
                tracing::warn!(%reason, "EventStoreDB append outcome unknown; reading the log back");
                mark_planned_writes(&plan.outcomes, &mut maybe_written);
                needs_catch_up = true;
                last_failure = reason;
            }
        }
    }
    fail_all(
        chunk,
        &format!(
            "EventStoreDB append not settled after {MAX_WRITE_ATTEMPTS} attempts: {last_failure}"
        ),
    );
}

/// Sleeps a random time that grows with `attempt`, so writers on several nodes that keep
/// losing the log to each other fall out of step.
fn backoff(attempt: usize) {
    let window_us = (100 * attempt as u64).min(MAX_BACKOFF_US);
    let jitter_us = u64::from(Utc::now().timestamp_subsec_nanos()) % (window_us + 1);
    std::thread::sleep(Duration::from_micros(jitter_us));
}

fn mark_planned_writes(outcomes: &[Result<AppendOutcome, StoreError>], maybe_written: &mut [bool]) {
    for (outcome, written) in outcomes.iter().zip(maybe_written.iter_mut()) {
        if matches!(outcome, Ok(outcome) if !outcome.already_stored) {
            *written = true;
        }
    }
}

fn answer(
    chunk: Vec<AppendRequest>,
    outcomes: Vec<Result<AppendOutcome, StoreError>>,
    maybe_written: &[bool],
) {
    assert_eq!(outcomes.len(), chunk.len(), "one outcome per append");
    for ((request, mut outcome), written) in chunk.into_iter().zip(outcomes).zip(maybe_written) {
        if let Ok(outcome) = &mut outcome {
            if *written {
                outcome.already_stored = false;
            }
        }
        // A caller that gave up waiting is no reason to stop.
        let _ = request.reply.send(outcome);
    }
}

fn fail_all(chunk: Vec<AppendRequest>, reason: &str) {
    for request in chunk {
        let _ = request
            .reply
            .send(Err(StoreError::Backend(reason.to_owned())));
    }
}

/// A lease grant as the data of a lease stream's event.
#[derive(Debug, Serialize, Deserialize)]
struct LeaseGrant {
    owner: String,
    expires_at_ms: i64,
}

impl EventStore for EventStoreDbStore {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.queue().append(stream_id, expected, events)
    }

    fn append_async(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> AppendFuture {
        self.queue().append_async(stream_id, expected, events)
    }

    fn read_stream(
        &self,
        stream_id: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let positions: Vec<u64> = {
            let mut index = self.shared.lock_index();
            // Other nodes may have written to the stream: decide on the whole log.
            self.shared.catch_up(&mut index)?;
            match index.stream_positions.get(stream_id) {
                Some(positions) => positions
                    .iter()
                    .skip(from_revision.min(usize::MAX as u64) as usize)
                    .take(MAX_STREAM_EVENTS)
                    .copied()
                    .collect(),
                None => Vec::new(),
            }
        };
        let events = self.shared.read_positions(&positions)?;
        if let Some(stray) = events.iter().find(|event| event.stream_id != stream_id) {
            return Err(StoreError::Corrupted {
                position: stray.global_position,
                reason: format!(
                    "indexed for stream {stream_id}, found in {}",
                    stray.stream_id
                ),
            });
        }
        Ok(events)
    }

    fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let limit = limit.min(MAX_READ_ALL_LIMIT);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let from_revision = from_position.saturating_sub(1);
        self.shared
            .backend
            .read_forward(&self.shared.log_stream, from_revision, limit)?
            .into_iter()
            .map(decode)
            .collect()
    }

    fn head_position(&self) -> Result<u64, StoreError> {
        Ok(self
            .shared
            .backend
            .read_last(&self.shared.log_stream)?
            .map_or(0, |record| record.revision + 1))
    }

    fn wait_for_head(&self, after_position: u64, timeout: Duration) -> Result<u64, StoreError> {
        poll_head(
            || self.head_position(),
            after_position,
            timeout,
            Duration::from_millis(10),
        )
    }

    fn verify_chain(&self) -> Result<ChainReport, StoreError> {
        let mut verifier = ChainVerifier::default();
        loop {
            let from_revision = verifier.report().n_events;
            let records = self.shared.backend.read_forward(
                &self.shared.log_stream,
                from_revision,
                READ_PAGE_EVENTS,
            )?;
            let n_records = records.len();
            for record in records {
                verifier.check(&decode(record)?)?;
            }
            if n_records < READ_PAGE_EVENTS {
                return Ok(verifier.report());
            }
        }
    }

    fn try_lease(&self, name: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        let stream = format!("{}-lease-{name}", self.shared.log_stream);
        let now_ms = Utc::now().timestamp_millis();
        let last = self.shared.backend.read_last(&stream)?;
        let expected_last = match &last {
            None => None,
            Some(record) => {
                let grant: LeaseGrant = serde_json::from_str(&record.data).map_err(|error| {
                    StoreError::Backend(format!("lease stream {stream} holds a bad grant: {error}"))
                })?;
                if grant.owner != owner && grant.expires_at_ms > now_ms {
                    return Ok(false);
                }
                Some(record.revision)
            }
        };
        let grant = LeaseGrant {
            owner: owner.to_owned(),
            expires_at_ms: now_ms.saturating_add(i64::try_from(ttl_ms).unwrap_or(i64::MAX)),
        };
        let record = LogRecord {
            revision: 0,
            event_id: uuid::Uuid::new_v4(),
            event_type: "lease.granted".to_owned(),
            data: serde_json::to_string(&grant).expect("a grant serializes"),
        };
        match self
            .shared
            .backend
            .append(&stream, expected_last, vec![record])
        {
            Ok(()) => {
                // The lease is held either way; an uncapped stream only keeps old grants.
                if expected_last.is_none() {
                    if let Err(error) = self
                        .shared
                        .backend
                        .cap_stream(&stream, LEASE_STREAM_MAX_COUNT)
                    {
                        tracing::warn!(%error, lease = name, "could not cap a lease stream");
                    }
                }
                Ok(true)
            }
            // Another node took or renewed it first.
            Err(AppendFailure::WrongExpectedRevision) => Ok(false),
            Err(AppendFailure::Unknown(reason)) => Err(StoreError::Backend(reason)),
        }
    }
}

#[cfg(test)]
mod tests;
