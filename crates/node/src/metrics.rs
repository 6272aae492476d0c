//! Prometheus metrics of a replica or a front end, as etcd exposes them:
//! off unless `--metrics-addr` is given, then `GET /metrics` on that
//! address answers the text exposition format.
//!
//! The event loop owns the state machine, so it pushes values here
//! ([`ReplicaMetrics::update`], [`FrontEndMetrics::update`], and the
//! histograms as events happen); a scrape only reads atomics. Every counter
//! of the protocol's statistics (`ReplicaStats`, `FrontEndStats`) and of the
//! link is exported under its field's name, so a counter added there is
//! exported without a change here.

use prometheus_client::encoding::text::encode;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use serde::Serialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{debug, info};

/// The largest request a scraper may send (its request line and headers).
const MAX_REQUEST_BYTES: usize = 8 * 1024;
/// A scraper that has not sent its whole request by then is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Counters mirrored from a statistics struct: one Prometheus counter per
/// numeric field, advanced by the difference at each update.
struct MirroredCounters {
    counters: BTreeMap<String, (Counter, u64)>,
}

impl MirroredCounters {
    /// Registers a counter for every numeric field of `example` (a
    /// `Default` of the statistics struct), named `<prefix>_<field>`.
    fn register(
        registry: &mut Registry,
        prefix: &str,
        what: &str,
        example: &impl Serialize,
    ) -> Self {
        let mut counters = BTreeMap::new();
        for field in numeric_fields(example).into_keys() {
            let c = Counter::default();
            registry.register(
                format!("{prefix}_{field}"),
                format!("{what}: {}", field.replace('_', " ")),
                c.clone(),
            );
            counters.insert(field, (c, 0));
        }
        MirroredCounters { counters }
    }

    fn update(&mut self, stats: &impl Serialize) {
        for (field, value) in numeric_fields(stats) {
            if let Some((counter, last)) = self.counters.get_mut(&field) {
                // Counters only grow; a lower value (never seen) is ignored.
                if value > *last {
                    counter.inc_by(value - *last);
                    *last = value;
                }
            }
        }
    }
}

/// The numeric fields of a struct, by name.
fn numeric_fields(stats: &impl Serialize) -> BTreeMap<String, u64> {
    match serde_json::to_value(stats) {
        Ok(serde_json::Value::Object(fields)) => fields
            .into_iter()
            .filter_map(|(k, v)| Some((k, v.as_u64()?)))
            .collect(),
        _ => BTreeMap::new(),
    }
}

/// Buckets for latencies from 100 µs to about 13 s.
fn latency_buckets() -> impl Iterator<Item = f64> {
    exponential_buckets(0.0001, 2.0, 18)
}

fn latency_histogram() -> Histogram {
    Histogram::new(latency_buckets())
}

type Labels = Vec<(String, String)>;
type LatencyFamily = Family<Labels, Histogram, fn() -> Histogram>;

fn gauge(registry: &mut Registry, name: &str, help: &str) -> Gauge {
    let g = Gauge::default();
    registry.register(name, help, g.clone());
    g
}

/// A replica's metrics.
pub struct ReplicaMetrics {
    registry: Arc<Registry>,
    epoch: Gauge,
    leader: Gauge,
    is_leader: Gauge,
    serving: Gauge,
    members: Gauge,
    applied: Gauge,
    durable: Gauge,
    committed: Gauge,
    /// Per backup: milliseconds since its digest last matched the leader's.
    digest_age: Family<Labels, Gauge>,
    commit_entries: Histogram,
    commit_seconds: Histogram,
    protocol: MirroredCounters,
    link: MirroredCounters,
    refused: MirroredCounters,
}

/// What a replica's event loop reports at each update.
pub struct ReplicaGauges {
    pub epoch: u64,
    pub leader: Option<u64>,
    pub is_leader: bool,
    pub serving: bool,
    pub members: usize,
    pub applied: u64,
    pub durable: u64,
    pub committed: u64,
    /// Per backup (leader only): ms since its digest last matched.
    pub digest_age_ms: Vec<(u64, u64)>,
}

