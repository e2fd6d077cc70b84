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
    // Whichever is behind catches up to the other: the few events since the fold began.
    let position = fresh.position().max(live.position());
    fresh.catch_up(store, position)?;
    live.catch_up(store, position)?;
    // What the follower staged but has not written yet goes to the file that is dropped, so
    // the digest compares committed rows on both sides.
    live.write_staged()?;
    assert_eq!(
        fresh.position(),
        live.position(),
        "both models at one position before the swap"
    );
    let identical = fresh.digest()? == live.digest()?;
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
