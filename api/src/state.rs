//! The service's shared state and the one path every command takes: load the aggregate's
//! stream, decide, append with the expected revision, wait until the read model has it.

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::Duration;

use chrono::{DateTime, Utc};
use paycenter_domain::envelope::RecordedEvent;
use paycenter_domain::events::Event;
use paycenter_domain::notification::RetrySchedule;
use paycenter_domain::DomainError;
use paycenter_gateway::sandbox::SandboxProvider;
use paycenter_gateway::PaymentChannel;
use paycenter_projections::balances::Balances;
use paycenter_projections::ReadModel;
use paycenter_store::{AppendOutcome, EventStore, ExpectedRevision};
use tokio::sync::watch;

use crate::error::Refusal;
use crate::keys::MasterKey;
use crate::metrics::Metrics;

/// Tunables of the service.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// Bearer token of the admin API.
    pub admin_token: String,
    /// Base URL channels and users reach paycenter at.
    pub public_url: String,
    /// Minimum spacing of attempts for one order.
    pub min_attempt_interval_ms: i64,
    /// Webhook retry delays.
    pub retry_schedule: RetrySchedule,
    /// Timeout of each outbound webhook call.
    pub webhook_timeout_ms: u64,
    /// This node's name in leases: unique among the nodes sharing a store.
    pub node_id: String,
    /// Age after which the sweeper asks a channel about a pending payment or refund.
    pub sweep_after_seconds: u64,
    /// Requests per second and burst of each app.
    pub app_rate_limit: crate::rate_limit::RateLimit,
    /// Where outbound calls may go.
    pub egress: paycenter_gateway::egress::EgressPolicy,
    /// Whether the sandbox channel runs (`PAYCENTER_SANDBOX`; off in production).
    pub sandbox_enabled: bool,
    /// Thresholds of the alert rules (`PAYCENTER_ALERT_*`).
    pub alerts: AlertThresholds,
    /// Channel accounts' circuit breakers (`PAYCENTER_BREAKER_*`).
    pub breaker: paycenter_domain::routing::BreakerConfig,
}

/// Thresholds of the alert rules (`PAYCENTER_ALERT_*`; `service::alert_rules`).
#[derive(Debug, Clone, Copy)]
pub struct AlertThresholds {
    /// Seconds between evaluations.
    pub interval_seconds: u64,
    /// A channel account alerts when this share of its initiations (percent) failed...
    pub channel_failure_percent: u64,
    /// ...among at least this many...
    pub channel_min_attempts: u64,
    /// ...within this window.
    pub channel_window_seconds: u64,
    /// An app's webhooks alert once they have failed for this long without a delivery.
    pub webhook_failing_seconds: u64,
    /// A projection alerts when the oldest event it has not applied is this old.
    pub projection_lag_seconds: u64,
    /// The data directory's file system alerts below this much free space.
    pub disk_free_mb: u64,
    /// A channel account alerts when its credentials expire within this many days.
    pub credentials_expiry_days: u64,
}

impl Default for AlertThresholds {
    fn default() -> Self {
        AlertThresholds {
            interval_seconds: 30,
            channel_failure_percent: 50,
            channel_min_attempts: 10,
            channel_window_seconds: 300,
            webhook_failing_seconds: 1_800,
            projection_lag_seconds: 60,
            disk_free_mb: 1_024,
            credentials_expiry_days: 14,
        }
    }
}

/// A stream as read for a decision.
pub struct LoadedStream {
    /// Its events, decoded, oldest first.
    pub events: Vec<Event>,
    /// Its last revision; `None` when it does not exist.
    pub revision: Option<u64>,
    /// Global position of its last event; 0 when it does not exist.
    pub last_position: u64,
}

