//! Background work the log asks for, driven by the read model so that nothing is lost across
//! restarts:
//! - **scheduler**: every outcome an app must hear of gets a notification (id derived from the
//!   outcome's event id, so scheduling twice appends nothing);
//! - **refund submitter**: every refund requested and not settled is sent to its channel (once
//!   per process; channels treat a repeated refund id as the same refund);
//! - **webhook dispatcher**: due notifications are POSTed, signed, and every attempt recorded.
//! - **sweeper**: payments and refunds still pending `sweep_after_seconds` after they started
//!   are queried at their channel, and what the channel says is recorded exactly as its
//!   callback would have been (a lost callback loses nothing); a payment past its expiry that
//!   the channel has not seen paid is closed.
//!
//! Several nodes on one store all run these loops. Scheduling is idempotent (the stream must
//! not exist yet); a refund submission and each webhook attempt are done under a lease
//! (`EventStore::try_lease`), so one node does each while the others skip it, and a node that
//! dies mid-way hands it over when its lease expires.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use paycenter_domain::events::{Event, NotificationScheduled};
use paycenter_domain::ids::{NotificationId, RefundId};
use paycenter_domain::notification::{DeliveryOutcome, Notification};
use paycenter_domain::streams;
use paycenter_gateway::http::HttpClient;
use paycenter_gateway::{CallbackNotice, ChannelPaymentStatus, RefundStatus};
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

