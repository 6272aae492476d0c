//! A GIOP-aware guard in front of rustorb's listener, for two things
//! rustorb 0.2 does not bound:
//!
//! - A message that starts and never ends. rustorb's idle scan skips a
//!   connection in the middle of a message, so a peer that sends part of a
//!   message and stops holds the connection (and its buffer) forever. Here
//!   the rest of a message must arrive within `message_deadline` of its
//!   first byte, or the connection is closed.
//! - A client that sends requests and never reads the replies. rustorb
//!   queues every reply in memory, without limit. Here at most
//!   `max_outstanding` requests of a connection may await their reply;
//!   beyond that the guard stops reading the client (TCP backpressure).
//!
//! Each client connection gets one connection to the ORB's internal
//! endpoint on 127.0.0.1, and two tasks on the ORB's runtime copying whole
//! GIOP messages. Anything that is not a GIOP header (garbage, an
//! unsupported version) and any message over `max_message_size` is passed
//! on as it is, for the ORB to answer with `MessageError` and close, as it
//! would without the guard; the guard then stops reading that client.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::tcp::OwnedReadHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

/// The guard's limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct GuardOptions {
    /// Time from the first byte of a message to its last.
    pub message_deadline: Duration,
    /// Requests of one connection awaiting their reply.
    pub max_outstanding: usize,
}

impl Default for GuardOptions {
    fn default() -> GuardOptions {
        GuardOptions {
            message_deadline: Duration::from_secs(10),
            max_outstanding: 64,
        }
    }
}

const REQUEST: u8 = 0;
const REPLY: u8 = 1;
const LOCATE_REQUEST: u8 = 3;
const LOCATE_REPLY: u8 = 4;

/// A parsed 12-byte GIOP header: (message type, body size), or `None` for
/// bytes that are not a GIOP 1.0-1.2 header.
fn parse_header(h: &[u8; 12]) -> Option<(u8, usize)> {
    if &h[..4] != b"GIOP" || h[4] != 1 || h[5] > 2 {
        return None;
    }
    let size = if h[6] & 1 == 1 {
        u32::from_le_bytes([h[8], h[9], h[10], h[11]])
    } else {
        u32::from_be_bytes([h[8], h[9], h[10], h[11]])
    };
    Some((h[7], size as usize))
}

enum Read {
    /// A whole message: its type and bytes.
    Message(u8, Vec<u8>),
    /// Bytes to pass on, after which reading stops.
    Last(Vec<u8>),
    /// The peer closed between messages.
    Closed,
}

/// Reads the next message. `deadline` bounds the time from its first byte
/// to its last; `None` is returned when it is exceeded or the stream fails.
/// Reads buffered: one `read` usually brings a whole message, often several.
type Reader = BufReader<OwnedReadHalf>;

/// Bytes read ahead per connection and direction.
const READ_BUFFER: usize = 64 * 1024;

/// Reads one message; the rest of it must arrive within `deadline` of its
/// first byte (`None`: no deadline, for the ORB's side).
async fn read_message(r: &mut Reader, max_size: usize, deadline: Option<Duration>) -> Option<Read> {
    let mut h = [0u8; 12];
    // The first byte may take as long as it likes: idleness is the ORB's
    // business (it closes idle connections, and the guard follows).
    match r.read(&mut h[..1]).await {
        Ok(0) => return Some(Read::Closed),
        Ok(_) => {}
        Err(_) => return None,
    }
    let rest = async {
        r.read_exact(&mut h[1..]).await.ok()?;
        let Some((kind, size)) = parse_header(&h) else {
            return Some(Read::Last(h.to_vec()));
        };
        if size > max_size.saturating_sub(12) {
            return Some(Read::Last(h.to_vec()));
        }
        let mut msg = Vec::with_capacity(12 + size);
        msg.extend_from_slice(&h);
        msg.resize(12 + size, 0);
        r.read_exact(&mut msg[12..]).await.ok()?;
        Some(Read::Message(kind, msg))
    };
    match deadline {
        Some(d) => tokio::time::timeout(d, rest).await.ok().flatten(),
        None => rest.await,
    }
}

