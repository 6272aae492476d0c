//! The harness the CORBA front-door tests share (`tests/corba_interop.rs`
//! and `tests/corba_robustness.rs`, each with `mod support;`): real
//! processes on 127.0.0.1, each killed when its guard drops, also when a
//! test fails.
//!
//! - here: child processes ([`Proc`]), `dcms frontend --standalone`
//!   ([`Frontend`]) and replicated clusters ([`replicated_cluster`],
//!   [`Replicated`]), the front ends the tests aim at ([`Target`]);
//! - [`omniorb`]: the omniORB tools and Python clients of the virtualenv;
//! - [`giop`]: hand-made GIOP 1.2 messages on raw sockets.

// Each test target uses a part of the harness.
#![allow(dead_code)]

pub mod giop;
pub mod omniorb;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use dcms_corba::{ClientOptions, ClinicClient};
use dcms_node::local::LocalCluster;

pub const DCMS: &str = env!("CARGO_BIN_EXE_dcms");

pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A child process killed on drop. Children started with [`grouped`] lead
/// their own process group, and the whole group is killed: the omniORB
/// tools in the virtualenv are Python wrappers that start the real program
/// as a child of their own.
pub struct Proc {
    pub child: Child,
    pub name: &'static str,
}

/// Makes the child the leader of a new process group.
pub fn grouped(c: &mut Command) -> &mut Command {
    use std::os::unix::process::CommandExt;
    c.process_group(0)
}

impl Drop for Proc {
    fn drop(&mut self) {
        // The group has the child's pid as its id; killing a group that is
        // not one (a child started without `grouped`) fails harmlessly.
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{}", self.child.id())])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Proc {
    pub fn assert_running(&mut self) {
        assert!(
            self.child.try_wait().unwrap().is_none(),
            "{} exited",
            self.name
        );
    }
}

/// A standalone front end on a fresh store.
pub struct Frontend {
    pub proc: Proc,
    pub dir: tempfile::TempDir,
    pub corbaloc: String,
    pub ior: String,
    pub port: u16,
}

impl Frontend {
    pub fn start(extra: &[&str]) -> Frontend {
        let dir = tempfile::tempdir().unwrap();
        let stderr = std::fs::File::create(dir.path().join("stderr")).unwrap();
        let mut child = Command::new(DCMS)
            .arg("frontend")
            .arg("--standalone")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--ior-file")
            .arg(dir.path().join("dcms.ior"))
            .args(extra)
            .env("RUST_LOG", "warn")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut proc = Proc {
            child,
            name: "dcms frontend",
        };
        let mut lines = BufReader::new(stdout).lines();
        let (mut ior, mut corbaloc, mut port) = (None, None, None);
        while port.is_none() {
            let Some(Ok(line)) = lines.next() else {
                let _ = proc.child.kill();
                panic!(
                    "dcms frontend ended before printing its port: {}",
                    std::fs::read_to_string(dir.path().join("stderr")).unwrap_or_default()
                );
            };
            match line.split_once(' ') {
                Some(("ior", v)) => ior = Some(v.to_string()),
                Some(("corbaloc", v)) => corbaloc = Some(v.to_string()),
                Some(("port", v)) => port = Some(v.parse::<u16>().unwrap()),
                _ => {}
            }
        }
        // Keep draining stdout so the process never blocks on it.
        thread::spawn(move || for _ in lines {});
        proc.assert_running();
        let port = port.unwrap();
        assert_ne!(port, 0, "the actual port is printed");
        let corbaloc = corbaloc.expect("corbaloc line");
        assert_eq!(corbaloc, format!("corbaloc:iiop:127.0.0.1:{port}/DCMS"));
        Frontend {
            proc,
            dir,
            corbaloc,
            ior: ior.expect("ior line"),
            port,
        }
    }
}

/// What the robustness tests run against: a front end's IIOP port, clients
/// of it, its process, and whether that process still runs. Implemented by
/// the standalone [`Frontend`] and the replicated cluster [`Replicated`].
pub trait Target {
    /// The front end's IIOP port on 127.0.0.1.
    fn port(&self) -> u16;
    /// A client of the front end (its own connection).
    fn client(&self) -> ClinicClient;
    /// PID of the front-end process.
    fn pid(&self) -> u32;
    /// Fails unless the front-end process started with the target still runs.
    fn assert_running(&mut self);
}

impl Target for Frontend {
    fn port(&self) -> u16 {
        self.port
    }
    fn client(&self) -> ClinicClient {
        ClinicClient::connect(&self.corbaloc, &ClientOptions::default()).unwrap()
    }
    fn pid(&self) -> u32 {
        self.proc.child.id()
    }
    fn assert_running(&mut self) {
        self.proc.assert_running();
    }
}

/// A fresh replicated cluster (`dcms up`: a front end and three replicas,
/// each its own process), stopped when dropped.
pub fn replicated_cluster() -> LocalCluster {
    replicated_cluster_with(&[])
}

/// [`replicated_cluster`] with more `dcms up` arguments.
pub fn replicated_cluster_with(extra: &[&str]) -> LocalCluster {
    let args: Vec<String> = ["--replicas", "3", "--sync", "normal"]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect();
    LocalCluster::start(Path::new(DCMS), None, &args, true).expect("the replicated cluster starts")
}

/// Whether `pid` is a process that has not exited (a zombie has).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/status")) {
        Ok(status) => !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains('Z')),
        Err(_) => false,
    }
}

