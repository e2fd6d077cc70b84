//! `/openapi.json`: the OpenAPI 3.1 document, made from the route table
//! ([`crate::http::routes::ROUTES`]) and the schemas of the wire types ([`crate::wire`], derived by
//! `utoipa` from the Rust types themselves). Every operation documents every status it answers,
//! each with its schema; request bodies refuse unknown fields (`additionalProperties: false`).

use serde_json::{json, Map, Value};
use utoipa::OpenApi;

use crate::error::ErrorCode;
use crate::http::routes::{Caller, RequestBody, Route, Success, ROUTES};
use crate::wire;

/// Every wire type, so that `utoipa` derives their schemas into the document's components.
#[derive(OpenApi)]
#[openapi(components(schemas(
    wire::ErrorBody,
    wire::ErrorDetail,
    wire::CreateMerchantRequest,
    wire::MerchantAnswer,
    wire::ChannelAccountRequest,
    wire::RotateChannelAccountRequest,
    wire::ChannelAccountAnswer,
    wire::ChannelAccountStatusAnswer,
    wire::BalanceLine,
    wire::BalancesAnswer,
    wire::CreateAppRequest,
    wire::AppCreatedAnswer,
    wire::RotateRequest,
    wire::AppActionAnswer,
    wire::SplitRequest,
    wire::CreatePaymentRequest,
    wire::PaymentActionAnswer,
    wire::PaymentCreatedAnswer,
    wire::RefundAnswer,
    wire::SplitAnswer,
    wire::ChannelCloseAnswer,
    wire::AnomalyAnswer,
    wire::PaymentAnswer,
    wire::CreateRefundRequest,
    wire::FeedItem,
    wire::EventsAnswer,
    wire::NotificationAnswer,
    wire::NotificationsAnswer,
    wire::RedeliverAnswer,
    wire::ReconcileRequest,
    wire::DiscrepancyAnswer,
    wire::ReconciliationAnswer,
    wire::SnapshotAnswer,
    wire::RebuildAnswer,
    wire::ProjectionAnswer,
    wire::ProjectionsAnswer,
    wire::SandboxPayRequest,
    wire::SandboxPayAnswer,
    wire::CheckoutStatusAnswer,
    wire::CashierCreatedAnswer,
    wire::CreatePaymentAnswer,
    wire::HealthAnswer,
    wire::MerchantsList,
    wire::ChannelAccountsList,
    wire::AppAnswer,
    wire::AppsList,
    wire::PaymentsList,
    wire::FindPaymentsAnswer,
    wire::RefundsList,
    wire::ReconciliationsList,
    wire::TallyAnswer,
    wire::StatsBucketAnswer,
    wire::StatsAnswer,
    wire::CreateOperatorRequest,
    wire::OperatorAnswer,
    wire::OperatorCreatedAnswer,
    wire::OperatorsList,
    wire::CreateAlertChannelRequest,
    wire::AlertChannelAnswer,
    wire::AlertChannelsList,
    wire::AlertChannelDeletedAnswer,
    wire::AlertChannelTestAnswer,
    wire::AlertDeliveryAnswer,
    wire::AlertAnswer,
    wire::AlertsList,
    wire::RouteAnswer,
    wire::RouteSkipAnswer,
    wire::RoutingRuleBody,
    wire::RoutingBody,
    wire::ReceiverRequest,
    wire::ReceiverAnswer,
    wire::ReceiversList,
    wire::ShareAnswer,
    wire::CreatePayoutRequest,
    wire::PayoutReceiverBody,
    wire::PayoutAnswer,
    wire::PayoutReceiverAnswer,
    wire::PayoutConfirmationAnswer,
    wire::PayoutsList,
    wire::PayoutsReconciledAnswer,
    wire::PayoutDiscrepancyAnswer,
)))]
struct WireSchemas;

/// The schemas of [`WireSchemas`] as JSON, keyed by type name.
pub fn schemas() -> Map<String, Value> {
    let components = WireSchemas::openapi()
        .components
        .expect("the schemas are listed");
    let Value::Object(mut schemas) =
        serde_json::to_value(components.schemas).expect("schemas serialize")
    else {
        unreachable!("a map of schemas")
    };
    // The codes are one Rust enum; the document lists them so clients can branch on them.
    let codes: Vec<&str> = ErrorCode::ALL.iter().map(|code| code.as_str()).collect();
    schemas["ErrorDetail"]["properties"]["code"]["enum"] = json!(codes);
    schemas
}

