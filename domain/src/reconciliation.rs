//! Reconciliation: paycenter's record of a channel account's day against the channel's bill.
//! A pure comparison; fetching the bill and recording the result happen around it.

use serde::{Deserialize, Serialize};

use crate::ids::{ChannelTradeNo, OrderNo, TradeNo};
use crate::money::Money;
pub use crate::vocabulary::DiscrepancyKind;
use crate::vocabulary::{AttemptStatus, PayoutStatus};

/// The most bill lines one reconciliation takes.
pub const MAX_BILL_LINES: usize = 1_000_000;

/// A payment as paycenter recorded it, with what concerns the reconciled day.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLine {
    pub trade_no: TradeNo,
    pub order_no: OrderNo,
    pub channel_trade_no: Option<ChannelTradeNo>,
    pub amount: Money,
    pub status: AttemptStatus,
    /// Paid on the reconciled (business) day: only these payments are expected on the bill.
    pub paid_that_day: bool,
    /// Σ refunds of this payment that succeeded on the reconciled day (zero when none).
    pub refunded_that_day: Money,
}

/// One trade as the channel's bill lists it for the day: what was paid that day (zero when
/// the bill only lists refunds of an earlier day's payment) and what was refunded that day.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    pub trade_no: TradeNo,
    pub channel_trade_no: ChannelTradeNo,
    pub amount: Money,
    pub refunded: Money,
}

/// One disagreement, with the three ids where known. For refund kinds the amounts are the
/// day's refunded totals.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Discrepancy {
    pub kind: DiscrepancyKind,
    pub trade_no: TradeNo,
    pub order_no: Option<OrderNo>,
    pub channel_trade_no: Option<ChannelTradeNo>,
    pub paycenter_amount: Option<Money>,
    pub channel_amount: Option<Money>,
    pub paycenter_status: Option<AttemptStatus>,
}

/// Compares the record with the bill, matching by `trade_no`: payments paid that day against
/// the bill's payment rows, refunds settled that day against its refund rows (a refund of an
/// earlier day's payment is no discrepancy). Answers how many payments and refunds agree, and
/// every discrepancy, ordered by `trade_no`.
pub fn reconcile(record: &[RecordLine], bill: &[BillLine]) -> (usize, Vec<Discrepancy>) {
    let by_trade_no: std::collections::HashMap<&TradeNo, &RecordLine> =
        record.iter().map(|line| (&line.trade_no, line)).collect();
    let mut billed_payments: std::collections::HashSet<&TradeNo> = Default::default();
    let mut billed_refunds: std::collections::HashSet<&TradeNo> = Default::default();
    let mut n_matched = 0;
    let mut discrepancies = Vec::new();
    let mut report = |kind,
                      line: &BillLine,
                      ours: Option<&RecordLine>,
                      amounts: (Option<Money>, Option<Money>)| {
        discrepancies.push(Discrepancy {
            kind,
            trade_no: line.trade_no.clone(),
            order_no: ours.map(|ours| ours.order_no.clone()),
            channel_trade_no: Some(line.channel_trade_no.clone()),
            paycenter_amount: amounts.0,
            channel_amount: amounts.1,
            paycenter_status: ours.map(|ours| ours.status),
        })
    };
    for line in bill {
        let ours = by_trade_no.get(&line.trade_no).copied();
        if !line.amount.is_zero() {
            billed_payments.insert(&line.trade_no);
            match ours {
                None => report(
                    DiscrepancyKind::MissingInPaycenter,
                    line,
                    None,
                    (None, Some(line.amount)),
                ),
                Some(ours) if ours.status != AttemptStatus::Succeeded => report(
                    DiscrepancyKind::StatusMismatch,
                    line,
                    Some(ours),
                    (Some(ours.amount), Some(line.amount)),
                ),
                Some(ours) if ours.amount != line.amount => report(
                    DiscrepancyKind::AmountMismatch,
                    line,
                    Some(ours),
                    (Some(ours.amount), Some(line.amount)),
                ),
                Some(_) => n_matched += 1,
            }
        }
        if !line.refunded.is_zero() {
            billed_refunds.insert(&line.trade_no);
            match ours {
                // Unknown payment with a refund the same day: the payment row says it already.
                None if !line.amount.is_zero() => {}
                Some(ours) if ours.refunded_that_day == line.refunded => n_matched += 1,
                Some(ours) if !ours.refunded_that_day.is_zero() => report(
                    DiscrepancyKind::RefundAmountMismatch,
                    line,
                    Some(ours),
                    (Some(ours.refunded_that_day), Some(line.refunded)),
                ),
                _ => report(
                    DiscrepancyKind::RefundMissingInPaycenter,
                    line,
                    ours,
                    (None, Some(line.refunded)),
                ),
            }
        }
    }
    for ours in record {
        let missing = |kind, amount| Discrepancy {
            kind,
            trade_no: ours.trade_no.clone(),
            order_no: Some(ours.order_no.clone()),
            channel_trade_no: ours.channel_trade_no.clone(),
            paycenter_amount: Some(amount),
            channel_amount: None,
            paycenter_status: Some(ours.status),
        };
        if ours.paid_that_day && !billed_payments.contains(&ours.trade_no) {
            discrepancies.push(missing(DiscrepancyKind::MissingInChannel, ours.amount));
        }
        if !ours.refunded_that_day.is_zero() && !billed_refunds.contains(&ours.trade_no) {
            discrepancies.push(missing(
                DiscrepancyKind::RefundMissingInChannel,
                ours.refunded_that_day,
            ));
        }
    }
    discrepancies.sort_by(|a, b| (&a.trade_no, a.kind as u8).cmp(&(&b.trade_no, b.kind as u8)));
    (n_matched, discrepancies)
}

