//! Executes a plan: lock, then each step in order (new standbys built in
//! parallel), stop at the first failure or at a step boundary once
//! cancelled; a rerun continues from live state. `converge` owns a run's
//! rounds, `failure` says whether a failure repeats.

mod converge;
pub mod exec;
pub mod failure;
pub mod pause;
pub mod pooler;

pub use converge::{Cancel, Cancelled, Converged, Failed, Refusal, Run, Verdict, begin};
pub use failure::{StepFailed, Transient};

use std::collections::HashSet;
use std::io::Write as _;
use std::time::Instant;

use anyhow::{Context as _, anyhow, bail};
use indexmap::IndexMap;

use crate::config::Config;
use crate::node::{Node, NodeLock};
use crate::plan::{Op, Plan, Step};
use crate::transport::NodeSession;

/// Where step progress goes (stderr for the CLI). A message may quote a
/// node's output, so control characters are escaped.
pub fn progress_line(msg: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{}", crate::quote::terminal(msg));
}

/// Takes the cluster lock on every reachable node, in file order: a second
/// apply fails at the first node with who holds it since when.
pub async fn lock_cluster(
    cfg: &Config,
    sessions: &IndexMap<String, NodeSession>,
) -> anyhow::Result<Vec<NodeLock>> {
    let holder = format!(
        "pgrepl apply by {}@{} (pid {}) since {}",
        std::env::var("USER")
            .or_else(|_| std::env::var("LOGNAME"))
            .unwrap_or_else(|_| "?".into()),
        hostname(),
        std::process::id(),
        utc_now()
    );
    let mut locks = Vec::new();
    for (name, session) in sessions {
        let node = config_node(cfg, name)?;
        let path = lock_path(cfg, node);
        match Node::new(node, session)
            .lock(&path, &holder, &node.postgres.data_dir)
            .await?
        {
            Ok(lock) => locks.push(lock),
            Err(other) => {
                for l in locks {
                    l.release().await;
                }
                return Err(Locked(format!(
                    "cluster \"{}\" is locked: {other} (lock {path} on {name}); nothing was changed. Wait for it to finish and plan again",
                    cfg.cluster.name
                ))
                .into());
            }
        }
    }
    Ok(locks)
}

/// The cluster lock is held by another apply: its message says by whom.
#[derive(Debug)]
pub struct Locked(pub String);