/// Where a success answer's ids lead, for clients and for stateful testing: (operation, link
/// name, target operation, [(target parameter, where its value is in the answer)]).
type Link = (
    &'static str,
    &'static str,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const TRADE_NO: &[(&str, &str)] = &[("trade_no", "$response.body#/trade_no")];
const MERCHANT_ID: &[(&str, &str)] = &[("merchant_id", "$response.body#/merchant_id")];

const LINKS: &[Link] = &[
    (
        "create_merchant",
        "ActivateChannelAccount",
        "create_channel_account",
        MERCHANT_ID,
    ),
    (
        "create_merchant",
        "Balances",
        "merchant_balances",
        MERCHANT_ID,
    ),
    (
        "create_channel_account",
        "RotateKeys",
        "rotate_channel_account",
        &[
            ("merchant_id", "$response.body#/merchant_id"),
            ("channel_account_id", "$response.body#/channel_account_id"),
        ],
    ),
    (
        "create_app",
        "Act",
        "app_action",
        &[("app_id", "$response.body#/app_id")],
    ),
    ("create_payment", "Get", "get_payment", TRADE_NO),
    ("create_payment", "Close", "close_payment", TRADE_NO),
    ("create_payment", "Checkout", "checkout", TRADE_NO),
    ("create_payment", "PayInSandbox", "sandbox_pay", TRADE_NO),
    ("get_payment", "Refund", "create_refund", TRADE_NO),
    (
        "reconcile",
        "Get",
        "get_reconciliation",
        &[("reconciliation_id", "$response.body#/reconciliation_id")],
    ),
];

fn links_of(operation_id: &str) -> Value {
    let mut links = Map::new();
    for (_, name, target, parameters) in LINKS.iter().filter(|link| link.0 == operation_id) {
        let parameters: Map<String, Value> = parameters
            .iter()
            .map(|(parameter, expression)| (parameter.to_string(), json!(expression)))
            .collect();
        links.insert(
            name.to_string(),
            json!({ "operationId": target, "parameters": parameters }),
        );
    }
    Value::Object(links)
}

fn schema_ref(name: &str) -> Value {
    json!({ "$ref": format!("#/components/schemas/{name}") })
}

fn json_content(schema: Value) -> Value {
    json!({ "application/json": { "schema": schema } })
}

/// The refusals a route may answer: those of every route of its caller and its own.
fn refusal_statuses(route: &Route) -> Vec<u16> {
    let mut statuses = vec![400, 404, 408, 503];
    if route.request != RequestBody::None {
        statuses.push(413);
    }
    match route.caller {
        Caller::Admin => statuses.push(401),
        Caller::App | Caller::AppOrAdmin => statuses.extend([401, 403, 429]),
        Caller::Public => {}
    }
    statuses.extend(route.refusals);
    statuses.sort_unstable();
    statuses.dedup();
    statuses
}

fn reason(status: u16) -> &'static str {
    match status {
        400 => "The request is malformed: bad JSON, an unknown or over-long field, a bad value",
        401 => "No valid bearer token",
        403 => "The app is disabled, or the caller's address is not allowed",
        404 => "Not found (or not the caller's)",
        408 => "The request was not received in time",
        409 => "Conflicts with what is recorded (already paid, too soon, reused number, ...)",
        413 => "The body is too large",
        422 => "Well-formed but refused (unsupported method or currency, bad parameters, ...)",
        429 => "Over the app's request budget; see Retry-After",
        502 => "The channel could not be reached or refused to talk",
        503 => "The store or a read model this needs is stopped",
        _ => "Refused",
    }
}

