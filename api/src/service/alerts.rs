//! Alerts: where they go (DingTalk custom robots, signed webhooks), raising and resolving them
//! by condition (one open alert per condition: no storms), and delivering every message to every
//! destination until it is delivered, across restarts (the deliveries due are a read model
//! ordered by deadline, rebuilt from the log).
//!
//! DingTalk's custom robot protocol: a JSON `markdown` message POSTed to the robot's URL; with
//! a secret, `timestamp` (ms) and `sign` = URL-encoded base64 of HMAC-SHA256(secret,
//! "{timestamp}\n{secret}") are added to the query; the answer's `errcode` must be 0 (310000: a
//! wrong signature). A webhook destination gets `{id, type, created_at, data}` signed as app
//! webhooks are (`Paycenter-Signature`).

use std::collections::HashSet;

use base64::Engine;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use paycenter_domain::alerts::{self, AlertChannelKind, Condition, Observation};
use paycenter_domain::events::{AlertChannelCreated, AlertChannelDeleted, Event};
use paycenter_domain::vocabulary::{AlertMessage, AlertRule};
use paycenter_gateway::http::HttpClient;
use paycenter_projections::model::{AlertChannelView, AlertView, DeliveryTask};
use serde_json::json;
use sha2::Sha256;

use crate::error::{ErrorCode, Refusal};
use crate::service::{random_hex, take_lease};
use crate::state::AppState;

/// The most alert destinations.
pub const MAX_ALERT_CHANNELS: usize = 32;
/// The most mobile numbers a DingTalk message @-mentions.
pub const MAX_AT_MOBILES: usize = 20;
/// Deliveries attempted per round.
const MAX_DELIVERIES_PER_ROUND: usize = 32;
/// How long one delivery's lease is held (every node runs the deliverer).
const DELIVERY_LEASE_MS: u64 = 30_000;

/// A destination asked for.
pub struct NewAlertChannel {
    /// DingTalk or webhook.
    pub kind: AlertChannelKind,
    /// Where messages go.
    pub url: String,
    /// DingTalk: the robot's signing secret (optional); webhook: the signing secret (required).
    pub secret: Option<String>,
    /// DingTalk: mobile numbers the message @-mentions.
    pub at_mobiles: Vec<String>,
}

/// The URL as shown: a DingTalk `access_token` and any user information redacted.
fn shown_url(url: &url::Url) -> String {
    let mut shown = url.clone();
    let _ = shown.set_username("");
    let _ = shown.set_password(None);
    let pairs: Vec<(String, String)> = url
        .query_pairs()
        .map(|(name, value)| {
            let value = if name == "access_token" || name.contains("token") || name.contains("key")
            {
                let kept: String = value.chars().take(4).collect();
                format!("{kept}…")
            } else {
                value.into_owned()
            };
            (name.into_owned(), value)
        })
        .collect();
    if pairs.is_empty() {
        shown.set_query(None);
    } else {
        shown.query_pairs_mut().clear().extend_pairs(pairs);
    }
    shown.to_string()
}

fn invalid_url(reason: impl std::fmt::Display) -> Refusal {
    Refusal::new(ErrorCode::InvalidAlertUrl, format!("url: {reason}")).with_field("url")
}

