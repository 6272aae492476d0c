//! The cluster's own certificate authority and the certificates of IIOP
//! over TLS with client certificates (`dcms up --tls`, `dcms cert issue`).
//!
//! Everything lives in `<data-dir>/tls/` ([`TlsDir`]), a folder for the
//! owner only (0700), each file 0600:
//!
//! | file | what |
//! | --- | --- |
//! | `ca.pem`, `ca.key` | the local CA: ECDSA P-256, self-signed, 10 years, may sign end entities only (path length 0) |
//! | `server.pem`, `server.key` | the front ends' certificate: CN `dcms front end`, a subject alternative name for every front end host (and `localhost`), extended key usage `serverAuth` |
//! | `managers/ID.pem` | manager `ID`'s certificate followed by its key (the form omniORB's `-ORBsslKeyFile` and `dcms client --cert` read): CN = `ID`, URI subject alternative name `urn:dcms:manager:ID`, extended key usage `clientAuth` |
//!
//! A manager ID is parsed with [`ManagerId::parse`] before anything is
//! issued, and written in its canonical form. [`ensure`] is what a start
//! calls: it creates what is missing and keeps what is there (a server
//! certificate that does not name every front end host, or that expires
//! within [`RENEW_BEFORE_DAYS`], is issued again). `dcms init` can call
//! the same functions.

use dcms_core::ManagerId;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use std::path::{Path, PathBuf};
use time::{Duration, OffsetDateTime};

/// The CA's validity, in days.
pub const CA_DAYS: u32 = 3650;
/// A server certificate's validity, in days.
pub const SERVER_DAYS: u32 = 825;
/// A manager certificate's validity unless told otherwise, in days.
pub const MANAGER_DAYS: u32 = 365;
/// A server certificate that expires within this many days is issued
/// again at the next start.
pub const RENEW_BEFORE_DAYS: i64 = 30;
/// The managers whose certificates a new CA comes with (`dcms up --tls`):
/// the first manager of each clinic.
pub const DEFAULT_MANAGERS: [&str; 3] = ["MTL0001", "LVL0001", "DDO0001"];
/// The prefix of a manager's URI subject alternative name (the servant
/// reads it back: `dcms_corba::auth`).
pub const MANAGER_URN_PREFIX: &str = "urn:dcms:manager:";

/// Why certificates could not be made, read or written.
#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{what}: {source}")]
    Certificate {
        what: String,
        #[source]
        source: rcgen::Error,
    },
    #[error("{path}: {why}")]
    Unreadable { path: PathBuf, why: String },
    #[error("invalid manager ID {id:?}: {why}")]
    ManagerId { id: String, why: &'static str },
    #[error("no certificate authority in {0}: `dcms up --tls` creates one")]
    NoCa(PathBuf),
    #[error(
        "{path} holds a key but is readable by others (mode {mode:03o}): run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
    #[error("a certificate's validity must be 1 day or more")]
    NoDays,
}

type Result<T> = std::result::Result<T, PkiError>;

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> PkiError {
    let what = what.into();
    move |source| PkiError::Io { what, source }
}

fn cert_err(what: &str) -> impl FnOnce(rcgen::Error) -> PkiError + '_ {
    move |source| PkiError::Certificate {
        what: what.to_string(),
        source,
    }
}

/// The files of `<data-dir>/tls/`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsDir {
    root: PathBuf,
}

impl TlsDir {
    /// The folder `root` itself.
    pub fn new(root: PathBuf) -> TlsDir {
        TlsDir { root }
    }

    /// `<data_dir>/tls`.
    pub fn of_data_dir(data_dir: &Path) -> TlsDir {
        TlsDir {
            root: data_dir.join("tls"),
        }
    }

    pub fn path(&self) -> &Path {
        &self.root
    }

    pub fn ca_cert(&self) -> PathBuf {
        self.root.join("ca.pem")
    }

    pub fn ca_key(&self) -> PathBuf {
        self.root.join("ca.key")
    }

    pub fn server_cert(&self) -> PathBuf {
        self.root.join("server.pem")
    }

    pub fn server_key(&self) -> PathBuf {
        self.root.join("server.key")
    }

    pub fn managers(&self) -> PathBuf {
        self.root.join("managers")
    }

