//! Reconciliation: a channel account's day against the channel's bill, fetched through the
//! adapter, uploaded, or fetched on schedule; each result is recorded as a
//! `reconciliation.completed` event, so audits see it.

use std::sync::Arc;

use chrono::{FixedOffset, NaiveDate, Utc};
use paycenter_domain::events::{Event, ReconciliationCompleted};
use paycenter_domain::ids::{ChannelAccountId, ChannelTradeNo, TradeNo};
use paycenter_domain::payment::{Channel, RefundStatus};
use paycenter_domain::reconciliation::{reconcile, BillLine, RecordLine, MAX_BILL_LINES};
use paycenter_domain::{Currency, Money};
use paycenter_store::ExpectedRevision;

use crate::error::{ErrorCode, Refusal};
use crate::state::AppState;

/// The channel account a reconciliation is of.
fn channel_account(
    state: &AppState,
    id: &ChannelAccountId,
) -> Result<paycenter_domain::events::ChannelAccountActivated, Refusal> {
    state.channel_account(id).ok_or_else(|| {
        Refusal::not_found(
            ErrorCode::ChannelAccountNotFound,
            format!("channel account {id} not found"),
        )
    })
}

/// Reconciles a channel account's business day against the bill fetched from its channel.
pub async fn fetch(
    state: &AppState,
    channel_account_id: &ChannelAccountId,
    date: NaiveDate,
) -> Result<ReconciliationCompleted, Refusal> {
    let account = channel_account(state, channel_account_id)?;
    if !account.mode.takes_payments() {
        return Err(Refusal::new(
            ErrorCode::InvalidAccountMode,
            format!(
                "channel account {channel_account_id} is a provider account: its sub-merchants' bills are reconciled on each sub-merchant's account"
            ),
        ));
    }
    fetch_for(state, &account, date, "fetched").await
}

async fn fetch_for(
    state: &AppState,
    account: &paycenter_domain::events::ChannelAccountActivated,
    date: NaiveDate,
    source: &str,
) -> Result<ReconciliationCompleted, Refusal> {
    let adapter = state.channel(account.channel)?;
    let params = state.channel_params(account)?;
    let rows = adapter
        .daily_bill(&params, &account.channel_account_id, date)
        .await
        .map_err(Refusal::channel_unavailable)?;
    let bill: Vec<BillLine> = rows.into_iter().map(bill_line).collect();
    record(state, account, date, source, bill).await
}

/// Reconciles a channel account's business day against an uploaded bill: paycenter's CSV
/// (`trade_no,channel_trade_no,amount,currency[,refunded]`, a header line first), Alipay's zip
/// or WeChat Pay's trade bill.
pub async fn upload(
    state: &AppState,
    channel_account_id: &ChannelAccountId,
    date: NaiveDate,
    bill: &[u8],
) -> Result<ReconciliationCompleted, Refusal> {
    let account = channel_account(state, channel_account_id)?;
    let bill = parse_bill(bill)?;
    record(state, &account, date, "uploaded", bill).await
}

/// An amount of an uploaded bill: `0` (a refund-only row, or nothing refunded) or positive.
fn bill_amount(text: &str, currency: Currency) -> Result<Money, paycenter_domain::MoneyError> {
    if text
        .trim_end_matches('0')
        .trim_end_matches('.')
        .trim_start_matches('0')
        .is_empty()
    {
        return Ok(Money::zero(currency));
    }
    Money::parse_positive(text, currency)
}

fn bill_line(row: paycenter_gateway::BillRow) -> BillLine {
    BillLine {
        trade_no: row.trade_no,
        channel_trade_no: row.channel_trade_no,
        amount: row.amount,
        refunded: row.refunded,
    }
}

