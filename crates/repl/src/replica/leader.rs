//! The leader role: sequencing, execution, broadcast and group commit.
//!
//! Per stream, requests execute strictly in sequence order. A request beyond
//! the next expected number is held back (up to `max_holdback`) and, after
//! `nack_delay_ms`, the front end gets a NACK naming every missing number,
//! repeated every `nack_retry_ms` while the gap stays open. An executed
//! number is never executed again: the stored reply is resent once the entry
//! is committed (before that, the commit itself will answer).
//!
//! Execution applies the effect in memory at once (later requests see it),
//! hands the entry to persistence and sends it to every backup. The entry
//! stays in the window until it is durable here and on every backup; then
//! it is committed and its reply goes to the front end, exactly once per
//! commit. A backup whose acknowledgement does not advance for
//! `retransmit_ms` gets the entries after its last acknowledged one again;
//! a backup's NACK gets the named positions at once.

use super::{Core, ReplicaConfig, ReplicaEvent};
use crate::ids::{NodeId, Position, Seq, StreamId};
use crate::recover::Recovered;
use crate::session::Lookup;
use crate::wire::Message;
use dcms_core::{LogEntry, Request, RequestKey, StateDigest};
use std::collections::{BTreeMap, VecDeque};

#[derive(Debug)]
struct WindowEntry {
    entry: LogEntry,
    /// The leader's digest right after applying `entry`.
    digest_after: StateDigest,
}

/// What the leader knows of one backup.
#[derive(Debug, Default)]
struct BackupProgress {
    durable: Position,
    applied: Position,
    /// When to resend if the acknowledgement has not advanced by then.
    resend_at: Option<u64>,
}

#[derive(Debug)]
pub(super) struct LeaderState {
    /// Entries `committed + 1 ..= applied`, in order.
    window: VecDeque<WindowEntry>,
    committed: Position,
    committed_digest: StateDigest,
    backups: BTreeMap<NodeId, BackupProgress>,
    /// Requests held back beyond each stream's next expected number.
    held: BTreeMap<StreamId, BTreeMap<Seq, Request>>,
    /// When to NACK each stream with a gap.
    nack_at: BTreeMap<StreamId, u64>,
}

impl LeaderState {
    pub(super) fn new(config: &ReplicaConfig, recovered: &Recovered) -> LeaderState {
        let backups = config
            .group
            .iter()
            .filter(|&&n| n != config.me)
            .map(|&n| (n, BackupProgress::default()))
            .collect();
        // Everything recovered counts as committed: a leader starting from
        // its store is only correct if its backups hold the same prefix
        // (catch-up of restarted replicas comes with membership).
        LeaderState {
            window: VecDeque::new(),
            committed: recovered.last_applied,
            committed_digest: recovered.state.digest(),
            backups,
            held: BTreeMap::new(),
            nack_at: BTreeMap::new(),
        }
    }

    pub(super) fn committed(&self) -> Position {
        self.committed
    }

    pub(super) fn on_request(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        stream: StreamId,
        seq: Seq,
        request: Request,
    ) {
        if seq == 0 {
            core.stats.unexpected += 1;
            return;
        }
        let head = core.sessions.head(stream);
        if seq <= head {
            core.stats.duplicate_requests += 1;
            match core.sessions.lookup(RequestKey { stream, seq }) {
                Lookup::Executed { position, reply } if position <= self.committed => {
                    let reply = reply.clone();
                    core.stats.replies_resent += 1;
                    core.send(NodeId::of_stream(stream), Message::Reply { seq, reply });
                }
                Lookup::Executed { .. } => {} // its commit will answer
                Lookup::Forgotten => core.stats.forgotten_duplicates += 1,
                Lookup::NotExecuted => unreachable!("seq {seq} <= head {head}"),
            }
            return;
        }
        if seq > head + 1 {
            if seq > head + core.config.max_holdback {
                core.stats.beyond_holdback += 1;
                return;
            }
            let held = self.held.entry(stream).or_default();
            if held.insert(seq, request).is_none() {
                core.stats.held_back += 1;
            }
            self.nack_at
                .entry(stream)
                .or_insert(now_ms + core.config.nack_delay_ms);
            return;
        }
        if self.window.len() >= core.config.max_window {
            core.stats.backpressure_drops += 1;
            return;
        }
        self.execute(core, now_ms, RequestKey { stream, seq }, &request);
        self.drain_held(core, now_ms, stream);
    }

