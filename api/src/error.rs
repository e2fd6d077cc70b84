//! Refusals: why paycenter did not do what it was asked, as a stable code and a sentence.
//! The use cases answer them; the HTTP layer sends each as its code's status plus
//! `{"error": {"code", "message"}}`. Each domain or store error maps to one code.

use paycenter_domain::DomainError;
use paycenter_store::StoreError;
use serde_json::json;

/// Every error code paycenter answers, in `error.code`: stable, snake_case, for programs to
/// branch on (the message is for people). `/openapi.json` lists them.
#[allow(missing_docs)] // Each name says what went wrong; docs/api.md explains them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    AlertChannelNotFound,
    AlreadyExists,
    AppDisabled,
    AppNotFound,
    AttemptTooSoon,
    CallbackRejected,
    ChannelAccountDisabled,
    ChannelAccountNotFound,
    ChannelMismatch,
    ChannelRefused,
    ChannelTradeNoConflict,
    ChannelUnavailable,
    CheckoutExpired,
    CheckoutNotFound,
    ConcurrentUpdate,
    CurrencyMismatch,
    DuplicateTradeNo,
    FieldTooLong,
    Forbidden,
    IdempotencyKeyReused,
    InternalError,
    InvalidAmount,
    InvalidAccountMode,
    PayoutNotFound,
    InsufficientBalance,
    PayoutNoReused,
    InvalidAlertUrl,
    InvalidBill,
    InvalidChannelParams,
    InvalidCurrency,
    InvalidFeeRate,
    InvalidIdempotencyKey,
    InvalidJson,
    InvalidNotifyUrl,
    InvalidReturnUrl,
    InvalidRequest,
    InvalidSplits,
    LengthRequired,
    MerchantNotAllowed,
    MerchantNotFound,
    MethodNotAllowed,
    MissingChannelField,
    NoRoute,
    NotificationNotFound,
    NotificationSettled,
    OperatorNotFound,
    OrderAlreadyPaid,
    OrderAmountMismatch,
    PayloadTooLarge,
    PaymentAlreadySucceeded,
    PaymentNotFound,
    PaymentNotRefundable,
    PaymentNotShareable,
    ProjectionNotFound,
    RateLimited,
    ReceiverNotFound,
    ReadModelUnavailable,
    RebuildInProgress,
    RebuildUnavailable,
    ReconciliationNotFound,
    RefundAlreadySettled,
    RefundExceedsAvailable,
    RefundNoReused,
    RefundNotFound,
    RequestTimeout,
    RouteNotFound,
    SandboxTradeNotPayable,
    SplitsExceedAmount,
    StoreUnavailable,
    TooManyAnomalies,
    TooManyAttempts,
    TooManyRefunds,
    Unauthorized,
    UnknownField,
    UnsupportedChannel,
    UnsupportedCurrency,
    UnsupportedInvokeMethod,
}

