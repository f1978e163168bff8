//! Cross-field rules: raw file -> validated `Config`, or every problem found.
//!
//! Nothing here touches the network. The only reads are the environment
//! variables and files that hold passwords, through `Sources`.

use core::net::IpAddr;
use std::collections::{HashMap, HashSet};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use indexmap::IndexMap;
use toml::Spanned;

use super::diag::Diagnostic;
use super::excerpt::clip;
use super::model::*;
use super::raw::*;
use super::secret_file::read_private_file;
use crate::guc;

/// Where secrets are read from; tests pass their own.
pub trait Sources {
    fn env(&self, name: &str) -> Option<String>;
    fn read_secret_file(&self, path: &Path) -> Result<String, String>;
}

/// The process environment and the real file system.
pub struct RealSources;

impl Sources for RealSources {
    fn env(&self, name: &str) -> Option<String> {
        std::env::var(name).ok()
    }

    fn read_secret_file(&self, path: &Path) -> Result<String, String> {
        read_private_file(path)
    }
}

pub const HBA_TYPES: &[&str] = &[
    "local",
    "host",
    "hostssl",
    "hostnossl",
    "hostgssenc",
    "hostnogssenc",
];
pub const HBA_METHODS: &[&str] = &[
    "trust",
    "reject",
    "scram-sha-256",
    "md5",
    "password",
    "gss",
    "sspi",
    "ident",
    "peer",
    "ldap",
    "radius",
    "cert",
    "pam",
    "bsd",
];
pub const SSLMODES: &[&str] = &[
    "disable",
    "allow",
    "prefer",
    "require",
    "verify-ca",
    "verify-full",
];
pub const SUPPORTED_MAJORS: std::ops::RangeInclusive<u32> = 12..=18;

pub(super) struct Checker<'a> {
    pub(super) base_dir: &'a Path,
    sources: &'a dyn Sources,
    problems: Vec<Diagnostic>,
    /// Full "did you mean" searches of the setting catalog still allowed.
    setting_searches_left: usize,
}

/// A file gets at most this many full searches of the setting catalog for
/// a "did you mean" (each compares the name with every known setting):
/// 20,000 misspelt settings cost 20,000 cheap checks, not 20,000 searches.
const SETTING_SEARCHES: usize = 100;

impl Checker<'_> {
    pub(super) fn error(
        &mut self,
        span: Range<usize>,
        message: impl Into<String>,
        help: impl Into<String>,
    ) {
        self.problems.push(Diagnostic::at(span, message).help(help));
    }

    /// The known setting an unknown `name` was probably meant to be.
    fn suggest_setting(&mut self, name: &str) -> Option<&'static str> {
        if let Some(next) = guc::successor(name) {
            return Some(next);
        }
        if name.len() > MAX_SUGGESTED
            || self.setting_searches_left == 0
            || !near_a_known_setting(name)
        {
            return None;
        }
        self.setting_searches_left -= 1;
        guc::suggest(name)
    }
}

/// Characters of a name, lower-cased with `-` read as `_` (as
/// `guc::suggest` compares them), counted in 64 buckets.
fn char_counts(name: &str) -> [u16; 64] {
    let mut counts = [0u16; 64];
    for ch in name.chars().flat_map(char::to_lowercase) {
        let ch = if ch == '-' { '_' } else { ch };
        let slot = &mut counts[ch as usize % 64];
        *slot = slot.saturating_add(1);
    }
    counts
}

/// Whether some known setting may be within `guc::suggest`'s reach (3
/// edits at most): each edit changes the characters' counts by at most 2,
/// so a name whose counts differ by more than 6 from every setting's has
/// no suggestion. 64 comparisons per known setting, no allocation.
fn near_a_known_setting(name: &str) -> bool {
    static COUNTS: std::sync::OnceLock<Vec<[u16; 64]>> = std::sync::OnceLock::new();
    let known = COUNTS.get_or_init(|| guc::catalog().iter().map(|d| char_counts(d.name)).collect());
    let mine = char_counts(name);
    known.iter().any(|theirs| {
        let apart: u32 = mine
            .iter()
            .zip(theirs)
            .map(|(a, b)| u32::from(a.abs_diff(*b)))
            .sum();
        apart <= 6
    })
}

pub fn check(
    raw: RawConfig,
    base_dir: &Path,
    path: PathBuf,
    sources: &dyn Sources,
) -> Result<Config, Vec<Diagnostic>> {
    let mut c = Checker {
        base_dir,
        sources,
        problems: Vec::new(),
        setting_searches_left: SETTING_SEARCHES,
    };

    let cluster = check_cluster(&mut c, &raw);
    let node_names = check_node_names(&mut c, &raw, &cluster.primary);
    check_unique_hosts(&mut c, &raw);
    let upstreams = check_upstreams(&mut c, &raw, &cluster.primary, &node_names);

    let replication = check_replication(&mut c, &raw, &cluster.primary, &upstreams);
    let rewind = check_rewind(&mut c, &raw);

    let default_ssh = &raw.ssh;
    let default_pg = &raw.postgres;
    let global_settings = check_settings(&mut c, &raw.settings, cluster.postgres_version);
    let mut nodes = IndexMap::new();
    for (key, node) in raw.nodes.get_ref() {
        let name = key.get_ref().clone();
        let n = node.get_ref();
        let ssh = check_ssh(&mut c, default_ssh, &n.ssh);
        let postgres = check_postgres(&mut c, default_pg, &n.postgres);
        let exec = check_exec(&mut c, &name, n, default_pg);
        let mut settings = global_settings.clone();
        for (k, v) in check_settings(&mut c, &n.settings, cluster.postgres_version) {
            settings.insert(k, v);
        }
        nodes.insert(
            name.clone(),
            Node {
                host: n.host.get_ref().clone(),
                upstream: upstreams.get(&name).cloned().flatten(),
                name,
                ssh,
                postgres,
                exec,
                settings,
            },
        );
    }
    check_hot_standby_settings(&mut c, &raw, &nodes, &cluster.primary);
    check_hot_standby_on(&mut c, &raw, &nodes);
    check_wal_level(&mut c, &raw, &nodes);
    check_wal_senders(&mut c, &raw, &nodes);
    check_replication_slots(&mut c, &raw, &nodes);
    let hba = check_hba(&mut c, &raw, &nodes);
    let extra_slots = check_slots(&mut c, &raw, &node_names);
    let (pgbouncer, poolers) = super::pooler::check_poolers(&mut c, &raw, &nodes);

    // Defaults are checked once per node that inherits them: report each problem once.
    let mut seen = HashSet::new();
    c.problems
        .retain(|d| seen.insert((d.span.clone(), d.message.clone())));
    if c.problems.is_empty() {
        Ok(Config {
            path,
            cluster,
            nodes,
            replication,
            rewind,
            hba,
            extra_slots,
            pgbouncer,
            poolers,
        })
    } else {
        Err(c.problems)
    }
}

/// The node names: at least one, each a valid identifier, the primary among them.
fn check_node_names(c: &mut Checker, raw: &RawConfig, primary: &str) -> Vec<String> {
    let node_names: Vec<String> = raw
        .nodes
        .get_ref()
        .keys()
        .map(|k| k.get_ref().clone())
        .collect();
    if node_names.is_empty() {
        c.error(
            raw.nodes.span(),
            "the cluster has no nodes",
            "add at least one `[nodes.NAME]` table with a `host`",
        );
    }
    for key in raw.nodes.get_ref().keys() {
        check_identifier(
            c,
            key,
            "node name",
            "node names are used as replication slot names",
        );
    }
    if !node_names.is_empty() && !node_names.iter().any(|n| n == primary) {
        c.error(
            raw.cluster.get_ref().primary.span(),
            format!("`cluster.primary` names `{primary}`, which is not a node"),
            did_you_mean_or_list(
                primary,
                node_names.iter().map(String::as_str),
                "the nodes are",
            ),
        );
    }
    node_names
}

