//! Start-up and shutdown of `paycenter serve`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, RwLock};

use paycenter_domain::notification::RetrySchedule;
use paycenter_domain::payment::DEFAULT_MIN_ATTEMPT_INTERVAL_MS;
use paycenter_gateway::alipay::AlipayChannel;
use paycenter_gateway::registry::ChannelRegistry;
use paycenter_gateway::sandbox::{SandboxChannel, SandboxProvider};
use paycenter_gateway::stripe::StripeChannel;
use paycenter_gateway::wechatpay::WechatpayChannel;
use paycenter_store::{EventStore, PostgresStore, SqliteConfig, SqliteStore};

use crate::keys::MasterKey;
use crate::state::{AppState, ServiceConfig};

/// Options of `paycenter serve`.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    /// Data directory of the embedded store.
    pub data_dir: PathBuf,
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Store URL: `None` for the embedded store, `postgres://...` for PostgreSQL.
    pub store_url: Option<String>,
    /// Public base URL; defaults to `http://<listen>`.
    pub public_url: Option<String>,
    /// Admin bearer token (`PAYCENTER_ADMIN_TOKEN`).
    pub admin_token: String,
    /// Master key, base64 (`PAYCENTER_MASTER_KEY`).
    pub master_key: Option<String>,
    /// Minimum spacing of attempts for one order (`PAYCENTER_MIN_ATTEMPT_INTERVAL_MS`).
    pub min_attempt_interval_ms: i64,
    /// Webhook retry delays (`PAYCENTER_WEBHOOK_RETRY_SCHEDULE_MS`, comma separated).
    pub retry_schedule: RetrySchedule,
    /// Timeout of each webhook POST (`PAYCENTER_WEBHOOK_TIMEOUT_MS`).
    pub webhook_timeout_ms: u64,
    /// This node's name among nodes sharing a store (`PAYCENTER_NODE_ID`); host, process
    /// id and a random suffix by default.
    pub node_id: String,
    /// Timeout of each call to a channel (`PAYCENTER_CHANNEL_TIMEOUT_MS`).
    pub channel_timeout_ms: u64,
    /// Age after which a pending payment or refund is queried at its channel, and the spacing
    /// of later queries (`PAYCENTER_SWEEP_AFTER_SECONDS`).
    pub sweep_after_seconds: u64,
    /// Connection and request limits of the HTTP listener (`PAYCENTER_MAX_CONNECTIONS`,
    /// `PAYCENTER_HEADER_READ_TIMEOUT_MS`, `PAYCENTER_REQUEST_TIMEOUT_MS`).
    pub http_limits: crate::http::listener::HttpLimits,
    /// Requests per second and burst each app may send (`PAYCENTER_APP_RATE_LIMIT_PER_SECOND`,
    /// `PAYCENTER_APP_RATE_LIMIT_BURST`).
    pub app_rate_limit: crate::rate_limit::RateLimit,
    /// Where outbound calls may go (`PAYCENTER_ALLOW_PRIVATE_EGRESS`).
    pub egress: paycenter_gateway::egress::EgressPolicy,
    /// Whether the sandbox channel runs (`PAYCENTER_SANDBOX`, default on; `0` for production).
    pub sandbox_enabled: bool,
    /// When yesterday's bills are fetched and reconciled (`PAYCENTER_RECONCILE_HOUR`,
    /// `PAYCENTER_RECONCILE_CHECK_SECONDS`).
    pub daily_reconciliation: crate::service::reconciliation::DailySchedule,
    /// Thresholds of the alert rules (`PAYCENTER_ALERT_*`).
    pub alerts: crate::service::alert_rules::AlertThresholds,
    /// Channel accounts' circuit breakers (`PAYCENTER_BREAKER_*`).
    pub breaker: paycenter_domain::routing::BreakerConfig,
}

