//! Throughput and latency of the HTTP API over TLS with the audit log on; prints numbers and
//! asserts nothing.
//!
//! By default it starts vaultd (release build) in production mode, with a key file seal and a
//! file audit device, in a temporary directory, and stops it at the end. To measure another
//! server with the same client (OpenBao, say), set `BENCH_ADDR`, `BENCH_CACERT`,
//! `BENCH_TOKEN` and, for memory figures, `BENCH_PID`; the target must have a KV v2 mount at
//! `secret/` and a transit mount at `transit/`. `BENCH_SECONDS` sets the length of each run
//! (default 5); `BENCH_ONLY=kv`, `BENCH_ONLY=transit` or `BENCH_ONLY=auth` (userpass
//! logins, wrapped reads with their unwrap) runs one group. The target needs `userpass`
//! enabled at `auth/userpass/`.
//!
//! Run with `cargo bench --bench http`; `scripts/bench-openbao` runs it against OpenBao.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, missing_docs)]

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde_json::json;

struct Target {
    addr: String,
    ca: PathBuf,
    token: String,
    pid: Option<u32>,
    daemon: Option<(Child, tempfile::TempDir)>,
}

impl Drop for Target {
    /// Stops the daemon the bench started, so no run leaves one behind.
    fn drop(&mut self) {
        if let Some((child, _)) = &mut self.daemon {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn main() {
    let seconds: u64 = std::env::var("BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(5);
    let target = match std::env::var("BENCH_ADDR") {
        Ok(addr) => Target {
            addr,
            ca: std::env::var("BENCH_CACERT").expect("BENCH_CACERT").into(),
            token: std::env::var("BENCH_TOKEN").expect("BENCH_TOKEN"),
            pid: std::env::var("BENCH_PID").ok().and_then(|p| p.parse().ok()),
            daemon: None,
        },
        Err(_) => start_vaultd(),
    };
    let _ = rustls::crypto::ring::default_provider().install_default();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(run(&target, Duration::from_secs(seconds)));
}

/// Starts vaultd in production mode with a key file seal, a file audit device and rate
/// limits raised out of the way, and initialises it.
fn start_vaultd() -> Target {
    let dir = tempfile::tempdir().unwrap();
    let (dev, paths) =
        vaultd::dev::prepare(&dir.path().join("tls"), "127.0.0.1:0".parse().unwrap()).unwrap();
    let config = dir.path().join("vault.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[listener]
address = "127.0.0.1:0"
tls_cert_file = "{cert}"
tls_key_file = "{key}"
[storage]
path = "{store}"
[seal]
type = "keyfile"
key_file = "{dir}/unseal.key"
[[audit]]
type = "file"
file_path = "{dir}/audit.log"
[limits]
requests_per_second_per_address = 1000000
burst_per_address = 1000000
requests_per_second_per_token = 1000000
burst_per_token = 1000000
[security]
allow_root = true
[log]
format = "json"
level = "warn,vaultd=info"
"#,
            cert = dev.listener.tls_cert_file.display(),
            key = dev.listener.tls_key_file.display(),
            store = dir.path().join("store").display(),
            dir = dir.path().display(),
        ),
    )
    .unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_vaultd"))
        .arg("--config")
        .arg(&config)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let mut addr = String::new();
    let mut lines = BufReader::new(stderr).lines();
    for line in lines.by_ref() {
        let line = line.unwrap();
        if let Ok(entry) = serde_json::from_str::<serde_json::Value>(&line)
            && entry["fields"]["message"] == "listening"
        {
            addr = format!("https://{}", entry["fields"]["address"].as_str().unwrap());
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let _ = rustls::crypto::ring::default_provider().install_default();
    let init = reqwest::blocking::Client::builder()
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(&paths.ca_cert).unwrap()).unwrap(),
        )
        .build()
        .unwrap()
        .put(format!("{addr}/v1/sys/init"))
        .json(&json!({"secret_shares": 1, "secret_threshold": 1}))
        .send()
        .unwrap();
    let init: serde_json::Value = init.json().unwrap();
    let token = init["root_token"]
        .as_str()
        .expect("init failed")
        .to_string();
    Target {
        addr,
        ca: paths.ca_cert,
        token,
        pid: Some(child.id()),
        daemon: Some((child, dir)),
    }
}

fn client(ca: &PathBuf, connections: usize) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(ca).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .pool_max_idle_per_host(connections)
        .http1_only()
        .build()
        .unwrap()
}

fn rss_kib(pid: Option<u32>) -> String {
    let Some(pid) = pid else { return "n/a".into() };
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| "n/a".into())
}

/// 64 bytes of plaintext, base64.
const PLAINTEXT: &str =
    "dGhlIHF1aWNrIGJyb3duIGZveCBqdW1wcyBvdmVyIHRoZSBsYXp5IGRvZyAwMTIzNDU2Nzg5YWJjZGVm";

#[derive(Clone, Copy, PartialEq)]
enum Kind {
    Read,
    Write,
    Encrypt,
    Decrypt,
    EncryptBatch,
    Login,
    WrapUnwrap,
}

/// The password of the user the login rows log in as.
const PASSWORD: &str = "Tangerine-Kettle-47-Orbit";

async fn run(target: &Target, length: Duration) {
    println!("target {} — RSS idle: {}", target.addr, rss_kib(target.pid));
    let setup = client(&target.ca, 4);
    let written = setup
        .post(format!("{}/v1/secret/data/bench/read", target.addr))
        .header("X-Vault-Token", &target.token)
        .json(&json!({"data": {"api_key": "sk-proj-0123456789abcdefghijklmnopqrstuvwxyz"}}))
        .send()
        .await
        .unwrap();
    assert!(
        written.status().is_success(),
        "setup write failed: {}",
        written.status()
    );

    println!(
        "{:<22} {:>5} {:>10} {:>9} {:>9} {:>9} {:>12}",
        "operation", "conc", "req/s", "p50 ms", "p99 ms", "errors", "RSS after"
    );
    let key = setup
        .post(format!("{}/v1/transit/keys/bench", target.addr))
        .header("X-Vault-Token", &target.token)
        .json(&json!({"type": "aes256-gcm96"}))
        .send()
        .await
        .unwrap();
    assert!(
        key.status().is_success(),
        "transit key creation failed: {}",
        key.status()
    );
    let sample: serde_json::Value = setup
        .post(format!("{}/v1/transit/encrypt/bench", target.addr))
        .header("X-Vault-Token", &target.token)
        .json(&json!({"plaintext": PLAINTEXT}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ciphertext = sample["data"]["ciphertext"].as_str().unwrap().to_string();
    let batch: Vec<serde_json::Value> = (0..100).map(|_| json!({"plaintext": PLAINTEXT})).collect();
    let batch = json!({"batch_input": batch});
    let kinds: &[Kind] = match std::env::var("BENCH_ONLY").as_deref() {
        Ok("transit") => &[Kind::Encrypt, Kind::Decrypt, Kind::EncryptBatch],
        Ok("kv") => &[Kind::Read, Kind::Write],
        Ok("auth") => &[Kind::Login, Kind::WrapUnwrap],
        _ => &[
            Kind::Read,
            Kind::Write,
            Kind::Encrypt,
            Kind::Decrypt,
            Kind::EncryptBatch,
            Kind::Login,
            Kind::WrapUnwrap,
        ],
    };
    if kinds.contains(&Kind::Login) {
        let user = setup
            .post(format!("{}/v1/auth/userpass/users/bench", target.addr))
            .header("X-Vault-Token", &target.token)
            .json(&json!({"password": PASSWORD}))
            .send()
            .await
            .unwrap();
        assert!(
            user.status().is_success(),
            "userpass user creation failed (is userpass enabled?): {}",
            user.status()
        );
    }
    for &kind in kinds {
        for concurrency in [16usize, 64] {
            let client = client(&target.ca, concurrency);
            let started = Instant::now();
            let mut tasks = Vec::new();
            for worker in 0..concurrency {
                let client = client.clone();
                let addr = target.addr.clone();
                let token = target.token.clone();
                let ciphertext = ciphertext.clone();
                let batch = batch.clone();
                tasks.push(tokio::spawn(async move {
                    let mut latencies = Vec::new();
                    let mut errors = 0u64;
                    let mut i = 0u64;
                    while started.elapsed() < length {
                        let t = Instant::now();
                        let request = match kind {
                            Kind::Read => client.get(format!("{addr}/v1/secret/data/bench/read")),
                            Kind::Write => client
                                .post(format!("{addr}/v1/secret/data/bench/w{worker}-{i}"))
                                .json(&json!({"data": {"api_key": "sk-proj-0123456789abcdefghijklmnopqrstuvwxyz"}})),
                            Kind::Encrypt => client.post(format!("{addr}/v1/transit/encrypt/bench")).json(&json!({"plaintext": PLAINTEXT})),
                            Kind::Decrypt => client.post(format!("{addr}/v1/transit/decrypt/bench")).json(&json!({"ciphertext": ciphertext})),
                            Kind::EncryptBatch => client.post(format!("{addr}/v1/transit/encrypt/bench")).json(&batch),
                            Kind::Login => client.post(format!("{addr}/v1/auth/userpass/login/bench")).json(&json!({"password": PASSWORD})),
                            Kind::WrapUnwrap => {
                                // A wrapped read, then its unwrap: one row is both requests.
                                let wrapped = client
                                    .get(format!("{addr}/v1/secret/data/bench/read"))
                                    .header("X-Vault-Token", &token)
                                    .header("X-Vault-Wrap-TTL", "60s")
                                    .send()
                                    .await;
                                let info: serde_json::Value = match wrapped {
                                    Ok(r) if r.status().is_success() => r.json().await.unwrap_or_default(),
                                    _ => serde_json::Value::Null,
                                };
                                let wrapping = info["wrap_info"]["token"].as_str().unwrap_or_default().to_string();
                                if wrapping.is_empty() {
                                    // Unwrapping nothing would count as a failed login.
                                    errors += 1;
                                    i += 1;
                                    continue;
                                }
                                client.post(format!("{addr}/v1/sys/wrapping/unwrap")).json(&json!({"token": wrapping}))
                            }
                        };
                        match request.header("X-Vault-Token", &token).send().await {
                            Ok(response) if response.status().is_success() => {
                                let _ = response.bytes().await;
                                latencies.push(t.elapsed());
                            }
                            _ => errors += 1,
                        }
                        i += 1;
                    }
                    (latencies, errors)
                }));
            }
            let mut latencies = Vec::new();
            let mut errors = 0;
            for task in tasks {
                let (l, e) = task.await.unwrap();
                latencies.extend(l);
                errors += e;
            }
            let elapsed = started.elapsed().as_secs_f64();
            latencies.sort();
            let pct = |p: f64| {
                latencies
                    .get(((latencies.len().max(1) - 1) as f64 * p) as usize)
                    .map_or(0.0, |d| d.as_secs_f64() * 1e3)
            };
            let name = match kind {
                Kind::Read => "KV read",
                Kind::Write => "KV write (durable)",
                Kind::Encrypt => "transit encrypt",
                Kind::Decrypt => "transit decrypt",
                Kind::EncryptBatch => "transit encrypt x100",
                Kind::Login => "userpass login",
                Kind::WrapUnwrap => "wrapped read+unwrap",
            };
            println!(
                "{:<22} {:>5} {:>10.0} {:>9.2} {:>9.2} {:>9} {:>12}",
                name,
                concurrency,
                latencies.len() as f64 / elapsed,
                pct(0.50),
                pct(0.99),
                errors,
                rss_kib(target.pid)
            );
        }
    }
}
