//! The HTTP error shape: a status plus `{"error": {"code", "message"}}`. Each domain or store
//! error maps to one status and one stable code.

use paycenter_domain::DomainError;
use paycenter_store::StoreError;
use serde_json::json;
use warp::http::StatusCode;

/// Every error code paycenter answers, in `error.code`: stable, snake_case, for programs to
/// branch on (the message is for people). `/openapi.json` lists them.
#[allow(missing_docs)] // Each name says what went wrong; docs/api.md explains them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    AlreadyExists,
    AppDisabled,
    AppNotFound,
    AttemptTooSoon,
    CallbackRejected,
    ChannelAccountDisabled,
    ChannelAccountNotFound,
    ChannelMismatch,
    ChannelTradeNoConflict,
    ChannelUnavailable,
    ConcurrentUpdate,
    CurrencyMismatch,
    DuplicateTradeNo,
    FieldTooLong,
    IdempotencyKeyReused,
    InternalError,
    InvalidAmount,
    InvalidBill,
    InvalidChannelParams,
    InvalidCurrency,
    InvalidFeeRate,
    InvalidIdempotencyKey,
    InvalidJson,
    InvalidNotifyUrl,
    InvalidRequest,
    InvalidSplits,
    LengthRequired,
    MerchantNotAllowed,
    MerchantNotFound,
    MethodNotAllowed,
    MissingChannelField,
    NotificationNotFound,
    NotificationSettled,
    OrderAlreadyPaid,
    OrderAmountMismatch,
    PayloadTooLarge,
    PaymentAlreadySucceeded,
    PaymentNotFound,
    PaymentNotRefundable,
    ProjectionNotFound,
    RateLimited,
    ReadModelUnavailable,
    RebuildInProgress,
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
    pub const ALL: [ErrorCode; 61] = [
        ErrorCode::AlreadyExists,
        ErrorCode::AppDisabled,
        ErrorCode::AppNotFound,
        ErrorCode::AttemptTooSoon,
        ErrorCode::CallbackRejected,
        ErrorCode::ChannelAccountDisabled,
        ErrorCode::ChannelAccountNotFound,
        ErrorCode::ChannelMismatch,
        ErrorCode::ChannelTradeNoConflict,
        ErrorCode::ChannelUnavailable,
        ErrorCode::ConcurrentUpdate,
        ErrorCode::CurrencyMismatch,
        ErrorCode::DuplicateTradeNo,
        ErrorCode::FieldTooLong,
        ErrorCode::IdempotencyKeyReused,
        ErrorCode::InternalError,
        ErrorCode::InvalidAmount,
        ErrorCode::InvalidBill,
        ErrorCode::InvalidChannelParams,
        ErrorCode::InvalidCurrency,
        ErrorCode::InvalidFeeRate,
        ErrorCode::InvalidIdempotencyKey,
        ErrorCode::InvalidJson,
        ErrorCode::InvalidNotifyUrl,
        ErrorCode::InvalidRequest,
        ErrorCode::InvalidSplits,
        ErrorCode::LengthRequired,
        ErrorCode::MerchantNotAllowed,
        ErrorCode::MerchantNotFound,
        ErrorCode::MethodNotAllowed,
        ErrorCode::MissingChannelField,
        ErrorCode::NotificationNotFound,
        ErrorCode::NotificationSettled,
        ErrorCode::OrderAlreadyPaid,
        ErrorCode::OrderAmountMismatch,
        ErrorCode::PayloadTooLarge,
        ErrorCode::PaymentAlreadySucceeded,
        ErrorCode::PaymentNotFound,
        ErrorCode::PaymentNotRefundable,
        ErrorCode::ProjectionNotFound,
        ErrorCode::RateLimited,
        ErrorCode::ReadModelUnavailable,
        ErrorCode::RebuildInProgress,
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

    /// The code on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
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
            ErrorCode::ConcurrentUpdate => "concurrent_update",
            ErrorCode::CurrencyMismatch => "currency_mismatch",
            ErrorCode::DuplicateTradeNo => "duplicate_trade_no",
            ErrorCode::FieldTooLong => "field_too_long",
            ErrorCode::IdempotencyKeyReused => "idempotency_key_reused",
            ErrorCode::InternalError => "internal_error",
            ErrorCode::InvalidAmount => "invalid_amount",
            ErrorCode::InvalidBill => "invalid_bill",
            ErrorCode::InvalidChannelParams => "invalid_channel_params",
            ErrorCode::InvalidCurrency => "invalid_currency",
            ErrorCode::InvalidFeeRate => "invalid_fee_rate",
            ErrorCode::InvalidIdempotencyKey => "invalid_idempotency_key",
            ErrorCode::InvalidJson => "invalid_json",
            ErrorCode::InvalidNotifyUrl => "invalid_notify_url",
            ErrorCode::InvalidRequest => "invalid_request",
            ErrorCode::InvalidSplits => "invalid_splits",
            ErrorCode::LengthRequired => "length_required",
            ErrorCode::MerchantNotAllowed => "merchant_not_allowed",
            ErrorCode::MerchantNotFound => "merchant_not_found",
            ErrorCode::MethodNotAllowed => "method_not_allowed",
            ErrorCode::MissingChannelField => "missing_channel_field",
            ErrorCode::NotificationNotFound => "notification_not_found",
            ErrorCode::NotificationSettled => "notification_settled",
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

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code for programs.
    pub code: ErrorCode,
    /// A sentence for humans.
    pub message: String,
    /// Extra fields beside code and message (`retry_after`).
    pub extra: Option<(&'static str, serde_json::Value)>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// 400 for a request that does not have the right shape.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest, message)
    }

    /// The same error naming the request field it is about (`error.field`).
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.extra = Some(("field", serde_json::Value::String(field.into())));
        self
    }

    /// 404.
    pub fn not_found(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 502: the channel could not be reached or refused the call.
    pub fn channel_unavailable(error: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            ErrorCode::ChannelUnavailable,
            error.to_string(),
        )
    }

    /// 503: a read model this request needs has stopped (or is far behind).
    pub fn read_model_unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ReadModelUnavailable,
            message,
        )
    }

    /// 500 that hides details from the caller (they go to the log).
    pub fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, context, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
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

