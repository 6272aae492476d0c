//! A replica's durable [`Meta`]: the epoch it promised, that epoch's leader,
//! the epoch its log belongs to, and whether its store was wiped. The
//! protocol needs it durable before the datagrams that depend on it leave, so
//! it is written to a temporary file (mode 0600), fsynced, renamed over
//! `replica-N.meta`, and the folder fsynced.
//!
//! Beside it, `replica-N.incarnation` holds the replica's last incarnation:
//! each start takes one higher than the last (and than the clock in
//! microseconds), so the peers' replay windows never take a restarted
//! replica's datagrams for replays, even if the clock went back.

use crate::config::write_private;
use dcms_repl::{Meta, NodeId};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

#[derive(Serialize, Deserialize)]
struct OnDisk {
    epoch: u64,
    leader: Option<u64>,
    log_epoch: u64,
    amnesiac: bool,
}

pub struct MetaFile {
    path: PathBuf,
}

impl MetaFile {
    pub fn new(data_dir: &Path, replica: u64) -> MetaFile {
        MetaFile {
            path: data_dir.join(format!("replica-{replica}.meta")),
        }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The stored meta, `None` when there is no file.
    pub fn load(&self) -> std::io::Result<Option<Meta>> {
        let bytes = match std::fs::read(&self.path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let d: OnDisk = serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", self.path.display()),
            )
        })?;
        Ok(Some(Meta {
            epoch: d.epoch,
            leader: d.leader.map(NodeId),
            log_epoch: d.log_epoch,
            amnesiac: d.amnesiac,
        }))
    }

    /// Writes `meta` durably (temporary file, fsync, rename, fsync folder).
    pub fn store(&self, meta: &Meta) -> std::io::Result<()> {
        let d = OnDisk {
            epoch: meta.epoch,
            leader: meta.leader.map(|n| n.0),
            log_epoch: meta.log_epoch,
            amnesiac: meta.amnesiac,
        };
        write_private(
            &self.path,
            &serde_json::to_vec(&d).expect("meta serializes"),
        )
    }
}

/// This start's incarnation of replica `replica`: higher than the one
/// stored in `<data-dir>/replica-N.incarnation` and than `now_us`; stored
/// durably before it is used.
pub fn next_incarnation(data_dir: &Path, replica: u64, now_us: u64) -> std::io::Result<u64> {
    let path = data_dir.join(format!("replica-{replica}.incarnation"));
    let last = match std::fs::read_to_string(&path) {
        Ok(text) => text.trim().parse::<u64>().map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!("{}: {e}", path.display()),
            )
        })?,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let next = now_us.max(last + 1);
    write_private(&path, next.to_string().as_bytes())?;
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incarnations_only_go_up_even_when_the_clock_goes_back() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(next_incarnation(dir.path(), 1, 1_000).unwrap(), 1_000);
        assert_eq!(next_incarnation(dir.path(), 1, 500).unwrap(), 1_001);
        assert_eq!(next_incarnation(dir.path(), 1, 5_000).unwrap(), 5_000);
        assert_eq!(
            next_incarnation(dir.path(), 2, 7).unwrap(),
            7,
            "per replica"
        );
    }

    #[test]
    fn meta_round_trips_and_a_missing_file_is_none() {
        let dir = tempfile::tempdir().unwrap();
        let f = MetaFile::new(dir.path(), 2);
        assert_eq!(f.load().unwrap(), None);
        let m = Meta {
            epoch: 7,
            leader: Some(NodeId(3)),
            log_epoch: 6,
            amnesiac: false,
        };
        f.store(&m).unwrap();
        assert_eq!(f.load().unwrap(), Some(m));
        f.store(&Meta::wiped()).unwrap();
        assert_eq!(f.load().unwrap(), Some(Meta::wiped()));
        std::fs::write(f.path(), b"{bad").unwrap();
        assert!(f.load().unwrap_err().to_string().contains("replica-2.meta"));
    }
}
