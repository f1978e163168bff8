//! pgBouncer poolers, pure: where each pooled database must point (the
//! file's primary, the streaming standbys, or a node), the managed block
//! of `[databases]` lines in pgbouncer.ini (render, find, splice), and the
//! steps that make a pooler match (`pooler.NAME.databases`,
//! `pooler.NAME.service`). No IO: gathering fills `observed::pooler`.

use indexmap::IndexMap;

use crate::config::{Config, PoolTarget, Pooler, PoolerDatabase};
use crate::observed::pooler::PoolerState;
use crate::observed::{NodeState, Observed};
use crate::plan::{Action, Op, PoolerRepoint, Step, Warning};

pub const BLOCK_BEGIN: &str = "; BEGIN pgrepl managed";
pub const BLOCK_END: &str = "; END pgrepl managed";

/// Where one pooled database points: hosts (several for a read-only
/// pool; pgBouncer tries them in turn) and one port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub hosts: Vec<String>,
    pub port: u16,
}

impl Target {
    /// As `SHOW DATABASES` prints the host column.
    pub fn host_list(&self) -> String {
        self.hosts.join(",")
    }
}

/// A standby that serves reads now: running, in recovery, its WAL
/// receiver streaming. A stopped, re-based or lagging-without-receiver
/// node is not one.
fn streams(n: &NodeState) -> bool {
    n.server.as_ref().is_some_and(|s| {
        s.in_recovery
            && s.wal_receiver
                .as_ref()
                .is_some_and(|w| w.status == "streaming")
    })
}

/// Where `db` must point, from the file and (for `standbys`) what streams.
/// Standbys whose port differs from the first one's are left out (one
/// `port=` per entry) and said in `warnings`. No streaming standby: the
/// primary serves the reads too.
pub fn target(
    cfg: &Config,
    obs: &Observed,
    db: &PoolerDatabase,
    warnings: &mut Vec<String>,
) -> Target {
    let node_target = |name: &str| {
        let n = &cfg.nodes[name];
        Target {
            hosts: vec![n.host.clone()],
            port: n.postgres.port,
        }
    };
    match &db.to {
        PoolTarget::Primary => node_target(&cfg.cluster.primary),
        PoolTarget::Node(n) if cfg.nodes.contains_key(n) => node_target(n),
        PoolTarget::Node(_) => node_target(&cfg.cluster.primary),
        PoolTarget::Standbys => {
            let standbys: Vec<_> = cfg
                .nodes
                .values()
                .filter(|n| n.name != cfg.cluster.primary)
                .filter(|n| obs.nodes.get(&n.name).is_some_and(streams))
                .collect();
            let Some(first) = standbys.first() else {
                return node_target(&cfg.cluster.primary);
            };
            let port = first.postgres.port;
            let (same, other): (Vec<&crate::config::Node>, Vec<&crate::config::Node>) =
                standbys.iter().partition(|n| n.postgres.port == port);
            for n in other {
                warnings.push(format!(
                    "{} listens on port {}, not {port}: left out of the read-only pool {} (one port per pgBouncer entry)",
                    n.name, n.postgres.port, db.name
                ));
            }
            Target {
                hosts: same.iter().map(|n| n.host.clone()).collect(),
                port,
            }
        }
    }
}

/// One `[databases]` line: `name = host=H port=P dbname=D options...`.
pub fn entry_line(db: &PoolerDatabase, t: &Target) -> String {
    let mut line = format!(
        "{} = host={} port={} dbname={}",
        db.name,
        t.host_list(),
        t.port,
        db.dbname
    );
    for (k, v) in &db.options {
        line.push_str(&format!(" {k}={v}"));
    }
    line
}

/// The managed block, markers included, each line ending in `\n`.
pub fn render_block(lines: &[String]) -> String {
    let mut out = format!("{BLOCK_BEGIN}\n");
    for l in lines {
        out.push_str(l);
        out.push('\n');
    }
    out.push_str(BLOCK_END);
    out.push('\n');
    out
}

