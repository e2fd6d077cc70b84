//! HTTP load benchmark: the `paycenter` binary (release) on loopback, many concurrent
//! keep-alive connections creating sandbox payments. Reports payments/s and p50/p99 latency,
//! then kills the server with SIGKILL, restarts it and checks that every acknowledged payment
//! is there.
//!
//! Two ceilings are measured in the same run, so the figures read as ratios that hold from
//! machine to machine (these machines drift by 2x from hour to hour):
//! - **HTTP ceiling**: a minimal hyper server in its own process (this bench binary started
//!   again with `PAYCENTER_LOAD_CEILING_SERVER=1`) answering the same requests, from the same
//!   client code and as many connections, with a fixed `201` and a payment-sized JSON body.
//!   It is measured before paycenter's load and again after it (the machine drifts within a
//!   run too): each ratio is given against both, and the CPU one payment costs paycenter
//!   against the CPU one request costs the ceiling's server;
//! - **durability ceiling**: records of 1 KiB appended to one file, `fdatasync` once per batch
//!   of as many records as there are connections (the most one group commit can carry when
//!   every connection waits on it), and once per record.
//!
//! Run: `cargo bench -p paycenter-api --bench http_load`. Optional env:
//! `PAYCENTER_LOAD_SECONDS` (default 10), `PAYCENTER_LOAD_CONNECTIONS` (default 64),
//! `PAYCENTER_LOAD_POSTGRES_URL` (a `postgres://` URL: two nodes on that database, in a fresh
//! schema, with the connections spread over both), `PAYCENTER_LOAD_IDLE_CONNECTIONS` (default
//! 0: connections opened before the load and held through it without a request, half of them
//! stopped in the middle of their headers, as a slow or hostile client holds them),
//! `PAYCENTER_LOAD_SEED_DIR` (a data directory copied in before the start: load on a long log),
//! `PAYCENTER_LOAD_BINARY` (default: the `paycenter` built with this bench; another build's
//! binary to measure it against this one in the same session), `PAYCENTER_LOAD_AFTER_CHAIN_WALK`
//! (`1`: the load starts only once the background walk of the chain below the sealed checkpoint
//! has finished, as on a node that has run a while; by default a long log is loaded while the
//! walk takes its share of a core).

use std::io::{BufRead, BufReader, Write};
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
    let binary = std::env::var("PAYCENTER_LOAD_BINARY")
        .unwrap_or_else(|_| env!("CARGO_BIN_EXE_paycenter").to_owned());
    let mut command = Command::new(binary);
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
    listening_base(&mut child, "paycenter listening on ");
    child
}

/// Waits for a server child's first line, `<prefix><base URL>`, and answers the base URL.
fn listening_base(child: &mut Child, prefix: &str) -> String {
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    line.trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("{line:?}"))
        .to_owned()
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

/// A gauge's value in a Prometheus text page.
fn gauge_value(page: &str, name: &str) -> Option<f64> {
    page.lines().find_map(|line| {
        line.strip_prefix(name)?
            .strip_prefix(' ')?
            .trim()
            .parse()
            .ok()
    })
}

