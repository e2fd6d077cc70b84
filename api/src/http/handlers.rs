//! Request handlers: each takes validated inputs and the state, and answers a status and a
//! JSON body or an [`Refusal`]. Routing and auth extraction live in `routes.rs`.

use std::sync::Arc;

use hyper::http::StatusCode;
use paycenter_domain::events::*;
use paycenter_domain::ids::*;
use paycenter_domain::payment::{Channel, CloseReason, OutcomeSource};
use paycenter_domain::vocabulary::AccountMode;
use paycenter_domain::{registry, Rate};
use paycenter_gateway::CallbackRequest;
use serde_json::{json, Value};

use crate::error::{ErrorCode, Refusal};
use crate::http::dto::*;
use crate::http::requests::PaymentCommand;
use crate::state::AppState;
use crate::wire;
use crate::wire::{payment_json, refund_json};

/// A handler's answer.
pub use crate::http::Answer;

fn parse_id<T>(parse: impl Fn(&str) -> Result<T, IdError>, text: &str) -> Result<T, Refusal> {
    parse(text).map_err(|error| Refusal::invalid(error.to_string()))
}

/// `POST /v1/merchants`
pub async fn create_merchant(state: Arc<AppState>, body: bytes_body::Body) -> Answer {
    let object = parse_object(&body)?;
    check_fields(&object, "", &[("name", MAX_NAME_CHARS)])?;
    let wire::CreateMerchantRequest { name } = wire::read(&object)?;
    if name.trim().is_empty() {
        return Err(Refusal::invalid("name must not be empty").with_field("name"));
    }
    let onboarded = crate::service::registry::onboard_merchant(&state, name).await?;
    Ok((
        StatusCode::CREATED,
        wire::to_value(&wire::merchant_answer(&onboarded)),
    ))
}

