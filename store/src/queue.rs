//! What both backends' writers share: the bounded queue appends wait in, draining it into
//! batches, and the rules a batch applies to each append (expected revision, replays).

use std::collections::HashMap;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use chrono::DateTime;

use crate::chain::HashInput;
use crate::{
    validate_append, AppendFuture, AppendOutcome, ExpectedRevision, NewEvent, RecordedEvent,
    StoreError,
};

/// Where an append's outcome goes once it is durable (or refused).
pub(crate) type Reply = tokio::sync::oneshot::Sender<Result<AppendOutcome, StoreError>>;

/// How the caller of an append waits for its reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Waiter {
    /// A thread parked in `append`: its reply costs a futex wake and, on a busy machine, a
    /// context switch.
    Thread,
    /// A task awaiting `append_async`: its reply only queues it on its runtime.
    Task,
}

/// One queued append.
pub(crate) struct AppendRequest {
    pub(crate) stream_id: String,
    pub(crate) expected: ExpectedRevision,
    pub(crate) events: Vec<NewEvent>,
    pub(crate) reply: Reply,
    pub(crate) waiter: Waiter,
}

/// The sending side of a writer's queue.
pub(crate) struct AppendQueue {
    sender: SyncSender<AppendRequest>,
}

impl AppendQueue {
    /// A queue holding at most `capacity` appends; the writer drains the receiver.
    pub(crate) fn new(capacity: usize) -> (AppendQueue, Receiver<AppendRequest>) {
        let (sender, receiver) = sync_channel(capacity);
        (AppendQueue { sender }, receiver)
    }

    /// Validates and queues an append. Blocks only while the queue is full (back-pressure).
    fn submit(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
        waiter: Waiter,
    ) -> Result<tokio::sync::oneshot::Receiver<Result<AppendOutcome, StoreError>>, StoreError> {
        validate_append(stream_id, &events)?;
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.sender
            .send(AppendRequest {
                stream_id: stream_id.to_owned(),
                expected,
                events,
                reply,
                waiter,
            })
            .map_err(|_| StoreError::Closed)?;
        Ok(outcome)
    }

    /// Queues an append and blocks until its outcome.
    pub(crate) fn append(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.submit(stream_id, expected, events, Waiter::Thread)?
            .blocking_recv()
            .map_err(|_| StoreError::Closed)?
    }

    /// Queues an append now; the future resolves with its outcome.
    pub(crate) fn append_async(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> AppendFuture {
        let submitted = self.submit(stream_id, expected, events, Waiter::Task);
        Box::pin(async move { submitted?.await.map_err(|_| StoreError::Closed)? })
    }
}

/// Waits for the next append, then takes whatever else is queued, up to `max_appends`.
/// `None` once every sender is gone.
pub(crate) fn next_batch(
    receiver: &Receiver<AppendRequest>,
    max_appends: usize,
) -> Option<Vec<AppendRequest>> {
    let first = receiver.recv().ok()?;
    let mut batch = vec![first];
    while batch.len() < max_appends {
        match receiver.try_recv() {
            Ok(request) => batch.push(request),
            Err(TryRecvError::Empty | TryRecvError::Disconnected) => break,
        }
    }
    Some(batch)
}

/// Like [`next_batch`], but after the first append waits up to `linger` for the batch to
/// reach `expected_appends` (the size of the previous batch). When every caller is answered
/// at once they come back a few microseconds apart; without the wait the first one would
/// commit alone and the rest queue behind it, halving the batch for a whole commit.
pub(crate) fn next_batch_lingering(
    receiver: &Receiver<AppendRequest>,
    max_appends: usize,
    expected_appends: usize,
    linger: std::time::Duration,
) -> Option<Vec<AppendRequest>> {
    let mut batch = next_batch(receiver, max_appends)?;
    let target = expected_appends.min(max_appends);
    if batch.len() >= target {
        return Some(batch);
    }
    let deadline = std::time::Instant::now() + linger;
    while batch.len() < target {
        let now = std::time::Instant::now();
        if now >= deadline {
            break;
        }
        match receiver.recv_timeout(deadline - now) {
            Ok(request) => batch.push(request),
            Err(_) => break,
        }
    }
    Some(batch)
}

/// The outcome of re-appending ids already stored at `found` (position, revision), in the
/// append's order: a replay when they are contiguous, else a conflict.
pub(crate) fn replayed(
    found: &[(u64, u64)],
    first_event_id: uuid::Uuid,
) -> Result<AppendOutcome, StoreError> {
    if !found.windows(2).all(|pair| pair[1].0 == pair[0].0 + 1) {
        return Err(StoreError::EventIdConflict {
            event_id: first_event_id,
        });
    }
    let (first_position, _) = *found.first().expect("non-empty append");
    let (last_position, last_revision) = *found.last().expect("non-empty append");
    Ok(AppendOutcome {
        first_position,
        last_position,
        last_revision,
        already_stored: true,
    })
}

/// Polls `head` in short steps until it passes `after_position` or `timeout` elapses: for
/// stores written by another process or node.
pub(crate) fn poll_head(
    head: impl Fn() -> Result<u64, StoreError>,
    after_position: u64,
    timeout: Duration,
    step: Duration,
) -> Result<u64, StoreError> {
    let deadline = Instant::now() + timeout;
    loop {
        let position = head()?;
        if position > after_position || Instant::now() >= deadline {
            return Ok(position);
        }
        std::thread::sleep(step.min(timeout));
    }
}

/// An event id found in the log, or planned earlier in the batch being decided.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    pub(crate) position: u64,
    pub(crate) stream_id: String,
    pub(crate) revision: u64,
}