/// Every database's line and target, in the file's order.
pub fn desired(
    cfg: &Config,
    obs: &Observed,
    warnings: &mut Vec<String>,
) -> Vec<(PoolerDatabase, Target)> {
    let Some(pgb) = &cfg.pgbouncer else {
        return Vec::new();
    };
    pgb.databases
        .iter()
        .map(|db| (db.clone(), target(cfg, obs, db, warnings)))
        .collect()
}

/// The block's lines between the markers (markers excluded), or `None`
/// when the file has no block. A second BEGIN, or a BEGIN without END, is
/// an error: pgrepl does not guess which lines are its own.
pub fn find_block(ini: &str) -> Result<Option<Vec<String>>, String> {
    let lines: Vec<&str> = ini.lines().collect();
    let begins: Vec<usize> = marker_lines(&lines, BLOCK_BEGIN);
    let ends: Vec<usize> = marker_lines(&lines, BLOCK_END);
    match (begins.as_slice(), ends.as_slice()) {
        ([], []) => Ok(None),
        ([b], [e]) if b < e => Ok(Some(
            lines[b + 1..*e].iter().map(|l| l.to_string()).collect(),
        )),
        _ => Err(format!(
            "the ini file's managed block is damaged ({} `{BLOCK_BEGIN}` and {} `{BLOCK_END}` lines): fix it by hand, keeping one of each in [databases]",
            begins.len(),
            ends.len()
        )),
    }
}

fn marker_lines(lines: &[&str], marker: &str) -> Vec<usize> {
    lines
        .iter()
        .enumerate()
        .filter(|(_, l)| l.trim() == marker)
        .map(|(i, _)| i)
        .collect()
}

/// `ini` with its managed block replaced by `block` (rendered, markers
/// included); without a block, `block` goes right after the `[databases]`
/// header, or with a new `[databases]` header at the top. Every other line
/// stays as it was, byte for byte.
pub fn splice(ini: &str, block: &str) -> Result<String, String> {
    let lines: Vec<&str> = ini.split_inclusive('\n').collect();
    let trimmed = |l: &str| l.trim().to_string();
    let at = |marker: &str| lines.iter().position(|l| trimmed(l) == marker);
    find_block(ini)?;
    let mut out = String::with_capacity(ini.len() + block.len());
    if let (Some(b), Some(e)) = (at(BLOCK_BEGIN), at(BLOCK_END)) {
        lines[..b].iter().for_each(|l| out.push_str(l));
        out.push_str(block);
        lines[e + 1..].iter().for_each(|l| out.push_str(l));
        return Ok(out);
    }
    let header = lines
        .iter()
        .position(|l| trimmed(l).eq_ignore_ascii_case("[databases]"));
    match header {
        Some(h) => {
            lines[..=h].iter().for_each(|l| out.push_str(l));
            if !out.ends_with('\n') {
                out.push('\n');
            }
            out.push_str(block);
            lines[h + 1..].iter().for_each(|l| out.push_str(l));
        }
        None => {
            out.push_str("[databases]\n");
            out.push_str(block);
            out.push_str(ini);
        }
    }
    Ok(out)
}

/// Whether some pooled database points at the streaming standbys.
pub fn has_standbys_target(cfg: &Config) -> bool {
    cfg.pgbouncer
        .as_ref()
        .is_some_and(|p| p.databases.iter().any(|d| d.to == PoolTarget::Standbys))
}

/// The read-write databases: those a switchover pauses.
pub fn read_write(cfg: &Config) -> Vec<String> {
    cfg.pgbouncer.as_ref().map_or_else(Vec::new, |p| {
        p.databases
            .iter()
            .filter(|d| d.to == PoolTarget::Primary)
            .map(|d| d.name.clone())
            .collect()
    })
}

/// What the plan does on the poolers, and what it cannot plan.
#[derive(Debug, Default)]
pub struct PoolerPlan {
    pub steps: Vec<Step>,
    pub warnings: Vec<Warning>,
    pub blocked: Vec<Warning>,
}

