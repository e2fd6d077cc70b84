//! Checkpoints of a SQLite file's write-ahead log, off its writer's thread.
//!
//! SQLite's automatic checkpoint runs inside the commit that crosses its threshold. On the
//! store's writer that means every append waits while the checkpoint copies the WAL's pages
//! into the main file and fsyncs it (`synchronous=NORMAL` syncs at checkpoints). On a long log
//! those pages lie scattered through a file of gigabytes: one checkpoint of 16,384 pages held
//! every append for up to a second. The read model's follower (`paycenter_projections::tables`)
//! had the same stall without the fsync: while it copies, it applies nothing, and requests
//! waiting for their event to reach the model wait with it.
//!
//! So such a writer's connection has no automatic checkpoint. A WAL hook tells the writer how
//! many frames the WAL holds after each commit; past the threshold the writer wakes the
//! **checkpointer**, a thread with a connection of its own, which copies the frames with
//! `PASSIVE` checkpoints (they never wait for the writer or for readers) until at most
//! [`REMAINDER_FRAMES`] written meanwhile are left. The writer checkpoints that remainder
//! itself, between two transactions: nothing is written while it runs, so the WAL is then
//! wholly in the main file, and the next transaction starts the WAL over from its beginning.
//! (Only a writer that finds the WAL wholly checkpointed restarts it; a checkpointer racing a
//! writer that never pauses would never see it so, and the WAL would grow without bound.)
//!
//! A checkpoint never loses anything: the WAL's frames stay until the main file holding their
//! pages has been synced (as far as the file's `synchronous` setting asks). A failed checkpoint
//! is therefore only logged, and tried again at the next threshold.

use std::cell::Cell;
use std::path::Path;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::Arc;
use std::thread::JoinHandle;

use rusqlite::Connection;

/// The checkpointer could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// Opening or setting up its connection failed.
    #[error("opening the checkpointer's connection: {0}")]
    Sqlite(#[from] rusqlite::Error),
    /// Its thread could not be spawned.
    #[error("starting the checkpointer's thread: {0}")]
    Thread(#[from] std::io::Error),
}

/// Frames the writer copies itself, at most (4 KiB each): the checkpointer stops here.
pub const REMAINDER_FRAMES: u32 = 512;
/// Passes the checkpointer makes per wake-up before it hands over whatever is left (each pass
/// copies what was written during the one before; they shrink unless the disk falls behind).
const MAX_PASSES: usize = 8;

/// Where the copying of the WAL stands, shared by the writer and the checkpointer.
const IDLE: u8 = 0;
const COPYING: u8 = 1;
const REMAINDER_LEFT: u8 = 2;

thread_local! {
    /// Frames in the WAL after the last commit on this thread's connection with the hook.
    static WAL_FRAMES: Cell<u32> = const { Cell::new(0) };
}

/// The WAL hook of the writer's connection (a plain function: SQLite's hook carries no state,
/// and the writer's commits all run on the writer's thread).
fn record_wal_frames(_wal: &rusqlite::hooks::Wal, frames: std::ffi::c_int) -> rusqlite::Result<()> {
    WAL_FRAMES.with(|cell| cell.set(u32::try_from(frames).unwrap_or(0)));
    Ok(())
}

/// How the checkpointer's copies reach the disk: as the file's writer commits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointSync {
    /// The WAL is synced before its frames are copied and the main file before the WAL may be
    /// reused (`synchronous=NORMAL`): for a file whose acknowledged writes must survive.
    Durable,
    /// No syncs (`synchronous=OFF`): for a file derived from the log, rebuilt if a power cut
    /// damages it.
    Unsynced,
}

/// One `PASSIVE` checkpoint: `(frames in the WAL, frames copied into the main file)`.
fn passive_checkpoint(connection: &Connection) -> rusqlite::Result<(u32, u32)> {
    connection.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |row| {
        let log: i64 = row.get(1)?;
        let copied: i64 = row.get(2)?;
        // -1 when the database is not in WAL mode (never here): nothing to copy.
        Ok((log.max(0) as u32, copied.max(0) as u32))
    })
}

/// The writer's side: decides when to wake the checkpointer and copies the remainder.
pub struct WalCheckpoints {
    /// The file, as log lines name it.
    file: String,
    threshold_frames: u32,
    state: Arc<AtomicU8>,
    /// `None` only while dropped.
    wake: Option<SyncSender<()>>,
    thread: Option<JoinHandle<()>>,
    /// Frames of the current WAL already copied into the main file (a WAL that could not
    /// restart, readers holding it, keeps them).
    copied_frames: u32,
    /// Frames after the last commit: fewer after the next one means the WAL restarted.
    last_frames: u32,
}

