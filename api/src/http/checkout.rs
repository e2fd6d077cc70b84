//! The cashier: paycenter's own page where a person pays (`GET /checkout/{trade_no}?t=`), its
//! status for the page's polling (`GET /checkout/{trade_no}/status?t=`), its stylesheet and
//! script (`/assets/…`, no CDN), and the sandbox's "user pays" endpoint.
//!
//! A link works only with its token (an HMAC of the trade number under a key derived from the
//! master key) and, while the payment is unpaid, only until it expires; without a valid token
//! the page says nothing about the payment. Chinese or English by `?lang=` or
//! `Accept-Language`. Every answer carries a strict Content-Security-Policy (scripts and styles
//! from paycenter only, no framing), `nosniff` and `Referrer-Policy: no-referrer`, so the
//! token never leaves in a `Referer`.

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};

use hyper::http::{HeaderValue, Response, StatusCode};
use hyper::Body;
use paycenter_domain::ids::TradeNo;
use paycenter_domain::payment::{AttemptStatus, Channel};
use paycenter_gateway::sandbox::SandboxOutcome;
use paycenter_projections::model::PaymentView;

use crate::error::{ErrorCode, Refusal};
use crate::http::dto::parse_object;
use crate::http::Answer;
use crate::state::AppState;

/// The cashier's headers: what the page may load, who may frame it, what it leaks.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The cashier's languages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lang {
    /// 中文 (simplified).
    Zh,
    /// English.
    En,
}

impl Lang {
    /// `zh` or `en`.
    pub fn code(self) -> &'static str {
        match self {
            Lang::Zh => "zh",
            Lang::En => "en",
        }
    }

    /// `?lang=` when it names one, else the language the browser prefers most of the two
    /// (`Accept-Language`, by q-value), else English.
    pub fn choose(query: Option<&str>, accept_language: Option<&str>) -> Lang {
        match query {
            Some("zh") => return Lang::Zh,
            Some("en") => return Lang::En,
            _ => {}
        }
        let mut best: Option<(f32, Lang)> = None;
        for entry in accept_language.unwrap_or("").split(',').take(32) {
            let mut parts = entry.split(';');
            let tag = parts.next().unwrap_or("").trim().to_ascii_lowercase();
            let q = parts
                .find_map(|part| part.trim().strip_prefix("q="))
                .and_then(|q| q.parse::<f32>().ok())
                .unwrap_or(1.0);
            let lang = if tag == "zh" || tag.starts_with("zh-") {
                Lang::Zh
            } else if tag == "en" || tag.starts_with("en-") {
                Lang::En
            } else {
                continue;
            };
            if best.is_none_or(|(best_q, _)| q > best_q) {
                best = Some((q, lang));
            }
        }
        best.map_or(Lang::En, |(_, lang)| lang)
    }

    /// The page's words.
    fn texts(self) -> HashMap<&'static str, &'static str> {
        let pairs: &[(&str, &str, &str)] = &[
            ("title", "收银台", "Checkout"),
            ("waiting", "等待支付…", "Waiting for payment…"),
            ("pay", "支付", "Pay"),
            ("decline", "拒绝支付", "Decline"),
            (
                "sandbox_note",
                "沙箱环境：不会产生真实扣款。",
                "Sandbox: no real money moves.",
            ),
            ("scan_with", "请使用以下应用扫码支付：", "Scan to pay with"),
            ("succeeded", "支付成功", "Payment successful"),
            ("failed", "支付失败", "Payment failed"),
            ("closed", "支付已关闭", "Payment closed"),
            ("back", "返回商户", "Back to the merchant"),
            (
                "back_soon",
                "即将自动返回商户页面。",
                "You will be taken back in a moment.",
            ),
            ("trade_no", "交易号", "Payment"),
            ("invalid_title", "链接无效", "This link is not valid"),
            (
                "invalid_text",
                "请回到商户页面重新发起支付。",
                "Go back to the merchant and start the payment again.",
            ),
            ("expired_title", "支付已过期", "This payment has expired"),
            (
                "expired_text",
                "请回到商户页面重新发起支付。",
                "Go back to the merchant and start the payment again.",
            ),
            (
                "unavailable_title",
                "暂时无法显示",
                "Not available right now",
            ),
            ("unavailable_text", "请稍后再试。", "Try again in a minute."),
            ("choose", "选择支付方式", "Choose how to pay"),
            ("continue", "继续前往支付…", "Continuing to the payment…"),
            ("continue_button", "继续", "Continue"),
            ("wechat_pay", "微信支付", "Pay with WeChat"),
            (
                "open_in_wechat",
                "请在微信中完成支付。",
                "Finish the payment inside WeChat.",
            ),
        ];
        pairs
            .iter()
            .map(|(key, zh, en)| (*key, if self == Lang::Zh { *zh } else { *en }))
            .collect()
    }
}

