//! The front end's sequencer: one stream of numbered requests to the leader.
//!
//! [`FrontEnd::submit`] numbers a request (1, 2, 3, ...) and sends it as
//! soon as it fits the window (`max_in_flight` numbers from the oldest
//! unanswered one). Each sent request is retransmitted whenever its
//! RTT-estimated timeout ([`rto::RttEstimator`]) expires without a reply,
//! and the named ones are resent at once when the leader NACKs them.
//!
//! Read-only requests travel outside the ordered stream
//! ([`Message::Read`]): the leader answers them after a read-index round,
//! without logging them, and a retry simply reads again. Their completions
//! carry ids with [`READ_ID_BIT`] set, so they never collide with a
//! stream's sequence numbers.
//!
//! Exactly one [`Completion`] per submitted request: the reply, or
//! [`ClientOutcome::Unknown`] if none came within `outcome_timeout_ms`. A
//! request that timed out is not forgotten: it is retransmitted until its
//! reply arrives, which then shows up in [`FrontEndReady::late_replies`]
//! (for logs and the shell's bookkeeping, not as a second completion).

pub mod rto;
#[cfg(test)]
mod tests;

use crate::ids::{Epoch, NodeId, Seq, StreamId};
use crate::wire::{
    Decoder, Encoder, Header, KeyId, Message, Reassembler, Transmit, WireConfig, WireError,
    REPLICA_KEY,
};
use dcms_core::{FtRequest, Reply, Request};
use rto::RttEstimator;
use std::collections::BTreeMap;

/// A request is fast-retransmitted only if it was last sent at least this
/// long ago (milliseconds).
pub const FAST_RETRANSMIT_GRACE_MS: u64 = 2;

/// Set in the id a read's [`Completion`] carries (see [`FrontEnd::submit`]).
pub const READ_ID_BIT: u64 = 1 << 63;

/// Settings of a front end. Times are in milliseconds.
#[derive(Clone, Debug)]
pub struct FrontEndConfig {
    /// Holds this front end's own key (never the replicas').
    pub wire: WireConfig,
    /// The key it signs with: its configured ID.
    pub key: KeyId,
    /// This front end's stream, which is also its node ID. Numbers restart
    /// at 1 with every `FrontEnd`, so a restarted front end must take a new
    /// stream ID (the replicas would answer its request 1 with the old
    /// stream's stored reply): a random 64-bit number, never reused
    /// ([`random_stream`]), never equal to a replica's ID.
    pub stream: StreamId,
    pub leader: NodeId,
    /// The epoch it believes in at start; raised by newer replies.
    pub epoch: Epoch,
    /// Report [`ClientOutcome::Unknown`] when no reply came by then.
    pub outcome_timeout_ms: u64,
    pub initial_rto_ms: u64,
    pub min_rto_ms: u64,
    pub max_rto_ms: u64,
    /// Numbers in flight at most (from the oldest unanswered). Must not
    /// exceed the replicas' `reply_cache`.
    pub max_in_flight: u64,
    /// Higher at every start of a sender with the same ID (see
    /// `ReplicaConfig::incarnation`); a new stream may start anywhere.
    pub incarnation: u64,
    /// Every replica (to ask who leads). Defaults to the initial leader.
    pub replicas: Vec<NodeId>,
    /// Heartbeat to every replica this often (they answer with the
    /// leader's ID); 0 = never (a fixed leader).
    pub heartbeat_ms: u64,
}

/// A new stream ID from `random` bits: never 0, and with the top bit set,
/// so it never equals a replica's (small) ID. 63 random bits: two streams
/// collide with probability about n²/2⁶⁴, nil for any real number of starts.
pub fn random_stream(random: u64) -> StreamId {
    random | (1 << 63)
}

impl FrontEndConfig {
    /// A front end signing with the one front-end key that `wire` holds.
    pub fn new(wire: WireConfig, stream: StreamId, leader: NodeId) -> FrontEndConfig {
        let key = wire
            .key_ids()
            .find(|&k| k != REPLICA_KEY)
            .expect("a front end's wire configuration holds its own key");
        FrontEndConfig {
            wire,
            key,
            stream,
            leader,
            epoch: 1,
            outcome_timeout_ms: 5_000,
            initial_rto_ms: 1_000,
            min_rto_ms: 200,
            max_rto_ms: 10_000,
            max_in_flight: 256,
            incarnation: 0,
            replicas: vec![leader],
            heartbeat_ms: 0,
        }
    }
}