/// `POST /v1/merchants/{merchant_id}/channel-accounts`, and
/// `PUT /v1/merchants/{merchant_id}/channel-accounts/{channel_account_id}` (`existing`) to
/// rotate keys: a new activation of the same account, replacing its parameters.
pub async fn create_channel_account(
    state: Arc<AppState>,
    merchant_id: String,
    existing: Option<String>,
    body: bytes_body::Body,
) -> Answer {
    let object = parse_object(&body)?;
    check_fields(
        &object,
        "",
        &[
            ("channel", MAX_TOKEN_CHARS),
            ("params", 0),
            ("fee_rate", MAX_TOKEN_CHARS),
            ("callback_ip_allowlist", MAX_TOKEN_CHARS),
            ("bill_utc_offset", MAX_TOKEN_CHARS),
            ("mode", MAX_TOKEN_CHARS),
            ("provider_account_id", MAX_TOKEN_CHARS),
        ],
    )?;
    if existing.is_none() {
        wire::read::<wire::ChannelAccountRequest>(&object)?;
    } else {
        wire::read::<wire::RotateChannelAccountRequest>(&object)?;
    }
    let merchant_id = parse_id(MerchantId::parse, &merchant_id)?;
    let existing = match existing {
        None => None,
        Some(text) => Some(parse_id(ChannelAccountId::parse, &text)?),
    };
    let channel = match optional_str(&object, "channel")? {
        Some(name) => Some(Channel::parse(name).ok_or_else(|| {
            Refusal::new(
                ErrorCode::UnsupportedChannel,
                format!("channel {name:?} is not one of sandbox, alipay, wechatpay, stripe"),
            )
        })?),
        None if existing.is_none() => {
            required_str(&object, "channel")?;
            None
        }
        None => None,
    };
    let callback_ip_allowlist = match object.get("callback_ip_allowlist") {
        None | Some(Value::Null) => None,
        Some(Value::Array(items)) if items.len() <= 64 => {
            let mut allowlist = Vec::new();
            for item in items {
                let text = item.as_str().unwrap_or("");
                let Some(network) = crate::allowlist::IpNetwork::parse(text) else {
                    return Err(Refusal::invalid(format!(
                        "callback_ip_allowlist entries must be IP addresses or CIDR blocks; {text:?} is not"
                    )));
                };
                allowlist.push(network.to_string());
            }
            Some(allowlist)
        }
        Some(_) => {
            return Err(Refusal::invalid(
                "callback_ip_allowlist must be an array of at most 64 IP addresses or CIDR blocks",
            ))
        }
    };
    let bill_utc_offset_minutes = match optional_str(&object, "bill_utc_offset")? {
        None => None,
        Some(text) => Some(parse_utc_offset(text).ok_or_else(|| {
            Refusal::invalid(format!(
                "bill_utc_offset must be like \"+08:00\", \"-05:00\" or \"Z\", not {text:?}"
            ))
            .with_field("bill_utc_offset")
        })?),
    };
    let mode = match optional_str(&object, "mode")? {
        None => None,
        Some(text) => Some(AccountMode::parse(text).ok_or_else(|| {
            Refusal::invalid(format!(
                "mode must be direct, provider or sub_merchant, not {text:?}"
            ))
            .with_field("mode")
        })?),
    };
    let provider_account_id = match optional_str(&object, "provider_account_id")? {
        None => None,
        Some(text) => Some(parse_id(ChannelAccountId::parse, text)?),
    };
    let params = match object.get("params") {
        None => serde_json::Map::new(),
        Some(Value::Object(params)) => params.clone(),
        Some(_) => return Err(Refusal::invalid("params must be an object")),
    };
    let fee_rate = match optional_str(&object, "fee_rate")? {
        None => Rate::ZERO,
        Some(text) => Rate::parse(text).map_err(|_| {
            Refusal::new(
                ErrorCode::InvalidFeeRate,
                "fee_rate must be a decimal string between \"0\" and \"1\" with at most 6 decimals",
            )
        })?,
    };
    let activated = crate::service::accounts::activate(
        &state,
        crate::service::accounts::ActivateAccount {
            merchant_id,
            existing,
            channel,
            params,
            fee_rate,
            callback_ip_allowlist,
            bill_utc_offset_minutes,
            mode,
            provider_account_id,
        },
    )
    .await?;
    let account = &activated.activation;
    Ok((
        if activated.is_new {
            StatusCode::CREATED
        } else {
            StatusCode::OK
        },
        wire::to_value(&wire::channel_account_answer(&state.model_lock(), account)),
    ))
}

/// `GET /v1/merchants/{merchant_id}/balances`: the merchant's double-entry accounts.
pub async fn merchant_balances(state: Arc<AppState>, merchant_id: String) -> Answer {
    let merchant_id = parse_id(MerchantId::parse, &merchant_id)?;
    crate::service::known_merchant(&*state.model_for_request()?, &merchant_id)?;
    let accounts: Vec<wire::BalanceLine> = state
        .balances()
        .await?
        .ledger()
        .merchant_balances(&merchant_id)
        .into_iter()
        .map(|(account, currency, balance_minor)| {
            wire::BalanceLine {
                account: account.to_string(),
                currency: currency.code().to_owned(),
                // Below zero only where a payout made room (a refund after it).
                balance: paycenter_domain::Money::format_balance(balance_minor, currency),
            }
        })
        .collect();
    Ok((
        StatusCode::OK,
        wire::to_value(&wire::BalancesAnswer {
            merchant_id: merchant_id.to_string(),
            accounts,
        }),
    ))
}

