//! vaultd's core library: sealing, the keyring, envelope encryption and durable storage.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod barrier;
pub mod crypto;
pub mod keyring;
pub mod seal;
pub mod storage;
