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
//! right after entry `n - 1` (the first is 1).

use crate::model::{
    Clinic, Date, Designation, Doctor, Nurse, NurseStatus, Record, RecordBody, RecordId, RecordKind,
};
use crate::ops::{AuditEntry, Change, Effect, Reply};
use crate::state::{ClinicState, StateDigest};
use rusqlite::{params, Connection, OptionalExtension, Row};
use serde::{Deserialize, Serialize};
use std::borrow::Borrow;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

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

/// Entries for one [`Store::commit_batch`], in log order, each with the
/// log's hash after it as the replica chained it when applying: the store
/// keeps those hashes rather than computing them a second time.
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
fn chain_hashes<E: Borrow<LogEntry>>(base: Option<LogHash>, entries: &[E]) -> Vec<Option<LogHash>> {
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

/// Version 2: `audit.chain` (the [`LogHash`] after each entry) and
/// `chain_base` (the hash at an installed snapshot's position).
/// Version 3: `doctors` and `nurses` in place of the `records` table, which
/// is now a view of both with the old columns.
const SCHEMA_VERSION: i64 = 3;

/// Each kind's records in the columns of the `records` view (and of schema
/// version 2), for `read_record`.
macro_rules! select_doctors {
    () => {
        "SELECT 'DR' AS kind, number, clinic, first_name, last_name, address, phone,
                specialization, location, '' AS designation, '' AS status, '' AS status_date
         FROM doctors"
    };
}
macro_rules! select_nurses {
    () => {
        "SELECT 'NR' AS kind, number, clinic, first_name, last_name, '' AS address,
                '' AS phone, '' AS specialization, '' AS location, designation, status,
                status_date
         FROM nurses"
    };
}

/// Every record in ID order (doctors' IDs sort first), without a sort: each
/// query reads its table in key order.
pub(crate) const RECORDS_IN_ID_ORDER: [&str; 2] = [
    concat!(select_doctors!(), " ORDER BY number"),
    concat!(select_nurses!(), " ORDER BY number"),
];

const SCHEMA: &str = concat!(
    "
CREATE TABLE IF NOT EXISTS meta (
    key   TEXT PRIMARY KEY,
    value INTEGER NOT NULL
) WITHOUT ROWID;
-- One table per kind, keyed by the ID's number: IDs are assigned in
-- increasing order, so a create appends to the end of its table's B-tree
-- (SQLite splits such a page without touching its siblings). A single
-- table keyed by (kind, number) took 4 more pages per commit of 12 creates.
CREATE TABLE IF NOT EXISTS doctors (
    number         INTEGER PRIMARY KEY,
    clinic         TEXT NOT NULL,      -- 'MTL', 'LVL', 'DDO'
    first_name     TEXT NOT NULL,
    last_name      TEXT NOT NULL,
    address        TEXT NOT NULL,
    phone          TEXT NOT NULL,
    specialization TEXT NOT NULL,
    location       TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS nurses (
    number         INTEGER PRIMARY KEY,
    clinic         TEXT NOT NULL,
    first_name     TEXT NOT NULL,
    last_name      TEXT NOT NULL,
    designation    TEXT NOT NULL,
    status         TEXT NOT NULL,
    status_date    TEXT NOT NULL
);
-- Every record as one row, in the columns of schema version 2.
CREATE VIEW IF NOT EXISTS records AS
",
    select_doctors!(),
    " UNION ALL ",
    select_nurses!(),
    ";
CREATE TABLE IF NOT EXISTS replies (
    stream   INTEGER NOT NULL,
    seq      INTEGER NOT NULL,
    position INTEGER NOT NULL,
    reply    BLOB NOT NULL,            -- postcard-encoded Reply
    PRIMARY KEY (stream, seq)
) WITHOUT ROWID;
-- Stream heads brought by an installed snapshot (a head whose reply is no
-- longer kept); otherwise a stream's head is its highest stored reply.
CREATE TABLE IF NOT EXISTS stream_heads (
    stream INTEGER PRIMARY KEY,
    head   INTEGER NOT NULL
);
-- No secondary indexes: the export reads the trail in position order once;
-- an index would cost every commit a B-tree insert for nothing.
CREATE TABLE IF NOT EXISTS audit (
    position   INTEGER PRIMARY KEY,
    time_ms    INTEGER NOT NULL,
    manager_id TEXT NOT NULL,
    clinic     TEXT,
    operation  TEXT NOT NULL,
    arguments  TEXT NOT NULL,
    outcome    TEXT NOT NULL,
    chain      BLOB                -- the LogHash after this entry
);
-- Replies kept for FT-CORBA retries, by the client's request identity,
-- until `expires_ms` (plus a grace for clock skew) has passed in the log's
-- time. Keyed by expiration first: inserts land near the end and expiry is
-- a range delete at the start, with no second B-tree to keep up. (The
-- replicas look identities up in memory; the table is read whole at start.)
CREATE TABLE IF NOT EXISTS retained (
    expires_ms   INTEGER NOT NULL,
    client_id    TEXT NOT NULL,
    retention_id INTEGER NOT NULL,
    position     INTEGER NOT NULL,
    reply        BLOB NOT NULL,        -- postcard-encoded Reply
    PRIMARY KEY (expires_ms, client_id, retention_id)
) WITHOUT ROWID;
-- The LogHash at the position of the last installed snapshot (one row;
-- NULL when the snapshot's sender did not know it).
CREATE TABLE IF NOT EXISTS chain_base (
    position INTEGER PRIMARY KEY,
    hash     BLOB
);
"
);

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

/// Every row of `retained`, oldest expiration first.
pub(crate) fn read_retained(conn: &Connection, path: &Path) -> Result<Vec<Retained>> {
    let e = |e| sql(path, e);
    let mut stmt = conn
        .prepare(
            "SELECT client_id, retention_id, expires_ms, position, reply FROM retained
             ORDER BY expires_ms, client_id, retention_id, position",
        )
        .map_err(e)?;
    let rows = stmt
        .query_map([], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i32>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, Vec<u8>>(4)?,
            ))
        })
        .map_err(e)?;
    let mut out = Vec::new();
    for row in rows {
        let (client_id, retention_id, expires_ms, position, bytes) = row.map_err(e)?;
        let reply = postcard::from_bytes(&bytes).map_err(|err| StoreError::Corrupt {
            path: path.to_path_buf(),
            what: format!("retained reply of {client_id:?}/{retention_id}: {err}"),
        })?;
        out.push(Retained {
            client_id,
            retention_id,
            expires_ms: expires_ms as u64,
            position: position as u64,
            reply,
        });
    }
    Ok(out)
}

