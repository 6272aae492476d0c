//! A replica's durable store: one SQLite database (WAL mode).
//!
//! What it keeps: the records, the last applied log position, the reply to
//! every executed request (keyed by stream and sequence number, for duplicate
//! detection) and the audit trail. [`Store::commit`] writes a batch of log
//! entries in one transaction: each entry's change, audit line and reply, and
//! the new last applied position. So after a crash the store holds exactly
//! its last committed batch, never part of one.
//!
//! Invariant: committed positions are contiguous. Entry `n` is committed only
//! right after entry `n - 1` (the first is 1). The chain the caller hands
//! over continues the store's (checked in debug builds).
//!
//! This file is the API ([`Store`], [`StoreError`], [`SyncMode`]); the
//! schema and its migrations are in `schema.rs`, the row encoding in
//! `rows.rs`, the log's types in [`crate::log`] (re-exported here).

pub(crate) mod rows;
mod schema;

pub use crate::log::{
    Batch, FtRequest, LogEntry, LogHash, RequestKey, Retained, MAX_FT_CLIENT_ID_BYTES,
    MAX_FT_EXPIRATION_MS, RETAINED_GRACE_MS,
};

use crate::log::chain_hashes;
use crate::model::Record;
use crate::ops::{AuditEntry, Change, Reply};
use crate::state::{ClinicState, StateDigest};
use rows::{for_each_record, read_audit, read_retained, write_audit, write_change, write_retained};
use rusqlite::{params, Connection, OptionalExtension};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Errors of the store. None of them leaves a partial write behind.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database {path}: {source}")]
    Sqlite {
        path: PathBuf,
        #[source]
        source: rusqlite::Error,
    },
    #[error("entry at position {got} does not follow the last applied position {last}")]
    OutOfOrder { last: u64, got: u64 },
    #[error(
        "database {path} was written by schema version {found}; this dcms reads version {expected}"
    )]
    Schema {
        path: PathBuf,
        found: i64,
        expected: i64,
    },
    #[error("database {path} holds a value that cannot be read: {what}")]
    Corrupt { path: PathBuf, what: String },
    #[error("snapshot: {0}")]
    Snapshot(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// How hard SQLite works to make a commit survive power loss.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SyncMode {
    /// fsync the WAL on every commit: survives power loss.
    #[default]
    Full,
    /// fsync only at checkpoints: survives a process crash, and a power loss
    /// may lose the last commits (never corrupts).
    Normal,
}

impl SyncMode {
    fn pragma(self) -> &'static str {
        match self {
            SyncMode::Full => "FULL",
            SyncMode::Normal => "NORMAL",
        }
    }

    pub fn parse(text: &str) -> Option<SyncMode> {
        match text.trim().to_ascii_lowercase().as_str() {
            "full" => Some(SyncMode::Full),
            "normal" => Some(SyncMode::Normal),
            _ => None,
        }
    }
}
/// An open store.
pub struct Store {
    conn: Connection,
    path: PathBuf,
    last_applied: u64,
    /// The log's hash at `last_applied` (`None` when unknown: a store of
    /// schema version 1, or one restored from a backup).
    log_hash: Option<LogHash>,
    /// Replies kept per stream (the newest), when set: older ones are
    /// deleted in the transaction that stores newer ones.
    reply_window: Option<u64>,
    /// The log time of the next deletion of expired retained replies.
    next_retained_prune_ms: u64,
}
/// Expired retained replies are deleted at most this often (log time).
const RETAINED_PRUNE_EVERY_MS: u64 = 1_000;

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .field("last_applied", &self.last_applied)
            .finish()
    }
}

impl Store {
    /// Opens (creating if needed) the database at `path`.
    pub fn open(path: impl AsRef<Path>, sync: SyncMode) -> Result<Store> {
        let path = path.as_ref().to_path_buf();
        let conn = Connection::open(&path).map_err(|e| sql(&path, e))?;
        let mut store = Store {
            conn,
            path,
            last_applied: 0,
            log_hash: Some(LogHash::EMPTY),
            reply_window: None,
            next_retained_prune_ms: 0,
        };
        store.init(sync)?;
        Ok(store)
    }

    /// Keeps only the newest `window` replies of each stream from now on
    /// (what at-most-once execution needs: a front end never asks again
    /// for a reply further back than its window of requests in flight).
    /// Without it, every reply is kept.
    pub fn keep_replies(&mut self, window: u64) {
        assert!(window >= 1, "keep at least the last reply of each stream");
        self.reply_window = Some(window);
    }

