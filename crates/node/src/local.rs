//! A local cluster started as child processes: `dcms up` in a folder, waited
//! for until the whole path answers, stopped with all its processes when
//! dropped. `dcms bench --spawn` and the multi-process tests use it; and
//! [`free_port`], the loopback ports `dcms up` and the tests pick.

use crate::config::ClusterConfig;
use dcms_corba::{ClientOptions, ClientTls, ClinicClient};
use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A free port on 127.0.0.1 (TCP and UDP alike), chosen by the kernel,
/// and not in `taken` (ports of processes that are not running yet).
pub fn free_port(taken: &[u16]) -> std::io::Result<u16> {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if !taken.contains(&port) && UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}

pub struct LocalCluster {
    child: Child,
    _dir: Option<tempfile::TempDir>,
    pub data_dir: PathBuf,
    /// The group corbaloc: every front end's address
    /// (`corbaloc:iiop::H1:P1,iiop::H2:P2/DCMS`).
    pub corbaloc: String,
    pub config: ClusterConfig,
    /// Started with `--tls`: how its clients connect (the cluster's CA,
    /// manager MTL0001's certificate).
    pub tls: Option<ClientTls>,
}

#[derive(Debug, thiserror::Error)]
pub enum LocalClusterError {
    #[error("starting {exe}: {source}")]
    Spawn {
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    NotReady(String),
    #[error("temporary folder: {0}")]
    TempDir(#[source] std::io::Error),
}

impl LocalCluster {
    /// Runs `exe up --data-dir DIR <args>` (DIR: a new temporary folder
    /// unless `data_dir` is given) and waits up to 30 s until a read goes
    /// through every front end, the leader and back.
    pub fn start(
        exe: &Path,
        data_dir: Option<&Path>,
        args: &[String],
        quiet: bool,
    ) -> Result<LocalCluster, LocalClusterError> {
        Self::start_logged(exe, data_dir, args, quiet, None)
    }

    /// Like [`LocalCluster::start`], with every process's log lines in `log`.
    pub fn start_logged(
        exe: &Path,
        data_dir: Option<&Path>,
        args: &[String],
        quiet: bool,
        log: Option<&Path>,
    ) -> Result<LocalCluster, LocalClusterError> {
        let (dir, data_dir) = match data_dir {
            Some(d) => (None, d.to_path_buf()),
            None => {
                let t = tempfile::Builder::new()
                    .prefix("dcms-cluster-")
                    .tempdir()
                    .map_err(LocalClusterError::TempDir)?;
                let d = t.path().join("data");
                (Some(t), d)
            }
        };
        let mut cmd = Command::new(exe);
        cmd.arg("up")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .stdin(Stdio::null());
        if quiet {
            cmd.stdout(Stdio::null())
                .stderr(Stdio::null())
                .env("RUST_LOG", "warn");
        }
        if let Some(log) = log {
            let file = std::fs::File::create(log).map_err(LocalClusterError::TempDir)?;
            let err = file.try_clone().map_err(LocalClusterError::TempDir)?;
            cmd.stdout(file).stderr(err).env("RUST_LOG", "info");
        }
        let child = cmd.spawn().map_err(|source| LocalClusterError::Spawn {
            exe: exe.to_path_buf(),
            source,
        })?;
        let deadline = Instant::now() + Duration::from_secs(30);
        let config_path = data_dir.join("cluster.toml");
        let mut partial = LocalCluster {
            child,
            _dir: dir,
            data_dir,
            corbaloc: String::new(),
            config: ClusterConfig::local(0, 1, PathBuf::new(), String::new(), vec![String::new()]),
            tls: None,
        };
        if args.iter().any(|a| a == "--tls") {
            let tls = crate::pki::TlsDir::of_data_dir(&partial.data_dir);
            partial.tls = Some(ClientTls {
                ca_file: tls.ca_cert(),
                cert_file: Some(tls.managers().join("MTL0001.pem")),
            });
        }
        loop {
            if let Ok(config) = ClusterConfig::load(&config_path) {
                partial.set_config(config);
                break;
            }
            if Instant::now() > deadline {
                return Err(LocalClusterError::NotReady(format!(
                    "no configuration at {} within 30 s",
                    config_path.display()
                )));
            }
            if let Ok(Some(status)) = partial.child.try_wait() {
                return Err(LocalClusterError::NotReady(format!(
                    "dcms up exited: {status}"
                )));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        partial.wait_ready(deadline)?;
        Ok(partial)
    }

    fn set_config(&mut self, config: ClusterConfig) {
        self.config = config;
        self.corbaloc = self.corbaloc_of(&self.config.frontend_iiops());
    }

    /// Waits until `getRecordCounts` succeeds through every front end.
    /// The configuration is read again meanwhile: `dcms up` rewrites an
    /// older one (adding front ends) before it starts any process.
    pub fn wait_ready(&mut self, deadline: Instant) -> Result<(), LocalClusterError> {
        let opts = ClientOptions {
            connect_timeout: Duration::from_millis(500),
            call_timeout: Duration::from_secs(2),
            tls: self.tls.clone(),
            ..ClientOptions::default()
        };
        let config_path = self.data_dir.join("cluster.toml");
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(LocalClusterError::NotReady(format!(
                    "dcms up exited: {status}"
                )));
            }
            if let Ok(config) = ClusterConfig::load(&config_path) {
                if config != self.config {
                    self.set_config(config);
                }
            }
            let not_ready = self.config.frontends.iter().find_map(|f| {
                ClinicClient::connect(&self.frontend_corbaloc(f.id)?, &opts)
                    .and_then(|c| c.get_record_counts("MTL0001"))
                    .err()
                    .map(|e| format!("front end {}: {e}", f.id))
            });
            // Every replica runs too (a replica that cannot start, say on
            // a UDP port another process took, would otherwise go unseen
            // while the other two make a majority).
            let not_ready = not_ready.or_else(|| self.replica_not_running());
            match not_ready {
                None => return Ok(()),
                Some(e) => last = e,
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(LocalClusterError::NotReady(format!(
            "the cluster did not answer within 30 s: {last}"
        )))
    }

    /// The first replica without a fresh status file (written five times a
    /// second while its event loop runs), if any.
    fn replica_not_running(&self) -> Option<String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let statuses = crate::status::read_all(&self.data_dir);
        self.config.replicas.iter().find_map(|r| {
            let name = format!("replica-{}", r.id);
            let fresh = statuses
                .iter()
                .any(|s| s.name == name && now.saturating_sub(s.updated_ms) < 1_000);
            (!fresh).then(|| format!("{name} is not running"))
        })
    }

    /// A client of the group reference (any front end).
    pub fn client(&self) -> ClinicClient {
        let opts = ClientOptions {
            tls: self.tls.clone(),
            ..ClientOptions::default()
        };
        ClinicClient::connect(&self.corbaloc, &opts).expect("a corbaloc reference always parses")
    }

    /// The group IOR (as `dcms up` writes it to `<data-dir>/dcms.ior`).
    pub fn group_ior(&self) -> String {
        match self.tls {
            None => dcms_corba::group_ior(&self.config.frontend_iiops()),
            Some(_) => dcms_corba::group_ior_tls(&self.config.frontend_iiops()),
        }
    }

    /// The corbaloc of `addrs`: `ssliop` with `--tls`.
    fn corbaloc_of(&self, addrs: &[std::net::SocketAddr]) -> String {
        match self.tls {
            None => dcms_corba::group_corbaloc(addrs),
            Some(_) => dcms_corba::group_corbaloc_tls(addrs),
        }
    }

    /// Front end `id`'s own corbaloc (`corbaloc:iiop:HOST:PORT/DCMS`), if
    /// there is such a front end.
    pub fn frontend_corbaloc(&self, id: u64) -> Option<String> {
        let f = self.config.frontend(id).ok()?;
        Some(self.corbaloc_of(&[f.iiop]))
    }

    /// Requests front end `id` has taken so far, from its status file.
    pub fn frontend_requests(&self, id: u64) -> Option<u64> {
        crate::status::read_all(&self.data_dir)
            .into_iter()
            .find(|s| s.name == format!("frontend-{id}"))
            .and_then(|s| s.stats["requests"].as_u64())
    }

    /// PID of the process named `name` (`replica-3`, `frontend-100`), from
    /// its status file.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        crate::status::read_all(&self.data_dir)
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.pid)
    }

    /// Stops the cluster (SIGTERM to `dcms up`, which stops its processes)
    /// and waits for it, killing it after 5 s.
    pub fn stop(&mut self) {
        terminate(&mut self.child, Duration::from_secs(5));
    }
}

/// Stops `child`: SIGTERM, then SIGKILL if it has not exited after
/// `grace`; waits for it either way. False when it had to be killed.
pub fn terminate(child: &mut Child, grace: Duration) -> bool {
    if let Ok(Some(_)) = child.try_wait() {
        // Already reaped: its PID may be another process's by now.
        return true;
    }
    // SAFETY: kill(2) with the PID of a child we own (not yet reaped, so
    // the PID is still ours); no memory is touched.
    unsafe {
        libc::kill(child.id() as i32, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = child.kill();
    let _ = child.wait();
    false
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
