//! A blocking client for the vault's HTTP API.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{Map, Value};
use zeroize::Zeroizing;

/// Where the vault is and how to reach it.
#[derive(Clone)]
pub struct Settings {
    /// `https://host:port`.
    pub address: String,
    /// The token; no `Debug` shows it.
    pub token: Option<Zeroizing<String>>,
    /// A CA certificate file (PEM) to trust besides none: when unset, the system's roots.
    pub ca_cert: Option<PathBuf>,
    /// A client certificate and key (PEM) for mutual TLS.
    pub client_identity: Option<(PathBuf, PathBuf)>,
    /// Skip server certificate verification. Only for throwaway test set-ups.
    pub dangerous_skip_verify: bool,
    /// How long to keep retrying while the vault is sealed or unreachable.
    pub wait: Duration,
}

impl fmt::Debug for Settings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Settings")
            .field("address", &self.address)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("ca_cert", &self.ca_cert)
            .field("dangerous_skip_verify", &self.dangerous_skip_verify)
            .finish_non_exhaustive()
    }
}

impl Settings {
    /// Settings for `address`, with nothing else set.
    pub fn new(address: impl Into<String>) -> Settings {
        Settings {
            address: address.into(),
            token: None,
            ca_cert: None,
            client_identity: None,
            dangerous_skip_verify: false,
            wait: Duration::ZERO,
        }
    }

    /// Reads `VAULT_ADDR` (required), `VAULT_TOKEN`, `VAULT_CACERT`, and `VAULT_CLIENT_CERT`
    /// with `VAULT_CLIENT_KEY`, the names the Vault ecosystem uses.
    pub fn from_env() -> Result<Settings, ClientError> {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let address = var("VAULT_ADDR").ok_or(ClientError::NoAddress)?;
        let mut settings = Settings::new(address);
        settings.token = var("VAULT_TOKEN").map(Zeroizing::new);
        settings.ca_cert = var("VAULT_CACERT").map(PathBuf::from);
        if let (Some(cert), Some(key)) = (var("VAULT_CLIENT_CERT"), var("VAULT_CLIENT_KEY")) {
            settings.client_identity = Some((cert.into(), key.into()));
        }
        Ok(settings)
    }

    /// Keeps retrying for up to `wait` while the vault is sealed (503) or cannot be reached,
    /// as a service starting beside it needs. Other errors are never retried.
    pub fn wait_for_start(mut self, wait: Duration) -> Settings {
        self.wait = wait;
        self
    }

    /// Uses `token`.
    pub fn with_token(mut self, token: Zeroizing<String>) -> Settings {
        self.token = Some(token);
        self
    }
}

/// A failed call.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// No address was given.
    #[error("no vault address: VAULT_ADDR is not set")]
    NoAddress,
    /// The address is not `https://`.
    #[error("refusing {0}: vaultd speaks only HTTPS")]
    NotHttps(String),
    /// A certificate or key file could not be used.
    #[error("{0}")]
    Tls(String),
    /// The vault could not be reached, or the TLS handshake failed.
    #[error("cannot reach {address}: {reason}")]
    Unreachable {
        /// The address tried.
        address: String,
        /// Why.
        reason: String,
    },
    /// The vault is sealed.
    #[error("Vault is sealed")]
    Sealed,
    /// The vault answered with an error.
    #[error("{method} {path}: {status} {}", if messages.is_empty() { "(no message)".to_string() } else { messages.join("; ") })]
    Api {
        /// The method.
        method: String,
        /// The API path.
        path: String,
        /// The HTTP status.
        status: u16,
        /// The `errors` of the body.
        messages: Vec<String>,
    },
    /// The answer was not what the API promises.
    #[error("unexpected answer from {path}: {reason}")]
    Decode {
        /// The API path.
        path: String,
        /// What was wrong.
        reason: String,
    },
}

impl ClientError {
    /// The HTTP status of an API error.
    pub fn status(&self) -> Option<u16> {
        match self {
            ClientError::Api { status, .. } => Some(*status),
            ClientError::Sealed => Some(503),
            _ => None,
        }
    }
}

/// A KV version 2 secret as read.
#[derive(Debug, Clone)]
pub struct KvSecret {
    /// The secret's fields.
    pub data: Map<String, Value>,
    /// Its metadata (`version`, `created_time`, …).
    pub metadata: Map<String, Value>,
}

impl KvSecret {
    /// A field's value as a string (numbers and booleans are written out).
    pub fn field(&self, name: &str) -> Option<String> {
        self.data.get(name).map(value_text)
    }
}

/// The text of a JSON value: strings as they are, everything else as JSON.
pub fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A client of one vault.
pub struct Client {
    settings: Settings,
    http: reqwest::blocking::Client,
}

