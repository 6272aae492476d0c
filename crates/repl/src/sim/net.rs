//! The simulated network: a seeded, faulty datagram service.
//!
//! Each datagram may be lost, duplicated, corrupted (one byte flipped or the
//! tail cut) and is delayed by a random time, so datagrams overtake each
//! other. Old datagrams are replayed now and then, as an attacker on the
//! path could: they are genuine, so the receivers' replay windows must
//! refuse them (or, at a receiver that restarted, idempotence must make
//! them harmless). A node can be cut off for a while (a partition: everything to or
//! from it is lost), and so can any group of nodes from the rest. [`Network::heal`] turns every fault off.

use crate::ids::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::cmp::Reverse;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, VecDeque};

/// Datagrams remembered for replays.
const HISTORY: usize = 256;

/// Fault rates and delays.
#[derive(Clone, Debug)]
pub struct Faults {
    pub loss: f64,
    pub duplicate: f64,
    pub corrupt: f64,
    /// Chance, per datagram sent, that an old datagram is delivered again.
    pub replay: f64,
    pub min_delay_ms: u64,
    pub max_delay_ms: u64,
}

impl Faults {
    pub fn none() -> Faults {
        Faults {
            loss: 0.0,
            duplicate: 0.0,
            corrupt: 0.0,
            replay: 0.0,
            min_delay_ms: 1,
            max_delay_ms: 5,
        }
    }
}

/// A datagram on its way.
#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct InFlight {
    pub deliver_at: u64,
    /// Send order, to break ties deterministically.
    pub id: u64,
    pub from: NodeId,
    pub to: NodeId,
    pub bytes: Vec<u8>,
    /// True when the network damaged it (the receiver must refuse it).
    pub damaged: bool,
}

/// Counters of what the network did.
#[derive(Clone, Debug, Default)]
pub struct NetStats {
    pub sent: u64,
    pub lost: u64,
    pub duplicated: u64,
    pub corrupted: u64,
    pub partitioned: u64,
    pub replayed: u64,
}

#[derive(Debug)]
pub struct Network {
    pub faults: Faults,
    queue: BinaryHeap<Reverse<InFlight>>,
    next_id: u64,
    /// Nodes cut off until the given time.
    down_until: BTreeMap<NodeId, u64>,
    /// Groups cut off from everybody else until the given time.
    cuts: Vec<(BTreeSet<NodeId>, u64)>,
    /// Recently sent datagrams: (from, to, bytes).
    history: VecDeque<(NodeId, NodeId, Vec<u8>)>,
    pub stats: NetStats,
}

impl Network {
    pub fn new(faults: Faults) -> Network {
        assert!(faults.min_delay_ms <= faults.max_delay_ms);
        Network {
            faults,
            queue: BinaryHeap::new(),
            next_id: 0,
            down_until: BTreeMap::new(),
            cuts: Vec::new(),
            history: VecDeque::new(),
            stats: NetStats::default(),
        }
    }

    /// Cuts `node` off until `until_ms`.
    pub fn partition(&mut self, node: NodeId, until_ms: u64) {
        self.down_until.insert(node, until_ms);
    }

    /// Cuts `group` off from every other node until `until_ms` (inside
    /// the group and outside it, datagrams still flow).
    pub fn cut(&mut self, group: BTreeSet<NodeId>, until_ms: u64) {
        self.cuts.push((group, until_ms));
    }

    /// No more faults: every later datagram arrives once, intact, soon.
    pub fn heal(&mut self) {
        self.faults = Faults::none();
        self.down_until.clear();
        self.cuts.clear();
    }

    fn is_down(&self, node: NodeId, now_ms: u64) -> bool {
        self.down_until.get(&node).is_some_and(|&t| now_ms < t)
    }

    fn is_cut(&self, from: NodeId, to: NodeId, now_ms: u64) -> bool {
        self.cuts
            .iter()
            .any(|(g, until)| now_ms < *until && g.contains(&from) != g.contains(&to))
    }

    /// Delivers `d` again at `at` (its receiver was paused).
    pub fn defer(&mut self, mut d: InFlight, at: u64) {
        d.deliver_at = at;
        self.queue.push(Reverse(d));
    }

    pub fn send(
        &mut self,
        rng: &mut ChaCha8Rng,
        now_ms: u64,
        from: NodeId,
        to: NodeId,
        bytes: Vec<u8>,
    ) {
        self.stats.sent += 1;
        if !self.history.is_empty() && rng.gen_bool(self.faults.replay) {
            let i = rng.gen_range(0..self.history.len());
            let (f, t, old) = self.history[i].clone();
            self.stats.replayed += 1;
            self.inject(rng, now_ms, f, t, old, false);
        }
        if self.history.len() == HISTORY {
            self.history.pop_front();
        }
        self.history.push_back((from, to, bytes.clone()));
        if self.is_down(from, now_ms) || self.is_down(to, now_ms) || self.is_cut(from, to, now_ms) {
            self.stats.partitioned += 1;
            return;
        }
        if rng.gen_bool(self.faults.loss) {
            self.stats.lost += 1;
            return;
        }
        let copies = if rng.gen_bool(self.faults.duplicate) {
            self.stats.duplicated += 1;
            2
        } else {
            1
        };
        for _ in 0..copies {
            let mut bytes = bytes.clone();
            let damaged = rng.gen_bool(self.faults.corrupt);
            if damaged {
                self.stats.corrupted += 1;
                if rng.gen_bool(0.5) {
                    let i = rng.gen_range(0..bytes.len());
                    bytes[i] ^= 1 << rng.gen_range(0..8);
                } else {
                    bytes.truncate(rng.gen_range(0..bytes.len()));
                }
            }
            self.inject(rng, now_ms, from, to, bytes, damaged);
        }
    }

    /// Delivers again every remembered datagram that was sent to `to`
    /// (e.g. at a front end restarted at the same address).
    pub fn replay_to(&mut self, rng: &mut ChaCha8Rng, now_ms: u64, to: NodeId) {
        let old: Vec<(NodeId, Vec<u8>)> = self
            .history
            .iter()
            .filter(|(_, t, _)| *t == to)
            .map(|(f, _, b)| (*f, b.clone()))
            .collect();
        for (from, bytes) in old {
            self.stats.replayed += 1;
            self.inject(rng, now_ms, from, to, bytes, false);
        }
    }

    /// Puts a datagram on the wire as is (also for forged ones).
    pub fn inject(
        &mut self,
        rng: &mut ChaCha8Rng,
        now_ms: u64,
        from: NodeId,
        to: NodeId,
        bytes: Vec<u8>,
        damaged: bool,
    ) {
        let delay = rng.gen_range(self.faults.min_delay_ms..=self.faults.max_delay_ms);
        self.next_id += 1;
        self.queue.push(Reverse(InFlight {
            deliver_at: now_ms + delay,
            id: self.next_id,
            from,
            to,
            bytes,
            damaged,
        }));
    }

    pub fn next_time(&self) -> Option<u64> {
        self.queue.peek().map(|Reverse(d)| d.deliver_at)
    }

    /// The next datagram due at or before `now_ms`.
    pub fn pop_due(&mut self, now_ms: u64) -> Option<InFlight> {
        if self.next_time()? > now_ms {
            return None;
        }
        self.queue.pop().map(|Reverse(d)| d)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }
}
