//! A new leader's takeover: state transfer before it serves.
//!
//! A coordinator (see `election.rs`) takes a new epoch and collects the
//! logs of a majority (`Join`: log epoch and positions; replicas whose store
//! was wiped do not count). It adopts the most advanced log, the highest
//! `(log_epoch, applied)`, fetching it from its holder when that is another
//! replica (`Fetch`, answered by a `Sync` with the missing suffix, in parts
//! of `max_transfer` entries, or a snapshot when the logs may differ: the
//! log hashes tell). A coordinator waits up to `election_ms` for the `Join`
//! of every replica it does not suspect. That log's end is the epoch's
//! start.
//! Every joined backup then gets a `Sync`: keep your log up to where it is a
//! prefix of ours and take these entries, or install this snapshot. Once a
//! majority holds the start durably, everything up to it is committed and
//! the leader serves.

use super::{BackupProgress, LeaderState, LogSummary, Phase};
use crate::ids::{NodeId, Position};
use crate::replica::reads::Reads;
use crate::replica::{election, Core, Meta, ViewEvent};
use crate::snapshot::Snapshot;
use crate::wire::Message;
use dcms_core::{LogEntry, StateDigest};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// How long to wait before asking again after `tries` unanswered bulk
/// transfers (a fetched log, a snapshot): `base` doubled per try, at most
/// 256 times. A snapshot of tens of thousands of records is megabytes of
/// datagrams; resending it every `base` milliseconds would restart it
/// before it ever arrived.
fn retry_after(base: u64, tries: u32) -> u64 {
    base.saturating_mul(1 << tries.min(8))
}

/// Records a snapshot moves per millisecond, end to end, at the least:
/// built, encoded (~160 bytes a record), paced through the link, decoded,
/// restored and installed (measured on loopback: ~100 per ms).
const SNAPSHOT_RECORDS_PER_MS: u64 = 64;

/// The first wait before resending a snapshot of `records` records: the
/// time it takes to arrive and install, not the round trip of a small
/// message (a 13,000-record snapshot resent after 10 ms went out five times
/// in 160 ms; at 100,000 records each copy blocks both event loops).
fn snapshot_retry_base(retransmit_ms: u64, records: usize) -> u64 {
    retransmit_ms.max(records as u64 / SNAPSHOT_RECORDS_PER_MS)
}

impl LeaderState {
    /// A replica that won an election: a new epoch, then state transfer.
    pub(in crate::replica) fn coordinator(
        core: &mut Core,
        now_ms: u64,
        committed: Position,
    ) -> LeaderState {
        assert!(!core.meta.amnesiac, "an amnesiac never leads");
        let epoch = election::next_epoch(core);
        core.set_meta(Meta {
            epoch,
            leader: Some(core.me()),
            ..core.meta
        });
        core.max_seen = core.max_seen.max(epoch);
        core.stats.became_leader += 1;
        core.view_events.push(ViewEvent::Coordinator { epoch });
        tracing::info!(me = %core.me(), epoch, "coordinator of a new epoch");
        let others: Vec<NodeId> = core
            .config
            .group
            .iter()
            .copied()
            .filter(|&n| n != core.me())
            .collect();
        for &n in &others {
            core.send(n, Message::Coordinator);
        }
        let frontends: Vec<NodeId> = core.frontends.keys().copied().collect();
        for f in frontends {
            core.send(f, Message::Coordinator);
        }
        let mut logs = BTreeMap::new();
        logs.insert(
            core.me(),
            LogSummary {
                log_epoch: core.meta.log_epoch,
                applied: core.applied,
                durable: core.durable,
                amnesiac: false,
                log_hash: core.log_hash,
            },
        );
        let mut l = LeaderState {
            window: VecDeque::new(),
            committed: committed.min(core.applied),
            committed_digest: StateDigest::default(),
            backups: others
                .into_iter()
                .map(|n| (n, BackupProgress::default()))
                .collect(),
            held: BTreeMap::new(),
            nack_at: BTreeMap::new(),
            reads: Reads::new(),
            phase: Phase::Collecting {
                until: Some(now_ms + core.config.election_ms),
            },
            logs,
            base_log_epoch: 0,
            epoch_start: 0,
        };
        l.try_adopt_log(core, now_ms);
        l
    }

