//! Tests of the domain rules: every operation, every error, and the
//! execute/apply split.

use super::*;
use crate::model::{Designation, NurseStatus};
use crate::ops::{DoctorFields, NurseFields};

const T: u64 = 1_700_000_000_000;

/// Executes and applies, as a single replica would.
fn run(state: &mut ClinicState, req: Request) -> Reply {
    let (reply, effect) = state.execute(&req, T);
    state.apply(&effect);
    reply
}

/// Runs a request that must succeed.
#[track_caller]
fn must(state: &mut ClinicState, req: Request) -> Outcome {
    run(state, req).expect("request should succeed")
}

pub(crate) fn doctor(manager: &str, last: &str) -> Request {
    Request::CreateDoctor {
        manager_id: manager.into(),
        fields: DoctorFields {
            first_name: "Ann".into(),
            last_name: last.into(),
            address: "1 Main St".into(),
            phone: "514-555-0199".into(),
            specialization: "surgeon".into(),
            location: "mtl".into(),
        },
    }
}

pub(crate) fn nurse(manager: &str, last: &str) -> Request {
    Request::CreateNurse {
        manager_id: manager.into(),
        fields: NurseFields {
            first_name: "Bo".into(),
            last_name: last.into(),
            designation: "junior".into(),
            status: "active".into(),
            status_date: "2024-02-29".into(),
        },
    }
}

fn edit(manager: &str, id: &str, field: &str, value: &str) -> Request {
    Request::EditRecord {
        manager_id: manager.into(),
        record_id: id.into(),
        field_name: field.into(),
        new_value: value.into(),
    }
}

fn transfer(manager: &str, id: &str, to: &str) -> Request {
    Request::TransferRecord {
        manager_id: manager.into(),
        record_id: id.into(),
        remote_clinic: to.into(),
    }
}

fn get(manager: &str, id: &str) -> Request {
    Request::GetRecord {
        manager_id: manager.into(),
        record_id: id.into(),
    }
}

fn list(manager: &str, prefix: &str) -> Request {
    Request::ListRecords {
        manager_id: manager.into(),
        last_name_prefix: prefix.into(),
    }
}

fn counts(manager: &str) -> Request {
    Request::GetRecordCounts {
        manager_id: manager.into(),
    }
}

fn id_of(reply: Reply) -> String {
    match reply {
        Ok(Outcome::RecordId(id)) => id.to_string(),
        other => panic!("expected a record ID, got {other:?}"),
    }
}

/// Asserts `reply` is InvalidRequest naming `field`.
#[track_caller]
fn assert_invalid(reply: Reply, field: &str) {
    match reply {
        Err(DomainError::InvalidRequest { field: f, reason }) => {
            assert_eq!(f, field, "wrong field (reason: {reason})");
            assert!(!reason.is_empty());
        }
        other => panic!("expected InvalidRequest on {field}, got {other:?}"),
    }
}

/// A refused request changes nothing: same digest, same counts, and an
/// effect with no change.
#[track_caller]
fn assert_refused_without_change(state: &ClinicState, req: Request) -> DomainError {
    let before = state.digest();
    let (reply, effect) = state.execute(&req, T);
    assert!(
        effect.change.is_none(),
        "a refused request must carry no change"
    );
    assert!(effect.audit.outcome.starts_with("error: "));
    let mut after = state.clone();
    after.apply(&effect);
    assert_eq!(after.digest(), before);
    reply.expect_err("request should have been refused")
}

#[test]
fn ids_are_assigned_in_increasing_order_per_kind_from_10000() {
    let mut s = ClinicState::new();
    assert_eq!(id_of(run(&mut s, doctor("MTL0001", "A"))), "DR10000");
    assert_eq!(id_of(run(&mut s, doctor("LVL0001", "B"))), "DR10001");
    assert_eq!(id_of(run(&mut s, nurse("DDO0001", "C"))), "NR10000");
    assert_eq!(id_of(run(&mut s, doctor("MTL0001", "D"))), "DR10002");
}

