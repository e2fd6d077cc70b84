//! Double-entry balances, derived from payment events.
//!
//! Every account belongs to one merchant and one currency:
//! - `clearing:{channel_account_id}`: what the channel holds for the merchant (debit-normal);
//! - `payable`: what paycenter owes the merchant, net of fee and splits (credit-normal);
//! - `fee`: the platform's fee taken from the merchant's payments (credit-normal);
//! - `split:{receiver}`: what is owed to each split receiver and not yet paid to it at the
//!   channel (credit-normal);
//! - `shared:{receiver}`: what was paid to each receiver at the channel and not given back
//!   (credit-normal).
//!
//! Postings:
//! - a payment succeeds (amount A, fee F, splits S_i): debit clearing A; credit fee F, each
//!   split S_i, payable A − F − ΣS_i. Late and duplicate payments post too: the money moved;
//! - a refund succeeds: clearing is credited its amount and each part (fee, every split,
//!   payable) is debited the share `refund.requested` recorded for it. The ledger divides
//!   nothing: the domain decided the shares (`paycenter_domain::shares`). Refunds recorded
//!   before shares were are divided when their request is folded, by the same rule over what
//!   the ledger knows each part still holds;
//! - a share paid at the channel (`payment.shared`): each line moves from `split:{r}` to
//!   `shared:{r}`; a receiver giving its share of a refund back (`payment.share_returned`)
//!   moves it from `shared:{r}` back to `split:{r}`, which the refund then debits. A share
//!   asked for and not yet paid stays in `split:{r}` (pending); one that failed leaves it there;
//! - a payout succeeds (`payout.succeeded`, amount P): debit `payable` P, credit
//!   `clearing:{channel_account_id}` P, and the memo `paid_out` grows by P. `payable` and
//!   `clearing:*` may then go below zero by at most `paid_out` (a refund after a payout);
//! - pending and failed refunds post nothing; reports that contradicted their attempt
//!   (`payment.anomaly_detected`) post nothing either: the order was not paid by them.
//!
//! Every entry balances (Σ debits = Σ credits per currency) and leaves no account below zero.
//! Both are checked before anything is changed: an entry that would break them is refused
//! whole with a [`LedgerError`], which stops the balances projection at that event.

use std::collections::BTreeMap;
use std::sync::Arc;

use paycenter_domain::envelope::RecordedEvent;
use paycenter_domain::events::{DecodeError, Event};
use paycenter_domain::ids::{MerchantId, RefundId, TradeNo};
use paycenter_domain::payment::Split;
use paycenter_domain::shares::{self, Parts, RefundShares};
use paycenter_domain::{Currency, Money};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::tables::{Backing, Map, Resident, Retired, TableError, Write};

/// An entry the ledger refused: a broken invariant, so a bug upstream (the domain promised
/// shares within what each part holds). Nothing of the entry was posted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("ledger invariant broken (a bug): {0}")]
pub struct LedgerError(pub String);

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
/// A memo, not an account of any entry: what was paid out of `payable` so far. Payouts post
/// `payable` against `clearing:{account}`; a refund after a payout may take back money the
/// merchant already received, so `payable` and `clearing:*` may go below zero by this much
/// (and no further).
const PAID_OUT: &str = "paid_out";
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
    /// `split:{receiver}` for each split, in the payment's order.
    split_accounts: Vec<String>,
    /// What each part holds of the payment.
    whole: Parts,
}

/// What the ledger keeps of one attempt, in one row from its start on: a payment's start and
/// its success, folded in one batch, write the row once.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Attempt {
    terms: Terms,
    paid: bool,
    /// Once paid: what its pending and succeeded refunds take from each part; `None` while
    /// that is nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    committed: Option<Parts>,
}

impl Attempt {
    /// What its pending and succeeded refunds take from each part.
    fn committed(&self) -> Parts {
        self.committed
            .clone()
            .unwrap_or_else(|| Parts::zero(self.terms.split_accounts.len()))
    }
}

/// Balances of one merchant in one currency, by account name (sorted: a stable encoding).
type Accounts = BTreeMap<String, i64>;