impl Client {
    /// A client with `settings`. Fails for a non-HTTPS address or unusable certificate files.
    pub fn new(settings: Settings) -> Result<Client, ClientError> {
        if !settings.address.starts_with("https://") {
            return Err(ClientError::NotHttps(settings.address.clone()));
        }
        let http = reqwest::blocking::Client::builder()
            .use_preconfigured_tls(tls_config(&settings)?)
            .timeout(Duration::from_secs(60))
            .build()
            .map_err(|e| ClientError::Tls(e.to_string()))?;
        Ok(Client { settings, http })
    }

    /// The settings in use.
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// Sends a request to `/v1/<path>` and returns the JSON body, or `None` for 204.
    pub fn request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Option<Value>, ClientError> {
        self.request_wrapped(method, path, body, None)
    }

    /// [`Client::request`], asking with `wrap_ttl` for the response to be wrapped: the body
    /// then holds `wrap_info` with a single-use wrapping token instead of the response.
    pub fn request_wrapped(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        wrap_ttl: Option<Duration>,
    ) -> Result<Option<Value>, ClientError> {
        let started = Instant::now();
        let mut delay = Duration::from_millis(100);
        loop {
            match self.send(method, path, body, wrap_ttl) {
                Err(e @ (ClientError::Sealed | ClientError::Unreachable { .. }))
                    if started.elapsed() + delay <= self.settings.wait =>
                {
                    drop(e);
                    std::thread::sleep(delay);
                    delay = (delay * 2).min(Duration::from_secs(5));
                }
                other => return other,
            }
        }
    }