#[test]
fn create_puts_the_record_in_the_managers_clinic_with_canonical_values() {
    let mut s = ClinicState::new();
    let id = id_of(run(
        &mut s,
        Request::CreateNurse {
            manager_id: " lvl0042 ".into(),
            fields: NurseFields {
                first_name: "  Zoë ".into(),
                last_name: "Weiß".into(),
                designation: "SENIOR".into(),
                status: "Terminated".into(),
                status_date: " 2020-01-31 ".into(),
            },
        },
    ));
    let r = s.get(RecordId::parse(&id).unwrap()).unwrap();
    assert_eq!(r.clinic, Clinic::Lvl);
    match &r.body {
        RecordBody::Nurse(n) => {
            assert_eq!(n.first_name, "Zoë");
            assert_eq!(n.last_name, "Weiß");
            assert_eq!(n.designation, Designation::Senior);
            assert_eq!(n.status, NurseStatus::Terminated);
            assert_eq!(n.status_date.to_string(), "2020-01-31");
        }
        other => panic!("expected a nurse, got {other:?}"),
    }
}

#[test]
fn every_create_error_names_its_field_and_changes_nothing() {
    let mut s = ClinicState::new();
    must(&mut s, doctor("MTL0001", "Seed"));
    let base = |f: &dyn Fn(&mut Request)| {
        let mut r = doctor("MTL0001", "X");
        f(&mut r);
        r
    };
    let set = |name: &'static str, v: &'static str| {
        move |r: &mut Request| {
            if let Request::CreateDoctor {
                manager_id,
                fields: f,
            } = r
            {
                let slot = match name {
                    "managerID" => manager_id,
                    "firstName" => &mut f.first_name,
                    "lastName" => &mut f.last_name,
                    "address" => &mut f.address,
                    "phone" => &mut f.phone,
                    "specialization" => &mut f.specialization,
                    _ => &mut f.location,
                };
                *slot = v.to_string();
            }
        }
    };
    let long = Box::leak("x".repeat(101).into_boxed_str());
    for (field, value) in [
        ("managerID", ""),
        ("managerID", "MTL123"),
        ("managerID", "QUE1234"),
        ("firstName", "   "),
        ("lastName", ""),
        ("address", &*long),
        ("phone", "12345"),
        ("phone", "514 555 O199"),
        ("specialization", ""),
        ("location", "paris"),
    ] {
        let req = base(&set(field, value));
        let e = assert_refused_without_change(&s, req);
        match e {
            DomainError::InvalidRequest { field: f, .. } => assert_eq!(f, field, "value {value:?}"),
            other => panic!("{field}={value:?}: expected InvalidRequest, got {other:?}"),
        }
    }
    // A refused create does not use up an ID.
    assert_eq!(id_of(run(&mut s, doctor("MTL0001", "Y"))), "DR10001");
}

#[test]
fn nurse_create_errors() {
    let s = ClinicState::new();
    let with = |designation: &str, status: &str, date: &str| Request::CreateNurse {
        manager_id: "DDO0001".into(),
        fields: NurseFields {
            first_name: "A".into(),
            last_name: "B".into(),
            designation: designation.into(),
            status: status.into(),
            status_date: date.into(),
        },
    };
    for (req, field) in [
        (with("chief", "active", "2024-01-01"), "designation"),
        (with("junior", "retired", "2024-01-01"), "status"),
        (with("junior", "active", "2023-02-29"), "statusDate"),
        (with("junior", "active", "01/02/2024"), "statusDate"),
        (with("junior", "active", ""), "statusDate"),
    ] {
        let e = assert_refused_without_change(&s, req);
        assert!(matches!(e, DomainError::InvalidRequest { field: f, .. } if f == field));
    }
}

