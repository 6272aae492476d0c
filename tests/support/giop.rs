//! Hand-made GIOP 1.2 messages (little-endian) on raw sockets: what the
//! robustness tests send where no ORB would.

use std::io::Read;
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// A little-endian CDR writer for hand-made GIOP 1.2 messages.
#[derive(Default)]
struct Cdr(Vec<u8>);

impl Cdr {
    fn align(&mut self, n: usize) {
        while self.0.len() % n != 0 {
            self.0.push(0);
        }
    }
    fn u32(&mut self, v: u32) {
        self.align(4);
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn string(&mut self, s: &str) {
        self.u32(s.len() as u32 + 1);
        self.0.extend_from_slice(s.as_bytes());
        self.0.push(0);
    }
}

/// A GIOP 1.2 message of `kind` with `body`.
pub fn giop(kind: u8, body: &[u8]) -> Vec<u8> {
    let mut m = b"GIOP".to_vec();
    m.extend_from_slice(&[1, 2, 1, kind]);
    m.extend_from_slice(&(body.len() as u32).to_le_bytes());
    m.extend_from_slice(body);
    m
}

/// A GIOP 1.2 Request for `DCMS` (its body is aligned as in a message:
/// offsets count from the start of the message, after the 12-byte header).
pub fn request(id: u32, op: &str, args: &[&str]) -> Vec<u8> {
    let mut b = Cdr(vec![0; 12]); // stands for the header, for alignment
    b.u32(id);
    b.0.extend_from_slice(&[3, 0, 0, 0]); // response expected, reserved
    b.0.extend_from_slice(&[0, 0]); // KeyAddr
    b.align(4);
    b.u32(4);
    b.0.extend_from_slice(b"DCMS");
    b.string(op);
    b.u32(0); // no service contexts
    b.align(8);
    for a in args {
        b.string(a);
    }
    giop(0, &b.0[12..])
}

pub fn locate_request(id: u32) -> Vec<u8> {
    let mut b = Cdr(vec![0; 12]);
    b.u32(id);
    b.0.extend_from_slice(&[0, 0]);
    b.align(4);
    b.u32(4);
    b.0.extend_from_slice(b"DCMS");
    giop(3, &b.0[12..])
}

/// Reads one GIOP message: (message type, body).
pub fn read_message(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; 12];
    s.read_exact(&mut h)?;
    assert_eq!(&h[..4], b"GIOP");
    let size = if h[6] & 1 == 1 {
        u32::from_le_bytes(h[8..12].try_into().unwrap())
    } else {
        u32::from_be_bytes(h[8..12].try_into().unwrap())
    };
    let mut body = vec![0; size as usize];
    s.read_exact(&mut body)?;
    Ok((h[7], body))
}

pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

/// Whether the server closed `s` (after at most a CloseConnection or
/// MessageError) within `within`.
pub fn closed_by_server(s: &mut TcpStream, within: Duration) -> bool {
    s.set_read_timeout(Some(within)).unwrap();
    let mut buf = [0u8; 4096];
    let t0 = Instant::now();
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(_) => {} // CloseConnection / MessageError
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(_) => return false,
        }
        if t0.elapsed() > within {
            return false;
        }
    }
}
