//! `dcms init`: the configuration files of a cluster whose processes run on
//! separate hosts.
//!
//! Given every replica's UDP address and every front end's IIOP (and UDP)
//! address, it writes into `--out` one file per process, each holding only
//! the keys that process needs, in the same format `dcms up` writes and
//! checked the same way:
//!
//! - `replica-<id>.toml` (IDs 1, 2, ... in the order of `--replica`): the
//!   replicas' key and every front end's key;
//! - `frontend-<id>.toml` (IDs 100, 101, ... in the order of `--frontend`):
//!   that front end's key only;
//! - `dcms.ior` and `dcms.corbaloc`: the group reference (every front end)
//!   for clients.
//!
//! With `--tls`, the front ends serve IIOP over TLS only, with client
//! certificates: `<out>/tls/` gets a new CA, the front ends' certificate
//! and the first managers' certificates (`dcms_node::pki`), and each
//! front end's file a `[tls]` table naming `<data-dir>/tls/`.
//!
//! Files are 0600 in a 0700 folder. It then prints which file goes to which
//! host and the command that starts each process there.

use anyhow::Context;
use dcms_node::config::{create_private_dir, write_private, ClusterConfig, FrontendAddrs, Role};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Most replicas, and most front ends, a configuration may list (as `dcms up`).
const MAX_PROCESSES: usize = 9;

/// The group reference's files in `--out`.
const IOR_FILE: &str = "dcms.ior";
const CORBALOC_FILE: &str = "dcms.corbaloc";

#[derive(clap::Args, Debug)]
#[command(after_long_help = "\
Example (three replica hosts, two front-end hosts):

  dcms init --replica 10.0.0.1:7100 --replica 10.0.0.2:7100 --replica 10.0.0.3:7100 \\
            --frontend 10.0.0.4:7000 --frontend 10.0.0.5:7000,udp=7200 --out dcms-etc

Then copy replica-N.toml to replica N's host and frontend-N.toml to front end N's host,
and start each process as printed.")]
pub struct InitArgs {
    /// A replica's UDP address, HOST:PORT, where the other replicas and the
    /// front ends reach it. HOST is an IP address (IPv6 in brackets), not a
    /// name. Once per replica (1 to 9; 3 survive the failure of one); the
    /// first is replica 1, the next replica 2, ...
    #[arg(long = "replica", value_name = "HOST:PORT", value_parser = parse_replica)]
    replicas: Vec<SocketAddr>,
    /// A front end: HOST:IIOP_PORT[,udp=PORT]. CORBA clients connect to
    /// HOST:IIOP_PORT (TCP); the front end talks to the replicas from UDP
    /// HOST:PORT, by default the same port number as IIOP (TCP and UDP
    /// ports are separate). `udp=HOST:PORT` names another address of the
    /// host. Once per front end (1 to 9); the first is front end 100, the
    /// next 101, ..., and the group reference lists them in this order.
    #[arg(
        long = "frontend",
        value_name = "HOST:IIOP_PORT[,udp=PORT]",
        value_parser = parse_frontend
    )]
    frontends: Vec<FrontendAddrs>,
    /// The folder to write the files into (created, mode 0700).
    #[arg(long)]
    out: PathBuf,
    /// The data folder on every host (an absolute path): replica N keeps
    /// `replica-N.db` there, every process its status file.
    #[arg(long, default_value = "/var/lib/dcms")]
    data_dir: PathBuf,
    /// SQLite durability: full (fsync every commit) or normal.
    #[arg(long, default_value = "full", value_parser = ["full", "normal"])]
    sync: String,
    /// Write into an --out folder that is not empty (files of the same
    /// names are replaced; others are left alone).
    #[arg(long)]
    force: bool,
    /// Front ends serve IIOP over TLS only, with client certificates: makes
    /// a local CA in `<out>/tls/` (its key stays there), the front ends'
    /// certificate naming their hosts, and certificates for MTL0001,
    /// LVL0001 and DDO0001 (`dcms cert issue --tls-dir <out>/tls` makes
    /// more); each front end's file gets a `[tls]` table naming
    /// `<data-dir>/tls/`.
    #[arg(long)]
    tls: bool,
}

