//! `dcms up`: a whole cluster on 127.0.0.1 — a front end and N replicas, each
//! its own OS process (so any one can be killed), their log lines prefixed
//! with their names, all stopped on Ctrl-C.
//!
//! The configuration is written to `<data-dir>/cluster.toml` on first start
//! (free ports, fresh keys) and reused afterwards, so the corbaloc URL and
//! the data survive restarts. Each process holds only the keys it needs: the
//! replicas read `cluster.toml` (the replicas' key and the front end's), the
//! front end `frontend.toml` (its own key only). Both files are readable by
//! their owner only, in a folder that is too (0600, 0700).

use super::common::FaultArgs;
use anyhow::Context;
use dcms_node::config::ClusterConfig;
use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct UpArgs {
    /// Where the replicas' databases, the configuration and the IOR live.
    #[arg(long, env = "DCMS_DATA_DIR", default_value = "dcms-data")]
    data_dir: PathBuf,
    /// Number of replicas (1 runs a single replica with no backups).
    #[arg(long, default_value_t = 3)]
    replicas: u64,
    /// IIOP port of the front end on first start (0: any free port).
    #[arg(long, default_value_t = 0)]
    port: u16,
    /// SQLite durability on first start: full or normal.
    #[arg(long, default_value = "full")]
    sync: String,
    /// Restart a process that dies (after this many milliseconds; 0: never).
    /// Lets a demonstration or a chaos run kill the leader again and again.
    #[arg(long, default_value_t = 500)]
    restart_after_ms: u64,
    /// Passed to the front end (`dcms frontend --message-deadline-secs`):
    /// seconds from the first byte of a GIOP message to its last. Default:
    /// the front end's.
    #[arg(long)]
    message_deadline_secs: Option<u64>,
    #[command(flatten)]
    faults: FaultArgs,
}

/// A child process and how to start it again.
struct Managed {
    name: String,
    args: Vec<String>,
    child: Child,
    /// When it was seen dead, if it is.
    died_at: Option<Instant>,
}

/// A free port on 127.0.0.1 (TCP and UDP alike), chosen by the kernel.
fn free_port() -> anyhow::Result<u16> {
    loop {
        let tcp = TcpListener::bind("127.0.0.1:0")?;
        let port = tcp.local_addr()?.port();
        if UdpSocket::bind(("127.0.0.1", port)).is_ok() {
            return Ok(port);
        }
    }
}

fn fresh_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The configurations `dcms up` writes: the replicas' and the front end's.
pub struct Prepared {
    pub replicas_config: PathBuf,
    pub frontend_config: PathBuf,
    pub config: ClusterConfig,
    /// The group's first start.
    pub first_start: bool,
}

/// An older `dcms up` wrote `cluster.toml` with the default mode: this one
/// narrows its own file to 0600 (and says so) rather than refuse to start,
/// as `dcms replica` and `dcms frontend` do with a file others can read.
fn narrow_own_file(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .with_context(|| format!("reading {}", path.display()))?
        .permissions()
        .mode()
        & 0o777;
    if mode & 0o077 != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
            .with_context(|| format!("narrowing {}", path.display()))?;
        println!(
            "dcms: {} was readable by others (mode {mode:03o}); narrowed to 600",
            path.display()
        );
    }
    Ok(())
}

