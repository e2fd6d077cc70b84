//! The order aggregate: every payment attempt for one merchant's `order_no`, their outcomes and
//! their refunds, in one stream. Keeping all attempts of an order together is what lets the
//! aggregate promise that an order is paid at most once.
//!
//! The state machine of an attempt (also drawn in `docs/architecture.md`):
//!
//! ```text
//!            start            success callback
//!   (none) ───────► pending ─────────────────────► succeeded ──► refunds (pending → succeeded | failed)
//!                    │  │ failure callback              ▲
//!                    │  └──────────────► failed ───────┘ (a late success still counts: money moved)
//!                    │ close / superseded                │
//!                    └──────────────► closed ────────────┘ (late success: recorded, then refunded in full)
//! ```

use chrono::{DateTime, Duration, Utc};

use crate::error::DomainError;
use crate::events::*;
use crate::ids::{
    AppId, ChannelAccountId, ChannelTradeNo, MerchantId, OrderNo, RefundId, RefundNo, TradeNo,
};
use crate::money::{Money, Rate};
pub use crate::shares::Split;
use crate::shares::{self, Parts};
pub use crate::vocabulary::{
    AnomalyKind, AttemptStatus, Channel, CloseReason, DuplicateCause, InvokeMethod, OutcomeSource,
    RefundKind, RefundStatus,
};

pub mod sharing;

/// The most attempts one order may have; past it the app must use a new order number.
pub const MAX_ATTEMPTS_PER_ORDER: usize = 32;
/// The most refunds one payment may have.
pub const MAX_REFUNDS_PER_PAYMENT: usize = 100;
/// The most split receivers one payment may have.
pub const MAX_SPLITS_PER_PAYMENT: usize = 16;
/// Tries to close an abandoned attempt at its channel before giving up.
pub const MAX_CHANNEL_CLOSE_ATTEMPTS: u32 = 12;

/// Decides the record of one try to close `trade_no` at its channel, given the tries so far
/// (from the attempt's order stream): `None` once the close is settled (closed, paid, or given
/// up), so a repeated try records nothing.
pub fn decide_channel_close(
    history: &[Event],
    trade_no: &TradeNo,
    outcome: ChannelCloseOutcome,
    error: Option<String>,
    now: DateTime<Utc>,
) -> Vec<Event> {
    let tries: Vec<&ChannelCloseAttempted> = history
        .iter()
        .filter_map(|event| match event {
            Event::ChannelCloseAttempted(attempted) if &attempted.trade_no == trade_no => {
                Some(attempted)
            }
            _ => None,
        })
        .collect();
    if tries
        .last()
        .is_some_and(|last| last.outcome != ChannelCloseOutcome::Failed)
    {
        return Vec::new();
    }
    let attempt_no = tries.len() as u32 + 1;
    let outcome = match outcome {
        ChannelCloseOutcome::Failed if attempt_no >= MAX_CHANNEL_CLOSE_ATTEMPTS => {
            ChannelCloseOutcome::GaveUp
        }
        other => other,
    };
    vec![Event::ChannelCloseAttempted(ChannelCloseAttempted {
        trade_no: trade_no.clone(),
        attempt_no,
        outcome,
        error,
        attempted_at: now,
    })]
}

/// The most contradicting reports one attempt records; past them a report is refused (and
/// the channel keeps retrying, which the sweeper and monitoring see).
pub const MAX_ANOMALIES_PER_ATTEMPT: usize = 16;
/// Default minimum interval between two attempts of one order.
pub const DEFAULT_MIN_ATTEMPT_INTERVAL_MS: i64 = 15_000;

/// A refund as the aggregate knows it.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refund {
    pub refund_id: RefundId,
    pub refund_no: RefundNo,
    pub amount: Money,
    pub kind: RefundKind,
    pub status: RefundStatus,
    /// What each part of the payment gives back, decided when the refund was requested.
    pub shares: Parts,
}

/// A contradicting report as the aggregate knows it: the money the channel says it took is
/// refunded under `detected.refund_id`.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Anomaly {
    pub detected: PaymentAnomalyDetected,
    pub refund_status: RefundStatus,
}

