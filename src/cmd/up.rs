//! `dcms up`: a whole cluster on 127.0.0.1 — N front ends (`--frontends`,
//! 2 by default, IDs 100, 101, ...) and M replicas, each its own OS process
//! (so any one can be killed), their log lines prefixed with their names,
//! all stopped on Ctrl-C.
//!
//! The configuration is written to `<data-dir>/cluster.toml` on first start
//! (free ports, fresh keys) and reused afterwards, so the references and the
//! data survive restarts; a file with fewer front ends than asked for gets
//! new ones added. Each process holds only the keys it needs: the replicas
//! read `cluster.toml` (the replicas' key and every front end's), front end
//! N `frontend-N.toml` (its own key only). The files are readable by their
//! owner only, in a folder that is too (0600, 0700).
//!
//! Clients use the group reference, which names every front end: the
//! corbaloc printed at start, or the IOR in `<data-dir>/dcms.ior`.
//!
//! With `--tls` the front ends serve IIOP over TLS only, with client
//! certificates, from `<data-dir>/tls/` (made on the first such start:
//! `dcms_node::pki`); without it, plain IIOP. The choice is made at each
//! start (it is written into each `frontend-<id>.toml`, not
//! `cluster.toml`).

use super::common::write_atomically;
use super::common::FaultArgs;
use anyhow::Context;
use dcms_node::config::{
    fresh_key, ClusterConfig, FrontendAddrs, FrontendConfig, FIRST_FRONTEND_ID,
};
use dcms_node::local::free_port;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
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
    /// Number of front ends (1 to 9). An existing cluster.toml with fewer
    /// gets new ones; one with more keeps them all.
    #[arg(long, default_value_t = 2)]
    frontends: u64,
    /// IIOP port of the first front end on first start (0: any free port;
    /// the others take free ports).
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
    /// Serve each process's Prometheus metrics (`GET /metrics`) on a free
    /// port of 127.0.0.1, printed at start and shown by `dcms status`.
    #[arg(long)]
    metrics: bool,
    /// Serve IIOP over TLS only, requiring client certificates (plain IIOP
    /// is off while it is on). Makes `<data-dir>/tls/` when missing: a
    /// local CA, the front ends' certificate, and certificates for
    /// MTL0001, LVL0001 and DDO0001 (`dcms cert issue --manager ID` makes
    /// more). A front end then runs a request only for the manager the
    /// client's certificate names.
    #[arg(long)]
    tls: bool,
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

/// Every port a configuration names.
fn ports_of(config: &ClusterConfig) -> Vec<u16> {
    config
        .replicas
        .iter()
        .map(|r| r.udp.port())
        .chain(
            config
                .frontends
                .iter()
                .flat_map(|f| [f.udp.port(), f.iiop.port()]),
        )
        .collect()
}

/// The configurations `dcms up` writes: the replicas' and each front end's.
pub struct Prepared {
    pub replicas_config: PathBuf,
    /// Each front end's ID and configuration file.
    pub frontend_configs: Vec<(u64, PathBuf)>,
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

/// Writes each front end's configuration (`frontend-<id>.toml`: the
/// replicas' without their key and the other front ends' keys), and removes
/// the single `frontend.toml` an older version wrote.
fn write_frontend_configs(
    data_dir: &Path,
    config: &ClusterConfig,
) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    let out = config.write_frontend_configs(data_dir)?;
    // An older version's front end had one status file, `frontend.json`:
    // it would show as a process down for ever.
    let _ = std::fs::remove_file(dcms_node::status::status_dir(data_dir).join("frontend.json"));
    let old = data_dir.join("frontend.toml");
    if old.exists() {
        std::fs::remove_file(&old).with_context(|| format!("removing {}", old.display()))?;
        println!(
            "dcms: removed {} (each front end has its own frontend-<id>.toml now)",
            old.display()
        );
    }
    Ok(out)
}

/// Adds front ends to `config` until it has `want` (IDs after the highest,
/// free ports not named in it, fresh keys); returns the IDs added.
fn add_frontends(config: &mut ClusterConfig, want: u64) -> anyhow::Result<Vec<u64>> {
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let mut added = Vec::new();
    while (config.frontends.len() as u64) < want {
        let id = config
            .frontends
            .iter()
            .map(|f| f.id + 1)
            .chain(config.replicas.iter().map(|r| r.id + 1))
            .chain([FIRST_FRONTEND_ID])
            .max()
            .expect("not empty");
        let iiop = addr(free_port(&ports_of(config))?);
        let mut taken = ports_of(config);
        taken.push(iiop.port());
        let udp = addr(free_port(&taken)?);
        config.frontends.push(FrontendConfig {
            id,
            udp,
            iiop,
            key: Some(fresh_key()),
        });
        added.push(id);
    }
    Ok(added)
}

