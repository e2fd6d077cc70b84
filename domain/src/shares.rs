//! How a payment's money is divided among the parties that hold it, decided once and recorded.
//!
//! A paid attempt of amount `A` is held by its parts: the platform's `fee`, each split
//! receiver's amount, and the merchant's `payable` (what is left). A refund gives back part of
//! `A`; which part of it comes out of which party is decided here when the refund is requested,
//! and the result is recorded in `refund.requested` (`shares`). Readers only add up recorded
//! amounts.
//!
//! **The rule** ([`divide`]): shares are taken on the running total. When refunds that are
//! pending or succeeded (this one included) add up to `T` of a payment of `A`, the fee and each
//! split should have given back `round_half_even(part × T / A)` in all; this refund's share of
//! each is that target minus what the part already gave back, kept between zero and what the
//! part still holds. The merchant's payable gives the rest. Where rounding would leave the
//! payable a share below zero or above what it still holds, the difference is moved to (or
//! taken from) the other parts one minor unit at a time in the fixed order fee, then splits in
//! the order the payment lists them, within what each holds. So the shares sum to the refund
//! exactly, none is negative, none exceeds what its part still holds, and a refund of
//! everything left (`T = A`) returns every part to zero. While rounding needs no correction
//! the rule is the one the first version applied in its ledger, so logs written before shares
//! were recorded replay to the balances they had.

use serde::{Deserialize, Serialize};

use crate::money::{Currency, Money};

/// One receiver's share of a payment, as the app asked for it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Split {
    /// Who receives it: a merchant id or any account name of the platform's.
    pub receiver: String,
    /// How much.
    pub amount: Money,
}

/// The amounts, in minor units of one currency, held by each part of one payment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Parts {
    /// The platform's fee.
    pub fee_minor: i64,
    /// Each split receiver's, in the payment's order.
    pub splits_minor: Vec<i64>,
    /// The merchant's net.
    pub payable_minor: i64,
}

impl Parts {
    /// The parts of a payment of `amount` with `fee` and `splits` (fee + Σ splits ≤ amount,
    /// which the domain checks when the attempt starts).
    pub fn of_payment(amount: Money, fee: Money, splits: &[Split]) -> Parts {
        let splits_minor: Vec<i64> = splits
            .iter()
            .map(|split| split.amount.amount_minor())
            .collect();
        let payable_minor =
            amount.amount_minor() - fee.amount_minor() - splits_minor.iter().sum::<i64>();
        assert!(payable_minor >= 0, "fee and splits never exceed the amount");
        Parts {
            fee_minor: fee.amount_minor(),
            splits_minor,
            payable_minor,
        }
    }

    /// Every part zero, with `n_splits` split parts.
    pub fn zero(n_splits: usize) -> Parts {
        Parts {
            fee_minor: 0,
            splits_minor: vec![0; n_splits],
            payable_minor: 0,
        }
    }

    /// The sum of all parts.
    pub fn total_minor(&self) -> i64 {
        self.fee_minor + self.splits_minor.iter().sum::<i64>() + self.payable_minor
    }

    /// Part by part `self + other`.
    pub fn plus(&self, other: &Parts) -> Parts {
        self.zip(other, |left, right| left + right)
    }

    /// Part by part `self − other`.
    pub fn minus(&self, other: &Parts) -> Parts {
        self.zip(other, |left, right| left - right)
    }

    /// True when no part is negative and none exceeds the same part of `bound`.
    pub fn within(&self, bound: &Parts) -> bool {
        self.splits_minor.len() == bound.splits_minor.len()
            && self
                .in_order()
                .zip(bound.in_order())
                .all(|(part, limit)| (0..=limit).contains(&part))
    }

    fn zip(&self, other: &Parts, op: impl Fn(i64, i64) -> i64) -> Parts {
        assert_eq!(
            self.splits_minor.len(),
            other.splits_minor.len(),
            "parts of one payment have the same splits"
        );
        Parts {
            fee_minor: op(self.fee_minor, other.fee_minor),
            splits_minor: self
                .splits_minor
                .iter()
                .zip(&other.splits_minor)
                .map(|(left, right)| op(*left, *right))
                .collect(),
            payable_minor: op(self.payable_minor, other.payable_minor),
        }
    }