    /// `managers/ID.pem`: the manager's certificate and key.
    pub fn manager(&self, id: ManagerId) -> PathBuf {
        self.managers().join(format!("{id}.pem"))
    }

    /// The `[tls]` table of a front end serving with this folder's CA and
    /// server certificate.
    pub fn config(&self) -> crate::config::TlsConfig {
        crate::config::TlsConfig {
            ca: self.ca_cert(),
            cert: self.server_cert(),
            key: self.server_key(),
        }
    }
}

/// The names a front end certificate for `iiops` carries: `localhost`,
/// `127.0.0.1` and each address's IP, once each.
pub fn server_hosts(iiops: &[std::net::SocketAddr]) -> Vec<String> {
    let mut hosts = vec!["localhost".to_string(), "127.0.0.1".to_string()];
    for a in iiops {
        let ip = a.ip().to_string();
        if !hosts.contains(&ip) {
            hosts.push(ip);
        }
    }
    hosts
}

/// When a certificate is valid.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Validity {
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
}

impl Validity {
    /// From five minutes ago (clocks differ a little) for `days` days.
    pub fn days(days: u32) -> Result<Validity> {
        if days == 0 {
            return Err(PkiError::NoDays);
        }
        let now = OffsetDateTime::now_utc();
        Ok(Validity {
            not_before: now - Duration::minutes(5),
            not_after: now + Duration::days(days.into()),
        })
    }

    /// Exactly these dates (tests make expired certificates with it).
    pub fn between(not_before: OffsetDateTime, not_after: OffsetDateTime) -> Validity {
        Validity {
            not_before,
            not_after,
        }
    }

    fn apply(&self, p: &mut CertificateParams) {
        p.not_before = self.not_before;
        p.not_after = self.not_after;
    }
}

/// A certificate and its private key, PEM.
#[derive(Clone, Debug)]
pub struct Issued {
    pub cert_pem: String,
    pub key_pem: String,
}

impl Issued {
    /// The certificate followed by the key, one file (omniORB's key file).
    pub fn combined(&self) -> String {
        format!("{}{}", self.cert_pem, self.key_pem)
    }
}

/// A certificate authority that can issue.
pub struct Ca {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca").finish_non_exhaustive()
    }
}

impl Ca {
    /// A new CA named `name` (its subject's common name).
    pub fn generate(name: &str, validity: Validity) -> Result<Ca> {
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("CA"))?;
        p.distinguished_name.push(DnType::CommonName, name);
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        validity.apply(&mut p);
        let key = KeyPair::generate().map_err(cert_err("CA key"))?;
        let cert = p.self_signed(&key).map_err(cert_err("CA certificate"))?;
        Ok(Ca {
            cert_pem: cert.pem(),
            issuer: Issuer::new(p, key),
        })
    }

    /// The CA of `dir` (`ca.pem`, `ca.key`).
    pub fn load(dir: &TlsDir) -> Result<Ca> {
        let (cert_path, key_path) = (dir.ca_cert(), dir.ca_key());
        if !cert_path.exists() || !key_path.exists() {
            return Err(PkiError::NoCa(dir.path().to_path_buf()));
        }
        check_private(&key_path)?;
        let cert_pem = read(&cert_path)?;
        let key = KeyPair::from_pem(&read(&key_path)?).map_err(|e| PkiError::Unreadable {
            path: key_path.clone(),
            why: e.to_string(),
        })?;
        let issuer =
            Issuer::from_ca_cert_pem(&cert_pem, key).map_err(|e| PkiError::Unreadable {
                path: cert_path.clone(),
                why: e.to_string(),
            })?;
        Ok(Ca { cert_pem, issuer })
    }

    /// The CA's certificate, PEM (what clients trust).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The CA's private key, PEM.
    pub fn key_pem(&self) -> String {
        self.issuer.key().serialize_pem()
    }

    /// A server certificate naming `hosts` (DNS names or IP addresses).
    pub fn issue_server(&self, hosts: &[String], validity: Validity) -> Result<Issued> {
        let mut p = CertificateParams::new(hosts.to_vec()).map_err(cert_err("server names"))?;
        p.distinguished_name
            .push(DnType::CommonName, "dcms front end");
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        p.use_authority_key_identifier_extension = true;
        validity.apply(&mut p);
        self.sign(p, "server certificate")
    }

    /// Manager `id`'s client certificate: CN `id`, URI SAN
    /// `urn:dcms:manager:id`, extended key usage `clientAuth`.
    pub fn issue_manager(&self, id: ManagerId, validity: Validity) -> Result<Issued> {
        let id = id.to_string();
        let mut p = CertificateParams::new(Vec::<String>::new()).map_err(cert_err("manager"))?;
        p.distinguished_name.push(DnType::CommonName, id.as_str());
        let uri = format!("{MANAGER_URN_PREFIX}{id}")
            .try_into()
            .map_err(cert_err("manager URI"))?;
        p.subject_alt_names.push(SanType::URI(uri));
        p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        p.use_authority_key_identifier_extension = true;
        validity.apply(&mut p);
        self.sign(p, "manager certificate")
    }

    fn sign(&self, p: CertificateParams, what: &str) -> Result<Issued> {
        let key = KeyPair::generate().map_err(cert_err(what))?;
        let cert = p.signed_by(&key, &self.issuer).map_err(cert_err(what))?;
        Ok(Issued {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        })
    }

    /// Writes `ca.pem` and `ca.key` in `dir` (created private).
    pub fn write(&self, dir: &TlsDir) -> Result<()> {
        private_dir(dir.path())?;
        write(&dir.ca_key(), &self.key_pem())?;
        write(&dir.ca_cert(), &self.cert_pem)
    }
}

