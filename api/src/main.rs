//! `paycenter`: the payment center service.
//!
//! Every option of `serve` comes from its flag, else its environment variable, else the
//! `--config` file (TOML), else its default.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use paycenter_api::server::{serve, ServeOptions};

/// mimalloc instead of glibc's malloc: a profile of `serve` under load spent a fifth of its
/// samples in glibc's malloc and free (consolidating fast bins for frees from other threads
/// above all); see `docs/benchmarks.md`.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The environment `serve` reads besides its options' own variables.
const ENVIRONMENT_HELP: &str = "environment (besides each option's own variable):
  PAYCENTER_ADMIN_TOKEN                 admin bearer token (at least 16 characters; shorter: exit 2)
  PAYCENTER_MASTER_KEY                  base64 of 32 bytes; else DIR/master.key is created (0600)
  PAYCENTER_MIN_ATTEMPT_INTERVAL_MS     spacing of attempts for one order (default 15000)
  PAYCENTER_WEBHOOK_RETRY_SCHEDULE_MS   webhook retry delays, comma separated
  PAYCENTER_POSTGRES_SCHEMA             schema of the PostgreSQL store (default paycenter)
  PAYCENTER_EVENTSTOREDB_STREAM         EventStoreDB stream holding the log (default paycenter-log)
  PAYCENTER_ALLOW_PRIVATE_EGRESS        1: webhooks and gateways may be loopback or private addresses
  PAYCENTER_CA_FILE                     PEM trust roots added to the system's for outbound TLS
  PAYCENTER_HTTPS_PROXY                 the only proxy outbound calls use (it must enforce egress)
  PAYCENTER_MAX_CONNECTIONS             connections served at once (default 4096)
  PAYCENTER_HEADER_READ_TIMEOUT_MS      time to send request headers (default 10000)
  PAYCENTER_REQUEST_TIMEOUT_MS          time a request may take, body included (default 60000)
  PAYCENTER_APP_RATE_LIMIT_PER_SECOND   requests per second per app (default 200)
  PAYCENTER_APP_RATE_LIMIT_BURST        burst per app (default 400)
  PAYCENTER_WEBHOOK_TIMEOUT_MS          timeout of each webhook POST (default 10000)
  PAYCENTER_CHANNEL_TIMEOUT_MS          timeout of each channel call (default 10000)
  PAYCENTER_SWEEP_AFTER_SECONDS         age at which pending payments are queried (default 300)
  PAYCENTER_SANDBOX                     0: no sandbox channel, /sandbox/* answers 404 (default 1)
  PAYCENTER_NODE_ID                     this node's name in leases (default host-pid-random)
  PAYCENTER_RECONCILE_HOUR              hour of the channel's day when yesterday's bill is reconciled (10)
  PAYCENTER_RECONCILE_CHECK_SECONDS     seconds between looks for due bills (default 600)
  PAYCENTER_ALERT_INTERVAL_SECONDS      seconds between evaluations of the alert rules (default 30)
  PAYCENTER_ALERT_CHANNEL_FAILURE_PERCENT  a channel account alerts at this failure share (default 50)
  PAYCENTER_ALERT_CHANNEL_MIN_ATTEMPTS  ...of at least this many initiations (default 10)
  PAYCENTER_ALERT_CHANNEL_WINDOW_SECONDS ...within this window (default 300)
  PAYCENTER_ALERT_WEBHOOK_FAILING_SECONDS an app's webhooks alert after failing this long (default 1800)
  PAYCENTER_ALERT_PROJECTION_LAG_SECONDS a projection alerts this far behind the log (default 60)
  PAYCENTER_ALERT_DISK_FREE_MB          the data directory's disk alerts below this (default 1024)
  PAYCENTER_ALERT_CREDENTIALS_EXPIRY_DAYS a channel account's keys alert this close to expiry (default 14)
  PAYCENTER_BREAKER_FAILURE_PERCENT     a channel account's breaker opens at this failure share (default 50)
  PAYCENTER_BREAKER_MIN_CALLS           ...of at least this many recent initiations (default 10)
  PAYCENTER_BREAKER_WINDOW_SECONDS      ...within this window (default 60)
  PAYCENTER_BREAKER_OPEN_SECONDS        an open breaker lets a probe through after this (default 30)
  RUST_LOG                              log filter (default info)";

#[derive(Parser, Debug)]
#[command(
    name = "paycenter",
    version,
    about = "paycenter: an event-sourced payment center"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Runs the service (embedded store in --data-dir unless --store names a server).
    #[command(after_help = ENVIRONMENT_HELP)]
    Serve(ServeArgs),
}

#[derive(clap::Args, Debug)]
struct ServeArgs {
    /// Embedded store directory; it also keeps the master key file and the read model's files [default: ./data]
    #[arg(long, env = "PAYCENTER_DATA_DIR", value_name = "DIR")]
    data_dir: Option<PathBuf>,
    /// Address to listen on [default: 127.0.0.1:8080]
    #[arg(long, env = "PAYCENTER_LISTEN", value_name = "ADDR")]
    listen: Option<SocketAddr>,
    /// postgres://user:password@host/database (sslmode honoured) for PostgreSQL;
    /// esdb://host:2113?tls=false for EventStoreDB / KurrentDB (eventstoredb feature);
    /// omitted, the embedded store in --data-dir
    #[arg(long, env = "PAYCENTER_STORE", value_name = "URL")]
    store: Option<String>,
    /// Base URL channels and users reach paycenter at [default: http://ADDR]
    #[arg(long, env = "PAYCENTER_PUBLIC_URL", value_name = "URL")]
    public_url: Option<String>,
    /// A TOML file with data_dir, listen, store and public_url (flag > environment > file > default)
    #[arg(long, env = "PAYCENTER_CONFIG", value_name = "FILE")]
    config: Option<PathBuf>,
}

/// What a `--config` file may hold.
#[derive(serde::Deserialize, Default, Debug)]
#[serde(deny_unknown_fields)]
struct ConfigFile {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    store: Option<String>,
    public_url: Option<String>,
}

fn read_config(path: &std::path::Path) -> Result<ConfigFile, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|error| format!("--config {}: {error}", path.display()))?;
    toml::from_str(&text).map_err(|error| format!("--config {}: {error}", path.display()))
}

fn options(args: ServeArgs) -> Result<ServeOptions, String> {
    let mut options = ServeOptions::from_env().map_err(|error| error.to_string())?;
    let file = match &args.config {
        Some(path) => read_config(path)?,
        None => ConfigFile::default(),
    };
    if let Some(data_dir) = args.data_dir.or(file.data_dir) {
        options.data_dir = data_dir;
    }
    if let Some(listen) = args.listen.or(file.listen) {
        options.listen = listen;
    }
    options.store_url = args.store.or(file.store);
    options.public_url = args
        .public_url
        .or(file.public_url)
        .map(|url| url.trim_end_matches('/').to_owned());
    Ok(options)
}

/// Malloc arenas glibc may create (by default 8 per core): with the blocking-thread pool each
/// thread got an arena of its own whose freed memory stayed resident, and resident memory grew
/// by some 200 MB in a minute of work on a long log; with four it stays flat
/// (`docs/benchmarks.md`, "Memory and start-up"). `MALLOC_ARENA_MAX` in the environment wins.
fn limit_malloc_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        const MAX_ARENAS: libc::c_int = 4;
        // SAFETY: mallopt only sets an allocator parameter; called before any thread starts.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, MAX_ARENAS);
        }
    }
}

fn main() {
    let Command::Serve(args) = Cli::parse().command;
    let options = match options(args) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("paycenter: {message}");
            std::process::exit(2);
        }
    };
    // Everything paycenter creates (data directory, event log, WAL, read model files, lock and
    // key files) is for its own user only: directories 0700, files 0600.
    // SAFETY: umask only sets this process's file mode mask; it cannot fail.
    unsafe {
        libc::umask(0o077);
    }
    limit_malloc_arenas();
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
