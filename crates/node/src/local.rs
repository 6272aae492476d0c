//! A local cluster started as child processes: `dcms up` in a folder, waited
//! for until the whole path answers, stopped with all its processes when
//! dropped. `dcms bench --spawn` and the multi-process tests use it.

use crate::config::ClusterConfig;
use dcms_corba::{ClientOptions, ClinicClient};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct LocalCluster {
    child: Child,
    _dir: Option<tempfile::TempDir>,
    pub data_dir: PathBuf,
    pub corbaloc: String,
    pub config: ClusterConfig,
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
    /// through the front end, the leader and back.
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
            config: ClusterConfig::local(0, 1, PathBuf::new(), String::new(), String::new()),
        };
        loop {
            if let Ok(config) = ClusterConfig::load(&config_path) {
                partial.corbaloc = format!("corbaloc:iiop:{}/DCMS", config.frontend.iiop);
                partial.config = config;
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

    /// Waits until `getRecordCounts` succeeds.
    pub fn wait_ready(&mut self, deadline: Instant) -> Result<(), LocalClusterError> {
        let opts = ClientOptions {
            connect_timeout: Duration::from_millis(500),
            call_timeout: Duration::from_secs(2),
            ..ClientOptions::default()
        };
        let mut last = String::new();
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(LocalClusterError::NotReady(format!(
                    "dcms up exited: {status}"
                )));
            }
            match ClinicClient::connect(&self.corbaloc, &opts)
                .and_then(|c| c.get_record_counts("MTL0001"))
            {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        Err(LocalClusterError::NotReady(format!(
            "the cluster did not answer within 30 s: {last}"
        )))
    }

    /// A client of the front end.
    pub fn client(&self) -> ClinicClient {
        ClinicClient::connect(&self.corbaloc, &ClientOptions::default())
            .expect("a corbaloc reference always parses")
    }

    /// PID of the process named `name` (`replica-3`, `frontend`), from its status file.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        crate::status::read_all(&self.data_dir)
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.pid)
    }

    /// Stops the cluster (SIGTERM to `dcms up`, which stops its processes)
    /// and waits for it, killing it after 5 s.
    pub fn stop(&mut self) {
        // SAFETY: kill(2) with a PID we own; no memory is touched.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for LocalCluster {
    fn drop(&mut self) {
        self.stop();
    }
}
