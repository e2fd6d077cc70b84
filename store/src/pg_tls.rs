//! TLS to PostgreSQL as the connection string asks for it, with libpq's meaning of `sslmode`:
//!
//! | `sslmode` | encrypted | certificate checked |
//! |---|---|---|
//! | absent, `disable` | no | — |
//! | `prefer` | if the server offers it | no |
//! | `require` | yes | no (as libpq, unless `sslrootcert` is given: then as `verify-ca`) |
//! | `verify-ca` | yes | chain to `sslrootcert` (else the system's roots) |
//! | `verify-full` | yes | chain, and the certificate names the host |
//!
//! `tokio-postgres` itself knows only `disable | prefer | require`; this module takes `sslmode`
//! and `sslrootcert` out of the string, hands it `require` or `prefer`, and does the checking
//! in the rustls configuration it connects with.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use tokio_postgres_rustls::MakeRustlsConnect;

use crate::StoreError;

/// How to connect: the connection string for `tokio-postgres` and the TLS connector, if any.
#[derive(Clone)]
pub struct PgConnect {
    /// The connection string without `sslrootcert`, with an `sslmode` tokio-postgres knows.
    pub config: String,
    /// `None`: plain TCP.
    pub tls: Option<MakeRustlsConnect>,
}

impl std::fmt::Debug for PgConnect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The string may hold a password.
        f.debug_struct("PgConnect")
            .field("tls", &self.tls.is_some())
            .finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SslMode {
    Disable,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl PgConnect {
    /// Reads `sslmode` and `sslrootcert` from a `postgres://` URL or a `key=value` string.
    pub fn parse(text: &str) -> Result<PgConnect, StoreError> {
        let (mut pairs, url) = split_settings(text)?;
        let take = |pairs: &mut Vec<(String, String)>, key: &str| {
            let value = pairs
                .iter()
                .find(|(name, _)| name == key)
                .map(|(_, value)| value.clone());
            pairs.retain(|(name, _)| name != key);
            value
        };
        let mode_text = take(&mut pairs, "sslmode");
        let root_cert = take(&mut pairs, "sslrootcert");
        let mut mode = match mode_text.as_deref() {
            None | Some("disable") => SslMode::Disable,
            Some("allow") | Some("prefer") => SslMode::Prefer,
            Some("require") => SslMode::Require,
            Some("verify-ca") => SslMode::VerifyCa,
            Some("verify-full") => SslMode::VerifyFull,
            Some(other) => {
                return Err(StoreError::Backend(format!(
                "sslmode {other:?} is not one of disable, prefer, require, verify-ca, verify-full"
            )))
            }
        };
        if mode == SslMode::Require && root_cert.is_some() {
            mode = SslMode::VerifyCa; // libpq: require with a root certificate verifies the chain
        }
        let tls = match mode {
            SslMode::Disable => None,
            SslMode::Prefer | SslMode::Require => Some(client_config(Verify::Nothing)?),
            SslMode::VerifyCa => Some(client_config(Verify::Chain(roots(root_cert.as_deref())?))?),
            SslMode::VerifyFull => Some(client_config(Verify::ChainAndName(roots(
                root_cert.as_deref(),
            )?))?),
        };
        let wire_mode = match mode {
            SslMode::Disable => "disable",
            SslMode::Prefer => "prefer",
            _ => "require",
        };
        pairs.push(("sslmode".to_owned(), wire_mode.to_owned()));
        Ok(PgConnect {
            config: join_settings(url, &pairs),
            tls: tls.map(MakeRustlsConnect::new),
        })
    }
}

/// `key=value` settings of a connection string.
type Settings = Vec<(String, String)>;

/// The settings of a connection string, and the URL they came from (for URLs).
fn split_settings(text: &str) -> Result<(Settings, Option<url::Url>), StoreError> {
    if text.starts_with("postgres://") || text.starts_with("postgresql://") {
        let url = url::Url::parse(text)
            .map_err(|error| StoreError::Backend(format!("PostgreSQL URL: {error}")))?;
        let pairs = url
            .query_pairs()
            .map(|(key, value)| (key.into_owned(), value.into_owned()))
            .collect();
        return Ok((pairs, Some(url)));
    }
    let pairs = text
        .split_whitespace()
        .map(|token| match token.split_once('=') {
            Some((key, value)) => (key.to_owned(), value.to_owned()),
            None => (token.to_owned(), String::new()),
        })
        .collect();
    Ok((pairs, None))
}

fn join_settings(url: Option<url::Url>, pairs: &[(String, String)]) -> String {
    match url {
        Some(mut url) => {
            url.query_pairs_mut().clear().extend_pairs(pairs);
            url.to_string()
        }
        None => pairs
            .iter()
            .map(|(key, value)| format!("{key}={value}"))
            .collect::<Vec<_>>()
            .join(" "),
    }
}

/// The trust roots: `sslrootcert` (PEM), else the system's.
fn roots(root_cert: Option<&str>) -> Result<RootCertStore, StoreError> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = RootCertStore::empty();
    match root_cert {
        Some(path) => {
            let pem = std::fs::read(path)
                .map_err(|error| StoreError::Backend(format!("sslrootcert {path}: {error}")))?;
            for certificate in CertificateDer::pem_slice_iter(&pem) {
                let certificate = certificate
                    .map_err(|error| StoreError::Backend(format!("sslrootcert {path}: {error}")))?;
                roots
                    .add(certificate)
                    .map_err(|error| StoreError::Backend(format!("sslrootcert {path}: {error}")))?;
            }
        }
        None => {
            for certificate in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(certificate);
            }
        }
    }
    if roots.is_empty() {
        return Err(StoreError::Backend(
            "no trust roots for sslmode verify-ca/verify-full (give sslrootcert)".to_owned(),
        ));
    }
    Ok(roots)
}

