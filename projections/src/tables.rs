//! Where the read model keeps what it derives: in memory, or in a SQLite file of its own.
//!
//! Two kinds of table:
//! - [`Map`]: everything that grows with history (payments, refunds, notifications, feeds, work
//!   queues). Backed by a file, it holds in memory only what the batch being folded changed;
//!   reads of anything else go to SQLite. Keys are encoded so that byte order is the order a
//!   query wants ([`Key`]), which makes a queue ordered by deadline a range scan.
//! - [`Resident`]: the registry (merchants, channel accounts, apps) and balances per merchant:
//!   read on every request, bounded by onboarding rather than by history, so they are kept in
//!   memory whole and written through to the file.
//!
//! A [`Backing`] is one SQLite file with one table `rows (space, key, value)`; each map owns a
//! `space`. Changes stay in the maps until [`Backing::commit`] writes them with the model's
//! checkpoint in **one transaction**: after a crash the file holds the model exactly as it
//! was at some checkpoint, and folding resumes from there.
//!
//! Without a backing (`Default`), every map is an ordinary in-memory map: what the offline
//! tools and the tests fold into.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::hash::Hash;
use std::marker::PhantomData;
use std::ops::Deref;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use rusqlite::{Connection, OpenFlags, OptionalExtension};
use serde::de::DeserializeOwned;
use serde::Serialize;

pub mod postgres;

/// Read connections kept open for reuse; more may be opened under load and are closed after.
/// Above the reads in flight under load: fewer made the pool open and close connections, each
/// open parsing the schema again and each close freeing its cache (seen in a profile).
const MAX_IDLE_READERS: usize = 64;
/// Page cache of each connection, in KiB (SQLite's negative `cache_size`).
const CACHE_KIB_WRITER: i64 = 16 * 1024;
const CACHE_KIB_READER: i64 = 1024;

/// How the fold's panic begins when its tables could not be read: a failure of the tables
/// (with PostgreSQL, of the connection), not of the fold, which a writer of shared tables
/// hands over on instead of staying stopped (`shared`).
pub const UNREADABLE: &str = "the read model cannot read its tables";

/// A read of the file failed (I/O, corruption): the read model cannot answer.
#[derive(Debug, thiserror::Error)]
#[error("read model file {path}: {reason}")]
pub struct TableError {
    /// The file.
    pub path: String,
    /// What SQLite or the decoder said.
    pub reason: String,
}

/// An order-preserving encoding of a key: byte order equals the order of the values.
/// Strings end with a `0x00` (ids never contain one), integers and instants are fixed-width
/// big-endian, tuples are their parts one after another.
pub trait Key {
    /// Appends this key's encoding to `out`.
    fn encode_into(&self, out: &mut Vec<u8>);

    /// Whether the key can be encoded: a string holding a NUL cannot (a NUL ends a string in
    /// the encoding), so no stored key is one, and a lookup of one finds nothing
    /// ([`Map::try_get`]) instead of reading the wrong row.
    fn encodable(&self) -> bool {
        true
    }

    /// This key's encoding.
    fn encoded(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(32);
        self.encode_into(&mut out);
        out
    }
}

impl Key for str {
    fn encode_into(&self, out: &mut Vec<u8>) {
        debug_assert!(self.encodable(), "keys hold no NUL");
        out.extend_from_slice(self.as_bytes());
        out.push(0);
    }

    fn encodable(&self) -> bool {
        !self.as_bytes().contains(&0)
    }
}

impl Key for String {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.as_str().encode_into(out);
    }

    fn encodable(&self) -> bool {
        self.as_str().encodable()
    }
}

/// A key already encoded (the indexes of lists build theirs from parts).
impl Key for [u8] {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}

impl Key for u64 {
    fn encode_into(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.to_be_bytes());
    }
}

impl Key for DateTime<Utc> {
    fn encode_into(&self, out: &mut Vec<u8>) {
        // Microseconds as a signed number, its sign bit flipped so negatives sort first.
        let micros = self.timestamp_micros() as u64 ^ (1 << 63);
        out.extend_from_slice(&micros.to_be_bytes());
    }
}

impl<A: Key, B: Key> Key for (A, B) {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.0.encode_into(out);
        self.1.encode_into(out);
    }

    fn encodable(&self) -> bool {
        self.0.encodable() && self.1.encodable()
    }
}

impl<A: Key, B: Key, C: Key> Key for (A, B, C) {
    fn encode_into(&self, out: &mut Vec<u8>) {
        self.0.encode_into(out);
        self.1.encode_into(out);
        self.2.encode_into(out);
    }

    fn encodable(&self) -> bool {
        self.0.encodable() && self.1.encodable() && self.2.encodable()
    }
}

/// Implements [`Key`] for id types that are strings underneath.
macro_rules! string_keys {
    ($($id:ty),* $(,)?) => {
        $(impl Key for $id {
            fn encode_into(&self, out: &mut Vec<u8>) {
                self.as_str().encode_into(out);
            }

            fn encodable(&self) -> bool {
                self.as_str().encodable()
            }
        })*
    };
}
use paycenter_domain::ids::*;
string_keys!(
    TradeNo,
    AppId,
    MerchantId,
    OrderNo,
    ChannelTradeNo,
    ChannelAccountId,
    RefundId,
    NotificationId,
    OperatorId,
);

/// The first key after every key that starts with `prefix` (for range ends).
pub fn prefix_end(prefix: &[u8]) -> Vec<u8> {
    let mut end = prefix.to_vec();
    // Prefixes here end in a string terminator or a fixed-width integer; incrementing the
    // last byte that is not 0xFF gives the bound.
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return end;
        }
    }
    vec![u8::MAX; 9]
}

/// Which connection a read takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Via {
    /// A pooled read connection: queries, which run beside the fold.
    Readers,
    /// The writer's own connection when no commit holds it: the fold's. Its page cache holds
    /// what the last commits wrote; a read connection would find its cache stale after every
    /// commit and read those pages again. During a commit, a read connection.
    Writer,
}

/// Every row of one space: encoded keys and their JSON values, in key order.
pub type Rows = Vec<(Vec<u8>, String)>;

/// What a commit writes: `(space, key, value)`, `None` removing the row.
pub type Write = (u16, Vec<u8>, Option<RowValue>);

/// A row's value on its way to the file. A map's rows are handed over shared with the map's
/// memory and encoded by whoever writes them (the file's writer thread, without the model's
/// lock): encoding them in `prepare_commit` took about a third of the fold's time, with every
/// reader of the model waiting on its lock.
pub enum RowValue {
    /// Already JSON.
    Encoded(String),
    /// The value, encoded when written.
    Shared(Box<dyn EncodeJson>),
}

impl RowValue {
    /// The value as the file keeps it (JSON); an encoded one is lent, not copied.
    pub fn encode(&self) -> std::borrow::Cow<'_, str> {
        match self {
            RowValue::Encoded(text) => std::borrow::Cow::Borrowed(text),
            RowValue::Shared(value) => std::borrow::Cow::Owned(value.encode_json()),
        }
    }
}

impl From<&str> for RowValue {
    fn from(json: &str) -> RowValue {
        RowValue::Encoded(json.to_owned())
    }
}

impl std::fmt::Debug for RowValue {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RowValue::Encoded(text) => formatter.debug_tuple("Encoded").field(text).finish(),
            RowValue::Shared(_) => formatter.write_str("Shared(..)"),
        }
    }
}

/// A value that can be encoded as the file keeps it, on any thread.
pub trait EncodeJson: Send {
    /// The value's JSON.
    fn encode_json(&self) -> String;
}

impl<T: Serialize + Send> EncodeJson for T {
    fn encode_json(&self) -> String {
        encode_value(self)
    }
}

/// A value of a map's memory, handed to the file's writer beside it (see [`Map`]).
struct SharedValue<V>(Arc<V>);

impl<V: Serialize + Send + Sync> EncodeJson for SharedValue<V> {
    fn encode_json(&self) -> String {
        encode_value(&*self.0)
    }
}

