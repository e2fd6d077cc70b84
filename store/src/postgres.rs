//! The PostgreSQL backend, for several paycenter nodes on one database.
//!
//! Every batch of appends runs in one transaction that first locks the chain head row
//! (`SELECT ... FOR UPDATE`), so appends from all nodes are serialized: the batch reads the
//! head, assigns the next positions, and commits before the next batch can read the head. Positions therefore commit in order, and a reader can never see position
//! N+1 while N is still uncommitted. That is the reason for the lock rather than a sequence:
//! a sequence hands out numbers that commit out of order and leave readers skipping an event
//! committed late. The price is one writer at a time across the cluster; each node still
//! group-commits everything queued on it into one transaction (and one WAL flush:
//! `synchronous_commit` stays on, so a committed append is durable).
//!
//! Payloads are `TEXT`, not `jsonb`: the hash covers the bytes exactly as stored.
//! Tables live in a schema of their own, so tests and tenants can share a database.

use std::collections::HashMap;
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use chrono::{DateTime, Utc};
use postgres::types::ToSql;
use postgres::{Client, Row};

use crate::pg_tls::{connect_blocking, PgConnect};

use crate::chain::{ChainVerifier, GENESIS_HASH};
use crate::queue::{next_batch_lingering, plan_batch, AppendQueue, AppendRequest, Stored};
use crate::{
    AppendOutcome, ChainReport, EventStore, ExpectedRevision, NewEvent, RecordedEvent, StoreError,
};
use crate::{MAX_READ_ALL_LIMIT, MAX_STREAM_EVENTS};

/// Appends waiting for the writer before `append` blocks.
const QUEUE_CAPACITY: usize = 16_384;
/// Most appends one transaction carries.
const MAX_BATCH_APPENDS: usize = 4_096;
/// How long the writer waits for a batch to fill up to the previous batch's size. A commit
/// (one WAL flush) costs several hundred microseconds here, so waiting a fraction of that for
/// callers just answered pays for itself; with one caller there is no wait at all.
const BATCH_LINGER_US: u64 = 100;
/// Expired leases are purged on every this many leases taken.
const LEASE_PURGE_EVERY: u64 = 1_000;
/// Read connections per node at most; more concurrent readers wait for one. Opening a
/// PostgreSQL connection forks a server process, far dearer than waiting.
const MAX_READERS: usize = 16;
/// How often `wait_for_head` looks for other nodes' appends.
const HEAD_POLL_MS: u64 = 10;

impl From<postgres::Error> for StoreError {
    fn from(error: postgres::Error) -> Self {
        StoreError::Backend(error.to_string())
    }
}

/// Whether `url` names a PostgreSQL server (`postgres://`, `postgresql://`).
pub fn is_postgres_url(url: &str) -> bool {
    url.starts_with("postgres://") || url.starts_with("postgresql://")
}

/// The schema holding the log: `PAYCENTER_POSTGRES_SCHEMA`, default `paycenter`.
pub fn configured_schema() -> String {
    std::env::var("PAYCENTER_POSTGRES_SCHEMA").unwrap_or_else(|_| "paycenter".to_owned())
}

/// The PostgreSQL event store.
pub struct PostgresStore {
    /// How to reach the database (the URL with its TLS settings resolved).
    connect: PgConnect,
    schema: String,
    writer: Option<AppendQueue>,
    writer_thread: Option<JoinHandle<()>>,
    readers: crate::pg_tls::BoundedPool<Reader>,
    /// The highest head this node has heard of, and its signal: this node's writer publishes
    /// each commit, and `listen_for_heads` every other node's (their `NOTIFY`), so
    /// `wait_for_head` wakes at once; polling every `HEAD_POLL_MS` covers a lost listener.
    local_head: Arc<(Mutex<u64>, Condvar)>,
    /// Leases taken so far, to purge expired ones now and then.
    leases_taken: std::sync::atomic::AtomicU64,
}

