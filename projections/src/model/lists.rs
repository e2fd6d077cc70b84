//! Lists and statistics: what operators and apps page through (payments, refunds,
//! reconciliations, newest first) and the figures per merchant. Each list is an index keyed
//! `(scope, created_at, id)`, so a page is a descending range scan from the cursor; each index
//! entry carries what filters read, so a filter skips an entry without reading its payment.
//!
//! Statistics are kept per merchant, currency and quarter of an hour (UTC): every offset a
//! time zone has used since 1970 but a handful is a whole number of quarters, so buckets of
//! an hour or a day in any zone are sums of whole rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Timelike, Utc};
use paycenter_domain::events::ReconciliationCompleted;
use paycenter_domain::ids::*;
use paycenter_domain::payment::{AttemptStatus, Channel, InvokeMethod, RefundStatus};
use paycenter_domain::Money;
use serde::{Deserialize, Serialize};

use super::{PaymentView, ReadModel, RefundView};
use crate::tables::{DescendingStep, Key, Map, TableError};

/// A payment as its lists see it: enough to filter on without reading the payment.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PaymentEntry {
    pub trade_no: TradeNo,
    pub app_id: AppId,
    pub merchant_id: MerchantId,
    pub channel: Channel,
    pub status: AttemptStatus,
}

impl PaymentEntry {
    /// The entry of `payment` as it stands.
    pub(super) fn of(payment: &PaymentView) -> PaymentEntry {
        PaymentEntry {
            trade_no: payment.trade_no.clone(),
            app_id: payment.app_id.clone(),
            merchant_id: payment.merchant_id.clone(),
            channel: payment.channel,
            status: payment.status,
        }
    }
}

/// A refund as its lists see it.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RefundEntry {
    pub refund_id: RefundId,
    pub trade_no: TradeNo,
    pub app_id: AppId,
    pub merchant_id: MerchantId,
    pub status: RefundStatus,
}

impl RefundEntry {
    /// The entry of `refund` of `payment` as it stands.
    pub(super) fn of(payment: &PaymentView, refund: &RefundView) -> RefundEntry {
        RefundEntry {
            refund_id: refund.refund_id.clone(),
            trade_no: payment.trade_no.clone(),
            app_id: payment.app_id.clone(),
            merchant_id: payment.merchant_id.clone(),
            status: refund.status,
        }
    }
}

/// What statistics count of a payment that was paid.
pub(super) struct PaidTerms {
    merchant_id: MerchantId,
    amount: Money,
    fee: Money,
    channel: Channel,
    invoke_method: InvokeMethod,
}

impl PaidTerms {
    /// The terms of `payment`.
    pub(super) fn of(payment: &PaymentView) -> PaidTerms {
        PaidTerms {
            merchant_id: payment.merchant_id.clone(),
            amount: payment.amount,
            fee: payment.fee,
            channel: payment.channel,
            invoke_method: payment.invoke_method,
        }
    }
}

/// A reconciliation as its lists see it.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReconciliationEntry {
    pub reconciliation_id: String,
    pub channel_account_id: ChannelAccountId,
}

/// A count and the money it adds up to, in minor units of the row's currency.
#[allow(missing_docs)]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Tally {
    pub count: u64,
    pub amount_minor: i64,
}

impl Tally {
    fn add(&mut self, amount: Money) {
        self.count += 1;
        self.amount_minor = self
            .amount_minor
            .checked_add(amount.amount_minor())
            .expect("a quarter hour's sum fits i64 minor units");
    }

    /// This tally plus `other`.
    pub fn merge(&mut self, other: &Tally) {
        self.count += other.count;
        self.amount_minor = self
            .amount_minor
            .checked_add(other.amount_minor)
            .expect("a bucket's sum fits i64 minor units");
    }
}