/// Balances of one merchant, by currency.
type MerchantAccounts = BTreeMap<Currency, Accounts>;

/// The balances read model. Balances are few (per merchant and account) and stay in memory;
/// what grows with history (the terms of every attempt, pending refunds) is in [`Map`]s.
#[derive(Debug, Default)]
pub struct Ledger {
    /// Balances in minor units, on each account's normal side.
    balances: Resident<MerchantId, MerchantAccounts>,
    /// Σ debits and Σ credits posted, per currency.
    totals: BTreeMap<Currency, (i64, i64)>,
    /// Every attempt started: its terms, whether it was paid and what its refunds take.
    attempts: Map<TradeNo, Attempt>,
    /// Refunds requested and not failed, with their shares, until they succeed.
    refunds: Map<RefundId, PendingRefund>,
}

/// A refund the ledger waits to see succeed.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PendingRefund {
    trade_no: TradeNo,
    currency: Currency,
    shares: Parts,
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
    #[serde(default)]
    shares: Option<RefundShares>,
}

/// Committed terms and refunds kept in memory besides the file (see `tables::Map`).
const RECENT_TERMS: usize = 4_096;

/// Totals per currency, as the model's scalars keep them.
pub type Totals = BTreeMap<Currency, (i64, i64)>;

impl Ledger {
    /// Spaces the ledger takes in a file, from the first one `attach` is given.
    pub const SPACES: u16 = 3;

    /// Keeps the ledger in `backing` from `first_space` on (three spaces), loading the
    /// balances; `totals` are what the file's checkpoint recorded; `recent_capacity` committed
    /// rows of each map stay in memory.
    pub fn attach(
        &mut self,
        backing: &Arc<Backing>,
        first_space: u16,
        totals: Totals,
        recent_capacity: usize,
    ) -> Result<(), TableError> {
        self.balances.attach(backing, first_space)?;
        self.attempts
            .attach(backing, first_space + 1, recent_capacity);
        self.refunds
            .attach(backing, first_space + 2, recent_capacity);
        self.totals = totals;
        Ok(())
    }

    /// Moves the changes since the last commit into `writes`.
    pub fn drain_into(&mut self, writes: &mut Vec<Write>) {
        self.balances.drain_into(writes);
        self.attempts.drain_into(writes);
        self.refunds.drain_into(writes);
    }

    /// See `ReadModel::stage`.
    pub fn stage(&mut self) {
        self.balances.stage();
        self.attempts.stage();
        self.refunds.stage();
    }

    /// See `ReadModel::finish_commit`.
    pub fn finish_commit(&mut self) -> Retired {
        self.balances.finish_commit();
        let mut retired = self.attempts.finish_commit();
        retired.append(self.refunds.finish_commit());
        retired
    }

    /// Feeds everything the ledger holds, in a canonical order, to `visit` (for digests).
    pub fn visit_all(&self, visit: &mut dyn FnMut(&[u8], &str)) -> Result<(), TableError> {
        self.balances.visit_all(visit);
        self.attempts.visit_all(visit)?;
        self.refunds.visit_all(visit)?;
        visit(b"totals", &format!("{:?}", self.totals));
        Ok(())
    }

    /// Folds one event. An error leaves the ledger as it was before the event.
    pub fn apply(&mut self, event: &Event) -> Result<(), LedgerError> {
        match event {
            Event::PaymentAttemptStarted(started) => {
                self.on_started(
                    &started.trade_no,
                    &started.merchant_id,
                    started.channel_account_id.as_str(),
                    started.amount,
                    started.fee,
                    &started.splits,
                );
                Ok(())
            }
            Event::PaymentSucceeded(succeeded) => self.on_paid(&succeeded.trade_no),
            Event::RefundRequested(requested) => self.on_refund_requested(
                &requested.refund_id,
                &requested.trade_no,
                requested.amount,
                requested.shares.as_ref(),
            ),
            Event::RefundFailed(failed) => self.on_refund_failed(&failed.refund_id),
            Event::RefundSucceeded(succeeded) => self.on_refund_succeeded(&succeeded.refund_id),
            Event::PaymentShared(shared) => {
                self.on_share_moved(&shared.merchant_id, &shared.lines, "split:", "shared:")
            }
            Event::PaymentShareReturned(returned) => {
                self.on_share_moved(&returned.merchant_id, &returned.lines, "shared:", "split:")
            }
            Event::PayoutSucceeded(paid) => self.on_paid_out(paid),
            _ => Ok(()),
        }
    }

