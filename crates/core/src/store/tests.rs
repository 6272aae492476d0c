//! Tests of the durable store: group commit, reopen, replies, snapshots,
//! the audit export, and properties against the in-memory state.

use super::schema::SCHEMA_VERSION;
use super::*;
use crate::model::Clinic;
use crate::ops::{Outcome, Request};
use crate::snapshot::SnapshotChunk;
use crate::state::tests::{doctor, nurse, properties};
use crate::{Record, Reply};
use proptest::prelude::*;
use tempfile::TempDir;

/// Executes `reqs` on `state` as a leader would, returning the log entries.
fn execute_all(state: &mut ClinicState, first_position: u64, reqs: &[Request]) -> Vec<LogEntry> {
    reqs.iter()
        .enumerate()
        .map(|(i, req)| {
            let position = first_position + i as u64;
            let (reply, effect) = state.execute(req, 1_000 + position);
            state.apply(&effect);
            LogEntry {
                position,
                key: RequestKey {
                    stream: 7,
                    seq: position,
                },
                effect,
                reply,
                ft: None,
            }
        })
        .collect()
}

fn open(dir: &TempDir, name: &str) -> Store {
    Store::open(dir.path().join(name), SyncMode::Normal).unwrap()
}

#[test]
fn commits_survive_reopen_with_their_replies() {
    let dir = TempDir::new().unwrap();
    let mut state = ClinicState::new();
    let entries = execute_all(
        &mut state,
        1,
        &[
            doctor("MTL0001", "Doe"),
            nurse("LVL0001", "Roe"),
            doctor("QQQ", "Bad"),
        ],
    );
    {
        let mut store = open(&dir, "a.db");
        assert_eq!(store.last_applied(), 0);
        store.commit(&entries[..2]).unwrap();
        store.commit(&entries[2..]).unwrap();
        assert_eq!(store.last_applied(), 3);
    }
    let store = open(&dir, "a.db");
    assert_eq!(store.last_applied(), 3);
    let loaded = store.load_state().unwrap();
    assert_eq!(loaded.digest(), state.digest());
    assert_eq!(
        loaded.records().collect::<Vec<_>>(),
        state.records().collect::<Vec<_>>()
    );
    assert_eq!(store.digest().unwrap(), state.digest());
    let (pos, reply) = store
        .reply(RequestKey { stream: 7, seq: 2 })
        .unwrap()
        .unwrap();
    assert_eq!(pos, 2);
    assert_eq!(reply, entries[1].reply);
    assert!(matches!(
        store
            .reply(RequestKey { stream: 7, seq: 3 })
            .unwrap()
            .unwrap()
            .1,
        Err(crate::DomainError::InvalidRequest { .. })
    ));
    assert_eq!(store.reply(RequestKey { stream: 8, seq: 1 }).unwrap(), None);
    assert_eq!(
        store.stream_heads().unwrap(),
        vec![RequestKey { stream: 7, seq: 3 }]
    );
    assert_eq!(store.audit().unwrap().len(), 3);
}

#[test]
fn a_gap_or_a_repeat_is_refused_and_writes_nothing() {
    let dir = TempDir::new().unwrap();
    let mut state = ClinicState::new();
    let entries = execute_all(
        &mut state,
        1,
        &[doctor("MTL0001", "A"), doctor("MTL0001", "B")],
    );
    let mut store = open(&dir, "a.db");
    assert!(matches!(
        store.commit(&entries[1..]),
        Err(StoreError::OutOfOrder { last: 0, got: 2 })
    ));
    store.commit(&entries[..1]).unwrap();
    assert!(matches!(
        store.commit(&entries[..1]),
        Err(StoreError::OutOfOrder { last: 1, got: 1 })
    ));
    // A batch with an internal gap is refused whole.
    let bad = vec![entries[1].clone(), entries[1].clone()];
    assert!(store.commit(&bad).is_err());
    assert_eq!(store.last_applied(), 1);
    assert_eq!(store.records().unwrap().len(), 1);
}

#[test]
fn a_newer_schema_is_refused() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("a.db");
    drop(Store::open(&path, SyncMode::Full).unwrap());
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute(
        "UPDATE meta SET value = 99 WHERE key = 'schema_version'",
        [],
    )
    .unwrap();
    drop(conn);
    let err = Store::open(&path, SyncMode::Full).unwrap_err();
    assert!(err.to_string().contains("schema version 99"), "{err}");
}