/// One payment attempt as the aggregate knows it.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Attempt {
    pub started: PaymentAttemptStarted,
    pub status: AttemptStatus,
    pub channel_trade_no: Option<ChannelTradeNo>,
    /// The channel's handle from [`PaymentAttemptInitiated`], when it gave one.
    pub channel_reference: Option<String>,
    /// Set once a [`PaymentAttemptInitiated`] was recorded.
    pub was_initiated: bool,
    /// Set when the attempt was closed at some point (a later success is then a duplicate).
    pub was_closed: bool,
    pub refunds: Vec<Refund>,
    /// Verified reports that contradicted the attempt, oldest first.
    pub anomalies: Vec<Anomaly>,
    /// Its splits paid at the channel, once asked for.
    pub share: Option<sharing::ShareState>,
}

impl Attempt {
    /// The amount paid, or zero while not paid.
    pub fn paid(&self) -> Money {
        match self.status {
            AttemptStatus::Succeeded => self.started.amount,
            _ => Money::zero(self.started.amount.currency()),
        }
    }

    /// Σ of refunds that are pending or succeeded: what is no longer available to refund.
    pub fn refund_committed(&self) -> Money {
        let currency = self.started.amount.currency();
        self.refunds
            .iter()
            .filter(|refund| refund.status != RefundStatus::Failed)
            .fold(Money::zero(currency), |sum, refund| {
                sum.checked_add(refund.amount)
                    .expect("refunds ≤ amount ≤ max")
            })
    }

    /// What each part of the payment holds when paid (fee, splits, payable).
    pub fn parts(&self) -> Parts {
        Parts::of_payment(self.started.amount, self.started.fee, &self.started.splits)
    }

    /// What refunds that are pending or succeeded take from each part.
    pub fn parts_given(&self) -> Parts {
        self.refunds
            .iter()
            .filter(|refund| refund.status != RefundStatus::Failed)
            .fold(Parts::zero(self.started.splits.len()), |given, refund| {
                given.plus(&refund.shares)
            })
    }

    /// What each part of the payment still holds: its share of the amount minus the shares
    /// of refunds that are pending or succeeded. All zero while not paid.
    pub fn holdings(&self) -> Parts {
        if self.status != AttemptStatus::Succeeded {
            return Parts::zero(self.started.splits.len());
        }
        self.parts().minus(&self.parts_given())
    }

    /// Divides a refund of `amount` among the parts, by the rule of [`crate::shares`].
    pub fn refund_shares(&self, amount: Money) -> Parts {
        shares::divide(&self.parts(), &self.parts_given(), amount.amount_minor())
    }

    /// Σ of succeeded refunds.
    pub fn refunded(&self) -> Money {
        let currency = self.started.amount.currency();
        self.refunds
            .iter()
            .filter(|refund| refund.status == RefundStatus::Succeeded)
            .fold(Money::zero(currency), |sum, refund| {
                sum.checked_add(refund.amount)
                    .expect("refunds ≤ amount ≤ max")
            })
    }
}

/// The state of one order: all its attempts, oldest first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Order {
    /// Oldest first.
    pub attempts: Vec<Attempt>,
    /// The attempt that holds the order's one payment.
    pub kept_trade_no: Option<TradeNo>,
}

/// Everything needed to start an attempt; validated values only.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StartAttempt {
    pub trade_no: TradeNo,
    pub merchant_id: MerchantId,
    pub order_no: OrderNo,
    pub app_id: AppId,
    pub channel_account_id: ChannelAccountId,
    pub channel: Channel,
    pub invoke_method: InvokeMethod,
    pub amount: Money,
    pub fee_rate: Rate,
    pub splits: Vec<Split>,
    pub subject: String,
    pub expire_seconds: u32,
    pub min_attempt_interval_ms: i64,
    /// Where the cashier sends the user back to once the attempt settles.
    pub return_url: Option<String>,
    /// How routing chose the account (`"route": "auto"`).
    pub route: Option<Box<crate::events::RouteRecord>>,
    /// Routing moving on, within one request, from this attempt the channel refused: one
    /// decision, so the spacing between an order's attempts does not apply to it.
    pub failover_from: Option<TradeNo>,
    /// Whether the splits are paid to their receivers at the channel.
    pub share: crate::vocabulary::ShareMode,
}

