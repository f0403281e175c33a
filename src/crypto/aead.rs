//! AES-256-GCM and ChaCha20-Poly1305 behind one small interface.
//!
//! A sealed message is `nonce (12 bytes) ‖ ciphertext ‖ tag (16 bytes)`. Nonces are drawn from
//! the operating system's CSPRNG for every message; with 96-bit random nonces a single key
//! must not seal more than about 2^32 messages, which is why the keyring counts the data keys
//! each key term wraps and rotates well before that (see `keyring`).

use std::fmt;
use std::str::FromStr;

use aes_gcm::Aes256Gcm;
use aes_gcm::aead::{AeadInOut, KeyInit, Tag};
use chacha20poly1305::{ChaCha20Poly1305, XChaCha20Poly1305};
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{CryptoError, fill_random};

/// Length in bytes of every symmetric key.
pub const KEY_LEN: usize = 32;
/// Length in bytes of a nonce.
pub const NONCE_LEN: usize = 12;
/// Length in bytes of an authentication tag.
pub const TAG_LEN: usize = 16;
/// Bytes a sealed message adds to its plaintext.
pub const OVERHEAD: usize = NONCE_LEN + TAG_LEN;
/// Length in bytes of an XChaCha20-Poly1305 nonce.
pub const XNONCE_LEN: usize = 24;

/// An AEAD algorithm, identified on disk by one byte.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Algorithm {
    /// AES-256 in Galois/Counter Mode ([NIST SP 800-38D]), the default.
    ///
    /// [NIST SP 800-38D]: https://doi.org/10.6028/NIST.SP.800-38D
    #[default]
    Aes256Gcm,
    /// ChaCha20 with Poly1305 ([RFC 8439]).
    ///
    /// [RFC 8439]: https://www.rfc-editor.org/rfc/rfc8439
    ChaCha20Poly1305,
}

impl Algorithm {
    /// The byte that names this algorithm in stored records.
    pub fn id(self) -> u8 {
        match self {
            Algorithm::Aes256Gcm => 1,
            Algorithm::ChaCha20Poly1305 => 2,
        }
    }

    /// The algorithm a stored byte names, if any.
    pub fn from_id(id: u8) -> Option<Self> {
        match id {
            1 => Some(Algorithm::Aes256Gcm),
            2 => Some(Algorithm::ChaCha20Poly1305),
            _ => None,
        }
    }

    /// The name used in configuration, as Vault's transit spells it.
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Aes256Gcm => "aes256-gcm96",
            Algorithm::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Algorithm {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "aes256-gcm96" | "aes256-gcm" | "aes-256-gcm" => Ok(Algorithm::Aes256Gcm),
            "chacha20-poly1305" => Ok(Algorithm::ChaCha20Poly1305),
            other => Err(format!(
                "unknown AEAD algorithm {other:?}: expected \"aes256-gcm96\" or \"chacha20-poly1305\""
            )),
        }
    }
}

/// A 256-bit symmetric key. Zeroized on drop; deliberately has no `Debug` or `Clone`.
#[derive(Zeroize, ZeroizeOnDrop)]
pub struct SecretKey([u8; KEY_LEN]);

impl SecretKey {
    /// A fresh key from the operating system's CSPRNG.
    pub fn generate() -> Result<Self, CryptoError> {
        let mut key = SecretKey([0; KEY_LEN]);
        fill_random(&mut key.0)?;
        Ok(key)
    }

    /// Takes ownership of raw key bytes. The caller should zeroize its own copies.
    pub fn from_bytes(bytes: [u8; KEY_LEN]) -> Self {
        SecretKey(bytes)
    }

    /// Copies a key out of a slice, which must be exactly [`KEY_LEN`] bytes.
    pub fn from_slice(bytes: &[u8]) -> Option<Self> {
        let mut key = SecretKey([0; KEY_LEN]);
        if bytes.len() != KEY_LEN {
            return None;
        }
        key.0.copy_from_slice(bytes);
        Some(key)
    }

    /// The raw key bytes, for wrapping or splitting. Never log or return them.
    pub fn expose(&self) -> &[u8; KEY_LEN] {
        &self.0
    }
}

/// Seals `plaintext` under `key`, binding `aad`, and returns `nonce ‖ ciphertext ‖ tag`.
pub fn seal(
    algorithm: Algorithm,
    key: &SecretKey,
    aad: &[u8],
    plaintext: &[u8],
) -> Result<Vec<u8>, CryptoError> {
    let mut out = Vec::with_capacity(plaintext.len() + OVERHEAD);
    seal_into(algorithm, key, aad, plaintext, &mut out)?;
    Ok(out)
}

/// Like [`seal`], but appends the sealed message to `out`, so a record's header and its
/// ciphertext can share one buffer.
pub fn seal_into(
    algorithm: Algorithm,
    key: &SecretKey,
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let mut nonce = [0u8; NONCE_LEN];
    fill_random(&mut nonce)?;
    seal_with_nonce(algorithm, key, &nonce, aad, plaintext, out)
}

