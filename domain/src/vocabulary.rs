//! The words paycenter's interfaces and events share: channels, invoke methods, statuses,
//! webhook types, anomaly and discrepancy kinds, close reasons, duplicate causes, refund kinds,
//! outcome sources. Each is an enum whose wire name is written once, here, by
//! [`vocabulary!`]: `as_str`, `FromStr`, `Display` and `ALL` come from that one list.
//!
//! Serde attributes stay on each enum as they were, because events already in logs were
//! written with them; a test checks that serde's names and the wire names agree where both
//! are snake_case.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A text that names no word of a vocabulary.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{text:?} is not a {vocabulary}")]
pub struct UnknownWord {
    /// Which vocabulary.
    pub vocabulary: &'static str,
    /// The text, cut to 64 characters.
    pub text: String,
}

/// Defines an enum and its wire names, once.
macro_rules! vocabulary {
    (
        $(#[$meta:meta])*
        $name:ident ($label:literal) {
            $($(#[$variant_meta:meta])* $variant:ident => $text:literal,)+
        }
    ) => {
        $(#[$meta])*
        pub enum $name {
            $($(#[$variant_meta])* $variant,)+
        }

        impl $name {
            /// Every word, in the order listed.
            pub const ALL: &'static [$name] = &[$($name::$variant,)+];

            /// The name on the wire.
            pub fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text,)+
                }
            }

            /// The word a wire name names, if any.
            pub fn parse(text: &str) -> Option<$name> {
                match text {
                    $($text => Some($name::$variant),)+
                    _ => None,
                }
            }
        }

        impl FromStr for $name {
            type Err = UnknownWord;

            fn from_str(text: &str) -> Result<$name, UnknownWord> {
                $name::parse(text).ok_or_else(|| UnknownWord {
                    vocabulary: $label,
                    text: text.chars().take(64).collect(),
                })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

vocabulary! {
    /// A payment channel.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    Channel ("channel") {
        /// paycenter's built-in simulated third party.
        Sandbox => "sandbox",
        /// Alipay (OpenAPI v2, RSA2).
        Alipay => "alipay",
        /// WeChat Pay (API v3).
        Wechatpay => "wechatpay",
        /// Stripe (PaymentIntents).
        Stripe => "stripe",
    }
}

vocabulary! {
    /// Where alerts go.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    AlertChannelKind ("alert channel kind") {
        /// A DingTalk group's custom robot.
        Dingtalk => "dingtalk",
        /// A signed JSON POST to a URL.
        Webhook => "webhook",
    }
}

vocabulary! {
    /// What an alert is about: each rule watches one kind of trouble.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    AlertRule ("alert rule") {
        /// A channel account's initiations fail too often.
        ChannelFailureRate => "channel_failure_rate",
        /// An app's webhooks were given up, or fail for too long.
        WebhooksFailing => "webhooks_failing",
        /// The latest reconciliation of an account found discrepancies.
        ReconciliationDiscrepancies => "reconciliation_discrepancies",
        /// A channel reported money that contradicts its attempt.
        Anomaly => "anomaly",
        /// A projection stopped at an event it could not apply.
        ProjectionStopped => "projection_stopped",
        /// A projection is too far behind the log.
        ProjectionLagging => "projection_lagging",
        /// The store stopped accepting appends.
        StoreAppendErrors => "store_append_errors",
        /// The data directory's disk is nearly full.
        DiskLow => "disk_low",
        /// Payments stay pending past the sweep and the channel's query fails.
        StuckPayments => "stuck_payments",
        /// A channel account's keys or certificates expire soon.
        CredentialsExpiring => "credentials_expiring",
    }
}

vocabulary! {
    /// A channel account's circuit breaker.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    BreakerState ("breaker state") {
        /// Payments go to the account.
        Closed => "closed",
        /// The account failed too often: routing passes it over until its time is up.
        Open => "open",
        /// Its time is up: the next payment is a probe.
        HalfOpen => "half_open",
    }
}

vocabulary! {
    /// Which message of an alert a delivery carries.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    AlertMessage ("alert message") {
        /// The alert was raised.
        Raised => "raised",
        /// The alert was resolved.
        Resolved => "resolved",
    }
}

vocabulary! {
    /// What an operator of the console may do (see the operators module).
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    OperatorRole ("operator role") {
        /// Everything.
        Admin => "admin",
        /// Read; refunds, reconciliation, audits.
        Finance => "finance",
        /// Read; notifications, projections, alerts.
        Ops => "ops",
        /// Read only.
        Viewer => "viewer",
    }
}

vocabulary! {
    /// How the user is asked to pay.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    InvokeMethod ("invoke method") {
        /// A page on a computer.
        Pc => "pc",
        /// A page on a phone (WAP / H5).
        Wap => "wap",
        /// A native app.
        App => "app",
        /// A mini-program.
        MiniProgram => "mini_program",
        /// A page inside the wallet's own app (JSAPI).
        Jsapi => "jsapi",
        /// A QR code the user scans.
        NativeQr => "native_qr",
    }
}

vocabulary! {
    /// Where a payment attempt stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    AttemptStatus ("payment status") {
        /// Waiting for the user or the channel.
        Pending => "pending",
        /// Paid.
        Succeeded => "succeeded",
        /// The channel said it failed.
        Failed => "failed",
        /// Closed unpaid.
        Closed => "closed",
    }
}