fn operation(route: &Route) -> Value {
    let mut parameters: Vec<Value> = route
        .path
        .split('/')
        .filter_map(|segment| segment.strip_prefix('{')?.strip_suffix('}'))
        .map(|name| {
            let choices = route
                .path_choices
                .iter()
                .find(|(choice_name, _)| *choice_name == name)
                .map(|(_, values)| *values);
            let schema = match (choices, name) {
                (Some(values), _) => json!({ "type": "string", "enum": values }),
                (None, "trade_no") => json!({ "type": "string", "pattern": "^[A-Za-z0-9]{6,32}$" }),
                (None, _) => json!({ "type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$" }),
            };
            json!({ "name": name, "in": "path", "required": true, "schema": schema })
        })
        .collect();
    for query in route.query {
        let schema = match (query.integer_range, query.pattern) {
            (Some((minimum, maximum)), _) => {
                json!({ "type": "integer", "minimum": minimum, "maximum": maximum })
            }
            (None, Some(pattern)) => json!({ "type": "string", "pattern": pattern }),
            (None, None) if query.one_of.is_empty() => json!({ "type": "string" }),
            (None, None) => json!({ "type": "string", "enum": query.one_of }),
        };
        parameters.push(json!({
            "name": query.name, "in": "query", "required": query.required,
            "description": query.description, "schema": schema,
        }));
    }
    let mut operation = json!({
        "operationId": route.operation.id(),
        "summary": route.summary,
        "tags": [match route.caller { Caller::Admin => "admin", Caller::App | Caller::AppOrAdmin => "app", Caller::Public => "public" }],
        "parameters": parameters,
    });
    operation["security"] = match route.caller {
        Caller::Admin => json!([{ "admin_token": [] }]),
        Caller::App => json!([{ "api_key": [] }]),
        Caller::AppOrAdmin => json!([{ "api_key": [] }, { "admin_token": [] }]),
        Caller::Public => json!([]),
    };
    match route.request {
        RequestBody::None => {}
        RequestBody::Json(name) => {
            operation["requestBody"] =
                json!({ "required": true, "content": json_content(schema_ref(name)) });
        }
        RequestBody::OptionalJson(name) => {
            operation["requestBody"] =
                json!({ "required": false, "content": json_content(schema_ref(name)) });
        }
        RequestBody::Raw => {
            operation["requestBody"] = json!({
                "required": true,
                "content": { "application/octet-stream": { "schema": { "type": "string", "format": "binary" } } },
            });
        }
    }
    let mut responses = Map::new();
    let error = || json!({ "description": "", "content": json_content(schema_ref("ErrorBody")) });
    match route.success {
        Success::Json(status, name) => {
            let mut answer =
                json!({ "description": "Success", "content": json_content(schema_ref(name)) });
            let links = links_of(route.operation.id());
            if links.as_object().is_some_and(|links| !links.is_empty()) {
                answer["links"] = links;
            }
            responses.insert(status.to_string(), answer);
        }
        Success::Html => {
            // The page answers its refusals as pages too.
            for (status, description) in [
                (200, "The page"),
                (404, "No such payment, or the link's token is wrong (a page saying so, and nothing of the payment)"),
                (410, "The payment expired unpaid (a page saying so)"),
                (503, "The read model is stopped (a page saying so)"),
            ] {
                responses.insert(
                    status.to_string(),
                    json!({ "description": description, "content": { "text/html": { "schema": { "type": "string" } } } }),
                );
            }
            if route.operation == crate::http::routes::Operation::CashierPick {
                responses.insert(
                    "303".into(),
                    json!({ "description": "The attempt started: on to its page or its channel's", "headers": { "Location": { "schema": { "type": "string" } } } }),
                );
            }
        }
        Success::Asset => {
            responses.insert(
                "200".into(),
                json!({ "description": "The file", "content": {
                    "text/css": { "schema": { "type": "string" } },
                    "text/javascript": { "schema": { "type": "string" } },
                } }),
            );
        }
        Success::PrometheusText => {
            responses.insert(
                "200".into(),
                json!({ "description": "Prometheus text format", "content": { "text/plain": { "schema": { "type": "string" } } } }),
            );
        }
        Success::OpenApi => {
            responses.insert(
                "200".into(),
                json!({ "description": "This document", "content": json_content(json!({ "type": "object" })) }),
            );
        }
        Success::ChannelProtocol => {
            // Each channel's own answer: Alipay `success` as text, WeChat Pay 204 or a JSON
            // FAIL, the sandbox and Stripe JSON.
            let any = json!({
                "application/json": { "schema": {} },
                "text/plain": { "schema": { "type": "string" } },
            });
            for (status, description) in [
                (200, "Recorded (the channel's own acknowledgement)"),
                (204, "Recorded (WeChat Pay)"),
                (400, "Refused: bad signature, unknown account, malformed (in the channel's protocol)"),
                (403, "The sender's address is outside the account's allowlist"),
            ] {
                responses.insert(
                    status.to_string(),
                    json!({ "description": description, "content": any }),
                );
            }
        }
    }
    if route.operation.id() == "healthz" {
        responses.insert(
            "503".into(),
            json!({ "description": "Degraded: a component is stopped", "content": json_content(schema_ref("HealthAnswer")) }),
        );
    }
    if !matches!(route.success, Success::Html | Success::ChannelProtocol)
        && route.operation.id() != "healthz"
    {
        for status in refusal_statuses(route) {
            let mut answer = error();
            answer["description"] = json!(reason(status));
            if status == 429 {
                answer["headers"] = json!({ "Retry-After": { "schema": { "type": "integer" }, "description": "Seconds to wait" } });
            }
            responses.insert(status.to_string(), answer);
        }
    }
    operation["responses"] = Value::Object(responses);
    operation
}

