//! The tokio shells end to end, in one process: three replica event loops
//! and one or more front-end sequencers on loopback UDP ports, requests
//! through [`ReplicatedService`] from many threads. No CORBA here: that
//! path has its own multi-process tests.

use dcms_corba::ClinicService;
use dcms_core::workload::{Mix, Workload};
use dcms_core::{Outcome, Store, SyncMode};
use dcms_node::config::ClusterConfig;
use std::collections::HashSet;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;

fn free_udp() -> SocketAddr {
    UdpSocket::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// A configuration of `replicas` replicas and `frontends` front ends.
fn config(dir: &std::path::Path, replicas: u64, frontends: usize) -> ClusterConfig {
    let keys = (0..frontends)
        .map(|i| format!("fedcba9876543210fedcba98765432{i:02x}"))
        .collect();
    let mut c = ClusterConfig::local(
        0,
        replicas,
        dir.to_path_buf(),
        "0123456789abcdef0123456789abcdef".into(),
        keys,
    );
    for f in &mut c.frontends {
        f.udp = free_udp();
        f.iiop = free_udp();
    }
    for r in &mut c.replicas {
        r.udp = free_udp();
    }
    c.sync = "normal".into();
    c
}

/// Runs `requests` creates from `threads` threads against an in-process
/// cluster (thread `t` through front end `t mod n`); returns the IDs and
/// the replicas' digests after a clean stop.
fn run_cluster(
    config: ClusterConfig,
    threads: usize,
    requests: usize,
) -> (Vec<String>, Vec<String>) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut handles = Vec::new();
    for r in &config.replicas {
        let mut stop = stop_tx.subscribe();
        let (c, id) = (config.clone(), r.id);
        handles.push(rt.spawn(async move {
            dcms_node::replica::run_replica(c, id, true, async move {
                let _ = stop.recv().await;
            })
            .await
            .unwrap()
        }));
    }
    let mut services = Vec::new();
    for f in &config.frontends {
        let mut stop = stop_tx.subscribe();
        let (service, event_loop) = {
            let _g = rt.enter();
            let own = config.for_frontend(f.id).unwrap();
            dcms_node::frontend::start_frontend(&own, f.id, async move {
                let _ = stop.recv().await;
            })
            .unwrap()
        };
        handles.push(rt.spawn(event_loop));
        services.push(Arc::new(service));
    }
    let per = requests / threads;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let service = services[t % services.len()].clone();
            std::thread::spawn(move || {
                let mut w = Workload::new(t as u64 + 1, Mix::AllCreates);
                (0..per)
                    .map(|_| match service.call(w.next_request()) {
                        Ok(Ok(Outcome::RecordId(id))) => id.to_string(),
                        other => panic!("create failed: {other:?}"),
                    })
                    .collect::<Vec<_>>()
            })
        })
        .collect();
    let ids: Vec<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    // Let the last acknowledgements settle, then stop everything.
    std::thread::sleep(std::time::Duration::from_millis(300));
    let _ = stop_tx.send(());
    for h in handles {
        rt.block_on(h).unwrap();
    }
    let digests = config
        .replicas
        .iter()
        .map(|r| {
            let store = Store::open(config.replica_db(r.id), SyncMode::Normal).unwrap();
            assert_eq!(
                store.records().unwrap().len(),
                ids.len(),
                "replica {} holds every record",
                r.id
            );
            store.digest().unwrap().to_hex()
        })
        .collect();
    (ids, digests)
}

#[test]
fn three_replicas_agree_and_every_create_is_answered_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, digests) = run_cluster(config(dir.path(), 3, 1), 8, 400);
    assert_eq!(ids.len(), 400);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        400,
        "every ID returned once"
    );
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "digests differ: {digests:?}"
    );
}

/// Two front ends, each with its own key and streams, share the replicas:
/// requests through both execute once each, in one log.
#[test]
fn two_front_ends_share_the_replicas() {
    let dir = tempfile::tempdir().unwrap();
    let (ids, digests) = run_cluster(config(dir.path(), 3, 2), 8, 400);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        400,
        "every ID returned once"
    );
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "digests differ: {digests:?}"
    );
}

