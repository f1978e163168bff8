//! Command-line interface: one file per subcommand; parse, call, print — never decide.

mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "pgrepl",
    version,
    about = "Keep a PostgreSQL streaming-replication cluster equal to a TOML file",
    after_help = "Exit codes: 0 success, 1 error, 2 changes present (plan --detailed-exitcode)."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the cluster file; contacts no node.
    Validate(FileArg),
}

#[derive(Debug, clap::Args)]
pub struct FileArg {
    /// The cluster file.
    #[arg(
        short = 'c',
        long = "config",
        default_value = "pgrepl.toml",
        value_name = "FILE"
    )]
    pub config: PathBuf,
}

/// Runs the parsed command and returns the process exit code.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            report_error(&err);
            ExitCode::from(1)
        }
    }
}

/// Prints an error once, with its chain of causes.
pub fn report_error(err: &anyhow::Error) {
    if let Some(config_err) = err.downcast_ref::<crate::config::ConfigError>() {
        eprintln!("{config_err}");
    } else {
        eprintln!("error: {err:#}");
    }
}
