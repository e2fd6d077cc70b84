//! Catch-up-then-live reading of the global log, written once for every backend on top of
//! `read_all` and `wait_for_head`.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use crate::{EventStore, RecordedEvent, StoreError};

/// Events read per round trip while catching up.
const CATCH_UP_BATCH: usize = 4_096;

/// A reader of the global log from a position on: first what is stored, then each new event as
/// it is committed. Delivers in order and asserts there is no gap.
pub struct Subscription {
    store: Arc<dyn EventStore>,
    next_position: u64,
    buffer: VecDeque<RecordedEvent>,
}

impl Subscription {
    /// Starts at `from_position` (inclusive; 0 and 1 both mean the start).
    pub fn new(store: Arc<dyn EventStore>, from_position: u64) -> Subscription {
        Subscription {
            store,
            next_position: from_position.max(1),
            buffer: VecDeque::new(),
        }
    }

    /// The position the next event will have.
    pub fn next_position(&self) -> u64 {
        self.next_position
    }

    /// The next event, waiting up to `timeout` for one to be committed; `None` on timeout.
    pub fn next_timeout(&mut self, timeout: Duration) -> Result<Option<RecordedEvent>, StoreError> {
        if self.buffer.is_empty() {
            self.refill()?;
        }
        if self.buffer.is_empty() {
            self.store.wait_for_head(self.next_position - 1, timeout)?;
            self.refill()?;
        }
        let Some(event) = self.buffer.pop_front() else {
            return Ok(None);
        };
        assert_eq!(
            event.global_position, self.next_position,
            "subscriptions deliver without gaps"
        );
        self.next_position += 1;
        Ok(Some(event))
    }

    fn refill(&mut self) -> Result<(), StoreError> {
        self.buffer
            .extend(self.store.read_all(self.next_position, CATCH_UP_BATCH)?);
        Ok(())
    }
}

/// Shorthand for [`Subscription::new`].
pub fn subscribe_all(store: Arc<dyn EventStore>, from_position: u64) -> Subscription {
    Subscription::new(store, from_position)
}
