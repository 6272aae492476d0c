//! The replicated log's types, as every crate sees them: [`LogEntry`] (one
//! executed request: position, request key, effect, reply, FT identity),
//! [`RequestKey`], [`FtRequest`] and [`Retained`] (FT-CORBA's request
//! identities and the replies kept for them), [`LogHash`] (the chained
//! hash of a log) and [`Batch`] (entries with their hashes, for one group
//! commit). The store writes them (`crate::store`, which re-exports them,
//! as does the crate root).
//!
//! Invariants that live here: the log hash starts at all zeros and chains
//! `SHA-256(previous | postcard(entry))`, so the same hash at the same
//! position is the same log whatever epoch wrote it; a [`Batch`] holds one
//! hash per entry, the log's hash after it. Entries travel postcard-encoded
//! (the replicas' datagrams) and are hashed in that encoding: a change to a
//! type here changes both.

use crate::ops::{Effect, Reply};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::sync::Arc;

/// Which request an entry answers: the front end's stream and its sequence
/// number in that stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestKey {
    pub stream: u64,
    pub seq: u64,
}

/// One executed request, as the log holds it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogEntry {
    /// Position in the leader's log (1, 2, ...).
    pub position: u64,
    pub key: RequestKey,
    pub effect: Effect,
    pub reply: Reply,
    /// The client's FT-CORBA request identity, when it sent one: a retry
    /// with the same identity, through any front end, gets this entry's
    /// reply instead of executing again (see [`Retained`]).
    pub ft: Option<FtRequest>,
}

/// An FT-CORBA request identity (`FT::FTRequestServiceContext`): who sent
/// it (`client_id`), which of its requests (`retention_id`), and until when
/// (`expires_ms`, milliseconds since the Unix epoch) the request may
/// execute and its reply is kept for retries.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct FtRequest {
    pub client_id: String,
    pub retention_id: i32,
    pub expires_ms: u64,
}

/// An FT expiration further ahead than this is refused (front end and
/// leader alike): every replica keeps a retained reply until its
/// expiration, so this bounds the table at the write rate times ten
/// minutes.
pub const MAX_FT_EXPIRATION_MS: u64 = 10 * 60 * 1000;

/// Longest FT client ID accepted, in bytes (FT-CORBA clients use an ORB or
/// host name and a process ID, a few dozen bytes).
pub const MAX_FT_CLIENT_ID_BYTES: usize = 256;

/// A retained reply: what the first entry with an FT identity answered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Retained {
    pub client_id: String,
    pub retention_id: i32,
    pub expires_ms: u64,
    /// The log position of the entry that executed it.
    pub position: u64,
    pub reply: Reply,
}

/// A retained reply is kept this long after its expiration (in the log's
/// time), so that leaders whose clocks differ by less never disagree on
/// whether it is gone: a retry that arrives before its expiration on one
/// leader's clock finds it on any other. Ten times the replicas' assumed
/// clock skew (`ReplicaConfig::clock_skew_ms`, 500 ms).
pub const RETAINED_GRACE_MS: u64 = 5_000;

/// The chained hash of a log up to a position: `H(0)` is all zeros,
/// `H(p) = SHA-256(H(p - 1) | postcard(entry p))`. Two logs with the same
/// hash at the same position hold the same entries up to it, whatever epoch
/// wrote them (the replicas compare logs with it instead of sending
/// snapshots).
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct LogHash(pub [u8; 32]);

impl LogHash {
    /// The hash of the empty log.
    pub const EMPTY: LogHash = LogHash([0; 32]);

    /// The hash of this log extended by `entry`.
    pub fn chain(&self, entry: &LogEntry) -> LogHash {
        use sha2::{Digest as _, Sha256};
        let mut h = Sha256::new();
        h.update(self.0);
        h.update(postcard::to_allocvec(entry).expect("log entries always encode"));
        LogHash(h.finalize().into())
    }
}

/// Entries for one [`Store::commit_batch`](crate::Store::commit_batch), in
/// log order, each with the log's hash after it as the replica chained it
/// when applying: the store keeps those hashes rather than computing them a
/// second time.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Batch {
    entries: Vec<Arc<LogEntry>>,
    /// `hashes[i]`: the log's hash after `entries[i]` (`None` while the
    /// replica does not know its log's hash).
    hashes: Vec<Option<LogHash>>,
}

impl Batch {
    pub fn new() -> Batch {
        Batch::default()
    }

    /// `entries` chained from `base`, the log's hash before the first.
    pub fn chained(base: Option<LogHash>, entries: Vec<LogEntry>) -> Batch {
        let hashes = chain_hashes(base, &entries);
        let entries = entries.into_iter().map(Arc::new).collect();
        Batch { entries, hashes }
    }

    /// Adds the next entry, with the log's hash after it.
    pub fn push(&mut self, entry: Arc<LogEntry>, hash_after: Option<LogHash>) {
        self.entries.push(entry);
        self.hashes.push(hash_after);
    }

    /// Adds `later`'s entries after these (the store thread's group commit).
    pub fn append(&mut self, mut later: Batch) {
        self.entries.append(&mut later.entries);
        self.hashes.append(&mut later.hashes);
    }

    pub fn entries(&self) -> &[Arc<LogEntry>] {
        &self.entries
    }

    pub fn hashes(&self) -> &[Option<LogHash>] {
        &self.hashes
    }

    pub fn into_entries(self) -> Vec<LogEntry> {
        self.entries.into_iter().map(Arc::unwrap_or_clone).collect()
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    pub fn clear(&mut self) {
        self.entries.clear();
        self.hashes.clear();
    }
}

/// The log's hash after each of `entries`, chained from `base`.
pub(crate) fn chain_hashes<E: Borrow<LogEntry>>(
    base: Option<LogHash>,
    entries: &[E],
) -> Vec<Option<LogHash>> {
    let mut hash = base;
    entries
        .iter()
        .map(|e| {
            hash = hash.map(|h| h.chain(e.borrow()));
            hash
        })
        .collect()
}

impl std::fmt::Debug for LogHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LogHash({})", hex::encode(&self.0[..4]))
    }
}
