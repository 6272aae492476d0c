//! The cluster configuration: one TOML file that names every process's
//! addresses, the data folder, the timeouts, the cluster secret and the
//! fault-injection settings. `dcms up` writes one for a local cluster;
//! command-line flags and `DCMS_*` variables override single values.
//!
//! ```toml
//! cluster_id = 7
//! secret = "3f1c..."            # hex; keys the HMAC of every datagram
//! data_dir = "dcms-data"
//!
//! [frontend]
//! id = 100                      # node ID (also its request stream)
//! udp = "127.0.0.1:7100"
//! iiop = "127.0.0.1:7000"
//!
//! [[replicas]]
//! id = 1
//! udp = "127.0.0.1:7101"
//! ```

use crate::faults::FaultConfig;
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Errors reading or checking a configuration: each names the problem.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse {
        path: PathBuf,
        #[source]
        source: toml::de::Error,
    },
    #[error("invalid configuration: {0}")]
    Invalid(String),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Datagrams of another cluster are refused.
    pub cluster_id: u64,
    /// Hex-encoded secret keying the HMAC-SHA256 tag of every datagram.
    pub secret: String,
    /// Where each replica keeps `replica-N.db` and the front end its IOR file.
    pub data_dir: PathBuf,
    pub frontend: FrontendConfig,
    pub replicas: Vec<ReplicaAddr>,
    #[serde(default)]
    pub timeouts: Timeouts,
    #[serde(default)]
    pub faults: FaultConfig,
    /// Largest datagram, in bytes (larger payloads are split).
    #[serde(default = "default_max_datagram")]
    pub max_datagram: usize,
    /// SQLite durability: "full" (fsync every commit) or "normal".
    #[serde(default = "default_sync")]
    pub sync: String,
    /// Send every datagram twice while a process keeps repairing losses
    /// (see `link::Redundancy`).
    #[serde(default = "default_true")]
    pub adaptive_redundancy: bool,
}

fn default_true() -> bool {
    true
}

fn default_max_datagram() -> usize {
    dcms_repl::wire::DEFAULT_MAX_DATAGRAM
}

