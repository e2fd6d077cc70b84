//! Lists and statistics: `GET /v1/payments`, `/v1/refunds`, `/v1/merchants` (and one
//! merchant, its channel accounts, its statistics), `/v1/apps`, `/v1/reconciliations`.
//!
//! Every list answers `{data, has_more}`, newest first, `limit` items (1–100, default 20) after
//! `starting_after` (the id of the last item seen). Lists that grow with history are read from
//! the read model's indexes a step at a time ([`collect`]), releasing the model between steps;
//! the registry (merchants, channel accounts, apps) is bounded by onboarding and sorted whole.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Arc;

use chrono::{DateTime, Duration, NaiveDate, TimeZone, Timelike, Utc};
use chrono_tz::Tz;
use hyper::http::StatusCode;
use paycenter_domain::events::AppRegistered;
use paycenter_domain::ids::*;
use paycenter_domain::payment::{AttemptStatus, Channel, RefundStatus};
use paycenter_domain::{Currency, Money};
use paycenter_projections::model::{ListScope, StatsBucket, Tally};
use paycenter_projections::tables::{DescendingStep, TableError};
use paycenter_projections::ReadModel;
use serde_json::Value;

use crate::error::{ErrorCode, Refusal};
use crate::http::handlers::{ensure_app_merchant, visible_to};
use crate::http::Answer;
use crate::state::AppState;
use crate::wire::{self, payment_json, to_value};

/// The query string's pairs.
pub type Query = HashMap<String, String>;

const DEFAULT_LIMIT: usize = 20;
const MAX_LIMIT: usize = 100;

/// `limit`: 1–100, default 20 (every list's).
pub(crate) fn limit(query: &Query) -> Result<usize, Refusal> {
    match query.get("limit") {
        None => Ok(DEFAULT_LIMIT),
        Some(text) => text
            .parse::<usize>()
            .ok()
            .filter(|limit| (1..=MAX_LIMIT).contains(limit))
            .ok_or_else(|| {
                Refusal::invalid(format!(
                    "limit must be a whole number from 1 to {MAX_LIMIT}"
                ))
                .with_field("limit")
            }),
    }
}

fn parse_param<T>(
    query: &Query,
    name: &str,
    parse: impl Fn(&str) -> Result<T, IdError>,
) -> Result<Option<T>, Refusal> {
    query
        .get(name)
        .map(|text| {
            parse(text).map_err(|error| Refusal::invalid(error.to_string()).with_field(name))
        })
        .transpose()
}

fn parse_choice<T>(
    query: &Query,
    name: &str,
    parse: impl Fn(&str) -> Option<T>,
    choices: &str,
) -> Result<Option<T>, Refusal> {
    query
        .get(name)
        .map(|text| {
            parse(text).ok_or_else(|| {
                Refusal::invalid(format!("{name} must be one of {choices}")).with_field(name)
            })
        })
        .transpose()
}

/// `tz`: an IANA zone, default UTC.
fn zone(query: &Query) -> Result<Tz, Refusal> {
    match query.get("tz") {
        None => Ok(Tz::UTC),
        Some(text) => Tz::from_str(text).map_err(|_| {
            Refusal::invalid(format!(
                "tz {text:?} is not an IANA time zone such as Asia/Shanghai or UTC"
            ))
            .with_field("tz")
        }),
    }
}

/// The first instant of `date` in `zone`: its midnight, or where a clock change skips
/// midnight, the first quarter hour after it that exists.
fn day_start(date: NaiveDate, zone: Tz) -> DateTime<Utc> {
    let midnight = date.and_hms_opt(0, 0, 0).expect("midnight exists");
    // A day has 96 quarter hours; some of them exist in every zone.
    for quarter in 0..96 {
        let local = midnight + Duration::minutes(15 * quarter);
        if let Some(instant) = zone.from_local_datetime(&local).earliest() {
            return instant.with_timezone(&Utc);
        }
    }
    Utc.from_utc_datetime(&midnight)
}

