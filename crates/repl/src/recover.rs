//! A replica's starting point, rebuilt from what it holds durably.
//!
//! The shell builds a [`Recovered`] from its [`Store`] with
//! [`Recovered::from_store`] (that reads the database, so it belongs to the
//! shell's start-up, not to the protocol), or the simulator builds one from
//! its in-memory log.

use crate::ids::Position;
use crate::replica::Meta;
use crate::session::Sessions;
use dcms_core::store::LogHash;
use dcms_core::{ClinicState, RequestKey, Store, StoreError};

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
        for r in store.retained()? {
            sessions.preload_retained(r);
        }
        Ok(Recovered {
            state: store.load_state()?,
            last_applied: store.last_applied(),
            log_hash: store.log_hash(),
            sessions,
            meta: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ids::NodeId;
    use crate::replica::{Replica, ReplicaConfig};
    use crate::wire::{Decoder, Encoder, Message, WireConfig};

    const FE: NodeId = NodeId(100);
    use dcms_core::{Request, SyncMode};

    fn wire() -> WireConfig {
        WireConfig::new(1, b"k".to_vec()).with_key(FE.0, b"fe".to_vec())
    }

    fn leader(recovered: Recovered) -> Replica {
        let group = vec![NodeId(1), NodeId(2), NodeId(3)];
        let mut config = ReplicaConfig::new(wire(), NodeId(1), group, NodeId(1));
        config.heartbeat_ms = 0;
        Replica::new(config, recovered)
    }

    fn request(seq: u64) -> Vec<u8> {
        let request = Request::CreateDoctor {
            manager_id: "LVL0001".into(),
            first_name: "Ann".into(),
            last_name: format!("Roy{seq}"),
            address: "1 Main St".into(),
            phone: "514-555-0199".into(),
            specialization: "surgeon".into(),
            location: "lvl".into(),
        };
        Encoder::new(wire(), FE, 1)
            .with_incarnation(crate::wire::next_test_incarnation())
            .encode(
                FE.0,
                NodeId(1),
                &[Message::Request {
                    seq,
                    request,
                    ft: None,
                }],
            )
            .remove(0)
    }

    #[test]
    fn a_replica_restarts_from_its_store_without_executing_twice() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = Store::open(dir.path().join("r.db"), SyncMode::Normal).unwrap();
        let mut first = leader(Recovered::empty(8));
        for seq in 1..=5 {
            first.handle_datagram(0, &request(seq)).unwrap();
        }
        let persist = first.ready().persist;
        assert_eq!(persist.len(), 5);
        store.commit_batch(&persist).unwrap();

        let recovered = Recovered::from_store(&store, 3).unwrap();
        assert_eq!(recovered.last_applied, 5);
        assert_eq!(recovered.state.digest(), first.digest());
        assert_eq!(recovered.sessions.head(100), 5);
        let key = |seq| RequestKey { stream: 100, seq };
        assert_eq!(
            recovered.sessions.lookup(key(2)),
            crate::session::Lookup::Forgotten
        );

        let mut again = leader(recovered);
        assert_eq!(again.committed(), 5, "recovered entries count as committed");
        again.handle_datagram(1, &request(4)).unwrap();
        let ready = again.ready();
        assert!(
            ready.persist.is_empty(),
            "a retransmit is not executed again"
        );
        let sent = Decoder::new(wire(), FE)
            .decode(&ready.transmits[0].bytes)
            .unwrap();
        let stored = persist.entries()[3].reply.clone();
        assert_eq!(
            sent.messages,
            vec![Message::Reply {
                seq: 4,
                reply: stored
            }]
        );
        again.handle_datagram(2, &request(6)).unwrap();
        let persist = again.ready().persist;
        assert_eq!(
            persist.entries()[0].position,
            6,
            "execution continues after the log"
        );
        assert_eq!(persist.entries()[0].key, key(6));
    }
}
