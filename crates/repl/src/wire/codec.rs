//! Datagram encoding (with batching and fragmentation) and authenticated
//! decoding. See the module docs of [`crate::wire`] for the layout.

use super::{
    Datagram, Fragment, Header, KeyId, Message, MessageType, ReplayWindow, WireConfig, WireError,
    DEFAULT_MAX_SENDERS, FRAME_HEADER_LEN, HEADER_LEN, MAGIC, MAX_FRAGMENTS, TAG_LEN, VERSION,
};
use crate::ids::{Epoch, NodeId};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};

type HmacSha256 = Hmac<Sha256>;

/// Room a fragment's envelope (variant, id, index, count, chunk length) takes
/// in its frame body, at most.
const FRAGMENT_ENVELOPE: usize = 1 + 10 + 3 + 3 + 3;

/// One keyed HMAC per key held (cloning a keyed state is cheaper than
/// keying again for every datagram).
fn macs(config: &WireConfig) -> BTreeMap<KeyId, HmacSha256> {
    config
        .keys
        .iter()
        .map(|(&id, secret)| {
            let mac = HmacSha256::new_from_slice(secret).expect("HMAC takes keys of any length");
            (id, mac)
        })
        .collect()
}

/// Packs messages into authenticated, addressed, numbered datagrams for one
/// sender.
#[derive(Clone)]
pub struct Encoder {
    config: WireConfig,
    macs: BTreeMap<KeyId, HmacSha256>,
    sender: NodeId,
    epoch: Epoch,
    incarnation: u64,
    /// The last datagram's number to each destination in this incarnation
    /// (dense per destination, so a receiver's window measures reordering
    /// of its own datagrams only).
    counters: HashMap<NodeId, u64>,
    /// The highest number issued to anybody: a destination without an
    /// entry (new, or forgotten) continues above it, so numbers never go
    /// back for any receiver, whatever is forgotten.
    highest: u64,
    next_fragment_id: u64,
    /// Messages dropped because even fragmentation could not carry them.
    pub oversize_dropped: u64,
    /// Messages dropped because this node does not hold the key to sign
    /// them with.
    pub unkeyed_dropped: u64,
    /// Messages sent as fragments.
    pub fragmented: u64,
}

impl std::fmt::Debug for Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Encoder")
            .field("sender", &self.sender)
            .field("epoch", &self.epoch)
            .field("incarnation", &self.incarnation)
            .field("highest", &self.highest)
            .finish_non_exhaustive()
    }
}

impl Encoder {
    pub fn new(config: WireConfig, sender: NodeId, epoch: Epoch) -> Encoder {
        config.validate();
        Encoder {
            macs: macs(&config),
            config,
            sender,
            epoch,
            incarnation: 0,
            counters: HashMap::new(),
            highest: 0,
            next_fragment_id: 1,
            oversize_dropped: 0,
            unkeyed_dropped: 0,
            fragmented: 0,
        }
    }

    /// Datagrams carry `incarnation`, which must be higher at every start
    /// of the same sender (receivers refuse an older one as a replay): the
    /// start time in microseconds, or a counter kept on disk.
    pub fn with_incarnation(mut self, incarnation: u64) -> Encoder {
        self.incarnation = incarnation;
        self
    }

    pub fn incarnation(&self) -> u64 {
        self.incarnation
    }

    /// Destinations with a counter here (at most [`super::DEFAULT_MAX_SENDERS`]).
    pub fn destinations(&self) -> usize {
        self.counters.len()
    }

    /// Forgets `to`'s counter (it expired); later datagrams to it continue
    /// above every number issued so far.
    pub fn forget(&mut self, to: NodeId) {
        self.counters.remove(&to);
    }

