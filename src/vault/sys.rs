//! The `sys/` routes.

use std::time::{Instant, SystemTime};

use serde_json::{Value, json};

use super::{Route, Vault};
use crate::api::{ApiError, Fields, Operation, Request, Response};
use crate::crypto::shamir::UnsealShare;
use crate::mount::{self, EngineType};
use crate::token::Token;

/// The version reported by status routes.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

impl Vault {
    pub(super) fn dispatch_unauthenticated(
        &self,
        route: &Route<'_>,
        request: &Request,
    ) -> Result<Response, ApiError> {
        match route {
            Route::Init => self.init(request),
            Route::SealStatus => Ok(Response::plain(self.seal_status()?)),
            Route::Unseal => self.unseal_route(request),
            Route::Health => self.health(request),
            Route::Leader => Ok(Response::plain(json!({
                "ha_enabled": false,
                "is_self": false,
                "active_time": "0001-01-01T00:00:00Z",
                "leader_address": "",
                "leader_cluster_address": "",
                "performance_standby": false,
                "performance_standby_last_remote_wal": 0,
            }))),
            _ => Err(ApiError::internal("route is not unauthenticated")),
        }
    }

    pub(super) fn sys_route(
        &self,
        route: &Route<'_>,
        request: &Request,
        _token: &Token,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let op = request.operation;
        match route {
            // Sealing happens after the response is audited: see `handle_authenticated`.
            Route::Seal => Ok(Response::empty()),
            Route::Mounts => {
                let mut mounts: serde_json::Map<String, Value> = self
                    .mounts
                    .all()
                    .into_iter()
                    .map(|(path, m)| (path, m.describe()))
                    .collect();
                mounts.insert("sys/".into(), json!({"type": "system", "description": "system endpoints used for control, policy and debugging", "options": null, "local": false, "seal_wrap": true}));
                Ok(Response::data(Value::Object(mounts)))
            }
            Route::Mount(path) => match op {
                Operation::Read => {
                    let path = mount::normalize(path)?;
                    let mounts = self.mounts.all();
                    let entry = mounts
                        .get(&path)
                        .ok_or_else(|| ApiError::bad_request(format!("no mount at {path}")))?;
                    Ok(Response::data(entry.describe()))
                }
                Operation::Write => self.enable_mount(path, request, now),
                _ => {
                    self.mounts.unmount(path)?;
                    Ok(Response::empty())
                }
            },
            Route::UiMount(path) => self.ui_mount(path, _token),
            Route::Policies { legacy } => {
                let names = self.policies.list()?;
                Ok(Response::data(if *legacy {
                    json!({"keys": names, "policies": names})
                } else {
                    json!({"keys": names})
                }))
            }
            Route::Policy { name, legacy } => self.policy_route(name, *legacy, request),
            Route::Audit => Ok(Response::data(self.audit.describe())),
            Route::AuditDevice(name) => match op {
                Operation::Write => {
                    let mut fields = Fields::new(request);
                    let kind = fields.string("type")?.unwrap_or_default();
                    if kind != "file" {
                        return Err(ApiError::bad_request(format!(
                            "unknown audit device type {kind:?}: only \"file\" exists"
                        )));
                    }
                    let description = fields.string("description")?.unwrap_or_default();
                    let options = fields.string_map("options")?.unwrap_or_default();
                    let _ = fields.bool("local")?;
                    let file_path = options
                        .get("file_path")
                        .ok_or_else(|| ApiError::bad_request("options.file_path is required"))?;
                    if file_path == "stdout" || file_path == "discard" {
                        return Err(ApiError::bad_request(
                            "file_path must be a file: stdout and discard are not durable",
                        ));
                    }
                    self.audit
                        .enable(&self.barrier, name, file_path, &description)?;
                    Ok(Response::empty().with_warnings(fields.unknown()))
                }
                _ => {
                    self.audit.disable(&self.barrier, name)?;
                    Ok(Response::empty())
                }
            },
            Route::AuditHash(_name) => {
                let mut fields = Fields::new(request);
                let input = fields
                    .string("input")?
                    .ok_or_else(|| ApiError::bad_request("input is required"))?;
                Ok(Response::data(json!({"hash": self.audit.hmac(&input)?}))
                    .with_warnings(fields.unknown()))
            }
            Route::AuditPublicKey => Ok(Response::data(
                json!({"public_key": self.audit.public_key()?, "algorithm": "ed25519"}),
            )),
            Route::KeyStatus => {
                let keyring = self.barrier.keyring()?;
                let active = keyring.active_term();
                let term = keyring
                    .term(active)
                    .ok_or_else(|| ApiError::internal("active term missing"))?;
                let rewrap = self.barrier.rewrap_status();
                Ok(Response::data(json!({
                    "term": active.0,
                    "install_time": crate::duration::timestamp(std::time::UNIX_EPOCH + std::time::Duration::from_secs(term.created())),
                    "encryptions": term.wraps(),
                    "terms": keyring.terms().iter().map(|t| t.number().0).collect::<Vec<_>>(),
                    "rewrap": {"running": rewrap.running, "scanned": rewrap.scanned, "rewrapped": rewrap.rewrapped},
                })))
            }
            Route::Rotate => {
                self.barrier.rotate(now)?;
                let barrier = std::sync::Arc::clone(&self.barrier);
                // Rewrapping can take a while; it runs on its own and reports in key-status.
                std::thread::Builder::new()
                    .name("vaultd-rewrap".into())
                    .spawn(move || {
                        if let Err(e) = barrier.rewrap() {
                            tracing::error!(error = %e, "rewrap after rotation failed; old key terms stay until the next rewrap");
                        }
                    })
                    .map_err(|e| ApiError::internal(e.to_string()))?;
                Ok(Response::empty())
            }
            _ => Err(ApiError::unsupported_path(&request.path)),
        }
    }

