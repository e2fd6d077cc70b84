//! A projection whose tables several nodes share in PostgreSQL: one node folds the log into
//! them, the others read what it commits.
//!
//! Each node runs one coordinating thread per projection ([`run_shared`]):
//! - **The writer** holds the projection's lease (`EventStore::try_lease`, renewed every
//!   [`LEASE_RENEW_MS`]) and runs the ordinary follower ([`crate::follow`]) on a model opened
//!   as [`Role::Writer`]: it folds each new event, stages it (its own requests read it at
//!   once) and commits every few milliseconds. Its commits are fenced ([`Backing::commit`]):
//!   should another node have taken over, they write nothing.
//! - **A reader** holds a model opened as [`Role::Reader`], which applies nothing: its maps
//!   read the shared tables directly, with nothing cached, and at each of the writer's commits
//!   (heard by `NOTIFY`, or every [`LISTENING_REFRESH_MS`]) it looks at the checkpoint; when
//!   it moved, the tables kept whole in memory that changed are reloaded and the new position
//!   is announced. A request that appended waits, as on the
//!   writer, until the announced position reaches its event: here, until the writer
//!   committed it.
//! - **Hand-over.** A reader that gets the lease (the writer stopped renewing it: killed, cut
//!   off) opens the tables as a writer, resuming at their checkpoint, and folds on. A writer
//!   that loses the lease, or whose commit was fenced, ends its follower, drops what it had
//!   staged (the log still holds it) and becomes a reader.
//! - Tables of another version or of another log are cleared by the writer and folded again
//!   from the start; readers wait for them meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use paycenter_store::EventStore;

use crate::follow::FollowerHealth;
use crate::model::ModelError;
use crate::projection::{Projection, Role};
use crate::tables::postgres::Change;
use crate::tables::Backing;

/// How often a node asks for (or renews) the lease.
pub const LEASE_RENEW_MS: u64 = 1_000;
/// How long a lease lasts unrenewed: how long a killed writer holds up the hand-over.
pub const LEASE_TTL_MS: u64 = 3_000;
/// How often a writer checks on its follower, and a reader without a listener looks at the
/// checkpoint.
pub const REFRESH_MS: u64 = 5;
/// How often a reader looks at the checkpoint when it hears the writer's commits anyway
/// (`NOTIFY`): a notification lost with a connection is made up for within this.
const LISTENING_REFRESH_MS: u64 = 100;
/// How long a reader's start waits for the shared tables to reach the log's head: the dead
/// writer's lease running out, and a new writer's catch-up.
const START_WAIT_MS: u64 = LEASE_TTL_MS + LEASE_RENEW_MS + 10_000;
/// How long to wait before trying again after the tables could not be read.
const RETRY_MS: u64 = 1_000;

/// Where the shared tables are.
#[derive(Debug, Clone)]
pub struct SharedTables {
    /// The database (`postgres://…`).
    pub url: String,
    /// The store's schema, which holds the tables too.
    pub schema: String,
    /// This node's name in the lease table.
    pub node_id: String,
}

impl SharedTables {
    /// Opens projection `P`'s tables.
    pub fn open<P: Projection>(&self) -> Result<Arc<Backing>, ModelError> {
        Ok(Backing::open_postgres(&self.url, &self.schema, P::NAME)?)
    }
}

/// Called with each position the node's projection reaches (as [`crate::follow::OnAdvance`],
/// but shared by the follower and the refresh).
pub type Announce = Arc<dyn Fn(u64) + Send + Sync>;

/// Opens projection `P` on its shared tables as a reader: what a node serves from until it
/// knows whether it writes. Tables of another version or log are folded again: cleared by
/// this node if it can take the lease, else waited for (another node of this version folds
/// them), up to `wait`.
pub fn open_reader<P: Projection>(
    tables: &SharedTables,
    store: &dyn EventStore,
    wait: Duration,
) -> Result<P, ModelError> {
    let deadline = Instant::now() + wait;
    loop {
        match P::open_on(tables.open::<P>()?, store, Role::Reader) {
            Ok(model) => return Ok(model),
            Err(error @ (ModelError::OtherVersion { .. } | ModelError::NotThisLog { .. }))
                if Instant::now() < deadline =>
            {
                if store.try_lease(&lease_name::<P>(), &tables.node_id, LEASE_TTL_MS)? {
                    // This node will write them: it clears them now, and folds them once it
                    // follows the log.
                    drop(open_writer::<P>(tables, store)?);
                    continue;
                }
                tracing::info!(projection = P::NAME, %error, "waiting for the node that writes the shared tables to fold them again");
                std::thread::sleep(Duration::from_millis(RETRY_MS));
            }
            Err(error) => return Err(error),
        }
    }
}

/// The lease whose holder writes projection `P`'s tables.
fn lease_name<P: Projection>() -> String {
    format!("projection:{}", P::NAME)
}