/// Where a projection's rows are kept: one SQLite file, or tables in PostgreSQL shared by the
/// nodes of one database.
pub struct Backing {
    /// The file; with PostgreSQL, a label naming the tables (what errors name).
    path: PathBuf,
    engine: Engine,
    /// The checkpoint's position as last written or, with PostgreSQL, as read at open
    /// (changed only under the writer's lock).
    committed_position: std::sync::atomic::AtomicU64,
    /// With PostgreSQL: a commit found that another node had moved the checkpoint. This
    /// process must not write again (see [`Backing::fenced`]).
    fenced: std::sync::atomic::AtomicBool,
    /// With PostgreSQL: held through a commit (SQLite's writer connection is its own lock).
    commit_lock: Mutex<()>,
}

enum Engine {
    Sqlite {
        writer: Mutex<Connection>,
        readers: Mutex<Vec<Connection>>,
    },
    Postgres(Box<postgres::PgTables>),
}

impl std::fmt::Debug for Backing {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Backing")
            .field("path", &self.path)
            .finish()
    }
}

/// The checkpoint row: how far the file's model has folded the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    /// The projection's name and version that wrote the file.
    pub name: String,
    /// See `name`.
    pub version: u32,
    /// Last global position applied.
    pub position: u64,
    /// Hex SHA-256 of the event at `position` (empty at 0): a log that is not the one the
    /// file was folded from is noticed.
    pub hash_at_position: String,
    /// The model's scalars (JSON), written with every commit.
    pub scalars: String,
}

