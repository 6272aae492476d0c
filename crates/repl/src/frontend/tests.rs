//! Front-end sequencer tests, driven by hand-made leader datagrams.

use super::*;
use crate::wire::Decoder;
use dcms_core::{Counts, DomainError, Outcome};

const LEADER: NodeId = NodeId(1);

const FE: NodeId = NodeId(100);

/// The front end's key, which the replicas hold too.
fn wire() -> WireConfig {
    WireConfig::frontend(5, FE.0, b"k".to_vec())
}

fn frontend(max_in_flight: u64) -> FrontEnd {
    let mut c = FrontEndConfig::new(wire(), 100, LEADER);
    c.max_in_flight = max_in_flight;
    c.initial_rto_ms = 1000;
    c.min_rto_ms = 100;
    FrontEnd::new(c)
}

/// A request of the ordered stream (a write).
fn write(n: u8) -> Request {
    Request::EditRecord {
        manager_id: format!("MTL000{n}"),
        record_id: "DR10000".into(),
        field_name: "phone".into(),
        new_value: "5145550000".into(),
    }
}

/// A read-only request (outside the ordered stream).
fn read(n: u8) -> Request {
    Request::GetRecordCounts {
        manager_id: format!("MTL000{n}"),
    }
}

fn ok() -> Reply {
    Ok(Outcome::Counts(Counts([1, 2, 3])))
}

/// The requests a front end sent, as (seq, epoch).
fn sent(fe: &mut FrontEnd) -> Vec<(Seq, Epoch)> {
    let ready = fe.ready();
    let mut d = Decoder::new(wire(), LEADER);
    let mut out = Vec::new();
    for t in ready.transmits {
        assert_eq!(t.to, LEADER);
        let dg = d.decode(&t.bytes).unwrap();
        assert_eq!(dg.header.sender, NodeId(100));
        for m in dg.messages {
            match m {
                Message::Request { seq, .. } => out.push((seq, dg.header.epoch)),
                other => panic!("front end sent {other:?}"),
            }
        }
    }
    out
}

fn from_leader(epoch: Epoch, messages: &[Message]) -> Vec<u8> {
    let mut e =
        Encoder::new(wire(), LEADER, epoch).with_incarnation(crate::wire::next_test_incarnation());
    let mut d = e.encode(FE.0, FE, messages);
    assert_eq!(d.len(), 1);
    d.remove(0)
}

fn reply(seq: Seq) -> Vec<u8> {
    from_leader(1, &[Message::Reply { seq, reply: ok() }])
}

#[test]
fn numbers_sends_and_completes_exactly_once() {
    let mut fe = frontend(8);
    assert_eq!(fe.submit(0, write(1)), 1);
    assert_eq!(fe.submit(0, write(2)), 2);
    assert_eq!(sent(&mut fe), vec![(1, 1), (2, 1)]);
    fe.handle_datagram(30, &reply(2)).unwrap();
    fe.handle_datagram(31, &reply(2)).unwrap();
    let ready = fe.ready();
    assert_eq!(
        ready.completions,
        vec![Completion {
            seq: 2,
            outcome: ClientOutcome::Reply(ok())
        }]
    );
    assert_eq!(fe.stats().duplicate_replies, 1);
    assert_eq!(fe.unanswered(), 1);
    assert!(
        fe.rto_ms() < 1000,
        "a first sample sets the timeout from the RTT"
    );
}

#[test]
fn retransmits_on_timeout_with_backoff_and_karn() {
    let mut fe = frontend(8);
    fe.submit(0, write(1));
    sent(&mut fe);
    assert_eq!(fe.next_deadline(), Some(1000));
    fe.tick(999);
    assert!(sent(&mut fe).is_empty());
    fe.tick(1000);
    assert_eq!(sent(&mut fe), vec![(1, 1)]);
    assert_eq!(
        fe.next_deadline(),
        Some(3000),
        "back-off doubles this request's timeout"
    );
    assert_eq!(
        fe.rto_ms(),
        1000,
        "the shared RTT estimate is not backed off"
    );
    fe.handle_datagram(1500, &reply(1)).unwrap();
    assert_eq!(fe.rto_ms(), 1000, "no sample from a retransmitted request");
    assert_eq!(fe.ready().completions.len(), 1);
    assert_eq!(fe.next_deadline(), None);
}

