//! What a projection is to the machinery that runs it: the follower ([`crate::follow`]), the
//! online rebuild ([`crate::rebuild`]) and its files in the data directory
//! ([`crate::persisted`]). A projection folds the log one recorded event at a time and commits
//! what it derived together with its checkpoint (the position and hash of the last event it
//! applied) in one transaction of its own file, so a start resumes exactly where the last
//! commit left it.

use std::path::Path;

use paycenter_domain::envelope::RecordedEvent;
use paycenter_store::EventStore;
use serde::de::DeserializeOwned;
use sha2::{Digest as _, Sha256};

use crate::model::ModelError;
use crate::tables::{Backing, Checkpoint, TableError};

/// A fold of the log kept in its own file.
pub trait Projection: Sized + Send + Sync + 'static {
    /// Its name: what operators see, and the prefix of its files.
    const NAME: &'static str;
    /// Bumped whenever `apply` changes what it derives: files of another version are folded
    /// again from the log at the next start.
    const VERSION: u32;
    /// A batch taken by [`Projection::prepare_commit`], written without the projection's lock.
    type Commit: PendingWrite + 'static;

    /// Opens the projection kept in the file at `path` (created empty if absent), at its
    /// checkpoint. A file of another name, version or log is refused (`ModelError`).
    fn open(path: &Path, store: &dyn EventStore) -> Result<Self, ModelError> {
        Self::open_on(Backing::open(path)?, store, Role::Writer)
    }

    /// Opens the projection kept in `backing`, at its checkpoint, to fold the log into
    /// (`Role::Writer`) or to read what another node folds (`Role::Reader`: nothing cached
    /// but the tables kept whole in memory, which [`Projection::refresh`] reloads). Tables of
    /// another name, version or log are refused (`ModelError`).
    fn open_on(
        backing: std::sync::Arc<Backing>,
        store: &dyn EventStore,
        role: Role,
    ) -> Result<Self, ModelError>;

    /// The spaces of the tables it keeps whole in memory ([`crate::tables::Resident`]): what a
    /// reader reloads when another node changed them.
    fn resident_spaces() -> Vec<u16>;

    /// A reader takes the tables as another node committed them: the checkpoint's position
    /// and scalars, and the rows of the resident `spaces` that changed (each space with every
    /// row it holds now).
    fn refresh(
        &mut self,
        checkpoint: &Checkpoint,
        spaces: &[(u16, crate::tables::Rows)],
    ) -> Result<(), ModelError>;

    /// Where it is kept, when it is kept anywhere.
    fn backing(&self) -> Option<&std::sync::Arc<Backing>>;

    /// The position of the last event applied.
    fn position(&self) -> u64;

    /// Applies the event after [`Projection::position`]. A panic is a broken invariant: the
    /// follower catches it and stops this projection there, alone.
    fn apply(&mut self, event: &RecordedEvent);

    /// Takes what was applied since the last commit, with the checkpoint it brings the file
    /// to; `None` when nothing was. It stays readable in memory until
    /// [`Projection::finish_commit`].
    fn prepare_commit(&mut self) -> Option<Self::Commit>;

    /// Forgets the batch [`Projection::prepare_commit`] took, once written. Answers the rows
    /// this took out of memory: a caller holding the projection's lock frees them after
    /// releasing it (see [`crate::tables::Retired`]).
    fn finish_commit(&mut self) -> crate::tables::Retired;

    /// Makes what was applied since the last commit read as committed without writing it;
    /// the next [`Projection::prepare_commit`] takes it. The follower stages every batch it
    /// applies and writes every few milliseconds, so one write carries many batches. A
    /// projection whose reads already see what it applied needs nothing here.
    fn stage(&mut self) {}

    /// Writes what was applied or staged since the last commit, with its checkpoint.
    fn write_staged(&mut self) -> Result<(), ModelError> {
        if let Some(pending) = self.prepare_commit() {
            let written = pending.write();
            self.finish_commit();
            written?;
        }
        Ok(())
    }

    /// Applies the events after its position up to `until_position` (inclusive), committing
    /// after every page. The log is read on a thread of its own, at most [`PAGES_READ_AHEAD`]
    /// pages ahead of the fold: reading and folding take a core each instead of taking turns
    /// on one, and the pages waiting stay bounded.
    fn catch_up(&mut self, store: &dyn EventStore, until_position: u64) -> Result<(), ModelError> {
        let from_position = self.position() + 1;
        if from_position > until_position {
            return Ok(());
        }
        std::thread::scope(|scope| {
            let (pages, pages_read) = std::sync::mpsc::sync_channel(PAGES_READ_AHEAD);
            // Folded pages go back to the reader to be freed there: memory freed on the thread
            // that allocated it is cheap for malloc, and the fold's thread is the slower one.
            let (folded, folded_pages) = std::sync::mpsc::sync_channel(PAGES_READ_AHEAD + 1);
            scope.spawn(move || {
                read_pages(store, from_position, until_position, &pages, &folded_pages)
            });
            // Returning early drops the receiver, which ends the reader at its next page.
            for page in pages_read {
                let page: Vec<RecordedEvent> = page?;
                page.iter().for_each(|event| self.apply(event));
                // A full return queue (the reader gone, or behind) frees the page here.
                let _ = folded.try_send(page);
                self.write_staged()?;
            }
            Ok(())
        })
    }

    /// A digest of everything derived: two folds of the same log have the same one, so a
    /// rebuild can be checked against the live projection before it replaces it.
    fn digest(&self) -> Result<String, TableError>;
}

