//! The runner of a [`Projection`]: a thread that keeps a shared projection up to date with the
//! log, catching up from its position, then applying each new event as it becomes durable,
//! announcing the position it reached (so requests can wait for it and the lag behind the log
//! can be reported), and writing what it applied with its checkpoint every few milliseconds
//! on a thread of its own (`FileWriter`), one write at a time, while it goes on applying.
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
    let (position, shared) = {
        let model = model
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let shared = model.backing().is_some_and(|backing| backing.is_shared());
        (model.position(), shared)
    };
    let head = store.head_position().map_err(std::io::Error::other)?;
    let mut subscription = Subscription::new(store, position + 1);
    let mut unwritten = Unwritten::new(Duration::from_millis(match shared {
        true => SHARED_WRITE_INTERVAL_MS,
        false => WRITE_INTERVAL_MS,
    }));
    let mut writer = FileWriter::start(model.clone())?;
    let on_advance: OnAdvance = if head.saturating_sub(position) <= blocking_catch_up_events {
        catch_up(
            &mut subscription,
            &model,
            &health,
            &on_advance,
            &mut unwritten,
            &mut writer,
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
                    &mut writer,
                );
            }
            // What was staged and not written is dropped with the model (the log holds it);
            // a write under way ends before the follower does.
            writer.finish();
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
    writer: &mut FileWriter<P::Commit>,
) {
    while health.running() {
        if let Some(stopped) = writer.poll() {
            stop::<P>(health, on_advance, stopped.position, stopped);
            return;
        }
        if paused() {
            std::thread::sleep(Duration::from_millis(100));
            return;
        }
        // With batches staged but not written, wait no longer than their write is due; with
        // a write under way, look again soon for its end.
        let mut wait = unwritten
            .write_due_in()
            .unwrap_or(Duration::from_millis(IDLE_WAIT_MS));
        if writer.in_flight.is_some() {
            wait = wait.max(Duration::from_millis(1)).min(unwritten.interval);
        }
        let first = match subscription.next_timeout(wait) {
            Ok(Some(event)) => event,
            Ok(None) => {
                if unwritten.since.is_some() {
                    write_staged(model, unwritten, writer);
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
            if unwritten.events >= MAX_UNWRITTEN_EVENTS {
                // Staged rows are bounded: past the limit, the follower waits for the write
                // under way before it applies more.
                if let Some(stopped) = writer.wait() {
                    stop::<P>(health, on_advance, stopped.position, stopped);
                    return;
                }
            }
            write_staged(model, unwritten, writer);
        }
    }
}

/// Hands the staged batches and their checkpoint to the file's writer, to be written in one
/// transaction without the model's lock (queries read the staged rows from memory meanwhile).
/// With a write still under way, waits for the next turn: the rows stay staged.
fn write_staged<P: Projection>(
    model: &RwLock<P>,
    unwritten: &mut Unwritten,
    writer: &mut FileWriter<P::Commit>,
) {
    if writer.in_flight.is_some() {
        return;
    }
    let (position, pending) = {
        let mut guard = model
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        (guard.position(), guard.prepare_commit())
    };
    *unwritten = Unwritten::new(unwritten.interval);
    let Some(pending) = pending else {
        return;
    };
    writer.send(position, pending);
}

/// What the file's writer is given: a commit and the position it brings the file to.
type WriteJob<C> = (u64, C);

/// The thread that writes a follower's commits, one at a time, so the follower goes on
/// applying (and requests waiting for the model go on being answered) while the file takes
/// the last batches. The follower hands it a commit only when the one before is written.
struct FileWriter<C> {
    jobs: Option<std::sync::mpsc::SyncSender<WriteJob<C>>>,
    /// One per commit: written, or where the projection stops because it was not.
    outcomes: std::sync::mpsc::Receiver<Result<(), Stopped>>,
    /// The position the write under way brings the file to.
    in_flight: Option<u64>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl<C: PendingWrite + 'static> FileWriter<C> {
    fn start<P: Projection<Commit = C>>(model: Arc<RwLock<P>>) -> std::io::Result<Self> {
        let (jobs, received) = std::sync::mpsc::sync_channel::<WriteJob<C>>(1);
        let (outcome_sender, outcomes) = std::sync::mpsc::sync_channel(1);
        let thread = std::thread::Builder::new()
            .name(format!("{}-write", P::NAME.replace('_', "-")))
            .spawn(move || {
                lower_this_threads_priority();
                for (position, pending) in received {
                    let written = pending.write();
                    let retired = model
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .finish_commit();
                    // Freed here, with the lock released: requests wait for no free.
                    drop(retired);
                    let outcome = written.map_err(|error| Stopped {
                        position,
                        event_type: String::new(),
                        reason: format!("writing the {} file failed: {error}", P::NAME),
                    });
                    if outcome_sender.send(outcome).is_err() {
                        return;
                    }
                }
            })?;
        Ok(FileWriter {
            jobs: Some(jobs),
            outcomes,
            in_flight: None,
            thread: Some(thread),
        })
    }

    fn send(&mut self, position: u64, pending: C) {
        assert!(self.in_flight.is_none(), "one write at a time");
        let jobs = self.jobs.as_ref().expect("the writer runs until finish");
        // A thread that ended takes no job: the next look at the outcome says so.
        let _ = jobs.send((position, pending));
        self.in_flight = Some(position);
    }

    /// The outcome of the write under way if it ended: `Some` when it failed.
    fn poll(&mut self) -> Option<Stopped> {
        let position = self.in_flight?;
        match self.outcomes.try_recv() {
            Ok(outcome) => {
                self.in_flight = None;
                outcome.err()
            }
            Err(std::sync::mpsc::TryRecvError::Empty) => None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                self.in_flight = None;
                Some(Self::ended(position))
            }
        }
    }

    /// Waits for the write under way, if any: `Some` when it failed.
    fn wait(&mut self) -> Option<Stopped> {
        let position = self.in_flight.take()?;
        match self.outcomes.recv() {
            Ok(outcome) => outcome.err(),
            Err(std::sync::mpsc::RecvError) => Some(Self::ended(position)),
        }
    }

    /// The stop of a projection whose writer thread ended without an outcome (it panicked):
    /// what it was given is not known to be written.
    fn ended(position: u64) -> Stopped {
        Stopped {
            position,
            event_type: String::new(),
            reason: "the file's writer thread ended during a write (a bug)".to_owned(),
        }
    }

    /// Lets the write under way end, and the thread with it.
    fn finish(&mut self) {
        let failed = self.wait();
        if let Some(stopped) = failed {
            tracing::error!(position = stopped.position, reason = %stopped.reason, "the last write of a follower that ends failed; the next start folds that part of the log again");
        }
        self.jobs = None;
        if let Some(thread) = self.thread.take() {
            if thread.join().is_err() {
                tracing::error!("a follower's file writer panicked");
            }
        }
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
/// Staged batches are written at most this long after the first of them was applied. The
/// write runs on the follower's writer thread, at a lower priority, while the fold goes on
/// (reading beside the commit when it must read the file), so a longer interval costs the
/// requests no stall and writes each hot page fewer times (`docs/benchmarks.md`, eighth).
const WRITE_INTERVAL_MS: u64 = 50;
/// The same for tables shared on PostgreSQL: the other nodes serve a write only once it is
/// committed (a request that appended on one of them waits for it), so it stays short.
const SHARED_WRITE_INTERVAL_MS: u64 = 5;
/// ... or once this many events are staged, whichever comes first: bounds the memory the
/// staged rows take and what a start after `kill -9` folds again.
const MAX_UNWRITTEN_EVENTS: usize = 8_192;

/// What the follower applied and staged since its last write.
#[derive(Debug)]
struct Unwritten {
    since: Option<std::time::Instant>,
    events: usize,
    /// How long after the first staged batch the write is due.
    interval: Duration,
}

impl Unwritten {
    fn new(interval: Duration) -> Unwritten {
        Unwritten {
            since: None,
            events: 0,
            interval,
        }
    }

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
        Some(self.interval.saturating_sub(since.elapsed()))
    }
}

/// How much lower than the request threads the file's writer runs (a nice value): its work can
/// wait a few milliseconds, a request's answer should not wait behind it.
const WRITER_NICENESS: i32 = 10;

/// Lowers the calling thread's scheduling priority (Linux: a thread's own nice value).
fn lower_this_threads_priority() {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: gettid and setpriority take no pointers; they act on this thread only.
        let outcome = unsafe {
            let tid = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, tid, WRITER_NICENESS)
        };
        if outcome != 0 {
            tracing::debug!(error = %std::io::Error::last_os_error(), "the file writer's priority stays as it was");
        }
    }
}
