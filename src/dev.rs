//! `vaultd dev`: the embedded development default.
//!
//! A data directory under the user's data directory, a local CA and a server certificate made
//! on first start, a key file seal with one share, auto-unseal, a file audit device, and the
//! root token kept in a file. Everything insecure is named so: the key file and the root
//! token file start with `insecure-`.

use std::fs::{self, DirBuilder, OpenOptions};
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

use crate::config::{
    AuditDevice, Config, CryptoSection, Limits, Listener, LogSection, SealKind, SealSection,
    Security, StorageSection,
};

/// The files of a development vault.
#[derive(Debug, Clone)]
pub struct DevPaths {
    /// The data directory.
    pub dir: PathBuf,
    /// The CA certificate clients must trust (`VAULT_CACERT`).
    pub ca_cert: PathBuf,
    /// The root token file.
    pub root_token: PathBuf,
}

/// The default data directory: `$XDG_DATA_HOME/vaultd-dev`, else `~/.local/share/vaultd-dev`.
pub fn default_dir() -> Result<PathBuf, String> {
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(PathBuf::from(data).join("vaultd-dev"));
    }
    let home = std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .ok_or("neither XDG_DATA_HOME nor HOME is set; pass --data-dir")?;
    Ok(PathBuf::from(home).join(".local/share/vaultd-dev"))
}

/// Prepares the directory and certificates, and returns the configuration of a dev vault.
pub fn prepare(dir: &Path, listen: SocketAddr) -> Result<(Config, DevPaths), String> {
    DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let dir = dir
        .canonicalize()
        .map_err(|e| format!("cannot resolve {}: {e}", dir.display()))?;
    let ca_cert = dir.join("ca.pem");
    let server_cert = dir.join("server.pem");
    let server_key = dir.join("server-key.pem");
    if !server_cert.exists() || !server_key.exists() || !ca_cert.exists() {
        make_certificates(&ca_cert, &server_cert, &server_key)?;
    }
    let config = Config {
        listener: Listener {
            address: listen,
            tls_cert_file: server_cert,
            tls_key_file: server_key,
            tls_client_ca_file: None,
        },
        storage: StorageSection {
            path: dir.join("store"),
        },
        seal: SealSection {
            seal_type: SealKind::Keyfile,
            key_file: Some(dir.join("insecure-unseal.key")),
        },
        audit: vec![AuditDevice {
            device_type: "file".into(),
            path: None,
            file_path: dir.join("audit.log"),
        }],
        limits: Limits::default(),
        crypto: CryptoSection::default(),
        security: Security {
            allow_init_from_any_address: false,
            allow_root: true,
            disable_mlock: false,
        },
        log: LogSection::default(),
        rotators: Vec::new(),
    };
    let paths = DevPaths {
        root_token: dir.join("insecure-root-token"),
        ca_cert,
        dir,
    };
    Ok((config, paths))
}

/// A CA (whose key is thrown away once it has signed) and a server certificate for
/// `localhost`, `127.0.0.1` and `::1`.
fn make_certificates(ca_path: &Path, cert_path: &Path, key_path: &Path) -> Result<(), String> {
    let fail = |e: rcgen::Error| format!("cannot make the development certificates: {e}");
    let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(fail)?;
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.distinguished_name
        .push(DnType::CommonName, "vaultd development CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().map_err(fail)?).map_err(fail)?;

    let mut server = CertificateParams::new(vec!["localhost".to_string()]).map_err(fail)?;
    server
        .distinguished_name
        .push(DnType::CommonName, "localhost");
    server
        .subject_alt_names
        .push(SanType::IpAddress([127, 0, 0, 1].into()));
    server
        .subject_alt_names
        .push(SanType::IpAddress(std::net::Ipv6Addr::LOCALHOST.into()));
    server.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    server.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    // RFC 5280 §4.2.1.1 requires the issuer's key identifier; strict validators insist.
    server.use_authority_key_identifier_extension = true;
    let server_key = KeyPair::generate().map_err(fail)?;
    let server_cert = server.signed_by(&server_key, &ca).map_err(fail)?;

    write_file(key_path, server_key.serialize_pem().as_bytes(), 0o600)?;
    write_file(cert_path, server_cert.pem().as_bytes(), 0o644)?;
    write_file(ca_path, ca.pem().as_bytes(), 0o644)
}

/// Writes a file with `mode`, replacing it, and syncs it.
pub fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), String> {
    let _ = fs::remove_file(path);
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(contents)
        .and_then(|()| file.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", path.display()))
}
