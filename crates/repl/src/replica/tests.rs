//! Replica state-machine tests: a leader and two backups driven by hand, the
//! test playing network and disk.

use super::*;
use crate::ids::Seq;
use crate::wire::{Decoder, KeyId, WireConfig, REPLICA_KEY};
use dcms_core::{LogEntry, NurseFields, Request, RequestKey};

const L: NodeId = NodeId(1);
const B1: NodeId = NodeId(2);
const B2: NodeId = NodeId(3);
const FE: NodeId = NodeId(100);
/// A second front end (its key is in `wire()` too).
const FE2: NodeId = NodeId(101);

fn wire() -> WireConfig {
    WireConfig::new(5, b"k".to_vec())
        .with_key(FE.0, b"front end key".to_vec())
        .with_key(101, b"another front end".to_vec())
}

fn replica(me: NodeId) -> Replica {
    let mut c = ReplicaConfig::new(wire(), me, vec![L, B1, B2], L);
    c.nack_delay_ms = 5;
    c.nack_retry_ms = 50;
    c.retransmit_ms = 100;
    c.max_holdback = 8;
    c.heartbeat_ms = 0; // a fixed group: these tests are about the log
    Replica::new(c, Recovered::empty(16))
}

/// One datagram from `from` to `to`, signed with the key `from` holds. Each
/// call is a new incarnation of the sender, so receivers take it as new.
fn encode(from: NodeId, to: NodeId, epoch: Epoch, messages: &[Message]) -> Vec<u8> {
    let key = if from == FE || from == FE2 {
        from.0
    } else {
        REPLICA_KEY
    };
    let incarnation = crate::wire::next_test_incarnation();
    let mut d = Encoder::new(wire(), from, epoch)
        .with_incarnation(incarnation)
        .encode(key, to, messages);
    assert_eq!(d.len(), 1);
    d.remove(0)
}

/// A valid create: nurse `N<n>` of MTL0001 (the failover tests use it too).
pub(super) fn create(n: u32) -> Request {
    Request::CreateNurse {
        manager_id: "MTL0001".into(),
        fields: NurseFields {
            first_name: format!("N{n}"),
            last_name: "Roy".into(),
            designation: "junior".into(),
            status: "active".into(),
            status_date: "2024-01-01".into(),
        },
    }
}

fn request(seq: Seq) -> Vec<u8> {
    encode(
        FE,
        L,
        1,
        &[Message::Request {
            seq,
            request: create(seq as u32),
            ft: None,
            authenticated: None,
        }],
    )
}

/// Drains `r`: (destination, message) pairs and entries to persist.
fn out(r: &mut Replica) -> (Vec<(NodeId, Message)>, Vec<LogEntry>, Vec<ReplicaEvent>) {
    let ready = r.ready();
    let mut messages = Vec::new();
    for t in ready.transmits {
        let dg = Decoder::new(wire(), t.to).decode(&t.bytes).unwrap();
        assert_eq!(dg.header.sender, r.id());
        messages.extend(dg.messages.into_iter().map(|m| (t.to, m)));
    }
    (messages, ready.persist.into_entries(), ready.events)
}

fn to(messages: &[(NodeId, Message)], node: NodeId) -> Vec<Message> {
    messages
        .iter()
        .filter(|(t, _)| *t == node)
        .map(|(_, m)| m.clone())
        .collect()
}

fn positions(entries: &[LogEntry]) -> Vec<Position> {
    entries.iter().map(|e| e.position).collect()
}

fn ack(r: &Replica) -> Message {
    Message::Ack {
        durable: r.durable(),
        applied: r.applied(),
        digest: r.digest(),
    }
}

/// The manager a front end says the client's certificate proved reaches
/// the audit line, canonical, also for a request held back behind a gap;
/// one that is not a manager ID is not recorded.
#[test]
fn the_leader_audits_the_authenticated_manager() {
    let mut l = replica(L);
    let send = |l: &mut Replica, seq: Seq, authenticated: Option<&str>| {
        let dg = encode(
            FE,
            L,
            1,
            &[Message::Request {
                seq,
                request: create(seq as u32),
                ft: None,
                authenticated: authenticated.map(str::to_string),
            }],
        );
        l.handle_datagram(0, &dg).unwrap();
    };
    send(&mut l, 1, Some("mtl0001"));
    send(&mut l, 3, Some("MTL0001 x"));
    send(&mut l, 2, None);
    let (_, persist, _) = out(&mut l);
    assert_eq!(positions(&persist), vec![1, 2, 3]);
    let audited: Vec<Option<&str>> = persist
        .iter()
        .map(|e| e.effect.audit.authenticated.as_deref())
        .collect();
    assert_eq!(audited, vec![Some("MTL0001"), None, None]);
    assert_eq!(l.stats().unexpected, 1, "the bad identity is counted");
}

