//! The audit log: every request and response after unseal, with sensitive strings replaced by
//! their HMAC, in a hash chain whose head is signed.
//!
//! Entries follow Vault's shape (`time`, `type`, `auth`, `request`, `response`, `error`) and
//! add a `chain` object: the entry's sequence number and the SHA-256 of the previous line.
//! After each group of entries is written, a `checkpoint` line signs the chain head with the
//! vault's Ed25519 audit key; then the file is synced, and only then are the requests that
//! wait on those entries allowed to proceed. `vaultd audit verify` checks a file offline.
//!
//! The audit keys (HMAC and signing) are barrier records, so they exist only while unsealed
//! and are never changed by a keyring rotation. A request whose entry cannot be made durable
//! within the configured time fails closed with 500 `audit log unavailable`.

mod device;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use ring::signature::{Ed25519KeyPair, KeyPair};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use self::device::FileDevice;
use crate::api::ApiError;
use crate::barrier::{Barrier, Expect, MountId, RecordId, RecordKind};
use crate::config::AuditDevice;
use crate::crypto::{self, hmac_sha256};

/// The prefix of an HMAC'd string in audit entries.
pub const HMAC_PREFIX: &str = "hmac-sha256:";

/// Offline verification of audit files, shared with `vaultctl`.
pub use vaultd_client::audit as verify;
pub use vaultd_client::audit::CHECKPOINT_CONTEXT;

/// The audit keys, loaded from the barrier at unseal. No `Debug`.
pub(crate) struct AuditKeys {
    hmac: Zeroizing<Vec<u8>>,
    signing: Ed25519KeyPair,
}

impl AuditKeys {
    pub(crate) fn sign(&self, message: &[u8]) -> String {
        BASE64.encode(self.signing.sign(message).as_ref())
    }
}

/// A device enabled through the API, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct StoredDevice {
    file_path: String,
    description: String,
}

/// The audit devices and keys.
pub struct AuditBroker {
    devices: RwLock<Vec<Arc<FileDevice>>>,
    keys: RwLock<Option<Arc<AuditKeys>>>,
    timeout: Duration,
    // Set once the devices of an unseal are open, cleared first thing at seal: while it is
    // clear nothing can be audited, so nothing may happen (no window at unseal or seal in
    // which requests would be served unaudited).
    ready: AtomicBool,
}

impl AuditBroker {
    /// A broker with no devices; `timeout` bounds each write.
    pub fn new(timeout: Duration) -> Self {
        AuditBroker {
            devices: RwLock::new(Vec::new()),
            keys: RwLock::new(None),
            timeout,
            ready: AtomicBool::new(false),
        }
    }

    /// Loads (or at first unseal creates) the audit keys and opens every device: those of the
    /// configuration and those enabled through the API.
    pub fn unseal(&self, barrier: &Barrier, configured: &[AuditDevice]) -> Result<(), ApiError> {
        let keys = Arc::new(load_keys(barrier)?);
        let mut devices = Vec::new();
        for device in configured {
            let name = device
                .path
                .clone()
                .unwrap_or_else(|| device.device_type.clone());
            let head = stored_head(barrier, &name)?;
            devices.push(Arc::new(FileDevice::open(
                &name,
                &device.file_path,
                true,
                "",
                Arc::clone(&keys),
                head,
            )?));
        }
        for (name, stored) in stored_devices(barrier)? {
            if devices.iter().any(|d| d.name() == name) {
                continue;
            }
            let head = stored_head(barrier, &name)?;
            devices.push(Arc::new(FileDevice::open(
                &name,
                stored.file_path.as_ref(),
                false,
                &stored.description,
                Arc::clone(&keys),
                head,
            )?));
        }
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = Some(keys);
        *self.devices.write().unwrap_or_else(|p| p.into_inner()) = devices;
        self.ready.store(true, Ordering::Release);
        Ok(())
    }

