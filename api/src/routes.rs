//! Routing: paths and methods to handlers, auth, body limits, metrics, and the error shape for
//! everything warp itself refuses.

use std::collections::HashMap;
use std::convert::Infallible;
use std::sync::Arc;
use std::time::Instant;

use paycenter_domain::events::AppRegistered;
use paycenter_gateway::CallbackRequest;
use sha2::{Digest, Sha256};
use warp::filters::BoxedFilter;
use warp::http::{Response, StatusCode};
use warp::hyper::Body;
use warp::{Filter, Rejection};

use crate::dto::MAX_BODY_BYTES;
use crate::error::{ApiError, ErrorCode};
use crate::handlers::{self, Answer};
use crate::state::AppState;

fn json_response(status: StatusCode, body: &serde_json::Value) -> Response<Body> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .expect("valid response")
}

fn finish(
    state: &AppState,
    route: &'static str,
    started: Instant,
    answer: Answer,
) -> Response<Body> {
    let response = match answer {
        Ok((status, body)) => json_response(status, &body),
        Err(error) => {
            let mut response = json_response(error.status, &error.body());
            // `retry_after` in the body is also the standard header (429, 409 attempt_too_soon).
            if let Some(("retry_after", seconds)) = &error.extra {
                if let Ok(value) = warp::http::HeaderValue::from_str(&seconds.to_string()) {
                    response.headers_mut().insert("retry-after", value);
                }
            }
            response
        }
    };
    state.metrics.observe(
        route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

/// Constant-time comparison, so the admin token cannot be guessed byte by byte from timing.
fn same_secret(left: &str, right: &str) -> bool {
    let (left, right) = (
        Sha256::digest(left.as_bytes()),
        Sha256::digest(right.as_bytes()),
    );
    left.iter()
        .zip(right.iter())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b))
        == 0
}

fn bearer(header: &Option<String>) -> Option<&str> {
    header
        .as_deref()
        .and_then(|value| value.strip_prefix("Bearer "))
        .map(str::trim)
}

fn unauthorized() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        ErrorCode::Unauthorized,
        "a valid Authorization: Bearer token is required",
    )
}

fn admin(state: &AppState, header: &Option<String>) -> Result<(), ApiError> {
    match bearer(header) {
        Some(token)
            if !state.config.admin_token.is_empty()
                && same_secret(token, &state.config.admin_token) =>
        {
            Ok(())
        }
        _ => Err(unauthorized()),
    }
}

/// Authenticates an app (its current key, or the previous one during its grace period),
/// then refuses a disabled app and one over its request budget.
fn app(state: &AppState, header: &Option<String>) -> Result<AppRegistered, ApiError> {
    let token = bearer(header).ok_or_else(unauthorized)?;
    let app = {
        let model = state.read_model()?;
        let app = model
            .app_for_key(&handlers::api_key_sha256(token), state.clock.now())
            .ok_or_else(unauthorized)?
            .clone();
        if model.disabled_apps.contains(&app.app_id) {
            return Err(ApiError::new(
                StatusCode::FORBIDDEN,
                ErrorCode::AppDisabled,
                format!("app {} is disabled; an operator can enable it", app.app_id),
            ));
        }
        app
    };
    if let Err(retry_after_seconds) = state.rate_limiter.take(
        &app.app_id,
        state.config.app_rate_limit,
        std::time::Instant::now(),
    ) {
        let mut error = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            ErrorCode::RateLimited,
            format!(
                "app {} sent more than {} requests per second; retry after {retry_after_seconds} s",
                app.app_id, state.config.app_rate_limit.per_second
            ),
        );
        error.extra = Some(("retry_after", serde_json::json!(retry_after_seconds)));
        return Err(error);
    }
    Ok(app)
}

/// Authenticates the admin, runs the handler, records the request: the frame of every admin route.
async fn admin_then<Fut>(
    state: Arc<AppState>,
    auth: Option<String>,
    route: &'static str,
    handler: impl FnOnce(Arc<AppState>) -> Fut,
) -> Response<Body>
where
    Fut: std::future::Future<Output = Answer>,
{
    let started = Instant::now();
    let answer = match admin(&state, &auth) {
        Ok(()) => handler(state.clone()).await,
        Err(error) => Err(error),
    };
    finish(&state, route, started, answer)
}

