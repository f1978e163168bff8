//! One apply run, from the gathering to the final check: the plan's steps,
//! then a round for each step found only once they ran, then a fresh plan
//! that must be empty. The CLI asks, prints and exits; this decides.

use std::fmt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use indexmap::IndexMap;

use super::{Report, lock_cluster, run_steps};
use crate::config::Config;
use crate::diff;
use crate::gather::{self, UnreachableInfo};
use crate::node::LostFlag;
use crate::plan::{self, Op, Plan};
use crate::transport::NodeSession;

/// Rounds after the plan's own steps, for what is known only once they ran
/// (a started node's settings, a new standby's own values).
const ROUNDS: usize = 4;

/// A request to stop at the next step boundary (Ctrl-C), or a reason to:
/// a cluster lock whose lease was lost.
#[derive(Debug, Default)]
pub struct Cancel {
    requested: AtomicBool,
    locks: Mutex<Vec<LostFlag>>,
}

impl Cancel {
    /// Asks the run to stop; true the first time it is asked.
    pub fn request(&self) -> bool {
        !self.requested.swap(true, Ordering::SeqCst)
    }

    pub fn requested(&self) -> bool {
        self.requested.load(Ordering::SeqCst)
    }

    /// The locks the run holds, each checked at every step boundary.
    fn watch(&self, locks: Vec<LostFlag>) {
        if let Ok(mut l) = self.locks.lock() {
            *l = locks;
        }
    }

    /// At a step boundary: an error once a stop was asked for, or once a
    /// lock's lease was lost (another apply may hold the cluster by now).
    pub fn check(&self) -> anyhow::Result<()> {
        if self.requested() {
            return Err(Cancelled.into());
        }
        let lost = self
            .locks
            .lock()
            .ok()
            .and_then(|l| l.iter().find_map(LostFlag::lost));
        if let Some(why) = lost {
            return Err(LockLost(why).into());
        }
        Ok(())
    }
}

/// The error a run ends with when a lock's lease was lost: it stopped
/// before its next step.
#[derive(Debug, Clone)]
pub struct LockLost(pub String);

impl fmt::Display for LockLost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}; apply stopped before its next step, since another apply may hold the cluster now",
            self.0
        )
    }
}

impl std::error::Error for LockLost {}

/// The error a run stopped by `Cancel` ends with.
#[derive(Debug, Clone, Copy)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("cancelled (Ctrl-C) at a step boundary")
    }
}

impl std::error::Error for Cancelled {}

/// Why apply does not start; nothing was changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Some nodes could not be planned.
    Blocked(String),
    /// The plan needs what was not given (`--force`, `--allow-data-loss`),
    /// or what no flag allows.
    Refused(String),
}

/// A cluster gathered and planned, its sessions open, nothing changed yet.
pub struct Run<'a> {
    cfg: &'a Config,
    pub plan: Plan,
    sessions: IndexMap<String, NodeSession>,
    unreachable: IndexMap<String, UnreachableInfo>,
    targets: Vec<String>,
    /// A saved plan runs exactly its approved steps: no follow-up rounds.
    saved: bool,
    force: bool,
    started: Instant,
}

/// How a run that ran its steps ended.
#[derive(Debug)]
pub struct Converged {
    /// Every step run, as `SYMBOL ADDRESS (SECONDSs)`.
    pub done: Vec<String>,
    /// How many of `done` the plan showed; the rest are `after_apply`.
    pub planned: usize,
    pub after_apply: Vec<String>,
    pub secs: f64,
    pub verdict: Verdict,
}

/// What the fresh plan after the steps shows.
#[derive(Debug)]
pub enum Verdict {
    /// No changes; the plan's warnings are still worth saying.
    Clean(Plan),
    /// No changes on the nodes that could be planned; the others are left
    /// for a later apply (`--force`).
    CleanWithout(Plan),
    /// A role change or a re-base, never run without review.
    NeedsReview(Plan),
    /// The cluster still differs from the file.
    Differs(Plan),
}

/// A run that stopped at a failed step, or at a boundary when cancelled.
#[derive(Debug)]
pub struct Failed {
    pub error: anyhow::Error,
    /// The steps done before it.
    pub done: Vec<String>,
}

impl Failed {
    pub fn cancelled(&self) -> bool {
        self.error.downcast_ref::<Cancelled>().is_some()
    }
}

