//! Identifiers. Each is a validated string newtype; constructors take their entropy and time as
//! arguments so the domain stays deterministic.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

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
        pub struct $name(String);

        impl $name {
            /// The prefix every id of this kind starts with.
            pub const PREFIX: &'static str = $prefix;

            /// A new id from 128 bits of entropy supplied by the caller.
            pub fn from_entropy(entropy: u128) -> Self {
                $name(format!("{}{:032x}", $prefix, entropy))
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
                Ok($name(text.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
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
        pub struct $name(String);

        impl $name {
            /// Validates an id chosen by someone else: 1 to the maximum length of letters,
            /// digits, `_` and `-`.
            pub fn parse(text: &str) -> Result<Self, IdError> {
                let valid = !text.is_empty() && text.len() <= $max_len && text.chars().all(is_id_char);
                if !valid {
                    return Err(IdError { kind: $kind, rule: concat!("1 to ", $max_len, " letters, digits, '_' or '-'") });
                }
                Ok($name(text.to_owned()))
            }

            /// The id as text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
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
pub struct TradeNo(String);

impl TradeNo {
    /// Number of entropy digits after the timestamp.
    const ENTROPY_DIGITS: u32 = 13;

    /// A trade number for `now`, made unique by `entropy`.
    pub fn generate(now: DateTime<Utc>, entropy: u64) -> TradeNo {
        let suffix = entropy % 10_u64.pow(Self::ENTROPY_DIGITS);
        let text = format!("{}{:013}", now.format("%Y%m%d%H%M%S%3f"), suffix);
        debug_assert_eq!(text.len(), 30);
        TradeNo(text)
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
        Ok(TradeNo(text.to_owned()))
    }

    /// The trade number as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TradeNo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
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
        assert!(TradeNo::parse(a.as_str()).is_ok());
        assert!(a < b);
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
