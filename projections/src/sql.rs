//! Read models in PostgreSQL, shared by every node on one database.
//!
//! Tables (in the store's schema): `rm_payments` (one row per payment attempt),
//! `rm_balances` (one row per merchant, account and currency) and `rm_checkpoints` (how far
//! into the log they are). A round reads the events after the checkpoint, then the rows those
//! events touched **from the node's own read model and balances** (the projections it serves
//! requests from: no second fold), and writes them with the new checkpoint in **one
//! transaction**. The checkpoint only moves by compare-and-set from the position the round
//! started at: if two nodes write the same round, one commits and the other rolls back. A
//! lease (`EventStore::try_lease`) keeps the other nodes from doing the work twice in the
//! first place.
//!
//! A row is at least as new as the checkpoint: every event up to it is in the row, and events
//! the node's projections applied after the round read its batch may be too (the two
//! projections move on their own while the rows are read). A round never passes either
//! projection's position, so nothing the tables claim is missing from them. Balances that
//! stopped at an entry the ledger refused (a bug upstream) stop moving their rows; payments go
//! on.

use std::collections::BTreeSet;
use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use paycenter_domain::envelope::RecordedEvent;
use paycenter_domain::ids::{MerchantId, TradeNo};
use paycenter_store::EventStore;
use postgres::Client;
use serde::Deserialize;

use crate::balances::Balances;
use crate::follow::FollowerHealth;
use crate::model::PaymentView;
use crate::projection::Projection as _;
use crate::ReadModel;

/// The checkpoint row's name.
pub const PROJECTION_NAME: &str = "sql_read_models";
/// The lease nodes take before a batch.
const LEASE_NAME: &str = "projection:sql_read_models";
/// A batch's lease: long enough for one batch, short enough to hand over quickly.
const LEASE_TTL_MS: u64 = 10_000;
/// Events per round (and so per transaction).
const BATCH_EVENTS: u64 = 2_000;
/// Payments read under one read lock of the model: the model's follower waits for the lock,
/// so a round never holds it for a whole batch.
const PAYMENTS_PER_LOCK: usize = 64;

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Rows written and the checkpoint moved to this position.
    Advanced(u64),
    /// Nothing new in the log, or the node's projections have not passed the checkpoint yet.
    Idle,
    /// Another node holds the lease.
    HeldElsewhere,
    /// Another node moved the checkpoint first; this round wrote nothing.
    Overtaken,
}

