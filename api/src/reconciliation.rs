//! Reconciliation endpoints: a channel account's day against the channel's bill, fetched
//! through the adapter or uploaded; the result is recorded as a `reconciliation.completed`
//! event, so audits see it.

use std::sync::Arc;

use chrono::{NaiveDate, Utc};
use paycenter_domain::events::{Event, ReconciliationCompleted};
use paycenter_domain::ids::{ChannelAccountId, ChannelTradeNo, TradeNo};
use paycenter_domain::reconciliation::{reconcile, BillLine, RecordLine, MAX_BILL_LINES};
use paycenter_domain::{Currency, Money};
use paycenter_store::ExpectedRevision;
use serde_json::{json, Value};
use warp::http::StatusCode;

use crate::dto::{attempt_status, parse_object, required_str};
use crate::error::ApiError;
use crate::handlers::Answer;
use crate::state::AppState;

/// The largest uploaded bill, in bytes.
pub const MAX_BILL_BYTES: u64 = 16 << 20;

fn parse_date(text: &str) -> Result<NaiveDate, ApiError> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| ApiError::invalid(format!("date {text:?} must be YYYY-MM-DD")))
}

fn channel_account(
    state: &AppState,
    text: &str,
) -> Result<paycenter_domain::events::ChannelAccountActivated, ApiError> {
    let id = ChannelAccountId::parse(text).map_err(|error| ApiError::invalid(error.to_string()))?;
    state.channel_account(&id).ok_or_else(|| {
        ApiError::not_found(
            "channel_account_not_found",
            format!("channel account {id} not found"),
        )
    })
}

/// `POST /v1/reconciliations {channel_account_id, date}`: fetches the bill from the channel.
pub async fn fetch_and_reconcile(state: Arc<AppState>, body: bytes::Bytes) -> Answer {
    let object = parse_object(&body)?;
    crate::dto::check_fields(
        &object,
        "",
        &[
            ("channel_account_id", crate::dto::MAX_ID_CHARS),
            ("date", crate::dto::MAX_TOKEN_CHARS),
        ],
    )?;
    let account = channel_account(&state, required_str(&object, "channel_account_id")?)?;
    let date = parse_date(required_str(&object, "date")?)?;
    let adapter = state.channel(account.channel)?;
    let params = state.channel_params(&account)?;
    let rows = adapter
        .daily_bill(&params, &account.channel_account_id, date)
        .await
        .map_err(ApiError::channel_unavailable)?;
    let bill: Vec<BillLine> = rows
        .into_iter()
        .map(|row| BillLine {
            trade_no: row.trade_no,
            channel_trade_no: row.channel_trade_no,
            amount: row.amount,
        })
        .collect();
    record(&state, &account, date, "fetched", bill).await
}

/// `POST /v1/reconciliations/upload?channel_account_id=&date=` with the bill as CSV:
/// `trade_no,channel_trade_no,amount,currency`, a header line first.
pub async fn upload_and_reconcile(
    state: Arc<AppState>,
    query: std::collections::HashMap<String, String>,
    body: bytes::Bytes,
) -> Answer {
    let account = channel_account(
        &state,
        query
            .get("channel_account_id")
            .ok_or_else(|| ApiError::invalid("channel_account_id is required"))?,
    )?;
    let date = parse_date(
        query
            .get("date")
            .ok_or_else(|| ApiError::invalid("date is required"))?,
    )?;
    let bill = parse_bill(&body)?;
    record(&state, &account, date, "uploaded", bill).await
}

/// Parses an uploaded bill; a bad line is refused with its number.
fn parse_bill(body: &[u8]) -> Result<Vec<BillLine>, ApiError> {
    let invalid = |line_no: usize, why: String| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_bill",
            format!("bill line {line_no}: {why}"),
        )
    };
    let text = std::str::from_utf8(body).map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_bill",
            "the bill is not UTF-8 text",
        )
    })?;
    let mut lines = text.lines().enumerate();
    match lines.next() {
        Some((_, header)) if header.trim() == "trade_no,channel_trade_no,amount,currency" => {}
        _ => {
            return Err(invalid(
                1,
                "the header must be trade_no,channel_trade_no,amount,currency".to_owned(),
            ))
        }
    }
    let mut bill = Vec::new();
    for (line_idx, line) in lines {
        let line_no = line_idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        if bill.len() >= MAX_BILL_LINES {
            return Err(invalid(
                line_no,
                format!("a bill has at most {MAX_BILL_LINES} lines"),
            ));
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let [trade_no, channel_trade_no, amount, currency] = fields[..] else {
            return Err(invalid(line_no, "expected 4 fields".to_owned()));
        };
        let currency: Currency = currency
            .parse()
            .map_err(|error: paycenter_domain::MoneyError| invalid(line_no, error.to_string()))?;
        bill.push(BillLine {
            trade_no: TradeNo::parse(trade_no)
                .map_err(|error| invalid(line_no, error.to_string()))?,
            channel_trade_no: ChannelTradeNo::parse(channel_trade_no)
                .map_err(|error| invalid(line_no, error.to_string()))?,
            amount: Money::parse_positive(amount, currency)
                .map_err(|error| invalid(line_no, error.to_string()))?,
        });
    }
    Ok(bill)
}

