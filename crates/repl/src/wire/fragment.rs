//! Joins the fragments of large messages again.
//!
//! Memory is bounded: at most [`MAX_PARTIAL`] messages are being assembled
//! at once (the oldest is dropped to make room) and at most
//! [`MAX_PARTIAL_BYTES`] bytes are held, counted at every fragment. A lost fragment loses the whole
//! message; the protocol's retransmission resends it with a new fragment ID.

use super::codec::decode_message;
use super::{Fragment, Message, WireError};
use crate::ids::NodeId;
use std::collections::{HashMap, VecDeque};

/// Messages assembled at once, at most.
pub const MAX_PARTIAL: usize = 64;
/// Bytes held in partial messages, at most.
pub const MAX_PARTIAL_BYTES: usize = 64 * 1024 * 1024;

#[derive(Debug)]
struct Partial {
    chunks: Vec<Option<Vec<u8>>>,
    received: usize,
    bytes: usize,
}

/// Who sent a fragment: its sender and the sender's incarnation (fragment
/// IDs restart at every start of a sender).
type Origin = (NodeId, u64);

/// Fragment reassembly, keyed by (sender, incarnation, fragment ID).
#[derive(Debug, Default)]
pub struct Reassembler {
    partial: HashMap<(Origin, u64), Partial>,
    /// Keys in arrival order, for eviction.
    order: VecDeque<(Origin, u64)>,
    bytes: usize,
    /// Partial messages dropped to make room.
    pub evicted: u64,
}

impl Reassembler {
    pub fn new() -> Reassembler {
        Reassembler::default()
    }

    /// Bytes held in partial messages.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Drops the oldest partial message other than `keep`; false when
    /// there is none.
    fn evict_one(&mut self, keep: (Origin, u64)) -> bool {
        let Some(i) = self.order.iter().position(|k| *k != keep) else {
            return false;
        };
        let old = self.order.remove(i).expect("in range");
        if let Some(p) = self.partial.remove(&old) {
            self.bytes -= p.bytes;
            self.evicted += 1;
        }
        true
    }

    /// Adds a (checked) fragment from `sender` in its `incarnation`;
    /// returns the whole message once every part has arrived. Every
    /// fragment counts against [`MAX_PARTIAL_BYTES`]: older partial messages
    /// are dropped to make room, and a message that alone would exceed it
    /// is dropped with an error.
    pub fn push(
        &mut self,
        sender: NodeId,
        incarnation: u64,
        f: Fragment,
    ) -> Result<Option<Message>, WireError> {
        let key = ((sender, incarnation), f.id);
        if !self.partial.contains_key(&key) {
            while self.partial.len() >= MAX_PARTIAL && self.evict_one(key) {}
            self.partial.insert(
                key,
                Partial {
                    chunks: vec![None; usize::from(f.count)],
                    received: 0,
                    bytes: 0,
                },
            );
            self.order.push_back(key);
        }
        let p = self.partial.get(&key).expect("just inserted");
        if p.chunks.len() != usize::from(f.count) {
            return Err(WireError::BadFragment("fragment count changed"));
        }
        if p.chunks[usize::from(f.index)].is_some() {
            return Ok(None); // a duplicate
        }
        while self.bytes + f.chunk.len() > MAX_PARTIAL_BYTES {
            if !self.evict_one(key) {
                let p = self.partial.remove(&key).expect("present");
                self.order.retain(|k| *k != key);
                self.bytes -= p.bytes;
                self.evicted += 1;
                return Err(WireError::BadFragment("message too large to reassemble"));
            }
        }
        let p = self.partial.get_mut(&key).expect("present");
        p.bytes += f.chunk.len();
        self.bytes += f.chunk.len();
        p.chunks[usize::from(f.index)] = Some(f.chunk);
        p.received += 1;
        if p.received < p.chunks.len() {
            return Ok(None);
        }
        let p = self.partial.remove(&key).expect("present");
        self.order.retain(|k| *k != key);
        self.bytes -= p.bytes;
        let whole: Vec<u8> = p.chunks.into_iter().flatten().flatten().collect();
        match decode_message(&whole)? {
            Message::Fragment(_) => Err(WireError::BadFragment("nested fragment")),
            message => Ok(Some(message)),
        }
    }
}
