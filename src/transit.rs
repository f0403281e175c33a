//! The transit engine: named keys used to encrypt, decrypt, sign, verify, HMAC and hash,
//! compatible with Vault's transit API and its ciphertext format
//! (`vault:v<N>:<base64(nonce ‖ ciphertext ‖ tag)>`). A key leaves the vault only if it was
//! made exportable, through `export` or, with `allow_plaintext_backup` too, `backup`.
//!
//! A key's policy (type, versions, limits) is one record; each key version is a record of
//! its own, so a key with many versions stays under the record limit. Both go through the
//! barrier like every other record. Encryptions are counted per key version (the `counter`
//! module), and a key whose latest version reaches the limit is rotated before it is used
//! again. Keys move between Vault and vaultd through `backup` and `restore` in Vault's format
//! (the `backup` module) or are brought in wrapped (the `import` module).

mod backup;
mod counter;
mod import;
mod pkcs8;

use std::ops::RangeInclusive;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::api::{ApiError, Fields, Operation, Request, Response};
use crate::barrier::{Barrier, BarrierError, Change, Expect, MountId, RecordId, RecordKind};
use crate::crypto::{self, Algorithm, SecretKey};
use crate::mount::MountEntry;

/// The largest batch a request may carry.
const MAX_BATCH: usize = 1000;

/// Key types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyType {
    /// AES-256-GCM with 96-bit nonces.
    #[serde(rename = "aes256-gcm96")]
    Aes256Gcm96,
    /// ChaCha20-Poly1305.
    #[serde(rename = "chacha20-poly1305")]
    ChaCha20Poly1305,
    /// XChaCha20-Poly1305, with 192-bit nonces.
    #[serde(rename = "xchacha20-poly1305")]
    XChaCha20Poly1305,
    /// Ed25519 signatures.
    #[serde(rename = "ed25519")]
    Ed25519,
    /// ECDSA on P-256 with SHA-256, ASN.1 signatures.
    #[serde(rename = "ecdsa-p256")]
    EcdsaP256,
    /// HMAC only.
    #[serde(rename = "hmac")]
    Hmac,
}

impl KeyType {
    fn parse(name: &str) -> Result<KeyType, ApiError> {
        Ok(match name {
            "aes256-gcm96" => KeyType::Aes256Gcm96,
            "chacha20-poly1305" => KeyType::ChaCha20Poly1305,
            "xchacha20-poly1305" => KeyType::XChaCha20Poly1305,
            "ed25519" => KeyType::Ed25519,
            "ecdsa-p256" => KeyType::EcdsaP256,
            "hmac" => KeyType::Hmac,
            other => {
                return Err(ApiError::bad_request(format!(
                    "unknown key type {other:?}: vaultd supports aes256-gcm96, chacha20-poly1305, xchacha20-poly1305, ed25519, ecdsa-p256 and hmac"
                )));
            }
        })
    }

    fn name(self) -> &'static str {
        match self {
            KeyType::Aes256Gcm96 => "aes256-gcm96",
            KeyType::ChaCha20Poly1305 => "chacha20-poly1305",
            KeyType::XChaCha20Poly1305 => "xchacha20-poly1305",
            KeyType::Ed25519 => "ed25519",
            KeyType::EcdsaP256 => "ecdsa-p256",
            KeyType::Hmac => "hmac",
        }
    }

    fn aead(self) -> Option<Cipher> {
        match self {
            KeyType::Aes256Gcm96 => Some(Cipher::Nonce96(Algorithm::Aes256Gcm)),
            KeyType::ChaCha20Poly1305 => Some(Cipher::Nonce96(Algorithm::ChaCha20Poly1305)),
            KeyType::XChaCha20Poly1305 => Some(Cipher::XChaCha),
            _ => None,
        }
    }

    /// What Vault calls the key in a version's entry: the curve for ECDSA.
    fn curve_name(self) -> &'static str {
        match self {
            KeyType::EcdsaP256 => "P-256",
            other => other.name(),
        }
    }

    fn signs(self) -> bool {
        matches!(self, KeyType::Ed25519 | KeyType::EcdsaP256)
    }
}

/// The AEAD of an encryption key: `nonce ‖ ciphertext ‖ tag`, with a 12-byte nonce or, for
/// XChaCha20-Poly1305, a 24-byte one, as Vault lays them out.
#[derive(Clone, Copy)]
enum Cipher {
    Nonce96(Algorithm),
    XChaCha,
}

impl Cipher {
    fn seal(
        self,
        key: &SecretKey,
        aad: &[u8],
        plaintext: &[u8],
    ) -> Result<Vec<u8>, crypto::CryptoError> {
        match self {
            Cipher::Nonce96(algorithm) => crypto::seal(algorithm, key, aad, plaintext),
            Cipher::XChaCha => crypto::xchacha_seal(key, aad, plaintext),
        }
    }

    fn open(
        self,
        key: &SecretKey,
        aad: &[u8],
        sealed: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, crypto::CryptoError> {
        match self {
            Cipher::Nonce96(algorithm) => crypto::open(algorithm, key, aad, sealed),
            Cipher::XChaCha => crypto::xchacha_open(key, aad, sealed),
        }
    }
}

/// A key's settings and version range.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct KeyPolicy {
    name: String,
    key_type: KeyType,
    latest_version: u32,
    min_available_version: u32,
    min_decryption_version: u32,
    min_encryption_version: u32,
    deletion_allowed: bool,
    exportable: bool,
    allow_plaintext_backup: bool,
    /// Seconds; 0 is off.
    auto_rotate_period: u64,
    derived: bool,
    /// How a derived key derives its keys.
    #[serde(default)]
    kdf: Kdf,
    /// Made from imported key material (until it is first rotated, as in Vault).
    #[serde(default)]
    imported: bool,
    /// An imported key may be rotated.
    #[serde(default)]
    allow_rotation: bool,
    /// The last backup taken of the key.
    #[serde(default)]
    backup_info: Option<backup::Stamp>,
    /// The restore that made the key, if one did.
    #[serde(default)]
    restore_info: Option<backup::Stamp>,
}

impl KeyPolicy {
    /// A new key's policy: version 1, nothing trimmed, every option off.
    fn new(name: &str, key_type: KeyType) -> KeyPolicy {
        KeyPolicy {
            name: name.to_string(),
            key_type,
            latest_version: 1,
            min_available_version: 0,
            min_decryption_version: 1,
            min_encryption_version: 0,
            deletion_allowed: false,
            exportable: false,
            allow_plaintext_backup: false,
            auto_rotate_period: 0,
            derived: false,
            kdf: Kdf::default(),
            imported: false,
            allow_rotation: false,
            backup_info: None,
            restore_info: None,
        }
    }
}

/// The key derivation of a derived key. Keys created in vaultd use HKDF, as Vault's do;
/// imported keys use the counter-mode KDF, as Vault's imported keys do.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
enum Kdf {
    /// HKDF-SHA256 (RFC 5869) with no salt and the context as info.
    #[default]
    #[serde(rename = "hkdf_sha256")]
    HkdfSha256,
    /// NIST SP 800-108 counter mode with HMAC-SHA256: one block,
    /// `HMAC(key, [0, 0, 0, 0] ‖ context ‖ [0, 0, 1, 0])`.
    #[serde(rename = "hmac-sha256-counter")]
    HmacSha256Counter,
}

impl Kdf {
    /// A 256-bit key derived from `key` for `context`.
    fn derive(self, key: &[u8], context: &[u8]) -> Result<SecretKey, ApiError> {
        let mut derived = Zeroizing::new([0u8; 32]);
        match self {
            Kdf::HkdfSha256 => crypto::hkdf_sha256(key, b"", context, derived.as_mut())
                .map_err(|e| ApiError::internal(e.to_string()))?,
            Kdf::HmacSha256Counter => {
                let prf = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
                let mut ctx = ring::hmac::Context::with_key(&prf);
                ctx.update(&0u32.to_be_bytes());
                ctx.update(context);
                ctx.update(&256u32.to_be_bytes());
                derived.copy_from_slice(ctx.sign().as_ref());
            }
        }
        Ok(SecretKey::from_bytes(*derived))
    }

    fn name(self) -> &'static str {
        match self {
            Kdf::HkdfSha256 => "hkdf_sha256",
            Kdf::HmacSha256Counter => "hmac-sha256-counter",
        }
    }
}