vocabulary! {
    /// Where a refund stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    RefundStatus ("refund status") {
        /// Asked, not settled.
        Pending => "pending",
        /// The channel refunded it.
        Succeeded => "succeeded",
        /// The channel refused it.
        Failed => "failed",
    }
}

vocabulary! {
    /// Where a webhook notification stands. (Its serde form is the variant's name, as the
    /// first version wrote it.)
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    NotificationStatus ("notification status") {
        /// Being delivered, or waiting for its next try.
        Pending => "pending",
        /// The app acknowledged it.
        Delivered => "delivered",
        /// Every try failed.
        Failed => "failed",
    }
}

vocabulary! {
    /// What a webhook tells the app.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
    WebhookType ("webhook type") {
        /// An attempt was paid.
        PaymentSucceeded => "payment.succeeded",
        /// An attempt failed.
        PaymentFailed => "payment.failed",
        /// An attempt was closed unpaid.
        PaymentClosed => "payment.closed",
        /// A verified report contradicted its attempt; the reported money is refunded.
        PaymentAnomalyDetected => "payment.anomaly_detected",
        /// A refund succeeded.
        RefundSucceeded => "refund.succeeded",
        /// A refund failed.
        RefundFailed => "refund.failed",
        /// A payment's splits were paid to their receivers at the channel.
        PaymentShared => "payment.shared",
        /// A payment's share failed for good at the channel (the money stays with the merchant).
        PaymentShareFailed => "payment.share_failed",
        /// A payout was paid to its receiver.
        PayoutSucceeded => "payout.succeeded",
        /// A payout failed (its amount is the merchant's again).
        PayoutFailed => "payout.failed",
        /// A payout waits for the receiving user's confirmation (`confirmation.package_info`).
        PayoutAwaitingConfirmation => "payout.awaiting_confirmation",
    }
}

vocabulary! {
    /// How a verified channel report contradicts its attempt.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    AnomalyKind ("anomaly kind") {
        /// Another amount than the attempt's, in its currency.
        AmountMismatch => "amount_mismatch",
        /// Another currency than the attempt's.
        CurrencyMismatch => "currency_mismatch",
        /// Reported by another channel account than the attempt's.
        AccountMismatch => "account_mismatch",
    }
}

vocabulary! {
    /// What kind of disagreement a reconciliation found.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    DiscrepancyKind ("discrepancy kind") {
        /// The bill lists a payment paycenter does not know.
        MissingInPaycenter => "missing_in_paycenter",
        /// paycenter recorded a payment that day that the bill lacks.
        MissingInChannel => "missing_in_channel",
        /// Both know it, with different amounts.
        AmountMismatch => "amount_mismatch",
        /// The bill says paid; paycenter does not (pending, failed or closed).
        StatusMismatch => "status_mismatch",
        /// The bill lists a refund that day that paycenter did not record as succeeded that day.
        RefundMissingInPaycenter => "refund_missing_in_paycenter",
        /// paycenter recorded a refund succeeding that day that the bill lacks.
        RefundMissingInChannel => "refund_missing_in_channel",
        /// Both list refunds of the payment that day, for different totals.
        RefundAmountMismatch => "refund_amount_mismatch",
        /// A payout paycenter recorded as paid that day that the channel does not have.
        PayoutMissingInChannel => "payout_missing_in_channel",
        /// The channel moves another amount for a payout than paycenter recorded.
        PayoutAmountMismatch => "payout_amount_mismatch",
        /// The channel says a payout stands otherwise than paycenter settled it that day.
        PayoutStatusMismatch => "payout_status_mismatch",
    }
}

vocabulary! {
    /// Why an attempt was closed.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    CloseReason ("close reason") {
        /// The app closed it.
        ByApp => "by_app",
        /// A newer attempt for the same order replaced it.
        Superseded => "superseded",
        /// It expired unpaid.
        Expired => "expired",
    }
}

vocabulary! {
    /// Why a paid attempt is refunded automatically.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    DuplicateCause ("duplicate cause") {
        /// Another attempt of the order was paid first.
        OrderAlreadyPaid => "order_already_paid",
        /// The attempt was paid after it had been closed.
        PaidAfterClose => "paid_after_close",
    }
}

vocabulary! {
    /// Who asked for a refund.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    RefundKind ("refund kind") {
        /// The app.
        App => "app",
        /// paycenter, for a duplicate or late payment.
        Automatic => "automatic",
    }
}

vocabulary! {
    /// How paycenter learned an outcome.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    OutcomeSource ("outcome source") {
        /// The channel's signed callback.
        Callback => "callback",
        /// paycenter queried the channel.
        Query => "query",
    }
}

