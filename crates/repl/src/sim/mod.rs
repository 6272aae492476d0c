//! The deterministic simulator: the real protocol and the real clinic domain
//! on a seeded, faulty network with a virtual clock.
//!
//! One run ([`run`]) is a function of its seed alone. The seed picks the
//! setting (fault rates, delays, datagram size, windows, timers, one or two
//! front ends, and whether failover is on), then the clients submit a random
//! workload of every request kind ([`workload`]), valid and invalid, through
//! the front ends to three replicas. The network (`net.rs`) loses,
//! duplicates, reorders, delays and corrupts datagrams; forged and foreign
//! datagrams are injected too. Each replica writes to an in-memory disk
//! (`disk.rs`) with group commit and random write latency. The faults
//! (`faults.rs`): partitions of any group, crashes of any replica (store
//! kept or wiped) and restarts, pauses of any process, front-end restarts;
//! without failover (a quarter of the seeds) only backups crash.
//!
//! The simulation is a loop of single steps (one datagram delivered, one
//! disk write completed, one timer fired, one fault, or one request
//! submitted), and `check.rs` verifies the invariants after every step. After
//! the workload the network heals and the run continues until the group is
//! quiet (every request answered, one serving leader, every replica caught
//! up); then every digest (in memory and rebuilt from each disk) must agree.
//!
//! Replaying a seed: `DCMS_SIM_SEED=1234 cargo test -p dcms-repl sim_replay
//! -- --nocapture` (see `tests.rs`). A violated invariant panics with a
//! message naming it.

mod check;
mod coverage;
mod disk;
mod faults;
mod net;
#[cfg(test)]
mod tests;
pub mod workload;

use crate::frontend::{ClientOutcome, FrontEnd, FrontEndConfig};
use crate::ids::NodeId;
use crate::recover::Recovered;
use crate::replica::{Replica, ReplicaConfig};
use crate::wire::WireConfig;
use check::Checker;
pub use coverage::Coverage;
use dcms_core::FtRequest;
use disk::{Completed, Disk};
use faults::Fault;
use net::{Faults, NetStats, Network};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeMap;

/// Virtual time starts here (2026-01-01 UTC, in ms), so audit times look real.
pub const EPOCH_MS: u64 = 1_767_225_600_000;
const CLUSTER: u64 = 0xDC35;
/// The replicas' key.
const SECRET: &[u8] = b"simulated cluster secret";
/// Front end `i` sits at address `FRONTEND_BASE + i` and signs with key ID
/// `FRONTEND_BASE + i` (its configured ID) and its own key.
const FRONTEND_BASE: u64 = 100;

/// Tries of one FT write at most: the first and the retries after an
/// unknown outcome (a front end's restart does not count).
const MAX_FT_TRIES: u32 = 2;

fn frontend_key(slot: NodeId) -> Vec<u8> {
    format!("simulated key of front end {}", slot.0).into_bytes()
}
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
    pub failover: bool,
    pub setting: String,
}

impl std::fmt::Display for SimReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "seed {}: {} requests, {} front end(s), failover {}, {} steps, {} ms virtual; net sent {} lost {} dup {} corrupt {} cut {} replayed {}; forged {}; {:?}; {}",
            self.seed,
            self.requests,
            self.frontends,
            self.failover,
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
    /// Writes to send again with the same FT identity (their outcome was
    /// unknown, or their front end restarted), through any front end.
    retries: std::collections::VecDeque<(dcms_core::Request, FtRequest, u32)>,
    next_retention: i32,
}

impl Client {
    fn has_work(&self) -> bool {
        self.remaining > 0 || !self.retries.is_empty()
    }
}

/// Counts of the faults that happened.
#[derive(Clone, Debug, Default)]
struct FaultCounts {
    restarted: u64,
    leader_crashes: u64,
    wiped: u64,
    paused: u64,
    frontend_restarts: u64,
    cuts: u64,
}