/// Parses a manager ID for a certificate: [`ManagerId::parse`].
pub fn manager_id(text: &str) -> Result<ManagerId> {
    ManagerId::parse(text).map_err(|why| PkiError::ManagerId {
        id: text.to_string(),
        why,
    })
}

/// Issues manager `id`'s certificate with `ca` and writes it (with its
/// key) to `managers/ID.pem`, replacing an older one. Returns the path.
pub fn write_manager(ca: &Ca, dir: &TlsDir, id: ManagerId, validity: Validity) -> Result<PathBuf> {
    let issued = ca.issue_manager(id, validity)?;
    private_dir(&dir.managers())?;
    let path = dir.manager(id);
    write(&path, &issued.combined())?;
    Ok(path)
}

/// What [`ensure`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Setup {
    /// A new CA was made.
    pub created_ca: bool,
    /// The server certificate was (re)issued; why.
    pub server_issued: Option<String>,
    /// Manager certificates issued (with a new CA).
    pub managers: Vec<PathBuf>,
}

/// Makes `dir` ready to serve TLS for front ends on `hosts`: the CA (made
/// if missing, then with certificates for `first_managers`), and a server
/// certificate naming every host of `hosts` (issued if missing, if it does
/// not name them all, or if it expires within [`RENEW_BEFORE_DAYS`]).
pub fn ensure(dir: &TlsDir, hosts: &[String], first_managers: &[ManagerId]) -> Result<Setup> {
    private_dir(dir.path())?;
    let mut setup = Setup::default();
    let ca = if dir.ca_cert().exists() || dir.ca_key().exists() {
        Ca::load(dir)?
    } else {
        let ca = Ca::generate("dcms local CA", Validity::days(CA_DAYS)?)?;
        ca.write(dir)?;
        setup.created_ca = true;
        ca
    };
    let why = if setup.created_ca || !dir.server_cert().exists() || !dir.server_key().exists() {
        Some("new".to_string())
    } else {
        check_private(&dir.server_key())?;
        let names = certificate_names(&dir.server_cert())?;
        let missing: Vec<&String> = hosts.iter().filter(|h| !names.hosts.contains(h)).collect();
        if !missing.is_empty() {
            Some(format!("it did not name {missing:?}"))
        } else if names.not_after - OffsetDateTime::now_utc() < Duration::days(RENEW_BEFORE_DAYS) {
            Some(format!("it expires on {}", names.not_after.date()))
        } else {
            None
        }
    };
    if let Some(why) = why {
        let issued = ca.issue_server(hosts, Validity::days(SERVER_DAYS)?)?;
        write(&dir.server_key(), &issued.key_pem)?;
        write(&dir.server_cert(), &issued.cert_pem)?;
        setup.server_issued = Some(why);
    }
    if setup.created_ca {
        for id in first_managers {
            setup
                .managers
                .push(write_manager(&ca, dir, *id, Validity::days(MANAGER_DAYS)?)?);
        }
    }
    Ok(setup)
}