/// An instant given as RFC 3339, or as a date (`YYYY-MM-DD`: its first instant in `zone`).
fn instant(query: &Query, name: &str, zone: Tz) -> Result<Option<DateTime<Utc>>, Refusal> {
    let Some(text) = query.get(name) else {
        return Ok(None);
    };
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(Some(at.with_timezone(&Utc)));
    }
    if let Ok(date) = NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(Some(day_start(date, zone)));
    }
    Err(Refusal::invalid(format!(
        "{name} must be an RFC 3339 time (2026-12-01T08:00:00+08:00) or a date (2026-12-01)"
    ))
    .with_field(name))
}

/// A span of instants, each end optional: `[from, to)`.
type Window = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// `created_from` (inclusive) and `created_to` (exclusive).
fn created_window(query: &Query) -> Result<Window, Refusal> {
    let zone = zone(query)?;
    let from = instant(query, "created_from", zone)?;
    let to = instant(query, "created_to", zone)?;
    if let (Some(from), Some(to)) = (from, to) {
        if to < from {
            return Err(
                Refusal::invalid("created_to must not be before created_from")
                    .with_field("created_to"),
            );
        }
    }
    Ok((from, to))
}

/// Reads a list from the read model a step at a time until it has `limit` items that `keep`
/// takes (and one more, to know whether more follow) or the list ends. The model is locked
/// for each step only, so a filter that matches little never holds the fold back.
fn collect<E>(
    state: &AppState,
    limit: usize,
    mut below: Option<Vec<u8>>,
    step: impl Fn(&ReadModel, Option<&[u8]>) -> Result<DescendingStep<E>, TableError>,
    keep: impl Fn(&E) -> bool,
) -> Result<(Vec<E>, bool), Refusal> {
    let mut kept = Vec::with_capacity(limit + 1);
    loop {
        let step = {
            let model = state.model_for_request()?;
            step(&model, below.as_deref())?
        };
        for (_, entry) in step.entries {
            if !keep(&entry) {
                continue;
            }
            kept.push(entry);
            if kept.len() > limit {
                kept.truncate(limit);
                return Ok((kept, true));
            }
        }
        match step.resume_below {
            Some(next) => below = Some(next),
            None => return Ok((kept, false)),
        }
    }
}

/// A page of a list held whole: `items` as `(created_at, id, item)`, sorted here newest first.
fn page_sorted<T>(
    mut items: Vec<(DateTime<Utc>, String, T)>,
    starting_after: Option<&str>,
    limit: usize,
) -> Result<(Vec<T>, bool), Refusal> {
    items.sort_by(|left, right| (right.0, &right.1).cmp(&(left.0, &left.1)));
    let skip = match starting_after {
        None => 0,
        Some(id) => {
            items
                .iter()
                .position(|(_, item_id, _)| item_id == id)
                .ok_or_else(|| not_in_list(id))?
                + 1
        }
    };
    let mut rest: Vec<T> = items
        .into_iter()
        .skip(skip)
        .map(|(_, _, item)| item)
        .collect();
    let has_more = rest.len() > limit;
    rest.truncate(limit);
    Ok((rest, has_more))
}

fn not_in_list(id: &str) -> Refusal {
    Refusal::invalid(format!(
        "starting_after {id:?} is not an item of this list; pass the id of the last item seen"
    ))
    .with_field("starting_after")
}

fn list_answer(data: Vec<Value>, has_more: bool) -> Answer {
    Ok((
        StatusCode::OK,
        serde_json::json!({ "data": data, "has_more": has_more }),
    ))
}

/// Where a list continues after the item `id` (the last one a page showed): its key in the
/// list's index, when the item exists (`owner` answers its app and merchant) and belongs in the
/// list (`list`: who asks, the index's scope, the merchant it is narrowed to); otherwise `400`.
fn cursor(
    state: &AppState,
    list: (Option<&AppRegistered>, &ListScope, Option<&MerchantId>),
    id: &str,
    owner: impl Fn(&ReadModel) -> Result<Option<(AppId, MerchantId)>, TableError>,
    key: impl Fn(&ReadModel) -> Result<Option<Vec<u8>>, TableError>,
) -> Result<Vec<u8>, Refusal> {
    let model = state.model_for_request()?;
    let visible =
        owner(&model)?.is_some_and(|(app_id, merchant_id)| in_list(list, &app_id, &merchant_id));
    let found = if visible { key(&model)? } else { None };
    found.ok_or_else(|| not_in_list(id))
}

