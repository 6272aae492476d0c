//! Failover scenarios on a small hand-driven cluster: a perfect network
//! (delivered in order, 1 ms later) that the test can cut nodes off from,
//! disks that write at once, and one front end.

use super::tests::create;
use super::*;
use crate::frontend::{ClientOutcome, FrontEnd, FrontEndConfig};
use crate::ids::Seq;
use crate::wire::{WireConfig, REPLICA_KEY};
use dcms_core::LogEntry;
use std::collections::{BTreeSet, VecDeque};

const FE: NodeId = NodeId(100);
const GROUP: [NodeId; 3] = [NodeId(1), NodeId(2), NodeId(3)];

const FE_KEY: &[u8] = b"the front end's key";

fn wire() -> WireConfig {
    WireConfig::new(9, b"failover".to_vec()).with_key(FE.0, FE_KEY)
}

fn config(me: NodeId) -> ReplicaConfig {
    let mut c = ReplicaConfig::new(wire(), me, GROUP.to_vec(), NodeId(3)).with_failover();
    c.retransmit_ms = 50;
    c
}

struct Node {
    replica: Option<Replica>,
    /// The store: every persisted entry, or a snapshot and what followed.
    log: Vec<LogEntry>,
    base: Option<crate::snapshot::Snapshot>,
    meta: Option<Meta>,
}

struct Cluster {
    now: u64,
    nodes: BTreeMap<NodeId, Node>,
    fe: FrontEnd,
    queue: VecDeque<(u64, NodeId, NodeId, Vec<u8>)>,
    cut: BTreeSet<NodeId>,
    replies: BTreeMap<Seq, ClientOutcome>,
    unavailable: Vec<Seq>,
}

impl Cluster {
    fn new() -> Cluster {
        let nodes = GROUP
            .iter()
            .map(|&id| {
                let r = Replica::new(config(id), Recovered::empty(64));
                (
                    id,
                    Node {
                        replica: Some(r),
                        log: Vec::new(),
                        base: None,
                        meta: None,
                    },
                )
            })
            .collect();
        let mut fc = FrontEndConfig::new(WireConfig::frontend(9, FE.0, FE_KEY), FE.0, NodeId(3));
        fc.replicas = GROUP.to_vec();
        fc.heartbeat_ms = 50;
        fc.initial_rto_ms = 100;
        fc.outcome_timeout_ms = 60_000;
        Cluster {
            now: 0,
            nodes,
            fe: FrontEnd::new(fc),
            queue: VecDeque::new(),
            cut: BTreeSet::new(),
            replies: BTreeMap::new(),
            unavailable: Vec::new(),
        }
    }

    fn replica(&self, id: NodeId) -> &Replica {
        self.nodes[&id].replica.as_ref().expect("up")
    }

    fn drain(&mut self) {
        let now = self.now;
        for (&id, node) in &mut self.nodes {
            let Some(r) = node.replica.as_mut() else {
                continue;
            };
            while r.has_ready() {
                let ready = r.ready();
                assert!(ready.events.is_empty(), "{:?}", ready.events);
                if let Some(m) = ready.meta {
                    node.meta = Some(m);
                }
                if let Some(s) = ready.install {
                    node.log.clear();
                    node.base = Some(*s);
                    r.installed(now);
                }
                if let Some(last) = ready.persist.entries().last().map(|e| e.position) {
                    node.log.extend(ready.persist.into_entries());
                    r.persisted(now, last);
                }
                for t in ready.transmits {
                    self.queue.push_back((now + 1, id, t.to, t.bytes));
                }
            }
        }
        let ready = self.fe.ready();
        for c in ready.completions {
            self.replies.insert(c.seq, c.outcome);
        }
        self.unavailable
            .extend(ready.unavailable.into_iter().map(|(seq, _)| seq));
        for t in ready.transmits {
            self.queue.push_back((now + 1, FE, t.to, t.bytes));
        }
    }

