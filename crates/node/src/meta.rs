//! A replica's durable [`Meta`]: the epoch it promised, that epoch's leader,
//! the epoch its log belongs to, and whether its store was wiped. The
//! protocol needs it durable before the datagrams that depend on it leave, so
//! it is written to a temporary file, fsynced, renamed over `replica-N.meta`,
//! and the folder fsynced.

use dcms_repl::{Meta, NodeId};
use serde::{Deserialize, Serialize};
use std::io::Write;
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
        let tmp = self.path.with_extension("meta.tmp");
        {
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(&serde_json::to_vec(&d).expect("meta serializes"))?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(dir) = self.path.parent() {
            std::fs::File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
