//! Payouts over HTTP against the `paycenter` binary on the sandbox channel: refused beyond what
//! the merchant earned, paid, failed (the money is the merchant's again), replayed, sixteen at
//! once never overdrawing, a refund after a payout (the ledger keeps running), and a payout
//! pending across `kill -9`.

mod support;

use std::time::Duration;

use serde_json::{json, Value};
use support::{acknowledging_webhook_sink, call_within, start_paycenter, wait_for_within};

const ADMIN_TOKEN: &str = "payouts-admin-token-0123456789";

fn call(method: &str, url: &str, token: &str, body: Option<Value>) -> (u16, Value) {
    call_within(method, url, token, body, Duration::from_secs(30))
}

fn wait_for(what: &str, done: impl FnMut() -> bool) {
    wait_for_within(
        what,
        Duration::from_secs(30),
        Duration::from_millis(50),
        done,
    )
}

fn start(data_dir: &std::path::Path) -> (support::Process, String) {
    start_paycenter(
        data_dir,
        ADMIN_TOKEN,
        &[
            ("PAYCENTER_ALLOW_PRIVATE_EGRESS", "1"),
            ("PAYCENTER_MIN_ATTEMPT_INTERVAL_MS", "0"),
        ],
    )
}

/// A merchant, its sandbox account and an app, with `n_paid` payments of 100.00 paid.
fn merchant_with_earnings(base: &str, n_paid: usize) -> (String, String, String, Vec<String>) {
    let (status, merchant) = call(
        "POST",
        &format!("{base}/v1/merchants"),
        ADMIN_TOKEN,
        Some(json!({"name": "Payout Estates"})),
    );
    assert_eq!(status, 201, "{merchant}");
    let merchant_id = merchant["merchant_id"].as_str().unwrap().to_owned();
    let (status, account) = call(
        "POST",
        &format!("{base}/v1/merchants/{merchant_id}/channel-accounts"),
        ADMIN_TOKEN,
        Some(json!({"channel": "sandbox", "params": {}})),
    );
    assert_eq!(status, 201, "{account}");
    let account_id = account["channel_account_id"].as_str().unwrap().to_owned();
    let (status, app) = call(
        "POST",
        &format!("{base}/v1/apps"),
        ADMIN_TOKEN,
        Some(json!({"name": "estates", "merchant_ids": [merchant_id],
                    "notify_url": acknowledging_webhook_sink()})),
    );
    assert_eq!(status, 201, "{app}");
    let api_key = app["api_key"].as_str().unwrap().to_owned();
    let mut trades = Vec::new();
    for index in 0..n_paid {
        let (status, payment) = call(
            "POST",
            &format!("{base}/v1/payments"),
            &api_key,
            Some(
                json!({"merchant_id": merchant_id, "channel_account_id": account_id,
                        "order_no": format!("rent-{index}"), "amount": "100.00", "currency": "CNY",
                        "invoke_method": "pc", "subject": "rent"}),
            ),
        );
        assert_eq!(status, 201, "{payment}");
        let trade_no = payment["trade_no"].as_str().unwrap().to_owned();
        let (status, _) = call(
            "POST",
            &format!("{base}/sandbox/pay/{trade_no}"),
            "",
            Some(json!({"outcome": "success"})),
        );
        assert_eq!(status, 202);
        trades.push(trade_no);
    }
    for trade_no in &trades {
        wait_for("paid", || {
            call(
                "GET",
                &format!("{base}/v1/payments/{trade_no}"),
                &api_key,
                None,
            )
            .1["status"]
                == "succeeded"
        });
    }
    (merchant_id, account_id, api_key, trades)
}

fn payout(
    base: &str,
    merchant_id: &str,
    account_id: &str,
    payout_no: &str,
    amount: &str,
    wallet: &str,
) -> (u16, Value) {
    call(
        "POST",
        &format!("{base}/v1/payouts"),
        ADMIN_TOKEN,
        Some(
            json!({"merchant_id": merchant_id, "channel_account_id": account_id,
                    "payout_no": payout_no, "amount": amount, "currency": "CNY",
                    "receiver": {"type": "sandbox", "account": wallet}}),
        ),
    )
}

fn wait_status(base: &str, payout_id: &str, status: &str) -> Value {
    support::wait_payout(base, ADMIN_TOKEN, payout_id, status)
}

fn balance(base: &str, merchant_id: &str, account: &str) -> String {
    support::balance(base, ADMIN_TOKEN, merchant_id, account)
}

