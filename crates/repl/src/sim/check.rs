//! The simulator's invariant checks, and forged datagrams to inject.
//!
//! The checker keeps every replica's applied log (after an installed
//! snapshot: the entries after it) and the group's committed log, the
//! longest prefix any replica reported committed. After every step: at most
//! one replica leads any epoch; what each replica counts as committed agrees
//! with the committed log (committed logs never diverge), which holds each
//! request at most once; each newly committed entry is durable on a majority
//! of the disks; each replica's applied and durable positions match what the
//! simulator saw it hand out and write. Every reply a client receives is the
//! reply the committed log holds for that request (so no acknowledged write
//! is ever lost: the committed log only grows), at a position after every
//! reply the client had seen when submitting it (real-time order:
//! linearizability of completed operations, the log being a sequential
//! execution). Reads travel outside the log: each answer must equal the
//! read executed on the committed state at some position between the last
//! write any client saw acknowledged before the read was submitted and the
//! commit position when it completed (linearizable, and never a write that
//! was not committed); checked at the end by replaying the committed log.
//! At the end: every request of a live front end answered
//! exactly once, every replica at the same position with the same digest,
//! in memory and rebuilt from its disk.

use super::disk::Disk;
use super::net::Network;
use super::{CLUSTER, SECRET};
use crate::frontend::{ClientOutcome, Completion, FrontEnd, READ_ID_BIT};
use crate::ids::{Epoch, NodeId, Position, Seq};
use crate::replica::{Replica, Role};
use crate::wire::{Encoder, Message, WireConfig, HEADER_LEN, MAGIC, REPLICA_KEY, VERSION};
use dcms_core::store::LogHash;
use dcms_core::{Batch, ClinicState, FtRequest, LogEntry, Reply, Request, RequestKey};
use hmac::{Hmac, Mac};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use sha2::Sha256;
use std::collections::{BTreeMap, BTreeSet, HashMap};

/// One replica's applied log as the checker saw it.
#[derive(Debug)]
struct ReplicaLog {
    /// The chained hash of the log at `applied()`, computed here from the
    /// entries (from an installed snapshot's hash when its log is unknown).
    hash: Option<LogHash>,
    /// Installed snapshot position: entries up to it are not known here.
    base: Position,
    /// Entries `base + 1 ..`.
    entries: Vec<LogEntry>,
    /// Positions up to this were compared with the committed log.
    checked: Position,
    /// A snapshot replaced the log since the last restart (the disk may
    /// still hold the log it replaced).
    installed: Option<Position>,
}

impl Default for ReplicaLog {
    fn default() -> ReplicaLog {
        ReplicaLog {
            hash: Some(LogHash::EMPTY),
            base: 0,
            entries: Vec::new(),
            checked: 0,
            installed: None,
        }
    }
}

fn chain_of(base: Option<LogHash>, entries: &[LogEntry]) -> Option<LogHash> {
    base.map(|b| entries.iter().fold(b, |h, e| h.chain(e)))
}

impl ReplicaLog {
    fn applied(&self) -> Position {
        self.base + self.entries.len() as u64
    }

    fn get(&self, p: Position) -> Option<&LogEntry> {
        if p <= self.base {
            return None;
        }
        self.entries.get((p - self.base - 1) as usize)
    }
}