/// A whole number from the environment within `range`, or `default` when unset.
/// The alert rules' thresholds from `PAYCENTER_ALERT_*` (defaults in `AlertThresholds`).
fn alert_thresholds() -> anyhow::Result<crate::service::alert_rules::AlertThresholds> {
    let defaults = crate::service::alert_rules::AlertThresholds::default();
    Ok(crate::service::alert_rules::AlertThresholds {
        interval_seconds: env_number(
            "PAYCENTER_ALERT_INTERVAL_SECONDS",
            1..=3_600,
            defaults.interval_seconds,
        )?,
        channel_failure_percent: env_number(
            "PAYCENTER_ALERT_CHANNEL_FAILURE_PERCENT",
            1..=100,
            defaults.channel_failure_percent,
        )?,
        channel_min_attempts: env_number(
            "PAYCENTER_ALERT_CHANNEL_MIN_ATTEMPTS",
            1..=100_000,
            defaults.channel_min_attempts,
        )?,
        channel_window_seconds: env_number(
            "PAYCENTER_ALERT_CHANNEL_WINDOW_SECONDS",
            10..=86_400,
            defaults.channel_window_seconds,
        )?,
        webhook_failing_seconds: env_number(
            "PAYCENTER_ALERT_WEBHOOK_FAILING_SECONDS",
            1..=604_800,
            defaults.webhook_failing_seconds,
        )?,
        projection_lag_seconds: env_number(
            "PAYCENTER_ALERT_PROJECTION_LAG_SECONDS",
            1..=86_400,
            defaults.projection_lag_seconds,
        )?,
        disk_free_mb: env_number(
            "PAYCENTER_ALERT_DISK_FREE_MB",
            0..=100_000_000,
            defaults.disk_free_mb,
        )?,
        credentials_expiry_days: env_number(
            "PAYCENTER_ALERT_CREDENTIALS_EXPIRY_DAYS",
            0..=3_650,
            defaults.credentials_expiry_days,
        )?,
    })
}

fn env_number(
    name: &str,
    range: std::ops::RangeInclusive<u64>,
    default: u64,
) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(text) => text
            .trim()
            .parse()
            .ok()
            .filter(|value| range.contains(value))
            .ok_or_else(|| {
                anyhow::anyhow!(
                    "{name} must be a whole number from {} to {}",
                    range.start(),
                    range.end()
                )
            }),
    }
}

