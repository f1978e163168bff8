//! Config -> DesiredState: what every node must look like. Pure, no IO.
//!
//! Derived here, not written by hand: the replication and rewind hba rules
//! (every node admits every other node, so any node can become primary),
//! one slot per downstream standby on its upstream, each standby's
//! primary_conninfo, and synchronous_standby_names on the primary.

use indexmap::IndexMap;
use sha2::{Digest, Sha256};

use crate::config::{Config, HbaRule, Node, Setting, SyncMode, host_cidr};
use crate::guc;
use crate::hba::{self, HBA_BEGIN, HBA_END};

#[derive(Debug, Clone, PartialEq)]
pub struct DesiredState {
    pub cluster: String,
    pub primary: String,
    pub nodes: IndexMap<String, NodeDesired>,
    /// Roles, created on the primary (they replicate to the standbys).
    pub roles: Vec<RoleDesired>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeDesired {
    pub name: String,
    pub is_primary: bool,
    pub upstream: Option<String>,
    /// GUCs by lower-case name, including those pgrepl owns
    /// (synchronous_standby_names).
    pub settings: IndexMap<String, Setting>,
    /// The lines of the managed pg_hba block, markers included.
    pub hba_block: Vec<String>,
    /// Physical slots this node must hold.
    pub slots: Vec<String>,
    pub recovery: Option<RecoveryDesired>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecoveryDesired {
    /// No password: it is in `passfile`.
    pub primary_conninfo: String,
    /// Empty when slots are off.
    pub primary_slot_name: String,
    pub passfile: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleKind {
    Replication,
    Rewind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleDesired {
    pub name: String,
    pub kind: RoleKind,
}

/// How many connections a pgrepl role needs on one server at once: every
/// other node may stream from it (one each) or copy from it
/// (`pg_basebackup -X stream` takes two); pg_rewind takes one per re-based
/// node. A `CONNECTION LIMIT` below this (0 included) is drift, repaired
/// with `CONNECTION LIMIT -1`.
pub fn role_connections_needed(cfg: &Config, replication: bool) -> i32 {
    let others = i32::try_from(cfg.nodes.len().saturating_sub(1)).unwrap_or(i32::MAX / 2);
    if replication {
        (2 * others).max(1)
    } else {
        others.max(1)
    }
}

/// Whether `limit` (`rolconnlimit`; -1 is none) lets the role do its work.
pub fn connection_limit_too_low(cfg: &Config, replication: bool, limit: i32) -> bool {
    limit >= 0 && limit < role_connections_needed(cfg, replication)
}

/// The libraries the file preloads on `node` (its `shared_preload_libraries`),
/// without names holding a newline (no library file has one).
pub fn preload_libraries(node: &Node) -> Vec<String> {
    let Some(s) = node.settings.get("shared_preload_libraries") else {
        return Vec::new();
    };
    let value = match &s.value {
        toml::Value::String(v) => v.clone(),
        other => other.to_string(),
    };
    crate::observed::parse::preload_names(&value)
        .into_iter()
        .filter(|n| !n.contains('\n'))
        .collect()
}

/// The passfile pgrepl writes on every node: beside the data directory (not
/// inside it, so base backups and pg_rewind never copy it), 0600.
pub fn passfile_path(cfg: &Config, node: &Node) -> String {
    format!("{}/.pgrepl-{}.pgpass", files_dir(node), cfg.cluster.name)
}

/// The files a node keeps for cluster `cluster` beside its data directory
/// (see [`passfile_path`]): the passfile and the apply lock with its holder
/// file. A cluster name is `[a-z0-9_-]`, so these are plain paths.
pub fn cluster_files(node: &Node, cluster: &str) -> Vec<String> {
    let dir = files_dir(node);
    ["pgpass", "lock", "lock.holder"]
        .iter()
        .map(|ext| format!("{dir}/.pgrepl-{cluster}.{ext}"))
        .collect()
}

/// The directory beside the data directory where pgrepl keeps its files.
pub fn files_dir(node: &Node) -> String {
    let dd = node.postgres.data_dir.trim_end_matches('/');
    let parent = dd.rsplit_once('/').map_or("", |(p, _)| p);
    if parent.is_empty() {
        String::new()
    } else {
        parent.to_string()
    }
}

/// Quotes a libpq conninfo value when it needs it.
pub fn conninfo_value(v: &str) -> String {
    if !v.is_empty()
        && !v.contains(|c: char| c.is_whitespace() || c == '\'' || c == '\\' || c == '=')
    {
        return v.to_string();
    }
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

pub fn primary_conninfo(cfg: &Config, node: &Node, upstream: &Node) -> String {
    let parts = [
        ("host", upstream.host.clone()),
        ("port", upstream.postgres.port.to_string()),
        ("user", cfg.replication.user.clone()),
        ("passfile", passfile_path(cfg, node)),
        ("application_name", node.name.clone()),
        ("sslmode", cfg.replication.sslmode.clone()),
        ("dbname", SLOT_SYNC_DBNAME.to_string()),
    ];
    parts
        .iter()
        .filter(|(k, _)| *k != "dbname" || slot_sync(node))
        .map(|(k, v)| format!("{k}={}", conninfo_value(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The database a standby's slot sync worker connects to (PostgreSQL 17+
/// `sync_replication_slots` needs a `dbname` in `primary_conninfo`): always
/// there, and the one the rewind role already reads.
pub const SLOT_SYNC_DBNAME: &str = "postgres";

/// Whether the file turns on `sync_replication_slots` (PostgreSQL 17+) on
/// `node`: its primary_conninfo then names [`SLOT_SYNC_DBNAME`], it runs
/// with `hot_standby_feedback` (on unless the file says otherwise), and
/// every other node's hba admits the replication role to that database.
pub fn slot_sync(node: &Node) -> bool {
    node.settings
        .get("sync_replication_slots")
        .is_some_and(|s| s.normalized == Some(crate::guc::Normalized::Bool(true)))
}

/// `FIRST 1 ("db2", "db3")` without the primary, or empty.
pub fn synchronous_standby_names(cfg: &Config) -> String {
    let Some(sync) = &cfg.replication.synchronous else {
        return String::new();
    };
    let names: Vec<String> = sync
        .standbys
        .iter()
        .filter(|n| **n != cfg.cluster.primary)
        .map(|n| format!("\"{n}\""))
        .collect();
    if names.is_empty() {
        return String::new();
    }
    let mode = match sync.mode {
        SyncMode::First => "FIRST",
        SyncMode::Any => "ANY",
    };
    let count = (sync.count as usize).min(names.len());
    format!("{mode} {count} ({})", names.join(", "))
}

/// The managed block for `node`: replication and rewind rules for every
/// other node, then `[[hba]]`.
pub fn hba_block(cfg: &Config, node: &Node) -> Vec<String> {
    let mut lines = vec![format!(
        "{HBA_BEGIN} (cluster \"{}\"): edits inside this block are overwritten",
        cfg.cluster.name
    )];
    let repl_user = hba::quote_word(&cfg.replication.user);
    for other in cfg.nodes.values().filter(|o| o.name != node.name) {
        let addr = host_cidr(&other.host);
        lines.push(hba::rule_line(
            "host",
            "replication",
            &repl_user,
            Some(&addr),
            "scram-sha-256",
            None,
        ));
    }
    for other in cfg
        .nodes
        .values()
        .filter(|o| o.name != node.name && slot_sync(o))
    {
        lines.push(hba::rule_line(
            "host",
            SLOT_SYNC_DBNAME,
            &repl_user,
            Some(&host_cidr(&other.host)),
            "scram-sha-256",
            None,
        ));
    }
    if let Some(rw) = &cfg.rewind {
        let user = hba::quote_word(&rw.user);
        for other in cfg.nodes.values().filter(|o| o.name != node.name) {
            let addr = host_cidr(&other.host);
            lines.push(hba::rule_line(
                "host",
                "postgres",
                &user,
                Some(&addr),
                "scram-sha-256",
                None,
            ));
        }
    }
    for HbaRule {
        kind,
        database,
        user,
        address,
        method,
        options,
    } in &cfg.hba
    {
        lines.push(hba::rule_line(
            kind,
            database,
            user,
            address.as_deref(),
            method,
            options.as_deref(),
        ));
    }
    lines.push(HBA_END.to_string());
    lines
}

pub fn desired_state(cfg: &Config) -> DesiredState {
    let sync_names = synchronous_standby_names(cfg);
    let mut nodes = IndexMap::new();
    for node in cfg.nodes.values() {
        let is_primary = node.name == cfg.cluster.primary;
        let mut settings = node.settings.clone();
        if let Some(def) = guc::lookup("synchronous_standby_names") {
            let value = if is_primary {
                sync_names.clone()
            } else {
                String::new()
            };
            let raw = toml::Value::String(value);
            let normalized = guc::normalize_desired(def, &raw).ok();
            settings.insert(
                "synchronous_standby_names".into(),
                Setting {
                    name: "synchronous_standby_names".into(),
                    value: raw,
                    normalized,
                },
            );
        }
        if slot_sync(node)
            && !settings.contains_key("hot_standby_feedback")
            && let Some(def) = guc::lookup("hot_standby_feedback")
        {
            let raw = toml::Value::Boolean(true);
            settings.insert(
                "hot_standby_feedback".into(),
                Setting {
                    name: "hot_standby_feedback".into(),
                    normalized: guc::normalize_desired(def, &raw).ok(),
                    value: raw,
                },
            );
        }
        let mut slots: Vec<String> = if cfg.replication.slots {
            cfg.downstreams(&node.name)
                .map(|d| d.name.clone())
                .collect()
        } else {
            Vec::new()
        };
        if is_primary {
            slots.extend(cfg.extra_slots.iter().cloned());
        }
        let recovery = node
            .upstream
            .as_ref()
            .and_then(|up| cfg.nodes.get(up))
            .map(|up| RecoveryDesired {
                primary_conninfo: primary_conninfo(cfg, node, up),
                primary_slot_name: if cfg.replication.slots {
                    node.name.clone()
                } else {
                    String::new()
                },
                passfile: passfile_path(cfg, node),
            });
        nodes.insert(
            node.name.clone(),
            NodeDesired {
                name: node.name.clone(),
                is_primary,
                upstream: node.upstream.clone(),
                settings,
                hba_block: hba_block(cfg, node),
                slots,
                recovery,
            },
        );
    }
    let mut roles = vec![RoleDesired {
        name: cfg.replication.user.clone(),
        kind: RoleKind::Replication,
    }];
    if let Some(rw) = &cfg.rewind {
        roles.push(RoleDesired {
            name: rw.user.clone(),
            kind: RoleKind::Rewind,
        });
    }
    DesiredState {
        cluster: cfg.cluster.name.clone(),
        primary: cfg.cluster.primary.clone(),
        nodes,
        roles,
    }
}

/// The passfile's first line: a comment (libpq skips lines starting with
/// `#`) naming the cluster and the data directory it serves, so that the
/// passfile a renamed cluster left behind is recognised as this node's.
pub fn passfile_header(cluster: &str, data_dir: &str) -> String {
    format!("# pgrepl passfile: cluster {cluster}, data directory {data_dir}")
}

/// The passfile's content: the header, then one line per role, fields
/// escaped as libpq reads them.
pub fn passfile_content(cfg: &Config, node: &Node) -> String {
    let esc = |s: &str| s.replace('\\', "\\\\").replace(':', "\\:");
    let mut out = format!(
        "{}\n*:*:*:{}:{}\n",
        passfile_header(&cfg.cluster.name, &node.postgres.data_dir),
        esc(&cfg.replication.user),
        esc(cfg.replication.password.expose())
    );
    if let Some(rw) = &cfg.rewind {
        out.push_str(&format!(
            "*:*:*:{}:{}\n",
            esc(&rw.user),
            esc(rw.password.expose())
        ));
    }
    out
}

/// The passfile's SHA-256 on `node`, as `sha256sum` prints it there.
pub fn passfile_digest(cfg: &Config, node: &Node) -> String {
    let d = Sha256::digest(passfile_content(cfg, node).as_bytes());
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// How far down the upstream chain a node is (primary = 0).
pub fn depth(cfg: &Config, node: &str) -> usize {
    let mut d = 0;
    let mut cur = node;
    while let Some(up) = cfg.nodes.get(cur).and_then(|n| n.upstream.as_deref()) {
        d += 1;
        cur = up;
        if d > cfg.nodes.len() {
            break;
        }
    }
    d
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conninfo_values_are_quoted_when_needed() {
        assert_eq!(conninfo_value("10.0.0.1"), "10.0.0.1");
        assert_eq!(conninfo_value("a b"), "'a b'");
        assert_eq!(conninfo_value("it's"), "'it\\'s'");
        assert_eq!(conninfo_value("back\\slash"), "'back\\\\slash'");
        assert_eq!(conninfo_value(""), "''");
    }
}
