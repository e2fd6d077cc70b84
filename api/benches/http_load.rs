//! HTTP load benchmark: the `paycenter` binary (release) on loopback, many concurrent
//! keep-alive connections creating sandbox payments. Reports payments/s and p50/p99 latency,
//! then kills the server with SIGKILL, restarts it and checks that every acknowledged payment
//! is there.
//!
//! Run: `cargo bench -p paycenter-api --bench http_load`. Optional env:
//! `PAYCENTER_LOAD_SECONDS` (default 10), `PAYCENTER_LOAD_CONNECTIONS` (default 64),
//! `PAYCENTER_LOAD_POSTGRES_URL` (a `postgres://` URL: two nodes on that database, in a fresh
//! schema, with the connections spread over both), `PAYCENTER_LOAD_IDLE_CONNECTIONS` (default
//! 0: connections opened before the load and held through it without a request, half of them
//! stopped in the middle of their headers, as a slow or hostile client holds them).

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hyper::client::HttpConnector;
use hyper::{Body, Client, Request};
use serde_json::{json, Value};

const ADMIN_TOKEN: &str = "load-admin-token-0123456789";

fn env_number(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|text| text.parse().ok())
        .unwrap_or(default)
}

/// A PostgreSQL database and schema the nodes share.
struct Shared {
    url: String,
    schema: String,
}

fn start_server(data_dir: &std::path::Path, port: u16, shared: Option<&Shared>) -> Child {
    let mut command = Command::new(env!("CARGO_BIN_EXE_paycenter"));
    command.args([
        "serve",
        "--data-dir",
        data_dir.to_str().unwrap(),
        "--listen",
        &format!("127.0.0.1:{port}"),
    ]);
    if let Some(shared) = shared {
        command
            .args(["--store", &shared.url])
            .env("PAYCENTER_POSTGRES_SCHEMA", &shared.schema)
            .env(
                "PAYCENTER_MASTER_KEY",
                "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",
            );
    }
    let mut child = command
        .env("PAYCENTER_ADMIN_TOKEN", ADMIN_TOKEN)
        // Webhook receivers and fake gateways listen on loopback.
        .env("PAYCENTER_ALLOW_PRIVATE_EGRESS", "1")
        // One app drives the whole load: its request budget must not be what is measured.
        .env("PAYCENTER_APP_RATE_LIMIT_PER_SECOND", "1000000")
        .env("PAYCENTER_APP_RATE_LIMIT_BURST", "1000000")
        .env("RUST_LOG", "error")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("paycenter listening"), "{line}");
    child
}

