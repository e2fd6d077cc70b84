//! Identifiers. Each is a validated string newtype; constructors take their entropy and time as
//! arguments so the domain stays deterministic.

use std::fmt;
use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The text of an id, shared rather than copied. A payment's ids are copied far more often
/// than they are made (into its events, its view, its list entries, its balances' terms, the
/// rows handed to a projection's file writer), and a copy of an `Arc<str>` is a count, not an
/// allocation and a free on another thread. Compared, hashed, ordered and encoded as its text,
/// exactly as a `String` was.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct IdText(Arc<str>);

impl IdText {
    fn new(text: &str) -> IdText {
        IdText(Arc::from(text))
    }
}

impl fmt::Debug for IdText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl Serialize for IdText {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for IdText {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Text;

        impl serde::de::Visitor<'_> for Text {
            type Value = IdText;

            fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
                formatter.write_str("a string")
            }

            fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<IdText, E> {
                Ok(IdText::new(text))
            }

            fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<IdText, E> {
                std::str::from_utf8(bytes)
                    .map(IdText::new)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Bytes(bytes), &self))
            }
        }

        deserializer.deserialize_str(Text)
    }
}

/// Why a text is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} must be {rule}")]
pub struct IdError {
    /// Which identifier.
    pub kind: &'static str,
    /// The rule it breaks, as a phrase.
    pub rule: &'static str,
}

fn is_id_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == '-'
}