#[test]
fn snapshot_round_trip_in_small_chunks() {
    let dir = TempDir::new().unwrap();
    let mut state = ClinicState::new();
    let reqs: Vec<Request> = (0..60)
        .map(|i| {
            if i % 2 == 0 {
                doctor("MTL0001", &format!("Name{i}"))
            } else {
                nurse("DDO0001", &format!("Näme{i}"))
            }
        })
        .collect();
    let entries = execute_all(&mut state, 1, &reqs);
    let mut store = open(&dir, "a.db");
    store.commit(&entries).unwrap();

    let mut chunks = Vec::new();
    let header = store
        .write_snapshot(1024, |c| {
            chunks.push(c.encode());
            Ok(())
        })
        .unwrap();
    assert!(
        chunks.len() > 5,
        "1 KiB chunks split the snapshot ({} chunks)",
        chunks.len()
    );
    assert!(chunks.iter().all(|c| c.len() < 2048));
    assert_eq!(header.position, 60);
    assert_eq!(header.digest, state.digest());

    let decoded: Vec<SnapshotChunk> = chunks
        .iter()
        .map(|b| SnapshotChunk::decode(b).unwrap())
        .collect();
    let restored =
        Store::restore(dir.path().join("b.db"), SyncMode::Normal, decoded.clone()).unwrap();
    assert_eq!(restored.last_applied(), 60);
    assert_eq!(restored.digest().unwrap(), state.digest());
    assert_eq!(restored.audit().unwrap(), store.audit().unwrap());
    assert_eq!(
        restored.reply(RequestKey { stream: 7, seq: 9 }).unwrap(),
        store.reply(RequestKey { stream: 7, seq: 9 }).unwrap()
    );

    // A restored store goes on from where the snapshot ended.
    let mut restored = restored;
    let more = execute_all(&mut state, 61, &[doctor("LVL0001", "After")]);
    restored.commit(&more).unwrap();
    assert_eq!(restored.digest().unwrap(), state.digest());

    // Restoring into a store that has data is refused.
    assert!(Store::restore(dir.path().join("a.db"), SyncMode::Normal, decoded).is_err());
}

#[test]
fn a_damaged_snapshot_is_refused_and_leaves_nothing() {
    let dir = TempDir::new().unwrap();
    let mut state = ClinicState::new();
    let entries = execute_all(
        &mut state,
        1,
        &(0..20)
            .map(|i| doctor("MTL0001", &format!("N{i}")))
            .collect::<Vec<_>>(),
    );
    let mut store = open(&dir, "a.db");
    store.commit(&entries).unwrap();
    let mut chunks = Vec::new();
    store
        .write_snapshot(256, |c| {
            chunks.push(c);
            Ok(())
        })
        .unwrap();
    assert!(chunks.len() >= 3);

    let cases: Vec<(&str, Vec<SnapshotChunk>)> = vec![
        ("missing last chunk", chunks[..chunks.len() - 1].to_vec()),
        ("missing middle chunk", {
            let mut c = chunks.clone();
            c.remove(1);
            c
        }),
        ("no header", chunks[1..].to_vec()),
        ("tampered record", {
            let mut c = chunks.clone();
            let item = c
                .iter_mut()
                .flat_map(|c| c.items.iter_mut())
                .find_map(|i| match i {
                    crate::snapshot::SnapshotItem::Record(r) => Some(r),
                    _ => None,
                })
                .unwrap();
            item.clinic = Clinic::Ddo;
            c
        }),
        ("empty", vec![]),
    ];
    for (i, (what, chunks)) in cases.into_iter().enumerate() {
        let path = dir.path().join(format!("bad{i}.db"));
        assert!(
            Store::restore(&path, SyncMode::Normal, chunks).is_err(),
            "{what}"
        );
        let reopened = Store::open(&path, SyncMode::Normal).unwrap();
        assert_eq!(reopened.last_applied(), 0, "{what}");
        assert!(reopened.records().unwrap().is_empty(), "{what}");
    }
    assert!(SnapshotChunk::decode(&[0xff, 0xff, 0xff]).is_err());
}

