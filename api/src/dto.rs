//! Wire types: how requests are read and answers written. These are a compatibility promise
//! to apps, kept apart from domain types and converted by hand.

use paycenter_domain::payment::{AttemptStatus, RefundStatus};
use paycenter_domain::{Currency, Money};
use paycenter_projections::model::{PaymentView, RefundView};
use serde_json::{json, Map, Value};

use crate::error::ApiError;

/// The most bytes a request body may have.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// Parses a body that must be a JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        ApiError::new(
            warp::http::StatusCode::BAD_REQUEST,
            "invalid_json",
            format!("the body is not valid JSON: {error}"),
        )
    })?;
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(ApiError::invalid("the body must be a JSON object")),
    }
}

/// A required string field.
pub fn required_str<'a>(object: &'a Map<String, Value>, field: &str) -> Result<&'a str, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Err(ApiError::invalid(format!("{field} is required"))),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(ApiError::invalid(format!("{field} must be a string"))),
    }
}

/// An optional string field.
pub fn optional_str<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, ApiError> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(ApiError::invalid(format!("{field} must be a string"))),
    }
}

/// An amount field in major units, as a string, in `currency`.
pub fn amount_field(
    object: &Map<String, Value>,
    field: &str,
    currency: Currency,
) -> Result<Money, ApiError> {
    let text = match object.get(field) {
        None | Some(Value::Null) => return Err(ApiError::invalid(format!("{field} is required"))),
        Some(Value::String(text)) => text,
        Some(Value::Number(_)) => {
            return Err(ApiError::new(
                warp::http::StatusCode::BAD_REQUEST,
                "invalid_amount",
                format!("{field} must be a decimal string such as \"12.34\", not a JSON number"),
            ))
        }
        Some(_) => {
            return Err(ApiError::invalid(format!(
                "{field} must be a decimal string"
            )))
        }
    };
    Money::parse_positive(text, currency).map_err(|error| {
        ApiError::new(
            warp::http::StatusCode::BAD_REQUEST,
            "invalid_amount",
            format!("{field}: {error}"),
        )
    })
}

/// A currency field.
pub fn currency_field(object: &Map<String, Value>) -> Result<Currency, ApiError> {
    let text = required_str(object, "currency")?;
    text.parse().map_err(|_| {
        ApiError::new(
            warp::http::StatusCode::BAD_REQUEST,
            "invalid_currency",
            format!("currency {text:?} is not supported"),
        )
    })
}

/// Status names on the wire.
pub fn attempt_status(status: AttemptStatus) -> &'static str {
    match status {
        AttemptStatus::Pending => "pending",
        AttemptStatus::Succeeded => "succeeded",
        AttemptStatus::Failed => "failed",
        AttemptStatus::Closed => "closed",
    }
}

/// Refund status names on the wire.
pub fn refund_status(status: RefundStatus) -> &'static str {
    match status {
        RefundStatus::Pending => "pending",
        RefundStatus::Succeeded => "succeeded",
        RefundStatus::Failed => "failed",
    }
}

/// A refund as apps see it.
pub fn refund_json(refund: &RefundView) -> Value {
    json!({
        "refund_id": refund.refund_id,
        "refund_no": refund.refund_no,
        "trade_no": refund.trade_no,
        "amount": refund.amount.to_major_string(),
        "currency": refund.amount.currency().code(),
        "reason": refund.reason,
        "kind": match refund.kind { paycenter_domain::payment::RefundKind::App => "app", paycenter_domain::payment::RefundKind::Automatic => "automatic" },
        "status": refund_status(refund.status),
        "created_at": refund.requested_at.to_rfc3339(),
    })
}

/// The payment object (design §3).
pub fn payment_json(payment: &PaymentView) -> Value {
    json!({
        "trade_no": payment.trade_no,
        "order_no": payment.order_no,
        "channel_trade_no": payment.channel_trade_no,
        "merchant_id": payment.merchant_id,
        "channel_account_id": payment.channel_account_id,
        "channel": payment.channel.name(),
        "invoke_method": payment.invoke_method.name(),
        "amount": payment.amount.to_major_string(),
        "currency": payment.amount.currency().code(),
        "fee": payment.fee.to_major_string(),
        "subject": payment.subject,
        "status": attempt_status(payment.status),
        "refunded_amount": payment.refunded().to_major_string(),
        "created_at": payment.created_at.to_rfc3339(),
        "expires_at": payment.expires_at.to_rfc3339(),
        "paid_at": payment.paid_at.map(|at| at.to_rfc3339()),
        "refunds": payment.refunds.iter().map(refund_json).collect::<Vec<_>>(),
        "splits": payment.splits.iter().map(|split| json!({
            "receiver": split.receiver,
            "amount": split.amount.to_major_string(),
        })).collect::<Vec<_>>(),
    })
}