/// Opens projection `P` on its shared tables as their writer, clearing tables of another
/// version or log (they are folded again from the log).
fn open_writer<P: Projection>(
    tables: &SharedTables,
    store: &dyn EventStore,
) -> Result<P, ModelError> {
    let backing = tables.open::<P>()?;
    match P::open_on(backing.clone(), store, Role::Writer) {
        Err(error @ (ModelError::OtherVersion { .. } | ModelError::NotThisLog { .. })) => {
            tracing::warn!(projection = P::NAME, %error, "the shared tables are folded again from the log");
            backing.clear_shared()?;
            P::open_on(tables.open::<P>()?, store, Role::Writer)
        }
        opened => opened,
    }
}

/// Starts the thread that keeps `model` (opened by [`open_reader`]) current on this node, as
/// the writer when it holds the lease, as a reader otherwise (see the module). The thread
/// ends when `stop` is set: a writer then commits what it staged and gives the lease up, so
/// another node takes over at its next look instead of when the lease runs out. Its handle
/// is returned, for a clean stop to wait for.
pub fn run_shared<P: Projection>(
    store: Arc<dyn EventStore>,
    tables: SharedTables,
    model: Arc<RwLock<P>>,
    health: Arc<FollowerHealth>,
    announce: Announce,
    blocking_catch_up_events: u64,
    stop: Arc<AtomicBool>,
) -> std::io::Result<std::thread::JoinHandle<()>> {
    let mut coordinator = Coordinator {
        store,
        tables,
        model,
        health,
        announce,
        blocking_catch_up_events,
        follower: None,
        model_is_reader: true,
        lease_checked_at: None,
        listener: None,
        stop_recorded: false,
    };
    // The first look at the lease happens before this returns: a node that is alone becomes
    // the writer before it serves. A reader waits (a while) for the tables to reach the log's
    // head as it was at the start: a node restarted after every node was killed serves
    // nothing older than what was acknowledged before, once the lease of the dead writer
    // expired and a writer caught up.
    let head_at_start = coordinator.store.head_position().unwrap_or(0);
    let started = Instant::now();
    coordinator.round();
    while coordinator.follower.is_none()
        && coordinator.position() < head_at_start
        && started.elapsed() < Duration::from_millis(START_WAIT_MS)
    {
        std::thread::sleep(Duration::from_millis(REFRESH_MS));
        coordinator.round();
    }
    std::thread::Builder::new()
        .name(format!("{}-shared", P::NAME.replace('_', "-")))
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                coordinator.round();
                coordinator.pause();
            }
            coordinator.finish();
        })
}

struct Coordinator<P: Projection> {
    store: Arc<dyn EventStore>,
    tables: SharedTables,
    model: Arc<RwLock<P>>,
    health: Arc<FollowerHealth>,
    announce: Announce,
    blocking_catch_up_events: u64,
    /// The follower's thread, while this node writes.
    follower: Option<std::thread::JoinHandle<()>>,
    /// The model in `model` was opened as a reader. A writer's model left there after a
    /// hand-over whose reopening failed is never refreshed: its maps keep recent rows that
    /// another writer may have changed since.
    model_is_reader: bool,
    lease_checked_at: Option<Instant>,
    /// A reader's connection that hears the writer's commits.
    listener: Option<crate::tables::postgres::Listener>,
    /// The writer recorded its fold's stop in the tables.
    stop_recorded: bool,
}

impl<P: Projection> Coordinator<P> {
    /// Where the model in `model` keeps its rows.
    fn backing(&self) -> Option<Arc<Backing>> {
        self.model
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .backing()
            .cloned()
    }

    fn position(&self) -> u64 {
        self.model
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .position()
    }

    /// Waits for the next round: a writer `REFRESH_MS`; a reader until it hears the writer
    /// commit, or `LISTENING_REFRESH_MS` (`REFRESH_MS` while it has no listener).
    fn pause(&mut self) {
        if self.follower.is_none() && self.listener.is_none() {
            match self.backing().map(|backing| backing.listen()).transpose() {
                Ok(listener) => self.listener = listener.flatten(),
                Err(error) => {
                    tracing::warn!(projection = P::NAME, %error, "no listener for the writer's commits; polling")
                }
            }
        }
        match (&mut self.listener, self.follower.is_some()) {
            (Some(listener), false) => {
                if let Err(error) = listener.wait(Duration::from_millis(LISTENING_REFRESH_MS)) {
                    tracing::warn!(projection = P::NAME, %error, "the listener for the writer's commits failed; polling");
                    self.listener = None;
                }
            }
            _ => std::thread::sleep(Duration::from_millis(REFRESH_MS)),
        }
    }

