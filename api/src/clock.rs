//! The time the service decides and stamps with. Commands, the reactor's schedules and the
//! daily reconciliation read it from `AppState::clock`, never from the system directly, so a
//! test can move it. (Channel adapters sign with the real time: that is the channels' rule.)

use chrono::{DateTime, Duration, Utc};

/// A source of the current time.
pub trait Clock: Send + Sync {
    /// Now.
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// The system's clock moved by a fixed offset: what test builds run under
/// `PAYCENTER_FAULT_CLOCK_OFFSET_SECONDS` (cargo feature `fault-injection`), so black-box tests
/// can stand the binary just before or after a day's edge.
pub struct OffsetClock {
    offset: Duration,
}

impl OffsetClock {
    /// The system's clock plus `offset`.
    pub fn new(offset: Duration) -> OffsetClock {
        OffsetClock { offset }
    }
}

impl Clock for OffsetClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now() + self.offset
    }
}

/// A clock that stands still until told to move: what use-case tests decide with.
#[derive(Debug)]
pub struct FixedClock {
    now: std::sync::Mutex<DateTime<Utc>>,
}

impl FixedClock {
    /// A clock standing at `now`.
    pub fn at(now: DateTime<Utc>) -> std::sync::Arc<FixedClock> {
        std::sync::Arc::new(FixedClock {
            now: std::sync::Mutex::new(now),
        })
    }

    /// Moves it by `by`.
    pub fn advance(&self, by: Duration) {
        *self.now.lock().expect("clock lock") += by;
    }
}

impl Clock for std::sync::Arc<FixedClock> {
    fn now(&self) -> DateTime<Utc> {
        *self.now.lock().expect("clock lock")
    }
}

/// The clock `serve` runs with: the system's, or, in builds with fault injection, the one
/// `PAYCENTER_FAULT_CLOCK_OFFSET_SECONDS` asks for.
pub fn from_env() -> Result<Box<dyn Clock>, String> {
    if !cfg!(feature = "fault-injection") {
        return Ok(Box::new(SystemClock));
    }
    match std::env::var("PAYCENTER_FAULT_CLOCK_OFFSET_SECONDS") {
        Err(_) => Ok(Box::new(SystemClock)),
        Ok(text) => {
            let seconds: i64 = text.trim().parse().map_err(|_| {
                format!("PAYCENTER_FAULT_CLOCK_OFFSET_SECONDS must be whole seconds, not {text:?}")
            })?;
            tracing::warn!(seconds, "the clock is moved (fault injection)");
            Ok(Box::new(OffsetClock::new(Duration::seconds(seconds))))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_offset_clock_runs_beside_the_system_one() {
        let moved = OffsetClock::new(Duration::hours(-3));
        let difference = Utc::now() - moved.now();
        assert!((difference - Duration::hours(3)).num_seconds().abs() <= 1);
    }
}
