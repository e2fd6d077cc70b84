//! The console's pages: each reads through [`call`] (the admin API's operations, as the
//! signed-in operator) and answers a template with the answers' JSON, or, after a form, where
//! to go next.

use std::sync::Arc;

use hyper::http::StatusCode;
use hyper::Method;
use paycenter_domain::operators::{Actor, Permission};
use paycenter_domain::vocabulary::Channel;
use serde_json::{json, Value};

use super::{call, ConsoleRequest, Operator, Page};
use crate::error::{ErrorCode, Refusal};
use crate::http::routes::Operation;
use crate::service::history;
use crate::state::AppState;

/// What the reader's role may do, for the pages to show only buttons that work.
pub(super) fn permissions_of(actor: &Actor) -> Value {
    json!({
        "onboard": actor.may(Permission::Onboard),
        "operators": actor.may(Permission::ManageOperators),
        "refund": actor.may(Permission::Refund),
        "reconcile": actor.may(Permission::Reconcile),
        "audit": actor.may(Permission::Audit),
        "projections": actor.may(Permission::Projections),
        "notifications": actor.may(Permission::Notifications),
        "alerts": actor.may(Permission::Alerts),
    })
}

fn html(name: &'static str, context: Value) -> Result<Page, Refusal> {
    Ok(Page::Html(StatusCode::OK, name, context))
}

fn not_found() -> Refusal {
    Refusal::new(ErrorCode::RouteNotFound, "no such page in the console")
}

/// A page of lists keeps its place with `starting_after`; `limit` is the console's.
const PAGE_ITEMS: &str = "50";

