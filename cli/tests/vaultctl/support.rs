//! Starting the real daemon for a test, and running `vaultctl` against it.

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

/// How long a daemon may take to say where it listens.
const START_TIMEOUT: Duration = Duration::from_secs(30);

/// The `vaultctl` binary under test.
pub fn vaultctl_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vaultctl"))
}

/// The daemon: `$VAULTD_BIN`, or the workspace's debug build, which `cargo test -p
/// vaultd-client` does not build by itself.
pub fn vaultd_bin() -> PathBuf {
    let path = std::env::var_os("VAULTD_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/debug/vaultd"));
    assert!(
        path.is_file(),
        "no vaultd binary at {}: build it first with `cargo build -p vaultd --bin vaultd`, \
         or set VAULTD_BIN to one",
        path.display()
    );
    path
}

/// A daemon started for one test in its own temporary directory; killed when dropped.
pub struct Vault {
    /// `https://127.0.0.1:PORT`.
    pub addr: String,
    /// The CA that signed the daemon's certificate.
    pub ca_cert: PathBuf,
    /// The root token; empty for a production vault until someone initialises it.
    pub root_token: String,
    dir: tempfile::TempDir,
    child: Child,
}

impl Vault {
    /// `vaultd dev`: initialised, unsealed, with a file audit device at `audit.log` in its
    /// data directory.
    pub fn dev() -> Vault {
        let dir = tempfile::tempdir().unwrap();
        let mut command = Command::new(vaultd_bin());
        command
            .arg("dev")
            .arg("--data-dir")
            .arg(dir.path().join("data"))
            .args(["--listen", "127.0.0.1:0"]);
        let (child, said) = launch(command, |said| {
            said.addr.is_some() && said.ca_cert.is_some() && said.token.is_some()
        });
        Vault {
            addr: said.addr.unwrap(),
            ca_cert: said.ca_cert.unwrap(),
            root_token: said.token.unwrap(),
            dir,
            child,
        }
    }

    /// A production vault (Shamir seal, uninitialised, sealed) serving the certificate that
    /// the dev vault `tls` made for itself.
    pub fn production(tls: &Vault) -> Vault {
        let dir = tempfile::tempdir().unwrap();
        for name in ["ca.pem", "server.pem", "server-key.pem"] {
            std::fs::copy(tls.data_dir().join(name), dir.path().join(name))
                .unwrap_or_else(|e| panic!("cannot copy the dev vault's {name}: {e}"));
        }
        let config = dir.path().join("vault.toml");
        let text = format!(
            "[listener]\naddress = \"127.0.0.1:0\"\ntls_cert_file = \"{cert}\"\n\
             tls_key_file = \"{key}\"\n\n[storage]\npath = \"{store}\"\n\n\
             [security]\nallow_root = true\n\n[log]\nformat = \"json\"\nlevel = \"info\"\n",
            cert = dir.path().join("server.pem").display(),
            key = dir.path().join("server-key.pem").display(),
            store = dir.path().join("store").display(),
        );
        std::fs::write(&config, text).unwrap();
        let mut command = Command::new(vaultd_bin());
        command.arg("--config").arg(&config);
        let (child, said) = launch(command, |said| said.addr.is_some());
        Vault {
            addr: said.addr.unwrap(),
            ca_cert: dir.path().join("ca.pem"),
            root_token: String::new(),
            dir,
            child,
        }
    }

    /// The daemon's data directory (dev vaults only).
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The dev vault's audit log.
    pub fn audit_log(&self) -> PathBuf {
        self.data_dir().join("audit.log")
    }

    /// A home directory of this test's own, so that `vaultctl login` never touches the real
    /// one.
    pub fn home(&self) -> PathBuf {
        let home = self.dir.path().join("home");
        std::fs::create_dir_all(&home).unwrap();
        home
    }

    /// A client of the library with the root token, for setting up what vaultctl has no
    /// command for.
    pub fn root_client(&self) -> vaultd_client::Client {
        let mut settings = vaultd_client::Settings::new(self.addr.clone())
            .with_token(zeroize::Zeroizing::new(self.root_token.clone()));
        settings.ca_cert = Some(self.ca_cert.clone());
        vaultd_client::Client::new(settings).unwrap()
    }

    /// `vaultctl` with this vault's address, CA and root token, the test's home directory,
    /// and no other `VAULT_*` variable from the environment the tests run in.
    pub fn vaultctl(&self) -> Command {
        let mut command = Command::new(vaultctl_bin());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("VAULT_") {
                command.env_remove(name);
            }
        }
        let home = self.home();
        command
            .env("VAULT_ADDR", &self.addr)
            .env("VAULT_CACERT", &self.ca_cert)
            .env("VAULT_TOKEN", &self.root_token)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("HOME", home)
            .stdin(Stdio::null());
        command
    }

    /// Runs `vaultctl ARGS` and returns what it printed; fails the test if it failed.
    pub fn run(&self, args: &[&str]) -> String {
        let output = self.vaultctl().args(args).output().unwrap();
        assert!(
            output.status.success(),
            "vaultctl {} failed: {}",
            args.join(" "),
            describe(&output)
        );
        String::from_utf8(output.stdout).unwrap()
    }
}

impl Drop for Vault {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Exit status, standard output and standard error, for assertion messages.
pub fn describe(output: &Output) -> String {
    format!(
        "{}\n--- stdout\n{}--- stderr\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// What a starting daemon has said about itself so far.
#[derive(Default)]
struct Said {
    addr: Option<String>,
    ca_cert: Option<PathBuf>,
    token: Option<String>,
}

impl Said {
    /// Reads one line: dev mode's `export NAME='value'` lines, or the JSON log line that
    /// production mode writes once it listens.
    fn read(&mut self, line: &str) {
        let exported = |name: &str| {
            line.strip_prefix(&format!("export {name}='"))
                .and_then(|rest| rest.strip_suffix('\''))
                .map(str::to_string)
        };
        if let Some(addr) = exported("VAULT_ADDR") {
            self.addr = Some(addr);
        } else if let Some(ca) = exported("VAULT_CACERT") {
            self.ca_cert = Some(PathBuf::from(ca));
        } else if let Some(token) = exported("VAULT_TOKEN") {
            self.token = Some(token);
        } else if let Ok(json) = serde_json::from_str::<Value>(line)
            && json["fields"]["message"] == "listening"
            && let Some(address) = json["fields"]["address"].as_str()
        {
            self.addr = Some(format!("https://{address}"));
        }
    }
}

/// Starts `command` and reads its output until `ready` says enough has been said, or fails
/// the test with everything it printed.
fn launch(mut command: Command, ready: impl Fn(&Said) -> bool) -> (Child, Said) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {}: {e}", command.get_program().display()));
    let (sender, lines) = mpsc::channel::<String>();
    forward(child.stdout.take().unwrap(), sender.clone());
    forward(child.stderr.take().unwrap(), sender);

    let deadline = Instant::now() + START_TIMEOUT;
    let mut said = Said::default();
    let mut seen = Vec::new();
    while !ready(&said) {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                said.read(&line);
                seen.push(line);
            }
            Err(why) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "vaultd did not say where it listens ({why}); it printed:\n{}",
                    seen.join("\n")
                );
            }
        }
    }
    // Keep reading so the daemon never blocks on a full pipe.
    std::thread::spawn(move || while lines.recv().is_ok() {});
    (child, said)
}

fn forward(stream: impl Read + Send + 'static, lines: mpsc::Sender<String>) {
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines().map_while(Result::ok) {
            if lines.send(line).is_err() {
                break;
            }
        }
    });
}
