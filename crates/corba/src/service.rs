//! The narrow interface between the CORBA front door and whatever runs the
//! requests: [`ClinicService`]. [`Standalone`] runs them in-process on one
//! store; the replicated front end implements the same trait.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use dcms_core::{
    ClinicState, FtRequest, LogEntry, ManagerId, Reply, Request, RequestKey, Store, SyncMode,
};

/// Runs manager requests. Called from many servant threads at once.
pub trait ClinicService: Send + Sync + 'static {
    /// Runs one request to completion (blocking). `Err` = the cluster could
    /// not give an outcome.
    fn call(&self, request: Request) -> Result<Reply, ServiceError>;

    /// Runs a request that carries the client's FT-CORBA identity
    /// (`FT_REQUEST`): a replicated service executes it at most once
    /// across every front end and retry, and not after its expiration.
    /// By default (the standalone service, one process and no retries
    /// between front ends) the identity is not used.
    fn call_ft(&self, request: Request, ft: Option<FtRequest>) -> Result<Reply, ServiceError> {
        let _ = ft;
        self.call(request)
    }

    /// Runs a request of a client that proved with its TLS certificate to
    /// be manager `authenticated` (`None`: a self-declared manager ID; the
    /// servant checked that the request is that manager's). The audit line
    /// records it. By default it is not used.
    fn call_as(
        &self,
        request: Request,
        ft: Option<FtRequest>,
        authenticated: Option<ManagerId>,
    ) -> Result<Reply, ServiceError> {
        let _ = authenticated;
        self.call_ft(request, ft)
    }

    /// Whether [`start_as`](Self::start_as) returns without waiting for the
    /// outcome. The servant then starts requests on the ORB's I/O tasks and
    /// no thread waits for a reply (the replicated front end); otherwise
    /// each request holds an upcall thread while it runs.
    fn answers_later(&self) -> bool {
        false
    }

    /// [`call_as`](Self::call_as), answering through `done` (called once,
    /// from any thread). By default it calls `call_as` and then `done`.
    fn start_as(
        &self,
        request: Request,
        ft: Option<FtRequest>,
        authenticated: Option<ManagerId>,
        done: Done,
    ) {
        done(self.call_as(request, ft, authenticated));
    }
}

/// Where [`ClinicService::start_as`] delivers a request's outcome.
pub type Done = Box<dyn FnOnce(Result<Reply, ServiceError>) + Send>;

/// Why a [`ClinicService`] gave no outcome. How each one reaches a CORBA
/// client is fixed here, in one place:
///
/// | variant | CORBA |
/// | --- | --- |
/// | `Unavailable(reason)` | user exception `DCMS::Unavailable { reason }` |
/// | `Overloaded` | `CORBA::TRANSIENT`, `COMPLETED_NO` (safe to retry) |
/// | `OutcomeUnknown` | `CORBA::TRANSIENT`, `COMPLETED_MAYBE` |
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ServiceError {
    /// The service cannot run requests now; the request had no effect.
    #[error("service unavailable: {0}")]
    Unavailable(String),
    /// Too many requests at once; the request was not started.
    #[error("service overloaded")]
    Overloaded,
    /// The request may or may not have taken effect.
    #[error("the outcome of the request is unknown")]
    OutcomeUnknown,
}

/// A [`ClinicService`] on one local store, with no replication: each
/// request is executed on the in-memory state, its log entry committed
/// (stream 0, increasing sequence numbers and positions), then applied and
/// answered. One request at a time (a `Mutex`).
pub struct Standalone {
    inner: Mutex<Inner>,
    path: PathBuf,
}

struct Inner {
    state: ClinicState,
    store: Store,
    next_seq: u64,
}

/// The stream of the standalone service's log entries.
pub const STANDALONE_STREAM: u64 = 0;

/// The database file of a standalone service in `data_dir`.
pub fn standalone_db_path(data_dir: &Path) -> PathBuf {
    data_dir.join("standalone.sqlite")
}

