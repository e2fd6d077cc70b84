//! The outbound HTTP client: plain HTTP/1.1 with a timeout on every call. Channels in tests are
//! local fakes; production channels sit behind an egress proxy that terminates TLS.

use std::time::Duration;

use hyper::client::HttpConnector;
use hyper::{Body, Client, Request};

/// An answer: status and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// HTTP status.
    pub status: u16,
    /// Body bytes.
    pub body: Vec<u8>,
}

/// The most bytes read from an answer.
const MAX_ANSWER_BYTES: usize = 1 << 20;

/// A shared client with a per-call timeout.
#[derive(Clone)]
pub struct HttpClient {
    client: Client<HttpConnector, Body>,
    timeout: Duration,
}

impl HttpClient {
    /// A client whose every call gives up after `timeout_ms`.
    pub fn new(timeout_ms: u64) -> HttpClient {
        let mut connector = HttpConnector::new();
        connector.set_connect_timeout(Some(Duration::from_millis(timeout_ms)));
        HttpClient {
            client: Client::builder()
                .pool_max_idle_per_host(32)
                .build(connector),
            timeout: Duration::from_millis(timeout_ms),
        }
    }

    /// POSTs `body` with the given headers.
    pub async fn post(
        &self,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<HttpAnswer, String> {
        let mut request = Request::post(url);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let request = request
            .body(Body::from(body))
            .map_err(|error| error.to_string())?;
        let call = async {
            let response = self
                .client
                .request(request)
                .await
                .map_err(|error| error.to_string())?;
            let status = response.status().as_u16();
            let bytes = hyper::body::to_bytes(response.into_body())
                .await
                .map_err(|error| error.to_string())?;
            let body = bytes[..bytes.len().min(MAX_ANSWER_BYTES)].to_vec();
            Ok(HttpAnswer { status, body })
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("timed out after {} ms", self.timeout.as_millis())),
        }
    }
}
