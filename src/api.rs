//! The logical request and response that every route handles, and the one place where errors
//! become HTTP statuses.
//!
//! The HTTP layer (`server`) turns a hyper request into a [`Request`]; routes answer with a
//! [`Response`] or an [`ApiError`]. An `ApiError` keeps what the client sees (a status and a
//! short message) apart from what the log sees (the detail), so internals never reach clients
//! and secrets never reach either.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{Map, Value};
use zeroize::Zeroizing;

use crate::barrier::BarrierError;
use crate::seal::SealError;
use crate::storage::StorageError;

/// What a request does, as policies name capabilities.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// GET.
    Read,
    /// POST or PUT.
    Write,
    /// PATCH.
    Patch,
    /// DELETE.
    Delete,
    /// LIST, or GET with `?list=true`.
    List,
}

impl Operation {
    /// The name Vault's audit entries use.
    pub fn audit_name(self) -> &'static str {
        match self {
            Operation::Read => "read",
            Operation::Write => "update",
            Operation::Patch => "patch",
            Operation::Delete => "delete",
            Operation::List => "list",
        }
    }
}

/// A client's token as sent in `X-Vault-Token` or `Authorization: Bearer`. No `Debug`, and
/// zeroized on drop.
pub struct ClientToken(pub Zeroizing<String>);

/// A request after HTTP parsing.
pub struct Request {
    /// The request's ID, returned as `request_id` and `X-Request-Id`.
    pub id: String,
    /// What it does.
    pub operation: Operation,
    /// The path after `/v1/`, without leading or trailing slashes but for a directory
    /// listing's trailing `/`.
    pub path: String,
    /// The JSON body's fields, and for reads and lists the query parameters.
    pub data: Map<String, Value>,
    /// The token, if one was sent.
    pub token: Option<ClientToken>,
    /// The client's address.
    pub remote: SocketAddr,
    /// `X-Vault-Wrap-TTL`, if sent.
    pub wrap_ttl: Option<Duration>,
    /// The certificate chain the client presented in the TLS handshake, leaf first, if it
    /// presented one. Proven held by the client, but not checked against any CA.
    pub client_certificates: Option<ClientCertificates>,
}

/// A client's certificate chain, shared by every request of its connection.
pub type ClientCertificates = std::sync::Arc<Vec<rustls_pki_types::CertificateDer<'static>>>;

impl fmt::Debug for Request {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Request")
            .field("id", &self.id)
            .field("operation", &self.operation)
            .field("path", &self.path)
            .field("remote", &self.remote)
            .finish_non_exhaustive()
    }
}

/// A successful answer.
#[derive(Default)]
pub struct Response {
    /// `data` of the envelope; `None` answers 204 No Content unless `auth` is set.
    pub data: Option<Value>,
    /// `auth` of the envelope (login, token creation).
    pub auth: Option<Value>,
    /// `wrap_info` of the envelope: the response was wrapped.
    pub wrap_info: Option<Value>,
    /// `warnings` of the envelope.
    pub warnings: Vec<String>,
    /// A status other than 200/204 (`sys/health`).
    pub status: Option<u16>,
    /// A body that is not the JSON envelope (metrics), with its content type.
    pub raw: Option<(&'static str, Vec<u8>)>,
    /// Send `data` as the whole body, without the envelope, as Vault's status routes do.
    pub plain: bool,
}

impl Response {
    /// A response with `data`.
    pub fn data(data: Value) -> Self {
        Response {
            data: Some(data),
            ..Response::default()
        }
    }

    /// `data` as the whole JSON body, without the envelope (`sys/seal-status`, `sys/init`, …).
    pub fn plain(data: Value) -> Self {
        Response {
            data: Some(data),
            plain: true,
            ..Response::default()
        }
    }

    /// 204 No Content.
    pub fn empty() -> Self {
        Response::default()
    }