/// Routes a signed-in request to its page.
pub(super) async fn page(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
) -> Result<Page, Refusal> {
    let segments: Vec<&str> = request.segments.iter().map(String::as_str).collect();
    let post = request.method == Method::POST;
    match (post, segments.as_slice()) {
        (false, []) => Ok(Page::Redirect("/console/payments".to_owned())),
        (false, ["merchants"]) => merchants(state, request, operator, None).await,
        (true, ["merchants"]) => create_merchant(state, request, operator).await,
        (false, ["merchants", merchant_id]) => {
            merchant(state, request, operator, merchant_id, None).await
        }
        (true, ["merchants", merchant_id, "channel-accounts"]) => {
            activate_account(state, request, operator, merchant_id).await
        }
        (true, ["merchants", merchant_id, "routing"]) => {
            let outcome =
                match serde_json::from_str::<Value>(request.field("rules").unwrap_or("[]")) {
                    Ok(rules) => call(
                        state,
                        operator,
                        Operation::SetRouting,
                        &[merchant_id],
                        &[],
                        Some(json!({ "rules": rules })),
                    )
                    .await
                    .map(|_| ()),
                    Err(error) => Err(Refusal::new(
                        ErrorCode::InvalidJson,
                        format!("the rules are not JSON: {error}"),
                    )),
                };
            match outcome {
                Ok(()) => Ok(Page::Redirect(format!("/console/merchants/{merchant_id}"))),
                Err(refusal) => {
                    merchant(state, request, operator, merchant_id, Some(Err(refusal))).await
                }
            }
        }
        (true, ["merchants", merchant_id, "channel-accounts", account_id, action]) => {
            account_action(state, request, operator, merchant_id, account_id, action).await
        }
        (false, ["apps"]) => apps(state, request, operator, None).await,
        (true, ["apps"]) => register_app(state, request, operator).await,
        (true, ["apps", app_id, action]) => {
            app_action(state, request, operator, app_id, action).await
        }
        (false, ["payments"]) => payments(state, request, operator).await,
        (false, ["payments", trade_no]) => payment(state, request, operator, trade_no, None).await,
        (true, ["payments", trade_no, "refunds"]) => {
            refund(state, request, operator, trade_no).await
        }
        (false, ["refunds"]) => refunds(state, request, operator).await,
        (false, ["payouts"]) => payouts(state, request, operator).await,
        (false, ["reconciliations"]) => reconciliations(state, request, operator, None).await,
        (true, ["reconciliations"]) => upload_bill(state, request, operator).await,
        (false, ["reconciliations", reconciliation_id]) => {
            let reconciliation = call(
                state,
                operator,
                Operation::GetReconciliation,
                &[reconciliation_id],
                &[],
                None,
            )
            .await?;
            html(
                "reconciliation.html",
                json!({"reconciliation": reconciliation}),
            )
        }
        (false, ["projections"]) => projections(state, operator, None).await,
        (true, ["projections", name, "rebuild"]) => {
            let outcome = call(
                state,
                operator,
                Operation::RebuildProjection,
                &[name],
                &[],
                None,
            )
            .await;
            projections(state, operator, Some(outcome.map(|_| ()))).await
        }
        (false, ["operators"]) => operators(state, operator, None).await,
        (true, ["operators"]) => create_operator(state, request, operator).await,
        (true, ["operators", operator_id, action]) => {
            let outcome = call(
                state,
                operator,
                Operation::OperatorAction,
                &[operator_id, action],
                &[],
                None,
            )
            .await;
            operators(state, operator, Some(outcome.map(|_| json!({})))).await
        }
        (false, ["trail"]) => trail(state, request, operator),
        (false, ["notifications"]) => notifications(state, request, operator, None).await,
        (true, ["notifications", notification_id, "redeliver"]) => {
            let outcome = call(
                state,
                operator,
                Operation::RedeliverNotification,
                &[notification_id],
                &[],
                None,
            )
            .await;
            notifications(state, request, operator, Some(outcome.map(|_| ()))).await
        }
        (false, ["audit"]) => audit(state, request, operator).await,
        (false, ["alerts"]) => alerts(state, request, operator, None).await,
        (true, ["alerts", "channels"]) => {
            let mut body = json!({
                "kind": request.field("kind").unwrap_or(""),
                "url": request.field("url").unwrap_or(""),
            });
            if let Some(secret) = request.field("secret") {
                body["secret"] = Value::from(secret);
            }
            let mobiles: Vec<&str> = request
                .field("at_mobiles")
                .unwrap_or("")
                .split([',', ' '])
                .filter(|mobile| !mobile.is_empty())
                .collect();
            if !mobiles.is_empty() {
                body["at_mobiles"] = json!(mobiles);
            }
            let outcome = call(
                state,
                operator,
                Operation::CreateAlertChannel,
                &[],
                &[],
                Some(body),
            )
            .await;
            alerts(state, request, operator, Some(outcome.map(|_| "created"))).await
        }
        (true, ["alerts", "channels", alert_channel_id, "test"]) => {
            let outcome = call(
                state,
                operator,
                Operation::TestAlertChannel,
                &[alert_channel_id],
                &[],
                None,
            )
            .await;
            // Not taken: the destination's answer, shown as the page's error.
            let outcome = outcome.and_then(|answer| match answer["error"].as_str() {
                None => Ok("tested"),
                Some(error) => Err(Refusal::invalid(format!(
                    "the destination did not take the test message: {error}"
                ))),
            });
            alerts(state, request, operator, Some(outcome)).await
        }
        (true, ["alerts", "channels", alert_channel_id, "delete"]) => {
            let outcome = call(
                state,
                operator,
                Operation::DeleteAlertChannel,
                &[alert_channel_id],
                &[],
                None,
            )
            .await;
            alerts(state, request, operator, Some(outcome.map(|_| "deleted"))).await
        }
        _ => Err(not_found()),
    }
}

/// A form's outcome shown on the page it came from: the refusal's sentence, or nothing.
fn outcome_error<T>(outcome: &Option<Result<T, Refusal>>) -> (StatusCode, Value) {
    match outcome {
        Some(Err(refusal)) => (
            StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::BAD_REQUEST),
            json!({"code": refusal.code.as_str(), "message": refusal.message}),
        ),
        _ => (StatusCode::OK, Value::Null),
    }
}

/// The first hundred items of a list, for a form's choices (merchants, apps).
async fn choices(
    state: &Arc<AppState>,
    operator: &Operator,
    operation: Operation,
) -> Result<Value, Refusal> {
    call(state, operator, operation, &[], &[("limit", "100")], None).await
}

/// One page of a list, where the request's `starting_after` says.
async fn page_of(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
    operation: Operation,
) -> Result<Value, Refusal> {
    let starting_after = request.query("starting_after").unwrap_or("");
    call(
        state,
        operator,
        operation,
        &[],
        &[("limit", PAGE_ITEMS), ("starting_after", starting_after)],
        None,
    )
    .await
}

