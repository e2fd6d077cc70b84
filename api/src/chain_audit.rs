//! The log's integrity while serving (the embedded store, and each node on PostgreSQL): a
//! sealed checkpoint that lets a start verify only what was appended since, and a background
//! walk of everything below it.
//!
//! The checkpoint file `chain.checkpoint` in the data directory holds a position, the hash of
//! the event there, and an HMAC of both under a key derived from the master key: it cannot be
//! moved forward over a rewritten log without the master key. A start that finds a valid one
//! verifies the chain from it to the head (`SqliteConfig::trusted_checkpoint`) instead of from
//! position 1, so its time grows with what was appended since the last run, not with history.
//! The checkpoint is rewritten after that verification and every minute while serving, at the
//! head (events this process appended are its own).
//!
//! What lies below the checkpoint is walked by [`verify_in_background`], in steps, from
//! position 1: its progress is `paycenter_chain_verified_position` in `/metrics`, a broken
//! link makes `/healthz` answer 503 naming the position, and `paycenter-replay verify` walks
//! everything as before.

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use paycenter_store::files::Durability;
use paycenter_store::{ChainReport, EventStore};
use serde::{Deserialize, Serialize};

use crate::keys::MasterKey;

const FILE_NAME: &str = "chain.checkpoint";
/// Events verified per step of the background walk; a pause follows each step.
const EVENTS_PER_STEP: usize = 20_000;
/// The share of one core the walk may take, in percent: each step is followed by a pause of
/// `100 / share - 1` times its own duration. The walk runs at every start and reads the whole
/// log below the checkpoint (a step of 20,000 events takes about 20 ms), so at 10,000,000
/// events a fixed 20 ms pause let it take half a core for half a minute of serving.
const WALK_CORE_SHARE_PERCENT: u32 = 10;
/// The shortest pause between steps, whatever a step took.
const MIN_PAUSE_BETWEEN_STEPS_MS: u64 = 20;

/// The pause after a step that took `step`: the walk keeps to [`WALK_CORE_SHARE_PERCENT`].
fn pause_after(step: Duration) -> Duration {
    let idle_per_busy = 100 / WALK_CORE_SHARE_PERCENT - 1;
    (step * idle_per_busy).max(Duration::from_millis(MIN_PAUSE_BETWEEN_STEPS_MS))
}
/// How often the checkpoint moves to the head while serving.
pub const CHECKPOINT_INTERVAL_SECONDS: u64 = 60;

#[derive(Debug, Serialize, Deserialize)]
struct SealedCheckpoint {
    position: u64,
    hash: String,
    mac: String,
}

/// Reads the checkpoint in `data_dir`, if there is one sealed under `master_key`. A missing,
/// unreadable or forged one is `None` (the whole chain is verified then), with a log line.
pub fn load(data_dir: &Path, master_key: &MasterKey) -> Option<ChainReport> {
    let text = match std::fs::read_to_string(data_dir.join(FILE_NAME)) {
        Ok(text) => text,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return None,
        Err(error) => {
            tracing::warn!(%error, "the chain checkpoint cannot be read; verifying the whole chain");
            return None;
        }
    };
    let sealed: SealedCheckpoint = match serde_json::from_str(&text) {
        Ok(sealed) => sealed,
        Err(error) => {
            tracing::warn!(%error, "the chain checkpoint is malformed; verifying the whole chain");
            return None;
        }
    };
    let hash: Option<[u8; 32]> = hex::decode(&sealed.hash)
        .ok()
        .and_then(|bytes| bytes.try_into().ok());
    let mac = hex::decode(&sealed.mac).ok();
    match (hash, mac) {
        (Some(hash), Some(mac))
            if master_key.checks_chain_checkpoint(sealed.position, &hash, &mac) =>
        {
            Some(ChainReport {
                n_events: sealed.position,
                head_hash: hash,
            })
        }
        _ => {
            tracing::warn!(
                "the chain checkpoint is not sealed by this master key; verifying the whole chain"
            );
            None
        }
    }
}

/// Writes the checkpoint atomically: a temporary file, fsynced, renamed, the directory fsynced.
pub fn save(
    data_dir: &Path,
    master_key: &MasterKey,
    checkpoint: ChainReport,
) -> std::io::Result<()> {
    let sealed = SealedCheckpoint {
        position: checkpoint.n_events,
        hash: hex::encode(checkpoint.head_hash),
        mac: hex::encode(
            master_key.chain_checkpoint_mac(checkpoint.n_events, &checkpoint.head_hash),
        ),
    };
    paycenter_store::files::replace_whole(
        &data_dir.join(FILE_NAME),
        serde_json::to_string(&sealed)?.as_bytes(),
        Durability::Synced,
    )
}

/// The head of `store` as a checkpoint: its position and the hash of the event there.
pub fn head_of(store: &dyn EventStore) -> Result<ChainReport, paycenter_store::StoreError> {
    let position = store.head_position()?;
    if position == 0 {
        return Ok(ChainReport {
            n_events: 0,
            head_hash: [0; 32],
        });
    }
    let head = store.read_all(position, 1)?;
    let event = head
        .first()
        .ok_or_else(|| paycenter_store::StoreError::Corrupted {
            position,
            reason: "the head event cannot be read".to_owned(),
        })?;
    Ok(ChainReport {
        n_events: position,
        head_hash: event.hash,
    })
}