/// One version's key material. No `Debug`; the strings are base64, zeroized on drop.
#[derive(Serialize, Deserialize)]
struct KeyVersion {
    /// Symmetric key, or PKCS#8 private key for signing types.
    key: String,
    /// The HMAC key of this version.
    hmac_key: String,
    /// Public key (signing types).
    public_key: Option<String>,
    /// Unix seconds.
    created: u64,
}

impl Drop for KeyVersion {
    fn drop(&mut self) {
        use zeroize::Zeroize as _;
        self.key.zeroize();
        self.hmac_key.zeroize();
    }
}

impl KeyVersion {
    fn generate(key_type: KeyType, now: SystemTime) -> Result<KeyVersion, ApiError> {
        let rng = ring::rand::SystemRandom::new();
        let (key, public_key) = match key_type {
            KeyType::Aes256Gcm96
            | KeyType::ChaCha20Poly1305
            | KeyType::XChaCha20Poly1305
            | KeyType::Hmac => (random_key()?, None),
            KeyType::Ed25519 => {
                let pkcs8 = Ed25519KeyPair::generate_pkcs8(&rng)
                    .map_err(|_| ApiError::internal("cannot make an ed25519 key"))?;
                let pair = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref())
                    .map_err(|_| ApiError::internal("bad ed25519 key"))?;
                (
                    BASE64.encode(pkcs8.as_ref()),
                    Some(BASE64.encode(pair.public_key().as_ref())),
                )
            }
            KeyType::EcdsaP256 => {
                let alg = &signature::ECDSA_P256_SHA256_ASN1_SIGNING;
                let pkcs8 = EcdsaKeyPair::generate_pkcs8(alg, &rng)
                    .map_err(|_| ApiError::internal("cannot make a P-256 key"))?;
                let pair = EcdsaKeyPair::from_pkcs8(alg, pkcs8.as_ref(), &rng)
                    .map_err(|_| ApiError::internal("bad P-256 key"))?;
                (
                    BASE64.encode(pkcs8.as_ref()),
                    Some(p256_public_pem(pair.public_key().as_ref())),
                )
            }
        };
        let created = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Ok(KeyVersion {
            key,
            hmac_key: random_key()?,
            public_key,
            created,
        })
    }

    /// A version of imported material: `key` (base64) and, for signing keys, its public key,
    /// with a fresh HMAC key.
    fn imported(
        key: String,
        public_key: Option<String>,
        now: SystemTime,
    ) -> Result<Self, ApiError> {
        Ok(KeyVersion {
            key,
            hmac_key: random_key()?,
            public_key,
            created: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        })
    }

    fn key_bytes(&self) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        BASE64
            .decode(&self.key)
            .map(Zeroizing::new)
            .map_err(|_| ApiError::internal("stored transit key is not base64"))
    }

    fn hmac_bytes(&self) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        BASE64
            .decode(&self.hmac_key)
            .map(Zeroizing::new)
            .map_err(|_| ApiError::internal("stored transit key is not base64"))
    }
}

/// 32 random bytes, base64.
fn random_key() -> Result<String, ApiError> {
    let mut bytes = Zeroizing::new([0u8; 32]);
    crypto::fill_random(bytes.as_mut()).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(BASE64.encode(bytes.as_ref()))
}

/// A P-256 public key (uncompressed point) as a PEM SubjectPublicKeyInfo, as Vault shows it.
fn p256_public_pem(point: &[u8]) -> String {
    // SEQUENCE { SEQUENCE { id-ecPublicKey, prime256v1 }, BIT STRING { point } }
    let mut der =
        hex::decode("3059301306072a8648ce3d020106082a8648ce3d030107034200").unwrap_or_default();
    der.extend_from_slice(point);
    pem("PUBLIC KEY", &der).to_string()
}

/// `der` as PEM with 64-character lines and a final newline, as Go's encoder writes it.
fn pem(label: &str, der: &[u8]) -> Zeroizing<String> {
    let body = Zeroizing::new(BASE64.encode(der));
    let mut out = Zeroizing::new(format!("-----BEGIN {label}-----\n"));
    for line in body.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).unwrap_or_default());
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// The private key of a signing version in the form Vault exports it: for ed25519 the
/// 64-byte `seed ‖ public key`, base64; for P-256 a SEC 1 `EC PRIVATE KEY` PEM with the
/// named curve and public key, as Go's `x509.MarshalECPrivateKey` writes it.
fn exported_signing_key(key_type: KeyType, pkcs8: &[u8]) -> Result<Zeroizing<String>, ApiError> {
    match key_type {
        KeyType::Ed25519 => {
            let raw = signing_parts(key_type, pkcs8)?.joined();
            Ok(Zeroizing::new(BASE64.encode(&*raw)))
        }
        KeyType::EcdsaP256 => {
            let parts = signing_parts(key_type, pkcs8)?;
            // SEQUENCE { 1, OCTET STRING d, [0] prime256v1, [1] BIT STRING point }
            const HEAD: [u8; 7] = [0x30, 0x77, 0x02, 0x01, 0x01, 0x04, 0x20];
            const CURVE_AND_POINT: [u8; 17] = [
                0xa0, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0xa1, 0x44,
                0x03, 0x42, 0x00,
            ];
            let mut der = Zeroizing::new(Vec::with_capacity(121));
            der.extend_from_slice(&HEAD);
            der.extend_from_slice(&parts.private);
            der.extend_from_slice(&CURVE_AND_POINT);
            der.extend_from_slice(&parts.public);
            let text = pem("EC PRIVATE KEY", &der);
            Ok(Zeroizing::new(text.trim_end().to_string()))
        }
        other => Err(ApiError::bad_request(format!(
            "signing key not supported for key type {}",
            other.name()
        ))),
    }
}

/// The private and public halves of a stored signing key.
fn signing_parts(key_type: KeyType, pkcs8: &[u8]) -> Result<pkcs8::Parts, ApiError> {
    let parts = match key_type {
        KeyType::Ed25519 => pkcs8::ed25519_parts(pkcs8),
        KeyType::EcdsaP256 => pkcs8::p256_parts(pkcs8),
        _ => None,
    };
    parts.ok_or_else(|| ApiError::internal("stored signing key has an unexpected layout"))
}

pub use counter::MAX_ENCRYPTIONS;

/// The engine. Everything it keeps is in the barrier, but for the use counters' in-memory
/// part.
pub struct TransitEngine {
    barrier: Arc<Barrier>,
    counters: counter::Counters,
    // Held while rotating a key that reached its encryption limit, so concurrent requests
    // rotate it once.
    rotating: Mutex<()>,
}

impl TransitEngine {
    /// An engine over `barrier`, allowing `encryption_limit` encryptions per key version
    /// (at most [`MAX_ENCRYPTIONS`]).
    pub fn new(barrier: Arc<Barrier>, encryption_limit: u64) -> Self {
        TransitEngine {
            counters: counter::Counters::new(Arc::clone(&barrier), encryption_limit),
            barrier,
            rotating: Mutex::new(()),
        }
    }