/// How a projection opened on tables takes part (see [`Projection::open_on`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Folds the log and commits: the only one writing its tables.
    Writer,
    /// Reads what another node folds and commits; applies nothing.
    Reader,
}

impl Role {
    /// How many committed rows a map keeps in memory for this role: none for a reader, whose
    /// tables another node changes under it.
    pub fn recent_capacity(self, writer_capacity: usize) -> usize {
        match self {
            Role::Writer => writer_capacity,
            Role::Reader => 0,
        }
    }
}

/// A checkpoint's hash as bytes (zero for none, or one that does not decode).
pub fn hash_of(checkpoint: &Checkpoint) -> [u8; 32] {
    let mut hash = [0u8; 32];
    if hex::decode_to_slice(&checkpoint.hash_at_position, &mut hash).is_err() {
        return [0u8; 32];
    }
    hash
}

/// Events in one page of a catch-up, folded and committed together.
const PAGE_EVENTS: usize = 10_000;
/// Pages a catch-up reads ahead of its fold.
pub const PAGES_READ_AHEAD: usize = 2;

/// Sends the log's pages from `from_position` to `until_position` (inclusive) to `pages`, until
/// the log ends, a read fails (the error is the last page sent) or the receiver is gone; frees
/// the pages the fold hands back through `folded_pages` before each read.
fn read_pages(
    store: &dyn EventStore,
    from_position: u64,
    until_position: u64,
    pages: &std::sync::mpsc::SyncSender<Result<Vec<RecordedEvent>, paycenter_store::StoreError>>,
    folded_pages: &std::sync::mpsc::Receiver<Vec<RecordedEvent>>,
) {
    let mut next_position = from_position;
    while next_position <= until_position {
        while let Ok(folded) = folded_pages.try_recv() {
            drop(folded);
        }
        let wanted = usize::try_from(until_position - next_position + 1)
            .unwrap_or(usize::MAX)
            .min(PAGE_EVENTS);
        let page = store.read_all(next_position, wanted);
        let last_position = page
            .as_ref()
            .ok()
            .and_then(|events| events.last())
            .map(|event| event.global_position);
        if pages.send(page).is_err() {
            return;
        }
        // An error or the log's end is the last page.
        let Some(last_position) = last_position else {
            return;
        };
        next_position = last_position + 1;
    }
}

/// Where a projection's file stands, as its checkpoint says and the log confirms.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resumed {
    /// The last position applied.
    pub position: u64,
    /// The hash of the event there.
    pub hash_at_position: [u8; 32],
    /// The projection's own scalars, as it last committed them.
    pub scalars: String,
}