pub(super) struct Checker {
    outcome_timeout_ms: u64,
    majority: usize,
    /// When each request was submitted, and the highest committed position
    /// of any reply the clients had seen then.
    submitted_at: HashMap<RequestKey, (u64, Position)>,
    logs: BTreeMap<NodeId, ReplicaLog>,
    /// Complete logs replicas held before a wipe, crash or install (the
    /// sources of later snapshots).
    archive: Vec<Vec<LogEntry>>,
    /// The group's committed log, positions 1, 2, ...
    committed: Vec<LogEntry>,
    /// Where the committed log holds each request.
    executed: HashMap<RequestKey, Position>,
    /// The leader of each epoch.
    leaders: BTreeMap<Epoch, NodeId>,
    /// The highest number submitted per stream.
    submitted: BTreeMap<u64, Seq>,
    /// Streams whose front end restarted: their unanswered requests may or
    /// may not have happened.
    abandoned: BTreeSet<u64>,
    /// Streams whose front end was paused (its timers fired late).
    paused: BTreeSet<u64>,
    completions: HashMap<RequestKey, ClientOutcome>,
    /// The real reply each client got (as completion or late).
    answered: HashMap<RequestKey, Reply>,
    /// The highest position of any reply received so far.
    max_answered: Position,
    /// Reads submitted: the request, and the lowest position its answer
    /// may reflect.
    reads: HashMap<RequestKey, (Request, Position)>,
    /// Reads submitted per stream.
    reads_submitted: BTreeMap<u64, u64>,
    /// Answered reads to check at the end: (request, answer, lowest and
    /// highest position it may reflect; the highest is filled in at the
    /// next step, once the committed log caught up with the leader's).
    read_answers: Vec<(Request, Reply, Position, Option<Position>)>,
    /// The FT identity each write was submitted with.
    ft_of: HashMap<RequestKey, FtRequest>,
    /// Per FT identity: its first committed entry, reply, and whether it
    /// changed anything.
    ft_first: HashMap<(String, i32), (Position, Reply, bool)>,
    /// FT identities a client was told were not executed.
    ft_not_executed: BTreeSet<(String, i32)>,
    /// Committed retries answered from a retained reply (coverage).
    pub ft_retried: u64,
    /// Of those, retries in another stream than the first execution's.
    pub ft_retried_elsewhere: u64,
    /// FT identities whose first entry changed something.
    pub ft_executed: u64,
    pub unknown_outcomes: u64,
    pub late_replies: u64,
    pub healed_at: Option<u64>,
}

impl Checker {
    pub fn new(outcome_timeout_ms: u64, majority: usize) -> Checker {
        Checker {
            outcome_timeout_ms,
            majority,
            submitted_at: HashMap::new(),
            logs: BTreeMap::new(),
            archive: Vec::new(),
            committed: Vec::new(),
            executed: HashMap::new(),
            leaders: BTreeMap::new(),
            submitted: BTreeMap::new(),
            abandoned: BTreeSet::new(),
            paused: BTreeSet::new(),
            completions: HashMap::new(),
            answered: HashMap::new(),
            max_answered: 0,
            reads: HashMap::new(),
            reads_submitted: BTreeMap::new(),
            read_answers: Vec::new(),
            ft_of: HashMap::new(),
            ft_first: HashMap::new(),
            ft_not_executed: BTreeSet::new(),
            ft_retried: 0,
            ft_retried_elsewhere: 0,
            ft_executed: 0,
            unknown_outcomes: 0,
            late_replies: 0,
            healed_at: None,
        }
    }

    pub fn on_submit(
        &mut self,
        now: u64,
        frontend: NodeId,
        seq: Seq,
        request: &Request,
        ft: Option<&FtRequest>,
    ) {
        let key = RequestKey {
            stream: frontend.0,
            seq,
        };
        self.submitted_at.insert(key, (now, self.max_answered));
        if let Some(ft) = ft.filter(|_| !request.is_read_only()) {
            self.ft_of.insert(key, ft.clone());
        }
        if seq & READ_ID_BIT != 0 {
            assert!(request.is_read_only(), "only reads travel as reads");
            self.reads.insert(key, (request.clone(), self.max_answered));
            *self.reads_submitted.entry(frontend.0).or_default() += 1;
            return;
        }
        let last = self.submitted.entry(frontend.0).or_insert(0);
        assert_eq!(
            seq,
            *last + 1,
            "front end {frontend} numbers requests 1, 2, 3, ..."
        );
        *last = seq;
    }

    /// The front end of `stream` restarted (under a new stream).
    pub fn on_frontend_restart(&mut self, stream: u64) {
        self.abandoned.insert(stream);
    }

    /// The front end of `stream` was paused: its deadlines fire late.
    pub fn on_frontend_pause(&mut self, stream: u64) {
        self.paused.insert(stream);
    }

