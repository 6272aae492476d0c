//! Multi-process tests of the replicated cluster: `dcms up` on free loopback
//! ports (two front ends and three replicas, each its own process), writes
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
    // Three kills of the first front end (the one the group reference
    // names first), each once it came back and served again.
    let mut killed = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while killed.len() < 3 {
        assert!(Instant::now() < deadline, "the front end did not come back");
        std::thread::sleep(Duration::from_millis(400));
        let Some(pid) = cluster.pid_of("frontend-100") else {
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

/// Waits up to 10 s for `check` to hold.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// Two front ends; a client of the group corbaloc works through the first.
/// That front end is killed (kill -9) while the client keeps calling: at
/// most the call in flight fails (COMM_FAILURE or TRANSIENT, completed
/// maybe), and every later call is answered, through the other front end.
/// `dcms up` restarts the killed one, and `dcms status` shows both. The
/// group IOR in `dcms.ior` reaches the cluster too.
#[test]
fn a_client_of_the_group_survives_the_kill_of_its_front_end() {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;
    let cluster = up(&[
        "--replicas",
        "3",
        "--frontends",
        "2",
        "--sync",
        "normal",
        "--restart-after-ms",
        "3000",
    ]);
    assert_eq!(cluster.config.frontends.len(), 2);
    let ports: Vec<u16> = cluster
        .config
        .frontends
        .iter()
        .map(|f| f.iiop.port())
        .collect();
    assert_eq!(
        cluster.corbaloc,
        format!(
            "corbaloc:iiop:127.0.0.1:{},:127.0.0.1:{}/DCMS",
            ports[0], ports[1]
        )
    );
    let opts = dcms_corba::ClientOptions {
        connect_timeout: Duration::from_secs(1),
        call_timeout: Duration::from_secs(10),
        ..dcms_corba::ClientOptions::default()
    };
    let client = dcms_corba::ClinicClient::connect(&cluster.corbaloc, &opts).unwrap();
    let create = |c: &dcms_corba::ClinicClient, i: usize| {
        c.create_n_record(
            "MTL0001",
            "Ann",
            &format!("Ng{i}"),
            "senior",
            "active",
            "2024-01-31",
        )
    };
    for i in 0..20 {
        create(&client, i).unwrap();
    }
    eventually("front end 100 took the first 20 requests", || {
        cluster.frontend_requests(100).is_some_and(|n| n >= 20)
    });
    let before_101 = cluster.frontend_requests(101).expect("front end 101 runs");
    assert!(
        before_101 < 20,
        "the group reference goes to the first front end: 101 took {before_101}"
    );
    let victim = cluster.pid_of("frontend-100").unwrap();

    // Calls go on in a thread while the front end is killed.
    let stop = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let caller = {
        let (client, stop, answered) = (client.clone(), stop.clone(), answered.clone());
        std::thread::spawn(move || {
            let mut outcomes = Vec::new();
            let mut i = 1000;
            while !stop.load(Ordering::Relaxed) {
                let outcome = create(&client, i);
                if outcome.is_ok() {
                    answered.fetch_add(1, Ordering::Relaxed);
                }
                outcomes.push(outcome);
                i += 1;
            }
            outcomes
        })
    };
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on a PID of a process this test started.
    unsafe {
        libc::kill(victim as i32, libc::SIGKILL);
    }
    // Until 30 more calls were answered (the restart is 3 s away).
    let at_kill = answered.load(Ordering::Relaxed);
    eventually("calls are answered after the kill", || {
        answered.load(Ordering::Relaxed) >= at_kill + 30
    });
    stop.store(true, Ordering::Relaxed);
    let outcomes = caller.join().unwrap();
    let failed: Vec<_> = outcomes.iter().filter_map(|o| o.as_ref().err()).collect();
    let first_failure = outcomes.iter().position(|o| o.is_err());
    eprintln!(
        "{} calls around the kill, {} failed: {failed:?}",
        outcomes.len(),
        failed.len()
    );
    assert!(
        failed.len() <= 1,
        "only the call in flight may fail: {failed:?}"
    );
    for e in &failed {
        let sys = e.as_system().unwrap_or_else(|| panic!("{e}"));
        assert_eq!(
            dcms_corba::client::completion_name(sys.completed),
            "COMPLETED_MAYBE",
            "{e}"
        );
    }
    let after = outcomes.len() - first_failure.map_or(0, |i| i + 1);
    assert!(after >= 20, "calls after the kill: {after} ({outcomes:?})");
    // Those calls went to front end 101 (100 is down until the restart).
    eventually("front end 101 took the calls after the kill", || {
        cluster
            .frontend_requests(101)
            .is_some_and(|n| n >= before_101 + 20)
    });

    // dcms up restarts the killed front end; dcms status shows both.
    eventually("frontend-100 restarted", || {
        cluster.pid_of("frontend-100").is_some_and(|p| p != victim)
    });
    let restarted = cluster.pid_of("frontend-100").unwrap();
    let status_table = || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_dcms"))
            .arg("status")
            .arg("--data-dir")
            .arg(&cluster.data_dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8(out.stdout).unwrap()
    };
    let mut table = String::new();
    eventually("dcms status shows both front ends up", || {
        table = status_table();
        [(100, restarted), (101, 0)].iter().all(|(id, pid)| {
            table.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.first() == Some(&format!("frontend-{id}").as_str())
                    && cols.get(1) == Some(&"frontend")
                    && (*pid == 0 || cols.get(2) == Some(&pid.to_string().as_str()))
                    && l.contains(&format!("iiop 127.0.0.1:{}", ports[(*id - 100) as usize]))
            })
        })
    });
    // The restarted front end serves again (its own corbaloc), and so
    // does the group IOR `dcms up` wrote.
    let own = cluster.frontend_corbaloc(100).unwrap();
    eventually("the restarted front end answers", || {
        dcms_corba::ClinicClient::connect(&own, &opts)
            .and_then(|c| c.get_record_counts("MTL0001"))
            .is_ok()
    });
    let ior = std::fs::read_to_string(cluster.data_dir.join("dcms.ior")).unwrap();
    assert_eq!(ior.trim(), cluster.group_ior());
    let by_ior = dcms_corba::ClinicClient::connect(ior.trim(), &opts).unwrap();
    let counts = by_ior.get_record_counts("MTL0001").unwrap();
    assert!(
        total_of(&counts) as usize >= 20 + after,
        "{counts}: every acknowledged create is there"
    );
    eprintln!("{table}");
}