/// `[rewind]`: its role, which must not be the replication role.
fn check_rewind(c: &mut Checker, raw: &RawConfig) -> Option<Rewind> {
    let rewind = raw.rewind.as_ref().map(|r| {
        let r = r.get_ref();
        Rewind {
            user: check_role_name(c, &r.user),
            password: check_password(c, &r.password, "rewind.password"),
        }
    });
    if let Some(rw) = &raw.rewind
        && rw.get_ref().user.get_ref() == raw.replication.get_ref().user.get_ref()
    {
        c.error(
            rw.get_ref().user.span(),
            "the rewind role and the replication role must differ",
            "pick another name for `rewind.user`, e.g. \"pgrepl_rewind\"",
        );
    }

    rewind
}

fn check_cluster(c: &mut Checker, raw: &RawConfig) -> Cluster {
    let rc = raw.cluster.get_ref();
    let name = rc.name.get_ref();
    let valid = !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_' || ch == '-');
    if !valid {
        c.error(
            rc.name.span(),
            format!("invalid cluster name {name:?}"),
            "use 1 to 63 characters from a-z, 0-9, `_` and `-`",
        );
    }
    let postgres_version = rc.postgres_version.as_ref().and_then(|v| {
        let major = *v.get_ref();
        match u32::try_from(major) {
            Ok(m) if SUPPORTED_MAJORS.contains(&m) => Some(m),
            _ => {
                c.error(
                    v.span(),
                    format!("unsupported postgres_version {major}"),
                    format!(
                        "pgrepl supports PostgreSQL majors {} to {}; write the major only, e.g. 15",
                        SUPPORTED_MAJORS.start(),
                        SUPPORTED_MAJORS.end()
                    ),
                );
                None
            }
        }
    });
    Cluster {
        name: name.clone(),
        primary: rc.primary.get_ref().clone(),
        postgres_version,
    }
}

fn is_identifier(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars()
            .all(|ch| ch.is_ascii_lowercase() || ch.is_ascii_digit() || ch == '_')
}

pub(super) fn check_identifier(
    c: &mut Checker,
    key: &Spanned<String>,
    what: &str,
    why: &str,
) -> bool {
    let ok = is_identifier(key.get_ref());
    if !ok {
        let suggestion: String = key
            .get_ref()
            .to_ascii_lowercase()
            .chars()
            .map(|ch| if ch.is_ascii_alphanumeric() { ch } else { '_' })
            .take(63)
            .collect();
        c.error(
            key.span(),
            format!("invalid {what} {:?}", key.get_ref()),
            format!("{why}: use 1 to 63 characters from a-z, 0-9 and `_`, e.g. {suggestion:?}"),
        );
    }
    ok
}

fn check_unique_hosts(c: &mut Checker, raw: &RawConfig) {
    let mut seen: HashMap<String, &str> = HashMap::new();
    for (key, node) in raw.nodes.get_ref() {
        let host = node.get_ref().host.get_ref();
        if let Err((why, help)) = check_host(host) {
            c.error(
                node.get_ref().host.span(),
                format!(
                    "invalid host {:?} for node `{}`: {why}",
                    clip(host),
                    key.get_ref()
                ),
                help,
            );
            continue;
        }
        let canonical = host
            .parse::<IpAddr>()
            .map(|ip| ip.to_string())
            .unwrap_or_else(|_| host.to_ascii_lowercase());
        if let Some(first) = seen.get(&canonical) {
            c.error(
                node.get_ref().host.span(),
                format!(
                    "host {host:?} of node `{}` is already the host of node `{first}`",
                    key.get_ref()
                ),
                "every node needs its own host",
            );
        } else {
            seen.insert(canonical, key.get_ref());
        }
    }
}

/// An IP address (v4 or v6) or a host name of RFC 1123 labels (letters,
/// digits and `-`, not at a label's ends); ssh and libpq get it as one
/// argument, so nothing else may pass (a leading `-` is an option to ssh).
/// Else why not, and what to write instead.
pub fn check_host(host: &str) -> Result<(), (String, String)> {
    const WHAT: &str =
        "write the IP address or DNS name pgrepl reaches over SSH and standbys connect to";
    if host.parse::<IpAddr>().is_ok() {
        return Ok(());
    }
    let refuse = |why: &str, help: String| Err((why.to_string(), help));
    if let Some((user, hostport)) = split_ssh_target(host) {
        let (name, port) = match hostport.rsplit_once(':') {
            Some((h, p)) if !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()) => (h, Some(p)),
            _ => (hostport, None),
        };
        let name = name.trim_start_matches('[').trim_end_matches(']');
        let mut parts = vec![format!("`host = {:?}`", clip(name))];
        if let Some(u) = user {
            parts.push(format!(
                "`user = {:?}` in `[ssh]` (or `[nodes.NAME.ssh]`)",
                clip(u)
            ));
        }
        if let Some(p) = port {
            parts.push(format!(
                "`port = {}` in `[ssh]` (or `[nodes.NAME.ssh]`)",
                clip(p)
            ));
        }
        return refuse(
            "a host is an address or a name, not an SSH target",
            format!("write {}", parts.join(", and ")),
        );
    }
    if host.starts_with('[') && host.ends_with(']') {
        return refuse(
            "an IPv6 address is written without brackets",
            format!("write `host = {:?}`", clip(&host[1..host.len() - 1])),
        );
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    if name.is_empty() || name.len() > 253 {
        return refuse("a host name has 1 to 253 characters", WHAT.into());
    }
    let labels_ok = name.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    if !labels_ok {
        return refuse(
            "not an IP address, and not a host name (dot-separated labels of 1 to 63 letters, digits and `-`, no `-` at either end)",
            WHAT.into(),
        );
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|top| top.bytes().all(|b| b.is_ascii_digit()))
    {
        return refuse(
            "not an IP address (four numbers 0 to 255), and a host name does not end in a number",
            WHAT.into(),
        );
    }
    Ok(())
}

/// `ssh://[user@]host[:port][/]`, `user@host[:port]` or `host:port` (not an
/// IPv6 address): (the user, host[:port]); `None` for anything else.
fn split_ssh_target(host: &str) -> Option<(Option<&str>, &str)> {
    let (scheme, rest) = match host.split_once("://") {
        Some((_, rest)) => (true, rest.trim_end_matches('/')),
        None => (false, host),
    };
    let (user, hostport) = match rest.rsplit_once('@') {
        Some((u, h)) => (Some(u), h),
        None => (None, rest),
    };
    let host_port = hostport.matches(':').count() == 1
        || (hostport.starts_with('[') && hostport.contains("]:"));
    (scheme || user.is_some() || host_port).then_some((user, hostport))
}

/// Resolves every node's upstream: `None` for the primary, else the named
/// upstream or the primary. Reports unknown names and cycles.
fn check_upstreams(
    c: &mut Checker,
    raw: &RawConfig,
    primary: &str,
    node_names: &[String],
) -> HashMap<String, Option<String>> {
    let mut upstreams = HashMap::new();
    let known: HashSet<&str> = node_names.iter().map(String::as_str).collect();
    for (key, node) in raw.nodes.get_ref() {
        let name = key.get_ref();
        let resolved = match &node.get_ref().upstream {
            _ if name == primary => {
                if let Some(up) = &node.get_ref().upstream {
                    c.error(
                        up.span(),
                        format!("`{name}` is the primary and cannot have an upstream"),
                        "remove `upstream` from the primary's table (or name another node as `cluster.primary`)",
                    );
                }
                None
            }
            Some(up) if up.get_ref() == name => {
                c.error(
                    up.span(),
                    format!("node `{name}` names itself as its upstream"),
                    "name another standby, or remove `upstream` to stream from the primary",
                );
                None
            }
            Some(up) if !known.contains(up.get_ref().as_str()) => {
                c.error(
                    up.span(),
                    format!("upstream `{}` of node `{name}` is not a node", up.get_ref()),
                    did_you_mean_or_list(
                        up.get_ref(),
                        node_names.iter().map(String::as_str),
                        "the nodes are",
                    ),
                );
                None
            }
            Some(up) => Some(up.get_ref().clone()),
            None => Some(primary.to_string()),
        };
        upstreams.insert(name.clone(), resolved);
    }
    // Every chain must end at the primary; each cycle is reported once.
    let walk = chain_cycles(
        raw.nodes.get_ref().keys().map(|k| k.get_ref().as_str()),
        |name| upstreams.get(name).cloned().flatten(),
        primary,
    );
    for chain in walk.cycles {
        let start = chain[0].as_str();
        let span = raw
            .nodes
            .get_ref()
            .get_key_value(start)
            .map_or(0..0, |(key, node)| {
                node.get_ref()
                    .upstream
                    .as_ref()
                    .map_or(key.span(), |u| u.span())
            });
        c.error(
            span,
            format!("upstream chain of `{start}` is a cycle: {}", chain.join(" -> ")),
            "every chain of upstreams must end at the primary; remove `upstream` from one of these nodes",
        );
    }
    upstreams
}