macro_rules! prefixed_id {
    ($(#[$doc:meta])* $name:ident, $prefix:literal, $kind:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(IdText);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new id from 128 bits of entropy supplied by the caller.
            pub fn from_entropy(entropy: u128) -> Self {
                $name(IdText::new(&format!("{}{:032x}", $prefix, entropy)))
            }

            /// Validates an id received from outside.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                let valid = text.starts_with($prefix)
                    && text.len() > $prefix.len()
                    && text.len() <= 64
                    && text.chars().all(is_id_char);
                if !valid {
                    return Err(IdError { kind: $kind, rule: concat!("\"", $prefix, "\" followed by up to 60 letters or digits") });
                }
                Ok($name(IdText::new(text)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0 .0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

prefixed_id!(
    /// A merchant onboarded to paycenter.
    MerchantId, "mch_", "merchant_id"
);
prefixed_id!(
    /// A merchant's account at one payment channel.
    ChannelAccountId, "ca_", "channel_account_id"
);
prefixed_id!(
    /// A business application sending payment commands.
    AppId, "app_", "app_id"
);
prefixed_id!(
    /// paycenter's id of one refund.
    RefundId, "rf_", "refund_id"
);
prefixed_id!(
    /// One webhook notification to an app.
    NotificationId, "ntf_", "notification_id"
);
prefixed_id!(
    /// A person who works in the console (derived from the e-mail address, which is unique).
    OperatorId, "op_", "operator_id"
);

macro_rules! external_id {
    ($(#[$doc:meta])* $name:ident, $kind:literal, $max_len:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(transparent)]
        pub struct $name(IdText);

        impl $name {
            /// Validates an id chosen by someone else: 1 to the maximum length of letters,
            /// digits, `_` and `-`.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                let valid = !text.is_empty() && text.len() <= $max_len && text.chars().all(is_id_char);
                if !valid {
                    return Err(IdError { kind: $kind, rule: concat!("1 to ", $max_len, " letters, digits, '_' or '-'") });
                }
                Ok($name(IdText::new(text)))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0 .0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

external_id!(
    /// The app's own order number; unique per merchant.
    OrderNo, "order_no", 64
);
external_id!(
    /// The app's own refund number; unique per payment.
    RefundNo, "refund_no", 64
);
external_id!(
    /// The channel's id of a payment (used for reconciliation and refunds).
    ChannelTradeNo, "channel_trade_no", 64
);

/// paycenter's own payment serial, sent to the channel as the merchant order number.
///
/// 30 decimal digits: the UTC time to the millisecond (`yyyyMMddHHmmssSSS`) then 13 digits of
/// caller-supplied entropy. Every channel accepts it (6–32 characters of `[A-Za-z0-9]`), and
/// sorting trade numbers sorts them by creation time.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TradeNo(IdText);

impl TradeNo {
    /// Number of entropy digits after the timestamp.
    const ENTROPY_DIGITS: u32 = 13;

    /// A trade number for `now`, made unique by `entropy`.
    pub fn generate(now: DateTime<Utc>, entropy: u64) -> TradeNo {
        use chrono::{Datelike, Timelike};
        let suffix = entropy % 10_u64.pow(Self::ENTROPY_DIGITS);
        // The fields written one by one, not through `DateTime::format`, which parses its
        // pattern at every call (0.7 % of a payment's CPU). `% 1_000_000_000`: a leap second's
        // nanoseconds run past a billion.
        let text = format!(
            "{:04}{:02}{:02}{:02}{:02}{:02}{:03}{:013}",
            now.year(),
            now.month(),
            now.day(),
            now.hour(),
            now.minute(),
            now.second(),
            now.nanosecond() % 1_000_000_000 / 1_000_000,
            suffix
        );
        debug_assert_eq!(text.len(), 30);
        TradeNo(IdText::new(&text))
    }

    /// Validates a trade number received from outside: 6 to 32 ASCII letters or digits.
    pub fn parse(text: &str) -> Result<TradeNo, IdError> {
        let valid =
            (6..=32).contains(&text.len()) && text.chars().all(|c| c.is_ascii_alphanumeric());
        if !valid {
            return Err(IdError {
                kind: "trade_no",
                rule: "6 to 32 letters or digits",
            });
        }
        Ok(TradeNo(IdText::new(text)))
    }

    /// The trade number as text.
    pub fn as_str(&self) -> &str {
        &self.0 .0
    }
}

impl fmt::Display for TradeNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn trade_numbers_are_valid_and_sort_by_time() {
        let early = Utc.with_ymd_and_hms(2026, 1, 2, 3, 4, 5).unwrap();
        let late = early + chrono::Duration::milliseconds(1);
        let a = TradeNo::generate(early, u64::MAX);
        let b = TradeNo::generate(late, 0);
        assert_eq!(a.as_str(), "202601020304050004073709551615");
        let with_millis = Utc.with_ymd_and_hms(2026, 12, 31, 23, 59, 59).unwrap()
            + chrono::Duration::milliseconds(987);
        assert_eq!(
            TradeNo::generate(with_millis, 42).as_str(),
            "202612312359599870000000000042"
        );
        assert!(TradeNo::parse(a.as_str()).is_ok());
        assert!(a < b);
    }

    /// Shared text changes nothing an id shows: its JSON, its `Debug`, its order and its hash
    /// are those of its text, as when it held a `String`.
    #[test]
    fn ids_encode_compare_and_hash_as_their_text() {
        let id = MerchantId::from_entropy(7);
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{}\"", id.as_str()));
        assert_eq!(serde_json::from_str::<MerchantId>(&json).unwrap(), id);
        let tree = serde_json::Value::String(id.as_str().to_owned());
        assert_eq!(serde_json::from_value::<MerchantId>(tree).unwrap(), id);
        assert!(serde_json::from_str::<MerchantId>("7").is_err());
        assert_eq!(format!("{id:?}"), format!("MerchantId({:?})", id.as_str()));

        let (a, b) = (
            OrderNo::parse("a-2").unwrap(),
            OrderNo::parse("a-10").unwrap(),
        );
        assert_eq!(a.cmp(&b), "a-2".cmp("a-10"));
        let copy = a.clone();
        assert_eq!(copy, a);
        use std::hash::BuildHasher;
        let hasher = std::collections::hash_map::RandomState::new();
        assert_eq!(hasher.hash_one(&a), hasher.hash_one("a-2"));
    }

    #[test]
    fn ids_are_validated() {
        assert!(MerchantId::parse(MerchantId::from_entropy(7).as_str()).is_ok());
        assert!(MerchantId::parse("ca_123").is_err());
        assert!(MerchantId::parse("mch_").is_err());
        assert!(MerchantId::parse("mch_a b").is_err());
        assert!(OrderNo::parse("A-1_2").is_ok());
        assert!(OrderNo::parse("").is_err());
        assert!(OrderNo::parse(&"x".repeat(65)).is_err());
        assert!(TradeNo::parse("abc").is_err());
        assert!(TradeNo::parse("abc-def").is_err());
    }
}
