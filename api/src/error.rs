//! The HTTP error shape: a status plus `{"error": {"code", "message"}}`. Each domain or store
//! error maps to one status and one stable code.

use paycenter_domain::DomainError;
use paycenter_store::StoreError;
use serde_json::json;
use warp::http::StatusCode;

/// An error answer.
#[derive(Debug, Clone)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable snake_case code for programs.
    pub code: &'static str,
    /// A sentence for humans.
    pub message: String,
    /// Extra fields beside code and message (`retry_after`).
    pub extra: Option<(&'static str, serde_json::Value)>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
            extra: None,
        }
    }

    /// 400 for a request that does not have the right shape.
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    /// The same error naming the request field it is about (`error.field`).
    pub fn with_field(mut self, field: impl Into<String>) -> ApiError {
        self.extra = Some(("field", serde_json::Value::String(field.into())));
        self
    }

    /// 404.
    pub fn not_found(code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::NOT_FOUND, code, message)
    }

    /// 502: the channel could not be reached or refused the call.
    pub fn channel_unavailable(error: impl std::fmt::Display) -> ApiError {
        ApiError::new(
            StatusCode::BAD_GATEWAY,
            "channel_unavailable",
            error.to_string(),
        )
    }

    /// 503: a read model this request needs has stopped (or is far behind).
    pub fn read_model_unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "read_model_unavailable",
            message,
        )
    }

    /// 500 that hides details from the caller (they go to the log).
    pub fn internal(context: &str, error: impl std::fmt::Display) -> ApiError {
        tracing::error!(%error, context, "internal error");
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            "internal_error",
            "paycenter could not complete the request; it was logged",
        )
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let mut error = json!({ "code": self.code, "message": self.message });
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
            DomainError::Money(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_amount"),
            DomainError::AlreadyExists { .. } => (StatusCode::CONFLICT, "already_exists"),
            DomainError::OrderAlreadyPaid { .. } => (StatusCode::CONFLICT, "order_already_paid"),
            DomainError::AttemptTooSoon {
                retry_after_seconds,
                ..
            } => {
                let mut api = ApiError::new(StatusCode::CONFLICT, "attempt_too_soon", message);
                api.extra = Some(("retry_after", json!(retry_after_seconds)));
                return api;
            }
            DomainError::OrderAmountMismatch { .. } => {
                (StatusCode::CONFLICT, "order_amount_mismatch")
            }
            DomainError::TooManyAttempts { .. } => (StatusCode::CONFLICT, "too_many_attempts"),
            DomainError::DuplicateTradeNo { .. } => (StatusCode::CONFLICT, "duplicate_trade_no"),
            DomainError::InvalidSplits { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "invalid_splits")
            }
            DomainError::SplitsExceedAmount { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "splits_exceed_amount")
            }
            DomainError::PaymentNotFound { .. } => (StatusCode::NOT_FOUND, "payment_not_found"),
            DomainError::PaymentAlreadySucceeded { .. } => {
                (StatusCode::CONFLICT, "payment_already_succeeded")
            }
            DomainError::TooManyAnomalies { .. } => (StatusCode::CONFLICT, "too_many_anomalies"),
            DomainError::ChannelTradeNoConflict { .. } => {
                (StatusCode::CONFLICT, "channel_trade_no_conflict")
            }
            DomainError::PaymentNotRefundable { .. } => {
                (StatusCode::CONFLICT, "payment_not_refundable")
            }
            DomainError::RefundExceedsAvailable { .. } => {
                (StatusCode::UNPROCESSABLE_ENTITY, "refund_exceeds_available")
            }
            DomainError::RefundNoReused { .. } => (StatusCode::CONFLICT, "refund_no_reused"),
            DomainError::TooManyRefunds { .. } => (StatusCode::CONFLICT, "too_many_refunds"),
            DomainError::RefundNotFound { .. } => (StatusCode::NOT_FOUND, "refund_not_found"),
            DomainError::RefundAlreadySettled { .. } => {
                (StatusCode::CONFLICT, "refund_already_settled")
            }
            DomainError::MerchantNotFound { .. } => (StatusCode::NOT_FOUND, "merchant_not_found"),
            DomainError::AppNotFound { .. } => (StatusCode::NOT_FOUND, "app_not_found"),
            DomainError::ChannelAccountNotFound { .. } => {
                (StatusCode::NOT_FOUND, "channel_account_not_found")
            }
            DomainError::NotificationNotFound { .. } => {
                (StatusCode::NOT_FOUND, "notification_not_found")
            }
            DomainError::NotificationSettled { .. } => {
                (StatusCode::CONFLICT, "notification_settled")
            }
            DomainError::InvalidField { .. } => (StatusCode::BAD_REQUEST, "invalid_request"),
        };
        ApiError::new(status, code, message)
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> ApiError {
        match error {
            StoreError::WrongExpectedRevision { .. } => ApiError::new(
                StatusCode::CONFLICT,
                "concurrent_update",
                "another request changed this resource at the same time; retry",
            ),
            StoreError::Closed => {
                tracing::error!("the event store refused an append: its writer has stopped");
                ApiError::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "store_unavailable",
                    "paycenter cannot record anything right now; nothing was recorded, retry later",
                )
            }
            other => ApiError::internal("event store", other),
        }
    }
}
