//! The rules that raise and resolve alerts, evaluated every `PAYCENTER_ALERT_INTERVAL_SECONDS`
//! on every node (a raise is idempotent per condition: the condition's stream says whether one
//! is open). Each rule answers the conditions that hold now; [`alerts::observe`] raises what is
//! new and resolves what stopped.

use std::time::{Duration, Instant};

use paycenter_domain::alerts::{Condition, Observation};
use paycenter_domain::vocabulary::AlertRule;

use crate::error::Refusal;
use crate::service::alerts;
use crate::state::AppState;

pub use crate::state::AlertThresholds;

fn observation(
    rule: AlertRule,
    subject: impl Into<String>,
    summary: String,
    details: String,
) -> Observation {
    Observation {
        condition: Condition {
            rule,
            subject: subject.into(),
        },
        summary,
        details,
    }
}

/// Evaluates every rule once.
pub async fn evaluate(state: &AppState, data_dir: Option<&std::path::Path>) -> Result<(), Refusal> {
    let thresholds = state.config.alerts;
    // What keeps alerts from being recorded or delivered is told directly as well.
    let store = state.store.health();
    alerts::tell_directly(
        state,
        "store",
        !store.accepting_appends,
        &format!(
            "the event store stopped accepting appends: {}",
            store.last_error.unwrap_or_default()
        ),
    )
    .await;
    let stopped = state.read_model.health.stopped();
    alerts::tell_directly(
        state,
        "read_model",
        stopped.is_some(),
        &stopped.map_or_else(String::new, |stopped| {
            format!(
                "the read model stopped at position {} ({}): {}",
                stopped.position, stopped.event_type, stopped.reason
            )
        }),
    )
    .await;
    alerts::observe(
        state,
        AlertRule::ProjectionStopped,
        projection_stopped(state),
    )
    .await?;
    alerts::observe(
        state,
        AlertRule::ProjectionLagging,
        projection_lagging(state, thresholds)?,
    )
    .await?;
    alerts::observe(
        state,
        AlertRule::StoreAppendErrors,
        store_append_errors(state),
    )
    .await?;
    if let Some(data_dir) = data_dir {
        alerts::observe(state, AlertRule::DiskLow, disk_low(data_dir, thresholds)).await?;
    }
    alerts::observe(
        state,
        AlertRule::ChannelFailureRate,
        channel_failure_rate(state, thresholds),
    )
    .await?;
    alerts::observe(
        state,
        AlertRule::WebhooksFailing,
        webhooks_failing(state, thresholds)?,
    )
    .await?;
    alerts::observe(
        state,
        AlertRule::ReconciliationDiscrepancies,
        reconciliation_discrepancies(state)?,
    )
    .await?;
    alerts::observe(state, AlertRule::Anomaly, anomalies(state)?).await?;
    alerts::observe(state, AlertRule::StuckPayments, stuck_payments(state)).await?;
    alerts::observe(
        state,
        AlertRule::CredentialsExpiring,
        credentials_expiring(state, thresholds)?,
    )
    .await?;
    Ok(())
}

fn projection_stopped(state: &AppState) -> Vec<Observation> {
    crate::projections::projections(state)
        .into_iter()
        .filter_map(|projection| {
            let stopped = projection.stopped?;
            Some(observation(
                AlertRule::ProjectionStopped,
                projection.name,
                format!(
                    "projection {} stopped at position {}",
                    projection.name, stopped.position
                ),
                format!(
                    "- event: `{}`\n- reason: {}",
                    stopped.event_type, stopped.reason
                ),
            ))
        })
        .collect()
}

fn projection_lagging(
    state: &AppState,
    thresholds: AlertThresholds,
) -> Result<Vec<Observation>, Refusal> {
    let mut observations = Vec::new();
    // A stopped projection is `projection_stopped`'s; every other one lags or not.
    for projection in crate::projections::projections(state) {
        if projection.stopped.is_some() {
            continue;
        }
        let position = projection.position;
        let next = tokio::task::block_in_place(|| state.store.read_all(position + 1, 1))?;
        let Some(next) = next.first() else {
            continue;
        };
        let waiting_seconds = (state.clock.now() - next.recorded_at).num_seconds();
        if waiting_seconds < thresholds.projection_lag_seconds as i64 {
            continue;
        }
        observations.push(observation(
            AlertRule::ProjectionLagging,
            projection.name,
            format!(
                "the {} projection is {waiting_seconds} s behind the log",
                projection.name
            ),
            format!(
                "- applied: {position}\n- oldest waiting: {} ({})",
                next.global_position,
                next.recorded_at.to_rfc3339()
            ),
        ));
    }
    Ok(observations)
}