/// The steps that make every pooler match. `failover`: the plan promotes a
/// node without the old primary, so the read-write pools are RECONNECTed.
pub fn plan(cfg: &Config, obs: &Observed, failover: bool) -> PoolerPlan {
    let mut out = PoolerPlan::default();
    let (Some(pgb), false) = (&cfg.pgbouncer, cfg.poolers.is_empty()) else {
        return out;
    };
    let mut said = Vec::new();
    let want = desired(cfg, obs, &mut said);
    out.warnings.extend(said.into_iter().map(|message| Warning {
        node: None,
        message,
    }));
    let lines: Vec<String> = want.iter().map(|(d, t)| entry_line(d, t)).collect();
    let block = render_block(&lines);
    for p in cfg.poolers.values() {
        let Some(state) = obs.poolers.get(&p.name) else {
            continue;
        };
        match pooler_steps(pgb.ini.as_str(), p, state, &want, &lines, &block, failover) {
            Ok(steps) => out.steps.extend(steps),
            Err(why) => out.blocked.push(Warning {
                node: Some(p.name.clone()),
                message: why,
            }),
        }
    }
    out
}

fn pooler_steps(
    ini_path: &str,
    p: &Pooler,
    state: &PoolerState,
    want: &[(PoolerDatabase, Target)],
    lines: &[String],
    block: &str,
    failover: bool,
) -> Result<Vec<Step>, String> {
    let name = &p.name;
    if let Some(u) = &state.unreachable {
        return Err(format!(
            "pooler {name} ({}) is unreachable: {}; it keeps pointing where it did",
            p.host, u.message
        ));
    }
    if !state.errors.is_empty() {
        // Each error names the pooler already, as the report's line does.
        let said: Vec<&str> = state
            .errors
            .iter()
            .map(|e| e.strip_prefix(&format!("{name}: ")).unwrap_or(e))
            .collect();
        return Err(format!("pooler {name}: {}", said.join("; ")));
    }
    let (Some(ini), Some(_)) = (&state.ini, &state.databases) else {
        return Err(format!("pooler {name}: its state could not be read"));
    };
    let current = find_block(ini).map_err(|e| format!("pooler {name}: {ini_path}: {e}"))?;
    let mut steps = Vec::new();
    let rewrite = current.as_deref() != Some(lines);
    if rewrite {
        let next = splice(ini, block).map_err(|e| format!("pooler {name}: {e}"))?;
        let mut s = write_block(name, ini_path, block, current.is_none());
        s.diff = Some(
            similar::TextDiff::from_lines(ini.as_str(), next.as_str())
                .unified_diff()
                .context_radius(2)
                .header(ini_path, &format!("{ini_path} (planned)"))
                .to_string(),
        );
        steps.push(s);
    }
    // Live targets that differ from the file (a block written but not
    // reloaded, or a hand-edited entry), and pools left paused.
    let stale: Vec<&str> = want
        .iter()
        .filter(|(d, t)| {
            state
                .database(&d.name)
                .is_none_or(|live| live.host != t.host_list() || live.port != t.port)
        })
        .map(|(d, _)| d.name.as_str())
        .collect();
    let paused: Vec<String> = want
        .iter()
        .filter(|(d, _)| state.database(&d.name).is_some_and(|l| l.paused))
        .map(|(d, _)| d.name.clone())
        .collect();
    let reload = rewrite || !stale.is_empty();
    let reconnect: Vec<String> = if failover && reload {
        want.iter()
            .filter(|(d, _)| d.to == crate::config::PoolTarget::Primary)
            .map(|(d, _)| d.name.clone())
            .collect()
    } else {
        Vec::new()
    };
    if reload || !paused.is_empty() {
        let mut s = service(name, reload, reconnect, paused.clone());
        s.reason = match (stale.is_empty(), paused.is_empty()) {
            (false, true) => format!("live targets differ: {}", stale.join(", ")),
            (true, false) => format!("paused: {}", paused.join(", ")),
            (false, false) => format!(
                "live targets differ: {}; paused: {}",
                stale.join(", "),
                paused.join(", ")
            ),
            (true, true) => String::new(),
        };
        steps.push(s);
    }
    Ok(steps)
}