#[test]
fn payouts_never_pay_more_than_was_earned() {
    let dir = tempfile::tempdir().unwrap();
    let (server, base) = start(dir.path());
    let (merchant_id, account_id, api_key, trades) = merchant_with_earnings(&base, 3);
    assert_eq!(balance(&base, &merchant_id, "payable"), "300.00");

    // Hostile or impossible requests: each refused with its reason, nothing recorded.
    for (body, expected) in [
        (
            json!({"payout_no": "p-big", "amount": "300.01"}),
            (422, "insufficient_balance"),
        ),
        (
            json!({"payout_no": "p-zero", "amount": "0"}),
            (400, "invalid_amount"),
        ),
        (
            json!({"payout_no": "p sp", "amount": "1.00"}),
            (400, "invalid_request"),
        ),
        (
            json!({"payout_no": "p-type", "receiver": {"type": "iban", "account": "x"}}),
            (400, "invalid_request"),
        ),
        (
            json!({"payout_no": "p-wx", "receiver": {"type": "wechat_openid", "account": "o1"}}),
            (400, "invalid_request"),
        ),
        (
            json!({"payout_no": "p-extra", "extra": 1}),
            (400, "unknown_field"),
        ),
        (
            json!({"payout_no": "p-acct", "channel_account_id": "ca_00000000000000000000000000000000"}),
            (404, "channel_account_not_found"),
        ),
        (
            json!({"payout_no": "p-mch", "merchant_id": "mch_00000000000000000000000000000000"}),
            (404, "merchant_not_found"),
        ),
        (
            json!({"payout_no": "p-app", "app_id": "app_00000000000000000000000000000000"}),
            (404, "app_not_found"),
        ),
        (
            json!({"payout_no": "p-app2", "app_id": "not an app"}),
            (400, "invalid_request"),
        ),
    ] {
        let mut request = json!({"merchant_id": merchant_id, "channel_account_id": account_id,
                                 "payout_no": "p", "amount": "1.00", "currency": "CNY",
                                 "receiver": {"type": "sandbox", "account": "wallet-1"}});
        for (key, value) in body.as_object().unwrap() {
            request[key] = value.clone();
        }
        let (status, answer) = call(
            "POST",
            &format!("{base}/v1/payouts"),
            ADMIN_TOKEN,
            Some(request.clone()),
        );
        assert_eq!(
            (status, answer["error"]["code"].as_str().unwrap_or("")),
            expected,
            "{request} -> {answer}"
        );
    }

    // One paid: payable down, clearing down, the memo of what was paid out up.
    let (status, first) = payout(
        &base,
        &merchant_id,
        &account_id,
        "p-1",
        "100.00",
        "wallet-1",
    );
    assert_eq!(
        (status, first["status"].as_str()),
        (201, Some("pending")),
        "{first}"
    );
    let payout_id = first["payout_id"].as_str().unwrap().to_owned();
    let paid = wait_status(&base, &payout_id, "succeeded");
    assert!(
        paid["channel_payout_no"]
            .as_str()
            .unwrap()
            .starts_with("SBXP-"),
        "{paid}"
    );
    assert_eq!(balance(&base, &merchant_id, "payable"), "200.00");
    assert_eq!(
        balance(&base, &merchant_id, &format!("clearing:{account_id}")),
        "200.00"
    );
    assert_eq!(balance(&base, &merchant_id, "paid_out"), "100.00");
    // Replayed: the same payout; another amount under the same number: refused.
    let (status, again) = payout(
        &base,
        &merchant_id,
        &account_id,
        "p-1",
        "100.00",
        "wallet-1",
    );
    assert_eq!(
        (status, again["payout_id"].as_str()),
        (201, Some(payout_id.as_str())),
        "{again}"
    );
    let (status, reused) = payout(&base, &merchant_id, &account_id, "p-1", "99.00", "wallet-1");
    assert_eq!(
        (status, reused["error"]["code"].as_str()),
        (409, Some("payout_no_reused")),
        "{reused}"
    );

    // One failing: the money is the merchant's again.
    let (status, failing) = payout(
        &base,
        &merchant_id,
        &account_id,
        "p-2",
        "200.00",
        "fail-wallet",
    );
    assert_eq!(status, 201, "{failing}");
    let failed = wait_status(&base, failing["payout_id"].as_str().unwrap(), "failed");
    assert!(
        failed["failure_reason"]
            .as_str()
            .unwrap()
            .contains("refused"),
        "{failed}"
    );
    assert_eq!(balance(&base, &merchant_id, "payable"), "200.00");

    // The merchant's app hears of both by webhook (its feed carries what the webhooks did).
    wait_for("the payout webhooks", || {
        let (_, feed) = call("GET", &format!("{base}/v1/events"), &api_key, None);
        let events = feed["events"].as_array().cloned().unwrap_or_default();
        let has = |kind: &str, payout_id: &str| {
            events.iter().any(|event| {
                event["type"] == kind && event["data"]["payout"]["payout_id"] == payout_id
            })
        };
        has("payout.succeeded", &payout_id)
            && has("payout.failed", failing["payout_id"].as_str().unwrap())
    });
    // The day's reconciliation asks the channel about both: paid and failed alike agree.
    let today = chrono::Utc::now().date_naive().to_string();
    let (status, reconciled) = call(
        "POST",
        &format!("{base}/v1/reconciliations"),
        ADMIN_TOKEN,
        Some(json!({"channel_account_id": account_id, "date": today})),
    );
    assert_eq!(status, 201, "{reconciled}");
    assert_eq!(
        reconciled["payouts"],
        json!({"checked": 2, "matched": 2, "discrepancies": []}),
        "{reconciled}"
    );

    // Sixteen at once against 200.00, 30.00 each: six pass, never more.
    let answers: Vec<(u16, Value)> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|index| {
                let (base, merchant_id, account_id) = (&base, &merchant_id, &account_id);
                scope.spawn(move || {
                    // A conflict with another payout decided at the same moment answers 409
                    // concurrent_update: the same request again is safe (same payout_no).
                    for _ in 0..50 {
                        let answer = payout(
                            base,
                            merchant_id,
                            account_id,
                            &format!("c-{index}"),
                            "30.00",
                            "wallet-2",
                        );
                        if answer.1["error"]["code"] != "concurrent_update" {
                            return answer;
                        }
                    }
                    panic!("c-{index} met a conflict 50 times");
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|handle| handle.join().unwrap())
            .collect()
    });
    let accepted: Vec<&Value> = answers
        .iter()
        .filter(|(status, _)| *status == 201)
        .map(|(_, answer)| answer)
        .collect();
    let refused = answers
        .iter()
        .filter(|(status, answer)| {
            *status == 422 && answer["error"]["code"] == "insufficient_balance"
        })
        .count();
    assert_eq!((accepted.len(), refused), (6, 10), "{answers:?}");
    for answer in &accepted {
        wait_status(&base, answer["payout_id"].as_str().unwrap(), "succeeded");
    }
    assert_eq!(balance(&base, &merchant_id, "payable"), "20.00");
    assert_eq!(balance(&base, &merchant_id, "paid_out"), "280.00");
    let (_, listed) = call(
        "GET",
        &format!("{base}/v1/payouts?merchant_id={merchant_id}&limit=5"),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(listed["data"].as_array().unwrap().len(), 5, "{listed}");
    assert_eq!(listed["has_more"], true);
    let (_, rest) = call(
        "GET",
        &format!(
            "{base}/v1/payouts?merchant_id={merchant_id}&limit=100&starting_after={}",
            listed["data"][4]["payout_id"].as_str().unwrap()
        ),
        ADMIN_TOKEN,
        None,
    );
    assert_eq!(
        rest["data"].as_array().unwrap().len(),
        3,
        "8 payouts in all: {rest}"
    );

    // A refund after the payouts takes back money the merchant already received: its payable
    // goes below zero (it owes it), and the ledger keeps running.
    let (status, refund) = call(
        "POST",
        &format!("{base}/v1/payments/{}/refunds", trades[0]),
        &api_key,
        Some(json!({"refund_no": "after-payout", "amount": "100.00"})),
    );
    assert_eq!(status, 201, "{refund}");
    wait_for("refund succeeded", || {
        call(
            "GET",
            &format!("{base}/v1/payments/{}", trades[0]),
            &api_key,
            None,
        )
        .1["refunds"][0]["status"]
            == "succeeded"
    });
    assert_eq!(balance(&base, &merchant_id, "payable"), "-80.00");
    let (status, refused) = payout(&base, &merchant_id, &account_id, "p-3", "0.01", "wallet-1");
    assert_eq!(
        (status, refused["error"]["code"].as_str()),
        (422, Some("insufficient_balance")),
        "{refused}"
    );
    let (status, health) = call("GET", &format!("{base}/healthz"), "", None);
    assert_eq!(status, 200, "{health}");

    // A payout decided just before SIGKILL is paid by the restarted service.
    let (other, other_account, _, _) = merchant_with_earnings(&base, 1);
    let (status, pending) = payout(
        &base,
        &other,
        &other_account,
        "p-restart",
        "50.00",
        "wallet-3",
    );
    assert_eq!(status, 201, "{pending}");
    drop(server); // SIGKILL
    let (_server, base) = start(dir.path());
    wait_status(&base, pending["payout_id"].as_str().unwrap(), "succeeded");
    assert_eq!(balance(&base, &other, "payable"), "50.00");
}