    fn send(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
        wrap_ttl: Option<Duration>,
    ) -> Result<Option<Value>, ClientError> {
        let verb =
            reqwest::Method::from_bytes(method.as_bytes()).map_err(|e| ClientError::Decode {
                path: path.into(),
                reason: e.to_string(),
            })?;
        let url = format!(
            "{}/v1/{}",
            self.settings.address.trim_end_matches('/'),
            path.trim_start_matches('/')
        );
        let mut request = self
            .http
            .request(verb, url)
            .header("X-Vault-Request", "true");
        if let Some(token) = &self.settings.token {
            request = request.header("X-Vault-Token", token.as_str());
        }
        if let Some(ttl) = wrap_ttl {
            request = request.header("X-Vault-Wrap-TTL", format!("{}s", ttl.as_secs()));
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        let response = request.send().map_err(|e| ClientError::Unreachable {
            address: self.settings.address.clone(),
            reason: error_chain(&e),
        })?;
        let status = response.status().as_u16();
        let text = response.text().map_err(|e| ClientError::Unreachable {
            address: self.settings.address.clone(),
            reason: e.to_string(),
        })?;
        if status == 204 || (text.is_empty() && (200..300).contains(&status)) {
            return Ok(None);
        }
        let value: Value = serde_json::from_str(&text).map_err(|e| ClientError::Decode {
            path: path.into(),
            reason: e.to_string(),
        })?;
        if (200..300).contains(&status) {
            return Ok(Some(value));
        }
        let messages: Vec<String> = value["errors"]
            .as_array()
            .map(|e| e.iter().map(value_text).collect())
            .unwrap_or_default();
        if status == 503 && messages.iter().any(|m| m == "Vault is sealed") {
            return Err(ClientError::Sealed);
        }
        if status == 404 && value.get("data").is_some_and(|d| !d.is_null()) {
            // KV v2 answers a deleted version with 404 and its metadata.
            return Err(ClientError::Api {
                method: method.into(),
                path: path.into(),
                status,
                messages: vec!["this version is deleted or destroyed".into()],
            });
        }
        Err(ClientError::Api {
            method: method.into(),
            path: path.into(),
            status,
            messages,
        })
    }

    /// Reads a path; `None` if it does not exist.
    pub fn read(&self, path: &str) -> Result<Option<Value>, ClientError> {
        match self.request("GET", path, None) {
            Err(ClientError::Api { status: 404, .. }) => Ok(None),
            other => other,
        }
    }

    /// Writes to a path.
    pub fn write(&self, path: &str, body: &Value) -> Result<Option<Value>, ClientError> {
        self.request("POST", path, Some(body))
    }

    /// Deletes a path.
    pub fn delete(&self, path: &str) -> Result<(), ClientError> {
        self.request("DELETE", path, None).map(drop)
    }

    /// Lists the keys under a directory path; empty if there is nothing.
    pub fn list(&self, path: &str) -> Result<Vec<String>, ClientError> {
        let path = format!("{}/", path.trim_end_matches('/'));
        match self.request("LIST", &path, None) {
            Err(ClientError::Api { status: 404, .. }) => Ok(Vec::new()),
            Err(e) => Err(e),
            Ok(body) => Ok(body
                .as_ref()
                .and_then(|b| b["data"]["keys"].as_array())
                .map(|keys| keys.iter().map(value_text).collect())
                .unwrap_or_default()),
        }
    }

    /// Finds the KV version 2 mount that holds `path` and splits it: `("secret/", "app/db")`.
    pub fn kv_mount(&self, path: &str) -> Result<(String, String), ClientError> {
        let path = path.trim_matches('/');
        let body = self.request("GET", &format!("sys/internal/ui/mounts/{path}"), None)?;
        let data = body
            .as_ref()
            .map(|b| &b["data"])
            .ok_or_else(|| ClientError::Decode {
                path: path.into(),
                reason: "no mount information".into(),
            })?;
        let mount = data["path"].as_str().unwrap_or_default().to_string();
        if data["type"] != "kv" || data["options"]["version"] != "2" || mount.is_empty() {
            return Err(ClientError::Decode {
                path: path.into(),
                reason: format!("{mount} is not a KV version 2 mount"),
            });
        }
        let rest = path
            .strip_prefix(mount.trim_end_matches('/'))
            .unwrap_or(path)
            .trim_start_matches('/')
            .to_string();
        Ok((mount, rest))
    }

    /// Reads a KV version 2 secret (latest version unless `version` is given); `None` if it
    /// does not exist, an error if that version is deleted or destroyed.
    pub fn kv_get(
        &self,
        path: &str,
        version: Option<u64>,
    ) -> Result<Option<KvSecret>, ClientError> {
        let (mount, rest) = self.kv_mount(path)?;
        let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
        let body = match self.request("GET", &format!("{mount}data/{rest}{query}"), None) {
            // A bare 404 is a missing secret; a deleted or destroyed version says so.
            Err(ClientError::Api {
                status: 404,
                messages,
                ..
            }) if messages.is_empty() => return Ok(None),
            other => other?,
        };
        let data = body
            .as_ref()
            .map(|b| &b["data"])
            .ok_or_else(|| ClientError::Decode {
                path: path.into(),
                reason: "empty answer".into(),
            })?;
        Ok(Some(KvSecret {
            data: data["data"].as_object().cloned().unwrap_or_default(),
            metadata: data["metadata"].as_object().cloned().unwrap_or_default(),
        }))
    }

    /// Reads a KV version 2 secret wrapped for `wrap_ttl`: the answer is the `wrap_info`
    /// (`token`, `accessor`, `ttl`, `creation_time`, `creation_path`), and the secret is
    /// handed out once, to whoever unwraps the token first.
    pub fn kv_get_wrapped(
        &self,
        path: &str,
        version: Option<u64>,
        wrap_ttl: Duration,
    ) -> Result<Value, ClientError> {
        let (mount, rest) = self.kv_mount(path)?;
        let query = version.map(|v| format!("?version={v}")).unwrap_or_default();
        let body = self.request_wrapped(
            "GET",
            &format!("{mount}data/{rest}{query}"),
            None,
            Some(wrap_ttl),
        )?;
        body.map(|b| b["wrap_info"].clone())
            .filter(|info| info.is_object())
            .ok_or_else(|| ClientError::Decode {
                path: path.into(),
                reason: "the answer has no wrap_info".into(),
            })
    }

    /// Logs in to `auth/userpass` and returns the token it hands out.
    pub fn login_userpass(
        &self,
        username: &str,
        password: Zeroizing<String>,
    ) -> Result<Zeroizing<String>, ClientError> {
        let path = format!("auth/userpass/login/{username}");
        let body = serde_json::json!({ "password": password.as_str() });
        let answer = self.request("POST", &path, Some(&body));
        // Clear this copy of the password; the encoded request body is reqwest's.
        let mut body = body;
        if let Some(Value::String(text)) = body.get_mut("password") {
            zeroize::Zeroize::zeroize(text);
        }
        login_token(&path, answer?)
    }

    /// Logs in to `auth/cert` with the client certificate of [`Settings::client_identity`]
    /// (through the role `role`, or any role that takes it) and returns the token it hands
    /// out.
    pub fn login_cert(&self, role: Option<&str>) -> Result<Zeroizing<String>, ClientError> {
        if self.settings.client_identity.is_none() {
            return Err(ClientError::Decode {
                path: "auth/cert/login".into(),
                reason: "no client certificate: set VAULT_CLIENT_CERT and VAULT_CLIENT_KEY".into(),
            });
        }
        let body = match role {
            Some(name) => serde_json::json!({ "name": name }),
            None => serde_json::json!({}),
        };
        let answer = self.request("POST", "auth/cert/login", Some(&body))?;
        login_token("auth/cert/login", answer)
    }

    /// Unwraps a response-wrapping token, presenting it as the request's token (so no other
    /// token is needed), and returns the response it held. It works once.
    pub fn unwrap(&self, wrapping_token: Zeroizing<String>) -> Result<Value, ClientError> {
        let holder = Client::new(self.settings.clone().with_token(wrapping_token))?;
        holder
            .request(
                "POST",
                "sys/wrapping/unwrap",
                Some(&Value::Object(Default::default())),
            )?
            .ok_or_else(|| ClientError::Decode {
                path: "sys/wrapping/unwrap".into(),
                reason: "empty answer".into(),
            })
    }

    /// Writes a new version of a KV version 2 secret; returns its version number.
    pub fn kv_put(
        &self,
        path: &str,
        data: Map<String, Value>,
        cas: Option<u64>,
    ) -> Result<u64, ClientError> {
        let (mount, rest) = self.kv_mount(path)?;
        let mut body = serde_json::json!({"data": data});
        if let Some(cas) = cas {
            body["options"] = serde_json::json!({"cas": cas});
        }
        let answer = self.write(&format!("{mount}data/{rest}"), &body)?;
        answer
            .as_ref()
            .and_then(|a| a["data"]["version"].as_u64())
            .ok_or_else(|| ClientError::Decode {
                path: path.into(),
                reason: "no version in the answer".into(),
            })
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn tls_config(settings: &Settings) -> Result<rustls::ClientConfig, ClientError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
        .with_safe_default_protocol_versions()
        .map_err(|e| ClientError::Tls(e.to_string()))?;
    let builder = if settings.dangerous_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(danger::NoVerification(provider)))
    } else {
        let mut roots = rustls::RootCertStore::empty();
        match &settings.ca_cert {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path)
                    .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
                for cert in certs {
                    let cert =
                        cert.map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
                    roots
                        .add(cert)
                        .map_err(|e| ClientError::Tls(format!("{}: {e}", path.display())))?;
                }
            }
            None => {
                for path in [
                    "/etc/ssl/certs/ca-certificates.crt",
                    "/etc/pki/tls/certs/ca-bundle.crt",
                ] {
                    if let Ok(certs) = CertificateDer::pem_file_iter(path) {
                        for cert in certs.flatten() {
                            let _ = roots.add(cert);
                        }
                        break;
                    }
                }
            }
        }
        builder.with_root_certificates(roots)
    };
    match &settings.client_identity {
        Some((cert, key)) => {
            let chain = CertificateDer::pem_file_iter(cert)
                .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
                .map_err(|e| ClientError::Tls(format!("{}: {e}", cert.display())))?;
            let key_der = PrivateKeyDer::from_pem_file(key)
                .map_err(|e| ClientError::Tls(format!("{}: {e}", key.display())))?;
            builder
                .with_client_auth_cert(chain, key_der)
                .map_err(|e| ClientError::Tls(e.to_string()))
        }
        None => Ok(builder.with_no_client_auth()),
    }
}

