//! `dcms status`: every process of a cluster — role, PID, epoch, leader,
//! group, positions, digest, and each front end's IIOP address and
//! transport (plain IIOP, or IIOP over TLS with client certificates;
//! `transport` in `--json`, and a last `transport:` line) — read from
//! the status files the processes write in the data folder
//! (`replica-<id>`, `frontend-<id>`). A process whose PID is gone or whose
//! file is stale is shown as down.

use dcms_node::status::{read_all, ProcessStatus, TRANSPORT_PLAIN, TRANSPORT_TLS};
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

/// A status older than this means the process is not running its loop.
const STALE_MS: u64 = 2_000;

#[derive(clap::Args, Debug)]
pub struct StatusArgs {
    /// The cluster's data folder.
    #[arg(long, env = "DCMS_DATA_DIR", default_value = "dcms-data")]
    data_dir: PathBuf,
    /// One JSON document instead of a table.
    #[arg(long)]
    json: bool,
}

/// What clients speak to the front ends that are up: `IIOP over TLS ...`,
/// `plain IIOP`, both (a cluster restarted while some front end was not),
/// or none up.
fn transport_line(rows: &[(ProcessStatus, bool, u64)]) -> String {
    let up: Vec<&str> = rows
        .iter()
        .filter(|(s, up, _)| *up && s.iiop.is_some())
        .map(|(s, _, _)| s.transport.as_deref().unwrap_or(TRANSPORT_PLAIN))
        .collect();
    let tls = up.iter().filter(|t| **t == TRANSPORT_TLS).count();
    match (tls, up.len()) {
        (_, 0) => "no front end is up".into(),
        (0, _) => "plain IIOP (no TLS)".into(),
        (t, n) if t == n => "IIOP over TLS, client certificates required (plain IIOP off)".into(),
        (t, n) => format!("mixed: {t} of {n} front ends over TLS, the others plain IIOP"),
    }
}

fn alive(pid: u32) -> bool {
    std::path::Path::new(&format!("/proc/{pid}")).exists()
        && !std::fs::read_to_string(format!("/proc/{pid}/status"))
            .map(|s| {
                s.lines()
                    .any(|l| l.starts_with("State:") && l.contains('Z'))
            })
            .unwrap_or(true)
}

pub fn run(args: StatusArgs) -> anyhow::Result<()> {
    let all = read_all(&args.data_dir);
    anyhow::ensure!(
        !all.is_empty(),
        "no status files under {}: is a cluster running there (dcms up --data-dir ...)?",
        args.data_dir.display()
    );
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_millis() as u64;
    let rows: Vec<(ProcessStatus, bool, u64)> = all
        .into_iter()
        .map(|s| {
            let age = now.saturating_sub(s.updated_ms);
            let up = alive(s.pid) && age < STALE_MS;
            (s, up, age)
        })
        .collect();
    if args.json {
        let list: Vec<_> = rows
            .iter()
            .map(|(s, up, age)| {
                let mut v = serde_json::to_value(s).expect("status serializes");
                v["up"] = (*up).into();
                v["status_age_ms"] = (*age).into();
                if !up {
                    v["role"] = "down".into();
                }
                v
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&list)?);
        return Ok(());
    }
    println!(
        "{:<13} {:<9} {:>7} {:>5} {:>6} {:<9} {:>9} {:>9} {:>9} {:<10} HEARD FROM (replica:ms ago, ! suspected) / IIOP",
        "PROCESS",
        "ROLE",
        "PID",
        "EPOCH",
        "LEADER",
        "GROUP",
        "APPLIED",
        "DURABLE",
        "COMMITTED",
        "DIGEST"
    );
    for (s, up, _) in &rows {
        let group = s
            .group
            .iter()
            .map(u64::to_string)
            .collect::<Vec<_>>()
            .join(",");
        let mut heard = match &s.iiop {
            Some(iiop) if s.transport.as_deref() == Some(TRANSPORT_TLS) => {
                format!("ssliop {iiop} (TLS, client certificates)")
            }
            Some(iiop) => format!("iiop {iiop}"),
            None => s
                .peers
                .iter()
                .filter(|p| p.replica && p.node != s.id)
                .map(|p| {
                    format!(
                        "{}:{}{}",
                        p.node,
                        p.heard_ms_ago,
                        if p.suspected { "!" } else { "" }
                    )
                })
                .collect::<Vec<_>>()
                .join(" "),
        };
        if let Some(m) = &s.metrics {
            heard.push_str(&format!(" metrics http://{m}/metrics"));
        }
        println!(
            "{:<13} {:<9} {:>7} {:>5} {:>6} {:<9} {:>9} {:>9} {:>9} {:<10} {}",
            s.name,
            if *up { s.role.as_str() } else { "down" },
            s.pid,
            s.epoch,
            s.leader.map(|l| l.to_string()).unwrap_or_default(),
            group,
            s.applied,
            s.durable,
            s.committed
                .map(|c| c.to_string())
                .unwrap_or_else(|| "-".into()),
            s.digest.get(..8).unwrap_or("-"),
            heard
        );
    }
    println!("transport: {}", transport_line(&rows));
    Ok(())
}
