//! Paying a payment's splits to their receivers at the channel (WeChat Pay profit sharing,
//! Alipay settlement), and taking receivers' shares back before a refund. The amounts are
//! decided here and recorded in the events: a share pays each split what it still holds when
//! the share is asked for; a refund of a shared payment first takes back from each receiver
//! the share of that split its `refund.requested` recorded.
//!
//! A share is asked for once per payment (again only after it failed for good); its outcome
//! is recorded once. A failure the channel may get over is retried by paycenter up to
//! [`MAX_SHARE_TRIES`] times, each failure recorded, then the share fails for good.

use chrono::{DateTime, Utc};

use super::Attempt;
use crate::error::DomainError;
use crate::events::{
    Event, PaymentShareFailed, PaymentShareRequested, PaymentShareReturned, PaymentShared,
};
use crate::ids::{RefundId, TradeNo};
use crate::money::Money;
use crate::shares::Split;
use crate::vocabulary::{AttemptStatus, RefundStatus, ShareMode, ShareStatus};

/// Tries of one share before it fails for good.
pub const MAX_SHARE_TRIES: u32 = 5;

/// Where an attempt's share stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShareState {
    /// The channel's order number of the current request.
    pub share_id: String,
    /// How many shares were asked for (the current one included).
    pub requests: u32,
    /// What each receiver gets.
    pub lines: Vec<Split>,
    /// `Pending`, `Shared` or `Failed` (`Returned` is told per line).
    pub status: ShareStatus,
    /// Failures of the current request.
    pub failures: u32,
    /// What each line gave back for refunds, in minor units.
    pub returned_minor: Vec<i64>,
    /// The refunds each receiver already gave its share back for.
    pub returned_for: Vec<RefundId>,
    /// The channel's last words, when it failed.
    pub last_error: Option<String>,
}

impl ShareState {
    /// One line's status: a shared line given back whole is `Returned`.
    pub fn line_status(&self, line_idx: usize) -> ShareStatus {
        let whole = self.lines[line_idx].amount.amount_minor();
        match self.status {
            ShareStatus::Shared if self.returned_minor[line_idx] >= whole => ShareStatus::Returned,
            status => status,
        }
    }
}

/// What the channel said of a share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareOutcome {
    /// Paid to every receiver.
    Shared {
        /// The channel's id of it.
        channel_share_no: Option<String>,
    },
    /// Not taken. `definite`: the channel refused it (retrying would not help).
    Failed {
        /// The channel's words.
        reason: String,
        /// Whether the channel refused it for good.
        definite: bool,
    },
}

/// The channel's order number of an attempt's `request_no`-th share (1-based): letters and
/// digits only, as WeChat Pay's `out_order_no` and Alipay's `out_request_no` take.
pub fn share_id(trade_no: &TradeNo, request_no: u32) -> String {
    format!("S{trade_no}N{request_no}")
}

/// The lines a share pays: each split's part in `parts_minor` that is above zero.
fn lines_of(splits: &[Split], parts_minor: &[i64], currency: crate::Currency) -> Vec<Split> {
    splits
        .iter()
        .zip(parts_minor)
        .filter(|(_, minor)| **minor > 0)
        .map(|(split, minor)| Split {
            receiver: split.receiver.clone(),
            amount: Money::from_minor(*minor, currency),
        })
        .collect()
}

/// Asks for the share of a paid attempt: `kept` says whether it is the order's payment (a
/// duplicate is refunded whole, never shared). Asking again while a share is pending or done
/// records nothing; after a share failed for good it asks anew.
pub fn request(
    attempt: &Attempt,
    kept: bool,
    now: DateTime<Utc>,
) -> Result<Vec<Event>, DomainError> {
    let refuse = |reason: &str| {
        Err(DomainError::NotShareable {
            trade_no: attempt.started.trade_no.clone(),
            reason: reason.to_owned(),
        })
    };
    if attempt.started.share == ShareMode::None {
        return refuse("it was created with share \"none\" (its splits live in the ledger only)");
    }
    if attempt.status != AttemptStatus::Succeeded || !kept {
        return refuse("only the order's succeeded payment is shared");
    }
    let requests = match &attempt.share {
        Some(share) if share.status != ShareStatus::Failed => return Ok(Vec::new()),
        Some(share) => share.requests,
        None => 0,
    };
    let currency = attempt.started.amount.currency();
    let lines = lines_of(
        &attempt.started.splits,
        &attempt.holdings().splits_minor,
        currency,
    );
    if lines.is_empty() {
        return refuse("its splits hold nothing any more (refunded)");
    }
    Ok(vec![Event::PaymentShareRequested(PaymentShareRequested {
        trade_no: attempt.started.trade_no.clone(),
        merchant_id: attempt.started.merchant_id.clone(),
        share_id: share_id(&attempt.started.trade_no, requests + 1),
        lines,
        requested_at: now,
    })])
}

