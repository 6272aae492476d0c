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

    /// Sends raw bytes to an address (status answers go to whoever asked).
    pub fn send_to(&mut self, addr: SocketAddr, bytes: Vec<u8>) {
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
