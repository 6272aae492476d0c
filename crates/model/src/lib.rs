//! A model of dcms's election and commit rules, checked exhaustively with
//! [stateright] on small configurations.
//!
//! The simulator in `dcms-repl` runs the real state machines over thousands
//! of random schedules; this model explores *every* schedule of an abstract
//! version of the same rules, up to a bound (three replicas, a few epochs,
//! a few client writes, crashes that keep the durable state). What is
//! modelled, rule by rule from `crates/repl/src/replica/`:
//!
//! - **Epochs** (`election.rs`, `next_epoch`): a coordinator takes an epoch
//!   above every epoch it has seen, congruent to its rank modulo the group
//!   size, and promises it durably before it sends anything. Any replica may
//!   become coordinator at any time: the bully algorithm decides *who* tries
//!   (liveness); safety may not depend on it, so the model lets everyone try.
//! - **Join** (`leader/takeover.rs`, `on_join`): a replica that hears `Coordinator`
//!   of an epoch above its promise promises it (durably) and reports its log
//!   (`log_epoch`, applied entries). Messages of other epochs are ignored.
//! - **Adopt** (`try_adopt_log`, `fetch`): with a majority's reports the
//!   coordinator adopts the most advanced log by `(log_epoch, applied)`; when
//!   its own log has the same `log_epoch` and is no longer it fetches only
//!   the suffix (keeping its own entries), else a snapshot.
//! - **Sync** (`send_sync`): each reporter gets a suffix when its log is a
//!   prefix of the adopted one by the same rule as the code (`log_epoch` of
//!   this epoch, or the adopted `log_epoch` and no longer than the epoch's
//!   start, or the leader's chained log hash at the reporter's position is
//!   the reporter's: modelled as "is a prefix"), else a snapshot; a replica
//!   keeps its entries and appends a suffix only when its log is as long as
//!   the leader believed (`common_prefix`), and once synced takes no older
//!   snapshot.
//! - **Restart** (`Replica::new`): a replica whose durable log epoch is its
//!   promised epoch comes back synced to that epoch's leader; any other
//!   waits for a `Sync`.
//! - **Serve** (`try_serve`, `raise_log_epoch`): the leader serves once it
//!   and a majority hold the epoch's start durably; a replica raises its
//!   durable `log_epoch` to the epoch only once it holds the start durably.
//! - **Commit**: a write is acknowledged once a majority holds it durably,
//!   the leader among them only once its own disk does (the real leader
//!   also waits for every member of its view: that only removes schedules).
//! - **Faults**: the network loses, duplicates, delays and reorders every
//!   message (a message once sent may be delivered any number of times, or
//!   never); replicas crash, losing what is not durable, and restart.
//!
//! Properties: at most one coordinator per epoch; the acknowledged writes
//! form one log (committed logs never diverge); every leader that starts to
//! serve holds every write acknowledged before (no acknowledged write is
//! lost); every acknowledged write is durable on a majority; and, as a
//! sanity check that the bounds are not vacuous, a schedule exists where a
//! leader of a later epoch acknowledges a write of its own after one of an
//! earlier epoch was acknowledged. Tests also break each rule on purpose
//! ([`Mutation`]) and require a counterexample.
//!
//! Not modelled: wiped stores (amnesiac replicas), the front end's streams
//! and exactly-once replies (the simulator checks those), timing.

use std::collections::{BTreeMap, BTreeSet};

use stateright::{Model, Property};

pub type Id = u8;
pub type Epoch = u8;

/// One log entry: the epoch whose leader created it, and the write's value.
#[derive(Clone, Copy, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct Entry {
    pub epoch: Epoch,
    pub value: u8,
}

/// What a replica reports of its log when it joins a coordinator (as the
/// code's `LogSummary` in `leader/mod.rs`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub struct LogSummary {
    pub log_epoch: Epoch,
    /// The applied log (its length is `applied`). Carrying it stands for
    /// the fetch from the most advanced replica.
    pub log: Vec<Entry>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum SyncKind {
    /// Keep the first `common_prefix` entries, append these.
    Suffix {
        common_prefix: usize,
        entries: Vec<Entry>,
    },
    /// Replace the log (installed durably, in one transaction).
    Snapshot { log: Vec<Entry> },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, PartialOrd, Ord)]