/// Errors of the SQL read models.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// PostgreSQL refused or the connection broke.
    #[error("PostgreSQL: {0}")]
    Postgres(#[from] postgres::Error),
    /// The event store refused.
    #[error("event store: {0}")]
    Store(#[from] paycenter_store::StoreError),
    /// The node's read model could not be read.
    #[error("read model: {0}")]
    Table(#[from] crate::tables::TableError),
    /// The schema name is not a plain identifier.
    #[error("schema name {0:?} must be 1 to 48 of [a-z0-9_]")]
    BadSchema(String),
}

/// The node's projections the tables are written from.
#[derive(Clone)]
pub struct Sources {
    /// The read model the node serves (payments).
    pub model: Arc<RwLock<ReadModel>>,
    /// The balances the node serves.
    pub balances: Arc<RwLock<Balances>>,
    /// Whether the balances' follower stopped (their rows then stay as they were).
    pub balances_health: Arc<FollowerHealth>,
}

/// The projector of one node.
pub struct SqlReadModels {
    client: Client,
    schema: String,
    node_id: String,
    sources: Sources,
}

/// The ids an event's payload names, when it names them.
#[derive(Deserialize)]
struct Touches {
    trade_no: Option<TradeNo>,
    merchant_id: Option<MerchantId>,
}

impl SqlReadModels {
    /// Connects and creates the tables if needed.
    pub fn open(
        url: &str,
        schema: &str,
        node_id: &str,
        sources: Sources,
    ) -> Result<SqlReadModels, SqlError> {
        if !paycenter_store::postgres::valid_schema(schema) {
            return Err(SqlError::BadSchema(schema.to_owned()));
        }
        let mut client = paycenter_store::pg_tls::connect_blocking(
            &paycenter_store::pg_tls::PgConnect::parse(url)?,
        )?;
        client.batch_execute(&format!(
            "CREATE SCHEMA IF NOT EXISTS {schema};
             CREATE TABLE IF NOT EXISTS {schema}.rm_checkpoints (
                 name     TEXT PRIMARY KEY,
                 position BIGINT NOT NULL
             );
             INSERT INTO {schema}.rm_checkpoints (name, position) VALUES ('{PROJECTION_NAME}', 0)
                 ON CONFLICT (name) DO NOTHING;
             CREATE TABLE IF NOT EXISTS {schema}.rm_payments (
                 trade_no         TEXT PRIMARY KEY,
                 merchant_id      TEXT NOT NULL,
                 order_no         TEXT NOT NULL,
                 app_id           TEXT NOT NULL,
                 channel          TEXT NOT NULL,
                 status           TEXT NOT NULL,
                 currency         TEXT NOT NULL,
                 amount_minor     BIGINT NOT NULL,
                 fee_minor        BIGINT NOT NULL,
                 refunded_minor   BIGINT NOT NULL,
                 created_at       TIMESTAMPTZ NOT NULL,
                 paid_at          TIMESTAMPTZ
             );
             CREATE INDEX IF NOT EXISTS rm_payments_merchant_order ON {schema}.rm_payments (merchant_id, order_no);
             CREATE TABLE IF NOT EXISTS {schema}.rm_balances (
                 merchant_id   TEXT NOT NULL,
                 account       TEXT NOT NULL,
                 currency      TEXT NOT NULL,
                 balance_minor BIGINT NOT NULL,
                 PRIMARY KEY (merchant_id, account, currency)
             );"
        ))?;
        Ok(SqlReadModels {
            client,
            schema: schema.to_owned(),
            node_id: node_id.to_owned(),
            sources,
        })
    }

    /// The checkpoint as committed.
    pub fn checkpoint(&mut self) -> Result<u64, SqlError> {
        let schema = &self.schema;
        let row = self.client.query_one(
            &format!("SELECT position FROM {schema}.rm_checkpoints WHERE name = $1"),
            &[&PROJECTION_NAME],
        )?;
        Ok(row.get::<_, i64>(0) as u64)
    }

    /// Whether the balances stopped; their rows then stay as they were.
    fn balances_stopped(&self) -> bool {
        self.sources.balances_health.stopped().is_some()
    }

    /// How far the node's projections have both applied the log (the read model alone once
    /// the balances stopped).
    fn projected_position(&self) -> u64 {
        let model_position = read(&self.sources.model).position();
        if self.balances_stopped() {
            return model_position;
        }
        model_position.min(read(&self.sources.balances).position())
    }

    /// One round: read the events after the checkpoint (up to where the node's projections
    /// are), take the lease, write the rows they touched and the new checkpoint in one
    /// transaction. A node whose projections have not passed the checkpoint (one catching up
    /// after a start) takes no lease, so it never holds up a node that could write.
    pub fn run_once(&mut self, store: &dyn EventStore) -> Result<Round, SqlError> {
        let checkpoint = self.checkpoint()?;
        let target = self.projected_position().min(checkpoint + BATCH_EVENTS);
        if target <= checkpoint {
            return Ok(Round::Idle);
        }
        if !store.try_lease(LEASE_NAME, &self.node_id, LEASE_TTL_MS)? {
            return Ok(Round::HeldElsewhere);
        }
        let mut events = store.read_all(checkpoint + 1, (target - checkpoint) as usize)?;
        // The round ends at the last event read up to the projections' position: never past
        // what both projections hold, never past what was read.
        events.retain(|event| event.global_position <= target);
        let Some(target) = events.last().map(|event| event.global_position) else {
            return Ok(Round::Idle);
        };
        let mut trade_nos: BTreeSet<TradeNo> = BTreeSet::new();
        let mut merchants: BTreeSet<MerchantId> = BTreeSet::new();
        for event in &events {
            touched(event, &mut trade_nos, &mut merchants);
        }
        let payments = self.payments(&trade_nos)?;
        merchants.extend(payments.iter().map(|payment| payment.merchant_id.clone()));
        let balances = if self.balances_stopped() {
            Vec::new()
        } else {
            let balances = read(&self.sources.balances);
            merchants
                .iter()
                .flat_map(|merchant_id| {
                    balances
                        .ledger()
                        .merchant_balances(merchant_id)
                        .into_iter()
                        .map(move |(account, currency, balance_minor)| {
                            (merchant_id.clone(), account, currency.code(), balance_minor)
                        })
                })
                .collect()
        };
        self.write(checkpoint, target, &payments, &balances)
    }

    /// The payments `trade_nos` name, as the node's read model holds them now.
    fn payments(&self, trade_nos: &BTreeSet<TradeNo>) -> Result<Vec<PaymentView>, SqlError> {
        let trade_nos: Vec<&TradeNo> = trade_nos.iter().collect();
        let mut payments = Vec::with_capacity(trade_nos.len());
        for chunk in trade_nos.chunks(PAYMENTS_PER_LOCK) {
            let model = read(&self.sources.model);
            for trade_no in chunk {
                payments.extend(model.payment(trade_no)?);
            }
        }
        Ok(payments)
    }

    fn write(
        &mut self,
        checkpoint: u64,
        target: u64,
        payments: &[PaymentView],
        balances: &[(MerchantId, String, &'static str, i64)],
    ) -> Result<Round, SqlError> {
        let schema = self.schema.clone();
        let mut transaction = self.client.transaction()?;
        let moved = transaction.execute(
            &format!(
                "UPDATE {schema}.rm_checkpoints SET position = $1 WHERE name = $2 AND position = $3"
            ),
            &[&(target as i64), &PROJECTION_NAME, &(checkpoint as i64)],
        )?;
        if moved != 1 {
            transaction.rollback()?;
            return Ok(Round::Overtaken);
        }
        let upsert_payment = transaction.prepare(&format!(
            "INSERT INTO {schema}.rm_payments (trade_no, merchant_id, order_no, app_id, channel, status, currency, \
             amount_minor, fee_minor, refunded_minor, created_at, paid_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (trade_no) DO UPDATE SET status = EXCLUDED.status, fee_minor = EXCLUDED.fee_minor, \
             refunded_minor = EXCLUDED.refunded_minor, paid_at = EXCLUDED.paid_at"
        ))?;
        for payment in payments {
            let row = PaymentRow::of(payment);
            transaction.execute(
                &upsert_payment,
                &[
                    &row.trade_no,
                    &row.merchant_id,
                    &row.order_no,
                    &row.app_id,
                    &row.channel,
                    &row.status,
                    &row.currency,
                    &row.amount_minor,
                    &row.fee_minor,
                    &row.refunded_minor,
                    &payment.created_at,
                    &payment.paid_at,
                ],
            )?;
        }
        let upsert_balance = transaction.prepare(&format!(
            "INSERT INTO {schema}.rm_balances (merchant_id, account, currency, balance_minor) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (merchant_id, account, currency) DO UPDATE SET balance_minor = EXCLUDED.balance_minor"
        ))?;
        for (merchant_id, account, currency, balance_minor) in balances {
            transaction.execute(
                &upsert_balance,
                &[&merchant_id.as_str(), account, currency, balance_minor],
            )?;
        }
        transaction.commit()?;
        Ok(Round::Advanced(target))
    }

    /// Runs rounds until `stop` says so: busy while the log has news, polling otherwise.
    pub fn run(&mut self, store: &dyn EventStore, stop: &dyn Fn() -> bool) {
        const IDLE_POLL_MS: u64 = 100;
        const HELD_ELSEWHERE_POLL_MS: u64 = 2_000;
        const ERROR_PAUSE_MS: u64 = 1_000;
        while !stop() {
            let pause_ms = match self.run_once(store) {
                Ok(Round::Advanced(_)) => 0,
                Ok(Round::Overtaken) => 0,
                Ok(Round::Idle) => IDLE_POLL_MS,
                Ok(Round::HeldElsewhere) => HELD_ELSEWHERE_POLL_MS,
                Err(error) => {
                    tracing::error!(%error, "SQL read models: round failed; retrying");
                    ERROR_PAUSE_MS
                }
            };
            if pause_ms > 0 {
                std::thread::sleep(Duration::from_millis(pause_ms));
            }
        }
    }
}

/// A read lock of one of the node's projections. Their followers never panic while holding the
/// write lock (they catch the fold's panics), so a poisoned lock comes only from a bug elsewhere
/// and the projection is still read.
fn read<P>(lock: &RwLock<P>) -> RwLockReadGuard<'_, P> {
    lock.read().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The payment and merchant an event names, if it names them.
fn touched(
    event: &RecordedEvent,
    trade_nos: &mut BTreeSet<TradeNo>,
    merchants: &mut BTreeSet<MerchantId>,
) {
    let Ok(touches) = serde_json::from_str::<Touches>(&event.payload) else {
        return;
    };
    if let Some(trade_no) = touches.trade_no {
        trade_nos.insert(trade_no);
    }
    if let Some(merchant_id) = touches.merchant_id {
        merchants.insert(merchant_id);
    }
}

/// A payment as its SQL row.
struct PaymentRow {
    trade_no: String,
    merchant_id: String,
    order_no: String,
    app_id: String,
    channel: String,
    status: String,
    currency: String,
    amount_minor: i64,
    fee_minor: i64,
    refunded_minor: i64,
}

impl PaymentRow {
    fn of(payment: &PaymentView) -> PaymentRow {
        let text = |value: serde_json::Value| value.as_str().unwrap_or_default().to_owned();
        PaymentRow {
            trade_no: payment.trade_no.as_str().to_owned(),
            merchant_id: payment.merchant_id.as_str().to_owned(),
            order_no: payment.order_no.as_str().to_owned(),
            app_id: payment.app_id.as_str().to_owned(),
            channel: text(serde_json::to_value(payment.channel).unwrap_or_default()),
            status: text(serde_json::to_value(payment.status).unwrap_or_default()),
            currency: payment.amount.currency().code().to_owned(),
            amount_minor: payment.amount.amount_minor(),
            fee_minor: payment.fee.amount_minor(),
            refunded_minor: payment.refunded().amount_minor(),
        }
    }
}
