//! The per-stream table that makes execution at-most-once.
//!
//! For each stream it keeps the head (the highest executed sequence number;
//! requests of a stream execute strictly in order, so every number up to the
//! head has executed) and the replies of the last `keep` executed numbers
//! with their log positions. Every replica keeps it, leader and backups
//! alike, so a backup that becomes leader answers retransmits from it.
//!
//! `keep` must be at least the front ends' window (requests in flight): a
//! front end never waits for a number more than its window below its newest,
//! so an older reply is never asked for again.
//!
//! It also keeps the replies of requests that carried an FT-CORBA identity
//! (`FtRequest`: client ID, retention ID, expiration), whatever stream
//! brought them: a retry through another front end (another stream) finds
//! the first execution's reply here and is not executed again. Such a reply
//! is kept until its expiration plus [`RETAINED_GRACE_MS`] has passed in
//! the log's time (the executing leader's clock, carried by every entry), so
//! every replica holds the same ones.

use crate::ids::{Position, Seq, StreamId};
use dcms_core::store::RETAINED_GRACE_MS;
use dcms_core::{FtRequest, LogEntry, Reply, RequestKey, Retained};
use std::collections::{BTreeMap, HashMap};

/// What the table knows about one request.
#[derive(Debug, PartialEq, Eq)]
pub enum Lookup<'a> {
    /// Not executed yet (the number is beyond the head).
    NotExecuted,
    /// Executed at `position` with this reply.
    Executed {
        position: Position,
        reply: &'a Reply,
    },
    /// Executed, but so long ago that its reply is no longer kept.
    Forgotten,
}

#[derive(Clone, Debug, Default)]
struct StreamSession {
    head: Seq,
    replies: BTreeMap<Seq, (Position, Reply)>,
}

/// Heads and recent replies of every stream, and the retained replies of
/// FT requests.
#[derive(Clone, Debug)]
pub struct Sessions {
    streams: BTreeMap<StreamId, StreamSession>,
    keep: usize,
    /// By client ID, then retention ID (looked up by `&str`, no copy).
    retained: HashMap<String, HashMap<i32, Retained>>,
    /// The same identities by expiration, in the order they came, for
    /// pruning and export.
    expiries: BTreeMap<u64, Vec<(String, i32)>>,
    /// How many identities are retained.
    retained_count: usize,
    /// The newest log time applied (milliseconds since the Unix epoch).
    log_time: u64,
}

impl Sessions {
    pub fn new(keep: usize) -> Sessions {
        assert!(keep >= 1, "keep at least the last reply of each stream");
        Sessions {
            streams: BTreeMap::new(),
            keep,
            retained: HashMap::new(),
            expiries: BTreeMap::new(),
            retained_count: 0,
            log_time: 0,
        }
    }

    /// The retained reply of an FT request identity, if it executed (in
    /// any stream) and has not expired from the table.
    pub fn retained(&self, ft: &FtRequest) -> Option<&Retained> {
        self.retained
            .get(ft.client_id.as_str())?
            .get(&ft.retention_id)
    }

    /// How many FT replies are retained.
    pub fn retained_len(&self) -> usize {
        self.retained_count
    }

    /// The newest log time applied.
    pub fn log_time(&self) -> u64 {
        self.log_time
    }

    /// Every retained reply, oldest expiration first (for a snapshot).
    pub fn export_retained(&self) -> Vec<Retained> {
        self.expiries
            .values()
            .flatten()
            .map(|(c, r)| self.retained[c.as_str()][r].clone())
            .collect()
    }

    /// Loads a retained reply (recovery, snapshot); one already there for
    /// the same identity stays.
    pub fn preload_retained(&mut self, r: Retained) {
        if let Some(client) = self.retained.get(r.client_id.as_str()) {
            if client.contains_key(&r.retention_id) {
                return;
            }
        }
        self.expiries
            .entry(r.expires_ms)
            .or_default()
            .push((r.client_id.clone(), r.retention_id));
        self.retained_count += 1;
        self.retained
            .entry(r.client_id.clone())
            .or_default()
            .insert(r.retention_id, r);
    }

    /// Drops the retained replies whose expiration plus the grace is behind
    /// the log's time.
    fn prune_retained(&mut self) {
        while let Some((&expires, _)) = self.expiries.first_key_value() {
            if expires.saturating_add(RETAINED_GRACE_MS) >= self.log_time {
                break;
            }
            let (_, ids) = self.expiries.pop_first().expect("non-empty");
            for (client_id, retention_id) in ids {
                let client = self
                    .retained
                    .get_mut(client_id.as_str())
                    .expect("an expiry names a retained identity");
                client.remove(&retention_id);
                if client.is_empty() {
                    self.retained.remove(client_id.as_str());
                }
                self.retained_count -= 1;
            }
        }
    }

    /// The highest executed number of `stream` (0 when none).
    pub fn head(&self, stream: StreamId) -> Seq {
        self.streams.get(&stream).map_or(0, |s| s.head)
    }

