//! The leader role: takeover (state transfer), then sequencing, execution,
//! broadcast and group commit.
//!
//! - `takeover.rs`: a coordinator's state transfer: collect a majority's
//!   logs, adopt the most advanced, bring every joined backup up to it;
//!   serve only once a majority holds it durably.
//! - `sequencer.rs`: per stream, requests execute strictly in sequence
//!   order and at most once (exactly-once with the stored replies); an FT
//!   identity changes the state at most once.
//! - `commit.rs`: acknowledgements, the view's members, resends, and the
//!   commit: a reply goes out only once its entry is durable here, on every
//!   member of the view and on at least a majority of the group.
//! - `mod.rs`: the leader's state, its timers and deadlines, reads, and the
//!   invariants asserted after every input.

mod commit;
mod sequencer;
mod takeover;

pub(super) use sequencer::Origin;

use super::reads::Reads;
use super::{Core, ReplicaConfig};
use crate::ids::{Epoch, NodeId, Position, Seq, StreamId};
use crate::recover::Recovered;
use dcms_core::store::LogHash;
use dcms_core::{LogEntry, Request, StateDigest};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

#[derive(Debug)]
struct WindowEntry {
    entry: Arc<LogEntry>,
    /// The leader's digest right after applying `entry`.
    digest_after: StateDigest,
}

/// What a replica says of its log, in its `Join` (or, less, in a
/// heartbeat): the epoch whose leader's log it is a prefix of, how far it
/// is applied and durable, whether its store was wiped, and its hash. A
/// coordinator adopts the most advanced of a majority's; a backup's tells
/// the leader what to `Sync` it with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct LogSummary {
    pub log_epoch: Epoch,
    pub applied: Position,
    pub durable: Position,
    pub amnesiac: bool,
    /// The log's chained hash at `applied`, when known.
    pub log_hash: Option<LogHash>,
}

/// What the leader knows of one backup.
#[derive(Debug, Default)]
struct BackupProgress {
    durable: Position,
    applied: Position,
    /// When to resend if the acknowledgement has not advanced by then.
    resend_at: Option<u64>,
    /// Its log, as its last `Join` described it.
    log: Option<LogSummary>,
    /// It acknowledged in this epoch: its log is a prefix of ours.
    synced: bool,
    /// Waited for before replying.
    member: bool,
    /// When to resend the `Sync`.
    sync_at: Option<u64>,
    /// `Sync`s sent without an acknowledgement: each retry waits twice as
    /// long (see `takeover::retry_after`).
    sync_tries: u32,
    /// When its state digest last matched ours at the same position.
    digest_matched_ms: Option<u64>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a majority's `Join`, and until `until` for the `Join`
    /// of every replica not suspected (see [`LeaderState::try_adopt_log`]).
    Collecting {
        until: Option<u64>,
    },
    /// Fetching the most advanced log from `best`, up to `target`.
    Fetching {
        best: NodeId,
        target: Position,
        at: u64,
        /// Fetches sent so far: each retry waits twice as long (see
        /// `takeover::retry_after`), since a whole log or snapshot takes time to
        /// arrive and asking again restarts it.
        tries: u32,
    },
    /// Bringing backups up to date until a majority holds the start.
    Syncing,
    Serving,
}

#[derive(Debug)]
pub(super) struct LeaderState {
    /// Serving: entries `committed + 1 ..= applied`, in order.
    window: VecDeque<WindowEntry>,
    committed: Position,
    committed_digest: StateDigest,
    backups: BTreeMap<NodeId, BackupProgress>,
    /// Requests held back beyond each stream's next expected number.
    held: BTreeMap<StreamId, BTreeMap<Seq, (Request, Origin)>>,
    /// When to NACK each stream with a gap.
    nack_at: BTreeMap<StreamId, u64>,
    phase: Phase,
    /// Collecting: the logs of the replicas that joined (this one included).
    logs: BTreeMap<NodeId, LogSummary>,
    /// The log epoch of the adopted log.
    base_log_epoch: Epoch,
    /// The position the epoch's log starts from (the adopted log's end).
    epoch_start: Position,
    /// Reads answered without the log (`reads.rs`).
    reads: Reads,
}

impl LeaderState {
    /// The leader of the group's first epoch: serving at once.
    pub(super) fn bootstrap(config: &ReplicaConfig, recovered: &Recovered) -> LeaderState {
        let backups = config
            .group
            .iter()
            .filter(|&&n| n != config.me)
            .map(|&n| {
                (
                    n,
                    BackupProgress {
                        synced: true,
                        member: true,
                        ..BackupProgress::default()
                    },
                )
            })
            .collect();
        // Everything recovered counts as committed: a leader starting from
        // its store without meta is only correct if its backups hold the same
        // prefix (the group's first start).
        LeaderState {
            window: VecDeque::new(),
            committed: recovered.last_applied,
            committed_digest: recovered.state.digest(),
            backups,
            held: BTreeMap::new(),
            nack_at: BTreeMap::new(),
            reads: Reads::new(),
            phase: Phase::Serving,
            logs: BTreeMap::new(),
            base_log_epoch: config.epoch,
            epoch_start: recovered.last_applied,
        }
    }

    pub(super) fn serving(&self) -> bool {
        self.phase == Phase::Serving
    }

    /// The backups the leader waits for before replying (the view's members).
    pub(super) fn members(&self) -> Vec<NodeId> {
        self.backups
            .iter()
            .filter(|(_, p)| p.member)
            .map(|(&n, _)| n)
            .collect()
    }