/// Where each file went.
#[derive(Debug)]
struct Written {
    replicas: Vec<(u64, PathBuf)>,
    frontends: Vec<(u64, PathBuf)>,
    ior: PathBuf,
    corbaloc: PathBuf,
    /// `<out>/tls`, with `--tls`.
    tls: Option<PathBuf>,
}

pub fn run(args: InitArgs) -> anyhow::Result<()> {
    let config = plan(&args)?;
    check_out_dir(&args.out, args.force)?;
    let written = write_files(&config, &args.out)?;
    print!("{}", instructions(&config, &written));
    Ok(())
}

/// With `--tls`: `<out>/tls/` (the CA, the front ends' certificate, the
/// first managers' certificates). Returns its folder.
fn write_tls(config: &ClusterConfig, out: &Path) -> anyhow::Result<PathBuf> {
    use dcms_node::pki;
    let dir = pki::TlsDir::new(out.join("tls"));
    let firsts = pki::DEFAULT_MANAGERS
        .iter()
        .map(|m| pki::manager_id(m))
        .collect::<Result<Vec<_>, _>>()?;
    pki::ensure(&dir, &pki::server_hosts(&config.frontend_iiops()), &firsts)?;
    Ok(dir.path().to_path_buf())
}

/// Checks the arguments and makes the configuration (fresh keys, a random
/// cluster ID).
fn plan(args: &InitArgs) -> anyhow::Result<ClusterConfig> {
    check_counts(&args.replicas, &args.frontends)?;
    check_addresses(&args.replicas, &args.frontends)?;
    anyhow::ensure!(
        args.data_dir.is_absolute(),
        "--data-dir {}: give an absolute path (the data folder on every host)",
        args.data_dir.display()
    );
    let mut config = ClusterConfig::new_cluster(
        &args.replicas,
        &args.frontends,
        args.data_dir.clone(),
        &args.sync,
    );
    if args.tls {
        config.tls = Some(dcms_node::pki::TlsDir::of_data_dir(&config.data_dir).config());
    }
    config
        .validate_for(Role::Replica)
        .context("the configuration does not check")?;
    Ok(config)
}

/// Parses `--replica HOST:PORT`.
fn parse_replica(text: &str) -> Result<SocketAddr, String> {
    parse_host_port(text)
}

/// `HOST:PORT` with HOST an IP address other than 0.0.0.0 or `::` (the
/// others must be able to reach it) and PORT not 0 (they must know it).
fn parse_host_port(text: &str) -> Result<SocketAddr, String> {
    let addr: SocketAddr = text.trim().parse().map_err(|_| {
        format!(
            "{text:?} is not HOST:PORT with HOST an IP address (10.0.0.1:7100, [fd00::1]:7100); names are not resolved"
        )
    })?;
    if addr.ip().is_unspecified() {
        return Err(format!(
            "{text}: {} is no host's address; give the address the other hosts reach it at",
            addr.ip()
        ));
    }
    if addr.port() == 0 {
        return Err(format!(
            "{text}: port 0; give a fixed port (the other processes are told it)"
        ));
    }
    Ok(addr)
}

/// Parses `--frontend HOST:IIOP_PORT[,udp=PORT|udp=HOST:PORT]`.
fn parse_frontend(text: &str) -> Result<FrontendAddrs, String> {
    let (iiop_text, udp_text) = match text.split_once(',') {
        None => (text, None),
        Some((iiop, rest)) => {
            let udp = rest.trim().strip_prefix("udp=").ok_or_else(|| {
                format!("{text:?}: after the comma, expected udp=PORT or udp=HOST:PORT")
            })?;
            (iiop, Some(udp))
        }
    };
    let iiop = parse_host_port(iiop_text)?;
    let udp = match udp_text {
        None => iiop,
        Some(u) if u.contains(':') => parse_host_port(u)?,
        Some(u) => {
            let port: u16 = u
                .parse()
                .ok()
                .filter(|&p| p != 0)
                .ok_or_else(|| format!("{text:?}: udp={u} is not a port (1 to 65535)"))?;
            SocketAddr::new(iiop.ip(), port)
        }
    };
    Ok(FrontendAddrs { udp, iiop })
}