/// The upstream cycles found by following each node's chain, in `order`.
#[derive(Debug, PartialEq, Eq)]
struct ChainWalk {
    /// Each cycle once, as the chain of the first node (in `order`) that
    /// reaches it: that node, ..., the node where the chain closes.
    cycles: Vec<Vec<String>>,
    /// Nodes visited in all: each node once, however long the chains.
    steps: usize,
}

/// Follows every chain of upstreams (`upstream(node)`: `None` for the
/// primary and for a node without a usable upstream) to the primary,
/// visiting each node once: a chain stops at a node an earlier chain
/// already followed, so a 5,000-node cascade costs 5,000 steps, not
/// 12.5 million.
fn chain_cycles<'a>(
    order: impl Iterator<Item = &'a str>,
    upstream: impl Fn(&str) -> Option<String>,
    primary: &str,
) -> ChainWalk {
    // Absent: not visited; Some(i): on the chain being followed, at i; None: done.
    let mut state: HashMap<String, Option<usize>> = HashMap::new();
    let mut walk = ChainWalk {
        cycles: Vec::new(),
        steps: 0,
    };
    for start in order {
        let mut chain: Vec<String> = Vec::new();
        let mut cur = start.to_string();
        loop {
            match state.get(&cur) {
                Some(None) => break,
                Some(Some(_)) => {
                    chain.push(cur);
                    walk.cycles.push(chain.clone());
                    break;
                }
                None => {}
            }
            walk.steps += 1;
            state.insert(cur.clone(), Some(chain.len()));
            chain.push(cur.clone());
            match upstream(&cur) {
                Some(next) if next != primary => cur = next,
                _ => break,
            }
        }
        for name in &chain {
            state.insert(name.clone(), None);
        }
    }
    walk
}

fn check_replication(
    c: &mut Checker,
    raw: &RawConfig,
    primary: &str,
    upstreams: &HashMap<String, Option<String>>,
) -> Replication {
    let r = raw.replication.get_ref();
    let sslmode = match &r.sslmode {
        None => "prefer".to_string(),
        Some(m) => {
            if !SSLMODES.contains(&m.get_ref().as_str()) {
                c.error(
                    m.span(),
                    format!("unknown sslmode {:?}", m.get_ref()),
                    format!("use one of {}", SSLMODES.join(", ")),
                );
            }
            m.get_ref().clone()
        }
    };
    let [sslrootcert, sslcert, sslkey] = check_tls_files(c, r);
    let max_lag_on_failover = match &r.max_lag_on_failover {
        None => 1024 * 1024,
        Some(v) => match parse_bytes(v.get_ref()) {
            Ok(b) => b,
            Err(e) => {
                c.error(
                    v.span(),
                    format!("invalid max_lag_on_failover: {e}"),
                    "write a size such as \"1MB\" (units B, kB, MB, GB, TB; case-sensitive) or a number of bytes",
                );
                0
            }
        },
    };
    let synchronous = r
        .synchronous
        .as_ref()
        .map(|s| check_synchronous(c, s.get_ref(), primary, upstreams));
    Replication {
        user: check_role_name(c, &r.user),
        password: check_password(c, &r.password, "replication.password"),
        slots: r.slots.as_ref().is_none_or(|s| *s.get_ref()),
        sslmode,
        sslrootcert,
        sslcert,
        sslkey,
        max_lag_on_failover,
        synchronous,
    }
}

/// `sslrootcert`, `sslcert`, `sslkey`: absolute paths on the nodes, without
/// control characters (they go into conninfo strings and configuration
/// files); `sslcert` and `sslkey` come together.
fn check_tls_files(c: &mut Checker, r: &RawReplication) -> [Option<String>; 3] {
    let files = [
        ("sslrootcert", &r.sslrootcert),
        ("sslcert", &r.sslcert),
        ("sslkey", &r.sslkey),
    ];
    let paths = files.map(|(key, p)| {
        let p = p.as_ref()?;
        let v = p.get_ref();
        if !v.starts_with('/') || v.ends_with('/') || v.contains(char::is_control) {
            c.error(
                p.span(),
                format!("`replication.{key}` must be an absolute file path on the nodes"),
                format!("e.g. \"/etc/postgresql/tls/{key}.pem\" (no control characters)"),
            );
        }
        Some(v.clone())
    });
    if let (Some(one), None) | (None, Some(one)) = (&r.sslcert, &r.sslkey) {
        c.error(
            one.span(),
            "`replication.sslcert` and `replication.sslkey` come together",
            "give both (the client certificate and its key), or neither",
        );
    }
    paths
}

fn check_synchronous(
    c: &mut Checker,
    s: &RawSynchronous,
    primary: &str,
    upstreams: &HashMap<String, Option<String>>,
) -> Synchronous {
    let mode = match s.mode.as_ref().map(|m| m.get_ref().as_str()) {
        None | Some("first") => SyncMode::First,
        Some("any") => SyncMode::Any,
        Some(other) => {
            let span = s.mode.as_ref().map_or(0..0, |m| m.span());
            c.error(
                span,
                format!("unknown synchronous mode {other:?}"),
                "use \"first\" (priority order) or \"any\" (quorum)",
            );
            SyncMode::First
        }
    };
    let mut standbys = Vec::new();
    for st in s.standbys.get_ref() {
        let name = st.get_ref();
        match upstreams.get(name) {
            None => c.error(
                st.span(),
                format!("synchronous standby `{name}` is not a node"),
                did_you_mean_or_list(name, sorted_names(upstreams).iter().map(String::as_str), "the nodes are"),
            ),
            Some(Some(up)) if up != primary => c.error(
                st.span(),
                format!("`{name}` streams from `{up}`, not from the primary, so it cannot be synchronous"),
                "PostgreSQL only waits for standbys connected directly to the primary; remove its `upstream` or drop it from this list",
            ),
            _ => {}
        }
        if standbys.contains(name) {
            c.error(
                st.span(),
                format!("`{name}` is listed twice"),
                "list each standby once",
            );
        }
        standbys.push(name.clone());
    }
    let candidates = standbys.iter().filter(|n| n.as_str() != primary).count();
    let count = match &s.count {
        None => 1,
        Some(n) => {
            let v = *n.get_ref();
            if v < 1 || v as usize > candidates.max(1) {
                c.error(
                    n.span(),
                    format!("synchronous count {v} is out of range"),
                    format!(
                        "use 1 to {} (the number of listed standbys other than the primary)",
                        candidates.max(1)
                    ),
                );
            }
            v.clamp(1, u32::MAX as i64) as u32
        }
    };
    if candidates == 0 && !s.standbys.get_ref().is_empty() {
        c.error(
            s.standbys.span(),
            "the only synchronous standby listed is the primary itself",
            "list at least one standby; the primary is skipped while it is the primary",
        );
    }
    if s.standbys.get_ref().is_empty() {
        c.error(
            s.standbys.span(),
            "`synchronous.standbys` is empty",
            "list the standbys that may confirm commits, or remove `synchronous`",
        );
    }
    Synchronous {
        mode,
        count,
        standbys,
    }
}

/// Node names in a stable order, so suggestions never depend on hashing.
fn sorted_names(upstreams: &HashMap<String, Option<String>>) -> Vec<String> {
    let mut names: Vec<String> = upstreams.keys().cloned().collect();
    names.sort();
    names
}

