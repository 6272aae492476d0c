//! The group reference: one object reference that names every front end
//! of a cluster, so that a client is not tied to one front-end process.
//!
//! Every front end serves the same object under the simple key `DCMS`
//! ([`crate::server`]), so one reference can list all their addresses:
//!
//! - [`group_corbaloc`]: `corbaloc:iiop:H1:P1,:H2:P2/DCMS`, the standard
//!   multi-address URL (a `:` alone names IIOP).
//! - [`group_ior`]: a stringified IOR with one IIOP 1.2 profile for the
//!   first front end, a `TAG_CODE_SETS` component (UTF-8 for `char`,
//!   UTF-16 for `wchar`) and one `TAG_ALTERNATE_IIOP_ADDRESS` component for
//!   each other front end.
//!
//! Front ends that serve IIOP over TLS only (`dcms up --tls`) are named by
//! [`group_corbaloc_tls`] (`corbaloc:ssliop:H1:P1,ssliop:H2:P2/DCMS`) and
//! [`group_ior_tls`]: one IIOP 1.2 profile per front end, each with port 0
//! (no plain endpoint) and a `TAG_SSL_SEC_TRANS` component with its TLS
//! port, as rustorb's server writes its own. rustorb's client tries every
//! profile in order; omniORB uses the first profile of an IOR, so its
//! clients get the other front ends through the corbaloc.
//!
//! A client ORB tries the addresses in order when it connects: rustorb and
//! omniORB both go on to the next address when a connection cannot be
//! made. A call in flight when its connection breaks fails (`COMM_FAILURE`,
//! completed maybe); the next call connects again, to the first address
//! that answers.

use std::net::SocketAddr;

use rustorb_core::cdr::ByteOrder;
use rustorb_core::giop::{
    association_options, code_set, AlternateIiopAddress, CodeSetComponent, CodeSetComponentInfo,
    IiopProfile, Ior, SslSecTrans, Version,
};

use crate::idl;

/// A host as an IOR or an `AlternateIiopAddress` carries it: the bare IP
/// address (no brackets for IPv6).
fn ior_host(addr: &SocketAddr) -> String {
    addr.ip().to_string()
}

/// `corbaloc:iiop:H1:P1,:H2:P2/DCMS`: every address in order, IPv6
/// addresses in brackets. No version is named, so a [`crate::ClinicClient`]
/// uses GIOP 1.2 with UTF-8 (see `client.rs`).
///
/// # Panics
///
/// If `addrs` is empty (a cluster has at least one front end; its
/// configuration is checked for that).
pub fn group_corbaloc(addrs: &[SocketAddr]) -> String {
    assert!(!addrs.is_empty(), "a group reference needs an address");
    // `iiop:` before the first address, `:` (IIOP too) before the others.
    let list: Vec<String> = addrs
        .iter()
        .map(|a| match a {
            SocketAddr::V4(v4) => format!(":{}:{}", v4.ip(), v4.port()),
            SocketAddr::V6(v6) => format!(":[{}]:{}", v6.ip(), v6.port()),
        })
        .collect();
    format!("corbaloc:iiop{}/{}", list.join(","), idl::OBJECT_KEY)
}

/// `corbaloc:ssliop:H1:P1,ssliop:H2:P2/DCMS`: [`group_corbaloc`] for
/// front ends that serve IIOP over TLS.
///
/// # Panics
///
/// If `addrs` is empty.
pub fn group_corbaloc_tls(addrs: &[SocketAddr]) -> String {
    assert!(!addrs.is_empty(), "a group reference needs an address");
    let list: Vec<String> = addrs
        .iter()
        .map(|a| match a {
            SocketAddr::V4(v4) => format!("ssliop:{}:{}", v4.ip(), v4.port()),
            SocketAddr::V6(v6) => format!("ssliop:[{}]:{}", v6.ip(), v6.port()),
        })
        .collect();
    format!("corbaloc:{}/{}", list.join(","), idl::OBJECT_KEY)
}

