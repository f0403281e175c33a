//! Response wrapping in the request pipeline: wrapping a response on the way out, and the
//! routes that take a wrapping token instead of an auth token.

use std::time::SystemTime;

use serde_json::Value;

use super::{Route, Vault};
use crate::api::{ApiError, Request, Response};
use crate::wrapping::WrappingStore;

impl Vault {
    /// `result` as the request asked for it: wrapped if it carries `X-Vault-Wrap-TTL` and
    /// the response is one that wrapping applies to.
    pub(super) fn wrap_if_asked(
        &self,
        request: &Request,
        result: Result<Response, ApiError>,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        match (request.wrap_ttl, result) {
            (Some(ttl), Ok(response)) if WrappingStore::wraps(&response) => {
                self.wrapping.wrap(response, &request.path, ttl, now)
            }
            (_, result) => result,
        }
    }

    /// `sys/wrapping/wrap`: the request's data, which only makes sense wrapped.
    pub(super) fn wrap_route(&self, request: &Request) -> Result<Response, ApiError> {
        if request.wrap_ttl.is_none() {
            return Err(ApiError::bad_request(
                "endpoint requires response wrapping to be used",
            ));
        }
        Ok(Response::data(Value::Object(request.data.clone())))
    }

    /// `sys/wrapping/unwrap`, `lookup` and `rewrap`: authorised by the wrapping token itself,
    /// given in the body's `token` or as the request's token. Audited like every request;
    /// an unknown token counts as a failed authentication of the caller's address.
    pub(super) fn handle_wrapping_token(
        &self,
        route: &Route<'_>,
        request: &Request,
    ) -> Result<Response, ApiError> {
        let refused = |e: &ApiError| e.messages.iter().any(|m| m == crate::wrapping::NOT_VALID);
        self.handle_tokenless(request, refused, |now| {
            self.act_on_wrapping_token(route, request, now)
        })
    }

    fn act_on_wrapping_token(
        &self,
        route: &Route<'_>,
        request: &Request,
        now: SystemTime,
    ) -> Result<Response, ApiError> {
        let in_body = match request.data.get("token") {
            Some(Value::String(token)) if !token.is_empty() => Some(token.as_str()),
            None | Some(Value::Null) => None,
            Some(Value::String(_)) => None,
            Some(_) => return Err(ApiError::bad_request("token must be a string")),
        };
        let token = in_body
            .or(request.token.as_ref().map(|t| t.0.as_str()))
            .ok_or_else(|| ApiError::bad_request("a wrapping token is required"))?;
        match route {
            Route::WrappingUnwrap => {
                let unwrapped = self.wrapping.unwrap(token, now)?;
                // Unwrapped and wrapped again, if the unwrap itself asks to be wrapped.
                self.wrap_if_asked(request, Ok(unwrapped), now)
            }
            Route::WrappingLookup => self.wrapping.lookup(token, now),
            Route::WrappingRewrap => self.wrapping.rewrap(token, now),
            _ => Err(ApiError::internal("route takes no wrapping token")),
        }
    }
}
