//! Where a projection's file lives in the data directory, and how one file replaces another.
//!
//! `projections/` holds each projection's live file, `{NAME}.v{VERSION}.{generation}.sqlite`
//! (`read_model.v7.0.sqlite`), and a pointer `{NAME}.v{VERSION}.live` naming it. A rebuild folds into a new generation while
//! the live one keeps answering, then [`make_live`] rewrites the pointer atomically (a
//! temporary file, fsynced, renamed, the directory fsynced) and removes the old generation: a
//! crash leaves the pointer naming one complete file or the other.
//!
//! Upgrades: a file of another version is never opened (its name says its version): it is
//! removed, as are the snapshot files earlier versions wrote, and the new file is folded from
//! the log.

use std::path::{Path, PathBuf};

use paycenter_store::files::Durability;
use paycenter_store::EventStore;

use crate::model::ModelError;
use crate::projection::Projection;

fn pointer_path<P: Projection>(dir: &Path) -> PathBuf {
    dir.join(format!("{}.v{}.live", P::NAME, P::VERSION))
}

fn generation_path<P: Projection>(dir: &Path, generation: &str) -> PathBuf {
    dir.join(format!("{}.v{}.{generation}.sqlite", P::NAME, P::VERSION))
}

/// The file the pointer names (the first generation when there is no pointer yet).
pub fn live_path<P: Projection>(dir: &Path) -> Result<PathBuf, std::io::Error> {
    match std::fs::read_to_string(pointer_path::<P>(dir)) {
        Ok(name) => {
            let name = name.trim();
            // The pointer names a file of this directory, nothing else.
            if name.is_empty() || name.contains('/') || name.contains("..") {
                return Err(std::io::Error::other(format!(
                    "{} names {name:?}, not a {} file",
                    pointer_path::<P>(dir).display(),
                    P::NAME
                )));
            }
            Ok(dir.join(name))
        }
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            Ok(generation_path::<P>(dir, "0"))
        }
        Err(error) => Err(error),
    }
}

/// A path for a new generation (a rebuild), not the live one.
pub fn new_generation_path<P: Projection>(dir: &Path) -> PathBuf {
    let generation = format!(
        "{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |elapsed| elapsed.as_micros())
    );
    let path = generation_path::<P>(dir, &generation);
    remove_file_set(&path);
    path
}

/// Removes a SQLite file with its write-ahead log and shared-memory index, if present.
pub fn remove_file_set(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let file = PathBuf::from(format!("{}{suffix}", path.display()));
        match std::fs::remove_file(&file) {
            Ok(()) => {}
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
            Err(error) => tracing::warn!(%error, file = %file.display(), "could not remove"),
        }
    }
}

/// Opens the live projection `P` in `dir`, folding nothing yet: the caller follows the log
/// from its position. A file of another log, or one that cannot be read, is replaced by an empty
/// one (the log is the truth; the fold rebuilds it). Snapshots of earlier versions go.
pub fn open_live<P: Projection>(dir: &Path, store: &dyn EventStore) -> Result<P, ModelError> {
    std::fs::create_dir_all(dir).map_err(io_error(dir))?;
    remove_legacy_files::<P>(dir);
    let path = live_path::<P>(dir).map_err(io_error(dir))?;
    remove_other_generations::<P>(dir, &path);
    open_or_replace(&path, store)
}

/// Removes every model file of this version in `dir` but `live` (a rebuild that a crash
/// interrupted leaves its half-folded generation behind).
fn remove_other_generations<P: Projection>(dir: &Path, live: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let prefix = format!("{}.v{}.", P::NAME, P::VERSION);
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with(&prefix) && name.ends_with(".sqlite") && entry.path() != live {
            tracing::info!(
                file = name,
                "a projection file that is not the live one removed"
            );
            remove_file_set(&entry.path());
        }
    }
}

/// Opens the read model file at `path`, replacing it with an empty one when it cannot be
/// used (see [`open_live`]).
pub fn open_or_replace<P: Projection>(
    path: &Path,
    store: &dyn EventStore,
) -> Result<P, ModelError> {
    match P::open(path, store) {
        Ok(model) => Ok(model),
        Err(ModelError::Store(error)) => Err(ModelError::Store(error)),
        Err(error) => {
            tracing::warn!(%error, file = %path.display(), "projection file replaced; the log is folded again from position 1");
            remove_file_set(path);
            P::open(path, store)
        }
    }
}

/// Makes the file at `path` (in `dir`) the live one, and removes every other generation.
pub fn make_live<P: Projection>(dir: &Path, path: &Path) -> Result<(), std::io::Error> {
    let name = path
        .file_name()
        .and_then(|name| name.to_str())
        .ok_or_else(|| std::io::Error::other("a projection file has a plain name"))?
        .to_owned();
    let pointer = pointer_path::<P>(dir);
    paycenter_store::files::replace_whole(&pointer, name.as_bytes(), Durability::Synced)?;
    remove_other_generations::<P>(dir, path);
    Ok(())
}

/// Removes every file of projection `name` in `dir`, of any version (its pointers and
/// generations, with their logs and indexes): a node whose projections moved to shared
/// tables keeps none.
pub fn remove_projection_files(dir: &Path, name: &str) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let name_v = format!("{name}.v");
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        let of_projection = file_name.starts_with(&name_v)
            && [
                ".live",
                ".sqlite",
                ".sqlite-wal",
                ".sqlite-shm",
                ".snapshot",
            ]
            .iter()
            .any(|suffix| file_name.ends_with(suffix));
        if of_projection {
            tracing::info!(
                file = file_name,
                "projection file removed: the projection lives in the shared tables"
            );
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn remove_legacy_files<P: Projection>(dir: &Path) {
    let name_v = format!("{}.v", P::NAME);
    let this_version = format!("{}.v{}.", P::NAME, P::VERSION);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(name) = name.to_str() else {
            continue;
        };
        if name.starts_with(&name_v) && name.ends_with(".snapshot") {
            tracing::info!(file = name, "snapshot of an earlier version removed; the read model now lives in its own database file");
            let _ = std::fs::remove_file(entry.path());
            continue;
        }
        // Files of another version (their pointer, each generation with its log and index):
        // this version folds its own from the log.
        let of_other_version = name.starts_with(&name_v)
            && !name.starts_with(&this_version)
            && [".live", ".sqlite", ".sqlite-wal", ".sqlite-shm"]
                .iter()
                .any(|suffix| name.ends_with(suffix));
        if of_other_version {
            tracing::info!(file = name, "projection file of another version removed");
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

fn io_error(dir: &Path) -> impl Fn(std::io::Error) -> ModelError + '_ {
    move |error| {
        ModelError::Table(crate::tables::TableError {
            path: dir.display().to_string(),
            reason: error.to_string(),
        })
    }
}
