//! The store's SQLite schema and its migrations: the tables and the
//! `records` view ([`SCHEMA`]), the queries that read every record in ID
//! order, and `Store::create_or_migrate`, which brings a database of an
//! older schema version to [`SCHEMA_VERSION`] in one transaction.
//!
//! Invariants that live here: a database is at the current version after
//! opening or not opened at all (a newer version is refused, never
//! written); a migration moves every row or none. Change a table here and
//! you bump `SCHEMA_VERSION` and add its migration.

use super::{sql, Result, Store, StoreError};
use rusqlite::{params, OptionalExtension};

/// Version 2: `audit.chain` (the [`LogHash`](crate::log::LogHash) after
/// each entry) and `chain_base` (the hash at an installed snapshot's
/// position).
/// Version 3: `doctors` and `nurses` in place of the `records` table, which
/// is now a view of both with the old columns.
/// Version 4: `audit.authenticated` (the manager a TLS client certificate
/// proved, `NULL` for a self-declared manager ID).
pub(super) const SCHEMA_VERSION: i64 = 4;

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
pub(super) const RECORDS_IN_ID_ORDER: [&str; 2] = [
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
    chain      BLOB,               -- the LogHash after this entry
    authenticated TEXT             -- the manager a client certificate proved
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

impl Store {
    /// Creates the tables of a new database, or brings one of an older
    /// schema version to [`SCHEMA_VERSION`] in one transaction; refuses a
    /// newer one.
    pub(super) fn create_or_migrate(&mut self) -> Result<()> {
        let e = |e| sql(&self.path, e);
        self.conn.execute_batch(SCHEMA).map_err(e)?;
        let version: Option<i64> = self.meta("schema_version")?;
        match version {
            None => self.set_meta("schema_version", SCHEMA_VERSION)?,
            Some(v) if v == SCHEMA_VERSION => {}
            Some(old @ 1..=3) => {
                let tx = self.conn.transaction().map_err(e)?;
                if old == 1 {
                    // Version 1 kept no log hashes: the hash stays unknown
                    // until the next snapshot install.
                    tx.execute_batch("ALTER TABLE audit ADD COLUMN chain BLOB")
                        .map_err(e)?;
                }
                if old <= 2 {
                    // The records move to their kind's table; the view
                    // created by SCHEMA (skipped while the table held the
                    // name) replaces the table.
                    tx.execute_batch(&format!(
                        "INSERT INTO doctors SELECT number, clinic, first_name, last_name,
                             address, phone, specialization, location FROM records
                             WHERE kind = 'DR';
                         INSERT INTO nurses SELECT number, clinic, first_name, last_name,
                             designation, status, status_date FROM records WHERE kind = 'NR';
                         DROP TABLE records;
                         {SCHEMA}"
                    ))
                    .map_err(e)?;
                }
                // Lines written before were not authenticated.
                tx.execute_batch(&format!(
                    "ALTER TABLE audit ADD COLUMN authenticated TEXT;
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
        Ok(())
    }

    pub(super) fn meta(&self, key: &str) -> Result<Option<i64>> {
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
}
