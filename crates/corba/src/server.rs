//! Serving a [`ClinicService`] over IIOP: [`serve`] starts an ORB on one
//! endpoint, activates the servant under the simple key `DCMS`
//! (`corbaloc:iiop:HOST:PORT/DCMS`) and optionally binds it in CosNaming.
//!
//! With [`ServeOptions::tls`] the endpoint is IIOP over TLS only
//! (`corbaloc:ssliop:HOST:PORT/DCMS`; the IOR's profile has port 0 and a
//! `TAG_SSL_SEC_TRANS` component): no plain IIOP listener is opened, and a
//! client must present a certificate of the given CA, checked in the
//! handshake (chain, dates, `clientAuth` usage) before any request is
//! read.
//!
//! Robustness settings, all in [`ServeOptions`] (rustorb's own defaults in
//! brackets):
//!
//! - `max_message_size` 16 MiB [64 MiB]: the largest GIOP message accepted
//!   or sent. A request over it closes that connection only (legitimate
//!   requests are under 2 KiB: seven strings the domain caps at 100
//!   characters). rustorb has one limit for both directions, and a reply
//!   over it becomes `MARSHAL`, completed yes, so it is sized for the
//!   largest reply: a `listRecords` of about 50,000 records (~300 bytes
//!   each). Each connection buffers at most one message of this size.
//! - `idle_timeout` 60 s [180 s]: a connection with no request for that
//!   long, and none running, is closed with `CloseConnection`. This covers
//!   a connection that never sends anything.
//! - `message_deadline` 10 s [none]: a connection whose message has
//!   started and not completed for that long is closed (a client that
//!   sends part of a message and stops would otherwise hold its connection
//!   and buffer for ever: rustorb's idle scan skips a connection in the
//!   middle of a message).
//! - `max_queued_reply_bytes` 16 MiB [none]: a connection whose replies
//!   wait unread beyond that (past what its socket took) is closed; a
//!   client that sends requests and never reads would otherwise grow the
//!   queue without bound (measured: 123 MB in 5 s). One reply is always
//!   queued whatever its size, so the largest legitimate reply passes.
//!   These two limits are ours, patched into rustorb-core
//!   (`vendor/rustorb-core/PATCHES.md`); they replace a proxy that copied
//!   every message through a second TCP hop (15-20% of the throughput).
//! - [`Admission`]: at most 32 requests run in the service and 64 wait for
//!   a slot (2 s at most); beyond that, `TRANSIENT` completed no at once.
//!   The ORB's upcall pool has `max_running + max_waiting + 16` threads, so
//!   refusals always find a thread.
//! - `max_requests_per_connection` 64 [256]: one connection cannot queue
//!   more; its socket is not read until one completes.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustorb_core::{
    ClientAuth, DeferredServant, EndpointAddr, IdAssignment, Lifespan, ObjectRef, Orb, OrbOptions,
    Policy, Servant, SystemException, TlsOptions,
};
use rustorb_naming::{NamingContext, NamingError};

use crate::idl;
use crate::servant::{Admission, ClinicServant};
use crate::service::ClinicService;

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServeOptions {
    /// Where to listen; port 0 lets the system choose.
    pub listen: SocketAddr,
    /// The host published in IORs; `None` publishes the listening address.
    pub publish_host: Option<String>,
    pub max_message_size: usize,
    pub idle_timeout: Duration,
    pub max_requests_per_connection: usize,
    pub admission: Admission,
    /// A CosNaming root context (`corbaloc:...`, IOR) to bind the object in.
    pub naming: Option<String>,
    /// The name to bind, as a stringified CosNaming name.
    pub naming_name: String,
    /// Time from the first byte of a message to its last.
    pub message_deadline: Duration,
    /// Unread reply bytes one connection may queue.
    pub max_queued_reply_bytes: usize,
    /// How long an upcall thread that answered a request waits to read the
    /// next request of its connection itself (rustorb's `follow_linger`).
    /// 0, the default here: a replicated request takes milliseconds, so
    /// the next request of a synchronous client comes after the wait and
    /// it only cost a poll and a wake-up (9% of the front end's CPU at 32
    /// clients, measured; no change at one client).
    pub follow_linger: Duration,
    /// Serve IIOP over TLS only, requiring client certificates; `None`:
    /// plain IIOP.
    pub tls: Option<TlsFiles>,
    /// The tokio runtime of the ORB's I/O tasks; `None`: a runtime of its
    /// own. A service that [answers later](ClinicService::answers_later)
    /// from tasks of a runtime passes that one, so that handing a request
    /// from an I/O task to its task wakes no other thread.
    pub runtime: Option<tokio::runtime::Handle>,
}