    fn seal_status(&self) -> Result<Value, ApiError> {
        let status = self.seal.status(Instant::now())?;
        Ok(json!({
            "type": status.seal_type.name(),
            "initialized": status.initialized,
            "sealed": status.sealed,
            "t": status.threshold,
            "n": status.shares,
            "progress": status.progress,
            "nonce": status.nonce,
            "version": VERSION,
            "build_date": "",
            "migration": false,
            "recovery_seal": false,
            "storage_type": "sled",
            "cluster_name": if status.initialized && !status.sealed { json!("vaultd") } else { Value::Null },
        }))
    }

    fn init(&self, request: &Request) -> Result<Response, ApiError> {
        if request.operation == Operation::Read {
            let initialized = self.seal.config()?.is_some();
            return Ok(Response::plain(json!({"initialized": initialized})));
        }
        if !self.may_init_from(request.remote.ip()) {
            return Err(ApiError::permission_denied());
        }
        let mut fields = Fields::new(request);
        let shares = fields.u64("secret_shares")?.unwrap_or(5);
        let threshold = fields.u64("secret_threshold")?.unwrap_or(3);
        // Clients send empty PGP fields by default; only a real key asks for encryption.
        let pgp_keys = fields.strings("pgp_keys")?.unwrap_or_default();
        let root_pgp = fields.string("root_token_pgp_key")?.unwrap_or_default();
        if !pgp_keys.is_empty() || !root_pgp.is_empty() {
            return Err(ApiError::bad_request(
                "PGP-encrypted shares are not supported by vaultd",
            ));
        }
        for ignored in [
            "stored_shares",
            "recovery_shares",
            "recovery_threshold",
            "recovery_pgp_keys",
        ] {
            let _ = fields.value(ignored);
        }
        let warnings = fields.unknown();
        let (shares, threshold) = match (u8::try_from(shares), u8::try_from(threshold)) {
            (Ok(s), Ok(t)) => (s, t),
            _ => {
                return Err(ApiError::bad_request(
                    "secret_shares and secret_threshold must be between 1 and 255",
                ));
            }
        };
        let initialized = self.initialize(shares, threshold)?;
        let hex: Vec<String> = initialized.shares.iter().map(UnsealShare::to_hex).collect();
        let base64: Vec<String> = initialized
            .shares
            .iter()
            .map(UnsealShare::to_base64)
            .collect();
        let mut body = json!({"keys": hex, "keys_base64": base64, "root_token": initialized.root_token.as_str()});
        let warnings: Vec<String> = warnings.into_iter().chain(initialized.warnings).collect();
        if !warnings.is_empty() {
            body["warnings"] = json!(warnings);
        }
        Ok(Response::plain(body))
    }

    fn unseal_route(&self, request: &Request) -> Result<Response, ApiError> {
        let mut fields = Fields::new(request);
        if fields.bool("reset")?.unwrap_or(false) {
            self.seal.reset();
            return Ok(Response::plain(self.seal_status()?));
        }
        let _ = fields.bool("migrate")?;
        let nonce = fields.string("nonce")?;
        let key = fields.string("key")?.ok_or_else(|| {
            ApiError::bad_request(
                "'key' must be specified in request body as JSON, or 'reset' set to true",
            )
        })?;
        let share = UnsealShare::parse(&key).map_err(|e| ApiError::bad_request(e.to_string()))?;
        self.unseal(share, nonce.as_deref())?;
        Ok(Response::plain(self.seal_status()?))
    }

