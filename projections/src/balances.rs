//! Double-entry balances, derived from payment events.
//!
//! Every account belongs to one merchant and one currency:
//! - `clearing:{channel_account_id}`: what the channel holds for the merchant (debit-normal);
//! - `payable`: what paycenter owes the merchant, net of fee and splits (credit-normal);
//! - `fee`: the platform's fee taken from the merchant's payments (credit-normal);
//! - `split:{receiver}`: what is owed to each split receiver (credit-normal).
//!
//! Postings:
//! - a payment succeeds (amount A, fee F, splits S_i): debit clearing A; credit fee F, each
//!   split S_i, payable A − F − ΣS_i. Late and duplicate payments post too: the money moved;
//! - a refund succeeds (R, taking the payment's refunded total to T): the fee and each split
//!   give back their share of T, `round_half_even(F × T / A) − already given back`, the
//!   payable gives back the rest of R, and clearing is credited R. Shares are taken on the
//!   running total, so a full refund (T = A) returns every account exactly to zero, and a
//!   duplicate payment refunded in full nets to zero;
//! - pending and failed refunds post nothing.
//!
//! Every entry balances (Σ debits = Σ credits per currency), asserted when posted, and no
//! account's balance goes below zero.

use std::collections::{BTreeMap, HashMap};

use paycenter_domain::envelope::RecordedEvent;
use paycenter_domain::events::{DecodeError, Event};
use paycenter_domain::ids::{MerchantId, RefundId, TradeNo};
use paycenter_domain::payment::Split;
use paycenter_domain::{Currency, Money};
use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// One line of an entry: an amount on one side of one account.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Posting<'a> {
    account: &'a str,
    debit_minor: i64,
    credit_minor: i64,
}

impl<'a> Posting<'a> {
    fn debit(account: &'a str, minor: i64) -> Posting<'a> {
        Posting {
            account,
            debit_minor: minor,
            credit_minor: 0,
        }
    }

    fn credit(account: &'a str, minor: i64) -> Posting<'a> {
        Posting {
            account,
            debit_minor: 0,
            credit_minor: minor,
        }
    }
}

const PAYABLE: &str = "payable";
const FEE: &str = "fee";

/// How an account's balance is read.
fn is_debit_normal(account: &str) -> bool {
    account.starts_with("clearing:")
}

/// What the ledger keeps of an attempt to post it: account names are built once here, so
/// posting allocates nothing.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Terms {
    merchant_id: MerchantId,
    clearing_account: String,
    amount: Money,
    fee: Money,
    /// `(split:{receiver}, amount in minor units)`.
    splits: Vec<(String, i64)>,
    refunded_minor: i64,
    fee_returned_minor: i64,
    splits_returned_minor: Vec<i64>,
}

/// Balances of one merchant in one currency, by account name.
type Accounts = HashMap<String, i64>;

/// The balances read model.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct Ledger {
    /// Balances in minor units, on each account's normal side.
    balances: HashMap<MerchantId, BTreeMap<Currency, Accounts>>,
    /// Σ debits and Σ credits posted, per currency.
    totals: BTreeMap<Currency, (i64, i64)>,
    /// Attempts started and not paid yet.
    started: HashMap<TradeNo, Terms>,
    /// Paid attempts.
    paid: HashMap<TradeNo, Terms>,
    /// Refund amounts as requested, until they succeed.
    refund_amounts: HashMap<RefundId, Money>,
}

/// The fields of `payment.attempt_started` the ledger reads; serde skips the rest.
#[derive(Deserialize)]
struct StartedView {
    trade_no: TradeNo,
    merchant_id: MerchantId,
    channel_account_id: String,
    amount: Money,
    fee: Money,
    splits: Vec<Split>,
}

/// The field of `payment.succeeded` the ledger reads.
#[derive(Deserialize)]
struct TradeView {
    trade_no: TradeNo,
}

/// The fields of `refund.*` the ledger reads.
#[derive(Deserialize)]
struct RefundView {
    refund_id: RefundId,
    trade_no: TradeNo,
    #[serde(default)]
    amount: Option<Money>,
}

/// `value × numerator / denominator`, rounded half-even to a whole minor unit.
fn share(value: i64, numerator: i64, denominator: i64) -> i64 {
    assert!(denominator > 0);
    let exact = Decimal::from(value) * Decimal::from(numerator) / Decimal::from(denominator);
    exact
        .round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven)
        .try_into()
        .expect("shares of amounts fit i64")
}

impl Ledger {
    /// Folds one event.
    pub fn apply(&mut self, event: &Event) {
        match event {
            Event::PaymentAttemptStarted(started) => self.on_started(
                &started.trade_no,
                &started.merchant_id,
                started.channel_account_id.as_str(),
                started.amount,
                started.fee,
                started
                    .splits
                    .iter()
                    .map(|split| (split.receiver.as_str(), split.amount.amount_minor())),
            ),
            Event::PaymentSucceeded(succeeded) => self.on_paid(&succeeded.trade_no),
            Event::RefundRequested(requested) => {
                self.on_refund_requested(&requested.refund_id, requested.amount)
            }
            Event::RefundFailed(failed) => self.on_refund_failed(&failed.refund_id),
            Event::RefundSucceeded(succeeded) => {
                self.on_refund_succeeded(&succeeded.trade_no, &succeeded.refund_id)
            }
            _ => {}
        }
    }

