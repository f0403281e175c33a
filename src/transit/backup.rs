//! Vault's transit backup format, so keys move between Vault, OpenBao and vaultd.
//!
//! A backup is the base64 of one JSON document, Vault's `KeyData`: the key's `policy` (its
//! settings and the versions that can still decrypt, under `keys`) and `archived_keys`
//! (every available version, indexed from `min_available_version`). Byte strings are base64;
//! P-256 keys are three decimal integers (`ec_x`, `ec_y`, `ec_d`), which are read and written
//! as raw JSON numbers because they do not fit a float.
//!
//! Key types are numbered as OpenBao numbers them; Vault agrees on every number but its
//! `hmac` (11, where OpenBao has `xchacha20-poly1305`). A type-11 key that carries
//! `key_size`, as every `hmac` key does and no XChaCha key does, is read as Vault's `hmac`.
//! Backups vaultd writes use OpenBao's numbers, so Vault reads vaultd's `hmac` keys as
//! managed keys and refuses them.

use std::collections::BTreeMap;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_ASN1_SIGNING, EcdsaKeyPair, Ed25519KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use zeroize::Zeroizing;

use super::{
    Kdf, KeyPolicy, KeyType, KeyVersion, auto_rotate_period, p256_public_pem, signing_parts,
};
use crate::api::ApiError;

/// Vault's numbers for its key derivations.
const KDF_HMAC_SHA256_COUNTER: u32 = 0;
const KDF_HKDF_SHA256: u32 = 1;

/// The ciphertext prefix every vaultd key uses, as Vault writes its template.
const VERSION_TEMPLATE: &str = "vault:v{{version}}:";

/// When a backup was taken of a key or restored into one, with the key's latest version then.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct Stamp {
    /// RFC 3339 with nanoseconds.
    pub(super) time: String,
    /// The latest version at the time.
    pub(super) version: u32,
}

impl Stamp {
    pub(super) fn new(now: SystemTime, version: u32) -> Stamp {
        Stamp {
            time: crate::duration::timestamp(now),
            version,
        }
    }
}

impl KeyType {
    /// The number of this type in a backup.
    fn backup_number(self) -> u32 {
        match self {
            KeyType::Aes256Gcm96 => 0,
            KeyType::EcdsaP256 => 1,
            KeyType::Ed25519 => 2,
            KeyType::ChaCha20Poly1305 => 5,
            KeyType::Hmac => 10,
            KeyType::XChaCha20Poly1305 => 11,
        }
    }

    /// The type a backup's number (and `key_size`) stands for.
    fn from_backup(number: u32, key_size: u32) -> Result<KeyType, ApiError> {
        Ok(match (number, key_size) {
            (0, _) => KeyType::Aes256Gcm96,
            (1, _) => KeyType::EcdsaP256,
            (2, _) => KeyType::Ed25519,
            (5, _) => KeyType::ChaCha20Poly1305,
            (10, _) => KeyType::Hmac,
            (11, 0) => KeyType::XChaCha20Poly1305,
            (11, _) => KeyType::Hmac,
            (other, _) => {
                return Err(ApiError::bad_request(format!(
                    "the backup holds a key of type number {other}, which vaultd does not support: it restores aes256-gcm96, chacha20-poly1305, xchacha20-poly1305, ed25519, ecdsa-p256 and hmac keys"
                )));
            }
        })
    }
}

