//! The command-line definitions, kept in one place so that shell completions and manual pages
//! can be generated from them.

use clap::{Parser, Subcommand};
use clap_complete::Shell;

/// The command-line client of vaultd.
#[derive(Parser)]
#[command(name = "vaultctl", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Subcommand)]
pub enum Command {
    /// Print a shell completion script.
    ///
    /// Example: `vaultctl completions bash > /etc/bash_completion.d/vaultctl`
    Completions {
        /// The shell to complete for.
        shell: Shell,
    },
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    use super::*;

    #[test]
    fn definitions_are_consistent() {
        Cli::command().debug_assert();
    }
}
