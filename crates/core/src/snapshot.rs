//! Consistent snapshots of a store, as a stream of chunks, and rebuilding a
//! store from one.
//!
//! A snapshot is read inside one SQLite read transaction, so it is the state
//! at one committed position even while writes go on. It is a sequence of
//! [`SnapshotChunk`]s, each at most about `max_chunk_bytes` when encoded; the
//! first carries a [`SnapshotHeader`] (position, digest, number of items) and
//! the last is flagged. Restore checks the chunk order, the item count and
//! the digest of the rebuilt records, and writes everything in one
//! transaction: a failed restore leaves no partial store behind.

use crate::log::{RequestKey, Retained};
use crate::model::Record;
use crate::ops::{AuditEntry, Change, Reply};
use crate::state::StateDigest;
use crate::store::rows::{
    for_each_record, read_audit, read_retained, write_audit, write_change, write_retained,
};
use crate::store::{sql, Store, StoreError, SyncMode};
use rusqlite::params;
use serde::{Deserialize, Serialize};
use std::path::Path;

/// What the snapshot is of.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotHeader {
    /// The last applied position the snapshot reflects.
    pub position: u64,
    /// The digest of its records.
    pub digest: StateDigest,
    /// How many items all chunks carry together.
    pub items: u64,
}

/// One element of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotItem {
    Record(Record),
    Reply {
        key: RequestKey,
        position: u64,
        reply: Reply,
    },
    Audit {
        position: u64,
        entry: AuditEntry,
    },
    /// A reply kept for FT-CORBA retries.
    Retained(Retained),
}

/// A piece of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SnapshotChunk {
    /// 0, 1, 2, ... in order.
    pub index: u32,
    /// Present in chunk 0 only.
    pub header: Option<SnapshotHeader>,
    pub items: Vec<SnapshotItem>,
    /// True on the final chunk.
    pub last: bool,
}

impl SnapshotChunk {
    pub fn encode(&self) -> Vec<u8> {
        postcard::to_allocvec(self).expect("snapshot chunks always encode")
    }

    pub fn decode(bytes: &[u8]) -> Result<SnapshotChunk, StoreError> {
        postcard::from_bytes(bytes)
            .map_err(|e| StoreError::Snapshot(format!("undecodable chunk: {e}")))
    }
}

