//! `pgrepl status`: each node's role and health, derived from observed state
//! (pure), rendered as a table or JSON.

use std::fmt::Write as _;

use serde::Serialize;

use crate::config::Config;
use crate::observed::{
    DataDir, Lsn, NodeState, Observed, ServerFacts, SlotFacts, invalidation_text,
};
use crate::text::human_bytes;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Primary,
    Standby,
    Stopped,
    Empty,
    Diverged,
    Unreachable,
    /// The data directory holds files but no PG_VERSION.
    Foreign,
    Unknown,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Primary => "primary",
            Role::Standby => "standby",
            Role::Stopped => "stopped",
            Role::Empty => "empty",
            Role::Diverged => "diverged",
            Role::Unreachable => "unreachable",
            Role::Foreign => "foreign",
            Role::Unknown => "unknown",
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct ClusterStatus {
    pub cluster: String,
    pub healthy: bool,
    pub nodes: Vec<NodeStatus>,
    /// pgBouncer poolers (`[poolers]`), each managed database's target.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub poolers: Vec<crate::pooler::PoolerStatus>,
}

#[derive(Debug, Clone, Serialize)]
pub struct NodeStatus {
    pub name: String,
    /// How pgrepl reaches PostgreSQL there (`sudo postgres`); absent for a
    /// node reached directly.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    pub host: String,
    pub reachable: bool,
    pub role: Role,
    /// The PostgreSQL it runs (`18.6`), or the major of a stopped data
    /// directory (`18`, from PG_VERSION).
    pub version: Option<String>,
    pub healthy: bool,
    /// Why the node is not healthy, each with what to do.
    pub problems: Vec<String>,
    pub timeline: Option<u32>,
    /// Primary: current WAL position; standby: replayed position.
    pub lsn: Option<Lsn>,
    pub received_lsn: Option<Lsn>,
    pub lag_bytes: Option<u64>,
    pub lag_seconds: Option<f64>,
    /// The node it streams from, as observed.
    pub upstream: Option<String>,
    pub slot: Option<String>,
    pub slot_wal_status: Option<String>,
    /// Why PostgreSQL invalidated the slot (`invalidation_reason`, 17+;
    /// `wal_removed` for a lost slot before 17).
    pub slot_invalidated: Option<String>,
    pub slot_retained_bytes: Option<i64>,
    pub sync_state: Option<String>,
    pub system_identifier: Option<String>,
    /// Free and total bytes of the data directory's file system.
    pub disk_free_bytes: Option<u64>,
    pub disk_total_bytes: Option<u64>,
    /// All databases together (measured on a primary only).
    pub database_size_bytes: Option<i64>,
    /// How long reading this node took, in milliseconds.
    pub gather_ms: u64,
}

/// Derives every node's role and health.
pub fn derive(cfg: &Config, obs: &Observed) -> ClusterStatus {
    let mut nodes: Vec<NodeStatus> = obs
        .nodes
        .values()
        .map(|n| derive_node(cfg, obs, n))
        .collect();
    // The same analysis the plan uses: a node that must be re-based has
    // diverged (it may look alive: a diverged standby sits "waiting").
    let topo = crate::topology::plan_topology(cfg, obs, crate::plan::APPLY_TIME);
    // A re-base that only a promotion this plan would make calls for (a
    // standby ahead of the failover candidate) is not a divergence yet.
    for rebase in topo.rebases.iter().filter(|r| !r.after_promotion) {
        if let Some(n) = nodes.iter_mut().find(|n| n.name == rebase.node) {
            n.role = Role::Diverged;
            n.healthy = false;
            n.problems
                .push(format!("{}; `pgrepl apply` re-bases it", rebase.why()));
        }
    }
    let poolers = crate::pooler::status(cfg, obs);
    ClusterStatus {
        cluster: obs.cluster.clone(),
        healthy: nodes.iter().all(|n| n.healthy) && poolers.iter().all(|p| p.healthy),
        nodes,
        poolers,
    }
}

fn node_by_host<'a>(obs: &'a Observed, host: &str) -> Option<&'a NodeState> {
    obs.nodes.values().find(|n| n.host == host)
}

/// A message that begins with the node's name (errors carry it as their
/// context) without it: status prints the name before each problem.
fn without_name<'a>(node: &str, message: &'a str) -> &'a str {
    message
        .strip_prefix(node)
        .and_then(|rest| rest.strip_prefix(": "))
        .unwrap_or(message)
}