    /// Executes the held requests that now follow the head.
    fn drain_held(&mut self, core: &mut Core, now_ms: u64, stream: StreamId) {
        while self.window.len() < core.config.max_window {
            let next = core.sessions.head(stream) + 1;
            let Some(request) = self.held.get_mut(&stream).and_then(|h| h.remove(&next)) else {
                break;
            };
            self.execute(core, now_ms, RequestKey { stream, seq: next }, &request);
        }
        if self.held.get(&stream).is_some_and(|h| h.is_empty()) {
            self.held.remove(&stream);
            self.nack_at.remove(&stream);
        }
    }

    fn execute(&mut self, core: &mut Core, now_ms: u64, key: RequestKey, request: &Request) {
        assert_eq!(key.seq, core.sessions.head(key.stream) + 1);
        let (reply, effect) = core.state.execute(request, now_ms);
        let entry = LogEntry {
            position: core.applied + 1,
            key,
            effect,
            reply,
        };
        core.apply(entry.clone());
        core.stats.executed += 1;
        let leader_last = entry.position;
        for (&backup, progress) in &mut self.backups {
            core.outbox.push((
                backup,
                Message::Append {
                    entry: Box::new(entry.clone()),
                    leader_last,
                    committed: self.committed,
                },
            ));
            progress
                .resend_at
                .get_or_insert(now_ms + core.config.retransmit_ms);
        }
        self.window.push_back(WindowEntry {
            entry,
            digest_after: core.state.digest(),
        });
    }

    pub(super) fn on_ack(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        from: NodeId,
        durable: Position,
        applied: Position,
        digest: StateDigest,
    ) {
        let Some(progress) = self.backups.get_mut(&from) else {
            core.stats.unexpected += 1;
            return;
        };
        if durable > applied || applied > core.applied {
            // A backup cannot hold what this leader never sent.
            tracing::warn!(%from, durable, applied, last = core.applied, "impossible ack");
            core.stats.unexpected += 1;
            return;
        }
        if durable > progress.durable {
            progress.durable = durable;
            progress.resend_at =
                (durable < core.applied).then_some(now_ms + core.config.retransmit_ms);
        }
        // The newest report wins, even when lower: a restarted backup lost
        // what it had applied but not persisted, and resends must start
        // after what it holds now. (A reordered old ack only costs resends.)
        progress.applied = applied.max(progress.durable);
        let ours = if applied == self.committed {
            Some(self.committed_digest)
        } else if applied > self.committed {
            Some(self.window[(applied - self.committed - 1) as usize].digest_after)
        } else {
            None // older than anything we still compare against
        };
        if let Some(ours) = ours {
            if ours != digest {
                core.stats.divergences += 1;
                tracing::error!(
                    backup = %from,
                    position = applied,
                    leader = %ours,
                    backup_digest = %digest,
                    "REPLICA DIVERGENCE: backup state differs from the leader's"
                );
                core.events.push(ReplicaEvent::Divergence {
                    backup: from,
                    position: applied,
                    leader: ours,
                    backup_digest: digest,
                });
            }
        }
        self.try_commit(core, now_ms);
    }

    pub(super) fn on_log_nack(&mut self, core: &mut Core, from: NodeId, missing: &[Position]) {
        if !self.backups.contains_key(&from) {
            core.stats.unexpected += 1;
            return;
        }
        core.stats.nacks_received += 1;
        for &position in missing.iter().take(core.config.max_nack_numbers) {
            if position > self.committed && position <= core.applied {
                self.resend(core, from, position);
            }
        }
    }

    fn resend(&self, core: &mut Core, to: NodeId, position: Position) {
        let entry = &self.window[(position - self.committed - 1) as usize].entry;
        assert_eq!(entry.position, position);
        core.stats.entries_resent += 1;
        core.outbox.push((
            to,
            Message::Append {
                entry: Box::new(entry.clone()),
                leader_last: core.applied,
                committed: self.committed,
            },
        ));
    }

