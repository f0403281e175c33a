//! The cryptographic building blocks: authenticated encryption, key derivation, hashing,
//! randomness and Shamir secret sharing.
//!
//! Everything above this module asks for an operation by purpose ("seal this record", "split
//! this key") and never touches a cipher crate directly, so the choice of primitives stays in
//! one place. Key material lives in [`SecretKey`], which zeroizes on drop and has no `Debug`.

mod aead;
mod digest;
pub mod shamir;

pub use aead::{
    Algorithm, KEY_LEN, NONCE_LEN, OVERHEAD, SecretKey, TAG_LEN, XNONCE_LEN, open, seal, seal_into,
    xchacha_open, xchacha_seal,
};
pub use digest::{fill_random, hkdf_sha256, hmac_sha256, sha256};

/// An error from a cryptographic operation.
///
/// Decryption failures deliberately carry no detail: a wrong key, a wrong associated data and
/// a tampered ciphertext are indistinguishable by design.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CryptoError {
    /// The ciphertext, its tag or its associated data did not authenticate.
    #[error("authentication failed")]
    Authentication,
    /// The ciphertext is too short to hold a nonce and a tag.
    #[error("ciphertext of {0} bytes is too short")]
    Truncated(usize),
    /// The operating system's random number generator failed.
    #[error("the system random number generator failed")]
    Random,
    /// The input is longer than the primitive allows.
    #[error("input too long")]
    TooLong,
    /// The shares given to Shamir recovery are inconsistent or too few.
    #[error("{0}")]
    Shares(&'static str),
}
