//! The types of `idl/dcms.idl` as they travel over CORBA, and their CDR
//! marshalling (hand-written: rustorb-codegen is not used).
//!
//! Everything here is plain data; [`crate::servant`] maps the domain to it,
//! [`crate::client`] hands it to callers.

use std::fmt;

use dcms_core::{Record, RecordBody};
use rustorb_core::{CompletionStatus, InStream, OutStream, SystemException, SystemExceptionKind};

/// Repository id of the interface.
pub const INTERFACE_ID: &str = "IDL:DCMS/ClinicManagement:1.0";
/// Repository ids of the user exceptions.
pub const INVALID_REQUEST_ID: &str = "IDL:DCMS/InvalidRequest:1.0";
pub const NOT_FOUND_ID: &str = "IDL:DCMS/NotFound:1.0";
pub const NOT_AUTHORIZED_ID: &str = "IDL:DCMS/NotAuthorized:1.0";
pub const UNAVAILABLE_ID: &str = "IDL:DCMS/Unavailable:1.0";
/// The simple object key of `corbaloc:iiop:HOST:PORT/DCMS`.
pub const OBJECT_KEY: &str = "DCMS";

/// The IDL operation names, in IDL order.
pub const OPERATIONS: [&str; 8] = [
    "createDRecord",
    "createNRecord",
    "getRecordCounts",
    "editRecord",
    "transferRecord",
    "getRecord",
    "listRecords",
    "listRecordsPage",
];

/// `DCMS::RecordKind`, marshalled as an unsigned long.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordKind {
    Doctor,
    Nurse,
}

impl RecordKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Doctor => "DOCTOR",
            RecordKind::Nurse => "NURSE",
        }
    }

    pub fn write(self, out: &mut OutStream<'_>) {
        out.write_u32(match self {
            RecordKind::Doctor => 0,
            RecordKind::Nurse => 1,
        });
    }

    pub fn read(input: &mut InStream<'_>) -> Result<RecordKind, SystemException> {
        match input.read::<u32>()? {
            0 => Ok(RecordKind::Doctor),
            1 => Ok(RecordKind::Nurse),
            _ => Err(input.marshal_error()),
        }
    }
}

impl From<dcms_core::RecordKind> for RecordKind {
    fn from(k: dcms_core::RecordKind) -> RecordKind {
        match k {
            dcms_core::RecordKind::Doctor => RecordKind::Doctor,
            dcms_core::RecordKind::Nurse => RecordKind::Nurse,
        }
    }
}

/// `DCMS::Record`. Fields that do not apply to the record's kind are
/// empty strings.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct IdlRecord {
    pub record_id: String,
    pub kind: RecordKind,
    pub clinic: String,
    pub first_name: String,
    pub last_name: String,
    pub address: String,
    pub phone: String,
    pub specialization: String,
    pub location: String,
    pub designation: String,
    pub status: String,
    pub status_date: String,
}

impl IdlRecord {
    pub fn write(&self, out: &mut OutStream<'_>) -> Result<(), SystemException> {
        out.write_string(&self.record_id)?;
        self.kind.write(out);
        for s in [
            &self.clinic,
            &self.first_name,
            &self.last_name,
            &self.address,
            &self.phone,
            &self.specialization,
            &self.location,
            &self.designation,
            &self.status,
            &self.status_date,
        ] {
            out.write_string(s)?;
        }
        Ok(())
    }

    pub fn read(input: &mut InStream<'_>) -> Result<IdlRecord, SystemException> {
        Ok(IdlRecord {
            record_id: input.read_string()?,
            kind: RecordKind::read(input)?,
            clinic: input.read_string()?,
            first_name: input.read_string()?,
            last_name: input.read_string()?,
            address: input.read_string()?,
            phone: input.read_string()?,
            specialization: input.read_string()?,
            location: input.read_string()?,
            designation: input.read_string()?,
            status: input.read_string()?,
            status_date: input.read_string()?,
        })
    }

    /// `(IDL field name, value)` of every field, in IDL order.
    pub fn fields(&self) -> [(&'static str, &str); 12] {
        [
            ("recordID", &self.record_id),
            ("kind", self.kind.as_str()),
            ("clinic", &self.clinic),
            ("firstName", &self.first_name),
            ("lastName", &self.last_name),
            ("address", &self.address),
            ("phone", &self.phone),
            ("specialization", &self.specialization),
            ("location", &self.location),
            ("designation", &self.designation),
            ("status", &self.status),
            ("statusDate", &self.status_date),
        ]
    }
}

impl From<&Record> for IdlRecord {
    fn from(r: &Record) -> IdlRecord {
        let mut out = IdlRecord {
            record_id: r.id.to_string(),
            kind: r.kind().into(),
            clinic: r.clinic.code().to_string(),
            first_name: r.first_name().to_string(),
            last_name: r.last_name().to_string(),
            address: String::new(),
            phone: String::new(),
            specialization: String::new(),
            location: String::new(),
            designation: String::new(),
            status: String::new(),
            status_date: String::new(),
        };
        match &r.body {
            RecordBody::Doctor(d) => {
                out.address = d.address.clone();
                out.phone = d.phone.clone();
                out.specialization = d.specialization.clone();
                out.location = d.location.location().to_string();
            }
            RecordBody::Nurse(n) => {
                out.designation = n.designation.as_str().to_string();
                out.status = n.status.as_str().to_string();
                out.status_date = n.status_date.to_string();
            }
        }
        out
    }
}

/// `DCMS::RecordList`: a sequence of records.
pub fn write_record_list(
    out: &mut OutStream<'_>,
    records: &[IdlRecord],
) -> Result<(), SystemException> {
    out.write_u32(u32::try_from(records.len()).map_err(|_| marshal(CompletionStatus::Yes))?);
    for r in records {
        r.write(out)?;
    }
    Ok(())
}

pub fn read_record_list(input: &mut InStream<'_>) -> Result<Vec<IdlRecord>, SystemException> {
    // A record is at least 4 (recordID) + 4 (kind) + 10 * 4 bytes (the
    // other strings' lengths), so a forged length cannot make us allocate
    // more than the message holds.
    let n = input.read_len(48).map_err(|_| input.marshal_error())?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(IdlRecord::read(input)?);
    }
    Ok(v)
}

