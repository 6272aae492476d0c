//! `dcms chaos`: a cluster under write load while its processes are hurt —
//! the leader killed with SIGKILL again and again (`dcms up` restarts it), a
//! front end killed the same way, a backup paused with SIGSTOP and resumed
//! with SIGCONT — then checked: every acknowledged create is present with
//! its fields, no record ID was returned twice, no create was executed
//! twice (each one's last name is unique, and appears at most once in the
//! store), the counts lie between what was acknowledged and what may have
//! happened, and all replicas' digests are equal. The writers retry with
//! FT-CORBA's `FT_REQUEST` (as `dcms client` does) unless `--no-ft`.
//!
//! Short runs go in the test suite; longer ones on demand:
//! `dcms chaos --duration 120 --kill-leader-every 3 --kill-frontend-every 5
//! --pause-backup-every 7`.

use anyhow::Context;
use dcms_corba::{CallError, ClientOptions, ClinicClient};
use dcms_core::{Clinic, Store, SyncMode};
use dcms_node::local::LocalCluster;
use dcms_node::status::read_all;
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct ChaosArgs {
    /// Seconds of load and faults.
    #[arg(long, default_value_t = 20.0)]
    duration: f64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 8)]
    clients: usize,
    /// Kill the leader every SECS seconds (0: never).
    #[arg(long, default_value_t = 3.0)]
    kill_leader_every: f64,
    /// Kill a front end every SECS seconds (0: never), each in turn.
    #[arg(long, default_value_t = 0.0)]
    kill_frontend_every: f64,
    /// Front ends of the cluster.
    #[arg(long, default_value_t = 2)]
    frontends: usize,
    #[command(flatten)]
    ft: super::common::FtArgs,
    /// Pause a backup every SECS seconds (0: never)...
    #[arg(long, default_value_t = 7.0)]
    pause_backup_every: f64,
    /// ... for this many milliseconds.
    #[arg(long, default_value_t = 1000)]
    pause_ms: u64,
    /// Keep the cluster's folder and its log here (default: a temporary folder).
    #[arg(long)]
    keep: Option<std::path::PathBuf>,
}

/// An acknowledged create: what the client was told.
struct Acked {
    id: String,
    manager: String,
    last_name: String,
}