/// The document, made once: it depends only on the code, and `/openapi.json` serves it.
pub fn served() -> &'static Value {
    static DOCUMENT: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    DOCUMENT.get_or_init(document)
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for route in ROUTES {
        let entry = paths
            .entry(route.path.to_string())
            .or_insert_with(|| json!({}));
        entry[route.method] = operation(route);
    }
    json!({
        "openapi": "3.1.0",
        "info": {
            "title": "paycenter",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "A unified payment center. Money is a decimal string in major units beside an ISO 4217 currency. Every refusal is {\"error\": {\"code\", \"message\"}}.",
        },
        "components": {
            "securitySchemes": {
                "admin_token": { "type": "http", "scheme": "bearer", "description": "PAYCENTER_ADMIN_TOKEN" },
                "api_key": { "type": "http", "scheme": "bearer", "description": "An app's api_key" },
            },
            "schemas": schemas(),
        },
        "paths": paths,
    })
}

/// `docs/api.md`: the document as a page for people (kept current by a test; regenerate with
/// `PAYCENTER_UPDATE_DOCS=1 cargo test -p paycenter-api --lib openapi`).
pub fn markdown() -> String {
    let document = document();
    let schemas = &document["components"]["schemas"];
    let mut page = String::from(
        "# paycenter HTTP API\n\n\
         Generated from `/openapi.json` (itself made from the route table in `api/src/http/routes.rs` and \
         the wire types in `api/src/wire.rs`); do not edit by hand.\n\n\
         Money is a decimal string in major units (`\"12.34\"`) beside an ISO 4217 `currency`. \
         Every refusal is `{\"error\": {\"code\", \"message\", \"field\"?, \"retry_after\"?}}`. \
         Admin routes take `Authorization: Bearer $PAYCENTER_ADMIN_TOKEN`, app routes an app's \
         `api_key`.\n",
    );
    let mut referenced: Vec<&str> = Vec::new();
    for route in ROUTES {
        page.push_str(&format!(
            "\n## `{} {}`\n\n{}.\n\n- caller: {}\n",
            route.method.to_uppercase(),
            route.path,
            route.summary,
            match route.caller {
                Caller::Admin => "admin",
                Caller::App => "app",
                Caller::AppOrAdmin => "app (its own) or admin (all)",
                Caller::Public => "anyone",
            }
        ));
        for query in route.query {
            page.push_str(&format!(
                "- query `{}`{}: {}\n",
                query.name,
                if query.required { " (required)" } else { "" },
                query.description
            ));
        }
        match route.request {
            RequestBody::None => {}
            RequestBody::Json(name) | RequestBody::OptionalJson(name) => {
                page.push_str(&format!("- body: [`{name}`](#{})\n", name.to_lowercase()));
                referenced.push(name);
            }
            RequestBody::Raw => page.push_str("- body: raw bytes\n"),
        }
        let answer = match route.success {
            Success::Json(status, name) => {
                referenced.push(name);
                format!("`{status}` [`{name}`](#{})", name.to_lowercase())
            }
            Success::Html => "`200` an HTML page".to_owned(),
            Success::Asset => "`200` the file".to_owned(),
            Success::PrometheusText => "`200` Prometheus text".to_owned(),
            Success::OpenApi => "`200` the OpenAPI document".to_owned(),
            Success::ChannelProtocol => "the channel's own acknowledgement".to_owned(),
        };
        page.push_str(&format!("- answer: {answer}\n"));
        if !matches!(route.success, Success::Html | Success::ChannelProtocol) {
            let refusals: Vec<String> = refusal_statuses(route)
                .iter()
                .map(|status| format!("`{status}`"))
                .collect();
            page.push_str(&format!("- refusals: {}\n", refusals.join(", ")));
        }
    }
    page.push_str("\n# Bodies\n");
    let mut names: Vec<&str> = referenced;
    names.extend([
        "SplitRequest",
        "PaymentActionAnswer",
        "PaymentAnswer",
        "RefundAnswer",
        "ErrorBody",
        "ErrorDetail",
    ]);
    names.sort_unstable();
    names.dedup();
    for name in names {
        let schema = &schemas[name];
        page.push_str(&format!("\n## {name}\n\n"));
        if let Some(description) = schema["description"].as_str() {
            page.push_str(&format!("{description}\n\n"));
        }
        page.push_str("| field | type | required | notes |\n|---|---|---|---|\n");
        let required: Vec<&str> = schema["required"]
            .as_array()
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        if let Some(properties) = schema["properties"].as_object() {
            for (field, property) in properties {
                let kind = match (
                    &property["type"],
                    &property["$ref"],
                    &property["items"]["$ref"],
                ) {
                    (_, Value::String(reference), _) | (_, _, Value::String(reference)) => {
                        reference.rsplit('/').next().unwrap_or("").to_owned()
                    }
                    (Value::String(kind), _, _) => kind.clone(),
                    (Value::Array(kinds), _, _) => kinds
                        .iter()
                        .filter_map(Value::as_str)
                        .collect::<Vec<_>>()
                        .join(" or "),
                    _ => "any".to_owned(),
                };
                let mut notes = property["description"]
                    .as_str()
                    .unwrap_or("")
                    .replace('\n', " ");
                if let Some(pattern) = property["pattern"].as_str() {
                    notes.push_str(&format!(" Pattern `{pattern}`."));
                }
                if name == "ErrorDetail" && field == "code" {
                    let codes: Vec<String> = ErrorCode::ALL
                        .iter()
                        .map(|code| format!("`{}`", code.as_str()))
                        .collect();
                    notes.push_str(&format!(" One of {}.", codes.join(", ")));
                }
                // A `|` inside a table cell (regex alternatives) must be escaped.
                page.push_str(&format!(
                    "| `{field}` | {kind} | {} | {} |\n",
                    if required.contains(&field.as_str()) {
                        "yes"
                    } else {
                        "no"
                    },
                    notes.trim().replace('|', "\\|")
                ));
            }
        }
    }
    page
}