    /// Adds warnings.
    pub fn with_warnings(mut self, warnings: Vec<String>) -> Self {
        self.warnings.extend(warnings);
        self
    }
}

/// An error answer: status and client-facing messages, plus log-only detail.
#[derive(Debug)]
pub struct ApiError {
    /// The HTTP status.
    pub status: u16,
    /// The messages in `{"errors": [...]}`.
    pub messages: Vec<String>,
    /// A `data` field to send along (KV v2's 404 for a deleted version carries metadata).
    pub data: Option<Value>,
    /// Seconds to put in `Retry-After` (429).
    pub retry_after: Option<u64>,
    /// Detail for the operational log only.
    pub detail: Option<String>,
}

impl ApiError {
    fn new(status: u16, message: impl Into<String>) -> Self {
        ApiError {
            status,
            messages: vec![message.into()],
            data: None,
            retry_after: None,
            detail: None,
        }
    }

    /// 400 with a message naming what is wrong.
    pub fn bad_request(message: impl Into<String>) -> Self {
        ApiError::new(400, message)
    }

    /// 403 `permission denied`, for a missing, invalid or insufficient token alike.
    pub fn permission_denied() -> Self {
        ApiError::new(403, "permission denied")
    }

    /// 404 with no message, as Vault answers a missing secret.
    pub fn not_found() -> Self {
        ApiError {
            messages: Vec::new(),
            ..ApiError::new(404, "")
        }
    }

    /// 404 for a path no route serves.
    pub fn unsupported_path(path: &str) -> Self {
        ApiError::new(
            404,
            format!("no handler for route \"{path}\". route entry not found."),
        )
    }

    /// 405 for a method the route does not take.
    pub fn method_not_allowed() -> Self {
        ApiError::new(405, "unsupported operation")
    }

    /// 413.
    pub fn too_large(message: impl Into<String>) -> Self {
        ApiError::new(413, message)
    }

    /// 429 with `Retry-After`.
    pub fn rate_limited(retry_after: u64) -> Self {
        ApiError {
            retry_after: Some(retry_after.max(1)),
            ..ApiError::new(429, "rate limit exceeded; retry later")
        }
    }

    /// 500 `audit log unavailable`: the request was refused because it could not be audited.
    pub fn audit_unavailable() -> Self {
        ApiError::new(500, "audit log unavailable")
    }

    /// 503 `Vault is sealed`.
    pub fn sealed() -> Self {
        ApiError::new(503, "Vault is sealed")
    }

    /// 500 with a generic message; `detail` goes to the log only.
    pub fn internal(detail: impl Into<String>) -> Self {
        ApiError {
            detail: Some(detail.into()),
            ..ApiError::new(500, "internal error")
        }
    }

    /// 500 whose message the client sees, for the few errors Vault itself answers with 500
    /// and a message (transit backup and restore), so clients written against Vault see the
    /// status they expect. Never for an internal fault: use [`ApiError::internal`].
    pub fn vault_internal(message: impl Into<String>) -> Self {
        ApiError::new(500, message)
    }

    /// Attaches `data` to the error body.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.status, self.messages.join("; "))
    }
}

impl From<BarrierError> for ApiError {
    fn from(e: BarrierError) -> Self {
        match e {
            BarrierError::Sealed => ApiError::sealed(),
            BarrierError::TooLarge { len, max } => ApiError::too_large(format!(
                "value of {len} bytes exceeds the {max}-byte limit of a stored record"
            )),
            BarrierError::InvalidPath(problem) => {
                ApiError::bad_request(format!("invalid path: {problem}"))
            }
            BarrierError::Storage(StorageError::ValueTooLarge { len, max }) => ApiError::too_large(
                format!("record of {len} bytes exceeds the {max}-byte limit"),
            ),
            other => ApiError::internal(other.to_string()),
        }
    }
}

impl From<SealError> for ApiError {
    fn from(e: SealError) -> Self {
        match e {
            SealError::NotInitialized
            | SealError::AlreadyInitialized
            | SealError::InvalidParameters(_)
            | SealError::WrongShares
            | SealError::DuplicateShare
            | SealError::NonceMismatch
            | SealError::NotShamir => ApiError::bad_request(e.to_string()),
            other => ApiError::internal(other.to_string()),
        }
    }
}

/// Reads the request fields a route knows, names the others in warnings, and converts
/// strings to numbers and booleans as Vault does (the CLI sends `key=value` as strings).
pub struct Fields<'a> {
    data: &'a Map<String, Value>,
    known: Vec<&'static str>,
}

