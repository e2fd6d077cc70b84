//! Helpers every HTTP test file uses; each file sets its own time bounds.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};
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

/// A child process killed when dropped.
#[allow(dead_code)] // Each test file uses the part it needs.
pub struct Process(pub Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Waits until payout `payout_id` has `status`; answers the payout then.
#[allow(dead_code)] // Not every test binary pays out.
pub fn wait_payout(base: &str, admin_token: &str, payout_id: &str, status: &str) -> Value {
    let mut last = Value::Null;
    wait_for_within(
        &format!("payout {payout_id} {status}"),
        Duration::from_secs(30),
        Duration::from_millis(50),
        || {
            last = call_within(
                "GET",
                &format!("{base}/v1/payouts/{payout_id}"),
                admin_token,
                None,
                Duration::from_secs(30),
            )
            .1;
            last["status"] == status
        },
    );
    last
}

/// A merchant's balance of `account` in major units (`"0.00"` when it has none), read over
/// `GET /v1/merchants/{merchant_id}/balances` with the admin token.
#[allow(dead_code)]
pub fn balance(base: &str, admin_token: &str, merchant_id: &str, account: &str) -> String {
    let (status, balances) = call_within(
        "GET",
        &format!("{base}/v1/merchants/{merchant_id}/balances"),
        admin_token,
        None,
        Duration::from_secs(30),
    );
    assert_eq!(status, 200, "{balances}");
    balances["accounts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|line| line["account"] == account)
        .map_or("0.00".to_owned(), |line| {
            line["balance"].as_str().unwrap().to_owned()
        })
}

/// Starts `paycenter serve` with `data_dir` on a free loopback port, `admin_token`, and `env`
/// (its log in `data_dir/server.log`); answers the process and its base URL once it listens.
#[allow(dead_code)]
pub fn start_paycenter(
    data_dir: &Path,
    admin_token: &str,
    env: &[(&str, &str)],
) -> (Process, String) {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut child = Command::new(env!("CARGO_BIN_EXE_paycenter"))
        .args([
            "serve",
            "--data-dir",
            data_dir.to_str().unwrap(),
            "--listen",
            &format!("127.0.0.1:{port}"),
        ])
        .env("PAYCENTER_ADMIN_TOKEN", admin_token)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::from(
            std::fs::File::create(data_dir.join("server.log")).unwrap(),
        ))
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let base = line
        .trim()
        .strip_prefix("paycenter listening on ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned();
    (Process(child), base)
}

/// A webhook receiver on loopback that acknowledges everything; answers its URL.
#[allow(dead_code)]
pub fn acknowledging_webhook_sink() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(100_000) {
            let Ok(mut stream) = stream else { continue };
            let mut buffer = [0u8; 65_536];
            let _ = stream.read(&mut buffer);
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
            );
        }
    });
    url
}

/// Polls `done` every `step` until it holds; panics naming `what` after `timeout`.
#[allow(dead_code)]
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

/// Certificates made for one test: a CA, and a server certificate it signed for `localhost`
/// and `127.0.0.1` (or for the names given), as PEM files in a directory.
#[allow(dead_code)] // Each test file uses the part it needs.
pub struct TestPki {
    pub dir: tempfile::TempDir,
    /// The CA certificate (what `PAYCENTER_CA_FILE` names).
    pub ca_path: std::path::PathBuf,
    /// The server's certificate chain and its key.
    pub cert_path: std::path::PathBuf,
    pub key_path: std::path::PathBuf,
}

#[allow(dead_code)]
impl TestPki {
    /// A CA and a server certificate for `names` (DNS names or IP addresses).
    pub fn new(names: &[&str]) -> TestPki {
        let dir = tempfile::tempdir().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "paycenter test CA");
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let names: Vec<String> = names.iter().map(|name| name.to_string()).collect();
        let leaf_params = rcgen::CertificateParams::new(names).unwrap();
        let leaf_key = rcgen::KeyPair::generate().unwrap();
        let leaf = leaf_params.signed_by(&leaf_key, &ca, &ca_key).unwrap();
        let ca_path = dir.path().join("ca.pem");
        let cert_path = dir.path().join("server.pem");
        let key_path = dir.path().join("server.key");
        std::fs::write(&ca_path, ca.pem()).unwrap();
        std::fs::write(&cert_path, leaf.pem()).unwrap();
        std::fs::write(&key_path, leaf_key.serialize_pem()).unwrap();
        TestPki {
            dir,
            ca_path,
            cert_path,
            key_path,
        }
    }

    /// A rustls server configuration presenting this certificate.
    pub fn server_config(&self) -> std::sync::Arc<rustls::ServerConfig> {
        use rustls::pki_types::pem::PemObject;
        let certs: Vec<rustls::pki_types::CertificateDer<'static>> =
            rustls_pemfile_certs(&std::fs::read(&self.cert_path).unwrap());
        let key = rustls::pki_types::PrivateKeyDer::from_pem_slice(
            &std::fs::read(&self.key_path).unwrap(),
        )
        .unwrap();
        let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
        std::sync::Arc::new(config)
    }
}