async fn merchants(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
    outcome: Option<Result<(), Refusal>>,
) -> Result<Page, Refusal> {
    let list = page_of(state, request, operator, Operation::ListMerchants).await?;
    let (status, error) = outcome_error(&outcome);
    Ok(Page::Html(
        status,
        "merchants.html",
        json!({"nav": "merchants", "merchants": list, "error": error}),
    ))
}

async fn create_merchant(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
) -> Result<Page, Refusal> {
    let name = request.field("name").unwrap_or("");
    match call(
        state,
        operator,
        Operation::CreateMerchant,
        &[],
        &[],
        Some(json!({"name": name})),
    )
    .await
    {
        Ok(merchant) => Ok(Page::Redirect(format!(
            "/console/merchants/{}",
            merchant["merchant_id"].as_str().unwrap_or_default()
        ))),
        Err(refusal) => merchants(state, request, operator, Some(Err(refusal))).await,
    }
}

/// The parameters each channel's form asks for, from the channel's own list of names.
fn channel_forms(state: &AppState) -> Value {
    let forms: Vec<Value> = Channel::ALL
        .iter()
        .filter_map(|channel| {
            let adapter = state.channels.get(*channel)?;
            let fields: Vec<Value> = adapter
                .param_names()
                .iter()
                .map(|name| {
                    json!({
                        "name": name,
                        // PEM keys and certificates span lines.
                        "multiline": name.contains("private_key") || name.contains("public_key"),
                        "secret": name.contains("secret") || name.contains("private_key") || name.contains("api_v3_key"),
                    })
                })
                .collect();
            Some(json!({"channel": channel.as_str(), "fields": fields}))
        })
        .collect();
    Value::Array(forms)
}

async fn merchant(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
    merchant_id: &str,
    outcome: Option<Result<(), Refusal>>,
) -> Result<Page, Refusal> {
    let merchant = call(
        state,
        operator,
        Operation::GetMerchant,
        &[merchant_id],
        &[],
        None,
    )
    .await?;
    let accounts = call(
        state,
        operator,
        Operation::ListChannelAccounts,
        &[merchant_id],
        &[("limit", "100")],
        None,
    )
    .await?;
    let routing = call(
        state,
        operator,
        Operation::GetRouting,
        &[merchant_id],
        &[],
        None,
    )
    .await
    .map(|routing| serde_json::to_string_pretty(&routing["rules"]).unwrap_or_default())
    .unwrap_or_default();
    let receivers = call(
        state,
        operator,
        Operation::ListReceivers,
        &[merchant_id],
        &[],
        None,
    )
    .await
    .unwrap_or(Value::Null);
    let balances = call(
        state,
        operator,
        Operation::MerchantBalances,
        &[merchant_id],
        &[],
        None,
    )
    .await
    .unwrap_or(Value::Null);
    let granularity = match request.query("granularity") {
        Some("hour") => "hour",
        _ => "day",
    };
    let tz = request.query("tz").unwrap_or("Asia/Shanghai");
    let stats = call(
        state,
        operator,
        Operation::MerchantStats,
        &[merchant_id],
        &[
            ("granularity", granularity),
            ("tz", tz),
            ("currency", request.query("currency").unwrap_or("")),
        ],
        None,
    )
    .await;
    let (chart, stats) = match stats {
        Ok(stats) => (chart_svg(&stats), stats),
        Err(refusal) => (
            String::new(),
            json!({"error": {"code": refusal.code.as_str(), "message": refusal.message}}),
        ),
    };
    let (status, error) = outcome_error(&outcome);
    Ok(Page::Html(
        status,
        "merchant.html",
        json!({
            "nav": "merchants",
            "merchant": merchant,
            "accounts": accounts,
            "receivers": receivers,
            "balances": balances,
            "stats": stats,
            "chart_svg": chart,
            "granularity": granularity,
            "tz": tz,
            "channel_forms": channel_forms(state),
            "routing": routing,
            "error": error,
        }),
    ))
}