#[test]
fn leader_executes_in_order_and_nacks_gaps() {
    let mut l = replica(L);
    l.handle_datagram(0, &request(1)).unwrap();
    l.handle_datagram(0, &request(3)).unwrap();
    l.handle_datagram(0, &request(4)).unwrap();
    let (msgs, persist, _) = out(&mut l);
    assert_eq!(
        positions(&persist),
        vec![1],
        "nothing beyond the gap executes"
    );
    assert_eq!(to(&msgs, B1).len(), 1);
    assert!(to(&msgs, FE).is_empty(), "no NACK before the delay");
    assert_eq!(l.next_deadline(), Some(5));
    l.tick(5);
    let (msgs, _, _) = out(&mut l);
    assert_eq!(
        to(&msgs, FE),
        vec![Message::RequestNack { missing: vec![2] }]
    );
    l.tick(55);
    assert_eq!(
        to(&out(&mut l).0, FE).len(),
        1,
        "asks again after the retry delay"
    );
    l.handle_datagram(60, &request(2)).unwrap();
    let (_, persist, _) = out(&mut l);
    assert_eq!(positions(&persist), vec![2, 3, 4]);
    let keys: Vec<Seq> = persist.iter().map(|e| e.key.seq).collect();
    assert_eq!(keys, vec![2, 3, 4]);
    assert_eq!(l.sessions().head(FE.0), 4);
    assert_eq!(
        l.next_deadline(),
        Some(100),
        "only the backups' resend timers remain (set at the first append)"
    );
}

#[test]
fn leader_replies_only_when_durable_everywhere_and_never_executes_twice() {
    let mut l = replica(L);
    let mut b1 = replica(B1);
    let mut b2 = replica(B2);
    l.handle_datagram(0, &request(1)).unwrap();
    let (msgs, _, _) = out(&mut l);
    for (b, id) in [(&mut b1, B1), (&mut b2, B2)] {
        for m in to(&msgs, id) {
            b.handle_datagram(1, &encode(L, b.id(), 1, &[m])).unwrap();
        }
        let (acks, persist, _) = out(b);
        assert!(acks.is_empty(), "a backup acks only what is durable");
        assert_eq!(positions(&persist), vec![1]);
    }
    l.persisted(2, 1);
    b1.persisted(2, 1);
    l.handle_datagram(3, &encode(B1, l.id(), 1, &[ack(&b1)]))
        .unwrap();
    assert!(
        to(&out(&mut l).0, FE).is_empty(),
        "one backup is not enough"
    );
    // A duplicate before commit gets nothing: the commit will answer.
    l.handle_datagram(3, &request(1)).unwrap();
    assert!(to(&out(&mut l).0, FE).is_empty());
    b2.persisted(4, 1);
    l.handle_datagram(5, &encode(B2, l.id(), 1, &[ack(&b2)]))
        .unwrap();
    let (msgs, _, _) = out(&mut l);
    let replies = to(&msgs, FE);
    assert_eq!(replies.len(), 1);
    assert!(matches!(
        &replies[0],
        Message::Reply {
            seq: 1,
            reply: Ok(_)
        }
    ));
    assert_eq!(l.committed(), 1);
    // A duplicate after commit gets the stored reply, without executing.
    l.handle_datagram(6, &request(1)).unwrap();
    let (msgs, persist, _) = out(&mut l);
    assert_eq!(to(&msgs, FE), replies);
    assert!(persist.is_empty());
    assert_eq!(l.stats().executed, 1);
    assert_eq!(b1.digest(), l.digest());
    // Later appends tell the backups what is committed.
    assert_eq!(b1.committed(), 0);
    l.handle_datagram(7, &request(2)).unwrap();
    for m in to(&out(&mut l).0, B1) {
        b1.handle_datagram(8, &encode(L, b1.id(), 1, &[m])).unwrap();
    }
    assert_eq!(b1.committed(), 1);
    assert_eq!(
        b1.sessions().lookup(RequestKey {
            stream: FE.0,
            seq: 1
        }),
        l.sessions().lookup(RequestKey {
            stream: FE.0,
            seq: 1
        })
    );
}

