//! A deterministic request generator: the same seed always gives the same
//! requests, so a test can regenerate exactly what a killed writer executed,
//! and benchmarks load every system the same way.

use crate::log::{LogEntry, RequestKey};
use crate::model::{Clinic, RecordId};
use crate::ops::{DoctorFields, NurseFields, Request};
use crate::state::ClinicState;

/// Which operations to draw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mix {
    /// Only `createDRecord` (the store and replication benchmarks).
    CreatesOnly,
    /// Doctor and nurse creates, alternating (to fill a store).
    AllCreates,
    /// Creates, edits, transfers, counts, gets and lists, some of them invalid.
    Mixed,
}

/// splitmix64: tiny, fast and good enough to pick requests.
#[derive(Clone, Debug)]
pub struct Workload {
    state: u64,
    mix: Mix,
    created: u32,
}

impl Workload {
    pub fn new(seed: u64, mix: Mix) -> Workload {
        Workload {
            state: seed,
            mix,
            created: 0,
        }
    }

    fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    fn manager(&mut self) -> String {
        let clinic = Clinic::ALL[self.below(3) as usize];
        format!("{}{:04}", clinic.code(), self.below(10_000))
    }

    /// A doctor create with about 200 bytes of fields (the size the etcd
    /// comparison puts).
    pub fn create_doctor(&mut self) -> Request {
        let (manager_id, fields) = self.doctor();
        Request::create_doctor(manager_id, fields)
    }

    /// What [`Workload::create_doctor`] makes, as its manager ID and fields
    /// (the same draws: the next request is the same either way).
    pub fn doctor(&mut self) -> (String, DoctorFields) {
        self.created += 1;
        let n = self.next_u64();
        let manager_id = self.manager();
        let fields = DoctorFields {
            first_name: format!("First{:08x}", n as u32),
            last_name: format!("Last{:08x}", (n >> 32) as u32),
            address: format!(
                "{} Rue Sainte-Catherine Ouest, Montréal, QC H3B 1A7, apt {}",
                n % 9999,
                n % 97
            ),
            phone: format!("+1 (514) 555-{:04}", n % 10_000),
            specialization: "family medicine and general practice".into(),
            location: Clinic::ALL[(n % 3) as usize].location().into(),
        };
        (manager_id, fields)
    }

    /// A valid nurse create.
    pub fn create_nurse(&mut self) -> Request {
        self.nurse(28)
    }

    /// A nurse create with a February date up to `max_day` (29 is
    /// impossible in most years).
    fn nurse(&mut self, max_day: u64) -> Request {
        self.created += 1;
        let manager_id = self.manager();
        let fields = NurseFields {
            first_name: "Nora".into(),
            last_name: format!("Nurse{}", self.below(1000)),
            designation: ["junior", "senior"][self.below(2) as usize].into(),
            status: ["active", "terminated"][self.below(2) as usize].into(),
            status_date: format!("20{:02}-02-{:02}", self.below(30), 1 + self.below(max_day)),
        };
        Request::create_nurse(manager_id, fields)
    }

    fn some_record(&mut self) -> String {
        let number = RecordId::FIRST + self.below(u64::from(self.created.max(1)) + 2) as u32;
        let prefix = if self.below(4) == 0 { "NR" } else { "DR" };
        format!("{prefix}{number}")
    }

    /// The next request.
    pub fn next_request(&mut self) -> Request {
        match self.mix {
            Mix::CreatesOnly => return self.create_doctor(),
            Mix::AllCreates if self.created.is_multiple_of(2) => return self.create_doctor(),
            Mix::AllCreates => return self.create_nurse(),
            Mix::Mixed => {}
        }
        match self.below(20) {
            0..=7 => self.create_doctor(),
            8..=9 => self.nurse(29),
            10..=12 => Request::EditRecord {
                manager_id: self.manager(),
                record_id: self.some_record(),
                field_name: ["phone", "address", "location", "status"][self.below(4) as usize]
                    .into(),
                new_value: ["514 555 0000", "2 Rue Peel", "lvl", "active"][self.below(4) as usize]
                    .into(),
            },
            13..=14 => Request::TransferRecord {
                manager_id: self.manager(),
                record_id: self.some_record(),
                remote_clinic: Clinic::ALL[self.below(3) as usize].code().into(),
            },
            15..=16 => Request::GetRecordCounts {
                manager_id: self.manager(),
            },
            17..=18 => Request::GetRecord {
                manager_id: self.manager(),
                record_id: self.some_record(),
            },
            _ => Request::ListRecords {
                manager_id: self.manager(),
                last_name_prefix: "Last0".into(),
            },
        }
    }
}

impl Workload {
    /// Executes the next `n` requests on `state` as a leader would (applying
    /// each), as log entries from position `first` (stream 1, seq =
    /// position), stamped with `time_ms(position)`.
    pub fn execute(
        &mut self,
        state: &mut ClinicState,
        first: u64,
        n: u64,
        time_ms: impl Fn(u64) -> u64,
    ) -> Vec<LogEntry> {
        (first..first + n)
            .map(|position| {
                let (reply, effect) = state.execute(&self.next_request(), time_ms(position));
                state.apply(&effect);
                LogEntry {
                    position,
                    key: RequestKey {
                        stream: 1,
                        seq: position,
                    },
                    effect,
                    reply,
                    ft: None,
                }
            })
            .collect()
    }
}

impl Iterator for Workload {
    type Item = Request;

    fn next(&mut self) -> Option<Request> {
        Some(self.next_request())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ClinicState;

    #[test]
    fn all_creates_succeed() {
        let mut state = ClinicState::new();
        for req in Workload::new(3, Mix::AllCreates).take(2000) {
            let (reply, effect) = state.execute(&req, 0);
            assert!(reply.is_ok(), "{req:?}: {reply:?}");
            state.apply(&effect);
        }
        assert_eq!(state.len(), 2000);
    }

    #[test]
    fn same_seed_same_requests() {
        let a: Vec<_> = Workload::new(5, Mix::Mixed).take(50).collect();
        let b: Vec<_> = Workload::new(5, Mix::Mixed).take(50).collect();
        let c: Vec<_> = Workload::new(6, Mix::Mixed).take(50).collect();
        assert_eq!(a, b);
        assert_ne!(a, c);
    }

    #[test]
    fn the_mix_exercises_successes_and_refusals_of_every_operation() {
        let mut state = ClinicState::new();
        let mut seen = std::collections::BTreeMap::<(&str, bool), u32>::new();
        for req in Workload::new(1, Mix::Mixed).take(3000) {
            let (reply, effect) = state.execute(&req, 0);
            state.apply(&effect);
            *seen.entry((req.operation(), reply.is_ok())).or_default() += 1;
        }
        for op in [
            "createDRecord",
            "createNRecord",
            "editRecord",
            "transferRecord",
            "getRecord",
            "getRecordCounts",
            "listRecords",
        ] {
            assert!(
                seen.get(&(op, true)).copied().unwrap_or(0) > 0,
                "{op} never succeeded: {seen:?}"
            );
        }
        for op in ["createNRecord", "editRecord", "transferRecord", "getRecord"] {
            assert!(
                seen.get(&(op, false)).copied().unwrap_or(0) > 0,
                "{op} never refused: {seen:?}"
            );
        }
    }
}
