//! IIOP over TLS with client certificates, in one process: a real ORB
//! serving a [`Standalone`] store on 127.0.0.1 with [`ServeOptions::tls`],
//! and clients with good, missing, expired, foreign and mismatched
//! certificates. Also the two rustorb changes behind it
//! (`vendor/rustorb-core/PATCHES.md`, "Server side: TLS"): the servant
//! sees the client's certificate, and the unread-reply limit holds over
//! TLS.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcms_core::{Reply, Request};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustorb_core::SystemExceptionKind;

use crate::{
    serve, CallError, ClientOptions, ClientTls, ClinicClient, ClinicService, DcmsException,
    RunningServer, ServeOptions, ServiceError, Standalone, TlsFiles,
};

/// A CA that issues into a folder.
struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl TestCa {
    fn new(name: &str) -> TestCa {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = p.self_signed(&key).unwrap();
        TestCa {
            cert_pem: cert.pem(),
            issuer: Issuer::new(p, key),
        }
    }

    /// (certificate PEM, key PEM).
    fn issue(&self, mut p: CertificateParams) -> (String, String) {
        let key = KeyPair::generate().unwrap();
        p.use_authority_key_identifier_extension = true;
        let cert = p.signed_by(&key, &self.issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    fn server(&self) -> (String, String) {
        let mut p =
            CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        self.issue(p)
    }

    /// A manager's certificate and key in one PEM: CN `cn`, URI SAN
    /// `urn:dcms:manager:uri` when given.
    fn manager(&self, cn: &str, uri: Option<&str>, expired: bool) -> String {
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.distinguished_name.push(DnType::CommonName, cn);
        if let Some(id) = uri {
            p.subject_alt_names.push(SanType::URI(
                format!("urn:dcms:manager:{id}").try_into().unwrap(),
            ));
        }
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        if expired {
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2021, 1, 1);
        }
        let (cert, key) = self.issue(p);
        format!("{cert}{key}")
    }
}

/// A [`Standalone`] store that counts the requests that reach it.
struct Counting {
    inner: Standalone,
    calls: AtomicUsize,
}

impl ClinicService for Counting {
    fn call(&self, request: Request) -> Result<Reply, ServiceError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        self.inner.call(request)
    }
}

/// A TLS-only server with its CA, and the files of every kind of client.
struct Fixture {
    dir: tempfile::TempDir,
    service: Arc<Counting>,
    server: RunningServer,
}

