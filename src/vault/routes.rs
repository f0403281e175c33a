//! Which route a path names, and what each route requires.

use crate::api::{ApiError, Operation, Request};
use crate::mount::{MountEntry, MountTable};

/// A resolved route.
pub enum Route<'a> {
    /// `sys/init`
    Init,
    /// `sys/seal-status`
    SealStatus,
    /// `sys/unseal`
    Unseal,
    /// `sys/seal`
    Seal,
    /// `sys/health`
    Health,
    /// `sys/leader`
    Leader,
    /// `sys/mounts`
    Mounts,
    /// `sys/mounts/:path`
    Mount(&'a str),
    /// `sys/internal/ui/mounts/:path`
    UiMount(&'a str),
    /// `sys/policies/acl` and `sys/policy`
    Policies {
        /// The legacy `sys/policy` form.
        legacy: bool,
    },
    /// `sys/policies/acl/:name` and `sys/policy/:name`
    Policy {
        /// The policy name.
        name: &'a str,
        /// The legacy `sys/policy/:name` form.
        legacy: bool,
    },
    /// `sys/audit`
    Audit,
    /// `sys/audit/:name`
    AuditDevice(&'a str),
    /// `sys/audit-hash/:name`
    AuditHash(&'a str),
    /// `sys/audit-public-key` (vaultd's own)
    AuditPublicKey,
    /// `sys/key-status`
    KeyStatus,
    /// `sys/rotate`
    Rotate,
    /// `auth/token/create` and `create-orphan`
    TokenCreate {
        /// `create-orphan`.
        orphan: bool,
    },
    /// `auth/token/lookup`
    TokenLookup,
    /// `auth/token/lookup-self`
    TokenLookupSelf,
    /// `auth/token/lookup-accessor`
    TokenLookupAccessor,
    /// `auth/token/renew`
    TokenRenew,
    /// `auth/token/renew-self`
    TokenRenewSelf,
    /// `auth/token/revoke`
    TokenRevoke,
    /// `auth/token/revoke-self`
    TokenRevokeSelf,
    /// `auth/token/revoke-accessor`
    TokenRevokeAccessor,
    /// `sys/rotation/policy` (LIST)
    RotationPolicies,
    /// `sys/rotation/policy/<mount>/<path>`
    RotationPolicy(&'a str),
    /// `sys/rotation/rotate/<mount>/<path>`
    RotationRotate(&'a str),
    /// `sys/rotate/config`
    RotateConfig,
    /// `sys/metrics`
    Metrics,
    /// `sys/wrapping/wrap`
    WrappingWrap,
    /// `sys/wrapping/unwrap`
    WrappingUnwrap,
    /// `sys/wrapping/lookup`
    WrappingLookup,
    /// `sys/wrapping/rewrap`
    WrappingRewrap,
    /// `sys/auth`
    AuthMethods,
    /// `sys/auth/:path`
    AuthMethod(&'a str),
    /// `auth/userpass/login/:name`
    UserpassLogin(&'a str),
    /// Any other path under `auth/userpass/`, with the rest of the path.
    Userpass(&'a str),
    /// `auth/cert/login`
    CertLogin,
    /// Any other path under `auth/cert/`, with the rest of the path.
    Cert(&'a str),
    /// A path served by a mounted engine.
    Engine(MountEntry, &'a str),
}

impl<'a> Route<'a> {
    /// Resolves `request`'s path, checking the method the route takes.
    pub fn resolve(request: &'a Request, mounts: &MountTable) -> Result<Route<'a>, ApiError> {
        use Operation::*;
        let path = request.path.as_str();
        let op = request.operation;
        let trimmed = path.trim_end_matches('/');
        let route = match trimmed {
            "sys/init" => only(op, &[Read, Write], Route::Init)?,
            "sys/seal-status" => only(op, &[Read], Route::SealStatus)?,
            "sys/unseal" => only(op, &[Write], Route::Unseal)?,
            "sys/seal" => only(op, &[Write], Route::Seal)?,
            "sys/health" => only(op, &[Read], Route::Health)?,
            "sys/leader" => only(op, &[Read], Route::Leader)?,
            "sys/mounts" => only(op, &[Read], Route::Mounts)?,
            "sys/policies/acl" => only(op, &[List, Read], Route::Policies { legacy: false })?,
            "sys/policy" => only(op, &[Read, List], Route::Policies { legacy: true })?,
            "sys/audit" => only(op, &[Read], Route::Audit)?,
            "sys/audit-public-key" => only(op, &[Read], Route::AuditPublicKey)?,
            "sys/key-status" => only(op, &[Read], Route::KeyStatus)?,
            "sys/rotate" => only(op, &[Write], Route::Rotate)?,
            "sys/rotate/config" => only(op, &[Read, Write], Route::RotateConfig)?,
            "sys/rotation/policy" => only(op, &[List], Route::RotationPolicies)?,
            "sys/metrics" => only(op, &[Read], Route::Metrics)?,
            "sys/wrapping/wrap" => only(op, &[Write], Route::WrappingWrap)?,
            "sys/wrapping/unwrap" => only(op, &[Write], Route::WrappingUnwrap)?,
            "sys/wrapping/lookup" => only(op, &[Write, Read], Route::WrappingLookup)?,
            "sys/wrapping/rewrap" => only(op, &[Write], Route::WrappingRewrap)?,
            "sys/auth" => only(op, &[Read], Route::AuthMethods)?,
            "auth/cert/login" => only(op, &[Write], Route::CertLogin)?,
            "auth/token/create" => only(op, &[Write], Route::TokenCreate { orphan: false })?,
            "auth/token/create-orphan" => only(op, &[Write], Route::TokenCreate { orphan: true })?,
            "auth/token/lookup" => only(op, &[Write, Read], Route::TokenLookup)?,
            "auth/token/lookup-self" => only(op, &[Read, Write], Route::TokenLookupSelf)?,
            "auth/token/lookup-accessor" => only(op, &[Write], Route::TokenLookupAccessor)?,
            "auth/token/renew" => only(op, &[Write], Route::TokenRenew)?,
            "auth/token/renew-self" => only(op, &[Write], Route::TokenRenewSelf)?,
            "auth/token/revoke" => only(op, &[Write], Route::TokenRevoke)?,
            "auth/token/revoke-self" => only(op, &[Write], Route::TokenRevokeSelf)?,
            "auth/token/revoke-accessor" => only(op, &[Write], Route::TokenRevokeAccessor)?,
            _ => {
                if let Some(rest) = tail(trimmed, "sys/mounts/") {
                    only(op, &[Read, Write, Delete], Route::Mount(rest))?
                } else if let Some(rest) = tail(trimmed, "sys/internal/ui/mounts/") {
                    only(op, &[Read], Route::UiMount(rest))?
                } else if let Some(name) = tail(trimmed, "sys/policies/acl/") {
                    only(
                        op,
                        &[Read, Write, Delete],
                        Route::Policy {
                            name,
                            legacy: false,
                        },
                    )?
                } else if let Some(name) = tail(trimmed, "sys/policy/") {
                    only(
                        op,
                        &[Read, Write, Delete],
                        Route::Policy { name, legacy: true },
                    )?
                } else if let Some(name) = tail(trimmed, "sys/audit/") {
                    only(op, &[Write, Delete], Route::AuditDevice(name))?
                } else if let Some(name) = tail(trimmed, "sys/audit-hash/") {
                    only(op, &[Write], Route::AuditHash(name))?
                } else if let Some(path) = tail(trimmed, "sys/rotation/policy/") {
                    only(op, &[Read, Write, Delete], Route::RotationPolicy(path))?
                } else if let Some(path) = tail(trimmed, "sys/rotation/rotate/") {
                    only(op, &[Write], Route::RotationRotate(path))?
                } else if let Some(name) = tail(trimmed, "auth/userpass/login/") {
                    only(op, &[Write], Route::UserpassLogin(name))?
                } else if let Some(rest) = tail(trimmed, "auth/userpass/") {
                    Route::Userpass(rest)
                } else if let Some(rest) = tail(trimmed, "auth/cert/") {
                    Route::Cert(rest)
                } else if let Some(path) = tail(trimmed, "sys/auth/") {
                    only(op, &[Write, Delete], Route::AuthMethod(path))?
                } else if path.starts_with("sys/") || path.starts_with("auth/") {
                    return Err(ApiError::unsupported_path(path));
                } else {
                    match mounts.resolve(path) {
                        Some((mount, rest)) => Route::Engine(mount, rest),
                        None => return Err(ApiError::unsupported_path(path)),
                    }
                }
            }
        };
        Ok(route)
    }

    /// Whether the route answers without a token (and so also while sealed).
    pub fn unauthenticated(&self) -> bool {
        matches!(
            self,
            Route::Init | Route::SealStatus | Route::Unseal | Route::Health | Route::Leader
        )
    }

    /// Whether the route is a login: it needs an unsealed vault but no token, and answers a
    /// new one.
    pub fn logs_in(&self) -> bool {
        matches!(self, Route::UserpassLogin(_) | Route::CertLogin)
    }

    /// Whether the route is authorised by the wrapping token it names (in the body's `token`
    /// or as the request's token), not by an auth token and policy.
    pub fn takes_wrapping_token(&self) -> bool {
        matches!(
            self,
            Route::WrappingUnwrap | Route::WrappingLookup | Route::WrappingRewrap
        )
    }

    /// Whether the route needs the `sudo` capability as well, as in Vault.
    pub fn sudo(&self, op: Operation) -> bool {
        match self {
            Route::Seal
            | Route::Audit
            | Route::AuditDevice(_)
            | Route::AuditHash(_)
            | Route::Rotate
            | Route::RotateConfig
            | Route::KeyStatus => true,
            Route::Mount(_) => op != Operation::Read,
            Route::AuthMethod(_) => true,
            Route::TokenCreate { orphan: true } => true,
            _ => false,
        }
    }
}

fn tail<'p>(path: &'p str, prefix: &str) -> Option<&'p str> {
    path.strip_prefix(prefix).filter(|rest| !rest.is_empty())
}

fn only<'a>(op: Operation, allowed: &[Operation], route: Route<'a>) -> Result<Route<'a>, ApiError> {
    if allowed.contains(&op) {
        Ok(route)
    } else {
        Err(ApiError::method_not_allowed())
    }
}