/// The files of a TLS endpoint, PEM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA whose certificates clients must present.
    pub ca: PathBuf,
    /// The server's certificate (and its intermediate CAs).
    pub cert: PathBuf,
    /// The server's private key.
    pub key: PathBuf,
}

impl Default for ServeOptions {
    fn default() -> ServeOptions {
        ServeOptions {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            publish_host: None,
            max_message_size: 16 * 1024 * 1024,
            idle_timeout: Duration::from_secs(60),
            max_requests_per_connection: 64,
            admission: Admission::default(),
            naming: None,
            naming_name: DEFAULT_NAMING_NAME.to_string(),
            message_deadline: Duration::from_secs(10),
            max_queued_reply_bytes: 16 * 1024 * 1024,
            follow_linger: Duration::ZERO,
            tls: None,
            runtime: None,
        }
    }
}

/// The name bound in CosNaming unless told otherwise.
pub const DEFAULT_NAMING_NAME: &str = "DCMS/ClinicManagement";

/// Why serving could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot start the ORB: {0:?}")]
    Orb(SystemException),
    #[error("cannot listen on {0}: {1:?}")]
    Listen(SocketAddr, SystemException),
    #[error("cannot activate the servant: {0}")]
    Activate(String),
    #[error("naming service {url}: {what}")]
    Naming { url: String, what: String },
    #[error("listening on {0} (every interface) needs a host to publish in the IOR")]
    NoPublishHost(SocketAddr),
    #[error("TLS: {0}")]
    Tls(String),
}

/// A server started by [`serve`]; shuts down on [`RunningServer::shutdown`]
/// or drop.
pub struct RunningServer {
    orb: Orb,
    object: ObjectRef,
    ior: String,
    host: String,
    port: u16,
    tls: bool,
}

impl std::fmt::Debug for RunningServer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunningServer")
            .field("corbaloc", &self.corbaloc())
            .finish()
    }
}

impl RunningServer {
    /// The stringified IOR of the object (simple key `DCMS`).
    pub fn ior(&self) -> &str {
        &self.ior
    }

    /// The object's reference.
    pub fn object(&self) -> &ObjectRef {
        &self.object
    }

    /// The port actually listened on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The published host.
    pub fn host(&self) -> &str {
        &self.host
    }

    /// Whether it serves IIOP over TLS (only), requiring client
    /// certificates.
    pub fn tls(&self) -> bool {
        self.tls
    }

    /// `corbaloc:iiop:HOST:PORT/DCMS`, or `corbaloc:ssliop:HOST:PORT/DCMS`
    /// over TLS.
    pub fn corbaloc(&self) -> String {
        let host = if self.host.contains(':') {
            format!("[{}]", self.host)
        } else {
            self.host.clone()
        };
        let protocol = if self.tls { "ssliop" } else { "iiop" };
        format!(
            "corbaloc:{protocol}:{host}:{}/{}",
            self.port,
            idl::OBJECT_KEY
        )
    }

    /// The ORB (to run more objects or to wait on).
    pub fn orb(&self) -> &Orb {
        &self.orb
    }

    /// Blocks until the ORB shuts down.
    pub fn wait(&self) {
        self.orb.run();
    }

    /// Stops accepting, finishes the running requests and closes every
    /// connection.
    pub fn shutdown(&self) {
        let _ = self.orb.shutdown(true);
    }
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        let _ = self.orb.shutdown(true);
        let _ = self.orb.destroy();
    }
}

