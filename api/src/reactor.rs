//! Background work the log asks for, driven by the read model so that nothing is lost across
//! restarts. Each loop finds its work and hands each item to a use case of [`crate::service`]:
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
use std::sync::Arc;
use std::time::Duration;

use paycenter_domain::events::ChannelCloseOutcome;
use paycenter_domain::ids::{NotificationId, RefundId, TradeNo};
use paycenter_domain::notification::Notification;
use paycenter_gateway::http::HttpClient;
use paycenter_projections::tables::TableError;
use tokio::sync::Semaphore;

use crate::service::refunds::REFUND_LEASE_MS;
use crate::service::Submission;
use crate::service::{self, take_lease};
use crate::state::AppState;

/// How often the loops look for work when nothing woke them.
const POLL_INTERVAL_MS: u64 = 50;
/// Webhook deliveries in flight at once.
const MAX_DELIVERIES_IN_FLIGHT: usize = 64;
/// Items taken per round.
const MAX_ITEMS_PER_ROUND: usize = 512;
/// How long a node leaves alone work another node holds the lease of, before asking again.
const HELD_ELSEWHERE_PAUSE_MS: u64 = 1_000;

/// While the read model is stopped it says nothing current: a loop idles (one look a second)
/// until an operator acts (`/healthz` says where and why); so it does while the start's
/// catch-up runs. True when it idled.
async fn idle_while_model_stopped(state: &AppState) -> bool {
    let health = &state.read_model.health;
    if health.stopped().is_none() && health.catching_up_to().is_none() {
        return false;
    }
    tokio::time::sleep(Duration::from_millis(1_000)).await;
    true
}

/// Items a channel refused, each with its failures so far and the instant before which it is
/// not tried again: doubling waits keep a channel that is down from being hammered.
struct Backoff<K> {
    entries: HashMap<K, (u32, std::time::Instant)>,
    /// The wait after a first failure, doubled after each further one, up to `max_delay_ms`.
    first_delay_ms: u64,
    max_delay_ms: u64,
}

impl<K: Eq + std::hash::Hash> Backoff<K> {
    fn new(max_delay_ms: u64) -> Backoff<K> {
        Backoff::starting_at(POLL_INTERVAL_MS * 2, max_delay_ms)
    }

    fn starting_at(first_delay_ms: u64, max_delay_ms: u64) -> Backoff<K> {
        Backoff {
            entries: HashMap::new(),
            first_delay_ms,
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
        let delay_ms = (self.first_delay_ms << (failures - 1).min(16)).min(self.max_delay_ms);
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

    fn len(&self) -> usize {
        self.entries.len()
    }
}

/// Starts the loops on the current runtime.
pub fn spawn(state: Arc<AppState>) {
    tokio::spawn(schedule_notifications(state.clone()));
    tokio::spawn(submit_refunds(state.clone()));
    tokio::spawn(submit_shares(state.clone()));
    tokio::spawn(submit_payouts(state.clone()));
    tokio::spawn(close_abandoned(state.clone()));
    tokio::spawn(sweep(state.clone()));
    tokio::spawn(dispatch_webhooks(state));
}

/// Starts the alert loops: the rules, evaluated every `PAYCENTER_ALERT_INTERVAL_SECONDS`, and
/// the deliverer, which sends what is due every second.
pub fn spawn_alerts(state: Arc<AppState>, data_dir: std::path::PathBuf) {
    tokio::spawn(evaluate_alert_rules(state.clone(), data_dir));
    tokio::spawn(deliver_alerts(state));
}

async fn evaluate_alert_rules(state: Arc<AppState>, data_dir: std::path::PathBuf) {
    let interval = Duration::from_secs(state.config.alerts.interval_seconds);
    loop {
        tokio::time::sleep(interval).await;
        // A stopped read model is itself a condition: the rules that need it fail quietly
        // meanwhile, the projection rule reads the follower's health directly.
        if let Err(refusal) = service::alert_rules::evaluate(&state, Some(&data_dir)).await {
            if refusal.code != crate::error::ErrorCode::ReadModelUnavailable {
                tracing::warn!(message = %refusal.message, "evaluating the alert rules failed; trying again next round");
            }
        }
    }
}

/// Seconds between rounds of the alert deliverer.
const ALERT_DELIVERY_POLL_MS: u64 = 1_000;

async fn deliver_alerts(state: Arc<AppState>) {
    let http = match HttpClient::new(&state.outbound, state.config.webhook_timeout_ms) {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "no outbound client: alerts are not delivered");
            return;
        }
    };
    loop {
        tokio::time::sleep(Duration::from_millis(ALERT_DELIVERY_POLL_MS)).await;
        if let Err(refusal) = service::alerts::deliver_due(&state, &http).await {
            if refusal.code != crate::error::ErrorCode::ReadModelUnavailable {
                tracing::warn!(message = %refusal.message, "delivering alerts failed; trying again next round");
            }
        }
    }
}

