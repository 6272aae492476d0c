//! Row encoding: records, audit lines and retained replies to and from
//! their SQLite rows (`write_change`, `read_record`, `write_audit`,
//! `read_audit`, `write_retained`, `read_retained`), and the scan of every
//! record in ID order. The store and the snapshot code use them.
//!
//! Invariants that live here: a record reads back as the record written
//! (IDs, clinics, dates and enumerations as their canonical text); a row
//! that does not parse is reported as `StoreError::Corrupt`, never skipped;
//! a change that touches other than exactly one row panics (a replication
//! bug, not a disk error).

use super::schema::RECORDS_IN_ID_ORDER;
use super::{sql, Result, StoreError};
use crate::log::{LogHash, Retained};
use crate::model::{
    Clinic, Date, Designation, Doctor, Nurse, NurseStatus, Record, RecordBody, RecordId, RecordKind,
};
use crate::ops::{AuditEntry, Change};
use rusqlite::{params, Connection, Row};
use std::path::Path;

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

/// The audit trail, in position order.
pub(crate) fn read_audit(conn: &Connection, path: &Path) -> Result<Vec<(u64, AuditEntry)>> {
    let mut stmt = conn
        .prepare(
            "SELECT position, time_ms, manager_id, clinic, operation, arguments, outcome,
                    authenticated
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
                    authenticated: r.get(7)?,
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
        "INSERT INTO audit (position, time_ms, manager_id, clinic, operation, arguments, outcome,
                            chain, authenticated)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
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
        a.authenticated,
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
