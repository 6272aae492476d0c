//! Reads without the log, as etcd's ReadIndex: a serving leader executes a
//! read-only request at once on its state (which holds every committed
//! write, and its own applied ones up to `index`), and sends the answer only
//! when
//!
//! 1. everything the read saw is committed (`committed >= index`), so no
//!    read ever shows a write that a failover could still undo; and
//! 2. a majority of the group, itself included, confirmed in this epoch,
//!    after the read arrived, that it still follows this leader (a
//!    `ReadIndex` round). A replica that acknowledged has not joined a newer
//!    epoch, and a newer leader needs a majority to commit anything: the
//!    two majorities share a replica, so no write of a newer epoch can have
//!    completed before the read, and a deposed leader answers no read.
//!
//! So every answer is linearizable, and a read costs one round trip to the
//! nearest backup and no disk. Reads are idempotent: a retry reads again; no
//! reply is stored and nothing is replicated. Rounds are cumulative: one
//! `ReadIndex` per event-loop turn confirms every read that came before it.
//!
//! Under writes no round is needed: an entry appended after the read
//! arrived (position > `index`) commits only with a majority's acks in this
//! epoch, each sent after the read arrived, which is the confirmation the
//! round asks for. So a read with `index < committed` is answered at once,
//! and a round goes out only when no entry follows the newest read.

use super::Core;
use crate::ids::{NodeId, Position, StreamId};
use crate::wire::Message;
use dcms_core::Reply;
use std::collections::{BTreeMap, VecDeque};

/// Reads waiting for their round or their commit, at most; beyond, new
/// reads are dropped (the front end retries).
pub const MAX_PENDING_READS: usize = 8192;

#[derive(Debug)]
struct PendingRead {
    stream: StreamId,
    id: u64,
    reply: Reply,
    /// The applied position the read saw.
    index: Position,
    /// The round whose confirmation it waits for.
    round: u64,
}

/// A leader's reads in flight, in arrival order (so `index` and `round`
/// never decrease along the queue).
#[derive(Debug)]
pub(super) struct Reads {
    pending: VecDeque<PendingRead>,
    /// The round the next `ReadIndex` carries; reads arriving now wait for
    /// it.
    next_round: u64,
    /// Reads wait for `next_round`: it must go out.
    probe_due: bool,
    /// The highest round each other replica confirmed in this epoch.
    acked: BTreeMap<NodeId, u64>,
}

impl Reads {
    pub(super) fn new() -> Reads {
        Reads {
            pending: VecDeque::new(),
            next_round: 1,
            probe_due: false,
            acked: BTreeMap::new(),
        }
    }

    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// Queues the answer to read `id` of `stream`, executed at `index`.
    /// False when the queue is full (the read is dropped).
    pub(super) fn admit(
        &mut self,
        stream: StreamId,
        id: u64,
        reply: Reply,
        index: Position,
    ) -> bool {
        if self.pending.len() >= MAX_PENDING_READS {
            return false;
        }
        self.pending.push_back(PendingRead {
            stream,
            id,
            reply,
            index,
            round: self.next_round,
        });
        self.probe_due = true;
        true
    }

    /// `from` still follows this leader, up to `round`.
    pub(super) fn on_ack(&mut self, from: NodeId, round: u64) {
        if round < self.next_round {
            let acked = self.acked.entry(from).or_default();
            *acked = (*acked).max(round);
        }
    }

    /// The highest round a majority (this leader and enough others) has
    /// confirmed.
    fn confirmed(&self, core: &Core) -> u64 {
        let others_needed = core.config.majority() - 1;
        if others_needed == 0 {
            // A group of one: nobody else can lead.
            return self.next_round;
        }
        let mut acked: Vec<u64> = core
            .config
            .group
            .iter()
            .filter(|&&n| n != core.me())
            .map(|n| self.acked.get(n).copied().unwrap_or(0))
            .collect();
        acked.sort_unstable_by(|a, b| b.cmp(a));
        acked.get(others_needed - 1).copied().unwrap_or(0)
    }

    /// Sends the round reads wait for, and answers every read that is
    /// confirmed and committed.
    pub(super) fn flush(&mut self, core: &mut Core, committed: Position) {
        if self.pending.is_empty() {
            // Runs after every input: nothing to send or answer.
            return;
        }
        let followed = self
            .pending
            .back()
            .is_some_and(|newest| newest.index < core.applied);
        if self.probe_due && followed {
            // Entries appended since confirm them when they commit.
            self.probe_due = false;
        } else if self.probe_due && core.config.majority() > 1 {
            let round = self.next_round;
            for &n in &core.config.group.clone() {
                if n != core.me() {
                    core.send(n, Message::ReadIndex { round });
                }
            }
            self.next_round += 1;
            self.probe_due = false;
        } else if self.probe_due {
            self.next_round += 1;
            self.probe_due = false;
        }
        let confirmed = self.confirmed(core);
        while let Some(r) = self.pending.front() {
            let confirmed_by_commit = r.index < committed;
            if !confirmed_by_commit && (r.round > confirmed || r.index > committed) {
                break;
            }
            let r = self.pending.pop_front().expect("front");
            core.stats.reads_answered += 1;
            core.send(
                NodeId::of_stream(r.stream),
                Message::ReadReply {
                    id: r.id,
                    reply: r.reply,
                },
            );
        }
    }

    /// Drops what is queued for `stream` (it expired).
    pub(super) fn forget_stream(&mut self, stream: StreamId) {
        self.pending.retain(|r| r.stream != stream);
    }

    pub(super) fn check(&self, applied: Position) {
        let mut last = (0, 0);
        for r in &self.pending {
            assert!(r.index <= applied, "a read saw beyond what is applied");
            assert!((r.index, r.round) >= last, "reads queued out of order");
            last = (r.index, r.round);
        }
        assert!(self.pending.len() <= MAX_PENDING_READS);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcms_core::{Counts, Outcome};

    #[test]
    fn the_queue_of_reads_is_bounded() {
        let mut reads = Reads::new();
        let reply: Reply = Ok(Outcome::Counts(Counts([0, 0, 0])));
        for id in 0..MAX_PENDING_READS as u64 {
            assert!(reads.admit(1, id, reply.clone(), 0));
        }
        assert!(!reads.admit(1, 0, reply, 0), "beyond the bound: dropped");
        assert_eq!(reads.len(), MAX_PENDING_READS);
        reads.forget_stream(1);
        assert_eq!(reads.len(), 0);
    }
}
