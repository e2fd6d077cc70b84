//! Each channel account's circuit breaker, as the service moves it: half-open when an open
//! breaker's time is up and a routed payment comes (`breaker_now`), and after every initiation
//! by its outcome (`after_initiation`). The decisions are `domain::routing`'s; the failure counts
//! are this node's (`crate::channel_health`).

use paycenter_domain::events::Event;
use paycenter_domain::ids::ChannelAccountId;
use paycenter_domain::routing::{self, BreakerConfig, BreakerState};
use paycenter_gateway::GatewayError;

use crate::error::Refusal;
use crate::state::AppState;

fn breaker_config(state: &AppState) -> BreakerConfig {
    state.config.breaker
}

/// The breaker of `account` as routing must see it now: an open breaker whose time is up
/// becomes half-open (recorded), letting this payment through as a probe.
pub async fn breaker_now(
    state: &AppState,
    account: &ChannelAccountId,
) -> Result<BreakerState, Refusal> {
    let (current, changed_at) = state.model_for_request()?.breaker(account);
    let (Some(changed_at), BreakerState::Open) = (changed_at, current) else {
        return Ok(current);
    };
    let config = breaker_config(state);
    if routing::breaker_before_call(account, current, changed_at, config, state.clock.now())
        .is_none()
    {
        return Ok(current);
    }
    let command_id = format!("{account}-half-open-{}", changed_at.timestamp_micros());
    state
        .execute(
            &format!("breaker-{account}"),
            &command_id,
            |history, now| {
                let (current, changed_at) = routing::breaker_state(history);
                Ok(changed_at
                    .and_then(|at| routing::breaker_before_call(account, current, at, config, now))
                    .into_iter()
                    .collect())
            },
        )
        .await?;
    Ok(BreakerState::HalfOpen)
}

/// After an initiation: counted for the failure-rate alert, and the breaker moved if the
/// outcome says so. Requests the channel refused as malformed (`rejected`) are not the
/// channel's health and count as neither.
pub async fn after_initiation<T>(
    state: &AppState,
    account: &ChannelAccountId,
    outcome: &Result<T, GatewayError>,
) {
    let succeeded = match outcome {
        Ok(_) => true,
        Err(GatewayError::Unavailable { .. } | GatewayError::Refused { .. }) => false,
        Err(_) => return,
    };
    let now = std::time::Instant::now();
    state.channel_outcomes.record(account, succeeded, now);
    let window = std::time::Duration::from_secs(state.config.breaker.window_seconds);
    let recent = state.channel_outcomes.tally(account, window, now);
    let config = breaker_config(state);
    // Every payment passes here: the breaker's stream is read only when the state the read
    // model holds would change (it has every transition a routed payment waited for, so a
    // success on a closed breaker, the usual case, costs no read of the log).
    let known = state
        .model_for_request()
        .ok()
        .map(|model| model.breaker(account).0);
    if let Some(known) = known {
        let changes = routing::breaker_after_call(
            account,
            known,
            recent,
            succeeded,
            config,
            state.clock.now(),
        );
        if changes.is_none() {
            return;
        }
    }
    let decided = state
        .execute(
            &format!("breaker-{account}"),
            &format!("{account}-after-{}", state.clock.now().timestamp_micros()),
            |history, now| {
                let (current, _) = routing::breaker_state(history);
                Ok(
                    routing::breaker_after_call(account, current, recent, succeeded, config, now)
                        .into_iter()
                        .collect(),
                )
            },
        )
        .await;
    match decided {
        Ok((events, _)) => {
            for event in events {
                if let Event::ChannelBreakerChanged(changed) = event {
                    tracing::warn!(channel_account_id = %account, from = %changed.from, to = %changed.to, reason = %changed.reason, "breaker changed");
                    if changed.to == BreakerState::Closed {
                        // A fresh start: old failures must not reopen it at once.
                        state.channel_outcomes.forget(account);
                    }
                }
            }
        }
        Err(refusal) => tracing::warn!(message = %refusal.message, "the breaker was not updated"),
    }
}
