//! Bring your own key: keys made outside the vault, imported wrapped the way Vault's transit
//! engine takes them (`wrapping_key`, `keys/:name/import`, `keys/:name/import_version`).
//!
//! Each mount has a wrapping key, an RSA-4096 key pair made on first use and kept in the
//! barrier; `wrapping_key` gives out its public half. A client wraps the key it imports with
//! a fresh 256-bit AES key (AES key wrap with padding, RFC 5649), encrypts that AES key to
//! the wrapping key with RSA-OAEP (RFC 8017), and sends `base64(oaep ‖ kwp)`. RSA and the key
//! wrap come from aws-lc-rs, whose RSA decryption is constant-time; ring has no RSA
//! decryption. Every way an unwrap can fail gives one and the same answer, so the endpoint
//! is no padding oracle.

use std::time::SystemTime;

use aws_lc_rs::encoding::{AsBigEndian as _, AsDer as _};
use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded as _};
use aws_lc_rs::rsa::{
    KeySize, OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384,
    OAEP_SHA512_MGF1SHA512, OaepAlgorithm, OaepPrivateDecryptingKey, PrivateDecryptingKey,
};
use aws_lc_rs::signature::{self as lc, KeyPair as _};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;
use zeroize::Zeroizing;

use super::{
    Kdf, KeyPolicy, KeyType, KeyVersion, TransitEngine, auto_rotate_period, check_name,
    keyed_fields, p256_public_pem, pkcs8,
};
use crate::api::{ApiError, Fields, Request, Response};
use crate::barrier::{Expect, MountId, RecordId, RecordKind};

/// The length of an RSA-4096 OAEP ciphertext, which leads the import ciphertext.
const WRAPPED_AES_KEY_LEN: usize = 512;

/// The answer to every failed unwrap.
const UNWRAP_FAILED: &str = "the ciphertext does not unwrap under this mount's wrapping key";

impl TransitEngine {
    /// `wrapping_key`: the mount's RSA-4096 wrapping key as a PEM public key.
    pub(super) fn wrapping_key(&self, mount: MountId) -> Result<Response, ApiError> {
        let key = self.wrapping_private_key(mount)?;
        let der = key
            .public_key()
            .as_der()
            .map_err(|_| ApiError::internal("cannot encode the wrapping key's public half"))?;
        let pem = super::pem("PUBLIC KEY", der.as_ref());
        Ok(Response::data(json!({ "public_key": &*pem })))
    }

    /// `keys/:name/import`: a new key whose first version is the unwrapped key. Like Vault,
    /// an imported key rotates only with `allow_rotation`, and a derived one derives with
    /// the HMAC-SHA256 counter KDF.
    pub(super) fn import_key(
        &self,
        mount: MountId,
        name: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        check_name(name)?;
        let mut fields = keyed_fields(request);
        if fields.value("convergent_encryption").is_some() {
            return Err(ApiError::vault_internal(
                "import cannot be used on keys with convergent encryption enabled",
            ));
        }
        let key_type = KeyType::parse(fields.string("type")?.as_deref().unwrap_or("aes256-gcm96"))?;
        let derived = fields.bool("derived")?.unwrap_or(false);
        let allow_rotation = fields.bool("allow_rotation")?.unwrap_or(false);
        let period = auto_rotate_period(fields.duration("auto_rotate_period")?)?.unwrap_or(0);
        if period > 0 && !allow_rotation {
            return Err(ApiError::vault_internal(
                "allow_rotation must be set to true if auto-rotation is enabled",
            ));
        }
        if derived && key_type.aead().is_none() {
            return Err(ApiError::bad_request(
                "key derivation is only supported for encryption keys",
            ));
        }
        let exportable = fields.bool("exportable")?.unwrap_or(false);
        let allow_plaintext_backup = fields.bool("allow_plaintext_backup")?.unwrap_or(false);
        let _ = fields.value("context");
        if self.policy(mount, name)?.is_some() {
            return Err(ApiError::vault_internal(
                "the import path cannot be used with an existing key; use import-version to rotate an existing imported key",
            ));
        }
        let raw = self.unwrap_field(mount, &mut fields)?;
        let material = imported_material(key_type, &raw, now)?;

        let policy = KeyPolicy {
            exportable,
            allow_plaintext_backup,
            auto_rotate_period: period,
            derived,
            kdf: if derived {
                Kdf::HmacSha256Counter
            } else {
                Kdf::default()
            },
            imported: true,
            allow_rotation,
            ..KeyPolicy::new(name, key_type)
        };
        self.put_with_version(mount, &policy, Expect::Absent, 1, &material)?;
        Ok(Response::empty())
    }