/// The `TAG_SSL_SEC_TRANS` options of a DCMS TLS endpoint, as rustorb's
/// server publishes them with client certificates required: integrity,
/// confidentiality, trust in the target and in the client, supported and
/// required.
const TLS_OPTIONS: u16 = association_options::INTEGRITY
    | association_options::CONFIDENTIALITY
    | association_options::ESTABLISH_TRUST_IN_TARGET
    | association_options::ESTABLISH_TRUST_IN_CLIENT;

/// The group IOR of front ends serving IIOP over TLS, stringified: one
/// IIOP 1.2 profile per address, in order, each at the address's host
/// with port 0 (no plain endpoint), object key `DCMS`, the code sets
/// component and a `TAG_SSL_SEC_TRANS` component with the address's port.
///
/// # Panics
///
/// If `addrs` is empty.
pub fn group_ior_tls(addrs: &[SocketAddr]) -> String {
    assert!(!addrs.is_empty(), "a group reference needs an address");
    let endpoints: Vec<(String, u16)> = addrs.iter().map(|a| (ior_host(a), a.port())).collect();
    tls_ior(&endpoints, idl::OBJECT_KEY.as_bytes())
}

/// [`group_ior_tls`] for `(host, port)` pairs (host names allowed) and any
/// object key.
fn tls_ior(endpoints: &[(String, u16)], object_key: &[u8]) -> String {
    let order = ByteOrder::Big;
    let profiles = endpoints
        .iter()
        .map(|(host, port)| {
            let ssl = SslSecTrans {
                target_supports: TLS_OPTIONS,
                target_requires: TLS_OPTIONS,
                port: *port,
            };
            IiopProfile {
                version: Version::V1_2,
                host: host.clone(),
                port: 0,
                object_key: object_key.to_vec(),
                components: vec![
                    code_sets()
                        .to_component(order)
                        .expect("a code sets component always encodes"),
                    ssl.to_component(order)
                        .expect("an SSL component always encodes"),
                ],
            }
            .to_tagged_profile(order)
            .expect("an IIOP 1.2 profile always encodes")
        })
        .collect();
    let ior = Ior {
        type_id: idl::INTERFACE_ID.to_string(),
        profiles,
    };
    ior.to_ior_string(order).expect("an IOR always encodes")
}

/// The IOR a `corbaloc:ssliop:H1:P1,ssliop:H2:P2/KEY` URL stands for (as
/// [`group_ior_tls`] writes it): rustorb's ORB does not read `ssliop`
/// corbalocs itself. `Ok(None)` for any other reference; `Err` naming the
/// part of an `ssliop` URL that does not parse.
pub fn ior_of_tls_corbaloc(url: &str) -> Result<Option<String>, String> {
    let Some(rest) = url.trim().strip_prefix("corbaloc:") else {
        return Ok(None);
    };
    if !rest.starts_with("ssliop:") {
        return Ok(None);
    }
    let (addrs, key) = rest
        .split_once('/')
        .ok_or_else(|| format!("{url}: no object key (like /DCMS)"))?;
    if key.is_empty() || key.contains('%') {
        return Err(format!(
            "{url}: object key {key:?}: give a plain key like DCMS"
        ));
    }
    let mut endpoints = Vec::new();
    for addr in addrs.split(',') {
        let a = addr
            .strip_prefix("ssliop:")
            .ok_or_else(|| format!("{url}: {addr:?}: every address must be ssliop:HOST:PORT"))?;
        // A GIOP version (`1.2@`) is allowed and ignored: the profile is 1.2.
        let a = a.rsplit_once('@').map_or(a, |(_, a)| a);
        let (host, port) = a
            .rsplit_once(':')
            .ok_or_else(|| format!("{url}: {addr:?}: no port (ssliop:HOST:PORT)"))?;
        let port: u16 = port
            .parse()
            .ok()
            .filter(|p| *p != 0)
            .ok_or_else(|| format!("{url}: {addr:?}: bad port {port:?}"))?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if host.is_empty() {
            return Err(format!("{url}: {addr:?}: no host (ssliop:HOST:PORT)"));
        }
        endpoints.push((host.to_string(), port));
    }
    Ok(Some(tls_ior(&endpoints, key.as_bytes())))
}