/// Accepts client connections on `listener` and relays each to `internal`.
pub(crate) async fn run(
    listener: TcpListener,
    internal: SocketAddr,
    max_message_size: usize,
    opts: GuardOptions,
) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                // Out of file descriptors and the like: wait, do not spin.
                tracing::warn!("accept failed: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        tokio::spawn(async move {
            let _ = client.set_nodelay(true);
            let server = match TcpStream::connect(internal).await {
                Ok(s) => s,
                Err(e) => {
                    tracing::error!("guard: cannot reach the ORB at {internal}: {e}");
                    return;
                }
            };
            let _ = server.set_nodelay(true);
            relay(client, server, peer, max_message_size, opts).await;
        });
    }
}

async fn relay(
    client: TcpStream,
    server: TcpStream,
    peer: SocketAddr,
    max_size: usize,
    opts: GuardOptions,
) {
    let (cr, mut cw) = client.into_split();
    let (sr, mut sw) = server.into_split();
    let mut cr = BufReader::with_capacity(READ_BUFFER, cr);
    let mut sr = BufReader::with_capacity(READ_BUFFER, sr);
    let permits = Arc::new(Semaphore::new(opts.max_outstanding.max(1)));
    let up_permits = permits.clone();
    let up = async move {
        loop {
            match read_message(&mut cr, max_size, Some(opts.message_deadline)).await {
                Some(Read::Message(kind, msg)) => {
                    if kind == REQUEST || kind == LOCATE_REQUEST {
                        // Wait for a reply to go out first: backpressure.
                        match up_permits.acquire().await {
                            Ok(p) => p.forget(),
                            Err(_) => break,
                        }
                    }
                    if sw.write_all(&msg).await.is_err() {
                        break;
                    }
                }
                Some(Read::Last(bytes)) => {
                    let _ = sw.write_all(&bytes).await;
                    // The ORB answers MessageError and closes; keep the
                    // connection to the ORB open until it does.
                    std::future::pending::<()>().await;
                }
                Some(Read::Closed) => break,
                None => {
                    tracing::info!("guard: closing the connection from {peer}: a message not completed within {:?}, or a read error", opts.message_deadline);
                    break;
                }
            }
        }
        let _ = sw.shutdown().await;
    };
    let down = async move {
        loop {
            // Replies come from the ORB, whole and within its own limits.
            match read_message(&mut sr, usize::MAX, None).await {
                Some(Read::Message(kind, msg)) => {
                    if cw.write_all(&msg).await.is_err() {
                        break;
                    }
                    if kind == REPLY || kind == LOCATE_REPLY {
                        permits.add_permits(1);
                    }
                }
                Some(Read::Last(bytes)) => {
                    let _ = cw.write_all(&bytes).await;
                    break;
                }
                Some(Read::Closed) | None => break,
            }
        }
        let _ = cw.shutdown().await;
    };
    // The client's side ending (or breaking a rule) half-closes the ORB
    // connection; the ORB then closes it, which ends `down`. `down` ending
    // closes the client connection and stops `up`.
    let up = tokio::spawn(up);
    down.await;
    up.abort();
}

#[cfg(test)]
mod tests {
    use super::parse_header;

    #[test]
    fn headers_parse_in_both_byte_orders_and_junk_does_not() {
        let le = *b"GIOP\x01\x02\x01\x00\x10\x00\x00\x00";
        assert_eq!(parse_header(&le), Some((0, 16)));
        let be = *b"GIOP\x01\x00\x00\x01\x00\x00\x01\x00";
        assert_eq!(parse_header(&be), Some((1, 256)));
        assert_eq!(
            parse_header(b"GET / HTTP/1.1"[..12].try_into().unwrap()),
            None
        );
        assert_eq!(parse_header(b"GIOP\x01\x03\x01\x00\x00\x00\x00\x00"), None);
        assert_eq!(parse_header(b"GIOP\x02\x00\x01\x00\x00\x00\x00\x00"), None);
    }
}
