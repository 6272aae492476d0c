//! CPU time of the processes of a spawned benchmark (every front end and
//! replica, and the benchmark's own clients), read from `/proc/PID/stat`
//! before and after the load: what each process costs per operation.

use dcms_node::local::LocalCluster;
use std::collections::BTreeMap;

/// User plus system CPU time so far, in µs, per process name
/// (`frontend-100`, `replica-1`, ..., `bench` for this process).
pub type CpuTimes = BTreeMap<String, u64>;

/// CPU time of every process of `cluster` (by the PIDs in its status files)
/// and of this one. A process whose `/proc` entry cannot be read is left
/// out.
pub fn sample(cluster: &LocalCluster) -> CpuTimes {
    let mut names: Vec<String> = cluster
        .config
        .frontends
        .iter()
        .map(|f| format!("frontend-{}", f.id))
        .collect();
    names.extend(
        cluster
            .config
            .replicas
            .iter()
            .map(|r| format!("replica-{}", r.id)),
    );
    let mut times: CpuTimes = names
        .into_iter()
        .filter_map(|name| {
            let pid = cluster.pid_of(&name)?;
            Some((name, cpu_us(pid)?))
        })
        .collect();
    if let Some(own) = cpu_us(std::process::id()) {
        times.insert("bench".into(), own);
    }
    times
}

/// µs of CPU per operation of each process between two samples, for the
/// processes in both (a process restarted in between has another PID, and
/// its figure would mean nothing: it is left out when its time went back).
pub fn per_op(before: &CpuTimes, after: &CpuTimes, ops: u64) -> BTreeMap<String, f64> {
    after
        .iter()
        .filter_map(|(name, &t1)| {
            let t0 = *before.get(name)?;
            (t1 >= t0 && ops > 0).then(|| (name.clone(), (t1 - t0) as f64 / ops as f64))
        })
        .collect()
}

/// utime + stime of process `pid` (all its threads), in µs.
fn cpu_us(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&stat, clock_ticks_per_sec())
}

/// utime and stime are fields 14 and 15 of `/proc/PID/stat`, counted after
/// the command name, which is in parentheses and may hold spaces.
fn parse_stat(stat: &str, ticks_per_sec: u64) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some((utime + stime) * 1_000_000 / ticks_per_sec.max(1))
}

fn clock_ticks_per_sec() -> u64 {
    // SAFETY: sysconf reads a constant of the system; no memory is touched.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as u64
    } else {
        100
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utime_and_stime_are_read_after_a_command_name_with_spaces() {
        let stat = "4242 (dcms (x) y) S 1 4242 4242 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0";
        assert_eq!(parse_stat(stat, 100), Some(3_250_000));
        assert_eq!(parse_stat("garbage", 100), None);
    }

    #[test]
    fn per_op_skips_processes_missing_or_restarted() {
        let before: CpuTimes = [("a".into(), 100), ("b".into(), 500)].into();
        let after: CpuTimes = [("a".into(), 1100), ("b".into(), 200), ("c".into(), 50)].into();
        let p = per_op(&before, &after, 10);
        assert_eq!(p.len(), 1);
        assert_eq!(p["a"], 100.0);
    }
}