/// `DCMS::RecordPage`: a page of records and the ID to list after for the
/// next one (empty on the last page).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IdlRecordPage {
    pub records: Vec<IdlRecord>,
    pub next_after: String,
}

impl IdlRecordPage {
    pub fn write(&self, out: &mut OutStream<'_>) -> Result<(), SystemException> {
        write_record_list(out, &self.records)?;
        out.write_string(&self.next_after)
    }

    pub fn read(input: &mut InStream<'_>) -> Result<IdlRecordPage, SystemException> {
        Ok(IdlRecordPage {
            records: read_record_list(input)?,
            next_after: input.read_string()?,
        })
    }
}

fn marshal(completed: CompletionStatus) -> SystemException {
    SystemException::new(SystemExceptionKind::MARSHAL, 0, completed)
}

/// One of the four user exceptions of the IDL, with its members.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum DcmsException {
    InvalidRequest { field: String, reason: String },
    NotFound { record_id: String },
    NotAuthorized { manager_id: String, reason: String },
    Unavailable { reason: String },
}

impl DcmsException {
    /// The IDL name (`InvalidRequest`, ...).
    pub fn name(&self) -> &'static str {
        match self {
            DcmsException::InvalidRequest { .. } => "InvalidRequest",
            DcmsException::NotFound { .. } => "NotFound",
            DcmsException::NotAuthorized { .. } => "NotAuthorized",
            DcmsException::Unavailable { .. } => "Unavailable",
        }
    }

    pub fn repository_id(&self) -> &'static str {
        match self {
            DcmsException::InvalidRequest { .. } => INVALID_REQUEST_ID,
            DcmsException::NotFound { .. } => NOT_FOUND_ID,
            DcmsException::NotAuthorized { .. } => NOT_AUTHORIZED_ID,
            DcmsException::Unavailable { .. } => UNAVAILABLE_ID,
        }
    }

    /// The members, `(IDL name, value)`, in IDL order.
    pub fn members(&self) -> Vec<(&'static str, &str)> {
        match self {
            DcmsException::InvalidRequest { field, reason } => {
                vec![("field", field), ("reason", reason)]
            }
            DcmsException::NotFound { record_id } => vec![("recordID", record_id)],
            DcmsException::NotAuthorized { manager_id, reason } => {
                vec![("managerID", manager_id), ("reason", reason)]
            }
            DcmsException::Unavailable { reason } => vec![("reason", reason)],
        }
    }

    /// Writes the members (the repository id is written by the caller,
    /// `ServerReply::user_exception`).
    pub fn write_members(&self, out: &mut OutStream<'_>) -> Result<(), SystemException> {
        for (_, v) in self.members() {
            out.write_string(v)?;
        }
        Ok(())
    }

    /// Reads the members of the exception `repository_id`; `None` for an
    /// id that is not one of ours.
    pub fn read_members(
        repository_id: &str,
        input: &mut InStream<'_>,
    ) -> Option<Result<DcmsException, SystemException>> {
        let mut read = || -> Result<Option<DcmsException>, SystemException> {
            Ok(Some(match repository_id {
                INVALID_REQUEST_ID => DcmsException::InvalidRequest {
                    field: input.read_string()?,
                    reason: input.read_string()?,
                },
                NOT_FOUND_ID => DcmsException::NotFound {
                    record_id: input.read_string()?,
                },
                NOT_AUTHORIZED_ID => DcmsException::NotAuthorized {
                    manager_id: input.read_string()?,
                    reason: input.read_string()?,
                },
                UNAVAILABLE_ID => DcmsException::Unavailable {
                    reason: input.read_string()?,
                },
                _ => return Ok(None),
            }))
        };
        read().transpose()
    }
}

impl fmt::Display for DcmsException {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DCMS::{}", self.name())?;
        for (i, (k, v)) in self.members().into_iter().enumerate() {
            write!(f, "{}{k}={v:?}", if i == 0 { " " } else { ", " })?;
        }
        Ok(())
    }
}

impl std::error::Error for DcmsException {}

/// Whether the operation `op` declares the exception.
pub fn raises(op: &str, e: &DcmsException) -> bool {
    match e {
        DcmsException::NotFound { .. } => {
            matches!(op, "editRecord" | "transferRecord" | "getRecord")
        }
        _ => OPERATIONS.contains(&op),
    }
}
