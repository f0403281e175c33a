//! The HTTPS server: TLS accept, HTTP/1.1, request parsing, limits, and the response headers
//! every answer carries.
//!
//! ```text
//! TLS accept → request id → rate limit (address) → size and shape checks → vault pipeline
//! → reply with security headers
//! ```

pub mod tls;

use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::header::{self, HeaderMap, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use serde_json::{Map, Value, json};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;
use tracing::Instrument;
use zeroize::Zeroizing;

use crate::api::{ApiError, ClientCertificates, ClientToken, Operation, Request, Response};
use crate::config::Limits;
use crate::limits::{Allowed, Limiter};
use crate::vault::{Outcome, Vault};

/// Time allowed for a TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a connection needs.
pub struct Server {
    vault: Arc<Vault>,
    limits: Limits,
    per_address: Limiter<IpAddr>,
}

type HttpResponse = hyper::Response<Full<Bytes>>;

impl Server {
    /// A server for `vault` with `limits`.
    pub fn new(vault: Arc<Vault>, limits: Limits) -> Arc<Self> {
        let per_address = Limiter::new(
            limits.requests_per_second_per_address,
            limits.burst_per_address,
            limits.max_tracked_clients,
        );
        Arc::new(Server {
            vault,
            limits,
            per_address,
        })
    }

    /// Accepts connections until the process ends.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, acceptor: TlsAcceptor) {
        loop {
            let (tcp, remote) = match listener.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let server = Arc::clone(&self);
            let acceptor = acceptor.clone();
            let header_timeout = self.limits.header_read_timeout;
            tokio::spawn(async move {
                // A client that does not speak TLS (plain HTTP included) gets no HTTP answer.
                let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await
                {
                    Ok(Ok(tls)) => tls,
                    Ok(Err(e)) => {
                        tracing::debug!(%remote, error = %e, "TLS handshake failed");
                        return;
                    }
                    Err(_) => {
                        tracing::debug!(%remote, "TLS handshake timed out");
                        return;
                    }
                };
                let certificates: Option<ClientCertificates> =
                    tls.get_ref().1.peer_certificates().map(|chain| {
                        Arc::new(chain.iter().map(|c| c.clone().into_owned()).collect())
                    });
                let service = service_fn(move |request| {
                    let server = Arc::clone(&server);
                    let certificates = certificates.clone();
                    async move {
                        Ok::<_, Infallible>(server.respond(remote, certificates, request).await)
                    }
                });
                let result = http1::Builder::new()
                    .timer(TokioTimer::new())
                    .header_read_timeout(Some(header_timeout))
                    .serve_connection(TokioIo::new(tls), service)
                    .await;
                if let Err(e) = result {
                    tracing::debug!(%remote, error = %e, "connection ended with an error");
                }
            });
        }
    }

    async fn respond(
        self: Arc<Self>,
        remote: SocketAddr,
        certificates: Option<ClientCertificates>,
        request: hyper::Request<Incoming>,
    ) -> HttpResponse {
        let id = uuid::Uuid::new_v4().to_string();
        let span = tracing::info_span!("request", request_id = %id, method = %request.method(), remote = %remote.ip());
        let started = Instant::now();
        let head_only = request.method() == Method::HEAD;
        async move {
            let (result, rate) = match self.per_address.check(&remote.ip()) {
                Err(refused) => {
                    tracing::warn!(
                        retry_after = refused.retry_after,
                        "rate limit reached for address"
                    );
                    (
                        Err(ApiError::rate_limited(refused.retry_after)),
                        Some(Allowed {
                            limit: refused.limit,
                            remaining: 0,
                        }),
                    )
                }
                Ok(allowed) => match self.parse(&id, remote, request).await {
                    Err(e) => (Err(e), Some(allowed)),
                    Ok(mut parsed) => {
                        parsed.client_certificates = certificates;
                        let vault = Arc::clone(&self.vault);
                        let outcome = tokio::task::spawn_blocking(move || {
                            let outcome = vault.handle(&parsed);
                            (outcome, parsed.path)
                        })
                        .await;
                        match outcome {
                            Ok((Outcome { result, rate }, path)) => {
                                tracing::debug!(%path, "handled");
                                (result, rate.or(Some(allowed)))
                            }
                            Err(e) => (
                                Err(ApiError::internal(format!("request task failed: {e}"))),
                                Some(allowed),
                            ),
                        }
                    }
                },
            };
            let response = build_response(&id, result, rate, head_only);
            tracing::debug!(
                status = response.status().as_u16(),
                micros = started.elapsed().as_micros() as u64,
                "done"
            );
            response
        }
        .instrument(span)
        .await
    }

    async fn parse(
        &self,
        id: &str,
        remote: SocketAddr,
        request: hyper::Request<Incoming>,
    ) -> Result<Request, ApiError> {
        let (parts, body) = request.into_parts();
        let raw_path = parts.uri.path();
        let Some(path) = raw_path.strip_prefix("/v1/") else {
            return Err(ApiError::unsupported_path(raw_path));
        };
        let path = decode_path(path)?;
        let query: Vec<(String, String)> =
            form_urlencoded::parse(parts.uri.query().unwrap_or("").as_bytes())
                .into_owned()
                .collect();
        let list = query.iter().any(|(k, v)| k == "list" && v == "true");
        let operation = match (&parts.method, list) {
            (&Method::GET | &Method::HEAD, true) => Operation::List,
            (&Method::GET | &Method::HEAD, false) => Operation::Read,
            (&Method::POST | &Method::PUT, _) => Operation::Write,
            (&Method::DELETE, _) => Operation::Delete,
            (&Method::PATCH, _) => Operation::Patch,
            (method, _) if method.as_str() == "LIST" => Operation::List,
            _ => return Err(ApiError::method_not_allowed()),
        };
        // One canonical path for routing and for policy checks alike: a listing names a
        // directory and ends in `/`; nothing else does.
        let path = if operation == Operation::List {
            if path.ends_with('/') {
                path
            } else {
                format!("{path}/")
            }
        } else {
            path.trim_end_matches('/').to_string()
        };
        if parts.method == Method::HEAD && path != "sys/health" {
            return Err(ApiError::method_not_allowed());
        }
        let token = token_from(&parts.headers)?;
        let wrap_ttl = match parts.headers.get("x-vault-wrap-ttl") {
            Some(value) => {
                let text = value
                    .to_str()
                    .map_err(|_| ApiError::bad_request("invalid X-Vault-Wrap-TTL"))?;
                let ttl = crate::duration::parse_str(text).map_err(|e| {
                    ApiError::bad_request(format!("error parsing X-Vault-Wrap-TTL header: {e}"))
                })?;
                // Checked before anything runs: a request whose answer cannot be wrapped must
                // not be carried out and then fail.
                if ttl < Duration::from_secs(1) || ttl > crate::wrapping::MAX_WRAP_TTL {
                    return Err(ApiError::bad_request(
                        "X-Vault-Wrap-TTL must be between 1s and 768h",
                    ));
                }
                Some(ttl)
            }
            None => None,
        };

        let limited = Limited::new(body, self.limits.max_request_bytes);
        let bytes =
            match tokio::time::timeout(self.limits.body_read_timeout, limited.collect()).await {
                Err(_) => {
                    return Err(ApiError {
                        status: 408,
                        ..ApiError::bad_request("request body not received in time")
                    });
                }
                Ok(Err(e))
                    if e.downcast_ref::<http_body_util::LengthLimitError>()
                        .is_some() =>
                {
                    return Err(ApiError::too_large(format!(
                        "request body exceeds {} bytes",
                        self.limits.max_request_bytes
                    )));
                }
                Ok(Err(_)) => return Err(ApiError::bad_request("failed to read the request body")),
                Ok(Ok(collected)) => collected.to_bytes(),
            };
        let mut data = parse_body(&bytes)?;
        if matches!(
            operation,
            Operation::Read | Operation::List | Operation::Delete
        ) {
            for (key, value) in query {
                if key != "list" {
                    data.entry(key).or_insert(Value::String(value));
                }
            }
        }
        Ok(Request {
            id: id.to_string(),
            operation,
            path,
            data,
            token,
            remote,
            wrap_ttl,
            client_certificates: None,
        })
    }
}