/// Adds an alert destination; its URL and secret are sealed and never answered again.
pub async fn create_channel(
    state: &AppState,
    new: NewAlertChannel,
) -> Result<AlertChannelView, Refusal> {
    let url =
        paycenter_gateway::egress::check_url(&new.url, state.config.egress).map_err(invalid_url)?;
    if new.kind == AlertChannelKind::Dingtalk
        && !url
            .query_pairs()
            .any(|(name, value)| name == "access_token" && !value.is_empty())
    {
        return Err(invalid_url(
            "a DingTalk robot's URL carries its access_token (https://oapi.dingtalk.com/robot/send?access_token=…)",
        ));
    }
    match (&new.kind, &new.secret) {
        (AlertChannelKind::Webhook, None) => {
            return Err(
                Refusal::invalid("a webhook destination needs a secret to sign with")
                    .with_field("secret"),
            )
        }
        (_, Some(secret)) if secret.len() < 8 || secret.len() > 256 => {
            return Err(Refusal::invalid("secret must be 8 to 256 characters").with_field("secret"))
        }
        _ => {}
    }
    if new.at_mobiles.len() > MAX_AT_MOBILES
        || new.at_mobiles.iter().any(|mobile| {
            mobile.is_empty()
                || mobile.len() > 20
                || !mobile
                    .chars()
                    .all(|c| c.is_ascii_digit() || c == '+' || c == '-')
        })
    {
        return Err(Refusal::invalid(format!(
            "at_mobiles must be at most {MAX_AT_MOBILES} phone numbers"
        ))
        .with_field("at_mobiles"));
    }
    if new.kind == AlertChannelKind::Webhook && !new.at_mobiles.is_empty() {
        return Err(Refusal::invalid("at_mobiles is for DingTalk robots").with_field("at_mobiles"));
    }
    if state.model_for_request()?.alert_channels().len() >= MAX_ALERT_CHANNELS {
        return Err(Refusal::invalid(format!(
            "at most {MAX_ALERT_CHANNELS} alert destinations; delete one first"
        )));
    }
    let alert_channel_id = format!("alc_{}", random_hex(16));
    let created = AlertChannelCreated {
        alert_channel_id: alert_channel_id.clone(),
        kind: new.kind,
        url_sealed: state
            .master_key
            .seal(&alert_channel_id, url.as_str().as_bytes()),
        url_shown: shown_url(&url),
        secret_sealed: new
            .secret
            .as_ref()
            .map(|secret| state.master_key.seal(&alert_channel_id, secret.as_bytes())),
        at_mobiles: new.at_mobiles,
        created_at: state.clock.now(),
    };
    let stream_id = format!("alert_channel-{alert_channel_id}");
    state
        .execute(&stream_id, &alert_channel_id, |history, now| {
            if !history.is_empty() {
                return Ok(Vec::new());
            }
            Ok(vec![Event::AlertChannelCreated(AlertChannelCreated {
                created_at: now,
                ..created.clone()
            })])
        })
        .await?;
    channel(state, &alert_channel_id)
}

/// The destination `alert_channel_id` (`404 alert_channel_not_found`).
pub fn channel(state: &AppState, alert_channel_id: &str) -> Result<AlertChannelView, Refusal> {
    state
        .model_for_request()?
        .alert_channel(alert_channel_id)
        .cloned()
        .ok_or_else(|| {
            Refusal::new(
                ErrorCode::AlertChannelNotFound,
                format!("alert channel {alert_channel_id} not found"),
            )
        })
}

/// Deletes a destination: it gets no more messages.
pub async fn delete_channel(state: &AppState, alert_channel_id: &str) -> Result<(), Refusal> {
    channel(state, alert_channel_id)?;
    let stream_id = format!("alert_channel-{alert_channel_id}");
    state
        .execute(
            &stream_id,
            &format!("{alert_channel_id}-delete"),
            |history, now| {
                let deleted = history
                    .iter()
                    .any(|event| matches!(event, Event::AlertChannelDeleted(_)));
                if deleted {
                    return Ok(Vec::new());
                }
                Ok(vec![Event::AlertChannelDeleted(AlertChannelDeleted {
                    alert_channel_id: alert_channel_id.to_owned(),
                    deleted_at: now,
                })])
            },
        )
        .await?;
    Ok(())
}

/// A message to send: an alert raised or resolved, or a test.
pub enum Message<'a> {
    /// An alert's raise or resolve message.
    Alert(&'a AlertView, AlertMessage),
    /// `POST /v1/alert-channels/{id}/test`.
    Test,
    /// A condition told without a record (see [`tell_directly`]).
    Direct {
        /// `store` or `read_model`.
        condition: &'static str,
        /// What is wrong.
        summary: &'a str,
    },
}

