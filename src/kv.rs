//! The KV version 2 secrets engine, as Vault's documents it: versioned secrets with
//! check-and-set, soft delete, undelete, destroy, metadata and per-secret limits.
//!
//! Each secret is one metadata record (overwritten, guarded by its generation) and one record
//! per version (written once). A write stores the new version and the updated metadata in one
//! atomic commit, and versions beyond `max_versions` are removed in the same commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zeroize::Zeroizing;

use crate::api::{ApiError, Fields, Operation, Request, Response};
use crate::barrier::{Barrier, BarrierError, Change, Expect, MountId, RecordId, RecordKind};
use crate::duration;
use crate::mount::MountEntry;

/// Versions kept when neither the secret nor the mount sets `max_versions`.
pub const DEFAULT_MAX_VERSIONS: u64 = 10;

/// How often a write retries when another write to the same secret got there first.
const MAX_RETRIES: usize = 32;

/// A secret's metadata as stored.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Metadata {
    created_time: String,
    updated_time: String,
    current_version: u64,
    oldest_version: u64,
    max_versions: u64,
    cas_required: bool,
    delete_version_after: u64,
    custom_metadata: BTreeMap<String, String>,
    versions: BTreeMap<u64, VersionInfo>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct VersionInfo {
    created_time: String,
    deletion_time: String,
    destroyed: bool,
}

impl VersionInfo {
    fn deleted(&self, now: SystemTime) -> bool {
        !self.deletion_time.is_empty()
            && duration::parse_timestamp(&self.deletion_time).is_none_or(|t| t <= now)
    }

    fn describe(&self, version: u64, custom: &BTreeMap<String, String>) -> Value {
        json!({
            "created_time": self.created_time,
            "custom_metadata": if custom.is_empty() { Value::Null } else { json!(custom) },
            "deletion_time": self.deletion_time,
            "destroyed": self.destroyed,
            "version": version,
        })
    }
}

/// A KV mount's configuration.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct MountConfig {
    max_versions: u64,
    cas_required: bool,
    delete_version_after: u64,
}

/// The engine. Stateless: everything is in the barrier.
pub struct KvEngine {
    barrier: Arc<Barrier>,
}