/// `policy` with `versions` (every available version, oldest first) as a backup.
pub(super) fn encode(
    policy: &KeyPolicy,
    versions: &[(u32, KeyVersion)],
) -> Result<Zeroizing<String>, ApiError> {
    let entries = versions
        .iter()
        .map(|(version, material)| Ok((*version, EntryOut::new(policy.key_type, material)?)))
        .collect::<Result<Vec<_>, ApiError>>()?;
    let blank = EntryOut::blank();
    // Vault's archive is indexed from min_available_version, version 0 being a blank entry.
    let mut archive: Vec<&EntryOut> = Vec::with_capacity(entries.len() + 1);
    if policy.min_available_version == 0 {
        archive.push(&blank);
    }
    archive.extend(entries.iter().map(|(_, entry)| entry));
    let keys = entries
        .iter()
        .filter(|(version, _)| *version >= policy.min_decryption_version)
        .map(|(version, entry)| (version.to_string(), entry))
        .collect();
    let document = KeyDataOut {
        policy: PolicyOut {
            name: &policy.name,
            key_size: (policy.key_type == KeyType::Hmac).then_some(32),
            keys,
            derived: policy.derived,
            kdf: match policy.kdf {
                Kdf::HkdfSha256 if policy.derived => KDF_HKDF_SHA256,
                _ => KDF_HMAC_SHA256_COUNTER,
            },
            convergent_encryption: false,
            exportable: policy.exportable,
            min_decryption_version: policy.min_decryption_version,
            min_encryption_version: policy.min_encryption_version,
            latest_version: policy.latest_version,
            archive_version: policy.latest_version,
            archive_min_version: policy.min_available_version,
            min_available_version: policy.min_available_version,
            deletion_allowed: policy.deletion_allowed,
            convergent_version: 0,
            key_type: policy.key_type.backup_number(),
            backup_info: policy.backup_info.as_ref(),
            restore_info: policy.restore_info.as_ref(),
            allow_plaintext_backup: policy.allow_plaintext_backup,
            version_template: "",
            storage_prefix: "",
            auto_rotate_period: policy.auto_rotate_period.saturating_mul(1_000_000_000),
            imported: policy.imported,
            allow_imported_key_rotation: policy.allow_rotation,
        },
        archived_keys: ArchiveOut { keys: archive },
    };
    let json = to_json(&document)?;
    Ok(Zeroizing::new(BASE64.encode(&*json)))
}

