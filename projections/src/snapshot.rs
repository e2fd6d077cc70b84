//! Snapshots of the read model: the model and its checkpoint (the position it has folded up
//! to, with that event's hash) written together, atomically, so a start resumes from the
//! checkpoint instead of position 1.
//!
//! The file `read_model.v{VERSION}.snapshot` holds two JSON lines: a header (name, version,
//! position, hash at position) and the model. It is written to a temporary file, fsynced, and
//! renamed over the old one (then the directory is fsynced): a crash leaves the old snapshot or
//! the new one, never half of one. On load, the header must name this version and the log must
//! have the same hash at that position; anything else means a full fold from position 1.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use paycenter_store::EventStore;
use serde::{Deserialize, Serialize};

use crate::model::{NAME, VERSION};
use crate::ReadModel;

#[derive(Debug, Serialize, Deserialize)]
struct Header {
    name: String,
    version: u32,
    position: u64,
    /// Hex SHA-256 of the event at `position` (empty at position 0).
    hash_at_position: String,
}

/// The snapshot file of this version in `dir`.
pub fn path(dir: &Path) -> PathBuf {
    dir.join(format!("{NAME}.v{VERSION}.snapshot"))
}

fn hash_at(store: &dyn EventStore, position: u64) -> Result<String, String> {
    if position == 0 {
        return Ok(String::new());
    }
    let events = store
        .read_all(position, 1)
        .map_err(|error| error.to_string())?;
    match events.first() {
        Some(event) if event.global_position == position => Ok(hex::encode(event.hash)),
        _ => Err(format!("the log has no event at position {position}")),
    }
}

/// Writes `model` and its checkpoint atomically. Returns the snapshot's position.
pub fn save(dir: &Path, store: &dyn EventStore, model: &ReadModel) -> Result<u64, String> {
    let io = |error: std::io::Error| error.to_string();
    std::fs::create_dir_all(dir).map_err(io)?;
    let header = Header {
        name: NAME.to_owned(),
        version: VERSION,
        position: model.position,
        hash_at_position: hash_at(store, model.position)?,
    };
    let final_path = path(dir);
    let temporary_path = final_path.with_extension("snapshot.tmp");
    let file = File::create(&temporary_path).map_err(io)?;
    let mut writer = BufWriter::with_capacity(1 << 20, file);
    serde_json::to_writer(&mut writer, &header).map_err(|error| error.to_string())?;
    writer.write_all(b"\n").map_err(io)?;
    serde_json::to_writer(&mut writer, model).map_err(|error| error.to_string())?;
    writer.write_all(b"\n").map_err(io)?;
    let file = writer.into_inner().map_err(|error| error.to_string())?;
    file.sync_all().map_err(io)?;
    std::fs::rename(&temporary_path, &final_path).map_err(io)?;
    File::open(dir)
        .and_then(|directory| directory.sync_all())
        .map_err(io)?;
    Ok(model.position)
}

/// Loads the snapshot in `dir` if it is this version and agrees with the log; `Ok(None)` when
/// there is none. An `Err` says why a present snapshot was not used.
pub fn load(dir: &Path, store: &dyn EventStore) -> Result<Option<ReadModel>, String> {
    let file = match File::open(path(dir)) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(error.to_string()),
    };
    let mut reader = BufReader::with_capacity(1 << 20, file);
    let mut header_line = String::new();
    reader
        .read_line(&mut header_line)
        .map_err(|error| error.to_string())?;
    let header: Header =
        serde_json::from_str(&header_line).map_err(|error| format!("snapshot header: {error}"))?;
    if header.name != NAME || header.version != VERSION {
        return Err(format!(
            "snapshot is {} v{}, not {NAME} v{VERSION}",
            header.name, header.version
        ));
    }
    let head = store.head_position().map_err(|error| error.to_string())?;
    if header.position > head {
        return Err(format!(
            "snapshot at position {} is past the log's head {head}",
            header.position
        ));
    }
    if hash_at(store, header.position)? != header.hash_at_position {
        return Err(format!(
            "the log's event at position {} is not the one the snapshot was taken at",
            header.position
        ));
    }
    let mut model: ReadModel =
        serde_json::from_reader(reader).map_err(|error| format!("snapshot body: {error}"))?;
    if model.position != header.position {
        return Err(format!(
            "snapshot body is at position {}, its header at {}",
            model.position, header.position
        ));
    }
    model.reindex();
    Ok(Some(model))
}