/// The statistics as bars (paid amount per bucket), drawn here so the page needs no script.
fn chart_svg(stats: &Value) -> String {
    let buckets = stats["buckets"].as_array().cloned().unwrap_or_default();
    let amounts: Vec<f64> = buckets
        .iter()
        .map(|bucket| {
            // Display only: the figures themselves are shown as the decimal strings answered.
            bucket["succeeded"]["amount"]
                .as_str()
                .and_then(|amount| amount.parse::<f64>().ok())
                .unwrap_or(0.0)
        })
        .collect();
    let (width, height) = (720.0_f64, 160.0_f64);
    let most = amounts.iter().cloned().fold(0.0_f64, f64::max);
    let n_bars = amounts.len().max(1) as f64;
    let bar_width = width / n_bars;
    let mut svg = format!(
        r#"<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" role="img" class="chart">"#
    );
    for (idx, (amount, bucket)) in amounts.iter().zip(&buckets).enumerate() {
        let bar_height = if most > 0.0 {
            amount / most * (height - 20.0)
        } else {
            0.0
        };
        let start = bucket["start"].as_str().unwrap_or_default();
        let label = escape(&format!(
            "{start}: {} ({})",
            bucket["succeeded"]["amount"].as_str().unwrap_or("0"),
            bucket["succeeded"]["count"]
        ));
        svg.push_str(&format!(
            r##"<rect x="{x:.1}" y="{y:.1}" width="{w:.1}" height="{h:.1}" fill="#2563eb"><title>{label}</title></rect>"##,
            x = idx as f64 * bar_width + 2.0,
            y = height - bar_height,
            w = (bar_width - 4.0).max(1.0),
            h = bar_height,
        ));
    }
    svg.push_str("</svg>");
    svg
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

async fn activate_account(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
    merchant_id: &str,
) -> Result<Page, Refusal> {
    let channel = request.field("channel").unwrap_or("");
    let mut params = serde_json::Map::new();
    if let Some(adapter) = Channel::parse(channel).and_then(|channel| state.channels.get(channel)) {
        for name in adapter.param_names() {
            if let Some(value) = request.field(&format!("param_{name}")) {
                params.insert((*name).to_owned(), Value::from(value.replace("\r\n", "\n")));
            }
        }
    }
    let mut body = json!({"channel": channel, "params": params});
    if let Some(fee_rate) = request.field("fee_rate") {
        body["fee_rate"] = Value::from(fee_rate);
    }
    let account_id = request.field("channel_account_id");
    let outcome = match account_id {
        // Rotation: the same account activated again with new keys.
        Some(account_id) => {
            call(
                state,
                operator,
                Operation::RotateChannelAccount,
                &[merchant_id, account_id],
                &[],
                Some(body),
            )
            .await
        }
        None => {
            call(
                state,
                operator,
                Operation::CreateChannelAccount,
                &[merchant_id],
                &[],
                Some(body),
            )
            .await
        }
    };
    match outcome {
        Ok(_) => Ok(Page::Redirect(format!("/console/merchants/{merchant_id}"))),
        Err(refusal) => merchant(state, request, operator, merchant_id, Some(Err(refusal))).await,
    }
}

async fn account_action(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
    merchant_id: &str,
    account_id: &str,
    action: &str,
) -> Result<Page, Refusal> {
    match call(
        state,
        operator,
        Operation::ChannelAccountAction,
        &[merchant_id, account_id, action],
        &[],
        None,
    )
    .await
    {
        Ok(_) => Ok(Page::Redirect(format!("/console/merchants/{merchant_id}"))),
        Err(refusal) => merchant(state, request, operator, merchant_id, Some(Err(refusal))).await,
    }
}

async fn apps(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
    outcome: Option<Result<(), Refusal>>,
) -> Result<Page, Refusal> {
    let list = call(
        state,
        operator,
        Operation::ListApps,
        &[],
        &[
            ("limit", PAGE_ITEMS),
            (
                "starting_after",
                request.query("starting_after").unwrap_or(""),
            ),
            ("merchant_id", request.query("merchant_id").unwrap_or("")),
        ],
        None,
    )
    .await?;
    let merchants = choices(state, operator, Operation::ListMerchants).await?;
    let (status, error) = outcome_error(&outcome);
    Ok(Page::Html(
        status,
        "apps.html",
        json!({"nav": "apps", "apps": list, "merchants": merchants, "error": error}),
    ))
}

async fn register_app(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
) -> Result<Page, Refusal> {
    let merchant_ids: Vec<&str> = request
        .form
        .iter()
        .filter(|(key, value)| key == "merchant_ids" && !value.trim().is_empty())
        .map(|(_, value)| value.trim())
        .collect();
    let body = json!({
        "name": request.field("name").unwrap_or(""),
        "merchant_ids": merchant_ids,
        "notify_url": request.field("notify_url").unwrap_or(""),
    });
    match call(state, operator, Operation::CreateApp, &[], &[], Some(body)).await {
        // The key and secret are shown this once: a page, not a redirect.
        Ok(created) => html("secrets.html", json!({"nav": "apps", "secrets": created})),
        Err(refusal) => apps(state, request, operator, Some(Err(refusal))).await,
    }
}

async fn app_action(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
    app_id: &str,
    action: &str,
) -> Result<Page, Refusal> {
    match call(
        state,
        operator,
        Operation::AppAction,
        &[app_id, action],
        &[],
        None,
    )
    .await
    {
        Ok(answer) if answer["api_key"].is_string() || answer["webhook_secret"].is_string() => {
            html("secrets.html", json!({"nav": "apps", "secrets": answer}))
        }
        Ok(_) => Ok(Page::Redirect("/console/apps".to_owned())),
        Err(refusal) => apps(state, request, operator, Some(Err(refusal))).await,
    }
}

/// Payments: a search by any of the three ids, or a filtered list.
async fn payments(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
) -> Result<Page, Refusal> {
    let merchants = choices(state, operator, Operation::ListMerchants).await?;
    let merchant_id = request.query("merchant_id").unwrap_or("");
    if let Some(q) = request.query("q") {
        let found = search(state, operator, merchant_id, q).await?;
        if let [only] = found.as_slice() {
            return Ok(Page::Redirect(format!(
                "/console/payments/{}",
                only["trade_no"].as_str().unwrap_or_default()
            )));
        }
        return html(
            "payments.html",
            json!({
                "nav": "payments",
                "merchants": merchants,
                "q": q,
                "merchant_id": merchant_id,
                "payments": {"data": found, "has_more": false},
                "searched": true,
            }),
        );
    }
    let status = request.query("status").unwrap_or("");
    let list = call(
        state,
        operator,
        Operation::FindPayments,
        &[],
        &[
            ("limit", PAGE_ITEMS),
            ("merchant_id", merchant_id),
            ("status", status),
            ("channel", request.query("channel").unwrap_or("")),
            ("created_from", request.query("created_from").unwrap_or("")),
            ("created_to", request.query("created_to").unwrap_or("")),
            ("tz", request.query("tz").unwrap_or("")),
            (
                "starting_after",
                request.query("starting_after").unwrap_or(""),
            ),
        ],
        None,
    )
    .await?;
    html(
        "payments.html",
        json!({
            "nav": "payments",
            "merchants": merchants,
            "merchant_id": merchant_id,
            "status": status,
            "channel": request.query("channel"),
            "created_from": request.query("created_from"),
            "created_to": request.query("created_to"),
            "payments": list,
        }),
    )
}

/// The payments `q` names: a trade number, a channel's trade number, or an order number of any
/// app acting for the merchant (order numbers are each app's own, so one may name several).
async fn search(
    state: &Arc<AppState>,
    operator: &Operator,
    merchant_id: &str,
    q: &str,
) -> Result<Vec<Value>, Refusal> {
    if let Ok(payment) = call(state, operator, Operation::GetPayment, &[q], &[], None).await {
        return Ok(vec![payment]);
    }
    if let Ok(payment) = call(
        state,
        operator,
        Operation::FindPayments,
        &[],
        &[("channel_trade_no", q)],
        None,
    )
    .await
    {
        return Ok(vec![payment]);
    }
    // Order numbers: every app of the merchant (or of every merchant), a bounded walk.
    let apps = call(
        state,
        operator,
        Operation::ListApps,
        &[],
        &[("limit", "100"), ("merchant_id", merchant_id)],
        None,
    )
    .await?;
    let mut found = Vec::new();
    for app in apps["data"].as_array().into_iter().flatten() {
        let app_id = app["app_id"].as_str().unwrap_or_default();
        for app_merchant in app["merchant_ids"].as_array().into_iter().flatten() {
            let app_merchant = app_merchant.as_str().unwrap_or_default();
            if !merchant_id.is_empty() && app_merchant != merchant_id {
                continue;
            }
            if let Ok(payment) = call(
                state,
                operator,
                Operation::FindPayments,
                &[],
                &[
                    ("app_id", app_id),
                    ("merchant_id", app_merchant),
                    ("order_no", q),
                ],
                None,
            )
            .await
            {
                found.push(payment);
            }
            if found.len() >= 100 {
                return Ok(found);
            }
        }
    }
    Ok(found)
}

async fn payment(
    state: &Arc<AppState>,
    _request: &ConsoleRequest,
    operator: &Operator,
    trade_no: &str,
    outcome: Option<Result<Value, Refusal>>,
) -> Result<Page, Refusal> {
    let payment = call(
        state,
        operator,
        Operation::GetPayment,
        &[trade_no],
        &[],
        None,
    )
    .await?;
    let timeline = history::payment_timeline(state, &operator.actor, trade_no)?;
    let timeline: Vec<Value> = timeline
        .into_iter()
        .rev()
        .map(|entry| {
            json!({
                "global_position": entry.global_position,
                "recorded_at": entry.recorded_at.to_rfc3339(),
                "event_type": entry.event_type,
                "trade_no": entry.trade_no,
                "actor": entry.actor.as_ref().map(|actor| actor.label().to_owned()),
                "payload": serde_json::to_string_pretty(&entry.payload).unwrap_or_default(),
                "hash": entry.hash,
            })
        })
        .collect();
    let (status, error) = outcome_error(&outcome);
    let refunded = match &outcome {
        Some(Ok(refund)) => refund.clone(),
        _ => Value::Null,
    };
    Ok(Page::Html(
        status,
        "payment.html",
        json!({
            "nav": "payments",
            "payment": payment,
            "timeline": timeline,
            "error": error,
            "refunded": refunded,
        }),
    ))
}

async fn refund(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
    trade_no: &str,
) -> Result<Page, Refusal> {
    let mut body = json!({
        "refund_no": request.field("refund_no").unwrap_or(""),
        "amount": request.field("amount").unwrap_or(""),
    });
    if let Some(reason) = request.field("reason") {
        body["reason"] = Value::from(reason);
    }
    let outcome = call(
        state,
        operator,
        Operation::CreateRefund,
        &[trade_no],
        &[],
        Some(body),
    )
    .await;
    payment(state, request, operator, trade_no, Some(outcome)).await
}

async fn refunds(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
) -> Result<Page, Refusal> {
    let status = request.query("status").unwrap_or("");
    let list = call(
        state,
        operator,
        Operation::ListRefunds,
        &[],
        &[
            ("limit", PAGE_ITEMS),
            ("status", status),
            ("merchant_id", request.query("merchant_id").unwrap_or("")),
            (
                "starting_after",
                request.query("starting_after").unwrap_or(""),
            ),
        ],
        None,
    )
    .await?;
    html(
        "refunds.html",
        json!({"nav": "refunds", "refunds": list, "status": status}),
    )
}

async fn payouts(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
) -> Result<Page, Refusal> {
    let merchant_id = request.query("merchant_id").unwrap_or("");
    let list = call(
        state,
        operator,
        Operation::ListPayouts,
        &[],
        &[
            ("limit", PAGE_ITEMS),
            ("merchant_id", merchant_id),
            (
                "starting_after",
                request.query("starting_after").unwrap_or(""),
            ),
        ],
        None,
    )
    .await?;
    html(
        "payouts.html",
        json!({"nav": "payouts", "payouts": list, "merchant_id": merchant_id}),
    )
}

async fn reconciliations(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
    outcome: Option<Result<(), Refusal>>,
) -> Result<Page, Refusal> {
    let list = page_of(state, request, operator, Operation::ListReconciliations).await?;
    let (status, error) = outcome_error(&outcome);
    Ok(Page::Html(
        status,
        "reconciliations.html",
        json!({"nav": "reconciliations", "reconciliations": list, "error": error}),
    ))
}

/// A bill pasted into the form (paycenter's CSV), reconciled like `POST /v1/reconciliations/upload`.
async fn upload_bill(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
) -> Result<Page, Refusal> {
    let account = request.field("channel_account_id").unwrap_or("");
    let date = request.field("date").unwrap_or("");
    let bill = request
        .form
        .iter()
        .find(|(key, _)| key == "bill")
        .map(|(_, value)| value.replace("\r\n", "\n"))
        .unwrap_or_default();
    let outcome = crate::http::operations::operate(
        state.clone(),
        operator.actor.clone(),
        Operation::ReconcileUpload,
        Vec::new(),
        [
            ("channel_account_id".to_owned(), account.to_owned()),
            ("date".to_owned(), date.to_owned()),
        ]
        .into_iter()
        .collect(),
        bytes::Bytes::from(bill),
    )
    .await;
    match outcome {
        Ok((_, answer)) => Ok(Page::Redirect(format!(
            "/console/reconciliations/{}",
            answer["reconciliation_id"].as_str().unwrap_or_default()
        ))),
        Err(refusal) => reconciliations(state, request, operator, Some(Err(refusal))).await,
    }
}

async fn projections(
    state: &Arc<AppState>,
    operator: &Operator,
    outcome: Option<Result<(), Refusal>>,
) -> Result<Page, Refusal> {
    let list = call(state, operator, Operation::ListProjections, &[], &[], None).await?;
    let (status, error) = outcome_error(&outcome);
    let started = matches!(outcome, Some(Ok(())));
    Ok(Page::Html(
        status,
        "projections.html",
        json!({"nav": "projections", "projections": list, "error": error, "started": started}),
    ))
}

async fn operators(
    state: &Arc<AppState>,
    operator: &Operator,
    outcome: Option<Result<Value, Refusal>>,
) -> Result<Page, Refusal> {
    let list = call(state, operator, Operation::ListOperators, &[], &[], None).await?;
    let (status, error) = outcome_error(&outcome);
    let created = match &outcome {
        Some(Ok(created)) => created.clone(),
        _ => Value::Null,
    };
    Ok(Page::Html(
        status,
        "operators.html",
        json!({"nav": "operators", "operators": list, "error": error, "created": created}),
    ))
}

async fn create_operator(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
) -> Result<Page, Refusal> {
    let body = json!({
        "email": request.field("email").unwrap_or(""),
        "name": request.field("name").unwrap_or(""),
        "role": request.field("role").unwrap_or(""),
    });
    let outcome = call(
        state,
        operator,
        Operation::CreateOperator,
        &[],
        &[],
        Some(body),
    )
    .await;
    operators(state, operator, Some(outcome)).await
}

fn trail(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
) -> Result<Page, Refusal> {
    let below = match request.query("below") {
        Some(text) => Some(
            text.parse::<u64>()
                .map_err(|_| Refusal::invalid("below must be a position"))?,
        ),
        None => None,
    };
    let (entries, next) = history::trail(state, &operator.actor, below)?;
    let entries: Vec<Value> = entries
        .into_iter()
        .map(|entry| {
            let role = match &entry.actor {
                Actor::Operator { role, .. } => role.as_str(),
                Actor::AdminToken => "admin",
            };
            json!({
                "global_position": entry.global_position,
                "recorded_at": entry.recorded_at.to_rfc3339(),
                "event_type": entry.event_type,
                "stream_id": entry.stream_id,
                "actor": entry.actor.label(),
                "role": role,
            })
        })
        .collect();
    html(
        "trail.html",
        json!({"nav": "trail", "entries": entries, "next": next}),
    )
}

/// An app's webhooks with their last error; redelivery for those whose role has it.
async fn notifications(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
    outcome: Option<Result<(), Refusal>>,
) -> Result<Page, Refusal> {
    let apps = choices(state, operator, Operation::ListApps).await?;
    let app_id = request
        .query("app_id")
        .or_else(|| request.field("app_id"))
        .map(str::to_owned)
        .or_else(|| apps["data"][0]["app_id"].as_str().map(str::to_owned))
        .unwrap_or_default();
    let status = request.query("status").unwrap_or("");
    let list = if app_id.is_empty() {
        json!({"notifications": []})
    } else {
        call(
            state,
            operator,
            Operation::ListNotifications,
            &[],
            &[("app_id", &app_id), ("status", status)],
            None,
        )
        .await?
    };
    let (code, error) = outcome_error(&outcome);
    Ok(Page::Html(
        code,
        "notifications.html",
        json!({
            "nav": "notifications",
            "apps": apps,
            "app_id": app_id,
            "status": status,
            "notifications": list["notifications"],
            "error": error,
            "redelivered": matches!(outcome, Some(Ok(()))),
        }),
    ))
}

/// A merchant's balances as of an instant (`at`: RFC 3339, or a date whose end in `tz` is meant).
async fn audit(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
) -> Result<Page, Refusal> {
    let merchants = choices(state, operator, Operation::ListMerchants).await?;
    let merchant_id = request.query("merchant_id").unwrap_or("");
    let at_text = request.query("at").unwrap_or("");
    let tz = request.query("tz").unwrap_or("Asia/Shanghai");
    let mut context = json!({
        "nav": "audit",
        "merchants": merchants,
        "merchant_id": merchant_id,
        "at": at_text,
        "tz": tz,
    });
    if merchant_id.is_empty() || at_text.is_empty() {
        return html("audit.html", context);
    }
    let merchant = paycenter_domain::ids::MerchantId::parse(merchant_id)
        .map_err(|error| Refusal::invalid(error.to_string()).with_field("merchant_id"))?;
    let at = audit_instant(at_text, tz)?;
    let as_of = history::balances_as_of(state, &operator.actor, &merchant, at)?;
    context["as_of"] = json!(at.to_rfc3339());
    context["position"] = json!(as_of.position);
    context["balances"] = as_of
        .lines
        .into_iter()
        .map(|(account, currency, minor)| {
            json!({
                "account": account,
                "currency": currency.code(),
                "balance": paycenter_domain::Money::format_balance(minor, currency),
            })
        })
        .collect();
    html("audit.html", context)
}

/// `at` as an instant: RFC 3339 as given, or a date `YYYY-MM-DD` meaning the end of that day in
/// `tz` (the balances after its last event).
fn audit_instant(at: &str, tz: &str) -> Result<chrono::DateTime<chrono::Utc>, Refusal> {
    if let Ok(instant) = chrono::DateTime::parse_from_rfc3339(at) {
        return Ok(instant.with_timezone(&chrono::Utc));
    }
    let zone: chrono_tz::Tz = tz
        .parse()
        .map_err(|_| Refusal::invalid(format!("{tz} is not an IANA time zone")).with_field("tz"))?;
    let date = chrono::NaiveDate::parse_from_str(at, "%Y-%m-%d").map_err(|_| {
        Refusal::invalid("at must be RFC 3339 or a date YYYY-MM-DD").with_field("at")
    })?;
    let next_day = date
        .succ_opt()
        .and_then(|day| day.and_hms_opt(0, 0, 0))
        .ok_or_else(|| Refusal::invalid("at is out of range").with_field("at"))?;
    use chrono::TimeZone;
    let start_of_next = zone
        .from_local_datetime(&next_day)
        .earliest()
        .ok_or_else(|| Refusal::invalid("that day has no end in that zone").with_field("at"))?;
    Ok(start_of_next.with_timezone(&chrono::Utc) - chrono::Duration::microseconds(1))
}

/// Alerts (open first, then resolved) and where they go.
async fn alerts(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    operator: &Operator,
    outcome: Option<Result<&'static str, Refusal>>,
) -> Result<Page, Refusal> {
    let status = match request.query("status") {
        Some("resolved") => "resolved",
        _ => "open",
    };
    let list = call(
        state,
        operator,
        Operation::ListAlerts,
        &[],
        &[
            ("status", status),
            ("limit", PAGE_ITEMS),
            (
                "starting_after",
                request.query("starting_after").unwrap_or(""),
            ),
        ],
        None,
    )
    .await?;
    let channels = call(
        state,
        operator,
        Operation::ListAlertChannels,
        &[],
        &[],
        None,
    )
    .await?;
    let (code, error) = outcome_error(&outcome);
    let done = match outcome {
        Some(Ok(done)) => Value::from(done),
        _ => Value::Null,
    };
    Ok(Page::Html(
        code,
        "alerts.html",
        json!({
            "nav": "alerts",
            "status": status,
            "alerts": list,
            "channels": channels,
            "error": error,
            "done": done,
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_audit_date_means_the_end_of_that_day_in_its_zone() {
        let at = audit_instant("2026-12-01", "Asia/Shanghai").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-01T15:59:59.999999+00:00");
        let at = audit_instant("2026-12-01T08:00:00+08:00", "UTC").unwrap();
        assert_eq!(at.to_rfc3339(), "2026-12-01T00:00:00+00:00");
        assert!(audit_instant("yesterday", "UTC").is_err());
        assert!(audit_instant("2026-12-01", "Mars/Olympus").is_err());
    }
}