fn derive_node(cfg: &Config, obs: &Observed, n: &NodeState) -> NodeStatus {
    let mut st = NodeStatus::new(n);
    st.kind = cfg.nodes.get(&n.name).and_then(|spec| spec.exec.kind());
    if let Some(u) = &n.unreachable {
        st.role = Role::Unreachable;
        st.problems.push(format!(
            "unreachable: {}",
            without_name(&n.name, &u.message)
        ));
        return st;
    }
    st.problems.extend(
        n.errors
            .iter()
            .map(|e| without_name(&n.name, e).to_string()),
    );
    let Some(files) = &n.files else {
        return st;
    };
    st.system_identifier = files.control.as_ref().map(|c| c.system_identifier.clone());
    match files.data_dir {
        DataDir::Missing | DataDir::Empty => {
            st.role = Role::Empty;
            st.problems
                .push("no data directory yet: `pgrepl apply` builds it from its upstream".into());
            return st;
        }
        DataDir::Foreign => {
            st.role = Role::Foreign;
            st.problems
                .push("the data directory holds files but no PG_VERSION: not a PostgreSQL data directory; move it aside".into());
            return st;
        }
        DataDir::Initialised => {}
    }
    let Some(server) = &n.server else {
        if !files.running {
            stopped(cfg, obs, n, &mut st);
        }
        return st;
    };
    st.system_identifier = Some(server.system_identifier.clone());
    st.timeline = Some(server.timeline);
    if server.in_recovery {
        standby(cfg, obs, n, server, &mut st);
    } else {
        st.role = Role::Primary;
        st.lsn = server.current_lsn;
        if cfg.cluster.primary == n.name {
            st.healthy = true;
        } else {
            st.problems.push(format!(
                "is a primary, but the cluster file names `{}`: two primaries or a pending switchover",
                cfg.cluster.primary
            ));
        }
    }
    same_initdb(cfg, obs, &mut st);
    st
}

impl NodeStatus {
    /// What is known of any node before its role: the facts gathered.
    fn new(n: &NodeState) -> NodeStatus {
        NodeStatus {
            name: n.name.clone(),
            kind: None,
            host: n.host.clone(),
            reachable: n.reachable(),
            role: Role::Unknown,
            version: match &n.server {
                Some(s) => Some(format!("{}.{}", s.major(), s.version_num % 10000)),
                None => n.major().map(|m| m.to_string()),
            },
            healthy: false,
            problems: Vec::new(),
            timeline: None,
            lsn: None,
            received_lsn: None,
            lag_bytes: None,
            lag_seconds: None,
            upstream: None,
            slot: None,
            slot_wal_status: None,
            slot_invalidated: None,
            slot_retained_bytes: None,
            sync_state: None,
            system_identifier: None,
            disk_free_bytes: n.files.as_ref().and_then(|f| f.disk_free_bytes),
            disk_total_bytes: n.files.as_ref().and_then(|f| f.disk_total_bytes),
            database_size_bytes: n.server.as_ref().and_then(|s| s.database_size_bytes),
            gather_ms: n.gather_ms,
        }
    }
}

/// PostgreSQL is not running: where pg_control says its WAL ends.
fn stopped(cfg: &Config, obs: &Observed, n: &NodeState, st: &mut NodeStatus) {
    st.role = Role::Stopped;
    let c = n.files.as_ref().and_then(|f| f.control.as_ref());
    st.timeline = c.and_then(|c| c.min_recovery_end_timeline.or(c.checkpoint_timeline));
    st.lsn = c.and_then(|c| c.min_recovery_end_lsn.or(c.checkpoint_lsn));
    let state = c.map_or("unknown", |c| c.state.as_str());
    st.problems.push(format!(
        "PostgreSQL is not running (cluster state: {state})"
    ));
    slot_on_upstream(cfg, obs, n, st);
}

/// A running standby: healthy when it streams and replays.
fn standby(cfg: &Config, obs: &Observed, n: &NodeState, server: &ServerFacts, st: &mut NodeStatus) {
    st.role = Role::Standby;
    st.lsn = server.replay_lsn;
    st.received_lsn = server.receive_lsn;
    match &server.wal_receiver {
        Some(w) => {
            st.upstream = w
                .sender_host
                .as_deref()
                .map(|h| node_by_host(obs, h).map_or_else(|| h.to_string(), |u| u.name.clone()));
            st.slot = w.slot_name.clone();
            if w.status == "streaming" {
                st.healthy = true;
            } else {
                st.problems
                    .push(format!("WAL receiver is {}, not streaming", w.status));
            }
        }
        None => {
            st.problems
                .push("in recovery but not streaming: no WAL receiver (check primary_conninfo and the upstream's log)".into());
            slot_on_upstream(cfg, obs, n, st);
        }
    }
    if server.replay_paused {
        st.healthy = false;
        st.problems.push(
            "WAL replay is paused (pg_wal_replay_pause()): it receives WAL but applies none of it, so its data grows old and a promotion would wait for the backlog; resume with `SELECT pg_wal_replay_resume()`"
                .into(),
        );
    }
    if let Some(up) = st.upstream.as_deref().and_then(|u| obs.nodes.get(u)) {
        upstream_view(n, up, st);
    }
    if cfg.cluster.primary == n.name {
        st.healthy = false;
        st.problems.push(
            "the cluster file names this node the primary: `pgrepl apply` switches over"
                .to_string(),
        );
    }
}