/// The code sets a DCMS server offers: UTF-8 native for `char` data, UTF-16
/// for `wchar` (as a [`crate::ClinicClient`] assumes for a corbaloc).
pub(crate) fn code_sets() -> CodeSetComponentInfo {
    CodeSetComponentInfo {
        for_char_data: CodeSetComponent {
            native_code_set: code_set::UTF_8,
            conversion_code_sets: Vec::new(),
        },
        for_wchar_data: CodeSetComponent {
            native_code_set: code_set::UTF_16,
            conversion_code_sets: Vec::new(),
        },
    }
}

/// The group IOR, stringified: type `IDL:DCMS/ClinicManagement:1.0`, one
/// IIOP 1.2 profile at the first address with object key `DCMS`, a code
/// sets component and an alternate address component for each other
/// address, in order.
///
/// # Panics
///
/// If `addrs` is empty (see [`group_corbaloc`]).
pub fn group_ior(addrs: &[SocketAddr]) -> String {
    let (first, others) = addrs
        .split_first()
        .expect("a group reference needs an address");
    let order = ByteOrder::Big;
    let mut components = vec![code_sets()
        .to_component(order)
        .expect("a code sets component always encodes")];
    for a in others {
        let alternate = AlternateIiopAddress {
            host: ior_host(a),
            port: a.port(),
        };
        components.push(
            alternate
                .to_component(order)
                .expect("an address component always encodes"),
        );
    }
    let profile = IiopProfile {
        version: Version::V1_2,
        host: ior_host(first),
        port: first.port(),
        object_key: idl::OBJECT_KEY.as_bytes().to_vec(),
        components,
    };
    let ior = Ior {
        type_id: idl::INTERFACE_ID.to_string(),
        profiles: vec![profile
            .to_tagged_profile(order)
            .expect("an IIOP 1.2 profile always encodes")],
    };
    ior.to_ior_string(order)
        .expect("an IOR of one profile always encodes")
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustorb_core::giop::{component_tag, Corbaloc};

    fn addrs() -> Vec<SocketAddr> {
        vec![
            "127.0.0.1:7000".parse().unwrap(),
            "[::1]:7001".parse().unwrap(),
            "10.0.0.3:7002".parse().unwrap(),
        ]
    }

    #[test]
    fn the_group_corbaloc_lists_every_address_in_order() {
        let url = group_corbaloc(&addrs());
        assert_eq!(
            url,
            "corbaloc:iiop:127.0.0.1:7000,:[::1]:7001,:10.0.0.3:7002/DCMS"
        );
        let short = group_corbaloc(&addrs()[..1]);
        assert_eq!(short, "corbaloc:iiop:127.0.0.1:7000/DCMS");
        let parsed = Corbaloc::parse(&url).unwrap();
        assert_eq!(parsed.key, b"DCMS");
        let got: Vec<(String, u16)> = parsed
            .iiop_addresses()
            .map(|a| (a.host.clone(), a.port))
            .collect();
        assert_eq!(
            got,
            [
                ("127.0.0.1".to_string(), 7000),
                ("::1".to_string(), 7001),
                ("10.0.0.3".to_string(), 7002)
            ]
        );
    }

    #[test]
    fn the_group_ior_has_one_profile_with_the_others_as_alternates() {
        let text = group_ior(&addrs());
        assert!(text.starts_with("IOR:"), "{text}");
        let ior = Ior::from_ior_string(&text).unwrap();
        assert_eq!(ior.type_id, idl::INTERFACE_ID);
        assert_eq!(ior.profiles.len(), 1);
        let p = ior.profiles[0].iiop().unwrap();
        assert_eq!(p.version, Version::V1_2);
        assert_eq!((p.host.as_str(), p.port), ("127.0.0.1", 7000));
        assert_eq!(p.object_key, b"DCMS");
        assert_eq!(p.code_sets().unwrap().unwrap(), code_sets());
        let alternates: Vec<(String, u16)> = p
            .alternate_addresses()
            .unwrap()
            .into_iter()
            .map(|a| (a.host, a.port))
            .collect();
        assert_eq!(
            alternates,
            [("::1".to_string(), 7001), ("10.0.0.3".to_string(), 7002)]
        );
        // One front end: no alternate.
        let one = Ior::from_ior_string(&group_ior(&addrs()[..1])).unwrap();
        let p = one.profiles[0].iiop().unwrap();
        assert_eq!(p.components.len(), 1);
        assert_eq!(p.components[0].tag, component_tag::CODE_SETS);
    }

    #[test]
    fn the_tls_group_references_name_every_tls_endpoint() {
        assert_eq!(
            group_corbaloc_tls(&addrs()),
            "corbaloc:ssliop:127.0.0.1:7000,ssliop:[::1]:7001,ssliop:10.0.0.3:7002/DCMS"
        );
        let ior = Ior::from_ior_string(&group_ior_tls(&addrs())).unwrap();
        assert_eq!(ior.type_id, idl::INTERFACE_ID);
        let got: Vec<(String, u16, SslSecTrans)> = ior
            .profiles
            .iter()
            .map(|p| {
                let p = p.iiop().unwrap();
                assert_eq!(p.version, Version::V1_2);
                assert_eq!(p.object_key, b"DCMS");
                assert_eq!(p.code_sets().unwrap().unwrap(), code_sets());
                assert!(p.alternate_addresses().unwrap().is_empty());
                let ssl = p
                    .components
                    .iter()
                    .find(|c| c.tag == component_tag::SSL_SEC_TRANS)
                    .map(|c| SslSecTrans::from_component(c).unwrap())
                    .expect("an SSL component");
                (p.host.clone(), p.port, ssl)
            })
            .collect();
        let ssl = |port| SslSecTrans {
            target_supports: 0x66,
            target_requires: 0x66,
            port,
        };
        assert_eq!(
            got,
            [
                ("127.0.0.1".to_string(), 0, ssl(7000)),
                ("::1".to_string(), 0, ssl(7001)),
                ("10.0.0.3".to_string(), 0, ssl(7002))
            ]
        );
    }

    #[test]
    fn an_ssliop_corbaloc_is_read_as_the_tls_group_ior() {
        let url = group_corbaloc_tls(&addrs());
        assert_eq!(
            ior_of_tls_corbaloc(&url).unwrap().unwrap(),
            group_ior_tls(&addrs())
        );
        assert_eq!(
            ior_of_tls_corbaloc("corbaloc:iiop:127.0.0.1:1/DCMS"),
            Ok(None)
        );
        assert_eq!(ior_of_tls_corbaloc("IOR:00"), Ok(None));
        for bad in [
            "corbaloc:ssliop:127.0.0.1:7000",
            "corbaloc:ssliop:127.0.0.1/DCMS",
            "corbaloc:ssliop:127.0.0.1:0/DCMS",
            "corbaloc:ssliop::7000/DCMS",
            "corbaloc:ssliop:127.0.0.1:7000,iiop:127.0.0.1:7001/DCMS",
        ] {
            assert!(ior_of_tls_corbaloc(bad).is_err(), "{bad}");
        }
    }

    /// rustorb's ORB takes the reference as it is.
    #[test]
    fn rustorb_reads_the_group_ior_as_written() {
        let orb = rustorb_core::Orb::with_options(rustorb_core::OrbOptions::default()).unwrap();
        let text = group_ior(&addrs());
        let obj = orb.string_to_object(&text).unwrap().unwrap();
        assert_eq!(obj.ior(), &Ior::from_ior_string(&text).unwrap());
    }

    /// Clients of the group reference against live servers: two front
    /// doors (a real ORB each), each behind a relay that can be "killed"
    /// like a process: its listening port closed (connections refused) and
    /// every connection through it closed at once.
    mod live {
        use super::super::*;
        use crate::{serve, CallError, ClientOptions, ClinicClient, ClinicService, ServeOptions};
        use dcms_core::{Counts, Outcome, Reply, Request};
        use rustorb_core::{CompletionStatus, SystemExceptionKind};
        use std::io::{Read, Write};
        use std::net::{Shutdown, TcpListener, TcpStream};
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Arc, Condvar, Mutex};
        use std::time::Duration;

        /// Answers `getRecordCounts` with its own tag in the MTL count.
        /// Manager `SLOW0001` waits until the gate opens.
        struct Tagged {
            tag: u64,
            calls: AtomicUsize,
            slow_started: AtomicUsize,
            gate: (Mutex<bool>, Condvar),
        }

        impl Tagged {
            fn new(tag: u64) -> Arc<Tagged> {
                Arc::new(Tagged {
                    tag,
                    calls: AtomicUsize::new(0),
                    slow_started: AtomicUsize::new(0),
                    gate: (Mutex::new(false), Condvar::new()),
                })
            }

            fn open_gate(&self) {
                *self.gate.0.lock().unwrap() = true;
                self.gate.1.notify_all();
            }
        }

        impl ClinicService for Tagged {
            fn call(&self, request: Request) -> Result<Reply, crate::ServiceError> {
                self.calls.fetch_add(1, Ordering::SeqCst);
                if request.manager_id() == "SLOW0001" {
                    self.slow_started.fetch_add(1, Ordering::SeqCst);
                    let mut open = self.gate.0.lock().unwrap();
                    while !*open {
                        open = self.gate.1.wait(open).unwrap();
                    }
                }
                Ok(Ok(Outcome::Counts(Counts([self.tag, 0, 0]))))
            }
        }

        /// A TCP relay to `target` on a port of its own.
        struct Relay {
            addr: SocketAddr,
            dead: Arc<AtomicBool>,
            /// Connections are still accepted, and closed at once: a dying
            /// process whose listening socket outlives its connections.
            dying: Arc<AtomicBool>,
            conns: Arc<Mutex<Vec<TcpStream>>>,
            accept: Option<std::thread::JoinHandle<()>>,
        }

        impl Relay {
            fn start(target: SocketAddr) -> Relay {
                let listener = TcpListener::bind("127.0.0.1:0").unwrap();
                listener.set_nonblocking(true).unwrap();
                let addr = listener.local_addr().unwrap();
                let dead = Arc::new(AtomicBool::new(false));
                let dying = Arc::new(AtomicBool::new(false));
                let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
                let (d, c, dy) = (dead.clone(), conns.clone(), dying.clone());
                let accept = std::thread::spawn(move || {
                    while !d.load(Ordering::SeqCst) {
                        let Ok((down, _)) = listener.accept() else {
                            std::thread::sleep(Duration::from_millis(2));
                            continue;
                        };
                        if dy.load(Ordering::SeqCst) {
                            let _ = down.shutdown(Shutdown::Both);
                            continue;
                        }
                        down.set_nonblocking(false).unwrap();
                        let up = TcpStream::connect(target).unwrap();
                        let mut all = c.lock().unwrap();
                        all.push(down.try_clone().unwrap());
                        all.push(up.try_clone().unwrap());
                        for (mut from, mut to) in [
                            (down.try_clone().unwrap(), up.try_clone().unwrap()),
                            (up, down),
                        ] {
                            std::thread::spawn(move || {
                                let mut buf = [0u8; 16 * 1024];
                                while let Ok(n @ 1..) = from.read(&mut buf) {
                                    if to.write_all(&buf[..n]).is_err() {
                                        break;
                                    }
                                }
                                let _ = to.shutdown(Shutdown::Both);
                                let _ = from.shutdown(Shutdown::Both);
                            });
                        }
                    }
                    // The listener is dropped here: connections are refused.
                });
                Relay {
                    addr,
                    dead,
                    dying,
                    conns,
                    accept: Some(accept),
                }
            }

            /// The first moment of a `kill -9`: the connections end while
            /// the listening socket still takes new ones (and ends them).
            fn start_dying(&self) {
                self.dying.store(true, Ordering::SeqCst);
                for s in self.conns.lock().unwrap().drain(..) {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }

            /// As a `kill -9` of the server: the port refuses connections
            /// and every open connection ends.
            fn kill(&mut self) {
                self.dead.store(true, Ordering::SeqCst);
                if let Some(t) = self.accept.take() {
                    t.join().unwrap();
                }
                for s in self.conns.lock().unwrap().drain(..) {
                    let _ = s.shutdown(Shutdown::Both);
                }
            }
        }

        impl Drop for Relay {
            fn drop(&mut self) {
                self.kill();
            }
        }

        fn server(service: Arc<Tagged>) -> crate::RunningServer {
            serve(service, &ServeOptions::default()).unwrap()
        }

        fn addr_of(s: &crate::RunningServer) -> SocketAddr {
            SocketAddr::from(([127, 0, 0, 1], s.port()))
        }

        fn tag_of(answer: Result<String, CallError>) -> u64 {
            let counts = answer.unwrap_or_else(|e| panic!("call failed: {e}"));
            counts
                .strip_prefix("MTL ")
                .and_then(|r| r.split(',').next())
                .and_then(|n| n.parse().ok())
                .unwrap_or_else(|| panic!("counts {counts}"))
        }

        fn opts() -> ClientOptions {
            ClientOptions {
                connect_timeout: Duration::from_secs(2),
                call_timeout: Duration::from_secs(10),
                ..ClientOptions::default()
            }
        }

        /// A port nothing listens on (connections refused).
        fn dead_addr() -> SocketAddr {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        }

        #[test]
        fn a_first_front_end_that_is_down_is_passed_over() {
            let (a, b) = (Tagged::new(1), Tagged::new(2));
            let (sa, sb) = (server(a.clone()), server(b.clone()));
            let down = dead_addr();
            for group in [
                [down, addr_of(&sb), addr_of(&sa)],
                [down, addr_of(&sa), addr_of(&sb)],
            ] {
                let want = if group[1] == addr_of(&sa) { 1 } else { 2 };
                for reference in [group_ior(&group), group_corbaloc(&group)] {
                    let c = ClinicClient::connect(&reference, &opts()).unwrap();
                    for _ in 0..3 {
                        assert_eq!(tag_of(c.get_record_counts("MTL0001")), want, "{reference}");
                    }
                    // Text outside Latin-1 still goes (UTF-8 was offered).
                    assert!(c.is_clinic_management().unwrap());
                }
            }
        }

        /// The front end a client is connected to dies with a call in
        /// flight: that call fails (COMM_FAILURE or TRANSIENT, completed
        /// maybe), and the next one goes to the other front end.
        #[test]
        fn the_call_after_a_broken_connection_goes_to_the_other_front_end() {
            for use_ior in [true, false] {
                let (a, b) = (Tagged::new(1), Tagged::new(2));
                let (sa, sb) = (server(a.clone()), server(b.clone()));
                let mut ra = Relay::start(addr_of(&sa));
                let rb = Relay::start(addr_of(&sb));
                let group = [ra.addr, rb.addr];
                let reference = if use_ior {
                    group_ior(&group)
                } else {
                    group_corbaloc(&group)
                };
                let c = ClinicClient::connect(&reference, &opts()).unwrap();
                assert_eq!(
                    tag_of(c.get_record_counts("MTL0001")),
                    1,
                    "the first answers"
                );
                let in_flight = {
                    let c = c.clone();
                    std::thread::spawn(move || c.get_record_counts("SLOW0001"))
                };
                while a.slow_started.load(Ordering::SeqCst) == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                ra.kill();
                let result = in_flight.join().unwrap();
                a.open_gate();
                let e = result.unwrap_err();
                let sys = e.as_system().unwrap_or_else(|| panic!("{e}"));
                assert!(
                    sys.is(SystemExceptionKind::COMM_FAILURE)
                        || sys.is(SystemExceptionKind::TRANSIENT),
                    "{sys}"
                );
                assert_eq!(sys.completed, CompletionStatus::Maybe, "{sys}");
                let before = b.calls.load(Ordering::SeqCst);
                for _ in 0..3 {
                    assert_eq!(tag_of(c.get_record_counts("MTL0001")), 2, "ior: {use_ior}");
                }
                assert_eq!(b.calls.load(Ordering::SeqCst), before + 3);
            }
        }

        /// A dying front end's listening socket can outlive its
        /// connections (the kernel closes a killed process's sockets one
        /// by one): the call after the broken one must not reconnect
        /// there. rustorb tries an address whose connection just failed
        /// after the others (`vendor/rustorb-core/PATCHES.md`).
        #[test]
        fn the_call_after_a_broken_connection_avoids_a_dying_listener() {
            for use_ior in [false, true] {
                let (a, b) = (Tagged::new(1), Tagged::new(2));
                let (sa, sb) = (server(a.clone()), server(b.clone()));
                let mut ra = Relay::start(addr_of(&sa));
                let rb = Relay::start(addr_of(&sb));
                let group = [ra.addr, rb.addr];
                let reference = if use_ior {
                    group_ior(&group)
                } else {
                    group_corbaloc(&group)
                };
                let c = ClinicClient::connect(&reference, &opts()).unwrap();
                assert_eq!(tag_of(c.get_record_counts("MTL0001")), 1);
                let in_flight = {
                    let c = c.clone();
                    std::thread::spawn(move || c.get_record_counts("SLOW0001"))
                };
                while a.slow_started.load(Ordering::SeqCst) == 0 {
                    std::thread::sleep(Duration::from_millis(2));
                }
                ra.start_dying();
                let result = in_flight.join().unwrap();
                a.open_gate();
                assert!(result.is_err(), "the call in flight fails");
                for _ in 0..3 {
                    assert_eq!(tag_of(c.get_record_counts("MTL0001")), 2, "ior: {use_ior}");
                }
                ra.kill();
            }
        }

        /// The connection dies while idle (between calls): the next call
        /// goes to the other front end and does not fail.
        #[test]
        fn an_idle_connection_that_breaks_costs_no_call() {
            for use_ior in [true, false] {
                let (a, b) = (Tagged::new(1), Tagged::new(2));
                let (sa, sb) = (server(a.clone()), server(b.clone()));
                let ra = Relay::start(addr_of(&sa));
                let rb = Relay::start(addr_of(&sb));
                let group = [ra.addr, rb.addr];
                let reference = if use_ior {
                    group_ior(&group)
                } else {
                    group_corbaloc(&group)
                };
                let c = ClinicClient::connect(&reference, &opts()).unwrap();
                assert_eq!(tag_of(c.get_record_counts("MTL0001")), 1);
                ra.start_dying();
                std::thread::sleep(Duration::from_millis(50));
                for _ in 0..3 {
                    assert_eq!(tag_of(c.get_record_counts("MTL0001")), 2, "ior: {use_ior}");
                }
            }
        }
    }
}