enum Verify {
    Nothing,
    Chain(RootCertStore),
    ChainAndName(RootCertStore),
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn client_config(verify: Verify) -> Result<rustls::ClientConfig, StoreError> {
    let builder = rustls::ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|error| StoreError::Backend(format!("TLS: {error}")))?;
    let config = match verify {
        Verify::ChainAndName(roots) => builder.with_root_certificates(roots).with_no_client_auth(),
        Verify::Chain(roots) => {
            let webpki = rustls::client::WebPkiServerVerifier::builder_with_provider(
                Arc::new(roots),
                provider(),
            )
            .build()
            .map_err(|error| StoreError::Backend(format!("TLS: {error}")))?;
            builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(ChainOnly { webpki }))
                .with_no_client_auth()
        }
        Verify::Nothing => builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(EncryptOnly {
                algorithms: provider().signature_verification_algorithms,
            }))
            .with_no_client_auth(),
    };
    Ok(config)
}

/// `sslmode=require`: encrypted, the certificate not checked (libpq's meaning; it guards
/// against eavesdropping, not against a man in the middle).
#[derive(Debug)]
struct EncryptOnly {
    /// The provider's signature algorithms: the handshake's own signatures are still checked.
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for EncryptOnly {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// `sslmode=verify-ca`: the chain must lead to a trusted root; the name is not compared.
#[derive(Debug)]
struct ChainOnly {
    webpki: Arc<rustls::client::WebPkiServerVerifier>,
}

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self.webpki.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        ) {
            Err(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForName
                | rustls::CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.webpki.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.webpki.supported_verify_schemes()
    }
}

/// Connections of one kind, at most a bound of them open at once (idle or lent out): a caller
/// that finds none idle once the bound is reached waits for one to come back. Opening a
/// PostgreSQL connection forks a server process, far dearer than waiting, and the server's
/// own limit is shared by every node.
pub struct BoundedPool<C> {
    max_open: usize,
    state: std::sync::Mutex<PoolState<C>>,
    /// Signalled when a connection comes back or is closed.
    returned: std::sync::Condvar,
}

struct PoolState<C> {
    idle: Vec<C>,
    n_open: usize,
}

impl<C> BoundedPool<C> {
    /// A pool of at most `max_open` connections.
    pub fn new(max_open: usize) -> BoundedPool<C> {
        assert!(max_open > 0, "a pool holds a connection");
        BoundedPool {
            max_open,
            state: std::sync::Mutex::new(PoolState {
                idle: Vec::new(),
                n_open: 0,
            }),
            returned: std::sync::Condvar::new(),
        }
    }

