//! The client side of vaultd: the wire types of its HTTP API, a typed [`Client`] for
//! services, and the offline audit log verifier.
//!
//! A service that needs its provider keys at start-up:
//!
//! ```no_run
//! use vaultd_client::{Client, Settings};
//!
//! # fn main() -> Result<(), vaultd_client::ClientError> {
//! // VAULT_ADDR, VAULT_TOKEN and VAULT_CACERT, as every Vault client reads them.
//! let settings = Settings::from_env()?.wait_for_start(std::time::Duration::from_secs(30));
//! let client = Client::new(settings)?;
//! let secret = client.kv_get("secret/openai/prod", None)?.expect("the secret exists");
//! let api_key = secret.field("api_key").expect("the secret has an api_key field");
//! # let _ = api_key;
//! # Ok(())
//! # }
//! ```
//!
//! The client always verifies the server's certificate, refuses `http://` addresses, and
//! retries only while the vault is sealed or unreachable, within the time given to
//! [`Settings::wait_for_start`].

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

pub mod audit;
mod client;
mod wire;

pub use client::{Client, ClientError, KvSecret, Settings};
pub use wire::{Envelope, ErrorBody};
