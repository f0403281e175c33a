//! The daemon's configuration, read from a TOML file (`vault.toml`) or made by `vaultd dev`.
//!
//! Names follow Vault's configuration where the concept is the same (`listener.address`,
//! `tls_cert_file`, `storage.path`, `[[audit]] file_path`), so operators' habits carry over.
//! Every key and its default is documented in the top-level `vault.toml`.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::crypto::Algorithm;
use crate::keyring::DEFAULT_WEAR_LIMIT;
use crate::seal::SealMechanism;

/// The whole configuration.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The TLS listener.
    pub listener: Listener,
    /// Where the data lives.
    pub storage: StorageSection,
    /// How the unseal key is kept.
    #[serde(default)]
    pub seal: SealSection,
    /// Audit devices declared here; they cannot be changed through the API.
    #[serde(default)]
    pub audit: Vec<AuditDevice>,
    /// Request limits.
    #[serde(default)]
    pub limits: Limits,
    /// Cryptographic choices.
    #[serde(default)]
    pub crypto: CryptoSection,
    /// Who may do what before authentication, and how the process runs.
    #[serde(default)]
    pub security: Security,
    /// Logging.
    #[serde(default)]
    pub log: LogSection,
    /// External rotators that `command` rotation policies name.
    #[serde(default, rename = "rotator")]
    pub rotators: Vec<Rotator>,
}

/// `[[rotator]]`: an external program that rotates a credential at its provider.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rotator {
    /// The name policies use.
    pub name: String,
    /// The program (an absolute path).
    pub command: PathBuf,
    /// Arguments before the step name.
    #[serde(default)]
    pub args: Vec<String>,
    /// Time one step may take.
    #[serde(default = "default_rotator_timeout", with = "go_duration")]
    pub timeout: Duration,
}

fn default_rotator_timeout() -> Duration {
    Duration::from_secs(30)
}

/// `[listener]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Listener {
    /// The address to listen on, such as `127.0.0.1:8200`.
    pub address: SocketAddr,
    /// The server certificate chain, PEM.
    pub tls_cert_file: PathBuf,
    /// The server's private key, PEM.
    pub tls_key_file: PathBuf,
    /// CA certificates for client certificates; when set, clients may present one.
    #[serde(default)]
    pub tls_client_ca_file: Option<PathBuf>,
}

/// `[storage]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageSection {
    /// The data directory.
    pub path: PathBuf,
}

/// `[seal]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SealSection {
    /// `shamir` (the default) or `keyfile`.
    #[serde(rename = "type", default)]
    pub seal_type: SealKind,
    /// The key file of a `keyfile` seal.
    #[serde(default)]
    pub key_file: Option<PathBuf>,
}

/// The seal types the configuration accepts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SealKind {
    /// Shamir shares held by operators.
    #[default]
    Shamir,
    /// An unseal key in a file.
    Keyfile,
}

/// `[[audit]]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditDevice {
    /// Only `file` exists.
    #[serde(rename = "type")]
    pub device_type: String,
    /// The device's name in `sys/audit`; defaults to the type.
    #[serde(default)]
    pub path: Option<String>,
    /// The log file.
    pub file_path: PathBuf,
}

/// `[limits]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Sustained requests per second from one client address.
    pub requests_per_second_per_address: u32,
    /// Burst from one client address.
    pub burst_per_address: u32,
    /// Sustained requests per second per token accessor.
    pub requests_per_second_per_token: u32,
    /// Burst per token accessor.
    pub burst_per_token: u32,
    /// The most client addresses and accessors tracked at once.
    pub max_tracked_clients: usize,
    /// The largest request body, in bytes.
    pub max_request_bytes: usize,
    /// Time allowed to receive a request's headers, as a Go duration.
    #[serde(with = "go_duration")]
    pub header_read_timeout: Duration,
    /// Time allowed to receive a request's body.
    #[serde(with = "go_duration")]
    pub body_read_timeout: Duration,
    /// Time an audit device may take to make an entry durable before requests fail.
    #[serde(with = "go_duration")]
    pub audit_timeout: Duration,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            requests_per_second_per_address: 200,
            burst_per_address: 400,
            requests_per_second_per_token: 200,
            burst_per_token: 400,
            max_tracked_clients: 100_000,
            max_request_bytes: 1024 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            audit_timeout: Duration::from_secs(5),
        }
    }
}

