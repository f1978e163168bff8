//! The cluster file exactly as written: serde types with spans, no meaning yet.
//!
//! Every struct denies unknown keys, so a typo is an error, never ignored.
//! Values whose shape has several forms (passwords, service, exec, GUC values) stay
//! `toml::Value` here; `check` turns them into the validated model with an
//! error that names the key.

use indexmap::IndexMap;
use serde::Deserialize;
use toml::Spanned;

pub type SpannedMap<V> = IndexMap<Spanned<String>, V>;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub cluster: Spanned<RawCluster>,
    #[serde(default)]
    pub ssh: RawSsh,
    #[serde(default)]
    pub postgres: RawPostgres,
    pub nodes: Spanned<SpannedMap<Spanned<RawNode>>>,
    pub replication: Spanned<RawReplication>,
    pub rewind: Option<Spanned<RawRewind>>,
    #[serde(default)]
    pub settings: SpannedMap<Spanned<toml::Value>>,
    #[serde(default)]
    pub hba: Vec<Spanned<RawHba>>,
    #[serde(default)]
    pub slots: Vec<Spanned<RawSlot>>,
    pub pgbouncer: Option<Spanned<RawPgbouncer>>,
    pub poolers: Option<Spanned<SpannedMap<Spanned<RawPooler>>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    pub name: Spanned<String>,
    pub primary: Spanned<String>,
    pub postgres_version: Option<Spanned<i64>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSsh {
    pub user: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub identity_file: Option<Spanned<String>>,
    pub known_hosts_file: Option<Spanned<String>>,
    pub known_hosts: Option<Spanned<String>>,
    pub connect_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPostgres {
    pub port: Option<Spanned<i64>>,
    pub data_dir: Option<Spanned<String>>,
    pub bin_dir: Option<Spanned<String>>,
    pub socket_dir: Option<Spanned<String>>,
    pub service: Option<Spanned<toml::Value>>,
    pub config_dir: Option<Spanned<String>>,
    /// How commands reach PostgreSQL: `"direct"`, `{ sudo = USER }`,
    /// `{ docker = CONTAINER }`, `{ podman = CONTAINER }`.
    pub exec: Option<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNode {
    pub host: Spanned<String>,
    pub upstream: Option<Spanned<String>>,
    /// The same key as `[nodes.NAME.postgres] exec`; one of the two at most.
    pub exec: Option<Spanned<toml::Value>>,
    #[serde(default)]
    pub ssh: RawSsh,
    #[serde(default)]
    pub postgres: RawPostgres,
    #[serde(default)]
    pub settings: SpannedMap<Spanned<toml::Value>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawReplication {
    pub user: Spanned<String>,
    pub password: Spanned<toml::Value>,
    pub slots: Option<Spanned<bool>>,
    pub sslmode: Option<Spanned<String>>,
    pub sslrootcert: Option<Spanned<String>>,
    pub sslcert: Option<Spanned<String>>,
    pub sslkey: Option<Spanned<String>>,
    pub max_lag_on_failover: Option<Spanned<toml::Value>>,
    pub synchronous: Option<Spanned<RawSynchronous>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSynchronous {
    pub mode: Option<Spanned<String>>,
    pub count: Option<Spanned<i64>>,
    pub standbys: Spanned<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRewind {
    pub user: Spanned<String>,
    pub password: Spanned<toml::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHba {
    #[serde(rename = "type")]
    pub kind: Spanned<String>,
    pub database: Spanned<String>,
    pub user: Spanned<String>,
    pub address: Option<Spanned<String>>,
    pub method: Spanned<String>,
    pub options: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSlot {
    pub name: Spanned<String>,
}

/// `[pgbouncer]`: what every pooler shares.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPgbouncer {
    pub ini: Option<Spanned<String>>,
    pub admin_socket_dir: Option<Spanned<String>>,
    pub port: Option<Spanned<i64>>,
    pub admin_user: Option<Spanned<String>>,
    pub pause_timeout: Option<Spanned<String>>,
    /// How pgrepl runs commands on every pooler (`"direct"` or
    /// `{ sudo = USER }`); `[poolers.NAME] exec` overrides it.
    pub exec: Option<Spanned<toml::Value>>,
    /// Each an inline table: `to`, `dbname` and pass-through options.
    #[serde(default)]
    pub databases: SpannedMap<Spanned<toml::Value>>,
}

/// `[poolers.NAME]`: one pgBouncer host, reached over SSH like a node.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPooler {
    pub host: Spanned<String>,
    #[serde(default)]
    pub ssh: RawSsh,
    pub exec: Option<Spanned<toml::Value>>,
}