#[test]
fn audit_export_writes_one_file_per_manager_and_per_clinic() {
    let dir = TempDir::new().unwrap();
    let mut state = ClinicState::new();
    let entries = execute_all(
        &mut state,
        1,
        &[
            doctor("MTL0001", "A"),
            doctor("mtl0002", "B"),
            nurse("LVL0001", "C"),
            doctor("../../etc/passwd", "D"),
            Request::GetRecordCounts {
                manager_id: "MTL0001".into(),
            },
        ],
    );
    let mut store = open(&dir, "a.db");
    store.commit(&entries).unwrap();
    let out = dir.path().join("logs");
    let summary = crate::audit::export(&store, &out).unwrap();
    assert_eq!(summary.lines, 5);
    let read = |p: &str| std::fs::read_to_string(out.join(p)).unwrap();
    let m1 = read("managers/MTL0001.log");
    assert_eq!(m1.lines().count(), 2);
    assert!(m1.lines().next().unwrap().contains("createDRecord"));
    assert!(m1.contains("-> ok: DR10000"));
    assert!(m1.contains("getRecordCounts"));
    assert!(m1.contains("ok: MTL 2, LVL 1, DDO 0"));
    assert_eq!(read("managers/MTL0002.log").lines().count(), 1);
    assert_eq!(read("clinics/MTL.log").lines().count(), 3);
    assert_eq!(read("clinics/LVL.log").lines().count(), 1);
    let bad = read("unidentified.log");
    assert!(bad.contains("error: invalid managerID"));
    assert!(!out.join("clinics/DDO.log").exists());
    // Lines start with an RFC 3339 time.
    assert!(m1.starts_with("1970-01-01T00:00:01."), "{m1}");
}

