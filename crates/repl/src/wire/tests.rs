//! Codec tests: round trips (with batching and fragmentation) as properties,
//! random and mutated bytes never panic and are always refused, and each
//! refusal reason is reported as its own typed error.

use super::*;
use dcms_core::{AuditEntry, DomainError, Effect, Outcome, RecordId, RecordKind, RequestKey};
use proptest::prelude::*;
use std::sync::Arc;

const SECRET: &[u8] = b"test secret";
/// The receiver in these tests.
const ME: NodeId = NodeId(4);

fn decoder(max: usize) -> Decoder {
    Decoder::new(config(max), ME)
}

fn encoder(max: usize) -> Encoder {
    Encoder::new(config(max), NodeId(3), 9)
}

fn config(max: usize) -> WireConfig {
    let mut c = WireConfig::new(7, SECRET);
    c.max_datagram = max;
    c
}

fn request() -> impl Strategy<Value = Request> {
    prop_oneof![
        (".{0,12}", ".{0,40}").prop_map(|(manager_id, record_id)| Request::GetRecord {
            manager_id,
            record_id
        }),
        ".{0,12}".prop_map(|manager_id| Request::GetRecordCounts { manager_id }),
        (".{0,12}", ".{0,300}", ".{0,30}", ".{0,30}").prop_map(|(m, a, b, c)| {
            Request::EditRecord {
                manager_id: m,
                record_id: a,
                field_name: b,
                new_value: c,
            }
        }),
    ]
}

fn reply() -> impl Strategy<Value = Reply> {
    prop_oneof![
        (10_000u32..100_000).prop_map(|number| Ok(Outcome::RecordId(RecordId {
            kind: RecordKind::Nurse,
            number
        }))),
        (".{0,20}", ".{0,2000}")
            .prop_map(|(field, reason)| Err(DomainError::InvalidRequest { field, reason })),
    ]
}

fn ft() -> impl Strategy<Value = Option<FtRequest>> {
    prop::option::of((".{0,60}", any::<i32>(), any::<u64>()).prop_map(
        |(client_id, retention_id, expires_ms)| FtRequest {
            client_id,
            retention_id,
            expires_ms,
        },
    ))
}

