//! The replica process: a UDP link, the sans-IO [`Replica`] state machine, a
//! store thread, and a status file. One event loop feeds the state machine
//! datagrams, durable positions and timer ticks, then carries out its
//! `ready()`: send datagrams, queue entries for commit, report events.

use crate::clock::Clock;
use crate::config::{ClusterConfig, Role as ConfigRole};
use crate::link::{Link, Redundancy};
use crate::meta::MetaFile;
use crate::metrics::{AbortOnDrop, ReplicaGauges, ReplicaMetrics};
use crate::persist::{Persisted, Persister};
use crate::refusals::Refusals;
use crate::status::{PeerSeen, ProcessStatus, StatusWriter};
use crate::NodeError;
use dcms_core::Store;
use dcms_repl::wire::WireConfig;
use dcms_repl::{Meta, NodeId, Recovered, Replica, ReplicaConfig, ReplicaEvent, Role};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

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
    config.validate_for(ConfigRole::Replica)?;
    let mut metrics = None;
    let mut _metrics_server = None;
    if let Some(addr) = metrics_addr {
        let m = ReplicaMetrics::new(
            &dcms_repl::replica::ReplicaStats::default(),
            &crate::link::LinkStats::default(),
            &Refusals::default(),
        );
        let server = crate::metrics::serve(addr, m.registry()).map_err(|e| NodeError::Io {
            what: format!("binding the metrics address {addr} (replica {id})"),
            source: e,
        })?;
        _metrics_server = Some(AbortOnDrop(tokio::spawn(server)));
        metrics = Some(m);
    }
    let me = config.replica(id)?.clone();
    crate::config::create_private_dir(&config.data_dir).map_err(|e| NodeError::Io {
        what: format!("creating {}", config.data_dir.display()),
        source: e,
    })?;
    let db = config.replica_db(id);
    let store = Store::open(&db, config.sync_mode()?)?;
    let group: Vec<NodeId> = config.replicas.iter().map(|r| NodeId(r.id)).collect();
    let leader = initial_leader(&config);
    let wire = wire_config(&config, ConfigRole::Replica)?;
    let mut rc = ReplicaConfig::new(wire, NodeId(id), group.clone(), leader);
    rc.retransmit_ms = config.timeouts.retransmit_ms;
    rc.stream_expiry_ms = config.timeouts.stream_expiry_ms;
    rc.clock_skew_ms = config.timeouts.clock_skew_ms;
    rc.max_list_bytes = config.max_list_bytes;
    rc.max_streams = config.max_streams;
    rc.nack_retry_ms = config.timeouts.nack_retry_ms;
    rc.nack_delay_ms = config.timeouts.nack_delay_ms;
    rc.incarnation = crate::meta::next_incarnation(&config.data_dir, id, Clock::wall_us())
        .map_err(|e| NodeError::Io {
            what: format!("recording replica {id}'s incarnation"),
            source: e,
        })?;
    if config.timeouts.failover {
        rc = rc.with_failover();
        rc.heartbeat_ms = config.timeouts.heartbeat_ms;
        rc.suspect_ms = config.timeouts.suspect_ms;
        rc.election_ms = config.timeouts.election_ms;
    }
    let meta_file = MetaFile::new(&config.data_dir, id);
    let io = |what: String| move |source| NodeError::Io { what, source };
    let meta = match meta_file
        .load()
        .map_err(io(format!("reading {}", meta_file.path().display())))?
    {
        Some(meta) => Some(meta),
        None if bootstrap => None,
        None => {
            warn!(
                replica = id,
                "no meta file: taken for a wiped replica; it catches up before it votes"
            );
            Some(Meta::wiped())
        }
    };
    let mut store = store;
    // Only the replies at-most-once execution needs stay on disk.
    store.keep_replies(rc.reply_cache as u64);
    let mut recovered = Recovered::from_store(&store, rc.reply_cache)?;
    recovered.meta = meta;
    info!(
        replica = id,
        db = %db.display(),
        last_applied = recovered.last_applied,
        records = recovered.state.len(),
        digest = %recovered.state.digest().short(),
        "recovered from the store"
    );
    let mut replica = Replica::new(rc, recovered);
    let mut link = Link::bind(
        me.udp,
        address_book(&config),
        &config.faults,
        id,
        config.max_datagram,
    )
    .map_err(|e| NodeError::Io {
        what: format!("binding UDP {}", me.udp),
        source: e,
    })?;
    let (done_tx, mut done_rx) = mpsc::unbounded_channel();
    let mut persister = Persister::start(store, done_tx);
    let clock = Clock::new();
    let mut status = StatusWriter::new(&config.data_dir, &format!("replica-{id}"));
    let mut redundancy = Redundancy::default();
    let mut refusals = Refusals::default();
    info!(replica = id, udp = %me.udp, role = ?replica.role(), leader = %leader, epoch = replica.epoch(), "replica running");
    tokio::pin!(shutdown);
    let mut status_tick = crate::status::ticker();
    loop {
        let sleep = clock.sleep_until(replica.next_deadline());
        let flush = crate::link::flush_due(link.flush_at());
        tokio::select! {
            _ = &mut shutdown => break,
            (bytes, from) = link.recv() => {
                let now = clock.now_ms();
                feed(&mut replica, &mut link, &mut refusals, &group, now, &bytes, from);
                for _ in 0..BURST {
                    match link.try_recv() {
                        Some((bytes, from)) => feed(&mut replica, &mut link, &mut refusals, &group, now, &bytes, from),
                        None => break,
                    }
                }
            }
            Some(first) = done_rx.recv() => {
                // Reports in order; consecutive positions merge, never across an install.
                let mut upto: Option<u64> = None;
                let mut next = Some(first);
                while let Some(report) = next.take() {
                    persister.note(&report);
                    match report {
                        Persisted::UpTo { position, entries, took, .. } => {
                            if let Some(m) = &metrics {
                                m.commit(entries, took);
                            }
                            upto = upto.max(Some(position));
                        }
                        Persisted::Installed => {
                            if let Some(p) = upto.take() {
                                replica.persisted(clock.now_ms(), p);
                            }
                            replica.installed(clock.now_ms());
                        }
                        Persisted::Failed(why) => {
                            error!(replica = id, %why, "the store failed; stopping");
                            return Err(NodeError::Durability(why));
                        }
                    }
                    next = done_rx.try_recv().ok();
                }
                if let Some(p) = upto {
                    replica.persisted(clock.now_ms(), p);
                }
            }
            _ = sleep => replica.tick(clock.now_ms()),
            _ = flush => link.flush(),
            _ = status_tick.tick() => {}
        }
        if config.adaptive_redundancy {
            let st = replica.stats();
            let repairs = st.nacks_sent + st.nacks_received + st.replies_resent;
            let work = st.executed + replica.applied();
            let copies = redundancy.copies(clock.now_ms(), repairs, work, link.copies());
            link.set_copies(copies);
        }
        // Carry out the outputs. A backup's commit on this thread makes new
        // ones (its acknowledgement): carried out in the same turn.
        loop {
            let ready = replica.ready();
            // The promise must be durable before the datagrams that rely on it.
            if let Some(meta) = &ready.meta {
                meta_file
                    .store(meta)
                    .map_err(io(format!("writing {}", meta_file.path().display())))?;
            }
            if let Some(snapshot) = ready.install {
                info!(
                    replica = id,
                    position = snapshot.position,
                    records = snapshot.records.len(),
                    "installing a snapshot"
                );
                persister.install(snapshot);
            }
            for t in ready.transmits {
                link.send(t);
            }
            for stream in ready.forgotten {
                link.forget(stream);
            }
            if !ready.forgotten_replies.is_empty() {
                persister.forget_replies(ready.forgotten_replies);
            }
            // A backup commits on this thread when the store thread has
            // nothing in hand (so the order holds): it saves two thread
            // switches per commit on the path to the leader's commit, 10% of a
            // backup's CPU at 32 clients. Its event loop waits meanwhile, as
            // the acknowledgement would. The leader hands every batch to the
            // store thread, so that it keeps receiving while its disk works.
            let mut committed_here = None;
            if !ready.persist.is_empty() {
                if replica.role() == Role::Backup && persister.idle() {
                    let started = std::time::Instant::now();
                    committed_here = persister.commit_here(&ready.persist).map_err(|e| {
                        error!(replica = id, why = %e, "the store failed; stopping");
                        NodeError::Durability(e.to_string())
                    })?;
                    if let Some(m) = &metrics {
                        m.commit(ready.persist.len() as u64, started.elapsed());
                    }
                } else {
                    persister.persist(ready.persist);
                }
            }
            for event in ready.view_events {
                info!(replica = id, event = ?event, "view");
            }
            for event in ready.events {
                match event {
                    ReplicaEvent::Divergence {
                        backup,
                        position,
                        leader,
                        backup_digest,
                    } => error!(
                        %backup, position, leader = %leader.short(), backup_digest = %backup_digest.short(),
                        "REPLICAS DIVERGED: a backup's state differs from the leader's at the same position"
                    ),
                }
            }
            match committed_here {
                Some(p) => replica.persisted(clock.now_ms(), p),
                None => break,
            }
        }
        let now = clock.now_ms();
        status.maybe_write(now, || {
            let view = replica.view(now);
            // At the status file's pace: the metrics' counters and gauges.
            if let Some(m) = &mut metrics {
                let gauges = ReplicaGauges {
                    epoch: view.epoch,
                    leader: view.leader.map(|n| n.0),
                    is_leader: view.role == Role::Leader,
                    serving: view.serving,
                    members: view.members.len(),
                    applied: replica.applied(),
                    durable: replica.durable(),
                    committed: replica.committed(),
                    digest_age_ms: replica
                        .digest_ages(now)
                        .into_iter()
                        .filter_map(|(n, age)| Some((n.0, age?)))
                        .collect(),
                };
                m.update(&gauges, replica.stats(), &link.stats, &refusals);
            }
            ProcessStatus {
                name: format!("replica-{id}"),
                id,
                role: match (view.role, view.serving) {
                    (Role::Leader, true) => "leader".into(),
                    (Role::Leader, false) => "leader (transferring state)".into(),
                    (Role::Backup, _) if view.amnesiac => "backup (catching up)".into(),
                    (Role::Backup, _) => "backup".into(),
                },
                pid: std::process::id(),
                epoch: view.epoch,
                leader: view.leader.map(|n| n.0),
                group: view.members.iter().map(|n| n.0).collect(),
                peers: view
                    .peers
                    .iter()
                    .map(|p| PeerSeen {
                        node: p.node.0,
                        replica: p.replica,
                        heard_ms_ago: p.heard_ms_ago,
                        suspected: p.suspected,
                    })
                    .collect(),
                applied: replica.applied(),
                durable: replica.durable(),
                committed: Some(replica.committed()),
                digest: replica.digest().to_hex(),
                iiop: None,
                stats: serde_json::json!({
                    "protocol": replica.stats(),
                    "link": link.stats,
                    "refused": refusals,
                    "digest_age_ms": replica
                        .digest_ages(now)
                        .into_iter()
                        .map(|(n, age)| (n.0.to_string(), age))
                        .collect::<std::collections::BTreeMap<_, _>>(),
                }),
                updated_ms: now,
                transport: None,
                metrics: metrics_addr.map(|a| a.to_string()),
            }
        });
    }
    info!(replica = id, "replica stopped");
    Ok(())
}

/// Hands one datagram to the state machine. A front end's address is
/// learned from its authenticated datagrams (its node ID is new at every
/// start, so the configuration cannot list it).
fn feed(
    replica: &mut Replica,
    link: &mut Link,
    refusals: &mut Refusals,
    group: &[NodeId],
    now: u64,
    bytes: &[u8],
    from: SocketAddr,
) {
    match replica.handle_datagram(now, bytes) {
        Ok(header) if !group.contains(&header.sender) => link.learn(header.sender, from),
        Ok(_) => {}
        Err(e) => refusals.refused(now, &e, from),
    }
}
