//! A UDP socket for one process, with the peers' addresses and fault
//! injection on both directions.
//!
//! Sends never block the event loop: a datagram is handed to the kernel with
//! `try_send_to` (a full buffer counts as a loss, which the protocol repairs),
//! or, when faults delay it, to a timer task. Received datagrams pass through
//! the inbound faults the same way.

use crate::faults::{FaultConfig, FaultInjector};
use dcms_repl::{NodeId, Transmit};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;

/// Kernel buffer size asked for on each socket: room for bursts of a full
/// pipeline without loss on loopback.
const SOCKET_BUFFER_BYTES: usize = 4 << 20;

/// Pacing: bytes that may leave at once, and the rate the allowance refills
/// at (bytes per millisecond). Normal traffic (about 15 MB/s at 10,000
/// requests per second) never waits; a bulk transfer (a snapshot of tens of
/// thousands of records is megabytes of fragments) is spread out instead of
/// overflowing the receiver's socket buffer, where one lost fragment would
/// void the whole message.
const PACE_BURST_BYTES: f64 = 1024.0 * 1024.0;
const PACE_BYTES_PER_MS: f64 = 160.0 * 1024.0;
/// Most bytes waiting for the pacer; beyond, datagrams are dropped (and
/// counted) as a full network queue would drop them: the protocol repairs
/// losses, and a burst that large is already being resent.
const PACE_QUEUE_BYTES: usize = 16 * 1024 * 1024;

/// Counters of what the link did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct LinkStats {
    pub sent: u64,
    pub received: u64,
    /// Sends the kernel refused (buffer full) or that named no known peer.
    pub send_errors: u64,
    pub injected_drops: u64,
    /// Datagrams that waited for the pacer.
    pub paced: u64,
    /// Datagrams dropped because the pacer's queue was full.
    pub pacer_drops: u64,
}

pub struct Link {
    socket: Arc<UdpSocket>,
    peers: HashMap<NodeId, SocketAddr>,
    out_faults: FaultInjector,
    in_faults: FaultInjector,
    delayed_tx: mpsc::UnboundedSender<(Vec<u8>, SocketAddr)>,
    delayed_rx: mpsc::UnboundedReceiver<(Vec<u8>, SocketAddr)>,
    buf: Vec<u8>,
    /// Copies of each datagram sent (1, or 2 while the loss is high).
    copies: u8,
    /// Byte allowance of the pacer, and when it was last refilled.
    tokens: f64,
    refilled: std::time::Instant,
    /// Datagrams waiting for the pacer, in order.
    queue: std::collections::VecDeque<(SocketAddr, Vec<u8>)>,
    queued_bytes: usize,
    pub stats: LinkStats,
}

