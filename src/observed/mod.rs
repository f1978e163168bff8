//! What pgrepl saw on each node: plain data, no handles, no secrets in clear,
//! and the pure parsers of what a node prints. Gathering fills it; the pure
//! core (diff, topology, status) reads it.

pub mod parse;
pub mod pooler;

use std::fmt;
use std::str::FromStr;

use indexmap::IndexMap;
use serde::{Serialize, Serializer};

/// A WAL position (`pg_lsn`), printed as PostgreSQL prints it: `16/B374D848`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Lsn(pub u64);

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:X}/{:X}", self.0 >> 32, self.0 & 0xFFFF_FFFF)
    }
}

impl FromStr for Lsn {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (hi, lo) = s
            .trim()
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not an LSN"))?;
        let hi = u64::from_str_radix(hi, 16).map_err(|_| format!("{s:?} is not an LSN"))?;
        let lo = u64::from_str_radix(lo, 16).map_err(|_| format!("{s:?} is not an LSN"))?;
        if hi > 0xFFFF_FFFF || lo > 0xFFFF_FFFF {
            return Err(format!("{s:?} is not an LSN"));
        }
        Ok(Lsn((hi << 32) | lo))
    }
}

impl Serialize for Lsn {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// Every node, in the cluster file's order.
#[derive(Debug, Clone, Serialize)]
pub struct Observed {
    pub cluster: String,
    pub nodes: IndexMap<String, NodeState>,
    /// Every pooler of the file, in its order.
    pub poolers: IndexMap<String, pooler::PoolerState>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeState {
    pub name: String,
    pub host: String,
    /// `None` when reachable.
    pub unreachable: Option<UnreachableInfo>,
    pub files: Option<FileFacts>,
    /// Present when PostgreSQL is running and answered SQL.
    pub server: Option<ServerFacts>,
    /// A read that failed on a reachable node (the others still ran).
    pub errors: Vec<String>,
    /// Wall time of this node's gathering, in milliseconds.
    pub gather_ms: u64,
}

/// Why a node could not be reached, each with its own next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Unreachable {
    Dns,
    Refused,
    NoRoute,
    Timeout,
    Auth,
    HostKey,
    Other,
}

#[derive(Debug, Clone, Serialize)]
pub struct UnreachableInfo {
    pub kind: Unreachable,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum DataDir {
    Missing,
    Empty,
    Initialised,
    /// Present, not empty, but no PG_VERSION: never touched by pgrepl.
    Foreign,
}

/// Read from the node's file system in one SSH round trip.
#[derive(Debug, Clone, Serialize)]
pub struct FileFacts {
    pub data_dir: DataDir,
    /// `PG_VERSION` (the major).
    pub major: Option<u32>,
    /// A postmaster is alive (postmaster.pid names a live process), or the
    /// server answered SQL.
    pub running: bool,
    pub standby_signal: bool,
    pub recovery_signal: bool,
    pub control: Option<ControlData>,
    /// pg_hba.conf as on disk.
    pub hba_conf: Option<String>,
    /// postgresql.auto.conf with any password redacted.
    pub auto_conf: Option<String>,
    /// Whether postgresql.auto.conf holds a password in clear (it must not).
    pub auto_conf_has_password: bool,
    /// Timeline history files: (timeline, content).
    pub histories: Vec<(u32, String)>,
    pub disk_free_bytes: Option<u64>,
    pub disk_total_bytes: Option<u64>,
    /// The data directory with symlinks resolved (when initialised).
    pub data_dir_physical: Option<String>,
    /// With a separate `config_dir`: whether it holds postgresql.conf
    /// (a base backup copies the data directory only).
    pub config_dir_has_conf: Option<bool>,
    /// SHA-256 of pgrepl's passfile (never its content), and its mode.
    pub passfile_sha256: Option<String>,
    pub passfile_mode: Option<String>,
    /// `DATA_DIR.pgrepl-rewinding` exists: a pg_rewind started and never
    /// finished. Such a target is likely not recoverable (PostgreSQL's docs):
    /// it is re-based by a fresh base backup, never started.
    pub rewind_interrupted: bool,
    /// Size of `DATA_DIR.pgrepl-building`, pgrepl's own interrupted base
    /// backup copy (it holds nothing of its own; the next backup removes it).
    pub building_bytes: Option<u64>,
    /// Another manager's signs on this node, one entry per manager in the
    /// order first seen (SPEC section 10: pgrepl never fights it).
    pub managers: Vec<ManagerFacts>,
    /// Replication slots in a stopped node's `pg_replslot` (a running
    /// server's are `ServerFacts::slots`): PostgreSQL refuses to start with
    /// more than `max_replication_slots`.
    pub slots_on_disk: Option<u32>,
    /// Other cluster names this data directory's files were kept under
    /// (`.pgrepl-NAME.pgpass` beside it, whose header names this data
    /// directory): left by a rename of the cluster.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub stale_clusters: Vec<String>,
    /// The libraries the file preloads, looked for on the node; `None` when
    /// the file preloads none (or the node was not asked).
    pub preload: Option<PreloadCheck>,
}

/// `shared_preload_libraries` from the file against the node's files: a
/// server that cannot load one of them does not start.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PreloadCheck {
    /// The server's library directory (`pg_config`'s PKGLIBDIR, `$libdir`);
    /// `None` when a stopped node's could not be found.
    pub libdir: Option<String>,
    /// Names with neither `NAME` nor `NAME.so` there.
    pub missing: Vec<String>,
}

/// A manager other than pgrepl that runs PostgreSQL nodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Manager {
    Patroni,
    Repmgrd,
    PgAutoFailover,
}

