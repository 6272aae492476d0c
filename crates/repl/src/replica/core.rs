//! `Core`: what a replica holds in either role: the clinic state and the
//! sessions, the in-memory log with the chained log hash after each entry,
//! the positions applied and durable, the durable [`Meta`], when each peer
//! was last heard, and the outputs queued for the next `ready`.
//!
//! Invariants (ordering and durability): entries apply strictly in log
//! order, and each applied entry is handed to persistence exactly once,
//! with the log's hash after it (`Core::apply`); a snapshot replaces state
//! and log at once and counts nothing durable until the shell installs it
//! (`Core::install`); the promised epoch never goes back (`Core::set_meta`).

use super::streams::FrontEndPeer;
use super::{Meta, ReplicaConfig, ReplicaEvent, ReplicaStats, ViewEvent};
use crate::ids::{Epoch, NodeId, Position};
use crate::session::Sessions;
use crate::snapshot::Snapshot;
use crate::wire::Message;
use dcms_core::store::LogHash;
use dcms_core::{Batch, ClinicState, LogEntry, RequestKey};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

/// State shared by all roles.
#[derive(Debug)]
pub(super) struct Core {
    pub(super) config: ReplicaConfig,
    pub(super) state: ClinicState,
    pub(super) sessions: Sessions,
    /// Highest position applied in memory (and handed out to persist).
    pub(super) applied: Position,
    /// Highest position the shell reports durable.
    pub(super) durable: Position,
    /// The durable part of the replica's identity (see [`Meta`]).
    pub(super) meta: Meta,
    pub(super) meta_dirty: bool,
    /// The highest epoch seen in any replica's header.
    pub(super) max_seen: Epoch,
    /// The last applied entries, positions `applied - len + 1 ..= applied`.
    pub(super) recent: VecDeque<Arc<LogEntry>>,
    /// The log's chained hash after each entry of `recent` (same length).
    pub(super) recent_hashes: VecDeque<LogHash>,
    /// The log's hash at `recent_start() - 1`, when known.
    pub(super) hash_before_recent: Option<LogHash>,
    /// The log's hash at `applied`, when known (a store without hashes, or
    /// a restore from a backup, does not know it until a snapshot comes).
    pub(super) log_hash: Option<LogHash>,
    /// When each other replica was last heard from.
    pub(super) heard: BTreeMap<NodeId, u64>,
    /// Front-end streams heard from (to announce a new leader to, and to
    /// sign their datagrams with their key).
    pub(super) frontends: BTreeMap<NodeId, FrontEndPeer>,
    /// Streams forgotten since the last `ready`.
    pub(super) forgotten: Vec<NodeId>,
    /// Streams whose replies were dropped since the last `ready`.
    pub(super) forgotten_replies: Vec<RequestKey>,
    /// When the sessions of streams not heard since the start lose their
    /// replies (once, `stream_expiry_ms` after the first input).
    pub(super) sweep_at: Option<u64>,
    /// When the longest silent stream expires at the earliest (no stream
    /// expires before; one heard since makes the scan find nothing).
    pub(super) next_expiry_scan: u64,
    /// Time of the first input; peers count as heard then.
    pub(super) born: Option<u64>,
    /// When the leader of the current epoch last showed it leads (its
    /// heartbeat naming itself, an append, a sync, its coordinator message).
    pub(super) leader_heard: u64,
    pub(super) next_heartbeat: u64,
    /// A snapshot handed to the shell and not yet installed (its position).
    pub(super) installing: Option<Position>,
    pub(super) outbox: Vec<(NodeId, Epoch, Message)>,
    pub(super) persist: Batch,
    pub(super) install: Option<Box<Snapshot>>,
    pub(super) events: Vec<ReplicaEvent>,
    pub(super) view_events: Vec<ViewEvent>,
    pub(super) stats: ReplicaStats,
}

impl Core {
    pub(super) fn send(&mut self, to: NodeId, message: Message) {
        self.outbox.push((to, self.meta.epoch, message));
    }

    pub(super) fn epoch(&self) -> Epoch {
        self.meta.epoch
    }

    pub(super) fn me(&self) -> NodeId {
        self.config.me
    }

    /// Failure detection is on (`heartbeat_ms > 0`): heartbeats,
    /// suspicion, elections and failover. Off, the group and its leader
    /// never change.
    pub(super) fn failure_detection_on(&self) -> bool {
        self.config.heartbeat_ms > 0
    }

    /// Applies the next entry in log order and queues it for persistence.
    pub(super) fn apply(&mut self, entry: Arc<LogEntry>) {
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
    pub(super) fn recent_start(&self) -> Position {
        self.applied + 1 - self.recent.len() as u64
    }

    /// The log's chained hash at `position`, when this replica knows it
    /// (positions `recent_start() - 1 ..= applied`).
    pub(super) fn hash_at(&self, position: Position) -> Option<LogHash> {
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
    pub(super) fn log_matches(&self, position: Position, hash: Option<LogHash>) -> bool {
        hash.is_some() && self.hash_at(position) == hash
    }

    pub(super) fn entry(&self, position: Position) -> Option<&Arc<LogEntry>> {
        let start = self.recent_start();
        if position < start || position > self.applied {
            return None;
        }
        let e = &self.recent[(position - start) as usize];
        assert_eq!(e.position, position, "in-memory log in order");
        Some(e)
    }

    /// Replaces state and log with `snapshot`; the shell installs it.
    pub(super) fn install(&mut self, snapshot: Snapshot) {
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

    pub(super) fn snapshot(&self) -> Snapshot {
        Snapshot::of(self.applied, self.log_hash, &self.state, &self.sessions)
    }

    pub(super) fn is_replica(&self, node: NodeId) -> bool {
        self.config.group.contains(&node)
    }

    pub(super) fn suspected(&self, node: NodeId, now_ms: u64) -> bool {
        self.failure_detection_on()
            && self
                .heard
                .get(&node)
                .is_none_or(|&t| now_ms >= t + self.config.suspect_ms)
    }

    pub(super) fn set_meta(&mut self, meta: Meta) {
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
    pub(super) fn heartbeat(&self, committed: Position, leading: bool) -> Message {
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