/// What the client hears, exactly once per request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ClientOutcome {
    Reply(Reply),
    /// No reply within the deadline; the request may or may not execute.
    Unknown,
    /// Certainly not executed, and never will be: its FT expiration passed
    /// while the leader reached no majority (the leader's final
    /// `Unavailable`). The request stays in the stream, which is ordered;
    /// its logged refusal arrives later as a late reply.
    NotExecuted(String),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Completion {
    pub seq: Seq,
    pub outcome: ClientOutcome,
}

/// Outputs, drained by [`FrontEnd::ready`].
#[derive(Debug, Default)]
pub struct FrontEndReady {
    /// Datagrams to send (all to the leader).
    pub transmits: Vec<Transmit>,
    pub completions: Vec<Completion>,
    /// Replies to requests already completed as [`ClientOutcome::Unknown`].
    pub late_replies: Vec<(Seq, Reply)>,
    /// The leader refused these (not executed: it reaches no majority). The
    /// requests stay pending and are retried; a shell may tell a waiting
    /// client now (see the crate docs on `Unavailable`).
    pub unavailable: Vec<(Seq, String)>,
}

/// Counters for monitoring (`dcms status --json`, `/metrics`).
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FrontEndStats {
    pub decode_errors: u64,
    /// Datagrams addressed to another stream (e.g. a former front end at
    /// this address), dropped.
    pub misaddressed: u64,
    /// Duplicates and replays of datagrams already accepted, dropped.
    pub replayed: u64,
    /// Authentic datagrams from a sender that is not a replica, dropped.
    pub not_from_replica: u64,
    pub stale_epoch: u64,
    pub unexpected: u64,
    pub sent: u64,
    pub retransmitted: u64,
    /// Retransmissions because a later request was answered first.
    pub fast_retransmits: u64,
    pub nack_resends: u64,
    /// Switches to a new leader.
    pub leader_changes: u64,
    /// Requests a leader refused for want of a majority.
    pub unavailable: u64,
    /// Requests completed as certainly not executed (expired, no majority).
    pub not_executed: u64,
    pub duplicate_replies: u64,
    pub timeouts: u64,
    /// Requests the leader executed but whose reply it no longer keeps:
    /// reported unknown, no longer retransmitted.
    pub forgotten: u64,
    /// Messages sent in fragments.
    pub fragmented_sent: u64,
    /// Messages dropped because they could not be encoded at all.
    pub oversize_dropped: u64,
}

#[derive(Debug)]
struct Pending {
    request: Request,
    /// The client's FT identity, sent with every transmission.
    ft: Option<FtRequest>,
    /// The manager the client's TLS certificate proved, likewise.
    authenticated: Option<String>,
    deadline: u64,
    reported: bool,
    /// (first sent, last sent, transmissions), once sent.
    sent: Option<(u64, u64, u32)>,
}

impl Pending {
    /// Records a (re)transmission at `now_ms`.
    fn note_sent(&mut self, now_ms: u64, stats: &mut FrontEndStats) {
        self.sent = Some(match self.sent {
            None => {
                stats.sent += 1;
                (now_ms, now_ms, 1)
            }
            Some((first, _, n)) => {
                stats.retransmitted += 1;
                (first, now_ms, n + 1)
            }
        });
    }
}

/// The sequencer of one front end.
#[derive(Debug)]
pub struct FrontEnd {
    config: FrontEndConfig,
    epoch: Epoch,
    next_seq: Seq,
    /// Submitted and not yet answered by a reply, by number.
    pending: BTreeMap<Seq, Pending>,
    /// Reads submitted and not yet answered or expired, by read id.
    reads: BTreeMap<u64, Pending>,
    next_read: u64,
    rtt: RttEstimator,
    /// When the timeout was last backed off: at most once per timeout
    /// interval, however many requests expire in it (one timer per
    /// connection in RFC 6298 terms).
    encoder: Encoder,
    decoder: Decoder,
    reassembler: Reassembler,
    /// Messages for the leader.
    outbox: Vec<Message>,
    /// The leader requests go to: learned from `Coordinator`, `LeaderIs`
    /// and replies of newer epochs.
    leader: NodeId,
    /// Send a heartbeat to every replica at the next `ready`.
    probe: bool,
    next_probe: u64,
    completions: Vec<Completion>,
    late_replies: Vec<(Seq, Reply)>,
    unavailable: Vec<(Seq, String)>,
    stats: FrontEndStats,
}