#[test]
fn backup_holds_back_nacks_and_reacks_duplicates() {
    let mut l = replica(L);
    for seq in 1..=3 {
        l.handle_datagram(0, &request(seq)).unwrap();
    }
    let appends = to(&out(&mut l).0, B1);
    assert_eq!(appends.len(), 3);
    let mut b = replica(B1);
    b.handle_datagram(1, &encode(L, b.id(), 1, &[appends[2].clone()]))
        .unwrap();
    let (_, persist, _) = out(&mut b);
    assert!(persist.is_empty(), "3 waits for 1 and 2");
    assert_eq!(b.next_deadline(), Some(6));
    b.tick(6);
    let (msgs, _, _) = out(&mut b);
    assert_eq!(
        to(&msgs, L),
        vec![Message::LogNack {
            missing: vec![1, 2]
        }]
    );
    // The leader answers the NACK with exactly those positions.
    l.handle_datagram(
        7,
        &encode(
            B1,
            l.id(),
            1,
            &[Message::LogNack {
                missing: vec![1, 2],
            }],
        ),
    )
    .unwrap();
    let resent = to(&out(&mut l).0, B1);
    let resent_positions: Vec<Position> = resent
        .iter()
        .map(|m| match m {
            Message::Append {
                entry, leader_last, ..
            } => {
                assert_eq!(*leader_last, 3);
                entry.position
            }
            other => panic!("leader sent {other:?}"),
        })
        .collect();
    assert_eq!(resent_positions, vec![1, 2]);
    b.handle_datagram(8, &encode(L, b.id(), 1, &resent))
        .unwrap();
    let (_, persist, _) = out(&mut b);
    assert_eq!(positions(&persist), vec![1, 2, 3]);
    assert_eq!(b.next_deadline(), None, "no gap left");
    b.persisted(9, 3);
    assert_eq!(to(&out(&mut b).0, L), vec![ack(&b)]);
    b.handle_datagram(10, &encode(L, b.id(), 1, &[appends[0].clone()]))
        .unwrap();
    let (msgs, persist, _) = out(&mut b);
    assert!(persist.is_empty(), "a duplicate is not applied again");
    assert_eq!(to(&msgs, L), vec![ack(&b)], "but acknowledged again");
    assert_eq!(b.digest(), l.digest());
}

#[test]
fn leader_resends_to_a_silent_backup() {
    let mut l = replica(L);
    l.handle_datagram(0, &request(1)).unwrap();
    l.handle_datagram(0, &request(2)).unwrap();
    out(&mut l);
    l.persisted(1, 2);
    let b1 = replica(B1);
    // B1 acks position 0 (nothing); B2 says nothing.
    l.handle_datagram(1, &encode(B1, l.id(), 1, &[ack(&b1)]))
        .unwrap();
    l.tick(100);
    let (msgs, _, _) = out(&mut l);
    assert_eq!(to(&msgs, B1).len(), 2);
    assert_eq!(to(&msgs, B2).len(), 2);
    assert_eq!(l.stats().entries_resent, 4);
}

#[test]
fn divergent_digest_is_reported() {
    let mut l = replica(L);
    l.handle_datagram(0, &request(1)).unwrap();
    out(&mut l);
    let wrong = Message::Ack {
        durable: 1,
        applied: 1,
        digest: dcms_core::StateDigest([7; 32]),
    };
    l.handle_datagram(1, &encode(B1, l.id(), 1, &[wrong]))
        .unwrap();
    let (_, _, events) = out(&mut l);
    assert!(matches!(
        events.as_slice(),
        [ReplicaEvent::Divergence {
            backup: B1,
            position: 1,
            ..
        }]
    ));
    assert_eq!(l.stats().divergences, 1);
}