impl ServeOptions {
    /// Defaults, read from the environment where the brief says so.
    pub fn from_env() -> anyhow::Result<ServeOptions> {
        let retry_schedule = match std::env::var("PAYCENTER_WEBHOOK_RETRY_SCHEDULE_MS") {
            Ok(text) => RetrySchedule {
                retry_delays_ms: text
                    .split(',')
                    .map(|part| part.trim().parse::<u64>())
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| anyhow::anyhow!("PAYCENTER_WEBHOOK_RETRY_SCHEDULE_MS must be comma-separated milliseconds"))?,
            },
            Err(_) => RetrySchedule::default(),
        };
        let min_attempt_interval_ms = match std::env::var("PAYCENTER_MIN_ATTEMPT_INTERVAL_MS") {
            Ok(text) => text.parse().map_err(|_| {
                anyhow::anyhow!("PAYCENTER_MIN_ATTEMPT_INTERVAL_MS must be milliseconds")
            })?,
            Err(_) => DEFAULT_MIN_ATTEMPT_INTERVAL_MS,
        };
        Ok(ServeOptions {
            data_dir: PathBuf::from("./data"),
            listen: "127.0.0.1:8080".parse().expect("valid address"),
            store_url: None,
            public_url: None,
            admin_token: std::env::var("PAYCENTER_ADMIN_TOKEN").unwrap_or_default(),
            master_key: std::env::var("PAYCENTER_MASTER_KEY").ok(),
            min_attempt_interval_ms,
            retry_schedule,
            webhook_timeout_ms: match std::env::var("PAYCENTER_WEBHOOK_TIMEOUT_MS") {
                Ok(text) => text
                    .parse()
                    .ok()
                    .filter(|timeout_ms| (100..=120_000).contains(timeout_ms))
                    .ok_or_else(|| {
                        anyhow::anyhow!(
                            "PAYCENTER_WEBHOOK_TIMEOUT_MS must be milliseconds from 100 to 120000"
                        )
                    })?,
                Err(_) => 10_000,
            },
            channel_timeout_ms: env_number("PAYCENTER_CHANNEL_TIMEOUT_MS", 100..=120_000, 10_000)?,
            sweep_after_seconds: env_number("PAYCENTER_SWEEP_AFTER_SECONDS", 1..=86_400, 300)?,
            http_limits: crate::http::listener::HttpLimits {
                max_connections: env_number("PAYCENTER_MAX_CONNECTIONS", 1..=1_000_000, 4_096)?
                    as usize,
                header_read_timeout_ms: env_number(
                    "PAYCENTER_HEADER_READ_TIMEOUT_MS",
                    100..=600_000,
                    10_000,
                )?,
                request_timeout_ms: env_number(
                    "PAYCENTER_REQUEST_TIMEOUT_MS",
                    100..=600_000,
                    60_000,
                )?,
            },
            app_rate_limit: crate::rate_limit::RateLimit {
                per_second: env_number("PAYCENTER_APP_RATE_LIMIT_PER_SECOND", 1..=1_000_000, 200)?,
                burst: env_number("PAYCENTER_APP_RATE_LIMIT_BURST", 1..=1_000_000, 400)?,
            },
            egress: paycenter_gateway::egress::EgressPolicy::from_env(),
            sandbox_enabled: match std::env::var("PAYCENTER_SANDBOX").as_deref() {
                Err(_) | Ok("1") | Ok("true") => true,
                Ok("0") | Ok("false") => false,
                Ok(other) => anyhow::bail!("PAYCENTER_SANDBOX must be 1 or 0, not {other:?}"),
            },
            alerts: alert_thresholds()?,
            breaker: {
                let defaults = paycenter_domain::routing::BreakerConfig::default();
                paycenter_domain::routing::BreakerConfig {
                    failure_percent: env_number(
                        "PAYCENTER_BREAKER_FAILURE_PERCENT",
                        1..=100,
                        defaults.failure_percent,
                    )?,
                    min_calls: env_number(
                        "PAYCENTER_BREAKER_MIN_CALLS",
                        1..=100_000,
                        defaults.min_calls,
                    )?,
                    open_seconds: env_number(
                        "PAYCENTER_BREAKER_OPEN_SECONDS",
                        1..=86_400,
                        defaults.open_seconds as u64,
                    )? as i64,
                    window_seconds: env_number(
                        "PAYCENTER_BREAKER_WINDOW_SECONDS",
                        1..=86_400,
                        defaults.window_seconds,
                    )?,
                }
            },
            daily_reconciliation: crate::service::reconciliation::DailySchedule {
                hour: env_number("PAYCENTER_RECONCILE_HOUR", 0..=23, 10)? as u32,
                check_seconds: env_number("PAYCENTER_RECONCILE_CHECK_SECONDS", 1..=86_400, 600)?,
            },
            node_id: match std::env::var("PAYCENTER_NODE_ID") {
                Ok(node_id) if !node_id.trim().is_empty() => node_id.trim().to_owned(),
                _ => default_node_id(),
            },
        })
    }
}

/// `<host>-<pid>-<random>`: distinct for every process, readable in the lease table.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_owned())
        .unwrap_or_else(|_| "node".to_owned());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    format!("{host}-{}-{}", std::process::id(), &suffix[..8])
}

