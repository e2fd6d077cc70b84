//! Property tests of money: random orders decided by the real aggregate (tiny and large
//! amounts, up to 16 splits summing up to the whole amount, fee rates from 0 to 30 %,
//! partial refunds down to one minor unit, failed refunds, duplicate payments, closes), folded
//! by the real ledger. After every event, every account is non-negative and debits equal
//! credits; each receiver's refunded share never exceeds its share; the shares the domain
//! decided sum to each refund. At the end the log is replayed twice, as recorded and with the
//! shares stripped (as refunds recorded before shares existed), to the same balances.

use chrono::{DateTime, Duration, TimeZone, Utc};
use paycenter_domain::events::Event;
use paycenter_domain::ids::*;
use paycenter_domain::payment::*;
use paycenter_domain::shares::Parts;
use paycenter_domain::{Currency, Money, Rate};
use paycenter_projections::balances::Ledger;
use proptest::prelude::*;
use support::recorded;

mod support;

#[derive(Debug, Clone)]
enum Step {
    /// Refund this many minor units (clamped to what is left, at least 1).
    Refund { minor: i64, succeeds: bool },
    /// Refund exactly one minor unit.
    RefundOne { succeeds: bool },
    /// Refund everything that is left.
    RefundRest,
    /// Start a second attempt of the order, pay it, then pay the first late (a duplicate).
    Duplicate,
    /// The app closes the first attempt (refused once it is paid).
    Close,
}

#[derive(Debug, Clone)]
struct Plan {
    amount_minor: i64,
    fee_rate_bp: u32,
    /// Weights of the splits; scaled so the splits sum up to at most what the fee leaves.
    split_weights: Vec<u32>,
    /// Per mille of what the fee leaves that goes to splits (1000: all of it).
    split_per_mille: u32,
    paid: bool,
    steps: Vec<Step>,
}

fn amount_minor() -> impl Strategy<Value = i64> {
    prop_oneof![
        1..=5_i64,
        6..10_000_i64,
        1_000_000_000..=1_000_000_000_000_i64
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (1..1_000_000_i64, any::<bool>())
            .prop_map(|(minor, succeeds)| Step::Refund { minor, succeeds }),
        any::<bool>().prop_map(|succeeds| Step::RefundOne { succeeds }),
        Just(Step::RefundRest),
        Just(Step::Duplicate),
        Just(Step::Close),
    ]
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        amount_minor(),
        0..=3_000_u32,
        proptest::collection::vec(1..100_u32, 0..=16),
        prop_oneof![Just(1_000_u32), 0..=1_000_u32],
        prop_oneof![4 => Just(true), 1 => Just(false)],
        proptest::collection::vec(step(), 0..12),
    )
        .prop_map(
            |(amount_minor, fee_rate_bp, split_weights, split_per_mille, paid, steps)| Plan {
                amount_minor,
                fee_rate_bp,
                split_weights,
                split_per_mille,
                paid,
                steps,
            },
        )
}

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap()
}

fn cny(minor: i64) -> Money {
    Money::from_minor(minor, Currency::CNY)
}

/// Splits summing to `per_mille` of what the fee leaves, each positive, by the weights.
fn splits_for(plan: &Plan, fee_minor: i64) -> Vec<Split> {
    let room = (plan.amount_minor - fee_minor) * i64::from(plan.split_per_mille) / 1_000;
    let total_weight: i64 = plan.split_weights.iter().map(|w| i64::from(*w)).sum();
    if total_weight == 0 || room < plan.split_weights.len() as i64 {
        return Vec::new();
    }
    let mut amounts: Vec<i64> = plan
        .split_weights
        .iter()
        .map(|weight| (room * i64::from(*weight) / total_weight).max(1))
        .collect();
    // Hand what flooring left to the first split, so the splits sum exactly to `room`.
    let assigned: i64 = amounts.iter().sum();
    if assigned <= room {
        amounts[0] += room - assigned;
    } else {
        return Vec::new();
    }
    amounts
        .into_iter()
        .enumerate()
        .map(|(idx, minor)| Split {
            receiver: format!("r{idx}"),
            amount: cny(minor),
        })
        .collect()
}

/// One order run through the aggregate: the events it decided, in order.
struct Run {
    merchant_id: MerchantId,
    order: Order,
    events: Vec<Event>,
    n_attempts: u64,
    n_refunds: u64,
    order_idx: usize,
}

impl Run {
    fn decide(&mut self, command: OrderCommand, at_seconds: i64) -> bool {
        match self
            .order
            .decide(&command, t0() + Duration::seconds(at_seconds))
        {
            Ok(decided) => {
                decided.iter().for_each(|event| self.order.apply(event));
                self.events.extend(decided);
                true
            }
            Err(_) => false,
        }
    }