/// A replica refuses a front end whose key it does not hold: a front end
/// missing from the replicas' configuration gets no answer.
#[test]
fn a_front_end_the_replicas_do_not_know_is_not_answered() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = config(dir.path(), 1, 2);
    config.timeouts.outcome_ms = 300;
    let mut replicas_view = config.clone();
    replicas_view.frontends.truncate(1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop_tx, _) = tokio::sync::broadcast::channel::<()>(1);
    let mut stop = stop_tx.subscribe();
    let replica = rt.spawn(async move {
        dcms_node::replica::run_replica(replicas_view, 1, true, async move {
            let _ = stop.recv().await;
        })
        .await
        .unwrap()
    });
    let mut results = Vec::new();
    let mut handles = Vec::new();
    for id in [100, 101] {
        let mut stop = stop_tx.subscribe();
        let (service, event_loop) = {
            let _g = rt.enter();
            dcms_node::frontend::start_frontend(&config.for_frontend(id).unwrap(), id, async move {
                let _ = stop.recv().await;
            })
            .unwrap()
        };
        handles.push(rt.spawn(event_loop));
        let mut w = Workload::new(id, Mix::CreatesOnly);
        results.push(service.call(w.next_request()));
    }
    assert!(
        matches!(results[0], Ok(Ok(Outcome::RecordId(_)))),
        "{:?}",
        results[0]
    );
    assert_eq!(
        results[1],
        Err(dcms_corba::ServiceError::OutcomeUnknown),
        "the unknown front end was answered"
    );
    let _ = stop_tx.send(());
    for h in handles {
        rt.block_on(h).unwrap();
    }
    rt.block_on(replica).unwrap();
    let store = Store::open(config.replica_db(1), SyncMode::Normal).unwrap();
    assert_eq!(
        store.records().unwrap().len(),
        1,
        "only front end 100's create"
    );
}

#[test]
fn twenty_percent_loss_everywhere_loses_and_doubles_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path(), 3, 2);
    c.faults.drop = 0.2;
    c.faults.dup = 0.05;
    c.faults.reorder = 0.05;
    c.faults.seed = 11;
    let (ids, digests) = run_cluster(c, 8, 240);
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        240,
        "every ID returned once"
    );
    assert!(
        digests.windows(2).all(|w| w[0] == w[1]),
        "digests differ: {digests:?}"
    );
}

#[test]
fn a_restarted_front_end_starts_a_new_stream_and_is_never_answered_from_the_old_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = config(dir.path(), 3, 1);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (stop_replicas, _) = tokio::sync::broadcast::channel::<()>(1);
    let replicas: Vec<_> = config
        .replicas
        .iter()
        .map(|r| {
            let mut stop = stop_replicas.subscribe();
            let (c, id) = (config.clone(), r.id);
            rt.spawn(async move {
                dcms_node::replica::run_replica(c, id, true, async move {
                    let _ = stop.recv().await;
                })
                .await
                .unwrap()
            })
        })
        .collect();
    let mut ids = Vec::new();
    for incarnation in 0..2 {
        let (stop_fe, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let (service, event_loop) = {
            let _g = rt.enter();
            dcms_node::frontend::start_frontend(
                &config.for_frontend(100).unwrap(),
                100,
                async move {
                    let _ = stop_rx.await;
                },
            )
            .unwrap()
        };
        let fe = rt.spawn(event_loop);
        let mut w = Workload::new(incarnation + 1, Mix::CreatesOnly);
        for _ in 0..3 {
            match service.call(w.next_request()) {
                Ok(Ok(Outcome::RecordId(id))) => ids.push(id.to_string()),
                other => panic!("create failed: {other:?}"),
            }
        }
        let _ = stop_fe.send(());
        rt.block_on(fe).unwrap();
        // Sequence numbers restarted at 1; a second start must still execute.
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        ids,
        ["DR10000", "DR10001", "DR10002", "DR10003", "DR10004", "DR10005"]
    );
    let _ = stop_replicas.send(());
    for r in replicas {
        rt.block_on(r).unwrap();
    }
}
