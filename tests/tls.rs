//! IIOP over TLS with client certificates, multi-process: `dcms up --tls`
//! (three replicas, two front ends, each its own process), `dcms cert`,
//! `dcms status` and `dcms client` as an operator runs them.
//!
//! A manager's certificate lets it call as itself; no certificate, an
//! expired one, one of another CA, or one naming MTL0001 while calling as
//! LVL0001 each fail, and nothing changes: the records, the replicas'
//! positions and the requests the front ends handed on are the same after.
//! Plain IIOP is off while TLS is on, and back after a start without
//! `--tls`.

use dcms_node::local::LocalCluster;
use dcms_node::pki::{self, Ca, TlsDir, Validity};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

const DCMS: &str = env!("CARGO_BIN_EXE_dcms");

fn up(data_dir: &Path, extra: &[&str]) -> LocalCluster {
    let args: Vec<String> = ["--replicas", "3", "--sync", "normal"]
        .iter()
        .chain(extra)
        .map(|a| a.to_string())
        .collect();
    LocalCluster::start(Path::new(DCMS), Some(data_dir), &args, true).expect("the cluster starts")
}

fn dcms(args: &[&str]) -> Output {
    Command::new(DCMS)
        .args(args)
        .env_remove("DCMS_DATA_DIR")
        .env_remove("DCMS_URL")
        .env_remove("DCMS_MANAGER")
        .env_remove("DCMS_TLS_CA")
        .env_remove("DCMS_CERT")
        .output()
        .expect("dcms runs")
}

