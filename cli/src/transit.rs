//! `vaultctl transit`: encryption, decryption and signing by the vault's transit engine, whose
//! keys never leave the vault.
//!
//! Plaintext and input to sign come from standard input or a file, never from the command line,
//! and go to the API base64-encoded, as do contexts. Ciphertexts and signatures are the API's
//! `vault:vN:…` text.

use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use clap::ValueEnum;
use serde_json::{Value, json};
use vaultd_client::Client;
use zeroize::Zeroizing;

use crate::cli::{Transit, TransitCommand};
use crate::input;
use crate::output::{self, Output};

/// Runs a `transit` subcommand on the mount it names; the exit code is 1 for a signature that
/// does not verify.
pub fn run(client: &Client, transit: Transit) -> Result<(Output, ExitCode)> {
    let mount = transit.mount.trim_matches('/');
    let mut code = ExitCode::SUCCESS;
    let output = match transit.command {
        TransitCommand::Create {
            name,
            key_type,
            derived,
        } => {
            let key_type = key_type
                .to_possible_value()
                .map(|v| v.get_name().to_string());
            let path = format!("{mount}/keys/{name}");
            let key = call(
                client,
                &path,
                &json!({"type": key_type, "derived": derived}),
            )?;
            let rows = ["name", "type", "derived", "latest_version"]
                .iter()
                .map(|k| (k.to_string(), key[*k].clone()))
                .collect();
            Output::new(key).section("", rows)
        }
        TransitCommand::Encrypt {
            name,
            plaintext_file,
            context,
        } => {
            let plaintext = input::bytes(
                plaintext_file.as_deref(),
                "plaintext",
                "give --plaintext-file FILE",
            )?;
            let encoded = Zeroizing::new(BASE64.encode(&*plaintext));
            let mut body = json!({"plaintext": encoded.as_str()});
            add_context(&mut body, context.as_deref());
            let path = format!("{mount}/encrypt/{name}");
            let data = call(client, &path, &body)?;
            one_value(&path, data, "ciphertext")?
        }
        TransitCommand::Decrypt {
            name,
            ciphertext,
            context,
        } => {
            let ciphertext = match ciphertext {
                Some(ciphertext) => ciphertext,
                None => stdin_ciphertext()?,
            };
            let mut body = json!({"ciphertext": ciphertext.trim()});
            add_context(&mut body, context.as_deref());
            let path = format!("{mount}/decrypt/{name}");
            let data = call(client, &path, &body)?;
            let plaintext = data["plaintext"]
                .as_str()
                .and_then(|p| BASE64.decode(p).ok())
                .map(Zeroizing::new)
                .with_context(|| format!("unexpected answer from {path}: no base64 plaintext"))?;
            let rows = vec![("plaintext".to_string(), data["plaintext"].clone())];
            Output::new(data).section("", rows).raw(plaintext)
        }
        TransitCommand::Rewrap {
            name,
            ciphertext,
            context,
        } => {
            let mut body = json!({"ciphertext": ciphertext.trim()});
            add_context(&mut body, context.as_deref());
            let path = format!("{mount}/rewrap/{name}");
            let data = call(client, &path, &body)?;
            one_value(&path, data, "ciphertext")?
        }
        TransitCommand::Rotate { name } => {
            let path = format!("{mount}/keys/{name}/rotate");
            let key = call(client, &path, &json!({}))?;
            eprintln!("key {name} rotated");
            one_value(&path, key, "latest_version")?
        }
        TransitCommand::Sign { name, input_file } => {
            let input = input::bytes(input_file.as_deref(), "input", "give --input-file FILE")?;
            let path = format!("{mount}/sign/{name}");
            let body = json!({"input": BASE64.encode(&*input)});
            let data = call(client, &path, &body)?;
            one_value(&path, data, "signature")?
        }
        TransitCommand::Verify {
            name,
            signature,
            input_file,
        } => {
            let input = input::bytes(input_file.as_deref(), "input", "give --input-file FILE")?;
            let path = format!("{mount}/verify/{name}");
            let body = json!({"input": BASE64.encode(&*input), "signature": signature.trim()});
            let data = call(client, &path, &body)?;
            let Some(valid) = data["valid"].as_bool() else {
                bail!("unexpected answer from {path}: no valid");
            };
            if !valid {
                code = ExitCode::FAILURE;
            }
            let verdict = if valid { "valid" } else { "invalid" };
            let rows = vec![("signature".to_string(), json!(verdict))];
            Output::new(data).section("", rows).bare()
        }
    };
    Ok((output, code))
}

/// Writes `body` to `path` and returns the answer's data, after passing on the vault's
/// warnings (such as a key that already existed).
fn call(client: &Client, path: &str, body: &Value) -> Result<Value> {
    let mut answer = client.write(path, body)?.unwrap_or_default();
    if let Some(warnings) = answer["warnings"].as_array() {
        for warning in warnings {
            eprintln!("vaultctl: warning: {}", output::text(warning));
        }
    }
    Ok(answer.get_mut("data").map(Value::take).unwrap_or_default())
}

/// An output that prints one field of `data` bare, such as a ciphertext, so that shells can
/// capture it; `--format json` still shows all of `data`.
fn one_value(path: &str, data: Value, field: &str) -> Result<Output> {
    let value = data[field].clone();
    if value.is_null() {
        bail!("unexpected answer from {path}: no {field}");
    }
    Ok(Output::new(data)
        .section("", vec![(field.to_string(), value)])
        .bare())
}

/// Adds a derived key's context, base64-encoded as the API takes it.
fn add_context(body: &mut Value, context: Option<&str>) {
    if let Some(context) = context {
        body["context"] = json!(BASE64.encode(context));
    }
}

/// A ciphertext from standard input, without surrounding whitespace.
fn stdin_ciphertext() -> Result<String> {
    let bytes = input::stdin_bytes("ciphertext", "give it as an argument")?;
    let text = std::str::from_utf8(&bytes).context("the ciphertext is not text")?;
    if text.trim().is_empty() {
        bail!("no ciphertext on standard input");
    }
    Ok(text.trim().to_string())
}