impl ErrorCode {
    /// Every code.
    pub const ALL: [ErrorCode; 77] = [
        ErrorCode::AlertChannelNotFound,
        ErrorCode::AlreadyExists,
        ErrorCode::AppDisabled,
        ErrorCode::AppNotFound,
        ErrorCode::AttemptTooSoon,
        ErrorCode::CallbackRejected,
        ErrorCode::ChannelAccountDisabled,
        ErrorCode::ChannelAccountNotFound,
        ErrorCode::ChannelMismatch,
        ErrorCode::ChannelRefused,
        ErrorCode::ChannelTradeNoConflict,
        ErrorCode::ChannelUnavailable,
        ErrorCode::CheckoutExpired,
        ErrorCode::CheckoutNotFound,
        ErrorCode::ConcurrentUpdate,
        ErrorCode::CurrencyMismatch,
        ErrorCode::DuplicateTradeNo,
        ErrorCode::FieldTooLong,
        ErrorCode::Forbidden,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::InternalError,
        ErrorCode::InvalidAmount,
        ErrorCode::InvalidAccountMode,
        ErrorCode::PayoutNotFound,
        ErrorCode::InsufficientBalance,
        ErrorCode::PayoutNoReused,
        ErrorCode::InvalidAlertUrl,
        ErrorCode::InvalidBill,
        ErrorCode::InvalidChannelParams,
        ErrorCode::InvalidCurrency,
        ErrorCode::InvalidFeeRate,
        ErrorCode::InvalidIdempotencyKey,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidNotifyUrl,
        ErrorCode::InvalidReturnUrl,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidSplits,
        ErrorCode::LengthRequired,
        ErrorCode::MerchantNotAllowed,
        ErrorCode::MerchantNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::MissingChannelField,
        ErrorCode::NoRoute,
        ErrorCode::NotificationNotFound,
        ErrorCode::NotificationSettled,
        ErrorCode::OperatorNotFound,
        ErrorCode::OrderAlreadyPaid,
        ErrorCode::OrderAmountMismatch,
        ErrorCode::PayloadTooLarge,
        ErrorCode::PaymentAlreadySucceeded,
        ErrorCode::PaymentNotFound,
        ErrorCode::PaymentNotRefundable,
        ErrorCode::PaymentNotShareable,
        ErrorCode::ProjectionNotFound,
        ErrorCode::RateLimited,
        ErrorCode::ReceiverNotFound,
        ErrorCode::ReadModelUnavailable,
        ErrorCode::RebuildInProgress,
        ErrorCode::RebuildUnavailable,
        ErrorCode::ReconciliationNotFound,
        ErrorCode::RefundAlreadySettled,
        ErrorCode::RefundExceedsAvailable,
        ErrorCode::RefundNoReused,
        ErrorCode::RefundNotFound,
        ErrorCode::RequestTimeout,
        ErrorCode::RouteNotFound,
        ErrorCode::SandboxTradeNotPayable,
        ErrorCode::SplitsExceedAmount,
        ErrorCode::StoreUnavailable,
        ErrorCode::TooManyAnomalies,
        ErrorCode::TooManyAttempts,
        ErrorCode::TooManyRefunds,
        ErrorCode::Unauthorized,
        ErrorCode::UnknownField,
        ErrorCode::UnsupportedChannel,
        ErrorCode::UnsupportedCurrency,
        ErrorCode::UnsupportedInvokeMethod,
    ];

    /// The HTTP status every refusal with this code answers: one status per code, so a
    /// client can rely on either.
    pub fn status(self) -> u16 {
        match self {
            ErrorCode::AlertChannelNotFound => 404,
            ErrorCode::AlreadyExists => 409,
            ErrorCode::AppDisabled => 403,
            ErrorCode::AppNotFound => 404,
            ErrorCode::AttemptTooSoon => 409,
            ErrorCode::CallbackRejected => 400,
            ErrorCode::ChannelAccountDisabled => 422,
            ErrorCode::ChannelAccountNotFound => 404,
            ErrorCode::ChannelMismatch => 422,
            ErrorCode::ChannelTradeNoConflict => 409,
            ErrorCode::ChannelUnavailable => 502,
            ErrorCode::CheckoutExpired => 409,
            ErrorCode::CheckoutNotFound => 404,
            ErrorCode::ConcurrentUpdate => 409,
            ErrorCode::CurrencyMismatch => 422,
            ErrorCode::DuplicateTradeNo => 409,
            ErrorCode::FieldTooLong => 400,
            ErrorCode::Forbidden => 403,
            ErrorCode::IdempotencyKeyReused => 409,
            ErrorCode::InternalError => 500,
            ErrorCode::InvalidAmount => 400,
            ErrorCode::InvalidAlertUrl => 422,
            ErrorCode::InvalidBill => 400,
            ErrorCode::InvalidAccountMode => 422,
            ErrorCode::PayoutNotFound => 404,
            ErrorCode::InsufficientBalance => 422,
            ErrorCode::PayoutNoReused => 409,
            ErrorCode::PaymentNotShareable => 422,
            ErrorCode::ChannelRefused => 422,
            ErrorCode::ReceiverNotFound => 404,
            ErrorCode::InvalidChannelParams => 422,
            ErrorCode::InvalidCurrency => 400,
            ErrorCode::InvalidFeeRate => 400,
            ErrorCode::InvalidIdempotencyKey => 400,
            ErrorCode::InvalidJson => 400,
            ErrorCode::InvalidNotifyUrl => 422,
            ErrorCode::InvalidReturnUrl => 422,
            ErrorCode::InvalidRequest => 400,
            ErrorCode::InvalidSplits => 422,
            ErrorCode::LengthRequired => 411,
            ErrorCode::MerchantNotAllowed => 403,
            ErrorCode::MerchantNotFound => 404,
            ErrorCode::MethodNotAllowed => 405,
            ErrorCode::MissingChannelField => 422,
            ErrorCode::NoRoute => 422,
            ErrorCode::NotificationNotFound => 404,
            ErrorCode::NotificationSettled => 409,
            ErrorCode::OperatorNotFound => 404,
            ErrorCode::OrderAlreadyPaid => 409,
            ErrorCode::OrderAmountMismatch => 409,
            ErrorCode::PayloadTooLarge => 413,
            ErrorCode::PaymentAlreadySucceeded => 409,
            ErrorCode::PaymentNotFound => 404,
            ErrorCode::PaymentNotRefundable => 409,
            ErrorCode::ProjectionNotFound => 404,
            ErrorCode::RateLimited => 429,
            ErrorCode::ReadModelUnavailable => 503,
            ErrorCode::RebuildInProgress => 409,
            ErrorCode::RebuildUnavailable => 409,
            ErrorCode::ReconciliationNotFound => 404,
            ErrorCode::RefundAlreadySettled => 409,
            ErrorCode::RefundExceedsAvailable => 422,
            ErrorCode::RefundNoReused => 409,
            ErrorCode::RefundNotFound => 404,
            ErrorCode::RequestTimeout => 408,
            ErrorCode::RouteNotFound => 404,
            ErrorCode::SandboxTradeNotPayable => 409,
            ErrorCode::SplitsExceedAmount => 422,
            ErrorCode::StoreUnavailable => 503,
            ErrorCode::TooManyAnomalies => 409,
            ErrorCode::TooManyAttempts => 409,
            ErrorCode::TooManyRefunds => 409,
            ErrorCode::Unauthorized => 401,
            ErrorCode::UnknownField => 400,
            ErrorCode::UnsupportedChannel => 422,
            ErrorCode::UnsupportedCurrency => 422,
            ErrorCode::UnsupportedInvokeMethod => 422,
        }
    }