    /// A backup's `Join`: `log` is its log. Collecting, it counts towards
    /// the choice of the log to adopt (fetching, a change in the chosen
    /// replica's log makes the choice again); syncing or serving, the
    /// backup gets a `Sync`.
    pub(in crate::replica) fn on_join(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        from: NodeId,
        log: LogSummary,
    ) {
        let Some(p) = self.backups.get_mut(&from) else {
            core.stats.unexpected += 1;
            return;
        };
        if matches!(self.phase, Phase::Syncing | Phase::Serving)
            && !p.synced
            && p.sync_at.is_some()
            && p.log == Some(log)
        {
            // The same log again while our `Sync` to it is under way: a
            // backup repeats its `Join` every `retransmit_ms` until synced,
            // and answering each with a new `Sync` would restart a snapshot
            // of megabytes every few milliseconds. The `Sync` is resent when
            // its backoff expires (see `tick`).
            core.stats.duplicate_joins += 1;
            return;
        }
        if p.member {
            p.member = false;
            core.stats.members_removed += 1;
            core.view_events.push(ViewEvent::MemberRemoved {
                epoch: core.epoch(),
                backup: from,
            });
        }
        *p = BackupProgress {
            log: Some(log),
            sync_at: Some(now_ms),
            ..BackupProgress::default()
        };
        match self.phase {
            Phase::Collecting { .. } => {
                self.logs.insert(from, log);
                self.try_adopt_log(core, now_ms);
            }
            Phase::Fetching { best, .. } => {
                let changed = self.logs.get(&from) != Some(&log);
                self.logs.insert(from, log);
                if from == best && changed {
                    // The most advanced replica restarted (or lost its
                    // store): choose again.
                    self.phase = Phase::Collecting { until: None };
                    self.try_adopt_log(core, now_ms);
                }
            }
            Phase::Syncing | Phase::Serving => self.send_sync(core, now_ms, from),
        }
    }

    /// A backup sent a message of an older epoch: it restarted without its
    /// store (or it is an old datagram). Count nothing it held until it
    /// acknowledges again.
    pub(in crate::replica) fn on_stale_backup(&mut self, core: &mut Core, from: NodeId) {
        let Some(p) = self.backups.get_mut(&from) else {
            return;
        };
        if p.member {
            core.stats.members_removed += 1;
            core.view_events.push(ViewEvent::MemberRemoved {
                epoch: core.epoch(),
                backup: from,
            });
        }
        let log = p.log;
        *p = BackupProgress {
            log,
            ..BackupProgress::default()
        };
    }

    /// A backup's heartbeat in this epoch: one we lost track of (after
    /// `on_stale_backup`) is brought up to date from what it reports.
    pub(in crate::replica) fn on_backup_heartbeat(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        from: NodeId,
        log: LogSummary,
    ) {
        if !matches!(self.phase, Phase::Syncing | Phase::Serving) {
            return;
        }
        let Some(p) = self.backups.get_mut(&from) else {
            return;
        };
        if !p.synced && p.sync_at.is_none() {
            p.log = p.log.or(Some(log));
            self.send_sync(core, now_ms, from);
        } else if self.phase == Phase::Syncing
            && p.synced
            && log.log_epoch == core.epoch()
            && log.durable > p.durable
            && log.durable <= core.applied
        {
            // A synced backup's log is a prefix of this epoch's, and what it
            // holds durably is what its acknowledgement said. Nothing is
            // resent while syncing, so a lost last acknowledgement would
            // leave this leader waiting forever (found by the simulator,
            // seed 54407): its heartbeat carries the same facts.
            p.durable = log.durable;
            self.try_serve(core, now_ms);
        }
    }