/// The channel's business day, in which its bills are cut: Beijing time (UTC+8, without
/// daylight saving since 1991) for Alipay and WeChat Pay, UTC for the sandbox and Stripe.
pub fn business_day_offset(channel: Channel) -> FixedOffset {
    match channel {
        Channel::Alipay | Channel::Wechatpay => {
            FixedOffset::east_opt(8 * 3_600).expect("a valid offset")
        }
        Channel::Sandbox | Channel::Stripe => FixedOffset::east_opt(0).expect("a valid offset"),
    }
}

/// The days a channel account's bills cover: its own offset when it set one
/// (`bill_utc_offset` at activation), else its channel's.
pub fn account_offset(account: &paycenter_domain::events::ChannelAccountActivated) -> FixedOffset {
    account
        .bill_utc_offset_minutes
        .and_then(|minutes| FixedOffset::east_opt(minutes * 60))
        .unwrap_or_else(|| business_day_offset(account.channel))
}

/// Whether `at` falls on the channel's business day `date`.
pub fn on_business_day(channel: Channel, at: chrono::DateTime<Utc>, date: NaiveDate) -> bool {
    at.with_timezone(&business_day_offset(channel)).date_naive() == date
}

/// Parses an uploaded bill, told apart by content: Alipay's zip of GBK CSV files, WeChat Pay's
/// trade bill (back-quoted fields), or paycenter's own CSV.
fn parse_bill(body: &[u8]) -> Result<Vec<BillLine>, Refusal> {
    let channel_file = |parsed: Result<Vec<paycenter_gateway::BillRow>, String>, what: &str| {
        parsed
            .map(|rows| rows.into_iter().map(bill_line).collect())
            .map_err(|why| Refusal::new(ErrorCode::InvalidBill, format!("{what}: {why}")))
    };
    if body.starts_with(b"PK\x03\x04") {
        return channel_file(paycenter_gateway::bills::alipay_zip(body), "Alipay bill");
    }
    if body.contains(&b'`') {
        return channel_file(
            paycenter_gateway::bills::wechatpay_tradebill(body),
            "WeChat Pay trade bill",
        );
    }
    parse_paycenter_bill(body)
}

/// paycenter's own CSV; a bad line is refused with its number.
fn parse_paycenter_bill(body: &[u8]) -> Result<Vec<BillLine>, Refusal> {
    let invalid = |line_no: usize, why: String| {
        Refusal::new(
            ErrorCode::InvalidBill,
            format!("bill line {line_no}: {why}"),
        )
    };
    let text = std::str::from_utf8(body)
        .map_err(|_| Refusal::new(ErrorCode::InvalidBill, "the bill is not UTF-8 text"))?;
    let mut lines = text.lines().enumerate();
    let with_refunds = match lines.next().map(|(_, header)| header.trim()) {
        Some("trade_no,channel_trade_no,amount,currency") => false,
        Some("trade_no,channel_trade_no,amount,currency,refunded") => true,
        _ => {
            return Err(invalid(
                1,
                "the header must be trade_no,channel_trade_no,amount,currency[,refunded]"
                    .to_owned(),
            ))
        }
    };
    let mut bill = Vec::new();
    for (line_idx, line) in lines {
        let line_no = line_idx + 1;
        if line.trim().is_empty() {
            continue;
        }
        if bill.len() >= MAX_BILL_LINES {
            return Err(invalid(
                line_no,
                format!("a bill has at most {MAX_BILL_LINES} lines"),
            ));
        }
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (trade_no, channel_trade_no, amount, currency, refunded) =
            match (with_refunds, &fields[..]) {
                (false, [trade_no, channel_trade_no, amount, currency]) => {
                    (*trade_no, *channel_trade_no, *amount, *currency, "0")
                }
                (true, [trade_no, channel_trade_no, amount, currency, refunded]) => {
                    (*trade_no, *channel_trade_no, *amount, *currency, *refunded)
                }
                _ => {
                    return Err(invalid(
                        line_no,
                        format!("expected {} fields", if with_refunds { 5 } else { 4 }),
                    ))
                }
            };
        let currency: Currency = currency
            .parse()
            .map_err(|error: paycenter_domain::MoneyError| invalid(line_no, error.to_string()))?;
        bill.push(BillLine {
            trade_no: TradeNo::parse(trade_no)
                .map_err(|error| invalid(line_no, error.to_string()))?,
            channel_trade_no: ChannelTradeNo::parse(channel_trade_no)
                .map_err(|error| invalid(line_no, error.to_string()))?,
            amount: bill_amount(amount, currency)
                .map_err(|error| invalid(line_no, error.to_string()))?,
            refunded: bill_amount(refunded, currency)
                .map_err(|error| invalid(line_no, error.to_string()))?,
        });
    }
    Ok(bill)
}

