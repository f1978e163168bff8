//! The poolers' part of apply: the `pooler.NAME.*` steps, and the hold a
//! switchover keeps on the read-write pools (PAUSE before the old primary
//! stops; the block, RELOAD and RESUME once the candidate is promoted;
//! RESUME on every exit path). Each pooler is dialled when needed: an SSH
//! master left by the gathering makes that a few milliseconds.

use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};

use crate::config::{Config, Pgbouncer, Pooler};
use crate::node::Node;
use crate::node::pooler::Console;
use crate::plan::{Op, PoolerRepoint, Step};
use crate::pooler::splice;
use crate::transport::NodeSession;

fn pgbouncer(cfg: &Config) -> anyhow::Result<&Pgbouncer> {
    cfg.pgbouncer
        .as_ref()
        .ok_or_else(|| anyhow!("the cluster file has no [pgbouncer] section"))
}

fn pooler<'a>(cfg: &'a Config, name: &str) -> anyhow::Result<&'a Pooler> {
    cfg.poolers
        .get(name)
        .ok_or_else(|| anyhow!("pooler {name:?} is not in the cluster file"))
}

async fn connect(p: &Pooler) -> anyhow::Result<NodeSession> {
    NodeSession::connect(&p.reach).await.map_err(|e| {
        anyhow::Error::new(e).context(super::Transient(format!(
            "pooler {} is unreachable",
            p.name
        )))
    })
}

/// Runs a `pooler.NAME.*` step; its precondition is read again first.
pub async fn run_step(cfg: &Config, step: &Step) -> anyhow::Result<String> {
    let pgb = pgbouncer(cfg)?;
    let p = pooler(cfg, &step.node)?;
    let session = connect(p).await?;
    let node = Node::new(&p.reach, &session);
    let result = match &step.op {
        Op::WritePoolerBlock { path, block } => write_block(node, path, block).await,
        Op::PoolerService {
            reload,
            reconnect,
            resume,
        } => service(node, pgb, *reload, reconnect, resume).await,
        _ => Err(anyhow!("{} is not a pooler step", step.address)),
    };
    session.close().await;
    result
}

/// Replaces the managed block in the ini read now; the rest of the file
/// is kept byte for byte, and the file is written atomically (mode kept).
async fn write_block(node: Node<'_>, path: &str, block: &str) -> anyhow::Result<String> {
    let name = node.name();
    let ini = node
        .read_file(path, &format!("{name}: reading {path}"))
        .await?;
    let next = splice(&ini, block).map_err(|e| anyhow!("{name}: {path}: {e}"))?;
    if next == ini {
        return Ok("the block is already there".into());
    }
    node.write_file(path, &next, &format!("{name}: writing {path}"))
        .await?;
    Ok(format!("wrote the managed block of {path}"))
}

async fn service(
    node: Node<'_>,
    pgb: &Pgbouncer,
    reload: bool,
    reconnect: &[String],
    resume: &[String],
) -> anyhow::Result<String> {
    let console = node.console(&pgb.admin_user).await?;
    let mut did = Vec::new();
    if reload {
        console.reload().await?;
        did.push("reloaded".to_string());
    }
    for db in reconnect {
        console.reconnect(db).await?;
        did.push(format!("reconnected {db}"));
    }
    let paused = paused(&console).await?;
    for db in resume.iter().filter(|d| paused.contains(d)) {
        console.resume(db).await?;
        did.push(format!("resumed {db}"));
    }
    Ok(if did.is_empty() {
        "nothing to do".into()
    } else {
        did.join(", ")
    })
}

async fn paused(console: &Console) -> anyhow::Result<Vec<String>> {
    Ok(console
        .databases()
        .await?
        .into_iter()
        .filter(|d| d.paused)
        .map(|d| d.name)
        .collect())
}

/// The pools held paused right now, for a second Ctrl-C: apply then stops
/// at once, but resumes them first (`resume_after_interrupt`).
static HELD: std::sync::Mutex<Vec<(Pooler, String, Vec<String>)>> =
    std::sync::Mutex::new(Vec::new());

fn set_held(held: Vec<(Pooler, String, Vec<String>)>) {
    if let Ok(mut h) = HELD.lock() {
        *h = held;
    }
}

/// RESUMEs the pools a switchover holds, within `limit`, when apply is
/// about to stop at once (a second Ctrl-C). Says what it did.
pub async fn resume_after_interrupt(limit: Duration) -> Option<String> {
    let held = HELD.lock().map(|mut h| std::mem::take(&mut *h)).ok()?;
    if held.is_empty() {
        return None;
    }
    let work = futures_util::future::join_all(held.iter().map(|(p, user, dbs)| async move {
        let session = connect(p).await?;
        let console = Node::new(&p.reach, &session).console(user).await?;
        for db in dbs {
            console.resume(db).await?;
        }
        Ok::<_, anyhow::Error>(())
    }));
    Some(match tokio::time::timeout(limit, work).await {
        Ok(r) if r.iter().all(Result::is_ok) => "the paused pools were resumed".into(),
        _ => "resuming the paused pools failed; the next apply resumes them".into(),
    })
}

