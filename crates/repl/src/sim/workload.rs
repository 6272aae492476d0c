//! Random client requests of every kind, valid and invalid.
//!
//! Record IDs are drawn near the ones the leader hands out (DR10000 and NR10000
//! upwards), so edits, transfers and gets hit real records often and missing
//! or foreign ones sometimes; every field is occasionally malformed.

use dcms_core::{DoctorFields, NurseFields, Request};
use rand::seq::SliceRandom;
use rand::Rng;
use rand_chacha::ChaCha8Rng;

const MANAGERS: &[&str] = &[
    "MTL0001",
    "MTL0002",
    "LVL0001",
    "ddo0042",
    " LVL0007 ",
    "DDO9999",
];
const BAD_MANAGERS: &[&str] = &["", "QUE1234", "MTL12", "MTL12a4", "MTL١٢٣٤"];
const FIRST: &[&str] = &["Ann", "Bob", "Chloé", "Dmitri", "Eve", "Fatima"];
const LAST: &[&str] = &[
    "Smith",
    "Smithers",
    "Tremblay",
    "Gagnon",
    "Roy",
    "Côté",
    "O'Brien",
    "Müller-Straße",
];
const CLINICS: &[&str] = &["MTL", "lvl", "DDO", " mtl "];
const BAD_CLINICS: &[&str] = &["", "QUE", "Montreal"];

fn pick<'a>(rng: &mut ChaCha8Rng, list: &[&'a str]) -> &'a str {
    list.choose(rng).expect("non-empty list")
}

/// A value that is usually good and sometimes `bad`.
fn maybe<'a>(rng: &mut ChaCha8Rng, good: &[&'a str], bad: &[&'a str]) -> String {
    if rng.gen_bool(0.1) {
        pick(rng, bad).to_string()
    } else {
        pick(rng, good).to_string()
    }
}

fn manager(rng: &mut ChaCha8Rng) -> String {
    maybe(rng, MANAGERS, BAD_MANAGERS)
}

fn text(rng: &mut ChaCha8Rng, good: &[&str]) -> String {
    match rng.gen_range(0..20) {
        0 => String::new(),
        1 => "x".repeat(101),
        2 => format!("long {}", "é".repeat(rng.gen_range(50..95))),
        _ => pick(rng, good).to_string(),
    }
}

fn record_id(rng: &mut ChaCha8Rng, created: u32) -> String {
    match rng.gen_range(0..12) {
        0 => pick(rng, &["", "XR10000", "DR999", "DR09999"]).to_string(),
        1..=5 => format!("DR{}", 10_000 + rng.gen_range(0..=created)),
        _ => format!("nr{}", 10_000 + rng.gen_range(0..=created)),
    }
}

/// Generates requests; `created` bounds the record numbers aimed at.
pub fn request(rng: &mut ChaCha8Rng, created: u32) -> Request {
    let manager_id = manager(rng);
    let roll = rng.gen_range(0..100);
    request_of(rng, manager_id, roll, created)
}

/// Generates read-only requests (counts, gets, lists), as [`request`] does.
pub fn read_request(rng: &mut ChaCha8Rng, created: u32) -> Request {
    let manager_id = manager(rng);
    let roll = match rng.gen_range(0..28) {
        r @ 0..=7 => 45 + r,
        r => 81 + (r - 8),
    };
    request_of(rng, manager_id, roll, created)
}

/// The request of kind `roll` (0..100, the ranges below).
fn request_of(rng: &mut ChaCha8Rng, manager_id: String, roll: u32, created: u32) -> Request {
    match roll {
        0..=24 => Request::CreateDoctor {
            manager_id,
            fields: DoctorFields {
                first_name: text(rng, FIRST),
                last_name: text(rng, LAST),
                address: text(rng, &["1 Main St", "22 rue Sainte-Catherine"]),
                phone: maybe(
                    rng,
                    &["514-555-0199", "+1 (450) 555 0100"],
                    &["555", "514.555.0199"],
                ),
                specialization: text(rng, &["surgeon", "orthopedic"]),
                location: maybe(rng, CLINICS, BAD_CLINICS),
            },
        },
        25..=44 => Request::CreateNurse {
            manager_id,
            fields: NurseFields {
                first_name: text(rng, FIRST),
                last_name: text(rng, LAST),
                designation: maybe(rng, &["junior", "Senior"], &["chief", ""]),
                status: maybe(rng, &["active", "TERMINATED"], &["retired"]),
                status_date: maybe(
                    rng,
                    &["2024-02-29", "2023-12-01"],
                    &["2023-02-29", "01/02/2024"],
                ),
            },
        },
        45..=52 => Request::GetRecordCounts { manager_id },
        53..=70 => {
            let (field_name, new_value) = match rng.gen_range(0..8) {
                0 => ("address", text(rng, &["9 New Rd"])),
                1 => ("phone", maybe(rng, &["438-555-0123"], &["12"])),
                2 => ("location", maybe(rng, CLINICS, BAD_CLINICS)),
                3 => ("designation", maybe(rng, &["senior", "junior"], &["boss"])),
                4 => ("status", maybe(rng, &["terminated", "active"], &["gone"])),
                5 => ("statusDate", maybe(rng, &["2025-01-31"], &["2025-02-30"])),
                6 => ("lastName", "Nope".to_string()),
                _ => ("  PHONE ", "450-555-0000".to_string()),
            };
            Request::EditRecord {
                manager_id,
                record_id: record_id(rng, created),
                field_name: field_name.to_string(),
                new_value,
            }
        }
        71..=80 => Request::TransferRecord {
            manager_id,
            record_id: record_id(rng, created),
            remote_clinic: maybe(rng, CLINICS, BAD_CLINICS),
        },
        81..=90 => Request::GetRecord {
            manager_id,
            record_id: record_id(rng, created),
        },
        99 => Request::ListRecordsPage {
            manager_id,
            last_name_prefix: pick(rng, &["", "S", "smith", "Cô"]).to_string(),
            after_record_id: match rng.gen_range(0..3) {
                0 => String::new(),
                _ => record_id(rng, created),
            },
            max_count: *[0u32, 1, 3, 5000].choose(rng).expect("non-empty"),
        },
        _ => Request::ListRecords {
            manager_id,
            last_name_prefix: match rng.gen_range(0..6) {
                0 => String::new(),
                1 => "y".repeat(101),
                _ => pick(rng, &["S", "smith", "tr", "Cô", "m"]).to_string(),
            },
        },
    }
}
