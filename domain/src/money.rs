//! Money: an integer count of minor units with its ISO 4217 currency beside it.
//!
//! Amounts cross the wire as decimal strings in major units (`"12.34"`); inside they are `i64`
//! minor units and every operation is checked. `rust_decimal` parses and formats at the
//! boundary and computes rates with explicit rounding. There is no floating point here.

use std::fmt;
use std::str::FromStr;

use rust_decimal::{Decimal, RoundingStrategy};
use serde::{Deserialize, Serialize};

/// The largest amount, in minor units, that paycenter accepts for one payment, refund or
/// split: 10^12 minor units (ten billion CNY or USD). Anything larger is a typo or an attack.
pub const MAX_AMOUNT_MINOR: i64 = 1_000_000_000_000;

/// An ISO 4217 currency paycenter knows, with its number of decimals (the exponent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Currency {
    /// Chinese yuan renminbi.
    CNY,
    /// United States dollar.
    USD,
    /// Euro.
    EUR,
    /// Pound sterling.
    GBP,
    /// Hong Kong dollar.
    HKD,
    /// Singapore dollar.
    SGD,
    /// Australian dollar.
    AUD,
    /// Canadian dollar.
    CAD,
    /// Swiss franc.
    CHF,
    /// Japanese yen (no minor unit).
    JPY,
    /// South Korean won (no minor unit).
    KRW,
    /// Bahraini dinar (three decimals).
    BHD,
    /// Kuwaiti dinar (three decimals).
    KWD,
}

impl Currency {
    /// Every currency paycenter accepts.
    pub const ALL: [Currency; 13] = [
        Currency::CNY,
        Currency::USD,
        Currency::EUR,
        Currency::GBP,
        Currency::HKD,
        Currency::SGD,
        Currency::AUD,
        Currency::CAD,
        Currency::CHF,
        Currency::JPY,
        Currency::KRW,
        Currency::BHD,
        Currency::KWD,
    ];

    /// The number of decimals of the currency's minor unit (ISO 4217 exponent).
    pub fn exponent(self) -> u32 {
        match self {
            Currency::JPY | Currency::KRW => 0,
            Currency::BHD | Currency::KWD => 3,
            _ => 2,
        }
    }

    /// The three-letter ISO 4217 code.
    pub fn code(self) -> &'static str {
        match self {
            Currency::CNY => "CNY",
            Currency::USD => "USD",
            Currency::EUR => "EUR",
            Currency::GBP => "GBP",
            Currency::HKD => "HKD",
            Currency::SGD => "SGD",
            Currency::AUD => "AUD",
            Currency::CAD => "CAD",
            Currency::CHF => "CHF",
            Currency::JPY => "JPY",
            Currency::KRW => "KRW",
            Currency::BHD => "BHD",
            Currency::KWD => "KWD",
        }
    }
}

impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

impl FromStr for Currency {
    type Err = MoneyError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Currency::ALL
            .into_iter()
            .find(|currency| currency.code() == text)
            .ok_or_else(|| MoneyError::UnknownCurrency {
                code: text.chars().take(16).collect(),
            })
    }
}

/// Why an amount or currency was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MoneyError {
    /// The currency code is not one paycenter accepts.
    #[error("unknown currency {code:?}")]
    UnknownCurrency {
        /// The code as given (truncated).
        code: String,
    },
    /// The text is not a plain decimal number.
    #[error("amount {text:?} is not a decimal number like \"12.34\"")]
    NotANumber {
        /// The text as given (truncated).
        text: String,
    },
    /// More decimals than the currency's minor unit has.
    #[error("amount {text:?} has more than {exponent} decimals, the most {currency} allows")]
    TooManyDecimals {
        /// The text as given.
        text: String,
        /// The currency.
        currency: Currency,
        /// The currency's exponent.
        exponent: u32,
    },
    /// Zero or negative where a positive amount is required.
    #[error("amount must be greater than zero")]
    NotPositive,
    /// Larger than [`MAX_AMOUNT_MINOR`].
    #[error("amount exceeds the maximum of {max} {currency}")]
    TooLarge {
        /// The maximum, formatted in major units.
        max: String,
        /// The currency.
        currency: Currency,
    },
    /// Two amounts of different currencies were combined.
    #[error("currency mismatch: {left} and {right}")]
    CurrencyMismatch {
        /// One currency.
        left: Currency,
        /// The other.
        right: Currency,
    },
    /// Checked arithmetic overflowed or went below zero.
    #[error("amount arithmetic out of range")]
    OutOfRange,
}

