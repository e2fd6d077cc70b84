//! Prometheus text metrics: request counts and latency per route, callback verification
//! failures, webhook failures. Plain atomics; no registry crate.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// Upper bounds of the latency histogram buckets, in seconds.
const BUCKETS_SECONDS: [f64; 10] = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0];

#[derive(Default)]
struct RouteStats {
    n_by_status: BTreeMap<u16, u64>,
    bucket_counts: [u64; BUCKETS_SECONDS.len()],
    sum_seconds: f64,
    count: u64,
}

/// The service's metrics.
#[derive(Default)]
pub struct Metrics {
    routes: Mutex<BTreeMap<&'static str, RouteStats>>,
    /// Callbacks refused for a bad signature or body.
    pub callback_verification_failures: AtomicU64,
    /// Webhook attempts that were not acknowledged.
    pub webhook_failures: AtomicU64,
    /// Webhooks given up after the whole schedule.
    pub webhooks_exhausted: AtomicU64,
}

impl Metrics {
    /// Records one request.
    pub fn observe(&self, route: &'static str, status: u16, seconds: f64) {
        let mut routes = self.routes.lock().expect("metrics lock");
        let stats = routes.entry(route).or_default();
        *stats.n_by_status.entry(status).or_default() += 1;
        for (bucket_idx, bound) in BUCKETS_SECONDS.iter().enumerate() {
            if seconds <= *bound {
                stats.bucket_counts[bucket_idx] += 1;
            }
        }
        stats.sum_seconds += seconds;
        stats.count += 1;
    }

    /// The Prometheus text exposition; `payments_by_status` comes from the read model.
    pub fn render(&self, payments_by_status: &[(&str, u64)]) -> String {
        let mut text = String::new();
        text.push_str("# HELP paycenter_http_requests_total HTTP requests by route and status.\n# TYPE paycenter_http_requests_total counter\n");
        let routes = self.routes.lock().expect("metrics lock");
        for (route, stats) in routes.iter() {
            for (status, n) in &stats.n_by_status {
                text.push_str(&format!(
                    "paycenter_http_requests_total{{route=\"{route}\",status=\"{status}\"}} {n}\n"
                ));
            }
        }
        text.push_str("# HELP paycenter_http_request_duration_seconds Request latency by route.\n# TYPE paycenter_http_request_duration_seconds histogram\n");
        for (route, stats) in routes.iter() {
            for (bucket_idx, bound) in BUCKETS_SECONDS.iter().enumerate() {
                text.push_str(&format!(
                    "paycenter_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"{bound}\"}} {}\n",
                    stats.bucket_counts[bucket_idx]
                ));
            }
            text.push_str(&format!("paycenter_http_request_duration_seconds_bucket{{route=\"{route}\",le=\"+Inf\"}} {}\n", stats.count));
            text.push_str(&format!(
                "paycenter_http_request_duration_seconds_sum{{route=\"{route}\"}} {}\n",
                stats.sum_seconds
            ));
            text.push_str(&format!(
                "paycenter_http_request_duration_seconds_count{{route=\"{route}\"}} {}\n",
                stats.count
            ));
        }
        text.push_str(
            "# HELP paycenter_payments Payments by status.\n# TYPE paycenter_payments gauge\n",
        );
        for (status, n) in payments_by_status {
            text.push_str(&format!("paycenter_payments{{status=\"{status}\"}} {n}\n"));
        }
        let counters = [
            (
                "paycenter_callback_verification_failures_total",
                "Channel callbacks refused.",
                &self.callback_verification_failures,
            ),
            (
                "paycenter_webhook_failures_total",
                "Webhook attempts not acknowledged.",
                &self.webhook_failures,
            ),
            (
                "paycenter_webhooks_exhausted_total",
                "Webhooks given up after the whole schedule.",
                &self.webhooks_exhausted,
            ),
        ];
        for (name, help, counter) in counters {
            text.push_str(&format!(
                "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}\n",
                counter.load(Ordering::Relaxed)
            ));
        }
        text
    }
}