    /// A replica handed out `batch` to persist: it applied those entries,
    /// and chained the log's hash over them as this checker does.
    pub fn on_applied(&mut self, replica: NodeId, batch: &Batch) {
        let log = self.logs.entry(replica).or_default();
        for (e, given) in batch.entries().iter().zip(batch.hashes()) {
            assert_eq!(
                e.position,
                log.applied() + 1,
                "{replica} applies out of log order"
            );
            log.hash = log.hash.map(|h| h.chain(e));
            if log.hash.is_some() {
                assert_eq!(
                    *given, log.hash,
                    "{replica} hands out a wrong log hash at {}",
                    e.position
                );
            }
            log.entries.push(LogEntry::clone(e));
        }
    }

    /// `replica` installs `snapshot`: its log becomes the prefix of a log
    /// known here whose state matches the snapshot's digest (the one it was
    /// taken from), else an unknown base.
    pub fn on_install(&mut self, replica: NodeId, snapshot: &crate::snapshot::Snapshot) {
        let position = snapshot.position;
        self.archive_log(replica);
        // The committed log first; else a log that agrees with it (logs
        // that differ only in audit times have equal digests).
        let committed = &self.committed;
        let candidates = std::iter::once(committed)
            .chain(
                self.logs
                    .iter()
                    .filter(|(id, l)| **id != replica && l.base == 0)
                    .map(|(_, l)| &l.entries),
            )
            .chain(self.archive.iter());
        let source = candidates.into_iter().find_map(|entries| {
            if (entries.len() as u64) < position {
                return None;
            }
            let overlap = committed.len().min(position as usize);
            if entries[..overlap] != committed[..overlap] {
                return None;
            }
            let mut state = dcms_core::ClinicState::new();
            for e in &entries[..position as usize] {
                state.apply(&e.effect);
            }
            // The very log it was taken from: its hash matches too.
            let log = &entries[..position as usize];
            (state.digest() == snapshot.digest
                && chain_of(Some(LogHash::EMPTY), log) == snapshot.log_hash)
                .then(|| log.to_vec())
        });
        let log = self.logs.entry(replica).or_default();
        *log = match source {
            Some(entries) => ReplicaLog {
                hash: chain_of(Some(LogHash::EMPTY), &entries),
                base: 0,
                entries,
                checked: 0,
                installed: Some(position),
            },
            None => ReplicaLog {
                hash: snapshot.log_hash,
                base: position,
                entries: Vec::new(),
                checked: position,
                installed: Some(position),
            },
        };
    }

    /// Keeps `replica`'s complete log for later snapshot lookups.
    fn archive_log(&mut self, replica: NodeId) {
        if let Some(l) = self.logs.get(&replica) {
            if l.base == 0 && !l.entries.is_empty() && !self.archive.contains(&l.entries) {
                self.archive.push(l.entries.clone());
            }
        }
    }

    /// `replica` crashed: it restarts from its disk, which holds a prefix
    /// of what it applied (or an installed snapshot and what followed).
    pub fn on_crash(&mut self, replica: NodeId, disk: &Disk) {
        self.archive_log(replica);
        let log = self.logs.entry(replica).or_default();
        let base = disk.base.as_ref().map_or(0, |s| s.position);
        if base == 0 && log.base == 0 && log.installed.is_none() {
            assert!(
                log.entries.len() >= disk.entries.len()
                    && log.entries[..disk.entries.len()] == disk.entries[..],
                "{replica} held durably what it never applied"
            );
        }
        let checked = log.checked;
        // The log known here is the disk's unless an install since the last
        // restart did not reach the disk.
        let known = log.base == 0
            && log.entries.len() as u64 >= base
            && log.installed.is_none_or(|p| p == base || base == 0);
        *log = if known {
            // The installed snapshot's log is known here: keep it.
            let mut entries = log.entries[..base as usize].to_vec();
            entries.extend(disk.entries.iter().cloned());
            ReplicaLog {
                hash: chain_of(Some(LogHash::EMPTY), &entries),
                base: 0,
                entries,
                checked: checked.min(disk.durable_position()),
                installed: None,
            }
        } else {
            let base_hash = disk
                .base
                .as_ref()
                .map_or(Some(LogHash::EMPTY), |s| s.log_hash);
            ReplicaLog {
                hash: chain_of(base_hash, &disk.entries),
                base,
                entries: disk.entries.clone(),
                checked: checked.min(disk.durable_position()).max(base),
                installed: None,
            }
        };
    }