/// The key a backup holds, named `name` if given (else as in the backup), with every
/// available version, oldest first. Nothing of the backup's content appears in an error.
pub(super) fn decode(
    backup: &str,
    name: Option<&str>,
    now: SystemTime,
) -> Result<(KeyPolicy, Vec<(u32, KeyVersion)>), ApiError> {
    let json = BASE64
        .decode(backup.trim())
        .map(Zeroizing::new)
        .map_err(|_| ApiError::bad_request("backup is not base64"))?;
    let data: KeyDataIn<'_> = serde_json::from_slice(&json).map_err(|e| {
        ApiError::bad_request(format!(
            "backup is not Vault's key data ({:?} error at line {}, column {})",
            e.classify(),
            e.line(),
            e.column()
        ))
    })?;
    let Some(input) = data.policy else {
        return Err(ApiError::bad_request("backup has no policy"));
    };
    let key_type = KeyType::from_backup(input.key_type, input.key_size)?;
    if input.convergent_encryption {
        return Err(ApiError::bad_request(
            "the backup holds a convergent key; vaultd does not support convergent encryption",
        ));
    }
    if input.derived && key_type.aead().is_none() {
        return Err(ApiError::bad_request(format!(
            "vaultd derives only encryption keys, not {} keys",
            key_type.name()
        )));
    }
    let kdf = match input.kdf {
        KDF_HKDF_SHA256 => Kdf::HkdfSha256,
        KDF_HMAC_SHA256_COUNTER if input.derived => Kdf::HmacSha256Counter,
        KDF_HMAC_SHA256_COUNTER => Kdf::default(),
        other => {
            return Err(ApiError::bad_request(format!(
                "the backup's key uses key derivation number {other}, which vaultd does not know"
            )));
        }
    };
    if !input.version_template.is_empty() && input.version_template != VERSION_TEMPLATE {
        return Err(ApiError::bad_request(
            "the backup's key has a custom version_template; vaultd writes vault:v<N>: only",
        ));
    }
    let name = match name.filter(|n| !n.is_empty()) {
        Some(name) => name.to_string(),
        None if !input.name.is_empty() => input.name.clone(),
        None => {
            return Err(ApiError::bad_request(
                "the backup names no key: give a name",
            ));
        }
    };

    let latest = version_field(input.latest_version, "latest_version")?;
    let min_available = version_field(input.min_available_version, "min_available_version")?;
    let min_decryption = version_field(input.min_decryption_version, "min_decryption_version")?;
    let min_encryption = version_field(input.min_encryption_version, "min_encryption_version")?;
    let min_decryption = min_decryption.max(1);
    if latest == 0
        || min_decryption > latest
        || min_encryption > latest
        || min_available > min_decryption
        || (min_encryption > 0 && min_encryption < min_decryption)
    {
        return Err(ApiError::bad_request(
            "the backup's key versions are inconsistent (latest, min_available, min_decryption and min_encryption versions)",
        ));
    }
    let period = Duration::from_nanos(u64::try_from(input.auto_rotate_period).unwrap_or(0));
    let policy = KeyPolicy {
        name,
        key_type,
        latest_version: latest,
        min_available_version: min_available,
        min_decryption_version: min_decryption,
        min_encryption_version: min_encryption,
        deletion_allowed: input.deletion_allowed,
        exportable: input.exportable,
        allow_plaintext_backup: input.allow_plaintext_backup,
        auto_rotate_period: auto_rotate_period(Some(period))?.unwrap_or(0),
        derived: input.derived,
        kdf,
        imported: input.imported,
        allow_rotation: input.allow_imported_key_rotation,
        backup_info: input.backup_info,
        restore_info: Some(Stamp::new(now, latest)),
    };

    let archive = data.archived_keys.and_then(|a| a.keys).unwrap_or_default();
    let keys = input.keys.unwrap_or_default();
    // Every version from the first available one is in the backup, so a backup can name no
    // more versions than it holds entries.
    if u64::from(latest - min_available.max(1) + 1) > (keys.len() + archive.len()) as u64 {
        return Err(ApiError::bad_request(
            "the backup names more key versions than it holds",
        ));
    }
    let mut versions = Vec::new();
    for version in min_available.max(1)..=latest {
        let from_archive = usize::try_from(version - min_available)
            .ok()
            .and_then(|i| archive.get(i));
        let entry = keys
            .get(&version.to_string())
            .or(from_archive)
            .ok_or_else(|| {
                ApiError::bad_request(format!("the backup lacks key version {version}"))
            })?;
        let material = entry
            .material(key_type)
            .map_err(|what| ApiError::bad_request(format!("key version {version}: {what}")))?;
        versions.push((version, material));
    }
    Ok((policy, versions))
}

fn version_field(value: i64, name: &str) -> Result<u32, ApiError> {
    u32::try_from(value)
        .map_err(|_| ApiError::bad_request(format!("the backup's {name} is out of range")))
}

/// Serialises `value` into a buffer of exactly its size, so no copy of the key material is
/// left behind in a buffer that grew and moved.
fn to_json<T: Serialize>(value: &T) -> Result<Zeroizing<Vec<u8>>, ApiError> {
    let fail = |e: serde_json::Error| ApiError::internal(format!("cannot write a backup: {e}"));
    let mut counter = Counter(0);
    serde_json::to_writer(&mut counter, value).map_err(fail)?;
    let mut out = Zeroizing::new(Vec::with_capacity(counter.0));
    serde_json::to_writer(&mut *out, value).map_err(fail)?;
    Ok(out)
}

struct Counter(usize);

impl io::Write for Counter {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.0 += bytes.len();
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[derive(Serialize)]
struct KeyDataOut<'a> {
    policy: PolicyOut<'a>,
    archived_keys: ArchiveOut<'a>,
}

#[derive(Serialize)]
struct ArchiveOut<'a> {
    keys: Vec<&'a EntryOut>,
}

