//! `vaultctl`, the command-line client of vaultd.

mod cli;

use std::io;
use std::process::ExitCode;

use clap::{CommandFactory, Parser};

use crate::cli::{Cli, Command};

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "vaultctl", &mut io::stdout());
            ExitCode::SUCCESS
        }
    }
}
