//! The router: a request is matched against [`ROUTES`] (method and path), its caller is
//! authenticated as the route says, its body is read within the route's limit, and the
//! operation's handler answers. Every answer is counted in the metrics under its operation id;
//! every refusal has paycenter's error shape.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bytes::Bytes;
use hyper::body::HttpBody;
use hyper::header::HeaderMap;
use hyper::http::{HeaderValue, Response, StatusCode};
use hyper::{Body, Request};
use paycenter_domain::events::AppRegistered;
use paycenter_gateway::CallbackRequest;

use crate::error::{ErrorCode, Refusal};
use crate::http::dto::MAX_BODY_BYTES;
use crate::http::routes::{Caller, Operation, RequestBody, Route, ROUTES};
use crate::http::{admin, auth, checkout, handlers, idempotency, lists, operations, Answer};
use crate::service::access::Actor;
use crate::state::AppState;

/// A path template's segment.
#[derive(Debug, PartialEq, Eq)]
enum Segment {
    Literal(&'static str),
    Parameter,
}

/// Each route's path template, split once.
fn templates() -> &'static [Vec<Segment>] {
    static TEMPLATES: OnceLock<Vec<Vec<Segment>>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        ROUTES
            .iter()
            .map(|route| {
                route
                    .path
                    .split('/')
                    .filter(|segment| !segment.is_empty())
                    .map(|segment| {
                        if segment.starts_with('{') {
                            Segment::Parameter
                        } else {
                            Segment::Literal(segment)
                        }
                    })
                    .collect()
            })
            .collect()
    })
}

/// The path's parameters, in order, when `segments` fit `template`.
fn fit(template: &[Segment], segments: &[&str]) -> Option<Vec<String>> {
    if template.len() != segments.len() {
        return None;
    }
    let mut parameters = Vec::new();
    for (expected, given) in template.iter().zip(segments) {
        match expected {
            Segment::Literal(literal) if literal == given => {}
            Segment::Literal(_) => return None,
            Segment::Parameter => parameters.push((*given).to_owned()),
        }
    }
    Some(parameters)
}

/// What a request's method and path lead to.
enum Found {
    Route(&'static Route, Vec<String>),
    /// The path exists, not with this method.
    OtherMethod,
    None,
}

fn find(method: &str, path: &str) -> Found {
    // Empty segments are skipped, as `//v1/payments/` is `/v1/payments`.
    let segments: Vec<&str> = path
        .split('/')
        .filter(|segment| !segment.is_empty())
        .collect();
    let mut path_exists = false;
    for (route, template) in ROUTES.iter().zip(templates()) {
        let Some(parameters) = fit(template, &segments) else {
            continue;
        };
        if route.method.eq_ignore_ascii_case(method) {
            return Found::Route(route, parameters);
        }
        path_exists = true;
    }
    if path_exists {
        Found::OtherMethod
    } else {
        Found::None
    }
}

/// The HTTP status of a refusal.
fn status_of(refusal: &Refusal) -> StatusCode {
    StatusCode::from_u16(refusal.status()).expect("every code's status is a valid HTTP status")
}

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    with_type(status, "application/json", body.to_string())
}

fn with_type(status: StatusCode, content_type: &'static str, body: String) -> Response<Body> {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert("content-type", HeaderValue::from_static(content_type));
    response
}

/// A refusal in paycenter's error shape; `retry_after` in the body is also the standard header.
pub fn refusal_response(refusal: &Refusal) -> Response<Body> {
    let mut response = json_response(status_of(refusal), &refusal.body());
    if let Some(("retry_after", seconds)) = &refusal.extra {
        if let Ok(value) = HeaderValue::from_str(&seconds.to_string()) {
            response.headers_mut().insert("retry-after", value);
        }
    }
    response
}

fn answer_response(answer: Answer) -> Response<Body> {
    match answer {
        Ok((status, body)) => json_response(status, &body),
        Err(refusal) => refusal_response(&refusal),
    }
}

/// A header as text; a header that is not text is malformed.
fn header<'a>(headers: &'a HeaderMap, name: &str) -> Result<Option<&'a str>, Refusal> {
    match headers.get(name) {
        None => Ok(None),
        Some(value) => value
            .to_str()
            .map(Some)
            .map_err(|_| Refusal::invalid(format!("the {name} header is malformed"))),
    }
}