#[test]
fn reports_unknown_outcome_once_and_keeps_retransmitting() {
    let mut fe = frontend(8);
    fe.submit(0, write(1));
    sent(&mut fe);
    let mut unknown = 0;
    let mut now = 0;
    while now < 20_000 {
        now = fe.next_deadline().unwrap();
        fe.tick(now);
        let ready = fe.ready();
        unknown += ready
            .completions
            .iter()
            .filter(|c| c.outcome == ClientOutcome::Unknown)
            .count();
    }
    assert_eq!(unknown, 1, "exactly one OutcomeUnknown");
    assert_eq!(fe.stats().timeouts, 1);
    assert!(
        fe.stats().retransmitted >= 4,
        "still retransmitting after the deadline"
    );
    fe.handle_datagram(now, &reply(1)).unwrap();
    let ready = fe.ready();
    assert!(ready.completions.is_empty(), "no second completion");
    assert_eq!(ready.late_replies, vec![(1, ok())]);
    assert_eq!(fe.unanswered(), 0);
}

#[test]
fn resends_exactly_what_a_nack_names() {
    let mut fe = frontend(8);
    for i in 0..5 {
        fe.submit(0, write(i));
    }
    sent(&mut fe);
    let nack = from_leader(
        1,
        &[Message::RequestNack {
            missing: vec![2, 4, 9],
        }],
    );
    fe.handle_datagram(10, &nack).unwrap();
    assert_eq!(sent(&mut fe), vec![(2, 1), (4, 1)]);
    assert_eq!(fe.stats().nack_resends, 2);
}

#[test]
fn keeps_the_window() {
    let mut fe = frontend(2);
    for i in 0..4 {
        fe.submit(0, write(i));
    }
    assert_eq!(sent(&mut fe), vec![(1, 1), (2, 1)]);
    fe.handle_datagram(5, &reply(2)).unwrap();
    assert_eq!(
        sent(&mut fe),
        vec![(1, 1)],
        "1 is resent (its reply must be lost), but 3 stays out: the window holds"
    );
    fe.handle_datagram(6, &reply(1)).unwrap();
    assert_eq!(sent(&mut fe), vec![(3, 1), (4, 1)]);
    // A reply to a number never sent is not taken.
    fe.handle_datagram(7, &reply(9)).unwrap();
    assert_eq!(fe.stats().unexpected, 1);
}

#[test]
fn follows_newer_epochs_and_refuses_older_ones() {
    let mut fe = frontend(8);
    fe.submit(0, write(1));
    fe.submit(0, write(2));
    sent(&mut fe);
    let newer = from_leader(3, &[Message::RequestNack { missing: vec![1] }]);
    fe.handle_datagram(FAST_RETRANSMIT_GRACE_MS, &newer)
        .unwrap();
    assert_eq!(
        sent(&mut fe),
        vec![(1, 3)],
        "requests carry the newest epoch"
    );
    let older = from_leader(
        2,
        &[Message::Reply {
            seq: 2,
            reply: ok(),
        }],
    );
    fe.handle_datagram(2, &older).unwrap();
    assert_eq!(fe.stats().stale_epoch, 1);
    assert!(fe.ready().completions.is_empty());
    let bad: Reply = Err(DomainError::NotFound {
        record_id: "DR10000".into(),
    });
    let current = from_leader(
        3,
        &[Message::Reply {
            seq: 2,
            reply: bad.clone(),
        }],
    );
    fe.handle_datagram(3, &current).unwrap();
    assert_eq!(fe.ready().completions[0].outcome, ClientOutcome::Reply(bad));
}

#[test]
fn refuses_garbage() {
    let mut fe = frontend(8);
    assert!(fe.handle_datagram(0, b"hello").is_err());
    let mut r = reply(1);
    r[40] ^= 4;
    assert!(fe.handle_datagram(0, &r).is_err());
    assert_eq!(fe.stats().decode_errors, 2);
}

