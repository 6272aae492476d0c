//! The replica process: a UDP link, the sans-IO [`Replica`] state machine, a
//! store thread, and a status file. One event loop feeds the state machine
//! datagrams, durable positions and timer ticks, then carries out its
//! `ready()`: send datagrams, queue entries for commit, report events.
//!
//! The files, and the job each does:
//!
//! - `mod.rs`: the event loop ([`run_replica`]): waits for one input, hands
//!   it on, carries out the outputs, writes the status; and what the front
//!   end's shell shares with it (keys, addresses, the first leader).
//! - `startup.rs`: from the configuration to a running `Shell`: the
//!   metrics address bound first, the incarnation raised, the meta file
//!   read, the store read, the socket bound, the store thread started.
//! - `drive.rs`: inputs into the state machine: datagrams (a front end's
//!   address learned from its authenticated ones), the store thread's
//!   reports (in order, never merged across an install; a failed store
//!   stops the replica), and the link's redundancy.
//! - `ready.rs`: acting on `ready()`: the promise durable before the
//!   datagrams that rely on it, batches to the store in log order, and
//!   acknowledgements only after the store reports a position durable.
//! - `status.rs`: the status file and the metrics, from the event loop's
//!   values at the status pace.

mod drive;
mod ready;
mod startup;
mod status;

use crate::clock::Clock;
use crate::config::{ClusterConfig, Role as ConfigRole};
use crate::link::{Link, Redundancy};
use crate::meta::MetaFile;
use crate::metrics::{AbortOnDrop, ReplicaMetrics};
use crate::persist::{Persisted, Persister};
use crate::refusals::Refusals;
use crate::status::StatusWriter;
use crate::NodeError;
use dcms_repl::wire::WireConfig;
use dcms_repl::{NodeId, Replica};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use tokio::sync::mpsc;
use tracing::info;

/// Datagrams handled per turn before the outputs are flushed.
pub(crate) const BURST: usize = 64;

/// The leader before any election: the highest replica ID, as the bully
/// algorithm would choose.
pub fn initial_leader(config: &ClusterConfig) -> NodeId {
    NodeId(
        config
            .replicas
            .iter()
            .map(|r| r.id)
            .max()
            .expect("validated: replicas exist"),
    )
}

/// What `role` needs to sign and check datagrams: a replica the replicas'
/// key and every front end's; a front end its own key only.
pub fn wire_config(config: &ClusterConfig, role: ConfigRole) -> Result<WireConfig, NodeError> {
    let mut wire = match role {
        ConfigRole::Replica => {
            let mut wire = WireConfig::new(config.cluster_id, config.replica_key_bytes()?);
            for f in &config.frontends {
                wire = wire.with_key(f.id, config.frontend_key_bytes(f.id)?);
            }
            wire
        }
        ConfigRole::FrontEnd(id) => {
            WireConfig::frontend(config.cluster_id, id, config.frontend_key_bytes(id)?)
        }
    };
    wire.max_datagram = config.max_datagram;
    Ok(wire)
}

/// Every replica's UDP address, by node ID. (A front end's streams are
/// learned from its authenticated datagrams: they are new at every start.)
pub fn address_book(config: &ClusterConfig) -> HashMap<NodeId, std::net::SocketAddr> {
    config
        .replicas
        .iter()
        .map(|r| (NodeId(r.id), r.udp))
        .collect()
}

/// Runs replica `id` until `shutdown` completes. `bootstrap` says this is
/// the group's very first start: a replica with no meta file then starts
/// as a founding member; without it, a replica with no meta file is taken
/// for one whose disk was wiped, and catches up from the others before it
/// counts towards a majority.
pub async fn run_replica(
    config: ClusterConfig,
    id: u64,
    bootstrap: bool,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    run_replica_with_metrics(config, id, bootstrap, None, shutdown).await
}

/// [`run_replica`], serving Prometheus metrics on `metrics_addr` (bound
/// before anything else starts).
pub async fn run_replica_with_metrics(
    config: ClusterConfig,
    id: u64,
    bootstrap: bool,
    metrics_addr: Option<SocketAddr>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    let mut shell = Shell::start(config, id, bootstrap, metrics_addr)?;
    tokio::pin!(shutdown);
    let mut status_tick = crate::status::ticker();
    loop {
        let sleep = shell.clock.sleep_until(shell.replica.next_deadline());
        let flush = crate::link::flush_due(shell.link.flush_at());
        tokio::select! {
            _ = &mut shutdown => break,
            (bytes, from) = shell.link.recv() => shell.drive_datagrams(&bytes, from),
            Some(first) = shell.done_rx.recv() => shell.drive_persisted(first)?,
            _ = sleep => shell.replica.tick(shell.clock.now_ms()),
            _ = flush => shell.link.flush(),
            _ = status_tick.tick() => {}
        }
        shell.drive_redundancy();
        shell.drive_ready()?;
        shell.write_status();
    }
    info!(replica = id, "replica stopped");
    Ok(())
}

/// What the event loop owns: the state machine and everything it talks to.
struct Shell {
    id: u64,
    /// The configured replicas: every other sender is a front end.
    group: Vec<NodeId>,
    adaptive_redundancy: bool,
    replica: Replica,
    link: Link,
    persister: Persister,
    /// The store thread's reports.
    done_rx: mpsc::UnboundedReceiver<Persisted>,
    meta_file: MetaFile,
    clock: Clock,
    status: StatusWriter,
    redundancy: Redundancy,
    refusals: Refusals,
    metrics: Option<ReplicaMetrics>,
    metrics_addr: Option<SocketAddr>,
    /// Serves `metrics` until the shell is dropped.
    _metrics_server: Option<AbortOnDrop>,
}

/// An I/O error, saying what was being done.
fn io_error(what: String) -> impl FnOnce(std::io::Error) -> NodeError {
    move |source| NodeError::Io { what, source }
}
