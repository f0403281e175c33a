//! The `auth/token/` routes.

use std::time::SystemTime;

use serde_json::json;

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
                };
                for ignored in ["id", "role_name", "type", "entity_alias", "period", "lease"] {
                    if fields.value(ignored).is_some() && ignored != "type" {
                        return Err(ApiError::bad_request(format!(
                            "{ignored} is not supported by vaultd's token store"
                        )));
                    }
                }
                let (token, entry) = self.tokens.create(caller, new, now)?;
                Response {
                    auth: Some(entry.auth_block(&token)),
                    ..Response::default()
                }
            }
            Route::TokenLookupSelf => Response::data(caller.entry.lookup_data("", now)),
            Route::TokenLookup => {
                let raw = fields
                    .string("token")?
                    .ok_or_else(|| ApiError::bad_request("missing token"))?;
                let found = self
                    .tokens
                    .lookup(&raw, now)?
                    .ok_or_else(|| ApiError::bad_request("bad token"))?;
                Response::data(found.entry.lookup_data("", now))
            }
            Route::TokenLookupAccessor => {
                let accessor = fields
                    .string("accessor")?
                    .ok_or_else(|| ApiError::bad_request("missing accessor"))?;
                let found = self
                    .tokens
                    .lookup_accessor(&accessor, now)?
                    .ok_or_else(|| ApiError::bad_request("invalid accessor"))?;
                Response::data(found.entry.lookup_data("", now))
            }
            Route::TokenRenewSelf | Route::TokenRenew => {
                let target = if matches!(route, Route::TokenRenew) {
                    let raw = fields
                        .string("token")?
                        .ok_or_else(|| ApiError::bad_request("missing token"))?;
                    self.tokens
                        .lookup(&raw, now)?
                        .ok_or_else(|| ApiError::bad_request("bad token"))?
                } else {
                    caller.clone()
                };
                let increment = fields.duration("increment")?;
                let entry = self.tokens.renew(&target, increment, now)?;
                let mut auth = entry.auth_block("");
                auth["client_token"] = json!(if matches!(route, Route::TokenRenewSelf) {
                    request.token.as_ref().map(|t| t.0.as_str()).unwrap_or("")
                } else {
                    ""
                });
                Response {
                    auth: Some(auth),
                    ..Response::default()
                }
            }
            Route::TokenRevokeSelf => {
                self.tokens.revoke(&caller.hash)?;
                Response::empty()
            }
            Route::TokenRevoke => {
                let raw = fields
                    .string("token")?
                    .ok_or_else(|| ApiError::bad_request("missing token"))?;
                if let Some(found) = self.tokens.lookup(&raw, now)? {
                    self.tokens.revoke(&found.hash)?;
                }
                Response::empty()
            }
            Route::TokenRevokeAccessor => {
                let accessor = fields
                    .string("accessor")?
                    .ok_or_else(|| ApiError::bad_request("missing accessor"))?;
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