/// Opens a message made by [`seal`]. The plaintext is zeroized when dropped.
pub fn open(
    algorithm: Algorithm,
    key: &SecretKey,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < OVERHEAD {
        return Err(CryptoError::Truncated(sealed.len()));
    }
    let (nonce, rest) = sealed.split_at(NONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    let mut nonce_bytes = [0u8; NONCE_LEN];
    nonce_bytes.copy_from_slice(nonce);
    open_detached(algorithm, key, &nonce_bytes, aad, ciphertext, tag)
}

/// Seals with XChaCha20-Poly1305, whose 192-bit random nonces cannot collide in practice:
/// `nonce (24 bytes) ‖ ciphertext ‖ tag`. Only transit keys of that type use it; stored
/// records keep to [`Algorithm`].
pub fn xchacha_seal(key: &SecretKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, CryptoError> {
    let mut nonce = [0u8; XNONCE_LEN];
    fill_random(&mut nonce)?;
    let mut out = Vec::with_capacity(XNONCE_LEN + plaintext.len() + TAG_LEN);
    seal_generic(
        &XChaCha20Poly1305::new(key.expose().into()),
        &nonce,
        aad,
        plaintext,
        &mut out,
    )?;
    Ok(out)
}

/// Opens a message made by [`xchacha_seal`].
pub fn xchacha_open(
    key: &SecretKey,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    if sealed.len() < XNONCE_LEN + TAG_LEN {
        return Err(CryptoError::Truncated(sealed.len()));
    }
    let (nonce, rest) = sealed.split_at(XNONCE_LEN);
    let (ciphertext, tag) = rest.split_at(rest.len() - TAG_LEN);
    open_generic(
        &XChaCha20Poly1305::new(key.expose().into()),
        nonce,
        aad,
        ciphertext,
        tag,
    )
}

/// Seals with a caller-chosen nonce. Only known-answer tests may choose nonces: reusing a nonce
/// under one key destroys both confidentiality and integrity.
pub(crate) fn seal_with_nonce(
    algorithm: Algorithm,
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    match algorithm {
        Algorithm::Aes256Gcm => seal_generic(
            &Aes256Gcm::new(key.expose().into()),
            nonce,
            aad,
            plaintext,
            out,
        ),
        Algorithm::ChaCha20Poly1305 => seal_generic(
            &ChaCha20Poly1305::new(key.expose().into()),
            nonce,
            aad,
            plaintext,
            out,
        ),
    }
}

/// Opens a ciphertext whose nonce and tag are given apart from it.
pub(crate) fn open_detached(
    algorithm: Algorithm,
    key: &SecretKey,
    nonce: &[u8; NONCE_LEN],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    match algorithm {
        Algorithm::Aes256Gcm => open_generic(
            &Aes256Gcm::new(key.expose().into()),
            nonce,
            aad,
            ciphertext,
            tag,
        ),
        Algorithm::ChaCha20Poly1305 => open_generic(
            &ChaCha20Poly1305::new(key.expose().into()),
            nonce,
            aad,
            ciphertext,
            tag,
        ),
    }
}

fn seal_generic<A: AeadInOut>(
    cipher: &A,
    nonce: &[u8],
    aad: &[u8],
    plaintext: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), CryptoError> {
    let start = out.len();
    out.extend_from_slice(nonce);
    out.extend_from_slice(plaintext);
    let body = &mut out[start + nonce.len()..];
    let Ok(nonce) = nonce[..].try_into() else {
        return Err(CryptoError::TooLong);
    };
    match cipher.encrypt_inout_detached(nonce, aad, body.into()) {
        Ok(tag) => {
            out.extend_from_slice(&tag);
            Ok(())
        }
        Err(_) => {
            // Never leave plaintext behind in the caller's buffer.
            out[start..].zeroize();
            out.truncate(start);
            Err(CryptoError::TooLong)
        }
    }
}

fn open_generic<A: AeadInOut>(
    cipher: &A,
    nonce: &[u8],
    aad: &[u8],
    ciphertext: &[u8],
    tag: &[u8],
) -> Result<Zeroizing<Vec<u8>>, CryptoError> {
    let Ok(tag) = Tag::<A>::try_from(tag) else {
        return Err(CryptoError::Authentication);
    };
    let Ok(nonce) = nonce[..].try_into() else {
        return Err(CryptoError::Authentication);
    };
    let mut buffer = Zeroizing::new(ciphertext.to_vec());
    cipher
        .decrypt_inout_detached(nonce, aad, buffer.as_mut_slice().into(), &tag)
        .map_err(|_| CryptoError::Authentication)?;
    Ok(buffer)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    const ALGORITHMS: [Algorithm; 2] = [Algorithm::Aes256Gcm, Algorithm::ChaCha20Poly1305];

    #[test]
    fn algorithm_ids_round_trip() {
        for algorithm in ALGORITHMS {
            assert_eq!(Algorithm::from_id(algorithm.id()), Some(algorithm));
            assert_eq!(algorithm.name().parse::<Algorithm>(), Ok(algorithm));
        }
        assert_eq!(Algorithm::from_id(0), None);
        assert!("aes128-gcm96".parse::<Algorithm>().is_err());
    }

    #[test]
    fn xchacha_round_trip_and_refusals() {
        let key = SecretKey::generate().unwrap();
        let sealed = xchacha_seal(&key, b"aad", b"message").unwrap();
        assert_eq!(sealed.len(), XNONCE_LEN + 7 + TAG_LEN);
        assert_eq!(&*xchacha_open(&key, b"aad", &sealed).unwrap(), b"message");
        let other = SecretKey::generate().unwrap();
        assert!(xchacha_open(&other, b"aad", &sealed).is_err());
        assert!(xchacha_open(&key, b"aaD", &sealed).is_err());
        let mut tampered = sealed.clone();
        tampered[XNONCE_LEN] ^= 1;
        assert!(xchacha_open(&key, b"aad", &tampered).is_err());
        assert!(xchacha_open(&key, b"aad", &sealed[..XNONCE_LEN + TAG_LEN - 1]).is_err());
    }

    #[test]
    fn wrong_key_or_aad_fails() {
        for algorithm in ALGORITHMS {
            let key = SecretKey::generate().unwrap();
            let other = SecretKey::generate().unwrap();
            let sealed = seal(algorithm, &key, b"aad", b"message").unwrap();
            assert_eq!(
                &*open(algorithm, &key, b"aad", &sealed).unwrap(),
                b"message"
            );
            assert_eq!(
                open(algorithm, &other, b"aad", &sealed).unwrap_err(),
                CryptoError::Authentication
            );
            assert_eq!(
                open(algorithm, &key, b"aaD", &sealed).unwrap_err(),
                CryptoError::Authentication
            );
            assert_eq!(
                open(algorithm, &key, b"aad", &sealed[..OVERHEAD - 1]).unwrap_err(),
                CryptoError::Truncated(OVERHEAD - 1)
            );
        }
    }

    #[test]
    fn the_algorithms_are_not_interchangeable() {
        let key = SecretKey::generate().unwrap();
        let sealed = seal(Algorithm::Aes256Gcm, &key, b"", b"message").unwrap();
        assert!(open(Algorithm::ChaCha20Poly1305, &key, b"", &sealed).is_err());
    }

    #[test]
    fn nonces_are_fresh() {
        let key = SecretKey::generate().unwrap();
        let a = seal(Algorithm::Aes256Gcm, &key, b"", b"same").unwrap();
        let b = seal(Algorithm::Aes256Gcm, &key, b"", b"same").unwrap();
        assert_ne!(a[..NONCE_LEN], b[..NONCE_LEN]);
        assert_ne!(a, b);
    }

    proptest! {
        #[test]
        fn seal_open_round_trip(
            use_chacha in any::<bool>(),
            key in any::<[u8; KEY_LEN]>(),
            aad in proptest::collection::vec(any::<u8>(), 0..64),
            plaintext in proptest::collection::vec(any::<u8>(), 0..4096),
        ) {
            let algorithm = if use_chacha { Algorithm::ChaCha20Poly1305 } else { Algorithm::Aes256Gcm };
            let key = SecretKey::from_bytes(key);
            let sealed = seal(algorithm, &key, &aad, &plaintext).unwrap();
            prop_assert_eq!(sealed.len(), plaintext.len() + OVERHEAD);
            let opened = open(algorithm, &key, &aad, &sealed).unwrap();
            prop_assert_eq!(&opened[..], &plaintext[..]);
        }
    }

    /// Project Wycheproof's vectors for the two AEADs, restricted to the shapes this interface
    /// accepts (256-bit keys, 96-bit nonces, 128-bit tags).
    #[test]
    fn wycheproof_vectors() {
        use wycheproof::aead::{TestName, TestSet};

        for (name, algorithm) in [
            (TestName::AesGcm, Algorithm::Aes256Gcm),
            (TestName::ChaCha20Poly1305, Algorithm::ChaCha20Poly1305),
        ] {
            let set = TestSet::load(name).unwrap();
            let mut checked = 0;
            for group in set.test_groups {
                if group.key_size != 256 || group.nonce_size != 96 || group.tag_size != 128 {
                    continue;
                }
                for test in group.tests {
                    let key = SecretKey::from_slice(&test.key).unwrap();
                    let nonce: [u8; NONCE_LEN] = test.nonce[..].try_into().unwrap();
                    let opened =
                        open_detached(algorithm, &key, &nonce, &test.aad, &test.ct, &test.tag);
                    let mut sealed = Vec::new();
                    seal_with_nonce(algorithm, &key, &nonce, &test.aad, &test.pt, &mut sealed)
                        .unwrap();
                    let expected: Vec<u8> = [&test.nonce[..], &test.ct[..], &test.tag[..]].concat();
                    if test.result.must_fail() {
                        assert!(opened.is_err(), "{algorithm} tcId {} opened", test.tc_id);
                    } else {
                        assert_eq!(&opened.unwrap()[..], &test.pt[..], "tcId {}", test.tc_id);
                        assert_eq!(sealed, expected, "{algorithm} tcId {}", test.tc_id);
                    }
                    checked += 1;
                }
            }
            assert!(checked > 50, "only {checked} {algorithm} vectors applied");
        }
    }
}