fn default_sync() -> String {
    "full".into()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FrontendConfig {
    /// Node ID; also names the front end's request stream.
    pub id: u64,
    pub udp: SocketAddr,
    /// Where CORBA clients connect.
    pub iiop: SocketAddr,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReplicaAddr {
    pub id: u64,
    pub udp: SocketAddr,
}

/// Protocol timers, in milliseconds.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Timeouts {
    /// A client hears TRANSIENT (COMPLETED_MAYBE) when no outcome is known by then.
    pub outcome_ms: u64,
    /// Leader: resend to a backup whose acknowledgement has not advanced.
    pub retransmit_ms: u64,
    /// Wait before the first "message lost" request for a new gap (lets
    /// reordered datagrams arrive first; loopback does not reorder).
    pub nack_delay_ms: u64,
    /// Delay between "message lost" requests while a gap stays open.
    pub nack_retry_ms: u64,
    /// Front end: bounds of the retransmission timeout, which otherwise
    /// follows the measured round-trip time (RFC 6298). The maximum bounds
    /// exponential backoff so that random loss cannot push a retransmission
    /// past the client's deadline.
    pub rto_min_ms: u64,
    pub rto_max_ms: u64,
    /// Failure detection, bully election and failover (off: a fixed leader).
    pub failover: bool,
    /// Heartbeat interval.
    pub heartbeat_ms: u64,
    /// A process silent this long is suspected.
    pub suspect_ms: u64,
    /// Bully election: how long to wait for an answer from a higher replica.
    pub election_ms: u64,
}

impl Default for Timeouts {
    fn default() -> Timeouts {
        Timeouts {
            outcome_ms: 5_000,
            retransmit_ms: 10,
            nack_delay_ms: 1,
            nack_retry_ms: 5,
            rto_min_ms: 5,
            rto_max_ms: 250,
            failover: true,
            heartbeat_ms: 20,
            suspect_ms: 150,
            election_ms: 50,
        }
    }
}

impl ClusterConfig {
    /// A local cluster on 127.0.0.1: front end on `base_port` (IIOP) and
    /// `base_port + 1` (UDP), replicas on the ports after.
    pub fn local(
        base_port: u16,
        replicas: u64,
        data_dir: PathBuf,
        secret: String,
    ) -> ClusterConfig {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        ClusterConfig {
            cluster_id: u64::from(base_port) << 16 | 0xdc,
            secret,
            data_dir,
            frontend: FrontendConfig {
                id: 100,
                udp: addr(base_port + 1),
                iiop: addr(base_port),
            },
            replicas: (1..=replicas)
                .map(|id| ReplicaAddr {
                    id,
                    udp: addr(base_port + 1 + id as u16),
                })
                .collect(),
            timeouts: Timeouts::default(),
            faults: FaultConfig::default(),
            max_datagram: default_max_datagram(),
            sync: default_sync(),
            adaptive_redundancy: true,
        }
    }

    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: ClusterConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("configurations always serialize")
    }

    /// The secret's bytes.
    pub fn secret_bytes(&self) -> Result<Vec<u8>, ConfigError> {
        let bytes = hex::decode(self.secret.trim())
            .map_err(|e| ConfigError::Invalid(format!("secret is not hex: {e}")))?;
        if bytes.len() < 16 {
            return Err(ConfigError::Invalid(format!(
                "secret has {} bytes; at least 16 are needed",
                bytes.len()
            )));
        }
        Ok(bytes)
    }

    pub fn sync_mode(&self) -> Result<dcms_core::SyncMode, ConfigError> {
        dcms_core::SyncMode::parse(&self.sync).ok_or_else(|| {
            ConfigError::Invalid(format!("sync {:?}: expected full or normal", self.sync))
        })
    }

    pub fn replica(&self, id: u64) -> Result<&ReplicaAddr, ConfigError> {
        self.replicas.iter().find(|r| r.id == id).ok_or_else(|| {
            ConfigError::Invalid(format!("no replica with id {id} in the configuration"))
        })
    }

    /// The database file of replica `id`.
    pub fn replica_db(&self, id: u64) -> PathBuf {
        self.data_dir.join(format!("replica-{id}.db"))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |m: String| Err(ConfigError::Invalid(m));
        self.secret_bytes()?;
        self.sync_mode()?;
        if self.replicas.is_empty() {
            return bad("at least one replica is needed".into());
        }
        let mut ids: Vec<u64> = self.replicas.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.replicas.len() {
            return bad("replica IDs must be unique".into());
        }
        if ids.contains(&self.frontend.id) {
            return bad(format!(
                "front end ID {} is also a replica ID",
                self.frontend.id
            ));
        }
        if ids.contains(&0) {
            return bad("replica ID 0 is reserved".into());
        }
        let mut addrs: Vec<SocketAddr> = self.replicas.iter().map(|r| r.udp).collect();
        addrs.push(self.frontend.udp);
        addrs.sort_unstable();
        addrs.dedup();
        if addrs.len() != self.replicas.len() + 1 {
            return bad("every process needs its own UDP address".into());
        }
        if !(dcms_repl::wire::MIN_MAX_DATAGRAM..=dcms_repl::wire::MAX_MAX_DATAGRAM)
            .contains(&self.max_datagram)
        {
            return bad(format!(
                "max_datagram {} is outside {}..={}",
                self.max_datagram,
                dcms_repl::wire::MIN_MAX_DATAGRAM,
                dcms_repl::wire::MAX_MAX_DATAGRAM
            ));
        }
        let t = &self.timeouts;
        if t.outcome_ms == 0 || t.retransmit_ms == 0 || t.nack_retry_ms == 0 || t.heartbeat_ms == 0
        {
            return bad("timeouts must be positive".into());
        }
        if t.rto_min_ms == 0 || t.rto_min_ms > t.rto_max_ms {
            return bad(format!(
                "rto_min_ms ({}) must be positive and at most rto_max_ms ({})",
                t.rto_min_ms, t.rto_max_ms
            ));
        }
        if t.suspect_ms <= 2 * t.heartbeat_ms {
            return bad(format!(
                "suspect_ms ({}) must exceed two heartbeats ({} ms each)",
                t.suspect_ms, t.heartbeat_ms
            ));
        }
        self.faults.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local() -> ClusterConfig {
        ClusterConfig::local(
            7000,
            3,
            "d".into(),
            "00112233445566778899aabbccddeeff".into(),
        )
    }

    #[test]
    fn a_local_configuration_round_trips_through_toml() {
        let c = local();
        c.validate().unwrap();
        let back: ClusterConfig = toml::from_str(&c.to_toml()).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.replica(3).unwrap().udp.port(), 7004);
        assert_eq!(c.replica_db(2), PathBuf::from("d/replica-2.db"));
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        let mut c = local();
        c.secret = "zz".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("secret is not hex"));
        let mut c = local();
        c.secret = "0011".into();
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("at least 16"));
        let mut c = local();
        c.replicas[1].id = 1;
        assert!(c.validate().unwrap_err().to_string().contains("unique"));
        let mut c = local();
        c.frontend.id = 2;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("also a replica"));
        let mut c = local();
        c.replicas[0].udp = c.frontend.udp;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("own UDP address"));
        let mut c = local();
        c.sync = "sometimes".into();
        assert!(c.validate().unwrap_err().to_string().contains("sync"));
        let mut c = local();
        c.faults.drop = 1.5;
        assert!(c.validate().is_err());
        let err = toml::from_str::<ClusterConfig>("cluster_id = 1\nbogus = 2").unwrap_err();
        assert!(err.to_string().contains("bogus") || err.to_string().contains("missing"));
    }
}