fn channel_name(channel: Channel, lang: Lang) -> &'static str {
    match (channel, lang) {
        (Channel::Wechatpay, Lang::Zh) => "微信",
        (Channel::Wechatpay, Lang::En) => "WeChat",
        (Channel::Alipay, Lang::Zh) => "支付宝",
        (Channel::Alipay, Lang::En) => "Alipay",
        (Channel::Stripe, _) => "Stripe",
        (Channel::Sandbox, _) => "Sandbox",
    }
}

fn templates() -> &'static minijinja::Environment<'static> {
    static ENVIRONMENT: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut environment = minijinja::Environment::new();
        // `.html`: every value is HTML-escaped unless marked safe (only the QR's own SVG is).
        environment
            .add_template(
                "checkout.html",
                include_str!("../../templates/checkout.html"),
            )
            .expect("the checkout template parses");
        environment
    })
}

/// Adds the cashier's security headers.
fn secured(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "no-referrer"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn page(status: StatusCode, html: String) -> Response<Body> {
    let mut response = Response::new(Body::from(html));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secured(response)
}

/// The payment a link names, when its token is right.
fn linked_payment(state: &AppState, trade_no: &str, token: Option<&str>) -> Option<TradeNo> {
    let trade_no = TradeNo::parse(trade_no).ok()?;
    state
        .master_key
        .checks_checkout_token(trade_no.as_str(), token?)
        .then_some(trade_no)
}

/// Where the person goes back to: the app's `return_url` with `order_no`, `trade_no` and
/// `status` added to its query (before any fragment).
fn return_to(payment: &PaymentView) -> Option<String> {
    let return_url = payment.return_url.as_deref()?;
    let (base, fragment) = match return_url.split_once('#') {
        Some((base, fragment)) => (base, Some(fragment)),
        None => (return_url, None),
    };
    let query = serde_urlencoded::to_string([
        ("order_no", payment.order_no.as_str()),
        ("trade_no", payment.trade_no.as_str()),
        ("status", payment.status.as_str()),
    ])
    .expect("text pairs encode");
    let separator = if base.contains('?') { '&' } else { '?' };
    Some(match fragment {
        Some(fragment) => format!("{base}{separator}{query}#{fragment}"),
        None => format!("{base}{separator}{query}"),
    })
}

/// The QR code of `content` as an SVG element.
fn qr_svg(content: &str) -> Option<String> {
    let code = qrcode::QrCode::new(content.as_bytes()).ok()?;
    let svg = code
        .render::<qrcode::render::svg::Color>()
        .min_dimensions(220, 220)
        .quiet_zone(true)
        .build();
    // Inline in HTML: from the element on, without the XML declaration.
    svg.find("<svg").map(|start| svg[start..].to_owned())
}

/// What every view of the page is given: its language, words and language links.
fn base_context(
    lang: Lang,
    token: Option<&str>,
    view: &str,
) -> HashMap<&'static str, minijinja::Value> {
    let link = |lang: Lang| {
        let mut pairs = vec![("lang", lang.code())];
        if let Some(token) = token {
            pairs.push(("t", token));
        }
        format!(
            "?{}",
            serde_urlencoded::to_string(pairs).expect("text pairs encode")
        )
    };
    HashMap::from([
        ("lang", lang.code().into()),
        ("view", view.into()),
        ("t", minijinja::Value::from_serialize(lang.texts())),
        (
            "lang_links",
            minijinja::Value::from_serialize(HashMap::from([
                ("zh", link(Lang::Zh)),
                ("en", link(Lang::En)),
            ])),
        ),
    ])
}

