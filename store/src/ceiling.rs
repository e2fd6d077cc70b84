//! The durability ceiling: what this machine's disk can make durable when a perfect group
//! commit shares one `fdatasync` among `batch` writers. The benchmarks measure it in the same
//! run as the store and the HTTP path and quote their figures as ratios of it, because the
//! disks these run on drift by 2× from hour to hour.
//!
//! The closed loop is the same group commit with its writers waiting: each writes a record and
//! waits until an `fdatasync` covers it before writing the next, as a store's callers do, and
//! one `fdatasync` runs at a time, started as soon as a record waits. While one group of
//! writers is synced the other is answered and writes, so with 64 writers each sync carries
//! about 32. It shows how much of the gap to the ceiling is the waiting (the syncs it halves,
//! the wakes it costs) and how much the store's own work. It is a reference, not a bound: a
//! store that starts its syncs later can carry more writers per sync.

use std::io::Write;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

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

/// Who waits in the closed loop.
#[derive(Debug, Clone)]
pub enum Writers {
    /// Threads, each blocked until its record is durable.
    Threads(usize),
    /// Tasks on `runtime`, each awaiting its record's durability. The runtime must have worker
    /// threads of its own (multi-threaded): a current-thread runtime's tasks would not run.
    Tasks(usize, tokio::runtime::Handle),
}

/// What the closed loop reached.
#[derive(Debug, Clone, Copy)]
pub struct ClosedLoop {
    /// Records made durable per second over the whole run.
    pub records_per_second: f64,
    /// How many records each `fdatasync` made durable, on average.
    pub records_per_sync: f64,
}

/// The records written and not yet synced, with their writers' wake-ups.
struct Pending {
    file: std::fs::File,
    waiting: Vec<oneshot::Sender<()>>,
    stopping: bool,
}

struct Shared {
    pending: Mutex<Pending>,
    /// Signalled when the first record of a sync is written, or the loop stops.
    written: Condvar,
    n_durable: AtomicU64,
    n_syncs: AtomicU64,
}

impl Shared {
    /// Writes one record; `None` once the loop stops.
    fn write(&self, record: &[u8]) -> std::io::Result<Option<oneshot::Receiver<()>>> {
        let mut pending = self.pending.lock().expect("pending lock");
        if pending.stopping {
            return Ok(None);
        }
        pending.file.write_all(record)?;
        let (wake, durable) = oneshot::channel();
        pending.waiting.push(wake);
        if pending.waiting.len() == 1 {
            self.written.notify_one();
        }
        Ok(Some(durable))
    }

    /// Syncs what is written, one `fdatasync` at a time, and hands each synced group's
    /// wake-ups to `answerer`, so the next sync need not wait for the wakes (as in the
    /// store). Returns once the loop stops and every written record is answered.
    fn sync_until_stopped(
        &self,
        sync_file: &std::fs::File,
        answerer: std::sync::mpsc::SyncSender<Vec<oneshot::Sender<()>>>,
    ) -> std::io::Result<()> {
        loop {
            let group = {
                let mut pending = self.pending.lock().expect("pending lock");
                while pending.waiting.is_empty() && !pending.stopping {
                    pending = self.written.wait(pending).expect("pending lock");
                }
                if pending.waiting.is_empty() {
                    return Ok(());
                }
                std::mem::take(&mut pending.waiting)
            };
            if let Err(error) = sync_file.sync_data() {
                // Dropping every wake-up ends the writers' loops: none is left waiting.
                let mut pending = self.pending.lock().expect("pending lock");
                pending.stopping = true;
                pending.waiting.clear();
                return Err(error);
            }
            self.n_durable
                .fetch_add(group.len() as u64, Ordering::Relaxed);
            self.n_syncs.fetch_add(1, Ordering::Relaxed);
            if answerer.send(group).is_err() {
                return Ok(());
            }
        }
    }
}

