//! The deterministic simulator: the real protocol and the real clinic domain
//! on a seeded, faulty network with a virtual clock.
//!
//! One run ([`run`]) is a function of its seed alone. The seed picks the
//! setting (fault rates, delays, partitions, datagram size, windows, timers,
//! one or two front ends), then the clients submit a random workload of every
//! request kind ([`workload`]), valid and invalid, through the front ends to
//! a leader and two backups. The network (`net.rs`) loses, duplicates,
//! reorders, delays and corrupts datagrams; forged and foreign datagrams are
//! injected too. Each replica writes to an in-memory disk (`disk.rs`) with
//! group commit and random write latency.
//!
//! The simulation is a loop of single steps (one datagram delivered, one
//! disk write completed, one timer fired or one request submitted), and
//! `check.rs` verifies the invariants after every step: at-most-once
//! execution, backups' logs are prefixes of the leader's, and every reply a
//! client receives is durable on every replica. After the workload the
//! network heals and the run continues until nothing is left to do; then
//! every request must have been answered exactly once and all digests
//! (in memory and rebuilt from each disk) must agree.
//!
//! Replaying a seed: `DCMS_SIM_SEED=1234 cargo test -p dcms-repl sim_replay
//! -- --nocapture` (see `tests.rs`). A violated invariant panics with a
//! message naming it.

mod check;
mod coverage;
mod disk;
mod net;
#[cfg(test)]
mod tests;
pub mod workload;

use crate::frontend::{FrontEnd, FrontEndConfig};
use crate::ids::NodeId;
use crate::recover::Recovered;
use crate::replica::{Replica, ReplicaConfig};
use crate::wire::WireConfig;
use check::Checker;
pub use coverage::Coverage;
use disk::Disk;
use net::{Faults, NetStats, Network};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Virtual time starts here (2026-01-01 UTC, in ms), so audit times look real.
pub const EPOCH_MS: u64 = 1_767_225_600_000;
const CLUSTER: u64 = 0xDC35;
const SECRET: &[u8] = b"simulated cluster secret";
const REPLICAS: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];
const LEADER: NodeId = NodeId(1);
/// Steps after which a run counts as livelocked.
const MAX_STEPS: u64 = 3_000_000;
/// Virtual time after healing by which everything must be answered.
const QUIESCE_LIMIT_MS: u64 = 30 * 60 * 1000;

/// What a run did, for the report line.
#[derive(Clone, Debug)]
pub struct SimReport {
    pub seed: u64,
    pub requests: u64,
    pub frontends: usize,
    pub steps: u64,
    pub virtual_ms: u64,
    pub net: NetStats,
    pub coverage: Coverage,
    pub forged: u64,
    pub setting: String,
}

impl std::fmt::Display for SimReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: {} requests, {} front end(s), {} steps, {} ms virtual; net sent {} lost {} dup {} corrupt {} cut {} replayed {}; forged {}; {:?}; {}",
            self.seed,
            self.requests,
            self.frontends,
            self.steps,
            self.virtual_ms,
            self.net.sent,
            self.net.lost,
            self.net.duplicated,
            self.net.corrupted,
            self.net.partitioned,
            self.net.replayed,
            self.forged,
            self.coverage,
            self.setting
        )
    }
}

/// The one-line command that replays `seed`.
pub fn replay_command(seed: u64) -> String {
    format!("DCMS_SIM_SEED={seed} cargo test -p dcms-repl sim_replay -- --nocapture")
}

struct Client {
    remaining: u64,
    next_at: u64,
    max_gap_ms: u64,
}

/// One simulated cluster.
struct Sim {
    rng: ChaCha8Rng,
    now: u64,
    steps: u64,
    net: Network,
    replicas: BTreeMap<NodeId, Replica>,
    disks: BTreeMap<NodeId, Disk>,
    frontends: BTreeMap<NodeId, FrontEnd>,
    clients: BTreeMap<NodeId, Client>,
    /// (start, node, until): partitions still to begin.
    partitions: Vec<(u64, NodeId, u64)>,
    /// Forged datagrams still to inject: (time, victim).
    forgeries: Vec<(u64, NodeId)>,
    heal_at: Option<u64>,
    /// Backup crashes still to happen: (time, node, down for ms).
    crashes: Vec<(u64, NodeId, u64)>,
    /// Crashed backups and when they restart.
    restarts: BTreeMap<NodeId, u64>,
    replica_config: ReplicaConfig,
    restarted: u64,
    created: u32,
    check: Checker,
    forged: u64,
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, list: &[T]) -> T {
    *list.choose(rng).expect("non-empty")
}

