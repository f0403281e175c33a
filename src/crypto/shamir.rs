//! Shamir secret sharing over GF(2^8) for unseal keys.
//!
//! The arithmetic is `blahaj`'s (field polynomial x^8 + x^4 + x^3 + x^2 + 1, 0x11d). An
//! encoded share is laid out as Vault lays out its unseal keys: the 32 evaluated bytes followed
//! by one byte for the x coordinate, so a share is 33 bytes (66 hex digits). With a single share
//! there is no splitting and the share is the 32-byte unseal key itself, again as in Vault.

use std::collections::BTreeSet;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use blahaj::{Share, Sharks};
use zeroize::{Zeroize, Zeroizing};

use super::{CryptoError, KEY_LEN, SecretKey};

/// Length in bytes of an encoded share when the unseal key is split.
pub const SHARE_LEN: usize = KEY_LEN + 1;

/// One unseal share. Zeroized on drop; no `Debug`.
pub struct UnsealShare(Zeroizing<Vec<u8>>);

impl UnsealShare {
    /// Parses a share typed by an operator: hex (as `init` prints it) or standard base64.
    /// Surrounding white space is ignored.
    pub fn parse(text: &str) -> Result<Self, CryptoError> {
        let text = text.trim();
        let bytes = match hex::decode(text) {
            Ok(bytes) => Zeroizing::new(bytes),
            Err(_) => Zeroizing::new(
                BASE64
                    .decode(text)
                    .map_err(|_| CryptoError::Shares("unseal share is neither hex nor base64"))?,
            ),
        };
        if bytes.len() != KEY_LEN && bytes.len() != SHARE_LEN {
            return Err(CryptoError::Shares(
                "unseal share has the wrong length: expected 32 or 33 bytes",
            ));
        }
        Ok(UnsealShare(bytes))
    }

    /// The share as lowercase hex, the form `init` returns in `keys`.
    pub fn to_hex(&self) -> String {
        hex::encode(&*self.0)
    }

    /// The share as standard base64, the form `init` returns in `keys_base64`.
    pub fn to_base64(&self) -> String {
        BASE64.encode(&*self.0)
    }