/// The most payouts one reconciliation asks the channel about (one query each).
pub const MAX_PAYOUTS_CHECKED: usize = 10_000;

/// A payout paycenter settled on the reconciled day.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutRecord {
    pub payout_id: String,
    pub payout_no: String,
    pub amount: Money,
    /// `succeeded` or `failed`.
    pub status: PayoutStatus,
}

/// A payout as the channel answered when asked: `None` in [`reconcile_payouts`] when it has
/// no such transfer.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PayoutAtChannel {
    pub status: PayoutStatus,
    pub amount: Money,
}

/// The payouts of a reconciled day.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutsReconciled {
    pub n_checked: u64,
    pub n_matched: u64,
    pub discrepancies: Vec<PayoutDiscrepancy>,
}

/// One payout on which paycenter and the channel disagree.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PayoutDiscrepancy {
    pub kind: DiscrepancyKind,
    pub payout_id: String,
    pub payout_no: String,
    pub paycenter_amount: Money,
    pub paycenter_status: PayoutStatus,
    pub channel_amount: Option<Money>,
    pub channel_status: Option<PayoutStatus>,
}

/// Compares each payout settled that day with what its channel answered. A paid payout must
/// be paid at the channel for the same amount; a failed one must not have moved money there
/// (absent or failed at the channel). Discrepancies are ordered by payout id.
pub fn reconcile_payouts(checked: &[(PayoutRecord, Option<PayoutAtChannel>)]) -> PayoutsReconciled {
    let mut discrepancies = Vec::new();
    for (ours, theirs) in checked {
        let kind = match (ours.status, theirs) {
            (PayoutStatus::Succeeded, None) => Some(DiscrepancyKind::PayoutMissingInChannel),
            (PayoutStatus::Succeeded, Some(theirs)) if theirs.status != PayoutStatus::Succeeded => {
                Some(DiscrepancyKind::PayoutStatusMismatch)
            }
            (PayoutStatus::Succeeded, Some(theirs)) if theirs.amount != ours.amount => {
                Some(DiscrepancyKind::PayoutAmountMismatch)
            }
            (_, None) => None,
            (_, Some(theirs)) if theirs.status == ours.status => None,
            (_, Some(_)) => Some(DiscrepancyKind::PayoutStatusMismatch),
        };
        if let Some(kind) = kind {
            discrepancies.push(PayoutDiscrepancy {
                kind,
                payout_id: ours.payout_id.clone(),
                payout_no: ours.payout_no.clone(),
                paycenter_amount: ours.amount,
                paycenter_status: ours.status,
                channel_amount: theirs.as_ref().map(|theirs| theirs.amount),
                channel_status: theirs.as_ref().map(|theirs| theirs.status),
            });
        }
    }
    discrepancies.sort_by(|a, b| a.payout_id.cmp(&b.payout_id));
    PayoutsReconciled {
        n_checked: checked.len() as u64,
        n_matched: (checked.len() - discrepancies.len()) as u64,
        discrepancies,
    }
}

