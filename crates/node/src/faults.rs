//! Fault injection for testing and demonstration: every process can lose,
//! duplicate, reorder and delay the datagrams it sends and receives, from a
//! seeded random generator. Off by default.
//!
//! A datagram's fate is a list of delays, one per copy to deliver: none when
//! it is lost, two when it is duplicated. Reordering holds a datagram back a
//! little longer than the others, so later ones overtake it.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FaultConfig {
    /// Probability that a datagram is lost.
    pub drop: f64,
    /// Probability that a datagram is delivered twice.
    pub dup: f64,
    /// Probability that a datagram is held back so that later ones overtake it.
    pub reorder: f64,
    /// Every datagram is delayed by a uniform time in this range (ms).
    pub delay_min_ms: u64,
    pub delay_max_ms: u64,
    /// Seed of the random generator (each process mixes in its own ID).
    pub seed: u64,
}

impl FaultConfig {
    pub fn is_off(&self) -> bool {
        self.drop == 0.0 && self.dup == 0.0 && self.reorder == 0.0 && self.delay_max_ms == 0
    }

    pub fn validate(&self) -> Result<(), String> {
        for (name, p) in [
            ("drop", self.drop),
            ("dup", self.dup),
            ("reorder", self.reorder),
        ] {
            if !(0.0..=1.0).contains(&p) || p.is_nan() {
                return Err(format!(
                    "fault {name} = {p} is not a probability between 0 and 1"
                ));
            }
        }
        if self.drop >= 1.0 {
            return Err("fault drop = 1 would lose every datagram".into());
        }
        if self.delay_min_ms > self.delay_max_ms {
            return Err(format!(
                "fault delay {}..{} ms: the minimum exceeds the maximum",
                self.delay_min_ms, self.delay_max_ms
            ));
        }
        Ok(())
    }

    /// Parses a `MIN..MAX` delay range in milliseconds (or a single value).
    pub fn parse_delay(text: &str) -> Result<(u64, u64), String> {
        let bad = || {
            format!("{text:?} is not a delay range; expected MIN..MAX in milliseconds, like 1..5")
        };
        let (min, max) = match text.split_once("..") {
            Some((a, b)) => (
                a.trim().parse().map_err(|_| bad())?,
                b.trim().parse().map_err(|_| bad())?,
            ),
            None => {
                let v = text.trim().parse().map_err(|_| bad())?;
                (v, v)
            }
        };
        if min > max {
            return Err(bad());
        }
        Ok((min, max))
    }
}

/// Decides the fate of each datagram.
#[derive(Debug)]
pub struct FaultInjector {
    config: FaultConfig,
    rng: StdRng,
    pub dropped: u64,
    pub duplicated: u64,
    pub reordered: u64,
}

impl FaultInjector {
    /// `salt` separates the streams of different processes and directions.
    pub fn new(config: FaultConfig, salt: u64) -> FaultInjector {
        let seed = config.seed ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        FaultInjector {
            config,
            rng: StdRng::seed_from_u64(seed),
            dropped: 0,
            duplicated: 0,
            reordered: 0,
        }
    }

    pub fn is_off(&self) -> bool {
        self.config.is_off()
    }

    /// One delay per copy to deliver (empty: lost).
    pub fn fate(&mut self) -> Vec<Duration> {
        if self.config.is_off() {
            return vec![Duration::ZERO];
        }
        if self.rng.gen_bool(self.config.drop) {
            self.dropped += 1;
            return Vec::new();
        }
        let copies = if self.rng.gen_bool(self.config.dup) {
            self.duplicated += 1;
            2
        } else {
            1
        };
        (0..copies)
            .map(|_| {
                let mut ms = self
                    .rng
                    .gen_range(self.config.delay_min_ms..=self.config.delay_max_ms);
                if self.rng.gen_bool(self.config.reorder) {
                    self.reordered += 1;
                    ms += self
                        .rng
                        .gen_range(1..=(self.config.delay_max_ms * 2).max(5));
                }
                Duration::from_millis(ms)
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn off_means_every_datagram_once_at_once() {
        let mut f = FaultInjector::new(FaultConfig::default(), 1);
        for _ in 0..100 {
            assert_eq!(f.fate(), vec![Duration::ZERO]);
        }
    }

    #[test]
    fn rates_are_roughly_as_configured_and_seeded() {
        let config = FaultConfig {
            drop: 0.2,
            dup: 0.1,
            reorder: 0.1,
            delay_min_ms: 1,
            delay_max_ms: 3,
            seed: 9,
        };
        let mut a = FaultInjector::new(config.clone(), 1);
        let fates: Vec<_> = (0..10_000).map(|_| a.fate()).collect();
        let lost = fates.iter().filter(|f| f.is_empty()).count();
        let dup = fates.iter().filter(|f| f.len() == 2).count();
        assert!((1_700..2_300).contains(&lost), "lost {lost}");
        assert!((600..1_000).contains(&dup), "dup {dup}");
        assert!(fates.iter().flatten().all(|d| d.as_millis() >= 1));
        let mut b = FaultInjector::new(config, 1);
        let again: Vec<_> = (0..10_000).map(|_| b.fate()).collect();
        assert_eq!(fates, again, "same seed, same fates");
    }

    #[test]
    fn delay_ranges_parse_and_bad_values_are_named() {
        assert_eq!(FaultConfig::parse_delay("1..5"), Ok((1, 5)));
        assert_eq!(FaultConfig::parse_delay("7"), Ok((7, 7)));
        assert!(FaultConfig::parse_delay("5..1").is_err());
        assert!(FaultConfig::parse_delay("a..b")
            .unwrap_err()
            .contains("a..b"));
        let bad = FaultConfig {
            drop: 1.0,
            ..FaultConfig::default()
        };
        assert!(bad.validate().is_err());
        let bad = FaultConfig {
            dup: -0.1,
            ..FaultConfig::default()
        };
        assert!(bad.validate().is_err());
    }
}