    fn init(&mut self, sync: SyncMode) -> Result<()> {
        let e = |e| sql(&self.path, e);
        self.conn
            .pragma_update(None, "journal_mode", "WAL")
            .map_err(e)?;
        self.conn
            .pragma_update(None, "synchronous", sync.pragma())
            .map_err(e)?;
        // Checkpoint every 16 MiB of WAL rather than 4: fewer checkpoints
        // (each writes and fsyncs the main file) on the commit path.
        self.conn
            .pragma_update(None, "wal_autocheckpoint", 4096)
            .map_err(e)?;
        self.conn
            .busy_timeout(std::time::Duration::from_secs(5))
            .map_err(e)?;
        self.create_or_migrate()?;
        // Every committed entry has its audit line (position is its key),
        // written in the entry's transaction: the highest one is the last
        // applied position. `meta.last_applied` covers a restored snapshot
        // whose audit trail was empty.
        let audited: i64 = self
            .conn
            .query_row("SELECT COALESCE(MAX(position), 0) FROM audit", [], |r| {
                r.get(0)
            })
            .map_err(|e| sql(&self.path, e))?;
        self.last_applied = (self.meta("last_applied")?.unwrap_or(0).max(audited)) as u64;
        self.log_hash = self.read_log_hash()?;
        Ok(())
    }

    /// The log hash at `last_applied`: an installed snapshot's when it is
    /// the last thing applied, else the last audit line's.
    fn read_log_hash(&self) -> Result<Option<LogHash>> {
        if self.last_applied == 0 {
            return Ok(Some(LogHash::EMPTY));
        }
        let e = |e| sql(&self.path, e);
        let at = self.last_applied as i64;
        let base: Option<Option<Vec<u8>>> = self
            .conn
            .query_row(
                "SELECT hash FROM chain_base WHERE position = ?1",
                [at],
                |r| r.get(0),
            )
            .optional()
            .map_err(e)?;
        let bytes = match base {
            Some(b) => b,
            None => self
                .conn
                .query_row("SELECT chain FROM audit WHERE position = ?1", [at], |r| {
                    r.get::<_, Option<Vec<u8>>>(0)
                })
                .optional()
                .map_err(e)?
                .flatten(),
        };
        Ok(bytes.and_then(|b| <[u8; 32]>::try_from(b.as_slice()).ok().map(LogHash)))
    }

