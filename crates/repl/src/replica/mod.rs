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
//! The leader (`leader.rs`) executes each stream's requests in sequence order,
//! applies the effect in memory at once, persists it, broadcasts it to the
//! backups in log order, and replies when it and every backup of its view
//! hold the entry durably (and never with fewer than a majority of the
//! group). A backup (`backup.rs`) applies entries strictly in log order,
//! persists them and acknowledges what is durable with its state digest.
//!
//! Failover (issue 5; see `election.rs` and `view.rs`): every replica
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

mod backup;
mod election;
#[cfg(test)]
mod failover_tests;
mod leader;
mod reads;
#[cfg(test)]
mod tests;
mod view;

use crate::ids::{Epoch, NodeId, Position, StreamId};
use crate::recover::Recovered;
use crate::session::Sessions;
use crate::snapshot::Snapshot;
use crate::wire::{
    Decoder, Encoder, Header, KeyId, Message, Reassembler, Transmit, WireConfig, WireError,
    REPLICA_KEY,
};
use backup::BackupState;
use dcms_core::store::LogHash;
use dcms_core::{Batch, ClinicState, LogEntry, RequestKey, StateDigest};
use leader::LeaderState;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
pub use view::{PeerStatus, ViewEvent, ViewStatus};

/// Heartbeat interval for a loopback or LAN cluster, in milliseconds.
pub const DEFAULT_HEARTBEAT_MS: u64 = 20;
/// Silence after which a peer is suspected, in milliseconds.
pub const DEFAULT_SUSPECT_MS: u64 = 150;
/// How long an election waits for an answer, in milliseconds.
pub const DEFAULT_ELECTION_MS: u64 = 50;

/// Settings of a replica. Times are in milliseconds.
#[derive(Clone, Debug)]
pub struct ReplicaConfig {
    /// Holds the replicas' key and every front end's key.
    pub wire: WireConfig,
    pub me: NodeId,
    /// Every replica of the group, this one included.
    pub group: Vec<NodeId>,
    /// The leader of the first epoch (when the store has no [`Meta`] yet).
    pub leader: NodeId,
    /// The first epoch.
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
    /// Higher at every start of this replica (the start time in
    /// microseconds, or a counter kept on disk): the peers' replay windows
    /// refuse datagrams of an older incarnation.
    pub incarnation: u64,
    /// Heartbeat interval. 0 (the default until the shell is ready, see
    /// [`ReplicaConfig::with_failover`]) turns failure detection off: no
    /// heartbeats, no suspicion, no elections (a fixed leader, as before).
    pub heartbeat_ms: u64,
    /// A peer not heard from for this long is suspected (removed from the
    /// leader's view; a suspected leader is replaced).
    pub suspect_ms: u64,
    /// Bully election: how long to wait for an `Answer` (and three times
    /// this for the `Coordinator` after one).
    pub election_ms: u64,
    /// Applied entries every replica keeps in memory for catch-up; a replica
    /// further behind gets a snapshot. At least `max_window`.
    pub log_keep: usize,
    /// Entries sent in one answer to a `Fetch` at most; a longer suffix
    /// travels in several (the leader fetches again).
    pub max_transfer: usize,
    /// A front-end stream silent this long is forgotten: its key binding,
    /// replay window, address and held requests (not its executed requests,
    /// which are replicated state).
    pub stream_expiry_ms: u64,
    /// Front-end streams known at most; a new one beyond makes room by
    /// forgetting the longest silent.
    pub max_streams: usize,
    /// How far apart the replicas' clocks may be: a leader without a
    /// majority calls its refusal of an FT request final (not executed,
    /// ever) only this long after the request's expiration, so that no
    /// other leader whose clock is behind by less still executes it.
    pub clock_skew_ms: u64,
    /// The largest `listRecords` answer served, encoded; a larger one is
    /// refused, naming `listRecordsPage` (`dcms_core::ops::bound_list`).
    pub max_list_bytes: usize,
}