fn entry() -> impl Strategy<Value = LogEntry> {
    (
        1u64..u64::MAX,
        any::<u64>(),
        1u64..u64::MAX,
        ".{0,200}",
        reply(),
        ft(),
    )
        .prop_map(|(position, stream, seq, arguments, reply, ft)| LogEntry {
            position,
            key: RequestKey { stream, seq },
            effect: Effect {
                change: None,
                audit: AuditEntry {
                    time_ms: position,
                    manager_id: "MTL0001".into(),
                    clinic: None,
                    operation: "editRecord".into(),
                    arguments,
                    outcome: "error: x".into(),
                    authenticated: (position % 2 == 0).then(|| "MTL0001".into()),
                },
            },
            reply,
            ft,
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (
            any::<u64>(),
            request(),
            ft(),
            prop::option::of("[A-Z]{3}[0-9]{4}")
        )
            .prop_map(|(seq, request, ft, authenticated)| Message::Request {
                seq,
                request,
                ft,
                authenticated,
            }),
        (any::<u64>(), reply()).prop_map(|(seq, reply)| Message::Reply { seq, reply }),
        prop::collection::vec(any::<u64>(), 0..80)
            .prop_map(|missing| Message::RequestNack { missing }),
        (entry(), any::<u64>(), any::<u64>()).prop_map(|(entry, leader_last, committed)| {
            Message::Append {
                entry: Arc::new(entry),
                leader_last,
                committed,
            }
        }),
        (any::<u64>(), any::<u64>(), any::<[u8; 32]>()).prop_map(|(durable, applied, d)| {
            Message::Ack {
                durable,
                applied,
                digest: StateDigest(d),
            }
        }),
        prop::collection::vec(any::<u64>(), 0..80).prop_map(|missing| Message::LogNack { missing }),
        (any::<Option<u64>>(), any::<[u64; 4]>()).prop_map(|(leader, [e, a, d, c])| {
            Message::Heartbeat {
                leader: leader.map(NodeId),
                log_epoch: e,
                applied: a,
                durable: d,
                committed: c,
            }
        }),
        Just(Message::Election),
        Just(Message::Answer),
        Just(Message::Coordinator),
        (any::<[u64; 3]>(), any::<bool>(), any::<Option<[u8; 32]>>()).prop_map(
            |([log_epoch, applied, durable], amnesiac, h)| Message::Join {
                log_epoch,
                applied,
                durable,
                amnesiac,
                log_hash: h.map(LogHash),
            }
        ),
        (any::<u64>(), any::<bool>(), any::<Option<[u8; 32]>>()).prop_map(
            |(after, snapshot, h)| Message::Fetch {
                after,
                snapshot,
                log_hash: h.map(LogHash),
            }
        ),
        (
            any::<u64>(),
            prop::collection::vec(entry(), 0..3),
            any::<u64>()
        )
            .prop_map(|(common_prefix, entries, epoch_start)| Message::Sync {
                common_prefix,
                snapshot: None,
                entries,
                epoch_start,
            }),
        any::<u64>().prop_map(|l| Message::LeaderIs { leader: NodeId(l) }),
        (any::<u64>(), ".{0,40}", any::<bool>()).prop_map(|(seq, reason, expired)| {
            Message::Unavailable {
                seq,
                reason,
                expired,
            }
        }),
        (any::<u64>(), request()).prop_map(|(id, request)| Message::Read { id, request }),
        (any::<u64>(), reply()).prop_map(|(id, reply)| Message::ReadReply { id, reply }),
        any::<u64>().prop_map(|round| Message::ReadIndex { round }),
        any::<u64>().prop_map(|round| Message::ReadIndexAck { round }),
        any::<u64>().prop_map(|seq| Message::Forgotten { seq }),
    ]
}

/// Decodes every datagram and reassembles fragments.
fn decode_all(max: usize, datagrams: &[Vec<u8>]) -> Vec<Message> {
    let mut decoder = decoder(max);
    let mut reassembler = Reassembler::new();
    let mut out = Vec::new();
    for d in datagrams {
        assert!(d.len() <= max, "datagram of {} bytes over {max}", d.len());
        let datagram = decoder.decode(d).expect("genuine datagram decodes");
        assert_eq!(datagram.header.sender, NodeId(3));
        assert_eq!(datagram.header.epoch, 9);
        assert_eq!(datagram.header.to, ME);
        for m in datagram.messages {
            match m {
                Message::Fragment(f) => out.extend(reassembler.push(NodeId(3), 0, f).expect("ok")),
                m => out.push(m),
            }
        }
    }
    out
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn round_trip(messages in prop::collection::vec(message(), 1..12), max in 256usize..9000) {
        let datagrams = encoder(max).encode(REPLICA_KEY, ME, &messages);
        prop_assert_eq!(decode_all(max, &datagrams), messages);
    }

    #[test]
    fn random_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(decoder(8192).decode(&bytes).is_err());
    }

    #[test]
    fn random_bytes_after_a_valid_prefix_are_refused(
        tail in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = MAGIC.to_vec();
        bytes.push(VERSION);
        bytes.extend_from_slice(&7u64.to_le_bytes());
        bytes.extend_from_slice(&REPLICA_KEY.to_le_bytes());
        bytes.extend_from_slice(&tail);
        prop_assert!(decoder(8192).decode(&bytes).is_err());
    }

    /// Past the tag check, any frame bytes: no panic.
    #[test]
    fn tagged_random_frames_never_panic(frames in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(d) = decoder(8192).decode(&tagged(&frames)) {
            prop_assert!(!d.messages.is_empty());
        }
    }

    /// Frames of every type (and unknown ones) with a valid length but
    /// random bodies.
    #[test]
    fn tagged_random_bodies_never_panic(kind in 0u8..=25, body in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut frames = vec![kind];
        frames.extend_from_slice(&(body.len() as u16).to_le_bytes());
        frames.extend_from_slice(&body);
        if let Ok(dg) = decoder(8192).decode(&tagged(&frames)) {
            prop_assert_eq!(dg.messages.len(), 1);
            prop_assert_eq!(dg.messages[0].message_type() as u8, kind);
        }
    }

    #[test]
    fn any_damage_is_refused(message in message(), at in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<bool>()) {
        let mut d = encoder(8192).encode(REPLICA_KEY, ME, &[message]).remove(0);
        let i = at.index(d.len());
        if cut { d.truncate(i) } else { d[i] ^= 1 << bit }
        prop_assert!(decoder(8192).decode(&d).is_err());
    }
}