    /// A payout paid: payable against the account's clearing, and the memo of what was paid out.
    fn on_paid_out(
        &mut self,
        paid: &paycenter_domain::events::PayoutSucceeded,
    ) -> Result<(), LedgerError> {
        let currency = paid.amount.currency();
        let minor = paid.amount.amount_minor();
        let clearing = format!("clearing:{}", paid.channel_account_id);
        // The memo first: the payout's own posting may take payable to zero and past it by
        // what was already paid out, never further (earned payable is never below zero).
        *self
            .balances
            .get_or_default(&paid.merchant_id)
            .entry(currency)
            .or_default()
            .entry(PAID_OUT.to_owned())
            .or_default() += minor;
        let posted = Self::post(
            &mut self.balances,
            &mut self.totals,
            &paid.merchant_id,
            currency,
            &[
                Posting::debit(PAYABLE, minor),
                Posting::credit(&clearing, minor),
            ],
        );
        if posted.is_err() {
            // Refused whole: the memo goes back too.
            if let Some(memo) = self
                .balances
                .get_mut(&paid.merchant_id)
                .and_then(|by_currency| by_currency.get_mut(&currency))
                .and_then(|accounts| accounts.get_mut(PAID_OUT))
            {
                *memo -= minor;
            }
        }
        posted
    }

    /// What a merchant earned in `currency`: its payable as payments and refunds left it, before
    /// any payout (`payable + paid_out`); never below zero.
    pub fn earned_payable(&self, merchant_id: &MerchantId, currency: Currency) -> i64 {
        self.balances
            .get(merchant_id)
            .and_then(|by_currency| by_currency.get(&currency))
            .map_or(0, |accounts| {
                accounts.get(PAYABLE).copied().unwrap_or(0)
                    + accounts.get(PAID_OUT).copied().unwrap_or(0)
            })
    }

    /// Each line's amount from `{from}{receiver}` to `{to}{receiver}`: a share paid at the
    /// channel, or given back.
    fn on_share_moved(
        &mut self,
        merchant_id: &MerchantId,
        lines: &[Split],
        from: &str,
        to: &str,
    ) -> Result<(), LedgerError> {
        let Some(currency) = lines.first().map(|line| line.amount.currency()) else {
            return Ok(());
        };
        let accounts: Vec<(String, String, i64)> = lines
            .iter()
            .map(|line| {
                (
                    format!("{from}{}", line.receiver),
                    format!("{to}{}", line.receiver),
                    line.amount.amount_minor(),
                )
            })
            .collect();
        let mut postings = Vec::with_capacity(accounts.len() * 2);
        for (debited, credited, minor) in &accounts {
            postings.push(Posting::debit(debited, *minor));
            postings.push(Posting::credit(credited, *minor));
        }
        Self::post(
            &mut self.balances,
            &mut self.totals,
            merchant_id,
            currency,
            &postings,
        )
    }

