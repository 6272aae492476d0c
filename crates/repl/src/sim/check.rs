//! The simulator's invariant checks, and forged datagrams to inject.
//!
//! After every step: every (stream, seq) is executed at most once; every
//! backup's applied log is a prefix of the leader's; each replica's applied
//! and durable positions match what the simulator saw it hand out and write;
//! the leader never commits beyond what every member holds durably; every
//! reply a client receives is the reply stored at that request's position
//! on every replica's disk. At the end: every request answered exactly once
//! (and its real reply known), every replica at the same position with the
//! same digest, in memory and rebuilt from its disk.

use super::disk::Disk;
use super::net::Network;
use super::{CLUSTER, SECRET};
use crate::frontend::{ClientOutcome, Completion, FrontEnd};
use crate::ids::{NodeId, Position, Seq};
use crate::replica::Replica;
use crate::wire::{Encoder, Message, WireConfig, HEADER_LEN, MAGIC, VERSION};
use dcms_core::{LogEntry, Reply, RequestKey};
use hmac::{Hmac, Mac};
use rand::Rng;
use rand_chacha::ChaCha8Rng;
use sha2::Sha256;
use std::collections::{BTreeMap, HashMap};

pub(super) struct Checker {
    leader: NodeId,
    outcome_timeout_ms: u64,
    /// When each request was submitted.
    submitted_at: HashMap<RequestKey, u64>,
    /// Every replica's applied entries, in the order it applied them.
    logs: BTreeMap<NodeId, Vec<LogEntry>>,
    /// Where the leader executed each request.
    executed: HashMap<RequestKey, Position>,
    /// The highest number submitted per stream.
    submitted: BTreeMap<u64, Seq>,
    completions: HashMap<RequestKey, ClientOutcome>,
    /// The real reply each client got (as completion or late).
    answered: HashMap<RequestKey, Reply>,
    pub unknown_outcomes: u64,
    pub late_replies: u64,
    pub healed_at: Option<u64>,
}

impl Checker {
    pub fn new(leader: NodeId, outcome_timeout_ms: u64) -> Checker {
        Checker {
            leader,
            outcome_timeout_ms,
            submitted_at: HashMap::new(),
            logs: BTreeMap::new(),
            executed: HashMap::new(),
            submitted: BTreeMap::new(),
            completions: HashMap::new(),
            answered: HashMap::new(),
            unknown_outcomes: 0,
            late_replies: 0,
            healed_at: None,
        }
    }

    pub fn on_submit(&mut self, now: u64, frontend: NodeId, seq: Seq) {
        let key = RequestKey {
            stream: frontend.0,
            seq,
        };
        self.submitted_at.insert(key, now);
        let last = self.submitted.entry(frontend.0).or_insert(0);
        assert_eq!(
            seq,
            *last + 1,
            "front end {frontend} numbers requests 1, 2, 3, ..."
        );
        *last = seq;
    }

    /// A replica handed out `entries` to persist: it applied them.
    pub fn on_applied(&mut self, replica: NodeId, entries: &[LogEntry]) {
        for e in entries {
            let log = self.logs.entry(replica).or_default();
            assert_eq!(
                e.position,
                log.len() as u64 + 1,
                "{replica} applies out of log order"
            );
            if replica == self.leader {
                if let Some(old) = self.executed.insert(e.key, e.position) {
                    panic!("{:?} executed twice, at {old} and {}", e.key, e.position);
                }
            } else {
                let leader_log = self.logs.get(&self.leader).map_or(&[][..], |l| &l[..]);
                assert!(
                    leader_log.len() as u64 >= e.position,
                    "backup {replica} applied position {} the leader never executed",
                    e.position
                );
                assert_eq!(
                    &leader_log[e.position as usize - 1],
                    e,
                    "backup {replica}'s log is not a prefix of the leader's at {}",
                    e.position
                );
            }
            self.logs
                .get_mut(&replica)
                .expect("inserted")
                .push(e.clone());
        }
    }