#[test]
fn stale_epochs_and_strangers_are_refused() {
    let mut l = replica(L);
    let mut b = replica(B1);
    l.handle_datagram(0, &request(1)).unwrap();
    let appends = to(&out(&mut l).0, B1);
    b.handle_datagram(0, &encode(L, b.id(), 0, &appends))
        .unwrap();
    assert_eq!(b.stats().stale_epoch, 1);
    assert!(out(&mut b).1.is_empty());
    // Only the leader's appends count, and backups take no requests.
    b.handle_datagram(0, &encode(B2, b.id(), 1, &appends))
        .unwrap();
    let misdirected = encode(
        FE,
        b.id(),
        1,
        &[Message::Request {
            seq: 1,
            request: create(1),
            ft: None,
            authenticated: None,
        }],
    );
    b.handle_datagram(0, &misdirected).unwrap();
    assert_eq!(b.stats().unexpected, 2);
    assert!(b.handle_datagram(0, b"junk").is_err());
    assert_eq!(b.stats().decode_errors, 1);
    assert_eq!(b.applied(), 0);
}

#[test]
fn a_full_window_pushes_back() {
    let mut c = ReplicaConfig::new(wire(), L, vec![L, B1, B2], L);
    c.max_window = 2;
    let mut l = Replica::new(c, Recovered::empty(16));
    for seq in 1..=3 {
        l.handle_datagram(0, &request(seq)).unwrap();
    }
    assert_eq!(l.applied(), 2);
    assert_eq!(l.stats().backpressure_drops, 1);
}

#[test]
#[should_panic(expected = "beyond applied")]
fn persisting_what_was_never_handed_out_is_a_bug() {
    let mut l = replica(L);
    l.persisted(0, 1);
}

/// A datagram signed with `key` (held by the test), from `from` to `to`.
fn signed(key: KeyId, secret: &[u8], from: NodeId, to: NodeId, messages: &[Message]) -> Vec<u8> {
    let wire = WireConfig::new(5, b"k".to_vec()).with_key(key, secret.to_vec());
    Encoder::new(wire, from, 1)
        .with_incarnation(crate::wire::next_test_incarnation())
        .encode(key, to, messages)
        .remove(0)
}

#[test]
fn a_front_end_key_sends_requests_and_heartbeats_and_nothing_else() {
    let mut b = replica(B1);
    let fe_key = b"front end key";
    let forbidden = |r: &mut Replica, bytes: &[u8]| {
        let before = r.stats().forbidden;
        assert!(matches!(
            r.handle_datagram(0, bytes),
            Err(WireError::Forbidden(_))
        ));
        assert_eq!(r.stats().forbidden, before + 1);
    };
    // A front end's key claiming to be the leader, or carrying what only
    // replicas send.
    forbidden(
        &mut b,
        &signed(FE.0, fe_key, L, B1, &[Message::Coordinator]),
    );
    let heartbeat = Message::Heartbeat {
        leader: Some(L),
        log_epoch: 1,
        applied: 0,
        durable: 0,
        committed: 0,
    };
    forbidden(
        &mut b,
        &signed(FE.0, fe_key, L, B1, std::slice::from_ref(&heartbeat)),
    );
    let append_like = Message::LogNack { missing: vec![1] };
    forbidden(&mut b, &signed(FE.0, fe_key, FE, B1, &[append_like]));
    // The replicas' key from a sender that is no replica.
    forbidden(
        &mut b,
        &signed(REPLICA_KEY, b"k", FE, B1, std::slice::from_ref(&heartbeat)),
    );
    // Nothing changed; a front end's heartbeat is fine and binds its stream
    // to its key: another front end's key for the same stream is refused.
    assert_eq!((b.applied(), b.epoch()), (0, 1));
    b.handle_datagram(
        0,
        &signed(FE.0, fe_key, FE, B1, std::slice::from_ref(&heartbeat)),
    )
    .unwrap();
    forbidden(
        &mut b,
        &signed(101, b"another front end", FE, B1, &[heartbeat]),
    );
}

