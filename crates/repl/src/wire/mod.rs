//! The protocol's messages and their datagram encoding.
//!
//! A datagram is
//!
//! ```text
//! "DCMS" | version (1 byte)
//! | cluster u64 | key u64 | sender u64 | to u64 | epoch u64 | incarnation u64 | counter u64
//!                                                              (header, little-endian)
//! | frame* | HMAC-SHA256 tag (32 bytes)
//! frame = type (1 byte) | length u16 LE | postcard(Message)
//! ```
//!
//! The tag covers everything before it and is keyed by the key the header
//! names: [`REPLICA_KEY`] (0), which only replicas hold, or one front end's
//! own key (its configured ID). A corrupted, truncated or forged datagram is
//! refused before any frame is parsed. Several messages to one destination
//! share a datagram (batching); a message too large for one datagram travels
//! as [`Fragment`]s that the receiver's [`Reassembler`] joins again. Every
//! decoding failure is a typed [`WireError`]; decoding never panics,
//! whatever the bytes.
//!
//! Addressing: every datagram names its addressee (`to`: a replica's ID or
//! a front end's stream) inside the tag, and a [`Decoder`] refuses one for
//! anybody else ([`WireError::NotForMe`]). A front end restarted at the same
//! address under a new stream therefore never takes a reply meant for the
//! old stream, however late it arrives.
//!
//! Replay protection: every sender numbers its datagrams to each receiver
//! (`counter`, 1, 2, 3, ... per `incarnation`, which is higher at every
//! start of the same sender), and a [`Decoder`] keeps a sliding window per
//! sender and key, as IPsec and DTLS do: a datagram already accepted, older than the window, or of an
//! older incarnation is refused ([`WireError::Replayed`]). The protocol was
//! already idempotent (requests deduplicated by (stream, seq), log entries by
//! position, cumulative acks, epochs); the window also stops a captured
//! `LogNack`, `Join` or front-end datagram from being replayed to force a
//! snapshot, reset a member or re-point where replies go. What a receiver
//! that restarted (its windows empty) accepts again is only what that
//! idempotence already makes harmless.

mod codec;
mod fragment;
mod replay;
#[cfg(test)]
mod tests;

pub use codec::{Decoder, Encoder};
pub use fragment::Reassembler;
pub use replay::ReplayWindow;

use crate::ids::{ClusterId, Epoch, NodeId, Position, Seq};
use dcms_core::store::LogHash;
use dcms_core::{FtRequest, LogEntry, Reply, Request, StateDigest};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The first bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"DCMS";
/// The encoding version this code writes and reads (4: a request carries
/// the manager its client's certificate proved, and so does an audit entry).
/// Processes of other versions refuse each other's datagrams: a cluster is
/// upgraded as a whole.
pub const VERSION: u8 = 4;
/// Bytes before the first frame: magic, version, then cluster, key, sender,
/// to, epoch, incarnation and counter.
pub const HEADER_LEN: usize = 4 + 1 + 7 * 8;
/// Bytes of the HMAC-SHA256 tag at the end.
pub const TAG_LEN: usize = 32;
/// Bytes in front of each frame's body: type and length.
pub const FRAME_HEADER_LEN: usize = 3;
/// The default largest datagram, in bytes.
pub const DEFAULT_MAX_DATAGRAM: usize = 8 * 1024;
/// The smallest largest-datagram setting accepted.
pub const MIN_MAX_DATAGRAM: usize = 256;
/// The largest datagram UDP can carry over IPv4.
pub const MAX_MAX_DATAGRAM: usize = 65_507;
/// The most fragments one message may be split into (about 64 MiB at the
/// default datagram size; a larger message is dropped by the encoder and
/// counted in `Encoder::oversize_dropped`).
pub const MAX_FRAGMENTS: u16 = 8192;
/// Datagrams a replay window remembers below the highest accepted counter
/// (IPsec allows up to 4096). Counters are dense per destination, so this
/// bounds how far datagrams to one receiver may be reordered, e.g. within
/// a burst of fragments, before the late ones are taken for replays.
pub const REPLAY_WINDOW: u64 = 1024;
/// Senders whose replay windows a decoder keeps, by default; beyond, the
/// least recently heard one is forgotten.
pub const DEFAULT_MAX_SENDERS: usize = 4096;

/// Names the key that signs a datagram: [`REPLICA_KEY`] or a front end's
/// configured ID.
pub type KeyId = u64;
/// The replicas' shared key. Front ends never hold it.
pub const REPLICA_KEY: KeyId = 0;