/// The body a route takes, read within its limit: `411` without a `Content-Length` where a
/// body is required, `413` over the limit (refused before reading).
async fn read_body(route: &Route, headers: &HeaderMap, body: &mut Body) -> Result<Bytes, Refusal> {
    let limit_bytes = match route.operation {
        Operation::ReconcileUpload => admin::MAX_BILL_BYTES,
        _ => MAX_BODY_BYTES,
    };
    let length = match header(headers, "content-length")? {
        Some(text) => Some(
            text.trim()
                .parse::<u64>()
                .map_err(|_| Refusal::invalid("the content-length header is malformed"))?,
        ),
        None => None,
    };
    match (route.request, length) {
        (RequestBody::None, _) => return Ok(Bytes::new()),
        // A body that may be absent (`curl -XPOST` sends no Content-Length): empty then.
        (RequestBody::OptionalJson(_), None | Some(0)) => return Ok(Bytes::new()),
        (_, None) => {
            return Err(Refusal::new(
                ErrorCode::LengthRequired,
                "send a Content-Length header",
            ))
        }
        (_, Some(length)) if length > limit_bytes => {
            return Err(Refusal::new(
                ErrorCode::PayloadTooLarge,
                format!("request bodies are limited to {limit_bytes} bytes"),
            ))
        }
        (_, Some(_)) => {}
    }
    // hyper ends the body at its Content-Length; the limit still bounds what is kept.
    let mut bytes = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk =
            chunk.map_err(|error| Refusal::invalid(format!("the body was not read: {error}")))?;
        if (bytes.len() + chunk.len()) as u64 > limit_bytes {
            return Err(Refusal::new(
                ErrorCode::PayloadTooLarge,
                format!("request bodies are limited to {limit_bytes} bytes"),
            ));
        }
        bytes.extend_from_slice(&chunk);
    }
    Ok(Bytes::from(bytes))
}

/// The query string's pairs; a malformed one is refused.
fn query_pairs(query: Option<&str>) -> Result<HashMap<String, String>, Refusal> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|_| Refusal::invalid("the query string is malformed"))
}

/// Who called, as the route requires.
enum Authenticated {
    Admin,
    App(AppRegistered),
    Public,
}