/// Gathers every node and plans. A saved plan is trusted only as far as
/// it is re-derived: its facts must still hold, and the plan made now from
/// the file and the live state must have exactly its steps; the plan made
/// now is the one that runs. `targets` are the plan's (a saved plan's own).
/// Read-only.
pub async fn begin<'a>(
    cfg: &'a Config,
    saved: Option<Plan>,
    targets: &[String],
    force: bool,
) -> anyhow::Result<Run<'a>> {
    let started = Instant::now();
    let (observed, sessions) = gather::gather(cfg).await;
    // Nodes and poolers (their names never clash) not to dial again.
    let unreachable = observed
        .nodes
        .values()
        .map(|n| (&n.name, &n.unreachable))
        .chain(observed.poolers.values().map(|p| (&p.name, &p.unreachable)))
        .filter_map(|(name, u)| u.clone().map(|u| (name.clone(), u)))
        .collect();
    let is_saved = saved.is_some();
    let plan = match saved {
        Some(saved) => {
            let stale = stale_facts(&saved.facts, &diff::facts(cfg, &observed));
            if !stale.is_empty() {
                close_all(sessions).await;
                anyhow::bail!(
                    "Saved plan is stale: {}; nothing was changed. Run `pgrepl plan` again",
                    stale.join("; ")
                );
            }
            let now = diff::plan(cfg, &observed).restrict_to(targets);
            if let Some(d) = plan::first_difference(&saved.changes, &now.changes) {
                close_all(sessions).await;
                anyhow::bail!(
                    "the saved plan does not match what the cluster file and the live state give now; nothing was changed; run `pgrepl plan --out` again. First difference: {d}"
                );
            }
            now
        }
        None => diff::plan(cfg, &observed).restrict_to(targets),
    };
    Ok(Run {
        cfg,
        plan,
        sessions,
        unreachable,
        targets: targets.to_vec(),
        saved: is_saved,
        force,
        started,
    })
}

impl Run<'_> {
    /// Why the plan must not run as asked, if it must not.
    pub fn refusal(&self, allow_data_loss: bool) -> Option<Refusal> {
        let plan = &self.plan;
        if let Some(why) = &plan.refused {
            return Some(Refusal::Refused(format!(
                "{why}; nothing was changed (--force does not override this)"
            )));
        }
        if let Some(why) = &plan.needs_force
            && !self.force
        {
            return Some(Refusal::Refused(format!(
                "{why}; this is a failover, which needs --force; nothing was changed"
            )));
        }
        if let Some(why) = &plan.data_loss
            && !allow_data_loss
        {
            return Some(Refusal::Refused(format!("{why}; nothing was changed")));
        }
        // With --target, only the blocked nodes the targets name count.
        let blocked = plan
            .blocked
            .iter()
            .filter(|w| blocks_targets(w.node.as_deref(), &self.targets))
            .count();
        if blocked > 0 && !self.force {
            return Some(Refusal::Blocked(format!(
                "{blocked} node(s) could not be planned (see above); nothing was changed. Fix them, use --target to act on the others, or --force to act without them (failover)"
            )));
        }
        None
    }

    /// Lets the nodes go without changing anything.
    pub async fn close(self) {
        close_all(self.sessions).await;
    }

    /// Locks the cluster, runs the plan's steps and the rounds that follow,
    /// and checks the result with a fresh plan. Stops at the first failed
    /// step, or at a step boundary once `cancel` is requested.
    pub async fn converge(mut self, cancel: &Cancel) -> Result<Converged, Failed> {
        let locks = match lock_cluster(self.cfg, &self.sessions).await {
            Ok(l) => l,
            Err(error) => {
                close_all(self.sessions).await;
                return Err(Failed {
                    error,
                    done: Vec::new(),
                });
            }
        };
        cancel.watch(locks.iter().map(|l| l.lost_flag()).collect());
        let mut report = Report::default();
        let result = self.rounds(cancel, &mut report).await;
        cancel.watch(Vec::new());
        for l in locks {
            l.release().await;
        }
        close_all(std::mem::take(&mut self.sessions)).await;
        let (planned, after_apply, verdict) = result.map_err(|error| Failed {
            error,
            done: report.done.clone(),
        })?;
        Ok(Converged {
            done: report.done,
            planned,
            after_apply,
            secs: self.started.elapsed().as_secs_f64(),
            verdict,
        })
    }

    /// The plan's steps, then up to `ROUNDS` plans for what they revealed.
    /// Returns how many steps the plan showed, the steps found after, and
    /// the last plan's verdict.
    async fn rounds(
        &mut self,
        cancel: &Cancel,
        report: &mut Report,
    ) -> anyhow::Result<(usize, Vec<String>, Verdict)> {
        let cfg = self.cfg;
        run_steps(cfg, &self.plan, &mut self.sessions, report, cancel).await?;
        // What the plan showed ends here; whatever follows is said as such.
        let planned = report.done.len();
        let mut after_apply = Vec::new();
        let rounds = if self.saved { 1 } else { ROUNDS };
        let mut round = 1;
        loop {
            cancel.check()?;
            let open = std::mem::take(&mut self.sessions);
            let (observed, sessions) = gather::regather(cfg, open, &self.unreachable).await;
            self.sessions = sessions;
            let next = diff::plan(cfg, &observed).restrict_to(&self.targets);
            if next.is_empty() || needs_review(&next) || round == rounds {
                return Ok((planned, after_apply, self.verdict(next)));
            }
            round += 1;
            let found: Vec<String> = next
                .changes
                .iter()
                .map(|s| format!("{} {}", s.action.symbol(), s.address))
                .collect();
            super::progress_line(&format!(
                "Known only now that the plan's steps ran: {}",
                found.join(", ")
            ));
            after_apply.extend(found);
            run_steps(cfg, &next, &mut self.sessions, report, cancel).await?;
        }
    }

    fn verdict(&self, plan: Plan) -> Verdict {
        if plan.is_empty() && plan.blocked.is_empty() {
            Verdict::Clean(plan)
        } else if plan.is_empty() && self.force {
            Verdict::CleanWithout(plan)
        } else if needs_review(&plan) {
            Verdict::NeedsReview(plan)
        } else {
            Verdict::Differs(plan)
        }
    }
}

