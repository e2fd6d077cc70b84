//! A projection's rows in PostgreSQL: what nodes sharing one database read, instead of a
//! file each.
//!
//! Three tables per projection and generation, in the store's schema, prefixed
//! `rm_{projection}_g{generation}_`:
//! - `rows (space, key, value)`: the same rows a SQLite file holds;
//! - `checkpoint`: one row, the position the rows are at;
//! - `spaces (space, position)`: the last position that changed each space, so a node that
//!   only reads ([`crate::shared`]) reloads the tables it keeps in memory only when they moved.
//!
//! `rm_live (projection, generation)` names each projection's live generation. An online
//! rebuild folds into a new generation while the live one answers, then moves the pointer in
//! one transaction ([`PgTables::make_live`]) and drops the old generation's tables; nodes
//! notice the move at their next look at the checkpoint and open the new one.
//!
//! **One writer at a time, fenced.** A commit moves the checkpoint by compare-and-set from the
//! position this process last wrote or read at open: if another node wrote meanwhile (it took
//! over the projection), the commit rolls back whole and the backing says it was fenced, so a
//! node that lost its lease can never write over its successor's rows.
//!
//! The `postgres` client runs a runtime of its own and blocks; called from a task of a
//! multi-threaded runtime, each call first moves the task's other work off the thread
//! (`block_in_place`).

use std::collections::HashMap;
use std::sync::Mutex;

use postgres::{Client, Statement};

use super::{Checkpoint, Write};

/// Read connections per projection and node at most; more concurrent reads wait for one.
/// Every connection is a server process, and PostgreSQL's own limit (100 by default) is shared
/// by every node's store and projections.
const MAX_READERS: usize = 8;

/// The rows of one projection in PostgreSQL.
pub struct PgTables {
    connect: paycenter_store::pg_tls::PgConnect,
    schema: String,
    projection: String,
    generation: i64,
    /// `schema.rm_{projection}_g{generation}_`.
    prefix: String,
    writer: Mutex<Option<Pooled>>,
    readers: paycenter_store::pg_tls::BoundedPool<Pooled>,
}

impl Drop for PgTables {
    fn drop(&mut self) {
        let writer = self
            .writer
            .get_mut()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .take();
        paycenter_store::pg_tls::drop_blocking_clients((writer, self.readers.take_idle()));
    }
}

/// A connection with its statements prepared.
struct Pooled {
    client: Client,
    get: Statement,
    range_ascending: Statement,
    range_descending: Statement,
}

/// A connection listening for a projection's commits ([`PgTables::listen`]).
pub struct Listener {
    client: Client,
}

impl Listener {
    /// Waits up to `timeout` for a commit; `true` when one (or more: all waiting are taken)
    /// was heard.
    pub fn wait(&mut self, timeout: std::time::Duration) -> Result<bool, String> {
        use postgres::fallible_iterator::FallibleIterator as _;
        off_runtime(|| {
            let mut notifications = self.client.notifications();
            let heard = notifications
                .timeout_iter(timeout)
                .next()
                .map_err(|error| describe(&error))?
                .is_some();
            while notifications
                .iter()
                .next()
                .map_err(|error| describe(&error))?
                .is_some()
            {}
            Ok(heard)
        })
    }
}

/// What a commit found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// Written, checkpoint moved.
    Written,
    /// The checkpoint was not where this process left it: another node writes now. Nothing
    /// was written.
    Fenced,
}

/// What changed in the tables since a position.
#[derive(Debug, Clone)]
pub enum Change {
    /// Nothing: the checkpoint is still there.
    None,
    /// The checkpoint moved.
    Moved(Moved),
    /// Another generation is live (a rebuild was swapped in): these tables are no longer
    /// the projection's.
    Regenerated,
}

/// The checkpoint and the spaces changed after a position, read in one transaction.
#[derive(Debug, Clone)]
pub struct Moved {
    /// The checkpoint as committed.
    pub checkpoint: Checkpoint,
    /// Spaces changed by commits after the position asked about.
    pub changed_spaces: Vec<u16>,
}

