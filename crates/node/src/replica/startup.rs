//! Start-up: from the configuration to a running [`Shell`].
//!
//! In this order: the configuration is checked for the replica's role, the
//! metrics address is bound (before anything else starts), the store is
//! opened, the incarnation is raised on disk (higher at every start), the
//! meta file is read (none at a start without `--bootstrap`: a wiped
//! replica, amnesiac until it catches up), the store is read into the
//! state machine's starting point, the UDP socket is bound and the store
//! thread started.

use super::{address_book, initial_leader, io_error, wire_config, Shell};
use crate::clock::Clock;
use crate::config::{ClusterConfig, Role as ConfigRole};
use crate::link::{Link, Redundancy};
use crate::meta::MetaFile;
use crate::metrics::{AbortOnDrop, ReplicaMetrics};
use crate::persist::Persister;
use crate::refusals::Refusals;
use crate::status::StatusWriter;
use crate::NodeError;
use dcms_core::Store;
use dcms_repl::{Meta, NodeId, Replica, ReplicaConfig};
use std::net::SocketAddr;
use tokio::sync::mpsc;
use tracing::{info, warn};

impl Shell {
    /// Replica `id` of `config`, ready for its event loop; `bootstrap` and
    /// `metrics_addr` as [`super::run_replica_with_metrics`] takes them.
    pub(super) fn start(
        config: ClusterConfig,
        id: u64,
        bootstrap: bool,
        metrics_addr: Option<SocketAddr>,
    ) -> Result<Shell, NodeError> {
        config.validate_for(ConfigRole::Replica)?;
        let (metrics, metrics_server) = match metrics_addr {
            Some(addr) => {
                let (m, server) = serve_metrics(addr, id)?;
                (Some(m), Some(server))
            }
            None => (None, None),
        };
        let me = config.replica(id)?.clone();
        crate::config::create_private_dir(&config.data_dir)
            .map_err(io_error(format!("creating {}", config.data_dir.display())))?;
        let db = config.replica_db(id);
        let mut store = Store::open(&db, config.sync_mode()?)?;
        let group: Vec<NodeId> = config.replicas.iter().map(|r| NodeId(r.id)).collect();
        let leader = initial_leader(&config);
        let rc = replica_config(&config, id, group.clone(), leader)?;
        let meta_file = MetaFile::new(&config.data_dir, id);
        let meta = load_meta(&meta_file, id, bootstrap)?;
        // Only the replies at-most-once execution needs stay on disk.
        store.keep_replies(rc.reply_cache as u64);
        let mut recovered = crate::recover::from_store(&store, rc.reply_cache)?;
        recovered.meta = meta;
        info!(
            replica = id,
            db = %db.display(),
            last_applied = recovered.last_applied,
            records = recovered.state.len(),
            digest = %recovered.state.digest().short(),
            "recovered from the store"
        );
        let replica = Replica::new(rc, recovered);
        let link = Link::bind(
            me.udp,
            address_book(&config),
            &config.faults,
            id,
            config.max_datagram,
        )
        .map_err(io_error(format!("binding UDP {}", me.udp)))?;
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let persister = Persister::start(store, done_tx);
        let clock = Clock::new();
        let status = StatusWriter::new(&config.data_dir, &format!("replica-{id}"));
        info!(replica = id, udp = %me.udp, role = ?replica.role(), leader = %leader, epoch = replica.epoch(), "replica running");
        Ok(Shell {
            id,
            group,
            adaptive_redundancy: config.adaptive_redundancy,
            replica,
            link,
            persister,
            done_rx,
            meta_file,
            clock,
            status,
            redundancy: Redundancy::default(),
            refusals: Refusals::default(),
            metrics,
            metrics_addr,
            _metrics_server: metrics_server,
        })
    }
}

/// The metrics, served on `addr` until the returned handle is dropped.
fn serve_metrics(addr: SocketAddr, id: u64) -> Result<(ReplicaMetrics, AbortOnDrop), NodeError> {
    let m = ReplicaMetrics::new(
        &dcms_repl::replica::ReplicaStats::default(),
        &crate::link::LinkStats::default(),
        &Refusals::default(),
    );
    let server = crate::metrics::serve(addr, m.registry()).map_err(io_error(format!(
        "binding the metrics address {addr} (replica {id})"
    )))?;
    Ok((m, AbortOnDrop(tokio::spawn(server))))
}

/// The state machine's settings from the configuration. Raises and records
/// this start's incarnation.
fn replica_config(
    config: &ClusterConfig,
    id: u64,
    group: Vec<NodeId>,
    leader: NodeId,
) -> Result<ReplicaConfig, NodeError> {
    let wire = wire_config(config, ConfigRole::Replica)?;
    let mut rc = ReplicaConfig::new(wire, NodeId(id), group, leader);
    rc.retransmit_ms = config.timeouts.retransmit_ms;
    rc.stream_expiry_ms = config.timeouts.stream_expiry_ms;
    rc.clock_skew_ms = config.timeouts.clock_skew_ms;
    rc.max_list_bytes = config.max_list_bytes;
    rc.max_streams = config.max_streams;
    rc.nack_retry_ms = config.timeouts.nack_retry_ms;
    rc.nack_delay_ms = config.timeouts.nack_delay_ms;
    rc.incarnation = crate::meta::next_incarnation(&config.data_dir, id, Clock::wall_us())
        .map_err(io_error(format!("recording replica {id}'s incarnation")))?;
    if config.timeouts.failover {
        rc = rc.with_failover();
        rc.heartbeat_ms = config.timeouts.heartbeat_ms;
        rc.suspect_ms = config.timeouts.suspect_ms;
        rc.election_ms = config.timeouts.election_ms;
    }
    Ok(rc)
}

/// The durable promise from the meta file. None at the group's first start
/// (`bootstrap`); without a file otherwise, the replica's disk was wiped.
fn load_meta(meta_file: &MetaFile, id: u64, bootstrap: bool) -> Result<Option<Meta>, NodeError> {
    let loaded = meta_file
        .load()
        .map_err(io_error(format!("reading {}", meta_file.path().display())))?;
    Ok(match loaded {
        Some(meta) => Some(meta),
        None if bootstrap => None,
        None => {
            warn!(
                replica = id,
                "no meta file: taken for a wiped replica; it catches up before it votes"
            );
            Some(Meta::wiped())
        }
    })
}
