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