    /// The code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::AlertChannelNotFound => "alert_channel_not_found",
            ErrorCode::AlreadyExists => "already_exists",
            ErrorCode::AppDisabled => "app_disabled",
            ErrorCode::AppNotFound => "app_not_found",
            ErrorCode::AttemptTooSoon => "attempt_too_soon",
            ErrorCode::CallbackRejected => "callback_rejected",
            ErrorCode::ChannelAccountDisabled => "channel_account_disabled",
            ErrorCode::ChannelAccountNotFound => "channel_account_not_found",
            ErrorCode::ChannelMismatch => "channel_mismatch",
            ErrorCode::ChannelTradeNoConflict => "channel_trade_no_conflict",
            ErrorCode::ChannelUnavailable => "channel_unavailable",
            ErrorCode::CheckoutExpired => "checkout_expired",
            ErrorCode::CheckoutNotFound => "checkout_not_found",
            ErrorCode::ConcurrentUpdate => "concurrent_update",
            ErrorCode::CurrencyMismatch => "currency_mismatch",
            ErrorCode::DuplicateTradeNo => "duplicate_trade_no",
            ErrorCode::FieldTooLong => "field_too_long",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::InvalidAmount => "invalid_amount",
            ErrorCode::InvalidAlertUrl => "invalid_alert_url",
            ErrorCode::InvalidBill => "invalid_bill",
            ErrorCode::InvalidAccountMode => "invalid_account_mode",
            ErrorCode::PayoutNotFound => "payout_not_found",
            ErrorCode::InsufficientBalance => "insufficient_balance",
            ErrorCode::PayoutNoReused => "payout_no_reused",
            ErrorCode::PaymentNotShareable => "payment_not_shareable",
            ErrorCode::ChannelRefused => "channel_refused",
            ErrorCode::ReceiverNotFound => "receiver_not_found",
            ErrorCode::InvalidChannelParams => "invalid_channel_params",
            ErrorCode::InvalidCurrency => "invalid_currency",
            ErrorCode::InvalidFeeRate => "invalid_fee_rate",
            ErrorCode::InvalidIdempotencyKey => "invalid_idempotency_key",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidNotifyUrl => "invalid_notify_url",
            ErrorCode::InvalidReturnUrl => "invalid_return_url",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidSplits => "invalid_splits",
            ErrorCode::LengthRequired => "length_required",
            ErrorCode::MerchantNotAllowed => "merchant_not_allowed",
            ErrorCode::MerchantNotFound => "merchant_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::MissingChannelField => "missing_channel_field",
            ErrorCode::NoRoute => "no_route",
            ErrorCode::NotificationNotFound => "notification_not_found",
            ErrorCode::NotificationSettled => "notification_settled",
            ErrorCode::OperatorNotFound => "operator_not_found",
            ErrorCode::OrderAlreadyPaid => "order_already_paid",
            ErrorCode::OrderAmountMismatch => "order_amount_mismatch",
            ErrorCode::PayloadTooLarge => "payload_too_large",
            ErrorCode::PaymentAlreadySucceeded => "payment_already_succeeded",
            ErrorCode::PaymentNotFound => "payment_not_found",
            ErrorCode::PaymentNotRefundable => "payment_not_refundable",
            ErrorCode::ProjectionNotFound => "projection_not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::ReadModelUnavailable => "read_model_unavailable",
            ErrorCode::RebuildInProgress => "rebuild_in_progress",
            ErrorCode::RebuildUnavailable => "rebuild_unavailable",
            ErrorCode::ReconciliationNotFound => "reconciliation_not_found",
            ErrorCode::RefundAlreadySettled => "refund_already_settled",
            ErrorCode::RefundExceedsAvailable => "refund_exceeds_available",
            ErrorCode::RefundNoReused => "refund_no_reused",
            ErrorCode::RefundNotFound => "refund_not_found",
            ErrorCode::RequestTimeout => "request_timeout",
            ErrorCode::RouteNotFound => "route_not_found",
            ErrorCode::SandboxTradeNotPayable => "sandbox_trade_not_payable",
            ErrorCode::SplitsExceedAmount => "splits_exceed_amount",
            ErrorCode::StoreUnavailable => "store_unavailable",
            ErrorCode::TooManyAnomalies => "too_many_anomalies",
            ErrorCode::TooManyAttempts => "too_many_attempts",
            ErrorCode::TooManyRefunds => "too_many_refunds",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::UnknownField => "unknown_field",
            ErrorCode::UnsupportedChannel => "unsupported_channel",
            ErrorCode::UnsupportedCurrency => "unsupported_currency",
            ErrorCode::UnsupportedInvokeMethod => "unsupported_invoke_method",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A refusal: what went wrong (the code decides the HTTP status) and a sentence saying it.
#[derive(Debug, Clone)]
pub struct Refusal {
    /// Stable snake_case code for programs.
    pub code: ErrorCode,
    /// A sentence for humans.
    pub message: String,
    /// Extra fields beside code and message (`retry_after`).
    pub extra: Option<(&'static str, serde_json::Value)>,
}

impl Refusal {
    /// A refusal with a code and message.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal {
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// The HTTP status it is answered with.
    pub fn status(&self) -> u16 {
        self.code.status()
    }