    /// One round: the lease when due, then the writer's checks or a reader's refresh.
    fn round(&mut self) {
        let lease_due = self
            .lease_checked_at
            .is_none_or(|at| at.elapsed() >= Duration::from_millis(LEASE_RENEW_MS));
        if lease_due {
            self.lease_checked_at = Some(Instant::now());
            let held = self
                .store
                .try_lease(&lease_name::<P>(), &self.tables.node_id, LEASE_TTL_MS)
                .unwrap_or_else(|error| {
                    tracing::warn!(projection = P::NAME, %error, "the projection's lease could not be asked for");
                    false
                });
            match (self.follower.is_some(), held) {
                (false, true) => self.take_over(),
                (true, false) => {
                    tracing::info!(
                        projection = P::NAME,
                        "the lease went to another node; this one reads from now on"
                    );
                    self.hand_over();
                }
                (true, true) if !self.writes_live_generation() => {
                    // A rebuild elsewhere made another generation live while this node
                    // took the lease over: it folds the live one instead.
                    tracing::info!(
                        projection = P::NAME,
                        "another generation of the shared tables is live; this node folds it"
                    );
                    self.hand_over();
                    self.take_over();
                }
                _ => {}
            }
        }
        if self.follower.is_some() {
            self.check_writer();
            return;
        }
        if !self.model_is_reader {
            self.become_reader();
            return;
        }
        if lease_due {
            self.heed_writer_stop();
        }
        if let Err(error) = self.refresh() {
            tracing::warn!(projection = P::NAME, %error, "the shared tables could not be read; retrying");
            std::thread::sleep(Duration::from_millis(RETRY_MS));
        }
    }

    /// Becomes the writer: the tables opened for writing at their checkpoint, the follower
    /// started on them.
    fn take_over(&mut self) {
        let opened = open_writer::<P>(&self.tables, self.store.as_ref());
        let writer = match opened {
            Ok(writer) => writer,
            Err(error) => {
                tracing::error!(projection = P::NAME, %error, "the shared tables could not be opened for writing; this node stays a reader");
                return;
            }
        };
        let position = writer.position();
        self.stop_recorded = false;
        // Generations an offline rebuild replaced are this node's to drop, now that it writes
        // the live one (readers still on them find the pointer moved).
        if let Some(backing) = writer.backing() {
            if let Err(error) = backing.drop_other_generations() {
                tracing::warn!(projection = P::NAME, %error, "an old generation of the shared tables could not be dropped");
            }
        }
        *self
            .model
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = writer;
        self.model_is_reader = false;
        self.health.reset();
        tracing::info!(
            projection = P::NAME,
            position,
            "this node holds the lease and folds the shared tables"
        );
        (self.announce)(position);
        let announce = self.announce.clone();
        match crate::follow::follow(
            self.store.clone(),
            self.model.clone(),
            self.health.clone(),
            Box::new(move |position| announce(position)),
            self.blocking_catch_up_events,
        ) {
            Ok(follower) => {
                self.follower = Some(follower);
                self.health.set_writes_shared_tables(true);
            }
            Err(error) => {
                tracing::error!(projection = P::NAME, %error, "the follower could not start; this node stays a reader");
                self.become_reader();
            }
        }
    }

    /// A reader stops as the writer's fold stopped (and says where), and runs again once the
    /// tables hold no stop (folded again by a fixed version).
    fn heed_writer_stop(&mut self) {
        let Some(backing) = self.backing() else {
            return;
        };
        let recorded = match backing.writer_stop() {
            Ok(recorded) => recorded,
            Err(error) => {
                tracing::warn!(projection = P::NAME, %error, "the writer's stop could not be read");
                return;
            }
        };
        match recorded.and_then(|text| serde_json::from_str::<crate::model::Stopped>(&text).ok()) {
            Some(stopped) if self.health.stopped().as_ref() != Some(&stopped) => {
                tracing::error!(projection = P::NAME, position = stopped.position, reason = %stopped.reason, "the node that folds the shared tables stopped; this node reports it");
                self.health.report_stop(stopped);
                let position = self.position();
                (self.announce)(position);
            }
            None if self.health.stopped().is_some() => self.health.reset(),
            _ => {}
        }
    }

    /// Whether the writer's tables are the live generation (an error reading the pointer
    /// counts as yes: the commits' fence still holds).
    fn writes_live_generation(&self) -> bool {
        self.backing()
            .is_none_or(|backing| backing.is_live().unwrap_or(true))
    }