/// A command on an order.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrderCommand {
    StartAttempt(StartAttempt),
    /// The channel reported the attempt paid. `channel_account_id` is the account whose
    /// verified callback or query said so; `amount` what it says was paid.
    RecordSuccess {
        trade_no: TradeNo,
        channel_account_id: ChannelAccountId,
        channel_trade_no: ChannelTradeNo,
        amount: Money,
        source: OutcomeSource,
    },
    RecordFailure {
        trade_no: TradeNo,
        reason: String,
        source: OutcomeSource,
    },
    /// The channel accepted the attempt; record its handle and checkout QR code.
    RecordInitiation {
        trade_no: TradeNo,
        channel_reference: Option<String>,
        checkout_qr_code: Option<String>,
    },
    Close {
        trade_no: TradeNo,
        reason: CloseReason,
    },
    RequestRefund {
        trade_no: TradeNo,
        refund_id: RefundId,
        refund_no: RefundNo,
        amount: Money,
        reason: String,
    },
    RecordRefundSuccess {
        trade_no: TradeNo,
        refund_id: RefundId,
        channel_refund_no: Option<String>,
    },
    RecordRefundFailure {
        trade_no: TradeNo,
        refund_id: RefundId,
        reason: String,
    },
    /// Pay the paid attempt's splits to their receivers at the channel.
    RequestShare {
        trade_no: TradeNo,
    },
    /// What the channel said of share `share_id`.
    RecordShareOutcome {
        trade_no: TradeNo,
        share_id: String,
        outcome: sharing::ShareOutcome,
    },
    /// The receivers gave back their shares of refund `refund_id` at the channel.
    RecordShareReturn {
        trade_no: TradeNo,
        refund_id: RefundId,
    },
}

