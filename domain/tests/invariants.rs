//! Property tests: random command sequences against one order, with the invariants checked
//! after every step from the event history itself (not from the aggregate's own bookkeeping).

use std::collections::HashMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use paycenter_domain::events::*;
use paycenter_domain::ids::*;
use paycenter_domain::payment::*;
use paycenter_domain::{Currency, Money, Rate};
use proptest::prelude::*;

const ORDER_AMOUNT_MINOR: i64 = 10_000;
const MIN_INTERVAL_MS: i64 = 15_000;

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn cny(minor: i64) -> Money {
    Money::from_minor(minor, Currency::CNY)
}

/// Starts attempt `n` of the one order the tests use.
fn start_command(n: u64, amount_minor: i64, fee_rate: Rate, splits: Vec<Split>) -> OrderCommand {
    OrderCommand::StartAttempt(StartAttempt {
        trade_no: TradeNo::generate(t0(), n),
        merchant_id: MerchantId::from_entropy(1),
        order_no: OrderNo::parse("O1").unwrap(),
        app_id: AppId::from_entropy(1),
        channel_account_id: ChannelAccountId::from_entropy(1),
        channel: Channel::Sandbox,
        invoke_method: InvokeMethod::Wap,
        amount: cny(amount_minor),
        fee_rate,
        splits,
        subject: "s".into(),
        expire_seconds: 60,
        min_attempt_interval_ms: MIN_INTERVAL_MS,
        return_url: None,
        route: None,
        failover_from: None,
        share: paycenter_domain::vocabulary::ShareMode::None,
    })
}

/// A command in terms of indexes, resolved against the state when it runs.
#[derive(Debug, Clone)]
enum Step {
    Wait {
        seconds: i64,
    },
    Start {
        split_minor: i64,
    },
    Succeed {
        attempt_idx: usize,
    },
    Fail {
        attempt_idx: usize,
    },
    Close {
        attempt_idx: usize,
    },
    Refund {
        attempt_idx: usize,
        refund_no: u8,
        amount_minor: i64,
    },
    SettleRefund {
        attempt_idx: usize,
        refund_idx: usize,
        ok: bool,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0..40_i64).prop_map(|seconds| Step::Wait { seconds }),
        (0..12_000_i64).prop_map(|split_minor| Step::Start { split_minor }),
        (0..6_usize).prop_map(|attempt_idx| Step::Succeed { attempt_idx }),
        (0..6_usize).prop_map(|attempt_idx| Step::Fail { attempt_idx }),
        (0..6_usize).prop_map(|attempt_idx| Step::Close { attempt_idx }),
        (0..6_usize, 0..6_u8, 1..12_000_i64).prop_map(|(attempt_idx, refund_no, amount_minor)| {
            Step::Refund {
                attempt_idx,
                refund_no,
                amount_minor,
            }
        }),
        (0..6_usize, 0..6_usize, any::<bool>()).prop_map(|(attempt_idx, refund_idx, ok)| {
            Step::SettleRefund {
                attempt_idx,
                refund_idx,
                ok,
            }
        }),
    ]
}

fn to_command(order: &Order, step: &Step, n_started: &mut u64) -> Option<OrderCommand> {
    let trade_no_of = |attempt_idx: usize| {
        order
            .attempts
            .get(attempt_idx)
            .map(|attempt| attempt.started.trade_no.clone())
    };
    Some(match step {
        Step::Wait { .. } => return None,
        Step::Start { split_minor } => {
            *n_started += 1;
            let splits = if *split_minor > 0 {
                vec![Split {
                    receiver: "partner".into(),
                    amount: cny(*split_minor),
                }]
            } else {
                vec![]
            };
            start_command(
                *n_started,
                ORDER_AMOUNT_MINOR,
                Rate::parse("0.006").unwrap(),
                splits,
            )
        }
        Step::Succeed { attempt_idx } => OrderCommand::RecordSuccess {
            channel_account_id: ChannelAccountId::from_entropy(1),
            trade_no: trade_no_of(*attempt_idx)?,
            channel_trade_no: ChannelTradeNo::parse(&format!("CH{attempt_idx}")).unwrap(),
            amount: cny(ORDER_AMOUNT_MINOR),
            source: OutcomeSource::Callback,
        },
        Step::Fail { attempt_idx } => OrderCommand::RecordFailure {
            trade_no: trade_no_of(*attempt_idx)?,
            reason: "declined".into(),
            source: OutcomeSource::Callback,
        },
        Step::Close { attempt_idx } => OrderCommand::Close {
            trade_no: trade_no_of(*attempt_idx)?,
            reason: CloseReason::ByApp,
        },
        Step::Refund {
            attempt_idx,
            refund_no,
            amount_minor,
        } => OrderCommand::RequestRefund {
            trade_no: trade_no_of(*attempt_idx)?,
            refund_id: RefundId::parse(&format!("rf_{attempt_idx}_{refund_no}")).unwrap(),
            refund_no: RefundNo::parse(&format!("R{refund_no}")).unwrap(),
            amount: cny(*amount_minor),
            reason: String::new(),
        },
        Step::SettleRefund {
            attempt_idx,
            refund_idx,
            ok,
        } => {
            let attempt = order.attempts.get(*attempt_idx)?;
            let refund = attempt.refunds.get(*refund_idx)?;
            let trade_no = attempt.started.trade_no.clone();
            let refund_id = refund.refund_id.clone();
            if *ok {
                OrderCommand::RecordRefundSuccess {
                    trade_no,
                    refund_id,
                    channel_refund_no: None,
                }
            } else {
                OrderCommand::RecordRefundFailure {
                    trade_no,
                    refund_id,
                    reason: "x".into(),
                }
            }
        }
    })
}