impl ReplicaMetrics {
    pub fn new(
        protocol: &impl Serialize,
        link: &impl Serialize,
        refused: &impl Serialize,
    ) -> ReplicaMetrics {
        let mut r = Registry::with_prefix("dcms_replica");
        let epoch = gauge(
            &mut r,
            "epoch",
            "The replica's epoch (a new one at every election)",
        );
        let leader = gauge(
            &mut r,
            "leader",
            "The ID of the leader this replica follows (0: none)",
        );
        let is_leader = gauge(&mut r, "is_leader", "1 when this replica leads");
        let serving = gauge(
            &mut r,
            "serving",
            "1 when this replica leads and serves requests",
        );
        let members = gauge(&mut r, "members", "Members of the leader's current view");
        let applied = gauge(&mut r, "applied_position", "Last log position applied");
        let durable = gauge(
            &mut r,
            "durable_position",
            "Last log position durable on this replica's disk",
        );
        let committed = gauge(
            &mut r,
            "committed_position",
            "Last log position known committed",
        );
        let digest_age = Default::default();
        r.register(
            "digest_age_ms",
            "Leader only, per backup: milliseconds since the backup's state digest last matched the leader's at the same position",
            Clone::clone(&digest_age),
        );
        let commit_entries = Histogram::new(exponential_buckets(1.0, 2.0, 12));
        r.register(
            "commit_entries",
            "Log entries per store commit (group commit)",
            commit_entries.clone(),
        );
        let commit_seconds = latency_histogram();
        r.register(
            "commit_seconds",
            "Duration of one store commit, fsync included",
            commit_seconds.clone(),
        );
        let protocol = MirroredCounters::register(&mut r, "protocol", "Protocol counter", protocol);
        let link = MirroredCounters::register(&mut r, "link", "UDP link counter", link);
        let refused = MirroredCounters::register(&mut r, "refused", "Datagrams refused", refused);
        ReplicaMetrics {
            registry: Arc::new(r),
            epoch,
            leader,
            is_leader,
            serving,
            members,
            applied,
            durable,
            committed,
            digest_age,
            commit_entries,
            commit_seconds,
            protocol,
            link,
            refused,
        }
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// One store commit of `entries` entries that took `took`.
    pub fn commit(&self, entries: u64, took: Duration) {
        self.commit_entries.observe(entries as f64);
        self.commit_seconds.observe(took.as_secs_f64());
    }

    pub fn update(
        &mut self,
        g: &ReplicaGauges,
        protocol: &impl Serialize,
        link: &impl Serialize,
        refused: &impl Serialize,
    ) {
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.epoch.set(i(g.epoch));
        self.leader.set(i(g.leader.unwrap_or(0)));
        self.is_leader.set(g.is_leader.into());
        self.serving.set(g.serving.into());
        self.members.set(i(g.members as u64));
        self.applied.set(i(g.applied));
        self.durable.set(i(g.durable));
        self.committed.set(i(g.committed));
        self.digest_age.clear();
        for (backup, age) in &g.digest_age_ms {
            self.digest_age
                .get_or_create(&vec![("backup".to_string(), backup.to_string())])
                .set(i(*age));
        }
        self.protocol.update(protocol);
        self.link.update(link);
        self.refused.update(refused);
    }
}

/// What a front end's event loop reports at each update.
pub struct FrontEndGauges {
    pub unanswered: usize,
    pub rto_ms: u64,
    pub epoch: u64,
    pub leader: u64,
}

/// A front end's metrics.
pub struct FrontEndMetrics {
    registry: Arc<Registry>,
    requests: Counter,
    unanswered: Gauge,
    rto_ms: Gauge,
    epoch: Gauge,
    leader: Gauge,
    request_seconds: LatencyFamily,
    protocol: MirroredCounters,
    link: MirroredCounters,
    refused: MirroredCounters,
}

impl FrontEndMetrics {
    pub fn new(
        protocol: &impl Serialize,
        link: &impl Serialize,
        refused: &impl Serialize,
    ) -> FrontEndMetrics {
        let mut r = Registry::with_prefix("dcms_frontend");
        let requests = Counter::default();
        r.register(
            "requests",
            "Requests the CORBA clients handed in",
            requests.clone(),
        );
        let unanswered = gauge(
            &mut r,
            "unanswered",
            "Requests sent to the leader and not yet answered",
        );
        let rto_ms = gauge(&mut r, "rto_ms", "Current retransmission timeout, ms");
        let epoch = gauge(&mut r, "epoch", "Epoch of the leader followed");
        let leader = gauge(&mut r, "leader", "ID of the leader followed");
        let request_seconds: LatencyFamily =
            Family::new_with_constructor(latency_histogram as fn() -> Histogram);
        r.register(
            "request_seconds",
            "From a request's arrival to its outcome, by outcome (reply, unknown, not_executed, refused)",
            request_seconds.clone(),
        );
        let protocol = MirroredCounters::register(&mut r, "protocol", "Protocol counter", protocol);
        let link = MirroredCounters::register(&mut r, "link", "UDP link counter", link);
        let refused = MirroredCounters::register(&mut r, "refused", "Datagrams refused", refused);
        FrontEndMetrics {
            registry: Arc::new(r),
            requests,
            unanswered,
            rto_ms,
            epoch,
            leader,
            request_seconds,
            protocol,
            link,
            refused,
        }
    }

    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// A request arrived.
    pub fn request(&self) {
        self.requests.inc();
    }

    /// A request's outcome, `took` after it arrived.
    pub fn outcome(&self, outcome: &str, took: Duration) {
        self.request_seconds
            .get_or_create(&vec![("outcome".to_string(), outcome.to_string())])
            .observe(took.as_secs_f64());
    }