/// How far the background walk got, shared with `/metrics` and `/healthz`.
#[derive(Debug, Default)]
pub struct ChainAudit {
    /// Every event up to here verified (from position 1) by this process.
    pub verified_through: AtomicU64,
    /// The walk's goal: the checkpoint the start trusted (0: the start verified everything).
    /// `verified_through` passes it when the walk ends: the open verified the rest.
    pub target: AtomicU64,
    /// Where the walk found the chain broken, and why.
    pub broken: Mutex<Option<(u64, String)>>,
}

impl ChainAudit {
    /// Whether the walk reached its goal without finding anything.
    pub fn complete(&self) -> bool {
        self.broken().is_none()
            && self.verified_through.load(Ordering::Relaxed) >= self.target.load(Ordering::Relaxed)
    }

    /// Where the chain is broken, if the walk found it so.
    pub fn broken(&self) -> Option<(u64, String)> {
        self.broken
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }
}

/// Walks the log from position 1 to `audit.target` in steps (on a blocking thread), recording
/// progress in `audit`; stops at the first broken link and records it. Once through, the whole
/// log up to `head_at_start` (verified by the open from the checkpoint on) counts as verified.
pub async fn verify_in_background(
    store: Arc<dyn EventStore>,
    audit: Arc<ChainAudit>,
    head_at_start: u64,
) {
    let target = audit.target.load(Ordering::Relaxed);
    let mut verified = ChainReport {
        n_events: 0,
        head_hash: [0; 32],
    };
    while verified.n_events < target {
        let (store_for_step, from) = (store.clone(), verified);
        let step_started = std::time::Instant::now();
        let step = tokio::task::spawn_blocking(move || {
            store_for_step.verify_chain_from(from, target, EVENTS_PER_STEP)
        })
        .await;
        match step {
            Ok(Ok(report)) => {
                verified = report;
                audit
                    .verified_through
                    .store(report.n_events, Ordering::Relaxed);
            }
            Ok(Err(error)) => {
                let position = match &error {
                    paycenter_store::StoreError::Corrupted { position, .. } => *position,
                    _ => verified.n_events + 1,
                };
                tracing::error!(position, %error, "the background walk of the log found it broken below the checkpoint; run paycenter-replay verify");
                *audit
                    .broken
                    .lock()
                    .unwrap_or_else(|poisoned| poisoned.into_inner()) =
                    Some((position, error.to_string()));
                return;
            }
            Err(error) => {
                tracing::error!(%error, "the background walk of the log failed");
                return;
            }
        }
        tokio::time::sleep(pause_after(step_started.elapsed())).await;
    }
    audit
        .verified_through
        .store(head_at_start.max(target), Ordering::Relaxed);
    tracing::info!(
        position = target,
        "the background walk verified the log below the checkpoint"
    );
}

/// Moves the checkpoint to the head every [`CHECKPOINT_INTERVAL_SECONDS`]. With
/// `verify_increments` (a log other processes append to: PostgreSQL), what was appended since
/// the last checkpoint is verified first, so the checkpoint never moves over an event no one
/// here checked; a broken link keeps it where it was and is logged.
pub async fn checkpoint_periodically(
    store: Arc<dyn EventStore>,
    master_key: MasterKey,
    data_dir: std::path::PathBuf,
    verify_increments: bool,
) {
    let mut ticker = tokio::time::interval(Duration::from_secs(CHECKPOINT_INTERVAL_SECONDS));
    ticker.tick().await; // Immediate: the start just wrote one.
    let mut last: Option<ChainReport> = None;
    loop {
        ticker.tick().await;
        let (store, master_key, data_dir) = (store.clone(), master_key.clone(), data_dir.clone());
        let previous = last;
        let saved = tokio::task::spawn_blocking(move || {
            let head = head_of(store.as_ref()).map_err(|error| error.to_string())?;
            if previous.is_some_and(|previous| previous.n_events == head.n_events) {
                return Ok(head);
            }
            if verify_increments {
                let from =
                    previous
                        .or_else(|| load(&data_dir, &master_key))
                        .unwrap_or(ChainReport {
                            n_events: 0,
                            head_hash: [0; 32],
                        });
                let verified = store
                    .verify_chain_from(from, head.n_events, usize::MAX)
                    .map_err(|error| error.to_string())?;
                if verified.n_events != head.n_events || verified.head_hash != head.head_hash {
                    return Err(format!(
                        "the log verified to position {} but its head is {}",
                        verified.n_events, head.n_events
                    ));
                }
            }
            save(&data_dir, &master_key, head).map_err(|error| error.to_string())?;
            Ok::<ChainReport, String>(head)
        })
        .await;
        match saved {
            Ok(Ok(head)) => last = Some(head),
            Ok(Err(error)) => tracing::warn!(%error, "the chain checkpoint was not moved"),
            Err(error) => tracing::warn!(%error, "the chain checkpoint was not moved"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_walk_pauses_nine_times_its_step_and_never_less_than_the_minimum() {
        assert_eq!(
            pause_after(Duration::from_millis(20)),
            Duration::from_millis(180)
        );
        assert_eq!(
            pause_after(Duration::from_micros(300)),
            Duration::from_millis(MIN_PAUSE_BETWEEN_STEPS_MS)
        );
    }
}