/// Opens the EventStoreDB / KurrentDB store at `url`, its log in the stream
/// `PAYCENTER_EVENTSTOREDB_STREAM` (default `paycenter-log`).
#[cfg(feature = "eventstoredb")]
async fn open_eventstoredb(url: String) -> anyhow::Result<Arc<dyn EventStore>> {
    let log_stream = paycenter_store::eventstoredb::configured_log_stream();
    let store = tokio::task::spawn_blocking(move || {
        paycenter_store::EventStoreDbStore::connect(&url, &log_stream)
    })
    .await??;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "eventstoredb"))]
async fn open_eventstoredb(_url: String) -> anyhow::Result<Arc<dyn EventStore>> {
    anyhow::bail!("this paycenter was built without EventStoreDB support: build it with `cargo build --release --features eventstoredb`")
}

/// What a service is made of, besides its read model.
pub struct StateParts {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The master key.
    pub master_key: MasterKey,
    /// Configuration.
    pub config: ServiceConfig,
    /// The time decisions are made with.
    pub clock: Box<dyn crate::clock::Clock>,
    /// The channel adapters.
    pub channels: ChannelRegistry,
    /// The sandbox's simulated third party.
    pub sandbox_provider: Arc<SandboxProvider>,
    /// Where outbound calls may go.
    pub outbound: paycenter_gateway::http::OutboundConfig,
}

/// Events the read model may be behind the log at start and still catch up before the service
/// listens (about a second); further behind (the first start after an upgrade), it catches up
/// while the service listens and answers 503 `read_model_unavailable` until it is done.
const BLOCKING_CATCH_UP_EVENTS: u64 = 50_000;

/// The longest a stop waits for the embedded store to save its filter of known streams (a fill
/// of the stream index in progress finishes first; the save itself takes milliseconds).
const FILTER_SAVE_TIMEOUT_MS: u64 = 10_000;

/// Builds the service's state over `parts`: the read model opened from its file in
/// `data_dir/projections` (resuming at its checkpoint; folded from position 1 when there is
/// none) and kept current by its follower thread. Starts no background loop: `serve` starts
/// those, tests call the use cases themselves.
pub async fn open_state(
    parts: StateParts,
    data_dir: &std::path::Path,
) -> anyhow::Result<Arc<AppState>> {
    open_state_on(parts, data_dir, None).await
}

/// [`open_state`], with the projections in PostgreSQL tables the nodes of one database share
/// when `shared_tables` is given (see `paycenter_projections::shared`): this node folds them
/// while it holds their lease and reads what another node folds otherwise.
pub async fn open_state_on(
    parts: StateParts,
    data_dir: &std::path::Path,
    shared_tables: Option<paycenter_projections::shared::SharedTables>,
) -> anyhow::Result<Arc<AppState>> {
    let StateParts {
        store,
        master_key,
        config,
        clock,
        channels,
        sandbox_provider,
        outbound,
    } = parts;
    let model_dir = data_dir.join("projections");
    let stopping = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut shared_coordinators = Vec::new();
    let (read_model, balances) = match &shared_tables {
        None => (
            open_and_follow::<paycenter_projections::ReadModel>(&store, &model_dir).await?,
            open_and_follow::<paycenter_projections::balances::Balances>(&store, &model_dir)
                .await?,
        ),
        Some(tables) => {
            // Files an earlier version kept on this node: the tables replace them.
            for retired in [
                paycenter_projections::model::NAME,
                <paycenter_projections::balances::Balances as paycenter_projections::Projection>::NAME,
            ] {
                paycenter_projections::persisted::remove_projection_files(&model_dir, retired);
            }
            let (read_model, read_model_coordinator) =
                open_shared::<paycenter_projections::ReadModel>(&store, tables, &stopping).await?;
            let (balances, balances_coordinator) =
                open_shared::<paycenter_projections::balances::Balances>(&store, tables, &stopping)
                    .await?;
            shared_coordinators = vec![read_model_coordinator, balances_coordinator];
            (read_model, balances)
        }
    };
    Ok(Arc::new(AppState {
        store,
        read_model,
        master_key,
        channel_params_cache: Default::default(),
        config,
        rate_limiter: Default::default(),
        clock,
        channels,
        outbound,
        sandbox_provider,
        metrics: Default::default(),
        idempotency_locks: Default::default(),
        chain_audit: Default::default(),
        console_sessions: Default::default(),
        channel_outcomes: Default::default(),
        projections_dir: model_dir,
        shared_tables,
        stopping,
        shared_coordinators: std::sync::Mutex::new(shared_coordinators),
        balances,
    }))
}