/// Checks the invariants from the raw history.
fn check_history(history: &[Event]) {
    let mut started: Vec<&PaymentAttemptStarted> = Vec::new();
    let mut n_successes: HashMap<&TradeNo, usize> = HashMap::new();
    let mut auto_refunded: Vec<&TradeNo> = Vec::new();
    let mut refund_amounts: HashMap<&RefundId, (&TradeNo, i64)> = HashMap::new();
    let mut committed: HashMap<&TradeNo, i64> = HashMap::new();
    let mut paid: HashMap<&TradeNo, i64> = HashMap::new();
    for event in history {
        match event {
            Event::PaymentAttemptStarted(event) => {
                if let Some(previous) = started.last() {
                    assert!(
                        event.started_at - previous.started_at
                            >= Duration::milliseconds(MIN_INTERVAL_MS),
                        "attempts are spaced"
                    );
                }
                let splits: i64 = event
                    .splits
                    .iter()
                    .map(|split| split.amount.amount_minor())
                    .sum();
                assert!(
                    splits + event.fee.amount_minor() <= event.amount.amount_minor(),
                    "splits + fee ≤ amount"
                );
                started.push(event);
            }
            Event::PaymentSucceeded(event) => {
                *n_successes.entry(&event.trade_no).or_default() += 1;
                *paid.entry(&event.trade_no).or_default() += event.amount.amount_minor();
            }
            Event::RefundRequested(event) => {
                if event.kind == RefundKind::Automatic {
                    auto_refunded.push(&event.trade_no);
                    assert_eq!(
                        event.amount.amount_minor(),
                        ORDER_AMOUNT_MINOR,
                        "duplicates are refunded in full"
                    );
                }
                refund_amounts.insert(
                    &event.refund_id,
                    (&event.trade_no, event.amount.amount_minor()),
                );
                *committed.entry(&event.trade_no).or_default() += event.amount.amount_minor();
            }
            Event::RefundFailed(event) => {
                let (trade_no, amount) = refund_amounts[&event.refund_id];
                *committed.get_mut(trade_no).unwrap() -= amount;
            }
            _ => {}
        }
    }
    for (trade_no, n) in &n_successes {
        assert_eq!(*n, 1, "attempt {trade_no} succeeded more than once");
    }
    for (trade_no, committed) in &committed {
        assert!(
            *committed <= paid.get(trade_no).copied().unwrap_or(0),
            "refunds of {trade_no} exceed what was paid"
        );
    }
    let kept: Vec<_> = n_successes
        .keys()
        .filter(|trade_no| !auto_refunded.contains(trade_no))
        .collect();
    assert!(
        kept.len() <= 1,
        "the order was paid (and kept) more than once: {kept:?}"
    );
    // Conservation: what was paid equals what stays plus what is committed to go back.
    let total_paid: i64 = paid.values().sum();
    let total_committed: i64 = committed.values().sum();
    let total_kept: i64 = paid
        .iter()
        .map(|(trade_no, amount)| amount - committed.get(trade_no).copied().unwrap_or(0))
        .sum();
    assert_eq!(total_paid, total_committed + total_kept);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn random_command_sequences_keep_every_invariant(steps in proptest::collection::vec(step(), 1..60)) {
        let mut order = Order::default();
        let mut history: Vec<Event> = Vec::new();
        let mut now = t0();
        let mut n_started = 0;
        for step in &steps {
            if let Step::Wait { seconds } = step {
                now += Duration::seconds(*seconds);
                continue;
            }
            let Some(command) = to_command(&order, step, &mut n_started) else { continue };
            // Refusals are fine; accepted commands must keep the invariants.
            if let Ok(events) = order.decide(&command, now) {
                for event in &events {
                    order.apply(event);
                }
                history.extend(events);
                check_history(&history);
                // Replaying the history gives the same state.
                prop_assert_eq!(&Order::from_events(&history), &order);
            }
        }
    }
}

#[test]
fn a_failed_attempt_paid_after_another_was_paid_is_a_duplicate() {
    let mut order = Order::default();
    let mut run = |command: OrderCommand, at: i64| {
        let events = order
            .decide(&command, t0() + Duration::seconds(at))
            .unwrap();
        events.iter().for_each(|event| order.apply(event));
        events
    };
    let start = |n: u64| start_command(n, 100, Rate::ZERO, vec![]);
    let succeed = |n: u64| OrderCommand::RecordSuccess {
        channel_account_id: ChannelAccountId::from_entropy(1),
        trade_no: TradeNo::generate(t0(), n),
        channel_trade_no: ChannelTradeNo::parse(&format!("CH{n}")).unwrap(),
        amount: cny(100),
        source: OutcomeSource::Callback,
    };
    run(start(1), 0);
    run(
        OrderCommand::RecordFailure {
            trade_no: TradeNo::generate(t0(), 1),
            reason: "x".into(),
            source: OutcomeSource::Callback,
        },
        1,
    );
    run(start(2), 20);
    run(succeed(2), 21);
    let events = run(succeed(1), 22);
    let Event::DuplicatePaymentDetected(detected) = &events[1] else {
        panic!("{events:?}")
    };
    assert_eq!(detected.cause, DuplicateCause::OrderAlreadyPaid);
    assert_eq!(detected.kept_trade_no, Some(TradeNo::generate(t0(), 2)));
}
