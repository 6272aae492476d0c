//! Typed client stubs of `DCMS::ClinicManagement`.
//!
//! A [`ClinicClient`] is cheap to clone and safe to share between threads:
//! every clone uses the same ORB and so the same GIOP connection to the
//! server, on which requests from many threads are multiplexed.

use std::time::Duration;

use rustorb_core::cdr::ByteOrder;
use rustorb_core::giop::{component_tag, IiopProfile, Ior, Version};
use rustorb_core::{
    CompletionStatus, Exception, InStream, ObjectRef, Orb, OrbOptions, OutStream, SystemException,
    SystemExceptionKind,
};

use crate::idl::{self, DcmsException, IdlRecord};

/// How an operation failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    /// One of the IDL's user exceptions.
    #[error("{0}")]
    User(DcmsException),
    /// A CORBA system exception (from the server or raised locally).
    #[error("{0}")]
    System(SystemException),
}

impl CallError {
    pub fn as_user(&self) -> Option<&DcmsException> {
        match self {
            CallError::User(e) => Some(e),
            CallError::System(_) => None,
        }
    }

    pub fn as_system(&self) -> Option<&SystemException> {
        match self {
            CallError::System(e) => Some(e),
            CallError::User(_) => None,
        }
    }

    /// `DCMS::NotFound`, `CORBA::TRANSIENT`, ...
    pub fn name(&self) -> String {
        match self {
            CallError::User(e) => format!("DCMS::{}", e.name()),
            CallError::System(e) => match e.kind() {
                Some(k) => format!("CORBA::{}", k.name()),
                None => e.repository_id.clone(),
            },
        }
    }

    pub fn repository_id(&self) -> &str {
        match self {
            CallError::User(e) => e.repository_id(),
            CallError::System(e) => &e.repository_id,
        }
    }

    /// The exception's members (user exceptions) or its minor code and
    /// completion status (system exceptions), as `(name, value)`.
    pub fn fields(&self) -> Vec<(&'static str, String)> {
        match self {
            CallError::User(e) => e
                .members()
                .into_iter()
                .map(|(k, v)| (k, v.to_string()))
                .collect(),
            CallError::System(e) => vec![
                ("minor", format!("{:#010x}", e.minor)),
                ("completed", completion_name(e.completed).to_string()),
            ],
        }
    }
}

/// `COMPLETED_YES`, `COMPLETED_NO` or `COMPLETED_MAYBE`.
pub fn completion_name(c: CompletionStatus) -> &'static str {
    match c {
        CompletionStatus::Yes => "COMPLETED_YES",
        CompletionStatus::No => "COMPLETED_NO",
        CompletionStatus::Maybe => "COMPLETED_MAYBE",
    }
}

impl From<SystemException> for CallError {
    fn from(e: SystemException) -> CallError {
        CallError::System(e)
    }
}

/// Client settings.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// How long to wait for a TCP connection.
    pub connect_timeout: Duration,
    /// How long to wait for a reply (`TIMEOUT`, completed maybe, after).
    pub call_timeout: Duration,
    /// I/O threads of the client's ORB (one is plenty for one connection).
    pub io_threads: usize,
    /// Send FT-CORBA's `FT_REQUEST` context with every write and retry
    /// transparently (see [`FtOptions`]). Off by default: each call is
    /// made once.
    pub ft: Option<FtOptions>,
    /// IIOP over TLS: the CA to trust and this client's certificate. A
    /// reference whose profile advertises TLS (`TAG_SSL_SEC_TRANS`, as a
    /// `dcms up --tls` front end's) is then reached over TLS; without it,
    /// such a front end cannot be reached.
    pub tls: Option<ClientTls>,
}

impl Default for ClientOptions {
    fn default() -> ClientOptions {
        ClientOptions {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(30),
            io_threads: 2,
            ft: None,
            tls: None,
        }
    }
}

/// A client's TLS files, PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientTls {
    /// The CA that signed the server's certificate (`<data-dir>/tls/ca.pem`).
    pub ca_file: std::path::PathBuf,
    /// The client's certificate followed by its key (`dcms cert issue`
    /// writes `<data-dir>/tls/managers/ID.pem` so); `None`: none is sent,
    /// and a server requiring one refuses the connection.
    pub cert_file: Option<std::path::PathBuf>,
}

