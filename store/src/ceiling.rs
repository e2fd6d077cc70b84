//! The durability ceiling: what this machine's disk can make durable when a perfect group
//! commit shares one `fdatasync` among `batch` writers. The benchmarks measure it in the same
//! run as the store and the HTTP path and quote their figures as ratios of it, because the
//! disks these run on drift by 2× from hour to hour.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

/// Records per second appended durably to one new file in `dir`: `batch` records of
/// `record_bytes`, then one `fdatasync`, repeated for `duration`. The file is removed after.
pub fn group_commit_records_per_second(
    dir: &Path,
    batch: usize,
    record_bytes: usize,
    duration: Duration,
) -> std::io::Result<f64> {
    assert!(batch > 0 && record_bytes > 0, "a batch holds records");
    let path = dir.join(format!("durability-ceiling-{batch}x{record_bytes}"));
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)?;
    let record = vec![b'x'; record_bytes];
    let started = Instant::now();
    let mut n_records = 0u64;
    while started.elapsed() < duration {
        for _ in 0..batch {
            file.write_all(&record)?;
        }
        file.sync_data()?;
        n_records += batch as u64;
    }
    let rate = n_records as f64 / started.elapsed().as_secs_f64();
    drop(file);
    std::fs::remove_file(path)?;
    Ok(rate)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ceiling_is_measured_and_its_file_removed() {
        let dir = tempfile::tempdir().unwrap();
        let rate =
            group_commit_records_per_second(dir.path(), 4, 512, Duration::from_millis(50)).unwrap();
        assert!(rate > 0.0, "{rate}");
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