/// Without a majority, an FT request is refused for certain soon after its
/// expiration: the client hears `DCMS::Unavailable` ("not executed") in
/// about the expiration plus the clock-skew margin, not `TRANSIENT`
/// (completed maybe) at the front end's 5 s deadline. Once the backups are
/// back, the request is logged as refused (it never executes), and the
/// same client's next write goes through.
#[test]
fn without_a_majority_an_expired_ft_request_is_refused_for_certain() {
    use dcms_corba::client::FtOptions;
    use dcms_corba::{CallError, ClientOptions, ClinicClient, DcmsException};
    use std::time::{Duration, Instant};
    // `dcms up` restarts the killed backups after 4 s.
    let mut cluster = up(&["--restart-after-ms", "4000"]);
    let leader = dcms_node::status::read_all(&cluster.data_dir)
        .into_iter()
        .find(|s| s.role == "leader")
        .expect("a leader");
    let backups: Vec<u32> = dcms_node::status::read_all(&cluster.data_dir)
        .into_iter()
        .filter(|s| s.role == "backup")
        .map(|s| s.pid)
        .collect();
    assert_eq!(backups.len(), 2, "two backups");
    let opts = ClientOptions {
        ft: Some(FtOptions {
            client_id: "no-majority-test".into(),
            expiration: Duration::from_millis(1_000),
        }),
        ..ClientOptions::default()
    };
    let client = ClinicClient::connect(&cluster.corbaloc, &opts).unwrap();
    let create =
        || client.create_n_record("MTL0001", "Ann", "Lonely", "junior", "active", "2024-01-01");
    create().expect("a write goes through with a majority");
    for pid in &backups {
        // SAFETY: kill(2) on a PID of our own cluster.
        unsafe { libc::kill(*pid as i32, libc::SIGKILL) };
    }
    // The leader notices (suspicion after 150 ms) and refuses.
    std::thread::sleep(Duration::from_millis(400));
    let started = Instant::now();
    let result = create();
    let took = started.elapsed();
    match result {
        Err(CallError::User(DcmsException::Unavailable { reason })) => {
            assert!(reason.contains("not executed"), "{reason}");
        }
        other => panic!("expected DCMS::Unavailable, got {other:?}"),
    }
    assert!(
        took < Duration::from_millis(3_000),
        "refused after {took:?}: not at the 5 s deadline"
    );
    assert_eq!(
        dcms_node::status::read_all(&cluster.data_dir)
            .into_iter()
            .find(|s| s.pid == leader.pid)
            .map(|s| s.role),
        Some("leader".to_string()),
        "the same leader refused"
    );
    // The backups come back; the next write goes through.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match client.create_n_record("MTL0001", "Ann", "Later", "junior", "active", "2024-01-01") {
            Ok(_) => break,
            Err(e) => assert!(
                Instant::now() < deadline,
                "no write after the backups came back: {e}"
            ),
        }
    }
    std::thread::sleep(Duration::from_millis(500));
    cluster.stop();
    let store = Store::open(cluster.config.replica_db(1), SyncMode::Normal).unwrap();
    let names: Vec<String> = store
        .records()
        .unwrap()
        .iter()
        .map(|r| r.last_name().to_string())
        .collect();
    assert_eq!(
        names.iter().filter(|n| *n == "Lonely").count(),
        1,
        "the refused create never executed: {names:?}"
    );
    let audit = store.audit().unwrap();
    assert!(
        audit.iter().any(|(_, a)| a.outcome.contains("expired")),
        "the refused request is logged as refused"
    );
}