/// Loads `<data-dir>/cluster.toml`, or writes a new one (then
/// `first_start`), with `frontends` front ends at least, and writes each
/// front end's `frontend-<id>.toml` from it.
pub fn prepare_config(
    data_dir: &Path,
    replicas: u64,
    frontends: u64,
    port: u16,
    sync: &str,
) -> anyhow::Result<Prepared> {
    anyhow::ensure!(
        (1..=9).contains(&frontends),
        "--frontends must be between 1 and 9, not {frontends}"
    );
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
        let mut changed = false;
        for f in config.frontends.iter_mut().filter(|f| f.key.is_none()) {
            // Written by a version with one key for everything.
            f.key = Some(fresh_key());
            changed = true;
            println!(
                "dcms: gave front end {} a key of its own in {}",
                f.id,
                path.display()
            );
        }
        let had = config.frontends.len();
        let added = add_frontends(&mut config, frontends)?;
        if !added.is_empty() {
            changed = true;
            let ids: Vec<String> = added.iter().map(u64::to_string).collect();
            println!(
                "dcms: {} listed {had} front end(s); added {} (free ports, fresh keys) for --frontends {frontends}",
                path.display(),
                ids.join(", ")
            );
        } else if had as u64 > frontends {
            println!(
                "dcms: {} lists {had} front ends (IDs {}), more than --frontends {frontends}: starting all {had}",
                path.display(),
                config.frontend_ids_text()
            );
        }
        config.validate_for(dcms_node::config::Role::Replica)?;
        if changed {
            config
                .write(&path)
                .with_context(|| format!("writing {}", path.display()))?;
        }
        return Ok(Prepared {
            frontend_configs: write_frontend_configs(data_dir, &config)?,
            replicas_config: path,
            config,
            first_start: false,
        });
    }
    anyhow::ensure!(
        (1..=9).contains(&replicas),
        "--replicas must be between 1 and 9"
    );
    // Every port a free one, except the first front end's IIOP `port`.
    let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
    let mut taken = Vec::new();
    let mut pick = |fixed: u16| -> anyhow::Result<SocketAddr> {
        let p = if fixed != 0 {
            fixed
        } else {
            free_port(&taken)?
        };
        taken.push(p);
        Ok(addr(p))
    };
    let mut frontend_addrs = Vec::new();
    for i in 0..frontends {
        let iiop = pick(if i == 0 { port } else { 0 })?;
        let udp = pick(0)?;
        frontend_addrs.push(FrontendAddrs { udp, iiop });
    }
    let replica_addrs = (0..replicas)
        .map(|_| pick(0))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let abs = std::path::absolute(data_dir)?;
    let config = ClusterConfig::new_cluster(&replica_addrs, &frontend_addrs, abs, sync);
    config.validate_for(dcms_node::config::Role::Replica)?;
    config
        .write(&path)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(Prepared {
        frontend_configs: write_frontend_configs(data_dir, &config)?,
        replicas_config: path,
        config,
        first_start: true,
    })
}

/// `dcms up --tls`: makes what is missing in `<data-dir>/tls/` (the CA,
/// with certificates for the first manager of each clinic; a server
/// certificate naming every front end's host) and rewrites each front
/// end's configuration with the `[tls]` table. Returns those files.
fn prepare_tls(data_dir: &Path, config: &mut ClusterConfig) -> anyhow::Result<Vec<(u64, PathBuf)>> {
    use dcms_node::pki;
    let dir = pki::TlsDir::of_data_dir(&config.data_dir);
    let firsts = pki::DEFAULT_MANAGERS
        .iter()
        .map(|m| pki::manager_id(m))
        .collect::<Result<Vec<_>, _>>()?;
    let setup = pki::ensure(&dir, &pki::server_hosts(&config.frontend_iiops()), &firsts)?;
    if setup.created_ca {
        println!(
            "dcms: made a local CA in {} (ca.pem; its key ca.key stays there, 0600)",
            dir.path().display()
        );
    }
    if let Some(why) = &setup.server_issued {
        println!(
            "dcms: issued the front ends' certificate {} ({why})",
            dir.server_cert().display()
        );
    }
    for m in &setup.managers {
        println!("dcms: issued a manager certificate {}", m.display());
    }
    config.tls = Some(dir.config());
    write_frontend_configs(data_dir, config)
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
                println!("[{name:<12}] {line}");
            }
        });
    }
    Ok(child)
}

