//! paycenter's own checkout page and the sandbox's "user pays" endpoint.

use std::sync::Arc;

use paycenter_domain::ids::TradeNo;
use paycenter_domain::payment::{AttemptStatus, Channel};
use paycenter_gateway::sandbox::SandboxOutcome;

use hyper::http::StatusCode;

use crate::error::{ErrorCode, Refusal};
use crate::http::dto::parse_object;
use crate::http::handlers::Answer;
use crate::state::AppState;

fn escape_html(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
        .replace('\'', "&#39;")
}

/// `GET /checkout/{trade_no}`: merchant, subject, amount, status; for the sandbox, pay buttons
/// (plain HTML forms, no JavaScript).
pub fn checkout_page(state: &AppState, trade_no: &str) -> (StatusCode, String) {
    let not_found = (
        StatusCode::NOT_FOUND,
        "<!doctype html><title>Not found</title><p>No such payment.</p>".to_owned(),
    );
    let Ok(trade_no) = TradeNo::parse(trade_no) else {
        return not_found;
    };
    let Ok(model) = state.read_model() else {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            "<!doctype html><title>Unavailable</title><p>Payments cannot be shown right now; try again in a minute.</p>".to_owned(),
        );
    };
    let Some(payment) = model.payments.get(&trade_no) else {
        return not_found;
    };
    let merchant = model
        .merchants
        .get(&payment.merchant_id)
        .cloned()
        .unwrap_or_default();
    let buttons = if payment.channel == Channel::Sandbox && payment.status == AttemptStatus::Pending
    {
        format!(
            r#"<form method="post" action="/sandbox/pay/{trade_no}"><input type="hidden" name="outcome" value="success"><button type="submit">Pay {amount} {currency}</button></form>
<form method="post" action="/sandbox/pay/{trade_no}"><input type="hidden" name="outcome" value="failure"><button type="submit">Decline</button></form>"#,
            amount = payment.amount.to_major_string(),
            currency = payment.amount.currency(),
        )
    } else if let (Some(qr_code), AttemptStatus::Pending) =
        (&payment.checkout_qr_code, payment.status)
    {
        // The channel's QR content (WeChat Pay `code_url`), for the user's phone to scan.
        format!(
            r#"<p>Scan with the {channel} app:</p><pre id="qr_code">{qr}</pre>"#,
            channel = escape_html(payment.channel.as_str()),
            qr = escape_html(qr_code),
        )
    } else {
        String::new()
    };
    let html = format!(
        r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Pay {merchant}</title>
<style>body{{font-family:system-ui,sans-serif;max-width:28rem;margin:3rem auto;padding:0 1rem}}dt{{color:#555}}dd{{margin:0 0 .8rem 0;font-size:1.1rem}}button{{font-size:1rem;padding:.6rem 1.2rem;margin:.3rem 0}}</style></head>
<body><h1>Checkout</h1>
<dl><dt>Merchant</dt><dd>{merchant}</dd><dt>For</dt><dd>{subject}</dd><dt>Amount</dt><dd>{amount} {currency}</dd><dt>Status</dt><dd id="status">{status}</dd><dt>Payment</dt><dd>{trade_no}</dd></dl>
{buttons}
</body></html>"#,
        merchant = escape_html(&merchant),
        subject = escape_html(&payment.subject),
        amount = payment.amount.to_major_string(),
        currency = payment.amount.currency(),
        status = payment.status.as_str(),
    );
    (StatusCode::OK, html)
}

/// The sandbox's optional `amount` (and `currency`): the sandbox then takes and reports that
/// money instead of the trade's, playing a channel whose report contradicts the attempt.
fn reported_money(
    state: &AppState,
    trade_no: &str,
    object: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<paycenter_domain::Money>, Refusal> {
    let amount = crate::http::dto::optional_str(object, "amount")?;
    let currency = crate::http::dto::optional_str(object, "currency")?;
    if amount.is_none() && currency.is_none() {
        return Ok(None);
    }
    let trade_currency = TradeNo::parse(trade_no)
        .ok()
        .and_then(|trade_no| state.sandbox_provider.trade(&trade_no))
        .map(|trade| trade.amount.currency());
    let currency = match currency {
        Some(code) => code
            .parse::<paycenter_domain::Currency>()
            .map_err(|error| Refusal::new(ErrorCode::InvalidCurrency, error.to_string()))?,
        None => match trade_currency {
            Some(currency) => currency,
            None => return Ok(None), // An unknown trade is answered below.
        },
    };
    let Some(amount) = amount else {
        return Err(Refusal::invalid("currency needs an amount"));
    };
    paycenter_domain::Money::parse_positive(amount, currency)
        .map(Some)
        .map_err(|error| Refusal::new(ErrorCode::InvalidAmount, error.to_string()))
}

/// `POST /sandbox/pay/{trade_no}` with `{"outcome": "success" | "failure", "race_close"?: bool}`
/// (JSON, or the checkout page's form). Plays the user; the outcome reaches paycenter by the
/// sandbox's callback. `race_close: true` pays a trade paycenter already closed (a payment that
/// raced the close), to exercise the automatic refund of late payments.
pub async fn sandbox_pay(
    state: Arc<AppState>,
    trade_no: String,
    content_type: Option<String>,
    body: bytes::Bytes,
) -> Answer {
    let mut race_close = false;
    let mut reported = None;
    let outcome_text = if content_type
        .as_deref()
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"))
    {
        let text =
            std::str::from_utf8(&body).map_err(|_| Refusal::invalid("form body is not UTF-8"))?;
        text.split('&')
            .find_map(|pair| pair.strip_prefix("outcome="))
            .unwrap_or("")
            .to_owned()
    } else {
        let object = parse_object(&body)?;
        crate::http::dto::check_fields(
            &object,
            "",
            &[
                ("outcome", crate::http::dto::MAX_TOKEN_CHARS),
                ("race_close", 0),
                ("amount", crate::http::dto::MAX_TOKEN_CHARS),
                ("currency", crate::http::dto::MAX_TOKEN_CHARS),
            ],
        )?;
        let request: crate::wire::SandboxPayRequest = crate::wire::read(&object)?;
        race_close = match object.get("race_close") {
            None | Some(serde_json::Value::Null) => false,
            Some(serde_json::Value::Bool(flag)) => *flag,
            Some(_) => return Err(Refusal::invalid("race_close must be true or false")),
        };
        reported = reported_money(&state, &trade_no, &object)?;
        request.outcome
    };
    let outcome = match outcome_text.as_str() {
        "success" => SandboxOutcome::Success,
        "failure" => SandboxOutcome::Failure,
        _ => {
            return Err(Refusal::invalid(
                "outcome must be \"success\" or \"failure\"",
            ))
        }
    };
    let trade_no =
        TradeNo::parse(&trade_no).map_err(|error| Refusal::invalid(error.to_string()))?;
    state
        .sandbox_provider
        .pay(&trade_no, outcome, race_close, reported)
        .map_err(|error| match error {
            paycenter_gateway::sandbox::SandboxError::UnknownTrade(_) => {
                Refusal::not_found(ErrorCode::PaymentNotFound, error.to_string())
            }
            _ => Refusal::new(ErrorCode::SandboxTradeNotPayable, error.to_string()),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        crate::wire::to_value(&crate::wire::SandboxPayAnswer {
            trade_no: trade_no.to_string(),
            outcome: outcome_text,
            message: "the sandbox will send its callback".to_owned(),
        }),
    ))
}