fn genuine(cluster: u64, secret: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(WireConfig::new(cluster, secret), NodeId(1), 1);
    e.encode(REPLICA_KEY, ME, &[Message::LogNack { missing: vec![4] }])
        .remove(0)
}

/// A correctly tagged datagram carrying `frames`.
fn tagged(frames: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(1);
    let mut out = MAGIC.to_vec();
    out.push(VERSION);
    let counter = COUNTER.fetch_add(1, Ordering::Relaxed);
    for v in [7u64, REPLICA_KEY, 2, ME.0, 1, 0, counter] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(out.len(), HEADER_LEN);
    out.extend_from_slice(frames);
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    m.update(&out);
    out.extend_from_slice(&m.finalize().into_bytes());
    out
}

#[test]
fn each_refusal_has_its_reason() {
    let mut d = decoder(8192);
    assert!(d.decode(&genuine(7, SECRET)).is_ok());
    assert_eq!(d.decode(&[1, 2, 3]), Err(WireError::TooShort { len: 3 }));
    assert_eq!(
        d.decode(&genuine(8, SECRET)),
        Err(WireError::ForeignCluster {
            got: 8,
            expected: 7
        })
    );
    assert_eq!(d.decode(&genuine(7, b"other")), Err(WireError::BadTag));
    let mut v = genuine(7, SECRET);
    v[4] = VERSION + 1;
    assert_eq!(
        d.decode(&v),
        Err(WireError::UnsupportedVersion(VERSION + 1))
    );
    let mut e = Encoder::new(config(8192).with_key(5, b"fe5"), NodeId(1), 1);
    let other = WireConfig::new(7, SECRET);
    assert_eq!(
        Decoder::new(other, ME).decode(&e.encode(5, ME, &[Message::Election])[0]),
        Err(WireError::UnknownKey(5))
    );
    assert_eq!(
        d.decode(&e.encode(REPLICA_KEY, NodeId(9), &[Message::Election])[0]),
        Err(WireError::NotForMe {
            to: NodeId(9),
            me: ME
        })
    );
    let mut m = genuine(7, SECRET);
    m[0] = b'X';
    assert_eq!(d.decode(&m), Err(WireError::BadMagic));
    assert_eq!(
        d.decode(&tagged(&[99, 0, 0])),
        Err(WireError::UnknownType(99))
    );
    assert!(matches!(
        d.decode(&tagged(&[])),
        Err(WireError::Malformed(_))
    ));
    assert!(matches!(
        d.decode(&tagged(&[5, 2, 0, 0xff, 0xff])),
        Err(WireError::Malformed(_))
    ));
    // The type byte says Ack, the body is a LogNack.
    let body = postcard::to_allocvec(&Message::LogNack { missing: vec![] }).unwrap();
    let mut frames = vec![MessageType::Ack as u8, body.len() as u8, 0];
    frames.extend_from_slice(&body);
    assert!(matches!(
        d.decode(&tagged(&frames)),
        Err(WireError::Malformed(_))
    ));
    let mut small = decoder(256);
    let big = vec![0u8; 257];
    assert_eq!(
        small.decode(&big),
        Err(WireError::TooLong { len: 257, max: 256 })
    );
}

