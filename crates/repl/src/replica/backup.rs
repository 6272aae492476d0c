//! The backup role: apply in log order, persist, acknowledge what is durable;
//! catch up when joining an epoch; elect a new leader when the current one
//! is suspected.
//!
//! An entry at the next position is applied at once (and handed to
//! persistence); an early one is held back (up to `max_holdback` positions
//! ahead); an old one is a duplicate and only triggers a fresh
//! acknowledgement (the previous one may have been lost). While positions are
//! missing below the leader's last known position, the backup NACKs them by
//! number after `nack_delay_ms` and again every `nack_retry_ms`.
//!
//! Acknowledgements are cumulative: the durable position, the applied
//! position and the state digest after the applied position. They go out
//! whenever durability advances and whenever a duplicate arrives.
//!
//! A backup that joins an epoch (or restarts into one its log is not
//! known to belong to) is unsynced: it takes no appends and sends `Join`
//! (its log epoch and positions) every `retransmit_ms` until the leader's
//! `Sync` says which prefix of its log to keep (or gives a snapshot). Once
//! it holds the epoch's starting log durably, its `log_epoch` is the epoch.

use super::election::{self, Election};
use super::{Core, ViewEvent};
use crate::ids::{Epoch, NodeId, Position};
use crate::snapshot::Snapshot;
use crate::wire::Message;
use dcms_core::store::LogHash;
use dcms_core::LogEntry;
use std::collections::BTreeMap;
use std::sync::Arc;

#[derive(Debug)]
pub(super) struct BackupState {
    /// Entries beyond `applied + 1`, waiting for the gap to fill.
    held: BTreeMap<Position, Arc<LogEntry>>,
    /// The highest position the leader has announced.
    leader_last: Position,
    nack_at: Option<u64>,
    /// The highest commit position the leader has announced.
    committed: Position,
    /// The log is known to be a prefix of the leader's: appends apply.
    synced: bool,
    /// Where the epoch's log starts (from `Sync`).
    epoch_start: Position,
    /// Unsynced: when to send `Join` again.
    join_at: Option<u64>,
    election: Option<Election>,
    /// Start an election at the next tick.
    elect_soon: bool,
    /// Amnesiac: the epoch and leader each other replica reported.
    pub(super) votes: BTreeMap<NodeId, (Epoch, NodeId)>,
}

impl BackupState {
    pub(super) fn new(synced: bool) -> BackupState {
        BackupState {
            held: BTreeMap::new(),
            leader_last: 0,
            nack_at: None,
            committed: 0,
            synced,
            epoch_start: 0,
            join_at: None,
            election: None,
            elect_soon: false,
            votes: BTreeMap::new(),
        }
    }

    pub(super) fn start_election_soon(&mut self) {
        self.elect_soon = true;
    }

    pub(super) fn send_join(&mut self, core: &mut Core, now_ms: u64) {
        let Some(leader) = core.meta.leader else {
            return;
        };
        if leader == core.me() || self.synced {
            return;
        }
        let join = Message::Join {
            log_epoch: core.meta.log_epoch,
            applied: core.applied,
            durable: core.durable,
            amnesiac: core.meta.amnesiac,
            log_hash: core.log_hash,
        };
        core.send(leader, join);
        self.join_at = Some(now_ms + core.config.retransmit_ms);
    }

    pub(super) fn on_append(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        entry: Arc<LogEntry>,
        leader_last: Position,
        committed: Position,
    ) {
        if !self.synced {
            core.stats.unexpected += 1;
            return;
        }
        if entry.position == 0 || entry.position > leader_last || committed > leader_last {
            core.stats.unexpected += 1;
            return;
        }
        self.committed = self.committed.max(committed);
        self.leader_last = self.leader_last.max(leader_last);
        self.election = None;
        self.receive(core, now_ms, entry);
    }

    /// An entry of the leader's log, in any order.
    fn receive(&mut self, core: &mut Core, now_ms: u64, entry: Arc<LogEntry>) {
        let position = entry.position;
        self.leader_last = self.leader_last.max(position);
        if position <= core.applied {
            core.stats.duplicate_entries += 1;
            self.ack(core);
        } else if position == core.applied + 1 {
            core.apply(entry);
            while let Some(next) = self.held.remove(&(core.applied + 1)) {
                core.apply(next);
            }
        } else if position > core.applied + core.config.max_holdback {
            core.stats.beyond_holdback += 1;
        } else if self.held.insert(position, entry).is_none() {
            core.stats.held_back += 1;
        } else {
            core.stats.duplicate_entries += 1;
        }
        self.held.retain(|&p, _| p > core.applied);
        self.arm_nack(core, now_ms);
    }