/// A streaming standby as its upstream sees it: the lag, and its slot there.
fn upstream_view(n: &NodeState, up: &NodeState, st: &mut NodeStatus) {
    let Some(up_server) = &up.server else {
        return;
    };
    let up_lsn = up_server.current_lsn.or(up_server.receive_lsn);
    if let (Some(a), Some(b)) = (up_lsn, st.lsn) {
        st.lag_bytes = Some(a.0.saturating_sub(b.0));
    }
    if let Some(r) = up_server
        .replication
        .iter()
        .find(|r| r.application_name == n.name || r.client_addr.as_deref() == Some(n.host.as_str()))
    {
        st.sync_state = r.sync_state.clone();
        st.lag_seconds = r.replay_lag_s.or(Some(0.0));
    }
    if let Some(slot) = st
        .slot
        .clone()
        .and_then(|s| up_server.slots.iter().find(|x| x.name == s))
    {
        slot_facts(st, slot, &up.name);
    }
}

/// The standby's slot on its upstream `up`: its WAL status, and whether
/// PostgreSQL invalidated it (unhealthy: the slot cannot be used).
fn slot_facts(st: &mut NodeStatus, slot: &SlotFacts, up: &str) {
    st.slot = Some(slot.name.clone());
    st.slot_wal_status = slot.wal_status.clone();
    st.slot_retained_bytes = slot.retained_bytes;
    st.slot_invalidated = slot.invalidated().map(String::from);
    if let Some(why) = slot.invalidated() {
        st.healthy = false;
        st.problems.push(if slot.lost_wal() {
            format!(
                "slot {} on {up} lost WAL this standby needs ({}): it must be re-based",
                slot.name,
                invalidation_text(why)
            )
        } else {
            format!(
                "slot {} on {up} was invalidated ({}): apply re-creates it",
                slot.name,
                invalidation_text(why)
            )
        });
    }
}

/// Every node must come from the same initdb as the primary.
fn same_initdb(cfg: &Config, obs: &Observed, st: &mut NodeStatus) {
    if let Some(primary_sysid) = obs
        .nodes
        .get(&cfg.cluster.primary)
        .and_then(|p| p.server.as_ref())
        .map(|s| s.system_identifier.as_str())
        && st
            .system_identifier
            .as_deref()
            .is_some_and(|s| s != primary_sysid)
    {
        st.healthy = false;
        st.role = Role::Diverged;
        st.problems.push(format!(
            "system identifier differs from the primary's ({primary_sysid}): a different cluster; it must be re-based"
        ));
    }
}

/// A standby that does not stream (stopped, or without a WAL receiver):
/// its slot as its upstream in the file sees it, which keeps retaining WAL
/// while nobody reads it.
fn slot_on_upstream(cfg: &Config, obs: &Observed, n: &NodeState, st: &mut NodeStatus) {
    if !cfg.replication.slots || st.slot.is_some() {
        return;
    }
    let Some(up) = cfg
        .nodes
        .get(&n.name)
        .and_then(|c| c.upstream.as_deref())
        .and_then(|u| obs.nodes.get(u))
    else {
        return;
    };
    let Some(slot) = up
        .server
        .as_ref()
        .and_then(|s| s.slots.iter().find(|x| x.name == n.name))
    else {
        return;
    };
    slot_facts(st, slot, &up.name);
    if !slot.active && slot.invalidated().is_none() {
        st.problems.push(format!(
            "its slot {} on {} is inactive and retains {} of WAL (wal_status {}), more for as long as {} does not stream",
            slot.name,
            up.name,
            slot.retained_bytes
                .map_or_else(|| "no".to_string(), |b| human_bytes(b.max(0) as u64)),
            slot.wal_status.as_deref().unwrap_or("unknown"),
            n.name
        ));
    }
}