fn check_role_name(c: &mut Checker, user: &Spanned<String>) -> String {
    let u = user.get_ref();
    if u.is_empty() || u.len() > 63 || u.chars().any(|ch| ch.is_control()) {
        c.error(
            user.span(),
            format!("invalid role name {u:?}"),
            "use 1 to 63 printable characters, e.g. \"replicator\"",
        );
    }
    u.clone()
}

fn check_password(c: &mut Checker, value: &Spanned<toml::Value>, key: &str) -> Secret {
    let placeholder = Secret::new(SecretSource::Env(String::new()), String::new());
    let how = format!(
        "write `{key} = {{ env = \"VARIABLE\" }}` or `{key} = {{ file = \"/path/to/0600-file\" }}`"
    );
    let table = match value.get_ref() {
        toml::Value::Table(t) => t,
        toml::Value::String(_) => {
            c.error(
                value.span(),
                format!("`{key}` is written inline; passwords never appear in the cluster file"),
                how,
            );
            return placeholder;
        }
        other => {
            c.error(
                value.span(),
                format!("`{key}` must be a table, not a {}", other.type_str()),
                how,
            );
            return placeholder;
        }
    };
    let keys: Vec<&str> = table.keys().map(String::as_str).collect();
    let read = match (table.get("env"), table.get("file"), keys.len()) {
        (Some(toml::Value::String(var)), None, 1) => password_from_env(c.sources, var, key),
        (None, Some(toml::Value::String(file)), 1) => {
            password_from_file(c.sources, resolve_path(c.base_dir, file), key)
        }
        _ => Err((
            format!("`{key}` needs exactly one of `env` or `file`, as a string"),
            how,
        )),
    };
    read.unwrap_or_else(|(message, help)| {
        c.error(value.span(), message, help);
        placeholder
    })
}

/// A password problem: the message and what to do.
type PasswordProblem = (String, String);

fn password_from_env(
    sources: &dyn Sources,
    var: &str,
    key: &str,
) -> Result<Secret, PasswordProblem> {
    let Some(pw) = sources.env(var) else {
        return Err((
            format!("environment variable {var} (for `{key}`) is not set"),
            format!("export {var}=... before running pgrepl, or read the password from a file"),
        ));
    };
    if pw.is_empty() {
        return Err((
            format!("environment variable {var} (for `{key}`) is empty"),
            format!("set {var} to the password before running pgrepl"),
        ));
    }
    if let Some(bad) = unsendable(&pw) {
        return Err((
            format!("environment variable {var} (for `{key}`) holds {bad}"),
            format!("set {var} to the password alone; {PASSWORD_IS_ONE_LINE}"),
        ));
    }
    Ok(Secret::new(SecretSource::Env(var.to_string()), pw))
}

/// Why a password must be one line of text.
const PASSWORD_IS_ONE_LINE: &str = "a password is one line of a passfile, without CR, LF or NUL";

fn password_from_file(
    sources: &dyn Sources,
    path: PathBuf,
    key: &str,
) -> Result<Secret, PasswordProblem> {
    let text = sources.read_secret_file(&path).map_err(|e| {
        (
            format!("password file for `{key}`: {e}"),
            "fix the file or point `file` elsewhere".to_string(),
        )
    })?;
    // One final line break, LF or CRLF, ends the line; it is not the password's.
    let pw = text
        .strip_suffix("\r\n")
        .or_else(|| text.strip_suffix('\n'))
        .unwrap_or(&text);
    let shown = path.display();
    if pw.is_empty() {
        return Err((
            format!("password file {shown} (for `{key}`) is empty"),
            "write the password on the file's first line".to_string(),
        ));
    }
    if let Some(bad) = unsendable(pw) {
        let what = if pw.contains('\n') {
            "more than one line"
        } else {
            bad
        };
        return Err((
            format!("password file {shown} (for `{key}`) holds {what}"),
            format!("write the password alone on the file's first line; {PASSWORD_IS_ONE_LINE}"),
        ));
    }
    Ok(Secret::new(SecretSource::File(path), pw.to_string()))
}

/// "a line break" or "a NUL" when text cannot travel as one line of a
/// PostgreSQL file (a passfile, postgresql.auto.conf).
fn unsendable(pw: &str) -> Option<&'static str> {
    if pw.contains('\0') {
        Some("a NUL")
    } else if pw.contains(['\n', '\r']) {
        Some("a line break (CR or LF)")
    } else {
        None
    }
}

/// Relative paths in the file are relative to the file's directory; `~/` is $HOME.
pub fn resolve_path(base_dir: &Path, p: &str) -> PathBuf {
    if let Some(rest) = p.strip_prefix("~/")
        && let Some(home) = std::env::var_os("HOME")
    {
        return PathBuf::from(home).join(rest);
    }
    let path = PathBuf::from(p);
    if path.is_absolute() {
        path
    } else {
        base_dir.join(path)
    }
}

pub(super) fn check_port(c: &mut Checker, port: &Spanned<i64>, key: &str) -> u16 {
    match u16::try_from(*port.get_ref()) {
        Ok(p) if p > 0 => p,
        _ => {
            c.error(
                port.span(),
                format!("`{key}` {} is not a TCP port", port.get_ref()),
                "use 1 to 65535",
            );
            1
        }
    }
}

pub(super) fn check_ssh(c: &mut Checker, default: &RawSsh, node: &RawSsh) -> Ssh {
    let user = node.user.as_ref().or(default.user.as_ref());
    let port = node.port.as_ref().or(default.port.as_ref());
    let identity = node
        .identity_file
        .as_ref()
        .or(default.identity_file.as_ref());
    let known_hosts_file = node
        .known_hosts_file
        .as_ref()
        .or(default.known_hosts_file.as_ref());
    let known_hosts = node.known_hosts.as_ref().or(default.known_hosts.as_ref());
    let timeout = node
        .connect_timeout
        .as_ref()
        .or(default.connect_timeout.as_ref());
    if let Some(u) = user.filter(|u| !is_exec_name(u.get_ref())) {
        c.error(
            u.span(),
            format!("invalid ssh user {:?}", clip(u.get_ref())),
            "write the login name: 1 to 64 characters from letters, digits, `_`, `.` and `-`, not starting with `-` or `.` (ssh would read an option)",
        );
    }
    Ssh {
        user: user.map_or_else(|| "postgres".to_string(), |u| u.get_ref().clone()),
        port: port.map_or(22, |p| check_port(c, p, "ssh.port")),
        identity_file: identity.map(|p| resolve_path(c.base_dir, p.get_ref())),
        known_hosts_file: known_hosts_file.map(|p| resolve_path(c.base_dir, p.get_ref())),
        known_hosts: match known_hosts.map(|k| (k, k.get_ref().as_str())) {
            None | Some((_, "strict")) => KnownHosts::Strict,
            Some((_, "accept-new")) => KnownHosts::AcceptNew,
            Some((k, "off" | "no" | "false")) => {
                c.error(
                    k.span(),
                    "host key checking cannot be turned off",
                    "use \"strict\" (default) or \"accept-new\" (trust a host key on first contact)",
                );
                KnownHosts::Strict
            }
            Some((k, other)) => {
                c.error(
                    k.span(),
                    format!("unknown known_hosts mode {other:?}"),
                    "use \"strict\" or \"accept-new\"",
                );
                KnownHosts::Strict
            }
        },
        connect_timeout: match timeout {
            None => Duration::from_secs(10),
            Some(t) => match parse_duration(t.get_ref()) {
                Ok(d) if !d.is_zero() && d <= Duration::from_secs(600) => d,
                Ok(_) => {
                    c.error(
                        t.span(),
                        "connect_timeout must be between 1ms and 10min",
                        "e.g. \"10s\"",
                    );
                    Duration::from_secs(10)
                }
                Err(e) => {
                    c.error(
                        t.span(),
                        format!("invalid connect_timeout: {e}"),
                        "write a duration such as \"10s\", \"500ms\" or \"1min\"",
                    );
                    Duration::from_secs(10)
                }
            },
        },
    }
}

