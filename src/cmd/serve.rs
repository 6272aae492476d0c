//! The replicated front end process: the CORBA server (dcms-corba) in front
//! of the sequencer event loop (dcms-node), until SIGINT or SIGTERM.

use super::common::{runtime, shutdown_signal, ClusterArgs};
use anyhow::Context;
use dcms_corba::{serve, Admission, ServeOptions};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tracing::info;

/// Servant slots of the replicated front end: each running request only
/// waits for its reply, so many can run at once.
pub fn replicated_admission() -> Admission {
    Admission {
        max_running: 96,
        max_waiting: 160,
        max_wait: Duration::from_secs(2),
    }
}

/// Runs the replicated front end of `cluster` (its IIOP address from the
/// configuration unless `listen` overrides it).
pub fn run_replicated(
    cluster: &ClusterArgs,
    mut opts: ServeOptions,
    ior_file: Option<PathBuf>,
) -> anyhow::Result<()> {
    let config = cluster.load()?;
    opts.listen = config.frontend.iiop;
    opts.admission = replicated_admission();
    let rt = runtime()?;
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let (service, event_loop) = {
        let _guard = rt.enter();
        dcms_node::frontend::start_frontend(&config, async {
            let _ = stop_rx.await;
        })?
    };
    let loop_handle = rt.spawn(event_loop);
    let server = serve(Arc::new(service), &opts).context("starting the CORBA server")?;
    println!("IOR: {}", server.ior());
    println!("corbaloc: {}", server.corbaloc());
    if let Some(path) = &ior_file {
        std::fs::write(path, format!("{}\n", server.ior()))
            .with_context(|| format!("writing the IOR file {}", path.display()))?;
        println!("IOR file: {}", path.display());
    }
    info!(corbaloc = %server.corbaloc(), udp = %config.frontend.udp, "front end serving");
    rt.block_on(shutdown_signal());
    info!("front end stopping");
    server.shutdown();
    let _ = stop_tx.send(());
    let _ = rt.block_on(loop_handle);
    Ok(())
}
