//! Hosting the projections (the read model and the balances): their status and lag, and
//! starting online rebuilds (on a blocking thread; the rebuild itself is
//! `paycenter_projections::rebuild`).

use std::sync::Arc;
use std::time::Instant;

use paycenter_projections::balances::Balances;
use paycenter_projections::model::{ModelError, NAME};
use paycenter_projections::rebuild::Rebuilt;
use paycenter_projections::tables::{Backing, TableError};
use paycenter_projections::{Projection, ReadModel};

use crate::error::{ErrorCode, Refusal};
use crate::state::{AppState, FinishedRebuild, HostedProjection, SharedRebuildStatus};

/// What a status reads of a hosted projection besides the [`Projection`] trait: the file it
/// is kept in, and the digest of that file as last committed, read from the file alone.
trait KeptInFile: Projection {
    fn file(&self) -> Option<Arc<Backing>>;
    fn file_digest(backing: &Backing) -> Result<(u64, String), TableError>;
}

impl KeptInFile for ReadModel {
    fn file(&self) -> Option<Arc<Backing>> {
        self.backing().cloned()
    }

    fn file_digest(backing: &Backing) -> Result<(u64, String), TableError> {
        ReadModel::file_digest(backing)
    }
}

impl KeptInFile for Balances {
    fn file(&self) -> Option<Arc<Backing>> {
        self.backing().cloned()
    }

    fn file_digest(backing: &Backing) -> Result<(u64, String), TableError> {
        Balances::file_digest(backing)
    }
}

/// Reads of a projection's file one status makes at most: a file swapped by a rebuild while
/// it was read is read again from the new one. Another swap during that read needs another
/// rebuild, which can start only once this one has ended (`409 rebuild_in_progress` before).
const MAX_STATUS_READS: usize = 3;

/// A projection's status against the log's `head`: position, lag, digest, its file and
/// rebuilds.
fn status_of<P: KeptInFile>(
    head: u64,
    hosted: &HostedProjection<P>,
) -> Result<crate::wire::ProjectionAnswer, Refusal> {
    let lock = || hosted.lock();
    // The digest of the file as last committed, read from the file alone: never the whole
    // file under the projection's lock, which would hold the fold (and every command waiting
    // on it) meanwhile.
    let (position, digest, file_bytes) = tokio::task::block_in_place(|| {
        let mut n_reads = 0;
        loop {
            n_reads += 1;
            let Some(backing) = lock().file() else {
                let projection = lock();
                return Ok::<_, Refusal>((projection.position(), projection.digest()?, None));
            };
            match P::file_digest(&backing) {
                Ok((position, digest)) => {
                    return Ok((position, digest, Some(backing.size_bytes())));
                }
                // An online rebuild swapped in its new file, and removed this one, after it
                // was taken: the status is read again from the file live now.
                Err(error)
                    if n_reads < MAX_STATUS_READS
                        && lock()
                            .file()
                            .is_some_and(|live| !Arc::ptr_eq(&live, &backing)) =>
                {
                    tracing::debug!(%error, projection = P::NAME, "the projection's file was swapped during a status read; reading the new one");
                }
                Err(error) => return Err(error.into()),
            }
        }
    })?;
    let rebuild = hosted.rebuild_status.lock().expect("rebuild status");
    Ok(crate::wire::ProjectionAnswer {
        name: P::NAME.to_owned(),
        version: P::VERSION,
        position,
        head,
        lag: head.saturating_sub(position),
        digest,
        rebuilding: rebuild.in_progress,
        started_from_snapshot: hosted.started_from,
        // The file is the snapshot, committed with every batch the follower applies.
        snapshot: file_bytes.map(|_| crate::wire::SnapshotAnswer {
            position,
            saved_at: None,
        }),
        file_bytes,
        last_rebuild: rebuild.last.as_ref().map(rebuild_answer),
    })
}

/// The log's head. Stores may block (PostgreSQL): never on an async worker without telling
/// the runtime.
fn head(state: &AppState) -> Result<u64, Refusal> {
    Ok(tokio::task::block_in_place(|| state.store.head_position())?)
}

/// The read model's status.
pub fn status(state: &AppState) -> Result<crate::wire::ProjectionAnswer, Refusal> {
    status_of(head(state)?, &state.read_model)
}

/// The balances' status.
pub fn balances_status(state: &AppState) -> Result<crate::wire::ProjectionAnswer, Refusal> {
    status_of(head(state)?, &state.balances)
}

/// Every projection's status against one reading of the head, the read model first.
pub fn statuses(state: &AppState) -> Result<Vec<crate::wire::ProjectionAnswer>, Refusal> {
    let head = head(state)?;
    Ok(vec![
        status_of(head, &state.read_model)?,
        status_of(head, &state.balances)?,
    ])
}

fn rebuild_answer(last: &FinishedRebuild) -> crate::wire::RebuildAnswer {
    crate::wire::RebuildAnswer {
        finished_at: last.finished_at.to_rfc3339(),
        position: last.position,
        identical: last.identical,
        seconds: last.seconds,
    }
}