impl Message<'_> {
    fn title(&self) -> String {
        match self {
            Message::Alert(alert, AlertMessage::Raised) => {
                format!("[paycenter] ALERT {}", alert.summary)
            }
            Message::Alert(alert, AlertMessage::Resolved) => {
                format!("[paycenter] RESOLVED {}", alert.summary)
            }
            Message::Test => "[paycenter] test".to_owned(),
            Message::Direct { summary, .. } => format!("[paycenter] ALERT {summary}"),
        }
    }

    fn markdown(&self, state: &AppState) -> String {
        match self {
            Message::Alert(alert, message) => {
                let heading = match message {
                    AlertMessage::Raised => format!("### 告警 ALERT: {}", alert.summary),
                    AlertMessage::Resolved => format!(
                        "### 恢复 RESOLVED: {}\n\n{}",
                        alert.summary,
                        alert.resolution.clone().unwrap_or_default()
                    ),
                };
                format!(
                    "{heading}\n\n- rule: `{}`\n- subject: `{}`\n- raised at: {}\n- alert: `{}`\n\n{}\n\n{}",
                    alert.rule.as_str(),
                    alert.subject,
                    alert.raised_at.to_rfc3339(),
                    alert.alert_id,
                    alert.details,
                    state.config.public_url
                )
            }
            Message::Test => format!(
                "### paycenter\n\nA test message from {}: alerts reach this group.",
                state.config.public_url
            ),
            Message::Direct { condition, summary } => format!(
                "### 告警 ALERT: {summary}\n\n- condition: `{condition}`\n- told directly: paycenter cannot record alerts now (see /healthz)\n\n{}",
                state.config.public_url
            ),
        }
    }

    fn webhook_body(&self, now: DateTime<Utc>) -> serde_json::Value {
        match self {
            Message::Alert(alert, message) => json!({
                "id": format!("{}.{}", alert.alert_id, message.as_str()),
                "type": format!("alert.{}", message.as_str()),
                "created_at": now.to_rfc3339(),
                "data": crate::wire::alert_json(alert),
            }),
            Message::Test => json!({
                "id": format!("alert_test_{}", random_hex(8)),
                "type": "alert.test",
                "created_at": now.to_rfc3339(),
                "data": {},
            }),
            Message::Direct { condition, summary } => json!({
                "id": format!("alert_direct_{}", random_hex(8)),
                "type": "alert.unrecorded",
                "created_at": now.to_rfc3339(),
                "data": {"condition": condition, "summary": summary},
            }),
        }
    }
}

/// `sign` of DingTalk's custom robot: base64 of HMAC-SHA256(secret, "{timestamp}\n{secret}"),
/// URL-encoded.
pub fn dingtalk_sign(secret: &str, timestamp_ms: i64) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("{timestamp_ms}\n{secret}").as_bytes());
    let signature = base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
    url::form_urlencoded::byte_serialize(signature.as_bytes()).collect()
}

/// Sends `message` to `channel` once: `Err` with what went wrong.
pub async fn send(
    state: &AppState,
    http: &HttpClient,
    channel: &AlertChannelView,
    message: &Message<'_>,
) -> Result<(), String> {
    let owner = channel.alert_channel_id.as_str();
    let url = state
        .master_key
        .open(owner, &channel.url_sealed)
        .map_err(|error| format!("the destination's URL does not open: {error}"))?;
    let url = String::from_utf8(url).map_err(|_| "the destination's URL is not text".to_owned())?;
    let secret = match &channel.secret_sealed {
        Some(sealed) => Some(
            String::from_utf8(
                state
                    .master_key
                    .open(owner, sealed)
                    .map_err(|error| format!("the destination's secret does not open: {error}"))?,
            )
            .map_err(|_| "the destination's secret is not text".to_owned())?,
        ),
        None => None,
    };
    let now = state.clock.now();
    match channel.kind {
        AlertChannelKind::Dingtalk => {
            let mut target = url;
            if let Some(secret) = &secret {
                let timestamp_ms = chrono::Utc::now().timestamp_millis();
                let sign = dingtalk_sign(secret, timestamp_ms);
                target = format!("{target}&timestamp={timestamp_ms}&sign={sign}");
            }
            let body = json!({
                "msgtype": "markdown",
                "markdown": {"title": message.title(), "text": message.markdown(state)},
                "at": {"atMobiles": channel.at_mobiles, "isAtAll": false},
            });
            let answer = http
                .post(
                    &target,
                    &[("content-type", "application/json".to_owned())],
                    body.to_string().into_bytes(),
                )
                .await?;
            if !(200..300).contains(&answer.status) {
                return Err(format!("the robot answered HTTP {}", answer.status));
            }
            let reply: serde_json::Value = serde_json::from_slice(&answer.body)
                .map_err(|_| "the robot's answer is not JSON".to_owned())?;
            match reply["errcode"].as_i64() {
                Some(0) => Ok(()),
                Some(code) => Err(format!(
                    "the robot answered errcode {code}: {}",
                    reply["errmsg"]
                        .as_str()
                        .unwrap_or("")
                        .chars()
                        .take(200)
                        .collect::<String>()
                )),
                None => Err("the robot's answer has no errcode".to_owned()),
            }
        }
        AlertChannelKind::Webhook => {
            let body = message.webhook_body(now).to_string().into_bytes();
            let secret = secret.ok_or("a webhook destination has a secret")?;
            let signature = paycenter_gateway::signing::signature_header(
                secret.as_bytes(),
                now.timestamp(),
                &body,
            );
            let answer = http
                .post(
                    &url,
                    &[
                        ("content-type", "application/json".to_owned()),
                        ("paycenter-signature", signature),
                    ],
                    body,
                )
                .await?;
            if (200..300).contains(&answer.status) {
                Ok(())
            } else {
                Err(format!("the destination answered HTTP {}", answer.status))
            }
        }
    }
}

