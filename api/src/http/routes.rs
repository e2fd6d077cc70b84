//! The route table: every operation paycenter serves, with its method, path, caller, body and
//! answers. [`crate::http::router`] routes requests by it and [`crate::http::openapi`] documents
//! it, so the two cannot drift apart.

/// Every operation paycenter serves: the router calls the handler of each.
#[allow(missing_docs)] // Each is documented by its route's summary.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Operation {
    CreateMerchant,
    CreateChannelAccount,
    RotateChannelAccount,
    MerchantBalances,
    Reconcile,
    ReconcileUpload,
    GetReconciliation,
    ListProjections,
    RebuildProjection,
    CreateApp,
    AppAction,
    ChannelAccountAction,
    CreatePayment,
    FindPayments,
    GetPayment,
    ClosePayment,
    CreateRefund,
    ListEvents,
    ListNotifications,
    RedeliverNotification,
    ChannelCallback,
    Checkout,
    CheckoutStatus,
    CashierPick,
    CashierWechat,
    Asset,
    SandboxPay,
    Healthz,
    Metrics,
    Openapi,
    ListRefunds,
    ListMerchants,
    GetMerchant,
    ListChannelAccounts,
    MerchantStats,
    ListApps,
    ListReconciliations,
    CreateOperator,
    ListOperators,
    OperatorAction,
    CreateAlertChannel,
    ListAlertChannels,
    DeleteAlertChannel,
    TestAlertChannel,
    ListAlerts,
    SetRouting,
    GetRouting,
    CreateReceiver,
    ListReceivers,
    DeleteReceiver,
    SharePayment,
    CreatePayout,
    GetPayout,
    ListPayouts,
}

impl Operation {
    /// Every operation, in the table's order.
    pub const ALL: [Operation; 54] = [
        Operation::CreateMerchant,
        Operation::CreateChannelAccount,
        Operation::RotateChannelAccount,
        Operation::MerchantBalances,
        Operation::Reconcile,
        Operation::ReconcileUpload,
        Operation::GetReconciliation,
        Operation::ListProjections,
        Operation::RebuildProjection,
        Operation::CreateApp,
        Operation::AppAction,
        Operation::ChannelAccountAction,
        Operation::CreatePayment,
        Operation::FindPayments,
        Operation::GetPayment,
        Operation::ClosePayment,
        Operation::CreateRefund,
        Operation::ListEvents,
        Operation::ListNotifications,
        Operation::RedeliverNotification,
        Operation::ChannelCallback,
        Operation::Checkout,
        Operation::CheckoutStatus,
        Operation::CashierPick,
        Operation::CashierWechat,
        Operation::Asset,
        Operation::SandboxPay,
        Operation::Healthz,
        Operation::Metrics,
        Operation::Openapi,
        Operation::ListRefunds,
        Operation::ListMerchants,
        Operation::GetMerchant,
        Operation::ListChannelAccounts,
        Operation::MerchantStats,
        Operation::ListApps,
        Operation::ListReconciliations,
        Operation::CreateOperator,
        Operation::ListOperators,
        Operation::OperatorAction,
        Operation::CreateAlertChannel,
        Operation::ListAlertChannels,
        Operation::DeleteAlertChannel,
        Operation::TestAlertChannel,
        Operation::ListAlerts,
        Operation::SetRouting,
        Operation::GetRouting,
        Operation::CreateReceiver,
        Operation::ListReceivers,
        Operation::DeleteReceiver,
        Operation::SharePayment,
        Operation::CreatePayout,
        Operation::GetPayout,
        Operation::ListPayouts,
    ];

