//! Datagram encoding (with batching and fragmentation) and authenticated
//! decoding. See the module docs of [`crate::wire`] for the layout.

use super::{
    Datagram, Fragment, Header, Message, MessageType, WireConfig, WireError, FRAME_HEADER_LEN,
    HEADER_LEN, MAGIC, MAX_FRAGMENTS, TAG_LEN, VERSION,
};
use crate::ids::{Epoch, NodeId};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

/// Room a fragment's envelope (variant, id, index, count, chunk length) takes
/// in its frame body, at most.
const FRAGMENT_ENVELOPE: usize = 1 + 10 + 3 + 3 + 3;

fn mac(secret: &[u8]) -> HmacSha256 {
    HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length")
}

/// Packs messages into authenticated datagrams for one sender.
#[derive(Clone, Debug)]
pub struct Encoder {
    config: WireConfig,
    sender: NodeId,
    epoch: Epoch,
    next_fragment_id: u64,
    /// Messages dropped because even fragmentation could not carry them.
    pub oversize_dropped: u64,
    /// Messages sent as fragments.
    pub fragmented: u64,
}

impl Encoder {
    pub fn new(config: WireConfig, sender: NodeId, epoch: Epoch) -> Encoder {
        config.validate();
        Encoder {
            config,
            sender,
            epoch,
            next_fragment_id: 1,
            oversize_dropped: 0,
            fragmented: 0,
        }
    }

    /// Fragment IDs start at `incarnation << 32`, so a restarted sender
    /// (with a new incarnation) never reuses the ID of a message whose
    /// fragments a receiver may still hold: its fragments could otherwise
    /// be joined with the new message's.
    pub fn with_incarnation(mut self, incarnation: u32) -> Encoder {
        self.next_fragment_id = (u64::from(incarnation) << 32) | 1;
        self
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Later datagrams carry `epoch` (never lower than before).
    pub fn set_epoch(&mut self, epoch: Epoch) {
        assert!(epoch >= self.epoch, "epochs never go back");
        self.epoch = epoch;
    }

    /// Later datagrams carry `epoch`, whatever it was before (a replica
    /// stamps each message with the epoch it was made in).
    pub fn stamp_epoch(&mut self, epoch: Epoch) {
        self.epoch = epoch;
    }

    /// Room for frames in one datagram.
    fn capacity(&self) -> usize {
        self.config.max_datagram - HEADER_LEN - TAG_LEN
    }

    /// Encodes `messages` (all to one destination) into as few datagrams as
    /// fit, in order. A message larger than a datagram is fragmented.
    pub fn encode(&mut self, messages: &[Message]) -> Vec<Vec<u8>> {
        let capacity = self.capacity();
        let mut datagrams = Vec::new();
        let mut frames: Vec<u8> = Vec::with_capacity(capacity);
        for message in messages {
            let body = postcard::to_allocvec(message).expect("messages always encode");
            if FRAME_HEADER_LEN + body.len() <= capacity {
                self.push_frame(&mut datagrams, &mut frames, message.message_type(), &body);
                continue;
            }
            let chunk_len = capacity - FRAME_HEADER_LEN - FRAGMENT_ENVELOPE;
            let count = body.len().div_ceil(chunk_len);
            if count > usize::from(MAX_FRAGMENTS) {
                tracing::error!(
                    bytes = body.len(),
                    "message too large even for fragments; dropped"
                );
                self.oversize_dropped += 1;
                continue;
            }
            let id = self.next_fragment_id;
            self.next_fragment_id += 1;
            self.fragmented += 1;
            for (index, chunk) in body.chunks(chunk_len).enumerate() {
                let fragment = Message::Fragment(Fragment {
                    id,
                    index: index as u16,
                    count: count as u16,
                    chunk: chunk.to_vec(),
                });
                let fbody = postcard::to_allocvec(&fragment).expect("fragments always encode");
                assert!(
                    FRAME_HEADER_LEN + fbody.len() <= capacity,
                    "fragment overflows"
                );
                self.push_frame(&mut datagrams, &mut frames, MessageType::Fragment, &fbody);
            }
        }
        if !frames.is_empty() {
            datagrams.push(self.seal(&frames));
        }
        datagrams
    }

    fn push_frame(
        &self,
        datagrams: &mut Vec<Vec<u8>>,
        frames: &mut Vec<u8>,
        kind: MessageType,
        body: &[u8],
    ) {
        let len = u16::try_from(body.len()).expect("frame bodies fit a datagram");
        if frames.len() + FRAME_HEADER_LEN + body.len() > self.capacity() {
            datagrams.push(self.seal(frames));
            frames.clear();
        }
        frames.push(kind as u8);
        frames.extend_from_slice(&len.to_le_bytes());
        frames.extend_from_slice(body);
        assert!(frames.len() <= self.capacity());
    }

    fn seal(&self, frames: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + frames.len() + TAG_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&self.config.cluster.to_le_bytes());
        out.extend_from_slice(&self.sender.0.to_le_bytes());
        out.extend_from_slice(&self.epoch.to_le_bytes());
        out.extend_from_slice(frames);
        let mut m = mac(&self.config.secret);
        m.update(&out);
        out.extend_from_slice(&m.finalize().into_bytes());
        assert!(out.len() <= self.config.max_datagram);
        out
    }
}

