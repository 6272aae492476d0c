//! The load generator of `dcms bench`: N client threads, each with its own
//! CORBA connection, calling the DCMS interface as fast as replies come
//! back; latencies into HDR histograms, merged at the end.

use crate::cmd::common::FaultArgs;
use anyhow::Context;
use dcms_corba::{CallError, ClientOptions, ClinicClient};
use dcms_core::workload::{Mix, Workload};
use dcms_core::{Clinic, NurseFields};
use hdrhistogram::Histogram;
use indicatif::{ProgressBar, ProgressStyle};
use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum OpMix {
    /// Only createDRecord (the comparison with etcd puts).
    Create,
    /// createDRecord and createNRecord in turn (twice the ID space: 90,000
    /// per kind), for long runs.
    Creates,
    /// create 30%, edit 20%, transfer 10%, counts 20%, get 20%.
    Mixed,
    /// Reads only, after each client created 10 records: counts 50%, get
    /// 40%, list 10% (half `listRecords`, half a `listRecordsPage` of 100)
    /// (they go outside the log: neither the log nor the replies grow).
    Reads,
}

#[derive(clap::Args, Debug)]
pub struct LoadArgs {
    #[command(flatten)]
    ft: crate::cmd::common::FtArgs,
    /// The front end: a corbaloc, corbaname or IOR string.
    #[arg(long, conflicts_with_all = ["ior_file", "spawn"])]
    url: Option<String>,
    /// The front end's IOR file.
    #[arg(long, conflicts_with = "spawn")]
    ior_file: Option<std::path::PathBuf>,
    /// Start a cluster of our own for the run (dcms up in a temporary folder).
    #[arg(long)]
    spawn: bool,
    /// Replicas of the spawned cluster.
    #[arg(long, default_value_t = 3, requires = "spawn")]
    replicas: u64,
    /// Front ends of the spawned cluster (clients use the group reference,
    /// which names them all).
    #[arg(long, default_value_t = 2, requires = "spawn")]
    frontends: usize,
    /// Spread the clients over the spawned cluster's front ends (each holds
    /// the group reference starting at another one) instead of all using
    /// the published reference (the first front end, the others standing by).
    #[arg(long, requires = "spawn")]
    spread: bool,
    /// SQLite durability of the spawned cluster.
    #[arg(long, default_value = "full", requires = "spawn")]
    sync: String,
    #[command(flatten)]
    faults: FaultArgs,
    /// Concurrent clients (threads, each with its own connection).
    #[arg(long, default_value_t = 32)]
    clients: usize,
    /// Operations in all (default 10,000 unless --duration is given).
    #[arg(long)]
    ops: Option<u64>,
    /// Run for this many seconds instead of a count.
    #[arg(long, conflicts_with = "ops")]
    duration: Option<f64>,
    #[arg(long, value_enum, default_value = "create")]
    mix: OpMix,
    /// One JSON line instead of text.
    #[arg(long)]
    json: bool,
    /// Kill the current leader with SIGKILL every SECS seconds (with --spawn;
    /// `dcms up` restarts it) and report each failover gap: the time from the
    /// kill to the first acknowledged write issued after it.
    #[arg(long, requires_all = ["spawn", "duration"])]
    kill_leader_every: Option<f64>,
    /// Kill a front end with SIGKILL every SECS seconds, each in turn (with
    /// --spawn; `dcms up` restarts it), and report the gap each client saw:
    /// from its last answer before the kill to its first after. At the end,
    /// check the replicas: every acknowledged create is there with its
    /// fields, there are no more records than creates that may have
    /// executed, and the digests are equal.
    #[arg(long, requires_all = ["spawn", "duration"])]
    kill_frontend_every: Option<f64>,
}

/// What one client thread measured.
struct ClientResult {
    latency: Histogram<u64>,
    /// (start, end) of every successful operation, for failover gaps.
    acknowledged: Vec<(Instant, Instant)>,
    ok: u64,
    errors: BTreeMap<String, u64>,
    created: Vec<String>,
    /// Acknowledged creates: (ID, manager, last name, first name).
    created_fields: Vec<(String, String, String, String)>,
    /// Creates whose outcome is unknown (they may have executed).
    creates_unknown: u64,
    /// When the client's last operation ended (or it found nothing to do).
    finished: Instant,
}

