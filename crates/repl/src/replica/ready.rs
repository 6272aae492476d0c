//! What a replica hands its shell to carry out: [`ReplicaReady`] (the
//! durable [`Meta`] to write first, a snapshot to install, entries to
//! persist, datagrams to send, streams to forget, events), drained by
//! [`Replica::ready`]; and the counters of [`ReplicaStats`].
//!
//! Invariants: messages to one destination leave in the order the
//! protocol queued them (FIFO per destination; of several cumulative
//! messages, an ack, a heartbeat or a read-index ack, only the newest is
//! kept), packed into as few datagrams as fit; a replica's datagrams are
//! signed with the replicas' key, a front end's with the key its stream is
//! bound to, and nothing goes to a stream never heard from; the [`Meta`]
//! of a ready is written before its datagrams are sent.

use super::{Replica, ViewEvent};
use crate::ids::{Epoch, NodeId, Position};
use crate::snapshot::Snapshot;
use crate::wire::{Message, Transmit, REPLICA_KEY};
use dcms_core::{Batch, RequestKey, StateDigest};
use std::collections::BTreeMap;

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

impl Replica {
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
}
