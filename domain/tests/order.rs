//! Given events, when a command, then events or an error: the order aggregate's rules.

use chrono::{DateTime, Duration, TimeZone, Utc};
use paycenter_domain::error::DomainError;
use paycenter_domain::events::*;
use paycenter_domain::ids::*;
use paycenter_domain::payment::sharing::{ShareOutcome, MAX_SHARE_TRIES};
use paycenter_domain::payment::*;
use paycenter_domain::vocabulary::{ShareMode, ShareStatus};
use paycenter_domain::{Currency, Money, Rate};

fn t0() -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2026, 11, 1, 12, 0, 0).unwrap()
}

fn cny(minor: i64) -> Money {
    Money::from_minor(minor, Currency::CNY)
}

fn trade(n: u64) -> TradeNo {
    TradeNo::generate(t0(), n)
}

fn start(n: u64, amount_minor: i64) -> StartAttempt {
    StartAttempt {
        trade_no: trade(n),
        merchant_id: MerchantId::from_entropy(1),
        order_no: OrderNo::parse("ORDER-1").unwrap(),
        app_id: AppId::from_entropy(2),
        channel_account_id: ChannelAccountId::from_entropy(3),
        channel: Channel::Sandbox,
        invoke_method: InvokeMethod::Pc,
        amount: cny(amount_minor),
        fee_rate: Rate::parse("0.006").unwrap(),
        splits: Vec::new(),
        subject: "rent".to_owned(),
        expire_seconds: 900,
        min_attempt_interval_ms: DEFAULT_MIN_ATTEMPT_INTERVAL_MS,
        return_url: None,
        route: None,
        failover_from: None,
        share: ShareMode::None,
    }
}

/// A tiny script: each step is a command at a time offset; the order folds what each decided.
struct Scenario {
    order: Order,
    history: Vec<Event>,
}

impl Scenario {
    fn new() -> Scenario {
        Scenario {
            order: Order::default(),
            history: Vec::new(),
        }
    }

    /// Given: the command must succeed; its events join the history.
    fn given(mut self, command: OrderCommand, at_seconds: i64) -> Scenario {
        let events = self
            .when(command, at_seconds)
            .unwrap_or_else(|error| panic!("given step refused: {error}"));
        for event in &events {
            self.order.apply(event);
        }
        self.history.extend(events);
        self
    }

    /// When: what the command decides now.
    fn when(&self, command: OrderCommand, at_seconds: i64) -> Result<Vec<Event>, DomainError> {
        self.order
            .decide(&command, t0() + Duration::seconds(at_seconds))
    }
}

fn types(events: &[Event]) -> Vec<&'static str> {
    events.iter().map(Event::event_type).collect()
}

fn success(n: u64, amount_minor: i64) -> OrderCommand {
    OrderCommand::RecordSuccess {
        channel_account_id: ChannelAccountId::from_entropy(3),
        trade_no: trade(n),
        channel_trade_no: ChannelTradeNo::parse(&format!("CH{n}")).unwrap(),
        amount: cny(amount_minor),
        source: OutcomeSource::Callback,
    }
}

fn refund(n: u64, refund_no: &str, amount_minor: i64) -> OrderCommand {
    OrderCommand::RequestRefund {
        trade_no: trade(n),
        refund_id: RefundId::parse(&format!("rf_{refund_no}")).unwrap(),
        refund_no: RefundNo::parse(refund_no).unwrap(),
        amount: cny(amount_minor),
        reason: String::new(),
    }
}

#[test]
fn a_first_attempt_starts_with_its_fee() {
    let events = Scenario::new()
        .when(OrderCommand::StartAttempt(start(1, 10_000)), 0)
        .unwrap();
    assert_eq!(types(&events), ["payment.attempt_started"]);
    let Event::PaymentAttemptStarted(started) = &events[0] else {
        unreachable!()
    };
    assert_eq!(started.fee, cny(60));
    assert_eq!(started.expires_at, t0() + Duration::seconds(900));
}