pub fn run(args: LoadArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.clients > 0, "--clients must be at least 1");
    let mut spawned = if args.spawn {
        eprintln!(
            "dcms bench: starting a cluster of {} replicas",
            args.replicas
        );
        Some(super::spawn::start(
            args.replicas,
            args.frontends,
            &args.sync,
            &args.faults,
        )?)
    } else {
        None
    };
    let reference = match (&args.url, &args.ior_file, &spawned) {
        (Some(url), _, _) => url.clone(),
        (_, Some(path), _) => std::fs::read_to_string(path)
            .with_context(|| format!("reading the IOR file {}", path.display()))?
            .trim()
            .to_string(),
        (_, _, Some(s)) => s.corbaloc.clone(),
        _ => anyhow::bail!("say where the front end is: --url, --ior-file, or --spawn"),
    };
    let total = args.ops.unwrap_or(if args.duration.is_some() {
        u64::MAX
    } else {
        10_000
    });
    let until = args
        .duration
        .map(|s| Instant::now() + Duration::from_secs_f64(s));
    let issued = Arc::new(AtomicU64::new(0));
    let done = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let results = Arc::new(Mutex::new(Vec::new()));

    let clients: Vec<ClinicClient> = (0..args.clients)
        .map(|i| {
            // One sequential caller per connection: one I/O thread is enough.
            let opts = ClientOptions {
                io_threads: 1,
                ft: args.ft.options(),
                ..ClientOptions::default()
            };
            // With --spread, a spawned cluster's clients spread over its
            // front ends: each holds the group reference starting at
            // another one. Without, all hold the published reference, as
            // CORBA clients given one reference do: the first front end
            // takes the load, the others stand by.
            let reference = match &spawned {
                Some(cluster) if args.spread => {
                    let mut addrs: Vec<_> =
                        cluster.config.frontends.iter().map(|f| f.iiop).collect();
                    let n = addrs.len();
                    addrs.rotate_left(i % n);
                    dcms_corba::group::group_corbaloc(&addrs)
                }
                _ => reference.clone(),
            };
            ClinicClient::connect(&reference, &opts)
        })
        .collect::<Result<_, _>>()
        .map_err(|e| anyhow::anyhow!("connecting to {reference}: {e}"))?;
    // Clones share each client's retry counter.
    let clients_retries = clients.clone();
    let bar = match args.duration {
        Some(s) => ProgressBar::new((s * 10.0) as u64),
        None => ProgressBar::new(total),
    };
    bar.set_style(
        ProgressStyle::with_template("{elapsed:>4} {bar:40} {msg}").expect("valid template"),
    );
    let cpu_before = spawned.as_ref().map(super::cpu::sample);
    let start = Instant::now();
    let threads: Vec<_> = clients
        .into_iter()
        .enumerate()
        .map(|(i, client)| {
            let (issued, done, stop, results) =
                (issued.clone(), done.clone(), stop.clone(), results.clone());
            let mix = args.mix;
            std::thread::spawn(move || {
                let r = client_loop(i, &client, mix, total, until, &issued, &done, &stop);
                results.lock().expect("not poisoned").push(r);
            })
        })
        .collect();
    // A killer thread per kind of victim; none in the last stretch, so
    // that every kill is followed by answers that measure its gap.
    let killer = |every: Option<f64>, flag: &str, victim: Victim| {
        let (Some(every), Some(cluster)) = (every, &spawned) else {
            return Ok((Arc::default(), None));
        };
        anyhow::ensure!(every > 0.0, "{flag} must be positive");
        let kills: Arc<Mutex<Vec<Instant>>> = Arc::default();
        let (stop, k) = (stop.clone(), kills.clone());
        let data_dir = cluster.data_dir.clone();
        let last_kill = until.map(|u| u - Duration::from_secs_f64((every / 2.0).max(1.0)));
        let thread =
            std::thread::spawn(move || kill_every(&data_dir, victim, every, last_kill, &stop, &k));
        Ok((kills, Some(thread)))
    };
    let (kills, leader_killer) = killer(
        args.kill_leader_every,
        "--kill-leader-every",
        Victim::Leader,
    )?;
    let (fe_kills, fe_killer) = killer(
        args.kill_frontend_every,
        "--kill-frontend-every",
        Victim::FrontEnd,
    )?;
    while threads.iter().any(|t| !t.is_finished()) {
        std::thread::sleep(Duration::from_millis(100));
        let n = done.load(Ordering::Relaxed);
        let rate = n as f64 / start.elapsed().as_secs_f64();
        bar.set_message(format!("{n} ops, {rate:.0} ops/s"));
        match args.duration {
            Some(_) => bar.set_position((start.elapsed().as_secs_f64() * 10.0) as u64),
            None => bar.set_position(n),
        }
    }
    bar.finish_and_clear();
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        let _ = t.join();
    }
    let cpu_after = spawned.as_ref().map(super::cpu::sample);
    for k in [leader_killer, fe_killer].into_iter().flatten() {
        let _ = k.join();
    }
    let results = std::mem::take(&mut *results.lock().expect("not poisoned"));
    let retries: u64 = clients_retries.iter().map(|c| c.retries()).sum();
    // From the start to the end of the last operation: not to when the
    // polling loop above noticed (up to 100 ms later).
    let elapsed = results
        .iter()
        .map(|r| r.finished)
        .max()
        .unwrap_or(start)
        .saturating_duration_since(start)
        .as_secs_f64()
        .max(1e-6);
    let mut latency = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut ok = 0;
    let mut errors: BTreeMap<String, u64> = BTreeMap::new();
    let mut created = 0usize;
    let mut ids = HashSet::new();
    let mut duplicates = 0usize;
    let mut acknowledged: Vec<(Instant, Instant)> = Vec::new();
    let mut per_client: Vec<Vec<(Instant, Instant)>> = Vec::new();
    let mut created_fields = Vec::new();
    let mut creates_unknown = 0;
    for r in results {
        acknowledged.extend(&r.acknowledged);
        per_client.push(r.acknowledged.clone());
        created_fields.extend(r.created_fields);
        creates_unknown += r.creates_unknown;
        latency.add(&r.latency)?;
        ok += r.ok;
        for (k, v) in r.errors {
            *errors.entry(k).or_default() += v;
        }
        for id in r.created {
            created += 1;
            if !ids.insert(id) {
                duplicates += 1;
            }
        }
    }
    let ops = ok + errors.values().sum::<u64>();
    let cpu = match (&cpu_before, &cpu_after) {
        (Some(b), Some(a)) => super::cpu::per_op(b, a, ok),
        _ => BTreeMap::new(),
    };
    let kills = kills.lock().expect("not poisoned").clone();
    let gaps = failover_gaps(&kills, &acknowledged);
    let fe_kills = fe_kills.lock().expect("not poisoned").clone();
    let client_gaps = client_gaps(&fe_kills, &per_client);
    let client_gaps_known: Vec<Option<Duration>> = client_gaps.iter().copied().map(Some).collect();
    // With front ends killed, check what the replicas hold.
    let verdict = match (&mut spawned, fe_kills.is_empty()) {
        (Some(cluster), false) => Some(verify_stores(cluster, &created_fields, creates_unknown)?),
        _ => None,
    };
    let q = |p: f64| latency.value_at_quantile(p);
    // The same fields as the PostgreSQL and etcd harnesses' lines (system,
    // clients, ops, ops_per_sec, p50_us, p99_us, p999_us), and more.
    let summary = serde_json::json!({
        "system": "dcms",
        "bench": "load",
        "mix": format!("{:?}", args.mix).to_lowercase(),
        "clients": args.clients,
        "replicas": spawned.as_ref().map(|s| s.config.replicas.len()),
        "ops": ops,
        "ok": ok,
        "errors": errors,
        "seconds": elapsed,
        // Operations that succeeded, as pgbench's tps and etcd-load count;
        // `ops` counts every attempt.
        "ops_per_sec": ok as f64 / elapsed,
        "p50_us": q(0.5),
        "p99_us": q(0.99),
        "p999_us": q(0.999),
        "max_us": latency.max(),
        "created": created,
        "duplicate_ids": duplicates,
        "kills": kills.len(),
        "failover_gaps_ms": gaps.iter().map(|g| g.map(|d| d.as_secs_f64() * 1000.0)).collect::<Vec<_>>(),
        "failover_ms": gap_summary(&gaps),
        "frontend_kills": fe_kills.len(),
        "client_gaps_ms": gap_summary(&client_gaps_known),
        "client_gap_samples": client_gaps.len(),
        "ft_retries": retries,
        "cpu_us_per_op": cpu,
        "stores": verdict.as_ref().map(|v| v.summary.clone()),
    });
    if args.json {
        println!("{summary}");
    } else {
        println!(
            "{ops} ops in {elapsed:.2} s from {} clients: {:.0} ops/s done; latency p50 {:.2} ms, p99 {:.2} ms, p999 {:.2} ms, max {:.2} ms",
            args.clients,
            ok as f64 / elapsed,
            q(0.5) as f64 / 1000.0,
            q(0.99) as f64 / 1000.0,
            q(0.999) as f64 / 1000.0,
            latency.max() as f64 / 1000.0
        );
        println!("ok {ok}, created {created} (duplicate IDs: {duplicates}), errors {errors:?}");
        if !cpu.is_empty() {
            let each: Vec<String> = cpu.iter().map(|(n, us)| format!("{n} {us:.1}")).collect();
            println!(
                "CPU per operation (µs): {}; all {:.1}",
                each.join(", "),
                cpu.values().sum::<f64>()
            );
        }
        if !kills.is_empty() {
            println!(
                "leader killed {} times; failover gaps (ms): {}",
                kills.len(),
                gap_summary(&gaps)
            );
        }
        if !fe_kills.is_empty() {
            println!(
                "front end killed {} times; gap each client saw (ms, {} samples): {}; FT retries {retries}",
                fe_kills.len(),
                client_gaps.len(),
                gap_summary(&client_gaps_known)
            );
        }
        if let Some(v) = &verdict {
            println!("stores: {}", v.summary);
        }
    }
    if let Some(v) = &verdict {
        anyhow::ensure!(
            v.problems.is_empty(),
            "{} problems in the stores, first: {}",
            v.problems.len(),
            v.problems.join("; ").chars().take(2000).collect::<String>()
        );
    }
    anyhow::ensure!(
        gaps.iter().all(Option::is_some),
        "after a leader kill no write was ever acknowledged again"
    );
    anyhow::ensure!(
        duplicates == 0,
        "{duplicates} record IDs were returned twice"
    );
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn client_loop(
    index: usize,
    client: &ClinicClient,
    mix: OpMix,
    total: u64,
    until: Option<Instant>,
    issued: &AtomicU64,
    done: &AtomicU64,
    stop: &AtomicBool,
) -> ClientResult {
    let mut r = ClientResult {
        latency: Histogram::new_with_bounds(1, 60_000_000, 3).expect("valid bounds"),
        acknowledged: Vec::new(),
        ok: 0,
        errors: BTreeMap::new(),
        created: Vec::new(),
        created_fields: Vec::new(),
        creates_unknown: 0,
        finished: Instant::now(),
    };
    let mut workload = Workload::new(index as u64 + 1, Mix::CreatesOnly);
    // Records this client created, with the clinic each is in now.
    let mut mine: Vec<(String, Clinic)> = Vec::new();
    let manager = |c: Clinic| format!("{}{:04}", c.code(), index % 10_000);
    let mut pick = 0u64;
    loop {
        if stop.load(Ordering::Relaxed) || until.is_some_and(|u| Instant::now() >= u) {
            break;
        }
        if issued.fetch_add(1, Ordering::Relaxed) >= total {
            break;
        }
        pick = pick
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let roll = (pick >> 33) % 100;
        let create = match mix {
            OpMix::Mixed => mine.is_empty() || roll < 30,
            OpMix::Reads => mine.len() < 10,
            OpMix::Create | OpMix::Creates => true,
        };
        let t = Instant::now();
        let mut fields: Option<(String, String, String)> = None;
        let outcome: Result<Option<(String, Clinic)>, CallError> = if create {
            let (_, doctor) = workload.doctor();
            let clinic = Clinic::ALL[index % 3];
            let m = manager(clinic);
            fields = Some((
                m.clone(),
                doctor.last_name.clone(),
                doctor.first_name.clone(),
            ));
            let id = if mix == OpMix::Creates && pick % 2 == 1 {
                // A nurse with the doctor's names.
                let nurse = NurseFields {
                    first_name: doctor.first_name,
                    last_name: doctor.last_name,
                    designation: "senior".into(),
                    status: "active".into(),
                    status_date: "2024-02-29".into(),
                };
                client.create_nurse(&m, &nurse)
            } else {
                client.create_doctor(&m, &doctor)
            };
            id.map(|id| Some((id, clinic)))
        } else {
            let k = (pick >> 17) as usize % mine.len();
            let (id, clinic) = mine[k].clone();
            let roll = match mix {
                // Reads only, as the arms below: counts 50%, get 40%,
                // list 10%.
                OpMix::Reads => match roll {
                    0..=49 => 60,
                    50..=89 => 80,
                    _ => 100,
                },
                _ => roll,
            };
            match roll {
                // Lists: whole (listRecords) and first pages of 100
                // (listRecordsPage) in turn.
                100 if pick % 2 == 0 => client.list_records(&manager(clinic), "").map(|_| None),
                100 => client
                    .list_records_page(&manager(clinic), "", "", 100)
                    .map(|_| None),
                30..=49 => client
                    .edit_record(&manager(clinic), &id, "phone", "514-555-0000")
                    .map(|_| None),
                50..=59 => {
                    let to = Clinic::ALL[(clinic.index() + 1) % 3];
                    let r = client.transfer_record(&manager(clinic), &id, to.code());
                    if r.is_ok() {
                        mine[k].1 = to;
                    }
                    r.map(|_| None)
                }
                60..=79 => client.get_record_counts(&manager(clinic)).map(|_| None),
                _ => client.get_record(&manager(clinic), &id).map(|_| None),
            }
        };
        let micros = t.elapsed().as_micros() as u64;
        done.fetch_add(1, Ordering::Relaxed);
        match outcome {
            Ok(created) => {
                let _ = r.latency.record(micros.max(1));
                r.acknowledged.push((t, t + Duration::from_micros(micros)));
                r.ok += 1;
                if let Some((id, clinic)) = created {
                    r.created.push(id.clone());
                    if let Some((m, last, first)) = fields {
                        r.created_fields.push((id.clone(), m, last, first));
                    }
                    mine.push((id, clinic));
                }
            }
            Err(e) => {
                if fields.is_some() && e.as_system().is_some() {
                    r.creates_unknown += 1;
                }
                let key = match &e {
                    CallError::User(u) => u.name().to_string(),
                    CallError::System(s) => format!("{:?}", s.kind()),
                };
                *r.errors.entry(key).or_default() += 1;
            }
        }
    }
    r.finished = Instant::now();
    r
}

