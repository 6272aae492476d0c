//! The cluster configuration: one TOML file that names every process's
//! addresses, the data folder, the timeouts, the keys and the
//! fault-injection settings. `dcms up` writes one for a local cluster
//! (`cluster.toml`, for the replicas) and the same without the replicas'
//! key for the front end (`frontend.toml`); command-line flags and `DCMS_*`
//! variables override single values.
//!
//! ```toml
//! cluster_id = 7
//! replica_key = "3f1c..."       # hex; only replicas hold it
//! data_dir = "dcms-data"
//!
//! [frontend]
//! id = 100                      # its key's ID (its streams are random)
//! udp = "127.0.0.1:7100"
//! iiop = "127.0.0.1:7000"
//! key = "9a0b..."               # hex; the front end's own key (replicas hold it too)
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
    #[error(
        "{path} holds keys but is readable by others (mode {mode:03o}): run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
}

/// Which process a configuration is for: each holds only the keys it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Holds the replicas' key and the front end's key.
    Replica,
    /// Holds its own key only, never the replicas'.
    FrontEnd,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// Datagrams of another cluster are refused.
    pub cluster_id: u64,
    /// Hex-encoded key of the HMAC-SHA256 tag of the replicas' datagrams.
    /// Only replicas hold it (`secret` in older files).
    #[serde(default, alias = "secret", skip_serializing_if = "Option::is_none")]
    pub replica_key: Option<String>,
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
    /// Front-end streams a replica knows at most; a new one beyond makes
    /// room by forgetting the longest silent (its replies are kept).
    #[serde(default = "default_max_streams")]
    pub max_streams: usize,
}

fn default_max_streams() -> usize {
    dcms_repl::replica::DEFAULT_MAX_STREAMS
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
    /// The ID of its key. Its request streams are random at every start.
    pub id: u64,
    pub udp: SocketAddr,
    /// Where CORBA clients connect.
    pub iiop: SocketAddr,
    /// Hex-encoded key of the front end's datagrams (the replicas hold it
    /// too, to check them and to sign their answers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
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
    /// A front-end stream silent this long is forgotten by the replicas
    /// (its key binding, replay window, address, and its stored replies:
    /// only its last number stays). A live front end is never silent: it
    /// heartbeats and retransmits. At least 10 s.
    pub stream_expiry_ms: u64,
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
            stream_expiry_ms: dcms_repl::replica::DEFAULT_STREAM_EXPIRY_MS,
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
        replica_key: String,
        frontend_key: String,
    ) -> ClusterConfig {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        ClusterConfig {
            cluster_id: u64::from(base_port) << 16 | 0xdc,
            replica_key: Some(replica_key),
            data_dir,
            frontend: FrontendConfig {
                id: 100,
                udp: addr(base_port + 1),
                iiop: addr(base_port),
                key: Some(frontend_key),
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
            max_streams: default_max_streams(),
        }
    }

    /// Reads and checks a configuration. A file that holds a key must be
    /// readable by its owner only (as ssh insists for private keys).
    pub fn load(path: &Path) -> Result<ClusterConfig, ConfigError> {
        let read = |source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        };
        let text = std::fs::read_to_string(path).map_err(read)?;
        let config: ClusterConfig = toml::from_str(&text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })?;
        if config.replica_key.is_some() || config.frontend.key.is_some() {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(path).map_err(read)?.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(ConfigError::TooOpen {
                    path: path.to_path_buf(),
                    mode,
                });
            }
        }
        config.validate()?;
        Ok(config)
    }

    /// Writes the configuration readable by its owner only (it holds keys).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        write_private(path, self.to_toml().as_bytes())
    }

    /// The same configuration without the replicas' key: what a front end
    /// gets.
    pub fn for_frontend(&self) -> ClusterConfig {
        ClusterConfig {
            replica_key: None,
            ..self.clone()
        }
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("configurations always serialize")
    }

    /// The replicas' key.
    pub fn replica_key_bytes(&self) -> Result<Vec<u8>, ConfigError> {
        let text = self.replica_key.as_deref().ok_or_else(|| {
            ConfigError::Invalid(
                "replica_key is missing: a replica needs the replicas' key (dcms up writes it to cluster.toml)".into(),
            )
        })?;
        key_bytes("replica_key", text)
    }

    /// The front end's key.
    pub fn frontend_key_bytes(&self) -> Result<Vec<u8>, ConfigError> {
        let text = self.frontend.key.as_deref().ok_or_else(|| {
            ConfigError::Invalid(
                "frontend.key is missing: the front end and the replicas need the front end's key (dcms up writes it)".into(),
            )
        })?;
        key_bytes("frontend.key", text)
    }

    /// Checks that this configuration holds exactly the keys `role` needs:
    /// a replica both; a front end its own and never the replicas'.
    pub fn validate_for(&self, role: Role) -> Result<(), ConfigError> {
        self.validate()?;
        self.frontend_key_bytes()?;
        match role {
            Role::Replica => {
                self.replica_key_bytes()?;
            }
            Role::FrontEnd if self.replica_key.is_some() => {
                return Err(ConfigError::Invalid(
                    "a front end must not hold the replicas' key: remove replica_key from its configuration (dcms up writes frontend.toml without it)".into(),
                ))
            }
            Role::FrontEnd => {}
        }
        if self.replica_key.is_some() && self.replica_key == self.frontend.key {
            return Err(ConfigError::Invalid(
                "replica_key and frontend.key must differ".into(),
            ));
        }
        Ok(())
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
        if let Some(k) = &self.replica_key {
            key_bytes("replica_key", k)?;
        }
        if let Some(k) = &self.frontend.key {
            key_bytes("frontend.key", k)?;
        }
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
        if ids.contains(&0) || self.frontend.id == 0 {
            return bad("ID 0 is reserved (the replicas' key)".into());
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
        if t.stream_expiry_ms < 10_000 {
            return bad(format!(
                "stream_expiry_ms ({}) must be at least 10000: a stream that expires loses its stored replies",
                t.stream_expiry_ms
            ));
        }
        if !(1..=1_000_000).contains(&self.max_streams) {
            return bad(format!(
                "max_streams ({}) must be between 1 and 1000000",
                self.max_streams
            ));
        }
        if t.failover && t.election_ms == 0 {
            return bad("election_ms must be positive".into());
        }
        if t.outcome_ms > 3_600_000 {
            return bad(format!(
                "outcome_ms ({}) over an hour: a client would wait that long",
                t.outcome_ms
            ));
        }
        self.faults.validate().map_err(ConfigError::Invalid)?;
        Ok(())
    }
}

