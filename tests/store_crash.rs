//! Crash safety of the store: a writer process is killed with SIGKILL in the
//! middle of a stream of group commits; the reopened store holds every batch
//! it reported committed, and no part of a batch it did not finish.

use dcms_core::workload::{Mix, Workload};
use dcms_core::{ClinicState, RequestKey, Store, SyncMode};
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

const BATCH: u64 = 8;
const SEED: u64 = 77;

/// Runs the writer until it reports `kill_after` committed entries, then
/// SIGKILLs it. Returns the last position it reported.
fn write_then_kill(db: &std::path::Path, kill_after: u64) -> u64 {
    let mut child = Command::new(env!("CARGO_BIN_EXE_dcms"))
        .args(["debug", "write-stream", "--sync", "full"])
        .arg("--db")
        .arg(db)
        .args(["--seed", &SEED.to_string(), "--batch", &BATCH.to_string()])
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start dcms debug write-stream");
    let stdout = child.stdout.take().unwrap();
    let mut reported = 0;
    for line in BufReader::new(stdout).lines() {
        let line = line.expect("read writer output");
        let n: u64 = line
            .strip_prefix("committed ")
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("unexpected writer line {line:?}"));
        assert!(n > reported, "positions only grow");
        reported = n;
        if reported >= kill_after {
            break;
        }
    }
    // SIGKILL while the writer is in the middle of further commits.
    child.kill().expect("SIGKILL the writer");
    let status = child.wait().unwrap();
    assert!(!status.success(), "the writer was killed, not finished");
    reported
}

/// The state the first `n` entries of the stream produce.
fn expected_state(n: u64) -> ClinicState {
    let mut state = ClinicState::new();
    let mut workload = Workload::new(SEED, Mix::Mixed);
    for position in 1..=n {
        let (_, effect) = state.execute(&workload.next_request(), 1_700_000_000_000 + position);
        state.apply(&effect);
    }
    state
}

#[test]
fn sigkill_mid_stream_loses_no_committed_batch_and_leaves_no_partial_one() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut previous = 0;
    // Three kills at different points; each restart continues the stream.
    for kill_after in [200, 700, 1500] {
        let reported = write_then_kill(&db, kill_after);
        let store = Store::open(&db, SyncMode::Full).unwrap();
        let last = store.last_applied();
        assert!(
            last >= reported,
            "committed position {reported} was reported but the store holds {last}"
        );
        assert!(last >= previous);
        assert_eq!(
            last % BATCH,
            0,
            "a batch was applied in part: last applied {last}"
        );
        let state = store.load_state().unwrap();
        assert_eq!(
            state.digest(),
            expected_state(last).digest(),
            "records differ from exactly {last} applied entries"
        );
        assert_eq!(
            store.audit().unwrap().len() as u64,
            last,
            "one audit line per entry"
        );
        assert!(store
            .reply(RequestKey {
                stream: 1,
                seq: last
            })
            .unwrap()
            .is_some());
        assert!(store
            .reply(RequestKey {
                stream: 1,
                seq: last + 1
            })
            .unwrap()
            .is_none());
        previous = last;
    }
}