#[test]
fn counts_cover_every_clinic_in_order() {
    let mut s = ClinicState::new();
    for m in [
        "MTL0001", "MTL0002", "MTL0003", "LVL0001", "LVL0001", "DDO0009",
    ] {
        must(&mut s, nurse(m, "N"));
    }
    match run(&mut s, counts("ddo0001")) {
        Ok(Outcome::Counts(c)) => assert_eq!(c.to_string(), "MTL 3, LVL 2, DDO 1"),
        other => panic!("{other:?}"),
    }
    assert_invalid(run(&mut s, counts("XYZ0001")), "managerID");
}

#[test]
fn edit_changes_only_allowed_fields_of_own_records() {
    let mut s = ClinicState::new();
    let dr = id_of(run(&mut s, doctor("MTL0001", "Doe")));
    let nr = id_of(run(&mut s, nurse("MTL0001", "Roe")));

    assert_eq!(
        id_of(run(
            &mut s,
            edit("MTL0002", &dr, "PHONE", " +1 (438) 555-0000 ")
        )),
        dr
    );
    assert_eq!(
        id_of(run(&mut s, edit("MTL0002", &dr, "location", "DDO"))),
        dr
    );
    assert_eq!(
        id_of(run(&mut s, edit("MTL0002", &dr, "address", "2 Side St"))),
        dr
    );
    assert_eq!(
        id_of(run(
            &mut s,
            edit("MTL0002", &nr, "statusdate", "2025-12-31")
        )),
        nr
    );
    assert_eq!(
        id_of(run(&mut s, edit("MTL0002", &nr, "designation", "Senior"))),
        nr
    );
    assert_eq!(
        id_of(run(&mut s, edit("MTL0002", &nr, "status", "terminated"))),
        nr
    );
    match &s.get(RecordId::parse(&dr).unwrap()).unwrap().body {
        RecordBody::Doctor(d) => {
            assert_eq!(d.phone, "+1 (438) 555-0000");
            assert_eq!(d.location, Clinic::Ddo);
            assert_eq!(d.address, "2 Side St");
        }
        _ => unreachable!(),
    }
    match &s.get(RecordId::parse(&nr).unwrap()).unwrap().body {
        RecordBody::Nurse(n) => {
            assert_eq!(n.status_date.to_string(), "2025-12-31");
            assert_eq!(n.designation, Designation::Senior);
            assert_eq!(n.status, NurseStatus::Terminated);
        }
        _ => unreachable!(),
    }

    // Field names that belong to the other kind, or to no kind.
    assert_invalid(
        assert_refused(&s, edit("MTL0001", &dr, "designation", "senior")),
        "fieldName",
    );
    assert_invalid(
        assert_refused(&s, edit("MTL0001", &nr, "phone", "5145550000")),
        "fieldName",
    );
    assert_invalid(
        assert_refused(&s, edit("MTL0001", &dr, "firstName", "Zed")),
        "fieldName",
    );
    // Bad values name the record field.
    assert_invalid(
        assert_refused(&s, edit("MTL0001", &dr, "phone", "12")),
        "phone",
    );
    assert_invalid(
        assert_refused(&s, edit("MTL0001", &dr, "location", "rome")),
        "location",
    );
    assert_invalid(
        assert_refused(&s, edit("MTL0001", &dr, "address", "")),
        "address",
    );
    assert_invalid(
        assert_refused(&s, edit("MTL0001", &nr, "statusDate", "2025-02-30")),
        "statusDate",
    );
    assert_invalid(
        assert_refused(&s, edit("MTL0001", &nr, "status", "gone")),
        "status",
    );
    // Malformed and unknown records.
    assert_invalid(
        assert_refused(&s, edit("MTL0001", "XX10000", "phone", "5145550000")),
        "recordID",
    );
    assert!(matches!(
        assert_refused_without_change(&s, edit("MTL0001", "DR99999", "phone", "5145550000")),
        DomainError::NotFound { record_id } if record_id == "DR99999"
    ));
    // Another clinic's manager.
    assert!(matches!(
        assert_refused_without_change(&s, edit("LVL0001", &dr, "phone", "5145550000")),
        DomainError::NotAuthorized { manager_id, .. } if manager_id == "LVL0001"
    ));
}