/// Answers one request.
pub async fn handle(
    state: Arc<AppState>,
    peer: SocketAddr,
    request: Request<Body>,
) -> Response<Body> {
    if crate::http::console::is_console(request.uri().path()) {
        return crate::http::console::handle(&state, peer, request).await;
    }
    let started = Instant::now();
    let (parts, mut body) = request.into_parts();
    let (route, parameters) = match find(parts.method.as_str(), parts.uri.path()) {
        // With the sandbox turned off its routes do not exist.
        Found::Route(route, _)
            if route.operation == Operation::SandboxPay && !state.config.sandbox_enabled =>
        {
            return refusal_response(&Refusal::new(ErrorCode::RouteNotFound, "no such route"))
        }
        Found::Route(route, parameters) => (route, parameters),
        Found::OtherMethod => {
            return refusal_response(&Refusal::new(
                ErrorCode::MethodNotAllowed,
                "this route does not take that method",
            ))
        }
        Found::None => {
            return refusal_response(&Refusal::new(ErrorCode::RouteNotFound, "no such route"))
        }
    };
    let response = match serve(&state, route, parameters, &parts, &mut body, peer).await {
        Ok(response) => response,
        Err(refusal) => refusal_response(&refusal),
    };
    state.metrics.observe(
        route.operation.id(),
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn serve(
    state: &Arc<AppState>,
    route: &'static Route,
    parameters: Vec<String>,
    parts: &hyper::http::request::Parts,
    body: &mut Body,
    peer: SocketAddr,
) -> Result<Response<Body>, Refusal> {
    let headers = &parts.headers;
    let caller = match route.caller {
        Caller::Admin => {
            auth::admin(state, header(headers, "authorization")?)?;
            Authenticated::Admin
        }
        Caller::App => Authenticated::App(auth::app(state, header(headers, "authorization")?)?),
        Caller::AppOrAdmin => {
            let authorization = header(headers, "authorization")?;
            if auth::admin(state, authorization).is_ok() {
                Authenticated::Admin
            } else {
                Authenticated::App(auth::app(state, authorization)?)
            }
        }
        Caller::Public => Authenticated::Public,
    };
    let query = if route.query.is_empty() {
        HashMap::new()
    } else if route.operation == Operation::Checkout {
        // A person's page: a mangled link is a link without its token (a page saying so).
        query_pairs(parts.uri.query()).unwrap_or_default()
    } else {
        query_pairs(parts.uri.query())?
    };
    let body = read_body(route, headers, body).await?;
    let state = state.clone();
    if let Authenticated::Admin = caller {
        let answer = operations::operate(
            state,
            Actor::AdminToken,
            route.operation,
            parameters,
            query,
            body,
        )
        .await;
        return Ok(answer_response(answer));
    }
    let parameters_peek = parameters.first().cloned().unwrap_or_default();
    let mut parameters = parameters.into_iter();
    let mut parameter = || parameters.next().expect("the template has this parameter");
    // One operation runs: it takes the app it was authenticated as, without a copy.
    let app_or_admin = match caller {
        Authenticated::App(app) => Some(app),
        Authenticated::Admin | Authenticated::Public => None,
    };
    let app = |app: Option<AppRegistered>| app.expect("an app route authenticated its app");
    let answer = match route.operation {
        Operation::CreatePayment => {
            let app = app(app_or_admin);
            let key = header(headers, "idempotency-key")?.map(str::to_owned);
            let handler = handlers::create_payment(state.clone(), &app, body.clone());
            idempotency::run(&state, &app, key, &body, handler).await
        }
        Operation::FindPayments => lists::find_payments(state, app_or_admin, query).await,
        Operation::ListRefunds => lists::list_refunds(state, app_or_admin, query).await,
        Operation::GetPayment => handlers::get_payment(state, app_or_admin, parameter()).await,
        Operation::ClosePayment => {
            handlers::close_payment(state, app(app_or_admin), parameter()).await
        }
        Operation::SharePayment => {
            handlers::share_payment(state, app(app_or_admin), parameter()).await
        }
        Operation::CreateRefund => {
            handlers::create_refund(state, app_or_admin, parameter(), body).await
        }
        Operation::ListEvents => handlers::list_events(state, app(app_or_admin), query).await,
        Operation::ListNotifications => {
            handlers::list_notifications(state, app_or_admin, query).await
        }
        Operation::RedeliverNotification => {
            handlers::redeliver_notification(state, app_or_admin, parameter()).await
        }
        Operation::ChannelCallback => {
            let request = CallbackRequest {
                headers: headers
                    .iter()
                    .filter_map(|(name, value)| {
                        Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                    })
                    .collect(),
                body: body.to_vec(),
            };
            let channel = parameter();
            let (status, content_type, text) =
                handlers::channel_callback(state, channel, parameter(), Some(peer.ip()), request)
                    .await;
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return Ok(with_type(status, content_type, text));
        }
        Operation::Checkout if checkout::is_cashier(&parameters_peek) => {
            let accept_language = header(headers, "accept-language").ok().flatten();
            let user_agent = header(headers, "user-agent").ok().flatten();
            return Ok(checkout::cashier_page(
                &state,
                &parameter(),
                &query,
                accept_language,
                user_agent,
                peer.ip(),
            )
            .await);
        }
        Operation::CashierWechat => {
            return Ok(checkout::cashier_wechat(&state, &parameter(), &query, peer.ip()).await);
        }
        Operation::CashierPick => {
            let user_agent = header(headers, "user-agent").ok().flatten();
            return Ok(
                checkout::cashier_pick(&state, &parameter(), &body, user_agent, peer.ip()).await,
            );
        }
        Operation::Checkout => {
            let accept_language = header(headers, "accept-language").ok().flatten();
            return Ok(checkout::checkout_page(
                &state,
                &parameter(),
                &query,
                accept_language,
            ));
        }
        Operation::CheckoutStatus => checkout::checkout_status(&state, &parameter(), &query),
        Operation::Asset => return checkout::asset(&parameter()),
        Operation::SandboxPay => {
            let content_type = header(headers, "content-type")?.map(str::to_owned);
            match checkout::sandbox_pay(state, parameter(), content_type, body).await {
                checkout::SandboxPayAnswer::Json(answer) => answer,
                checkout::SandboxPayAnswer::BackToPage(location) => {
                    let mut response = Response::new(Body::empty());
                    *response.status_mut() = StatusCode::SEE_OTHER;
                    let location = HeaderValue::from_str(&location)
                        .map_err(|_| Refusal::invalid("the page's address is malformed"))?;
                    response.headers_mut().insert("location", location);
                    return Ok(response);
                }
            }
        }
        Operation::Healthz => {
            let (status, body) = crate::http::health::report(&state);
            return Ok(json_response(status, &body));
        }
        Operation::Metrics => {
            return Ok(with_type(
                StatusCode::OK,
                "text/plain; version=0.0.4",
                admin::metrics_text(&state),
            ))
        }
        Operation::Openapi => {
            return Ok(json_response(
                StatusCode::OK,
                crate::http::openapi::served(),
            ))
        }
        // The admin's operations went to `operate` above; an app never authenticates for them.
        operation => {
            return Err(Refusal::internal(
                "router",
                format!("{} reached the app side", operation.id()),
            ))
        }
    };
    Ok(answer_response(answer))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_route_is_found_by_its_own_method_and_path() {
        for route in ROUTES {
            let path = route.path.replace('{', "x").replace('}', "");
            match find(route.method, &path) {
                Found::Route(found, _) => assert_eq!(found.operation, route.operation, "{path}"),
                _ => panic!("{} {path} not found", route.method),
            }
        }
    }

    #[test]
    fn parameters_come_in_order_and_other_methods_are_told_apart() {
        let Found::Route(route, parameters) =
            find("POST", "/v1/merchants/m_1/channel-accounts/ca_2/disable")
        else {
            panic!("not found");
        };
        assert_eq!(route.operation, Operation::ChannelAccountAction);
        assert_eq!(parameters, ["m_1", "ca_2", "disable"]);
        assert!(matches!(find("DELETE", "/v1/payments"), Found::OtherMethod));
        assert!(matches!(find("GET", "/v1/nothing"), Found::None));
        assert!(matches!(find("GET", "//v1/payments/"), Found::Route(..)));
    }
}
