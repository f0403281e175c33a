//! Starting the real daemon binary over real TLS, and talking to it.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use reqwest::blocking::Client;
use reqwest::header::HeaderMap;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;

const START_TIMEOUT: Duration = Duration::from_secs(30);

/// A daemon started for one test, with its own data directory and port.
pub struct TestVault {
    pub dir: tempfile::TempDir,
    pub addr: String,
    pub ca: PathBuf,
    /// The root token (dev mode, or after `init` in production mode).
    pub root_token: String,
    child: Option<Child>,
    client: Client,
    mode: Mode,
}

#[derive(Clone)]
enum Mode {
    Dev,
    Production { config: PathBuf },
}

/// An HTTP answer.
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    /// The first error message, or an empty string.
    pub fn error(&self) -> String {
        self.body["errors"][0]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }
}

impl TestVault {
    /// A dev-mode vault: initialised, unsealed, with a file audit device.
    pub fn dev() -> TestVault {
        install_provider();
        let dir = tempfile::tempdir().unwrap();
        let mut vault = TestVault {
            addr: String::new(),
            ca: dir.path().join("ca.pem"),
            root_token: String::new(),
            dir,
            child: None,
            client: Client::new(),
            mode: Mode::Dev,
        };
        vault.launch();
        vault
    }

    /// A production-mode vault (Shamir seal, sealed and uninitialised) with the given extra
    /// configuration appended to the minimal one.
    pub fn production(extra: &str) -> TestVault {
        install_provider();
        let dir = tempfile::tempdir().unwrap();
        // The dev module makes a CA and server certificate; production uses them as files.
        let (dev_config, paths) =
            vaultd::dev::prepare(&dir.path().join("tls"), "127.0.0.1:0".parse().unwrap()).unwrap();
        let config = dir.path().join("vault.toml");
        let text = format!(
            "[listener]\naddress = \"127.0.0.1:0\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n\n[storage]\npath = \"{}\"\n\n[security]\nallow_root = true\n\n[log]\nformat = \"json\"\nlevel = \"info\"\n\n{extra}\n",
            dev_config.listener.tls_cert_file.display(),
            dev_config.listener.tls_key_file.display(),
            dir.path().join("store").display(),
        );
        std::fs::write(&config, text).unwrap();
        let mut vault = TestVault {
            addr: String::new(),
            ca: paths.ca_cert,
            root_token: String::new(),
            dir,
            child: None,
            client: Client::new(),
            mode: Mode::Production { config },
        };
        vault.launch();
        vault
    }