/// Vault's `keysutil.Policy`, with the field names and types it writes.
#[derive(Serialize)]
struct PolicyOut<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    key_size: Option<u32>,
    keys: BTreeMap<String, &'a EntryOut>,
    derived: bool,
    kdf: u32,
    convergent_encryption: bool,
    exportable: bool,
    min_decryption_version: u32,
    min_encryption_version: u32,
    latest_version: u32,
    archive_version: u32,
    archive_min_version: u32,
    min_available_version: u32,
    deletion_allowed: bool,
    convergent_version: u32,
    #[serde(rename = "type")]
    key_type: u32,
    backup_info: Option<&'a Stamp>,
    restore_info: Option<&'a Stamp>,
    allow_plaintext_backup: bool,
    version_template: &'static str,
    storage_prefix: &'static str,
    /// Nanoseconds, as Go writes a `time.Duration`.
    auto_rotate_period: u64,
    #[serde(rename = "Imported")]
    imported: bool,
    #[serde(rename = "AllowImportedKeyRotation")]
    allow_imported_key_rotation: bool,
}

/// Vault's `keysutil.KeyEntry`: one version. No `Debug`; the key material zeroizes.
#[derive(Serialize)]
struct EntryOut {
    key: Option<Zeroizing<String>>,
    hmac_key: Option<Zeroizing<String>>,
    time: String,
    ec_x: Option<Decimal>,
    ec_y: Option<Decimal>,
    ec_d: Option<Decimal>,
    rsa_key: Option<()>,
    rsa_public_key: Option<()>,
    public_key: String,
    convergent_version: u32,
    creation_time: u64,
    certificate_chain: Option<()>,
}

impl EntryOut {
    fn new(key_type: KeyType, material: &KeyVersion) -> Result<EntryOut, ApiError> {
        let mut entry = EntryOut {
            hmac_key: Some(Zeroizing::new(material.hmac_key.clone())),
            time: crate::duration::timestamp(UNIX_EPOCH + Duration::from_secs(material.created)),
            creation_time: material.created,
            ..EntryOut::blank()
        };
        match key_type {
            KeyType::Aes256Gcm96 | KeyType::ChaCha20Poly1305 | KeyType::XChaCha20Poly1305 => {
                entry.key = Some(Zeroizing::new(material.key.clone()));
            }
            // Vault keeps an hmac key's material in both fields.
            KeyType::Hmac => {
                entry.key = Some(Zeroizing::new(material.key.clone()));
                entry.hmac_key = Some(Zeroizing::new(material.key.clone()));
            }
            KeyType::Ed25519 => {
                let parts = signing_parts(key_type, &material.key_bytes()?)?;
                entry.key = Some(Zeroizing::new(BASE64.encode(&*parts.joined())));
                entry.public_key = BASE64.encode(&parts.public);
            }
            KeyType::EcdsaP256 => {
                let parts = signing_parts(key_type, &material.key_bytes()?)?;
                let (x, y) = parts.public[1..].split_at(32);
                entry.ec_x = Some(Decimal::of(x));
                entry.ec_y = Some(Decimal::of(y));
                entry.ec_d = Some(Decimal::of(&parts.private));
                entry.public_key = p256_public_pem(&parts.public);
            }
        }
        Ok(entry)
    }

    /// Version 0 of Vault's archive, which holds nothing.
    fn blank() -> EntryOut {
        EntryOut {
            key: None,
            hmac_key: None,
            time: "0001-01-01T00:00:00Z".into(),
            ec_x: None,
            ec_y: None,
            ec_d: None,
            rsa_key: None,
            rsa_public_key: None,
            public_key: String::new(),
            convergent_version: 0,
            creation_time: 0,
            certificate_chain: None,
        }
    }
}

/// A non-negative integer in decimal, written as a bare JSON number.
struct Decimal(Zeroizing<String>);

impl Decimal {
    fn of(big_endian: &[u8]) -> Decimal {
        Decimal(bytes_to_decimal(big_endian))
    }
}

impl Serialize for Decimal {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        // Borrowed from our own digits, so no unzeroized copy is made.
        let raw: &RawValue = serde_json::from_str(&self.0).map_err(serde::ser::Error::custom)?;
        raw.serialize(serializer)
    }
}

