//! `pgrepl validate`: load and check the cluster file, contact nothing.

use super::{CommandError, Exit, FileArg, error::print_text};
use crate::config;

pub fn run(args: &FileArg) -> Result<Exit, CommandError> {
    let cfg = config::load(&args.config)?;
    let n = cfg.nodes.len();
    print_text(&format!(
        "Configuration is valid: {n} node{}, primary {}.\n",
        if n == 1 { "" } else { "s" },
        cfg.cluster.primary
    ))?;
    Ok(Exit::Success)
}
