//! Hosting the read model: its status and lag, and online rebuilds.
//!
//! A rebuild folds a fresh read model from position 1 into a new file on a blocking thread
//! while queries keep answering from the live one; then, under the write lock for the few
//! events in between, it brings both to the same position, compares their digests, swaps the
//! fresh one in and makes its file the live one (the old file is removed).

use std::sync::Arc;
use std::time::Instant;

use paycenter_projections::model::{ModelError, NAME, VERSION};
use paycenter_projections::ReadModel;

use crate::error::{ErrorCode, Refusal};
use crate::state::{AppState, FinishedRebuild};

/// The read model's status: position, lag, digest, its file and rebuilds.
pub fn status(state: &AppState) -> Result<crate::wire::ProjectionAnswer, Refusal> {
    // Stores may block (PostgreSQL): never on an async worker without telling the runtime.
    let head = tokio::task::block_in_place(|| state.store.head_position())?;
    let (position, digest, file_bytes) = tokio::task::block_in_place(|| {
        let model = state.model_lock();
        let file_bytes = model.backing().map(|backing| backing.size_bytes());
        Ok::<_, Refusal>((model.position(), model.digest()?, file_bytes))
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
    let head = state.store.head_position()?;
    let dir = &state.model_file.dir;
    let fresh_path = paycenter_projections::persisted::new_generation_path(dir);
    let mut fresh = ReadModel::open(&fresh_path, state.store.as_ref())?;
    if let Err(error) = fresh.catch_up(state.store.as_ref(), head) {
        drop(fresh);
        paycenter_projections::persisted::remove_file_set(&fresh_path);
        return Err(error);
    }
    let mut live = state.model.write().expect("model lock");
    // Whichever is behind catches up to the other: the few events since the fold began.
    let position = fresh.position().max(live.position());
    fresh.catch_up(state.store.as_ref(), position)?;
    live.catch_up(state.store.as_ref(), position)?;
    assert_eq!(
        fresh.position(),
        live.position(),
        "both models at one position before the swap"
    );
    let identical = fresh.digest()? == live.digest()?;
    std::mem::swap(&mut *live, &mut fresh);
    // Under the lock still: the follower commits the next batch to the new file, which the
    // next start opens.
    paycenter_projections::persisted::make_live(dir, &fresh_path).map_err(|error| {
        ModelError::Table(paycenter_projections::tables::TableError {
            path: fresh_path.display().to_string(),
            reason: error.to_string(),
        })
    })?;
    drop(live);
    drop(fresh);
    Ok(FinishedRebuild {
        finished_at: state.clock.now(),
        position,
        identical,
        seconds: started.elapsed().as_secs_f64(),
    })
}
