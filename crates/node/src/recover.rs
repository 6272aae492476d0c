//! A replica's start-up read of its store: the state, the last applied
//! position and its log hash, every stream's head with its newest replies,
//! and the retained FT replies, handed to [`Recovered::from_loaded`]. The
//! protocol crate reads no disk: this is the shell's part of recovery.

use dcms_core::{Store, StoreError};
use dcms_repl::recover::Loaded;
use dcms_repl::Recovered;

/// Reads the state, last applied position, stream heads and the last
/// `reply_cache` replies of every stream from `store`.
pub fn from_store(store: &Store, reply_cache: usize) -> Result<Recovered, StoreError> {
    let heads = store.stream_heads()?;
    let mut replies = Vec::new();
    for &head in &heads {
        for key in Recovered::kept_replies(head, reply_cache) {
            if let Some((position, reply)) = store.reply(key)? {
                replies.push((key, position, reply));
            }
        }
    }
    let retained = store.retained()?;
    let loaded = Loaded {
        state: store.load_state()?,
        last_applied: store.last_applied(),
        log_hash: store.log_hash(),
        heads,
        replies,
        retained,
    };
    Ok(Recovered::from_loaded(loaded, reply_cache))
}

#[cfg(test)]
mod tests {
    use super::*;
    use dcms_core::{DoctorFields, Request, RequestKey, SyncMode};
    use dcms_repl::session::Lookup;
    use dcms_repl::wire::{Decoder, Encoder, Message, WireConfig};
    use dcms_repl::{NodeId, Replica, ReplicaConfig};
    use std::sync::atomic::{AtomicU64, Ordering};

    const FE: NodeId = NodeId(100);

    fn wire() -> WireConfig {
        WireConfig::new(1, b"k".to_vec()).with_key(FE.0, b"fe".to_vec())
    }

    fn leader(recovered: Recovered) -> Replica {
        let group = vec![NodeId(1), NodeId(2), NodeId(3)];
        let mut config = ReplicaConfig::new(wire(), NodeId(1), group, NodeId(1));
        config.heartbeat_ms = 0;
        Replica::new(config, recovered)
    }

    /// A new sender incarnation for every datagram (each comes from a
    /// fresh encoder, which would otherwise look like a replay).
    fn next_incarnation() -> u64 {
        static NEXT: AtomicU64 = AtomicU64::new(1);
        NEXT.fetch_add(1, Ordering::Relaxed)
    }

    fn request(seq: u64) -> Vec<u8> {
        let request = Request::CreateDoctor {
            manager_id: "LVL0001".into(),
            fields: DoctorFields {
                first_name: "Ann".into(),
                last_name: format!("Roy{seq}"),
                address: "1 Main St".into(),
                phone: "514-555-0199".into(),
                specialization: "surgeon".into(),
                location: "lvl".into(),
            },
        };
        Encoder::new(wire(), FE, 1)
            .with_incarnation(next_incarnation())
            .encode(
                FE.0,
                NodeId(1),
                &[Message::Request {
                    seq,
                    request,
                    ft: None,
                    authenticated: None,
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

        let recovered = from_store(&store, 3).unwrap();
        assert_eq!(recovered.last_applied, 5);
        assert_eq!(recovered.state.digest(), first.digest());
        assert_eq!(recovered.sessions.head(100), 5);
        let key = |seq| RequestKey { stream: 100, seq };
        assert_eq!(recovered.sessions.lookup(key(2)), Lookup::Forgotten);

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
