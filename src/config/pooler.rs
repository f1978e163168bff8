//! `[pgbouncer]`, `[pgbouncer.databases]` and `[poolers.NAME]`: the
//! pgBouncer hosts that follow the primary, checked like the nodes (every
//! problem with its place in the file and a hint).

use std::time::Duration;

use indexmap::IndexMap;
use toml::Spanned;

use super::check::{
    Checker, check_abs_path, check_identifier, check_port, check_ssh, did_you_mean_or_list,
    parse_duration, parse_exec,
};
use super::model::*;
use super::raw::*;

/// Options of a pgBouncer `[databases]` entry passed through as written.
/// `host` and `port` are pgrepl's to set; `password` would be a secret in
/// plain text (use pgBouncer's `auth_file` or `auth_query`).
pub const PASS_THROUGH: &[&str] = &[
    "user",
    "auth_user",
    "pool_size",
    "min_pool_size",
    "reserve_pool",
    "pool_mode",
    "max_db_connections",
    "connect_query",
    "client_encoding",
    "datestyle",
    "timezone",
];

const DEFAULT_INI: &str = "/etc/pgbouncer/pgbouncer.ini";
const DEFAULT_SOCKET_DIR: &str = "/var/run/postgresql";

pub(super) fn check_poolers(
    c: &mut Checker,
    raw: &RawConfig,
    nodes: &IndexMap<String, Node>,
) -> (Option<Pgbouncer>, IndexMap<String, Pooler>) {
    let pgbouncer = raw
        .pgbouncer
        .as_ref()
        .map(|p| check_pgbouncer(c, p.get_ref(), nodes));
    let mut poolers = IndexMap::new();
    // Without poolers, `[pgbouncer]` is checked but changes nothing.
    let Some(raw_poolers) = raw.poolers.as_ref().filter(|p| !p.get_ref().is_empty()) else {
        return (None, poolers);
    };
    let Some(pgb) = &pgbouncer else {
        c.error(
            raw_poolers.span(),
            "`[poolers]` needs a `[pgbouncer]` section",
            "add `[pgbouncer]` with `ini`, `port`, `admin_user` and `[pgbouncer.databases]`",
        );
        return (None, poolers);
    };
    for (key, p) in raw_poolers.get_ref() {
        check_identifier(
            c,
            key,
            "pooler name",
            "pooler names are part of plan addresses",
        );
        let name = key.get_ref().clone();
        if nodes.contains_key(&name) {
            c.error(
                key.span(),
                format!("`{name}` is both a node and a pooler"),
                "give the pooler another name, e.g. \"pgb1\"",
            );
        }
        let p = p.get_ref();
        if let Err((msg, help)) = super::check_host(p.host.get_ref()) {
            c.error(p.host.span(), msg, help);
        }
        let ssh = check_ssh(c, &raw.ssh, &p.ssh);
        let exec = check_pooler_exec(c, &name, p, raw.pgbouncer.as_ref().map(|b| b.get_ref()));
        let reach = Node {
            name: name.clone(),
            host: p.host.get_ref().clone(),
            upstream: None,
            ssh,
            postgres: Postgres {
                port: pgb.port,
                data_dir: "/".into(),
                bin_dir: "/".into(),
                socket_dir: pgb.admin_socket_dir.clone(),
                service: Service::PgCtl,
                config_dir: None,
            },
            exec,
            settings: IndexMap::new(),
        };
        poolers.insert(
            name.clone(),
            Pooler {
                name,
                host: p.host.get_ref().clone(),
                reach,
            },
        );
    }
    (pgbouncer, poolers)
}

/// A pooler's `exec`: `[poolers.NAME] exec`, else `[pgbouncer] exec`, else
/// direct. Commands and the admin console go through it as for a node;
/// pgBouncer in a container is not reached yet.
fn check_pooler_exec(
    c: &mut Checker,
    name: &str,
    raw: &RawPooler,
    shared: Option<&RawPgbouncer>,
) -> Exec {
    let Some(value) = raw.exec.as_ref().or(shared.and_then(|b| b.exec.as_ref())) else {
        return Exec::Direct;
    };
    match parse_exec(c, value) {
        Exec::Docker(_) | Exec::Podman(_) => {
            c.error(
                value.span(),
                format!("pooler `{name}`: pgrepl does not reach a pgBouncer in a container"),
                "use \"direct\" (pgrepl logs in as the user pgBouncer runs as) or { sudo = \"postgres\" } (an administrator that sudoes to that user)",
            );
            Exec::Direct
        }
        exec => exec,
    }
}