/// 1 to 9 replicas and 1 to 9 front ends.
fn check_counts(replicas: &[SocketAddr], frontends: &[FrontendAddrs]) -> anyhow::Result<()> {
    anyhow::ensure!(
        !replicas.is_empty(),
        "at least one --replica HOST:PORT is needed (three survive the failure of one)"
    );
    anyhow::ensure!(
        replicas.len() <= MAX_PROCESSES,
        "{} --replica arguments: at most {MAX_PROCESSES}",
        replicas.len()
    );
    anyhow::ensure!(
        !frontends.is_empty(),
        "at least one --frontend HOST:IIOP_PORT is needed (where clients connect)"
    );
    anyhow::ensure!(
        frontends.len() <= MAX_PROCESSES,
        "{} --frontend arguments: at most {MAX_PROCESSES}",
        frontends.len()
    );
    Ok(())
}

/// No address twice: every process has its own UDP address, every front
/// end its own IIOP address.
fn check_addresses(replicas: &[SocketAddr], frontends: &[FrontendAddrs]) -> anyhow::Result<()> {
    let mut udp: Vec<(SocketAddr, String)> = Vec::new();
    let processes = replicas
        .iter()
        .map(|&a| (a, format!("--replica {a}")))
        .chain(
            frontends
                .iter()
                .map(|f| (f.udp, format!("--frontend {}", frontend_text(f)))),
        );
    for (addr, arg) in processes {
        if let Some((_, first)) = udp.iter().find(|(a, _)| *a == addr) {
            if *first == arg {
                anyhow::bail!("{arg} is given twice: every process needs its own address");
            }
            anyhow::bail!(
                "{arg} and {first} both use UDP {addr}: every process needs its own UDP address"
            );
        }
        udp.push((addr, arg));
    }
    for (i, f) in frontends.iter().enumerate() {
        if let Some(g) = frontends[..i].iter().find(|g| g.iiop == f.iiop) {
            anyhow::bail!(
                "--frontend {} and --frontend {} both listen on IIOP {}: every front end needs its own",
                frontend_text(g),
                frontend_text(f),
                f.iiop
            );
        }
    }
    Ok(())
}

/// A front end as `--frontend` takes it.
fn frontend_text(f: &FrontendAddrs) -> String {
    if f.udp == f.iiop {
        f.iiop.to_string()
    } else if f.udp.ip() == f.iiop.ip() {
        format!("{},udp={}", f.iiop, f.udp.port())
    } else {
        format!("{},udp={}", f.iiop, f.udp)
    }
}

/// An existing `--out` must be empty, unless `force`.
fn check_out_dir(out: &Path, force: bool) -> anyhow::Result<()> {
    let mut entries = match std::fs::read_dir(out) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("--out {}", out.display())),
    };
    anyhow::ensure!(
        force || entries.next().is_none(),
        "--out {} exists and is not empty: give a new folder, or --force to write over the files of the same names",
        out.display()
    );
    Ok(())
}