fn render_page(
    status: StatusCode,
    context: &HashMap<&'static str, minijinja::Value>,
) -> Response<Body> {
    let html = templates()
        .get_template("checkout.html")
        .and_then(|template| template.render(context))
        .unwrap_or_else(|error| {
            tracing::error!(%error, "the checkout page did not render");
            "<!doctype html><title>Checkout</title><p>Not available right now.</p>".to_owned()
        });
    page(status, html)
}

/// `GET /checkout/{trade_no}?t=&lang=`.
pub fn checkout_page(
    state: &AppState,
    trade_no: &str,
    query: &HashMap<String, String>,
    accept_language: Option<&str>,
) -> Response<Body> {
    let lang = Lang::choose(query.get("lang").map(String::as_str), accept_language);
    let token = query.get("t").map(String::as_str);
    let render = |status: StatusCode, view: &str, payment: Option<&PaymentView>| {
        let mut context = base_context(lang, token, view);
        if let (Some(payment), Some(token)) = (payment, token) {
            let model = state.model_lock();
            let merchant = model
                .merchants()
                .get(&payment.merchant_id)
                .map(|merchant| merchant.name.clone())
                .unwrap_or_default();
            drop(model);
            let trade_no = payment.trade_no.as_str();
            let pending = payment.status == AttemptStatus::Pending;
            context.extend([
                ("merchant", merchant.into()),
                ("subject", payment.subject.clone().into()),
                ("amount", payment.amount.to_major_string().into()),
                ("currency", payment.amount.currency().code().into()),
                ("trade_no", trade_no.into()),
                ("status", payment.status.as_str().into()),
                ("token", token.into()),
                ("channel_name", channel_name(payment.channel, lang).into()),
                (
                    "status_url",
                    format!(
                        "/checkout/{trade_no}/status?{}",
                        serde_urlencoded::to_string([("t", token)]).expect("text pairs encode")
                    )
                    .into(),
                ),
            ]);
            if let Some(return_to) = return_to(payment) {
                context.insert("return_to", return_to.into());
            }
            if pending && payment.channel == Channel::Sandbox && state.config.sandbox_enabled {
                context.insert("sandbox_form", format!("/sandbox/pay/{trade_no}").into());
            }
            if let (true, Some(code)) = (pending, &payment.checkout_qr_code) {
                if let Some(svg) = qr_svg(code) {
                    context.insert("qr_svg", svg.into());
                }
            }
        }
        render_page(status, &context)
    };
    let Some(trade_no) = linked_payment(state, trade_no, token) else {
        return render(StatusCode::NOT_FOUND, "invalid", None);
    };
    let Ok(model) = state.model_for_request() else {
        return render(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
    };
    let payment = match model.payment(&trade_no) {
        Ok(Some(payment)) => payment,
        Ok(None) => return render(StatusCode::NOT_FOUND, "invalid", None),
        Err(error) => {
            tracing::error!(%error, "reading the read model failed");
            return render(StatusCode::SERVICE_UNAVAILABLE, "unavailable", None);
        }
    };
    drop(model);
    let view = match payment.status {
        AttemptStatus::Pending if state.clock.now() > payment.expires_at => {
            return render(StatusCode::GONE, "expired", None)
        }
        status => status.as_str(),
    };
    render(StatusCode::OK, view, Some(&payment))
}

/// Whether a checkout path names an aggregated cashier (else it names a payment).
pub fn is_cashier(id: &str) -> bool {
    id.starts_with("co_")
}

/// Where the person goes once an attempt started: the attempt's own page (or the channel's),
/// or, for a channel that takes a form post, a page that posts it.
fn to_attempt(
    state: &AppState,
    started: &crate::service::payments::PaymentStarted,
    lang: Lang,
) -> Response<Body> {
    use paycenter_gateway::PaymentAction;
    let location = match &started.action {
        PaymentAction::CheckoutUrl { url } | PaymentAction::RedirectUrl { url } => url.clone(),
        PaymentAction::QrCode { .. } => match &started.qr_page {
            Some(url) => url.clone(),
            None => {
                return render_page(
                    StatusCode::BAD_GATEWAY,
                    &base_context(lang, None, "unavailable"),
                )
            }
        },
        PaymentAction::FormPost { url, fields } => {
            let mut context = base_context(lang, None, "form_post");
            context.insert("form_url", url.clone().into());
            context.insert(
                "form_fields",
                minijinja::Value::from_serialize(fields.clone()),
            );
            let mut response = render_page(StatusCode::OK, &context);
            // This one page posts to the channel's gateway.
            let origin: String = url.splitn(4, '/').take(3).collect::<Vec<_>>().join("/");
            if let Ok(policy) = HeaderValue::from_str(&CONTENT_SECURITY_POLICY.replace(
                "form-action 'self'",
                &format!("form-action 'self' {origin}"),
            )) {
                response
                    .headers_mut()
                    .insert("content-security-policy", policy);
            }
            return response;
        }
        PaymentAction::JsapiParams { params } => {
            // Inside WeChat: the page hands these to WeixinJSBridge, then follows the attempt.
            let mut context = base_context(lang, None, "jsapi");
            context.insert("jsapi_params", params.to_string().into());
            context.insert(
                "next_url",
                format!(
                    "{}&lang={}",
                    state.checkout_url(&started.trade_no),
                    lang.code()
                )
                .into(),
            );
            return render_page(StatusCode::OK, &context);
        }
        PaymentAction::AppParams { .. } => {
            return render_page(
                StatusCode::BAD_GATEWAY,
                &base_context(lang, None, "unavailable"),
            )
        }
    };
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(&location) {
        response.headers_mut().insert("location", location);
    }
    secured(response)
}

fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert("location", location);
    }
    secured(response)
}