/// `POST /v1/apps`
pub async fn create_app(state: Arc<AppState>, body: bytes_body::Body) -> Answer {
    let object = parse_object(&body)?;
    check_fields(
        &object,
        "",
        &[
            ("name", MAX_NAME_CHARS),
            ("merchant_ids", MAX_ID_CHARS),
            ("notify_url", MAX_URL_CHARS),
        ],
    )?;
    let wire::CreateAppRequest {
        name,
        merchant_ids: merchant_texts,
        notify_url,
    } = wire::read(&object)?;
    paycenter_gateway::egress::check_url(&notify_url, state.config.egress).map_err(|refused| {
        Refusal::new(
            ErrorCode::InvalidNotifyUrl,
            format!("notify_url: {refused}"),
        )
        .with_field("notify_url")
    })?;
    let merchant_texts = match &merchant_texts {
        Value::Array(items) => items,
        _ => {
            return Err(Refusal::invalid(
                "merchant_ids must be an array of merchant ids",
            ))
        }
    };
    let mut merchant_ids = Vec::new();
    for item in merchant_texts {
        let text = item
            .as_str()
            .ok_or_else(|| Refusal::invalid("merchant_ids must be an array of merchant ids"))?;
        let merchant_id = parse_id(MerchantId::parse, text)?;
        if !merchant_ids.contains(&merchant_id) {
            merchant_ids.push(merchant_id);
        }
    }
    let created =
        crate::service::registry::register_app(&state, name, merchant_ids, notify_url).await?;
    // The only time the secrets are shown: the log keeps a hash and a sealed copy.
    Ok((
        StatusCode::CREATED,
        wire::to_value(&wire::AppCreatedAnswer {
            app_id: created.app.app_id.to_string(),
            name: created.app.name,
            merchant_ids: created
                .app
                .merchant_ids
                .iter()
                .map(ToString::to_string)
                .collect(),
            notify_url: created.app.notify_url,
            api_key: created.api_key,
            webhook_secret: created.webhook_secret,
        }),
    ))
}

pub(crate) fn ensure_app_merchant(
    app: &AppRegistered,
    merchant_id: &MerchantId,
) -> Result<(), Refusal> {
    if app.merchant_ids.contains(merchant_id) {
        return Ok(());
    }
    Err(Refusal::new(
        ErrorCode::MerchantNotAllowed,
        format!("this app does not act for merchant {merchant_id}"),
    ))
}

/// The fields of `POST /v1/payments`.
const PAYMENT_FIELDS: &[FieldLimit] = &[
    ("merchant_id", MAX_ID_CHARS),
    ("channel_account_id", MAX_ID_CHARS),
    ("channel_account_ids", MAX_ID_CHARS),
    ("order_no", MAX_ID_CHARS),
    ("amount", MAX_TOKEN_CHARS),
    ("currency", MAX_TOKEN_CHARS),
    ("invoke_method", MAX_TOKEN_CHARS),
    ("subject", MAX_SUBJECT_CHARS),
    ("splits", 0),
    ("expire_seconds", 0),
    ("payer_id", 128),
    ("client_ip", MAX_TOKEN_CHARS + 24),
    ("return_url", MAX_URL_CHARS),
    ("route", MAX_TOKEN_CHARS),
    ("preferred_channels", MAX_TOKEN_CHARS),
    ("share", MAX_TOKEN_CHARS),
];