/// The replicas' clocks are assumed within this of each other (NTP keeps
/// hosts within milliseconds; loopback shares one clock).
pub const DEFAULT_CLOCK_SKEW_MS: u64 = 500;

/// How long a silent front-end stream is remembered, by default.
pub const DEFAULT_STREAM_EXPIRY_MS: u64 = 5 * 60 * 1000;
/// Front-end streams known at most, by default.
pub const DEFAULT_MAX_STREAMS: usize = 1024;

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
            heartbeat_ms: 0,
            suspect_ms: DEFAULT_SUSPECT_MS,
            election_ms: DEFAULT_ELECTION_MS,
            log_keep: 65_536,
            max_transfer: 1024,
            stream_expiry_ms: DEFAULT_STREAM_EXPIRY_MS,
            max_streams: DEFAULT_MAX_STREAMS,
            clock_skew_ms: DEFAULT_CLOCK_SKEW_MS,
            max_list_bytes: dcms_core::ops::DEFAULT_MAX_LIST_BYTES,
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
        assert!(self.max_nack_numbers > 0 && self.max_transfer > 0);
        assert!(self.stream_expiry_ms > 0 && self.max_streams > 0);
        assert!(
            self.log_keep >= self.max_window,
            "log_keep below max_window"
        );
        if self.heartbeat_ms > 0 {
            assert!(
                self.suspect_ms > self.heartbeat_ms && self.election_ms > 0,
                "suspect after more than one heartbeat interval"
            );
        }
    }

    /// Turns failure detection, elections and state transfer on, with the
    /// loopback defaults. Off by default: the shell must first write
    /// [`ReplicaReady::meta`] durably, install snapshots and follow leaders
    /// in its front end (see the crate docs).
    pub fn with_failover(mut self) -> ReplicaConfig {
        self.heartbeat_ms = DEFAULT_HEARTBEAT_MS;
        self.suspect_ms = DEFAULT_SUSPECT_MS;
        self.election_ms = DEFAULT_ELECTION_MS;
        self
    }

    /// Replicas needed for a majority of the group.
    pub fn majority(&self) -> usize {
        self.group.len() / 2 + 1
    }
}

/// What a replica must keep durably besides its log, written before the
/// datagrams of the same [`ReplicaReady`] are sent (a small file, fsynced).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Meta {
    /// The highest epoch this replica joined (it never follows an older one).
    pub epoch: Epoch,
    /// The leader it joined in `epoch`.
    pub leader: Option<NodeId>,
    /// Its log is a prefix of this epoch's leader's log.
    pub log_epoch: Epoch,
    /// Its store was wiped and it has not caught up since: it learns the
    /// epoch from a majority before following anyone, and does not count
    /// towards a majority until synced.
    pub amnesiac: bool,
}

impl Meta {
    /// The meta of a replica whose store was wiped (or replaced by an empty
    /// one) while the group went on.
    pub fn wiped() -> Meta {
        Meta {
            amnesiac: true,
            ..Meta::default()
        }
    }
}

/// The role a replica plays in its current epoch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Leading the current epoch (see [`ViewStatus::serving`]: it serves only
    /// after state transfer).
    Leader,
    /// Following, catching up, electing or recovering.
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

/// Counters for monitoring (`dcms status --json`, `/metrics`) and for the
/// simulator's report.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReplicaStats {
    pub decode_errors: u64,
    /// Datagrams addressed to another node, dropped.
    pub misaddressed: u64,
    /// Duplicates and replays of datagrams already accepted, dropped.
    pub replayed: u64,
    /// Authentic datagrams whose key may not send them (a front end's key
    /// claiming a replica, or carrying replica messages), dropped.
    pub forbidden: u64,
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
    pub elections: u64,
    pub became_leader: u64,
    pub snapshots_sent: u64,
    /// `Join`s ignored because a `Sync` for the same log is under way.
    pub duplicate_joins: u64,
    pub snapshots_installed: u64,
    pub members_removed: u64,
    pub members_added: u64,
    /// Requests dropped because this replica does not serve (yet).
    pub not_serving: u64,
    /// Requests refused because the leader reaches no majority.
    pub unavailable: u64,
    /// Front-end streams forgotten after `stream_expiry_ms` of silence.
    pub streams_expired: u64,
    /// Front-end streams forgotten to make room for a new one.
    pub streams_evicted: u64,
    /// Streams whose kept replies were dropped (silent past the expiry).
    pub replies_dropped: u64,
    /// Reads executed without the log, and answered.
    pub reads: u64,
    pub reads_answered: u64,
    /// FT requests whose identity had executed already (a retry, possibly
    /// through another front end): logged with the first reply, no change.
    pub ft_retries: u64,
    /// FT requests refused because their expiration had passed.
    pub ft_expired: u64,
    /// FT requests refused for an identity out of bounds (expiration too
    /// far ahead, client ID empty or too long).
    pub ft_refused: u64,
}