/// How long a node waits at start for shared tables of another version to be folded again
/// by their writer.
const SHARED_TABLES_WAIT_SECONDS: u64 = 600;

/// Opens projection `P` on the tables the nodes share and starts its coordinating thread
/// (which, before this returns, makes this node the writer if it can take the lease); returns
/// the projection and that thread.
async fn open_shared<P: paycenter_projections::Projection>(
    store: &Arc<dyn EventStore>,
    tables: &paycenter_projections::shared::SharedTables,
    stopping: &Arc<std::sync::atomic::AtomicBool>,
) -> anyhow::Result<(
    crate::state::HostedProjection<P>,
    std::thread::JoinHandle<()>,
)> {
    let initial = {
        let (store, tables) = (store.clone(), tables.clone());
        tokio::task::spawn_blocking(move || {
            paycenter_projections::shared::open_reader::<P>(
                &tables,
                store.as_ref(),
                std::time::Duration::from_secs(SHARED_TABLES_WAIT_SECONDS),
            )
        })
        .await??
    };
    tracing::info!(
        projection = P::NAME,
        position = initial.position(),
        "projection opened on the shared tables"
    );
    let started_from = (initial.position() > 0).then_some(initial.position());
    let (position_sender, position_receiver) = tokio::sync::watch::channel(initial.position());
    let projection = Arc::new(RwLock::new(initial));
    let health = Arc::new(paycenter_projections::follow::FollowerHealth::default());
    let coordinator = {
        let (store, tables, projection, health, stopping) = (
            store.clone(),
            tables.clone(),
            projection.clone(),
            health.clone(),
            stopping.clone(),
        );
        tokio::task::spawn_blocking(move || {
            paycenter_projections::shared::run_shared(
                store,
                tables,
                projection,
                health,
                Arc::new(move |position| {
                    let _ = position_sender.send(position);
                }),
                BLOCKING_CATCH_UP_EVENTS,
                stopping,
            )
        })
        .await??
    };
    Ok((
        crate::state::HostedProjection {
            projection,
            position: position_receiver,
            health,
            rebuild_status: Default::default(),
            started_from,
        },
        coordinator,
    ))
}

/// Opens projection `P` from its live file in `model_dir` (resuming at its checkpoint; folded
/// from position 1 when there is none) and starts its follower thread.
async fn open_and_follow<P: paycenter_projections::Projection>(
    store: &Arc<dyn EventStore>,
    model_dir: &std::path::Path,
) -> anyhow::Result<crate::state::HostedProjection<P>> {
    let initial = {
        let (store, model_dir) = (store.clone(), model_dir.to_owned());
        tokio::task::spawn_blocking(move || {
            paycenter_projections::persisted::open_live::<P>(&model_dir, store.as_ref())
        })
        .await??
    };
    tracing::info!(
        projection = P::NAME,
        position = initial.position(),
        "projection opened at its checkpoint"
    );
    let started_from = (initial.position() > 0).then_some(initial.position());
    // Waiters compare against this: it must start where the projection starts, not at 0.
    let (position_sender, position_receiver) = tokio::sync::watch::channel(initial.position());
    let projection = Arc::new(RwLock::new(initial));
    let health = Arc::new(paycenter_projections::follow::FollowerHealth::default());
    {
        let store = store.clone();
        let projection = projection.clone();
        let health = health.clone();
        tokio::task::spawn_blocking(move || {
            paycenter_projections::follow::follow(
                store,
                projection,
                health,
                Box::new(move |position| {
                    let _ = position_sender.send(position);
                }),
                BLOCKING_CATCH_UP_EVENTS,
            )
        })
        .await??;
    }
    Ok(crate::state::HostedProjection {
        projection,
        position: position_receiver,
        health,
        rebuild_status: Default::default(),
        started_from,
    })
}