/// Which process a killer thread kills.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Victim {
    /// The leader the freshest status files name.
    Leader,
    /// A live front end, each in turn (by name).
    FrontEnd,
}

/// Every `every` seconds, SIGKILLs a `victim` named by the status files,
/// recording when.
fn kill_every(
    data_dir: &std::path::Path,
    victim: Victim,
    every: f64,
    last_kill: Option<Instant>,
    stop: &AtomicBool,
    kills: &Mutex<Vec<Instant>>,
) {
    let period = Duration::from_secs_f64(every);
    let mut next = Instant::now() + period;
    let mut turn = 0usize;
    while !stop.load(Ordering::Relaxed) && last_kill.is_none_or(|l| next <= l) {
        if Instant::now() < next {
            std::thread::sleep(Duration::from_millis(5));
            continue;
        }
        next += period;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let live = dcms_node::status::read_all(data_dir)
            .into_iter()
            .filter(|s| now_ms.saturating_sub(s.updated_ms) < 1_000);
        let target = match victim {
            // The freshest leader claim wins (an old leader's file may linger).
            Victim::Leader => live
                .filter(|s| s.role == "leader")
                .max_by_key(|s| (s.epoch, s.updated_ms)),
            Victim::FrontEnd => {
                let mut fes: Vec<_> = live.filter(|s| s.role == "frontend").collect();
                fes.sort_by(|a, b| a.name.cmp(&b.name));
                turn += 1;
                (!fes.is_empty()).then(|| fes.swap_remove((turn - 1) % fes.len()))
            }
        };
        let Some(target) = target else {
            eprintln!("dcms bench: no live {victim:?} to kill");
            continue;
        };
        // SAFETY: kill(2) with a PID read from our own cluster's status file.
        let rc = unsafe { libc::kill(target.pid as i32, libc::SIGKILL) };
        if rc == 0 {
            kills.lock().expect("not poisoned").push(Instant::now());
            eprintln!(
                "dcms bench: killed {} (pid {}, epoch {})",
                target.name, target.pid, target.epoch
            );
        }
    }
}