impl Order {
    /// Folds the order's events, oldest first.
    pub fn from_events<'a>(events: impl IntoIterator<Item = &'a Event>) -> Order {
        let mut order = Order::default();
        for event in events {
            order.apply(event);
        }
        order
    }

    /// The attempt with this trade number.
    pub fn attempt(&self, trade_no: &TradeNo) -> Option<&Attempt> {
        self.attempts
            .iter()
            .find(|attempt| &attempt.started.trade_no == trade_no)
    }

    fn attempt_mut(&mut self, trade_no: &TradeNo) -> &mut Attempt {
        self.attempts
            .iter_mut()
            .find(|attempt| &attempt.started.trade_no == trade_no)
            .expect("events only name attempts of their own order")
    }

    /// Folds one event into the state. Events are facts: apply never refuses, but it asserts
    /// the invariants `decide` promised.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::PaymentAttemptStarted(started) => {
                self.attempts.push(Attempt {
                    started: started.clone(),
                    status: AttemptStatus::Pending,
                    channel_trade_no: None,
                    channel_reference: None,
                    was_initiated: false,
                    was_closed: false,
                    refunds: Vec::new(),
                    anomalies: Vec::new(),
                    share: None,
                });
            }
            Event::PaymentAttemptInitiated(initiated) => {
                let attempt = self.attempt_mut(&initiated.trade_no);
                assert!(!attempt.was_initiated, "an attempt is initiated once");
                attempt.was_initiated = true;
                attempt.channel_reference = initiated.channel_reference.clone();
            }
            Event::PaymentAttemptClosed(closed) => {
                let attempt = self.attempt_mut(&closed.trade_no);
                assert_eq!(
                    attempt.status,
                    AttemptStatus::Pending,
                    "only pending attempts close"
                );
                attempt.status = AttemptStatus::Closed;
                attempt.was_closed = true;
            }
            Event::PaymentSucceeded(succeeded) => {
                let kept_is_empty = self.kept_trade_no.is_none();
                let attempt = self.attempt_mut(&succeeded.trade_no);
                assert_ne!(
                    attempt.status,
                    AttemptStatus::Succeeded,
                    "an attempt succeeds at most once"
                );
                assert_eq!(
                    attempt.started.amount, succeeded.amount,
                    "paid amount is the attempt's amount"
                );
                attempt.status = AttemptStatus::Succeeded;
                attempt.channel_trade_no = Some(succeeded.channel_trade_no.clone());
                if kept_is_empty && !attempt.was_closed {
                    self.kept_trade_no = Some(succeeded.trade_no.clone());
                }
            }
            Event::PaymentFailed(failed) => {
                let attempt = self.attempt_mut(&failed.trade_no);
                assert_eq!(
                    attempt.status,
                    AttemptStatus::Pending,
                    "only pending attempts fail"
                );
                attempt.status = AttemptStatus::Failed;
            }
            Event::DuplicatePaymentDetected(detected) => {
                assert_ne!(
                    self.kept_trade_no.as_ref(),
                    Some(&detected.trade_no),
                    "the kept payment is no duplicate"
                );
            }
            Event::RefundRequested(requested) => {
                let attempt = self.attempt_mut(&requested.trade_no);
                let committed = attempt
                    .refund_committed()
                    .checked_add(requested.amount)
                    .expect("refunds ≤ amount ≤ max");
                assert!(
                    committed.amount_minor() <= attempt.paid().amount_minor(),
                    "refunds never exceed the paid amount: {committed} > {}",
                    attempt.paid()
                );
                // Refunds recorded before shares were recorded are divided by today's rule.
                let shares = match &requested.shares {
                    Some(recorded) => recorded.to_parts(),
                    None => attempt.refund_shares(requested.amount),
                };
                assert_eq!(
                    shares.total_minor(),
                    requested.amount.amount_minor(),
                    "a refund's shares sum to its amount"
                );
                assert!(
                    shares.within(&attempt.holdings()),
                    "no refund share exceeds what its part still holds"
                );
                attempt.refunds.push(Refund {
                    refund_id: requested.refund_id.clone(),
                    refund_no: requested.refund_no.clone(),
                    amount: requested.amount,
                    kind: requested.kind,
                    status: RefundStatus::Pending,
                    shares,
                });
            }
            Event::PaymentAnomalyDetected(detected) => {
                let attempt = self.attempt_mut(&detected.trade_no);
                attempt.anomalies.push(Anomaly {
                    detected: detected.clone(),
                    refund_status: RefundStatus::Pending,
                });
            }
            Event::RefundSucceeded(succeeded) => {
                *Self::refund_status_mut(
                    self.attempt_mut(&succeeded.trade_no),
                    &succeeded.refund_id,
                ) = RefundStatus::Succeeded;
            }
            Event::RefundFailed(failed) => {
                *Self::refund_status_mut(self.attempt_mut(&failed.trade_no), &failed.refund_id) =
                    RefundStatus::Failed;
            }
            Event::PaymentShareRequested(PaymentShareRequested { trade_no, .. })
            | Event::PaymentShared(PaymentShared { trade_no, .. })
            | Event::PaymentShareFailed(PaymentShareFailed { trade_no, .. })
            | Event::PaymentShareReturned(PaymentShareReturned { trade_no, .. }) => {
                sharing::apply(self.attempt_mut(trade_no), event);
            }
            _ => {}
        }
    }

    /// The status of a refund of the attempt: an app's or automatic refund, or the refund of
    /// an anomaly's reported money.
    fn refund_status_mut<'a>(
        attempt: &'a mut Attempt,
        refund_id: &RefundId,
    ) -> &'a mut RefundStatus {
        let status = match attempt
            .refunds
            .iter_mut()
            .find(|refund| &refund.refund_id == refund_id)
        {
            Some(refund) => &mut refund.status,
            None => {
                &mut attempt
                    .anomalies
                    .iter_mut()
                    .find(|anomaly| &anomaly.detected.refund_id == refund_id)
                    .expect("refund exists")
                    .refund_status
            }
        };
        assert_eq!(*status, RefundStatus::Pending, "a refund settles once");
        status
    }

    /// Decides what a command means for this order, at `now`. Pure: no I/O, no clock.
    pub fn decide(
        &self,
        command: &OrderCommand,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        match command {
            OrderCommand::StartAttempt(start) => self.decide_start(start, now),
            OrderCommand::RecordSuccess {
                trade_no,
                channel_account_id,
                channel_trade_no,
                amount,
                source,
            } => self.decide_success(
                trade_no,
                channel_account_id,
                channel_trade_no,
                *amount,
                *source,
                now,
            ),
            OrderCommand::RecordFailure {
                trade_no,
                reason,
                source,
            } => {
                let attempt = self.known_attempt(trade_no)?;
                if attempt.status != AttemptStatus::Pending {
                    // Conservative: a failure never overrides success, and repeats change nothing.
                    return Ok(Vec::new());
                }
                Ok(vec![Event::PaymentFailed(PaymentFailed {
                    trade_no: trade_no.clone(),
                    reason: reason.clone(),
                    source: *source,
                    failed_at: now,
                })])
            }
            OrderCommand::RecordInitiation {
                trade_no,
                channel_reference,
                checkout_qr_code,
            } => {
                let attempt = self.known_attempt(trade_no)?;
                // Once per attempt: a repeat (or a retried create) records nothing new.
                if attempt.was_initiated
                    || (channel_reference.is_none() && checkout_qr_code.is_none())
                {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::PaymentAttemptInitiated(
                    PaymentAttemptInitiated {
                        trade_no: trade_no.clone(),
                        channel_reference: channel_reference.clone(),
                        checkout_qr_code: checkout_qr_code.clone(),
                        initiated_at: now,
                    },
                )])
            }
            OrderCommand::Close { trade_no, reason } => {
                let attempt = self.known_attempt(trade_no)?;
                match attempt.status {
                    AttemptStatus::Pending => {
                        Ok(vec![Event::PaymentAttemptClosed(PaymentAttemptClosed {
                            trade_no: trade_no.clone(),
                            reason: *reason,
                            closed_at: now,
                        })])
                    }
                    AttemptStatus::Closed | AttemptStatus::Failed => Ok(Vec::new()),
                    AttemptStatus::Succeeded => Err(DomainError::PaymentAlreadySucceeded {
                        trade_no: trade_no.clone(),
                    }),
                }
            }
            OrderCommand::RequestRefund {
                trade_no,
                refund_id,
                refund_no,
                amount,
                reason,
            } => self.decide_refund(trade_no, refund_id, refund_no, *amount, reason, now),
            OrderCommand::RecordRefundSuccess {
                trade_no,
                refund_id,
                channel_refund_no,
            } => match self.known_refund_status(trade_no, refund_id)? {
                RefundStatus::Pending => {
                    // A shared payment's receivers gave their shares of the refund back by the
                    // time it succeeded: before it, where the channel takes shares back apart
                    // (recorded then), or within it (recorded here, with its success).
                    let mut events =
                        sharing::record_return(self.known_attempt(trade_no)?, refund_id, now);
                    events.push(Event::RefundSucceeded(RefundSucceeded {
                        refund_id: refund_id.clone(),
                        trade_no: trade_no.clone(),
                        channel_refund_no: channel_refund_no.clone(),
                        succeeded_at: now,
                    }));
                    Ok(events)
                }
                RefundStatus::Succeeded => Ok(Vec::new()),
                RefundStatus::Failed => Err(DomainError::RefundAlreadySettled {
                    refund_id: refund_id.clone(),
                }),
            },
            OrderCommand::RequestShare { trade_no } => {
                let attempt = self.known_attempt(trade_no)?;
                let kept = self.kept_trade_no.as_ref() == Some(trade_no);
                sharing::request(attempt, kept, now)
            }
            OrderCommand::RecordShareOutcome {
                trade_no,
                share_id,
                outcome,
            } => Ok(sharing::record_outcome(
                self.known_attempt(trade_no)?,
                share_id,
                outcome.clone(),
                now,
            )),
            OrderCommand::RecordShareReturn {
                trade_no,
                refund_id,
            } => Ok(sharing::record_return(
                self.known_attempt(trade_no)?,
                refund_id,
                now,
            )),
            OrderCommand::RecordRefundFailure {
                trade_no,
                refund_id,
                reason,
            } => match self.known_refund_status(trade_no, refund_id)? {
                RefundStatus::Pending => Ok(vec![Event::RefundFailed(RefundFailed {
                    refund_id: refund_id.clone(),
                    trade_no: trade_no.clone(),
                    reason: reason.clone(),
                    failed_at: now,
                })]),
                RefundStatus::Failed => Ok(Vec::new()),
                RefundStatus::Succeeded => Err(DomainError::RefundAlreadySettled {
                    refund_id: refund_id.clone(),
                }),
            },
        }
    }

    fn known_attempt(&self, trade_no: &TradeNo) -> Result<&Attempt, DomainError> {
        self.attempt(trade_no)
            .ok_or_else(|| DomainError::PaymentNotFound {
                trade_no: trade_no.clone(),
            })
    }

    /// Where a refund of the attempt stands: an app's, an automatic one or an anomaly's.
    fn known_refund_status(
        &self,
        trade_no: &TradeNo,
        refund_id: &RefundId,
    ) -> Result<RefundStatus, DomainError> {
        let attempt = self.known_attempt(trade_no)?;
        let refund = attempt
            .refunds
            .iter()
            .find(|refund| &refund.refund_id == refund_id)
            .map(|refund| refund.status);
        let anomaly = || {
            attempt
                .anomalies
                .iter()
                .find(|anomaly| &anomaly.detected.refund_id == refund_id)
                .map(|anomaly| anomaly.refund_status)
        };
        refund
            .or_else(anomaly)
            .ok_or_else(|| DomainError::RefundNotFound {
                refund_id: refund_id.clone(),
            })
    }

    fn decide_start(
        &self,
        start: &StartAttempt,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        if let Some(kept) = &self.kept_trade_no {
            return Err(DomainError::OrderAlreadyPaid {
                order_no: start.order_no.clone(),
                trade_no: kept.clone(),
            });
        }
        if let Some(first) = self.attempts.first() {
            if first.started.amount != start.amount {
                return Err(DomainError::OrderAmountMismatch {
                    order_no: start.order_no.clone(),
                    expected: first.started.amount,
                    requested: start.amount,
                });
            }
        }
        let failing_over = match (&start.failover_from, self.attempts.last()) {
            (Some(from), Some(last)) => {
                &last.started.trade_no == from && last.status == AttemptStatus::Failed
            }
            _ => false,
        };
        if let Some(last) = self.attempts.last().filter(|_| !failing_over) {
            let earliest_next =
                last.started.started_at + Duration::milliseconds(start.min_attempt_interval_ms);
            if now < earliest_next {
                let wait_ms = (earliest_next - now).num_milliseconds();
                // Round up: an app that waits `retry_after` seconds must not be refused again.
                let retry_after_seconds = ((wait_ms + 999) / 1000).max(1) as u64;
                return Err(DomainError::AttemptTooSoon {
                    order_no: start.order_no.clone(),
                    retry_after_seconds,
                });
            }
        }
        if self.attempts.len() >= MAX_ATTEMPTS_PER_ORDER {
            return Err(DomainError::TooManyAttempts {
                order_no: start.order_no.clone(),
                max: MAX_ATTEMPTS_PER_ORDER,
            });
        }
        if self
            .attempts
            .iter()
            .any(|attempt| attempt.started.trade_no == start.trade_no)
        {
            return Err(DomainError::DuplicateTradeNo {
                trade_no: start.trade_no.clone(),
            });
        }
        let fee = start
            .amount
            .checked_mul_rate(start.fee_rate)
            .map_err(DomainError::Money)?;
        validate_splits(start.amount, fee, &start.splits)?;

        let mut events: Vec<Event> = self
            .attempts
            .iter()
            .filter(|attempt| attempt.status == AttemptStatus::Pending)
            .map(|attempt| {
                Event::PaymentAttemptClosed(PaymentAttemptClosed {
                    trade_no: attempt.started.trade_no.clone(),
                    reason: CloseReason::Superseded,
                    closed_at: now,
                })
            })
            .collect();
        events.push(Event::PaymentAttemptStarted(PaymentAttemptStarted {
            trade_no: start.trade_no.clone(),
            merchant_id: start.merchant_id.clone(),
            order_no: start.order_no.clone(),
            app_id: start.app_id.clone(),
            channel_account_id: start.channel_account_id.clone(),
            channel: start.channel,
            invoke_method: start.invoke_method,
            amount: start.amount,
            fee,
            splits: start.splits.clone(),
            subject: start.subject.clone(),
            started_at: now,
            expires_at: now + Duration::seconds(i64::from(start.expire_seconds)),
            return_url: start.return_url.clone(),
            route: start.route.as_deref().cloned(),
            share: start.share,
        }));
        Ok(events)
    }

    fn decide_success(
        &self,
        trade_no: &TradeNo,
        channel_account_id: &ChannelAccountId,
        channel_trade_no: &ChannelTradeNo,
        amount: Money,
        source: OutcomeSource,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        let attempt = self.known_attempt(trade_no)?;
        let contradiction = if channel_account_id != &attempt.started.channel_account_id {
            Some(AnomalyKind::AccountMismatch)
        } else if amount.currency() != attempt.started.amount.currency() {
            Some(AnomalyKind::CurrencyMismatch)
        } else if amount != attempt.started.amount {
            Some(AnomalyKind::AmountMismatch)
        } else {
            None
        };
        if let Some(kind) = contradiction {
            // Money moved at the channel but not as the attempt says: a fact to keep and to
            // give back, never a payment of the order.
            let refund_id =
                anomaly_refund_id(trade_no, channel_account_id, channel_trade_no, amount);
            if attempt
                .anomalies
                .iter()
                .any(|anomaly| anomaly.detected.refund_id == refund_id)
            {
                return Ok(Vec::new()); // The channel repeats its report: nothing new.
            }
            if attempt.anomalies.len() >= MAX_ANOMALIES_PER_ATTEMPT {
                return Err(DomainError::TooManyAnomalies {
                    trade_no: trade_no.clone(),
                    max: MAX_ANOMALIES_PER_ATTEMPT,
                });
            }
            return Ok(vec![Event::PaymentAnomalyDetected(
                PaymentAnomalyDetected {
                    trade_no: trade_no.clone(),
                    kind,
                    channel_account_id: channel_account_id.clone(),
                    channel_trade_no: channel_trade_no.clone(),
                    reported_amount: amount,
                    refund_id,
                    source,
                    detected_at: now,
                },
            )]);
        }
        if attempt.status == AttemptStatus::Succeeded {
            if attempt.channel_trade_no.as_ref() == Some(channel_trade_no) {
                return Ok(Vec::new()); // The channel repeats callbacks until answered: nothing new.
            }
            return Err(DomainError::ChannelTradeNoConflict {
                trade_no: trade_no.clone(),
            });
        }
        let mut events = vec![Event::PaymentSucceeded(PaymentSucceeded {
            trade_no: trade_no.clone(),
            channel_trade_no: channel_trade_no.clone(),
            amount,
            source,
            paid_at: now,
        })];
        let cause = if attempt.was_closed {
            Some(DuplicateCause::PaidAfterClose)
        } else if self.kept_trade_no.is_some() {
            Some(DuplicateCause::OrderAlreadyPaid)
        } else {
            None
        };
        if cause.is_none() {
            events.extend(sharing::request_at_success(attempt, now));
        }
        if let Some(cause) = cause {
            events.push(Event::DuplicatePaymentDetected(DuplicatePaymentDetected {
                trade_no: trade_no.clone(),
                kept_trade_no: self.kept_trade_no.clone(),
                cause,
                detected_at: now,
            }));
            let whole = Parts::of_payment(amount, attempt.started.fee, &attempt.started.splits);
            events.push(Event::RefundRequested(RefundRequested {
                shares: Some(whole.to_shares(amount.currency(), &attempt.started.splits)),
                refund_id: automatic_refund_id(trade_no),
                refund_no: RefundNo::parse(&format!("dup-{trade_no}"))
                    .expect("trade numbers make valid refund numbers"),
                trade_no: trade_no.clone(),
                amount,
                reason: match cause {
                    DuplicateCause::OrderAlreadyPaid => {
                        "duplicate payment: the order was already paid".to_owned()
                    }
                    DuplicateCause::PaidAfterClose => {
                        "paid after the attempt was closed".to_owned()
                    }
                },
                kind: RefundKind::Automatic,
                requested_at: now,
            }));
        }
        Ok(events)
    }

    fn decide_refund(
        &self,
        trade_no: &TradeNo,
        refund_id: &RefundId,
        refund_no: &RefundNo,
        amount: Money,
        reason: &str,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>, DomainError> {
        let attempt = self.known_attempt(trade_no)?;
        if let Some(existing) = attempt
            .refunds
            .iter()
            .find(|refund| &refund.refund_no == refund_no)
        {
            if existing.amount == amount {
                return Ok(Vec::new()); // Replay of the same refund.
            }
            return Err(DomainError::RefundNoReused {
                refund_no: refund_no.clone(),
                trade_no: trade_no.clone(),
            });
        }
        if attempt.status != AttemptStatus::Succeeded {
            return Err(DomainError::PaymentNotRefundable {
                trade_no: trade_no.clone(),
                status: attempt.status,
            });
        }
        if amount.currency() != attempt.started.amount.currency() {
            return Err(DomainError::Money(
                crate::money::MoneyError::CurrencyMismatch {
                    left: attempt.started.amount.currency(),
                    right: amount.currency(),
                },
            ));
        }
        if attempt.refunds.len() >= MAX_REFUNDS_PER_PAYMENT {
            return Err(DomainError::TooManyRefunds {
                trade_no: trade_no.clone(),
                max: MAX_REFUNDS_PER_PAYMENT,
            });
        }
        let available = attempt
            .paid()
            .checked_sub(attempt.refund_committed())
            .expect("refunds never exceed payment");
        if amount.amount_minor() > available.amount_minor() {
            return Err(DomainError::RefundExceedsAvailable {
                trade_no: trade_no.clone(),
                requested: amount,
                available,
            });
        }
        let shares = attempt.refund_shares(amount);
        Ok(vec![Event::RefundRequested(RefundRequested {
            refund_id: refund_id.clone(),
            refund_no: refund_no.clone(),
            trade_no: trade_no.clone(),
            amount,
            reason: reason.to_owned(),
            kind: RefundKind::App,
            shares: Some(shares.to_shares(amount.currency(), &attempt.started.splits)),
            requested_at: now,
        })])
    }
}

