//! The cluster configuration: one TOML file that names every process's
//! addresses, the data folder, the timeouts, the keys and the
//! fault-injection settings. `dcms up` writes one for a local cluster
//! (`cluster.toml`, for the replicas) and, for each front end, the same
//! without the replicas' key and the other front ends' keys
//! (`frontend-<id>.toml`, [`ClusterConfig::for_frontend`]); `dcms init`
//! writes the same files for processes on separate hosts
//! ([`ClusterConfig::new_cluster`]); command-line flags and `DCMS_*`
//! variables override single values.
//!
//! ```toml
//! cluster_id = 7
//! replica_key = "3f1c..."       # hex; only replicas hold it
//! data_dir = "dcms-data"
//!
//! [[frontends]]
//! id = 100                      # its key's ID (its streams are random)
//! udp = "127.0.0.1:7100"
//! iiop = "127.0.0.1:7000"       # where CORBA clients connect
//! key = "9a0b..."               # hex; this front end's own key (replicas hold every one)
//!
//! [[frontends]]
//! id = 101
//! udp = "127.0.0.1:7102"
//! iiop = "127.0.0.1:7001"
//! key = "51d7..."
//!
//! [[replicas]]
//! id = 1
//! udp = "127.0.0.1:7101"
//! ```
//!
//! A file from before there were several front ends has one `[frontend]`
//! table instead of `[[frontends]]`; it loads as a list of one.

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
    #[error("writing {path}: {source}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "{path} holds keys but is readable by others (mode {mode:03o}): run `chmod 600 {path}`"
    )]
    TooOpen { path: PathBuf, mode: u32 },
}

/// Which process a configuration is for: each holds only the keys it needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// Holds the replicas' key and every front end's key.
    Replica,
    /// The front end with this ID: holds its own key only, never the
    /// replicas' nor another front end's.
    FrontEnd(u64),
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawClusterConfig")]
pub struct ClusterConfig {
    /// Datagrams of another cluster are refused.
    pub cluster_id: u64,
    /// Hex-encoded key of the HMAC-SHA256 tag of the replicas' datagrams.
    /// Only replicas hold it (`secret` in older files).
    #[serde(default, alias = "secret", skip_serializing_if = "Option::is_none")]
    pub replica_key: Option<String>,
    /// Where each replica keeps `replica-N.db` and the front ends their
    /// IOR files.
    pub data_dir: PathBuf,
    /// Every front end (`[[frontends]]`; an older file's single
    /// `[frontend]` loads as one). Clients may use any: the group reference
    /// lists them all (`dcms_corba::group`).
    pub frontends: Vec<FrontendConfig>,
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
    /// The largest `listRecords` answer served, encoded (bytes); a larger
    /// one is refused with `DCMS::InvalidRequest` naming `listRecordsPage`.
    /// Keep it under the smallest message limit of the clients' ORBs
    /// (omniORB: 2 MiB by default).
    #[serde(default = "default_max_list_bytes")]
    pub max_list_bytes: usize,
    /// Front ends serve IIOP over TLS only, requiring a client certificate
    /// of this CA (`[tls]`; `dcms up --tls`, `dcms init --tls`). Absent:
    /// plain IIOP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsConfig>,
}

/// The `[tls]` table: the files of a front end's TLS endpoint, PEM
/// (`dcms_node::pki` makes them in `<data-dir>/tls/`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The CA whose certificates clients must present (`tls/ca.pem`).
    pub ca: PathBuf,
    /// The front end's certificate (`tls/server.pem`).
    pub cert: PathBuf,
    /// Its private key (`tls/server.key`, 0600).
    pub key: PathBuf,
}

fn default_max_list_bytes() -> usize {
    dcms_core::ops::DEFAULT_MAX_LIST_BYTES
}