vocabulary! {
    /// How a channel account reaches its channel.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    AccountMode ("channel account mode") {
        /// The merchant's own keys, taking its own payments.
        #[default]
        Direct => "direct",
        /// A service provider's keys (WeChat Pay partner, Alipay third-party application): it
        /// acts for its sub-merchants and takes no payments itself.
        Provider => "provider",
        /// A small merchant onboarded under a provider: only the ids the channel assigned it;
        /// its requests are made and signed with the provider's keys.
        SubMerchant => "sub_merchant",
    }
}

vocabulary! {
    /// Whether and when a payment's splits are paid to their receivers at the channel.
    #[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    ShareMode ("share mode") {
        /// Splits live in paycenter's ledger only.
        #[default]
        None => "none",
        /// Shared at the channel as soon as the payment succeeds.
        Auto => "auto",
        /// Shared when the app asks (`POST /v1/payments/{trade_no}/share`).
        Manual => "manual",
    }
}

impl ShareMode {
    /// Whether this is the default (left out of events, as events before sharing were).
    pub fn is_none(&self) -> bool {
        *self == ShareMode::None
    }
}

vocabulary! {
    /// Where one receiver's share of a payment stands at the channel.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    ShareStatus ("share status") {
        /// Asked of the channel (or about to be), not settled.
        Pending => "pending",
        /// Paid to the receiver at the channel.
        Shared => "shared",
        /// Taken back from the receiver whole (for refunds).
        Returned => "returned",
        /// The channel refused it, for good; the money stays with the merchant.
        Failed => "failed",
    }
}

vocabulary! {
    /// Where a payout's money goes.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    PayoutReceiverKind ("payout receiver type") {
        /// An Alipay account by its login name (e-mail or phone).
        AlipayLogin => "alipay_login",
        /// An Alipay account by its user id (`2088…`).
        AlipayUserId => "alipay_user_id",
        /// A WeChat user by their `openid` under the account's app.
        WechatOpenid => "wechat_openid",
        /// The sandbox's pretend wallet.
        Sandbox => "sandbox",
    }
}

vocabulary! {
    /// Where a payout stands.
    #[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    PayoutStatus ("payout status") {
        /// Asked of the channel (or about to be), not settled.
        Pending => "pending",
        /// Taken by the channel, waiting for the receiving user to confirm it.
        AwaitingConfirmation => "awaiting_confirmation",
        /// Paid to the receiver.
        Succeeded => "succeeded",
        /// Not paid: the money stays with the merchant.
        Failed => "failed",
    }
}

impl AccountMode {
    /// Whether payments may be taken on an account of this mode.
    pub fn takes_payments(self) -> bool {
        self != AccountMode::Provider
    }

    /// Whether this is the default (left out of events, as events before modes were).
    pub fn is_direct(&self) -> bool {
        *self == AccountMode::Direct
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: Copy + fmt::Display + FromStr + PartialEq + fmt::Debug + Serialize>(
        all: &[T],
        as_str: fn(T) -> &'static str,
        serde_is_wire: bool,
    ) where
        <T as FromStr>::Err: fmt::Debug,
    {
        let mut seen = std::collections::HashSet::new();
        for word in all {
            let text = as_str(*word);
            assert!(seen.insert(text), "{text} twice");
            assert_eq!(text.parse::<T>().unwrap(), *word);
            assert_eq!(word.to_string(), text);
            if serde_is_wire {
                assert_eq!(serde_json::to_value(word).unwrap(), text);
            }
        }
    }

    #[test]
    fn every_word_round_trips_and_serde_agrees_where_it_writes_wire_names() {
        check(Channel::ALL, Channel::as_str, true);
        check(InvokeMethod::ALL, InvokeMethod::as_str, true);
        check(AttemptStatus::ALL, AttemptStatus::as_str, true);
        check(RefundStatus::ALL, RefundStatus::as_str, true);
        check(NotificationStatus::ALL, NotificationStatus::as_str, false);
        check(AnomalyKind::ALL, AnomalyKind::as_str, true);
        check(DiscrepancyKind::ALL, DiscrepancyKind::as_str, true);
        check(CloseReason::ALL, CloseReason::as_str, true);
        check(DuplicateCause::ALL, DuplicateCause::as_str, true);
        check(RefundKind::ALL, RefundKind::as_str, true);
        check(OutcomeSource::ALL, OutcomeSource::as_str, true);
        check(AccountMode::ALL, AccountMode::as_str, true);
        check(ShareMode::ALL, ShareMode::as_str, true);
        check(ShareStatus::ALL, ShareStatus::as_str, true);
        check(PayoutReceiverKind::ALL, PayoutReceiverKind::as_str, true);
        check(PayoutStatus::ALL, PayoutStatus::as_str, true);
        for word in WebhookType::ALL {
            assert_eq!(word.as_str().parse::<WebhookType>().unwrap(), *word);
        }
    }

    #[test]
    fn unknown_words_are_refused_by_name() {
        let error = "paypal".parse::<Channel>().unwrap_err();
        assert_eq!(error.to_string(), "\"paypal\" is not a channel");
        assert_eq!(InvokeMethod::parse("PC"), None);
    }
}
