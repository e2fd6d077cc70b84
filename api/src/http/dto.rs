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
/// The longest channel parameter (PEM keys are a few KiB).
pub const MAX_PARAM_CHARS: usize = 16_384;

/// A field a body may carry and the most characters its string (or each string of its
/// array) may have; 0 for fields that are not text (their handler checks their type).
pub type FieldLimit = (&'static str, usize);

/// Refuses fields the endpoint does not know (`400 unknown_field`) and over-long strings
/// (`400 field_too_long`), naming the field in `error.field`; `prefix` names where the object
/// sits (`"splits[0]."`, `"params."`).
pub fn check_fields(
    object: &Map<String, Value>,
    prefix: &str,
    known: &[FieldLimit],
) -> Result<(), Refusal> {
    for (name, value) in object {
        let Some((_, max_chars)) = known.iter().find(|(known_name, _)| known_name == name) else {
            let shown: String = name.chars().take(MAX_ID_CHARS).collect();
            return Err(Refusal::new(
                ErrorCode::UnknownField,
                format!("{prefix}{shown} is not a field of this request"),
            )
            .with_field(format!("{prefix}{shown}")));
        };
        let too_long = *max_chars > 0
            && match value {
                Value::String(text) => text.chars().count() > *max_chars,
                Value::Array(items) => items.iter().any(|item| {
                    item.as_str()
                        .is_some_and(|text| text.chars().count() > *max_chars)
                }),
                _ => false,
            };
        if too_long {
            return Err(Refusal::new(
                ErrorCode::FieldTooLong,
                format!("{prefix}{name} is longer than {max_chars} characters"),
            )
            .with_field(format!("{prefix}{name}")));
        }
    }
    Ok(())
}

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