    /// `keys/:name/import_version`: the unwrapped key as the next version of an imported
    /// key.
    pub(super) fn import_version(
        &self,
        mount: MountId,
        name: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let Some((policy, generation)) = self.policy(mount, name)? else {
            return Err(ApiError::vault_internal(format!(
                "no key found with name {name}; to import a new key, use the import/ endpoint"
            )));
        };
        if !policy.imported {
            return Err(ApiError::vault_internal(
                "the import_version endpoint can only be used with an imported key",
            ));
        }
        let mut fields = keyed_fields(request);
        if fields.value("version").is_some() {
            return Err(ApiError::bad_request(
                "vaultd imports new versions only: 'version' updates a version imported as a public key, which vaultd does not import",
            ));
        }
        let raw = self.unwrap_field(mount, &mut fields)?;
        let material = imported_material(policy.key_type, &raw, now)?;
        self.add_version(mount, policy, generation, &material)?;
        Ok(Response::empty())
    }

    /// The key in the request's `ciphertext`, unwrapped with `hash_function`'s OAEP.
    fn unwrap_field(
        &self,
        mount: MountId,
        fields: &mut Fields<'_>,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let oaep = oaep_algorithm(fields.string("hash_function")?.as_deref())?;
        if fields.value("public_key").is_some() {
            return Err(ApiError::bad_request(
                "vaultd imports private keys only, wrapped in 'ciphertext', not a 'public_key'",
            ));
        }
        let text = Zeroizing::new(fields.string("ciphertext")?.ok_or_else(|| {
            ApiError::bad_request("'ciphertext' is required: the wrapped key to import")
        })?);
        let wrapped = BASE64
            .decode(text.trim())
            .map_err(|_| ApiError::bad_request("ciphertext is not base64"))?;
        if wrapped.len() <= WRAPPED_AES_KEY_LEN {
            return Err(ApiError::bad_request("provided ciphertext is too short"));
        }
        let (wrapped_aes_key, wrapped_key) = wrapped.split_at(WRAPPED_AES_KEY_LEN);
        let key = self.wrapping_private_key(mount)?;
        let oaep_key = OaepPrivateDecryptingKey::new(key)
            .map_err(|_| ApiError::internal("the wrapping key is not an OAEP key"))?;

        let mut aes_key = Zeroizing::new(vec![0u8; oaep_key.min_output_size()]);
        let aes_key = oaep_key
            .decrypt(oaep, wrapped_aes_key, &mut aes_key, None)
            .map_err(|_| ApiError::bad_request(UNWRAP_FAILED))?;
        if aes_key.len() != 32 {
            return Err(ApiError::bad_request(UNWRAP_FAILED));
        }
        let kek = AesKek::new(&AES_256, aes_key)
            .map_err(|_| ApiError::internal("cannot make an AES key-encryption key"))?;
        let mut out = Zeroizing::new(vec![0u8; wrapped_key.len()]);
        let len = kek
            .unwrap_with_padding(wrapped_key, &mut out)
            .map_err(|_| ApiError::bad_request(UNWRAP_FAILED))?
            .len();
        out.truncate(len);
        Ok(out)
    }