    /// The raw bytes of the share.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

/// Splits `secret` into `shares` shares of which any `threshold` recover it.
///
/// Requires `1 <= threshold <= shares`, and `threshold >= 2` whenever `shares > 1`: a
/// threshold of one with several shares would only make copies of the key.
pub fn split(
    secret: &SecretKey,
    shares: u8,
    threshold: u8,
) -> Result<Vec<UnsealShare>, CryptoError> {
    check_parameters(shares, threshold)?;
    if shares == 1 {
        return Ok(vec![UnsealShare(Zeroizing::new(secret.expose().to_vec()))]);
    }
    let dealer = Sharks(threshold).dealer(secret.expose());
    Ok(dealer
        .take(usize::from(shares))
        .map(|share| {
            let mut raw = Zeroizing::new(Vec::<u8>::from(&share));
            // blahaj writes x first; store it last, as Vault does.
            raw.rotate_left(1);
            UnsealShare(raw)
        })
        .collect())
}

/// Recovers the secret from at least `threshold` distinct shares.
///
/// Fewer shares, repeated shares, or shares of different lengths are refused. Shares from
/// another split, or corrupted ones, combine to a wrong key without any error here: the caller
/// finds out when that key fails to open what it protects.
pub fn combine(shares: &[UnsealShare], threshold: u8) -> Result<SecretKey, CryptoError> {
    if threshold == 1 {
        let [share] = shares else {
            return Err(CryptoError::Shares("expected exactly one unseal share"));
        };
        return SecretKey::from_slice(share.as_bytes())
            .ok_or(CryptoError::Shares("unseal key must be 32 bytes"));
    }
    if shares.len() < usize::from(threshold) {
        return Err(CryptoError::Shares("not enough unseal shares"));
    }
    let mut seen = BTreeSet::new();
    let mut parsed = Vec::with_capacity(shares.len());
    for share in shares {
        let bytes = share.as_bytes();
        if bytes.len() != SHARE_LEN {
            return Err(CryptoError::Shares("unseal share must be 33 bytes"));
        }
        let x = bytes[KEY_LEN];
        if x == 0 || !seen.insert(x) {
            return Err(CryptoError::Shares("unseal shares must be distinct"));
        }
        let mut encoded = Zeroizing::new(Vec::with_capacity(SHARE_LEN));
        encoded.push(x);
        encoded.extend_from_slice(&bytes[..KEY_LEN]);
        let share = Share::try_from(encoded.as_slice()).map_err(CryptoError::Shares)?;
        parsed.push(share);
    }
    let mut secret = Sharks(threshold)
        .recover(&parsed)
        .map_err(|_| CryptoError::Shares("unseal shares could not be combined"))?;
    let key = SecretKey::from_slice(&secret);
    secret.zeroize();
    key.ok_or(CryptoError::Shares("unseal shares could not be combined"))
}

/// Checks share and threshold counts as `init` accepts them.
pub fn check_parameters(shares: u8, threshold: u8) -> Result<(), CryptoError> {
    if threshold == 0 || shares == 0 {
        return Err(CryptoError::Shares(
            "shares and threshold must be at least 1",
        ));
    }
    if threshold > shares {
        return Err(CryptoError::Shares(
            "threshold cannot exceed the number of shares",
        ));
    }
    if shares > 1 && threshold < 2 {
        return Err(CryptoError::Shares(
            "threshold must be at least 2 when there are several shares",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// Multiplication in GF(2^8) modulo 0x11d, written independently of blahaj's tables.
    fn gf_mul(mut a: u8, mut b: u8) -> u8 {
        let mut product = 0u8;
        while b != 0 {
            if b & 1 != 0 {
                product ^= a;
            }
            let carry = a & 0x80 != 0;
            a <<= 1;
            if carry {
                a ^= 0x1d;
            }
            b >>= 1;
        }
        product
    }

    /// Evaluates a polynomial, lowest coefficient first, at `x`.
    fn eval(coefficients: &[u8], x: u8) -> u8 {
        coefficients
            .iter()
            .rev()
            .fold(0, |acc, &c| gf_mul(acc, x) ^ c)
    }

    fn share_of(y: &[u8], x: u8) -> UnsealShare {
        let mut raw = y.to_vec();
        raw.push(x);
        UnsealShare(Zeroizing::new(raw))
    }

    /// A share worked out by hand: f(x) = 0x53 + 0xca·x gives f(1) = 0x99 and
    /// f(2) = 0x53 ^ (0xca·2 mod 0x11d) = 0x53 ^ 0x89 = 0xda.
    #[test]
    fn known_answer_by_hand() {
        assert_eq!(gf_mul(0xca, 2), 0x89);
        let secret = [0x53u8; KEY_LEN];
        let shares = [share_of(&[0x99; KEY_LEN], 1), share_of(&[0xda; KEY_LEN], 2)];
        assert_eq!(combine(&shares, 2).unwrap().expose(), &secret);
    }

    /// Shares computed by our own field arithmetic for fixed polynomials combine to the secret.
    #[test]
    fn known_answer_from_reference_arithmetic() {
        let secret: [u8; KEY_LEN] = std::array::from_fn(|i| i as u8 * 7 + 1);
        let polys: Vec<[u8; 3]> = secret
            .iter()
            .map(|&s| [s, s ^ 0x5a, s.wrapping_mul(3)])
            .collect();
        let shares: Vec<UnsealShare> = [3u8, 7, 200]
            .iter()
            .map(|&x| {
                let y: Vec<u8> = polys.iter().map(|p| eval(p, x)).collect();
                share_of(&y, x)
            })
            .collect();
        assert_eq!(combine(&shares, 3).unwrap().expose(), &secret);
    }

    /// The shares blahaj deals lie on polynomials of degree threshold-1 in our reference field.
    #[test]
    fn dealt_shares_match_reference_interpolation() {
        let secret = SecretKey::generate().unwrap();
        let shares = split(&secret, 5, 2).unwrap();
        for i in 0..KEY_LEN {
            let (a, b) = (shares[0].as_bytes(), shares[1].as_bytes());
            let (xa, xb) = (a[KEY_LEN], b[KEY_LEN]);
            // Linear polynomial through two points: f(0) = (ya·xb - yb·xa) / (xb - xa); in
            // characteristic 2 subtraction is XOR, and dividing by d is multiplying by d^254.
            let d = xa ^ xb;
            let mut inv = 1u8;
            for _ in 0..254 {
                inv = gf_mul(inv, d);
            }
            let f0 = gf_mul(gf_mul(a[i], xb) ^ gf_mul(b[i], xa), inv);
            assert_eq!(f0, secret.expose()[i]);
        }
    }

    #[test]
    fn parameters_are_checked() {
        let secret = SecretKey::generate().unwrap();
        for (n, t) in [(0, 0), (1, 0), (3, 4), (3, 1), (0, 1)] {
            assert!(split(&secret, n, t).is_err(), "{n}/{t} accepted");
        }
        for (n, t) in [(1, 1), (2, 2), (5, 3), (255, 255)] {
            assert_eq!(split(&secret, n, t).unwrap().len(), usize::from(n));
        }
    }

    #[test]
    fn single_share_is_the_key() {
        let secret = SecretKey::generate().unwrap();
        let shares = split(&secret, 1, 1).unwrap();
        assert_eq!(shares[0].as_bytes(), secret.expose());
        assert_eq!(combine(&shares, 1).unwrap().expose(), secret.expose());
    }

    #[test]
    fn duplicates_and_short_sets_are_refused() {
        let secret = SecretKey::generate().unwrap();
        let shares = split(&secret, 3, 2).unwrap();
        let again = UnsealShare::parse(&shares[0].to_hex()).unwrap();
        assert!(
            combine(
                &[UnsealShare::parse(&shares[0].to_hex()).unwrap(), again],
                2
            )
            .is_err()
        );
        assert!(combine(&shares[..1], 2).is_err());
    }

    #[test]
    fn parse_accepts_hex_and_base64() {
        let secret = SecretKey::generate().unwrap();
        let share = &split(&secret, 3, 2).unwrap()[0];
        assert_eq!(
            UnsealShare::parse(&share.to_hex()).unwrap().as_bytes(),
            share.as_bytes()
        );
        let spaced = format!("  {}\n", share.to_base64());
        assert_eq!(
            UnsealShare::parse(&spaced).unwrap().as_bytes(),
            share.as_bytes()
        );
        assert!(UnsealShare::parse("not a share").is_err());
        assert!(UnsealShare::parse("abcd").is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        #[test]
        fn split_combine_round_trip(
            n in 2u8..=12,
            t_seed in any::<u8>(),
            order_seed in any::<u64>(),
        ) {
            let t = 2 + t_seed % (n - 1);
            let secret = SecretKey::generate().unwrap();
            let mut shares = split(&secret, n, t).unwrap();
            // Any t of the n shares, in any order, recover the key.
            let mut seed = order_seed;
            for i in (1..shares.len()).rev() {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                shares.swap(i, (seed >> 33) as usize % (i + 1));
            }
            let chosen = &shares[..usize::from(t)];
            let combined = combine(chosen, t).unwrap();
            prop_assert_eq!(combined.expose(), secret.expose());
            // With one share fewer the threshold check refuses; forcing a lower threshold
            // interpolates the wrong polynomial.
            prop_assert!(combine(&shares[..usize::from(t) - 1], t).is_err());
            if t > 2 {
                let wrong = combine(&shares[..usize::from(t) - 1], t - 1).unwrap();
                prop_assert_ne!(wrong.expose(), secret.expose());
            }
        }
    }
}