/// `~ pooler.NAME.databases` (`+` when the ini has no block yet).
pub fn write_block(pooler: &str, path: &str, block: &str, new: bool) -> Step {
    Step {
        address: format!("pooler.{pooler}.databases"),
        node: pooler.to_string(),
        action: if new { Action::Create } else { Action::Update },
        before: None,
        after: None,
        restart: false,
        reason: String::new(),
        sensitive: false,
        diff: None,
        op: Op::WritePoolerBlock {
            path: path.to_string(),
            block: block.to_string(),
        },
    }
}

/// `~ pooler.NAME.service`: RELOAD, RECONNECT, RESUME on the admin console.
pub fn service(pooler: &str, reload: bool, reconnect: Vec<String>, resume: Vec<String>) -> Step {
    let mut what = Vec::new();
    if reload {
        what.push("reload".to_string());
    }
    if !reconnect.is_empty() {
        what.push(format!("reconnect {}", reconnect.join(", ")));
    }
    if !resume.is_empty() {
        what.push(format!("resume {}", resume.join(", ")));
    }
    Step {
        address: format!("pooler.{pooler}.service"),
        node: pooler.to_string(),
        action: Action::Update,
        before: None,
        after: Some(what.join(", ")),
        restart: false,
        reason: String::new(),
        sensitive: false,
        diff: None,
        op: Op::PoolerService {
            reload,
            reconnect,
            resume,
        },
    }
}

/// What a switchover does on every pooler: pause the read-write pools,
/// and once the candidate is promoted write `block`, RELOAD, RESUME.
pub fn repoints(cfg: &Config, block_steps: &[Step]) -> Vec<PoolerRepoint> {
    let Some(pgb) = &cfg.pgbouncer else {
        return Vec::new();
    };
    let pause = read_write(cfg);
    cfg.poolers
        .keys()
        .map(|name| PoolerRepoint {
            pooler: name.clone(),
            path: pgb.ini.clone(),
            block: block_steps
                .iter()
                .find_map(|s| match &s.op {
                    Op::WritePoolerBlock { block, .. } if &s.node == name => Some(block.clone()),
                    _ => None,
                })
                .unwrap_or_default(),
            pause: pause.clone(),
        })
        .collect()
}

/// What a switchover's reason adds about the poolers.
pub fn switchover_note(cfg: &Config, repoints: &[PoolerRepoint]) -> Option<String> {
    let pgb = cfg.pgbouncer.as_ref()?;
    let first = repoints.first()?;
    let names: Vec<&str> = repoints.iter().map(|r| r.pooler.as_str()).collect();
    let pools = if first.pause.is_empty() {
        "no read-write pools".to_string()
    } else {
        first.pause.join(", ")
    };
    Some(format!(
        ". Before the shutdown, {pools} on {} are PAUSEd (at most {:.1}s; clients wait instead of failing); after the promotion they are re-pointed, RELOADed and RESUMEd (also if the switchover fails)",
        names.join(", "),
        pgb.pause_timeout.as_secs_f64()
    ))
}

/// The facts a saved plan relies on: each pooler's block and live targets.
pub fn facts(obs: &Observed) -> IndexMap<String, String> {
    let mut out = IndexMap::new();
    for p in obs.poolers.values() {
        let block = p
            .ini
            .as_deref()
            .map(|i| format!("{:?}", find_block(i)))
            .unwrap_or_default();
        out.insert(
            format!("pooler.{}.databases", p.name),
            crate::digest::digest(&block),
        );
        let live = p
            .databases
            .iter()
            .flatten()
            .map(|d| format!("{}={}:{}:{}", d.name, d.host, d.port, d.paused))
            .collect::<Vec<_>>()
            .join(";");
        out.insert(
            format!("pooler.{}.service", p.name),
            crate::digest::digest(&live),
        );
    }
    out
}

/// One pooler as `status` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolerStatus {
    pub name: String,
    pub host: String,
    pub reachable: bool,
    pub healthy: bool,
    pub databases: Vec<PoolStatus>,
    pub problems: Vec<String>,
}

/// One managed database of a pooler.
#[derive(Debug, Clone, serde::Serialize)]
pub struct PoolStatus {
    pub name: String,
    /// Where it points now (`SHOW DATABASES`): `host:port`.
    pub target: Option<String>,
    /// Where the file wants it.
    pub wanted: String,
    pub paused: bool,
}