impl WalCheckpoints {
    /// Turns `writer`'s automatic checkpoints off and starts the checkpointer on a connection
    /// of its own to `db_path`, copying once `threshold_frames` are in the WAL.
    pub fn start(
        writer: &Connection,
        db_path: &Path,
        threshold_frames: u32,
        sync: CheckpointSync,
    ) -> Result<WalCheckpoints, StartError> {
        // The hook replaces SQLite's automatic checkpoint (both are WAL hooks); a later
        // `PRAGMA wal_autocheckpoint` on this connection would replace the hook.
        writer.wal_hook(Some(record_wal_frames));
        let connection = Connection::open_with_flags(
            db_path,
            rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE | rusqlite::OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        // Checkpoints sync by the checkpointing connection's own setting. It never writes a
        // transaction of its own, so it needs next to no page cache.
        let synchronous = match sync {
            CheckpointSync::Durable => "NORMAL",
            CheckpointSync::Unsynced => "OFF",
        };
        connection.execute_batch(&format!(
            "PRAGMA synchronous={synchronous}; PRAGMA wal_autocheckpoint=0; PRAGMA cache_size=-64;"
        ))?;
        let file = db_path.display().to_string();
        let (wake, woken) = sync_channel(1);
        let state = Arc::new(AtomicU8::new(IDLE));
        let checkpointer = Checkpointer {
            connection,
            state: state.clone(),
            file: file.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("wal-checkpointer".to_owned())
            .spawn(move || checkpointer.run(woken))?;
        Ok(WalCheckpoints {
            file,
            threshold_frames: threshold_frames.max(REMAINDER_FRAMES * 2),
            state,
            wake: Some(wake),
            thread: Some(thread),
            copied_frames: 0,
            last_frames: 0,
        })
    }

    /// Called by the writer after each commit, on the thread that committed (the hook's count
    /// is that thread's), outside any transaction.
    pub fn after_commit(&mut self, writer: &Connection) {
        let frames = WAL_FRAMES.with(Cell::get);
        if frames < self.last_frames {
            self.copied_frames = 0;
        }
        self.last_frames = frames;
        match self.state.load(Ordering::Acquire) {
            REMAINDER_LEFT => {
                match passive_checkpoint(writer) {
                    Ok((_, copied)) => self.copied_frames = copied,
                    Err(error) => {
                        warn_failed(&self.file, &error);
                    }
                }
                self.state.store(IDLE, Ordering::Release);
            }
            COPYING => {}
            _ => {
                if frames.saturating_sub(self.copied_frames) < self.threshold_frames {
                    return;
                }
                self.state.store(COPYING, Ordering::Release);
                let Some(wake) = &self.wake else {
                    return;
                };
                match wake.try_send(()) {
                    Ok(()) | Err(TrySendError::Full(())) => {}
                    // The checkpointer is gone (it never stops on its own while the writer
                    // runs): checkpoint here, as SQLite's automatic checkpoint would.
                    Err(TrySendError::Disconnected(())) => {
                        self.state.store(REMAINDER_LEFT, Ordering::Release);
                    }
                }
            }
        }
    }
}

impl Drop for WalCheckpoints {
    /// Stops the checkpointer, after the checkpoint it may be running.
    fn drop(&mut self) {
        self.wake.take();
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn warn_failed(file: &str, error: &rusqlite::Error) {
    tracing::warn!(%error, file, "checkpointing the WAL failed; it is tried again at the next threshold");
}

/// The checkpointer thread's state.
struct Checkpointer {
    connection: Connection,
    state: Arc<AtomicU8>,
    file: String,
}

impl Checkpointer {
    /// Runs until the writer drops its side.
    fn run(self, woken: Receiver<()>) {
        while woken.recv().is_ok() {
            self.copy_most();
            self.state.store(REMAINDER_LEFT, Ordering::Release);
        }
    }

    /// Copies the WAL into the main file until at most [`REMAINDER_FRAMES`] are left, no pass
    /// makes progress (readers hold the rest), or [`MAX_PASSES`] are done.
    fn copy_most(&self) {
        let mut copied_before = 0;
        for _ in 0..MAX_PASSES {
            match passive_checkpoint(&self.connection) {
                Ok((frames, copied)) => {
                    if frames.saturating_sub(copied) <= REMAINDER_FRAMES || copied == copied_before
                    {
                        return;
                    }
                    copied_before = copied;
                }
                Err(error) => {
                    warn_failed(&self.file, &error);
                    return;
                }
            }
        }
    }
}