/// Compares, records the result as an event, answers it.
async fn record(
    state: &AppState,
    account: &paycenter_domain::events::ChannelAccountActivated,
    date: NaiveDate,
    source: &str,
    bill: Vec<BillLine>,
) -> Answer {
    let record: Vec<RecordLine> = {
        let model = state.read_model()?;
        let billed: std::collections::HashSet<&TradeNo> =
            bill.iter().map(|line| &line.trade_no).collect();
        model
            .payments
            .values()
            .filter(|payment| payment.channel_account_id == account.channel_account_id)
            .filter_map(|payment| {
                let paid_that_day = payment
                    .paid_at
                    .is_some_and(|paid_at| paid_at.date_naive() == date);
                (paid_that_day || billed.contains(&payment.trade_no)).then(|| RecordLine {
                    trade_no: payment.trade_no.clone(),
                    order_no: payment.order_no.clone(),
                    channel_trade_no: payment.channel_trade_no.clone(),
                    amount: payment.amount,
                    status: payment.status,
                    paid_that_day,
                })
            })
            .collect()
    };
    let (n_matched, discrepancies) = reconcile(&record, &bill);
    let reconciliation_id = format!("rec_{}", hex::encode(rand::random::<[u8; 12]>()));
    let completed = ReconciliationCompleted {
        reconciliation_id: reconciliation_id.clone(),
        merchant_id: account.merchant_id.clone(),
        channel_account_id: account.channel_account_id.clone(),
        date,
        source: source.to_owned(),
        n_bill_lines: bill.len() as u64,
        n_matched: n_matched as u64,
        discrepancies,
        completed_at: Utc::now(),
    };
    let stream_id = format!("reconciliation-{reconciliation_id}");
    let new_events = Event::to_new_events(
        &[Event::ReconciliationCompleted(completed.clone())],
        &stream_id,
        None,
    );
    let outcome = state
        .store
        .append_async(&stream_id, ExpectedRevision::NoStream, new_events)
        .await?;
    state.wait_for_model(outcome.last_position).await?;
    Ok((StatusCode::CREATED, reconciliation_json(&completed)))
}

/// `GET /v1/reconciliations/{id}`
pub async fn get(state: Arc<AppState>, reconciliation_id: String) -> Answer {
    let model = state.read_model()?;
    let completed = model
        .reconciliations
        .get(&reconciliation_id)
        .ok_or_else(|| {
            ApiError::not_found(
                "reconciliation_not_found",
                format!("reconciliation {reconciliation_id:?} not found"),
            )
        })?;
    Ok((StatusCode::OK, reconciliation_json(completed)))
}

fn reconciliation_json(completed: &ReconciliationCompleted) -> Value {
    let money = |amount: Option<Money>| amount.map(|amount| amount.to_major_string());
    json!({
        "reconciliation_id": completed.reconciliation_id,
        "merchant_id": completed.merchant_id,
        "channel_account_id": completed.channel_account_id,
        "date": completed.date.to_string(),
        "source": completed.source,
        "bill_lines": completed.n_bill_lines,
        "matched": completed.n_matched,
        "created_at": completed.completed_at.to_rfc3339(),
        "discrepancies": completed.discrepancies.iter().map(|discrepancy| json!({
            "kind": discrepancy.kind,
            "trade_no": discrepancy.trade_no,
            "order_no": discrepancy.order_no,
            "channel_trade_no": discrepancy.channel_trade_no,
            "paycenter_amount": money(discrepancy.paycenter_amount),
            "channel_amount": money(discrepancy.channel_amount),
            "paycenter_status": discrepancy.paycenter_status.map(attempt_status),
        })).collect::<Vec<_>>(),
    })
}