impl<'a> Fields<'a> {
    /// Starts reading `request`'s data.
    pub fn new(request: &'a Request) -> Self {
        Fields {
            data: &request.data,
            known: Vec::new(),
        }
    }

    /// Starts reading a map.
    pub fn of(data: &'a Map<String, Value>) -> Self {
        Fields {
            data,
            known: Vec::new(),
        }
    }

    /// The raw value of `name`.
    pub fn value(&mut self, name: &'static str) -> Option<&'a Value> {
        self.known.push(name);
        self.data.get(name).filter(|v| !v.is_null())
    }

    /// A string field.
    pub fn string(&mut self, name: &'static str) -> Result<Option<String>, ApiError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(ApiError::bad_request(format!(
                "field {name} must be a string"
            ))),
        }
    }

    /// An unsigned integer field (JSON number or decimal string).
    pub fn u64(&mut self, name: &'static str) -> Result<Option<u64>, ApiError> {
        let invalid =
            || ApiError::bad_request(format!("field {name} must be a non-negative integer"));
        match self.value(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_u64().map(Some).ok_or_else(invalid),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid()),
            Some(_) => Err(invalid()),
        }
    }

    /// A signed integer field (JSON number or decimal string).
    pub fn i64(&mut self, name: &'static str) -> Result<Option<i64>, ApiError> {
        let invalid = || ApiError::bad_request(format!("field {name} must be an integer"));
        match self.value(name) {
            None => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(invalid),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid()),
            Some(_) => Err(invalid()),
        }
    }

    /// A boolean field (JSON boolean or `"true"`/`"false"`/`"1"`/`"0"`).
    pub fn bool(&mut self, name: &'static str) -> Result<Option<bool>, ApiError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "true" | "1" | "t" => Ok(Some(true)),
                "false" | "0" | "f" | "" => Ok(Some(false)),
                _ => Err(ApiError::bad_request(format!(
                    "field {name} must be a boolean"
                ))),
            },
            Some(Value::Number(n)) => Ok(Some(n.as_u64() != Some(0))),
            Some(_) => Err(ApiError::bad_request(format!(
                "field {name} must be a boolean"
            ))),
        }
    }

    /// A duration field: seconds as a number, or a Go duration string.
    pub fn duration(&mut self, name: &'static str) -> Result<Option<Duration>, ApiError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::String(s)) if s.is_empty() => Ok(None),
            Some(value) => crate::duration::parse(value)
                .map(Some)
                .map_err(|e| ApiError::bad_request(format!("field {name}: {e}"))),
        }
    }

    /// A list of strings: a JSON array, or a comma-separated string as the CLI sends.
    pub fn strings(&mut self, name: &'static str) -> Result<Option<Vec<String>>, ApiError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => Ok(s.clone()),
                    _ => Err(ApiError::bad_request(format!(
                        "field {name} must be a list of strings"
                    ))),
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(Value::String(s)) => Ok(Some(
                s.split(',')
                    .map(str::trim)
                    .filter(|p| !p.is_empty())
                    .map(String::from)
                    .collect(),
            )),
            Some(_) => Err(ApiError::bad_request(format!(
                "field {name} must be a list of strings"
            ))),
        }
    }

    /// An object field.
    pub fn object(
        &mut self,
        name: &'static str,
    ) -> Result<Option<&'a Map<String, Value>>, ApiError> {
        match self.value(name) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(map)),
            Some(_) => Err(ApiError::bad_request(format!(
                "field {name} must be an object"
            ))),
        }
    }

    /// A map of string to string, as `custom_metadata` and token `meta` are.
    pub fn string_map(
        &mut self,
        name: &'static str,
    ) -> Result<Option<BTreeMap<String, String>>, ApiError> {
        let Some(map) = self.object(name)? else {
            return Ok(None);
        };
        map.iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(ApiError::bad_request(format!(
                    "field {name}: values must be strings"
                ))),
            })
            .collect::<Result<BTreeMap<_, _>, _>>()
            .map(Some)
    }

    /// Warnings naming every field that was sent but not read, in Vault's words.
    pub fn unknown(&self) -> Vec<String> {
        self.data
            .keys()
            .filter(|k| !self.known.contains(&k.as_str()))
            .map(|k| format!("Endpoint ignored these unrecognized parameters: [{k}]"))
            .collect()
    }
}