/// A merchant's figures in one currency over some span.
///
/// - `payments`: attempts started (by when they started);
/// - `succeeded`, `fees`, `by_channel`, `by_invoke_method`: attempts paid (by when they were
///   paid), the fees paycenter computed on them;
/// - `refunds`: refunds that succeeded (by when they did).
#[allow(missing_docs)]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StatsBucket {
    pub payments: Tally,
    pub succeeded: Tally,
    pub refunds: Tally,
    pub fees_minor: i64,
    pub by_channel: BTreeMap<String, Tally>,
    pub by_invoke_method: BTreeMap<String, Tally>,
}

impl StatsBucket {
    /// This bucket plus `other`.
    pub fn merge(&mut self, other: &StatsBucket) {
        self.payments.merge(&other.payments);
        self.succeeded.merge(&other.succeeded);
        self.refunds.merge(&other.refunds);
        self.fees_minor = self
            .fees_minor
            .checked_add(other.fees_minor)
            .expect("a bucket's fees fit i64 minor units");
        for (channel, tally) in &other.by_channel {
            self.by_channel
                .entry(channel.clone())
                .or_default()
                .merge(tally);
        }
        for (method, tally) in &other.by_invoke_method {
            self.by_invoke_method
                .entry(method.clone())
                .or_default()
                .merge(tally);
        }
    }
}

/// Length of the rows statistics are kept in.
pub const STATS_ROW_MINUTES: u32 = 15;

/// The start of the quarter hour `at` falls in.
fn stats_row_start(at: DateTime<Utc>) -> DateTime<Utc> {
    let floored_minute = at.minute() - at.minute() % STATS_ROW_MINUTES;
    at.with_minute(floored_minute)
        .and_then(|at| at.with_second(0))
        .and_then(|at| at.with_nanosecond(0))
        .expect("a whole quarter hour exists")
}

/// Which of a list's indexes a query reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ListScope {
    /// Every item.
    All,
    /// An app's items.
    App(AppId),
    /// A merchant's items.
    Merchant(MerchantId),
}

/// Rows one step of a list reads at most: a step runs under the model's read lock, which the
/// caller releases between steps so a filter that matches little never stalls the fold.
pub const LIST_STEP_ROWS: usize = 512;

/// The range `[start, end)` of an index under `prefix` for items created in `[from, to)`.
fn created_range(
    prefix: Vec<u8>,
    from: Option<DateTime<Utc>>,
    to: Option<DateTime<Utc>>,
) -> (Vec<u8>, Vec<u8>) {
    let mut start = prefix.clone();
    if let Some(from) = from {
        from.encode_into(&mut start);
    }
    let end = match to {
        Some(to) => {
            let mut end = prefix;
            to.encode_into(&mut end);
            end
        }
        None => crate::tables::prefix_end(&prefix),
    };
    (start, end)
}

/// One step of a descending list read: the range, narrowed by where the last step stopped.
fn step<V: Clone + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static>(
    map: &Map<[u8], V>,
    range: (Vec<u8>, Vec<u8>),
    below: Option<&[u8]>,
) -> Result<DescendingStep<V>, TableError> {
    let (start, mut end) = range;
    if let Some(below) = below {
        if below < end.as_slice() {
            end = below.to_vec();
        }
    }
    map.range_desc(&start, &end, LIST_STEP_ROWS)
}

/// The key of an item in an index of `scope`.
fn scoped_key(scope: &ListScope, created_at: DateTime<Utc>, id: &str) -> Vec<u8> {
    let mut key = scope_prefix(scope);
    created_at.encode_into(&mut key);
    id.encode_into(&mut key);
    key
}

fn scope_prefix(scope: &ListScope) -> Vec<u8> {
    match scope {
        ListScope::All => Vec::new(),
        ListScope::App(app_id) => app_id.encoded(),
        ListScope::Merchant(merchant_id) => merchant_id.encoded(),
    }
}