/// Starts serving `service`.
pub fn serve(
    service: Arc<dyn ClinicService>,
    opts: &ServeOptions,
) -> Result<RunningServer, ServeError> {
    let admission = opts.admission;
    let threads = admission.max_running.max(1) + admission.max_waiting + 16;
    if opts.listen.ip().is_unspecified() && opts.publish_host.is_none() {
        return Err(ServeError::NoPublishHost(opts.listen));
    }
    let endpoint = EndpointAddr {
        host: opts.listen.ip().to_string(),
        port: opts.listen.port(),
    };
    let publish = opts.publish_host.as_ref().map(|h| EndpointAddr {
        host: h.clone(),
        port: 0,
    });
    if let Some(files) = &opts.tls {
        for (what, path) in [
            ("CA certificate", &files.ca),
            ("certificate", &files.cert),
            ("key", &files.key),
        ] {
            std::fs::File::open(path)
                .map_err(|e| ServeError::Tls(format!("the {what} file {}: {e}", path.display())))?;
        }
    }
    // Over TLS, no plain endpoint at all: rustorb then opens no plain
    // listener.
    let (endpoints, endpoint_publish, tls_endpoints, tls_endpoint_publish, tls) = match &opts.tls {
        None => (
            vec![endpoint],
            publish,
            Vec::new(),
            None,
            TlsOptions::default(),
        ),
        Some(files) => (
            Vec::new(),
            None,
            vec![endpoint],
            publish,
            TlsOptions {
                ca_file: Some(files.ca.clone()),
                cert_file: Some(files.cert.clone()),
                key_file: Some(files.key.clone()),
                client_auth: ClientAuth::Required,
                verify_host: true,
            },
        ),
    };
    let options = OrbOptions {
        endpoints,
        endpoint_publish,
        tls_endpoints,
        tls_endpoint_publish,
        tls,
        max_message_size: opts.max_message_size,
        server_idle_timeout: Some(opts.idle_timeout),
        max_requests_per_connection: opts.max_requests_per_connection,
        min_server_threads: 4,
        max_server_threads: threads,
        io_threads: 2,
        follow_linger: opts.follow_linger,
        server_message_deadline: Some(opts.message_deadline),
        server_max_queued_reply_bytes: Some(opts.max_queued_reply_bytes),
        // For binding in the naming service.
        connect_timeout: Some(Duration::from_secs(5)),
        request_timeout: Some(Duration::from_secs(10)),
        ..OrbOptions::default()
    };
    crate::ft::install();
    let orb = match &opts.runtime {
        Some(handle) => Orb::try_with_runtime(options, handle.clone()),
        None => Orb::with_options(options),
    }
    .map_err(ServeError::Orb)?;
    let root = orb
        .root_poa()
        .map_err(|e| ServeError::Listen(opts.listen, e))?;
    let poa = root
        .create_poa(
            "DCMS",
            Some(&root.the_poa_manager()),
            &[
                Policy::Lifespan(Lifespan::Persistent),
                Policy::IdAssignment(IdAssignment::User),
            ],
        )
        .map_err(|e| ServeError::Activate(format!("{e:?}")))?;
    let answers_later = service.answers_later();
    let mut servant = ClinicServant::new(service, admission).with_ft(orb.pi_current());
    if opts.tls.is_some() {
        servant = servant.with_client_certificates();
    }
    let servant = Arc::new(servant);
    poa.activate_object_with_id(
        b"ClinicManagement",
        Arc::clone(&servant) as Arc<dyn Servant>,
    )
    .map_err(|e| ServeError::Activate(format!("{e:?}")))?;
    let poa_ref = poa
        .id_to_reference(b"ClinicManagement")
        .map_err(|e| ServeError::Activate(format!("{e:?}")))?;
    if answers_later {
        // The I/O task that reads a request starts it; the service's
        // completion answers it. No upcall thread waits for the cluster.
        orb.set_deferred_servant(&poa_ref, Some(servant as Arc<dyn DeferredServant>))
            .map_err(|e| ServeError::Activate(format!("{e:?}")))?;
    }
    let object = orb
        .register_object_key(idl::OBJECT_KEY, &poa_ref)
        .map_err(|e| ServeError::Activate(format!("{e:?}")))?;
    root.the_poa_manager()
        .activate()
        .map_err(|e| ServeError::Activate(format!("{e:?}")))?;
    let published = if opts.tls.is_some() {
        orb.tls_endpoints()
    } else {
        orb.endpoints()
    };
    let (host, port) = published
        .into_iter()
        .next()
        .ok_or_else(|| ServeError::Activate("the ORB publishes no endpoint".into()))?;
    let ior = orb
        .object_to_string(Some(&object))
        .map_err(|e| ServeError::Activate(format!("{e:?}")))?;
    let server = RunningServer {
        orb,
        object,
        ior,
        host,
        port,
        tls: opts.tls.is_some(),
    };
    if let Some(url) = &opts.naming {
        bind_in_naming(&server.orb, url, &opts.naming_name, &server.object).map_err(|what| {
            ServeError::Naming {
                url: url.clone(),
                what,
            }
        })?;
    }
    Ok(server)
}

/// Binds `object` as `name` (a stringified CosNaming name such as
/// `DCMS/ClinicManagement`) in the naming service at `url`, creating the
/// contexts on the way and replacing an earlier binding.
pub fn bind_in_naming(orb: &Orb, url: &str, name: &str, object: &ObjectRef) -> Result<(), String> {
    let name = rustorb_naming::to_name(name).map_err(|e| format!("bad name {name:?}: {e:?}"))?;
    if name.is_empty() {
        return Err("empty name".into());
    }
    let root = orb
        .string_to_object(url)
        .map_err(|e| format!("bad reference: {e:?}"))?
        .ok_or("nil reference")?;
    let root = NamingContext::unchecked_narrow(root);
    let describe = |e: NamingError| format!("{e:?}");
    for i in 1..name.len() {
        match root.bind_new_context(&name[..i]) {
            Ok(_) | Err(NamingError::AlreadyBound) => {}
            Err(e) => return Err(describe(e)),
        }
    }
    root.rebind(&name, object).map_err(describe)
}
