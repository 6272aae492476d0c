//! Refused datagrams: counted, and logged without flooding the log.
//!
//! A refused datagram changes nothing, but each one is a sign of something
//! (a duplicate, a replay, a peer with the wrong key, an attack). Benign
//! ones (duplicates, replays, datagrams for a former front end at this
//! address) are logged at debug level; the others at most once per
//! [`WARN_EVERY_MS`], with how many were left out since.

use dcms_repl::WireError;
use std::net::SocketAddr;
use tracing::{debug, warn};

/// One warning per this many milliseconds at most.
pub const WARN_EVERY_MS: u64 = 1_000;

/// Counts of refused datagrams.
#[derive(Debug, Default, serde::Serialize)]
pub struct Refusals {
    /// Duplicates, replays and datagrams for another addressee.
    pub benign: u64,
    /// Everything else: damaged, forged, foreign, forbidden.
    pub suspicious: u64,
    #[serde(skip)]
    last_warning_ms: Option<u64>,
    #[serde(skip)]
    unreported: u64,
}

impl Refusals {
    pub fn refused(&mut self, now_ms: u64, error: &WireError, from: SocketAddr) {
        if error.is_benign() {
            self.benign += 1;
            debug!(%error, %from, "datagram refused");
            return;
        }
        self.suspicious += 1;
        if self
            .last_warning_ms
            .is_some_and(|t| now_ms < t + WARN_EVERY_MS)
        {
            self.unreported += 1;
            return;
        }
        warn!(%error, %from, also_since_last_warning = self.unreported, "datagram refused");
        self.last_warning_ms = Some(now_ms);
        self.unreported = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_limited_to_one_a_second_and_everything_is_counted() {
        let mut r = Refusals::default();
        let from: SocketAddr = "127.0.0.1:9".parse().unwrap();
        for t in 0..3_000 {
            r.refused(t, &WireError::BadTag, from);
        }
        r.refused(
            3_000,
            &WireError::Replayed {
                sender: dcms_repl::NodeId(1),
                incarnation: 1,
                counter: 1,
            },
            from,
        );
        assert_eq!((r.suspicious, r.benign), (3_000, 1));
        assert_eq!(
            r.last_warning_ms,
            Some(2_000),
            "warned at 0, 1000 and 2000 only"
        );
        assert_eq!(r.unreported, 999);
    }
}
