//! Inputs into the state machine, one `drive_*` per kind.
//!
//! Datagrams: a burst of up to [`BURST`] more after the first, all at the
//! same time, before the outputs go out; a front end's address is learned
//! from its authenticated datagrams (its node ID is new at every start, so
//! the configuration cannot list it), a refused datagram is counted.
//!
//! The store thread's reports: taken in order; consecutive durable
//! positions merge into one `persisted`, never across an install (a report
//! from before the install must reach the state machine before it); a
//! failed store stops the replica, which can no longer promise durability.
//!
//! The link's redundancy follows the rate of repairs (NACKs, resent
//! replies) to the work done.

use super::{Shell, BURST};
use crate::persist::Persisted;
use crate::NodeError;
use std::net::SocketAddr;
use tracing::error;

impl Shell {
    /// The datagram `bytes` from `from`, and whatever more is already
    /// queued (up to [`BURST`]).
    pub(super) fn drive_datagrams(&mut self, bytes: &[u8], from: SocketAddr) {
        let now = self.clock.now_ms();
        self.feed(now, bytes, from);
        for _ in 0..BURST {
            match self.link.try_recv() {
                Some((bytes, from)) => self.feed(now, &bytes, from),
                None => break,
            }
        }
    }

    /// Hands one datagram to the state machine.
    fn feed(&mut self, now: u64, bytes: &[u8], from: SocketAddr) {
        match self.replica.handle_datagram(now, bytes) {
            Ok(header) if !self.group.contains(&header.sender) => {
                self.link.learn(header.sender, from)
            }
            Ok(_) => {}
            Err(e) => self.refusals.refused(now, &e, from),
        }
    }

    /// The store thread's report `first`, and every one queued after it.
    pub(super) fn drive_persisted(&mut self, first: Persisted) -> Result<(), NodeError> {
        let mut upto: Option<u64> = None;
        let mut next = Some(first);
        while let Some(report) = next.take() {
            self.persister.note(&report);
            match report {
                Persisted::UpTo {
                    position,
                    entries,
                    took,
                    ..
                } => {
                    if let Some(m) = &self.metrics {
                        m.commit(entries, took);
                    }
                    upto = upto.max(Some(position));
                }
                Persisted::Installed => {
                    if let Some(p) = upto.take() {
                        self.replica.persisted(self.clock.now_ms(), p);
                    }
                    self.replica.installed(self.clock.now_ms());
                }
                Persisted::Failed(why) => {
                    error!(replica = self.id, %why, "the store failed; stopping");
                    return Err(NodeError::Durability(why));
                }
            }
            next = self.done_rx.try_recv().ok();
        }
        if let Some(p) = upto {
            self.replica.persisted(self.clock.now_ms(), p);
        }
        Ok(())
    }

    /// Sets how many copies of each datagram the link sends from the rate
    /// of repairs (`link::Redundancy`), when the configuration asks for
    /// adaptive redundancy.
    pub(super) fn drive_redundancy(&mut self) {
        if !self.adaptive_redundancy {
            return;
        }
        let st = self.replica.stats();
        let repairs = st.nacks_sent + st.nacks_received + st.replies_resent;
        let work = st.executed + self.replica.applied();
        let copies = self
            .redundancy
            .copies(self.clock.now_ms(), repairs, work, self.link.copies());
        self.link.set_copies(copies);
    }
}