/// Writes one retained reply (kept if already there).
pub(crate) fn write_retained(tx: &rusqlite::Transaction<'_>, r: &Retained) -> rusqlite::Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO retained (client_id, retention_id, expires_ms, position, reply)
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![
        r.client_id,
        r.retention_id,
        r.expires_ms as i64,
        r.position as i64,
        postcard::to_allocvec(&r.reply).expect("replies always encode")
    ])
    .map(|_| ())
}

/// A retained reply is kept this long after its expiration (in the log's
/// time), so that leaders whose clocks differ by less never disagree on
/// whether it is gone: a retry that arrives before its expiration on one
/// leader's clock finds it on any other. Ten times the replicas' assumed
/// clock skew (`ReplicaConfig::clock_skew_ms`, 500 ms).
pub const RETAINED_GRACE_MS: u64 = 5_000;

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
        self.conn.execute_batch(SCHEMA).map_err(e)?;
        let version: Option<i64> = self.meta("schema_version")?;
        match version {
            None => self.set_meta("schema_version", SCHEMA_VERSION)?,
            Some(v) if v == SCHEMA_VERSION => {}
            Some(old @ (1 | 2)) => {
                let tx = self.conn.transaction().map_err(e)?;
                if old == 1 {
                    // Version 1 kept no log hashes: the hash stays unknown
                    // until the next snapshot install.
                    tx.execute_batch("ALTER TABLE audit ADD COLUMN chain BLOB")
                        .map_err(e)?;
                }
                // The records move to their kind's table; the view created
                // by SCHEMA (skipped while the table held the name) replaces
                // the table.
                tx.execute_batch(&format!(
                    "INSERT INTO doctors SELECT number, clinic, first_name, last_name, address,
                         phone, specialization, location FROM records WHERE kind = 'DR';
                     INSERT INTO nurses SELECT number, clinic, first_name, last_name,
                         designation, status, status_date FROM records WHERE kind = 'NR';
                     DROP TABLE records;
                     {SCHEMA}
                     UPDATE meta SET value = {SCHEMA_VERSION} WHERE key = 'schema_version';"
                ))
                .map_err(e)?;
                tx.commit().map_err(e)?;
            }
            Some(found) => {
                return Err(StoreError::Schema {
                    path: self.path.clone(),
                    found,
                    expected: SCHEMA_VERSION,
                })
            }
        }
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

    fn meta(&self, key: &str) -> Result<Option<i64>> {
        self.conn
            .query_row("SELECT value FROM meta WHERE key = ?1", [key], |r| r.get(0))
            .optional()
            .map_err(|e| sql(&self.path, e))
    }

    fn set_meta(&self, key: &str, value: i64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meta (key, value) VALUES (?1, ?2)
                 ON CONFLICT (key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .map(|_| ())
            .map_err(|e| sql(&self.path, e))
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
        self.write(&batch.entries, &batch.hashes)
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

pub(crate) fn read_audit(conn: &Connection, path: &Path) -> Result<Vec<(u64, AuditEntry)>> {
    let mut stmt = conn
        .prepare(
            "SELECT position, time_ms, manager_id, clinic, operation, arguments, outcome
             FROM audit ORDER BY position",
        )
        .map_err(|e| sql(path, e))?;
    let rows = stmt
        .query_map([], |r| {
            let clinic: Option<String> = r.get(3)?;
            Ok((
                r.get::<_, i64>(0)? as u64,
                AuditEntry {
                    time_ms: r.get::<_, i64>(1)? as u64,
                    manager_id: r.get(2)?,
                    clinic: clinic.as_deref().and_then(Clinic::parse),
                    operation: r.get(4)?,
                    arguments: r.get(5)?,
                    outcome: r.get(6)?,
                },
            ))
        })
        .map_err(|e| sql(path, e))?;
    rows.collect::<rusqlite::Result<_>>()
        .map_err(|e| sql(path, e))
}

/// Calls `f` with every stored record, in ID order.
pub(crate) fn for_each_record(
    conn: &Connection,
    path: &Path,
    mut f: impl FnMut(Record),
) -> Result<()> {
    for query in RECORDS_IN_ID_ORDER {
        let mut stmt = conn.prepare(query).map_err(|e| sql(path, e))?;
        let rows = stmt.query_map([], read_record).map_err(|e| sql(path, e))?;
        for row in rows {
            f(row
                .map_err(|e| sql(path, e))?
                .map_err(|what| StoreError::Corrupt {
                    path: path.to_path_buf(),
                    what,
                })?);
        }
    }
    Ok(())
}

pub(crate) fn sql(path: &Path, source: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) fn write_change(conn: &Connection, change: &Change) -> rusqlite::Result<()> {
    let r = change.record();
    let create = matches!(change, Change::Create(_));
    let changed = match &r.body {
        RecordBody::Doctor(d) => {
            let sql = if create {
                "INSERT INTO doctors (number, clinic, first_name, last_name, address, phone,
                     specialization, location)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)"
            } else {
                "UPDATE doctors SET clinic = ?2, first_name = ?3, last_name = ?4, address = ?5,
                     phone = ?6, specialization = ?7, location = ?8
                 WHERE number = ?1"
            };
            conn.prepare_cached(sql)?.execute(params![
                r.id.number,
                r.clinic.code(),
                d.first_name,
                d.last_name,
                d.address,
                d.phone,
                d.specialization,
                d.location.location(),
            ])?
        }
        RecordBody::Nurse(n) => {
            let sql = if create {
                "INSERT INTO nurses (number, clinic, first_name, last_name, designation, status,
                     status_date)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)"
            } else {
                "UPDATE nurses SET clinic = ?2, first_name = ?3, last_name = ?4,
                     designation = ?5, status = ?6, status_date = ?7
                 WHERE number = ?1"
            };
            conn.prepare_cached(sql)?.execute(params![
                r.id.number,
                r.clinic.code(),
                n.first_name,
                n.last_name,
                n.designation.as_str(),
                n.status.as_str(),
                n.status_date.to_string(),
            ])?
        }
    };
    // An update of a missing record would be a replication bug.
    assert_eq!(changed, 1, "change of {} touched {changed} rows", r.id);
    Ok(())
}