/// What a certificate names, read back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateNames {
    /// Its subject's common names.
    pub common_names: Vec<String>,
    /// Its DNS names and IP addresses (as text).
    pub hosts: Vec<String>,
    /// Its URI names.
    pub uris: Vec<String>,
    pub not_after: OffsetDateTime,
}

/// The names in the first certificate of the PEM file `path`.
pub fn certificate_names(path: &Path) -> Result<CertificateNames> {
    use x509_parser::extensions::GeneralName;
    let unreadable = |why: String| PkiError::Unreadable {
        path: path.to_path_buf(),
        why,
    };
    let text = std::fs::read(path).map_err(io(format!("reading {}", path.display())))?;
    let (_, pem) =
        x509_parser::pem::parse_x509_pem(&text).map_err(|e| unreadable(e.to_string()))?;
    let cert = pem.parse_x509().map_err(|e| unreadable(e.to_string()))?;
    let mut names = CertificateNames {
        common_names: cert
            .subject()
            .iter_common_name()
            .filter_map(|cn| cn.as_str().ok().map(str::to_owned))
            .collect(),
        hosts: Vec::new(),
        uris: Vec::new(),
        not_after: cert.validity().not_after.to_datetime(),
    };
    if let Some(san) = cert
        .subject_alternative_name()
        .map_err(|e| unreadable(e.to_string()))?
    {
        for name in &san.value.general_names {
            match name {
                GeneralName::DNSName(d) => names.hosts.push(d.to_string()),
                GeneralName::IPAddress(ip) => match ip.len() {
                    4 => names.hosts.push(
                        std::net::Ipv4Addr::from(<[u8; 4]>::try_from(*ip).unwrap()).to_string(),
                    ),
                    16 => names.hosts.push(
                        std::net::Ipv6Addr::from(<[u8; 16]>::try_from(*ip).unwrap()).to_string(),
                    ),
                    _ => {}
                },
                GeneralName::URI(u) => names.uris.push(u.to_string()),
                _ => {}
            }
        }
    }
    Ok(names)
}

/// Refuses a key file that others can read.
pub fn check_private(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(io(format!("reading {}", path.display())))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        return Err(PkiError::TooOpen {
            path: path.to_path_buf(),
            mode,
        });
    }
    Ok(())
}

fn private_dir(dir: &Path) -> Result<()> {
    crate::config::create_private_dir(dir).map_err(io(format!("creating {}", dir.display())))
}

fn write(path: &Path, text: &str) -> Result<()> {
    crate::config::write_private(path, text.as_bytes())
        .map_err(io(format!("writing {}", path.display())))
}