    /// `replica`'s store was wiped.
    pub fn on_wipe(&mut self, replica: NodeId) {
        self.archive_log(replica);
        self.logs.insert(replica, ReplicaLog::default());
    }

    pub fn after_step(
        &mut self,
        replicas: &BTreeMap<NodeId, Replica>,
        disks: &BTreeMap<NodeId, Disk>,
        frontends: &BTreeMap<NodeId, FrontEnd>,
    ) {
        for (id, r) in replicas {
            if r.role() == Role::Leader {
                let leader = *self.leaders.entry(r.epoch()).or_insert(*id);
                assert_eq!(leader, *id, "two leaders in epoch {}", r.epoch());
            }
            let log = self.logs.entry(*id).or_default();
            assert_eq!(r.applied(), log.applied(), "{id}'s applied position");
            assert_eq!(r.log_hash(), log.hash, "{id}'s log hash");
            assert!(r.log_hash().is_some(), "every log hash is known here");
            if !r.installing() {
                let durable = disks[id].durable_position();
                assert_eq!(r.durable(), durable, "{id}'s durable position");
                assert!(
                    r.committed() <= r.durable(),
                    "{id} knows of commits beyond its disk"
                );
            }
        }
        // The same log hash at the same position means the same log, so
        // the same state.
        for (a, ra) in replicas {
            for (b, rb) in replicas.range(*a..).skip(1) {
                if ra.applied() == rb.applied() && ra.log_hash() == rb.log_hash() {
                    assert_eq!(
                        ra.digest(),
                        rb.digest(),
                        "{a} and {b} share a log hash at {} but not the state",
                        ra.applied()
                    );
                }
            }
        }
        // Committed logs never diverge: extend the group's committed log
        // with what each replica counts as committed, and compare.
        for (id, r) in replicas {
            let c = r.committed();
            let mut fresh = Vec::new();
            let log = self.logs.get_mut(id).expect("inserted");
            let from = log.checked.max(log.base) + 1;
            for p in from..=c.min(log.applied()) {
                let e = log.get(p).expect("within the log").clone();
                let known = self.committed.len() as u64;
                if p <= known {
                    assert_eq!(
                        self.committed[p as usize - 1],
                        e,
                        "{id}'s committed log diverges at {p}"
                    );
                } else {
                    assert_eq!(
                        p,
                        known + 1,
                        "{id} commits {p} past a gap in the committed log"
                    );
                    if let Some(old) = self.executed.insert(e.key, p) {
                        panic!("{:?} committed twice, at {old} and {p}", e.key);
                    }
                    fresh.push((p, e.clone()));
                    // A store wiped since it acknowledged may be counted by
                    // a leader that has not noticed yet: count amnesiacs.
                    let holding = disks.values().filter(|d| d.holds(&e)).count();
                    let wiped = disks
                        .values()
                        .filter(|d| d.meta.is_some_and(|m| m.amnesiac))
                        .count();
                    assert!(
                        holding + wiped >= self.majority,
                        "{id} committed {p}, durable on only {holding} replicas"
                    );
                    if std::env::var_os("DCMS_SIM_TRACE").is_some() {
                        eprintln!(
                            "committed {p} by {id} (epoch {}): {:?} at {}",
                            r.epoch(),
                            e.key,
                            e.effect.audit.time_ms
                        );
                    }
                    self.committed.push(e);
                }
                log.checked = p;
            }
            for (p, e) in fresh {
                self.check_ft(p, &e);
            }
        }
        for (_, _, _, upper) in &mut self.read_answers {
            upper.get_or_insert(self.committed.len() as Position);
        }
        for (id, fe) in frontends {
            let submitted = self.submitted.get(&fe.stream()).copied().unwrap_or(0)
                + self.reads_submitted.get(&fe.stream()).copied().unwrap_or(0);
            assert!(
                fe.unanswered() as u64 <= submitted,
                "{id} waits for more than it sent"
            );
        }
    }

