//! The leader's sequencer: requests into the log, in order, at most once.
//!
//! Per stream, requests execute strictly in sequence order. A request beyond
//! the next expected number is held back (up to `max_holdback`) and, after
//! `nack_delay_ms`, the front end gets a NACK naming every missing number,
//! repeated every `nack_retry_ms` while the gap stays open. An executed
//! number is never executed again: the stored reply is resent once the entry
//! is committed (before that, the commit itself will answer).
//!
//! With an FT identity (`FtRequest`) that already executed, in any stream,
//! the request is logged as a retry that changes nothing and carries the
//! first execution's reply; one whose expiration has passed is logged as
//! refused. A leader that reaches no majority executes nothing new: it
//! answers `Unavailable` (final when the request expired and never ran).

use super::{LeaderState, Phase, WindowEntry};
use crate::ids::{NodeId, Seq, StreamId};
use crate::replica::Core;
use crate::session::Lookup;
use crate::wire::Message;
use dcms_core::{DomainError, FtRequest, LogEntry, ManagerId, Request, RequestKey};
use std::sync::Arc;

/// Who a request comes from, beyond its stream: the client's FT-CORBA
/// identity, and the manager its TLS certificate proved (checked by the
/// front end against the request's manager ID), each when there is one.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(in crate::replica) struct Origin {
    pub ft: Option<FtRequest>,
    pub authenticated: Option<String>,
}

/// Why an FT identity may not be retained, if it may not: an expiration
/// more than `MAX_FT_EXPIRATION_MS` ahead, or an empty or oversized client
/// ID.
fn ft_out_of_bounds(ft: &FtRequest, now_ms: u64) -> Option<String> {
    use dcms_core::store::{MAX_FT_CLIENT_ID_BYTES, MAX_FT_EXPIRATION_MS};
    if ft.expires_ms > now_ms.saturating_add(MAX_FT_EXPIRATION_MS) {
        return Some(format!(
            "expiration_time is more than {} s ahead",
            MAX_FT_EXPIRATION_MS / 1000
        ));
    }
    if ft.client_id.is_empty() || ft.client_id.len() > MAX_FT_CLIENT_ID_BYTES {
        return Some(format!(
            "client_id of {} bytes (1 to {MAX_FT_CLIENT_ID_BYTES} expected)",
            ft.client_id.len()
        ));
    }
    None
}

impl LeaderState {
    pub(in crate::replica) fn on_request(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        stream: StreamId,
        seq: Seq,
        request: Request,
        origin: Origin,
    ) {
        if seq == 0 {
            core.stats.unexpected += 1;
            return;
        }
        if self.phase != Phase::Serving {
            // State transfer first; the front end retransmits.
            core.stats.not_serving += 1;
            return;
        }
        let head = core.sessions.head(stream);
        if seq <= head {
            core.stats.duplicate_requests += 1;
            match core.sessions.lookup(RequestKey { stream, seq }) {
                Lookup::Executed { position, reply } if position <= self.committed => {
                    let reply = reply.clone();
                    core.stats.replies_resent += 1;
                    core.send(NodeId::of_stream(stream), Message::Reply { seq, reply });
                }
                Lookup::Executed { .. } => {} // its commit will answer
                Lookup::Forgotten => {
                    // Executed, reply gone: say so, or the front end would
                    // retransmit it forever.
                    core.stats.forgotten_duplicates += 1;
                    core.send(NodeId::of_stream(stream), Message::Forgotten { seq });
                }
                Lookup::NotExecuted => unreachable!("seq {seq} <= head {head}"),
            }
            return;
        }
        let reachable = 1 + self.backups.values().filter(|p| p.member).count();
        if reachable < core.config.majority() {
            // Executing now could only be undone: refuse, and say why.
            core.stats.unavailable += 1;
            // Final when the request has expired (by more than the skew
            // margin) and its identity never executed: this serving
            // leader's log holds everything that may have committed, and
            // no leader executes an expired request (see `execute`).
            let expired = origin.ft.as_ref().is_some_and(|ft| {
                now_ms >= ft.expires_ms.saturating_add(core.config.clock_skew_ms)
                    && core.sessions.retained(ft).is_none()
            });
            let reason = if expired {
                format!(
                    "not executed: the request expired while the leader reached {reachable} of {} replicas, fewer than a majority",
                    core.config.group.len()
                )
            } else {
                format!(
                    "the leader reaches {reachable} of {} replicas, fewer than a majority",
                    core.config.group.len()
                )
            };
            core.send(
                NodeId::of_stream(stream),
                Message::Unavailable {
                    seq,
                    reason,
                    expired,
                },
            );
            return;
        }
        if seq > head + 1 {
            if seq > head + core.config.max_holdback {
                core.stats.beyond_holdback += 1;
                return;
            }
            let held = self.held.entry(stream).or_default();
            if held.insert(seq, (request, origin)).is_none() {
                core.stats.held_back += 1;
            }
            self.nack_at
                .entry(stream)
                .or_insert(now_ms + core.config.nack_delay_ms);
            return;
        }
        if self.window.len() >= core.config.max_window {
            core.stats.backpressure_drops += 1;
            return;
        }
        self.execute(core, now_ms, RequestKey { stream, seq }, &request, origin);
        self.drain_held(core, now_ms, stream);
    }