/// The file as written: either the older `[frontend]` or `[[frontends]]`.
/// Unknown fields are refused (a misspelt name would otherwise be a
/// default silently taken).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClusterConfig {
    cluster_id: u64,
    #[serde(default, alias = "secret")]
    replica_key: Option<String>,
    data_dir: PathBuf,
    /// Files written before there were several front ends.
    #[serde(default)]
    frontend: Option<FrontendConfig>,
    #[serde(default)]
    frontends: Vec<FrontendConfig>,
    replicas: Vec<ReplicaAddr>,
    #[serde(default)]
    timeouts: Timeouts,
    #[serde(default)]
    faults: FaultConfig,
    #[serde(default = "default_max_datagram")]
    max_datagram: usize,
    #[serde(default = "default_sync")]
    sync: String,
    #[serde(default = "default_true")]
    adaptive_redundancy: bool,
    #[serde(default = "default_max_streams")]
    max_streams: usize,
    #[serde(default = "default_max_list_bytes")]
    max_list_bytes: usize,
    #[serde(default)]
    tls: Option<TlsConfig>,
}

impl TryFrom<RawClusterConfig> for ClusterConfig {
    type Error = String;

    fn try_from(raw: RawClusterConfig) -> Result<ClusterConfig, String> {
        let frontends = match (raw.frontend, raw.frontends) {
            (Some(_), list) if !list.is_empty() => {
                return Err(
                    "both [frontend] and [[frontends]]: list every front end as [[frontends]]"
                        .into(),
                )
            }
            (Some(one), _) => vec![one],
            (None, list) => list,
        };
        Ok(ClusterConfig {
            cluster_id: raw.cluster_id,
            replica_key: raw.replica_key,
            data_dir: raw.data_dir,
            frontends,
            replicas: raw.replicas,
            timeouts: raw.timeouts,
            faults: raw.faults,
            max_datagram: raw.max_datagram,
            sync: raw.sync,
            adaptive_redundancy: raw.adaptive_redundancy,
            max_streams: raw.max_streams,
            max_list_bytes: raw.max_list_bytes,
            tls: raw.tls,
        })
    }
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

/// The ID `dcms up` gives its first front end; the next get 101, 102, ...
pub const FIRST_FRONTEND_ID: u64 = 100;

/// Where a front end of a new cluster listens
/// ([`ClusterConfig::new_cluster`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrontendAddrs {
    /// Towards the replicas.
    pub udp: SocketAddr,
    /// Towards CORBA clients.
    pub iiop: SocketAddr,
}

/// A new random key: 32 bytes, in hex.
pub fn fresh_key() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// The file name of front end `id`'s own configuration: `frontend-<id>.toml`.
pub fn frontend_file_name(id: u64) -> String {
    format!("{}.toml", crate::frontend::status_name(id))
}

/// One front end: its key's ID, its UDP address (towards the replicas) and
/// its IIOP address (towards CORBA clients).
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
    /// How far apart the replicas' clocks may be. A leader without a
    /// majority calls an FT request "not executed" only this long after its
    /// expiration (FT-CORBA expirations are wall-clock times). Below the
    /// 5 s for which replicas keep a reply past its expiration.
    pub clock_skew_ms: u64,
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
            clock_skew_ms: dcms_repl::replica::DEFAULT_CLOCK_SKEW_MS,
        }
    }
}

impl ClusterConfig {
    /// A local cluster on 127.0.0.1 with one front end per key in
    /// `frontend_keys` (IDs 100, 101, ...): front end `i` on `base_port + i`
    /// (IIOP) and `base_port + n + i` (UDP), replica `id` on
    /// `base_port + 2n + id - 1`, for `n` front ends.
    pub fn local(
        base_port: u16,
        replicas: u64,
        data_dir: PathBuf,
        replica_key: String,
        frontend_keys: Vec<String>,
    ) -> ClusterConfig {
        let addr = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let n = frontend_keys.len() as u16;
        ClusterConfig {
            cluster_id: u64::from(base_port) << 16 | 0xdc,
            replica_key: Some(replica_key),
            data_dir,
            frontends: frontend_keys
                .into_iter()
                .enumerate()
                .map(|(i, key)| FrontendConfig {
                    id: FIRST_FRONTEND_ID + i as u64,
                    udp: addr(base_port + n + i as u16),
                    iiop: addr(base_port + i as u16),
                    key: Some(key),
                })
                .collect(),
            replicas: (1..=replicas)
                .map(|id| ReplicaAddr {
                    id,
                    udp: addr(base_port + 2 * n + id as u16 - 1),
                })
                .collect(),
            timeouts: Timeouts::default(),
            faults: FaultConfig::default(),
            max_datagram: default_max_datagram(),
            sync: default_sync(),
            adaptive_redundancy: true,
            max_streams: default_max_streams(),
            max_list_bytes: default_max_list_bytes(),
            tls: None,
        }
    }

