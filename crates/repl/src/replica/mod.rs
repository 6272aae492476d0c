//! A replica: one state machine, in the role of leader or backup.
//!
//! Inputs: [`Replica::handle_datagram`] (bytes from the network),
//! [`Replica::persisted`] (the shell has durably written entries up to a
//! position), [`Replica::installed`] (the shell has replaced its store with
//! a snapshot), [`Replica::tick`] (the time has come: see
//! [`Replica::next_deadline`]). Outputs: [`Replica::ready`] drains datagrams
//! to send, entries to persist (in log order, each exactly once), the
//! durable [`Meta`] to write, a snapshot to install, and events.
//!
//! The leader (`leader/`) executes each stream's requests in sequence order,
//! applies the effect in memory at once, persists it, broadcasts it to the
//! backups in log order, and replies when it and every backup of its view
//! hold the entry durably (and never with fewer than a majority of the
//! group). A backup (`backup.rs`) applies entries strictly in log order,
//! persists them and acknowledges what is durable with its state digest.
//!
//! Failover (see `election.rs` and `view.rs`): every replica
//! heartbeats every other one; a backup that stops hearing its leader runs a
//! bully election; the winner takes an epoch higher than any seen, collects
//! the logs of a majority (`Join`), adopts the most advanced one (highest
//! `(log_epoch, applied)`, fetching it when another replica holds it), brings
//! every joined backup up to date (`Sync`: a log suffix, or a snapshot when
//! its log may diverge or is too old), and serves only once a majority holds
//! the adopted log durably. `log_epoch` is the epoch whose leader's log this
//! replica's log is a prefix of; it is raised only once the replica holds
//! the epoch's starting log durably, and it is durable ([`Meta`]) with the
//! promised epoch, so a restarted replica never follows an older leader.
//! Every replica also keeps the chained hash of its log
//! ([`dcms_core::store::LogHash`], durable with each entry): `Join` and
//! `Fetch` carry it, and a log that holds the other's hash at the other's
//! last position is known to extend it whatever the log epochs, so only the
//! suffix travels (no snapshot).
//!
//! Invariants (asserted): `durable <= applied`; persistence is requested for
//! every applied position exactly once, in order; a serving leader's window
//! holds exactly the positions `committed + 1 ..= applied`, and `committed`
//! never exceeds what every member (at least a majority) holds durably.
//!
//! The files, and the invariant each holds:
//!
//! - `mod.rs`: [`Replica`], the dispatcher: every input goes through here
//!   to the role, then the whole replica's invariants are asserted
//!   (`check`); a backup keeps no name index.
//! - `config.rs`: [`ReplicaConfig`], validated before a replica starts.
//! - `core.rs`: state, sessions and the in-memory log shared by both roles;
//!   ordering and durability: entries apply in log order and each is handed
//!   to persistence exactly once, with the log hash after it.
//! - `fencing.rs`: who may send what (key rules) and in which epoch (epoch
//!   rules); a deposed leader commits nothing.
//! - `streams.rs`: the front-end streams known, bound to their keys; silent
//!   ones expire, at most `max_streams`.
//! - `ready.rs`: the outputs a shell carries out ([`ReplicaReady`]); FIFO
//!   per destination, and the [`Meta`] before the datagrams relying on it.
//! - `leader/`: the leader: takeover (state transfer), sequencing
//!   (exactly-once, in order per stream) and commit (durability on every
//!   member and a majority before a reply).
//! - `backup.rs`: the backup: applies in log order, acknowledges only what
//!   is durable.
//! - `reads.rs`: reads without the log, answered once committed and
//!   confirmed (linearizable).
//! - `election.rs`: the bully election; one coordinator per epoch.
//! - `view.rs`: group views as the shell sees them, and the small answers
//!   that keep them current.
//!
//! Invariants (asserted): `durable <= applied`; persistence is requested for
//! every applied position exactly once, in order; a serving leader's window
//! holds exactly the positions `committed + 1 ..= applied`, and `committed`
//! never exceeds what every member (at least a majority) holds durably.

mod backup;
mod config;
mod core;
mod election;
#[cfg(test)]
mod failover_tests;
mod fencing;
mod leader;
mod reads;
mod ready;
mod streams;
#[cfg(test)]
mod tests;
mod view;

