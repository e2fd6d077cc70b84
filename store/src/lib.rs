//! paycenter's event store: an append-only global log of immutable events, split into streams,
//! chained by SHA-256 so tampering is detected.
//!
//! Every backend implements [`EventStore`] and passes the one [`conformance`] suite. The
//! embedded SQLite backend ([`SqliteStore`]) is the default: one writer thread group-commits
//! concurrent appends into one transaction and one fsync each.
//!
//! # Layout
//! - [`EventStore`], [`AppendOutcome`], [`StoreError`]: the contract every backend meets.
//! - [`chain`]: canonical bytes of an envelope, the hash chain and its verification.
//! - [`sqlite`]: the embedded backend (WAL, pipelined group commit, lock file).
//! - [`postgres`]: the PostgreSQL backend (appends serialized by a lock on the chain head row).
//! - [`pg_tls`]: TLS to PostgreSQL as `sslmode` asks (require, verify-ca, verify-full), on rustls.
//! - [`eventstoredb`]: the EventStoreDB / KurrentDB backend (the whole log in one EventStoreDB
//!   stream; the gRPC client behind the cargo feature `eventstoredb`).
//! - `queue`: what both writers share: the append queue, batches, replay and revision rules.
//! - [`subscription`]: catch-up-then-live reading of the global log, for any backend.
//! - [`conformance`]: the behaviour every backend must show, as callable checks.
//! - [`ceiling`]: the durability ceiling the benchmarks quote their figures against.
//! - [`files`]: small files of a data directory replaced whole (checkpoints, pointers).
#![warn(missing_docs)]

pub mod ceiling;
pub mod chain;
pub mod conformance;
pub mod eventstoredb;
pub mod files;
pub mod pg_tls;
pub mod postgres;
mod queue;
pub mod sqlite;
pub mod subscription;

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

pub use eventstoredb::EventStoreDbStore;
pub use paycenter_domain::envelope::{ExpectedRevision, NewEvent, RecordedEvent};
pub use postgres::PostgresStore;
pub use sqlite::{SqliteConfig, SqliteStore};
pub use subscription::Subscription;

/// The most events one append may carry.
pub const MAX_EVENTS_PER_APPEND: usize = 1_000;
/// The largest payload one event may carry, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1 << 20;
/// The longest stream id, in bytes.
pub const MAX_STREAM_ID_BYTES: usize = 256;
/// The most events `read_all` returns at once.
pub const MAX_READ_ALL_LIMIT: usize = 100_000;
/// The most events `read_stream` returns; domain limits keep real streams far below it.
pub const MAX_STREAM_EVENTS: usize = 100_000;

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Global position of the first event of the batch.
    pub first_position: u64,
    /// Global position of the last event of the batch.
    pub last_position: u64,
    /// Stream revision of the last event: the `Exact` to expect next.
    pub last_revision: u64,
    /// True when every event id was already stored: nothing was written.
    pub already_stored: bool,
}

/// An append in flight: resolves once the events are durable (or the append is refused).
pub type AppendFuture =
    Pin<Box<dyn Future<Output = Result<AppendOutcome, StoreError>> + Send + 'static>>;

/// Where the chain ends after a successful verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChainReport {
    /// Number of events verified (the head position).
    pub n_events: u64,
    /// Hash of the last event (zeros for an empty log).
    pub head_hash: [u8; 32],
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The stream is not at the revision the writer expected.
    #[error("stream {stream_id}: expected revision {expected:?}, actual {actual:?}")]
    WrongExpectedRevision {
        /// The stream.
        stream_id: String,
        /// What the writer expected.
        expected: ExpectedRevision,
        /// Its last revision, `None` when it does not exist.
        actual: Option<u64>,
    },
    /// Some, but not all, event ids of an append are already stored (or stored elsewhere).
    #[error("event {event_id} is already stored in another append")]
    EventIdConflict {
        /// The first conflicting id.
        event_id: uuid::Uuid,
    },
    /// The append itself is malformed.
    #[error("invalid append: {reason}")]
    InvalidAppend {
        /// What is wrong.
        reason: String,
    },
    /// The log does not verify: tampering, a lost tail or a broken file.
    #[error("event log corrupted at position {position}: {reason}")]
    Corrupted {
        /// The first bad position.
        position: u64,
        /// What is wrong there.
        reason: String,
    },
    /// Another process holds the data directory for writing.
    #[error("data directory {path} is locked by another paycenter process")]
    Locked {
        /// The lock file.
        path: String,
    },
    /// The store was opened read-only.
    #[error("store is open read-only")]
    ReadOnly,
    /// The writer has stopped (shutdown or a fatal I/O error).
    #[error("store writer has stopped")]
    Closed,
    /// The backend failed.
    #[error("store backend error: {0}")]
    Backend(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Backend(error.to_string())
    }
}

impl From<std::io::Error> for StoreError {
    fn from(error: std::io::Error) -> Self {
        StoreError::Backend(error.to_string())
    }
}

/// The event store contract (design brief §2). Object safe: callers hold `Arc<dyn EventStore>`.
///
/// Methods block; async callers run them on a blocking thread.
pub trait EventStore: Send + Sync {
    /// Appends `events` to `stream_id` atomically if the stream is at `expected`.
    ///
    /// Re-appending event ids that are all stored is a no-op answering their original
    /// positions. Once this returns `Ok`, the events are durable.
    /// Must not be called from inside an async runtime: use [`EventStore::append_async`] there.
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError>;