/// One simulated cluster.
struct Sim {
    rng: ChaCha8Rng,
    now: u64,
    steps: u64,
    net: Network,
    replicas: BTreeMap<NodeId, Replica>,
    disks: BTreeMap<NodeId, Disk>,
    /// Front ends by address (a restarted one keeps its address and takes
    /// a new stream).
    frontends: BTreeMap<NodeId, FrontEnd>,
    /// The address of each stream, learned as the shell does: from the
    /// source of its authenticated datagrams. A former stream's entry
    /// stays, so late replies to it reach its address.
    addresses: BTreeMap<NodeId, NodeId>,
    clients: BTreeMap<NodeId, Client>,
    faults: Vec<(u64, Fault)>,
    heal_at: Option<u64>,
    /// Crashed replicas and when they restart.
    restarts: BTreeMap<NodeId, u64>,
    /// Paused processes and when they resume.
    paused: BTreeMap<NodeId, u64>,
    /// Front ends whose client sends only reads, until when.
    reads_only: BTreeMap<NodeId, u64>,
    replica_config: ReplicaConfig,
    frontend_config: FrontEndConfig,
    failover: bool,
    counts: FaultCounts,
    created: u32,
    check: Checker,
    forged: u64,
    /// FT writes not completed yet: (stream, seq) -> (client, request, identity).
    ft_pending: BTreeMap<(u64, u64), (NodeId, dcms_core::Request, FtRequest, u32)>,
    /// How long after its submission an FT write expires.
    ft_expiry_ms: u64,
}

/// `DCMS_SIM_TRACE=1`: print view events and faults as they happen.
fn trace() -> bool {
    std::env::var_os("DCMS_SIM_TRACE").is_some()
}

fn pick<T: Copy>(rng: &mut ChaCha8Rng, list: &[T]) -> T {
    *list.choose(rng).expect("non-empty")
}