use crate::ids::{Epoch, NodeId, Position};
use crate::recover::Recovered;
use crate::session::Sessions;
use crate::wire::{Decoder, Encoder, Header, Message, Reassembler, WireError};
use backup::BackupState;
pub use config::{
    ReplicaConfig, DEFAULT_CLOCK_SKEW_MS, DEFAULT_ELECTION_MS, DEFAULT_HEARTBEAT_MS,
    DEFAULT_MAX_STREAMS, DEFAULT_STREAM_EXPIRY_MS, DEFAULT_SUSPECT_MS,
};
use core::Core;
use dcms_core::store::LogHash;
use dcms_core::{Batch, ClinicState, StateDigest};
use fencing::frontend_may_send;
use leader::{LeaderState, Origin};
pub use ready::{Meta, ReplicaEvent, ReplicaReady, ReplicaStats};
use std::collections::{BTreeMap, VecDeque};
pub use view::{PeerStatus, ViewEvent, ViewStatus};

/// The role a replica plays in its current epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Leading the current epoch (see [`ViewStatus::serving`]: it serves only
    /// after state transfer).
    Leader,
    /// Following, catching up, electing or recovering.
    Backup,
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
    encoder: Encoder,
    decoder: Decoder,
    reassembler: Reassembler,
}

impl Replica {
    /// A replica starting from `recovered` durable state. Without a stored
    /// [`Meta`] (the group's first start) its role follows from
    /// `config.leader` in `config.epoch`; with one, it starts as a backup of
    /// the epoch it joined last (a former leader runs an election).
    pub fn new(config: ReplicaConfig, recovered: Recovered) -> Replica {
        config.validate();
        let encoder = Encoder::new(config.wire.clone(), config.me, config.epoch)
            .with_incarnation(config.incarnation);
        let decoder = Decoder::new(config.wire.clone(), config.me);
        let (meta, bootstrap) = match recovered.meta {
            Some(m) => (m, false),
            None => (
                Meta {
                    epoch: config.epoch,
                    leader: Some(config.leader),
                    log_epoch: config.epoch,
                    amnesiac: false,
                },
                true,
            ),
        };
        let role = if bootstrap && config.leader == config.me {
            RoleState::Leader(LeaderState::bootstrap(&config, &recovered))
        } else {
            let synced = meta.log_epoch == meta.epoch
                && !meta.amnesiac
                && meta.leader.is_some_and(|l| l != config.me);
            RoleState::Backup(BackupState::new(synced))
        };
        let mut replica = Replica {
            core: Core {
                state: recovered.state,
                sessions: recovered.sessions,
                applied: recovered.last_applied,
                durable: recovered.last_applied,
                max_seen: meta.epoch,
                meta,
                meta_dirty: true,
                recent: VecDeque::new(),
                recent_hashes: VecDeque::new(),
                hash_before_recent: recovered.log_hash,
                log_hash: recovered.log_hash,
                heard: BTreeMap::new(),
                frontends: BTreeMap::new(),
                forgotten: Vec::new(),
                forgotten_replies: Vec::new(),
                sweep_at: None,
                next_expiry_scan: 0,
                born: None,
                leader_heard: 0,
                next_heartbeat: 0,
                installing: None,
                outbox: Vec::new(),
                persist: Batch::new(),
                install: None,
                events: Vec::new(),
                view_events: Vec::new(),
                stats: ReplicaStats::default(),
                config,
            },
            role,
            encoder,
            decoder,
            reassembler: Reassembler::new(),
        };
        replica.drop_name_index_if_backup();
        replica
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

    /// True when this replica leads its epoch and has finished state
    /// transfer: it executes requests.
    pub fn serving(&self) -> bool {
        matches!(&self.role, RoleState::Leader(l) if l.serving())
    }

    pub fn epoch(&self) -> Epoch {
        self.core.epoch()
    }

    /// The leader of the current epoch, when known.
    pub fn leader(&self) -> Option<NodeId> {
        self.core.meta.leader
    }

    /// The durable identity (what the shell last wrote or will write).
    pub fn meta(&self) -> Meta {
        self.core.meta
    }

    /// Highest position applied in memory.
    pub fn applied(&self) -> Position {
        self.core.applied
    }

    /// The log's chained hash at [`Replica::applied`], when known.
    pub fn log_hash(&self) -> Option<LogHash> {
        self.core.log_hash
    }

    /// Highest position known durable here.
    pub fn durable(&self) -> Position {
        self.core.durable
    }

    /// A snapshot is being installed by the shell.
    pub fn installing(&self) -> bool {
        self.core.installing.is_some()
    }

    /// Leader: per backup, milliseconds since its state digest last matched
    /// the leader's at the same position (`None`: not since it was last
    /// brought up to date). A backup: empty.
    pub fn digest_ages(&self, now_ms: u64) -> Vec<(NodeId, Option<u64>)> {
        match &self.role {
            RoleState::Leader(l) => l.digest_ages(now_ms),
            RoleState::Backup(_) => Vec::new(),
        }
    }

    /// Leader: highest position durable on every member (replied to).
    /// Backup: the highest commit position the leader has told it.
    pub fn committed(&self) -> Position {
        match &self.role {
            RoleState::Leader(l) => l.committed(),
            RoleState::Backup(b) => b.committed().min(self.core.durable),
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
                let stats = &mut self.core.stats;
                match e {
                    WireError::NotForMe { .. } => stats.misaddressed += 1,
                    WireError::Replayed { .. } => stats.replayed += 1,
                    _ => stats.decode_errors += 1,
                }
                return Err(e);
            }
        };
        self.start_on_first_input(now_ms);
        let header = datagram.header;
        let from = header.sender;
        let from_replica = self.core.is_replica(from);
        if let Err(e) = self.check_key(&header, &datagram.messages) {
            self.core.stats.forbidden += 1;
            return Err(e);
        }
        if from_replica {
            if from == self.core.config.me {
                self.core.stats.unexpected += 1;
                return Ok(header);
            }
            self.core.heard.insert(from, now_ms);
            self.core.max_seen = self.core.max_seen.max(header.epoch);
        } else {
            self.hear_frontend(now_ms, from, header.key);
        }
        for message in datagram.messages {
            let message = match message {
                Message::Fragment(f) => match self.reassembler.push(from, header.incarnation, f) {
                    Ok(Some(m)) => m,
                    Ok(None) => continue,
                    Err(e) => {
                        self.core.stats.decode_errors += 1;
                        return Err(e);
                    }
                },
                m => m,
            };
            if from_replica {
                self.replica_message(now_ms, from, header.epoch, message);
            } else if frontend_may_send(&message) {
                // Front ends' messages carry no epoch we check: requests are
                // idempotent, and a front end may not know the current epoch.
                self.handle_message(now_ms, from, message);
            } else {
                self.core.stats.forbidden += 1;
            }
        }
        Ok(header)
    }