/// Every pooler's managed databases, their live and wanted targets. A
/// pool pointing elsewhere than the file says, or paused, is unhealthy.
pub fn status(cfg: &Config, obs: &Observed) -> Vec<PoolerStatus> {
    let want = desired(cfg, obs, &mut Vec::new());
    cfg.poolers
        .values()
        .map(|p| {
            let state = obs.poolers.get(&p.name);
            let mut problems = Vec::new();
            if let Some(u) = state.and_then(|s| s.unreachable.as_ref()) {
                problems.push(format!("unreachable: {}", u.message));
            }
            problems.extend(state.iter().flat_map(|s| s.errors.iter().cloned()));
            let databases: Vec<PoolStatus> = want
                .iter()
                .map(|(d, t)| {
                    let live = state.and_then(|s| s.database(&d.name));
                    let wanted = format!("{}:{}", t.host_list(), t.port);
                    let target = live.map(|l| format!("{}:{}", l.host, l.port));
                    if state.is_some_and(|s| s.databases.is_some()) {
                        match &target {
                            None => problems.push(format!("{} is not configured", d.name)),
                            Some(now) if *now != wanted => problems.push(format!(
                                "{} points at {now}, not {wanted}; `pgrepl apply` re-points it",
                                d.name
                            )),
                            _ => {}
                        }
                    }
                    if live.is_some_and(|l| l.paused) {
                        problems.push(format!("{} is paused; `pgrepl apply` resumes it", d.name));
                    }
                    PoolStatus {
                        name: d.name.clone(),
                        target,
                        wanted,
                        paused: live.is_some_and(|l| l.paused),
                    }
                })
                .collect();
            PoolerStatus {
                name: p.name.clone(),
                host: p.host.clone(),
                reachable: state.is_some_and(|s| s.unreachable.is_none()),
                healthy: problems.is_empty(),
                databases,
                problems,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_goes_after_the_databases_header_and_replaces_itself() {
        let ini = "[pgbouncer]\nlisten_port = 6432\n\n[databases]\nother = host=x\n";
        let block = render_block(&["app = host=h port=5432 dbname=app".into()]);
        let once = splice(ini, &block).expect("splices");
        assert_eq!(
            once,
            "[pgbouncer]\nlisten_port = 6432\n\n[databases]\n; BEGIN pgrepl managed\napp = host=h port=5432 dbname=app\n; END pgrepl managed\nother = host=x\n"
        );
        let block2 = render_block(&["app = host=g port=5432 dbname=app".into()]);
        let twice = splice(&once, &block2).expect("splices");
        assert_eq!(twice, once.replace("host=h", "host=g"));
        assert_eq!(
            find_block(&twice).expect("one block"),
            Some(vec!["app = host=g port=5432 dbname=app".to_string()])
        );
    }

    #[test]
    fn without_databases_a_section_is_added_and_a_damaged_block_is_refused() {
        let block = render_block(&[]);
        assert_eq!(
            splice("[pgbouncer]\n", &block).expect("splices"),
            "[databases]\n; BEGIN pgrepl managed\n; END pgrepl managed\n[pgbouncer]\n"
        );
        assert!(find_block("; BEGIN pgrepl managed\n[pgbouncer]\n").is_err());
        assert!(splice("; END pgrepl managed\n; BEGIN pgrepl managed\n", &block).is_err());
        assert_eq!(find_block("[databases]\n").expect("no block"), None);
    }

    #[test]
    fn lines_carry_hosts_port_dbname_and_options() {
        let db = PoolerDatabase {
            name: "app_ro".into(),
            dbname: "app".into(),
            to: PoolTarget::Standbys,
            options: vec![("pool_size".into(), "20".into())],
        };
        let t = Target {
            hosts: vec!["10.0.0.2".into(), "10.0.0.3".into()],
            port: 5433,
        };
        assert_eq!(
            entry_line(&db, &t),
            "app_ro = host=10.0.0.2,10.0.0.3 port=5433 dbname=app pool_size=20"
        );
    }
}