/// Writes the front end's configuration: the replicas' without their key.
fn write_frontend_config(data_dir: &Path, config: &ClusterConfig) -> anyhow::Result<PathBuf> {
    let path = data_dir.join("frontend.toml");
    config
        .for_frontend()
        .write(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(path)
}

/// Loads `<data-dir>/cluster.toml`, or writes a new one (then
/// `first_start`), and writes the front end's `frontend.toml` from it.
pub fn prepare_config(
    data_dir: &Path,
    replicas: u64,
    port: u16,
    sync: &str,
) -> anyhow::Result<Prepared> {
    dcms_node::config::create_private_dir(data_dir)
        .with_context(|| format!("creating {}", data_dir.display()))?;
    let path = data_dir.join("cluster.toml");
    if path.exists() {
        narrow_own_file(&path)?;
        let mut config = ClusterConfig::load(&path)?;
        anyhow::ensure!(
            config.replicas.len() as u64 == replicas,
            "{} describes {} replicas, not {replicas}: use another --data-dir, or remove it to start afresh",
            path.display(),
            config.replicas.len()
        );
        if config.frontend.key.is_none() {
            // Written by a version with one key for everything.
            config.frontend.key = Some(fresh_key());
            config
                .write(&path)
                .with_context(|| format!("writing {}", path.display()))?;
            println!(
                "dcms: gave the front end a key of its own in {}",
                path.display()
            );
        }
        config.validate_for(dcms_node::config::Role::Replica)?;
        return Ok(Prepared {
            frontend_config: write_frontend_config(data_dir, &config)?,
            replicas_config: path,
            config,
            first_start: false,
        });
    }
    anyhow::ensure!(
        (1..=9).contains(&replicas),
        "--replicas must be between 1 and 9"
    );
    let abs = std::path::absolute(data_dir)?;
    let mut config = ClusterConfig::local(7000, replicas, abs, fresh_key(), fresh_key());
    config.cluster_id = rand::random::<u64>() >> 1;
    config.sync = sync.to_string();
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    config.frontend.iiop = addr(if port == 0 { free_port()? } else { port });
    config.frontend.udp = addr(free_port()?);
    for r in &mut config.replicas {
        r.udp = addr(free_port()?);
    }
    config.validate_for(dcms_node::config::Role::Replica)?;
    config
        .write(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Prepared {
        frontend_config: write_frontend_config(data_dir, &config)?,
        replicas_config: path,
        config,
        first_start: true,
    })
}

/// Starts a child `dcms` process whose output is prefixed with `name`.
fn spawn(name: &str, args: &[String], env: &[(String, String)]) -> anyhow::Result<Child> {
    let exe = std::env::current_exe().context("locating the dcms executable")?;
    let mut cmd = Command::new(exe);
    cmd.args(args)
        .envs(env.iter().cloned())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    // The children die with `dcms up`, even when it is killed.
    unsafe {
        use std::os::unix::process::CommandExt;
        cmd.pre_exec(|| {
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    let mut child = cmd.spawn().with_context(|| format!("starting {name}"))?;
    for stream in [
        child
            .stdout
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        child
            .stderr
            .take()
            .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
    ]
    .into_iter()
    .flatten()
    {
        let name = name.to_string();
        std::thread::spawn(move || {
            for line in BufReader::new(stream).lines().map_while(Result::ok) {
                println!("[{name:<9}] {line}");
            }
        });
    }
    Ok(child)
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let Prepared {
        replicas_config: config_path,
        frontend_config,
        mut config,
        first_start,
    } = prepare_config(&args.data_dir, args.replicas, args.port, &args.sync)?;
    args.faults.apply(&mut config.faults);
    config.validate()?;
    let config_arg = config_path.display().to_string();
    let fault_args = args.faults.to_args();
    let mut children: Vec<Managed> = Vec::new();
    for r in &config.replicas {
        let name = format!("replica-{}", r.id);
        let mut a = vec![
            "replica".into(),
            "--config".into(),
            config_arg.clone(),
            "--id".into(),
            r.id.to_string(),
        ];
        a.extend(fault_args.iter().cloned());
        // Only the start that creates the group founds it; a restart of a
        // replica whose meta file is gone must catch up instead.
        let mut first = a.clone();
        if first_start {
            first.push("--bootstrap".into());
        }
        let child = spawn(&name, &first, &[])?;
        children.push(Managed {
            name,
            args: a,
            child,
            died_at: None,
        });
    }
    let ior_file = config.data_dir.join("dcms.ior");
    let mut a = vec![
        "frontend".into(),
        "--config".into(),
        frontend_config.display().to_string(),
        "--ior-file".into(),
        ior_file.display().to_string(),
    ];
    if let Some(secs) = args.message_deadline_secs {
        a.extend(["--message-deadline-secs".into(), secs.to_string()]);
    }
    a.extend(fault_args.iter().cloned());
    let child = spawn("frontend", &a, &[])?;
    children.push(Managed {
        name: "frontend".into(),
        args: a,
        child,
        died_at: None,
    });

    let corbaloc = format!("corbaloc:iiop:{}/DCMS", config.frontend.iiop);
    println!(
        "dcms: {} replicas and a front end on 127.0.0.1",
        config.replicas.len()
    );
    println!("dcms: corbaloc  {corbaloc}");
    println!("dcms: IOR file  {}", ior_file.display());
    println!("dcms: data      {}", config.data_dir.display());
    println!(
        "dcms: config    {} (replicas), {} (front end)",
        config_path.display(),
        frontend_config.display()
    );
    println!("dcms: try       dcms client --url {corbaloc} counts --manager MTL0001");
    println!("dcms: Ctrl-C stops the cluster");

    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone()).context("installing the signal handler")?;
    }
    let restart_after = Duration::from_millis(args.restart_after_ms);
    while !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(20));
        for m in children.iter_mut() {
            match m.died_at {
                None => {
                    if let Ok(Some(status)) = m.child.try_wait() {
                        m.died_at = Some(Instant::now());
                        println!("dcms: {} exited ({status}); the others go on", m.name);
                    }
                }
                Some(at) if args.restart_after_ms > 0 && at.elapsed() >= restart_after => {
                    match spawn(&m.name, &m.args, &[]) {
                        Ok(child) => {
                            println!("dcms: restarted {}", m.name);
                            m.child = child;
                            m.died_at = None;
                        }
                        Err(e) => {
                            println!("dcms: restarting {} failed: {e:#}", m.name);
                            m.died_at = Some(Instant::now());
                        }
                    }
                }
                Some(_) => {}
            }
        }
    }
    println!("dcms: stopping");
    for m in &children {
        // SAFETY: kill(2) on our own child's PID; no memory is involved.
        unsafe {
            libc::kill(m.child.id() as i32, libc::SIGTERM);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(3);
    for Managed { name, child, .. } in &mut children {
        loop {
            match child.try_wait() {
                Ok(Some(_)) => break,
                _ if Instant::now() > deadline => {
                    println!("dcms: {name} did not stop in time; killing it");
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                _ => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }
    Ok(())
}