    /// Handles a request for `rest`, the path after the mount.
    pub fn handle(
        &self,
        mount: &MountEntry,
        rest: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let id = mount.id()?;
        let op = request.operation;
        let parts: Vec<&str> = rest.trim_end_matches('/').split('/').collect();
        match (parts.as_slice(), op) {
            (["keys"], Operation::List) => self.list_keys(id),
            (["keys", name], Operation::Read) => self.read_key(id, name),
            (["keys", name], Operation::Write) => self.create_key(id, name, request, now),
            (["keys", name], Operation::Delete) => self.delete_key(id, name),
            (["keys", name, "config"], Operation::Write) => self.configure_key(id, name, request),
            (["keys", name, "rotate"], Operation::Write) => {
                self.rotate_key(id, name, now)?;
                self.read_key(id, name)
            }
            (["keys", name, "trim"], Operation::Write) => self.trim_key(id, name, request),
            (["keys", name, "import"], Operation::Write) => self.import_key(id, name, request, now),
            (["keys", name, "import_version"], Operation::Write) => {
                self.import_version(id, name, request, now)
            }
            (["wrapping_key"], Operation::Read) => self.wrapping_key(id),
            (["encrypt", name], Operation::Write) => self.encrypt(id, name, request, now),
            (["decrypt", name], Operation::Write) => self.decrypt(id, name, request),
            (["rewrap", name], Operation::Write) => self.rewrap(id, name, request, now),
            (["datakey", kind, name], Operation::Write) => {
                self.datakey(id, kind, name, request, now)
            }
            (["random"], Operation::Write) => random(request, None),
            (["random", bytes], Operation::Write) => random(request, Some(bytes)),
            (["random", _source, bytes], Operation::Write) => random(request, Some(bytes)),
            (["hash"], Operation::Write) => hash(request, None),
            (["hash", algorithm], Operation::Write) => hash(request, Some(algorithm)),
            (["hmac", name], Operation::Write) => self.hmac(id, name, request, None),
            (["hmac", name, algorithm], Operation::Write) => {
                self.hmac(id, name, request, Some(algorithm))
            }
            (["export", kind, name], Operation::Read) => self.export(id, kind, name, None),
            (["export", kind, name, version], Operation::Read) => {
                self.export(id, kind, name, Some(version))
            }
            (["backup", name], Operation::Read) => self.backup(id, name, now),
            (["restore"], Operation::Write) => self.restore(id, None, request, now),
            (["restore", name], Operation::Write) => self.restore(id, Some(name), request, now),
            (["restore", _, _, ..], Operation::Write) => {
                Err(ApiError::vault_internal("key names cannot be paths"))
            }
            (["sign", name], Operation::Write) => self.sign(id, name, request),
            (["sign", name, _algorithm], Operation::Write) => self.sign(id, name, request),
            (["verify", name], Operation::Write) => self.verify(id, name, request, None),
            (["verify", name, algorithm], Operation::Write) => {
                self.verify(id, name, request, Some(algorithm))
            }
            ([first, ..], _)
                if [
                    "keys",
                    "encrypt",
                    "decrypt",
                    "rewrap",
                    "datakey",
                    "random",
                    "hash",
                    "hmac",
                    "sign",
                    "verify",
                    "export",
                    "backup",
                    "restore",
                    "wrapping_key",
                ]
                .contains(first) =>
            {
                Err(ApiError::method_not_allowed())
            }
            _ => Err(ApiError::unsupported_path(&request.path)),
        }
    }

    fn policy(&self, mount: MountId, name: &str) -> Result<Option<(KeyPolicy, u64)>, ApiError> {
        check_name(name)?;
        let Some(record) = self.barrier.get(&policy_id(mount, name)?)? else {
            return Ok(None);
        };
        let policy = serde_json::from_slice(&record.value)
            .map_err(|e| ApiError::internal(format!("transit key {name} does not parse: {e}")))?;
        Ok(Some((policy, record.generation)))
    }

    fn existing(&self, mount: MountId, name: &str) -> Result<(KeyPolicy, u64), ApiError> {
        self.policy(mount, name)?
            .ok_or_else(|| ApiError::bad_request(format!("encryption key not found: {name}")))
    }

    fn version(&self, mount: MountId, name: &str, version: u32) -> Result<KeyVersion, ApiError> {
        let record = self
            .barrier
            .get(&version_id(mount, name, version)?)?
            .ok_or_else(|| {
                ApiError::bad_request(format!("key version {version} of {name} does not exist"))
            })?;
        serde_json::from_slice(&record.value)
            .map_err(|e| ApiError::internal(format!("transit key version does not parse: {e}")))
    }

    fn list_keys(&self, mount: MountId) -> Result<Response, ApiError> {
        let keys = self.key_names(mount)?;
        if keys.is_empty() {
            return Err(ApiError::not_found());
        }
        Ok(Response::data(json!({"keys": keys})))
    }

    /// The keys of `mount` whose `auto_rotate_period` has passed since their latest version
    /// was made, with that version.
    pub fn keys_due(
        &self,
        mount: MountId,
        now: SystemTime,
    ) -> Result<Vec<(String, u32)>, ApiError> {
        let now = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut due = Vec::new();
        for name in self.key_names(mount)? {
            let Some((policy, _)) = self.policy(mount, &name)? else {
                continue;
            };
            if policy.auto_rotate_period == 0 || (policy.imported && !policy.allow_rotation) {
                continue;
            }
            let created = self.version(mount, &name, policy.latest_version)?.created;
            if now >= created.saturating_add(policy.auto_rotate_period) {
                due.push((name, policy.latest_version));
            }
        }
        Ok(due)
    }

    fn key_names(&self, mount: MountId) -> Result<Vec<String>, ApiError> {
        Ok(self
            .barrier
            .list_all(RecordKind::TransitKey, mount, "policy/")?
            .into_iter()
            .filter_map(|id| id.path.strip_prefix("policy/").map(String::from))
            .collect())
    }

    fn read_key(&self, mount: MountId, name: &str) -> Result<Response, ApiError> {
        let Some((policy, _)) = self.policy(mount, name)? else {
            return Err(ApiError::not_found());
        };
        // Like Vault, only the versions that can still decrypt; an HMAC key lists none.
        let mut keys = Map::new();
        let first = policy
            .min_available_version
            .max(policy.min_decryption_version)
            .max(1);
        for version in first..=policy.latest_version {
            let Ok(material) = self.version(mount, name, version) else {
                continue;
            };
            let value = match &material.public_key {
                Some(public) => json!({
                    "public_key": public,
                    "creation_time": crate::duration::timestamp(UNIX_EPOCH + Duration::from_secs(material.created)),
                                        "name": policy.key_type.curve_name(),
                }),
                None => json!(material.created),
            };
            keys.insert(version.to_string(), value);
        }
        let kind = policy.key_type;
        let mut data = json!({
            "name": policy.name,
            "type": kind.name(),
            "keys": keys,
            "latest_version": policy.latest_version,
            "min_available_version": policy.min_available_version,
            "min_decryption_version": policy.min_decryption_version,
            "min_encryption_version": policy.min_encryption_version,
            "deletion_allowed": policy.deletion_allowed,
            "exportable": policy.exportable,
            "allow_plaintext_backup": policy.allow_plaintext_backup,
            "auto_rotate_period": policy.auto_rotate_period,
            "derived": policy.derived,
            "supports_encryption": kind.aead().is_some(),
            "supports_decryption": kind.aead().is_some(),
            "supports_derivation": kind.aead().is_some(),
                        "supports_signing": kind.signs(),
            "imported_key": policy.imported,
        });
        if kind == KeyType::Hmac
            && let Value::Object(map) = &mut data
        {
            map.remove("keys");
        }
        if let Value::Object(map) = &mut data {
            if policy.derived {
                map.insert("kdf".into(), json!(policy.kdf.name()));
                if policy.kdf == Kdf::HmacSha256Counter {
                    map.insert("kdf_mode".into(), json!(policy.kdf.name()));
                }
                map.insert("convergent_encryption".into(), json!(false));
            }
            if policy.imported {
                map.insert(
                    "imported_key_allow_rotation".into(),
                    json!(policy.allow_rotation),
                );
            }
            if let Some(stamp) = &policy.backup_info {
                map.insert("backup_info".into(), json!(stamp));
            }
            if let Some(stamp) = &policy.restore_info {
                map.insert("restore_info".into(), json!(stamp));
            }
        }
        Ok(Response::data(data))
    }

    fn create_key(
        &self,
        mount: MountId,
        name: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let mut fields = keyed_fields(request);
        let key_type = KeyType::parse(fields.string("type")?.as_deref().unwrap_or("aes256-gcm96"))?;
        let derived = fields.bool("derived")?.unwrap_or(false);
        if derived && key_type.aead().is_none() {
            return Err(ApiError::bad_request(
                "key derivation is only supported for encryption keys",
            ));
        }
        if fields.bool("convergent_encryption")?.unwrap_or(false) {
            return Err(ApiError::bad_request(
                "convergent encryption is not supported by vaultd",
            ));
        }
        let policy = KeyPolicy {
            exportable: fields.bool("exportable")?.unwrap_or(false),
            allow_plaintext_backup: fields.bool("allow_plaintext_backup")?.unwrap_or(false),
            auto_rotate_period: auto_rotate_period(fields.duration("auto_rotate_period")?)?
                .unwrap_or(0),
            derived,
            ..KeyPolicy::new(name, key_type)
        };
        for ignored in ["key_size", "managed_key_name", "managed_key_id"] {
            let _ = fields.value(ignored);
        }
        let warnings = fields.unknown();
        if self.policy(mount, name)?.is_some() {
            // Vault answers success when the key exists already; nothing changes.
            let mut warnings = warnings;
            warnings.push(format!("key {name} already existed"));
            return self
                .read_key(mount, name)
                .map(|r| r.with_warnings(warnings));
        }
        let material = KeyVersion::generate(key_type, now)?;
        self.put_with_version(mount, &policy, Expect::Absent, 1, &material)?;
        self.read_key(mount, name)
            .map(|r| r.with_warnings(warnings))
    }