pub fn run(args: ChaosArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe()?;
    let tmp = tempfile::Builder::new().prefix("dcms-chaos-").tempdir()?;
    let root = args
        .keep
        .clone()
        .unwrap_or_else(|| tmp.path().to_path_buf());
    std::fs::create_dir_all(&root)?;
    let data = root.join("data");
    let log = root.join("cluster.log");
    let mut cluster = LocalCluster::start_logged(
        &exe,
        Some(&data),
        &[
            "--sync".into(),
            "normal".into(),
            "--frontends".into(),
            args.frontends.to_string(),
        ],
        false,
        Some(&log),
    )
    .with_context(|| format!("starting the cluster (log: {})", log.display()))?;
    println!(
        "dcms chaos: cluster at {}, log {}",
        cluster.corbaloc,
        log.display()
    );

    let stop = Arc::new(AtomicBool::new(false));
    let acked = Arc::new(Mutex::new(Vec::<Acked>::new()));
    let maybe = Arc::new(Mutex::new(BTreeMap::<String, u64>::new()));
    let writers: Vec<_> = (0..args.clients)
        .map(|c| {
            let (stop, acked, maybe) = (stop.clone(), acked.clone(), maybe.clone());
            let opts = ClientOptions {
                ft: args.ft.options(),
                ..ClientOptions::default()
            };
            // Each writer holds the group reference starting at another
            // front end, so a kill hits some writers and not others.
            let mut addrs: Vec<_> = cluster.config.frontends.iter().map(|f| f.iiop).collect();
            let n = addrs.len();
            addrs.rotate_left(c % n);
            let client = ClinicClient::connect(&dcms_corba::group::group_corbaloc(&addrs), &opts)
                .map_err(|e| anyhow::anyhow!("connecting: {e}"));
            std::thread::spawn(move || -> anyhow::Result<()> {
                let client = client?;
                let manager = format!("{}{:04}", Clinic::ALL[c % 3].code(), c);
                let mut i = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    i += 1;
                    let last_name = format!("Chaos{c}x{i}");
                    // Doctors and nurses in turn: each kind has 90,000 IDs.
                    let created = if i % 2 == 0 {
                        client.create_d_record(
                            &manager,
                            "Ann",
                            &last_name,
                            "1 Rue Peel",
                            "514-555-0199",
                            "surgeon",
                            "mtl",
                        )
                    } else {
                        client.create_n_record(
                            &manager,
                            "Ann",
                            &last_name,
                            "senior",
                            "active",
                            "2024-02-29",
                        )
                    };
                    match created {
                        Ok(id) => acked.lock().expect("not poisoned").push(Acked {
                            id,
                            manager: manager.clone(),
                            last_name,
                        }),
                        Err(e) => {
                            let kind = match &e {
                                CallError::User(u) => u.name().to_string(),
                                CallError::System(s) => format!("{:?}/{:?}", s.kind(), s.completed),
                            };
                            *maybe.lock().expect("not poisoned").entry(kind).or_default() += 1;
                        }
                    }
                }
                Ok(())
            })
        })
        .collect();

    let start = Instant::now();
    let end = start + Duration::from_secs_f64(args.duration);
    let mut next_kill = (args.kill_leader_every > 0.0)
        .then(|| start + Duration::from_secs_f64(args.kill_leader_every));
    let mut next_pause = (args.pause_backup_every > 0.0)
        .then(|| start + Duration::from_secs_f64(args.pause_backup_every));
    let mut next_fe_kill = (args.kill_frontend_every > 0.0)
        .then(|| start + Duration::from_secs_f64(args.kill_frontend_every));
    let (mut kills, mut pauses, mut fe_kills) = (0, 0, 0usize);
    while Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
        let now = Instant::now();
        if next_kill.is_some_and(|t| now >= t) {
            next_kill = Some(now + Duration::from_secs_f64(args.kill_leader_every));
            if let Some(pid) = pid_with_role(&cluster, "leader") {
                signal(pid, libc::SIGKILL);
                kills += 1;
                println!(
                    "dcms chaos: {:>5.1} s  killed the leader (pid {pid})",
                    start.elapsed().as_secs_f64()
                );
            }
        }
        if next_fe_kill.is_some_and(|t| now >= t) {
            next_fe_kill = Some(now + Duration::from_secs_f64(args.kill_frontend_every));
            let frontends = live_with_role(&cluster, "frontend");
            if !frontends.is_empty() {
                let (name, pid) = &frontends[fe_kills % frontends.len()];
                signal(*pid, libc::SIGKILL);
                fe_kills += 1;
                println!(
                    "dcms chaos: {:>5.1} s  killed front end {name} (pid {pid})",
                    start.elapsed().as_secs_f64()
                );
            }
        }
        if next_pause.is_some_and(|t| now >= t) {
            next_pause = Some(now + Duration::from_secs_f64(args.pause_backup_every));
            if let Some(pid) = pid_with_role(&cluster, "backup") {
                signal(pid, libc::SIGSTOP);
                pauses += 1;
                println!(
                    "dcms chaos: {:>5.1} s  paused a backup (pid {pid}) for {} ms",
                    start.elapsed().as_secs_f64(),
                    args.pause_ms
                );
                std::thread::sleep(Duration::from_millis(args.pause_ms));
                signal(pid, libc::SIGCONT);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a writer panicked"))??;
    }
    let acked = std::mem::take(&mut *acked.lock().expect("not poisoned"));
    let maybe = std::mem::take(&mut *maybe.lock().expect("not poisoned"));
    let maybe_total: u64 = maybe.values().sum();
    println!("dcms chaos: {kills} leader kills, {fe_kills} front-end kills, {pauses} pauses; {} creates acknowledged, {maybe_total} failed {maybe:?}", acked.len());

    // The cluster must serve again, and every acknowledged create must be there.
    let checker = wait_for_service(&cluster.corbaloc, Duration::from_secs(30))?;
    let mut problems = Vec::new();
    let mut ids = HashSet::new();
    for a in &acked {
        if !ids.insert(a.id.clone()) {
            problems.push(format!("{} was returned for two creates", a.id));
        }
        match checker.get_record(&a.manager, &a.id) {
            Ok(r) if r.last_name == a.last_name && r.first_name == "Ann" => {}
            Ok(r) => problems.push(format!(
                "{} holds {:?}, not the acknowledged {:?}",
                a.id, r.last_name, a.last_name
            )),
            Err(e) => problems.push(format!("acknowledged {} is missing: {e}", a.id)),
        }
    }
    let counts = checker
        .get_record_counts("MTL0000")
        .map_err(|e| anyhow::anyhow!("counts: {e}"))?;
    let total: u64 = counts
        .split(", ")
        .filter_map(|p| p.split(' ').nth(1)?.parse::<u64>().ok())
        .sum();
    if total < acked.len() as u64 || total > acked.len() as u64 + maybe_total {
        problems.push(format!(
            "{total} records, but {} creates were acknowledged and {maybe_total} may have happened",
            acked.len()
        ));
    }
    // Let the backups take the last acknowledgements, then compare the stores.
    std::thread::sleep(Duration::from_millis(500));
    cluster.stop();
    let mut digests = Vec::new();
    for (i, r) in cluster.config.replicas.iter().enumerate() {
        let store = Store::open(cluster.config.replica_db(r.id), SyncMode::Normal)?;
        digests.push((r.id, store.last_applied(), store.digest()?.to_hex()));
        if i == 0 {
            // Each create has a last name of its own: one seen twice was
            // executed twice (a retry that was not recognised as one).
            let mut seen = HashSet::new();
            for record in store.records()? {
                let name = record.last_name().to_string();
                if name.starts_with("Chaos") && !seen.insert(name.clone()) {
                    problems.push(format!("the create of {name} was executed twice"));
                }
            }
        }
    }
    if digests.windows(2).any(|w| w[0].2 != w[1].2) {
        problems.push(format!("replica digests differ: {digests:?}"));
    }
    println!("dcms chaos: counts {counts}; replicas (id, position, digest): {digests:?}");
    if problems.is_empty() {
        println!("dcms chaos: OK — every acknowledged create present with its fields, none twice, digests equal");
        Ok(())
    } else {
        for p in problems.iter().take(20) {
            eprintln!("dcms chaos: VIOLATION: {p}");
        }
        // The log goes with the temporary folder: show what went wrong.
        if let Ok(text) = std::fs::read_to_string(&log) {
            let worrying: Vec<&str> = text
                .lines()
                .filter(|l| {
                    ["ERROR", "WARN", "panicked", "exited", "failed"]
                        .iter()
                        .any(|w| l.contains(w))
                })
                .collect();
            for l in &worrying[worrying.len().saturating_sub(40)..] {
                eprintln!("dcms chaos: log: {l}");
            }
        }
        anyhow::bail!("{} violations (log: {})", problems.len(), log.display())
    }
}

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a PID read from our own cluster's status files.
    unsafe {
        libc::kill(pid as i32, sig);
    }
}