/// The status table.
pub fn render_table(s: &ClusterStatus) -> String {
    let dash = || "-".to_string();
    let header = [
        "NODE",
        "HOST",
        "ROLE",
        "PG",
        "TL",
        "LSN",
        "LAG",
        "UPSTREAM",
        "SLOT (WAL, RETAINED)",
        "SYNC",
        "HEALTH",
    ];
    let rows: Vec<[String; 11]> = s
        .nodes
        .iter()
        .map(|n| {
            let lag = match (n.lag_bytes, n.lag_seconds) {
                (Some(b), Some(t)) => format!("{}, {t:.1}s", human_bytes(b)),
                (Some(b), None) => human_bytes(b),
                _ => dash(),
            };
            let slot = match &n.slot {
                Some(name) => format!(
                    "{name} ({}{}, {})",
                    n.slot_wal_status.as_deref().unwrap_or("?"),
                    n.slot_invalidated
                        .as_deref()
                        .map_or_else(String::new, |r| format!(": {r}")),
                    n.slot_retained_bytes
                        .map_or_else(|| "?".into(), |b| human_bytes(b.max(0) as u64))
                ),
                None => dash(),
            };
            [
                match &n.kind {
                    Some(kind) => format!("{} ({kind})", n.name),
                    None => n.name.clone(),
                },
                n.host.clone(),
                n.role.as_str().to_string(),
                n.version.clone().unwrap_or_else(dash),
                n.timeline.map_or_else(dash, |t| t.to_string()),
                n.lsn.map_or_else(dash, |l| l.to_string()),
                lag,
                n.upstream.clone().unwrap_or_else(dash),
                slot,
                n.sync_state.clone().unwrap_or_else(dash),
                if n.healthy {
                    "ok".into()
                } else {
                    "UNHEALTHY".into()
                },
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |cells: Vec<&str>, out: &mut String| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let _ = write!(l, "{c:<w$}  ", w = widths[i]);
            }
        }
        out.push_str(l.trim_end());
        out.push('\n');
    };
    line(header.to_vec(), &mut out);
    for r in &rows {
        line(r.iter().map(String::as_str).collect(), &mut out);
    }
    let problems: Vec<&NodeStatus> = s.nodes.iter().filter(|n| !n.problems.is_empty()).collect();
    if !problems.is_empty() {
        out.push('\n');
        for n in problems {
            for p in &n.problems {
                let _ = writeln!(out, "{}: {p}", n.name);
            }
        }
    }
    if !s.poolers.is_empty() {
        out.push('\n');
        out.push_str(&render_poolers(&s.poolers));
    }
    let _ = writeln!(
        out,
        "\nCluster \"{}\": {}",
        s.cluster,
        if s.healthy {
            "every node is healthy.".to_string()
        } else {
            let bad = s.nodes.iter().filter(|n| !n.healthy).count();
            let pools = s.poolers.iter().filter(|p| !p.healthy).count();
            if pools == 0 {
                format!("{bad} of {} nodes unhealthy.", s.nodes.len())
            } else {
                format!(
                    "{bad} of {} nodes and {pools} of {} poolers unhealthy.",
                    s.nodes.len(),
                    s.poolers.len()
                )
            }
        }
    );
    out
}

/// The poolers' table: one row per managed database of each pooler.
fn render_poolers(poolers: &[crate::pooler::PoolerStatus]) -> String {
    let mut rows = vec![[
        "POOLER".to_string(),
        "HOST".into(),
        "DATABASE".into(),
        "TARGET".into(),
        "WANTED".into(),
        "PAUSED".into(),
        "HEALTH".into(),
    ]];
    for p in poolers {
        let health = if p.healthy { "ok" } else { "UNHEALTHY" };
        if p.databases.is_empty() || !p.reachable {
            rows.push([
                p.name.clone(),
                p.host.clone(),
                "-".into(),
                "-".into(),
                "-".into(),
                "-".into(),
                health.into(),
            ]);
            continue;
        }
        for d in &p.databases {
            rows.push([
                p.name.clone(),
                p.host.clone(),
                d.name.clone(),
                d.target.clone().unwrap_or_else(|| "-".into()),
                d.wanted.clone(),
                if d.paused { "yes" } else { "no" }.into(),
                health.into(),
            ]);
        }
    }
    let mut widths = [0usize; 7];
    for r in &rows {
        for (i, c) in r.iter().enumerate() {
            widths[i] = widths[i].max(c.chars().count());
        }
    }
    let mut out = String::new();
    for r in &rows {
        let mut l = String::new();
        for (i, c) in r.iter().enumerate() {
            let _ = write!(l, "{c:<w$}  ", w = widths[i]);
        }
        out.push_str(l.trim_end());
        out.push('\n');
    }
    for p in poolers {
        for problem in &p.problems {
            let _ = writeln!(out, "{}: {problem}", p.name);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::without_name;

    #[test]
    fn a_problem_loses_the_node_name_it_begins_with() {
        assert_eq!(
            without_name("node2", "node2: cannot connect"),
            "cannot connect"
        );
        assert_eq!(without_name("node2", "cannot connect"), "cannot connect");
        assert_eq!(without_name("node2", "node22: other"), "node22: other");
        assert_eq!(without_name("node2", "node2 is down"), "node2 is down");
    }
}
