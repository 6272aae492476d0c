//! Retransmission timeout estimation after RFC 6298.
//!
//! `SRTT` and `RTTVAR` are smoothed from samples taken only from requests
//! sent exactly once (Karn's rule, enforced by the caller); the timeout is
//! `SRTT + max(G, 4 * RTTVAR)` clamped to `[min, max]`, doubled on every
//! expiry (back-off) and recomputed at the next sample.

/// The estimator. All times are in milliseconds.
#[derive(Clone, Debug)]
pub struct RttEstimator {
    srtt: Option<f64>,
    rttvar: f64,
    rto: u64,
    min_rto: u64,
    max_rto: u64,
}

/// Clock granularity `G` assumed, in milliseconds.
const GRANULARITY_MS: f64 = 1.0;

impl RttEstimator {
    pub fn new(initial_rto: u64, min_rto: u64, max_rto: u64) -> RttEstimator {
        assert!(0 < min_rto && min_rto <= max_rto, "0 < min_rto <= max_rto");
        RttEstimator {
            srtt: None,
            rttvar: 0.0,
            rto: initial_rto.clamp(min_rto, max_rto),
            min_rto,
            max_rto,
        }
    }

    /// The current retransmission timeout.
    pub fn rto(&self) -> u64 {
        self.rto
    }

    pub fn srtt(&self) -> Option<f64> {
        self.srtt
    }

    /// Adds a round-trip sample.
    pub fn sample(&mut self, rtt_ms: u64) {
        let r = rtt_ms as f64;
        let srtt = match self.srtt {
            None => {
                self.rttvar = r / 2.0;
                r
            }
            Some(srtt) => {
                self.rttvar = 0.75 * self.rttvar + 0.25 * (srtt - r).abs();
                0.875 * srtt + 0.125 * r
            }
        };
        self.srtt = Some(srtt);
        let rto = (srtt + (4.0 * self.rttvar).max(GRANULARITY_MS)).ceil() as u64;
        self.rto = rto.clamp(self.min_rto, self.max_rto);
    }

    /// The timer expired: back off.
    /// The timeout for a request sent `transmissions` times: the RTO
    /// doubled for each retransmission so far, at most the maximum.
    pub fn backed_off(&self, transmissions: u32) -> u64 {
        let doublings = transmissions.saturating_sub(1).min(16);
        self.rto.saturating_mul(1 << doublings).min(self.max_rto)
    }

    pub fn backoff(&mut self) {
        self.rto = (self.rto.saturating_mul(2)).min(self.max_rto);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_rfc_6298() {
        let mut e = RttEstimator::new(1000, 10, 60_000);
        assert_eq!(e.rto(), 1000);
        e.sample(100); // srtt 100, rttvar 50 -> 300
        assert_eq!(e.rto(), 300);
        e.sample(100); // rttvar 37.5, srtt 100 -> 250
        assert_eq!(e.rto(), 250);
        e.backoff();
        assert_eq!(e.rto(), 500);
        for _ in 0..20 {
            e.backoff();
        }
        assert_eq!(e.rto(), 60_000, "clamped to max");
    }

    #[test]
    fn per_request_backoff_doubles_with_its_own_transmissions() {
        let mut e = RttEstimator::new(1000, 10, 400);
        e.sample(20); // srtt 20, rttvar 10 -> 60
        assert_eq!(e.backed_off(1), 60);
        assert_eq!(e.backed_off(2), 120);
        assert_eq!(e.backed_off(3), 240);
        assert_eq!(e.backed_off(4), 400, "clamped to max");
        assert_eq!(e.backed_off(40), 400);
        assert_eq!(e.rto(), 60, "the shared estimate does not move");
    }

    #[test]
    fn clamps_to_min() {
        let mut e = RttEstimator::new(1000, 200, 60_000);
        e.sample(1);
        assert_eq!(e.rto(), 200);
    }
}
