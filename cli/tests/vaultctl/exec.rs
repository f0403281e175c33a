//! `vaultctl exec`: the command gets the secrets it asked for and not the vault token, keeps
//! its own exit code, and is never started with a secret missing.

use std::collections::BTreeMap;
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::Output;

use crate::support::{Vault, describe};

/// A value that a shell or a careless quoting step would change.
const API_KEY: &str = "sk-live 'quoted' \"double\" $HOME `tick` \\ ;|&\nsecond line";

#[test]
fn the_command_sees_the_injected_variables_and_not_the_token() {
    let vault = Vault::dev();
    vault.run(&[
        "put",
        "secret/exec/openai",
        &format!("api_key={API_KEY}"),
        "org=acme",
    ]);
    vault.run(&["put", "secret/exec/db", "password=pw-42"]);

    let output = vault
        .vaultctl()
        .env("UNRELATED", "kept")
        .args(["exec", "--env", "OPENAI_API_KEY=secret/exec/openai#api_key"])
        .args(["--env", "OPENAI_ORG=secret/exec/openai#org"])
        .args(["--env", "DB_PASSWORD=secret/exec/db#password"])
        .args(["--", "/usr/bin/env", "-0"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    let seen = environment(&output);

    assert_eq!(
        seen.get("OPENAI_API_KEY").map(String::as_str),
        Some(API_KEY)
    );
    assert_eq!(seen.get("OPENAI_ORG").map(String::as_str), Some("acme"));
    assert_eq!(seen.get("DB_PASSWORD").map(String::as_str), Some("pw-42"));
    assert!(
        !seen.contains_key("VAULT_TOKEN"),
        "the command was given the vault token"
    );
    assert!(
        !seen.values().any(|v| v.contains(&vault.root_token)),
        "the vault token is somewhere in the command's environment"
    );

    // Exactly what vaultctl had, less the token, plus the three asked for.
    let inherited = inherited_names();
    let mut expected: Vec<&str> = vec![
        "HOME",
        "XDG_CONFIG_HOME",
        "VAULT_ADDR",
        "VAULT_CACERT",
        "UNRELATED",
        "OPENAI_API_KEY",
        "OPENAI_ORG",
        "DB_PASSWORD",
    ];
    expected.extend(inherited.iter().map(String::as_str));
    expected.sort_unstable();
    expected.dedup();
    let names: Vec<&str> = seen.keys().map(String::as_str).collect();
    assert_eq!(names, expected);
}

#[test]
fn the_exit_code_is_the_commands() {
    let vault = Vault::dev();
    vault.run(&["put", "secret/exec/code", "token=t"]);
    for code in [0, 7, 42] {
        let status = vault
            .vaultctl()
            .args(["exec", "--env", "T=secret/exec/code#token", "--"])
            .args(["sh", "-c", &format!("exit {code}")])
            .status()
            .unwrap();
        assert_eq!(status.code(), Some(code), "sh -c 'exit {code}'");
    }

    // The command replaced vaultctl, so a signal that kills it is seen as such.
    let status = vault
        .vaultctl()
        .args(["exec", "--env", "T=secret/exec/code#token", "--"])
        .args(["sh", "-c", "kill -TERM $$"])
        .status()
        .unwrap();
    assert_eq!(status.signal(), Some(15), "{status}");
}

#[test]
fn the_command_is_not_started_when_a_value_is_missing() {
    let vault = Vault::dev();
    vault.run(&["put", "secret/exec/present", "api_key=sk-1"]);
    let scratch = tempfile::tempdir().unwrap();

    // The marker proves the command would have run: with every value present, it does.
    let marker = scratch.path().join("started");
    let output = exec_touching(&vault, &["KEY=secret/exec/present#api_key"], &marker);
    assert!(output.status.success(), "{}", describe(&output));
    assert!(
        marker.exists(),
        "the marker command does not create its marker"
    );

    let cases: [(&str, &[&str], &[&str]); 3] = [
        (
            "a missing secret",
            &[
                "KEY=secret/exec/present#api_key",
                "OTHER=secret/exec/absent#api_key",
            ],
            &["secret/exec/absent", "OTHER"],
        ),
        (
            "a missing field",
            &[
                "KEY=secret/exec/present#api_key",
                "OTHER=secret/exec/present#password",
            ],
            &["password", "OTHER"],
        ),
        (
            "a missing first value",
            &[
                "FIRST=secret/exec/absent#api_key",
                "KEY=secret/exec/present#api_key",
            ],
            &["secret/exec/absent", "FIRST"],
        ),
    ];
    for (what, specs, named) in cases {
        let marker = scratch.path().join(what.replace(' ', "-"));
        let output = exec_touching(&vault, specs, &marker);
        assert_eq!(
            output.status.code(),
            Some(1),
            "{what}: {}",
            describe(&output)
        );
        assert!(!marker.exists(), "{what}: the command was started");
        let stderr = String::from_utf8_lossy(&output.stderr);
        for name in named {
            assert!(
                stderr.contains(name),
                "{what}: the error does not name {name}: {stderr}"
            );
        }
        assert!(
            stderr.contains("not started"),
            "{what}: the error does not say the command was not started: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{what}: {}", describe(&output));
    }
}

/// Runs `vaultctl exec` with `specs` and a command that creates `marker`.
fn exec_touching(vault: &Vault, specs: &[&str], marker: &Path) -> Output {
    let mut command = vault.vaultctl();
    command.arg("exec");
    for spec in specs {
        command.args(["--env", spec]);
    }
    command
        .args(["--wait", "0", "--", "sh", "-c", "touch \"$0\""])
        .arg(marker)
        .output()
        .unwrap()
}

/// The NUL-separated `NAME=value` pairs that `env -0` printed.
fn environment(output: &Output) -> BTreeMap<String, String> {
    String::from_utf8(output.stdout.clone())
        .unwrap()
        .split('\0')
        .filter(|pair| !pair.is_empty())
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_string(), value.to_string())
        })
        .collect()
}