/// Like [`assert_refused_without_change`], returning the reply for matching.
#[track_caller]
fn assert_refused(s: &ClinicState, req: Request) -> Reply {
    Err(assert_refused_without_change(s, req))
}

#[test]
fn an_edit_to_the_same_value_succeeds_without_a_change() {
    let mut s = ClinicState::new();
    let dr = id_of(run(&mut s, doctor("MTL0001", "Doe")));
    let (reply, effect) = s.execute(&edit("MTL0001", &dr, "location", "MTL"), T);
    assert_eq!(id_of(reply), dr);
    assert!(effect.change.is_none());
}

#[test]
fn transfer_moves_a_record_atomically_and_keeps_its_id() {
    let mut s = ClinicState::new();
    let dr = id_of(run(&mut s, doctor("MTL0001", "Doe")));
    let before = s.counts();
    assert_eq!(id_of(run(&mut s, transfer("MTL0001", &dr, "lvl"))), dr);
    let after = s.counts();
    assert_eq!(after.get(Clinic::Mtl), before.get(Clinic::Mtl) - 1);
    assert_eq!(after.get(Clinic::Lvl), before.get(Clinic::Lvl) + 1);
    assert_eq!(s.len(), 1, "in exactly one clinic");
    assert_eq!(
        s.get(RecordId::parse(&dr).unwrap()).unwrap().clinic,
        Clinic::Lvl
    );

    // The old clinic can no longer touch it; the new one can.
    assert!(matches!(
        assert_refused_without_change(&s, transfer("MTL0001", &dr, "DDO")),
        DomainError::NotAuthorized { .. }
    ));
    assert!(matches!(
        assert_refused_without_change(&s, get("MTL0001", &dr)),
        DomainError::NotAuthorized { .. }
    ));
    assert!(run(&mut s, get("LVL0003", &dr)).is_ok());

    // To the clinic it is already in, to an unknown clinic, an unknown record.
    assert_invalid(
        assert_refused(&s, transfer("LVL0001", &dr, "LVL")),
        "remoteClinicServerName",
    );
    assert_invalid(
        assert_refused(&s, transfer("LVL0001", &dr, "TOR")),
        "remoteClinicServerName",
    );
    assert!(matches!(
        assert_refused_without_change(&s, transfer("LVL0001", "NR10000", "MTL")),
        DomainError::NotFound { .. }
    ));

    // IDs are never reused after a transfer.
    assert_eq!(id_of(run(&mut s, doctor("MTL0001", "New"))), "DR10001");
}

#[test]
fn get_and_list_read_only_the_managers_clinic_in_name_order() {
    let mut s = ClinicState::new();
    for last in ["smith", "Adams", "Smythe", "Ács", "Brown"] {
        must(&mut s, doctor("MTL0001", last));
    }
    must(&mut s, doctor("LVL0001", "Smith"));
    let names = |reply: Reply| match reply {
        Ok(Outcome::Records(list)) => list
            .iter()
            .map(|r| format!("{}:{}", r.last_name(), r.id))
            .collect::<Vec<_>>(),
        other => panic!("{other:?}"),
    };
    assert_eq!(
        names(run(&mut s, list("MTL0009", ""))),
        [
            "Adams:DR10001",
            "Brown:DR10004",
            "smith:DR10000",
            "Smythe:DR10002",
            "Ács:DR10003"
        ]
    );
    assert_eq!(
        names(run(&mut s, list("MTL0009", " SM"))),
        ["smith:DR10000", "Smythe:DR10002"]
    );
    assert_eq!(
        names(run(&mut s, list("MTL0009", "smi"))),
        ["smith:DR10000"]
    );
    assert_eq!(names(run(&mut s, list("MTL0009", "ác"))), ["Ács:DR10003"]);
    assert!(names(run(&mut s, list("MTL0009", "zz"))).is_empty());
    assert_eq!(names(run(&mut s, list("LVL0009", ""))), ["Smith:DR10005"]);
    assert_invalid(
        run(&mut s, list("MTL0009", &"a".repeat(101))),
        "lastNamePrefix",
    );
    assert_invalid(run(&mut s, list("", "")), "managerID");

    match run(&mut s, get("MTL0001", "dr10000")) {
        Ok(Outcome::Record(r)) => assert_eq!(r.last_name(), "smith"),
        other => panic!("{other:?}"),
    }
    assert_invalid(run(&mut s, get("MTL0001", "DR1")), "recordID");
    assert!(matches!(
        run(&mut s, get("MTL0001", "NR10000")),
        Err(DomainError::NotFound { .. })
    ));
}