    fn health(&self, request: &Request) -> Result<Response, ApiError> {
        let mut fields = Fields::new(request);
        let status = self.seal.status(Instant::now())?;
        let code =
            |name: &'static str, default: u16, fields: &mut Fields<'_>| -> Result<u16, ApiError> {
                Ok(fields
                    .u64(name)?
                    .and_then(|c| u16::try_from(c).ok())
                    .filter(|c| (100..600).contains(c))
                    .unwrap_or(default))
            };
        let status_code = if !status.initialized {
            code("uninitcode", 501, &mut fields)?
        } else if status.sealed {
            code("sealedcode", 503, &mut fields)?
        } else {
            code("activecode", 200, &mut fields)?
        };
        let body = json!({
            "initialized": status.initialized,
            "sealed": status.sealed,
            "standby": false,
            "performance_standby": false,
            "replication_performance_mode": "disabled",
            "replication_dr_mode": "disabled",
            "server_time_utc": SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs()),
            "version": VERSION,
            "cluster_name": "vaultd",
            "echo_duration_ms": 0,
            "clock_skew_ms": 0,
        });
        Ok(Response {
            status: Some(status_code),
            ..Response::plain(body)
        })
    }

    fn enable_mount(
        &self,
        path: &str,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let mut fields = Fields::new(request);
        let kind = fields
            .string("type")?
            .ok_or_else(|| ApiError::bad_request("type is required"))?;
        let description = fields.string("description")?.unwrap_or_default();
        let options = fields.string_map("options")?.unwrap_or_default();
        for ignored in [
            "config",
            "local",
            "seal_wrap",
            "plugin_name",
            "plugin_version",
            "external_entropy_access",
        ] {
            let _ = fields.value(ignored);
        }
        let engine = match (kind.as_str(), options.get("version").map(String::as_str)) {
            ("kv", Some("2")) | ("kv-v2", _) => EngineType::Kv,
            ("transit", _) => EngineType::Transit,
            ("kv", _) => {
                return Err(ApiError::bad_request(
                    "vaultd supports only version 2 of the kv engine: set options.version to 2",
                ));
            }
            (other, _) => {
                return Err(ApiError::bad_request(format!(
                    "unknown engine type {other:?}: vaultd mounts kv (version 2)"
                )));
            }
        };
        self.mounts.mount(path, engine, &description, now)?;
        Ok(Response::empty().with_warnings(fields.unknown()))
    }

    fn ui_mount(&self, path: &str, token: &Token) -> Result<Response, ApiError> {
        let Some((mount, _)) = self.mounts.resolve(path) else {
            return Err(ApiError::bad_request(format!(
                "preflight capability check returned 403, please ensure client's policies grant access to path \"{path}/\""
            )));
        };
        let acl = self.policies.acl(&token.entry.policies)?;
        if !acl.any_under(&mount.path) {
            return Err(ApiError::permission_denied());
        }
        let mut described = mount.describe();
        if let Value::Object(map) = &mut described {
            map.insert("path".into(), json!(mount.path));
        }
        Ok(Response::data(described))
    }

    fn policy_route(
        &self,
        name: &str,
        legacy: bool,
        request: &Request,
    ) -> Result<Response, ApiError> {
        match request.operation {
            Operation::Read => {
                let text = if name == "root" {
                    String::new()
                } else {
                    self.policies
                        .get(name)?
                        .ok_or_else(ApiError::not_found)?
                        .text
                        .clone()
                };
                let name = name.to_lowercase();
                Ok(Response::data(if legacy {
                    json!({"name": name, "rules": text})
                } else {
                    json!({"name": name, "policy": text})
                }))
            }
            Operation::Write => {
                let mut fields = Fields::new(request);
                let text = match fields.string("policy")? {
                    Some(text) => text,
                    None => fields.string("rules")?.ok_or_else(|| {
                        ApiError::bad_request("'policy' parameter not supplied or empty")
                    })?,
                };
                let text = decode_policy_text(&text);
                self.policies.put(name, &text)?;
                Ok(Response::empty().with_warnings(fields.unknown()))
            }
            _ => {
                self.policies.delete(name)?;
                Ok(Response::empty())
            }
        }
    }
}

/// Vault accepts a policy given base64-encoded; decode it when it is.
fn decode_policy_text(text: &str) -> String {
    use base64::Engine as _;
    if text.contains('{') || text.contains('"') {
        return text.to_string();
    }
    base64::engine::general_purpose::STANDARD
        .decode(text.trim())
        .ok()
        .and_then(|bytes| String::from_utf8(bytes).ok())
        .unwrap_or_else(|| text.to_string())
}
