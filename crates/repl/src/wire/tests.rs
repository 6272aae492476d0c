//! Codec tests: round trips (with batching and fragmentation) as properties,
//! random and mutated bytes never panic and are always refused, and each
//! refusal reason is reported as its own typed error.

use super::*;
use dcms_core::{AuditEntry, DomainError, Effect, Outcome, RecordId, RecordKind, RequestKey};
use proptest::prelude::*;
use std::sync::Arc;

const SECRET: &[u8] = b"test secret";

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

fn entry() -> impl Strategy<Value = LogEntry> {
    (
        1u64..u64::MAX,
        any::<u64>(),
        1u64..u64::MAX,
        ".{0,200}",
        reply(),
    )
        .prop_map(|(position, stream, seq, arguments, reply)| LogEntry {
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
                },
            },
            reply,
        })
}

fn message() -> impl Strategy<Value = Message> {
    prop_oneof![
        (any::<u64>(), request()).prop_map(|(seq, request)| Message::Request { seq, request }),
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
    ]
}

/// Decodes every datagram and reassembles fragments.
fn decode_all(max: usize, datagrams: &[Vec<u8>]) -> Vec<Message> {
    let decoder = Decoder::new(config(max));
    let mut reassembler = Reassembler::new();
    let mut out = Vec::new();
    for d in datagrams {
        assert!(d.len() <= max, "datagram of {} bytes over {max}", d.len());
        let datagram = decoder.decode(d).expect("genuine datagram decodes");
        assert_eq!(datagram.header.sender, NodeId(3));
        assert_eq!(datagram.header.epoch, 9);
        for m in datagram.messages {
            match m {
                Message::Fragment(f) => out.extend(reassembler.push(NodeId(3), f).expect("ok")),
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
        let mut encoder = Encoder::new(config(max), NodeId(3), 9);
        let datagrams = encoder.encode(&messages);
        prop_assert_eq!(decode_all(max, &datagrams), messages);
    }

    #[test]
    fn random_bytes_are_refused(bytes in prop::collection::vec(any::<u8>(), 0..600)) {
        prop_assert!(Decoder::new(config(8192)).decode(&bytes).is_err());
    }

    #[test]
    fn random_bytes_after_a_valid_prefix_are_refused(
        tail in prop::collection::vec(any::<u8>(), 0..600),
    ) {
        let mut bytes = MAGIC.to_vec();
        bytes.push(VERSION);
        bytes.extend_from_slice(&7u64.to_le_bytes());
        bytes.extend_from_slice(&tail);
        prop_assert!(Decoder::new(config(8192)).decode(&bytes).is_err());
    }

    /// Past the tag check, any frame bytes: no panic.
    #[test]
    fn tagged_random_frames_never_panic(frames in prop::collection::vec(any::<u8>(), 0..400)) {
        if let Ok(d) = Decoder::new(config(8192)).decode(&tagged(&frames)) {
            prop_assert!(!d.messages.is_empty());
        }
    }

    /// Frames with a valid type and length but random bodies.
    #[test]
    fn tagged_random_bodies_never_panic(kind in 0u8..10, body in prop::collection::vec(any::<u8>(), 0..300)) {
        let mut frames = vec![kind];
        frames.extend_from_slice(&(body.len() as u16).to_le_bytes());
        frames.extend_from_slice(&body);
        let d = Decoder::new(config(8192));
        if let Ok(dg) = d.decode(&tagged(&frames)) {
            prop_assert_eq!(dg.messages.len(), 1);
            prop_assert_eq!(dg.messages[0].message_type() as u8, kind);
        }
    }

    #[test]
    fn any_damage_is_refused(message in message(), at in any::<prop::sample::Index>(), bit in 0u8..8, cut in any::<bool>()) {
        let mut encoder = Encoder::new(config(8192), NodeId(3), 9);
        let mut d = encoder.encode(&[message]).remove(0);
        let i = at.index(d.len());
        if cut { d.truncate(i) } else { d[i] ^= 1 << bit }
        prop_assert!(Decoder::new(config(8192)).decode(&d).is_err());
    }
}

fn genuine(cluster: u64, secret: &[u8]) -> Vec<u8> {
    let mut e = Encoder::new(WireConfig::new(cluster, secret), NodeId(1), 1);
    e.encode(&[Message::LogNack { missing: vec![4] }]).remove(0)
}

/// A correctly tagged datagram carrying `frames`.
fn tagged(frames: &[u8]) -> Vec<u8> {
    use hmac::{Hmac, Mac};
    let mut out = MAGIC.to_vec();
    out.push(VERSION);
    for v in [7u64, 1, 1] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out.extend_from_slice(frames);
    let mut m = Hmac::<sha2::Sha256>::new_from_slice(SECRET).unwrap();
    m.update(&out);
    out.extend_from_slice(&m.finalize().into_bytes());
    out
}

#[test]
fn each_refusal_has_its_reason() {
    let d = Decoder::new(config(8192));
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
    v[4] = 2;
    assert_eq!(d.decode(&v), Err(WireError::UnsupportedVersion(2)));
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
    let small = Decoder::new(config(256));
    let big = vec![0u8; 257];
    assert_eq!(
        small.decode(&big),
        Err(WireError::TooLong { len: 257, max: 256 })
    );
}

#[test]
fn small_messages_share_a_datagram() {
    let mut e = Encoder::new(config(8192), NodeId(3), 9);
    let messages: Vec<Message> = (0..50)
        .map(|i| Message::LogNack { missing: vec![i] })
        .collect();
    let datagrams = e.encode(&messages);
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
    let mut e = Encoder::new(config(256), NodeId(3), 9);
    let mut datagrams = e.encode(std::slice::from_ref(&message));
    assert!(datagrams.len() > 20, "{} datagrams", datagrams.len());
    datagrams.reverse();
    let dup = datagrams[3].clone();
    datagrams.insert(0, dup);
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
    assert_eq!(r.push(NodeId(1), f(0, 3)), Ok(None));
    assert!(matches!(
        r.push(NodeId(1), f(1, 4)),
        Err(WireError::BadFragment(_))
    ));
    // Two fragments whose joined bytes are no message.
    assert_eq!(r.push(NodeId(2), f(0, 2)), Ok(None));
    assert!(r.push(NodeId(2), f(1, 2)).is_err());
}

#[test]
fn a_new_incarnation_never_reuses_fragment_ids() {
    let big = Message::Reply {
        seq: 1,
        reply: Err(DomainError::NotFound {
            record_id: "z".repeat(1000),
        }),
    };
    let ids = |incarnation| {
        let mut e = Encoder::new(config(256), NodeId(3), 9).with_incarnation(incarnation);
        let d = Decoder::new(config(256));
        let datagram = d.decode(&e.encode(std::slice::from_ref(&big))[0]).unwrap();
        match &datagram.messages[0] {
            Message::Fragment(f) => f.id,
            other => panic!("expected a fragment, got {other:?}"),
        }
    };
    assert_ne!(ids(0), ids(1));
    // A stale partial of the old incarnation does not spoil the new message.
    let mut r = Reassembler::new();
    let mut old = Encoder::new(config(256), NodeId(3), 9).with_incarnation(0);
    let d = Decoder::new(config(256));
    let first = d
        .decode(&old.encode(std::slice::from_ref(&big))[0])
        .unwrap();
    for m in first.messages {
        if let Message::Fragment(f) = m {
            assert_eq!(r.push(NodeId(3), f), Ok(None));
        }
    }
    let mut new = Encoder::new(config(256), NodeId(3), 9).with_incarnation(1);
    let mut got = Vec::new();
    for dg in new.encode(std::slice::from_ref(&big)) {
        for m in d.decode(&dg).unwrap().messages {
            if let Message::Fragment(f) = m {
                got.extend(r.push(NodeId(3), f).unwrap());
            }
        }
    }
    assert_eq!(got, vec![big]);
}