impl Link {
    /// Binds `addr`. `salt` (the node ID) separates fault streams.
    pub fn bind(
        addr: SocketAddr,
        peers: HashMap<NodeId, SocketAddr>,
        faults: &FaultConfig,
        salt: u64,
        max_datagram: usize,
    ) -> std::io::Result<Link> {
        use socket2::{Domain, Protocol, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP))?;
        // Best effort: the kernel may cap these.
        let _ = socket.set_recv_buffer_size(SOCKET_BUFFER_BYTES);
        let _ = socket.set_send_buffer_size(SOCKET_BUFFER_BYTES);
        socket.set_nonblocking(true)?;
        socket.bind(&addr.into())?;
        let socket = UdpSocket::from_std(socket.into())?;
        let (delayed_tx, delayed_rx) = mpsc::unbounded_channel();
        Ok(Link {
            socket: Arc::new(socket),
            peers,
            out_faults: FaultInjector::new(faults.clone(), salt.wrapping_mul(2)),
            in_faults: FaultInjector::new(faults.clone(), salt.wrapping_mul(2) + 1),
            delayed_tx,
            delayed_rx,
            buf: vec![0; max_datagram + 1],
            copies: 1,
            tokens: PACE_BURST_BYTES,
            refilled: std::time::Instant::now(),
            queue: std::collections::VecDeque::new(),
            queued_bytes: 0,
            stats: LinkStats::default(),
        })
    }

    /// Waits until the socket accepts datagrams (tokio learns a new
    /// socket's readiness only once its reactor has polled it).
    pub async fn writable(&self) -> std::io::Result<()> {
        self.socket.writable().await
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Remembers where `node` is (a front end announces itself by sending:
    /// its node ID is new at every start). Only called for authenticated
    /// datagrams.
    /// Forgets a learned address (the replica forgot the stream).
    pub fn forget(&mut self, node: NodeId) {
        self.peers.remove(&node);
    }

    pub fn learn(&mut self, node: NodeId, addr: SocketAddr) {
        if self.peers.get(&node) != Some(&addr) {
            tracing::info!(%node, %addr, "learned a peer's address");
            self.peers.insert(node, addr);
        }
    }

    /// Sends one datagram (subject to outbound faults).
    pub fn send(&mut self, t: Transmit) {
        let Some(&addr) = self.peers.get(&t.to) else {
            self.stats.send_errors += 1;
            tracing::warn!(to = %t.to, "datagram for an unknown node dropped");
            return;
        };
        self.send_to(addr, t.bytes);
    }

    /// Sends every datagram `copies` times (1 or 2): see [`Redundancy`].
    pub fn set_copies(&mut self, copies: u8) {
        assert!((1..=2).contains(&copies), "1 or 2 copies");
        if copies != self.copies {
            tracing::info!(copies, "datagram copies changed (loss-adaptive redundancy)");
            self.copies = copies;
        }
    }

    pub fn copies(&self) -> u8 {
        self.copies
    }

    /// Sends raw bytes to an address, `copies` times.
    pub fn send_to(&mut self, addr: SocketAddr, bytes: Vec<u8>) {
        for _ in 1..self.copies {
            self.send_once(addr, bytes.clone());
        }
        self.send_once(addr, bytes);
    }

    fn send_once(&mut self, addr: SocketAddr, bytes: Vec<u8>) {
        self.refill();
        if !self.queue.is_empty() || self.tokens < bytes.len() as f64 {
            if self.queued_bytes + bytes.len() > PACE_QUEUE_BYTES {
                self.stats.pacer_drops += 1;
                return;
            }
            self.stats.paced += 1;
            self.queued_bytes += bytes.len();
            self.queue.push_back((addr, bytes));
            return;
        }
        self.tokens -= bytes.len() as f64;
        self.transmit(addr, bytes);
    }

    fn refill(&mut self) {
        let now = std::time::Instant::now();
        let ms = now.duration_since(self.refilled).as_secs_f64() * 1000.0;
        self.tokens = (self.tokens + ms * PACE_BYTES_PER_MS).min(PACE_BURST_BYTES);
        self.refilled = now;
    }

    /// When queued datagrams may leave (`None`: nothing is queued).
    pub fn flush_at(&self) -> Option<tokio::time::Instant> {
        let (_, bytes) = self.queue.front()?;
        let missing = (bytes.len() as f64 - self.tokens).max(0.0);
        let wait = Duration::from_secs_f64(missing / PACE_BYTES_PER_MS / 1000.0);
        Some(tokio::time::Instant::from_std(self.refilled + wait))
    }

    /// Sends the queued datagrams the pacer now allows.
    pub fn flush(&mut self) {
        self.refill();
        while let Some((_, bytes)) = self.queue.front() {
            if self.tokens < bytes.len() as f64 {
                break;
            }
            self.tokens -= bytes.len() as f64;
            let (addr, bytes) = self.queue.pop_front().expect("front exists");
            self.queued_bytes -= bytes.len();
            self.transmit(addr, bytes);
        }
    }

    /// Hands one datagram to the kernel, through the outbound faults.
    fn transmit(&mut self, addr: SocketAddr, bytes: Vec<u8>) {
        let fates = self.out_faults.fate();
        if fates.is_empty() {
            self.stats.injected_drops += 1;
        }
        for delay in fates {
            self.stats.sent += 1;
            if delay.is_zero() {
                if self.socket.try_send_to(&bytes, addr).is_err() {
                    self.stats.send_errors += 1;
                }
            } else {
                let socket = self.socket.clone();
                let bytes = bytes.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay).await;
                    let _ = socket.try_send_to(&bytes, addr);
                });
            }
        }
    }

    /// The next datagram received (after inbound faults), with its source.
    pub async fn recv(&mut self) -> (Vec<u8>, SocketAddr) {
        loop {
            tokio::select! {
                biased;
                Some(delayed) = self.delayed_rx.recv() => return delayed,
                r = self.socket.recv_from(&mut self.buf) => {
                    let Ok((n, from)) = r else { continue };
                    self.stats.received += 1;
                    let bytes = self.buf[..n].to_vec();
                    if let Some(bytes) = self.inbound(bytes, from) {
                        return (bytes, from);
                    }
                }
            }
        }
    }

    /// A datagram already waiting, without blocking (to process bursts in
    /// one turn of the event loop).
    pub fn try_recv(&mut self) -> Option<(Vec<u8>, SocketAddr)> {
        if let Ok(delayed) = self.delayed_rx.try_recv() {
            return Some(delayed);
        }
        loop {
            let (n, from) = self.socket.try_recv_from(&mut self.buf).ok()?;
            self.stats.received += 1;
            let bytes = self.buf[..n].to_vec();
            if let Some(bytes) = self.inbound(bytes, from) {
                return Some((bytes, from));
            }
        }
    }

    /// Applies inbound faults: returns the copy to handle now, if any.
    fn inbound(&mut self, bytes: Vec<u8>, from: SocketAddr) -> Option<Vec<u8>> {
        if self.in_faults.is_off() {
            return Some(bytes);
        }
        let fates = self.in_faults.fate();
        if fates.is_empty() {
            self.stats.injected_drops += 1;
            return None;
        }
        let mut now = None;
        for delay in fates {
            if delay.is_zero() && now.is_none() {
                now = Some(bytes.clone());
            } else {
                let tx = self.delayed_tx.clone();
                let bytes = bytes.clone();
                tokio::spawn(async move {
                    tokio::time::sleep(delay.max(Duration::from_micros(1))).await;
                    let _ = tx.send((bytes, from));
                });
            }
        }
        now
    }
}

