//! dcms-repl: the replication protocol of dcms as sans-IO state machines.
//!
//! Nothing in this crate opens a socket, reads a clock or touches a disk.
//! Every state machine takes inputs (datagrams, the current time in
//! milliseconds, "this much is durable now") and leaves its outputs in a
//! `Ready` value the caller drains: datagrams to send, log entries to persist,
//! replies for clients. The tokio/UDP shell and the deterministic simulator
//! ([`sim`]) drive the very same code.
//!
//! - [`wire`]: message types and the authenticated, versioned datagram codec
//!   (batching several messages per datagram, fragmenting large ones).
//! - [`frontend`]: the sequencer a front end runs per stream: numbering,
//!   retransmission with an RTT-estimated timeout, exactly-once completion.
//! - [`replica`]: one state machine for a replica in either role (leader or
//!   backup): in-order execution per stream, FIFO broadcast of effects,
//!   durable acknowledgement, group commit, digest comparison.
//! - [`session`]: the per-stream table of executed sequence numbers and
//!   stored replies that makes execution at-most-once.
//! - [`recover`]: builds a replica's starting point from its durable store.
//! - [`sim`]: the deterministic simulator: a seeded lossy network, a virtual
//!   clock, an in-memory disk per replica, and invariant checks after every
//!   step.

pub mod frontend;
pub mod ids;
pub mod recover;
pub mod replica;
pub mod session;
pub mod sim;
pub mod wire;

pub use frontend::{ClientOutcome, Completion, FrontEnd, FrontEndConfig, FrontEndReady};
pub use ids::{ClusterId, Epoch, NodeId, Position, Seq, StreamId};
pub use recover::Recovered;
pub use replica::{Replica, ReplicaConfig, ReplicaEvent, ReplicaReady, Role};
pub use wire::{Message, Transmit, WireConfig, WireError};