#[allow(dead_code)]
impl TestPki {
    /// An HTTP client for the test itself that trusts this CA (and nothing else).
    pub fn client(&self) -> ureq::Agent {
        let mut roots = rustls::RootCertStore::empty();
        for certificate in rustls_pemfile_certs(&std::fs::read(&self.ca_path).unwrap()) {
            roots.add(certificate).unwrap();
        }
        let config = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
        // Redirects are answers to look at, not to follow.
        ureq::AgentBuilder::new()
            .tls_config(std::sync::Arc::new(config))
            .redirects(0)
            .build()
    }
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::pem::PemObject;
    rustls::pki_types::CertificateDer::pem_slice_iter(pem)
        .map(|certificate| certificate.unwrap())
        .collect()
}

/// Runs scenario `scenario` of `api/tests/browser/cashier.mjs` in Debian's chromium with
/// `input` (its `out_dir` set to `target/cashier-screenshots`), answering its JSON result.
/// `None` (and a line saying so) when chromium or the driver's npm package is missing, unless
/// `PAYCENTER_REQUIRE_BROWSER=1`, which `.ci/run` sets: then that is a failure.
#[allow(dead_code)]
pub fn run_browser(scenario: &str, input: Value) -> Option<Value> {
    run_browser_script("cashier", scenario, input)
}

/// Runs `scenario` of `api/tests/browser/{script}.mjs` (see [`run_browser`]); screenshots go to
/// `target/{script}-screenshots/`.
#[allow(dead_code)]
pub fn run_browser_script(script: &str, scenario: &str, mut input: Value) -> Option<Value> {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let driver_dir = manifest.join("tests/browser");
    let chromium =
        std::env::var("PAYCENTER_CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".into());
    let missing = if !Path::new(&chromium).exists() {
        Some(format!("no chromium at {chromium}"))
    } else if !driver_dir.join("node_modules/playwright-core").exists() {
        Some(format!(
            "no playwright-core in {} (npm ci there)",
            driver_dir.display()
        ))
    } else {
        None
    };
    if let Some(why) = missing {
        if std::env::var("PAYCENTER_REQUIRE_BROWSER").as_deref() == Ok("1") {
            panic!("{why}");
        }
        eprintln!("skipped: {why}");
        return None;
    }
    let out_dir = manifest.join(format!("../target/{script}-screenshots"));
    std::fs::create_dir_all(&out_dir).unwrap();
    input["out_dir"] = Value::String(out_dir.to_str().unwrap().to_owned());
    let output = Command::new("node")
        .arg(driver_dir.join(format!("{script}.mjs")))
        .arg(scenario)
        .arg(input.to_string())
        .env("PAYCENTER_CHROMIUM", &chromium)
        .output()
        .expect("node runs");
    assert!(
        output.status.success(),
        "browser scenario {scenario} failed: {}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    let stdout = String::from_utf8(output.stdout).unwrap();
    Some(
        serde_json::from_str(stdout.lines().last().unwrap_or("")).unwrap_or_else(|error| {
            panic!("browser scenario {scenario} answered {stdout:?}: {error}")
        }),
    )
}

/// The venv's interpreter (`PAYCENTER_TEST_PYTHON`, default `.venv/bin/python`) when `modules`
/// (a comma-separated Python import list) import there; else `None`, said why, or a failure
/// when `PAYCENTER_REQUIRE_SDKS=1`.
#[allow(dead_code)]
pub fn python_with(modules: &str) -> Option<std::path::PathBuf> {
    let path = std::env::var("PAYCENTER_TEST_PYTHON")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|_| {
            std::path::PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../.venv/bin/python"))
        });
    let importable = Command::new(&path)
        .args(["-c", &format!("import {modules}")])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if importable {
        return Some(path);
    }
    let why = format!(
        "no Python with {modules} at {} (set PAYCENTER_TEST_PYTHON; .ci/run makes .venv)",
        path.display()
    );
    if std::env::var("PAYCENTER_REQUIRE_SDKS").as_deref() == Ok("1") {
        panic!("{why}");
    }
    eprintln!("skipped: {why}");
    None
}

/// Starts `tests/fakes/{script}` under `python`, speaking HTTPS with `pki`'s certificate; answers
/// the process and the JSON line it prints on start (its port, keys or URLs).
#[allow(dead_code)]
pub fn spawn_fake(
    python: &Path,
    script: &str,
    pki: &TestPki,
    env: &[(&str, &str)],
) -> (Process, Value) {
    let mut child = Command::new(python)
        .arg(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("tests/fakes")
                .join(script),
        )
        .env("FAKE_TLS_CERT", &pki.cert_path)
        .env("FAKE_TLS_KEY", &pki.key_path)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let started = serde_json::from_str(&line).unwrap_or_else(|_| panic!("{script} said {line:?}"));
    (Process(child), started)
}
