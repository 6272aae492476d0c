//! Flags shared by the processes of a cluster: where the configuration is,
//! and single values that override it (also from `DCMS_*` variables).

use anyhow::Context;
use dcms_node::config::ClusterConfig;
use dcms_node::faults::FaultConfig;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug, Clone, Default)]
pub struct FaultArgs {
    /// Testing: probability of losing each datagram sent or received.
    #[arg(long, env = "DCMS_FAULT_DROP")]
    pub fault_drop: Option<f64>,
    /// Testing: probability of delivering a datagram twice.
    #[arg(long, env = "DCMS_FAULT_DUP")]
    pub fault_dup: Option<f64>,
    /// Testing: probability of holding a datagram back so later ones overtake it.
    #[arg(long, env = "DCMS_FAULT_REORDER")]
    pub fault_reorder: Option<f64>,
    /// Testing: delay every datagram by MIN..MAX milliseconds.
    #[arg(long, env = "DCMS_FAULT_DELAY_MS", value_parser = FaultConfig::parse_delay)]
    pub fault_delay_ms: Option<(u64, u64)>,
    /// Testing: seed of the fault generator.
    #[arg(long, env = "DCMS_FAULT_SEED")]
    pub fault_seed: Option<u64>,
}

impl FaultArgs {
    pub fn apply(&self, faults: &mut FaultConfig) {
        if let Some(p) = self.fault_drop {
            faults.drop = p;
        }
        if let Some(p) = self.fault_dup {
            faults.dup = p;
        }
        if let Some(p) = self.fault_reorder {
            faults.reorder = p;
        }
        if let Some((min, max)) = self.fault_delay_ms {
            faults.delay_min_ms = min;
            faults.delay_max_ms = max;
        }
        if let Some(s) = self.fault_seed {
            faults.seed = s;
        }
    }

    /// The flags again, to pass on to a child process.
    pub fn to_args(&self) -> Vec<String> {
        let mut out = Vec::new();
        let mut push = |k: &str, v: Option<String>| {
            if let Some(v) = v {
                out.push(k.to_string());
                out.push(v);
            }
        };
        push("--fault-drop", self.fault_drop.map(|v| v.to_string()));
        push("--fault-dup", self.fault_dup.map(|v| v.to_string()));
        push("--fault-reorder", self.fault_reorder.map(|v| v.to_string()));
        push(
            "--fault-delay-ms",
            self.fault_delay_ms.map(|(a, b)| format!("{a}..{b}")),
        );
        push("--fault-seed", self.fault_seed.map(|v| v.to_string()));
        out
    }
}

#[derive(clap::Args, Debug, Clone)]
pub struct ClusterArgs {
    /// The cluster configuration (TOML), as `dcms up` writes it.
    #[arg(long, env = "DCMS_CONFIG")]
    pub config: PathBuf,
    /// Override the data folder.
    #[arg(long, env = "DCMS_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Override the client deadline (ms) after which an unknown outcome is reported.
    #[arg(long, env = "DCMS_OUTCOME_TIMEOUT_MS")]
    pub outcome_timeout_ms: Option<u64>,
    #[command(flatten)]
    pub faults: FaultArgs,
}

impl ClusterArgs {
    pub fn load(&self) -> anyhow::Result<ClusterConfig> {
        let mut config = ClusterConfig::load(&self.config).with_context(|| {
            format!(
                "loading the cluster configuration {}",
                self.config.display()
            )
        })?;
        if let Some(d) = &self.data_dir {
            config.data_dir = d.clone();
        }
        if let Some(ms) = self.outcome_timeout_ms {
            config.timeouts.outcome_ms = ms;
        }
        self.faults.apply(&mut config.faults);
        config.validate()?;
        Ok(config)
    }
}

/// The tokio runtime of a process's event loop. Each process runs one
/// event-loop task (plus timers), so a single-threaded runtime saves the
/// cross-thread wakeups a work-stealing pool would add to every datagram.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// The tokio runtime of a front end: its event loop and its ORB's I/O
/// tasks share the two workers, so that a request read by an I/O task
/// reaches the event loop, and a reply the event loop writes reaches the
/// socket, without waking another thread.
pub fn shared_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("dcms-io")
        .enable_all()
        .build()
        .context("starting the tokio runtime")
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("install SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}

/// FT-CORBA invocation of `dcms client` and `dcms bench`.
#[derive(clap::Args, Clone, Debug)]
pub struct FtArgs {
    /// Send no `FT_REQUEST` context and never retry: each call is made
    /// once, and a retry after an unknown outcome could execute twice.
    #[arg(long)]
    pub no_ft: bool,
    /// How long one call may take, retries through any front end included
    /// (the `FT_REQUEST` expiration): a write not executed by then never
    /// is, and its answer is DCMS::Unavailable when no majority is there.
    #[arg(long, default_value_t = 4000)]
    pub ft_expiration_ms: u64,
}

impl FtArgs {
    pub fn options(&self) -> Option<dcms_corba::client::FtOptions> {
        (!self.no_ft).then(|| dcms_corba::client::FtOptions {
            expiration: std::time::Duration::from_millis(self.ft_expiration_ms.max(1)),
            ..Default::default()
        })
    }
}

/// Writes `path` through a temporary file and a rename, so that a reader
/// never sees half an IOR.
pub fn write_atomically(path: &Path, text: &str) -> std::io::Result<()> {
    let tmp = path.with_extension("ior.tmp");
    std::fs::write(&tmp, text)?;
    std::fs::rename(&tmp, path)
}
