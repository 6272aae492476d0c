//! A replica: one state machine, in the role of leader or backup.
//!
//! Inputs: [`Replica::handle_datagram`] (bytes from the network),
//! [`Replica::persisted`] (the shell has durably written entries up to a
//! position), [`Replica::tick`] (the time has come: see
//! [`Replica::next_deadline`]). Outputs: [`Replica::ready`] drains datagrams
//! to send, entries to persist (in log order, each exactly once) and events.
//!
//! The leader (`leader.rs`) executes each stream's requests in sequence order,
//! applies the effect in memory at once, persists it, broadcasts it to the
//! backups in log order, and replies when it and every backup hold the entry
//! durably. A backup (`backup.rs`) applies entries strictly in log order,
//! persists them and acknowledges what is durable with its state digest.
//!
//! Ready for view changes (a later issue): every replica-to-replica
//! datagram carries the sender's epoch and messages of another epoch are
//! refused; role-specific state lives in one enum so a replica can switch
//! role; backups keep the same per-stream reply table as the leader and
//! learn the commit position from every append, so a backup that takes over
//! answers retransmits and knows which of its entries are committed. Until
//! then a leader starting from its store counts everything stored as
//! committed, which is right only when its backups hold the same prefix.
//!
//! Invariants (asserted): `durable <= applied`; persistence is requested for
//! every applied position exactly once, in order; the leader's window holds
//! exactly the positions `committed + 1 ..= applied`, and `committed` never
//! exceeds what every member holds durably.

mod backup;
mod leader;
#[cfg(test)]
mod tests;

use crate::ids::{Epoch, NodeId, Position};
use crate::recover::Recovered;
use crate::session::Sessions;
use crate::wire::{
    Decoder, Encoder, Header, Message, Reassembler, Transmit, WireConfig, WireError,
};
use backup::BackupState;
use dcms_core::{ClinicState, LogEntry, StateDigest};
use leader::LeaderState;
use std::collections::BTreeMap;

/// Settings of a replica. Times are in milliseconds.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    pub wire: WireConfig,
    pub me: NodeId,
    /// Every replica of the group, this one included.
    pub group: Vec<NodeId>,
    pub leader: NodeId,
    pub epoch: Epoch,
    /// Leader: resend to a backup whose acknowledgement has not advanced.
    pub retransmit_ms: u64,
    /// Delay before the first NACK of a new gap (lets reordering settle).
    pub nack_delay_ms: u64,
    /// Delay between NACKs while a gap stays open.
    pub nack_retry_ms: u64,
    /// Requests (per stream) or positions held back beyond the next expected.
    pub max_holdback: u64,
    /// Leader: uncommitted entries at most; beyond, new requests are dropped
    /// (the front ends retransmit).
    pub max_window: usize,
    /// Leader: entries resent to a backup per retransmission, at most.
    pub resend_batch: usize,
    /// Replies kept per stream; at least the front ends' window.
    pub reply_cache: usize,
    /// Numbers named in one NACK, at most.
    pub max_nack_numbers: usize,
    /// Differs at every start of this replica (e.g. a counter kept on disk,
    /// or the start time in seconds); keeps fragment IDs unique across
    /// restarts.
    pub incarnation: u32,
}

impl ReplicaConfig {
    pub fn new(wire: WireConfig, me: NodeId, group: Vec<NodeId>, leader: NodeId) -> ReplicaConfig {
        ReplicaConfig {
            wire,
            me,
            group,
            leader,
            epoch: 1,
            retransmit_ms: 200,
            nack_delay_ms: 2,
            nack_retry_ms: 100,
            max_holdback: 1024,
            max_window: 8192,
            resend_batch: 256,
            reply_cache: 1024,
            max_nack_numbers: 64,
            incarnation: 0,
        }
    }

    fn validate(&self) {
        self.wire.validate();
        assert!(
            self.group.contains(&self.me),
            "a replica belongs to its group"
        );
        assert!(
            self.group.contains(&self.leader),
            "the leader belongs to the group"
        );
        let mut unique = self.group.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), self.group.len(), "replica IDs are unique");
        assert!(self.retransmit_ms > 0 && self.nack_retry_ms > 0);
        assert!(self.max_holdback > 0 && self.max_window > 0 && self.resend_batch > 0);
        assert!(self.max_nack_numbers > 0);
    }
}

/// The role a replica plays in its current epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Leader,
    Backup,
}

/// Something the operator must hear about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplicaEvent {
    /// A backup's state digest differs from the leader's at the same
    /// position: the replicas have diverged.
    Divergence {
        backup: NodeId,
        position: Position,
        leader: StateDigest,
        backup_digest: StateDigest,
    },
}

/// Counters for monitoring (and for the simulator's report).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    pub decode_errors: u64,
    pub stale_epoch: u64,
    pub future_epoch: u64,
    /// Messages this role or this sender should not send.
    pub unexpected: u64,
    pub executed: u64,
    pub duplicate_requests: u64,
    pub replies_resent: u64,
    /// Duplicates of requests whose reply is no longer kept.
    pub forgotten_duplicates: u64,
    pub held_back: u64,
    pub beyond_holdback: u64,
    pub backpressure_drops: u64,
    pub nacks_sent: u64,
    pub nacks_received: u64,
    pub entries_resent: u64,
    pub duplicate_entries: u64,
    pub divergences: u64,
    /// Messages sent in fragments.
    pub fragmented_sent: u64,
    /// Messages dropped because they could not be encoded at all.
    pub oversize_dropped: u64,
}

