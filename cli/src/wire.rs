//! The wire types of the HTTP API, shared by the daemon and its clients.
//!
//! The API is a compatible subset of HashiCorp Vault's: every successful response is an
//! [`Envelope`], and every error an [`ErrorBody`], exactly as Vault shapes them, so existing
//! clients (hvac, the `vault` and `bao` command-line tools) read them unchanged.

use serde::{Deserialize, Serialize};

/// The envelope around every successful response body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Envelope<T> {
    /// The request's ID, also sent as the `X-Request-Id` header.
    pub request_id: String,
    /// Always empty: vaultd issues no leases on secrets.
    pub lease_id: String,
    /// Whether the lease is renewable; always false.
    pub renewable: bool,
    /// Lease duration in seconds; 0 when there is no lease.
    pub lease_duration: u64,
    /// The response data.
    pub data: Option<T>,
    /// Response-wrapping information, when the response was wrapped.
    pub wrap_info: Option<serde_json::Value>,
    /// Warnings, for example request fields that were ignored.
    pub warnings: Option<Vec<String>>,
    /// Authentication information, for login and token creation.
    pub auth: Option<serde_json::Value>,
}

impl<T> Envelope<T> {
    /// An envelope carrying `data` with no lease, warnings or auth.
    pub fn new(request_id: impl Into<String>, data: T) -> Self {
        Envelope {
            request_id: request_id.into(),
            lease_id: String::new(),
            renewable: false,
            lease_duration: 0,
            data: Some(data),
            wrap_info: None,
            warnings: None,
            auth: None,
        }
    }
}

/// The body of every error response: `{"errors": ["…"]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ErrorBody {
    /// Human-readable messages, without internal detail.
    pub errors: Vec<String>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn envelope_has_vaults_shape() {
        let envelope = Envelope::new("id-1", json!({"a": 1}));
        assert_eq!(
            serde_json::to_value(&envelope).unwrap(),
            json!({
                "request_id": "id-1",
                "lease_id": "",
                "renewable": false,
                "lease_duration": 0,
                "data": {"a": 1},
                "wrap_info": null,
                "warnings": null,
                "auth": null,
            })
        );
    }

    #[test]
    fn error_body_round_trips() {
        let raw = r#"{"errors":["permission denied"]}"#;
        let body: ErrorBody = serde_json::from_str(raw).unwrap();
        assert_eq!(body.errors, ["permission denied"]);
        assert_eq!(serde_json::to_string(&body).unwrap(), raw);
    }
}