    fn delete_key(&self, mount: MountId, name: &str) -> Result<Response, ApiError> {
        let (policy, generation) = self.existing(mount, name)?;
        if !policy.deletion_allowed {
            return Err(ApiError::bad_request(
                "deletion is not allowed for this key",
            ));
        }
        let pid = policy_id(mount, name)?;
        // Trimmed versions and their counts are gone already.
        let versions = (policy.min_available_version.max(1)..=policy.latest_version)
            .flat_map(|v| [version_id(mount, name, v), counter::uses_id(mount, name, v)])
            .collect::<Result<Vec<_>, _>>()?;
        let mut changes = vec![Change::Delete {
            id: &pid,
            expect: Expect::Generation(generation),
        }];
        changes.extend(versions.iter().map(|id| Change::Delete {
            id,
            expect: Expect::Any,
        }));
        self.barrier.commit(&changes).map_err(conflict)?;
        self.counters.forget(mount, name);
        Ok(Response::empty())
    }

    fn configure_key(
        &self,
        mount: MountId,
        name: &str,
        request: &Request,
    ) -> Result<Response, ApiError> {
        let (mut policy, generation) = self.existing(mount, name)?;
        let mut fields = keyed_fields(request);
        if let Some(v) = fields.u64("min_decryption_version")? {
            policy.min_decryption_version = u32::try_from(v)
                .map_err(|_| ApiError::bad_request("min_decryption_version is too large"))?
                .max(1);
        }
        if let Some(v) = fields.u64("min_encryption_version")? {
            policy.min_encryption_version = u32::try_from(v)
                .map_err(|_| ApiError::bad_request("min_encryption_version is too large"))?;
        }
        if policy.min_decryption_version > policy.latest_version
            || policy.min_encryption_version > policy.latest_version
        {
            return Err(ApiError::bad_request(
                "cannot set a minimum version above the latest version",
            ));
        }
        if policy.min_encryption_version > 0
            && policy.min_encryption_version < policy.min_decryption_version
        {
            return Err(ApiError::bad_request(
                "min_encryption_version must not be below min_decryption_version",
            ));
        }
        if policy.min_decryption_version < policy.min_available_version {
            return Err(ApiError::bad_request(
                "min_decryption_version must not be below min_available_version (trimmed versions are gone)",
            ));
        }
        if let Some(v) = fields.bool("deletion_allowed")? {
            policy.deletion_allowed = v;
        }
        if let Some(v) = fields.bool("exportable")? {
            if policy.exportable && !v {
                return Err(ApiError::bad_request(
                    "exportability cannot be turned off once on",
                ));
            }
            policy.exportable = v;
        }
        if let Some(v) = fields.bool("allow_plaintext_backup")? {
            if policy.allow_plaintext_backup && !v {
                return Err(ApiError::bad_request(
                    "allow_plaintext_backup cannot be turned off once on",
                ));
            }
            policy.allow_plaintext_backup = v;
        }
        if let Some(period) = auto_rotate_period(fields.duration("auto_rotate_period")?)? {
            // Vault stores the period and then fails every scheduled rotation; vaultd refuses.
            if period > 0 && policy.imported && !policy.allow_rotation {
                return Err(ApiError::bad_request(
                    "an imported key without allow_rotation cannot rotate automatically",
                ));
            }
            policy.auto_rotate_period = period;
        }
        let warnings = fields.unknown();
        self.put_policy(mount, &policy, generation)?;
        self.read_key(mount, name)
            .map(|r| r.with_warnings(warnings))
    }

    /// Adds a key version and makes it the latest.
    pub fn rotate_key(&self, mount: MountId, name: &str, now: SystemTime) -> Result<u32, ApiError> {
        let (mut policy, generation) = self.existing(mount, name)?;
        if policy.imported && !policy.allow_rotation {
            return Err(ApiError::vault_internal(format!(
                "imported key {name} does not allow rotation"
            )));
        }
        // As in Vault, a rotated key is no longer an imported one.
        policy.imported = false;
        let material = KeyVersion::generate(policy.key_type, now)?;
        self.add_version(mount, policy, generation, &material)
    }

    /// Makes `material` the key's next version and the latest, if the policy is still at
    /// `generation`; answers the new version.
    fn add_version(
        &self,
        mount: MountId,
        mut policy: KeyPolicy,
        generation: u64,
        material: &KeyVersion,
    ) -> Result<u32, ApiError> {
        let version = policy
            .latest_version
            .checked_add(1)
            .ok_or_else(|| ApiError::bad_request("key versions exhausted"))?;
        policy.latest_version = version;
        self.put_with_version(
            mount,
            &policy,
            Expect::Generation(generation),
            version,
            material,
        )?;
        Ok(version)
    }

    /// Writes `policy` over the record it was read from at `generation`.
    fn put_policy(
        &self,
        mount: MountId,
        policy: &KeyPolicy,
        generation: u64,
    ) -> Result<(), ApiError> {
        self.barrier
            .put(
                &policy_id(mount, &policy.name)?,
                &encode(policy)?,
                Expect::Generation(generation),
            )
            .map_err(conflict)?;
        Ok(())
    }

    /// Writes `policy` (if `expect` holds) and its new key version `version` in one commit.
    fn put_with_version(
        &self,
        mount: MountId,
        policy: &KeyPolicy,
        expect: Expect,
        version: u32,
        material: &KeyVersion,
    ) -> Result<(), ApiError> {
        let name = &policy.name;
        let (pid, vid) = (policy_id(mount, name)?, version_id(mount, name, version)?);
        let (policy_body, version_body) = (encode(policy)?, Zeroizing::new(encode(material)?));
        self.barrier
            .commit(&[
                Change::Put {
                    id: &pid,
                    value: &policy_body,
                    expect,
                },
                Change::Put {
                    id: &vid,
                    value: &version_body,
                    expect: Expect::Absent,
                },
            ])
            .map_err(conflict)?;
        Ok(())
    }

    fn trim_key(
        &self,
        mount: MountId,
        name: &str,
        request: &Request,
    ) -> Result<Response, ApiError> {
        let (mut policy, generation) = self.existing(mount, name)?;
        let mut fields = keyed_fields(request);
        let min = fields
            .u64("min_available_version")?
            .ok_or_else(|| ApiError::bad_request("min_available_version is required"))?;
        let min = u32::try_from(min)
            .map_err(|_| ApiError::bad_request("min_available_version is too large"))?;
        // The same checks, in the same order, as Vault.
        if policy.min_encryption_version == 0 {
            return Err(ApiError::bad_request(
                "minimum available version cannot be set when minimum encryption version is not set",
            ));
        }
        if min == 0 {
            return Err(ApiError::bad_request(
                "minimum available version should be positive",
            ));
        }
        if min < policy.min_available_version {
            return Err(ApiError::bad_request(
                "minimum available version cannot be decremented",
            ));
        }
        if min > policy.min_decryption_version || min > policy.min_encryption_version {
            return Err(ApiError::bad_request(
                "cannot trim above min_decryption_version or min_encryption_version",
            ));
        }
        let warnings = fields.unknown();
        if min == policy.min_available_version {
            return self
                .read_key(mount, name)
                .map(|r| r.with_warnings(warnings));
        }
        let removed = (policy.min_available_version.max(1)..min)
            .flat_map(|v| [version_id(mount, name, v), counter::uses_id(mount, name, v)])
            .collect::<Result<Vec<_>, _>>()?;
        policy.min_available_version = min;
        let pid = policy_id(mount, name)?;
        let body = encode(&policy)?;
        let mut changes = vec![Change::Put {
            id: &pid,
            value: &body,
            expect: Expect::Generation(generation),
        }];
        changes.extend(removed.iter().map(|id| Change::Delete {
            id,
            expect: Expect::Any,
        }));
        self.barrier.commit(&changes).map_err(conflict)?;
        self.read_key(mount, name)
            .map(|r| r.with_warnings(warnings))
    }

    /// The encryption key of `version`, derived from `context` for derived keys.
    fn encryption_key(
        &self,
        mount: MountId,
        policy: &KeyPolicy,
        version: u32,
        context: Option<&str>,
    ) -> Result<SecretKey, ApiError> {
        let material = self.version(mount, &policy.name, version)?;
        let raw = material.key_bytes()?;
        if !policy.derived {
            return SecretKey::from_slice(&raw)
                .ok_or_else(|| ApiError::internal("stored transit key has the wrong length"));
        }
        let context = context.filter(|c| !c.is_empty()).ok_or_else(|| {
            ApiError::bad_request(
                "missing 'context' for key derivation; the key was created with derived = true",
            )
        })?;
        let context = BASE64
            .decode(context)
            .map_err(|_| ApiError::bad_request("context is not base64"))?;
        policy.kdf.derive(&raw, &context)
    }

