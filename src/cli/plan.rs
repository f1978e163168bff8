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

/// A saved plan: the steps, the facts they relied on, and which file they
/// came from. Never trusted as written: apply plans again and runs only
/// if that gives exactly these steps.
#[derive(Debug, Serialize, Deserialize)]
pub struct PlanFile {
    pub pgrepl_version: String,
    pub config_path: PathBuf,
    /// The SHA-256 of the cluster file's text: apply refuses if it changed.
    pub config_digest: String,
    /// The `--target`s the plan was made with (apply re-plans with them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub targets: Vec<String>,
    pub plan: Plan,
}

/// A plan file is JSON of a few kilobytes (an hba file's content at most
/// per node); anything this large is not one.
const MAX_PLAN_FILE: u64 = 16 << 20;

impl PlanFile {
    /// Reads a plan file `pgrepl plan --out` of this version wrote: a
    /// regular file of bounded size, JSON, this version and plan format.
    pub fn read(path: &Path) -> anyhow::Result<PlanFile> {
        use std::io::Read as _;
        let shown = path.display();
        let meta = std::fs::metadata(path)
            .with_context(|| format!("cannot read the plan file {shown}"))?;
        if !meta.is_file() {
            anyhow::bail!("the plan file {shown} is not a regular file");
        }
        let too_large = |n: u64| {
            anyhow::anyhow!(
                "the plan file {shown} is too large ({n} bytes; a plan file is at most {MAX_PLAN_FILE} bytes): it is not a pgrepl plan file"
            )
        };
        if meta.len() > MAX_PLAN_FILE {
            return Err(too_large(meta.len()));
        }
        let mut text = String::new();
        std::fs::File::open(path)
            .and_then(|f| f.take(MAX_PLAN_FILE + 1).read_to_string(&mut text))
            .with_context(|| format!("cannot read the plan file {shown}"))?;
        if text.len() as u64 > MAX_PLAN_FILE {
            return Err(too_large(text.len() as u64));
        }
        let not_one = |why: String| {
            anyhow::anyhow!(
                "{shown} is not a pgrepl plan file ({why}); make one with `pgrepl plan --out`"
            )
        };
        let value: serde_json::Value = serde_json::from_str(&text).map_err(|e| {
            not_one(if e.is_eof() {
                format!("it ends early, truncated? {e}")
            } else {
                e.to_string()
            })
        })?;
        let this = env!("CARGO_PKG_VERSION");
        match value.get("pgrepl_version").and_then(|v| v.as_str()) {
            Some(v) if v == this => {}
            Some(v) => anyhow::bail!(
                "{shown} was made by pgrepl {}; this is pgrepl {this}, which applies only plans it made itself: nothing was changed; run `pgrepl plan --out` again",
                shown_value(v)
            ),
            None => return Err(not_one("no pgrepl_version".into())),
        }
        match value
            .pointer("/plan/format_version")
            .and_then(|v| v.as_str())
        {
            Some(crate::plan::FORMAT_VERSION) => {}
            other => anyhow::bail!(
                "{shown} holds a plan of format {}; this pgrepl reads format {}: nothing was changed; run `pgrepl plan --out` again",
                shown_value(other.unwrap_or("(none)")),
                crate::plan::FORMAT_VERSION
            ),
        }
        serde_json::from_value(value).map_err(|e| not_one(e.to_string()))
    }
}

/// A short text from a plan file for a message: escaped, cut.
fn shown_value(v: &str) -> String {
    let cut: String = v.chars().take(40).collect();
    let quoted = format!("{cut:?}");
    quoted[1..quoted.len() - 1].to_string()
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
    Ok(crate::digest::digest(&text))
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
        targets: args.target.clone(),
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