/// Whether `schema` can name a PostgreSQL schema as is: 1 to 48 of `[a-z0-9_]`.
pub fn valid_schema(schema: &str) -> bool {
    !schema.is_empty()
        && schema.len() <= 48
        && schema
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

const SELECT_COLUMNS: &str =
    "global_position, stream_id, stream_revision, event_id, event_type, schema_version, \
     recorded_at_us, correlation_id, causation_id, payload, prev_hash, hash";

fn row_to_event(row: &Row) -> Result<RecordedEvent, StoreError> {
    let bytes32 = |column: &str| -> Result<[u8; 32], StoreError> {
        let bytes: Vec<u8> = row.get(column);
        bytes
            .try_into()
            .map_err(|_| StoreError::Backend(format!("{column} is not 32 bytes")))
    };
    let recorded_at_us: i64 = row.get("recorded_at_us");
    Ok(RecordedEvent {
        global_position: row.get::<_, i64>("global_position") as u64,
        stream_id: row.get("stream_id"),
        stream_revision: row.get::<_, i64>("stream_revision") as u64,
        event_id: row.get("event_id"),
        event_type: row.get("event_type"),
        schema_version: row.get::<_, i32>("schema_version") as u32,
        recorded_at: DateTime::from_timestamp_micros(recorded_at_us)
            .ok_or_else(|| StoreError::Backend("recorded_at out of range".into()))?,
        correlation_id: row.get("correlation_id"),
        causation_id: row.get("causation_id"),
        payload: row.get("payload"),
        prev_hash: bytes32("prev_hash")?,
        hash: bytes32("hash")?,
    })
}

impl PostgresStore {
    /// Connects to `url`, creates `schema` and its tables if needed (migrations), verifies the
    /// whole chain, and starts this node's writer.
    pub fn open(url: &str, schema: &str) -> Result<PostgresStore, StoreError> {
        PostgresStore::open_from(url, schema, None)
    }

    /// The head as `chain_head` records it (not verified).
    fn recorded_head(&self) -> Result<(u64, [u8; 32]), StoreError> {
        let schema = self.schema.clone();
        let recorded: Option<(u64, Vec<u8>)> = self.with_reader(|client| {
            let row = client.query_opt(
                &format!("SELECT position, hash FROM {schema}.chain_head WHERE id = 1"),
                &[],
            )?;
            Ok(row.map(|row| (row.get::<_, i64>(0) as u64, row.get::<_, Vec<u8>>(1))))
        })?;
        match recorded {
            None => Ok((0, GENESIS_HASH)),
            Some((position, hash)) => {
                let hash: [u8; 32] = hash.try_into().map_err(|_| StoreError::Corrupted {
                    position,
                    reason: "the recorded head's hash is not 32 bytes".to_owned(),
                })?;
                Ok((position, hash))
            }
        }
    }

    /// [`PostgresStore::open`], verifying the chain from `trusted_checkpoint` (a position and
    /// hash this node verified before and sealed, see `chain::verify_tail`) to the head instead
    /// of from position 1.
    pub fn open_from(
        url: &str,
        schema: &str,
        trusted_checkpoint: Option<ChainReport>,
    ) -> Result<PostgresStore, StoreError> {
        if !valid_schema(schema) {
            return Err(StoreError::InvalidAppend {
                reason: format!("schema name {schema:?} must be 1 to 48 of [a-z0-9_]"),
            });
        }
        let connect = PgConnect::parse(url)?;
        let mut client = connect_blocking(&connect)?;
        client.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.events (
                 global_position BIGINT PRIMARY KEY,
                 stream_id       TEXT    NOT NULL,
                 stream_revision BIGINT  NOT NULL,
                 event_id        UUID    NOT NULL UNIQUE,
                 event_type      TEXT    NOT NULL,
                 schema_version  INTEGER NOT NULL,
                 recorded_at_us  BIGINT  NOT NULL,
                 correlation_id  UUID,
                 causation_id    UUID,
                 payload         TEXT    NOT NULL,
                 prev_hash       BYTEA   NOT NULL,
                 hash            BYTEA   NOT NULL,
                 UNIQUE (stream_id, stream_revision)
             );
             CREATE TABLE IF NOT EXISTS {schema}.chain_head (
                 id       INTEGER PRIMARY KEY CHECK (id = 1),
                 position BIGINT NOT NULL,
                 hash     BYTEA  NOT NULL,
                 recorded_at_us BIGINT NOT NULL
             );
             -- The one head row exists from the start: appends lock it (FOR UPDATE).
             INSERT INTO {schema}.chain_head (id, position, hash, recorded_at_us)
                 VALUES (1, 0, decode(repeat('00', 32), 'hex'), 0)
                 ON CONFLICT (id) DO NOTHING;
             CREATE TABLE IF NOT EXISTS {schema}.leases (
                 name       TEXT PRIMARY KEY,
                 owner      TEXT NOT NULL,
                 expires_at TIMESTAMPTZ NOT NULL
             );"
        ))?;
        // Every append's commit announces the new head (`NOTIFY {schema}_head`), so nodes
        // following the log hear other nodes' appends at once instead of at their next poll.
        // Under an advisory lock: nodes starting together would otherwise race on the catalog.
        client.batch_execute(&format!(
            "BEGIN;
             SELECT pg_advisory_xact_lock(hashtext('{schema}.head_notify'));
             CREATE OR REPLACE FUNCTION {schema}.notify_head() RETURNS trigger AS $$
             BEGIN
                 PERFORM pg_notify('{schema}_head', NEW.position::text);
                 RETURN NULL;
             END $$ LANGUAGE plpgsql;
             CREATE OR REPLACE TRIGGER notify_head AFTER UPDATE ON {schema}.chain_head
                 FOR EACH ROW EXECUTE FUNCTION {schema}.notify_head();
             COMMIT;"
        ))?;
        let mut store = PostgresStore {
            connect: connect.clone(),
            schema: schema.to_owned(),
            writer: None,
            writer_thread: None,
            readers: crate::pg_tls::BoundedPool::new(MAX_READERS),
            local_head: Arc::new((Mutex::new(0), Condvar::new())),
            leases_taken: std::sync::atomic::AtomicU64::new(0),
        };
        drop(client);
        match trusted_checkpoint {
            Some(checkpoint) => {
                let recorded = store.recorded_head()?;
                crate::chain::verify_tail(&store, checkpoint, recorded)?;
            }
            None => {
                store.verify_chain()?;
            }
        }
        {
            let (connect, schema, heard) = (
                connect.clone(),
                schema.to_owned(),
                Arc::downgrade(&store.local_head),
            );
            std::thread::Builder::new()
                .name("pg-store-heads".into())
                .spawn(move || listen_for_heads(&connect, &schema, &heard))?;
        }
        let (queue, receiver) = AppendQueue::new(QUEUE_CAPACITY);
        let writer = Writer::connect(&connect, schema, store.local_head.clone())?;
        store.writer_thread = Some(
            std::thread::Builder::new()
                .name("pg-store-writer".into())
                .spawn(move || writer.run(receiver))?,
        );
        store.writer = Some(queue);
        Ok(store)
    }

    /// Drops the schema and everything in it (tests clean up with this).
    pub fn drop_schema(url: &str, schema: &str) -> Result<(), StoreError> {
        if !valid_schema(schema) {
            return Err(StoreError::InvalidAppend {
                reason: format!("bad schema name {schema:?}"),
            });
        }
        connect_blocking(&PgConnect::parse(url)?)?
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))?;
        Ok(())
    }

    fn with_reader<T>(
        &self,
        read: impl FnOnce(&mut Reader) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.readers.with(
            || {
                connect_blocking(&self.connect)
                    .map(Reader::new)
                    .map_err(StoreError::from)
            },
            |reader| reader.client.is_closed(),
            read,
        )
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        self.writer.take();
        if let Some(thread) = self.writer_thread.take() {
            let _ = thread.join();
        }
        crate::pg_tls::drop_blocking_clients(self.readers.take_idle());
    }
}