pub(super) fn check_abs_path(
    c: &mut Checker,
    p: Option<&Spanned<String>>,
    default: &str,
    key: &str,
) -> String {
    match p {
        None => default.to_string(),
        Some(p) => {
            let v = p.get_ref();
            if !v.starts_with('/') || v.contains('\n') || v.contains('\0') {
                c.error(
                    p.span(),
                    format!("`{key}` must be an absolute path on the node"),
                    format!("e.g. {default:?}"),
                );
            }
            v.trim_end_matches('/').to_string().max("/".to_string())
        }
    }
}

fn check_postgres(c: &mut Checker, default: &RawPostgres, node: &RawPostgres) -> Postgres {
    let pick = |a: &Option<Spanned<String>>,
                b: &Option<Spanned<String>>|
     -> Option<Spanned<String>> { a.as_ref().or(b.as_ref()).cloned() };
    let service = node.service.as_ref().or(default.service.as_ref()).cloned();
    let config_dir = pick(&node.config_dir, &default.config_dir);
    Postgres {
        port: node
            .port
            .as_ref()
            .or(default.port.as_ref())
            .map_or(5432, |p| check_port(c, p, "postgres.port")),
        data_dir: check_abs_path(
            c,
            pick(&node.data_dir, &default.data_dir).as_ref(),
            "/var/lib/postgresql/15/main",
            "postgres.data_dir",
        ),
        bin_dir: check_abs_path(
            c,
            pick(&node.bin_dir, &default.bin_dir).as_ref(),
            "/usr/lib/postgresql/15/bin",
            "postgres.bin_dir",
        ),
        socket_dir: check_abs_path(
            c,
            pick(&node.socket_dir, &default.socket_dir).as_ref(),
            "/var/run/postgresql",
            "postgres.socket_dir",
        ),
        config_dir: config_dir.map(|d| {
            check_abs_path(
                c,
                Some(&d),
                "/etc/postgresql/15/main",
                "postgres.config_dir",
            )
        }),
        service: service.map_or(Service::PgCtl, |s| check_service(c, &s)),
    }
}

fn check_service(c: &mut Checker, s: &Spanned<toml::Value>) -> Service {
    let help =
        "use \"pg_ctl\", { systemd = \"postgresql@15-main\" } or { pg_ctlcluster = \"15/main\" }";
    match s.get_ref() {
        toml::Value::String(v) if v == "pg_ctl" => Service::PgCtl,
        toml::Value::Table(t) if t.len() == 1 => match t.iter().next() {
            Some((k, toml::Value::String(unit))) if k == "systemd" => {
                if !is_service_word(unit) {
                    c.error(
                        s.span(),
                        format!("invalid systemd unit {:?}", clip(unit)),
                        "write the unit's name, e.g. \"postgresql@15-main\": not empty, no `-` first (systemctl would read an option), no `/`, spaces or control characters",
                    );
                }
                Service::Systemd(unit.clone())
            }
            Some((k, toml::Value::String(cl))) if k == "pg_ctlcluster" => {
                let ok = cl.split_once('/').is_some_and(|(v, n)| {
                    !v.is_empty() && v.chars().all(|ch| ch.is_ascii_digit()) && is_service_word(n)
                });
                if !ok {
                    c.error(
                        s.span(),
                        format!("invalid pg_ctlcluster cluster {:?}", clip(cl)),
                        "write VERSION/NAME, e.g. \"15/main\": a NAME without `-` first, `/`, spaces or control characters",
                    );
                }
                Service::PgCtlCluster(cl.clone())
            }
            _ => {
                c.error(s.span(), "unknown `postgres.service`", help);
                Service::PgCtl
            }
        },
        _ => {
            c.error(s.span(), "unknown `postgres.service`", help);
            Service::PgCtl
        }
    }
}

/// The node's `exec`: `[nodes.NAME] exec` or `[nodes.NAME.postgres] exec`
/// (not both), else `[postgres] exec`, else direct.
fn check_exec(c: &mut Checker, node: &str, raw: &RawNode, default: &RawPostgres) -> Exec {
    if let (Some(_), Some(again)) = (&raw.exec, &raw.postgres.exec) {
        c.error(
            again.span(),
            format!("`exec` is set twice for node `{node}`"),
            format!("keep one of `[nodes.{node}] exec` and `[nodes.{node}.postgres] exec`"),
        );
    }
    let Some(value) = raw
        .exec
        .as_ref()
        .or(raw.postgres.exec.as_ref())
        .or(default.exec.as_ref())
    else {
        return Exec::Direct;
    };
    let exec = parse_exec(c, value);
    // `[postgres] service` for the other nodes does not reach a container.
    if let (Exec::Docker(_) | Exec::Podman(_), Some(service)) = (&exec, &raw.postgres.service) {
        c.error(
            service.span(),
            format!("node `{node}`: `postgres.service` does not apply to a container"),
            "the container is the service (docker start, stop, restart): leave `service` out for this node",
        );
    }
    exec
}

/// `"direct"`, `{ sudo = USER }`, `{ docker = CONTAINER }` or `{ podman = CONTAINER }`.
pub(super) fn parse_exec(c: &mut Checker, value: &Spanned<toml::Value>) -> Exec {
    let help = "use \"direct\" (the default), { sudo = \"postgres\" }, { docker = \"CONTAINER\" } or { podman = \"CONTAINER\" }";
    let (kind, name) = match value.get_ref() {
        toml::Value::String(v) if v == "direct" => return Exec::Direct,
        toml::Value::Table(t) if t.len() == 1 => match t.iter().next() {
            Some((k, toml::Value::String(name)))
                if matches!(k.as_str(), "sudo" | "docker" | "podman") =>
            {
                (k.as_str(), name)
            }
            _ => {
                c.error(value.span(), "unknown `exec`", help);
                return Exec::Direct;
            }
        },
        _ => {
            c.error(value.span(), "unknown `exec`", help);
            return Exec::Direct;
        }
    };
    let what = if kind == "sudo" { "user" } else { "container" };
    if !is_exec_name(name) {
        c.error(
            value.span(),
            format!("invalid {kind} {what} {:?}", clip(name)),
            format!(
                "write the {what}'s name: 1 to 64 characters from letters, digits, `_`, `.` and `-`, not starting with `-` or `.` (sudo or docker would read an option)"
            ),
        );
    }
    match kind {
        "sudo" => Exec::Sudo(name.clone()),
        "docker" => Exec::Docker(name.clone()),
        _ => Exec::Podman(name.clone()),
    }
}

/// A user or container name passed as one argument to sudo or docker:
/// letters, digits, `_`, `.`, `-`, not an option, not `.` or `..`.
fn is_exec_name(w: &str) -> bool {
    (1..=64).contains(&w.len())
        && w.starts_with(|ch: char| ch.is_ascii_alphanumeric() || ch == '_')
        && w.chars()
            .all(|ch| ch.is_ascii_alphanumeric() || matches!(ch, '_' | '.' | '-'))
}

/// A systemd unit or a Debian cluster name, passed as one argument to
/// systemctl or pg_ctlcluster: not empty, not an option, not a path.
fn is_service_word(w: &str) -> bool {
    !w.is_empty()
        && !w.starts_with('-')
        && !w
            .chars()
            .any(|ch| ch == '/' || ch.is_whitespace() || ch.is_control())
}

