//! The outbound HTTP client: plain HTTP/1.1 with a timeout on every call. Channels in tests are
//! local fakes; production channels sit behind an egress proxy that terminates TLS.

use std::time::Duration;

use hyper::client::HttpConnector;
use hyper::{Body, Client, Request};

/// An answer: status, headers and body.
#[derive(Debug, Clone)]
pub struct HttpAnswer {
    /// HTTP status.
    pub status: u16,
    /// Header names lowercased, values as received (non-UTF-8 values dropped).
    pub headers: Vec<(String, String)>,
    /// Body bytes.
    pub body: Vec<u8>,
}

impl HttpAnswer {
    /// The first header with this (lowercase) name.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }
}

/// The most bytes read from an answer.
const MAX_ANSWER_BYTES: usize = 8 << 20;

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
        self.send("POST", url, headers, body).await
    }

    /// GETs `url` with the given headers.
    pub async fn get(&self, url: &str, headers: &[(&str, String)]) -> Result<HttpAnswer, String> {
        self.send("GET", url, headers, Vec::new()).await
    }

    /// Sends one request; the whole exchange, body included, is bounded by the timeout.
    pub async fn send(
        &self,
        method: &str,
        url: &str,
        headers: &[(&str, String)],
        body: Vec<u8>,
    ) -> Result<HttpAnswer, String> {
        let mut request = Request::builder().method(method).uri(url);
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
            let headers = response
                .headers()
                .iter()
                .filter_map(|(name, value)| {
                    Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                })
                .collect();
            let mut body = Vec::new();
            let mut stream = response.into_body();
            while let Some(chunk) = hyper::body::HttpBody::data(&mut stream).await {
                let chunk = chunk.map_err(|error| error.to_string())?;
                if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                    return Err(format!("answer larger than {MAX_ANSWER_BYTES} bytes"));
                }
                body.extend_from_slice(&chunk);
            }
            Ok(HttpAnswer {
                status,
                headers,
                body,
            })
        };
        match tokio::time::timeout(self.timeout, call).await {
            Ok(answer) => answer,
            Err(_) => Err(format!("timed out after {} ms", self.timeout.as_millis())),
        }
    }
}