impl EventStore for PostgresStore {
    fn append(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendOutcome, StoreError> {
        self.writer
            .as_ref()
            .ok_or(StoreError::Closed)?
            .append(stream_id, expected, events)
    }

    fn append_async(
        &self,
        stream_id: &str,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> crate::AppendFuture {
        match &self.writer {
            Some(queue) => queue.append_async(stream_id, expected, events),
            None => Box::pin(async { Err(StoreError::Closed) }),
        }
    }

    fn read_stream(
        &self,
        stream_id: &str,
        from_revision: u64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let schema = &self.schema;
        self.with_reader(|client| {
            let rows = client.query(
                &format!("SELECT {SELECT_COLUMNS} FROM {schema}.events WHERE stream_id = $1 AND stream_revision >= $2 ORDER BY stream_revision LIMIT $3"),
                &[&stream_id, &(from_revision as i64), &((MAX_STREAM_EVENTS + 1) as i64)],
            )?;
            if rows.len() > MAX_STREAM_EVENTS {
                return Err(StoreError::Backend(format!("stream {stream_id} exceeds {MAX_STREAM_EVENTS} events")));
            }
            rows.iter().map(row_to_event).collect()
        })
    }

    fn read_all(&self, from_position: u64, limit: usize) -> Result<Vec<RecordedEvent>, StoreError> {
        let schema = &self.schema;
        let limit = limit.min(MAX_READ_ALL_LIMIT) as i64;
        self.with_reader(|client| {
            let rows = client.query(
                &format!("SELECT {SELECT_COLUMNS} FROM {schema}.events WHERE global_position >= $1 ORDER BY global_position LIMIT $2"),
                &[&(from_position as i64), &limit],
            )?;
            rows.iter().map(row_to_event).collect()
        })
    }

    fn head_position(&self) -> Result<u64, StoreError> {
        let schema = &self.schema;
        self.with_reader(|client| {
            let row = client.query_opt(
                &format!("SELECT position FROM {schema}.chain_head WHERE id = 1"),
                &[],
            )?;
            Ok(row.map_or(0, |row| row.get::<_, i64>(0) as u64))
        })
    }

    fn wait_for_head(&self, after_position: u64, timeout: Duration) -> Result<u64, StoreError> {
        // Other nodes append too: look at the database every HEAD_POLL_MS, and in between
        // wake as soon as this node's writer commits.
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let position = self.head_position()?;
            let now = std::time::Instant::now();
            if position > after_position || now >= deadline {
                return Ok(position);
            }
            let step = Duration::from_millis(HEAD_POLL_MS).min(deadline - now);
            let (local, committed) = &*self.local_head;
            let local_position = local.lock().expect("local head");
            if *local_position <= after_position {
                let _ = committed
                    .wait_timeout(local_position, step)
                    .expect("local head");
            }
        }
    }

    fn try_lease(&self, name: &str, owner: &str, ttl_ms: u64) -> Result<bool, StoreError> {
        assert!(ttl_ms > 0, "a lease lasts some time");
        let schema = &self.schema;
        let n_taken = self
            .leases_taken
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.with_reader(|client| {
            if n_taken.is_multiple_of(LEASE_PURGE_EVERY) {
                // Leases are keyed by the work they guard, so old ones pile up; drop those
                // long expired (the work they guarded is recorded by then, or retaken).
                client.execute(
                    &format!("DELETE FROM {schema}.leases WHERE expires_at < now() - interval '10 minutes'"),
                    &[],
                )?;
            }
            // The database's clock decides expiry, so nodes' clocks need not agree.
            let row = client.query_opt(
                &format!(
                    "INSERT INTO {schema}.leases (name, owner, expires_at) \
                     VALUES ($1, $2, now() + $3 * interval '1 millisecond') \
                     ON CONFLICT (name) DO UPDATE SET owner = EXCLUDED.owner, expires_at = EXCLUDED.expires_at \
                     WHERE {schema}.leases.owner = EXCLUDED.owner OR {schema}.leases.expires_at < now() \
                     RETURNING owner"
                ),
                &[&name, &owner, &(ttl_ms as f64)],
            )?;
            Ok(row.is_some())
        })
    }

    fn verify_chain(&self) -> Result<ChainReport, StoreError> {
        const BATCH: usize = 10_000;
        // Read the recorded head first: appends after it are beyond what this walk checks.
        let (recorded_position, recorded_hash) = self.recorded_head()?;
        let mut verifier = ChainVerifier::default();
        let mut next_position = 1;
        while next_position <= recorded_position {
            let events = self.read_all(
                next_position,
                BATCH.min((recorded_position - next_position + 1) as usize),
            )?;
            if events.is_empty() {
                break;
            }
            for event in &events {
                verifier.check(event)?;
            }
            next_position += events.len() as u64;
        }
        let report = verifier.report();
        if report.n_events != recorded_position
            || report.head_hash.as_slice() != recorded_hash.as_slice()
        {
            return Err(StoreError::Corrupted {
                position: report.n_events + 1,
                reason: format!("the log ends at position {} but its recorded head is position {recorded_position}", report.n_events),
            });
        }
        Ok(report)
    }
}

/// How long the head listener waits for a notification before it checks that the store it
/// serves is still open.
const LISTEN_CHECK_MS: u64 = 1_000;

/// Publishes into `heard` every head other nodes' commits announce (`NOTIFY {schema}_head`,
/// sent by the `chain_head` trigger), on a connection of its own, reconnecting after a
/// failure; returns once the store is dropped (`heard` gone).
fn listen_for_heads(
    connect: &PgConnect,
    schema: &str,
    heard: &std::sync::Weak<(Mutex<u64>, Condvar)>,
) {
    use postgres::fallible_iterator::FallibleIterator as _;
    while heard.strong_count() > 0 {
        let mut client = match connect_blocking(connect).and_then(|mut client| {
            client
                .batch_execute(&format!("LISTEN {schema}_head"))
                .map(|()| client)
        }) {
            Ok(client) => client,
            Err(error) => {
                tracing::warn!(%error, "the head listener could not connect; polling meanwhile");
                std::thread::sleep(Duration::from_millis(LISTEN_CHECK_MS));
                continue;
            }
        };
        loop {
            let next = client
                .notifications()
                .timeout_iter(Duration::from_millis(LISTEN_CHECK_MS))
                .next();
            let notification = match next {
                Ok(Some(notification)) => notification,
                Ok(None) if heard.strong_count() > 0 => continue,
                Ok(None) => return,
                Err(error) => {
                    tracing::warn!(%error, "the head listener lost its connection; reconnecting");
                    break;
                }
            };
            let (Ok(position), Some(heard)) =
                (notification.payload().parse::<u64>(), heard.upgrade())
            else {
                continue;
            };
            let (head, changed) = &*heard;
            let mut head = head.lock().expect("local head");
            if position > *head {
                *head = position;
                changed.notify_all();
            }
        }
    }
}

/// This node's writer: group-commits what is queued, one transaction holding the head row's
/// lock. It speaks to PostgreSQL through a pipelining client on a runtime of its own, with its
/// statements prepared once, so a batch costs two round trips plus the commit's WAL flush.
struct Writer {
    runtime: tokio::runtime::Runtime,
    /// Where to publish each committed head (see `PostgresStore::local_head`).
    local_head: Arc<(Mutex<u64>, Condvar)>,
    client: tokio_postgres::Client,
    lock_head: tokio_postgres::Statement,
    lookup: tokio_postgres::Statement,
    insert: tokio_postgres::Statement,
}

impl Writer {
    fn connect(
        connect: &PgConnect,
        schema: &str,
        local_head: Arc<(Mutex<u64>, Condvar)>,
    ) -> Result<Writer, StoreError> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let (client, lock_head, lookup, insert) = runtime.block_on(async {
            // The connection task runs whenever the writer is inside `block_on`, which is the
            // only time it has anything to send or receive.
            let client = crate::pg_tls::connect_async(connect).await?;
            // A generic plan for `= ANY($1)` can scan the table; plan each batch for its values.
            client
                .batch_execute("SET plan_cache_mode = force_custom_plan")
                .await?;
            let lock_head = client
                .prepare(&format!(
                    "SELECT position, hash, recorded_at_us FROM {schema}.chain_head WHERE id = 1 FOR UPDATE"
                ))
                .await?;
            // Every event id of the batch and every stream's revision, in one statement.
            let lookup = client
                .prepare(&format!(
                    "SELECT event_id, global_position, stream_id, stream_revision FROM {schema}.events WHERE event_id = ANY($1) \
                     UNION ALL \
                     SELECT NULL::UUID, NULL::BIGINT, stream_id, MAX(stream_revision) FROM {schema}.events WHERE stream_id = ANY($2) GROUP BY stream_id"
                ))
                .await?;
            // The rows and the new head in one statement. It divides by zero, failing the
            // transaction, unless every row went in and the head moved: the COMMIT pipelined
            // behind it then rolls back instead.
            let insert = client
                .prepare(&format!(
                    "WITH inserted AS ( \
                         INSERT INTO {schema}.events (global_position, stream_id, stream_revision, event_id, event_type, schema_version, \
                         recorded_at_us, correlation_id, causation_id, payload, prev_hash, hash) \
                         SELECT * FROM UNNEST($1::BIGINT[], $2::TEXT[], $3::BIGINT[], $4::UUID[], $5::TEXT[], $6::INTEGER[], \
                         $7::BIGINT[], $8::UUID[], $9::UUID[], $10::TEXT[], $11::BYTEA[], $12::BYTEA[]) \
                         RETURNING 1), \
                     advanced AS ( \
                         UPDATE {schema}.chain_head SET position = $13, hash = $14, recorded_at_us = $15 \
                         WHERE id = 1 RETURNING 1) \
                     SELECT 1 / ((SELECT COUNT(*) FROM inserted) = $16 AND (SELECT COUNT(*) FROM advanced) = 1)::INTEGER"
                ))
                .await?;
            Ok::<_, tokio_postgres::Error>((client, lock_head, lookup, insert))
        })?;
        Ok(Writer {
            runtime,
            local_head,
            client,
            lock_head,
            lookup,
            insert,
        })
    }

