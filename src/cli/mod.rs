//! Command-line interface: one file per subcommand; parse, call, print — never decide.

mod apply;
pub mod error;
pub mod plan;
mod status;
mod validate;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

pub use error::{CommandError, Exit};

#[derive(Debug, Parser)]
#[command(
    name = "pgrepl",
    version,
    about = "Keep a PostgreSQL streaming-replication cluster equal to a TOML file",
    after_help = error::EXIT_CODES
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check the cluster file; contacts no node.
    Validate(FileArg),
    /// Show what apply would change; touches nothing.
    Plan(PlanArgs),
    /// Make the cluster equal to the file (plans first, or runs a saved plan).
    Apply(ApplyArgs),
    /// Show every node's role, timeline, position, lag, slot and health.
    Status(StatusArgs),
    /// Print a shell completion script (e.g. `pgrepl completions bash >
    /// /etc/bash_completion.d/pgrepl`).
    Completions {
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// Print a man page, in roff: pgrepl(1), or pgrepl-COMMAND(1) for a
    /// command (e.g. `pgrepl man plan > pgrepl-plan.1; man ./pgrepl-plan.1`).
    Man {
        /// The command whose page to print.
        #[arg(value_name = "COMMAND")]
        command: Option<String>,
    },
}

#[derive(Debug, clap::Args)]
pub struct PlanArgs {
    #[command(flatten)]
    pub file: FileArg,
    /// Save the plan (and the facts it relied on) for `pgrepl apply PLANFILE`.
    #[arg(long, value_name = "PLANFILE")]
    pub out: Option<PathBuf>,
    /// Print the plan as JSON (schemas/plan.schema.json).
    #[arg(long)]
    pub json: bool,
    /// Exit 0 when there are no changes, 2 when there are (1 on error, 4 when blocked).
    #[arg(long)]
    pub detailed_exitcode: bool,
    /// Limit the plan to these resource addresses (and what they depend on).
    #[arg(long, value_name = "ADDRESS")]
    pub target: Vec<String>,
}

#[derive(Debug, clap::Args)]
pub struct ApplyArgs {
    /// A plan saved with `pgrepl plan --out`: made again from the file and the live state, run only if its steps are the same.
    #[arg(value_name = "PLANFILE")]
    pub planfile: Option<PathBuf>,
    #[command(flatten)]
    pub file: FileArg,
    /// Do not ask for confirmation.
    #[arg(long)]
    pub auto_approve: bool,
    /// Limit apply to these resource addresses (and what they depend on).
    #[arg(long, value_name = "ADDRESS")]
    pub target: Vec<String>,
    /// Act even though some nodes could not be planned (failover: the old
    /// primary cannot be reached; it is re-based when it is back).
    #[arg(long)]
    pub force: bool,
    /// With --force: promote a candidate further behind than
    /// `max_lag_on_failover`, losing what it did not receive.
    #[arg(long, requires = "force")]
    pub allow_data_loss: bool,
}

impl ApplyArgs {
    /// Whether -c was given (a saved plan otherwise names its own file).
    pub fn config_given(&self) -> bool {
        self.file.config.as_os_str() != "pgrepl.toml"
    }
}

#[derive(Debug, clap::Args)]
pub struct StatusArgs {
    #[command(flatten)]
    pub file: FileArg,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
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

/// Runs the parsed command and returns the process exit code; an error is
/// printed here, and nowhere else.
pub fn run(cli: Cli) -> ExitCode {
    let result = match cli.command {
        Command::Validate(args) => validate::run(&args),
        Command::Status(args) => status::run(&args),
        Command::Plan(args) => plan::run(&args),
        Command::Apply(args) => apply::run(&args),
        Command::Completions { shell } => completions(shell),
        Command::Man { command } => man(command.as_deref()),
    };
    let exit = match result {
        Ok(exit) => exit,
        Err(err) => {
            error::report(&err);
            err.exit()
        }
    };
    ExitCode::from(exit.code())
}

fn completions(shell: clap_complete::Shell) -> Result<Exit, CommandError> {
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut Cli::command(), "pgrepl", &mut script);
    error::print_text(&String::from_utf8_lossy(&script))?;
    Ok(Exit::Success)
}

fn man(command: Option<&str>) -> Result<Exit, CommandError> {
    let mut cli = Cli::command();
    // Built, a subcommand is named `pgrepl-NAME` in its page.
    cli.build();
    let cmd = match command {
        None => cli,
        Some(name) => cli.find_subcommand(name).cloned().ok_or_else(|| {
            CommandError::failed(format!("no command {name:?}"))
                .hint("the commands are listed by `pgrepl --help`")
        })?,
    };
    let mut page = Vec::new();
    clap_mangen::Man::new(cmd).render(&mut page)?;
    error::print_text(&String::from_utf8_lossy(&page))?;
    Ok(Exit::Success)
}

/// Runs the async part of a command. Everything a command needs is awaited
/// inside `fut`; what is left (an SSH channel still opening to a node that
/// stopped answering) must not hold the exit, so the runtime is shut down
/// without waiting for it.
pub fn block_on<F: std::future::Future>(fut: F) -> anyhow::Result<F::Output> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    let out = rt.block_on(fut);
    rt.shutdown_background();
    Ok(out)
}
