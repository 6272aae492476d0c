//! The replica's status file (`replica-N.json`, what `dcms status` reads)
//! and its Prometheus metrics.
//!
//! Both are written from the event loop's values at the status pace
//! (`status::STATUS_INTERVAL_MS`), never from inside the state machine.

use super::Shell;
use crate::link::Link;
use crate::metrics::{ReplicaGauges, ReplicaMetrics};
use crate::refusals::Refusals;
use crate::status::{PeerSeen, ProcessStatus};
use dcms_repl::{Replica, Role, ViewStatus};
use std::net::SocketAddr;

impl Shell {
    /// Writes the status file, and updates the metrics, when the last write
    /// is old enough.
    pub(super) fn write_status(&mut self) {
        let now = self.clock.now_ms();
        let Shell {
            id,
            replica,
            link,
            refusals,
            status,
            metrics,
            metrics_addr,
            ..
        } = self;
        status.maybe_write(now, || {
            let view = replica.view(now);
            // At the status file's pace: the metrics' counters and gauges.
            if let Some(m) = metrics {
                update_metrics(m, replica, &view, link, refusals, now);
            }
            process_status(*id, replica, &view, link, refusals, *metrics_addr, now)
        });
    }
}

fn update_metrics(
    metrics: &mut ReplicaMetrics,
    replica: &Replica,
    view: &ViewStatus,
    link: &Link,
    refusals: &Refusals,
    now: u64,
) {
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
    metrics.update(&gauges, replica.stats(), &link.stats, refusals);
}

fn process_status(
    id: u64,
    replica: &Replica,
    view: &ViewStatus,
    link: &Link,
    refusals: &Refusals,
    metrics_addr: Option<SocketAddr>,
    now: u64,
) -> ProcessStatus {
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
}