#[test]
fn small_messages_share_a_datagram() {
    let messages: Vec<Message> = (0..50)
        .map(|i| Message::LogNack { missing: vec![i] })
        .collect();
    let datagrams = encoder(8192).encode(REPLICA_KEY, ME, &messages);
    assert_eq!(datagrams.len(), 1);
    assert_eq!(decode_all(8192, &datagrams), messages);
}

#[test]
fn large_messages_fragment_and_reassemble_in_any_order() {
    let reply: Reply = Err(DomainError::InvalidRequest {
        field: "x".into(),
        reason: "y".repeat(5000),
    });
    let message = Message::Reply { seq: 1, reply };
    let mut datagrams = encoder(256).encode(REPLICA_KEY, ME, std::slice::from_ref(&message));
    assert!(datagrams.len() > 20, "{} datagrams", datagrams.len());
    datagrams.reverse();
    assert_eq!(decode_all(256, &datagrams), vec![message]);
}

#[test]
fn fragments_that_disagree_are_refused() {
    let mut r = Reassembler::new();
    let f = |index, count| Fragment {
        id: 1,
        index,
        count,
        chunk: vec![1, 2],
    };
    assert_eq!(r.push(NodeId(1), 0, f(0, 3)), Ok(None));
    assert!(matches!(
        r.push(NodeId(1), 0, f(1, 4)),
        Err(WireError::BadFragment(_))
    ));
    // Two fragments whose joined bytes are no message.
    assert_eq!(r.push(NodeId(2), 0, f(0, 2)), Ok(None));
    assert!(r.push(NodeId(2), 0, f(1, 2)).is_err());
}

#[test]
fn a_new_incarnation_does_not_mix_with_the_old_ones_fragments() {
    let big = |c: char| Message::Reply {
        seq: 1,
        reply: Err(DomainError::NotFound {
            record_id: c.to_string().repeat(1000),
        }),
    };
    let fragments = |incarnation, message: &Message| {
        let mut e = encoder(256).with_incarnation(incarnation);
        let mut d = decoder(256);
        let mut out = Vec::new();
        for dg in e.encode(REPLICA_KEY, ME, std::slice::from_ref(message)) {
            let dg = d.decode(&dg).unwrap();
            assert_eq!(dg.header.incarnation, incarnation);
            for m in dg.messages {
                match m {
                    Message::Fragment(f) => out.push(f),
                    other => panic!("expected a fragment, got {other:?}"),
                }
            }
        }
        out
    };
    let old = fragments(1, &big('a'));
    let new = fragments(2, &big('b'));
    assert_eq!(old[0].id, new[0].id, "fragment IDs restart per incarnation");
    // A stale partial of the old incarnation does not spoil the new message.
    let mut r = Reassembler::new();
    assert_eq!(r.push(NodeId(3), 1, old[0].clone()), Ok(None));
    let mut got = Vec::new();
    for f in new {
        got.extend(r.push(NodeId(3), 2, f).unwrap());
    }
    assert_eq!(got, vec![big('b')]);
}