/// Compares, records the result as an event, answers it.
async fn record(
    state: &AppState,
    account: &paycenter_domain::events::ChannelAccountActivated,
    date: NaiveDate,
    source: &str,
    bill: Vec<BillLine>,
) -> Result<ReconciliationCompleted, Refusal> {
    let offset = account_offset(account);
    // The day in the account's zone, as instants: what moved then, and what the bill names.
    let day_start = date
        .and_hms_opt(0, 0, 0)
        .and_then(|midnight| midnight.and_local_timezone(offset).single())
        .map(|start| start.with_timezone(&Utc))
        .ok_or_else(|| Refusal::invalid(format!("{date} has no midnight in {offset}")))?;
    let day_end = day_start + chrono::Duration::days(1);
    let record: Vec<RecordLine> = {
        let model = state.model_for_request()?;
        let billed: std::collections::HashSet<&TradeNo> =
            bill.iter().map(|line| &line.trade_no).collect();
        let mut trade_nos: std::collections::BTreeSet<TradeNo> = model
            .payments_settled_between(&account.channel_account_id, day_start, day_end)?
            .into_iter()
            .collect();
        trade_nos.extend(billed.iter().map(|trade_no| (*trade_no).clone()));
        let mut payments = Vec::with_capacity(trade_nos.len());
        for trade_no in &trade_nos {
            if let Some(payment) = model.payment(trade_no)? {
                payments.push(payment);
            }
        }
        payments
            .iter()
            .filter(|payment| payment.channel_account_id == account.channel_account_id)
            .filter_map(|payment| {
                let on_that_day =
                    |at: chrono::DateTime<Utc>| at.with_timezone(&offset).date_naive() == date;
                let paid_that_day = payment.paid_at.is_some_and(on_that_day);
                let refunded_that_day = payment
                    .refunds
                    .iter()
                    .filter(|refund| refund.status == RefundStatus::Succeeded)
                    .filter(|refund| refund.settled_at.is_some_and(on_that_day))
                    .fold(Money::zero(payment.amount.currency()), |sum, refund| {
                        sum.checked_add(refund.amount).expect("refunds ≤ amount")
                    });
                let concerned = paid_that_day
                    || !refunded_that_day.is_zero()
                    || billed.contains(&payment.trade_no);
                concerned.then(|| RecordLine {
                    trade_no: payment.trade_no.clone(),
                    order_no: payment.order_no.clone(),
                    channel_trade_no: payment.channel_trade_no.clone(),
                    amount: payment.amount,
                    status: payment.status,
                    paid_that_day,
                    refunded_that_day,
                })
            })
            .collect()
    };
    let (n_matched, discrepancies) = reconcile(&record, &bill);
    let payouts =
        crate::service::payouts::reconcile_day(state, account, day_start, day_end).await?;
    let reconciliation_id = format!("rec_{}", crate::service::random_hex(12));
    let completed = ReconciliationCompleted {
        reconciliation_id: reconciliation_id.clone(),
        merchant_id: account.merchant_id.clone(),
        channel_account_id: account.channel_account_id.clone(),
        date,
        source: source.to_owned(),
        n_bill_lines: bill.len() as u64,
        n_matched: n_matched as u64,
        discrepancies,
        payouts,
        completed_at: state.clock.now(),
    };
    let stream_id = format!("reconciliation-{reconciliation_id}");
    let mut new_events = Event::to_new_events(
        &[Event::ReconciliationCompleted(completed.clone())],
        &stream_id,
        None,
    );
    crate::service::access::stamp(&mut new_events);
    let outcome = state
        .store
        .append_async(&stream_id, ExpectedRevision::NoStream, new_events)
        .await?;
    state.wait_for_model(outcome.last_position).await?;
    Ok(completed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn alipay_and_wechatpay_days_are_beijing_days() {
        // 17:30 UTC on 30 November is 01:30 on 1 December in Beijing.
        let at = Utc.with_ymd_and_hms(2026, 11, 30, 17, 30, 0).unwrap();
        let first = NaiveDate::from_ymd_opt(2026, 12, 1).unwrap();
        let last = NaiveDate::from_ymd_opt(2026, 11, 30).unwrap();
        assert!(on_business_day(Channel::Alipay, at, first));
        assert!(on_business_day(Channel::Wechatpay, at, first));
        assert!(on_business_day(Channel::Sandbox, at, last));
        assert!(on_business_day(Channel::Stripe, at, last));
        // 15:59:59 UTC is still 23:59:59 of the same day in Beijing.
        let before_midnight = Utc.with_ymd_and_hms(2026, 11, 30, 15, 59, 59).unwrap();
        assert!(on_business_day(Channel::Alipay, before_midnight, last));
    }

    #[test]
    fn yesterdays_bill_is_due_from_the_hour_of_the_channels_day() {
        let schedule = DailySchedule {
            hour: 10,
            check_seconds: 1,
        };
        // 01:30 UTC is 09:30 in Beijing: not yet; 02:00 UTC is 10:00: 30 November's bill.
        let early = Utc.with_ymd_and_hms(2026, 12, 1, 1, 30, 0).unwrap();
        let due = Utc.with_ymd_and_hms(2026, 12, 1, 2, 0, 0).unwrap();
        assert_eq!(
            due_bill_day(business_day_offset(Channel::Alipay), early, schedule),
            None
        );
        assert_eq!(
            due_bill_day(business_day_offset(Channel::Wechatpay), due, schedule),
            NaiveDate::from_ymd_opt(2026, 11, 30)
        );
        // 17:00 UTC on 30 November is already 1 December in Beijing: the 30th is due.
        let late = Utc.with_ymd_and_hms(2026, 11, 30, 17, 0, 0).unwrap();
        assert_eq!(
            due_bill_day(business_day_offset(Channel::Sandbox), late, schedule),
            NaiveDate::from_ymd_opt(2026, 11, 29)
        );
        assert_eq!(
            due_bill_day(business_day_offset(Channel::Alipay), late, schedule),
            None
        );
        let afternoon = Utc.with_ymd_and_hms(2026, 11, 30, 3, 0, 0).unwrap();
        assert_eq!(
            due_bill_day(business_day_offset(Channel::Alipay), afternoon, schedule),
            NaiveDate::from_ymd_opt(2026, 11, 29)
        );
    }

    #[test]
    fn uploads_are_told_apart_by_content() {
        let csv = b"trade_no,channel_trade_no,amount,currency,refunded\n\
            202611301730000000000000000001,C1,0,CNY,1.50\n";
        let lines = parse_bill(csv).unwrap();
        assert_eq!(lines[0].amount, Money::zero(Currency::CNY));
        assert_eq!(lines[0].refunded, Money::from_minor(150, Currency::CNY));
        assert!(parse_bill(b"PK\x03\x04garbage").is_err());
        let error = parse_bill(b"`garbage").unwrap_err();
        assert!(error.message.contains("WeChat Pay"), "{}", error.message);
    }
}

/// When the daily reconciliation runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DailySchedule {
    /// The hour of the channel's business day from which yesterday's bill is fetched (channels
    /// publish it in the morning: Alipay after 09:00, WeChat Pay after 10:00, Beijing time).
    pub hour: u32,
    /// Seconds between two looks (a bill not published yet is asked for again then).
    pub check_seconds: u64,
}

