//! `/openapi.json`: the route table as an OpenAPI 3 document. A test keeps it complete.

use serde_json::{json, Map, Value};

use crate::routes::ROUTES;

fn summary(method: &str, path: &str) -> &'static str {
    match (method, path) {
        ("post", "/v1/merchants") => "Onboard a merchant (admin)",
        ("post", "/v1/merchants/{merchant_id}/channel-accounts") => {
            "Activate a channel account for a merchant (admin)"
        }
        ("put", "/v1/merchants/{merchant_id}/channel-accounts/{channel_account_id}") => {
            "Re-activate a channel account with new parameters (key rotation) (admin)"
        }
        ("get", "/v1/merchants/{merchant_id}/balances") => {
            "A merchant's double-entry balances (admin)"
        }
        ("post", "/v1/reconciliations") => "Reconcile a channel account's day against the bill fetched from the channel (admin)",
        ("post", "/v1/reconciliations/upload") => "Reconcile against an uploaded bill: CSV trade_no,channel_trade_no,amount,currency (admin)",
        ("get", "/v1/reconciliations/{reconciliation_id}") => "A reconciliation's result (admin)",
        ("get", "/v1/admin/projections") => "Projections with their position, lag, digest and rebuild status (admin)",
        ("post", "/v1/admin/projections/{name}/rebuild") => "Rebuild a projection online from position 1 and swap it in (admin)",
        ("post", "/v1/apps") => {
            "Register an app; answers its api_key and webhook_secret once (admin)"
        }
        ("post", "/v1/apps/{app_id}/{action}") => {
            "action = rotate-key | rotate-webhook-secret ({grace_seconds?}, default 86400; the new value is answered once) | disable | enable (admin)"
        }
        ("post", "/v1/merchants/{merchant_id}/channel-accounts/{channel_account_id}/{action}") => {
            "action = disable | enable: a disabled account takes no new payments (admin)"
        }
        ("post", "/v1/payments") => "Start a payment attempt; answers the initiation action",
        ("get", "/v1/payments") => {
            "Find a payment by merchant_id + order_no (all attempts) or by channel_trade_no"
        }
        ("get", "/v1/payments/{trade_no}") => "Get a payment by trade_no",
        ("post", "/v1/payments/{trade_no}/close") => "Close a pending payment",
        ("post", "/v1/payments/{trade_no}/refunds") => "Refund part or all of a paid payment",
        ("get", "/v1/events") => "The app's own events, in order, from a cursor",
        ("get", "/v1/notifications") => "The app's webhook notifications, by status",
        ("post", "/v1/notifications/{notification_id}/redeliver") => {
            "Deliver a settled webhook again"
        }
        ("post", "/callbacks/{channel}/{channel_account_id}") => {
            "A channel's asynchronous notification"
        }
        ("get", "/checkout/{trade_no}") => "paycenter's checkout page",
        ("post", "/sandbox/pay/{trade_no}") => "Play the user paying in the sandbox",
        ("get", "/healthz") => "Liveness",
        ("get", "/metrics") => "Prometheus metrics",
        ("get", "/openapi.json") => "This document",
        _ => "",
    }
}

/// The document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for (method, path) in ROUTES {
        let parameters: Vec<Value> = path
            .split('/')
            .filter_map(|segment| segment.strip_prefix('{').and_then(|rest| rest.strip_suffix('}')))
            .map(|name| json!({ "name": name, "in": "path", "required": true, "schema": { "type": "string" } }))
            .collect();
        let operation = json!({
            "summary": summary(method, path),
            "parameters": parameters,
            "responses": {
                "default": { "description": "JSON answer; errors are {\"error\": {\"code\", \"message\"}}" }
            },
        });
        let entry = paths.entry(path.to_string()).or_insert_with(|| json!({}));
        entry[*method] = operation;
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "paycenter", "version": env!("CARGO_PKG_VERSION") },
        "components": { "securitySchemes": { "bearer": { "type": "http", "scheme": "bearer" } } },
        "paths": paths,
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn every_route_is_documented_with_a_summary() {
        let document = super::document();
        for (method, path) in crate::routes::ROUTES {
            let operation = &document["paths"][path][method];
            assert!(operation.is_object(), "{method} {path} missing");
            assert!(
                !operation["summary"].as_str().unwrap().is_empty(),
                "{method} {path} has no summary"
            );
        }
    }

    /// Reads the route definitions themselves, so a route added without its `ROUTES` entry
    /// (and so without documentation) fails here.
    #[test]
    fn the_route_table_lists_every_defined_route() {
        let source = include_str!("routes.rs");
        let mut defined: Vec<(String, String)> = Vec::new();
        for (at, _) in source.match_indices("warp::path!(") {
            let rest = &source[at + "warp::path!(".len()..];
            let segments = &rest[..rest.find(')').unwrap()];
            let path: String = segments
                .split('/')
                .map(|segment| match segment.trim() {
                    "String" => "{}".to_owned(),
                    literal => literal.trim_matches('"').to_owned(),
                })
                .map(|segment| format!("/{segment}"))
                .collect();
            let method = ["get", "post", "put"]
                .into_iter()
                .min_by_key(|method| {
                    rest.find(&format!("warp::{method}()"))
                        .unwrap_or(usize::MAX)
                })
                .unwrap();
            defined.push((method.to_owned(), path));
        }
        let mut listed: Vec<(String, String)> = crate::routes::ROUTES
            .iter()
            .map(|(method, path)| {
                let generic: String = path
                    .split('/')
                    .skip(1)
                    .map(|segment| {
                        if segment.starts_with('{') {
                            "/{}".to_owned()
                        } else {
                            format!("/{segment}")
                        }
                    })
                    .collect();
                (method.to_string(), generic)
            })
            .collect();
        defined.sort();
        listed.sort();
        assert_eq!(defined, listed);
    }
}
