//! `pgrepl plan`: gather, diff, print; optionally save the plan for apply.

use anyhow::Context;
use serde::{Deserialize, Serialize};
use std::io::IsTerminal;
use std::path::{Path, PathBuf};

use super::error::{Kind, eprint_text, print_text};
use super::{CommandError, Exit, PlanArgs};
use crate::config::{self, Config};
use crate::gather::{self, Observed};
use crate::plan::{Plan, render};
use crate::{diff, transport::NodeSession};

/// A saved plan: the steps, the facts they relied on, and which file they came from.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlanFile {
    pub pgrepl_version: String,
    pub config_path: PathBuf,
    /// A digest of the cluster file's text: apply refuses if it changed.
    pub config_digest: String,
    pub plan: Plan,
}

pub fn style() -> render::Style {
    render::Style {
        color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

pub fn stderr_style() -> render::Style {
    render::Style {
        color: std::io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
    }
}

/// Gathers and plans; returns the open sessions for a caller that acts.
pub async fn make_plan(
    cfg: &Config,
    targets: &[String],
) -> (Plan, Observed, indexmap::IndexMap<String, NodeSession>) {
    let (observed, sessions) = gather::gather(cfg).await;
    let plan = diff::plan(cfg, &observed).restrict_to(targets);
    (plan, observed, sessions)
}

pub fn config_digest(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    Ok(gather::digest(&text))
}

pub fn run(args: &PlanArgs) -> Result<Exit, CommandError> {
    let cfg = config::load(&args.file.config)?;
    let plan = super::block_on(async {
        let (plan, _, sessions) = make_plan(&cfg, &args.target).await;
        for s in sessions.into_values() {
            s.close().await;
        }
        plan
    })?;
    eprint_text(&render::problems(&plan, stderr_style()));
    if args.json {
        print_text(&format!(
            "{}\n",
            serde_json::to_string_pretty(&render::json(&plan))?
        ))?;
    } else {
        print_text(&render::text(&plan, style()))?;
    }
    if let Some(out) = &args.out {
        save(args, out, &plan)?;
    }
    if !plan.blocked.is_empty() {
        let n = plan.blocked.len();
        return Err(CommandError::new(
            Kind::Blocked,
            anyhow::anyhow!(
                "{n} node{} could not be planned (see above); the plan is incomplete",
                if n == 1 { "" } else { "s" }
            ),
        )
        .hint("fix that and plan again"));
    }
    Ok(if args.detailed_exitcode && !plan.is_empty() {
        Exit::Changes
    } else {
        Exit::Success
    })
}

/// Writes the plan file `out` for `pgrepl apply PLANFILE`.
fn save(args: &PlanArgs, out: &Path, plan: &Plan) -> anyhow::Result<()> {
    let file = PlanFile {
        pgrepl_version: env!("CARGO_PKG_VERSION").to_string(),
        config_path: std::fs::canonicalize(&args.file.config)
            .unwrap_or_else(|_| args.file.config.clone()),
        config_digest: config_digest(&args.file.config)?,
        plan: plan.clone(),
    };
    let text = serde_json::to_string_pretty(&file)?;
    std::fs::write(out, text)
        .with_context(|| format!("cannot write the plan file {}", out.display()))?;
    eprint_text(&format!(
        "Saved the plan to {}; run `pgrepl apply {}` to perform exactly these steps.\n",
        out.display(),
        out.display()
    ));
    Ok(())
}