/// Fault-tolerant invocation, as an FT-CORBA client ORB does it: each write
/// carries an `FT_REQUEST` context (this client's ID, a new retention ID,
/// an expiration `expiration` from the first try), and a call that fails
/// with `COMM_FAILURE` or `TRANSIENT` (the front end died, or the outcome
/// is unknown) is made again with the same context, through whichever
/// front end the reference leads to, until the expiration: the cluster
/// executes it at most once and answers the retry with the first reply.
/// When the expiration passes while no majority is reachable, the answer
/// is `DCMS::Unavailable` (certainly not executed).
#[derive(Clone, Debug)]
pub struct FtOptions {
    /// Unique among clients (default: host, process and a random number).
    pub client_id: String,
    /// How long a call may take, retries included.
    pub expiration: Duration,
}

impl Default for FtOptions {
    fn default() -> FtOptions {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "host".into());
        FtOptions {
            client_id: format!(
                "dcms/{host}/{}/{:016x}",
                std::process::id(),
                rand::random::<u64>()
            ),
            expiration: Duration::from_secs(4),
        }
    }
}

/// A client's FT state: its ID and the next retention ID.
#[derive(Debug)]
struct FtClient {
    options: FtOptions,
    pi: rustorb_core::pi::PiCurrent,
    next_retention: std::sync::atomic::AtomicI32,
    retries: std::sync::atomic::AtomicU64,
}

/// What marshals a call's arguments.
type Args<'a> = dyn Fn(&mut OutStream<'_>) -> Result<(), SystemException> + 'a;

/// Writes: the operations an `FT_REQUEST` context is sent with.
fn is_write(operation: &str) -> bool {
    matches!(
        operation,
        "createDRecord" | "createNRecord" | "editRecord" | "transferRecord"
    )
}

/// Failures after which an FT client tries again.
fn retryable(e: &CallError) -> bool {
    matches!(
        e.as_system().and_then(SystemException::kind),
        Some(SystemExceptionKind::COMM_FAILURE | SystemExceptionKind::TRANSIENT)
    )
}

/// A reference to a `DCMS::ClinicManagement` object.
#[derive(Clone)]
pub struct ClinicClient {
    orb: Orb,
    object: ObjectRef,
    ft: Option<std::sync::Arc<FtClient>>,
}

impl std::fmt::Debug for ClinicClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClinicClient").finish_non_exhaustive()
    }
}

impl ClinicClient {
    /// A client of the object at `reference`: a stringified IOR, a
    /// `corbaloc:` or a `corbaname:` URL (resolved now, in the naming
    /// service it names).
    pub fn connect(reference: &str, opts: &ClientOptions) -> Result<ClinicClient, CallError> {
        crate::ft::install();
        let tls = match &opts.tls {
            None => rustorb_core::TlsOptions::default(),
            Some(t) => {
                for path in std::iter::once(&t.ca_file).chain(t.cert_file.as_ref()) {
                    if let Err(e) = std::fs::File::open(path) {
                        tracing::warn!("TLS file {}: {e}", path.display());
                        return Err(CallError::System(SystemException::new(
                            SystemExceptionKind::INITIALIZE,
                            0,
                            CompletionStatus::No,
                        )));
                    }
                }
                rustorb_core::TlsOptions {
                    ca_file: Some(t.ca_file.clone()),
                    key_file: t.cert_file.clone(),
                    ..rustorb_core::TlsOptions::default()
                }
            }
        };
        let options = OrbOptions {
            tls,
            connect_timeout: Some(opts.connect_timeout),
            request_timeout: Some(opts.call_timeout),
            io_threads: opts.io_threads.max(1),
            ..OrbOptions::default()
        };
        let orb = Orb::with_options(options)?;
        let mut client = ClinicClient::with_orb(&orb, reference)?;
        client.ft = opts.ft.clone().map(|options| {
            std::sync::Arc::new(FtClient {
                options,
                pi: orb.pi_current(),
                next_retention: std::sync::atomic::AtomicI32::new(1),
                retries: std::sync::atomic::AtomicU64::new(0),
            })
        });
        Ok(client)
    }