/// A replicated cluster as a [`Target`]: its first front end
/// (`frontend-100`), a child of `dcms up`, which restarts a child that dies
/// (500 ms later, with a new PID): "still running" is the PID seen at the
/// start, alive and still the one in `<data-dir>/status/frontend-100.json`.
pub struct Replicated {
    cluster: LocalCluster,
    frontend_pid: u32,
}

/// The front end the robustness tests aim at.
const TARGET_FRONTEND: &str = "frontend-100";

impl Replicated {
    /// `dcms up` with `extra` arguments, once a read has gone through it
    /// and the front end has written its status file.
    pub fn start(extra: &[&str]) -> Replicated {
        let cluster = replicated_cluster_with(extra);
        let t0 = Instant::now();
        let frontend_pid = loop {
            if let Some(pid) = cluster.pid_of(TARGET_FRONTEND) {
                break pid;
            }
            assert!(
                t0.elapsed() < Duration::from_secs(10),
                "no status/{TARGET_FRONTEND}.json in {}",
                cluster.data_dir.display()
            );
            thread::sleep(Duration::from_millis(50));
        };
        let mut r = Replicated {
            cluster,
            frontend_pid,
        };
        r.assert_running();
        r
    }
}

impl Target for Replicated {
    fn port(&self) -> u16 {
        self.cluster.config.frontend(100).unwrap().iiop.port()
    }
    /// A client whose calls time out after twice the cluster's outcome
    /// deadline: the front end answers every call by then (TRANSIENT,
    /// COMPLETED_MAYBE at the latest), so a call still waiting is a wedged
    /// front end, and the default 30 s would only make the test wait longer.
    fn client(&self) -> ClinicClient {
        let opts = ClientOptions {
            call_timeout: Duration::from_millis(2 * self.cluster.config.timeouts.outcome_ms),
            ..ClientOptions::default()
        };
        let own = self.cluster.frontend_corbaloc(100).unwrap();
        ClinicClient::connect(&own, &opts).unwrap()
    }
    fn pid(&self) -> u32 {
        self.frontend_pid
    }
    fn assert_running(&mut self) {
        let pid = self.frontend_pid;
        assert!(alive(pid), "the replicated front end (PID {pid}) exited");
        assert_eq!(
            self.cluster.pid_of(TARGET_FRONTEND),
            Some(pid),
            "the replicated front end was restarted"
        );
    }
}