/// What a read of the read model's file gave, or nothing this round when it failed (said in
/// the log; the next round reads again).
fn or_nothing<T: Default>(read: Result<T, TableError>, what: &str) -> T {
    read.unwrap_or_else(|error| {
        tracing::error!(%error, what, "reading the read model failed; trying again next round");
        T::default()
    })
}

async fn schedule_notifications(state: Arc<AppState>) {
    loop {
        if idle_while_model_stopped(&state).await {
            continue;
        }
        let drafts = or_nothing(
            state.model_lock().unscheduled(MAX_ITEMS_PER_ROUND),
            "notifications to schedule",
        );
        for draft in drafts {
            if let Err(refusal) = service::webhooks::schedule(&state, &draft).await {
                // A stopped read model is reported by /healthz; this loop idles meanwhile.
                if refusal.code != crate::error::ErrorCode::ReadModelUnavailable {
                    tracing::error!(message = %refusal.message, "scheduling a notification failed");
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
        // The head of the queue, past the refunds submitted and waiting for their outcome.
        let pending: Vec<RefundId> = or_nothing(
            state
                .model_lock()
                .refunds_to_submit(MAX_ITEMS_PER_ROUND + submitted.len() + backoff.len()),
            "refunds to submit",
        )
        .into_iter()
        .filter(|refund_id| !submitted.contains(refund_id))
        .filter(|refund_id| backoff.is_due(refund_id, now))
        .take(MAX_ITEMS_PER_ROUND)
        .collect();
        for refund_id in pending {
            match service::refunds::submit(&state, &refund_id).await {
                Submission::Accepted | Submission::NothingToDo | Submission::Waiting => {
                    backoff.forget(&refund_id);
                    submitted.insert(refund_id);
                }
                // Another node is submitting it; look again once its lease could have ended.
                Submission::HeldElsewhere => backoff.defer(refund_id, REFUND_LEASE_MS),
                Submission::Failed(error) => {
                    let delay_ms = backoff.fail(refund_id.clone());
                    tracing::warn!(%error, %refund_id, retry_in_ms = delay_ms, "refund submission failed; will retry");
                }
            }
        }
        // Settled refunds leave `refunds_to_submit`; forget their bookkeeping too.
        if !submitted.is_empty() || !backoff.is_empty() {
            let model = state.model_lock();
            let still_pending = |refund_id: &RefundId| {
                // Kept when unsure: a failed read forgets nothing.
                model.refund_pending(refund_id).unwrap_or(true)
            };
            backoff.retain(still_pending);
            submitted.retain(still_pending);
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// Waits between two submissions of a share the channel failed (doubling from the first, so
/// the domain's few tries span a minute of a channel's trouble, not a second); and the wait
/// before asking again about a share the channel took and has not settled.
const FIRST_SHARE_RETRY_DELAY_MS: u64 = 2_000;
const MAX_SHARE_RETRY_DELAY_MS: u64 = 60_000;
const SHARE_PENDING_RECHECK_MS: u64 = 2_000;

async fn submit_shares(state: Arc<AppState>) {
    // Shares the channel failed (retried: each failure is recorded, bounded by the domain)
    // or took without settling (asked about again).
    let mut backoff: Backoff<TradeNo> =
        Backoff::starting_at(FIRST_SHARE_RETRY_DELAY_MS, MAX_SHARE_RETRY_DELAY_MS);
    loop {
        if idle_while_model_stopped(&state).await {
            continue;
        }
        let now = std::time::Instant::now();
        let due: Vec<TradeNo> = or_nothing(
            state
                .model_lock()
                .shares_to_submit(MAX_ITEMS_PER_ROUND + backoff.len()),
            "shares to submit",
        )
        .into_iter()
        .filter(|trade_no| backoff.is_due(trade_no, now))
        .take(MAX_ITEMS_PER_ROUND)
        .collect();
        for trade_no in due {
            match service::shares::submit(&state, &trade_no).await {
                Submission::Accepted | Submission::NothingToDo | Submission::Waiting => {
                    backoff.defer(trade_no, SHARE_PENDING_RECHECK_MS)
                }
                Submission::HeldElsewhere => {
                    backoff.defer(trade_no, service::shares::SHARE_LEASE_MS)
                }
                Submission::Failed(error) => {
                    let delay_ms = backoff.fail(trade_no.clone());
                    tracing::warn!(%error, %trade_no, retry_in_ms = delay_ms, "share submission failed");
                }
            }
        }
        if !backoff.is_empty() {
            let model = state.model_lock();
            backoff.retain(|trade_no| model.share_pending(trade_no).unwrap_or(true));
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// Longest wait between two submissions of a payout the channel did not answer; the wait
/// before asking again about one it took and has not settled.
const MAX_PAYOUT_RETRY_DELAY_MS: u64 = 60_000;
const PAYOUT_PENDING_RECHECK_MS: u64 = 5_000;
const PAYOUT_WAITING_RECHECK_MS: u64 = 60_000;

async fn submit_payouts(state: Arc<AppState>) {
    let mut backoff: Backoff<String> = Backoff::starting_at(1_000, MAX_PAYOUT_RETRY_DELAY_MS);
    loop {
        if idle_while_model_stopped(&state).await {
            continue;
        }
        let now = std::time::Instant::now();
        let due: Vec<String> = or_nothing(
            state
                .model_lock()
                .payouts_to_submit(MAX_ITEMS_PER_ROUND + backoff.len()),
            "payouts to submit",
        )
        .into_iter()
        .filter(|payout_id| backoff.is_due(payout_id, now))
        .take(MAX_ITEMS_PER_ROUND)
        .collect();
        for payout_id in due {
            match service::payouts::submit(&state, &payout_id).await {
                Submission::Accepted | Submission::NothingToDo => {
                    backoff.defer(payout_id, PAYOUT_PENDING_RECHECK_MS)
                }
                // A user may take hours to confirm; the channel's notify usually comes first.
                Submission::Waiting => backoff.defer(payout_id, PAYOUT_WAITING_RECHECK_MS),
                Submission::HeldElsewhere => {
                    backoff.defer(payout_id, service::payouts::PAYOUT_LEASE_MS)
                }
                Submission::Failed(error) => {
                    let delay_ms = backoff.fail(payout_id.clone());
                    tracing::warn!(%error, %payout_id, retry_in_ms = delay_ms, "payout submission failed; will retry");
                }
            }
        }
        if !backoff.is_empty() {
            let model = state.model_lock();
            backoff.retain(|payout_id| model.payout_pending(payout_id).unwrap_or(true));
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}

/// Queries made per sweep round, at most: a channel is not flooded after an outage.
const MAX_SWEEP_QUERIES_PER_ROUND: usize = 256;

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
        let items = service::sweep::due(
            &state,
            now,
            sweep_after,
            MAX_SWEEP_QUERIES_PER_ROUND,
            |key| asked_recently(&last_asked, key),
        );
        for item in items {
            let key = item.key();
            last_asked.insert(key.clone(), std::time::Instant::now());
            // The lease spaces queries of one item by the sweep age across every node.
            if !take_lease(
                &state,
                &format!("sweep:{key}"),
                state.config.sweep_after_seconds * 1_000,
            ) {
                continue;
            }
            if let Err(refusal) = service::sweep::query(&state, &item).await {
                tracing::warn!(message = %refusal.message, trade_no = %item.payment().trade_no, "sweeper query failed; asked again next time");
            }
        }
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
        let due: Vec<Notification> = or_nothing(
            state
                .model_lock()
                .due_notifications(state.clock.now(), MAX_ITEMS_PER_ROUND),
            "notifications due",
        )
        .into_iter()
        .map(|(notification, _)| notification)
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
                let attempted = service::webhooks::deliver(&state, &http, notification).await;
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

/// Longest wait between two tries to close an abandoned attempt at its channel.
const MAX_CLOSE_RETRY_DELAY_MS: u64 = 300_000;

/// Closes attempts superseded by a newer one at their own channel, with their own account's
/// parameters, each try an event (`payment.channel_close_attempted`): until the channel
/// confirms (or says it was closed already), or says it was paid, which is then recorded as the
/// payment it is (the domain refunds it as a duplicate at that attempt's own channel).
async fn close_abandoned(state: Arc<AppState>) {
    let mut backoff: Backoff<TradeNo> = Backoff::new(MAX_CLOSE_RETRY_DELAY_MS);
    loop {
        if idle_while_model_stopped(&state).await {
            continue;
        }
        let now = std::time::Instant::now();
        let due: Vec<paycenter_projections::model::PaymentView> = {
            let model = state.model_lock();
            or_nothing(
                model.closes_to_confirm(MAX_ITEMS_PER_ROUND + backoff.len()),
                "attempts to close",
            )
            .into_iter()
            .filter(|trade_no| backoff.is_due(trade_no, now))
            .take(MAX_ITEMS_PER_ROUND)
            .filter_map(|trade_no| or_nothing(model.payment(&trade_no), "an attempt to close"))
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
            let outcome = service::closes::close_abandoned(&state, &payment).await;
            if outcome == ChannelCloseOutcome::Failed {
                let delay_ms = backoff.fail(payment.trade_no.clone());
                tracing::info!(trade_no = %payment.trade_no, retry_in_ms = delay_ms, "closing an abandoned attempt is tried again");
            } else {
                backoff.forget(&payment.trade_no);
            }
        }
        // Closes settled (here or by another node) leave `closes_to_confirm`; so do their waits.
        if !backoff.is_empty() {
            let model = state.model_lock();
            backoff.retain(|trade_no| model.close_pending(trade_no).unwrap_or(true));
        }
        tokio::time::sleep(Duration::from_millis(POLL_INTERVAL_MS)).await;
    }
}