impl Manager {
    /// The token the gather script prints (`manager TOKEN EVIDENCE`).
    pub fn from_token(token: &str) -> Option<Manager> {
        match token {
            "patroni" => Some(Manager::Patroni),
            "repmgrd" => Some(Manager::Repmgrd),
            "pg_auto_failover" => Some(Manager::PgAutoFailover),
            _ => None,
        }
    }
}

impl fmt::Display for Manager {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Manager::Patroni => "Patroni",
            Manager::Repmgrd => "repmgrd",
            Manager::PgAutoFailover => "pg_auto_failover",
        })
    }
}

/// What showed that `manager` runs the node: each item one sign, as the
/// plan quotes it (`the postmaster's parent process is patroni (pid 812)`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ManagerFacts {
    pub manager: Manager,
    pub evidence: Vec<String>,
}

/// `pg_controldata`, with `LC_ALL=C`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ControlData {
    pub state: String,
    pub system_identifier: String,
    pub checkpoint_lsn: Option<Lsn>,
    pub checkpoint_redo_lsn: Option<Lsn>,
    pub checkpoint_timeline: Option<u32>,
    pub min_recovery_end_lsn: Option<Lsn>,
    pub min_recovery_end_timeline: Option<u32>,
    pub wal_log_hints: Option<bool>,
    pub data_checksums: Option<bool>,
    /// The hot-standby-sensitive values pg_control records (a standby: its
    /// primary's, as of the last parameter change it replayed), by GUC
    /// name; read from pg_controldata of a stopped node only.
    #[serde(skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub recorded_settings: std::collections::BTreeMap<String, i64>,
}

