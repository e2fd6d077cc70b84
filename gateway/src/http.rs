//! The one outbound HTTP client, for channels, webhooks and alerts: `reqwest` over rustls.
//!
//! - Certificates are always verified, against the system's roots plus the PEM bundle
//!   `PAYCENTER_CA_FILE` (private PKI, tests).
//! - Redirects are never followed; a timeout bounds connecting and the whole exchange; an
//!   answer is read up to [`MAX_ANSWER_BYTES`].
//! - The egress rule ([`crate::egress`]) is applied at every connection, after DNS: the
//!   resolver drops refused addresses (so a name cannot be rebound to the metadata service
//!   between a check and a connect), and address literals are checked before sending.
//! - A proxy only through `PAYCENTER_HTTPS_PROXY` (the usual `HTTPS_PROXY` variables are
//!   ignored); its own address is checked once, and the proxy must enforce egress itself for
//!   the names it resolves.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use crate::egress::{check_ip, check_url, EgressPolicy};

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
pub const MAX_ANSWER_BYTES: usize = 8 << 20;

/// Where outbound calls may go and whom they trust; shared by every client of a process.
#[derive(Clone, Debug, Default)]
pub struct OutboundConfig {
    /// The egress rule.
    pub egress: EgressPolicy,
    /// Extra trust roots (PEM), beside the system's.
    pub extra_roots_pem: Option<Vec<u8>>,
    /// The only proxy used, if any.
    pub https_proxy: Option<String>,
}

impl OutboundConfig {
    /// From `PAYCENTER_ALLOW_PRIVATE_EGRESS`, `PAYCENTER_CA_FILE` and `PAYCENTER_HTTPS_PROXY`.
    pub fn from_env() -> Result<OutboundConfig, String> {
        let egress = EgressPolicy::from_env();
        let extra_roots_pem = match std::env::var_os("PAYCENTER_CA_FILE") {
            None => None,
            Some(path) => {
                let pem = std::fs::read(&path).map_err(|error| {
                    format!("PAYCENTER_CA_FILE {}: {error}", path.to_string_lossy())
                })?;
                if reqwest::Certificate::from_pem_bundle(&pem)
                    .map_or(true, |certificates| certificates.is_empty())
                {
                    return Err(format!(
                        "PAYCENTER_CA_FILE {} holds no PEM certificate",
                        path.to_string_lossy()
                    ));
                }
                Some(pem)
            }
        };
        let https_proxy = match std::env::var("PAYCENTER_HTTPS_PROXY") {
            Ok(url) if !url.trim().is_empty() => {
                check_url(url.trim(), egress)
                    .map_err(|refused| format!("PAYCENTER_HTTPS_PROXY: {refused}"))?;
                Some(url.trim().to_owned())
            }
            _ => None,
        };
        Ok(OutboundConfig {
            egress,
            extra_roots_pem,
            https_proxy,
        })
    }
}