/// `POST /v1/payments`
pub async fn create_payment(
    state: Arc<AppState>,
    app: &AppRegistered,
    body: bytes_body::Body,
) -> Answer {
    let object = parse_object(&body)?;
    check_fields(&object, "", PAYMENT_FIELDS)?;
    // The hot path: the body is read into its type without a copy.
    let request: wire::CreatePaymentRequest = wire::read_owned(object)?;
    let request = PaymentCommand::try_from((app.app_id.clone(), request))?;
    ensure_app_merchant(app, request.merchant_id())?;
    if let Some(return_url) = request.return_url() {
        paycenter_gateway::egress::check_url(return_url, state.config.egress).map_err(
            |refused| {
                Refusal::new(
                    ErrorCode::InvalidReturnUrl,
                    format!("return_url is refused: {refused}"),
                )
                .with_field("return_url")
            },
        )?;
    }
    let command = match request {
        PaymentCommand::Start(command) => command,
        PaymentCommand::OpenCheckout(command) => {
            let opened = crate::service::cashier::open(&state, command).await?;
            return Ok((
                StatusCode::CREATED,
                wire::to_value(&wire::CashierCreatedAnswer {
                    checkout_id: opened.checkout_id.clone(),
                    order_no: opened.order_no.to_string(),
                    merchant_id: opened.merchant_id.to_string(),
                    status: "pending".to_owned(),
                    invoke_method: "cashier".to_owned(),
                    amount: opened.amount.to_major_string(),
                    currency: opened.amount.currency().code().to_owned(),
                    expires_at: opened.expires_at.to_rfc3339(),
                    action: wire::PaymentActionAnswer::from_action(
                        &paycenter_gateway::PaymentAction::CheckoutUrl {
                            url: state.cashier_url(&opened.checkout_id),
                        },
                    ),
                }),
            ));
        }
    };
    let (order_no, merchant_id, amount, invoke_method) = (
        command.order_no.clone(),
        command.merchant_id.clone(),
        command.amount,
        command.invoke_method,
    );
    let started = crate::service::routing::start(&state, command).await?;
    Ok((
        StatusCode::CREATED,
        wire::to_value(&wire::PaymentCreatedAnswer {
            trade_no: started.trade_no.to_string(),
            order_no: order_no.to_string(),
            merchant_id: merchant_id.to_string(),
            channel_account_id: started.channel_account_id.to_string(),
            status: "pending".to_owned(),
            channel: started.channel.as_str().to_owned(),
            invoke_method: invoke_method.as_str().to_owned(),
            amount: amount.to_major_string(),
            currency: amount.currency().code().to_owned(),
            expires_at: started.expires_at.to_rfc3339(),
            action: {
                let mut action = wire::PaymentActionAnswer::from_action(&started.action);
                action.url = action.url.or(started.qr_page);
                action
            },
            route: started.route.as_ref().map(wire::route_answer),
        }),
    ))
}

/// A payment belongs to the app that created it: every other app, even one acting for the
/// same merchant, is told it does not exist.
fn owned_by(payment: &paycenter_projections::model::PaymentView, app: &AppRegistered) -> bool {
    visible_to(app, &payment.app_id, &payment.merchant_id)
}

/// Whether `app` may see an item (a payment, a refund) of `app_id` and `merchant_id`: its own,
/// for a merchant it still acts for.
pub(crate) fn visible_to(app: &AppRegistered, app_id: &AppId, merchant_id: &MerchantId) -> bool {
    &app.app_id == app_id && app.merchant_ids.contains(merchant_id)
}

fn app_payment(
    state: &AppState,
    app: &AppRegistered,
    trade_no: &str,
) -> Result<paycenter_projections::model::PaymentView, Refusal> {
    visible_payment(state, Some(app), trade_no)
}

/// The payment `trade_no`, when `app` (the admin when `None`) may see it.
fn visible_payment(
    state: &AppState,
    app: Option<&AppRegistered>,
    trade_no: &str,
) -> Result<paycenter_projections::model::PaymentView, Refusal> {
    let trade_no = parse_id(TradeNo::parse, trade_no)?;
    let model = state.model_for_request()?;
    // Another app's payment is "not found": its existence is not this app's business.
    model
        .payment(&trade_no)?
        .filter(|payment| app.is_none_or(|app| owned_by(payment, app)))
        .ok_or_else(|| {
            Refusal::not_found(
                ErrorCode::PaymentNotFound,
                format!("payment {trade_no} not found"),
            )
        })
}

/// `GET /v1/payments/{trade_no}`
/// (an app sees its own payments; the admin any).
pub async fn get_payment(
    state: Arc<AppState>,
    app: Option<AppRegistered>,
    trade_no: String,
) -> Answer {
    Ok((
        StatusCode::OK,
        payment_json(&visible_payment(&state, app.as_ref(), &trade_no)?),
    ))
}

/// `POST /v1/payments/{trade_no}/close`
pub async fn close_payment(state: Arc<AppState>, app: AppRegistered, trade_no: String) -> Answer {
    let payment = app_payment(&state, &app, &trade_no)?;
    crate::service::closes::close(&state, &payment, CloseReason::ByApp).await?;
    get_payment(state, Some(app), trade_no).await
}

