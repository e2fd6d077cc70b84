//! Background work the log asks for, driven by the read model so that nothing is lost across
//! restarts:
//! - **scheduler**: every outcome an app must hear of gets a notification (id derived from the
//!   outcome's event id, so scheduling twice appends nothing);
//! - **refund submitter**: every refund requested and not settled is sent to its channel (once
//!   per process; channels treat a repeated refund id as the same refund);
//! - **webhook dispatcher**: due notifications are POSTed, signed, and every attempt recorded.
//!
//! Several nodes on one store all run these loops. Scheduling is idempotent (the stream must
//! not exist yet); a refund submission and each webhook attempt are done under a lease
//! (`EventStore::try_lease`), so one node does each while the others skip it, and a node that
//! dies mid-way hands it over when its lease expires.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use chrono::Utc;
use paycenter_domain::events::{Event, NotificationScheduled};
use paycenter_domain::ids::{NotificationId, RefundId};
use paycenter_domain::notification::{DeliveryOutcome, Notification};
use paycenter_domain::streams;
use paycenter_gateway::http::HttpClient;
use paycenter_store::ExpectedRevision;
use serde_json::json;
use tokio::sync::Semaphore;

use crate::dto::payment_json;
use crate::state::AppState;

/// How often the loops look for work when nothing woke them.
const POLL_INTERVAL_MS: u64 = 50;
/// Webhook deliveries in flight at once.
const MAX_DELIVERIES_IN_FLIGHT: usize = 64;
/// Items taken per round.
const MAX_ITEMS_PER_ROUND: usize = 512;
/// A webhook attempt's lease outlasts the POST's timeout by this much, to record the outcome.
const WEBHOOK_LEASE_MARGIN_MS: u64 = 2_000;
/// A refund submission's lease; channels treat a repeated refund id as the same refund, so a
/// second submission after a crash is harmless.
const REFUND_LEASE_MS: u64 = 30_000;
/// How long a node leaves alone work another node holds the lease of, before asking again.
const HELD_ELSEWHERE_PAUSE_MS: u64 = 1_000;

/// Takes the lease `name` for this node; false (and logged) when it cannot be taken.
fn take_lease(state: &AppState, name: &str, ttl_ms: u64) -> bool {
    match tokio::task::block_in_place(|| state.store.try_lease(name, &state.config.node_id, ttl_ms))
    {
        Ok(held) => held,
        Err(error) => {
            tracing::warn!(%error, lease = name, "taking a lease failed; the work waits");
            false
        }
    }
}

/// Starts the loops on the current runtime.
pub fn spawn(state: Arc<AppState>) {
    tokio::spawn(schedule_notifications(state.clone()));
    tokio::spawn(submit_refunds(state.clone()));
    tokio::spawn(dispatch_webhooks(state));
}

