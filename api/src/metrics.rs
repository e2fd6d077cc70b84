//! `/metrics`: the `prometheus` crate's registry and text encoding. Counters and histograms are
//! updated where things happen (requests, channel calls, webhooks, callbacks); gauges that
//! describe state (payments by status, projections, the store, the chain, open alerts) are set
//! from the read model at each scrape (`http::admin::metrics_text`).
//!
//! Per channel account: `paycenter_channel_calls_total{channel, channel_account_id, operation,
//! outcome}` and `paycenter_channel_call_duration_seconds{channel, channel_account_id,
//! operation}`, where `operation` is `initiate`, `query`, `close` or `refund` and `outcome` is
//! `ok`, `timeout`, `unavailable` (refused or unreachable) or `rejected` (the request itself).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts,
    Registry, TextEncoder,
};

/// Upper bounds of the request latency histogram, in seconds.
const HTTP_BUCKETS_SECONDS: [f64; 10] =
    [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];
/// Upper bounds of the channel call latency histogram, in seconds (channels answer in tens
/// to thousands of milliseconds).
const CHANNEL_BUCKETS_SECONDS: [f64; 11] =
    [0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0];
/// Channel accounts with their own series; beyond, calls count under `channel_account_id="other"`
/// (a bounded number of series whatever the number of accounts).
const MAX_ACCOUNT_SERIES: usize = 2_000;

/// What came of one call to a channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CallOutcome {
    /// The channel answered.
    Ok,
    /// No answer in time.
    Timeout,
    /// Refused or unreachable.
    Unavailable,
    /// The request was wrong (parameters, an unsupported method): not the channel's health.
    Rejected,
}

impl CallOutcome {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            CallOutcome::Ok => "ok",
            CallOutcome::Timeout => "timeout",
            CallOutcome::Unavailable => "unavailable",
            CallOutcome::Rejected => "rejected",
        }
    }

    /// The outcome of a gateway call's result.
    pub fn of<T>(result: &Result<T, paycenter_gateway::GatewayError>) -> CallOutcome {
        match result {
            Ok(_) => CallOutcome::Ok,
            Err(paycenter_gateway::GatewayError::Unavailable { reason })
                if reason.contains("timed out") || reason.contains("timeout") =>
            {
                CallOutcome::Timeout
            }
            Err(paycenter_gateway::GatewayError::Unavailable { .. }) => CallOutcome::Unavailable,
            Err(_) => CallOutcome::Rejected,
        }
    }
}

/// Gauges set at each scrape from the read model and the store.
#[allow(missing_docs)]
pub struct StateGauges {
    pub payments: IntGaugeVec,
    pub payment_anomalies: IntGaugeVec,
    pub projection_lag_events: IntGaugeVec,
    pub projection_running: IntGaugeVec,
    pub store_accepting_appends: IntGauge,
    pub chain_verified_position: IntGauge,
    pub chain_checkpoint_position: IntGauge,
    pub chain_broken: IntGauge,
    pub alerts_open: IntGaugeVec,
    pub channel_breaker_state: IntGaugeVec,
}