/// Decodes and checks the path after `/v1/`.
fn decode_path(raw: &str) -> Result<String, ApiError> {
    let decoded = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| ApiError::bad_request("the request path is not valid UTF-8"))?;
    if decoded.chars().any(char::is_control) {
        return Err(ApiError::bad_request(
            "the request path contains a control character",
        ));
    }
    let body = decoded.strip_suffix('/').unwrap_or(&decoded);
    if body.is_empty()
        || body
            .split('/')
            .any(|s| s.is_empty() || s == "." || s == "..")
    {
        return Err(ApiError::bad_request(
            "the request path has an empty, '.' or '..' segment",
        ));
    }
    Ok(decoded.into_owned())
}

fn token_from(headers: &HeaderMap) -> Result<Option<ClientToken>, ApiError> {
    let value = match (
        headers.get("x-vault-token"),
        headers.get(header::AUTHORIZATION),
    ) {
        (Some(token), _) => token
            .to_str()
            .map_err(|_| ApiError::bad_request("invalid X-Vault-Token header"))?,
        (None, Some(auth)) => {
            let auth = auth
                .to_str()
                .map_err(|_| ApiError::bad_request("invalid Authorization header"))?;
            match auth
                .strip_prefix("Bearer ")
                .or_else(|| auth.strip_prefix("bearer "))
            {
                Some(token) => token,
                None => return Ok(None),
            }
        }
        (None, None) => return Ok(None),
    };
    let value = value.trim();
    if value.is_empty() {
        return Ok(None);
    }
    Ok(Some(ClientToken(Zeroizing::new(value.to_string()))))
}

