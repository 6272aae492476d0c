//! Short multi-process chaos, run in CI: `dcms chaos` kills the leader with
//! SIGKILL every two seconds (`dcms up` restarts it) and pauses a backup with
//! SIGSTOP for a second, under write load from eight clients; it then checks
//! that every acknowledged create is present with its fields, none twice,
//! the counts fit, and all replicas' digests are equal. A second run kills
//! the two front ends in turn instead: its FT-CORBA writers retry through
//! the other one, and nothing fails, is lost or executes twice. Longer runs
//! on demand: `dcms chaos --duration 120 --kill-frontend-every 3`.

use std::process::Command;

/// Runs `dcms chaos` with `args`; asserts it succeeded and found every
/// acknowledged create; returns its standard output. One run at a time:
/// two clusters under full load on two cores would measure the machine.
fn chaos(args: &[&str]) -> String {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|p| p.into_inner());
    let out = Command::new(env!("CARGO_BIN_EXE_dcms"))
        .arg("chaos")
        .args(args)
        .output()
        .expect("run dcms chaos");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "dcms chaos failed:\n{stdout}\n{stderr}"
    );
    assert!(
        stdout.contains("OK — every acknowledged create present"),
        "{stdout}"
    );
    stdout
}

#[test]
fn leader_kills_and_backup_pauses_lose_and_double_nothing() {
    let stdout = chaos(&[
        "--duration",
        "10",
        "--clients",
        "8",
        "--kill-leader-every",
        "2",
        "--pause-backup-every",
        "5",
        "--pause-ms",
        "800",
    ]);
    let kills = stdout.matches("killed the leader").count();
    assert!(kills >= 3, "the leader was killed {kills} times:\n{stdout}");
    assert!(stdout.contains("paused a backup"), "{stdout}");
}

/// Front ends killed under load: the writers (FT-CORBA clients holding the
/// group reference) fail over to the other front end and retry with the
/// same `FT_REQUEST` identity, so nothing fails, nothing is lost and no
/// create executes twice (each has its own last name, checked in the
/// store), and the replicas' digests are equal.
#[test]
fn frontend_kills_with_ft_retries_lose_fail_and_double_nothing() {
    let stdout = chaos(&[
        "--duration",
        "8",
        "--clients",
        "8",
        "--frontends",
        "2",
        "--kill-leader-every",
        "0",
        "--kill-frontend-every",
        "1.5",
        "--pause-backup-every",
        "0",
    ]);
    let kills = stdout.matches("killed front end").count();
    assert!(
        kills >= 4,
        "front ends were killed {kills} times:\n{stdout}"
    );
    assert!(
        stdout.contains(" 0 failed"),
        "every create went through a retry:\n{stdout}"
    );
}