/// What the shell must do after feeding inputs.
#[derive(Debug, Default)]
pub struct ReplicaReady {
    /// Write this durably first (before sending `transmits`), when set.
    pub meta: Option<Meta>,
    /// Replace the store's contents with this snapshot (one transaction),
    /// after every earlier `persist` batch and before this ready's
    /// `persist`; then call [`Replica::installed`]. `persisted` reports of
    /// batches handed out before it are ignored until then.
    pub install: Option<Box<Snapshot>>,
    /// Datagrams to send.
    pub transmits: Vec<Transmit>,
    /// Entries to write durably, in log order, with the log's hash after
    /// each (`Store::commit_batch` them as one batch, then call
    /// [`Replica::persisted`] with the last position).
    pub persist: Batch,
    pub events: Vec<ReplicaEvent>,
    /// Elections, view changes, rejoins: log them at info.
    pub view_events: Vec<ViewEvent>,
    /// Front-end streams forgotten (expired or evicted): the shell forgets
    /// their addresses too.
    pub forgotten: Vec<NodeId>,
    /// Streams whose stored replies were dropped (silent past the expiry),
    /// with their heads: the shell deletes their replies up to the head from
    /// the store and keeps the head (`Store::forget_replies`), in order
    /// after the batches handed out before.
    pub forgotten_replies: Vec<RequestKey>,
}

impl ReplicaReady {
    pub fn is_empty(&self) -> bool {
        self.transmits.is_empty()
            && self.persist.is_empty()
            && self.events.is_empty()
            && self.view_events.is_empty()
            && self.forgotten.is_empty()
            && self.forgotten_replies.is_empty()
            && self.meta.is_none()
            && self.install.is_none()
    }
}

/// State shared by all roles.
#[derive(Debug)]
struct Core {
    config: ReplicaConfig,
    state: ClinicState,
    sessions: Sessions,
    /// Highest position applied in memory (and handed out to persist).
    applied: Position,
    /// Highest position the shell reports durable.
    durable: Position,
    /// The durable part of the replica's identity (see [`Meta`]).
    meta: Meta,
    meta_dirty: bool,
    /// The highest epoch seen in any replica's header.
    max_seen: Epoch,
    /// The last applied entries, positions `applied - len + 1 ..= applied`.
    recent: VecDeque<Arc<LogEntry>>,
    /// The log's chained hash after each entry of `recent` (same length).
    recent_hashes: VecDeque<LogHash>,
    /// The log's hash at `recent_start() - 1`, when known.
    hash_before_recent: Option<LogHash>,
    /// The log's hash at `applied`, when known (a store without hashes, or
    /// a restore from a backup, does not know it until a snapshot comes).
    log_hash: Option<LogHash>,
    /// When each other replica was last heard from.
    heard: BTreeMap<NodeId, u64>,
    /// Front-end streams heard from (to announce a new leader to, and to
    /// sign their datagrams with their key).
    frontends: BTreeMap<NodeId, FrontEndPeer>,
    /// Streams forgotten since the last `ready`.
    forgotten: Vec<NodeId>,
    /// Streams whose replies were dropped since the last `ready`.
    forgotten_replies: Vec<RequestKey>,
    /// When the sessions of streams not heard since the start lose their
    /// replies (once, `stream_expiry_ms` after the first input).
    sweep_at: Option<u64>,
    /// When the longest silent stream expires at the earliest (no stream
    /// expires before; one heard since makes the scan find nothing).
    next_expiry_scan: u64,
    /// Time of the first input; peers count as heard then.
    born: Option<u64>,
    /// When the leader of the current epoch last showed it leads (its
    /// heartbeat naming itself, an append, a sync, its coordinator message).
    leader_heard: u64,
    next_heartbeat: u64,
    /// A snapshot handed to the shell and not yet installed (its position).
    installing: Option<Position>,
    outbox: Vec<(NodeId, Epoch, Message)>,
    persist: Batch,
    install: Option<Box<Snapshot>>,
    events: Vec<ReplicaEvent>,
    view_events: Vec<ViewEvent>,
    stats: ReplicaStats,
}

