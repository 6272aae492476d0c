//! A replica's whole state at one log position, for state transfer.
//!
//! A replica too far behind the leader's in-memory log, or whose log may
//! hold entries the group never committed (a deposed leader, a backup of an
//! older epoch), is brought up to date with a [`Snapshot`] built from the
//! sender's in-memory [`ClinicState`] and [`Sessions`]: its records and,
//! per stream, the head and the recent replies. The receiver replaces its
//! state with it, and the shell replaces the store's contents with it in one
//! transaction (`ReplicaReady::install`, then `Replica::installed`). The
//! audit lines of the replaced positions are not carried.

use crate::ids::{Position, Seq, StreamId};
use crate::session::Sessions;
use dcms_core::store::LogHash;
use dcms_core::{ClinicState, Record, Reply, Retained, StateDigest};
use serde::{Deserialize, Serialize};

/// One stream's part of a snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StreamSnapshot {
    pub stream: StreamId,
    pub head: Seq,
    /// The recent replies, oldest first: (seq, position, reply).
    pub replies: Vec<(Seq, Position, Reply)>,
}

/// A replica's state after applying every entry up to `position`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    pub position: Position,
    /// The sender's log hash at `position`, when known (the receiver's log
    /// continues from it).
    pub log_hash: Option<LogHash>,
    /// The digest of `records` (checked on install).
    pub digest: StateDigest,
    pub records: Vec<Record>,
    pub streams: Vec<StreamSnapshot>,
    /// The retained replies of FT requests.
    pub retained: Vec<Retained>,
}

impl Snapshot {
    /// The snapshot of `state` and `sessions` at `position`.
    pub fn of(
        position: Position,
        log_hash: Option<LogHash>,
        state: &ClinicState,
        sessions: &Sessions,
    ) -> Snapshot {
        Snapshot {
            position,
            log_hash,
            digest: state.digest(),
            records: state.records().cloned().collect(),
            streams: sessions.export(),
            retained: sessions.export_retained(),
        }
    }

    /// Rebuilds state and sessions (`keep` replies per stream). Panics when
    /// the records do not match the digest: the sender is authenticated, so
    /// that is a bug, not an attack.
    pub fn restore(&self, keep: usize) -> (ClinicState, Sessions) {
        let state = ClinicState::from_records(self.records.iter().cloned());
        assert_eq!(
            state.digest(),
            self.digest,
            "snapshot at {} does not match its digest",
            self.position
        );
        (state, Sessions::import(keep, &self.streams, &self.retained))
    }
}
