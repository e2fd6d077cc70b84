//! The runner of a [`Projection`]: a thread that keeps a shared projection up to date with the
//! log, catching up from its position, then applying each new event as it becomes durable,
//! announcing the position it reached (so requests can wait for it and the lag behind the log
//! can be reported), and writing what it applied with its checkpoint every few milliseconds.
//!
//! **A projection that fails stops alone.** An event the projection cannot apply (a panic in
//! its fold: a broken invariant, so a bug) is caught here, while the follower holds the write
//! lock, so the lock is never poisoned and the process goes on. The follower then stops at
//! that position and says where and why in [`FollowerHealth`]; the store keeps recording, and
//! what needs the read model answers that it is unavailable. The next start folds the same
//! log and stops at the same event: no crash loop.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use paycenter_domain::envelope::RecordedEvent;
use paycenter_store::{EventStore, Subscription};

use crate::model::Stopped;
use crate::projection::{PendingWrite, Projection};

/// Called after each batch of applied events with the new position.
pub type OnAdvance = Box<dyn Fn(u64) + Send>;

/// Events applied under one write lock, so readers are never starved during catch-up.
const MAX_EVENTS_PER_LOCK: usize = 1_024;

/// Whether the follower runs, shared with whoever reports health.
#[derive(Debug, Default)]
pub struct FollowerHealth {
    stopped: Mutex<Option<Stopped>>,
    last_read_error: Mutex<Option<String>>,
    /// While the start's catch-up runs in the background: the position it must reach (0 once
    /// reached).
    catching_up_to: std::sync::atomic::AtomicU64,
    /// Set to end the follower's thread at its next batch (the node hands the projection's
    /// tables over to another writer).
    handing_over: std::sync::atomic::AtomicBool,
    /// With shared tables: this node folds them (holds the lease), rather than reading.
    writes_shared_tables: std::sync::atomic::AtomicBool,
}

impl FollowerHealth {
    /// The position the start's catch-up still has to reach, while it runs.
    pub fn catching_up_to(&self) -> Option<u64> {
        match self
            .catching_up_to
            .load(std::sync::atomic::Ordering::Acquire)
        {
            0 => None,
            target => Some(target),
        }
    }

