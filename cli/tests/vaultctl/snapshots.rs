//! Snapshots of what `vaultctl` prints and how it exits, from the cases under `tests/cmd/`:
//! `dev/` against a dev vault, `production/` against a production vault that starts sealed.
//!
//! Each case file sets up the state it needs, under paths of its own, so the files can run in
//! any order and side by side. Cases run `vaultctl` with `VAULT_ADDR`, `VAULT_CACERT` and
//! `VAULT_TOKEN` set, and `HOME` in a temporary directory; `sh` and `env` are there for pipes
//! and for changing one variable. Values that differ between runs are redacted: `[ADDR]` (the
//! vault's address) and `[SCRATCH]` (a temporary directory with `home/` and the audit copies).

use std::path::Path;
use std::time::Duration;

use crate::support::{Vault, vaultctl_bin};

#[test]
fn commands_against_a_dev_vault() {
    let vault = Vault::dev();
    let scratch = tempfile::tempdir().unwrap();
    let (copy, tampered) = audit_copies(&vault, scratch.path());

    let cases = cases(&vault, &vault.root_token, scratch.path());
    cases
        .env("AUDIT_COPY", copy.display().to_string())
        .env("AUDIT_TAMPERED", tampered.display().to_string())
        .case("tests/cmd/dev/*.md")
        .run();
}

#[test]
fn operator_commands_against_a_production_vault() {
    let dev = Vault::dev();
    let vault = Vault::production(&dev);
    drop(dev);
    let scratch = tempfile::tempdir().unwrap();

    // No token at all: `operator init` makes the root token, and the case logs in with it.
    cases(&vault, "", scratch.path())
        .case("tests/cmd/production/*.md")
        .run();
}

/// Test cases run against `vault` with `token`, `HOME` under `scratch`, and the binaries
/// they may call.
fn cases(vault: &Vault, token: &str, scratch: &Path) -> trycmd::TestCases {
    // Cases can set variables but not unset them: these would change what vaultctl does.
    for name in ["VAULT_CLIENT_CERT", "VAULT_CLIENT_KEY"] {
        assert!(
            std::env::var_os(name).is_none(),
            "unset {name} to run the snapshot tests"
        );
    }
    let home = scratch.join("home");
    let bin = scratch.join("bin");
    std::fs::create_dir_all(&home).unwrap();
    std::fs::create_dir_all(&bin).unwrap();
    // `sh -c "… | vaultctl …"` finds the binary under test first.
    std::os::unix::fs::symlink(vaultctl_bin(), bin.join("vaultctl")).unwrap();

    let cases = trycmd::TestCases::new();
    cases
        .register_bin("vaultctl", vaultctl_bin())
        .register_bin("sh", Path::new("/bin/sh"))
        .register_bin("env", Path::new("/usr/bin/env"))
        .register_bin("cat", Path::new("/bin/cat"))
        .env("PATH", format!("{}:/usr/bin:/bin", bin.display()))
        .env("HOME", home.display().to_string())
        .env(
            "XDG_CONFIG_HOME",
            home.join(".config").display().to_string(),
        )
        .env("VAULT_ADDR", vault.addr.clone())
        .env("VAULT_CACERT", vault.ca_cert.display().to_string())
        .env("VAULT_TOKEN", token)
        .timeout(Duration::from_secs(30));
    cases
        .insert_var("[ADDR]", vault.addr.clone())
        .unwrap()
        .insert_var("[SCRATCH]", scratch.display().to_string())
        .unwrap();
    cases
}

/// Makes a few requests, then copies the dev vault's audit log while it is idle (so it ends
/// with a signed checkpoint), and makes a second copy with line 3 altered.
fn audit_copies(vault: &Vault, scratch: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    vault.run(&["put", "secret/audited/app", "region=eu"]);
    vault.run(&["get", "secret/audited/app"]);

    let copy = scratch.join("audit.log");
    let tampered = scratch.join("tampered.log");
    std::fs::copy(vault.audit_log(), &copy).unwrap();
    let text = std::fs::read_to_string(&copy).unwrap();
    let last: serde_json::Value = serde_json::from_str(text.lines().last().unwrap()).unwrap();
    assert_eq!(
        last["type"], "checkpoint",
        "the audit log does not end signed"
    );

    // Someone hides where a request came from.
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let original = lines[2].clone();
    lines[2] = original.replacen(
        "\"remote_address\":\"127.0.0.1\"",
        "\"remote_address\":\"192.0.2.7\"",
        1,
    );
    assert_ne!(
        lines[2], original,
        "line 3 of the audit log has no remote address"
    );
    assert!(
        lines.len() > 3,
        "the audit log is too short to alter line 3"
    );
    std::fs::write(&tampered, lines.join("\n") + "\n").unwrap();
    (copy, tampered)
}
