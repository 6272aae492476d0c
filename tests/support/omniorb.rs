//! The omniORB side: the virtualenv made by `scripts/venv.sh` (found
//! through `DCMS_VENV`, default `<repo>/.venv`), Python stubs of the IDL,
//! the Python check scripts of `tests/interop/`, omniNames.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant};

use dcms_node::local::free_port;

use super::{grouped, repo, Proc};

/// The virtualenv, or a failure telling how to make it.
pub fn venv() -> PathBuf {
    let dir = std::env::var_os("DCMS_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| repo().join(".venv"));
    for tool in ["python", "omniidl", "omniNames", "catior"] {
        let p = dir.join("bin").join(tool);
        assert!(
            p.exists(),
            "{} is missing: run scripts/venv.sh first (it creates {} with omniORB/omniORBpy; \
             DCMS_VENV selects another virtualenv)",
            p.display(),
            dir.display()
        );
    }
    dir
}

pub fn tool(name: &str) -> PathBuf {
    venv().join("bin").join(name)
}

/// A new folder of Python stubs of `idls` (paths in the repository).
pub fn generate_stubs(idls: &[&str]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for idl in idls {
        let out = Command::new(tool("omniidl"))
            .arg("-bpython")
            .arg("-C")
            .arg(dir.path())
            .arg(repo().join(idl))
            .output()
            .expect("running omniidl");
        assert!(
            out.status.success(),
            "omniidl failed on {idl}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    dir
}

/// Python stubs of idl/dcms.idl (and FT's context), generated once per run.
pub fn stubs() -> &'static Path {
    static STUBS: OnceLock<tempfile::TempDir> = OnceLock::new();
    STUBS
        .get_or_init(|| generate_stubs(&["idl/dcms.idl", "tests/interop/ft.idl"]))
        .path()
}

pub fn python(script: &str) -> Command {
    python_with(script, stubs())
}

/// Python stubs of the interface as it was before `listRecordsPage`
/// (`tests/interop/dcms-before-paging.idl`), generated once per run.
pub fn stubs_before_paging() -> &'static Path {
    static STUBS: OnceLock<tempfile::TempDir> = OnceLock::new();
    STUBS
        .get_or_init(|| generate_stubs(&["tests/interop/dcms-before-paging.idl"]))
        .path()
}

pub fn python_with(script: &str, stubs: &Path) -> Command {
    let mut c = Command::new(tool("python"));
    c.arg(repo().join("tests/interop").join(script))
        .env("PYTHONPATH", stubs)
        .env("PYTHONIOENCODING", "utf-8");
    c
}

pub fn run_python_client(reference: &str) {
    run_python_client_with(reference, &[]);
}

/// Runs client.py; returns how many checks it made.
pub fn run_python_client_with(reference: &str, orb_args: &[&str]) -> usize {
    let out = python("client.py")
        .arg(reference)
        .args(orb_args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("ok "),
        "python client failed via {reference}:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let n: usize = stdout.trim()["ok ".len()..].parse().unwrap();
    assert!(n >= 40, "the python client ran all its checks ({n})");
    n
}

/// omniNames on a free port with its own log folder.
pub fn start_omninames(dir: &Path) -> (Proc, u16) {
    let port = free_port(&[]).unwrap();
    let logdir = dir.join("names");
    std::fs::create_dir_all(&logdir).unwrap();
    let child = grouped(&mut Command::new(tool("omniNames")))
        .arg("-start")
        .arg(port.to_string())
        .arg("-logdir")
        .arg(&logdir)
        .arg("-ORBendPoint")
        .arg(format!("giop:tcp:127.0.0.1:{port}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut proc = Proc {
        child,
        name: "omniNames",
    };
    let t0 = Instant::now();
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        proc.assert_running();
        assert!(t0.elapsed() < Duration::from_secs(10), "omniNames listens");
        thread::sleep(Duration::from_millis(50));
    }
    (proc, port)
}

/// Runs a Python check script to its end: it must exit 0 and print
/// `ok N`.
pub fn expect_python_ok(mut script: Command, what: &str) {
    let out = script.output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.starts_with("ok "),
        "{what} failed:\nstdout: {stdout}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}