impl From<DomainError> for ApiError {
    fn from(error: DomainError) -> ApiError {
        let message = error.to_string();
        let (status, code) = match &error {
            DomainError::Money(_) => (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidAmount),
            DomainError::AlreadyExists { .. } => (StatusCode::CONFLICT, ErrorCode::AlreadyExists),
            DomainError::OrderAlreadyPaid { .. } => {
                (StatusCode::CONFLICT, ErrorCode::OrderAlreadyPaid)
            }
            DomainError::AttemptTooSoon {
                retry_after_seconds,
                ..
            } => {
                let mut api =
                    ApiError::new(StatusCode::CONFLICT, ErrorCode::AttemptTooSoon, message);
                api.extra = Some(("retry_after", json!(retry_after_seconds)));
                return api;
            }
            DomainError::OrderAmountMismatch { .. } => {
                (StatusCode::CONFLICT, ErrorCode::OrderAmountMismatch)
            }
            DomainError::TooManyAttempts { .. } => {
                (StatusCode::CONFLICT, ErrorCode::TooManyAttempts)
            }
            DomainError::DuplicateTradeNo { .. } => {
                (StatusCode::CONFLICT, ErrorCode::DuplicateTradeNo)
            }
            DomainError::InvalidSplits { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidSplits)
            }
            DomainError::SplitsExceedAmount { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::SplitsExceedAmount,
            ),
            DomainError::PaymentNotFound { .. } => {
                (StatusCode::NOT_FOUND, ErrorCode::PaymentNotFound)
            }
            DomainError::PaymentAlreadySucceeded { .. } => {
                (StatusCode::CONFLICT, ErrorCode::PaymentAlreadySucceeded)
            }
            DomainError::TooManyAnomalies { .. } => {
                (StatusCode::CONFLICT, ErrorCode::TooManyAnomalies)
            }
            DomainError::ChannelTradeNoConflict { .. } => {
                (StatusCode::CONFLICT, ErrorCode::ChannelTradeNoConflict)
            }
            DomainError::PaymentNotRefundable { .. } => {
                (StatusCode::CONFLICT, ErrorCode::PaymentNotRefundable)
            }
            DomainError::RefundExceedsAvailable { .. } => (
                StatusCode::UNPROCESSABLE_ENTITY,
                ErrorCode::RefundExceedsAvailable,
            ),
            DomainError::RefundNoReused { .. } => (StatusCode::CONFLICT, ErrorCode::RefundNoReused),
            DomainError::TooManyRefunds { .. } => (StatusCode::CONFLICT, ErrorCode::TooManyRefunds),
            DomainError::RefundNotFound { .. } => {
                (StatusCode::NOT_FOUND, ErrorCode::RefundNotFound)
            }
            DomainError::RefundAlreadySettled { .. } => {
                (StatusCode::CONFLICT, ErrorCode::RefundAlreadySettled)
            }
            DomainError::MerchantNotFound { .. } => {
                (StatusCode::NOT_FOUND, ErrorCode::MerchantNotFound)
            }
            DomainError::AppNotFound { .. } => (StatusCode::NOT_FOUND, ErrorCode::AppNotFound),
            DomainError::ChannelAccountNotFound { .. } => {
                (StatusCode::NOT_FOUND, ErrorCode::ChannelAccountNotFound)
            }
            DomainError::NotificationNotFound { .. } => {
                (StatusCode::NOT_FOUND, ErrorCode::NotificationNotFound)
            }
            DomainError::NotificationSettled { .. } => {
                (StatusCode::CONFLICT, ErrorCode::NotificationSettled)
            }
            DomainError::InvalidField { .. } => {
                (StatusCode::BAD_REQUEST, ErrorCode::InvalidRequest)
            }
        };
        ApiError::new(status, code, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::WrongExpectedRevision { .. } => ApiError::new(
                StatusCode::CONFLICT,
                ErrorCode::ConcurrentUpdate,
                "another request changed this resource at the same time; retry",
            ),
            StoreError::Closed => {
                tracing::error!("the event store refused an append: its writer has stopped");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    ErrorCode::StoreUnavailable,
                    "paycenter cannot record anything right now; nothing was recorded, retry later",
                )
            }
            other => ApiError::internal("event store", other),
        }
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
        }
    }
}