impl Core {
    fn send(&mut self, to: NodeId, message: Message) {
        self.outbox.push((to, self.meta.epoch, message));
    }

    fn epoch(&self) -> Epoch {
        self.meta.epoch
    }

    fn me(&self) -> NodeId {
        self.config.me
    }

    fn detecting(&self) -> bool {
        self.config.heartbeat_ms > 0
    }

    /// Applies the next entry in log order and queues it for persistence.
    fn apply(&mut self, entry: Arc<LogEntry>) {
        assert_eq!(
            entry.position,
            self.applied + 1,
            "entries apply in log order"
        );
        self.state.apply(&entry.effect);
        self.sessions.record(&entry);
        self.applied = entry.position;
        self.log_hash = self.log_hash.map(|h| h.chain(&entry));
        self.recent.push_back(Arc::clone(&entry));
        self.recent_hashes
            .push_back(self.log_hash.unwrap_or_default());
        while self.recent.len() > self.config.log_keep {
            self.recent.pop_front();
            self.hash_before_recent = self.recent_hashes.pop_front();
        }
        self.persist.push(entry, self.log_hash);
    }

    /// The first position still in the in-memory log.
    fn recent_start(&self) -> Position {
        self.applied + 1 - self.recent.len() as u64
    }

    /// The log's chained hash at `position`, when this replica knows it
    /// (positions `recent_start() - 1 ..= applied`).
    fn hash_at(&self, position: Position) -> Option<LogHash> {
        self.log_hash?;
        let start = self.recent_start();
        if position == self.applied {
            self.log_hash
        } else if position + 1 == start {
            self.hash_before_recent
        } else if position >= start && position < self.applied {
            Some(self.recent_hashes[(position - start) as usize])
        } else {
            None
        }
    }

    /// True when this replica's log holds `hash` at `position`: the two
    /// logs are the same up to there.
    fn log_matches(&self, position: Position, hash: Option<LogHash>) -> bool {
        hash.is_some() && self.hash_at(position) == hash
    }

    fn entry(&self, position: Position) -> Option<&Arc<LogEntry>> {
        let start = self.recent_start();
        if position < start || position > self.applied {
            return None;
        }
        let e = &self.recent[(position - start) as usize];
        assert_eq!(e.position, position, "in-memory log in order");
        Some(e)
    }

    /// Replaces state and log with `snapshot`; the shell installs it.
    fn install(&mut self, snapshot: Snapshot) {
        let (state, sessions) = snapshot.restore(self.config.reply_cache);
        tracing::info!(position = snapshot.position, "installing a snapshot");
        self.state = state;
        self.sessions = sessions;
        self.applied = snapshot.position;
        self.log_hash = snapshot.log_hash;
        self.hash_before_recent = snapshot.log_hash;
        self.recent_hashes.clear();
        self.durable = 0;
        self.recent.clear();
        self.persist.clear();
        self.installing = Some(snapshot.position);
        // `log_epoch` stays: the snapshot comes from the leader of a newer
        // (or the same) epoch, whose log holds every entry committed before
        // it; lowering the claim could let a replica missing one of them win
        // an election if this one restarts before the install is durable.
        self.stats.snapshots_installed += 1;
        self.view_events.push(ViewEvent::Installing {
            position: snapshot.position,
        });
        self.install = Some(Box::new(snapshot));
    }