    /// Its `operationId` in the document and `route` label in the metrics.
    pub fn id(self) -> &'static str {
        match self {
            Operation::CreateMerchant => "create_merchant",
            Operation::CreateChannelAccount => "create_channel_account",
            Operation::RotateChannelAccount => "rotate_channel_account",
            Operation::MerchantBalances => "merchant_balances",
            Operation::Reconcile => "reconcile",
            Operation::ReconcileUpload => "reconcile_upload",
            Operation::GetReconciliation => "get_reconciliation",
            Operation::ListProjections => "list_projections",
            Operation::RebuildProjection => "rebuild_projection",
            Operation::CreateApp => "create_app",
            Operation::AppAction => "app_action",
            Operation::ChannelAccountAction => "channel_account_action",
            Operation::CreatePayment => "create_payment",
            Operation::FindPayments => "find_payments",
            Operation::GetPayment => "get_payment",
            Operation::ClosePayment => "close_payment",
            Operation::CreateRefund => "create_refund",
            Operation::ListEvents => "list_events",
            Operation::ListNotifications => "list_notifications",
            Operation::RedeliverNotification => "redeliver_notification",
            Operation::ChannelCallback => "channel_callback",
            Operation::Checkout => "checkout",
            Operation::CheckoutStatus => "checkout_status",
            Operation::CashierPick => "cashier_pick",
            Operation::CashierWechat => "cashier_wechat",
            Operation::Asset => "asset",
            Operation::SandboxPay => "sandbox_pay",
            Operation::Healthz => "healthz",
            Operation::Metrics => "metrics",
            Operation::Openapi => "openapi",
            Operation::ListRefunds => "list_refunds",
            Operation::ListMerchants => "list_merchants",
            Operation::GetMerchant => "get_merchant",
            Operation::ListChannelAccounts => "list_channel_accounts",
            Operation::MerchantStats => "merchant_stats",
            Operation::ListApps => "list_apps",
            Operation::ListReconciliations => "list_reconciliations",
            Operation::CreateOperator => "create_operator",
            Operation::ListOperators => "list_operators",
            Operation::OperatorAction => "operator_action",
            Operation::CreateAlertChannel => "create_alert_channel",
            Operation::ListAlertChannels => "list_alert_channels",
            Operation::DeleteAlertChannel => "delete_alert_channel",
            Operation::TestAlertChannel => "test_alert_channel",
            Operation::ListAlerts => "list_alerts",
            Operation::SetRouting => "set_routing",
            Operation::GetRouting => "get_routing",
            Operation::CreateReceiver => "create_receiver",
            Operation::ListReceivers => "list_receivers",
            Operation::DeleteReceiver => "delete_receiver",
            Operation::SharePayment => "share_payment",
            Operation::CreatePayout => "create_payout",
            Operation::GetPayout => "get_payout",
            Operation::ListPayouts => "list_payouts",
        }
    }

    /// What an operator's role needs for this operation when the admin side calls it (see
    /// [`crate::service::access`]); `None` for what only apps, channels or the public call.
    pub fn permission(self) -> Option<Permission> {
        use Operation::*;
        Some(match self {
            CreateMerchant | CreateChannelAccount | RotateChannelAccount | CreateApp
            | AppAction | ChannelAccountAction => Permission::Onboard,
            CreateOperator | ListOperators | OperatorAction => Permission::ManageOperators,
            Reconcile | ReconcileUpload => Permission::Reconcile,
            RebuildProjection => Permission::Projections,
            CreateRefund => Permission::Refund,
            RedeliverNotification => Permission::Notifications,
            CreateAlertChannel | DeleteAlertChannel | TestAlertChannel => Permission::Alerts,
            ListAlertChannels | ListAlerts | GetRouting => Permission::Read,
            SetRouting | CreateReceiver | DeleteReceiver => Permission::Onboard,
            ListReceivers | GetPayout | ListPayouts => Permission::Read,
            CreatePayout => Permission::Refund,
            MerchantBalances | GetReconciliation | ListProjections | FindPayments | GetPayment
            | ListRefunds | ListMerchants | GetMerchant | ListChannelAccounts | MerchantStats
            | ListApps | ListReconciliations | ListNotifications => Permission::Read,
            CreatePayment | ClosePayment | SharePayment | ListEvents | ChannelCallback
            | Checkout | CheckoutStatus | CashierPick | CashierWechat | Asset | SandboxPay
            | Healthz | Metrics | Openapi => return None,
        })
    }
}

use crate::service::access::Permission;

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// `Authorization: Bearer $PAYCENTER_ADMIN_TOKEN`.
    Admin,
    /// `Authorization: Bearer <api_key>` of an app.
    App,
    /// Either: an app sees its own, the admin everything.
    AppOrAdmin,
    /// No credential: channels, the user at the checkout, operations.
    Public,
}