/// A refused request's manager ID is client text in the exported files:
/// however it is made, each request stays one line there.
#[test]
fn audit_export_keeps_one_line_per_request_whatever_the_manager_id() {
    let dir = TempDir::new().unwrap();
    let mut state = ClinicState::new();
    let entries = execute_all(
        &mut state,
        1,
        &[
            doctor("x\n2026-01-01T00:00:00.000Z #1 MTL0001 createDRecord", "A"),
            doctor("MTL0001 getRecord", "B"),
            doctor("MTL\r\n#3 MTL0001", "C"),
        ],
    );
    let mut store = open(&dir, "a.db");
    store.commit(&entries).unwrap();
    let out = dir.path().join("logs");
    crate::audit::export(&store, &out).unwrap();
    let bad = std::fs::read_to_string(out.join("unidentified.log")).unwrap();
    let lines: Vec<&str> = bad.lines().collect();
    assert_eq!(lines.len(), 3, "{bad}");
    assert!(
        lines[0].contains(r#" #1 "x\n2026-01-01T00:00:0" createDRecord "#),
        "{bad}"
    );
    assert!(
        lines[1].contains(r#" #2 "MTL0001 getRecord" createDRecord "#),
        "{bad}"
    );
    assert!(
        lines[2].contains(r#" #3 "MTL\r\n#3 MTL0001" createDRecord "#),
        "{bad}"
    );
    for (i, line) in lines.iter().enumerate() {
        assert!(line.starts_with("1970-01-01T00:00:01."), "{line}");
        assert!(line.contains(&format!(" #{} ", i + 1)), "{line}");
    }
    assert!(!out.join("managers").exists());
}

#[test]
fn read_outcomes_and_refusals_are_stored_as_replies_too() {
    let dir = TempDir::new().unwrap();
    let mut state = ClinicState::new();
    let entries = execute_all(
        &mut state,
        1,
        &[
            doctor("MTL0001", "A"),
            Request::ListRecords {
                manager_id: "MTL0001".into(),
                last_name_prefix: "".into(),
            },
        ],
    );
    let mut store = open(&dir, "a.db");
    store.commit(&entries).unwrap();
    match store
        .reply(RequestKey { stream: 7, seq: 2 })
        .unwrap()
        .unwrap()
        .1
    {
        Ok(Outcome::Records(list)) => assert_eq!(list.len(), 1),
        other => panic!("{other:?}"),
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Requests executed on one store's state, their effects committed to two
    /// stores in different batch sizes, give equal digests, also after
    /// reopening and after a snapshot round trip.
    #[test]
    fn stores_fed_the_same_effects_agree(
        reqs in prop::collection::vec(properties::request(), 1..60),
        batch in 1usize..17,
    ) {
        let dir = TempDir::new().unwrap();
        let mut state = ClinicState::new();
        let entries = execute_all(&mut state, 1, &reqs);
        let mut a = open(&dir, "a.db");
        let mut b = open(&dir, "b.db");
        for e in &entries {
            a.commit(std::slice::from_ref(e)).unwrap();
        }
        for group in entries.chunks(batch) {
            b.commit(group).unwrap();
        }
        prop_assert_eq!(a.digest().unwrap(), state.digest());
        prop_assert_eq!(b.digest().unwrap(), state.digest());
        drop(b);
        let mut b = open(&dir, "b.db");
        prop_assert_eq!(b.load_state().unwrap().digest(), state.digest());
        prop_assert_eq!(b.last_applied(), entries.len() as u64);

        let mut chunks = Vec::new();
        b.write_snapshot(512, |c| { chunks.push(c); Ok(()) }).unwrap();
        let c = Store::restore(dir.path().join("c.db"), SyncMode::Normal, chunks).unwrap();
        prop_assert_eq!(c.digest().unwrap(), state.digest());
        prop_assert_eq!(c.last_applied(), entries.len() as u64);
    }
}

#[test]
fn install_replaces_everything_and_drops_the_uncommitted_audit_suffix() {
    let dir = TempDir::new().unwrap();
    // The group's state: 5 entries.
    let mut group = ClinicState::new();
    let group_log = execute_all(
        &mut group,
        1,
        &(0..5)
            .map(|i| doctor("MTL0001", &format!("G{i}")))
            .collect::<Vec<_>>(),
    );
    // This replica applied 7 entries of its own (an old leader's suffix).
    let mut mine = ClinicState::new();
    let my_log = execute_all(
        &mut mine,
        1,
        &(0..7)
            .map(|i| nurse("LVL0001", &format!("M{i}")))
            .collect::<Vec<_>>(),
    );
    let mut store = open(&dir, "a.db");
    store.commit(&my_log).unwrap();

    let records: Vec<Record> = group.records().cloned().collect();
    let heads = [RequestKey { stream: 9, seq: 40 }];
    let replies: Vec<(RequestKey, u64, Reply)> = group_log
        .iter()
        .map(|e| {
            (
                RequestKey {
                    stream: 9,
                    seq: 35 + e.position,
                },
                e.position,
                e.reply.clone(),
            )
        })
        .collect();
    // A wrong digest is refused and changes nothing.
    assert!(store
        .install(
            5,
            Some(LogHash::EMPTY),
            StateDigest::default(),
            &records,
            &heads,
            replies.iter().map(|(k, p, r)| (*k, *p, r)),
            &[],
        )
        .is_err());
    assert_eq!(store.last_applied(), 7);
    assert_eq!(store.digest().unwrap(), mine.digest());

    store
        .install(
            5,
            Some(LogHash([7; 32])),
            group.digest(),
            &records,
            &heads,
            replies.iter().map(|(k, p, r)| (*k, *p, r)),
            &[],
        )
        .unwrap();
    assert_eq!(store.last_applied(), 5);
    assert_eq!(store.digest().unwrap(), group.digest());
    assert_eq!(
        store.audit().unwrap().len(),
        5,
        "audit lines beyond 5 are gone"
    );
    assert_eq!(
        store.stream_heads().unwrap(),
        vec![RequestKey { stream: 9, seq: 40 }],
        "only the snapshot's streams: this replica's own history is replaced"
    );
    assert_eq!(
        store
            .reply(RequestKey { stream: 9, seq: 36 })
            .unwrap()
            .unwrap()
            .1,
        group_log[0].reply
    );
    // It survives a reopen, and goes on from position 6.
    drop(store);
    let mut store = open(&dir, "a.db");
    assert_eq!(store.last_applied(), 5);
    let next = execute_all(&mut group, 6, &[doctor("DDO0001", "After")]);
    store.commit(&next).unwrap();
    assert_eq!(store.digest().unwrap(), group.digest());
    assert_eq!(store.last_applied(), 6);
    assert!(
        store
            .stream_heads()
            .unwrap()
            .contains(&RequestKey { stream: 7, seq: 6 }),
        "a committed reply moves its stream's head"
    );
}

#[test]
fn the_log_hash_chains_every_commit_and_survives_reopen_and_install() {
    let dir = TempDir::new().unwrap();
    let mut state = ClinicState::new();
    let entries = execute_all(
        &mut state,
        1,
        &[doctor("MTL0001", "Doe"), nurse("LVL0001", "Roe")],
    );
    let expected = entries.iter().fold(LogHash::EMPTY, |h, e| h.chain(e));
    assert_ne!(expected, LogHash::EMPTY.chain(&entries[0]));
    {
        let mut store = open(&dir, "a.db");
        assert_eq!(store.log_hash(), Some(LogHash::EMPTY));
        store.commit(&entries[..1]).unwrap();
        store.commit(&entries[1..]).unwrap();
        assert_eq!(store.log_hash(), Some(expected));
    }
    let mut store = open(&dir, "a.db");
    assert_eq!(store.log_hash(), Some(expected), "read back at reopen");
    // An install at an earlier position sets the hash it brings, even where
    // an audit line of the replaced log remains at that position.
    let base = LogHash([9; 32]);
    let one: Vec<Record> = state.records().take(1).cloned().collect();
    let digest = StateDigest::of(&one);
    store
        .install(1, Some(base), digest, &one, &[], std::iter::empty(), &[])
        .unwrap();
    assert_eq!(store.log_hash(), Some(base));
    drop(store);
    let mut store = open(&dir, "a.db");
    assert_eq!(store.log_hash(), Some(base), "the installed base wins");
    let next = execute_all(
        &mut ClinicState::from_records(one),
        2,
        &[doctor("DDO0001", "X")],
    );
    store.commit(&next).unwrap();
    drop(store);
    let store = open(&dir, "a.db");
    assert_eq!(store.log_hash(), Some(base.chain(&next[0])));
}

#[test]
fn a_version_1_store_gains_log_hashes_that_stay_unknown() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("a.db");
    let mut state = ClinicState::new();
    let entries = execute_all(&mut state, 1, &[doctor("MTL0001", "Doe")]);
    {
        // A version 1 store: version 2 without the chain column.
        drop(Store::open(&path, SyncMode::Normal).unwrap());
        downgrade_to_v2(&path);
        let conn = rusqlite::Connection::open(&path).unwrap();
        conn.execute_batch(
            "ALTER TABLE audit DROP COLUMN chain;
             UPDATE meta SET value = 1 WHERE key = 'schema_version';",
        )
        .unwrap();
    }
    let mut store = Store::open(&path, SyncMode::Normal).unwrap();
    assert_eq!(store.log_hash(), Some(LogHash::EMPTY), "empty: known");
    store.commit(&entries).unwrap();
    drop(store);
    let store = Store::open(&path, SyncMode::Normal).unwrap();
    assert_eq!(store.last_applied(), 1);
    assert!(store.log_hash().is_some(), "written after the migration");
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute("UPDATE audit SET chain = NULL", []).unwrap();
    drop((store, conn));
    let store = Store::open(&path, SyncMode::Normal).unwrap();
    assert_eq!(store.log_hash(), None, "a line of version 1: unknown");
}

/// Turns a store of this version into one of schema version 3: no
/// `audit.authenticated`.
fn downgrade_to_v3(path: &Path) {
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "ALTER TABLE audit DROP COLUMN authenticated;
         UPDATE meta SET value = 3 WHERE key = 'schema_version';",
    )
    .unwrap();
}

#[test]
fn the_audit_trail_keeps_the_authenticated_manager_and_a_version_3_store_gains_it() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("a.db");
    let mut state = ClinicState::new();
    let mut entries = execute_all(
        &mut state,
        1,
        &[doctor("MTL0001", "Doe"), nurse("LVL0001", "Roe")],
    );
    entries[1].effect.audit.authenticated = Some("LVL0001".into());
    {
        let mut store = Store::open(&path, SyncMode::Normal).unwrap();
        store.commit(&entries).unwrap();
        let audit = store.audit().unwrap();
        assert_eq!(audit[0].1.authenticated, None);
        assert_eq!(audit[1].1.authenticated.as_deref(), Some("LVL0001"));
    }
    downgrade_to_v3(&path);
    let mut store = Store::open(&path, SyncMode::Normal).unwrap();
    assert_eq!(store.meta("schema_version").unwrap(), Some(SCHEMA_VERSION));
    assert_eq!(store.last_applied(), 2);
    let audit = store.audit().unwrap();
    assert!(
        audit.iter().all(|(_, a)| a.authenticated.is_none()),
        "lines of version 3 were not authenticated"
    );
    let mut more = execute_all(&mut state, 3, &[doctor("DDO0001", "Poe")]);
    more[0].effect.audit.authenticated = Some("DDO0001".into());
    store.commit(&more).unwrap();
    drop(store);
    let store = Store::open(&path, SyncMode::Normal).unwrap();
    let audit = store.audit().unwrap();
    assert_eq!(audit.len(), 3);
    assert_eq!(audit[2].1.authenticated.as_deref(), Some("DDO0001"));
}

/// Turns a store of this version into one of schema version 2, as an older
/// dcms left it: every record in one `records` table keyed by kind and
/// number.
fn downgrade_to_v2(path: &Path) {
    downgrade_to_v3(path);
    let conn = rusqlite::Connection::open(path).unwrap();
    conn.execute_batch(
        "BEGIN;
         CREATE TABLE records_v2 (
             kind           TEXT NOT NULL,
             number         INTEGER NOT NULL,
             clinic         TEXT NOT NULL,
             first_name     TEXT NOT NULL,
             last_name      TEXT NOT NULL,
             address        TEXT NOT NULL,
             phone          TEXT NOT NULL,
             specialization TEXT NOT NULL,
             location       TEXT NOT NULL,
             designation    TEXT NOT NULL,
             status         TEXT NOT NULL,
             status_date    TEXT NOT NULL,
             PRIMARY KEY (kind, number)
         ) WITHOUT ROWID;
         INSERT INTO records_v2 SELECT * FROM records;
         DROP VIEW records;
         DROP TABLE doctors;
         DROP TABLE nurses;
         ALTER TABLE records_v2 RENAME TO records;
         UPDATE meta SET value = 2 WHERE key = 'schema_version';
         COMMIT;",
    )
    .unwrap();
}

#[test]
fn a_version_2_store_moves_its_records_to_one_table_per_kind() {
    let dir = TempDir::new().unwrap();
    let path = dir.path().join("a.db");
    let mut state = ClinicState::new();
    let entries = execute_all(
        &mut state,
        1,
        &[
            doctor("MTL0001", "Doe"),
            nurse("LVL0001", "Roe"),
            doctor("DDO0001", "Poe"),
            nurse("MTL0001", "Moe"),
        ],
    );
    let (records, hash) = {
        let mut store = Store::open(&path, SyncMode::Normal).unwrap();
        store.commit(&entries).unwrap();
        (store.records().unwrap(), store.log_hash())
    };
    assert_eq!(records.len(), 4);
    downgrade_to_v2(&path);
    {
        let conn = rusqlite::Connection::open(&path).unwrap();
        let kind: String = conn
            .query_row(
                "SELECT type FROM sqlite_schema WHERE name = 'records'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(kind, "table", "the downgrade made a version 2 store");
    }
    let mut store = Store::open(&path, SyncMode::Normal).unwrap();
    assert_eq!(store.records().unwrap(), records);
    assert_eq!(store.digest().unwrap(), state.digest());
    assert_eq!(store.log_hash(), hash);
    assert_eq!(store.last_applied(), 4);
    assert_eq!(store.meta("schema_version").unwrap(), Some(SCHEMA_VERSION));
    let kind: String = store
        .conn
        .query_row(
            "SELECT type FROM sqlite_schema WHERE name = 'records'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(kind, "view");
    // Writing goes on where it left off, and a reopen keeps it all.
    let more = execute_all(
        &mut state,
        5,
        &[doctor("LVL0001", "Zoe"), nurse("DDO0001", "Yu")],
    );
    store.commit(&more).unwrap();
    drop(store);
    let store = Store::open(&path, SyncMode::Normal).unwrap();
    assert_eq!(store.records().unwrap().len(), 6);
    assert_eq!(store.digest().unwrap(), state.digest());
}

#[test]
fn only_the_window_of_replies_is_kept_and_heads_survive() {
    let dir = TempDir::new().unwrap();
    let mut state = ClinicState::new();
    let requests: Vec<Request> = (0..40)
        .map(|i| doctor("MTL0001", &format!("Doe{i}")))
        .collect();
    let entries = execute_all(&mut state, 1, &requests);
    let mut store = open(&dir, "w.db");
    store.keep_replies(8);
    for batch in entries.chunks(7) {
        store.commit(batch).unwrap();
    }
    let rows: i64 = store
        .conn
        .query_row("SELECT COUNT(*) FROM replies", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows, 8, "the newest 8 replies of the one stream");
    assert_eq!(
        store.stream_heads().unwrap(),
        vec![RequestKey { stream: 7, seq: 40 }],
        "the head is still known"
    );
    let key = |seq| RequestKey { stream: 7, seq };
    assert!(store.reply(key(33)).unwrap().is_some());
    assert!(store.reply(key(32)).unwrap().is_none());
    // The records and the audit trail are untouched.
    assert_eq!(store.records().unwrap().len(), 40);
    assert_eq!(store.audit().unwrap().len(), 40);
}

#[test]
fn forgetting_a_streams_replies_keeps_its_head() {
    let dir = TempDir::new().unwrap();
    let mut state = ClinicState::new();
    let requests: Vec<Request> = (0..6)
        .map(|i| doctor("MTL0001", &format!("D{i}")))
        .collect();
    let entries = execute_all(&mut state, 1, &requests);
    let mut store = open(&dir, "f.db");
    store.commit(&entries[..4]).unwrap();
    store
        .forget_replies(&[RequestKey { stream: 7, seq: 4 }])
        .unwrap();
    // Numbers after the forgotten head stay (the stream came back).
    store.commit(&entries[4..]).unwrap();
    let key = |seq| RequestKey { stream: 7, seq };
    assert!(store.reply(key(4)).unwrap().is_none());
    assert!(store.reply(key(5)).unwrap().is_some());
    assert_eq!(store.stream_heads().unwrap(), vec![key(6)]);
    store.forget_replies(&[key(6)]).unwrap();
    drop(store);
    let store = open(&dir, "f.db");
    assert_eq!(
        store.stream_heads().unwrap(),
        vec![key(6)],
        "the head survives a reopen"
    );
    assert!(store.reply(key(6)).unwrap().is_none());
}

#[test]
fn retained_replies_survive_reopen_snapshot_and_install_and_expire_in_log_time() {
    let dir = TempDir::new().unwrap();
    let mut state = ClinicState::new();
    let mut entries = execute_all(
        &mut state,
        1,
        &[doctor("MTL0001", "Doe"), nurse("LVL0001", "Roe")],
    );
    let ft = |retention_id, expires_ms| FtRequest {
        client_id: "client-a".into(),
        retention_id,
        expires_ms,
    };
    // Entry 1 executes identity 5; entry 2 is a retry of it (same reply).
    entries[0].ft = Some(ft(5, 10_000));
    entries[1].ft = Some(ft(5, 10_000));
    entries[1].reply = entries[0].reply.clone();
    {
        let mut store = open(&dir, "r.db");
        store.commit(&entries).unwrap();
    }
    let store = open(&dir, "r.db");
    let retained = store.retained().unwrap();
    assert_eq!(retained.len(), 1, "one row per identity: {retained:?}");
    assert_eq!(retained[0].position, 1, "the first entry is retained");
    assert_eq!(retained[0].reply, entries[0].reply);

    // A snapshot carries it; a restored store has it.
    let mut store = store;
    let mut chunks = Vec::new();
    store
        .write_snapshot(64, |c| {
            chunks.push(c);
            Ok(())
        })
        .unwrap();
    let restored =
        Store::restore(dir.path().join("restored.db"), SyncMode::Normal, chunks).unwrap();
    assert_eq!(restored.retained().unwrap(), retained);

    // An install replaces the retained replies with the snapshot's.
    let records: Vec<Record> = state.records().cloned().collect();
    store
        .install(
            2,
            None,
            state.digest(),
            &records,
            &[],
            std::iter::empty(),
            &[],
        )
        .unwrap();
    assert!(store.retained().unwrap().is_empty());
    store
        .install(
            2,
            None,
            state.digest(),
            &records,
            &[],
            std::iter::empty(),
            &retained,
        )
        .unwrap();
    assert_eq!(store.retained().unwrap(), retained);

    // Expiry follows the log's time: an entry executed after the
    // expiration and the grace deletes the row, one before does not.
    let mut later = execute_all(&mut state, 3, &[doctor("MTL0002", "Late")]);
    later[0].effect.audit.time_ms = 10_000 + RETAINED_GRACE_MS;
    store.commit(&later).unwrap();
    assert_eq!(store.retained().unwrap().len(), 1, "within the grace");
    let mut last = execute_all(&mut state, 4, &[doctor("MTL0002", "Later")]);
    last[0].effect.audit.time_ms = 10_001 + RETAINED_GRACE_MS + 1_000;
    store.commit(&last).unwrap();
    assert!(store.retained().unwrap().is_empty(), "expired");
}