    /// A writer whose commit was fenced, or that stopped writing for a failure of the tables
    /// (not of the fold), hands over and reads; the lease decides who writes next.
    fn check_writer(&mut self) {
        let fenced = self.backing().is_some_and(|backing| backing.fenced());
        // A stop without an event is a failed write, and one whose fold could not read its
        // tables a failed read: both the tables' (the connection's), so another try may do.
        // Any other stop is the fold's, which every node would meet again: it stays stopped
        // and says where.
        let tables_failed = self.health.stopped().is_some_and(|stopped| {
            stopped.event_type.is_empty() || stopped.reason.contains(crate::tables::UNREADABLE)
        });
        if let Some(stopped) = self
            .health
            .stopped()
            .filter(|_| !tables_failed && !self.stop_recorded)
        {
            // The readers stop too, and say where ([`Coordinator::heed_writer_stop`]).
            let recorded = self.backing().map(|backing| {
                backing.record_stop(&serde_json::to_string(&stopped).expect("a stop serializes"))
            });
            match recorded {
                Some(Err(error)) => {
                    tracing::warn!(projection = P::NAME, %error, "the stop could not be recorded for the readers; retrying")
                }
                _ => self.stop_recorded = true,
            }
        }
        if fenced || tables_failed {
            tracing::warn!(
                projection = P::NAME,
                fenced,
                stopped = ?self.health.stopped(),
                "this node stops writing the shared tables and reads them"
            );
            self.hand_over();
            // Asks for the lease again at once: a node cut off for a moment may take it back.
            self.lease_checked_at = None;
        }
    }

    /// A clean stop: a writer ends its follower, commits what it staged, and gives the lease
    /// up (a lease of a millisecond, which its holder may always take, ends at once).
    fn finish(&mut self) {
        if !self.end_follower() {
            return;
        }
        // A model that stopped holds half of the batch it stopped in: never written.
        let written = match self.health.stopped() {
            Some(_) => Ok(()),
            None => self
                .model
                .write()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .write_staged(),
        };
        if let Err(error) = written {
            tracing::warn!(projection = P::NAME, %error, "what was staged is left to the next writer, which folds it from the log");
        }
        if let Err(error) = self
            .store
            .try_lease(&lease_name::<P>(), &self.tables.node_id, 1)
        {
            tracing::warn!(projection = P::NAME, %error, "the lease could not be given up; it runs out by itself");
        }
    }

    /// Ends the follower (if any) and reads from the tables.
    fn hand_over(&mut self) {
        if self.end_follower() {
            self.become_reader();
        }
    }

    /// Ends the follower's thread and waits for it; `false` when none ran.
    fn end_follower(&mut self) -> bool {
        let Some(follower) = self.follower.take() else {
            return false;
        };
        self.health.set_writes_shared_tables(false);
        self.health.hand_over();
        if follower.join().is_err() {
            tracing::error!(projection = P::NAME, "the follower's thread panicked");
        }
        true
    }

    fn become_reader(&mut self) {
        match P::open_on(
            match self.tables.open::<P>() {
                Ok(backing) => backing,
                Err(error) => {
                    tracing::error!(projection = P::NAME, %error, "the shared tables could not be opened; trying again");
                    std::thread::sleep(Duration::from_millis(RETRY_MS));
                    return;
                }
            },
            self.store.as_ref(),
            Role::Reader,
        ) {
            Ok(reader) => {
                let position = reader.position();
                *self
                    .model
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) = reader;
                self.model_is_reader = true;
                self.health.reset();
                (self.announce)(position);
            }
            Err(error) => {
                tracing::error!(projection = P::NAME, %error, "the shared tables could not be opened for reading; trying again");
                std::thread::sleep(Duration::from_millis(RETRY_MS));
            }
        }
    }

    /// A reader's round: when the checkpoint moved, the changed resident tables reloaded
    /// and the new position announced.
    fn refresh(&mut self) -> Result<(), ModelError> {
        let (backing, position) = {
            let model = self
                .model
                .read()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            let Some(backing) = model.backing().cloned() else {
                return Ok(());
            };
            (backing, model.position())
        };
        let moved = match backing.moved_since(position)? {
            Change::None => return Ok(()),
            Change::Moved(moved) => moved,
            Change::Regenerated => {
                tracing::info!(
                    projection = P::NAME,
                    "a rebuilt generation of the shared tables is live; this node reads it"
                );
                self.become_reader();
                return Ok(());
            }
        };
        if moved.checkpoint.name != P::NAME || moved.checkpoint.version != P::VERSION {
            // Being folded again by a writer of another version; wait for this one's.
            return Ok(());
        }
        let resident = P::resident_spaces();
        // Behind this reader's position: the tables were cleared and are being folded again,
        // so every resident table may have changed.
        let folded_again = moved.checkpoint.position < position;
        let mut reloaded = Vec::new();
        for space in resident {
            if folded_again || moved.changed_spaces.contains(&space) {
                reloaded.push((space, backing.all(space)?));
            }
        }
        let new_position = moved.checkpoint.position;
        self.model
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .refresh(&moved.checkpoint, &reloaded)?;
        (self.announce)(new_position);
        Ok(())
    }
}