    pub(super) fn on_persisted(&mut self, core: &mut Core, now_ms: u64) {
        self.try_commit(core, now_ms);
    }

    /// Commits every entry durable on all members and replies to each.
    /// When the window was full, held requests waiting for room execute now.
    fn try_commit(&mut self, core: &mut Core, now_ms: u64) {
        let everywhere = self
            .backups
            .values()
            .map(|p| p.durable)
            .fold(core.durable, Position::min);
        while self.committed < everywhere {
            let w = self
                .window
                .pop_front()
                .expect("window holds uncommitted entries");
            assert_eq!(w.entry.position, self.committed + 1, "window in log order");
            self.committed = w.entry.position;
            self.committed_digest = w.digest_after;
            core.send(
                NodeId::of_stream(w.entry.key.stream),
                Message::Reply {
                    seq: w.entry.key.seq,
                    reply: w.entry.reply,
                },
            );
        }
        if self.window.len() < core.config.max_window && !self.held.is_empty() {
            let streams: Vec<StreamId> = self.held.keys().copied().collect();
            for stream in streams {
                self.drain_held(core, now_ms, stream);
            }
        }
    }

    pub(super) fn tick(&mut self, core: &mut Core, now_ms: u64) {
        let last = core.applied;
        let backups: Vec<NodeId> = self.backups.keys().copied().collect();
        for backup in backups {
            let progress = &self.backups[&backup];
            let Some(at) = progress.resend_at else {
                continue;
            };
            if at > now_ms {
                continue;
            }
            if progress.durable >= last {
                self.backups.get_mut(&backup).expect("known").resend_at = None;
                continue;
            }
            // Resend after what the backup has applied; if it has applied
            // everything, resend the last entry so it acknowledges again.
            let from = (progress.applied.max(progress.durable) + 1)
                .min(last)
                .max(self.committed + 1);
            let to = last.min(from + core.config.resend_batch as u64 - 1);
            for position in from..=to {
                self.resend(core, backup, position);
            }
            self.backups.get_mut(&backup).expect("known").resend_at =
                Some(now_ms + core.config.retransmit_ms);
        }
        let due: Vec<StreamId> = self
            .nack_at
            .iter()
            .filter(|&(_, &at)| at <= now_ms)
            .map(|(&s, _)| s)
            .collect();
        for stream in due {
            let head = core.sessions.head(stream);
            let held = &self.held[&stream];
            let top = *held.keys().next_back().expect("held is never empty");
            let missing: Vec<Seq> = (head + 1..top)
                .filter(|s| !held.contains_key(s))
                .take(core.config.max_nack_numbers)
                .collect();
            // No gap means the next request waits for room in the window.
            if !missing.is_empty() {
                core.stats.nacks_sent += 1;
                core.send(NodeId::of_stream(stream), Message::RequestNack { missing });
            }
            self.nack_at
                .insert(stream, now_ms + core.config.nack_retry_ms);
        }
    }

    pub(super) fn next_deadline(&self) -> Option<u64> {
        let resend = self.backups.values().filter_map(|p| p.resend_at);
        let nack = self.nack_at.values().copied();
        resend.chain(nack).min()
    }

    pub(super) fn check(&self, core: &Core) {
        assert_eq!(
            self.committed + self.window.len() as u64,
            core.applied,
            "the window holds exactly the uncommitted entries"
        );
        assert!(
            self.committed <= core.durable,
            "committed beyond leader's durable"
        );
        for (stream, held) in &self.held {
            let head = core.sessions.head(*stream);
            assert!(!held.is_empty(), "empty hold-back kept");
            assert!(held.keys().all(|&s| s > head), "an executed request held");
            assert!(
                !held.contains_key(&(head + 1)) || self.window.len() >= core.config.max_window,
                "the next expected request held although the window has room"
            );
            assert!(
                self.nack_at.contains_key(stream),
                "a gap without a NACK timer"
            );
        }
    }
}