/// `GET /checkout/{checkout_id}/wechat?t=&lang=&code=&state=`: WeChat sends the person back
/// from its OAuth with a code; the code becomes their `openid`, and a JSAPI attempt for them
/// starts at the cashier's WeChat Pay account.
pub async fn cashier_wechat(
    state: &AppState,
    checkout_id: &str,
    query: &HashMap<String, String>,
    peer: std::net::IpAddr,
) -> Response<Body> {
    use crate::service::cashier::{self, Device, IdentifiedPayer};
    let lang = Lang::choose(query.get("lang").map(String::as_str), None);
    let token = query.get("t").map(String::as_str).unwrap_or("");
    let checkout = state
        .master_key
        .checks_checkout_token(checkout_id, token)
        .then(|| cashier::find(state, checkout_id).ok())
        .flatten();
    let (Some(checkout), Some(code)) = (checkout, query.get("code")) else {
        return render_page(StatusCode::NOT_FOUND, &base_context(lang, None, "invalid"));
    };
    let offered = cashier::offered(state, &checkout);
    let Some(account) = cashier::automatic_pick(&offered, Device::WechatApp).cloned() else {
        return render_page(StatusCode::NOT_FOUND, &base_context(lang, None, "invalid"));
    };
    let started = async {
        let (adapter, params) = state.account_adapter(&account.channel_account_id)?;
        let payer_id = adapter
            .payer_id_from_code(&params, code)
            .await
            .map_err(Refusal::channel_unavailable)?;
        cashier::pick(
            state,
            &checkout,
            &account.channel_account_id,
            Device::WechatApp,
            Some(peer.to_string()),
            Some(IdentifiedPayer { payer_id }),
        )
        .await
    }
    .await;
    match started {
        Ok(started) => to_attempt(state, &started, lang),
        Err(refusal) => picker(
            state,
            &checkout,
            &offered,
            lang,
            token,
            Some(refusal.message),
        ),
    }
}