#[test]
fn replies_are_addressed_to_the_stream_and_signed_with_its_key() {
    let mut l = replica(L);
    let mut b1 = replica(B1);
    let mut b2 = replica(B2);
    l.handle_datagram(0, &request(1)).unwrap();
    let (msgs, _, _) = out(&mut l);
    for m in to(&msgs, B1) {
        b1.handle_datagram(1, &encode(L, b1.id(), 1, &[m])).unwrap();
    }
    for m in to(&msgs, B2) {
        b2.handle_datagram(1, &encode(L, b2.id(), 1, &[m])).unwrap();
    }
    l.persisted(1, 1);
    let _ = out(&mut b1);
    b1.persisted(2, 1);
    let _ = out(&mut b2);
    b2.persisted(2, 1);
    l.handle_datagram(3, &encode(B1, l.id(), 1, &[ack(&b1)]))
        .unwrap();
    l.handle_datagram(3, &encode(B2, l.id(), 1, &[ack(&b2)]))
        .unwrap();
    let ready = l.ready();
    let reply = ready
        .transmits
        .iter()
        .find(|t| t.to == FE)
        .expect("a reply to the front end");
    // Only the front end's key opens it, and only as the addressee.
    let fe_wire = WireConfig::frontend(5, FE.0, b"front end key".to_vec());
    let dg = Decoder::new(fe_wire.clone(), FE)
        .decode(&reply.bytes)
        .unwrap();
    assert_eq!((dg.header.key, dg.header.to), (FE.0, FE));
    assert!(matches!(dg.messages[..], [Message::Reply { seq: 1, .. }]));
    assert!(matches!(
        Decoder::new(fe_wire, NodeId(FE.0 + 1)).decode(&reply.bytes),
        Err(WireError::NotForMe { .. })
    ));
    assert!(matches!(
        Decoder::new(WireConfig::new(5, b"k".to_vec()), FE).decode(&reply.bytes),
        Err(WireError::UnknownKey(_))
    ));
}

#[test]
fn silent_streams_expire_and_the_number_of_streams_is_bounded() {
    let mut c = ReplicaConfig::new(wire(), L, vec![L, B1, B2], L);
    c.heartbeat_ms = 0;
    c.nack_delay_ms = 1;
    c.nack_retry_ms = 5;
    c.stream_expiry_ms = 1_000;
    c.max_streams = 2;
    let mut l = Replica::new(c, Recovered::empty(16));
    let from = |stream: u64, seq: Seq| {
        let wire = WireConfig::new(5, b"k".to_vec()).with_key(FE.0, b"front end key".to_vec());
        Encoder::new(wire, NodeId(stream), 1)
            .with_incarnation(crate::wire::next_test_incarnation())
            .encode(
                FE.0,
                L,
                &[Message::Request {
                    seq,
                    request: create(seq as u32),
                    ft: None,
                    authenticated: None,
                }],
            )
            .remove(0)
    };
    // Stream 500 leaves a gap: request 3 is held and NACKed every 5 ms.
    l.handle_datagram(0, &from(500, 3)).unwrap();
    l.tick(l.next_deadline().unwrap());
    assert!(!to(&out(&mut l).0, NodeId(500)).is_empty(), "NACKed");
    // Two more streams: the cap of two forgets the longest silent (500).
    l.handle_datagram(10, &from(501, 1)).unwrap();
    l.handle_datagram(20, &from(502, 1)).unwrap();
    assert_eq!(l.stats().streams_evicted, 1);
    let ready = l.ready();
    assert_eq!(ready.forgotten, vec![NodeId(500)]);
    assert!(
        ready.transmits.iter().all(|t| t.to != NodeId(500)),
        "nothing more to a forgotten stream"
    );
    for t in [100, 500] {
        l.tick(t);
        assert!(to(&out(&mut l).0, NodeId(500)).is_empty(), "no more NACKs");
    }
    // 502 keeps talking, 501 falls silent: 501 expires a second after it
    // was last heard, not before.
    l.handle_datagram(900, &from(502, 2)).unwrap();
    let _ = l.ready();
    assert!(l.next_deadline().is_some_and(|t| t <= 1_010));
    l.tick(1_009);
    assert_eq!(l.stats().streams_expired, 0);
    l.tick(1_010);
    assert_eq!(l.stats().streams_expired, 1);
    assert_eq!(l.ready().forgotten, vec![NodeId(501)]);
    assert_eq!(l.view(1_010).peers.iter().filter(|p| !p.replica).count(), 1);
    // What it executed stays: a retransmission of 501's request 1 gets its
    // reply again, it is not executed twice.
    let executed = l.stats().executed;
    l.handle_datagram(1_100, &from(501, 1)).unwrap();
    assert_eq!(l.stats().executed, executed);
}

/// A read from the front end to `to`.
fn read_request(to: NodeId, id: u64) -> Vec<u8> {
    encode(
        FE,
        to,
        1,
        &[Message::Read {
            id,
            request: Request::GetRecordCounts {
                manager_id: "MTL0001".into(),
            },
        }],
    )
}

fn read_replies(messages: &[(NodeId, Message)]) -> Vec<u64> {
    to(messages, FE)
        .into_iter()
        .filter_map(|m| match m {
            Message::ReadReply { id, .. } => Some(id),
            _ => None,
        })
        .collect()
}

