//! The anti-replay window of one sender (RFC 4303 §3.4.3, RFC 6347 §4.1.2.6).
//!
//! A sender numbers its datagrams 1, 2, 3, ... within an incarnation, and
//! its incarnation is higher at every start. The receiver remembers the
//! highest counter accepted and which of the [`REPLAY_WINDOW`] numbers
//! below it were seen: a number seen before, older than the window, or of an
//! older incarnation is refused. Reordering within the window is accepted.

use super::REPLAY_WINDOW;

/// Words of the window's bitmap.
const WORDS: usize = (REPLAY_WINDOW / 64) as usize;
const _: () = assert!(REPLAY_WINDOW.is_multiple_of(64) && WORDS > 0);

/// What one receiver knows of one sender's datagrams.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ReplayWindow {
    incarnation: u64,
    /// The highest counter accepted in `incarnation`.
    highest: u64,
    /// Bit `age` (word `age / 64`, bit `age % 64`) set: counter
    /// `highest - age` was accepted.
    seen: [u64; WORDS],
}

impl ReplayWindow {
    /// The window after the first datagram heard from a sender.
    pub fn first(incarnation: u64, counter: u64) -> ReplayWindow {
        let mut seen = [0; WORDS];
        seen[0] = 1;
        ReplayWindow {
            incarnation,
            highest: counter,
            seen,
        }
    }

    fn bit(&self, age: u64) -> bool {
        self.seen[(age / 64) as usize] & (1 << (age % 64)) != 0
    }

    /// True when `(incarnation, counter)` would be new here.
    pub fn is_fresh(&self, incarnation: u64, counter: u64) -> bool {
        if incarnation != self.incarnation {
            return incarnation > self.incarnation;
        }
        if counter > self.highest {
            return true;
        }
        let age = self.highest - counter;
        age < REPLAY_WINDOW && !self.bit(age)
    }

    /// Records `(incarnation, counter)` as accepted (it must be fresh).
    pub fn accept(&mut self, incarnation: u64, counter: u64) {
        debug_assert!(self.is_fresh(incarnation, counter));
        if incarnation > self.incarnation {
            *self = ReplayWindow::first(incarnation, counter);
            return;
        }
        if counter > self.highest {
            self.shift(counter - self.highest);
            self.highest = counter;
        }
        let age = self.highest - counter;
        self.seen[(age / 64) as usize] |= 1 << (age % 64);
    }

    /// Ages every remembered number by `by`.
    fn shift(&mut self, by: u64) {
        if by >= REPLAY_WINDOW {
            self.seen = [0; WORDS];
            return;
        }
        let (words, bits) = ((by / 64) as usize, (by % 64) as u32);
        for i in (0..WORDS).rev() {
            let from = i.checked_sub(words);
            let hi = from.map_or(0, |j| self.seen[j] << bits);
            let lo = match from.and_then(|j| j.checked_sub(1)) {
                Some(k) if bits > 0 => self.seen[k] >> (64 - bits),
                _ => 0,
            };
            self.seen[i] = hi | lo;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    #[test]
    fn duplicates_old_numbers_and_old_incarnations_are_refused() {
        let mut w = ReplayWindow::first(5, 10);
        assert!(!w.is_fresh(5, 10), "the same datagram again");
        assert!(w.is_fresh(5, 9), "reordered within the window");
        w.accept(5, 9);
        assert!(!w.is_fresh(5, 9));
        assert!(w.is_fresh(5, 11));
        w.accept(5, 200);
        w.accept(5, 200 + REPLAY_WINDOW);
        assert!(!w.is_fresh(5, 200), "older than the window");
        assert!(w.is_fresh(5, 201));
        assert!(!w.is_fresh(5, 200 + REPLAY_WINDOW));
        assert!(!w.is_fresh(4, 1_000), "an older incarnation");
        assert!(w.is_fresh(6, 1), "a newer incarnation starts afresh");
        w.accept(6, 1);
        assert!(
            !w.is_fresh(5, 10_000),
            "the old incarnation is gone for good"
        );
        assert!(!w.is_fresh(6, 1));
    }

    proptest! {
        /// Against a model that remembers everything: the window never
        /// accepts a number twice, and accepts every new number within the
        /// window of the highest.
        #[test]
        fn never_accepts_twice_and_never_refuses_a_new_number_in_the_window(
            counters in prop::collection::vec(1u64..3 * REPLAY_WINDOW, 1..600)
        ) {
            let mut w = ReplayWindow::first(1, counters[0]);
            let mut seen = BTreeSet::from([counters[0]]);
            let mut highest = counters[0];
            for &c in &counters[1..] {
                let fresh = w.is_fresh(1, c);
                if seen.contains(&c) {
                    prop_assert!(!fresh, "{c} accepted twice");
                } else if c + REPLAY_WINDOW > highest {
                    prop_assert!(fresh, "{c} refused though new and within the window of {highest}");
                }
                if fresh {
                    w.accept(1, c);
                    seen.insert(c);
                    highest = highest.max(c);
                }
            }
        }
    }
}
