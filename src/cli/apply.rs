//! `pgrepl apply`: load the file (or a saved plan), show the plan, ask,
//! then let `apply::Run::converge` do the work, and say how it ended.

use std::io::{BufRead, IsTerminal};
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, anyhow};
use tokio::signal::unix::{Signal, SignalKind, signal};

use super::error::{Kind, eprint_text, print_text, stdout_closed};
use super::plan::{PlanFile, config_digest, stderr_style, style};
use super::{ApplyArgs, CommandError, Exit};
use crate::apply::{self, Cancel, Converged, Failed, Refusal, Verdict, failure};
use crate::config::{self, Config};
use crate::plan::{Plan, render};

pub fn run(args: &ApplyArgs) -> Result<Exit, CommandError> {
    let saved = saved_plan(args)?;
    let config_path: PathBuf = match (&saved, args.config_given()) {
        (Some(pf), false) => pf.config_path.clone(),
        _ => args.file.config.clone(),
    };
    let cfg = config::load(&config_path)?;
    if let Some(pf) = &saved
        && config_digest(&config_path)? != pf.config_digest
    {
        return Err(CommandError::failed(format!(
            "Saved plan is stale: the cluster file {} changed since the plan was made; nothing was changed. Run `pgrepl plan` again",
            config_path.display()
        )));
    }
    if let Some(pf) = &saved
        && let Some(name) = pf
            .plan
            .node_names()
            .into_iter()
            .find(|n| !cfg.nodes.contains_key(*n))
    {
        return Err(CommandError::failed(format!(
            "the saved plan names node {name:?}, which is not in the cluster file {}; nothing was changed. Run `pgrepl plan --out` again",
            config_path.display()
        )));
    }
    let (saved, targets) = match saved {
        Some(pf) => (Some(pf.plan), pf.targets),
        None => (None, args.target.clone()),
    };
    super::block_on(apply(&cfg, args, saved, &targets))?
}

fn saved_plan(args: &ApplyArgs) -> anyhow::Result<Option<PlanFile>> {
    let Some(p) = &args.planfile else {
        return Ok(None);
    };
    if !args.target.is_empty() {
        anyhow::bail!(
            "--target cannot be combined with a saved plan: the plan already is what will be done"
        );
    }
    PlanFile::read(p).map(Some)
}

async fn apply(
    cfg: &Config,
    args: &ApplyArgs,
    saved: Option<Plan>,
    targets: &[String],
) -> Result<Exit, CommandError> {
    // Ctrl-C before any change stops at once; after, at a step boundary.
    let mut sigint = signal(SignalKind::interrupt()).context("cannot catch Ctrl-C")?;
    let run = tokio::select! {
        run = apply::begin(cfg, saved, targets, args.force) => run?,
        _ = sigint.recv() => return Err(cancelled_before_any_change()),
    };
    eprint_text(&render::problems(&run.plan, stderr_style()));
    if let Some(refusal) = run.refusal(args.allow_data_loss) {
        run.close().await;
        return Err(match refusal {
            Refusal::Blocked(why) => CommandError::new(Kind::Blocked, anyhow!(why)),
            Refusal::Refused(why) => CommandError::failed(why),
        });
    }
    if run.plan.is_empty() {
        run.close().await;
        print_text(&format!(
            "No changes. Cluster \"{}\" matches the configuration.\n",
            cfg.cluster.name
        ))?;
        return Ok(Exit::Success);
    }
    if args.planfile.is_none() {
        print_text(&render::text(&run.plan, style()))?;
    }
    if !args.auto_approve {
        let answer = tokio::select! {
            answer = confirm() => answer,
            _ = sigint.recv() => Err(cancelled_before_any_change()),
        };
        if let Err(e) = answer {
            run.close().await;
            return Err(e);
        }
    }
    let cancel = Arc::new(Cancel::default());
    let listener = tokio::spawn(stop_on_ctrl_c(sigint, Arc::clone(&cancel)));
    let result = run.converge(&cancel).await;
    listener.abort();
    match result {
        Ok(done) => converged(done),
        Err(failed) => Err(failure_error(failed)),
    }
}

