//! The replicated front end: a [`ClinicService`] whose requests go through
//! the sans-IO [`FrontEnd`] sequencer to the leader over UDP.
//!
//! CORBA servant threads call [`ReplicatedService::call`], which hands the
//! request to one event-loop task and waits for the single outcome. The task
//! numbers the request, sends and retransmits it, and completes the waiter
//! exactly once: with the reply, or with "outcome unknown" at the deadline
//! (the request itself stays in the sequencer and is still retransmitted).

use crate::clock::Clock;
use crate::config::{ClusterConfig, Role};
use crate::link::{Link, Redundancy};
use crate::metrics::{AbortOnDrop, FrontEndGauges, FrontEndMetrics};
use crate::refusals::Refusals;
use crate::replica::{address_book, initial_leader, wire_config};
use crate::status::{ProcessStatus, StatusWriter};
use crate::NodeError;
use dcms_corba::{ClinicService, ServiceError};
use dcms_core::{FtRequest, ManagerId, Reply, Request};
use dcms_repl::{ClientOutcome, FrontEnd, FrontEndConfig};
use std::collections::HashMap;
use std::future::Future;
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use tracing::{debug, info, warn};

/// Requests accepted but not yet answered, at most; beyond, callers get
/// TRANSIENT (COMPLETED_NO) at once instead of piling up.
pub const MAX_QUEUED: usize = 4096;

/// What a caller is told: the outcome, or why there is none.
type Outcome = Result<ClientOutcome, ServiceError>;

struct Submit {
    request: Request,
    /// The client's FT-CORBA identity, when it sent one.
    ft: Option<FtRequest>,
    /// The manager the client's TLS certificate proved, over TLS.
    authenticated: Option<ManagerId>,
    done: dcms_corba::Done,
}

/// The [`ClinicService`] the CORBA server calls.
#[derive(Clone)]
pub struct ReplicatedService {
    tx: mpsc::Sender<Submit>,
}

impl ClinicService for ReplicatedService {
    fn call(&self, request: Request) -> Result<Reply, ServiceError> {
        self.call_ft(request, None)
    }

    fn call_ft(&self, request: Request, ft: Option<FtRequest>) -> Result<Reply, ServiceError> {
        self.call_as(request, ft, None)
    }

    fn call_as(
        &self,
        request: Request,
        ft: Option<FtRequest>,
        authenticated: Option<ManagerId>,
    ) -> Result<Reply, ServiceError> {
        let (done, wait) = std::sync::mpsc::sync_channel(1);
        self.start_as(
            request,
            ft,
            authenticated,
            Box::new(move |result| {
                let _ = done.try_send(result);
            }),
        );
        // The event loop ended while the request was in flight.
        wait.recv().unwrap_or(Err(ServiceError::OutcomeUnknown))
    }

    fn answers_later(&self) -> bool {
        true
    }

    fn start_as(
        &self,
        request: Request,
        ft: Option<FtRequest>,
        authenticated: Option<ManagerId>,
        done: dcms_corba::Done,
    ) {
        // An oversized argument would be refused by validation anyway: refuse
        // it here, before it travels (and is retransmitted) to the replicas.
        if let Err(e) = request.check_size() {
            return done(Ok(Err(e)));
        }
        let submitted = self.tx.try_send(Submit {
            request,
            ft,
            authenticated,
            done,
        });
        if let Err(e) = submitted {
            let (why, s) = match e {
                mpsc::error::TrySendError::Full(s) => (ServiceError::Overloaded, s),
                mpsc::error::TrySendError::Closed(s) => (
                    ServiceError::Unavailable("the front end is shutting down".into()),
                    s,
                ),
            };
            (s.done)(Err(why));
        }
    }
}

/// What the caller of a request hears for its outcome.
fn answer(outcome: Outcome) -> Result<Reply, ServiceError> {
    match outcome {
        Ok(ClientOutcome::Reply(reply)) => Ok(reply),
        Ok(ClientOutcome::Unknown) => Err(ServiceError::OutcomeUnknown),
        Ok(ClientOutcome::NotExecuted(reason)) => Err(ServiceError::Unavailable(reason)),
        Err(e) => Err(e),
    }
}

/// The name of front end `id`'s status file and log prefix: `frontend-<id>`.
pub fn status_name(id: u64) -> String {
    format!("frontend-{id}")
}