impl FrontEnd {
    pub fn new(config: FrontEndConfig) -> FrontEnd {
        assert!(config.max_in_flight >= 1);
        assert!(config.outcome_timeout_ms > 0);
        let me = NodeId::of_stream(config.stream);
        assert_ne!(me, config.leader, "a front end is not a replica");
        assert!(
            config.key != REPLICA_KEY && config.wire.has_key(config.key),
            "a front end signs with its own key"
        );
        FrontEnd {
            epoch: config.epoch,
            next_seq: 1,
            pending: BTreeMap::new(),
            reads: BTreeMap::new(),
            next_read: 1,
            rtt: RttEstimator::new(config.initial_rto_ms, config.min_rto_ms, config.max_rto_ms),
            encoder: Encoder::new(config.wire.clone(), me, config.epoch)
                .with_incarnation(config.incarnation),
            decoder: Decoder::new(config.wire.clone(), me),
            reassembler: Reassembler::new(),
            outbox: Vec::new(),
            leader: config.leader,
            probe: false,
            next_probe: 0,
            completions: Vec::new(),
            late_replies: Vec::new(),
            unavailable: Vec::new(),
            stats: FrontEndStats::default(),
            config,
        }
    }

    pub fn stream(&self) -> StreamId {
        self.config.stream
    }

    pub fn stats(&self) -> &FrontEndStats {
        &self.stats
    }

    pub fn rto_ms(&self) -> u64 {
        self.rtt.rto()
    }

    /// Requests submitted and not yet answered by a reply (reads: nor
    /// expired).
    pub fn unanswered(&self) -> usize {
        self.pending.len() + self.reads.len()
    }

    /// Numbers `request` and sends it when the window allows. Returns the
    /// id its completion will carry: its sequence number, or for a
    /// read-only request a read id with [`READ_ID_BIT`] set.
    pub fn submit(&mut self, now_ms: u64, request: Request) -> Seq {
        self.submit_ft(now_ms, request, None)
    }

    /// Like [`FrontEnd::submit`], with the client's FT-CORBA identity: the
    /// leader executes it at most once across every stream and front end
    /// (a retry gets the first execution's reply), and not after its
    /// expiration. Read-only requests ignore it (a read may run again).
    pub fn submit_ft(&mut self, now_ms: u64, request: Request, ft: Option<FtRequest>) -> Seq {
        self.submit_as(now_ms, request, ft, None)
    }

    /// Like [`FrontEnd::submit_ft`], for a client that proved with its TLS
    /// certificate to be manager `authenticated` (the caller checked that
    /// the request is that manager's): the leader records it in the
    /// request's audit line. Reads leave no audit line and ignore it.
    pub fn submit_as(
        &mut self,
        now_ms: u64,
        request: Request,
        ft: Option<FtRequest>,
        authenticated: Option<String>,
    ) -> Seq {
        self.expire_deadlines(now_ms);
        if request.is_read_only() {
            let id = self.next_read;
            self.next_read += 1;
            self.reads.insert(
                id,
                Pending {
                    request,
                    ft: None,
                    authenticated: None,
                    deadline: now_ms + self.config.outcome_timeout_ms,
                    reported: false,
                    sent: None,
                },
            );
            self.transmit_read(now_ms, id);
            return id | READ_ID_BIT;
        }
        let seq = self.next_seq;
        self.next_seq += 1;
        self.pending.insert(
            seq,
            Pending {
                request,
                ft,
                authenticated,
                deadline: now_ms + self.config.outcome_timeout_ms,
                reported: false,
                sent: None,
            },
        );
        self.pump(now_ms);
        seq
    }

    /// Sends every unsent request inside the window.
    fn pump(&mut self, now_ms: u64) {
        let Some(&oldest) = self.pending.keys().next() else {
            return;
        };
        let limit = oldest + self.config.max_in_flight;
        let unsent: Vec<Seq> = self
            .pending
            .range(oldest..limit)
            .filter(|(_, p)| p.sent.is_none())
            .map(|(&s, _)| s)
            .collect();
        for seq in unsent {
            self.transmit(now_ms, seq);
        }
    }

    fn transmit(&mut self, now_ms: u64, seq: Seq) {
        let p = self.pending.get_mut(&seq).expect("pending");
        p.note_sent(now_ms, &mut self.stats);
        self.outbox.push(Message::Request {
            seq,
            request: p.request.clone(),
            ft: p.ft.clone(),
            authenticated: p.authenticated.clone(),
        });
    }

