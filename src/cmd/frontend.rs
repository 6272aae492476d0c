//! `dcms frontend`: the CORBA front door, `DCMS::ClinicManagement` at
//! `corbaloc:iiop:HOST:PORT/DCMS`.
//!
//! - `--standalone --data-dir DIR`: requests run in this process on one
//!   SQLite store (`DIR/standalone.sqlite`), no replication.
//! - `--config FILE [--id N]` (as `dcms up` writes it): the replicated
//!   front end `N` (without `--id`, the configuration's only one), which
//!   sequences requests to the leader replica over UDP.
//!
//! With a `[tls]` table in the configuration (`dcms up --tls`, `dcms init
//! --tls`) it serves IIOP over TLS only (`corbaloc:ssliop:HOST:PORT/DCMS`),
//! requiring a client certificate of the cluster's CA, and runs a request
//! only for the manager that certificate names (`dcms_corba::auth`).
//!
//! At start it prints `ior IOR:...`, `corbaloc corbaloc:iiop:...` and
//! `port N` lines on standard output (its own reference), writes
//! `--ior-file`, and binds an object in CosNaming with `--naming`: its own
//! reference standalone, the group reference (every front end of the
//! configuration, `dcms_corba::group`) when replicated. It runs until
//! SIGINT or SIGTERM.

use super::common::{
    runtime, shared_runtime, shutdown_signal, write_atomically, ClusterArgs, FaultArgs,
};
use anyhow::Context;
use dcms_corba::{serve, Admission, ClinicService, ServeOptions, Standalone};
use dcms_node::config::ClusterConfig;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

#[derive(clap::Args, Debug)]
pub struct FrontendArgs {
    /// Run requests in this process on one local store (no replicas).
    #[arg(long, conflicts_with = "config")]
    standalone: bool,
    /// The cluster configuration (TOML) of the replicated front end.
    #[arg(long, env = "DCMS_CONFIG")]
    config: Option<PathBuf>,
    /// With --config: which front end of the configuration this is (its
    /// `[[frontends]]` id). Needed when it lists several.
    #[arg(long, requires = "config")]
    id: Option<u64>,
    /// With --config: serve Prometheus metrics on this address (`GET
    /// /metrics`); off unless given.
    #[arg(long, requires = "config", value_name = "HOST:PORT")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// The standalone store's folder; with --config, overrides its data folder.
    #[arg(long, env = "DCMS_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// IIOP address to listen on (port 0: any free port). Default:
    /// 127.0.0.1:0 standalone, the configuration's address otherwise.
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Host published in the IOR instead of the listening address.
    #[arg(long)]
    publish_host: Option<String>,
    /// Write the stringified IOR to this file.
    #[arg(long)]
    ior_file: Option<PathBuf>,
    /// A CosNaming root context (corbaloc:iiop:HOST:PORT/NameService or an
    /// IOR) to bind the object in; a replicated front end binds the group
    /// reference (every front end), not its own.
    #[arg(long)]
    naming: Option<String>,
    /// The name to bind with --naming (contexts are created as needed).
    #[arg(long, default_value = dcms_corba::server::DEFAULT_NAMING_NAME)]
    naming_name: String,
    /// Close a connection with no request for this many seconds.
    #[arg(long, default_value_t = 60)]
    idle_timeout_secs: u64,
    /// Largest GIOP message accepted or sent, in bytes.
    #[arg(long, default_value_t = 16 * 1024 * 1024)]
    max_message_size: usize,
    /// Requests running in the service at once (default 32 standalone,
    /// 96 replicated: there a running request only waits for its reply).
    #[arg(long)]
    max_running: Option<usize>,
    /// Requests waiting for a running slot, beyond which requests get
    /// TRANSIENT at once (default 64 standalone, 160 replicated).
    #[arg(long)]
    max_waiting: Option<usize>,
    /// Seconds from the first byte of a message to its last; a connection
    /// whose message takes longer is closed.
    #[arg(long, default_value_t = 10)]
    message_deadline_secs: u64,
    /// Unread reply bytes (MiB) one connection may queue beyond what its
    /// socket took; a client that reads slower is disconnected.
    #[arg(long, default_value_t = 16)]
    max_queued_reply_mib: usize,
    /// Replicated: client deadline (ms) after which an unknown outcome is reported.
    #[arg(long, env = "DCMS_OUTCOME_TIMEOUT_MS")]
    outcome_timeout_ms: Option<u64>,
    #[command(flatten)]
    faults: FaultArgs,
}

