//! Small files of a data directory replaced whole: written beside their place, then renamed
//! over it, so a reader sees the old file or the new one, never a part of either.

use std::io::Write as _;
use std::path::{Path, PathBuf};

/// Whether a replaced file must survive a power cut once [`replace_whole`] returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// The file and the rename are fsynced (the file and its directory) before returning.
    Synced,
    /// Nothing is fsynced: for a derived file, whose loss or tear only costs work to redo
    /// (its reader must check it whole, e.g. by a checksum).
    Unsynced,
}

/// Replaces the file at `path` with `bytes` whole, through `<path>.tmp` in the same directory.
pub fn replace_whole(path: &Path, bytes: &[u8], durability: Durability) -> std::io::Result<()> {
    let mut temporary = PathBuf::from(path);
    temporary.as_mut_os_string().push(".tmp");
    let mut file = std::fs::File::create(&temporary)?;
    file.write_all(bytes)?;
    if durability == Durability::Synced {
        file.sync_all()?;
    }
    drop(file);
    std::fs::rename(&temporary, path)?;
    if durability == Durability::Synced {
        let dir = path
            .parent()
            .filter(|dir| !dir.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replaced_file_holds_the_new_bytes_and_leaves_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.live");
        for durability in [Durability::Synced, Durability::Unsynced] {
            replace_whole(&path, b"old", durability).unwrap();
            replace_whole(&path, b"new", durability).unwrap();
            assert_eq!(std::fs::read(&path).unwrap(), b"new");
            assert!(!dir.path().join("state.live.tmp").exists());
        }
    }
}
