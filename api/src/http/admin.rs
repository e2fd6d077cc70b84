//! Operators' endpoints: reconciliations, projections and metrics.

use std::collections::HashMap;
use std::sync::Arc;

use chrono::NaiveDate;
use hyper::http::StatusCode;
use paycenter_domain::events::ReconciliationCompleted;
use paycenter_domain::ids::ChannelAccountId;
use paycenter_domain::Money;
use serde_json::Value;

use crate::error::{ErrorCode, Refusal};
use crate::http::dto::{check_fields, parse_object, MAX_ID_CHARS, MAX_TOKEN_CHARS};
use crate::http::Answer;
use crate::service::reconciliation;
use crate::state::AppState;

/// The largest uploaded bill, in bytes.
pub const MAX_BILL_BYTES: u64 = 16 << 20;

fn parse_date(text: &str) -> Result<NaiveDate, Refusal> {
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .map_err(|_| Refusal::invalid(format!("date {text:?} must be YYYY-MM-DD")))
}

fn parse_account_id(text: &str) -> Result<ChannelAccountId, Refusal> {
    ChannelAccountId::parse(text).map_err(|error| Refusal::invalid(error.to_string()))
}

/// `POST /v1/reconciliations {channel_account_id, date}`: fetches the bill from the channel.
pub async fn reconcile(state: Arc<AppState>, body: bytes::Bytes) -> Answer {
    let object = parse_object(&body)?;
    check_fields(
        &object,
        "",
        &[
            ("channel_account_id", MAX_ID_CHARS),
            ("date", MAX_TOKEN_CHARS),
        ],
    )?;
    let request: crate::wire::ReconcileRequest = crate::wire::read(&object)?;
    let channel_account_id = parse_account_id(&request.channel_account_id)?;
    let date = parse_date(&request.date)?;
    let completed = reconciliation::fetch(&state, &channel_account_id, date).await?;
    Ok((StatusCode::CREATED, reconciliation_json(&completed)))
}

/// `POST /v1/reconciliations/upload?channel_account_id=&date=` with the bill as the body.
pub async fn reconcile_upload(
    state: Arc<AppState>,
    query: HashMap<String, String>,
    body: bytes::Bytes,
) -> Answer {
    let channel_account_id = parse_account_id(
        query
            .get("channel_account_id")
            .ok_or_else(|| Refusal::invalid("channel_account_id is required"))?,
    )?;
    let date = parse_date(
        query
            .get("date")
            .ok_or_else(|| Refusal::invalid("date is required"))?,
    )?;
    let completed = reconciliation::upload(&state, &channel_account_id, date, &body).await?;
    Ok((StatusCode::CREATED, reconciliation_json(&completed)))
}

/// `GET /v1/reconciliations/{id}`
pub async fn get_reconciliation(state: Arc<AppState>, reconciliation_id: String) -> Answer {
    let model = state.model_for_request()?;
    let completed = model.reconciliation(&reconciliation_id)?.ok_or_else(|| {
        Refusal::not_found(
            ErrorCode::ReconciliationNotFound,
            format!("reconciliation {reconciliation_id:?} not found"),
        )
    })?;
    Ok((StatusCode::OK, reconciliation_json(&completed)))
}