    /// [`EventStore::append`] for async callers: queues the append at once and resolves when it
    /// is durable, without holding a thread while it waits. Many appends in flight from few
    /// threads is what lets group commit batch them.
    fn append_async(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> AppendFuture;

    /// The events of a stream from `from_revision` on, in revision order.
    fn read_stream(
        &self,
        stream_id: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError>;

    /// Whether reads are from a local file and take microseconds, so a caller on an async
    /// runtime may make a short one (a stream) in place rather than hand its thread's other
    /// tasks to another thread first. False for servers reached over the network.
    fn reads_are_local(&self) -> bool {
        false
    }

    /// Up to `limit` events of the global log from `from_position` on (inclusive; positions
    /// start at 1, so 0 reads from the start).
    fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError>;

    /// The position of the last event, 0 when empty.
    fn head_position(&self) -> Result<u64, StoreError>;

    /// Blocks until the head passes `after_position` or `timeout` elapses; returns the head.
    fn wait_for_head(&self, after_position: u64, timeout: Duration) -> Result<u64, StoreError>;

    /// Walks the whole log: gap-free positions and revisions, every hash, the recorded head.
    fn verify_chain(&self) -> Result<ChainReport, StoreError>;

    /// Walks the log after `start` (a position and the hash of the event there, known good)
    /// up to `until` inclusive: gap-free positions and every hash (see
    /// [`chain::ChainVerifier::resuming`]). At most `max_events` are read; the report says how
    /// far it got, so a caller walks a long log in steps.
    fn verify_chain_from(
        &self,
        start: ChainReport,
        until: u64,
        max_events: usize,
    ) -> Result<ChainReport, StoreError> {
        const PAGE_EVENTS: usize = 10_000;
        let mut verifier = chain::ChainVerifier::resuming(start);
        let mut n_read = 0;
        let mut next_position = start.n_events + 1;
        if start.n_events > 0 {
            let at_start = self.read_all(start.n_events, 1)?;
            if at_start.first().map(|event| event.hash) != Some(start.head_hash) {
                return Err(StoreError::Corrupted {
                    position: start.n_events,
                    reason: "the event at the starting point is not the one that was verified"
                        .to_owned(),
                });
            }
        }
        while next_position <= until && n_read < max_events {
            let wanted = usize::try_from(until - next_position + 1)
                .unwrap_or(usize::MAX)
                .min(PAGE_EVENTS)
                .min(max_events - n_read);
            let events = self.read_all(next_position, wanted)?;
            if events.is_empty() {
                return Err(StoreError::Corrupted {
                    position: next_position,
                    reason: format!("the log ends before position {until}"),
                });
            }
            for event in &events {
                verifier.check(event)?;
            }
            n_read += events.len();
            next_position += events.len() as u64;
        }
        Ok(verifier.report())
    }

    /// Takes, or renews, the lease `name` for `owner` until `ttl_ms` from now; true when
    /// `owner` holds it afterwards. Nodes sharing one store take a lease before work that must
    /// be done by one of them at a time (a webhook attempt, a projection batch). A lease ends
    /// by expiring: a node that dies holding one delays the work by at most `ttl_ms`.
    fn try_lease(&self, name: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError>;

    /// Whether the store still accepts appends, and the last error that stopped it. Backends
    /// whose writer can stop for good (the embedded store after a failed `fdatasync`) say so.
    fn health(&self) -> StoreHealth {
        StoreHealth {
            accepting_appends: true,
            last_error: None,
        }
    }
}

/// What [`EventStore::health`] reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreHealth {
    /// False once the writer stopped: every append is refused.
    pub accepting_appends: bool,
    /// Why it stopped, or the last error that did not stop it.
    pub last_error: Option<String>,
}

/// Checks an append's shape, common to every backend.
pub fn validate_append(stream_id: &str, events: &[NewEvent]) -> Result<(), StoreError> {
    let invalid = |reason: String| Err(StoreError::InvalidAppend { reason });
    if stream_id.is_empty() || stream_id.len() > MAX_STREAM_ID_BYTES {
        return invalid(format!(
            "stream id must be 1 to {MAX_STREAM_ID_BYTES} bytes"
        ));
    }
    if events.is_empty() || events.len() > MAX_EVENTS_PER_APPEND {
        return invalid(format!(
            "an append carries 1 to {MAX_EVENTS_PER_APPEND} events"
        ));
    }
    for (event_idx, event) in events.iter().enumerate() {
        if event.payload.len() > MAX_PAYLOAD_BYTES {
            return invalid(format!(
                "event {event_idx} payload exceeds {MAX_PAYLOAD_BYTES} bytes"
            ));
        }
        if event.event_type.is_empty() || event.event_type.len() > 128 {
            return invalid(format!("event {event_idx} type must be 1 to 128 bytes"));
        }
        if events[..event_idx]
            .iter()
            .any(|earlier| earlier.event_id == event.event_id)
        {
            return invalid(format!(
                "event id {} appears twice in one append",
                event.event_id
            ));
        }
    }
    Ok(())
}