    /// The parts in the rule's fixed order: fee, splits, payable.
    fn in_order(&self) -> impl Iterator<Item = i64> + '_ {
        std::iter::once(self.fee_minor)
            .chain(self.splits_minor.iter().copied())
            .chain(std::iter::once(self.payable_minor))
    }

    fn from_order(values: &[i64]) -> Parts {
        assert!(values.len() >= 2, "fee and payable are always there");
        Parts {
            fee_minor: values[0],
            splits_minor: values[1..values.len() - 1].to_vec(),
            payable_minor: values[values.len() - 1],
        }
    }

    /// As recorded in an event, with the receivers' names of the payment's splits.
    pub fn to_shares(&self, currency: Currency, splits: &[Split]) -> RefundShares {
        assert_eq!(splits.len(), self.splits_minor.len(), "one share per split");
        RefundShares {
            fee: Money::from_minor(self.fee_minor, currency),
            splits: splits
                .iter()
                .zip(&self.splits_minor)
                .map(|(split, minor)| Split {
                    receiver: split.receiver.clone(),
                    amount: Money::from_minor(*minor, currency),
                })
                .collect(),
            payable: Money::from_minor(self.payable_minor, currency),
        }
    }
}

/// A refund's shares as `refund.requested` records them. A share may be zero (split amounts
/// are positive; shares of them need not be).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundShares {
    /// Given back by the platform's fee.
    pub fee: Money,
    /// Given back by each split receiver, in the payment's order.
    pub splits: Vec<Split>,
    /// Given back by the merchant.
    pub payable: Money,
}

impl RefundShares {
    /// In minor units.
    pub fn to_parts(&self) -> Parts {
        Parts {
            fee_minor: self.fee.amount_minor(),
            splits_minor: self
                .splits
                .iter()
                .map(|split| split.amount.amount_minor())
                .collect(),
            payable_minor: self.payable.amount_minor(),
        }
    }
}

/// Divides a refund of `refund_minor` of a payment whose parts are `whole`, after refunds
/// (pending or succeeded) that took `given` from them, by the rule in the module
/// documentation. The caller guarantees `given` within `whole` and
/// `0 ≤ refund_minor ≤ whole − given`; the answer sums to `refund_minor` and stays within
/// `whole − given`.
pub fn divide(whole: &Parts, given: &Parts, refund_minor: i64) -> Parts {
    let holds = whole.minus(given);
    assert!(
        given.within(whole),
        "refunds never took more than a part held: {given:?} of {whole:?}"
    );
    assert!(
        (0..=holds.total_minor()).contains(&refund_minor),
        "a refund never exceeds what is still held: {refund_minor} > {}",
        holds.total_minor()
    );
    let amount_minor = whole.total_minor();
    if refund_minor == 0 || amount_minor == 0 {
        return Parts::zero(whole.splits_minor.len());
    }
    let total_after = given.total_minor() + refund_minor;
    // Fee and splits (every part but the payable), in the fixed order.
    let others_whole: Vec<i64> = whole
        .in_order()
        .take(whole.splits_minor.len() + 1)
        .collect();
    let others_given: Vec<i64> = given
        .in_order()
        .take(whole.splits_minor.len() + 1)
        .collect();
    let mut others: Vec<i64> = others_whole
        .iter()
        .zip(&others_given)
        .map(|(part_whole, part_given)| {
            let target = round_half_even(*part_whole, total_after, amount_minor);
            (target - part_given).clamp(0, part_whole - part_given)
        })
        .collect();
    let payable_holds = holds.payable_minor;
    let mut payable = refund_minor - others.iter().sum::<i64>();
    // Rounding may leave the payable too much or too little: move the difference.
    for (part_idx, share) in others.iter_mut().enumerate() {
        let part_holds = others_whole[part_idx] - others_given[part_idx];
        if payable > payable_holds {
            let moved = (payable - payable_holds).min(part_holds - *share);
            *share += moved;
            payable -= moved;
        } else if payable < 0 {
            let moved = (-payable).min(*share);
            *share -= moved;
            payable += moved;
        }
    }
    others.push(payable);
    let parts = Parts::from_order(&others);
    assert_eq!(
        parts.total_minor(),
        refund_minor,
        "shares sum to the refund"
    );
    assert!(parts.within(&holds), "no share exceeds its holding");
    parts
}