impl std::fmt::Display for Locked {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Locked {}

/// The cluster lock's file on `node`: beside the data directory, or, when
/// PostgreSQL runs in a container, in the SSH user's home on the host (the
/// lock is held from there: a container's stop must not end it).
pub fn lock_path(cfg: &Config, node: &crate::config::Node) -> String {
    use crate::config::Exec;
    match &node.exec {
        Exec::Docker(c) | Exec::Podman(c) => format!(".pgrepl-{}-{c}.lock", cfg.cluster.name),
        _ => format!(
            "{}/.pgrepl-{}.lock",
            crate::desired::files_dir(node),
            cfg.cluster.name
        ),
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown-host".into())
}

/// `YYYY-MM-DDTHH:MM:SSZ` without a date crate.
pub fn utc_now() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    let (h, m, s) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil from days (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let mo = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(mo <= 2);
    format!("{y:04}-{mo:02}-{d:02}T{h:02}:{m:02}:{s:02}Z")
}

/// What one run did, for the failure report and the summary.
#[derive(Debug, Default)]
pub struct Report {
    pub done: Vec<String>,
}

fn describe(step: &Step) -> String {
    format!("{} {}", step.action.symbol(), step.address)
}

/// Runs the steps in order. New standbys (base backup, recovery, start of
/// one node) form a build; builds whose upstream exists run in parallel.
pub async fn run_steps(
    cfg: &Config,
    plan: &Plan,
    sessions: &mut IndexMap<String, NodeSession>,
    report: &mut Report,
    cancel: &Cancel,
) -> anyhow::Result<()> {
    let built: HashSet<String> = plan
        .changes
        .iter()
        .filter(|s| matches!(s.op, Op::BaseBackup { .. }))
        .map(|s| s.node.clone())
        .collect();
    // Every step on a node being built belongs to its build, in plan order
    // (a cascading standby's slot on it comes after it runs).
    let (builds, others): (Vec<&Step>, Vec<&Step>) =
        plan.changes.iter().partition(|s| built.contains(&s.node));
    for step in others {
        cancel.check()?;
        run_one(cfg, step, sessions, report).await?;
    }
    // Waves: a build starts once its upstream is not being built any more.
    let mut pending: Vec<String> = builds.iter().map(|s| s.node.clone()).collect();
    pending.dedup();
    let mut upstreams: IndexMap<String, Option<String>> = IndexMap::new();
    for name in &pending {
        upstreams.insert(name.clone(), config_node(cfg, name)?.upstream.clone());
    }
    while !pending.is_empty() {
        let ready: Vec<String> = pending
            .iter()
            .filter(|n| {
                upstreams
                    .get(*n)
                    .and_then(Option::as_ref)
                    .is_none_or(|u| !pending.contains(u))
            })
            .cloned()
            .collect();
        // Each running `pg_basebackup -X stream` takes two WAL senders and a
        // built standby one: with D standbys in the end and c built at once
        // the upstream needs D + c senders, so c is at most max_wal_senders - D.
        let mut per_upstream: IndexMap<String, usize> = IndexMap::new();
        let mut wave = Vec::new();
        for name in ready {
            let up = upstreams.get(&name).cloned().flatten().unwrap_or_default();
            let cap = parallel_builds(cfg, &up);
            let used = per_upstream.entry(up).or_insert(0);
            if *used < cap {
                *used += 1;
                wave.push(name);
            }
        }
        if wave.is_empty() {
            bail!("cannot order the new standbys: {}", pending.join(", "));
        }
        cancel.check()?;
        let mut tasks = Vec::new();
        for name in &wave {
            let steps: Vec<Step> = builds
                .iter()
                .filter(|s| &s.node == name)
                .map(|s| (*s).clone())
                .collect();
            let mut session = sessions
                .shift_remove(name)
                .ok_or_else(|| unreachable_node(name))?;
            tasks.push(async move {
                let mut done = Vec::new();
                let mut result = Ok(());
                for step in &steps {
                    if let Err(e) = cancel.check() {
                        result = Err(e);
                        break;
                    }
                    match run_with_session(cfg, step, &mut session, None).await {
                        Ok(line) => done.push(line),
                        Err(e) => {
                            result = Err(e);
                            break;
                        }
                    }
                }
                (session, done, result)
            });
        }
        let results = futures_util::future::join_all(tasks).await;
        let mut first_err = None;
        for (session, done, result) in results {
            let name = session.node.clone();
            report.done.extend(done);
            sessions.insert(name, session);
            if let Err(e) = result
                && first_err.is_none()
            {
                first_err = Some(e);
            }
        }
        if let Some(e) = first_err {
            return Err(e);
        }
        pending.retain(|n| !wave.contains(n));
    }
    Ok(())
}

/// How many standbys of `upstream` may be built at once.
pub fn parallel_builds(cfg: &Config, upstream: &str) -> usize {
    let senders = cfg
        .nodes
        .get(upstream)
        .and_then(|n| n.settings.get("max_wal_senders"))
        .and_then(|s| match &s.normalized {
            Some(crate::guc::Normalized::Integer(v)) => usize::try_from(*v).ok(),
            _ => None,
        })
        .unwrap_or(10);
    let standbys = cfg.downstreams(upstream).count();
    senders.saturating_sub(standbys).max(1)
}

async fn run_one(
    cfg: &Config,
    step: &Step,
    sessions: &mut IndexMap<String, NodeSession>,
    report: &mut Report,
) -> anyhow::Result<()> {
    if matches!(
        step.op,
        Op::WritePoolerBlock { .. } | Op::PoolerService { .. }
    ) {
        report.done.push(run_pooler_step(cfg, step).await?);
        return Ok(());
    }
    // Two-node steps borrow the other node's session for their duration.
    let peer_name = match &step.op {
        Op::Switchover { from, .. } => Some(from.clone()),
        Op::Rebase { source, .. } => Some(source.clone()),
        Op::Restart {
            catch_up_with: Some(p),
        }
        | Op::Start {
            catch_up_with: Some(p),
            ..
        } if *p != step.node => Some(p.clone()),
        _ => None,
    };
    let mut peer = match &peer_name {
        Some(p) => Some(
            sessions
                .shift_remove(p)
                .ok_or_else(|| unreachable_node(p).context(failed(step)))?,
        ),
        None => None,
    };
    let result = match sessions.get_mut(&step.node) {
        Some(session) => run_with_session(cfg, step, session, peer.as_mut()).await,
        None => Err(unreachable_node(&step.node).context(failed(step))),
    };
    if let (Some(name), Some(p)) = (peer_name, peer) {
        sessions.insert(name, p);
    }
    report.done.push(result?);
    Ok(())
}

async fn run_with_session(
    cfg: &Config,
    step: &Step,
    session: &mut NodeSession,
    peer: Option<&mut NodeSession>,
) -> anyhow::Result<String> {
    let node = config_node(cfg, &step.node).with_context(|| failed(step))?;
    let started = Instant::now();
    let name = step.node.clone();
    let progress = move |msg: &str| progress_line(&format!("  {name}: {msg}"));
    let peer = match peer {
        Some(p) => Some((config_node(cfg, &p.node)?, p)),
        None => None,
    };
    let mut ctx = exec::Ctx {
        cfg,
        node,
        session,
        peer,
        progress: &progress,
    };
    progress_line(&format!("{}: {}...", step.node, describe(step)));
    match exec::execute(&mut ctx, step).await {
        Ok(what) => {
            let secs = started.elapsed().as_secs_f64();
            progress_line(&format!(
                "{}: {} done in {secs:.2}s ({what})",
                step.node, step.address
            ));
            Ok(format!("{} ({secs:.2}s)", describe(step)))
        }
        Err(e) => Err(e.context(failed(step))),
    }
}

/// A `pooler.NAME.*` step, on its pooler.
async fn run_pooler_step(cfg: &Config, step: &Step) -> anyhow::Result<String> {
    let started = Instant::now();
    progress_line(&format!("{}: {}...", step.node, describe(step)));
    let what = pooler::run_step(cfg, step)
        .await
        .map_err(|e| e.context(failed(step)))?;
    let secs = started.elapsed().as_secs_f64();
    progress_line(&format!(
        "{}: {} done in {secs:.2}s ({what})",
        step.node, step.address
    ));
    Ok(format!("{} ({secs:.2}s)", describe(step)))
}

/// The file's node `name`: an error, never a panic, for a name the file
/// does not have.
fn config_node<'a>(cfg: &'a Config, name: &str) -> anyhow::Result<&'a crate::config::Node> {
    cfg.nodes
        .get(name)
        .ok_or_else(|| anyhow!("node {name:?} is not in the cluster file"))
}

fn failed(step: &Step) -> StepFailed {
    StepFailed {
        node: step.node.clone(),
        address: step.address.clone(),
    }
}

/// No SSH session to `node`: it was found unreachable, which passes.
fn unreachable_node(node: &str) -> anyhow::Error {
    anyhow!("no SSH session").context(Transient(format!("{node} is unreachable")))
}