#[test]
fn attempts_are_spaced_by_the_minimum_interval() {
    let scenario = Scenario::new().given(OrderCommand::StartAttempt(start(1, 10_000)), 0);
    match scenario.when(OrderCommand::StartAttempt(start(2, 10_000)), 10) {
        Err(DomainError::AttemptTooSoon {
            retry_after_seconds,
            ..
        }) => assert_eq!(retry_after_seconds, 5),
        other => panic!("{other:?}"),
    }
    // At exactly 15 s a new attempt is allowed and supersedes the pending one.
    let events = scenario
        .when(OrderCommand::StartAttempt(start(2, 10_000)), 15)
        .unwrap();
    assert_eq!(
        types(&events),
        ["payment.attempt_closed", "payment.attempt_started"]
    );
    let Event::PaymentAttemptClosed(closed) = &events[0] else {
        unreachable!()
    };
    assert_eq!(
        (closed.trade_no.clone(), closed.reason),
        (trade(1), CloseReason::Superseded)
    );
}

#[test]
fn the_minimum_interval_is_configurable() {
    let scenario = Scenario::new().given(OrderCommand::StartAttempt(start(1, 100)), 0);
    let mut second = start(2, 100);
    second.min_attempt_interval_ms = 0;
    assert!(scenario.when(OrderCommand::StartAttempt(second), 0).is_ok());
}

