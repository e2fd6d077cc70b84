//! `Idempotency-Key` on `POST /v1/payments`: the same key with the same body answers the first
//! success again (status and body); with another body it is `409 idempotency_key_reused`.
//!
//! Keys are per app and survive restarts: the first successful answer is recorded as an
//! `idempotency_key.recorded` event in the key's own stream. Requests with one key are run
//! one at a time on a node (a lock per key held only while in use), so concurrent duplicates
//! wait and get the replay instead of racing. Failures are not recorded: a retry runs again.

use std::future::Future;

use hyper::http::StatusCode;
use paycenter_domain::events::{AppRegistered, Event, IdempotencyKeyRecorded};
use paycenter_domain::streams;
use paycenter_store::{ExpectedRevision, StoreError};
use sha2::{Digest, Sha256};

use crate::error::{ErrorCode, Refusal};
use crate::http::Answer;
use crate::state::AppState;

/// The longest key accepted, in bytes.
pub const MAX_KEY_BYTES: usize = 255;

fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The request's fingerprint: its JSON with keys sorted (so whitespace and key order do not
/// matter), or its raw bytes when it is not JSON.
fn request_fingerprint(body: &[u8]) -> String {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(value) => sha256_hex(value.to_string().as_bytes()),
        Err(_) => sha256_hex(body),
    }
}

/// Runs `handler` under the app's `Idempotency-Key`, if one was sent.
pub async fn run(
    state: &AppState,
    app: &AppRegistered,
    key: Option<String>,
    body: &[u8],
    handler: impl Future<Output = Answer>,
) -> Answer {
    let Some(key) = key else {
        return handler.await;
    };
    if key.is_empty()
        || key.len() > MAX_KEY_BYTES
        || !key.bytes().all(|byte| byte.is_ascii_graphic())
    {
        return Err(Refusal::new(
            ErrorCode::InvalidIdempotencyKey,
            format!("Idempotency-Key must be 1 to {MAX_KEY_BYTES} visible ASCII characters"),
        ));
    }
    let key_sha256 = sha256_hex(key.as_bytes());
    let request_sha256 = request_fingerprint(body);
    let stream_id = streams::idempotency_key(&app.app_id, &key_sha256);
    state
        .idempotency_locks
        .run(&stream_id, async {
            if let Some(recorded) = load(state, &stream_id)? {
                return replay(recorded, &request_sha256);
            }
            let answer = handler.await;
            let Ok((status, response)) = &answer else {
                return answer;
            };
            if !status.is_success() {
                return answer;
            }
            let record = Event::IdempotencyKeyRecorded(IdempotencyKeyRecorded {
                app_id: app.app_id.clone(),
                key_sha256: key_sha256.clone(),
                request_sha256: request_sha256.clone(),
                status: status.as_u16(),
                body: response.clone(),
                recorded_at: state.clock.now(),
            });
            let new_events = Event::to_new_events(&[record], &stream_id, None);
            match state
                .store
                .append_async(&stream_id, ExpectedRevision::NoStream, new_events)
                .await
            {
                Ok(_) => answer,
                // Another node recorded this key first: its answer is the one to keep giving.
                Err(StoreError::WrongExpectedRevision { .. }) => match load(state, &stream_id)? {
                    Some(recorded) => replay(recorded, &request_sha256),
                    None => answer,
                },
                Err(error) => Err(error.into()),
            }
        })
        .await
}

fn load(state: &AppState, stream_id: &str) -> Result<Option<IdempotencyKeyRecorded>, Refusal> {
    let events = state.load_stream(stream_id)?.events;
    Ok(events.into_iter().find_map(|event| match event {
        Event::IdempotencyKeyRecorded(recorded) => Some(recorded),
        _ => None,
    }))
}

fn replay(recorded: IdempotencyKeyRecorded, request_sha256: &str) -> Answer {
    if recorded.request_sha256 != request_sha256 {
        return Err(Refusal::new(
            ErrorCode::IdempotencyKeyReused,
            "this Idempotency-Key was already used with a different request body",
        ));
    }
    let status = StatusCode::from_u16(recorded.status)
        .map_err(|error| Refusal::internal("idempotency record", error))?;
    Ok((status, recorded.body))
}

#[cfg(test)]
mod tests {
    #[test]
    fn fingerprints_ignore_whitespace_and_key_order() {
        let a = super::request_fingerprint(br#"{"a": 1, "b": "x"}"#);
        let b = super::request_fingerprint(br#"{"b":"x","a":1}"#);
        let c = super::request_fingerprint(br#"{"b":"y","a":1}"#);
        assert_eq!(a, b);
        assert_ne!(a, c);
    }
}