#[test]
fn a_read_is_answered_only_after_a_majority_confirms_the_leader_and_its_writes_commit() {
    let mut l = replica(L);
    let mut b1 = replica(B1);
    let mut b2 = replica(B2);
    // A write, applied by the leader but not yet committed.
    l.handle_datagram(0, &request(1)).unwrap();
    let (msgs, _, _) = out(&mut l);
    l.persisted(1, 1);
    // The read sees it (index 1) and asks the others to confirm.
    l.handle_datagram(1, &read_request(L, 7)).unwrap();
    let (asked, _, _) = out(&mut l);
    assert!(read_replies(&asked).is_empty(), "not before confirmation");
    let probe = to(&asked, B1);
    assert!(
        matches!(probe[..], [Message::ReadIndex { .. }]),
        "{probe:?}"
    );
    assert!(matches!(to(&asked, B2)[..], [Message::ReadIndex { .. }]));
    assert_eq!(l.stats().executed, 1, "a read is not logged");
    // A backup still following this leader confirms...
    b1.handle_datagram(2, &encode(L, b1.id(), 1, &probe))
        .unwrap();
    let (confirm, _, _) = out(&mut b1);
    let confirmed = to(&confirm, L);
    assert!(
        matches!(confirmed[..], [Message::ReadIndexAck { .. }]),
        "{confirmed:?}"
    );
    l.handle_datagram(3, &encode(B1, l.id(), 1, &confirmed))
        .unwrap();
    // ...but the write the read saw is not committed yet: still no answer.
    let (none, _, _) = out(&mut l);
    assert!(
        read_replies(&none).is_empty(),
        "not before its writes commit"
    );
    // The backups hold the write: committed, and the read is answered.
    for (b, id) in [(&mut b1, B1), (&mut b2, B2)] {
        for m in to(&msgs, id) {
            b.handle_datagram(4, &encode(L, id, 1, &[m])).unwrap();
        }
        let _ = out(b);
        b.persisted(5, 1);
        l.handle_datagram(6, &encode(id, L, 1, &[ack(b)])).unwrap();
    }
    let (answered, _, _) = out(&mut l);
    assert_eq!(read_replies(&answered), vec![7]);
    // A second read: an acknowledgement of an older round, or from a
    // replica in a newer epoch (it follows another leader), confirms
    // nothing: a deposed leader answers no read.
    l.handle_datagram(7, &read_request(L, 8)).unwrap();
    let _ = out(&mut l);
    l.handle_datagram(8, &encode(B1, l.id(), 1, &confirmed))
        .unwrap();
    l.handle_datagram(
        8,
        &encode(B2, l.id(), 2, &[Message::ReadIndexAck { round: 99 }]),
    )
    .unwrap();
    let (none, _, _) = out(&mut l);
    assert!(read_replies(&none).is_empty(), "no confirmation, no answer");
    assert_eq!(l.stats().reads_answered, 1);
}

#[test]
fn a_silent_streams_replies_are_dropped_and_a_retransmission_learns_it() {
    let mut c = ReplicaConfig::new(wire(), L, vec![L], L);
    c.heartbeat_ms = 0;
    c.stream_expiry_ms = 1_000;
    let mut l = Replica::new(c, Recovered::empty(16));
    l.handle_datagram(0, &request(1)).unwrap();
    let _ = out(&mut l);
    l.persisted(0, 1);
    let (msgs, _, _) = out(&mut l);
    assert!(matches!(to(&msgs, FE)[..], [Message::Reply { seq: 1, .. }]));
    // Silent for the expiry: replies dropped, head kept, the shell told.
    l.tick(1_000);
    let ready = l.ready();
    assert_eq!(ready.forgotten, vec![FE]);
    assert_eq!(
        ready.forgotten_replies,
        vec![RequestKey {
            stream: FE.0,
            seq: 1
        }]
    );
    assert_eq!(l.sessions().head(FE.0), 1);
    // The front end comes back retransmitting 1: not executed again, and
    // told its reply is gone.
    l.handle_datagram(2_000, &request(1)).unwrap();
    let (msgs, _, _) = out(&mut l);
    assert_eq!(to(&msgs, FE), vec![Message::Forgotten { seq: 1 }]);
    assert_eq!(l.stats().executed, 1);
}