    /// Handles one authenticated message from `from` (already epoch-checked).
    pub fn handle_message(&mut self, now_ms: u64, from: NodeId, message: Message) {
        self.start_on_first_input(now_ms);
        let from_replica = self.core.is_replica(from);
        let serving = self.serving();
        match (&mut self.role, message) {
            (
                RoleState::Leader(l),
                Message::Request {
                    seq,
                    request,
                    ft,
                    authenticated,
                },
            ) if !from_replica => {
                let origin = Origin { ft, authenticated };
                l.on_request(&mut self.core, now_ms, from.0, seq, request, origin)
            }
            (RoleState::Leader(l), Message::Read { id, request }) if !from_replica => {
                l.on_read(&mut self.core, now_ms, from.0, id, request)
            }
            (RoleState::Leader(l), Message::ReadIndexAck { round }) if from_replica => {
                l.on_read_index_ack(from, round)
            }
            (RoleState::Backup(_), Message::ReadIndex { round })
                if Some(from) == self.core.meta.leader =>
            {
                self.core.send(from, Message::ReadIndexAck { round })
            }
            (RoleState::Backup(_), Message::Request { .. } | Message::Read { .. })
                if !from_replica =>
            {
                // Backups take no requests; point the front end to the leader.
                self.core.stats.unexpected += 1;
                if let Some(leader) = self.core.meta.leader {
                    self.core.send(from, Message::LeaderIs { leader });
                }
            }
            (_, Message::Heartbeat { .. }) if !from_replica => {
                view::on_frontend_heartbeat(&mut self.core, from, serving)
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
                l.on_log_nack(&mut self.core, now_ms, from, &missing)
            }
            (
                RoleState::Leader(l),
                Message::Join {
                    log_epoch,
                    applied,
                    durable,
                    amnesiac,
                    log_hash,
                },
            ) if from_replica => l.on_join(
                &mut self.core,
                now_ms,
                from,
                leader::LogSummary {
                    log_epoch,
                    applied,
                    durable,
                    amnesiac,
                    log_hash,
                },
            ),
            (
                RoleState::Leader(l),
                Message::Sync {
                    common_prefix,
                    snapshot,
                    entries,
                    ..
                },
            ) if from_replica => l.on_fetched(
                &mut self.core,
                now_ms,
                from,
                common_prefix,
                snapshot,
                entries,
            ),
            (
                RoleState::Backup(b),
                Message::Append {
                    entry,
                    leader_last,
                    committed,
                },
            ) if Some(from) == self.core.meta.leader => {
                b.on_append(&mut self.core, now_ms, entry, leader_last, committed)
            }
            (
                RoleState::Backup(b),
                Message::Sync {
                    common_prefix,
                    snapshot,
                    entries,
                    epoch_start,
                },
            ) if Some(from) == self.core.meta.leader => b.on_sync(
                &mut self.core,
                now_ms,
                common_prefix,
                snapshot,
                entries,
                epoch_start,
            ),
            (
                RoleState::Backup(b),
                Message::Fetch {
                    after,
                    snapshot,
                    log_hash,
                },
            ) if Some(from) == self.core.meta.leader => {
                b.on_fetch(&mut self.core, from, after, snapshot, log_hash)
            }
            (
                RoleState::Backup(b),
                Message::Heartbeat {
                    leader,
                    applied,
                    committed,
                    ..
                },
            ) if Some(from) == self.core.meta.leader && leader == Some(from) => {
                b.on_leader_heartbeat(&mut self.core, now_ms, applied, committed)
            }
            (
                RoleState::Leader(l),
                Message::Heartbeat {
                    leader: Some(leader),
                    log_epoch,
                    applied,
                    durable,
                    ..
                },
            ) if from_replica && leader == self.core.me() => l.on_backup_heartbeat(
                &mut self.core,
                now_ms,
                from,
                leader::LogSummary {
                    log_epoch,
                    applied,
                    durable,
                    amnesiac: log_epoch == 0,
                    log_hash: None,
                },
            ),
            (_, Message::Heartbeat { .. }) if from_replica => {}
            (RoleState::Backup(b), Message::Coordinator) if Some(from) == self.core.meta.leader => {
                b.on_coordinator(&mut self.core, now_ms)
            }
            (role, Message::Election) if from_replica => {
                election::answer(&mut self.core, from);
                if let RoleState::Backup(b) = role {
                    if from < self.core.me() {
                        b.on_lower_election(&mut self.core, now_ms);
                    }
                }
            }
            (RoleState::Backup(b), Message::Answer) if from_replica => {
                b.on_answer(&mut self.core, now_ms)
            }
            (_, message) => {
                tracing::debug!(?from, kind = ?message.message_type(), "unexpected message");
                self.core.stats.unexpected += 1;
            }
        }
        self.after_input();
    }