    /// The path of a file in the vault's data directory.
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn launch(&mut self) {
        let binary = env!("CARGO_BIN_EXE_vaultd");
        let mut command = Command::new(binary);
        match &self.mode {
            Mode::Dev => {
                command
                    .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
                    .arg(self.dir.path());
            }
            Mode::Production { config } => {
                command.arg("--config").arg(config);
            }
        }
        let mut child = command
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let (lines, received) = mpsc::channel::<String>();
        for stream in [
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        ]
        .into_iter()
        .flatten()
        {
            let lines = lines.clone();
            std::thread::spawn(move || {
                for line in BufReader::new(stream).lines().map_while(Result::ok) {
                    if lines.send(line).is_err() {
                        break;
                    }
                }
            });
        }
        let deadline = Instant::now() + START_TIMEOUT;
        let mut seen = Vec::new();
        let wanted_token = matches!(self.mode, Mode::Dev);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = received
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("vaultd did not start; output:\n{}", seen.join("\n")));
            if let Some(addr) = line.strip_prefix("export VAULT_ADDR='") {
                self.addr = addr.trim_end_matches('\'').to_string();
            } else if let Some(ca) = line.strip_prefix("export VAULT_CACERT='") {
                self.ca = PathBuf::from(ca.trim_end_matches('\''));
            } else if let Some(token) = line.strip_prefix("export VAULT_TOKEN='") {
                self.root_token = token.trim_end_matches('\'').to_string();
            } else if let Ok(json) = serde_json::from_str::<Value>(&line)
                && json["fields"]["message"] == "listening"
            {
                self.addr = format!("https://{}", json["fields"]["address"].as_str().unwrap());
            }
            seen.push(line);
            if !self.addr.is_empty() && (!wanted_token || !self.root_token.is_empty()) {
                break;
            }
        }
        // Keep draining output so the daemon never blocks on a full pipe.
        std::thread::spawn(move || while received.recv().is_ok() {});
        self.client = client_for(&self.ca);
        self.child = Some(child);
    }

    /// Stops the daemon with SIGTERM and waits for it.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .arg("-TERM")
                .arg(child.id().to_string())
                .status();
            let deadline = Instant::now() + Duration::from_secs(20);
            while child.try_wait().unwrap().is_none() {
                assert!(Instant::now() < deadline, "vaultd did not stop on SIGTERM");
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }

    /// Sends a signal (`HUP`, `TERM`, …) to the daemon.
    pub fn signal(&self, name: &str) {
        let child = self.child.as_ref().expect("the daemon is not running");
        let status = Command::new("kill")
            .arg(format!("-{name}"))
            .arg(child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// A client for this vault that trusts `ca` instead of the vault's own CA.
    pub fn client_trusting(&self, ca: &Path) -> Client {
        client_for(ca)
    }

    /// Kills the daemon with SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops (if running) and starts the daemon again on the same directory.
    pub fn restart(&mut self) {
        self.stop();
        self.addr.clear();
        let token = std::mem::take(&mut self.root_token);
        self.launch();
        if self.root_token.is_empty() {
            self.root_token = token;
        }
    }

    /// Sends a request. `method` may be `LIST`.
    pub fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}/v1/{path}", self.addr));
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        reply(request.send().unwrap())
    }

    /// Sends a JSON body with a chosen content type.
    pub fn call_with_content_type(
        &self,
        method: &str,
        path: &str,
        token: &str,
        body: Value,
        content_type: &str,
    ) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let request = self
            .client
            .request(method, format!("{}/v1/{path}", self.addr))
            .header("X-Vault-Token", token)
            .header("Content-Type", content_type)
            .body(body.to_string());
        reply(request.send().unwrap())
    }

    /// Sends a raw body.
    pub fn call_raw(&self, method: &str, path: &str, token: Option<&str>, body: Vec<u8>) -> Reply {
        let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
        let mut request = self
            .client
            .request(method, format!("{}/v1/{path}", self.addr))
            .body(body);
        if let Some(token) = token {
            request = request.header("X-Vault-Token", token);
        }
        reply(request.send().unwrap())
    }

    /// A client for this vault, to use from another thread.
    pub fn http(&self) -> Client {
        self.client.clone()
    }

    /// Sends a request with the root token.
    pub fn root(&self, method: &str, path: &str, body: Option<Value>) -> Reply {
        self.call(method, path, Some(&self.root_token.clone()), body)
    }

    /// Creates a token with `policies` and returns it.
    pub fn token_with_policies(&self, policies: &[&str]) -> String {
        let reply = self.root(
            "POST",
            "auth/token/create",
            Some(serde_json::json!({"policies": policies})),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        reply.body["auth"]["client_token"]
            .as_str()
            .unwrap()
            .to_string()
    }

    /// Writes a policy.
    pub fn write_policy(&self, name: &str, text: &str) {
        let reply = self.root(
            "PUT",
            &format!("sys/policies/acl/{name}"),
            Some(serde_json::json!({"policy": text})),
        );
        assert_eq!(reply.status, 204, "{}", reply.body);
    }
}

impl Drop for TestVault {
    fn drop(&mut self) {
        self.kill();
    }
}

fn reply(response: reqwest::blocking::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.text().unwrap_or_default();
    let body = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Reply {
        status,
        headers,
        body,
    }
}

/// Sends `request` (a whole HTTP/1.1 request) over TLS as it is, with no client-side path
/// normalisation, and returns the raw answer.
pub fn raw_https(vault: &TestVault, request: &str) -> String {
    use std::io::{Read, Write};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(&vault.ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls_pki_types::ServerName::try_from("localhost").unwrap();
    let connection = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let socket = std::net::TcpStream::connect(vault.addr.trim_start_matches("https://")).unwrap();
    socket
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    let mut stream = rustls::StreamOwned::new(connection, socket);
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// Makes ring the process's rustls provider (the test client uses no other).
fn install_provider() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// A client that trusts only `ca`.
pub fn client_for(ca: &Path) -> Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Client::builder()
        .use_preconfigured_tls(config)
        .timeout(Duration::from_secs(30))
        .build()
        .unwrap()
}

/// Initialises a production vault with `shares`/`threshold` and returns the hex shares.
pub fn init(vault: &mut TestVault, shares: u8, threshold: u8) -> Vec<String> {
    let reply = vault.call(
        "PUT",
        "sys/init",
        None,
        Some(serde_json::json!({"secret_shares": shares, "secret_threshold": threshold})),
    );
    assert_eq!(reply.status, 200, "{}", reply.body);
    vault.root_token = reply.body["root_token"].as_str().unwrap().to_string();
    reply.body["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k.as_str().unwrap().to_string())
        .collect()
}

/// Submits unseal shares until the vault reports unsealed.
pub fn unseal(vault: &TestVault, shares: &[String]) {
    for share in shares {
        let reply = vault.call(
            "PUT",
            "sys/unseal",
            None,
            Some(serde_json::json!({"key": share})),
        );
        assert_eq!(reply.status, 200, "{}", reply.body);
        if reply.body["sealed"] == false {
            return;
        }
    }
    panic!("the vault is still sealed after {} shares", shares.len());
}
