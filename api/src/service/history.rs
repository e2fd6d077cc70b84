//! The ledger made visible: a payment's events as a timeline, and the trail of what was done in
//! whose name. Both read what the log recorded (the actor rides in each event's payload), and
//! both ask [`access::authorize`] first, as every admin operation does.

use chrono::{DateTime, Utc};
use paycenter_domain::ids::TradeNo;
use paycenter_domain::operators::{recorded_actor, Actor};
use paycenter_projections::model::ActionEntry;

use crate::error::{ErrorCode, Refusal};
use crate::service::access::{self, Permission};
use crate::state::AppState;

/// The most events a timeline shows (an order has at most a few attempts and refunds).
pub const MAX_TIMELINE_EVENTS: usize = 500;
/// Trail entries per page.
pub const TRAIL_PAGE_ENTRIES: usize = 50;

/// One event of a payment's order, as recorded.
#[allow(missing_docs)] // The envelope's fields, named as there.
#[derive(Debug, Clone, serde::Serialize)]
pub struct TimelineEntry {
    pub global_position: u64,
    pub stream_revision: u64,
    pub recorded_at: DateTime<Utc>,
    pub event_type: String,
    /// The attempt it is about, when it is about one.
    pub trade_no: Option<String>,
    /// Who asked for it, when someone did in the console or with the admin token.
    pub actor: Option<Actor>,
    /// The payload, as recorded (channel secrets never reach an order's events).
    pub payload: serde_json::Value,
    /// Its hash on the chain, hex.
    pub hash: String,
}

/// Every event of the order `trade_no` belongs to (all its attempts and refunds), oldest first.
pub fn payment_timeline(
    state: &AppState,
    actor: &Actor,
    trade_no: &str,
) -> Result<Vec<TimelineEntry>, Refusal> {
    access::authorize(actor, Permission::Read)?;
    let trade_no = TradeNo::parse(trade_no).map_err(|error| Refusal::invalid(error.to_string()))?;
    let payment = state
        .model_for_request()?
        .payment(&trade_no)?
        .ok_or_else(|| {
            Refusal::not_found(
                ErrorCode::PaymentNotFound,
                format!("payment {trade_no} not found"),
            )
        })?;
    // The stream the payment was recorded on: an order recorded before order numbers lived in
    // their app's namespace keeps its older stream name.
    let recorded = state.read_stream(&payment.order_stream)?;
    Ok(recorded
        .into_iter()
        .take(MAX_TIMELINE_EVENTS)
        .map(|event| {
            let payload: serde_json::Value =
                serde_json::from_str(&event.payload).unwrap_or(serde_json::Value::Null);
            TimelineEntry {
                global_position: event.global_position,
                stream_revision: event.stream_revision,
                recorded_at: event.recorded_at,
                trade_no: payload
                    .get("trade_no")
                    .and_then(|value| value.as_str())
                    .map(str::to_owned),
                actor: recorded_actor(&event.payload),
                event_type: event.event_type,
                payload,
                hash: hex::encode(event.hash),
            }
        })
        .collect())
}

/// A page of the trail, newest first: events recorded in someone's name below position
/// `below`, and where the next page starts.
pub fn trail(
    state: &AppState,
    actor: &Actor,
    below: Option<u64>,
) -> Result<(Vec<ActionEntry>, Option<u64>), Refusal> {
    access::authorize(actor, Permission::Audit)?;
    let model = state.model_for_request()?;
    let step = model.actions_step(below)?;
    let mut entries: Vec<ActionEntry> = step
        .entries
        .into_iter()
        .map(|(_, entry)| entry)
        .take(TRAIL_PAGE_ENTRIES + 1)
        .collect();
    let next = (entries.len() > TRAIL_PAGE_ENTRIES).then(|| {
        entries.truncate(TRAIL_PAGE_ENTRIES);
        entries.last().map(|entry| entry.global_position)
    });
    Ok((entries, next.flatten()))
}

/// The most events the console's audit folds; a longer log is audited with
/// `paycenter-replay audit`, which has no request to answer within seconds.
pub const MAX_AUDIT_EVENTS: u64 = 1_000_000;
/// Events read from the store per step of an audit.
const AUDIT_BATCH_EVENTS: usize = 1_000;

/// A merchant's balances as they stood: `(account, currency, balance in minor units)` lines and
/// the log position they were folded up to.
pub struct BalancesAsOf {
    /// One line per account and currency.
    pub lines: Vec<(String, paycenter_domain::Currency, i64)>,
    /// The last event folded.
    pub position: u64,
}

/// A merchant's balances as they stood at `at`: the balances projection folded afresh from the
/// start of the log up to the last event recorded at or before `at` (later ones ignored).
pub fn balances_as_of(
    state: &AppState,
    actor: &Actor,
    merchant_id: &paycenter_domain::ids::MerchantId,
    at: DateTime<Utc>,
) -> Result<BalancesAsOf, Refusal> {
    access::authorize(actor, Permission::Audit)?;
    crate::service::known_merchant(&*state.model_for_request()?, merchant_id)?;
    let mut ledger = paycenter_projections::balances::Ledger::default();
    let mut position = 0u64;
    tokio::task::block_in_place(|| -> Result<(), Refusal> {
        loop {
            let batch = state.store.read_all(position + 1, AUDIT_BATCH_EVENTS)?;
            let Some(last) = batch.last() else {
                return Ok(());
            };
            let last_position = last.global_position;
            for event in &batch {
                if event.recorded_at > at {
                    return Ok(());
                }
                ledger.apply_recorded(event).map_err(|error| {
                    Refusal::internal(
                        "audit",
                        format!("at position {}: {error}", event.global_position),
                    )
                })?;
                position = event.global_position;
            }
            if last_position >= MAX_AUDIT_EVENTS {
                return Err(Refusal::invalid(format!(
                    "the log is longer than the {MAX_AUDIT_EVENTS} events the console audits; run paycenter-replay audit --at {}",
                    at.to_rfc3339()
                )));
            }
        }
    })?;
    Ok(BalancesAsOf {
        lines: ledger.merchant_balances(merchant_id),
        position,
    })
}