/// Binds front end `id`'s UDP socket and returns the service plus the
/// event loop to run (until `shutdown`). `config` is that front end's
/// ([`ClusterConfig::for_frontend`]): its own key only.
pub fn start_frontend(
    config: &ClusterConfig,
    id: u64,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(ReplicatedService, impl Future<Output = ()> + Send + 'static), NodeError> {
    start_frontend_with_metrics(config, id, None, shutdown)
}

/// [`start_frontend`], serving Prometheus metrics on `metrics_addr` (bound
/// now) while the event loop runs.
pub fn start_frontend_with_metrics(
    config: &ClusterConfig,
    id: u64,
    metrics_addr: Option<std::net::SocketAddr>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(ReplicatedService, impl Future<Output = ()> + Send + 'static), NodeError> {
    config.validate_for(Role::FrontEnd(id))?;
    let me = config.frontend(id)?.clone();
    let mut link = Link::bind(
        me.udp,
        address_book(config),
        &config.faults,
        id,
        config.max_datagram,
    )
    .map_err(|e| NodeError::Io {
        what: format!("binding UDP {} (front end {id})", me.udp),
        source: e,
    })?;
    // A new random stream at every start: sequence numbers restart at 1,
    // and the replicas must not take them for an old stream's (whose stored
    // replies they still hold), nor may an old stream's late replies reach
    // this one (every datagram names its addressee).
    let stream = dcms_repl::frontend::random_stream(rand::random());
    let wire = wire_config(config, Role::FrontEnd(id))?;
    let mut fc = FrontEndConfig::new(wire, stream, initial_leader(config));
    fc.incarnation = Clock::wall_us();
    // The replicas it hears from (and, with failover, heartbeats to learn
    // who leads).
    fc.replicas = config
        .replicas
        .iter()
        .map(|r| dcms_repl::NodeId(r.id))
        .collect();
    if config.timeouts.failover {
        fc.heartbeat_ms = config.timeouts.heartbeat_ms;
    }
    fc.outcome_timeout_ms = config.timeouts.outcome_ms;
    fc.min_rto_ms = config.timeouts.rto_min_ms;
    fc.max_rto_ms = config.timeouts.rto_max_ms;
    fc.initial_rto_ms = config.timeouts.rto_max_ms.min(100).max(fc.min_rto_ms);
    let mut metrics = None;
    let mut metrics_server = None;
    if let Some(addr) = metrics_addr {
        let m = FrontEndMetrics::new(
            &dcms_repl::frontend::FrontEndStats::default(),
            &crate::link::LinkStats::default(),
            &Refusals::default(),
        );
        metrics_server =
            Some(
                crate::metrics::serve(addr, m.registry()).map_err(|e| NodeError::Io {
                    what: format!("binding the metrics address {addr} (front end {id})"),
                    source: e,
                })?,
            );
        metrics = Some(m);
    }
    let (tx, mut rx) = mpsc::channel::<Submit>(MAX_QUEUED);
    let data_dir = config.data_dir.clone();
    let leader = initial_leader(config);
    let adaptive_redundancy = config.adaptive_redundancy;
    // The CORBA server serves what the configuration says, or does not
    // start (`dcms frontend`).
    let transport = if config.tls.is_some() {
        crate::status::TRANSPORT_TLS
    } else {
        crate::status::TRANSPORT_PLAIN
    };
    let event_loop = async move {
        // Stops with the event loop.
        let _metrics_server = metrics_server.map(tokio::spawn).map(AbortOnDrop);
        let clock = Clock::new();
        let mut fe = FrontEnd::new(fc);
        let mut waiters: Waiters = HashMap::new();
        let name = status_name(id);
        let mut status = StatusWriter::new(&data_dir, &name);
        let mut redundancy = Redundancy::default();
        let mut refusals = Refusals::default();
        // Requests its CORBA clients handed in since the start.
        let mut requests: u64 = 0;
        tokio::pin!(shutdown);
        let mut status_tick = crate::status::ticker();
        info!(frontend = id, stream, leader = %leader, "front end sequencer running with a new stream");
        loop {
            let sleep = clock.sleep_until(fe.next_deadline());
            let flush = crate::link::flush_due(link.flush_at());
            tokio::select! {
                _ = &mut shutdown => break,
                Some(s) = rx.recv() => {
                    let now = clock.now_ms();
                    requests += 1;
                    submit(&mut fe, &mut waiters, metrics.as_ref(), now, s);
                    while let Ok(s) = rx.try_recv() {
                        requests += 1;
                        submit(&mut fe, &mut waiters, metrics.as_ref(), now, s);
                    }
                }
                (bytes, from) = link.recv() => {
                    let now = clock.now_ms();
                    feed(&mut fe, &mut refusals, now, &bytes, from);
                    // Bounded, so that sends, completions and the clock
                    // are never starved by a busy socket.
                    for _ in 0..crate::replica::BURST {
                        let Some((bytes, from)) = link.try_recv() else {
                            break;
                        };
                        feed(&mut fe, &mut refusals, now, &bytes, from);
                    }
                }
                _ = sleep => fe.tick(clock.now_ms()),
                _ = flush => link.flush(),
                _ = status_tick.tick() => {}
            }
            if adaptive_redundancy {
                let st = fe.stats();
                let copies = redundancy.copies(
                    clock.now_ms(),
                    st.retransmitted + st.nack_resends,
                    st.sent,
                    link.copies(),
                );
                link.set_copies(copies);
            }
            let ready = fe.ready();
            for t in ready.transmits {
                link.send(t);
            }
            for c in ready.completions {
                match waiters.remove(&c.seq) {
                    Some((done, arrived)) => {
                        if matches!(c.outcome, ClientOutcome::Unknown) {
                            warn!(
                                seq = c.seq,
                                "no outcome by the deadline: the client hears COMPLETED_MAYBE"
                            );
                        }
                        if let Some(m) = &metrics {
                            m.outcome(outcome_label(&c.outcome), arrived.elapsed());
                        }
                        done(answer(Ok(c.outcome)));
                    }
                    None => debug!(seq = c.seq, "completion without a waiter"),
                }
            }
            // The leader refused these for want of a majority; they stay
            // pending and may still execute once a majority is back, so the
            // client is not told "no effect": it waits, at most until the
            // deadline (then TRANSIENT, COMPLETED_MAYBE).
            if let Some((seq, why)) = ready.unavailable.first() {
                warn!(seq, count = ready.unavailable.len(), why = %why, "the leader reaches no majority; requests wait");
            }
            for (seq, _) in ready.late_replies {
                info!(
                    seq,
                    "a request reported as unknown has completed after its deadline"
                );
            }
            status.maybe_write(clock.now_ms(), || {
                // At the status file's pace: the metrics' counters and gauges.
                if let Some(m) = &mut metrics {
                    let gauges = FrontEndGauges {
                        unanswered: fe.unanswered(),
                        rto_ms: fe.rto_ms(),
                        epoch: fe.epoch(),
                        leader: fe.leader().0,
                    };
                    m.update(&gauges, fe.stats(), &link.stats, &refusals);
                }
                ProcessStatus {
                    name: name.clone(),
                    id,
                    role: "frontend".into(),
                    pid: std::process::id(),
                    epoch: fe.epoch(),
                    leader: Some(fe.leader().0),
                    group: Vec::new(),
                    peers: Vec::new(),
                    applied: 0,
                    durable: 0,
                    committed: None,
                    digest: String::new(),
                    iiop: Some(me.iiop.to_string()),
                    transport: Some(transport.to_string()),
                    stats: serde_json::json!({
                        "requests": requests,
                        "unanswered": fe.unanswered(),
                        "rto_ms": fe.rto_ms(),
                        "protocol": fe.stats(),
                        "link": link.stats,
                        "refused": refusals,
                    }),
                    updated_ms: clock.now_ms(),
                    metrics: metrics_addr.map(|a| a.to_string()),
                }
            });
        }
        // Waiters still open learn that the outcome is unknown.
        for (_, (done, _)) in waiters.drain() {
            done(Err(ServiceError::OutcomeUnknown));
        }
        info!("front end sequencer stopped");
    };
    Ok((ReplicatedService { tx }, event_loop))
}

/// Callers waiting for their outcome, by sequence number, with when their
/// request arrived.
type Waiters = HashMap<u64, (dcms_corba::Done, Instant)>;

/// The `outcome` label of the request latency metric.
fn outcome_label(outcome: &ClientOutcome) -> &'static str {
    match outcome {
        ClientOutcome::Reply(_) => "reply",
        ClientOutcome::Unknown => "unknown",
        ClientOutcome::NotExecuted(_) => "not_executed",
    }
}

fn submit(
    fe: &mut FrontEnd,
    waiters: &mut Waiters,
    metrics: Option<&FrontEndMetrics>,
    now: u64,
    s: Submit,
) {
    if let Some(m) = metrics {
        m.request();
    }
    if fe.unanswered() >= MAX_QUEUED {
        // Not started: the client may safely retry.
        if let Some(m) = metrics {
            m.outcome("refused", Duration::ZERO);
        }
        (s.done)(Err(ServiceError::Overloaded));
        return;
    }
    let span = tracing::debug_span!(
        "request",
        op = s.request.operation(),
        ft =
            s.ft.as_ref()
                .map(|f| format!("{}/{}", f.client_id, f.retention_id))
    );
    let _g = span.enter();
    let authenticated = s.authenticated.map(|id| id.to_string());
    let seq = fe.submit_as(now, s.request, s.ft, authenticated);
    debug!(seq, "submitted");
    waiters.insert(seq, (s.done, Instant::now()));
}

fn feed(
    fe: &mut FrontEnd,
    refusals: &mut Refusals,
    now: u64,
    bytes: &[u8],
    from: std::net::SocketAddr,
) {
    if let Err(e) = fe.handle_datagram(now, bytes) {
        refusals.refused(now, &e, from);
    }
}