    /// Folds one stored event, decoding only the fields the ledger reads and skipping the
    /// types it does not read without decoding them: what a rebuild of balances alone runs.
    pub fn apply_recorded(&mut self, recorded: &RecordedEvent) -> Result<(), DecodeError> {
        let fail = |error: serde_json::Error| DecodeError {
            global_position: recorded.global_position,
            event_type: recorded.event_type.clone(),
            reason: error.to_string(),
        };
        match recorded.event_type.as_str() {
            "payment.attempt_started" => {
                let started: StartedView = serde_json::from_str(&recorded.payload).map_err(fail)?;
                self.on_started(
                    &started.trade_no,
                    &started.merchant_id,
                    &started.channel_account_id,
                    started.amount,
                    started.fee,
                    started
                        .splits
                        .iter()
                        .map(|split| (split.receiver.as_str(), split.amount.amount_minor())),
                );
            }
            "payment.succeeded" => self.on_paid(
                &serde_json::from_str::<TradeView>(&recorded.payload)
                    .map_err(fail)?
                    .trade_no,
            ),
            "refund.requested" => {
                let requested: RefundView =
                    serde_json::from_str(&recorded.payload).map_err(fail)?;
                self.on_refund_requested(
                    &requested.refund_id,
                    requested.amount.expect("refund requests carry an amount"),
                );
            }
            "refund.failed" => self.on_refund_failed(
                &serde_json::from_str::<RefundView>(&recorded.payload)
                    .map_err(fail)?
                    .refund_id,
            ),
            "refund.succeeded" => {
                let succeeded: RefundView =
                    serde_json::from_str(&recorded.payload).map_err(fail)?;
                self.on_refund_succeeded(&succeeded.trade_no, &succeeded.refund_id);
            }
            _ => {}
        }
        Ok(())
    }

    fn on_started<'a>(
        &mut self,
        trade_no: &TradeNo,
        merchant_id: &MerchantId,
        channel_account_id: &str,
        amount: Money,
        fee: Money,
        splits: impl ExactSizeIterator<Item = (&'a str, i64)>,
    ) {
        let n_splits = splits.len();
        let terms = Terms {
            merchant_id: merchant_id.clone(),
            clearing_account: format!("clearing:{channel_account_id}"),
            amount,
            fee,
            splits: splits
                .map(|(receiver, minor)| (format!("split:{receiver}"), minor))
                .collect(),
            refunded_minor: 0,
            fee_returned_minor: 0,
            splits_returned_minor: vec![0; n_splits],
        };
        self.started.insert(trade_no.clone(), terms);
    }

    fn on_paid(&mut self, trade_no: &TradeNo) {
        let terms = self
            .started
            .remove(trade_no)
            .expect("payments succeed after they start");
        let split_total: i64 = terms.splits.iter().map(|(_, minor)| minor).sum();
        let payable = terms.amount.amount_minor() - terms.fee.amount_minor() - split_total;
        let mut postings = Vec::with_capacity(3 + terms.splits.len());
        postings.push(Posting::debit(
            &terms.clearing_account,
            terms.amount.amount_minor(),
        ));
        postings.push(Posting::credit(PAYABLE, payable));
        postings.push(Posting::credit(FEE, terms.fee.amount_minor()));
        postings.extend(
            terms
                .splits
                .iter()
                .map(|(account, minor)| Posting::credit(account, *minor)),
        );
        Self::post(
            &mut self.balances,
            &mut self.totals,
            &terms.merchant_id,
            terms.amount.currency(),
            &postings,
        );
        self.paid.insert(trade_no.clone(), terms);
    }

    fn on_refund_requested(&mut self, refund_id: &RefundId, amount: Money) {
        self.refund_amounts.insert(refund_id.clone(), amount);
    }

    fn on_refund_failed(&mut self, refund_id: &RefundId) {
        self.refund_amounts.remove(refund_id);
    }

    fn on_refund_succeeded(&mut self, trade_no: &TradeNo, refund_id: &RefundId) {
        let amount = self
            .refund_amounts
            .remove(refund_id)
            .expect("refunds succeed after they are requested");
        self.post_refund(trade_no, amount);
    }

