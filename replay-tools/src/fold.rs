//! Folding the log into the projections, with progress and without crashing on a bad event.

use std::io::IsTerminal;
use std::panic::AssertUnwindSafe;

use chrono::{DateTime, Utc};
use paycenter_projections::balances::Balances;
use paycenter_projections::{Projection, ReadModel};
use paycenter_store::{EventStore, StoreError};

/// Events read per round trip.
const PAGE_EVENTS: usize = 10_000;

/// Why a fold stopped.
#[derive(Debug)]
pub enum FoldError {
    /// The store failed, or its chain does not verify.
    Store(StoreError),
    /// The read model's scratch file could not be written or read.
    Model(String),
    /// An event broke an invariant of the read model (a ledger imbalance, a refund above the
    /// payment, an event for an unknown payment, ...).
    Invariant {
        /// Where.
        position: u64,
        /// What broke.
        reason: String,
    },
}

impl std::fmt::Display for FoldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FoldError::Store(error) => write!(f, "{error}"),
            FoldError::Model(reason) => write!(f, "read model: {reason}"),
            FoldError::Invariant { position, reason } => {
                write!(f, "invariant broken at position {position}: {reason}")
            }
        }
    }
}

/// A progress bar on stderr when it is a terminal; nothing otherwise.
pub fn progress(total: u64, what: &str) -> indicatif::ProgressBar {
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{msg} [{bar:40}] {pos}/{len} events ({per_sec})")
            .expect("valid template"),
    );
    bar.set_message(what.to_owned());
    bar
}

/// Visits every event from `from_position` on, in pages, with a progress bar.
pub fn each_event(
    store: &dyn EventStore,
    from_position: u64,
    what: &str,
    mut visit: impl FnMut(&paycenter_domain::envelope::RecordedEvent) -> Result<(), String>,
) -> Result<(), String> {
    let head = store.head_position().map_err(|error| error.to_string())?;
    let bar = progress(head, what);
    let mut next_position = from_position.max(1);
    loop {
        let page = store
            .read_all(next_position, PAGE_EVENTS)
            .map_err(|error| error.to_string())?;
        let Some(last) = page.last() else { break };
        next_position = last.global_position + 1;
        page.iter().try_for_each(&mut visit)?;
        bar.set_position(next_position - 1);
    }
    bar.finish_and_clear();
    Ok(())
}

/// The read model and the balances in files of a temporary directory, removed with it: a fold
/// of a long log does not have to fit in memory.
pub struct ScratchModel {
    /// The read model.
    pub model: ReadModel,
    /// The balances.
    pub balances: Balances,
    // Dropped after the projections (fields drop in order), so their files are closed first.
    _dir: tempfile::TempDir,
}

/// Folds every event recorded at or before `until` (all when `None`) into a fresh read model
/// and fresh balances in scratch files.
pub fn fold(
    store: &dyn EventStore,
    until: Option<DateTime<Utc>>,
) -> Result<ScratchModel, FoldError> {
    let dir = tempfile::Builder::new()
        .prefix("paycenter-replay-")
        .tempdir()
        .map_err(|error| FoldError::Model(error.to_string()))?;
    let mut model = ReadModel::open(&dir.path().join("read_model.sqlite"), store)
        .map_err(|error| FoldError::Model(error.to_string()))?;
    fold_into(store, until, &mut model)?;
    let mut balances = Balances::open(&dir.path().join("balances.sqlite"), store)
        .map_err(|error| FoldError::Model(error.to_string()))?;
    fold_into(store, until, &mut balances)?;
    Ok(ScratchModel {
        model,
        balances,
        _dir: dir,
    })
}

/// Folds every event recorded at or before `until` (all when `None`) into projection `model`,
/// which must be empty. Events are in `recorded_at` order along the log (the store keeps it
/// monotonic), so the fold stops at the first later one.
pub fn fold_into<P: Projection>(
    store: &dyn EventStore,
    until: Option<DateTime<Utc>>,
    model: &mut P,
) -> Result<(), FoldError> {
    assert_eq!(model.position(), 0, "folds start from an empty model");
    let head = store.head_position().map_err(FoldError::Store)?;
    let bar = progress(head, &format!("folding {}", P::NAME));
    let mut next_position = 1;
    // The read model asserts its invariants; a broken one is reported with its position.
    let quiet_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = (|| loop {
        let page = store
            .read_all(next_position, PAGE_EVENTS)
            .map_err(FoldError::Store)?;
        let Some(last) = page.last() else {
            return Ok(());
        };
        next_position = last.global_position + 1;
        for event in &page {
            if until.is_some_and(|until| event.recorded_at > until) {
                return Ok(());
            }
            std::panic::catch_unwind(AssertUnwindSafe(|| model.apply(event))).map_err(|panic| {
                FoldError::Invariant {
                    position: event.global_position,
                    reason: panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|text| text.to_string()))
                        .unwrap_or_else(|| "unknown".to_owned()),
                }
            })?;
        }
        model
            .write_staged()
            .map_err(|error| FoldError::Model(error.to_string()))?;
        bar.set_position(next_position - 1);
    })();
    std::panic::set_hook(quiet_hook);
    bar.finish_and_clear();
    result?;
    model
        .write_staged()
        .map_err(|error| FoldError::Model(error.to_string()))?;
    Ok(())
}