    /// Handles one received datagram; returns its authenticated header.
    pub fn handle_datagram(&mut self, now_ms: u64, bytes: &[u8]) -> Result<Header, WireError> {
        self.expire_deadlines(now_ms);
        let datagram = self.decoder.decode(bytes).inspect_err(|e| match e {
            WireError::NotForMe { .. } => self.stats.misaddressed += 1,
            WireError::Replayed { .. } => self.stats.replayed += 1,
            _ => self.stats.decode_errors += 1,
        })?;
        let header = datagram.header;
        if !self.config.replicas.contains(&header.sender) && header.sender != self.config.leader {
            self.stats.not_from_replica += 1;
            return Err(WireError::Forbidden("a front end hears only replicas"));
        }
        if header.epoch < self.epoch {
            self.stats.stale_epoch += 1;
            return Ok(header);
        }
        for message in datagram.messages {
            let message = match message {
                Message::Fragment(f) => {
                    match self.reassembler.push(header.sender, header.incarnation, f) {
                        Ok(Some(m)) => m,
                        Ok(None) => continue,
                        Err(e) => {
                            self.stats.decode_errors += 1;
                            return Err(e);
                        }
                    }
                }
                m => m,
            };
            if !matches!(message, Message::Coordinator) && header.epoch > self.epoch {
                // A candidate's `Coordinator` may never win its epoch (it
                // can be cut off, or lose its store): only what leaders and
                // their followers say raises ours.
                self.epoch = header.epoch;
                self.encoder.set_epoch(header.epoch);
            }
            self.on_message(now_ms, header.sender, message);
        }
        Ok(header)
    }

    /// The leader requests go to now.
    pub fn leader(&self) -> NodeId {
        self.leader
    }

    /// The epoch of the newest message from a replica.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// Requests go to `leader` from now on; the unanswered ones at once.
    fn follow(&mut self, now_ms: u64, leader: NodeId) {
        if leader == self.leader || NodeId::of_stream(self.config.stream) == leader {
            return;
        }
        tracing::info!(from = %self.leader, to = %leader, epoch = self.epoch, "front end follows a new leader");
        self.leader = leader;
        self.stats.leader_changes += 1;
        // Everything unanswered goes to the new leader now, with its backoff
        // restarted: the backoff measured the old leader's silence, and a new
        // leader still transferring state drops requests for a few
        // milliseconds, so they must be retried at the RTO, not after the
        // long backed-off timeouts (up to the maximum) they had reached.
        let sent: Vec<Seq> = self
            .pending
            .iter_mut()
            .filter_map(|(&s, p)| {
                p.sent.as_mut().map(|(first, last, n)| {
                    (*first, *last, *n) = (now_ms, now_ms, 0);
                    s
                })
            })
            .collect();
        for seq in sent {
            self.transmit(now_ms, seq);
        }
        for p in self.reads.values_mut() {
            p.sent = Some((now_ms, now_ms, 0));
        }
        let reads: Vec<u64> = self.reads.keys().copied().collect();
        for id in reads {
            self.transmit_read(now_ms, id);
        }
    }

    fn transmit_read(&mut self, now_ms: u64, id: u64) {
        let p = self.reads.get_mut(&id).expect("pending read");
        p.note_sent(now_ms, &mut self.stats);
        self.outbox.push(Message::Read {
            id,
            request: p.request.clone(),
        });
    }

    fn on_read_reply(&mut self, now_ms: u64, id: u64, reply: Reply) {
        let Some(p) = self.reads.remove(&id) else {
            self.stats.duplicate_replies += 1; // answered twice, or expired
            return;
        };
        if let Some((first, _, 1)) = p.sent {
            self.rtt.sample(now_ms.saturating_sub(first));
        }
        self.completions.push(Completion {
            seq: id | READ_ID_BIT,
            outcome: ClientOutcome::Reply(reply),
        });
    }

    /// Handles one authenticated message from replica `from` (its epoch is
    /// not older than ours).
    fn on_message(&mut self, now_ms: u64, from: NodeId, message: Message) {
        match message {
            Message::Coordinator => self.follow(now_ms, from),
            Message::LeaderIs { leader } => self.follow(now_ms, leader),
            Message::Reply { .. }
            | Message::RequestNack { .. }
            | Message::Unavailable { .. }
            | Message::ReadReply { .. }
            | Message::Forgotten { .. } => {
                // Only a leader answers requests.
                self.follow(now_ms, from);
                self.handle_message(now_ms, message);
            }
            m => self.handle_message(now_ms, m),
        }
    }