/// The KV operations, by the first segment after the mount.
enum Endpoint<'a> {
    Data(&'a str),
    Metadata(&'a str),
    Delete(&'a str),
    Undelete(&'a str),
    Destroy(&'a str),
    Subkeys(&'a str),
    Config,
}

impl KvEngine {
    /// An engine over `barrier`.
    pub fn new(barrier: Arc<Barrier>) -> Self {
        KvEngine { barrier }
    }

    /// Whether the path a write targets exists (for the `create`/`update` distinction).
    pub fn exists(&self, mount: &MountEntry, rest: &str) -> Result<bool, ApiError> {
        match endpoint(rest) {
            Some(Endpoint::Data(path) | Endpoint::Metadata(path)) if !path.is_empty() => {
                Ok(self.metadata(mount.id()?, path)?.is_some())
            }
            _ => Ok(true),
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
        let Some(endpoint) = endpoint(rest) else {
            return Err(ApiError::unsupported_path(&request.path));
        };
        let op = request.operation;
        match endpoint {
            Endpoint::Config => match op {
                Operation::Read => self.read_config(id),
                Operation::Write => self.write_config(id, request),
                _ => Err(ApiError::method_not_allowed()),
            },
            Endpoint::Metadata(path) if op == Operation::List => self.list(id, path),
            Endpoint::Data(path)
            | Endpoint::Metadata(path)
            | Endpoint::Delete(path)
            | Endpoint::Undelete(path)
            | Endpoint::Destroy(path)
            | Endpoint::Subkeys(path) => {
                check_path(path)?;
                match (endpoint_kind(rest), op) {
                    ("data", Operation::Read) => self.read(id, path, request, now),
                    ("data", Operation::Write) => self.write(id, path, request, now),
                    ("data", Operation::Patch) => self.patch(id, path, request, now),
                    ("data", Operation::Delete) => self.set_deleted(id, path, None, true, now),
                    ("metadata", Operation::Read) => self.read_metadata(id, path),
                    ("metadata", Operation::Write) => {
                        self.write_metadata(id, path, request, now, false)
                    }
                    ("metadata", Operation::Patch) => {
                        self.write_metadata(id, path, request, now, true)
                    }
                    ("metadata", Operation::Delete) => self.delete_all(id, path),
                    ("delete", Operation::Write) => {
                        let versions = versions_field(request)?;
                        self.set_deleted(id, path, Some(versions), true, now)
                    }
                    ("undelete", Operation::Write) => {
                        let versions = versions_field(request)?;
                        self.set_deleted(id, path, Some(versions), false, now)
                    }
                    ("destroy", Operation::Write) => {
                        let versions = versions_field(request)?;
                        self.destroy(id, path, &versions, now)
                    }
                    ("subkeys", Operation::Read) => self.subkeys(id, path, request, now),
                    _ => Err(ApiError::method_not_allowed()),
                }
            }
        }
    }

    fn metadata(&self, mount: MountId, path: &str) -> Result<Option<(Metadata, u64)>, ApiError> {
        let Some(record) = self.barrier.get(&metadata_id(mount, path)?)? else {
            return Ok(None);
        };
        let metadata = serde_json::from_slice(&record.value)
            .map_err(|e| ApiError::internal(format!("metadata of {path} does not parse: {e}")))?;
        Ok(Some((metadata, record.generation)))
    }

    fn config(&self, mount: MountId) -> Result<MountConfig, ApiError> {
        let Some(record) = self.barrier.get(&config_id(mount)?)? else {
            return Ok(MountConfig::default());
        };
        serde_json::from_slice(&record.value)
            .map_err(|e| ApiError::internal(format!("kv config does not parse: {e}")))
    }

    fn read_config(&self, mount: MountId) -> Result<Response, ApiError> {
        let config = self.config(mount)?;
        Ok(Response::data(json!({
            "max_versions": config.max_versions,
            "cas_required": config.cas_required,
            "delete_version_after": duration::format(Duration::from_secs(config.delete_version_after)),
        })))
    }

    fn write_config(&self, mount: MountId, request: &Request) -> Result<Response, ApiError> {
        let mut fields = Fields::new(request);
        let mut config = self.config(mount)?;
        if let Some(max) = fields.u64("max_versions")? {
            config.max_versions = check_max_versions(max)?;
        }
        if let Some(cas) = fields.bool("cas_required")? {
            config.cas_required = cas;
        }
        if let Some(after) = fields.duration("delete_version_after")? {
            config.delete_version_after = after.as_secs();
        }
        let warnings = fields.unknown();
        let body = serde_json::to_vec(&config).map_err(|e| ApiError::internal(e.to_string()))?;
        self.barrier.put(&config_id(mount)?, &body, Expect::Any)?;
        Ok(Response::empty().with_warnings(warnings))
    }

    fn read(
        &self,
        mount: MountId,
        path: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let mut fields = Fields::new(request);
        let asked = fields.u64("version")?.filter(|v| *v > 0);
        let Some((metadata, _)) = self.metadata(mount, path)? else {
            return Err(ApiError::not_found());
        };
        let version = asked.unwrap_or(metadata.current_version);
        let Some(info) = metadata.versions.get(&version) else {
            return Err(ApiError::not_found());
        };
        let described = info.describe(version, &metadata.custom_metadata);
        if info.destroyed || info.deleted(now) {
            // Vault's answer for a deleted or destroyed version: 404 with the metadata.
            return Ok(Response {
                status: Some(404),
                ..Response::data(json!({"data": null, "metadata": described}))
            });
        }
        let record = self
            .barrier
            .get(&version_id(mount, path, version)?)?
            .ok_or_else(|| {
                ApiError::internal(format!(
                    "version {version} of {path} is in the metadata but not stored"
                ))
            })?;
        let data: Value = serde_json::from_slice(&record.value).map_err(|e| {
            ApiError::internal(format!("version {version} of {path} does not parse: {e}"))
        })?;
        Ok(Response::data(json!({"data": data, "metadata": described})))
    }

    fn write(
        &self,
        mount: MountId,
        path: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let mut fields = Fields::new(request);
        let (data, cas) = data_and_cas(&mut fields)?;
        let warnings = fields.unknown();
        let body = Zeroizing::new(
            serde_json::to_vec(&data).map_err(|e| ApiError::internal(e.to_string()))?,
        );
        self.store_version(mount, path, &body, cas, now)
            .map(|r| r.with_warnings(warnings))
    }

    fn patch(
        &self,
        mount: MountId,
        path: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let mut fields = Fields::new(request);
        let (patch, cas) = data_and_cas(&mut fields)?;
        let Some((metadata, _)) = self.metadata(mount, path)? else {
            return Err(ApiError::not_found());
        };
        let current = metadata.current_version;
        let info = metadata
            .versions
            .get(&current)
            .ok_or_else(ApiError::not_found)?;
        if info.destroyed || info.deleted(now) {
            return Err(ApiError::not_found());
        }
        let record = self
            .barrier
            .get(&version_id(mount, path, current)?)?
            .ok_or_else(ApiError::not_found)?;
        let mut merged: Value =
            serde_json::from_slice(&record.value).map_err(|e| ApiError::internal(e.to_string()))?;
        merge_patch(&mut merged, &Value::Object(patch));
        let body = Zeroizing::new(
            serde_json::to_vec(&merged).map_err(|e| ApiError::internal(e.to_string()))?,
        );
        if cas.is_none() && (metadata.cas_required || self.config(mount)?.cas_required) {
            return Err(ApiError::bad_request(
                "check-and-set parameter required for this call",
            ));
        }
        // The merge is based on the version just read: write only if it is still current.
        self.store_version(mount, path, &body, Some(cas.unwrap_or(current)), now)
    }

    fn store_version(
        &self,
        mount: MountId,
        path: &str,
        body: &[u8],
        cas: Option<u64>,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        self.store_version_with(mount, path, body, cas, now, &[])
            .map(|(_, response)| response)
    }

    /// Writes a new version as one commit together with `also`. Returns the new version. A
    /// conflict is retried only when `also` is empty: the caller owns the records in it.
    fn store_version_with(
        &self,
        mount: MountId,
        path: &str,
        body: &[u8],
        cas: Option<u64>,
        now: SystemTime,
        also: &[Change<'_>],
    ) -> Result<(u64, Response), ApiError> {
        let config = self.config(mount)?;
        for _ in 0..MAX_RETRIES {
            let existing = self.metadata(mount, path)?;
            let (mut metadata, expect) = match existing {
                Some((m, generation)) => (m, Expect::Generation(generation)),
                None => (
                    Metadata {
                        created_time: duration::timestamp(now),
                        ..Metadata::default()
                    },
                    Expect::Absent,
                ),
            };
            if (metadata.cas_required || config.cas_required) && cas.is_none() {
                return Err(ApiError::bad_request(
                    "check-and-set parameter required for this call",
                ));
            }
            if let Some(cas) = cas
                && cas != metadata.current_version
            {
                return Err(ApiError::bad_request(
                    "check-and-set parameter did not match the current version",
                ));
            }
            let version = metadata.current_version + 1;
            let created = duration::timestamp(now);
            let delete_after =
                effective(metadata.delete_version_after, config.delete_version_after);
            let deletion_time = if delete_after > 0 {
                duration::timestamp(now + Duration::from_secs(delete_after))
            } else {
                String::new()
            };
            metadata.versions.insert(
                version,
                VersionInfo {
                    created_time: created.clone(),
                    deletion_time: deletion_time.clone(),
                    destroyed: false,
                },
            );
            metadata.current_version = version;
            metadata.updated_time = created.clone();
            let keep = versions_to_keep(metadata.max_versions, config.max_versions);
            let pruned = prune(&mut metadata, keep);

            let meta_body =
                serde_json::to_vec(&metadata).map_err(|e| ApiError::internal(e.to_string()))?;
            let meta_id = metadata_id(mount, path)?;
            let new_id = version_id(mount, path, version)?;
            let pruned_ids = pruned
                .iter()
                .map(|v| version_id(mount, path, *v))
                .collect::<Result<Vec<_>, _>>()?;
            let mut changes = vec![
                Change::Put {
                    id: &new_id,
                    value: body,
                    expect: Expect::Absent,
                },
                Change::Put {
                    id: &meta_id,
                    value: &meta_body,
                    expect,
                },
            ];
            changes.extend(pruned_ids.iter().map(|id| Change::Delete {
                id,
                expect: Expect::Any,
            }));
            changes.extend(also.iter().map(Change::reborrow));
            match self.barrier.commit(&changes) {
                Err(BarrierError::Conflict { record }) if !also.is_empty() => {
                    return Err(ApiError {
                        status: 409,
                        ..ApiError::bad_request(format!("conflict at {record}"))
                    });
                }
                Ok(_) => {
                    return Ok((
                        version,
                        Response::data(json!({
                            "created_time": created,
                            "custom_metadata": if metadata.custom_metadata.is_empty() { Value::Null } else { json!(metadata.custom_metadata) },
                            "deletion_time": deletion_time,
                                                    "destroyed": false,
                            "version": version,
                        })),
                    ));
                }
                Err(BarrierError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::bad_request(
            "too many concurrent writes to this secret; retry",
        ))
    }

    /// Writes a new version of a secret in which `field` is `value` and every other field is
    /// as in the current version (`(field, value)`), in one commit with `also` (a rotation's own
    /// state), and only
    /// if the current version is `expected` (0: the secret does not exist). Returns the old
    /// and the new version.
    pub fn rotate_field(
        &self,
        mount: &MountEntry,
        path: &str,
        (field, value): (&str, &str),
        expected: u64,
        also: &[Change<'_>],
        now: SystemTime,
    ) -> Result<(u64, u64), ApiError> {
        let id = mount.id()?;
        check_path(path)?;
        let (current, mut data) = match self.metadata(id, path)? {
            Some((metadata, _)) if metadata.current_version > 0 => {
                let version = metadata.current_version;
                let live = metadata
                    .versions
                    .get(&version)
                    .is_some_and(|i| !i.destroyed && !i.deleted(now));
                let data = match self.barrier.get(&version_id(id, path, version)?)? {
                    Some(record) if live => serde_json::from_slice(&record.value)
                        .map_err(|e| ApiError::internal(e.to_string()))?,
                    _ => Map::new(),
                };
                (version, data)
            }
            _ => (0, Map::new()),
        };
        if current != expected {
            return Err(ApiError {
                status: 409,
                ..ApiError::bad_request(format!("{path} changed during the rotation"))
            });
        }
        data.insert(field.to_string(), Value::String(value.to_string()));
        let body = serde_json::to_vec(&data).map_err(|e| ApiError::internal(e.to_string()))?;
        let (version, _) = self.store_version_with(id, path, &body, Some(current), now, also)?;
        Ok((current, version))
    }

    /// The current version of a secret (0 if it does not exist).
    pub fn current_version(&self, mount: &MountEntry, path: &str) -> Result<u64, ApiError> {
        Ok(self
            .metadata(mount.id()?, path)?
            .map_or(0, |(m, _)| m.current_version))
    }

    /// The current version of a secret and its value of `field`, if any.
    pub fn current_field(
        &self,
        mount: &MountEntry,
        path: &str,
        field: &str,
        now: SystemTime,
    ) -> Result<Option<(u64, String)>, ApiError> {
        let id = mount.id()?;
        let Some((metadata, _)) = self.metadata(id, path)? else {
            return Ok(None);
        };
        let version = metadata.current_version;
        if metadata
            .versions
            .get(&version)
            .is_none_or(|i| i.destroyed || i.deleted(now))
        {
            return Ok(None);
        }
        let Some(record) = self.barrier.get(&version_id(id, path, version)?)? else {
            return Ok(None);
        };
        let data: Map<String, Value> =
            serde_json::from_slice(&record.value).map_err(|e| ApiError::internal(e.to_string()))?;
        Ok(data
            .get(field)
            .and_then(Value::as_str)
            .map(|v| (version, v.to_string())))
    }

    /// When the secret was first written, if it exists.
    pub fn created_time(&self, mount: &MountEntry, path: &str) -> Result<Option<String>, ApiError> {
        Ok(self
            .metadata(mount.id()?, path)?
            .map(|(m, _)| m.created_time))
    }

    /// The secret's `custom_metadata`, if it exists.
    pub fn custom_metadata(
        &self,
        mount: &MountEntry,
        path: &str,
    ) -> Result<Option<BTreeMap<String, String>>, ApiError> {
        Ok(self
            .metadata(mount.id()?, path)?
            .map(|(m, _)| m.custom_metadata))
    }

    /// Soft-deletes (`deleted = true`) or undeletes versions; `None` means the current one.
    fn set_deleted(
        &self,
        mount: MountId,
        path: &str,
        versions: Option<Vec<u64>>,
        deleted: bool,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        self.update_metadata(mount, path, |metadata| {
            let targets = versions
                .clone()
                .unwrap_or_else(|| vec![metadata.current_version]);
            for version in targets {
                if let Some(info) = metadata.versions.get_mut(&version) {
                    if info.destroyed {
                        continue;
                    }
                    info.deletion_time = if deleted {
                        duration::timestamp(now)
                    } else {
                        String::new()
                    };
                }
            }
            Ok(Vec::new())
        })
    }

    fn destroy(
        &self,
        mount: MountId,
        path: &str,
        versions: &[u64],
        _now: SystemTime,
    ) -> Result<Response, ApiError> {
        self.update_metadata(mount, path, |metadata| {
            let mut removed = Vec::new();
            for version in versions {
                if let Some(info) = metadata.versions.get_mut(version)
                    && !info.destroyed
                {
                    info.destroyed = true;
                    removed.push(*version);
                }
            }
            Ok(removed)
        })
    }

    /// Applies `change` to a secret's metadata and deletes the version records it returns,
    /// atomically. A missing secret is not an error (204), as in Vault.
    fn update_metadata(
        &self,
        mount: MountId,
        path: &str,
        change: impl Fn(&mut Metadata) -> Result<Vec<u64>, ApiError>,
    ) -> Result<Response, ApiError> {
        for _ in 0..MAX_RETRIES {
            let Some((mut metadata, generation)) = self.metadata(mount, path)? else {
                return Ok(Response::empty());
            };
            let removed = change(&mut metadata)?;
            let body =
                serde_json::to_vec(&metadata).map_err(|e| ApiError::internal(e.to_string()))?;
            let meta_id = metadata_id(mount, path)?;
            let removed_ids = removed
                .iter()
                .map(|v| version_id(mount, path, *v))
                .collect::<Result<Vec<_>, _>>()?;
            let mut changes = vec![Change::Put {
                id: &meta_id,
                value: &body,
                expect: Expect::Generation(generation),
            }];
            changes.extend(removed_ids.iter().map(|id| Change::Delete {
                id,
                expect: Expect::Any,
            }));
            match self.barrier.commit(&changes) {
                Ok(_) => return Ok(Response::empty()),
                Err(BarrierError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::bad_request(
            "too many concurrent writes to this secret; retry",
        ))
    }

    fn read_metadata(&self, mount: MountId, path: &str) -> Result<Response, ApiError> {
        let Some((metadata, _)) = self.metadata(mount, path)? else {
            return Err(ApiError::not_found());
        };
        let versions: Map<String, Value> = metadata
            .versions
            .iter()
            .map(|(v, info)| (v.to_string(), json!({"created_time": info.created_time, "deletion_time": info.deletion_time, "destroyed": info.destroyed})))
            .collect();
        Ok(Response::data(json!({
            "cas_required": metadata.cas_required,
            "created_time": metadata.created_time,
            "current_version": metadata.current_version,
            "custom_metadata": if metadata.custom_metadata.is_empty() { Value::Null } else { json!(metadata.custom_metadata) },
            "delete_version_after": duration::format(Duration::from_secs(metadata.delete_version_after)),
            "max_versions": metadata.max_versions,
            "oldest_version": metadata.oldest_version,
            "updated_time": metadata.updated_time,
            "versions": versions,
        })))
    }

    fn write_metadata(
        &self,
        mount: MountId,
        path: &str,
        request: &Request,
        now: SystemTime,
        patch: bool,
    ) -> Result<Response, ApiError> {
        let mut fields = Fields::new(request);
        let max_versions = fields
            .u64("max_versions")?
            .map(check_max_versions)
            .transpose()?;
        let cas_required = fields.bool("cas_required")?;
        let delete_after = fields.duration("delete_version_after")?;
        let custom = fields.string_map("custom_metadata")?;
        let warnings = fields.unknown();
        if let Some(custom) = &custom {
            check_custom_metadata(custom)?;
        }
        let config = self.config(mount)?;
        for _ in 0..MAX_RETRIES {
            let (mut metadata, expect) = match self.metadata(mount, path)? {
                Some((m, generation)) => (m, Expect::Generation(generation)),
                None if patch => return Err(ApiError::not_found()),
                None => (
                    Metadata {
                        created_time: duration::timestamp(now),
                        updated_time: duration::timestamp(now),
                        ..Metadata::default()
                    },
                    Expect::Absent,
                ),
            };
            if let Some(max) = max_versions {
                metadata.max_versions = max;
            }
            if let Some(cas) = cas_required {
                metadata.cas_required = cas;
            }
            if let Some(after) = delete_after {
                metadata.delete_version_after = after.as_secs();
            }
            if let Some(custom) = &custom {
                if patch {
                    metadata.custom_metadata.extend(custom.clone());
                } else {
                    metadata.custom_metadata = custom.clone();
                }
            }
            metadata.updated_time = duration::timestamp(now);
            let keep = versions_to_keep(metadata.max_versions, config.max_versions);
            let pruned = prune(&mut metadata, keep);
            let body =
                serde_json::to_vec(&metadata).map_err(|e| ApiError::internal(e.to_string()))?;
            let meta_id = metadata_id(mount, path)?;
            let pruned_ids = pruned
                .iter()
                .map(|v| version_id(mount, path, *v))
                .collect::<Result<Vec<_>, _>>()?;
            let mut changes = vec![Change::Put {
                id: &meta_id,
                value: &body,
                expect,
            }];
            changes.extend(pruned_ids.iter().map(|id| Change::Delete {
                id,
                expect: Expect::Any,
            }));
            match self.barrier.commit(&changes) {
                Ok(_) => return Ok(Response::empty().with_warnings(warnings)),
                Err(BarrierError::Conflict { .. }) => continue,
                Err(e) => return Err(e.into()),
            }
        }
        Err(ApiError::bad_request(
            "too many concurrent writes to this secret; retry",
        ))
    }

    fn delete_all(&self, mount: MountId, path: &str) -> Result<Response, ApiError> {
        let Some((metadata, generation)) = self.metadata(mount, path)? else {
            return Ok(Response::empty());
        };
        let meta_id = metadata_id(mount, path)?;
        let version_ids = metadata
            .versions
            .keys()
            .map(|v| version_id(mount, path, *v))
            .collect::<Result<Vec<_>, _>>()?;
        let mut changes = vec![Change::Delete {
            id: &meta_id,
            expect: Expect::Generation(generation),
        }];
        changes.extend(version_ids.iter().map(|id| Change::Delete {
            id,
            expect: Expect::Any,
        }));
        self.barrier.commit(&changes).map_err(|e| match e {
            BarrierError::Conflict { .. } => {
                ApiError::bad_request("the secret changed while being deleted; retry")
            }
            other => other.into(),
        })?;
        Ok(Response::empty())
    }

    fn list(&self, mount: MountId, path: &str) -> Result<Response, ApiError> {
        let prefix = if path.is_empty() || path.ends_with('/') {
            path.to_string()
        } else {
            format!("{path}/")
        };
        check_list_prefix(&prefix)?;
        let mut keys: Vec<String> = Vec::new();
        let mut after = None;
        loop {
            let page = self.barrier.list(
                RecordKind::SecretMetadata,
                mount,
                &prefix,
                after.as_ref(),
                512,
            )?;
            let Some(last) = page.last().cloned() else {
                break;
            };
            for id in page {
                let rest = &id.path[prefix.len()..];
                let key = match rest.find('/') {
                    Some(slash) => &rest[..=slash],
                    None => rest,
                };
                if keys.last().map(String::as_str) != Some(key) {
                    keys.push(key.to_string());
                }
            }
            after = Some(last);
        }
        keys.dedup();
        if keys.is_empty() {
            return Err(ApiError::not_found());
        }
        Ok(Response::data(json!({"keys": keys})))
    }

    fn subkeys(
        &self,
        mount: MountId,
        path: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let mut fields = Fields::new(request);
        let depth = fields.u64("depth")?.unwrap_or(0);
        let read = self.read(mount, path, request, now)?;
        if read.status.is_some() {
            return Ok(read);
        }
        let Some(Value::Object(mut data)) = read.data else {
            return Err(ApiError::not_found());
        };
        let secret = data.remove("data").unwrap_or(Value::Null);
        let metadata = data.remove("metadata").unwrap_or(Value::Null);
        Ok(Response::data(
            json!({"subkeys": subkeys_of(&secret, depth, 1), "metadata": metadata}),
        ))
    }
}

fn endpoint(rest: &str) -> Option<Endpoint<'_>> {
    if rest == "config" {
        return Some(Endpoint::Config);
    }
    let (head, path) = rest.split_once('/').unwrap_or((rest, ""));
    Some(match head {
        "data" => Endpoint::Data(path),
        "metadata" => Endpoint::Metadata(path),
        "delete" => Endpoint::Delete(path),
        "undelete" => Endpoint::Undelete(path),
        "destroy" => Endpoint::Destroy(path),
        "subkeys" => Endpoint::Subkeys(path),
        _ => return None,
    })
}

fn endpoint_kind(rest: &str) -> &str {
    rest.split_once('/').map_or(rest, |(head, _)| head)
}

/// Versions removed to respect `max_versions`, oldest first.
fn prune(metadata: &mut Metadata, max_versions: u64) -> Vec<u64> {
    let mut removed = Vec::new();
    let mut pruned = false;
    while metadata.versions.len() as u64 > max_versions {
        pruned = true;
        let Some((&oldest, info)) = metadata.versions.iter().next() else {
            break;
        };
        if !info.destroyed {
            removed.push(oldest);
        }
        metadata.versions.remove(&oldest);
    }
    // Vault reports 0 until versions have been pruned, then the oldest one kept.
    if pruned || metadata.oldest_version > 0 {
        metadata.oldest_version = metadata.versions.keys().next().copied().unwrap_or(0);
    }
    removed
}

/// A secret's setting wins over the mount's; 0 means unset.
fn effective(secret: u64, mount: u64) -> u64 {
    if secret == 0 { mount } else { secret }
}

/// Versions to keep: the secret's setting, else the mount's, else [`DEFAULT_MAX_VERSIONS`].
fn versions_to_keep(secret: u64, mount: u64) -> u64 {
    match effective(secret, mount) {
        0 => DEFAULT_MAX_VERSIONS,
        n => n,
    }
}

fn versions_field(request: &Request) -> Result<Vec<u64>, ApiError> {
    let invalid = || ApiError::bad_request("versions must be a list of version numbers");
    let versions: Vec<u64> = match request.data.get("versions") {
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::Number(n) => n.as_u64().ok_or_else(invalid),
                Value::String(s) => s.trim().parse().map_err(|_| invalid()),
                _ => Err(invalid()),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::String(s)) => s
            .split(',')
            .map(|v| v.trim().parse().map_err(|_| invalid()))
            .collect::<Result<_, _>>()?,
        Some(Value::Number(n)) => vec![n.as_u64().ok_or_else(invalid)?],
        _ => return Err(ApiError::bad_request("no version number provided")),
    };
    if versions.is_empty() {
        return Err(ApiError::bad_request("no version number provided"));
    }
    Ok(versions)
}

/// The most versions a secret may keep: its metadata lists them all in one record, which
/// must stay well under the 64 KiB record limit.
pub const MAX_VERSIONS_LIMIT: u64 = 200;

fn check_max_versions(max: u64) -> Result<u64, ApiError> {
    if max > MAX_VERSIONS_LIMIT {
        return Err(ApiError::bad_request(format!(
            "max_versions above {MAX_VERSIONS_LIMIT} is not supported: a secret's metadata lists every version it keeps in one record"
        )));
    }
    Ok(max)
}

/// RFC 7386 JSON merge patch.
/// A write's `data` (required) and `options.cas`.
fn data_and_cas(fields: &mut Fields<'_>) -> Result<(Map<String, Value>, Option<u64>), ApiError> {
    let data = fields
        .object("data")?
        .cloned()
        .ok_or_else(|| ApiError::bad_request("no data provided"))?;
    let cas = match fields.object("options")? {
        Some(options) => Fields::of(options).u64("cas")?,
        None => None,
    };
    Ok((data, cas))
}

fn merge_patch(target: &mut Value, patch: &Value) {
    let Value::Object(patch) = patch else {
        *target = patch.clone();
        return;
    };
    if !target.is_object() {
        *target = Value::Object(Map::new());
    }
    if let Value::Object(map) = target {
        for (key, value) in patch {
            if value.is_null() {
                map.remove(key);
            } else {
                merge_patch(map.entry(key.clone()).or_insert(Value::Null), value);
            }
        }
    }
}

fn subkeys_of(value: &Value, depth: u64, level: u64) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| {
                    let inner = if v.is_object() && (depth == 0 || level < depth) {
                        subkeys_of(v, depth, level + 1)
                    } else {
                        Value::Null
                    };
                    (k.clone(), inner)
                })
                .collect(),
        ),
        _ => Value::Null,
    }
}

/// Checks a secret path: non-empty, no empty, `.` or `..` segments, no control characters,
/// not ending in `/`.
pub fn check_path(path: &str) -> Result<(), ApiError> {
    if path.is_empty() {
        return Err(ApiError::bad_request("missing secret path"));
    }
    if path.ends_with('/') {
        return Err(ApiError::bad_request("a secret path cannot end with '/'"));
    }
    check_list_prefix(path)
}

fn check_list_prefix(path: &str) -> Result<(), ApiError> {
    if path.len() > 1024 {
        return Err(ApiError::bad_request(
            "secret path is longer than 1024 bytes",
        ));
    }
    if path.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "secret path contains a control character",
        ));
    }
    let trimmed = path.strip_suffix('/').unwrap_or(path);
    if !trimmed.is_empty()
        && trimmed
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(ApiError::bad_request(
            "secret path has an empty, '.' or '..' segment",
        ));
    }
    Ok(())
}

fn check_custom_metadata(custom: &BTreeMap<String, String>) -> Result<(), ApiError> {
    if custom.len() > 64 {
        return Err(ApiError::bad_request(
            "custom_metadata can have at most 64 keys",
        ));
    }
    for (key, value) in custom {
        if key.is_empty() || key.len() > 128 {
            return Err(ApiError::bad_request(
                "custom_metadata keys are 1 to 128 bytes",
            ));
        }
        if value.len() > 512 {
            return Err(ApiError::bad_request(format!(
                "custom_metadata value of {key} is longer than 512 bytes"
            )));
        }
    }
    Ok(())
}

fn metadata_id(mount: MountId, path: &str) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(RecordKind::SecretMetadata, mount, path, 0)?)
}

