//! Reconciliation: paycenter's record of a channel account's day against the channel's bill.
//! A pure comparison; fetching the bill and recording the result happen around it.

use serde::{Deserialize, Serialize};

use crate::ids::{ChannelTradeNo, OrderNo, TradeNo};
use crate::money::Money;
use crate::payment::AttemptStatus;

/// The most bill lines one reconciliation takes.
pub const MAX_BILL_LINES: usize = 1_000_000;

/// A payment as paycenter recorded it.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordLine {
    pub trade_no: TradeNo,
    pub order_no: OrderNo,
    pub channel_trade_no: Option<ChannelTradeNo>,
    pub amount: Money,
    pub status: AttemptStatus,
    /// Paid on the reconciled day (only these are expected on the bill).
    pub paid_that_day: bool,
}

/// A paid payment as the channel's bill lists it.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BillLine {
    pub trade_no: TradeNo,
    pub channel_trade_no: ChannelTradeNo,
    pub amount: Money,
}

/// What kind of disagreement.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DiscrepancyKind {
    /// The bill lists a payment paycenter does not know.
    MissingInPaycenter,
    /// paycenter recorded a payment that day that the bill lacks.
    MissingInChannel,
    /// Both know it, with different amounts.
    AmountMismatch,
    /// The bill says paid; paycenter does not (pending, failed or closed).
    StatusMismatch,
}

/// One disagreement, with the three ids where known.
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

/// Compares the record with the bill, matching by `trade_no`: how many agree, and every
/// discrepancy, ordered by `trade_no`.
pub fn reconcile(record: &[RecordLine], bill: &[BillLine]) -> (usize, Vec<Discrepancy>) {
    let by_trade_no: std::collections::HashMap<&TradeNo, &RecordLine> =
        record.iter().map(|line| (&line.trade_no, line)).collect();
    let mut billed: std::collections::HashSet<&TradeNo> = std::collections::HashSet::new();
    let mut n_matched = 0;
    let mut discrepancies = Vec::new();
    for line in bill {
        billed.insert(&line.trade_no);
        let Some(ours) = by_trade_no.get(&line.trade_no) else {
            discrepancies.push(Discrepancy {
                kind: DiscrepancyKind::MissingInPaycenter,
                trade_no: line.trade_no.clone(),
                order_no: None,
                channel_trade_no: Some(line.channel_trade_no.clone()),
                paycenter_amount: None,
                channel_amount: Some(line.amount),
                paycenter_status: None,
            });
            continue;
        };
        let kind = if ours.status != AttemptStatus::Succeeded {
            Some(DiscrepancyKind::StatusMismatch)
        } else if ours.amount != line.amount {
            Some(DiscrepancyKind::AmountMismatch)
        } else {
            None
        };
        match kind {
            None => n_matched += 1,
            Some(kind) => discrepancies.push(Discrepancy {
                kind,
                trade_no: line.trade_no.clone(),
                order_no: Some(ours.order_no.clone()),
                channel_trade_no: Some(line.channel_trade_no.clone()),
                paycenter_amount: Some(ours.amount),
                channel_amount: Some(line.amount),
                paycenter_status: Some(ours.status),
            }),
        }
    }
    for ours in record
        .iter()
        .filter(|line| line.paid_that_day && !billed.contains(&line.trade_no))
    {
        discrepancies.push(Discrepancy {
            kind: DiscrepancyKind::MissingInChannel,
            trade_no: ours.trade_no.clone(),
            order_no: Some(ours.order_no.clone()),
            channel_trade_no: ours.channel_trade_no.clone(),
            paycenter_amount: Some(ours.amount),
            channel_amount: None,
            paycenter_status: Some(ours.status),
        });
    }
    discrepancies.sort_by(|a, b| a.trade_no.cmp(&b.trade_no));
    (n_matched, discrepancies)
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
        }
    }

    fn billed(n: u64, minor: i64) -> BillLine {
        BillLine {
            trade_no: trade(n),
            channel_trade_no: ChannelTradeNo::parse(&format!("C{n}")).unwrap(),
            amount: Money::from_minor(minor, Currency::CNY),
        }
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
        let kinds: Vec<(TradeNo, DiscrepancyKind)> = discrepancies
            .iter()
            .map(|d| (d.trade_no.clone(), d.kind))
            .collect();
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
}
