//! The operations managers call, their replies and errors, and the effects
//! that carry a change from the leader to every replica.
//!
//! A [`Request`] holds the arguments exactly as a client sent them (raw text):
//! validation happens once, on the leader, in [`crate::ClinicState::execute`].
//! An [`Effect`] holds everything a replica needs to apply the outcome without
//! re-running validation or ID assignment.

use crate::model::{Clinic, Counts, Record, RecordId};
use serde::{Deserialize, Serialize};

/// Longest text accepted for a name, address or other free-text field,
/// in characters.
pub const MAX_TEXT_CHARS: usize = 100;

/// Largest raw argument a front end forwards, in bytes. Far above any
/// valid value ([`MAX_TEXT_CHARS`] characters of up to 4 bytes, plus
/// surrounding blanks), so it refuses only what validation would refuse too,
/// before it travels through the replicated stream and its retransmissions.
pub const MAX_ARGUMENT_BYTES: usize = 4096;

/// One manager operation with its raw arguments.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Request {
    CreateDoctor {
        manager_id: String,
        fields: DoctorFields,
    },
    CreateNurse {
        manager_id: String,
        fields: NurseFields,
    },
    GetRecordCounts {
        manager_id: String,
    },
    EditRecord {
        manager_id: String,
        record_id: String,
        field_name: String,
        new_value: String,
    },
    TransferRecord {
        manager_id: String,
        record_id: String,
        remote_clinic: String,
    },
    GetRecord {
        manager_id: String,
        record_id: String,
    },
    ListRecords {
        manager_id: String,
        last_name_prefix: String,
    },
    /// One page of what `ListRecords` lists, after the record
    /// `after_record_id` (empty: from the start), at most `max_count`
    /// records (at most [`MAX_PAGE_RECORDS`]).
    ListRecordsPage {
        manager_id: String,
        last_name_prefix: String,
        after_record_id: String,
        max_count: u32,
    },
}

/// A new doctor record's fields, as a client sends them (raw text, in the
/// order of `createDRecord`'s arguments after the manager ID): what
/// [`Request::CreateDoctor`] carries besides the manager ID, and what every
/// layer above it takes (client stubs, the command line, load generators).
/// Validated on the leader, as every request is. Encoded as its fields in
/// order (postcard writes no struct boundaries), so a request's bytes are
/// what they were when the variant held the fields inline. With the `clap`
/// feature, these are the flags of `dcms client create-doctor`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct DoctorFields {
    #[cfg_attr(feature = "clap", arg(long))]
    pub first_name: String,
    #[cfg_attr(feature = "clap", arg(long))]
    pub last_name: String,
    #[cfg_attr(feature = "clap", arg(long))]
    pub address: String,
    #[cfg_attr(feature = "clap", arg(long))]
    pub phone: String,
    #[cfg_attr(feature = "clap", arg(long))]
    pub specialization: String,
    /// mtl, lvl or ddo.
    #[cfg_attr(feature = "clap", arg(long))]
    pub location: String,
}

/// A new nurse record's fields, as a client sends them (raw text, in the
/// order of `createNRecord`'s arguments after the manager ID): what
/// [`Request::CreateNurse`] carries besides the manager ID (encoded as its
/// fields in order, as [`DoctorFields`]). With the `clap` feature, these
/// are the flags of `dcms client create-nurse`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "clap", derive(clap::Args))]
pub struct NurseFields {
    #[cfg_attr(feature = "clap", arg(long))]
    pub first_name: String,
    #[cfg_attr(feature = "clap", arg(long))]
    pub last_name: String,
    /// junior or senior.
    #[cfg_attr(feature = "clap", arg(long))]
    pub designation: String,
    /// active or terminated.
    #[cfg_attr(feature = "clap", arg(long))]
    pub status: String,
    /// YYYY-MM-DD.
    #[cfg_attr(feature = "clap", arg(long))]
    pub status_date: String,
}

/// The largest `listRecords` answer served, by default: about 1 MiB
/// encoded, half of the smallest message limit of the common ORBs
/// (omniORB's `giopMaxMsgSize` is 2 MiB by default; JacORB's and TAO's are
/// similar). A larger answer is refused, naming `listRecordsPage`.
pub const DEFAULT_MAX_LIST_BYTES: usize = 1 << 20;

