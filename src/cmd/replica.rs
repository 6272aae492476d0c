//! `dcms replica`: one replica manager (leader or backup) of a cluster.

use super::common::{runtime, shutdown_signal, ClusterArgs};

#[derive(clap::Args, Debug)]
pub struct ReplicaArgs {
    /// This replica's ID in the configuration.
    #[arg(long, env = "DCMS_REPLICA_ID")]
    id: u64,
    /// The group's very first start: a replica without a meta file is a
    /// founding member (without this flag it is taken for a wiped replica
    /// and catches up before it votes). `dcms up` passes it on the start
    /// that creates the cluster.
    #[arg(long)]
    bootstrap: bool,
    /// Serve Prometheus metrics on this address (`GET /metrics`); off
    /// unless given.
    #[arg(long, value_name = "HOST:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,
    #[command(flatten)]
    cluster: ClusterArgs,
}

pub fn run(args: ReplicaArgs) -> anyhow::Result<()> {
    let config = args.cluster.load()?;
    let rt = runtime()?;
    rt.block_on(dcms_node::replica::run_replica_with_metrics(
        config,
        args.id,
        args.bootstrap,
        args.metrics_addr,
        shutdown_signal(),
    ))?;
    Ok(())
}