/// The share asked for with a payment of `share: "auto"` as it succeeds (and becomes the
/// order's payment): every split whole.
pub fn request_at_success(attempt: &Attempt, now: DateTime<Utc>) -> Option<Event> {
    if attempt.started.share != ShareMode::Auto {
        return None;
    }
    let lines: Vec<Split> = attempt
        .started
        .splits
        .iter()
        .filter(|split| split.amount.amount_minor() > 0)
        .cloned()
        .collect();
    if lines.is_empty() {
        return None;
    }
    Some(Event::PaymentShareRequested(PaymentShareRequested {
        trade_no: attempt.started.trade_no.clone(),
        merchant_id: attempt.started.merchant_id.clone(),
        share_id: share_id(&attempt.started.trade_no, 1),
        lines,
        requested_at: now,
    }))
}

/// Records what the channel said of share `share_id`; a report of another or a settled share
/// records nothing.
pub fn record_outcome(
    attempt: &Attempt,
    share_id: &str,
    outcome: ShareOutcome,
    now: DateTime<Utc>,
) -> Vec<Event> {
    let Some(share) = attempt
        .share
        .as_ref()
        .filter(|share| share.share_id == share_id && share.status == ShareStatus::Pending)
    else {
        return Vec::new();
    };
    let trade_no = attempt.started.trade_no.clone();
    match outcome {
        ShareOutcome::Shared { channel_share_no } => {
            vec![Event::PaymentShared(PaymentShared {
                trade_no,
                merchant_id: attempt.started.merchant_id.clone(),
                share_id: share_id.to_owned(),
                lines: share.lines.clone(),
                channel_share_no,
                shared_at: now,
            })]
        }
        ShareOutcome::Failed { reason, definite } => {
            vec![Event::PaymentShareFailed(PaymentShareFailed {
                trade_no,
                share_id: share_id.to_owned(),
                reason: reason.chars().take(512).collect(),
                will_retry: !definite && share.failures + 1 < MAX_SHARE_TRIES,
                failed_at: now,
            })]
        }
    }
}

/// What the receivers give back before refund `refund_id` of a shared payment: each split's
/// share of the refund, as `refund.requested` recorded it. Nothing when the payment was not
/// shared, or the receivers already gave back for this refund.
pub fn record_return(attempt: &Attempt, refund_id: &RefundId, now: DateTime<Utc>) -> Vec<Event> {
    let Some(share) = attempt
        .share
        .as_ref()
        .filter(|share| share.status == ShareStatus::Shared)
    else {
        return Vec::new();
    };
    if share.returned_for.contains(refund_id) {
        return Vec::new();
    }
    let Some(refund) = attempt
        .refunds
        .iter()
        .find(|refund| &refund.refund_id == refund_id && refund.status == RefundStatus::Pending)
    else {
        return Vec::new();
    };
    let currency = attempt.started.amount.currency();
    let lines = lines_of(
        &attempt.started.splits,
        &refund.shares.splits_minor,
        currency,
    );
    for line in &lines {
        let shared = share
            .lines
            .iter()
            .position(|shared| shared.receiver == line.receiver);
        // The refund's split shares never exceed what each split still holds, and a share
        // paid what each held then: within what the receiver got and kept.
        let within = shared.is_some_and(|idx| {
            share.returned_minor[idx] + line.amount.amount_minor()
                <= share.lines[idx].amount.amount_minor()
        });
        assert!(
            within,
            "a return never exceeds what its receiver was shared"
        );
    }
    vec![Event::PaymentShareReturned(PaymentShareReturned {
        trade_no: attempt.started.trade_no.clone(),
        merchant_id: attempt.started.merchant_id.clone(),
        refund_id: refund_id.clone(),
        lines,
        returned_at: now,
    })]
}

/// Folds a share event into its attempt.
pub fn apply(attempt: &mut Attempt, event: &Event) {
    match event {
        Event::PaymentShareRequested(requested) => {
            let requests = attempt.share.as_ref().map_or(0, |share| share.requests) + 1;
            attempt.share = Some(ShareState {
                share_id: requested.share_id.clone(),
                requests,
                returned_minor: vec![0; requested.lines.len()],
                lines: requested.lines.clone(),
                status: ShareStatus::Pending,
                failures: 0,
                returned_for: Vec::new(),
                last_error: None,
            });
        }
        Event::PaymentShared(shared) => {
            let share = attempt
                .share
                .as_mut()
                .expect("a share settles after its request");
            assert_eq!(share.share_id, shared.share_id, "the pending share settles");
            share.status = ShareStatus::Shared;
        }
        Event::PaymentShareFailed(failed) => {
            let share = attempt
                .share
                .as_mut()
                .expect("a share fails after its request");
            share.failures += 1;
            share.last_error = Some(failed.reason.clone());
            if !failed.will_retry {
                share.status = ShareStatus::Failed;
            }
        }
        Event::PaymentShareReturned(returned) => {
            let share = attempt
                .share
                .as_mut()
                .expect("only a shared payment gives back");
            for line in &returned.lines {
                let idx = share
                    .lines
                    .iter()
                    .position(|shared| shared.receiver == line.receiver)
                    .expect("a return names a shared receiver");
                share.returned_minor[idx] += line.amount.amount_minor();
            }
            share.returned_for.push(returned.refund_id.clone());
        }
        _ => {}
    }
}
