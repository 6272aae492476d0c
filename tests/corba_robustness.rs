//! Robustness of the CORBA front door, against real processes on
//! 127.0.0.1: hand-made GIOP messages on raw sockets (`support/giop.rs`):
//! garbage, oversized, truncated, abandoned, stalled and unread traffic;
//! idle connections, many clients on one connection, overload and SIGTERM.
//! Each disturbance runs against `dcms frontend --standalone` and against a
//! replicated cluster (`dcms up`), while well-behaved clients keep calling.
//! No virtualenv is needed.
//!
//! Every process started here is killed when its guard drops, also when a
//! test fails.

mod support;

use std::io::{BufRead, BufReader, Write};
use std::net::Shutdown;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use dcms_corba::{ClientOptions, ClinicClient};

use support::giop::{closed_by_server, connect, giop, locate_request, read_message, request};
use support::{Frontend, Proc, Replicated, Target, DCMS};

/// Well-behaved clients calling all along; `check` stops them and asserts
/// every call succeeded, none slowly.
struct Bystanders {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicUsize>,
    threads: Vec<thread::JoinHandle<Result<Duration, String>>>,
}

impl Bystanders {
    fn start(fe: &impl Target, n: usize) -> Bystanders {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicUsize::new(0));
        let threads = (0..n)
            .map(|i| {
                let c = fe.client();
                let (stop, ok) = (stop.clone(), ok.clone());
                thread::spawn(move || {
                    let mut worst = Duration::ZERO;
                    let mut k = 0;
                    while !stop.load(Ordering::Relaxed) {
                        let t = Instant::now();
                        let r = if (i + k) % 2 == 0 {
                            c.get_record_counts("MTL0001").map(|_| ())
                        } else {
                            c.list_records("MTL0001", "X").map(|_| ())
                        };
                        r.map_err(|e| e.to_string())?;
                        worst = worst.max(t.elapsed());
                        ok.fetch_add(1, Ordering::Relaxed);
                        k += 1;
                        thread::sleep(Duration::from_millis(5));
                    }
                    Ok(worst)
                })
            })
            .collect();
        Bystanders { stop, ok, threads }
    }

    fn check(self) {
        // Let them make some calls while the disturbance lasts.
        let t0 = Instant::now();
        while self.ok.load(Ordering::Relaxed) < 20 && t0.elapsed() < Duration::from_secs(10) {
            thread::sleep(Duration::from_millis(20));
        }
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads {
            let worst = t.join().unwrap().expect("a well-behaved client failed");
            assert!(worst < Duration::from_secs(2), "a call took {worst:?}");
        }
        assert!(
            self.ok.load(Ordering::Relaxed) > 10,
            "the bystanders made calls"
        );
    }
}

#[test]
fn raw_giop_requests_locate_and_bad_operation() {
    let fe = Frontend::start(&[]);
    let mut s = connect(fe.port);
    s.write_all(&request(1, "getRecordCounts", &["MTL0001"]))
        .unwrap();
    let (kind, body) = read_message(&mut s).unwrap();
    assert_eq!(kind, 1, "a Reply");
    assert_eq!(
        u32::from_le_bytes(body[0..4].try_into().unwrap()),
        1,
        "request id"
    );
    assert_eq!(
        u32::from_le_bytes(body[4..8].try_into().unwrap()),
        0,
        "NO_EXCEPTION"
    );
    let text = String::from_utf8_lossy(&body);
    assert!(text.contains("MTL 0, LVL 0, DDO 0"), "{text}");

    s.write_all(&locate_request(2)).unwrap();
    let (kind, body) = read_message(&mut s).unwrap();
    assert_eq!(kind, 4, "a LocateReply");
    assert_eq!(
        u32::from_le_bytes(body[4..8].try_into().unwrap()),
        1,
        "OBJECT_HERE"
    );

    s.write_all(&request(3, "dropAllRecords", &["MTL0001"]))
        .unwrap();
    let (_, body) = read_message(&mut s).unwrap();
    assert_eq!(
        u32::from_le_bytes(body[4..8].try_into().unwrap()),
        2,
        "SYSTEM_EXCEPTION"
    );
    assert!(String::from_utf8_lossy(&body).contains("IDL:omg.org/CORBA/BAD_OPERATION:1.0"));

    // Arguments missing: MARSHAL.
    s.write_all(&request(4, "editRecord", &["MTL0001"]))
        .unwrap();
    let (_, body) = read_message(&mut s).unwrap();
    assert_eq!(u32::from_le_bytes(body[4..8].try_into().unwrap()), 2);
    assert!(String::from_utf8_lossy(&body).contains("IDL:omg.org/CORBA/MARSHAL:1.0"));

    // A user exception, with its repository id.
    s.write_all(&request(5, "getRecord", &["MTL0001", "DR12345"]))
        .unwrap();
    let (_, body) = read_message(&mut s).unwrap();
    assert_eq!(
        u32::from_le_bytes(body[4..8].try_into().unwrap()),
        1,
        "USER_EXCEPTION"
    );
    assert!(String::from_utf8_lossy(&body).contains("IDL:DCMS/NotFound:1.0"));
}