/// Whether an item of `app_id` and `merchant_id` belongs in a list (`list`: who asks, the
/// index's scope, the merchant it is narrowed to).
fn in_list(
    list: (Option<&AppRegistered>, &ListScope, Option<&MerchantId>),
    app_id: &AppId,
    merchant_id: &MerchantId,
) -> bool {
    let (app, scope, wanted_merchant_id) = list;
    let of_scope = match scope {
        ListScope::All => true,
        ListScope::App(scope_app_id) => app_id == scope_app_id,
        ListScope::Merchant(scope_merchant_id) => merchant_id == scope_merchant_id,
    };
    of_scope && in_scope(app, wanted_merchant_id, app_id, merchant_id)
}

/// Whether an item of `app_id` and `merchant_id` belongs in a list `app` (if an app asks)
/// may see, narrowed to `merchant_id` (if given).
fn in_scope(
    app: Option<&AppRegistered>,
    wanted_merchant_id: Option<&MerchantId>,
    app_id: &AppId,
    merchant_id: &MerchantId,
) -> bool {
    app.is_none_or(|app| visible_to(app, app_id, merchant_id))
        && wanted_merchant_id.is_none_or(|wanted| merchant_id == wanted)
}

/// Which index a payments or refunds list reads, and which merchant it keeps: an app reads
/// its own; the admin reads an app's (`app_id`), a merchant's (`merchant_id`) or all.
fn scope(
    app: Option<&AppRegistered>,
    query: &Query,
) -> Result<(ListScope, Option<MerchantId>), Refusal> {
    let merchant_id = parse_param(query, "merchant_id", MerchantId::parse)?;
    match app {
        Some(app) => {
            // An app lists its own: naming itself changes nothing, naming another is refused.
            if let Some(app_id) = parse_param(query, "app_id", AppId::parse)? {
                if app_id != app.app_id {
                    return Err(Refusal::invalid(
                        "an app lists its own payments and refunds: app_id may only name itself",
                    )
                    .with_field("app_id"));
                }
            }
            if let Some(merchant_id) = &merchant_id {
                ensure_app_merchant(app, merchant_id)?;
            }
            Ok((ListScope::App(app.app_id.clone()), merchant_id))
        }
        None => match parse_param(query, "app_id", AppId::parse)? {
            Some(app_id) => Ok((ListScope::App(app_id), merchant_id)),
            None => match merchant_id {
                Some(merchant_id) => Ok((ListScope::Merchant(merchant_id), None)),
                None => Ok((ListScope::All, None)),
            },
        },
    }
}

fn payment_not_found(what: impl std::fmt::Display) -> Refusal {
    Refusal::not_found(ErrorCode::PaymentNotFound, format!("no payment {what}"))
}

/// `GET /v1/payments`: with `channel_trade_no`, or `merchant_id` + `order_no` (the admin adds
/// `app_id`: an order number lives in its app's namespace), the payment found, with every
/// attempt under `attempts`; otherwise a list.
pub async fn find_payments(
    state: Arc<AppState>,
    app: Option<AppRegistered>,
    query: Query,
) -> Answer {
    let app = app.as_ref();
    if let Some(channel_trade_no) = parse_param(&query, "channel_trade_no", ChannelTradeNo::parse)?
    {
        let payment = state
            .model_for_request()?
            .payment_by_channel_trade_no(&channel_trade_no)?
            .filter(|payment| {
                app.is_none_or(|app| visible_to(app, &payment.app_id, &payment.merchant_id))
            })
            .ok_or_else(|| {
                payment_not_found(format_args!("with channel_trade_no {channel_trade_no}"))
            })?;
        let mut body = payment_json(&payment);
        body["attempts"] = Value::Array(vec![payment_json(&payment)]);
        return Ok((StatusCode::OK, body));
    }
    if let Some(order_no) = parse_param(&query, "order_no", OrderNo::parse)? {
        let merchant_id =
            parse_param(&query, "merchant_id", MerchantId::parse)?.ok_or_else(|| {
                Refusal::invalid("order_no needs merchant_id").with_field("merchant_id")
            })?;
        let app_id = match app {
            Some(app) => {
                ensure_app_merchant(app, &merchant_id)?;
                app.app_id.clone()
            }
            None => parse_param(&query, "app_id", AppId::parse)?.ok_or_else(|| {
                Refusal::invalid(
                    "the admin finds an order by app_id, merchant_id and order_no: order numbers are each app's own",
                )
                .with_field("app_id")
            })?,
        };
        let attempts =
            crate::service::payments::attempts_of_order(&state, &app_id, &merchant_id, &order_no)?;
        let latest = attempts
            .last()
            .ok_or_else(|| payment_not_found(format_args!("for order {order_no}")))?;
        let mut body = payment_json(latest);
        body["attempts"] = Value::Array(attempts.iter().map(payment_json).collect());
        return Ok((StatusCode::OK, body));
    }
    list_payments(&state, app, &query)
}