/// The answer of a reconciliation.
pub(crate) fn reconciliation_json(completed: &ReconciliationCompleted) -> Value {
    let money = |amount: Option<Money>| amount.map(|amount| amount.to_major_string());
    crate::wire::to_value(&crate::wire::ReconciliationAnswer {
        reconciliation_id: completed.reconciliation_id.clone(),
        merchant_id: completed.merchant_id.to_string(),
        channel_account_id: completed.channel_account_id.to_string(),
        date: completed.date.to_string(),
        source: completed.source.clone(),
        bill_lines: completed.n_bill_lines,
        matched: completed.n_matched,
        created_at: completed.completed_at.to_rfc3339(),
        discrepancies: completed
            .discrepancies
            .iter()
            .map(|discrepancy| crate::wire::DiscrepancyAnswer {
                kind: discrepancy.kind.as_str().to_owned(),
                trade_no: discrepancy.trade_no.to_string(),
                order_no: discrepancy.order_no.as_ref().map(ToString::to_string),
                channel_trade_no: discrepancy
                    .channel_trade_no
                    .as_ref()
                    .map(ToString::to_string),
                paycenter_amount: money(discrepancy.paycenter_amount),
                channel_amount: money(discrepancy.channel_amount),
                paycenter_status: discrepancy
                    .paycenter_status
                    .map(|status| status.as_str().to_owned()),
            })
            .collect(),
        payouts: completed
            .payouts
            .as_ref()
            .map(|payouts| crate::wire::PayoutsReconciledAnswer {
                checked: payouts.n_checked,
                matched: payouts.n_matched,
                discrepancies: payouts
                    .discrepancies
                    .iter()
                    .map(|discrepancy| crate::wire::PayoutDiscrepancyAnswer {
                        kind: discrepancy.kind.as_str().to_owned(),
                        payout_id: discrepancy.payout_id.clone(),
                        payout_no: discrepancy.payout_no.clone(),
                        paycenter_amount: discrepancy.paycenter_amount.to_major_string(),
                        paycenter_status: discrepancy.paycenter_status.as_str().to_owned(),
                        channel_amount: money(discrepancy.channel_amount),
                        channel_status: discrepancy
                            .channel_status
                            .map(|status| status.as_str().to_owned()),
                    })
                    .collect(),
            }),
    })
}

/// `GET /v1/admin/projections`
pub async fn list_projections(state: Arc<AppState>) -> Answer {
    Ok((
        StatusCode::OK,
        crate::wire::to_value(&crate::wire::ProjectionsAnswer {
            projections: crate::projections::statuses(&state)?,
        }),
    ))
}

/// `POST /v1/admin/projections/{name}/rebuild`: starts an online rebuild; answers at once.
pub async fn rebuild_projection(state: Arc<AppState>, name: String) -> Answer {
    let status = crate::projections::start_rebuild(&state, &name)?;
    Ok((StatusCode::ACCEPTED, crate::wire::to_value(&status)))
}

/// `GET /metrics`: Prometheus text.
pub fn metrics_text(state: &AppState) -> String {
    // Kept by the read model as events arrive: a scrape does not walk every payment.
    let (counts, n_anomalies, open_alerts, breakers) = {
        let model = state.model_lock();
        (
            model.status_counts().clone(),
            model.anomaly_counts().clone(),
            model.open_alerts(),
            model.breakers(),
        )
    };
    let gauges = &state.metrics.gauges;
    for status in ["pending", "succeeded", "failed", "closed"] {
        gauges
            .payments
            .with_label_values(&[status])
            .set(counts.get(status).copied().unwrap_or(0) as i64);
    }
    for kind in ["amount_mismatch", "currency_mismatch", "account_mismatch"] {
        gauges
            .payment_anomalies
            .with_label_values(&[kind])
            .set(n_anomalies.get(kind).copied().unwrap_or(0) as i64);
    }
    let head = tokio::task::block_in_place(|| state.store.head_position()).unwrap_or(0);
    for projection in crate::projections::projections(state) {
        gauges
            .projection_lag_events
            .with_label_values(&[projection.name])
            .set(head.saturating_sub(projection.position) as i64);
        gauges
            .projection_running
            .with_label_values(&[projection.name])
            .set(i64::from(projection.stopped.is_none()));
    }
    gauges
        .store_accepting_appends
        .set(i64::from(state.store.health().accepting_appends));
    let audit = &state.chain_audit;
    gauges.chain_verified_position.set(
        audit
            .verified_through
            .load(std::sync::atomic::Ordering::Relaxed) as i64,
    );
    gauges
        .chain_checkpoint_position
        .set(audit.target.load(std::sync::atomic::Ordering::Relaxed) as i64);
    gauges.chain_broken.set(i64::from(audit.broken().is_some()));
    for rule in paycenter_domain::vocabulary::AlertRule::ALL {
        let n_open = open_alerts
            .iter()
            .filter(|(condition, _)| condition.rule == *rule)
            .count();
        gauges
            .alerts_open
            .with_label_values(&[rule.as_str()])
            .set(n_open as i64);
    }
    for (account, breaker) in breakers {
        let value = match breaker {
            paycenter_domain::routing::BreakerState::Closed => 0,
            paycenter_domain::routing::BreakerState::HalfOpen => 1,
            paycenter_domain::routing::BreakerState::Open => 2,
        };
        gauges
            .channel_breaker_state
            .with_label_values(&[account.as_str()])
            .set(value);
    }
    state.metrics.render()
}