    pub fn on_completion(&mut self, now: u64, frontend: NodeId, c: &Completion) {
        let key = RequestKey {
            stream: frontend.0,
            seq: c.seq,
        };
        let read = self.reads.get(&key).cloned();
        assert!(
            read.is_some() || c.seq <= self.submitted.get(&frontend.0).copied().unwrap_or(0),
            "completion of unsubmitted {key:?}"
        );
        if let Some(old) = self.completions.insert(key, c.outcome.clone()) {
            panic!("{key:?} completed twice: {old:?} then {:?}", c.outcome);
        }
        let deadline = self.submitted_at[&key].0 + self.outcome_timeout_ms;
        match &c.outcome {
            ClientOutcome::Reply(reply) => {
                assert!(
                    now < deadline,
                    "{key:?} completed with a reply after its deadline"
                );
                match read {
                    Some((request, lower)) => {
                        self.read_answers
                            .push((request, reply.clone(), lower, None))
                    }
                    None => self.on_reply(key, reply),
                }
            }
            ClientOutcome::NotExecuted(reason) => {
                let ft = self
                    .ft_of
                    .get(&key)
                    .unwrap_or_else(|| {
                        panic!("{key:?} without an FT identity reported not executed: {reason}")
                    })
                    .clone();
                assert!(
                    now >= ft.expires_ms,
                    "{key:?} reported not executed before its expiration"
                );
                let id = (ft.client_id.clone(), ft.retention_id);
                if let Some((p, _, true)) = self.ft_first.get(&id) {
                    panic!("{key:?} reported not executed, but {id:?} executed at {p}");
                }
                self.ft_not_executed.insert(id);
            }
            ClientOutcome::Unknown => {
                // Exactly at the deadline: not early, and not late either
                // (the simulator fires every timer when it is due), unless
                // the front end's process was paused.
                if self.paused.contains(&frontend.0) {
                    assert!(now >= deadline, "{key:?} reported unknown early");
                } else {
                    assert_eq!(now, deadline, "{key:?} reported unknown off its deadline");
                }
                self.unknown_outcomes += 1;
            }
        }
    }

    pub fn on_late_reply(&mut self, frontend: NodeId, seq: Seq, reply: &Reply) {
        let key = RequestKey {
            stream: frontend.0,
            seq,
        };
        match self.completions.get(&key) {
            Some(ClientOutcome::Unknown) => {}
            Some(ClientOutcome::NotExecuted(_)) => assert!(
                reply.is_err(),
                "{key:?} was reported not executed, and its late reply is {reply:?}"
            ),
            other => panic!("late reply to {key:?}, which completed as {other:?}"),
        }
        self.late_replies += 1;
        self.on_reply(key, reply);
    }

    /// FT identities: the log carries the one the client sent; the first
    /// entry of an identity executes it (unless expired by then); every
    /// later one changes nothing and, while the reply is retained, carries
    /// the first one's reply; one reported not executed never executes.
    fn check_ft(&mut self, p: Position, e: &LogEntry) {
        assert_eq!(
            e.ft.as_ref(),
            self.ft_of.get(&e.key),
            "{:?} at {p} carries another FT identity than its client sent",
            e.key
        );
        let Some(ft) = &e.ft else { return };
        let id = (ft.client_id.clone(), ft.retention_id);
        let time = e.effect.audit.time_ms;
        match self.ft_first.get(&id) {
            Some((first, reply, _)) => {
                assert!(
                    e.effect.change.is_none(),
                    "{id:?} executed twice: at {first} and at {p}"
                );
                self.ft_retried += 1;
                if self.committed[*first as usize - 1].key.stream != e.key.stream {
                    self.ft_retried_elsewhere += 1;
                }
                if time <= ft.expires_ms + dcms_core::store::RETAINED_GRACE_MS {
                    assert_eq!(
                        &e.reply, reply,
                        "the retry of {id:?} at {p} answers otherwise than the first at {first}"
                    );
                }
            }
            None => {
                if time >= ft.expires_ms {
                    assert!(
                        e.effect.change.is_none(),
                        "{id:?} executed at {p} after its expiration"
                    );
                }
                if self.ft_not_executed.contains(&id) {
                    assert!(
                        e.effect.change.is_none(),
                        "{id:?} was reported not executed, and executed at {p}"
                    );
                }
                let changed = e.effect.change.is_some();
                self.ft_first.insert(id, (p, e.reply.clone(), changed));
                if changed {
                    self.ft_executed += 1;
                }
            }
        }
    }

