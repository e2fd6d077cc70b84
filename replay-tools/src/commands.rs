//! The commands. Each writes machine-readable output (JSON, JSON lines or CSV) to `out` and
//! answers an error for the caller to print and exit non-zero with.

use std::collections::BTreeMap;
use std::io::Write;

use chrono::{DateTime, Utc};
use paycenter_domain::envelope::RecordedEvent;
use paycenter_domain::ids::MerchantId;
use paycenter_domain::Money;
use paycenter_store::EventStore;
use serde_json::{json, Value};

use crate::fold::{each_event, fold};

/// Output formats of `audit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditFormat {
    /// One JSON document.
    Json,
    /// CSV: one row per account, then one row per payment.
    Csv,
}

/// Output formats of `export`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportFormat {
    /// One JSON object per line.
    Jsonl,
    /// CSV with a header row; the payload is a JSON column.
    Csv,
}

/// How the hash chain was checked before an audit or an export.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChainCheck {
    /// Every event's hash and link checked from position 1.
    Verified {
        /// Events checked.
        events: u64,
        /// The hash of the last one.
        head_hash: String,
    },
    /// Skipped (`--no-verify`).
    Skipped,
}

impl ChainCheck {
    /// The check as the audit's JSON carries it.
    pub fn json(&self) -> Value {
        match self {
            ChainCheck::Verified { events, head_hash } => {
                json!({ "verified": true, "events": events, "head_hash": head_hash })
            }
            ChainCheck::Skipped => {
                json!({ "verified": false, "reason": "not verified: --no-verify" })
            }
        }
    }

    /// The check as one sentence.
    pub fn sentence(&self) -> String {
        match self {
            ChainCheck::Verified { events, head_hash } => {
                format!("hash chain verified: {events} events, head {head_hash}")
            }
            ChainCheck::Skipped => "hash chain NOT verified (--no-verify)".to_owned(),
        }
    }
}

/// Verifies the whole chain before an audit or an export (unless `verify` is false): what
/// they read must be what was recorded. A broken chain is an error naming where it breaks.
pub fn check_chain(store: &dyn EventStore, verify: bool) -> Result<ChainCheck, String> {
    if !verify {
        return Ok(ChainCheck::Skipped);
    }
    let report = store.verify_chain().map_err(|error| {
        format!("the hash chain does not verify, so nothing is read from it: {error}")
    })?;
    Ok(ChainCheck::Verified {
        events: report.n_events,
        head_hash: hex::encode(report.head_hash),
    })
}

/// `verify`: the hash chain, that no event id repeats, then every invariant of the read model
/// and the ledger.
pub fn verify(store: &dyn EventStore, out: &mut dyn Write) -> Result<(), String> {
    let report = store.verify_chain().map_err(|error| error.to_string())?;
    // The embedded store recognizes replayed ids within a window of recent events only; here
    // every id is checked against every other (16 bytes of memory per event), in the same
    // walk of the log that folds the projections.
    let mut event_ids = std::collections::HashSet::new();
    let scratch = fold(store, None, |event| {
        if event_ids.insert(event.event_id.as_u128()) {
            return Ok(());
        }
        Err(format!(
            "event id {} at position {} is stored twice",
            event.event_id, event.global_position
        ))
    })
    .map_err(|error| error.to_string())?;
    drop(event_ids);
    let ledger = scratch.balances.ledger();
    ledger
        .check()
        .map_err(|reason| format!("ledger does not balance: {reason}"))?;
    let totals: BTreeMap<String, Value> = ledger
        .totals()
        .iter()
        .map(|(currency, (debits, credits))| {
            (currency.code().to_owned(), json!({ "debits": Money::from_minor(*debits, *currency).to_major_string(), "credits": Money::from_minor(*credits, *currency).to_major_string() }))
        })
        .collect();
    let summary = json!({ "ok": true, "events": report.n_events, "head_hash": hex::encode(report.head_hash), "ledger_totals": totals });
    writeln!(out, "{summary}").map_err(|error| error.to_string())
}

/// Where `rebuild` folds.
#[derive(Debug, Clone)]
pub enum RebuildInto {
    /// New files in this directory (a node's `projections/`), which the server opens at its
    /// next start.
    Files(std::path::PathBuf),
    /// A new generation of the tables nodes on one PostgreSQL database share, made live at
    /// once: running nodes move to it.
    Shared(paycenter_projections::shared::SharedTables),
}

