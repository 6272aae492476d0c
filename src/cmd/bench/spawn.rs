//! The cluster `dcms bench --spawn` starts for itself: `dcms up` in a
//! temporary folder, stopped when the benchmark ends.

use crate::cmd::common::FaultArgs;
use anyhow::Context;
use dcms_node::local::LocalCluster;

pub fn start(
    replicas: u64,
    frontends: usize,
    sync: &str,
    faults: &FaultArgs,
) -> anyhow::Result<LocalCluster> {
    let exe = std::env::current_exe().context("locating the dcms executable")?;
    let mut args = vec![
        "--replicas".to_string(),
        replicas.to_string(),
        "--frontends".into(),
        frontends.to_string(),
        "--sync".into(),
        sync.into(),
    ];
    args.extend(faults.to_args());
    Ok(LocalCluster::start(&exe, None, &args, true)?)
}