impl Standalone {
    /// Opens (creating if needed) `<data_dir>/standalone.sqlite` with
    /// `SyncMode::Full` and loads its records.
    pub fn open(data_dir: &Path) -> Result<Standalone, OpenError> {
        std::fs::create_dir_all(data_dir)
            .map_err(|e| OpenError::DataDir(data_dir.to_path_buf(), e))?;
        let path = standalone_db_path(data_dir);
        let store = Store::open(&path, SyncMode::Full)?;
        let state = store.load_state()?;
        let next_seq = store
            .stream_heads()?
            .into_iter()
            .filter(|k| k.stream == STANDALONE_STREAM)
            .map(|k| k.seq + 1)
            .max()
            .unwrap_or(1);
        Ok(Standalone {
            inner: Mutex::new(Inner {
                state,
                store,
                next_seq,
            }),
            path,
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Why a [`Standalone`] service could not open.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    #[error("cannot create the data folder {0}: {1}")]
    DataDir(PathBuf, #[source] std::io::Error),
    #[error(transparent)]
    Store(#[from] dcms_core::StoreError),
}

impl std::fmt::Debug for Standalone {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Standalone")
            .field("path", &self.path)
            .finish()
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl ClinicService for Standalone {
    fn call(&self, request: Request) -> Result<Reply, ServiceError> {
        self.run(request, None)
    }

    fn call_as(
        &self,
        request: Request,
        _ft: Option<FtRequest>,
        authenticated: Option<ManagerId>,
    ) -> Result<Reply, ServiceError> {
        self.run(request, authenticated)
    }
}

impl Standalone {
    /// Executes, commits and applies one request; its audit line names
    /// `authenticated`.
    fn run(
        &self,
        request: Request,
        authenticated: Option<ManagerId>,
    ) -> Result<Reply, ServiceError> {
        // A panic while holding the lock leaves state and store as they
        // were (apply runs only after a successful commit), so the data is
        // still consistent: recover the guard.
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let (reply, mut effect) = inner.state.execute(&request, now_ms());
        effect.audit.authenticated = authenticated.map(|id| id.to_string());
        let reply = dcms_core::ops::bound_list(reply, dcms_core::ops::DEFAULT_MAX_LIST_BYTES);
        let entry = LogEntry {
            position: inner.store.last_applied() + 1,
            key: RequestKey {
                stream: STANDALONE_STREAM,
                seq: inner.next_seq,
            },
            effect,
            reply,
            ft: None,
        };
        if let Err(e) = inner.store.commit(std::slice::from_ref(&entry)) {
            tracing::error!("standalone store commit failed: {e}");
            // Nothing was committed nor applied: the request had no effect.
            return Err(ServiceError::Unavailable(format!("the store failed: {e}")));
        }
        inner.next_seq += 1;
        inner.state.apply(&entry.effect);
        Ok(entry.reply)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcms_core::{DoctorFields, Outcome};

    fn counts(m: &str) -> Request {
        Request::GetRecordCounts {
            manager_id: m.into(),
        }
    }

    fn doctor(m: &str, last: &str) -> Request {
        Request::CreateDoctor {
            manager_id: m.into(),
            fields: DoctorFields {
                first_name: "Ann".into(),
                last_name: last.into(),
                address: "1 Main St".into(),
                phone: "5145550000".into(),
                specialization: "surgeon".into(),
                location: "mtl".into(),
            },
        }
    }

    #[test]
    fn a_data_folder_that_cannot_be_made_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        let e = Standalone::open(&file.join("sub")).unwrap_err();
        assert!(matches!(e, OpenError::DataDir(..)), "{e}");
    }

    #[test]
    fn standalone_survives_a_restart_and_keeps_numbering() {
        let dir = tempfile::tempdir().unwrap();
        let first = {
            let s = Standalone::open(dir.path()).unwrap();
            let r = s.call(doctor("MTL1234", "Roy")).unwrap().unwrap();
            assert!(matches!(
                s.call(counts("MTL1234")),
                Ok(Ok(Outcome::Counts(_)))
            ));
            r
        };
        let s = Standalone::open(dir.path()).unwrap();
        let second = s.call(doctor("MTL1234", "Poe")).unwrap().unwrap();
        assert_ne!(first, second, "record IDs are never reused");
        match s.call(counts("MTL1234")).unwrap().unwrap() {
            Outcome::Counts(c) => assert_eq!(c.to_string(), "MTL 2, LVL 0, DDO 0"),
            other => panic!("{other:?}"),
        }
        // A refusal is an outcome, not a service error.
        assert!(matches!(s.call(counts("QUE0000")), Ok(Err(_))));
    }
}