/// Runs the simulation for `seed`; panics when an invariant fails.
pub fn run(seed: u64) -> SimReport {
    run_with(seed, None)
}

/// Like [`run`], with `requests` in total instead of the seed's choice
/// (the rest of the setting still follows from the seed).
pub fn run_with(seed: u64, requests_override: Option<u64>) -> SimReport {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut wire = WireConfig::new(CLUSTER, SECRET);
    wire.max_datagram = pick(&mut rng, &[256, 600, 1400, 8192]);
    let faults = Faults {
        loss: pick(&mut rng, &[0.0, 0.01, 0.05, 0.15, 0.3]),
        duplicate: pick(&mut rng, &[0.0, 0.02, 0.1]),
        corrupt: pick(&mut rng, &[0.0, 0.01, 0.05]),
        replay: pick(&mut rng, &[0.0, 0.01, 0.05]),
        min_delay_ms: rng.gen_range(0..=2),
        max_delay_ms: pick(&mut rng, &[2, 10, 40, 150]),
    };
    let max_in_flight: u64 = pick(&mut rng, &[1, 4, 32]);
    let mut rc = ReplicaConfig::new(wire.clone(), LEADER, REPLICAS.to_vec(), LEADER);
    rc.retransmit_ms = rng.gen_range(40..=200);
    rc.nack_delay_ms = rng.gen_range(0..=5);
    rc.nack_retry_ms = rng.gen_range(20..=100);
    rc.max_holdback = pick(&mut rng, &[4, 64, 1024]);
    rc.max_window = pick(&mut rng, &[4, 64, 8192]);
    rc.resend_batch = pick(&mut rng, &[1, 8, 256]);
    rc.reply_cache = max_in_flight as usize + rng.gen_range(0..4);
    rc.max_nack_numbers = pick(&mut rng, &[1, 4, 64]);
    rc.heartbeat_ms = 0;
    let disk_ms = pick(&mut rng, &[0, 2, 20]);
    let frontend_count = if rng.gen_bool(0.3) { 2 } else { 1 };
    let requests: u64 = rng.gen_range(20..=300);
    let requests = requests_override.unwrap_or(requests);
    let outcome_timeout_ms = pick(&mut rng, &[300, 5_000]);
    let initial_rto_ms = rng.gen_range(50..=1000);
    let setting = format!(
        "{faults:?} datagram {} in-flight {max_in_flight} window {} holdback {} resend {} nack-max {} retransmit {} disk {disk_ms} timeout {outcome_timeout_ms}",
        wire.max_datagram, rc.max_window, rc.max_holdback, rc.resend_batch, rc.max_nack_numbers, rc.retransmit_ms
    );
    tracing::debug!(seed, %setting, "simulation");

    let now = EPOCH_MS;
    let mut replicas = BTreeMap::new();
    let mut disks = BTreeMap::new();
    for id in REPLICAS {
        let config = ReplicaConfig {
            me: id,
            ..rc.clone()
        };
        replicas.insert(id, Replica::new(config, Recovered::empty(rc.reply_cache)));
        disks.insert(id, Disk::new(disk_ms));
    }
    let mut frontends = BTreeMap::new();
    let mut clients = BTreeMap::new();
    for i in 0..frontend_count {
        let stream = 100 + i as u64;
        let mut fc = FrontEndConfig::new(wire.clone(), stream, LEADER);
        fc.max_in_flight = max_in_flight;
        fc.outcome_timeout_ms = outcome_timeout_ms;
        fc.initial_rto_ms = initial_rto_ms;
        fc.min_rto_ms = 20;
        fc.max_rto_ms = 2_000;
        frontends.insert(NodeId(stream), FrontEnd::new(fc));
        let share = requests / frontend_count as u64
            + u64::from(i == 0) * (requests % frontend_count as u64);
        clients.insert(
            NodeId(stream),
            Client {
                remaining: share,
                next_at: now,
                max_gap_ms: pick(&mut rng, &[0, 5, 50]),
            },
        );
    }
    // The workload lasts roughly this long; faults are scheduled inside it.
    let span = requests * 25 + 500;
    let mut nodes: Vec<NodeId> = REPLICAS.to_vec();
    nodes.extend(frontends.keys());
    let mut partitions = Vec::new();
    if rng.gen_bool(0.4) {
        for _ in 0..rng.gen_range(1..=3) {
            let start = now + rng.gen_range(0..span);
            let node = pick(&mut rng, &nodes);
            partitions.push((start, node, start + rng.gen_range(100..=3000)));
        }
    }
    let mut crashes = Vec::new();
    if rng.gen_bool(0.3) {
        for _ in 0..rng.gen_range(1..=2) {
            let at = now + rng.gen_range(0..span);
            crashes.push((at, pick(&mut rng, &REPLICAS[1..]), rng.gen_range(0..=2000)));
        }
    }
    let forgeries = (0..rng.gen_range(0..=4))
        .map(|_| (now + rng.gen_range(0..span), pick(&mut rng, &nodes)))
        .collect();
    let mut sim = Sim {
        rng,
        now,
        steps: 0,
        net: Network::new(faults),
        replicas,
        disks,
        frontends,
        clients,
        partitions,
        forgeries,
        heal_at: Some(now + span),
        crashes,
        restarts: BTreeMap::new(),
        replica_config: rc,
        restarted: 0,
        created: 0,
        check: Checker::new(LEADER, outcome_timeout_ms),
        forged: 0,
    };
    sim.run();
    SimReport {
        seed,
        requests,
        frontends: frontend_count,
        steps: sim.steps,
        virtual_ms: sim.now - EPOCH_MS,
        net: sim.net.stats.clone(),
        coverage: Coverage::of(&sim),
        forged: sim.forged,
        setting,
    }
}