fn parse_body(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Map::new());
    }
    // serde_json refuses nesting deeper than 128 levels, so deep documents fail here cleanly.
    match serde_json::from_slice::<Value>(bytes) {
        Ok(Value::Object(map)) => Ok(map),
        // `bao write -f` sends `null`: no data, as Vault reads it.
        Ok(Value::Null) => Ok(Map::new()),
        Ok(_) => Err(ApiError::bad_request(
            "the request body must be a JSON object",
        )),
        Err(e) => Err(ApiError::bad_request(format!(
            "failed to parse JSON input: {e}"
        ))),
    }
}

fn build_response(
    id: &str,
    result: Result<Response, ApiError>,
    rate: Option<Allowed>,
    head_only: bool,
) -> HttpResponse {
    let content_type = match &result {
        Ok(Response {
            raw: Some((content_type, _)),
            ..
        }) => *content_type,
        _ => "application/json",
    };
    let (status, body, retry_after) = match result {
        Ok(response) => {
            if let Some((_, raw)) = response.raw {
                (response.status.unwrap_or(200), Some(raw), None)
            } else if response.plain {
                let body =
                    serde_json::to_vec(&response.data.unwrap_or(Value::Null)).unwrap_or_default();
                (response.status.unwrap_or(200), Some(body), None)
            } else if response.data.is_none()
                && response.auth.is_none()
                && response.wrap_info.is_none()
                && response.warnings.is_empty()
                && response.status.is_none()
            {
                (204, None, None)
            } else {
                let envelope = json!({
                    "request_id": id,
                    "lease_id": "",
                    "renewable": false,
                    "lease_duration": 0,
                    "data": response.data,
                    "wrap_info": response.wrap_info,
                    "warnings": if response.warnings.is_empty() { Value::Null } else { json!(response.warnings) },
                    "auth": response.auth,
                    "mount_type": "",
                });
                (
                    response.status.unwrap_or(200),
                    Some(serde_json::to_vec(&envelope).unwrap_or_default()),
                    None,
                )
            }
        }
        Err(error) => {
            if let Some(detail) = &error.detail {
                tracing::error!(status = error.status, detail = %detail, "request failed");
            } else if error.status >= 400 && error.status != 404 {
                tracing::debug!(status = error.status, error = %error, "request refused");
            }
            let mut body = json!({"errors": error.messages});
            if let Some(data) = error.data {
                body["data"] = data;
            }
            (
                error.status,
                Some(serde_json::to_vec(&body).unwrap_or_default()),
                error.retry_after,
            )
        }
    };
    let mut builder = hyper::Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR));
    if let Some(headers) = builder.headers_mut() {
        security_headers(headers, id);
        if body.is_some() {
            headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
        }
        if let Some(rate) = rate {
            headers.insert("x-ratelimit-limit", HeaderValue::from(rate.limit));
            headers.insert("x-ratelimit-remaining", HeaderValue::from(rate.remaining));
        }
        if let Some(seconds) = retry_after {
            headers.insert(header::RETRY_AFTER, HeaderValue::from(seconds));
            headers.insert("x-ratelimit-reset", HeaderValue::from(seconds));
        }
    }
    let body = if head_only {
        Bytes::new()
    } else {
        Bytes::from(body.unwrap_or_default())
    };
    builder
        .body(Full::new(body))
        .unwrap_or_else(|_| hyper::Response::new(Full::new(Bytes::new())))
}

fn security_headers(headers: &mut HeaderMap, id: &str) {
    if let Ok(value) = HeaderValue::from_str(id) {
        headers.insert("x-request-id", value);
    }
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    headers.insert(
        header::STRICT_TRANSPORT_SECURITY,
        HeaderValue::from_static("max-age=31536000; includeSubDomains"),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'"),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_decoded_and_checked() {
        assert_eq!(decode_path("secret/data/a%20b").unwrap(), "secret/data/a b");
        assert_eq!(decode_path("secret/metadata/").unwrap(), "secret/metadata/");
        for bad in [
            "secret//x",
            "secret/../sys",
            "a/%2e%2e/b",
            "a%00b",
            "%ff",
            "",
            "/",
        ] {
            assert!(decode_path(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn bodies_must_be_json_objects() {
        assert!(parse_body(b"").unwrap().is_empty());
        assert!(parse_body(b"[1]").is_err());
        assert!(parse_body(b"{").is_err());
        let deep = format!("{}{}", "{\"a\":".repeat(200), "}".repeat(200));
        assert!(parse_body(deep.as_bytes()).is_err());
        assert_eq!(parse_body(br#"{"a":1}"#).unwrap()["a"], 1);
    }
}