fn list_payments(state: &AppState, app: Option<&AppRegistered>, query: &Query) -> Answer {
    let limit = limit(query)?;
    let (scope, merchant_id) = scope(app, query)?;
    let status = parse_choice(
        query,
        "status",
        AttemptStatus::parse,
        "pending, succeeded, failed, closed",
    )?;
    let channel = parse_choice(
        query,
        "channel",
        Channel::parse,
        "sandbox, alipay, wechatpay, stripe",
    )?;
    let (from, to) = created_window(query)?;
    let below = match parse_param(query, "starting_after", TradeNo::parse)? {
        None => None,
        Some(trade_no) => Some(cursor(
            state,
            (app, &scope, merchant_id.as_ref()),
            trade_no.as_str(),
            |model| {
                Ok(model
                    .payment(&trade_no)?
                    .map(|payment| (payment.app_id, payment.merchant_id)))
            },
            |model| model.payment_list_key(&scope, &trade_no),
        )?),
    };
    let (entries, has_more) = collect(
        state,
        limit,
        below,
        |model, below| model.payments_step(&scope, from, to, below),
        |entry| {
            in_scope(app, merchant_id.as_ref(), &entry.app_id, &entry.merchant_id)
                && status.is_none_or(|wanted| entry.status == wanted)
                && channel.is_none_or(|wanted| entry.channel == wanted)
        },
    )?;
    let model = state.model_for_request()?;
    let mut data = Vec::with_capacity(entries.len());
    for entry in entries {
        if let Some(payment) = model.payment(&entry.trade_no)? {
            data.push(payment_json(&payment));
        }
    }
    list_answer(data, has_more)
}

/// `GET /v1/refunds`
pub async fn list_refunds(
    state: Arc<AppState>,
    app: Option<AppRegistered>,
    query: Query,
) -> Answer {
    let app = app.as_ref();
    let limit = limit(&query)?;
    let (scope, merchant_id) = scope(app, &query)?;
    let status = parse_choice(
        &query,
        "status",
        RefundStatus::parse,
        "pending, succeeded, failed",
    )?;
    let (from, to) = created_window(&query)?;
    let starting_after = parse_param(&query, "starting_after", RefundId::parse)?;
    let in_window =
        |at: DateTime<Utc>| from.is_none_or(|from| at >= from) && to.is_none_or(|to| at < to);
    if let Some(trade_no) = parse_param(&query, "trade_no", TradeNo::parse)? {
        // One payment's refunds: read from the payment itself.
        let list = (app, &scope, merchant_id.as_ref());
        let payment = state
            .model_for_request()?
            .payment(&trade_no)?
            .filter(|payment| in_list(list, &payment.app_id, &payment.merchant_id));
        let items = payment
            .map(|payment| payment.refunds)
            .unwrap_or_default()
            .into_iter()
            .filter(|refund| {
                status.is_none_or(|wanted| refund.status == wanted)
                    && in_window(refund.requested_at)
            })
            .map(|refund| (refund.requested_at, refund.refund_id.to_string(), refund))
            .collect();
        let (refunds, has_more) =
            page_sorted(items, starting_after.as_ref().map(RefundId::as_str), limit)?;
        return list_answer(refunds.iter().map(wire::refund_json).collect(), has_more);
    }
    let below = match starting_after {
        None => None,
        Some(refund_id) => Some(cursor(
            &state,
            (app, &scope, merchant_id.as_ref()),
            refund_id.as_str(),
            |model| {
                Ok(model
                    .refund(&refund_id)?
                    .map(|(payment, _)| (payment.app_id, payment.merchant_id)))
            },
            |model| model.refund_list_key(&scope, &refund_id),
        )?),
    };
    let (entries, has_more) = collect(
        &state,
        limit,
        below,
        |model, below| model.refunds_step(&scope, from, to, below),
        |entry| {
            in_scope(app, merchant_id.as_ref(), &entry.app_id, &entry.merchant_id)
                && status.is_none_or(|wanted| entry.status == wanted)
        },
    )?;
    let model = state.model_for_request()?;
    let mut data = Vec::with_capacity(entries.len());
    for entry in entries {
        if let Some((_, refund)) = model.refund(&entry.refund_id)? {
            data.push(wire::refund_json(&refund));
        }
    }
    list_answer(data, has_more)
}