/// Authenticates the app, runs the handler, records the request: the frame of every app route.
async fn app_then<Fut>(
    state: Arc<AppState>,
    auth: Option<String>,
    route: &'static str,
    handler: impl FnOnce(Arc<AppState>, AppRegistered) -> Fut,
) -> Response<Body>
where
    Fut: std::future::Future<Output = Answer>,
{
    let started = Instant::now();
    let answer = match app(&state, &auth) {
        Ok(app) => handler(state.clone(), app).await,
        Err(error) => Err(error),
    };
    finish(&state, route, started, answer)
}

/// All routes.
pub fn routes(
    state: Arc<AppState>,
) -> impl Filter<Extract = (Response<Body>,), Error = Infallible> + Clone {
    let with_state = {
        let state = state.clone();
        warp::any().map(move || state.clone())
    };
    let auth = warp::header::optional::<String>("authorization");
    let body = warp::body::content_length_limit(MAX_BODY_BYTES).and(warp::body::bytes());
    let query = warp::query::<HashMap<String, String>>();

    let create_merchant = warp::path!("v1" / "merchants")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth)
        .and(body)
        .then(|state: Arc<AppState>, auth: Option<String>, body| {
            admin_then(state, auth, "create_merchant", move |state| {
                handlers::create_merchant(state, body)
            })
        })
        .boxed();
    let create_channel_account = warp::path!("v1" / "merchants" / String / "channel-accounts")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth)
        .and(body)
        .then(
            |merchant_id: String, state: Arc<AppState>, auth: Option<String>, body| {
                admin_then(state, auth, "create_channel_account", move |state| {
                    handlers::create_channel_account(state, merchant_id, None, body)
                })
            },
        )
        .boxed();
    let rotate_channel_account =
        warp::path!("v1" / "merchants" / String / "channel-accounts" / String)
            .and(warp::put())
            .and(with_state.clone())
            .and(auth)
            .and(body)
            .then(
                |merchant_id: String,
                 channel_account_id: String,
                 state: Arc<AppState>,
                 auth: Option<String>,
                 body| {
                    admin_then(state, auth, "rotate_channel_account", move |state| {
                        handlers::create_channel_account(
                            state,
                            merchant_id,
                            Some(channel_account_id),
                            body,
                        )
                    })
                },
            )
            .boxed();
    let merchant_balances = warp::path!("v1" / "merchants" / String / "balances")
        .and(warp::get())
        .and(with_state.clone())
        .and(auth)
        .then(
            |merchant_id: String, state: Arc<AppState>, auth: Option<String>| {
                admin_then(state, auth, "merchant_balances", move |state| {
                    handlers::merchant_balances(state, merchant_id)
                })
            },
        )
        .boxed();
    let reconcile = warp::path!("v1" / "reconciliations")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth)
        .and(body)
        .then(|state: Arc<AppState>, auth: Option<String>, body| {
            admin_then(state, auth, "reconcile", move |state| {
                crate::reconciliation::fetch_and_reconcile(state, body)
            })
        })
        .boxed();
    let reconcile_upload = warp::path!("v1" / "reconciliations" / "upload")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth)
        .and(query)
        .and(
            warp::body::content_length_limit(crate::reconciliation::MAX_BILL_BYTES)
                .and(warp::body::bytes()),
        )
        .then(|state: Arc<AppState>, auth: Option<String>, query, body| {
            admin_then(state, auth, "reconcile_upload", move |state| {
                crate::reconciliation::upload_and_reconcile(state, query, body)
            })
        })
        .boxed();
    let get_reconciliation = warp::path!("v1" / "reconciliations" / String)
        .and(warp::get())
        .and(with_state.clone())
        .and(auth)
        .then(
            |reconciliation_id: String, state: Arc<AppState>, auth: Option<String>| {
                admin_then(state, auth, "get_reconciliation", move |state| {
                    crate::reconciliation::get(state, reconciliation_id)
                })
            },
        )
        .boxed();
    let list_projections = warp::path!("v1" / "admin" / "projections")
        .and(warp::get())
        .and(with_state.clone())
        .and(auth)
        .then(|state: Arc<AppState>, auth: Option<String>| {
            admin_then(state, auth, "list_projections", crate::projections::list)
        })
        .boxed();
    let rebuild_projection = warp::path!("v1" / "admin" / "projections" / String / "rebuild")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth)
        .then(|name: String, state: Arc<AppState>, auth: Option<String>| {
            admin_then(state, auth, "rebuild_projection", move |state| {
                crate::projections::rebuild(state, name)
            })
        })
        .boxed();
    let create_app = warp::path!("v1" / "apps")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth)
        .and(body)
        .then(|state: Arc<AppState>, auth: Option<String>, body| {
            admin_then(state, auth, "create_app", move |state| {
                handlers::create_app(state, body)
            })
        })
        .boxed();
    // A body that may be absent (`curl -XPOST` sends no Content-Length): empty then.
    let optional_body = warp::body::content_length_limit(MAX_BODY_BYTES)
        .and(warp::body::bytes())
        .or(warp::header::optional::<String>("content-length").and_then(
            |length: Option<String>| async move {
                match length.as_deref() {
                    None | Some("0") => Ok(bytes::Bytes::new()),
                    Some(_) => Err(warp::reject::not_found()),
                }
            },
        ))
        .unify();
    let app_action = warp::path!("v1" / "apps" / String / String)
        .and(warp::post())
        .and(with_state.clone())
        .and(auth)
        .and(optional_body)
        .then(
            |app_id: String, action: String, state: Arc<AppState>, auth: Option<String>, body| {
                admin_then(state, auth, "app_action", move |state| {
                    handlers::app_action(state, app_id, action, body)
                })
            },
        )
        .boxed();
    let channel_account_action =
        warp::path!("v1" / "merchants" / String / "channel-accounts" / String / String)
            .and(warp::post())
            .and(with_state.clone())
            .and(auth)
            .and(optional_body)
            .then(
                |merchant_id: String,
                 channel_account_id: String,
                 action: String,
                 state: Arc<AppState>,
                 auth: Option<String>,
                 _body: bytes::Bytes| {
                    admin_then(state, auth, "channel_account_action", move |state| {
                        handlers::channel_account_action(
                            state,
                            merchant_id,
                            channel_account_id,
                            action,
                        )
                    })
                },
            )
            .boxed();
    let create_payment = warp::path!("v1" / "payments")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth)
        .and(warp::header::optional::<String>("idempotency-key"))
        .and(body)
        .then(
            |state: Arc<AppState>,
             auth: Option<String>,
             key: Option<String>,
             body: bytes::Bytes| {
                app_then(
                    state,
                    auth,
                    "create_payment",
                    move |state, app| async move {
                        let handler =
                            handlers::create_payment(state.clone(), app.clone(), body.clone());
                        crate::idempotency::run(&state, &app, key, &body, handler).await
                    },
                )
            },
        )
        .boxed();
    let find_payments = warp::path!("v1" / "payments")
        .and(warp::get())
        .and(with_state.clone())
        .and(auth)
        .and(query)
        .then(|state: Arc<AppState>, auth: Option<String>, query| {
            app_then(state, auth, "find_payments", move |state, app| {
                handlers::find_payments(state, app, query)
            })
        })
        .boxed();
    let get_payment = warp::path!("v1" / "payments" / String)
        .and(warp::get())
        .and(with_state.clone())
        .and(auth)
        .then(
            |trade_no: String, state: Arc<AppState>, auth: Option<String>| {
                app_then(state, auth, "get_payment", move |state, app| {
                    handlers::get_payment(state, app, trade_no)
                })
            },
        )
        .boxed();
    let close_payment = warp::path!("v1" / "payments" / String / "close")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth)
        .then(
            |trade_no: String, state: Arc<AppState>, auth: Option<String>| {
                app_then(state, auth, "close_payment", move |state, app| {
                    handlers::close_payment(state, app, trade_no)
                })
            },
        )
        .boxed();
    let create_refund = warp::path!("v1" / "payments" / String / "refunds")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth)
        .and(body)
        .then(
            |trade_no: String, state: Arc<AppState>, auth: Option<String>, body| {
                app_then(state, auth, "create_refund", move |state, app| {
                    handlers::create_refund(state, app, trade_no, body)
                })
            },
        )
        .boxed();
    let list_events = warp::path!("v1" / "events")
        .and(warp::get())
        .and(with_state.clone())
        .and(auth)
        .and(query)
        .then(|state: Arc<AppState>, auth: Option<String>, query| {
            app_then(state, auth, "list_events", move |state, app| {
                handlers::list_events(state, app, query)
            })
        })
        .boxed();
    let list_notifications = warp::path!("v1" / "notifications")
        .and(warp::get())
        .and(with_state.clone())
        .and(auth)
        .and(query)
        .then(|state: Arc<AppState>, auth: Option<String>, query| {
            app_then(state, auth, "list_notifications", move |state, app| {
                handlers::list_notifications(state, app, query)
            })
        })
        .boxed();
    let redeliver = warp::path!("v1" / "notifications" / String / "redeliver")
        .and(warp::post())
        .and(with_state.clone())
        .and(auth)
        .then(
            |notification_id: String, state: Arc<AppState>, auth: Option<String>| {
                app_then(state, auth, "redeliver_notification", move |state, app| {
                    handlers::redeliver_notification(state, app, notification_id)
                })
            },
        )
        .boxed();
    let callback = warp::path!("callbacks" / String / String)
        .and(warp::post())
        .and(with_state.clone())
        .and(
            warp::ext::optional::<crate::listener::PeerAddr>()
                .map(|peer: Option<crate::listener::PeerAddr>| peer.map(|peer| peer.0)),
        )
        .and(warp::header::headers_cloned())
        .and(body)
        .then(
            |channel: String,
             account: String,
             state: Arc<AppState>,
             peer: Option<std::net::SocketAddr>,
             headers: warp::http::HeaderMap,
             body: bytes::Bytes| async move {
                let started = Instant::now();
                let request = CallbackRequest {
                    headers: headers
                        .iter()
                        .filter_map(|(name, value)| {
                            Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                        })
                        .collect(),
                    body: body.to_vec(),
                };
                let (status, content_type, text) = handlers::channel_callback(
                    state.clone(),
                    channel,
                    account,
                    peer.map(|peer| peer.ip()),
                    request,
                )
                .await;
                state
                    .metrics
                    .observe("channel_callback", status, started.elapsed().as_secs_f64());
                Response::builder()
                    .status(status)
                    .header("content-type", content_type)
                    .body(Body::from(text))
                    .expect("valid response")
            },
        )
        .boxed();
    let checkout = warp::path!("checkout" / String)
        .and(warp::get())
        .and(with_state.clone())
        .map(|trade_no: String, state: Arc<AppState>| {
            let started = Instant::now();
            let (status, html) = crate::checkout::checkout_page(&state, &trade_no);
            state
                .metrics
                .observe("checkout", status.as_u16(), started.elapsed().as_secs_f64());
            Response::builder()
                .status(status)
                .header("content-type", "text/html; charset=utf-8")
                .body(Body::from(html))
                .expect("valid response")
        })
        .boxed();
    let sandbox_pay = warp::path!("sandbox" / "pay" / String)
        .and(warp::post())
        .and(with_state.clone())
        .and(warp::header::optional::<String>("content-type"))
        .and(body)
        .then(|trade_no: String, state: Arc<AppState>, content_type: Option<String>, body| async move {
            let started = Instant::now();
            let answer = crate::checkout::sandbox_pay(state.clone(), trade_no, content_type, body).await;
            finish(&state, "sandbox_pay", started, answer)
        })
        .boxed();
    let healthz = warp::path!("healthz")
        .and(warp::get())
        .and(with_state.clone())
        .map(|state: Arc<AppState>| {
            let (status, body) = crate::health::report(&state);
            json_response(status, &body)
        })
        .boxed();
    let metrics = warp::path!("metrics")
        .and(warp::get())
        .and(with_state.clone())
        .map(|state: Arc<AppState>| {
            let (counts, n_anomalies) = {
                let model = state.model_lock();
                let mut counts: HashMap<&'static str, u64> = HashMap::new();
                let mut n_anomalies: HashMap<&'static str, u64> = HashMap::new();
                for payment in model.payments.values() {
                    *counts
                        .entry(payment.status.as_str())
                        .or_default() += 1;
                    for anomaly in &payment.anomalies {
                        *n_anomalies.entry(anomaly.kind.as_str()).or_default() += 1;
                    }
                }
                (counts, n_anomalies)
            };
            let by_status: Vec<(&str, u64)> = ["pending", "succeeded", "failed", "closed"]
                .iter()
                .map(|status| (*status, counts.get(status).copied().unwrap_or(0)))
                .collect();
            let head = tokio::task::block_in_place(|| state.store.head_position()).unwrap_or(0);
            let mut text = state.metrics.render(&by_status);
            text.push_str("# HELP paycenter_projection_lag_events Events in the log not yet in the projection.\n# TYPE paycenter_projection_lag_events gauge\n");
            let projections = crate::health::projections(&state);
            for projection in &projections {
                text.push_str(&format!(
                    "paycenter_projection_lag_events{{projection=\"{}\"}} {}\n",
                    projection.name,
                    head.saturating_sub(projection.position)
                ));
            }
            text.push_str("# HELP paycenter_projection_running 1 while the projection applies the log, 0 once it stopped at an event.\n# TYPE paycenter_projection_running gauge\n");
            for projection in &projections {
                text.push_str(&format!(
                    "paycenter_projection_running{{projection=\"{}\"}} {}\n",
                    projection.name,
                    u8::from(projection.stopped.is_none())
                ));
            }
            text.push_str(&format!(
                "# HELP paycenter_store_accepting_appends 1 while the event store records appends.\n# TYPE paycenter_store_accepting_appends gauge\npaycenter_store_accepting_appends {}\n",
                u8::from(state.store.health().accepting_appends)
            ));
            text.push_str("# HELP paycenter_payment_anomalies Verified channel reports that contradicted their attempt, by kind.\n# TYPE paycenter_payment_anomalies gauge\n");
            for kind in ["amount_mismatch", "currency_mismatch", "account_mismatch"] {
                text.push_str(&format!(
                    "paycenter_payment_anomalies{{kind=\"{kind}\"}} {}\n",
                    n_anomalies.get(kind).copied().unwrap_or(0)
                ));
            }
            Response::builder()
                .header("content-type", "text/plain; version=0.0.4")
                .body(Body::from(text))
                .expect("valid response")
        })
        .boxed();
    let openapi = warp::path!("openapi.json")
        .and(warp::get())
        .map(|| json_response(StatusCode::OK, crate::openapi::served()))
        .boxed();

    // Boxed routes in a fold: warp's nested `or` types otherwise make rustc crawl.
    let all: Vec<BoxedFilter<(Response<Body>,)>> = vec![
        create_merchant,
        create_channel_account,
        rotate_channel_account,
        merchant_balances,
        list_projections,
        rebuild_projection,
        reconcile_upload,
        reconcile,
        get_reconciliation,
        create_app,
        app_action,
        channel_account_action,
        create_payment,
        find_payments,
        get_payment,
        close_payment,
        create_refund,
        list_events,
        list_notifications,
        redeliver,
        callback,
        checkout,
        sandbox_pay,
        healthz,
        metrics,
        openapi,
    ];
    let first = all[0].clone();
    all.into_iter()
        .skip(1)
        .fold(first, |routes, route| routes.or(route).unify().boxed())
        .recover(recover)
        .unify()
}

