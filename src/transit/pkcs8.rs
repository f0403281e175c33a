//! The PKCS#8 documents ring makes for signing keys, taken apart and put together again.
//!
//! ring writes one fixed layout per curve (RFC 5958 v2 for Ed25519, RFC 5915 inside PKCS#8
//! for P-256), so the private and public parts sit at fixed offsets. Export and backup need
//! the parts; restore builds a document from them and lets ring check that they belong
//! together.

use zeroize::Zeroizing;

/// `SEQUENCE { 1, SEQUENCE { id-Ed25519 }, OCTET STRING { OCTET STRING` — the seed follows.
const ED25519_PREFIX: [u8; 16] = [
    0x30, 0x51, 0x02, 0x01, 0x01, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];
/// `[1] BIT STRING` — the public key follows.
const ED25519_PUBLIC: [u8; 3] = [0x81, 0x21, 0x00];

/// `SEQUENCE { 0, SEQUENCE { id-ecPublicKey, prime256v1 }, OCTET STRING { SEQUENCE { 1,
/// OCTET STRING` — the scalar follows.
const P256_PREFIX: [u8; 36] = [
    0x30, 0x81, 0x87, 0x02, 0x01, 0x00, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02,
    0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x04, 0x6d, 0x30, 0x6b, 0x02,
    0x01, 0x01, 0x04, 0x20,
];
/// `[1] BIT STRING` — the uncompressed point follows.
const P256_PUBLIC: [u8; 5] = [0xa1, 0x44, 0x03, 0x42, 0x00];

/// The private and public halves of a signing key.
pub(super) struct Parts {
    /// The Ed25519 seed or the P-256 scalar: 32 bytes.
    pub(super) private: Zeroizing<Vec<u8>>,
    /// The Ed25519 public key (32 bytes) or the uncompressed P-256 point (65 bytes).
    pub(super) public: Vec<u8>,
}

impl Parts {
    /// `private ‖ public`: for Ed25519 the 64-byte form Go and Vault call the private key.
    pub(super) fn joined(&self) -> Zeroizing<Vec<u8>> {
        let mut raw = Zeroizing::new(Vec::with_capacity(self.private.len() + self.public.len()));
        raw.extend_from_slice(&self.private);
        raw.extend_from_slice(&self.public);
        raw
    }
}

/// The parts of an Ed25519 document, or `None` if it is not ring's layout.
pub(super) fn ed25519_parts(document: &[u8]) -> Option<Parts> {
    split(document, &ED25519_PREFIX, &ED25519_PUBLIC, 32)
}

/// The parts of a P-256 document, or `None` if it is not ring's layout.
pub(super) fn p256_parts(document: &[u8]) -> Option<Parts> {
    split(document, &P256_PREFIX, &P256_PUBLIC, 65)
}

/// An Ed25519 document from a 32-byte seed and public key. The parts are not checked
/// against each other here: ring does that when it loads the document.
pub(super) fn ed25519_document(seed: &[u8], public: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    join(&ED25519_PREFIX, seed, &ED25519_PUBLIC, public, 32)
}

/// A P-256 document from a 32-byte scalar and a 65-byte uncompressed point, checked by ring
/// when it is loaded.
pub(super) fn p256_document(scalar: &[u8], point: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    join(&P256_PREFIX, scalar, &P256_PUBLIC, point, 65)
}

fn split(document: &[u8], prefix: &[u8], middle: &[u8], public_len: usize) -> Option<Parts> {
    let rest = document.strip_prefix(prefix)?;
    let (private, rest) = rest.split_at_checked(32)?;
    let public = rest.strip_prefix(middle)?;
    (public.len() == public_len).then(|| Parts {
        private: Zeroizing::new(private.to_vec()),
        public: public.to_vec(),
    })
}

fn join(
    prefix: &[u8],
    private: &[u8],
    middle: &[u8],
    public: &[u8],
    public_len: usize,
) -> Option<Zeroizing<Vec<u8>>> {
    if private.len() != 32 || public.len() != public_len {
        return None;
    }
    let mut document = Zeroizing::new(Vec::with_capacity(
        prefix.len() + 32 + middle.len() + public_len,
    ));
    for part in [prefix, private, middle, public] {
        document.extend_from_slice(part);
    }
    Some(document)
}

#[cfg(test)]
mod tests {
    use ring::rand::SystemRandom;
    use ring::signature::{
        ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair, KeyPair as _,
    };

    use super::*;

    #[test]
    fn ring_documents_split_and_join_back() {
        let rng = SystemRandom::new();
        let ed = Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let parts = ed25519_parts(ed.as_ref()).unwrap();
        let pair = Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap();
        assert_eq!(parts.public, pair.public_key().as_ref());
        assert_eq!(
            &ed25519_document(&parts.private, &parts.public).unwrap()[..],
            ed.as_ref()
        );

        let alg = &ECDSA_P256_SHA256_ASN1_SIGNING;
        let ec = EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap();
        let parts = p256_parts(ec.as_ref()).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(alg, ec.as_ref(), &rng).unwrap();
        assert_eq!(parts.public, pair.public_key().as_ref());
        assert_eq!(
            &p256_document(&parts.private, &parts.public).unwrap()[..],
            ec.as_ref()
        );
    }

    #[test]
    fn mismatched_halves_are_refused_by_ring() {
        let rng = SystemRandom::new();
        let a = ed25519_parts(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
        let b = ed25519_parts(Ed25519KeyPair::generate_pkcs8(&rng).unwrap().as_ref()).unwrap();
        let mixed = ed25519_document(&a.private, &b.public).unwrap();
        assert!(Ed25519KeyPair::from_pkcs8(&mixed).is_err());

        let alg = &ECDSA_P256_SHA256_ASN1_SIGNING;
        let a = p256_parts(EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap().as_ref()).unwrap();
        let b = p256_parts(EcdsaKeyPair::generate_pkcs8(alg, &rng).unwrap().as_ref()).unwrap();
        let mixed = p256_document(&a.private, &b.public).unwrap();
        assert!(EcdsaKeyPair::from_pkcs8(alg, &mixed, &rng).is_err());
    }

    #[test]
    fn other_layouts_and_lengths_are_refused() {
        assert!(ed25519_parts(b"not a document").is_none());
        assert!(p256_parts(&[]).is_none());
        assert!(ed25519_document(&[0; 31], &[0; 32]).is_none());
        assert!(p256_document(&[0; 32], &[0; 64]).is_none());
    }
}