#[test]
fn reads_change_nothing_but_are_audited() {
    let mut s = ClinicState::new();
    must(&mut s, doctor("MTL0001", "Doe"));
    let d = s.digest();
    for req in [
        counts("MTL0001"),
        get("MTL0001", "DR10000"),
        list("MTL0001", ""),
    ] {
        let (reply, effect) = s.execute(&req, T);
        assert!(reply.is_ok());
        assert!(effect.change.is_none());
        assert_eq!(effect.audit.operation, req.operation());
        assert!(effect.audit.outcome.starts_with("ok: "));
        s.apply(&effect);
        assert_eq!(s.digest(), d);
    }
}

#[test]
fn the_audit_line_records_manager_time_arguments_and_outcome() {
    let s = ClinicState::new();
    let (_, effect) = s.execute(&doctor("mtl0001", "Doe"), 42);
    let a = effect.audit;
    assert_eq!(a.time_ms, 42);
    assert_eq!(a.manager_id, "mtl0001");
    assert_eq!(a.clinic, Some(Clinic::Mtl));
    assert_eq!(a.operation, "createDRecord");
    assert!(a.arguments.contains("lastName=\"Doe\""), "{}", a.arguments);
    assert_eq!(a.outcome, "ok: DR10000");

    let (_, effect) = s.execute(&counts(&"Q".repeat(5000)), 43);
    assert!(effect.audit.manager_id.len() <= 20, "untrusted text is cut");
    assert_eq!(effect.audit.clinic, None);
    assert!(effect.audit.outcome.starts_with("error: invalid managerID"));
}

#[test]
fn ids_run_out_with_a_typed_error() {
    let mut s = ClinicState::new();
    let last = Record {
        id: RecordId {
            kind: RecordKind::Nurse,
            number: RecordId::LAST,
        },
        clinic: Clinic::Mtl,
        body: RecordBody::Nurse(crate::model::Nurse {
            first_name: "A".into(),
            last_name: "B".into(),
            designation: Designation::Junior,
            status: NurseStatus::Active,
            status_date: crate::model::Date::parse("2024-01-01").unwrap(),
        }),
    };
    s.apply(&Effect {
        change: Some(Change::Create(last)),
        audit: s.execute(&counts("MTL0001"), T).1.audit,
    });
    assert!(matches!(
        assert_refused_without_change(&s, nurse("MTL0001", "C")),
        DomainError::Exhausted { .. }
    ));
    assert!(
        run(&mut s, doctor("MTL0001", "D")).is_ok(),
        "doctors have their own counter"
    );
}

#[test]
#[should_panic(expected = "create of DR10000 after a higher or equal ID")]
fn applying_a_create_twice_is_caught() {
    let mut s = ClinicState::new();
    let (_, effect) = s.execute(&doctor("MTL0001", "Doe"), T);
    s.apply(&effect);
    s.apply(&effect);
}

#[test]
fn digest_tracks_records_not_history() {
    let mut a = ClinicState::new();
    let dr = id_of(run(&mut a, doctor("MTL0001", "Doe")));
    let d0 = a.digest();
    must(&mut a, edit("MTL0001", &dr, "phone", "5145550000"));
    assert_ne!(a.digest(), d0);
    must(&mut a, edit("MTL0001", &dr, "phone", "514-555-0199"));
    assert_eq!(a.digest(), d0, "same records, same digest");
    assert_eq!(StateDigest::of(a.records()), a.digest());
    assert_eq!(
        ClinicState::from_records(a.records().cloned()).digest(),
        a.digest()
    );
}

