//! The leader's commit: acknowledgements, the view, resends.
//!
//! Execution applies the effect in memory at once (later requests see it),
//! hands the entry to persistence and sends it to every synced backup. The
//! entry stays in the window until it is durable here and on every member
//! of the view, and on at least a majority of the group; then it is
//! committed and its reply goes to the front end, exactly once per commit.
//! A member not heard from for `suspect_ms` leaves the view (the leader stops
//! waiting for it); a synced backup that holds everything committed joins
//! it again. A backup whose acknowledgement does not advance for
//! `retransmit_ms` gets the entries after its last acknowledged one again
//! (from the in-memory log, or a snapshot when they are gone); a backup's
//! NACK gets the named positions at once.
//!
//! An acknowledgement's state digest is compared with the leader's at the
//! same position: a difference is a divergence (`ReplicaEvent::Divergence`);
//! a match is remembered, for monitoring (`digest_ages`).

use super::{BackupProgress, LeaderState, LogSummary, Phase};
use crate::ids::{NodeId, Position, StreamId};
use crate::replica::{Core, ReplicaEvent, ViewEvent};
use crate::wire::Message;
use dcms_core::StateDigest;
use std::sync::Arc;

impl LeaderState {
    /// Per backup, milliseconds since its digest last matched ours (`None`:
    /// not since it was last synced), for monitoring.
    pub(in crate::replica) fn digest_ages(&self, now_ms: u64) -> Vec<(NodeId, Option<u64>)> {
        self.backups
            .iter()
            .map(|(&n, p)| (n, p.digest_matched_ms.map(|t| now_ms.saturating_sub(t))))
            .collect()
    }

    pub(in crate::replica) fn on_ack(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        from: NodeId,
        durable: Position,
        applied: Position,
        digest: StateDigest,
    ) {
        if matches!(
            self.phase,
            Phase::Collecting { .. } | Phase::Fetching { .. }
        ) {
            core.stats.unexpected += 1;
            return;
        }
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
        progress.synced = true;
        progress.sync_at = None;
        progress.sync_tries = 0;
        if durable > progress.durable {
            progress.durable = durable;
            progress.resend_at =
                (durable < core.applied).then_some(now_ms + core.config.retransmit_ms);
        }
        // The newest report wins, even when lower: a restarted backup lost
        // what it had applied but not persisted, and resends must start
        // after what it holds now. (A reordered old ack only costs resends.)
        progress.applied = applied.max(progress.durable);
        if progress.durable < core.applied && progress.resend_at.is_none() {
            progress.resend_at = Some(now_ms + core.config.retransmit_ms);
        }
        if self.phase == Phase::Syncing {
            self.try_serve(core, now_ms);
            return;
        }
        let ours = if applied == self.committed {
            Some(self.committed_digest)
        } else if applied > self.committed {
            Some(self.window[(applied - self.committed - 1) as usize].digest_after)
        } else {
            None // older than anything we still compare against
        };
        if ours == Some(digest) {
            if let Some(p) = self.backups.get_mut(&from) {
                p.digest_matched_ms = Some(now_ms);
            }
        }
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
        self.update_members(core, now_ms);
        self.try_commit(core, now_ms);
    }

    pub(in crate::replica) fn on_log_nack(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        from: NodeId,
        missing: &[Position],
    ) {
        if !matches!(self.phase, Phase::Syncing | Phase::Serving) {
            core.stats.unexpected += 1;
            return;
        }
        let Some(p) = self.backups.get_mut(&from) else {
            core.stats.unexpected += 1;
            return;
        };
        // Only a backup synced in this epoch takes (and NACKs) appends.
        p.synced = true;
        p.sync_at = None;
        p.sync_tries = 0;
        core.stats.nacks_received += 1;
        if missing.iter().any(|&q| q < core.recent_start()) {
            // Gone from memory: a snapshot instead.
            self.snapshot_to(core, now_ms, from);
            return;
        }
        for &position in missing.iter().take(core.config.max_nack_numbers) {
            if core.entry(position).is_some() {
                self.resend(core, from, position);
            }
        }
    }