/// `POST /v1/payments/{trade_no}/share`: pay a `share: "manual"` payment's splits to their
/// receivers at the channel (or ask again after a share failed for good). `202`: the share is
/// asked for; `shares` tells where each receiver's stands.
pub async fn share_payment(state: Arc<AppState>, app: AppRegistered, trade_no: String) -> Answer {
    let payment = app_payment(&state, &app, &trade_no)?;
    crate::service::shares::request(&state, &payment).await?;
    let (_, answer) = get_payment(state, Some(app), trade_no).await?;
    Ok((StatusCode::ACCEPTED, answer))
}

/// `POST /v1/payments/{trade_no}/refunds`
pub async fn create_refund(
    state: Arc<AppState>,
    app: Option<AppRegistered>,
    trade_no: String,
    body: bytes_body::Body,
) -> Answer {
    let object = parse_object(&body)?;
    check_fields(
        &object,
        "",
        &[
            ("refund_no", MAX_ID_CHARS),
            ("amount", MAX_TOKEN_CHARS),
            ("currency", MAX_TOKEN_CHARS),
            ("reason", MAX_REASON_CHARS),
        ],
    )?;
    let request: wire::CreateRefundRequest = wire::read(&object)?;
    // The admin (an operator) refunds for the payment's app, within the same rules.
    let payment = visible_payment(&state, app.as_ref(), &trade_no)?;
    let refund_no = parse_id(RefundNo::parse, &request.refund_no)?;
    if optional_str(&object, "currency")?.is_some() {
        let currency = currency_field(&object)?;
        if currency != payment.amount.currency() {
            return Err(Refusal::new(
                ErrorCode::CurrencyMismatch,
                format!(
                    "payment {} is in {}, not {currency}",
                    payment.trade_no,
                    payment.amount.currency()
                ),
            )
            .with_field("currency"));
        }
    }
    let amount = amount_value(Some(&request.amount), "amount", payment.amount.currency())?;
    let reason = optional_str(&object, "reason")?.unwrap_or("").to_owned();
    let refund_id = crate::service::refunds::request(
        &state,
        &payment,
        crate::service::refunds::RequestRefund {
            refund_no,
            amount,
            reason,
        },
    )
    .await?;
    // The refund is submitted to the channel by the refund submitter (reactor), which also
    // resubmits after a restart; the outcome arrives by callback.
    let payment = visible_payment(&state, app.as_ref(), &trade_no)?;
    let refund = payment
        .refunds
        .iter()
        .find(|refund| refund.refund_id == refund_id)
        .ok_or_else(|| Refusal::internal("refund", "refund missing after request"))?;
    Ok((StatusCode::CREATED, refund_json(refund)))
}

/// `GET /v1/events?after=&limit=`: the app's own webhook events, in order.
pub async fn list_events(
    state: Arc<AppState>,
    app: AppRegistered,
    query: std::collections::HashMap<String, String>,
) -> Answer {
    let after: u64 = match query.get("after").map(String::as_str) {
        None | Some("") => 0,
        Some(text) => text
            .parse()
            .map_err(|_| Refusal::invalid("after must be a cursor from an earlier answer"))?,
    };
    let limit: usize = match query.get("limit") {
        None => 100,
        Some(text) => text
            .parse()
            .ok()
            .filter(|limit| (1..=1_000).contains(limit))
            .ok_or_else(|| Refusal::invalid("limit must be 1 to 1000"))?,
    };
    let model = state.model_for_request()?;
    let page = model.feed_after(&app.app_id, after, limit)?;
    let mut events = Vec::with_capacity(page.len());
    for item in &page {
        events.push(wire::FeedItem {
            id: item.id.clone(),
            cursor: item.cursor.to_string(),
            kind: item.event_type.clone(),
            created_at: item.created_at.to_rfc3339(),
            data: feed_data(&model, &item.data)?,
        });
    }
    drop(model);
    let next_cursor = page
        .last()
        .map(|item| item.cursor)
        .unwrap_or(after)
        .to_string();
    Ok((
        StatusCode::OK,
        wire::to_value(&wire::EventsAnswer {
            events,
            next_cursor,
        }),
    ))
}