/// Runs `work`, which blocks on PostgreSQL, without stalling a runtime's other tasks.
pub fn off_runtime<T>(work: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(handle) if handle.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(work)
        }
        _ => work(),
    }
}

impl PgTables {
    /// Connects to `url` and opens the live generation of `projection`'s tables in `schema`
    /// (`new_generation`: a new one, for a rebuild, emptied if a crashed rebuild left it),
    /// creating the tables if needed.
    pub fn open(
        url: &str,
        schema: &str,
        projection: &str,
        new_generation: bool,
    ) -> Result<PgTables, String> {
        if !paycenter_store::postgres::valid_schema(schema) {
            return Err(format!(
                "schema name {schema:?} must be 1 to 48 of [a-z0-9_]"
            ));
        }
        assert!(
            projection
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte == b'_'),
            "projection names are identifiers"
        );
        let connect =
            paycenter_store::pg_tls::PgConnect::parse(url).map_err(|error| error.to_string())?;
        off_runtime(|| {
            let mut client = paycenter_store::pg_tls::connect_blocking(&connect)
                .map_err(|error| describe(&error))?;
            // Nodes starting together create the tables once: DDL under one advisory lock.
            let mut transaction = client.transaction().map_err(|error| describe(&error))?;
            transaction
                .batch_execute(&format!(
                    "SELECT pg_advisory_xact_lock(hashtext('{schema}.rm_live'));
                     CREATE SCHEMA IF NOT EXISTS {schema};
                     CREATE TABLE IF NOT EXISTS {schema}.rm_live (
                         projection TEXT PRIMARY KEY,
                         generation BIGINT NOT NULL
                     );
                     INSERT INTO {schema}.rm_live (projection, generation) VALUES ('{projection}', 0)
                         ON CONFLICT (projection) DO NOTHING;"
                ))
                .map_err(|error| describe(&error))?;
            let live: i64 = transaction
                .query_one(
                    &format!("SELECT generation FROM {schema}.rm_live WHERE projection = $1"),
                    &[&projection],
                )
                .map_err(|error| describe(&error))?
                .get(0);
            let generation = if new_generation {
                // Past every generation a crashed rebuild may have left too.
                let newest: i64 = transaction
                    .query_one(
                        "SELECT COALESCE(MAX(substring(tablename from '_g([0-9]+)_checkpoint$')::BIGINT), 0)
                         FROM pg_tables WHERE schemaname = $1 AND tablename LIKE $2",
                        &[&schema, &format!("rm_{projection}_g%_checkpoint")],
                    )
                    .map_err(|error| describe(&error))?
                    .get(0);
                newest.max(live) + 1
            } else {
                live
            };
            let tables = PgTables {
                connect: connect.clone(),
                schema: schema.to_owned(),
                projection: projection.to_owned(),
                generation,
                prefix: format!("{schema}.rm_{projection}_g{generation}_"),
                writer: Mutex::new(None),
                readers: paycenter_store::pg_tls::BoundedPool::new(MAX_READERS),
            };
            let prefix = &tables.prefix;
            transaction
                .batch_execute(&format!(
                    "CREATE TABLE IF NOT EXISTS {prefix}rows (
                         space SMALLINT NOT NULL,
                         key BYTEA NOT NULL,
                         value TEXT NOT NULL,
                         PRIMARY KEY (space, key)
                     );
                     CREATE TABLE IF NOT EXISTS {prefix}checkpoint (
                         id INTEGER PRIMARY KEY CHECK (id = 1),
                         name TEXT NOT NULL,
                         version INTEGER NOT NULL,
                         position BIGINT NOT NULL,
                         hash_at_position TEXT NOT NULL,
                         scalars TEXT NOT NULL,
                         stopped TEXT
                     );
                     CREATE TABLE IF NOT EXISTS {prefix}spaces (
                         space SMALLINT PRIMARY KEY,
                         position BIGINT NOT NULL
                     );"
                ))
                .map_err(|error| describe(&error))?;
            transaction.commit().map_err(|error| describe(&error))?;
            let pooled = tables.prepare(client).map_err(|error| describe(&error))?;
            *tables
                .writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner()) = Some(pooled);
            Ok(tables)
        })
    }

    /// Records where the writer's fold stopped (JSON), for the readers to say so too.
    pub fn record_stop(&self, stopped: &str) -> Result<(), String> {
        let prefix = self.prefix.clone();
        self.with_reader(|pooled| {
            pooled.client.execute(
                &format!("UPDATE {prefix}checkpoint SET stopped = $1"),
                &[&stopped],
            )?;
            Ok(())
        })
    }

    /// Where the writer's fold stopped (JSON), if it recorded a stop.
    pub fn writer_stop(&self) -> Result<Option<String>, String> {
        let prefix = self.prefix.clone();
        self.with_reader(|pooled| {
            Ok(pooled
                .client
                .query_opt(&format!("SELECT stopped FROM {prefix}checkpoint"), &[])?
                .and_then(|row| row.get(0)))
        })
    }

    /// The channel the writer's commits are announced on (PostgreSQL's names stop at 63
    /// bytes; schema and projection names are ASCII).
    fn channel(&self) -> String {
        let mut channel = format!("{}_rm_{}", self.schema, self.projection);
        channel.truncate(63);
        channel
    }

    /// A connection that hears this projection's commits (every generation's).
    pub fn listen(&self) -> Result<Listener, String> {
        off_runtime(|| {
            let mut client = paycenter_store::pg_tls::connect_blocking(&self.connect)
                .map_err(|error| describe(&error))?;
            client
                .batch_execute(&format!("LISTEN {}", self.channel()))
                .map_err(|error| describe(&error))?;
            Ok(Listener { client })
        })
    }

    /// The generation these tables are.
    pub fn generation(&self) -> i64 {
        self.generation
    }

    /// The live generation, as the pointer names it now.
    pub fn live_generation(&self) -> Result<i64, String> {
        let (schema, projection) = (self.schema.clone(), self.projection.clone());
        self.with_reader(|pooled| {
            Ok(pooled
                .client
                .query_one(
                    &format!("SELECT generation FROM {schema}.rm_live WHERE projection = $1"),
                    &[&projection],
                )?
                .get(0))
        })
    }

    /// Makes these tables the live generation, in place of `live` (whose checkpoint must
    /// still be at `live_position`: a writer that took over meanwhile wins, and this fails).
    pub fn make_live(&self, live: &PgTables, live_position: u64) -> Result<(), String> {
        let (schema, projection) = (&self.schema, &self.projection);
        off_runtime(|| {
            let mut client = paycenter_store::pg_tls::connect_blocking(&self.connect)
                .map_err(|error| describe(&error))?;
            let mut swap = || -> Result<bool, postgres::Error> {
                let mut transaction = client.transaction()?;
                let live_checkpoint = transaction.query_opt(
                    &format!("SELECT position FROM {}checkpoint FOR UPDATE", live.prefix),
                    &[],
                )?;
                let at: i64 = live_checkpoint.map_or(0, |row| row.get(0));
                if at != position_number(live_position) {
                    return Ok(false);
                }
                let moved = transaction.execute(
                    &format!(
                        "UPDATE {schema}.rm_live SET generation = $1
                         WHERE projection = $2 AND generation = $3"
                    ),
                    &[&self.generation, &projection, &live.generation],
                )?;
                if moved != 1 {
                    return Ok(false);
                }
                // Readers hear the move at the commit and open the new generation at once.
                transaction.execute("SELECT pg_notify($1, '')", &[&self.channel()])?;
                transaction.commit()?;
                Ok(true)
            };
            if !swap().map_err(|error| describe(&error))? {
                return Err(format!(
                    "generation {} of {projection} moved on while it was rebuilt (another node took it over)",
                    live.generation
                ));
            }
            Ok(())
        })
    }

    /// Makes these tables the live generation, whatever generation is live now and wherever
    /// its checkpoint is: an offline rebuild's. A node writing the old generation notices
    /// within a lease round and folds on from these tables' checkpoint.
    pub fn make_live_over_any(&self) -> Result<(), String> {
        let (schema, projection) = (self.schema.clone(), self.projection.clone());
        let (generation, channel) = (self.generation, self.channel());
        self.with_reader(|pooled| {
            let mut transaction = pooled.client.transaction()?;
            transaction.execute(
                &format!("UPDATE {schema}.rm_live SET generation = $1 WHERE projection = $2"),
                &[&generation, &projection],
            )?;
            // Readers hear the move at the commit and open the new generation at once.
            transaction.execute("SELECT pg_notify($1, '')", &[&channel])?;
            transaction.commit()
        })
    }

    /// Drops the tables of every generation but this one (once this one is live).
    pub fn drop_other_generations(&self) -> Result<(), String> {
        let (schema, projection) = (&self.schema, &self.projection);
        off_runtime(|| {
            let mut client = paycenter_store::pg_tls::connect_blocking(&self.connect)
                .map_err(|error| describe(&error))?;
            // The old generation goes (its readers wait for the drop's lock, then find the
            // pointer moved), with any a crashed rebuild left.
            let others: Vec<String> = client
                .query(
                    "SELECT tablename FROM pg_tables WHERE schemaname = $1 AND tablename LIKE $2",
                    &[schema, &format!("rm_{projection}_g%")],
                )
                .map_err(|error| describe(&error))?
                .iter()
                .map(|row| row.get::<_, String>(0))
                .filter(|table| {
                    !table.starts_with(&format!("rm_{projection}_g{}_", self.generation))
                })
                .collect();
            for table in others {
                if let Err(error) =
                    client.batch_execute(&format!("DROP TABLE IF EXISTS {schema}.{table}"))
                {
                    tracing::warn!(%error, table, "an old generation's table could not be dropped");
                }
            }
            Ok(())
        })
    }

    /// Drops these tables (a rebuild that failed).
    pub fn drop_tables(&self) -> Result<(), String> {
        let prefix = self.prefix.clone();
        self.with_reader(|pooled| {
            pooled.client.batch_execute(&format!(
                "DROP TABLE IF EXISTS {prefix}rows, {prefix}checkpoint, {prefix}spaces"
            ))
        })
    }

    /// What errors name: `postgresql:schema.rm_{projection}_g{generation}_`.
    pub fn label(&self) -> String {
        format!("postgresql:{}", self.prefix)
    }

    fn prepare(&self, mut client: Client) -> Result<Pooled, postgres::Error> {
        let prefix = &self.prefix;
        let get = client.prepare(&format!(
            "SELECT value FROM {prefix}rows WHERE space = $1 AND key = $2"
        ))?;
        let range_ascending = client.prepare(&format!(
            "SELECT key, value FROM {prefix}rows WHERE space = $1 AND key >= $2 AND key < $3
             ORDER BY key LIMIT $4"
        ))?;
        let range_descending = client.prepare(&format!(
            "SELECT key, value FROM {prefix}rows WHERE space = $1 AND key >= $2 AND key < $3
             ORDER BY key DESC LIMIT $4"
        ))?;
        Ok(Pooled {
            client,
            get,
            range_ascending,
            range_descending,
        })
    }

    /// Runs `read` on a pooled read connection (at most `MAX_READERS`; a broken one is not
    /// pooled again).
    fn with_reader<T>(
        &self,
        read: impl FnOnce(&mut Pooled) -> Result<T, postgres::Error>,
    ) -> Result<T, String> {
        off_runtime(|| {
            self.readers
                .with(
                    || {
                        paycenter_store::pg_tls::connect_blocking(&self.connect)
                            .and_then(|client| self.prepare(client))
                    },
                    |pooled| pooled.client.is_closed(),
                    read,
                )
                .map_err(|error| describe(&error))
        })
    }

    /// The value of `key` in `space`.
    pub fn get(&self, space: u16, key: &[u8]) -> Result<Option<String>, String> {
        self.with_reader(|pooled| {
            let row = pooled
                .client
                .query_opt(&pooled.get, &[&space_number(space), &key])?;
            Ok(row.map(|row| row.get(0)))
        })
    }

    /// Rows of `space` with `start <= key < end`, in key order (greatest first when
    /// `descending`), at most `limit`.
    pub fn range(
        &self,
        space: u16,
        start: &[u8],
        end: &[u8],
        limit: usize,
        descending: bool,
    ) -> Result<Vec<(Vec<u8>, String)>, String> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.with_reader(|pooled| {
            let statement = if descending {
                &pooled.range_descending
            } else {
                &pooled.range_ascending
            };
            let rows = pooled
                .client
                .query(statement, &[&space_number(space), &start, &end, &limit])?;
            Ok(rows.iter().map(|row| (row.get(0), row.get(1))).collect())
        })
    }

    /// The checkpoint, then every row of `spaces`, in one repeatable-read transaction (see
    /// `Backing::read_snapshot`).
    pub fn read_snapshot(
        &self,
        spaces: &[u16],
        on_checkpoint: &mut dyn FnMut(Option<&Checkpoint>),
        visit: &mut dyn FnMut(usize, &[u8], &str),
    ) -> Result<Option<Checkpoint>, String> {
        let prefix = &self.prefix;
        off_runtime(|| {
            let mut client = paycenter_store::pg_tls::connect_blocking(&self.connect)
                .map_err(|error| describe(&error))?;
            let mut read = || -> Result<Option<Checkpoint>, postgres::Error> {
                let mut transaction = client
                    .build_transaction()
                    .isolation_level(postgres::IsolationLevel::RepeatableRead)
                    .read_only(true)
                    .start()?;
                let checkpoint = read_checkpoint(&mut transaction, prefix)?;
                on_checkpoint(checkpoint.as_ref());
                let statement = transaction.prepare(&format!(
                    "SELECT key, value FROM {prefix}rows WHERE space = $1 ORDER BY key"
                ))?;
                for (index, space) in spaces.iter().enumerate() {
                    let space = space_number(*space);
                    let params: [&(dyn postgres::types::ToSql + Sync); 1] = [&space];
                    let mut rows = transaction.query_raw(&statement, params)?;
                    while let Some(row) =
                        postgres::fallible_iterator::FallibleIterator::next(&mut rows)?
                    {
                        let key: &[u8] = row.get(0);
                        let value: &str = row.get(1);
                        visit(index, key, value);
                    }
                }
                transaction.commit()?;
                Ok(checkpoint)
            };
            read().map_err(|error| describe(&error))
        })
    }

    /// The checkpoint, if one was written.
    pub fn checkpoint(&self) -> Result<Option<Checkpoint>, String> {
        let prefix = self.prefix.clone();
        self.with_reader(|pooled| {
            let mut transaction = pooled.client.transaction()?;
            let checkpoint = read_checkpoint(&mut transaction, &prefix)?;
            transaction.commit()?;
            Ok(checkpoint)
        })
    }

    /// What changed since `after_position`: the live generation, then the checkpoint and
    /// the spaces changed after it, in one transaction.
    pub fn moved_since(&self, after_position: u64) -> Result<Change, String> {
        let (prefix, schema, projection) = (
            self.prefix.clone(),
            self.schema.clone(),
            self.projection.clone(),
        );
        self.with_reader(|pooled| {
            let mut transaction = pooled
                .client
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let live: Option<i64> = transaction
                .query_opt(
                    &format!("SELECT generation FROM {schema}.rm_live WHERE projection = $1"),
                    &[&projection],
                )?
                .map(|row| row.get(0));
            if live != Some(self.generation) {
                transaction.commit()?;
                return Ok(Change::Regenerated);
            }
            let Some(checkpoint) = read_checkpoint(&mut transaction, &prefix)? else {
                transaction.commit()?;
                return Ok(Change::None);
            };
            if checkpoint.position == after_position {
                transaction.commit()?;
                return Ok(Change::None);
            }
            let changed_spaces = transaction
                .query(
                    &format!("SELECT space FROM {prefix}spaces WHERE position > $1"),
                    &[&position_number(after_position)],
                )?
                .iter()
                .map(|row| row.get::<_, i16>(0) as u16)
                .collect();
            transaction.commit()?;
            Ok(Change::Moved(Moved {
                checkpoint,
                changed_spaces,
            }))
        })
    }

    /// Writes `writes` and moves the checkpoint from `from_position` to `checkpoint`, in one
    /// transaction, or nothing when the checkpoint is not at `from_position` any more.
    pub fn commit(
        &self,
        writes: &[Write],
        checkpoint: &Checkpoint,
        from_position: u64,
    ) -> Result<Committed, String> {
        let prefix = &self.prefix;
        // The last write of each row wins (a batch may carry a row twice: see
        // `Map::drain_into`).
        let mut last: HashMap<(u16, &[u8]), Option<&super::RowValue>> =
            HashMap::with_capacity(writes.len());
        for (space, key, value) in writes {
            last.insert((*space, key.as_slice()), value.as_ref());
        }
        let (mut upsert_spaces, mut upsert_keys, mut upsert_values) =
            (Vec::new(), Vec::new(), Vec::new());
        let (mut delete_spaces, mut delete_keys) = (Vec::new(), Vec::new());
        let mut spaces: Vec<i16> = Vec::new();
        for ((space, key), value) in last {
            let space = space_number(space);
            spaces.push(space);
            match value {
                Some(value) => {
                    upsert_spaces.push(space);
                    upsert_keys.push(key);
                    // Encoded here, once per row that is written.
                    upsert_values.push(value.encode());
                }
                None => {
                    delete_spaces.push(space);
                    delete_keys.push(key);
                }
            }
        }
        spaces.sort_unstable();
        spaces.dedup();
        let upsert_values: Vec<&str> = upsert_values.iter().map(|text| text.as_ref()).collect();
        off_runtime(|| {
            let mut writer = self
                .writer
                .lock()
                .unwrap_or_else(|poisoned| poisoned.into_inner());
            if writer
                .as_ref()
                .is_none_or(|pooled| pooled.client.is_closed())
            {
                let client = paycenter_store::pg_tls::connect_blocking(&self.connect)
                    .map_err(|error| describe(&error))?;
                *writer = Some(self.prepare(client).map_err(|error| describe(&error))?);
            }
            let pooled = writer.as_mut().expect("connected above");
            let mut write = || -> Result<Committed, postgres::Error> {
                let mut transaction = pooled.client.transaction()?;
                let position = position_number(checkpoint.position);
                let moved = if from_position == 0 {
                    transaction.execute(
                        &format!(
                            "INSERT INTO {prefix}checkpoint
                                 (id, name, version, position, hash_at_position, scalars)
                             VALUES (1, $1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING"
                        ),
                        &[
                            &checkpoint.name,
                            &(checkpoint.version as i32),
                            &position,
                            &checkpoint.hash_at_position,
                            &checkpoint.scalars,
                        ],
                    )?
                } else {
                    transaction.execute(
                        &format!(
                            "UPDATE {prefix}checkpoint SET name = $1, version = $2, position = $3,
                                 hash_at_position = $4, scalars = $5
                             WHERE id = 1 AND position = $6"
                        ),
                        &[
                            &checkpoint.name,
                            &(checkpoint.version as i32),
                            &position,
                            &checkpoint.hash_at_position,
                            &checkpoint.scalars,
                            &position_number(from_position),
                        ],
                    )?
                };
                if moved != 1 {
                    transaction.rollback()?;
                    return Ok(Committed::Fenced);
                }
                if !upsert_keys.is_empty() {
                    transaction.execute(
                        &format!(
                            "INSERT INTO {prefix}rows (space, key, value)
                             SELECT * FROM unnest($1::int2[], $2::bytea[], $3::text[])
                             ON CONFLICT (space, key) DO UPDATE SET value = EXCLUDED.value"
                        ),
                        &[&upsert_spaces, &upsert_keys, &upsert_values],
                    )?;
                }
                if !delete_keys.is_empty() {
                    transaction.execute(
                        &format!(
                            "DELETE FROM {prefix}rows WHERE (space, key) IN
                             (SELECT * FROM unnest($1::int2[], $2::bytea[]))"
                        ),
                        &[&delete_spaces, &delete_keys],
                    )?;
                }
                // Heard by the readers' listeners at the commit ([`Listener`]).
                transaction.execute(
                    "SELECT pg_notify($1, $2)",
                    &[&self.channel(), &checkpoint.position.to_string()],
                )?;
                if !spaces.is_empty() {
                    transaction.execute(
                        &format!(
                            "INSERT INTO {prefix}spaces (space, position)
                             SELECT unnest($1::int2[]), $2
                             ON CONFLICT (space) DO UPDATE SET position = EXCLUDED.position"
                        ),
                        &[&spaces, &position],
                    )?;
                }
                transaction.commit()?;
                Ok(Committed::Written)
            };
            write().map_err(|error| describe(&error))
        })
    }

    /// Removes every row and the checkpoint (a projection of another version, or of another
    /// log, is folded again from the start).
    pub fn clear(&self) -> Result<(), String> {
        let prefix = self.prefix.clone();
        self.with_reader(|pooled| {
            pooled.client.batch_execute(&format!(
                "BEGIN;
                 DELETE FROM {prefix}checkpoint;
                 DELETE FROM {prefix}spaces;
                 TRUNCATE {prefix}rows;
                 COMMIT;"
            ))
        })
    }

    /// Bytes the rows take in the database, indexes included.
    pub fn size_bytes(&self) -> u64 {
        let table = format!("{}rows", self.prefix);
        self.with_reader(|pooled| {
            let row = pooled.client.query_one(
                "SELECT COALESCE(pg_total_relation_size(to_regclass($1)), 0)",
                &[&table],
            )?;
            Ok(row.get::<_, i64>(0))
        })
        .map_or(0, |bytes| bytes.max(0) as u64)
    }
}