    fn trade_no(&self, attempt_no: u64) -> TradeNo {
        TradeNo::generate(t0(), (self.order_idx as u64) * 100 + attempt_no)
    }

    fn start(&mut self, plan: &Plan, at_seconds: i64) -> Option<TradeNo> {
        self.n_attempts += 1;
        let fee_rate = Rate::parse(&format!(
            "{}.{:04}",
            plan.fee_rate_bp / 10_000,
            plan.fee_rate_bp % 10_000
        ))
        .unwrap();
        let fee_minor = cny(plan.amount_minor)
            .checked_mul_rate(fee_rate)
            .unwrap()
            .amount_minor();
        let trade_no = self.trade_no(self.n_attempts);
        let started = self.decide(
            OrderCommand::StartAttempt(StartAttempt {
                trade_no: trade_no.clone(),
                merchant_id: self.merchant_id.clone(),
                order_no: OrderNo::parse(&format!("O{}", self.order_idx)).unwrap(),
                app_id: AppId::from_entropy(1),
                channel_account_id: ChannelAccountId::from_entropy(1),
                channel: Channel::Sandbox,
                invoke_method: InvokeMethod::Pc,
                amount: cny(plan.amount_minor),
                fee_rate,
                splits: splits_for(plan, fee_minor),
                subject: "s".into(),
                expire_seconds: 600,
                min_attempt_interval_ms: 0,
                return_url: None,
                route: None,
                failover_from: None,
                share: paycenter_domain::vocabulary::ShareMode::None,
            }),
            at_seconds,
        );
        started.then_some(trade_no)
    }

    fn pay(&mut self, trade_no: &TradeNo, amount_minor: i64, at_seconds: i64) {
        self.decide(
            OrderCommand::RecordSuccess {
                trade_no: trade_no.clone(),
                channel_account_id: ChannelAccountId::from_entropy(1),
                channel_trade_no: ChannelTradeNo::parse(&format!("C{trade_no}")).unwrap(),
                amount: cny(amount_minor),
                source: OutcomeSource::Callback,
            },
            at_seconds,
        );
    }

    fn refund(&mut self, trade_no: &TradeNo, minor: i64, succeeds: bool, at_seconds: i64) {
        self.n_refunds += 1;
        let refund_id =
            RefundId::parse(&format!("rf_{}_{}", self.order_idx, self.n_refunds)).unwrap();
        let requested = self.decide(
            OrderCommand::RequestRefund {
                trade_no: trade_no.clone(),
                refund_id: refund_id.clone(),
                refund_no: RefundNo::parse(&format!("R{}", self.n_refunds)).unwrap(),
                amount: cny(minor),
                reason: String::new(),
            },
            at_seconds,
        );
        if !requested {
            return;
        }
        let settle = if succeeds {
            OrderCommand::RecordRefundSuccess {
                trade_no: trade_no.clone(),
                refund_id,
                channel_refund_no: None,
            }
        } else {
            OrderCommand::RecordRefundFailure {
                trade_no: trade_no.clone(),
                refund_id,
                reason: "declined".into(),
            }
        };
        self.decide(settle, at_seconds);
    }

    fn left_minor(&self, trade_no: &TradeNo) -> i64 {
        self.order.attempt(trade_no).map_or(0, |attempt| {
            attempt.paid().amount_minor() - attempt.refund_committed().amount_minor()
        })
    }
}

fn run_plan(order_idx: usize, plan: &Plan) -> Run {
    let mut run = Run {
        merchant_id: MerchantId::from_entropy(order_idx as u128 + 1),
        order: Order::default(),
        events: Vec::new(),
        n_attempts: 0,
        n_refunds: 0,
        order_idx,
    };
    let Some(first) = run.start(plan, 0) else {
        return run;
    };
    if plan.paid {
        run.pay(&first, plan.amount_minor, 1);
    }
    for (step_idx, step) in plan.steps.iter().enumerate() {
        let at = 2 + step_idx as i64;
        match step {
            Step::Refund { minor, succeeds } => {
                let left = run.left_minor(&first);
                if left > 0 {
                    run.refund(&first, (*minor % left).max(1), *succeeds, at);
                }
            }
            Step::RefundOne { succeeds } => run.refund(&first, 1, *succeeds, at),
            Step::RefundRest => {
                let left = run.left_minor(&first);
                if left > 0 {
                    run.refund(&first, left, true, at);
                }
            }
            Step::Duplicate => {
                // A second attempt supersedes the first and is paid; then the first is paid
                // too (late): the first is a duplicate, refunded automatically in full.
                if run.n_attempts < 3 {
                    if let Some(second) = run.start(plan, at) {
                        run.pay(&second, plan.amount_minor, at);
                        run.pay(&first, plan.amount_minor, at);
                        run.decide(
                            OrderCommand::RecordRefundSuccess {
                                trade_no: first.clone(),
                                refund_id: automatic_refund_id(&first),
                                channel_refund_no: None,
                            },
                            at,
                        );
                    }
                }
            }
            Step::Close => {
                run.decide(
                    OrderCommand::Close {
                        trade_no: first.clone(),
                        reason: CloseReason::ByApp,
                    },
                    at,
                );
            }
        }
    }
    run
}