    fn on_reply(&mut self, key: RequestKey, reply: &Reply) {
        let position = *self
            .executed
            .get(&key)
            .unwrap_or_else(|| panic!("reply to {key:?}, which is not committed"));
        let stored = &self.committed[position as usize - 1];
        assert_eq!(
            &stored.reply, reply,
            "the client got another reply for {key:?} than committed"
        );
        let (_, seen_before) = self.submitted_at[&key];
        assert!(
            position > seen_before,
            "{key:?} took effect at {position}, before a reply (at {seen_before}) its client had seen when submitting it"
        );
        self.max_answered = self.max_answered.max(position);
        if self.answered.insert(key, reply.clone()).is_some() {
            panic!("{key:?} answered twice");
        }
    }

    /// Every answered read equals the read executed on the committed state
    /// at some position of its window.
    fn check_reads(&self) {
        let mut by_lower: Vec<(usize, Position)> = self
            .read_answers
            .iter()
            .enumerate()
            .map(|(i, r)| (i, r.2))
            .collect();
        by_lower.sort_by_key(|&(_, lower)| lower);
        let mut matched = vec![false; self.read_answers.len()];
        let mut state = ClinicState::new();
        let mut next = 0;
        for p in 0..=self.committed.len() as Position {
            if p > 0 {
                state.apply(&self.committed[p as usize - 1].effect);
            }
            while next < by_lower.len() && by_lower[next].1 <= p {
                next += 1;
            }
            for &(i, _) in &by_lower[..next] {
                let (request, reply, _, upper) = &self.read_answers[i];
                let upper = upper.expect("filled in at the next step");
                if !matched[i] && p <= upper && &state.execute(request, 0).0 == reply {
                    matched[i] = true;
                }
            }
        }
        for (i, (request, reply, lower, upper)) in self.read_answers.iter().enumerate() {
            assert!(
                matched[i],
                "read {request:?} answered {reply:?}, which no committed state between positions {lower} and {upper:?} gives"
            );
        }
    }