/// `reply` as served under a `listRecords` bound of `max_bytes`: a list
/// whose CDR encoding would exceed it becomes `InvalidRequest` on
/// `lastNamePrefix`, naming the count and the paged operation (a client
/// with default ORB settings could not read it). Any other reply is
/// returned as it is.
pub fn bound_list(reply: Reply, max_bytes: usize) -> Reply {
    let Ok(Outcome::Records(records)) = &reply else {
        return reply;
    };
    let bytes: usize = 4 + records.iter().map(Record::cdr_size).sum::<usize>();
    if bytes <= max_bytes {
        return reply;
    }
    Err(DomainError::InvalidRequest {
        field: "lastNamePrefix".into(),
        reason: format!(
            "{} records match ({} KiB encoded, over the {} KiB listRecords answers): list them with listRecordsPage",
            records.len(),
            bytes / 1024,
            max_bytes / 1024
        ),
    })
}

/// The most records one `listRecordsPage` answer holds (about 300 KiB
/// encoded): a larger `maxCount` is served as this many.
pub const MAX_PAGE_RECORDS: u32 = 1_000;

impl Request {
    /// `createDRecord` by `manager_id` with `fields`.
    pub fn create_doctor(manager_id: impl Into<String>, fields: DoctorFields) -> Request {
        Request::CreateDoctor {
            manager_id: manager_id.into(),
            fields,
        }
    }

    /// `createNRecord` by `manager_id` with `fields`.
    pub fn create_nurse(manager_id: impl Into<String>, fields: NurseFields) -> Request {
        Request::CreateNurse {
            manager_id: manager_id.into(),
            fields,
        }
    }

    /// The IDL operation name.
    pub fn operation(&self) -> &'static str {
        match self {
            Request::CreateDoctor { .. } => "createDRecord",
            Request::CreateNurse { .. } => "createNRecord",
            Request::GetRecordCounts { .. } => "getRecordCounts",
            Request::EditRecord { .. } => "editRecord",
            Request::TransferRecord { .. } => "transferRecord",
            Request::GetRecord { .. } => "getRecord",
            Request::ListRecords { .. } => "listRecords",
            Request::ListRecordsPage { .. } => "listRecordsPage",
        }
    }

    /// The manager ID as sent.
    pub fn manager_id(&self) -> &str {
        match self {
            Request::CreateDoctor { manager_id, .. }
            | Request::CreateNurse { manager_id, .. }
            | Request::GetRecordCounts { manager_id }
            | Request::EditRecord { manager_id, .. }
            | Request::TransferRecord { manager_id, .. }
            | Request::GetRecord { manager_id, .. }
            | Request::ListRecords { manager_id, .. }
            | Request::ListRecordsPage { manager_id, .. } => manager_id,
        }
    }

    /// True for operations that never change records. The replicated front
    /// end sends them outside the log (the leader answers after a read-index
    /// round), so they are not in the replicated audit trail; executed
    /// through the log (the standalone store) they are audited as writes are.
    pub fn is_read_only(&self) -> bool {
        matches!(
            self,
            Request::GetRecordCounts { .. }
                | Request::GetRecord { .. }
                | Request::ListRecords { .. }
                | Request::ListRecordsPage { .. }
        )
    }

    /// Refuses an argument over [`MAX_ARGUMENT_BYTES`], naming its field.
    pub fn check_size(&self) -> Result<(), DomainError> {
        let manager = ("managerID", self.manager_id());
        for (field, value) in std::iter::once(manager).chain(self.arguments()) {
            if value.len() > MAX_ARGUMENT_BYTES {
                return Err(DomainError::InvalidRequest {
                    field: field.into(),
                    reason: format!(
                        "is {} bytes long; at most {MAX_ARGUMENT_BYTES} are accepted",
                        value.len()
                    ),
                });
            }
        }
        Ok(())
    }

    /// The arguments after the manager ID, as (IDL name, value) pairs.
    pub fn arguments(&self) -> Vec<(&'static str, &str)> {
        match self {
            Request::CreateDoctor { fields: f, .. } => vec![
                ("firstName", &f.first_name),
                ("lastName", &f.last_name),
                ("address", &f.address),
                ("phone", &f.phone),
                ("specialization", &f.specialization),
                ("location", &f.location),
            ],
            Request::CreateNurse { fields: f, .. } => vec![
                ("firstName", &f.first_name),
                ("lastName", &f.last_name),
                ("designation", &f.designation),
                ("status", &f.status),
                ("statusDate", &f.status_date),
            ],
            Request::GetRecordCounts { .. } => vec![],
            Request::EditRecord {
                record_id,
                field_name,
                new_value,
                ..
            } => vec![
                ("recordID", record_id),
                ("fieldName", field_name),
                ("newValue", new_value),
            ],
            Request::TransferRecord {
                record_id,
                remote_clinic,
                ..
            } => vec![
                ("recordID", record_id),
                ("remoteClinicServerName", remote_clinic),
            ],
            Request::GetRecord { record_id, .. } => vec![("recordID", record_id)],
            Request::ListRecords {
                last_name_prefix, ..
            } => vec![("lastNamePrefix", last_name_prefix)],
            // `maxCount` is a number: nothing to bound or quote.
            Request::ListRecordsPage {
                last_name_prefix,
                after_record_id,
                ..
            } => vec![
                ("lastNamePrefix", last_name_prefix),
                ("afterRecordID", after_record_id),
            ],
        }
    }
}

