//! The validated cluster file: every default filled in, every per-node
//! override merged, every reference resolved. Built only by `check`.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use indexmap::IndexMap;

use crate::guc::Normalized;

#[derive(Debug, Clone)]
pub struct Config {
    pub path: PathBuf,
    pub cluster: Cluster,
    /// In the file's order.
    pub nodes: IndexMap<String, Node>,
    pub replication: Replication,
    pub rewind: Option<Rewind>,
    pub hba: Vec<HbaRule>,
    /// Extra physical slots on the primary (`[[slots]]`).
    pub extra_slots: Vec<String>,
    /// `[pgbouncer]`, when the file has poolers.
    pub pgbouncer: Option<Pgbouncer>,
    /// `[poolers.NAME]`, in the file's order.
    pub poolers: IndexMap<String, Pooler>,
}

/// `[pgbouncer]`: what every pooler shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pgbouncer {
    /// pgbouncer.ini on the pooler hosts; pgrepl owns a block of its `[databases]`.
    pub ini: String,
    /// Where the admin console's socket is (`unix_socket_dir`).
    pub admin_socket_dir: String,
    pub port: u16,
    pub admin_user: String,
    /// The longest a switchover may hold the read-write pools paused.
    pub pause_timeout: Duration,
    /// `[pgbouncer.databases]`, in the file's order.
    pub databases: Vec<PoolerDatabase>,
}

/// One `[databases]` entry pgrepl writes on every pooler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PoolerDatabase {
    /// The name clients connect to.
    pub name: String,
    /// The database on the server.
    pub dbname: String,
    pub to: PoolTarget,
    /// Options passed through as written (`pool_size = 20`), in file order.
    pub options: Vec<(String, String)>,
}

/// Where a pooled database points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PoolTarget {
    /// The file's primary: a read-write pool.
    Primary,
    /// Every streaming standby (the primary when none streams): read-only.
    Standbys,
    /// One node of the file.
    Node(String),
}

/// `[poolers.NAME]`: a pgBouncer host.
#[derive(Debug, Clone)]
pub struct Pooler {
    pub name: String,
    pub host: String,
    /// How pgrepl reaches it, as a node: `[ssh]`, the admin console's
    /// port and socket directory in `postgres`.
    pub reach: Node,
}

#[derive(Debug, Clone)]
pub struct Cluster {
    pub name: String,
    pub primary: String,
    pub postgres_version: Option<u32>,
}

#[derive(Debug, Clone)]
pub struct Node {
    pub name: String,
    pub host: String,
    /// The node it streams from; `None` for the primary.
    pub upstream: Option<String>,
    pub ssh: Ssh,
    pub postgres: Postgres,
    /// How pgrepl runs commands for PostgreSQL on the node.
    pub exec: Exec,
    /// `[settings]` merged with `[nodes.NAME.settings]`, keyed by lower-case GUC name.
    pub settings: IndexMap<String, Setting>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Setting {
    /// Lower-case, as `pg_settings.name` shows it.
    pub name: String,
    /// The value as written in the file.
    pub value: toml::Value,
    /// `None` for custom (extension) settings, compared as strings.
    pub normalized: Option<Normalized>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ssh {
    pub user: String,
    pub port: u16,
    pub identity_file: Option<PathBuf>,
    pub known_hosts_file: Option<PathBuf>,
    pub known_hosts: KnownHosts,
    pub connect_timeout: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KnownHosts {
    Strict,
    AcceptNew,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Postgres {
    pub port: u16,
    pub data_dir: String,
    pub bin_dir: String,
    pub socket_dir: String,
    pub service: Service,
    /// Where postgresql.conf and pg_hba.conf live when not in the data directory.
    pub config_dir: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Service {
    PgCtl,
    Systemd(String),
    PgCtlCluster(String),
}

/// How pgrepl runs commands for PostgreSQL on a node (`exec`), after SSH
/// as `ssh.user`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Exec {
    /// As `ssh.user` itself, the user that runs PostgreSQL (the default).
    Direct,
    /// `sudo -n -u USER`: `ssh.user` is an administrator, USER runs PostgreSQL.
    Sudo(String),
    /// PostgreSQL in the docker container CONTAINER (`node::remote`).
    Docker(String),
    /// PostgreSQL in the podman container CONTAINER.
    Podman(String),
}

impl Exec {
    /// The node's kind as plans and status show it beside its name
    /// (`sudo postgres`); `None` for a direct node.
    pub fn kind(&self) -> Option<String> {
        match self {
            Exec::Direct => None,
            Exec::Sudo(user) => Some(format!("sudo {user}")),
            Exec::Docker(c) => Some(format!("docker {c}")),
            Exec::Podman(c) => Some(format!("podman {c}")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Replication {
    pub user: String,
    pub password: Secret,
    pub slots: bool,
    pub sslmode: String,
    /// TLS files on the nodes (absolute paths), passed to every replication
    /// connection: the CA that signs the servers' certificates, and this
    /// client's certificate and key (both or neither).
    pub sslrootcert: Option<String>,
    pub sslcert: Option<String>,
    pub sslkey: Option<String>,
    pub max_lag_on_failover: u64,
    pub synchronous: Option<Synchronous>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Synchronous {
    pub mode: SyncMode,
    pub count: u32,
    pub standbys: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    First,
    Any,
}

#[derive(Debug, Clone)]
pub struct Rewind {
    pub user: String,
    pub password: Secret,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HbaRule {
    pub kind: String,
    pub database: String,
    pub user: String,
    /// Node names already expanded to `host/32` (or `/128`).
    pub address: Option<String>,
    pub method: String,
    pub options: Option<String>,
}

/// Where a secret comes from. Rendered, it never shows the value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SecretSource {
    Env(String),
    File(PathBuf),
}

/// A password read from its source at load time. `Debug` and `Display`
/// print `(sensitive)`; only `expose()` gives the value, at the one place
/// that must send it.
#[derive(Clone)]
pub struct Secret {
    pub source: SecretSource,
    value: String,
}

impl Secret {
    pub fn new(source: SecretSource, value: String) -> Self {
        Secret { source, value }
    }

    pub fn expose(&self) -> &str {
        &self.value
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({:?}, (sensitive))", self.source)
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("(sensitive)")
    }
}

impl Config {
    pub fn primary(&self) -> &Node {
        &self.nodes[&self.cluster.primary]
    }

    /// Standbys whose upstream is `name`, in file order.
    pub fn downstreams<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a Node> + 'a {
        self.nodes
            .values()
            .filter(move |n| n.upstream.as_deref() == Some(name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secret_never_renders_its_value() {
        let s = Secret::new(SecretSource::Env("X".into()), "hunter2".into());
        assert_eq!(s.to_string(), "(sensitive)");
        assert!(!format!("{s:?}").contains("hunter2"));
        assert_eq!(s.expose(), "hunter2");
    }
}
