//! `vaultctl`, the command-line client of vaultd.

#![cfg_attr(test, allow(clippy::unwrap_used, clippy::expect_used, clippy::panic))]

mod cli;
mod input;
mod output;
mod transit;

use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use clap::{CommandFactory, Parser};
use serde_json::{Value, json};
use vaultd_client::{Client, ClientError, Settings};
use zeroize::Zeroizing;

use crate::cli::{
    AuditCommand, Cli, Command, Connection, LoginMethod, Operator, PolicyCommand, RotationCommand,
    TokenCommand,
};
use crate::output::Output;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(error) => {
            eprintln!("vaultctl: {error:#}");
            if let Some(hint) = hint(&error) {
                eprintln!("vaultctl: {hint}");
            }
            let sealed = error
                .downcast_ref::<ClientError>()
                .is_some_and(|e| matches!(e, ClientError::Sealed));
            ExitCode::from(if sealed { 2 } else { 1 })
        }
    }
}

/// What to do about the common mistakes.
fn hint(error: &anyhow::Error) -> Option<String> {
    let text = format!("{error:#}");
    if let Some(client) = error.downcast_ref::<ClientError>() {
        return match client {
            ClientError::NoAddress => Some("set VAULT_ADDR, e.g. export VAULT_ADDR=https://127.0.0.1:8200 (vaultd dev prints it)".into()),
            ClientError::NotHttps(_) => Some("use the https:// address; vaultd has no plaintext listener".into()),
                        ClientError::Sealed => Some(
                "unseal it with `vaultctl operator unseal` (once per share); a new vault needs `vaultctl operator init` first".into(),
            ),
            ClientError::Unreachable { .. } if text.contains("certificate") || text.contains("UnknownIssuer") => {
                Some("set VAULT_CACERT to the CA that signed the vault's certificate (vaultd dev prints it)".into())
            }
            ClientError::Unreachable { .. } => Some("check VAULT_ADDR and that vaultd is running".into()),
                                    ClientError::Api { status, path, .. } if *status != 403 && path.starts_with("sys/internal/ui/mounts/") => Some(
                "no KV version 2 mount serves this path, or your token has no access to it: paths start with the mount, e.g. secret/…".into(),
            ),
            ClientError::Api { status: 403, path, .. } => Some(format!(
                "your token is missing, expired or revoked, or no policy of it grants this on {path}: log in again with `vaultctl login`, or ask for a policy"
            )),
            ClientError::Api { status: 400, messages, .. }
                if messages.iter().any(|m| m.contains("message authentication failed")) =>
            {
                Some("the ciphertext was altered, or made by another key or with another --context".into())
            }
            ClientError::Api { status: 404, messages, .. }
                if messages.iter().any(|m| m.starts_with("no handler for route")) =>
            {
                Some("name the transit mount with --mount if it is not transit/, and give a key name without /".into())
            }
            _ => None,
        };
    }
    None
}

fn run(cli: Cli) -> Result<ExitCode> {
    let format = cli.format;
    let field = cli.field.as_deref();
    let connection = cli.connection;
    let output = match cli.command {
        Command::Completions { shell } => {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "vaultctl", &mut script);
            return write_out(&script);
        }
        Command::Man => {
            let mut page = Vec::new();
            clap_mangen::Man::new(Cli::command()).render(&mut page)?;
            return write_out(&page);
        }
        Command::Audit(AuditCommand::Verify { public_key, files }) => {
            return match vaultd_client::audit::verify(&files, &public_key) {
                Ok(report) => {
                    println!(
                        "ok: {} lines, {} signed checkpoints",
                        report.lines, report.checkpoints
                    );
                    Ok(ExitCode::SUCCESS)
                }
                Err(failure) => Err(anyhow!("verification FAILED at {failure}")),
            };
        }
        Command::Audit(AuditCommand::Tail { file, lines }) => audit_tail(&file, lines)?,
        Command::Logout => {
            let path = token_file()?;
            match std::fs::remove_file(&path) {
                Ok(()) => eprintln!("removed {}", path.display()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => eprintln!("no saved token"),
                Err(e) => {
                    return Err(e).with_context(|| format!("cannot remove {}", path.display()));
                }
            }
            return Ok(ExitCode::SUCCESS);
        }
        Command::Exec {
            env,
            login,
            wait,
            command,
        } => return exec(&connection, &env, login.is_some(), wait, &command),
        command => {
            let client = client(&connection, Duration::ZERO)?;
            let (output, code) = api_command(&client, command)?;
            output.print(format, field)?;
            return Ok(code);
        }
    };
    output.print(format, field)?;
    Ok(ExitCode::SUCCESS)
}