/// Why a request was refused. Every variant names what was wrong; a refused
/// request changes no record.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, thiserror::Error)]
pub enum DomainError {
    /// A malformed or out-of-range argument. `field` is the IDL name of the
    /// argument or record field (`managerID`, `phone`, `statusDate`, ...).
    #[error("invalid {field}: {reason}")]
    InvalidRequest { field: String, reason: String },
    /// No record has this ID.
    #[error("no record {record_id}")]
    NotFound { record_id: String },
    /// The manager may not do this (a record of another clinic).
    #[error("manager {manager_id} is not authorized: {reason}")]
    NotAuthorized { manager_id: String, reason: String },
    /// Every record number of this kind has been used.
    #[error("no record IDs left: {reason}")]
    Exhausted { reason: String },
}

impl DomainError {
    pub fn invalid(field: &str, reason: impl Into<String>) -> DomainError {
        DomainError::InvalidRequest {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// A successful operation's result.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Outcome {
    /// Create, edit and transfer answer the record's ID.
    RecordId(RecordId),
    /// `getRecordCounts`.
    Counts(Counts),
    /// `getRecord`.
    Record(Record),
    /// `listRecords`.
    Records(Vec<Record>),
    /// `listRecordsPage`: the records, and the ID to list after for the
    /// next page (`None`: this is the last page).
    RecordPage {
        records: Vec<Record>,
        next_after: Option<RecordId>,
    },
}

/// What the client hears: an outcome or the error.
pub type Reply = Result<Outcome, DomainError>;

/// A change to the records, with everything needed to apply it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Change {
    /// A new record, its ID already assigned.
    Create(Record),
    /// The whole new version of an existing record (an edit, or a transfer:
    /// a transfer changes the clinic of one record in one step, so it is
    /// never in both clinics nor in neither).
    Update(Record),
}

impl Change {
    pub fn record(&self) -> &Record {
        match self {
            Change::Create(r) | Change::Update(r) => r,
        }
    }
}

/// One line of the audit trail: who did what, when, and how it ended.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEntry {
    /// Milliseconds since the Unix epoch, as given by the executing leader.
    pub time_ms: u64,
    /// The manager ID as sent (trimmed and cut to a sane length).
    pub manager_id: String,
    /// The manager's clinic, when the manager ID was valid.
    pub clinic: Option<Clinic>,
    pub operation: String,
    /// `name=value` pairs, values cut to a sane length.
    pub arguments: String,
    /// `ok: ...` or `error: ...`.
    pub outcome: String,
    /// The manager the client proved to be, when it called over IIOP with
    /// TLS and a client certificate (which the front end checked against
    /// `manager_id` before the request went any further); `None` for a
    /// self-declared manager ID (plain IIOP).
    pub authenticated: Option<String>,
}