    /// Handles one authenticated message from a replica.
    pub fn handle_message(&mut self, now_ms: u64, message: Message) {
        match message {
            Message::Reply { seq, reply } => self.on_reply(now_ms, seq, reply),
            Message::ReadReply { id, reply } => self.on_read_reply(now_ms, id, reply),
            Message::Forgotten { seq } => {
                let sent = self.pending.get(&seq).is_some_and(|p| p.sent.is_some());
                match self.pending.remove(&seq) {
                    Some(p) if sent => {
                        self.stats.forgotten += 1;
                        if !p.reported {
                            self.completions.push(Completion {
                                seq,
                                outcome: ClientOutcome::Unknown,
                            });
                        }
                        self.pump(now_ms);
                    }
                    Some(p) => {
                        // Never sent: not ours to forget.
                        self.pending.insert(seq, p);
                        self.stats.unexpected += 1;
                    }
                    None => self.stats.duplicate_replies += 1,
                }
            }
            Message::RequestNack { missing } => {
                // The leader repeats its NACK until the gap closes: a request
                // sent within the grace is on its way already (resending it
                // for every NACK let one large request occupy the front end).
                for seq in missing {
                    let due = self
                        .pending
                        .get(&seq)
                        .and_then(|p| p.sent)
                        .is_some_and(|(_, last, _)| now_ms >= last + FAST_RETRANSMIT_GRACE_MS);
                    if due {
                        self.stats.nack_resends += 1;
                        self.transmit(now_ms, seq);
                    }
                }
            }
            Message::Unavailable {
                seq,
                reason,
                expired,
            } => {
                let Some(p) = self.pending.get_mut(&seq).filter(|p| p.sent.is_some()) else {
                    self.stats.unexpected += 1;
                    return;
                };
                self.stats.unavailable += 1;
                // Final only for a request that carries an expiration.
                if expired && p.ft.is_some() && !p.reported {
                    p.reported = true;
                    self.stats.not_executed += 1;
                    self.completions.push(Completion {
                        seq,
                        outcome: ClientOutcome::NotExecuted(reason),
                    });
                } else {
                    self.unavailable.push((seq, reason));
                }
            }
            _ => self.stats.unexpected += 1,
        }
    }

    fn on_reply(&mut self, now_ms: u64, seq: Seq, reply: Reply) {
        let Some(p) = self.pending.remove(&seq) else {
            if seq < self.next_seq {
                self.stats.duplicate_replies += 1;
            } else {
                self.stats.unexpected += 1; // never sent: not ours to take
            }
            return;
        };
        let Some((first, _, transmissions)) = p.sent else {
            // A reply to a request never sent cannot be genuine.
            self.stats.unexpected += 1;
            self.pending.insert(seq, p);
            return;
        };
        if transmissions == 1 {
            self.rtt.sample(now_ms.saturating_sub(first));
        }
        self.fast_retransmit(now_ms, seq);
        if p.reported {
            self.late_replies.push((seq, reply));
        } else {
            self.completions.push(Completion {
                seq,
                outcome: ClientOutcome::Reply(reply),
            });
        }
        self.pump(now_ms);
    }

    /// Replies come in sequence order (the leader executes and commits each
    /// stream in order), so a reply to `answered` while an earlier request
    /// is still unanswered means that request or its reply was lost: resend
    /// it now instead of waiting for its timer (TCP's fast retransmit). A
    /// request sent less than [`FAST_RETRANSMIT_GRACE_MS`] ago is left alone,
    /// so reordering alone causes few duplicates (which are harmless anyway:
    /// the leader answers them from its reply table).
    fn fast_retransmit(&mut self, now_ms: u64, answered: Seq) {
        let lost: Vec<Seq> = self
            .pending
            .range(..answered)
            .filter(|(_, p)| {
                matches!(p.sent, Some((_, last, _)) if now_ms >= last + FAST_RETRANSMIT_GRACE_MS)
            })
            .map(|(&seq, _)| seq)
            .collect();
        self.stats.fast_retransmits += lost.len() as u64;
        for seq in lost {
            self.transmit(now_ms, seq);
        }
    }