    /// `to` needs entries no longer in memory: it gets a snapshot.
    fn snapshot_to(&mut self, core: &mut Core, now_ms: u64, to: NodeId) {
        let p = self.backups.get_mut(&to).expect("known backup");
        if p.member {
            core.stats.members_removed += 1;
            core.view_events.push(ViewEvent::MemberRemoved {
                epoch: core.epoch(),
                backup: to,
            });
        }
        *p = BackupProgress {
            log: Some(LogSummary {
                log_epoch: 0,
                applied: 0,
                durable: 0,
                amnesiac: false,
                log_hash: None,
            }),
            ..BackupProgress::default()
        };
        self.send_sync(core, now_ms, to);
    }

    fn resend(&self, core: &mut Core, to: NodeId, position: Position) {
        let entry = Arc::clone(core.entry(position).expect("in memory"));
        core.stats.entries_resent += 1;
        core.send(
            to,
            Message::Append {
                entry,
                leader_last: core.applied,
                committed: self.committed,
            },
        );
    }

    pub(in crate::replica) fn on_persisted(&mut self, core: &mut Core, now_ms: u64) {
        self.raise_log_epoch(core);
        match self.phase {
            Phase::Syncing => self.try_serve(core, now_ms),
            Phase::Serving => self.try_commit(core, now_ms),
            _ => {}
        }
    }

    /// Leader: members leave when suspected and come back once synced,
    /// heard from and holding everything committed.
    pub(super) fn update_members(&mut self, core: &mut Core, now_ms: u64) {
        if self.phase != Phase::Serving {
            return;
        }
        let epoch = core.epoch();
        for (&n, p) in &mut self.backups {
            let suspected = core.suspected(n, now_ms);
            if p.member && suspected {
                p.member = false;
                core.stats.members_removed += 1;
                core.view_events
                    .push(ViewEvent::MemberRemoved { epoch, backup: n });
                tracing::info!(epoch, backup = %n, "backup suspected: view without it");
            } else if !p.member && p.synced && !suspected && p.durable >= self.committed {
                p.member = true;
                core.stats.members_added += 1;
                core.view_events
                    .push(ViewEvent::MemberAdded { epoch, backup: n });
                tracing::info!(epoch, backup = %n, "backup caught up: back in the view");
            }
        }
    }

    /// Commits every entry durable on all members (at least a majority of
    /// the group) and replies to each. When the window was full, held
    /// requests waiting for room execute now.
    pub(super) fn try_commit(&mut self, core: &mut Core, now_ms: u64) {
        if self.phase != Phase::Serving {
            return;
        }
        let members: Vec<Position> = self
            .backups
            .values()
            .filter(|p| p.member)
            .map(|p| p.durable)
            .collect();
        if members.len() + 1 < core.config.majority() {
            return; // without a majority nothing commits
        }
        let everywhere = members.into_iter().fold(core.durable, Position::min);
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
                    reply: w.entry.reply.clone(),
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

    /// Resends to every synced backup whose acknowledgement has not
    /// advanced for `retransmit_ms` the entries after what it applied (a
    /// snapshot when they are gone from memory).
    pub(super) fn resend_stalled(&mut self, core: &mut Core, now_ms: u64) {
        let last = core.applied;
        let backups: Vec<NodeId> = self.backups.keys().copied().collect();
        for backup in backups {
            let progress = &self.backups[&backup];
            let Some(at) = progress.resend_at else {
                continue;
            };
            if at > now_ms || !progress.synced {
                continue;
            }
            if progress.durable >= last {
                self.backups.get_mut(&backup).expect("known").resend_at = None;
                continue;
            }
            // Resend after what the backup has applied; if it has applied
            // everything, resend the last entry so it acknowledges again.
            let from = (progress.applied.max(progress.durable) + 1).min(last);
            if core.entry(from).is_none() {
                self.snapshot_to(core, now_ms, backup);
                continue;
            }
            let to = last.min(from + core.config.resend_batch as u64 - 1);
            for position in from..=to {
                self.resend(core, backup, position);
            }
            self.backups.get_mut(&backup).expect("known").resend_at =
                Some(now_ms + core.config.retransmit_ms);
        }
    }
}