/// Everything a request handler needs.
pub struct AppState {
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// The read model, kept current by its follower thread; its position serves
    /// read-your-writes waits.
    pub read_model: HostedProjection<ReadModel>,
    /// Master key for sealed secrets.
    pub master_key: MasterKey,
    /// Channel accounts' parameters, unsealed once per activation.
    pub channel_params_cache: crate::channel_params::ParamsCache,
    /// Configuration.
    pub config: ServiceConfig,
    /// The sandbox channel's simulated third party.
    pub sandbox_provider: Arc<SandboxProvider>,
    /// The adapter of each channel.
    pub channels: paycenter_gateway::registry::ChannelRegistry,
    /// The time commands are decided and stamped with.
    pub clock: Box<dyn crate::clock::Clock>,
    /// Where outbound calls may go and whom they trust (webhooks build their client from it).
    pub outbound: paycenter_gateway::http::OutboundConfig,
    /// Counters and histograms for `/metrics`.
    pub metrics: Metrics,
    /// Per-key locks for `Idempotency-Key` requests.
    pub idempotency_locks: crate::key_locks::KeyLocks,
    /// Each app's request budget.
    pub rate_limiter: crate::rate_limit::RateLimiter,
    /// The directory of the projections' files (`projections/` in the data directory).
    pub projections_dir: std::path::PathBuf,
    /// With PostgreSQL: the projections' tables the nodes share (and no files).
    pub shared_tables: Option<paycenter_projections::shared::SharedTables>,
    /// Set when the service stops: ends the shared projections' coordinating threads.
    pub stopping: Arc<std::sync::atomic::AtomicBool>,
    /// Those threads, for a clean stop to wait for (a writer commits and gives its lease up).
    pub shared_coordinators: std::sync::Mutex<Vec<std::thread::JoinHandle<()>>>,
    /// The background walk of the log below the sealed checkpoint (embedded store).
    pub chain_audit: Arc<crate::chain_audit::ChainAudit>,
    /// The console's signed-in operators and its sign-in throttle.
    pub console_sessions: crate::service::sessions::Sessions,
    /// Recent initiation outcomes per channel account.
    pub channel_outcomes: crate::channel_health::ChannelOutcomes,
    /// The balances, a projection of their own beside the read model.
    pub balances: HostedProjection<Balances>,
}

/// A projection kept in its own file and followed by its own thread, beside the read model.
pub struct HostedProjection<P> {
    /// The projection, kept current by its follower.
    pub projection: Arc<RwLock<P>>,
    /// Its position, for waits.
    pub position: watch::Receiver<u64>,
    /// Whether its follower runs, and where it stopped.
    pub health: Arc<paycenter_projections::follow::FollowerHealth>,
    /// Its online rebuilds.
    pub rebuild_status: SharedRebuildStatus,
    /// The checkpoint this process resumed its file from, if the file had one.
    pub started_from: Option<u64>,
}

impl<P> HostedProjection<P> {
    /// The projection as it stands, stopped or not (see [`AppState::model_lock`]).
    pub fn lock(&self) -> RwLockReadGuard<'_, P> {
        self.projection
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What operators see of rebuilds.
#[derive(Debug, Default)]
pub struct RebuildStatus {
    /// A rebuild is running.
    pub in_progress: bool,
    /// The last one that finished.
    pub last: Option<FinishedRebuild>,
}

/// A finished rebuild.
#[derive(Debug, Clone)]
pub struct FinishedRebuild {
    /// When it swapped in.
    pub finished_at: DateTime<Utc>,
    /// The position both models had at the swap.
    pub position: u64,
    /// Whether the fresh model's digest equalled the live one's (anything else is a bug).
    pub identical: bool,
    /// How long the fold took.
    pub seconds: f64,
}

/// Rebuild status, shared by the handlers and the rebuild thread.
pub type SharedRebuildStatus = Arc<std::sync::Mutex<RebuildStatus>>;

/// Appends retried on a concurrent change before answering `409 concurrent_update`.
const MAX_COMMAND_RETRIES: usize = 5;

/// How long a request waits for the read model to apply what it wrote (or what its decision
/// saw) before answering `503 read_model_unavailable`. The follower applies durable events
/// within milliseconds; only a stopped or badly lagging read model takes this long.
pub const MODEL_WAIT_TIMEOUT_MS: u64 = 5_000;

impl AppState {
    /// The adapter of a channel.
    pub fn channel(
        &self,
        channel: paycenter_domain::payment::Channel,
    ) -> Result<&dyn PaymentChannel, Refusal> {
        self.channels.get(channel).ok_or_else(|| {
            Refusal::new(
                crate::error::ErrorCode::UnsupportedChannel,
                format!("this paycenter does not run the {channel} channel"),
            )
        })
    }