/// `GET /checkout/{checkout_id}?t=&lang=`: the aggregated cashier: the order and a button per
/// account offered. Inside Alipay or WeChat it picks that wallet by itself.
pub async fn cashier_page(
    state: &AppState,
    checkout_id: &str,
    query: &HashMap<String, String>,
    accept_language: Option<&str>,
    user_agent: Option<&str>,
    peer: std::net::IpAddr,
) -> Response<Body> {
    use crate::service::cashier::{self, Device};
    let lang = Lang::choose(query.get("lang").map(String::as_str), accept_language);
    let token = query.get("t").map(String::as_str);
    let valid =
        token.is_some_and(|token| state.master_key.checks_checkout_token(checkout_id, token));
    let Some(checkout) = valid
        .then(|| cashier::find(state, checkout_id).ok())
        .flatten()
    else {
        return render_page(StatusCode::NOT_FOUND, &base_context(lang, None, "invalid"));
    };
    if state.clock.now() > checkout.expires_at {
        return render_page(StatusCode::GONE, &base_context(lang, None, "expired"));
    }
    let offered = cashier::offered(state, &checkout);
    let device = Device::from_user_agent(user_agent);
    let mut error = None;
    let automatic = cashier::automatic_pick(&offered, device);
    // Inside WeChat, with the official account's OAuth: WeChat tells who pays (snsapi_base),
    // then a JSAPI payment follows.
    if let (Device::WechatApp, Some(account)) = (device, automatic) {
        if let Ok((adapter, params)) = state.account_adapter(&account.channel_account_id) {
            let back = format!(
                "{}/checkout/{checkout_id}/wechat?{}",
                state.config.public_url,
                serde_urlencoded::to_string([("t", token.unwrap_or("")), ("lang", lang.code())])
                    .expect("text pairs encode")
            );
            if let Some(url) = adapter.payer_authorization_url(&params, &back, "paycenter") {
                return redirect(&url);
            }
        }
    }
    if let Some(account) = automatic {
        match cashier::pick(
            state,
            &checkout,
            &account.channel_account_id,
            device,
            Some(peer.to_string()),
            None,
        )
        .await
        {
            Ok(started) => return to_attempt(state, &started, lang),
            Err(refusal) => error = Some(refusal.message),
        }
    }
    picker(state, &checkout, &offered, lang, token.unwrap_or(""), error)
}

fn picker(
    state: &AppState,
    checkout: &paycenter_domain::events::CheckoutOpened,
    offered: &[paycenter_domain::events::ChannelAccountActivated],
    lang: Lang,
    token: &str,
    error: Option<String>,
) -> Response<Body> {
    let mut context = base_context(lang, Some(token), "picker");
    let merchant = state
        .model_lock()
        .merchants()
        .get(&checkout.merchant_id)
        .map(|merchant| merchant.name.clone())
        .unwrap_or_default();
    let choices: Vec<HashMap<&str, String>> = offered
        .iter()
        .map(|account| {
            HashMap::from([
                ("channel_account_id", account.channel_account_id.to_string()),
                ("channel", account.channel.as_str().to_owned()),
                ("name", channel_name(account.channel, lang).to_owned()),
            ])
        })
        .collect();
    context.extend([
        ("merchant", merchant.into()),
        ("subject", checkout.subject.clone().into()),
        ("amount", checkout.amount.to_major_string().into()),
        ("currency", checkout.amount.currency().code().into()),
        ("token", token.into()),
        (
            "pick_url",
            format!("/checkout/{}/pick", checkout.checkout_id).into(),
        ),
        ("choices", minijinja::Value::from_serialize(choices)),
    ]);
    if let Some(error) = error {
        context.insert("error", error.into());
    }
    render_page(StatusCode::OK, &context)
}

/// `POST /checkout/{checkout_id}/pick` (the cashier's form: `channel_account_id`, `t`,
/// `lang`): starts the attempt at the account picked and sends the person to it; anything
/// wrong goes back to the cashier, which says what.
pub async fn cashier_pick(
    state: &AppState,
    checkout_id: &str,
    body: &[u8],
    user_agent: Option<&str>,
    peer: std::net::IpAddr,
) -> Response<Body> {
    use crate::service::cashier::{self, Device};
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(body).unwrap_or_default();
    let lang = Lang::choose(form.get("lang").map(String::as_str), None);
    let token = form.get("t").map(String::as_str).unwrap_or("");
    if !state.master_key.checks_checkout_token(checkout_id, token) {
        return render_page(StatusCode::NOT_FOUND, &base_context(lang, None, "invalid"));
    }
    let Ok(checkout) = cashier::find(state, checkout_id) else {
        return render_page(StatusCode::NOT_FOUND, &base_context(lang, None, "invalid"));
    };
    let offered = cashier::offered(state, &checkout);
    let picked = form
        .get("channel_account_id")
        .and_then(|text| paycenter_domain::ids::ChannelAccountId::parse(text).ok());
    let device = Device::from_user_agent(user_agent);
    let outcome = match picked {
        Some(channel_account_id) => {
            cashier::pick(
                state,
                &checkout,
                &channel_account_id,
                device,
                Some(peer.to_string()),
                None,
            )
            .await
        }
        None => Err(Refusal::invalid("pick one of the accounts")),
    };
    match outcome {
        Ok(started) => to_attempt(state, &started, lang),
        Err(refusal) => picker(
            state,
            &checkout,
            &offered,
            lang,
            token,
            Some(refusal.message),
        ),
    }
}

