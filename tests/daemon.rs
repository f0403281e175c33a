//! Tests that start the real `vaultd` binary over TLS.

mod audit;
mod bad_input;
mod command_rotation;
mod kv;
mod lifecycle;
mod regressions;
mod rotation;
mod sweep;
mod tokens;
mod transit;