/// The PID of a live process whose status says `role` (freshest first).
fn pid_with_role(cluster: &LocalCluster, role: &str) -> Option<u32> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_millis() as u64;
    read_all(&cluster.data_dir)
        .into_iter()
        .filter(|s| s.role == role && now.saturating_sub(s.updated_ms) < 1_000)
        .max_by_key(|s| (s.epoch, s.updated_ms))
        .map(|s| s.pid)
}

/// The (name, PID) of every live process whose status says `role`, by name.
fn live_with_role(cluster: &LocalCluster, role: &str) -> Vec<(String, u32)> {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64);
    let mut out: Vec<(String, u32)> = read_all(&cluster.data_dir)
        .into_iter()
        .filter(|s| s.role == role && now.saturating_sub(s.updated_ms) < 1_000)
        .map(|s| (s.name, s.pid))
        .collect();
    out.sort();
    out
}

/// A client once a create goes through again.
fn wait_for_service(corbaloc: &str, within: Duration) -> anyhow::Result<ClinicClient> {
    let deadline = Instant::now() + within;
    let mut last = String::new();
    while Instant::now() < deadline {
        if let Ok(c) = ClinicClient::connect(corbaloc, &ClientOptions::default()) {
            match c.get_record_counts("MTL0000") {
                Ok(_) => return Ok(c),
                Err(e) => last = e.to_string(),
            }
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    anyhow::bail!("the cluster did not serve again within {within:?}: {last}")
}