impl Fixture {
    fn start(max_queued_reply_bytes: Option<usize>) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let ca = TestCa::new("dcms test CA");
        let other = TestCa::new("another CA");
        let write = |name: &str, text: &str| std::fs::write(dir.path().join(name), text).unwrap();
        write("ca.pem", &ca.cert_pem);
        let (cert, key) = ca.server();
        write("server.pem", &cert);
        write("server.key", &key);
        write(
            "MTL0001.pem",
            &ca.manager("MTL0001", Some("MTL0001"), false),
        );
        write(
            "LVL0001.pem",
            &ca.manager("LVL0001", Some("LVL0001"), false),
        );
        // Named by its common name only, in lower case.
        write("cn-only.pem", &ca.manager("ddo0007", None, false));
        write("noname.pem", &ca.manager("someone", None, false));
        write("expired.pem", &ca.manager("MTL0001", Some("MTL0001"), true));
        write(
            "other-ca.pem",
            &other.manager("MTL0001", Some("MTL0001"), false),
        );
        let service = Arc::new(Counting {
            inner: Standalone::open(&dir.path().join("data")).unwrap(),
            calls: AtomicUsize::new(0),
        });
        let mut opts = ServeOptions {
            tls: Some(TlsFiles {
                ca: dir.path().join("ca.pem"),
                cert: dir.path().join("server.pem"),
                key: dir.path().join("server.key"),
            }),
            ..ServeOptions::default()
        };
        if let Some(limit) = max_queued_reply_bytes {
            opts.max_queued_reply_bytes = limit;
        }
        let server = serve(service.clone(), &opts).unwrap();
        Fixture {
            dir,
            service,
            server,
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A client presenting `cert` (a file of the fixture), or none.
    fn client(&self, cert: Option<&str>) -> ClinicClient {
        let opts = ClientOptions {
            connect_timeout: Duration::from_secs(5),
            call_timeout: Duration::from_secs(10),
            tls: Some(ClientTls {
                ca_file: self.path("ca.pem"),
                cert_file: cert.map(|c| self.path(c)),
            }),
            ..ClientOptions::default()
        };
        ClinicClient::connect(self.server.ior(), &opts).unwrap()
    }

    fn calls(&self) -> usize {
        self.service.calls.load(Ordering::SeqCst)
    }

    fn create(&self, c: &ClinicClient, manager: &str) -> Result<String, CallError> {
        c.create_n_record(manager, "Ada", "Roy", "junior", "active", "2024-01-02")
    }
}

/// What the store holds, read directly (not through TLS).
fn counts(f: &Fixture) -> String {
    match f.service.inner.call(Request::GetRecordCounts {
        manager_id: "MTL0001".into(),
    }) {
        Ok(Ok(dcms_core::Outcome::Counts(c))) => c.to_string(),
        other => panic!("counts: {other:?}"),
    }
}

#[test]
fn a_manager_with_its_certificate_calls_as_itself() {
    let f = Fixture::start(None);
    assert!(f.server.tls());
    assert!(
        f.server
            .corbaloc()
            .starts_with("corbaloc:ssliop:127.0.0.1:"),
        "{}",
        f.server.corbaloc()
    );
    let c = f.client(Some("MTL0001.pem"));
    let id = f.create(&c, "MTL0001").unwrap();
    assert!(id.starts_with("NR"), "{id}");
    // The manager ID is compared in its canonical form.
    assert_eq!(
        c.get_record_counts("mtl0001").unwrap(),
        "MTL 1, LVL 0, DDO 0"
    );
    // A certificate naming its manager by common name only will do.
    let cn = f.client(Some("cn-only.pem"));
    assert_eq!(
        cn.get_record_counts("DDO0007").unwrap(),
        "MTL 1, LVL 0, DDO 0"
    );
    // The ssliop corbaloc works too.
    let opts = ClientOptions {
        tls: Some(ClientTls {
            ca_file: f.path("ca.pem"),
            cert_file: Some(f.path("LVL0001.pem")),
        }),
        ..ClientOptions::default()
    };
    let by_url = ClinicClient::connect(&f.server.corbaloc(), &opts).unwrap();
    assert!(by_url
        .create_d_record("LVL0001", "B", "C", "1 rue", "5145550000", "surgeon", "lvl")
        .is_ok());
    assert_eq!(f.calls(), 4);
}

#[test]
fn a_certificate_for_another_manager_is_not_authorized_and_changes_nothing() {
    let f = Fixture::start(None);
    let c = f.client(Some("MTL0001.pem"));
    let before = counts(&f);
    for manager in ["LVL0001", "MTL0002", "garbage", ""] {
        let e = f.create(&c, manager).unwrap_err();
        match e.as_user() {
            Some(DcmsException::NotAuthorized { manager_id, reason }) => {
                assert_eq!(manager_id, manager);
                assert!(reason.contains("MTL0001"), "{reason}");
            }
            _ => panic!("{manager}: {e:?}"),
        }
        assert!(matches!(
            c.get_record_counts(manager).unwrap_err().as_user(),
            Some(DcmsException::NotAuthorized { .. })
        ));
    }
    // A certificate that names no manager authorizes none.
    let nobody = f.client(Some("noname.pem"));
    let e = nobody.get_record_counts("MTL0001").unwrap_err();
    match e.as_user() {
        Some(DcmsException::NotAuthorized { reason, .. }) => {
            assert!(reason.contains("names no manager"), "{reason}")
        }
        _ => panic!("{e:?}"),
    }
    assert_eq!(f.calls(), 0, "nothing reached the service");
    assert_eq!(counts(&f), before);
    // The same connection still serves its own manager.
    assert!(f.create(&c, "MTL0001").is_ok());
}

/// No certificate, an expired one, or one of another CA: the handshake
/// fails, the servant never runs. With TLS 1.3 the client's handshake
/// completes before the server checks its certificate, so the client may
/// have sent the request: COMM_FAILURE (completed maybe) or TRANSIENT.
#[test]
fn clients_without_a_valid_certificate_are_refused_in_the_handshake() {
    let f = Fixture::start(None);
    let before = counts(&f);
    for cert in [None, Some("expired.pem"), Some("other-ca.pem")] {
        let c = f.client(cert);
        let e = f.create(&c, "MTL0001").unwrap_err();
        let kind = e.as_system().and_then(|s| s.kind());
        assert!(
            matches!(
                kind,
                Some(SystemExceptionKind::COMM_FAILURE | SystemExceptionKind::TRANSIENT)
            ),
            "{cert:?}: {e:?}"
        );
    }
    // A client without TLS cannot reach the TLS-only endpoint: the IOR's
    // profile has no plain port, and a plain corbaloc to the TLS port is
    // not GIOP.
    let plain = ClinicClient::connect(f.server.ior(), &ClientOptions::default()).unwrap();
    assert!(plain
        .get_record_counts("MTL0001")
        .unwrap_err()
        .as_system()
        .is_some());
    let url = format!("corbaloc:iiop:127.0.0.1:{}/DCMS", f.server.port());
    let opts = ClientOptions {
        call_timeout: Duration::from_secs(3),
        ..ClientOptions::default()
    };
    let plain = ClinicClient::connect(&url, &opts).unwrap();
    assert!(plain
        .get_record_counts("MTL0001")
        .unwrap_err()
        .as_system()
        .is_some());
    assert_eq!(f.calls(), 0, "nothing reached the service");
    assert_eq!(counts(&f), before);
    // A good client is served after all that.
    assert!(f.create(&f.client(Some("MTL0001.pem")), "MTL0001").is_ok());
}

// --- the unread-reply limit over TLS ---------------------------------------

struct Cdr(Vec<u8>);

impl Cdr {
    fn align(&mut self, n: usize) {
        let pad = (n - self.0.len() % n) % n;
        self.0.resize(self.0.len() + pad, 0);
    }
    fn u32(&mut self, v: u32) {
        self.align(4);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32 + 1);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
    }
}

