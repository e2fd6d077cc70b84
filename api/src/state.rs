//! The service's shared state and the one path every command takes: load the aggregate's
//! stream, decide, append with the expected revision, wait until the read model has it.

use std::sync::{Arc, RwLock};

use chrono::{DateTime, Utc};
use paycenter_domain::envelope::RecordedEvent;
use paycenter_domain::events::Event;
use paycenter_domain::notification::RetrySchedule;
use paycenter_domain::DomainError;
use paycenter_gateway::sandbox::{SandboxChannel, SandboxProvider};
use paycenter_gateway::PaymentChannel;
use paycenter_projections::ReadModel;
use paycenter_store::{AppendOutcome, EventStore, ExpectedRevision};
use tokio::sync::watch;

use crate::error::ApiError;
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
    /// The read model, kept current by the follower thread.
    pub model: Arc<RwLock<ReadModel>>,
    /// The read model's position, for read-your-writes waits.
    pub model_position: watch::Receiver<u64>,
    /// Master key for sealed secrets.
    pub master_key: MasterKey,
    /// Configuration.
    pub config: ServiceConfig,
    /// The sandbox channel's simulated third party.
    pub sandbox_provider: Arc<SandboxProvider>,
    /// The sandbox adapter.
    pub sandbox: SandboxChannel,
    /// The Alipay adapter.
    pub alipay: paycenter_gateway::alipay::AlipayChannel,
    /// The WeChat Pay adapter.
    pub wechatpay: paycenter_gateway::wechatpay::WechatpayChannel,
    /// The Stripe adapter.
    pub stripe: paycenter_gateway::stripe::StripeChannel,
    /// Counters and histograms for `/metrics`.
    pub metrics: Metrics,
    /// Per-key locks for `Idempotency-Key` requests.
    pub idempotency_locks: crate::idempotency::KeyLocks,
    /// Online rebuilds of the read model.
    pub rebuild_status: crate::projections::SharedRebuildStatus,
    /// Snapshots of the read model.
    pub snapshots: std::sync::Mutex<crate::projections::SnapshotStatus>,
}

/// Appends retried on a concurrent change before answering `409 concurrent_update`.
const MAX_COMMAND_RETRIES: usize = 5;

impl AppState {
    /// The adapter of a channel.
    pub fn channel(
        &self,
        channel: paycenter_domain::payment::Channel,
    ) -> Result<&dyn PaymentChannel, ApiError> {
        use paycenter_domain::payment::Channel;
        Ok(match channel {
            Channel::Sandbox => &self.sandbox,
            Channel::Alipay => &self.alipay,
            Channel::Wechatpay => &self.wechatpay,
            Channel::Stripe => &self.stripe,
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
            channel.name(),
            channel_account_id
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
        }
    }

    /// A channel account's latest activation, from the read model.
    pub fn channel_account(
        &self,
        channel_account_id: &paycenter_domain::ids::ChannelAccountId,
    ) -> Option<paycenter_domain::events::ChannelAccountActivated> {
        self.model
            .read()
            .expect("model lock")
            .channel_accounts
            .get(channel_account_id)
            .cloned()
    }

    /// A channel account's parameters, unsealed with the master key.
    pub fn channel_params(
        &self,
        account: &paycenter_domain::events::ChannelAccountActivated,
    ) -> Result<serde_json::Value, ApiError> {
        let bytes = self
            .master_key
            .open(&account.params_sealed)
            .map_err(|error| ApiError::internal("open channel params", error))?;
        serde_json::from_slice(&bytes).map_err(|error| ApiError::internal("channel params", error))
    }

    /// The events of a stream, decoded.
    pub fn load_stream(&self, stream_id: &str) -> Result<LoadedStream, ApiError> {
        let recorded: Vec<RecordedEvent> =
            tokio::task::block_in_place(|| self.store.read_stream(stream_id, 0))?;
        let last = recorded
            .last()
            .map(|event| (event.stream_revision, event.global_position));
        let events = recorded
            .iter()
            .map(|event| Event::decode(event).map_err(|error| ApiError::internal("decode", error)))
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
    ) -> Result<(Vec<Event>, Option<AppendOutcome>), ApiError> {
        for _ in 0..MAX_COMMAND_RETRIES {
            let LoadedStream {
                events: history,
                revision,
                last_position,
            } = self.load_stream(stream_id)?;
            let decided = decide(&history, Utc::now())?;
            if decided.is_empty() {
                // Nothing new (a replay): the answer is read from the read model, which must
                // have what this decision saw, perhaps appended by a concurrent request.
                self.wait_for_model(last_position).await;
                return Ok((decided, None));
            }
            let expected = revision.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
            let new_events = Event::to_new_events(&decided, command_id, None);
            match self
                .store
                .append_async(stream_id, expected, new_events)
                .await
            {
                Ok(outcome) => {
                    self.wait_for_model(outcome.last_position).await;
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

    /// Waits until the read model has applied `position`.
    pub async fn wait_for_model(&self, position: u64) {
        let mut receiver = self.model_position.clone();
        // The follower applies every durable event; this resolves within milliseconds.
        let _ = receiver.wait_for(|applied| *applied >= position).await;
    }
}