/// What a route takes as its body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RequestBody {
    /// None.
    None,
    /// JSON of the named schema of [`crate::wire`].
    Json(&'static str),
    /// JSON of the named schema, or nothing at all.
    OptionalJson(&'static str),
    /// Raw bytes (a bill file, a channel's callback).
    Raw,
}

/// What a route answers on success.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Success {
    /// JSON of the named schema of [`crate::wire`], with this status.
    Json(u16, &'static str),
    /// An HTML page.
    Html,
    /// Prometheus text.
    PrometheusText,
    /// The OpenAPI document.
    OpenApi,
    /// The channel's own protocol (status and body as the channel expects).
    ChannelProtocol,
    /// A file of the cashier (stylesheet, script).
    Asset,
}

/// A query parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueryParam {
    /// Its name.
    pub name: &'static str,
    /// Whether it must be given.
    pub required: bool,
    /// The values it takes, when it is one of a few.
    pub one_of: &'static [&'static str],
    /// The whole numbers it takes (inclusive), when it is a number.
    pub integer_range: Option<(u64, u64)>,
    /// The pattern its text matches, when it is text of a given shape.
    pub pattern: Option<&'static str>,
    /// What it does.
    pub description: &'static str,
}

const fn query(name: &'static str, description: &'static str) -> QueryParam {
    QueryParam {
        name,
        required: false,
        one_of: &[],
        integer_range: None,
        pattern: None,
        description,
    }
}

/// One route: [`crate::http::router`] serves it and [`crate::http::openapi::document`]
/// documents it, both from this table.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Lowercase HTTP method.
    pub method: &'static str,
    /// The path, with `{name}` for each parameter.
    pub path: &'static str,
    /// What it does; its id is also the `route` label of its metrics.
    pub operation: Operation,
    /// One line for the document.
    pub summary: &'static str,
    /// Who may call it.
    pub caller: Caller,
    /// Its body.
    pub request: RequestBody,
    /// Its query parameters.
    pub query: &'static [QueryParam],
    /// Path parameters that take one of a few values.
    pub path_choices: &'static [(&'static str, &'static [&'static str])],
    /// Its success answer.
    pub success: Success,
    /// The refusals it may answer beyond those of every route of its caller (400, 401, 403,
    /// 404, 408, 413, 429, 503): each an `ErrorBody`.
    pub refusals: &'static [u16],
}

const OPERATOR_ACTIONS: &[&str] = &["disable", "enable"];
const APP_ACTIONS: &[&str] = &["rotate-key", "rotate-webhook-secret", "disable", "enable"];
const ACCOUNT_ACTIONS: &[&str] = &["disable", "enable"];
const CHANNELS: &[&str] = &["sandbox", "alipay", "wechatpay", "stripe"];

