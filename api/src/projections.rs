//! Hosting the read model: its status and lag, and starting online rebuilds (on a blocking
//! thread; the rebuild itself is `paycenter_projections::rebuild`).

use std::sync::Arc;
use std::time::Instant;

use paycenter_projections::model::{ModelError, NAME, VERSION};

use crate::error::{ErrorCode, Refusal};
use crate::state::{AppState, FinishedRebuild};

/// The read model's status: position, lag, digest, its file and rebuilds.
pub fn status(state: &AppState) -> Result<crate::wire::ProjectionAnswer, Refusal> {
    // Stores may block (PostgreSQL): never on an async worker without telling the runtime.
    let head = tokio::task::block_in_place(|| state.store.head_position())?;
    // The digest of the file as last committed, read from the file alone: never the whole
    // file under the model's lock, which would hold the fold (and every command) meanwhile.
    let (position, digest, file_bytes) = tokio::task::block_in_place(|| {
        let backing = state.model_lock().backing().cloned();
        match backing {
            Some(backing) => {
                let (position, digest) = paycenter_projections::ReadModel::file_digest(&backing)?;
                Ok::<_, Refusal>((position, digest, Some(backing.size_bytes())))
            }
            None => {
                let model = state.model_lock();
                Ok((model.position(), model.digest()?, None))
            }
        }
    })?;
    let rebuild = state.rebuild_status.lock().expect("rebuild status");
    Ok(crate::wire::ProjectionAnswer {
        name: NAME.to_owned(),
        version: VERSION,
        position,
        head,
        lag: head.saturating_sub(position),
        digest,
        rebuilding: rebuild.in_progress,
        started_from_snapshot: state.model_file.started_from,
        // The file is the snapshot, committed with every batch the follower applies.
        snapshot: file_bytes.map(|_| crate::wire::SnapshotAnswer {
            position,
            saved_at: None,
        }),
        file_bytes,
        last_rebuild: rebuild
            .last
            .as_ref()
            .map(|last| crate::wire::RebuildAnswer {
                finished_at: last.finished_at.to_rfc3339(),
                position: last.position,
                identical: last.identical,
                seconds: last.seconds,
            }),
    })
}

/// Starts an online rebuild of projection `name` on a blocking thread; returns at once.
pub fn start_rebuild(state: &Arc<AppState>, name: &str) -> Result<(), Refusal> {
    if name != NAME {
        return Err(Refusal::not_found(
            ErrorCode::ProjectionNotFound,
            format!("no projection {name:?}; the one projection is {NAME:?}"),
        ));
    }
    {
        let mut status = state.rebuild_status.lock().expect("rebuild status");
        if status.in_progress {
            return Err(Refusal::new(
                ErrorCode::RebuildInProgress,
                "a rebuild of this projection is already running",
            ));
        }
        status.in_progress = true;
    }
    let worker = state.clone();
    tokio::task::spawn_blocking(move || {
        let result = rebuild_now(&worker);
        let mut status = worker.rebuild_status.lock().expect("rebuild status");
        status.in_progress = false;
        match result {
            Ok(finished) => {
                if !finished.identical {
                    tracing::error!(
                        position = finished.position,
                        "rebuilt read model differs from the live one"
                    );
                }
                status.last = Some(finished);
            }
            Err(error) => {
                tracing::error!(%error, "read model rebuild failed; the live model stays")
            }
        }
    });
    Ok(())
}

fn rebuild_now(state: &AppState) -> Result<FinishedRebuild, ModelError> {
    let started = Instant::now();
    let rebuilt = paycenter_projections::rebuild::rebuild_online(
        state.store.as_ref(),
        &state.model,
        &state.model_file.dir,
    )?;
    Ok(FinishedRebuild {
        finished_at: state.clock.now(),
        position: rebuilt.position,
        identical: rebuilt.identical,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// A projection's state, as `/healthz` and `/metrics` show it.
pub struct ProjectionHealth {
    /// Its name.
    pub name: &'static str,
    /// Where it stopped, if it did.
    pub stopped: Option<paycenter_projections::model::Stopped>,
    /// The last position it applied.
    pub position: u64,
}

/// The read model and the balances projection inside it.
pub fn projections(state: &AppState) -> Vec<ProjectionHealth> {
    let model = state.model_lock();
    let read_model_stopped = state.follower_health.stopped();
    let ledger_position = match model.ledger_stopped() {
        Some(stopped) => stopped.position.saturating_sub(1),
        None => model.position(),
    };
    vec![
        ProjectionHealth {
            name: paycenter_projections::model::NAME,
            position: read_model_stopped
                .as_ref()
                .map_or(model.position(), |stopped| {
                    stopped.position.saturating_sub(1)
                }),
            stopped: read_model_stopped.clone(),
        },
        ProjectionHealth {
            name: "balances",
            // The balances fold inside the read model: it stops with it, or alone.
            stopped: model.ledger_stopped().cloned().or(read_model_stopped),
            position: ledger_position,
        },
    ]
}