fn check_settings(
    c: &mut Checker,
    settings: &SpannedMap<Spanned<toml::Value>>,
    major: Option<u32>,
) -> IndexMap<String, Setting> {
    let mut out = IndexMap::new();
    for (key, value) in settings {
        let name = key.get_ref().to_ascii_lowercase();
        if let Some(owner) = guc::owned_setting(&name) {
            c.error(
                key.span(),
                format!("`{name}` is managed by pgrepl and cannot be set in settings"),
                format!("it is controlled by {owner}"),
            );
            continue;
        }
        if let Some(bad) = value_with_line_break(value.get_ref()) {
            c.error(
                value.span(),
                format!("the value of `{}` holds {bad}", clip(&name)),
                "a setting's value is written on one line of postgresql.auto.conf: remove the line break or NUL",
            );
            continue;
        }
        if name.contains('.') {
            if !guc::is_custom_name(&name) || crate::quote::setting_name(&name).is_err() {
                c.error(
                    key.span(),
                    format!("`{}` is not a valid custom setting name", clip(key.get_ref())),
                    "a custom setting is two or more identifiers joined by dots (ASCII letters, digits and `_`, not starting with a digit), e.g. \"myapp.feature\"",
                );
                continue;
            }
            // A custom (extension) setting: PostgreSQL accepts any value as text.
            match value.get_ref() {
                toml::Value::Table(_) | toml::Value::Array(_) | toml::Value::Datetime(_) => c
                    .error(
                        value.span(),
                        format!("`{name}` must be a string, number or boolean"),
                        "write the value as PostgreSQL would read it, e.g. \"10000\"",
                    ),
                v => {
                    out.insert(
                        name.clone(),
                        Setting {
                            name,
                            value: v.clone(),
                            normalized: None,
                        },
                    );
                }
            }
            continue;
        }
        let Some(def) = guc::lookup(&name) else {
            unknown_setting(c, key, value.get_ref(), &name);
            continue;
        };
        if let Some(reason) = guc::not_settable_reason(def) {
            c.error(
                key.span(),
                format!("`{name}` cannot be set with ALTER SYSTEM: {reason}"),
                "remove it from the settings",
            );
            continue;
        }
        if let Some(m) = major
            && !guc::available_in(def, m)
        {
            let (since, until) = guc::lifetime(def);
            let help = match (until, guc::successor(&name)) {
                (Some(u), Some(next)) if u < m => {
                    format!("it was removed after PostgreSQL {u}: use `{next}` instead")
                }
                (Some(u), None) if u < m => {
                    format!("it was removed after PostgreSQL {u}: remove it")
                }
                _ => format!(
                    "it exists from PostgreSQL {since} on: remove it or raise `cluster.postgres_version`"
                ),
            };
            c.error(
                key.span(),
                format!("`{name}` does not exist in PostgreSQL {m}"),
                help,
            );
            continue;
        }
        // That major's facts (type, range, enum values), when the file names it.
        let def = major.and_then(|m| guc::lookup_in(&name, m)).unwrap_or(def);
        match guc::normalize_desired(def, value.get_ref()) {
            Ok(n) => {
                out.insert(
                    name.clone(),
                    Setting {
                        name: def.name.to_string(),
                        value: value.get_ref().clone(),
                        normalized: Some(n),
                    },
                );
            }
            Err(e) => c.error(value.span(), e.to_string(), value_help(def)),
        }
    }
    out
}

/// Reports a setting PostgreSQL does not know, with the likely fix.
fn unknown_setting(c: &mut Checker, key: &Spanned<String>, value: &toml::Value, name: &str) {
    let help = match value {
        // `myapp.foo = "bar"` unquoted is TOML for a table `myapp` with a
        // key `foo`: the custom setting wants its name quoted.
        toml::Value::Table(t) if !t.is_empty() => {
            let inner = t.keys().next().map_or("", String::as_str);
            format!(
                "a dotted key is a TOML table; to set the custom setting, quote its name: \"{}.{}\" = ...",
                clip(key.get_ref()),
                clip(inner)
            )
        }
        _ => match c.suggest_setting(name) {
            Some(s) => format!("did you mean `{s}`?"),
            None => "check the spelling against `SELECT name FROM pg_settings`".to_string(),
        },
    };
    c.error(
        key.span(),
        format!("unknown setting `{}`", clip(key.get_ref())),
        help,
    );
}

/// "a line break" or "a NUL" when a setting's value (a string, or a string
/// in an array) holds one: postgresql.auto.conf holds a value on one line,
/// and PostgreSQL text cannot hold a NUL.
fn value_with_line_break(value: &toml::Value) -> Option<&'static str> {
    match value {
        toml::Value::String(s) => unsendable(s),
        toml::Value::Array(items) => items.iter().find_map(value_with_line_break),
        _ => None,
    }
}

/// What a valid value of this setting looks like.
fn value_help(def: &guc::GucDef) -> String {
    let range = match (def.min, def.max) {
        (Some(lo), Some(hi)) => format!(" from {lo} to {hi}"),
        _ => String::new(),
    };
    match (def.vartype, def.unit) {
        (guc::VarType::Bool, _) => format!("`{}` is a boolean: write true or false", def.name),
        (guc::VarType::Enum, _) => format!(
            "`{}` takes one of: {}",
            def.name,
            def.enum_values.join(", ")
        ),
        (guc::VarType::Integer, Some(u)) if u.ends_with('B') => format!(
            "`{}` is a size: a number of {u} units{range}, or a string with a unit, e.g. \"64MB\" (B, kB, MB, GB, TB; case-sensitive)",
            def.name
        ),
        (guc::VarType::Integer | guc::VarType::Real, Some(u)) => format!(
            "`{}` is a duration: a number of {u}{range}, or a string with a unit, e.g. \"5min\" (us, ms, s, min, h, d; case-sensitive)",
            def.name
        ),
        (guc::VarType::Integer, None) => format!("`{}` is an integer{range}", def.name),
        (guc::VarType::Real, None) => format!("`{}` is a number{range}", def.name),
        (guc::VarType::String, _) => format!("`{}` is a string: write it in quotes", def.name),
    }
}

/// `[nodes.NAME.settings]` entry for `guc` (case-insensitive), as written.
fn node_setting<'a>(
    raw: &'a RawConfig,
    node: &str,
    guc: &str,
) -> Option<(&'a Spanned<String>, &'a Spanned<toml::Value>)> {
    let (_, n) = raw
        .nodes
        .get_ref()
        .iter()
        .find(|(k, _)| k.get_ref() == node)?;
    n.get_ref()
        .settings
        .iter()
        .find(|(k, _)| k.get_ref().eq_ignore_ascii_case(guc))
}

/// Where a node's value of `guc` is written: its own line, else the
/// `[settings]` line, else (PostgreSQL's default) the `[nodes]` table.
fn effective_setting_span(raw: &RawConfig, node: &str, guc: &str) -> std::ops::Range<usize> {
    node_setting(raw, node, guc)
        .or_else(|| {
            raw.settings
                .iter()
                .find(|(k, _)| k.get_ref().eq_ignore_ascii_case(guc))
        })
        .map_or_else(|| raw.nodes.span(), |(_, v)| v.span())
}

/// A node's integer value of `guc` from the file, or PostgreSQL's
/// `default` when the file does not set it; `None` when it is not an integer.
fn int_setting(node: &Node, guc: &str, default: i64) -> Option<i64> {
    match node.settings.get(guc).map(|s| &s.normalized) {
        Some(Some(guc::Normalized::Integer(v))) => Some(*v),
        Some(_) => None,
        None => Some(default),
    }
}

/// Reports `message` once per line of the file: a `[settings]` line
/// shared by every node is one problem, not one per node.
fn once_per_line(
    c: &mut Checker,
    reported: &mut Vec<Range<usize>>,
    span: Range<usize>,
    message: String,
    help: String,
) {
    if !reported.contains(&span) {
        reported.push(span.clone());
        c.error(span, message, help);
    }
}

/// `wal_level = minimal` writes no WAL a standby can replay, and a server
/// with it refuses to start while `max_wal_senders` is above 0: no node of
/// a replicated cluster can run with it (any node may become the primary,
/// and a standby must match its primary).
fn check_wal_level(c: &mut Checker, raw: &RawConfig, nodes: &IndexMap<String, Node>) {
    let mut reported = Vec::new();
    for (name, node) in nodes {
        let Some(Some(guc::Normalized::Enum(level))) =
            node.settings.get("wal_level").map(|s| &s.normalized)
        else {
            continue;
        };
        if level != "minimal" {
            continue;
        }
        let span = effective_setting_span(raw, name, "wal_level");
        once_per_line(
            c,
            &mut reported,
            span,
            format!("wal_level is minimal on `{name}`, which cannot replicate"),
            "with wal_level = minimal PostgreSQL writes no WAL a standby can replay and refuses to start while max_wal_senders is above 0 (\"WAL streaming (max_wal_senders > 0) requires wal_level replica or logical\"), so the node would stay down; use \"replica\" (PostgreSQL's default) or \"logical\"".into(),
        );
    }
}