/// A feed entry's `data`: a webhook's payload as it was sent; `payment.created` the payment
/// as it started; `refund.created` the refund as requested, with its payment as it stands.
fn feed_data(
    model: &paycenter_projections::ReadModel,
    data: &paycenter_projections::model::FeedData,
) -> Result<Value, Refusal> {
    use paycenter_projections::model::FeedData;
    Ok(match data {
        FeedData::Notification(payload) => payload.clone(),
        FeedData::PaymentCreated(trade_no) => match model.payment(trade_no)? {
            Some(payment) => json!({ "payment": payment_json(&payment.as_started()) }),
            None => json!({}),
        },
        FeedData::RefundCreated(trade_no, refund_id) => match model.payment(trade_no)? {
            Some(payment) => {
                let refund = payment
                    .refunds
                    .iter()
                    .find(|refund| &refund.refund_id == refund_id)
                    .map(|refund| refund_json(&refund.as_requested()));
                json!({ "payment": payment_json(&payment), "refund": refund })
            }
            None => json!({}),
        },
    })
}

/// `POST /callbacks/{channel}/{channel_account_id}`: verify, record, answer in the channel's
/// protocol. A refused callback records nothing.
pub async fn channel_callback(
    state: Arc<AppState>,
    channel: String,
    channel_account_id: String,
    peer_ip: Option<std::net::IpAddr>,
    request: CallbackRequest,
) -> (u16, &'static str, String) {
    let refuse = |state: &AppState, why: &str| {
        state.metrics.callback_verification_failures.inc();
        tracing::warn!(why, "callback refused");
        (
            400,
            "application/json",
            json!({ "error": { "code": ErrorCode::CallbackRejected.as_str(), "message": why } })
                .to_string(),
        )
    };
    let Some(channel) = Channel::parse(&channel) else {
        return refuse(&state, "unknown channel");
    };
    let Ok(adapter) = state.channel(channel) else {
        return refuse(&state, "channel not available");
    };
    let Ok(channel_account_id) = ChannelAccountId::parse(&channel_account_id) else {
        return refuse(&state, "bad channel account id");
    };
    let Some(account) = state
        .channel_account(&channel_account_id)
        .filter(|account| account.channel == channel)
    else {
        return refuse(&state, "unknown channel account");
    };
    if !crate::allowlist::allows(&account.callback_ip_allowlist, peer_ip) {
        let (_, content_type, body) = refuse(
            &state,
            "callback from an address outside the channel account's allowlist",
        );
        return (403, content_type, body);
    }
    let Ok(params) = state.channel_params(&account) else {
        return refuse(&state, "channel account unusable");
    };
    adapter.prepare_callback(&params, &request).await;
    let notice = match adapter.verify_callback(&params, &request) {
        Ok(notice) => notice,
        Err(error) => {
            let answer = adapter.callback_answer(false);
            refuse(&state, &error.to_string());
            return (answer.status, answer.content_type, answer.body);
        }
    };
    match crate::service::outcomes::record(
        &state,
        &channel_account_id,
        notice,
        OutcomeSource::Callback,
    )
    .await
    {
        Ok(()) => {
            let answer = adapter.callback_answer(true);
            (answer.status, answer.content_type, answer.body)
        }
        Err(error) => {
            // Not recorded: the channel retries.
            tracing::warn!(code = error.code.as_str(), message = %error.message, "callback not recorded");
            let answer = adapter.callback_answer(false);
            (
                if error.status() >= 500 {
                    500
                } else {
                    answer.status
                },
                answer.content_type,
                answer.body,
            )
        }
    }
}