#[cfg(test)]
mod tests {

    use super::*;
    use crate::Currency;
    use chrono::{TimeZone, Utc};

    fn trade(n: u64) -> TradeNo {
        TradeNo::generate(Utc.with_ymd_and_hms(2026, 11, 1, 0, 0, 0).unwrap(), n)
    }

    fn ours(n: u64, minor: i64, status: AttemptStatus, paid_that_day: bool) -> RecordLine {
        RecordLine {
            trade_no: trade(n),
            order_no: OrderNo::parse(&format!("O{n}")).unwrap(),
            channel_trade_no: (status == AttemptStatus::Succeeded)
                .then(|| ChannelTradeNo::parse(&format!("C{n}")).unwrap()),
            amount: Money::from_minor(minor, Currency::CNY),
            status,
            paid_that_day,
            refunded_that_day: Money::zero(Currency::CNY),
        }
    }

    /// Each discrepancy's trade and kind, in order.
    fn kinds(discrepancies: &[Discrepancy]) -> Vec<(TradeNo, DiscrepancyKind)> {
        discrepancies
            .iter()
            .map(|d| (d.trade_no.clone(), d.kind))
            .collect()
    }

    fn refunded(line: RecordLine, minor: i64) -> RecordLine {
        RecordLine {
            refunded_that_day: Money::from_minor(minor, Currency::CNY),
            ..line
        }
    }

    fn billed(n: u64, minor: i64) -> BillLine {
        BillLine {
            trade_no: trade(n),
            channel_trade_no: ChannelTradeNo::parse(&format!("C{n}")).unwrap(),
            amount: Money::from_minor(minor, Currency::CNY),
            refunded: Money::zero(Currency::CNY),
        }
    }

    fn billed_refund(n: u64, paid_minor: i64, refunded_minor: i64) -> BillLine {
        BillLine {
            refunded: Money::from_minor(refunded_minor, Currency::CNY),
            ..billed(n, paid_minor)
        }
    }

    #[test]
    fn refunds_are_reconciled_as_refunds() {
        let record = vec![
            // Paid another day, refunded today, billed as a refund only: no discrepancy.
            refunded(ours(1, 100, AttemptStatus::Succeeded, false), 40),
            // Paid and partly refunded today, both billed.
            refunded(ours(2, 200, AttemptStatus::Succeeded, true), 50),
            // Refunded today in paycenter, not on the bill.
            refunded(ours(3, 300, AttemptStatus::Succeeded, false), 30),
            // Refunded today for another total.
            refunded(ours(4, 400, AttemptStatus::Succeeded, false), 10),
            // The bill refunds what paycenter did not refund today.
            ours(5, 500, AttemptStatus::Succeeded, false),
        ];
        let bill = vec![
            billed_refund(1, 0, 40),
            billed_refund(2, 200, 50),
            billed_refund(4, 0, 11),
            billed_refund(5, 0, 5),
        ];
        let (n_matched, discrepancies) = reconcile(&record, &bill);
        let kinds = kinds(&discrepancies);
        assert_eq!(
            kinds,
            vec![
                (trade(3), DiscrepancyKind::RefundMissingInChannel),
                (trade(4), DiscrepancyKind::RefundAmountMismatch),
                (trade(5), DiscrepancyKind::RefundMissingInPaycenter),
            ]
        );
        // Refund 1, payment 2 and refund 2.
        assert_eq!(n_matched, 3);
    }

