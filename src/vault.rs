//! The vault: the sealed core, the engines and the audit log behind one request pipeline.
//!
//! ```text
//! route → sealed? → authenticate → audit the request → rate limit (accessor) → authorize
//!       → spend a use → engine → audit the response → reply
//! ```
//!
//! A change is applied only after its request entry is durable in the audit log, and nothing
//! is returned before the response entry is; if either cannot be written the request fails
//! with 500 `audit log unavailable`.

mod login;
mod rotation;
mod routes;
mod sys;
mod tokens;
mod wrapping;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use serde_json::{Map, Value, json};

pub use self::routes::Route;
use crate::api::{ApiError, Operation, Request, Response};
use crate::audit::{AuditBroker, auth_section};
use crate::barrier::Barrier;
use zeroize::Zeroizing;

use crate::config::{AuditDevice, Limits};
use crate::crypto::shamir::UnsealShare;
use crate::keyring::KeyringConfig;
use crate::kv::KvEngine;
use crate::limits::{Allowed, AuthFailures, Limiter};
use crate::mount::{EngineType, MountTable};
use crate::policy::PolicyStore;
use crate::seal::{Seal, SealMechanism};
use crate::storage::Storage;
use crate::token::{Token, TokenStore};

/// What the vault needs from the configuration.
#[derive(Debug, Clone)]
pub struct VaultOptions {
    /// How the unseal key is kept.
    pub seal: SealMechanism,
    /// AEAD and wear limit.
    pub keyring: KeyringConfig,
    /// Audit devices declared in the configuration.
    pub audit: Vec<AuditDevice>,
    /// Request limits.
    pub limits: Limits,
    /// Accept `sys/init` from any address.
    pub allow_init_from_any_address: bool,
    /// Rotators for `command` rotation policies.
    pub rotators: Vec<crate::config::Rotator>,
    /// Encryptions per transit key version before the key is rotated.
    pub transit_encryption_limit: u64,
}

/// The vault.
pub struct Vault {
    options: VaultOptions,
    seal: Seal,
    barrier: Arc<Barrier>,
    tokens: TokenStore,
    policies: PolicyStore,
    mounts: MountTable,
    kv: KvEngine,
    transit: crate::transit::TransitEngine,
    wrapping: crate::wrapping::WrappingStore,
    userpass: crate::auth::userpass::UserpassEngine,
    cert: crate::auth::cert::CertEngine,
    audit: AuditBroker,
    per_token: Limiter<String>,
    auth_failures: AuthFailures,
    // Held while unsealing and initialising, so two operators finishing an unseal at once
    // cannot open the audit devices twice.
    unsealing: std::sync::Mutex<()>,
    reads: rotation::ReadLog,
    running: rotation::Running,

    rotations_ok: std::sync::atomic::AtomicU64,
    rotations_failed: std::sync::atomic::AtomicU64,
    rewrap_not_before: std::sync::atomic::AtomicU64,
    transit_not_before: std::sync::atomic::AtomicU64,
    wrapping_not_before: std::sync::atomic::AtomicU64,
}

/// What `initialize` hands out, once.
pub struct Initialized {
    /// The unseal shares (none for a key file seal).
    pub shares: Vec<UnsealShare>,
    /// The root token; empty if setting up failed.
    pub root_token: Zeroizing<String>,
    /// What went wrong after the seal was initialised.
    pub warnings: Vec<String>,
}

/// The outcome of a request, with what the HTTP layer needs besides the body.
pub struct Outcome {
    /// The answer.
    pub result: Result<Response, ApiError>,
    /// Rate-limit state of the caller's token, when one was checked.
    pub rate: Option<Allowed>,
}