/// `GET /v1/merchants`
pub async fn list_merchants(state: Arc<AppState>, query: Query) -> Answer {
    let limit = limit(&query)?;
    let starting_after = parse_param(&query, "starting_after", MerchantId::parse)?;
    let items = state
        .model_for_request()?
        .merchants()
        .values()
        .map(|merchant| {
            (
                merchant.onboarded_at,
                merchant.merchant_id.to_string(),
                wire::merchant_answer(merchant),
            )
        })
        .collect();
    let (merchants, has_more) = page_sorted(
        items,
        starting_after.as_ref().map(MerchantId::as_str),
        limit,
    )?;
    list_answer(merchants.iter().map(to_value).collect(), has_more)
}

fn merchant_not_found(merchant_id: &str) -> Refusal {
    Refusal::not_found(
        ErrorCode::MerchantNotFound,
        format!("no merchant {merchant_id}"),
    )
}

/// `GET /v1/merchants/{merchant_id}`
pub async fn get_merchant(state: Arc<AppState>, merchant_id: String) -> Answer {
    let merchant_id = MerchantId::parse(&merchant_id)
        .map_err(|error| Refusal::invalid(error.to_string()).with_field("merchant_id"))?;
    let model = state.model_for_request()?;
    let merchant = model
        .merchants()
        .get(&merchant_id)
        .ok_or_else(|| merchant_not_found(merchant_id.as_str()))?;
    Ok((StatusCode::OK, to_value(&wire::merchant_answer(merchant))))
}

/// `GET /v1/merchants/{merchant_id}/channel-accounts`
pub async fn list_channel_accounts(
    state: Arc<AppState>,
    merchant_id: String,
    query: Query,
) -> Answer {
    let merchant_id = MerchantId::parse(&merchant_id)
        .map_err(|error| Refusal::invalid(error.to_string()).with_field("merchant_id"))?;
    let limit = limit(&query)?;
    let starting_after = parse_param(&query, "starting_after", ChannelAccountId::parse)?;
    let model = state.model_for_request()?;
    if !model.merchants().contains_key(&merchant_id) {
        return Err(merchant_not_found(merchant_id.as_str()));
    }
    let items = model
        .channel_accounts()
        .values()
        .filter(|account| account.merchant_id == merchant_id)
        .map(|account| {
            let created_at = model
                .channel_account_created_at(&account.channel_account_id)
                .unwrap_or(account.activated_at);
            (
                created_at,
                account.channel_account_id.to_string(),
                wire::channel_account_answer(&model, account),
            )
        })
        .collect();
    drop(model);
    let (accounts, has_more) = page_sorted(
        items,
        starting_after.as_ref().map(ChannelAccountId::as_str),
        limit,
    )?;
    list_answer(accounts.iter().map(to_value).collect(), has_more)
}

