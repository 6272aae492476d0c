//! The leader role: state transfer, then sequencing, execution, broadcast
//! and group commit.
//!
//! A coordinator (see `election.rs`) takes a new epoch and collects the
//! logs of a majority (`Join`: log epoch and positions; replicas whose store
//! was wiped do not count). It adopts the most advanced log, the highest
//! `(log_epoch, applied)`, fetching it from its holder when that is another
//! replica (`Fetch`, answered by a `Sync` with the missing suffix, in parts
//! of `max_transfer` entries, or a snapshot when the logs may differ: the
//! log hashes tell). A coordinator waits up to `election_ms` for the `Join`
//! of every replica it does not suspect. That log's end is the epoch's
//! start.
//! Every joined backup then gets a `Sync`: keep your log up to where it is a
//! prefix of ours and take these entries, or install this snapshot. Once a
//! majority holds the start durably, everything up to it is committed and
//! the leader serves.
//!
//! Per stream, requests execute strictly in sequence order. A request beyond
//! the next expected number is held back (up to `max_holdback`) and, after
//! `nack_delay_ms`, the front end gets a NACK naming every missing number,
//! repeated every `nack_retry_ms` while the gap stays open. An executed
//! number is never executed again: the stored reply is resent once the entry
//! is committed (before that, the commit itself will answer).
//!
//! Execution applies the effect in memory at once (later requests see it),
//! hands the entry to persistence and sends it to every synced backup. The
//! entry stays in the window until it is durable here and on every member
//! of the view, and on at least a majority of the group; then it is
//! committed and its reply goes to the front end, exactly once per commit.
//! A member not heard from for `suspect_ms` leaves the view (the leader stops
//! waiting for it); a synced backup that holds everything committed joins
//! it again. A backup whose acknowledgement does not advance for
//! `retransmit_ms` gets the entries after its last acknowledged one again
//! (from the in-memory log, or a snapshot when they are gone); a backup's
//! NACK gets the named positions at once.

use super::election;
use super::reads::Reads;
use super::{Core, Meta, ReplicaConfig, ReplicaEvent, ViewEvent};
use crate::ids::{Epoch, NodeId, Position, Seq, StreamId};
use crate::recover::Recovered;
use crate::session::Lookup;
use crate::snapshot::Snapshot;
use crate::wire::Message;
use dcms_core::store::LogHash;
use dcms_core::{DomainError, FtRequest, LogEntry, Request, RequestKey, StateDigest};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;

#[derive(Debug)]
struct WindowEntry {
    entry: Arc<LogEntry>,
    /// The leader's digest right after applying `entry`.
    digest_after: StateDigest,
}

/// A replica's log, as its `Join` describes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Report {
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
    /// Its last `Join`.
    report: Option<Report>,
    /// It acknowledged in this epoch: its log is a prefix of ours.
    synced: bool,
    /// Waited for before replying.
    member: bool,
    /// When to resend the `Sync`.
    sync_at: Option<u64>,
    /// `Sync`s sent without an acknowledgement: each retry waits twice as
    /// long (see [`retry_after`]).
    sync_tries: u32,
    /// When its state digest last matched ours at the same position.
    digest_matched_ms: Option<u64>,
}

/// Why an FT identity may not be retained, if it may not: an expiration
/// more than `MAX_FT_EXPIRATION_MS` ahead, or an empty or oversized client
/// ID.
fn ft_out_of_bounds(ft: &FtRequest, now_ms: u64) -> Option<String> {
    use dcms_core::store::{MAX_FT_CLIENT_ID_BYTES, MAX_FT_EXPIRATION_MS};
    if ft.expires_ms > now_ms.saturating_add(MAX_FT_EXPIRATION_MS) {
        return Some(format!(
            "expiration_time is more than {} s ahead",
            MAX_FT_EXPIRATION_MS / 1000
        ));
    }
    if ft.client_id.is_empty() || ft.client_id.len() > MAX_FT_CLIENT_ID_BYTES {
        return Some(format!(
            "client_id of {} bytes (1 to {MAX_FT_CLIENT_ID_BYTES} expected)",
            ft.client_id.len()
        ));
    }
    None
}

/// How long to wait before asking again after `tries` unanswered bulk
/// transfers (a fetched log, a snapshot): `base` doubled per try, at most
/// 256 times. A snapshot of tens of thousands of records is megabytes of
/// datagrams; resending it every `base` milliseconds would restart it
/// before it ever arrived.
fn retry_after(base: u64, tries: u32) -> u64 {
    base.saturating_mul(1 << tries.min(8))
}