pub fn run(args: UpArgs) -> anyhow::Result<()> {
    let Prepared {
        replicas_config: config_path,
        mut frontend_configs,
        mut config,
        first_start,
    } = prepare_config(
        &args.data_dir,
        args.replicas,
        args.frontends,
        args.port,
        &args.sync,
    )?;
    if args.tls {
        frontend_configs = prepare_tls(&args.data_dir, &mut config)?;
    }
    args.faults.apply(&mut config.faults);
    config.validate()?;
    let config_arg = config_path.display().to_string();
    let fault_args = args.faults.to_args();
    let mut children: Vec<Managed> = Vec::new();
    // With --metrics: each process's metrics address, chosen now and kept
    // across its restarts.
    let mut metrics_ports: Vec<u16> = Vec::new();
    let mut metrics_arg = |name: &str, a: &mut Vec<String>| -> anyhow::Result<()> {
        if args.metrics {
            let port = free_port(&metrics_ports)?;
            metrics_ports.push(port);
            a.extend(["--metrics-addr".into(), format!("127.0.0.1:{port}")]);
            println!("{name:<14} metrics http://127.0.0.1:{port}/metrics");
        }
        Ok(())
    };
    for r in &config.replicas {
        let name = format!("replica-{}", r.id);
        let mut a = vec![
            "replica".into(),
            "--config".into(),
            config_arg.clone(),
            "--id".into(),
            r.id.to_string(),
        ];
        metrics_arg(&format!("replica-{}", r.id), &mut a)?;
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
    // The group reference: every front end, in the configuration's order.
    let group = config.frontend_iiops();
    let (corbaloc, ior) = if args.tls {
        (
            dcms_corba::group_corbaloc_tls(&group),
            dcms_corba::group_ior_tls(&group),
        )
    } else {
        (
            dcms_corba::group_corbaloc(&group),
            dcms_corba::group_ior(&group),
        )
    };
    let ior_file = config.data_dir.join("dcms.ior");
    write_atomically(&ior_file, &format!("{ior}\n"))
        .with_context(|| format!("writing {}", ior_file.display()))?;
    for (id, path) in &frontend_configs {
        let name = dcms_node::frontend::status_name(*id);
        let mut a = vec![
            "frontend".into(),
            "--config".into(),
            path.display().to_string(),
            "--id".into(),
            id.to_string(),
            "--ior-file".into(),
            config
                .data_dir
                .join(format!("{name}.ior"))
                .display()
                .to_string(),
        ];
        if let Some(secs) = args.message_deadline_secs {
            a.extend(["--message-deadline-secs".into(), secs.to_string()]);
        }
        metrics_arg(&name, &mut a)?;
        a.extend(fault_args.iter().cloned());
        let child = spawn(&name, &a, &[])?;
        children.push(Managed {
            name,
            args: a,
            child,
            died_at: None,
        });
    }

    println!(
        "dcms: {} replicas and {} front ends on 127.0.0.1",
        config.replicas.len(),
        config.frontends.len()
    );
    println!("dcms: corbaloc  {corbaloc}");
    println!(
        "dcms: IOR file  {} (the same group: every front end)",
        ior_file.display()
    );
    for f in &config.frontends {
        println!(
            "dcms: {:<13} {}",
            dcms_node::frontend::status_name(f.id),
            if args.tls {
                dcms_corba::group_corbaloc_tls(&[f.iiop])
            } else {
                dcms_corba::group_corbaloc(&[f.iiop])
            }
        );
    }
    println!("dcms: data      {}", config.data_dir.display());
    println!(
        "dcms: config    {} (replicas), frontend-<id>.toml (front ends)",
        config_path.display()
    );
    if args.tls {
        let dir = dcms_node::pki::TlsDir::of_data_dir(&config.data_dir);
        println!(
            "dcms: transport IIOP over TLS, client certificates required (plain IIOP off); CA {}",
            dir.ca_cert().display()
        );
        println!(
            "dcms: try       dcms client --url {corbaloc} --tls-ca {} --cert {} counts --manager MTL0001",
            dir.ca_cert().display(),
            dir.managers().join("MTL0001.pem").display()
        );
    } else {
        println!(
            "dcms: transport plain IIOP (dcms up --tls: IIOP over TLS with client certificates)"
        );
        println!("dcms: try       dcms client --url {corbaloc} counts --manager MTL0001");
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use dcms_node::config::Role;
    use std::os::unix::fs::PermissionsExt;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    /// Each front end's file holds its own key only, and is private.
    fn check_frontend_files(p: &Prepared) {
        for (id, path) in &p.frontend_configs {
            assert_eq!(
                path.file_name().unwrap().to_str().unwrap(),
                format!("frontend-{id}.toml")
            );
            assert_eq!(mode(path), 0o600, "{}", path.display());
            let own = ClusterConfig::load(path).unwrap();
            own.validate_for(Role::FrontEnd(*id)).unwrap();
            assert_eq!(own.frontend_iiops(), p.config.frontend_iiops());
            assert_eq!(
                own.frontend(*id).unwrap().key,
                p.config.frontend(*id).unwrap().key
            );
        }
    }

    fn all_ports(c: &ClusterConfig) -> Vec<u16> {
        let mut ports = ports_of(c);
        ports.sort_unstable();
        ports
    }

    #[test]
    fn a_first_start_writes_one_file_per_front_end() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let p = prepare_config(&data, 3, 3, 0, "normal").unwrap();
        assert!(p.first_start);
        let ids: Vec<u64> = p.config.frontends.iter().map(|f| f.id).collect();
        assert_eq!(ids, [100, 101, 102]);
        assert_eq!(p.frontend_configs.len(), 3);
        check_frontend_files(&p);
        assert_eq!(mode(&p.replicas_config), 0o600);
        let mut ports = all_ports(&p.config);
        let n = ports.len();
        ports.dedup();
        assert_eq!(ports.len(), n, "every port differs");
        // The next start finds the same configuration.
        let again = prepare_config(&data, 3, 3, 0, "normal").unwrap();
        assert!(!again.first_start);
        assert_eq!(again.config, p.config);
    }

    #[test]
    fn bad_front_end_counts_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for n in [0, 10] {
            let err = prepare_config(dir.path(), 3, n, 0, "full")
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("--frontends must be between 1 and 9"), "{err}");
        }
    }

    /// A cluster.toml from before several front ends (one `[frontend]`,
    /// and a `frontend.toml` beside it) gets the front ends it lacks.
    #[test]
    fn an_older_file_gets_the_front_ends_it_lacks() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = prepare_config(&data, 3, 1, 0, "normal").unwrap();
        let old_text = first
            .config
            .to_toml()
            .replace("[[frontends]]", "[frontend]");
        let path = data.join("cluster.toml");
        std::fs::write(&path, &old_text).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        std::fs::write(data.join("frontend.toml"), "old").unwrap();
        let p = prepare_config(&data, 3, 2, 0, "normal").unwrap();
        assert!(!p.first_start);
        assert_eq!(mode(&path), 0o600, "narrowed and rewritten private");
        let text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(text.matches("[[frontends]]").count(), 2, "{text}");
        let reloaded = ClusterConfig::load(&path).unwrap();
        assert_eq!(reloaded, p.config);
        // What was there stays; the new one is new.
        assert_eq!(p.config.cluster_id, first.config.cluster_id);
        assert_eq!(p.config.replica_key, first.config.replica_key);
        assert_eq!(p.config.replicas, first.config.replicas);
        assert_eq!(p.config.frontends[0], first.config.frontends[0]);
        let added = &p.config.frontends[1];
        assert_eq!(added.id, 101);
        assert!(!all_ports(&first.config).contains(&added.iiop.port()));
        assert!(!all_ports(&first.config).contains(&added.udp.port()));
        p.config.validate_for(Role::Replica).unwrap();
        check_frontend_files(&p);
        assert!(!data.join("frontend.toml").exists(), "the old file is gone");
        // A file with more front ends than asked for is used as it is.
        let before = std::fs::read(&path).unwrap();
        let fewer = prepare_config(&data, 3, 1, 0, "normal").unwrap();
        assert_eq!(fewer.config.frontends.len(), 2);
        assert_eq!(fewer.frontend_configs.len(), 2);
        assert_eq!(std::fs::read(&path).unwrap(), before, "not rewritten");
    }

    /// A configuration from the version with one key for everything: the
    /// front end gets a key of its own.
    #[test]
    fn a_front_end_without_a_key_gets_one() {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let first = prepare_config(&data, 1, 1, 0, "normal").unwrap();
        let mut old = first.config.clone();
        old.frontends[0].key = None;
        old.write(&data.join("cluster.toml")).unwrap();
        let p = prepare_config(&data, 1, 1, 0, "normal").unwrap();
        let key = p.config.frontends[0].key.clone().expect("a key");
        assert_ne!(Some(key), first.config.frontends[0].key, "a fresh key");
        check_frontend_files(&p);
    }
}
