//! A simulated durable store per replica: a log with group commit, an
//! installed snapshot as its base, and the replica's [`Meta`].
//!
//! Entries handed out by a replica's `Ready.persist` queue up; one write at
//! a time takes a random time and makes every entry it carries durable at
//! once; entries arriving meanwhile go into the next write (group commit).
//! A snapshot install is a write of its own, in order with the entries: it
//! replaces everything before it. The meta is written at once (the shell
//! writes it synchronously before sending). A crash loses the queue and, at
//! random, the write under way (a write is atomic); a wipe loses everything.

use crate::recover::Recovered;
use crate::replica::Meta;
use crate::session::Sessions;
use crate::snapshot::Snapshot;
use dcms_core::store::LogHash;
use dcms_core::{ClinicState, LogEntry};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

/// One queued write.
#[derive(Debug, Clone)]
enum Write {
    Entry(Box<LogEntry>),
    Install(Box<Snapshot>),
}

/// What a completed write made durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    UpTo(u64),
    Installed,
}

#[derive(Debug, Default)]
pub struct Disk {
    /// The installed snapshot everything else follows.
    pub base: Option<Snapshot>,
    /// Durable entries after the base, in log order.
    pub entries: Vec<LogEntry>,
    pub meta: Option<Meta>,
    writing: Option<(u64, Vec<Write>)>,
    queued: Vec<Write>,
    pub max_write_ms: u64,
    pub writes: u64,
}

impl Disk {
    pub fn new(max_write_ms: u64) -> Disk {
        Disk {
            max_write_ms,
            ..Disk::default()
        }
    }

    fn base_position(&self) -> u64 {
        self.base.as_ref().map_or(0, |s| s.position)
    }

    /// The last durable position.
    pub fn durable_position(&self) -> u64 {
        self.base_position() + self.entries.len() as u64
    }

    /// The durable entry at `position`, unless inside the base snapshot.
    pub fn entry(&self, position: u64) -> Option<&LogEntry> {
        let base = self.base_position();
        if position <= base {
            return None;
        }
        self.entries.get((position - base - 1) as usize)
    }

    /// Holds `entry` durably (a base snapshot at or beyond its position
    /// counts: snapshots come from logs the checker verifies).
    pub fn holds(&self, entry: &LogEntry) -> bool {
        entry.position <= self.base_position() || self.entry(entry.position) == Some(entry)
    }

    /// Queues entries to write (they follow on from everything queued).
    pub fn submit(&mut self, rng: &mut ChaCha8Rng, now_ms: u64, entries: Vec<LogEntry>) {
        self.queued
            .extend(entries.into_iter().map(|e| Write::Entry(Box::new(e))));
        self.start(rng, now_ms);
    }

    /// Queues a snapshot install (after everything queued).
    pub fn install(&mut self, rng: &mut ChaCha8Rng, now_ms: u64, snapshot: Snapshot) {
        self.queued.push(Write::Install(Box::new(snapshot)));
        self.start(rng, now_ms);
    }

    fn start(&mut self, rng: &mut ChaCha8Rng, now_ms: u64) {
        if self.writing.is_some() || self.queued.is_empty() {
            return;
        }
        // A batch is a run of entries, or one install.
        let n = match self.queued[0] {
            Write::Install(_) => 1,
            Write::Entry(_) => self
                .queued
                .iter()
                .position(|w| matches!(w, Write::Install(_)))
                .unwrap_or(self.queued.len()),
        };
        let batch: Vec<Write> = self.queued.drain(..n).collect();
        let done = now_ms + rng.gen_range(0..=self.max_write_ms);
        self.writing = Some((done, batch));
    }

    pub fn next_time(&self) -> Option<u64> {
        self.writing.as_ref().map(|(t, _)| *t)
    }

    fn write(&mut self, batch: Vec<Write>) -> Completed {
        self.writes += 1;
        let mut done = Completed::Installed;
        for w in batch {
            match w {
                Write::Entry(e) => {
                    assert_eq!(
                        e.position,
                        self.durable_position() + 1,
                        "persist hands out entries in order"
                    );
                    self.entries.push(*e);
                    done = Completed::UpTo(self.durable_position());
                }
                Write::Install(s) => {
                    self.base = Some(*s);
                    self.entries.clear();
                    done = Completed::Installed;
                }
            }
        }
        done
    }

    /// Completes the write due by `now_ms`.
    pub fn complete(&mut self, rng: &mut ChaCha8Rng, now_ms: u64) -> Option<Completed> {
        let (t, _) = self.writing.as_ref()?;
        if *t > now_ms {
            return None;
        }
        let (_, batch) = self.writing.take().expect("present");
        let done = self.write(batch);
        self.start(rng, now_ms);
        Some(done)
    }

    pub fn is_idle(&self) -> bool {
        self.writing.is_none() && self.queued.is_empty()
    }

    /// The process crashed: a write under way completes or not (a batch is
    /// atomic), and queued writes are lost.
    pub fn crash(&mut self, rng: &mut ChaCha8Rng) {
        if let Some((_, batch)) = self.writing.take() {
            if rng.gen_bool(0.5) {
                self.write(batch);
            }
        }
        self.queued.clear();
    }

    /// The store is lost: the replica restarts empty and amnesiac.
    pub fn wipe(&mut self) {
        self.writing = None;
        self.queued.clear();
        self.base = None;
        self.entries.clear();
        self.meta = Some(Meta::wiped());
    }

    /// What a restarted replica recovers from this disk.
    pub fn recover(&self, reply_cache: usize) -> Recovered {
        let (state, mut sessions) = match &self.base {
            Some(s) => s.restore(reply_cache),
            None => (ClinicState::new(), Sessions::new(reply_cache)),
        };
        for e in &self.entries {
            sessions.record(e);
        }
        let base_hash = self
            .base
            .as_ref()
            .map_or(Some(LogHash::EMPTY), |s| s.log_hash);
        Recovered {
            state: self.replay_onto(state),
            last_applied: self.durable_position(),
            log_hash: base_hash.map(|b| self.entries.iter().fold(b, |h, e| h.chain(e))),
            sessions,
            meta: self.meta,
        }
    }

    /// The state a restart would recover.
    pub fn replay(&self) -> ClinicState {
        let state = match &self.base {
            Some(s) => s.restore(1).0,
            None => ClinicState::new(),
        };
        self.replay_onto(state)
    }

    fn replay_onto(&self, mut state: ClinicState) -> ClinicState {
        for e in &self.entries {
            state.apply(&e.effect);
        }
        state
    }
}