    fn snapshot(&self) -> Snapshot {
        Snapshot::of(self.applied, self.log_hash, &self.state, &self.sessions)
    }

    fn is_replica(&self, node: NodeId) -> bool {
        self.config.group.contains(&node)
    }

    fn suspected(&self, node: NodeId, now_ms: u64) -> bool {
        self.detecting()
            && self
                .heard
                .get(&node)
                .is_none_or(|&t| now_ms >= t + self.config.suspect_ms)
    }

    fn set_meta(&mut self, meta: Meta) {
        assert!(
            meta.epoch >= self.meta.epoch,
            "the promised epoch went back"
        );
        if meta != self.meta {
            self.meta = meta;
            self.meta_dirty = true;
        }
    }

    /// This replica's heartbeat; it names itself as leader only when it
    /// leads (`leading`), so a restarted former leader is not taken for a
    /// live one.
    fn heartbeat(&self, committed: Position, leading: bool) -> Message {
        let me = self.config.me;
        Message::Heartbeat {
            leader: self.meta.leader.filter(|&l| l != me || leading),
            log_epoch: self.meta.log_epoch,
            applied: self.applied,
            durable: self.durable,
            committed,
        }
    }
}

/// A front end's stream, as a replica knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FrontEndPeer {
    /// The key it signs with; the stream is bound to it.
    key: KeyId,
    /// When it was last heard from.
    heard: u64,
}

