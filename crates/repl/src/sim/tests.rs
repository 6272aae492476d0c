//! Simulator tests: many seeds, and the replay of one.
//!
//! `sim_many_seeds` runs seeds `0..DCMS_SIM_SEEDS` (default 2000) and, for
//! the first failing seed, prints the one-line replay command:
//!
//! ```text
//! DCMS_SIM_SEED=1234 cargo test -p dcms-repl sim_replay -- --nocapture
//! ```
//!
//! `sim_replay` runs the seed in `DCMS_SIM_SEED` (default 42, so it is a real
//! test when the variable is unset) and prints its report;
//! `DCMS_SIM_REQUESTS` overrides the seed's workload size (as the long-run
//! test does), and `DCMS_SIM_TRACE=1` prints faults, view events and meta
//! writes as they happen. Three seeds in four run with failover (crashes
//! of any replica, wipes, pauses, group partitions, front-end restarts). `DCMS_SIM_SEEDS` / `DCMS_SIM_FIRST_SEED` choose the seeds of
//! `sim_many_seeds`.

use super::{replay_command, run, run_with, Coverage};
use std::time::Instant;

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().map(|v| {
        v.trim()
            .parse()
            .unwrap_or_else(|_| panic!("{name} must be a number, got {v:?}"))
    })
}

#[test]
fn sim_many_seeds() {
    let seeds = env_u64("DCMS_SIM_SEEDS").unwrap_or(2000);
    let first = env_u64("DCMS_SIM_FIRST_SEED").unwrap_or(0);
    let started = Instant::now();
    let mut coverage = Coverage::default();
    let mut steps = 0;
    let mut replayed = 0;
    for seed in first..first + seeds {
        let result = std::panic::catch_unwind(|| run(seed));
        match result {
            Ok(report) => {
                coverage.add(&report.coverage);
                steps += report.steps;
                replayed += report.net.replayed;
            }
            Err(_) => {
                eprintln!("simulation failed for seed {seed}; replay with:");
                eprintln!("{}", replay_command(seed));
                panic!(
                    "simulation failed for seed {seed}: {}",
                    replay_command(seed)
                );
            }
        }
    }
    eprintln!(
        "{seeds} seeds passed in {:.1} s ({steps} steps)\n{coverage:#?}",
        started.elapsed().as_secs_f64()
    );
    if seeds >= 1000 {
        // Every recovery path must have run somewhere, or the simulator is
        // not testing what it claims to.
        let c = &coverage;
        for (path, count) in [
            ("request NACKs", c.request_nacks),
            ("log NACKs", c.log_nacks),
            ("entries resent", c.entries_resent),
            ("requests held back", c.requests_held_back),
            ("entries held back", c.entries_held_back),
            ("backpressure drops", c.backpressure_drops),
            ("duplicate requests", c.duplicate_requests),
            ("replies resent", c.replies_resent),
            ("duplicate entries", c.duplicate_entries),
            ("refused datagrams", c.decode_errors),
            ("fragmented messages", c.fragmented),
            ("retransmissions", c.retransmitted),
            ("NACK resends", c.nack_resends),
            ("outcome unknown", c.unknown_outcomes),
            ("late replies", c.late_replies),
            ("replica restarts", c.backup_restarts),
            ("elections", c.elections),
            ("new leaders", c.new_leaders),
            ("snapshots installed", c.snapshots_installed),
            ("members removed", c.members_removed),
            ("members added", c.members_added),
            ("leader crashes", c.leader_crashes),
            ("wiped stores", c.wipes),
            ("pauses", c.pauses),
            ("front-end restarts", c.frontend_restarts),
            (
                "front ends following a new leader",
                c.frontend_leader_changes,
            ),
            ("partitions", c.group_cuts),
            (
                "old streams' datagrams refused at a restarted front end",
                c.misaddressed,
            ),
            ("replays refused", c.replays_refused),
            ("front-end keys refused for replica messages", c.forbidden),
            ("streams forgotten", c.streams_forgotten),
            ("reads answered without the log", c.reads_answered),
            ("silent streams' replies dropped", c.replies_dropped),
            ("FT retries answered from the retained reply", c.ft_retries),
            (
                "FT retries through another front end",
                c.ft_retried_elsewhere,
            ),
            ("FT requests refused as expired", c.ft_expired),
            ("FT requests reported not executed", c.ft_not_executed),
            ("replayed datagrams", replayed),
        ] {
            assert!(count > 0, "no run exercised {path}");
        }
    }
}

#[test]
fn sim_replay() {
    let seed = env_u64("DCMS_SIM_SEED").unwrap_or(42);
    let report = run_with(seed, env_u64("DCMS_SIM_REQUESTS"));
    println!("{report}");
    assert_eq!(report.seed, seed);
    assert!(report.requests >= 20, "a run submits a real workload");
}

#[test]
fn a_seed_replays_identically() {
    let a = run(7);
    let b = run(7);
    assert_eq!(a.steps, b.steps);
    assert_eq!(a.virtual_ms, b.virtual_ms);
    assert_eq!(a.net.sent, b.net.sent);
}

#[test]
fn sim_long_workloads() {
    // Long runs wrap the reply caches and windows many times over.
    for seed in [3, 11, 19] {
        let result = std::panic::catch_unwind(|| run_with(seed, Some(3000)));
        if result.is_err() {
            panic!(
                "long simulation failed for seed {seed}; replay with: DCMS_SIM_SEED={seed} DCMS_SIM_REQUESTS=3000 cargo test -p dcms-repl sim_replay -- --nocapture"
            );
        }
    }
}
