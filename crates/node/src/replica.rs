//! The replica process: a UDP link, the sans-IO [`Replica`] state machine, a
//! store thread, and a status file. One event loop feeds the state machine
//! datagrams, durable positions and timer ticks, then carries out its
//! `ready()`: send datagrams, queue entries for commit, report events.

use crate::clock::Clock;
use crate::config::ClusterConfig;
use crate::link::{Link, Redundancy};
use crate::persist::{Persisted, Persister};
use crate::status::{ProcessStatus, StatusWriter};
use crate::NodeError;
use dcms_core::Store;
use dcms_repl::wire::WireConfig;
use dcms_repl::{NodeId, Recovered, Replica, ReplicaConfig, ReplicaEvent, Role};
use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use tokio::sync::mpsc;
use tracing::{error, info, warn};

/// Datagrams handled per turn before the outputs are flushed.
const BURST: usize = 64;

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

pub fn wire_config(config: &ClusterConfig) -> Result<WireConfig, NodeError> {
    let mut wire = WireConfig::new(config.cluster_id, config.secret_bytes()?);
    wire.max_datagram = config.max_datagram;
    Ok(wire)
}

/// Every node's UDP address, by node ID.
pub fn address_book(config: &ClusterConfig) -> HashMap<NodeId, std::net::SocketAddr> {
    let mut peers: HashMap<_, _> = config
        .replicas
        .iter()
        .map(|r| (NodeId(r.id), r.udp))
        .collect();
    peers.insert(NodeId(config.frontend.id), config.frontend.udp);
    peers
}

/// Runs replica `id` until `shutdown` completes.
pub async fn run_replica(
    config: ClusterConfig,
    id: u64,
    shutdown: impl Future<Output = ()>,
) -> Result<(), NodeError> {
    config.validate()?;
    let me = config.replica(id)?.clone();
    std::fs::create_dir_all(&config.data_dir).map_err(|e| NodeError::Io {
        what: format!("creating {}", config.data_dir.display()),
        source: e,
    })?;
    let db = config.replica_db(id);
    let store = Store::open(&db, config.sync_mode()?)?;
    let group: Vec<NodeId> = config.replicas.iter().map(|r| NodeId(r.id)).collect();
    let leader = initial_leader(&config);
    let mut rc = ReplicaConfig::new(wire_config(&config)?, NodeId(id), group.clone(), leader);
    rc.retransmit_ms = config.timeouts.retransmit_ms;
    rc.nack_retry_ms = config.timeouts.nack_retry_ms;
    rc.nack_delay_ms = config.timeouts.nack_delay_ms;
    rc.incarnation = rand::random();
    let recovered = Recovered::from_store(&store, rc.reply_cache)?;
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
    let persister = Persister::start(store, done_tx);
    let clock = Clock::new();
    let mut status = StatusWriter::new(&config.data_dir, &format!("replica-{id}"));
    let mut redundancy = Redundancy::default();
    info!(replica = id, udp = %me.udp, role = ?replica.role(), leader = %leader, epoch = replica.epoch(), "replica running");
    tokio::pin!(shutdown);
    let mut status_tick = crate::status::ticker();
    loop {
        let sleep = clock.sleep_until(replica.next_deadline());
        tokio::select! {
            _ = &mut shutdown => break,
            (bytes, from) = link.recv() => {
                let now = clock.now_ms();
                feed(&mut replica, &mut link, &group, now, &bytes, from);
                for _ in 0..BURST {
                    match link.try_recv() {
                        Some((bytes, from)) => feed(&mut replica, &mut link, &group, now, &bytes, from),
                        None => break,
                    }
                }
            }
            Some(p) = done_rx.recv() => match p {
                Persisted::UpTo(position) => {
                    let mut upto = position;
                    while let Ok(Persisted::UpTo(p)) = done_rx.try_recv() { upto = p; }
                    replica.persisted(clock.now_ms(), upto);
                }
                Persisted::Failed(why) => {
                    error!(replica = id, %why, "a durable commit failed; stopping");
                    return Err(NodeError::Durability(why));
                }
            },
            _ = sleep => replica.tick(clock.now_ms()),
            _ = status_tick.tick() => {}
        }
        if config.adaptive_redundancy {
            let st = replica.stats();
            let repairs = st.nacks_sent + st.nacks_received + st.replies_resent;
            let work = st.executed + replica.applied();
            let copies = redundancy.copies(clock.now_ms(), repairs, work, link.copies());
            link.set_copies(copies);
        }
        let ready = replica.ready();
        for t in ready.transmits {
            link.send(t);
        }
        if !ready.persist.is_empty() {
            persister.persist(ready.persist);
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
        status.maybe_write(clock.now_ms(), || ProcessStatus {
            name: format!("replica-{id}"),
            id,
            role: match replica.role() {
                Role::Leader => "leader".into(),
                Role::Backup => "backup".into(),
            },
            pid: std::process::id(),
            epoch: replica.epoch(),
            leader: Some(leader.0),
            group: group.iter().map(|n| n.0).collect(),
            applied: replica.applied(),
            durable: replica.durable(),
            committed: Some(replica.committed()),
            digest: replica.digest().to_hex(),
            stats: serde_json::json!({
                "protocol": format!("{:?}", replica.stats()),
                "link": format!("{:?}", link.stats),
            }),
            updated_ms: clock.now_ms(),
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
    group: &[NodeId],
    now: u64,
    bytes: &[u8],
    from: SocketAddr,
) {
    match replica.handle_datagram(now, bytes) {
        Ok(header) if !group.contains(&header.sender) => link.learn(header.sender, from),
        Ok(_) => {}
        Err(e) => warn!(error = %e, %from, "datagram refused"),
    }
}
