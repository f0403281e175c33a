//! vaultd's core: how secrets are sealed, encrypted and kept on disk.
//!
//! vaultd protects secret values against anyone who obtains its data directory, a backup or
//! the disk: such a reader learns the names of records but no value and no key, and cannot
//! change, truncate or move a record without detection. It does not protect a running,
//! unsealed daemon against someone who controls its host. `docs/threat-model.md` says more.
//!
//! # How the pieces fit
//!
//! ```text
//!                 ┌────────┐  shares or key file
//!  operator ────▶ │  seal  │ ───────────────────▶ unseal key ──opens──▶ root key
//!                 └────────┘                                              │
//!                                                                      opens
//!                                                                         ▼
//!  engines ─────▶ ┌─────────┐  data key per record, wrapped by  ┌─────────────────┐
//!  (RecordId,     │ barrier │ ◀──────────────────────────────── │     keyring     │
//!   plaintext)    └─────────┘   the active key term             │ (key terms 1…n) │
//!                      │ sealed records                         └─────────────────┘
//!                      ▼
//!                 ┌─────────┐  flush + fdatasync, group commit
//!                 │ storage │ ───────────────────────────────▶ sled data directory
//!                 └─────────┘
//! ```
//!
//! - [`crypto`]: AEAD, hashing, key derivation, randomness and Shamir secret sharing.
//! - [`seal`]: init, unseal (by Shamir shares or a key file) and seal.
//! - [`keyring`]: the versioned key-encryption keys and their rotation.
//! - [`barrier`]: envelope encryption of every record, and rewrap after rotation.
//! - [`storage`]: the [`Storage`](storage::Storage) trait and its durable sled backend.
//!
//! # Words
//!
//! One word per concept, used the same way everywhere:
//!
//! | word | meaning |
//! | --- | --- |
//! | secret | a value stored for a client, with its versions |
//! | record | one stored, sealed unit: a secret version, metadata, a token, a policy, … |
//! | mount | an engine instance at a path, identified by a UUID |
//! | seal / unseal | dropping / loading the keys that open records |
//! | unseal key | the key that seals the root key; never stored |
//! | unseal share | one Shamir share of the unseal key |
//! | root key | the key that seals the keyring |
//! | key term | one version of the key-encryption key in the keyring |
//! | data key | the random key of one record, wrapped by a key term |
//! | rotation | adding a key term and moving data keys to it (rewrap) |
//! | generation | how many times an overwritten record has been written |

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod api;
pub mod audit;
pub mod auth;
pub mod barrier;
pub mod config;
pub mod crypto;
pub mod dev;
pub mod duration;
pub mod harden;
pub mod keyring;
pub mod kv;
pub mod limits;
pub mod mount;
pub mod policy;
pub mod provider;
pub mod rotation;
pub mod seal;
pub mod server;
pub mod storage;
pub mod token;
pub mod transit;
pub mod vault;
pub mod wrapping;