impl Backing {
    /// Opens (creating if needed) the file at `path`.
    pub fn open(path: &Path) -> Result<Arc<Backing>, TableError> {
        let error = |reason: rusqlite::Error| TableError {
            path: path.display().to_string(),
            reason: reason.to_string(),
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|reason| TableError {
                path: path.display().to_string(),
                reason: reason.to_string(),
            })?;
        }
        let writer = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE
                | OpenFlags::SQLITE_OPEN_CREATE
                | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(error)?;
        writer.busy_timeout(Duration::from_secs(5)).map_err(error)?;
        // WAL: readers never wait for the writer. `synchronous = OFF`: nothing here is ever
        // fsynced, so the file costs the disk no flushes; a process crash loses nothing (the
        // kernel has the pages), and a power cut that damages the file makes the next start
        // replace it and fold the log again (`persisted::open_or_replace`): it is derived.
        // Checkpoints every 8,192 pages instead of 1,000 copy each hot page fewer times.
        writer
            .execute_batch(&format!(
                "PRAGMA journal_mode = WAL;
                 PRAGMA synchronous = OFF;
                 PRAGMA wal_autocheckpoint = 8192;
                 PRAGMA journal_size_limit = 67108864;
                 PRAGMA cache_size = -{CACHE_KIB_WRITER};
                 CREATE TABLE IF NOT EXISTS rows (
                     space INTEGER NOT NULL,
                     key BLOB NOT NULL,
                     value TEXT NOT NULL,
                     PRIMARY KEY (space, key)
                 ) WITHOUT ROWID;
                 CREATE TABLE IF NOT EXISTS checkpoint (
                     id INTEGER PRIMARY KEY CHECK (id = 1),
                     name TEXT NOT NULL,
                     version INTEGER NOT NULL,
                     position INTEGER NOT NULL,
                     hash_at_position TEXT NOT NULL,
                     scalars TEXT NOT NULL
                 );"
            ))
            .map_err(error)?;
        let committed_position: i64 = writer
            .query_row(
                "SELECT COALESCE(MAX(position), 0) FROM checkpoint",
                [],
                |row| row.get(0),
            )
            .map_err(error)?;
        Ok(Arc::new(Backing {
            path: path.to_owned(),
            engine: Engine::Sqlite {
                writer: Mutex::new(writer),
                readers: Mutex::new(Vec::new()),
            },
            committed_position: std::sync::atomic::AtomicU64::new(committed_position as u64),
            fenced: std::sync::atomic::AtomicBool::new(false),
            commit_lock: Mutex::new(()),
        }))
    }

    /// Connects to the PostgreSQL database at `url` and keeps projection `projection`'s rows
    /// in tables of `schema` (created if needed; see [`postgres`]).
    pub fn open_postgres(
        url: &str,
        schema: &str,
        projection: &str,
    ) -> Result<Arc<Backing>, TableError> {
        Backing::open_postgres_generation(url, schema, projection, false)
    }

    /// [`Backing::open_postgres`], on the live generation of the tables or, with
    /// `new_generation`, on a new one for an online rebuild (see [`postgres`]).
    pub fn open_postgres_generation(
        url: &str,
        schema: &str,
        projection: &str,
        new_generation: bool,
    ) -> Result<Arc<Backing>, TableError> {
        let label = format!("postgresql:{schema}.rm_{projection}_");
        let tables = postgres::PgTables::open(url, schema, projection, new_generation).map_err(
            |reason| TableError {
                path: label.clone(),
                reason,
            },
        )?;
        let committed_position = tables
            .checkpoint()
            .map_err(|reason| TableError {
                path: label.clone(),
                reason,
            })?
            .map_or(0, |checkpoint| checkpoint.position);
        Ok(Arc::new(Backing {
            path: PathBuf::from(tables.label()),
            engine: Engine::Postgres(Box::new(tables)),
            committed_position: std::sync::atomic::AtomicU64::new(committed_position),
            fenced: std::sync::atomic::AtomicBool::new(false),
            commit_lock: Mutex::new(()),
        }))
    }

    /// Whether the rows are in PostgreSQL, shared with other nodes.
    pub fn is_shared(&self) -> bool {
        matches!(self.engine, Engine::Postgres(_))
    }

    /// Whether a commit found the checkpoint moved by another node: this backing writes
    /// nothing more, and its projection must be opened again from the tables.
    pub fn fenced(&self) -> bool {
        self.fenced.load(std::sync::atomic::Ordering::Acquire)
    }

    /// With PostgreSQL: what changed since `after_position` (see [`postgres::Change`]). A
    /// SQLite file has no other writer: always nothing.
    pub fn moved_since(&self, after_position: u64) -> Result<postgres::Change, TableError> {
        match &self.engine {
            Engine::Sqlite { .. } => Ok(postgres::Change::None),
            Engine::Postgres(tables) => tables
                .moved_since(after_position)
                .map_err(|reason| self.error(reason)),
        }
    }

    /// With PostgreSQL: records where the writer's fold stopped (`stopped`, JSON), so the
    /// nodes reading its tables stop too and say where. Nothing for a file.
    pub fn record_stop(&self, stopped: &str) -> Result<(), TableError> {
        match &self.engine {
            Engine::Sqlite { .. } => Ok(()),
            Engine::Postgres(tables) => tables
                .record_stop(stopped)
                .map_err(|reason| self.error(reason)),
        }
    }

    /// With PostgreSQL: where the writer's fold stopped, as [`Backing::record_stop`] recorded
    /// it. `None` for a file.
    pub fn writer_stop(&self) -> Result<Option<String>, TableError> {
        match &self.engine {
            Engine::Sqlite { .. } => Ok(None),
            Engine::Postgres(tables) => tables.writer_stop().map_err(|reason| self.error(reason)),
        }
    }

    /// With PostgreSQL: a connection that hears every commit of this projection's tables;
    /// `None` for a file (nothing else writes it).
    pub fn listen(&self) -> Result<Option<postgres::Listener>, TableError> {
        match &self.engine {
            Engine::Sqlite { .. } => Ok(None),
            Engine::Postgres(tables) => tables
                .listen()
                .map(Some)
                .map_err(|reason| self.error(reason)),
        }
    }

    /// With PostgreSQL: whether these tables are still the live generation (a SQLite file
    /// always is: its pointer is the rebuild's business, under the model's lock).
    pub fn is_live(&self) -> Result<bool, TableError> {
        match &self.engine {
            Engine::Sqlite { .. } => Ok(true),
            Engine::Postgres(tables) => Ok(tables
                .live_generation()
                .map_err(|reason| self.error(reason))?
                == tables.generation()),
        }
    }

    /// With PostgreSQL: makes these tables (a rebuild's new generation) the live ones in
    /// place of `live`'s, whose checkpoint must still be where `live` committed it.
    pub fn make_live_shared(&self, live: &Backing) -> Result<(), TableError> {
        let (Engine::Postgres(fresh), Engine::Postgres(old)) = (&self.engine, &live.engine) else {
            return Err(self.error("only tables in PostgreSQL have generations"));
        };
        let live_position = live
            .committed_position
            .load(std::sync::atomic::Ordering::Acquire);
        fresh
            .make_live(old, live_position)
            .map_err(|reason| self.error(reason))
    }

    /// With PostgreSQL: makes these tables (an offline rebuild's new generation) the live ones,
    /// whatever generation is live now.
    pub fn make_live_over_any_shared(&self) -> Result<(), TableError> {
        match &self.engine {
            Engine::Sqlite { .. } => Err(self.error("only tables in PostgreSQL have generations")),
            Engine::Postgres(tables) => tables
                .make_live_over_any()
                .map_err(|reason| self.error(reason)),
        }
    }

    /// With PostgreSQL: drops every generation's tables but these (once these are live; nodes
    /// still reading the old ones wait for the drop, then find the pointer moved).
    pub fn drop_other_generations(&self) -> Result<(), TableError> {
        match &self.engine {
            Engine::Sqlite { .. } => Ok(()),
            Engine::Postgres(tables) => tables
                .drop_other_generations()
                .map_err(|reason| self.error(reason)),
        }
    }

    /// With PostgreSQL: drops these tables (a rebuild's generation that failed).
    pub fn drop_shared(&self) -> Result<(), TableError> {
        match &self.engine {
            Engine::Sqlite { .. } => Ok(()),
            Engine::Postgres(tables) => tables.drop_tables().map_err(|reason| self.error(reason)),
        }
    }

    /// Forgets every row and the checkpoint (tables of another version or log, folded again
    /// from the start). SQLite files are replaced instead (`persisted`).
    pub fn clear_shared(&self) -> Result<(), TableError> {
        match &self.engine {
            Engine::Sqlite { .. } => Ok(()),
            Engine::Postgres(tables) => {
                tables.clear().map_err(|reason| self.error(reason))?;
                self.committed_position
                    .store(0, std::sync::atomic::Ordering::Release);
                Ok(())
            }
        }
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn error(&self, reason: impl ToString) -> TableError {
        TableError {
            path: self.path.display().to_string(),
            reason: reason.to_string(),
        }
    }

    /// Runs `read` on a pooled read connection of the SQLite file.
    fn with_reader<T>(
        &self,
        readers: &Mutex<Vec<Connection>>,
        read: impl FnOnce(&Connection) -> rusqlite::Result<T>,
    ) -> Result<T, TableError> {
        let pooled = readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .pop();
        let connection = match pooled {
            Some(connection) => connection,
            None => {
                let connection = Connection::open_with_flags(
                    &self.path,
                    OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                )
                .map_err(|error| self.error(error))?;
                connection
                    .busy_timeout(Duration::from_secs(5))
                    .and_then(|()| {
                        connection
                            .execute_batch(&format!("PRAGMA cache_size = -{CACHE_KIB_READER};"))
                    })
                    .map_err(|error| self.error(error))?;
                connection
            }
        };
        let result = read(&connection).map_err(|error| self.error(error));
        let mut idle = readers
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if idle.len() < MAX_IDLE_READERS {
            idle.push(connection);
        }
        result
    }

    fn get(&self, space: u16, key: &[u8], via: Via) -> Result<Option<String>, TableError> {
        let (writer, readers) = match &self.engine {
            Engine::Sqlite { writer, readers } => (writer, readers),
            Engine::Postgres(tables) => {
                return tables.get(space, key).map_err(|reason| self.error(reason))
            }
        };
        let read = |connection: &Connection| {
            connection
                .prepare_cached("SELECT value FROM rows WHERE space = ?1 AND key = ?2")?
                .query_row(rusqlite::params![space, key], |row| row.get(0))
                .optional()
        };
        match via {
            Via::Readers => self.with_reader(readers, read),
            // While a commit holds the writer's connection (written on the follower's writer
            // thread), the fold reads through a read connection rather than wait for it: what
            // the commit writes is still in the maps' memory.
            Via::Writer => {
                let connection = match writer.try_lock() {
                    Ok(connection) => connection,
                    Err(std::sync::TryLockError::Poisoned(poisoned)) => poisoned.into_inner(),
                    Err(std::sync::TryLockError::WouldBlock) => {
                        return self.with_reader(readers, read)
                    }
                };
                read(&connection).map_err(|error| self.error(error))
            }
        }
    }

    /// Rows of `space` with `start <= key < end`, in key order (the greatest first when
    /// `descending`), at most `limit`.
    fn range(
        &self,
        space: u16,
        start: &[u8],
        end: &[u8],
        limit: usize,
        descending: bool,
    ) -> Result<Vec<(Vec<u8>, String)>, TableError> {
        let readers = match &self.engine {
            Engine::Sqlite { readers, .. } => readers,
            Engine::Postgres(tables) => {
                return tables
                    .range(space, start, end, limit, descending)
                    .map_err(|reason| self.error(reason))
            }
        };
        self.with_reader(readers, |connection| {
            // No `LIMIT ?`: SQLite plans with a bound LIMIT's value and so prepares the
            // statement again at every run; rows are stepped lazily and the take stops them.
            let mut statement = connection.prepare_cached(if descending {
                "SELECT key, value FROM rows WHERE space = ?1 AND key >= ?2 AND key < ?3
                 ORDER BY key DESC"
            } else {
                "SELECT key, value FROM rows WHERE space = ?1 AND key >= ?2 AND key < ?3
                 ORDER BY key"
            })?;
            let rows = statement.query_map(rusqlite::params![space, start, end], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })?;
            rows.take(limit).collect()
        })
    }

    /// Every row of `space`, in key order.
    pub fn all(&self, space: u16) -> Result<Vec<(Vec<u8>, String)>, TableError> {
        self.range(space, &[], &[u8::MAX; 9], usize::MAX, false)
    }

    /// Reads the checkpoint (given to `on_checkpoint`), then every row of `spaces` (in the order
    /// given, each in key order, `visit` told the space's index in `spaces`), in **one read
    /// transaction** on a
    /// connection of its own: the file exactly as its last commit left it, read without
    /// holding anything of the model's while a long file is walked.
    pub fn read_snapshot(
        &self,
        spaces: &[u16],
        on_checkpoint: &mut dyn FnMut(Option<&Checkpoint>),
        visit: &mut dyn FnMut(usize, &[u8], &str),
    ) -> Result<Option<Checkpoint>, TableError> {
        if let Engine::Postgres(tables) = &self.engine {
            return tables
                .read_snapshot(spaces, on_checkpoint, visit)
                .map_err(|reason| self.error(reason));
        }
        let connection = Connection::open_with_flags(
            &self.path,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|error| self.error(error))?;
        let mut read = || -> rusqlite::Result<Option<Checkpoint>> {
            connection.busy_timeout(Duration::from_secs(5))?;
            connection.execute_batch("BEGIN")?;
            let checkpoint = read_checkpoint(&connection)?;
            on_checkpoint(checkpoint.as_ref());
            let mut statement =
                connection.prepare("SELECT key, value FROM rows WHERE space = ?1 ORDER BY key")?;
            for (index, space) in spaces.iter().enumerate() {
                let mut rows = statement.query([space])?;
                while let Some(row) = rows.next()? {
                    let key: Vec<u8> = row.get(0)?;
                    let value: String = row.get(1)?;
                    visit(index, &key, &value);
                }
            }
            drop(statement);
            connection.execute_batch("COMMIT")?;
            Ok(checkpoint)
        };
        read().map_err(|error| self.error(error))
    }

    /// The checkpoint, if the file has one.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, TableError> {
        match &self.engine {
            Engine::Sqlite { readers, .. } => self.with_reader(readers, read_checkpoint),
            Engine::Postgres(tables) => tables.checkpoint().map_err(|reason| self.error(reason)),
        }
    }

    /// Writes `writes` and the new checkpoint in one transaction. A commit that arrives after
    /// one of a later position is dropped: that one already wrote its rows (see
    /// [`Map::drain_into`]), and rows of an earlier batch must not overwrite them.
    ///
    /// With PostgreSQL the checkpoint moves only from where this process last left it: a
    /// commit that finds it elsewhere (another node took the projection over) writes nothing,
    /// fails, and leaves the backing [`Backing::fenced`].
    pub fn commit(&self, writes: &[Write], checkpoint: &Checkpoint) -> Result<(), TableError> {
        use std::sync::atomic::Ordering;
        let writer = match &self.engine {
            Engine::Sqlite { writer, .. } => writer,
            Engine::Postgres(tables) => return self.commit_shared(tables, writes, checkpoint),
        };
        let mut writer = writer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if checkpoint.position < self.committed_position.load(Ordering::Relaxed) {
            return Ok(());
        }
        let transaction = writer.transaction().map_err(|error| self.error(error))?;
        {
            let mut upsert = transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO rows (space, key, value) VALUES (?1, ?2, ?3)",
                )
                .map_err(|error| self.error(error))?;
            let mut delete = transaction
                .prepare_cached("DELETE FROM rows WHERE space = ?1 AND key = ?2")
                .map_err(|error| self.error(error))?;
            for (space, key, value) in writes {
                match value {
                    Some(value) => {
                        upsert.execute(rusqlite::params![space, key, value.encode().as_ref()])
                    }
                    None => delete.execute(rusqlite::params![space, key]),
                }
                .map_err(|error| self.error(error))?;
            }
            transaction
                .prepare_cached(
                    "INSERT OR REPLACE INTO checkpoint (id, name, version, position, hash_at_position, scalars)
                     VALUES (1, ?1, ?2, ?3, ?4, ?5)",
                )
                .and_then(|mut statement| {
                    statement.execute(rusqlite::params![
                        checkpoint.name,
                        checkpoint.version,
                        i64::try_from(checkpoint.position).expect("positions fit i64"),
                        checkpoint.hash_at_position,
                        checkpoint.scalars,
                    ])
                })
                .map_err(|error| self.error(error))?;
        }
        transaction.commit().map_err(|error| self.error(error))?;
        self.committed_position
            .store(checkpoint.position, Ordering::Relaxed);
        Ok(())
    }

    fn commit_shared(
        &self,
        tables: &postgres::PgTables,
        writes: &[Write],
        checkpoint: &Checkpoint,
    ) -> Result<(), TableError> {
        use std::sync::atomic::Ordering;
        // One commit at a time, as SQLite's writer lock gives: the compare-and-set below
        // reads the position the previous commit stored.
        let _one_at_a_time = self
            .commit_lock
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.fenced() {
            return Err(self.error("another node writes these tables now; this one stopped"));
        }
        let from_position = self.committed_position.load(Ordering::Acquire);
        if checkpoint.position < from_position {
            return Ok(());
        }
        match tables
            .commit(writes, checkpoint, from_position)
            .map_err(|reason| self.error(reason))?
        {
            postgres::Committed::Written => {
                self.committed_position
                    .store(checkpoint.position, Ordering::Release);
                Ok(())
            }
            postgres::Committed::Fenced => {
                self.fenced.store(true, Ordering::Release);
                Err(self.error(format!(
                    "the checkpoint is no longer at {from_position}: another node writes these tables now"
                )))
            }
        }
    }

    /// Bytes the file and its write-ahead log take on disk (with PostgreSQL, the rows' table
    /// and its indexes).
    pub fn size_bytes(&self) -> u64 {
        if let Engine::Postgres(tables) = &self.engine {
            return tables.size_bytes();
        }
        let wal = PathBuf::from(format!("{}-wal", self.path.display()));
        [self.path.as_path(), wal.as_path()]
            .iter()
            .filter_map(|path| std::fs::metadata(path).ok())
            .map(|metadata| metadata.len())
            .sum()
    }
}

