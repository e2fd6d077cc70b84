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
    accounts: Mutex<HashMap<ChannelAccountId, VecDeque<(Instant, bool)>>>,
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
        let outcomes = accounts.entry(account.clone()).or_default();
        if outcomes.len() >= MAX_OUTCOMES_PER_ACCOUNT {
            outcomes.pop_front();
        }
        outcomes.push_back((now, succeeded));
    }

    /// One account's (calls, failures) within `window` before `now`.
    pub fn tally(&self, account: &ChannelAccountId, window: Duration, now: Instant) -> (u64, u64) {
        let accounts = self.accounts.lock().expect("outcomes lock");
        let tally = accounts
            .get(account)
            .map_or(Tally::default(), |outcomes| count(outcomes, window, now));
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
            .map(|(account, outcomes)| (account.clone(), count(outcomes, window, now)))
            .collect()
    }
}

/// The outcomes within `window` before `now`.
fn count(outcomes: &VecDeque<(Instant, bool)>, window: Duration, now: Instant) -> Tally {
    outcomes
        .iter()
        .filter(|(at, _)| now.duration_since(*at) <= window)
        .fold(Tally::default(), |tally, (_, ok)| Tally {
            attempts: tally.attempts + 1,
            failures: tally.failures + u64::from(!ok),
        })
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
}
