//! The `auth/token/` routes.

use std::time::SystemTime;

use super::{Route, Vault};
use crate::api::{ApiError, Fields, Request, Response};
use crate::token::{NewToken, Token};

impl Vault {
    pub(super) fn token_route(
        &self,
        route: &Route<'_>,
        request: &Request,
        caller: &Token,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let mut fields = Fields::new(request);
        let response = match route {
            Route::TokenCreate { orphan } => {
                let new = NewToken {
                    policies: fields.strings("policies")?.unwrap_or_default(),
                    no_default_policy: fields.bool("no_default_policy")?.unwrap_or(false),
                    ttl: fields.duration("ttl")?,
                    explicit_max_ttl: fields.duration("explicit_max_ttl")?,
                    num_uses: fields.u64("num_uses")?.unwrap_or(0),
                    renewable: fields.bool("renewable")?,
                    display_name: fields.string("display_name")?.map(|n| format!("token-{n}")),
                    meta: fields.string_map("meta")?.unwrap_or_default(),
                    orphan: *orphan || fields.bool("no_parent")?.unwrap_or(false),
                    path: request.path.trim_end_matches('/').to_string(),
                    never_expires: false,
                };
                check_unsupported(&mut fields)?;
                let (token, entry) = self.tokens.create(caller, new, now)?;
                Response {
                    auth: Some(entry.auth_block(&token)),
                    ..Response::default()
                }
            }
            Route::TokenLookupSelf => {
                let id = request.token.as_ref().map_or("", |t| t.0.as_str());
                Response::data(caller.entry.lookup_data(id, now))
            }
            Route::TokenLookup => {
                let raw = required(&mut fields, "token")?;
                let found = self.tokens.lookup(&raw, now)?.ok_or_else(bad_token)?;
                Response::data(found.entry.lookup_data(&raw, now))
            }
            Route::TokenLookupAccessor => {
                let accessor = required(&mut fields, "accessor")?;
                let found = self
                    .tokens
                    .lookup_accessor(&accessor, now)?
                    .ok_or_else(|| ApiError::bad_request("invalid accessor"))?;
                Response::data(found.entry.lookup_data("", now))
            }
            Route::TokenRenewSelf | Route::TokenRenew => {
                let (target, token) = if matches!(route, Route::TokenRenew) {
                    let raw = required(&mut fields, "token")?;
                    (
                        self.tokens.lookup(&raw, now)?.ok_or_else(bad_token)?,
                        String::new(),
                    )
                } else {
                    let sent = request.token.as_ref().map_or("", |t| t.0.as_str());
                    (caller.clone(), sent.to_string())
                };
                let increment = fields.duration("increment")?;
                let entry = self.tokens.renew(&target, increment, now)?;
                Response {
                    auth: Some(entry.auth_block(&token)),
                    ..Response::default()
                }
            }
            Route::TokenRevokeSelf => {
                self.tokens.revoke(&caller.hash)?;
                Response::empty()
            }
            Route::TokenRevoke => {
                let raw = required(&mut fields, "token")?;
                if let Some(found) = self.tokens.lookup(&raw, now)? {
                    self.tokens.revoke(&found.hash)?;
                }
                Response::empty()
            }
            Route::TokenRevokeAccessor => {
                let accessor = required(&mut fields, "accessor")?;
                if let Some(found) = self.tokens.lookup_accessor(&accessor, now)? {
                    self.tokens.revoke(&found.hash)?;
                }
                Response::empty()
            }
            _ => return Err(ApiError::unsupported_path(&request.path)),
        };
        Ok(response.with_warnings(fields.unknown()))
    }
}

/// Refuses token features the store does not have. Clients send these fields with empty
/// values by default, so only a real value is refused.
fn check_unsupported(fields: &mut Fields<'_>) -> Result<(), ApiError> {
    for name in ["id", "role_name", "entity_alias", "lease"] {
        if fields.string(name)?.is_some_and(|v| !v.is_empty()) {
            return Err(ApiError::bad_request(format!(
                "{name} is not supported by vaultd's token store"
            )));
        }
    }
    if fields.duration("period")?.is_some_and(|p| !p.is_zero()) {
        return Err(ApiError::bad_request(
            "periodic tokens are not supported by vaultd's token store",
        ));
    }
    if fields
        .string("type")?
        .is_some_and(|t| !t.is_empty() && t != "service" && t != "default")
    {
        return Err(ApiError::bad_request(
            "only service tokens are supported by vaultd's token store",
        ));
    }
    Ok(())
}

fn required(fields: &mut Fields<'_>, name: &'static str) -> Result<String, ApiError> {
    fields
        .string(name)?
        .filter(|v| !v.is_empty())
        .ok_or_else(|| ApiError::bad_request(format!("missing {name}")))
}

/// Vault's answer for a token that does not exist: 403 `bad token`.
fn bad_token() -> ApiError {
    ApiError {
        status: 403,
        ..ApiError::bad_request("bad token")
    }
}