    /// Calls made again after `COMM_FAILURE` or `TRANSIENT` (FT clients).
    pub fn retries(&self) -> u64 {
        self.ft
            .as_ref()
            .map_or(0, |f| f.retries.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// A client using an existing ORB. A `corbaloc:` URL without a GIOP
    /// version is used with GIOP 1.2 and UTF-8 (see [`utf8_for_corbaloc`]).
    pub fn with_orb(orb: &Orb, reference: &str) -> Result<ClinicClient, CallError> {
        let reference = reference.trim();
        // rustorb does not read `corbaloc:ssliop:` itself.
        let tls_ior = crate::group::ior_of_tls_corbaloc(reference).map_err(|why| {
            tracing::warn!("{why}");
            SystemException::new(SystemExceptionKind::BAD_PARAM, 0, CompletionStatus::No)
        })?;
        let reference = tls_ior.as_deref().unwrap_or(reference);
        let object = orb.string_to_object(reference)?.ok_or_else(|| {
            SystemException::new(SystemExceptionKind::INV_OBJREF, 0, CompletionStatus::No)
        })?;
        let object = utf8_for_corbaloc(orb, reference, object);
        Ok(ClinicClient {
            orb: orb.clone(),
            object,
            ft: None,
        })
    }

    /// The object reference.
    pub fn object(&self) -> &ObjectRef {
        &self.object
    }

    pub fn orb(&self) -> &Orb {
        &self.orb
    }

    /// Whether the object says it is a `DCMS::ClinicManagement`.
    pub fn is_clinic_management(&self) -> Result<bool, CallError> {
        self.object
            .is_a(idl::INTERFACE_ID)
            .map_err(|e| map_exception("_is_a", e))
    }

    fn call<T>(
        &self,
        operation: &str,
        args: &[&str],
        read: impl FnOnce(&mut InStream<'_>) -> Result<T, SystemException>,
    ) -> Result<T, CallError> {
        let write = |out: &mut OutStream<'_>| {
            for a in args {
                out.write_string(a)?;
            }
            Ok(())
        };
        self.call_with(operation, &write, read)
    }

    /// A call whose arguments `write` marshals (once per try).
    fn call_with<T>(
        &self,
        operation: &str,
        write: &Args<'_>,
        read: impl FnOnce(&mut InStream<'_>) -> Result<T, SystemException>,
    ) -> Result<T, CallError> {
        let reply = match &self.ft {
            None => self.invoke(operation, write)?,
            Some(ft) => self.invoke_ft(ft, operation, write)?,
        };
        let mut input = reply.input();
        Ok(read(&mut input)?)
    }

    fn invoke(&self, operation: &str, write: &Args<'_>) -> Result<rustorb_core::Reply, CallError> {
        self.object
            .request(operation)
            .args(|out| write(out))
            .invoke()
            .map_err(|e| map_exception(operation, e))
    }

    /// One call, tried again with the same `FT_REQUEST` context after
    /// `COMM_FAILURE` or `TRANSIENT` until its expiration.
    fn invoke_ft(
        &self,
        ft: &FtClient,
        operation: &str,
        write: &Args<'_>,
    ) -> Result<rustorb_core::Reply, CallError> {
        use std::sync::atomic::Ordering;
        use std::time::{Instant, SystemTime, UNIX_EPOCH};
        let started = Instant::now();
        let deadline = started + ft.options.expiration;
        let identity = is_write(operation).then(|| dcms_core::FtRequest {
            client_id: ft.options.client_id.clone(),
            retention_id: ft.next_retention.fetch_add(1, Ordering::Relaxed),
            expires_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_millis() as u64)
                + ft.options.expiration.as_millis() as u64,
        });
        let mut backoff = Duration::from_millis(10);
        loop {
            let result = match &identity {
                Some(id) => crate::ft::with_context(&ft.pi, id, || self.invoke(operation, write))
                    .unwrap_or_else(|| self.invoke(operation, write)),
                None => self.invoke(operation, write),
            };
            match result {
                Err(e) if retryable(&e) && Instant::now() + backoff < deadline => {
                    tracing::debug!(operation, error = %e, "retrying");
                    ft.retries.fetch_add(1, Ordering::Relaxed);
                    std::thread::sleep(backoff);
                    backoff = (backoff * 2).min(Duration::from_millis(200));
                }
                other => return other,
            }
        }
    }

    fn call_string(&self, operation: &str, args: &[&str]) -> Result<String, CallError> {
        self.call(operation, args, |i| i.read_string())
    }

    #[allow(clippy::too_many_arguments)]
    pub fn create_d_record(
        &self,
        manager_id: &str,
        first_name: &str,
        last_name: &str,
        address: &str,
        phone: &str,
        specialization: &str,
        location: &str,
    ) -> Result<String, CallError> {
        self.call_string(
            "createDRecord",
            &[
                manager_id,
                first_name,
                last_name,
                address,
                phone,
                specialization,
                location,
            ],
        )
    }

    pub fn create_n_record(
        &self,
        manager_id: &str,
        first_name: &str,
        last_name: &str,
        designation: &str,
        status: &str,
        status_date: &str,
    ) -> Result<String, CallError> {
        self.call_string(
            "createNRecord",
            &[
                manager_id,
                first_name,
                last_name,
                designation,
                status,
                status_date,
            ],
        )
    }

    /// `createDRecord` with `fields` (the same call as
    /// [`ClinicClient::create_d_record`]).
    pub fn create_doctor(
        &self,
        manager_id: &str,
        fields: &dcms_core::DoctorFields,
    ) -> Result<String, CallError> {
        self.create_d_record(
            manager_id,
            &fields.first_name,
            &fields.last_name,
            &fields.address,
            &fields.phone,
            &fields.specialization,
            &fields.location,
        )
    }

    /// `createNRecord` with `fields` (the same call as
    /// [`ClinicClient::create_n_record`]).
    pub fn create_nurse(
        &self,
        manager_id: &str,
        fields: &dcms_core::NurseFields,
    ) -> Result<String, CallError> {
        self.create_n_record(
            manager_id,
            &fields.first_name,
            &fields.last_name,
            &fields.designation,
            &fields.status,
            &fields.status_date,
        )
    }

    pub fn get_record_counts(&self, manager_id: &str) -> Result<String, CallError> {
        self.call_string("getRecordCounts", &[manager_id])
    }

    pub fn edit_record(
        &self,
        manager_id: &str,
        record_id: &str,
        field_name: &str,
        new_value: &str,
    ) -> Result<String, CallError> {
        self.call_string(
            "editRecord",
            &[manager_id, record_id, field_name, new_value],
        )
    }

    pub fn transfer_record(
        &self,
        manager_id: &str,
        record_id: &str,
        remote_clinic_server_name: &str,
    ) -> Result<String, CallError> {
        self.call_string(
            "transferRecord",
            &[manager_id, record_id, remote_clinic_server_name],
        )
    }

    pub fn get_record(&self, manager_id: &str, record_id: &str) -> Result<IdlRecord, CallError> {
        self.call("getRecord", &[manager_id, record_id], IdlRecord::read)
    }

    pub fn list_records(
        &self,
        manager_id: &str,
        last_name_prefix: &str,
    ) -> Result<Vec<IdlRecord>, CallError> {
        self.call(
            "listRecords",
            &[manager_id, last_name_prefix],
            idl::read_record_list,
        )
    }
}

impl ClinicClient {
    /// One page of `listRecords`: at most `max_count` records (the server
    /// serves at most 1,000) after `after_record_id` (empty: from the
    /// start). The page's `next_after` is the ID to pass for the next page;
    /// empty on the last one.
    pub fn list_records_page(
        &self,
        manager_id: &str,
        last_name_prefix: &str,
        after_record_id: &str,
        max_count: u32,
    ) -> Result<idl::IdlRecordPage, CallError> {
        let write = |out: &mut OutStream<'_>| {
            for a in [manager_id, last_name_prefix, after_record_id] {
                out.write_string(a)?;
            }
            out.write_u32(max_count);
            Ok(())
        };
        self.call_with("listRecordsPage", &write, idl::IdlRecordPage::read)
    }

    /// Every record `listRecords` would list, fetched in pages of
    /// `page_size`, stopping after `limit` records when given. A server
    /// without the paged operation (an older one: `BAD_OPERATION` or
    /// `NO_IMPLEMENT` on the first page) is asked with `listRecords`.
    pub fn list_records_paged(
        &self,
        manager_id: &str,
        last_name_prefix: &str,
        page_size: u32,
        limit: Option<usize>,
    ) -> Result<Vec<IdlRecord>, CallError> {
        let mut all = Vec::new();
        let mut after = String::new();
        loop {
            let want = limit.map_or(page_size, |l| {
                page_size.min(u32::try_from(l - all.len()).unwrap_or(u32::MAX))
            });
            let page = match self.list_records_page(manager_id, last_name_prefix, &after, want) {
                Err(CallError::System(e))
                    if after.is_empty()
                        && (e.is(SystemExceptionKind::BAD_OPERATION)
                            || e.is(SystemExceptionKind::NO_IMPLEMENT)) =>
                {
                    let mut whole = self.list_records(manager_id, last_name_prefix)?;
                    whole.truncate(limit.unwrap_or(usize::MAX));
                    return Ok(whole);
                }
                other => other?,
            };
            all.extend(page.records);
            if page.next_after.is_empty() || limit.is_some_and(|l| all.len() >= l) {
                return Ok(all);
            }
            after = page.next_after;
        }
    }
}

/// A `corbaloc:` reference whose IIOP addresses name no version is used
/// as GIOP 1.2 with UTF-8 for `string` data, as DCMS servers (and omniORB)
/// offer.
///
/// Such a reference has no `TAG_CODE_SETS` component, and without one CORBA
/// says `string` data is ISO-8859-1: a name like "Łódź" would fail with
/// `DATA_CONVERSION` before it is sent. So each IIOP profile without the
/// component gets IIOP 1.2 and a component offering UTF-8 (and UTF-16 for
/// `wchar`). A URL with an explicit version (`iiop:1.0@host:port`) and
/// every other kind of reference are used as they are.
fn utf8_for_corbaloc(orb: &Orb, reference: &str, object: ObjectRef) -> ObjectRef {
    let Some(rest) = reference
        .get(..9)
        .filter(|p| p.eq_ignore_ascii_case("corbaloc:"))
        .map(|_| &reference[9..])
    else {
        return object;
    };
    let addresses = rest.split('/').next().unwrap_or("");
    if addresses.contains('@') {
        return object;
    }
    let info = crate::group::code_sets();
    let rewrite = || -> Option<ObjectRef> {
        let ior = object.ior();
        let mut changed = false;
        let mut profiles = Vec::with_capacity(ior.profiles.len());
        for tagged in &ior.profiles {
            match IiopProfile::from_tagged_profile(tagged) {
                Ok(mut p)
                    if !p
                        .components
                        .iter()
                        .any(|c| c.tag == component_tag::CODE_SETS) =>
                {
                    p.version = Version::V1_2;
                    p.components
                        .push(info.to_component(ByteOrder::NATIVE).ok()?);
                    profiles.push(p.to_tagged_profile(ByteOrder::NATIVE).ok()?);
                    changed = true;
                }
                _ => profiles.push(tagged.clone()),
            }
        }
        if !changed {
            return None;
        }
        let ior = Ior {
            type_id: ior.type_id.clone(),
            profiles,
        };
        let text = ior.to_ior_string(ByteOrder::NATIVE).ok()?;
        orb.string_to_object(&text).ok().flatten()
    };
    rewrite().unwrap_or(object)
}

/// An invocation's exception as a [`CallError`]: our user exceptions with
/// their members; any other user exception is `UNKNOWN` (minor
/// `UNLISTED_USER_EXCEPTION`), as an IDL stub would raise.
fn map_exception(operation: &str, e: Exception) -> CallError {
    match e {
        Exception::System(e) => CallError::System(e),
        Exception::User(u) => {
            let id = u.repository_id().to_string();
            let decoded = u
                .input()
                .ok()
                .and_then(|mut input| DcmsException::read_members(&id, &mut input));
            match decoded {
                Some(Ok(ex)) if idl::raises(operation, &ex) => CallError::User(ex),
                Some(Err(e)) => CallError::System(e),
                _ => CallError::System(SystemException::new(
                    SystemExceptionKind::UNKNOWN,
                    rustorb_core::minor::UNLISTED_USER_EXCEPTION,
                    CompletionStatus::Yes,
                )),
            }
        }
    }
}