/// `value × numerator / denominator` rounded half to even, in integers (`denominator > 0`).
fn round_half_even(value: i64, numerator: i64, denominator: i64) -> i64 {
    assert!(denominator > 0 && value >= 0 && numerator >= 0);
    let exact = i128::from(value) * i128::from(numerator);
    let denominator = i128::from(denominator);
    let quotient = exact / denominator;
    let twice_remainder = 2 * (exact % denominator);
    let rounded =
        if twice_remainder > denominator || (twice_remainder == denominator && quotient % 2 == 1) {
            quotient + 1
        } else {
            quotient
        };
    i64::try_from(rounded).expect("a share of an amount fits i64")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(fee: i64, splits: &[i64], payable: i64) -> Parts {
        Parts {
            fee_minor: fee,
            splits_minor: splits.to_vec(),
            payable_minor: payable,
        }
    }

    #[test]
    fn two_equal_splits_and_nothing_else() {
        // The sequence that once drove the merchant's payable below zero.
        let whole = parts(0, &[1, 1], 0);
        let first = divide(&whole, &Parts::zero(2), 1);
        assert_eq!(first, parts(0, &[1, 0], 0));
        let second = divide(&whole, &first, 1);
        assert_eq!(second, parts(0, &[0, 1], 0));
    }

    #[test]
    fn shares_follow_the_running_total() {
        // 100.00 with fee 0.60 and splits 5.00 + 20.00: 30.00, then 33.33.
        let whole = parts(60, &[500, 2_000], 7_440);
        let first = divide(&whole, &Parts::zero(2), 3_000);
        assert_eq!(first, parts(18, &[150, 600], 2_232));
        // Running total 63.33: fee round(37.998) = 38, splits 317 and 1267 in all.
        let second = divide(&whole, &first, 3_333);
        assert_eq!(second, parts(20, &[167, 667], 2_479));
        // One minor unit: every target rounds to what was given, the payable gives it.
        assert_eq!(divide(&whole, &Parts::zero(2), 1), parts(0, &[0, 0], 1));
    }

    #[test]
    fn rounding_that_would_overdraw_the_payable_moves_to_the_other_parts() {
        // Fee 1 and split 1 of 3, payable 1: a refund of 1 rounds both targets to 0 (1/3).
        let whole = parts(1, &[1], 1);
        assert_eq!(divide(&whole, &Parts::zero(1), 1), parts(0, &[0], 1));
        // Payable 0: the fee gives first, in the fixed order.
        let whole = parts(1, &[1], 0);
        assert_eq!(divide(&whole, &Parts::zero(1), 1), parts(1, &[0], 0));
        // Targets rounding up (half to even, 1.5 → 2 each) would take 4 of a refund of 3.
        let whole = parts(3, &[3], 0);
        assert_eq!(divide(&whole, &Parts::zero(1), 3), parts(1, &[2], 0));
    }

    #[test]
    fn everything_left_is_everything() {
        let whole = parts(7, &[3, 0, 11], 5);
        let given = parts(2, &[1, 0, 4], 1);
        let rest = whole.minus(&given);
        assert_eq!(divide(&whole, &given, rest.total_minor()), rest);
        assert_eq!(divide(&whole, &given, 0), Parts::zero(3));
    }

    #[test]
    fn rounds_half_to_even() {
        assert_eq!(round_half_even(5, 1, 2), 2);
        assert_eq!(round_half_even(7, 1, 2), 4);
        assert_eq!(round_half_even(60, 5_000, 10_000), 30);
        assert_eq!(round_half_even(2_000, 6_333, 10_000), 1_267);
    }
}
