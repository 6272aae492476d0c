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

/// Counters of what the link did.
#[derive(Clone, Debug, Default)]
pub struct LinkStats {
    pub sent: u64,
    pub received: u64,
    /// Sends the kernel refused (buffer full) or that named no known peer.
    pub send_errors: u64,
    pub injected_drops: u64,
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
            stats: LinkStats::default(),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.socket.local_addr()
    }

    /// Remembers where `node` is (a front end announces itself by sending:
    /// its node ID is new at every start). Only called for authenticated
    /// datagrams.
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