#[test]
fn streams_never_heard_since_the_start_lose_their_replies_once() {
    let mut first = ReplicaConfig::new(wire(), L, vec![L], L);
    first.heartbeat_ms = 0;
    let mut l = Replica::new(first.clone(), Recovered::empty(16));
    l.handle_datagram(0, &request(1)).unwrap();
    let sessions = l.sessions().clone();
    // A restart from a state that knows stream FE (as from the store).
    let mut recovered = Recovered::empty(16);
    recovered.sessions = sessions;
    recovered.state = l.state().clone();
    recovered.last_applied = l.applied();
    recovered.log_hash = l.log_hash();
    let mut c = first;
    c.stream_expiry_ms = 1_000;
    let mut again = Replica::new(c, recovered);
    again.tick(10);
    assert!(again.ready().forgotten_replies.is_empty());
    assert_eq!(again.next_deadline(), Some(10 + 1_000));
    again.tick(1_010);
    assert_eq!(
        again.ready().forgotten_replies,
        vec![RequestKey {
            stream: FE.0,
            seq: 1
        }]
    );
    assert_eq!(again.sessions().head(FE.0), 1);
    again.tick(5_000);
    assert!(again.ready().forgotten_replies.is_empty(), "once");
}

#[test]
fn an_ft_identity_executes_once_across_streams_and_never_after_its_expiration() {
    let mut l = replica(L);
    let ft = |retention_id, expires_ms| dcms_core::FtRequest {
        client_id: "client".into(),
        retention_id,
        expires_ms,
    };
    let req = |from: NodeId, seq: Seq, n: u32, ft| {
        encode(
            from,
            L,
            1,
            &[Message::Request {
                seq,
                request: create(n),
                ft: Some(ft),
                authenticated: None,
            }],
        )
    };
    l.handle_datagram(1_000, &req(FE, 1, 1, ft(1, 5_000)))
        .unwrap();
    // The same request retried through another front end.
    l.handle_datagram(1_100, &req(FE2, 1, 1, ft(1, 5_000)))
        .unwrap();
    // A new one that arrives after its expiration.
    l.handle_datagram(5_000, &req(FE, 2, 2, ft(2, 5_000)))
        .unwrap();
    let (_, persist, _) = out(&mut l);
    assert_eq!(persist.len(), 3, "{persist:?}");
    assert!(persist[0].effect.change.is_some(), "the first try executes");
    assert_eq!(
        persist[1].key,
        RequestKey {
            stream: FE2.0,
            seq: 1
        }
    );
    assert_eq!(persist[1].effect.change, None, "the retry changes nothing");
    assert_eq!(
        persist[1].reply, persist[0].reply,
        "and answers as the first"
    );
    assert!(persist[1]
        .effect
        .audit
        .outcome
        .starts_with("retry of \"client\"/1"));
    assert_eq!(
        persist[2].effect.change, None,
        "an expired request does not run"
    );
    assert!(
        matches!(&persist[2].reply, Err(dcms_core::DomainError::Exhausted { reason }) if reason.contains("expired")),
        "{:?}",
        persist[2].reply
    );
    assert_eq!(l.stats().ft_retries, 1);
    assert_eq!(l.stats().ft_expired, 1);
    assert_eq!(l.sessions().retained_len(), 2);

    // An identity a front end would not have passed (a far expiration, an
    // oversized client ID) is refused, not executed, and not retained.
    let far = ft(3, 5_000 + dcms_core::store::MAX_FT_EXPIRATION_MS + 1);
    let long = dcms_core::FtRequest {
        client_id: "c".repeat(dcms_core::store::MAX_FT_CLIENT_ID_BYTES + 1),
        ..ft(4, 6_000)
    };
    l.handle_datagram(5_000, &req(FE, 3, 3, far)).unwrap();
    l.handle_datagram(5_000, &req(FE, 4, 4, long)).unwrap();
    let (_, persist, _) = out(&mut l);
    assert_eq!(persist.len(), 2);
    for (e, what) in persist.iter().zip(["expiration_time", "client_id"]) {
        assert_eq!(e.effect.change, None);
        assert_eq!(e.ft, None, "not retained");
        assert!(
            matches!(&e.reply, Err(dcms_core::DomainError::InvalidRequest { field, reason }) if field == "FT_REQUEST" && reason.contains(what)),
            "{:?}",
            e.reply
        );
    }
    assert_eq!(l.stats().ft_refused, 2);
    assert_eq!(l.sessions().retained_len(), 2, "the bound holds");
}