async fn schedule_notifications(state: Arc<AppState>) {
    loop {
        let drafts: Vec<_> = state
            .model
            .read()
            .expect("model lock")
            .unscheduled
            .values()
            .take(MAX_ITEMS_PER_ROUND)
            .cloned()
            .collect();
        for draft in drafts {
            let data = {
                let model = state.model.read().expect("model lock");
                let Some(payment) = model.payments.get(&draft.trade_no) else {
                    continue;
                };
                let mut data = json!({ "payment": payment_json(payment) });
                if let Some(refund_id) = &draft.refund_id {
                    if let Some(refund) = payment
                        .refunds
                        .iter()
                        .find(|refund| &refund.refund_id == refund_id)
                    {
                        data["refund"] = crate::dto::refund_json(refund);
                    }
                }
                data
            };
            let scheduled = Event::NotificationScheduled(NotificationScheduled {
                notification_id: draft.notification_id.clone(),
                app_id: draft.app_id.clone(),
                merchant_id: draft.merchant_id.clone(),
                webhook_type: draft.webhook_type.to_owned(),
                data,
                created_at: draft.occurred_at,
            });
            let new_events = Event::to_new_events(
                &[scheduled],
                &format!("schedule-{}", draft.notification_id),
                None,
            );
            match state
                .store
                .append_async(
                    &streams::notification(&draft.notification_id),
                    ExpectedRevision::NoStream,
                    new_events,
                )
                .await
            {
                Ok(outcome) => state.wait_for_model(outcome.last_position).await,
                // Already scheduled (by an earlier round whose read model update we have not seen).
                Err(paycenter_store::StoreError::WrongExpectedRevision { .. }) => {}
                Err(error) => {
                    tracing::error!(%error, "scheduling a notification failed");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// Longest wait between two submissions of a refund the channel refused.
const MAX_REFUND_RETRY_DELAY_MS: u64 = 60_000;

async fn submit_refunds(state: Arc<AppState>) {
    let mut submitted: HashSet<RefundId> = HashSet::new();
    // Refunds the channel refused: (failures so far, not before). Doubling waits keep a
    // channel that is down (or a sandbox restarted without its trades) from being hammered.
    let mut backoff: HashMap<RefundId, (u32, std::time::Instant)> = HashMap::new();
    loop {
        let now = std::time::Instant::now();
        let pending: Vec<RefundId> = state
            .model
            .read()
            .expect("model lock")
            .refunds_to_submit
            .values()
            .filter(|refund_id| !submitted.contains(*refund_id))
            .filter(|refund_id| {
                backoff
                    .get(*refund_id)
                    .is_none_or(|(_, not_before)| *not_before <= now)
            })
            .take(MAX_ITEMS_PER_ROUND)
            .cloned()
            .collect();
        for refund_id in pending {
            let found = {
                let model = state.model.read().expect("model lock");
                model
                    .refund_trade_nos
                    .get(&refund_id)
                    .and_then(|trade_no| model.payments.get(trade_no))
                    .and_then(|payment| {
                        let refund = payment
                            .refunds
                            .iter()
                            .find(|refund| refund.refund_id == refund_id)?;
                        let account = model.channel_accounts.get(&payment.channel_account_id)?;
                        Some((payment.trade_no.clone(), refund.amount, account.clone()))
                    })
            };
            let Some((trade_no, amount, account)) = found else {
                continue;
            };
            let Ok(adapter) = state.channel(account.channel) else {
                continue;
            };
            // `channel_params` logs why it failed; the refund is retried next round.
            let Ok(params) = state.channel_params(&account) else {
                continue;
            };
            if !take_lease(&state, &format!("refund:{refund_id}"), REFUND_LEASE_MS) {
                // Another node is submitting it; look again once its lease could have ended.
                let failures = backoff.get(&refund_id).map_or(0, |(failures, _)| *failures);
                backoff.insert(
                    refund_id,
                    (
                        failures,
                        std::time::Instant::now() + Duration::from_millis(REFUND_LEASE_MS),
                    ),
                );
                continue;
            }
            match adapter.refund(&params, &trade_no, &refund_id, amount).await {
                Ok(()) => {
                    backoff.remove(&refund_id);
                    submitted.insert(refund_id);
                }
                Err(error) => {
                    let failures = backoff.get(&refund_id).map_or(0, |(failures, _)| *failures) + 1;
                    let delay_ms =
                        (POLL_INTERVAL_MS << failures.min(16)).min(MAX_REFUND_RETRY_DELAY_MS);
                    tracing::warn!(%error, %refund_id, retry_in_ms = delay_ms, "refund submission failed; will retry");
                    backoff.insert(
                        refund_id,
                        (
                            failures,
                            std::time::Instant::now() + Duration::from_millis(delay_ms),
                        ),
                    );
                }
            }
        }
        // Settled refunds leave `refunds_to_submit`; forget their bookkeeping too.
        if !submitted.is_empty() || !backoff.is_empty() {
            let still_pending: HashSet<RefundId> = state
                .model
                .read()
                .expect("model lock")
                .refunds_to_submit
                .values()
                .cloned()
                .collect();
            backoff.retain(|refund_id, _| still_pending.contains(refund_id));
            submitted.retain(|refund_id| still_pending.contains(refund_id));
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

async fn dispatch_webhooks(state: Arc<AppState>) {
    let http = HttpClient::new(state.config.webhook_timeout_ms);
    let permits = Arc::new(Semaphore::new(MAX_DELIVERIES_IN_FLIGHT));
    let in_flight: Arc<std::sync::Mutex<HashSet<NotificationId>>> = Arc::default();
    loop {
        let due: Vec<Notification> = state
            .model
            .read()
            .expect("model lock")
            .due_notifications(Utc::now(), MAX_ITEMS_PER_ROUND)
            .into_iter()
            .map(|(notification, _)| notification.clone())
            .collect();
        for notification in due {
            let notification_id = notification.scheduled.notification_id.clone();
            if !in_flight
                .lock()
                .expect("in-flight lock")
                .insert(notification_id.clone())
            {
                continue;
            }
            let permit = permits
                .clone()
                .acquire_owned()
                .await
                .expect("semaphore open");
            let state = state.clone();
            let http = http.clone();
            let in_flight = in_flight.clone();
            tokio::spawn(async move {
                let attempted = deliver(&state, &http, notification).await;
                drop(permit);
                if !attempted {
                    tokio::time::sleep(Duration::from_millis(HELD_ELSEWHERE_PAUSE_MS)).await;
                }
                in_flight
                    .lock()
                    .expect("in-flight lock")
                    .remove(&notification_id);
            });
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// One delivery attempt, recorded as an event whatever its outcome. False when this node did
/// not attempt it (another node holds the attempt's lease, or the app is unknown here yet).
async fn deliver(state: &AppState, http: &HttpClient, notification: Notification) -> bool {
    let scheduled = &notification.scheduled;
    let attempt_no = notification.n_attempts_total + 1;
    let lease = format!("webhook:{}:{attempt_no}", scheduled.notification_id);
    if !take_lease(
        state,
        &lease,
        state.config.webhook_timeout_ms + WEBHOOK_LEASE_MARGIN_MS,
    ) {
        return false;
    }
    let app = state
        .model
        .read()
        .expect("model lock")
        .apps
        .get(&scheduled.app_id)
        .cloned();
    let Some(app) = app else { return false };
    let secret = match state.master_key.open(&app.webhook_secret_sealed) {
        Ok(secret) => secret,
        Err(error) => {
            tracing::error!(%error, app_id = %app.app_id, "webhook secret does not open");
            return false;
        }
    };
    let body = json!({
        "id": scheduled.notification_id,
        "type": scheduled.webhook_type,
        "created_at": scheduled.created_at.to_rfc3339(),
        "data": scheduled.data,
    })
    .to_string()
    .into_bytes();
    let signature =
        paycenter_gateway::signing::signature_header(&secret, Utc::now().timestamp(), &body);
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("paycenter-signature", signature),
    ];
    let outcome = match http.post(&app.notify_url, &headers, body).await {
        Ok(answer) => DeliveryOutcome {
            http_status: Some(answer.status),
            error: None,
        },
        Err(error) => DeliveryOutcome {
            http_status: None,
            error: Some(error),
        },
    };
    if !outcome.acknowledged() {
        state
            .metrics
            .webhook_failures
            .fetch_add(1, Ordering::Relaxed);
    }
    let stream_id = streams::notification(&scheduled.notification_id);
    let command_id = format!("deliver-{}-{attempt_no}", scheduled.notification_id);
    let schedule = state.config.retry_schedule.clone();
    let result = state
        .execute(&stream_id, &command_id, |history, now| {
            let current = Notification::from_events(history).expect("scheduled");
            if current.n_attempts_total + 1 != attempt_no {
                return Ok(Vec::new()); // Another delivery recorded this attempt first.
            }
            current.decide_attempt(&outcome, &schedule, now)
        })
        .await;
    match result {
        Ok((events, _)) => {
            if events
                .iter()
                .any(|event| matches!(event, Event::NotificationFailed(_)))
            {
                state
                    .metrics
                    .webhooks_exhausted
                    .fetch_add(1, Ordering::Relaxed);
                tracing::error!(notification_id = %scheduled.notification_id, app_id = %app.app_id, "webhook given up after its whole retry schedule");
            }
        }
        Err(error) => {
            tracing::warn!(code = error.code, message = %error.message, "recording a webhook attempt failed")
        }
    }
    true
}