pub(crate) fn write_audit(
    conn: &Connection,
    position: u64,
    a: &AuditEntry,
    chain: Option<&LogHash>,
) -> rusqlite::Result<()> {
    conn.prepare_cached(
        "INSERT INTO audit (position, time_ms, manager_id, clinic, operation, arguments, outcome, chain)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        position as i64,
        a.time_ms as i64,
        a.manager_id,
        a.clinic.map(Clinic::code),
        a.operation,
        a.arguments,
        a.outcome,
        chain.map(|h| h.0.to_vec()),
    ])?;
    Ok(())
}

/// Reads one `records` row; the inner error says what was unreadable.
pub(crate) fn read_record(row: &Row<'_>) -> rusqlite::Result<Result<Record, String>> {
    let kind: String = row.get("kind")?;
    let number: u32 = row.get("number")?;
    let clinic: String = row.get("clinic")?;
    let text = |name: &str| row.get::<_, String>(name);
    let (first_name, last_name) = (text("first_name")?, text("last_name")?);
    let parsed = (|| {
        let kind = match kind.as_str() {
            "DR" => RecordKind::Doctor,
            "NR" => RecordKind::Nurse,
            other => return Err(format!("record kind {other:?}")),
        };
        let id = RecordId { kind, number };
        let clinic = Clinic::parse(&clinic).ok_or(format!("clinic {clinic:?} of {id}"))?;
        Ok((id, clinic))
    })();
    let (id, clinic) = match parsed {
        Ok(v) => v,
        Err(e) => return Ok(Err(e)),
    };
    let body = match id.kind {
        RecordKind::Doctor => {
            let location: String = text("location")?;
            let Some(location) = Clinic::parse(&location) else {
                return Ok(Err(format!("location {location:?} of {id}")));
            };
            RecordBody::Doctor(Doctor {
                first_name,
                last_name,
                address: text("address")?,
                phone: text("phone")?,
                specialization: text("specialization")?,
                location,
            })
        }
        RecordKind::Nurse => {
            let (d, s, sd) = (text("designation")?, text("status")?, text("status_date")?);
            let (Some(designation), Some(status), Ok(status_date)) = (
                Designation::parse(&d),
                NurseStatus::parse(&s),
                Date::parse(&sd),
            ) else {
                return Ok(Err(format!("nurse fields {d:?}/{s:?}/{sd:?} of {id}")));
            };
            RecordBody::Nurse(Nurse {
                first_name,
                last_name,
                designation,
                status,
                status_date,
            })
        }
    };
    Ok(Ok(Record { id, clinic, body }))
}

#[cfg(test)]
mod tests;
