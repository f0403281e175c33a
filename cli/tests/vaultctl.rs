//! Tests of `vaultctl` against the real daemon over TLS: snapshots of each command's output and
//! exit code, `vaultctl exec`, and keeping secret values off the command line. Built as one
//! binary so link time stays flat as the tests grow.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

#[path = "vaultctl/argv.rs"]
mod argv;
#[path = "vaultctl/cert.rs"]
mod cert;
#[path = "vaultctl/exec.rs"]
mod exec;
#[path = "vaultctl/login.rs"]
mod login;
#[path = "vaultctl/snapshots.rs"]
mod snapshots;
#[path = "vaultctl/support.rs"]
mod support;
#[path = "vaultctl/wrap.rs"]
mod wrap;
