//! A cluster started for a benchmark: `dcms up` in a temporary folder, as a
//! child process, stopped (with all its processes) when dropped.

use crate::cmd::common::FaultArgs;
use anyhow::Context;
use dcms_corba::{ClientOptions, ClinicClient};
use dcms_node::config::ClusterConfig;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct SpawnedCluster {
    child: Child,
    pub dir: tempfile::TempDir,
    pub corbaloc: String,
    pub config: ClusterConfig,
}

impl SpawnedCluster {
    /// Starts `dcms up` with `replicas` replicas and waits until it answers.
    pub fn start(
        replicas: u64,
        sync: &str,
        faults: &FaultArgs,
        quiet: bool,
    ) -> anyhow::Result<SpawnedCluster> {
        let dir = tempfile::Builder::new().prefix("dcms-bench-").tempdir()?;
        let data: PathBuf = dir.path().join("data");
        let exe = std::env::current_exe()?;
        let mut cmd = Command::new(exe);
        cmd.args([
            "up",
            "--replicas",
            &replicas.to_string(),
            "--sync",
            sync,
            "--data-dir",
        ])
        .arg(&data)
        .args(faults_to_args(faults))
        .stdin(Stdio::null())
        .stdout(if quiet {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .stderr(if quiet {
            Stdio::null()
        } else {
            Stdio::inherit()
        });
        if quiet {
            cmd.env("RUST_LOG", "warn");
        }
        let child = cmd.spawn().context("starting dcms up")?;
        let config_path = data.join("cluster.toml");
        let deadline = Instant::now() + Duration::from_secs(30);
        let mut cluster = None;
        while Instant::now() < deadline {
            if let Ok(config) = ClusterConfig::load(&config_path) {
                cluster = Some(config);
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let config = cluster.context("dcms up wrote no configuration within 30 s")?;
        let corbaloc = format!("corbaloc:iiop:{}/DCMS", config.frontend.iiop);
        let spawned = SpawnedCluster {
            child,
            dir,
            corbaloc,
            config,
        };
        spawned.wait_ready(deadline)?;
        Ok(spawned)
    }

    /// Waits until a read goes through the whole path.
    fn wait_ready(&self, deadline: Instant) -> anyhow::Result<()> {
        let opts = ClientOptions {
            connect_timeout: Duration::from_millis(500),
            call_timeout: Duration::from_secs(2),
        };
        let mut last = String::new();
        while Instant::now() < deadline {
            match ClinicClient::connect(&self.corbaloc, &opts)
                .and_then(|c| c.get_record_counts("MTL0001"))
            {
                Ok(_) => return Ok(()),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        anyhow::bail!("the spawned cluster did not answer within 30 s: {last}")
    }

    /// PID of the process named `name` (`replica-3`, `frontend`), from its status file.
    pub fn pid_of(&self, name: &str) -> Option<u32> {
        dcms_node::status::read_all(&self.config.data_dir)
            .into_iter()
            .find(|s| s.name == name)
            .map(|s| s.pid)
    }
}

impl Drop for SpawnedCluster {
    fn drop(&mut self) {
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

pub fn faults_to_args(f: &FaultArgs) -> Vec<String> {
    f.to_args()
}
