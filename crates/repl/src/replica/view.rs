//! Group views as the replicas see them: what the shell can observe (the
//! epoch, its leader, the leader's members, how long ago each peer was
//! heard from) and the events of view changes, plus the small answers that
//! keep everybody's view current (a stale sender hears the newer epoch, a
//! front end hears who leads).

use super::{Core, Role};
use crate::ids::{Epoch, NodeId, Position};
use crate::wire::Message;

/// One peer, as seen from a replica.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PeerStatus {
    pub node: NodeId,
    /// A replica (else a front end).
    pub replica: bool,
    /// Milliseconds since its last authenticated datagram (or since this
    /// replica started, when never heard from).
    pub heard_ms_ago: u64,
    pub suspected: bool,
}

/// A replica's current view of the group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ViewStatus {
    pub epoch: Epoch,
    pub leader: Option<NodeId>,
    pub role: Role,
    /// The leader has finished state transfer and executes requests.
    pub serving: bool,
    /// Leader: the backups it waits for before replying.
    pub members: Vec<NodeId>,
    pub log_epoch: Epoch,
    pub amnesiac: bool,
    pub peers: Vec<PeerStatus>,
}

/// View changes, for the operator's log (info level).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ViewEvent {
    /// The leader of `epoch` is suspected (or unknown): a bully election.
    ElectionStarted { epoch: Epoch },
    /// Caught up, and higher than the leader: this replica takes over.
    BulliesBack { epoch: Epoch },
    /// No higher replica answered: this replica leads `epoch` and collects
    /// the others' logs.
    Coordinator { epoch: Epoch },
    /// State transfer is done: serving from `start`, with these backups.
    Serving {
        epoch: Epoch,
        start: Position,
        members: Vec<NodeId>,
    },
    /// This replica follows `leader` in `epoch` (and will catch up).
    Following { epoch: Epoch, leader: NodeId },
    /// A backup caught up in `epoch` (its log is the epoch's from now on).
    Synced { epoch: Epoch, durable: Position },
    /// A snapshot replaces this replica's state (the shell installs it).
    Installing { position: Position },
    /// Leader: a suspected backup no longer holds up replies.
    MemberRemoved { epoch: Epoch, backup: NodeId },
    /// Leader: a caught-up backup is waited for again.
    MemberAdded { epoch: Epoch, backup: NodeId },
    /// Leader: a backup gets a snapshot (its log is too old or may diverge).
    SnapshotSent { backup: NodeId, position: Position },
}

/// A replica of an older epoch sent us something: tell it ours (our
/// heartbeat names our leader, so it can follow), and answer an election.
pub(super) fn answer_stale(
    core: &mut Core,
    from: NodeId,
    message: &Message,
    committed: Position,
    leading: bool,
) {
    if matches!(message, Message::Election) && from < core.me() && !core.meta.amnesiac {
        core.send(from, Message::Answer);
    }
    if core.meta.leader.is_some() {
        let hb = core.heartbeat(committed, leading);
        core.send(from, hb);
    }
}

/// A front end's heartbeat: tell it who leads (when known).
pub(super) fn on_frontend_heartbeat(core: &mut Core, from: NodeId, serving: bool) {
    if let Some(leader) = core.meta.leader {
        if leader != core.me() || serving {
            core.send(from, Message::LeaderIs { leader });
        }
    }
}