/// What each endpoint needs to encode and check datagrams.
#[derive(Clone)]
pub struct WireConfig {
    pub cluster: ClusterId,
    /// The keys this endpoint holds, by ID: a replica holds [`REPLICA_KEY`]
    /// and every front end's key; a front end only its own.
    keys: BTreeMap<KeyId, Vec<u8>>,
    /// Largest datagram to send and accept, in bytes.
    pub max_datagram: usize,
}

impl std::fmt::Debug for WireConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key bytes.
        f.debug_struct("WireConfig")
            .field("cluster", &self.cluster)
            .field("keys", &self.keys.keys().collect::<Vec<_>>())
            .field("max_datagram", &self.max_datagram)
            .finish()
    }
}

impl WireConfig {
    /// A replica's configuration holding the replicas' key; add the front
    /// ends' keys with [`WireConfig::with_key`].
    pub fn new(cluster: ClusterId, replica_key: impl Into<Vec<u8>>) -> WireConfig {
        WireConfig {
            cluster,
            keys: BTreeMap::from([(REPLICA_KEY, replica_key.into())]),
            max_datagram: DEFAULT_MAX_DATAGRAM,
        }
    }

    /// A front end's configuration: its own key, nothing else.
    pub fn frontend(cluster: ClusterId, key: KeyId, secret: impl Into<Vec<u8>>) -> WireConfig {
        assert_ne!(
            key, REPLICA_KEY,
            "a front end's key ID is not the replicas'"
        );
        WireConfig {
            cluster,
            keys: BTreeMap::from([(key, secret.into())]),
            max_datagram: DEFAULT_MAX_DATAGRAM,
        }
    }

    /// Also holds key `id` (a front end's, for a replica).
    pub fn with_key(mut self, id: KeyId, secret: impl Into<Vec<u8>>) -> WireConfig {
        self.keys.insert(id, secret.into());
        self
    }

    pub fn has_key(&self, id: KeyId) -> bool {
        self.keys.contains_key(&id)
    }

    /// The IDs of the keys held, in order.
    pub fn key_ids(&self) -> impl Iterator<Item = KeyId> + '_ {
        self.keys.keys().copied()
    }

    /// Panics on a setting no datagram can work with.
    pub fn validate(&self) {
        assert!(!self.keys.is_empty(), "an endpoint holds at least one key");
        assert!(
            self.keys.values().all(|k| !k.is_empty()),
            "keys must not be empty"
        );
        assert!(
            (MIN_MAX_DATAGRAM..=MAX_MAX_DATAGRAM).contains(&self.max_datagram),
            "max_datagram {} outside {MIN_MAX_DATAGRAM}..={MAX_MAX_DATAGRAM}",
            self.max_datagram
        );
    }
}

/// A new sender incarnation at every call, for tests that make a fresh
/// encoder per datagram (which would otherwise look like replays).
#[cfg(test)]
pub(crate) fn next_test_incarnation() -> u64 {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

/// The authenticated header of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub cluster: ClusterId,
    /// The key that signed it: [`REPLICA_KEY`] or a front end's.
    pub key: KeyId,
    pub sender: NodeId,
    /// The addressee: a replica's ID or a front end's stream.
    pub to: NodeId,
    /// The sender's epoch: the leader's term it believes in.
    pub epoch: Epoch,
    /// Higher at every start of the sender.
    pub incarnation: u64,
    /// The datagram's number in this incarnation of the sender: 1, 2, 3, ...
    pub counter: u64,
}

/// Part of a message too large for one datagram.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    /// Unique per sender incarnation (a counter); a resend gets a new ID.
    pub id: u64,
    pub index: u16,
    pub count: u16,
    /// A slice of the postcard encoding of the whole message.
    pub chunk: Vec<u8>,
}