    /// The chained hash of the log up to [`Store::last_applied`], when
    /// known.
    pub fn log_hash(&self) -> Option<LogHash> {
        self.log_hash
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The position of the last committed entry (0 for an empty store).
    pub fn last_applied(&self) -> u64 {
        self.last_applied
    }

    /// Commits `entries` in one transaction (group commit), chaining the
    /// log's hash over them. Their positions must follow on from
    /// [`Store::last_applied`] without a gap; otherwise nothing is written.
    pub fn commit(&mut self, entries: &[LogEntry]) -> Result<()> {
        let hashes = chain_hashes(self.log_hash, entries);
        self.write(entries, &hashes)
    }

    /// As [`Store::commit`], with the hashes the replica chained already.
    pub fn commit_batch(&mut self, batch: &Batch) -> Result<()> {
        self.write(batch.entries(), batch.hashes())
    }

    fn write<E: Borrow<LogEntry>>(
        &mut self,
        entries: &[E],
        hashes: &[Option<LogHash>],
    ) -> Result<()> {
        assert_eq!(entries.len(), hashes.len(), "a hash for every entry");
        // The caller's chain continues this store's (checked where tests
        // run: it costs a SHA-256 per entry).
        debug_assert_eq!(
            hashes,
            chain_hashes(self.log_hash, entries),
            "the batch's hashes do not continue the store's chain"
        );
        let entries = || entries.iter().map(Borrow::<LogEntry>::borrow);
        for (expected, entry) in (self.last_applied + 1..).zip(entries()) {
            if entry.position != expected {
                return Err(StoreError::OutOfOrder {
                    last: expected - 1,
                    got: entry.position,
                });
            }
        }
        let Some(last) = entries().last() else {
            return Ok(());
        };
        let path = self.path.clone();
        let e = |e| sql(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        for (entry, hash) in entries().zip(hashes) {
            if let Some(change) = &entry.effect.change {
                write_change(&tx, change).map_err(e)?;
            }
            write_audit(&tx, entry.position, &entry.effect.audit, hash.as_ref()).map_err(e)?;
            let reply = postcard::to_allocvec(&entry.reply).expect("replies always encode");
            tx.prepare_cached(
                "INSERT OR REPLACE INTO replies (stream, seq, position, reply) VALUES (?1, ?2, ?3, ?4)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    entry.key.stream as i64,
                    entry.key.seq as i64,
                    entry.position as i64,
                    reply
                ])
            })
            .map_err(e)?;
            if let Some(ft) = &entry.ft {
                // The first entry of an identity is the one retained; a
                // retry's entry carries the same reply.
                write_retained(
                    &tx,
                    &Retained {
                        client_id: ft.client_id.clone(),
                        retention_id: ft.retention_id,
                        expires_ms: ft.expires_ms,
                        position: entry.position,
                        reply: entry.reply.clone(),
                    },
                )
                .map_err(e)?;
            }
        }
        // Retained replies expire in the log's time (the executing leader's
        // clock), the same on every replica.
        let log_time = entries().map(|x| x.effect.audit.time_ms).max().unwrap_or(0);
        if log_time >= self.next_retained_prune_ms {
            tx.prepare_cached("DELETE FROM retained WHERE expires_ms < ?1")
                .and_then(|mut s| {
                    s.execute(params![log_time.saturating_sub(RETAINED_GRACE_MS) as i64])
                })
                .map_err(e)?;
            self.next_retained_prune_ms = log_time + RETAINED_PRUNE_EVERY_MS;
        }
        if let Some(window) = self.reply_window {
            // One range delete per stream of the batch, in its transaction:
            // the table holds at most `window` replies per stream.
            let mut newest: BTreeMap<u64, u64> = BTreeMap::new();
            for entry in entries() {
                let seq = newest.entry(entry.key.stream).or_default();
                *seq = (*seq).max(entry.key.seq);
            }
            for (stream, seq) in newest.into_iter().filter(|&(_, s)| s > window) {
                tx.prepare_cached("DELETE FROM replies WHERE stream = ?1 AND seq <= ?2")
                    .and_then(|mut s| s.execute(params![stream as i64, (seq - window) as i64]))
                    .map_err(e)?;
            }
        }
        // No `meta` write: the audit lines just written record the last
        // applied position (see `init`), and one page less per commit counts.
        tx.commit().map_err(e)?;
        self.last_applied = last.position;
        self.log_hash = *hashes.last().expect("entries is not empty");
        Ok(())
    }

    /// Drops the stored replies of each `(stream, head)` up to `head`,
    /// keeping the head in `stream_heads` (a silent stream's replies are no
    /// longer needed; its head still prevents a second execution). One
    /// transaction; replies stored after `head` stay.
    pub fn forget_replies(&mut self, heads: &[RequestKey]) -> Result<()> {
        let path = self.path.clone();
        let e = |e| sql(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        for key in heads {
            tx.prepare_cached(
                "INSERT INTO stream_heads (stream, head) VALUES (?1, ?2)
                 ON CONFLICT(stream) DO UPDATE SET head = MAX(head, excluded.head)",
            )
            .and_then(|mut s| s.execute(params![key.stream as i64, key.seq as i64]))
            .map_err(e)?;
            tx.prepare_cached("DELETE FROM replies WHERE stream = ?1 AND seq <= ?2")
                .and_then(|mut s| s.execute(params![key.stream as i64, key.seq as i64]))
                .map_err(e)?;
        }
        tx.commit().map_err(e)
    }

    /// Loads every record into an in-memory [`ClinicState`].
    pub fn load_state(&self) -> Result<ClinicState> {
        Ok(ClinicState::from_records(self.records()?))
    }

    /// Every record, in ID order.
    pub fn records(&self) -> Result<Vec<Record>> {
        let mut out = Vec::new();
        for_each_record(&self.conn, &self.path, |r| out.push(r))?;
        Ok(out)
    }

    /// The digest of the stored records (a full scan; the in-memory state
    /// keeps the same digest incrementally).
    pub fn digest(&self) -> Result<StateDigest> {
        Ok(StateDigest::of(&self.records()?))
    }

    /// The stored reply to a request, with the position that executed it.
    pub fn reply(&self, key: RequestKey) -> Result<Option<(u64, Reply)>> {
        let row: Option<(i64, Vec<u8>)> = self
            .conn
            .prepare_cached("SELECT position, reply FROM replies WHERE stream = ?1 AND seq = ?2")
            .and_then(|mut s| {
                s.query_row(params![key.stream as i64, key.seq as i64], |r| {
                    Ok((r.get(0)?, r.get(1)?))
                })
                .optional()
            })
            .map_err(|e| sql(&self.path, e))?;
        row.map(|(pos, bytes)| {
            let reply = postcard::from_bytes(&bytes).map_err(|e| StoreError::Corrupt {
                path: self.path.clone(),
                what: format!("reply {key:?}: {e}"),
            })?;
            Ok((pos as u64, reply))
        })
        .transpose()
    }

    /// Every retained FT reply, oldest expiration first.
    pub fn retained(&self) -> Result<Vec<Retained>> {
        read_retained(&self.conn, &self.path)
    }

    /// The highest executed sequence number of every stream.
    pub fn stream_heads(&self) -> Result<Vec<RequestKey>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT stream, MAX(seq) FROM (
                     SELECT stream, seq FROM replies
                     UNION ALL SELECT stream, head FROM stream_heads)
                 GROUP BY stream ORDER BY stream",
            )
            .map_err(|e| sql(&self.path, e))?;
        let rows = stmt
            .query_map([], |r| {
                Ok(RequestKey {
                    stream: r.get::<_, i64>(0)? as u64,
                    seq: r.get::<_, i64>(1)? as u64,
                })
            })
            .map_err(|e| sql(&self.path, e))?;
        rows.collect::<rusqlite::Result<_>>()
            .map_err(|e| sql(&self.path, e))
    }

    /// Every audit line, in log order.
    pub fn audit(&self) -> Result<Vec<(u64, AuditEntry)>> {
        read_audit(&self.conn, &self.path)
    }

    /// Replaces the whole store with a snapshot's contents, in one
    /// transaction: the records, the stream heads and recent replies, the
    /// retained FT replies, and
    /// the last applied position and the log's hash there (`log_hash`).
    /// Audit lines beyond `position` are dropped (they belong to entries the
    /// group never committed); earlier ones are kept. Refuses (writing
    /// nothing) when the records do not match `digest`.
    #[allow(clippy::too_many_arguments)]
    pub fn install<'a>(
        &mut self,
        position: u64,
        log_hash: Option<LogHash>,
        digest: StateDigest,
        records: &[Record],
        heads: &[RequestKey],
        replies: impl IntoIterator<Item = (RequestKey, u64, &'a Reply)>,
        retained: &[Retained],
    ) -> Result<()> {
        if StateDigest::of(records) != digest {
            return Err(StoreError::Snapshot(format!(
                "the snapshot's records do not match its digest {}",
                digest.short()
            )));
        }
        let path = self.path.clone();
        let e = |e| sql(&path, e);
        let tx = self.conn.transaction().map_err(e)?;
        tx.execute_batch(
            "DELETE FROM doctors; DELETE FROM nurses; DELETE FROM replies;
             DELETE FROM stream_heads; DELETE FROM retained;",
        )
        .map_err(e)?;
        tx.execute("DELETE FROM audit WHERE position > ?1", [position as i64])
            .map_err(e)?;
        for r in records {
            write_change(&tx, &Change::Create(r.clone())).map_err(e)?;
        }
        for head in heads {
            tx.execute(
                "INSERT INTO stream_heads (stream, head) VALUES (?1, ?2)",
                params![head.stream as i64, head.seq as i64],
            )
            .map_err(e)?;
        }
        for (key, at, reply) in replies {
            let bytes = postcard::to_allocvec(reply).expect("replies always encode");
            tx.execute(
                "INSERT OR REPLACE INTO replies (stream, seq, position, reply) VALUES (?1, ?2, ?3, ?4)",
                params![key.stream as i64, key.seq as i64, at as i64, bytes],
            )
            .map_err(e)?;
        }
        for r in retained {
            write_retained(&tx, r).map_err(e)?;
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('last_applied', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [position as i64],
        )
        .map_err(e)?;
        tx.execute("DELETE FROM chain_base", []).map_err(e)?;
        tx.execute(
            "INSERT INTO chain_base (position, hash) VALUES (?1, ?2)",
            params![position as i64, log_hash.map(|h| h.0.to_vec())],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        self.last_applied = position;
        self.log_hash = log_hash;
        Ok(())
    }

    /// Moves the WAL into the main database file and truncates the WAL.
    pub fn checkpoint(&self) -> Result<()> {
        self.conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .map_err(|e| sql(&self.path, e))
    }

    /// Bytes on disk: the database file plus its WAL and shared-memory files.
    pub fn disk_size(&self) -> u64 {
        ["", "-wal", "-shm"]
            .iter()
            .filter_map(|suffix| {
                let mut p = self.path.clone().into_os_string();
                p.push(suffix);
                std::fs::metadata(p).ok()
            })
            .map(|m| m.len())
            .sum()
    }

    pub(crate) fn conn_mut(&mut self) -> &mut Connection {
        &mut self.conn
    }

    /// After a restore from a backup: the log's hash is not known (a
    /// backup carries no log hashes).
    pub(crate) fn set_last_applied(&mut self, position: u64) {
        self.last_applied = position;
        self.log_hash = None;
    }
}
pub(crate) fn sql(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}
#[cfg(test)]
mod tests;