/// For each kill and each client with an answer after it, the gap that
/// client saw: from its last answer before the kill (or the kill, if none)
/// to its first answer after it.
fn client_gaps(kills: &[Instant], per_client: &[Vec<(Instant, Instant)>]) -> Vec<Duration> {
    let mut out = Vec::new();
    for &k in kills {
        for acks in per_client {
            let before = acks.iter().map(|a| a.1).filter(|&e| e <= k).max();
            let after = acks.iter().map(|a| a.1).filter(|&e| e > k).min();
            if let Some(after) = after {
                out.push(after - before.unwrap_or(k));
            }
        }
    }
    out
}

/// What the replicas' stores say after a run.
struct StoreVerdict {
    summary: String,
    problems: Vec<String>,
}

/// Stops the cluster, then checks its stores: equal digests, every
/// acknowledged create present with the names sent, and no more records
/// than creates that may have executed (a create executed twice would be
/// one more).
fn verify_stores(
    cluster: &mut dcms_node::local::LocalCluster,
    created: &[(String, String, String, String)],
    unknown: u64,
) -> anyhow::Result<StoreVerdict> {
    // Let the backups take the last acknowledgements first.
    std::thread::sleep(Duration::from_millis(500));
    cluster.stop();
    let mut problems = Vec::new();
    let mut digests = Vec::new();
    let mut records = None;
    for r in &cluster.config.replicas {
        let store =
            dcms_core::Store::open(cluster.config.replica_db(r.id), dcms_core::SyncMode::Normal)?;
        digests.push(store.digest()?.to_hex());
        if records.is_none() {
            records = Some(store.records()?);
        }
    }
    if digests.windows(2).any(|w| w[0] != w[1]) {
        problems.push(format!("replica digests differ: {digests:?}"));
    }
    let records = records.unwrap_or_default();
    let by_id: BTreeMap<String, &dcms_core::Record> =
        records.iter().map(|r| (r.id.to_string(), r)).collect();
    for (id, _, last, first) in created {
        match by_id.get(id) {
            Some(r) if r.last_name() == last.trim() && r.first_name() == first.trim() => {}
            Some(r) => problems.push(format!(
                "{id} holds {} {}, not the acknowledged {first} {last}",
                r.first_name(),
                r.last_name()
            )),
            None => problems.push(format!("acknowledged {id} is missing")),
        }
    }
    let total = records.len() as u64;
    let acked = created.len() as u64;
    if total < acked || total > acked + unknown {
        problems.push(format!(
            "{total} records, but {acked} creates were acknowledged and {unknown} may have executed"
        ));
    }
    Ok(StoreVerdict {
        summary: format!(
            "{total} records for {acked} acknowledged creates ({unknown} unknown), digests {}",
            if digests.windows(2).all(|w| w[0] == w[1]) {
                "equal"
            } else {
                "DIFFER"
            }
        ),
        problems,
    })
}