const LIMIT: QueryParam = QueryParam {
    integer_range: Some((1, 100)),
    ..query("limit", "At most this many items (default 20)")
};
const STARTING_AFTER: QueryParam = query(
    "starting_after",
    "The id of the last item seen: the page after it",
);
const CREATED_FROM: QueryParam = query(
    "created_from",
    "Created at or after: RFC 3339, or a date YYYY-MM-DD (its start in tz)",
);
const CREATED_TO: QueryParam = query(
    "created_to",
    "Created before: RFC 3339, or a date YYYY-MM-DD (its start in tz)",
);
const TZ: QueryParam = query(
    "tz",
    "The IANA time zone dates are read in (default UTC), e.g. Asia/Shanghai",
);
const PAGE_QUERY: &[QueryParam] = &[LIMIT, STARTING_AFTER];
const APP_QUERY: &[QueryParam] = &[
    LIMIT,
    STARTING_AFTER,
    query("merchant_id", "Only apps acting for this merchant"),
];
const RECONCILIATION_QUERY: &[QueryParam] = &[
    LIMIT,
    STARTING_AFTER,
    query("channel_account_id", "Only this account's"),
];
const PAYMENT_QUERY: &[QueryParam] = &[
    query(
        "merchant_id",
        "Only this merchant's (with order_no: the order's merchant)",
    ),
    query(
        "order_no",
        "With merchant_id: the app's order number (find one payment)",
    ),
    query(
        "channel_trade_no",
        "The channel's trade number (find one payment)",
    ),
    query(
        "app_id",
        "The admin only: this app's payments (with order_no: the order's app)",
    ),
    QueryParam {
        one_of: &["pending", "succeeded", "failed", "closed"],
        ..query("status", "Only payments in this status")
    },
    QueryParam {
        one_of: CHANNELS,
        ..query("channel", "Only payments at this channel")
    },
    CREATED_FROM,
    CREATED_TO,
    TZ,
    LIMIT,
    STARTING_AFTER,
];
const REFUND_QUERY: &[QueryParam] = &[
    query("merchant_id", "Only this merchant's"),
    query("trade_no", "Only this payment's"),
    query("app_id", "The admin only: this app's refunds"),
    QueryParam {
        one_of: &["pending", "succeeded", "failed"],
        ..query("status", "Only refunds in this status")
    },
    CREATED_FROM,
    CREATED_TO,
    TZ,
    LIMIT,
    STARTING_AFTER,
];
const STATS_QUERY: &[QueryParam] = &[
    query(
        "from",
        "First bucket: RFC 3339 or a date YYYY-MM-DD in tz (default: 7 days or 24 hours before to)",
    ),
    query(
        "to",
        "End (exclusive): RFC 3339 or a date in tz (default: the end of the current bucket)",
    ),
    QueryParam {
        one_of: &["day", "hour"],
        ..query("granularity", "Bucket length (default day)")
    },
    TZ,
    query(
        "currency",
        "The currency of the figures (default: the merchant's only one)",
    ),
];

