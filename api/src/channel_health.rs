//! Recent outcomes of each channel account's initiations, for the failure-rate alert: a
//! bounded ring of (when, succeeded) per account, in this node's memory.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use paycenter_domain::ids::{ChannelAccountId, TradeNo};

/// Outcomes kept per account (the window's count is read from these).
const MAX_OUTCOMES_PER_ACCOUNT: usize = 1_024;
/// Accounts tracked at once.
const MAX_ACCOUNTS: usize = 10_000;

/// Pending payments per account the sweeper asked about and got no answer for.
const MAX_STUCK_PER_ACCOUNT: usize = 1_000;

/// Initiation outcomes by channel account, and payments whose query fails.
#[derive(Debug, Default)]
pub struct ChannelOutcomes {
    accounts: Mutex<HashMap<ChannelAccountId, Ring>>,
    stuck: Mutex<HashMap<ChannelAccountId, HashMap<TradeNo, DateTime<Utc>>>>,
}

/// Attempts and failures of one account within a window.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    /// Initiations in the window.
    pub attempts: u64,
    /// Of which failed (refused, timed out, unreachable).
    pub failures: u64,
}

impl ChannelOutcomes {
    /// Records one initiation of `account`.
    pub fn record(&self, account: &ChannelAccountId, succeeded: bool, now: Instant) {
        let mut accounts = self.accounts.lock().expect("outcomes lock");
        if accounts.len() >= MAX_ACCOUNTS && !accounts.contains_key(account) {
            return;
        }
        accounts
            .entry(account.clone())
            .or_default()
            .push(now, succeeded);
    }

    /// One account's (calls, failures) within `window` before `now`.
    pub fn tally(&self, account: &ChannelAccountId, window: Duration, now: Instant) -> (u64, u64) {
        let accounts = self.accounts.lock().expect("outcomes lock");
        let tally = accounts
            .get(account)
            .map_or(Tally::default(), |ring| ring.count(window, now));
        (tally.attempts, tally.failures)
    }

    /// The sweeper asked the channel about a pending payment (started at `since`) and got no
    /// answer.
    pub fn query_failed(
        &self,
        account: &ChannelAccountId,
        trade_no: &TradeNo,
        since: DateTime<Utc>,
    ) {
        let mut stuck = self.stuck.lock().expect("stuck lock");
        if stuck.len() >= MAX_ACCOUNTS && !stuck.contains_key(account) {
            return;
        }
        let payments = stuck.entry(account.clone()).or_default();
        if payments.len() < MAX_STUCK_PER_ACCOUNT {
            payments.insert(trade_no.clone(), since);
        }
    }

    /// The channel answered a query of `account`: its payments are no longer stuck on it.
    pub fn query_answered(&self, account: &ChannelAccountId) {
        self.stuck.lock().expect("stuck lock").remove(account);
    }

    /// Accounts with payments stuck: their trade numbers and since when the oldest is pending.
    pub fn stuck(&self) -> Vec<(ChannelAccountId, Vec<TradeNo>, DateTime<Utc>)> {
        let stuck = self.stuck.lock().expect("stuck lock");
        stuck
            .iter()
            .filter_map(|(account, payments)| {
                let oldest = payments.values().min()?;
                let mut trade_nos: Vec<TradeNo> = payments.keys().cloned().collect();
                trade_nos.sort();
                Some((account.clone(), trade_nos, *oldest))
            })
            .collect()
    }

    /// Forgets an account's outcomes (its breaker closed: a fresh start).
    pub fn forget(&self, account: &ChannelAccountId) {
        self.accounts.lock().expect("outcomes lock").remove(account);
    }

    /// Each account's tally within `window` before `now`.
    pub fn tallies(&self, window: Duration, now: Instant) -> Vec<(ChannelAccountId, Tally)> {
        let accounts = self.accounts.lock().expect("outcomes lock");
        accounts
            .iter()
            .map(|(account, ring)| (account.clone(), ring.count(window, now)))
            .collect()
    }
}

/// One account's last outcomes in time order, with the failures among them counted as they
/// come and go, so a tally (every payment takes one) reads only the outcomes that have left
/// the window rather than all of them.
#[derive(Debug, Default)]
struct Ring {
    outcomes: VecDeque<(Instant, bool)>,
    n_failures: u64,
}

impl Ring {
    fn push(&mut self, now: Instant, succeeded: bool) {
        if self.outcomes.len() >= MAX_OUTCOMES_PER_ACCOUNT {
            if let Some((_, false)) = self.outcomes.pop_front() {
                self.n_failures -= 1;
            }
        }
        // Callers read the clock before the lock: never record before the last outcome, so
        // the ring stays in time order.
        let at = self
            .outcomes
            .back()
            .map_or(now, |(last, _)| (*last).max(now));
        self.outcomes.push_back((at, succeeded));
        self.n_failures += u64::from(!succeeded);
        debug_assert!(self.n_failures <= self.outcomes.len() as u64);
    }

    /// The outcomes within `window` before `now`: all of them less the oldest that are older.
    fn count(&self, window: Duration, now: Instant) -> Tally {
        let mut tally = Tally {
            attempts: self.outcomes.len() as u64,
            failures: self.n_failures,
        };
        for (at, succeeded) in &self.outcomes {
            if now.saturating_duration_since(*at) <= window {
                break;
            }
            tally.attempts -= 1;
            tally.failures -= u64::from(!succeeded);
        }
        tally
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tally_counts_the_window_only() {
        let outcomes = ChannelOutcomes::default();
        let account = ChannelAccountId::parse("ca_1").unwrap();
        let start = Instant::now();
        outcomes.record(&account, false, start);
        outcomes.record(&account, true, start + Duration::from_secs(100));
        outcomes.record(&account, false, start + Duration::from_secs(200));
        let tallies = outcomes.tallies(Duration::from_secs(150), start + Duration::from_secs(210));
        assert_eq!(
            tallies,
            vec![(
                account,
                Tally {
                    attempts: 2,
                    failures: 1
                }
            )]
        );
    }

    /// The counted tally matches a plain count of the window, with the ring full and
    /// wrapping, whatever the window.
    #[test]
    fn a_full_ring_counts_as_a_plain_scan_would() {
        let mut ring = Ring::default();
        let start = Instant::now();
        let mut all: Vec<(Instant, bool)> = Vec::new();
        for idx in 0..3_000u64 {
            let at = start + Duration::from_millis(idx * 10);
            let succeeded = idx % 3 != 0 && idx % 7 != 0;
            ring.push(at, succeeded);
            all.push((at, succeeded));
        }
        let kept = &all[all.len() - MAX_OUTCOMES_PER_ACCOUNT..];
        let now = start + Duration::from_millis(30_000);
        for window_ms in [0u64, 5, 1_000, 5_000, 10_230, 60_000] {
            let window = Duration::from_millis(window_ms);
            let in_window: Vec<&(Instant, bool)> = kept
                .iter()
                .filter(|(at, _)| now.saturating_duration_since(*at) <= window)
                .collect();
            let expected = Tally {
                attempts: in_window.len() as u64,
                failures: in_window.iter().filter(|(_, ok)| !ok).count() as u64,
            };
            assert_eq!(ring.count(window, now), expected, "window {window_ms} ms");
        }
        // An outcome read from the clock before an earlier one took the lock is kept in order.
        let last = all.last().unwrap().0;
        ring.push(start, false);
        assert_eq!(ring.outcomes.back().unwrap().0, last);
        assert_eq!(
            ring.count(Duration::from_millis(10), now),
            Tally {
                attempts: 2,
                failures: 1
            }
        );
    }
}