/// `GET /v1/notifications?status=failed|pending|delivered`
pub async fn list_notifications(
    state: Arc<AppState>,
    app: Option<AppRegistered>,
    query: std::collections::HashMap<String, String>,
) -> Answer {
    use paycenter_domain::notification::NotificationStatus;
    let named = match query.get("app_id") {
        Some(text) => {
            Some(parse_id(AppId::parse, text).map_err(|error| error.with_field("app_id"))?)
        }
        None => None,
    };
    let app_id = match (&app, named) {
        (Some(app), Some(named)) if named != app.app_id => {
            return Err(Refusal::invalid(
                "an app lists its own notifications: app_id may only name itself",
            )
            .with_field("app_id"))
        }
        (Some(app), _) => app.app_id.clone(),
        (None, Some(named)) => named,
        (None, None) => {
            return Err(
                Refusal::invalid("the admin lists one app's notifications: give app_id")
                    .with_field("app_id"),
            )
        }
    };
    let wanted = match query.get("status") {
        None => None,
        Some(text) => Some(
            NotificationStatus::parse(text)
                .ok_or_else(|| Refusal::invalid("status must be pending, delivered or failed"))?,
        ),
    };
    // Oldest first, at most this many; a status filter reads at most the app's oldest
    // `MAX_SCANNED` (lists with paging come with the list endpoints).
    const MAX_LISTED: usize = 1_000;
    const MAX_SCANNED: usize = 100_000;
    let items = state.model_for_request()?.notifications_of_app(
        &app_id,
        wanted,
        MAX_LISTED,
        MAX_SCANNED,
    )?;
    let notifications: Vec<wire::NotificationAnswer> = items
        .iter()
        .map(|notification| wire::NotificationAnswer {
            id: notification.scheduled.notification_id.to_string(),
            kind: notification.scheduled.webhook_type.to_string(),
            status: notification.status.as_str().to_owned(),
            attempts: notification.n_attempts_total,
            next_attempt_at: notification.next_attempt_at.map(|at| at.to_rfc3339()),
            last_error: notification.last_error.clone(),
            created_at: notification.scheduled.created_at.to_rfc3339(),
            data: notification.scheduled.data.clone(),
        })
        .collect();
    Ok((
        StatusCode::OK,
        wire::to_value(&wire::NotificationsAnswer { notifications }),
    ))
}

/// `POST /v1/notifications/{id}/redeliver`
pub async fn redeliver_notification(
    state: Arc<AppState>,
    app: Option<AppRegistered>,
    notification_id: String,
) -> Answer {
    let notification_id = parse_id(NotificationId::parse, &notification_id)?;
    // Another app's notification is "not found"; the admin (an ops operator) reaches every one.
    let owned = state
        .model_for_request()?
        .notification(&notification_id)?
        .is_some_and(|(notification, _)| {
            app.as_ref()
                .is_none_or(|app| notification.scheduled.app_id == app.app_id)
        });
    if !owned {
        return Err(Refusal::not_found(
            ErrorCode::NotificationNotFound,
            format!("notification {notification_id} not found"),
        ));
    }
    crate::service::webhooks::redeliver(&state, &notification_id).await?;
    Ok((
        StatusCode::ACCEPTED,
        wire::to_value(&wire::RedeliverAnswer {
            id: notification_id.to_string(),
            status: "pending".to_owned(),
        }),
    ))
}

/// Raw request bodies as warp hands them over.
pub mod bytes_body {
    /// A request body.
    pub type Body = bytes::Bytes;
}

/// The grace period of a rotated credential: `grace_seconds` of an optional JSON body.
fn grace_from_body(body: &[u8]) -> Result<chrono::Duration, Refusal> {
    const DEFAULT_GRACE_SECONDS: i64 = 86_400;
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(chrono::Duration::seconds(DEFAULT_GRACE_SECONDS));
    }
    let object = parse_object(body)?;
    check_fields(&object, "", &[("grace_seconds", 0)])?;
    let seconds = match object.get("grace_seconds") {
        None | Some(Value::Null) => DEFAULT_GRACE_SECONDS,
        Some(value) => value
            .as_i64()
            .filter(|seconds| (0..=registry::MAX_ROTATION_GRACE_SECONDS).contains(seconds))
            .ok_or_else(|| {
                Refusal::invalid(format!(
                    "grace_seconds must be a whole number from 0 to {}",
                    registry::MAX_ROTATION_GRACE_SECONDS
                ))
                .with_field("grace_seconds")
            })?,
    };
    Ok(chrono::Duration::seconds(seconds))
}

