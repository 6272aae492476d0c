//! A simulated durable log per replica, with group commit.
//!
//! Entries handed out by a replica's `Ready.persist` queue up; one write at
//! a time takes a random time and makes every entry it carries durable at
//! once; entries arriving meanwhile go into the next write (group commit).

use crate::recover::Recovered;
use crate::session::Sessions;
use dcms_core::{ClinicState, LogEntry};
use rand::Rng;
use rand_chacha::ChaCha8Rng;

#[derive(Debug, Default)]
pub struct Disk {
    /// Everything durable, in log order (positions 1, 2, ...).
    pub durable: Vec<LogEntry>,
    writing: Option<(u64, Vec<LogEntry>)>,
    queued: Vec<LogEntry>,
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

    /// Queues entries to write (they follow on from everything queued).
    pub fn submit(&mut self, rng: &mut ChaCha8Rng, now_ms: u64, entries: Vec<LogEntry>) {
        let last = self
            .queued
            .last()
            .or_else(|| self.writing.as_ref().and_then(|(_, w)| w.last()))
            .or(self.durable.last())
            .map_or(0, |e| e.position);
        for (i, e) in entries.iter().enumerate() {
            assert_eq!(
                e.position,
                last + 1 + i as u64,
                "persist hands out entries in order"
            );
        }
        self.queued.extend(entries);
        self.start(rng, now_ms);
    }

    fn start(&mut self, rng: &mut ChaCha8Rng, now_ms: u64) {
        if self.writing.is_none() && !self.queued.is_empty() {
            let done = now_ms + rng.gen_range(0..=self.max_write_ms);
            self.writing = Some((done, std::mem::take(&mut self.queued)));
        }
    }

    pub fn next_time(&self) -> Option<u64> {
        self.writing.as_ref().map(|(t, _)| *t)
    }

    /// Completes the write due by `now_ms`; returns the new durable position.
    pub fn complete(&mut self, rng: &mut ChaCha8Rng, now_ms: u64) -> Option<u64> {
        let (t, _) = self.writing.as_ref()?;
        if *t > now_ms {
            return None;
        }
        let (_, batch) = self.writing.take().expect("present");
        self.durable.extend(batch);
        self.writes += 1;
        self.start(rng, now_ms);
        let last = self.durable.last().expect("non-empty batch").position;
        assert_eq!(
            last,
            self.durable.len() as u64,
            "durable log is contiguous from 1"
        );
        Some(last)
    }

    pub fn is_idle(&self) -> bool {
        self.writing.is_none() && self.queued.is_empty()
    }

    /// The process crashed: a write under way completes or not (a batch is
    /// atomic), and queued entries are lost.
    pub fn crash(&mut self, rng: &mut ChaCha8Rng) {
        if let Some((_, batch)) = self.writing.take() {
            if rng.gen_bool(0.5) {
                self.durable.extend(batch);
                self.writes += 1;
            }
        }
        self.queued.clear();
    }

    /// What a restarted replica recovers from this disk.
    pub fn recover(&self, reply_cache: usize) -> Recovered {
        let mut sessions = Sessions::new(reply_cache);
        for e in &self.durable {
            sessions.record(e);
        }
        Recovered {
            state: self.replay(),
            last_applied: self.durable.len() as u64,
            sessions,
            meta: None,
        }
    }

    /// The state a restart would recover: every durable effect applied.
    pub fn replay(&self) -> ClinicState {
        let mut state = ClinicState::new();
        for e in &self.durable {
            state.apply(&e.effect);
        }
        state
    }
}
