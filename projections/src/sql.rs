//! Read models in PostgreSQL, shared by every node on one database.
//!
//! Tables (in the store's schema): `rm_payments` (one row per payment attempt),
//! `rm_balances` (one row per merchant, account and currency) and `rm_checkpoints` (how far
//! into the log they are). A batch of events becomes rows and the new checkpoint in **one
//! transaction**, and the checkpoint only moves by compare-and-set from the position the batch
//! was folded from: if two nodes fold the same batch, one commits and the other rolls back, so
//! the tables advance exactly once per event. A lease (`EventStore::try_lease`) keeps the other
//! nodes from doing the work twice in the first place.
//!
//! The projector folds the log into a [`ReadModel`] and [`Balances`] of its own (kept in files
//! of the node's data directory) and writes the rows the batch touched from them, so the rows
//! are exactly their state at the checkpoint. Balances that stopped at an entry the ledger
//! refused (a bug upstream) stop moving their rows; payments go on.

use std::collections::BTreeSet;
use std::time::Duration;

use paycenter_domain::envelope::RecordedEvent;
use paycenter_domain::ids::{MerchantId, TradeNo};
use paycenter_store::EventStore;
use postgres::Client;
use serde::Deserialize;

use crate::balances::{Balances, LedgerError};
use crate::model::PaymentView;
use crate::projection::Projection as _;
use crate::ReadModel;

/// The checkpoint row's name.
pub const PROJECTION_NAME: &str = "sql_read_models";
/// The lease nodes take before a batch.
const LEASE_NAME: &str = "projection:sql_read_models";
/// A batch's lease: long enough for one batch, short enough to hand over quickly.
const LEASE_TTL_MS: u64 = 10_000;
/// Events folded per transaction.
const BATCH_EVENTS: usize = 2_000;