/// The list indexes and statistics, updated by [`ReadModel::apply`].
impl ReadModel {
    fn payment_index(&self, scope: &ListScope) -> &Map<[u8], PaymentEntry> {
        match scope {
            ListScope::All => &self.payments_listed,
            ListScope::App(_) => &self.payments_listed_by_app,
            ListScope::Merchant(_) => &self.payments_listed_by_merchant,
        }
    }

    fn refund_index(&self, scope: &ListScope) -> &Map<[u8], RefundEntry> {
        match scope {
            ListScope::All => &self.refunds_listed,
            ListScope::App(_) => &self.refunds_listed_by_app,
            ListScope::Merchant(_) => &self.refunds_listed_by_merchant,
        }
    }

    /// Writes a payment's entry, created at `created_at`, in each of its indexes (when it
    /// starts, and when its status changes).
    pub(super) fn index_payment(&mut self, entry: PaymentEntry, created_at: DateTime<Utc>) {
        let (app_id, merchant_id) = (entry.app_id.clone(), entry.merchant_id.clone());
        let id = entry.trade_no.as_str().to_owned();
        insert_in_scopes(
            [
                &mut self.payments_listed,
                &mut self.payments_listed_by_app,
                &mut self.payments_listed_by_merchant,
            ],
            (app_id, merchant_id),
            (created_at, &id),
            entry,
        );
    }

    /// Writes a refund's entry, requested at `requested_at`, in each of its indexes.
    pub(super) fn index_refund(&mut self, entry: RefundEntry, requested_at: DateTime<Utc>) {
        let (app_id, merchant_id) = (entry.app_id.clone(), entry.merchant_id.clone());
        let id = entry.refund_id.as_str().to_owned();
        insert_in_scopes(
            [
                &mut self.refunds_listed,
                &mut self.refunds_listed_by_app,
                &mut self.refunds_listed_by_merchant,
            ],
            (app_id, merchant_id),
            (requested_at, &id),
            entry,
        );
    }

    /// Lists a reconciliation (once: a result recorded again under its id replaces the first).
    pub(super) fn index_reconciliation(&mut self, completed: &ReconciliationCompleted) {
        if let Some(earlier) = self
            .reconciliations
            .get(completed.reconciliation_id.as_str())
        {
            let id = earlier.reconciliation_id.as_str();
            self.reconciliations_listed.delete(&scoped_key(
                &ListScope::All,
                earlier.completed_at,
                id,
            ));
            self.reconciliations_listed_by_account.delete(&account_key(
                &earlier.channel_account_id,
                earlier.completed_at,
                id,
            ));
        }
        let entry = ReconciliationEntry {
            reconciliation_id: completed.reconciliation_id.clone(),
            channel_account_id: completed.channel_account_id.clone(),
        };
        let id = completed.reconciliation_id.as_str();
        self.reconciliations_listed.insert(
            &scoped_key(&ListScope::All, completed.completed_at, id),
            entry.clone(),
        );
        self.reconciliations_listed_by_account.insert(
            &account_key(&completed.channel_account_id, completed.completed_at, id),
            entry,
        );
    }

    /// Adds to a merchant's statistics in the quarter hour of `at`.
    pub(super) fn count_stats(
        &mut self,
        merchant_id: &MerchantId,
        currency: &str,
        at: DateTime<Utc>,
        count: impl FnOnce(&mut StatsBucket),
    ) {
        if !self
            .stats_currencies
            .get(merchant_id)
            .is_some_and(|currencies| currencies.iter().any(|known| known == currency))
        {
            let mut currencies = self
                .stats_currencies
                .get(merchant_id)
                .cloned()
                .unwrap_or_default();
            currencies.push(currency.to_owned());
            currencies.sort();
            self.stats_currencies
                .insert(merchant_id.clone(), currencies);
        }
        let key = (
            merchant_id.clone(),
            currency.to_owned(),
            stats_row_start(at),
        );
        let mut bucket = self.merchant_stats.get(&key).unwrap_or_default();
        count(&mut bucket);
        self.merchant_stats.insert(&key, bucket);
    }