/// The refund id of an app's refund `refund_no` of attempt `trade_no`: derived from both, so a
/// retried request decides the same refund (ids of refunds already recorded keep this form).
pub fn app_refund_id(trade_no: &TradeNo, refund_no: &RefundNo) -> RefundId {
    use sha2::{Digest, Sha256};
    let digest = Sha256::digest(format!("{trade_no}/{refund_no}").as_bytes());
    RefundId::parse(&format!("rf_{}", &hex::encode(digest)[..32]))
        .expect("hex makes a valid refund id")
}

/// The refund id of the automatic refund of a duplicate payment: derived, so a retried
/// callback decides the same refund.
pub fn automatic_refund_id(trade_no: &TradeNo) -> RefundId {
    RefundId::parse(&format!("rf_dup{trade_no}")).expect("trade numbers make valid refund ids")
}

/// The refund id of the money reported by a contradicting report: derived from the report,
/// so the channel repeating it decides the same refund.
pub fn anomaly_refund_id(
    trade_no: &TradeNo,
    channel_account_id: &ChannelAccountId,
    channel_trade_no: &ChannelTradeNo,
    reported: Money,
) -> RefundId {
    let report = format!(
        "{trade_no}|{channel_account_id}|{channel_trade_no}|{}|{}",
        reported.amount_minor(),
        reported.currency()
    );
    let digest = uuid::Uuid::new_v5(&uuid::Uuid::NAMESPACE_OID, report.as_bytes());
    RefundId::parse(&format!("rf_an{}", digest.simple())).expect("hex makes a valid refund id")
}

/// Splits: each positive and in the payment's currency, receivers named, and
/// fee + Σ splits ≤ amount so the merchant's net is never negative.
fn validate_splits(amount: Money, fee: Money, splits: &[Split]) -> Result<(), DomainError> {
    if splits.len() > MAX_SPLITS_PER_PAYMENT {
        return Err(DomainError::InvalidSplits {
            reason: format!("at most {MAX_SPLITS_PER_PAYMENT} receivers"),
        });
    }
    let mut committed = fee;
    for split in splits {
        if split.receiver.is_empty() || split.receiver.len() > 64 {
            return Err(DomainError::InvalidSplits {
                reason: "every split needs a receiver of 1 to 64 characters".to_owned(),
            });
        }
        if split.amount.is_zero() {
            return Err(DomainError::InvalidSplits {
                reason: "split amounts must be greater than zero".to_owned(),
            });
        }
        committed =
            committed
                .checked_add(split.amount)
                .map_err(|error| DomainError::InvalidSplits {
                    reason: error.to_string(),
                })?;
    }
    if committed.amount_minor() > amount.amount_minor() {
        return Err(DomainError::SplitsExceedAmount {
            amount,
            splits_and_fee: committed,
        });
    }
    Ok(())
}
