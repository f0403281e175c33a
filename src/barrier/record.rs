//! The binary layout of a sealed record (format version 1), documented in
//! `docs/storage-format.md`:
//!
//! ```text
//! offset  length  field
//!      0       1  format version (1)
//!      1       1  algorithm (1 = AES-256-GCM, 2 = ChaCha20-Poly1305)
//!      2       1  record kind
//!      3       4  key term that wraps the data key (big-endian)
//!      7      60  wrapped data key: nonce (12) ‖ encrypted key (32) ‖ tag (16)
//!     67       8  generation (big-endian)
//!     75      12  value nonce
//!     87       n  value ciphertext
//!   87+n      16  value tag
//! ```
//!
//! The wrapped data key authenticates `"vaultd/dek" ‖ format ‖ algorithm ‖ term`; the value
//! authenticates `"vaultd/record" ‖ format ‖ algorithm ‖ kind ‖ mount ‖ path length ‖ path ‖
//! version ‖ generation`. So the term can change (a rewrap replaces bytes 3..67 only) without
//! touching the value, while a value moved to another kind, mount, path, version or generation
//! no longer opens.

use zeroize::Zeroizing;

use super::{BarrierError, RecordId};
use crate::crypto::{self, Algorithm, KEY_LEN, SecretKey};
use crate::keyring::{KeyTerm, Keyring, Term};

/// The current format version.
pub const FORMAT: u8 = 1;
const WRAPPED_KEY_LEN: usize = KEY_LEN + crypto::OVERHEAD;
const TERM_AT: usize = 3;
const WRAPPED_AT: usize = 7;
const GENERATION_AT: usize = WRAPPED_AT + WRAPPED_KEY_LEN;
/// Bytes before the sealed value.
pub const HEADER_LEN: usize = GENERATION_AT + 8;
/// Bytes a record adds to its plaintext.
pub const OVERHEAD: usize = HEADER_LEN + crypto::OVERHEAD;

/// The parsed, not yet authenticated, header of a stored record.
pub struct Header {
    pub algorithm: Algorithm,
    pub kind: u8,
    pub term: KeyTerm,
    pub generation: u64,
}

impl Header {
    /// Parses the header; `None` if the bytes cannot be a version 1 record.
    pub fn parse(bytes: &[u8]) -> Option<Header> {
        if bytes.len() < OVERHEAD || bytes[0] != FORMAT {
            return None;
        }
        let algorithm = Algorithm::from_id(bytes[1])?;
        let term = u32::from_be_bytes(bytes[TERM_AT..WRAPPED_AT].try_into().ok()?);
        let generation = u64::from_be_bytes(bytes[GENERATION_AT..HEADER_LEN].try_into().ok()?);
        Some(Header {
            algorithm,
            kind: bytes[2],
            term: KeyTerm(term),
            generation,
        })
    }
}

/// Seals `plaintext` as the record `id` at `generation`, with a fresh data key wrapped by `term`.
pub fn seal(
    algorithm: Algorithm,
    term: &Term,
    id: &RecordId,
    generation: u64,
    plaintext: &[u8],
) -> Result<Vec<u8>, BarrierError> {
    let data_key = SecretKey::generate()?;
    let mut out = Vec::with_capacity(OVERHEAD + plaintext.len());
    out.extend_from_slice(&[FORMAT, algorithm.id(), id.kind as u8]);
    out.extend_from_slice(&term.number().0.to_be_bytes());
    let wrap_aad = wrap_aad(algorithm, term.number());
    crypto::seal_into(
        algorithm,
        term.key(),
        &wrap_aad,
        data_key.expose(),
        &mut out,
    )?;
    out.extend_from_slice(&generation.to_be_bytes());
    let value_aad = value_aad(algorithm, id, generation);
    crypto::seal_into(algorithm, &data_key, &value_aad, plaintext, &mut out)?;
    Ok(out)
}

/// Opens the stored bytes of record `id`; any mismatch is an integrity error.
pub fn open(
    keyring: &Keyring,
    id: &RecordId,
    bytes: &[u8],
) -> Result<(u64, Zeroizing<Vec<u8>>), BarrierError> {
    let integrity = || BarrierError::Integrity {
        record: id.to_string(),
    };
    let header = Header::parse(bytes).ok_or_else(integrity)?;
    if header.kind != id.kind as u8 {
        return Err(integrity());
    }
    let term = keyring.term(header.term).ok_or_else(integrity)?;
    let data_key = unwrap_data_key(header.algorithm, &term, bytes).ok_or_else(integrity)?;
    let value_aad = value_aad(header.algorithm, id, header.generation);
    let value = crypto::open(
        header.algorithm,
        &data_key,
        &value_aad,
        &bytes[HEADER_LEN..],
    )
    .map_err(|_| integrity())?;
    Ok((header.generation, value))
}

/// Replaces the wrap of the record's data key with one under `to`, leaving the value bytes as
/// they are. `None` if the record's term is unknown or its wrapped key does not open.
pub fn rewrap(keyring: &Keyring, bytes: &[u8], to: &Term) -> Option<Result<Vec<u8>, BarrierError>> {
    let header = Header::parse(bytes)?;
    let from = keyring.term(header.term)?;
    let data_key = unwrap_data_key(header.algorithm, &from, bytes)?;
    let mut out = Vec::with_capacity(bytes.len());
    out.extend_from_slice(&bytes[..TERM_AT]);
    out.extend_from_slice(&to.number().0.to_be_bytes());
    let wrap_aad = wrap_aad(header.algorithm, to.number());
    if let Err(e) = crypto::seal_into(
        header.algorithm,
        to.key(),
        &wrap_aad,
        data_key.expose(),
        &mut out,
    ) {
        return Some(Err(e.into()));
    }
    out.extend_from_slice(&bytes[GENERATION_AT..]);
    Some(Ok(out))
}

fn unwrap_data_key(algorithm: Algorithm, term: &Term, bytes: &[u8]) -> Option<SecretKey> {
    let wrapped = bytes.get(WRAPPED_AT..GENERATION_AT)?;
    let raw = crypto::open(
        algorithm,
        term.key(),
        &wrap_aad(algorithm, term.number()),
        wrapped,
    )
    .ok()?;
    SecretKey::from_slice(&raw)
}

fn wrap_aad(algorithm: Algorithm, term: KeyTerm) -> [u8; 16] {
    let mut aad = [0u8; 16];
    aad[..10].copy_from_slice(b"vaultd/dek");
    aad[10] = FORMAT;
    aad[11] = algorithm.id();
    aad[12..].copy_from_slice(&term.0.to_be_bytes());
    aad
}

fn value_aad(algorithm: Algorithm, id: &RecordId, generation: u64) -> Vec<u8> {
    let path = id.path.as_bytes();
    let mut aad = Vec::with_capacity(13 + 3 + 16 + 4 + path.len() + 16);
    aad.extend_from_slice(b"vaultd/record");
    aad.extend_from_slice(&[FORMAT, algorithm.id(), id.kind as u8]);
    aad.extend_from_slice(id.mount.as_bytes());
    // The path is at most MAX_PATH_LEN bytes, far below u32::MAX.
    aad.extend_from_slice(&(path.len() as u32).to_be_bytes());
    aad.extend_from_slice(path);
    aad.extend_from_slice(&id.version.to_be_bytes());
    aad.extend_from_slice(&generation.to_be_bytes());
    aad
}