async fn call(
    client: &Client<HttpConnector>,
    method: &str,
    url: &str,
    token: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let request = Request::builder()
        .method(method)
        .uri(url)
        .header("authorization", format!("Bearer {token}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |body| Body::from(body.to_string())))
        .unwrap();
    let response = client.request(request).await.unwrap();
    let status = response.status().as_u16();
    let bytes = hyper::body::to_bytes(response.into_body()).await.unwrap();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

fn percentile(sorted_us: &[u64], fraction: f64) -> u64 {
    if sorted_us.is_empty() {
        return 0;
    }
    sorted_us[((sorted_us.len() as f64 - 1.0) * fraction).round() as usize]
}

/// What one connection saw.
#[derive(Default)]
struct ConnectionResult {
    latencies_us: Vec<u64>,
    trade_nos: Vec<String>,
    n_errors: u64,
}

fn main() {
    let seconds = env_number("PAYCENTER_LOAD_SECONDS", 10);
    let n_connections = env_number("PAYCENTER_LOAD_CONNECTIONS", 64) as usize;
    let data_dir = tempfile::Builder::new()
        .prefix("paycenter-bench-")
        .tempdir_in(std::env::current_dir().unwrap())
        .unwrap();
    let shared = std::env::var("PAYCENTER_LOAD_POSTGRES_URL")
        .ok()
        .map(|url| Shared {
            url,
            schema: format!("pc_load_{}", std::process::id()),
        });
    let n_nodes = if shared.is_some() { 2 } else { 1 };
    let node_dirs: Vec<_> = (0..n_nodes)
        .map(|node_idx| data_dir.path().join(format!("node-{node_idx}")))
        .collect();
    let ports: Vec<u16> = (0..n_nodes)
        .map(|_| {
            TcpListener::bind("127.0.0.1:0")
                .unwrap()
                .local_addr()
                .unwrap()
                .port()
        })
        .collect();
    let bases: Vec<String> = ports
        .iter()
        .map(|port| format!("http://127.0.0.1:{port}"))
        .collect();
    let base = bases[0].clone();
    let mut servers: Vec<Child> = node_dirs
        .iter()
        .zip(&ports)
        .map(|(dir, port)| start_server(dir, *port, shared.as_ref()))
        .collect();

    // The client runs in this process on a 2-thread runtime: it shares the 2 cores.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client: Client<HttpConnector> = Client::builder()
        .pool_max_idle_per_host(n_connections)
        .build_http();
    let (merchant_id, channel_account_id, api_key) = runtime.block_on(async {
        let (_, merchant) = call(&client, "POST", &format!("{base}/v1/merchants"), ADMIN_TOKEN, Some(&json!({"name": "Load"}))).await;
        let merchant_id = merchant["merchant_id"].as_str().unwrap().to_owned();
        let (_, account) = call(
            &client,
            "POST",
            &format!("{base}/v1/merchants/{merchant_id}/channel-accounts"),
            ADMIN_TOKEN,
            Some(&json!({"channel": "sandbox", "params": {}})),
        )
        .await;
        let (_, app) = call(
            &client,
            "POST",
            &format!("{base}/v1/apps"),
            ADMIN_TOKEN,
            Some(&json!({"name": "load", "merchant_ids": [merchant_id], "notify_url": "http://127.0.0.1:9/none"})),
        )
        .await;
        let api_key = app["api_key"].as_str().unwrap().to_owned();
        // Every node must know the app before the load starts.
        for node_base in &bases {
            while call(&client, "GET", &format!("{node_base}/v1/notifications"), &api_key, None).await.0 != 200 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        (merchant_id, account["channel_account_id"].as_str().unwrap().to_owned(), api_key)
    });

    let n_idle = env_number("PAYCENTER_LOAD_IDLE_CONNECTIONS", 0) as usize;
    let idle: Vec<std::net::TcpStream> = (0..n_idle)
        .map(|idle_idx| {
            let mut stream =
                std::net::TcpStream::connect(base.trim_start_matches("http://")).unwrap();
            if idle_idx % 2 == 0 {
                std::io::Write::write_all(
                    &mut stream,
                    b"POST /v1/payments HTTP/1.1\r\nhost: x\r\n",
                )
                .unwrap();
            }
            stream
        })
        .collect();

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..n_connections)
        .map(|connection_idx| {
            let client = client.clone();
            let stop = stop.clone();
            let base = bases[connection_idx % bases.len()].clone();
            let (merchant_id, channel_account_id, api_key) = (merchant_id.clone(), channel_account_id.clone(), api_key.clone());
            runtime.spawn(async move {
                let mut result = ConnectionResult::default();
                let mut request_idx = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let body = json!({
                        "merchant_id": merchant_id, "channel_account_id": channel_account_id,
                        "order_no": format!("L{connection_idx}-{request_idx}"), "amount": "12.34", "currency": "CNY",
                        "invoke_method": "wap", "subject": "load"
                    });
                    let before = Instant::now();
                    let (status, answer) = call(&client, "POST", &format!("{base}/v1/payments"), &api_key, Some(&body)).await;
                    result.latencies_us.push(before.elapsed().as_micros() as u64);
                    match answer["trade_no"].as_str() {
                        Some(trade_no) if status == 201 => result.trade_nos.push(trade_no.to_owned()),
                        _ => result.n_errors += 1,
                    }
                    request_idx += 1;
                }
                result
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(seconds));
    stop.store(true, Ordering::Relaxed);
    let results: Vec<ConnectionResult> = runtime.block_on(async {
        let mut results = Vec::new();
        for task in tasks {
            results.push(task.await.unwrap());
        }
        results
    });
    let elapsed = started.elapsed().as_secs_f64();
    drop(idle);
    let mut latencies_us: Vec<u64> = results
        .iter()
        .flat_map(|result| result.latencies_us.iter().copied())
        .collect();
    let trade_nos: Vec<&String> = results
        .iter()
        .flat_map(|result| result.trade_nos.iter())
        .collect();
    let n_errors: u64 = results.iter().map(|result| result.n_errors).sum();
    latencies_us.sort_unstable();

    // Durability: SIGKILL every node, restart the first, every acknowledged payment must be there.
    for server in &mut servers {
        server.kill().unwrap();
        server.wait().unwrap();
    }
    let mut server = start_server(&node_dirs[0], ports[0], shared.as_ref());
    let n_missing: usize = runtime.block_on(async {
        let mut n_missing = 0;
        for chunk in trade_nos.chunks(256) {
            let checks: Vec<_> = chunk
                .iter()
                .map(|trade_no| {
                    let client = client.clone();
                    let url = format!("{base}/v1/payments/{trade_no}");
                    let api_key = api_key.clone();
                    tokio::spawn(async move { call(&client, "GET", &url, &api_key, None).await.0 })
                })
                .collect();
            for check in checks {
                if check.await.unwrap() != 200 {
                    n_missing += 1;
                }
            }
        }
        n_missing
    });
    server.kill().unwrap();
    server.wait().unwrap();

    if let Some(shared) = &shared {
        let mut admin = postgres::Client::connect(&shared.url, postgres::NoTls).unwrap();
        admin
            .batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", shared.schema))
            .unwrap();
    }
    let store_label = if shared.is_some() {
        "two nodes on PostgreSQL"
    } else {
        "one node, embedded store"
    };
    println!("# paycenter HTTP load ({seconds} s, {n_connections} connections, {n_idle} idle connections held, {store_label}, client and servers on this machine)");
    println!();
    println!("| payments created (201) | errors | payments/s | p50 | p99 | max | missing after SIGKILL + restart |");
    println!("|---|---|---|---|---|---|---|");
    println!(
        "| {} | {n_errors} | {:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {n_missing} |",
        trade_nos.len(),
        trade_nos.len() as f64 / elapsed,
        percentile(&latencies_us, 0.50) as f64 / 1000.0,
        percentile(&latencies_us, 0.99) as f64 / 1000.0,
        latencies_us.last().copied().unwrap_or(0) as f64 / 1000.0,
    );
    assert_eq!(n_missing, 0, "every acknowledged payment survives SIGKILL");
}