    fn run(self, receiver: Receiver<AppendRequest>) {
        let mut previous_batch_len = 1;
        while let Some(batch) = next_batch_lingering(
            &receiver,
            MAX_BATCH_APPENDS,
            previous_batch_len,
            Duration::from_micros(BATCH_LINGER_US),
        ) {
            previous_batch_len = batch.len();
            match self.runtime.block_on(self.write_batch(&batch)) {
                Ok(outcomes) => {
                    let last_position = outcomes
                        .iter()
                        .filter_map(|outcome| outcome.as_ref().ok())
                        .map(|outcome| outcome.last_position)
                        .max();
                    if let Some(last_position) = last_position {
                        let (local, committed) = &*self.local_head;
                        let mut head = local.lock().expect("local head");
                        *head = (*head).max(last_position);
                        committed.notify_all();
                    }
                    for (request, outcome) in batch.into_iter().zip(outcomes) {
                        let _ = request.reply.send(outcome);
                    }
                }
                Err(error) => {
                    // The transaction rolled back (or, if the connection broke during COMMIT,
                    // its fate is unknown: a retry with the same event ids is answered as a
                    // replay if it did commit).
                    let reason = error.to_string();
                    for request in batch {
                        let _ = request.reply.send(Err(StoreError::Backend(reason.clone())));
                    }
                    if self.client.is_closed() {
                        tracing::error!(%reason, "PostgreSQL writer connection lost; the store stops accepting appends");
                        return;
                    }
                }
            }
        }
    }