    fn arm_nack(&mut self, core: &Core, now_ms: u64) {
        if self.synced && self.leader_last > core.applied && core.installing.is_none() {
            self.nack_at
                .get_or_insert(now_ms + core.config.nack_delay_ms);
        } else {
            self.nack_at = None;
        }
    }

    /// The leader's answer to our `Join` (or a snapshot because we fell too
    /// far behind).
    pub(super) fn on_sync(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        common_prefix: Position,
        snapshot: Option<Box<Snapshot>>,
        entries: Vec<LogEntry>,
        epoch_start: Position,
    ) {
        self.election = None;
        if let Some(snapshot) = snapshot {
            if core.installing.is_some() || (self.synced && snapshot.position <= core.applied) {
                core.stats.duplicate_entries += 1;
                self.ack(core);
                return;
            }
            core.install(*snapshot);
            self.held.clear();
        } else if self.synced {
            core.stats.duplicate_entries += 1;
            self.ack(core);
            return;
        } else if common_prefix < core.applied {
            // Our log beyond `common_prefix` is not the leader's: only a
            // snapshot can replace it (the leader sends one on our next
            // join).
            core.stats.unexpected += 1;
            return;
        }
        self.synced = true;
        self.join_at = None;
        self.epoch_start = self.epoch_start.max(epoch_start);
        self.leader_last = self.leader_last.max(common_prefix);
        for entry in entries {
            self.receive(core, now_ms, Arc::new(entry));
        }
        self.arm_nack(core, now_ms);
        self.ack(core);
        self.raise_log_epoch(core);
    }

    /// The new leader fetches our log (we are the most advanced).
    pub(super) fn on_fetch(
        &mut self,
        core: &mut Core,
        to: NodeId,
        after: Position,
        snapshot: bool,
        log_hash: Option<LogHash>,
    ) {
        if core.meta.amnesiac {
            // Our store was wiped: we hold nothing the leader may adopt.
            core.stats.unexpected += 1;
            return;
        }
        // A long suffix goes in parts of `max_transfer` entries: the leader
        // asks again for the rest (a snapshot would cost far more).
        // The leader's log is a prefix of ours when its hash at `after` is
        // ours there, whatever epochs wrote them: then the suffix will do.
        let prefix = core.log_matches(after, log_hash);
        let differs =
            log_hash.is_some() && core.hash_at(after).is_some() && core.hash_at(after) != log_hash;
        let whole = (snapshot && !prefix)
            || differs
            || after > core.applied
            || after + 1 < core.recent_start();
        let message = if whole {
            core.stats.snapshots_sent += 1;
            Message::Sync {
                common_prefix: core.applied,
                snapshot: Some(Box::new(core.snapshot())),
                entries: Vec::new(),
                epoch_start: 0,
            }
        } else {
            let last = core.applied.min(after + core.config.max_transfer as u64);
            let entries = (after + 1..=last)
                .map(|p| LogEntry::clone(core.entry(p).expect("in memory")))
                .collect();
            Message::Sync {
                common_prefix: after,
                snapshot: None,
                entries,
                epoch_start: 0,
            }
        };
        core.send(to, message);
    }

    pub(super) fn on_leader_heartbeat(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        leader_applied: Position,
        committed: Position,
    ) {
        self.election = None;
        self.elect_soon = false;
        if self.synced {
            self.leader_last = self.leader_last.max(leader_applied);
            self.committed = self.committed.max(committed.min(self.leader_last));
            self.arm_nack(core, now_ms);
        } else if self.join_at.is_none() {
            self.send_join(core, now_ms);
        }
    }

    pub(super) fn on_coordinator(&mut self, core: &mut Core, now_ms: u64) {
        self.election = None;
        if !self.synced {
            self.send_join(core, now_ms);
        }
    }

    pub(super) fn on_lower_election(&mut self, core: &mut Core, now_ms: u64) {
        let leader_gone = match core.meta.leader {
            None => true,
            Some(l) => l == core.me() || now_ms >= core.leader_heard + core.config.suspect_ms,
        };
        if leader_gone && self.election.is_none() {
            self.elect_soon = true;
        }
    }

    pub(super) fn on_answer(&mut self, core: &mut Core, now_ms: u64) {
        if let Some(Election::Waiting { .. }) = self.election {
            self.election = Some(Election::Answered {
                until: now_ms + 3 * core.config.election_ms,
            });
        }
    }

    pub(super) fn on_persisted(&mut self, core: &mut Core) {
        self.ack(core);
        self.raise_log_epoch(core);
    }