#[derive(Deserialize)]
struct KeyDataIn<'a> {
    #[serde(borrow)]
    policy: Option<PolicyIn<'a>>,
    #[serde(borrow, default)]
    archived_keys: Option<ArchiveIn<'a>>,
}

#[derive(Deserialize)]
struct ArchiveIn<'a> {
    #[serde(borrow, default)]
    keys: Option<Vec<EntryIn<'a>>>,
}

#[derive(Deserialize)]
struct PolicyIn<'a> {
    #[serde(default)]
    name: String,
    #[serde(default)]
    key_size: u32,
    #[serde(borrow, default)]
    keys: Option<BTreeMap<String, EntryIn<'a>>>,
    #[serde(default)]
    derived: bool,
    #[serde(default)]
    kdf: u32,
    #[serde(default)]
    convergent_encryption: bool,
    #[serde(default)]
    exportable: bool,
    #[serde(default)]
    min_decryption_version: i64,
    #[serde(default)]
    min_encryption_version: i64,
    #[serde(default)]
    latest_version: i64,
    #[serde(default)]
    min_available_version: i64,
    #[serde(default)]
    deletion_allowed: bool,
    #[serde(rename = "type", default)]
    key_type: u32,
    #[serde(default)]
    backup_info: Option<Stamp>,
    #[serde(default)]
    allow_plaintext_backup: bool,
    #[serde(default)]
    version_template: String,
    /// Nanoseconds.
    #[serde(default)]
    auto_rotate_period: i64,
    #[serde(rename = "Imported", default)]
    imported: bool,
    #[serde(rename = "AllowImportedKeyRotation", default)]
    allow_imported_key_rotation: bool,
}

/// One version as a backup holds it. No `Debug`; the key material zeroizes.
#[derive(Deserialize)]
struct EntryIn<'a> {
    #[serde(default)]
    key: Option<Zeroizing<String>>,
    #[serde(default)]
    hmac_key: Option<Zeroizing<String>>,
    #[serde(borrow, default)]
    ec_x: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ec_y: Option<&'a RawValue>,
    #[serde(borrow, default)]
    ec_d: Option<&'a RawValue>,
    #[serde(default)]
    creation_time: i64,
}

impl EntryIn<'_> {
    /// This version's material for a key of `key_type`, checked; the error says what is
    /// wrong without showing any of it.
    fn material(&self, key_type: KeyType) -> Result<KeyVersion, &'static str> {
        // RFC 3339 ends with the year 9999.
        const LAST_TIME: i64 = 253_402_300_799;
        if self.creation_time > LAST_TIME {
            return Err("creation_time is after the year 9999");
        }
        let created = u64::try_from(self.creation_time).unwrap_or(0);
        let hmac_key = decode_bytes(self.hmac_key.as_deref()).ok_or("hmac_key is not base64")?;
        let (key, public_key) = match key_type {
            KeyType::Aes256Gcm96 | KeyType::ChaCha20Poly1305 | KeyType::XChaCha20Poly1305 => {
                let key = decode_bytes(self.key.as_deref()).ok_or("key is not base64")?;
                if key.len() != 32 {
                    return Err("an encryption key must be 32 bytes");
                }
                (key, None)
            }
            KeyType::Hmac => {
                // Vault keeps the material in both fields; older versions only in hmac_key.
                let key = decode_bytes(self.key.as_deref().or(self.hmac_key.as_deref()))
                    .ok_or("key is not base64")?;
                if !(32..=512).contains(&key.len()) {
                    return Err("an hmac key must be 32 to 512 bytes");
                }
                (key, None)
            }
            KeyType::Ed25519 => {
                let raw = decode_bytes(self.key.as_deref()).ok_or("key is not base64")?;
                if raw.len() != 64 {
                    return Err("an ed25519 key must be 64 bytes (seed and public key)");
                }
                let document = super::pkcs8::ed25519_document(&raw[..32], &raw[32..])
                    .ok_or("an ed25519 key must be 64 bytes (seed and public key)")?;
                Ed25519KeyPair::from_pkcs8(&document)
                    .map_err(|_| "the ed25519 public key does not match its seed")?;
                (document, Some(BASE64.encode(&raw[32..])))
            }
            KeyType::EcdsaP256 => {
                let coordinate =
                    |value: Option<&RawValue>| value.and_then(|v| decimal_to_bytes(v.get(), 32));
                let (Some(x), Some(y), Some(d)) = (
                    coordinate(self.ec_x),
                    coordinate(self.ec_y),
                    coordinate(self.ec_d),
                ) else {
                    return Err("a P-256 key needs ec_x, ec_y and ec_d below 2^256");
                };
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                let document = super::pkcs8::p256_document(&d, &point)
                    .ok_or("a P-256 key needs ec_x, ec_y and ec_d below 2^256")?;
                EcdsaKeyPair::from_pkcs8(
                    &ECDSA_P256_SHA256_ASN1_SIGNING,
                    &document,
                    &SystemRandom::new(),
                )
                .map_err(|_| "the P-256 key is not valid or its public point does not match")?;
                (document, Some(p256_public_pem(&point)))
            }
        };
        if key_type != KeyType::Hmac && hmac_key.is_empty() {
            return Err("hmac_key is missing");
        }
        Ok(KeyVersion {
            key: BASE64.encode(&*key),
            hmac_key: BASE64.encode(&*hmac_key),
            public_key,
            created,
        })
    }
}