    /// Counts a payment started.
    pub(super) fn count_started(&mut self, payment: &PaymentView) {
        let amount = payment.amount;
        self.count_stats(
            &payment.merchant_id,
            amount.currency().code(),
            payment.created_at,
            |bucket| bucket.payments.add(amount),
        );
    }

    /// Counts a payment paid at `paid_at`.
    pub(super) fn count_paid(&mut self, paid: PaidTerms, paid_at: DateTime<Utc>) {
        let PaidTerms {
            merchant_id,
            amount,
            fee,
            channel,
            invoke_method,
        } = paid;
        self.count_stats(&merchant_id, amount.currency().code(), paid_at, |bucket| {
            bucket.succeeded.add(amount);
            bucket.fees_minor = bucket
                .fees_minor
                .checked_add(fee.amount_minor())
                .expect("a quarter hour's fees fit i64 minor units");
            bucket
                .by_channel
                .entry(channel.as_str().to_owned())
                .or_default()
                .add(amount);
            bucket
                .by_invoke_method
                .entry(invoke_method.as_str().to_owned())
                .or_default()
                .add(amount);
        });
    }

    /// Counts a refund that succeeded at `succeeded_at`.
    pub(super) fn count_refunded(
        &mut self,
        merchant_id: &MerchantId,
        amount: Money,
        succeeded_at: DateTime<Utc>,
    ) {
        self.count_stats(
            merchant_id,
            amount.currency().code(),
            succeeded_at,
            |bucket| bucket.refunds.add(amount),
        );
    }

    // ----- Queries -----

    /// One step of a payments list of `scope`, created in `[from, to)`, newest first, below
    /// the key `below` (where the last step stopped; `None` at first). The caller filters and
    /// calls again with the step's `resume_below` until it has a page or the list ends.
    pub fn payments_step(
        &self,
        scope: &ListScope,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        below: Option<&[u8]>,
    ) -> Result<DescendingStep<PaymentEntry>, TableError> {
        let range = created_range(scope_prefix(scope), from, to);
        step(self.payment_index(scope), range, below)
    }