fn text(o: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        o.status,
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

fn mode(p: &Path) -> u32 {
    std::fs::metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// `dcms client` against the cluster with `tls` arguments, as `manager`.
fn client(url: &str, tls: &[&str], manager: &str, op: &[&str]) -> Output {
    let mut args = vec!["client", "--url", url, "--timeout-secs", "5"];
    args.extend_from_slice(tls);
    args.extend_from_slice(&["--manager", manager]);
    args.extend_from_slice(op);
    dcms(&args)
}

const CREATE: [&str; 11] = [
    "create-nurse",
    "--first-name",
    "Ada",
    "--last-name",
    "Roy",
    "--designation",
    "junior",
    "--status",
    "active",
    "--status-date",
    "2024-01-02",
];

/// What must not move when a request is refused: the counts, each
/// replica's applied position, and the requests each front end handed on.
fn footprint(cluster: &LocalCluster, ca: &str, cert: &str) -> (String, Vec<(String, u64)>) {
    // The status files are written every 200 ms.
    std::thread::sleep(Duration::from_millis(600));
    let mut positions: Vec<(String, u64)> = dcms_node::status::read_all(&cluster.data_dir)
        .into_iter()
        .map(|s| {
            let n = if s.role == "frontend" {
                s.stats["requests"].as_u64().unwrap_or(0)
            } else {
                s.applied
            };
            (s.name, n)
        })
        .collect();
    positions.sort();
    let counts = client(
        &cluster.corbaloc,
        &["--tls-ca", ca, "--cert", cert],
        "MTL0001",
        &["counts"],
    );
    assert!(counts.status.success(), "{}", text(&counts));
    let counts = String::from_utf8_lossy(&counts.stdout).trim().to_string();
    (counts, positions)
}

/// MTL0001 certificates that must not work, written in `into`: one of the
/// cluster's CA that expired yesterday, and a valid one of another CA.
fn bad_certificates(dir: &TlsDir, into: &Path) -> (PathBuf, PathBuf) {
    let mtl = || pki::manager_id("MTL0001").unwrap();
    let expired = into.join("expired.pem");
    let past = Validity::between(
        time::OffsetDateTime::now_utc() - time::Duration::days(30),
        time::OffsetDateTime::now_utc() - time::Duration::days(1),
    );
    let cert = Ca::load(dir).unwrap().issue_manager(mtl(), past).unwrap();
    std::fs::write(&expired, cert.combined()).unwrap();
    let other = into.join("other-ca.pem");
    let stranger = Ca::generate("another CA", Validity::days(10).unwrap()).unwrap();
    let cert = stranger
        .issue_manager(mtl(), Validity::days(10).unwrap())
        .unwrap();
    std::fs::write(&other, cert.combined()).unwrap();
    (expired, other)
}

#[test]
fn a_tls_cluster_serves_each_manager_only_with_its_own_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let mut cluster = up(&data, &["--tls"]);
    let dir = TlsDir::of_data_dir(&data);
    let p = |f: &Path| f.display().to_string();
    let ca = p(&dir.ca_cert());
    let mtl = p(&dir.managers().join("MTL0001.pem"));
    let lvl = p(&dir.managers().join("LVL0001.pem"));

    // The CA, the server's certificate and the first managers', private.
    assert_eq!(mode(dir.path()), 0o700);
    for f in [
        dir.ca_cert(),
        dir.ca_key(),
        dir.server_cert(),
        dir.server_key(),
    ]
    .into_iter()
    .chain(["MTL0001", "LVL0001", "DDO0001"].map(|m| dir.managers().join(format!("{m}.pem"))))
    {
        assert_eq!(mode(&f), 0o600, "{}", f.display());
    }
    assert!(cluster.corbaloc.starts_with("corbaloc:ssliop:127.0.0.1:"));
    let ior = std::fs::read_to_string(data.join("dcms.ior")).unwrap();
    assert_eq!(ior.trim(), cluster.group_ior());

    // dcms cert issue: a new manager; bad input named.
    let issued = dcms(&[
        "cert",
        "issue",
        "--data-dir",
        &p(&data),
        "--manager",
        "lvl0002",
    ]);
    assert!(issued.status.success(), "{}", text(&issued));
    let lvl2 = dir.managers().join("LVL0002.pem");
    assert_eq!(mode(&lvl2), 0o600);
    assert_eq!(
        pki::certificate_names(&lvl2).unwrap().common_names,
        ["LVL0002"]
    );
    for (args, named) in [
        (vec!["--manager", "XYZ0001"], "XYZ0001"),
        (vec!["--manager", "MTL001"], "--manager"),
        (vec!["--manager", "MTL0003", "--days", "0"], "--days"),
    ] {
        let mut a = vec!["cert", "issue", "--data-dir", data.to_str().unwrap()];
        a.extend(args.iter().copied());
        let o = dcms(&a);
        assert!(!o.status.success(), "{}", text(&o));
        assert!(
            String::from_utf8_lossy(&o.stderr).contains(named),
            "{named}: {}",
            text(&o)
        );
        assert!(
            !String::from_utf8_lossy(&o.stderr).contains("panicked"),
            "{}",
            text(&o)
        );
    }
    let no_ca = dcms(&[
        "cert",
        "issue",
        "--data-dir",
        &p(&tmp.path().join("nothing")),
        "--manager",
        "MTL0001",
    ]);
    assert!(!no_ca.status.success());
    assert!(
        String::from_utf8_lossy(&no_ca.stderr).contains("no certificate authority"),
        "{}",
        text(&no_ca)
    );

    // dcms status says which transport is on.
    let status = dcms(&["status", "--data-dir", &p(&data)]);
    let out = String::from_utf8_lossy(&status.stdout);
    assert!(
        out.contains("transport: IIOP over TLS, client certificates required (plain IIOP off)"),
        "{}",
        text(&status)
    );
    assert!(out.contains("ssliop 127.0.0.1:"), "{}", text(&status));
    let json = dcms(&["status", "--data-dir", &p(&data), "--json"]);
    let list: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    let frontends: Vec<&serde_json::Value> = list
        .as_array()
        .unwrap()
        .iter()
        .filter(|s| s["name"].as_str().unwrap().starts_with("frontend-"))
        .collect();
    assert_eq!(frontends.len(), 2);
    for f in frontends {
        assert_eq!(f["transport"], "iiop+tls", "{f}");
    }

    // A good certificate: by the corbaloc and by the IOR file.
    let good = client(
        &cluster.corbaloc,
        &["--tls-ca", &ca, "--cert", &mtl],
        "MTL0001",
        &CREATE,
    );
    assert!(good.status.success(), "{}", text(&good));
    let id = String::from_utf8_lossy(&good.stdout).trim().to_string();
    assert!(id.starts_with("NR"), "{id}");
    let by_ior = dcms(&[
        "client",
        "--ior-file",
        &p(&data.join("dcms.ior")),
        "--tls-ca",
        &ca,
        "--cert",
        &lvl,
        "--manager",
        "LVL0001",
        "counts",
    ]);
    assert!(by_ior.status.success(), "{}", text(&by_ior));
    let lvl2_call = client(
        &cluster.corbaloc,
        &["--tls-ca", &ca, "--cert", &p(&lvl2)],
        "LVL0002",
        &["counts"],
    );
    assert!(lvl2_call.status.success(), "{}", text(&lvl2_call));

    // Certificates that must not work: expired, of another CA.
    let (expired, other) = bad_certificates(&dir, tmp.path());

    let before = footprint(&cluster, &ca, &mtl);
    // MTL0001's certificate calling as LVL0001: NotAuthorized.
    for op in [&CREATE[..], &["counts"][..]] {
        let o = client(
            &cluster.corbaloc,
            &["--tls-ca", &ca, "--cert", &mtl],
            "LVL0001",
            op,
        );
        assert!(!o.status.success(), "{}", text(&o));
        let all = text(&o);
        assert!(
            all.contains("NotAuthorized") && all.contains("MTL0001"),
            "{all}"
        );
    }
    // No certificate, expired, another CA: the handshake fails.
    for tls in [
        vec!["--tls-ca", ca.as_str()],
        vec!["--tls-ca", ca.as_str(), "--cert", expired.to_str().unwrap()],
        vec!["--tls-ca", ca.as_str(), "--cert", other.to_str().unwrap()],
    ] {
        let o = client(&cluster.corbaloc, &tls, "MTL0001", &CREATE);
        assert!(!o.status.success(), "{tls:?}: {}", text(&o));
        let all = text(&o);
        assert!(
            all.contains("COMM_FAILURE") || all.contains("TRANSIENT"),
            "{tls:?}: {all}"
        );
    }
    // No TLS at all: plain IIOP is off.
    let plain_url = dcms_corba::group_corbaloc(&cluster.config.frontend_iiops());
    let o = client(&plain_url, &[], "MTL0001", &CREATE);
    assert!(!o.status.success(), "{}", text(&o));
    let o = client(&cluster.corbaloc, &[], "MTL0001", &CREATE);
    assert!(!o.status.success(), "{}", text(&o));
    assert!(text(&o).contains("--tls-ca"), "{}", text(&o));
    // A bad file is named.
    let o = client(
        &cluster.corbaloc,
        &["--tls-ca", "/nonexistent/ca.pem"],
        "MTL0001",
        &["counts"],
    );
    assert!(!o.status.success());
    assert!(
        text(&o).contains("--tls-ca /nonexistent/ca.pem"),
        "{}",
        text(&o)
    );
    let after = footprint(&cluster, &ca, &mtl);
    assert_eq!(after.0, before.0, "the records did not change");
    // The counts read itself is a request (one more on one front end);
    // the replicas apply nothing for a read.
    let moved: Vec<_> = before
        .1
        .iter()
        .zip(&after.1)
        .filter(|(b, a)| b != a)
        .map(|(b, a)| format!("{} {} -> {}", b.0, b.1, a.1))
        .collect();
    assert!(
        moved.len() <= 1 && moved.iter().all(|m| m.starts_with("frontend-")),
        "refused requests reached the cluster: {moved:?}"
    );

    // Started again without --tls: plain IIOP, and status says so.
    cluster.stop();
    drop(cluster);
    let cluster = up(&data, &[]);
    assert!(cluster.corbaloc.starts_with("corbaloc:iiop:"));
    let counts = client(&cluster.corbaloc, &[], "LVL0001", &["counts"]);
    assert!(counts.status.success(), "{}", text(&counts));
    assert_eq!(String::from_utf8_lossy(&counts.stdout).trim(), after.0);
    let status = dcms(&["status", "--data-dir", &p(&data)]);
    assert!(
        String::from_utf8_lossy(&status.stdout).contains("transport: plain IIOP"),
        "{}",
        text(&status)
    );

    // The audit trail: the create over TLS names the manager its
    // certificate proved, on every replica; one over plain IIOP names a
    // self-declared manager only.
    let plain = client(&cluster.corbaloc, &[], "MTL0001", &CREATE);
    assert!(plain.status.success(), "{}", text(&plain));
    let plain_id = String::from_utf8_lossy(&plain.stdout).trim().to_string();
    let mut cluster = cluster;
    cluster.stop();
    for replica in &cluster.config.replicas {
        let db = cluster.config.replica_db(replica.id);
        let store = dcms_core::Store::open(&db, dcms_core::SyncMode::Normal).unwrap();
        let audit = store.audit().unwrap();
        let creates: Vec<(&str, Option<&str>)> = audit
            .iter()
            .filter(|(_, a)| a.operation == "createNRecord")
            .map(|(_, a)| (a.outcome.as_str(), a.authenticated.as_deref()))
            .collect();
        assert_eq!(
            creates,
            vec![
                (format!("ok: {id}").as_str(), Some("MTL0001")),
                (format!("ok: {plain_id}").as_str(), None),
            ],
            "{}",
            db.display()
        );
        let (_, tls_create) = audit
            .iter()
            .find(|(_, a)| a.outcome == format!("ok: {id}"))
            .unwrap();
        let line = dcms_core::audit::format_line(0, tls_create);
        assert!(
            line.contains(" MTL0001 cert=MTL0001 createNRecord "),
            "{line}"
        );
    }
}

// --- omniORBpy over TLS ------------------------------------------------------

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The test virtualenv's python, with omniORB's SSL transport
/// (`scripts/venv.sh` makes it: the wheel lacks the transport, and
/// `scripts/omniorb-ssl.sh` builds it from `vendor/omniorb/`).
fn venv_python() -> PathBuf {
    let dir = std::env::var_os("DCMS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"));
    let python = dir.join("bin/python");
    let ok = Command::new(&python)
        .args(["-c", "from omniORB import sslTP"])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "{} cannot import omniORB.sslTP: run scripts/venv.sh first (it builds omniORB's SSL \
         transport into {}; DCMS_VENV selects another virtualenv)",
        python.display(),
        dir.display()
    );
    python
}