impl Vault {
    /// A sealed vault over `storage`.
    pub fn new(storage: Arc<dyn Storage>, options: VaultOptions) -> Vault {
        let barrier = Arc::new(Barrier::new(storage));
        let limits = &options.limits;
        Vault {
            seal: Seal::new(Arc::clone(&barrier), options.seal.clone(), options.keyring),
            tokens: TokenStore::new(Arc::clone(&barrier)),
            policies: PolicyStore::new(Arc::clone(&barrier)),
            mounts: MountTable::new(Arc::clone(&barrier)),
            kv: KvEngine::new(Arc::clone(&barrier)),
            transit: crate::transit::TransitEngine::new(
                Arc::clone(&barrier),
                options.transit_encryption_limit,
            ),
            wrapping: crate::wrapping::WrappingStore::new(Arc::clone(&barrier)),
            cert: crate::auth::cert::CertEngine::new(Arc::clone(&barrier)),
            userpass: crate::auth::userpass::UserpassEngine::new(
                Arc::clone(&barrier),
                limits.max_tracked_clients,
            ),
            audit: AuditBroker::new(limits.audit_timeout),
            per_token: Limiter::new(
                limits.requests_per_second_per_token,
                limits.burst_per_token,
                limits.max_tracked_clients,
            ),
            auth_failures: AuthFailures::new(limits.max_tracked_clients),
            unsealing: std::sync::Mutex::new(()),
            reads: rotation::ReadLog::default(),
            running: rotation::Running::default(),

            rotations_ok: std::sync::atomic::AtomicU64::new(0),
            rotations_failed: std::sync::atomic::AtomicU64::new(0),
            rewrap_not_before: std::sync::atomic::AtomicU64::new(0),
            transit_not_before: std::sync::atomic::AtomicU64::new(0),
            wrapping_not_before: std::sync::atomic::AtomicU64::new(0),
            barrier,
            options,
        }
    }

    /// The seal state machine.
    pub fn seal(&self) -> &Seal {
        &self.seal
    }

    /// The barrier.
    pub fn barrier(&self) -> &Arc<Barrier> {
        &self.barrier
    }

    /// The audit broker.
    pub fn audit(&self) -> &AuditBroker {
        &self.audit
    }

    /// Whether the vault is sealed.
    pub fn is_sealed(&self) -> bool {
        self.barrier.is_sealed()
    }

    /// Initialises the vault and sets it up (root token, `default` policy, `secret/` KV
    /// mount). A Shamir vault is left sealed; a key file vault is left unsealed.
    ///
    /// Once the seal is initialised the shares exist nowhere else, so a failure of the steps
    /// after that is reported as warnings beside the shares rather than as an error that
    /// would lose them.
    pub fn initialize(&self, shares: u8, threshold: u8) -> Result<Initialized, ApiError> {
        let _unsealing = self.unsealing.lock().unwrap_or_else(|p| p.into_inner());
        let now = SystemTime::now();
        let options = crate::seal::InitOptions {
            secret_shares: shares,
            secret_threshold: threshold,
        };
        let init = self.seal.init(options, now)?;
        let mut warnings = Vec::new();
        let setup = || -> Result<Zeroizing<String>, ApiError> {
            self.seal.unseal_with(&init.unseal_key)?;
            self.policies.ensure_default()?;
            self.mounts
                .mount("secret/", EngineType::Kv, "key/value secret storage", now)?;
            self.mounts.mount(
                "transit/",
                EngineType::Transit,
                "encryption as a service",
                now,
            )?;
            let (root, _) = self.tokens.create_root(now)?;
            Ok(root)
        };
        let root_token = match setup() {
            Ok(root) => root,
            Err(e) => {
                tracing::error!(error = %e, "the vault was initialised but setting it up failed");
                warnings.push(format!("the vault was initialised, but setting it up failed ({e}); no root token was made"));
                self.seal.seal();
                return Ok(Initialized {
                    shares: init.shares,
                    root_token: Zeroizing::new(String::new()),
                    warnings,
                });
            }
        };
        if matches!(self.options.seal, SealMechanism::Shamir) {
            self.seal.seal();
        } else if let Err(e) = self.after_unseal() {
            warnings.push(format!(
                "the vault was initialised, but it could not finish unsealing ({e}); it is sealed"
            ));
        }
        Ok(Initialized {
            shares: init.shares,
            root_token,
            warnings,
        })
    }