    /// Records every device's chain head in the barrier (so a log cut or replaced while the
    /// vault is down is noticed, and a rotated file continues the chain), then closes the
    /// devices and drops the keys.
    pub fn seal(&self, barrier: &Barrier) {
        self.ready.store(false, Ordering::Release);
        let devices = std::mem::take(&mut *self.devices.write().unwrap_or_else(|p| p.into_inner()));
        for device in &devices {
            let stored = serde_json::to_vec(&device.head())
                .map_err(|e| ApiError::internal(e.to_string()))
                .and_then(|body| {
                    Ok(barrier.put(&head_record(device.name())?, &body, Expect::Any)?)
                });
            if let Err(e) = stored {
                tracing::warn!(device = device.name(), error = %e, "could not record the audit chain head");
            }
        }
        drop(devices);
        *self.keys.write().unwrap_or_else(|p| p.into_inner()) = None;
    }

    /// Whether any device is enabled.
    pub fn enabled(&self) -> bool {
        !self
            .devices
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
    }

    /// `hmac-sha256:<hex>` of `value` under the audit HMAC key.
    pub fn hmac(&self, value: &str) -> Result<String, ApiError> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(ApiError::sealed)?;
        Ok(format!(
            "{HMAC_PREFIX}{}",
            hex::encode(hmac_sha256(&keys.hmac, value.as_bytes()))
        ))
    }

    /// The public half of the signing key, base64, for `vaultd audit verify --public-key`.
    pub fn public_key(&self) -> Result<String, ApiError> {
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(ApiError::sealed)?;
        Ok(BASE64.encode(keys.signing.public_key().as_ref()))
    }

    /// Writes `entry` to every device and returns once one of them has made it durable. With
    /// no device enabled there is nothing to write.
    pub fn log(&self, entry: Map<String, Value>) -> Result<(), ApiError> {
        if !self.ready.load(Ordering::Acquire) {
            return Err(ApiError::audit_unavailable());
        }
        let devices = self
            .devices
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if devices.is_empty() {
            return Ok(());
        }
        let pending: Vec<_> = devices
            .iter()
            .map(|d| (d, d.submit(entry.clone())))
            .collect();
        let mut written = false;
        for (device, reply) in pending {
            match reply.and_then(|r| {
                r.recv_timeout(self.timeout)
                    .map_err(|_| "timed out".to_string())?
            }) {
                Ok(()) => written = true,
                Err(e) => {
                    tracing::error!(device = device.name(), error = %e, "audit device failed")
                }
            }
        }
        if written {
            Ok(())
        } else {
            Err(ApiError::audit_unavailable())
        }
    }

    /// The devices as `sys/audit` lists them.
    pub fn describe(&self) -> Value {
        let devices = self.devices.read().unwrap_or_else(|p| p.into_inner());
        Value::Object(
            devices
                .iter()
                .map(|d| (format!("{}/", d.name()), d.describe()))
                .collect(),
        )
    }

    /// Enables a file device through the API.
    pub fn enable(
        &self,
        barrier: &Barrier,
        name: &str,
        file_path: &str,
        description: &str,
    ) -> Result<(), ApiError> {
        check_name(name)?;
        if self
            .devices
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
            .any(|d| d.name() == name)
        {
            return Err(ApiError::bad_request(format!(
                "path already in use: audit device {name:?} exists"
            )));
        }
        let keys = self
            .keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
            .ok_or_else(ApiError::sealed)?;
        let device = Arc::new(FileDevice::open(
            name,
            file_path.as_ref(),
            false,
            description,
            keys,
            stored_head(barrier, name)?,
        )?);
        let stored = StoredDevice {
            file_path: file_path.to_string(),
            description: description.to_string(),
        };
        let body = serde_json::to_vec(&stored).map_err(|e| ApiError::internal(e.to_string()))?;
        barrier.put(&device_record(name)?, &body, Expect::Any)?;
        self.devices
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .push(device);
        Ok(())
    }

    /// Disables a device enabled through the API; declared ones are refused.
    pub fn disable(&self, barrier: &Barrier, name: &str) -> Result<(), ApiError> {
        let mut devices = self.devices.write().unwrap_or_else(|p| p.into_inner());
        let Some(index) = devices.iter().position(|d| d.name() == name) else {
            return Ok(());
        };
        if devices[index].declared() {
            return Err(ApiError::bad_request(format!(
                "audit device {name:?} is declared in the configuration file and cannot be disabled through the API"
            )));
        }
        barrier.delete(&device_record(name)?, Expect::Any)?;
        devices.remove(index);
        Ok(())
    }

    /// HMACs every string, number and boolean in a JSON value, in place.
    pub fn hmac_strings(&self, value: &mut Value) -> Result<(), ApiError> {
        match value {
            Value::String(s) => *s = self.hmac(s)?,
            // A secret can be a number (a PIN) or a boolean: their JSON text is hashed too.
            Value::Number(_) | Value::Bool(_) => {
                *value = Value::String(self.hmac(&value.to_string())?)
            }
            Value::Array(items) => {
                for item in items {
                    self.hmac_strings(item)?;
                }
            }
            Value::Object(map) => {
                for item in map.values_mut() {
                    self.hmac_strings(item)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

fn check_name(name: &str) -> Result<(), ApiError> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b))
    {
        return Err(ApiError::bad_request(
            "audit device names are 1 to 64 letters, digits, '-' or '_'",
        ));
    }
    Ok(())
}

fn load_keys(barrier: &Barrier) -> Result<AuditKeys, ApiError> {
    let hmac_id = RecordId::new(RecordKind::AuditKey, MountId::SYSTEM, "hmac", 0)?;
    let signing_id = RecordId::new(RecordKind::AuditKey, MountId::SYSTEM, "signing", 0)?;
    let hmac = match barrier.get(&hmac_id)? {
        Some(record) => Zeroizing::new(record.value.to_vec()),
        None => {
            let mut key = Zeroizing::new(vec![0u8; 32]);
            crypto::fill_random(&mut key).map_err(|e| ApiError::internal(e.to_string()))?;
            barrier.put(&hmac_id, &key, Expect::Absent)?;
            key
        }
    };
    let pkcs8 = match barrier.get(&signing_id)? {
        Some(record) => record.value,
        None => {
            let rng = ring::rand::SystemRandom::new();
            let document = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| ApiError::internal("cannot generate the audit signing key"))?;
            let pkcs8 = Zeroizing::new(document.as_ref().to_vec());
            barrier.put(&signing_id, &pkcs8, Expect::Absent)?;
            pkcs8
        }
    };
    let signing = Ed25519KeyPair::from_pkcs8(&pkcs8)
        .map_err(|_| ApiError::internal("the audit signing key does not parse"))?;
    Ok(AuditKeys { hmac, signing })
}