/// Checks and decodes datagrams of one cluster.
#[derive(Clone, Debug)]
pub struct Decoder {
    config: WireConfig,
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

impl Decoder {
    pub fn new(config: WireConfig) -> Decoder {
        config.validate();
        Decoder { config }
    }

    /// Decodes one datagram. Never panics; every refusal is a [`WireError`].
    pub fn decode(&self, bytes: &[u8]) -> Result<Datagram, WireError> {
        let len = bytes.len();
        if len < HEADER_LEN + TAG_LEN {
            return Err(WireError::TooShort { len });
        }
        if len > self.config.max_datagram {
            return Err(WireError::TooLong {
                len,
                max: self.config.max_datagram,
            });
        }
        if bytes[..4] != MAGIC {
            return Err(WireError::BadMagic);
        }
        if bytes[4] != VERSION {
            return Err(WireError::UnsupportedVersion(bytes[4]));
        }
        let cluster = u64_at(bytes, 5);
        if cluster != self.config.cluster {
            return Err(WireError::ForeignCluster {
                got: cluster,
                expected: self.config.cluster,
            });
        }
        let (signed, tag) = bytes.split_at(len - TAG_LEN);
        let mut m = mac(&self.config.secret);
        m.update(signed);
        m.verify_slice(tag).map_err(|_| WireError::BadTag)?;
        let header = Header {
            cluster,
            sender: NodeId(u64_at(bytes, 13)),
            epoch: u64_at(bytes, 21),
        };
        let mut rest = &signed[HEADER_LEN..];
        let mut messages = Vec::new();
        if rest.is_empty() {
            return Err(WireError::Malformed("no frames"));
        }
        while !rest.is_empty() {
            if rest.len() < FRAME_HEADER_LEN {
                return Err(WireError::Malformed("truncated frame header"));
            }
            let kind = MessageType::from_byte(rest[0]).ok_or(WireError::UnknownType(rest[0]))?;
            let body_len = usize::from(u16::from_le_bytes([rest[1], rest[2]]));
            let after = &rest[FRAME_HEADER_LEN..];
            if after.len() < body_len {
                return Err(WireError::Malformed("frame longer than datagram"));
            }
            let (body, next) = after.split_at(body_len);
            let message = decode_message(body)?;
            if message.message_type() != kind {
                return Err(WireError::Malformed("type byte disagrees with body"));
            }
            if let Message::Fragment(f) = &message {
                check_fragment(f)?;
            }
            messages.push(message);
            rest = next;
        }
        Ok(Datagram { header, messages })
    }
}

/// Decodes exactly one message from `body` (no trailing bytes allowed).
pub(super) fn decode_message(body: &[u8]) -> Result<Message, WireError> {
    let (message, trailing) = postcard::take_from_bytes::<Message>(body)
        .map_err(|_| WireError::Malformed("undecodable message body"))?;
    if !trailing.is_empty() {
        return Err(WireError::Malformed("trailing bytes after message"));
    }
    Ok(message)
}

fn check_fragment(f: &Fragment) -> Result<(), WireError> {
    if f.count == 0 || f.count > MAX_FRAGMENTS {
        return Err(WireError::BadFragment("fragment count out of range"));
    }
    if f.index >= f.count {
        return Err(WireError::BadFragment("fragment index beyond count"));
    }
    if f.chunk.is_empty() {
        return Err(WireError::BadFragment("empty fragment"));
    }
    Ok(())
}