/// A batch decided: what each append answers, and the events to write in log order.
pub(crate) struct BatchPlan {
    pub(crate) outcomes: Vec<Result<AppendOutcome, StoreError>>,
    pub(crate) events: Vec<RecordedEvent>,
}

/// Decides a batch against the head of the log, for writers that look up what they need
/// once per batch. `stored` must hold every event id of the batch already in the log, and
/// `revisions` the last revision of every batch stream that exists; both are updated as the
/// plan goes, so a later append sees the earlier ones.
pub(crate) fn plan_batch(
    batch: &[AppendRequest],
    (mut head_position, mut head_hash): (u64, [u8; 32]),
    recorded_at_us: i64,
    stored: &mut HashMap<uuid::Uuid, Stored>,
    revisions: &mut HashMap<String, u64>,
) -> BatchPlan {
    let recorded_at = DateTime::from_timestamp_micros(recorded_at_us).expect("clock in range");
    let mut events = Vec::new();
    let mut outcomes = Vec::with_capacity(batch.len());
    for request in batch {
        if request
            .events
            .iter()
            .any(|event| stored.contains_key(&event.event_id))
        {
            outcomes.push(replay(request, stored));
            continue;
        }
        let current = revisions.get(&request.stream_id).copied();
        if !request.expected.is_satisfied_by(current) {
            outcomes.push(Err(StoreError::WrongExpectedRevision {
                stream_id: request.stream_id.clone(),
                expected: request.expected,
                actual: current,
            }));
            continue;
        }
        let first_position = head_position + 1;
        let mut revision = current.map_or(0, |revision| revision + 1);
        for event in &request.events {
            let global_position = head_position + 1;
            let hash = HashInput {
                global_position,
                stream_id: &request.stream_id,
                stream_revision: revision,
                event_id: &event.event_id,
                event_type: &event.event_type,
                schema_version: event.schema_version,
                recorded_at_us,
                correlation_id: event.correlation_id,
                causation_id: event.causation_id,
                payload: &event.payload,
            }
            .hash(&head_hash);
            events.push(RecordedEvent {
                global_position,
                stream_id: request.stream_id.clone(),
                stream_revision: revision,
                event_id: event.event_id,
                event_type: event.event_type.clone(),
                schema_version: event.schema_version,
                recorded_at,
                correlation_id: event.correlation_id,
                causation_id: event.causation_id,
                payload: event.payload.clone(),
                prev_hash: head_hash,
                hash,
            });
            stored.insert(
                event.event_id,
                Stored {
                    position: global_position,
                    stream_id: request.stream_id.clone(),
                    revision,
                },
            );
            head_position = global_position;
            head_hash = hash;
            revision += 1;
        }
        revisions.insert(request.stream_id.clone(), revision - 1);
        outcomes.push(Ok(AppendOutcome {
            first_position,
            last_position: head_position,
            last_revision: revision - 1,
            already_stored: false,
        }));
    }
    BatchPlan { outcomes, events }
}

/// Some ids of `request` are stored (before, or earlier in this batch): all of them,
/// contiguous in this stream, is a replay; anything else is a conflict.
fn replay(
    request: &AppendRequest,
    stored: &HashMap<uuid::Uuid, Stored>,
) -> Result<AppendOutcome, StoreError> {
    let mut found: Vec<(u64, u64)> = Vec::with_capacity(request.events.len());
    for event in &request.events {
        match stored.get(&event.event_id) {
            Some(row) if row.stream_id == request.stream_id => {
                found.push((row.position, row.revision))
            }
            _ => {
                return Err(StoreError::EventIdConflict {
                    event_id: event.event_id,
                })
            }
        }
    }
    replayed(&found, request.events[0].event_id)
}