/// warp's own refusals in paycenter's error shape.
async fn recover(rejection: Rejection) -> Result<Response<Body>, Infallible> {
    let error = if rejection.is_not_found() {
        ApiError::not_found(ErrorCode::RouteNotFound, "no such route")
    } else if rejection.find::<warp::reject::PayloadTooLarge>().is_some() {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            ErrorCode::PayloadTooLarge,
            format!("request bodies are limited to {MAX_BODY_BYTES} bytes"),
        )
    } else if rejection.find::<warp::reject::LengthRequired>().is_some() {
        ApiError::new(
            StatusCode::LENGTH_REQUIRED,
            ErrorCode::LengthRequired,
            "send a Content-Length header",
        )
    } else if rejection.find::<warp::reject::MethodNotAllowed>().is_some() {
        ApiError::new(
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "this route does not take that method",
        )
    } else if rejection.find::<warp::reject::InvalidQuery>().is_some() {
        ApiError::invalid("the query string is malformed")
    } else if rejection.find::<warp::reject::InvalidHeader>().is_some() {
        ApiError::invalid("a header is malformed")
    } else {
        ApiError::invalid(format!("request refused: {rejection:?}"))
    };
    Ok(json_response(error.status, &error.body()))
}

/// Who may call a route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller {
    /// `Authorization: Bearer $PAYCENTER_ADMIN_TOKEN`.
    Admin,
    /// `Authorization: Bearer <api_key>` of an app.
    App,
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

