//! What both backends' writers share: the bounded queue appends wait in, draining it into
//! batches, and the rules a batch applies to each append (expected revision, replays).

use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TryRecvError};
use std::time::{Duration, Instant};

use crate::{validate_append, AppendFuture, AppendOutcome, ExpectedRevision, NewEvent, StoreError};

/// Where an append's outcome goes once it is durable (or refused).
pub(crate) type Reply = tokio::sync::oneshot::Sender<Result<AppendOutcome, StoreError>>;

/// One queued append.
pub(crate) struct AppendRequest {
    pub(crate) stream_id: String,
    pub(crate) expected: ExpectedRevision,
    pub(crate) events: Vec<NewEvent>,
    pub(crate) reply: Reply,
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
    ) -> Result<tokio::sync::oneshot::Receiver<Result<AppendOutcome, StoreError>>, StoreError> {
        validate_append(stream_id, &events)?;
        let (reply, outcome) = tokio::sync::oneshot::channel();
        self.sender
            .send(AppendRequest {
                stream_id: stream_id.to_owned(),
                expected,
                events,
                reply,
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
        self.submit(stream_id, expected, events)?
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
        let submitted = self.submit(stream_id, expected, events);
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