    /// When a sent request is due for retransmission. Backoff is per
    /// request: its timeout doubles with each of its own transmissions,
    /// over the shared RTT-based timeout. (One shared, doubling timeout
    /// would sit at its maximum under random loss, since with many requests
    /// in flight one of them is nearly always expiring.)
    fn retransmit_at(&self, p: &Pending) -> Option<u64> {
        p.sent
            .map(|(_, last, transmissions)| last + self.rtt.backed_off(transmissions))
    }

    /// Fires due timers: outcome deadlines and retransmissions.
    pub fn tick(&mut self, now_ms: u64) {
        self.expire_deadlines(now_ms);
        let expired: Vec<Seq> = self
            .pending
            .iter()
            .filter(|(_, p)| self.retransmit_at(p).is_some_and(|at| now_ms >= at))
            .map(|(&seq, _)| seq)
            .collect();
        for seq in expired {
            self.transmit(now_ms, seq);
        }
        let reads_due: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, p)| self.retransmit_at(p).is_some_and(|at| now_ms >= at))
            .map(|(&id, _)| id)
            .collect();
        for id in reads_due {
            self.transmit_read(now_ms, id);
        }
        if self.config.heartbeat_ms > 0 && now_ms >= self.next_probe {
            self.probe = true;
            self.next_probe = now_ms + self.config.heartbeat_ms;
        }
        self.pump(now_ms);
    }

    /// Reports [`ClientOutcome::Unknown`] for every request whose deadline
    /// has come. Every input calls it first, so whether a reply beats the
    /// deadline depends only on the times given, not on whether the shell
    /// called `tick` or `handle_datagram` first.
    fn expire_deadlines(&mut self, now_ms: u64) {
        // A read past its deadline is dropped: it changed nothing, and a
        // late answer would serve nobody.
        let expired: Vec<u64> = self
            .reads
            .iter()
            .filter(|(_, p)| p.deadline <= now_ms)
            .map(|(&id, _)| id)
            .collect();
        for id in expired {
            self.reads.remove(&id);
            self.stats.timeouts += 1;
            self.completions.push(Completion {
                seq: id | READ_ID_BIT,
                outcome: ClientOutcome::Unknown,
            });
        }
        for (&seq, p) in &mut self.pending {
            if !p.reported && p.deadline <= now_ms {
                p.reported = true;
                self.stats.timeouts += 1;
                self.completions.push(Completion {
                    seq,
                    outcome: ClientOutcome::Unknown,
                });
            }
        }
    }

    /// When [`FrontEnd::tick`] must be called next, if ever.
    pub fn next_deadline(&self) -> Option<u64> {
        let probe = (self.config.heartbeat_ms > 0).then_some(self.next_probe);
        self.pending
            .values()
            .chain(self.reads.values())
            .flat_map(|p| {
                let retransmit = self.retransmit_at(p);
                let deadline = (!p.reported).then_some(p.deadline);
                retransmit.into_iter().chain(deadline)
            })
            .chain(probe)
            .min()
    }

    pub fn has_ready(&self) -> bool {
        !(self.outbox.is_empty()
            && self.completions.is_empty()
            && self.late_replies.is_empty()
            && self.unavailable.is_empty()
            && !self.probe)
    }

    /// Drains the outputs.
    pub fn ready(&mut self) -> FrontEndReady {
        let messages = std::mem::take(&mut self.outbox);
        let leader = self.leader;
        let key = self.config.key;
        let mut transmits: Vec<Transmit> = self
            .encoder
            .encode(key, leader, &messages)
            .into_iter()
            .map(|bytes| Transmit { to: leader, bytes })
            .collect();
        if std::mem::take(&mut self.probe) {
            let heartbeat = Message::Heartbeat {
                leader: None,
                log_epoch: 0,
                applied: 0,
                durable: 0,
                committed: 0,
            };
            for &r in &self.config.replicas {
                for bytes in self
                    .encoder
                    .encode(key, r, std::slice::from_ref(&heartbeat))
                {
                    transmits.push(Transmit { to: r, bytes });
                }
            }
        }
        self.stats.fragmented_sent = self.encoder.fragmented;
        self.stats.oversize_dropped = self.encoder.oversize_dropped;
        FrontEndReady {
            transmits,
            completions: std::mem::take(&mut self.completions),
            late_replies: std::mem::take(&mut self.late_replies),
            unavailable: std::mem::take(&mut self.unavailable),
        }
    }
}