    fn post_refund(&mut self, trade_no: &TradeNo, amount: Money) {
        let terms = self
            .paid
            .get_mut(trade_no)
            .expect("only paid attempts are refunded");
        let refund_minor = amount.amount_minor();
        terms.refunded_minor += refund_minor;
        assert!(
            terms.refunded_minor <= terms.amount.amount_minor(),
            "refunds never exceed the payment"
        );
        let total = terms.amount.amount_minor();
        let fee_due = share(terms.fee.amount_minor(), terms.refunded_minor, total);
        let fee_part = fee_due - terms.fee_returned_minor;
        terms.fee_returned_minor = fee_due;
        let mut postings = Vec::with_capacity(3 + terms.splits.len());
        postings.push(Posting::credit(&terms.clearing_account, refund_minor));
        postings.push(Posting::debit(FEE, fee_part));
        let mut split_parts_total = 0;
        for (split_idx, (account, split_minor)) in terms.splits.iter().enumerate() {
            let due = share(*split_minor, terms.refunded_minor, total);
            let part = due - terms.splits_returned_minor[split_idx];
            terms.splits_returned_minor[split_idx] = due;
            split_parts_total += part;
            postings.push(Posting::debit(account, part));
        }
        postings.push(Posting::debit(
            PAYABLE,
            refund_minor - fee_part - split_parts_total,
        ));
        Self::post(
            &mut self.balances,
            &mut self.totals,
            &terms.merchant_id,
            amount.currency(),
            &postings,
        );
    }

    /// Posts one balanced entry. A broken balance is a bug: it crashes here, at the event.
    fn post(
        balances: &mut HashMap<MerchantId, BTreeMap<Currency, Accounts>>,
        totals: &mut BTreeMap<Currency, (i64, i64)>,
        merchant_id: &MerchantId,
        currency: Currency,
        postings: &[Posting<'_>],
    ) {
        let debits: i64 = postings.iter().map(|posting| posting.debit_minor).sum();
        let credits: i64 = postings.iter().map(|posting| posting.credit_minor).sum();
        assert_eq!(debits, credits, "every entry balances: {postings:?}");
        let total = totals.entry(currency).or_default();
        total.0 += debits;
        total.1 += credits;
        // Allocates only the first time a merchant, currency or account appears.
        if !balances.contains_key(merchant_id) {
            balances.insert(merchant_id.clone(), BTreeMap::new());
        }
        let accounts = balances
            .get_mut(merchant_id)
            .expect("just ensured")
            .entry(currency)
            .or_default();
        for posting in postings {
            assert!(
                posting.debit_minor >= 0 && posting.credit_minor >= 0,
                "postings are one-sided amounts"
            );
            if posting.debit_minor == 0 && posting.credit_minor == 0 {
                continue;
            }
            let delta = if is_debit_normal(posting.account) {
                posting.debit_minor - posting.credit_minor
            } else {
                posting.credit_minor - posting.debit_minor
            };
            let balance = match accounts.get_mut(posting.account) {
                Some(balance) => balance,
                None => accounts.entry(posting.account.to_owned()).or_default(),
            };
            *balance += delta;
            assert!(
                *balance >= 0,
                "account {} of {merchant_id} went below zero",
                posting.account
            );
        }
    }

    /// A merchant's accounts, sorted: `(account, currency, balance in minor units)`.
    pub fn merchant_balances(&self, merchant_id: &MerchantId) -> Vec<(String, Currency, i64)> {
        let Some(by_currency) = self.balances.get(merchant_id) else {
            return Vec::new();
        };
        let mut rows: Vec<(String, Currency, i64)> = by_currency
            .iter()
            .flat_map(|(currency, accounts)| {
                accounts
                    .iter()
                    .map(|(account, balance)| (account.clone(), *currency, *balance))
            })
            .collect();
        rows.sort();
        rows
    }

    /// Σ debits and Σ credits per currency; equal in a sound ledger.
    pub fn totals(&self) -> &BTreeMap<Currency, (i64, i64)> {
        &self.totals
    }

    /// Checks what must hold of the whole ledger: Σ debits = Σ credits per currency, and for
    /// each merchant, Σ debit-normal balances = Σ credit-normal balances per currency.
    pub fn check(&self) -> Result<(), String> {
        for (currency, (debits, credits)) in &self.totals {
            if debits != credits {
                return Err(format!("{currency}: debits {debits} ≠ credits {credits}"));
            }
        }
        for (merchant_id, by_currency) in &self.balances {
            for (currency, accounts) in by_currency {
                let (assets, liabilities) =
                    accounts
                        .iter()
                        .fold((0, 0), |(assets, liabilities), (account, balance)| {
                            if is_debit_normal(account) {
                                (assets + balance, liabilities)
                            } else {
                                (assets, liabilities + balance)
                            }
                        });
                if assets != liabilities {
                    return Err(format!("merchant {merchant_id} {currency}: clearing {assets} ≠ payable + fee + splits {liabilities}"));
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::share;

    #[test]
    fn shares_round_half_even() {
        assert_eq!(share(60, 5_000, 10_000), 30);
        assert_eq!(share(5, 1, 2), 2); // 2.5 → 2
        assert_eq!(share(7, 1, 2), 4); // 3.5 → 4
        assert_eq!(share(60, 10_000, 10_000), 60);
    }
}
