//! The backup role: apply in log order, persist, acknowledge what is durable.
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

use super::Core;
use crate::ids::Position;
use crate::wire::Message;
use dcms_core::LogEntry;
use std::collections::BTreeMap;

#[derive(Debug)]
pub(super) struct BackupState {
    /// Entries beyond `applied + 1`, waiting for the gap to fill.
    held: BTreeMap<Position, LogEntry>,
    /// The highest position the leader has announced.
    leader_last: Position,
    nack_at: Option<u64>,
    /// The highest commit position the leader has announced.
    committed: Position,
}

impl BackupState {
    pub(super) fn new() -> BackupState {
        BackupState {
            held: BTreeMap::new(),
            leader_last: 0,
            nack_at: None,
            committed: 0,
        }
    }

    pub(super) fn on_append(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        entry: LogEntry,
        leader_last: Position,
        committed: Position,
    ) {
        if entry.position == 0 || entry.position > leader_last || committed > leader_last {
            core.stats.unexpected += 1;
            return;
        }
        // The leader commits only what this backup acknowledged durable, and
        // durability survives restarts.
        assert!(
            committed <= core.durable,
            "leader committed {committed}, beyond this backup's durable {}",
            core.durable
        );
        self.committed = self.committed.max(committed);
        self.leader_last = self.leader_last.max(leader_last);
        let position = entry.position;
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
        if self.leader_last > core.applied {
            self.nack_at
                .get_or_insert(now_ms + core.config.nack_delay_ms);
        } else {
            self.nack_at = None;
        }
    }

    pub(super) fn on_persisted(&mut self, core: &mut Core) {
        self.ack(core);
    }

    fn ack(&self, core: &mut Core) {
        let message = Message::Ack {
            durable: core.durable,
            applied: core.applied,
            digest: core.state.digest(),
        };
        let leader = core.config.leader;
        core.send(leader, message);
    }

    pub(super) fn tick(&mut self, core: &mut Core, now_ms: u64) {
        let Some(at) = self.nack_at else { return };
        if at > now_ms {
            return;
        }
        if self.leader_last <= core.applied {
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
        let leader = core.config.leader;
        core.send(leader, Message::LogNack { missing });
        self.nack_at = Some(now_ms + core.config.nack_retry_ms);
    }

    pub(super) fn committed(&self) -> Position {
        self.committed
    }

    pub(super) fn next_deadline(&self) -> Option<u64> {
        self.nack_at
    }
}