/// `POST /v1/alert-channels/{id}/test`: a test message, sent now; nothing is recorded. What
/// the destination said when it did not take it is the answer's `Err`, not a refusal: the test
/// itself worked.
pub async fn test_channel(
    state: &AppState,
    alert_channel_id: &str,
) -> Result<Result<(), String>, Refusal> {
    let channel = channel(state, alert_channel_id)?;
    let http = HttpClient::new(&state.outbound, state.config.webhook_timeout_ms)
        .map_err(|error| Refusal::internal("alerts", error))?;
    Ok(send(state, &http, &channel, &Message::Test).await)
}

/// Conditions told directly (not recorded: the store refuses appends, or the read model that
/// holds the deliveries stopped), once per outage in this process.
static TOLD_DIRECTLY: std::sync::Mutex<Vec<&'static str>> = std::sync::Mutex::new(Vec::new());

/// Tells every destination about `condition` (`store` or `read_model`) without recording
/// anything, the first time it is seen down; forgets it once it is up, so the next outage is
/// told too. The destinations are read from the read model as it stands, stopped or not.
pub async fn tell_directly(state: &AppState, condition: &'static str, down: bool, summary: &str) {
    {
        let mut told = TOLD_DIRECTLY.lock().expect("told lock");
        let already = told.contains(&condition);
        if !down {
            told.retain(|told| *told != condition);
            return;
        }
        if already {
            return;
        }
        told.push(condition);
    }
    let channels: Vec<AlertChannelView> = state
        .model_lock()
        .alert_channels()
        .into_iter()
        .cloned()
        .collect();
    let http = match HttpClient::new(&state.outbound, state.config.webhook_timeout_ms) {
        Ok(http) => http,
        Err(error) => {
            tracing::error!(%error, "no outbound client for a direct alert");
            return;
        }
    };
    for channel in &channels {
        let message = Message::Direct { condition, summary };
        if let Err(error) = send(state, &http, channel, &message).await {
            tracing::error!(alert_channel_id = %channel.alert_channel_id, %error, condition, "a direct alert was not delivered");
        }
    }
    tracing::error!(
        condition,
        summary,
        n_destinations = channels.len(),
        "told the alert destinations directly (not recorded)"
    );
}

/// What one rule found: every condition of `rule` that holds now. An alert is raised for
/// each (unless one is open) and every open alert of `rule` whose condition no longer holds is
/// resolved.
pub async fn observe(
    state: &AppState,
    rule: AlertRule,
    holding: Vec<Observation>,
) -> Result<(), Refusal> {
    let holding_streams: HashSet<String> = holding
        .iter()
        .map(|observation| observation.condition.stream())
        .collect();
    for observation in &holding {
        debug_assert_eq!(observation.condition.rule, rule);
        let stream_id = observation.condition.stream();
        let command_id = format!("{stream_id}-raise-{}", state.clock.now().timestamp_micros());
        state
            .execute(&stream_id, &command_id, |history, now| {
                alerts::raise(history, observation, now)
            })
            .await?;
    }
    let open = state.model_for_request()?.open_alerts();
    for (condition, _alert_id) in open {
        if condition.rule != rule || holding_streams.contains(&condition.stream()) {
            continue;
        }
        resolve(state, &condition, "the condition no longer holds").await?;
    }
    Ok(())
}