    /// One batch in one transaction and two round trips, whatever its size: BEGIN, the head
    /// lock and the lookups pipelined; then the insert and COMMIT pipelined. Each append is
    /// decided in memory against the state the batch has built.
    async fn write_batch(
        &self,
        batch: &[AppendRequest],
    ) -> Result<Vec<Result<AppendOutcome, StoreError>>, StoreError> {
        let all_ids: Vec<uuid::Uuid> = batch
            .iter()
            .flat_map(|request| request.events.iter().map(|event| event.event_id))
            .collect();
        let all_streams: Vec<&str> = batch
            .iter()
            .map(|request| request.stream_id.as_str())
            .collect();
        // Locking the head row serializes appends from every node; the lock is held until
        // commit. The lookups queued behind it run once the lock is ours.
        let lookup_params: [&(dyn ToSql + Sync); 2] = [&all_ids, &all_streams];
        let (begun, head, lookups) = tokio::join!(
            self.client.batch_execute("BEGIN"),
            self.client.query_opt(&self.lock_head, &[]),
            self.client.query(&self.lookup, &lookup_params),
        );
        let read = begun.and(head).and_then(|head| Ok((head, lookups?)));
        let (head, lookups) = match read {
            Ok(read) => read,
            Err(error) => {
                self.rollback().await;
                return Err(error.into());
            }
        };
        let (mut head_position, mut head_hash, last_recorded_at_us) = match head {
            Some(row) => {
                let hash: Vec<u8> = row.get(1);
                let Ok(hash) = <[u8; 32]>::try_from(hash) else {
                    self.rollback().await;
                    return Err(StoreError::Backend("bad head hash".into()));
                };
                (row.get::<_, i64>(0) as u64, hash, row.get::<_, i64>(2))
            }
            // Without the row there is no lock, and no serialization: refuse rather than race.
            None => {
                self.rollback().await;
                return Err(StoreError::Backend(
                    "the chain head row is missing; appends cannot be serialized".into(),
                ));
            }
        };
        // Monotonic along the log, across nodes whose clocks differ a little.
        let recorded_at_us = Utc::now().timestamp_micros().max(last_recorded_at_us);
        let head_before = head_position;

        let mut stored: HashMap<uuid::Uuid, Stored> = HashMap::new();
        let mut revisions: HashMap<String, u64> = HashMap::new();
        for row in &lookups {
            let revision = row.get::<_, i64>(3) as u64;
            match row.get::<_, Option<uuid::Uuid>>(0) {
                Some(event_id) => {
                    stored.insert(
                        event_id,
                        Stored {
                            position: row.get::<_, i64>(1) as u64,
                            stream_id: row.get(2),
                            revision,
                        },
                    );
                }
                None => {
                    revisions.insert(row.get(2), revision);
                }
            }
        }

        let plan = plan_batch(
            batch,
            (head_position, head_hash),
            recorded_at_us,
            &mut stored,
            &mut revisions,
        );
        let mut rows = Rows::default();
        for event in plan.events {
            (head_position, head_hash) = (event.global_position, event.hash);
            rows.push(event);
        }
        let outcomes = plan.outcomes;
        if head_position == head_before {
            // Nothing to write (all replays or conflicts): release the lock.
            self.client.batch_execute("COMMIT").await?;
            return Ok(outcomes);
        }
        let n_rows = rows.global_position.len() as i64;
        let head_position_db = head_position as i64;
        let head_hash_bytes = head_hash.as_slice();
        let insert_params: [&(dyn ToSql + Sync); 16] = [
            &rows.global_position,
            &rows.stream_id,
            &rows.stream_revision,
            &rows.event_id,
            &rows.event_type,
            &rows.schema_version,
            &rows.recorded_at_us,
            &rows.correlation_id,
            &rows.causation_id,
            &rows.payload,
            &rows.prev_hash,
            &rows.hash,
            &head_position_db,
            &head_hash_bytes,
            &recorded_at_us,
            &n_rows,
        ];
        let (inserted, committed) = tokio::join!(
            self.client.query_one(&self.insert, &insert_params),
            self.client.batch_execute("COMMIT"),
        );
        // A failed insert aborted the transaction, and the COMMIT behind it rolled back.
        inserted?;
        committed?;
        Ok(outcomes)
    }