/// The commands that talk to the vault.
fn api_command(client: &Client, command: Command) -> Result<(Output, ExitCode)> {
    let ok = ExitCode::SUCCESS;
    Ok(match command {
        Command::Status => {
            let status = client
                .request("GET", "sys/seal-status", None)?
                .unwrap_or_default();
            let sealed = status["sealed"].as_bool().unwrap_or(true);
            let rows = [
                "type",
                "initialized",
                "sealed",
                "t",
                "n",
                "progress",
                "nonce",
                "version",
                "storage_type",
            ]
            .iter()
            .map(|k| (rename_status(k).to_string(), status[*k].clone()))
            .collect();
            (
                Output::new(status).section("", rows),
                if sealed { ExitCode::from(2) } else { ok },
            )
        }
        Command::Operator(Operator::Init { shares, threshold }) => {
            let answer = client
                .request(
                    "PUT",
                    "sys/init",
                    Some(&json!({"secret_shares": shares, "secret_threshold": threshold})),
                )?
                .unwrap_or_default();
            let mut rows: Vec<(String, Value)> = answer["keys"]
                .as_array()
                .map(|keys| {
                    keys.iter()
                        .enumerate()
                        .map(|(i, k)| (format!("Unseal share {}", i + 1), k.clone()))
                        .collect()
                })
                .unwrap_or_default();
            rows.push(("Root token".into(), answer["root_token"].clone()));
            eprintln!(
                "Keep the shares apart: any {threshold} of them unseal the vault. They are shown only now."
            );
            (Output::new(answer).section("", rows), ok)
        }
        Command::Operator(Operator::Unseal { stdin, reset }) => {
            let body = if reset {
                json!({"reset": true})
            } else {
                let share = input::secret(stdin.as_deref(), "Unseal share (will be hidden): ")?;
                json!({"key": share.as_str()})
            };
            let status = client
                .request("PUT", "sys/unseal", Some(&body))?
                .unwrap_or_default();
            let rows = ["sealed", "t", "n", "progress", "nonce"]
                .iter()
                .map(|k| (rename_status(k).to_string(), status[*k].clone()))
                .collect();
            let sealed = status["sealed"].as_bool().unwrap_or(true);
            (
                Output::new(status).section("", rows),
                if sealed { ExitCode::from(2) } else { ok },
            )
        }
        Command::Operator(Operator::Seal) => {
            client.request("PUT", "sys/seal", None)?;
            eprintln!("sealed");
            (Output::new(Value::Null), ok)
        }
        Command::Login {
            stdin,
            method,
            username,
            role,
        } => {
            let token = match (method, username) {
                (LoginMethod::Userpass, Some(username)) => {
                    let password = input::secret(stdin.as_deref(), "Password (will be hidden): ")?;
                    client.login_userpass(&username, password)?
                }
                (LoginMethod::Cert, _) => client.login_cert(role.as_deref())?,
                _ => input::secret(stdin.as_deref(), "Token (will be hidden): ")?,
            };
            let checking = Client::new(client.settings().clone().with_token(token.clone()))?;
            let me = checking
                .request("GET", "auth/token/lookup-self", None)?
                .unwrap_or_default();
            let path = save_token(&token)?;
            eprintln!("token saved to {}", path.display());
            let data = without_id(me["data"].clone());
            (Output::new(data.clone()).object("", &data), ok)
        }
        Command::Put { path, fields, cas } => {
            let data = input::fields(&fields)?;
            let version = client.kv_put(&path, data, cas)?;
            (
                Output::new(json!({"version": version}))
                    .section("", vec![("version".into(), json!(version))]),
                ok,
            )
        }
        Command::Get {
            path,
            version,
            wrap_ttl: Some(ttl),
        } => {
            let info = client.kv_get_wrapped(&path, version, ttl)?;
            (Output::new(info.clone()).object("", &info).primary(), ok)
        }
        Command::Unwrap { stdin } => {
            let token = input::secret(stdin.as_deref(), "Wrapping token (will be hidden): ")?;
            let body = client.unwrap(token)?;
            let output = match (&body["data"]["data"], &body["data"]["metadata"]) {
                // A wrapped KV read: shown as `get` shows a secret.
                (Value::Object(_), Value::Object(_)) => Output::new(body["data"].clone())
                    .object("Metadata", &body["data"]["metadata"])
                    .object("Data", &body["data"]["data"])
                    .primary(),
                _ if body["auth"].is_object() => {
                    Output::new(body["auth"].clone()).object("", &body["auth"])
                }
                _ => Output::new(body["data"].clone())
                    .object("", &body["data"])
                    .primary(),
            };
            (output, ok)
        }
        Command::Get {
            path,
            version,
            wrap_ttl: None,
        } => {
            let Some(secret) = client.kv_get(&path, version)? else {
                bail!(
                    "no secret at {path}{}",
                    version.map(|v| format!(" version {v}")).unwrap_or_default()
                );
            };
            let json = json!({"data": secret.data, "metadata": secret.metadata});
            let output = Output::new(json.clone())
                .object("Metadata", &json["metadata"])
                .object("Data", &json["data"])
                .primary();
            (output, ok)
        }
        Command::List { prefix } => {
            let (mount, rest) = client.kv_mount(&prefix)?;
            let keys = client.list(&format!("{mount}metadata/{rest}"))?;
            if keys.is_empty() {
                bail!("nothing under {prefix}");
            }
            let rows = keys
                .iter()
                .map(|k| (k.clone(), Value::String(String::new())))
                .collect();
            (Output::new(json!({"keys": keys})).section("", rows), ok)
        }
        Command::Delete(versions) => {
            let (mount, rest) = client.kv_mount(&versions.path)?;
            if versions.versions.is_empty() {
                client.delete(&format!("{mount}data/{rest}"))?;
            } else {
                client.write(
                    &format!("{mount}delete/{rest}"),
                    &json!({"versions": versions.versions}),
                )?;
            }
            eprintln!("deleted");
            (Output::new(Value::Null), ok)
        }
        Command::Undelete(versions) => {
            let (mount, rest) = client.kv_mount(&versions.path)?;
            client.write(
                &format!("{mount}undelete/{rest}"),
                &json!({"versions": versions.versions}),
            )?;
            eprintln!("undeleted");
            (Output::new(Value::Null), ok)
        }
        Command::Destroy(versions) => {
            let (mount, rest) = client.kv_mount(&versions.path)?;
            client.write(
                &format!("{mount}destroy/{rest}"),
                &json!({"versions": versions.versions}),
            )?;
            eprintln!("destroyed");
            (Output::new(Value::Null), ok)
        }
        Command::Versions { path } => {
            let (mount, rest) = client.kv_mount(&path)?;
            let Some(metadata) = client.read(&format!("{mount}metadata/{rest}"))? else {
                bail!("no secret at {path}");
            };
            let data = metadata["data"].clone();
            let rows = data["versions"]
                .as_object()
                .map(|versions| {
                    versions
                        .iter()
                        .map(|(v, info)| {
                            let state = if info["destroyed"] == true {
                                "destroyed".to_string()
                            } else if info["deletion_time"]
                                .as_str()
                                .is_some_and(|t| !t.is_empty())
                            {
                                format!(
                                    "deleted {}",
                                    info["deletion_time"].as_str().unwrap_or_default()
                                )
                            } else {
                                "current".to_string()
                            };
                            (
                                format!("version {v}"),
                                json!(format!(
                                    "{} ({state})",
                                    info["created_time"].as_str().unwrap_or_default()
                                )),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            let mut summary = data.clone();
            if let Some(map) = summary.as_object_mut() {
                map.remove("versions");
            }
            (
                Output::new(data)
                    .object("Metadata", &summary)
                    .section("Versions", rows),
                ok,
            )
        }
        Command::Rotate {
            path: Some(path), ..
        } => {
            let path = path.trim_matches('/');
            let answer = client
                .write(&format!("sys/rotation/rotate/{path}"), &json!({}))?
                .unwrap_or_default();
            let data = answer["data"].clone();
            eprintln!("{path} rotated");
            (Output::new(data.clone()).object("", &data), ok)
        }
        Command::Rotate { path: None, .. } => {
            client.request("PUT", "sys/rotate", None)?;
            let status = client
                .request("GET", "sys/key-status", None)?
                .unwrap_or_default();
            let data = status["data"].clone();
            eprintln!("keyring rotated; data keys are rewrapped in the background");
            let rows = vec![
                ("term".into(), data["term"].clone()),
                ("install_time".into(), data["install_time"].clone()),
            ];
            (Output::new(data).section("", rows), ok)
        }
        Command::Rotation(RotationCommand::Set {
            path,
            method,
            period,
            grace,
            target_field,
            length,
            alphabet,
            prefix,
            rotator,
        }) => {
            let mut body = json!({"method": method, "period": period});
            for (key, value) in [
                ("grace", grace),
                ("field", target_field),
                ("alphabet", alphabet),
                ("prefix", prefix),
                ("rotator", rotator),
            ] {
                if let Some(value) = value {
                    body[key] = json!(value);
                }
            }
            if let Some(length) = length {
                body["length"] = json!(length);
            }
            let path = path.trim_matches('/');
            client.write(&format!("sys/rotation/policy/{path}"), &body)?;
            eprintln!("rotation policy for {path} set");
            (Output::new(Value::Null), ok)
        }
        Command::Rotation(RotationCommand::Show { path }) => {
            let path = path.trim_matches('/');
            let Some(answer) = client.read(&format!("sys/rotation/policy/{path}"))? else {
                bail!("no rotation policy for {path}");
            };
            let data = answer["data"].clone();
            (Output::new(data.clone()).object("", &data), ok)
        }
        Command::Rotation(RotationCommand::Delete { path }) => {
            client.delete(&format!("sys/rotation/policy/{}", path.trim_matches('/')))?;
            eprintln!("rotation policy deleted");
            (Output::new(Value::Null), ok)
        }
        Command::Rotation(RotationCommand::List) => {
            let mut rows = Vec::new();
            let mut json_rows = Vec::new();
            let keyring = client
                .read("sys/rotate/config")?
                .map(|a| a["data"].clone())
                .unwrap_or_default();
            if keyring["enabled"] == true {
                let summary = format!(
                    "keyring  every {}  last {}  next {}",
                    output::text(&keyring["interval"]),
                    output::text(&keyring["last_rotated"]),
                    output::text(&keyring["next_due"])
                );
                rows.push(("(keyring)".to_string(), Value::String(summary)));
                json_rows.push(json!({"path": "(keyring)", "method": "keyring", "last_rotated": keyring["last_rotated"], "next_due": keyring["next_due"], "state": "scheduled"}));
            }
            for path in client.list("sys/rotation/policy")? {
                let Some(answer) = client.read(&format!("sys/rotation/policy/{path}"))? else {
                    continue;
                };
                let d = &answer["data"];
                let summary = format!(
                    "{:<8} {}  last {}  next {}  {}",
                    output::text(&d["method"]),
                    output::text(&d["fingerprint"]),
                    output::text(&d["last_rotated"]),
                    output::text(&d["next_due"]),
                    output::text(&d["state"])
                );
                rows.push((path.clone(), Value::String(summary)));
                json_rows.push(json!({"path": path, "method": d["method"], "fingerprint": d["fingerprint"], "last_rotated": d["last_rotated"], "next_due": d["next_due"], "state": d["state"], "last_error": d["last_error"]}));
            }
            if rows.is_empty() {
                bail!("nothing is scheduled for rotation");
            }
            (Output::new(Value::Array(json_rows)).section("", rows), ok)
        }
        Command::Transit(args) => transit::run(client, args)?,
        Command::Token(TokenCommand::Create {
            policies,
            ttl,
            num_uses,
            display_name,
            orphan,
        }) => {
            let mut body = json!({"policies": policies, "num_uses": num_uses, "no_parent": orphan});
            if let Some(ttl) = ttl {
                body["ttl"] = json!(ttl);
            }
            if let Some(name) = display_name {
                body["display_name"] = json!(name);
            }
            let answer = client
                .write("auth/token/create", &body)?
                .unwrap_or_default();
            let auth = answer["auth"].clone();
            let rows = vec![
                ("token".to_string(), auth["client_token"].clone()),
                ("token_accessor".to_string(), auth["accessor"].clone()),
                ("token_duration".to_string(), auth["lease_duration"].clone()),
                ("token_renewable".to_string(), auth["renewable"].clone()),
                ("token_policies".to_string(), auth["policies"].clone()),
            ];
            (Output::new(auth).section("", rows), ok)
        }
        Command::Token(TokenCommand::Lookup { accessor }) => {
            let answer = match accessor {
                Some(accessor) => {
                    client.write("auth/token/lookup-accessor", &json!({"accessor": accessor}))?
                }
                None => client.request("GET", "auth/token/lookup-self", None)?,
            }
            .unwrap_or_default();
            let data = without_id(answer["data"].clone());
            (Output::new(data.clone()).object("", &data), ok)
        }
        Command::Token(TokenCommand::Revoke { accessor, self_ }) => {
            match (accessor, self_) {
                (Some(accessor), _) => {
                    client.write("auth/token/revoke-accessor", &json!({"accessor": accessor}))?
                }
                (None, true) => client.request("POST", "auth/token/revoke-self", None)?,
                (None, false) => bail!("say which token: --accessor ACCESSOR, or --self"),
            };
            eprintln!("revoked");
            (Output::new(Value::Null), ok)
        }
        Command::Policy(PolicyCommand::Write { name, file }) => {
            let text = if file.as_os_str() == "-" {
                input::read_stdin()?.to_string()
            } else {
                std::fs::read_to_string(&file)
                    .with_context(|| format!("cannot read {}", file.display()))?
            };
            client.request(
                "PUT",
                &format!("sys/policies/acl/{name}"),
                Some(&json!({"policy": text})),
            )?;
            eprintln!("policy {name} written");
            (Output::new(Value::Null), ok)
        }
        Command::Policy(PolicyCommand::Read { name }) => {
            let Some(answer) = client.read(&format!("sys/policies/acl/{name}"))? else {
                bail!("no policy named {name}");
            };
            let data = answer["data"].clone();
            (
                Output::new(data.clone())
                    .section("", vec![("policy".into(), data["policy"].clone())]),
                ok,
            )
        }
        Command::Policy(PolicyCommand::List) => {
            let names = client.list("sys/policies/acl")?;
            let rows = names
                .iter()
                .map(|n| (n.clone(), Value::String(String::new())))
                .collect();
            (Output::new(json!({"keys": names})).section("", rows), ok)
        }
        Command::Policy(PolicyCommand::Delete { name }) => {
            client.delete(&format!("sys/policies/acl/{name}"))?;
            eprintln!("policy {name} deleted");
            (Output::new(Value::Null), ok)
        }
        Command::Audit(AuditCommand::PublicKey) => {
            // The bare key, so `--public-key "$(vaultctl audit public-key)"` works as it is.
            let answer = client
                .request("GET", "sys/audit-public-key", None)?
                .unwrap_or_default();
            let data = answer["data"].clone();
            let rows = vec![("public_key".into(), data["public_key"].clone())];
            (Output::new(data).section("", rows).bare(), ok)
        }
        Command::Audit(_)
        | Command::Completions { .. }
        | Command::Man
        | Command::Logout
        | Command::Exec { .. } => {
            bail!("internal: command handled elsewhere")
        }
    })
}

/// Writes to standard output; a reader that stops early (`| head`) is not an error.
fn write_out(bytes: &[u8]) -> Result<ExitCode> {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(bytes).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(e.into()),
        _ => Ok(ExitCode::SUCCESS),
    }
}

fn rename_status(key: &str) -> &str {
    match key {
        "t" => "threshold",
        "n" => "shares",
        other => other,
    }
}

/// Token lookups carry the token itself in `id`; never print it.
fn without_id(mut data: Value) -> Value {
    if let Some(map) = data.as_object_mut() {
        map.remove("id");
    }
    data
}

fn client(connection: &Connection, wait: Duration) -> Result<Client> {
    let address = connection
        .address
        .clone()
        .filter(|a| !a.is_empty())
        .or_else(|| env("VAULT_ADDR"))
        .ok_or(ClientError::NoAddress)?;
    let mut settings = Settings::new(address).wait_for_start(wait);
    settings.ca_cert = connection
        .ca_cert
        .clone()
        .or_else(|| env("VAULT_CACERT").map(PathBuf::from));
    settings.dangerous_skip_verify = connection.dangerous_skip_tls_verify;
    if connection.dangerous_skip_tls_verify {
        eprintln!("vaultctl: WARNING: the vault's certificate is not being checked");
    }
    let cert = connection
        .client_cert
        .clone()
        .or_else(|| env("VAULT_CLIENT_CERT").map(PathBuf::from));
    let key = connection
        .client_key
        .clone()
        .or_else(|| env("VAULT_CLIENT_KEY").map(PathBuf::from));
    match (cert, key) {
        (Some(cert), Some(key)) => settings.client_identity = Some((cert, key)),
        (None, None) => {}
        _ => bail!(
            "a client certificate needs both VAULT_CLIENT_CERT and VAULT_CLIENT_KEY (or --client-cert and --client-key)"
        ),
    }
    settings.token = match std::env::var("VAULT_TOKEN").ok().filter(|t| !t.is_empty()) {
        Some(token) => Some(Zeroizing::new(token)),
        None => saved_token()?,
    };
    Ok(Client::new(settings)?)
}

/// An environment variable, treating an empty value as unset.
fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// Where `vaultctl login` keeps the token: `<config dir>/vaultd/token`, mode 0600.
fn token_file() -> Result<PathBuf> {
    let dir = dirs::config_dir()
        .context("cannot find your config directory (set HOME or XDG_CONFIG_HOME)")?;
    Ok(dir.join("vaultd").join("token"))
}

fn saved_token() -> Result<Option<Zeroizing<String>>> {
    let Ok(path) = token_file() else {
        return Ok(None);
    };
    match std::fs::read_to_string(&path) {
        Ok(text) => Ok(Some(Zeroizing::new(text.trim().to_string()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

fn save_token(token: &str) -> Result<PathBuf> {
    use std::io::Write as _;
    let path = token_file()?;
    if let Some(dir) = path.parent() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let _ = std::fs::remove_file(&path);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    writeln!(file, "{token}").with_context(|| format!("cannot write {}", path.display()))?;
    Ok(path)
}

/// Fetches every value, then replaces this process with `command`, those values added to its
/// environment (and the vault token removed from it).
fn exec(
    connection: &Connection,
    specs: &[String],
    login_with_cert: bool,
    wait: u64,
    command: &[String],
) -> Result<ExitCode> {
    let mut client = client(connection, Duration::from_secs(wait))?;
    if login_with_cert {
        let token = client.login_cert(None)?;
        client = Client::new(client.settings().clone().with_token(token))?;
    }
    let mut values: Vec<(String, Zeroizing<String>)> = Vec::new();
    let mut secrets: std::collections::HashMap<String, vaultd_client::KvSecret> =
        std::collections::HashMap::new();
    for spec in specs {
        let (name, source) = spec
            .split_once('=')
            .with_context(|| format!("--env {spec:?}: expected NAME=path#field"))?;
        let (path, field) = source
            .rsplit_once('#')
            .with_context(|| format!("--env {spec:?}: expected NAME=path#field"))?;
        if name.is_empty()
            || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || name.starts_with(|c: char| c.is_ascii_digit())
        {
            bail!("--env {spec:?}: {name:?} is not a valid environment variable name");
        }
        if !secrets.contains_key(path) {
            let secret = client.kv_get(path, None)?.with_context(|| {
                format!(
                    "no secret at {path}; {name} would be missing, so the command was not started"
                )
            })?;
            secrets.insert(path.to_string(), secret);
        }
        let value = secrets[path].field(field).with_context(|| format!("secret {path} has no field {field:?}; {name} would be missing, so the command was not started"))?;
        values.push((name.to_string(), Zeroizing::new(value)));
    }
    let (program, arguments) = command.split_first().context("no command to run")?;
    let mut child = std::process::Command::new(program);
    child.args(arguments).env_remove("VAULT_TOKEN");
    for (name, value) in &values {
        child.env(name, value.as_str());
    }
    let error = child.exec();
    eprintln!("vaultctl: cannot run {program}: {error}");
    // The shell's codes: 127 for a command not found, 126 for one that cannot be run.
    Ok(ExitCode::from(
        if error.kind() == std::io::ErrorKind::NotFound {
            127
        } else {
            126
        },
    ))
}

fn audit_tail(file: &std::path::Path, lines: usize) -> Result<Output> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("cannot read {}", file.display()))?;
    let entries: Vec<Value> = text
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] != "checkpoint")
        .collect();
    let start = entries.len().saturating_sub(lines);
    let rows = entries[start..]
        .iter()
        .map(|e| {
            let summary = format!(
                "{} {} {} {} {}{}",
                e["type"].as_str().unwrap_or("?"),
                e["request"]["operation"].as_str().unwrap_or("?"),
                e["request"]["path"].as_str().unwrap_or("?"),
                e["response"]["status"]
                    .as_u64()
                    .map(|s| s.to_string())
                    .unwrap_or_else(|| "-".into()),
                e["auth"]["accessor"]
                    .as_str()
                    .filter(|a| !a.is_empty())
                    .unwrap_or("(no token)"),
                e["error"]
                    .as_str()
                    .filter(|s| !s.is_empty())
                    .map(|s| format!(" error: {s}"))
                    .unwrap_or_default(),
            );
            (
                e["time"].as_str().unwrap_or("?").to_string(),
                Value::String(summary),
            )
        })
        .collect();
    Ok(Output::new(Value::Array(entries[start..].to_vec())).section("", rows))
}