/// Resolves the open alert of `condition`, if any.
pub async fn resolve(
    state: &AppState,
    condition: &Condition,
    summary: &str,
) -> Result<(), Refusal> {
    let stream_id = condition.stream();
    let command_id = format!(
        "{stream_id}-resolve-{}",
        state.clock.now().timestamp_micros()
    );
    state
        .execute(&stream_id, &command_id, |history, now| {
            alerts::resolve(history, summary, now)
        })
        .await?;
    Ok(())
}

/// One round of the deliverer: every delivery due now (at most a round's worth), each under a
/// lease, recorded in the alert's stream whatever came of it.
pub async fn deliver_due(state: &AppState, http: &HttpClient) -> Result<usize, Refusal> {
    let now = state.clock.now();
    let due: Vec<DeliveryTask> = state
        .model_for_request()?
        .alert_deliveries_due(now, MAX_DELIVERIES_PER_ROUND)?;
    let mut n_attempted = 0;
    for task in due {
        let lease = format!(
            "alert:{}:{}:{}:{}",
            task.alert_id,
            task.alert_channel_id,
            task.message.as_str(),
            task.attempt
        );
        if !take_lease(state, &lease, DELIVERY_LEASE_MS) {
            continue;
        }
        let (alert, channel) = {
            let model = state.model_for_request()?;
            (
                model.alert(&task.alert_id)?,
                model.alert_channel(&task.alert_channel_id).cloned(),
            )
        };
        let Some(alert) = alert else { continue };
        let outcome = match &channel {
            Some(channel) => {
                send(state, http, channel, &Message::Alert(&alert, task.message)).await
            }
            // Deleted since: given up at once.
            None => Err("the destination was deleted".to_owned()),
        };
        if let Err(error) = &outcome {
            tracing::warn!(alert_id = %task.alert_id, alert_channel_id = %task.alert_channel_id, attempt = task.attempt, %error, "an alert was not delivered");
        }
        let attempt = if channel.is_none() {
            alerts::MAX_DELIVERY_ATTEMPTS
        } else {
            task.attempt
        };
        let condition = Condition {
            rule: alert.rule,
            subject: alert.subject.clone(),
        };
        let command_id = format!(
            "deliver-{}-{}-{}-{attempt}",
            task.alert_id,
            task.alert_channel_id,
            task.message.as_str()
        );
        state
            .execute(&condition.stream(), &command_id, |_, now| {
                Ok(alerts::record_delivery(
                    &task.alert_id,
                    &task.alert_channel_id,
                    task.message,
                    attempt,
                    outcome.clone(),
                    now,
                ))
            })
            .await?;
        n_attempted += 1;
    }
    Ok(n_attempted)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dingtalk_sign_follows_the_published_algorithm() {
        // Python: quote_plus(b64encode(hmac.new(b"SECtest", b"1700000000000\nSECtest", sha256).digest()))
        assert_eq!(
            dingtalk_sign("SECtest", 1_700_000_000_000),
            "aZLLrriXgn05YbwaGR7knYsLeJADjr9NwLaNNKpxh4g%3D"
        );
    }

    #[test]
    fn a_robot_url_is_shown_without_its_token() {
        let url =
            url::Url::parse("https://oapi.dingtalk.com/robot/send?access_token=abcdef0123456789")
                .unwrap();
        assert_eq!(
            shown_url(&url),
            "https://oapi.dingtalk.com/robot/send?access_token=abcd%E2%80%A6"
        );
        let url = url::Url::parse("https://user:pw@hooks.example.com/alerts").unwrap();
        assert_eq!(shown_url(&url), "https://hooks.example.com/alerts");
    }
}
