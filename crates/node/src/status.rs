//! Status files: each process writes `status/<name>.json` in the data folder
//! (`replica-<id>`, `frontend-<id>`)
//! a few times a second; `dcms status` reads them and checks that each PID
//! is alive. Written to a temporary file and renamed, so a reader never sees
//! half a file.

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// A front end serving plain IIOP.
pub const TRANSPORT_PLAIN: &str = "iiop";
/// A front end serving IIOP over TLS only, requiring client certificates.
pub const TRANSPORT_TLS: &str = "iiop+tls";

/// Milliseconds between status writes.
pub const STATUS_INTERVAL_MS: u64 = 200;

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ProcessStatus {
    pub name: String,
    pub id: u64,
    /// leader, backup or frontend.
    pub role: String,
    pub pid: u32,
    pub epoch: u64,
    pub leader: Option<u64>,
    /// Leader: the backups it waits for; others: empty.
    pub group: Vec<u64>,
    /// Every peer and how long ago it was last heard from.
    #[serde(default)]
    pub peers: Vec<PeerSeen>,
    pub applied: u64,
    pub durable: u64,
    pub committed: Option<u64>,
    pub digest: String,
    /// A front end: where CORBA clients reach it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iiop: Option<String>,
    /// A front end: how clients reach it, [`TRANSPORT_PLAIN`] or
    /// [`TRANSPORT_TLS`] (only one is served at a time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transport: Option<String>,
    pub stats: serde_json::Value,
    /// When this was written (ms since the Unix epoch).
    pub updated_ms: u64,
    /// Where its Prometheus metrics are served (`--metrics-addr`), if they are.
    #[serde(default)]
    pub metrics: Option<String>,
}

/// A ticker that wakes an event loop to write its status file even when
/// nothing else happens (an idle process must not look dead).
pub fn ticker() -> tokio::time::Interval {
    let mut tick = tokio::time::interval(std::time::Duration::from_millis(STATUS_INTERVAL_MS));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tick
}

/// A peer as a process last heard from it.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct PeerSeen {
    pub node: u64,
    pub replica: bool,
    pub heard_ms_ago: u64,
    pub suspected: bool,
}

pub fn status_dir(data_dir: &Path) -> PathBuf {
    data_dir.join("status")
}

pub struct StatusWriter {
    path: PathBuf,
    last_ms: u64,
}

impl StatusWriter {
    pub fn new(data_dir: &Path, name: &str) -> StatusWriter {
        let dir = status_dir(data_dir);
        let _ = std::fs::create_dir_all(&dir);
        StatusWriter {
            path: dir.join(format!("{name}.json")),
            last_ms: 0,
        }
    }

    /// Writes the status if the last write is older than the interval.
    pub fn maybe_write(&mut self, now_ms: u64, status: impl FnOnce() -> ProcessStatus) {
        if now_ms < self.last_ms + STATUS_INTERVAL_MS {
            return;
        }
        self.last_ms = now_ms;
        let tmp = self.path.with_extension("json.tmp");
        let json = serde_json::to_vec_pretty(&status()).expect("status serializes");
        if std::fs::write(&tmp, json)
            .and_then(|_| std::fs::rename(&tmp, &self.path))
            .is_err()
        {
            tracing::debug!(path = %self.path.display(), "could not write the status file");
        }
    }
}

/// Reads every status file in the data folder.
pub fn read_all(data_dir: &Path) -> Vec<ProcessStatus> {
    let Ok(entries) = std::fs::read_dir(status_dir(data_dir)) else {
        return Vec::new();
    };
    let mut all: Vec<ProcessStatus> = entries
        .filter_map(|e| e.ok())
        .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
        .filter_map(|e| serde_json::from_slice(&std::fs::read(e.path()).ok()?).ok())
        .collect();
    all.sort_by(|a, b| a.name.cmp(&b.name));
    all
}