/// The service's metrics.
pub struct Metrics {
    registry: Registry,
    http_requests: IntCounterVec,
    http_duration: HistogramVec,
    channel_calls: IntCounterVec,
    channel_duration: HistogramVec,
    account_series: std::sync::Mutex<std::collections::HashSet<String>>,
    /// Callbacks refused for a bad signature or body.
    pub callback_verification_failures: IntCounter,
    /// Webhook attempts that were not acknowledged.
    pub webhook_failures: IntCounter,
    /// Webhooks given up after the whole schedule.
    pub webhooks_exhausted: IntCounter,
    /// Set at each scrape.
    pub gauges: StateGauges,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

fn counter_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn gauge_vec(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> IntGauge {
    let metric = IntGauge::new(name, help).expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn counter(registry: &Registry, name: &str, help: &str) -> IntCounter {
    let metric = IntCounter::new(name, help).expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn histogram_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
    buckets: &[f64],
) -> HistogramVec {
    let metric = HistogramVec::new(
        HistogramOpts::new(name, help).buckets(buckets.to_vec()),
        labels,
    )
    .expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

impl Metrics {
    /// Every metric, registered.
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        Metrics {
            http_requests: counter_vec(r, "paycenter_http_requests_total", "HTTP requests by route and status.", &["route", "status"]),
            http_duration: histogram_vec(r, "paycenter_http_request_duration_seconds", "Request latency by route.", &["route"], &HTTP_BUCKETS_SECONDS),
            channel_calls: counter_vec(
                r,
                "paycenter_channel_calls_total",
                "Calls to channels by account, operation (initiate, query, close, refund) and outcome (ok, timeout, unavailable, rejected).",
                &["channel", "channel_account_id", "operation", "outcome"],
            ),
            channel_duration: histogram_vec(
                r,
                "paycenter_channel_call_duration_seconds",
                "Latency of calls to channels by account and operation.",
                &["channel", "channel_account_id", "operation"],
                &CHANNEL_BUCKETS_SECONDS,
            ),
            account_series: Default::default(),
            callback_verification_failures: counter(r, "paycenter_callback_verification_failures_total", "Channel callbacks refused."),
            webhook_failures: counter(r, "paycenter_webhook_failures_total", "Webhook attempts not acknowledged."),
            webhooks_exhausted: counter(r, "paycenter_webhooks_exhausted_total", "Webhooks given up after the whole schedule."),
            gauges: StateGauges {
                payments: gauge_vec(r, "paycenter_payments", "Payments by status.", &["status"]),
                payment_anomalies: gauge_vec(r, "paycenter_payment_anomalies", "Verified channel reports that contradicted their attempt, by kind.", &["kind"]),
                projection_lag_events: gauge_vec(r, "paycenter_projection_lag_events", "Events in the log not yet in the projection.", &["projection"]),
                projection_running: gauge_vec(r, "paycenter_projection_running", "1 while the projection applies the log, 0 once it stopped at an event.", &["projection"]),
                store_accepting_appends: gauge(r, "paycenter_store_accepting_appends", "1 while the event store records appends."),
                chain_verified_position: gauge(r, "paycenter_chain_verified_position", "Every event up to here verified from position 1 by the background walk below the sealed checkpoint."),
                chain_checkpoint_position: gauge(r, "paycenter_chain_checkpoint_position", "The sealed checkpoint this start verified from (0: it verified the whole log)."),
                chain_broken: gauge(r, "paycenter_chain_broken", "1 once the background walk found a broken link."),
                alerts_open: gauge_vec(r, "paycenter_alerts_open", "Open alerts by rule.", &["rule"]),
                channel_breaker_state: gauge_vec(r, "paycenter_channel_breaker_state", "Each channel account's breaker that ever changed: 0 closed, 1 half-open, 2 open.", &["channel_account_id"]),
            },
            registry,
        }
    }

    /// Records one request.
    pub fn observe(&self, route: &'static str, status: u16, seconds: f64) {
        self.http_requests
            .with_label_values(&[route, &status.to_string()])
            .inc();
        self.http_duration
            .with_label_values(&[route])
            .observe(seconds);
    }

    /// Records one call to a channel.
    pub fn channel_call(
        &self,
        channel: &str,
        channel_account_id: &str,
        operation: &'static str,
        outcome: CallOutcome,
        seconds: f64,
    ) {
        let account = {
            let mut seen = self.account_series.lock().expect("metrics lock");
            if seen.contains(channel_account_id) {
                channel_account_id
            } else if seen.len() < MAX_ACCOUNT_SERIES {
                seen.insert(channel_account_id.to_owned());
                channel_account_id
            } else {
                "other"
            }
        };
        self.channel_calls
            .with_label_values(&[channel, account, operation, outcome.as_str()])
            .inc();
        self.channel_duration
            .with_label_values(&[channel, account, operation])
            .observe(seconds);
    }

    /// The Prometheus text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .expect("the text encoder writes to memory");
        String::from_utf8(buffer).expect("the text exposition is UTF-8")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn series_are_written_in_the_text_format() {
        let metrics = Metrics::new();
        metrics.observe("create_payment", 201, 0.003);
        metrics.channel_call("sandbox", "ca_1", "initiate", CallOutcome::Ok, 0.02);
        metrics.webhook_failures.inc();
        let text = metrics.render();
        for line in [
            "paycenter_http_requests_total{route=\"create_payment\",status=\"201\"} 1",
            "paycenter_channel_calls_total{channel=\"sandbox\",channel_account_id=\"ca_1\",operation=\"initiate\",outcome=\"ok\"} 1",
            "paycenter_channel_call_duration_seconds_count{channel=\"sandbox\",channel_account_id=\"ca_1\",operation=\"initiate\"} 1",
            "paycenter_webhook_failures_total 1",
        ] {
            assert!(text.contains(line), "{line} in\n{text}");
        }
    }

    #[test]
    fn timeouts_are_told_from_refusals_and_bad_requests() {
        use paycenter_gateway::GatewayError;
        let timed_out: Result<(), _> = Err(GatewayError::Unavailable {
            reason: "operation timed out".into(),
        });
        let refused: Result<(), _> = Err(GatewayError::Unavailable {
            reason: "connection refused".into(),
        });
        let bad: Result<(), _> = Err(GatewayError::InvalidParams {
            reason: "no key".into(),
        });
        assert_eq!(CallOutcome::of(&timed_out), CallOutcome::Timeout);
        assert_eq!(CallOutcome::of(&refused), CallOutcome::Unavailable);
        assert_eq!(CallOutcome::of(&bad), CallOutcome::Rejected);
        assert_eq!(
            CallOutcome::of(&Ok::<(), GatewayError>(())),
            CallOutcome::Ok
        );
    }
}