    /// Collecting, once a majority's logs are in: adopts the most advanced
    /// (syncing from it when it is this replica's, else fetching it first).
    /// A replica that is alive (not suspected) gets until
    /// `Collecting::until` to report too: when a live leader is deposed (a
    /// higher replica bullies back), its log holds entries no one else has
    /// yet, and adopting a log without them would leave it diverged (a
    /// snapshot instead of a suffix).
    pub(super) fn try_adopt_log(&mut self, core: &mut Core, now_ms: u64) {
        let Phase::Collecting { until } = self.phase else {
            return;
        };
        let counted: Vec<(NodeId, LogSummary)> = self
            .logs
            .iter()
            .filter(|(_, r)| !r.amnesiac)
            .map(|(&n, &r)| (n, r))
            .collect();
        if counted.len() < core.config.majority() {
            return;
        }
        let missing_live = core
            .config
            .group
            .iter()
            .any(|&n| !self.logs.contains_key(&n) && !core.suspected(n, now_ms));
        if missing_live && until.is_some_and(|u| now_ms < u) {
            return;
        }
        let me = core.me();
        let (best, b) = counted
            .iter()
            .copied()
            .max_by_key(|(n, r)| (r.log_epoch, r.applied, *n == me))
            .expect("a majority is not empty");
        self.base_log_epoch = b.log_epoch;
        let mine = self.logs[&me];
        // The same hash at the same position: the same log, whatever its
        // epoch (a former leader restarted at the start of the next epoch).
        let same_log =
            mine.applied == b.applied && mine.log_hash.is_some() && mine.log_hash == b.log_hash;
        if best == me || (mine.log_epoch, mine.applied) == (b.log_epoch, b.applied) || same_log {
            self.start_syncing(core, now_ms);
            return;
        }
        self.phase = Phase::Fetching {
            best,
            target: b.applied,
            at: now_ms,
            tries: 0,
        };
        self.fetch(core, now_ms);
    }

    pub(super) fn fetch(&mut self, core: &mut Core, now_ms: u64) {
        let Phase::Fetching { best, tries, .. } = self.phase else {
            return;
        };
        let b = self.logs[&best];
        let prefix = core.meta.log_epoch == b.log_epoch && core.applied <= b.applied;
        core.send(
            best,
            Message::Fetch {
                after: core.applied,
                snapshot: !prefix,
                log_hash: core.log_hash,
            },
        );
        self.phase = Phase::Fetching {
            best,
            target: b.applied,
            at: now_ms
                + if prefix {
                    retry_after(core.config.retransmit_ms, tries)
                } else {
                    // `b.applied` bounds the records of the snapshot asked for.
                    retry_after(
                        snapshot_retry_base(core.config.retransmit_ms, b.applied as usize),
                        tries,
                    )
                },
            tries: tries + 1,
        };
    }

    /// The most advanced replica's log arrived.
    pub(in crate::replica) fn on_fetched(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        from: NodeId,
        common_prefix: Position,
        snapshot: Option<Box<Snapshot>>,
        entries: Vec<LogEntry>,
    ) {
        let Phase::Fetching { best, target, .. } = self.phase else {
            core.stats.unexpected += 1;
            return;
        };
        if from != best || core.installing.is_some() {
            core.stats.unexpected += 1;
            return;
        }
        if let Some(snapshot) = snapshot {
            if snapshot.position < target {
                core.stats.unexpected += 1;
                return;
            }
            core.install(*snapshot);
            self.committed = self.committed.min(core.applied);
        } else if common_prefix != core.applied {
            core.stats.unexpected += 1;
            return;
        }
        let before = core.applied;
        for e in entries {
            if e.position == core.applied + 1 {
                core.apply(Arc::new(e));
            }
        }
        if core.applied >= target {
            self.start_syncing(core, now_ms);
        } else if core.applied > before {
            // One part of a long suffix: ask for the next at once.
            self.phase = Phase::Fetching {
                best,
                target,
                at: now_ms,
                tries: 0,
            };
            self.fetch(core, now_ms);
        }
    }

    fn start_syncing(&mut self, core: &mut Core, now_ms: u64) {
        self.phase = Phase::Syncing;
        self.epoch_start = core.applied;
        self.logs.clear();
        tracing::info!(me = %core.me(), epoch = core.epoch(), start = self.epoch_start, "state transfer");
        let joined: Vec<NodeId> = self
            .backups
            .iter()
            .filter(|(_, p)| p.log.is_some())
            .map(|(&n, _)| n)
            .collect();
        for n in joined {
            self.send_sync(core, now_ms, n);
        }
        self.raise_log_epoch(core);
        self.try_serve(core, now_ms);
    }