    fn encrypt(
        &self,
        mount: MountId,
        name: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let (policy, _) = match self.policy(mount, name)? {
            Some(found) => found,
            None => {
                // Vault creates the key on first encrypt (upsert): of the requested `type`
                // (aes256-gcm96 by default), derived if the request carries a context.
                let mut data = Map::new();
                if let Some(kind) = request.data.get("type") {
                    // A key that could not encrypt is not created.
                    if let Some(name) = kind.as_str()
                        && KeyType::parse(name)?.aead().is_none()
                    {
                        return Err(ApiError::bad_request(format!(
                            "key type {name} does not support encryption"
                        )));
                    }
                    data.insert("type".into(), kind.clone());
                }
                let first = match request.data.get("batch_input") {
                    Some(Value::Array(items)) => items.first().and_then(Value::as_object),
                    _ => Some(&request.data),
                };
                if first
                    .and_then(|f| f.get("context"))
                    .is_some_and(|c| c.as_str() != Some(""))
                {
                    data.insert("derived".into(), json!(true));
                }
                self.create_key(
                    mount,
                    name,
                    &Request {
                        data,
                        ..request.clone_meta()
                    },
                    now,
                )?;
                self.existing(mount, name)?
            }
        };
        let algorithm = policy.key_type.aead().ok_or_else(|| {
            ApiError::bad_request(format!(
                "key type {} does not support encryption",
                policy.key_type.name()
            ))
        })?;
        let policy = self.make_room(mount, policy, latest_uses(request), now)?;
        self.batch(request, &["plaintext", "context", "associated_data", "key_version", "nonce", "reference", "type"], |item| {
            let mut fields = Fields::of(item);
            let plaintext = Zeroizing::new(required_base64(&mut fields, "plaintext", "missing plaintext to encrypt")?);
                        let requested = fields.u64("key_version")?;
            let version = encryption_version(&policy, requested)?;
            if requested.is_some_and(|v| v != 0) {
                // The latest version's uses were counted by `make_room`.
                self.counters.count(mount, name, version, 1)?;
            }
            let key = self.encryption_key(mount, &policy, version, fields.string("context")?.as_deref())?;
            let aad = decode_optional(fields.string("associated_data")?, "associated_data")?;
            let sealed = algorithm.seal(&key, &aad, &plaintext).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(json!({"ciphertext": format!("vault:v{version}:{}", BASE64.encode(sealed)), "key_version": version}))
        })
    }

    fn decrypt(&self, mount: MountId, name: &str, request: &Request) -> Result<Response, ApiError> {
        let (policy, _) = self.existing(mount, name)?;
        let algorithm = policy.key_type.aead().ok_or_else(|| {
            ApiError::bad_request(format!(
                "key type {} does not support decryption",
                policy.key_type.name()
            ))
        })?;
        self.batch(
            request,
            &[
                "ciphertext",
                "context",
                "associated_data",
                "nonce",
                "reference",
            ],
            |item| {
                let mut fields = Fields::of(item);
                let ciphertext = fields
                    .string("ciphertext")?
                    .ok_or_else(|| ApiError::bad_request("missing ciphertext to decrypt"))?;
                let (version, sealed) = parse_versioned(&ciphertext)?;
                self.check_decryption_version(&policy, version)?;
                let key = self.encryption_key(
                    mount,
                    &policy,
                    version,
                    fields.string("context")?.as_deref(),
                )?;
                let aad = decode_optional(fields.string("associated_data")?, "associated_data")?;
                let plaintext = algorithm
                    .open(&key, &aad, &sealed)
                    .map_err(|_| ApiError::bad_request("cipher: message authentication failed"))?;
                Ok(json!({"plaintext": BASE64.encode(&*plaintext)}))
            },
        )
    }

    fn rewrap(
        &self,
        mount: MountId,
        name: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let (policy, _) = self.existing(mount, name)?;
        let algorithm = policy
            .key_type
            .aead()
            .ok_or_else(|| ApiError::bad_request("key type does not support rewrap"))?;
        let policy = self.make_room(mount, policy, latest_uses(request), now)?;
        self.batch(request, &["ciphertext", "context", "associated_data", "key_version", "nonce", "reference"], |item| {
            let mut fields = Fields::of(item);
            let ciphertext = fields.string("ciphertext")?.ok_or_else(|| ApiError::bad_request("missing ciphertext to rewrap"))?;
            let (version, sealed) = parse_versioned(&ciphertext)?;
            self.check_decryption_version(&policy, version)?;
            let context = fields.string("context")?;
            let aad = decode_optional(fields.string("associated_data")?, "associated_data")?;
            let old_key = self.encryption_key(mount, &policy, version, context.as_deref())?;
            let plaintext = algorithm.open(&old_key, &aad, &sealed).map_err(|_| ApiError::bad_request("cipher: message authentication failed"))?;
                                    let requested = fields.u64("key_version")?;
            let target = encryption_version(&policy, requested)?;
            if requested.is_some_and(|v| v != 0) {
                self.counters.count(mount, name, target, 1)?;
            }
            let new_key = self.encryption_key(mount, &policy, target, context.as_deref())?;
            let resealed = algorithm.seal(&new_key, &aad, &plaintext).map_err(|e| ApiError::internal(e.to_string()))?;
            Ok(json!({"ciphertext": format!("vault:v{target}:{}", BASE64.encode(resealed)), "key_version": target}))
        })
    }

    fn datakey(
        &self,
        mount: MountId,
        kind: &str,
        name: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let show_plaintext = match kind {
            "plaintext" => true,
            "wrapped" => false,
            _ => {
                return Err(ApiError::bad_request(
                    "datakey type must be plaintext or wrapped",
                ));
            }
        };
        let (policy, _) = self.existing(mount, name)?;
        let algorithm = policy
            .key_type
            .aead()
            .ok_or_else(|| ApiError::bad_request("key type does not support encryption"))?;
        let mut fields = keyed_fields(request);
        let bits = fields.u64("bits")?.unwrap_or(256);
        if ![128, 256, 512].contains(&bits) {
            return Err(ApiError::bad_request("bits must be 128, 256 or 512"));
        }
        let mut data_key = Zeroizing::new(vec![0u8; (bits / 8) as usize]);
        crypto::fill_random(&mut data_key).map_err(|e| ApiError::internal(e.to_string()))?;
        let policy = self.make_room(mount, policy, 1, now)?;
        let key = self.encryption_key(
            mount,
            &policy,
            policy.latest_version,
            fields.string("context")?.as_deref(),
        )?;
        let sealed = algorithm
            .seal(&key, b"", &data_key)
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let _ = fields.string("nonce")?;
        let mut data = json!({"ciphertext": format!("vault:v{}:{}", policy.latest_version, BASE64.encode(sealed)), "key_version": policy.latest_version});
        if show_plaintext {
            data["plaintext"] = json!(BASE64.encode(&*data_key));
        }
        Ok(Response::data(data).with_warnings(fields.unknown()))
    }

    fn hmac(
        &self,
        mount: MountId,
        name: &str,
        request: &Request,
        algorithm: Option<&&str>,
    ) -> Result<Response, ApiError> {
        let (policy, _) = self.existing(mount, name)?;
        let mut fields = keyed_fields(request);
        let algorithm = hmac_algorithm(
            algorithm
                .copied()
                .map(String::from)
                .or(fields.string("algorithm")?)
                .as_deref(),
        )?;
        let version = requested_version(&policy, fields.u64("key_version")?)?;
        self.check_decryption_version(&policy, version)?;
        let input = required_base64(&mut fields, "input", "missing input for HMAC")?;
        let key_bytes = self.hmac_key(mount, &policy, version)?;
        let tag = ring::hmac::sign(&ring::hmac::Key::new(algorithm, &key_bytes), &input);
        Ok(Response::data(
            json!({"hmac": format!("vault:v{version}:{}", BASE64.encode(tag.as_ref()))}),
        )
        .with_warnings(fields.unknown()))
    }

    fn hmac_key(
        &self,
        mount: MountId,
        policy: &KeyPolicy,
        version: u32,
    ) -> Result<Zeroizing<Vec<u8>>, ApiError> {
        let material = self.version(mount, &policy.name, version)?;
        if policy.key_type == KeyType::Hmac {
            material.key_bytes()
        } else {
            material.hmac_bytes()
        }
    }