    /// The mount's wrapping key, made and stored on first use.
    fn wrapping_private_key(&self, mount: MountId) -> Result<PrivateDecryptingKey, ApiError> {
        let id = wrapping_key_id(mount)?;
        if let Some(record) = self.barrier.get(&id)? {
            return PrivateDecryptingKey::from_pkcs8(&record.value)
                .map_err(|_| ApiError::internal("the stored wrapping key does not parse"));
        }
        let key = PrivateDecryptingKey::generate(KeySize::Rsa4096)
            .map_err(|_| ApiError::internal("cannot make an RSA-4096 wrapping key"))?;
        let der = key
            .as_der()
            .map_err(|_| ApiError::internal("cannot encode the wrapping key"))?;
        let document = Zeroizing::new(der.as_ref().to_vec());
        match self.barrier.put(&id, &document, Expect::Absent) {
            Ok(_) => Ok(key),
            // Another request made one first: use that one.
            Err(crate::barrier::BarrierError::Conflict { .. }) => {
                let record = self
                    .barrier
                    .get(&id)?
                    .ok_or_else(|| ApiError::internal("the wrapping key vanished"))?;
                PrivateDecryptingKey::from_pkcs8(&record.value)
                    .map_err(|_| ApiError::internal("the stored wrapping key does not parse"))
            }
            Err(other) => Err(other.into()),
        }
    }
}

fn wrapping_key_id(mount: MountId) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::TransitKey,
        mount,
        "wrapping-key",
        0,
    )?)
}

/// The OAEP hash a request names, SHA256 by default. Go uses the same hash for MGF1.
fn oaep_algorithm(name: Option<&str>) -> Result<&'static OaepAlgorithm, ApiError> {
    match name.unwrap_or("SHA256").to_ascii_uppercase().as_str() {
        "SHA1" => Ok(&OAEP_SHA1_MGF1SHA1),
        "SHA256" => Ok(&OAEP_SHA256_MGF1SHA256),
        "SHA384" => Ok(&OAEP_SHA384_MGF1SHA384),
        "SHA512" => Ok(&OAEP_SHA512_MGF1SHA512),
        "SHA224" => Err(ApiError::bad_request(
            "hash_function SHA224 is not supported by vaultd: use SHA1, SHA256, SHA384 or SHA512",
        )),
        other => Err(ApiError::bad_request(format!(
            "unknown hash function: {other}"
        ))),
    }
}

