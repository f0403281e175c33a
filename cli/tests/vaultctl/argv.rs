//! A secret given on standard input never shows in the process's command line or environment,
//! where other users of the machine could read it while `vaultctl` runs.

use std::io::Write;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::support::{Vault, describe};

const SECRET: &str = "sk-argv-check-7f3a9c2e";

#[test]
fn a_value_read_from_stdin_is_not_in_argv_or_environ() {
    let vault = Vault::dev();
    let mut put = vault
        .vaultctl()
        .args(["put", "secret/argv/x", "api_key=-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();

    // Half the value is in the pipe and the rest not yet written: vaultctl is still reading.
    let mut stdin = put.stdin.take().unwrap();
    let (first, rest) = SECRET.split_at(SECRET.len() / 2);
    stdin.write_all(first.as_bytes()).unwrap();
    stdin.flush().unwrap();
    let cmdline = command_line(&put, "api_key=-");
    let environ = std::fs::read(format!("/proc/{}/environ", put.id())).unwrap();
    assert!(
        contains(&environ, b"VAULT_ADDR="),
        "cannot read vaultctl's environment"
    );
    for (what, text) in [("cmdline", cmdline), ("environ", environ)] {
        assert!(
            !contains(&text, SECRET.as_bytes()),
            "the secret is in {what}"
        );
        assert!(
            !contains(&text, first.as_bytes()),
            "part of the secret is in {what}"
        );
    }
    assert!(
        put.try_wait().unwrap().is_none(),
        "vaultctl did not wait for its input"
    );

    stdin.write_all(rest.as_bytes()).unwrap();
    stdin.write_all(b"\n").unwrap();
    drop(stdin);
    let output = put.wait_with_output().unwrap();
    assert!(output.status.success(), "{}", describe(&output));
    assert_eq!(
        vault.run(&["get", "secret/argv/x", "--field", "api_key"]),
        format!("{SECRET}\n")
    );
}

/// The check above finds a secret that is on the command line: run against a process that
/// has one, it must see it.
#[test]
fn the_check_sees_a_secret_on_the_command_line() {
    let mut holder = Command::new("sh")
        .args(["-c", "read line", SECRET])
        .stdin(Stdio::piped())
        .spawn()
        .unwrap();
    let cmdline = command_line(&holder, "read line");
    drop(holder.stdin.take());
    holder.wait().unwrap();
    assert!(contains(&cmdline, SECRET.as_bytes()));
}

/// The command line of `child` once it shows `expected`: right after `exec` the kernel has
/// not yet filled it in.
fn command_line(child: &Child, expected: &str) -> Vec<u8> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let cmdline = std::fs::read(format!("/proc/{}/cmdline", child.id())).unwrap();
        if contains(&cmdline, expected.as_bytes()) {
            return cmdline;
        }
        assert!(
            Instant::now() < deadline,
            "the command line never showed {expected:?}: {:?}",
            String::from_utf8_lossy(&cmdline)
        );
        std::thread::yield_now();
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}