    /// Brings `to` up to date: a suffix when its log is a prefix of ours,
    /// else a snapshot.
    pub(super) fn send_sync(&mut self, core: &mut Core, now_ms: u64, to: NodeId) {
        let p = self.backups.get_mut(&to).expect("known backup");
        let Some(r) = p.log else { return };
        // Its log is a prefix of ours when it joined in this epoch, or its
        // log is of the adopted epoch and ends before this epoch's start, or
        // it holds our log's hash at its last position.
        let prefix = !r.amnesiac
            && (r.log_epoch == core.epoch()
                || (r.log_epoch == self.base_log_epoch && r.applied <= self.epoch_start)
                || core.log_matches(r.applied, r.log_hash))
            && r.applied <= core.applied
            && r.applied + 1 >= core.recent_start();
        let message = if prefix {
            let last = core
                .applied
                .min(r.applied + core.config.resend_batch as u64);
            Message::Sync {
                common_prefix: r.applied,
                snapshot: None,
                entries: (r.applied + 1..=last)
                    .map(|q| LogEntry::clone(core.entry(q).expect("in memory")))
                    .collect(),
                epoch_start: self.epoch_start,
            }
        } else {
            core.stats.snapshots_sent += 1;
            core.view_events.push(ViewEvent::SnapshotSent {
                backup: to,
                position: core.applied,
            });
            Message::Sync {
                common_prefix: core.applied,
                snapshot: Some(Box::new(core.snapshot())),
                entries: Vec::new(),
                epoch_start: self.epoch_start,
            }
        };
        let bulk = matches!(
            message,
            Message::Sync {
                snapshot: Some(_),
                ..
            }
        );
        core.send(to, message);
        if bulk {
            // A snapshot takes long to arrive: resending it soon restarts it.
            let base = snapshot_retry_base(core.config.retransmit_ms, core.state.len());
            p.sync_at = Some(now_ms + retry_after(base, p.sync_tries));
            p.sync_tries += 1;
        } else {
            p.sync_at = Some(now_ms + core.config.retransmit_ms);
            p.sync_tries = 0;
        }
    }

    /// Serving starts once a majority holds the epoch's start durably.
    pub(super) fn try_serve(&mut self, core: &mut Core, now_ms: u64) {
        if self.phase != Phase::Syncing {
            return;
        }
        let start = self.epoch_start;
        assert_eq!(core.applied, start, "nothing executes before serving");
        let me = usize::from(core.installing.is_none() && core.durable >= start);
        let holding: Vec<NodeId> = self
            .backups
            .iter()
            .filter(|(_, p)| p.synced && p.durable >= start)
            .map(|(&n, _)| n)
            .collect();
        if me + holding.len() < core.config.majority() || me == 0 {
            return;
        }
        assert!(self.committed <= start, "committed beyond the adopted log");
        self.committed = start;
        self.committed_digest = core.state.digest();
        self.window.clear();
        self.phase = Phase::Serving;
        for n in &holding {
            let p = self.backups.get_mut(n).expect("known");
            p.member = true;
            p.resend_at = (p.durable < core.applied).then_some(now_ms);
        }
        core.view_events.push(ViewEvent::Serving {
            epoch: core.epoch(),
            start,
            members: holding.clone(),
        });
        tracing::info!(me = %core.me(), epoch = core.epoch(), start, ?holding, "serving");
        let frontends: Vec<NodeId> = core.frontends.keys().copied().collect();
        let me = core.me();
        for f in frontends {
            core.send(f, Message::LeaderIs { leader: me });
        }
    }

    pub(super) fn raise_log_epoch(&mut self, core: &mut Core) {
        if matches!(self.phase, Phase::Syncing | Phase::Serving)
            && core.installing.is_none()
            && core.durable >= self.epoch_start
            && core.meta.log_epoch < core.epoch()
        {
            let mut meta = core.meta;
            meta.log_epoch = core.epoch();
            core.set_meta(meta);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_resent_only_after_the_time_it_takes_and_then_less_often() {
        // Small state: the retransmission timeout.
        assert_eq!(snapshot_retry_base(10, 100), 10);
        // 13,000 records take about 200 ms end to end; 100,000 over 1.5 s.
        assert_eq!(snapshot_retry_base(10, 13_000), 203);
        assert_eq!(snapshot_retry_base(10, 100_000), 1_562);
        assert_eq!(retry_after(203, 0), 203);
        assert_eq!(retry_after(203, 2), 812);
        assert_eq!(retry_after(10, 30), 2_560, "doubling stops at 256 times");
    }
}