/// A front end at address `slot`, with its own key and a new random stream.
fn new_frontend(
    fc: &FrontEndConfig,
    slot: NodeId,
    rng: &mut ChaCha8Rng,
    incarnation: u64,
) -> FrontEnd {
    let mut wire = WireConfig::frontend(CLUSTER, slot.0, frontend_key(slot));
    wire.max_datagram = fc.wire.max_datagram;
    FrontEnd::new(FrontEndConfig {
        key: slot.0,
        wire,
        stream: crate::frontend::random_stream(rng.gen()),
        incarnation,
        ..fc.clone()
    })
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
    let frontend_count = if rng.gen_bool(0.3) { 2 } else { 1 };
    let slots: Vec<NodeId> = (0..frontend_count)
        .map(|i| NodeId(FRONTEND_BASE + i))
        .collect();
    let mut replica_wire = wire.clone();
    for &slot in &slots {
        replica_wire = replica_wire.with_key(slot.0, frontend_key(slot));
    }
    let mut rc = ReplicaConfig::new(replica_wire, LEADER, REPLICAS.to_vec(), LEADER);
    rc.retransmit_ms = rng.gen_range(40..=200);
    rc.nack_delay_ms = rng.gen_range(0..=5);
    rc.nack_retry_ms = rng.gen_range(20..=100);
    rc.max_holdback = pick(&mut rng, &[4, 64, 1024]);
    rc.max_window = pick(&mut rng, &[4, 64, 8192]);
    rc.resend_batch = pick(&mut rng, &[1, 8, 256]);
    rc.reply_cache = max_in_flight as usize + rng.gen_range(0..4);
    rc.max_nack_numbers = pick(&mut rng, &[1, 4, 64]);
    let failover = rng.gen_bool(0.75);
    if failover {
        rc.heartbeat_ms = pick(&mut rng, &[20, 50]);
        rc.suspect_ms = rc.heartbeat_ms * pick(&mut rng, &[4, 8]) + 2 * faults.max_delay_ms;
        rc.election_ms = 2 * faults.max_delay_ms + 20;
        rc.log_keep = rc.max_window.max(pick(&mut rng, &[16, 65_536]));
        rc.max_transfer = pick(&mut rng, &[8, 1024]);
    } else {
        rc.heartbeat_ms = 0;
    }
    // Streams expire (or are evicted) while their front end is silent or
    // restarted: the executed requests must stay exactly-once.
    // (The short expiry outlasts any partition or pause: a live front end
    // is never silent that long, so its replies are never dropped.)
    rc.stream_expiry_ms = pick(&mut rng, &[300_000, 10_000]);
    rc.max_streams = pick(&mut rng, &[1024, 2]);
    let disk_ms = pick(&mut rng, &[0, 2, 20]);
    let requests: u64 = rng.gen_range(20..=300);
    let requests = requests_override.unwrap_or(requests);
    let outcome_timeout_ms = pick(&mut rng, &[300, 5_000]);
    let initial_rto_ms = rng.gen_range(50..=1000);
    let setting = format!(
        "{faults:?} datagram {} in-flight {max_in_flight} window {} holdback {} resend {} nack-max {} retransmit {} disk {disk_ms} timeout {outcome_timeout_ms} heartbeat {} suspect {} log-keep {} stream-expiry {} max-streams {}",
        wire.max_datagram, rc.max_window, rc.max_holdback, rc.resend_batch, rc.max_nack_numbers, rc.retransmit_ms, rc.heartbeat_ms, rc.suspect_ms, rc.log_keep, rc.stream_expiry_ms, rc.max_streams
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
    let mut fe_wire = WireConfig::frontend(CLUSTER, slots[0].0, frontend_key(slots[0]));
    fe_wire.max_datagram = wire.max_datagram;
    let mut fc = FrontEndConfig::new(fe_wire, 1, LEADER);
    fc.max_in_flight = max_in_flight;
    fc.outcome_timeout_ms = outcome_timeout_ms;
    fc.initial_rto_ms = initial_rto_ms;
    fc.min_rto_ms = 20;
    fc.max_rto_ms = 2_000;
    fc.replicas = REPLICAS.to_vec();
    fc.heartbeat_ms = if failover {
        pick(&mut rng, &[50, 200])
    } else {
        0
    };
    let mut frontends = BTreeMap::new();
    let mut clients = BTreeMap::new();
    for (i, &slot) in slots.iter().enumerate() {
        let fe = new_frontend(&fc, slot, &mut rng, 1);
        frontends.insert(slot, fe);
        let share = requests / frontend_count + u64::from(i == 0) * (requests % frontend_count);
        clients.insert(
            slot,
            Client {
                remaining: share,
                next_at: now,
                max_gap_ms: pick(&mut rng, &[0, 5, 50]),
                retries: Default::default(),
                next_retention: 0,
            },
        );
    }
    // The workload lasts roughly this long; faults are scheduled inside it.
    let span = requests * 25 + 500;
    // Some FT writes expire before a partition or a pause ends.
    let ft_expiry_ms = pick(&mut rng, &[150, 1_000, 60_000]);
    let mut nodes: Vec<NodeId> = REPLICAS.to_vec();
    nodes.extend(frontends.keys());
    let fes: Vec<NodeId> = frontends.keys().copied().collect();
    let schedule = faults::schedule(&mut rng, now, span, &nodes, &fes, failover);
    let mut sim = Sim {
        rng,
        now,
        steps: 0,
        net: Network::new(faults),
        replicas,
        disks,
        frontends,
        addresses: BTreeMap::new(),
        clients,
        faults: schedule,
        heal_at: Some(now + span),
        restarts: BTreeMap::new(),
        paused: BTreeMap::new(),
        reads_only: BTreeMap::new(),
        check: Checker::new(outcome_timeout_ms, rc.majority()),
        replica_config: rc,
        frontend_config: fc,
        failover,
        counts: FaultCounts::default(),
        created: 0,
        forged: 0,
        ft_pending: BTreeMap::new(),
        ft_expiry_ms,
    };
    sim.run();
    SimReport {
        seed,
        requests,
        frontends: frontend_count as usize,
        steps: sim.steps,
        virtual_ms: sim.now - EPOCH_MS,
        net: sim.net.stats.clone(),
        coverage: Coverage::of(&sim),
        forged: sim.forged,
        failover,
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
                "livelock: {MAX_STEPS} steps without quiescing at {} ms; {}",
                self.now - EPOCH_MS,
                self.summary()
            );
            if self.heal_at.is_none() {
                let healed_for = self.now - self.check.healed_at.expect("healed");
                assert!(
                    healed_for < QUIESCE_LIMIT_MS,
                    "no quiescence {QUIESCE_LIMIT_MS} ms after healing: {} requests unanswered; {}",
                    self.frontends
                        .values()
                        .map(|f| f.unanswered())
                        .sum::<usize>(),
                    self.summary()
                );
                if self.failover && self.quiet() {
                    break;
                }
            }
        }
        assert!(self.heal_at.is_none(), "ran out of events before healing");
        self.check.at_end(
            &self.replicas,
            &self.disks,
            &self.frontends,
            &self.net,
            self.failover,
        );
    }

    /// Healed, everybody up, every request answered, one serving leader
    /// and every replica caught up with it (heartbeats go on forever, so a
    /// run with failover ends here rather than when nothing is left to do).
    fn quiet(&self) -> bool {
        if !self.restarts.is_empty()
            || !self.paused.is_empty()
            || self.clients.values().any(Client::has_work)
            || self.frontends.values().any(|f| f.unanswered() > 0)
            || !self.disks.values().all(Disk::is_idle)
        {
            return false;
        }
        let serving: Vec<&Replica> = self.replicas.values().filter(|r| r.serving()).collect();
        let [leader] = serving[..] else {
            return false;
        };
        let last = leader.applied();
        leader.committed() == last
            && self.replicas.values().all(|r| {
                r.epoch() == leader.epoch()
                    && r.applied() == last
                    && r.durable() == last
                    && r.committed() == last
                    && !r.installing()
            })
    }

    /// Every node's view, for failure messages.
    fn summary(&self) -> String {
        let mut out = String::new();
        for (id, r) in &self.replicas {
            let v = r.view(self.now);
            out += &format!(
                "\n{id}: epoch {} leader {:?} {:?} serving {} members {:?} log_epoch {} amnesiac {} applied {} durable {} committed {} installing {} stats {:?}",
                v.epoch, v.leader, v.role, v.serving, v.members, v.log_epoch, v.amnesiac,
                r.applied(), r.durable(), r.committed(), r.installing(), r.stats()
            );
        }
        for (id, f) in &self.frontends {
            out += &format!(
                "\n{id}: leader {} epoch {} unanswered {} stats {:?}",
                f.leader(),
                f.epoch(),
                f.unanswered(),
                f.stats()
            );
        }
        out
    }

    fn is_up(&self, node: NodeId) -> bool {
        !self.restarts.contains_key(&node) && !self.paused.contains_key(&node)
    }

    fn next_event_time(&self) -> Option<u64> {
        let mut times: Vec<u64> = Vec::new();
        times.extend(self.heal_at);
        times.extend(self.net.next_time());
        times.extend(
            self.disks
                .iter()
                .filter(|(id, _)| !self.paused.contains_key(id))
                .filter_map(|(_, d)| d.next_time()),
        );
        let up = |id: &NodeId| !self.paused.contains_key(id);
        times.extend(
            self.replicas
                .iter()
                .filter(|(id, _)| up(id))
                .filter_map(|(_, r)| r.next_deadline()),
        );
        times.extend(
            self.frontends
                .iter()
                .filter(|(id, _)| up(id))
                .filter_map(|(_, f)| f.next_deadline()),
        );
        times.extend(
            self.clients
                .iter()
                .filter(|(id, c)| c.has_work() && up(id))
                .map(|(_, c)| c.next_at),
        );
        times.extend(self.faults.iter().map(|f| f.0));
        times.extend(self.restarts.values());
        times.extend(self.paused.values());
        times.into_iter().min()
    }

    /// Does exactly one thing that is due, then drains outputs and checks.
    fn step(&mut self) {
        let now = self.now;
        if self.heal_at.is_some_and(|t| t <= now) {
            self.heal_at = None;
            self.net.heal();
            self.faults.clear();
            self.check.healed_at = Some(now);
        } else if let Some(id) = self.due(&self.restarts) {
            self.restarts.remove(&id);
            self.restart(id);
        } else if let Some(id) = self.due(&self.paused) {
            self.paused.remove(&id);
        } else if let Some(i) = self.faults.iter().position(|f| f.0 <= now) {
            let (_, fault) = self.faults.swap_remove(i);
            self.inject(fault);
        } else if let Some(d) = self.net.pop_due(now) {
            if let Some(&until) = self.paused.get(&d.to) {
                self.net.defer(d, until); // waits in the socket buffer
            } else {
                self.deliver(d);
            }
        } else if let Some(id) = self
            .disks
            .iter()
            .find(|(id, d)| {
                !self.paused.contains_key(id) && d.next_time().is_some_and(|t| t <= now)
            })
            .map(|(&id, _)| id)
        {
            let done = self
                .disks
                .get_mut(&id)
                .expect("disk")
                .complete(&mut self.rng, now)
                .expect("due");
            let r = self.replicas.get_mut(&id).expect("replica");
            match done {
                Completed::UpTo(upto) => r.persisted(now, upto),
                Completed::Installed => r.installed(now),
            }
        } else if let Some(id) = self
            .replicas
            .iter()
            .find(|(id, r)| {
                !self.paused.contains_key(id) && r.next_deadline().is_some_and(|t| t <= now)
            })
            .map(|(&id, _)| id)
        {
            self.replicas.get_mut(&id).expect("replica").tick(now);
        } else if let Some(id) = self
            .frontends
            .iter()
            .find(|(id, f)| {
                !self.paused.contains_key(id) && f.next_deadline().is_some_and(|t| t <= now)
            })
            .map(|(&id, _)| id)
        {
            self.frontends.get_mut(&id).expect("front end").tick(now);
        } else if let Some(id) = self
            .clients
            .iter()
            .find(|(id, c)| c.has_work() && c.next_at <= now && !self.paused.contains_key(id))
            .map(|(&id, _)| id)
        {
            let client = self.clients.get_mut(&id).expect("client");
            client.next_at = now + self.rng.gen_range(0..=client.max_gap_ms);
            let (fe_id, request, ft, tries) =
                if let Some((request, ft, tries)) = client.retries.pop_front() {
                    // A retry goes through any front end that runs.
                    let up: Vec<NodeId> = self
                        .frontends
                        .keys()
                        .copied()
                        .filter(|f| !self.paused.contains_key(f))
                        .collect();
                    (pick(&mut self.rng, &up), request, Some(ft), tries + 1)
                } else {
                    client.remaining -= 1;
                    let request = if self.reads_only.get(&id).is_some_and(|&until| now < until) {
                        workload::read_request(&mut self.rng, self.created + 2)
                    } else {
                        workload::request(&mut self.rng, self.created + 2)
                    };
                    if matches!(
                        request,
                        dcms_core::Request::CreateDoctor { .. }
                            | dcms_core::Request::CreateNurse { .. }
                    ) {
                        self.created += 1;
                    }
                    // Most writes carry an FT identity, as `dcms client` sends.
                    let ft = (!request.is_read_only() && self.rng.gen_bool(0.8)).then(|| {
                        client.next_retention += 1;
                        FtRequest {
                            client_id: format!("client-{}", id.0),
                            retention_id: client.next_retention,
                            expires_ms: now + self.ft_expiry_ms,
                        }
                    });
                    (id, request, ft, 1)
                };
            let fe = self.frontends.get_mut(&fe_id).expect("front end");
            let seq = fe.submit_ft(now, request.clone(), ft.clone());
            let stream = fe.stream();
            self.check
                .on_submit(now, NodeId(stream), seq, &request, ft.as_ref());
            if let Some(ft) = ft.filter(|_| !request.is_read_only()) {
                self.ft_pending
                    .insert((stream, seq), (id, request, ft, tries));
            }
        } else {
            unreachable!("a step without anything due at {now}");
        }
        self.drain();
        self.check
            .after_step(&self.replicas, &self.disks, &self.frontends);
    }

    fn due(&self, map: &BTreeMap<NodeId, u64>) -> Option<NodeId> {
        map.iter().find(|(_, &t)| t <= self.now).map(|(&id, _)| id)
    }

    fn deliver(&mut self, d: net::InFlight) {
        let now = self.now;
        let result = if self.restarts.contains_key(&d.to) {
            Ok(None) // the node is down
        } else if let Some(r) = self.replicas.get_mut(&d.to) {
            let result = r.handle_datagram(now, &d.bytes);
            if let Ok(h) = &result {
                if !REPLICAS.contains(&h.sender) {
                    // What the shell does: a front end's replies go to the
                    // source address of its authenticated datagrams.
                    self.addresses.insert(h.sender, d.from);
                }
            }
            result.map(Some)
        } else if let Some(fe) = self.frontends.get_mut(&d.to) {
            fe.handle_datagram(now, &d.bytes).map(Some)
        } else {
            Ok(None) // nobody at this address
        };
        match (d.damaged, result) {
            (true, Ok(Some(_))) => {
                panic!("a damaged or forged datagram to {} was accepted", d.to)
            }
            // A duplicate, a replay, or a datagram for a former stream at
            // this address: refused, as it must be.
            (false, Err(e)) if e.is_benign() && trace() => {
                eprintln!("{now} {} -> {} refused: {e}", d.from, d.to);
            }
            (false, Err(e)) if e.is_benign() => {}
            (false, Err(e)) => {
                panic!("a genuine datagram {} -> {} was refused: {e}", d.from, d.to)
            }
            _ => {}
        }
    }

    fn inject(&mut self, fault: Fault) {
        let now = self.now;
        if trace() {
            eprintln!("{now} fault {fault:?}");
        }
        match fault {
            Fault::Partition { group, ms } => {
                self.counts.cuts += 1;
                if group.len() == 1 {
                    let node = *group.iter().next().expect("one");
                    self.net.partition(node, now + ms);
                } else {
                    self.net.cut(group, now + ms);
                }
            }
            Fault::ReadsOnly { node, ms } => {
                self.reads_only.insert(node, now + ms);
            }
            Fault::Crash {
                node,
                down_ms,
                wipe,
            } => {
                if !self.is_up(node) {
                    return;
                }
                // Never two amnesiacs at once: a wiped replica does not count
                // towards a majority until it caught up, and two of three
                // could lose what only they held.
                let wipe = wipe
                    && !self
                        .disks
                        .values()
                        .any(|d| d.meta.is_some_and(|m| m.amnesiac));
                let r = self.replicas.remove(&node).expect("up");
                if r.serving() {
                    self.counts.leader_crashes += 1;
                }
                let disk = self.disks.get_mut(&node).expect("disk");
                disk.crash(&mut self.rng);
                self.check.on_crash(node, disk);
                if wipe {
                    disk.wipe();
                    self.check.on_wipe(node);
                    self.counts.wiped += 1;
                }
                self.restarts.insert(node, now + down_ms);
            }
            Fault::Pause { node, ms } => {
                if self.is_up(node)
                    && (self.replicas.contains_key(&node) || self.frontends.contains_key(&node))
                {
                    self.counts.paused += 1;
                    self.paused.insert(node, now + ms);
                    if let Some(fe) = self.frontends.get(&node) {
                        self.check.on_frontend_pause(fe.stream());
                    }
                }
            }
            Fault::FrontEndRestart { node } => {
                if !self.is_up(node) {
                    return;
                }
                let Some(old) = self.frontends.remove(&node) else {
                    return;
                };
                self.counts.frontend_restarts += 1;
                self.check.on_frontend_restart(old.stream());
                // Its clients' FT writes without an answer are retried
                // through whichever front end runs (this one once back).
                let lost: Vec<(u64, u64)> = self
                    .ft_pending
                    .range((old.stream(), 0)..=(old.stream(), u64::MAX))
                    .map(|(&k, _)| k)
                    .collect();
                for k in lost {
                    let (client, request, ft, tries) = self.ft_pending.remove(&k).expect("listed");
                    if let Some(cl) = self.clients.get_mut(&client) {
                        cl.retries.push_back((request, ft, tries));
                    }
                }
                // Same address, same key, a new random stream: the replicas'
                // late replies to the old stream come here, and every
                // datagram ever sent to this address is replayed at the new
                // front end, which must take none of them.
                let fe = new_frontend(
                    &self.frontend_config,
                    node,
                    &mut self.rng,
                    self.counts.frontend_restarts + 1,
                );
                self.frontends.insert(node, fe);
                self.net.replay_to(&mut self.rng, now, node);
            }
            Fault::Forge { victim } => {
                let to_replica = self.replicas.contains_key(&victim);
                let bytes = check::forge(&mut self.rng, victim, to_replica);
                self.forged += 1;
                self.net
                    .inject(&mut self.rng, now, NodeId(666), victim, bytes, true);
            }
        }
    }

    fn restart(&mut self, id: NodeId) {
        self.counts.restarted += 1;
        let rc = &self.replica_config;
        let config = ReplicaConfig {
            me: id,
            incarnation: self.counts.restarted,
            ..rc.clone()
        };
        let recovered = self.disks[&id].recover(rc.reply_cache);
        self.replicas.insert(id, Replica::new(config, recovered));
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
            if trace() {
                for e in &ready.view_events {
                    eprintln!("{now} {id}: {e:?}");
                }
                if let Some(m) = ready.meta {
                    eprintln!("{now} {id}: meta {m:?}");
                }
            }
            let disk = self.disks.get_mut(&id).expect("disk");
            if let Some(meta) = ready.meta {
                disk.meta = Some(meta);
            }
            if let Some(snapshot) = ready.install {
                self.check.on_install(id, &snapshot);
                disk.install(&mut self.rng, now, *snapshot);
            }
            if !ready.persist.is_empty() {
                self.check.on_applied(id, &ready.persist);
                disk.submit(&mut self.rng, now, ready.persist.into_entries());
            }
            for t in ready.transmits {
                // A front end's stream is reached at its learned address.
                let to = if REPLICAS.contains(&t.to) {
                    Some(t.to)
                } else {
                    self.addresses.get(&t.to).copied()
                };
                if let Some(to) = to {
                    self.net.send(&mut self.rng, now, id, to, t.bytes);
                }
            }
        }
        for (&id, fe) in &mut self.frontends {
            if !fe.has_ready() {
                continue;
            }
            let ready = fe.ready();
            let stream = NodeId(fe.stream());
            for c in ready.completions {
                self.check.on_completion(now, stream, &c);
                if let Some((client, request, ft, tries)) =
                    self.ft_pending.remove(&(stream.0, c.seq))
                {
                    // An unknown outcome is retried with the same identity,
                    // usually, a few times: it must not execute twice.
                    if c.outcome == ClientOutcome::Unknown
                        && tries < MAX_FT_TRIES
                        && self.rng.gen_bool(0.8)
                    {
                        if let Some(cl) = self.clients.get_mut(&client) {
                            cl.retries.push_back((request, ft, tries));
                        }
                    }
                }
            }
            for (seq, reply) in ready.late_replies {
                self.check.on_late_reply(stream, seq, &reply);
            }
            for t in ready.transmits {
                self.net.send(&mut self.rng, now, id, t.to, t.bytes);
            }
        }
    }
}
