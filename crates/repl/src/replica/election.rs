//! The bully election, from the side of a replica that suspects its leader.
//!
//! It sends `Election` to every higher-ID replica and waits `election_ms`.
//! Without an `Answer` it becomes coordinator (`leader/takeover.rs` takes over:
//! a new epoch higher than any seen, then state transfer). With one, it waits
//! three times as long for the winner's `Coordinator` (or any sign of a
//! leader of a newer epoch), and starts over if none comes. A replica that
//! gets an `Election` from a lower one answers, and runs its own election
//! when it suspects the leader too. Epochs, not IDs, keep this safe: each
//! replica joins one leader per epoch, and a leader needs a majority.

use super::Core;
use crate::ids::{Epoch, NodeId};
use crate::wire::Message;

/// Where an election stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Election {
    /// `Election` sent; coordinator at `until` unless answered.
    Waiting { until: u64 },
    /// A higher replica answered; start over at `until` unless a leader
    /// shows up.
    Answered { until: u64 },
}

impl Election {
    pub(super) fn deadline(&self) -> u64 {
        match *self {
            Election::Waiting { until } | Election::Answered { until } => until,
        }
    }
}

/// Answers a lower replica's election (unless this replica cannot lead:
/// its store was wiped and it has not caught up).
pub(super) fn answer(core: &mut Core, to: NodeId) {
    if to < core.me() && !core.meta.amnesiac {
        core.send(to, Message::Answer);
    }
}

/// Starts an election: `Election` to every higher replica. Returns false
/// when there is none (this replica is the coordinator at once).
pub(super) fn start(core: &mut Core, now_ms: u64) -> Option<Election> {
    core.stats.elections += 1;
    let epoch = core.epoch();
    core.view_events
        .push(super::ViewEvent::ElectionStarted { epoch });
    tracing::info!(me = %core.me(), epoch, "leader suspected: election");
    let higher: Vec<NodeId> = core
        .config
        .group
        .iter()
        .copied()
        .filter(|&n| n > core.me())
        .collect();
    if higher.is_empty() {
        return None;
    }
    for n in higher {
        core.send(n, Message::Election);
    }
    Some(Election::Waiting {
        until: now_ms + core.config.election_ms,
    })
}

/// The epoch a new coordinator takes: above every epoch seen, and one only
/// this replica can take (epoch mod group size = its rank), so no two
/// coordinators ever share an epoch.
pub(super) fn next_epoch(core: &Core) -> Epoch {
    let mut group = core.config.group.clone();
    group.sort();
    let n = group.len() as u64;
    let rank = group.iter().position(|&g| g == core.me()).expect("member") as u64;
    let mut e = core.max_seen.max(core.epoch()) + 1;
    while e % n != rank {
        e += 1;
    }
    e
}