fn garbage_closes_only_that_connection(mut fe: impl Target) {
    let by = Bystanders::start(&fe, 4);
    for junk in [
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n".to_vec(),
        vec![0xff; 64],
        b"GIOP\x09\x09\x00\x00\x00\x00\x00\x00".to_vec(), // bad version
        giop(7, &[]),                                     // a Fragment continuing nothing
    ] {
        let mut s = connect(fe.port());
        s.write_all(&junk).unwrap();
        assert!(
            closed_by_server(&mut s, Duration::from_secs(5)),
            "garbage {:?} closes the connection",
            &junk[..8]
        );
    }
    thread::sleep(Duration::from_millis(300));
    by.check();
    fe.assert_running();
}

fn oversized_messages_close_only_that_connection(mut fe: impl Target) {
    let by = Bystanders::start(&fe, 4);
    // A header announcing 64 MiB (over the 16 MiB limit), then some of it.
    let mut s = connect(fe.port());
    let mut m = b"GIOP\x01\x02\x01\x00".to_vec();
    m.extend_from_slice(&(64u32 << 20).to_le_bytes());
    s.write_all(&m).unwrap();
    let _ = s.write_all(&vec![0u8; 64 * 1024]);
    assert!(closed_by_server(&mut s, Duration::from_secs(5)));
    // A real request with a 17 MiB argument.
    let mut s = connect(fe.port());
    let big = "x".repeat(17 << 20);
    let _ = s.write_all(&request(1, "getRecordCounts", &[&big]));
    assert!(closed_by_server(&mut s, Duration::from_secs(5)));
    // Just under the limit is fine (and refused by the domain, not the ORB).
    let c = fe.client();
    let e = c
        .get_record_counts(&"M".repeat(8 << 20))
        .expect_err("not a manager");
    assert!(e.as_user().is_some(), "{e}");
    by.check();
    fe.assert_running();
}