    /// The next number for `to`.
    fn next_counter(&mut self, to: NodeId) -> u64 {
        if self.counters.len() >= super::DEFAULT_MAX_SENDERS && !self.counters.contains_key(&to) {
            // Bounded; forgetting is always safe (see `highest`).
            let any = *self.counters.keys().next().expect("not empty");
            self.counters.remove(&any);
        }
        let highest = self.highest;
        let c = self.counters.entry(to).or_insert(highest);
        *c += 1;
        self.highest = self.highest.max(*c);
        *c
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

    /// Encodes `messages` for `to`, signed with `key`, into as few
    /// datagrams as fit, in order. A message larger than a datagram is
    /// fragmented. Without `key`, nothing is sent (counted in
    /// `unkeyed_dropped`).
    pub fn encode(&mut self, key: KeyId, to: NodeId, messages: &[Message]) -> Vec<Vec<u8>> {
        let Some(mac) = self.macs.get(&key).cloned() else {
            tracing::error!(key, %to, "no key to sign with; messages dropped");
            self.unkeyed_dropped += messages.len() as u64;
            return Vec::new();
        };
        let mut sealer = Sealer {
            mac,
            key,
            to,
            datagrams: Vec::new(),
        };
        let capacity = self.capacity();
        let mut frames: Vec<u8> = Vec::with_capacity(capacity);
        for message in messages {
            let body = postcard::to_allocvec(message).expect("messages always encode");
            if FRAME_HEADER_LEN + body.len() <= capacity {
                self.push_frame(&mut sealer, &mut frames, message.message_type(), &body);
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
                self.push_frame(&mut sealer, &mut frames, MessageType::Fragment, &fbody);
            }
        }
        if !frames.is_empty() {
            self.seal(&mut sealer, &frames);
        }
        sealer.datagrams
    }

    fn push_frame(
        &mut self,
        sealer: &mut Sealer,
        frames: &mut Vec<u8>,
        kind: MessageType,
        body: &[u8],
    ) {
        let len = u16::try_from(body.len()).expect("frame bodies fit a datagram");
        if frames.len() + FRAME_HEADER_LEN + body.len() > self.capacity() {
            self.seal(sealer, frames);
            frames.clear();
        }
        frames.push(kind as u8);
        frames.extend_from_slice(&len.to_le_bytes());
        frames.extend_from_slice(body);
        assert!(frames.len() <= self.capacity());
    }

    fn seal(&mut self, sealer: &mut Sealer, frames: &[u8]) {
        let counter = self.next_counter(sealer.to);
        let mut out = Vec::with_capacity(HEADER_LEN + frames.len() + TAG_LEN);
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        for v in [
            self.config.cluster,
            sealer.key,
            self.sender.0,
            sealer.to.0,
            self.epoch,
            self.incarnation,
            counter,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        debug_assert_eq!(out.len(), HEADER_LEN);
        out.extend_from_slice(frames);
        let mut m = sealer.mac.clone();
        m.update(&out);
        out.extend_from_slice(&m.finalize().into_bytes());
        assert!(out.len() <= self.config.max_datagram);
        sealer.datagrams.push(out);
    }
}

/// The datagrams of one `encode` call and how to seal them.
struct Sealer {
    mac: HmacSha256,
    key: KeyId,
    to: NodeId,
    datagrams: Vec<Vec<u8>>,
}

/// A sender's replay window, and when it was last used.
#[derive(Clone, Debug)]
struct Heard {
    window: ReplayWindow,
    /// The decoder's count of accepted datagrams at the last one.
    used: u64,
}

/// Checks and decodes the datagrams addressed to one node: tag, addressee
/// and replay window.
#[derive(Clone)]
pub struct Decoder {
    config: WireConfig,
    macs: BTreeMap<KeyId, HmacSha256>,
    me: NodeId,
    /// Keyed by (key, sender): a holder of one key cannot touch the windows
    /// of senders that use another (a front end claiming a replica's ID
    /// must not make that replica's genuine datagrams look like replays).
    windows: HashMap<(KeyId, NodeId), Heard>,
    max_senders: usize,
    accepted: u64,
    /// Replay windows forgotten to make room for a new sender.
    pub senders_evicted: u64,
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("me", &self.me)
            .field("senders", &self.windows.len())
            .finish_non_exhaustive()
    }
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&bytes[at..at + 8]);
    u64::from_le_bytes(b)
}

impl Decoder {
    /// A decoder for datagrams addressed to `me` (a replica's ID or a front
    /// end's stream).
    pub fn new(config: WireConfig, me: NodeId) -> Decoder {
        config.validate();
        Decoder {
            macs: macs(&config),
            config,
            me,
            windows: HashMap::new(),
            max_senders: DEFAULT_MAX_SENDERS,
            accepted: 0,
            senders_evicted: 0,
        }
    }

    /// Keeps replay windows for at most `max` senders.
    pub fn with_max_senders(mut self, max: usize) -> Decoder {
        assert!(max > 0);
        self.max_senders = max;
        self
    }

    /// Senders with a replay window here.
    pub fn senders(&self) -> usize {
        self.windows.len()
    }

    /// Drops the replay window of `sender` under `key` (it expired).
    pub fn forget(&mut self, key: KeyId, sender: NodeId) {
        self.windows.remove(&(key, sender));
    }

    /// Decodes one datagram. Never panics; every refusal is a [`WireError`]
    /// and changes nothing here.
    pub fn decode(&mut self, bytes: &[u8]) -> Result<Datagram, WireError> {
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
        let key = u64_at(bytes, 13);
        let mut m = self
            .macs
            .get(&key)
            .cloned()
            .ok_or(WireError::UnknownKey(key))?;
        let (signed, tag) = bytes.split_at(len - TAG_LEN);
        m.update(signed);
        m.verify_slice(tag).map_err(|_| WireError::BadTag)?;
        let header = Header {
            cluster,
            key,
            sender: NodeId(u64_at(bytes, 21)),
            to: NodeId(u64_at(bytes, 29)),
            epoch: u64_at(bytes, 37),
            incarnation: u64_at(bytes, 45),
            counter: u64_at(bytes, 53),
        };
        if header.to != self.me {
            return Err(WireError::NotForMe {
                to: header.to,
                me: self.me,
            });
        }
        let origin = (header.key, header.sender);
        let known = self.windows.get(&origin);
        if known.is_some_and(|h| !h.window.is_fresh(header.incarnation, header.counter)) {
            return Err(WireError::Replayed {
                sender: header.sender,
                incarnation: header.incarnation,
                counter: header.counter,
            });
        }
        let messages = decode_frames(&signed[HEADER_LEN..])?;
        self.accepted += 1;
        let used = self.accepted;
        match self.windows.get_mut(&origin) {
            Some(h) => {
                h.window.accept(header.incarnation, header.counter);
                h.used = used;
            }
            None => {
                if self.windows.len() >= self.max_senders {
                    self.evict_least_recent();
                }
                let window = ReplayWindow::first(header.incarnation, header.counter);
                self.windows.insert(origin, Heard { window, used });
            }
        }
        Ok(Datagram { header, messages })
    }

    fn evict_least_recent(&mut self) {
        let oldest = self
            .windows
            .iter()
            .min_by_key(|(_, h)| h.used)
            .map(|(&s, _)| s);
        if let Some(s) = oldest {
            self.windows.remove(&s);
            self.senders_evicted += 1;
        }
    }
}

/// The frames of an authenticated datagram.
fn decode_frames(mut rest: &[u8]) -> Result<Vec<Message>, WireError> {
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
    Ok(messages)
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
