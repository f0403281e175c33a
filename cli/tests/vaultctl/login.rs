//! `vaultctl login` keeps the token where only its owner can read it, and never prints it.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::process::Stdio;

use crate::support::{Vault, describe};

#[test]
fn the_saved_token_is_private_and_not_printed() {
    let vault = Vault::dev();
    let token = vault.run(&["token", "create", "--policy", "default", "--field", "token"]);
    let token = token.trim();

    let mut login = vault
        .vaultctl()
        .env("VAULT_TOKEN", "")
        .args(["login", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    writeln!(login.stdin.take().unwrap(), "{token}").unwrap();
    let output = login.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        !describe(&output).contains(token),
        "login printed the token: {}",
        describe(&output)
    );

    let dir = vault.home().join(".config/vaultd");
    let file = dir.join("token");
    assert_eq!(std::fs::read_to_string(&file).unwrap().trim(), token);
    let mode =
        |path: &std::path::Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&file), 0o600, "the token file is readable by others");
    assert_eq!(mode(&dir), 0o700, "the token's directory is open to others");
}

#[test]
fn a_userpass_login_reads_the_password_from_stdin_and_saves_the_token() {
    let vault = Vault::dev();
    vault
        .root_client()
        .write(
            "auth/userpass/users/alice",
            &serde_json::json!({"password": "Tangerine-Kettle-47-Orbit"}),
        )
        .unwrap();
    let login = |password: &str| {
        let mut child = vault
            .vaultctl()
            .env("VAULT_TOKEN", "")
            .args(["login", "--method", "userpass", "--username", "alice", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        writeln!(child.stdin.take().unwrap(), "{password}").unwrap();
        child.wait_with_output().unwrap()
    };

    let refused = login("Wrong-Guess-1234");
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    assert!(describe(&refused).contains("invalid username or password"));

    let output = login("Tangerine-Kettle-47-Orbit");
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        !describe(&output).contains("Tangerine"),
        "{}",
        describe(&output)
    );
    let name = vault
        .vaultctl()
        .env("VAULT_TOKEN", "")
        .args(["token", "lookup", "--field", "display_name"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&name.stdout), "userpass-alice\n");
}
