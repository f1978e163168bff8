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

/// A libpq conninfo string: `key=value` pairs, each value quoted by
/// [`conninfo_value`].
pub fn conninfo(parts: &[(&str, String)]) -> String {
    parts
        .iter()
        .map(|(k, v)| format!("{k}={}", conninfo_value(v)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The keywords that protect every replication connection: `sslmode`,
/// then `sslrootcert`, `sslcert` and `sslkey` where the file gives them,
/// and with `cluster.postgres_version` 16 or newer (libpq 16 on every
/// node) `require_auth=scram-sha-256`, so that a server that asks for a
/// clear-text or MD5 password is refused before any password is sent. The
/// managed pg_hba block admits these roles by scram-sha-256 only, ahead of
/// every other rule.
pub fn secure_parts(cfg: &Config) -> Vec<(&'static str, String)> {
    let r = &cfg.replication;
    let mut parts = vec![("sslmode", r.sslmode.clone())];
    for (k, v) in [
        ("sslrootcert", &r.sslrootcert),
        ("sslcert", &r.sslcert),
        ("sslkey", &r.sslkey),
    ] {
        if let Some(v) = v {
            parts.push((k, v.clone()));
        }
    }
    if cfg.cluster.postgres_version.is_some_and(|v| v >= 16) {
        parts.push(("require_auth", "scram-sha-256".to_string()));
    }
    parts
}

/// How `node` reaches `source` as `user`: host, port, user, this node's
/// passfile, the extra keywords, then the TLS ones.
fn connection(
    cfg: &Config,
    node: &Node,
    source: &Node,
    user: &str,
    extra: &[(&'static str, String)],
) -> String {
    let mut parts = vec![
        ("host", source.host.clone()),
        ("port", source.postgres.port.to_string()),
        ("user", user.to_string()),
        ("passfile", passfile_path(cfg, node)),
    ];
    parts.extend(extra.iter().cloned());
    parts.extend(secure_parts(cfg));
    conninfo(&parts)
}

/// A standby's `primary_conninfo`.
pub fn primary_conninfo(cfg: &Config, node: &Node, upstream: &Node) -> String {
    let mut extra = vec![("application_name", node.name.clone())];
    if slot_sync(node) {
        extra.push(("dbname", SLOT_SYNC_DBNAME.to_string()));
    }
    connection(cfg, node, upstream, &cfg.replication.user, &extra)
}

/// What `pg_basebackup -d` gets on `node` to copy from `upstream`: the
/// replication role, the passfile, the TLS keywords.
pub fn base_backup_conninfo(cfg: &Config, node: &Node, upstream: &Node) -> String {
    connection(cfg, node, upstream, &cfg.replication.user, &[])
}

/// What `pg_rewind --source-server` gets on `node` to rewind from
/// `source`: the rewind role `user` on database postgres, the passfile,
/// the TLS keywords.
pub fn rewind_conninfo(cfg: &Config, node: &Node, source: &Node, user: &str) -> String {
    let db = [("dbname", "postgres".to_string())];
    connection(cfg, node, source, user, &db)
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

    /// libpq's conninfo parser, as its documentation (34.1.1) describes
    /// it: `key = value`, a value bare or in single quotes, `\` escaping
    /// the next character.
    fn parse_conninfo(s: &str) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut chars = s.chars().peekable();
        loop {
            while chars.next_if(|c| c.is_whitespace()).is_some() {}
            let key: String =
                std::iter::from_fn(|| chars.next_if(|c| *c != '=' && !c.is_whitespace())).collect();
            if key.is_empty() {
                return out;
            }
            while chars.next_if(|c| c.is_whitespace() || *c == '=').is_some() {}
            let mut value = String::new();
            let quoted = chars.next_if_eq(&'\'').is_some();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '\'' if quoted => break,
                    c if c.is_whitespace() && !quoted => break,
                    c => value.push(c),
                }
            }
            out.push((key, value));
        }
    }

    struct PwSources;
    impl crate::config::Sources for PwSources {
        fn env(&self, _: &str) -> Option<String> {
            Some("pw".into())
        }
        fn read_secret_file(&self, _: &std::path::Path) -> Result<String, String> {
            Err("no files".into())
        }
    }

    fn tls_cfg(root: &str) -> Config {
        let text = format!(
            "[cluster]\nname = \"t\"\nprimary = \"db1\"\n[nodes.db1]\nhost = \"10.0.0.1\"\n[nodes.db2]\nhost = \"10.0.0.2\"\n[postgres]\ndata_dir = \"/srv/it's pg/main\"\n[replication]\nuser = \"replicator\"\npassword = {{ env = \"PW\" }}\nsslmode = \"verify-full\"\nsslrootcert = {}\nsslcert = \"/tls/c.crt\"\nsslkey = \"/tls/c.key\"\n[rewind]\nuser = \"rw\"\npassword = {{ env = \"PW\" }}\n",
            toml::Value::String(root.into())
        );
        crate::config::load_str(&text, std::path::Path::new("t.toml"), &PwSources).expect("valid")
    }

    #[test]
    fn every_replication_connection_carries_the_tls_keys() {
        for root in [
            "/tls/root.crt",
            "/tls/it's a root.crt",
            "/tls/back\\slash 'q'",
        ] {
            let cfg = tls_cfg(root);
            let (db1, db2) = (&cfg.nodes["db1"], &cfg.nodes["db2"]);
            let tls = [
                ("sslmode", "verify-full"),
                ("sslrootcert", root),
                ("sslcert", "/tls/c.crt"),
                ("sslkey", "/tls/c.key"),
            ];
            let passfile = "/srv/it's pg/.pgrepl-t.pgpass";
            let common = [("host", "10.0.0.1"), ("port", "5432")];
            let want = |user: &str, extra: &[(&str, &str)]| -> Vec<(String, String)> {
                common
                    .iter()
                    .chain(&[("user", user), ("passfile", passfile)])
                    .chain(extra)
                    .chain(&tls)
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect()
            };
            assert_eq!(
                parse_conninfo(&primary_conninfo(&cfg, db2, db1)),
                want("replicator", &[("application_name", "db2")]),
            );
            assert_eq!(
                parse_conninfo(&base_backup_conninfo(&cfg, db2, db1)),
                want("replicator", &[])
            );
            assert_eq!(
                parse_conninfo(&rewind_conninfo(&cfg, db2, db1, "rw")),
                want("rw", &[("dbname", "postgres")])
            );
        }
        let cfg = tls_cfg("/tls/it's a root.crt");
        assert!(
            primary_conninfo(&cfg, &cfg.nodes["db2"], &cfg.nodes["db1"])
                .ends_with(" sslmode=verify-full sslrootcert='/tls/it\\'s a root.crt' sslcert=/tls/c.crt sslkey=/tls/c.key"),
        );
    }

    #[test]
    fn from_postgresql_16_every_replication_connection_requires_scram() {
        let with_version = |v: &str| {
            let text = format!(
                "[cluster]\nname = \"t\"\nprimary = \"db1\"\n{v}\n[nodes.db1]\nhost = \"10.0.0.1\"\n[nodes.db2]\nhost = \"10.0.0.2\"\n[replication]\nuser = \"replicator\"\npassword = {{ env = \"PW\" }}\n[rewind]\nuser = \"rw\"\npassword = {{ env = \"PW\" }}\n"
            );
            crate::config::load_str(&text, std::path::Path::new("t.toml"), &PwSources)
                .expect("valid")
        };
        for (version, required) in [
            ("", false),
            ("postgres_version = 15", false),
            ("postgres_version = 16", true),
            ("postgres_version = 18", true),
        ] {
            let cfg = with_version(version);
            let (db1, db2) = (&cfg.nodes["db1"], &cfg.nodes["db2"]);
            for info in [
                primary_conninfo(&cfg, db2, db1),
                base_backup_conninfo(&cfg, db2, db1),
                rewind_conninfo(&cfg, db2, db1, "rw"),
            ] {
                let got = parse_conninfo(&info)
                    .into_iter()
                    .filter(|(k, _)| k == "require_auth")
                    .map(|(_, v)| v)
                    .collect::<Vec<_>>();
                let want: Vec<String> = if required {
                    vec!["scram-sha-256".into()]
                } else {
                    vec![]
                };
                assert_eq!(got, want, "{version:?}: {info}");
            }
        }
    }
}
