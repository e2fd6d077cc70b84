//! Finding things, black-box over real HTTP: lists paged newest first without gaps or repeats,
//! filters by status, channel and dates across Beijing's midnight, apps kept apart, statistics
//! that sum to what the payments say, and the feed's creation entries.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

const ADMIN: &str = "lists-admin-token-0123456789";
const SANDBOX_SECRET: &str = "lists-sandbox-secret-0123456789";

fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    support::call_within(method, url, token, body, Duration::from_secs(20))
}

fn ok(method: &str, url: &str, token: &str, body: Option<Value>) -> Value {
    let (status, answer) = call(method, url, token, body);
    assert!(
        (200..300).contains(&status),
        "{method} {url}: {status} {answer}"
    );
    answer
}

fn wait_for(what: &str, done: impl FnMut() -> bool) {
    support::wait_for_within(
        what,
        Duration::from_secs(30),
        Duration::from_millis(50),
        done,
    )
}

fn instant(text: &Value) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text.as_str().unwrap())
        .unwrap()
        .with_timezone(&Utc)
}

/// Every item of a list, paged `limit` at a time; asserts each page's size and order.
fn page_through(base: &str, path_and_query: &str, token: &str, limit: usize) -> Vec<Value> {
    let separator = if path_and_query.contains('?') {
        '&'
    } else {
        '?'
    };
    let mut items: Vec<Value> = Vec::new();
    let mut id_field = None;
    for _ in 0..1_000 {
        let mut url = format!("{base}{path_and_query}{separator}limit={limit}");
        if let (Some(field), Some(last)) = (id_field, items.last()) {
            url.push_str(&format!(
                "&starting_after={}",
                last[field].as_str().unwrap()
            ));
        }
        let page = ok("GET", &url, token, None);
        let data = page["data"].as_array().unwrap().clone();
        let has_more = page["has_more"].as_bool().unwrap();
        assert!(data.len() <= limit);
        if has_more {
            assert_eq!(
                data.len(),
                limit,
                "a page short of its limit says it is the last"
            );
        }
        if id_field.is_none() {
            // An item's own id comes before the ids of what it belongs to.
            id_field = data.first().map(|item| {
                [
                    "reconciliation_id",
                    "refund_id",
                    "trade_no",
                    "channel_account_id",
                    "app_id",
                    "merchant_id",
                ]
                .into_iter()
                .find(|field| item.get(*field).is_some())
                .unwrap()
            });
        }
        items.extend(data);
        if !has_more {
            return items;
        }
    }
    panic!("a list that never ends");
}

struct Merchant {
    merchant_id: String,
    account_id: String,
}

fn onboard_merchant(base: &str, name: &str) -> Merchant {
    let merchant = ok(
        "POST",
        &format!("{base}/v1/merchants"),
        ADMIN,
        Some(json!({ "name": name })),
    );
    let merchant_id = merchant["merchant_id"].as_str().unwrap().to_owned();
    let account = ok(
        "POST",
        &format!("{base}/v1/merchants/{merchant_id}/channel-accounts"),
        ADMIN,
        Some(
            json!({"channel": "sandbox", "params": {"signing_secret": SANDBOX_SECRET}, "fee_rate": "0.006"}),
        ),
    );
    Merchant {
        merchant_id,
        account_id: account["channel_account_id"].as_str().unwrap().to_owned(),
    }
}

fn register_app(
    base: &str,
    name: &str,
    merchant_ids: &[&str],
    notify_url: &str,
) -> (String, String) {
    let app = ok(
        "POST",
        &format!("{base}/v1/apps"),
        ADMIN,
        Some(json!({"name": name, "merchant_ids": merchant_ids, "notify_url": notify_url})),
    );
    (
        app["app_id"].as_str().unwrap().to_owned(),
        app["api_key"].as_str().unwrap().to_owned(),
    )
}

fn start_payment(
    base: &str,
    key: &str,
    merchant: &Merchant,
    order_no: &str,
    amount: &str,
) -> String {
    let answer = ok(
        "POST",
        &format!("{base}/v1/payments"),
        key,
        Some(json!({
            "merchant_id": merchant.merchant_id, "channel_account_id": merchant.account_id,
            "order_no": order_no, "amount": amount, "currency": "CNY", "invoke_method": "pc",
            "subject": "rent"
        })),
    );
    answer["trade_no"].as_str().unwrap().to_owned()
}