/// Every protocol message. The sender's identity and epoch are in the
/// datagram [`Header`]; a front end's stream is its sender ID.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Message {
    /// Front end to leader: request `seq` of the sender's stream, with the
    /// client's FT-CORBA identity when it sent one (a retry of the same
    /// identity, in any stream, gets the first execution's reply), and
    /// the manager ID the client's TLS certificate proved when it called
    /// over TLS (the front end checked it is the request's; the leader
    /// writes it into the audit line).
    Request {
        seq: Seq,
        request: Request,
        ft: Option<FtRequest>,
        authenticated: Option<String>,
    },
    /// Leader to front end: the committed reply to request `seq`.
    Reply { seq: Seq, reply: Reply },
    /// Leader to front end: these numbers are missing; send them again.
    RequestNack { missing: Vec<Seq> },
    /// Leader to backup: one log entry, and the leader's last position (so a
    /// backup notices a lost tail).
    /// (Shared: an entry is much larger than the other messages, and the
    /// leader's log, window and every backup's append hold the same one.)
    Append {
        entry: Arc<LogEntry>,
        leader_last: Position,
        /// The leader's commit position (durable on every member), so a
        /// backup knows what is committed when it takes over.
        committed: Position,
    },
    /// Backup to leader: everything up to `durable` is on disk; the state
    /// after applying up to `applied` has `digest`.
    Ack {
        durable: Position,
        applied: Position,
        digest: StateDigest,
    },
    /// Backup to leader: these positions are missing; send them again.
    LogNack { missing: Vec<Position> },
    /// Part of a large message.
    Fragment(Fragment),
    /// Any node to every replica, every `heartbeat_ms`: alive. Replicas say
    /// whom they follow (or lead) in the header's epoch and how far they are.
    Heartbeat {
        leader: Option<NodeId>,
        log_epoch: Epoch,
        applied: Position,
        durable: Position,
        committed: Position,
    },
    /// Bully election: a replica that suspects its leader, to every
    /// higher-ID replica.
    Election,
    /// To a lower-ID replica's `Election`: alive, and taking it from here.
    Answer,
    /// A new leader, to every replica and known front end: the header's
    /// epoch is mine. Replicas answer with `Join`.
    Coordinator,
    /// Replica to the leader of its epoch: my log, for state transfer.
    /// `amnesiac`: my store was wiped (I do not count towards a majority
    /// until synced). `log_hash`: my log's chained hash at `applied`, when
    /// known (the same hash at the same position means the same log).
    Join {
        log_epoch: Epoch,
        applied: Position,
        durable: Position,
        amnesiac: bool,
        log_hash: Option<LogHash>,
    },
    /// New leader to the most advanced replica: send me your log after
    /// `after` (or, when `snapshot`, your whole state, unless your log's
    /// hash at `after` is `log_hash`: then mine is a prefix of yours).
    Fetch {
        after: Position,
        snapshot: bool,
        log_hash: Option<LogHash>,
    },
    /// State transfer: keep your log up to `common_prefix` (or install
    /// `snapshot` first), then apply `entries`. `epoch_start` is the
    /// position the epoch's log starts from.
    Sync {
        /// The position up to which the receiver's log is the sender's
        /// (with a `snapshot`, the snapshot's position); `entries` follow
        /// it.
        common_prefix: Position,
        snapshot: Option<Box<crate::snapshot::Snapshot>>,
        entries: Vec<LogEntry>,
        epoch_start: Position,
    },
    /// Replica to a front end: the leader of the header's epoch.
    LeaderIs { leader: NodeId },
    /// Leader to front end: request `seq` was not executed, because this
    /// leader does not reach a majority of the group (it will be, once it
    /// does or another leader takes over; the front end keeps retrying).
    /// `expired`: the request carries an FT expiration that has passed
    /// (by more than the clock-skew margin) and was never executed: no
    /// leader will execute it now, so the refusal is final and the front
    /// end may tell the client "not executed".
    Unavailable {
        seq: Seq,
        reason: String,
        expired: bool,
    },
    /// Front end to leader: a read-only request, outside the ordered
    /// stream (it changes nothing, so it is never logged nor deduplicated:
    /// a retry simply reads again). `id` is the front end's, per stream.
    Read { id: u64, request: Request },
    /// Leader to front end: the answer to read `id`, sent once the leader
    /// confirmed it still leads (a read-index round) and everything the
    /// read saw is committed.
    ReadReply { id: u64, reply: Reply },
    /// Leader to replicas: do you still follow me in this epoch? Reads
    /// that arrived before this round wait for a majority's answer.
    ReadIndex { round: u64 },
    /// Replica to its leader: yes, up to this round (cumulative).
    ReadIndexAck { round: u64 },
    /// Leader to front end: request `seq` was executed, but its reply is no
    /// longer kept (its stream was silent past the expiry): its outcome is
    /// unknown to the client; stop retransmitting it.
    Forgotten { seq: Seq },
}