    /// Submits an unseal share and, if that unseals the vault, brings up what lives behind
    /// the barrier.
    pub fn unseal(
        &self,
        share: UnsealShare,
        nonce: Option<&str>,
    ) -> Result<crate::seal::SealStatus, ApiError> {
        let _unsealing = self.unsealing.lock().unwrap_or_else(|p| p.into_inner());
        let was_sealed = self.is_sealed();
        let status = self
            .seal
            .submit_share(share, nonce, std::time::Instant::now())?;
        if was_sealed && !status.sealed {
            self.after_unseal()?;
        }
        Ok(status)
    }

    /// Unseals from the key file and brings up what lives behind the barrier.
    pub fn unseal_with_key_file(&self) -> Result<(), ApiError> {
        let _unsealing = self.unsealing.lock().unwrap_or_else(|p| p.into_inner());
        if !self.is_sealed() {
            return Ok(());
        }
        self.seal.unseal_with_key_file()?;
        self.after_unseal()
    }

    /// Brings up what lives behind the barrier after an unseal: the mount table and the audit
    /// devices. If that fails the vault is sealed again.
    pub fn after_unseal(&self) -> Result<(), ApiError> {
        let result = self
            .mounts
            .load()
            .and_then(|()| self.audit.unseal(&self.barrier, &self.options.audit));
        if let Err(e) = result {
            tracing::error!(error = %e, "setting up after unseal failed; sealing again");
            self.seal_now();
            let message = format!(
                "the vault could not finish unsealing and is sealed again: {}",
                e.messages.join("; ")
            );
            return Err(ApiError {
                status: 500,
                messages: vec![message],
                ..e
            });
        }
        Ok(())
    }

    /// Seals: audit devices closed, caches dropped, keys zeroized.
    pub fn seal_now(&self) {
        self.audit.seal(&self.barrier);
        self.mounts.clear();
        self.policies.clear_cache();
        self.seal.seal();
    }

    /// Handles one request from start to end.
    pub fn handle(&self, request: &Request) -> Outcome {
        let route = match Route::resolve(request, &self.mounts) {
            Ok(route) => route,
            Err(e) if self.is_sealed() && !request.path.starts_with("sys/") => {
                drop(e);
                return Outcome {
                    result: Err(ApiError::sealed()),
                    rate: None,
                };
            }
            Err(e) => {
                return Outcome {
                    result: Err(e),
                    rate: None,
                };
            }
        };
        if route.unauthenticated() {
            let result = if request.wrap_ttl.is_some() {
                Err(ApiError::bad_request(
                    "responses of unauthenticated routes cannot be wrapped",
                ))
            } else {
                self.handle_unauthenticated(&route, request)
            };
            return Outcome { result, rate: None };
        }
        if self.is_sealed() {
            return Outcome {
                result: Err(ApiError::sealed()),
                rate: None,
            };
        }
        if route.logs_in() {
            return Outcome {
                result: self.handle_login(&route, request),
                rate: None,
            };
        }
        if route.takes_wrapping_token() {
            return Outcome {
                result: self.handle_wrapping_token(&route, request),
                rate: None,
            };
        }
        self.handle_authenticated(&route, request)
    }

    fn handle_unauthenticated(
        &self,
        route: &Route<'_>,
        request: &Request,
    ) -> Result<Response, ApiError> {
        let audited = !self.is_sealed() && self.audit.enabled();
        if !audited {
            // No audit device can be written while sealed: the operational log records the
            // request instead, without its body.
            tracing::info!(path = %request.path, operation = request.operation.audit_name(), remote = %request.remote.ip(), request_id = %request.id, "unaudited system request");
        }
        if audited {
            self.audit.log(self.request_entry(request, None, None)?)?;
        }
        let result = self.dispatch_unauthenticated(route, request);
        if audited && !self.is_sealed() {
            self.audit
                .log(self.response_entry(request, None, &result)?)?;
        }
        result
    }