    pub fn update(
        &mut self,
        g: &FrontEndGauges,
        protocol: &impl Serialize,
        link: &impl Serialize,
        refused: &impl Serialize,
    ) {
        let i = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.unanswered.set(i(g.unanswered as u64));
        self.rto_ms.set(i(g.rto_ms));
        self.epoch.set(i(g.epoch));
        self.leader.set(i(g.leader));
        self.protocol.update(protocol);
        self.link.update(link);
        self.refused.update(refused);
    }
}

/// Binds `addr` now (so that a taken port fails the start, naming it) and
/// returns the task that serves `GET /metrics` from `registry`, to spawn on
/// a tokio runtime.
pub fn serve(
    addr: SocketAddr,
    registry: Arc<Registry>,
) -> std::io::Result<impl std::future::Future<Output = ()> + Send + 'static> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let addr = listener.local_addr()?;
    info!(%addr, "metrics at http://{addr}/metrics");
    Ok(async move {
        let listener = match TcpListener::from_std(listener) {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%addr, error = %e, "the metrics listener failed");
                return;
            }
        };
        loop {
            let Ok((stream, peer)) = listener.accept().await else {
                continue;
            };
            let registry = registry.clone();
            tokio::spawn(async move {
                if let Err(e) = answer(stream, &registry).await {
                    debug!(%peer, error = %e, "metrics request dropped");
                }
            });
        }
    })
}

/// Aborts a spawned task (the metrics server) when dropped: it stops with
/// the event loop that holds it.
pub(crate) struct AbortOnDrop(pub(crate) tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads one HTTP request (bounded in size and time) and answers it.
async fn answer(mut stream: tokio::net::TcpStream, registry: &Registry) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let head = tokio::time::timeout(REQUEST_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        loop {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                return Ok::<bool, std::io::Error>(false);
            }
            buf.extend_from_slice(&chunk[..n]);
            if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
                return Ok(true);
            }
            if buf.len() > MAX_REQUEST_BYTES {
                return Ok(false);
            }
        }
    })
    .await
    .unwrap_or(Ok(false))?;
    let response = if !head {
        response(400, "text/plain", "bad request\n".into())
    } else {
        let line = buf.split(|&b| b == b'\n').next().unwrap_or_default();
        let line = String::from_utf8_lossy(line);
        let mut parts = line.split_whitespace();
        match (parts.next(), parts.next()) {
            (Some("GET"), Some(path)) if path == "/metrics" || path.starts_with("/metrics?") => {
                let mut body = String::new();
                match encode(&mut body, registry) {
                    Ok(()) => response(
                        200,
                        "application/openmetrics-text; version=1.0.0; charset=utf-8",
                        body,
                    ),
                    Err(_) => response(500, "text/plain", "encoding failed\n".into()),
                }
            }
            (Some("GET"), Some(_)) => {
                response(404, "text/plain", "only /metrics is served\n".into())
            }
            _ => response(405, "text/plain", "only GET is served\n".into()),
        }
    };
    stream.write_all(&response).await?;
    stream.shutdown().await
}

fn response(code: u16, content_type: &str, body: String) -> Vec<u8> {
    let reason = match code {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Internal Server Error",
    };
    let mut out = format!(
        "HTTP/1.1 {code} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    out.extend_from_slice(body.as_bytes());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize, Default)]
    struct Stats {
        executed: u64,
        elections: u64,
        label: &'static str,
    }

    async fn get(addr: SocketAddr, request: &str) -> String {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        s.write_all(request.as_bytes()).await.unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn a_scrape_shows_mirrored_counters_gauges_and_histograms() {
        let mut m = ReplicaMetrics::new(&Stats::default(), &Stats::default(), &Stats::default());
        let stats = Stats {
            executed: 7,
            elections: 2,
            label: "x",
        };
        let g = ReplicaGauges {
            epoch: 3,
            leader: Some(3),
            is_leader: true,
            serving: true,
            members: 3,
            applied: 10,
            durable: 9,
            committed: 8,
            digest_age_ms: vec![(1, 40)],
        };
        m.update(&g, &stats, &Stats::default(), &Stats::default());
        // Counters follow the totals: a second update adds the difference.
        let stats = Stats {
            executed: 12,
            ..stats
        };
        m.update(&g, &stats, &Stats::default(), &Stats::default());
        m.commit(8, Duration::from_micros(400));
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = probe.local_addr().unwrap();
        drop(probe);
        let handle = tokio::spawn(serve(addr, m.registry()).unwrap());
        let text = get(addr, "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").await;
        assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
        for line in [
            "dcms_replica_protocol_executed_total 12",
            "dcms_replica_protocol_elections_total 2",
            "dcms_replica_epoch 3",
            "dcms_replica_is_leader 1",
            "dcms_replica_committed_position 8",
            "dcms_replica_digest_age_ms{backup=\"1\"} 40",
            "dcms_replica_commit_entries_count 1",
            "dcms_replica_commit_entries_sum 8.0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "no line {line:?} in\n{text}"
            );
        }
        assert!(!text.contains("label"), "a text field is not a counter");
        let missing = get(addr, "GET /other HTTP/1.1\r\n\r\n").await;
        assert!(missing.starts_with("HTTP/1.1 404"), "{missing}");
        let post = get(addr, "POST /metrics HTTP/1.1\r\n\r\n").await;
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
        let huge = get(addr, &"x".repeat(MAX_REQUEST_BYTES + 2048)).await;
        assert!(huge.starts_with("HTTP/1.1 400"), "{huge}");
        handle.abort();
    }
}
