//! Routing (`"route": "auto"`): a merchant's rules, the order its accounts are tried in, the
//! move to the next account after a definite refusal, and each account's circuit breaker.
//!
//! A refusal is definite when the channel answered that it will not take the trade
//! (`GatewayError::Refused`) or paycenter could not even ask it (the account's parameters, its
//! checks): then no trade exists there and the next account is tried, within the same request
//! (one decision: the spacing of an order's attempts does not apply). After a timeout or a
//! network error the trade's state is unknown: the channel is asked (query); only if it knows
//! no such trade, or closes it, does routing move on; otherwise the app hears `502` and the
//! attempt stays for the sweeper. A trade a channel accepted is never routed elsewhere.

use paycenter_domain::events::{RouteRecord, RouteSkip, RoutingRule};
use paycenter_domain::ids::{ChannelAccountId, MerchantId, TradeNo};
use paycenter_domain::payment::Channel;
use paycenter_domain::routing::{self, BreakerState, Candidate};
use paycenter_gateway::{ChannelPaymentStatus, GatewayError};

use crate::error::{ErrorCode, Refusal};
use crate::service::breakers::breaker_now;
use crate::service::payments::{
    start_attempt, AccountChoice, AttemptFailure, PaymentStarted, StartPayment,
};
use crate::state::AppState;

/// The most accounts one request tries.
pub const MAX_ACCOUNTS_TRIED: usize = 4;

/// Sets a merchant's rules.
pub async fn set_rules(
    state: &AppState,
    merchant_id: &MerchantId,
    rules: Vec<RoutingRule>,
) -> Result<Vec<RoutingRule>, Refusal> {
    let (exists, accounts) = {
        let model = state.model_for_request()?;
        let accounts: Vec<ChannelAccountId> = model
            .channel_accounts()
            .values()
            .filter(|account| &account.merchant_id == merchant_id)
            .filter(|account| account.mode.takes_payments())
            .map(|account| account.channel_account_id.clone())
            .collect();
        (model.merchants().contains_key(merchant_id), accounts)
    };
    let command_id = format!(
        "{merchant_id}-routing-{}",
        state.clock.now().timestamp_micros()
    );
    state
        .execute(
            &paycenter_domain::streams::merchant(merchant_id),
            &command_id,
            |_, now| routing::set_routing(exists, merchant_id, &accounts, rules.clone(), now),
        )
        .await?;
    Ok(state.model_for_request()?.routing(merchant_id).to_vec())
}

/// What to do after an attempt failed at the channel.
enum AfterFailure {
    /// No trade exists there: the next account may be tried.
    Next(String),
    /// The trade's state is unknown or it was accepted: stop here.
    Stop(Refusal),
}

/// After `error` for `trade_no` at `account`: a definite refusal moves on; a timeout or a
/// network error is checked with the channel first.
async fn after_failure(
    state: &AppState,
    account: &ChannelAccountId,
    trade_no: &TradeNo,
    error: GatewayError,
) -> AfterFailure {
    let unknown = match &error {
        GatewayError::Refused { reason } => {
            return AfterFailure::Next(format!("refused: {reason}"))
        }
        GatewayError::Unavailable { reason } => reason.clone(),
        other => return AfterFailure::Next(format!("not asked: {other}")),
    };
    let stop = |why: String| {
        AfterFailure::Stop(Refusal::new(
            ErrorCode::ChannelUnavailable,
            format!("channel account {account} did not answer ({unknown}) and {why}: the payment was not routed elsewhere; ask again later"),
        ))
    };
    let payment = match state
        .model_for_request()
        .and_then(|model| model.payment(trade_no).map_err(Refusal::from))
    {
        Ok(Some(payment)) => payment,
        _ => return stop("its trade could not be looked up".to_owned()),
    };
    let (adapter, params) = match state.account_adapter(account) {
        Ok(found) => found,
        Err(refusal) => return stop(refusal.message),
    };
    let order = state.channel_order(&payment);
    let query = adapter.query_payment(&params, &order);
    match crate::service::channel_call(state, payment.channel, account, "query", query).await {
        Ok(ChannelPaymentStatus::NotFound | ChannelPaymentStatus::Closed) => AfterFailure::Next(
            format!("no answer ({unknown}); the channel has no such trade"),
        ),
        Ok(ChannelPaymentStatus::Failed { reason }) => AfterFailure::Next(format!(
            "no answer ({unknown}); the channel failed the trade: {reason}"
        )),
        Ok(ChannelPaymentStatus::Pending) => {
            stop("the channel holds the trade as pending".to_owned())
        }
        Ok(ChannelPaymentStatus::Paid { .. }) => {
            stop("the channel reports the trade paid".to_owned())
        }
        Err(query_error) => stop(format!("asking about the trade failed too ({query_error})")),
    }
}