impl Default for DailySchedule {
    fn default() -> Self {
        DailySchedule {
            hour: 10,
            check_seconds: 600,
        }
    }
}

/// The business day whose bill is due at `now`, if the schedule's hour has come: yesterday in
/// the channel's time zone.
pub fn due_bill_day(
    offset: FixedOffset,
    now: chrono::DateTime<Utc>,
    schedule: DailySchedule,
) -> Option<NaiveDate> {
    use chrono::Timelike;
    let local = now.with_timezone(&offset);
    if local.hour() < schedule.hour {
        return None;
    }
    local.date_naive().pred_opt()
}

/// Fetches and reconciles yesterday's bill of every channel account with daily bills, once a
/// day and account (a lease keeps one node at it), retrying each look until the bill is there.
/// Each run is an event: `reconciliation.completed` with `source: "scheduled"`, or
/// `reconciliation.fetch_failed` with the reason.
pub async fn reconcile_daily(state: Arc<AppState>, schedule: DailySchedule) {
    loop {
        tokio::time::sleep(std::time::Duration::from_secs(schedule.check_seconds)).await;
        if state.read_model.health.stopped().is_some() {
            continue;
        }
        let due: Vec<(paycenter_domain::events::ChannelAccountActivated, NaiveDate)> = {
            let Ok(model) = state.model_for_request() else {
                continue;
            };
            let now = state.clock.now();
            // One pass over the results, not one per account.
            model
                .channel_accounts()
                .values()
                // Stripe publishes no daily bill; a provider's bill is its sub-merchants'.
                .filter(|account| account.channel != Channel::Stripe)
                .filter(|account| account.mode.takes_payments())
                .filter_map(|account| {
                    let day = due_bill_day(account_offset(account), now, schedule)?;
                    let done = model
                        .scheduled_reconciliation_done(&account.channel_account_id, day)
                        // Unsure: not this round (the next one reads again).
                        .unwrap_or(true);
                    (!done).then(|| (account.clone(), day))
                })
                .take(256)
                .collect()
        };
        for (account, day) in due {
            let lease = format!("reconcile:{}:{day}", account.channel_account_id);
            let held = tokio::task::block_in_place(|| {
                state
                    .store
                    .try_lease(&lease, &state.config.node_id, 10 * 60 * 1_000)
            });
            if !matches!(held, Ok(true)) {
                continue;
            }
            match fetch_for(&state, &account, day, "scheduled").await {
                Ok(completed) => tracing::info!(
                    channel_account_id = %account.channel_account_id,
                    %day,
                    matched = completed.n_matched,
                    discrepancies = completed.discrepancies.len(),
                    "daily reconciliation recorded"
                ),
                Err(error) => {
                    tracing::warn!(
                        channel_account_id = %account.channel_account_id,
                        %day,
                        message = %error.message,
                        "daily reconciliation not possible yet; asked again at the next look"
                    );
                    // Every run is a fact, the failed ones too.
                    let failed = Event::ReconciliationFetchFailed(
                        paycenter_domain::events::ReconciliationFetchFailed {
                            channel_account_id: account.channel_account_id.clone(),
                            date: day,
                            reason: error.message.chars().take(512).collect(),
                            attempted_at: state.clock.now(),
                        },
                    );
                    let stream_id =
                        format!("reconciliation-looks-{}-{day}", account.channel_account_id);
                    let command_id =
                        format!("{stream_id}-{}", state.clock.now().timestamp_micros());
                    if let Err(error) = state
                        .store
                        .append_async(
                            &stream_id,
                            ExpectedRevision::Any,
                            Event::to_new_events(&[failed], &command_id, None),
                        )
                        .await
                    {
                        tracing::warn!(%error, "recording a failed daily reconciliation failed");
                    }
                }
            }
        }
    }
}