    fn handle_authenticated(&self, route: &Route<'_>, request: &Request) -> Outcome {
        let now = SystemTime::now();
        let address = request.remote.ip();
        if let Some(retry_after) = self.auth_failures.delay(address, Instant::now()) {
            tracing::warn!(%address, retry_after, "authentication back-off in force");
            return Outcome {
                result: Err(ApiError::rate_limited(retry_after)),
                rate: None,
            };
        }
        let token = match &request.token {
            Some(sent) => match self.tokens.lookup(&sent.0, now) {
                Ok(token) => token,
                Err(e) => {
                    return Outcome {
                        result: Err(e),
                        rate: None,
                    };
                }
            },
            None => None,
        };
        match (&request.token, &token) {
            (Some(_), None) => {
                // A failed login is a security event, not an error of the daemon.
                tracing::warn!(%address, "invalid token presented");
                self.auth_failures.failed(address, Instant::now());
            }
            (Some(_), Some(_)) => self.auth_failures.succeeded(address),
            _ => {}
        }

        // The request entry comes first: nothing happens that is not audited.
        let entry = self.request_entry(
            request,
            token.as_ref(),
            token.is_none().then_some("permission denied"),
        );
        if let Err(e) = entry.and_then(|entry| self.audit.log(entry)) {
            return Outcome {
                result: Err(e),
                rate: None,
            };
        }

        let mut rate = None;
        let result = (|| {
            let token = token.as_ref().ok_or_else(ApiError::permission_denied)?;
            rate = Some(
                self.per_token
                    .check(&token.entry.accessor)
                    .map_err(|r| ApiError::rate_limited(r.retry_after))?,
            );
            self.authorize(route, request, token)?;
            if matches!(route, Route::TokenCreate { .. }) && token.entry.num_uses > 0 {
                // A child would outlive the uses of its parent.
                return Err(ApiError::bad_request(
                    "a token with a use limit cannot create tokens",
                ));
            }
            // The use is spent before the request is handled, as in Vault, so a lookup shows
            // the count that is left.
            let spent = self
                .tokens
                .spend_use(token, now)?
                .ok_or_else(ApiError::permission_denied)?;
            let result = self.dispatch(route, request, &spent, now);
            self.wrap_if_asked(request, result, now)
        })();

        let result = match self
            .response_entry(request, token.as_ref(), &result)
            .and_then(|entry| self.audit.log(entry))
        {
            Ok(()) => result,
            Err(e) => Err(e),
        };
        if matches!(route, Route::Seal) && result.is_ok() {
            self.seal_now();
        }
        Outcome { result, rate }
    }

    fn authorize(
        &self,
        route: &Route<'_>,
        request: &Request,
        token: &Token,
    ) -> Result<(), ApiError> {
        let acl = self.policies.acl(&token.entry.policies)?;
        if let Route::UiMount(_) = route {
            // Mount discovery is allowed to any token with some access below the mount; the
            // handler checks that.
            return Ok(());
        }
        let exists = match (route, request.operation) {
            (Route::Engine(mount, rest), Operation::Write) => match mount.engine {
                EngineType::Kv => self.kv.exists(mount, rest)?,
                EngineType::Transit => true,
            },
            _ => true,
        };
        // Vault checks a listing against the directory path, with its trailing slash.
        let policy_path = if request.operation == Operation::List && !request.path.ends_with('/') {
            std::borrow::Cow::Owned(format!("{}/", request.path))
        } else {
            std::borrow::Cow::Borrowed(request.path.as_str())
        };
        if let Route::RotationRotate(_) = route {
            // Running a rotation needs vaultd's own `rotate` capability on the path.
            return if acl
                .capabilities(&policy_path)
                .contains(crate::policy::Capabilities::ROTATE)
                && !acl
                    .capabilities(&policy_path)
                    .contains(crate::policy::Capabilities::DENY)
            {
                Ok(())
            } else {
                Err(ApiError::permission_denied())
            };
        }
        if acl.allows(
            &policy_path,
            request.operation,
            exists,
            route.sudo(request.operation),
        ) {
            Ok(())
        } else {
            Err(ApiError::permission_denied())
        }
    }