/// The read-write pools a switchover holds paused, with a session to each
/// pooler. Dropping it without `resume` leaves them paused: a rerun plans
/// their RESUME.
pub struct Hold<'a> {
    cfg: &'a Config,
    poolers: Vec<(&'a PoolerRepoint, &'a Pooler, NodeSession)>,
}

/// PAUSEs the read-write pools on every pooler at once, all within
/// `pause_timeout`. If one cannot, every pooler is RESUMEd and the error
/// says which: nothing of the primary was touched yet.
pub async fn pause<'a>(cfg: &'a Config, repoints: &'a [PoolerRepoint]) -> anyhow::Result<Hold<'a>> {
    let mut hold = Hold {
        cfg,
        poolers: Vec::new(),
    };
    if repoints.is_empty() {
        return Ok(hold);
    }
    let pgb = pgbouncer(cfg)?;
    let deadline = Instant::now() + pgb.pause_timeout;
    let dialled = futures_util::future::join_all(repoints.iter().map(|r| async move {
        let p = pooler(cfg, &r.pooler)?;
        Ok::<_, anyhow::Error>((r, p, connect(p).await?))
    }))
    .await;
    let mut failed = Vec::new();
    for d in dialled {
        match d {
            Ok(x) => hold.poolers.push(x),
            Err(e) => failed.push(e),
        }
    }
    if failed.is_empty() {
        set_held(
            hold.poolers
                .iter()
                .map(|(r, p, _)| ((*p).clone(), pgb.admin_user.clone(), r.pause.clone()))
                .collect(),
        );
        let paused = futures_util::future::join_all(
            hold.poolers
                .iter()
                .map(|(r, p, s)| pause_one(pgb, r, p, s, deadline)),
        )
        .await;
        failed.extend(paused.into_iter().filter_map(Result::err));
    }
    if let Some(first) = failed.into_iter().next() {
        let resumed = hold.resume().await;
        let then = match resumed {
            Ok(()) => "every pooler was resumed".to_string(),
            Err(e) => format!("resuming the poolers failed too ({e:#}); run apply again"),
        };
        return Err(first.context(format!(
            "the read-write pools could not be paused within pause_timeout ({}); {then}; the primary was not touched",
            crate::transport::ssh::humantime(pgb.pause_timeout)
        )));
    }
    Ok(hold)
}

async fn pause_one(
    pgb: &Pgbouncer,
    r: &PoolerRepoint,
    p: &Pooler,
    session: &NodeSession,
    deadline: Instant,
) -> anyhow::Result<()> {
    let console = Node::new(&p.reach, session)
        .console(&pgb.admin_user)
        .await?;
    let already = paused(&console).await?;
    for db in r.pause.iter().filter(|d| !already.contains(d)) {
        let left = deadline.saturating_duration_since(Instant::now());
        console
            .pause(db, left.max(Duration::from_millis(1)))
            .await
            .with_context(|| format!("{}: pausing {db}", p.name))?;
    }
    Ok(())
}

impl Hold<'_> {
    /// After the promotion: each pooler's block (pointing at the new
    /// primary), RELOAD, RESUME, all poolers at once. A pooler whose
    /// rewrite fails is still resumed.
    pub async fn repoint_and_resume(self) -> anyhow::Result<()> {
        if self.poolers.is_empty() {
            return Ok(());
        }
        let pgb = pgbouncer(self.cfg)?;
        let results =
            futures_util::future::join_all(self.poolers.iter().map(|(r, p, s)| async move {
                let node = Node::new(&p.reach, s);
                let rewrite = async {
                    if !r.block.is_empty() {
                        write_block(node, &r.path, &r.block).await?;
                    }
                    node.console(&pgb.admin_user).await?.reload().await
                }
                .await;
                let resumed = resume_one(pgb, r, p, s).await;
                rewrite.and(resumed)
            }))
            .await;
        set_held(Vec::new());
        first_error(results)
    }

    /// RESUMEs the paused pools on every pooler (a failure before the
    /// promotion: they point at the old primary, which runs again).
    pub async fn resume(&self) -> anyhow::Result<()> {
        let Ok(pgb) = pgbouncer(self.cfg) else {
            return Ok(());
        };
        let results = futures_util::future::join_all(
            self.poolers
                .iter()
                .map(|(r, p, s)| resume_one(pgb, r, p, s)),
        )
        .await;
        set_held(Vec::new());
        first_error(results)
    }
}

async fn resume_one(
    pgb: &Pgbouncer,
    r: &PoolerRepoint,
    p: &Pooler,
    session: &NodeSession,
) -> anyhow::Result<()> {
    // A fresh console connection: one whose PAUSE timed out still waits.
    let console = Node::new(&p.reach, session)
        .console(&pgb.admin_user)
        .await?;
    let paused = paused(&console).await?;
    for db in r.pause.iter().filter(|d| paused.contains(d)) {
        console
            .resume(db)
            .await
            .with_context(|| format!("{}: resuming {db}", p.name))?;
    }
    Ok(())
}

fn first_error(results: Vec<anyhow::Result<()>>) -> anyhow::Result<()> {
    let errors: Vec<String> = results
        .into_iter()
        .filter_map(|r| r.err().map(|e| format!("{e:#}")))
        .collect();
    if errors.is_empty() {
        Ok(())
    } else {
        bail!("{}", errors.join("; "))
    }
}
