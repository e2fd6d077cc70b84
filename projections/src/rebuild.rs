//! An online rebuild of a [`Projection`]: a fresh fold from position 1 into a new file (the
//! shadow) while the live one keeps answering, then, under the live model's write lock for the few events in
//! between, both brought to one position, their digests compared, the fresh one swapped in and
//! its file made the live one (the old file is removed). The follower, which applies only
//! events past the model's position, goes on with the swapped-in model.

use std::path::Path;
use std::sync::RwLock;

use paycenter_store::EventStore;

use crate::model::ModelError;
use crate::persisted;
use crate::projection::Projection;
use crate::tables::TableError;

/// What a rebuild did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rebuilt {
    /// The position both models had at the swap.
    pub position: u64,
    /// Whether the fresh model's digest equalled the live one's (anything else is a bug).
    pub identical: bool,
}

/// Rebuilds `live` (kept in `dir`) from the log of `store`; blocks for the whole fold, and
/// holds `live`'s write lock only for the catch-up and the swap at the end.
pub fn rebuild_online<P: Projection>(
    store: &dyn EventStore,
    live: &RwLock<P>,
    dir: &Path,
) -> Result<Rebuilt, ModelError> {
    let head = store.head_position()?;
    let fresh_path = persisted::new_generation_path::<P>(dir);
    let folded = P::open(&fresh_path, store).and_then(|mut fresh| {
        fresh.catch_up(store, head)?;
        Ok(fresh)
    });
    let mut fresh = match folded {
        Ok(fresh) => fresh,
        Err(error) => {
            persisted::remove_file_set(&fresh_path);
            return Err(error);
        }
    };
    let mut live = live
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (position, identical) = align(store, &mut *live, &mut fresh)?;
    std::mem::swap(&mut *live, &mut fresh);
    // Under the lock still: the follower commits its next batch to the new file, which the
    // next start opens.
    persisted::make_live::<P>(dir, &fresh_path).map_err(|error| {
        ModelError::Table(TableError {
            path: fresh_path.display().to_string(),
            reason: error.to_string(),
        })
    })?;
    Ok(Rebuilt {
        position,
        identical,
    })
}

/// An offline rebuild of a projection in tables the nodes share: `fold` folds a fresh
/// projection, opened on a new generation of the tables, up to the log's head; that generation
/// is then made the live one. Nodes running meanwhile move to it: the writer within a lease
/// round, folding on from its checkpoint (and dropping the old generation, which it may have
/// written until then); readers at their next look.
pub fn rebuild_shared_tables<P: Projection>(
    store: &dyn EventStore,
    tables: &crate::shared::SharedTables,
    fold: impl FnOnce(&mut P) -> Result<(), ModelError>,
) -> Result<P, ModelError> {
    let (fresh_backing, mut fresh) = open_new_generation::<P>(store, tables)?;
    let made_live = fold(&mut fresh)
        .and_then(|()| fresh.write_staged())
        .and_then(|()| Ok(fresh_backing.make_live_over_any_shared()?));
    match made_live {
        Ok(()) => Ok(fresh),
        Err(error) => Err(discard_generation(&fresh_backing, error)),
    }
}

/// Projection `P` opened for writing on a new generation of the shared tables (dropped again
/// if the open fails), with that generation's backing.
fn open_new_generation<P: Projection>(
    store: &dyn EventStore,
    tables: &crate::shared::SharedTables,
) -> Result<(std::sync::Arc<crate::tables::Backing>, P), ModelError> {
    let backing = crate::tables::Backing::open_postgres_generation(
        &tables.url,
        &tables.schema,
        P::NAME,
        true,
    )?;
    match P::open_on(backing.clone(), store, crate::projection::Role::Writer) {
        Ok(fresh) => Ok((backing, fresh)),
        Err(error) => Err(discard_generation(&backing, error)),
    }
}

/// Drops the tables of a rebuild that failed with `error`, and passes the error on.
fn discard_generation(backing: &crate::tables::Backing, error: ModelError) -> ModelError {
    if let Err(drop_error) = backing.drop_shared() {
        tracing::warn!(%drop_error, "a failed rebuild's tables could not be dropped");
    }
    error
}

/// Under the live projection's write lock: brings the live projection and the fresh fold to
/// one position, writes what the live one staged, and compares their digests.
fn align<P: Projection>(
    store: &dyn EventStore,
    live: &mut P,
    fresh: &mut P,
) -> Result<(u64, bool), ModelError> {
    // Whichever is behind catches up to the other: the few events since the fold began.
    let position = fresh.position().max(live.position());
    fresh.catch_up(store, position)?;
    live.catch_up(store, position)?;
    // What the follower staged but has not written yet goes to the tables that are dropped,
    // so the digest compares committed rows on both sides.
    live.write_staged()?;
    assert_eq!(
        fresh.position(),
        live.position(),
        "both models at one position before the swap"
    );
    let identical = fresh.digest()? == live.digest()?;
    Ok((position, identical))
}

/// How long the tables of a generation a rebuild replaced stay, for readers to move off them.
pub const OLD_GENERATION_GRACE_MS: u64 = 2_000;

/// [`rebuild_online`] for a projection in tables the nodes share
/// ([`crate::shared`]): the fresh fold goes into a new generation of the tables, which is made
/// the live one under the live projection's write lock, before the swap; the old generation
/// is dropped [`OLD_GENERATION_GRACE_MS`] later. Only the node that writes the tables may run it: the pointer moves only
/// while the live tables' checkpoint is where this node committed it.
pub fn rebuild_online_shared<P: Projection>(
    store: &dyn EventStore,
    live: &RwLock<P>,
    tables: &crate::shared::SharedTables,
) -> Result<Rebuilt, ModelError> {
    let head = store.head_position()?;
    let (fresh_backing, mut fresh) = open_new_generation::<P>(store, tables)?;
    let discard = |error: ModelError| discard_generation(&fresh_backing, error);
    fresh.catch_up(store, head).map_err(discard)?;
    let mut live = live
        .write()
        .unwrap_or_else(|poisoned| poisoned.into_inner());
    let (position, identical) = align(store, &mut *live, &mut fresh).map_err(discard)?;
    let live_backing = live.backing().cloned().ok_or_else(|| {
        discard(ModelError::Table(TableError {
            path: fresh_backing.path().display().to_string(),
            reason: "the live projection has no tables".into(),
        }))
    })?;
    fresh_backing
        .make_live_shared(&live_backing)
        .map_err(|error| discard(ModelError::Table(error)))?;
    std::mem::swap(&mut *live, &mut fresh);
    drop(live);
    drop(fresh);
    // The old generation's tables go a little later, on a thread of their own: readers heard
    // the move (`NOTIFY`) and open the new generation within milliseconds, and a read still
    // on the old tables when they go would fail.
    let spawned = std::thread::Builder::new()
        .name("rm-drop-generation".into())
        .spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(OLD_GENERATION_GRACE_MS));
            if let Err(error) = fresh_backing.drop_other_generations() {
                tracing::warn!(%error, "the old generation's tables stay until the next rebuild");
            }
        });
    if let Err(error) = spawned {
        tracing::warn!(%error, "the old generation's tables stay until the next rebuild");
    }
    Ok(Rebuilt {
        position,
        identical,
    })
}