    /// Where the read model stopped, if it did.
    pub fn stopped(&self) -> Option<Stopped> {
        self.stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The last error reading the log, cleared by the next successful read.
    pub fn last_read_error(&self) -> Option<String> {
        self.last_read_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Records a stop reported by another node: the one that folds the tables this node reads
    /// (see `shared`).
    pub fn report_stop(&self, stopped: Stopped) {
        self.stop(stopped);
    }

    /// Ends the follower's thread at its next batch, without a stop: what it staged and did
    /// not write is dropped with the model (another node folds it again from the log).
    pub fn hand_over(&self) {
        self.handing_over
            .store(true, std::sync::atomic::Ordering::Release);
    }

    /// With tables shared by the nodes of one database: whether this node folds them.
    pub fn writes_shared_tables(&self) -> bool {
        self.writes_shared_tables
            .load(std::sync::atomic::Ordering::Acquire)
    }

    /// See [`FollowerHealth::writes_shared_tables`].
    pub fn set_writes_shared_tables(&self, writes: bool) {
        self.writes_shared_tables
            .store(writes, std::sync::atomic::Ordering::Release);
    }

    /// Forgets a stop and a hand-over: a new follower starts on a model opened afresh.
    pub fn reset(&self) {
        *self
            .stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = None;
        self.handing_over
            .store(false, std::sync::atomic::Ordering::Release);
        self.catching_up_to
            .store(0, std::sync::atomic::Ordering::Release);
    }

    /// Whether the follower is to go on: not stopped, not handing over.
    fn running(&self) -> bool {
        self.stopped().is_none() && !self.handing_over.load(std::sync::atomic::Ordering::Acquire)
    }

    fn stop(&self, stopped: Stopped) {
        *self
            .stopped
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(stopped);
    }

    fn set_read_error(&self, error: Option<String>) {
        *self
            .last_read_error
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = error;
    }
}

/// The text of a caught panic.
pub fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    if let Some(text) = panic.downcast_ref::<&str>() {
        return (*text).to_owned();
    }
    if let Some(text) = panic.downcast_ref::<String>() {
        return text.clone();
    }
    "a panic without a message".to_owned()
}

/// Applies one event, catching a panic of the fold: `Err` says where and why it stopped.
pub fn apply_guarded<P: Projection>(model: &mut P, event: &RecordedEvent) -> Result<(), Stopped> {
    catch_unwind(AssertUnwindSafe(|| model.apply(event))).map_err(|panic| Stopped {
        position: event.global_position,
        event_type: event.event_type.clone(),
        reason: format!(
            "invariant broken (a bug): {}",
            panic_message(panic.as_ref())
        ),
    })
}

/// Folds the log into `model` from its position, then keeps folding on a thread until the
/// process ends. When the model is at most `blocking_catch_up_events` behind the log, the
/// catch-up is done before this returns; a longer one (the first start after an upgrade, a
/// deleted file) runs on the thread, and `health.catching_up_to()` says so until it is done,
/// so the service can listen and answer 503 meanwhile instead of not answering at all.
/// `on_advance` hears every new position; `health` hears a stop. The thread ends at a stop or
/// after [`FollowerHealth::hand_over`]; its handle is returned.
pub fn follow<P: Projection>(
    store: Arc<dyn EventStore>,
    model: Arc<RwLock<P>>,
    health: Arc<FollowerHealth>,
    on_advance: OnAdvance,
    blocking_catch_up_events: u64,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let position = model
        .read()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .position();
    let head = store.head_position().map_err(std::io::Error::other)?;
    let mut subscription = Subscription::new(store, position + 1);
    let mut unwritten = Unwritten::default();
    let on_advance: OnAdvance = if head.saturating_sub(position) <= blocking_catch_up_events {
        catch_up(
            &mut subscription,
            &model,
            &health,
            &on_advance,
            &mut unwritten,
        );
        on_advance
    } else {
        tracing::info!(
            position,
            head,
            projection = P::NAME,
            "the projection catches up with the log in the background; requests that need it answer 503 until then"
        );
        health
            .catching_up_to
            .store(head, std::sync::atomic::Ordering::Release);
        let health = health.clone();
        Box::new(move |reached| {
            if reached >= head {
                health
                    .catching_up_to
                    .store(0, std::sync::atomic::Ordering::Release);
            }
            on_advance(reached);
        })
    };
    std::thread::Builder::new()
        .name(P::NAME.replace('_', "-"))
        .spawn(move || {
            while health.running() {
                catch_up(
                    &mut subscription,
                    &model,
                    &health,
                    &on_advance,
                    &mut unwritten,
                );
            }
        })
}

/// Test builds only (`fault-injection` feature): while the file named by
/// `PAYCENTER_FAULT_FOLLOWER_PAUSE_FILE` exists, the follower applies nothing, so tests can
/// watch a read model fall behind the log.
#[cfg(feature = "fault-injection")]
fn paused() -> bool {
    std::env::var_os("PAYCENTER_FAULT_FOLLOWER_PAUSE_FILE")
        .is_some_and(|path| std::path::Path::new(&path).exists())
}

#[cfg(not(feature = "fault-injection"))]
fn paused() -> bool {
    false
}

fn catch_up<P: Projection>(
    subscription: &mut Subscription,
    model: &RwLock<P>,
    health: &FollowerHealth,
    on_advance: &OnAdvance,
    unwritten: &mut Unwritten,
) {
    while health.running() {
        if paused() {
            std::thread::sleep(Duration::from_millis(100));
            return;
        }
        // With batches staged but not written, wait no longer than their write is due.
        let wait = unwritten
            .write_due_in()
            .unwrap_or(Duration::from_millis(IDLE_WAIT_MS));
        let first = match subscription.next_timeout(wait) {
            Ok(Some(event)) => event,
            Ok(None) => {
                if unwritten.since.is_some() {
                    write_staged(model, health, on_advance, unwritten);
                }
                return;
            }
            Err(error) => {
                tracing::error!(%error, projection = P::NAME, "reading the log failed; retrying");
                health.set_read_error(Some(error.to_string()));
                std::thread::sleep(Duration::from_millis(500));
                return;
            }
        };
        health.set_read_error(None);
        let mut guard = model
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut outcome = Ok(());
        // An online rebuild may have swapped in a model that is already past this event.
        if first.global_position > guard.position() {
            outcome = apply_guarded(&mut *guard, &first);
        }
        let mut n_applied = 1;
        while outcome.is_ok() && n_applied < MAX_EVENTS_PER_LOCK {
            match subscription.next_timeout(Duration::ZERO) {
                Ok(Some(event)) if event.global_position > guard.position() => {
                    outcome = apply_guarded(&mut *guard, &event);
                }
                Ok(Some(_)) => {}
                _ => break,
            }
            n_applied += 1;
        }
        let position = guard.position();
        if let Err(stopped) = outcome {
            // Nothing of what was applied since the last write reaches the file: a model that
            // stopped is never written past its last good commit, so the next start stops
            // again at the same event instead of skipping it.
            drop(guard);
            stop::<P>(health, on_advance, position, stopped);
            return;
        }
        // The batch is staged (queries read it as committed, from memory) and its position
        // announced at once: what it holds is already durable in the log, from which a model
        // that fails to write is folded again. So a request waits for one commit (the log's),
        // and the file takes many batches in one transaction every few milliseconds.
        guard.stage();
        drop(guard);
        on_advance(position);
        unwritten.add(n_applied);
        if unwritten.write_due_in() == Some(Duration::ZERO) {
            write_staged(model, health, on_advance, unwritten);
        }
    }
}

/// Writes the staged batches and their checkpoint in one transaction, without the model's
/// lock (queries read the staged rows from memory meanwhile).
fn write_staged<P: Projection>(
    model: &RwLock<P>,
    health: &FollowerHealth,
    on_advance: &OnAdvance,
    unwritten: &mut Unwritten,
) {
    let (position, pending) = {
        let mut guard = model
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (guard.position(), guard.prepare_commit())
    };
    *unwritten = Unwritten::default();
    let Some(pending) = pending else {
        return;
    };
    let written = pending.write();
    model
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .finish_commit();
    if let Err(error) = written {
        let stopped = Stopped {
            position,
            event_type: String::new(),
            reason: format!("writing the {} file failed: {error}", P::NAME),
        };
        stop::<P>(health, on_advance, position, stopped);
    }
}

fn stop<P: Projection>(
    health: &FollowerHealth,
    on_advance: &OnAdvance,
    position: u64,
    stopped: Stopped,
) {
    tracing::error!(
        projection = P::NAME,
        position = stopped.position,
        event_type = %stopped.event_type,
        reason = %stopped.reason,
        "the projection stopped; the log keeps growing, and requests that need it answer 503"
    );
    health.stop(stopped);
    // Wakes whoever waits for a position, so they hear of the stop at once.
    on_advance(position);
}

/// How long the follower waits for the log when it has nothing staged.
const IDLE_WAIT_MS: u64 = 200;
/// Staged batches are written at most this long after the first of them was applied. Short,
/// because each write takes a core for as long as its batch: under load the request threads'
/// p99 follows it (25 ms: 10.5-11.9 x the HTTP ceiling's p99; 10 ms: 8.1-8.8 x; 5 ms:
/// 7.7-8.1 x, for the same payments/s; `docs/benchmarks.md`).
const WRITE_INTERVAL_MS: u64 = 5;
/// ... or once this many events are staged, whichever comes first: bounds the memory the
/// staged rows take and what a start after `kill -9` folds again.
const MAX_UNWRITTEN_EVENTS: usize = 8_192;

/// What the follower applied and staged since its last write.
#[derive(Debug, Default)]
struct Unwritten {
    since: Option<std::time::Instant>,
    events: usize,
}

impl Unwritten {
    fn add(&mut self, events: usize) {
        self.since.get_or_insert_with(std::time::Instant::now);
        self.events += events;
    }

    /// `None` with nothing staged; zero when the write is due now.
    fn write_due_in(&self) -> Option<Duration> {
        let since = self.since?;
        if self.events >= MAX_UNWRITTEN_EVENTS {
            return Some(Duration::ZERO);
        }
        Some(Duration::from_millis(WRITE_INTERVAL_MS).saturating_sub(since.elapsed()))
    }
}