    fn raise_log_epoch(&mut self, core: &mut Core) {
        let epoch = core.epoch();
        if self.synced
            && core.installing.is_none()
            && core.durable >= self.epoch_start
            && core.meta.log_epoch < epoch
        {
            let mut meta = core.meta;
            meta.log_epoch = epoch;
            meta.amnesiac = false;
            core.set_meta(meta);
            core.view_events.push(ViewEvent::Synced {
                epoch,
                durable: core.durable,
            });
        }
    }

    fn ack(&self, core: &mut Core) {
        if !self.synced || core.installing.is_some() {
            return;
        }
        let Some(leader) = core.meta.leader else {
            return;
        };
        let message = Message::Ack {
            durable: core.durable,
            applied: core.applied,
            digest: core.state.digest(),
        };
        core.send(leader, message);
    }

    /// Fires due timers; returns true when this replica must become the
    /// coordinator of a new epoch.
    pub(super) fn tick(&mut self, core: &mut Core, now_ms: u64) -> bool {
        if !self.synced && self.join_at.is_some_and(|t| t <= now_ms) {
            self.send_join(core, now_ms);
        }
        if let Some(at) = self.nack_at {
            if at <= now_ms {
                self.nack(core, now_ms);
            }
        }
        self.tick_election(core, now_ms)
    }

    fn nack(&mut self, core: &mut Core, now_ms: u64) {
        if self.leader_last <= core.applied || !self.synced || core.installing.is_some() {
            self.nack_at = None;
            return;
        }
        let missing: Vec<Position> = (core.applied + 1..=self.leader_last)
            .filter(|p| !self.held.contains_key(p))
            .take(core.config.max_nack_numbers)
            .collect();
        assert!(
            !missing.is_empty(),
            "behind the leader with nothing missing"
        );
        core.stats.nacks_sent += 1;
        if let Some(leader) = core.meta.leader {
            core.send(leader, Message::LogNack { missing });
        }
        self.nack_at = Some(now_ms + core.config.nack_retry_ms);
    }

    /// When the leader is due to be suspected (or already is).
    fn suspicion_time(&self, core: &Core) -> Option<u64> {
        if !core.failure_detection_on() || core.meta.amnesiac {
            return None;
        }
        if self.elect_soon {
            return core.born;
        }
        // A replica that led before a restart (its meta names itself) waits
        // like any backup: within `suspect_ms` the current leader's
        // heartbeat of a newer epoch shows up and it follows; electing at
        // once would depose a serving leader with a stale log.
        Some(core.leader_heard + core.config.suspect_ms)
    }

    fn tick_election(&mut self, core: &mut Core, now_ms: u64) -> bool {
        match self.election {
            None => {
                if self.bullies_back(core, now_ms) {
                    core.view_events.push(ViewEvent::BulliesBack {
                        epoch: core.epoch(),
                    });
                    self.elect_soon = true;
                }
                if self.suspicion_time(core).is_some_and(|t| t <= now_ms) {
                    self.elect_soon = false;
                    match election::start(core, now_ms) {
                        None => return true,
                        Some(e) => self.election = Some(e),
                    }
                }
                false
            }
            Some(Election::Waiting { until }) if until <= now_ms => true,
            Some(Election::Answered { until }) if until <= now_ms => {
                self.election = None;
                self.elect_soon = true;
                self.tick_election(core, now_ms)
            }
            Some(_) => false,
        }
    }

    /// A replica with a higher ID than its leader takes over (bully), but
    /// only once caught up, and only when no replica above it is alive
    /// (that one would win, or should bully first).
    fn bullies_back(&self, core: &Core, now_ms: u64) -> bool {
        let Some(leader) = core.meta.leader else {
            return false;
        };
        core.failure_detection_on()
            && !core.meta.amnesiac
            && self.synced
            && leader < core.me()
            && core.meta.log_epoch == core.epoch()
            && core.installing.is_none()
            && self.leader_last > 0
            && core.applied >= self.leader_last
            && core.durable == core.applied
            && core
                .config
                .group
                .iter()
                .filter(|&&n| n > core.me())
                .all(|&n| core.suspected(n, now_ms))
    }

    pub(super) fn committed(&self) -> Position {
        self.committed
    }

    pub(super) fn next_deadline(&self, core: &Core) -> Option<u64> {
        let join = if self.synced { None } else { self.join_at };
        let election = match self.election {
            Some(e) => Some(e.deadline()),
            None => self.suspicion_time(core),
        };
        [self.nack_at, join, election].into_iter().flatten().min()
    }

    pub(super) fn check(&self, core: &Core) {
        assert!(
            self.held.keys().all(|&p| p > core.applied + 1),
            "a held entry could apply"
        );
        if !self.synced {
            assert!(self.held.is_empty(), "unsynced with held entries");
        }
    }
}
