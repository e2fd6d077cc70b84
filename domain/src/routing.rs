//! Routing: which of a merchant's channel accounts a `"route": "auto"` payment goes to, and each
//! account's circuit breaker.
//!
//! A merchant's rules (`merchant.routing_set`, in the merchant's stream) list accounts in
//! priority order per invoke method and currency; the first rule that fits a payment gives its
//! candidates. [`plan`] orders them: accounts disabled or with an open breaker are skipped (and
//! said why), `preferred_channels` come first in the app's order, weights (when given) draw the
//! order at random from the caller's entropy, and an account failing half of its recent calls
//! goes after the healthy ones. The service then tries them in order, moving to the next only
//! after a definite refusal by the channel.
//!
//! The breaker (`channel_account.breaker_changed`, stream `breaker-{account}`): closed → open
//! when the recent failure share crosses the threshold; open → half-open once it has been open
//! long enough (the next payment is a probe); half-open → closed on a success, → open on a
//! failure.

use chrono::{DateTime, Duration, Utc};

use crate::error::DomainError;
pub use crate::events::RoutingRule;
use crate::events::{ChannelBreakerChanged, Event, MerchantRoutingSet, RouteSkip};
use crate::ids::{ChannelAccountId, MerchantId};
use crate::money::Currency;
pub use crate::vocabulary::BreakerState;
use crate::vocabulary::{Channel, InvokeMethod};

/// The most rules of one merchant.
pub const MAX_RULES: usize = 32;
/// The most accounts of one rule.
pub const MAX_ACCOUNTS_PER_RULE: usize = 16;
/// The largest weight.
pub const MAX_WEIGHT: u32 = 1_000;

impl RoutingRule {
    fn fits(&self, invoke_method: InvokeMethod, currency: Currency) -> bool {
        self.invoke_method
            .is_none_or(|wanted| wanted == invoke_method)
            && self.currency.is_none_or(|wanted| wanted == currency)
    }
}

fn invalid(reason: impl Into<String>) -> DomainError {
    DomainError::InvalidField {
        field: "rules",
        reason: reason.into(),
    }
}

/// Sets a merchant's rules, every account one of the merchant's own.
pub fn set_routing(
    merchant_exists: bool,
    merchant_id: &MerchantId,
    accounts_of_merchant: &[ChannelAccountId],
    rules: Vec<RoutingRule>,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    if !merchant_exists {
        return Err(DomainError::MerchantNotFound {
            merchant_id: merchant_id.clone(),
        });
    }
    if rules.len() > MAX_RULES {
        return Err(invalid(format!("at most {MAX_RULES} rules")));
    }
    for (idx, rule) in rules.iter().enumerate() {
        let n_accounts = rule.channel_account_ids.len();
        if n_accounts == 0 || n_accounts > MAX_ACCOUNTS_PER_RULE {
            return Err(invalid(format!(
                "rule {idx}: 1 to {MAX_ACCOUNTS_PER_RULE} channel_account_ids"
            )));
        }
        for (position, account) in rule.channel_account_ids.iter().enumerate() {
            if !accounts_of_merchant.contains(account) {
                return Err(invalid(format!(
                    "rule {idx}: {account} is not a channel account of {merchant_id}"
                )));
            }
            if rule.channel_account_ids[..position].contains(account) {
                return Err(invalid(format!("rule {idx}: {account} is listed twice")));
            }
        }
        if let Some(weights) = &rule.weights {
            if weights.len() != n_accounts
                || weights
                    .iter()
                    .any(|weight| *weight == 0 || *weight > MAX_WEIGHT)
            {
                return Err(invalid(format!(
                    "rule {idx}: one weight of 1 to {MAX_WEIGHT} per account"
                )));
            }
        }
    }
    Ok(vec![Event::MerchantRoutingSet(MerchantRoutingSet {
        merchant_id: merchant_id.clone(),
        rules,
        set_at: now,
    })])
}

/// What routing knows of one account.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub channel_account_id: ChannelAccountId,
    pub channel: Channel,
    pub disabled: bool,
    /// The breaker as routing sees it now (an open breaker past its time is half-open).
    pub breaker: BreakerState,
    /// Recent calls and failures.
    pub recent: (u64, u64),
}

/// The accounts to try, in order, and those left out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub rule_index: usize,
    pub order: Vec<ChannelAccountId>,
    pub skipped: Vec<RouteSkip>,
}