impl Store {
    /// Writes a consistent snapshot, calling `sink` with each chunk in order.
    /// Returns the header.
    pub fn write_snapshot(
        &mut self,
        max_chunk_bytes: usize,
        mut sink: impl FnMut(SnapshotChunk) -> Result<(), StoreError>,
    ) -> Result<SnapshotHeader, StoreError> {
        let path = self.path().to_path_buf();
        let e = |e| sql(&path, e);
        // One read transaction: every SELECT below sees the same commit.
        let tx = self.conn_mut().transaction().map_err(e)?;
        let position: i64 = tx
            .query_row(
                "SELECT MAX(COALESCE((SELECT value FROM meta WHERE key = 'last_applied'), 0),
                            COALESCE((SELECT MAX(position) FROM audit), 0))",
                [],
                |r| r.get(0),
            )
            .map_err(e)?;
        let mut items = Vec::new();
        {
            for_each_record(&tx, &path, |r| items.push(SnapshotItem::Record(r)))?;
            let mut stmt = tx
                .prepare("SELECT stream, seq, position, reply FROM replies ORDER BY stream, seq")
                .map_err(e)?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((
                        r.get::<_, i64>(0)?,
                        r.get::<_, i64>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                })
                .map_err(e)?;
            for row in rows {
                let (stream, seq, position, bytes) = row.map_err(e)?;
                let key = RequestKey {
                    stream: stream as u64,
                    seq: seq as u64,
                };
                let reply = postcard::from_bytes(&bytes).map_err(|err| StoreError::Corrupt {
                    path: path.clone(),
                    what: format!("reply {key:?}: {err}"),
                })?;
                items.push(SnapshotItem::Reply {
                    key,
                    position: position as u64,
                    reply,
                });
            }
        }
        for (position, entry) in read_audit(&tx, &path)? {
            items.push(SnapshotItem::Audit { position, entry });
        }
        for r in read_retained(&tx, &path)? {
            items.push(SnapshotItem::Retained(r));
        }
        drop(tx);
        let digest = StateDigest::of(items.iter().filter_map(|i| match i {
            SnapshotItem::Record(r) => Some(r),
            _ => None,
        }));
        let header = SnapshotHeader {
            position: position as u64,
            digest,
            items: items.len() as u64,
        };
        let mut chunk = SnapshotChunk {
            index: 0,
            header: Some(header.clone()),
            items: Vec::new(),
            last: false,
        };
        let mut size = 0;
        for item in items {
            let item_size = postcard::experimental::serialized_size(&item).unwrap_or(0);
            if !chunk.items.is_empty() && size + item_size > max_chunk_bytes {
                let next = SnapshotChunk {
                    index: chunk.index + 1,
                    header: None,
                    items: Vec::new(),
                    last: false,
                };
                sink(std::mem::replace(&mut chunk, next))?;
                size = 0;
            }
            size += item_size;
            chunk.items.push(item);
        }
        chunk.last = true;
        sink(chunk)?;
        Ok(header)
    }

    /// Builds a new store at `path` (which must not hold a store yet) from
    /// the chunks of a snapshot.
    pub fn restore(
        path: impl AsRef<Path>,
        sync: SyncMode,
        chunks: impl IntoIterator<Item = SnapshotChunk>,
    ) -> Result<Store, StoreError> {
        let mut store = Store::open(path, sync)?;
        if store.last_applied() != 0 || !store.records()?.is_empty() {
            return Err(StoreError::Snapshot(format!(
                "{} already holds a store; restore needs an empty one",
                store.path().display()
            )));
        }
        let path = store.path().to_path_buf();
        let e = |e| sql(&path, e);
        let tx = store.conn_mut().transaction().map_err(e)?;
        let mut header: Option<SnapshotHeader> = None;
        let mut seen_items = 0u64;
        let mut digest = StateDigest::default();
        let mut finished = false;
        for (expected_index, chunk) in (0u32..).zip(chunks) {
            if finished {
                return Err(StoreError::Snapshot("a chunk follows the last one".into()));
            }
            if chunk.index != expected_index {
                return Err(StoreError::Snapshot(format!(
                    "chunk {} arrived where chunk {expected_index} was expected",
                    chunk.index
                )));
            }
            match (&header, chunk.header) {
                (None, Some(h)) if chunk.index == 0 => header = Some(h),
                (None, _) => return Err(StoreError::Snapshot("chunk 0 carries no header".into())),
                (Some(_), Some(_)) => {
                    return Err(StoreError::Snapshot("a header outside chunk 0".into()))
                }
                (Some(_), None) => {}
            }
            for item in chunk.items {
                seen_items += 1;
                match item {
                    SnapshotItem::Record(r) => {
                        digest.toggle(&r);
                        write_change(&tx, &Change::Create(r)).map_err(e)?;
                    }
                    SnapshotItem::Reply {
                        key,
                        position,
                        reply,
                    } => {
                        let bytes = postcard::to_allocvec(&reply).expect("replies always encode");
                        tx.execute(
                            "INSERT INTO replies (stream, seq, position, reply) VALUES (?1, ?2, ?3, ?4)",
                            params![key.stream as i64, key.seq as i64, position as i64, bytes],
                        )
                        .map_err(e)?;
                    }
                    SnapshotItem::Audit { position, entry } => {
                        write_audit(&tx, position, &entry, None).map_err(e)?
                    }
                    SnapshotItem::Retained(r) => write_retained(&tx, &r).map_err(e)?,
                }
            }
            finished = chunk.last;
        }
        let header = header.ok_or_else(|| StoreError::Snapshot("no chunks".into()))?;
        if !finished {
            return Err(StoreError::Snapshot("the last chunk is missing".into()));
        }
        if seen_items != header.items {
            return Err(StoreError::Snapshot(format!(
                "{seen_items} items arrived; the header announced {}",
                header.items
            )));
        }
        if digest != header.digest {
            return Err(StoreError::Snapshot(format!(
                "the records' digest {} differs from the header's {}",
                digest.short(),
                header.digest.short()
            )));
        }
        tx.execute(
            "INSERT INTO meta (key, value) VALUES ('last_applied', ?1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            [header.position as i64],
        )
        .map_err(e)?;
        tx.commit().map_err(e)?;
        store.set_last_applied(header.position);
        Ok(store)
    }
}