    /// Where a payments list continues after `trade_no` (the last item a page showed): its key
    /// in `scope`'s index, or `None` when there is no such payment.
    pub fn payment_list_key(
        &self,
        scope: &ListScope,
        trade_no: &TradeNo,
    ) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self
            .payment(trade_no)?
            .map(|payment| scoped_key(scope, payment.created_at, trade_no.as_str())))
    }

    /// One step of a refunds list of `scope` (see [`ReadModel::payments_step`]).
    pub fn refunds_step(
        &self,
        scope: &ListScope,
        from: Option<DateTime<Utc>>,
        to: Option<DateTime<Utc>>,
        below: Option<&[u8]>,
    ) -> Result<DescendingStep<RefundEntry>, TableError> {
        let range = created_range(scope_prefix(scope), from, to);
        step(self.refund_index(scope), range, below)
    }

    /// Where a refunds list continues after `refund_id`: its key in `scope`'s index, or `None`
    /// when there is no such refund.
    pub fn refund_list_key(
        &self,
        scope: &ListScope,
        refund_id: &RefundId,
    ) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self
            .refund(refund_id)?
            .map(|(_, refund)| scoped_key(scope, refund.requested_at, refund_id.as_str())))
    }

    /// A refund and its payment.
    pub fn refund(
        &self,
        refund_id: &RefundId,
    ) -> Result<Option<(PaymentView, RefundView)>, TableError> {
        let Some(trade_no) = self.refund_trade_nos.try_get(refund_id)? else {
            return Ok(None);
        };
        let Some(payment) = self.payment(&trade_no)? else {
            return Ok(None);
        };
        let refund = payment
            .refunds
            .iter()
            .find(|refund| &refund.refund_id == refund_id)
            .cloned();
        Ok(refund.map(|refund| (payment, refund)))
    }

    /// One step of the reconciliations list (of one account's, or all), newest first.
    pub fn reconciliations_step(
        &self,
        channel_account_id: Option<&ChannelAccountId>,
        below: Option<&[u8]>,
    ) -> Result<DescendingStep<ReconciliationEntry>, TableError> {
        match channel_account_id {
            None => step(
                &self.reconciliations_listed,
                created_range(Vec::new(), None, None),
                below,
            ),
            Some(account) => step(
                &self.reconciliations_listed_by_account,
                created_range(account.encoded(), None, None),
                below,
            ),
        }
    }

    /// Where the reconciliations list continues after `reconciliation_id` (`None` when there is
    /// no such reconciliation in the list: of another account, when one is asked for).
    pub fn reconciliation_list_key(
        &self,
        channel_account_id: Option<&ChannelAccountId>,
        reconciliation_id: &str,
    ) -> Result<Option<Vec<u8>>, TableError> {
        Ok(self
            .reconciliation(reconciliation_id)?
            .filter(|completed| {
                channel_account_id.is_none_or(|account| &completed.channel_account_id == account)
            })
            .map(|completed| match channel_account_id {
                None => scoped_key(&ListScope::All, completed.completed_at, reconciliation_id),
                Some(account) => account_key(account, completed.completed_at, reconciliation_id),
            }))
    }

    /// The currencies a merchant's statistics hold, in code order.
    pub fn stats_currencies(&self, merchant_id: &MerchantId) -> Vec<String> {
        self.stats_currencies
            .get(merchant_id)
            .cloned()
            .unwrap_or_default()
    }

    /// A merchant's statistics rows in `currency` from `from` (inclusive) to `to` (exclusive),
    /// each with the start of its quarter hour, oldest first; at most `max_rows`.
    pub fn stats_rows(
        &self,
        merchant_id: &MerchantId,
        currency: &str,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max_rows: usize,
    ) -> Result<Vec<(DateTime<Utc>, StatsBucket)>, TableError> {
        let prefix = (merchant_id.clone(), currency.to_owned()).encoded();
        let mut start = prefix.clone();
        stats_row_start(from).encode_into(&mut start);
        let mut end = prefix;
        to.encode_into(&mut end);
        let rows = self.merchant_stats.range_entries(&start, &end, max_rows)?;
        Ok(rows
            .into_iter()
            .map(|(key, bucket)| (decode_row_start(&key), bucket))
            .collect())
    }
}

/// Writes `entry`, created at `at` with id `id`, in the three indexes of a list: in all, by its
/// app and by its merchant (`owners`).
fn insert_in_scopes<V: Clone + Serialize + serde::de::DeserializeOwned + Send + Sync + 'static>(
    indexes: [&mut Map<[u8], V>; 3],
    owners: (AppId, MerchantId),
    (at, id): (DateTime<Utc>, &str),
    entry: V,
) {
    let [all, by_app, by_merchant] = indexes;
    let (app_id, merchant_id) = owners;
    all.insert(&scoped_key(&ListScope::All, at, id), entry.clone());
    by_app.insert(&scoped_key(&ListScope::App(app_id), at, id), entry.clone());
    by_merchant.insert(
        &scoped_key(&ListScope::Merchant(merchant_id), at, id),
        entry,
    );
}

/// The key of a reconciliation in its account's index.
fn account_key(account: &ChannelAccountId, completed_at: DateTime<Utc>, id: &str) -> Vec<u8> {
    let mut key = account.encoded();
    completed_at.encode_into(&mut key);
    id.encode_into(&mut key);
    key
}

/// The quarter hour of a statistics row, from its key's last eight bytes.
fn decode_row_start(key: &[u8]) -> DateTime<Utc> {
    let bytes: [u8; 8] = key[key.len() - 8..]
        .try_into()
        .expect("a statistics key ends with its instant");
    let micros = (u64::from_be_bytes(bytes) ^ (1 << 63)) as i64;
    DateTime::from_timestamp_micros(micros).expect("an instant the fold encoded")
}