/// A key in hex, at least 16 bytes.
fn key_bytes(name: &str, text: &str) -> Result<Vec<u8>, ConfigError> {
    let bytes = hex::decode(text.trim())
        .map_err(|e| ConfigError::Invalid(format!("{name} is not hex: {e}")))?;
    if bytes.len() < 16 {
        return Err(ConfigError::Invalid(format!(
            "{name} has {} bytes; at least 16 are needed",
            bytes.len()
        )));
    }
    Ok(bytes)
}

/// Writes `bytes` to `path` readable by its owner only (mode 0600, also
/// when the file existed with a wider mode), durably: a temporary file,
/// fsynced, renamed over `path`, and the folder fsynced.
pub fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let tmp = path.with_extension("tmp");
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.set_permissions(std::fs::Permissions::from_mode(0o600))?;
    f.write_all(bytes)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

/// Creates `dir` (and its parents) for the owner only (0700); an existing
/// folder open to others is narrowed to 0700, with a warning.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let mode = std::fs::metadata(dir)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        tracing::warn!(
            dir = %dir.display(),
            mode = format!("{mode:03o}"),
            "the data folder was open to others; narrowed to 700"
        );
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
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
            "ffeeddccbbaa99887766554433221100".into(),
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
        c.replica_key = Some("zz".into());
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("replica_key is not hex"));
        let mut c = local();
        c.frontend.key = Some("0011".into());
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
        let mut c = local();
        c.timeouts.stream_expiry_ms = 500;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("stream_expiry_ms"));
        let mut c = local();
        c.max_streams = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("max_streams"));
        let mut c = local();
        c.timeouts.election_ms = 0;
        assert!(c
            .validate()
            .unwrap_err()
            .to_string()
            .contains("election_ms"));
        let err = toml::from_str::<ClusterConfig>("cluster_id = 1\nbogus = 2").unwrap_err();
        assert!(err.to_string().contains("bogus") || err.to_string().contains("missing"));
    }

    #[test]
    fn each_role_holds_exactly_the_keys_it_needs() {
        let c = local();
        c.validate_for(Role::Replica).unwrap();
        let err = c.validate_for(Role::FrontEnd).unwrap_err().to_string();
        assert!(err.contains("must not hold the replicas' key"), "{err}");
        let fe = c.for_frontend();
        fe.validate_for(Role::FrontEnd).unwrap();
        let err = fe.validate_for(Role::Replica).unwrap_err().to_string();
        assert!(err.contains("replica_key is missing"), "{err}");
        let mut no_fe_key = c.clone();
        no_fe_key.frontend.key = None;
        for role in [Role::Replica, Role::FrontEnd] {
            let err = no_fe_key.for_frontend().validate_for(role).unwrap_err();
            assert!(err.to_string().contains("frontend.key is missing"), "{err}");
        }
        let mut same = c.clone();
        same.frontend.key = same.replica_key.clone();
        assert!(same
            .validate_for(Role::Replica)
            .unwrap_err()
            .to_string()
            .contains("must differ"));
        // Older files call the replicas' key `secret`.
        let old = c.to_toml().replace("replica_key", "secret");
        let back: ClusterConfig = toml::from_str(&old).unwrap();
        assert_eq!(back.replica_key, c.replica_key);
    }

    #[test]
    fn key_files_are_private_and_an_open_one_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        create_private_dir(&data).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&data), 0o700);
        std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();
        create_private_dir(&data).unwrap();
        assert_eq!(mode(&data), 0o700, "an open data folder is narrowed");
        let path = data.join("cluster.toml");
        local().write(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
        ClusterConfig::load(&path).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        let err = ClusterConfig::load(&path).unwrap_err();
        assert!(
            matches!(err, ConfigError::TooOpen { mode: 0o644, .. }),
            "{err}"
        );
        assert!(err.to_string().contains("chmod 600"), "{err}");
        local().write(&path).unwrap();
        assert_eq!(mode(&path), 0o600, "rewriting narrows it again");
    }
}
