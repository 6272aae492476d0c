//! Coverage counters: how often each recovery path of the protocol ran in
//! a simulation. The many-seeds test requires every one to be non-zero, so a
//! change that stops the simulator from reaching a path fails loudly.

use super::Sim;

/// How often each protocol path ran, summed over nodes (and over runs by
/// [`Coverage::add`]); the many-seeds test requires every path to run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Coverage {
    pub request_nacks: u64,
    pub log_nacks: u64,
    pub entries_resent: u64,
    pub requests_held_back: u64,
    pub entries_held_back: u64,
    pub backpressure_drops: u64,
    pub duplicate_requests: u64,
    pub replies_resent: u64,
    pub duplicate_entries: u64,
    pub decode_errors: u64,
    pub fragmented: u64,
    pub retransmitted: u64,
    pub nack_resends: u64,
    pub unknown_outcomes: u64,
    pub late_replies: u64,
    pub backup_restarts: u64,
    pub elections: u64,
    pub new_leaders: u64,
    pub snapshots_installed: u64,
    pub members_removed: u64,
    pub members_added: u64,
    pub leader_crashes: u64,
    pub wipes: u64,
    pub pauses: u64,
    pub frontend_restarts: u64,
    pub frontend_leader_changes: u64,
    pub group_cuts: u64,
    /// Datagrams for a former stream refused at its restarted front end.
    pub misaddressed: u64,
    /// Duplicates and replays refused by a replay window.
    pub replays_refused: u64,
    /// Authentic datagrams whose key may not send them, refused.
    pub forbidden: u64,
    /// Front-end streams forgotten (silent, or to make room).
    pub streams_forgotten: u64,
    /// Reads answered without the log (each checked for linearizability).
    pub reads_answered: u64,
    /// Silent streams whose replies were dropped (heads kept).
    pub replies_dropped: u64,
    /// FT retries answered from a retained reply without executing again.
    pub ft_retries: u64,
    /// FT retries across front ends (another stream than the first try's).
    pub ft_retried_elsewhere: u64,
    /// FT requests refused in the log for having expired.
    pub ft_expired: u64,
    /// FT requests reported certainly not executed (expired, no majority).
    pub ft_not_executed: u64,
}

impl Coverage {
    pub fn add(&mut self, o: &Coverage) {
        self.request_nacks += o.request_nacks;
        self.log_nacks += o.log_nacks;
        self.entries_resent += o.entries_resent;
        self.requests_held_back += o.requests_held_back;
        self.entries_held_back += o.entries_held_back;
        self.backpressure_drops += o.backpressure_drops;
        self.duplicate_requests += o.duplicate_requests;
        self.replies_resent += o.replies_resent;
        self.duplicate_entries += o.duplicate_entries;
        self.decode_errors += o.decode_errors;
        self.fragmented += o.fragmented;
        self.retransmitted += o.retransmitted;
        self.nack_resends += o.nack_resends;
        self.unknown_outcomes += o.unknown_outcomes;
        self.late_replies += o.late_replies;
        self.backup_restarts += o.backup_restarts;
        self.elections += o.elections;
        self.new_leaders += o.new_leaders;
        self.snapshots_installed += o.snapshots_installed;
        self.members_removed += o.members_removed;
        self.members_added += o.members_added;
        self.leader_crashes += o.leader_crashes;
        self.wipes += o.wipes;
        self.pauses += o.pauses;
        self.frontend_restarts += o.frontend_restarts;
        self.frontend_leader_changes += o.frontend_leader_changes;
        self.group_cuts += o.group_cuts;
        self.misaddressed += o.misaddressed;
        self.replays_refused += o.replays_refused;
        self.forbidden += o.forbidden;
        self.streams_forgotten += o.streams_forgotten;
        self.reads_answered += o.reads_answered;
        self.replies_dropped += o.replies_dropped;
        self.ft_retries += o.ft_retries;
        self.ft_retried_elsewhere += o.ft_retried_elsewhere;
        self.ft_expired += o.ft_expired;
        self.ft_not_executed += o.ft_not_executed;
    }

    pub(super) fn of(sim: &Sim) -> Coverage {
        let mut c = Coverage::default();
        for (&id, r) in &sim.replicas {
            let s = r.stats();
            c.elections += s.elections;
            c.new_leaders += s.became_leader;
            c.snapshots_installed += s.snapshots_installed;
            c.members_removed += s.members_removed;
            c.members_added += s.members_added;
            if r.serving() {
                c.request_nacks += s.nacks_sent;
                c.requests_held_back += s.held_back;
            } else {
                c.log_nacks += s.nacks_sent;
                c.entries_held_back += s.held_back;
            }
            c.entries_resent += s.entries_resent;
            c.backpressure_drops += s.backpressure_drops;
            c.duplicate_requests += s.duplicate_requests;
            c.replies_resent += s.replies_resent;
            c.duplicate_entries += s.duplicate_entries;
            c.decode_errors += s.decode_errors;
            c.fragmented += s.fragmented_sent;
            c.misaddressed += s.misaddressed;
            c.replays_refused += s.replayed;
            c.forbidden += s.forbidden;
            c.streams_forgotten += s.streams_expired + s.streams_evicted;
            c.reads_answered += s.reads_answered;
            c.replies_dropped += s.replies_dropped;
            if r.serving() {
                c.ft_expired += s.ft_expired;
            }
            assert_eq!(s.oversize_dropped, 0, "{id} dropped an unencodable message");
            assert_eq!(s.divergences, 0, "{id} saw divergence");
        }
        for (id, fe) in &sim.frontends {
            let s = fe.stats();
            c.decode_errors += s.decode_errors;
            c.fragmented += s.fragmented_sent;
            c.retransmitted += s.retransmitted;
            c.nack_resends += s.nack_resends;
            c.frontend_leader_changes += s.leader_changes;
            c.misaddressed += s.misaddressed;
            c.replays_refused += s.replayed;
            c.ft_not_executed += s.not_executed;
            assert_eq!(s.oversize_dropped, 0, "{id} dropped an unencodable message");
        }
        c.ft_retries = sim.check.ft_retried;
        c.ft_retried_elsewhere = sim.check.ft_retried_elsewhere;
        c.unknown_outcomes = sim.check.unknown_outcomes;
        c.late_replies = sim.check.late_replies;
        c.backup_restarts = sim.counts.restarted;
        c.leader_crashes = sim.counts.leader_crashes;
        c.wipes = sim.counts.wiped;
        c.pauses = sim.counts.paused;
        c.frontend_restarts = sim.counts.frontend_restarts;
        c.group_cuts = sim.counts.cuts;
        c
    }
}