/// What the shell must do after feeding inputs.
#[derive(Debug, Default)]
pub struct ReplicaReady {
    /// Datagrams to send.
    pub transmits: Vec<Transmit>,
    /// Entries to write durably, in log order (`Store::commit` them as one
    /// batch, then call [`Replica::persisted`] with the last position).
    pub persist: Vec<LogEntry>,
    pub events: Vec<ReplicaEvent>,
}

impl ReplicaReady {
    pub fn is_empty(&self) -> bool {
        self.transmits.is_empty() && self.persist.is_empty() && self.events.is_empty()
    }
}

/// State shared by both roles.
#[derive(Debug)]
struct Core {
    config: ReplicaConfig,
    state: ClinicState,
    sessions: Sessions,
    /// Highest position applied in memory (and handed out to persist).
    applied: Position,
    /// Highest position the shell reports durable.
    durable: Position,
    outbox: Vec<(NodeId, Message)>,
    persist: Vec<LogEntry>,
    events: Vec<ReplicaEvent>,
    stats: ReplicaStats,
}

impl Core {
    fn send(&mut self, to: NodeId, message: Message) {
        self.outbox.push((to, message));
    }

    /// Applies the next entry in log order and queues it for persistence.
    fn apply(&mut self, entry: LogEntry) {
        assert_eq!(
            entry.position,
            self.applied + 1,
            "entries apply in log order"
        );
        self.state.apply(&entry.effect);
        self.sessions.record(&entry);
        self.applied = entry.position;
        self.persist.push(entry);
    }

    fn is_replica(&self, node: NodeId) -> bool {
        self.config.group.contains(&node)
    }
}

#[derive(Debug)]
enum RoleState {
    Leader(LeaderState),
    Backup(BackupState),
}

/// A replica of the clinic state, leader or backup.
#[derive(Debug)]
pub struct Replica {
    core: Core,
    role: RoleState,
    epoch: Epoch,
    encoder: Encoder,
    decoder: Decoder,
    reassembler: Reassembler,
}

impl Replica {
    /// A replica starting from `recovered` durable state; its role follows
    /// from `config.leader`.
    pub fn new(config: ReplicaConfig, recovered: Recovered) -> Replica {
        config.validate();
        let epoch = config.epoch;
        let encoder = Encoder::new(config.wire.clone(), config.me, epoch)
            .with_incarnation(config.incarnation);
        let decoder = Decoder::new(config.wire.clone());
        let role = if config.leader == config.me {
            RoleState::Leader(LeaderState::new(&config, &recovered))
        } else {
            RoleState::Backup(BackupState::new())
        };
        Replica {
            core: Core {
                state: recovered.state,
                sessions: recovered.sessions,
                applied: recovered.last_applied,
                durable: recovered.last_applied,
                outbox: Vec::new(),
                persist: Vec::new(),
                events: Vec::new(),
                stats: ReplicaStats::default(),
                config,
            },
            role,
            epoch,
            encoder,
            decoder,
            reassembler: Reassembler::new(),
        }
    }

    pub fn id(&self) -> NodeId {
        self.core.config.me
    }

