//! dcms-repl: the replication protocol of dcms as sans-IO state machines.
//!
//! Nothing in this crate opens a socket, reads a clock or touches a disk.
//! Every state machine takes inputs (datagrams, the current time in
//! milliseconds, "this much is durable now") and leaves its outputs in a
//! `Ready` value the caller drains: datagrams to send, log entries to persist,
//! replies for clients. The tokio/UDP shell and the deterministic simulator
//! (`sim`) drive the very same code.
//!
//! - [`wire`]: message types and the authenticated, versioned datagram codec
//!   (batching several messages per datagram, fragmenting large ones).
//! - [`frontend`]: the sequencer a front end runs per stream: numbering,
//!   retransmission with an RTT-estimated timeout, exactly-once completion.
//! - [`replica`]: one state machine for a replica in either role (leader or
//!   backup): in-order execution per stream, FIFO broadcast of effects,
//!   durable acknowledgement, group commit, digest comparison; heartbeats,
//!   bully elections with epochs, state transfer and majority commit.
//! - [`session`]: the per-stream table of executed sequence numbers and
//!   stored replies that makes execution at-most-once.
//! - [`recover`]: builds a replica's starting point from what the shell
//!   loaded from its durable store.
//! - [`snapshot`]: a replica's whole state at one position, for state
//!   transfer to a replica too far behind or whose log may diverge.
//! - `sim`: the deterministic simulator: a seeded lossy network, a virtual
//!   clock, an in-memory disk per replica, and invariant checks after every
//!   step. Compiled for this crate's tests and with the feature `sim` (for
//!   other crates' tests: `dcms-repl = { workspace = true, features =
//!   ["sim"] }` in their dev-dependencies), never in a production build.
//!
//! # Driving the state machines from a shell
//!
//! Time is `now_ms: u64` in milliseconds. Replicas take wall-clock time (the
//! leader stamps audit lines with it; a backward jump only delays timers).
//! Front ends may take any clock, best a monotonic one. Node IDs map to UDP
//! addresses in the shell: replicas from the cluster configuration; a front
//! end's ID is its stream ID, and its address is the source address of its
//! last authenticated datagram (`handle_datagram` returns the authenticated
//! [`wire::Header`]): the shell must learn `header.sender -> source address`
//! for every sender that is not a configured replica, since a restarted
//! front end comes back under a new stream ID.
//!
//! Replica (one per process):
//!
//! ```text
//! let loaded = read_store(&store, config.reply_cache)?; // recover::Loaded, see Recovered::kept_replies
//! let mut recovered = Recovered::from_loaded(loaded, config.reply_cache);
//! recovered.meta = meta_file.read()?;             // None at the group's first start
//! let mut replica = Replica::new(config.with_failover(), recovered);
//! loop {
//!     select! {
//!         (bytes, src) = socket.recv_from() => match replica.handle_datagram(now_ms(), &bytes) {
//!             Ok(header) => addresses.learn(header.sender, src),
//!             Err(e) => count(e),                  // refused, nothing changed
//!         },
//!         _ = sleep_until(replica.next_deadline()) => replica.tick(now_ms()),
//!         Done::Persisted(upto) = disk_writer_done => replica.persisted(now_ms(), upto),
//!         Done::Installed = disk_writer_done => replica.installed(now_ms()),
//!     }
//!     let ready = replica.ready();
//!     if let Some(meta) = ready.meta { meta_file.write_and_fsync(meta) } // BEFORE sending
//!     if let Some(s) = ready.install { disk_writer.install(s) }  // queued after earlier batches
//!     if !ready.persist.is_empty() { disk_writer.commit(ready.persist) } // Store::commit, then persisted(last position)
//!     for t in ready.transmits { socket.send_to(&t.bytes, addresses[t.to]) }
//!     for s in ready.forgotten { addresses.forget(s) }   // expired front-end streams
//!     if !ready.forgotten_replies.is_empty() { disk_writer.forget_replies(ready.forgotten_replies) } // after earlier batches
//!     for e in ready.events { error!("{e:?}") }   // divergence: alert loudly
//!     for e in ready.view_events { info!("{e:?}") } // elections, view changes, rejoins
//! }
//! ```
//!
//! Set `config.incarnation` to a value higher at every start of the process
//! (the start time in microseconds, or one more than the last, kept on
//! disk): the peers' replay windows refuse datagrams of an older
//! incarnation. Keys: a replica's [`wire::WireConfig`] holds the replicas'
//! key and every front end's key; a front end's only its own
//! ([`wire::WireConfig::frontend`]), and its stream is random at every start
//! ([`frontend::random_stream`]).
//!
//! Persistence batches must be committed in the order handed out; one
//! `Store::commit` per batch (or several batches merged: group commit), then
//! `persisted(last position of what is now durable)`. Sending may happen
//! before the write completes: the protocol only counts what `persisted`
//! reports.
//!
//! Failover ([`ReplicaConfig::with_failover`]; [`ReplicaConfig::new`]
//! leaves it off, `heartbeat_ms` 0: a fixed leader) needs three more things
//! from the shell. (1) [`ReplicaReady::meta`]: a few numbers ([`Meta`]: the promised
//! epoch, its leader, the log epoch, the amnesiac flag) written durably
//! (e.g. a small file, written and fsynced, or a meta row) before the
//! datagrams of the same ready are sent, and handed back in
//! [`Recovered::meta`] at start; `None` only at the group's very first start.
//! A replica whose store was lost must start with `Some(Meta::wiped())`.
//! (2) [`ReplicaReady::install`]: a [`snapshot::Snapshot`] (records, and per
//! stream the head and recent replies) that replaces the store's contents in
//! one transaction, ordered after every earlier persist batch and before
//! this ready's `persist`; then [`Replica::installed`]. `persisted` reports
//! of older batches that arrive meanwhile are ignored, and must not be
//! merged with reports from after the install. (3) Front ends need
//! `FrontEndConfig::replicas` (every replica ID) and `heartbeat_ms`, so they
//! can learn who leads. [`Replica::view`] shows the epoch, leader, members
//! and the age of each peer's last datagram.
//!
//! A leader that reaches fewer than a majority of the group (itself and
//! the backups of its view) executes nothing new: it answers `Unavailable`,
//! which the front end lists in `FrontEndReady::unavailable` while it keeps
//! the request pending (and retries it, so it executes at most once and in
//! order once a majority is back). The request's completion still comes
//! exactly once, as a reply or `ClientOutcome::Unknown`, or, for a request
//! submitted with an FT identity (`FrontEnd::submit_ft`) whose expiration
//! has passed, `ClientOutcome::NotExecuted` when the leader says so
//! (`Unavailable { expired: true }`: final, see `ReplicaConfig::clock_skew_ms`).
//! An FT identity executes at most once across streams: the replicas keep
//! its first reply (`Sessions::retained`) and log a retry as a no-change
//! entry with that reply; the shell persists what `LogEntry::ft` says with
//! the entry (`Store::commit_batch` does).
//!
//! Front end: `FrontEnd::new(config)`, then `submit(now, request) -> seq`,
//! `handle_datagram(now, bytes)`, `tick(now)` at `next_deadline()`, and after
//! each input drain `ready()`: `transmits` (to the leader it follows, and
//! heartbeats to every replica), `completions` (exactly one per seq: the
//! reply or `ClientOutcome::Unknown` after the deadline) and `late_replies`
//! (replies to requests already reported unknown).

pub mod frontend;
pub mod ids;
pub mod recover;
pub mod replica;
pub mod session;
#[cfg(any(test, feature = "sim"))]
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