    /// Runs `work` on an idle connection, or on one `open` makes while the bound allows (an
    /// idle one that `is_closed` is replaced); a connection closed after `work` is not pooled
    /// again.
    pub fn with<T, E>(
        &self,
        open: impl FnOnce() -> Result<C, E>,
        is_closed: impl Fn(&C) -> bool,
        work: impl FnOnce(&mut C) -> Result<T, E>,
    ) -> Result<T, E> {
        let pooled = {
            let mut state = self.lock();
            loop {
                if let Some(connection) = state.idle.pop() {
                    break Some(connection);
                }
                if state.n_open < self.max_open {
                    state.n_open += 1;
                    break None;
                }
                state = self
                    .returned
                    .wait(state)
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
            }
        };
        // A slot is ours: a pooled connection, or the right to open one.
        let connection = match pooled {
            Some(connection) if !is_closed(&connection) => Ok(connection),
            _ => open(),
        };
        let (kept, result) = match connection {
            Ok(mut connection) => {
                let result = work(&mut connection);
                (
                    Some(connection).filter(|connection| !is_closed(connection)),
                    result,
                )
            }
            Err(error) => (None, Err(error)),
        };
        let mut state = self.lock();
        match kept {
            Some(connection) => state.idle.push(connection),
            None => state.n_open -= 1,
        }
        drop(state);
        self.returned.notify_one();
        result
    }

    /// The idle connections, taken out (to close them).
    pub fn take_idle(&mut self) -> Vec<C> {
        std::mem::take(
            &mut self
                .state
                .get_mut()
                .unwrap_or_else(|poisoned| poisoned.into_inner())
                .idle,
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, PoolState<C>> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Drops `clients` (blocking `postgres` clients, or what holds them) where that is allowed: a
/// blocking client's drop runs a runtime of its own to close the connection, which panics on
/// a thread that drives a runtime's tasks (a service's last reference may go there as the
/// runtime shuts down, and a panic in a drop during that aborts the process). There, the
/// drop runs on a thread of its own, waited for.
pub fn drop_blocking_clients<T: Send + 'static>(clients: T) {
    if tokio::runtime::Handle::try_current().is_err() {
        drop(clients);
        return;
    }
    match std::thread::Builder::new()
        .name("pg-close".into())
        .spawn(move || drop(clients))
    {
        Ok(closing) => {
            let _ = closing.join();
        }
        // No thread to be had: the connections are left to close with the process.
        Err(error) => tracing::warn!(%error, "PostgreSQL connections left open at a drop"),
    }
}

/// A blocking client (the `postgres` crate) over the connection `connect` describes.
pub fn connect_blocking(connect: &PgConnect) -> Result<postgres::Client, postgres::Error> {
    match &connect.tls {
        None => postgres::Client::connect(&connect.config, postgres::NoTls),
        Some(tls) => postgres::Client::connect(&connect.config, tls.clone()),
    }
}

/// An async client; its connection runs as a task on the current runtime.
pub async fn connect_async(
    connect: &PgConnect,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let on_end = |result: Result<(), tokio_postgres::Error>| {
        if let Err(error) = result {
            tracing::error!(%error, "PostgreSQL connection ended");
        }
    };
    match &connect.tls {
        None => {
            let (client, connection) =
                tokio_postgres::connect(&connect.config, tokio_postgres::NoTls).await?;
            tokio::spawn(async move { on_end(connection.await) });
            Ok(client)
        }
        Some(tls) => {
            let (client, connection) =
                tokio_postgres::connect(&connect.config, tls.clone()).await?;
            tokio::spawn(async move { on_end(connection.await) });
            Ok(client)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sslmode_is_taken_out_and_translated() {
        let plain = PgConnect::parse("host=127.0.0.1 user=postgres").unwrap();
        assert!(plain.tls.is_none());
        assert_eq!(plain.config, "host=127.0.0.1 user=postgres sslmode=disable");
        let full = PgConnect::parse(
            "postgres://u:p@localhost/db?sslmode=verify-full&sslrootcert=/etc/ssl/certs/ssl-cert-snakeoil.pem",
        );
        if let Ok(full) = full {
            assert!(full.tls.is_some());
            assert_eq!(full.config, "postgres://u:p@localhost/db?sslmode=require");
        }
        assert!(PgConnect::parse("host=x sslmode=sometimes").is_err());
    }
}