/// The variables every child of this test inherits (`Vault::vaultctl` removes only the
/// `VAULT_*` ones and sets its own).
fn inherited_names() -> Vec<String> {
    std::env::vars_os()
        .map(|(name, _)| name.to_string_lossy().into_owned())
        .filter(|name| !name.starts_with("VAULT_"))
        .collect()
}

/// A service started beside a sealed vault waits for the unseal instead of failing, and
/// never retries an answer that is not "sealed" or "unreachable".
#[test]
fn exec_waits_for_a_sealed_vault_and_retries_nothing_else() {
    use std::io::Write as _;
    use std::process::Stdio;
    use std::time::{Duration, Instant};

    let tls = Vault::dev();
    let mut vault = Vault::production(&tls);
    let init = vault
        .vaultctl()
        .args([
            "operator",
            "init",
            "--shares",
            "1",
            "--threshold",
            "1",
            "--format",
            "json",
        ])
        .output()
        .unwrap();
    assert!(init.status.success(), "{}", describe(&init));
    let init: serde_json::Value = serde_json::from_slice(&init.stdout).unwrap();
    let share = init["keys"][0].as_str().unwrap().to_string();
    vault.root_token = init["root_token"].as_str().unwrap().to_string();
    let unseal = |vault: &Vault| {
        let mut child = vault
            .vaultctl()
            .args(["operator", "unseal", "-"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(share.as_bytes())
            .unwrap();
        assert!(child.wait().unwrap().success());
    };
    unseal(&vault);
    vault.run(&["put", "secret/waiting/app", "api_key=sk-after-unseal"]);
    vault.run(&["operator", "seal"]);

    let mut exec = vault
        .vaultctl()
        .args([
            "exec",
            "--wait",
            "60",
            "--env",
            "KEY=secret/waiting/app#api_key",
            "--",
            "/bin/sh",
            "-c",
            "printf %s \"$KEY\"",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // While the vault stays sealed, exec keeps waiting rather than giving up.
    let watch_until = Instant::now() + Duration::from_millis(700);
    while Instant::now() < watch_until {
        assert!(
            exec.try_wait().unwrap().is_none(),
            "exec gave up on a sealed vault"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    unseal(&vault);
    let output = exec.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "sk-after-unseal");

    // A refused token is not retried: the answer comes at once, well inside the wait.
    let started = Instant::now();
    let refused = vault
        .vaultctl()
        .env("VAULT_TOKEN", "vdt_not_a_real_token")
        .args([
            "exec",
            "--wait",
            "60",
            "--env",
            "KEY=secret/waiting/app#api_key",
            "--",
            "true",
        ])
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", describe(&refused));
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "a 403 was retried"
    );
}
