//! The event envelope shared by every store backend, and the rules that derive event ids from
//! command ids so a retried command appends nothing new.

use chrono::{DateTime, Utc};
use uuid::Uuid;

/// What the writer of an append expects the stream to look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpectedRevision {
    /// No check.
    Any,
    /// The stream must not exist yet.
    NoStream,
    /// The stream's last event must have exactly this revision (revisions start at 0).
    Exact(u64),
}

impl ExpectedRevision {
    /// Whether a stream whose last revision is `current` (`None`: no stream) meets it.
    pub fn is_satisfied_by(self, current: Option<u64>) -> bool {
        match self {
            ExpectedRevision::Any => true,
            ExpectedRevision::NoStream => current.is_none(),
            ExpectedRevision::Exact(revision) => current == Some(revision),
        }
    }
}

/// An event about to be appended: everything but what the store assigns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewEvent {
    /// Deterministic from the command id (see [`event_id_for`]).
    pub event_id: Uuid,
    /// Dotted type name, e.g. `payment.succeeded`.
    pub event_type: String,
    /// Version of the payload's schema for this type.
    pub schema_version: u32,
    /// The request or flow this event belongs to.
    pub correlation_id: Option<Uuid>,
    /// The command or event that caused it.
    pub causation_id: Option<Uuid>,
    /// The payload, JSON text. Hashed byte for byte as stored.
    pub payload: String,
}

/// An event as stored, with the fields the store assigned and its place on the hash chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Position in the global log: starts at 1, gap-free.
    pub global_position: u64,
    /// The stream it belongs to.
    pub stream_id: String,
    /// Its revision in that stream: starts at 0, gap-free.
    pub stream_revision: u64,
    /// See [`NewEvent::event_id`].
    pub event_id: Uuid,
    /// See [`NewEvent::event_type`].
    pub event_type: String,
    /// See [`NewEvent::schema_version`].
    pub schema_version: u32,
    /// When the store appended it (UTC, microsecond precision).
    pub recorded_at: DateTime<Utc>,
    /// See [`NewEvent::correlation_id`].
    pub correlation_id: Option<Uuid>,
    /// See [`NewEvent::causation_id`].
    pub causation_id: Option<Uuid>,
    /// See [`NewEvent::payload`].
    pub payload: String,
    /// The hash of the event at `global_position - 1` (32 zero bytes for the first).
    pub prev_hash: [u8; 32],
    /// SHA-256 over `prev_hash` and the canonical bytes of this envelope without `hash`.
    pub hash: [u8; 32],
}

/// The namespace of event ids derived from command ids.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x7061_7963_656e_7465_7200_0000_0000_0001);

/// The id of the `event_idx`-th event produced by the command `command_id`.
///
/// A retried command derives the same ids, and the store turns a re-append of stored ids into
/// a no-op, so retries append nothing new.
pub fn event_id_for(command_id: &str, event_idx: usize) -> Uuid {
    Uuid::new_v5(
        &EVENT_ID_NAMESPACE,
        format!("{command_id}#{event_idx}").as_bytes(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_ids_are_deterministic_and_distinct() {
        assert_eq!(event_id_for("cmd-1", 0), event_id_for("cmd-1", 0));
        assert_ne!(event_id_for("cmd-1", 0), event_id_for("cmd-1", 1));
        assert_ne!(event_id_for("cmd-1", 0), event_id_for("cmd-2", 0));
    }
}