/// Every route paycenter answers.
pub const ROUTES: &[Route] = &[
    Route {
        method: "post",
        path: "/v1/merchants",
        operation: Operation::CreateMerchant,
        summary: "Onboard a merchant",
        caller: Caller::Admin,
        request: RequestBody::Json("CreateMerchantRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(201, "MerchantAnswer"),
        refusals: &[409],
    },
    Route {
        method: "post",
        path: "/v1/merchants/{merchant_id}/channel-accounts",
        operation: Operation::CreateChannelAccount,
        summary: "Activate a channel account for a merchant",
        caller: Caller::Admin,
        request: RequestBody::Json("ChannelAccountRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(201, "ChannelAccountAnswer"),
        refusals: &[409, 422, 502],
    },
    Route {
        method: "put",
        path: "/v1/merchants/{merchant_id}/channel-accounts/{channel_account_id}",
        operation: Operation::RotateChannelAccount,
        summary: "Activate a channel account again with new parameters (key rotation)",
        caller: Caller::Admin,
        request: RequestBody::Json("RotateChannelAccountRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "ChannelAccountAnswer"),
        refusals: &[409, 422, 502],
    },
    Route {
        method: "get",
        path: "/v1/merchants/{merchant_id}/balances",
        operation: Operation::MerchantBalances,
        summary: "A merchant's double-entry balances",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "BalancesAnswer"),
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/v1/reconciliations",
        operation: Operation::Reconcile,
        summary: "Reconcile a channel account's business day against the bill fetched from the channel",
        caller: Caller::Admin,
        request: RequestBody::Json("ReconcileRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(201, "ReconciliationAnswer"),
        refusals: &[409, 422, 502],
    },
    Route {
        method: "post",
        path: "/v1/reconciliations/upload",
        operation: Operation::ReconcileUpload,
        summary: "Reconcile against an uploaded bill: paycenter's CSV (trade_no,channel_trade_no,amount,currency[,refunded]), Alipay's zip or WeChat Pay's trade bill",
        caller: Caller::Admin,
        request: RequestBody::Raw,
        query: &[
            QueryParam {
                name: "channel_account_id",
                required: true,
                one_of: &[],
                integer_range: None,
                pattern: None,
                description: "The account the bill is of",
            },
            QueryParam {
                name: "date",
                required: true,
                one_of: &[],
                integer_range: None,
                pattern: None,
                description: "The channel's business day, YYYY-MM-DD",
            },
        ],
        path_choices: &[],
        success: Success::Json(201, "ReconciliationAnswer"),
        refusals: &[409, 422],
    },
    Route {
        method: "get",
        path: "/v1/reconciliations/{reconciliation_id}",
        operation: Operation::GetReconciliation,
        summary: "A reconciliation's result",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "ReconciliationAnswer"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/admin/projections",
        operation: Operation::ListProjections,
        summary: "Projections with their position, lag, digest and rebuild status",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "ProjectionsAnswer"),
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/v1/admin/projections/{name}/rebuild",
        operation: Operation::RebuildProjection,
        summary: "Rebuild a projection online from position 1 and swap it in",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[("name", &["read_model", "balances"])],
        success: Success::Json(202, "ProjectionAnswer"),
        refusals: &[409],
    },
    Route {
        method: "post",
        path: "/v1/apps",
        operation: Operation::CreateApp,
        summary: "Register an app; its api_key and webhook_secret are answered this once",
        caller: Caller::Admin,
        request: RequestBody::Json("CreateAppRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(201, "AppCreatedAnswer"),
        refusals: &[409, 422],
    },
    Route {
        method: "post",
        path: "/v1/apps/{app_id}/{action}",
        operation: Operation::AppAction,
        summary: "Rotate an app's key or webhook secret (the new value answered once; the old one works for grace_seconds), or disable or enable the app",
        caller: Caller::Admin,
        request: RequestBody::OptionalJson("RotateRequest"),
        query: &[],
        path_choices: &[("action", APP_ACTIONS)],
        success: Success::Json(200, "AppActionAnswer"),
        refusals: &[409],
    },
    Route {
        method: "post",
        path: "/v1/merchants/{merchant_id}/channel-accounts/{channel_account_id}/{action}",
        operation: Operation::ChannelAccountAction,
        summary: "Disable or enable a channel account: a disabled account takes no new payments",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[("action", ACCOUNT_ACTIONS)],
        success: Success::Json(200, "ChannelAccountStatusAnswer"),
        refusals: &[409],
    },
    Route {
        method: "post",
        path: "/v1/payments",
        operation: Operation::CreatePayment,
        summary: "Start a payment attempt; answers the initiation (what the user must be shown), never the final result. Header Idempotency-Key (optional) replays the first answer",
        caller: Caller::App,
        request: RequestBody::Json("CreatePaymentRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(201, "CreatePaymentAnswer"),
        refusals: &[409, 422, 502],
    },
    Route {
        method: "get",
        path: "/v1/payments",
        operation: Operation::FindPayments,
        summary: "List payments, newest first ({data, has_more}); or find one by merchant_id + order_no (the admin adds app_id) or by channel_trade_no: the latest attempt, with every attempt under attempts",
        caller: Caller::AppOrAdmin,
        request: RequestBody::None,
        query: PAYMENT_QUERY,
        path_choices: &[],
        success: Success::Json(200, "FindPaymentsAnswer"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/refunds",
        operation: Operation::ListRefunds,
        summary: "List refunds, newest first",
        caller: Caller::AppOrAdmin,
        request: RequestBody::None,
        query: REFUND_QUERY,
        path_choices: &[],
        success: Success::Json(200, "RefundsList"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/merchants",
        operation: Operation::ListMerchants,
        summary: "List merchants, newest first",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: PAGE_QUERY,
        path_choices: &[],
        success: Success::Json(200, "MerchantsList"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/merchants/{merchant_id}",
        operation: Operation::GetMerchant,
        summary: "A merchant",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "MerchantAnswer"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/merchants/{merchant_id}/channel-accounts",
        operation: Operation::ListChannelAccounts,
        summary: "A merchant's channel accounts, newest first (never their parameters)",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: PAGE_QUERY,
        path_choices: &[],
        success: Success::Json(200, "ChannelAccountsList"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/merchants/{merchant_id}/stats",
        operation: Operation::MerchantStats,
        summary: "A merchant's figures by day or hour in a time zone: payments started, payments succeeded (with fees, by channel and by invoke method) and refunds succeeded",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: STATS_QUERY,
        path_choices: &[],
        success: Success::Json(200, "StatsAnswer"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/apps",
        operation: Operation::ListApps,
        summary: "List apps, newest first (never their keys or secrets)",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: APP_QUERY,
        path_choices: &[],
        success: Success::Json(200, "AppsList"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/reconciliations",
        operation: Operation::ListReconciliations,
        summary: "List reconciliations, newest first",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: RECONCILIATION_QUERY,
        path_choices: &[],
        success: Success::Json(200, "ReconciliationsList"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/payments/{trade_no}",
        operation: Operation::GetPayment,
        summary: "A payment by trade_no (an app's own; the admin's any)",
        caller: Caller::AppOrAdmin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "PaymentAnswer"),
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/v1/payments/{trade_no}/close",
        operation: Operation::ClosePayment,
        summary: "Close a pending payment",
        caller: Caller::App,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "PaymentAnswer"),
        refusals: &[409, 422],
    },
    Route {
        method: "post",
        path: "/v1/payments/{trade_no}/share",
        operation: Operation::SharePayment,
        summary: "Pay a share:manual payment's splits to their receivers at the channel (or ask again after its share failed for good); 202, with each receiver's share in shares",
        caller: Caller::App,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(202, "PaymentAnswer"),
        refusals: &[422],
    },
    Route {
        method: "post",
        path: "/v1/payments/{trade_no}/refunds",
        operation: Operation::CreateRefund,
        summary: "Refund part or all of a paid payment (the refunds never exceed what was paid); the admin refunds for the payment's app",
        caller: Caller::AppOrAdmin,
        request: RequestBody::Json("CreateRefundRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(201, "RefundAnswer"),
        refusals: &[409, 422],
    },
    Route {
        method: "get",
        path: "/v1/events",
        operation: Operation::ListEvents,
        summary: "The app's own events, in order, after a cursor",
        caller: Caller::App,
        request: RequestBody::None,
        query: &[
            QueryParam {
                // Empty is the start, as 0 is.
                pattern: Some("^[0-9]{0,19}$"),
                ..query("after", "The cursor of the last event seen (empty or 0: from the start)")
            },
            QueryParam {
                integer_range: Some((1, 1_000)),
                ..query("limit", "At most this many (default 100)")
            },
        ],
        path_choices: &[],
        success: Success::Json(200, "EventsAnswer"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/notifications",
        operation: Operation::ListNotifications,
        summary: "The app's webhook notifications, each with its last error (the admin names the app)",
        caller: Caller::AppOrAdmin,
        request: RequestBody::None,
        query: &[
            QueryParam {
                name: "status",
                required: false,
                one_of: &["pending", "delivered", "failed"],
                integer_range: None,
                pattern: None,
                description: "Only notifications in this state",
            },
            query(
                "app_id",
                "The admin: whose notifications (required); an app may name only itself",
            ),
        ],
        path_choices: &[],
        success: Success::Json(200, "NotificationsAnswer"),
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/v1/notifications/{notification_id}/redeliver",
        operation: Operation::RedeliverNotification,
        summary: "Deliver a settled webhook again",
        caller: Caller::AppOrAdmin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(202, "RedeliverAnswer"),
        refusals: &[409],
    },
    Route {
        method: "post",
        path: "/callbacks/{channel}/{channel_account_id}",
        operation: Operation::ChannelCallback,
        summary: "A channel's asynchronous notification, answered in that channel's own protocol",
        caller: Caller::Public,
        request: RequestBody::Raw,
        query: &[],
        path_choices: &[("channel", CHANNELS)],
        success: Success::ChannelProtocol,
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/checkout/{trade_no}",
        operation: Operation::Checkout,
        summary: "paycenter's cashier page (a payment's checkout_url, or the aggregated cashier's when the id is a checkout_id): 404 without its token, 410 once an unpaid payment or the cashier expired",
        caller: Caller::Public,
        request: RequestBody::None,
        query: &[
            QueryParam {
                required: true,
                ..query("t", "The link's token (part of checkout_url)")
            },
            query(
                "lang",
                "zh or en: the page's language (default: by Accept-Language; others are ignored)",
            ),
        ],
        path_choices: &[],
        success: Success::Html,
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/checkout/{trade_no}/status",
        operation: Operation::CheckoutStatus,
        summary: "The payment's status, for the cashier page (needs the link's token)",
        caller: Caller::Public,
        request: RequestBody::None,
        query: &[QueryParam {
            required: true,
            ..query("t", "The link's token (part of checkout_url)")
        }],
        path_choices: &[],
        success: Success::Json(200, "CheckoutStatusAnswer"),
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/checkout/{checkout_id}/pick",
        operation: Operation::CashierPick,
        summary: "The aggregated cashier's form (application/x-www-form-urlencoded: channel_account_id, t, lang): starts the attempt at the account picked and answers 303 to it; anything wrong answers the cashier page again, saying what",
        caller: Caller::Public,
        request: RequestBody::Raw,
        query: &[],
        path_choices: &[],
        success: Success::Html,
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/checkout/{checkout_id}/wechat",
        operation: Operation::CashierWechat,
        summary: "Where WeChat's OAuth (snsapi_base) sends a person back to the aggregated cashier: the code becomes their openid and a JSAPI attempt starts",
        caller: Caller::Public,
        request: RequestBody::None,
        query: &[
            QueryParam {
                required: true,
                ..query("t", "The cashier link's token")
            },
            query("lang", "zh or en"),
            QueryParam {
                required: true,
                ..query("code", "WeChat's OAuth code")
            },
            query("state", "Echoed by WeChat"),
        ],
        path_choices: &[],
        success: Success::Html,
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/assets/{file}",
        operation: Operation::Asset,
        summary: "The cashier's stylesheet and script",
        caller: Caller::Public,
        request: RequestBody::None,
        query: &[],
        path_choices: &[("file", &["checkout.css", "checkout.js"])],
        success: Success::Asset,
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/sandbox/pay/{trade_no}",
        operation: Operation::SandboxPay,
        summary: "Play the user paying in the sandbox; the outcome arrives by the sandbox's signed callback. The cashier's form (application/x-www-form-urlencoded: outcome, t, lang) is answered 303 back to the page. Absent (404) when PAYCENTER_SANDBOX=0",
        caller: Caller::Public,
        request: RequestBody::Json("SandboxPayRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(202, "SandboxPayAnswer"),
        refusals: &[409],
    },
    Route {
        method: "get",
        path: "/healthz",
        operation: Operation::Healthz,
        summary: "200 ok only when the store appends and every projection runs; 503 degraded otherwise",
        caller: Caller::Public,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "HealthAnswer"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/metrics",
        operation: Operation::Metrics,
        summary: "Prometheus metrics",
        caller: Caller::Public,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::PrometheusText,
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/openapi.json",
        operation: Operation::Openapi,
        summary: "This document",
        caller: Caller::Public,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::OpenApi,
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/v1/operators",
        operation: Operation::CreateOperator,
        summary: "Create an operator of the console (admin, finance, ops or viewer); a generated password is answered once",
        caller: Caller::Admin,
        request: RequestBody::Json("CreateOperatorRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(201, "OperatorCreatedAnswer"),
        refusals: &[409],
    },
    Route {
        method: "get",
        path: "/v1/operators",
        operation: Operation::ListOperators,
        summary: "The console's operators, by e-mail address",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "OperatorsList"),
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/v1/operators/{operator_id}/{action}",
        operation: Operation::OperatorAction,
        summary: "Disable an operator (no sign-in; open sessions end) or enable them again",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[("action", OPERATOR_ACTIONS)],
        success: Success::Json(200, "OperatorAnswer"),
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/v1/alert-channels",
        operation: Operation::CreateAlertChannel,
        summary: "Add an alert destination: a DingTalk custom robot (optional signing secret, @-mentions) or a webhook signed like app webhooks",
        caller: Caller::Admin,
        request: RequestBody::Json("CreateAlertChannelRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(201, "AlertChannelAnswer"),
        refusals: &[422],
    },
    Route {
        method: "get",
        path: "/v1/alert-channels",
        operation: Operation::ListAlertChannels,
        summary: "The alert destinations (secrets never answered, a robot's token redacted)",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "AlertChannelsList"),
        refusals: &[],
    },
    Route {
        method: "delete",
        path: "/v1/alert-channels/{alert_channel_id}",
        operation: Operation::DeleteAlertChannel,
        summary: "Delete an alert destination: it gets no more messages",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "AlertChannelDeletedAnswer"),
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/v1/alert-channels/{alert_channel_id}/test",
        operation: Operation::TestAlertChannel,
        summary: "Send a test message to an alert destination now; the answer says whether it was taken and, if not, what the destination said",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "AlertChannelTestAnswer"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/alerts",
        operation: Operation::ListAlerts,
        summary: "Alerts, newest first: one per condition until it resolves",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[
            QueryParam {
                one_of: &["open", "resolved"],
                ..query("status", "Only open or only resolved alerts")
            },
            LIMIT,
            STARTING_AFTER,
        ],
        path_choices: &[],
        success: Success::Json(200, "AlertsList"),
        refusals: &[],
    },
    Route {
        method: "put",
        path: "/v1/merchants/{merchant_id}/routing",
        operation: Operation::SetRouting,
        summary: "Set a merchant's routing rules: per invoke method and currency, its accounts in priority order (optional weights); payments with route auto follow them",
        caller: Caller::Admin,
        request: RequestBody::Json("RoutingBody"),
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "RoutingBody"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/merchants/{merchant_id}/routing",
        operation: Operation::GetRouting,
        summary: "A merchant's routing rules",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "RoutingBody"),
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/v1/payouts",
        operation: Operation::CreatePayout,
        summary: "Pay money a merchant holds out to an account at a channel: never more than it earned less its payouts not failed; the same payout_no and terms answer the same payout",
        caller: Caller::Admin,
        request: RequestBody::Json("CreatePayoutRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(201, "PayoutAnswer"),
        refusals: &[409, 422],
    },
    Route {
        method: "get",
        path: "/v1/payouts/{payout_id}",
        operation: Operation::GetPayout,
        summary: "A payout",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "PayoutAnswer"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/payouts",
        operation: Operation::ListPayouts,
        summary: "Payouts, newest first, of all merchants or of one",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[
            query("merchant_id", "Only this merchant's payouts"),
            LIMIT,
            STARTING_AFTER,
        ],
        path_choices: &[],
        success: Success::Json(200, "PayoutsList"),
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/v1/merchants/{merchant_id}/receivers",
        operation: Operation::CreateReceiver,
        summary: "Bind a split receiver at the channel under one of the merchant's accounts; splits may then name it and share money with it there (binding it again the same way answers the same, without asking the channel)",
        caller: Caller::Admin,
        request: RequestBody::Json("ReceiverRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(201, "ReceiverAnswer"),
        refusals: &[409, 422, 502],
    },
    Route {
        method: "get",
        path: "/v1/merchants/{merchant_id}/receivers",
        operation: Operation::ListReceivers,
        summary: "A merchant's bound split receivers, in the order bound",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "ReceiversList"),
        refusals: &[],
    },
    Route {
        method: "delete",
        path: "/v1/merchants/{merchant_id}/receivers/{receiver_id}",
        operation: Operation::DeleteReceiver,
        summary: "Unbind a split receiver at the channel; payments no longer share with it",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "ReceiverAnswer"),
        refusals: &[502],
    },
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_operation_has_one_route() {
        for operation in Operation::ALL {
            let n_routes = ROUTES
                .iter()
                .filter(|route| route.operation == operation)
                .count();
            assert_eq!(n_routes, 1, "{}", operation.id());
        }
        assert_eq!(ROUTES.len(), Operation::ALL.len());
    }

    #[test]
    fn every_admin_route_names_the_permission_it_needs() {
        for route in ROUTES {
            let admin_side = matches!(route.caller, Caller::Admin | Caller::AppOrAdmin);
            assert_eq!(
                route.operation.permission().is_some(),
                admin_side,
                "{}",
                route.operation.id()
            );
        }
    }
}