/// Resolves names (with the system resolver, or one a test gives), then keeps only addresses
/// the egress rule allows.
struct GuardedResolver {
    policy: EgressPolicy,
    inner: Option<Arc<dyn reqwest::dns::Resolve>>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy;
        let host = name.as_str().to_owned();
        let inner = self.inner.as_ref().map(|inner| inner.resolve(name));
        Box::pin(async move {
            let resolved: Vec<SocketAddr> = match inner {
                Some(inner) => inner.await?.collect(),
                None => tokio::net::lookup_host((host.as_str(), 0)).await?.collect(),
            };
            let allowed = guard_addresses(&host, resolved, policy)?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The addresses of `host` the rule allows; an error naming why when none is.
fn guard_addresses(
    host: &str,
    resolved: Vec<SocketAddr>,
    policy: EgressPolicy,
) -> Result<Vec<SocketAddr>, Box<dyn std::error::Error + Send + Sync>> {
    let mut last_refusal = None;
    let allowed: Vec<SocketAddr> = resolved
        .into_iter()
        .filter(|address| match check_ip(address.ip(), policy) {
            Ok(()) => true,
            Err(refused) => {
                last_refusal = Some(refused);
                false
            }
        })
        .collect();
    if allowed.is_empty() {
        let why = last_refusal.map_or_else(|| "no address".to_owned(), |refused| refused.0);
        return Err(format!("egress refused for {host}: {why}").into());
    }
    Ok(allowed)
}

/// A shared client with a per-call timeout.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
    policy: EgressPolicy,
    timeout: Duration,
}

impl HttpClient {
    /// A client whose every call gives up after `timeout_ms`.
    pub fn new(config: &OutboundConfig, timeout_ms: u64) -> Result<HttpClient, String> {
        Self::with_resolver(config, timeout_ms, None)
    }

    /// The same, resolving names with `resolver` (tests inject answers with it).
    pub fn with_resolver(
        config: &OutboundConfig,
        timeout_ms: u64,
        resolver: Option<Arc<dyn reqwest::dns::Resolve>>,
    ) -> Result<HttpClient, String> {
        let timeout = Duration::from_millis(timeout_ms);
        let resolver = Arc::new(GuardedResolver {
            policy: config.egress,
            inner: resolver,
        });
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .https_only(false)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(timeout)
            .timeout(timeout)
            .pool_max_idle_per_host(32)
            .dns_resolver(resolver)
            .no_proxy();
        if let Some(pem) = &config.extra_roots_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|error| format!("PAYCENTER_CA_FILE: {error}"))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        if let Some(proxy) = &config.https_proxy {
            builder = builder.proxy(
                reqwest::Proxy::all(proxy)
                    .map_err(|error| format!("PAYCENTER_HTTPS_PROXY: {error}"))?,
            );
        }
        let client = builder
            .build()
            .map_err(|error| format!("outbound HTTP client: {error}"))?;
        Ok(HttpClient {
            client,
            policy: config.egress,
            timeout,
        })
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
        let parsed = check_url(url, self.policy).map_err(|refused| refused.0)?;
        // Names are checked by the resolver at connection time; literals never reach it.
        if let Some(host) = parsed.host_str() {
            let literal = host.trim_start_matches('[').trim_end_matches(']');
            if let Ok(ip) = literal.parse::<IpAddr>() {
                check_ip(ip, self.policy).map_err(|refused| refused.0)?;
            }
        }
        let method = reqwest::Method::from_bytes(method.as_bytes())
            .map_err(|error| format!("method {method}: {error}"))?;
        let mut request = self.client.request(method, parsed);
        for (name, value) in headers {
            request = request.header(*name, value.as_str());
        }
        let call = async {
            let mut response = request.body(body).send().await.map_err(describe)?;
            let status = response.status().as_u16();
            let headers = response
                .headers()
                .iter()
                .filter_map(|(name, value)| {
                    Some((name.as_str().to_owned(), value.to_str().ok()?.to_owned()))
                })
                .collect();
            let mut body = Vec::new();
            while let Some(chunk) = response.chunk().await.map_err(describe)? {
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

/// A reqwest error with its causes (the TLS reason is in the source chain).
fn describe(error: reqwest::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(&error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers every name with one address.
    struct FixedResolver(IpAddr);

    impl reqwest::dns::Resolve for FixedResolver {
        fn resolve(&self, _name: reqwest::dns::Name) -> reqwest::dns::Resolving {
            let address = SocketAddr::new(self.0, 80);
            Box::pin(async move { Ok(Box::new(std::iter::once(address)) as reqwest::dns::Addrs) })
        }
    }

    #[tokio::test]
    async fn a_name_resolving_to_the_metadata_service_is_refused() {
        let config = OutboundConfig {
            egress: EgressPolicy {
                allow_private: true,
            },
            ..OutboundConfig::default()
        };
        let resolver: Arc<dyn reqwest::dns::Resolve> =
            Arc::new(FixedResolver("169.254.169.254".parse().unwrap()));
        let client = HttpClient::with_resolver(&config, 2_000, Some(resolver)).unwrap();
        let error = client
            .get("http://innocent.example.com/latest", &[])
            .await
            .unwrap_err();
        assert!(error.contains("egress refused"), "{error}");
        assert!(error.contains("link-local"), "{error}");
    }

    #[tokio::test]
    async fn localhost_is_refused_without_the_operator() {
        let client = HttpClient::new(&OutboundConfig::default(), 2_000).unwrap();
        for url in [
            "http://localhost:9/x",
            "http://127.0.0.1:9/x",
            "http://[::1]:9/x",
        ] {
            let error = client.get(url, &[]).await.unwrap_err();
            assert!(error.contains("loopback"), "{url}: {error}");
        }
    }
}
