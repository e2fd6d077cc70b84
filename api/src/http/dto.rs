//! Wire types: how requests are read and answers written. These are a compatibility promise
//! to apps, kept apart from domain types and converted by hand.

use paycenter_domain::{Currency, Money};

use serde_json::{Map, Value};

use crate::error::{ErrorCode, Refusal};

/// The most bytes a request body may have.
pub const MAX_BODY_BYTES: u64 = 64 * 1024;

/// Parses a body that must be a JSON object.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, Refusal> {
    let value: Value = serde_json::from_slice(body).map_err(|error| {
        Refusal::new(
            ErrorCode::InvalidJson,
            format!("the body is not valid JSON: {error}"),
        )
    })?;
    match value {
        Value::Object(object) => Ok(object),
        _ => Err(Refusal::invalid("the body must be a JSON object")),
    }
}

/// The longest names, subjects and reasons, in characters.
pub const MAX_NAME_CHARS: usize = 128;
/// The longest payment subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 256;
/// The longest refund reason, in characters.
pub const MAX_REASON_CHARS: usize = 256;
/// The longest identifier an app chooses (`order_no`, `refund_no`) or paycenter hands out.
pub const MAX_ID_CHARS: usize = 64;
/// The longest URL.
pub const MAX_URL_CHARS: usize = paycenter_gateway::egress::MAX_URL_CHARS;
/// The longest amount, currency, rate or other short token.
pub const MAX_TOKEN_CHARS: usize = 40;

pub use crate::wire::{check_fields, FieldLimit};

/// A required string field.
pub fn required_str<'a>(object: &'a Map<String, Value>, field: &str) -> Result<&'a str, Refusal> {
    match object.get(field) {
        None | Some(Value::Null) => Err(Refusal::invalid(format!("{field} is required"))),
        Some(Value::String(text)) => Ok(text),
        Some(_) => Err(Refusal::invalid(format!("{field} must be a string"))),
    }
}

/// An optional text value of a typed request (`None` when left out or null).
pub fn optional_text<'a>(
    value: &'a Option<Value>,
    field: &str,
) -> Result<Option<&'a str>, Refusal> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(Refusal::invalid(format!("{field} must be a string")).with_field(field)),
    }
}

/// An optional string field.
pub fn optional_str<'a>(
    object: &'a Map<String, Value>,
    field: &str,
) -> Result<Option<&'a str>, Refusal> {
    match object.get(field) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text)),
        Some(_) => Err(Refusal::invalid(format!("{field} must be a string"))),
    }
}

/// An amount field in major units, as a string, in `currency`.
pub fn amount_field(
    object: &Map<String, Value>,
    field: &str,
    currency: Currency,
) -> Result<Money, Refusal> {
    amount_value(object.get(field), field, currency)
}

/// An amount in major units, as a string, in `currency` (`None`: the field was left out).
pub fn amount_value(
    value: Option<&Value>,
    field: &str,
    currency: Currency,
) -> Result<Money, Refusal> {
    let text = match value {
        None | Some(Value::Null) => return Err(Refusal::invalid(format!("{field} is required"))),
        Some(Value::String(text)) => text,
        Some(Value::Number(_)) => {
            return Err(Refusal::new(
                ErrorCode::InvalidAmount,
                format!("{field} must be a decimal string such as \"12.34\", not a JSON number"),
            ))
        }
        Some(_) => {
            return Err(Refusal::invalid(format!(
                "{field} must be a decimal string"
            )))
        }
    };
    Money::parse_positive(text, currency)
        .map_err(|error| Refusal::new(ErrorCode::InvalidAmount, format!("{field}: {error}")))
}

/// A currency code.
pub fn parse_currency(text: &str) -> Result<Currency, Refusal> {
    text.parse().map_err(|_| {
        Refusal::new(
            ErrorCode::InvalidCurrency,
            format!("currency {text:?} is not supported"),
        )
    })
}

/// A currency field.
pub fn currency_field(object: &Map<String, Value>) -> Result<Currency, Refusal> {
    parse_currency(required_str(object, "currency")?)
}