    #[test]
    fn one_discrepancy_of_each_kind_is_found_and_nothing_else() {
        let record = vec![
            ours(1, 100, AttemptStatus::Succeeded, true),  // matched
            ours(2, 200, AttemptStatus::Succeeded, true),  // missing in channel
            ours(3, 300, AttemptStatus::Succeeded, true),  // amount mismatch
            ours(4, 400, AttemptStatus::Pending, false),   // status mismatch
            ours(6, 600, AttemptStatus::Succeeded, false), // paid another day, not billed: fine
        ];
        let bill = vec![
            billed(1, 100),
            billed(3, 301),
            billed(4, 400),
            billed(5, 500),
        ];
        let (n_matched, discrepancies) = reconcile(&record, &bill);
        assert_eq!(n_matched, 1);
        let kinds = kinds(&discrepancies);
        assert_eq!(
            kinds,
            vec![
                (trade(2), DiscrepancyKind::MissingInChannel),
                (trade(3), DiscrepancyKind::AmountMismatch),
                (trade(4), DiscrepancyKind::StatusMismatch),
                (trade(5), DiscrepancyKind::MissingInPaycenter),
            ]
        );
        assert_eq!(
            discrepancies[1].channel_amount,
            Some(Money::from_minor(301, Currency::CNY))
        );
    }

    #[test]
    fn agreeing_record_and_bill_have_no_discrepancy() {
        let (n_matched, discrepancies) = reconcile(
            &[ours(1, 100, AttemptStatus::Succeeded, true)],
            &[billed(1, 100)],
        );
        assert_eq!((n_matched, discrepancies.len()), (1, 0));
    }

    #[test]
    fn payouts_are_matched_by_what_moved_at_the_channel() {
        let cny = |minor| Money::from_minor(minor, Currency::CNY);
        let ours = |id: &str, minor, status| PayoutRecord {
            payout_id: id.to_owned(),
            payout_no: id.to_uppercase(),
            amount: cny(minor),
            status,
        };
        let theirs = |minor, status| {
            Some(PayoutAtChannel {
                status,
                amount: cny(minor),
            })
        };
        let checked = vec![
            (
                ours("a", 100, PayoutStatus::Succeeded),
                theirs(100, PayoutStatus::Succeeded),
            ),
            (ours("b", 100, PayoutStatus::Succeeded), None),
            (
                ours("c", 100, PayoutStatus::Succeeded),
                theirs(90, PayoutStatus::Succeeded),
            ),
            (ours("d", 100, PayoutStatus::Failed), None),
            (
                ours("e", 100, PayoutStatus::Failed),
                theirs(100, PayoutStatus::Failed),
            ),
            (
                ours("f", 100, PayoutStatus::Failed),
                theirs(100, PayoutStatus::Succeeded),
            ),
            (
                ours("g", 100, PayoutStatus::Succeeded),
                theirs(100, PayoutStatus::Pending),
            ),
        ];
        let reconciled = reconcile_payouts(&checked);
        assert_eq!((reconciled.n_checked, reconciled.n_matched), (7, 3));
        let kinds: Vec<(&str, DiscrepancyKind)> = reconciled
            .discrepancies
            .iter()
            .map(|d| (d.payout_id.as_str(), d.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("b", DiscrepancyKind::PayoutMissingInChannel),
                ("c", DiscrepancyKind::PayoutAmountMismatch),
                ("f", DiscrepancyKind::PayoutStatusMismatch),
                ("g", DiscrepancyKind::PayoutStatusMismatch),
            ]
        );
    }
}
