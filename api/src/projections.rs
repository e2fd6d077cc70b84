//! Hosting the read model: its status and lag, snapshots, and online rebuilds.
//!
//! A rebuild folds a fresh read model from position 1 on a blocking thread while queries keep
//! answering from the live one; then, under the write lock for the few events in between, it
//! brings both to the same position, compares their digests, and swaps the fresh one in.

use std::sync::Arc;
use std::time::Instant;

use paycenter_projections::model::{NAME, VERSION};
use paycenter_projections::ReadModel;

use crate::error::{ErrorCode, Refusal};
use crate::state::{AppState, FinishedRebuild};

/// Saves a snapshot of the read model if it moved since the last one. Serializes under the
/// read lock: the follower waits meanwhile (the price of a consistent checkpoint).
pub fn save_snapshot(state: &AppState) -> Result<(), String> {
    let dir = {
        let snapshots = state.snapshots.lock().expect("snapshot status");
        let position = state.model.read().expect("model lock").position;
        if position == 0 || snapshots.last_saved_position == Some(position) {
            return Ok(());
        }
        snapshots.dir.clone()
    };
    let position = {
        let model = state.model.read().expect("model lock");
        paycenter_projections::snapshot::save(&dir, state.store.as_ref(), &model)?
    };
    let mut snapshots = state.snapshots.lock().expect("snapshot status");
    snapshots.last_saved_position = Some(position);
    snapshots.last_saved_at = Some(state.clock.now());
    Ok(())
}

/// Saves a snapshot every `interval_seconds` while the read model moves.
pub async fn snapshot_periodically(state: Arc<AppState>, interval_seconds: u64) {
    let mut ticker = tokio::time::interval(std::time::Duration::from_secs(interval_seconds));
    ticker.tick().await; // The first tick is immediate; the model was just loaded.
    loop {
        ticker.tick().await;
        let state = state.clone();
        match tokio::task::spawn_blocking(move || save_snapshot(&state)).await {
            Ok(Ok(())) => {}
            Ok(Err(error)) => tracing::warn!(%error, "read model snapshot failed"),
            Err(error) => tracing::error!(%error, "read model snapshot task failed"),
        }
    }
}

/// The read model's status: position, lag, digest, snapshots and rebuilds.
pub fn status(state: &AppState) -> Result<crate::wire::ProjectionAnswer, Refusal> {
    // Stores may block (PostgreSQL): never on an async worker without telling the runtime.
    let head = tokio::task::block_in_place(|| state.store.head_position())?;
    let (position, digest) = {
        let model = state.model.read().expect("model lock");
        (model.position, model.digest())
    };
    let rebuild = state.rebuild_status.lock().expect("rebuild status");
    let snapshots = state.snapshots.lock().expect("snapshot status");
    Ok(crate::wire::ProjectionAnswer {
        name: NAME.to_owned(),
        version: VERSION,
        position,
        head,
        lag: head.saturating_sub(position),
        digest,
        rebuilding: rebuild.in_progress,
        started_from_snapshot: snapshots.started_from,
        snapshot: snapshots
            .last_saved_position
            .map(|position| crate::wire::SnapshotAnswer {
                position,
                saved_at: snapshots.last_saved_at.map(|at| at.to_rfc3339()),
            }),
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

fn rebuild_now(state: &AppState) -> Result<FinishedRebuild, paycenter_store::StoreError> {
    let started = Instant::now();
    let head = state.store.head_position()?;
    let mut fresh = ReadModel::fold_from_start(state.store.as_ref(), head)?;
    let mut live = state.model.write().expect("model lock");
    // Whichever is behind catches up to the other: the few events since the fold began.
    let position = fresh.position.max(live.position);
    fresh.catch_up(state.store.as_ref(), position)?;
    live.catch_up(state.store.as_ref(), position)?;
    assert_eq!(
        fresh.position, live.position,
        "both models at one position before the swap"
    );
    let identical = fresh.digest() == live.digest();
    std::mem::swap(&mut *live, &mut fresh);
    Ok(FinishedRebuild {
        finished_at: state.clock.now(),
        position,
        identical,
        seconds: started.elapsed().as_secs_f64(),
    })
}
