//! The console at `/console`: the back office's pages for operators (sign in with e-mail and
//! password; merchants, channel accounts, apps, payments with their event timeline, refunds,
//! reconciliations, projections, operators, the audit trail).
//!
//! Every page reads and acts through [`crate::http::operations::operate`], the same function the
//! admin API goes through, as the signed-in operator: the operator's role is checked there,
//! not here (a page hides a button its reader may not press, and the server refuses it anyway),
//! and the events an action appends record the operator. Pages are server-rendered
//! (`minijinja`), in Chinese or English, with no script at all.
//!
//! Sessions: a random token in an `HttpOnly`, `SameSite=Strict` cookie (`Secure` when the
//! public URL is https), ended by sign-out, 30 minutes idle or 12 hours; every form carries
//! the session's CSRF token (the sign-in form a token of its own cookie); sign-in is refused
//! for 15 minutes after 5 failures per address or per client IP.

mod pages;
mod texts;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::HttpBody;
use hyper::http::{HeaderValue, Response, StatusCode};
use hyper::{Body, Request};
use paycenter_domain::operators::Actor;
use serde_json::Value;

use crate::error::{ErrorCode, Refusal};
use crate::http::checkout::Lang;
use crate::http::routes::Operation;
use crate::service::sessions;
use crate::state::AppState;

/// The session cookie.
const SESSION_COOKIE: &str = "pc_console";
/// The sign-in form's own CSRF cookie (there is no session yet).
const SIGN_IN_COOKIE: &str = "pc_console_sign_in";
/// The chosen language, once `?lang=` picked one.
const LANG_COOKIE: &str = "pc_console_lang";
/// The most bytes of a form (a bill pasted into the upload form is the largest).
const MAX_FORM_BYTES: u64 = 4 << 20;

/// No script, no framing, nothing from elsewhere; forms post only here.
const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

const STYLESHEET: &str = include_str!("../../../assets/console.css");

/// Whether `path` is the console's.
pub fn is_console(path: &str) -> bool {
    path == "/console" || path.starts_with("/console/")
}

/// One request to the console, as the pages see it.
pub(crate) struct ConsoleRequest {
    pub method: hyper::Method,
    /// The path's segments after `console`.
    pub segments: Vec<String>,
    pub query: HashMap<String, String>,
    /// The form's fields (a POST), in order.
    pub form: Vec<(String, String)>,
    pub lang: Lang,
    pub peer: SocketAddr,
}

impl ConsoleRequest {
    /// A query parameter, when given and not blank.
    pub fn query(&self, name: &str) -> Option<&str> {
        self.query
            .get(name)
            .map(|value| value.trim())
            .filter(|value| !value.is_empty())
    }

    /// A form field, when given and not blank.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.form
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.trim())
            .filter(|value| !value.is_empty())
    }
}

/// The signed-in operator.
#[derive(Clone)]
pub(crate) struct Operator {
    pub actor: Actor,
    pub name: String,
    pub csrf_token: String,
}