/// `GET /v1/apps` (`merchant_id`: the apps acting for that merchant)
pub async fn list_apps(state: Arc<AppState>, query: Query) -> Answer {
    let limit = limit(&query)?;
    let starting_after = parse_param(&query, "starting_after", AppId::parse)?;
    let merchant_id = parse_param(&query, "merchant_id", MerchantId::parse)?;
    let model = state.model_for_request()?;
    let items = model
        .apps()
        .values()
        .filter(|app| {
            merchant_id
                .as_ref()
                .is_none_or(|wanted| app.merchant_ids.contains(wanted))
        })
        .map(|app| {
            let status = if model.is_app_disabled(&app.app_id) {
                "disabled"
            } else {
                "active"
            };
            let answer = wire::AppAnswer {
                app_id: app.app_id.to_string(),
                name: app.name.clone(),
                merchant_ids: app.merchant_ids.iter().map(ToString::to_string).collect(),
                notify_url: app.notify_url.clone(),
                status: status.to_owned(),
                created_at: app.registered_at.to_rfc3339(),
            };
            (app.registered_at, app.app_id.to_string(), answer)
        })
        .collect();
    drop(model);
    let (apps, has_more) = page_sorted(items, starting_after.as_ref().map(AppId::as_str), limit)?;
    list_answer(apps.iter().map(to_value).collect(), has_more)
}

/// `GET /v1/reconciliations` (`channel_account_id`: one account's)
pub async fn list_reconciliations(state: Arc<AppState>, query: Query) -> Answer {
    let limit = limit(&query)?;
    let account = parse_param(&query, "channel_account_id", ChannelAccountId::parse)?;
    let below = match query.get("starting_after") {
        None => None,
        Some(id) => {
            let key = state
                .model_for_request()?
                .reconciliation_list_key(account.as_ref(), id)?
                .ok_or_else(|| not_in_list(id))?;
            Some(key)
        }
    };
    let (entries, has_more) = collect(
        &state,
        limit,
        below,
        |model, below| model.reconciliations_step(account.as_ref(), below),
        |_| true,
    )?;
    let model = state.model_for_request()?;
    let mut data = Vec::with_capacity(entries.len());
    for entry in entries {
        if let Some(completed) = model.reconciliation(&entry.reconciliation_id)? {
            data.push(crate::http::admin::reconciliation_json(&completed));
        }
    }
    list_answer(data, has_more)
}

/// How long a bucket of statistics is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Granularity {
    Hour,
    Day,
}

/// Most buckets one answer holds.
const MAX_DAY_BUCKETS: usize = 400;
const MAX_HOUR_BUCKETS: usize = 744;

/// The start of the bucket `at` falls in, in `zone`.
fn bucket_start(at: DateTime<Utc>, granularity: Granularity, zone: Tz) -> DateTime<Utc> {
    let local = at.with_timezone(&zone);
    match granularity {
        // The last time the zone's clock showed a whole hour: exact across clock changes.
        Granularity::Hour => {
            at - Duration::minutes(i64::from(local.minute()))
                - Duration::seconds(i64::from(local.second()))
                - Duration::nanoseconds(i64::from(local.nanosecond()))
        }
        Granularity::Day => day_start(local.date_naive(), zone),
    }
}

/// The start of the bucket after the one starting at `start`.
fn next_bucket(start: DateTime<Utc>, granularity: Granularity, zone: Tz) -> DateTime<Utc> {
    match granularity {
        Granularity::Hour => start + Duration::hours(1),
        Granularity::Day => {
            let date = start.with_timezone(&zone).date_naive();
            day_start(date.succ_opt().unwrap_or(date), zone)
        }
    }
}

fn tally_answer(tally: &Tally, currency: Currency) -> wire::TallyAnswer {
    wire::TallyAnswer {
        count: tally.count,
        amount: Money::from_minor(tally.amount_minor, currency).to_major_string(),
    }
}

