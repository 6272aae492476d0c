//! Joins the fragments of large messages again.
//!
//! Memory is bounded: at most [`MAX_PARTIAL`] messages are being assembled
//! at once (the oldest is dropped to make room) and at most
//! [`MAX_PARTIAL_BYTES`] bytes are held. A lost fragment loses the whole
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

/// Fragment reassembly, keyed by (sender, fragment ID).
#[derive(Debug, Default)]
pub struct Reassembler {
    partial: HashMap<(NodeId, u64), Partial>,
    /// Keys in arrival order, for eviction.
    order: VecDeque<(NodeId, u64)>,
    bytes: usize,
    /// Partial messages dropped to make room.
    pub evicted: u64,
}

impl Reassembler {
    pub fn new() -> Reassembler {
        Reassembler::default()
    }

    /// Adds a (checked) fragment; returns the whole message once every part
    /// has arrived.
    pub fn push(&mut self, sender: NodeId, f: Fragment) -> Result<Option<Message>, WireError> {
        let key = (sender, f.id);
        if !self.partial.contains_key(&key) {
            while self.partial.len() >= MAX_PARTIAL
                || self.bytes + f.chunk.len() > MAX_PARTIAL_BYTES
            {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                if let Some(p) = self.partial.remove(&old) {
                    self.bytes -= p.bytes;
                    self.evicted += 1;
                }
            }
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
        let p = self.partial.get_mut(&key).expect("just inserted");
        if p.chunks.len() != usize::from(f.count) {
            return Err(WireError::BadFragment("fragment count changed"));
        }
        let slot = &mut p.chunks[usize::from(f.index)];
        if slot.is_some() {
            return Ok(None); // a duplicate
        }
        p.bytes += f.chunk.len();
        self.bytes += f.chunk.len();
        *slot = Some(f.chunk);
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