fn answer_groups(groups: Receiver<Vec<oneshot::Sender<()>>>) {
    for group in groups {
        for wake in group {
            // A writer gone (its loop ended with an error) is no reason to stop.
            let _ = wake.send(());
        }
    }
}

/// Records per second made durable by a group commit whose `writers` each wait for their
/// record (of `record_bytes`, in one new file in `dir`) before writing the next, for
/// `duration`. One thread syncs, another wakes the writers. The file is removed after.
pub fn closed_loop_group_commit(
    dir: &Path,
    writers: Writers,
    record_bytes: usize,
    duration: Duration,
) -> std::io::Result<ClosedLoop> {
    assert!(record_bytes > 0, "a record holds bytes");
    let path = dir.join(format!("closed-loop-{record_bytes}"));
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    let sync_file = file.try_clone()?;
    let shared = Arc::new(Shared {
        pending: Mutex::new(Pending {
            file,
            waiting: Vec::new(),
            stopping: false,
        }),
        written: Condvar::new(),
        n_durable: AtomicU64::new(0),
        n_syncs: AtomicU64::new(0),
    });
    let record: Arc<[u8]> = vec![b'x'; record_bytes].into();
    // Bounded like the store's hand-over to its answerer.
    let (to_answerer, groups) = sync_channel(4);
    let answerer = std::thread::spawn(move || answer_groups(groups));
    let syncer = {
        let shared = shared.clone();
        std::thread::spawn(move || shared.sync_until_stopped(&sync_file, to_answerer))
    };
    let started = Instant::now();
    let write_loops: Vec<Box<dyn FnOnce() -> std::io::Result<()>>> = match writers {
        Writers::Threads(n_threads) => (0..n_threads)
            .map(|_| {
                let (shared, record) = (shared.clone(), record.clone());
                let thread = std::thread::spawn(move || -> std::io::Result<()> {
                    while let Some(durable) = shared.write(&record)? {
                        if durable.blocking_recv().is_err() {
                            break;
                        }
                    }
                    Ok(())
                });
                Box::new(move || thread.join().expect("writer thread")) as Box<_>
            })
            .collect(),
        Writers::Tasks(n_tasks, runtime) => (0..n_tasks)
            .map(|_| {
                let (shared, record) = (shared.clone(), record.clone());
                let task = runtime.spawn(async move {
                    while let Some(durable) = shared.write(&record)? {
                        if durable.await.is_err() {
                            break;
                        }
                    }
                    Ok(())
                });
                let runtime = runtime.clone();
                Box::new(move || runtime.block_on(task).expect("writer task")) as Box<_>
            })
            .collect(),
    };
    std::thread::sleep(duration);
    let n_durable = shared.n_durable.load(Ordering::Relaxed);
    let n_syncs = shared.n_syncs.load(Ordering::Relaxed);
    let elapsed_seconds = started.elapsed().as_secs_f64();
    {
        let mut pending = shared.pending.lock().expect("pending lock");
        pending.stopping = true;
        shared.written.notify_one();
    }
    let synced = syncer.join().expect("syncer thread");
    answerer.join().expect("answerer thread");
    for write_loop in write_loops {
        write_loop()?;
    }
    synced?;
    std::fs::remove_file(path)?;
    Ok(ClosedLoop {
        records_per_second: n_durable as f64 / elapsed_seconds,
        records_per_sync: n_durable as f64 / n_syncs.max(1) as f64,
    })
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

    #[test]
    fn the_closed_loop_is_measured_for_threads_and_tasks_and_its_file_removed() {
        let dir = tempfile::tempdir().unwrap();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .build()
            .unwrap();
        for writers in [
            Writers::Threads(4),
            Writers::Tasks(4, runtime.handle().clone()),
        ] {
            let figures =
                closed_loop_group_commit(dir.path(), writers, 512, Duration::from_millis(50))
                    .unwrap();
            assert!(figures.records_per_second > 0.0, "{figures:?}");
            assert!(
                (1.0..=4.0).contains(&figures.records_per_sync),
                "4 writers share each sync: {figures:?}"
            );
        }
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
    }
}