    pub(super) fn committed(&self) -> Position {
        self.committed
    }

    /// Fires the timers due at `now_ms`: the end of collecting, a fetch's
    /// retry, `Sync` resends; then, serving, the view's suspicions, the
    /// commit, resends to stalled backups and NACKs of stream gaps.
    pub(super) fn tick(&mut self, core: &mut Core, now_ms: u64) {
        match self.phase {
            Phase::Collecting { until } => {
                if until.is_some_and(|u| u <= now_ms) {
                    self.phase = Phase::Collecting { until: None };
                    self.try_adopt_log(core, now_ms);
                }
                return;
            }
            Phase::Fetching { at, .. } => {
                if at <= now_ms {
                    self.fetch(core, now_ms);
                }
                return;
            }
            Phase::Syncing | Phase::Serving => {}
        }
        let unsynced: Vec<NodeId> = self
            .backups
            .iter()
            .filter(|(_, p)| !p.synced && p.sync_at.is_some_and(|t| t <= now_ms))
            .map(|(&n, _)| n)
            .collect();
        for n in unsynced {
            self.send_sync(core, now_ms, n);
        }
        if self.phase == Phase::Syncing {
            return;
        }
        self.update_members(core, now_ms);
        self.try_commit(core, now_ms);
        self.resend_stalled(core, now_ms);
        self.nack_gaps(core, now_ms);
    }

    /// Drops what is held for `stream` (it expired): no more NACKs to it.
    /// Its executed requests stay in the sessions (replicated state).
    pub(super) fn forget_stream(&mut self, stream: StreamId) {
        self.held.remove(&stream);
        self.nack_at.remove(&stream);
        self.reads.forget_stream(stream);
    }

    /// A read-only request: executed now, answered once confirmed and
    /// committed (see `reads.rs`); never logged.
    pub(super) fn on_read(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        stream: StreamId,
        id: u64,
        request: Request,
    ) {
        if self.phase != Phase::Serving {
            core.stats.not_serving += 1;
            return;
        }
        if !request.is_read_only() {
            core.stats.unexpected += 1;
            return;
        }
        if matches!(
            request,
            Request::ListRecords { .. } | Request::ListRecordsPage { .. }
        ) {
            core.state.keep_name_index(true);
        }
        let (reply, _audit) = core.state.execute(&request, now_ms);
        let reply = dcms_core::ops::bound_list(reply, core.config.max_list_bytes);
        if self.reads.admit(stream, id, reply, core.applied) {
            core.stats.reads += 1;
        } else {
            core.stats.backpressure_drops += 1;
        }
    }

    /// A replica confirmed it follows this leader up to `round`.
    pub(super) fn on_read_index_ack(&mut self, from: NodeId, round: u64) {
        self.reads.on_ack(from, round);
    }

    /// Sends the pending read round and answers the reads now confirmed
    /// and committed (after every input).
    pub(super) fn flush_reads(&mut self, core: &mut Core) {
        if self.phase == Phase::Serving {
            self.reads.flush(core, self.committed);
        }
    }

    pub(super) fn next_deadline(&self, core: &Core) -> Option<u64> {
        let fetch = match self.phase {
            Phase::Fetching { at, .. } => Some(at),
            Phase::Collecting { until } => until,
            _ => None,
        };
        let active = matches!(self.phase, Phase::Syncing | Phase::Serving);
        let resend = self
            .backups
            .values()
            .filter(|p| p.synced && self.phase == Phase::Serving)
            .filter_map(|p| p.resend_at);
        let sync = self
            .backups
            .values()
            .filter(|p| !p.synced && active)
            .filter_map(|p| p.sync_at);
        // A member's suspicion, or an outsider's return, changes the view.
        let view = self
            .backups
            .iter()
            .filter(|(_, p)| {
                p.member && self.phase == Phase::Serving && core.failure_detection_on()
            })
            .filter_map(|(n, _)| core.heard.get(n).map(|&t| t + core.config.suspect_ms));
        let nack = self.nack_at.values().copied();
        resend
            .chain(nack)
            .chain(sync)
            .chain(view)
            .chain(fetch)
            .min()
    }

    pub(super) fn check(&self, core: &Core) {
        self.reads.check(core.applied);
        assert!(
            self.phase == Phase::Serving || self.reads.len() == 0,
            "reads queued before serving"
        );
        if self.phase != Phase::Serving {
            assert!(self.window.is_empty(), "a window before serving");
            assert!(self.held.is_empty(), "requests held before serving");
            assert!(self.committed <= core.applied, "committed beyond applied");
            return;
        }
        assert_eq!(
            self.committed + self.window.len() as u64,
            core.applied,
            "the window holds exactly the uncommitted entries"
        );
        assert!(
            self.committed <= core.durable,
            "committed beyond leader's durable"
        );
        for p in self.backups.values().filter(|p| p.member) {
            assert!(p.synced, "an unsynced member");
        }
        for (stream, held) in &self.held {
            let head = core.sessions.head(*stream);
            assert!(!held.is_empty(), "empty hold-back kept");
            assert!(held.keys().all(|&s| s > head), "an executed request held");
            assert!(
                !held.contains_key(&(head + 1)) || self.window.len() >= core.config.max_window,
                "the next expected request held although the window has room"
            );
            assert!(
                self.nack_at.contains_key(stream),
                "a gap without a NACK timer"
            );
        }
    }
}