fn version_id(mount: MountId, path: &str, version: u64) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(
        RecordKind::SecretVersion,
        mount,
        path,
        version,
    )?)
}

fn config_id(mount: MountId) -> Result<RecordId, ApiError> {
    Ok(RecordId::new(RecordKind::KvConfig, mount, "config", 0)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn merge_patch_follows_rfc_7386() {
        let mut target = json!({"a": "b", "c": {"d": "e", "f": "g"}});
        merge_patch(&mut target, &json!({"a": "z", "c": {"f": null}}));
        assert_eq!(target, json!({"a": "z", "c": {"d": "e"}}));
    }

    #[test]
    fn paths_are_checked() {
        for bad in ["", "a/", "a//b", "../x", "a/./b", "a\u{7}b"] {
            assert!(check_path(bad).is_err(), "{bad:?} accepted");
        }
        check_path("app/db/password").unwrap();
    }

    #[test]
    fn pruning_keeps_the_newest() {
        let mut metadata = Metadata::default();
        for v in 1..=5 {
            metadata.versions.insert(v, VersionInfo::default());
        }
        assert_eq!(prune(&mut metadata, 3), vec![1, 2]);
        assert_eq!(metadata.oldest_version, 3);
    }

    #[test]
    fn subkeys_hide_values() {
        let value = json!({"a": 1, "b": {"c": "x", "d": {"e": true}}});
        assert_eq!(
            subkeys_of(&value, 0, 1),
            json!({"a": null, "b": {"c": null, "d": {"e": null}}})
        );
        assert_eq!(subkeys_of(&value, 1, 1), json!({"a": null, "b": null}));
    }
}