/// Writes every file into `out` (created private).
fn write_files(config: &ClusterConfig, out: &Path) -> anyhow::Result<Written> {
    create_private_dir(out).with_context(|| format!("creating {}", out.display()))?;
    let mut replicas = Vec::new();
    for r in &config.replicas {
        let path = out.join(format!("replica-{}.toml", r.id));
        config
            .write(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        replicas.push((r.id, path));
    }
    let frontends = config.write_frontend_configs(out)?;
    let tls = match config.tls {
        Some(_) => Some(write_tls(config, out)?),
        None => None,
    };
    let ior = out.join(IOR_FILE);
    let corbaloc = out.join(CORBALOC_FILE);
    for (path, text) in [
        (&ior, group_ior(config)),
        (&corbaloc, group_corbaloc(config)),
    ] {
        write_private(path, format!("{text}\n").as_bytes())
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(Written {
        replicas,
        frontends,
        ior,
        corbaloc,
        tls,
    })
}

/// The group IOR: over TLS when the front ends serve it.
fn group_ior(config: &ClusterConfig) -> String {
    match config.tls {
        Some(_) => dcms_corba::group_ior_tls(&config.frontend_iiops()),
        None => dcms_corba::group_ior(&config.frontend_iiops()),
    }
}

/// The group corbaloc: `ssliop` when the front ends serve TLS.
fn group_corbaloc(config: &ClusterConfig) -> String {
    match config.tls {
        Some(_) => dcms_corba::group_corbaloc_tls(&config.frontend_iiops()),
        None => dcms_corba::group_corbaloc(&config.frontend_iiops()),
    }
}

/// What to copy where and how to start each process.
fn instructions(config: &ClusterConfig, written: &Written) -> String {
    let tolerated = (config.replicas.len() - 1) / 2;
    let mut text = format!(
        "dcms init: cluster {:#x}: {} replicas (the service survives the failure of {tolerated}) and {} front ends\n\
         Copy each file to its host (readable by the user that runs dcms only), then start there:\n",
        config.cluster_id,
        config.replicas.len(),
        config.frontends.len()
    );
    for (id, path) in &written.replicas {
        let r = config.replica(*id).expect("written from the configuration");
        text.push_str(&format!(
            "  replica {id} on {}: dcms replica --config {} --id {id} --bootstrap\n",
            r.udp.ip(),
            path.display()
        ));
    }
    for (id, path) in &written.frontends {
        let f = config
            .frontend(*id)
            .expect("written from the configuration");
        text.push_str(&format!(
            "  front end {id} on {}: dcms frontend --config {} --id {id}\n",
            f.iiop.ip(),
            path.display()
        ));
    }
    text.push_str(&format!(
        "--bootstrap on the group's first start only: a replica restarted later, or whose data was lost, starts without it (and catches up).\n\
         The config path is the file's path on its host. Data folder on every host: {}\n\
         Clients: {}  (also in {}; the IOR in {})\n",
        config.data_dir.display(),
        group_corbaloc(config),
        written.corbaloc.display(),
        written.ior.display()
    ));
    if let (Some(dir), Some(tls)) = (&written.tls, &config.tls) {
        text.push_str(&format!(
            "TLS: front ends serve IIOP over TLS only and require client certificates.\n  \
             On each front-end host put {0}/ca.pem, {0}/server.pem and {0}/server.key (0600) into {1}/.\n  \
             The CA's key {0}/ca.key stays here: dcms cert issue --tls-dir {0} --manager ID makes a manager's certificate.\n  \
             Managers' certificates (certificate and key, 0600): {0}/managers/; a client gives --tls-ca ca.pem --cert ID.pem.\n",
            dir.display(),
            tls.ca.parent().map_or_else(|| config.data_dir.join("tls"), Path::to_path_buf).display()
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;
    use std::os::unix::fs::PermissionsExt;

    /// `dcms init` as the command line gives it.
    #[derive(Parser, Debug)]
    struct Cli {
        #[command(flatten)]
        init: InitArgs,
    }

    fn parse(args: &[&str]) -> Result<InitArgs, String> {
        Cli::try_parse_from(std::iter::once("init").chain(args.iter().copied()))
            .map(|c| c.init)
            .map_err(|e| e.to_string())
    }

    fn three_hosts(out: &Path) -> Vec<String> {
        [
            "--replica",
            "10.0.0.1:7100",
            "--replica",
            "10.0.0.2:7100",
            "--replica",
            "10.0.0.3:7100",
            "--frontend",
            "10.0.0.4:7000",
            "--frontend",
            "10.0.0.5:7000,udp=7200",
            "--data-dir",
            "/srv/dcms",
            "--out",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([out.display().to_string()])
        .collect()
    }

    fn plan_of(args: &[&str]) -> String {
        let args = parse(args).unwrap();
        plan(&args).unwrap_err().to_string()
    }

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn front_end_addresses_parse_with_and_without_a_udp_port() {
        let f = parse_frontend("10.0.0.4:7000").unwrap();
        assert_eq!(f.iiop, "10.0.0.4:7000".parse().unwrap());
        assert_eq!(f.udp, f.iiop, "UDP defaults to the IIOP port number");
        let f = parse_frontend("10.0.0.4:7000,udp=7200").unwrap();
        assert_eq!(f.udp, "10.0.0.4:7200".parse().unwrap());
        let f = parse_frontend("10.0.0.4:7000,udp=192.168.1.4:7200").unwrap();
        assert_eq!(f.udp, "192.168.1.4:7200".parse().unwrap());
        let f = parse_frontend("[fd00::4]:7000,udp=7001").unwrap();
        assert_eq!(f.udp, "[fd00::4]:7001".parse().unwrap());
        for f in [
            parse_frontend("10.0.0.4:7000").unwrap(),
            parse_frontend("10.0.0.4:7000,udp=7200").unwrap(),
            parse_frontend("10.0.0.4:7000,udp=192.168.1.4:7200").unwrap(),
        ] {
            assert_eq!(parse_frontend(&frontend_text(&f)).unwrap(), f);
        }
    }

    #[test]
    fn bad_addresses_are_refused_naming_the_argument() {
        let cases = [
            (
                vec!["--replica", "host-a:7100"],
                "--replica",
                "names are not resolved",
            ),
            (vec!["--replica", "10.0.0.1"], "--replica", "not HOST:PORT"),
            (vec!["--replica", "10.0.0.1:0"], "--replica", "port 0"),
            (
                vec!["--replica", "0.0.0.0:7100"],
                "--replica",
                "no host's address",
            ),
            (
                vec!["--frontend", "10.0.0.4:70000"],
                "--frontend",
                "not HOST:PORT",
            ),
            (
                vec!["--frontend", "10.0.0.4:7000,tcp=1"],
                "--frontend",
                "udp=PORT",
            ),
            (
                vec!["--frontend", "10.0.0.4:7000,udp=x"],
                "--frontend",
                "not a port",
            ),
            (
                vec!["--frontend", "10.0.0.4:7000,udp=0"],
                "--frontend",
                "not a port",
            ),
        ];
        for (args, arg, why) in cases {
            let mut all = args.clone();
            all.extend(["--out", "x"]);
            let err = parse(&all).unwrap_err();
            assert!(err.contains(arg) && err.contains(why), "{args:?}: {err}");
        }
        let err = parse(&["--replica", "10.0.0.1:7100"]).unwrap_err();
        assert!(err.contains("--out"), "{err}");
        let err = parse(&["--out", "x", "--sync", "sometimes"]).unwrap_err();
        assert!(err.contains("--sync"), "{err}");
    }

    #[test]
    fn counts_and_duplicates_are_refused_naming_the_argument() {
        let fe = ["--frontend", "10.0.0.4:7000", "--out", "x"];
        let err = plan_of(&fe);
        assert!(err.contains("at least one --replica"), "{err}");
        let err = plan_of(&["--replica", "10.0.0.1:7100", "--out", "x"]);
        assert!(err.contains("at least one --frontend"), "{err}");
        let mut ten = Vec::new();
        let addrs: Vec<String> = (1..=10).map(|i| format!("10.0.0.{i}:7100")).collect();
        for a in &addrs {
            ten.extend(["--replica", a.as_str()]);
        }
        ten.extend(fe);
        assert!(plan_of(&ten).contains("10 --replica arguments: at most 9"));
        let mut twice = vec!["--replica", "10.0.0.1:7100", "--replica", "10.0.0.1:7100"];
        twice.extend(fe);
        let err = plan_of(&twice);
        assert!(
            err.contains("--replica 10.0.0.1:7100 is given twice"),
            "{err}"
        );
        // A front end's UDP address is a replica's.
        let clash = [
            "--replica",
            "10.0.0.4:7000",
            "--frontend",
            "10.0.0.4:7000",
            "--out",
            "x",
        ];
        let err = plan_of(&clash);
        assert!(
            err.contains("--frontend 10.0.0.4:7000 and --replica 10.0.0.4:7000 both use UDP"),
            "{err}"
        );
        // Two front ends on one IIOP address, or one UDP address.
        let two = [
            "--replica",
            "10.0.0.1:7100",
            "--frontend",
            "10.0.0.4:7000,udp=7001",
            "--frontend",
            "10.0.0.4:7000,udp=7002",
            "--out",
            "x",
        ];
        let err = plan_of(&two);
        assert!(
            err.contains("--frontend 10.0.0.4:7000,udp=7001 and --frontend 10.0.0.4:7000,udp=7002 both listen on IIOP 10.0.0.4:7000"),
            "{err}"
        );
        let same_udp = [
            "--replica",
            "10.0.0.1:7100",
            "--frontend",
            "10.0.0.4:7000,udp=7002",
            "--frontend",
            "10.0.0.4:7001,udp=7002",
            "--out",
            "x",
        ];
        let err = plan_of(&same_udp);
        assert!(err.contains("both use UDP 10.0.0.4:7002"), "{err}");
        // The data folder is a path on the hosts: absolute.
        let relative = [
            "--replica",
            "10.0.0.1:7100",
            "--frontend",
            "10.0.0.4:7000",
            "--data-dir",
            "data",
            "--out",
            "x",
        ];
        assert!(plan_of(&relative).contains("--data-dir data: give an absolute path"));
    }

    #[test]
    fn each_process_gets_a_private_file_with_only_its_keys() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("etc");
        let args = three_hosts(&out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let args = parse(&args).unwrap();
        let config = plan(&args).unwrap();
        check_out_dir(&out, false).unwrap();
        let written = write_files(&config, &out).unwrap();
        assert_eq!(mode(&out), 0o700);
        let mut names: Vec<String> = std::fs::read_dir(&out)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        assert_eq!(
            names,
            [
                "dcms.corbaloc",
                "dcms.ior",
                "frontend-100.toml",
                "frontend-101.toml",
                "replica-1.toml",
                "replica-2.toml",
                "replica-3.toml"
            ]
        );
        for name in &names {
            assert_eq!(mode(&out.join(name)), 0o600, "{name}");
        }
        for (id, path) in &written.replicas {
            let loaded = ClusterConfig::load(path).unwrap();
            loaded.validate_for(Role::Replica).unwrap();
            assert_eq!(loaded, config, "replica {id} holds the whole configuration");
        }
        assert_eq!(
            config
                .replicas
                .iter()
                .map(|r| r.udp.to_string())
                .collect::<Vec<_>>(),
            ["10.0.0.1:7100", "10.0.0.2:7100", "10.0.0.3:7100"]
        );
        assert_eq!(config.data_dir, PathBuf::from("/srv/dcms"));
        assert_eq!(config.sync, "full");
        for (id, path) in &written.frontends {
            let loaded = ClusterConfig::load(path).unwrap();
            loaded.validate_for(Role::FrontEnd(*id)).unwrap();
            assert_eq!(loaded, config.for_frontend(*id).unwrap());
        }
        let fe = config.frontend(101).unwrap();
        assert_eq!(fe.iiop.to_string(), "10.0.0.5:7000");
        assert_eq!(fe.udp.to_string(), "10.0.0.5:7200");
        let corbaloc = std::fs::read_to_string(&written.corbaloc).unwrap();
        assert_eq!(
            corbaloc,
            "corbaloc:iiop:10.0.0.4:7000,:10.0.0.5:7000/DCMS\n"
        );
        let ior = std::fs::read_to_string(&written.ior).unwrap();
        assert_eq!(ior.trim(), dcms_corba::group_ior(&config.frontend_iiops()));
        let text = instructions(&config, &written);
        for line in [
            format!(
                "replica 2 on 10.0.0.2: dcms replica --config {} --id 2 --bootstrap",
                out.join("replica-2.toml").display()
            ),
            format!(
                "front end 101 on 10.0.0.5: dcms frontend --config {} --id 101",
                out.join("frontend-101.toml").display()
            ),
            "survives the failure of 1".into(),
            "corbaloc:iiop:10.0.0.4:7000,:10.0.0.5:7000/DCMS".into(),
        ] {
            assert!(text.contains(&line), "{line} missing from:\n{text}");
        }
    }

    #[test]
    fn with_tls_the_front_ends_serve_tls_from_a_new_ca() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("etc");
        let mut args = three_hosts(&out);
        args.push("--tls".into());
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let config = plan(&parse(&args).unwrap()).unwrap();
        let written = write_files(&config, &out).unwrap();
        let tls = config.tls.clone().expect("a [tls] table");
        assert_eq!(tls.ca, PathBuf::from("/srv/dcms/tls/ca.pem"));
        assert_eq!(tls.key, PathBuf::from("/srv/dcms/tls/server.key"));
        for (id, path) in &written.frontends {
            assert_eq!(
                ClusterConfig::load(path).unwrap().tls.as_ref(),
                Some(&tls),
                "{id}"
            );
        }
        let t = out.join("tls");
        assert_eq!(mode(&t), 0o700);
        for f in [
            "ca.pem",
            "ca.key",
            "server.pem",
            "server.key",
            "managers/MTL0001.pem",
        ] {
            assert_eq!(mode(&t.join(f)), 0o600, "{f}");
        }
        let server = dcms_node::pki::certificate_names(&t.join("server.pem")).unwrap();
        for host in ["10.0.0.4", "10.0.0.5", "127.0.0.1", "localhost"] {
            assert!(server.hosts.iter().any(|h| h == host), "{host}: {server:?}");
        }
        assert_eq!(
            std::fs::read_to_string(&written.corbaloc).unwrap(),
            "corbaloc:ssliop:10.0.0.4:7000,ssliop:10.0.0.5:7000/DCMS\n"
        );
        let ior = std::fs::read_to_string(&written.ior).unwrap();
        assert_eq!(
            ior.trim(),
            dcms_corba::group_ior_tls(&config.frontend_iiops())
        );
        let text = instructions(&config, &written);
        assert!(text.contains("into /srv/dcms/tls/"), "{text}");
        assert!(text.contains("dcms cert issue --tls-dir"), "{text}");
    }

    #[test]
    fn a_folder_that_is_not_empty_needs_force() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("etc");
        check_out_dir(&out, false).unwrap();
        std::fs::create_dir(&out).unwrap();
        check_out_dir(&out, false).unwrap();
        std::fs::write(out.join("notes.txt"), "mine").unwrap();
        let err = check_out_dir(&out, false).unwrap_err().to_string();
        assert!(
            err.contains("--out") && err.contains("not empty") && err.contains("--force"),
            "{err}"
        );
        check_out_dir(&out, true).unwrap();
        let args = three_hosts(&out);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let config = plan(&parse(&args).unwrap()).unwrap();
        write_files(&config, &out).unwrap();
        assert_eq!(
            std::fs::read_to_string(out.join("notes.txt")).unwrap(),
            "mine",
            "other files are left alone"
        );
        // A second run writes new keys over the files.
        let again = plan(&parse(&args).unwrap()).unwrap();
        write_files(&again, &out).unwrap();
        let loaded = ClusterConfig::load(&out.join("replica-1.toml")).unwrap();
        assert_eq!(loaded.replica_key, again.replica_key);
        assert_ne!(loaded.replica_key, config.replica_key);
    }
}
