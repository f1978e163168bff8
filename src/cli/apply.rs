//! `pgrepl apply`: plan (or load a saved plan), confirm, lock, execute,
//! and confirm that a fresh plan is empty.

use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use anyhow::{Context, bail};
use indexmap::IndexMap;

use super::ApplyArgs;
use super::plan::{PlanFile, config_digest, stderr_style, style};
use crate::apply::{self, Report};
use crate::config::{self, Config};
use crate::diff;
use crate::gather;
use crate::plan::{Op, Plan, render};
use crate::transport::NodeSession;

pub fn run(args: &ApplyArgs) -> anyhow::Result<ExitCode> {
    let saved: Option<PlanFile> = match &args.planfile {
        Some(p) => {
            if !args.target.is_empty() {
                bail!(
                    "--target cannot be combined with a saved plan: the plan already is what will be done"
                );
            }
            let text = std::fs::read_to_string(p)
                .with_context(|| format!("cannot read the plan file {}", p.display()))?;
            Some(
                serde_json::from_str(&text)
                    .with_context(|| format!("{} is not a pgrepl plan file", p.display()))?,
            )
        }
        None => None,
    };
    let config_path: PathBuf = match (&saved, args.config_given()) {
        (Some(pf), false) => pf.config_path.clone(),
        _ => args.file.config.clone(),
    };
    let cfg = config::load(&config_path)?;
    if let Some(pf) = &saved
        && config_digest(&config_path)? != pf.config_digest
    {
        bail!(
            "Saved plan is stale: the cluster file {} changed since the plan was made; nothing was changed. Run `pgrepl plan` again",
            config_path.display()
        );
    }
    super::block_on(apply(&cfg, args, saved))?
}

async fn close_all(sessions: IndexMap<String, NodeSession>) {
    for s in sessions.into_values() {
        s.close().await;
    }
}