/// `rebuild`: folds every projection (or the one named) from position 1, offline, into new
/// files or a new generation of the shared tables (`into`), makes them the live ones, and
/// reports each one's position and digest; the digest equals a live server's
/// `GET /v1/admin/projections` for the same log.
pub fn rebuild(
    store: &dyn EventStore,
    projection: Option<&str>,
    into: &RebuildInto,
    out: &mut dyn Write,
) -> Result<(), String> {
    use paycenter_projections::balances::Balances;
    use paycenter_projections::{Projection as _, ReadModel};
    let names = [ReadModel::NAME, Balances::NAME];
    if let Some(name) = projection {
        if !names.contains(&name) {
            return Err(format!(
                "no projection {name:?}; the projections are {names:?}"
            ));
        }
    }
    if let RebuildInto::Files(model_dir) = into {
        std::fs::create_dir_all(model_dir).map_err(|error| error.to_string())?;
    }
    let wanted = |name: &str| projection.is_none_or(|wanted| wanted == name);
    let mut rebuilt = Vec::new();
    if wanted(ReadModel::NAME) {
        rebuilt.push(rebuild_one::<ReadModel>(store, into)?);
    }
    if wanted(Balances::NAME) {
        rebuilt.push(rebuild_one::<Balances>(store, into)?);
    }
    writeln!(out, "{}", json!({ "projections": rebuilt })).map_err(|error| error.to_string())
}

/// Folds projection `P` into a new generation and makes it the live one.
fn rebuild_one<P: paycenter_projections::Projection>(
    store: &dyn EventStore,
    into: &RebuildInto,
) -> Result<Value, String> {
    use paycenter_projections::persisted;
    let started = std::time::Instant::now();
    let model_dir = match into {
        RebuildInto::Files(model_dir) => model_dir,
        RebuildInto::Shared(tables) => {
            let model: P =
                paycenter_projections::rebuild::rebuild_shared_tables(store, tables, |model| {
                    crate::fold::fold_into(store, None, model).map_err(|error| {
                        paycenter_projections::model::ModelError::Table(
                            paycenter_projections::tables::TableError {
                                path: format!("the {} fold", P::NAME),
                                reason: error.to_string(),
                            },
                        )
                    })
                })
                .map_err(|error| error.to_string())?;
            let digest = model.digest().map_err(|error| error.to_string())?;
            let backing = model
                .backing()
                .map(|backing| backing.path().display().to_string());
            return Ok(json!({
                "name": P::NAME,
                "version": P::VERSION,
                "position": model.position(),
                "digest": digest,
                "tables": backing,
                "seconds": started.elapsed().as_secs_f64(),
            }));
        }
    };
    let path = persisted::new_generation_path::<P>(model_dir);
    let folded = P::open(&path, store)
        .map_err(|error| error.to_string())
        .and_then(|mut model| {
            crate::fold::fold_into(store, None, &mut model).map_err(|error| error.to_string())?;
            Ok(model)
        });
    let model = match folded {
        Ok(model) => model,
        Err(error) => {
            persisted::remove_file_set(&path);
            return Err(error);
        }
    };
    let digest = model.digest().map_err(|error| error.to_string())?;
    persisted::make_live::<P>(model_dir, &path).map_err(|error| error.to_string())?;
    Ok(json!({
        "name": P::NAME,
        "version": P::VERSION,
        "position": model.position(),
        "digest": digest,
        "file": path.display().to_string(),
        "seconds": started.elapsed().as_secs_f64(),
    }))
}

/// `stats`: counts by event type and by stream category (the stream name before its first `-`).
pub fn stats(store: &dyn EventStore, out: &mut dyn Write) -> Result<(), String> {
    let mut by_type: BTreeMap<String, u64> = BTreeMap::new();
    let mut by_category: BTreeMap<String, u64> = BTreeMap::new();
    let mut streams: BTreeMap<String, ()> = BTreeMap::new();
    let mut n_events = 0u64;
    each_event(store, 1, "counting", |event| {
        n_events += 1;
        *by_type.entry(event.event_type.clone()).or_default() += 1;
        let category = event.stream_id.split('-').next().unwrap_or("").to_owned();
        *by_category.entry(category).or_default() += 1;
        streams.insert(event.stream_id.clone(), ());
        Ok(())
    })?;
    let summary = json!({ "events": n_events, "streams": streams.len(), "events_by_type": by_type, "events_by_stream_category": by_category });
    writeln!(out, "{summary}").map_err(|error| error.to_string())
}

fn envelope_json(event: &RecordedEvent) -> Value {
    json!({
        "global_position": event.global_position,
        "stream_id": event.stream_id,
        "stream_revision": event.stream_revision,
        "event_id": event.event_id,
        "event_type": event.event_type,
        "schema_version": event.schema_version,
        "recorded_at": event.recorded_at.to_rfc3339(),
        "correlation_id": event.correlation_id,
        "causation_id": event.causation_id,
        "payload": serde_json::from_str::<Value>(&event.payload).unwrap_or(Value::String(event.payload.clone())),
        "prev_hash": hex::encode(event.prev_hash),
        "hash": hex::encode(event.hash),
    })
}