/// Python stubs of idl/dcms.idl, made with the virtualenv's omniidl.
fn stubs(python: &Path) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let omniidl = python.parent().unwrap().join("omniidl");
    let out = Command::new(omniidl)
        .arg("-bpython")
        .arg("-C")
        .arg(dir.path())
        .arg(repo().join("idl/dcms.idl"))
        .output()
        .expect("running omniidl");
    assert!(out.status.success(), "omniidl: {}", text(&out));
    dir
}

/// `tests/interop/tls_client.py`: its one line of outcome.
fn omniorbpy(
    python: &Path,
    stubs: &Path,
    reference: &str,
    ca: &Path,
    cert: Option<&Path>,
    manager: &str,
) -> String {
    let out = Command::new(python)
        .arg(repo().join("tests/interop/tls_client.py"))
        .arg(reference)
        .arg(ca)
        .arg(cert.map_or_else(|| "-".into(), |c| c.display().to_string()))
        .arg(manager)
        .env("PYTHONPATH", stubs)
        .output()
        .expect("running python");
    assert!(out.status.success(), "tls_client.py: {}", text(&out));
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// omniORBpy (omniORB 4.3.3 with its SSL transport) against `dcms up
/// --tls`: a manager's own certificate works, by the group IOR and by the
/// `corbaloc:ssliop:` URL; MTL0001's certificate calling as LVL0001 gets
/// `DCMS::NotAuthorized`; no certificate, an expired one or one of another
/// CA fail in the handshake (COMM_FAILURE or TRANSIENT); and those change
/// nothing.
#[test]
fn omniorbpy_over_tls_is_served_only_with_a_good_certificate() {
    let python = venv_python();
    let stubs = stubs(&python);
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cluster = up(&data, &["--tls"]);
    let dir = TlsDir::of_data_dir(&data);
    let ca = dir.ca_cert();
    let mtl = dir.managers().join("MTL0001.pem");
    let ior = std::fs::read_to_string(data.join("dcms.ior")).unwrap();
    let ior = ior.trim();
    let run = |reference: &str, cert: Option<&Path>, manager: &str| {
        omniorbpy(&python, stubs.path(), reference, &ca, cert, manager)
    };

    let by_ior = run(ior, Some(&mtl), "MTL0001");
    assert!(by_ior.starts_with("ok NR"), "{by_ior}");
    let by_url = run(
        &cluster.corbaloc,
        Some(&dir.managers().join("LVL0001.pem")),
        "LVL0001",
    );
    assert!(
        by_url.starts_with("ok NR") && by_url.ends_with("MTL1,LVL1,DDO0"),
        "{by_url}"
    );

    let (expired, other) = bad_certificates(&dir, tmp.path());

    let ca_s = ca.display().to_string();
    let mtl_s = mtl.display().to_string();
    let before = footprint(&cluster, &ca_s, &mtl_s);
    let mismatch = run(ior, Some(&mtl), "LVL0001");
    assert!(
        mismatch.starts_with("user NotAuthorized LVL0001 ") && mismatch.contains("MTL0001"),
        "{mismatch}"
    );
    for cert in [None, Some(expired.as_path()), Some(other.as_path())] {
        let got = run(ior, cert, "MTL0001");
        assert!(
            got.starts_with("system COMM_FAILURE") || got.starts_with("system TRANSIENT"),
            "{cert:?}: {got}"
        );
    }
    let after = footprint(&cluster, &ca_s, &mtl_s);
    assert_eq!(after.0, before.0, "the records did not change");
    let moved: Vec<_> = before
        .1
        .iter()
        .zip(&after.1)
        .filter(|(b, a)| b != a)
        .map(|(b, a)| format!("{} {} -> {}", b.0, b.1, a.1))
        .collect();
    assert!(
        moved.len() <= 1 && moved.iter().all(|m| m.starts_with("frontend-")),
        "refused requests reached the cluster: {moved:?}"
    );
}

/// The TLS group reference fails over: a Rust client holding the group
/// IOR (one TLS profile per front end) keeps being served, with its
/// certificate, when the front end it uses is killed: at most the call in
/// flight fails, and the calls after go to the other front end.
#[test]
fn a_tls_client_of_the_group_survives_the_kill_of_its_front_end() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let cluster = up(
        &data,
        &["--tls", "--frontends", "2", "--restart-after-ms", "5000"],
    );
    let dir = TlsDir::of_data_dir(&data);
    let opts = dcms_corba::ClientOptions {
        connect_timeout: Duration::from_secs(1),
        call_timeout: Duration::from_secs(10),
        tls: Some(dcms_corba::ClientTls {
            ca_file: dir.ca_cert(),
            cert_file: Some(dir.managers().join("MTL0001.pem")),
        }),
        ..dcms_corba::ClientOptions::default()
    };
    let ior = std::fs::read_to_string(data.join("dcms.ior")).unwrap();
    let client = dcms_corba::ClinicClient::connect(ior.trim(), &opts).unwrap();
    let create = |i: usize| {
        client.create_n_record(
            "MTL0001",
            "Ann",
            &format!("Ng{i}"),
            "senior",
            "active",
            "2024-01-31",
        )
    };
    for i in 0..10 {
        create(i).unwrap();
    }
    std::thread::sleep(Duration::from_millis(600));
    let before_101 = cluster.frontend_requests(101).expect("front end 101 runs");
    let victim = cluster.pid_of("frontend-100").expect("front end 100 runs");
    // SAFETY: kill(2) on a PID of a process this test started.
    unsafe {
        libc::kill(victim as i32, libc::SIGKILL);
    }
    let mut failed = 0;
    for i in 100..120 {
        if let Err(e) = create(i) {
            failed += 1;
            assert!(
                ["CORBA::COMM_FAILURE", "CORBA::TRANSIENT"].contains(&e.name().as_str()),
                "{e:?}"
            );
        }
    }
    assert!(failed <= 1, "{failed} calls failed after the kill");
    std::thread::sleep(Duration::from_millis(600));
    let after_101 = cluster.frontend_requests(101).unwrap_or(0);
    assert!(
        after_101 >= before_101 + 19,
        "front end 101 took {before_101} -> {after_101}"
    );
}
