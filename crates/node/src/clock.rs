//! The shells' clock: milliseconds since the Unix epoch, read once at start
//! and advanced by the monotonic clock, so protocol timers never jump back
//! and audit lines still carry wall-clock times.

use std::time::{Instant, SystemTime, UNIX_EPOCH};

#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
    start_unix_ms: u64,
}

impl Clock {
    pub fn new() -> Clock {
        let start_unix_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            start: Instant::now(),
            start_unix_ms,
        }
    }

    /// Wall-clock microseconds since the Unix epoch, now (for incarnations).
    pub fn wall_us() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_micros() as u64)
            .unwrap_or(0)
    }

    pub fn now_ms(&self) -> u64 {
        self.start_unix_ms + self.start.elapsed().as_millis() as u64
    }

    /// The instant at which `now_ms()` reaches `ms`.
    pub fn instant_at(&self, ms: u64) -> Instant {
        self.start + std::time::Duration::from_millis(ms.saturating_sub(self.start_unix_ms))
    }
}

impl Clock {
    /// Sleeps until `now_ms()` reaches `deadline_ms`; forever when there is
    /// none (a state machine with no timer armed).
    pub async fn sleep_until(&self, deadline_ms: Option<u64>) {
        match deadline_ms {
            Some(ms) => tokio::time::sleep_until(self.instant_at(ms).into()).await,
            None => std::future::pending().await,
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}
