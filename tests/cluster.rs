//! Multi-process tests of the replicated cluster: `dcms up` on free loopback
//! ports (a front end and three replicas, each its own process), writes
//! through CORBA, then the replicas' SQLite files are compared.

use dcms_core::{Store, SyncMode};
use dcms_node::local::LocalCluster;
use std::collections::HashSet;
use std::path::Path;

fn up(args: &[&str]) -> LocalCluster {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    LocalCluster::start(Path::new(env!("CARGO_BIN_EXE_dcms")), None, &args, true)
        .expect("cluster starts")
}

/// Creates `total` doctors from `clients` threads; returns the IDs.
fn create_concurrently(cluster: &LocalCluster, clients: usize, total: usize) -> Vec<String> {
    let threads: Vec<_> = (0..clients)
        .map(|c| {
            let client = cluster.client();
            std::thread::spawn(move || {
                (0..total / clients)
                    .map(|i| {
                        let manager = ["MTL0001", "LVL0002", "DDO0003"][(c + i) % 3];
                        client
                            .create_d_record(
                                manager,
                                "Ann",
                                &format!("Lee{c}x{i}"),
                                "1 Rue Peel",
                                "514-555-0199",
                                "surgeon",
                                "mtl",
                            )
                            .unwrap_or_else(|e| panic!("create {c}/{i} failed: {e}"))
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect()
}

/// Stops the cluster and returns each replica's (record count, digest).
fn stop_and_inspect(mut cluster: LocalCluster) -> Vec<(usize, String)> {
    cluster.stop();
    cluster
        .config
        .replicas
        .iter()
        .map(|r| {
            let store = Store::open(cluster.config.replica_db(r.id), SyncMode::Full).unwrap();
            (
                store.records().unwrap().len(),
                store.digest().unwrap().to_hex(),
            )
        })
        .collect()
}

fn total_of(counts: &str) -> u64 {
    // "MTL 3, LVL 2, DDO 1"
    counts
        .split(", ")
        .map(|part| part.split(' ').nth(1).unwrap().parse::<u64>().unwrap())
        .sum()
}

#[test]
fn writes_through_corba_reach_three_equal_replicas() {
    let cluster = up(&["--replicas", "3", "--sync", "normal"]);
    let client = cluster.client();
    let id = client
        .create_n_record("LVL0001", "Zoë", "Weiß", "senior", "active", "2024-02-29")
        .unwrap();
    assert_eq!(id, "NR10000");
    let ids = create_concurrently(&cluster, 4, 200);
    assert_eq!(ids.iter().collect::<HashSet<_>>().len(), 200);
    // ids[0] was created by client 0's first call, as MTL0001.
    client.transfer_record("MTL0001", &ids[0], "DDO").unwrap();
    let record = client.get_record("DDO0001", &ids[0]).unwrap();
    assert_eq!(record.clinic, "DDO");
    assert_eq!(record.last_name, "Lee0x0");
    assert_eq!(total_of(&client.get_record_counts("MTL0001").unwrap()), 201);
    let replicas = stop_and_inspect(cluster);
    assert_eq!(replicas.len(), 3);
    for (n, digest) in &replicas {
        assert_eq!(*n, 201, "every replica holds every record");
        assert_eq!(
            digest, &replicas[0].1,
            "replica digests differ: {replicas:?}"
        );
    }
}

#[test]
fn twenty_percent_loss_on_every_process_loses_and_doubles_nothing() {
    let cluster = up(&[
        "--replicas",
        "3",
        "--sync",
        "normal",
        "--fault-drop",
        "0.2",
        "--fault-seed",
        "7",
    ]);
    let ids = create_concurrently(&cluster, 8, 1000);
    assert_eq!(ids.len(), 1000);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        1000,
        "every ID returned exactly once"
    );
    let counts = cluster.client().get_record_counts("DDO0001").unwrap();
    assert_eq!(total_of(&counts), 1000, "counts {counts}");
    let replicas = stop_and_inspect(cluster);
    for (n, digest) in &replicas {
        assert_eq!(*n, 1000, "every replica holds every record");
        assert_eq!(
            digest, &replicas[0].1,
            "replica digests differ: {replicas:?}"
        );
    }
}

/// What one client thread saw.
#[derive(Default)]
struct Seen {
    /// (record ID, last name sent): creates that were acknowledged.
    acknowledged: Vec<(String, String)>,
    /// Last names of creates whose outcome is unknown (COMPLETED_MAYBE).
    maybe: Vec<String>,
    /// Calls refused without effect (COMPLETED_NO), retried.
    refused: usize,
}

/// Kills the front end (kill -9) under load, again and again, while `dcms
/// up` restarts it: every answer a client gets must be the answer to its
/// own request (each create's record holds what that client sent, each
/// read names the record asked for), nothing acknowledged is lost, nothing
/// is created twice, and the replicas end equal.
#[test]
fn killing_the_front_end_under_load_never_hands_a_client_another_answer() {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let cluster = up(&[
        "--replicas",
        "3",
        "--sync",
        "normal",
        "--restart-after-ms",
        "50",
    ]);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> =
        (0..6)
            .map(|c| {
                let (corbaloc, stop) = (cluster.corbaloc.clone(), stop.clone());
                std::thread::spawn(move || {
                    let opts = dcms_corba::ClientOptions {
                        connect_timeout: Duration::from_millis(500),
                        call_timeout: Duration::from_secs(10),
                        ..dcms_corba::ClientOptions::default()
                    };
                    let connect = || dcms_corba::ClinicClient::connect(&corbaloc, &opts).unwrap();
                    let mut client = connect();
                    let mut seen = Seen::default();
                    let manager = ["MTL0001", "LVL0002", "DDO0003"][c % 3];
                    let mut i = 0;
                    while !stop.load(Ordering::Relaxed) {
                        i += 1;
                        // Every field names this client and this request.
                        let (first, last) = (format!("C{c}"), format!("Lee{c}x{i}"));
                        let (address, phone) =
                            (format!("{i} Rue {c}"), format!("514-555-{:04}", i % 10_000));
                        let created = client.create_d_record(
                            manager, &first, &last, &address, &phone, "surgeon", "mtl",
                        );
                        let id = match created {
                            Ok(id) => id,
                            Err(e) => {
                                let sys = e.as_system().unwrap_or_else(|| panic!("create: {e}"));
                                match dcms_corba::client::completion_name(sys.completed) {
                                    "COMPLETED_NO" => seen.refused += 1,
                                    _ => seen.maybe.push(last),
                                }
                                std::thread::sleep(Duration::from_millis(20));
                                client = connect();
                                continue;
                            }
                        };
                        // The reply is this request's: the record it names holds
                        // exactly what this client sent.
                        let record = loop {
                            match client.get_record(manager, &id) {
                                Ok(r) => break r,
                                Err(e) if e.as_system().is_some() => {
                                    std::thread::sleep(Duration::from_millis(20));
                                    client = connect();
                                }
                                Err(e) => panic!("{id}, created by client {c} as {last}: {e}"),
                            }
                        };
                        assert_eq!(record.record_id, id, "a read answered for another record");
                        assert_eq!(
                        (&record.first_name, &record.last_name, &record.address, &record.phone),
                        (&first, &last, &address, &phone),
                        "client {c} got {id} for its create of {last}: another request's answer"
                    );
                        seen.acknowledged.push((id, last));
                    }
                    seen
                })
            })
            .collect();
    // Three kills, each once the front end came back and served again.
    let mut killed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while killed.len() < 3 {
        assert!(Instant::now() < deadline, "the front end did not come back");
        std::thread::sleep(Duration::from_millis(400));
        let Some(pid) = cluster.pid_of("frontend") else {
            continue;
        };
        if killed.contains(&pid) {
            continue;
        }
        // SAFETY: kill(2) on a PID of a process this test started.
        unsafe {
            libc::kill(pid as i32, libc::SIGKILL);
        }
        killed.push(pid);
    }
    std::thread::sleep(Duration::from_millis(1_500));
    stop.store(true, Ordering::Relaxed);
    let seen: Vec<Seen> = clients.into_iter().map(|t| t.join().unwrap()).collect();
    let acknowledged: Vec<&(String, String)> = seen.iter().flat_map(|s| &s.acknowledged).collect();
    let maybe: HashSet<&String> = seen.iter().flat_map(|s| &s.maybe).collect();
    let refused: usize = seen.iter().map(|s| s.refused).sum();
    eprintln!(
        "{} creates acknowledged, {} outcome unknown, {refused} refused and retried, {} kills",
        acknowledged.len(),
        maybe.len(),
        killed.len()
    );
    assert!(
        acknowledged.len() >= 100,
        "load ran: {}",
        acknowledged.len()
    );
    let ids: HashSet<&String> = acknowledged.iter().map(|(id, _)| id).collect();
    assert_eq!(ids.len(), acknowledged.len(), "an ID acknowledged twice");
    let mut cluster = cluster;
    cluster.stop();
    for r in &cluster.config.replicas {
        let store = Store::open(cluster.config.replica_db(r.id), SyncMode::Full).unwrap();
        let records = store.records().unwrap();
        let by_last: std::collections::HashMap<&str, usize> =
            records.iter().fold(Default::default(), |mut m, rec| {
                *m.entry(rec.last_name()).or_default() += 1;
                m
            });
        for (id, last) in &acknowledged {
            assert_eq!(
                by_last.get(last.as_str()),
                Some(&1),
                "{id} ({last}) on replica {}",
                r.id
            );
        }
        // Nothing else but creates whose outcome the client never learned,
        // each at most once.
        for (last, n) in &by_last {
            assert_eq!(*n, 1, "{last} created {n} times on replica {}", r.id);
        }
        let unacknowledged = records.len() - acknowledged.len();
        assert!(
            unacknowledged <= maybe.len(),
            "{unacknowledged} records nobody asked for (or heard about) on replica {}",
            r.id
        );
    }
    let digests: Vec<String> = cluster
        .config
        .replicas
        .iter()
        .map(|r| {
            Store::open(cluster.config.replica_db(r.id), SyncMode::Full)
                .unwrap()
                .digest()
                .unwrap()
                .to_hex()
        })
        .collect();
    assert!(digests.iter().all(|d| d == &digests[0]), "{digests:?}");
}