async fn apply(
    cfg: &Config,
    args: &ApplyArgs,
    saved: Option<PlanFile>,
) -> anyhow::Result<ExitCode> {
    let started = Instant::now();
    let (observed, mut sessions) = gather::gather(cfg).await;
    let unreachable: IndexMap<String, gather::UnreachableInfo> = observed
        .nodes
        .values()
        .filter_map(|n| n.unreachable.clone().map(|u| (n.name.clone(), u)))
        .collect();
    let plan: Plan = match saved {
        Some(pf) => {
            let now = diff::facts(cfg, &observed);
            let stale = stale_facts(&pf.plan.facts, &now);
            if !stale.is_empty() {
                close_all(sessions).await;
                bail!(
                    "Saved plan is stale: {}; nothing was changed. Run `pgrepl plan` again",
                    stale.join("; ")
                );
            }
            pf.plan
        }
        None => diff::plan(cfg, &observed).restrict_to(&args.target),
    };
    eprint!("{}", render::problems(&plan, stderr_style()));
    if let Some(why) = &plan.refused {
        close_all(sessions).await;
        bail!("{why}; nothing was changed (--force does not override this)");
    }
    if let Some(why) = &plan.needs_force
        && !args.force
    {
        close_all(sessions).await;
        bail!("{why}; this is a failover, which needs --force; nothing was changed");
    }
    if let Some(why) = &plan.data_loss
        && !args.allow_data_loss
    {
        close_all(sessions).await;
        bail!("{why}; nothing was changed");
    }
    if !plan.blocked.is_empty() && !args.force {
        close_all(sessions).await;
        bail!(
            "{} node(s) could not be planned (see above); nothing was changed. Fix them, use --target to act on the others, or --force to act without them (failover)",
            plan.blocked.len()
        );
    }
    if plan.is_empty() {
        println!(
            "No changes. Cluster \"{}\" matches the configuration.",
            cfg.cluster.name
        );
        close_all(sessions).await;
        return Ok(ExitCode::SUCCESS);
    }
    if args.planfile.is_none() {
        print!("{}", render::text(&plan, style()));
    }
    if !args.auto_approve && !confirm()? {
        close_all(sessions).await;
        eprintln!("Apply cancelled; nothing was changed.");
        return Ok(ExitCode::from(1));
    }
    let locks = match apply::lock_cluster(cfg, &sessions).await {
        Ok(l) => l,
        Err(e) => {
            close_all(sessions).await;
            return Err(e);
        }
    };
    let mut report = Report::default();
    let mut result = apply::run_steps(cfg, &plan, &mut sessions, &mut report).await;
    // What the plan showed ends here; whatever follows is said as such.
    let planned_done = report.done.len();
    let mut after_apply: Vec<String> = Vec::new();
    // Steps that only become known once new standbys run (their own
    // settings): one more round, then the final check.
    let mut remaining = None;
    if result.is_ok() {
        // A saved plan runs exactly its approved steps: no further rounds.
        let rounds = if args.planfile.is_some() { 1 } else { 4 };
        for round in 0..rounds {
            let (observed, s) =
                gather::regather(cfg, std::mem::take(&mut sessions), &unreachable).await;
            sessions = s;
            let next = diff::plan(cfg, &observed).restrict_to(&args.target);
            // A role change or a re-base the operator did not approve is
            // never run as a follow-up: it is reported for a new plan.
            let unapproved = next.changes.iter().any(|s| {
                matches!(
                    s.op,
                    Op::Switchover { .. } | Op::Promote { .. } | Op::Rebase { .. }
                )
            });
            if next.is_empty() || unapproved || round + 1 == rounds {
                remaining = Some(next);
                break;
            }
            let found: Vec<String> = next
                .changes
                .iter()
                .map(|s| format!("{} {}", s.action.symbol(), s.address))
                .collect();
            eprintln!(
                "Known only now that the plan's steps ran: {}",
                found.join(", ")
            );
            after_apply.extend(found);
            if let Err(e) = apply::run_steps(cfg, &next, &mut sessions, &mut report).await {
                result = Err(e);
                break;
            }
        }
    }
    for l in locks {
        l.release().await;
    }
    close_all(sessions).await;
    if let Err(e) = result {
        eprintln!("error: {e:#}");
        if report.done.is_empty() {
            eprintln!("Nothing was done before the failure.");
        } else {
            eprintln!("Done before the failure:");
            for d in &report.done {
                eprintln!("  {d}");
            }
        }
        eprintln!("Run `pgrepl apply` again to continue from the state that is now live.");
        return Ok(ExitCode::from(1));
    }
    let secs = started.elapsed().as_secs_f64();
    match remaining {
        Some(p) if p.is_empty() && p.blocked.is_empty() => {
            // What the final plan could not tell (a standby between WAL
            // receivers, say) is said, not swallowed.
            eprint!("{}", render::problems(&p, stderr_style()));
            let extra = if after_apply.is_empty() {
                String::new()
            } else {
                format!(
                    " ({planned_done} planned; {} known only after apply: {})",
                    report.done.len() - planned_done,
                    after_apply.join(", ")
                )
            };
            println!(
                "Apply complete: {} step{}{extra} in {secs:.2}s. A fresh plan shows no changes.",
                report.done.len(),
                if report.done.len() == 1 { "" } else { "s" }
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(p) if p.is_empty() && args.force => {
            eprint!("{}", render::problems(&p, stderr_style()));
            println!(
                "Apply complete: {} steps in {secs:.2}s; the nodes above could not be planned (unreachable, or run by another manager) and are left for a later apply.",
                report.done.len()
            );
            Ok(ExitCode::SUCCESS)
        }
        Some(p)
            if p.changes.iter().any(|s| {
                matches!(
                    s.op,
                    Op::Switchover { .. } | Op::Promote { .. } | Op::Rebase { .. }
                )
            }) =>
        {
            eprintln!(
                "error: the {} approved step(s) are done, but a fresh plan now shows a role change or a re-base, which pgrepl never runs without review:",
                report.done.len()
            );
            eprint!("{}", render::text(&p, stderr_style()));
            eprintln!("Run `pgrepl plan` to review it.");
            Ok(ExitCode::from(1))
        }
        Some(p) => {
            eprintln!("error: after apply, the cluster still differs from the file:");
            eprint!("{}", render::problems(&p, stderr_style()));
            for s in &p.changes {
                eprintln!("  {} {}", s.action.symbol(), s.address);
            }
            Ok(ExitCode::from(1))
        }
        None => Ok(ExitCode::from(1)),
    }
}

fn stale_facts(saved: &IndexMap<String, String>, now: &IndexMap<String, String>) -> Vec<String> {
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

fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        bail!("no terminal to confirm on and no --auto-approve: nothing was changed");
    }
    print!("\nDo you want to perform these actions? Only 'yes' will be accepted: ");
    std::io::stdout().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(line.trim() == "yes")
}