    /// `export/:kind/:name(/:version)`: key material of an exportable key, as Vault gives it.
    fn export(
        &self,
        mount: MountId,
        kind: &str,
        name: &str,
        version: Option<&&str>,
    ) -> Result<Response, ApiError> {
        let (policy, _) = self.existing(mount, name)?;
        if !["encryption-key", "signing-key", "hmac-key"].contains(&kind) {
            return Err(ApiError::bad_request(format!(
                "invalid export type {kind:?}: vaultd exports encryption-key, signing-key and hmac-key"
            )));
        }
        if !policy.exportable {
            return Err(ApiError::bad_request(
                "private key material is not exportable",
            ));
        }
        if kind == "encryption-key" && policy.key_type.aead().is_none() {
            return Err(ApiError::bad_request(
                "encryption key not supported for key type",
            ));
        }
        if kind == "signing-key" && !policy.key_type.signs() {
            return Err(ApiError::bad_request(
                "signing key not supported for key type",
            ));
        }
        let first = policy
            .min_available_version
            .max(policy.min_decryption_version)
            .max(1);
        let versions = match version.copied() {
            None => first..=policy.latest_version,
            Some("latest") => policy.latest_version..=policy.latest_version,
            Some(text) => {
                let v: u32 = text
                    .parse()
                    .map_err(|_| ApiError::bad_request("version must be a number or latest"))?;
                if v < first {
                    return Err(ApiError::bad_request(
                        "version for export is below minimum decryption version",
                    ));
                }
                if v > policy.latest_version {
                    return Err(ApiError::bad_request(
                        "version does not exist or cannot be found",
                    ));
                }
                v..=v
            }
        };
        let mut keys = Map::new();
        for v in versions {
            let material = self.version(mount, name, v)?;
            let value = match kind {
                "encryption-key" => material.key.clone(),
                // The key the hmac endpoint uses: an hmac key's own material.
                "hmac-key" => BASE64.encode(&*self.hmac_key(mount, &policy, v)?),
                _ => exported_signing_key(policy.key_type, &material.key_bytes()?)?.to_string(),
            };
            keys.insert(v.to_string(), Value::String(value));
        }
        Ok(Response::data(json!({
            "name": policy.name,
            "type": policy.key_type.name(),
            "keys": keys,
        })))
    }

    /// `backup/:name`: the key in Vault's backup format, for a key that is both exportable
    /// and allows plaintext backup. Like Vault, it records when the backup was taken, and it
    /// answers its refusals with 500.
    fn backup(&self, mount: MountId, name: &str, now: SystemTime) -> Result<Response, ApiError> {
        let Some((mut policy, generation)) = self.policy(mount, name)? else {
            return Err(ApiError::vault_internal(format!("key {name:?} not found")));
        };
        if !policy.exportable {
            return Err(ApiError::vault_internal(
                "exporting is disallowed on the policy",
            ));
        }
        if !policy.allow_plaintext_backup {
            return Err(ApiError::vault_internal(
                "plaintext backup is disallowed on the policy",
            ));
        }
        let versions = (policy.min_available_version.max(1)..=policy.latest_version)
            .map(|v| Ok((v, self.version(mount, name, v)?)))
            .collect::<Result<Vec<_>, ApiError>>()?;
        policy.backup_info = Some(backup::Stamp::new(now, policy.latest_version));
        let text = backup::encode(&policy, &versions)?;
        self.put_policy(mount, &policy, generation)?;
        Ok(Response::data(json!({"backup": &*text})))
    }

    /// `restore(/:name)`: a key from a backup, under `name` or the backup's own name. An
    /// existing key is replaced only with `force`, all its versions and use counts with it.
    /// Use counts of the restored versions start again from zero.
    fn restore(
        &self,
        mount: MountId,
        name: Option<&str>,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let mut fields = Fields::new(request);
        let text = Zeroizing::new(
            fields
                .string("backup")?
                .filter(|b| !b.is_empty())
                .ok_or_else(|| ApiError::bad_request("'backup' must be supplied"))?,
        );
        let force = fields.bool("force")?.unwrap_or(false);
        let body_name = fields.string("name")?;
        let name = name.map(str::to_string).or(body_name);
        if name.as_deref().is_some_and(|n| n.contains('/')) {
            return Err(ApiError::vault_internal("key names cannot be paths"));
        }
        let (policy, versions) = backup::decode(&text, name.as_deref(), now)?;
        let name = policy.name.clone();
        check_name(&name)?;

        let existing = self.policy(mount, &name)?;
        if existing.is_some() && !force {
            return Err(ApiError::vault_internal(format!(
                "key {name:?} already exists"
            )));
        }
        let (old_versions, expect) = match &existing {
            Some((old, generation)) => (
                old.min_available_version.max(1)..=old.latest_version,
                Expect::Generation(*generation),
            ),
            // No key yet: no old versions.
            None => (RangeInclusive::new(1, 0), Expect::Absent),
        };
        let pid = policy_id(mount, &name)?;
        let policy_body = encode(&policy)?;
        let bodies = versions
            .iter()
            .map(|(v, material)| {
                Ok((
                    version_id(mount, &name, *v)?,
                    Zeroizing::new(encode(material)?),
                ))
            })
            .collect::<Result<Vec<_>, ApiError>>()?;
        // The replaced key's versions that the backup does not have, and the use counts of
        // both. Each range holds only versions that exist (the backup carries every one it
        // names), so neither can be made huge by a crafted version number.
        let kept = policy.min_available_version.max(1)..=policy.latest_version;
        let stale = old_versions
            .clone()
            .filter(|v| !kept.contains(v))
            .map(|v| version_id(mount, &name, v))
            .chain(
                old_versions
                    .clone()
                    .chain(kept.clone().filter(|v| !old_versions.contains(v)))
                    .map(|v| counter::uses_id(mount, &name, v)),
            )
            .collect::<Result<Vec<_>, _>>()?;
        let mut changes = vec![Change::Put {
            id: &pid,
            value: &policy_body,
            expect,
        }];
        changes.extend(bodies.iter().map(|(id, body)| Change::Put {
            id,
            value: body,
            expect: Expect::Any,
        }));
        changes.extend(stale.iter().map(|id| Change::Delete {
            id,
            expect: Expect::Any,
        }));
        self.barrier.commit(&changes).map_err(conflict)?;
        self.counters.forget(mount, &name);
        Ok(Response::empty())
    }

    fn sign(&self, mount: MountId, name: &str, request: &Request) -> Result<Response, ApiError> {
        let (policy, _) = self.existing(mount, name)?;
        let mut fields = keyed_fields(request);
        let version = requested_version(&policy, fields.u64("key_version")?)?;
        self.check_decryption_version(&policy, version)?;
        if fields.bool("prehashed")?.unwrap_or(false) {
            return Err(ApiError::bad_request(
                "prehashed input is not supported by vaultd",
            ));
        }
        if let Some(hash) = fields.string("hash_algorithm")?
            && hash != "sha2-256"
            && policy.key_type == KeyType::EcdsaP256
        {
            return Err(ApiError::bad_request(format!(
                "hash algorithm {hash} is not supported for ecdsa-p256; use sha2-256"
            )));
        }
        if let Some(marshaling) = fields.string("marshaling_algorithm")?
            && marshaling != "asn1"
        {
            return Err(ApiError::bad_request(format!(
                "marshaling algorithm {marshaling} is not supported; use asn1"
            )));
        }
        let input = required_base64(&mut fields, "input", "missing input to sign")?;
        let material = self.version(mount, name, version)?;
        let pkcs8 = material.key_bytes()?;
        let signature = match policy.key_type {
            KeyType::Ed25519 => Ed25519KeyPair::from_pkcs8(&pkcs8)
                .map_err(|_| ApiError::internal("bad stored ed25519 key"))?
                .sign(&input)
                .as_ref()
                .to_vec(),
            KeyType::EcdsaP256 => {
                let rng = ring::rand::SystemRandom::new();
                let pair = EcdsaKeyPair::from_pkcs8(
                    &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                    &pkcs8,
                    &rng,
                )
                .map_err(|_| ApiError::internal("bad stored P-256 key"))?;
                pair.sign(&rng, &input)
                    .map_err(|_| ApiError::internal("signing failed"))?
                    .as_ref()
                    .to_vec()
            }
            other => {
                return Err(ApiError::bad_request(format!(
                    "key type {} does not support signing",
                    other.name()
                )));
            }
        };
        Ok(Response::data(json!({"signature": format!("vault:v{version}:{}", BASE64.encode(signature)), "key_version": version})).with_warnings(fields.unknown()))
    }