    /// Executes the held requests that now follow the head.
    pub(super) fn drain_held(&mut self, core: &mut Core, now_ms: u64, stream: StreamId) {
        while self.window.len() < core.config.max_window {
            let next = core.sessions.head(stream) + 1;
            let Some((request, origin)) = self.held.get_mut(&stream).and_then(|h| h.remove(&next))
            else {
                break;
            };
            self.execute(
                core,
                now_ms,
                RequestKey { stream, seq: next },
                &request,
                origin,
            );
        }
        if self.held.get(&stream).is_some_and(|h| h.is_empty()) {
            self.held.remove(&stream);
            self.nack_at.remove(&stream);
        }
    }

    /// Executes `request` as the stream's next number, into the log. With
    /// an FT identity that already executed (in any stream), the entry
    /// changes nothing and carries the first execution's reply; with one
    /// whose expiration has passed, it changes nothing and says so. The
    /// audit line names the manager the client's certificate proved, when
    /// it is a valid manager ID (a front end sends only such).
    fn execute(
        &mut self,
        core: &mut Core,
        now_ms: u64,
        key: RequestKey,
        request: &Request,
        origin: Origin,
    ) {
        assert_eq!(self.phase, Phase::Serving, "only a serving leader executes");
        assert_eq!(key.seq, core.sessions.head(key.stream) + 1);
        if matches!(
            request,
            Request::ListRecords { .. } | Request::ListRecordsPage { .. }
        ) {
            // A leader that was a backup builds the index at its first list.
            core.state.keep_name_index(true);
        }
        let (mut reply, mut effect) = core.state.execute(request, now_ms);
        effect.audit.authenticated = match origin.authenticated {
            Some(id) => match ManagerId::parse(&id) {
                Ok(id) => Some(id.to_string()),
                Err(_) => {
                    core.stats.unexpected += 1;
                    None
                }
            },
            None => None,
        };
        let mut ft = origin.ft;
        if let Some(why) = ft.as_ref().and_then(|ft| ft_out_of_bounds(ft, now_ms)) {
            // The front end checks this too; a leader retains nothing a
            // front end could not ask for.
            core.stats.ft_refused += 1;
            reply = Err(DomainError::InvalidRequest {
                field: "FT_REQUEST".into(),
                reason: why,
            });
            effect.change = None;
            effect.audit.outcome = dcms_core::state::outcome_text(&reply);
            ft = None;
        }
        if let Some(ft) = &ft {
            if let Some(first) = core.sessions.retained(ft) {
                core.stats.ft_retries += 1;
                reply = first.reply.clone();
                effect.change = None;
                effect.audit.outcome = format!(
                    "retry of {:?}/{} (position {}): {}",
                    ft.client_id,
                    ft.retention_id,
                    first.position,
                    dcms_core::state::outcome_text(&reply)
                );
            } else if now_ms >= ft.expires_ms {
                core.stats.ft_expired += 1;
                reply = Err(DomainError::Exhausted {
                    reason: format!(
                        "not executed: the request expired {} ms before it could run",
                        now_ms - ft.expires_ms
                    ),
                });
                effect.change = None;
                effect.audit.outcome = dcms_core::state::outcome_text(&reply);
            }
        }
        let entry = Arc::new(LogEntry {
            position: core.applied + 1,
            key,
            effect,
            reply,
            ft,
        });
        core.apply(Arc::clone(&entry));
        core.stats.executed += 1;
        let leader_last = entry.position;
        let epoch = core.epoch();
        for (&backup, progress) in &mut self.backups {
            if !progress.synced {
                continue;
            }
            core.outbox.push((
                backup,
                epoch,
                Message::Append {
                    entry: Arc::clone(&entry),
                    leader_last,
                    committed: self.committed,
                },
            ));
            progress
                .resend_at
                .get_or_insert(now_ms + core.config.retransmit_ms);
        }
        self.window.push_back(WindowEntry {
            entry,
            digest_after: core.state.digest(),
        });
    }

    /// NACKs every stream whose gap has waited long enough, naming the
    /// missing numbers.
    pub(super) fn nack_gaps(&mut self, core: &mut Core, now_ms: u64) {
        let due: Vec<StreamId> = self
            .nack_at
            .iter()
            .filter(|&(_, &at)| at <= now_ms)
            .map(|(&s, _)| s)
            .collect();
        for stream in due {
            let head = core.sessions.head(stream);
            let held = &self.held[&stream];
            let top = *held.keys().next_back().expect("held is never empty");
            let missing: Vec<Seq> = (head + 1..top)
                .filter(|s| !held.contains_key(s))
                .take(core.config.max_nack_numbers)
                .collect();
            // No gap means the next request waits for room in the window.
            if !missing.is_empty() {
                core.stats.nacks_sent += 1;
                core.send(NodeId::of_stream(stream), Message::RequestNack { missing });
            }
            self.nack_at
                .insert(stream, now_ms + core.config.nack_retry_ms);
        }
    }
}