    async fn rollback(&self) {
        if let Err(error) = self.client.batch_execute("ROLLBACK").await {
            tracing::warn!(%error, "PostgreSQL writer could not roll back");
        }
    }
}

/// A read connection and the statements prepared on it: each query text is prepared once per
/// connection, so a read is one round trip rather than two.
struct Reader {
    client: Client,
    statements: HashMap<String, postgres::Statement>,
}

/// Distinct query texts a reader keeps prepared; the store has a handful.
const MAX_PREPARED_PER_READER: usize = 64;

impl Reader {
    fn new(client: Client) -> Reader {
        Reader {
            client,
            statements: HashMap::new(),
        }
    }

    fn statement(&mut self, sql: &str) -> Result<postgres::Statement, postgres::Error> {
        if let Some(statement) = self.statements.get(sql) {
            return Ok(statement.clone());
        }
        let statement = self.client.prepare(sql)?;
        if self.statements.len() < MAX_PREPARED_PER_READER {
            self.statements.insert(sql.to_owned(), statement.clone());
        }
        Ok(statement)
    }

    fn query(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query(&statement, params)
    }

    fn query_opt(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Option<Row>, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.query_opt(&statement, params)
    }

    fn execute(
        &mut self,
        sql: &str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<u64, postgres::Error> {
        let statement = self.statement(sql)?;
        self.client.execute(&statement, params)
    }
}

/// The rows of one batch, column by column, for one `INSERT ... SELECT FROM UNNEST`.
#[derive(Default)]
struct Rows {
    global_position: Vec<i64>,
    stream_id: Vec<String>,
    stream_revision: Vec<i64>,
    event_id: Vec<uuid::Uuid>,
    event_type: Vec<String>,
    schema_version: Vec<i32>,
    recorded_at_us: Vec<i64>,
    correlation_id: Vec<Option<uuid::Uuid>>,
    causation_id: Vec<Option<uuid::Uuid>>,
    payload: Vec<String>,
    prev_hash: Vec<Vec<u8>>,
    hash: Vec<Vec<u8>>,
}

impl Rows {
    fn push(&mut self, event: RecordedEvent) {
        self.global_position.push(event.global_position as i64);
        self.stream_id.push(event.stream_id);
        self.stream_revision.push(event.stream_revision as i64);
        self.event_id.push(event.event_id);
        self.event_type.push(event.event_type);
        self.schema_version.push(event.schema_version as i32);
        self.recorded_at_us
            .push(event.recorded_at.timestamp_micros());
        self.correlation_id.push(event.correlation_id);
        self.causation_id.push(event.causation_id);
        self.payload.push(event.payload);
        self.prev_hash.push(event.prev_hash.to_vec());
        self.hash.push(event.hash.to_vec());
    }
}