/// A key version from imported bytes: the raw key for encryption and hmac keys, a PKCS#8
/// document (v1 or v2) for signing keys, as Vault takes them.
fn imported_material(
    key_type: KeyType,
    raw: &[u8],
    now: SystemTime,
) -> Result<KeyVersion, ApiError> {
    let invalid_size = || {
        ApiError::bad_request(format!(
            "invalid key size {} bytes for key type {}",
            raw.len(),
            key_type.name()
        ))
    };
    match key_type {
        KeyType::Aes256Gcm96 | KeyType::ChaCha20Poly1305 | KeyType::XChaCha20Poly1305 => {
            if raw.len() != 32 {
                return Err(invalid_size());
            }
            KeyVersion::imported(BASE64.encode(raw), None, now)
        }
        KeyType::Hmac => {
            if !(32..=512).contains(&raw.len()) {
                return Err(invalid_size());
            }
            KeyVersion::imported(BASE64.encode(raw), None, now)
        }
        KeyType::Ed25519 => {
            let pair = lc::Ed25519KeyPair::from_pkcs8_maybe_unchecked(raw)
                .map_err(|_| ApiError::bad_request("the key is not an ed25519 PKCS#8 document"))?;
            let seed = pair
                .seed()
                .and_then(|s| s.as_be_bytes())
                .map_err(|_| ApiError::internal("cannot read the ed25519 seed"))?;
            let public = pair.public_key().as_ref().to_vec();
            let document = pkcs8::ed25519_document(seed.as_ref(), &public)
                .ok_or_else(|| ApiError::bad_request("the ed25519 key has the wrong length"))?;
            ring::signature::Ed25519KeyPair::from_pkcs8(&document)
                .map_err(|_| ApiError::bad_request("the ed25519 key is not valid"))?;
            KeyVersion::imported(BASE64.encode(&*document), Some(BASE64.encode(&public)), now)
        }
        KeyType::EcdsaP256 => {
            let pair = lc::EcdsaKeyPair::from_pkcs8(&lc::ECDSA_P256_SHA256_ASN1_SIGNING, raw)
                .map_err(|_| ApiError::bad_request("the key is not a P-256 PKCS#8 document"))?;
            let scalar = pair
                .private_key()
                .as_be_bytes()
                .map_err(|_| ApiError::internal("cannot read the P-256 private key"))?;
            let point = pair.public_key().as_ref().to_vec();
            let document = pkcs8::p256_document(scalar.as_ref(), &point)
                .ok_or_else(|| ApiError::bad_request("the P-256 key has the wrong length"))?;
            ring::signature::EcdsaKeyPair::from_pkcs8(
                &ring::signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                &document,
                &ring::rand::SystemRandom::new(),
            )
            .map_err(|_| ApiError::bad_request("the P-256 key is not valid"))?;
            KeyVersion::imported(
                BASE64.encode(&*document),
                Some(p256_public_pem(&point)),
                now,
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn imported_material_takes_vaults_formats() {
        let now = SystemTime::now();
        assert!(imported_material(KeyType::Aes256Gcm96, &[7; 32], now).is_ok());
        for (key_type, len) in [
            (KeyType::Aes256Gcm96, 16),
            (KeyType::ChaCha20Poly1305, 33),
            (KeyType::Hmac, 31),
            (KeyType::Hmac, 513),
        ] {
            let error = imported_material(key_type, &vec![1; len], now)
                .err()
                .unwrap();
            assert_eq!(error.status, 400, "{len}");
        }
        let hmac = imported_material(KeyType::Hmac, &[9; 64], now).unwrap();
        assert_eq!(hmac.key_bytes().unwrap().len(), 64);

        let rng = aws_lc_rs::rand::SystemRandom::new();
        let ed = lc::Ed25519KeyPair::generate_pkcs8(&rng).unwrap();
        let imported = imported_material(KeyType::Ed25519, ed.as_ref(), now).unwrap();
        let pair = lc::Ed25519KeyPair::from_pkcs8(ed.as_ref()).unwrap();
        assert_eq!(
            imported.public_key.as_deref(),
            Some(BASE64.encode(pair.public_key().as_ref()).as_str())
        );
        assert!(imported_material(KeyType::Ed25519, b"junk", now).is_err());
        assert!(imported_material(KeyType::EcdsaP256, ed.as_ref(), now).is_err());
    }

    proptest::proptest! {
        /// Whatever bytes an unwrap yields, making a key version of them answers; it never
        /// panics.
        #[test]
        fn any_imported_bytes_are_taken_or_refused(
            bytes in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..700),
        ) {
            for key_type in [KeyType::Aes256Gcm96, KeyType::Hmac, KeyType::Ed25519, KeyType::EcdsaP256] {
                if let Err(e) = imported_material(key_type, &bytes, SystemTime::now()) {
                    proptest::prop_assert_eq!(e.status, 400);
                }
            }
        }
    }

    #[test]
    fn every_hash_vault_names_is_known() {
        for name in ["SHA1", "sha256", "SHA384", "SHA512"] {
            assert!(oaep_algorithm(Some(name)).is_ok(), "{name}");
        }
        assert!(oaep_algorithm(None).is_ok());
        assert_eq!(oaep_algorithm(Some("SHA224")).err().unwrap().status, 400);
        assert_eq!(oaep_algorithm(Some("MD5")).err().unwrap().status, 400);
    }
}