    /// Every stream's head, in stream order.
    pub fn heads(&self) -> impl Iterator<Item = RequestKey> + '_ {
        self.streams.iter().map(|(&stream, s)| RequestKey {
            stream,
            seq: s.head,
        })
    }

    pub fn lookup(&self, key: RequestKey) -> Lookup<'_> {
        let Some(s) = self.streams.get(&key.stream) else {
            return Lookup::NotExecuted;
        };
        if key.seq > s.head {
            return Lookup::NotExecuted;
        }
        match s.replies.get(&key.seq) {
            Some((position, reply)) => Lookup::Executed {
                position: *position,
                reply,
            },
            None => Lookup::Forgotten,
        }
    }

    /// Drops the kept replies of `stream` (it was silent past the expiry),
    /// keeping its head: what it executed still never executes again, but
    /// a retransmission learns only that its reply is gone. Returns the head
    /// when the stream had replies to drop.
    pub fn drop_replies(&mut self, stream: StreamId) -> Option<Seq> {
        let s = self.streams.get_mut(&stream)?;
        if s.replies.is_empty() {
            return None;
        }
        s.replies.clear();
        Some(s.head)
    }

    /// Streams that still keep replies.
    pub fn streams_with_replies(&self) -> impl Iterator<Item = StreamId> + '_ {
        self.streams
            .iter()
            .filter(|(_, s)| !s.replies.is_empty())
            .map(|(&stream, _)| stream)
    }

    /// Records a newly applied entry. Its number must be the stream's next.
    pub fn record(&mut self, entry: &LogEntry) {
        let s = self.streams.entry(entry.key.stream).or_default();
        assert_eq!(
            entry.key.seq,
            s.head + 1,
            "stream {} executes out of order at position {}",
            entry.key.stream,
            entry.position
        );
        s.head = entry.key.seq;
        s.replies
            .insert(entry.key.seq, (entry.position, entry.reply.clone()));
        while s.replies.len() > self.keep {
            s.replies.pop_first();
        }
        if let Some(ft) = &entry.ft {
            self.preload_retained(Retained {
                client_id: ft.client_id.clone(),
                retention_id: ft.retention_id,
                expires_ms: ft.expires_ms,
                position: entry.position,
                reply: entry.reply.clone(),
            });
        }
        self.log_time = self.log_time.max(entry.effect.audit.time_ms);
        self.prune_retained();
    }

    /// Loads a stored reply at recovery (any order; numbers up to the
    /// highest loaded count as executed).
    pub fn preload(&mut self, key: RequestKey, position: Position, reply: Reply) {
        let s = self.streams.entry(key.stream).or_default();
        s.head = s.head.max(key.seq);
        s.replies.insert(key.seq, (position, reply));
        while s.replies.len() > self.keep {
            s.replies.pop_first();
        }
    }

    /// Every stream's head and kept replies (for a snapshot).
    pub fn export(&self) -> Vec<crate::snapshot::StreamSnapshot> {
        self.streams
            .iter()
            .map(|(&stream, s)| crate::snapshot::StreamSnapshot {
                stream,
                head: s.head,
                replies: s
                    .replies
                    .iter()
                    .map(|(&seq, (p, r))| (seq, *p, r.clone()))
                    .collect(),
            })
            .collect()
    }

    /// The table a snapshot describes.
    pub fn import(
        keep: usize,
        streams: &[crate::snapshot::StreamSnapshot],
        retained: &[Retained],
    ) -> Sessions {
        let mut s = Sessions::new(keep);
        for r in retained {
            s.preload_retained(r.clone());
        }
        for st in streams {
            s.preload_head(RequestKey {
                stream: st.stream,
                seq: st.head,
            });
            for (seq, position, reply) in &st.replies {
                s.preload(
                    RequestKey {
                        stream: st.stream,
                        seq: *seq,
                    },
                    *position,
                    reply.clone(),
                );
            }
        }
        s
    }

    /// Sets a stream's head at recovery (its replies may be forgotten).
    pub fn preload_head(&mut self, key: RequestKey) {
        let s = self.streams.entry(key.stream).or_default();
        s.head = s.head.max(key.seq);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcms_core::{AuditEntry, Effect};

    fn entry(position: Position, stream: StreamId, seq: Seq) -> LogEntry {
        LogEntry {
            position,
            key: RequestKey { stream, seq },
            effect: Effect {
                change: None,
                audit: AuditEntry {
                    time_ms: 0,
                    manager_id: String::new(),
                    clinic: None,
                    operation: "getRecordCounts".into(),
                    arguments: String::new(),
                    outcome: "ok".into(),
                    authenticated: None,
                },
            },
            reply: Ok(dcms_core::Outcome::Counts(Default::default())),
            ft: None,
        }
    }

    #[test]
    fn heads_advance_in_order_and_old_replies_are_forgotten() {
        let mut s = Sessions::new(2);
        for seq in 1..=3 {
            s.record(&entry(seq, 7, seq));
        }
        assert_eq!(s.head(7), 3);
        assert_eq!(s.head(8), 0);
        assert_eq!(
            s.lookup(RequestKey { stream: 7, seq: 1 }),
            Lookup::Forgotten
        );
        assert!(matches!(
            s.lookup(RequestKey { stream: 7, seq: 3 }),
            Lookup::Executed { position: 3, .. }
        ));
        assert_eq!(
            s.lookup(RequestKey { stream: 7, seq: 4 }),
            Lookup::NotExecuted
        );
    }

    #[test]
    #[should_panic(expected = "out of order")]
    fn a_gap_in_a_stream_is_a_bug() {
        let mut s = Sessions::new(4);
        s.record(&entry(1, 7, 2));
    }
}
