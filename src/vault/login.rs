//! Logins in the request pipeline, and the list of auth methods.

use std::time::{Instant, SystemTime};

use serde_json::json;

use super::{Route, Vault};
use crate::api::{ApiError, Request, Response};

/// The auth methods, all at fixed paths: `(path, type, description)`.
const METHODS: [(&str, &str, &str); 3] = [
    ("token/", "token", "token based credentials"),
    ("userpass/", "userpass", "operators, by name and password"),
    ("cert/", "cert", "services, by TLS client certificate"),
];

impl Vault {
    /// A login: answered with a new token, wrapped if the request asks.
    pub(super) fn handle_login(
        &self,
        route: &Route<'_>,
        request: &Request,
    ) -> Result<Response, ApiError> {
        let refused = |e: &ApiError| {
            e.messages
                .iter()
                .any(|m| m == crate::auth::userpass::INVALID || m == crate::auth::cert::INVALID)
        };
        self.handle_tokenless(request, refused, |now| {
            let result = match route {
                Route::UserpassLogin(name) => self.userpass.login(name, request, &self.tokens, now),
                Route::CertLogin => self.cert.login(request, &self.tokens, now),
                _ => Err(ApiError::internal("route is not a login")),
            };
            self.wrap_if_asked(request, result, now)
        })
    }

    /// Runs `act` for a request that carries no auth token (a login, or a route authorised
    /// by a wrapping token): refused while the caller's address backs off, audited before
    /// and after like every request, and an answer that `refused` recognises as a failed
    /// authentication counts toward the back-off.
    pub(super) fn handle_tokenless(
        &self,
        request: &Request,
        refused: impl Fn(&ApiError) -> bool,
        act: impl FnOnce(SystemTime) -> Result<Response, ApiError>,
    ) -> Result<Response, ApiError> {
        let address = request.remote.ip();
        if let Some(retry_after) = self.auth_failures.delay(address, Instant::now()) {
            return Err(ApiError::rate_limited(retry_after));
        }
        self.audit.log(self.request_entry(request, None, None)?)?;
        let result = act(SystemTime::now());
        match &result {
            Err(e) if refused(e) => self.auth_failures.failed(address, Instant::now()),
            Ok(_) => self.auth_failures.succeeded(address),
            Err(_) => {}
        }
        self.audit
            .log(self.response_entry(request, None, &result)?)?;
        result
    }

    /// `sys/auth` lists the auth methods; `sys/auth/:path` cannot change them, since each
    /// lives at a fixed path.
    pub(super) fn auth_methods(&self, route: &Route<'_>) -> Result<Response, ApiError> {
        match route {
            Route::AuthMethods => {
                let mut data = serde_json::Map::new();
                for (path, kind, description) in METHODS {
                    data.insert(
                        path.into(),
                        json!({
                            "type": kind,
                            "description": description,
                            "accessor": format!("auth_{kind}_vaultd"),
                            "local": false,
                            "seal_wrap": false,
                            "config": {"default_lease_ttl": 0, "max_lease_ttl": 0},
                            "options": null,
                        }),
                    );
                }
                Ok(Response::data(serde_json::Value::Object(data)))
            }
            Route::AuthMethod(path) => {
                let path = format!("{}/", path.trim_end_matches('/'));
                if METHODS.iter().any(|(p, _, _)| *p == path) {
                    Err(ApiError::bad_request(format!(
                        "path is already in use at {path}: vaultd's auth methods are always enabled at fixed paths"
                    )))
                } else {
                    Err(ApiError::bad_request(format!(
                        "vaultd has no auth method to enable at {path}: its methods are token/, userpass/ and cert/, at fixed paths"
                    )))
                }
            }
            _ => Err(ApiError::internal("route is not sys/auth")),
        }
    }
}