#[test]
fn retry_after_rounds_up() {
    let scenario = Scenario::new().given(OrderCommand::StartAttempt(start(1, 100)), 0);
    let command = OrderCommand::StartAttempt(start(2, 100));
    match scenario
        .order
        .decide(&command, t0() + Duration::milliseconds(14_001))
    {
        Err(DomainError::AttemptTooSoon {
            retry_after_seconds: 1,
            ..
        }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn an_order_is_paid_at_most_once() {
    let scenario = Scenario::new()
        .given(OrderCommand::StartAttempt(start(1, 10_000)), 0)
        .given(success(1, 10_000), 5);
    match scenario.when(OrderCommand::StartAttempt(start(2, 10_000)), 3_600) {
        Err(DomainError::OrderAlreadyPaid { trade_no, .. }) => assert_eq!(trade_no, trade(1)),
        other => panic!("{other:?}"),
    }
    // Even within the spacing interval, "already paid" wins: it is the more useful answer.
    assert!(matches!(
        scenario.when(OrderCommand::StartAttempt(start(2, 10_000)), 6),
        Err(DomainError::OrderAlreadyPaid { .. })
    ));
}

#[test]
fn an_attempt_succeeds_at_most_once_and_repeated_callbacks_change_nothing() {
    let scenario = Scenario::new()
        .given(OrderCommand::StartAttempt(start(1, 10_000)), 0)
        .given(success(1, 10_000), 5);
    assert_eq!(
        scenario.when(success(1, 10_000), 6).unwrap(),
        Vec::<Event>::new()
    );
    let other_channel_no = OrderCommand::RecordSuccess {
        channel_account_id: ChannelAccountId::from_entropy(3),
        trade_no: trade(1),
        channel_trade_no: ChannelTradeNo::parse("OTHER").unwrap(),
        amount: cny(10_000),
        source: OutcomeSource::Callback,
    };
    assert!(matches!(
        scenario.when(other_channel_no, 7),
        Err(DomainError::ChannelTradeNoConflict { .. })
    ));
    // A failure after success never overrides it.
    let failure = OrderCommand::RecordFailure {
        trade_no: trade(1),
        reason: "x".into(),
        source: OutcomeSource::Callback,
    };
    assert_eq!(scenario.when(failure, 8).unwrap(), Vec::<Event>::new());
}

#[test]
fn a_superseded_attempt_paid_late_is_refunded_in_full() {
    let scenario = Scenario::new()
        .given(OrderCommand::StartAttempt(start(1, 10_000)), 0)
        .given(OrderCommand::StartAttempt(start(2, 10_000)), 20)
        .given(success(2, 10_000), 30);
    // The user paid the abandoned attempt anyway: its callback arrives after the close.
    let events = scenario.when(success(1, 10_000), 40).unwrap();
    assert_eq!(
        types(&events),
        [
            "payment.succeeded",
            "payment.duplicate_detected",
            "refund.requested"
        ]
    );
    let Event::DuplicatePaymentDetected(detected) = &events[1] else {
        unreachable!()
    };
    assert_eq!(detected.kept_trade_no, Some(trade(2)));
    assert_eq!(detected.cause, DuplicateCause::PaidAfterClose);
    let Event::RefundRequested(requested) = &events[2] else {
        unreachable!()
    };
    assert_eq!(
        (requested.amount, requested.kind),
        (cny(10_000), RefundKind::Automatic)
    );
    // The retried callback decides the same refund id, so the retry appends nothing new.
    assert_eq!(
        scenario.when(success(1, 10_000), 41).unwrap(),
        events
            .iter()
            .map(|event| match event {
                Event::PaymentSucceeded(e) => Event::PaymentSucceeded(PaymentSucceeded {
                    paid_at: t0() + Duration::seconds(41),
                    ..e.clone()
                }),
                Event::DuplicatePaymentDetected(e) =>
                    Event::DuplicatePaymentDetected(DuplicatePaymentDetected {
                        detected_at: t0() + Duration::seconds(41),
                        ..e.clone()
                    }),
                Event::RefundRequested(e) => Event::RefundRequested(RefundRequested {
                    requested_at: t0() + Duration::seconds(41),
                    ..e.clone()
                }),
                other => other.clone(),
            })
            .collect::<Vec<_>>()
    );
}

#[test]
fn a_failed_attempt_paid_later_counts_as_paid() {
    let scenario = Scenario::new()
        .given(OrderCommand::StartAttempt(start(1, 500)), 0)
        .given(
            OrderCommand::RecordFailure {
                trade_no: trade(1),
                reason: "timeout".into(),
                source: OutcomeSource::Callback,
            },
            1,
        );
    assert_eq!(
        types(&scenario.when(success(1, 500), 2).unwrap()),
        ["payment.succeeded"]
    );
    let scenario = scenario.given(success(1, 500), 2);
    assert_eq!(scenario.order.kept_trade_no, Some(trade(1)));
}

#[test]
fn a_success_after_close_is_recorded_and_refunded() {
    let scenario = Scenario::new()
        .given(OrderCommand::StartAttempt(start(1, 800)), 0)
        .given(
            OrderCommand::Close {
                trade_no: trade(1),
                reason: CloseReason::ByApp,
            },
            5,
        );
    let events = scenario.when(success(1, 800), 6).unwrap();
    assert_eq!(
        types(&events),
        [
            "payment.succeeded",
            "payment.duplicate_detected",
            "refund.requested"
        ]
    );
    let scenario = scenario.given(success(1, 800), 6);
    assert_eq!(
        scenario.order.kept_trade_no, None,
        "a closed attempt never holds the order's payment"
    );
    let attempt = scenario.order.attempt(&trade(1)).unwrap();
    assert_eq!(attempt.refund_committed(), cny(800));
}

#[test]
fn closing_a_paid_attempt_is_refused_and_closing_twice_is_a_no_op() {
    let scenario = Scenario::new().given(OrderCommand::StartAttempt(start(1, 800)), 0);
    let close = OrderCommand::Close {
        trade_no: trade(1),
        reason: CloseReason::ByApp,
    };
    let closed = scenario.given(close.clone(), 1);
    assert_eq!(closed.when(close.clone(), 2).unwrap(), Vec::<Event>::new());
    let paid = Scenario::new()
        .given(OrderCommand::StartAttempt(start(1, 800)), 0)
        .given(success(1, 800), 1);
    assert!(matches!(
        paid.when(close, 2),
        Err(DomainError::PaymentAlreadySucceeded { .. })
    ));
}

/// A verified report of `amount` from `account` for attempt 1.
fn report(account: u128, amount: Money) -> OrderCommand {
    OrderCommand::RecordSuccess {
        channel_account_id: ChannelAccountId::from_entropy(account),
        trade_no: trade(1),
        channel_trade_no: ChannelTradeNo::parse("CH-X").unwrap(),
        amount,
        source: OutcomeSource::Callback,
    }
}

#[test]
fn a_contradicting_report_is_an_anomaly_refunded_and_not_a_payment() {
    let cases = [
        (report(3, cny(799)), AnomalyKind::AmountMismatch),
        (
            report(3, Money::from_minor(800, Currency::USD)),
            AnomalyKind::CurrencyMismatch,
        ),
        (report(9, cny(800)), AnomalyKind::AccountMismatch),
    ];
    for (command, kind) in cases {
        let scenario = Scenario::new().given(OrderCommand::StartAttempt(start(1, 800)), 0);
        let events = scenario.when(command.clone(), 1).unwrap();
        assert_eq!(types(&events), ["payment.anomaly_detected"], "{kind:?}");
        let Event::PaymentAnomalyDetected(detected) = &events[0] else {
            unreachable!()
        };
        assert_eq!(detected.kind, kind);
        let after = scenario.given(command.clone(), 1);
        let attempt = after.order.attempt(&trade(1)).unwrap();
        assert_eq!(attempt.status, AttemptStatus::Pending, "not paid by it");
        assert_eq!(attempt.anomalies.len(), 1);
        // The channel repeating its report decides nothing new.
        assert_eq!(after.when(command, 2).unwrap(), Vec::<Event>::new());
        // The reported money's refund settles like any refund.
        let refund_id = detected.refund_id.clone();
        let settled = after.given(
            OrderCommand::RecordRefundSuccess {
                trade_no: trade(1),
                refund_id,
                channel_refund_no: None,
            },
            3,
        );
        let anomaly = &settled.order.attempt(&trade(1)).unwrap().anomalies[0];
        assert_eq!(anomaly.refund_status, RefundStatus::Succeeded);
        // The genuine report still pays the attempt.
        assert_eq!(
            types(&settled.when(success(1, 800), 4).unwrap()),
            ["payment.succeeded"]
        );
    }
}

#[test]
fn a_new_attempt_keeps_the_order_amount() {
    let scenario = Scenario::new().given(OrderCommand::StartAttempt(start(1, 800)), 0);
    assert!(matches!(
        scenario.when(OrderCommand::StartAttempt(start(2, 900)), 60),
        Err(DomainError::OrderAmountMismatch { .. })
    ));
}

#[test]
fn refunds_never_exceed_what_was_paid() {
    let scenario = Scenario::new()
        .given(OrderCommand::StartAttempt(start(1, 1_000)), 0)
        .given(success(1, 1_000), 1)
        .given(refund(1, "R1", 600), 2);
    match scenario.when(refund(1, "R2", 401), 3) {
        Err(DomainError::RefundExceedsAvailable { available, .. }) => {
            assert_eq!(available, cny(400))
        }
        other => panic!("{other:?}"),
    }
    let scenario = scenario.given(refund(1, "R2", 400), 3);
    assert!(matches!(
        scenario.when(refund(1, "R3", 1), 4),
        Err(DomainError::RefundExceedsAvailable { .. })
    ));
}

#[test]
fn a_failed_refund_frees_its_amount() {
    let scenario = Scenario::new()
        .given(OrderCommand::StartAttempt(start(1, 1_000)), 0)
        .given(success(1, 1_000), 1)
        .given(refund(1, "R1", 1_000), 2)
        .given(
            OrderCommand::RecordRefundFailure {
                trade_no: trade(1),
                refund_id: RefundId::parse("rf_R1").unwrap(),
                reason: "x".into(),
            },
            3,
        );
    assert_eq!(
        types(&scenario.when(refund(1, "R2", 1_000), 4).unwrap()),
        ["refund.requested"]
    );
}

#[test]
fn refund_numbers_replay_or_conflict() {
    let scenario = Scenario::new()
        .given(OrderCommand::StartAttempt(start(1, 1_000)), 0)
        .given(success(1, 1_000), 1)
        .given(refund(1, "R1", 300), 2);
    assert_eq!(
        scenario.when(refund(1, "R1", 300), 3).unwrap(),
        Vec::<Event>::new()
    );
    assert!(matches!(
        scenario.when(refund(1, "R1", 301), 3),
        Err(DomainError::RefundNoReused { .. })
    ));
}

#[test]
fn only_paid_attempts_are_refundable() {
    let scenario = Scenario::new().given(OrderCommand::StartAttempt(start(1, 1_000)), 0);
    assert!(matches!(
        scenario.when(refund(1, "R1", 1), 1),
        Err(DomainError::PaymentNotRefundable { .. })
    ));
    assert!(matches!(
        scenario.when(refund(7, "R1", 1), 1),
        Err(DomainError::PaymentNotFound { .. })
    ));
}

#[test]
fn refunds_settle_once() {
    let refund_id = RefundId::parse("rf_R1").unwrap();
    let settle = OrderCommand::RecordRefundSuccess {
        trade_no: trade(1),
        refund_id: refund_id.clone(),
        channel_refund_no: None,
    };
    let scenario = Scenario::new()
        .given(OrderCommand::StartAttempt(start(1, 1_000)), 0)
        .given(success(1, 1_000), 1)
        .given(refund(1, "R1", 300), 2)
        .given(settle.clone(), 3);
    assert_eq!(scenario.when(settle, 4).unwrap(), Vec::<Event>::new());
    let fail = OrderCommand::RecordRefundFailure {
        trade_no: trade(1),
        refund_id,
        reason: "x".into(),
    };
    assert!(matches!(
        scenario.when(fail, 4),
        Err(DomainError::RefundAlreadySettled { .. })
    ));
}

#[test]
fn splits_and_fee_never_exceed_the_payment() {
    let split = |receiver: &str, minor| Split {
        receiver: receiver.to_owned(),
        amount: cny(minor),
    };
    let mut command = start(1, 10_000);
    command.splits = vec![split("platform", 4_000), split("landlord", 5_940)];
    assert!(
        Scenario::new()
            .when(OrderCommand::StartAttempt(command.clone()), 0)
            .is_ok(),
        "60 fee + 9940 splits = 10000"
    );
    command.splits[1].amount = cny(5_941);
    assert!(matches!(
        Scenario::new().when(OrderCommand::StartAttempt(command.clone()), 0),
        Err(DomainError::SplitsExceedAmount { .. })
    ));
    command.splits[1].amount = cny(0);
    assert!(matches!(
        Scenario::new().when(OrderCommand::StartAttempt(command), 0),
        Err(DomainError::InvalidSplits { .. })
    ));
}

#[test]
fn events_round_trip_through_their_envelope() {
    let events = Scenario::new()
        .when(OrderCommand::StartAttempt(start(1, 10_000)), 0)
        .unwrap();
    let new_events = Event::to_new_events(&events, "cmd-1", None);
    let recorded = paycenter_domain::envelope::RecordedEvent {
        global_position: 1,
        stream_id: "s".into(),
        stream_revision: 0,
        event_id: new_events[0].event_id,
        event_type: new_events[0].event_type.clone(),
        schema_version: new_events[0].schema_version,
        recorded_at: t0(),
        correlation_id: None,
        causation_id: None,
        payload: new_events[0].payload.clone(),
        prev_hash: [0; 32],
        hash: [0; 32],
    };
    assert_eq!(Event::decode(&recorded).unwrap(), events[0]);
    assert!(new_events[0].payload.contains("\"amount_minor\":10000"));
}

fn initiation(n: u64, channel_reference: Option<&str>) -> OrderCommand {
    OrderCommand::RecordInitiation {
        trade_no: trade(n),
        channel_reference: channel_reference.map(str::to_owned),
        checkout_qr_code: None,
    }
}

#[test]
fn an_attempt_is_initiated_once_and_keeps_its_channel_reference() {
    let scenario = Scenario::new()
        .given(OrderCommand::StartAttempt(start(1, 10_000)), 0)
        .given(initiation(1, Some("pi_123")), 1);
    assert_eq!(
        types(&scenario.history),
        ["payment.attempt_started", "payment.attempt_initiated"]
    );
    assert_eq!(
        scenario
            .order
            .attempt(&trade(1))
            .unwrap()
            .channel_reference
            .as_deref(),
        Some("pi_123")
    );
    // A repeat records nothing new, whatever it says.
    assert_eq!(scenario.when(initiation(1, Some("pi_999")), 2).unwrap(), []);
    // Nothing to record: nothing recorded.
    let fresh = Scenario::new().given(OrderCommand::StartAttempt(start(1, 10_000)), 0);
    assert_eq!(fresh.when(initiation(1, None), 1).unwrap(), []);
    // An attempt this order does not have is refused.
    assert!(fresh.when(initiation(7, Some("pi_1")), 1).is_err());
}

#[test]
fn closing_at_the_channel_is_retried_then_settles_once() {
    use paycenter_domain::events::ChannelCloseOutcome;
    let mut history: Vec<Event> = Vec::new();
    let mut record = |outcome| {
        let events = decide_channel_close(&history, &trade(1), outcome, None, t0());
        history.extend(events.clone());
        events
    };
    for attempt_no in 1..MAX_CHANNEL_CLOSE_ATTEMPTS {
        let events = record(ChannelCloseOutcome::Failed);
        let Event::ChannelCloseAttempted(attempted) = &events[0] else {
            unreachable!()
        };
        assert_eq!(
            (attempted.attempt_no, attempted.outcome),
            (attempt_no, ChannelCloseOutcome::Failed)
        );
    }
    // The last allowed try gives up; nothing is recorded after it.
    let events = record(ChannelCloseOutcome::Failed);
    let Event::ChannelCloseAttempted(last) = &events[0] else {
        unreachable!()
    };
    assert_eq!(last.outcome, ChannelCloseOutcome::GaveUp);
    assert!(record(ChannelCloseOutcome::Closed).is_empty());
    // A close confirmed at once settles on the first try.
    let confirmed = decide_channel_close(&[], &trade(2), ChannelCloseOutcome::Closed, None, t0());
    assert_eq!(types(&confirmed), ["payment.channel_close_attempted"]);
    assert!(decide_channel_close(
        &confirmed,
        &trade(2),
        ChannelCloseOutcome::Failed,
        None,
        t0()
    )
    .is_empty());
}

fn shared_start(n: u64, share: ShareMode) -> StartAttempt {
    StartAttempt {
        fee_rate: Rate::ZERO,
        splits: vec![
            Split {
                receiver: "store".to_owned(),
                amount: cny(3_000),
            },
            Split {
                receiver: "agent".to_owned(),
                amount: cny(1_000),
            },
        ],
        share,
        ..start(n, 10_000)
    }
}

fn share_outcome(n: u64, share_id: &str, outcome: ShareOutcome) -> OrderCommand {
    OrderCommand::RecordShareOutcome {
        trade_no: trade(n),
        share_id: share_id.to_owned(),
        outcome,
    }
}

#[test]
fn an_auto_share_is_asked_for_as_the_payment_succeeds_and_settles_once() {
    let scenario = Scenario::new().given(
        OrderCommand::StartAttempt(shared_start(1, ShareMode::Auto)),
        0,
    );
    let events = scenario.when(success(1, 10_000), 1).unwrap();
    assert_eq!(
        types(&events),
        ["payment.succeeded", "payment.share_requested"]
    );
    let Event::PaymentShareRequested(requested) = &events[1] else {
        unreachable!()
    };
    assert_eq!(requested.lines.len(), 2);
    let share_id = requested.share_id.clone();
    let scenario = scenario.given(success(1, 10_000), 1);
    // Asking again while it is pending records nothing.
    assert!(scenario
        .when(OrderCommand::RequestShare { trade_no: trade(1) }, 2)
        .unwrap()
        .is_empty());
    let scenario = scenario.given(
        share_outcome(
            1,
            &share_id,
            ShareOutcome::Shared {
                channel_share_no: Some("30000".into()),
            },
        ),
        3,
    );
    let share = scenario.order.attempts[0].share.as_ref().unwrap();
    assert_eq!(share.status, ShareStatus::Shared);
    // A repeated report records nothing.
    assert!(scenario
        .when(
            share_outcome(
                1,
                &share_id,
                ShareOutcome::Shared {
                    channel_share_no: None
                }
            ),
            4
        )
        .unwrap()
        .is_empty());
}

#[test]
fn a_manual_share_pays_what_the_splits_still_hold_and_failures_retry_then_stop() {
    let scenario = Scenario::new()
        .given(
            OrderCommand::StartAttempt(shared_start(1, ShareMode::Manual)),
            0,
        )
        .given(success(1, 10_000), 1)
        // Half refunded before sharing: each split gives back half.
        .given(refund(1, "R1", 5_000), 2);
    let events = scenario
        .when(OrderCommand::RequestShare { trade_no: trade(1) }, 3)
        .unwrap();
    let Event::PaymentShareRequested(requested) = &events[0] else {
        unreachable!()
    };
    assert_eq!(
        requested
            .lines
            .iter()
            .map(|line| line.amount.amount_minor())
            .collect::<Vec<_>>(),
        [1_500, 500]
    );
    let share_id = requested.share_id.clone();
    let mut scenario = scenario.given(OrderCommand::RequestShare { trade_no: trade(1) }, 3);
    for attempt in 1..=MAX_SHARE_TRIES {
        let events = scenario
            .when(
                share_outcome(
                    1,
                    &share_id,
                    ShareOutcome::Failed {
                        reason: "busy".into(),
                        definite: false,
                    },
                ),
                10,
            )
            .unwrap();
        let Event::PaymentShareFailed(failed) = &events[0] else {
            unreachable!()
        };
        assert_eq!(failed.will_retry, attempt < MAX_SHARE_TRIES);
        scenario = scenario.given(
            share_outcome(
                1,
                &share_id,
                ShareOutcome::Failed {
                    reason: "busy".into(),
                    definite: false,
                },
            ),
            10,
        );
    }
    let share = scenario.order.attempts[0].share.as_ref().unwrap();
    assert_eq!(share.status, ShareStatus::Failed);
    // After failing for good it may be asked for again, under a new share id.
    let events = scenario
        .when(OrderCommand::RequestShare { trade_no: trade(1) }, 20)
        .unwrap();
    let Event::PaymentShareRequested(again) = &events[0] else {
        unreachable!()
    };
    assert_ne!(again.share_id, share_id);
}

#[test]
fn a_refund_after_sharing_takes_each_receivers_share_back_first() {
    let scenario = Scenario::new()
        .given(
            OrderCommand::StartAttempt(shared_start(1, ShareMode::Auto)),
            0,
        )
        .given(success(1, 10_000), 1);
    let share_id = scenario.order.attempts[0]
        .share
        .as_ref()
        .unwrap()
        .share_id
        .clone();
    let scenario = scenario
        .given(
            share_outcome(
                1,
                &share_id,
                ShareOutcome::Shared {
                    channel_share_no: None,
                },
            ),
            2,
        )
        .given(refund(1, "R1", 2_000), 3);
    let refund_id = RefundId::parse("rf_R1").unwrap();
    let events = scenario
        .when(
            OrderCommand::RecordShareReturn {
                trade_no: trade(1),
                refund_id: refund_id.clone(),
            },
            4,
        )
        .unwrap();
    let Event::PaymentShareReturned(returned) = &events[0] else {
        unreachable!()
    };
    // 20 % of the payment: 20 % of each split.
    assert_eq!(
        returned
            .lines
            .iter()
            .map(|line| (line.receiver.as_str(), line.amount.amount_minor()))
            .collect::<Vec<_>>(),
        [("store", 600), ("agent", 200)]
    );
    let scenario = scenario.given(
        OrderCommand::RecordShareReturn {
            trade_no: trade(1),
            refund_id: refund_id.clone(),
        },
        4,
    );
    // Once per refund.
    assert!(scenario
        .when(
            OrderCommand::RecordShareReturn {
                trade_no: trade(1),
                refund_id: refund_id.clone(),
            },
            5
        )
        .unwrap()
        .is_empty());
    let refund_success = |refund_id: &RefundId| OrderCommand::RecordRefundSuccess {
        trade_no: trade(1),
        refund_id: refund_id.clone(),
        channel_refund_no: None,
    };
    assert_eq!(
        types(&scenario.when(refund_success(&refund_id), 6).unwrap()),
        ["refund.succeeded"]
    );
    // A channel that takes shares back within the refund: the return is recorded with the
    // refund's success.
    let scenario = scenario
        .given(refund_success(&refund_id), 6)
        .given(refund(1, "R2", 1_000), 7);
    let second = RefundId::parse("rf_R2").unwrap();
    assert_eq!(
        types(&scenario.when(refund_success(&second), 8).unwrap()),
        ["payment.share_returned", "refund.succeeded"]
    );
}

#[test]
fn a_payment_made_without_sharing_cannot_be_shared() {
    let scenario = Scenario::new()
        .given(
            OrderCommand::StartAttempt(shared_start(1, ShareMode::None)),
            0,
        )
        .given(success(1, 10_000), 1);
    assert!(matches!(
        scenario.when(OrderCommand::RequestShare { trade_no: trade(1) }, 2),
        Err(DomainError::NotShareable { .. })
    ));
}
