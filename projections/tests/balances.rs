//! Balances under random payments, splits, fees and refunds (decided by the real order
//! aggregate): every entry balances, clearing equals what was paid less what was refunded, and
//! a payment refunded in full leaves its merchant's accounts where they were.

use chrono::{Duration, TimeZone, Utc};
use paycenter_domain::events::Event;
use paycenter_domain::ids::*;
use paycenter_domain::payment::*;
use paycenter_domain::{Currency, Money, Rate};
use paycenter_projections::balances::Ledger;
use proptest::prelude::*;
use support::recorded;

mod support;

#[derive(Debug, Clone)]
struct PaymentPlan {
    amount_minor: i64,
    fee_rate_millis: u32,
    split_minors: Vec<i64>,
    paid: bool,
    refunds: Vec<(i64, bool)>,
    /// Ends with a successful refund of whatever is left.
    refund_rest: bool,
}

fn plan() -> impl Strategy<Value = PaymentPlan> {
    (
        1..100_000_i64,
        0..50_u32,
        proptest::collection::vec(1..30_000_i64, 0..3),
        any::<bool>(),
        proptest::collection::vec((1..60_000_i64, any::<bool>()), 0..6),
        any::<bool>(),
    )
        .prop_map(
            |(amount_minor, fee_rate_millis, split_minors, paid, refunds, refund_rest)| {
                PaymentPlan {
                    amount_minor,
                    fee_rate_millis,
                    split_minors,
                    paid,
                    refunds,
                    refund_rest,
                }
            },
        )
}