    /// Where a channel account's callbacks arrive.
    pub fn notify_url(
        &self,
        channel: paycenter_domain::payment::Channel,
        channel_account_id: &paycenter_domain::ids::ChannelAccountId,
    ) -> String {
        format!(
            "{}/callbacks/{}/{}",
            self.config.public_url,
            channel.as_str(),
            channel_account_id
        )
    }

    /// A payment's checkout page, its token in the link.
    pub fn checkout_url(&self, trade_no: &paycenter_domain::ids::TradeNo) -> String {
        format!(
            "{}/checkout/{trade_no}?t={}",
            self.config.public_url,
            self.master_key.checkout_token(trade_no.as_str())
        )
    }

    /// An aggregated cashier's page, its token in the link.
    pub fn cashier_url(&self, checkout_id: &str) -> String {
        format!(
            "{}/checkout/{checkout_id}?t={}",
            self.config.public_url,
            self.master_key.checkout_token(checkout_id)
        )
    }

    /// A payment as its channel's calls name it.
    pub fn channel_order(
        &self,
        payment: &paycenter_projections::model::PaymentView,
    ) -> paycenter_gateway::ChannelOrder {
        paycenter_gateway::ChannelOrder {
            trade_no: payment.trade_no.clone(),
            channel_reference: payment.channel_reference.clone(),
            channel_trade_no: payment.channel_trade_no.clone(),
            amount: payment.amount,
            notify_url: self.notify_url(payment.channel, &payment.channel_account_id),
            share_returns: Vec::new(),
        }
    }

    /// The read model, for a request that needs it: `503 read_model_unavailable` when its
    /// follower stopped at an event it could not apply.
    pub fn model_for_request(&self) -> Result<RwLockReadGuard<'_, ReadModel>, Refusal> {
        if let Some(stopped) = self.read_model.health.stopped() {
            return Err(Refusal::read_model_unavailable(format!(
                "the read model stopped at position {} ({}); operators are told by /healthz",
                stopped.position, stopped.event_type
            )));
        }
        if let Some(target) = self.read_model.health.catching_up_to() {
            return Err(Refusal::read_model_unavailable(format!(
                "the read model is catching up with the log after the start (position {} of {target}); try again shortly",
                *self.read_model.position.borrow()
            )));
        }
        Ok(self.model_lock())
    }