pub(crate) mod properties {
    use super::*;
    use proptest::prelude::*;

    /// Requests drawn from a small world so that they often hit existing
    /// records, other clinics' records and every error path.
    pub fn request() -> impl Strategy<Value = Request> {
        let manager = prop::sample::select(vec![
            "MTL0001", "mtl0002", "LVL0001", "DDO0001", "QUE0001", "MTL01", "",
        ]);
        let record = (
            prop::sample::select(vec!["DR", "NR", "dr", "XR"]),
            10_000u32..10_012,
        )
            .prop_map(|(p, n)| format!("{p}{n}"));
        let name = prop::sample::select(vec!["Smith", "smythe", "Ács", "Lee", " ", "O'Neil"]);
        let clinic = prop::sample::select(vec!["MTL", "lvl", "DDO", "TOR"]);
        prop_oneof![
            (
                manager.clone(),
                name.clone(),
                prop::sample::select(vec!["514-555-0199", "12"]),
                clinic.clone()
            )
                .prop_map(|(m, n, p, l)| Request::CreateDoctor {
                    manager_id: m.into(),
                    fields: DoctorFields {
                        first_name: "F".into(),
                        last_name: n.into(),
                        address: "1 Rue".into(),
                        phone: p.into(),
                        specialization: "gp".into(),
                        location: l.into(),
                    },
                }),
            (
                manager.clone(),
                name.clone(),
                prop::sample::select(vec!["2024-02-29", "2023-02-29"])
            )
                .prop_map(|(m, n, d)| Request::CreateNurse {
                    manager_id: m.into(),
                    fields: NurseFields {
                        first_name: "F".into(),
                        last_name: n.into(),
                        designation: "senior".into(),
                        status: "active".into(),
                        status_date: d.into(),
                    },
                }),
            manager.clone().prop_map(|m| Request::GetRecordCounts {
                manager_id: m.into()
            }),
            (
                manager.clone(),
                record.clone(),
                prop::sample::select(vec![
                    "phone",
                    "location",
                    "status",
                    "statusDate",
                    "designation",
                    "name"
                ]),
                prop::sample::select(vec![
                    "5145550000",
                    "lvl",
                    "terminated",
                    "2020-01-01",
                    "junior",
                    "x"
                ])
            )
                .prop_map(|(m, r, f, v)| Request::EditRecord {
                    manager_id: m.into(),
                    record_id: r,
                    field_name: f.into(),
                    new_value: v.into(),
                }),
            (manager.clone(), record.clone(), clinic).prop_map(|(m, r, c)| {
                Request::TransferRecord {
                    manager_id: m.into(),
                    record_id: r,
                    remote_clinic: c.into(),
                }
            }),
            (manager.clone(), record).prop_map(|(m, r)| Request::GetRecord {
                manager_id: m.into(),
                record_id: r,
            }),
            (manager, name).prop_map(|(m, n)| Request::ListRecords {
                manager_id: m.into(),
                last_name_prefix: n.into(),
            }),
        ]
    }