/// `[crypto]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CryptoSection {
    /// The AEAD for new records: `aes256-gcm96` or `chacha20-poly1305`.
    #[serde(deserialize_with = "algorithm")]
    pub aead: Algorithm,
    /// Wraps after which a key term is replaced.
    pub key_term_wear_limit: u64,
    /// Encryptions per transit key version before the key is rotated.
    pub transit_encryptions_per_key_version: u64,
}

impl Default for CryptoSection {
    fn default() -> Self {
        CryptoSection {
            aead: Algorithm::default(),
            key_term_wear_limit: DEFAULT_WEAR_LIMIT,
            transit_encryptions_per_key_version: crate::transit::MAX_ENCRYPTIONS,
        }
    }
}

/// `[security]`
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Security {
    /// Accept `sys/init` from any address, not only loopback.
    pub allow_init_from_any_address: bool,
    /// Allow running as root.
    pub allow_root: bool,
    /// Do not lock memory against swapping (Vault's `disable_mlock`).
    pub disable_mlock: bool,
}

/// `[log]`
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogSection {
    /// `text` or `json`.
    pub format: LogFormat,
    /// A `tracing` filter such as `info` or `vaultd=debug`.
    pub level: String,
}

impl Default for LogSection {
    fn default() -> Self {
        LogSection {
            format: LogFormat::Text,
            level: "info".into(),
        }
    }
}

/// Log line formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has a wrong key or value.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// The parser's message, naming the key and line.
        message: String,
    },
    /// A key has a value that is valid TOML but not acceptable.
    #[error("{}: {key}: {problem}", path.display())]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending key.
        key: &'static str,
        /// What is wrong.
        problem: String,
    },
}

impl Config {
    /// Reads and checks a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config: Config = toml::from_str(&text).map_err(|e| ConfigError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        config.check(path)?;
        Ok(config)
    }

    /// Checks what the types alone cannot.
    fn check(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |key, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            key,
            problem,
        };
        match (self.seal.seal_type, &self.seal.key_file) {
            (SealKind::Keyfile, None) => {
                return Err(invalid(
                    "seal.key_file",
                    "a keyfile seal needs key_file".into(),
                ));
            }
            (SealKind::Keyfile, Some(key_file)) => {
                if is_inside(key_file, &self.storage.path) {
                    return Err(invalid(
                        "seal.key_file",
                        "the key file must not be inside storage.path: a copy of the data directory would carry its key".into(),
                    ));
                }
            }
            (SealKind::Shamir, Some(_)) => {
                return Err(invalid(
                    "seal.key_file",
                    "only a keyfile seal takes key_file".into(),
                ));
            }
            (SealKind::Shamir, None) => {}
        }
        let mut names = std::collections::BTreeSet::new();
        for rotator in &self.rotators {
            if rotator.name.is_empty() || !names.insert(rotator.name.as_str()) {
                return Err(invalid(
                    "rotator.name",
                    format!(
                        "rotator names must be unique and not empty: {:?}",
                        rotator.name
                    ),
                ));
            }
            if !rotator.command.is_absolute() {
                return Err(invalid(
                    "rotator.command",
                    format!("{} is not an absolute path", rotator.command.display()),
                ));
            }
        }
        for device in &self.audit {
            if device.device_type != "file" {
                return Err(invalid(
                    "audit.type",
                    format!(
                        "unknown audit device type {:?}: only \"file\" exists",
                        device.device_type
                    ),
                ));
            }
        }
        let limits = &self.limits;
        if limits.requests_per_second_per_address == 0 || limits.requests_per_second_per_token == 0
        {
            return Err(invalid(
                "limits.requests_per_second_*",
                "must be at least 1".into(),
            ));
        }
        if limits.max_request_bytes < 1024 {
            return Err(invalid(
                "limits.max_request_bytes",
                "must be at least 1024".into(),
            ));
        }
        if self.crypto.key_term_wear_limit == 0
            || self.crypto.key_term_wear_limit > DEFAULT_WEAR_LIMIT
        {
            return Err(invalid(
                "crypto.key_term_wear_limit",
                format!("must be between 1 and {DEFAULT_WEAR_LIMIT}"),
            ));
        }
        let transit_limit = self.crypto.transit_encryptions_per_key_version;
        if transit_limit == 0 || transit_limit > crate::transit::MAX_ENCRYPTIONS {
            return Err(invalid(
                "crypto.transit_encryptions_per_key_version",
                format!("must be between 1 and {}", crate::transit::MAX_ENCRYPTIONS),
            ));
        }
        if tracing_subscriber::EnvFilter::try_new(&self.log.level).is_err() {
            return Err(invalid(
                "log.level",
                format!("{:?} is not a log filter", self.log.level),
            ));
        }
        Ok(())
    }

    /// The seal the configuration chooses.
    pub fn seal_mechanism(&self) -> SealMechanism {
        match (&self.seal.seal_type, &self.seal.key_file) {
            (SealKind::Keyfile, Some(path)) => SealMechanism::KeyFile(path.clone()),
            _ => SealMechanism::Shamir,
        }
    }
}

