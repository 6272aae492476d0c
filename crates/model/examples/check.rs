//! Checks the model with larger bounds than CI does, reporting progress:
//! `cargo run --release -p dcms-model --example check -- EPOCHS WRITES CRASHES [SECONDS [DEPTH]]`.

use dcms_model::{Dcms, Mutation};
use stateright::report::WriteReporter;
use stateright::{Checker, Model};
use std::time::Duration;

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("numbers: EPOCHS WRITES CRASHES [SECONDS]"))
        .collect();
    let model = Dcms {
        max_epoch: args.first().copied().unwrap_or(3) as u8,
        max_writes: args.get(1).copied().unwrap_or(2) as u8,
        max_crashes: args.get(2).copied().unwrap_or(1) as u8,
        mutation: match std::env::var("DCMS_MODEL_MUTATION").as_deref() {
            Ok("always-suffix") => Some(Mutation::AlwaysSuffix),
            Ok("ignore-log-epoch") => Some(Mutation::IgnoreLogEpoch),
            Ok("restart-unsynced") => Some(Mutation::RestartUnsynced),
            _ => None,
        },
        ..Dcms::small(3)
    };
    println!("{model:?}");
    let mut builder = model.checker().threads(2);
    if let Some(&secs) = args.get(3) {
        builder = builder.timeout(Duration::from_secs(secs));
    }
    if let Some(&depth) = args.get(4) {
        builder = builder.target_max_depth(depth as usize);
    }
    let mut out = std::io::stdout();
    let mut reporter = WriteReporter::new(&mut out);
    if std::env::var_os("DCMS_MODEL_DFS").is_some() {
        builder = builder.finish_when(stateright::HasDiscoveries::AnyFailures);
        builder
            .spawn_dfs()
            .report(&mut reporter)
            .assert_properties();
    } else {
        builder
            .spawn_bfs()
            .report(&mut reporter)
            .assert_properties();
    }
}
