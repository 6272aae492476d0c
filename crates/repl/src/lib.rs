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
//!
//! # Driving the state machines from a shell
//!
//! Time is `now_ms: u64` in milliseconds. Replicas take wall-clock time (the
//! leader stamps audit lines with it; a backward jump only delays timers).
//! Front ends may take any clock, best a monotonic one. Node IDs map to UDP addresses in the shell: replicas from
//! the cluster configuration; a front end's ID is its stream ID, and its
//! address is the source address of its last authenticated datagram
//! (`handle_datagram` returns the authenticated [`wire::Header`]).
//!
//! Replica (one per process):
//!
//! ```text
//! let recovered = Recovered::from_store(&store, config.reply_cache)?;
//! let mut replica = Replica::new(config, recovered);
//! loop {
//!     select! {
//!         (bytes, src) = socket.recv_from() => match replica.handle_datagram(now_ms(), &bytes) {
//!             Ok(header) => addresses.learn(header.sender, src),
//!             Err(e) => count(e),                  // refused, nothing changed
//!         },
//!         _ = sleep_until(replica.next_deadline()) => replica.tick(now_ms()),
//!         upto = disk_writer_done => replica.persisted(now_ms(), upto),
//!     }
//!     let ready = replica.ready();
//!     for t in ready.transmits { socket.send_to(&t.bytes, addresses[t.to]) }
//!     if !ready.persist.is_empty() { disk_writer.commit(ready.persist) } // Store::commit, then persisted(last position)
//!     for e in ready.events { error!("{e:?}") }   // divergence: alert loudly
//! }
//! ```
//!
//! Set `config.incarnation` to a value that differs at every start of the
//! process (a counter kept on disk, or the start time in seconds): it keeps
//! fragment IDs unique across restarts.
//!
//! Persistence batches must be committed in the order handed out; one
//! `Store::commit` per batch (or several batches merged: group commit), then
//! `persisted(last position of what is now durable)`. Sending may happen
//! before the write completes: the protocol only counts what `persisted`
//! reports.
//!
//! Front end: `FrontEnd::new(config)`, then `submit(now, request) -> seq`,
//! `handle_datagram(now, bytes)`, `tick(now)` at `next_deadline()`, and after
//! each input drain `ready()`: `transmits` (to the leader), `completions`
//! (exactly one per seq: the reply or `ClientOutcome::Unknown` after the
//! deadline) and `late_replies` (replies to requests already reported
//! unknown).

pub mod frontend;
pub mod ids;
pub mod recover;
pub mod replica;
pub mod session;
pub mod sim;
pub mod snapshot;
pub mod wire;

pub use frontend::{ClientOutcome, Completion, FrontEnd, FrontEndConfig, FrontEndReady};
pub use ids::{ClusterId, Epoch, NodeId, Position, Seq, StreamId};
pub use recover::Recovered;
pub use replica::{
    Meta, PeerStatus, Replica, ReplicaConfig, ReplicaEvent, ReplicaReady, Role, ViewEvent,
    ViewStatus,
};
pub use wire::{Message, Transmit, WireConfig, WireError};