fn truncated_and_abandoned_requests_disturb_no_one(mut fe: impl Target) {
    let by = Bystanders::start(&fe, 4);
    let full = request(
        9,
        "createDRecord",
        &["MTL0001", "A", "B", "c", "5145550000", "s", "mtl"],
    );
    // Half a header, half a body: then silence, the sockets kept open.
    let mut stalled = Vec::new();
    for cut in [5, 12, full.len() / 2, full.len() - 1] {
        let mut s = connect(fe.port());
        s.write_all(&full[..cut]).unwrap();
        stalled.push(s);
    }
    // Half a request then a disconnect.
    for cut in [7, full.len() / 2] {
        let mut s = connect(fe.port());
        s.write_all(&full[..cut]).unwrap();
        s.shutdown(Shutdown::Both).unwrap();
    }
    // A whole request and a disconnect before the reply: it still runs.
    for _ in 0..3 {
        let mut s = connect(fe.port());
        s.write_all(&full).unwrap();
        drop(s);
    }
    thread::sleep(Duration::from_millis(500));
    let c = fe.client();
    let t0 = Instant::now();
    loop {
        let counts = c.get_record_counts("MTL0001").unwrap();
        if counts == "MTL 3, LVL 0, DDO 0" {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(5),
            "abandoned requests ran: {counts}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    by.check();
    drop(stalled);
    thread::sleep(Duration::from_millis(100));
    assert_eq!(
        c.get_record_counts("MTL0001").unwrap(),
        "MTL 3, LVL 0, DDO 0"
    );
    fe.assert_running();
}

#[test]
fn idle_connections_are_closed() {
    let mut fe = Frontend::start(&["--idle-timeout-secs", "1"]);
    let by = Bystanders::start(&fe, 2);
    let t0 = Instant::now();
    let mut silent = connect(fe.port);
    assert!(
        closed_by_server(&mut silent, Duration::from_secs(6)),
        "a connection that sends nothing is closed"
    );
    let waited = t0.elapsed();
    assert!(
        waited >= Duration::from_millis(900),
        "closed after the timeout ({waited:?})"
    );
    // A client that was idle longer than the timeout reconnects by itself.
    let c = fe.client();
    c.get_record_counts("MTL0001").unwrap();
    thread::sleep(Duration::from_millis(2500));
    c.get_record_counts("MTL0001").unwrap();
    by.check();
    fe.proc.assert_running();
}

#[test]
fn many_concurrent_clients_on_one_connection() {
    let fe = Frontend::start(&[]);
    let c = fe.client();
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let c = c.clone();
            thread::spawn(move || {
                for k in 0..5 {
                    let id = c
                        .create_d_record(
                            "LVL0001",
                            "A",
                            &format!("N{i}x{k}"),
                            "a",
                            "5145550000",
                            "s",
                            "lvl",
                        )
                        .unwrap();
                    assert!(id.starts_with("DR"));
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(
        c.get_record_counts("LVL0001").unwrap(),
        "MTL 0, LVL 160, DDO 0"
    );
    assert_eq!(c.list_records("LVL0001", "N").unwrap().len(), 160);
}

#[test]
fn sigterm_stops_the_front_end_cleanly_and_the_data_stays() {
    let mut fe = Frontend::start(&[]);
    let id = fe
        .client()
        .create_n_record("DDO0001", "É", "Ü", "junior", "active", "2020-01-01")
        .unwrap();
    assert_eq!(id, "NR10000");
    let status = Command::new("kill")
        .arg("-TERM")
        .arg(fe.proc.child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
    let t0 = Instant::now();
    let exit = loop {
        if let Some(s) = fe.proc.child.try_wait().unwrap() {
            break s;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "stops on SIGTERM");
        thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit:?}");
    // A new front end on the same store continues the numbering.
    let data = fe.dir.path().join("data");
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(DCMS)
        .args(["frontend", "--standalone", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(&data)
        .arg("--ior-file")
        .arg(dir.path().join("ior"))
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let _again = Proc {
        child,
        name: "dcms frontend (restarted)",
    };
    let url = BufReader::new(stdout)
        .lines()
        .map_while(Result::ok)
        .find_map(|l| l.strip_prefix("corbaloc ").map(str::to_string))
        .expect("corbaloc line");
    let c = ClinicClient::connect(&url, &ClientOptions::default()).unwrap();
    assert_eq!(c.get_record("DDO0001", "NR10000").unwrap().first_name, "É");
    assert_eq!(
        c.create_n_record("DDO0001", "A", "B", "senior", "active", "2020-01-01")
            .unwrap(),
        "NR10001"
    );
}

/// With one running slot and no waiting room, concurrent requests beyond
/// it get TRANSIENT, completed no, at once; and "no" is true: exactly the
/// successful creates exist afterwards.
#[test]
fn overload_is_refused_with_transient_completed_no() {
    let fe = Frontend::start(&["--max-running", "1", "--max-waiting", "0"]);
    let c = fe.client();
    let refused = Arc::new(AtomicUsize::new(0));
    let created = Arc::new(AtomicUsize::new(0));
    let threads: Vec<_> = (0..32)
        .map(|i| {
            let (c, refused, created) = (c.clone(), refused.clone(), created.clone());
            thread::spawn(move || {
                let mut slowest_refusal = Duration::ZERO;
                for k in 0..40 {
                    let t = Instant::now();
                    let last = format!("T{i}x{k}");
                    match c.create_d_record("DDO0001", "A", &last, "a", "5145550000", "s", "ddo") {
                        Ok(_) => {
                            created.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            let s = e.as_system().unwrap_or_else(|| panic!("{e}"));
                            assert_eq!(e.name(), "CORBA::TRANSIENT", "{e}");
                            assert_eq!(e.fields()[1].1, "COMPLETED_NO", "{s}");
                            slowest_refusal = slowest_refusal.max(t.elapsed());
                            refused.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                }
                slowest_refusal
            })
        })
        .collect();
    for t in threads {
        let slowest = t.join().unwrap();
        assert!(
            slowest < Duration::from_secs(1),
            "a refusal took {slowest:?}"
        );
    }
    let (refused, created) = (
        refused.load(Ordering::Relaxed),
        created.load(Ordering::Relaxed),
    );
    eprintln!("overload: {created} created, {refused} refused");
    assert!(refused > 0, "32 clients on one slot were refused sometimes");
    assert!(created > 0);
    assert_eq!(refused + created, 32 * 40);
    assert_eq!(
        c.get_record_counts("DDO0001").unwrap(),
        format!("MTL 0, LVL 0, DDO {created}"),
        "refused requests did not run"
    );
    assert_eq!(c.list_records("DDO0001", "T").unwrap().len(), created);
}

/// The front end closes a connection whose message does not complete
/// within `--message-deadline-secs` of its first byte (rustorb 0.2 alone
/// would keep it forever; see vendor/rustorb-core/PATCHES.md), without
/// disturbing anyone. `fe` runs with a 1 s deadline
/// (`--message-deadline-secs 1`).
fn a_message_that_never_completes_is_cut_off(mut fe: impl Target) {
    let by = Bystanders::start(&fe, 2);
    let full = request(1, "getRecordCounts", &["MTL0001"]);
    let mut stalled = Vec::new();
    for cut in [1, 11, 12, full.len() - 1] {
        let mut s = connect(fe.port());
        s.write_all(&full[..cut]).unwrap();
        stalled.push(s);
    }
    let t0 = Instant::now();
    for s in &mut stalled {
        assert!(
            closed_by_server(s, Duration::from_secs(5)),
            "a stalled message is cut off"
        );
    }
    assert!(
        t0.elapsed() >= Duration::from_millis(900),
        "not before the deadline"
    );
    // A slow but steady sender within the deadline is fine.
    let mut s = connect(fe.port());
    for chunk in full.chunks(8) {
        s.write_all(chunk).unwrap();
        thread::sleep(Duration::from_millis(20));
    }
    let (kind, body) = read_message(&mut s).unwrap();
    assert_eq!(kind, 1);
    assert!(String::from_utf8_lossy(&body).contains("MTL 0, LVL 0, DDO 0"));
    by.check();
    fe.assert_running();
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

/// A client that sends requests and never reads the replies is
/// disconnected once 16 MiB of replies wait: the front end's memory stays
/// flat (rustorb 0.2 alone queues every reply: hundreds of MB in seconds).
fn a_client_that_never_reads_its_replies_is_cut_off(mut fe: impl Target) {
    let c = fe.client();
    let long = "x".repeat(95);
    for i in 0..30 {
        c.create_d_record(
            "MTL0001",
            &long,
            &format!("Big{i}"),
            &long,
            "5145550000",
            &long,
            "mtl",
        )
        .unwrap();
    }
    let by = Bystanders::start(&fe, 2);
    let before = rss_kib(fe.pid());
    let mut s = connect(fe.port());
    s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut sent = 0u32;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(5) {
        if s.write_all(&request(sent, "listRecords", &["MTL0001", ""]))
            .is_err()
        {
            break; // disconnected (or its buffers are full)
        }
        sent += 1;
    }
    let after = rss_kib(fe.pid());
    eprintln!("unread replies: {sent} requests sent, RSS {before} -> {after} KiB");
    assert!(
        after < before + 64 * 1024,
        "memory grew from {before} KiB to {after} KiB"
    );
    by.check();
    drop(s);
    fe.assert_running();
}

// --- the robustness tests, once per target ----------------------------------

/// The GIOP robustness tests against `dcms frontend --standalone`.
mod standalone {
    use super::Frontend;

    #[test]
    fn garbage_closes_only_that_connection() {
        super::garbage_closes_only_that_connection(Frontend::start(&[]));
    }

    #[test]
    fn oversized_messages_close_only_that_connection() {
        super::oversized_messages_close_only_that_connection(Frontend::start(&[]));
    }

    #[test]
    fn truncated_and_abandoned_requests_disturb_no_one() {
        super::truncated_and_abandoned_requests_disturb_no_one(Frontend::start(&[]));
    }

    #[test]
    fn a_message_that_never_completes_is_cut_off() {
        let fe = Frontend::start(&["--message-deadline-secs", "1"]);
        super::a_message_that_never_completes_is_cut_off(fe);
    }

    #[test]
    fn a_client_that_never_reads_its_replies_is_cut_off() {
        super::a_client_that_never_reads_its_replies_is_cut_off(Frontend::start(&[]));
    }
}

/// The same tests against a replicated cluster (`dcms up`: the front end
/// sends each request over UDP to the leader, which waits for two backups).
mod replicated {
    use super::Replicated;

    #[test]
    fn garbage_closes_only_that_connection() {
        super::garbage_closes_only_that_connection(Replicated::start(&[]));
    }

    #[test]
    fn oversized_messages_close_only_that_connection() {
        super::oversized_messages_close_only_that_connection(Replicated::start(&[]));
    }

    #[test]
    fn truncated_and_abandoned_requests_disturb_no_one() {
        super::truncated_and_abandoned_requests_disturb_no_one(Replicated::start(&[]));
    }

    #[test]
    fn a_message_that_never_completes_is_cut_off() {
        let cluster = Replicated::start(&["--message-deadline-secs", "1"]);
        super::a_message_that_never_completes_is_cut_off(cluster);
    }

    #[test]
    fn a_client_that_never_reads_its_replies_is_cut_off() {
        super::a_client_that_never_reads_its_replies_is_cut_off(Replicated::start(&[]));
    }
}
