//! The `DCMS::ClinicManagement` servant: decodes the seven operations,
//! runs them on a [`ClinicService`] and encodes the outcome, with a bound
//! on the requests running and waiting at once.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use dcms_core::{
    DoctorFields, DomainError, FtRequest, ManagerId, NurseFields, Outcome, Reply, Request,
};
use rustorb_core::pi::PiCurrent;
use rustorb_core::{
    minor, CompletionStatus, DeferredRequest, DeferredServant, InStream, OutStream, Responder,
    Servant, ServerReply, SystemException, SystemExceptionKind,
};

use crate::idl::{self, DcmsException, IdlRecord};
use crate::service::{ClinicService, ServiceError};

/// Reads the `in` arguments of `operation`. `BAD_OPERATION` (minor
/// `UNKNOWN_OPERATION`) for an operation the IDL does not have, `MARSHAL`
/// (completed no) for a body that does not decode, including trailing bytes
/// that no argument accounts for.
pub fn decode_request(
    operation: &str,
    input: &mut InStream<'_>,
) -> Result<Request, SystemException> {
    let mut s = || input.read_string();
    let request = match operation {
        "createDRecord" => Request::CreateDoctor {
            manager_id: s()?,
            fields: DoctorFields {
                first_name: s()?,
                last_name: s()?,
                address: s()?,
                phone: s()?,
                specialization: s()?,
                location: s()?,
            },
        },
        "createNRecord" => Request::CreateNurse {
            manager_id: s()?,
            fields: NurseFields {
                first_name: s()?,
                last_name: s()?,
                designation: s()?,
                status: s()?,
                status_date: s()?,
            },
        },
        "getRecordCounts" => Request::GetRecordCounts { manager_id: s()? },
        "editRecord" => Request::EditRecord {
            manager_id: s()?,
            record_id: s()?,
            field_name: s()?,
            new_value: s()?,
        },
        "transferRecord" => Request::TransferRecord {
            manager_id: s()?,
            record_id: s()?,
            remote_clinic: s()?,
        },
        "getRecord" => Request::GetRecord {
            manager_id: s()?,
            record_id: s()?,
        },
        "listRecords" => Request::ListRecords {
            manager_id: s()?,
            last_name_prefix: s()?,
        },
        "listRecordsPage" => Request::ListRecordsPage {
            manager_id: s()?,
            last_name_prefix: s()?,
            after_record_id: s()?,
            max_count: input.read::<u32>()?,
        },
        _ => {
            return Err(SystemException::new(
                SystemExceptionKind::BAD_OPERATION,
                minor::UNKNOWN_OPERATION,
                CompletionStatus::No,
            ))
        }
    };
    Ok(request)
}

/// What the client gets for one request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Answer {
    /// A `string` result.
    Text(String),
    /// A `Record` result.
    Record(Box<IdlRecord>),
    /// A `RecordList` result.
    Records(Vec<IdlRecord>),
    /// A `RecordPage` result.
    Page(idl::IdlRecordPage),
    /// A user exception of the IDL.
    User(DcmsException),
    /// A system exception.
    System(SystemException),
}

/// The vendor minor code of the `TRANSIENT` for an overloaded front end
/// ("DC" in the high bytes; not an OMG code).
pub const MINOR_OVERLOADED: u32 = 0x4443_0001;
/// The vendor minor code of the `TRANSIENT` for an outcome not known.
pub const MINOR_OUTCOME_UNKNOWN: u32 = 0x4443_0002;

/// Maps what the service said about `operation` to the client's answer.
pub fn answer(operation: &str, result: Result<Reply, ServiceError>) -> Answer {
    match result {
        Ok(Ok(outcome)) => match outcome {
            Outcome::RecordId(id) => Answer::Text(id.to_string()),
            Outcome::Counts(c) => Answer::Text(c.to_string()),
            Outcome::Record(r) => Answer::Record(Box::new(IdlRecord::from(&r))),
            Outcome::Records(rs) => Answer::Records(rs.iter().map(IdlRecord::from).collect()),
            Outcome::RecordPage {
                records,
                next_after,
            } => Answer::Page(idl::IdlRecordPage {
                records: records.iter().map(IdlRecord::from).collect(),
                next_after: next_after.map(|id| id.to_string()).unwrap_or_default(),
            }),
        },
        Ok(Err(e)) => Answer::User(domain_exception(operation, e)),
        Err(ServiceError::Unavailable(reason)) => {
            Answer::User(DcmsException::Unavailable { reason })
        }
        Err(ServiceError::Overloaded) => Answer::System(SystemException::new(
            SystemExceptionKind::TRANSIENT,
            MINOR_OVERLOADED,
            CompletionStatus::No,
        )),
        Err(ServiceError::OutcomeUnknown) => Answer::System(SystemException::new(
            SystemExceptionKind::TRANSIENT,
            MINOR_OUTCOME_UNKNOWN,
            CompletionStatus::Maybe,
        )),
    }
}