/// A non-negative amount of money: minor units and currency.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Money {
    amount_minor: i64,
    currency: Currency,
}

impl Money {
    /// Money from minor units. Panics on a negative value: callers hold validated amounts.
    pub fn from_minor(amount_minor: i64, currency: Currency) -> Money {
        assert!(amount_minor >= 0, "money is never negative: {amount_minor}");
        Money {
            amount_minor,
            currency,
        }
    }

    /// A balance in minor units (which may be below zero, unlike money itself: a merchant that
    /// owes after a refund of what was paid out) in the currency's major unit, e.g. `"-80.00"`.
    pub fn format_balance(balance_minor: i64, currency: Currency) -> String {
        Decimal::new(balance_minor, currency.exponent()).to_string()
    }

    /// Zero in the given currency.
    pub fn zero(currency: Currency) -> Money {
        Money {
            amount_minor: 0,
            currency,
        }
    }

    /// Parses a positive amount in major units, as apps send it (`"12.34"`).
    ///
    /// Refuses signs, exponents, spaces, more decimals than the currency has, zero, negatives
    /// and anything above [`MAX_AMOUNT_MINOR`].
    pub fn parse_positive(text: &str, currency: Currency) -> Result<Money, MoneyError> {
        let truncated = || text.chars().take(40).collect::<String>();
        // Only digits with at most one dot: rust_decimal would also take "1e3", "+1" or "-0".
        let well_formed = !text.is_empty()
            && text.len() <= 40
            && text.chars().all(|c| c.is_ascii_digit() || c == '.')
            && text.chars().filter(|&c| c == '.').count() <= 1
            && !text.starts_with('.')
            && !text.ends_with('.');
        if !well_formed {
            if text.starts_with('-') && Decimal::from_str(text).is_ok() {
                return Err(MoneyError::NotPositive);
            }
            return Err(MoneyError::NotANumber { text: truncated() });
        }
        // Decimals are counted in the text, before any parsing: rust_decimal keeps at most 28
        // and would round "0.00999…9" (32 decimals) to 0.01. Trailing zeros add nothing.
        let exponent = currency.exponent();
        let significant_decimals = text
            .split_once('.')
            .map_or(0, |(_, fraction)| fraction.trim_end_matches('0').len());
        if significant_decimals > exponent as usize {
            return Err(MoneyError::TooManyDecimals {
                text: truncated(),
                currency,
                exponent,
            });
        }
        let decimal =
            Decimal::from_str(text).map_err(|_| MoneyError::NotANumber { text: truncated() })?;
        if decimal.scale() > exponent && decimal.normalize().scale() > exponent {
            return Err(MoneyError::TooManyDecimals {
                text: truncated(),
                currency,
                exponent,
            });
        }
        let minor = decimal
            .checked_mul(Decimal::from(10_i64.pow(exponent)))
            .ok_or_else(|| Money::too_large(currency))?;
        debug_assert!(minor.fract().is_zero());
        if minor <= Decimal::ZERO {
            return Err(MoneyError::NotPositive);
        }
        let amount_minor: i64 = minor
            .trunc()
            .try_into()
            .map_err(|_| Money::too_large(currency))?;
        if amount_minor > MAX_AMOUNT_MINOR {
            return Err(Money::too_large(currency));
        }
        Ok(Money {
            amount_minor,
            currency,
        })
    }

    fn too_large(currency: Currency) -> MoneyError {
        MoneyError::TooLarge {
            max: Money {
                amount_minor: MAX_AMOUNT_MINOR,
                currency,
            }
            .to_major_string(),
            currency,
        }
    }

    /// The amount in minor units.
    pub fn amount_minor(self) -> i64 {
        self.amount_minor
    }

    /// The currency.
    pub fn currency(self) -> Currency {
        self.currency
    }

    /// True for zero.
    pub fn is_zero(self) -> bool {
        self.amount_minor == 0
    }