#[test]
fn each_request_backs_off_on_its_own() {
    let mut fe = frontend(8);
    fe.submit(0, write(1));
    fe.submit(10, write(2));
    sent(&mut fe);
    fe.tick(1000);
    assert_eq!(sent(&mut fe), vec![(1, 1)]);
    fe.tick(1010);
    assert_eq!(
        sent(&mut fe),
        vec![(2, 1)],
        "request 2 keeps its own first timeout, whatever request 1 went through"
    );
    fe.tick(2999);
    assert!(sent(&mut fe).is_empty());
    fe.tick(3000);
    assert_eq!(sent(&mut fe), vec![(1, 1)], "1000 + 2 x 1000");
    fe.tick(3010);
    assert_eq!(sent(&mut fe), vec![(2, 1)]);
    assert_eq!(fe.rto_ms(), 1000);
}

#[test]
fn a_reply_at_the_deadline_is_late_whatever_the_call_order() {
    let mut fe = frontend(8);
    fe.submit(0, write(1));
    sent(&mut fe);
    // The shell handles the datagram before calling tick at the deadline.
    fe.handle_datagram(5_000, &reply(1)).unwrap();
    let ready = fe.ready();
    assert_eq!(
        ready.completions,
        vec![Completion {
            seq: 1,
            outcome: ClientOutcome::Unknown
        }]
    );
    assert_eq!(ready.late_replies, vec![(1, ok())]);
    fe.tick(5_000);
    assert!(fe.ready().completions.is_empty());
}

#[test]
fn a_later_reply_fast_retransmits_an_earlier_unanswered_request() {
    let mut fe = frontend(8);
    fe.submit(0, write(1));
    fe.submit(0, write(2));
    fe.submit(5, write(3));
    sent(&mut fe);
    // The reply to 1 is lost; 2's arrives: 1 goes again at once, long
    // before its timer (1000 ms). 3 was sent too recently to be suspected.
    fe.handle_datagram(6, &reply(2)).unwrap();
    assert_eq!(sent(&mut fe), vec![(1, 1)]);
    assert_eq!(fe.stats().fast_retransmits, 1);
    fe.handle_datagram(7, &reply(1)).unwrap();
    assert!(sent(&mut fe).is_empty(), "nothing earlier is pending");
    assert_eq!(fe.unanswered(), 1, "only 3 is left");
}

#[test]
fn a_new_leader_gets_every_unanswered_request_with_its_backoff_restarted() {
    let mut c = FrontEndConfig::new(wire(), 100, LEADER);
    c.initial_rto_ms = 100;
    c.min_rto_ms = 100;
    c.max_rto_ms = 10_000;
    c.replicas = vec![LEADER, NodeId(2)];
    let mut fe = FrontEnd::new(c);
    fe.submit(0, write(1));
    let _ = fe.ready();
    // The old leader is silent: the request backs off 100, 200, 400, 800 ms.
    for t in [100, 300, 700, 1500] {
        fe.tick(t);
        let _ = fe.ready();
    }
    assert_eq!(fe.next_deadline(), Some(1500 + 1600));
    // Replica 2 becomes coordinator of epoch 2.
    let coordinator = Encoder::new(wire(), NodeId(2), 2)
        .encode(FE.0, FE, &[Message::Coordinator])
        .remove(0);
    fe.handle_datagram(1600, &coordinator).unwrap();
    let ready = fe.ready();
    assert!(
        ready.transmits.iter().any(|t| t.to == NodeId(2)),
        "resent to the new leader at once"
    );
    assert_eq!(
        fe.next_deadline(),
        Some(1600 + 100),
        "retried after the RTO, not after the old leader's backoff"
    );
}

#[test]
fn repeated_nacks_resend_a_request_once_per_grace() {
    let mut fe = frontend(8);
    fe.submit(0, write(1));
    fe.submit(0, write(2));
    sent(&mut fe);
    let nack = || from_leader(1, &[Message::RequestNack { missing: vec![1] }]);
    // Just sent: on its way already.
    fe.handle_datagram(1, &nack()).unwrap();
    assert_eq!(sent(&mut fe), vec![]);
    // The leader repeats its NACK every few milliseconds: one resend per
    // grace period, however many NACKs arrive in it.
    let mut resent = 0;
    for t in 2..20 {
        for _ in 0..3 {
            fe.handle_datagram(t, &nack()).unwrap();
        }
        resent += sent(&mut fe).len();
    }
    assert_eq!(resent as u64, (20 - 2) / FAST_RETRANSMIT_GRACE_MS);
    assert_eq!(fe.stats().nack_resends, resent as u64);
}

