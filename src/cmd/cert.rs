//! `dcms cert`: the certificates of IIOP over TLS (`dcms up --tls`,
//! `dcms init --tls`), made by the cluster's own CA (`dcms_node::pki`).
//!
//! - `dcms cert issue --manager ID`: a client certificate for manager `ID`
//!   (CN `ID`, URI name `urn:dcms:manager:ID`, `clientAuth`), written with
//!   its key to `<tls-dir>/managers/ID.pem` (0600), the form `dcms client
//!   --cert` and omniORB's `-ORBsslKeyFile` read. A front end runs a
//!   request over TLS only for the manager its client's certificate names.
//! - `dcms cert show FILE`: what a certificate names and until when.
//!
//! The TLS folder is `<data-dir>/tls` (`dcms up`), or `--tls-dir` (`dcms
//! init --tls` writes `<out>/tls`, where the CA's key stays).

use anyhow::Context;
use dcms_node::pki::{self, Ca, TlsDir, Validity};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CertArgs {
    #[command(subcommand)]
    op: CertOp,
}

/// Where the CA is.
#[derive(clap::Args, Debug)]
struct Where {
    /// The cluster's data folder; its TLS files are in `tls/` there.
    #[arg(long, env = "DCMS_DATA_DIR", default_value = "dcms-data")]
    data_dir: PathBuf,
    /// The TLS folder itself (`ca.pem`, `ca.key`, `managers/`), instead of
    /// `<data-dir>/tls` (`dcms init --tls` makes `<out>/tls`).
    #[arg(long)]
    tls_dir: Option<PathBuf>,
}

impl Where {
    fn dir(&self) -> TlsDir {
        match &self.tls_dir {
            Some(d) => TlsDir::new(d.clone()),
            None => TlsDir::of_data_dir(&self.data_dir),
        }
    }
}

#[derive(clap::Subcommand, Debug)]
enum CertOp {
    /// A client certificate for a manager, signed by the cluster's CA.
    Issue {
        /// The manager (clinic code and four digits, like MTL0001).
        #[arg(long)]
        manager: String,
        /// Days the certificate is valid (1 or more).
        #[arg(long, default_value_t = pki::MANAGER_DAYS)]
        days: u32,
        #[command(flatten)]
        at: Where,
    },
    /// What a certificate file names (common names, hosts, URIs) and until
    /// when it is valid.
    Show {
        /// A PEM file (its first certificate is read).
        file: PathBuf,
    },
}

pub fn run(args: CertArgs) -> anyhow::Result<()> {
    match args.op {
        CertOp::Issue { manager, days, at } => {
            let id = pki::manager_id(&manager).context("--manager")?;
            let validity = Validity::days(days).context("--days")?;
            let dir = at.dir();
            let ca = Ca::load(&dir)?;
            let path = pki::write_manager(&ca, &dir, id, validity)?;
            let names = pki::certificate_names(&path)?;
            println!(
                "dcms: {} holds manager {id}'s certificate and key (valid until {})",
                path.display(),
                names.not_after.date()
            );
            println!(
                "dcms: use it with  dcms client --tls-ca {} --cert {} ... --manager {id}",
                dir.ca_cert().display(),
                path.display()
            );
            println!(
                "dcms: omniORB:     -ORBsslCAFile {} -ORBsslKeyFile {} -ORBsslKeyPassword any",
                dir.ca_cert().display(),
                path.display()
            );
            Ok(())
        }
        CertOp::Show { file } => {
            let names = pki::certificate_names(&file)?;
            println!("common names  {}", names.common_names.join(", "));
            println!("hosts         {}", names.hosts.join(", "));
            println!("URIs          {}", names.uris.join(", "));
            println!("valid until   {}", names.not_after);
            Ok(())
        }
    }
}