/// The first Ctrl-C asks the run to stop after its running step; a second
/// one stops at once, as a kill would (a rerun continues from live state).
async fn stop_on_ctrl_c(mut sigint: Signal, cancel: Arc<Cancel>) {
    while sigint.recv().await.is_some() {
        if cancel.request() {
            eprint_text(
                "\nCtrl-C: stopping once the running step is done (Ctrl-C again stops at once).\n",
            );
        } else {
            if let Some(said) =
                apply::pooler::resume_after_interrupt(std::time::Duration::from_secs(3)).await
            {
                eprint_text(&format!("\nCtrl-C again: {said}.\n"));
            }
            eprint_text(
                "\nCtrl-C again: stopping now. Run `pgrepl apply` again to continue from the state that is now live.\n",
            );
            std::process::exit(i32::from(Exit::Cancelled.code()));
        }
    }
}

fn cancelled_before_any_change() -> CommandError {
    CommandError::new(
        Kind::Cancelled,
        anyhow!("cancelled (Ctrl-C); nothing was changed"),
    )
}

/// Says how a run that ran its steps ended.
fn converged(done: Converged) -> Result<Exit, CommandError> {
    let n = done.done.len();
    let secs = done.secs;
    match done.verdict {
        Verdict::Clean(p) => {
            // What the final plan could not tell (a standby between WAL
            // receivers, say) is said, not swallowed.
            eprint_text(&render::problems(&p, stderr_style()));
            let extra = if done.after_apply.is_empty() {
                String::new()
            } else {
                format!(
                    " ({} planned; {} known only after apply: {})",
                    done.planned,
                    n - done.planned,
                    done.after_apply.join(", ")
                )
            };
            print_text(&format!(
                "Apply complete: {n} step{}{extra} in {secs:.2}s. A fresh plan shows no changes.\n",
                if n == 1 { "" } else { "s" }
            ))?;
            Ok(Exit::Success)
        }
        Verdict::CleanWithout(p) => {
            eprint_text(&render::problems(&p, stderr_style()));
            print_text(&format!(
                "Apply complete: {n} steps in {secs:.2}s; the nodes above could not be planned (unreachable, or run by another manager) and are left for a later apply.\n"
            ))?;
            Ok(Exit::Success)
        }
        Verdict::NeedsReview(p) => Err(CommandError::failed(format!(
            "the {n} approved step(s) are done, but a fresh plan now shows a role change or a re-base, which pgrepl never runs without review:"
        ))
        .note(render::text(&p, stderr_style()))
        .hint("run `pgrepl plan` to review it")),
        Verdict::Differs(p) => {
            let left: Vec<String> = p
                .changes
                .iter()
                .map(|s| format!("  {} {}", s.action.symbol(), s.address))
                .collect();
            Err(
                CommandError::failed("after apply, the cluster still differs from the file:")
                    .note(render::problems(&p, stderr_style()))
                    .note(left.join("\n")),
            )
        }
    }
}

/// A failed or cancelled run: what was done, and whether a rerun helps.
fn failure_error(failed: Failed) -> CommandError {
    let what = if failed.cancelled() {
        "Ctrl-C"
    } else {
        "the failure"
    };
    let done = if failed.done.is_empty() {
        format!("Nothing was done before {what}.")
    } else {
        let mut lines = vec![format!("Done before {what}:")];
        lines.extend(failed.done.iter().map(|d| format!("  {d}")));
        lines.join("\n")
    };
    if failed.cancelled() {
        return CommandError::new(Kind::Cancelled, failed.error)
            .note(done)
            .hint("run `pgrepl apply` again to continue from the state that is now live");
    }
    let next = failure::next_step(&failed.error);
    CommandError::new(Kind::Failed, failed.error)
        .note(done)
        .hint(next)
}

/// Asks on the terminal; only `yes` goes on.
async fn confirm() -> Result<(), CommandError> {
    if !std::io::stdin().is_terminal() {
        return Err(CommandError::failed(
            "no terminal to confirm on and no --auto-approve: nothing was changed",
        ));
    }
    if stdout_closed() {
        return Err(CommandError::failed(
            "the plan could not be shown (standard output is closed): nothing was changed",
        ));
    }
    print_text("\nDo you want to perform these actions? Only 'yes' will be accepted: ")?;
    let line = tokio::task::spawn_blocking(|| {
        let mut line = String::new();
        std::io::stdin().lock().read_line(&mut line).map(|_| line)
    })
    .await
    .context("reading the answer")?
    .context("reading the answer")?;
    if line.trim() == "yes" {
        Ok(())
    } else {
        Err(CommandError::failed(
            "Apply cancelled; nothing was changed.",
        ))
    }
}