fn is_inside(file: &Path, dir: &Path) -> bool {
    let resolve = |p: &Path| p.canonicalize().unwrap_or_else(|_| p.to_path_buf());
    let file = file.parent().map(resolve).unwrap_or_default();
    file.starts_with(resolve(dir))
}

fn algorithm<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Algorithm, D::Error> {
    let name = String::deserialize(deserializer)?;
    name.parse().map_err(serde::de::Error::custom)
}

mod go_duration {
    use std::time::Duration;

    use serde::Deserialize;

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        crate::duration::parse_str(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("vault.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path)
    }

    const MINIMAL: &str = r#"
        [listener]
        address = "127.0.0.1:8200"
        tls_cert_file = "/etc/vaultd/tls/server.pem"
        tls_key_file = "/etc/vaultd/tls/server-key.pem"
        [storage]
        path = "/var/lib/vaultd"
    "#;

    #[test]
    fn the_shipped_example_is_valid() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("vault.toml");
        let config = Config::load(&path).unwrap();
        assert_eq!(config.seal_mechanism(), SealMechanism::Shamir);
        assert_eq!(config.audit.len(), 1);
    }

    #[test]
    fn defaults_fill_the_rest() {
        let config = parse(MINIMAL).unwrap();
        assert_eq!(config.limits.max_request_bytes, 1024 * 1024);
        assert_eq!(config.crypto.aead, Algorithm::Aes256Gcm);
        assert!(!config.security.allow_root);
        assert!(config.audit.is_empty());
    }

    #[test]
    fn errors_name_the_key() {
        let err = parse(&format!("{MINIMAL}\n[limits]\nmax_request_bytz = 5\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("max_request_bytz"), "{err}");
        let err = parse(&format!("{MINIMAL}\n[crypto]\naead = \"rot13\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("rot13"), "{err}");
        let err = parse(&format!("{MINIMAL}\n[limits]\naudit_timeout = \"soon\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("soon"), "{err}");
        let err = parse(&format!("{MINIMAL}\n[seal]\ntype = \"keyfile\"\n"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("seal.key_file"), "{err}");
        let err = parse(&format!(
            "{MINIMAL}\n[seal]\ntype = \"keyfile\"\nkey_file = \"/var/lib/vaultd/k\"\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(err.contains("inside storage.path"), "{err}");
        for limit in ["0", "4294967297"] {
            let err = parse(&format!(
                "{MINIMAL}\n[crypto]\ntransit_encryptions_per_key_version = {limit}\n"
            ))
            .unwrap_err()
            .to_string();
            assert!(err.contains("transit_encryptions_per_key_version"), "{err}");
        }
        assert!(parse("[listener]\naddress = \"nowhere\"").is_err());
    }
}
