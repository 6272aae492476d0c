//! Acting on `ready()`: the state machine's outputs, carried out.
//!
//! Invariants: the promise ([`dcms_repl::Meta`]) is written and fsynced
//! before the datagrams of the same `ready` (they may rely on it); a
//! snapshot install and every batch reach the store in the order handed
//! out (a backup commits on this thread only when the store thread has
//! nothing in hand); the state machine hears a position durable
//! (`persisted`, which lets it acknowledge) only once the store says so.

use super::{io_error, Shell};
use crate::NodeError;
use dcms_repl::{ReplicaEvent, Role};
use tracing::{error, info};

impl Shell {
    /// Carries out the outputs. A backup's commit on this thread makes new
    /// ones (its acknowledgement): carried out in the same turn.
    pub(super) fn drive_ready(&mut self) -> Result<(), NodeError> {
        let id = self.id;
        loop {
            let ready = self.replica.ready();
            // The promise must be durable before the datagrams that rely on it.
            if let Some(meta) = &ready.meta {
                self.meta_file.store(meta).map_err(io_error(format!(
                    "writing {}",
                    self.meta_file.path().display()
                )))?;
            }
            if let Some(snapshot) = ready.install {
                info!(
                    replica = id,
                    position = snapshot.position,
                    records = snapshot.records.len(),
                    "installing a snapshot"
                );
                self.persister.install(snapshot);
            }
            for t in ready.transmits {
                self.link.send(t);
            }
            for stream in ready.forgotten {
                self.link.forget(stream);
            }
            if !ready.forgotten_replies.is_empty() {
                self.persister.forget_replies(ready.forgotten_replies);
            }
            // A backup commits on this thread when the store thread has
            // nothing in hand (so the order holds): it saves two thread
            // switches per commit on the path to the leader's commit, 10% of a
            // backup's CPU at 32 clients. Its event loop waits meanwhile, as
            // the acknowledgement would. The leader hands every batch to the
            // store thread, so that it keeps receiving while its disk works.
            let mut committed_here = None;
            if !ready.persist.is_empty() {
                if self.replica.role() == Role::Backup && self.persister.idle() {
                    let started = std::time::Instant::now();
                    committed_here = self.persister.commit_here(&ready.persist).map_err(|e| {
                        error!(replica = id, why = %e, "the store failed; stopping");
                        NodeError::Durability(e.to_string())
                    })?;
                    if let Some(m) = &self.metrics {
                        m.commit(ready.persist.len() as u64, started.elapsed());
                    }
                } else {
                    self.persister.persist(ready.persist);
                }
            }
            for event in ready.view_events {
                info!(replica = id, event = ?event, "view");
            }
            for event in ready.events {
                log_event(event);
            }
            match committed_here {
                Some(p) => self.replica.persisted(self.clock.now_ms(), p),
                None => return Ok(()),
            }
        }
    }
}

/// An event the operator must hear of.
fn log_event(event: ReplicaEvent) {
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