#[test]
fn replayed_duplicated_and_old_incarnation_datagrams_are_refused() {
    let mut d = decoder(8192);
    let mut e = encoder(8192).with_incarnation(10);
    let one = e.encode(REPLICA_KEY, ME, &[Message::Election]).remove(0);
    let two = e.encode(REPLICA_KEY, ME, &[Message::Answer]).remove(0);
    d.decode(&two).expect("new");
    d.decode(&one).expect("reordered, within the window");
    for again in [&one, &two] {
        assert!(matches!(
            d.decode(again),
            Err(WireError::Replayed {
                sender: NodeId(3),
                incarnation: 10,
                ..
            })
        ));
    }
    // Far behind the newest: refused even though never seen.
    let late = e.encode(REPLICA_KEY, ME, &[Message::Election]).remove(0);
    for _ in 0..REPLAY_WINDOW {
        d.decode(&e.encode(REPLICA_KEY, ME, &[Message::Answer])[0])
            .unwrap();
    }
    assert!(matches!(d.decode(&late), Err(WireError::Replayed { .. })));
    // The sender restarts: its new incarnation is accepted, the old one is
    // refused from then on.
    let old = e.encode(REPLICA_KEY, ME, &[Message::Election]).remove(0);
    let mut restarted = encoder(8192).with_incarnation(11);
    d.decode(&restarted.encode(REPLICA_KEY, ME, &[Message::Election])[0])
        .expect("a new incarnation");
    assert!(matches!(d.decode(&old), Err(WireError::Replayed { .. })));
    // Another key's holder claiming the same sender ID, with a huge
    // incarnation, does not touch the genuine sender's window.
    let mut fe =
        Encoder::new(config(8192).with_key(100, b"fe"), NodeId(3), 9).with_incarnation(u64::MAX);
    let mut d2 = Decoder::new(config(8192).with_key(100, b"fe"), ME);
    d2.decode(&restarted.encode(REPLICA_KEY, ME, &[Message::Election])[0])
        .unwrap();
    d2.decode(&fe.encode(100, ME, &[Message::Election])[0])
        .unwrap();
    d2.decode(&restarted.encode(REPLICA_KEY, ME, &[Message::Answer])[0])
        .expect("the replica's window is its own");
    // A refused datagram changed nothing: the next genuine one still passes.
    d.decode(&restarted.encode(REPLICA_KEY, ME, &[Message::Answer])[0])
        .unwrap();
}

#[test]
fn replay_windows_are_bounded_by_the_number_of_senders() {
    let mut d = decoder(8192).with_max_senders(3);
    for sender in 10..20 {
        let mut e = Encoder::new(config(8192), NodeId(sender), 1);
        d.decode(&e.encode(REPLICA_KEY, ME, &[Message::Election])[0])
            .unwrap();
        assert!(d.senders() <= 3);
    }
    assert_eq!(d.senders_evicted, 7);
}

#[test]
fn the_reassembler_counts_every_fragment_against_its_byte_cap() {
    // One message announcing many fragments cannot grow past the cap: every
    // fragment is counted, not just the first.
    let mut r = Reassembler::new();
    let chunk = vec![7u8; 60_000];
    let count = (fragment::MAX_PARTIAL_BYTES / chunk.len() + 10) as u16;
    let mut refused = false;
    for index in 0..count {
        let f = Fragment {
            id: 1,
            index,
            count,
            chunk: chunk.clone(),
        };
        match r.push(NodeId(1), 0, f) {
            Ok(None) => assert!(r.bytes() <= fragment::MAX_PARTIAL_BYTES),
            Ok(Some(_)) => panic!("random bytes made a message"),
            Err(e) => {
                assert_eq!(e, WireError::BadFragment("message too large to reassemble"));
                refused = true;
                break;
            }
        }
    }
    assert!(refused, "a message over the cap is refused");
    assert_eq!(r.bytes(), 0, "and its fragments are dropped");
}

#[test]
fn counters_are_bounded_and_never_go_back_for_any_receiver() {
    let mut e = encoder(8192);
    let mut d = decoder(8192);
    d.decode(&e.encode(REPLICA_KEY, ME, &[Message::Election])[0])
        .unwrap();
    // More destinations than the bound: old ones are forgotten...
    for to in 0..DEFAULT_MAX_SENDERS as u64 + 10 {
        e.encode(REPLICA_KEY, NodeId(1_000 + to), &[Message::Answer]);
        assert!(e.destinations() <= DEFAULT_MAX_SENDERS);
    }
    e.forget(ME);
    // ...and a forgotten receiver's next datagram is still new to it.
    d.decode(&e.encode(REPLICA_KEY, ME, &[Message::Election])[0])
        .expect("numbers continue above every number issued");
}