fn stored_devices(barrier: &Barrier) -> Result<Vec<(String, StoredDevice)>, ApiError> {
    let mut out = Vec::new();
    for id in barrier.list(RecordKind::AuditKey, MountId::SYSTEM, "device/", None, 1024)? {
        let Some(record) = barrier.get(&id)? else {
            continue;
        };
        let stored: StoredDevice =
            serde_json::from_slice(&record.value).map_err(|e| ApiError::internal(e.to_string()))?;
        out.push((id.path.trim_start_matches("device/").to_string(), stored));
    }
    Ok(out)
}

fn head_record(name: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::AuditKey,
        MountId::SYSTEM,
        format!("head/{name}"),
        0,
    )?)
}

fn stored_head(barrier: &Barrier, name: &str) -> Result<Option<device::Head>, ApiError> {
    let Some(record) = barrier.get(&head_record(name)?)? else {
        return Ok(None);
    };
    serde_json::from_slice(&record.value)
        .map(Some)
        .map_err(|e| ApiError::internal(format!("audit chain head of {name} does not parse: {e}")))
}

fn device_record(name: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::AuditKey,
        MountId::SYSTEM,
        format!("device/{name}"),
        0,
    )?)
}

/// The `auth` part of an entry.
pub fn auth_section(
    client_token_hmac: Option<String>,
    accessor: &str,
    display_name: &str,
    policies: &[String],
) -> Value {
    json!({
        "client_token": client_token_hmac.unwrap_or_default(),
        "accessor": accessor,
        "display_name": display_name,
        "policies": policies,
        "token_policies": policies,
        "metadata": null,
        "entity_id": "",
        "token_type": if accessor.is_empty() { "" } else { "service" },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: while devices were being closed at seal (and before they were open at
    /// unseal) entries were accepted with nowhere to go.
    #[test]
    fn nothing_is_accepted_before_devices_are_ready() {
        let broker = AuditBroker::new(Duration::from_secs(1));
        let err = broker.log(Map::new()).unwrap_err();
        assert_eq!(err.status, 500);
        assert_eq!(err.messages, ["audit log unavailable"]);
    }
}