    /// Runs until `until` (ms).
    fn run(&mut self, until: u64) {
        while self.now < until {
            self.now += 1;
            let now = self.now;
            while self.queue.front().is_some_and(|q| q.0 <= now) {
                let (_, from, to, bytes) = self.queue.pop_front().expect("due");
                if self.cut.contains(&from) || self.cut.contains(&to) {
                    continue;
                }
                let result = if to == FE {
                    self.fe.handle_datagram(now, &bytes).map(|_| ())
                } else if let Some(r) = self.nodes.get_mut(&to).and_then(|n| n.replica.as_mut()) {
                    r.handle_datagram(now, &bytes).map(|_| ())
                } else {
                    Ok(())
                };
                if let Err(e) = result {
                    assert!(e.is_benign(), "{from} -> {to}: {e}");
                }
                self.drain();
            }
            for node in self.nodes.values_mut() {
                if let Some(r) = node.replica.as_mut() {
                    if r.next_deadline().is_some_and(|t| t <= now) {
                        r.tick(now);
                    }
                }
            }
            if self.fe.next_deadline().is_some_and(|t| t <= now) {
                self.fe.tick(now);
            }
            self.drain();
        }
    }

    fn submit(&mut self, n: u32) -> Seq {
        let seq = self.fe.submit(self.now, create(n));
        self.drain();
        seq
    }

    fn crash(&mut self, id: NodeId) {
        self.nodes.get_mut(&id).expect("node").replica = None;
    }

    fn restart(&mut self, id: NodeId, wipe: bool) {
        let node = self.nodes.get_mut(&id).expect("node");
        if wipe {
            node.log.clear();
            node.base = None;
            node.meta = Some(Meta::wiped());
        }
        let (state, mut sessions) = match &node.base {
            Some(s) => s.restore(64),
            None => (ClinicState::new(), Sessions::new(64)),
        };
        let mut state = state;
        for e in &node.log {
            state.apply(&e.effect);
            sessions.record(e);
        }
        let last = node.base.as_ref().map_or(0, |s| s.position) + node.log.len() as u64;
        let base_hash = node
            .base
            .as_ref()
            .map_or(Some(LogHash::EMPTY), |s| s.log_hash);
        let recovered = Recovered {
            state,
            last_applied: last,
            log_hash: base_hash.map(|b| node.log.iter().fold(b, |h, e| h.chain(e))),
            sessions,
            meta: node.meta,
        };
        let mut c = config(id);
        c.incarnation = crate::wire::next_test_incarnation();
        node.replica = Some(Replica::new(c, recovered));
    }

    fn serving(&self) -> Vec<NodeId> {
        self.nodes
            .iter()
            .filter(|(_, n)| n.replica.as_ref().is_some_and(|r| r.serving()))
            .map(|(&id, _)| id)
            .collect()
    }

    fn answered(&self) -> usize {
        self.replies
            .values()
            .filter(|o| matches!(o, ClientOutcome::Reply(_)))
            .count()
    }
}

#[test]
fn a_crashed_leader_is_replaced_and_no_acknowledged_write_is_lost() {
    let mut c = Cluster::new();
    for n in 1..=5 {
        c.submit(n);
    }
    c.run(200);
    assert_eq!(c.answered(), 5, "the first leader answers");
    assert_eq!(c.serving(), vec![NodeId(3)]);
    c.crash(NodeId(3));
    for n in 6..=8 {
        c.submit(n);
    }
    c.run(1_500);
    assert_eq!(
        c.serving(),
        vec![NodeId(2)],
        "the highest live replica leads"
    );
    assert!(c.replica(NodeId(2)).epoch() > 1, "in a new epoch");
    assert_eq!(c.answered(), 8, "the new leader answers the retransmits");
    assert_eq!(c.fe.leader(), NodeId(2), "the front end follows");
    assert_eq!(c.replica(NodeId(2)).sessions().head(FE.0), 8);
    // The old leader comes back, catches up, and bullies its way back.
    c.restart(NodeId(3), false);
    c.run(3_000);
    assert_eq!(c.serving(), vec![NodeId(3)]);
    let digest = c.replica(NodeId(3)).digest();
    for id in GROUP {
        let r = c.replica(id);
        assert_eq!(r.digest(), digest, "{id} has the same state");
        assert_eq!(r.applied(), 8, "{id} holds every write exactly once");
        assert_eq!(r.epoch(), c.replica(NodeId(3)).epoch());
    }
    c.submit(9);
    c.run(3_500);
    assert_eq!(c.answered(), 9);
}