    pub fn role(&self) -> Role {
        match self.role {
            RoleState::Leader(_) => Role::Leader,
            RoleState::Backup(_) => Role::Backup,
        }
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Highest position applied in memory.
    pub fn applied(&self) -> Position {
        self.core.applied
    }

    /// Highest position known durable here.
    pub fn durable(&self) -> Position {
        self.core.durable
    }

    /// Leader: highest position durable on every member (replied to).
    /// Backup: the highest commit position the leader has told it.
    pub fn committed(&self) -> Position {
        match &self.role {
            RoleState::Leader(l) => l.committed(),
            RoleState::Backup(b) => b.committed(),
        }
    }

    pub fn digest(&self) -> StateDigest {
        self.core.state.digest()
    }

    pub fn state(&self) -> &ClinicState {
        &self.core.state
    }

    pub fn sessions(&self) -> &Sessions {
        &self.core.sessions
    }

    pub fn stats(&self) -> &ReplicaStats {
        &self.core.stats
    }

    /// Handles one received datagram at time `now_ms`. Returns its
    /// authenticated header, so the shell can remember the source address
    /// of `header.sender` (a front end's replies go there). A refused
    /// datagram changes nothing and returns why (the shell counts it; so does
    /// [`ReplicaStats::decode_errors`]).
    pub fn handle_datagram(&mut self, now_ms: u64, bytes: &[u8]) -> Result<Header, WireError> {
        let datagram = match self.decoder.decode(bytes) {
            Ok(d) => d,
            Err(e) => {
                self.core.stats.decode_errors += 1;
                return Err(e);
            }
        };
        let header = datagram.header;
        let from = header.sender;
        if self.core.is_replica(from) {
            if from == self.core.config.me {
                self.core.stats.unexpected += 1;
                return Ok(header);
            }
            if datagram.header.epoch < self.epoch {
                self.core.stats.stale_epoch += 1;
                return Ok(header);
            }
            if datagram.header.epoch > self.epoch {
                // View changes come with membership (a later issue): until
                // then a newer epoch is not ours to follow.
                self.core.stats.future_epoch += 1;
                return Ok(header);
            }
        }
        // Front ends' messages carry no epoch we check: requests are
        // idempotent, and a front end may not know the current epoch yet.
        for message in datagram.messages {
            let message = match message {
                Message::Fragment(f) => match self.reassembler.push(from, f) {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(e) => {
                        self.core.stats.decode_errors += 1;
                        return Err(e);
                    }
                },
                m => m,
            };
            self.handle_message(now_ms, from, message);
        }
        Ok(header)
    }

    /// Handles one authenticated message from `from` (already epoch-checked).
    pub fn handle_message(&mut self, now_ms: u64, from: NodeId, message: Message) {
        let from_replica = self.core.is_replica(from);
        match (&mut self.role, message) {
            (RoleState::Leader(l), Message::Request { seq, request }) if !from_replica => {
                l.on_request(&mut self.core, now_ms, from.0, seq, request)
            }
            (
                RoleState::Leader(l),
                Message::Ack {
                    durable,
                    applied,
                    digest,
                },
            ) if from_replica => l.on_ack(&mut self.core, now_ms, from, durable, applied, digest),
            (RoleState::Leader(l), Message::LogNack { missing }) if from_replica => {
                l.on_log_nack(&mut self.core, from, &missing)
            }
            (
                RoleState::Backup(b),
                Message::Append {
                    entry,
                    leader_last,
                    committed,
                },
            ) if from == self.core.config.leader => {
                b.on_append(&mut self.core, now_ms, *entry, leader_last, committed)
            }
            (_, message) => {
                tracing::debug!(?from, kind = ?message.message_type(), "unexpected message");
                self.core.stats.unexpected += 1;
            }
        }
        self.check();
    }

    /// The shell has durably written every entry up to `position`.
    pub fn persisted(&mut self, now_ms: u64, position: Position) {
        assert!(
            position <= self.core.applied,
            "persisted {position} beyond applied {}",
            self.core.applied
        );
        assert!(
            position >= self.core.durable,
            "durable position went back from {} to {position}",
            self.core.durable
        );
        let handed_out = self.core.applied - self.core.persist.len() as u64;
        assert!(
            position <= handed_out,
            "persisted {position} before it was handed out (up to {handed_out})"
        );
        self.core.durable = position;
        match &mut self.role {
            RoleState::Leader(l) => l.on_persisted(&mut self.core, now_ms),
            RoleState::Backup(b) => b.on_persisted(&mut self.core),
        }
        self.check();
    }

    /// Fires every timer due at `now_ms`.
    pub fn tick(&mut self, now_ms: u64) {
        match &mut self.role {
            RoleState::Leader(l) => l.tick(&mut self.core, now_ms),
            RoleState::Backup(b) => b.tick(&mut self.core, now_ms),
        }
        self.check();
    }

    /// When [`Replica::tick`] must be called next, if ever.
    pub fn next_deadline(&self) -> Option<u64> {
        match &self.role {
            RoleState::Leader(l) => l.next_deadline(),
            RoleState::Backup(b) => b.next_deadline(),
        }
    }

    /// True when [`Replica::ready`] has something.
    pub fn has_ready(&self) -> bool {
        !(self.core.outbox.is_empty()
            && self.core.persist.is_empty()
            && self.core.events.is_empty())
    }

    /// Drains the outputs. Messages to one destination keep their order
    /// (only the newest of several acks is kept) and are packed into as few
    /// datagrams as fit.
    pub fn ready(&mut self) -> ReplicaReady {
        let mut by_destination: BTreeMap<NodeId, Vec<Message>> = BTreeMap::new();
        for (to, message) in self.core.outbox.drain(..) {
            let queue = by_destination.entry(to).or_default();
            if matches!(message, Message::Ack { .. }) {
                // Acks are cumulative: only the newest one matters.
                queue.retain(|m| !matches!(m, Message::Ack { .. }));
            }
            queue.push(message);
        }
        let mut transmits = Vec::new();
        for (to, messages) in by_destination {
            for bytes in self.encoder.encode(&messages) {
                transmits.push(Transmit { to, bytes });
            }
        }
        self.core.stats.fragmented_sent = self.encoder.fragmented;
        self.core.stats.oversize_dropped = self.encoder.oversize_dropped;
        ReplicaReady {
            transmits,
            persist: std::mem::take(&mut self.core.persist),
            events: std::mem::take(&mut self.core.events),
        }
    }

    fn check(&self) {
        let c = &self.core;
        assert!(c.durable <= c.applied, "durable beyond applied");
        if let RoleState::Leader(l) = &self.role {
            l.check(c);
        }
    }
}
