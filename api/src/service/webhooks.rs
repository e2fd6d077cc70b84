//! Webhooks: every outcome an app must hear of is scheduled as a notification (its id derived
//! from the outcome's event, so scheduling twice appends nothing), then delivered signed,
//! each attempt recorded whatever it came to, on the retry schedule until acknowledged or
//! given up.

use paycenter_domain::events::{Event, NotificationScheduled};
use paycenter_domain::notification::{DeliveryOutcome, Notification};
use paycenter_domain::streams;
use paycenter_gateway::http::HttpClient;
use paycenter_projections::model::{NotificationDraft, NotificationSubject};
use paycenter_store::{ExpectedRevision, StoreError};
use serde_json::json;

use crate::error::Refusal;
use crate::service::take_lease;
use crate::state::AppState;
use crate::wire::{payment_json, refund_json};

/// A webhook attempt's lease outlasts the POST's timeout by this much, to record the outcome.
const WEBHOOK_LEASE_MARGIN_MS: u64 = 2_000;

/// Schedules the notification `draft` describes, its payload the payment (and refund) as they
/// stand now. Scheduling what is already scheduled appends nothing.
pub async fn schedule(state: &AppState, draft: &NotificationDraft) -> Result<(), Refusal> {
    let data = {
        let model = state.model_lock();
        match &draft.subject {
            NotificationSubject::Payment {
                trade_no,
                refund_id,
            } => {
                let Some(payment) = model.payment(trade_no)? else {
                    return Ok(());
                };
                let mut data = json!({ "payment": payment_json(&payment) });
                if let Some(refund_id) = refund_id {
                    if let Some(refund) = payment
                        .refunds
                        .iter()
                        .find(|refund| &refund.refund_id == refund_id)
                    {
                        data["refund"] = refund_json(refund);
                    }
                }
                data
            }
            NotificationSubject::Payout { payout_id } => {
                let Some(payout) = model.payout(payout_id)? else {
                    return Ok(());
                };
                json!({ "payout": crate::wire::to_value(&crate::wire::payout_answer(&payout)) })
            }
        }
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
        // Already scheduled (by an earlier round whose read model update was not seen yet).
        Err(StoreError::WrongExpectedRevision { .. }) => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The webhook's body and `Paycenter-Signature` header: during a rotation's grace period the
/// header carries a signature with each secret.
fn signed_body(state: &AppState, notification: &Notification) -> Option<(Vec<u8>, String)> {
    let scheduled = &notification.scheduled;
    let (app, previous_secret) = {
        let model = state.model_lock();
        let previous_secret = model
            .previous_webhook_secret(&scheduled.app_id)
            .filter(|(_, valid_until)| state.clock.now() < *valid_until)
            .map(|(sealed, _)| sealed.clone());
        (
            model.apps().get(&scheduled.app_id).cloned()?,
            previous_secret,
        )
    };
    let previous_secret = previous_secret.and_then(|sealed| {
        state
            .master_key
            .open(app.app_id.as_str(), &sealed)
            .map_err(|error| tracing::error!(%error, app_id = %app.app_id, "previous webhook secret does not open"))
            .ok()
    });
    let secret = state
        .master_key
        .open(app.app_id.as_str(), &app.webhook_secret_sealed)
        .map_err(
            |error| tracing::error!(%error, app_id = %app.app_id, "webhook secret does not open"),
        )
        .ok()?;
    let body = json!({
        "id": scheduled.notification_id,
        "type": scheduled.webhook_type,
        "created_at": scheduled.created_at.to_rfc3339(),
        "data": scheduled.data,
    })
    .to_string()
    .into_bytes();
    let mut secrets: Vec<&[u8]> = vec![&secret];
    if let Some(previous) = &previous_secret {
        secrets.push(previous);
    }
    let signature = paycenter_gateway::signing::signature_header_multi(
        &secrets,
        state.clock.now().timestamp(),
        &body,
    );
    Some((body, signature))
}

/// One delivery attempt, recorded as an event whatever its outcome. False when this node did
/// not attempt it (another node holds the attempt's lease, or the app is unknown here yet).
pub async fn deliver(state: &AppState, http: &HttpClient, notification: Notification) -> bool {
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
    let Some(notify_url) = state
        .model_lock()
        .apps()
        .get(&scheduled.app_id)
        .map(|app| app.notify_url.clone())
    else {
        return false;
    };
    let Some((body, signature)) = signed_body(state, &notification) else {
        return false;
    };
    let headers = [
        ("content-type", "application/json".to_owned()),
        ("paycenter-signature", signature),
    ];
    let outcome = match http.post(&notify_url, &headers, body).await {
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
        state.metrics.webhook_failures.inc();
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
                state.metrics.webhooks_exhausted.inc();
                tracing::error!(notification_id = %scheduled.notification_id, app_id = %scheduled.app_id, "webhook given up after its whole retry schedule");
            }
        }
        Err(refusal) => {
            tracing::warn!(code = refusal.code.as_str(), message = %refusal.message, "recording a webhook attempt failed")
        }
    }
    true
}

/// Delivers a settled notification again (the app's, checked by the caller): its next
/// attempt is due now, on a fresh retry schedule.
pub async fn redeliver(
    state: &AppState,
    notification_id: &paycenter_domain::ids::NotificationId,
) -> Result<(), Refusal> {
    let command_id = format!(
        "redeliver-{notification_id}-{}",
        crate::service::random_hex(8)
    );
    state
        .execute(
            &streams::notification(notification_id),
            &command_id,
            |history, now| {
                let notification = Notification::from_events(history).ok_or_else(|| {
                    paycenter_domain::DomainError::NotificationNotFound {
                        notification_id: notification_id.clone(),
                    }
                })?;
                notification.decide_redeliver(now)
            },
        )
        .await
        .map(|_| ())
}
