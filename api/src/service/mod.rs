//! Use cases: what paycenter does, apart from how it is asked. HTTP handlers, the reactor and
//! the sweeper call these; each loads what it needs, lets `domain` decide, appends through
//! `AppState::execute` and, where it must, calls a channel. They answer [`crate::error::Refusal`]s, never
//! HTTP, and take the time from `AppState::clock`.
//!
//! # Layout
//! - [`access`]: who may do what (roles), and the actor recorded in the events of an admin action.
//! - [`sessions`]: the console's sessions and its sign-in throttle.
//! - [`history`]: a payment's events as a timeline; the trail of actions by operator.
//! - [`operators`]: the console's operators: creating them, signing them in.
//! - [`alerts`]: alert destinations, raising and resolving alerts by condition, delivering them;
//!   [`alert_rules`]: the rules, evaluated on a timer.
//! - [`accounts`]: activating a channel account, and activating it again (key rotation).
//! - [`cashier`]: the aggregated cashier: the person picks the channel account.
//! - [`payments`]: starting a payment attempt (checks, decision, initiation at the channel).
//! - [`outcomes`]: recording what a channel reported (callback or query), and where a refund
//!   is sent.
//! - [`refunds`]: an app's refund, and its submission to the channel.
//! - [`closes`]: closing an attempt (by the app, on expiry, or superseded by a newer one).
//! - [`sweep`]: asking channels about what stayed pending too long.
//! - [`webhooks`]: scheduling notifications and delivering them signed.
//! - [`breakers`]: each channel account's circuit breaker, moved by outcomes and time.
//! - [`routing`]: `"route": "auto"` payments: rules, failover after a definite refusal, breakers.
//! - [`registry`]: merchants, apps, credential rotation, turning apps and accounts off.
//! - [`reconciliation`]: a day of a channel account against the channel's bill.

pub mod access;
pub mod accounts;
pub mod alert_rules;
pub mod alerts;
pub mod breakers;
pub mod cashier;
pub mod closes;
pub mod history;
pub mod operators;
pub mod outcomes;
pub mod payments;
pub mod payouts;
pub mod receivers;
pub mod reconciliation;
pub mod refunds;
pub mod registry;
pub mod routing;
pub mod sessions;
pub mod shares;
pub mod sweep;
pub mod webhooks;

use crate::state::AppState;

/// Takes the lease `name` for this node for `ttl_ms`: work several nodes could each do (a
/// refund submission, a webhook attempt, a sweep query) is done by the one holding it. False
/// (and logged) when it cannot be taken.
pub fn take_lease(state: &AppState, name: &str, ttl_ms: u64) -> bool {
    match tokio::task::block_in_place(|| state.store.try_lease(name, &state.config.node_id, ttl_ms))
    {
        Ok(held) => held,
        Err(error) => {
            tracing::warn!(%error, lease = name, "taking a lease failed; the work waits");
            false
        }
    }
}

/// Runs one call to a channel and counts it in `/metrics` under the account and `operation`
/// (`initiate`, `query`, `close`, `refund`) with its outcome and latency.
pub async fn channel_call<T>(
    state: &AppState,
    channel: paycenter_domain::vocabulary::Channel,
    channel_account_id: &paycenter_domain::ids::ChannelAccountId,
    operation: &'static str,
    call: impl std::future::Future<Output = Result<T, paycenter_gateway::GatewayError>>,
) -> Result<T, paycenter_gateway::GatewayError> {
    let started = std::time::Instant::now();
    let result = call.await;
    state.metrics.channel_call(
        channel.as_str(),
        channel_account_id.as_str(),
        operation,
        crate::metrics::CallOutcome::of(&result),
        started.elapsed().as_secs_f64(),
    );
    result
}

/// `merchant_id` is onboarded in `model`; else `404 merchant_not_found`.
pub fn known_merchant(
    model: &paycenter_projections::ReadModel,
    merchant_id: &paycenter_domain::ids::MerchantId,
) -> Result<(), crate::error::Refusal> {
    if model.merchants().contains_key(merchant_id) {
        return Ok(());
    }
    Err(crate::error::Refusal::not_found(
        crate::error::ErrorCode::MerchantNotFound,
        format!("merchant {merchant_id} not found"),
    ))
}

/// What one submission of a queued item (a refund, a share) to its channel came to.
#[derive(Debug, PartialEq, Eq)]
pub enum Submission {
    /// The channel took it (its outcome recorded if it answered one).
    Accepted,
    /// Nothing to submit: the item is settled or unknown here.
    NothingToDo,
    /// Another node holds the submission's lease.
    HeldElsewhere,
    /// The channel took it and waits on someone else (a user's confirmation): ask again
    /// later, not soon.
    Waiting,
    /// The channel refused or could not be reached; try again later.
    Failed(String),
}

/// `n_bytes` random bytes as hex: the random parts of ids, command ids and new secrets.
pub fn random_hex(n_bytes: usize) -> String {
    let mut bytes = vec![0u8; n_bytes];
    rand::RngCore::fill_bytes(&mut rand::thread_rng(), &mut bytes);
    hex::encode(bytes)
}