/// `POST /v1/apps/{app_id}/rotate-key | rotate-webhook-secret | disable | enable` (admin).
/// A new key or secret is shown in this answer only.
pub async fn app_action(
    state: Arc<AppState>,
    app_id: String,
    action: String,
    body: bytes_body::Body,
) -> Answer {
    let app_id = parse_id(AppId::parse, &app_id)?;
    // Every action takes the same optional body; disable and enable check it and use nothing.
    let grace = grace_from_body(&body)?;
    let mut answer = wire::AppActionAnswer {
        app_id: app_id.to_string(),
        api_key: None,
        previous_key_valid_until: None,
        webhook_secret: None,
        previous_secret_valid_until: None,
        status: None,
    };
    match action.as_str() {
        "rotate-key" => {
            let rotated = crate::service::registry::rotate_api_key(&state, &app_id, grace).await?;
            answer.api_key = Some(rotated.value);
            answer.previous_key_valid_until = Some(rotated.previous_valid_until.to_rfc3339());
        }
        "rotate-webhook-secret" => {
            let rotated =
                crate::service::registry::rotate_webhook_secret(&state, &app_id, grace).await?;
            answer.webhook_secret = Some(rotated.value);
            answer.previous_secret_valid_until = Some(rotated.previous_valid_until.to_rfc3339());
        }
        "disable" | "enable" => {
            let enabled = action == "enable";
            crate::service::registry::set_app_enabled(&state, &app_id, enabled).await?;
            answer.status = Some(if enabled { "active" } else { "disabled" }.to_owned());
        }
        _ => {
            return Err(Refusal::not_found(
                ErrorCode::RouteNotFound,
                "no such route",
            ))
        }
    }
    Ok((StatusCode::OK, wire::to_value(&answer)))
}

/// `POST /v1/merchants/{merchant_id}/channel-accounts/{channel_account_id}/disable | enable`
/// (admin). A disabled account takes no new payments; its callbacks, refunds and
/// reconciliation go on.
pub async fn channel_account_action(
    state: Arc<AppState>,
    merchant_id: String,
    channel_account_id: String,
    action: String,
) -> Answer {
    let merchant_id = parse_id(MerchantId::parse, &merchant_id)?;
    let channel_account_id = parse_id(ChannelAccountId::parse, &channel_account_id)?;
    let enabled = match action.as_str() {
        "enable" => true,
        "disable" => false,
        _ => {
            return Err(Refusal::not_found(
                ErrorCode::RouteNotFound,
                "no such route",
            ))
        }
    };
    crate::service::registry::set_channel_account_enabled(
        &state,
        &merchant_id,
        &channel_account_id,
        enabled,
    )
    .await?;
    Ok((
        StatusCode::OK,
        wire::to_value(&wire::ChannelAccountStatusAnswer {
            channel_account_id: channel_account_id.to_string(),
            merchant_id: merchant_id.to_string(),
            status: if enabled { "active" } else { "disabled" }.to_owned(),
        }),
    ))
}

/// `+08:00`, `-05:30` or `Z` as minutes east of UTC (within ±14 h).
fn parse_utc_offset(text: &str) -> Option<i32> {
    if text == "Z" {
        return Some(0);
    }
    let (sign, rest) = match text.split_at_checked(1)? {
        ("+", rest) => (1, rest),
        ("-", rest) => (-1, rest),
        _ => return None,
    };
    let (hours, minutes) = rest.split_once(':')?;
    if hours.len() != 2 || minutes.len() != 2 {
        return None;
    }
    let (hours, minutes): (i32, i32) = (hours.parse().ok()?, minutes.parse().ok()?);
    let total = hours * 60 + minutes;
    (minutes < 60 && total <= 14 * 60).then_some(sign * total)
}