/// Starts an online rebuild of projection `name` on a blocking thread; returns at once with
/// the projection's status.
pub fn start_rebuild(
    state: &Arc<AppState>,
    name: &str,
) -> Result<crate::wire::ProjectionAnswer, Refusal> {
    if name == NAME {
        refuse_unless_writer(state, &state.read_model, name)?;
        spawn_rebuild(state, &state.read_model.rebuild_status, NAME, |state| {
            rebuild_hosted(state, &state.read_model)
        })?;
        return status(state);
    }
    if name == Balances::NAME {
        refuse_unless_writer(state, &state.balances, name)?;
        spawn_rebuild(
            state,
            &state.balances.rebuild_status,
            Balances::NAME,
            |state| rebuild_hosted(state, &state.balances),
        )?;
        return balances_status(state);
    }
    Err(Refusal::not_found(
        ErrorCode::ProjectionNotFound,
        format!(
            "no projection {name:?}; the projections are {:?} and {:?}",
            NAME,
            Balances::NAME
        ),
    ))
}

/// With tables the nodes share, only the node that writes them rebuilds them.
fn refuse_unless_writer<P>(
    state: &AppState,
    hosted: &HostedProjection<P>,
    name: &str,
) -> Result<(), Refusal> {
    if state.shared_tables.is_none() || hosted.health.writes_shared_tables() {
        return Ok(());
    }
    Err(Refusal::new(
        ErrorCode::RebuildUnavailable,
        format!("this node reads the {name} tables that another node on the database folds; ask that node (the holder of the lease `projection:{name}`) to rebuild them"),
    ))
}

/// An online rebuild of `hosted`: into a new file in the projections' directory, or a new
/// generation of the tables the nodes share.
fn rebuild_hosted<P: Projection>(
    state: &AppState,
    hosted: &HostedProjection<P>,
) -> Result<Rebuilt, ModelError> {
    match &state.shared_tables {
        None => paycenter_projections::rebuild::rebuild_online(
            state.store.as_ref(),
            &hosted.projection,
            &state.projections_dir,
        ),
        Some(tables) => paycenter_projections::rebuild::rebuild_online_shared(
            state.store.as_ref(),
            &hosted.projection,
            tables,
        ),
    }
}

/// Marks a rebuild of `name` in progress in `rebuild_status` and runs `rebuild` on a blocking
/// thread, recording how it ended.
fn spawn_rebuild(
    state: &Arc<AppState>,
    rebuild_status: &SharedRebuildStatus,
    name: &'static str,
    rebuild: fn(&AppState) -> Result<Rebuilt, ModelError>,
) -> Result<(), Refusal> {
    {
        let mut status = rebuild_status.lock().expect("rebuild status");
        if status.in_progress {
            return Err(Refusal::new(
                ErrorCode::RebuildInProgress,
                "a rebuild of this projection is already running",
            ));
        }
        status.in_progress = true;
    }
    let worker = state.clone();
    let rebuild_status = rebuild_status.clone();
    tokio::task::spawn_blocking(move || {
        let started = Instant::now();
        let result = rebuild(&worker);
        let mut status = rebuild_status.lock().expect("rebuild status");
        status.in_progress = false;
        match result {
            Ok(rebuilt) => {
                if !rebuilt.identical {
                    tracing::error!(
                        projection = name,
                        position = rebuilt.position,
                        "the rebuilt projection differs from the live one"
                    );
                }
                status.last = Some(FinishedRebuild {
                    finished_at: worker.clock.now(),
                    position: rebuilt.position,
                    identical: rebuilt.identical,
                    seconds: started.elapsed().as_secs_f64(),
                });
            }
            Err(error) => {
                tracing::error!(projection = name, %error, "rebuild failed; the live projection stays")
            }
        }
    });
    Ok(())
}

/// A projection's state, as `/healthz` and `/metrics` show it.
pub struct ProjectionHealth {
    /// Its name.
    pub name: &'static str,
    /// Where it stopped, if it did.
    pub stopped: Option<paycenter_projections::model::Stopped>,
    /// The last position it applied.
    pub position: u64,
    /// While the start's catch-up runs in the background: the position it must reach.
    pub catching_up_to: Option<u64>,
    /// The last error its follower met reading the log, cleared by the next good read.
    pub last_read_error: Option<String>,
}

/// The read model and the balances.
pub fn projections(state: &AppState) -> Vec<ProjectionHealth> {
    let health_of = |name: &'static str,
                     health: &paycenter_projections::follow::FollowerHealth,
                     position: u64| {
        let stopped = health.stopped();
        ProjectionHealth {
            name,
            // A stopped projection applied everything before the event it stopped at.
            position: stopped
                .as_ref()
                .map_or(position, |stopped| stopped.position.saturating_sub(1)),
            stopped,
            catching_up_to: health.catching_up_to(),
            last_read_error: health.last_read_error(),
        }
    };
    vec![
        health_of(
            NAME,
            &state.read_model.health,
            state.model_lock().position(),
        ),
        health_of(
            Balances::NAME,
            &state.balances.health,
            state.balances.lock().position(),
        ),
    ]
}