/// A GIOP 1.2 Request for `DCMS`, little-endian.
fn request(id: u32, op: &str, args: &[&str]) -> Vec<u8> {
    let mut b = Cdr(vec![0; 12]); // stands for the header, for alignment
    b.u32(id);
    b.0.extend_from_slice(&[3, 0, 0, 0]); // response expected, reserved
    b.0.extend_from_slice(&[0, 0]); // KeyAddr
    b.align(4);
    b.u32(4);
    b.0.extend_from_slice(b"DCMS");
    b.string(op);
    b.u32(0); // no service contexts
    b.align(8);
    for a in args {
        b.string(a);
    }
    let body = &b.0[12..];
    let mut m = b"GIOP".to_vec();
    m.extend_from_slice(&[1, 2, 1, 0]);
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend_from_slice(body);
    m
}

/// This process's resident memory (the server runs in it).
fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A raw TLS connection presenting `cert` (certificate and key, PEM).
fn raw_tls(
    port: u16,
    ca: &Path,
    cert: &Path,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for c in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let key = PrivateKeyDer::from_pem_file(cert).unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_client_auth_cert(chain, key)
    .unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap().to_owned();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

/// A TLS client that sends requests and never reads the replies is
/// disconnected once the replies waiting for it pass the limit, as over
/// plain IIOP, and memory stays flat: a reply the socket does not take
/// waits in the counted queue, not in rustls (which buffers without
/// limit).
#[test]
fn a_tls_client_that_never_reads_its_replies_is_cut_off() {
    let f = Fixture::start(Some(256 * 1024));
    let good = f.client(Some("MTL0001.pem"));
    let long = "x".repeat(95);
    for i in 0..30 {
        good.create_d_record(
            "MTL0001",
            &long,
            &format!("Big{i}"),
            &long,
            "5145550000",
            &long,
            "mtl",
        )
        .unwrap();
    }
    let before = rss_kib();
    let mut s = raw_tls(f.server.port(), &f.path("ca.pem"), &f.path("MTL0001.pem"));
    let mut sent = 0u32;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        let r = s
            .write_all(&request(sent, "listRecords", &["MTL0001", ""]))
            .and_then(|()| s.flush());
        if r.is_err() {
            break; // disconnected (or the socket's buffers are full)
        }
        sent += 1;
    }
    // Whatever reached this side, then the end of the connection: read
    // what is there until the server's close shows (EOF or reset), which
    // it must within a few seconds.
    let mut buf = vec![0u8; 64 * 1024];
    let mut got = 0usize;
    let t1 = Instant::now();
    let closed = loop {
        match s.read(&mut buf) {
            Ok(0) => break true,
            Ok(n) => got += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                break false
            }
            Err(_) => break true, // reset, or EOF without close_notify
        }
        if t1.elapsed() > Duration::from_secs(20) {
            break false;
        }
    };
    let after = rss_kib();
    eprintln!(
        "unread replies over TLS: {sent} requests sent, {got} bytes read back, closed {closed}, RSS {before} -> {after} KiB"
    );
    // Every request asks for a 12 KB reply: without the limit the replies
    // of the first few thousand alone would take tens of MB.
    assert!(
        after < before + 48 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );
    assert!(
        closed,
        "the server kept the connection of a client that does not read ({sent} requests)"
    );
    // The server goes on serving others.
    assert_eq!(
        good.get_record_counts("MTL0001").unwrap(),
        "MTL 30, LVL 0, DDO 0"
    );
}