#[test]
fn a_cut_off_leader_commits_nothing_and_rejoins_without_its_uncommitted_writes() {
    let mut c = Cluster::new();
    c.submit(1);
    c.run(100);
    assert_eq!(c.answered(), 1);
    // The leader is cut off with a request the others never see.
    c.cut.insert(NodeId(3));
    c.fe.submit(c.now, create(2));
    let stray = c.fe.ready(); // taken off the wire: only the old leader gets it
    for t in stray.transmits.into_iter().filter(|t| t.to == NodeId(3)) {
        c.nodes
            .get_mut(&NodeId(3))
            .and_then(|n| n.replica.as_mut())
            .expect("up")
            .handle_datagram(c.now, &t.bytes)
            .unwrap();
    }
    c.drain();
    assert_eq!(
        c.replica(NodeId(3)).applied(),
        2,
        "the old leader executed it"
    );
    c.run(1_000);
    assert_eq!(c.replica(NodeId(3)).committed(), 1, "but cannot commit it");
    let leaders = c.serving();
    assert!(leaders.contains(&NodeId(2)), "a new leader: {leaders:?}");
    assert!(c.replica(NodeId(2)).epoch() > c.replica(NodeId(3)).epoch());
    c.cut.clear();
    c.run(3_000);
    assert_eq!(c.serving().len(), 1);
    assert_eq!(
        c.answered(),
        2,
        "the request is answered once, by the new group"
    );
    let digest = c.replica(NodeId(2)).digest();
    for id in GROUP {
        let r = c.replica(id);
        assert_eq!(r.digest(), digest, "{id} converged");
        assert_eq!(r.applied(), 2, "{id}: request 2 executed once, not twice");
    }
}

#[test]
fn a_wiped_replica_rejoins_by_snapshot() {
    let mut c = Cluster::new();
    for n in 1..=4 {
        c.submit(n);
    }
    c.run(200);
    c.crash(NodeId(1));
    c.restart(NodeId(1), true);
    assert!(c.replica(NodeId(1)).meta().amnesiac);
    c.submit(5);
    c.run(1_000);
    let r = c.replica(NodeId(1));
    assert!(!r.meta().amnesiac, "caught up");
    assert_eq!(r.applied(), 5);
    assert_eq!(r.digest(), c.replica(NodeId(3)).digest());
    assert!(c.nodes[&NodeId(1)].base.is_some(), "by a snapshot");
    assert_eq!(c.answered(), 5);
}

#[test]
fn a_leader_without_a_majority_refuses_and_serves_again_once_it_has_one() {
    let mut c = Cluster::new();
    c.submit(1);
    c.run(100);
    c.crash(NodeId(1));
    c.crash(NodeId(2));
    c.run(500);
    assert_eq!(c.replica(NodeId(3)).view(c.now).members, vec![]);
    let seq = c.submit(2);
    c.run(700);
    assert!(c.unavailable.contains(&seq), "the front end hears why");
    assert_eq!(c.replica(NodeId(3)).applied(), 1, "nothing executed");
    assert_eq!(c.answered(), 1);
    c.restart(NodeId(2), false);
    c.run(2_000);
    assert_eq!(c.answered(), 2, "answered once a majority is back");
    assert_eq!(c.replica(NodeId(2)).applied(), 2);
}

fn snapshots_sent(c: &Cluster) -> u64 {
    c.nodes
        .values()
        .filter_map(|n| n.replica.as_ref())
        .map(|r| r.stats().snapshots_sent)
        .sum()
}

#[test]
fn a_restarted_former_leader_follows_the_serving_leader_instead_of_deposing_it() {
    let mut c = Cluster::new();
    for n in 1..=3 {
        c.submit(n);
    }
    c.run(200);
    c.crash(NodeId(3));
    c.run(1_000);
    assert_eq!(c.serving(), vec![NodeId(2)]);
    let epoch = c.replica(NodeId(2)).epoch();
    c.restart(NodeId(3), false);
    // It waits for the group instead of taking a new epoch with its stale
    // log at once (which made the serving leader step down and the new
    // one fetch a snapshot) ...
    c.run(1_005);
    let r = c.replica(NodeId(3));
    assert_eq!(r.stats().elections, 0, "no election of its own");
    assert_eq!(r.stats().became_leader, 0);
    assert_eq!(c.serving(), vec![NodeId(2)], "the leader keeps serving");
    // ... and the serving leader's next heartbeat makes it a backup of it
    // (here it catches up so fast that it may already have bullied back,
    // in a newer epoch than the one it found).
    c.run(1_000 + DEFAULT_HEARTBEAT_MS + 5);
    let r = c.replica(NodeId(3));
    assert!(
        r.leader() == Some(NodeId(2)) && r.epoch() == epoch || r.epoch() > epoch,
        "{:?} in {}",
        r.leader(),
        r.epoch()
    );
    c.run(3_000);
    assert_eq!(snapshots_sent(&c), 0, "suffixes only");
    c.submit(4);
    c.run(3_500);
    assert_eq!(c.answered(), 4);
}