impl Sim {
    fn run(&mut self) {
        while let Some(t) = self.next_event_time() {
            self.now = self.now.max(t);
            self.step();
            self.steps += 1;
            assert!(
                self.steps < MAX_STEPS,
                "livelock: {MAX_STEPS} steps without quiescing"
            );
            if self.heal_at.is_none() {
                let healed_for = self.now - self.check.healed_at.expect("healed");
                assert!(
                    healed_for < QUIESCE_LIMIT_MS,
                    "no quiescence {QUIESCE_LIMIT_MS} ms after healing: {} requests unanswered",
                    self.frontends
                        .values()
                        .map(|f| f.unanswered())
                        .sum::<usize>()
                );
            }
        }
        assert!(self.heal_at.is_none(), "ran out of events before healing");
        self.check
            .at_end(&self.replicas, &self.disks, &self.frontends, &self.net);
    }

    fn next_event_time(&self) -> Option<u64> {
        let mut times: Vec<u64> = Vec::new();
        times.extend(self.heal_at);
        times.extend(self.net.next_time());
        times.extend(self.disks.values().filter_map(Disk::next_time));
        times.extend(self.replicas.values().filter_map(Replica::next_deadline));
        times.extend(self.frontends.values().filter_map(FrontEnd::next_deadline));
        times.extend(
            self.clients
                .values()
                .filter(|c| c.remaining > 0)
                .map(|c| c.next_at),
        );
        times.extend(self.partitions.iter().map(|p| p.0));
        times.extend(self.forgeries.iter().map(|f| f.0));
        times.extend(self.crashes.iter().map(|c| c.0));
        times.extend(self.restarts.values());
        times.into_iter().min()
    }