    /// 400 for a request that does not have the right shape.
    pub fn invalid(message: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::InvalidRequest, message)
    }

    /// The same error naming the request field it is about (`error.field`).
    pub fn with_field(mut self, field: impl Into<String>) -> Refusal {
        self.extra = Some(("field", serde_json::Value::String(field.into())));
        self
    }

    /// 404.
    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> Refusal {
        Refusal::new(code, message)
    }

    /// 502: the channel could not be reached or refused the call.
    pub fn channel_unavailable(error: impl std::fmt::Display) -> Refusal {
        Refusal::new(ErrorCode::ChannelUnavailable, error.to_string())
    }

    /// 503: a read model this request needs has stopped (or is far behind).
    pub fn read_model_unavailable(message: impl Into<String>) -> Refusal {
        Refusal::new(ErrorCode::ReadModelUnavailable, message)
    }

    /// 500 that hides details from the caller (they go to the log).
    pub fn internal(context: &str, error: impl std::fmt::Display) -> Refusal {
        tracing::error!(%error, context, "internal error");
        Refusal::new(
            ErrorCode::InternalError,
            "paycenter could not complete the request; it was logged",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({ "code": self.code.as_str(), "message": self.message });
        if let Some((key, value)) = &self.extra {
            error[*key] = value.clone();
        }
        json!({ "error": error })
    }
}

impl From<DomainError> for Refusal {
    fn from(error: DomainError) -> Refusal {
        let message = error.to_string();
        let code = match &error {
            DomainError::Money(paycenter_domain::money::MoneyError::CurrencyMismatch {
                ..
            }) => ErrorCode::CurrencyMismatch,
            DomainError::Money(_) => ErrorCode::InvalidAmount,
            DomainError::AlreadyExists { .. } => ErrorCode::AlreadyExists,
            DomainError::OrderAlreadyPaid { .. } => ErrorCode::OrderAlreadyPaid,
            DomainError::AttemptTooSoon {
                retry_after_seconds,
                ..
            } => {
                let mut api = Refusal::new(ErrorCode::AttemptTooSoon, message);
                api.extra = Some(("retry_after", json!(retry_after_seconds)));
                return api;
            }
            DomainError::OrderAmountMismatch { .. } => ErrorCode::OrderAmountMismatch,
            DomainError::TooManyAttempts { .. } => ErrorCode::TooManyAttempts,
            DomainError::DuplicateTradeNo { .. } => ErrorCode::DuplicateTradeNo,
            DomainError::InvalidSplits { .. } => ErrorCode::InvalidSplits,
            DomainError::SplitsExceedAmount { .. } => ErrorCode::SplitsExceedAmount,
            DomainError::PaymentNotFound { .. } => ErrorCode::PaymentNotFound,
            DomainError::PaymentAlreadySucceeded { .. } => ErrorCode::PaymentAlreadySucceeded,
            DomainError::TooManyAnomalies { .. } => ErrorCode::TooManyAnomalies,
            DomainError::ChannelTradeNoConflict { .. } => ErrorCode::ChannelTradeNoConflict,
            DomainError::PaymentNotRefundable { .. } => ErrorCode::PaymentNotRefundable,
            DomainError::RefundExceedsAvailable { .. } => ErrorCode::RefundExceedsAvailable,
            DomainError::RefundNoReused { .. } => ErrorCode::RefundNoReused,
            DomainError::TooManyRefunds { .. } => ErrorCode::TooManyRefunds,
            DomainError::RefundNotFound { .. } => ErrorCode::RefundNotFound,
            DomainError::RefundAlreadySettled { .. } => ErrorCode::RefundAlreadySettled,
            DomainError::MerchantNotFound { .. } => ErrorCode::MerchantNotFound,
            DomainError::AppNotFound { .. } => ErrorCode::AppNotFound,
            DomainError::ChannelAccountNotFound { .. } => ErrorCode::ChannelAccountNotFound,
            DomainError::NotificationNotFound { .. } => ErrorCode::NotificationNotFound,
            DomainError::NotificationSettled { .. } => ErrorCode::NotificationSettled,
            DomainError::OperatorNotFound { .. } => ErrorCode::OperatorNotFound,
            DomainError::NoRoute { .. } => ErrorCode::NoRoute,
            DomainError::InvalidField { .. } => ErrorCode::InvalidRequest,
            DomainError::InvalidAccountMode { .. } => ErrorCode::InvalidAccountMode,
            DomainError::ReceiverNotFound => ErrorCode::ReceiverNotFound,
            DomainError::NotShareable { .. } => ErrorCode::PaymentNotShareable,
            DomainError::PayoutNoReused { .. } => ErrorCode::PayoutNoReused,
            DomainError::InsufficientBalance { .. } => ErrorCode::InsufficientBalance,
        };
        Refusal::new(code, message)
    }
}

impl From<StoreError> for Refusal {
    fn from(error: StoreError) -> Refusal {
        match error {
            StoreError::WrongExpectedRevision { .. } => Refusal::new(
                ErrorCode::ConcurrentUpdate,
                "another request changed this resource at the same time; retry",
            ),
            StoreError::Closed => {
                tracing::error!("the event store refused an append: its writer has stopped");
                Refusal::new(
                    ErrorCode::StoreUnavailable,
                    "paycenter cannot record anything right now; nothing was recorded, retry later",
                )
            }
            other => Refusal::internal("event store", other),
        }
    }
}

impl From<paycenter_projections::tables::TableError> for Refusal {
    /// The read model's file could not be read: the details go to the log, not to the caller.
    fn from(error: paycenter_projections::tables::TableError) -> Refusal {
        tracing::error!(%error, "reading the read model failed");
        Refusal::read_model_unavailable(
            "the read model could not be read; operators are told by the log",
        )
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn codes_are_unique_snake_case() {
        let mut seen = std::collections::HashSet::new();
        for code in super::ErrorCode::ALL {
            let text = code.as_str();
            assert!(seen.insert(text), "{text} twice");
            assert!(text.chars().all(|c| c.is_ascii_lowercase() || c == '_'));
            assert!((400..600).contains(&code.status()), "{text}");
        }
    }
}