    /// The read model as it stands, stopped or not: for health reports and the reactors, which
    /// check `read_model.health` themselves. The follower never panics while holding the lock (it
    /// catches the fold's panics), so a poisoned lock would only come from a bug elsewhere and
    /// the model is still read.
    pub fn model_lock(&self) -> RwLockReadGuard<'_, ReadModel> {
        self.read_model.lock()
    }

    /// A channel account's latest activation, from the read model.
    pub fn channel_account(
        &self,
        channel_account_id: &paycenter_domain::ids::ChannelAccountId,
    ) -> Option<paycenter_domain::events::ChannelAccountActivated> {
        self.model_for_request()
            .ok()?
            .channel_accounts()
            .get(channel_account_id)
            .cloned()
    }

    /// A channel account's parameters, unsealed with the master key (once per activation):
    /// for a sub-merchant, its provider's (as they stand now) with its own ids added.
    pub fn channel_params(
        &self,
        account: &paycenter_domain::events::ChannelAccountActivated,
    ) -> Result<std::sync::Arc<crate::channel_params::ChannelParams>, Refusal> {
        let provider = match &account.provider_account_id {
            None => None,
            Some(provider_account_id) => {
                Some(self.channel_account(provider_account_id).ok_or_else(|| {
                    Refusal::internal(
                        "channel params",
                        format!(
                            "sub-merchant {} names provider {provider_account_id}, which the read model does not hold",
                            account.channel_account_id
                        ),
                    )
                })?)
            }
        };
        self.channel_params_cache
            .get(&self.master_key, account, provider.as_ref())
    }

    /// A channel account's adapter and unsealed parameters, for a call to its channel.
    pub fn account_adapter(
        &self,
        channel_account_id: &paycenter_domain::ids::ChannelAccountId,
    ) -> Result<
        (
            &dyn PaymentChannel,
            std::sync::Arc<crate::channel_params::ChannelParams>,
        ),
        Refusal,
    > {
        let account = self.channel_account(channel_account_id).ok_or_else(|| {
            Refusal::not_found(
                crate::error::ErrorCode::ChannelAccountNotFound,
                format!("channel account {channel_account_id} not found"),
            )
        })?;
        Ok((
            self.channel(account.channel)?,
            self.channel_params(&account)?,
        ))
    }

    /// The recorded events of a stream, read from a request's task.
    pub fn read_stream(&self, stream_id: &str) -> Result<Vec<RecordedEvent>, Refusal> {
        // From a local file, read on the runtime's thread: a stream is a handful of rows read
        // by an index, tens of microseconds, less than `block_in_place` costs to hand the
        // worker's other tasks to another thread (8 % of the request threads' time in a
        // profile under load). A server across the network is read off the runtime's thread.
        let recorded = if self.store.reads_are_local() {
            self.store.read_stream(stream_id, 0)?
        } else {
            tokio::task::block_in_place(|| self.store.read_stream(stream_id, 0))?
        };
        Ok(recorded)
    }

    /// The events of a stream, decoded.
    pub fn load_stream(&self, stream_id: &str) -> Result<LoadedStream, Refusal> {
        let recorded = self.read_stream(stream_id)?;
        let last = recorded
            .last()
            .map(|event| (event.stream_revision, event.global_position));
        let events = recorded
            .iter()
            .map(|event| Event::decode(event).map_err(|error| Refusal::internal("decode", error)))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(LoadedStream {
            events,
            revision: last.map(|(revision, _)| revision),
            last_position: last.map_or(0, |(_, position)| position),
        })
    }

    /// Runs a command against one stream: decide over its current events, append with the
    /// revision that decision saw, retry when another writer got there first. Answers the
    /// events decided (empty when the command changed nothing) and waits until the read model
    /// has them, so a read right after sees the write.
    pub async fn execute(
        &self,
        stream_id: &str,
        command_id: &str,
        decide: impl Fn(&[Event], DateTime<Utc>) -> Result<Vec<Event>, DomainError>,
    ) -> Result<(Vec<Event>, Option<AppendOutcome>), Refusal> {
        self.execute_with(stream_id, command_id, false, decide)
            .await
    }

    /// [`AppState::execute`] for a command whose stream is most often new (a payment's
    /// order): it is first decided over no history, without reading the stream, and appended
    /// expecting no stream. The store refuses that append if the stream exists, and the
    /// command is then decided again over the stream as read, as any lost race is; a decision
    /// over no history that refuses, or decides nothing, is made again over the stream as read
    /// too, so no answer ever rests on the assumption.
    pub async fn execute_on_new_stream(
        &self,
        stream_id: &str,
        command_id: &str,
        decide: impl Fn(&[Event], DateTime<Utc>) -> Result<Vec<Event>, DomainError>,
    ) -> Result<(Vec<Event>, Option<AppendOutcome>), Refusal> {
        self.execute_with(stream_id, command_id, true, decide).await
    }

    async fn execute_with(
        &self,
        stream_id: &str,
        command_id: &str,
        assume_new_stream: bool,
        decide: impl Fn(&[Event], DateTime<Utc>) -> Result<Vec<Event>, DomainError>,
    ) -> Result<(Vec<Event>, Option<AppendOutcome>), Refusal> {
        let mut assumed_new = None;
        if assume_new_stream {
            match decide(&[], self.clock.now()) {
                Ok(decided) if !decided.is_empty() => assumed_new = Some(decided),
                _ => {}
            }
        }
        for _ in 0..MAX_COMMAND_RETRIES {
            let (decided, revision, last_position) = match assumed_new.take() {
                Some(decided) => (decided, None, 0),
                None => {
                    let LoadedStream {
                        events: history,
                        revision,
                        last_position,
                    } = self.load_stream(stream_id)?;
                    (decide(&history, self.clock.now())?, revision, last_position)
                }
            };
            if decided.is_empty() {
                // Nothing new (a replay): the answer is read from the read model, which must
                // have what this decision saw, perhaps appended by a concurrent request.
                self.wait_for_model(last_position).await?;
                return Ok((decided, None));
            }
            let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
            let mut new_events = Event::to_new_events(&decided, command_id, None);
            crate::service::access::stamp(&mut new_events);
            match self
                .store
                .append_async(stream_id, expected, new_events)
                .await
            {
                Ok(outcome) => {
                    // Recorded and durable: a read model that cannot show it yet does not undo
                    // that, so the command succeeded. What the caller reads next says 503 if
                    // the read model stopped.
                    if let Err(error) = self.wait_for_model(outcome.last_position).await {
                        tracing::warn!(message = %error.message, "a recorded command is not in the read model yet");
                    }
                    return Ok((decided, Some(outcome)));
                }
                Err(paycenter_store::StoreError::WrongExpectedRevision { .. }) => continue,
                Err(error) => return Err(error.into()),
            }
        }
        Err(paycenter_store::StoreError::WrongExpectedRevision {
            stream_id: stream_id.to_owned(),
            expected: ExpectedRevision::Any,
            actual: None,
        }
        .into())
    }

    /// The balances, once they have applied every event the read model has (so a payment a
    /// request has seen succeed is in them), waiting at most [`MODEL_WAIT_TIMEOUT_MS`];
    /// `503 read_model_unavailable` when they stopped, still catch up after the start, or did
    /// not get there in time. The guard is taken after the wait, never held across it.
    pub async fn balances(&self) -> Result<RwLockReadGuard<'_, Balances>, Refusal> {
        let hosted = &self.balances;
        let unavailable = || -> Option<Refusal> {
            if let Some(stopped) = hosted.health.stopped() {
                return Some(Refusal::read_model_unavailable(format!(
                    "the balances projection stopped at position {} ({}); operators are told by /healthz",
                    stopped.position, stopped.event_type
                )));
            }
            hosted.health.catching_up_to().map(|target| {
                Refusal::read_model_unavailable(format!(
                    "the balances are catching up with the log after the start (position {} of {target}); try again shortly",
                    *hosted.position.borrow()
                ))
            })
        };
        if let Some(refusal) = unavailable() {
            return Err(refusal);
        }
        let wanted = *self.read_model.position.borrow();
        let mut receiver = hosted.position.clone();
        let reached = tokio::time::timeout(
            Duration::from_millis(MODEL_WAIT_TIMEOUT_MS),
            receiver.wait_for(|applied| *applied >= wanted || hosted.health.stopped().is_some()),
        )
        .await;
        if let Some(refusal) = unavailable() {
            return Err(refusal);
        }
        match reached {
            Ok(Ok(_)) => Ok(hosted.lock()),
            _ => Err(Refusal::read_model_unavailable(format!(
                "the balances have not reached position {wanted} within {MODEL_WAIT_TIMEOUT_MS} ms"
            ))),
        }
    }

    /// Waits until the read model has applied `position`, at most [`MODEL_WAIT_TIMEOUT_MS`];
    /// `503 read_model_unavailable` when it stopped or did not get there in time.
    pub async fn wait_for_model(&self, position: u64) -> Result<(), Refusal> {
        let mut receiver = self.read_model.position.clone();
        let reached = tokio::time::timeout(
            Duration::from_millis(MODEL_WAIT_TIMEOUT_MS),
            receiver.wait_for(|applied| {
                *applied >= position || self.read_model.health.stopped().is_some()
            }),
        )
        .await;
        // 503 at once when the read model stopped (the guard itself is not needed).
        drop(self.model_for_request()?);
        match reached {
            Ok(Ok(_)) => Ok(()),
            _ => Err(Refusal::read_model_unavailable(format!(
                "the read model has not reached position {position} within {MODEL_WAIT_TIMEOUT_MS} ms"
            ))),
        }
    }
}
