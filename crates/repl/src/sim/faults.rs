//! The faults a simulation schedules: partitions (one node, or any group
//! from the rest), crashes of any replica (the store kept, or wiped),
//! restarts, pauses (a process stops and resumes much later, its datagrams
//! waiting in its socket buffer), front-end restarts (under a new stream),
//! and forged datagrams. All happen before the network heals.

use super::{pick, REPLICAS};
use crate::ids::NodeId;
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use std::collections::BTreeSet;

#[derive(Clone, Debug)]
pub(super) enum Fault {
    /// Cut this group off from everybody else for `ms`.
    Partition { group: BTreeSet<NodeId>, ms: u64 },
    /// The client of this front end sends only reads for a while.
    ReadsOnly { node: NodeId, ms: u64 },
    /// Crash a replica; it restarts after `down_ms`.
    Crash {
        node: NodeId,
        down_ms: u64,
        wipe: bool,
    },
    /// Stop a process (replica or front end) for `ms`.
    Pause { node: NodeId, ms: u64 },
    /// Restart a front end under a new stream.
    FrontEndRestart { node: NodeId },
    /// Inject a forged datagram to this node.
    Forge { victim: NodeId },
}

/// Faults for one run, `(time, fault)`, within `span` ms from `now`.
/// Without failover only backups crash, single nodes are cut off, and
/// nothing pauses (a fixed leader must stay up).
pub(super) fn schedule(
    rng: &mut ChaCha8Rng,
    now: u64,
    span: u64,
    nodes: &[NodeId],
    frontends: &[NodeId],
    failover: bool,
) -> Vec<(u64, Fault)> {
    let mut out = Vec::new();
    let at = |rng: &mut ChaCha8Rng| now + rng.gen_range(0..span);
    if rng.gen_bool(0.4) {
        for _ in 0..rng.gen_range(1..=3) {
            let t = at(rng);
            let group: BTreeSet<NodeId> = if failover && rng.gen_bool(0.5) {
                let g: BTreeSet<NodeId> = nodes
                    .iter()
                    .copied()
                    .filter(|_| rng.gen_bool(0.5))
                    .collect();
                if g.is_empty() || g.len() == nodes.len() {
                    [pick(rng, nodes)].into()
                } else {
                    g
                }
            } else {
                [pick(rng, nodes)].into()
            };
            let ms = rng.gen_range(100..=3000);
            out.push((t, Fault::Partition { group, ms }));
        }
    }
    if failover && frontends.len() > 1 && rng.gen_bool(0.5) {
        // A replica (often the leader: the first one leads at start) cut
        // off together with one front end, which keeps talking to it while
        // the others elect a new leader and commit through the other front
        // end: the deposed leader must answer none of its reads.
        let t = now + rng.gen_range(0..span / 2 + 1);
        let replica = if rng.gen_bool(0.7) {
            REPLICAS[0]
        } else {
            pick(rng, &REPLICAS)
        };
        let frontend = pick(rng, frontends);
        let group: BTreeSet<NodeId> = [replica, frontend].into();
        let ms = rng.gen_range(500..=3000);
        out.push((t, Fault::Partition { group, ms }));
        if rng.gen_bool(0.5) {
            // Only reads meanwhile: a deposed leader with nothing left
            // uncommitted must still answer none of them (only the
            // read-index round stops it).
            out.push((t, Fault::ReadsOnly { node: frontend, ms }));
        }
    }
    let crash_chance = if failover { 0.5 } else { 0.3 };
    if rng.gen_bool(crash_chance) {
        for _ in 0..rng.gen_range(1..=if failover { 3 } else { 2 }) {
            let t = at(rng);
            let node = if failover {
                pick(rng, &REPLICAS)
            } else {
                pick(rng, &REPLICAS[1..])
            };
            let down_ms = rng.gen_range(0..=2000);
            let wipe = failover && rng.gen_bool(0.2);
            out.push((
                t,
                Fault::Crash {
                    node,
                    down_ms,
                    wipe,
                },
            ));
        }
    }
    if failover && rng.gen_bool(0.3) {
        for _ in 0..rng.gen_range(1..=2) {
            let t = at(rng);
            let ms = rng.gen_range(100..=3000);
            out.push((
                t,
                Fault::Pause {
                    node: pick(rng, nodes),
                    ms,
                },
            ));
        }
    }
    if failover && rng.gen_bool(0.15) {
        let t = at(rng);
        out.push((
            t,
            Fault::FrontEndRestart {
                node: pick(rng, frontends),
            },
        ));
    }
    for _ in 0..rng.gen_range(0..=4) {
        let t = at(rng);
        out.push((
            t,
            Fault::Forge {
                victim: pick(rng, nodes),
            },
        ));
    }
    out
}