/// What every replica applies for one executed request: the change to the
/// records (none for reads and refusals) and the audit line.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Effect {
    pub change: Option<Change>,
    pub audit: AuditEntry,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The create variants' fields moved into `DoctorFields`/`NurseFields`:
    /// replicated logs, stored entries and snapshots written before must
    /// decode the same, so the bytes must be those of the inline layout.
    #[test]
    fn create_requests_encode_as_when_their_fields_were_inline() {
        #[derive(Serialize)]
        enum Inline {
            CreateDoctor {
                manager_id: String,
                first_name: String,
                last_name: String,
                address: String,
                phone: String,
                specialization: String,
                location: String,
            },
            CreateNurse {
                manager_id: String,
                first_name: String,
                last_name: String,
                designation: String,
                status: String,
                status_date: String,
            },
        }
        fn same_bytes(request: &Request, inline: &impl Serialize) {
            let bytes = postcard::to_allocvec(request).unwrap();
            assert_eq!(bytes, postcard::to_allocvec(inline).unwrap());
            assert_eq!(&postcard::from_bytes::<Request>(&bytes).unwrap(), request);
        }
        let s = |x: &str| x.to_string();
        let doctor = Request::create_doctor(
            "MTL0001",
            DoctorFields {
                first_name: s("Ann"),
                last_name: s("Lee"),
                address: s("1 Main St"),
                phone: s("5145550000"),
                specialization: s("surgeon"),
                location: s("mtl"),
            },
        );
        let inline = Inline::CreateDoctor {
            manager_id: s("MTL0001"),
            first_name: s("Ann"),
            last_name: s("Lee"),
            address: s("1 Main St"),
            phone: s("5145550000"),
            specialization: s("surgeon"),
            location: s("mtl"),
        };
        same_bytes(&doctor, &inline);
        let nurse = Request::create_nurse(
            "LVL0002",
            NurseFields {
                first_name: s("Bo"),
                last_name: s("Roy"),
                designation: s("junior"),
                status: s("active"),
                status_date: s("2024-01-01"),
            },
        );
        let inline = Inline::CreateNurse {
            manager_id: s("LVL0002"),
            first_name: s("Bo"),
            last_name: s("Roy"),
            designation: s("junior"),
            status: s("active"),
            status_date: s("2024-01-01"),
        };
        same_bytes(&nurse, &inline);
    }

    #[test]
    fn create_requests_carry_their_fields_in_idl_order() {
        let fields = DoctorFields {
            first_name: "a".into(),
            last_name: "b".into(),
            address: "c".into(),
            phone: "d".into(),
            specialization: "e".into(),
            location: "f".into(),
        };
        let doctor = Request::create_doctor("MTL0001", fields);
        assert_eq!(doctor.operation(), "createDRecord");
        assert_eq!(doctor.manager_id(), "MTL0001");
        assert_eq!(
            doctor.arguments(),
            [
                ("firstName", "a"),
                ("lastName", "b"),
                ("address", "c"),
                ("phone", "d"),
                ("specialization", "e"),
                ("location", "f"),
            ]
        );
        let fields = NurseFields {
            first_name: "a".into(),
            last_name: "b".into(),
            designation: "c".into(),
            status: "d".into(),
            status_date: "e".into(),
        };
        let nurse = Request::create_nurse("LVL0001", fields);
        assert_eq!(nurse.operation(), "createNRecord");
        assert_eq!(nurse.manager_id(), "LVL0001");
        assert_eq!(
            nurse.arguments(),
            [
                ("firstName", "a"),
                ("lastName", "b"),
                ("designation", "c"),
                ("status", "d"),
                ("statusDate", "e"),
            ]
        );
    }

    #[test]
    fn oversized_arguments_are_refused_by_name() {
        let request = |manager_id: String, first_name: String| Request::CreateNurse {
            manager_id,
            fields: NurseFields {
                first_name,
                last_name: "Roy".into(),
                designation: "junior".into(),
                status: "active".into(),
                status_date: "2024-01-01".into(),
            },
        };
        let ok = "x".repeat(MAX_ARGUMENT_BYTES);
        let big = "x".repeat(MAX_ARGUMENT_BYTES + 1);
        assert_eq!(request("MTL0001".into(), ok.clone()).check_size(), Ok(()));
        for (r, field) in [
            (request("MTL0001".into(), big.clone()), "firstName"),
            (request(big, ok), "managerID"),
        ] {
            match r.check_size() {
                Err(DomainError::InvalidRequest { field: f, reason }) => {
                    assert_eq!(f, field);
                    assert!(reason.contains("4097 bytes"), "{reason}");
                }
                other => panic!("{other:?}"),
            }
        }
    }
}