fn check_pgbouncer(c: &mut Checker, p: &RawPgbouncer, nodes: &IndexMap<String, Node>) -> Pgbouncer {
    let ini = check_abs_path(c, p.ini.as_ref(), DEFAULT_INI, "pgbouncer.ini");
    let admin_socket_dir = check_abs_path(
        c,
        p.admin_socket_dir.as_ref(),
        DEFAULT_SOCKET_DIR,
        "pgbouncer.admin_socket_dir",
    );
    let port = p
        .port
        .as_ref()
        .map_or(6432, |v| check_port(c, v, "pgbouncer.port"));
    let admin_user = match &p.admin_user {
        None => "pgbouncer".to_string(),
        Some(u) => {
            let v = u.get_ref();
            if v.is_empty() || v.len() > 63 || v.chars().any(|ch| ch.is_control()) {
                c.error(
                    u.span(),
                    format!("invalid pgbouncer.admin_user {v:?}"),
                    "a user name of 1 to 63 characters, e.g. \"pgbouncer\"",
                );
            }
            v.clone()
        }
    };
    let pause_timeout = match &p.pause_timeout {
        None => Duration::from_secs(10),
        Some(t) => match parse_duration(t.get_ref()) {
            Ok(d) if d >= Duration::from_millis(100) && d <= Duration::from_secs(600) => d,
            Ok(_) => {
                c.error(
                    t.span(),
                    "pause_timeout must be between 100ms and 10min",
                    "clients wait this long at most during a switchover, e.g. \"10s\"",
                );
                Duration::from_secs(10)
            }
            Err(e) => {
                c.error(
                    t.span(),
                    format!("invalid pause_timeout: {e}"),
                    "write a duration such as \"10s\", \"500ms\" or \"1min\"",
                );
                Duration::from_secs(10)
            }
        },
    };
    let databases = p
        .databases
        .iter()
        .filter_map(|(k, v)| check_database(c, k, v, nodes))
        .collect();
    Pgbouncer {
        ini,
        admin_socket_dir,
        port,
        admin_user,
        pause_timeout,
        databases,
    }
}

/// A name or value that needs no quoting in pgbouncer.ini.
fn plain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || "_-.:/+,".contains(ch))
}

fn check_database(
    c: &mut Checker,
    key: &Spanned<String>,
    value: &Spanned<toml::Value>,
    nodes: &IndexMap<String, Node>,
) -> Option<PoolerDatabase> {
    let name = key.get_ref();
    let word = name
        .chars()
        .all(|ch| ch.is_ascii_alphanumeric() || "_-.".contains(ch));
    if !plain(name) || !word || name == "pgbouncer" {
        c.error(
            key.span(),
            format!("invalid pooled database name {name:?}"),
            "use letters, digits, `_` and `-` (not `pgbouncer`, the admin console)",
        );
    }
    let span = value.span();
    let toml::Value::Table(t) = value.get_ref() else {
        c.error(
            span,
            format!("`pgbouncer.databases.{name}` must be a table"),
            "e.g. { dbname = \"myapp\", to = \"primary\" }",
        );
        return None;
    };
    let to = match t.get("to") {
        Some(toml::Value::String(s)) => match s.as_str() {
            "primary" => Some(PoolTarget::Primary),
            "standbys" => Some(PoolTarget::Standbys),
            n if nodes.contains_key(n) => Some(PoolTarget::Node(n.to_string())),
            other => {
                let choices = ["primary", "standbys"]
                    .into_iter()
                    .chain(nodes.keys().map(String::as_str));
                c.error(
                    span.clone(),
                    format!("`to = {other:?}` in pgbouncer.databases.{name} is neither \"primary\", \"standbys\" nor a node"),
                    did_you_mean_or_list(other, choices, "`to` takes \"primary\", \"standbys\" or a node:"),
                );
                None
            }
        },
        _ => {
            c.error(
                span.clone(),
                format!("`pgbouncer.databases.{name}` needs `to`"),
                "add to = \"primary\" (read-write), \"standbys\" (read-only) or a node name",
            );
            None
        }
    };
    let dbname = match t.get("dbname") {
        None => name.clone(),
        Some(toml::Value::String(s)) if plain(s) => s.clone(),
        Some(other) => {
            c.error(
                span.clone(),
                format!("invalid dbname {other} in pgbouncer.databases.{name}"),
                "a database name of letters, digits, `_` and `-`",
            );
            name.clone()
        }
    };
    let mut options = Vec::new();
    for (k, v) in t.iter().filter(|(k, _)| *k != "to" && *k != "dbname") {
        match option_value(k, v) {
            Ok(v) => options.push((k.clone(), v)),
            Err(help) => c.error(
                span.clone(),
                format!("pgbouncer.databases.{name}: `{k}` cannot be used here"),
                help,
            ),
        }
    }
    Some(PoolerDatabase {
        name: name.clone(),
        dbname,
        to: to?,
        options,
    })
}

/// A pass-through option's value as written into the ini, or why not.
fn option_value(key: &str, v: &toml::Value) -> Result<String, String> {
    match key {
        "host" | "port" => {
            return Err("pgrepl sets host and port from `to`; remove it".into());
        }
        "password" => {
            return Err(
                "no password in the cluster file: use pgBouncer's auth_file or auth_query".into(),
            );
        }
        k if !PASS_THROUGH.contains(&k) => {
            return Err(did_you_mean_or_list(
                k,
                PASS_THROUGH.iter().copied(),
                "the options passed through are",
            ));
        }
        _ => {}
    }
    match v {
        toml::Value::Integer(i) if *i >= 0 => Ok(i.to_string()),
        toml::Value::String(s) if plain(s) => Ok(s.clone()),
        toml::Value::String(s)
            if key == "connect_query"
                && !s.chars().any(|ch| ch == '\'' || ch == '\\' || ch.is_control()) =>
        {
            Ok(format!("'{s}'"))
        }
        _ => Err("a whole number or a word of letters, digits, `_`, `-` and `.` (connect_query: text without quotes or backslashes)".into()),
    }
}