/// The message types, as the type byte of a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum MessageType {
    Request = 1,
    Reply = 2,
    RequestNack = 3,
    Append = 4,
    Ack = 5,
    LogNack = 6,
    Fragment = 7,
    Heartbeat = 8,
    Election = 9,
    Answer = 10,
    Coordinator = 11,
    Join = 12,
    Fetch = 13,
    Sync = 14,
    LeaderIs = 15,
    Unavailable = 16,
    Read = 17,
    ReadReply = 18,
    ReadIndex = 19,
    ReadIndexAck = 20,
    Forgotten = 21,
}

impl MessageType {
    pub fn from_byte(b: u8) -> Option<MessageType> {
        Some(match b {
            1 => MessageType::Request,
            2 => MessageType::Reply,
            3 => MessageType::RequestNack,
            4 => MessageType::Append,
            5 => MessageType::Ack,
            6 => MessageType::LogNack,
            7 => MessageType::Fragment,
            8 => MessageType::Heartbeat,
            9 => MessageType::Election,
            10 => MessageType::Answer,
            11 => MessageType::Coordinator,
            12 => MessageType::Join,
            13 => MessageType::Fetch,
            14 => MessageType::Sync,
            15 => MessageType::LeaderIs,
            16 => MessageType::Unavailable,
            17 => MessageType::Read,
            18 => MessageType::ReadReply,
            19 => MessageType::ReadIndex,
            20 => MessageType::ReadIndexAck,
            21 => MessageType::Forgotten,
            _ => return None,
        })
    }
}

impl Message {
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Request { .. } => MessageType::Request,
            Message::Reply { .. } => MessageType::Reply,
            Message::RequestNack { .. } => MessageType::RequestNack,
            Message::Append { .. } => MessageType::Append,
            Message::Ack { .. } => MessageType::Ack,
            Message::LogNack { .. } => MessageType::LogNack,
            Message::Fragment(_) => MessageType::Fragment,
            Message::Heartbeat { .. } => MessageType::Heartbeat,
            Message::Election => MessageType::Election,
            Message::Answer => MessageType::Answer,
            Message::Coordinator => MessageType::Coordinator,
            Message::Join { .. } => MessageType::Join,
            Message::Fetch { .. } => MessageType::Fetch,
            Message::Sync { .. } => MessageType::Sync,
            Message::LeaderIs { .. } => MessageType::LeaderIs,
            Message::Unavailable { .. } => MessageType::Unavailable,
            Message::Read { .. } => MessageType::Read,
            Message::ReadReply { .. } => MessageType::ReadReply,
            Message::ReadIndex { .. } => MessageType::ReadIndex,
            Message::ReadIndexAck { .. } => MessageType::ReadIndexAck,
            Message::Forgotten { .. } => MessageType::Forgotten,
        }
    }
}

/// A datagram to send: the shell maps `to` to an address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transmit {
    pub to: NodeId,
    pub bytes: Vec<u8>,
}

/// Why a datagram (or a fragment) was refused. The caller counts these.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    #[error("datagram of {len} bytes is shorter than header and tag")]
    TooShort { len: usize },
    #[error("datagram of {len} bytes exceeds the limit of {max}")]
    TooLong { len: usize, max: usize },
    #[error("not a dcms datagram (bad magic)")]
    BadMagic,
    #[error("unsupported encoding version {0}")]
    UnsupportedVersion(u8),
    #[error("datagram of cluster {got}, this is cluster {expected}")]
    ForeignCluster { got: ClusterId, expected: ClusterId },
    #[error("authentication tag does not match (corrupted or forged)")]
    BadTag,
    #[error("unknown message type {0}")]
    UnknownType(u8),
    #[error("malformed datagram: {0}")]
    Malformed(&'static str),
    #[error("bad fragment: {0}")]
    BadFragment(&'static str),
    #[error("signed with key {0}, which this node does not hold")]
    UnknownKey(KeyId),
    #[error("addressed to {to}, not to this node ({me})")]
    NotForMe { to: NodeId, me: NodeId },
    #[error("replay or duplicate of datagram {counter} of {sender} (incarnation {incarnation})")]
    Replayed {
        sender: NodeId,
        incarnation: u64,
        counter: u64,
    },
    #[error("authentic, but not allowed: {0}")]
    Forbidden(&'static str),
}

impl WireError {
    /// A genuine datagram that is simply not needed (a duplicate, a replay,
    /// or one for a former incarnation of this address): count it, log it
    /// at debug level at most.
    pub fn is_benign(&self) -> bool {
        matches!(
            self,
            WireError::Replayed { .. } | WireError::NotForMe { .. }
        )
    }
}

/// A decoded datagram: its header and the messages it carried, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub header: Header,
    pub messages: Vec<Message>,
}