/// Orders the candidates of the first rule that fits. `candidate` describes an account (`None`:
/// unknown, e.g. deleted); `draw` is the caller's entropy for weighted rules.
pub fn plan(
    rules: &[RoutingRule],
    invoke_method: InvokeMethod,
    currency: Currency,
    preferred_channels: &[Channel],
    candidate: impl Fn(&ChannelAccountId) -> Option<Candidate>,
    draw: u64,
) -> Result<Plan, DomainError> {
    let Some((rule_index, rule)) = rules
        .iter()
        .enumerate()
        .find(|(_, rule)| rule.fits(invoke_method, currency))
    else {
        return Err(DomainError::NoRoute {
            reason: format!(
                "no routing rule of the merchant takes {} payments in {}",
                invoke_method.as_str(),
                currency.code()
            ),
        });
    };
    let mut skipped = Vec::new();
    let mut available: Vec<(Candidate, u32)> = Vec::new();
    for (idx, account) in rule.channel_account_ids.iter().enumerate() {
        let skip = |reason: &str| RouteSkip {
            channel_account_id: account.clone(),
            reason: reason.to_owned(),
        };
        let Some(found) = candidate(account) else {
            skipped.push(skip("unknown account"));
            continue;
        };
        if found.disabled {
            skipped.push(skip("disabled"));
        } else if found.breaker == BreakerState::Open {
            skipped.push(skip("breaker open"));
        } else if !preferred_channels.is_empty() && !preferred_channels.contains(&found.channel) {
            skipped.push(skip("channel not preferred"));
        } else {
            let weight = rule.weights.as_ref().map_or(1, |weights| weights[idx]);
            available.push((found, weight));
        }
    }
    if rule.weights.is_some() {
        // Weighted draw without replacement, from the caller's entropy (a simple LCG keeps
        // the decision reproducible from `draw`).
        let mut state = draw | 1;
        let mut drawn = Vec::with_capacity(available.len());
        while !available.is_empty() {
            state = state
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let total: u64 = available.iter().map(|(_, weight)| u64::from(*weight)).sum();
            let mut pick = (state >> 33) % total;
            let idx = available
                .iter()
                .position(|(_, weight)| {
                    let weight = u64::from(*weight);
                    if pick < weight {
                        true
                    } else {
                        pick -= weight;
                        false
                    }
                })
                .expect("the pick falls within the total");
            drawn.push(available.remove(idx));
        }
        available = drawn;
    }
    // Preferred channels first, in the app's order; then the healthy before the failing.
    let rank = |candidate: &Candidate| {
        let preferred = preferred_channels
            .iter()
            .position(|channel| *channel == candidate.channel)
            .unwrap_or(usize::MAX);
        let (calls, failures) = candidate.recent;
        let failing = calls >= 4 && failures * 2 >= calls;
        (preferred, failing)
    };
    available.sort_by_key(|(candidate, _)| rank(candidate));
    if available.is_empty() {
        return Err(DomainError::NoRoute {
            reason: format!(
                "every account of rule {rule_index} is unavailable: {}",
                skipped
                    .iter()
                    .map(|skipped| format!("{} ({})", skipped.channel_account_id, skipped.reason))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        });
    }
    Ok(Plan {
        rule_index,
        order: available
            .into_iter()
            .map(|(candidate, _)| candidate.channel_account_id)
            .collect(),
        skipped,
    })
}

/// The breaker's thresholds.
#[derive(Debug, Clone, Copy)]
pub struct BreakerConfig {
    /// Opens at this share of failures (percent)...
    pub failure_percent: u64,
    /// ...among at least this many recent calls.
    pub min_calls: u64,
    /// Stays open this long before letting a probe through.
    pub open_seconds: i64,
    /// "Recent" calls: within this many seconds.
    pub window_seconds: u64,
}

impl Default for BreakerConfig {
    fn default() -> Self {
        BreakerConfig {
            failure_percent: 50,
            min_calls: 10,
            open_seconds: 30,
            window_seconds: 60,
        }
    }
}

/// Whether `failures` of `calls` cross `failure_percent`, among at least `min_calls`: what opens a
/// breaker, and what the failure-rate alert watches.
pub fn fails_too_often(calls: u64, failures: u64, min_calls: u64, failure_percent: u64) -> bool {
    calls >= min_calls && failures * 100 >= failure_percent * calls
}

/// What one call's outcome does to the breaker (`recent` includes it).
pub fn breaker_after_call(
    channel_account_id: &ChannelAccountId,
    current: BreakerState,
    recent: (u64, u64),
    succeeded: bool,
    config: BreakerConfig,
    now: DateTime<Utc>,
) -> Option<Event> {
    let (calls, failures) = recent;
    let (to, reason) = match (current, succeeded) {
        (BreakerState::HalfOpen, true) => (BreakerState::Closed, "the probe succeeded".to_owned()),
        (BreakerState::HalfOpen, false) => (BreakerState::Open, "the probe failed".to_owned()),
        (BreakerState::Closed, false)
            if fails_too_often(calls, failures, config.min_calls, config.failure_percent) =>
        {
            (
                BreakerState::Open,
                format!("{failures} of the last {calls} calls failed"),
            )
        }
        _ => return None,
    };
    Some(changed(channel_account_id, current, to, reason, now))
}

/// An open breaker whose time is up lets the next payment through as a probe.
pub fn breaker_before_call(
    channel_account_id: &ChannelAccountId,
    current: BreakerState,
    changed_at: DateTime<Utc>,
    config: BreakerConfig,
    now: DateTime<Utc>,
) -> Option<Event> {
    (current == BreakerState::Open && now >= changed_at + Duration::seconds(config.open_seconds))
        .then(|| {
            changed(
                channel_account_id,
                current,
                BreakerState::HalfOpen,
                format!(
                    "open for {} s: the next payment is a probe",
                    config.open_seconds
                ),
                now,
            )
        })
}

fn changed(
    channel_account_id: &ChannelAccountId,
    from: BreakerState,
    to: BreakerState,
    reason: String,
    now: DateTime<Utc>,
) -> Event {
    Event::ChannelBreakerChanged(ChannelBreakerChanged {
        channel_account_id: channel_account_id.clone(),
        from,
        to,
        reason,
        changed_at: now,
    })
}

/// The breaker's state in its stream: the last transition's, closed when there is none.
pub fn breaker_state(history: &[Event]) -> (BreakerState, Option<DateTime<Utc>>) {
    history
        .iter()
        .rev()
        .find_map(|event| match event {
            Event::ChannelBreakerChanged(changed) => Some((changed.to, Some(changed.changed_at))),
            _ => None,
        })
        .unwrap_or((BreakerState::Closed, None))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn account(n: u8) -> ChannelAccountId {
        ChannelAccountId::parse(&format!("ca_{n}")).unwrap()
    }

    fn candidate(n: u8, channel: Channel) -> Candidate {
        Candidate {
            channel_account_id: account(n),
            channel,
            disabled: false,
            breaker: BreakerState::Closed,
            recent: (0, 0),
        }
    }

    fn rule(accounts: &[u8], weights: Option<Vec<u32>>) -> RoutingRule {
        RoutingRule {
            invoke_method: None,
            currency: None,
            channel_account_ids: accounts.iter().map(|n| account(*n)).collect(),
            weights,
        }
    }

    #[test]
    fn the_plan_skips_what_cannot_take_a_payment_and_says_why() {
        let rules = vec![
            RoutingRule {
                invoke_method: Some(InvokeMethod::Pc),
                ..rule(&[9], None)
            },
            rule(&[1, 2, 3, 4, 5], None),
        ];
        let plan = plan(
            &rules,
            InvokeMethod::NativeQr,
            Currency::CNY,
            &[Channel::Wechatpay, Channel::Alipay],
            |id| match id.as_str() {
                "ca_1" => Some(Candidate {
                    disabled: true,
                    ..candidate(1, Channel::Alipay)
                }),
                "ca_2" => Some(Candidate {
                    breaker: BreakerState::Open,
                    ..candidate(2, Channel::Alipay)
                }),
                "ca_3" => Some(candidate(3, Channel::Stripe)),
                "ca_4" => Some(candidate(4, Channel::Alipay)),
                "ca_5" => Some(candidate(5, Channel::Wechatpay)),
                _ => None,
            },
            7,
        )
        .unwrap();
        assert_eq!(plan.rule_index, 1, "the first rule that fits");
        assert_eq!(
            plan.order,
            vec![account(5), account(4)],
            "preferred channels first"
        );
        let reasons: Vec<&str> = plan
            .skipped
            .iter()
            .map(|skip| skip.reason.as_str())
            .collect();
        assert_eq!(
            reasons,
            ["disabled", "breaker open", "channel not preferred"]
        );
    }

    #[test]
    fn a_failing_account_goes_after_the_healthy_ones_and_no_rule_is_no_route() {
        let rules = vec![rule(&[1, 2], None)];
        let plan = plan(
            &rules,
            InvokeMethod::Pc,
            Currency::CNY,
            &[],
            |id| {
                let n = if id.as_str() == "ca_1" { 1 } else { 2 };
                Some(Candidate {
                    recent: if n == 1 { (10, 6) } else { (10, 0) },
                    ..candidate(n, Channel::Alipay)
                })
            },
            1,
        )
        .unwrap();
        assert_eq!(plan.order, vec![account(2), account(1)]);
        let only_pc = vec![RoutingRule {
            invoke_method: Some(InvokeMethod::Pc),
            ..rule(&[1], None)
        }];
        let none = plan_error(&only_pc);
        assert!(none.contains("native_qr"), "{none}");
    }

    fn plan_error(rules: &[RoutingRule]) -> String {
        plan(
            rules,
            InvokeMethod::NativeQr,
            Currency::CNY,
            &[],
            |_| None,
            0,
        )
        .unwrap_err()
        .to_string()
    }

    #[test]
    fn weights_draw_the_order_in_proportion() {
        let rules = vec![rule(&[1, 2], Some(vec![900, 100]))];
        let mut first_is_1 = 0;
        for draw in 0..2_000u64 {
            let plan = plan(
                &rules,
                InvokeMethod::Pc,
                Currency::CNY,
                &[],
                |id| {
                    Some(candidate(
                        if id.as_str() == "ca_1" { 1 } else { 2 },
                        Channel::Alipay,
                    ))
                },
                draw.wrapping_mul(0x9E37_79B9_7F4A_7C15),
            )
            .unwrap();
            assert_eq!(plan.order.len(), 2);
            first_is_1 += usize::from(plan.order[0] == account(1));
        }
        assert!(
            (1_650..=1_950).contains(&first_is_1),
            "{first_is_1} of 2000"
        );
    }

    #[test]
    fn rules_name_the_merchants_own_accounts_once_with_one_weight_each() {
        let merchant = MerchantId::parse("mch_1").unwrap();
        let own = [account(1), account(2)];
        let now = DateTime::from_timestamp(1_764_662_400, 0).unwrap();
        assert!(set_routing(
            true,
            &merchant,
            &own,
            vec![rule(&[1, 2], Some(vec![1, 2]))],
            now
        )
        .is_ok());
        for bad in [
            rule(&[3], None),
            rule(&[1, 1], None),
            rule(&[1, 2], Some(vec![1])),
            rule(&[1], Some(vec![0])),
            rule(&[], None),
        ] {
            assert!(
                set_routing(true, &merchant, &own, vec![bad.clone()], now).is_err(),
                "{bad:?}"
            );
        }
        assert!(matches!(
            set_routing(false, &merchant, &own, vec![], now),
            Err(DomainError::MerchantNotFound { .. })
        ));
    }

    #[test]
    fn the_breaker_opens_on_failures_probes_when_its_time_is_up_and_closes_on_success() {
        let config = BreakerConfig {
            failure_percent: 50,
            min_calls: 4,
            open_seconds: 30,
            window_seconds: 60,
        };
        let id = account(1);
        let now = DateTime::from_timestamp(1_764_662_400, 0).unwrap();
        let to = |event: Option<Event>| match event {
            Some(Event::ChannelBreakerChanged(changed)) => Some(changed.to),
            _ => None,
        };
        assert_eq!(
            to(breaker_after_call(
                &id,
                BreakerState::Closed,
                (3, 3),
                false,
                config,
                now
            )),
            None,
            "too few calls"
        );
        assert_eq!(
            to(breaker_after_call(
                &id,
                BreakerState::Closed,
                (4, 2),
                false,
                config,
                now
            )),
            Some(BreakerState::Open)
        );
        assert_eq!(
            to(breaker_after_call(
                &id,
                BreakerState::Closed,
                (4, 1),
                false,
                config,
                now
            )),
            None
        );
        assert_eq!(
            to(breaker_before_call(
                &id,
                BreakerState::Open,
                now,
                config,
                now + Duration::seconds(29)
            )),
            None
        );
        assert_eq!(
            to(breaker_before_call(
                &id,
                BreakerState::Open,
                now,
                config,
                now + Duration::seconds(30)
            )),
            Some(BreakerState::HalfOpen)
        );
        assert_eq!(
            to(breaker_after_call(
                &id,
                BreakerState::HalfOpen,
                (1, 0),
                true,
                config,
                now
            )),
            Some(BreakerState::Closed)
        );
        assert_eq!(
            to(breaker_after_call(
                &id,
                BreakerState::HalfOpen,
                (1, 1),
                false,
                config,
                now
            )),
            Some(BreakerState::Open)
        );
        assert_eq!(breaker_state(&[]), (BreakerState::Closed, None));
    }
}
