use std::process::ExitCode;

use clap::Parser;

fn main() -> ExitCode {
    pgrepl::cli::run(pgrepl::cli::Cli::parse())
}