fn settle_in_sandbox(base: &str, key: &str, trade_no: &str, outcome: &str) {
    let (status, answer) = call(
        "POST",
        &format!("{base}/sandbox/pay/{trade_no}"),
        "",
        Some(json!({ "outcome": outcome })),
    );
    assert_eq!(status, 202, "{answer}");
    let wanted = if outcome == "success" {
        "succeeded"
    } else {
        "failed"
    };
    wait_for("the sandbox's outcome", || {
        call("GET", &format!("{base}/v1/payments/{trade_no}"), key, None).1["status"] == wanted
    });
}

fn trade_nos(items: &[Value]) -> Vec<String> {
    items
        .iter()
        .map(|item| item["trade_no"].as_str().unwrap().to_owned())
        .collect()
}

/// The minor units of an amount like "12.34".
fn cents(amount: &Value) -> i64 {
    let text = amount.as_str().unwrap();
    let (whole, fraction) = text.split_once('.').unwrap();
    whole.parse::<i64>().unwrap() * 100 + fraction.parse::<i64>().unwrap()
}

#[test]
fn lists_page_filter_and_sum_across_beijing_midnight_and_keep_apps_apart() {
    // The server's clock stands 40 s before Beijing's midnight (16:00 UTC): payments are
    // started on both sides of it.
    // The next midnight, never a past one: the sandbox checks a trade's expiry with the real
    // clock, so a server clock set back would see its own trades expire.
    let now = Utc::now();
    let mut midnight_utc = now.date_naive().and_hms_opt(16, 0, 0).unwrap().and_utc();
    if midnight_utc - chrono::Duration::seconds(60) < now {
        midnight_utc += chrono::Duration::days(1);
    }
    let offset_seconds = (midnight_utc - chrono::Duration::seconds(40) - now).num_seconds();
    let data_dir = tempfile::tempdir().unwrap();
    let sink = support::acknowledging_webhook_sink();
    let (_server, base) = support::start_paycenter(
        data_dir.path(),
        ADMIN,
        &[
            ("PAYCENTER_ALLOW_PRIVATE_EGRESS", "1"),
            ("PAYCENTER_MIN_ATTEMPT_INTERVAL_MS", "1000"),
            (
                "PAYCENTER_FAULT_CLOCK_OFFSET_SECONDS",
                &offset_seconds.to_string(),
            ),
        ],
    );
    let started = std::time::Instant::now();
    let acme = onboard_merchant(&base, "Acme Property");
    let other = onboard_merchant(&base, "Other Estates");
    let third = onboard_merchant(&base, "Third Towers");
    let (app_a, key_a) = register_app(&base, "rent", &[&acme.merchant_id], &sink);
    let (app_b, key_b) = register_app(
        &base,
        "parking",
        &[&acme.merchant_id, &other.merchant_id],
        &sink,
    );

    // Before midnight: 100 payments of app A, 5 of app B.
    let mut started_a = Vec::new();
    for i in 0..100 {
        started_a.push(start_payment(
            &base,
            &key_a,
            &acme,
            &format!("A-{i}"),
            &format!("{}.{:02}", 10 + i, i),
        ));
    }
    let mut started_b = Vec::new();
    for i in 0..5 {
        started_b.push(start_payment(
            &base,
            &key_b,
            &acme,
            &format!("B-{i}"),
            "3.00",
        ));
    }
    // Some succeed and some fail, before midnight.
    for trade_no in started_a.iter().take(20).step_by(2) {
        settle_in_sandbox(&base, &key_a, trade_no, "success");
    }
    for trade_no in started_a.iter().skip(1).take(6).step_by(2) {
        settle_in_sandbox(&base, &key_a, trade_no, "failure");
    }
    assert!(
        started.elapsed() < Duration::from_secs(37),
        "the first half took {:?}: it must land before the server's midnight",
        started.elapsed()
    );
    // After midnight: 150 more of app A; some paid, some of those refunded.
    std::thread::sleep(Duration::from_secs(41).saturating_sub(started.elapsed()));
    for i in 100..250 {
        started_a.push(start_payment(
            &base,
            &key_a,
            &acme,
            &format!("A-{i}"),
            "20.00",
        ));
    }
    for trade_no in started_a.iter().skip(100).take(10) {
        settle_in_sandbox(&base, &key_a, trade_no, "success");
    }
    let mut refunds = Vec::new();
    for (n, trade_no) in started_a.iter().skip(100).take(4).enumerate() {
        let refund = ok(
            "POST",
            &format!("{base}/v1/payments/{trade_no}/refunds"),
            &key_a,
            Some(json!({"refund_no": format!("R-{n}"), "amount": "5.00"})),
        );
        refunds.push(refund["refund_id"].as_str().unwrap().to_owned());
    }
    wait_for("the refunds to succeed", || {
        refunds.iter().all(|refund_id| {
            let listed = ok(
                "GET",
                &format!("{base}/v1/refunds?status=succeeded&limit=100"),
                &key_a,
                None,
            );
            listed["data"]
                .as_array()
                .unwrap()
                .iter()
                .any(|item| item["refund_id"] == refund_id.as_str())
        })
    });

    // App A pages through its 250 in pages of 20: newest first, no gap, no repeat, none of B's.
    let listed_a = page_through(&base, "/v1/payments", &key_a, 20);
    let listed_trades = trade_nos(&listed_a);
    assert_eq!(listed_trades.len(), 250);
    let unique: BTreeSet<&String> = listed_trades.iter().collect();
    assert_eq!(unique.len(), 250, "no repeat");
    assert_eq!(
        unique,
        started_a.iter().collect::<BTreeSet<_>>(),
        "no gap, nothing of app B"
    );
    let created: Vec<DateTime<Utc>> = listed_a
        .iter()
        .map(|item| instant(&item["created_at"]))
        .collect();
    assert!(
        created.windows(2).all(|pair| pair[0] >= pair[1]),
        "newest first"
    );
    // App B sees its own five only; the admin sees all of the merchant's, or one app's.
    let listed_b = trade_nos(&page_through(&base, "/v1/payments", &key_b, 20));
    assert_eq!(
        listed_b.iter().collect::<BTreeSet<_>>(),
        started_b.iter().collect::<BTreeSet<_>>()
    );
    let by_admin = page_through(
        &base,
        &format!("/v1/payments?merchant_id={}", acme.merchant_id),
        ADMIN,
        100,
    );
    assert_eq!(by_admin.len(), 255);
    assert_eq!(
        page_through(&base, &format!("/v1/payments?app_id={app_b}"), ADMIN, 100).len(),
        5
    );
    assert_eq!(page_through(&base, "/v1/payments", ADMIN, 100).len(), 255);
    // Another app's payment is no cursor for B, and another merchant is not B's to list.
    let (status, refused) = call(
        "GET",
        &format!("{base}/v1/payments?starting_after={}", started_a[0]),
        &key_b,
        None,
    );
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (400, Some("invalid_request")),
        "{refused}"
    );
    let (status, _) = call(
        "GET",
        &format!("{base}/v1/payments?merchant_id={}", third.merchant_id),
        &key_b,
        None,
    );
    assert_eq!(status, 403);
    let (status, _) = call(
        "GET",
        &format!("{base}/v1/payments?app_id={app_a}"),
        &key_b,
        None,
    );
    assert_eq!(status, 400, "app_id is the admin's");
    // The admin's cursor must be an item of the list it pages: app B's payment is not one of
    // app A's list.
    let (status, _) = call(
        "GET",
        &format!(
            "{base}/v1/payments?app_id={app_a}&starting_after={}",
            started_b[0]
        ),
        ADMIN,
        None,
    );
    assert_eq!(status, 400);
    let (status, _) = call(
        "GET",
        &format!(
            "{base}/v1/payments?app_id={app_b}&starting_after={}",
            started_b[0]
        ),
        ADMIN,
        None,
    );
    assert_eq!(status, 200);

    // Filters, checked against what the payments themselves say.
    let by_status = |status: &str| -> BTreeSet<String> {
        listed_a
            .iter()
            .filter(|item| item["status"] == status)
            .map(|item| item["trade_no"].as_str().unwrap().to_owned())
            .collect()
    };
    for status in ["succeeded", "failed", "pending"] {
        let filtered = trade_nos(&page_through(
            &base,
            &format!("/v1/payments?status={status}"),
            &key_a,
            20,
        ));
        assert_eq!(
            filtered.into_iter().collect::<BTreeSet<_>>(),
            by_status(status),
            "{status}"
        );
    }
    assert_eq!(by_status("succeeded").len(), 20);
    assert_eq!(by_status("failed").len(), 3);
    assert_eq!(
        page_through(&base, "/v1/payments?channel=sandbox", &key_a, 100).len(),
        250
    );
    assert!(page_through(&base, "/v1/payments?channel=alipay", &key_a, 100).is_empty());
    // Beijing's days: 40 s before its midnight is still "yesterday" there.
    let beijing_today = (midnight_utc + chrono::Duration::hours(8)).date_naive();
    let beijing_yesterday = beijing_today.pred_opt().unwrap();
    let before_midnight: BTreeSet<String> = listed_a
        .iter()
        .filter(|item| instant(&item["created_at"]) < midnight_utc)
        .map(|item| item["trade_no"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        before_midnight.len(),
        100,
        "the first hundred landed before midnight"
    );
    let yesterday = trade_nos(&page_through(
        &base,
        &format!("/v1/payments?created_from={beijing_yesterday}&created_to={beijing_today}&tz=Asia/Shanghai"),
        &key_a,
        20,
    ));
    assert_eq!(
        yesterday.into_iter().collect::<BTreeSet<_>>(),
        before_midnight
    );
    let today = page_through(
        &base,
        &format!("/v1/payments?created_from={beijing_today}&tz=Asia/Shanghai&status=succeeded"),
        &key_a,
        20,
    );
    assert_eq!(today.len(), 10);
    // The same instant in RFC 3339: a UTC date would cut elsewhere.
    let from_rfc3339 = page_through(
        &base,
        &format!(
            "/v1/payments?created_to={}",
            (midnight_utc).to_rfc3339().replace('+', "%2B")
        ),
        &key_a,
        50,
    );
    assert_eq!(from_rfc3339.len(), 100);

    // Bad input: a clear 400 each.
    for query in [
        "limit=0",
        "limit=101",
        "limit=ten",
        "status=paid",
        "channel=paypal",
        "tz=Mars/Olympus",
        "created_from=yesterday",
        "created_from=2026-12-02&created_to=2026-12-01",
        "starting_after=202612020000000000000000000000",
    ] {
        let (status, refused) = call("GET", &format!("{base}/v1/payments?{query}"), &key_a, None);
        assert_eq!(status, 400, "{query}: {refused}");
        assert_eq!(refused["error"]["code"], "invalid_request", "{query}");
        assert!(!refused["error"]["message"].as_str().unwrap().is_empty());
    }
    let (status, refused) = call(
        "GET",
        &format!(
            "{base}/v1/payments?merchant_id={}&order_no=A-1",
            acme.merchant_id
        ),
        ADMIN,
        None,
    );
    assert_eq!(
        status, 400,
        "the admin names the app of an order: {refused}"
    );
    let found = ok(
        "GET",
        &format!(
            "{base}/v1/payments?merchant_id={}&order_no=A-1&app_id={app_a}",
            acme.merchant_id
        ),
        ADMIN,
        None,
    );
    assert_eq!(found["attempts"].as_array().unwrap().len(), 1);
    assert_eq!(found["trade_no"], started_a[1].as_str());
    // The admin reads any payment by its trade number; another app does not find it.
    let by_trade_no = ok(
        "GET",
        &format!("{base}/v1/payments/{}", started_a[1]),
        ADMIN,
        None,
    );
    assert_eq!(by_trade_no["order_no"], "A-1");
    let (status, _) = call(
        "GET",
        &format!("{base}/v1/payments/{}", started_a[1]),
        &key_b,
        None,
    );
    assert_eq!(status, 404);

    // Refunds: the app's, one payment's, by status; the other app sees none.
    let listed_refunds = page_through(&base, "/v1/refunds", &key_a, 3);
    assert_eq!(
        listed_refunds
            .iter()
            .map(|item| item["refund_id"].as_str().unwrap().to_owned())
            .collect::<BTreeSet<_>>(),
        refunds.iter().cloned().collect::<BTreeSet<_>>()
    );
    assert!(page_through(&base, "/v1/refunds", &key_b, 20).is_empty());
    let of_one = page_through(
        &base,
        &format!("/v1/refunds?trade_no={}", started_a[100]),
        &key_a,
        20,
    );
    assert_eq!(of_one.len(), 1);
    assert_eq!(of_one[0]["trade_no"], started_a[100].as_str());
    assert!(page_through(&base, "/v1/refunds?status=failed", &key_a, 20).is_empty());
    assert_eq!(
        page_through(
            &base,
            &format!("/v1/refunds?merchant_id={}", acme.merchant_id),
            ADMIN,
            20
        )
        .len(),
        4
    );

    // Statistics by Beijing day sum to what the payments say.
    let stats = ok(
        "GET",
        &format!(
            "{base}/v1/merchants/{}/stats?from={beijing_yesterday}&to={}&granularity=day&tz=Asia/Shanghai",
            acme.merchant_id,
            beijing_today.succ_opt().unwrap()
        ),
        ADMIN,
        None,
    );
    assert_eq!(stats["currency"], "CNY");
    let buckets = stats["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 2, "{stats}");
    assert_eq!(
        buckets[0]["start"],
        format!("{beijing_yesterday}T00:00:00+08:00").as_str()
    );
    let mut expected: BTreeMap<usize, (u64, i64, u64, i64, i64)> = BTreeMap::new();
    for item in &by_admin {
        let day = usize::from(instant(&item["created_at"]) >= midnight_utc);
        let entry = expected.entry(day).or_default();
        entry.0 += 1;
        entry.1 += cents(&item["amount"]);
        if item["status"] == "succeeded" {
            let paid_day = usize::from(instant(&item["paid_at"]) >= midnight_utc);
            let paid = expected.entry(paid_day).or_default();
            paid.2 += 1;
            paid.3 += cents(&item["amount"]);
            paid.4 += cents(&item["fee"]);
        }
    }
    for (day, bucket) in buckets.iter().enumerate() {
        let (count, amount, paid, paid_amount, fees) =
            expected.get(&day).copied().unwrap_or_default();
        assert_eq!(bucket["payments"]["count"], count, "day {day}: {bucket}");
        assert_eq!(cents(&bucket["payments"]["amount"]), amount, "day {day}");
        assert_eq!(bucket["succeeded"]["count"], paid, "day {day}");
        assert_eq!(
            cents(&bucket["succeeded"]["amount"]),
            paid_amount,
            "day {day}"
        );
        assert_eq!(cents(&bucket["fees"]), fees, "day {day}");
        assert_eq!(bucket["by_channel"]["sandbox"]["count"], paid, "day {day}");
        assert_eq!(bucket["by_invoke_method"]["pc"]["count"], paid, "day {day}");
    }
    assert_eq!(buckets[1]["refunds"]["count"], 4);
    assert_eq!(buckets[1]["refunds"]["amount"], "20.00");
    // By the hour in a zone half an hour off UTC: the same totals, cut at :30 UTC.
    let hourly = ok(
        "GET",
        &format!(
            "{base}/v1/merchants/{}/stats?from={}&to={}&granularity=hour&tz=Asia/Kolkata",
            acme.merchant_id,
            (midnight_utc - chrono::Duration::hours(3))
                .to_rfc3339()
                .replace('+', "%2B"),
            (midnight_utc + chrono::Duration::hours(3))
                .to_rfc3339()
                .replace('+', "%2B"),
        ),
        ADMIN,
        None,
    );
    let hourly = hourly["buckets"].as_array().unwrap();
    assert!(hourly
        .iter()
        .all(|bucket| bucket["start"].as_str().unwrap().ends_with(":00:00+05:30")));
    let total: u64 = hourly
        .iter()
        .map(|bucket| bucket["payments"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(total, 255);
    for query in [
        "granularity=week",
        "tz=Nowhere",
        "from=2020-01-01&to=2026-01-01",
        "currency=XXX",
        "to=2000-01-01",
    ] {
        let (status, refused) = call(
            "GET",
            &format!("{base}/v1/merchants/{}/stats?{query}", acme.merchant_id),
            ADMIN,
            None,
        );
        assert_eq!(status, 400, "{query}: {refused}");
    }
    let (status, _) = call(
        "GET",
        &format!("{base}/v1/merchants/mch_unknown/stats"),
        ADMIN,
        None,
    );
    assert_eq!(status, 404);
    let (status, _) = call(
        "GET",
        &format!("{base}/v1/merchants/{}/stats", acme.merchant_id),
        &key_a,
        None,
    );
    assert_eq!(status, 401, "statistics are the admin's");

    // The feed: each payment's creation as it started, each refund's as requested.
    let feed = ok(
        "GET",
        &format!("{base}/v1/events?after=0&limit=1000"),
        &key_a,
        None,
    );
    let events = feed["events"].as_array().unwrap();
    let created: Vec<&Value> = events
        .iter()
        .filter(|event| event["type"] == "payment.created")
        .collect();
    assert_eq!(created.len(), 250);
    assert!(created
        .iter()
        .all(|event| event["data"]["payment"]["status"] == "pending"
            && event["data"]["payment"]["paid_at"].is_null()
            && event["id"].as_str().unwrap().starts_with("evt_")));
    let refund_created: Vec<&Value> = events
        .iter()
        .filter(|event| event["type"] == "refund.created")
        .collect();
    assert_eq!(refund_created.len(), 4);
    assert!(refund_created
        .iter()
        .all(|event| event["data"]["refund"]["status"] == "pending"));
    let cursors: Vec<u64> = events
        .iter()
        .map(|event| event["cursor"].as_str().unwrap().parse().unwrap())
        .collect();
    assert!(cursors.windows(2).all(|pair| pair[0] < pair[1]));
    let feed_b = ok(
        "GET",
        &format!("{base}/v1/events?after=0&limit=1000"),
        &key_b,
        None,
    );
    assert_eq!(
        feed_b["events"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|event| event["type"] == "payment.created")
            .count(),
        5
    );

    // The registry: merchants newest first in pages, one merchant, its accounts, the apps.
    let merchants = page_through(&base, "/v1/merchants", ADMIN, 2);
    let names: Vec<&str> = merchants
        .iter()
        .map(|item| item["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Third Towers", "Other Estates", "Acme Property"]);
    let one = ok(
        "GET",
        &format!("{base}/v1/merchants/{}", other.merchant_id),
        ADMIN,
        None,
    );
    assert_eq!(one["name"], "Other Estates");
    let (status, missing) = call(
        "GET",
        &format!("{base}/v1/merchants/mch_nobody"),
        ADMIN,
        None,
    );
    assert_eq!(
        (status, missing["error"]["code"].as_str()),
        (404, Some("merchant_not_found"))
    );
    let accounts = ok(
        "GET",
        &format!("{base}/v1/merchants/{}/channel-accounts", acme.merchant_id),
        ADMIN,
        None,
    );
    assert_eq!(accounts["data"].as_array().unwrap().len(), 1);
    assert_eq!(
        accounts["data"][0]["channel_account_id"],
        acme.account_id.as_str()
    );
    assert!(
        accounts["data"][0].get("params").is_none(),
        "parameters hold keys: never answered"
    );
    assert!(!accounts.to_string().contains(SANDBOX_SECRET));
    let apps = page_through(&base, "/v1/apps", ADMIN, 1);
    assert_eq!(apps.len(), 2);
    assert_eq!(apps[0]["app_id"], app_b.as_str());
    assert!(apps
        .iter()
        .all(|app| app.get("api_key").is_none() && app.get("webhook_secret").is_none()));
    let of_other = ok(
        "GET",
        &format!("{base}/v1/apps?merchant_id={}", other.merchant_id),
        ADMIN,
        None,
    );
    assert_eq!(of_other["data"].as_array().unwrap().len(), 1);
    let (status, _) = call("GET", &format!("{base}/v1/merchants"), &key_a, None);
    assert_eq!(status, 401, "the registry is the admin's");

    // Reconciliations, newest first, by account.
    let beijing_or_utc_day = (midnight_utc - chrono::Duration::hours(1)).date_naive();
    let mut reconciliation_ids = Vec::new();
    for merchant in [&acme, &other] {
        let done = ok(
            "POST",
            &format!("{base}/v1/reconciliations"),
            ADMIN,
            Some(
                json!({"channel_account_id": merchant.account_id, "date": beijing_or_utc_day.to_string()}),
            ),
        );
        reconciliation_ids.push(done["reconciliation_id"].as_str().unwrap().to_owned());
    }
    let all = page_through(&base, "/v1/reconciliations", ADMIN, 1);
    let listed_ids: Vec<&str> = all
        .iter()
        .map(|item| item["reconciliation_id"].as_str().unwrap())
        .collect();
    assert_eq!(
        listed_ids,
        [
            reconciliation_ids[1].as_str(),
            reconciliation_ids[0].as_str()
        ]
    );
    let of_acme = ok(
        "GET",
        &format!(
            "{base}/v1/reconciliations?channel_account_id={}",
            acme.account_id
        ),
        ADMIN,
        None,
    );
    assert_eq!(of_acme["data"].as_array().unwrap().len(), 1);
    // Another account's reconciliation is no cursor for this one's list.
    let (status, _) = call(
        "GET",
        &format!(
            "{base}/v1/reconciliations?channel_account_id={}&starting_after={}",
            acme.account_id, reconciliation_ids[1]
        ),
        ADMIN,
        None,
    );
    assert_eq!(status, 400);
    assert_eq!(
        of_acme["data"][0]["reconciliation_id"],
        reconciliation_ids[0].as_str()
    );
}