    /// Does exactly one thing that is due, then drains outputs and checks.
    fn step(&mut self) {
        let now = self.now;
        if self.heal_at.is_some_and(|t| t <= now) {
            self.heal_at = None;
            self.net.heal();
            self.partitions.clear();
            self.forgeries.clear();
            self.crashes.clear();
            self.check.healed_at = Some(now);
        } else if let Some(&id) = self
            .restarts
            .iter()
            .find(|(_, &t)| t <= now)
            .map(|(id, _)| id)
        {
            self.restarts.remove(&id);
            self.restarted += 1;
            let rc = &self.replica_config;
            let config = ReplicaConfig {
                me: id,
                incarnation: self.restarted as u32,
                ..rc.clone()
            };
            let recovered = self.disks[&id].recover(rc.reply_cache);
            self.replicas.insert(id, Replica::new(config, recovered));
        } else if let Some(i) = self.crashes.iter().position(|c| c.0 <= now) {
            let (_, id, down_ms) = self.crashes.swap_remove(i);
            if self.replicas.remove(&id).is_some() {
                let disk = self.disks.get_mut(&id).expect("disk");
                disk.crash(&mut self.rng);
                self.check.on_crash(id, disk.durable.len());
                self.restarts.insert(id, now + down_ms);
            }
        } else if let Some(d) = self.net.pop_due(now) {
            let result = if self.restarts.contains_key(&d.to) {
                Ok(None) // the node is down
            } else if let Some(r) = self.replicas.get_mut(&d.to) {
                r.handle_datagram(now, &d.bytes).map(Some)
            } else {
                let fe = self.frontends.get_mut(&d.to).expect("known node");
                fe.handle_datagram(now, &d.bytes).map(Some)
            };
            match (d.damaged, result) {
                (true, Ok(Some(_))) => {
                    panic!("a damaged or forged datagram to {} was accepted", d.to)
                }
                (false, Err(e)) => {
                    panic!("a genuine datagram {} -> {} was refused: {e}", d.from, d.to)
                }
                _ => {}
            }
        } else if let Some((&id, disk)) = self
            .disks
            .iter_mut()
            .find(|(_, d)| d.next_time().is_some_and(|t| t <= now))
        {
            let upto = disk.complete(&mut self.rng, now).expect("due");
            self.replicas
                .get_mut(&id)
                .expect("replica")
                .persisted(now, upto);
        } else if let Some(r) = self
            .replicas
            .values_mut()
            .find(|r| r.next_deadline().is_some_and(|t| t <= now))
        {
            r.tick(now);
        } else if let Some(fe) = self
            .frontends
            .values_mut()
            .find(|f| f.next_deadline().is_some_and(|t| t <= now))
        {
            fe.tick(now);
        } else if let Some(i) = self.partitions.iter().position(|p| p.0 <= now) {
            let (_, node, until) = self.partitions.swap_remove(i);
            self.net.partition(node, until);
        } else if let Some(i) = self.forgeries.iter().position(|f| f.0 <= now) {
            let (_, victim) = self.forgeries.swap_remove(i);
            let bytes = check::forge(&mut self.rng);
            self.forged += 1;
            self.net
                .inject(&mut self.rng, now, NodeId(666), victim, bytes, true);
        } else if let Some((&id, client)) = self
            .clients
            .iter_mut()
            .find(|(_, c)| c.remaining > 0 && c.next_at <= now)
        {
            client.remaining -= 1;
            client.next_at = now + self.rng.gen_range(0..=client.max_gap_ms);
            let request = workload::request(&mut self.rng, self.created + 2);
            if matches!(
                request,
                dcms_core::Request::CreateDoctor { .. } | dcms_core::Request::CreateNurse { .. }
            ) {
                self.created += 1;
            }
            let seq = self
                .frontends
                .get_mut(&id)
                .expect("front end")
                .submit(now, request);
            self.check.on_submit(now, id, seq);
        } else {
            unreachable!("a step without anything due at {now}");
        }
        self.drain();
        self.check
            .after_step(&self.replicas, &self.disks, &self.frontends);
    }

    /// Moves every output to the network, the disks and the checker.
    fn drain(&mut self) {
        let now = self.now;
        for (&id, r) in &mut self.replicas {
            if !r.has_ready() {
                continue;
            }
            let ready = r.ready();
            assert!(
                ready.events.is_empty(),
                "replica {id} reported {:?}",
                ready.events
            );
            if !ready.persist.is_empty() {
                self.check.on_applied(id, &ready.persist);
                let disk = self.disks.get_mut(&id).expect("disk");
                disk.submit(&mut self.rng, now, ready.persist);
            }
            for t in ready.transmits {
                self.net.send(&mut self.rng, now, id, t.to, t.bytes);
            }
        }
        for (&id, fe) in &mut self.frontends {
            if !fe.has_ready() {
                continue;
            }
            let ready = fe.ready();
            for c in ready.completions {
                self.check.on_completion(now, id, &c, &self.disks);
            }
            for (seq, reply) in ready.late_replies {
                self.check.on_late_reply(id, seq, &reply, &self.disks);
            }
            for t in ready.transmits {
                self.net.send(&mut self.rng, now, id, t.to, t.bytes);
            }
        }
    }
}