/// Quotes a CSV field when it needs it (RFC 4180).
fn csv_field(text: &str) -> String {
    if text.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// `export`: the raw log from `from_position`, for finance tools.
pub fn export(
    store: &dyn EventStore,
    format: ExportFormat,
    from_position: u64,
    out: &mut dyn Write,
) -> Result<(), String> {
    let io = |error: std::io::Error| error.to_string();
    if format == ExportFormat::Csv {
        writeln!(out, "global_position,stream_id,stream_revision,event_id,event_type,schema_version,recorded_at,payload,hash").map_err(io)?;
    }
    each_event(store, from_position, "exporting", |event| match format {
        ExportFormat::Jsonl => writeln!(out, "{}", envelope_json(event)).map_err(io),
        ExportFormat::Csv => writeln!(
            out,
            "{},{},{},{},{},{},{},{},{}",
            event.global_position,
            csv_field(&event.stream_id),
            event.stream_revision,
            event.event_id,
            csv_field(&event.event_type),
            event.schema_version,
            event.recorded_at.to_rfc3339(),
            csv_field(&event.payload),
            hex::encode(event.hash)
        )
        .map_err(io),
    })
}

/// `audit`: balances and payments as they stood at `at` (later events ignored), for all
/// merchants or one.
pub fn audit(
    store: &dyn EventStore,
    at: DateTime<Utc>,
    merchant: Option<&MerchantId>,
    format: AuditFormat,
    chain: &ChainCheck,
    out: &mut dyn Write,
) -> Result<(), String> {
    let io = |error: std::io::Error| error.to_string();
    let scratch = fold(store, Some(at), |_| Ok(())).map_err(|error| error.to_string())?;
    let model = &scratch.model;
    let mut merchants: Vec<&MerchantId> = model
        .merchants()
        .keys()
        .filter(|merchant_id| merchant.is_none_or(|wanted| wanted == *merchant_id))
        .collect();
    merchants.sort();
    // In trade-number order, as the model's table keeps them.
    let mut payments = Vec::new();
    model
        .for_each_payment(&mut |payment| {
            if merchant.is_none_or(|wanted| wanted == &payment.merchant_id) {
                payments.push(payment);
            }
        })
        .map_err(|error| error.to_string())?;
    let status = |payment: &paycenter_projections::model::PaymentView| {
        format!("{:?}", payment.status).to_lowercase()
    };
    match format {
        AuditFormat::Json => {
            let balances: Vec<Value> = merchants
                .iter()
                .map(|merchant_id| {
                    let accounts: Vec<Value> = scratch
                        .balances
                        .ledger()
                        .merchant_balances(merchant_id)
                        .into_iter()
                        .map(|(account, currency, minor)| json!({ "account": account, "currency": currency.code(), "balance": Money::format_balance(minor, currency) }))
                        .collect();
                    json!({ "merchant_id": merchant_id, "accounts": accounts })
                })
                .collect();
            let payments: Vec<Value> = payments
                .iter()
                .map(|payment| {
                    json!({
                        "trade_no": payment.trade_no, "order_no": payment.order_no, "merchant_id": payment.merchant_id,
                        "amount": payment.amount.to_major_string(), "currency": payment.amount.currency().code(),
                        "status": status(payment), "refunded_amount": payment.refunded().to_major_string(),
                    })
                })
                .collect();
            let document = json!({ "at": at.to_rfc3339(), "position": model.position(), "chain": chain.json(), "balances": balances, "payments": payments });
            writeln!(out, "{document}").map_err(io)
        }
        AuditFormat::Csv => {
            writeln!(
                out,
                "record,merchant_id,key,currency,amount,status,refunded_amount"
            )
            .map_err(io)?;
            for merchant_id in &merchants {
                for (account, currency, minor) in
                    scratch.balances.ledger().merchant_balances(merchant_id)
                {
                    writeln!(
                        out,
                        "balance,{merchant_id},{},{currency},{},,",
                        csv_field(&account),
                        Money::format_balance(minor, currency)
                    )
                    .map_err(io)?;
                }
            }
            for payment in &payments {
                writeln!(
                    out,
                    "payment,{},{},{},{},{},{}",
                    payment.merchant_id,
                    payment.trade_no,
                    payment.amount.currency(),
                    payment.amount.to_major_string(),
                    status(payment),
                    payment.refunded().to_major_string()
                )
                .map_err(io)?;
            }
            Ok(())
        }
    }
}
