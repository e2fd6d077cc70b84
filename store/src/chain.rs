//! The hash chain over the global log.
//!
//! `hash = SHA-256(prev_hash || canonical_bytes(envelope))`, where the canonical bytes are a
//! fixed, length-prefixed binary layout of every envelope field except `prev_hash` and `hash`.
//! A binary layout (not JSON) keeps the bytes independent of any serializer's whims; the
//! payload is hashed byte for byte as stored.

use std::collections::HashMap;

use sha2::{Digest, Sha256};

use crate::{ChainReport, RecordedEvent, StoreError};

/// The `prev_hash` of the first event.
pub const GENESIS_HASH: [u8; 32] = [0; 32];

const DOMAIN_TAG: &[u8] = b"paycenter-event-v1\0";

fn put_bytes(hasher: &mut Sha256, bytes: &[u8]) {
    hasher.update((bytes.len() as u64).to_be_bytes());
    hasher.update(bytes);
}

fn put_optional_uuid(hasher: &mut Sha256, id: Option<uuid::Uuid>) {
    match id {
        Some(id) => {
            hasher.update([1]);
            hasher.update(id.as_bytes());
        }
        None => hasher.update([0]),
    }
}

/// The hashed fields of an envelope, borrowed: writers hash before they own a `RecordedEvent`.
#[allow(missing_docs)]
#[derive(Debug, Clone, Copy)]
pub struct HashInput<'a> {
    pub global_position: u64,
    pub stream_id: &'a str,
    pub stream_revision: u64,
    pub event_id: &'a uuid::Uuid,
    pub event_type: &'a str,
    pub schema_version: u32,
    pub recorded_at_us: i64,
    pub correlation_id: Option<uuid::Uuid>,
    pub causation_id: Option<uuid::Uuid>,
    pub payload: &'a str,
}

impl<'a> HashInput<'a> {
    /// The hashed fields of a stored event.
    pub fn of(event: &'a RecordedEvent) -> HashInput<'a> {
        HashInput {
            global_position: event.global_position,
            stream_id: &event.stream_id,
            stream_revision: event.stream_revision,
            event_id: &event.event_id,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            recorded_at_us: event.recorded_at.timestamp_micros(),
            correlation_id: event.correlation_id,
            causation_id: event.causation_id,
            payload: &event.payload,
        }
    }

    /// `SHA-256(prev_hash || canonical bytes)`.
    pub fn hash(&self, prev_hash: &[u8; 32]) -> [u8; 32] {
        let mut hasher = Sha256::new();
        hasher.update(prev_hash);
        hasher.update(DOMAIN_TAG);
        hasher.update(self.global_position.to_be_bytes());
        put_bytes(&mut hasher, self.stream_id.as_bytes());
        hasher.update(self.stream_revision.to_be_bytes());
        hasher.update(self.event_id.as_bytes());
        put_bytes(&mut hasher, self.event_type.as_bytes());
        hasher.update(self.schema_version.to_be_bytes());
        hasher.update(self.recorded_at_us.to_be_bytes());
        put_optional_uuid(&mut hasher, self.correlation_id);
        put_optional_uuid(&mut hasher, self.causation_id);
        put_bytes(&mut hasher, self.payload.as_bytes());
        hasher.finalize().into()
    }
}

/// The hash of an envelope given the hash before it. Ignores `event.prev_hash` and `event.hash`.
pub fn compute_hash(prev_hash: &[u8; 32], event: &RecordedEvent) -> [u8; 32] {
    HashInput::of(event).hash(prev_hash)
}

/// Checks events one by one, in global order, carrying what it needs between batches.
#[derive(Debug)]
pub struct ChainVerifier {
    last_position: u64,
    last_hash: [u8; 32],
    /// Each stream's last revision, when revisions are checked (a walk from position 1).
    stream_heads: Option<HashMap<String, u64>>,
}

impl Default for ChainVerifier {
    fn default() -> Self {
        ChainVerifier {
            last_position: 0,
            last_hash: GENESIS_HASH,
            stream_heads: Some(HashMap::new()),
        }
    }
}

impl ChainVerifier {
    /// A verifier that continues after `start` (a position and the hash there, trusted) and
    /// checks positions and hashes only: stream revisions need every stream's head, which a
    /// walk that does not begin at position 1 does not have (and whose memory would grow with
    /// the number of streams). Any byte changed in an event still breaks its hash.
    pub fn resuming(start: ChainReport) -> ChainVerifier {
        ChainVerifier {
            last_position: start.n_events,
            last_hash: start.head_hash,
            stream_heads: None,
        }
    }

    /// Checks the next event: its position follows, its stream revision follows, its
    /// `prev_hash` is the previous hash and its `hash` is right.
    pub fn check(&mut self, event: &RecordedEvent) -> Result<(), StoreError> {
        let position = event.global_position;
        let corrupted = |reason: String| Err(StoreError::Corrupted { position, reason });
        if position != self.last_position + 1 {
            return corrupted(format!(
                "position follows {} (gap or reorder)",
                self.last_position
            ));
        }
        if let Some(stream_heads) = &self.stream_heads {
            let expected_revision = stream_heads
                .get(&event.stream_id)
                .map_or(0, |head| head + 1);
            if event.stream_revision != expected_revision {
                return corrupted(format!(
                    "stream {} revision {} where {expected_revision} was due",
                    event.stream_id, event.stream_revision
                ));
            }
        }
        if event.prev_hash != self.last_hash {
            return corrupted("prev_hash does not match the previous event's hash".to_owned());
        }
        if compute_hash(&self.last_hash, event) != event.hash {
            return corrupted("hash does not match the event's contents".to_owned());
        }
        if let Some(stream_heads) = &mut self.stream_heads {
            stream_heads.insert(event.stream_id.clone(), event.stream_revision);
        }
        self.last_position = position;
        self.last_hash = event.hash;
        Ok(())
    }

    /// Where the verified chain ends.
    pub fn report(&self) -> ChainReport {
        ChainReport {
            n_events: self.last_position,
            head_hash: self.last_hash,
        }
    }
}

/// Verifies `store`'s chain from `checkpoint` (a position and hash verified before, sealed by
/// the caller) to `recorded`, the head the store records, which it must reach: a start's cost
/// grows with what was appended since, not with history. Falls back to the whole chain when
/// the log does not hold the checkpoint as it was.
pub fn verify_tail(
    store: &dyn crate::EventStore,
    checkpoint: ChainReport,
    recorded: (u64, [u8; 32]),
) -> Result<ChainReport, StoreError> {
    let (recorded_position, recorded_hash) = recorded;
    let holds_checkpoint = checkpoint.n_events <= recorded_position
        && (checkpoint.n_events == 0
            || store
                .read_all(checkpoint.n_events, 1)?
                .first()
                .is_some_and(|event| event.hash == checkpoint.head_hash));
    if !holds_checkpoint {
        tracing::warn!(
            position = checkpoint.n_events,
            "the log does not hold the sealed checkpoint; verifying the whole chain"
        );
        return store.verify_chain();
    }
    let report = store.verify_chain_from(checkpoint, recorded_position, usize::MAX)?;
    if report.n_events != recorded_position || report.head_hash != recorded_hash {
        return Err(StoreError::Corrupted {
            position: report.n_events + 1,
            reason: format!(
                "the log ends at position {} but its recorded head is position {recorded_position}",
                report.n_events
            ),
        });
    }
    Ok(report)
}