/// While the read model is stopped it says nothing current: a loop idles (one look a second)
/// until an operator acts (`/healthz` says where and why). True when it idled.
async fn idle_while_model_stopped(state: &AppState) -> bool {
    if state.follower_health.stopped().is_none() {
        return false;
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    true
}

/// Items a channel refused, each with its failures so far and the instant before which it is
/// not tried again: doubling waits keep a channel that is down from being hammered.
struct Backoff<K> {
    entries: HashMap<K, (u32, std::time::Instant)>,
    max_delay_ms: u64,
}

impl<K: Eq + std::hash::Hash> Backoff<K> {
    fn new(max_delay_ms: u64) -> Backoff<K> {
        Backoff {
            entries: HashMap::new(),
            max_delay_ms,
        }
    }

    /// Whether `key` may be tried at `now`.
    fn is_due(&self, key: &K, now: std::time::Instant) -> bool {
        self.entries
            .get(key)
            .is_none_or(|(_, not_before)| *not_before <= now)
    }

    /// Counts a failure of `key`; answers the wait before its next try.
    fn fail(&mut self, key: K) -> u64 {
        let failures = self.entries.get(&key).map_or(0, |(failures, _)| *failures) + 1;
        let delay_ms = (POLL_INTERVAL_MS << failures.min(16)).min(self.max_delay_ms);
        self.entries.insert(
            key,
            (
                failures,
                std::time::Instant::now() + Duration::from_millis(delay_ms),
            ),
        );
        delay_ms
    }

    /// Leaves `key` alone for `delay_ms` without counting a failure.
    fn defer(&mut self, key: K, delay_ms: u64) {
        let failures = self.entries.get(&key).map_or(0, |(failures, _)| *failures);
        self.entries.insert(
            key,
            (
                failures,
                std::time::Instant::now() + Duration::from_millis(delay_ms),
            ),
        );
    }

    fn forget(&mut self, key: &K) {
        self.entries.remove(key);
    }

    /// Keeps the bookkeeping of the keys still waiting only.
    fn retain(&mut self, mut keep: impl FnMut(&K) -> bool) {
        self.entries.retain(|key, _| keep(key));
    }

    fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Starts the loops on the current runtime.
pub fn spawn(state: Arc<AppState>) {
    tokio::spawn(schedule_notifications(state.clone()));
    tokio::spawn(submit_refunds(state.clone()));
    tokio::spawn(close_abandoned(state.clone()));
    tokio::spawn(sweep(state.clone()));
    tokio::spawn(dispatch_webhooks(state));
}

async fn schedule_notifications(state: Arc<AppState>) {
    loop {
        if idle_while_model_stopped(&state).await {
            continue;
        }
        let drafts: Vec<_> = state
            .model_lock()
            .unscheduled
            .values()
            .take(MAX_ITEMS_PER_ROUND)
            .cloned()
            .collect();
        for draft in drafts {
            let data = {
                let model = state.model_lock();
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
                Ok(outcome) => {
                    // A stopped read model is reported by /healthz; this loop idles meanwhile.
                    let _ = state.wait_for_model(outcome.last_position).await;
                }
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
    // Refunds the channel refused (or a sandbox restarted without its trades).
    let mut backoff: Backoff<RefundId> = Backoff::new(MAX_REFUND_RETRY_DELAY_MS);
    loop {
        if idle_while_model_stopped(&state).await {
            continue;
        }
        let now = std::time::Instant::now();
        let pending: Vec<RefundId> = state
            .model_lock()
            .refunds_to_submit
            .values()
            .filter(|refund_id| !submitted.contains(*refund_id))
            .filter(|refund_id| backoff.is_due(refund_id, now))
            .take(MAX_ITEMS_PER_ROUND)
            .cloned()
            .collect();
        for refund_id in pending {
            let found = {
                let model = state.model_lock();
                model
                    .refund_trade_nos
                    .get(&refund_id)
                    .and_then(|trade_no| model.payments.get(trade_no))
                    .and_then(|payment| {
                        let target = crate::service::outcomes::refund_target(payment, &refund_id)?;
                        let account = model.channel_accounts.get(&target.channel_account_id)?;
                        Some((payment.clone(), target, account.clone()))
                    })
            };
            let Some((payment, target, account)) = found else {
                continue;
            };
            let amount = target.amount;
            let Ok(adapter) = state.channel(account.channel) else {
                continue;
            };
            // `channel_params` logs why it failed; the refund is retried next round.
            let Ok(params) = state.channel_params(&account) else {
                continue;
            };
            if !take_lease(&state, &format!("refund:{refund_id}"), REFUND_LEASE_MS) {
                // Another node is submitting it; look again once its lease could have ended.
                backoff.defer(refund_id, REFUND_LEASE_MS);
                continue;
            }
            let order = target.channel_order(&state, &payment);
            match adapter.refund(&params, &order, &refund_id, amount).await {
                Ok(status) => {
                    // Channels that settle at once (Alipay, Stripe) answer the outcome now;
                    // recording it is what a refund callback would do.
                    if let Some(notice) = refund_notice(&payment.trade_no, &refund_id, status) {
                        if let Err(error) = crate::service::outcomes::record(
                            &state,
                            &target.channel_account_id,
                            notice,
                            paycenter_domain::payment::OutcomeSource::Query,
                        )
                        .await
                        {
                            tracing::warn!(code = error.code.as_str(), message = %error.message, %refund_id, "recording a refund outcome failed; will resubmit");
                            continue;
                        }
                    }
                    backoff.forget(&refund_id);
                    submitted.insert(refund_id);
                }
                Err(error) => {
                    let delay_ms = backoff.fail(refund_id.clone());
                    tracing::warn!(%error, %refund_id, retry_in_ms = delay_ms, "refund submission failed; will retry");
                }
            }
        }
        // Settled refunds leave `refunds_to_submit`; forget their bookkeeping too.
        if !submitted.is_empty() || !backoff.is_empty() {
            let still_pending: HashSet<RefundId> = state
                .model_lock()
                .refunds_to_submit
                .values()
                .cloned()
                .collect();
            backoff.retain(|refund_id| still_pending.contains(refund_id));
            submitted.retain(|refund_id| still_pending.contains(refund_id));
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// Queries made per sweep round, at most: a channel is not flooded after an outage.
const MAX_SWEEP_QUERIES_PER_ROUND: usize = 256;

/// What the sweeper asks about: a payment, or one refund of it.
enum SweepItem {
    Payment(paycenter_projections::model::PaymentView),
    Refund(paycenter_projections::model::PaymentView, RefundId),
}

async fn sweep(state: Arc<AppState>) {
    let sweep_after = chrono::Duration::seconds(state.config.sweep_after_seconds as i64);
    // A round every quarter of the age, between 1 s and 60 s.
    let round_ms = (state.config.sweep_after_seconds * 250).clamp(1_000, 60_000);
    // When this node last asked about each item: an item is asked about once per sweep age,
    // so a few unanswerable items cannot take every round's budget.
    let mut last_asked: HashMap<String, std::time::Instant> = HashMap::new();
    let asked_recently = |last_asked: &HashMap<String, std::time::Instant>, key: &str| {
        last_asked
            .get(key)
            .is_some_and(|at| at.elapsed() < Duration::from_secs(state.config.sweep_after_seconds))
    };
    loop {
        if idle_while_model_stopped(&state).await {
            continue;
        }
        tokio::time::sleep(Duration::from_millis(round_ms)).await;
        last_asked
            .retain(|_, at| at.elapsed() < Duration::from_secs(state.config.sweep_after_seconds));
        let now = state.clock.now();
        let items: Vec<SweepItem> = {
            let model = state.model_lock();
            let mut items = Vec::new();
            for payment in model.payments.values() {
                if items.len() >= MAX_SWEEP_QUERIES_PER_ROUND {
                    break;
                }
                match payment.status {
                    paycenter_domain::payment::AttemptStatus::Pending
                        if now - payment.created_at >= sweep_after
                            && !asked_recently(&last_asked, payment.trade_no.as_str()) =>
                    {
                        items.push(SweepItem::Payment(payment.clone()));
                    }
                    paycenter_domain::payment::AttemptStatus::Succeeded => {
                        for refund in &payment.refunds {
                            if refund.status == paycenter_domain::payment::RefundStatus::Pending
                                && now - refund.requested_at >= sweep_after
                                && !asked_recently(&last_asked, refund.refund_id.as_str())
                            {
                                items.push(SweepItem::Refund(
                                    payment.clone(),
                                    refund.refund_id.clone(),
                                ));
                            }
                        }
                    }
                    _ => {}
                }
            }
            items
        };
        for item in items {
            let (payment, key) = match &item {
                SweepItem::Payment(payment) => (payment, payment.trade_no.to_string()),
                SweepItem::Refund(payment, refund_id) => (payment, refund_id.to_string()),
            };
            last_asked.insert(key.clone(), std::time::Instant::now());
            let lease = format!("sweep:{key}");
            // The lease spaces queries of one item by the sweep age across every node.
            if !take_lease(&state, &lease, state.config.sweep_after_seconds * 1_000) {
                continue;
            }
            if let Err(error) = sweep_one(&state, &item, payment).await {
                tracing::warn!(%error, trade_no = %payment.trade_no, "sweeper query failed; asked again next time");
            }
        }
    }
}

/// Asks the channel about one item and records the answer.
async fn sweep_one(
    state: &AppState,
    item: &SweepItem,
    payment: &paycenter_projections::model::PaymentView,
) -> Result<(), String> {
    use paycenter_domain::payment::{CloseReason, Order, OrderCommand, OutcomeSource};
    let account = state
        .channel_account(&payment.channel_account_id)
        .ok_or("channel account not found")?;
    let adapter = state
        .channel(account.channel)
        .map_err(|error| error.message)?;
    let params = state
        .channel_params(&account)
        .map_err(|error| error.message)?;
    let order = state.channel_order(payment);
    let record = |notice: CallbackNotice| async move {
        crate::service::outcomes::record(
            state,
            &payment.channel_account_id,
            notice,
            OutcomeSource::Query,
        )
        .await
        .map_err(|error| error.message)
    };
    match item {
        SweepItem::Refund(_, refund_id) => {
            let status = adapter
                .query_refund(&params, &order, refund_id)
                .await
                .map_err(|error| error.to_string())?;
            if let Some(notice) = refund_notice(&payment.trade_no, refund_id, status) {
                tracing::info!(%refund_id, "sweeper learnt a refund's outcome by query");
                record(notice).await?;
            }
            Ok(())
        }
        SweepItem::Payment(_) => {
            let status = adapter
                .query_payment(&params, &order)
                .await
                .map_err(|error| error.to_string())?;
            let expired = state.clock.now() > payment.expires_at;
            match status {
                ChannelPaymentStatus::Paid {
                    channel_trade_no,
                    amount,
                } => {
                    tracing::info!(trade_no = %payment.trade_no, "sweeper learnt a payment by query");
                    record(CallbackNotice::PaymentSucceeded {
                        trade_no: payment.trade_no.clone(),
                        channel_trade_no,
                        amount,
                    })
                    .await
                }
                ChannelPaymentStatus::Failed { reason } => {
                    record(CallbackNotice::PaymentFailed {
                        trade_no: payment.trade_no.clone(),
                        reason,
                    })
                    .await
                }
                ChannelPaymentStatus::Closed
                | ChannelPaymentStatus::Pending
                | ChannelPaymentStatus::NotFound => {
                    if !expired {
                        return Ok(());
                    }
                    // Past its expiry and not paid: close it at the channel first, so a user
                    // cannot pay it after paycenter records the close.
                    if status != ChannelPaymentStatus::Closed {
                        adapter
                            .close_payment(&params, &order)
                            .await
                            .map_err(|error| error.to_string())?;
                    }
                    let command = OrderCommand::Close {
                        trade_no: payment.trade_no.clone(),
                        reason: CloseReason::Expired,
                    };
                    state
                        .execute(
                            &payment.order_stream,
                            &format!("close-{}", payment.trade_no),
                            |history, now| Order::from_events(history).decide(&command, now),
                        )
                        .await
                        .map(|_| ())
                        .map_err(|error| error.message)
                }
            }
        }
    }
}

/// A settled refund status as the notice a callback would have brought; `None` while pending.
fn refund_notice(
    trade_no: &paycenter_domain::ids::TradeNo,
    refund_id: &RefundId,
    status: RefundStatus,
) -> Option<CallbackNotice> {
    match status {
        RefundStatus::Pending => None,
        RefundStatus::Succeeded { channel_refund_no } => Some(CallbackNotice::RefundSucceeded {
            trade_no: trade_no.clone(),
            refund_id: refund_id.clone(),
            channel_refund_no,
        }),
        RefundStatus::Failed { reason } => Some(CallbackNotice::RefundFailed {
            trade_no: trade_no.clone(),
            refund_id: refund_id.clone(),
            reason,
        }),
    }
}

async fn dispatch_webhooks(state: Arc<AppState>) {
    let http = match HttpClient::new(&state.outbound, state.config.webhook_timeout_ms) {
        Ok(http) => http,
        Err(error) => {
            // Checked at start (OutboundConfig::from_env): cannot happen after it.
            tracing::error!(%error, "the webhook client cannot be built; webhooks are not sent");
            return;
        }
    };
    let permits = Arc::new(Semaphore::new(MAX_DELIVERIES_IN_FLIGHT));
    let in_flight: Arc<std::sync::Mutex<HashSet<NotificationId>>> = Arc::default();
    loop {
        if idle_while_model_stopped(&state).await {
            continue;
        }
        let due: Vec<Notification> = state
            .model_lock()
            .due_notifications(state.clock.now(), MAX_ITEMS_PER_ROUND)
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
    let (app, previous_secret) = {
        let model = state.model_lock();
        let previous_secret = model
            .previous_webhook_secrets
            .get(&scheduled.app_id)
            .filter(|(_, valid_until)| state.clock.now() < *valid_until)
            .map(|(sealed, _)| sealed.clone());
        (model.apps.get(&scheduled.app_id).cloned(), previous_secret)
    };
    let Some(app) = app else { return false };
    // During a rotation's grace period the webhook carries a signature with each secret.
    let previous_secret = previous_secret.and_then(|sealed| {
        state
            .master_key
            .open(app.app_id.as_str(), &sealed)
            .map_err(|error| tracing::error!(%error, app_id = %app.app_id, "previous webhook secret does not open"))
            .ok()
    });
    let secret = match state
        .master_key
        .open(app.app_id.as_str(), &app.webhook_secret_sealed)
    {
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
    let mut secrets: Vec<&[u8]> = vec![&secret];
    if let Some(previous) = &previous_secret {
        secrets.push(previous);
    }
    let signature = paycenter_gateway::signing::signature_header_multi(
        &secrets,
        state.clock.now().timestamp(),
        &body,
    );
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
            tracing::warn!(code = error.code.as_str(), message = %error.message, "recording a webhook attempt failed")
        }
    }
    true
}

/// Longest wait between two tries to close an abandoned attempt at its channel.
const MAX_CLOSE_RETRY_DELAY_MS: u64 = 300_000;

/// Closes attempts superseded by a newer one at their own channel, with their own account's
/// parameters, each try an event (`payment.channel_close_attempted`): until the channel
/// confirms (or says it was closed already), or says it was paid, which is then recorded as the
/// payment it is (the domain refunds it as a duplicate at that attempt's own channel).
async fn close_abandoned(state: Arc<AppState>) {
    use paycenter_domain::events::ChannelCloseOutcome;
    let mut backoff: Backoff<paycenter_domain::ids::TradeNo> =
        Backoff::new(MAX_CLOSE_RETRY_DELAY_MS);
    loop {
        if idle_while_model_stopped(&state).await {
            continue;
        }
        let now = std::time::Instant::now();
        let due: Vec<paycenter_projections::model::PaymentView> = {
            let model = state.model_lock();
            model
                .closes_to_confirm
                .values()
                .filter(|trade_no| backoff.is_due(trade_no, now))
                .take(MAX_ITEMS_PER_ROUND)
                .filter_map(|trade_no| model.payments.get(trade_no).cloned())
                .collect()
        };
        for payment in due {
            if !take_lease(
                &state,
                &format!("close:{}", payment.trade_no),
                REFUND_LEASE_MS,
            ) {
                continue;
            }
            let (outcome, error) = close_at_channel(&state, &payment).await;
            if outcome == ChannelCloseOutcome::Failed {
                let delay_ms = backoff.fail(payment.trade_no.clone());
                tracing::warn!(trade_no = %payment.trade_no, error = error.as_deref().unwrap_or(""), retry_in_ms = delay_ms, "closing an abandoned attempt at its channel failed");
            } else {
                backoff.forget(&payment.trade_no);
            }
            let trade_no = payment.trade_no.clone();
            let result = state
                .execute(
                    &payment.order_stream,
                    &format!("channel-close-{trade_no}-{:016x}", rand::random::<u64>()),
                    |history, now| {
                        Ok(paycenter_domain::payment::decide_channel_close(
                            history,
                            &trade_no,
                            outcome,
                            error.clone(),
                            now,
                        ))
                    },
                )
                .await;
            if let Err(error) = result {
                tracing::warn!(code = error.code.as_str(), message = %error.message, %trade_no, "recording a channel close failed");
            }
        }
        // Closes settled (here or by another node) leave `closes_to_confirm`; so do their waits.
        if !backoff.is_empty() {
            let still_open: HashSet<paycenter_domain::ids::TradeNo> = state
                .model_lock()
                .closes_to_confirm
                .values()
                .cloned()
                .collect();
            backoff.retain(|trade_no| still_open.contains(trade_no));
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// One try: close at the attempt's own channel; when that fails, ask the channel how the
/// trade stands (a paid one is recorded as paid, which the domain refunds as a duplicate).
async fn close_at_channel(
    state: &AppState,
    payment: &paycenter_projections::model::PaymentView,
) -> (
    paycenter_domain::events::ChannelCloseOutcome,
    Option<String>,
) {
    use paycenter_domain::events::ChannelCloseOutcome;
    use paycenter_gateway::ChannelPaymentStatus;
    let Some(account) = state.channel_account(&payment.channel_account_id) else {
        return (
            ChannelCloseOutcome::Failed,
            Some("channel account not found".to_owned()),
        );
    };
    let (adapter, params) = match (
        state.channel(account.channel),
        state.channel_params(&account),
    ) {
        (Ok(adapter), Ok(params)) => (adapter, params),
        (Err(error), _) | (_, Err(error)) => {
            return (ChannelCloseOutcome::Failed, Some(error.message))
        }
    };
    let order = state.channel_order(payment);
    let close_error = match adapter.close_payment(&params, &order).await {
        Ok(()) => return (ChannelCloseOutcome::Closed, None),
        Err(error) => error.to_string(),
    };
    match adapter.query_payment(&params, &order).await {
        Ok(ChannelPaymentStatus::Paid {
            channel_trade_no,
            amount,
        }) => {
            let notice = CallbackNotice::PaymentSucceeded {
                trade_no: payment.trade_no.clone(),
                channel_trade_no,
                amount,
            };
            match crate::service::outcomes::record(
                state,
                &payment.channel_account_id,
                notice,
                paycenter_domain::payment::OutcomeSource::Query,
            )
            .await
            {
                Ok(()) => (ChannelCloseOutcome::Paid, Some(close_error)),
                Err(error) => (ChannelCloseOutcome::Failed, Some(error.message)),
            }
        }
        Ok(ChannelPaymentStatus::Closed | ChannelPaymentStatus::Failed { .. }) => {
            (ChannelCloseOutcome::Closed, Some(close_error))
        }
        // Unknown to the channel (some create a trade only when the user opens its page, which
        // stays possible until expiry): keep trying, as for a pending one.
        Ok(ChannelPaymentStatus::Pending | ChannelPaymentStatus::NotFound) => {
            (ChannelCloseOutcome::Failed, Some(close_error))
        }
        Err(query_error) => (
            ChannelCloseOutcome::Failed,
            Some(format!("{close_error}; query: {query_error}")),
        ),
    }
}