    proptest! {
        /// Effects applied elsewhere give the same state as on the leader.
        #[test]
        fn replaying_effects_gives_an_equal_state(reqs in prop::collection::vec(request(), 0..80)) {
            let mut leader = ClinicState::new();
            let mut backup = ClinicState::new();
            for (i, req) in reqs.iter().enumerate() {
                let (reply, effect) = leader.execute(req, T + i as u64);
                let before = leader.digest();
                leader.apply(&effect);
                backup.apply(&effect);
                if reply.is_err() {
                    prop_assert_eq!(leader.digest(), before, "a rejected request changed the state");
                }
                prop_assert_eq!(leader.digest(), backup.digest());
            }
            prop_assert_eq!(StateDigest::of(leader.records()), leader.digest());
            prop_assert_eq!(leader.records().collect::<Vec<_>>(), backup.records().collect::<Vec<_>>());
            let total: u64 = leader.counts().0.iter().sum();
            prop_assert_eq!(total, leader.len() as u64);
        }

        /// A state without its name index (a backup's) answers every
        /// request as one with it, and so does one that rebuilds it midway
        /// (a backup taking over) and keeps it from then on.
        #[test]
        fn the_name_index_changes_no_answer(
            reqs in prop::collection::vec(request(), 0..80),
            rebuild_at in 0usize..100,
        ) {
            let mut indexed = ClinicState::new();
            let mut bare = ClinicState::new();
            bare.keep_name_index(false);
            prop_assert!(!bare.has_name_index());
            for (i, req) in reqs.iter().enumerate() {
                if i == rebuild_at {
                    bare.keep_name_index(true);
                    prop_assert!(bare.has_name_index());
                }
                let (reply, effect) = indexed.execute(req, T + i as u64);
                prop_assert_eq!(bare.execute(req, T + i as u64), (reply, effect.clone()));
                indexed.apply(&effect);
                bare.apply(&effect);
            }
            prop_assert_eq!(bare.digest(), indexed.digest());
        }
    }
}

fn page(manager: &str, prefix: &str, after: &str, max: u32) -> Request {
    Request::ListRecordsPage {
        manager_id: manager.into(),
        last_name_prefix: prefix.into(),
        after_record_id: after.into(),
        max_count: max,
    }
}

/// Pages `prefix` through with pages of `max`, running `between` after
/// each page; returns the IDs seen, in order.
fn page_through(
    state: &mut ClinicState,
    prefix: &str,
    max: u32,
    mut between: impl FnMut(&mut ClinicState),
) -> Vec<String> {
    let mut seen = Vec::new();
    let mut after = String::new();
    loop {
        match must(state, page("MTL0001", prefix, &after, max)) {
            Outcome::RecordPage {
                records,
                next_after,
            } => {
                assert!(records.len() <= max as usize);
                seen.extend(records.iter().map(|r| r.id.to_string()));
                match next_after {
                    Some(id) => {
                        assert_eq!(
                            Some(id),
                            records.last().map(|r| r.id),
                            "the cursor is the last ID"
                        );
                        after = id.to_string();
                    }
                    None => return seen,
                }
            }
            other => panic!("{other:?}"),
        }
        between(state);
    }
}

#[test]
fn pages_list_what_list_records_lists_in_the_same_order_with_or_without_the_index() {
    for keep_index in [true, false] {
        let mut s = ClinicState::new();
        s.keep_name_index(keep_index);
        for i in 0..23 {
            let last = ["Smith", "smithers", "Tremblay", "Sm"][i % 4];
            must(&mut s, doctor("MTL0001", last));
            must(&mut s, nurse("LVL0001", last)); // another clinic's
        }
        let whole: Vec<String> = match must(&mut s, list("MTL0001", "sm")) {
            Outcome::Records(r) => r.iter().map(|r| r.id.to_string()).collect(),
            other => panic!("{other:?}"),
        };
        assert_eq!(whole.len(), 17, "23 doctors, 6 of them Tremblay");
        for max in [1, 4, 16, 17, 18, 1000, u32::MAX] {
            assert_eq!(
                page_through(&mut s, "sm", max, |_| {}),
                whole,
                "pages of {max}"
            );
        }
        // Exactly full: the last page says there is no next.
        match must(&mut s, page("MTL0001", "sm", "", 17)) {
            Outcome::RecordPage {
                next_after,
                records,
            } => {
                assert_eq!(records.len(), 17);
                assert_eq!(next_after, None);
            }
            other => panic!("{other:?}"),
        }
    }
}

