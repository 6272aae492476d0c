//! A replica's settings ([`ReplicaConfig`]) and their defaults.
//!
//! Invariant: a replica runs only with a configuration that passes
//! `validate` (checked by `Replica::new`): it belongs to its group, the
//! first leader too, replica IDs are unique, every bound is positive, the
//! in-memory log holds at least a window, and with failure detection on a
//! peer is suspected only after more than one heartbeat interval.

use crate::ids::{Epoch, NodeId};
use crate::wire::WireConfig;

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
    /// The leader of the first epoch (when the store has no [`Meta`](super::Meta) yet).
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
    /// Heartbeat interval. 0 (what [`ReplicaConfig::new`] sets;
    /// [`ReplicaConfig::with_failover`] sets the defaults) turns failure
    /// detection off: no heartbeats, no suspicion, no elections, a fixed
    /// leader. Tests of the log, a quarter of the simulator's seeds and a
    /// cluster configured with `timeouts.failover = false` run so.
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

    pub(super) fn validate(&self) {
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
    /// loopback defaults. The shell then writes
    /// [`ReplicaReady::meta`](super::ReplicaReady::meta) durably, installs
    /// snapshots, and its front ends follow leaders (see the crate docs).
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
