//! Who is signed in to the console, and how often sign-in failed. Sessions live in memory
//! (a restart signs everyone out), each under the SHA-256 of its cookie's random token; each
//! carries its own CSRF token. Both maps are bounded.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use paycenter_domain::ids::OperatorId;
use sha2::{Digest, Sha256};

/// A session ends this long after its last request.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// A session ends this long after sign-in, however busy.
pub const ABSOLUTE_TIMEOUT: Duration = Duration::from_secs(12 * 60 * 60);
/// The most sessions kept; the least recently used goes first.
pub const MAX_SESSIONS: usize = 10_000;
/// Failed sign-ins allowed per address and per client IP within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: usize = 5;
/// The window failures are counted in.
pub const FAILURE_WINDOW: Duration = Duration::from_secs(15 * 60);
/// The most addresses and IPs whose failures are remembered.
const MAX_FAILURE_KEYS: usize = 10_000;

/// A signed-in operator's session.
#[derive(Debug, Clone)]
pub struct Session {
    /// Who.
    pub operator_id: OperatorId,
    /// What every form of this session must carry.
    pub csrf_token: String,
    signed_in: Instant,
    last_seen: Instant,
}

/// The console's sessions and sign-in throttle.
#[derive(Debug, Default)]
pub struct Sessions {
    sessions: Mutex<HashMap<[u8; 32], Session>>,
    failures: Mutex<HashMap<String, VecDeque<Instant>>>,
}

/// 32 random bytes as hex (a session's token, a CSRF token). Its own, so that sessions depend
/// on nothing else of the service.
pub fn new_token() -> String {
    let mut bytes = [0u8; 32];
    rand::RngCore::fill_bytes(&mut rand::rngs::OsRng, &mut bytes);
    hex::encode(bytes)
}

fn token_key(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Sessions {
    /// Starts a session for `operator_id`: its cookie token and the session.
    pub fn start(&self, operator_id: OperatorId, now: Instant) -> (String, Session) {
        let token = new_token();
        let session = Session {
            operator_id,
            csrf_token: new_token(),
            signed_in: now,
            last_seen: now,
        };
        let mut sessions = self.sessions.lock().expect("sessions lock");
        sessions.retain(|_, session| live(session, now));
        if sessions.len() >= MAX_SESSIONS {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, session)| session.last_seen)
                .map(|(key, _)| *key);
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        sessions.insert(token_key(&token), session.clone());
        (token, session)
    }

    /// The live session of the cookie `token`, marked as seen.
    pub fn touch(&self, token: &str, now: Instant) -> Option<Session> {
        let mut sessions = self.sessions.lock().expect("sessions lock");
        let key = token_key(token);
        let session = sessions.get_mut(&key)?;
        if !live(session, now) {
            sessions.remove(&key);
            return None;
        }
        session.last_seen = now;
        Some(session.clone())
    }

    /// Ends the session of the cookie `token`.
    pub fn end(&self, token: &str) {
        self.sessions
            .lock()
            .expect("sessions lock")
            .remove(&token_key(token));
    }

    /// Whether any of `keys` (an address, an IP) failed too often lately.
    pub fn throttled(&self, keys: &[&str], now: Instant) -> bool {
        let failures = self.failures.lock().expect("failures lock");
        keys.iter().any(|key| {
            failures.get(*key).is_some_and(|times| {
                times
                    .iter()
                    .filter(|time| now.duration_since(**time) < FAILURE_WINDOW)
                    .count()
                    >= MAX_FAILURES
            })
        })
    }

    /// Counts a failed sign-in against each of `keys`.
    pub fn failed(&self, keys: &[&str], now: Instant) {
        let mut failures = self.failures.lock().expect("failures lock");
        if failures.len() >= MAX_FAILURE_KEYS {
            failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|last| now.duration_since(*last) < FAILURE_WINDOW)
            });
        }
        for key in keys {
            if failures.len() >= MAX_FAILURE_KEYS && !failures.contains_key(*key) {
                continue;
            }
            let times = failures.entry((*key).to_owned()).or_default();
            while times
                .front()
                .is_some_and(|first| now.duration_since(*first) >= FAILURE_WINDOW)
            {
                times.pop_front();
            }
            if times.len() < MAX_FAILURES * 2 {
                times.push_back(now);
            }
        }
    }

    /// Forgets the failures of `keys` (after a successful sign-in).
    pub fn succeeded(&self, keys: &[&str]) {
        let mut failures = self.failures.lock().expect("failures lock");
        for key in keys {
            failures.remove(*key);
        }
    }
}

fn live(session: &Session, now: Instant) -> bool {
    now.duration_since(session.last_seen) < IDLE_TIMEOUT
        && now.duration_since(session.signed_in) < ABSOLUTE_TIMEOUT
}

#[cfg(test)]
mod tests {
    use super::*;

    fn operator() -> OperatorId {
        OperatorId::parse("op_1").unwrap()
    }

    #[test]
    fn a_session_ends_when_idle_too_long_or_old_or_signed_out() {
        let sessions = Sessions::default();
        let start = Instant::now();
        let (token, _) = sessions.start(operator(), start);
        assert!(sessions
            .touch(&token, start + Duration::from_secs(60))
            .is_some());
        assert!(sessions
            .touch(&token, start + Duration::from_secs(60) + IDLE_TIMEOUT)
            .is_none());
        let (token, _) = sessions.start(operator(), start);
        let mut now = start;
        while now.duration_since(start) < ABSOLUTE_TIMEOUT - Duration::from_secs(600) {
            now += Duration::from_secs(600);
            assert!(sessions.touch(&token, now).is_some());
        }
        assert!(sessions.touch(&token, start + ABSOLUTE_TIMEOUT).is_none());
        let (token, _) = sessions.start(operator(), start);
        sessions.end(&token);
        assert!(sessions.touch(&token, start).is_none());
        assert!(sessions.touch("not a token", start).is_none());
    }

    #[test]
    fn sign_in_is_throttled_after_five_failures_for_fifteen_minutes() {
        let sessions = Sessions::default();
        let now = Instant::now();
        for _ in 0..MAX_FAILURES {
            assert!(!sessions.throttled(&["a@example.com", "10.0.0.1"], now));
            sessions.failed(&["a@example.com", "10.0.0.1"], now);
        }
        assert!(sessions.throttled(&["a@example.com"], now));
        assert!(sessions.throttled(&["b@example.com", "10.0.0.1"], now));
        assert!(!sessions.throttled(&["b@example.com", "10.0.0.2"], now));
        assert!(!sessions.throttled(&["a@example.com"], now + FAILURE_WINDOW));
    }
}