/// A role change or a re-base the operator did not approve is never run as
/// a follow-up: it is reported for a new plan.
fn needs_review(plan: &Plan) -> bool {
    plan.changes.iter().any(|s| {
        matches!(
            s.op,
            Op::Switchover { .. } | Op::Promote { .. } | Op::Rebase { .. }
        )
    })
}

async fn close_all(sessions: IndexMap<String, NodeSession>) {
    for s in sessions.into_values() {
        s.close().await;
    }
}

/// The facts a saved plan relied on that no longer hold.
pub fn stale_facts(
    saved: &IndexMap<String, String>,
    now: &IndexMap<String, String>,
) -> Vec<String> {
    let mut out = Vec::new();
    for (k, v) in saved {
        match now.get(k) {
            Some(n) if n == v => {}
            Some(n) => out.push(format!("{k} changed ({v} -> {n})")),
            None => out.push(format!("{k} is gone")),
        }
    }
    for k in now.keys().filter(|k| !saved.contains_key(*k)) {
        out.push(format!("{k} is new"));
    }
    out
}

/// Whether a node that could not be planned stops an apply limited to
/// `targets` (resource addresses): when nothing limits it, when it is not
/// a node's, or when a target is that node or one of its resources.
fn blocks_targets(node: Option<&str>, targets: &[String]) -> bool {
    let Some(node) = node else { return true };
    targets.is_empty()
        || targets
            .iter()
            .any(|t| t == node || t.strip_prefix(node).is_some_and(|r| r.starts_with('.')))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cancel_is_asked_once_and_stops_at_the_next_check() {
        let cancel = Cancel::default();
        assert!(cancel.check().is_ok());
        assert!(cancel.request());
        assert!(!cancel.request(), "the second request is not the first");
        let err = cancel.check().expect_err("stops");
        assert!(err.downcast_ref::<Cancelled>().is_some());
    }

    #[test]
    fn a_lost_lock_stops_the_run_at_the_next_check() {
        let cancel = Cancel::default();
        let (held, lost) = (LostFlag::default(), LostFlag::default());
        cancel.watch(vec![held, lost.clone()]);
        assert!(cancel.check().is_ok());
        lost.lose("node2: the cluster lock's lease was lost (its holder ended)".into());
        let err = cancel.check().expect_err("stops");
        let text = format!("{err:#}");
        assert!(err.downcast_ref::<LockLost>().is_some(), "{text}");
        assert!(
            text.contains("node2: the cluster lock's lease was lost")
                && text.contains("stopped before its next step"),
            "{text}"
        );
        // Once the run let its locks go, nothing is watched.
        cancel.watch(Vec::new());
        assert!(cancel.check().is_ok());
    }

    #[test]
    fn stale_facts_name_what_changed_went_and_came() {
        let saved: IndexMap<String, String> =
            [("a".into(), "1".into()), ("b".into(), "2".into())].into();
        let now: IndexMap<String, String> =
            [("a".into(), "3".into()), ("c".into(), "4".into())].into();
        assert_eq!(
            stale_facts(&saved, &now),
            ["a changed (1 -> 3)", "b is gone", "c is new"]
        );
    }

    #[test]
    fn a_blocked_node_stops_only_the_targets_that_name_it() {
        use super::blocks_targets;
        let t = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(blocks_targets(Some("node3"), &t(&[])));
        assert!(blocks_targets(None, &t(&["node1"])));
        assert!(!blocks_targets(Some("node3"), &t(&["node1", "node2"])));
        assert!(blocks_targets(Some("node3"), &t(&["node1", "node3"])));
        assert!(blocks_targets(Some("node3"), &t(&["node3.hba"])));
        assert!(!blocks_targets(
            Some("node3"),
            &t(&["node31.hba", "role.replicator"])
        ));
    }
}