fn store_append_errors(state: &AppState) -> Vec<Observation> {
    let health = state.store.health();
    if health.accepting_appends {
        return Vec::new();
    }
    vec![observation(
        AlertRule::StoreAppendErrors,
        "store",
        "the event store stopped accepting appends".to_owned(),
        format!("- last error: {}", health.last_error.unwrap_or_default()),
    )]
}

/// Free bytes of the file system holding `path`, by `statvfs`.
fn free_bytes(path: &std::path::Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `path` is a NUL-terminated string and `stats` a valid statvfs to fill.
    let status = unsafe { libc::statvfs(path.as_ptr(), &mut stats) };
    (status == 0).then(|| stats.f_bavail as u64 * stats.f_frsize as u64)
}

fn disk_low(data_dir: &std::path::Path, thresholds: AlertThresholds) -> Vec<Observation> {
    let Some(free) = free_bytes(data_dir) else {
        return Vec::new();
    };
    let free_mb = free / (1 << 20);
    if free_mb >= thresholds.disk_free_mb {
        return Vec::new();
    }
    vec![observation(
        AlertRule::DiskLow,
        "data_dir",
        format!("{free_mb} MB free on the data directory's disk"),
        format!(
            "- threshold: {} MB\n- path: `{}`",
            thresholds.disk_free_mb,
            data_dir.display()
        ),
    )]
}

fn channel_failure_rate(state: &AppState, thresholds: AlertThresholds) -> Vec<Observation> {
    let window = Duration::from_secs(thresholds.channel_window_seconds);
    state
        .channel_outcomes
        .tallies(window, Instant::now())
        .into_iter()
        .filter(|(_, tally)| {
            paycenter_domain::routing::fails_too_often(
                tally.attempts,
                tally.failures,
                thresholds.channel_min_attempts,
                thresholds.channel_failure_percent,
            )
        })
        .map(|(account, tally)| {
            observation(
                AlertRule::ChannelFailureRate,
                account.as_str(),
                format!(
                    "channel account {account}: {} of {} initiations failed in {} s",
                    tally.failures, tally.attempts, thresholds.channel_window_seconds
                ),
                format!(
                    "- threshold: {}% of at least {}",
                    thresholds.channel_failure_percent, thresholds.channel_min_attempts
                ),
            )
        })
        .collect()
}

fn webhooks_failing(
    state: &AppState,
    thresholds: AlertThresholds,
) -> Result<Vec<Observation>, Refusal> {
    let now = state.clock.now();
    let health = state.model_for_request()?.webhook_health();
    Ok(health
        .into_iter()
        .filter_map(|(app_id, health)| {
            let failing_for = health
                .failing_since
                .map(|since| (now - since).num_seconds());
            let exhausted = health.exhausted_at.is_some();
            let too_long = failing_for
                .is_some_and(|seconds| seconds >= thresholds.webhook_failing_seconds as i64);
            if !exhausted && !too_long {
                return None;
            }
            let summary = if exhausted {
                format!("app {app_id}: a webhook was given up after every retry")
            } else {
                format!(
                    "app {app_id}: webhooks failing for {} s",
                    failing_for.unwrap_or(0)
                )
            };
            Some(observation(
                AlertRule::WebhooksFailing,
                app_id.as_str(),
                summary,
                format!(
                    "- failing since: {}\n- last delivered: {}",
                    health
                        .failing_since
                        .map(|at| at.to_rfc3339())
                        .unwrap_or_default(),
                    health
                        .last_delivered_at
                        .map(|at| at.to_rfc3339())
                        .unwrap_or_else(|| "never".to_owned())
                ),
            ))
        })
        .collect())
}

fn reconciliation_discrepancies(state: &AppState) -> Result<Vec<Observation>, Refusal> {
    let model = state.model_for_request()?;
    let mut found = Vec::new();
    for account_id in model.channel_accounts().keys() {
        let step = model.reconciliations_step(Some(account_id), None)?;
        let Some((_, latest)) = step.entries.first() else {
            continue;
        };
        let Some(reconciliation) = model.reconciliation(&latest.reconciliation_id)? else {
            continue;
        };
        if reconciliation.discrepancies.is_empty() {
            continue;
        }
        let kinds: Vec<String> = reconciliation
            .discrepancies
            .iter()
            .take(10)
            .map(|discrepancy| {
                format!("- `{}` {}", discrepancy.kind.as_str(), discrepancy.trade_no)
            })
            .collect();
        found.push(observation(
            AlertRule::ReconciliationDiscrepancies,
            account_id.as_str(),
            format!(
                "reconciliation of {account_id} for {}: {} discrepancies",
                reconciliation.date,
                reconciliation.discrepancies.len()
            ),
            format!(
                "- reconciliation: `{}`\n{}",
                reconciliation.reconciliation_id,
                kinds.join("\n")
            ),
        ));
    }
    Ok(found)
}