/// `GET /checkout/{trade_no}/status?t=`: what the page polls.
pub fn checkout_status(
    state: &AppState,
    trade_no: &str,
    query: &HashMap<String, String>,
) -> Answer {
    let not_found = || {
        Refusal::not_found(
            ErrorCode::PaymentNotFound,
            "no payment behind this link (its token is missing or wrong)",
        )
    };
    let trade_no = linked_payment(state, trade_no, query.get("t").map(String::as_str))
        .ok_or_else(not_found)?;
    let payment = state
        .model_for_request()?
        .payment(&trade_no)?
        .ok_or_else(not_found)?;
    Ok((
        StatusCode::OK,
        crate::wire::to_value(&crate::wire::CheckoutStatusAnswer {
            trade_no: payment.trade_no.to_string(),
            status: payment.status.as_str().to_owned(),
            expired: payment.status == AttemptStatus::Pending
                && state.clock.now() > payment.expires_at,
        }),
    ))
}

/// The files the cashier loads: `(name, content type, content)`.
pub const ASSETS: &[(&str, &str, &str)] = &[
    (
        "checkout.css",
        "text/css; charset=utf-8",
        include_str!("../../assets/checkout.css"),
    ),
    (
        "checkout.js",
        "text/javascript; charset=utf-8",
        include_str!("../../assets/checkout.js"),
    ),
];

/// `GET /assets/{file}`.
pub fn asset(file: &str) -> Result<Response<Body>, Refusal> {
    let (_, content_type, content) = ASSETS
        .iter()
        .find(|(name, _, _)| *name == file)
        .ok_or_else(|| Refusal::new(ErrorCode::RouteNotFound, "no such asset"))?;
    let mut response = Response::new(Body::from(*content));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    let mut response = secured(response);
    // Assets change only with the binary.
    response.headers_mut().insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=3600"),
    );
    Ok(response)
}

/// The sandbox's optional `amount` (and `currency`): the sandbox then takes and reports that
/// money instead of the trade's, playing a channel whose report contradicts the attempt.
fn reported_money(
    state: &AppState,
    trade_no: &str,
    object: &serde_json::Map<String, serde_json::Value>,
) -> Result<Option<paycenter_domain::Money>, Refusal> {
    let amount = crate::http::dto::optional_str(object, "amount")?;
    let currency = crate::http::dto::optional_str(object, "currency")?;
    if amount.is_none() && currency.is_none() {
        return Ok(None);
    }
    let trade_currency = TradeNo::parse(trade_no)
        .ok()
        .and_then(|trade_no| state.sandbox_provider.trade(&trade_no))
        .map(|trade| trade.amount.currency());
    let currency = match currency {
        Some(code) => code
            .parse::<paycenter_domain::Currency>()
            .map_err(|error| Refusal::new(ErrorCode::InvalidCurrency, error.to_string()))?,
        None => match trade_currency {
            Some(currency) => currency,
            None => return Ok(None), // An unknown trade is answered below.
        },
    };
    let Some(amount) = amount else {
        return Err(Refusal::invalid("currency needs an amount"));
    };
    paycenter_domain::Money::parse_positive(amount, currency)
        .map(Some)
        .map_err(|error| Refusal::new(ErrorCode::InvalidAmount, error.to_string()))
}

/// What `POST /sandbox/pay/{trade_no}` answers: JSON to a program, the cashier page again to
/// a person (the page's form).
pub enum SandboxPayAnswer {
    /// `202` and the JSON answer.
    Json(Answer),
    /// `303` back to the cashier page.
    BackToPage(String),
}

