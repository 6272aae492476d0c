//! A replica's starting point, built from what it holds durably.
//!
//! The shell reads its store at start-up (in `dcms-node`, `recover.rs`)
//! and hands the values to [`Recovered::from_loaded`]; the simulator builds
//! a [`Recovered`] from its in-memory disk. Nothing here reads a disk.

use crate::ids::Position;
use crate::replica::Meta;
use crate::session::Sessions;
use dcms_core::store::LogHash;
use dcms_core::{ClinicState, Reply, RequestKey, Retained};

/// Durable state a replica starts from.
#[derive(Clone, Debug)]
pub struct Recovered {
    pub state: ClinicState,
    /// The last durably applied log position (0 when empty).
    pub last_applied: Position,
    /// The log's chained hash at `last_applied`, when known.
    pub log_hash: Option<LogHash>,
    /// Stream heads and recent replies, for duplicate detection.
    pub sessions: Sessions,
    /// The durable [`Meta`] the shell wrote last (`None` at the group's
    /// first start: the configured leader leads the configured epoch).
    pub meta: Option<Meta>,
}

/// What a shell loaded from its durable store, for
/// [`Recovered::from_loaded`].
#[derive(Clone, Debug)]
pub struct Loaded {
    pub state: ClinicState,
    /// The last durably applied log position (0 when empty).
    pub last_applied: Position,
    /// The log's chained hash at `last_applied`, when known.
    pub log_hash: Option<LogHash>,
    /// Every stream's head: its highest executed number.
    pub heads: Vec<RequestKey>,
    /// The stored replies of [`Recovered::kept_replies`] of each head (the
    /// request, its log position, its reply); those the store no longer
    /// holds are left out.
    pub replies: Vec<(RequestKey, Position, Reply)>,
    /// The retained replies of FT requests.
    pub retained: Vec<Retained>,
}

impl Recovered {
    /// An empty replica.
    pub fn empty(reply_cache: usize) -> Recovered {
        Recovered {
            state: ClinicState::new(),
            last_applied: 0,
            log_hash: Some(LogHash::EMPTY),
            sessions: Sessions::new(reply_cache),
            meta: None,
        }
    }

    /// The requests of `head`'s stream whose replies a replica keeps: the
    /// newest `reply_cache` numbers up to the head. The shell loads these.
    pub fn kept_replies(head: RequestKey, reply_cache: usize) -> impl Iterator<Item = RequestKey> {
        let first = head.seq.saturating_sub(reply_cache as u64 - 1).max(1);
        (first..=head.seq).map(move |seq| RequestKey {
            stream: head.stream,
            seq,
        })
    }

    /// The starting point of a replica whose store held `loaded`: the
    /// state, the last applied position and its log hash, and sessions
    /// with every stream's head, its stored replies (at most `reply_cache`
    /// per stream) and the retained FT replies. `meta` is left `None`: the
    /// shell sets it from its meta file.
    pub fn from_loaded(loaded: Loaded, reply_cache: usize) -> Recovered {
        let mut sessions = Sessions::new(reply_cache);
        for head in loaded.heads {
            sessions.preload_head(head);
        }
        for (key, position, reply) in loaded.replies {
            sessions.preload(key, position, reply);
        }
        for r in loaded.retained {
            sessions.preload_retained(r);
        }
        Recovered {
            state: loaded.state,
            last_applied: loaded.last_applied,
            log_hash: loaded.log_hash,
            sessions,
            meta: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::Lookup;
    use dcms_core::{Counts, Outcome};

    #[test]
    fn the_kept_replies_are_the_newest_up_to_the_head() {
        let key = |stream, seq| RequestKey { stream, seq };
        let kept: Vec<RequestKey> = Recovered::kept_replies(key(7, 5), 3).collect();
        assert_eq!(kept, vec![key(7, 3), key(7, 4), key(7, 5)]);
        assert_eq!(Recovered::kept_replies(key(7, 2), 3).count(), 2);
        assert_eq!(Recovered::kept_replies(key(7, 0), 3).count(), 0);
    }

    #[test]
    fn a_loaded_store_gives_heads_replies_and_the_log_position() {
        let reply: Reply = Ok(Outcome::Counts(Counts([1, 2, 3])));
        let key = |seq| RequestKey { stream: 100, seq };
        let loaded = Loaded {
            state: ClinicState::new(),
            last_applied: 9,
            log_hash: None,
            heads: vec![
                key(5),
                RequestKey {
                    stream: 200,
                    seq: 2,
                },
            ],
            // Seq 3's reply is gone from the store.
            replies: vec![(key(4), 8, reply.clone()), (key(5), 9, reply.clone())],
            retained: Vec::new(),
        };
        let recovered = Recovered::from_loaded(loaded, 3);
        assert_eq!((recovered.last_applied, recovered.log_hash), (9, None));
        assert!(recovered.meta.is_none(), "the shell sets meta");
        let s = &recovered.sessions;
        assert_eq!((s.head(100), s.head(200)), (5, 2));
        assert_eq!(
            s.lookup(key(5)),
            Lookup::Executed {
                position: 9,
                reply: &reply
            }
        );
        assert_eq!(s.lookup(key(3)), Lookup::Forgotten);
        assert_eq!(s.lookup(key(6)), Lookup::NotExecuted);
    }
}
