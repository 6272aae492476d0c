//! dcms-core: the clinic domain and a replica's durable store.
//!
//! - [`model`]: value types (clinics, manager and record IDs, records).
//! - [`ops`]: requests, replies, errors and the effects replicas apply.
//! - [`state`]: the deterministic state machine, `execute` and `apply`.
//! - [`log`]: the replicated log's entries, their chained hash, batches.
//! - [`store`]: the SQLite store, one per replica, with group commit.
//! - [`snapshot`]: a consistent snapshot as a stream of chunks, and restore.
//! - [`audit`]: the audit trail exported as log files.
//! - [`workload`]: a seeded request generator for tests and benchmarks.
//!
//! Nothing here does network IO or reads a clock: time comes in as an
//! argument, so the whole domain runs unchanged in the simulator.

pub mod audit;
pub mod log;
pub mod model;
pub mod ops;
pub mod snapshot;
pub mod state;
pub mod store;
mod validate;
pub mod workload;

pub use log::{Batch, FtRequest, LogEntry, LogHash, RequestKey, Retained};
pub use model::{
    Clinic, Counts, Date, Designation, ManagerId, NurseStatus, Record, RecordBody, RecordId,
    RecordKind,
};
pub use ops::{
    AuditEntry, Change, DoctorFields, DomainError, Effect, NurseFields, Outcome, Reply, Request,
    MAX_TEXT_CHARS,
};
pub use state::{ClinicState, StateDigest};
pub use store::{Store, StoreError, SyncMode};
