//! Fencing: who may send what, and in which epoch.
//!
//! Key rules (`Replica::check_key`): the replicas' key signs only replicas'
//! datagrams; a front end's key only a non-replica sender's requests, reads
//! and heartbeats, and a stream stays bound to the key it was first heard
//! with. A datagram that breaks them changes nothing.
//!
//! Epoch rules (`Replica::replica_message`): a message of an older epoch is
//! refused (its sender hears ours); a newer epoch is followed only when the
//! message shows who leads it (`Coordinator`, `Append`, `Sync`, a heartbeat
//! naming its leader), and the promise to follow it is durable ([`Meta`])
//! before anything relies on it; a replica whose store was wiped learns the
//! epoch from a majority before it follows anyone. So a deposed leader,
//! whose epoch is older than a majority's promise, can commit nothing.

use super::backup::BackupState;
use super::{election, view, Meta, Replica, Role, RoleState, ViewEvent};
use crate::ids::{Epoch, NodeId};
use crate::wire::{Header, Message, WireError, REPLICA_KEY};

/// May a front end (a datagram signed with a front end's key) send
/// `message`? Requests and heartbeats (and fragments of them), nothing else.
pub(super) fn frontend_may_send(message: &Message) -> bool {
    matches!(
        message,
        Message::Request { .. }
            | Message::Read { .. }
            | Message::Heartbeat { .. }
            | Message::Fragment(_)
    )
}

impl Replica {
    /// The key rules: the replicas' key signs only replicas' datagrams; a
    /// front end's key only a non-replica sender's requests and heartbeats,
    /// and a stream stays bound to the key it was first heard with.
    pub(super) fn check_key(&self, header: &Header, messages: &[Message]) -> Result<(), WireError> {
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
    pub(super) fn replica_message(
        &mut self,
        now_ms: u64,
        from: NodeId,
        epoch: Epoch,
        message: Message,
    ) {
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
            view::answer_stale(&mut self.core, from, &message, committed, leading);
            return;
        }
        if epoch > mine {
            let claim = match &message {
                Message::Coordinator | Message::Append { .. } | Message::Sync { .. } => Some(from),
                Message::Heartbeat { leader, .. } => *leader,
                _ => None,
            };
            match claim {
                Some(_) if !self.core.failure_detection_on() => {
                    // Without failure detection the group never changes.
                    self.core.stats.future_epoch += 1;
                    return;
                }
                Some(leader) => self.follow(now_ms, epoch, leader),
                None => {
                    self.core.stats.future_epoch += 1;
                    if matches!(message, Message::Election) {
                        election::answer(&mut self.core, from);
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
}
