//! The mount table: which engine serves which path.
//!
//! A mount is an engine instance (KV version 2 for now) at a path such as `secret/`. Each has
//! a UUID that its records bind, so records follow the mount if it moves, and a new mount at
//! an old path cannot read the old mount's records.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::ApiError;
use crate::barrier::{Barrier, Expect, MountId, RecordId, RecordKind};

/// Path prefixes that belong to the system and cannot be mounted over.
const RESERVED: [&str; 5] = ["sys/", "auth/", "cubbyhole/", "identity/", "v1/"];

/// The engine types vaultd can mount.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EngineType {
    /// Key/value secrets, version 2.
    Kv,
    /// Encryption, signing and hashing with keys that never leave the vault.
    Transit,
}

impl EngineType {
    /// The type name in the API.
    pub fn name(self) -> &'static str {
        match self {
            EngineType::Kv => "kv",
            EngineType::Transit => "transit",
        }
    }
}

/// One mount.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MountEntry {
    /// The path, ending in `/`.
    pub path: String,
    /// The engine.
    #[serde(rename = "type")]
    pub engine: EngineType,
    /// The UUID that the mount's records bind.
    pub uuid: String,
    /// A stable name for the mount in logs.
    pub accessor: String,
    /// Free text.
    pub description: String,
    /// Unix seconds at which it was mounted.
    pub created: u64,
}

impl MountEntry {
    /// The mount's ID for records.
    pub fn id(&self) -> Result<MountId, ApiError> {
        self.uuid
            .parse()
            .map_err(|_| ApiError::internal(format!("mount {} has a bad UUID", self.path)))
    }

    /// The mount as `sys/mounts` shows it.
    pub fn describe(&self) -> Value {
        json!({
            "type": self.engine.name(),
            "description": self.description,
            "accessor": self.accessor,
            "uuid": self.uuid,
            "config": {"default_lease_ttl": 0, "max_lease_ttl": 0, "force_no_cache": false},
            "options": match self.engine { EngineType::Kv => json!({"version": "2"}), EngineType::Transit => Value::Null },
            "local": false,
            "seal_wrap": false,
            "external_entropy_access": false,
            "plugin_version": "",
            "running_plugin_version": "",
            "running_sha256": "",
        })
    }
}

/// The mount table, loaded at unseal.
pub struct MountTable {
    barrier: Arc<Barrier>,
    entries: RwLock<BTreeMap<String, MountEntry>>,
}

impl MountTable {
    /// An empty table over `barrier`.
    pub fn new(barrier: Arc<Barrier>) -> Self {
        MountTable {
            barrier,
            entries: RwLock::new(BTreeMap::new()),
        }
    }

    /// Loads every mount from the store.
    pub fn load(&self) -> Result<(), ApiError> {
        let mut loaded = BTreeMap::new();
        let mut after = None;
        loop {
            let page =
                self.barrier
                    .list(RecordKind::Mount, MountId::SYSTEM, "", after.as_ref(), 256)?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for id in page {
                let Some(record) = self.barrier.get(&id)? else {
                    continue;
                };
                let entry: MountEntry = serde_json::from_slice(&record.value).map_err(|e| {
                    ApiError::internal(format!("mount record {} does not parse: {e}", id.path))
                })?;
                loaded.insert(entry.path.clone(), entry);
            }
            after = Some(last);
        }
        *self.entries.write().unwrap_or_else(|p| p.into_inner()) = loaded;
        Ok(())
    }

    /// Forgets the table (at seal).
    pub fn clear(&self) {
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .clear();
    }

    /// Every mount, by path.
    pub fn all(&self) -> BTreeMap<String, MountEntry> {
        self.entries
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The mount that serves `path` (longest matching prefix) and the rest of the path.
    pub fn resolve<'p>(&self, path: &'p str) -> Option<(MountEntry, &'p str)> {
        let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
        entries
            .iter()
            .rev()
            .find(|(mount, _)| path.starts_with(mount.as_str()) || format!("{path}/") == **mount)
            .map(|(mount, entry)| (entry.clone(), path.get(mount.len()..).unwrap_or("")))
    }

    /// Mounts an engine at `path`.
    pub fn mount(
        &self,
        path: &str,
        engine: EngineType,
        description: &str,
        now: SystemTime,
    ) -> Result<MountEntry, ApiError> {
        let path = normalize(path)?;
        if RESERVED.iter().any(|r| path.starts_with(r)) {
            return Err(ApiError::bad_request(format!(
                "cannot mount at {path:?}: the path is reserved"
            )));
        }
        {
            let entries = self.entries.read().unwrap_or_else(|p| p.into_inner());
            if let Some(existing) = entries
                .keys()
                .find(|m| path.starts_with(m.as_str()) || m.starts_with(&path))
            {
                return Err(ApiError::bad_request(format!(
                    "path is already in use at {existing}"
                )));
            }
        }
        let uuid = MountId::generate();
        let entry = MountEntry {
            path: path.clone(),
            engine,
            uuid: uuid.to_string(),
            accessor: format!("{}_{}", engine.name(), &uuid.to_string()[..8]),
            description: description.to_string(),
            created: now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        };
        let body = serde_json::to_vec(&entry).map_err(|e| ApiError::internal(e.to_string()))?;
        self.barrier
            .put(&record(&path)?, &body, Expect::Absent)
            .map_err(|e| match e {
                crate::barrier::BarrierError::Conflict { .. } => {
                    ApiError::bad_request(format!("path is already in use at {path}"))
                }
                other => other.into(),
            })?;
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(path, entry.clone());
        tracing::info!(path = %entry.path, engine = entry.engine.name(), "mounted");
        Ok(entry)
    }

    /// Unmounts `path` and deletes every record of the mount.
    pub fn unmount(&self, path: &str) -> Result<(), ApiError> {
        let path = normalize(path)?;
        let Some(entry) = self.all().remove(&path) else {
            // Vault answers success for a path that is not mounted.
            return Ok(());
        };
        let mount = entry.id()?;
        // Remove the entry first: nothing can reach the records once it is gone, and a crash
        // part way through the purge leaves only unreachable records.
        self.barrier.delete(&record(&path)?, Expect::Any)?;
        self.entries
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&path);
        for kind in RecordKind::ALL {
            loop {
                let page = self.barrier.list(kind, mount, "", None, 256)?;
                if page.is_empty() {
                    break;
                }
                for id in page {
                    self.barrier.delete(&id, Expect::Any)?;
                }
            }
        }
        tracing::info!(%path, "unmounted");
        Ok(())
    }
}

/// `secret`, `/secret/` and `secret/` all name the mount `secret/`.
pub fn normalize(path: &str) -> Result<String, ApiError> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty()
        || trimmed
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(ApiError::bad_request(format!(
            "invalid mount path {path:?}"
        )));
    }
    Ok(format!("{trimmed}/"))
}

fn record(path: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(RecordKind::Mount, MountId::SYSTEM, path, 0)?)
}