    /// Folds one stored event, decoding only the fields the ledger reads and skipping the
    /// types it does not read without decoding them: what a rebuild of balances alone runs.
    pub fn apply_recorded(&mut self, recorded: &RecordedEvent) -> Result<(), LedgerError> {
        let fail = |error: serde_json::Error| {
            LedgerError(
                DecodeError {
                    global_position: recorded.global_position,
                    event_type: recorded.event_type.clone(),
                    reason: error.to_string(),
                }
                .to_string(),
            )
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
                    &started.splits,
                );
                Ok(())
            }
            "payment.succeeded" => self.on_paid(
                &serde_json::from_str::<TradeView>(&recorded.payload)
                    .map_err(fail)?
                    .trade_no,
            ),
            "refund.requested" => {
                let requested: RefundView =
                    serde_json::from_str(&recorded.payload).map_err(fail)?;
                let amount = requested
                    .amount
                    .ok_or_else(|| LedgerError("a refund request without an amount".into()))?;
                self.on_refund_requested(
                    &requested.refund_id,
                    &requested.trade_no,
                    amount,
                    requested.shares.as_ref(),
                )
            }
            "refund.failed" => self.on_refund_failed(
                &serde_json::from_str::<RefundView>(&recorded.payload)
                    .map_err(fail)?
                    .refund_id,
            ),
            "refund.succeeded" => self.on_refund_succeeded(
                &serde_json::from_str::<RefundView>(&recorded.payload)
                    .map_err(fail)?
                    .refund_id,
            ),
            "payment.shared" | "payment.share_returned" | "payout.succeeded" => self
                .apply(&Event::decode(recorded).map_err(|error| LedgerError(error.to_string()))?),
            _ => Ok(()),
        }
    }

    fn on_started(
        &mut self,
        trade_no: &TradeNo,
        merchant_id: &MerchantId,
        channel_account_id: &str,
        amount: Money,
        fee: Money,
        splits: &[Split],
    ) {
        let terms = Terms {
            merchant_id: merchant_id.clone(),
            clearing_account: format!("clearing:{channel_account_id}"),
            amount,
            fee,
            split_accounts: splits
                .iter()
                .map(|split| format!("split:{}", split.receiver))
                .collect(),
            whole: Parts::of_payment(amount, fee, splits),
        };
        self.attempts.insert(
            trade_no,
            Attempt {
                terms,
                paid: false,
                committed: None,
            },
        );
    }

    fn on_paid(&mut self, trade_no: &TradeNo) -> Result<(), LedgerError> {
        let mut attempt = self
            .attempts
            .get(trade_no)
            .filter(|attempt| !attempt.paid)
            .ok_or_else(|| {
                LedgerError(format!(
                    "payment {trade_no} succeeded before it started, or twice"
                ))
            })?;
        {
            let terms = &attempt.terms;
            let mut postings = Vec::with_capacity(3 + terms.split_accounts.len());
            postings.push(Posting::debit(
                &terms.clearing_account,
                terms.amount.amount_minor(),
            ));
            postings.push(Posting::credit(PAYABLE, terms.whole.payable_minor));
            postings.push(Posting::credit(FEE, terms.whole.fee_minor));
            postings.extend(
                terms
                    .split_accounts
                    .iter()
                    .zip(&terms.whole.splits_minor)
                    .map(|(account, minor)| Posting::credit(account, *minor)),
            );
            Self::post(
                &mut self.balances,
                &mut self.totals,
                &terms.merchant_id,
                terms.amount.currency(),
                &postings,
            )?;
        }
        attempt.paid = true;
        self.attempts.insert(trade_no, attempt);
        Ok(())
    }

    fn on_refund_requested(
        &mut self,
        refund_id: &RefundId,
        trade_no: &TradeNo,
        amount: Money,
        recorded: Option<&RefundShares>,
    ) -> Result<(), LedgerError> {
        let mut attempt = self
            .attempts
            .get(trade_no)
            .filter(|attempt| attempt.paid)
            .ok_or_else(|| LedgerError(format!("refund {refund_id} of unpaid {trade_no}")))?;
        let terms = &attempt.terms;
        let committed = attempt.committed();
        let holdings = terms.whole.minus(&committed);
        if amount.currency() != terms.amount.currency()
            || !(0..=holdings.total_minor()).contains(&amount.amount_minor())
        {
            return Err(LedgerError(format!(
                "refund {refund_id} of {amount} exceeds what payment {trade_no} still holds"
            )));
        }
        let shares = match recorded {
            Some(recorded) => recorded.to_parts(),
            None => shares::divide(&terms.whole, &committed, amount.amount_minor()),
        };
        if shares.total_minor() != amount.amount_minor() || !shares.within(&holdings) {
            return Err(LedgerError(format!(
                "refund {refund_id}: shares {shares:?} do not divide {amount} within {holdings:?}"
            )));
        }
        attempt.committed = Some(committed.plus(&shares));
        self.attempts.insert(trade_no, attempt);
        self.refunds.insert(
            refund_id,
            PendingRefund {
                trade_no: trade_no.clone(),
                currency: amount.currency(),
                shares,
            },
        );
        Ok(())
    }

    fn on_refund_failed(&mut self, refund_id: &RefundId) -> Result<(), LedgerError> {
        // The refund of an anomaly's money was never the ledger's: nothing to undo.
        let Some(refund) = self.refunds.remove(refund_id) else {
            return Ok(());
        };
        let mut attempt = self
            .attempts
            .get(&refund.trade_no)
            .expect("refunds belong to paid attempts");
        attempt.committed = Some(attempt.committed().minus(&refund.shares));
        self.attempts.insert(&refund.trade_no, attempt);
        Ok(())
    }

    fn on_refund_succeeded(&mut self, refund_id: &RefundId) -> Result<(), LedgerError> {
        let Some(refund) = self.refunds.get(refund_id) else {
            return Ok(()); // An anomaly's refund: nothing was posted for it.
        };
        let Attempt { terms, .. } = self
            .attempts
            .get(&refund.trade_no)
            .expect("refunds belong to paid attempts");
        let shares = &refund.shares;
        let mut postings = Vec::with_capacity(3 + terms.split_accounts.len());
        postings.push(Posting::credit(
            &terms.clearing_account,
            shares.total_minor(),
        ));
        postings.push(Posting::debit(FEE, shares.fee_minor));
        postings.extend(
            terms
                .split_accounts
                .iter()
                .zip(&shares.splits_minor)
                .map(|(account, minor)| Posting::debit(account, *minor)),
        );
        postings.push(Posting::debit(PAYABLE, shares.payable_minor));
        Self::post(
            &mut self.balances,
            &mut self.totals,
            &terms.merchant_id,
            refund.currency,
            &postings,
        )?;
        self.refunds.delete(refund_id);
        Ok(())
    }

    /// Posts one balanced entry, or nothing: every check runs before the first change.
    fn post(
        balances: &mut Resident<MerchantId, MerchantAccounts>,
        totals: &mut BTreeMap<Currency, (i64, i64)>,
        merchant_id: &MerchantId,
        currency: Currency,
        postings: &[Posting<'_>],
    ) -> Result<(), LedgerError> {
        let debits: i64 = postings.iter().map(|posting| posting.debit_minor).sum();
        let credits: i64 = postings.iter().map(|posting| posting.credit_minor).sum();
        if debits != credits {
            return Err(LedgerError(format!("entry does not balance: {postings:?}")));
        }
        let empty = Accounts::new();
        let accounts_before = balances
            .get(merchant_id)
            .and_then(|by_currency| by_currency.get(&currency))
            .unwrap_or(&empty);
        // The new balance of every account the entry touches (an account may appear twice).
        let mut after: Vec<(&str, i64)> = Vec::with_capacity(postings.len());
        for posting in postings {
            if posting.debit_minor < 0 || posting.credit_minor < 0 {
                return Err(LedgerError(format!(
                    "a posting is a one-sided positive amount: {posting:?}"
                )));
            }
            if posting.debit_minor == 0 && posting.credit_minor == 0 {
                continue;
            }
            let delta = if is_debit_normal(posting.account) {
                posting.debit_minor - posting.credit_minor
            } else {
                posting.credit_minor - posting.debit_minor
            };
            match after
                .iter_mut()
                .find(|(account, _)| *account == posting.account)
            {
                Some((_, balance)) => *balance += delta,
                None => after.push((
                    posting.account,
                    accounts_before.get(posting.account).copied().unwrap_or(0) + delta,
                )),
            }
        }
        // Below zero only where a payout made room (see `PAID_OUT`).
        let paid_out = accounts_before.get(PAID_OUT).copied().unwrap_or(0);
        let floor = |account: &str| {
            if account == PAYABLE || account.starts_with("clearing:") {
                -paid_out
            } else {
                0
            }
        };
        if let Some((account, balance)) = after
            .iter()
            .find(|(account, balance)| *balance < floor(account))
        {
            return Err(LedgerError(format!(
                "account {account} of {merchant_id} would go below {} ({balance} {currency})",
                floor(account)
            )));
        }
        let total = totals.entry(currency).or_default();
        total.0 += debits;
        total.1 += credits;
        let accounts = balances
            .get_or_default(merchant_id)
            .entry(currency)
            .or_default();
        for (account, balance) in after {
            match accounts.get_mut(account) {
                Some(slot) => *slot = balance,
                None => {
                    accounts.insert(account.to_owned(), balance);
                }
            }
        }
        Ok(())
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
        for (merchant_id, by_currency) in self.balances.iter() {
            for (currency, accounts) in by_currency {
                let (assets, liabilities) = accounts
                    .iter()
                    .filter(|(account, _)| account.as_str() != PAID_OUT)
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

/// The balances projection's name, as operators see it and its files are named.
pub const NAME: &str = "balances";
/// Bumped whenever the fold changes what it derives: files of another version are folded again.
pub const VERSION: u32 = 2;

/// What the balances file keeps as single values, written with every commit.
#[derive(Debug, Default, Serialize, Deserialize)]
struct Scalars {
    totals: Totals,
}

/// The balances as a projection of their own: the [`Ledger`] folded from the log into its own
/// file (`balances.v2.*.sqlite` in the data directory's `projections/`), with its checkpoint.
/// It reads only the events that post (`Ledger::apply_recorded`), so a full rebuild runs at
/// nearly the speed the log is read. An entry the ledger refuses is a broken invariant: the
/// fold panics, and the follower stops this projection there, alone.
#[derive(Debug, Default)]
pub struct Balances {
    ledger: Ledger,
    position: u64,
    hash_at_position: [u8; 32],
    backing: Option<Arc<Backing>>,
}

/// A batch of the balances file taken by `prepare_commit`.
#[derive(Debug)]
pub struct PendingBalances {
    backing: Arc<Backing>,
    writes: Vec<Write>,
    checkpoint: crate::tables::Checkpoint,
}

impl crate::projection::PendingWrite for PendingBalances {
    fn write(&self) -> Result<(), TableError> {
        self.backing.commit(&self.writes, &self.checkpoint)
    }
}

/// The first space of the ledger's tables in the balances file.
const FIRST_SPACE: u16 = 1;

impl Balances {
    /// The ledger as folded up to [`Balances::position`].
    pub fn ledger(&self) -> &Ledger {
        &self.ledger
    }

    /// Applies the event after [`Balances::position`]; an entry the ledger refuses leaves
    /// everything as it was, the position included.
    pub fn try_apply(&mut self, recorded: &RecordedEvent) -> Result<(), LedgerError> {
        assert_eq!(
            recorded.global_position,
            self.position + 1,
            "the balances fold the log in order"
        );
        self.ledger.apply_recorded(recorded)?;
        self.position = recorded.global_position;
        self.hash_at_position = recorded.hash;
        Ok(())
    }

    /// The file it is kept in, if any.
    pub fn backing(&self) -> Option<&Arc<Backing>> {
        self.backing.as_ref()
    }

    /// Folds the log from position 1 up to `until_position` (inclusive) into fresh balances
    /// in memory.
    pub fn fold_from_start(
        store: &dyn paycenter_store::EventStore,
        until_position: u64,
    ) -> Result<Balances, crate::model::ModelError> {
        let mut balances = Balances::default();
        crate::Projection::catch_up(&mut balances, store, until_position)?;
        Ok(balances)
    }

    /// [`crate::Projection::digest`] of the file as its last commit left it, and that commit's
    /// position, read from the file alone (operators ask for it while the service runs).
    pub fn file_digest(backing: &Backing) -> Result<(u64, String), TableError> {
        let spaces: Vec<u16> = (FIRST_SPACE..FIRST_SPACE + Ledger::SPACES).collect();
        // The ledger's spaces share one label, as `Ledger::visit_all` feeds them.
        let labels = vec![1; spaces.len()];
        let (position, mut hasher, scalars_text) =
            crate::projection::hash_file_rows(backing, &spaces, &labels)?;
        let scalars: Scalars = crate::projection::decode_scalars(backing, scalars_text.as_deref())?;
        // As `Ledger::visit_all` ends.
        crate::projection::digest_row(&mut hasher, 1, b"totals", &format!("{:?}", scalars.totals));
        Ok((position, hex::encode(hasher.finalize())))
    }
}

impl crate::projection::Projection for Balances {
    const NAME: &'static str = NAME;
    const VERSION: u32 = VERSION;
    type Commit = PendingBalances;

    fn open_on(
        backing: Arc<Backing>,
        store: &dyn paycenter_store::EventStore,
        role: crate::projection::Role,
    ) -> Result<Self, crate::model::ModelError> {
        let mut balances = Balances::default();
        let mut totals = Totals::default();
        if let Some(resumed) = crate::projection::resume::<Balances>(&backing, store)? {
            balances.position = resumed.position;
            balances.hash_at_position = resumed.hash_at_position;
            totals =
                crate::projection::decode_scalars::<Scalars>(&backing, Some(&resumed.scalars))?
                    .totals;
        }
        balances.ledger.attach(
            &backing,
            FIRST_SPACE,
            totals,
            role.recent_capacity(RECENT_TERMS),
        )?;
        balances.backing = Some(backing);
        Ok(balances)
    }

    fn resident_spaces() -> Vec<u16> {
        vec![FIRST_SPACE]
    }

    fn refresh(
        &mut self,
        checkpoint: &crate::tables::Checkpoint,
        spaces: &[(u16, crate::tables::Rows)],
    ) -> Result<(), crate::model::ModelError> {
        let backing = self.backing.clone().expect("a reader has tables");
        let scalars: Scalars =
            crate::projection::decode_scalars(&backing, Some(&checkpoint.scalars))?;
        for (space, rows) in spaces {
            if *space == FIRST_SPACE {
                self.ledger.balances.reload(rows)?;
            }
        }
        self.ledger.totals = scalars.totals;
        self.position = checkpoint.position;
        self.hash_at_position = crate::projection::hash_of(checkpoint);
        Ok(())
    }

    fn backing(&self) -> Option<&Arc<Backing>> {
        Balances::backing(self)
    }

    fn position(&self) -> u64 {
        self.position
    }

    fn apply(&mut self, recorded: &RecordedEvent) {
        // The ledger refuses an entry that breaks its invariants (a bug upstream) and posts
        // nothing of it; the follower stops the balances here, and the next start stops at the
        // same event.
        if let Err(error) = self.try_apply(recorded) {
            panic!("{error}");
        }
    }

    fn prepare_commit(&mut self) -> Option<PendingBalances> {
        let backing = self.backing.clone()?;
        let mut writes = Vec::new();
        self.ledger.drain_into(&mut writes);
        let scalars = Scalars {
            totals: self.ledger.totals().clone(),
        };
        let checkpoint = crate::projection::checkpoint::<Balances>(
            self.position,
            self.hash_at_position,
            serde_json::to_string(&scalars).expect("scalars serialize"),
        );
        Some(PendingBalances {
            backing,
            writes,
            checkpoint,
        })
    }

    fn stage(&mut self) {
        self.ledger.stage();
    }

    fn finish_commit(&mut self) -> Retired {
        self.ledger.finish_commit()
    }

    fn digest(&self) -> Result<String, TableError> {
        let mut hasher = Sha256::new();
        hasher.update(format!("position={};", self.position).as_bytes());
        self.ledger.visit_all(&mut |key, value| {
            crate::projection::digest_row(&mut hasher, 1, key, value)
        })?;
        Ok(hex::encode(hasher.finalize()))
    }
}