    /// The shell has durably written every entry up to `position`.
    pub fn persisted(&mut self, now_ms: u64, position: Position) {
        self.start_on_first_input(now_ms);
        if self.core.installing.is_some() {
            // A batch from before the snapshot: superseded by it.
            return;
        }
        assert!(
            position <= self.core.applied,
            "persisted {position} beyond applied {}",
            self.core.applied
        );
        if position < self.core.durable {
            // A batch from before an installed snapshot, reported late.
            return;
        }
        let handed_out = self.core.applied - self.core.persist.len() as u64;
        assert!(
            position <= handed_out,
            "persisted {position} before it was handed out (up to {handed_out})"
        );
        self.core.durable = position;
        self.after_durable(now_ms);
    }

    /// Lets the role act on a higher durable position (acknowledge,
    /// commit, reply), then runs the common post-input work.
    fn after_durable(&mut self, now_ms: u64) {
        match &mut self.role {
            RoleState::Leader(l) => l.on_persisted(&mut self.core, now_ms),
            RoleState::Backup(b) => b.on_persisted(&mut self.core),
        }
        self.after_input();
    }

    /// The shell has installed the snapshot of the last `ready().install`.
    pub fn installed(&mut self, now_ms: u64) {
        self.start_on_first_input(now_ms);
        let position = self
            .core
            .installing
            .take()
            .expect("installed without a snapshot to install");
        assert!(self.core.install.is_none(), "installed before handed out");
        self.core.durable = position;
        self.after_durable(now_ms);
    }

    /// Fires every timer due at `now_ms`.
    pub fn tick(&mut self, now_ms: u64) {
        self.start_on_first_input(now_ms);
        self.expire_streams(now_ms);
        self.sweep_unheard_sessions(now_ms);
        if self.core.failure_detection_on() && now_ms >= self.core.next_heartbeat {
            let committed = self.committed();
            let leading = self.role() == Role::Leader;
            let hb = self.core.heartbeat(committed, leading);
            for &peer in &self.core.config.group.clone() {
                if peer != self.core.me() {
                    self.core.send(peer, hb.clone());
                }
            }
            self.core.next_heartbeat = now_ms + self.core.config.heartbeat_ms;
        }
        let become_leader = match &mut self.role {
            RoleState::Leader(l) => {
                l.tick(&mut self.core, now_ms);
                false
            }
            RoleState::Backup(b) => b.tick(&mut self.core, now_ms),
        };
        if become_leader {
            let committed = self.committed();
            let l = LeaderState::coordinator(&mut self.core, now_ms, committed);
            self.role = RoleState::Leader(l);
        }
        self.after_input();
    }