/// May a front end (a datagram signed with a front end's key) send
/// `message`? Requests and heartbeats (and fragments of them), nothing else.
fn frontend_may_send(message: &Message) -> bool {
    matches!(
        message,
        Message::Request { .. }
            | Message::Read { .. }
            | Message::Heartbeat { .. }
            | Message::Fragment(_)
    )
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
        replica.fit_state_to_role();
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
        self.touch(now_ms);
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
            if !self.core.frontends.contains_key(&from)
                && self.core.frontends.len() >= self.core.config.max_streams
            {
                let silent = self.core.frontends.iter().min_by_key(|(_, p)| p.heard);
                if let Some((&oldest, _)) = silent {
                    self.core.stats.streams_evicted += 1;
                    // Not silent long enough to lose its replies.
                    self.forget_stream(oldest, false);
                }
            }
            if self.core.frontends.is_empty() {
                self.core.next_expiry_scan = now_ms + self.core.config.stream_expiry_ms;
            }
            self.core.frontends.insert(
                from,
                FrontEndPeer {
                    key: header.key,
                    heard: now_ms,
                },
            );
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

    /// Forgets a front-end stream: its key binding, replay window, datagram
    /// counter and held requests; the shell its address. A stream silent
    /// past the expiry (`silent`) also loses its kept replies (its head
    /// stays: what it executed never executes again).
    fn forget_stream(&mut self, stream: NodeId, silent: bool) {
        if let Some(peer) = self.core.frontends.remove(&stream) {
            self.decoder.forget(peer.key, stream);
        }
        self.encoder.forget(stream);
        if let RoleState::Leader(l) = &mut self.role {
            l.forget_stream(stream.0);
        }
        self.core.forgotten.push(stream);
        if silent {
            self.drop_replies(stream.0);
        }
    }

    fn drop_replies(&mut self, stream: StreamId) {
        if let Some(head) = self.core.sessions.drop_replies(stream) {
            self.core.stats.replies_dropped += 1;
            self.core
                .forgotten_replies
                .push(RequestKey { stream, seq: head });
        }
    }

    /// Once, `stream_expiry_ms` after the start: the sessions of streams
    /// not heard since lose their replies (a restarted replica learns of
    /// silent streams only from its store).
    fn sweep_unheard_sessions(&mut self, now_ms: u64) {
        if self.core.sweep_at.is_none_or(|t| now_ms < t) {
            return;
        }
        self.core.sweep_at = None;
        let unheard: Vec<StreamId> = self
            .core
            .sessions
            .streams_with_replies()
            .filter(|&s| !self.core.frontends.contains_key(&NodeId::of_stream(s)))
            .collect();
        for stream in unheard {
            self.drop_replies(stream);
        }
    }

    /// Forgets the streams silent for `stream_expiry_ms`.
    fn expire_streams(&mut self, now_ms: u64) {
        if now_ms < self.core.next_expiry_scan {
            return;
        }
        let expiry = self.core.config.stream_expiry_ms;
        let silent: Vec<NodeId> = self
            .core
            .frontends
            .iter()
            .filter(|(_, p)| now_ms >= p.heard + expiry)
            .map(|(&s, _)| s)
            .collect();
        for stream in silent {
            tracing::info!(%stream, "a silent front-end stream expired");
            self.core.stats.streams_expired += 1;
            self.forget_stream(stream, true);
        }
        let oldest = self.core.frontends.values().map(|p| p.heard).min();
        self.core.next_expiry_scan = oldest.map_or(0, |t| t + expiry);
    }

    /// The key rules: the replicas' key signs only replicas' datagrams; a
    /// front end's key only a non-replica sender's requests and heartbeats,
    /// and a stream stays bound to the key it was first heard with.
    fn check_key(&self, header: &Header, messages: &[Message]) -> Result<(), WireError> {
        let from_replica = self.core.is_replica(header.sender);
        if header.key == REPLICA_KEY {
            return if from_replica {
                Ok(())
            } else {
                Err(WireError::Forbidden(
                    "the replicas' key from a sender that is no replica",
                ))
            };
        }
        if from_replica {
            return Err(WireError::Forbidden(
                "a front end's key claiming to be a replica",
            ));
        }
        if !messages.iter().all(frontend_may_send) {
            return Err(WireError::Forbidden(
                "a front end's key on a message only replicas send",
            ));
        }
        match self.core.frontends.get(&header.sender) {
            Some(peer) if peer.key != header.key => Err(WireError::Forbidden(
                "a stream heard with another front end's key",
            )),
            _ => Ok(()),
        }
    }

    /// Epoch rules for a message from another replica, then its handling.
    fn replica_message(&mut self, now_ms: u64, from: NodeId, epoch: Epoch, message: Message) {
        let shows_leadership = match &message {
            Message::Coordinator | Message::Append { .. } | Message::Sync { .. } => true,
            Message::Heartbeat { leader, .. } => *leader == Some(from),
            _ => false,
        };
        let mine = self.core.epoch();
        if self.core.meta.amnesiac && self.core.meta.leader.is_none() {
            self.recovery_vote(now_ms, from, epoch, &message);
            return;
        }
        if epoch < mine {
            self.core.stats.stale_epoch += 1;
            if let RoleState::Leader(l) = &mut self.role {
                // A backup of ours speaking an older epoch lost its store.
                l.on_stale_backup(&mut self.core, from);
            }
            let committed = self.committed();
            let leading = self.role() == Role::Leader;
            view::answer_stale(&mut self.core, now_ms, from, &message, committed, leading);
            return;
        }
        if epoch > mine {
            let claim = match &message {
                Message::Coordinator | Message::Append { .. } | Message::Sync { .. } => Some(from),
                Message::Heartbeat { leader, .. } => *leader,
                _ => None,
            };
            match claim {
                Some(leader) if !self.core.detecting() => {
                    // Without failure detection the group never changes.
                    let _ = leader;
                    self.core.stats.future_epoch += 1;
                    return;
                }
                Some(leader) => self.follow(now_ms, epoch, leader),
                None => {
                    self.core.stats.future_epoch += 1;
                    if matches!(message, Message::Election) {
                        election::answer(&mut self.core, from, epoch);
                    }
                    return;
                }
            }
        }
        if shows_leadership && Some(from) == self.core.meta.leader {
            self.core.leader_heard = now_ms;
        }
        self.handle_message(now_ms, from, message);
    }

    /// Joins `leader` in the newer `epoch`: a backup that must catch up.
    fn follow(&mut self, now_ms: u64, epoch: Epoch, leader: NodeId) {
        assert!(epoch > self.core.epoch(), "follow only newer epochs");
        let meta = Meta {
            epoch,
            leader: Some(leader),
            ..self.core.meta
        };
        self.core.set_meta(meta);
        self.core.leader_heard = now_ms;
        tracing::info!(me = %self.core.me(), epoch, %leader, "following a new leader");
        self.core
            .view_events
            .push(ViewEvent::Following { epoch, leader });
        let mut b = BackupState::new(false);
        if leader == self.core.me() {
            // Our own epoch from before a restart: elect again.
            b.start_election_soon();
        } else {
            b.send_join(&mut self.core, now_ms);
        }
        self.role = RoleState::Backup(b);
    }

    /// Amnesiac: learn the epoch from a majority of the others first.
    fn recovery_vote(&mut self, now_ms: u64, from: NodeId, epoch: Epoch, message: &Message) {
        let Message::Heartbeat {
            leader: Some(leader),
            ..
        } = message
        else {
            self.core.stats.unexpected += 1;
            return;
        };
        let RoleState::Backup(b) = &mut self.role else {
            unreachable!("an amnesiac never leads")
        };
        b.votes.insert(from, (epoch, *leader));
        if b.votes.len() >= self.core.config.majority() {
            let (&(epoch, leader), _) = b
                .votes
                .values()
                .map(|v| (v, ()))
                .max()
                .expect("votes present");
            if epoch > self.core.epoch() && leader != self.core.me() {
                self.follow(now_ms, epoch, leader);
            } else {
                b.votes.clear();
            }
        }
    }

    /// Handles one authenticated message from `from` (already epoch-checked).
    pub fn handle_message(&mut self, now_ms: u64, from: NodeId, message: Message) {
        self.touch(now_ms);
        let from_replica = self.core.is_replica(from);
        let serving = self.serving();
        match (&mut self.role, message) {
            (RoleState::Leader(l), Message::Request { seq, request, ft }) if !from_replica => {
                l.on_request(&mut self.core, now_ms, from.0, seq, request, ft)
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
                leader::Report {
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
                    trust,
                    snapshot,
                    entries,
                    ..
                },
            ) if from_replica => {
                l.on_fetched(&mut self.core, now_ms, from, trust, snapshot, entries)
            }
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
                    trust,
                    snapshot,
                    entries,
                    epoch_start,
                },
            ) if Some(from) == self.core.meta.leader => b.on_sync(
                &mut self.core,
                now_ms,
                trust,
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
                leader::Report {
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
                let epoch = self.core.epoch();
                election::answer(&mut self.core, from, epoch);
                if let RoleState::Backup(b) = role {
                    if from < self.core.me() {
                        b.on_lower_election(&mut self.core, now_ms);
                    }
                }
            }
            (RoleState::Backup(b), Message::Answer) if from_replica => {
                b.on_answer(&mut self.core, now_ms, from)
            }
            (_, message) => {
                tracing::debug!(?from, kind = ?message.message_type(), "unexpected message");
                self.core.stats.unexpected += 1;
            }
        }
        self.after_input(now_ms);
    }

    /// The shell has durably written every entry up to `position`.
    pub fn persisted(&mut self, now_ms: u64, position: Position) {
        self.touch(now_ms);
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
        self.after_input(now_ms);
    }

    /// The shell has installed the snapshot of the last `ready().install`.
    pub fn installed(&mut self, now_ms: u64) {
        self.touch(now_ms);
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
        self.touch(now_ms);
        self.expire_streams(now_ms);
        self.sweep_unheard_sessions(now_ms);
        if self.core.detecting() && now_ms >= self.core.next_heartbeat {
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
        self.after_input(now_ms);
    }

    /// When [`Replica::tick`] must be called next, if ever.
    pub fn next_deadline(&self) -> Option<u64> {
        let role = match &self.role {
            RoleState::Leader(l) => l.next_deadline(&self.core),
            RoleState::Backup(b) => b.next_deadline(&self.core),
        };
        let heartbeat = self.core.detecting().then_some(self.core.next_heartbeat);
        let expiry = (!self.core.frontends.is_empty()).then_some(self.core.next_expiry_scan);
        role.into_iter()
            .chain(heartbeat)
            .chain(expiry)
            .chain(self.core.sweep_at)
            .min()
    }

    /// The first input: every peer counts as heard now.
    fn touch(&mut self, now_ms: u64) {
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

    fn after_input(&mut self, now_ms: u64) {
        let _ = now_ms;
        if let RoleState::Leader(l) = &mut self.role {
            l.flush_reads(&mut self.core);
        }
        self.fit_state_to_role();
        self.check();
    }

    /// A backup drops the name index that only lists use, and saves a
    /// B-tree insert per entry. A leader that took over builds it at its
    /// first list (`LeaderState::execute`), not here: at 90,000 records the
    /// build takes about 70 ms, which would lengthen every failover.
    fn fit_state_to_role(&mut self) {
        if matches!(self.role, RoleState::Backup(_)) {
            self.core.state.keep_name_index(false);
        }
    }

    /// The current view, and how long ago each peer was heard from.
    pub fn view(&self, now_ms: u64) -> ViewStatus {
        let members = match &self.role {
            RoleState::Leader(l) => l.members(&self.core),
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

    /// True when [`Replica::ready`] has something.
    pub fn has_ready(&self) -> bool {
        !(self.core.outbox.is_empty()
            && self.core.persist.is_empty()
            && self.core.events.is_empty()
            && self.core.view_events.is_empty()
            && self.core.forgotten.is_empty()
            && self.core.forgotten_replies.is_empty()
            && !self.core.meta_dirty
            && self.core.install.is_none())
    }

    /// Drains the outputs. Messages to one destination keep their order
    /// (only the newest of several acks is kept) and are packed into as few
    /// datagrams as fit.
    pub fn ready(&mut self) -> ReplicaReady {
        let mut by_destination: BTreeMap<(NodeId, Epoch), Vec<Message>> = BTreeMap::new();
        for (to, epoch, message) in self.core.outbox.drain(..) {
            let queue = by_destination.entry((to, epoch)).or_default();
            if matches!(
                message,
                Message::Ack { .. } | Message::Heartbeat { .. } | Message::ReadIndexAck { .. }
            ) {
                // Acks and heartbeats are cumulative: only the newest matters.
                let same = std::mem::discriminant(&message);
                queue.retain(|m| std::mem::discriminant(m) != same);
            }
            queue.push(message);
        }
        let mut transmits: Vec<Transmit> = Vec::new();
        for ((to, epoch), messages) in by_destination {
            // Replicas' datagrams are signed with their key; a front end's
            // with the key its stream is bound to (a stream not heard from
            // has none: nothing goes to it).
            let key = if self.core.is_replica(to) {
                REPLICA_KEY
            } else {
                match self.core.frontends.get(&to) {
                    Some(peer) => peer.key,
                    None => continue,
                }
            };
            self.encoder.stamp_epoch(epoch);
            let datagrams = self.encoder.encode(key, to, &messages);
            transmits.extend(datagrams.into_iter().map(|bytes| Transmit { to, bytes }));
        }
        self.core.stats.fragmented_sent = self.encoder.fragmented;
        self.core.stats.oversize_dropped = self.encoder.oversize_dropped;
        let meta = std::mem::take(&mut self.core.meta_dirty).then_some(self.core.meta);
        ReplicaReady {
            meta,
            install: self.core.install.take(),
            transmits,
            persist: std::mem::take(&mut self.core.persist),
            events: std::mem::take(&mut self.core.events),
            view_events: std::mem::take(&mut self.core.view_events),
            forgotten: std::mem::take(&mut self.core.forgotten),
            forgotten_replies: std::mem::take(&mut self.core.forgotten_replies),
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
