//! The vaultd daemon.
//!
//! This build carries the sealed core (keyring, barrier, durable storage) as a library; the
//! TLS server that exposes it is not part of it yet, so the binary only reports its version.

use std::process::ExitCode;

use clap::Parser;

/// A TLS-only secrets vault and key-management daemon.
#[derive(Parser)]
#[command(version, about)]
struct Cli {}

fn main() -> ExitCode {
    let _cli = Cli::parse();
    eprintln!("vaultd: this build has no server yet; see README.md for what it provides");
    ExitCode::from(2)
}