/// A domain error as the IDL exception `operation` declares. `Exhausted`
/// is `Unavailable`; a `NotFound` from an operation that does not declare
/// it (none does today) becomes `InvalidRequest` on `recordID`.
pub fn domain_exception(operation: &str, e: DomainError) -> DcmsException {
    let ex = match e {
        DomainError::InvalidRequest { field, reason } => {
            DcmsException::InvalidRequest { field, reason }
        }
        DomainError::NotFound { record_id } => DcmsException::NotFound { record_id },
        DomainError::NotAuthorized { manager_id, reason } => {
            DcmsException::NotAuthorized { manager_id, reason }
        }
        DomainError::Exhausted { reason } => DcmsException::Unavailable { reason },
    };
    if idl::raises(operation, &ex) {
        return ex;
    }
    DcmsException::InvalidRequest {
        field: "recordID".into(),
        reason: ex.to_string(),
    }
}

/// A request whose `FT_REQUEST` context is malformed or out of bounds:
/// refused (not run), naming the context.
fn ft_refusal(operation: &str, reason: String) -> Answer {
    answer(
        operation,
        Ok(Err(DomainError::InvalidRequest {
            field: "FT_REQUEST".into(),
            reason,
        })),
    )
}

/// Writes a successful answer's result.
pub fn write_result(answer: &Answer, out: &mut OutStream<'_>) -> Result<(), SystemException> {
    match answer {
        Answer::Text(s) => out.write_string(s),
        Answer::Record(r) => r.write(out),
        Answer::Records(rs) => idl::write_record_list(out, rs),
        Answer::Page(p) => p.write(out),
        Answer::User(_) | Answer::System(_) => Ok(()),
    }
}

/// Limits on the requests a servant runs at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Admission {
    /// Requests running in the service at once.
    pub max_running: usize,
    /// Requests waiting for one of those slots. Beyond running + waiting, a
    /// request is refused at once with `TRANSIENT`, completed no.
    pub max_waiting: usize,
    /// How long a request waits for a slot before it is refused the same
    /// way.
    pub max_wait: Duration,
}

impl Default for Admission {
    fn default() -> Admission {
        Admission {
            max_running: 32,
            max_waiting: 64,
            max_wait: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Default)]
struct Slots {
    running: usize,
    waiting: usize,
}

#[derive(Debug)]
struct Gate {
    limits: Admission,
    slots: Mutex<Slots>,
    freed: Condvar,
}

/// A running slot, given back on drop.
struct Permit<'a>(&'a Gate);

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        let mut s = self.0.slots.lock().unwrap_or_else(|p| p.into_inner());
        s.running -= 1;
        drop(s);
        self.0.freed.notify_one();
    }
}

impl Gate {
    fn enter(&self) -> Option<Permit<'_>> {
        let mut s = self.slots.lock().unwrap_or_else(|p| p.into_inner());
        if s.running < self.limits.max_running {
            s.running += 1;
            return Some(Permit(self));
        }
        if s.waiting >= self.limits.max_waiting {
            return None;
        }
        s.waiting += 1;
        let deadline = Instant::now() + self.limits.max_wait;
        loop {
            let now = Instant::now();
            if now >= deadline {
                s.waiting -= 1;
                return None;
            }
            s = self
                .freed
                .wait_timeout(s, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            if s.running < self.limits.max_running {
                s.waiting -= 1;
                s.running += 1;
                return Some(Permit(self));
            }
        }
    }
}

/// The servant of `DCMS::ClinicManagement`.
pub struct ClinicServant {
    service: Arc<dyn ClinicService>,
    gate: Gate,
    /// Requests started and not answered yet ([`DeferredServant`]).
    started: Arc<AtomicUsize>,
    /// Where the `FT_REQUEST` context of the running request is (see
    /// [`crate::ft`]); `None`: contexts are not looked at.
    pi: Option<PiCurrent>,
    /// Run a request only for the manager the client's certificate names
    /// ([`crate::auth`]); IIOP over TLS with client certificates.
    authenticate: bool,
}

impl std::fmt::Debug for ClinicServant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClinicServant")
            .field("gate", &self.gate)
            .finish_non_exhaustive()
    }
}

impl ClinicServant {
    pub fn new(service: Arc<dyn ClinicService>, admission: Admission) -> ClinicServant {
        ClinicServant {
            service,
            gate: Gate {
                limits: Admission {
                    max_running: admission.max_running.max(1),
                    ..admission
                },
                slots: Mutex::default(),
                freed: Condvar::new(),
            },
            started: Arc::default(),
            pi: None,
            authenticate: false,
        }
    }

    /// Runs a request only when its `managerID` is the manager the
    /// client's TLS certificate names; `DCMS::NotAuthorized` otherwise
    /// (and for a client without a certificate), before the request
    /// reaches the service. For a server that requires client
    /// certificates ([`crate::ServeOptions::tls`]).
    pub fn with_client_certificates(mut self) -> ClinicServant {
        self.authenticate = true;
        self
    }