fn read(path: &Path) -> Result<String> {
    std::fs::read_to_string(path).map_err(io(format!("reading {}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    fn hosts() -> Vec<String> {
        vec!["localhost".into(), "127.0.0.1".into()]
    }

    fn mtl() -> ManagerId {
        manager_id("MTL0001").unwrap()
    }

    #[test]
    fn a_first_start_makes_the_ca_the_server_and_the_first_managers() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TlsDir::of_data_dir(tmp.path());
        let firsts: Vec<ManagerId> = DEFAULT_MANAGERS
            .iter()
            .map(|m| manager_id(m).unwrap())
            .collect();
        let setup = ensure(&dir, &hosts(), &firsts).unwrap();
        assert!(setup.created_ca);
        assert_eq!(setup.server_issued.as_deref(), Some("new"));
        assert_eq!(setup.managers.len(), 3);
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&dir.managers()), 0o700);
        for f in [
            dir.ca_cert(),
            dir.ca_key(),
            dir.server_cert(),
            dir.server_key(),
        ]
        .into_iter()
        .chain(setup.managers.iter().cloned())
        {
            assert_eq!(mode(&f), 0o600, "{}", f.display());
        }
        let server = certificate_names(&dir.server_cert()).unwrap();
        assert_eq!(server.hosts, hosts());
        assert_eq!(server.common_names, ["dcms front end"]);
        let m = certificate_names(&dir.manager(mtl())).unwrap();
        assert_eq!(m.common_names, ["MTL0001"]);
        assert_eq!(m.uris, ["urn:dcms:manager:MTL0001"]);
        let pem = std::fs::read_to_string(dir.manager(mtl())).unwrap();
        assert!(pem.starts_with("-----BEGIN CERTIFICATE-----"), "{pem}");
        assert!(pem.contains("-----BEGIN PRIVATE KEY-----"), "{pem}");

        // The next start keeps everything.
        let before = std::fs::read(dir.server_cert()).unwrap();
        let again = ensure(&dir, &hosts(), &firsts).unwrap();
        assert_eq!(again, Setup::default());
        assert_eq!(std::fs::read(dir.server_cert()).unwrap(), before);

        // A new front end host: a new server certificate, same CA.
        let ca_before = std::fs::read(dir.ca_cert()).unwrap();
        let mut more = hosts();
        more.push("10.1.2.3".into());
        let grown = ensure(&dir, &more, &firsts).unwrap();
        assert!(!grown.created_ca);
        assert!(grown.server_issued.unwrap().contains("10.1.2.3"));
        assert!(grown.managers.is_empty());
        assert_eq!(certificate_names(&dir.server_cert()).unwrap().hosts, more);
        assert_eq!(std::fs::read(dir.ca_cert()).unwrap(), ca_before);
    }

    #[test]
    fn a_ca_read_back_issues_certificates_it_signed() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TlsDir::of_data_dir(tmp.path());
        ensure(&dir, &hosts(), &[]).unwrap();
        let ca = Ca::load(&dir).unwrap();
        let path = write_manager(
            &ca,
            &dir,
            manager_id("ddo0042").unwrap(),
            Validity::days(2).unwrap(),
        )
        .unwrap();
        assert_eq!(path, dir.managers().join("DDO0042.pem"), "the canonical ID");
        let names = certificate_names(&path).unwrap();
        assert_eq!(names.common_names, ["DDO0042"]);
        let days = (names.not_after - OffsetDateTime::now_utc()).whole_days();
        assert!((1..=2).contains(&days), "{days}");
        // Signed by the CA read back.
        verify(&dir, &path).unwrap();
        // A certificate of another CA does not.
        let other = Ca::generate("other", Validity::days(1).unwrap()).unwrap();
        let stranger = tmp.path().join("stranger.pem");
        std::fs::write(
            &stranger,
            other
                .issue_manager(mtl(), Validity::days(1).unwrap())
                .unwrap()
                .combined(),
        )
        .unwrap();
        assert!(verify(&dir, &stranger)
            .unwrap_err()
            .contains("UnknownIssuer"));
    }

    /// Whether the certificate in `pem` is issued and signed by the CA of
    /// `dir` (the handshake's full check is in `tests/tls.rs`).
    fn verify(dir: &TlsDir, pem: &Path) -> std::result::Result<(), String> {
        let ca = x509_parser::pem::parse_x509_pem(&std::fs::read(dir.ca_cert()).unwrap())
            .unwrap()
            .1
            .contents;
        let leaf = x509_parser::pem::parse_x509_pem(&std::fs::read(pem).unwrap())
            .unwrap()
            .1
            .contents;
        let (_, ca_cert) = x509_parser::parse_x509_certificate(&ca).unwrap();
        let (_, leaf_cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
        if leaf_cert.issuer() != ca_cert.subject() {
            return Err("UnknownIssuer".into());
        }
        leaf_cert
            .verify_signature(Some(ca_cert.public_key()))
            .map_err(|e| format!("UnknownIssuer: {e}"))
    }

    #[test]
    fn bad_input_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = TlsDir::of_data_dir(tmp.path());
        assert!(matches!(Ca::load(&dir), Err(PkiError::NoCa(_))));
        let err = manager_id("XYZ0001").unwrap_err().to_string();
        assert!(err.contains("XYZ0001") && err.contains("clinic"), "{err}");
        assert!(matches!(Validity::days(0), Err(PkiError::NoDays)));
        ensure(&dir, &hosts(), &[]).unwrap();
        std::fs::set_permissions(dir.ca_key(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = Ca::load(&dir).unwrap_err().to_string();
        assert!(err.contains("chmod 600"), "{err}");
    }
}
