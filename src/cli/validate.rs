//! `pgrepl validate`: load and check the cluster file, contact nothing.

use std::process::ExitCode;

use super::FileArg;
use crate::config;

pub fn run(args: &FileArg) -> anyhow::Result<ExitCode> {
    let cfg = config::load(&args.config)?;
    let n = cfg.nodes.len();
    println!(
        "Configuration is valid: {n} node{}, primary {}.",
        if n == 1 { "" } else { "s" },
        cfg.cluster.primary
    );
    Ok(ExitCode::SUCCESS)
}
