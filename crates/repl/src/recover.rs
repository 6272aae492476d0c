//! A replica's starting point, rebuilt from what it holds durably.
//!
//! The shell builds a [`Recovered`] from its [`Store`] with
//! [`Recovered::from_store`] (that reads the database, so it belongs to the
//! shell's start-up, not to the protocol), or the simulator builds one from
//! its in-memory log.

use crate::ids::Position;
use crate::session::Sessions;
use dcms_core::{ClinicState, RequestKey, Store, StoreError};

/// Durable state a replica starts from.
#[derive(Clone, Debug)]
pub struct Recovered {
    pub state: ClinicState,
    /// The last durably applied log position (0 when empty).
    pub last_applied: Position,
    /// Stream heads and recent replies, for duplicate detection.
    pub sessions: Sessions,
}

impl Recovered {
    /// An empty replica.
    pub fn empty(reply_cache: usize) -> Recovered {
        Recovered {
            state: ClinicState::new(),
            last_applied: 0,
            sessions: Sessions::new(reply_cache),
        }
    }

    /// Reads the state, last applied position, stream heads and the last
    /// `reply_cache` replies of every stream from `store`.
    pub fn from_store(store: &Store, reply_cache: usize) -> Result<Recovered, StoreError> {
        let mut sessions = Sessions::new(reply_cache);
        for head in store.stream_heads()? {
            sessions.preload_head(head);
            let first = head.seq.saturating_sub(reply_cache as u64 - 1).max(1);
            for seq in first..=head.seq {
                let key = RequestKey {
                    stream: head.stream,
                    seq,
                };
                if let Some((position, reply)) = store.reply(key)? {
                    sessions.preload(key, position, reply);
                }
            }
        }
        Ok(Recovered {
            state: store.load_state()?,
            last_applied: store.last_applied(),
            sessions,
        })
    }
}
