//! `vaultctl get --wrap-ttl` hands out a single-use wrapping token, and `vaultctl unwrap`
//! reads it from standard input, never from the command line.

use std::io::Write;
use std::process::Stdio;

use crate::support::{Vault, describe};

fn unwrap(vault: &Vault, token: &str, args: &[&str]) -> std::process::Output {
    let mut child = vault
        .vaultctl()
        .env("VAULT_TOKEN", "")
        .args(["unwrap", "-"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(child.stdin.take().unwrap(), "{token}").unwrap();
    child.wait_with_output().unwrap()
}

#[test]
fn a_wrapped_secret_unwraps_once_without_any_other_token() {
    let vault = Vault::dev();
    vault.run(&["put", "secret/wrap/app", "api_key=sk-wrap-canary-42"]);
    let token = vault.run(&[
        "get",
        "secret/wrap/app",
        "--wrap-ttl",
        "5m",
        "--field",
        "token",
    ]);
    let token = token.trim();
    assert!(token.starts_with("vdw_"), "{token}");
    let table = vault.run(&["get", "secret/wrap/app", "--wrap-ttl", "90s"]);
    assert!(
        table.contains("creation_path    secret/data/wrap/app"),
        "{table}"
    );
    assert!(table.contains("ttl              90"), "{table}");

    let first = unwrap(&vault, token, &["--field", "api_key"]);
    assert!(first.status.success(), "{}", describe(&first));
    assert_eq!(
        String::from_utf8_lossy(&first.stdout),
        "sk-wrap-canary-42\n"
    );

    let second = unwrap(&vault, token, &[]);
    assert_eq!(second.status.code(), Some(1), "{}", describe(&second));
    assert!(
        String::from_utf8_lossy(&second.stderr).contains("not valid or does not exist"),
        "{}",
        describe(&second)
    );
}

#[test]
fn a_bad_wrap_ttl_is_a_usage_error() {
    let vault = Vault::dev();
    let output = vault
        .vaultctl()
        .args(["get", "secret/x", "--wrap-ttl", "soon"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(2), "{}", describe(&output));
}