#[cfg(test)]
mod tests {
    #[test]
    fn docs_api_md_is_the_document() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/api.md");
        let page = super::markdown();
        if std::env::var("PAYCENTER_UPDATE_DOCS").as_deref() == Ok("1") {
            std::fs::write(path, &page).unwrap();
        }
        let written = std::fs::read_to_string(path).unwrap_or_default();
        assert!(
            written == page,
            "docs/api.md is out of date: PAYCENTER_UPDATE_DOCS=1 cargo test -p paycenter-api --lib openapi"
        );
    }

    use super::*;

    #[test]
    fn every_route_is_documented_with_its_answers_and_every_schema_exists() {
        let document = document();
        let schemas = document["components"]["schemas"].as_object().unwrap();
        for route in ROUTES {
            let operation = &document["paths"][route.path][route.method];
            assert!(
                operation.is_object(),
                "{} {} missing",
                route.method,
                route.path
            );
            assert!(!route.summary.is_empty());
            let responses = operation["responses"].as_object().unwrap();
            assert!(responses.keys().any(|status| status.starts_with('2')));
            for (status, answer) in responses {
                if status.starts_with('3') {
                    // A redirect's answer is its Location.
                    assert!(answer["headers"]["Location"].is_object(), "{status}");
                    continue;
                }
                assert!(
                    answer["content"].is_object(),
                    "{} {} {status} has no schema",
                    route.method,
                    route.path
                );
            }
            let text = operation.to_string();
            for (at, _) in text.match_indices("#/components/schemas/") {
                let rest = &text[at + "#/components/schemas/".len()..];
                let name = &rest[..rest.find('"').unwrap()];
                assert!(schemas.contains_key(name), "{name} is not a schema");
            }
        }
    }

    #[test]
    fn links_name_real_operations_and_their_parameters() {
        for (from, _, to, parameters) in LINKS {
            let source = ROUTES.iter().find(|route| route.operation.id() == *from);
            let target = ROUTES.iter().find(|route| route.operation.id() == *to);
            let (Some(source), Some(target)) = (source, target) else {
                panic!("{from} -> {to}: no such operation");
            };
            assert!(matches!(source.success, Success::Json(..)), "{from}");
            for (parameter, _) in *parameters {
                assert!(
                    target.path.contains(&format!("{{{parameter}}}")),
                    "{to} has no path parameter {parameter}"
                );
            }
        }
    }

    #[test]
    fn request_bodies_refuse_unknown_fields() {
        let schemas = schemas();
        for route in ROUTES {
            let (RequestBody::Json(name) | RequestBody::OptionalJson(name)) = route.request else {
                continue;
            };
            assert_eq!(
                schemas[name]["additionalProperties"],
                json!(false),
                "{name}: {}",
                schemas[name]
            );
        }
        assert_eq!(
            schemas["SplitRequest"]["additionalProperties"],
            json!(false)
        );
    }
}