    /// When [`Replica::tick`] must be called next, if ever.
    pub fn next_deadline(&self) -> Option<u64> {
        let role = match &self.role {
            RoleState::Leader(l) => l.next_deadline(&self.core),
            RoleState::Backup(b) => b.next_deadline(&self.core),
        };
        let heartbeat = self
            .core
            .failure_detection_on()
            .then_some(self.core.next_heartbeat);
        let expiry = (!self.core.frontends.is_empty()).then_some(self.core.next_expiry_scan);
        role.into_iter()
            .chain(heartbeat)
            .chain(expiry)
            .chain(self.core.sweep_at)
            .min()
    }

    /// At the first input (and only then): every peer counts as heard now,
    /// the first heartbeat is due now, and the streams known only from the
    /// store get `stream_expiry_ms` before they lose their replies.
    fn start_on_first_input(&mut self, now_ms: u64) {
        if self.core.born.is_none() {
            self.core.born = Some(now_ms);
            for &peer in &self.core.config.group {
                self.core.heard.entry(peer).or_insert(now_ms);
            }
            self.core.next_heartbeat = now_ms;
            self.core.leader_heard = now_ms;
            // Streams a restarted replica knows only from its store.
            if self.core.sessions.streams_with_replies().next().is_some() {
                self.core.sweep_at = Some(now_ms + self.core.config.stream_expiry_ms);
            }
        }
    }

    /// After every input: answers the reads now confirmed, drops a
    /// backup's name index, and asserts the invariants.
    fn after_input(&mut self) {
        if let RoleState::Leader(l) = &mut self.role {
            l.flush_reads(&mut self.core);
        }
        self.drop_name_index_if_backup();
        self.check();
    }

    /// A backup drops the name index that only lists use, and saves a
    /// B-tree insert per entry. A leader that took over builds it at its
    /// first list (`LeaderState::execute`), not here: at 90,000 records the
    /// build takes about 70 ms, which would lengthen every failover.
    fn drop_name_index_if_backup(&mut self) {
        if matches!(self.role, RoleState::Backup(_)) {
            self.core.state.keep_name_index(false);
        }
    }

    /// The current view, and how long ago each peer was heard from.
    pub fn view(&self, now_ms: u64) -> ViewStatus {
        let members = match &self.role {
            RoleState::Leader(l) => l.members(),
            RoleState::Backup(_) => Vec::new(),
        };
        ViewStatus {
            epoch: self.core.epoch(),
            leader: self.core.meta.leader,
            role: self.role(),
            serving: self.serving(),
            members,
            log_epoch: self.core.meta.log_epoch,
            amnesiac: self.core.meta.amnesiac,
            peers: self
                .core
                .heard
                .iter()
                .map(|(&node, &t)| (node, t))
                .chain(self.core.frontends.iter().map(|(&n, p)| (n, p.heard)))
                // Its own datagrams (a copy of a broadcast) are no peer's.
                .filter(|&(node, _)| node != self.core.me())
                .map(|(node, t)| PeerStatus {
                    node,
                    replica: self.core.is_replica(node),
                    heard_ms_ago: now_ms.saturating_sub(t),
                    suspected: self.core.suspected(node, now_ms),
                })
                .collect(),
        }
    }

    fn check(&self) {
        let c = &self.core;
        assert!(
            c.frontends.len() <= c.config.max_streams,
            "streams beyond their bound"
        );
        assert!(c.durable <= c.applied, "durable beyond applied");
        assert!(c.meta.log_epoch <= c.meta.epoch, "log epoch beyond epoch");
        assert!(
            c.recent.len() <= c.config.log_keep,
            "in-memory log beyond its bound"
        );
        assert_eq!(
            c.recent.len(),
            c.recent_hashes.len(),
            "a hash for every in-memory entry"
        );
        if let Some(last) = c.recent.back() {
            assert_eq!(last.position, c.applied, "in-memory log ends at applied");
        }
        if matches!(self.role, RoleState::Backup(_)) {
            assert!(!c.state.has_name_index(), "a backup keeps no name index");
        }
        match &self.role {
            RoleState::Leader(l) => {
                assert_eq!(c.meta.leader, Some(c.me()), "a leader leads its epoch");
                l.check(c)
            }
            RoleState::Backup(b) => b.check(c),
        }
    }
}