/// The same event as a refund recorded before shares were.
fn without_shares(event: &Event) -> Event {
    match event {
        Event::RefundRequested(requested) => {
            let mut legacy = requested.clone();
            legacy.shares = None;
            Event::RefundRequested(legacy)
        }
        other => other.clone(),
    }
}

fn check_accounts(ledger: &Ledger, merchant_id: &MerchantId) -> Result<(), TestCaseError> {
    for (account, currency, balance) in ledger.merchant_balances(merchant_id) {
        prop_assert!(
            balance >= 0,
            "{account} {currency} went below zero: {balance}"
        );
    }
    prop_assert!(ledger.check().is_ok(), "{:?}", ledger.check());
    Ok(())
}

/// Each refund's shares sum to it, and no part has given back more than it held.
fn check_shares(order: &Order) -> Result<(), TestCaseError> {
    for attempt in &order.attempts {
        let whole = Parts::of_payment(
            attempt.started.amount,
            attempt.started.fee,
            &attempt.started.splits,
        );
        let mut committed = Parts::zero(attempt.started.splits.len());
        for refund in &attempt.refunds {
            prop_assert_eq!(refund.shares.total_minor(), refund.amount.amount_minor());
            if refund.status != RefundStatus::Failed {
                committed = committed.plus(&refund.shares);
            }
        }
        prop_assert!(
            committed.within(&whole),
            "refund shares {:?} exceed the payment's parts {:?}",
            committed,
            whole
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn money_is_never_broken(plans in proptest::collection::vec(plan(), 1..6)) {
        let mut ledger = Ledger::default();
        let mut all_events: Vec<Event> = Vec::new();
        let mut merchants = Vec::new();
        for (order_idx, plan) in plans.iter().enumerate() {
            let run = run_plan(order_idx, plan);
            for event in &run.events {
                // At decision: every entry is accepted and leaves every account sound.
                prop_assert_eq!(ledger.apply(event), Ok(()), "event {:?}", event);
                check_accounts(&ledger, &run.merchant_id)?;
            }
            check_shares(&run.order)?;
            // The aggregate replays to itself.
            prop_assert_eq!(&Order::from_events(&run.events), &run.order);
            all_events.extend(run.events);
            merchants.push(run.merchant_id);
        }
        // At replay: as recorded (through the stored-envelope path) and as a legacy log.
        let mut replayed = Ledger::default();
        let mut legacy = Ledger::default();
        for (event_idx, event) in all_events.iter().enumerate() {
            let position = event_idx as u64 + 1;
            prop_assert_eq!(replayed.apply_recorded(&recorded(event, position)), Ok(()));
            prop_assert_eq!(legacy.apply_recorded(&recorded(&without_shares(event), position)), Ok(()));
        }
        for merchant_id in &merchants {
            check_accounts(&replayed, merchant_id)?;
            prop_assert_eq!(replayed.merchant_balances(merchant_id), ledger.merchant_balances(merchant_id));
            prop_assert_eq!(legacy.merchant_balances(merchant_id), ledger.merchant_balances(merchant_id));
        }
    }
}

#[test]
fn two_one_unit_refunds_of_two_one_unit_splits() {
    // 0.02 split 0.01 / 0.01, no fee, refunded 0.01 twice: once drove the payable below zero.
    let plan = Plan {
        amount_minor: 2,
        fee_rate_bp: 0,
        split_weights: vec![1, 1],
        split_per_mille: 1_000,
        paid: true,
        steps: vec![
            Step::RefundOne { succeeds: true },
            Step::RefundOne { succeeds: true },
        ],
    };
    let run = run_plan(0, &plan);
    let mut ledger = Ledger::default();
    for event in &run.events {
        ledger.apply(event).unwrap();
    }
    for (account, _, balance) in ledger.merchant_balances(&run.merchant_id) {
        assert_eq!(balance, 0, "{account}");
    }
}