fn decode_bytes(text: Option<&String>) -> Option<Zeroizing<Vec<u8>>> {
    match text {
        None => Some(Zeroizing::new(Vec::new())),
        Some(text) => BASE64.decode(text).ok().map(Zeroizing::new),
    }
}

/// A non-negative decimal integer as `len` big-endian bytes, or `None` if it is not one or
/// does not fit. Not constant-time: it runs once per restore, on the operator's input.
fn decimal_to_bytes(text: &str, len: usize) -> Option<Zeroizing<Vec<u8>>> {
    if text.is_empty() || text.len() > 3 * len || !text.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut out = Zeroizing::new(vec![0u8; len]);
    for digit in text.bytes() {
        let mut carry = u32::from(digit - b'0');
        for byte in out.iter_mut().rev() {
            let value = u32::from(*byte) * 10 + carry;
            *byte = (value & 0xff) as u8;
            carry = value >> 8;
        }
        if carry != 0 {
            return None;
        }
    }
    Some(out)
}

/// Big-endian bytes as a decimal integer, as Go writes a `big.Int`.
fn bytes_to_decimal(big_endian: &[u8]) -> Zeroizing<String> {
    let mut number = Zeroizing::new(big_endian.to_vec());
    let mut digits = Zeroizing::new(Vec::with_capacity(big_endian.len() * 3 + 1));
    while number.iter().any(|&b| b != 0) {
        let mut remainder = 0u32;
        for byte in number.iter_mut() {
            let value = (remainder << 8) | u32::from(*byte);
            *byte = (value / 10) as u8;
            remainder = value % 10;
        }
        digits.push(b'0' + remainder as u8);
    }
    if digits.is_empty() {
        digits.push(b'0');
    }
    digits.reverse();
    let mut text = Zeroizing::new(String::with_capacity(digits.len()));
    text.extend(digits.iter().map(|&d| char::from(d)));
    text
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn decimals_convert_as_go_writes_them() {
        assert_eq!(&*bytes_to_decimal(&[0, 0]), "0");
        assert_eq!(&*bytes_to_decimal(&[1, 0]), "256");
        assert_eq!(&**decimal_to_bytes("65535", 2).unwrap(), &[0xff, 0xff]);
        assert!(decimal_to_bytes("65536", 2).is_none());
        for bad in ["", "-1", "1e5", "12.0", " 1", "0x10"] {
            assert!(decimal_to_bytes(bad, 32).is_none(), "{bad:?}");
        }
        // 2^256 - 1 fits in 32 bytes; 2^256 does not.
        let max = "115792089237316195423570985008687907853269984665640564039457584007913129639935";
        assert_eq!(&**decimal_to_bytes(max, 32).unwrap(), &[0xff; 32]);
        let over = "115792089237316195423570985008687907853269984665640564039457584007913129639936";
        assert!(decimal_to_bytes(over, 32).is_none());
    }

    proptest! {
        #[test]
        fn decimals_round_trip(bytes in proptest::collection::vec(any::<u8>(), 32)) {
            let text = bytes_to_decimal(&bytes);
            prop_assert_eq!(&**decimal_to_bytes(&text, 32).unwrap(), &bytes[..]);
        }

        /// Whatever a client sends as a backup, decoding answers; it never panics.
        #[test]
        fn any_bytes_decode_without_panic(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = decode(&BASE64.encode(&bytes), None, SystemTime::now());
            let _ = decode(&String::from_utf8_lossy(&bytes), Some("k"), SystemTime::now());
        }

        /// A real backup with bytes changed anywhere decodes or is refused with 400.
        #[test]
        fn altered_backups_are_refused_or_decoded(
            key_type in prop_oneof![
                Just(KeyType::Aes256Gcm96),
                Just(KeyType::Ed25519),
                Just(KeyType::EcdsaP256),
                Just(KeyType::Hmac),
            ],
            flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let policy = KeyPolicy { exportable: true, allow_plaintext_backup: true, ..KeyPolicy::new("k", key_type) };
            let versions = vec![(1, KeyVersion::generate(key_type, SystemTime::now()).unwrap())];
            let text = encode(&policy, &versions).unwrap();
            let mut json = BASE64.decode(text.as_bytes()).unwrap();
            for (at, byte) in flips {
                let i = at.index(json.len());
                json[i] = byte;
            }
            if let Err(e) = decode(&BASE64.encode(&json), None, SystemTime::now()) {
                prop_assert_eq!(e.status, 400, "{}", e);
            }
        }
    }

    fn round_trip(key_type: KeyType) -> (KeyPolicy, Vec<(u32, KeyVersion)>) {
        let now = SystemTime::now();
        let versions: Vec<_> = (1..=3)
            .map(|v| (v, KeyVersion::generate(key_type, now).unwrap()))
            .collect();
        let policy = KeyPolicy {
            name: "k".into(),
            key_type,
            latest_version: 3,
            min_available_version: 0,
            min_decryption_version: 2,
            min_encryption_version: 0,
            deletion_allowed: false,
            exportable: true,
            allow_plaintext_backup: true,
            auto_rotate_period: 7200,
            derived: key_type.aead().is_some(),
            kdf: if key_type == KeyType::ChaCha20Poly1305 {
                Kdf::HmacSha256Counter
            } else {
                Kdf::HkdfSha256
            },
            imported: key_type == KeyType::Ed25519,
            allow_rotation: false,
            backup_info: None,
            restore_info: None,
        };
        let text = encode(&policy, &versions).unwrap();
        let (restored, material) = decode(&text, Some("renamed"), now).unwrap();
        assert_eq!(restored.name, "renamed");
        assert_eq!(restored.key_type, key_type);
        assert_eq!(restored.latest_version, 3);
        assert_eq!(restored.min_decryption_version, 2);
        assert_eq!(restored.auto_rotate_period, 7200);
        assert_eq!(restored.derived, policy.derived);
        assert_eq!(restored.kdf, policy.kdf);
        assert_eq!(restored.imported, policy.imported);
        assert_eq!(restored.restore_info.as_ref().map(|s| s.version), Some(3));
        assert_eq!(material.len(), 3);
        for ((v, before), (w, after)) in versions.iter().zip(&material) {
            assert_eq!(v, w);
            assert_eq!(before.public_key, after.public_key);
            assert_eq!(before.created, after.created);
            if key_type != KeyType::Hmac {
                assert_eq!(before.key, after.key);
                assert_eq!(before.hmac_key, after.hmac_key);
            }
        }
        (restored, material)
    }

    #[test]
    fn every_key_type_round_trips() {
        for key_type in [
            KeyType::Aes256Gcm96,
            KeyType::ChaCha20Poly1305,
            KeyType::XChaCha20Poly1305,
            KeyType::Ed25519,
            KeyType::EcdsaP256,
        ] {
            round_trip(key_type);
        }
        // An hmac key's material is its key, kept in both fields.
        let (_, material) = round_trip(KeyType::Hmac);
        assert!(material.iter().all(|(_, m)| m.key == m.hmac_key));
    }

    #[test]
    fn malformed_backups_are_refused_without_echoing_them() {
        let secret = "c2VjcmV0LW1hdGVyaWFsLXNlY3JldC1tYXRlcmlhbCE=";
        let cases = [
            "!!!".to_string(),
            BASE64.encode("{}"),
            BASE64.encode("not json"),
            BASE64.encode(format!(r#"{{"policy": {{"name": "k", "type": "{secret}"}}}}"#)),
            BASE64.encode(r#"{"policy": {"name": "k", "type": 3, "latest_version": 1}}"#),
            BASE64.encode(r#"{"policy": {"name": "k", "type": 0, "latest_version": 1}}"#),
            BASE64.encode(format!(
                r#"{{"policy": {{"name": "k", "type": 0, "latest_version": 1, "keys": {{"1": {{"key": "{secret}x", "hmac_key": "{secret}"}}}}}}}}"#
            )),
            BASE64.encode(format!(
                r#"{{"policy": {{"name": "k", "type": 0, "latest_version": 2, "keys": {{"1": {{"key": "{secret}", "hmac_key": "{secret}"}}}}}}}}"#
            )),
            BASE64.encode(
                r#"{"policy": {"name": "k", "type": 0, "latest_version": 1, "convergent_encryption": true, "derived": true, "kdf": 1}}"#,
            ),
            BASE64.encode(
                r#"{"policy": {"name": "k", "type": 0, "latest_version": 1, "derived": true, "kdf": 7}}"#,
            ),
            BASE64.encode(r#"{"policy": {"name": "k", "type": 0, "latest_version": -1}}"#),
            BASE64.encode(
                r#"{"policy": {"name": "k", "type": 1, "latest_version": 1, "keys": {"1": {"ec_x": 1, "ec_y": 2, "ec_d": 3, "hmac_key": "AAAA"}}}}"#,
            ),
            // Encrypting with versions it cannot decrypt.
            BASE64.encode(format!(
                r#"{{"policy": {{"name": "k", "type": 0, "latest_version": 2, "min_decryption_version": 2, "min_encryption_version": 1, "keys": {{"1": {{"key": "{secret}", "hmac_key": "{secret}"}}, "2": {{"key": "{secret}", "hmac_key": "{secret}"}}}}}}}}"#
            )),
            // A time no timestamp can show.
            BASE64.encode(format!(
                r#"{{"policy": {{"name": "k", "type": 0, "latest_version": 1, "keys": {{"1": {{"key": "{secret}", "hmac_key": "{secret}", "creation_time": 9223372036854775807}}}}}}}}"#
            )),
            // More versions than entries.
            BASE64.encode(format!(
                r#"{{"policy": {{"name": "k", "type": 0, "latest_version": 3, "keys": {{"1": {{"key": "{secret}", "hmac_key": "{secret}"}}}}}}}}"#
            )),
        ];
        for case in cases {
            let error = decode(&case, None, SystemTime::now())
                .err()
                .unwrap_or_else(|| panic!("accepted {case}"));
            assert_eq!(error.status, 400, "{case}: {error}");
            let text = error.to_string();
            assert!(!text.contains("c2VjcmV0"), "{text}");
        }
    }
}
