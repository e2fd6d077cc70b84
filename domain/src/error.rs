//! Operating errors of the domain: a command refused for a reason the caller can act on.
//! Broken invariants are not here: they are bugs, and `apply` asserts them.

use crate::ids::{MerchantId, NotificationId, OrderNo, RefundId, RefundNo, TradeNo};
use crate::money::{Money, MoneyError};
use crate::vocabulary::AttemptStatus;

/// Why the domain refused a command.
#[allow(missing_docs)]
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error(transparent)]
    Money(MoneyError),
    #[error("{kind} {id} already exists")]
    AlreadyExists { kind: &'static str, id: String },
    #[error("order {order_no} is already paid by {trade_no}")]
    OrderAlreadyPaid {
        order_no: OrderNo,
        trade_no: TradeNo,
    },
    #[error("order {order_no} had an attempt too recently; retry after {retry_after_seconds} s")]
    AttemptTooSoon {
        order_no: OrderNo,
        retry_after_seconds: u64,
    },
    #[error("order {order_no} is for {expected}, not {requested}")]
    OrderAmountMismatch {
        order_no: OrderNo,
        expected: Money,
        requested: Money,
    },
    #[error("order {order_no} reached the maximum of {max} attempts")]
    TooManyAttempts { order_no: OrderNo, max: usize },
    #[error("trade number {trade_no} is already used")]
    DuplicateTradeNo { trade_no: TradeNo },
    #[error("invalid splits: {reason}")]
    InvalidSplits { reason: String },
    #[error("splits and fee ({splits_and_fee}) exceed the payment amount ({amount})")]
    SplitsExceedAmount {
        amount: Money,
        splits_and_fee: Money,
    },
    #[error("payment {trade_no} not found")]
    PaymentNotFound { trade_no: TradeNo },
    #[error("payment {trade_no} has already succeeded")]
    PaymentAlreadySucceeded { trade_no: TradeNo },
    #[error("payment {trade_no} reached the maximum of {max} contradicting reports")]
    TooManyAnomalies { trade_no: TradeNo, max: usize },
    #[error("payment {trade_no} was already paid under another channel trade number")]
    ChannelTradeNoConflict { trade_no: TradeNo },
    #[error("payment {trade_no} is {status:?}, not succeeded, and cannot be refunded")]
    PaymentNotRefundable {
        trade_no: TradeNo,
        status: AttemptStatus,
    },
    #[error("refund {requested} exceeds the {available} still refundable on payment {trade_no}")]
    RefundExceedsAvailable {
        trade_no: TradeNo,
        requested: Money,
        available: Money,
    },
    #[error(
        "refund number {refund_no} was already used on payment {trade_no} with another amount"
    )]
    RefundNoReused {
        refund_no: RefundNo,
        trade_no: TradeNo,
    },
    #[error("payment {trade_no} reached the maximum of {max} refunds")]
    TooManyRefunds { trade_no: TradeNo, max: usize },
    #[error("refund {refund_id} not found")]
    RefundNotFound { refund_id: RefundId },
    #[error("refund {refund_id} has already settled the other way")]
    RefundAlreadySettled { refund_id: RefundId },
    #[error("app {app_id} not found")]
    AppNotFound { app_id: crate::ids::AppId },
    #[error("channel account {channel_account_id} not found")]
    ChannelAccountNotFound {
        channel_account_id: crate::ids::ChannelAccountId,
    },
    #[error("merchant {merchant_id} not found")]
    MerchantNotFound { merchant_id: MerchantId },
    #[error("no route: {reason}")]
    NoRoute { reason: String },
    #[error("operator {operator_id} not found")]
    OperatorNotFound { operator_id: String },
    #[error("notification {notification_id} not found")]
    NotificationNotFound { notification_id: NotificationId },
    #[error("notification {notification_id} is already settled")]
    NotificationSettled { notification_id: NotificationId },
    #[error("{field} is invalid: {reason}")]
    InvalidField { field: &'static str, reason: String },
    #[error("{reason}")]
    InvalidAccountMode { reason: String },
    #[error("no such receiver is bound")]
    ReceiverNotFound,
    #[error("payment {trade_no} cannot be shared: {reason}")]
    NotShareable { trade_no: TradeNo, reason: String },
    #[error("payout_no {payout_no} was used for another payout")]
    PayoutNoReused { payout_no: String },
    #[error("not enough to pay out: {available} available")]
    InsufficientBalance { available: crate::money::Money },
}
