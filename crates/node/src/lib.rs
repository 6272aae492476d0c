//! dcms-node: the thin tokio shells around the sans-IO protocols of
//! `dcms-repl` — sockets, clocks, disks and configuration.
//!
//! - [`config`]: the cluster configuration (TOML), validated.
//! - [`faults`]: seeded loss, duplication, reordering and delay of datagrams.
//! - [`link`]: a UDP socket with the peers' addresses and fault injection.
//! - [`refusals`]: refused datagrams counted, warnings rate-limited.
//! - [`persist`]: the store thread: group commits and snapshot installs, off the runtime.
//! - [`meta`]: the replica's durable epoch promise (`Meta`), one small fsynced file.
//! - [`recover`]: a replica's start-up read of its store.
//! - [`replica`]: the replica process's event loop.
//! - [`frontend`]: the replicated [`dcms_corba::ClinicService`] behind the CORBA server.
//! - [`status`]: status files that `dcms status` reads.
//! - [`metrics`]: Prometheus metrics at `--metrics-addr` (`GET /metrics`).
//! - [`pki`]: the cluster's own CA and the certificates of IIOP over TLS.
//! - [`local`]: a local cluster as child processes (benchmarks, tests), free ports.
//! - [`clock`]: monotonic milliseconds anchored to wall time.

pub mod clock;
pub mod config;
pub mod faults;
pub mod frontend;
pub mod link;
pub mod local;
pub mod meta;
pub mod metrics;
pub mod persist;
pub mod pki;
pub mod recover;
pub mod refusals;
pub mod replica;
pub mod status;

/// Errors that stop a process. Each names what failed.
#[derive(Debug, thiserror::Error)]
pub enum NodeError {
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Store(#[from] dcms_core::StoreError),
    #[error("{what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("durable commit failed: {0}")]
    Durability(String),
}