/// `GET /v1/merchants/{merchant_id}/stats`
pub async fn merchant_stats(state: Arc<AppState>, merchant_id: String, query: Query) -> Answer {
    let merchant_id = MerchantId::parse(&merchant_id)
        .map_err(|error| Refusal::invalid(error.to_string()).with_field("merchant_id"))?;
    let zone = zone(&query)?;
    let granularity = match query.get("granularity").map(String::as_str) {
        None | Some("day") => Granularity::Day,
        Some("hour") => Granularity::Hour,
        Some(_) => {
            return Err(
                Refusal::invalid("granularity must be day or hour").with_field("granularity")
            )
        }
    };
    let now = state.clock.now();
    let to = match instant(&query, "to", zone)? {
        Some(to) => to,
        None => next_bucket(bucket_start(now, granularity, zone), granularity, zone),
    };
    let from = match instant(&query, "from", zone)? {
        Some(from) => from,
        None => match granularity {
            Granularity::Day => {
                let today = bucket_start(now, granularity, zone)
                    .with_timezone(&zone)
                    .date_naive();
                day_start(today - Duration::days(6), zone)
            }
            Granularity::Hour => to - Duration::hours(24),
        },
    };
    if to <= from {
        return Err(Refusal::invalid("to must be after from").with_field("to"));
    }
    let (max_buckets, unit) = match granularity {
        Granularity::Day => (MAX_DAY_BUCKETS, "daily"),
        Granularity::Hour => (MAX_HOUR_BUCKETS, "hourly"),
    };
    let mut starts = vec![bucket_start(from, granularity, zone)];
    loop {
        let next = next_bucket(*starts.last().expect("one bucket"), granularity, zone);
        if next >= to {
            break;
        }
        if starts.len() == max_buckets {
            return Err(Refusal::invalid(format!(
                "from and to span more than {max_buckets} {unit} buckets; ask for less"
            ))
            .with_field("from"));
        }
        starts.push(next);
    }
    let model = state.model_for_request()?;
    if !model.merchants().contains_key(&merchant_id) {
        return Err(merchant_not_found(merchant_id.as_str()));
    }
    let known = model.stats_currencies(&merchant_id);
    let currency_code = match query.get("currency") {
        Some(code) => code.clone(),
        None => match known.as_slice() {
            [] => "CNY".to_owned(),
            [only] => only.clone(),
            several => {
                return Err(Refusal::invalid(format!(
                    "merchant {merchant_id} has figures in {}; name one with currency",
                    several.join(", ")
                ))
                .with_field("currency"))
            }
        },
    };
    let currency = Currency::from_str(&currency_code).map_err(|_| {
        Refusal::invalid(format!(
            "currency {currency_code:?} is not one paycenter takes"
        ))
        .with_field("currency")
    })?;
    // Quarter-hour rows: 100 cover a day that a clock change lengthens.
    let rows_per_bucket = match granularity {
        Granularity::Day => 100,
        Granularity::Hour => 4,
    };
    let first = starts[0];
    let rows = model.stats_rows(
        &merchant_id,
        currency.code(),
        first,
        to,
        starts.len() * rows_per_bucket,
    )?;
    drop(model);
    let mut sums: Vec<StatsBucket> = vec![StatsBucket::default(); starts.len()];
    let mut at = 0;
    for (row_start, row) in &rows {
        while at + 1 < starts.len() && *row_start >= starts[at + 1] {
            at += 1;
        }
        if *row_start >= first && *row_start < to {
            sums[at].merge(row);
        }
    }
    let buckets = starts
        .iter()
        .zip(&sums)
        .map(|(start, sum)| wire::StatsBucketAnswer {
            start: start.with_timezone(&zone).to_rfc3339(),
            payments: tally_answer(&sum.payments, currency),
            succeeded: tally_answer(&sum.succeeded, currency),
            refunds: tally_answer(&sum.refunds, currency),
            fees: Money::from_minor(sum.fees_minor, currency).to_major_string(),
            by_channel: sum
                .by_channel
                .iter()
                .map(|(channel, tally)| (channel.clone(), tally_answer(tally, currency)))
                .collect(),
            by_invoke_method: sum
                .by_invoke_method
                .iter()
                .map(|(method, tally)| (method.clone(), tally_answer(tally, currency)))
                .collect(),
        })
        .collect();
    Ok((
        StatusCode::OK,
        to_value(&wire::StatsAnswer {
            merchant_id: merchant_id.to_string(),
            currency: currency.code().to_owned(),
            granularity: match granularity {
                Granularity::Day => "day",
                Granularity::Hour => "hour",
            }
            .to_owned(),
            tz: zone.name().to_owned(),
            buckets,
        }),
    ))
}