/// Read over SQL while PostgreSQL runs.
#[derive(Debug, Clone, Serialize)]
pub struct ServerFacts {
    pub version_num: u32,
    pub system_identifier: String,
    pub in_recovery: bool,
    pub timeline: u32,
    /// Primary: `pg_current_wal_lsn()`.
    pub current_lsn: Option<Lsn>,
    pub receive_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    /// Seconds since the last replayed transaction's commit (standbys).
    pub replay_delay_s: Option<f64>,
    /// A standby whose WAL replay is paused (`pg_is_wal_replay_paused()`):
    /// it receives WAL but applies none of it.
    pub replay_paused: bool,
    /// Roles whose stored password is an MD5 hash (deprecated in
    /// PostgreSQL 18), by name; never the hash.
    pub md5_roles: Vec<String>,
    pub data_directory: String,
    pub hba_file: String,
    /// All databases together, measured on a primary only: a standby is its
    /// physical copy, and summing every relation file costs a fresh backend
    /// more than the rest of the SQL batch.
    pub database_size_bytes: Option<i64>,
    pub settings: IndexMap<String, PgSetting>,
    /// The file's custom (dotted) settings that pg_settings does not list:
    /// `current_setting(name, true)`, `None` when not set. PostgreSQL keeps
    /// such a name as a placeholder, which pg_settings never shows.
    pub custom_settings: IndexMap<String, Option<String>>,
    /// `pg_file_settings` rows with an error.
    pub file_setting_errors: Vec<String>,
    pub roles: IndexMap<String, RoleFacts>,
    /// `pg_hba_file_rules` errors: (line, error).
    pub hba_errors: Vec<(i32, String)>,
    /// `pg_hba_file_rules` with each rule's file (PostgreSQL 16+; empty
    /// before): where included files' rules stand.
    pub hba_rules: Vec<crate::hba::FileRule>,
    pub slots: Vec<SlotFacts>,
    pub replication: Vec<ReplicationFacts>,
    pub wal_receiver: Option<WalReceiverFacts>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PgSetting {
    pub name: String,
    /// `primary_conninfo` has its password redacted.
    pub setting: String,
    pub unit: Option<String>,
    pub context: String,
    pub vartype: String,
    pub pending_restart: bool,
    pub source: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct RoleFacts {
    pub name: String,
    pub login: bool,
    pub replication: bool,
    pub superuser: bool,
    /// `rolvaliduntil` as the server prints it, when the role expires at
    /// all (`None`: NULL or `infinity`, it never does).
    pub valid_until: Option<String>,
    /// `rolvaliduntil` is in the past: the role cannot log in.
    pub expired: bool,
    /// `rolconnlimit` (-1: no limit).
    pub connection_limit: i32,
    /// The stored verifier (`SCRAM-SHA-256$...`), never printed.
    #[serde(skip)]
    pub verifier: Option<String>,
    /// A fingerprint of the verifier for plan staleness, not the verifier.
    pub verifier_digest: Option<String>,
    /// EXECUTE on the four functions pg_rewind needs.
    pub rewind_grants: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct SlotFacts {
    pub name: String,
    pub slot_type: String,
    pub active: bool,
    pub restart_lsn: Option<Lsn>,
    pub wal_status: Option<String>,
    pub retained_bytes: Option<i64>,
    /// Why PostgreSQL invalidated the slot (`invalidation_reason`, 17+:
    /// `wal_removed`, `idle_timeout`, ...); `None` when it is usable, or
    /// before 17, where `wal_status = 'lost'` is the only sign.
    pub invalidation_reason: Option<String>,
}

/// A slot's `invalidation_reason` with what it means.
pub fn invalidation_text(reason: &str) -> String {
    let means = match reason {
        "wal_removed" => "the WAL it held went past max_slot_wal_keep_size and was removed",
        "idle_timeout" => "unused for longer than idle_replication_slot_timeout",
        "wal_level_insufficient" => "wal_level is below what the slot needs",
        "rows_removed" => "rows it needed were removed",
        _ => return format!("invalidation_reason {reason}"),
    };
    format!("invalidation_reason {reason}: {means}")
}

impl SlotFacts {
    /// Why the slot can no longer be used, if it cannot: the server's
    /// reason on 17+, `wal_removed` for a slot whose `wal_status` is
    /// `lost` before 17 (the only cause a physical slot had then).
    pub fn invalidated(&self) -> Option<&str> {
        self.invalidation_reason
            .as_deref()
            .or((self.wal_status.as_deref() == Some("lost")).then_some("wal_removed"))
    }

    /// The slot's standby needs WAL the server removed: it must be
    /// re-based. A slot invalidated for another reason (`idle_timeout`)
    /// may still have its WAL, and is only re-created.
    pub fn lost_wal(&self) -> bool {
        self.invalidated() == Some("wal_removed")
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ReplicationFacts {
    pub application_name: String,
    pub client_addr: Option<String>,
    pub state: Option<String>,
    pub sent_lsn: Option<Lsn>,
    pub flush_lsn: Option<Lsn>,
    pub replay_lsn: Option<Lsn>,
    pub sync_state: Option<String>,
    pub replay_lag_s: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct WalReceiverFacts {
    pub status: String,
    pub received_tli: Option<u32>,
    pub flushed_lsn: Option<Lsn>,
    pub slot_name: Option<String>,
    pub sender_host: Option<String>,
    pub sender_port: Option<i32>,
}

impl ServerFacts {
    /// The major version the server runs (`version_num` 180006 -> 18).
    pub fn major(&self) -> u32 {
        self.version_num / 10000
    }
}

impl NodeState {
    /// The major the node runs, or for a stopped one its data
    /// directory's (PG_VERSION).
    pub fn major(&self) -> Option<u32> {
        self.server
            .as_ref()
            .map(ServerFacts::major)
            .or_else(|| self.files.as_ref().and_then(|f| f.major))
    }

    pub fn reachable(&self) -> bool {
        self.unreachable.is_none()
    }

    pub fn setting(&self, name: &str) -> Option<&PgSetting> {
        self.server.as_ref().and_then(|s| s.settings.get(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lsn_round_trips_in_postgres_format() {
        for s in ["0/0", "0/3000148", "16/B374D848", "FFFFFFFF/FFFFFFFF"] {
            let l: Lsn = s.parse().expect(s);
            assert_eq!(l.to_string(), s);
        }
        assert_eq!("1/0".parse::<Lsn>().map(|l| l.0), Ok(1 << 32));
        assert!("nope".parse::<Lsn>().is_err());
        assert!("1/2/3".parse::<Lsn>().is_err());
        assert!("100000000/0".parse::<Lsn>().is_err());
        assert!("0/3000148".parse::<Lsn>().expect("lsn") < "1/0".parse::<Lsn>().expect("lsn"));
    }
}