/// Starts an app's payment: at the account it names, or where routing sends it.
pub async fn start(state: &AppState, command: StartPayment) -> Result<PaymentStarted, Refusal> {
    match &command.account {
        AccountChoice::Given(_) => crate::service::payments::start(state, command).await,
        AccountChoice::Auto { preferred_channels } => {
            let preferred_channels = preferred_channels.clone();
            start_routed(state, command, preferred_channels).await
        }
    }
}

/// A `"route": "auto"` payment: the accounts of the merchant's first fitting rule, tried in
/// the order routing gives until one accepts the trade.
pub async fn start_routed(
    state: &AppState,
    command: StartPayment,
    preferred_channels: Vec<Channel>,
) -> Result<PaymentStarted, Refusal> {
    let merchant_id = command.merchant_id.clone();
    let (rules, accounts) = {
        let model = state.model_for_request()?;
        let rules = model.routing(&merchant_id).to_vec();
        let accounts: Vec<(ChannelAccountId, Channel, bool)> = model
            .channel_accounts()
            .values()
            .filter(|account| account.merchant_id == merchant_id)
            .filter(|account| account.mode.takes_payments())
            .map(|account| {
                (
                    account.channel_account_id.clone(),
                    account.channel,
                    model.is_channel_account_disabled(&account.channel_account_id),
                )
            })
            .collect();
        (rules, accounts)
    };
    let mut breakers = std::collections::HashMap::new();
    for (account, _, _) in &accounts {
        breakers.insert(account.clone(), breaker_now(state, account).await?);
    }
    let window = std::time::Duration::from_secs(state.config.breaker.window_seconds);
    let now = std::time::Instant::now();
    let plan = routing::plan(
        &rules,
        command.invoke_method,
        command.amount.currency(),
        &preferred_channels,
        |account| {
            let (id, channel, disabled) = accounts.iter().find(|(id, _, _)| id == account)?;
            Some(Candidate {
                channel_account_id: id.clone(),
                channel: *channel,
                disabled: *disabled,
                breaker: breakers.get(id).copied().unwrap_or(BreakerState::Closed),
                recent: state.channel_outcomes.tally(id, window, now),
            })
        },
        rand::random::<u64>(),
    )
    .map_err(|error| Refusal::new(ErrorCode::NoRoute, error.to_string()))?;
    let mut skipped: Vec<RouteSkip> = plan.skipped.clone();
    let mut failover_from: Option<TradeNo> = None;
    let mut last_refusal = None;
    for (idx, account) in plan.order.iter().take(MAX_ACCOUNTS_TRIED).enumerate() {
        let reason = match (&failover_from, idx) {
            (None, 0) => format!("rule {}: first available account", plan.rule_index),
            _ => format!("rule {}: the accounts before it refused", plan.rule_index),
        };
        let route = RouteRecord {
            account_chosen: account.clone(),
            reason,
            skipped: skipped.clone(),
        };
        match start_attempt(state, &command, account, Some(route), failover_from.clone()).await {
            Ok(started) => return Ok(started),
            Err(AttemptFailure::Refused(refusal)) => {
                // Not this account (its checks): the next may take it.
                if refusal.code == ErrorCode::AttemptTooSoon
                    || refusal.code == ErrorCode::OrderAlreadyPaid
                    || refusal.code == ErrorCode::OrderAmountMismatch
                    || refusal.code == ErrorCode::TooManyAttempts
                {
                    return Err(refusal);
                }
                skipped.push(RouteSkip {
                    channel_account_id: account.clone(),
                    reason: refusal.message.clone(),
                });
                last_refusal = Some(refusal);
            }
            Err(AttemptFailure::Initiation { trade_no, error }) => {
                match after_failure(state, account, &trade_no, error).await {
                    AfterFailure::Next(why) => {
                        skipped.push(RouteSkip {
                            channel_account_id: account.clone(),
                            reason: why.clone(),
                        });
                        last_refusal = Some(Refusal::new(ErrorCode::ChannelUnavailable, why));
                        failover_from = Some(trade_no);
                    }
                    AfterFailure::Stop(refusal) => return Err(refusal),
                }
            }
        }
    }
    Err(last_refusal
        .unwrap_or_else(|| Refusal::new(ErrorCode::NoRoute, "no account could take the payment")))
}