/// What one round did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Round {
    /// Rows written and the checkpoint moved to this position.
    Advanced(u64),
    /// Nothing new in the log.
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
    /// This node's own fold could not be read or written.
    #[error("read model: {0}")]
    Model(#[from] crate::model::ModelError),
    /// See `Model`.
    #[error("read model: {0}")]
    Table(#[from] crate::tables::TableError),
    /// The schema name is not a plain identifier.
    #[error("schema name {0:?} must be 1 to 48 of [a-z0-9_]")]
    BadSchema(String),
}

/// The projector of one node.
pub struct SqlReadModels {
    client: Client,
    schema: String,
    node_id: String,
    /// This projector's own fold of the log.
    model: ReadModel,
    /// ... and of the balances.
    balances: Balances,
    /// Set when the balances stopped at an entry the ledger refused.
    balances_stopped: Option<LedgerError>,
}

/// The ids an event's payload names, when it names them.
#[derive(Deserialize)]
struct Touches {
    trade_no: Option<TradeNo>,
    merchant_id: Option<MerchantId>,
}

impl SqlReadModels {
    /// Connects and creates the tables if needed. The node's own fold of the log is kept in
    /// the file `model_path`, its balances beside it in `sql_balances.sqlite` (in memory
    /// without one: for tests on short logs).
    pub fn open(
        url: &str,
        schema: &str,
        node_id: &str,
        model_path: Option<&std::path::Path>,
        store: &dyn EventStore,
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
            model: match model_path {
                Some(path) => crate::persisted::open_or_replace(path, store)?,
                None => ReadModel::default(),
            },
            balances: match model_path {
                Some(path) => crate::persisted::open_or_replace(
                    &path.with_file_name("sql_balances.sqlite"),
                    store,
                )?,
                None => Balances::default(),
            },
            balances_stopped: None,
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

    /// One batch: take the lease, fold the events after the checkpoint, write the rows they
    /// touched and the new checkpoint in one transaction.
    pub fn run_once(&mut self, store: &dyn EventStore) -> Result<Round, SqlError> {
        if !store.try_lease(LEASE_NAME, &self.node_id, LEASE_TTL_MS)? {
            return Ok(Round::HeldElsewhere);
        }
        let checkpoint = self.checkpoint()?;
        // Catch these folds up to the checkpoint without writing: those rows are written.
        while self.folded_position() < checkpoint {
            let events = store.read_all(
                self.folded_position() + 1,
                BATCH_EVENTS.min((checkpoint - self.folded_position()) as usize),
            )?;
            assert!(!events.is_empty(), "the log ends before the SQL checkpoint");
            for event in &events {
                self.fold(event);
            }
            self.commit_folds()?;
        }
        // What to write: every event after the checkpoint that this model already has (it can
        // be ahead after a round another node overtook), and a batch more.
        let already_folded = (self.model.position().max(checkpoint) - checkpoint) as usize;
        let events = store.read_all(checkpoint + 1, already_folded.max(BATCH_EVENTS))?;
        let Some(last) = events.last() else {
            return Ok(Round::Idle);
        };
        let target = last.global_position.max(self.model.position());
        let mut trade_nos: BTreeSet<TradeNo> = BTreeSet::new();
        let mut merchants: BTreeSet<MerchantId> = BTreeSet::new();
        for event in &events {
            self.fold(event);
            touched(event, &mut trade_nos, &mut merchants);
        }
        assert_eq!(
            self.model.position(),
            target,
            "the model is at the batch's end"
        );
        for trade_no in &trade_nos {
            if let Some(payment) = self.model.payment(trade_no)? {
                merchants.insert(payment.merchant_id);
            }
        }
        self.write(checkpoint, target, &trade_nos, &merchants)
    }

    fn write(
        &mut self,
        checkpoint: u64,
        target: u64,
        trade_nos: &BTreeSet<TradeNo>,
        merchants: &BTreeSet<MerchantId>,
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
            self.commit_folds()?;
            return Ok(Round::Overtaken);
        }
        let upsert_payment = transaction.prepare(&format!(
            "INSERT INTO {schema}.rm_payments (trade_no, merchant_id, order_no, app_id, channel, status, currency, \
             amount_minor, fee_minor, refunded_minor, created_at, paid_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
             ON CONFLICT (trade_no) DO UPDATE SET status = EXCLUDED.status, fee_minor = EXCLUDED.fee_minor, \
             refunded_minor = EXCLUDED.refunded_minor, paid_at = EXCLUDED.paid_at"
        ))?;
        for trade_no in trade_nos {
            let Some(payment) = self.model.payment(trade_no)? else {
                continue;
            };
            let row = PaymentRow::of(&payment);
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
        // Stopped balances keep the rows of their last good position.
        let merchants = match self.balances_stopped {
            None => merchants.iter().collect(),
            Some(_) => Vec::new(),
        };
        for merchant_id in merchants {
            for (account, currency, balance_minor) in
                self.balances.ledger().merchant_balances(merchant_id)
            {
                transaction.execute(
                    &upsert_balance,
                    &[
                        &merchant_id.as_str(),
                        &account,
                        &currency.code(),
                        &balance_minor,
                    ],
                )?;
            }
        }
        transaction.commit()?;
        // After the rows: a crash in between leaves this node's folds behind the rows, which
        // the next round folds again (the rows are upserts), never ahead of them.
        self.commit_folds()?;
        Ok(Round::Advanced(target))
    }

    /// Where both folds are (the read model alone once the balances stopped).
    fn folded_position(&self) -> u64 {
        match self.balances_stopped {
            None => self.model.position().min(self.balances.position()),
            Some(_) => self.model.position(),
        }
    }

    /// Applies `event` to each fold that has not applied it yet.
    fn fold(&mut self, event: &RecordedEvent) {
        if event.global_position > self.model.position() {
            self.model.apply(event);
        }
        if self.balances_stopped.is_none() && event.global_position > self.balances.position() {
            if let Err(error) = self.balances.try_apply(event) {
                tracing::error!(
                    position = event.global_position,
                    event_type = %event.event_type,
                    %error,
                    "SQL read models: the balances stopped; their rows stay as they were"
                );
                self.balances_stopped = Some(error);
            }
        }
    }

    fn commit_folds(&mut self) -> Result<(), SqlError> {
        self.model.commit()?;
        self.balances.write_staged()?;
        Ok(())
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
