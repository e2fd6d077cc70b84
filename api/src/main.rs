//! `paycenter`: the payment center service.

use std::path::PathBuf;

use paycenter_api::server::{serve, ServeOptions};

const USAGE: &str =
    "usage: paycenter serve [--data-dir DIR] [--listen ADDR] [--store URL] [--public-url URL]

  --data-dir DIR     embedded store directory (default ./data)
  --listen ADDR      address to listen on (default 127.0.0.1:8080)
  --store URL        postgres://user:password@host/database for PostgreSQL;
                     esdb://host:2113?tls=false for EventStoreDB / KurrentDB (builds with
                     the eventstoredb feature); omitted, the embedded store in --data-dir
                     (which keeps the master key and snapshots either way)
  --public-url URL   base URL channels and users reach paycenter at (default http://ADDR)

environment:
  PAYCENTER_ADMIN_TOKEN                 admin bearer token (at least 16 characters; shorter: exit 2)
  PAYCENTER_MASTER_KEY                  base64 of 32 bytes; else DIR/master.key is created (0600)
  PAYCENTER_MIN_ATTEMPT_INTERVAL_MS     spacing of attempts for one order (default 15000)
  PAYCENTER_WEBHOOK_RETRY_SCHEDULE_MS   webhook retry delays, comma separated
  PAYCENTER_SNAPSHOT_INTERVAL_SECONDS   seconds between read model snapshots (default 300)
  PAYCENTER_POSTGRES_SCHEMA             schema of the PostgreSQL store (default paycenter)
  PAYCENTER_EVENTSTOREDB_STREAM         EventStoreDB stream holding the log (default paycenter-log)
  PAYCENTER_ALLOW_PRIVATE_EGRESS        1: webhooks and gateways may be loopback or private addresses
  PAYCENTER_MAX_CONNECTIONS             connections served at once (default 4096)
  PAYCENTER_HEADER_READ_TIMEOUT_MS      time to send request headers (default 10000)
  PAYCENTER_REQUEST_TIMEOUT_MS          time a request may take, body included (default 60000)
  PAYCENTER_APP_RATE_LIMIT_PER_SECOND   requests per second per app (default 200)
  PAYCENTER_APP_RATE_LIMIT_BURST        burst per app (default 400)
  PAYCENTER_WEBHOOK_TIMEOUT_MS          timeout of each webhook POST (default 10000)
  PAYCENTER_CHANNEL_TIMEOUT_MS          timeout of each channel call (default 10000)
  PAYCENTER_SWEEP_AFTER_SECONDS         age at which pending payments are queried (default 300)
  PAYCENTER_NODE_ID                     this node's name in leases (default host-pid-random)
  RUST_LOG                              log filter (default info)";

fn parse_args(args: &[String]) -> Result<ServeOptions, String> {
    let mut options = ServeOptions::from_env().map_err(|error| error.to_string())?;
    let Some(command) = args.first() else {
        return Err(USAGE.to_owned());
    };
    if command == "--help" || command == "-h" || command == "help" {
        return Err(USAGE.to_owned());
    }
    if command != "serve" {
        return Err(format!("unknown command {command:?}\n\n{USAGE}"));
    }
    let mut rest = args[1..].iter();
    while let Some(flag) = rest.next() {
        if flag == "--help" || flag == "-h" {
            return Err(USAGE.to_owned());
        }
        let value = rest
            .next()
            .ok_or_else(|| format!("{flag} needs a value\n\n{USAGE}"))?;
        match flag.as_str() {
            "--data-dir" => options.data_dir = PathBuf::from(value),
            "--listen" => {
                options.listen = value.parse().map_err(|_| {
                    format!("--listen {value:?} is not an address like 127.0.0.1:8080")
                })?
            }
            "--store" => options.store_url = Some(value.clone()),
            "--public-url" => options.public_url = Some(value.trim_end_matches('/').to_owned()),
            other => return Err(format!("unknown option {other:?}\n\n{USAGE}")),
        }
    }
    Ok(options)
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let options = match parse_args(&args) {
        Ok(options) => options,
        Err(message) => {
            let asked_for_help = args
                .iter()
                .any(|arg| arg == "--help" || arg == "-h" || arg == "help");
            eprintln!("{message}");
            std::process::exit(if asked_for_help { 0 } else { 2 });
        }
    };
    // Everything paycenter creates (data directory, event log, WAL, snapshots, lock and key
    // files) is for its own user only: directories 0700, files 0600.
    // SAFETY: umask only sets this process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    if !options.admin_token.is_empty() && options.admin_token.chars().count() < 16 {
        eprintln!("PAYCENTER_ADMIN_TOKEN must be at least 16 characters (a long random string); refusing to start");
        std::process::exit(2);
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    if let Err(error) = runtime.block_on(serve(options)) {
        eprintln!("paycenter: {error:#}");
        std::process::exit(1);
    }
}
