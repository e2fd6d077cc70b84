//! Helpers every HTTP test file uses; each file sets its own time bounds.

use std::time::{Duration, Instant};

use serde_json::Value;

/// One request with a bearer token, answered as (status, JSON body or the text as a string).
/// Any status is an answer; only a transport failure panics.
pub fn call_within(
    method: &str,
    url: &str,
    token: &str,
    body: Option<Value>,
    timeout: Duration,
) -> (u16, Value) {
    let request = ureq::request(method, url)
        .set("authorization", &format!("Bearer {token}"))
        .timeout(timeout);
    let result = match body {
        Some(body) => request.send_json(body),
        None => request.call(),
    };
    let response = match result {
        Ok(response) => response,
        Err(ureq::Error::Status(_, response)) => response,
        Err(error) => panic!("{method} {url}: {error}"),
    };
    let status = response.status();
    let text = response.into_string().unwrap();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

/// Polls `done` every `step` until it holds; panics naming `what` after `timeout`.
pub fn wait_for_within(
    what: &str,
    timeout: Duration,
    step: Duration,
    mut done: impl FnMut() -> bool,
) {
    let deadline = Instant::now() + timeout;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(step);
    }
}