/// Opens the store, folds the log, starts the reactors and serves until Ctrl-C or SIGTERM,
/// then finishes in-flight requests.
pub async fn serve(options: ServeOptions) -> anyhow::Result<()> {
    if options.admin_token.is_empty() {
        tracing::warn!("PAYCENTER_ADMIN_TOKEN is unset: the admin API refuses every request");
    }
    restrict_data_dir(&options.data_dir)?;
    let master_key = MasterKey::load(options.master_key.as_deref(), &options.data_dir)?;
    // With PostgreSQL: where the shared SQL read models live (url, schema).
    let mut sql_read_models: Option<(String, String)> = None;
    // Embedded and PostgreSQL: the sealed checkpoint the start verified from (the background
    // walk covers what lies below it).
    let mut trusted_checkpoint = None;
    // Whether this node seals chain checkpoints (`Some`), and whether other processes append
    // to its log (PostgreSQL: what they appended is verified before the checkpoint moves over
    // it). EventStoreDB verifies its whole log at open.
    let mut checkpoint_shared_log: Option<bool> = None;
    // The embedded store, typed: its filter of known streams is saved at the stop.
    let mut embedded_store: Option<Arc<SqliteStore>> = None;
    let store: Arc<dyn EventStore> = match options.store_url.clone() {
        None => {
            let data_dir = options.data_dir.clone();
            trusted_checkpoint = crate::chain_audit::load(&data_dir, &master_key);
            let config = SqliteConfig {
                trusted_checkpoint,
                ..SqliteConfig::default()
            };
            checkpoint_shared_log = Some(false);
            let opened = Arc::new(
                tokio::task::spawn_blocking(move || SqliteStore::open(&data_dir, config)).await??,
            );
            embedded_store = Some(opened.clone());
            opened
        }
        Some(url) if paycenter_store::postgres::is_postgres_url(&url) => {
            // Every node must open the secrets every other node sealed: a key file in one
            // node's data directory would not do.
            if options.master_key.is_none() {
                anyhow::bail!("--store postgres://... needs PAYCENTER_MASTER_KEY (the same on every node sharing the database)");
            }
            let schema = paycenter_store::postgres::configured_schema();
            sql_read_models = Some((url.clone(), schema.clone()));
            // This node's sealed checkpoint (in its own data directory): the open verifies
            // from there; the background walk covers what lies below.
            trusted_checkpoint = crate::chain_audit::load(&options.data_dir, &master_key);
            let checkpoint = trusted_checkpoint;
            checkpoint_shared_log = Some(true);
            Arc::new(tokio::task::spawn_blocking(move || PostgresStore::open_from(&url, &schema, checkpoint)).await??)
        }
        Some(url) if paycenter_store::eventstoredb::is_eventstoredb_url(&url) => {
            if options.master_key.is_none() {
                anyhow::bail!("--store esdb://... needs PAYCENTER_MASTER_KEY (the same on every node sharing the log)");
            }
            open_eventstoredb(url).await?
        }
        Some(_) => anyhow::bail!("--store: use postgres://user:password@host/database, esdb://host:2113?tls=false, or omit --store for the embedded store"),
    };
    if checkpoint_shared_log.is_some() {
        // Verified up to the head: the next start may begin here. Stores may block
        // (PostgreSQL): never on an async worker without telling the runtime.
        let head = tokio::task::block_in_place(|| crate::chain_audit::head_of(store.as_ref()))?;
        std::fs::create_dir_all(&options.data_dir)?;
        crate::chain_audit::save(&options.data_dir, &master_key, head)?;
        tracing::info!(
            position = head.n_events,
            from = trusted_checkpoint.map_or(0, |checkpoint| checkpoint.n_events),
            "the log verified at open"
        );
    }
    let public_url = options
        .public_url
        .clone()
        .unwrap_or_else(|| format!("http://{}", options.listen));
    let outbound = paycenter_gateway::http::OutboundConfig::from_env()
        .map_err(|error| anyhow::anyhow!(error))?;
    let channel_http =
        paycenter_gateway::http::HttpClient::new(&outbound, options.channel_timeout_ms)
            .map_err(|error| anyhow::anyhow!(error))?;
    let sandbox_provider = SandboxProvider::with_outbound(&outbound);
    let mut adapters: Vec<Box<dyn paycenter_gateway::PaymentChannel>> = vec![
        Box::new(AlipayChannel::new(channel_http.clone())),
        Box::new(WechatpayChannel::new(channel_http.clone())),
        Box::new(StripeChannel::new(channel_http)),
    ];
    // Without the sandbox no sandbox account can be activated and its routes answer 404.
    if options.sandbox_enabled {
        adapters.push(Box::new(SandboxChannel::new(
            sandbox_provider.clone(),
            &public_url,
        )));
    } else {
        tracing::info!("the sandbox is off (PAYCENTER_SANDBOX=0)");
    }
    let channels = ChannelRegistry::new(adapters);
    let config = ServiceConfig {
        admin_token: options.admin_token.clone(),
        public_url: public_url.clone(),
        min_attempt_interval_ms: options.min_attempt_interval_ms,
        retry_schedule: options.retry_schedule.clone(),
        webhook_timeout_ms: options.webhook_timeout_ms,
        node_id: options.node_id.clone(),
        sweep_after_seconds: options.sweep_after_seconds,
        app_rate_limit: options.app_rate_limit,
        egress: options.egress,
        sandbox_enabled: options.sandbox_enabled,
        alerts: options.alerts,
        breaker: options.breaker,
    };
    let shared_tables =
        sql_read_models.as_ref().map(
            |(url, schema)| paycenter_projections::shared::SharedTables {
                url: url.clone(),
                schema: schema.clone(),
                node_id: options.node_id.clone(),
            },
        );
    let state = open_state_on(
        StateParts {
            store,
            master_key: master_key.clone(),
            config,
            clock: crate::clock::from_env().map_err(anyhow::Error::msg)?,
            channels,
            sandbox_provider,
            outbound,
        },
        &options.data_dir,
        shared_tables,
    )
    .await?;
    // The open verified from the checkpoint (from position 1 without one) to this head.
    // Stores may block (PostgreSQL): never on an async worker without telling the runtime.
    let head_at_start = tokio::task::block_in_place(|| state.store.head_position())?;
    match trusted_checkpoint {
        Some(checkpoint) if checkpoint.n_events > 0 => {
            state
                .chain_audit
                .target
                .store(checkpoint.n_events, std::sync::atomic::Ordering::Relaxed);
            tokio::spawn(crate::chain_audit::verify_in_background(
                state.store.clone(),
                state.chain_audit.clone(),
                head_at_start,
            ));
        }
        _ => state
            .chain_audit
            .verified_through
            .store(head_at_start, std::sync::atomic::Ordering::Relaxed),
    }
    // The checkpoint follows the head (see `checkpoint_shared_log`).
    if let Some(shared_log) = checkpoint_shared_log {
        tokio::spawn(crate::chain_audit::checkpoint_periodically(
            state.store.clone(),
            master_key,
            options.data_dir.clone(),
            shared_log,
        ));
    }
    crate::reactor::spawn(state.clone());
    crate::reactor::spawn_alerts(state.clone(), options.data_dir.clone());
    tokio::spawn(crate::service::reconciliation::reconcile_daily(
        state.clone(),
        options.daily_reconciliation,
    ));
    let stop_sql_read_models = Arc::new(std::sync::atomic::AtomicBool::new(false));
    if let Some((url, schema)) = sql_read_models {
        // The tables are written from this node's own projections. Earlier versions kept a
        // second fold of the log behind them in these files: derived, and now unused.
        for retired in ["sql_read_models.sqlite", "sql_balances.sqlite"] {
            paycenter_projections::persisted::remove_file_set(
                &options.data_dir.join("projections").join(retired),
            );
        }
        let mut projector = {
            let node_id = options.node_id.clone();
            let sources = paycenter_projections::sql::Sources {
                model: state.read_model.projection.clone(),
                balances: state.balances.projection.clone(),
                balances_health: state.balances.health.clone(),
            };
            tokio::task::spawn_blocking(move || {
                paycenter_projections::sql::SqlReadModels::open(&url, &schema, &node_id, sources)
            })
            .await??
        };
        let (store, stop) = (state.store.clone(), stop_sql_read_models.clone());
        std::thread::Builder::new()
            .name("sql-read-models".into())
            .spawn(move || {
                projector.run(store.as_ref(), &|| {
                    stop.load(std::sync::atomic::Ordering::Relaxed)
                })
            })?;
    }
    let listener = tokio::net::TcpListener::bind(options.listen).await?;
    let address = listener.local_addr()?;
    tracing::info!(%address, %public_url, data_dir = %options.data_dir.display(), max_connections = options.http_limits.max_connections, "paycenter listening");
    // Tests and scripts wait for this line.
    println!("paycenter listening on http://{address}");
    let handler_state = state.clone();
    crate::http::listener::serve(
        listener,
        move |peer, request| crate::http::router::handle(handler_state.clone(), peer, request),
        options.http_limits.clone(),
        shutdown_signal(),
    )
    .await;
    stop_sql_read_models.store(true, std::sync::atomic::Ordering::Relaxed);
    state
        .stopping
        .store(true, std::sync::atomic::Ordering::Relaxed);
    // A writer of shared tables commits what it staged and gives its lease up, so another
    // node takes over within a second instead of when the lease runs out.
    let coordinators = std::mem::take(
        &mut *state
            .shared_coordinators
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner()),
    );
    let _ = tokio::task::spawn_blocking(move || {
        for coordinator in coordinators {
            let _ = coordinator.join();
        }
    })
    .await;
    // The store is not dropped at exit (threads still hold it): its filter of known streams is
    // saved here, so the next start reads it instead of scanning the stream index.
    if let Some(embedded_store) = embedded_store {
        let _ = tokio::task::spawn_blocking(move || {
            embedded_store.save_stream_filter(FILTER_SAVE_TIMEOUT_MS)
        })
        .await;
    }
    drop(state);
    tracing::info!("paycenter stopped");
    Ok(())
}

/// Creates the data directory 0700 and takes group and other permissions off whatever an
/// earlier version left in it (directories 0700, files 0600): it holds the log, the master key
/// file, the sealed chain checkpoint and the read model's files.
fn restrict_data_dir(data_dir: &std::path::Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(data_dir)?;
    let mut pending = vec![data_dir.to_path_buf()];
    // A bounded walk: the data directory holds a few files and one level of read model files.
    let mut n_visited = 0;
    while let Some(path) = pending.pop() {
        n_visited += 1;
        if n_visited > 10_000 {
            break;
        }
        let metadata = std::fs::symlink_metadata(&path)?;
        if metadata.file_type().is_symlink() {
            continue;
        }
        let mode = if metadata.is_dir() { 0o700 } else { 0o600 };
        if metadata.permissions().mode() & 0o777 != mode {
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode))?;
        }
        if metadata.is_dir() {
            for entry in std::fs::read_dir(&path)? {
                pending.push(entry?.path());
            }
        }
    }
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .expect("SIGTERM handler");
    tokio::select! {
        _ = ctrl_c => {}
        _ = terminate.recv() => {}
    }
}
