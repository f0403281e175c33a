//! Hashing, message authentication, key derivation and randomness, all from `ring`.

use ring::rand::{SecureRandom, SystemRandom};
use ring::{digest, hkdf, hmac};

use super::CryptoError;

/// Fills `out` from the operating system's CSPRNG (`getrandom(2)` on Linux).
pub fn fill_random(out: &mut [u8]) -> Result<(), CryptoError> {
    SystemRandom::new()
        .fill(out)
        .map_err(|_| CryptoError::Random)
}

/// SHA-256 of `data` ([FIPS 180-4]).
///
/// [FIPS 180-4]: https://doi.org/10.6028/NIST.FIPS.180-4
pub fn sha256(data: &[u8]) -> [u8; 32] {
    let mut out = [0u8; 32];
    out.copy_from_slice(digest::digest(&digest::SHA256, data).as_ref());
    out
}

/// HMAC-SHA256 of `data` under `key` ([RFC 2104]).
///
/// [RFC 2104]: https://www.rfc-editor.org/rfc/rfc2104
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut out = [0u8; 32];
    out.copy_from_slice(hmac::sign(&key, data).as_ref());
    out
}

/// HKDF-SHA256 ([RFC 5869]): derives `out.len()` bytes (at most 8160) from input keying
/// material, a salt and a context string.
///
/// [RFC 5869]: https://www.rfc-editor.org/rfc/rfc5869
pub fn hkdf_sha256(
    ikm: &[u8],
    salt: &[u8],
    info: &[u8],
    out: &mut [u8],
) -> Result<(), CryptoError> {
    struct Len(usize);
    impl hkdf::KeyType for Len {
        fn len(&self) -> usize {
            self.0
        }
    }

    let info = [info];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, salt).extract(ikm);
    let okm = prk
        .expand(&info, Len(out.len()))
        .map_err(|_| CryptoError::TooLong)?;
    okm.fill(out).map_err(|_| CryptoError::TooLong)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unhex(s: &str) -> Vec<u8> {
        hex::decode(s).unwrap()
    }

    #[test]
    fn sha256_known_answer() {
        assert_eq!(
            hex::encode(sha256(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    /// RFC 4231, test case 2.
    #[test]
    fn hmac_sha256_known_answer() {
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    /// RFC 5869, test case 1.
    #[test]
    fn hkdf_sha256_known_answer() {
        let mut okm = [0u8; 42];
        hkdf_sha256(
            &unhex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b"),
            &unhex("000102030405060708090a0b0c"),
            &unhex("f0f1f2f3f4f5f6f7f8f9"),
            &mut okm,
        )
        .unwrap();
        assert_eq!(
            hex::encode(okm),
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        );
        let mut too_long = vec![0u8; 255 * 32 + 1];
        assert!(hkdf_sha256(b"k", b"", b"", &mut too_long).is_err());
    }

    #[test]
    fn random_is_not_constant() {
        let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
        fill_random(&mut a).unwrap();
        fill_random(&mut b).unwrap();
        assert_ne!(a, b);
    }
}