    /// The amount in major units with the currency's full decimals (`"5.00"`, never `"5"`).
    pub fn to_major_string(self) -> String {
        let decimal = Decimal::new(self.amount_minor, self.currency.exponent());
        // `Decimal::new` keeps the scale, so 500 with exponent 2 prints "5.00".
        decimal.to_string()
    }

    /// `self + other`, refusing mixed currencies and overflow.
    pub fn checked_add(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor = self
            .amount_minor
            .checked_add(other.amount_minor)
            .ok_or(MoneyError::OutOfRange)?;
        Ok(Money {
            amount_minor,
            currency: self.currency,
        })
    }

    /// `self - other`, refusing mixed currencies and results below zero.
    pub fn checked_sub(self, other: Money) -> Result<Money, MoneyError> {
        self.same_currency(other)?;
        let amount_minor = self
            .amount_minor
            .checked_sub(other.amount_minor)
            .ok_or(MoneyError::OutOfRange)?;
        if amount_minor < 0 {
            return Err(MoneyError::OutOfRange);
        }
        Ok(Money {
            amount_minor,
            currency: self.currency,
        })
    }

    /// `self × rate`, rounded half-even to a whole minor unit (fees, split ratios).
    pub fn checked_mul_rate(self, rate: Rate) -> Result<Money, MoneyError> {
        let product = Decimal::from(self.amount_minor)
            .checked_mul(rate.0)
            .ok_or(MoneyError::OutOfRange)?;
        let rounded = product.round_dp_with_strategy(0, RoundingStrategy::MidpointNearestEven);
        let amount_minor: i64 = rounded
            .trunc()
            .try_into()
            .map_err(|_| MoneyError::OutOfRange)?;
        if amount_minor < 0 {
            return Err(MoneyError::OutOfRange);
        }
        Ok(Money {
            amount_minor,
            currency: self.currency,
        })
    }

    fn same_currency(self, other: Money) -> Result<(), MoneyError> {
        if self.currency != other.currency {
            return Err(MoneyError::CurrencyMismatch {
                left: self.currency,
                right: other.currency,
            });
        }
        Ok(())
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.to_major_string(), self.currency)
    }
}

/// A rate between 0 and 1 inclusive (a fee rate such as `0.006`), held as an exact decimal.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct Rate(#[serde(with = "rust_decimal::serde::str")] Decimal);

impl Rate {
    /// The zero rate.
    pub const ZERO: Rate = Rate(Decimal::ZERO);

    /// Parses a rate from text such as `"0.006"`; at most 6 decimals, within `[0, 1]`.
    pub fn parse(text: &str) -> Result<Rate, MoneyError> {
        let not_a_rate = || MoneyError::NotANumber {
            text: text.chars().take(40).collect(),
        };
        if text.is_empty()
            || text.len() > 20
            || !text.chars().all(|c| c.is_ascii_digit() || c == '.')
        {
            return Err(not_a_rate());
        }
        let decimal = Decimal::from_str(text).map_err(|_| not_a_rate())?;
        if decimal.normalize().scale() > 6 || decimal > Decimal::ONE || decimal < Decimal::ZERO {
            return Err(not_a_rate());
        }
        Ok(Rate(decimal.normalize()))
    }