fn read_checkpoint(
    transaction: &mut postgres::Transaction<'_>,
    prefix: &str,
) -> Result<Option<Checkpoint>, postgres::Error> {
    let row = transaction.query_opt(
        &format!(
            "SELECT name, version, position, hash_at_position, scalars FROM {prefix}checkpoint"
        ),
        &[],
    )?;
    Ok(row.map(|row| Checkpoint {
        name: row.get(0),
        version: row.get::<_, i32>(1) as u32,
        position: row.get::<_, i64>(2) as u64,
        hash_at_position: row.get(3),
        scalars: row.get(4),
    }))
}

/// A space as PostgreSQL's `SMALLINT` (spaces are numbered below 1,000).
fn space_number(space: u16) -> i16 {
    i16::try_from(space).expect("spaces fit a SMALLINT")
}

fn position_number(position: u64) -> i64 {
    i64::try_from(position).expect("positions fit a BIGINT")
}

/// A PostgreSQL error with what the server said (`postgres::Error`'s own text is only "db
/// error" for those).
fn describe(error: &postgres::Error) -> String {
    match error.as_db_error() {
        Some(db_error) => format!(
            "{} ({}): {}",
            db_error.message(),
            db_error.code().code(),
            db_error.detail().unwrap_or("")
        ),
        None => error.to_string(),
    }
}