/// Records a snapshot moves per millisecond, end to end, at the least:
/// built, encoded (~160 bytes a record), paced through the link, decoded,
/// restored and installed (measured on loopback: ~100 per ms).
const SNAPSHOT_RECORDS_PER_MS: u64 = 64;

/// The first wait before resending a snapshot of `records` records: the
/// time it takes to arrive and install, not the round trip of a small
/// message (a 13,000-record snapshot resent after 10 ms went out five times
/// in 160 ms; at 100,000 records each copy blocks both event loops).
fn snapshot_retry_base(retransmit_ms: u64, records: usize) -> u64 {
    retransmit_ms.max(records as u64 / SNAPSHOT_RECORDS_PER_MS)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for a majority's `Join`, and until `until` for the `Join`
    /// of every replica not suspected (see [`LeaderState::maybe_choose`]).
    Collecting {
        until: Option<u64>,
    },
    /// Fetching the most advanced log from `best`, up to `target`.
    Fetching {
        best: NodeId,
        target: Position,
        at: u64,
        /// Fetches sent so far: each retry waits twice as long (see
        /// [`retry_after`]), since a whole log or snapshot takes time to
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
    held: BTreeMap<StreamId, BTreeMap<Seq, (Request, Option<FtRequest>)>>,
    /// When to NACK each stream with a gap.
    nack_at: BTreeMap<StreamId, u64>,
    phase: Phase,
    /// Collecting: the logs of the replicas that joined (this one included).
    reports: BTreeMap<NodeId, Report>,
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
            reports: BTreeMap::new(),
            base_log_epoch: config.epoch,
            epoch_start: recovered.last_applied,
        }
    }

    /// A replica that won an election: a new epoch, then state transfer.
    pub(super) fn coordinator(core: &mut Core, now_ms: u64, committed: Position) -> LeaderState {
        assert!(!core.meta.amnesiac, "an amnesiac never leads");
        let epoch = election::next_epoch(core);
        core.set_meta(Meta {
            epoch,
            leader: Some(core.me()),
            ..core.meta
        });
        core.max_seen = core.max_seen.max(epoch);
        core.stats.became_leader += 1;
        core.view_events.push(ViewEvent::Coordinator { epoch });
        tracing::info!(me = %core.me(), epoch, "coordinator of a new epoch");
        let others: Vec<NodeId> = core
            .config
            .group
            .iter()
            .copied()
            .filter(|&n| n != core.me())
            .collect();
        for &n in &others {
            core.send(n, Message::Coordinator);
        }
        let frontends: Vec<NodeId> = core.frontends.keys().copied().collect();
        for f in frontends {
            core.send(f, Message::Coordinator);
        }
        let mut reports = BTreeMap::new();
        reports.insert(
            core.me(),
            Report {
                log_epoch: core.meta.log_epoch,
                applied: core.applied,
                durable: core.durable,
                amnesiac: false,
                log_hash: core.log_hash,
            },
        );
        let mut l = LeaderState {
            window: VecDeque::new(),
            committed: committed.min(core.applied),
            committed_digest: StateDigest::default(),
            backups: others
                .into_iter()
                .map(|n| (n, BackupProgress::default()))
                .collect(),
            held: BTreeMap::new(),
            nack_at: BTreeMap::new(),
            reads: Reads::new(),
            phase: Phase::Collecting {
                until: Some(now_ms + core.config.election_ms),
            },
            reports,
            base_log_epoch: 0,
            epoch_start: 0,
        };
        l.maybe_choose(core, now_ms);
        l
    }

    pub(super) fn serving(&self) -> bool {
        self.phase == Phase::Serving
    }

    pub(super) fn members(&self, _core: &Core) -> Vec<NodeId> {
        self.backups
            .iter()
            .filter(|(_, p)| p.member)
            .map(|(&n, _)| n)
            .collect()
    }

    pub(super) fn on_join(&mut self, core: &mut Core, now_ms: u64, from: NodeId, report: Report) {
        let Some(p) = self.backups.get_mut(&from) else {
            core.stats.unexpected += 1;
            return;
        };
        if matches!(self.phase, Phase::Syncing | Phase::Serving)
            && !p.synced
            && p.sync_at.is_some()
            && p.report == Some(report)
        {
            // The same log again while our `Sync` to it is under way: a
            // backup repeats its `Join` every `retransmit_ms` until synced,
            // and answering each with a new `Sync` would restart a snapshot
            // of megabytes every few milliseconds. The `Sync` is resent when
            // its backoff expires (see `tick`).
            core.stats.duplicate_joins += 1;
            return;
        }
        if p.member {
            p.member = false;
            core.stats.members_removed += 1;
            core.view_events.push(ViewEvent::MemberRemoved {
                epoch: core.epoch(),
                backup: from,
            });
        }
        *p = BackupProgress {
            report: Some(report),
            sync_at: Some(now_ms),
            ..BackupProgress::default()
        };
        match self.phase {
            Phase::Collecting { .. } => {
                self.reports.insert(from, report);
                self.maybe_choose(core, now_ms);
            }
            Phase::Fetching { best, .. } => {
                let changed = self.reports.get(&from) != Some(&report);
                self.reports.insert(from, report);
                if from == best && changed {
                    // The most advanced replica restarted (or lost its
                    // store): choose again.
                    self.phase = Phase::Collecting { until: None };
                    self.maybe_choose(core, now_ms);
                }
            }
            Phase::Syncing | Phase::Serving => self.send_sync(core, now_ms, from),
        }
    }

    /// A backup sent a message of an older epoch: it restarted without its
    /// store (or it is an old datagram). Count nothing it held until it
    /// acknowledges again.
    pub(super) fn on_stale_backup(&mut self, core: &mut Core, from: NodeId) {
        let Some(p) = self.backups.get_mut(&from) else {
            return;
        };
        if p.member {
            core.stats.members_removed += 1;
            core.view_events.push(ViewEvent::MemberRemoved {
                epoch: core.epoch(),
                backup: from,
            });
        }
        let report = p.report;
        *p = BackupProgress {
            report,
            ..BackupProgress::default()
        };
    }

    /// A backup's heartbeat in this epoch: one we lost track of (after
    /// `on_stale_backup`) is brought up to date from what it reports.
    pub(super) fn on_backup_heartbeat(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        from: NodeId,
        report: Report,
    ) {
        if !matches!(self.phase, Phase::Syncing | Phase::Serving) {
            return;
        }
        let Some(p) = self.backups.get_mut(&from) else {
            return;
        };
        if !p.synced && p.sync_at.is_none() {
            p.report = p.report.or(Some(report));
            self.send_sync(core, now_ms, from);
        } else if self.phase == Phase::Syncing
            && p.synced
            && report.log_epoch == core.epoch()
            && report.durable > p.durable
            && report.durable <= core.applied
        {
            // A synced backup's log is a prefix of this epoch's, and what it
            // holds durably is what its acknowledgement said. Nothing is
            // resent while syncing, so a lost last acknowledgement would
            // leave this leader waiting forever (found by the simulator,
            // seed 54407): its heartbeat carries the same facts.
            p.durable = report.durable;
            self.try_serve(core, now_ms);
        }
    }

    /// With a majority's logs: adopt the most advanced. A replica that is
    /// alive (not suspected) gets until `Collecting::until` to report too:
    /// when a live leader is deposed (a higher replica bullies back), its
    /// log holds entries no one else has yet, and adopting a log without
    /// them would leave it diverged (a snapshot instead of a suffix).
    fn maybe_choose(&mut self, core: &mut Core, now_ms: u64) {
        let Phase::Collecting { until } = self.phase else {
            return;
        };
        let counted: Vec<(NodeId, Report)> = self
            .reports
            .iter()
            .filter(|(_, r)| !r.amnesiac)
            .map(|(&n, &r)| (n, r))
            .collect();
        if counted.len() < core.config.majority() {
            return;
        }
        let missing_live = core
            .config
            .group
            .iter()
            .any(|&n| !self.reports.contains_key(&n) && !core.suspected(n, now_ms));
        if missing_live && until.is_some_and(|u| now_ms < u) {
            return;
        }
        let me = core.me();
        let (best, b) = counted
            .iter()
            .copied()
            .max_by_key(|(n, r)| (r.log_epoch, r.applied, *n == me))
            .expect("a majority is not empty");
        self.base_log_epoch = b.log_epoch;
        let mine = self.reports[&me];
        // The same hash at the same position: the same log, whatever its
        // epoch (a former leader restarted at the start of the next epoch).
        let same_log =
            mine.applied == b.applied && mine.log_hash.is_some() && mine.log_hash == b.log_hash;
        if best == me || (mine.log_epoch, mine.applied) == (b.log_epoch, b.applied) || same_log {
            self.start_syncing(core, now_ms);
            return;
        }
        self.phase = Phase::Fetching {
            best,
            target: b.applied,
            at: now_ms,
            tries: 0,
        };
        self.fetch(core, now_ms);
    }

    fn fetch(&mut self, core: &mut Core, now_ms: u64) {
        let Phase::Fetching { best, tries, .. } = self.phase else {
            return;
        };
        let b = self.reports[&best];
        let prefix = core.meta.log_epoch == b.log_epoch && core.applied <= b.applied;
        core.send(
            best,
            Message::Fetch {
                after: core.applied,
                snapshot: !prefix,
                log_hash: core.log_hash,
            },
        );
        self.phase = Phase::Fetching {
            best,
            target: b.applied,
            at: now_ms
                + if prefix {
                    retry_after(core.config.retransmit_ms, tries)
                } else {
                    // `b.applied` bounds the records of the snapshot asked for.
                    retry_after(
                        snapshot_retry_base(core.config.retransmit_ms, b.applied as usize),
                        tries,
                    )
                },
            tries: tries + 1,
        };
    }

    /// The most advanced replica's log arrived.
    pub(super) fn on_fetched(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        from: NodeId,
        trust: Position,
        snapshot: Option<Box<Snapshot>>,
        entries: Vec<LogEntry>,
    ) {
        let Phase::Fetching { best, target, .. } = self.phase else {
            core.stats.unexpected += 1;
            return;
        };
        if from != best || core.installing.is_some() {
            core.stats.unexpected += 1;
            return;
        }
        if let Some(snapshot) = snapshot {
            if snapshot.position < target {
                core.stats.unexpected += 1;
                return;
            }
            core.install(*snapshot);
            self.committed = self.committed.min(core.applied);
        } else if trust != core.applied {
            core.stats.unexpected += 1;
            return;
        }
        let before = core.applied;
        for e in entries {
            if e.position == core.applied + 1 {
                core.apply(Arc::new(e));
            }
        }
        if core.applied >= target {
            self.start_syncing(core, now_ms);
        } else if core.applied > before {
            // One part of a long suffix: ask for the next at once.
            self.phase = Phase::Fetching {
                best,
                target,
                at: now_ms,
                tries: 0,
            };
            self.fetch(core, now_ms);
        }
    }

    fn start_syncing(&mut self, core: &mut Core, now_ms: u64) {
        self.phase = Phase::Syncing;
        self.epoch_start = core.applied;
        self.reports.clear();
        tracing::info!(me = %core.me(), epoch = core.epoch(), start = self.epoch_start, "state transfer");
        let joined: Vec<NodeId> = self
            .backups
            .iter()
            .filter(|(_, p)| p.report.is_some())
            .map(|(&n, _)| n)
            .collect();
        for n in joined {
            self.send_sync(core, now_ms, n);
        }
        self.raise_log_epoch(core);
        self.try_serve(core, now_ms);
    }

    /// Brings `to` up to date: a suffix when its log is a prefix of ours,
    /// else a snapshot.
    fn send_sync(&mut self, core: &mut Core, now_ms: u64, to: NodeId) {
        let p = self.backups.get_mut(&to).expect("known backup");
        let Some(r) = p.report else { return };
        // Its log is a prefix of ours when it joined in this epoch, or its
        // log is of the adopted epoch and ends before this epoch's start, or
        // it holds our log's hash at its last position.
        let prefix = !r.amnesiac
            && (r.log_epoch == core.epoch()
                || (r.log_epoch == self.base_log_epoch && r.applied <= self.epoch_start)
                || core.log_matches(r.applied, r.log_hash))
            && r.applied <= core.applied
            && r.applied + 1 >= core.recent_start();
        let message = if prefix {
            let last = core
                .applied
                .min(r.applied + core.config.resend_batch as u64);
            Message::Sync {
                trust: r.applied,
                snapshot: None,
                entries: (r.applied + 1..=last)
                    .map(|q| LogEntry::clone(core.entry(q).expect("in memory")))
                    .collect(),
                epoch_start: self.epoch_start,
            }
        } else {
            core.stats.snapshots_sent += 1;
            core.view_events.push(ViewEvent::SnapshotSent {
                backup: to,
                position: core.applied,
            });
            Message::Sync {
                trust: core.applied,
                snapshot: Some(Box::new(core.snapshot())),
                entries: Vec::new(),
                epoch_start: self.epoch_start,
            }
        };
        let bulk = matches!(
            message,
            Message::Sync {
                snapshot: Some(_),
                ..
            }
        );
        core.send(to, message);
        if bulk {
            // A snapshot takes long to arrive: resending it soon restarts it.
            let base = snapshot_retry_base(core.config.retransmit_ms, core.state.len());
            p.sync_at = Some(now_ms + retry_after(base, p.sync_tries));
            p.sync_tries += 1;
        } else {
            p.sync_at = Some(now_ms + core.config.retransmit_ms);
            p.sync_tries = 0;
        }
    }

    /// Serving starts once a majority holds the epoch's start durably.
    fn try_serve(&mut self, core: &mut Core, now_ms: u64) {
        if self.phase != Phase::Syncing {
            return;
        }
        let start = self.epoch_start;
        assert_eq!(core.applied, start, "nothing executes before serving");
        let me = usize::from(core.installing.is_none() && core.durable >= start);
        let holding: Vec<NodeId> = self
            .backups
            .iter()
            .filter(|(_, p)| p.synced && p.durable >= start)
            .map(|(&n, _)| n)
            .collect();
        if me + holding.len() < core.config.majority() || me == 0 {
            return;
        }
        assert!(self.committed <= start, "committed beyond the adopted log");
        self.committed = start;
        self.committed_digest = core.state.digest();
        self.window.clear();
        self.phase = Phase::Serving;
        for n in &holding {
            let p = self.backups.get_mut(n).expect("known");
            p.member = true;
            p.resend_at = (p.durable < core.applied).then_some(now_ms);
        }
        core.view_events.push(ViewEvent::Serving {
            epoch: core.epoch(),
            start,
            members: holding.clone(),
        });
        tracing::info!(me = %core.me(), epoch = core.epoch(), start, ?holding, "serving");
        let frontends: Vec<NodeId> = core.frontends.keys().copied().collect();
        let me = core.me();
        for f in frontends {
            core.send(f, Message::LeaderIs { leader: me });
        }
    }

    fn raise_log_epoch(&mut self, core: &mut Core) {
        if matches!(self.phase, Phase::Syncing | Phase::Serving)
            && core.installing.is_none()
            && core.durable >= self.epoch_start
            && core.meta.log_epoch < core.epoch()
        {
            let mut meta = core.meta;
            meta.log_epoch = core.epoch();
            core.set_meta(meta);
        }
    }

    pub(super) fn committed(&self) -> Position {
        self.committed
    }

    pub(super) fn on_request(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        stream: StreamId,
        seq: Seq,
        request: Request,
        ft: Option<FtRequest>,
    ) {
        if seq == 0 {
            core.stats.unexpected += 1;
            return;
        }
        if self.phase != Phase::Serving {
            // State transfer first; the front end retransmits.
            core.stats.not_serving += 1;
            return;
        }
        let head = core.sessions.head(stream);
        if seq <= head {
            core.stats.duplicate_requests += 1;
            match core.sessions.lookup(RequestKey { stream, seq }) {
                Lookup::Executed { position, reply } if position <= self.committed => {
                    let reply = reply.clone();
                    core.stats.replies_resent += 1;
                    core.send(NodeId::of_stream(stream), Message::Reply { seq, reply });
                }
                Lookup::Executed { .. } => {} // its commit will answer
                Lookup::Forgotten => {
                    // Executed, reply gone: say so, or the front end would
                    // retransmit it forever.
                    core.stats.forgotten_duplicates += 1;
                    core.send(NodeId::of_stream(stream), Message::Forgotten { seq });
                }
                Lookup::NotExecuted => unreachable!("seq {seq} <= head {head}"),
            }
            return;
        }
        let reachable = 1 + self.backups.values().filter(|p| p.member).count();
        if reachable < core.config.majority() {
            // Executing now could only be undone: refuse, and say why.
            core.stats.unavailable += 1;
            // Final when the request has expired (by more than the skew
            // margin) and its identity never executed: this serving
            // leader's log holds everything that may have committed, and
            // no leader executes an expired request (see `execute`).
            let expired = ft.as_ref().is_some_and(|ft| {
                now_ms >= ft.expires_ms.saturating_add(core.config.clock_skew_ms)
                    && core.sessions.retained(ft).is_none()
            });
            let reason = if expired {
                format!(
                    "not executed: the request expired while the leader reached {reachable} of {} replicas, fewer than a majority",
                    core.config.group.len()
                )
            } else {
                format!(
                    "the leader reaches {reachable} of {} replicas, fewer than a majority",
                    core.config.group.len()
                )
            };
            core.send(
                NodeId::of_stream(stream),
                Message::Unavailable {
                    seq,
                    reason,
                    expired,
                },
            );
            return;
        }
        if seq > head + 1 {
            if seq > head + core.config.max_holdback {
                core.stats.beyond_holdback += 1;
                return;
            }
            let held = self.held.entry(stream).or_default();
            if held.insert(seq, (request, ft)).is_none() {
                core.stats.held_back += 1;
            }
            self.nack_at
                .entry(stream)
                .or_insert(now_ms + core.config.nack_delay_ms);
            return;
        }
        if self.window.len() >= core.config.max_window {
            core.stats.backpressure_drops += 1;
            return;
        }
        self.execute(core, now_ms, RequestKey { stream, seq }, &request, ft);
        self.drain_held(core, now_ms, stream);
    }

    /// Executes the held requests that now follow the head.
    fn drain_held(&mut self, core: &mut Core, now_ms: u64, stream: StreamId) {
        while self.window.len() < core.config.max_window {
            let next = core.sessions.head(stream) + 1;
            let Some((request, ft)) = self.held.get_mut(&stream).and_then(|h| h.remove(&next))
            else {
                break;
            };
            self.execute(core, now_ms, RequestKey { stream, seq: next }, &request, ft);
        }
        if self.held.get(&stream).is_some_and(|h| h.is_empty()) {
            self.held.remove(&stream);
            self.nack_at.remove(&stream);
        }
    }

    /// Executes `request` as the stream's next number, into the log. With
    /// an FT identity that already executed (in any stream), the entry
    /// changes nothing and carries the first execution's reply; with one
    /// whose expiration has passed, it changes nothing and says so.
    fn execute(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        key: RequestKey,
        request: &Request,
        ft: Option<FtRequest>,
    ) {
        assert_eq!(self.phase, Phase::Serving, "only a serving leader executes");
        assert_eq!(key.seq, core.sessions.head(key.stream) + 1);
        if matches!(
            request,
            Request::ListRecords { .. } | Request::ListRecordsPage { .. }
        ) {
            // A leader that was a backup builds the index at its first list.
            core.state.keep_name_index(true);
        }
        let (mut reply, mut effect) = core.state.execute(request, now_ms);
        let mut ft = ft;
        if let Some(why) = ft.as_ref().and_then(|ft| ft_out_of_bounds(ft, now_ms)) {
            // The front end checks this too; a leader retains nothing a
            // front end could not ask for.
            core.stats.ft_refused += 1;
            reply = Err(DomainError::InvalidRequest {
                field: "FT_REQUEST".into(),
                reason: why,
            });
            effect.change = None;
            effect.audit.outcome = dcms_core::state::outcome_text(&reply);
            ft = None;
        }
        if let Some(ft) = &ft {
            if let Some(first) = core.sessions.retained(ft) {
                core.stats.ft_retries += 1;
                reply = first.reply.clone();
                effect.change = None;
                effect.audit.outcome = format!(
                    "retry of {:?}/{} (position {}): {}",
                    ft.client_id,
                    ft.retention_id,
                    first.position,
                    dcms_core::state::outcome_text(&reply)
                );
            } else if now_ms >= ft.expires_ms {
                core.stats.ft_expired += 1;
                reply = Err(DomainError::Exhausted {
                    reason: format!(
                        "not executed: the request expired {} ms before it could run",
                        now_ms - ft.expires_ms
                    ),
                });
                effect.change = None;
                effect.audit.outcome = dcms_core::state::outcome_text(&reply);
            }
        }
        let entry = Arc::new(LogEntry {
            position: core.applied + 1,
            key,
            effect,
            reply,
            ft,
        });
        core.apply(Arc::clone(&entry));
        core.stats.executed += 1;
        let leader_last = entry.position;
        let epoch = core.epoch();
        for (&backup, progress) in &mut self.backups {
            if !progress.synced {
                continue;
            }
            core.outbox.push((
                backup,
                epoch,
                Message::Append {
                    entry: Arc::clone(&entry),
                    leader_last,
                    committed: self.committed,
                },
            ));
            progress
                .resend_at
                .get_or_insert(now_ms + core.config.retransmit_ms);
        }
        self.window.push_back(WindowEntry {
            entry,
            digest_after: core.state.digest(),
        });
    }

    /// Per backup, milliseconds since its digest last matched ours (`None`:
    /// not since it was last synced), for monitoring.
    pub(super) fn digest_ages(&self, now_ms: u64) -> Vec<(NodeId, Option<u64>)> {
        self.backups
            .iter()
            .map(|(&n, p)| (n, p.digest_matched_ms.map(|t| now_ms.saturating_sub(t))))
            .collect()
    }

    pub(super) fn on_ack(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        from: NodeId,
        durable: Position,
        applied: Position,
        digest: StateDigest,
    ) {
        if matches!(
            self.phase,
            Phase::Collecting { .. } | Phase::Fetching { .. }
        ) {
            core.stats.unexpected += 1;
            return;
        }
        let Some(progress) = self.backups.get_mut(&from) else {
            core.stats.unexpected += 1;
            return;
        };
        if durable > applied || applied > core.applied {
            // A backup cannot hold what this leader never sent.
            tracing::warn!(%from, durable, applied, last = core.applied, "impossible ack");
            core.stats.unexpected += 1;
            return;
        }
        progress.synced = true;
        progress.sync_at = None;
        progress.sync_tries = 0;
        if durable > progress.durable {
            progress.durable = durable;
            progress.resend_at =
                (durable < core.applied).then_some(now_ms + core.config.retransmit_ms);
        }
        // The newest report wins, even when lower: a restarted backup lost
        // what it had applied but not persisted, and resends must start
        // after what it holds now. (A reordered old ack only costs resends.)
        progress.applied = applied.max(progress.durable);
        if progress.durable < core.applied && progress.resend_at.is_none() {
            progress.resend_at = Some(now_ms + core.config.retransmit_ms);
        }
        if self.phase == Phase::Syncing {
            self.try_serve(core, now_ms);
            return;
        }
        let ours = if applied == self.committed {
            Some(self.committed_digest)
        } else if applied > self.committed {
            Some(self.window[(applied - self.committed - 1) as usize].digest_after)
        } else {
            None // older than anything we still compare against
        };
        if ours == Some(digest) {
            if let Some(p) = self.backups.get_mut(&from) {
                p.digest_matched_ms = Some(now_ms);
            }
        }
        if let Some(ours) = ours {
            if ours != digest {
                core.stats.divergences += 1;
                tracing::error!(
                    backup = %from,
                    position = applied,
                    leader = %ours,
                    backup_digest = %digest,
                    "REPLICA DIVERGENCE: backup state differs from the leader's"
                );
                core.events.push(ReplicaEvent::Divergence {
                    backup: from,
                    position: applied,
                    leader: ours,
                    backup_digest: digest,
                });
            }
        }
        self.update_members(core, now_ms);
        self.try_commit(core, now_ms);
    }

    pub(super) fn on_log_nack(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        from: NodeId,
        missing: &[Position],
    ) {
        if !matches!(self.phase, Phase::Syncing | Phase::Serving) {
            core.stats.unexpected += 1;
            return;
        }
        let Some(p) = self.backups.get_mut(&from) else {
            core.stats.unexpected += 1;
            return;
        };
        // Only a backup synced in this epoch takes (and NACKs) appends.
        p.synced = true;
        p.sync_at = None;
        p.sync_tries = 0;
        core.stats.nacks_received += 1;
        if missing.iter().any(|&q| q < core.recent_start()) {
            // Gone from memory: a snapshot instead.
            self.snapshot_to(core, now_ms, from);
            return;
        }
        for &position in missing.iter().take(core.config.max_nack_numbers) {
            if core.entry(position).is_some() {
                self.resend(core, from, position);
            }
        }
    }

    /// `to` needs entries no longer in memory: it gets a snapshot.
    fn snapshot_to(&mut self, core: &mut Core, now_ms: u64, to: NodeId) {
        let p = self.backups.get_mut(&to).expect("known backup");
        if p.member {
            core.stats.members_removed += 1;
            core.view_events.push(ViewEvent::MemberRemoved {
                epoch: core.epoch(),
                backup: to,
            });
        }
        *p = BackupProgress {
            report: Some(Report {
                log_epoch: 0,
                applied: 0,
                durable: 0,
                amnesiac: false,
                log_hash: None,
            }),
            ..BackupProgress::default()
        };
        self.send_sync(core, now_ms, to);
    }

    fn resend(&self, core: &mut Core, to: NodeId, position: Position) {
        let entry = Arc::clone(core.entry(position).expect("in memory"));
        core.stats.entries_resent += 1;
        core.send(
            to,
            Message::Append {
                entry,
                leader_last: core.applied,
                committed: self.committed,
            },
        );
    }

    pub(super) fn on_persisted(&mut self, core: &mut Core, now_ms: u64) {
        self.raise_log_epoch(core);
        match self.phase {
            Phase::Syncing => self.try_serve(core, now_ms),
            Phase::Serving => self.try_commit(core, now_ms),
            _ => {}
        }
    }

    /// Leader: members leave when suspected and come back once synced,
    /// heard from and holding everything committed.
    fn update_members(&mut self, core: &mut Core, now_ms: u64) {
        if self.phase != Phase::Serving {
            return;
        }
        let epoch = core.epoch();
        for (&n, p) in &mut self.backups {
            let suspected = core.suspected(n, now_ms);
            if p.member && suspected {
                p.member = false;
                core.stats.members_removed += 1;
                core.view_events
                    .push(ViewEvent::MemberRemoved { epoch, backup: n });
                tracing::info!(epoch, backup = %n, "backup suspected: view without it");
            } else if !p.member && p.synced && !suspected && p.durable >= self.committed {
                p.member = true;
                core.stats.members_added += 1;
                core.view_events
                    .push(ViewEvent::MemberAdded { epoch, backup: n });
                tracing::info!(epoch, backup = %n, "backup caught up: back in the view");
            }
        }
    }

    /// Commits every entry durable on all members (at least a majority of
    /// the group) and replies to each. When the window was full, held
    /// requests waiting for room execute now.
    fn try_commit(&mut self, core: &mut Core, now_ms: u64) {
        if self.phase != Phase::Serving {
            return;
        }
        let members: Vec<Position> = self
            .backups
            .values()
            .filter(|p| p.member)
            .map(|p| p.durable)
            .collect();
        if members.len() + 1 < core.config.majority() {
            return; // without a majority nothing commits
        }
        let everywhere = members.into_iter().fold(core.durable, Position::min);
        while self.committed < everywhere {
            let w = self
                .window
                .pop_front()
                .expect("window holds uncommitted entries");
            assert_eq!(w.entry.position, self.committed + 1, "window in log order");
            self.committed = w.entry.position;
            self.committed_digest = w.digest_after;
            core.send(
                NodeId::of_stream(w.entry.key.stream),
                Message::Reply {
                    seq: w.entry.key.seq,
                    reply: w.entry.reply.clone(),
                },
            );
        }
        if self.window.len() < core.config.max_window && !self.held.is_empty() {
            let streams: Vec<StreamId> = self.held.keys().copied().collect();
            for stream in streams {
                self.drain_held(core, now_ms, stream);
            }
        }
    }

    pub(super) fn tick(&mut self, core: &mut Core, now_ms: u64) {
        match self.phase {
            Phase::Collecting { until } => {
                if until.is_some_and(|u| u <= now_ms) {
                    self.phase = Phase::Collecting { until: None };
                    self.maybe_choose(core, now_ms);
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
        let last = core.applied;
        let backups: Vec<NodeId> = self.backups.keys().copied().collect();
        for backup in backups {
            let progress = &self.backups[&backup];
            let Some(at) = progress.resend_at else {
                continue;
            };
            if at > now_ms || !progress.synced {
                continue;
            }
            if progress.durable >= last {
                self.backups.get_mut(&backup).expect("known").resend_at = None;
                continue;
            }
            // Resend after what the backup has applied; if it has applied
            // everything, resend the last entry so it acknowledges again.
            let from = (progress.applied.max(progress.durable) + 1).min(last);
            if core.entry(from).is_none() {
                self.snapshot_to(core, now_ms, backup);
                continue;
            }
            let to = last.min(from + core.config.resend_batch as u64 - 1);
            for position in from..=to {
                self.resend(core, backup, position);
            }
            self.backups.get_mut(&backup).expect("known").resend_at =
                Some(now_ms + core.config.retransmit_ms);
        }
        let due: Vec<StreamId> = self
            .nack_at
            .iter()
            .filter(|&(_, &at)| at <= now_ms)
            .map(|(&s, _)| s)
            .collect();
        for stream in due {
            let head = core.sessions.head(stream);
            let held = &self.held[&stream];
            let top = *held.keys().next_back().expect("held is never empty");
            let missing: Vec<Seq> = (head + 1..top)
                .filter(|s| !held.contains_key(s))
                .take(core.config.max_nack_numbers)
                .collect();
            // No gap means the next request waits for room in the window.
            if !missing.is_empty() {
                core.stats.nacks_sent += 1;
                core.send(NodeId::of_stream(stream), Message::RequestNack { missing });
            }
            self.nack_at
                .insert(stream, now_ms + core.config.nack_retry_ms);
        }
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
            .filter(|(_, p)| p.member && self.phase == Phase::Serving && core.detecting())
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
        self.reads.check(self.committed, core.applied);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_snapshot_is_resent_only_after_the_time_it_takes_and_then_less_often() {
        // Small state: the retransmission timeout.
        assert_eq!(snapshot_retry_base(10, 100), 10);
        // 13,000 records take about 200 ms end to end; 100,000 over 1.5 s.
        assert_eq!(snapshot_retry_base(10, 13_000), 203);
        assert_eq!(snapshot_retry_base(10, 100_000), 1_562);
        assert_eq!(retry_after(203, 0), 203);
        assert_eq!(retry_after(203, 2), 812);
        assert_eq!(retry_after(10, 30), 2_560, "doubling stops at 256 times");
    }
}