fn anomalies(state: &AppState) -> Result<Vec<Observation>, Refusal> {
    let model = state.model_for_request()?;
    // Still open: the payments whose anomaly alert is open and whose reported money is not
    // refunded yet; new: anomalies no alert has been raised for.
    let mut trade_nos = model.anomalies_unalerted();
    for (condition, _) in model.open_alerts() {
        if condition.rule == AlertRule::Anomaly {
            if let Ok(trade_no) = paycenter_domain::ids::TradeNo::parse(&condition.subject) {
                trade_nos.push(trade_no);
            }
        }
    }
    trade_nos.sort();
    trade_nos.dedup();
    let mut found = Vec::new();
    for trade_no in trade_nos {
        let Some(payment) = model.payment(&trade_no)? else {
            continue;
        };
        let unsettled: Vec<_> = payment
            .anomalies
            .iter()
            .filter(|anomaly| {
                anomaly.refund_status != paycenter_domain::payment::RefundStatus::Succeeded
            })
            .collect();
        let new = model.anomalies_unalerted().contains(&trade_no);
        if unsettled.is_empty() && !new {
            continue;
        }
        let lines: Vec<String> = payment
            .anomalies
            .iter()
            .map(|anomaly| {
                format!(
                    "- `{}`: reported {}, refund {:?}",
                    anomaly.kind.as_str(),
                    anomaly.reported_amount,
                    anomaly.refund_status
                )
            })
            .collect();
        found.push(observation(
            AlertRule::Anomaly,
            trade_no.as_str(),
            format!("payment {trade_no}: a channel reported money that contradicts the attempt"),
            lines.join("\n"),
        ));
    }
    Ok(found)
}

fn stuck_payments(state: &AppState) -> Vec<Observation> {
    state
        .channel_outcomes
        .stuck()
        .into_iter()
        .map(|(account, trade_nos, oldest)| {
            let listed: Vec<String> = trade_nos.iter().take(10).map(|trade_no| format!("- `{trade_no}`")).collect();
            observation(
                AlertRule::StuckPayments,
                account.as_str(),
                format!(
                    "channel account {account}: {} payments stay pending past the sweep and the channel's query fails",
                    trade_nos.len()
                ),
                format!("- pending since: {}\n{}", oldest.to_rfc3339(), listed.join("\n")),
            )
        })
        .collect()
}

fn credentials_expiring(
    state: &AppState,
    thresholds: AlertThresholds,
) -> Result<Vec<Observation>, Refusal> {
    let now = state.clock.now();
    let horizon = now + chrono::Duration::days(thresholds.credentials_expiry_days as i64);
    let (accounts, open): (Vec<paycenter_domain::ids::ChannelAccountId>, Vec<String>) = {
        let model = state.model_for_request()?;
        let accounts = model
            .channel_accounts()
            .keys()
            .filter(|account| !model.is_channel_account_disabled(account))
            .cloned()
            .collect();
        let open = model
            .open_alerts()
            .into_iter()
            .filter(|(condition, _)| condition.rule == AlertRule::CredentialsExpiring)
            .map(|(condition, _)| condition.subject)
            .collect();
        (accounts, open)
    };
    let mut found = Vec::new();
    for account in accounts {
        let Ok((adapter, params)) = state.account_adapter(&account) else {
            continue;
        };
        let Some(expires_at) = adapter
            .credentials_expire_at(&params)
            .and_then(|unix| chrono::DateTime::from_timestamp(unix, 0))
        else {
            // Not known (yet) since this start: an open alert stands until it is.
            if open.iter().any(|subject| subject == account.as_str()) {
                found.push(observation(
                    AlertRule::CredentialsExpiring,
                    account.as_str(),
                    format!("channel account {account}: its keys expire soon (not checked again since the restart)"),
                    String::new(),
                ));
            }
            continue;
        };
        if expires_at > horizon {
            continue;
        }
        found.push(observation(
            AlertRule::CredentialsExpiring,
            account.as_str(),
            format!("channel account {account}: its keys expire at {}", expires_at.to_rfc3339()),
            format!(
                "- threshold: {} days\n- renew them at the channel, then rotate the account (PUT .../channel-accounts/{account})",
                thresholds.credentials_expiry_days
            ),
        ));
    }
    Ok(found)
}