    fn dispatch(
        &self,
        route: &Route<'_>,
        request: &Request,
        token: &Token,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        match route {
            Route::Engine(mount, rest) => match mount.engine {
                EngineType::Kv => {
                    let mut response = self.kv.handle(mount, rest, request, now)?;
                    if let Some(path) = rest.strip_prefix("data/") {
                        let full = format!("{}{path}", mount.path);
                        match request.operation {
                            Operation::Read if response.status.is_none() => {
                                self.reads.record(&full, token, now)
                            }
                            Operation::Write | Operation::Patch => {
                                response
                                    .warnings
                                    .extend(self.provider_warnings(mount, &full, path, request));
                            }
                            _ => {}
                        }
                    }
                    Ok(response)
                }
                EngineType::Transit => self.transit.handle(mount, rest, request, now),
            },
            Route::TokenCreate { .. }
            | Route::TokenLookup
            | Route::TokenLookupSelf
            | Route::TokenLookupAccessor
            | Route::TokenRenew
            | Route::TokenRenewSelf
            | Route::TokenRevoke
            | Route::TokenRevokeSelf
            | Route::TokenRevokeAccessor => self.token_route(route, request, token, now),
            Route::RotationPolicies
            | Route::RotationPolicy(_)
            | Route::RotationRotate(_)
            | Route::RotateConfig => self.rotation_route(route, request, now),
            Route::Metrics => Ok(self.metrics()),
            Route::WrappingWrap => self.wrap_route(request),
            Route::Userpass(rest) => self.userpass.handle(rest, request),
            Route::Cert(rest) => self.cert.handle(rest, request),
            Route::AuthMethods | Route::AuthMethod(_) => self.auth_methods(route),
            _ => self.sys_route(route, request, token, now),
        }
    }

    fn request_entry(
        &self,
        request: &Request,
        token: Option<&Token>,
        error: Option<&str>,
    ) -> Result<Map<String, Value>, ApiError> {
        let mut data = Value::Object(request.data.clone());
        self.audit.hmac_strings(&mut data)?;
        let client_token = match &request.token {
            Some(sent) => Some(self.audit.hmac(&sent.0)?),
            None => None,
        };
        let (accessor, display_name, policies) = match token {
            Some(t) => (
                t.entry.accessor.as_str(),
                t.entry.display_name.as_str(),
                t.entry.policies.clone(),
            ),
            None => ("", "", Vec::new()),
        };
        let mut entry = Map::new();
        entry.insert(
            "time".into(),
            json!(crate::duration::timestamp(SystemTime::now())),
        );
        entry.insert("type".into(), json!("request"));
        entry.insert(
            "auth".into(),
            auth_section(client_token.clone(), accessor, display_name, &policies),
        );
        entry.insert(
            "request".into(),
            self.request_section(request, client_token, accessor, data),
        );
        entry.insert("error".into(), json!(error.unwrap_or("")));
        Ok(entry)
    }

    fn response_entry(
        &self,
        request: &Request,
        token: Option<&Token>,
        result: &Result<Response, ApiError>,
    ) -> Result<Map<String, Value>, ApiError> {
        let mut entry = self.request_entry(request, token, None)?;
        entry.insert("type".into(), json!("response"));
        let (status, error, mut data, mut auth, warnings) = match result {
            Ok(response) => (
                response.status.unwrap_or(
                    if response.data.is_some()
                        || response.auth.is_some()
                        || response.wrap_info.is_some()
                    {
                        200
                    } else {
                        204
                    },
                ),
                String::new(),
                response.data.clone().unwrap_or(Value::Null),
                response.auth.clone().unwrap_or(Value::Null),
                response.warnings.clone(),
            ),
            Err(e) => (
                e.status,
                e.messages.join("; "),
                e.data.clone().unwrap_or(Value::Null),
                Value::Null,
                Vec::new(),
            ),
        };
        self.audit.hmac_strings(&mut data)?;
        if let Some(client_token) = auth.get_mut("client_token") {
            self.audit.hmac_strings(client_token)?;
        }
        let mut wrap_info = match result {
            Ok(response) => response.wrap_info.clone().unwrap_or(Value::Null),
            Err(_) => Value::Null,
        };
        if let Some(token) = wrap_info.get_mut("token") {
            self.audit.hmac_strings(token)?;
        }
        entry.insert(
            "response".into(),
            json!({
                "status": status,
                "mount_type": mount_type(&request.path, &self.mounts),
                "data": data,
                "auth": auth,
                "wrap_info": wrap_info,
                "warnings": warnings,
            }),
        );
        entry.insert("error".into(), json!(error));
        Ok(entry)
    }

