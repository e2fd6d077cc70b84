//! `/v1/alert-channels` and `/v1/alerts`: where alerts go, and what was raised.

use std::collections::HashMap;
use std::sync::Arc;

use hyper::http::StatusCode;
use paycenter_domain::alerts::AlertChannelKind;

use crate::error::{ErrorCode, Refusal};
use crate::http::dto::{check_fields, parse_object, MAX_URL_CHARS};
use crate::http::Answer;
use crate::service::alerts::{self, NewAlertChannel};
use crate::state::AppState;
use crate::wire;

/// `POST /v1/alert-channels`
pub async fn create_alert_channel(state: Arc<AppState>, body: bytes::Bytes) -> Answer {
    let object = parse_object(&body)?;
    check_fields(
        &object,
        "",
        &[
            ("kind", 16),
            ("url", MAX_URL_CHARS),
            ("secret", 256),
            ("at_mobiles", 20),
        ],
    )?;
    let request: wire::CreateAlertChannelRequest = wire::read(&object)?;
    let kind = AlertChannelKind::parse(&request.kind)
        .ok_or_else(|| Refusal::invalid("kind must be dingtalk or webhook").with_field("kind"))?;
    let channel = alerts::create_channel(
        &state,
        NewAlertChannel {
            kind,
            url: request.url,
            secret: request.secret,
            at_mobiles: request.at_mobiles.unwrap_or_default(),
        },
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        wire::to_value(&wire::alert_channel_answer(&channel)),
    ))
}

/// `GET /v1/alert-channels`: every destination (there are at most a few dozen).
pub async fn list_alert_channels(state: Arc<AppState>) -> Answer {
    let data: Vec<wire::AlertChannelAnswer> = state
        .model_for_request()?
        .alert_channels()
        .into_iter()
        .map(wire::alert_channel_answer)
        .collect();
    Ok((
        StatusCode::OK,
        wire::to_value(&wire::AlertChannelsList {
            data,
            has_more: false,
        }),
    ))
}

/// `DELETE /v1/alert-channels/{alert_channel_id}`
pub async fn delete_alert_channel(state: Arc<AppState>, alert_channel_id: String) -> Answer {
    alerts::delete_channel(&state, &alert_channel_id).await?;
    Ok((
        StatusCode::OK,
        wire::to_value(&wire::AlertChannelDeletedAnswer {
            alert_channel_id,
            deleted: true,
        }),
    ))
}

/// `POST /v1/alert-channels/{alert_channel_id}/test`
pub async fn test_alert_channel(state: Arc<AppState>, alert_channel_id: String) -> Answer {
    let outcome = alerts::test_channel(&state, &alert_channel_id).await?;
    Ok((
        StatusCode::OK,
        wire::to_value(&wire::AlertChannelTestAnswer {
            alert_channel_id,
            delivered: outcome.is_ok(),
            error: outcome.err(),
        }),
    ))
}

/// `GET /v1/alerts?status=open|resolved&limit=&starting_after=`: newest first.
pub async fn list_alerts(state: Arc<AppState>, query: HashMap<String, String>) -> Answer {
    let status = match query.get("status").map(String::as_str) {
        None | Some("") => None,
        Some(status @ ("open" | "resolved")) => Some(status.to_owned()),
        Some(_) => {
            return Err(Refusal::invalid("status must be open or resolved").with_field("status"))
        }
    };
    let limit = crate::http::lists::limit(&query)?;
    let model = state.model_for_request()?;
    let mut below = match query.get("starting_after") {
        None => None,
        Some(alert_id) => Some(model.alert_list_key(alert_id)?.ok_or_else(|| {
            Refusal::new(
                ErrorCode::InvalidRequest,
                format!("starting_after names no alert ({alert_id})"),
            )
            .with_field("starting_after")
        })?),
    };
    let mut data = Vec::new();
    // Bounded: at most this many steps of the index per request.
    for _ in 0..64 {
        let step = model.alerts_step(below.as_deref())?;
        for (_, alert_id) in &step.entries {
            let Some(alert) = model.alert(alert_id)? else {
                continue;
            };
            if status
                .as_deref()
                .is_some_and(|wanted| wanted != alert.status())
            {
                continue;
            }
            data.push(alert);
            if data.len() > limit {
                break;
            }
        }
        if data.len() > limit {
            break;
        }
        match step.resume_below {
            Some(next) => below = Some(next),
            None => break,
        }
    }
    let has_more = data.len() > limit;
    data.truncate(limit);
    let data: Vec<wire::AlertAnswer> = data.iter().map(wire::alert_answer).collect();
    Ok((
        StatusCode::OK,
        wire::to_value(&wire::AlertsList { data, has_more }),
    ))
}