/// One route: the warp filter of its `operation_id` in [`routes`] serves it, and
/// [`crate::openapi::document`] documents it. A test keeps the two in step.
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// Lowercase HTTP method.
    pub method: &'static str,
    /// The path, with `{name}` for each parameter.
    pub path: &'static str,
    /// Also the `route` label of its metrics.
    pub operation_id: &'static str,
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

const APP_ACTIONS: &[&str] = &["rotate-key", "rotate-webhook-secret", "disable", "enable"];
const ACCOUNT_ACTIONS: &[&str] = &["disable", "enable"];
const CHANNELS: &[&str] = &["sandbox", "alipay", "wechatpay", "stripe"];

/// Every route paycenter answers.
pub const ROUTES: &[Route] = &[
    Route {
        method: "post",
        path: "/v1/merchants",
        operation_id: "create_merchant",
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
        operation_id: "create_channel_account",
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
        operation_id: "rotate_channel_account",
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
        operation_id: "merchant_balances",
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
        operation_id: "reconcile",
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
        operation_id: "reconcile_upload",
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
        operation_id: "get_reconciliation",
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
        operation_id: "list_projections",
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
        operation_id: "rebuild_projection",
        summary: "Rebuild a projection online from position 1 and swap it in",
        caller: Caller::Admin,
        request: RequestBody::None,
        query: &[],
        path_choices: &[("name", &["read_model"])],
        success: Success::Json(202, "ProjectionAnswer"),
        refusals: &[409],
    },
    Route {
        method: "post",
        path: "/v1/apps",
        operation_id: "create_app",
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
        operation_id: "app_action",
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
        operation_id: "channel_account_action",
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
        operation_id: "create_payment",
        summary: "Start a payment attempt; answers the initiation (what the user must be shown), never the final result. Header Idempotency-Key (optional) replays the first answer",
        caller: Caller::App,
        request: RequestBody::Json("CreatePaymentRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(201, "PaymentCreatedAnswer"),
        refusals: &[409, 422, 502],
    },
    Route {
        method: "get",
        path: "/v1/payments",
        operation_id: "find_payments",
        summary: "Find a payment by merchant_id + order_no or by channel_trade_no: the latest attempt, with every attempt under attempts",
        caller: Caller::App,
        request: RequestBody::None,
        query: &[
            query("merchant_id", "With order_no: the order's merchant"),
            query("order_no", "With merchant_id: the app's order number"),
            query("channel_trade_no", "The channel's trade number"),
        ],
        path_choices: &[],
        success: Success::Json(200, "PaymentAnswer"),
        refusals: &[],
    },
    Route {
        method: "get",
        path: "/v1/payments/{trade_no}",
        operation_id: "get_payment",
        summary: "A payment by trade_no",
        caller: Caller::App,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(200, "PaymentAnswer"),
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/v1/payments/{trade_no}/close",
        operation_id: "close_payment",
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
        path: "/v1/payments/{trade_no}/refunds",
        operation_id: "create_refund",
        summary: "Refund part or all of a paid payment (the refunds never exceed what was paid)",
        caller: Caller::App,
        request: RequestBody::Json("CreateRefundRequest"),
        query: &[],
        path_choices: &[],
        success: Success::Json(201, "RefundAnswer"),
        refusals: &[409, 422],
    },
    Route {
        method: "get",
        path: "/v1/events",
        operation_id: "list_events",
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
        operation_id: "list_notifications",
        summary: "The app's webhook notifications, each with its last error",
        caller: Caller::App,
        request: RequestBody::None,
        query: &[QueryParam {
            name: "status",
            required: false,
            one_of: &["pending", "delivered", "failed"],
            integer_range: None,
            pattern: None,
            description: "Only notifications in this state",
        }],
        path_choices: &[],
        success: Success::Json(200, "NotificationsAnswer"),
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/v1/notifications/{notification_id}/redeliver",
        operation_id: "redeliver_notification",
        summary: "Deliver a settled webhook again",
        caller: Caller::App,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Json(202, "RedeliverAnswer"),
        refusals: &[409],
    },
    Route {
        method: "post",
        path: "/callbacks/{channel}/{channel_account_id}",
        operation_id: "channel_callback",
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
        operation_id: "checkout",
        summary: "paycenter's checkout page",
        caller: Caller::Public,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::Html,
        refusals: &[],
    },
    Route {
        method: "post",
        path: "/sandbox/pay/{trade_no}",
        operation_id: "sandbox_pay",
        summary: "Play the user paying in the sandbox; the outcome arrives by the sandbox's signed callback",
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
        operation_id: "healthz",
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
        operation_id: "metrics",
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
        operation_id: "openapi",
        summary: "This document",
        caller: Caller::Public,
        request: RequestBody::None,
        query: &[],
        path_choices: &[],
        success: Success::OpenApi,
        refusals: &[],
    },
];