/// The checkpoint row, if the file has one.
fn read_checkpoint(connection: &Connection) -> rusqlite::Result<Option<Checkpoint>> {
    connection
        .query_row(
            "SELECT name, version, position, hash_at_position, scalars FROM checkpoint",
            [],
            |row| {
                Ok(Checkpoint {
                    name: row.get(0)?,
                    version: row.get(1)?,
                    position: row.get::<_, i64>(2)? as u64,
                    hash_at_position: row.get(3)?,
                    scalars: row.get(4)?,
                })
            },
        )
        .optional()
}

fn encode_value<V: Serialize>(value: &V) -> String {
    serde_json::to_string(value).expect("read model values serialize")
}

/// One step of a descending read ([`Map::range_desc`]).
#[derive(Debug)]
pub struct DescendingStep<V> {
    /// Encoded keys and values, the greatest key first.
    pub entries: Vec<(Vec<u8>, V)>,
    /// Where the next step ends (exclusive) when rows may remain below; `None` when the range
    /// is read to its start.
    pub resume_below: Option<Vec<u8>>,
}

/// A table of the read model that grows with history (see the module).
pub struct Map<K: ?Sized, V> {
    space: u16,
    backing: Option<Arc<Backing>>,
    /// Without a backing: every entry. With one: the entries changed since the last commit,
    /// `None` for a removed one.
    entries: BTreeMap<Vec<u8>, Option<Arc<V>>>,
    /// With a backing: the last entries committed, as committed. What was just written is
    /// what is read next (a payment read back after its start, paid a moment later), so those
    /// reads skip SQLite and decoding.
    ///
    /// Values are shared (`Arc`) in every layer: a commit hands the file's writer the same
    /// value the layers keep readable, not a copy (copying every row at every commit, and
    /// freeing the copies, cost about 2 % of a payment's CPU), and staging moves them.
    recent: Recent<Arc<V>>,
    /// With a backing: the entries staged since the last `drain_into`, readable meanwhile:
    /// the follower writes to the file only every few milliseconds, and queries still see
    /// every batch it applied. Ordered, so a range read lays over only the keys in its range.
    committing: BTreeMap<Vec<u8>, Option<Arc<V>>>,
    /// With a backing: the entries of the commit being written (between `drain_into` and
    /// `finish_commit`), on another thread and without the model's lock; `committing` holds
    /// what was staged meanwhile, and is read first.
    writing: BTreeMap<Vec<u8>, Option<Arc<V>>>,
    _key: PhantomData<fn(&K)>,
}

impl<K: ?Sized, V> Default for Map<K, V> {
    fn default() -> Self {
        Map {
            space: 0,
            backing: None,
            entries: BTreeMap::new(),
            recent: Recent::new(0),
            committing: BTreeMap::new(),
            writing: BTreeMap::new(),
            _key: PhantomData,
        }
    }
}

impl<K: ?Sized, V: std::fmt::Debug> std::fmt::Debug for Map<K, V> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Map")
            .field("space", &self.space)
            .field("backed", &self.backing.is_some())
            .field("entries_in_memory", &self.entries.len())
            .field("recent_in_memory", &self.recent.len())
            .finish()
    }
}

impl<K: Key + ?Sized, V: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Map<K, V> {
    /// Keeps this map in `space` of `backing` from now on, with the last `recent_capacity`
    /// committed entries kept in memory too. Only on an empty map.
    pub fn attach(&mut self, backing: &Arc<Backing>, space: u16, recent_capacity: usize) {
        assert!(self.entries.is_empty() && self.backing.is_none());
        self.space = space;
        self.backing = Some(backing.clone());
        self.recent = Recent::new(recent_capacity);
    }

    fn decode(&self, text: &str) -> Result<V, TableError> {
        serde_json::from_str(text).map_err(|error| TableError {
            path: self
                .backing
                .as_ref()
                .map_or_else(String::new, |backing| backing.path.display().to_string()),
            reason: format!("space {}: {error}", self.space),
        })
    }

    /// The entry at `encoded` if memory holds it (`Some(None)`: removed), newest first: the
    /// changes of the batch being folded, then what was staged, then the commit being written,
    /// then the last committed entries.
    fn in_memory(&self, encoded: &[u8]) -> Option<Option<&V>> {
        self.entries
            .get(encoded)
            .or_else(|| self.committing.get(encoded))
            .or_else(|| self.writing.get(encoded))
            .or_else(|| self.recent.get(encoded))
            .map(Option::as_deref)
    }

    fn load(&self, encoded: &[u8], via: Via) -> Result<Option<V>, TableError> {
        if let Some(entry) = self.in_memory(encoded) {
            return Ok(entry.cloned());
        }
        let Some(backing) = &self.backing else {
            return Ok(None);
        };
        match backing.get(self.space, encoded, via)? {
            Some(text) => self.decode(&text).map(Some),
            None => Ok(None),
        }
    }