/// What a page answers.
pub(crate) enum Page {
    /// A page: its template, status and context (beside what every page has).
    Html(StatusCode, &'static str, Value),
    /// After a form: where to go (303).
    Redirect(String),
}

/// A page of the console in `lang`: `name`'s template with `context` (a JSON object).
fn render(
    lang: Lang,
    operator: Option<&Operator>,
    status: StatusCode,
    name: &str,
    mut context: Value,
) -> Response<Body> {
    if !context.is_object() {
        context = Value::Object(Default::default());
    }
    context["t"] = texts::texts(lang);
    context["lang"] = Value::from(lang.code());
    if let Some(operator) = operator {
        let (email, role) = match &operator.actor {
            Actor::Operator { email, role, .. } => (email.clone(), role.as_str().to_owned()),
            Actor::AdminToken => ("admin".to_owned(), "admin".to_owned()),
        };
        context["me"] = serde_json::json!({
            "email": email,
            "name": operator.name,
            "role": role,
            "may": pages::permissions_of(&operator.actor),
        });
        context["csrf"] = Value::from(operator.csrf_token.clone());
    }
    let html = templates()
        .get_template(name)
        .and_then(|template| template.render(minijinja::Value::from_serialize(&context)))
        .unwrap_or_else(|error| {
            tracing::error!(%error, template = name, "a console page did not render");
            "<!doctype html><title>paycenter</title><p>This page is not available right now.</p>"
                .to_owned()
        });
    let mut response = Response::new(Body::from(html));
    *response.status_mut() = status;
    response.headers_mut().insert(
        "content-type",
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    secured(response)
}

fn templates() -> &'static minijinja::Environment<'static> {
    static ENVIRONMENT: OnceLock<minijinja::Environment<'static>> = OnceLock::new();
    ENVIRONMENT.get_or_init(|| {
        let mut environment = minijinja::Environment::new();
        // `.html`: every value is HTML-escaped unless marked safe (only the chart's SVG is).
        for (name, source) in [
            (
                "base.html",
                include_str!("../../../templates/console/base.html"),
            ),
            (
                "sign_in.html",
                include_str!("../../../templates/console/sign_in.html"),
            ),
            (
                "error.html",
                include_str!("../../../templates/console/error.html"),
            ),
            (
                "merchants.html",
                include_str!("../../../templates/console/merchants.html"),
            ),
            (
                "merchant.html",
                include_str!("../../../templates/console/merchant.html"),
            ),
            (
                "apps.html",
                include_str!("../../../templates/console/apps.html"),
            ),
            (
                "secrets.html",
                include_str!("../../../templates/console/secrets.html"),
            ),
            (
                "payments.html",
                include_str!("../../../templates/console/payments.html"),
            ),
            (
                "payment.html",
                include_str!("../../../templates/console/payment.html"),
            ),
            (
                "refunds.html",
                include_str!("../../../templates/console/refunds.html"),
            ),
            (
                "payouts.html",
                include_str!("../../../templates/console/payouts.html"),
            ),
            (
                "reconciliations.html",
                include_str!("../../../templates/console/reconciliations.html"),
            ),
            (
                "reconciliation.html",
                include_str!("../../../templates/console/reconciliation.html"),
            ),
            (
                "projections.html",
                include_str!("../../../templates/console/projections.html"),
            ),
            (
                "operators.html",
                include_str!("../../../templates/console/operators.html"),
            ),
            (
                "trail.html",
                include_str!("../../../templates/console/trail.html"),
            ),
            (
                "notifications.html",
                include_str!("../../../templates/console/notifications.html"),
            ),
            (
                "audit.html",
                include_str!("../../../templates/console/audit.html"),
            ),
            (
                "alerts.html",
                include_str!("../../../templates/console/alerts.html"),
            ),
        ] {
            environment
                .add_template(name, source)
                .expect("the console's templates parse");
        }
        environment
    })
}

fn secured(mut response: Response<Body>) -> Response<Body> {
    let headers = response.headers_mut();
    for (name, value) in [
        ("content-security-policy", CONTENT_SECURITY_POLICY),
        ("x-content-type-options", "nosniff"),
        ("referrer-policy", "same-origin"),
        ("x-frame-options", "DENY"),
        ("cache-control", "no-store"),
    ] {
        headers.insert(name, HeaderValue::from_static(value));
    }
    response
}

fn redirect(location: &str) -> Response<Body> {
    let mut response = Response::new(Body::empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(location) = HeaderValue::from_str(location) {
        response.headers_mut().insert("location", location);
    }
    secured(response)
}

fn cookies(request: &Request<Body>) -> HashMap<String, String> {
    request
        .headers()
        .get_all("cookie")
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| {
            let (name, value) = pair.split_once('=')?;
            Some((name.trim().to_owned(), value.trim().to_owned()))
        })
        .take(64)
        .collect()
}

/// A `Set-Cookie` value for the console's path; `Secure` when paycenter is served over https.
fn cookie(state: &AppState, name: &str, value: &str, max_age_seconds: u64) -> HeaderValue {
    let secure = if state.config.public_url.starts_with("https://") {
        "; Secure"
    } else {
        ""
    };
    HeaderValue::from_str(&format!(
        "{name}={value}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={max_age_seconds}{secure}"
    ))
    .expect("cookie values are hex")
}

async fn read_form(request: &mut Request<Body>) -> Result<Vec<(String, String)>, Refusal> {
    let mut bytes = Vec::new();
    while let Some(chunk) = request.body_mut().data().await {
        let chunk =
            chunk.map_err(|error| Refusal::invalid(format!("the form was not read: {error}")))?;
        if (bytes.len() + chunk.len()) as u64 > MAX_FORM_BYTES {
            return Err(Refusal::new(
                ErrorCode::PayloadTooLarge,
                format!("forms are limited to {MAX_FORM_BYTES} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    serde_urlencoded::from_bytes(&bytes).map_err(|_| Refusal::invalid("the form is malformed"))
}

/// Answers one request to the console.
pub async fn handle(
    state: &Arc<AppState>,
    peer: SocketAddr,
    mut request: Request<Body>,
) -> Response<Body> {
    let started = Instant::now();
    let response = serve(state, peer, &mut request).await;
    state.metrics.observe(
        "console",
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn serve(
    state: &Arc<AppState>,
    peer: SocketAddr,
    request: &mut Request<Body>,
) -> Response<Body> {
    let segments: Vec<String> = request
        .uri()
        .path()
        .split('/')
        .filter(|segment| !segment.is_empty())
        .skip(1)
        .take(8)
        .map(str::to_owned)
        .collect();
    let query: HashMap<String, String> =
        serde_urlencoded::from_str(request.uri().query().unwrap_or("")).unwrap_or_default();
    let cookies = cookies(request);
    let chosen_lang = query
        .get("lang")
        .filter(|lang| matches!(lang.as_str(), "zh" | "en"))
        .cloned();
    let accept_language = request
        .headers()
        .get("accept-language")
        .and_then(|value| value.to_str().ok());
    let lang = Lang::choose(
        chosen_lang
            .as_deref()
            .or(cookies.get(LANG_COOKIE).map(String::as_str)),
        accept_language,
    );
    let method = request.method().clone();
    if method == hyper::Method::GET && segments.first().map(String::as_str) == Some("assets") {
        return stylesheet(&segments);
    }
    let form = if method == hyper::Method::POST {
        match read_form(request).await {
            Ok(form) => form,
            Err(refusal) => return error_page(lang, None, &refusal),
        }
    } else {
        Vec::new()
    };
    let console_request = ConsoleRequest {
        method,
        segments,
        query,
        form,
        lang,
        peer,
    };
    let mut response = route(state, &console_request, &cookies).await;
    if let Some(lang) = chosen_lang {
        response.headers_mut().append(
            "set-cookie",
            cookie(state, LANG_COOKIE, &lang, 365 * 24 * 3600),
        );
    }
    response
}

fn stylesheet(segments: &[String]) -> Response<Body> {
    if segments.get(1).map(String::as_str) != Some("console.css") || segments.len() != 2 {
        return error_page(
            Lang::En,
            None,
            &Refusal::new(ErrorCode::RouteNotFound, "no such page"),
        );
    }
    let mut response = Response::new(Body::from(STYLESHEET));
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static("text/css"));
    let mut response = secured(response);
    response.headers_mut().insert(
        "cache-control",
        HeaderValue::from_static("public, max-age=3600"),
    );
    response
}

/// A refusal as a page with its status.
fn error_page(lang: Lang, operator: Option<&Operator>, refusal: &Refusal) -> Response<Body> {
    let status =
        StatusCode::from_u16(refusal.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    render(
        lang,
        operator,
        status,
        "error.html",
        serde_json::json!({"error": {"code": refusal.code.as_str(), "message": refusal.message}}),
    )
}

async fn route(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    cookies: &HashMap<String, String>,
) -> Response<Body> {
    let first = request.segments.first().map(String::as_str);
    if first == Some("sign-in") && request.segments.len() == 1 {
        return sign_in(state, request, cookies).await;
    }
    let now = Instant::now();
    let session_token = cookies.get(SESSION_COOKIE);
    let session = session_token.and_then(|token| state.console_sessions.touch(token, now));
    let Some(session) = session else {
        return redirect("/console/sign-in");
    };
    // The role and the operator's access are read afresh on every request: a role changed or
    // an operator disabled takes effect at once.
    let operator = match state.model_for_request() {
        Ok(model) => model.operator(&session.operator_id).cloned(),
        Err(refusal) => return error_page(request.lang, None, &refusal),
    };
    let Some(operator) = operator.filter(|operator| operator.enabled) else {
        if let Some(token) = session_token {
            state.console_sessions.end(token);
        }
        return redirect("/console/sign-in");
    };
    let operator = Operator {
        actor: Actor::Operator {
            operator_id: operator.operator_id.clone(),
            email: operator.email.clone(),
            role: operator.role,
        },
        name: operator.name.clone(),
        csrf_token: session.csrf_token.clone(),
    };
    if request.method == hyper::Method::POST {
        let sent = request.field("_csrf").unwrap_or("");
        if !crate::keys::same_secret(sent, &session.csrf_token) {
            return error_page(
                request.lang,
                Some(&operator),
                &Refusal::new(
                    ErrorCode::Forbidden,
                    "this form did not come from your console session (its CSRF token is missing or stale); reload the page and send it again",
                ),
            );
        }
        if first == Some("sign-out") && request.segments.len() == 1 {
            if let Some(token) = session_token {
                state.console_sessions.end(token);
            }
            let mut response = redirect("/console/sign-in");
            response
                .headers_mut()
                .append("set-cookie", cookie(state, SESSION_COOKIE, "", 0));
            return response;
        }
    }
    match pages::page(state, request, &operator).await {
        Ok(Page::Html(status, name, context)) => {
            render(request.lang, Some(&operator), status, name, context)
        }
        Ok(Page::Redirect(location)) => redirect(&location),
        Err(refusal) => error_page(request.lang, Some(&operator), &refusal),
    }
}

/// `GET /console/sign-in` shows the form; `POST` checks the address and password.
async fn sign_in(
    state: &Arc<AppState>,
    request: &ConsoleRequest,
    cookies: &HashMap<String, String>,
) -> Response<Body> {
    let form_page = |status: StatusCode, error: Option<&str>, email: &str| {
        let token = sessions::new_token();
        let mut response = render(
            request.lang,
            None,
            status,
            "sign_in.html",
            serde_json::json!({"sign_in_token": token, "error": error, "email": email}),
        );
        response
            .headers_mut()
            .append("set-cookie", cookie(state, SIGN_IN_COOKIE, &token, 3600));
        response
    };
    let t = texts::texts(request.lang);
    let words = |key: &str| t[key].as_str().unwrap_or_default().to_owned();
    if request.method != hyper::Method::POST {
        return form_page(StatusCode::OK, None, "");
    }
    let email = request.field("email").unwrap_or("").to_owned();
    let sent = request.field("_csrf").unwrap_or("");
    let expected = cookies
        .get(SIGN_IN_COOKIE)
        .map(String::as_str)
        .unwrap_or("");
    if expected.is_empty() || !crate::keys::same_secret(sent, expected) {
        return form_page(StatusCode::FORBIDDEN, Some(&words("form_stale")), &email);
    }
    let now = Instant::now();
    let ip = request.peer.ip().to_string();
    let address = email.trim().to_lowercase();
    let keys = [address.as_str(), ip.as_str()];
    if state.console_sessions.throttled(&keys, now) {
        return form_page(
            StatusCode::TOO_MANY_REQUESTS,
            Some(&words("too_many_attempts")),
            &email,
        );
    }
    let password = zeroize::Zeroizing::new(
        request
            .form
            .iter()
            .find(|(key, _)| key == "password")
            .map(|(_, value)| value.clone())
            .unwrap_or_default(),
    );
    let checked = if password.len() > crate::service::operators::MAX_PASSWORD_CHARS * 4 {
        Ok(None)
    } else {
        crate::service::operators::check_credentials(state, &email, password).await
    };
    match checked {
        Ok(Some(operator)) => {
            state.console_sessions.succeeded(&keys);
            let (token, _) = state.console_sessions.start(operator.operator_id, now);
            let mut response = redirect("/console/payments");
            let headers = response.headers_mut();
            headers.append(
                "set-cookie",
                cookie(
                    state,
                    SESSION_COOKIE,
                    &token,
                    sessions::ABSOLUTE_TIMEOUT.as_secs(),
                ),
            );
            headers.append("set-cookie", cookie(state, SIGN_IN_COOKIE, "", 0));
            response
        }
        Ok(None) => {
            state.console_sessions.failed(&keys, now);
            tracing::info!(peer = %request.peer, "a console sign-in failed");
            form_page(
                StatusCode::UNAUTHORIZED,
                Some(&words("wrong_password")),
                &email,
            )
        }
        Err(refusal) => error_page(request.lang, None, &refusal),
    }
}

/// Calls an admin operation as the signed-in operator (see [`crate::http::operations::operate`]).
pub(crate) async fn call(
    state: &Arc<AppState>,
    operator: &Operator,
    operation: Operation,
    parameters: &[&str],
    query: &[(&str, &str)],
    body: Option<Value>,
) -> Result<Value, Refusal> {
    let (_, value) = crate::http::operations::operate(
        state.clone(),
        operator.actor.clone(),
        operation,
        parameters
            .iter()
            .map(|parameter| (*parameter).to_owned())
            .collect(),
        query
            .iter()
            .filter(|(_, value)| !value.is_empty())
            .map(|(name, value)| ((*name).to_owned(), (*value).to_owned()))
            .collect(),
        body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string())),
    )
    .await?;
    Ok(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every template a page names is registered (a page missing from the list would answer
    /// "not available" instead of itself); the pages without a session render.
    #[test]
    fn every_page_template_renders() {
        let pages = include_str!("pages.rs");
        let mut named = 0;
        for (idx, _) in pages.match_indices(".html\"") {
            let start = pages[..idx].rfind('"').expect("a quoted name") + 1;
            let name = &pages[start..idx + 5];
            templates()
                .get_template(name)
                .unwrap_or_else(|error| panic!("{name}: {error}"));
            named += 1;
        }
        assert!(named >= 12, "{named} templates named by the pages");
        for name in ["sign_in.html", "error.html"] {
            templates()
                .get_template(name)
                .and_then(|template| {
                    template.render(minijinja::context! { t => texts::texts(Lang::Zh) })
                })
                .unwrap_or_else(|error| panic!("{name}: {error}"));
        }
    }

    #[test]
    fn both_languages_have_every_word() {
        let (zh, en) = (texts::texts(Lang::Zh), texts::texts(Lang::En));
        let (zh, en) = (zh.as_object().unwrap(), en.as_object().unwrap());
        assert_eq!(zh.len(), en.len());
        assert!(zh
            .values()
            .chain(en.values())
            .all(|word| !word.as_str().unwrap().is_empty()));
    }
}