#[test]
fn a_listing_in_pages_sees_every_record_present_throughout_exactly_once() {
    let mut s = ClinicState::new();
    let mut stable = Vec::new();
    for i in 0..40 {
        stable.push(id_of(run(&mut s, doctor("MTL0001", &format!("Roy{i:02}")))));
    }
    // Between pages: new records before and after the cursor, and records
    // moving out and in again (transfers), including the cursor's own.
    let mut n = 0;
    let seen = page_through(&mut s, "roy", 7, |s| {
        n += 1;
        must(s, doctor("MTL0001", &format!("Roy{:02}x", n * 5)));
        must(s, doctor("MTL0001", "Roy00a"));
        let moved = stable[(n * 6) % 40].clone();
        must(s, transfer("MTL0001", &moved, "lvl"));
        must(s, transfer("LVL0001", &moved, "mtl"));
    });
    let mut unique = seen.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), seen.len(), "no record twice: {seen:?}");
    for id in &stable {
        assert!(seen.contains(id), "{id}, present throughout, was listed");
    }
}

#[test]
fn page_arguments_are_checked_by_name() {
    let mut s = ClinicState::new();
    let id = id_of(run(&mut s, doctor("MTL0001", "Smith")));
    assert_invalid(run(&mut s, page("MTL0001", "s", "", 0)), "maxCount");
    assert_invalid(run(&mut s, page("MTL0001", "s", "DR1", 5)), "afterRecordID");
    assert_invalid(
        run(&mut s, page("MTL0001", "s", "DR99999", 5)),
        "afterRecordID",
    );
    assert_invalid(
        run(&mut s, page("MTL0001", &"y".repeat(101), "", 5)),
        "lastNamePrefix",
    );
    // A cursor from another clinic's record still positions the listing.
    must(&mut s, doctor("LVL0001", "Smith"));
    match must(&mut s, page("LVL0001", "s", &id, 5)) {
        Outcome::RecordPage { records, .. } => assert_eq!(records.len(), 1),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_list_over_the_bound_is_refused_naming_the_paged_operation() {
    use crate::ops::bound_list;
    let mut s = ClinicState::new();
    for i in 0..50 {
        must(&mut s, doctor("MTL0001", &format!("Bound{i:02}")));
    }
    let reply = run(&mut s, list("MTL0001", "bound"));
    let records = match &reply {
        Ok(Outcome::Records(r)) => r.clone(),
        other => panic!("{other:?}"),
    };
    let size: usize = 4 + records.iter().map(Record::cdr_size).sum::<usize>();
    assert_eq!(
        bound_list(reply.clone(), size),
        reply,
        "at the bound: served"
    );
    match bound_list(reply.clone(), size - 1) {
        Err(DomainError::InvalidRequest { field, reason }) => {
            assert_eq!(field, "lastNamePrefix");
            assert!(
                reason.contains("50 records") && reason.contains("listRecordsPage"),
                "{reason}"
            );
        }
        other => panic!("{other:?}"),
    }
    // Pages and other replies pass as they are.
    let page = run(&mut s, page("MTL0001", "bound", "", 5));
    assert_eq!(bound_list(page.clone(), 1), page);
}

#[test]
fn the_cdr_size_estimate_is_never_below_the_truth() {
    // The IDL record's strings as the servant writes them; each costs a
    // length, its bytes and a NUL, and at most 3 bytes of alignment.
    let mut s = ClinicState::new();
    let d = id_of(run(&mut s, doctor("MTL0001", &"é".repeat(100))));
    let n = id_of(run(&mut s, nurse("LVL0001", "Roy")));
    for (m, id) in [("MTL0001", d), ("LVL0001", n)] {
        let r = match must(&mut s, get(m, &id)) {
            Outcome::Record(r) => r,
            other => panic!("{other:?}"),
        };
        let texts = [
            r.id.to_string(),
            r.clinic.code().to_string(),
            r.first_name().to_string(),
            r.last_name().to_string(),
        ];
        let least: usize = 4 + texts.iter().map(|t| 4 + t.len() + 1).sum::<usize>();
        assert!(r.cdr_size() >= least, "{} < {least}", r.cdr_size());
        assert!(r.cdr_size() < least + 200, "not wildly above either");
    }
}