    /// The value at `key`, or why it could not be read. A key that cannot be encoded (a
    /// caller's string holding a NUL) is no stored key: `None`.
    pub fn try_get(&self, key: &K) -> Result<Option<V>, TableError> {
        if !key.encodable() {
            return Ok(None);
        }
        self.load(&key.encoded(), Via::Readers)
    }

    /// The value at `key`, for the fold: read through the writer's connection, and a panic
    /// when the file cannot be read (the fold's panics stop the projection where it is and
    /// say why). `get`, `peek`, `remove`, `delete` and `get_mut` are the fold's.
    pub fn get(&self, key: &K) -> Option<V> {
        self.load(&key.encoded(), Via::Writer)
            .unwrap_or_else(|error| panic!("{UNREADABLE}: {error}"))
    }

    /// What `read` makes of the value at `key`, without copying a value held in memory (see
    /// [`Map::get`] on errors).
    pub fn peek<R>(&self, key: &K, read: impl FnOnce(&V) -> R) -> Option<R> {
        let encoded = key.encoded();
        if let Some(entry) = self.in_memory(&encoded) {
            return entry.map(read);
        }
        self.load(&encoded, Via::Writer)
            .unwrap_or_else(|error| panic!("{UNREADABLE}: {error}"))
            .as_ref()
            .map(read)
    }

    /// Sets `key` to `value`.
    pub fn insert(&mut self, key: &K, value: V) {
        self.entries.insert(key.encoded(), Some(Arc::new(value)));
    }

    /// Removes `key`, returning what it held (a read, as [`Map::get`]).
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let previous = self.get(key);
        self.delete(key);
        previous
    }

    /// Removes `key` without reading what it held.
    pub fn delete(&mut self, key: &K) {
        let encoded = key.encoded();
        if self.backing.is_some() {
            self.entries.insert(encoded, None);
        } else {
            self.entries.remove(&encoded);
        }
    }

    /// The value at `key` to change in place (kept in memory until the next commit).
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let encoded = key.encoded();
        if !self.entries.contains_key(&encoded) {
            let loaded = self
                .load(&encoded, Via::Writer)
                .unwrap_or_else(|error| panic!("{UNREADABLE}: {error}"));
            loaded.as_ref()?;
            self.entries.insert(encoded.clone(), loaded.map(Arc::new));
        }
        // Unshared: a value loaded above, or put in this batch (a value already staged is
        // loaded as a copy, so staged rows never change under the file's writer).
        self.entries
            .get_mut(&encoded)
            .and_then(Option::as_mut)
            .map(Arc::make_mut)
    }

    /// Values with `start <= encoded key < end`, in key order, at most `limit`. Reads what is
    /// committed: only between folds (the model's write lock keeps queries out of a batch).
    pub fn range(&self, start: &[u8], end: &[u8], limit: usize) -> Result<Vec<V>, TableError> {
        Ok(self
            .range_entries(start, end, limit)?
            .into_iter()
            .map(|(_, value)| value)
            .collect())
    }

    /// Entries (encoded key and value) with `start <= encoded key < end`, in key order, at
    /// most `limit` (see [`Map::range`]).
    pub fn range_entries(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<Vec<(Vec<u8>, V)>, TableError> {
        if end <= start || limit == 0 {
            return Ok(Vec::new());
        }
        match &self.backing {
            None => Ok(self
                .entries
                .range(start.to_vec()..end.to_vec())
                .filter_map(|(key, value)| Some((key.clone(), V::clone(value.as_ref()?))))
                .take(limit)
                .collect()),
            Some(backing) => {
                debug_assert!(self.entries.is_empty(), "range reads committed rows only");
                let rows = backing.range(self.space, start, end, limit, false)?;
                let mut found = BTreeMap::new();
                for (key, text) in &rows {
                    found.insert(key.clone(), self.decode(text)?);
                }
                self.overlay_committing(&mut found, start, end, rows.len() == limit, false);
                Ok(found.into_iter().take(limit).collect())
            }
        }
    }

    /// Entries (encoded key and value) with `start <= encoded key < end`, the greatest key
    /// first, reading at most `limit` rows: a step of a list shown newest first. Reads what is
    /// committed, as [`Map::range`].
    pub fn range_desc(
        &self,
        start: &[u8],
        end: &[u8],
        limit: usize,
    ) -> Result<DescendingStep<V>, TableError> {
        if end <= start || limit == 0 {
            return Ok(DescendingStep {
                entries: Vec::new(),
                resume_below: None,
            });
        }
        match &self.backing {
            None => {
                let entries: Vec<(Vec<u8>, V)> = self
                    .entries
                    .range(start.to_vec()..end.to_vec())
                    .rev()
                    .filter_map(|(key, value)| Some((key.clone(), V::clone(value.as_ref()?))))
                    .take(limit)
                    .collect();
                let resume_below = (entries.len() == limit)
                    .then(|| entries.last().map(|(key, _)| key.clone()))
                    .flatten();
                Ok(DescendingStep {
                    entries,
                    resume_below,
                })
            }
            Some(backing) => {
                debug_assert!(self.entries.is_empty(), "range reads committed rows only");
                let rows = backing.range(self.space, start, end, limit, true)?;
                let stopped_at_limit = rows.len() == limit;
                let lowest_read = rows.last().map(|(key, _)| key.clone());
                let mut found = BTreeMap::new();
                for (key, text) in rows {
                    let value = self.decode(&text)?;
                    found.insert(key, value);
                }
                self.overlay_committing(&mut found, start, end, stopped_at_limit, true);
                let mut entries: Vec<(Vec<u8>, V)> = found.into_iter().rev().collect();
                // Staged rows may bring more than `limit`: the step keeps the greatest, and the
                // next one resumes below the last it kept.
                let resume_below = if entries.len() > limit {
                    entries.truncate(limit);
                    entries.last().map(|(key, _)| key.clone())
                } else if stopped_at_limit {
                    lowest_read
                } else {
                    None
                };
                Ok(DescendingStep {
                    entries,
                    resume_below,
                })
            }
        }
    }

    /// Values whose key starts with `prefix`, in key order, at most `limit`.
    pub fn with_prefix(&self, prefix: &[u8], limit: usize) -> Result<Vec<V>, TableError> {
        self.range(prefix, &prefix_end(prefix), limit)
    }

    /// The first `limit` values in key order.
    pub fn first(&self, limit: usize) -> Result<Vec<V>, TableError> {
        self.range(&[], &[u8::MAX; 9], limit)
    }

    /// Lays the commit being written, then what was staged since, over rows read from the file
    /// in `[start, end)` (read in key order, or the greatest first when `descending`). When the
    /// read stopped at its limit, rows past the last one read are left out: the file may hold
    /// others before them.
    fn overlay_committing(
        &self,
        found: &mut BTreeMap<Vec<u8>, V>,
        start: &[u8],
        end: &[u8],
        stopped_at_limit: bool,
        descending: bool,
    ) {
        let last_read = if descending {
            found.keys().next().cloned()
        } else {
            found.keys().next_back().cloned()
        };
        let range = start.to_vec()..end.to_vec();
        let unwritten = self
            .writing
            .range(range.clone())
            .chain(self.committing.range(range));
        for (key, value) in unwritten {
            let beyond_read = stopped_at_limit
                && last_read
                    .as_ref()
                    .is_some_and(|last| if descending { key < last } else { key > last });
            match value {
                Some(value) if !beyond_read => {
                    found.insert(key.clone(), V::clone(value));
                }
                Some(_) => {}
                None => {
                    found.remove(key);
                }
            }
        }
    }

    /// Moves the changes since the last commit into `writes`, keeping them readable until
    /// [`Map::finish_commit`]. Rows of a commit still being written (an online rebuild's
    /// catch-up overtaking the follower) are written again, so this commit holds them
    /// whichever of the two reaches the file last ([`Backing::commit`] drops the older).
    pub fn drain_into(&mut self, writes: &mut Vec<Write>) {
        if self.backing.is_none() {
            return;
        }
        self.stage();
        let staged = std::mem::take(&mut self.committing);
        lay_over(&mut self.writing, staged);
        let space = self.space;
        for (key, value) in &self.writing {
            let value = value
                .as_ref()
                .map(|value| RowValue::Shared(Box::new(SharedValue(Arc::clone(value)))));
            writes.push((space, key.clone(), value));
        }
    }

    /// Moves the changes since the last commit to the staged entries, which reads see as
    /// committed (ranges included) and the next [`Map::drain_into`] writes. Encodes nothing:
    /// the follower stages every batch and writes only every few milliseconds.
    pub fn stage(&mut self) {
        if self.backing.is_none() {
            return;
        }
        let changed = std::mem::take(&mut self.entries);
        lay_over(&mut self.committing, changed);
    }

    /// The commit holding what `drain_into` took is in the file (or was dropped for a later
    /// one): those entries move to the bounded memory of recent ones. What was staged since
    /// stays for the next commit.
    ///
    /// Answers the generation of recent entries this retired, if any, for the caller to free
    /// (see [`Retired`]).
    pub fn finish_commit(&mut self) -> Retired {
        let mut retired = Retired::default();
        for (key, value) in std::mem::take(&mut self.writing) {
            if let Some(generation) = self.recent.insert(key, value) {
                retired.push(generation);
            }
        }
        retired
    }

    /// Feeds every entry (encoded key and JSON value, in key order) to `visit`.
    pub fn visit_all(&self, visit: &mut dyn FnMut(&[u8], &str)) -> Result<(), TableError> {
        match &self.backing {
            None => {
                for (key, value) in &self.entries {
                    if let Some(value) = value {
                        visit(key, &encode_value(&**value));
                    }
                }
            }
            Some(backing) => {
                debug_assert!(
                    self.entries.is_empty(),
                    "a digest reads committed rows only"
                );
                if self.committing.is_empty() && self.writing.is_empty() {
                    for (key, text) in backing.all(self.space)? {
                        visit(&key, &text);
                    }
                } else {
                    let mut found = BTreeMap::new();
                    for (key, text) in backing.all(self.space)? {
                        found.insert(key, self.decode(&text)?);
                    }
                    self.overlay_committing(&mut found, &[], &[u8::MAX; 9], false, false);
                    for (key, value) in found {
                        visit(&key, &encode_value(&value));
                    }
                }
            }
        }
        Ok(())
    }

    /// Entries held in memory (all of them without a backing; the uncommitted ones with).
    pub fn len_in_memory(&self) -> usize {
        self.entries.len()
    }
}