/// The reads a front end sent, as (read id, epoch).
fn reads_sent(fe: &mut FrontEnd) -> Vec<(u64, Epoch)> {
    let ready = fe.ready();
    let mut d = Decoder::new(wire(), LEADER);
    let mut out = Vec::new();
    for t in ready.transmits {
        let dg = d.decode(&t.bytes).unwrap();
        for m in dg.messages {
            match m {
                Message::Read { id, .. } => out.push((id, dg.header.epoch)),
                other => panic!("front end sent {other:?}"),
            }
        }
    }
    out
}

#[test]
fn reads_travel_outside_the_stream_and_complete_once() {
    let mut fe = frontend(1);
    // A write fills the window of one; reads are not held behind it.
    assert_eq!(fe.submit(0, write(1)), 1);
    let _ = fe.ready();
    let r1 = fe.submit(0, read(1));
    let r2 = fe.submit(0, read(2));
    assert_eq!((r1, r2), (1 | READ_ID_BIT, 2 | READ_ID_BIT));
    assert_eq!(reads_sent(&mut fe), vec![(1, 1), (2, 1)]);
    assert_eq!(fe.unanswered(), 3);
    let answer = |id| from_leader(1, &[Message::ReadReply { id, reply: ok() }]);
    fe.handle_datagram(5, &answer(2)).unwrap();
    fe.handle_datagram(6, &answer(2)).unwrap();
    assert_eq!(
        fe.ready().completions,
        vec![Completion {
            seq: r2,
            outcome: ClientOutcome::Reply(ok())
        }]
    );
    assert_eq!(fe.stats().duplicate_replies, 1);
    // Unanswered: retransmitted after the timeout, as requests are.
    let at = fe.next_deadline().unwrap();
    fe.tick(at);
    let resent: Vec<u64> = fe
        .ready()
        .transmits
        .iter()
        .flat_map(|t| {
            Decoder::new(wire(), LEADER)
                .decode(&t.bytes)
                .unwrap()
                .messages
        })
        .filter_map(|m| match m {
            Message::Read { id, .. } => Some(id),
            _ => None,
        })
        .collect();
    assert_eq!(resent, vec![1]);
    // At the deadline the read is dropped, reported unknown once.
    fe.tick(5_000);
    let done: Vec<Completion> = fe
        .ready()
        .completions
        .into_iter()
        .filter(|c| c.seq & READ_ID_BIT != 0)
        .collect();
    assert_eq!(
        done,
        vec![Completion {
            seq: r1,
            outcome: ClientOutcome::Unknown
        }]
    );
    fe.handle_datagram(5_001, &answer(1)).unwrap();
    assert!(fe.ready().completions.is_empty(), "no second completion");
}

#[test]
fn a_forgotten_request_completes_unknown_and_is_no_longer_sent() {
    let mut fe = frontend(8);
    fe.submit(0, write(1));
    fe.submit(0, write(2));
    let _ = fe.ready();
    let forgotten = from_leader(1, &[Message::Forgotten { seq: 1 }]);
    fe.handle_datagram(5, &forgotten).unwrap();
    assert_eq!(
        fe.ready().completions,
        vec![Completion {
            seq: 1,
            outcome: ClientOutcome::Unknown
        }]
    );
    assert_eq!((fe.stats().forgotten, fe.unanswered()), (1, 1));
    // Only request 2 is retransmitted from now on.
    for t in [2_000, 4_000, 8_000] {
        fe.tick(t);
        for (seq, _) in sent(&mut fe) {
            assert_eq!(seq, 2);
        }
    }
    let again = from_leader(1, &[Message::Forgotten { seq: 1 }]);
    fe.handle_datagram(9_000, &again).unwrap();
    assert!(fe.ready().completions.is_empty(), "no second completion");
}
