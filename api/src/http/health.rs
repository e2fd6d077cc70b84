//! `GET /healthz`: `200 {"status":"ok"}` only when the store accepts appends and every
//! projection runs; otherwise `503 {"status":"degraded"}`. Each component says its state.

use hyper::http::StatusCode;
use serde_json::{json, Value};

use crate::state::AppState;

pub use crate::projections::{projections, ProjectionHealth};

/// The answer of `/healthz`.
pub fn report(state: &AppState) -> (StatusCode, Value) {
    let store = state.store.health();
    let head = tokio::task::block_in_place(|| state.store.head_position());
    let mut healthy = store.accepting_appends && head.is_ok();
    let head_position = head.as_ref().copied().unwrap_or(0);
    let mut components = serde_json::Map::new();
    components.insert(
        "store".to_owned(),
        json!({
            "status": if store.accepting_appends { "running" } else { "stopped" },
            "head_position": head_position,
            "last_error": store.last_error.or_else(|| head.err().map(|error| error.to_string())),
        }),
    );
    for projection in projections(state) {
        healthy &= projection.stopped.is_none() && projection.catching_up_to.is_none();
        let lag_events = head_position.saturating_sub(projection.position);
        let status = match (&projection.stopped, projection.catching_up_to) {
            (Some(_), _) => "stopped",
            (None, Some(_)) => "catching_up",
            (None, None) => "running",
        };
        let mut entry = json!({
            "status": status,
            "position": projection.position,
            "lag_events": lag_events,
        });
        if let Some(stopped) = projection.stopped {
            entry["stopped_at"] = json!({
                "position": stopped.position,
                "event_type": stopped.event_type,
                "reason": stopped.reason,
            });
        }
        if let Some(error) = &projection.last_read_error {
            entry["last_error"] = json!(error);
        }
        components.insert(projection.name.to_owned(), entry);
    }
    let audit = &state.chain_audit;
    let broken = audit.broken();
    healthy &= broken.is_none();
    let mut chain = json!({
        "status": match (&broken, audit.complete()) {
            (Some(_), _) => "broken",
            (None, true) => "verified",
            (None, false) => "verifying",
        },
        "verified_through": audit.verified_through.load(std::sync::atomic::Ordering::Relaxed),
        "checkpoint": audit.target.load(std::sync::atomic::Ordering::Relaxed),
    });
    if let Some((position, reason)) = broken {
        chain["broken_at"] = json!({ "position": position, "reason": reason });
    }
    components.insert("chain".to_owned(), chain);
    let status = if healthy { "ok" } else { "degraded" };
    let code = if healthy {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        code,
        json!({ "status": status, "components": components, "read_model_position": state.model_lock().position() }),
    )
}