mod danger {
    use std::sync::Arc;

    use rustls::DigitallySignedStruct;
    use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
    use rustls::crypto::CryptoProvider;
    use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

    /// Accepts any server certificate. Used only when the caller asks, loudly.
    #[derive(Debug)]
    pub struct NoVerification(pub Arc<CryptoProvider>);

    impl ServerCertVerifier for NoVerification {
        fn verify_server_cert(
            &self,
            _end_entity: &CertificateDer<'_>,
            _intermediates: &[CertificateDer<'_>],
            _server_name: &ServerName<'_>,
            _ocsp: &[u8],
            _now: UnixTime,
        ) -> Result<ServerCertVerified, rustls::Error> {
            Ok(ServerCertVerified::assertion())
        }

        fn verify_tls12_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls12_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn verify_tls13_signature(
            &self,
            message: &[u8],
            cert: &CertificateDer<'_>,
            dss: &DigitallySignedStruct,
        ) -> Result<HandshakeSignatureValid, rustls::Error> {
            rustls::crypto::verify_tls13_signature(
                message,
                cert,
                dss,
                &self.0.signature_verification_algorithms,
            )
        }

        fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
            self.0.signature_verification_algorithms.supported_schemes()
        }
    }
}

/// The `auth.client_token` of a login's answer.
fn login_token(path: &str, answer: Option<Value>) -> Result<Zeroizing<String>, ClientError> {
    answer
        .as_ref()
        .and_then(|a| a["auth"]["client_token"].as_str())
        .map(|t| Zeroizing::new(t.to_string()))
        .ok_or_else(|| ClientError::Decode {
            path: path.into(),
            reason: "the answer has no auth.client_token".into(),
        })
}