    fn verify(
        &self,
        mount: MountId,
        name: &str,
        request: &Request,
        algorithm: Option<&&str>,
    ) -> Result<Response, ApiError> {
        let (policy, _) = self.existing(mount, name)?;
        let mut fields = keyed_fields(request);
        let input = required_base64(&mut fields, "input", "missing input to verify")?;
        let valid = if let Some(mac) = fields.string("hmac")? {
            let algorithm = hmac_algorithm(
                algorithm
                    .copied()
                    .map(String::from)
                    .or(fields.string("algorithm")?)
                    .as_deref(),
            )?;
            let (version, tag) = parse_versioned(&mac)?;
            self.check_decryption_version(&policy, version)?;
            let key_bytes = self.hmac_key(mount, &policy, version)?;
            ring::hmac::verify(&ring::hmac::Key::new(algorithm, &key_bytes), &input, &tag).is_ok()
        } else {
            let signature = fields
                .string("signature")?
                .ok_or_else(|| ApiError::bad_request("missing signature or hmac to verify"))?;
            let (version, sig) = parse_versioned(&signature)?;
            self.check_decryption_version(&policy, version)?;
            let material = self.version(mount, name, version)?;
            let pkcs8 = material.key_bytes()?;
            match policy.key_type {
                KeyType::Ed25519 => {
                    let pair = Ed25519KeyPair::from_pkcs8(&pkcs8)
                        .map_err(|_| ApiError::internal("bad stored ed25519 key"))?;
                    UnparsedPublicKey::new(&signature::ED25519, pair.public_key().as_ref())
                        .verify(&input, &sig)
                        .is_ok()
                }
                KeyType::EcdsaP256 => {
                    let rng = ring::rand::SystemRandom::new();
                    let pair = EcdsaKeyPair::from_pkcs8(
                        &signature::ECDSA_P256_SHA256_ASN1_SIGNING,
                        &pkcs8,
                        &rng,
                    )
                    .map_err(|_| ApiError::internal("bad stored P-256 key"))?;
                    UnparsedPublicKey::new(
                        &signature::ECDSA_P256_SHA256_ASN1,
                        pair.public_key().as_ref(),
                    )
                    .verify(&input, &sig)
                    .is_ok()
                }
                other => {
                    return Err(ApiError::bad_request(format!(
                        "key type {} does not support verification",
                        other.name()
                    )));
                }
            }
        };
        for ignored in [
            "hash_algorithm",
            "marshaling_algorithm",
            "prehashed",
            "signature_algorithm",
        ] {
            let _ = fields.value(ignored);
        }
        Ok(Response::data(json!({"valid": valid})).with_warnings(fields.unknown()))
    }

    /// Counts `n` encryptions with the latest version, rotating the key first if they would
    /// pass its limit; answers the policy to encrypt with. Checking and counting are one
    /// step, so concurrent requests near the limit rotate the key instead of failing.
    fn make_room(
        &self,
        mount: MountId,
        policy: KeyPolicy,
        n: u64,
        now: SystemTime,
    ) -> Result<KeyPolicy, ApiError> {
        let name = policy.name.clone();
        if n == 0
            || self
                .counters
                .try_count(mount, &name, policy.latest_version, n)?
        {
            return Ok(policy);
        }
        if n > self.counters.limit() {
            return Err(ApiError::bad_request(format!(
                "the batch is larger than a key version's {} encryptions",
                self.counters.limit()
            )));
        }
        if policy.imported && !policy.allow_rotation {
            return Err(ApiError::bad_request(format!(
                "key version {} of {name} has reached its encryption limit, and the imported key does not allow rotation: import a new version",
                policy.latest_version
            )));
        }
        let _one = self.rotating.lock().unwrap_or_else(|p| p.into_inner());
        // Another request may have rotated it meanwhile.
        let (fresh, _) = self.existing(mount, &name)?;
        if self
            .counters
            .try_count(mount, &name, fresh.latest_version, n)?
        {
            return Ok(fresh);
        }
        let version = self.rotate_key(mount, &name, now)?;
        tracing::info!(key = %name, version, "transit key reached its encryption limit; rotated");
        if !self.counters.try_count(mount, &name, version, n)? {
            return Err(ApiError::internal(
                "a new key version has no room to encrypt",
            ));
        }
        Ok(self.existing(mount, &name)?.0)
    }

    fn check_decryption_version(&self, policy: &KeyPolicy, version: u32) -> Result<(), ApiError> {
        if version == 0 || version > policy.latest_version {
            return Err(ApiError::bad_request("invalid key version"));
        }
        if version < policy.min_decryption_version || version < policy.min_available_version {
            return Err(ApiError::bad_request(
                "ciphertext or signature version is disallowed by policy (too old)",
            ));
        }
        Ok(())
    }

    /// Runs `one` on the request's fields, or on each item of `batch_input`, answering
    /// `batch_results` with per-item errors as Vault does: every result carries the item's
    /// `reference` (empty if it had none), and a batch in which an item failed answers 400
    /// with the results, or `partial_failure_response_code` if some items succeeded.
    fn batch(
        &self,
        request: &Request,
        known: &[&'static str],
        one: impl Fn(&Map<String, Value>) -> Result<Value, ApiError>,
    ) -> Result<Response, ApiError> {
        let Some(batch) = request.data.get("batch_input") else {
            let mut fields = keyed_fields(request);
            for name in known {
                let _ = fields.value(name);
            }
            let _ = fields.value("partial_failure_response_code");
            let warnings = fields.unknown();
            let mut result = one(&request.data)?;
            if let Value::Object(map) = &mut result {
                map.remove("reference");
            }
            return Ok(Response::data(result).with_warnings(warnings));
        };
        let items = batch
            .as_array()
            .ok_or_else(|| ApiError::bad_request("batch_input must be a list"))?;
        if items.len() > MAX_BATCH {
            return Err(ApiError::bad_request(format!(
                "batch_input has more than {MAX_BATCH} items"
            )));
        }
        let partial_code = match request.data.get("partial_failure_response_code") {
            None | Some(Value::Null) => None,
            Some(code) => Some(
                code.as_u64()
                    .or_else(|| code.as_str().and_then(|s| s.parse().ok()))
                    .and_then(|c| u16::try_from(c).ok())
                    .filter(|c| (200..=599).contains(c))
                    .ok_or_else(|| {
                        ApiError::bad_request("partial_failure_response_code must be 200 to 599")
                    })?,
            ),
        };
        let (mut user_error, mut internal_error, mut succeeded) = (false, false, false);
        let results: Vec<Value> = items
            .iter()
            .map(|item| {
                let empty = Map::new();
                let map = item.as_object().unwrap_or(&empty);
                let outcome = if item.is_object() {
                    one(map)
                } else {
                    Err(ApiError::bad_request("batch item is not an object"))
                };
                let mut result = match outcome {
                    Ok(result) => {
                        succeeded = true;
                        result
                    }
                    Err(e) => {
                        if e.status >= 500 {
                            internal_error = true;
                        } else {
                            user_error = true;
                        }
                        json!({"error": e.messages.join("; ")})
                    }
                };
                if let Value::Object(out) = &mut result {
                    let reference = map.get("reference").cloned().unwrap_or_else(|| json!(""));
                    out.insert("reference".into(), reference);
                }
                result
            })
            .collect();
        let mut response = Response::data(json!({"batch_results": results}));
        // As Vault: 400 for a client's mistake in any item, else 500 for a server failure,
        // unless some items succeeded and the caller named its own code for that.
        if user_error || internal_error {
            response.status = Some(match partial_code {
                Some(code) if succeeded => code,
                _ if user_error => 400,
                _ => 500,
            });
        }
        Ok(response)
    }
}

impl Request {
    /// A copy of the request's identity and caller, without its data.
    fn clone_meta(&self) -> Request {
        Request {
            id: self.id.clone(),
            operation: self.operation,
            path: self.path.clone(),
            data: Map::new(),
            token: None,
            remote: self.remote,
            wrap_ttl: self.wrap_ttl,
            client_certificates: self.client_certificates.clone(),
        }
    }
}

fn random(request: &Request, bytes_in_path: Option<&&str>) -> Result<Response, ApiError> {
    let mut fields = Fields::new(request);
    let bytes = match bytes_in_path {
        Some(text) if text.chars().all(|c| c.is_ascii_digit()) => text
            .parse()
            .map_err(|_| ApiError::bad_request("bytes must be a number"))?,
        Some(source) if ["platform", "seal", "all"].contains(source) => {
            fields.u64("bytes")?.unwrap_or(32)
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "invalid bytes or source {other:?}"
            )));
        }
        None => fields.u64("bytes")?.unwrap_or(32),
    };
    if bytes == 0 || bytes > 128 * 1024 {
        return Err(ApiError::bad_request("bytes must be between 1 and 131072"));
    }
    let mut out = vec![0u8; bytes as usize];
    crypto::fill_random(&mut out).map_err(|e| ApiError::internal(e.to_string()))?;
    let encoded = match fields.string("format")?.as_deref().unwrap_or("base64") {
        "base64" => BASE64.encode(&out),
        "hex" => hex::encode(&out),
        other => {
            return Err(ApiError::bad_request(format!(
                "unsupported encoding format {other}; must be base64 or hex"
            )));
        }
    };
    let _ = fields.string("source")?;
    Ok(Response::data(json!({"random_bytes": encoded})).with_warnings(fields.unknown()))
}