/// Runs one order through the aggregate; answers its events (refused commands are skipped).
fn run_order(merchant_id: &MerchantId, order_idx: usize, plan: &PaymentPlan) -> Vec<Event> {
    let t0 = Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap();
    let trade_no = TradeNo::generate(t0, order_idx as u64);
    let cny = |minor| Money::from_minor(minor, Currency::CNY);
    let mut order = Order::default();
    let mut events = Vec::new();
    let mut run = |order: &mut Order, command: OrderCommand, step: i64| {
        if let Ok(decided) = order.decide(&command, t0 + Duration::seconds(step)) {
            decided.iter().for_each(|event| order.apply(event));
            events.extend(decided);
        }
    };
    let splits = plan
        .split_minors
        .iter()
        .enumerate()
        .map(|(idx, minor)| Split {
            receiver: format!("r{idx}"),
            amount: cny(*minor),
        })
        .collect();
    run(
        &mut order,
        OrderCommand::StartAttempt(StartAttempt {
            trade_no: trade_no.clone(),
            merchant_id: merchant_id.clone(),
            order_no: OrderNo::parse(&format!("O{order_idx}")).unwrap(),
            app_id: AppId::from_entropy(1),
            channel_account_id: ChannelAccountId::from_entropy(1),
            channel: Channel::Sandbox,
            invoke_method: InvokeMethod::Pc,
            amount: cny(plan.amount_minor),
            fee_rate: Rate::parse(&format!("0.{:03}", plan.fee_rate_millis)).unwrap(),
            splits,
            subject: "s".into(),
            expire_seconds: 600,
            min_attempt_interval_ms: 0,
            return_url: None,
            route: None,
            failover_from: None,
            share: paycenter_domain::vocabulary::ShareMode::None,
        }),
        0,
    );
    if !plan.paid {
        return events;
    }
    let paid = OrderCommand::RecordSuccess {
        channel_account_id: ChannelAccountId::from_entropy(1),
        trade_no: trade_no.clone(),
        channel_trade_no: ChannelTradeNo::parse("C1").unwrap(),
        amount: cny(plan.amount_minor),
        source: OutcomeSource::Callback,
    };
    run(&mut order, paid, 1);
    for (refund_idx, (amount_minor, succeeds)) in plan.refunds.iter().enumerate() {
        let refund_id = RefundId::parse(&format!("rf_{refund_idx}")).unwrap();
        let request = OrderCommand::RequestRefund {
            trade_no: trade_no.clone(),
            refund_id: refund_id.clone(),
            refund_no: RefundNo::parse(&format!("R{refund_idx}")).unwrap(),
            amount: cny(*amount_minor),
            reason: String::new(),
        };
        run(&mut order, request, 2);
        let settle = if *succeeds {
            OrderCommand::RecordRefundSuccess {
                trade_no: trade_no.clone(),
                refund_id,
                channel_refund_no: None,
            }
        } else {
            OrderCommand::RecordRefundFailure {
                trade_no: trade_no.clone(),
                refund_id,
                reason: "x".into(),
            }
        };
        run(&mut order, settle, 3);
    }
    if plan.refund_rest {
        let left = order
            .attempt(&trade_no)
            .map(|attempt| {
                attempt.paid().amount_minor() - attempt.refund_committed().amount_minor()
            })
            .unwrap_or(0);
        if left > 0 {
            let refund_id = RefundId::parse("rf_rest").unwrap();
            let request = OrderCommand::RequestRefund {
                trade_no: trade_no.clone(),
                refund_id: refund_id.clone(),
                refund_no: RefundNo::parse("REST").unwrap(),
                amount: cny(left),
                reason: String::new(),
            };
            run(&mut order, request, 4);
            run(
                &mut order,
                OrderCommand::RecordRefundSuccess {
                    trade_no: trade_no.clone(),
                    refund_id,
                    channel_refund_no: None,
                },
                5,
            );
        }
    }
    events
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, .. ProptestConfig::default() })]

    #[test]
    fn balances_stay_balanced(plans in proptest::collection::vec(plan(), 1..8)) {
        let mut ledger = Ledger::default();
        // The same events as stored envelopes, through the rebuild path that decodes only
        // what the ledger reads: both must agree.
        let mut rebuilt = Ledger::default();
        let mut position = 0;
        let mut n_full_refunds = 0;
        for (order_idx, plan) in plans.iter().enumerate() {
            // One merchant per order, so each payment's accounts can be checked on their own.
            let merchant_id = MerchantId::from_entropy(order_idx as u128);
            let events = run_order(&merchant_id, order_idx, plan);
            let mut paid_minor = 0;
            let mut refunded_minor = 0;
            let mut requested: std::collections::HashMap<RefundId, i64> = Default::default();
            for event in &events {
                ledger.apply(event).unwrap();
                position += 1;
                let recorded = recorded(event, position);
                rebuilt.apply_recorded(&recorded).unwrap();
                match event {
                    Event::PaymentSucceeded(succeeded) => paid_minor += succeeded.amount.amount_minor(),
                    Event::RefundRequested(request) => {
                        requested.insert(request.refund_id.clone(), request.amount.amount_minor());
                    }
                    Event::RefundSucceeded(succeeded) => refunded_minor += requested[&succeeded.refund_id],
                    _ => {}
                }
            }
            prop_assert!(ledger.check().is_ok(), "{:?}", ledger.check());
            let balances = ledger.merchant_balances(&merchant_id);
            prop_assert_eq!(&rebuilt.merchant_balances(&merchant_id), &balances, "both paths agree");
            let clearing: i64 = balances.iter().filter(|(name, _, _)| name.starts_with("clearing:")).map(|(_, _, minor)| minor).sum();
            prop_assert_eq!(clearing, paid_minor - refunded_minor, "clearing = paid − refunded");
            if paid_minor > 0 && refunded_minor == paid_minor {
                n_full_refunds += 1;
                for (account, _, balance) in &balances {
                    prop_assert_eq!(*balance, 0, "a full refund returns {} to zero", account);
                }
            }
        }
        let (debits, credits) = ledger.totals().get(&Currency::CNY).copied().unwrap_or((0, 0));
        prop_assert_eq!(debits, credits);
        let _ = n_full_refunds;
    }
}

#[test]
fn a_full_refund_returns_every_account_to_zero() {
    let merchant_id = MerchantId::from_entropy(3);
    // Fee 5 on 10.00: ten refunds of 1.00 would each round their 0.5 share of it to 0 if
    // each were rounded on its own; divided over what is still held, they give back all 5.
    let mut refunds: Vec<(i64, bool)> = vec![(100, true); 10];
    refunds.insert(3, (250, false));
    let plan = PaymentPlan {
        amount_minor: 1_000,
        fee_rate_millis: 5,
        split_minors: vec![333, 111],
        paid: true,
        refunds,
        refund_rest: false,
    };
    let mut ledger = Ledger::default();
    run_order(&merchant_id, 0, &plan)
        .iter()
        .for_each(|event| ledger.apply(event).unwrap());
    for (account, _, balance) in ledger.merchant_balances(&merchant_id) {
        assert_eq!(balance, 0, "{account}");
    }
}