    /// Honours the `FT_REQUEST` context of requests, read through `pi`
    /// (the ORB's `PortableInterceptor::Current`, after [`crate::ft::install`]).
    pub fn with_ft(mut self, pi: PiCurrent) -> ClinicServant {
        self.pi = Some(pi);
        self
    }

    /// Decodes, runs and answers one request, without the ORB's reply.
    pub fn handle(&self, operation: &str, input: &mut InStream<'_>) -> Answer {
        let ft = self.pi.as_ref().and_then(crate::ft::current);
        let peer = rustorb_core::peer_certificates();
        let (request, ft, authenticated) = match self.admit(operation, input, peer, ft) {
            Ok(admitted) => admitted,
            Err(refused) => return refused,
        };
        let Some(_permit) = self.gate.enter() else {
            tracing::warn!("refusing {operation}: too many requests at once");
            return answer(operation, Err(ServiceError::Overloaded));
        };
        let result = self.service.call_as(request, ft, authenticated);
        answer(operation, result)
    }

    /// What a request must pass before it reaches the service: it decodes,
    /// its manager is the one the client's certificate names (with client
    /// certificates), and its `FT_REQUEST` context (`ft`, as the client sent
    /// it) is well formed. `Err` is the answer that refuses it.
    #[allow(clippy::type_complexity)]
    fn admit(
        &self,
        operation: &str,
        input: &mut InStream<'_>,
        peer: Option<rustorb_core::PeerCertificates>,
        ft: Option<Result<FtRequest, String>>,
    ) -> Result<(Request, Option<FtRequest>, Option<ManagerId>), Answer> {
        let request = decode_request(operation, input).map_err(Answer::System)?;
        let authenticated = if self.authenticate {
            match crate::auth::check(request.manager_id(), peer.as_deref()) {
                Ok(id) => Some(id),
                Err(e) => {
                    tracing::warn!(operation, "refused: {e}");
                    return Err(answer(operation, Ok(Err(e))));
                }
            }
        } else {
            None
        };
        // The FT identity matters for writes only (a read may run twice).
        let ft = match ft {
            Some(_) if request.is_read_only() => None,
            Some(Ok(ft)) => match crate::ft::check(&ft) {
                Ok(()) => Some(ft),
                Err(reason) => return Err(ft_refusal(operation, reason)),
            },
            Some(Err(reason)) => return Err(ft_refusal(operation, reason)),
            None => None,
        };
        Ok((request, ft, authenticated))
    }
}

/// Writes `answer` as the reply to `operation`.
fn write_answer(answer: Answer, reply: &mut ServerReply) -> Result<(), SystemException> {
    match answer {
        Answer::System(e) => Err(e),
        Answer::User(ex) => {
            let mut out = reply.user_exception(ex.repository_id())?;
            ex.write_members(&mut out)
        }
        ok => write_result(&ok, &mut reply.output()),
    }
}

/// A request in the service, counted until its answer is sent.
struct Started(Arc<AtomicUsize>);

impl Drop for Started {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// For a service that [answers later](ClinicService::answers_later): the
/// ORB starts each request on the I/O task that read it, and the service's
/// completion writes the reply, so no thread waits for the cluster. At
/// most `max_running + max_waiting` requests are in the service at once;
/// beyond, `TRANSIENT` (completed no) at once.
impl DeferredServant for ClinicServant {
    fn start(&self, mut request: DeferredRequest<'_>, responder: Responder) {
        let operation = request.operation.to_owned();
        let ft = self
            .pi
            .as_ref()
            .and_then(|_| crate::ft::in_contexts(request.contexts));
        let admitted = self.admit(
            &operation,
            &mut request.input,
            request.peer_certificates.take(),
            ft,
        );
        let (request, ft, authenticated) = match admitted {
            Ok(admitted) => admitted,
            Err(refused) => return responder.reply(|out| write_answer(refused, out)),
        };
        let limit = self.gate.limits.max_running + self.gate.limits.max_waiting;
        if self.started.fetch_add(1, Ordering::Relaxed) >= limit {
            self.started.fetch_sub(1, Ordering::Relaxed);
            tracing::warn!("refusing {operation}: too many requests at once");
            let refused = answer(&operation, Err(ServiceError::Overloaded));
            return responder.reply(|out| write_answer(refused, out));
        }
        let started = Started(Arc::clone(&self.started));
        self.service.start_as(
            request,
            ft,
            authenticated,
            Box::new(move |result| {
                let answer = answer(&operation, result);
                responder.reply(|out| write_answer(answer, out));
                drop(started);
            }),
        );
    }
}

impl Servant for ClinicServant {
    fn repository_id(&self) -> &str {
        idl::INTERFACE_ID
    }

    fn dispatch(
        &self,
        operation: &str,
        input: &mut InStream<'_>,
        reply: &mut ServerReply,
    ) -> Result<(), SystemException> {
        write_answer(self.handle(operation, input), reply)
    }
}