#[test]
fn a_new_leader_whose_log_is_the_adopted_one_under_an_older_log_epoch_fetches_no_snapshot() {
    let mut c = Cluster::new();
    for n in 1..=5 {
        c.submit(n);
    }
    c.run(200);
    assert_eq!(c.answered(), 5);
    // Replica 2 takes over at position 5; replica 1 joins its epoch.
    c.crash(NodeId(3));
    c.run(1_000);
    assert_eq!(c.serving(), vec![NodeId(2)]);
    let epoch = c.replica(NodeId(2)).epoch();
    assert_eq!(c.replica(NodeId(1)).meta().log_epoch, epoch);
    // Replica 2 dies before writing anything; replica 3 comes back with
    // the same five entries under the first epoch's log epoch.
    c.crash(NodeId(2));
    c.restart(NodeId(3), false);
    let (r1, r3) = (c.replica(NodeId(1)), c.replica(NodeId(3)));
    assert_eq!((r3.applied(), r3.meta().log_epoch), (5, 1));
    assert_eq!(r1.applied(), 5);
    assert_eq!(r1.log_hash(), r3.log_hash(), "the same log");
    c.run(2_500);
    assert_eq!(c.serving(), vec![NodeId(3)]);
    assert_eq!(snapshots_sent(&c), 0, "equal log hashes: nothing to fetch");
    assert!(c.nodes.values().all(|n| n.base.is_none()), "no install");
    c.submit(6);
    c.run(3_000);
    assert_eq!(c.answered(), 6);
    assert_eq!(c.replica(NodeId(1)).digest(), c.replica(NodeId(3)).digest());
}

/// A backup that restarts while this epoch's leader serves keeps its log
/// when an old snapshot of that leader (a datagram delayed, or duplicated,
/// across the restart) reaches it: installing it would take back entries
/// that an acknowledgement it sent before the crash, maybe still in flight,
/// tells the leader it holds. It restarts synced, its durable log epoch
/// being the epoch; the model check (`crates/model`, mutation
/// `RestartUnsynced`) shows what goes wrong otherwise.
#[test]
fn a_restarted_backup_ignores_an_older_snapshot_of_its_own_epoch() {
    let mut c = Cluster::new();
    for n in 1..=2 {
        c.submit(n);
    }
    c.run(200);
    assert_eq!(c.answered(), 2);
    // The leader's state at position 2, as a snapshot it could have sent.
    let leader = c.replica(NodeId(3));
    let (epoch, stale_hash) = (leader.epoch(), leader.log_hash());
    let mut state = ClinicState::new();
    let mut sessions = Sessions::new(64);
    for e in &c.nodes[&NodeId(3)].log {
        state.apply(&e.effect);
        sessions.record(e);
    }
    let stale = crate::snapshot::Snapshot::of(2, stale_hash, &state, &sessions);
    for n in 3..=4 {
        c.submit(n);
    }
    c.run(400);
    assert_eq!(c.answered(), 4);
    let b = c.replica(NodeId(1));
    assert_eq!((b.durable(), b.meta().log_epoch), (4, epoch));
    c.crash(NodeId(1));
    c.restart(NodeId(1), false);
    let sync = Message::Sync {
        common_prefix: 2,
        snapshot: Some(Box::new(stale)),
        entries: Vec::new(),
        epoch_start: 0,
    };
    // Node 3's own incarnation (0): node 1 just restarted and has heard
    // nothing from it yet, so its real datagrams still pass after this one.
    let mut e = Encoder::new(wire(), NodeId(3), epoch);
    for bytes in e.encode(REPLICA_KEY, NodeId(1), &[sync]) {
        c.nodes
            .get_mut(&NodeId(1))
            .and_then(|n| n.replica.as_mut())
            .expect("up")
            .handle_datagram(c.now, &bytes)
            .unwrap();
    }
    c.drain();
    let b = c.replica(NodeId(1));
    assert!(!b.installing(), "the older snapshot is not installed");
    assert_eq!((b.applied(), b.durable()), (4, 4), "nothing taken back");
    assert!(c.nodes[&NodeId(1)].base.is_none());
    c.submit(5);
    c.run(1_500);
    assert_eq!(c.answered(), 5);
    assert_eq!(c.replica(NodeId(1)).applied(), 5);
    assert_eq!(c.replica(NodeId(1)).digest(), c.replica(NodeId(3)).digest());
}