    fn request_section(
        &self,
        request: &Request,
        client_token: Option<String>,
        accessor: &str,
        data: Value,
    ) -> Value {
        json!({
            "id": request.id,
            "operation": request.operation.audit_name(),
            "mount_type": mount_type(&request.path, &self.mounts),
            "client_token": client_token.unwrap_or_default(),
            "client_token_accessor": accessor,
            "namespace": {"id": "root"},
            "path": request.path,
            "data": data,
            "remote_address": request.remote.ip().to_string(),
            "remote_port": request.remote.port(),
            "wrap_ttl": request.wrap_ttl.map_or(0, |d| d.as_secs()),
        })
    }

    /// Whether `address` may call `sys/init`.
    fn may_init_from(&self, address: IpAddr) -> bool {
        self.options.allow_init_from_any_address || address.is_loopback()
    }
}

impl Vault {
    /// Prometheus text exposition of the vault's counters.
    fn metrics(&self) -> Response {
        use std::fmt::Write as _;
        use std::sync::atomic::Ordering;
        let mut out = String::new();
        let sealed = u8::from(self.is_sealed());
        let _ = writeln!(
            out,
            "# HELP vaultd_sealed Whether the vault is sealed.\n# TYPE vaultd_sealed gauge\nvaultd_sealed {sealed}"
        );
        let _ = writeln!(
            out,
            "# HELP vaultd_rotations_total Rotations run by the schedule or on request.\n# TYPE vaultd_rotations_total counter"
        );
        let _ = writeln!(
            out,
            "vaultd_rotations_total{{result=\"ok\"}} {}",
            self.rotations_ok.load(Ordering::Relaxed)
        );
        let _ = writeln!(
            out,
            "vaultd_rotations_total{{result=\"failed\"}} {}",
            self.rotations_failed.load(Ordering::Relaxed)
        );
        if let Ok(keyring) = self.barrier.keyring() {
            let terms = keyring.terms();
            let _ = writeln!(
                out,
                "# HELP vaultd_key_terms Live key terms.\n# TYPE vaultd_key_terms gauge\nvaultd_key_terms {}",
                terms.len()
            );
            let active = keyring.term(keyring.active_term()).map_or(0, |t| t.wraps());
            let _ = writeln!(
                out,
                "# HELP vaultd_key_term_wraps Data keys wrapped by the active term.\n# TYPE vaultd_key_term_wraps gauge\nvaultd_key_term_wraps {active}"
            );
        }
        let states = self.rotation_states(std::time::SystemTime::now());
        let _ = writeln!(
            out,
            "# HELP vaultd_rotation_jobs Secrets with a rotation policy, by state.\n# TYPE vaultd_rotation_jobs gauge"
        );
        for state in ["ok", "due", "overdue", "failing"] {
            let _ = writeln!(
                out,
                "vaultd_rotation_jobs{{state=\"{state}\"}} {}",
                states.get(state).copied().unwrap_or(0)
            );
        }
        let rewrap = self.barrier.rewrap_status();
        let _ = writeln!(
            out,
            "# HELP vaultd_rewrap_rewrapped Data keys moved by the current or last rewrap.\n# TYPE vaultd_rewrap_rewrapped gauge\nvaultd_rewrap_rewrapped {}",
            rewrap.rewrapped
        );
        Response {
            raw: Some(("text/plain; version=0.0.4", out.into_bytes())),
            ..Response::default()
        }
    }
}

fn mount_type(path: &str, mounts: &MountTable) -> &'static str {
    if path.starts_with("sys/") {
        "system"
    } else if path.starts_with("auth/token/") {
        "token"
    } else if path.starts_with("auth/userpass/") {
        "userpass"
    } else if path.starts_with("auth/cert/") {
        "cert"
    } else {
        mounts.resolve(path).map_or("", |(m, _)| m.engine.name())
    }
}

#[cfg(test)]
mod tests;
