//! Identifiers shared by every part of the protocol.
//!
//! All are plain integers on the wire. A front end's [`NodeId`] is its
//! [`StreamId`]: a front end numbers its own requests, so "who sent this" and
//! "which sequence is this" are the same question. Replica and front-end IDs
//! must therefore never overlap (the cluster configuration guarantees it).

use serde::{Deserialize, Serialize};
use std::fmt;

/// Identifies one replica group; datagrams of another cluster are refused.
pub type ClusterId = u64;
/// The leader's term. Messages of an older epoch are refused.
pub type Epoch = u64;
/// A front end's request stream (equal to the front end's node ID).
pub type StreamId = u64;
/// A request's number in its stream: 1, 2, 3, ...
pub type Seq = u64;
/// A position in the leader's log: 1, 2, 3, ... (0 means "nothing yet").
pub type Position = u64;

/// Any participant: a replica or a front end.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NodeId(pub u64);

impl NodeId {
    /// The node ID of the front end that owns `stream`.
    pub fn of_stream(stream: StreamId) -> NodeId {
        NodeId(stream)
    }
}

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "n{}", self.0)
    }
}
