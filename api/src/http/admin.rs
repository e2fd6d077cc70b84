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
    let model = state.read_model()?;
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
    })
}

/// `GET /v1/admin/projections`
pub async fn list_projections(state: Arc<AppState>) -> Answer {
    Ok((
        StatusCode::OK,
        crate::wire::to_value(&crate::wire::ProjectionsAnswer {
            projections: vec![crate::projections::status(&state)?],
        }),
    ))
}

/// `POST /v1/admin/projections/{name}/rebuild`: starts an online rebuild; answers at once.
pub async fn rebuild_projection(state: Arc<AppState>, name: String) -> Answer {
    crate::projections::start_rebuild(&state, &name)?;
    Ok((
        StatusCode::ACCEPTED,
        crate::wire::to_value(&crate::projections::status(&state)?),
    ))
}

/// `GET /metrics`: Prometheus text.
pub fn metrics_text(state: &AppState) -> String {
    // Kept by the read model as events arrive: a scrape does not walk every payment.
    let (counts, n_anomalies) = {
        let model = state.model_lock();
        (
            model.status_counts().clone(),
            model.anomaly_counts().clone(),
        )
    };
    let by_status: Vec<(&str, u64)> = ["pending", "succeeded", "failed", "closed"]
        .iter()
        .map(|status| (*status, counts.get(*status).copied().unwrap_or(0)))
        .collect();
    let head = tokio::task::block_in_place(|| state.store.head_position()).unwrap_or(0);
    let mut text = state.metrics.render(&by_status);
    text.push_str("# HELP paycenter_projection_lag_events Events in the log not yet in the projection.\n# TYPE paycenter_projection_lag_events gauge\n");
    let projections = crate::http::health::projections(state);
    for projection in &projections {
        text.push_str(&format!(
            "paycenter_projection_lag_events{{projection=\"{}\"}} {}\n",
            projection.name,
            head.saturating_sub(projection.position)
        ));
    }
    text.push_str("# HELP paycenter_projection_running 1 while the projection applies the log, 0 once it stopped at an event.\n# TYPE paycenter_projection_running gauge\n");
    for projection in &projections {
        text.push_str(&format!(
            "paycenter_projection_running{{projection=\"{}\"}} {}\n",
            projection.name,
            u8::from(projection.stopped.is_none())
        ));
    }
    text.push_str(&format!(
        "# HELP paycenter_store_accepting_appends 1 while the event store records appends.\n# TYPE paycenter_store_accepting_appends gauge\npaycenter_store_accepting_appends {}\n",
        u8::from(state.store.health().accepting_appends)
    ));
    let audit = &state.chain_audit;
    text.push_str(&format!(
        "# HELP paycenter_chain_verified_position Every event up to here verified from position 1 by the background walk below the sealed checkpoint.\n# TYPE paycenter_chain_verified_position gauge\npaycenter_chain_verified_position {}\n# HELP paycenter_chain_checkpoint_position The sealed checkpoint this start verified from (0: it verified the whole log).\n# TYPE paycenter_chain_checkpoint_position gauge\npaycenter_chain_checkpoint_position {}\n# HELP paycenter_chain_broken 1 once the background walk found a broken link.\n# TYPE paycenter_chain_broken gauge\npaycenter_chain_broken {}\n",
        audit.verified_through.load(std::sync::atomic::Ordering::Relaxed),
        audit.target.load(std::sync::atomic::Ordering::Relaxed),
        u8::from(audit.broken().is_some()),
    ));
    text.push_str("# HELP paycenter_payment_anomalies Verified channel reports that contradicted their attempt, by kind.\n# TYPE paycenter_payment_anomalies gauge\n");
    for kind in ["amount_mismatch", "currency_mismatch", "account_mismatch"] {
        text.push_str(&format!(
            "paycenter_payment_anomalies{{kind=\"{kind}\"}} {}\n",
            n_anomalies.get(kind).copied().unwrap_or(0)
        ));
    }
    text
}