/// GET `path` from an HTTP server at `addr`; the whole response.
fn http_get(addr: &str, path: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    write!(s, "GET {path} HTTP/1.1\r\nHost: {addr}\r\n\r\n").unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

/// The value of the sample `name` (no labels) in a Prometheus text page.
fn sample(page: &str, name: &str) -> Option<f64> {
    page.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
}

/// `dcms up --metrics`: every process serves Prometheus metrics, named in
/// its status (`dcms status --json`, whose statistics are JSON objects, not
/// debug strings), and they follow what the cluster does.
#[test]
fn every_process_serves_metrics_and_its_status_is_json() {
    let cluster = up(&["--replicas", "3", "--sync", "normal", "--metrics"]);
    let ids = create_concurrently(&cluster, 4, 200);
    assert_eq!(ids.len(), 200);
    let status = || dcms_node::status::read_all(&cluster.data_dir);
    // The metrics follow at the status files' pace (200 ms).
    eventually("every process reports its metrics address", || {
        let all = status();
        all.len() == 5 && all.iter().all(|s| s.metrics.is_some())
    });
    let mut leaders = 0;
    for s in status() {
        let addr = s.metrics.clone().unwrap();
        if s.role == "frontend" {
            assert!(
                s.stats["protocol"]["sent"].as_u64().is_some(),
                "{}",
                s.stats
            );
            assert!(s.stats["link"]["sent"].as_u64().is_some(), "{}", s.stats);
            continue;
        }
        let executed = s.stats["protocol"]["executed"].as_u64();
        assert!(
            executed.is_some(),
            "protocol stats are an object: {}",
            s.stats
        );
        assert!(
            s.peers.iter().all(|p| p.node != s.id),
            "{} lists itself among its peers",
            s.name
        );
        let page = http_get(&addr, "/metrics");
        assert!(page.starts_with("HTTP/1.1 200"), "{page}");
        if sample(&page, "dcms_replica_is_leader") == Some(1.0) {
            leaders += 1;
            eventually("the leader's metrics count the creates", || {
                let page = http_get(&addr, "/metrics");
                sample(&page, "dcms_replica_protocol_executed_total").unwrap_or(0.0) >= 200.0
                    && sample(&page, "dcms_replica_committed_position").unwrap_or(0.0) >= 200.0
            });
            let page = http_get(&addr, "/metrics");
            assert!(
                page.lines()
                    .any(|l| l.starts_with("dcms_replica_digest_age_ms{backup=")),
                "the leader reports each backup's digest age:\n{page}"
            );
        }
        assert!(
            sample(&page, "dcms_replica_commit_entries_count").unwrap_or(0.0) >= 1.0,
            "{} counts its commits:\n{page}",
            s.name
        );
        assert!(http_get(&addr, "/nothing").starts_with("HTTP/1.1 404"));
    }
    assert_eq!(leaders, 1, "exactly one replica reports itself leader");
    let fe = status()
        .into_iter()
        .find(|s| s.name == "frontend-100")
        .unwrap();
    let addr = fe.metrics.unwrap();
    eventually("the front end's metrics count its requests", || {
        let page = http_get(&addr, "/metrics");
        sample(&page, "dcms_frontend_requests_total").unwrap_or(0.0) >= 200.0
    });
    let page = http_get(&addr, "/metrics");
    let replies = page
        .lines()
        .find_map(|l| {
            l.strip_prefix("dcms_frontend_request_seconds_count{outcome=\"reply\"} ")?
                .parse::<f64>()
                .ok()
        })
        .unwrap_or(0.0);
    assert!(replies >= 200.0, "request latencies by outcome:\n{page}");
}