    /// `replica` crashed: it forgets what it applied beyond its disk.
    pub fn on_crash(&mut self, replica: NodeId, durable: usize) {
        assert_ne!(replica, self.leader, "leader crashes need view changes");
        let log = self.logs.entry(replica).or_default();
        assert!(
            log.len() >= durable,
            "{replica} held durably what it never applied"
        );
        log.truncate(durable);
    }

    pub fn after_step(
        &self,
        replicas: &BTreeMap<NodeId, Replica>,
        disks: &BTreeMap<NodeId, Disk>,
        frontends: &BTreeMap<NodeId, FrontEnd>,
    ) {
        let mut min_durable = disks
            .values()
            .map(|d| d.durable.len() as u64)
            .min()
            .unwrap_or(0);
        for (id, r) in replicas {
            let applied = self.logs.get(id).map_or(0, Vec::len) as u64;
            assert_eq!(r.applied(), applied, "{id}'s applied position");
            let durable = disks[id].durable.len() as u64;
            assert_eq!(r.durable(), durable, "{id}'s durable position");
            min_durable = min_durable.min(durable);
        }
        let committed = replicas[&self.leader].committed();
        for (id, r) in replicas {
            assert!(
                r.committed() <= committed,
                "{id} believes more is committed than is"
            );
            assert!(
                r.committed() <= r.durable(),
                "{id} knows of commits beyond its disk"
            );
        }
        assert!(
            committed <= min_durable,
            "leader committed {committed} but one replica holds only {min_durable} durably"
        );
        for (id, fe) in frontends {
            let submitted = self.submitted.get(&id.0).copied().unwrap_or(0);
            assert!(
                fe.unanswered() as u64 <= submitted,
                "{id} waits for more than it sent"
            );
        }
    }

    pub fn on_completion(
        &mut self,
        now: u64,
        frontend: NodeId,
        c: &Completion,
        disks: &BTreeMap<NodeId, Disk>,
    ) {
        let key = RequestKey {
            stream: frontend.0,
            seq: c.seq,
        };
        assert!(
            c.seq <= self.submitted.get(&frontend.0).copied().unwrap_or(0),
            "completion of unsubmitted {key:?}"
        );
        if let Some(old) = self.completions.insert(key, c.outcome.clone()) {
            panic!("{key:?} completed twice: {old:?} then {:?}", c.outcome);
        }
        match &c.outcome {
            ClientOutcome::Reply(reply) => {
                let deadline = self.submitted_at[&key] + self.outcome_timeout_ms;
                assert!(
                    now < deadline,
                    "{key:?} completed with a reply after its deadline"
                );
                self.on_reply(key, reply, disks)
            }
            ClientOutcome::Unknown => {
                // Exactly at the deadline: not early, and not late either
                // (the simulator fires every timer when it is due).
                let deadline = self.submitted_at[&key] + self.outcome_timeout_ms;
                assert_eq!(now, deadline, "{key:?} reported unknown off its deadline");
                self.unknown_outcomes += 1;
            }
        }
    }

    pub fn on_late_reply(
        &mut self,
        frontend: NodeId,
        seq: Seq,
        reply: &Reply,
        disks: &BTreeMap<NodeId, Disk>,
    ) {
        let key = RequestKey {
            stream: frontend.0,
            seq,
        };
        assert_eq!(
            self.completions.get(&key),
            Some(&ClientOutcome::Unknown),
            "late reply to {key:?}, which did not time out"
        );
        self.late_replies += 1;
        self.on_reply(key, reply, disks);
    }

    fn on_reply(&mut self, key: RequestKey, reply: &Reply, disks: &BTreeMap<NodeId, Disk>) {
        let position = *self
            .executed
            .get(&key)
            .unwrap_or_else(|| panic!("reply to {key:?}, which never executed"));
        for (id, disk) in disks {
            assert!(
                disk.durable.len() as u64 >= position,
                "client got the reply to {key:?} (position {position}) before {id} held it durably"
            );
            let stored = &disk.durable[position as usize - 1];
            assert_eq!(stored.key, key, "{id} holds another request at {position}");
            assert_eq!(
                &stored.reply, reply,
                "{id} stored another reply for {key:?}"
            );
        }
        if self.answered.insert(key, reply.clone()).is_some() {
            panic!("{key:?} answered twice");
        }
    }