/// Any node may become the primary and stream to all the others, a
/// `[[slots]]` entry is there for a backup tool that streams WAL through
/// it, and a base backup takes two WAL senders while the others stream:
/// each node needs one sender per other node, one per `[[slots]]` entry,
/// plus one.
fn check_wal_senders(c: &mut Checker, raw: &RawConfig, nodes: &IndexMap<String, Node>) {
    let others = nodes.len() as i64 - 1;
    let extra = raw.slots.len() as i64;
    let need = others + extra + 1;
    let slots = if extra > 0 {
        format!(", and a backup tool streams through each of the {extra} [[slots]]")
    } else {
        String::new()
    };
    check_at_least(c, raw, nodes, "max_wal_senders", need, |name, have| {
        (
            format!(
                "max_wal_senders on `{name}` is {have}, too low for {} nodes",
                nodes.len()
            ),
            format!(
                "any node may become primary and stream to all {others} other nodes{slots}, and a base backup needs two senders: set max_wal_senders to at least {need}"
            ),
        )
    });
}

/// PostgreSQL refuses to start with more replication slots on disk than
/// `max_replication_slots` (`FATAL: too many replication slots active
/// before shutdown`), and any node may become the primary: it then holds a
/// slot for every other node that streams from it (a base backup without a
/// slot takes a temporary one) and every `[[slots]]` entry. So each node
/// needs one slot per other node plus one per `[[slots]]` entry. Slots the
/// file does not name are counted against the node itself, at plan time.
fn check_replication_slots(c: &mut Checker, raw: &RawConfig, nodes: &IndexMap<String, Node>) {
    let others = nodes.len() as i64 - 1;
    let extra = raw.slots.len() as i64;
    let need = others + extra;
    let slots = if extra > 0 {
        format!(" plus the {extra} [[slots]]")
    } else {
        String::new()
    };
    check_at_least(
        c,
        raw,
        nodes,
        "max_replication_slots",
        need,
        |name, have| {
            (
                format!(
                    "max_replication_slots on `{name}` is {have}, below the {need} slots it may hold"
                ),
                format!(
                    "any node may become the primary and then holds one slot for each of the {others} other nodes{slots}; with fewer, PostgreSQL refuses to start (\"too many replication slots active before shutdown\"): set max_replication_slots to at least {need}"
                ),
            )
        },
    );
}

/// Reports each node whose integer `setting` (PostgreSQL's default 10 when
/// the file leaves it out) is below `need`, once per line of the file that
/// sets it; `explain(node, value)` gives the message and the hint.
fn check_at_least(
    c: &mut Checker,
    raw: &RawConfig,
    nodes: &IndexMap<String, Node>,
    setting: &str,
    need: i64,
    explain: impl Fn(&str, i64) -> (String, String),
) {
    let mut reported = Vec::new();
    for (name, node) in nodes {
        let Some(have) = int_setting(node, setting, 10) else {
            continue;
        };
        if have >= need {
            continue;
        }
        let span = effective_setting_span(raw, name, setting);
        let (message, hint) = explain(name, have);
        once_per_line(c, &mut reported, span, message, hint);
    }
}

/// pgrepl reads and waits for standbys over SQL: a standby that accepts no
/// connections (hot_standby off) could be built but never checked.
fn check_hot_standby_on(c: &mut Checker, raw: &RawConfig, nodes: &IndexMap<String, Node>) {
    for (name, node) in nodes {
        let Some(Some(guc::Normalized::Bool(false))) =
            node.settings.get("hot_standby").map(|s| &s.normalized)
        else {
            continue;
        };
        let span = effective_setting_span(raw, name, "hot_standby");
        c.error(
            span,
            format!("hot_standby is off on `{name}`"),
            "pgrepl reads every standby's state over SQL and waits for it to stream, which a standby without hot_standby refuses; remove the setting (PostgreSQL's default is on)",
        );
        return;
    }
}

/// A standby refuses to start with a hot-standby-sensitive setting lower than
/// its primary's, and any node may become the primary: keep them equal.
fn check_hot_standby_settings(
    c: &mut Checker,
    raw: &RawConfig,
    nodes: &IndexMap<String, Node>,
    primary: &str,
) {
    let Some(p) = nodes.get(primary) else { return };
    for (name, node) in nodes {
        if name == primary {
            continue;
        }
        for (guc_name, setting) in &node.settings {
            let Some(def) = guc::lookup(guc_name) else {
                continue;
            };
            if !def.hot_standby_sensitive {
                continue;
            }
            let (
                Some(guc::Normalized::Integer(mine)),
                Some(Some(guc::Normalized::Integer(theirs))),
            ) = (
                &setting.normalized,
                p.settings.get(guc_name).map(|s| &s.normalized),
            )
            else {
                continue;
            };
            if mine < theirs {
                let span = node_setting(raw, name, guc_name).map_or(0..0, |(_, v)| v.span());
                c.error(
                    span,
                    format!("`{guc_name}` on standby `{name}` ({mine}) is lower than on the primary `{primary}` ({theirs})"),
                    "a hot standby refuses to start when this is lower than on its primary; use at least the primary's value",
                );
            }
        }
    }
}

fn check_hba(c: &mut Checker, raw: &RawConfig, nodes: &IndexMap<String, Node>) -> Vec<HbaRule> {
    let mut rules = Vec::new();
    for rule in &raw.hba {
        let r = rule.get_ref();
        let kind = r.kind.get_ref();
        if !HBA_TYPES.contains(&kind.as_str()) {
            c.error(
                r.kind.span(),
                format!("unknown pg_hba connection type {kind:?}"),
                did_you_mean_or_list(kind, HBA_TYPES.iter().copied(), "use one of"),
            );
        }
        let method = r.method.get_ref();
        if !HBA_METHODS.contains(&method.as_str()) {
            c.error(
                r.method.span(),
                format!("unknown pg_hba method {method:?}"),
                did_you_mean_or_list(method, HBA_METHODS.iter().copied(), "use one of"),
            );
        } else if method == "peer" && kind != "local" {
            c.error(
                r.method.span(),
                "`peer` works only on local connections",
                "use `ident`, or `type = \"local\"`",
            );
        } else if method == "sspi" {
            c.error(
                r.method.span(),
                "`sspi` exists only on Windows",
                "use `gss` or `scram-sha-256`",
            );
        }
        for (field, what) in [(&r.database, "database"), (&r.user, "user")] {
            let v = field.get_ref();
            if v.is_empty()
                || v.chars()
                    .any(|ch| ch.is_whitespace() || ch == '#' || ch == '"' || ch.is_control())
            {
                c.error(
                    field.span(),
                    format!("invalid pg_hba {what} {v:?}"),
                    "write one name, a comma-separated list, or a keyword such as `all`, with no spaces, quotes or `#`".to_string(),
                );
            }
        }
        if let Some(o) = &r.options
            && o.get_ref()
                .chars()
                .any(|ch| ch == '\n' || ch == '\r' || ch == '#')
        {
            c.error(
                o.span(),
                "pg_hba options must be one line without `#`",
                "e.g. \"clientcert=verify-full\"",
            );
        }
        let address = match (&r.address, kind.as_str()) {
            (Some(a), "local") => {
                c.error(
                    a.span(),
                    "a `local` rule has no address",
                    "remove `address`, or use `type = \"host\"`",
                );
                None
            }
            (None, k) if k != "local" && HBA_TYPES.contains(&k) => {
                c.error(
                    rule.span(),
                    format!("a `{k}` rule needs an `address`"),
                    "add `address = \"10.0.0.0/24\"` or the name of a node",
                );
                None
            }
            (Some(a), _) => Some(resolve_hba_address(c, a, nodes)),
            (None, _) => None,
        };
        rules.push(HbaRule {
            kind: kind.clone(),
            database: r.database.get_ref().clone(),
            user: r.user.get_ref().clone(),
            address,
            method: method.clone(),
            options: r.options.as_ref().map(|o| o.get_ref().clone()),
        });
    }
    rules
}

