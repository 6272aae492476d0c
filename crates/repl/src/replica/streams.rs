//! The front-end streams a replica knows: the key each is bound to and
//! when it was last heard (`FrontEndPeer`), their expiry and eviction.
//!
//! Invariants: at most `max_streams` streams are known (a new one beyond
//! makes room by forgetting the longest silent); a stream silent for
//! `stream_expiry_ms` is forgotten (key binding, replay window, datagram
//! counter, held requests and reads; the shell forgets its address) and
//! loses its kept replies, in memory and in the store, but keeps its head,
//! so nothing it executed executes again. A restarted replica does the
//! same, once, for the streams it knows only from its store.

use super::{Replica, RoleState};
use crate::ids::{NodeId, StreamId};
use crate::wire::KeyId;
use dcms_core::RequestKey;

/// A front end's stream, as a replica knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct FrontEndPeer {
    /// The key it signs with; the stream is bound to it.
    pub(super) key: KeyId,
    /// When it was last heard from.
    pub(super) heard: u64,
}

impl Replica {
    /// An authentic datagram from the front end `from`, signed with `key`:
    /// its stream is heard now and bound to `key`. A new stream beyond
    /// `max_streams` makes room by forgetting the longest silent one.
    pub(super) fn hear_frontend(&mut self, now_ms: u64, from: NodeId, key: KeyId) {
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
        self.core
            .frontends
            .insert(from, FrontEndPeer { key, heard: now_ms });
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
    pub(super) fn sweep_unheard_sessions(&mut self, now_ms: u64) {
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
    pub(super) fn expire_streams(&mut self, now_ms: u64) {
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
}