/// `POST /sandbox/pay/{trade_no}` with `{"outcome": "success" | "failure", "race_close"?: bool}`
/// (JSON), or the cashier's form (`outcome`, `t`, `lang`), which is sent back to the page.
/// Plays the user; the outcome reaches paycenter by the sandbox's callback. `race_close: true`
/// pays a trade paycenter already closed (a payment that raced the close), to exercise the
/// automatic refund of late payments.
pub async fn sandbox_pay(
    state: Arc<AppState>,
    trade_no: String,
    content_type: Option<String>,
    body: bytes::Bytes,
) -> SandboxPayAnswer {
    let is_form = content_type
        .as_deref()
        .is_some_and(|value| value.starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return SandboxPayAnswer::Json(sandbox_pay_json(&state, trade_no, &body).await);
    }
    let form: HashMap<String, String> = serde_urlencoded::from_bytes(&body).unwrap_or_default();
    let token = form.get("t").map(String::as_str);
    let lang = form.get("lang").map(String::as_str).unwrap_or("en");
    let lang = Lang::choose(Some(lang), None).code();
    let page_link = |token: &str| {
        format!(
            "/checkout/{trade_no}?{}",
            serde_urlencoded::to_string([("t", token), ("lang", lang)]).expect("text pairs encode")
        )
    };
    // Only a form from the page (its token right) is taken and sent back there.
    let Some(paid) = linked_payment(&state, &trade_no, token) else {
        return SandboxPayAnswer::BackToPage(page_link(""));
    };
    let outcome = match form.get("outcome").map(String::as_str) {
        Some("success") => SandboxOutcome::Success,
        _ => SandboxOutcome::Failure,
    };
    if let Err(error) = state.sandbox_provider.pay(&paid, outcome, false, None) {
        // Paid twice, or expired: the page shows how the payment stands.
        tracing::info!(%error, trade_no = %paid, "a sandbox form was not taken");
    }
    SandboxPayAnswer::BackToPage(page_link(token.unwrap_or("")))
}

async fn sandbox_pay_json(state: &AppState, trade_no: String, body: &[u8]) -> Answer {
    let object = parse_object(body)?;
    crate::http::dto::check_fields(
        &object,
        "",
        &[
            ("outcome", crate::http::dto::MAX_TOKEN_CHARS),
            ("race_close", 0),
            ("amount", crate::http::dto::MAX_TOKEN_CHARS),
            ("currency", crate::http::dto::MAX_TOKEN_CHARS),
        ],
    )?;
    let request: crate::wire::SandboxPayRequest = crate::wire::read(&object)?;
    let race_close = match object.get("race_close") {
        None | Some(serde_json::Value::Null) => false,
        Some(serde_json::Value::Bool(flag)) => *flag,
        Some(_) => return Err(Refusal::invalid("race_close must be true or false")),
    };
    let reported = reported_money(state, &trade_no, &object)?;
    let outcome = match request.outcome.as_str() {
        "success" => SandboxOutcome::Success,
        "failure" => SandboxOutcome::Failure,
        _ => {
            return Err(Refusal::invalid(
                "outcome must be \"success\" or \"failure\"",
            ))
        }
    };
    let trade_no =
        TradeNo::parse(&trade_no).map_err(|error| Refusal::invalid(error.to_string()))?;
    state
        .sandbox_provider
        .pay(&trade_no, outcome, race_close, reported)
        .map_err(|error| match error {
            paycenter_gateway::sandbox::SandboxError::UnknownTrade(_) => {
                Refusal::not_found(ErrorCode::PaymentNotFound, error.to_string())
            }
            _ => Refusal::new(ErrorCode::SandboxTradeNotPayable, error.to_string()),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        crate::wire::to_value(&crate::wire::SandboxPayAnswer {
            trade_no: trade_no.to_string(),
            outcome: request.outcome,
            message: "the sandbox will send its callback".to_owned(),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_language_follows_the_query_then_the_browser() {
        assert_eq!(Lang::choose(Some("zh"), Some("en")), Lang::Zh);
        assert_eq!(
            Lang::choose(None, Some("zh-CN,zh;q=0.9,en;q=0.8")),
            Lang::Zh
        );
        assert_eq!(
            Lang::choose(None, Some("en-US,en;q=0.9,zh;q=0.5")),
            Lang::En
        );
        assert_eq!(
            Lang::choose(Some("fr"), Some("fr-FR, zh-TW;q=0.3")),
            Lang::Zh
        );
        assert_eq!(Lang::choose(None, None), Lang::En);
    }

    #[test]
    fn the_qr_is_an_svg_element() {
        let svg = qr_svg("weixin://wxpay/bizpayurl?pr=abc").unwrap();
        assert!(svg.starts_with("<svg") && svg.ends_with("</svg>"), "{svg}");
    }
}