    /// A new cluster: replicas 1, 2, ... at `replicas` and front ends 100,
    /// 101, ... at `frontends`, in order, a fresh key for the replicas and
    /// one for each front end, a random cluster ID, default timeouts.
    /// `dcms up` (on loopback) and `dcms init` (across hosts) make theirs
    /// with it; the caller validates the result.
    pub fn new_cluster(
        replicas: &[SocketAddr],
        frontends: &[FrontendAddrs],
        data_dir: PathBuf,
        sync: &str,
    ) -> ClusterConfig {
        ClusterConfig {
            cluster_id: rand::random::<u64>() >> 1,
            replica_key: Some(fresh_key()),
            data_dir,
            frontends: frontends
                .iter()
                .zip(FIRST_FRONTEND_ID..)
                .map(|(a, id)| FrontendConfig {
                    id,
                    udp: a.udp,
                    iiop: a.iiop,
                    key: Some(fresh_key()),
                })
                .collect(),
            replicas: replicas
                .iter()
                .zip(1..)
                .map(|(&udp, id)| ReplicaAddr { id, udp })
                .collect(),
            timeouts: Timeouts::default(),
            faults: FaultConfig::default(),
            max_datagram: default_max_datagram(),
            sync: sync.to_string(),
            adaptive_redundancy: true,
            max_streams: default_max_streams(),
            max_list_bytes: default_max_list_bytes(),
            tls: None,
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
        if config.replica_key.is_some() || config.frontends.iter().any(|f| f.key.is_some()) {
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

    /// What front end `id` gets: the same configuration without the
    /// replicas' key and without the other front ends' keys (their entries
    /// stay, so that it knows every front end's address for the group
    /// reference).
    pub fn for_frontend(&self, id: u64) -> Result<ClusterConfig, ConfigError> {
        self.frontend(id)?;
        let mut config = ClusterConfig {
            replica_key: None,
            ..self.clone()
        };
        for f in config.frontends.iter_mut().filter(|f| f.id != id) {
            f.key = None;
        }
        Ok(config)
    }

    /// Writes each front end's own configuration ([`Self::for_frontend`])
    /// to `dir/frontend-<id>.toml`, private; returns each ID and path, in
    /// the configuration's order.
    pub fn write_frontend_configs(&self, dir: &Path) -> Result<Vec<(u64, PathBuf)>, ConfigError> {
        self.frontends
            .iter()
            .map(|f| {
                let path = dir.join(frontend_file_name(f.id));
                self.for_frontend(f.id)?
                    .write(&path)
                    .map_err(|source| ConfigError::Write {
                        path: path.clone(),
                        source,
                    })?;
                Ok((f.id, path))
            })
            .collect()
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

    /// The key of front end `id`.
    pub fn frontend_key_bytes(&self, id: u64) -> Result<Vec<u8>, ConfigError> {
        let text = self.frontend(id)?.key.as_deref().ok_or_else(|| {
            ConfigError::Invalid(format!(
                "the key of front end {id} is missing: that front end and the replicas need it (dcms up writes it)"
            ))
        })?;
        key_bytes(&format!("the key of front end {id}"), text)
    }

    /// Front end `id`'s entry.
    pub fn frontend(&self, id: u64) -> Result<&FrontendConfig, ConfigError> {
        self.frontends.iter().find(|f| f.id == id).ok_or_else(|| {
            ConfigError::Invalid(format!(
                "no front end with id {id} in the configuration (front ends: {})",
                self.frontend_ids_text()
            ))
        })
    }

    /// The front ends' IDs, as `100, 101`.
    pub fn frontend_ids_text(&self) -> String {
        self.frontends
            .iter()
            .map(|f| f.id.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// Every front end's IIOP address, in order: what the group reference
    /// lists (`dcms_corba::group_corbaloc`, `group_ior`).
    pub fn frontend_iiops(&self) -> Vec<SocketAddr> {
        self.frontends.iter().map(|f| f.iiop).collect()
    }

    /// Checks that this configuration holds exactly the keys `role` needs:
    /// a replica its own and every front end's; a front end its own only,
    /// never the replicas' nor another front end's.
    pub fn validate_for(&self, role: Role) -> Result<(), ConfigError> {
        self.validate()?;
        let bad = |m: String| Err(ConfigError::Invalid(m));
        match role {
            Role::Replica => {
                self.replica_key_bytes()?;
                for f in &self.frontends {
                    self.frontend_key_bytes(f.id)?;
                }
            }
            Role::FrontEnd(id) => {
                self.frontend_key_bytes(id)?;
                if self.replica_key.is_some() {
                    return bad(
                        "a front end must not hold the replicas' key: remove replica_key from its configuration (dcms up writes frontend-<id>.toml without it)".into(),
                    );
                }
                if let Some(other) = self
                    .frontends
                    .iter()
                    .find(|f| f.id != id && f.key.is_some())
                {
                    return bad(format!(
                        "front end {id} must not hold the key of front end {}: remove that key from its configuration (dcms up writes frontend-{id}.toml with its own key only)",
                        other.id
                    ));
                }
            }
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
        // Every key present is well formed, and no two are the same: a
        // shared key would let one process speak as another.
        let mut keys: Vec<(String, Vec<u8>)> = Vec::new();
        if let Some(k) = &self.replica_key {
            keys.push(("replica_key".into(), key_bytes("replica_key", k)?));
        }
        for f in &self.frontends {
            if let Some(k) = &f.key {
                let name = format!("the key of front end {}", f.id);
                let bytes = key_bytes(&name, k)?;
                if let Some((same, _)) = keys.iter().find(|(_, b)| *b == bytes) {
                    return bad(format!(
                        "{name} is the same as {same}: every key must differ"
                    ));
                }
                keys.push((name, bytes));
            }
        }
        self.sync_mode()?;
        if self.replicas.is_empty() {
            return bad("at least one replica is needed".into());
        }
        if self.frontends.is_empty() {
            return bad("at least one front end is needed ([[frontends]])".into());
        }
        let mut ids: Vec<u64> = self.replicas.iter().map(|r| r.id).collect();
        ids.sort_unstable();
        ids.dedup();
        if ids.len() != self.replicas.len() {
            return bad("replica IDs must be unique".into());
        }
        if ids.contains(&0) {
            return bad("ID 0 is reserved (the replicas' key)".into());
        }
        let mut fe_ids: Vec<u64> = Vec::new();
        for f in &self.frontends {
            if f.id == 0 {
                return bad("front end ID 0 is reserved (the replicas' key)".into());
            }
            if ids.contains(&f.id) {
                return bad(format!("front end ID {} is also a replica ID", f.id));
            }
            if fe_ids.contains(&f.id) {
                return bad(format!(
                    "front end ID {} appears twice: front end IDs must be unique",
                    f.id
                ));
            }
            fe_ids.push(f.id);
        }
        let mut udp: Vec<(SocketAddr, String)> = Vec::new();
        let processes = self
            .replicas
            .iter()
            .map(|r| (r.udp, format!("replica {}", r.id)))
            .chain(
                self.frontends
                    .iter()
                    .map(|f| (f.udp, format!("front end {}", f.id))),
            );
        for (addr, who) in processes {
            if let Some((_, first)) = udp.iter().find(|(a, _)| *a == addr) {
                return bad(format!(
                    "{who} and {first} share the UDP address {addr}: every process needs its own UDP address"
                ));
            }
            udp.push((addr, who));
        }
        for (i, f) in self.frontends.iter().enumerate() {
            if let Some(g) = self.frontends[..i].iter().find(|g| g.iiop == f.iiop) {
                return bad(format!(
                    "front ends {} and {} share the IIOP address {}: each needs its own",
                    g.id, f.id, f.iiop
                ));
            }
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
        if t.clock_skew_ms >= dcms_core::store::RETAINED_GRACE_MS {
            return bad(format!(
                "clock_skew_ms ({}) must be below {}: replicas keep an FT reply that long past its expiration",
                t.clock_skew_ms,
                dcms_core::store::RETAINED_GRACE_MS
            ));
        }
        if !(64 << 10..=16 << 20).contains(&self.max_list_bytes) {
            return bad(format!(
                "max_list_bytes ({}) must be between 65536 and 16777216 (the front end's message limit)",
                self.max_list_bytes
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
            vec![
                "ffeeddccbbaa99887766554433221100".into(),
                "0f0e0d0c0b0a09080706050403020100".into(),
            ],
        )
    }

    fn invalid(c: &ClusterConfig) -> String {
        c.validate().unwrap_err().to_string()
    }

    #[test]
    fn a_local_configuration_round_trips_through_toml() {
        let c = local();
        c.validate().unwrap();
        let text = c.to_toml();
        assert_eq!(text.matches("[[frontends]]").count(), 2, "{text}");
        let back: ClusterConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.replica(3).unwrap().udp.port(), 7006);
        assert_eq!(
            c.frontends.iter().map(|f| f.id).collect::<Vec<_>>(),
            [100, 101]
        );
        assert_eq!(c.frontend(101).unwrap().iiop.port(), 7001);
        assert_eq!(c.frontend_iiops().len(), 2);
        assert_eq!(c.replica_db(2), PathBuf::from("d/replica-2.db"));
        let one = ClusterConfig::local(7000, 3, "d".into(), "00".repeat(16), vec!["11".repeat(16)]);
        assert_eq!(one.replica(3).unwrap().udp.port(), 7004);
        one.validate().unwrap();
        assert!(!text.contains("[tls]"), "plain IIOP unless told: {text}");
    }

    #[test]
    fn a_tls_table_round_trips_and_reaches_every_front_end() {
        let mut c = local();
        c.tls = Some(TlsConfig {
            ca: "/d/tls/ca.pem".into(),
            cert: "/d/tls/server.pem".into(),
            key: "/d/tls/server.key".into(),
        });
        let text = c.to_toml();
        assert!(text.contains("[tls]"), "{text}");
        let back: ClusterConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
        assert_eq!(c.for_frontend(101).unwrap().tls, c.tls);
        let typo = text.replace("cert =", "certificate =");
        assert!(toml::from_str::<ClusterConfig>(&typo).is_err());
    }

    #[test]
    fn a_new_cluster_numbers_its_processes_and_gives_each_a_key() {
        let at = |s: &str| s.parse::<SocketAddr>().unwrap();
        let replicas = [
            at("10.0.0.1:7100"),
            at("10.0.0.2:7100"),
            at("10.0.0.3:7100"),
        ];
        let frontends = [
            FrontendAddrs {
                udp: at("10.0.0.4:7000"),
                iiop: at("10.0.0.4:7000"),
            },
            FrontendAddrs {
                udp: at("10.0.0.5:7200"),
                iiop: at("10.0.0.5:7000"),
            },
        ];
        let c = ClusterConfig::new_cluster(&replicas, &frontends, "/srv/d".into(), "normal");
        c.validate_for(Role::Replica).unwrap();
        let ids = |c: &ClusterConfig| -> Vec<u64> {
            c.replicas
                .iter()
                .map(|r| r.id)
                .chain(c.frontends.iter().map(|f| f.id))
                .collect()
        };
        assert_eq!(ids(&c), [1, 2, 3, 100, 101]);
        assert_eq!(c.replica(2).unwrap().udp, replicas[1]);
        assert_eq!(c.frontend(101).unwrap().udp, frontends[1].udp);
        assert_eq!(c.frontend_iiops(), [frontends[0].iiop, frontends[1].iiop]);
        assert_eq!(
            (c.sync.as_str(), c.data_dir.to_str()),
            ("normal", Some("/srv/d"))
        );
        let other = ClusterConfig::new_cluster(&replicas, &frontends, "/srv/d".into(), "full");
        assert_ne!(other.replica_key, c.replica_key, "fresh keys");
        assert_ne!(other.cluster_id, c.cluster_id);
        let dir = tempfile::tempdir().unwrap();
        let written = c.write_frontend_configs(dir.path()).unwrap();
        assert_eq!(written.len(), 2);
        for (id, path) in written {
            assert!(path.ends_with(frontend_file_name(id)));
            let own = ClusterConfig::load(&path).unwrap();
            own.validate_for(Role::FrontEnd(id)).unwrap();
            assert_eq!(own, c.for_frontend(id).unwrap());
        }
    }

    /// A file written before there were several front ends: one `[frontend]`.
    #[test]
    fn an_older_file_with_one_frontend_table_still_loads() {
        let old = r#"
cluster_id = 7
secret = "00112233445566778899aabbccddeeff"
data_dir = "d"

[frontend]
id = 100
udp = "127.0.0.1:7001"
iiop = "127.0.0.1:7000"
key = "ffeeddccbbaa99887766554433221100"

[[replicas]]
id = 1
udp = "127.0.0.1:7002"
"#;
        let c: ClusterConfig = toml::from_str(old).unwrap();
        c.validate_for(Role::Replica).unwrap();
        assert_eq!(c.frontends.len(), 1);
        assert_eq!(c.frontends[0].id, 100);
        assert_eq!(c.frontends[0].iiop.port(), 7000);
        assert_eq!(
            c.replica_key.as_deref(),
            Some("00112233445566778899aabbccddeeff")
        );
        // Written back, it is in the new form.
        let text = c.to_toml();
        assert!(
            text.contains("[[frontends]]") && !text.contains("[frontend]"),
            "{text}"
        );
        assert_eq!(toml::from_str::<ClusterConfig>(&text).unwrap(), c);
        // Both forms at once is a mistake.
        let both = format!(
            "{old}\n[[frontends]]\nid = 101\nudp = \"127.0.0.1:7003\"\niiop = \"127.0.0.1:7004\"\n"
        );
        let err = toml::from_str::<ClusterConfig>(&both)
            .unwrap_err()
            .to_string();
        assert!(err.contains("both [frontend] and [[frontends]]"), "{err}");
        // An unknown field is still refused, in the new form and the old.
        let err = toml::from_str::<ClusterConfig>(&format!("{old}\nbogus = 2")).unwrap_err();
        assert!(err.to_string().contains("bogus"), "{err}");
        let err =
            toml::from_str::<ClusterConfig>(&old.replace("key = \"ff", "kee = \"ff")).unwrap_err();
        assert!(err.to_string().contains("kee"), "{err}");
        // No front end at all.
        let none = old.replace("[frontend]", "[unused]");
        assert!(toml::from_str::<ClusterConfig>(&none).is_err());
        let mut c = local();
        c.frontends.clear();
        assert!(invalid(&c).contains("at least one front end"));
    }

    #[test]
    fn bad_configurations_say_what_is_wrong() {
        let mut c = local();
        c.replica_key = Some("zz".into());
        assert!(invalid(&c).contains("replica_key is not hex"));
        let mut c = local();
        c.frontends[1].key = Some("0011".into());
        let err = invalid(&c);
        assert!(
            err.contains("front end 101") && err.contains("at least 16"),
            "{err}"
        );
        let mut c = local();
        c.replicas[1].id = 1;
        assert!(invalid(&c).contains("unique"));
        let mut c = local();
        c.frontends[1].id = 2;
        assert!(invalid(&c).contains("front end ID 2 is also a replica"));
        let mut c = local();
        c.frontends[1].id = 100;
        let err = invalid(&c);
        assert!(err.contains("front end ID 100 appears twice"), "{err}");
        let mut c = local();
        c.frontends[0].id = 0;
        assert!(invalid(&c).contains("ID 0 is reserved"));
        let mut c = local();
        c.replicas[0].udp = c.frontends[0].udp;
        let err = invalid(&c);
        assert!(
            err.contains("own UDP address") && err.contains("front end 100"),
            "{err}"
        );
        let mut c = local();
        c.frontends[1].udp = c.frontends[0].udp;
        let err = invalid(&c);
        assert!(err.contains("front end 101 and front end 100"), "{err}");
        let mut c = local();
        c.frontends[1].iiop = c.frontends[0].iiop;
        let err = invalid(&c);
        assert!(
            err.contains("front ends 100 and 101 share the IIOP address"),
            "{err}"
        );
        let mut c = local();
        c.sync = "sometimes".into();
        assert!(invalid(&c).contains("sync"));
        let mut c = local();
        c.faults.drop = 1.5;
        assert!(c.validate().is_err());
        let mut c = local();
        c.timeouts.stream_expiry_ms = 500;
        assert!(invalid(&c).contains("stream_expiry_ms"));
        let mut c = local();
        c.timeouts.clock_skew_ms = 5_000;
        assert!(invalid(&c).contains("clock_skew_ms"));
        let mut c = local();
        c.max_streams = 0;
        assert!(invalid(&c).contains("max_streams"));
        let mut c = local();
        c.timeouts.election_ms = 0;
        assert!(invalid(&c).contains("election_ms"));
        let err = toml::from_str::<ClusterConfig>("cluster_id = 1\nbogus = 2").unwrap_err();
        assert!(err.to_string().contains("bogus") || err.to_string().contains("missing"));
    }

    #[test]
    fn every_key_differs_from_every_other() {
        let mut c = local();
        c.frontends[1].key = c.frontends[0].key.clone();
        let err = invalid(&c);
        assert!(
            err.contains("the key of front end 101 is the same as the key of front end 100"),
            "{err}"
        );
        let mut c = local();
        c.frontends[0].key = c.replica_key.clone();
        let err = invalid(&c);
        assert!(
            err.contains("front end 100 is the same as replica_key"),
            "{err}"
        );
        // The same bytes in other letters are the same key.
        let mut c = local();
        c.frontends[1].key = c.frontends[0].key.as_ref().map(|k| k.to_uppercase());
        assert!(invalid(&c).contains("must differ"));
        // Each front end's configuration holds one key: no clash to see
        // there, and none hidden either.
        let c = local();
        for f in &c.frontends {
            c.for_frontend(f.id).unwrap().validate().unwrap();
        }
    }

    #[test]
    fn each_role_holds_exactly_the_keys_it_needs() {
        let c = local();
        c.validate_for(Role::Replica).unwrap();
        let err = c.validate_for(Role::FrontEnd(100)).unwrap_err().to_string();
        assert!(err.contains("must not hold the replicas' key"), "{err}");
        for id in [100, 101] {
            let fe = c.for_frontend(id).unwrap();
            fe.validate_for(Role::FrontEnd(id)).unwrap();
            assert!(fe.replica_key.is_none());
            for f in &fe.frontends {
                assert_eq!(
                    f.key.is_some(),
                    f.id == id,
                    "front end {id} holds only its key"
                );
            }
            // The others' addresses stay: the group reference needs them.
            assert_eq!(fe.frontend_iiops(), c.frontend_iiops());
            let err = fe.validate_for(Role::Replica).unwrap_err().to_string();
            assert!(err.contains("replica_key is missing"), "{err}");
            let other = 201 - id;
            let err = fe
                .validate_for(Role::FrontEnd(other))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains(&format!("the key of front end {other} is missing")),
                "{err}"
            );
        }
        // A front end given another's key as well is refused.
        let mut both = c.clone();
        both.replica_key = None;
        let err = both
            .validate_for(Role::FrontEnd(100))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("front end 100 must not hold the key of front end 101"),
            "{err}"
        );
        let err = c.for_frontend(7).unwrap_err().to_string();
        assert!(
            err.contains("no front end with id 7") && err.contains("100, 101"),
            "{err}"
        );
        let err = c.validate_for(Role::FrontEnd(7)).unwrap_err().to_string();
        assert!(err.contains("no front end with id 7"), "{err}");
        // A replica needs every front end's key.
        let mut missing = c.clone();
        missing.frontends[1].key = None;
        let err = missing.validate_for(Role::Replica).unwrap_err().to_string();
        assert!(err.contains("the key of front end 101 is missing"), "{err}");
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
        // A front end's file holds a key too.
        let fe = data.join("frontend-101.toml");
        local().for_frontend(101).unwrap().write(&fe).unwrap();
        std::fs::set_permissions(&fe, std::fs::Permissions::from_mode(0o640)).unwrap();
        let err = ClusterConfig::load(&fe).unwrap_err();
        assert!(matches!(err, ConfigError::TooOpen { .. }), "{err}");
    }
}