    /// The rate as text, e.g. `"0.006"`.
    pub fn to_text(self) -> String {
        self.0.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_parse(text: &str, currency: Currency, expected: Result<i64, &str>) {
        let got = Money::parse_positive(text, currency);
        match (got, expected) {
            (Ok(money), Ok(minor)) => assert_eq!(money.amount_minor(), minor, "{text}"),
            (Err(error), Err(kind)) => assert!(
                format!("{error:?}").starts_with(kind),
                "{text}: {error:?} is not {kind}"
            ),
            (got, expected) => panic!("{text}: got {got:?}, expected {expected:?}"),
        }
    }

    #[test]
    fn parses_major_units_into_minor_units() {
        check_parse("12.34", Currency::CNY, Ok(1234));
        check_parse("12.3", Currency::CNY, Ok(1230));
        check_parse("12", Currency::CNY, Ok(1200));
        check_parse("0.01", Currency::USD, Ok(1));
        check_parse("1000", Currency::JPY, Ok(1000));
        check_parse("1.234", Currency::BHD, Ok(1234));
        check_parse("12.340", Currency::CNY, Ok(1234));
        check_parse("10000000000.00", Currency::CNY, Ok(MAX_AMOUNT_MINOR));
    }

    #[test]
    fn refuses_decimals_beyond_the_currency_however_many() {
        let long = "0.00999999999999999999999999999999";
        assert!(matches!(
            Money::parse_positive(long, Currency::CNY),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        assert!(matches!(
            Money::parse_positive("1.001", Currency::CNY),
            Err(MoneyError::TooManyDecimals { .. })
        ));
        assert_eq!(
            Money::parse_positive("1.000", Currency::CNY)
                .unwrap()
                .amount_minor(),
            100
        );
    }

    #[test]
    fn refuses_bad_amounts() {
        check_parse("12.345", Currency::CNY, Err("TooManyDecimals"));
        check_parse("1.5", Currency::JPY, Err("TooManyDecimals"));
        check_parse("0", Currency::CNY, Err("NotPositive"));
        check_parse("0.00", Currency::CNY, Err("NotPositive"));
        check_parse("-1.00", Currency::CNY, Err("NotPositive"));
        check_parse("abc", Currency::CNY, Err("NotANumber"));
        check_parse("", Currency::CNY, Err("NotANumber"));
        check_parse("1e3", Currency::CNY, Err("NotANumber"));
        check_parse("+1", Currency::CNY, Err("NotANumber"));
        check_parse(" 1", Currency::CNY, Err("NotANumber"));
        check_parse("1.", Currency::CNY, Err("NotANumber"));
        check_parse(".5", Currency::CNY, Err("NotANumber"));
        check_parse("1.2.3", Currency::CNY, Err("NotANumber"));
        check_parse("NaN", Currency::CNY, Err("NotANumber"));
        check_parse("10000000000.01", Currency::CNY, Err("TooLarge"));
        check_parse("99999999999999999999", Currency::CNY, Err("TooLarge"));
        check_parse(
            "999999999999999999999999999999999999999",
            Currency::CNY,
            Err("NotANumber"),
        );
    }

    #[test]
    fn formats_with_the_currency_full_decimals() {
        assert_eq!(
            Money::from_minor(500, Currency::CNY).to_major_string(),
            "5.00"
        );
        assert_eq!(
            Money::from_minor(1, Currency::USD).to_major_string(),
            "0.01"
        );
        assert_eq!(
            Money::from_minor(0, Currency::USD).to_major_string(),
            "0.00"
        );
        assert_eq!(
            Money::from_minor(500, Currency::JPY).to_major_string(),
            "500"
        );
        assert_eq!(
            Money::from_minor(1234, Currency::KWD).to_major_string(),
            "1.234"
        );
    }

    #[test]
    fn arithmetic_is_checked() {
        let ten = Money::from_minor(1000, Currency::CNY);
        let three = Money::from_minor(300, Currency::CNY);
        assert_eq!(ten.checked_sub(three).unwrap().amount_minor(), 700);
        assert_eq!(three.checked_sub(ten), Err(MoneyError::OutOfRange));
        assert!(matches!(
            ten.checked_add(Money::from_minor(1, Currency::USD)),
            Err(MoneyError::CurrencyMismatch { .. })
        ));
        assert_eq!(
            Money::from_minor(i64::MAX, Currency::CNY).checked_add(three),
            Err(MoneyError::OutOfRange)
        );
    }

    #[test]
    fn rates_round_half_even() {
        let rate = Rate::parse("0.005").unwrap();
        // 250 × 0.005 = 1.25 → 1; 300 × 0.005 = 1.5 → 2; 500 × 0.005 = 2.5 → 2.
        assert_eq!(
            Money::from_minor(250, Currency::CNY)
                .checked_mul_rate(rate)
                .unwrap()
                .amount_minor(),
            1
        );
        assert_eq!(
            Money::from_minor(300, Currency::CNY)
                .checked_mul_rate(rate)
                .unwrap()
                .amount_minor(),
            2
        );
        assert_eq!(
            Money::from_minor(500, Currency::CNY)
                .checked_mul_rate(rate)
                .unwrap()
                .amount_minor(),
            2
        );
        assert!(Rate::parse("1.5").is_err());
        assert!(Rate::parse("-0.1").is_err());
        assert!(Rate::parse("0.0000001").is_err());
        assert_eq!(Rate::parse("0.0060").unwrap().to_text(), "0.006");
    }
}