/// For each kill, the time until the first write issued after it was
/// acknowledged (`None`: never).
fn failover_gaps(kills: &[Instant], acknowledged: &[(Instant, Instant)]) -> Vec<Option<Duration>> {
    kills
        .iter()
        .map(|&k| {
            acknowledged
                .iter()
                .filter(|(start, _)| *start >= k)
                .map(|(_, end)| *end - k)
                .min()
        })
        .collect()
}

/// `min / median / max` of the gaps in milliseconds.
fn gap_summary(gaps: &[Option<Duration>]) -> String {
    let mut ms: Vec<f64> = gaps
        .iter()
        .flatten()
        .map(|d| d.as_secs_f64() * 1000.0)
        .collect();
    if ms.is_empty() {
        return "none".into();
    }
    ms.sort_by(f64::total_cmp);
    format!(
        "min {:.0}, median {:.0}, max {:.0}",
        ms[0],
        ms[ms.len() / 2],
        ms[ms.len() - 1]
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_runs_from_the_kill_to_the_first_write_issued_after_it() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let acknowledged = [
            (at(90), at(120)),  // issued before the kill: does not count
            (at(150), at(400)), // the first issued after, but answered late
            (at(300), at(310)), // issued later, answered first: the gap ends here
            (at(900), at(905)),
        ];
        let gaps = failover_gaps(&[at(100), at(800), at(1000)], &acknowledged);
        assert_eq!(
            gaps,
            vec![
                Some(Duration::from_millis(210)),
                Some(Duration::from_millis(105)),
                None
            ]
        );
        assert_eq!(gap_summary(&gaps), "min 105, median 210, max 210");
        assert_eq!(gap_summary(&[]), "none");
    }

    #[test]
    fn a_clients_gap_runs_from_its_last_answer_before_the_kill_to_its_first_after() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let on_the_killed_one = vec![(at(90), at(95)), (at(96), at(260)), (at(261), at(263))];
        let on_the_other = vec![(at(98), at(99)), (at(99), at(102))];
        let silent_after = vec![(at(10), at(20))];
        let gaps = client_gaps(&[at(100)], &[on_the_killed_one, on_the_other, silent_after]);
        assert_eq!(
            gaps,
            vec![Duration::from_millis(165), Duration::from_millis(3)],
            "a client with no answer after the kill gives no sample"
        );
    }
}