/// Reads the checkpoint of projection `P`'s file `backing` and checks it against `store`:
/// `None` for a new file. A file written by another projection or version
/// (`ModelError::OtherVersion`), or folded from another log (`ModelError::NotThisLog`), is
/// refused.
pub fn resume<P: Projection>(
    backing: &Backing,
    store: &dyn EventStore,
) -> Result<Option<Resumed>, ModelError> {
    let Some(checkpoint) = backing.checkpoint()? else {
        return Ok(None);
    };
    if checkpoint.name != P::NAME || checkpoint.version != P::VERSION {
        return Err(ModelError::OtherVersion {
            name: checkpoint.name,
            version: checkpoint.version,
        });
    }
    let mut hash_at_position = [0u8; 32];
    if checkpoint.position > 0 {
        let at = store.read_all(checkpoint.position, 1)?;
        match at.first() {
            Some(event)
                if event.global_position == checkpoint.position
                    && hex::encode(event.hash) == checkpoint.hash_at_position =>
            {
                hash_at_position = event.hash;
            }
            _ => {
                return Err(ModelError::NotThisLog {
                    position: checkpoint.position,
                })
            }
        }
    }
    Ok(Some(Resumed {
        position: checkpoint.position,
        hash_at_position,
        scalars: checkpoint.scalars,
    }))
}

/// The checkpoint projection `P` commits at `position` (the event there hashed
/// `hash_at_position`), with its own `scalars`.
pub fn checkpoint<P: Projection>(
    position: u64,
    hash_at_position: [u8; 32],
    scalars: String,
) -> Checkpoint {
    Checkpoint {
        name: P::NAME.to_owned(),
        version: P::VERSION,
        position,
        hash_at_position: if position == 0 {
            String::new()
        } else {
            hex::encode(hash_at_position)
        },
        scalars,
    }
}

/// A batch of a projection's rows and its checkpoint, on its way to the file.
pub trait PendingWrite: Send {
    /// Writes the batch and its checkpoint in one transaction.
    fn write(&self) -> Result<(), TableError>;
}

/// A projection's own scalars as its checkpoint recorded them (`text`), the default without a
/// checkpoint; a text that does not decode is an error of the file `backing`.
pub fn decode_scalars<S: DeserializeOwned + Default>(
    backing: &Backing,
    text: Option<&str>,
) -> Result<S, TableError> {
    let Some(text) = text else {
        return Ok(S::default());
    };
    serde_json::from_str(text).map_err(|error| TableError {
        path: backing.path().display().to_string(),
        reason: format!("checkpoint scalars: {error}"),
    })
}

/// One row of a digest: its table's label, then its key and value, each with its length.
pub fn digest_row(hasher: &mut Sha256, label: u16, key: &[u8], value: &str) {
    hasher.update(label.to_be_bytes());
    hasher.update((key.len() as u64).to_be_bytes());
    hasher.update(key);
    hasher.update((value.len() as u64).to_be_bytes());
    hasher.update(value.as_bytes());
}

/// The rows of a projection's file as its last commit left it, hashed as its `digest` hashes
/// them (the position, then every row of `spaces` in order, each under its `labels` entry), in
/// one read transaction: the position, the hasher for the projection to close with its
/// scalars, and the scalars' text.
pub fn hash_file_rows(
    backing: &Backing,
    spaces: &[u16],
    labels: &[u16],
) -> Result<(u64, Sha256, Option<String>), TableError> {
    assert_eq!(spaces.len(), labels.len(), "one label per space");
    let hasher = std::cell::RefCell::new(Sha256::new());
    let mut scalars_text = None;
    let checkpoint = backing.read_snapshot(
        spaces,
        &mut |checkpoint| {
            let position = checkpoint.map_or(0, |checkpoint| checkpoint.position);
            hasher
                .borrow_mut()
                .update(format!("position={position};").as_bytes());
            scalars_text = checkpoint.map(|checkpoint| checkpoint.scalars.clone());
        },
        &mut |index, key, value| digest_row(&mut hasher.borrow_mut(), labels[index], key, value),
    )?;
    let position = checkpoint.map_or(0, |checkpoint| checkpoint.position);
    Ok((position, hasher.into_inner(), scalars_text))
}
