//! A request budget per app: a token bucket of `burst` tokens refilled at `per_second`. A
//! request that finds the bucket empty is answered `429 rate_limited` with `Retry-After`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Instant;

use paycenter_domain::ids::AppId;

/// The budget of one app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RateLimit {
    /// Tokens added per second.
    pub per_second: u64,
    /// Most tokens kept (the largest burst).
    pub burst: u64,
}

impl Default for RateLimit {
    fn default() -> Self {
        RateLimit {
            per_second: 200,
            burst: 400,
        }
    }
}

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    refilled_at: Instant,
}

/// Buckets kept at most; past it, full buckets (apps that paused) are forgotten first.
const MAX_BUCKETS: usize = 100_000;

/// Every app's bucket.
#[derive(Debug, Default)]
pub struct RateLimiter {
    buckets: Mutex<HashMap<AppId, Bucket>>,
}

impl RateLimiter {
    /// Takes one token for `app_id` at `now`: `Err(seconds to wait)` when there is none.
    pub fn take(&self, app_id: &AppId, limit: RateLimit, now: Instant) -> Result<(), u64> {
        assert!(limit.per_second > 0 && limit.burst > 0);
        let mut buckets = self
            .buckets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if buckets.len() >= MAX_BUCKETS && !buckets.contains_key(app_id) {
            let burst = limit.burst as f64;
            buckets.retain(|_, bucket| bucket.tokens < burst);
        }
        let bucket = buckets.entry(app_id.clone()).or_insert(Bucket {
            tokens: limit.burst as f64,
            refilled_at: now,
        });
        // Token counts are request counts, not money: a float is fine here.
        let elapsed_seconds = now
            .saturating_duration_since(bucket.refilled_at)
            .as_secs_f64();
        bucket.tokens =
            (bucket.tokens + elapsed_seconds * limit.per_second as f64).min(limit.burst as f64);
        bucket.refilled_at = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            return Ok(());
        }
        let wait_seconds = ((1.0 - bucket.tokens) / limit.per_second as f64).ceil();
        Err((wait_seconds as u64).max(1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_burst_then_the_refill_rate() {
        let limiter = RateLimiter::default();
        let app = AppId::from_entropy(1);
        let limit = RateLimit {
            per_second: 2,
            burst: 3,
        };
        let t0 = Instant::now();
        for _ in 0..3 {
            assert_eq!(limiter.take(&app, limit, t0), Ok(()));
        }
        assert_eq!(limiter.take(&app, limit, t0), Err(1));
        assert_eq!(
            limiter.take(&app, limit, t0 + Duration::from_millis(500)),
            Ok(())
        );
        // Another app has its own budget.
        assert_eq!(limiter.take(&AppId::from_entropy(2), limit, t0), Ok(()));
    }
}