/// One generation of [`Recent`] entries, by encoded key.
type Generation<V> = HashMap<Vec<u8>, Option<V>>;

/// What the end of a commit took out of a projection's memory (generations of recent
/// entries), for the caller to free once it has let go of the projection's lock: freeing a
/// generation of thousands of rows takes milliseconds, and under the lock every request
/// waiting to read the model would wait for it too. Dropping it frees it.
#[derive(Default)]
pub struct Retired(Vec<Box<dyn Send>>);

impl Retired {
    fn push<T: Send + 'static>(&mut self, rows: T) {
        self.0.push(Box::new(rows));
    }

    /// Takes in what `other` holds.
    pub fn append(&mut self, mut other: Retired) {
        self.0.append(&mut other.0);
    }
}

/// The last entries committed, in two generations. New entries go into the younger; once it
/// holds half the capacity it becomes the older, and the older is dropped whole. So between
/// half the capacity and all of it is kept, the newest always, and no entry is ever removed
/// by itself: a removal per entry (a probe of a cold slot) took most of the file writer's time
/// after a write, under the model's lock.
struct Recent<V> {
    younger: Generation<V>,
    older: Generation<V>,
    /// Entries the younger generation takes before it turns older (0: nothing is kept).
    generation_len: usize,
}

impl<V> Recent<V> {
    fn new(capacity: usize) -> Recent<V> {
        Recent {
            younger: HashMap::new(),
            older: HashMap::new(),
            generation_len: capacity.div_ceil(2),
        }
    }

    fn get(&self, encoded: &[u8]) -> Option<&Option<V>> {
        self.younger
            .get(encoded)
            .or_else(|| self.older.get(encoded))
    }

    /// Keeps an entry; answers the older generation when this turned it out, for the caller
    /// to drop where it chooses.
    fn insert(&mut self, encoded: Vec<u8>, value: Option<V>) -> Option<Generation<V>> {
        if self.generation_len == 0 {
            return None;
        }
        self.younger.insert(encoded, value);
        if self.younger.len() < self.generation_len {
            return None;
        }
        let younger = HashMap::with_capacity(self.generation_len);
        let older = std::mem::replace(&mut self.younger, younger);
        Some(std::mem::replace(&mut self.older, older))
    }

    /// Entries held (a key in both generations counts twice).
    fn len(&self) -> usize {
        self.younger.len() + self.older.len()
    }
}

/// Lays the newer entries `over` onto `under`, the newer value winning. One insert per entry:
/// `BTreeMap::append` rebuilds the whole tree, which made staging grow with what was staged
/// before it.
fn lay_over<V>(under: &mut BTreeMap<Vec<u8>, Option<V>>, over: BTreeMap<Vec<u8>, Option<V>>) {
    if under.is_empty() {
        *under = over;
        return;
    }
    for (key, value) in over {
        under.insert(key, value);
    }
}

/// A table kept whole in memory and written through to the file (see the module). Reads go
/// through `Deref` to the map; changes through the methods here, which remember what to write.
pub struct Resident<K, V> {
    space: u16,
    backing: Option<Arc<Backing>>,
    map: HashMap<K, V>,
    changed: HashSet<K>,
    /// Keys staged since the last `drain_into`.
    committing: HashSet<K>,
    /// Keys of the commit being written (between `drain_into` and `finish_commit`).
    writing: HashSet<K>,
}

impl<K, V> Default for Resident<K, V> {
    fn default() -> Self {
        Resident {
            space: 0,
            backing: None,
            map: HashMap::new(),
            changed: HashSet::new(),
            committing: HashSet::new(),
            writing: HashSet::new(),
        }
    }
}

impl<K: std::fmt::Debug, V: std::fmt::Debug> std::fmt::Debug for Resident<K, V> {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.debug_map().entries(self.map.iter()).finish()
    }
}

impl<K, V> Deref for Resident<K, V> {
    type Target = HashMap<K, V>;

    fn deref(&self) -> &HashMap<K, V> {
        &self.map
    }
}