/// Loss-adaptive redundancy: a process that keeps repairing losses (its
/// retransmissions and "message lost" requests, against the work it does)
/// sends every datagram twice until the repairs stop. Each copy is lost
/// independently of the other under random loss, so a hop that loses 19%
/// of datagrams loses 3.6% of messages, and the strictly ordered pipeline
/// stalls five times less often. Duplicates cost nothing but the extra
/// datagram: every message is idempotent (requests by (stream, seq), log
/// entries by position, acknowledgements are cumulative). On a clean network
/// the repair rate is ~0 and a single copy is sent.
#[derive(Debug, Default)]
pub struct Redundancy {
    last_repairs: u64,
    last_work: u64,
    last_check_ms: u64,
}

impl Redundancy {
    /// How often the repair rate is checked.
    pub const INTERVAL_MS: u64 = 250;
    /// Repairs per unit of work above which two copies are sent.
    pub const ON: f64 = 0.05;
    /// ... and below which one copy is sent again (hysteresis).
    pub const OFF: f64 = 0.01;

    /// Given cumulative counters of repairs and work, the number of copies
    /// to send from now on (`current` between checks).
    pub fn copies(&mut self, now_ms: u64, repairs: u64, work: u64, current: u8) -> u8 {
        if now_ms < self.last_check_ms + Self::INTERVAL_MS {
            return current;
        }
        let (dr, dw) = (
            repairs.saturating_sub(self.last_repairs),
            work.saturating_sub(self.last_work),
        );
        self.last_repairs = repairs;
        self.last_work = work;
        self.last_check_ms = now_ms;
        if dw < 20 {
            return current; // too little traffic to judge
        }
        let rate = dr as f64 / dw as f64;
        match current {
            1 if rate > Self::ON => 2,
            2 if rate < Self::OFF => 1,
            c => c,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Redundancy;

    #[test]
    fn redundancy_turns_on_under_loss_and_off_when_clean() {
        let mut r = Redundancy::default();
        assert_eq!(r.copies(0, 0, 0, 1), 1, "no traffic yet");
        assert_eq!(r.copies(250, 2, 1000, 1), 1, "0.2% repairs: clean");
        assert_eq!(
            r.copies(300, 500, 2000, 1),
            1,
            "checked at most every 250 ms"
        );
        assert_eq!(r.copies(500, 200, 2000, 1), 2, "19.8% repairs: two copies");
        assert_eq!(
            r.copies(750, 230, 3000, 2),
            2,
            "3% is inside the hysteresis band"
        );
        assert_eq!(r.copies(1000, 232, 4000, 2), 1, "0.2%: back to one copy");
        assert_eq!(
            r.copies(1250, 240, 4010, 1),
            1,
            "too little traffic to judge"
        );
    }
}

/// Completes when the link's paced datagrams may leave (never if none wait).
pub async fn flush_due(at: Option<tokio::time::Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod pacing_tests {
    use super::*;

    #[tokio::test]
    async fn a_bulk_burst_is_paced_and_all_of_it_arrives() {
        let faults = FaultConfig::default();
        let loopback = SocketAddr::from(([127, 0, 0, 1], 0));
        let mut b = Link::bind(loopback, HashMap::new(), &faults, 2, 8192).unwrap();
        let b_addr = b.local_addr().unwrap();
        let peers = HashMap::from([(NodeId(2), b_addr)]);
        let mut a = Link::bind(loopback, peers, &faults, 1, 8192).unwrap();
        a.writable().await.unwrap();
        // 3 MiB in 8 KiB datagrams: the first MiB leaves at once, the rest waits.
        let n = 384;
        for i in 0..n {
            a.send(Transmit {
                to: NodeId(2),
                bytes: vec![i as u8; 8192],
            });
        }
        assert!(a.stats.paced >= 200, "paced {}", a.stats.paced);
        assert!(a.flush_at().is_some());
        let mut received = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while received < n && tokio::time::Instant::now() < deadline {
            tokio::select! {
                _ = b.recv() => received += 1,
                _ = flush_due(a.flush_at()) => a.flush(),
                _ = tokio::time::sleep_until(deadline) => break,
            }
        }
        assert_eq!(received, n, "every paced datagram arrived ({:?})", a.stats);
        assert!(a.flush_at().is_none(), "the queue drained");
        assert_eq!(a.stats.pacer_drops, 0);
    }
}
