//! The protocol's messages and their datagram encoding.
//!
//! A datagram is
//!
//! ```text
//! "DCMS" | version (1 byte) | cluster u64 | sender u64 | epoch u64   (header, little-endian)
//! | frame* | HMAC-SHA256 tag (32 bytes)
//! frame = type (1 byte) | length u16 LE | postcard(Message)
//! ```
//!
//! The tag covers everything before it and is keyed by the cluster secret, so
//! a corrupted, truncated or forged datagram is refused before any frame is
//! parsed. Several messages to one destination share a datagram (batching);
//! a message too large for one datagram travels as [`Fragment`]s that the
//! receiver's [`Reassembler`] joins again. Every decoding failure is a typed
//! [`WireError`]; decoding never panics, whatever the bytes.
//!
//! Replay protection: no per-sender nonce. Every message is idempotent by
//! construction: requests are deduplicated by (stream, seq), log entries by
//! position, acks are cumulative (a replayed old ack never lowers what the
//! leader knows), NACKs only cause resends of what the receiver is missing,
//! and messages of an older epoch are refused. So a replayed datagram can
//! at worst cause a redundant resend, never a second execution or a wrong
//! reply; and the tag stops anyone without the secret from making new ones.

mod codec;
mod fragment;
#[cfg(test)]
mod tests;

pub use codec::{Decoder, Encoder};
pub use fragment::Reassembler;

use crate::ids::{ClusterId, Epoch, NodeId, Position, Seq};
use dcms_core::store::LogHash;
use dcms_core::{LogEntry, Reply, Request, StateDigest};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// The first bytes of every datagram.
pub const MAGIC: [u8; 4] = *b"DCMS";
/// The encoding version this code writes and reads.
pub const VERSION: u8 = 1;
/// Bytes before the first frame: magic, version, cluster, sender, epoch.
pub const HEADER_LEN: usize = 4 + 1 + 8 + 8 + 8;
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

/// What each endpoint needs to encode and check datagrams.
#[derive(Clone, Debug)]
pub struct WireConfig {
    pub cluster: ClusterId,
    /// The cluster secret keying the HMAC.
    pub secret: Vec<u8>,
    /// Largest datagram to send and accept, in bytes.
    pub max_datagram: usize,
}

impl WireConfig {
    pub fn new(cluster: ClusterId, secret: impl Into<Vec<u8>>) -> WireConfig {
        WireConfig {
            cluster,
            secret: secret.into(),
            max_datagram: DEFAULT_MAX_DATAGRAM,
        }
    }

    /// Panics on a setting no datagram can work with.
    pub fn validate(&self) {
        assert!(
            !self.secret.is_empty(),
            "the cluster secret must not be empty"
        );
        assert!(
            (MIN_MAX_DATAGRAM..=MAX_MAX_DATAGRAM).contains(&self.max_datagram),
            "max_datagram {} outside {MIN_MAX_DATAGRAM}..={MAX_MAX_DATAGRAM}",
            self.max_datagram
        );
    }
}

/// The authenticated header of a datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub cluster: ClusterId,
    pub sender: NodeId,
    /// The sender's epoch: the leader's term it believes in.
    pub epoch: Epoch,
}

/// Part of a message too large for one datagram.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fragment {
    /// Unique per sender (a counter); a resend gets a new ID.
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
    /// Front end to leader: request `seq` of the sender's stream.
    Request { seq: Seq, request: Request },
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
    /// State transfer: keep your log up to `trust` (or install `snapshot`
    /// first), then apply `entries`. `epoch_start` is the position the
    /// epoch's log starts from.
    Sync {
        trust: Position,
        snapshot: Option<Box<crate::snapshot::Snapshot>>,
        entries: Vec<LogEntry>,
        epoch_start: Position,
    },
    /// Replica to a front end: the leader of the header's epoch.
    LeaderIs { leader: NodeId },
    /// Leader to front end: request `seq` was not executed, because this
    /// leader does not reach a majority of the group (it will be, once it
    /// does or another leader takes over; the front end keeps retrying).
    Unavailable { seq: Seq, reason: String },
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
}

/// A decoded datagram: its header and the messages it carried, in order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub header: Header,
    pub messages: Vec<Message>,
}