pub enum Msg {
    Coordinator {
        epoch: Epoch,
        from: Id,
        to: Id,
    },
    Join {
        epoch: Epoch,
        from: Id,
        to: Id,
        report: LogSummary,
    },
    Sync {
        epoch: Epoch,
        to: Id,
        start: usize,
        kind: SyncKind,
    },
    /// Entries from index `from` on.
    Append {
        epoch: Epoch,
        to: Id,
        from: usize,
        entries: Vec<Entry>,
    },
    /// The backup holds the leader's first `durable` entries durably.
    Ack {
        epoch: Epoch,
        from: Id,
        to: Id,
        durable: usize,
    },
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Phase {
    Collecting,
    Syncing,
    Serving,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Leading {
    pub phase: Phase,
    pub reports: BTreeMap<Id, LogSummary>,
    pub base_log_epoch: Epoch,
    pub start: usize,
    /// Backups synced in this epoch: the durable prefix each acknowledged.
    pub acked: BTreeMap<Id, usize>,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Role {
    Down,
    /// Following `leader` (unknown after a restart) of the promised epoch;
    /// `synced` holds the epoch's start once a `Sync` was taken.
    Backup {
        leader: Option<Id>,
        synced: Option<usize>,
    },
    Leader(Leading),
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct Replica {
    /// Durable: the promised epoch (`Meta::epoch`).
    pub promised: Epoch,
    /// Durable: the epoch whose leader's log this log is a prefix of.
    pub log_epoch: Epoch,
    /// Durable: the leader of the promised epoch (`Meta::leader`).
    pub leader: Option<Id>,
    /// Applied entries; the first `durable` survive a crash.
    pub log: Vec<Entry>,
    pub durable: usize,
    pub role: Role,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub struct State {
    pub replicas: Vec<Replica>,
    pub net: BTreeSet<Msg>,
    pub writes: u8,
    pub crashes: u8,
    /// Ghost: the acknowledged log (the longest prefix any leader has
    /// acknowledged).
    pub acked: Vec<Entry>,
    /// Ghost: who coordinated each epoch.
    pub coordinators: BTreeMap<Epoch, Id>,
    /// Ghost: a rule was broken (which, for the counterexample).
    pub broken: Option<&'static str>,
    /// Ghost: a leader of a later epoch than the first acknowledged a write
    /// it created (for the sanity property).
    pub failover_write: bool,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq)]
pub enum Action {
    /// Replica becomes coordinator of a new epoch.
    Coordinate(Id),
    Deliver(Msg),
    /// Everything applied becomes durable (one group commit).
    Persist(Id),
    /// The serving leader executes a write.
    Write(Id),
    /// The leader sends each synced backup what it has not acknowledged.
    Replicate(Id),
    Crash(Id),
    Restart(Id),
}

/// The model's bounds.
#[derive(Clone, Debug)]
pub struct Dcms {
    pub replicas: u8,
    pub max_epoch: Epoch,
    pub max_writes: u8,
    pub max_crashes: u8,
    /// A deliberately broken rule, to show that the properties catch it.
    pub mutation: Option<Mutation>,
}

/// Rules broken on purpose (a model check that cannot fail proves nothing).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mutation {
    /// `send_sync` always sends a suffix: a deposed leader keeps entries
    /// the group never committed.
    AlwaysSuffix,
    /// The coordinator adopts the longest log, whatever its `log_epoch`.
    IgnoreLogEpoch,
    /// A backup whose durable log epoch is its promised epoch restarts
    /// unsynced (`Replica::new` restarts it synced): an old snapshot of its
    /// leader, delivered late, then takes back entries that an
    /// acknowledgement sent before the crash tells the leader it holds.
    RestartUnsynced,
}

impl Dcms {
    /// The bounds CI checks: three replicas, epochs up to `max_epoch`, two
    /// writes, one crash.
    pub fn small(max_epoch: Epoch) -> Dcms {
        Dcms {
            replicas: 3,
            max_epoch,
            max_writes: 2,
            max_crashes: 1,
            mutation: None,
        }
    }
}

impl Dcms {
    fn majority(&self) -> usize {
        self.replicas as usize / 2 + 1
    }

    /// `election::next_epoch`: above every epoch seen, and this replica's
    /// own modulo the group size.
    fn next_epoch(&self, r: &Replica, id: Id) -> Epoch {
        let mut e = r.promised + 1;
        while e % self.replicas != id {
            e += 1;
        }
        e
    }

    /// `send_sync`: a suffix when the reporter's log is a prefix of ours.
    fn sync_for(&self, me: &Replica, l: &Leading, report: &LogSummary) -> SyncKind {
        let applied = report.log.len();
        // The chained log hash at the reporter's last position equals ours
        // exactly when its log is a prefix of ours.
        let same_hash = me.log.starts_with(&report.log);
        let prefix = (report.log_epoch == me.promised
            || (report.log_epoch == l.base_log_epoch && applied <= l.start)
            || same_hash
            || self.mutation == Some(Mutation::AlwaysSuffix))
            && applied <= me.log.len();
        if prefix {
            SyncKind::Suffix {
                common_prefix: applied,
                entries: me.log[applied..].to_vec(),
            }
        } else {
            SyncKind::Snapshot {
                log: me.log.clone(),
            }
        }
    }

    fn commit(&self, s: &mut State, id: Id, upto: usize) {
        let r = &s.replicas[id as usize];
        for (k, e) in r.log[..upto].iter().enumerate() {
            match s.acked.get(k) {
                Some(a) if a != e => s.broken = Some("committed logs diverge"),
                Some(_) => {}
                None => {
                    if e.epoch != s.first_epoch_acked().unwrap_or(e.epoch) {
                        s.failover_write = true;
                    }
                    s.acked.push(*e)
                }
            }
        }
    }

    /// The serving leader acknowledges what a majority holds durably, itself
    /// counted by its durable prefix.
    fn maybe_commit(&self, s: &mut State, id: Id) {
        let r = &s.replicas[id as usize];
        let Role::Leader(l) = &r.role else { return };
        if l.phase != Phase::Serving {
            return;
        }
        let mut holds: Vec<usize> = l.acked.values().copied().collect();
        holds.push(r.durable);
        holds.sort_unstable_by(|a, b| b.cmp(a));
        // Fewer than a majority hold anything: nothing is acknowledged.
        let upto = holds
            .get(self.majority() - 1)
            .map_or(0, |&d| d.min(r.log.len()));
        self.commit(s, id, upto);
    }

    /// `raise_log_epoch` and `try_serve` (a leader), or the acknowledgement
    /// of what is durable (a synced backup).
    fn progress(&self, s: &mut State, id: Id) {
        let majority = self.majority();
        let r = &mut s.replicas[id as usize];
        match &mut r.role {
            Role::Leader(l) if l.phase != Phase::Collecting => {
                if r.durable >= l.start && r.log_epoch < r.promised {
                    r.log_epoch = r.promised;
                }
                let holding = l.acked.values().filter(|&&d| d >= l.start).count();
                if l.phase == Phase::Syncing && r.durable >= l.start && holding + 1 >= majority {
                    l.phase = Phase::Serving;
                    let start = l.start;
                    // No acknowledged write is lost: the new leader holds
                    // them all, in order.
                    let n = s.acked.len();
                    if n > start || r.log[..n] != s.acked[..] {
                        s.broken = Some("a serving leader lacks an acknowledged write");
                    }
                    self.commit(s, id, start);
                }
                self.maybe_commit(s, id);
            }
            Role::Backup {
                leader: Some(leader),
                synced: Some(start),
            } => {
                if r.durable >= *start && r.log_epoch < r.promised {
                    r.log_epoch = r.promised;
                }
                let ack = Msg::Ack {
                    epoch: r.promised,
                    from: id,
                    to: *leader,
                    durable: r.durable,
                };
                s.net.insert(ack);
            }
            _ => {}
        }
    }

    /// The coordinator has a majority's reports: adopt the most advanced log.
    fn choose(&self, s: &mut State, id: Id) {
        let me = &s.replicas[id as usize];
        let Role::Leader(l) = &me.role else { return };
        if l.phase != Phase::Collecting || l.reports.len() < self.majority() {
            return;
        }
        let (best, b) = l
            .reports
            .iter()
            .max_by_key(|(n, r)| {
                let log_epoch = match self.mutation {
                    Some(Mutation::IgnoreLogEpoch) => 0,
                    _ => r.log_epoch,
                };
                (log_epoch, r.log.len(), **n == id)
            })
            .map(|(n, r)| (*n, r.clone()))
            .expect("a majority is not empty");
        let me = &mut s.replicas[id as usize];
        if best != id {
            // A suffix when our log is of the adopted log epoch and no
            // longer, or the holder finds our log hash in its log.
            let prefix = (me.log_epoch == b.log_epoch && me.log.len() <= b.log.len())
                || b.log.starts_with(&me.log);
            if prefix {
                let n = me.log.len();
                me.log.extend_from_slice(&b.log[n..]);
            } else {
                me.log = b.log.clone();
                me.durable = me.log.len();
            }
        }
        let Role::Leader(l) = &mut me.role else {
            unreachable!()
        };
        l.base_log_epoch = b.log_epoch;
        l.start = me.log.len();
        l.phase = Phase::Syncing;
        let reports = l.reports.clone();
        let me = s.replicas[id as usize].clone();
        let Role::Leader(l) = &me.role else {
            unreachable!()
        };
        for (n, report) in &reports {
            if *n != id {
                s.net.insert(Msg::Sync {
                    epoch: me.promised,
                    to: *n,
                    start: l.start,
                    kind: self.sync_for(&me, l, report),
                });
            }
        }
        self.progress(s, id);
    }

    fn deliver(&self, s: &mut State, m: Msg) {
        match m {
            Msg::Coordinator { epoch, from, to } => {
                let r = &mut s.replicas[to as usize];
                if r.role == Role::Down {
                    return;
                }
                // A restarted replica learns its promised epoch's leader
                // again; anyone else joins only a newer epoch.
                let rejoin =
                    epoch == r.promised && matches!(r.role, Role::Backup { leader: None, .. });
                if epoch > r.promised || rejoin {
                    r.promised = epoch;
                    r.leader = Some(from);
                    r.role = Role::Backup {
                        leader: Some(from),
                        synced: None,
                    };
                    let report = LogSummary {
                        log_epoch: r.log_epoch,
                        log: r.log.clone(),
                    };
                    s.net.insert(Msg::Join {
                        epoch,
                        from: to,
                        to: from,
                        report,
                    });
                }
            }
            Msg::Join {
                epoch,
                from,
                to,
                report,
            } => {
                let Some(l) = leading(s, to, epoch) else {
                    return;
                };
                if l.reports.get(&from) == Some(&report) {
                    return;
                }
                l.acked.remove(&from);
                l.reports.insert(from, report.clone());
                match l.phase {
                    Phase::Collecting => self.choose(s, to),
                    Phase::Syncing | Phase::Serving => {
                        let me = s.replicas[to as usize].clone();
                        let Role::Leader(l) = &me.role else {
                            unreachable!()
                        };
                        s.net.insert(Msg::Sync {
                            epoch,
                            to: from,
                            start: l.start,
                            kind: self.sync_for(&me, l, &report),
                        });
                    }
                }
            }
            Msg::Sync {
                epoch,
                to,
                start,
                kind,
            } => {
                let r = &mut s.replicas[to as usize];
                if r.promised != epoch
                    || !matches!(
                        r.role,
                        Role::Backup {
                            leader: Some(_),
                            ..
                        }
                    )
                {
                    return;
                }
                // As `backup.rs`'s `on_sync`: once synced in this epoch, a
                // repeated `Sync` changes nothing but a newer snapshot.
                let synced = r.synced();
                match kind {
                    SyncKind::Suffix {
                        common_prefix,
                        entries,
                    } => {
                        if synced || common_prefix < r.log.len() {
                            // Our log beyond `common_prefix` may not be the
                            // leader's: only a snapshot replaces it.
                            self.progress(s, to);
                            return;
                        }
                        if common_prefix == r.log.len() {
                            r.log.extend(entries);
                        }
                        // Beyond our log: the leader resends from what we
                        // acknowledge.
                    }
                    SyncKind::Snapshot { log } => {
                        if synced && log.len() <= r.log.len() {
                            self.progress(s, to);
                            return;
                        }
                        r.log = log;
                        r.durable = r.log.len();
                    }
                }
                if let Role::Backup { synced, .. } = &mut r.role {
                    *synced = Some(start);
                }
                self.progress(s, to);
            }
            Msg::Append {
                epoch,
                to,
                from,
                entries,
            } => {
                let r = &mut s.replicas[to as usize];
                if r.promised != epoch || !r.synced() || from > r.log.len() {
                    return;
                }
                let have = r.log.len() - from;
                if have < entries.len() {
                    r.log.extend_from_slice(&entries[have..]);
                }
            }
            Msg::Ack {
                epoch,
                from,
                to,
                durable,
            } => {
                let Some(l) = leading(s, to, epoch) else {
                    return;
                };
                if l.phase == Phase::Collecting || !l.reports.contains_key(&from) {
                    return;
                }
                let a = l.acked.entry(from).or_insert(0);
                *a = (*a).max(durable);
                self.progress(s, to);
            }
        }
    }
}

impl Replica {
    /// A backup that took its leader's `Sync` in the promised epoch.
    fn synced(&self) -> bool {
        matches!(
            self.role,
            Role::Backup {
                synced: Some(_),
                ..
            }
        )
    }
}

/// `to`'s leadership, when it leads `epoch` (messages of other epochs, or
/// to a replica that does not lead, are ignored).
fn leading(s: &mut State, to: Id, epoch: Epoch) -> Option<&mut Leading> {
    let me = &mut s.replicas[to as usize];
    match &mut me.role {
        Role::Leader(l) if me.promised == epoch => Some(l),
        _ => None,
    }
}

impl State {
    fn first_epoch_acked(&self) -> Option<Epoch> {
        self.acked.first().map(|e| e.epoch)
    }

    /// Drops the messages no replica will ever act on: those of an epoch
    /// below their receiver's promise (promises only grow, and every
    /// receiver ignores an older epoch). Two states that differ only in
    /// such messages behave alike, so this prunes without losing a
    /// schedule.
    fn collect_garbage(&mut self) {
        let promised: Vec<Epoch> = self.replicas.iter().map(|r| r.promised).collect();
        self.net.retain(|m| {
            let (epoch, to) = match m {
                Msg::Coordinator { epoch, to, .. }
                | Msg::Join { epoch, to, .. }
                | Msg::Sync { epoch, to, .. }
                | Msg::Append { epoch, to, .. }
                | Msg::Ack { epoch, to, .. } => (*epoch, *to),
            };
            epoch >= promised[to as usize]
        });
        // Of a backup's acknowledgements to one leader only the highest
        // counts (the leader keeps the maximum).
        let best: BTreeMap<(Epoch, Id, Id), usize> =
            self.net.iter().fold(BTreeMap::new(), |mut best, m| {
                if let Msg::Ack {
                    epoch,
                    from,
                    to,
                    durable,
                } = m
                {
                    let d = best.entry((*epoch, *from, *to)).or_insert(0);
                    *d = (*d).max(*durable);
                }
                best
            });
        self.net.retain(|m| match m {
            Msg::Ack {
                epoch,
                from,
                to,
                durable,
            } => best[&(*epoch, *from, *to)] == *durable,
            _ => true,
        });
    }
}

impl Model for Dcms {
    type State = State;
    type Action = Action;

    fn init_states(&self) -> Vec<State> {
        // Replica 0 leads epoch 0 with an empty log, the others follow it:
        // the cluster as `dcms up --bootstrap` starts it.
        let mut replicas = vec![
            Replica {
                promised: 0,
                log_epoch: 0,
                leader: Some(0),
                log: Vec::new(),
                durable: 0,
                role: Role::Backup {
                    leader: Some(0),
                    synced: Some(0),
                },
            };
            self.replicas as usize
        ];
        replicas[0].role = Role::Leader(Leading {
            phase: Phase::Serving,
            reports: (1..self.replicas)
                .map(|n| {
                    (
                        n,
                        LogSummary {
                            log_epoch: 0,
                            log: Vec::new(),
                        },
                    )
                })
                .collect(),
            base_log_epoch: 0,
            start: 0,
            acked: (1..self.replicas).map(|n| (n, 0)).collect(),
        });
        vec![State {
            replicas,
            net: BTreeSet::new(),
            writes: 0,
            crashes: 0,
            acked: Vec::new(),
            coordinators: BTreeMap::from([(0, 0)]),
            broken: None,
            failover_write: false,
        }]
    }

    fn actions(&self, s: &State, actions: &mut Vec<Action>) {
        for id in 0..self.replicas {
            let r = &s.replicas[id as usize];
            if r.role == Role::Down {
                actions.push(Action::Restart(id));
                continue;
            }
            if self.next_epoch(r, id) <= self.max_epoch {
                actions.push(Action::Coordinate(id));
            }
            if r.durable < r.log.len() {
                actions.push(Action::Persist(id));
            }
            if let Role::Leader(l) = &r.role {
                if l.phase == Phase::Serving {
                    if s.writes < self.max_writes {
                        actions.push(Action::Write(id));
                    }
                    if l.acked.values().any(|&d| d < r.log.len()) {
                        actions.push(Action::Replicate(id));
                    }
                }
            }
            if s.crashes < self.max_crashes {
                actions.push(Action::Crash(id));
            }
        }
        for m in &s.net {
            actions.push(Action::Deliver(m.clone()));
        }
    }

    fn next_state(&self, last: &State, action: Action) -> Option<State> {
        let mut s = last.clone();
        match action {
            Action::Coordinate(id) => {
                let r = &mut s.replicas[id as usize];
                let epoch = self.next_epoch(r, id);
                r.promised = epoch;
                r.leader = Some(id);
                let report = LogSummary {
                    log_epoch: r.log_epoch,
                    log: r.log.clone(),
                };
                r.role = Role::Leader(Leading {
                    phase: Phase::Collecting,
                    reports: BTreeMap::from([(id, report)]),
                    base_log_epoch: 0,
                    start: 0,
                    acked: BTreeMap::new(),
                });
                if let Some(other) = s.coordinators.insert(epoch, id) {
                    if other != id {
                        s.broken = Some("two coordinators in one epoch");
                    }
                }
                for to in (0..self.replicas).filter(|&n| n != id) {
                    s.net.insert(Msg::Coordinator {
                        epoch,
                        from: id,
                        to,
                    });
                }
                self.choose(&mut s, id);
            }
            Action::Deliver(m) => {
                let before = s.clone();
                self.deliver(&mut s, m);
                if s == before {
                    return None;
                }
            }
            Action::Persist(id) => {
                let r = &mut s.replicas[id as usize];
                r.durable = r.log.len();
                self.progress(&mut s, id);
            }
            Action::Write(id) => {
                let value = s.writes;
                s.writes += 1;
                let r = &mut s.replicas[id as usize];
                r.log.push(Entry {
                    epoch: r.promised,
                    value,
                });
            }
            Action::Replicate(id) => {
                let r = &s.replicas[id as usize];
                let Role::Leader(l) = &r.role else {
                    return None;
                };
                let sends: Vec<Msg> = l
                    .acked
                    .iter()
                    .filter(|(_, &d)| d < r.log.len())
                    .map(|(&n, &d)| Msg::Append {
                        epoch: r.promised,
                        to: n,
                        from: d,
                        entries: r.log[d..].to_vec(),
                    })
                    .collect();
                let before = s.net.len();
                s.net.extend(sends);
                if s.net.len() == before {
                    return None;
                }
            }
            Action::Crash(id) => {
                s.crashes += 1;
                let r = &mut s.replicas[id as usize];
                r.log.truncate(r.durable);
                r.role = Role::Down;
            }
            Action::Restart(id) => {
                // `Replica::new`: a replica whose durable log epoch is its
                // promised epoch follows that epoch's leader, synced; any
                // other waits for its leader's `Sync` (a restarted leader
                // too: it does not lead again without an election).
                let r = &mut s.replicas[id as usize];
                let synced = r.log_epoch == r.promised
                    && r.leader != Some(id)
                    && self.mutation != Some(Mutation::RestartUnsynced);
                r.role = if synced {
                    Role::Backup {
                        leader: r.leader,
                        synced: Some(0),
                    }
                } else {
                    Role::Backup {
                        leader: None,
                        synced: None,
                    }
                };
                self.progress(&mut s, id);
            }
        }
        s.collect_garbage();
        Some(s)
    }

    fn properties(&self) -> Vec<Property<Self>> {
        vec![
            Property::always("no rule is broken", |_: &Dcms, s: &State| {
                s.broken.is_none()
            }),
            Property::always(
                "acknowledged writes are durable on a majority",
                |m: &Dcms, s: &State| {
                    (0..s.acked.len()).all(|k| {
                        s.replicas
                            .iter()
                            .filter(|r| r.durable > k && r.log[k] == s.acked[k])
                            .count()
                            >= m.majority()
                    })
                },
            ),
            Property::sometimes(
                "a new leader acknowledges its own write",
                |_: &Dcms, s: &State| s.failover_write,
            ),
        ]
    }

    fn within_boundary(&self, s: &State) -> bool {
        s.broken.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use stateright::{Checker, HasDiscoveries};

    /// Every schedule of at most `DEPTH` steps, breadth first: three
    /// replicas, epochs up to 2 (two elections after the first leader's
    /// epoch 0), two writes, one crash. About 1.9 million states; the
    /// example `check` explores further (`cargo run --release -p dcms-model
    /// --example check -- 3 2 1 600`).
    const DEPTH: usize = 22;

    #[test]
    fn election_and_commit_rules_hold() {
        let checker = Dcms::small(2)
            .checker()
            .threads(2)
            .target_max_depth(DEPTH)
            .spawn_bfs()
            .join();
        checker.assert_properties();
        let states = checker.unique_state_count();
        assert!(
            states > 1_000_000,
            "the bounds explore little: {states} states"
        );
    }

    /// A broken rule is caught (depth first, stopping at the first
    /// counterexample): the properties have teeth.
    fn caught(mutation: Mutation) -> bool {
        let model = Dcms {
            mutation: Some(mutation),
            ..Dcms::small(2)
        };
        let checker = model
            .checker()
            .threads(2)
            .target_max_depth(30)
            .finish_when(HasDiscoveries::AnyFailures)
            .spawn_dfs()
            .join();
        checker
            .discovery("acknowledged writes are durable on a majority")
            .is_some()
            || checker.discovery("no rule is broken").is_some()
    }

    #[test]
    fn keeping_a_deposed_leaders_uncommitted_entries_is_caught() {
        assert!(caught(Mutation::AlwaysSuffix));
    }

    #[test]
    fn adopting_a_longer_log_of_an_older_epoch_is_caught() {
        assert!(caught(Mutation::IgnoreLogEpoch));
    }

    #[test]
    fn a_backup_restarting_unsynced_is_caught() {
        assert!(caught(Mutation::RestartUnsynced));
    }
}