/// Waits until `base`'s background walk of the chain has reached the sealed checkpoint it
/// started from (at most an hour), and says how long that took.
fn wait_for_chain_walk(
    runtime: &tokio::runtime::Runtime,
    client: &Client<HttpConnector>,
    base: &str,
) {
    const MAX_WAIT_SECONDS: u64 = 3_600;
    let started = Instant::now();
    runtime.block_on(async {
        while started.elapsed() < Duration::from_secs(MAX_WAIT_SECONDS) {
            let response = client.get(format!("{base}/metrics").parse().unwrap()).await.unwrap();
            let page = hyper::body::to_bytes(response.into_body()).await.unwrap();
            let page = String::from_utf8_lossy(&page);
            let verified = gauge_value(&page, "paycenter_chain_verified_position");
            let checkpoint = gauge_value(&page, "paycenter_chain_checkpoint_position");
            if let (Some(verified), Some(checkpoint)) = (verified, checkpoint) {
                if verified >= checkpoint {
                    eprintln!(
                        "the chain walk reached the sealed checkpoint (position {checkpoint}) {:.0} s after the start",
                        started.elapsed().as_secs_f64()
                    );
                    return;
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
        panic!("the chain walk did not finish within {MAX_WAIT_SECONDS} s");
    });
}

/// The HTTP ceiling's server: reads each request's body and answers a fixed `201`. Prints its
/// address like `paycenter` does, then serves until killed.
fn serve_ceiling() -> ! {
    const ANSWER: &str = r#"{"trade_no":"2026120212000000000000000001","order_no":"L0-0","status":"pending","channel":"sandbox","invoke_method":"wap","action":{"type":"checkout_url","url":"http://127.0.0.1:8080/checkout/2026120212000000000000000001"}}"#;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async {
        let service = hyper::service::make_service_fn(|_| async {
            Ok::<_, std::convert::Infallible>(hyper::service::service_fn(
                |request: Request<Body>| async move {
                    let _ = hyper::body::to_bytes(request.into_body()).await;
                    Ok::<_, std::convert::Infallible>(
                        hyper::Response::builder()
                            .status(201)
                            .header("content-type", "application/json")
                            .body(Body::from(ANSWER))
                            .unwrap(),
                    )
                },
            ))
        });
        let server = hyper::Server::bind(&"127.0.0.1:0".parse().unwrap()).serve(service);
        println!("ceiling listening on http://{}", server.local_addr());
        std::io::stdout().flush().unwrap();
        server.await.unwrap();
    });
    unreachable!("the ceiling server stops only when killed")
}

/// About the bytes one event takes in the log (as the store bench's records).
const RECORD_BYTES: usize = 1024;

/// The durability ceiling (`paycenter_store::ceiling`) for `batch` writers, over 3 s.
fn fsync_ceiling(dir: &std::path::Path, batch: usize) -> f64 {
    paycenter_store::ceiling::group_commit_records_per_second(
        dir,
        batch,
        RECORD_BYTES,
        Duration::from_secs(3),
    )
    .unwrap()
}

/// User plus system CPU time a process has used so far, in ms (Linux `/proc/<pid>/stat`; 0
/// where it cannot be read).
fn process_cpu_ms(pid: u32) -> u64 {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let Some(after_name) = stat.rsplit_once(')').map(|(_, rest)| rest) else {
        return 0;
    };
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let ticks: u64 = [11, 12]
        .iter()
        .filter_map(|idx| fields.get(*idx)?.parse::<u64>().ok())
        .sum();
    // SAFETY: sysconf has no preconditions.
    let ticks_per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    ticks * 1000 / ticks_per_second
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

/// What a load run saw, all connections together.
struct LoadResult {
    /// Sorted.
    latencies_us: Vec<u64>,
    trade_nos: Vec<String>,
    n_errors: u64,
    elapsed_seconds: f64,
}

/// `n_connections` keep-alive connections, spread over `bases`, each creating payments one
/// after the other for `seconds`.
#[allow(clippy::too_many_arguments)]
fn drive(
    runtime: &tokio::runtime::Runtime,
    client: &Client<HttpConnector>,
    bases: &[String],
    n_connections: usize,
    seconds: u64,
    api_key: &str,
    merchant_id: &str,
    channel_account_id: &str,
) -> LoadResult {
    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let tasks: Vec<_> = (0..n_connections)
        .map(|connection_idx| {
            let client = client.clone();
            let stop = stop.clone();
            let base = bases[connection_idx % bases.len()].clone();
            let (merchant_id, channel_account_id, api_key) = (merchant_id.to_owned(), channel_account_id.to_owned(), api_key.to_owned());
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
    let elapsed_seconds = started.elapsed().as_secs_f64();
    let mut latencies_us: Vec<u64> = results
        .iter()
        .flat_map(|result| result.latencies_us.iter().copied())
        .collect();
    latencies_us.sort_unstable();
    LoadResult {
        latencies_us,
        n_errors: results.iter().map(|result| result.n_errors).sum(),
        trade_nos: results
            .into_iter()
            .flat_map(|result| result.trade_nos)
            .collect(),
        elapsed_seconds,
    }
}

/// One measurement of the HTTP ceiling.
struct Ceiling {
    load: LoadResult,
    /// CPU time its server used during the load, in ms.
    server_cpu_ms: u64,
}

impl Ceiling {
    fn requests_per_second(&self) -> f64 {
        self.load.trade_nos.len() as f64 / self.load.elapsed_seconds
    }

    fn p99_us(&self) -> u64 {
        percentile(&self.load.latencies_us, 0.99).max(1)
    }

    fn cpu_us_per_request(&self) -> f64 {
        self.server_cpu_ms as f64 * 1000.0 / self.load.latencies_us.len().max(1) as f64
    }
}

/// The HTTP ceiling: the same load against [`serve_ceiling`] in a process of its own, with a
/// client of its own (its connections must not be reused for paycenter, nor paycenter's for it).
fn http_ceiling(runtime: &tokio::runtime::Runtime, n_connections: usize, seconds: u64) -> Ceiling {
    let client: Client<HttpConnector> = Client::builder()
        .pool_max_idle_per_host(n_connections)
        .build_http();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .env("PAYCENTER_LOAD_CEILING_SERVER", "1")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let base = listening_base(&mut child, "ceiling listening on ");
    let cpu_before_ms = process_cpu_ms(child.id());
    let load = drive(
        runtime,
        &client,
        &[base],
        n_connections,
        seconds,
        "ceiling",
        "mch_ceiling",
        "ca_ceiling",
    );
    let server_cpu_ms = process_cpu_ms(child.id()).saturating_sub(cpu_before_ms);
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(load.n_errors, 0, "the ceiling server answers every request");
    Ceiling {
        load,
        server_cpu_ms,
    }
}

fn main() {
    if std::env::var("PAYCENTER_LOAD_CEILING_SERVER").as_deref() == Ok("1") {
        serve_ceiling();
    }
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
    // The ceilings first, on a quiet machine like the one paycenter gets.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let ceiling_before = http_ceiling(&runtime, n_connections, seconds);
    let fsync_batched = fsync_ceiling(data_dir.path(), n_connections);
    let fsync_single = fsync_ceiling(data_dir.path(), 1);

    let n_nodes = if shared.is_some() { 2 } else { 1 };
    let node_dirs: Vec<_> = (0..n_nodes)
        .map(|node_idx| data_dir.path().join(format!("node-{node_idx}")))
        .collect();
    // A data directory to start from instead of an empty one (embedded store): payments/s on
    // a long log, e.g. one the rebuild bench filled (`PAYCENTER_BENCH_DATA_DIR`).
    if let Some(seed) = std::env::var_os("PAYCENTER_LOAD_SEED_DIR") {
        assert!(
            shared.is_none(),
            "a seed directory is for the embedded store"
        );
        let status = Command::new("cp")
            .arg("-r")
            .arg(&seed)
            .arg(&node_dirs[0])
            .status()
            .unwrap();
        assert!(status.success(), "copying {seed:?}");
        // The copy leaves gigabytes of dirty pages: flushed now, not by the kernel's writeback
        // during the load, where they would stall the log's fsyncs and be measured as the
        // service's.
        let status = Command::new("sync").status().unwrap();
        assert!(status.success(), "sync after copying {seed:?}");
    }
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

    if std::env::var("PAYCENTER_LOAD_AFTER_CHAIN_WALK").as_deref() == Ok("1") {
        wait_for_chain_walk(&runtime, &client, &base);
    }

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

    let server_cpu_before_ms: u64 = servers
        .iter()
        .map(|server| process_cpu_ms(server.id()))
        .sum();
    let load = drive(
        &runtime,
        &client,
        &bases,
        n_connections,
        seconds,
        &api_key,
        &merchant_id,
        &channel_account_id,
    );
    let server_cpu_ms = servers
        .iter()
        .map(|server| process_cpu_ms(server.id()))
        .sum::<u64>()
        .saturating_sub(server_cpu_before_ms);
    drop(idle);
    let LoadResult {
        latencies_us,
        trade_nos,
        n_errors,
        elapsed_seconds: elapsed,
    } = load;
    let trade_nos: Vec<&String> = trade_nos.iter().collect();

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
    // Reads on the log the load left (embedded store): a list's first page, a filter that
    // matches nothing (it reads the app's whole index), a day of statistics by the hour;
    // beside a raw SQLite scan of the same index rows in the model's file.
    // (Skipped for a binary that does not serve lists: an earlier build measured beside this.)
    let serves_lists = runtime.block_on(async {
        let url = format!("{base}/v1/payments?limit=1");
        call(&client, "GET", &url, &api_key, None).await.0 == 200
    });
    let reads = (shared.is_none() && serves_lists).then(|| {
        let timed = |url: String, token: &str, n_requests: usize| -> f64 {
            let mut millis: Vec<f64> = runtime.block_on(async {
                let mut millis = Vec::with_capacity(n_requests);
                for _ in 0..n_requests {
                    let started = Instant::now();
                    let (status, _) = call(&client, "GET", &url, token, None).await;
                    assert_eq!(status, 200, "{url}");
                    millis.push(started.elapsed().as_secs_f64() * 1000.0);
                }
                millis
            });
            millis.sort_by(f64::total_cmp);
            millis[millis.len() / 2]
        };
        let first_page = timed(format!("{base}/v1/payments?limit=100"), &api_key, 20);
        let no_match = timed(
            format!("{base}/v1/payments?limit=100&status=succeeded"),
            &api_key,
            5,
        );
        let stats = timed(
            format!("{base}/v1/merchants/{merchant_id}/stats?granularity=hour"),
            ADMIN_TOKEN,
            20,
        );
        let raw_scan = raw_index_scan_ms(&node_dirs[0]);
        (first_page, no_match, stats, raw_scan)
    });
    server.kill().unwrap();
    server.wait().unwrap();
    // The HTTP ceiling again, on the machine as it is now: its speed drifts within a run too,
    // and a ratio against one side alone would count the drift as paycenter's.
    let ceiling_after = http_ceiling(&runtime, n_connections, seconds);

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
    let payments_per_second = trade_nos.len() as f64 / elapsed;
    let p99_us = percentile(&latencies_us, 0.99);
    let server_cpu_us_per_payment =
        server_cpu_ms as f64 * 1000.0 / latencies_us.len().max(1) as f64;
    // Each ratio against both ceilings, the lower first: the load ran between them.
    let against_ceilings = |ratio: &dyn Fn(&Ceiling) -> f64| {
        let (before, after) = (ratio(&ceiling_before), ratio(&ceiling_after));
        (before.min(after), before.max(after))
    };
    let throughput =
        against_ceilings(&|ceiling| payments_per_second / ceiling.requests_per_second());
    let p99 = against_ceilings(&|ceiling| p99_us as f64 / ceiling.p99_us() as f64);
    let cpu = against_ceilings(&|ceiling| {
        server_cpu_us_per_payment / ceiling.cpu_us_per_request().max(0.001)
    });
    println!("# paycenter HTTP load ({seconds} s, {n_connections} connections, {n_idle} idle connections held, {store_label}, client and servers on this machine)");
    println!();
    println!("| what | requests (201) | errors | per second | p50 | p99 | max | missing after SIGKILL + restart |");
    println!("|---|---|---|---|---|---|---|---|");
    let row = |what: &str,
               result_len: usize,
               n_errors: u64,
               rate: f64,
               sorted: &[u64],
               missing: &str| {
        println!(
            "| {what} | {result_len} | {n_errors} | {rate:.0} | {:.2} ms | {:.2} ms | {:.2} ms | {missing} |",
            percentile(sorted, 0.50) as f64 / 1000.0,
            percentile(sorted, 0.99) as f64 / 1000.0,
            sorted.last().copied().unwrap_or(0) as f64 / 1000.0,
        );
    };
    let ceiling_row = |when: &str, ceiling: &Ceiling| {
        row(
            &format!("HTTP ceiling (fixed 201), {when}"),
            ceiling.load.trade_nos.len(),
            ceiling.load.n_errors,
            ceiling.requests_per_second(),
            &ceiling.load.latencies_us,
            "-",
        )
    };
    ceiling_row("before", &ceiling_before);
    row(
        "paycenter (payments)",
        trade_nos.len(),
        n_errors,
        payments_per_second,
        &latencies_us,
        &n_missing.to_string(),
    );
    ceiling_row("after", &ceiling_after);
    println!();
    println!("| durability ceiling (1 KiB records, one file) | records/s |");
    println!("|---|---|");
    println!("| {n_connections} records per fdatasync | {fsync_batched:.0} |");
    println!("| 1 record per fdatasync | {fsync_single:.0} |");
    println!();
    println!(
        "payments/s = {:.3}–{:.3} x the HTTP ceiling; p99 = {:.1}–{:.1} x the ceiling's p99; payments/s = {:.3} x the durability ceiling ({n_connections} per fdatasync)",
        throughput.0,
        throughput.1,
        p99.0,
        p99.1,
        payments_per_second / fsync_batched,
    );
    // CPU time is steadier than throughput on a machine whose speed drifts: what one payment
    // costs the server, whatever else runs beside it; beside it, what one request costs the
    // ceiling's server, whose work is fixed, so the quotient sheds the machine's speed.
    println!(
        "server CPU during the load: {:.1} s, {server_cpu_us_per_payment:.0} µs per payment; the ceiling's server: {:.1} µs per request before, {:.1} after; a payment = {:.1}–{:.1} x a ceiling request's CPU",
        server_cpu_ms as f64 / 1000.0,
        ceiling_before.cpu_us_per_request(),
        ceiling_after.cpu_us_per_request(),
        cpu.0,
        cpu.1,
    );
    if let Some((first_page, no_match, stats, raw_scan)) = reads {
        println!();
        println!(
            "| reads after the load ({} payments; median) | ms |",
            trade_nos.len()
        );
        println!("|---|---|");
        println!("| `GET /v1/payments?limit=100` (first page) | {first_page:.2} |");
        println!("| `GET /v1/payments?limit=100&status=succeeded` (matches nothing: the whole index) | {no_match:.2} |");
        println!("| `GET /v1/merchants/{{id}}/stats?granularity=hour` (24 buckets) | {stats:.2} |");
        println!("| raw SQLite scan of the same index rows (baseline) | {raw_scan:.2} |");
        println!();
        println!(
            "a filter that matches nothing = {:.1} x the raw scan of its rows",
            no_match / raw_scan.max(0.001)
        );
    }
    assert_eq!(n_missing, 0, "every acknowledged payment survives SIGKILL");
}

/// Milliseconds a raw SQLite scan takes over the rows of the app's payments index in the
/// model's file (read-only, median of 5): the floor of a list that reads all of them.
fn raw_index_scan_ms(data_dir: &std::path::Path) -> f64 {
    // The space of `payments_listed_by_app` (`projections::model::space`).
    const PAYMENTS_LISTED_BY_APP: i64 = 63;
    let projections = data_dir.join("projections");
    let live = std::fs::read_dir(&projections)
        .unwrap()
        .flatten()
        .map(|entry| entry.path())
        .find(|path| {
            path.extension()
                .is_some_and(|extension| extension == "sqlite")
                && path
                    .file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("read_model.")
        })
        .expect("the read model's file");
    let connection =
        rusqlite::Connection::open_with_flags(&live, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
    let mut millis: Vec<f64> = (0..5)
        .map(|_| {
            let started = Instant::now();
            let (n_rows, n_bytes): (i64, i64) = connection
                .query_row(
                    "SELECT count(*), sum(length(key) + length(value)) FROM rows WHERE space = ?1",
                    [PAYMENTS_LISTED_BY_APP],
                    |row| Ok((row.get(0)?, row.get::<_, Option<i64>>(1)?.unwrap_or(0))),
                )
                .unwrap();
            assert!(n_rows > 0 && n_bytes > 0);
            started.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    millis.sort_by(f64::total_cmp);
    millis[millis.len() / 2]
}