impl<K, V> Resident<K, V>
where
    K: Key + Hash + Eq + Clone + Serialize + DeserializeOwned,
    V: Serialize + DeserializeOwned,
{
    /// Keeps this map in `space` of `backing` and loads what the file holds there.
    pub fn attach(&mut self, backing: &Arc<Backing>, space: u16) -> Result<(), TableError> {
        assert!(self.map.is_empty() && self.backing.is_none());
        self.space = space;
        for (_, text) in backing.all(space)? {
            let (key, value): (K, V) =
                serde_json::from_str(&text).map_err(|error| backing.error(error))?;
            self.map.insert(key, value);
        }
        self.backing = Some(backing.clone());
        Ok(())
    }

    /// Replaces everything with `rows` (every row of this map's space, as another node
    /// committed them): a reader's refresh. Only on an attached map with nothing to write.
    pub fn reload(&mut self, rows: &[(Vec<u8>, String)]) -> Result<(), TableError> {
        let backing = self.backing.as_ref().expect("reloads an attached map");
        assert!(
            self.changed.is_empty() && self.committing.is_empty() && self.writing.is_empty(),
            "a reader changes nothing"
        );
        let mut map = HashMap::with_capacity(rows.len());
        for (_, text) in rows {
            let (key, value): (K, V) =
                serde_json::from_str(text).map_err(|error| backing.error(error))?;
            map.insert(key, value);
        }
        self.map = map;
        Ok(())
    }

    /// Sets `key` to `value`, returning the old value.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        self.changed.insert(key.clone());
        self.map.insert(key, value)
    }

    /// Removes `key`, returning its value.
    pub fn remove(&mut self, key: &K) -> Option<V> {
        let removed = self.map.remove(key);
        if removed.is_some() {
            self.changed.insert(key.clone());
        }
        removed
    }

    /// The value at `key` to change in place.
    pub fn get_mut(&mut self, key: &K) -> Option<&mut V> {
        let value = self.map.get_mut(key)?;
        self.changed.insert(key.clone());
        Some(value)
    }

    /// The value at `key`, inserting the default first if there is none.
    pub fn get_or_default(&mut self, key: &K) -> &mut V
    where
        V: Default,
    {
        self.changed.insert(key.clone());
        self.map.entry(key.clone()).or_default()
    }

    /// Keeps only the entries `keep` says yes to.
    pub fn retain(&mut self, mut keep: impl FnMut(&K, &V) -> bool) {
        let changed = &mut self.changed;
        self.map.retain(|key, value| {
            let kept = keep(key, value);
            if !kept {
                changed.insert(key.clone());
            }
            kept
        });
    }

    /// Moves the changes since the last commit into `writes`.
    pub fn drain_into(&mut self, writes: &mut Vec<Write>) {
        if self.backing.is_none() {
            self.changed.clear();
            return;
        }
        // Keys staged or of a commit still being written are written again, as
        // `Map::drain_into` does: if that commit is the one dropped (overtaken), this one
        // carries its changes.
        self.stage();
        self.writing.extend(self.committing.drain());
        for key in &self.writing {
            let value = self
                .map
                .get(key)
                .map(|value| RowValue::Encoded(encode_value(&(key, value))));
            writes.push((self.space, key.encoded(), value));
        }
    }

    /// Remembers the keys changed since the last commit for the next [`Resident::drain_into`]
    /// (see [`Map::stage`]; the values are read at the write).
    pub fn stage(&mut self) {
        if self.backing.is_none() {
            self.changed.clear();
            return;
        }
        self.committing.extend(self.changed.drain());
    }

    /// The commit holding what `drain_into` took is in the file (or was dropped for a later
    /// one that holds it too).
    pub fn finish_commit(&mut self) {
        self.writing.clear();
    }

    /// Feeds every entry (encoded key and JSON of `[key, value]`, in key order) to `visit`:
    /// the same text a backed map holds.
    pub fn visit_all(&self, visit: &mut dyn FnMut(&[u8], &str)) {
        let mut entries: Vec<(Vec<u8>, &K, &V)> = self
            .map
            .iter()
            .map(|(key, value)| (key.encoded(), key, value))
            .collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        for (encoded, key, value) in entries {
            visit(&encoded, &encode_value(&(key, value)));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A checkpoint of a test projection at `position`.
    fn test_checkpoint(position: u64) -> Checkpoint {
        Checkpoint {
            name: "t".into(),
            version: 1,
            position,
            hash_at_position: String::new(),
            scalars: "{}".into(),
        }
    }

    /// The recent entries keep at least the newest half of their capacity and never more than
    /// all of it; a key written again reads its newest value; capacity 0 keeps nothing. The
    /// generation an insert turns out is handed back (to be freed outside the model's lock),
    /// and none of its entries is read any more.
    #[test]
    fn recent_entries_keep_the_newest_and_stay_within_capacity() {
        let key = |n: u64| n.to_be_bytes().to_vec();
        let mut recent: Recent<u64> = Recent::new(8);
        let mut turned_out = Vec::new();
        for n in 0..100u64 {
            if let Some(generation) = recent.insert(key(n), Some(n)) {
                for gone in generation.keys() {
                    assert_eq!(recent.get(gone), None, "turned out at {n}");
                }
                turned_out.push((n, generation.len()));
            }
            assert!(recent.len() <= 8, "{} entries after {n}", recent.len());
            for kept in n.saturating_sub(3)..=n {
                assert_eq!(recent.get(&key(kept)), Some(&Some(kept)));
            }
        }
        // A generation of 4 turns out at every fourth insert; the first turns out nothing.
        let expected: Vec<(u64, usize)> = (0..25u64)
            .map(|i| (4 * i + 3, if i == 0 { 0 } else { 4 }))
            .collect();
        assert_eq!(turned_out, expected);
        assert_eq!(recent.get(&key(0)), None);
        assert_eq!(recent.get(&key(91)), None);
        recent.insert(key(99), None);
        assert_eq!(recent.get(&key(99)), Some(&None));
        let mut nothing: Recent<u64> = Recent::new(0);
        assert!(nothing.insert(key(1), Some(1)).is_none());
        assert_eq!(nothing.get(&key(1)), None);
    }

    /// A caller's string holding a NUL is no stored key: a lookup finds nothing (and never
    /// encodes it: the NUL would end the string early and could name another row).
    #[test]
    fn a_key_holding_a_nul_finds_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let backing = Backing::open(&dir.path().join("model.sqlite")).unwrap();
        let mut ids: Map<str, u64> = Map::default();
        ids.attach(&backing, 1, 0);
        ids.insert("a", 1);
        let mut pairs: Map<(String, String), u64> = Map::default();
        pairs.attach(&backing, 2, 0);
        pairs.insert(&("a".to_owned(), "b".to_owned()), 2);
        let mut writes = Vec::new();
        ids.drain_into(&mut writes);
        pairs.drain_into(&mut writes);
        backing.commit(&writes, &test_checkpoint(1)).unwrap();
        ids.finish_commit();
        pairs.finish_commit();
        assert_eq!(ids.try_get("a").unwrap(), Some(1));
        assert_eq!(ids.try_get("a\0").unwrap(), None);
        assert_eq!(ids.try_get("\0").unwrap(), None);
        assert_eq!(pairs.try_get(&("a".into(), "b".into())).unwrap(), Some(2));
        // A NUL in any part of a tuple makes the whole key one that is never stored.
        assert_eq!(pairs.try_get(&("a\0".into(), "b".into())).unwrap(), None);
        assert!(!("a".to_owned(), "b\0".to_owned()).encodable());
    }

    /// Range reads are prepared once per connection (no `LIMIT ?`, whose bound value SQLite
    /// plans with, compiling the statement again at every run).
    #[test]
    fn range_reads_are_not_prepared_again_at_every_run() {
        let dir = tempfile::tempdir().unwrap();
        let backing = Backing::open(&dir.path().join("model.sqlite")).unwrap();
        let mut map: Map<u64, String> = Map::default();
        map.attach(&backing, 1, 0);
        for key in 0..50u64 {
            map.insert(&key, format!("v{key}"));
        }
        let mut writes = Vec::new();
        map.drain_into(&mut writes);
        let checkpoint = test_checkpoint(1);
        backing.commit(&writes, &checkpoint).unwrap();
        map.finish_commit();
        for limit in 1..=10usize {
            assert_eq!(map.first(limit).unwrap().len(), limit);
            assert_eq!(
                map.range_desc(&[], &[u8::MAX; 9], limit)
                    .unwrap()
                    .entries
                    .len(),
                limit
            );
        }
        let Engine::Sqlite { readers, .. } = &backing.engine else {
            unreachable!("a file")
        };
        let readers = readers.lock().unwrap();
        let mut n_runs = 0;
        for connection in readers.iter() {
            for sql in [
                "SELECT key, value FROM rows WHERE space = ?1 AND key >= ?2 AND key < ?3
                 ORDER BY key",
                "SELECT key, value FROM rows WHERE space = ?1 AND key >= ?2 AND key < ?3
                 ORDER BY key DESC",
            ] {
                let statement = connection.prepare_cached(sql).unwrap();
                n_runs += statement.get_status(rusqlite::StatementStatus::Run);
                assert_eq!(
                    statement.get_status(rusqlite::StatementStatus::RePrepare),
                    0
                );
            }
        }
        assert_eq!(n_runs, 20);
    }

    #[test]
    fn keys_sort_as_their_values() {
        let early = DateTime::from_timestamp(-5, 0).unwrap();
        let late = DateTime::from_timestamp(1_700_000_000, 7_000).unwrap();
        assert!(early.encoded() < late.encoded());
        assert!(3u64.encoded() < 256u64.encoded());
        assert!(("a".to_owned(), 9u64).encoded() < ("ab".to_owned(), 1u64).encoded());
        let prefix = "app".to_owned().encoded();
        let end = prefix_end(&prefix);
        assert!(("app".to_owned(), u64::MAX).encoded() < end);
        assert!(("app2".to_owned(), 0u64).encoded() >= end);
    }

    /// A map (space 1, keeping `recent` committed entries in memory) and a resident table
    /// (space 2) on a new file, with the directory that holds it.
    fn backed_tables(
        recent: usize,
    ) -> (
        tempfile::TempDir,
        Arc<Backing>,
        Map<u64, String>,
        Resident<String, u32>,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let backing = Backing::open(&dir.path().join("model.sqlite")).unwrap();
        let mut map: Map<u64, String> = Map::default();
        map.attach(&backing, 1, recent);
        let mut resident: Resident<String, u32> = Resident::default();
        resident.attach(&backing, 2).unwrap();
        (dir, backing, map, resident)
    }

    /// The values of `space`'s rows in the file, in key order.
    fn row_values(backing: &Backing, space: u16) -> Vec<String> {
        let rows = backing.all(space).unwrap();
        rows.into_iter().map(|(_, text)| text).collect()
    }

    #[test]
    fn a_backed_map_reads_back_what_it_committed() {
        let (_dir, backing, mut map, mut resident) = backed_tables(1);
        map.insert(&1, "one".into());
        map.insert(&2, "two".into());
        *resident.get_or_default(&"x".to_owned()) += 4;
        assert_eq!(
            map.get(&2).as_deref(),
            Some("two"),
            "uncommitted reads see changes"
        );
        let mut writes = Vec::new();
        map.drain_into(&mut writes);
        resident.drain_into(&mut writes);
        let checkpoint = test_checkpoint(2);
        backing.commit(&writes, &checkpoint).unwrap();
        assert_eq!(map.len_in_memory(), 0);
        assert_eq!(
            map.first(10).unwrap(),
            vec!["one".to_owned(), "two".to_owned()]
        );
        assert_eq!(map.remove(&1).as_deref(), Some("one"));
        assert_eq!(map.get(&1), None);
        drop((map, resident));
        let mut reopened: Resident<String, u32> = Resident::default();
        reopened.attach(&backing, 2).unwrap();
        assert_eq!(reopened.get("x"), Some(&4));
        assert_eq!(backing.checkpoint().unwrap(), Some(checkpoint));
    }

    /// A commit hands the file's writer the values the map keeps readable, shared, not
    /// copied: a value the fold changes after handing it over is changed in a copy, so the
    /// write carries the value as it was handed over, and reads see the new one.
    #[test]
    fn a_value_changed_after_it_was_handed_to_the_writer_is_changed_in_a_copy() {
        let (_dir, backing, mut map, _resident) = backed_tables(4);
        map.insert(&1, "handed over".into());
        let mut writes = Vec::new();
        map.drain_into(&mut writes);

        map.get_mut(&1)
            .expect("in memory")
            .push_str(", then changed");
        assert_eq!(map.get(&1).as_deref(), Some("handed over, then changed"));
        let handed: Vec<String> = writes
            .iter()
            .map(|(_, _, value)| value.as_ref().expect("a value").encode().into_owned())
            .collect();
        assert_eq!(handed, vec!["\"handed over\"".to_owned()]);

        backing.commit(&writes, &test_checkpoint(1)).unwrap();
        drop(map.finish_commit());
        assert_eq!(map.get(&1).as_deref(), Some("handed over, then changed"));
        map.stage();
        let mut next = Vec::new();
        map.drain_into(&mut next);
        backing.commit(&next, &test_checkpoint(2)).unwrap();
        let rows = row_values(&backing, 1);
        assert_eq!(rows, vec!["\"handed over, then changed\"".to_owned()]);
    }

    /// Batches staged one after another read as committed, ranges included, before any of
    /// them is written; one write then carries them all, the newest value of a key winning.
    #[test]
    fn staged_batches_read_as_committed_and_one_write_carries_them_all() {
        let (_dir, backing, mut map, mut resident) = backed_tables(0);

        map.insert(&1, "one".into());
        map.insert(&3, "three".into());
        *resident.get_or_default(&"x".to_owned()) += 1;
        map.stage();
        resident.stage();
        assert_eq!(map.len_in_memory(), 0, "staging empties the changes");
        assert_eq!(
            map.first(10).unwrap(),
            vec!["one".to_owned(), "three".to_owned()]
        );

        // A second batch: a key between, one changed, one removed.
        map.insert(&2, "two".into());
        map.insert(&3, "THREE".into());
        map.delete(&1);
        *resident.get_or_default(&"x".to_owned()) += 1;
        map.stage();
        resident.stage();
        assert_eq!(
            map.first(10).unwrap(),
            vec!["two".to_owned(), "THREE".to_owned()]
        );
        let newest = map.range_desc(&[], &[u8::MAX; 9], 1).unwrap();
        assert_eq!(newest.entries.len(), 1, "a step holds at most its limit");
        assert_eq!(newest.entries[0].1, "THREE");
        let below = newest.resume_below.expect("a row remains below");
        let next = map.range_desc(&[], &below, 1).unwrap();
        assert_eq!(next.entries.len(), 1);
        assert_eq!(next.entries[0].1, "two");
        assert_eq!(map.get(&1), None);
        assert!(backing.all(1).unwrap().is_empty(), "nothing is written yet");

        let mut writes = Vec::new();
        map.drain_into(&mut writes);
        resident.drain_into(&mut writes);
        let checkpoint = test_checkpoint(2);
        backing.commit(&writes, &checkpoint).unwrap();
        map.finish_commit();
        resident.finish_commit();
        let rows = row_values(&backing, 1);
        assert_eq!(
            rows,
            vec![
                encode_value(&"two".to_owned()),
                encode_value(&"THREE".to_owned())
            ]
        );
        assert_eq!(
            map.first(10).unwrap(),
            vec!["two".to_owned(), "THREE".to_owned()]
        );
        drop((map, resident));
        let mut reopened: Resident<String, u32> = Resident::default();
        reopened.attach(&backing, 2).unwrap();
        assert_eq!(reopened.get("x"), Some(&2));
    }

    /// A commit being written on the follower's writer thread while the fold stages more: both
    /// read as committed (point reads and ranges, the newer value first), the end of the write
    /// keeps what was staged meanwhile, and the next write carries it.
    #[test]
    fn rows_staged_while_a_commit_is_written_stay_readable_and_go_in_the_next() {
        let (_dir, backing, mut map, mut resident) = backed_tables(0);

        map.insert(&1, "one".into());
        map.insert(&2, "two".into());
        *resident.get_or_default(&"x".to_owned()) += 1;
        let mut first = Vec::new();
        map.drain_into(&mut first);
        resident.drain_into(&mut first);
        assert_eq!(first.len(), 3);

        // Staged while the first commit is under way: one key changed, one removed, one new.
        map.insert(&2, "TWO".into());
        map.delete(&1);
        map.insert(&3, "three".into());
        *resident.get_or_default(&"y".to_owned()) += 1;
        map.stage();
        resident.stage();
        backing.commit(&first, &test_checkpoint(1)).unwrap();
        assert_eq!(map.get(&1), None);
        assert_eq!(map.get(&2).as_deref(), Some("TWO"));
        assert_eq!(
            map.first(10).unwrap(),
            vec!["TWO".to_owned(), "three".to_owned()]
        );

        map.finish_commit();
        resident.finish_commit();
        assert_eq!(
            map.get(&1),
            None,
            "the removal staged meanwhile still holds"
        );
        assert_eq!(
            map.first(10).unwrap(),
            vec!["TWO".to_owned(), "three".to_owned()]
        );
        let mut second = Vec::new();
        map.drain_into(&mut second);
        resident.drain_into(&mut second);
        let keys: Vec<(u16, Vec<u8>, bool)> = second
            .iter()
            .map(|(space, key, value)| (*space, key.clone(), value.is_some()))
            .collect();
        assert_eq!(
            keys,
            vec![
                (1, 1u64.encoded(), false),
                (1, 2u64.encoded(), true),
                (1, 3u64.encoded(), true),
                (2, "y".to_owned().encoded(), true),
            ],
            "the second write carries what was staged during the first, and only that"
        );
        backing.commit(&second, &test_checkpoint(2)).unwrap();
        map.finish_commit();
        resident.finish_commit();
        drop((map, resident));
        let mut reopened: Map<u64, String> = Map::default();
        reopened.attach(&backing, 1, 0);
        assert_eq!(
            reopened.first(10).unwrap(),
            vec!["TWO".to_owned(), "three".to_owned()]
        );
        let mut resident: Resident<String, u32> = Resident::default();
        resident.attach(&backing, 2).unwrap();
        assert_eq!((resident.get("x"), resident.get("y")), (Some(&1), Some(&1)));
    }
}