    pub fn at_end(
        &self,
        replicas: &BTreeMap<NodeId, Replica>,
        disks: &BTreeMap<NodeId, Disk>,
        frontends: &BTreeMap<NodeId, FrontEnd>,
        net: &Network,
        failover: bool,
    ) {
        if !failover {
            assert!(net.is_empty(), "datagrams left in flight");
        }
        assert!(disks.values().all(Disk::is_idle), "disk writes left");
        self.check_reads();
        assert_eq!(replicas.len(), disks.len(), "every replica is up again");
        let mut total = 0;
        let by_stream: BTreeMap<u64, &FrontEnd> =
            frontends.values().map(|f| (f.stream(), f)).collect();
        for (stream, &last) in &self.submitted {
            let live = by_stream.contains_key(stream);
            if let Some(fe) = by_stream.get(stream) {
                assert_eq!(fe.unanswered(), 0, "{stream} still waits for replies");
            }
            for seq in 1..=last {
                let key = RequestKey {
                    stream: *stream,
                    seq,
                };
                if live || !self.abandoned.contains(stream) {
                    assert!(
                        self.completions.contains_key(&key),
                        "{key:?} never completed"
                    );
                    assert!(
                        self.answered.contains_key(&key),
                        "{key:?}'s reply never arrived"
                    );
                    assert!(self.executed.contains_key(&key), "{key:?} never committed");
                    total += 1;
                } else if self.executed.contains_key(&key) {
                    total += 1; // it happened after all
                }
            }
        }
        assert_eq!(
            self.executed.len() as u64,
            total,
            "every request executed exactly once, nothing else"
        );
        let last = self.committed.len() as u64;
        let first = replicas.values().next().expect("replicas");
        for (id, r) in replicas {
            assert_eq!(r.applied(), last, "{id} applied everything committed");
            assert_eq!(r.durable(), last, "{id} holds everything durably");
            if failover || r.role() == Role::Leader {
                assert_eq!(r.committed(), last, "{id} knows everything is committed");
            }
            let log = &self.logs[id];
            for p in log.base + 1..=last {
                assert_eq!(
                    log.get(p),
                    Some(&self.committed[p as usize - 1]),
                    "{id}'s log equals the committed log at {p}"
                );
            }
            assert_eq!(
                r.digest(),
                first.digest(),
                "{id}'s digest equals the others'"
            );
            assert_eq!(
                disks[id].replay().digest(),
                r.digest(),
                "{id}'s disk rebuilds its state"
            );
            for (stream, &seq) in &self.submitted {
                if !self.abandoned.contains(stream) {
                    assert_eq!(
                        r.sessions().head(*stream),
                        seq,
                        "{id}'s head of stream {stream}"
                    );
                }
            }
        }
    }
}

/// A datagram `to` may not accept: random bytes, a wrong key, a foreign
/// cluster, an unknown version, (correctly tagged) an unknown type or a
/// malformed body, or, at a replica, a front end's key used for what only
/// replicas may send.
pub(super) fn forge(rng: &mut ChaCha8Rng, to: NodeId, to_replica: bool) -> Vec<u8> {
    let incarnation: u64 = rng.gen();
    let genuine = |cluster, secret: &[u8]| {
        let mut e = Encoder::new(WireConfig::new(cluster, secret), NodeId(1), 1)
            .with_incarnation(incarnation);
        e.encode(
            REPLICA_KEY,
            to,
            &[Message::RequestNack { missing: vec![1] }],
        )
        .remove(0)
    };
    let tagged = |frames: &[u8], counter: u64| {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        for v in [CLUSTER, REPLICA_KEY, 1, to.0, 1, 0, counter] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        assert_eq!(out.len(), HEADER_LEN);
        out.extend_from_slice(frames);
        let mut m = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
        m.update(&out);
        out.extend_from_slice(&m.finalize().into_bytes());
        out
    };
    // A front end's key (front end 100 always exists) on what it may not send.
    let frontend_forgery = |sender: NodeId, message: Message, incarnation: u64| {
        let slot = NodeId(super::FRONTEND_BASE);
        let wire = WireConfig::frontend(CLUSTER, slot.0, super::frontend_key(slot));
        let mut e = Encoder::new(wire, sender, 1).with_incarnation(incarnation);
        e.encode(slot.0, to, &[message]).remove(0)
    };
    let cases = if to_replica { 8 } else { 6 };
    match rng.gen_range(0..cases) {
        0 => (0..rng.gen_range(0..400)).map(|_| rng.gen()).collect(),
        1 => genuine(CLUSTER, b"not the secret"),
        2 => genuine(CLUSTER + 1, SECRET),
        3 => {
            let mut b = genuine(CLUSTER, SECRET);
            b[4] = VERSION + 1;
            b
        }
        4 => tagged(&[99, 1, 0, 0], rng.gen()),
        5 => tagged(&[5, 3, 0, 0xff, 0xff, 0xff], rng.gen()),
        6 => frontend_forgery(NodeId(2), Message::Election, rng.gen()),
        _ => frontend_forgery(
            NodeId(crate::frontend::random_stream(rng.gen())),
            Message::Coordinator,
            rng.gen(),
        ),
    }
}