/// A CIDR, a pg_hba keyword, or a node name (-> its host as /32 or /128).
fn resolve_hba_address(
    c: &mut Checker,
    a: &Spanned<String>,
    nodes: &IndexMap<String, Node>,
) -> String {
    let v = a.get_ref();
    if let Some(node) = nodes.get(v) {
        return host_cidr(&node.host);
    }
    if ["all", "samehost", "samenet"].contains(&v.as_str()) {
        return v.clone();
    }
    match parse_cidr(v) {
        Ok(()) => v.clone(),
        Err(why) => {
            let names: Vec<&str> = nodes.keys().map(String::as_str).collect();
            let help = match closest(v, names.iter().copied()) {
                Some(n) => format!("did you mean the node `{n}`?"),
                None => "write a CIDR such as \"10.0.3.0/24\" or \"2001:db8::/64\", or the name of a node".to_string(),
            };
            c.error(
                a.span(),
                format!("address {v:?} is not a CIDR or a node name: {why}"),
                help,
            );
            v.clone()
        }
    }
}

/// `host/32` or `host/128` for an IP; a DNS name as it is (pg_hba accepts host names).
pub fn host_cidr(host: &str) -> String {
    match host.parse::<IpAddr>() {
        Ok(IpAddr::V4(ip)) => format!("{ip}/32"),
        Ok(IpAddr::V6(ip)) => format!("{ip}/128"),
        Err(_) => host.to_string(),
    }
}

pub fn parse_cidr(v: &str) -> Result<(), String> {
    let Some((ip, bits)) = v.split_once('/') else {
        return Err("missing the `/prefix` length".into());
    };
    let ip: IpAddr = ip
        .parse()
        .map_err(|_| format!("{ip:?} is not an IP address"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    match bits.parse::<u8>() {
        Ok(b) if b <= max => Ok(()),
        _ => Err(format!("prefix length must be 0 to {max}")),
    }
}

fn check_slots(c: &mut Checker, raw: &RawConfig, node_names: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for slot in &raw.slots {
        let name = &slot.get_ref().name;
        if !check_identifier(
            c,
            name,
            "slot name",
            "PostgreSQL slot names allow only these characters",
        ) {
            continue;
        }
        if node_names.contains(name.get_ref()) {
            c.error(
                name.span(),
                format!("slot `{}` has the name of a node", name.get_ref()),
                "pgrepl names each standby's slot after the standby; pick another name",
            );
        } else if out.contains(name.get_ref()) {
            c.error(
                name.span(),
                format!("slot `{}` is listed twice", name.get_ref()),
                "list each slot once",
            );
        } else {
            out.push(name.get_ref().clone());
        }
    }
    out
}

/// "1MB" / 1048576 -> bytes. Units as PostgreSQL's: B kB MB GB TB, case-sensitive, 1024-based.
pub fn parse_bytes(v: &toml::Value) -> Result<u64, String> {
    match v {
        toml::Value::Integer(n) if *n >= 0 => Ok(*n as u64),
        toml::Value::Integer(_) => Err("a size cannot be negative".into()),
        toml::Value::String(s) => {
            let (num, unit) = split_number(s)?;
            let mult: u64 = match unit {
                "" | "B" => 1,
                "kB" => 1 << 10,
                "MB" => 1 << 20,
                "GB" => 1 << 30,
                "TB" => 1 << 40,
                other => {
                    return Err(format!(
                        "unknown unit {other:?}: memory units are case-sensitive: use B, kB, MB, GB or TB"
                    ));
                }
            };
            num.checked_mul(mult).ok_or_else(|| "too large".to_string())
        }
        other => Err(format!(
            "expected a string or integer, found a {}",
            other.type_str()
        )),
    }
}

/// "10s", "500ms", "1min", "2h" -> Duration.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = split_number(s)?;
    let ms: u64 = match unit {
        "ms" => 1,
        "s" => 1000,
        "min" => 60_000,
        "h" => 3_600_000,
        "" => return Err("a unit is required: ms, s, min or h".into()),
        other => {
            return Err(format!(
                "unknown unit {other:?}: use ms, s, min or h (case-sensitive)"
            ));
        }
    };
    num.checked_mul(ms)
        .map(Duration::from_millis)
        .ok_or_else(|| "too large".to_string())
}

fn split_number(s: &str) -> Result<(u64, &str), String> {
    let t = s.trim();
    let end = t.find(|ch: char| !ch.is_ascii_digit()).unwrap_or(t.len());
    if end == 0 {
        return Err(format!("{s:?} does not start with a whole number"));
    }
    let num = t[..end]
        .parse::<u64>()
        .map_err(|_| format!("{s:?}: number too large"))?;
    Ok((num, t[end..].trim_start()))
}

/// Names longer than this get no "did you mean": no key or setting is
/// that long, and the edit distance costs the product of the lengths.
pub const MAX_SUGGESTED: usize = 64;

/// The candidate closest to `word` by edit distance, if close enough to be a typo.
pub fn closest<'a>(word: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    if word.len() > MAX_SUGGESTED {
        return None;
    }
    let word_l = word.to_ascii_lowercase();
    candidates
        .into_iter()
        .filter(|cand| cand.len() <= MAX_SUGGESTED)
        .map(|cand| (levenshtein(&word_l, &cand.to_ascii_lowercase()), cand))
        .filter(|(d, cand)| *d <= (cand.len().max(word.len()) / 3).max(1))
        .min_by_key(|(d, _)| *d)
        .map(|(_, cand)| cand)
}

/// Candidates a hint lists at most.
const LISTED: usize = 20;

pub fn did_you_mean_or_list<'a>(
    word: &str,
    candidates: impl IntoIterator<Item = &'a str> + Clone,
    lead: &str,
) -> String {
    match closest(word, candidates.clone()) {
        Some(s) => format!("did you mean `{s}`?"),
        None => {
            let mut all = candidates.into_iter();
            let shown: Vec<String> = all
                .by_ref()
                .take(LISTED)
                .map(|c| format!("`{c}`"))
                .collect();
            let more = all.count();
            let more = if more > 0 {
                format!(" and {more} more")
            } else {
                String::new()
            };
            format!("{lead} {}{more}", shown.join(", "))
        }
    }
}

pub fn levenshtein(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur[j + 1] = (prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(edges: &[(&str, Option<&str>)], primary: &str) -> ChainWalk {
        let map: HashMap<String, Option<String>> = edges
            .iter()
            .map(|(n, u)| (n.to_string(), u.map(str::to_string)))
            .collect();
        chain_cycles(
            edges.iter().map(|(n, _)| *n),
            |n| map.get(n).cloned().flatten(),
            primary,
        )
    }

    #[test]
    fn a_long_chain_visits_each_node_once() {
        let names: Vec<String> = (0..5000).map(|i| format!("n{i}")).collect();
        let edges: Vec<(&str, Option<&str>)> = names
            .iter()
            .enumerate()
            .map(|(i, n)| (n.as_str(), i.checked_sub(1).map(|p| names[p].as_str())))
            .rev()
            .collect();
        let w = walk(&edges, "n0");
        assert!(w.cycles.is_empty());
        assert_eq!(w.steps, 5000);
    }

    #[test]
    fn each_cycle_is_reported_once() {
        let w = walk(
            &[
                ("p", None),
                ("a", Some("b")),
                ("b", Some("c")),
                ("c", Some("b")),
                ("d", Some("a")),
                ("e", Some("p")),
            ],
            "p",
        );
        assert_eq!(w.cycles, [["a", "b", "c", "b"]]);
        assert_eq!(w.steps, 6);
    }

    #[test]
    fn no_suggestion_search_for_far_or_long_names() {
        assert!(near_a_known_setting("wal_levl"));
        assert!(!near_a_known_setting("unknown_setting_00001"));
        assert_eq!(closest(&"x".repeat(MAX_SUGGESTED + 1), ["x"]), None);
    }

    #[test]
    fn hosts() {
        assert!(check_host("10.0.0.1").is_ok());
        assert!(check_host("db1.example.com").is_ok());
        let (why, help) = check_host("db1:5432").expect_err("a port");
        assert!(
            why.contains("SSH target") && help.contains("`port = 5432`"),
            "{help}"
        );
        assert!(check_host("-db1").is_err());
    }
}