pub fn run(args: FrontendArgs) -> anyhow::Result<()> {
    // Replicated, the ORB runs on the event loop's runtime.
    let rt = if args.config.is_some() {
        shared_runtime()?
    } else {
        runtime()?
    };
    let mut opts = ServeOptions {
        listen: args
            .listen
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 0))),
        publish_host: args.publish_host.clone(),
        idle_timeout: Duration::from_secs(args.idle_timeout_secs.max(1)),
        max_message_size: args.max_message_size.max(1024),
        admission: Admission {
            max_running: args.max_running.unwrap_or(32).max(1),
            max_waiting: args.max_waiting.unwrap_or(64),
            ..Admission::default()
        },
        naming: args.naming.clone(),
        naming_name: args.naming_name.clone(),
        message_deadline: Duration::from_secs(args.message_deadline_secs.max(1)),
        max_queued_reply_bytes: args.max_queued_reply_mib.max(1) << 20,
        ..ServeOptions::default()
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    // Replicated: the group IOR, which --naming binds.
    let mut group: Option<String> = None;
    let service: Arc<dyn ClinicService> = if let Some(config) = &args.config {
        let config = ClusterArgs {
            config: config.clone(),
            data_dir: args.data_dir.clone(),
            outcome_timeout_ms: args.outcome_timeout_ms,
            faults: args.faults.clone(),
        }
        .load()?;
        let id = which_frontend(&config, args.id)?;
        let me = config.frontend(id)?;
        if args.listen.is_none() {
            opts.listen = me.iiop;
        }
        group = Some(match &config.tls {
            None => dcms_corba::group_ior(&config.frontend_iiops()),
            Some(_) => dcms_corba::group_ior_tls(&config.frontend_iiops()),
        });
        if let Some(tls) = &config.tls {
            // The key must be the owner's only, as the configuration's keys.
            dcms_node::pki::check_private(&tls.key)?;
            opts.tls = Some(dcms_corba::TlsFiles {
                ca: tls.ca.clone(),
                cert: tls.cert.clone(),
                key: tls.key.clone(),
            });
        }
        opts.admission.max_running = args.max_running.unwrap_or(96).max(1);
        opts.admission.max_waiting = args.max_waiting.unwrap_or(160);
        let _guard = rt.enter();
        let (service, event_loop) = dcms_node::frontend::start_frontend_with_metrics(
            &config,
            id,
            args.metrics_addr,
            async move {
                let _ = stop_rx.await;
            },
        )
        .with_context(|| format!("starting front end {id}"))?;
        rt.spawn(event_loop);
        opts.runtime = Some(rt.handle().clone());
        Arc::new(service)
    } else if args.standalone {
        let dir = args
            .data_dir
            .clone()
            .context("--standalone needs --data-dir DIR")?;
        let s = Standalone::open(&dir)
            .with_context(|| format!("opening the standalone store in {}", dir.display()))?;
        tracing::info!("standalone store {}", s.path().display());
        Arc::new(s)
    } else {
        anyhow::bail!(
            "give --standalone --data-dir DIR, or --config FILE for the replicated front end"
        );
    };
    // A replicated front end binds the group reference itself, below.
    if group.is_some() {
        opts.naming = None;
    }

    let server = serve(service, &opts).with_context(|| format!("serving on {}", opts.listen))?;
    if let (Some(url), Some(group)) = (&args.naming, &group) {
        let object = server
            .orb()
            .string_to_object(group)
            .ok()
            .flatten()
            .context("the group IOR does not parse")?;
        dcms_corba::server::bind_in_naming(server.orb(), url, &args.naming_name, &object)
            .map_err(|what| anyhow::anyhow!("naming service {url}: {what}"))?;
    }
    if let Some(path) = &args.ior_file {
        write_atomically(path, &format!("{}\n", server.ior()))
            .with_context(|| format!("writing the IOR file {}", path.display()))?;
    }
    // Whoever started us may close our standard output after reading these
    // lines: a failed write must not stop the server.
    {
        let mut out = std::io::stdout().lock();
        let mut text = format!(
            "ior {}\ncorbaloc {}\nport {}\n",
            server.ior(),
            server.corbaloc(),
            server.port()
        );
        if let Some(url) = &args.naming {
            text.push_str(&format!("naming {} {}\n", args.naming_name, url));
        }
        let _ = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    }
    tracing::info!("DCMS front end ready at {}", server.corbaloc());
    rt.block_on(shutdown_signal());
    tracing::info!("stopping the front end");
    server.shutdown();
    let _ = stop_tx.send(());
    drop(server);
    rt.shutdown_timeout(Duration::from_secs(2));
    Ok(())
}

/// The front end a replicated process is: `--id`, else the configuration's
/// only one.
fn which_frontend(config: &ClusterConfig, id: Option<u64>) -> anyhow::Result<u64> {
    match (id, config.frontends.as_slice()) {
        (Some(id), _) => {
            config.frontend(id)?;
            Ok(id)
        }
        (None, [only]) => Ok(only.id),
        (None, _) => anyhow::bail!(
            "the configuration lists {} front ends (IDs {}): say which this is with --id",
            config.frontends.len(),
            config.frontend_ids_text()
        ),
    }
}