fn hash(request: &Request, algorithm_in_path: Option<&&str>) -> Result<Response, ApiError> {
    let mut fields = Fields::new(request);
    let algorithm = algorithm_in_path
        .copied()
        .map(String::from)
        .or(fields.string("algorithm")?)
        .unwrap_or_else(|| "sha2-256".into());
    let digest_algorithm = match algorithm.as_str() {
        "sha2-256" => &ring::digest::SHA256,
        "sha2-384" => &ring::digest::SHA384,
        "sha2-512" => &ring::digest::SHA512,
        other => {
            return Err(ApiError::bad_request(format!(
                "unsupported hash algorithm {other}: vaultd supports sha2-256, sha2-384 and sha2-512"
            )));
        }
    };
    let input = required_base64(&mut fields, "input", "missing input to hash")?;
    let digest = ring::digest::digest(digest_algorithm, &input);
    let sum = match fields.string("format")?.as_deref().unwrap_or("hex") {
        "hex" => hex::encode(digest.as_ref()),
        "base64" => BASE64.encode(digest.as_ref()),
        other => {
            return Err(ApiError::bad_request(format!(
                "unsupported encoding format {other}; must be hex or base64"
            )));
        }
    };
    Ok(Response::data(json!({"sum": sum})).with_warnings(fields.unknown()))
}

fn hmac_algorithm(name: Option<&str>) -> Result<ring::hmac::Algorithm, ApiError> {
    match name.unwrap_or("sha2-256") {
        "sha2-256" => Ok(ring::hmac::HMAC_SHA256),
        "sha2-384" => Ok(ring::hmac::HMAC_SHA384),
        "sha2-512" => Ok(ring::hmac::HMAC_SHA512),
        other => Err(ApiError::bad_request(format!(
            "unsupported algorithm {other}: vaultd supports sha2-256, sha2-384 and sha2-512"
        ))),
    }
}

/// Splits `vault:v<N>:<base64>`.
fn parse_versioned(text: &str) -> Result<(u32, Vec<u8>), ApiError> {
    let invalid =
        || ApiError::bad_request("invalid ciphertext: expected vault:v<version>:<base64>");
    let rest = text.trim().strip_prefix("vault:v").ok_or_else(invalid)?;
    let (version, body) = rest.split_once(':').ok_or_else(invalid)?;
    let version: u32 = version.parse().map_err(|_| invalid())?;
    let bytes = BASE64.decode(body).map_err(|_| invalid())?;
    Ok((version, bytes))
}

/// The version a request's `key_version` names: the latest for none or 0.
fn requested_version(policy: &KeyPolicy, requested: Option<u64>) -> Result<u32, ApiError> {
    match requested {
        Some(0) | None => Ok(policy.latest_version),
        Some(v) => u32::try_from(v).map_err(|_| ApiError::bad_request("key_version is too large")),
    }
}

/// The base64 field `name`, which must be present (`missing` says so when it is not).
fn required_base64(
    fields: &mut Fields<'_>,
    name: &'static str,
    missing: &str,
) -> Result<Vec<u8>, ApiError> {
    // The field may hold a plaintext: its text copy is zeroized too.
    let text = Zeroizing::new(
        fields
            .string(name)?
            .ok_or_else(|| ApiError::bad_request(missing))?,
    );
    BASE64
        .decode(text.trim())
        .map_err(|_| ApiError::bad_request(format!("{name} is not base64")))
}

fn decode_optional(value: Option<String>, name: &str) -> Result<Vec<u8>, ApiError> {
    match value.filter(|v| !v.is_empty()) {
        Some(text) => BASE64
            .decode(text.trim())
            .map_err(|_| ApiError::bad_request(format!("{name} is not base64"))),
        None => Ok(Vec::new()),
    }
}

/// A valid `auto_rotate_period` in seconds: 0 (off) or at least an hour, as Vault allows.
fn auto_rotate_period(period: Option<Duration>) -> Result<Option<u64>, ApiError> {
    match period {
        Some(p) if !p.is_zero() && p < Duration::from_secs(3600) => Err(ApiError::bad_request(
            "auto_rotate_period must be 0 or at least 1h",
        )),
        other => Ok(other.map(|p| p.as_secs())),
    }
}

/// The version a request's `key_version` asks to encrypt with: the latest for none or 0.
fn encryption_version(policy: &KeyPolicy, requested: Option<u64>) -> Result<u32, ApiError> {
    let version = requested_version(policy, requested)?;
    if version > policy.latest_version
        || version
            < policy
                .min_encryption_version
                .max(policy.min_available_version)
    {
        return Err(ApiError::bad_request(
            "requested key version is not available for encryption",
        ));
    }
    Ok(version)
}

/// How many encryptions a request makes with the latest key version (those without a
/// `key_version`).
fn latest_uses(request: &Request) -> u64 {
    let latest = |version: Option<&Value>| {
        version.is_none_or(|v| v.is_null() || v.as_u64() == Some(0) || v.as_str() == Some("0"))
    };
    match request.data.get("batch_input") {
        Some(Value::Array(items)) => items
            .iter()
            .filter(|i| latest(i.get("key_version")))
            .count() as u64,
        _ => u64::from(latest(request.data.get("key_version"))),
    }
}

/// The fields of a request to a path that names a key. `name` is a field of those paths in
/// Vault, and clients (hvac) repeat it in the body, so it is not an unknown parameter.
fn keyed_fields(request: &Request) -> Fields<'_> {
    let mut fields = Fields::new(request);
    let _ = fields.value("name");
    fields
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 128
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
    {
        return Err(ApiError::bad_request(
            "key names are 1 to 128 letters, digits, '-', '_' or '.'",
        ));
    }
    Ok(())
}

fn encode<T: Serialize>(value: &T) -> Result<Vec<u8>, ApiError> {
    serde_json::to_vec(value).map_err(|e| ApiError::internal(e.to_string()))
}

fn conflict(e: BarrierError) -> ApiError {
    match e {
        BarrierError::Conflict { .. } => {
            ApiError::bad_request("the key changed concurrently; retry")
        }
        other => other.into(),
    }
}

fn policy_id(mount: MountId, name: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::TransitKey,
        mount,
        format!("policy/{name}"),
        0,
    )?)
}

fn version_id(mount: MountId, name: &str, version: u32) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::TransitKey,
        mount,
        format!("version/{name}"),
        u64::from(version),
    )?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signing_keys_export_as_vault_lays_them_out() {
        let ed = KeyVersion::generate(KeyType::Ed25519, SystemTime::now()).unwrap();
        let raw = BASE64
            .decode(
                exported_signing_key(KeyType::Ed25519, &ed.key_bytes().unwrap())
                    .unwrap()
                    .as_bytes(),
            )
            .unwrap();
        assert_eq!(raw.len(), 64);
        assert_eq!(BASE64.encode(&raw[32..]), ed.public_key.clone().unwrap());

        let ec = KeyVersion::generate(KeyType::EcdsaP256, SystemTime::now()).unwrap();
        let pem = exported_signing_key(KeyType::EcdsaP256, &ec.key_bytes().unwrap()).unwrap();
        assert!(
            pem.starts_with("-----BEGIN EC PRIVATE KEY-----\nMHcCAQEEI"),
            "{}",
            pem.len()
        );
        assert!(pem.ends_with("-----END EC PRIVATE KEY-----"));

        assert!(exported_signing_key(KeyType::Ed25519, b"not pkcs8").is_err());
        assert!(exported_signing_key(KeyType::Hmac, &[]).is_err());
    }
}
