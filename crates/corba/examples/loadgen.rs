//! Load generator for a DCMS::ClinicManagement object.
//!
//!     cargo run --release -p dcms-corba --example loadgen -- URL OP CLIENTS SECONDS
//!
//! OP is `counts` (getRecordCounts) or `create` (createDRecord). CLIENTS
//! threads share one ClinicClient (one connection) and call back to back
//! for SECONDS; prints requests/s and latency percentiles. Any error stops
//! the run.
//!
//! URL `null` serves, in this process (its own ORB, over 127.0.0.1 TCP), a
//! service that answers at once without a store: the cost of the CORBA
//! layer alone.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use dcms_corba::{ClientOptions, ClinicClient};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() != 5 {
        eprintln!("usage: loadgen URL counts|create CLIENTS SECONDS");
        std::process::exit(2);
    }
    let (url, op) = (&args[1], args[2].clone());
    let clients: usize = args[3].parse().expect("CLIENTS");
    let secs: f64 = args[4].parse().expect("SECONDS");
    let null_server;
    let url = if url == "null" {
        null_server =
            dcms_corba::serve(Arc::new(Null), &dcms_corba::ServeOptions::default()).expect("serve");
        null_server.corbaloc()
    } else {
        url.clone()
    };
    let client = ClinicClient::connect(&url, &ClientOptions::default()).expect("connect");
    // Warm up the connection.
    client.get_record_counts("MTL0001").expect("warm-up call");
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let threads: Vec<_> = (0..clients)
        .map(|i| {
            let c = client.clone();
            let stop = stop.clone();
            let op = op.clone();
            std::thread::spawn(move || {
                let mut lat = Vec::new();
                let mut k = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let t = Instant::now();
                    let r = match op.as_str() {
                        "counts" => c.get_record_counts("MTL0001").map(|_| ()),
                        "create" => c
                            .create_d_record(
                                "MTL0001",
                                "Load",
                                &format!("Gen{i}x{k}"),
                                "1 Main",
                                "5145550000",
                                "surgeon",
                                "mtl",
                            )
                            .map(|_| ()),
                        other => panic!("unknown op {other}"),
                    };
                    if let Err(e) = r {
                        panic!("call failed: {e}");
                    }
                    lat.push(t.elapsed());
                    k += 1;
                }
                lat
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs_f64(secs));
    stop.store(true, Ordering::Relaxed);
    let mut all: Vec<Duration> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("client thread"))
        .collect();
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| all[((all.len() as f64 * p) as usize).min(all.len() - 1)];
    println!(
        "op={op} clients={clients} requests={} rps={:.0} p50={:.2}ms p99={:.2}ms max={:.2}ms",
        all.len(),
        all.len() as f64 / elapsed,
        pct(0.50).as_secs_f64() * 1e3,
        pct(0.99).as_secs_f64() * 1e3,
        all.last().unwrap().as_secs_f64() * 1e3,
    );
}

/// Answers every request at once, without a store.
struct Null;

impl dcms_corba::ClinicService for Null {
    fn call(
        &self,
        request: dcms_core::Request,
    ) -> Result<dcms_core::Reply, dcms_corba::ServiceError> {
        Ok(Ok(match request {
            dcms_core::Request::GetRecordCounts { .. } => {
                dcms_core::Outcome::Counts(dcms_core::Counts([1, 2, 3]))
            }
            _ => dcms_core::Outcome::RecordId(dcms_core::RecordId::parse("DR10000").unwrap()),
        }))
    }
}
