//! Folding the log into the projections, with progress and without crashing on a bad event.

use std::io::IsTerminal;
use std::ops::ControlFlow;
use std::panic::AssertUnwindSafe;

use chrono::{DateTime, Utc};
use paycenter_domain::envelope::RecordedEvent;
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
    /// The check given to [`fold`] refused an event (its reason names the position).
    Refused(String),
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
            FoldError::Refused(reason) => write!(f, "{reason}"),
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
    walk_pages(
        store,
        from_position,
        what,
        |error| error.to_string(),
        |page| {
            page.iter().try_for_each(&mut visit)?;
            Ok(ControlFlow::Continue(()))
        },
    )
}

/// Reads the log in pages from `from_position` on, with a progress bar, handing each page to
/// `visit_page` until the log ends or it answers `Break`. `store_error` turns a failed
/// read into the caller's error.
fn walk_pages<E>(
    store: &dyn EventStore,
    from_position: u64,
    what: &str,
    store_error: impl Fn(StoreError) -> E,
    mut visit_page: impl FnMut(&[RecordedEvent]) -> Result<ControlFlow<()>, E>,
) -> Result<(), E> {
    let head = store.head_position().map_err(&store_error)?;
    let bar = progress(head, what);
    let mut next_position = from_position.max(1);
    loop {
        let page = store
            .read_all(next_position, PAGE_EVENTS)
            .map_err(&store_error)?;
        let Some(last) = page.last() else { break };
        next_position = last.global_position + 1;
        if visit_page(&page)?.is_break() {
            break;
        }
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
/// and fresh balances in scratch files, reading the log once for both. `check` sees each
/// event first; an error from it stops the fold (`FoldError::Refused`).
pub fn fold(
    store: &dyn EventStore,
    until: Option<DateTime<Utc>>,
    mut check: impl FnMut(&RecordedEvent) -> Result<(), String>,
) -> Result<ScratchModel, FoldError> {
    let dir = tempfile::Builder::new()
        .prefix("paycenter-replay-")
        .tempdir()
        .map_err(|error| FoldError::Model(error.to_string()))?;
    let mut model = ReadModel::open(&dir.path().join("read_model.sqlite"), store)
        .map_err(|error| FoldError::Model(error.to_string()))?;
    let mut balances = Balances::open(&dir.path().join("balances.sqlite"), store)
        .map_err(|error| FoldError::Model(error.to_string()))?;
    assert_eq!(model.position(), 0, "folds start from an empty model");
    assert_eq!(balances.position(), 0, "folds start from empty balances");
    fold_pages(store, until, "folding the projections", |page| {
        for event in page {
            check(event).map_err(FoldError::Refused)?;
            apply_guarded(&mut model, event)?;
            apply_guarded(&mut balances, event)?;
        }
        write_staged(&mut model)?;
        write_staged(&mut balances)
    })?;
    Ok(ScratchModel {
        model,
        balances,
        _dir: dir,
    })
}

/// Folds every event recorded at or before `until` (all when `None`) into projection `model`,
/// which must be empty.
pub fn fold_into<P: Projection>(
    store: &dyn EventStore,
    until: Option<DateTime<Utc>>,
    model: &mut P,
) -> Result<(), FoldError> {
    assert_eq!(model.position(), 0, "folds start from an empty model");
    fold_pages(store, until, &format!("folding {}", P::NAME), |page| {
        for event in page {
            apply_guarded(model, event)?;
        }
        write_staged(model)
    })
}

/// Reads the log in pages from position 1 and hands each page's events recorded at or before
/// `until` to `fold_page`, which applies them and writes what they staged. Events are in
/// `recorded_at` order along the log (the store keeps it monotonic), so the walk ends with the
/// page's part before the first later one. A panic while applying (a broken invariant of a
/// projection) is reported by `apply_guarded`, so the default hook's message is silenced here.
fn fold_pages(
    store: &dyn EventStore,
    until: Option<DateTime<Utc>>,
    what: &str,
    mut fold_page: impl FnMut(&[RecordedEvent]) -> Result<(), FoldError>,
) -> Result<(), FoldError> {
    let quiet_hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let result = walk_pages(store, 1, what, FoldError::Store, |page| {
        let in_time = page
            .iter()
            .take_while(|event| until.is_none_or(|until| event.recorded_at <= until))
            .count();
        fold_page(&page[..in_time])?;
        Ok(match in_time < page.len() {
            true => ControlFlow::Break(()),
            false => ControlFlow::Continue(()),
        })
    });
    std::panic::set_hook(quiet_hook);
    result
}

/// Applies `event` to `model`, turning a panic (a broken invariant) into an error naming the
/// position.
fn apply_guarded<P: Projection>(model: &mut P, event: &RecordedEvent) -> Result<(), FoldError> {
    std::panic::catch_unwind(AssertUnwindSafe(|| model.apply(event))).map_err(|panic| {
        FoldError::Invariant {
            position: event.global_position,
            reason: paycenter_projections::follow::panic_message(panic.as_ref()),
        }
    })?;
    Ok(())
}

fn write_staged<P: Projection>(model: &mut P) -> Result<(), FoldError> {
    model
        .write_staged()
        .map_err(|error| FoldError::Model(error.to_string()))
}