    pub fn at_end(
        &self,
        replicas: &BTreeMap<NodeId, Replica>,
        disks: &BTreeMap<NodeId, Disk>,
        frontends: &BTreeMap<NodeId, FrontEnd>,
        net: &Network,
    ) {
        assert!(net.is_empty(), "datagrams left in flight");
        assert!(disks.values().all(Disk::is_idle), "disk writes left");
        assert_eq!(replicas.len(), disks.len(), "every replica is up again");
        let mut total = 0;
        for (id, fe) in frontends {
            assert_eq!(fe.unanswered(), 0, "{id} still waits for replies");
            let last = self.submitted.get(&id.0).copied().unwrap_or(0);
            for seq in 1..=last {
                let key = RequestKey { stream: id.0, seq };
                assert!(
                    self.completions.contains_key(&key),
                    "{key:?} never completed"
                );
                assert!(
                    self.answered.contains_key(&key),
                    "{key:?}'s reply never arrived"
                );
            }
            total += last;
        }
        assert_eq!(
            self.executed.len() as u64,
            total,
            "every request executed exactly once"
        );
        let leader = &replicas[&self.leader];
        let last = leader.applied();
        assert_eq!(leader.committed(), last, "leader committed everything");
        let leader_log = &self.logs[&self.leader];
        for (id, r) in replicas {
            assert_eq!(r.applied(), last, "{id} applied everything");
            assert_eq!(r.durable(), last, "{id} holds everything durably");
            assert_eq!(&self.logs[id], leader_log, "{id}'s log equals the leader's");
            assert_eq!(
                r.digest(),
                leader.digest(),
                "{id}'s digest equals the leader's"
            );
            assert_eq!(
                disks[id].replay().digest(),
                r.digest(),
                "{id}'s disk rebuilds its state"
            );
            for (stream, &seq) in &self.submitted {
                assert_eq!(
                    r.sessions().head(*stream),
                    seq,
                    "{id}'s head of stream {stream}"
                );
            }
        }
    }
}

/// A datagram no node may accept: random bytes, a wrong key, a foreign
/// cluster, an unknown version, or (correctly tagged) an unknown type or a
/// malformed body.
pub(super) fn forge(rng: &mut ChaCha8Rng) -> Vec<u8> {
    let genuine = |cluster, secret: &[u8]| {
        let mut e = Encoder::new(WireConfig::new(cluster, secret), NodeId(1), 1);
        e.encode(&[Message::RequestNack { missing: vec![1] }])
            .remove(0)
    };
    let tagged = |frames: &[u8]| {
        let mut out = Vec::new();
        out.extend_from_slice(&MAGIC);
        out.push(VERSION);
        out.extend_from_slice(&CLUSTER.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes());
        out.extend_from_slice(&1u64.to_le_bytes());
        assert_eq!(out.len(), HEADER_LEN);
        out.extend_from_slice(frames);
        let mut m = Hmac::<Sha256>::new_from_slice(SECRET).expect("any key length");
        m.update(&out);
        out.extend_from_slice(&m.finalize().into_bytes());
        out
    };
    match rng.gen_range(0..6) {
        0 => (0..rng.gen_range(0..400)).map(|_| rng.gen()).collect(),
        1 => genuine(CLUSTER, b"not the secret"),
        2 => genuine(CLUSTER + 1, SECRET),
        3 => {
            let mut b = genuine(CLUSTER, SECRET);
            b[4] = VERSION + 1;
            b
        }
        4 => tagged(&[99, 1, 0, 0]),
        _ => tagged(&[5, 3, 0, 0xff, 0xff, 0xff]),
    }
}
