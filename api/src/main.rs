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
  PAYCENTER_ADMIN_TOKEN                 admin bearer token (at least 16 characters)
  PAYCENTER_MASTER_KEY                  base64 of 32 bytes; else DIR/master.key is created (0600)
  PAYCENTER_MIN_ATTEMPT_INTERVAL_MS     spacing of attempts for one order (default 15000)
  PAYCENTER_WEBHOOK_RETRY_SCHEDULE_MS   webhook retry delays, comma separated
  PAYCENTER_SNAPSHOT_INTERVAL_SECONDS   seconds between read model snapshots (default 300)
  PAYCENTER_POSTGRES_SCHEMA             schema of the PostgreSQL store (default paycenter)
  PAYCENTER_EVENTSTOREDB_STREAM         EventStoreDB stream holding the log (default paycenter-log)
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
