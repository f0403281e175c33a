//! Command rotators against a fake provider (tests/rotators/fake_provider.py): the new key
//! reaches readers, the old one is revoked only after the grace period, a failing step leaves
//! the old key current and is retried, and a daemon killed at any step finishes the rotation
//! after a restart without the provider ever minting two keys for one rotation.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::support::{TestVault, init};

fn lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

/// A production vault with a key file seal (so restarts unseal themselves) and the fake
/// provider as rotator `fake`, keeping its state in the returned directory.
fn vault_with_rotator() -> (TestVault, PathBuf) {
    let state = tempfile::tempdir().unwrap().keep();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/rotators/fake_provider.py");
    let keys = tempfile::tempdir().unwrap().keep();
    let extra = format!(
        "[seal]\ntype = \"keyfile\"\nkey_file = \"{}\"\n\n[[rotator]]\nname = \"fake\"\ncommand = \"/usr/bin/python3\"\nargs = [\"{}\", \"{}\"]\ntimeout = \"30s\"\n",
        keys.join("unseal.key").display(),
        script.display(),
        state.display()
    );
    let mut vault = TestVault::production(&extra);
    init(&mut vault, 1, 1);
    (vault, state)
}

fn current_key(vault: &TestVault) -> String {
    let read = vault.root("GET", "secret/data/provider/prod", None);
    read.body["data"]["data"]["api_key"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

fn poll(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn set_policy(vault: &TestVault, grace: &str) {
    vault.root(
        "POST",
        "secret/data/provider/prod",
        Some(json!({"data": {"api_key": "original-key", "org": "acme"}})),
    );
    let set = vault.root(
        "PUT",
        "sys/rotation/policy/secret/provider/prod",
        Some(json!({"method": "command", "rotator": "fake", "period": "720h", "grace": grace, "field": "api_key"})),
    );
    assert_eq!(set.status, 204, "{}", set.body);
}

#[test]
fn the_old_key_is_revoked_only_after_the_grace_period() {
    let (vault, state) = vault_with_rotator();
    set_policy(&vault, "2s");
    let run = vault.root("POST", "sys/rotation/rotate/secret/provider/prod", None);
    assert_eq!(run.status, 200, "{}", run.body);
    assert_eq!(
        run.body["data"],
        json!({"from_version": 1, "to_version": 2})
    );

    let minted = lines(&state.join("minted.jsonl"));
    assert_eq!(minted.len(), 1);
    let new_key = minted[0]["key"].as_str().unwrap().to_string();
    assert_eq!(
        current_key(&vault),
        new_key,
        "readers do not get the new key"
    );
    assert_eq!(
        vault.root("GET", "secret/data/provider/prod", None).body["data"]["data"]["org"],
        "acme"
    );
    assert!(
        lines(&state.join("revoked.jsonl")).is_empty(),
        "the old key was revoked before the grace period"
    );

    poll("the old key's revocation", || {
        !lines(&state.join("revoked.jsonl")).is_empty()
    });
    let revoked = lines(&state.join("revoked.jsonl"));
    assert_eq!(
        revoked,
        vec![json!({"rotation_id": minted[0]["rotation_id"], "key": "original-key"})]
    );
    let status = vault.root("GET", "sys/rotation/policy/secret/provider/prod", None);
    assert_eq!(status.body["data"]["state"], "ok");
    // Neither key is in the audit log.
    let log = std::fs::read_to_string(vault.path("store/../audit.log")).unwrap_or_default();
    assert!(!log.contains(&new_key) && !log.contains("original-key"));
}

#[test]
fn a_failing_test_step_keeps_the_old_key_and_is_retried() {
    let (vault, state) = vault_with_rotator();
    set_policy(&vault, "0s");
    std::fs::write(state.join("fail-test"), "").unwrap();
    let run = vault.root("POST", "sys/rotation/rotate/secret/provider/prod", None);
    assert_eq!(run.status, 502, "{}", run.body);
    assert_eq!(current_key(&vault), "original-key");
    let status = vault.root("GET", "sys/rotation/policy/secret/provider/prod", None);
    assert_eq!(status.body["data"]["state"], "failing");
    assert!(
        status.body["data"]["last_error"]
            .as_str()
            .unwrap()
            .contains("test"),
        "{}",
        status.body
    );

    // Once the provider works again the scheduler's retry finishes the same rotation.
    std::fs::remove_file(state.join("fail-test")).unwrap();
    poll("the retried rotation", || {
        current_key(&vault) != "original-key"
    });
    let minted = lines(&state.join("minted.jsonl"));
    assert_eq!(minted.len(), 1, "the retry minted a second key");
    assert_eq!(current_key(&vault), minted[0]["key"]);
    poll("the revocation", || {
        lines(&state.join("revoked.jsonl")).len() == 1
    });
}

/// Kills the daemon with SIGKILL while the rotator is in each step, restarts it, and checks
/// that the rotation finishes with one key per rotation and every value readable.
#[test]
fn a_rotation_killed_at_any_step_finishes_after_restart() {
    let rounds: usize = std::env::var("VAULTD_ROTATION_KILLS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(10);
    let (mut vault, state) = vault_with_rotator();
    set_policy(&vault, "0s");
    let mut rotations = 0u64;
    for step in ["create", "set", "test", "finish"] {
        for round in 0..rounds {
            let pause = state.join(format!("pause-{step}"));
            let paused = state.join(format!("paused-{step}"));
            std::fs::write(&pause, "").unwrap();
            let (client, url, token) = (
                vault.http(),
                format!("{}/v1/sys/rotation/rotate/secret/provider/prod", vault.addr),
                vault.root_token.clone(),
            );
            let request = std::thread::spawn(move || {
                client
                    .post(url)
                    .header("X-Vault-Token", token)
                    .send()
                    .map(|r| r.status().as_u16())
            });
            poll(&format!("the rotator to reach {step}"), || paused.exists());
            vault.kill();
            let _ = request.join();
            std::fs::remove_file(&pause).unwrap();
            std::fs::remove_file(&paused).unwrap();

            vault.restart();
            rotations += 1;
            let deadline = Instant::now() + Duration::from_secs(30);
            loop {
                let status = vault.root("GET", "sys/rotation/policy/secret/provider/prod", None);
                let revoked = lines(&state.join("revoked.jsonl")).len() as u64;
                let settled = status.body["data"]["in_progress"].is_null();
                if status.body["data"]["rotations"] == rotations && revoked == rotations && settled
                {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "rotation {rotations} did not finish after a kill in {step} (round {round}): \
                     {revoked} revoked, status {}",
                    status.body["data"]
                );
                std::thread::sleep(Duration::from_millis(50));
            }

            let minted = lines(&state.join("minted.jsonl"));
            let mut per_rotation: HashMap<String, usize> = HashMap::new();
            for m in &minted {
                *per_rotation
                    .entry(m["rotation_id"].as_str().unwrap().to_string())
                    .or_default() += 1;
            }
            assert!(
                per_rotation.values().all(|n| *n == 1),
                "a rotation minted two keys: {per_rotation:?}"
            );
            assert_eq!(minted.len() as u64, rotations);
            assert_eq!(
                current_key(&vault),
                minted.last().unwrap()["key"],
                "readers do not get the newest key"
            );
            assert_eq!(
                vault.root("GET", "secret/data/provider/prod", None).body["data"]["data"]["org"],
                "acme"
            );
        }
    }
}

#[test]
fn a_rotation_in_its_grace_period_blocks_a_second_one_and_policy_changes() {
    let (vault, state) = vault_with_rotator();
    set_policy(&vault, "1h");
    let run = vault.root("POST", "sys/rotation/rotate/secret/provider/prod", None);
    assert_eq!(run.status, 200, "{}", run.body);

    // A second rotation now would revoke the key readers were just given, before its grace.
    let again = vault.root("POST", "sys/rotation/rotate/secret/provider/prod", None);
    assert_eq!(again.status, 409, "{}", again.body);
    let change = vault.root(
        "PUT",
        "sys/rotation/policy/secret/provider/prod",
        Some(json!({"method": "generate", "period": "1h", "field": "api_key"})),
    );
    assert_eq!(change.status, 409, "{}", change.body);
    let delete = vault.root("DELETE", "sys/rotation/policy/secret/provider/prod", None);
    assert_eq!(delete.status, 409, "{}", delete.body);

    let status = vault.root("GET", "sys/rotation/policy/secret/provider/prod", None);
    assert_eq!(status.body["data"]["method"], "command", "{}", status.body);
    assert_eq!(
        status.body["data"]["in_progress"], "finish",
        "{}",
        status.body
    );
    assert_eq!(lines(&state.join("minted.jsonl")).len(), 1);
    assert!(lines(&state.join("revoked.jsonl")).is_empty());
}

#[test]
fn a_secret_written_during_a_rotation_is_kept_and_the_unused_key_revoked() {
    let (vault, state) = vault_with_rotator();
    set_policy(&vault, "0s");
    let (pause, paused) = (state.join("pause-set"), state.join("paused-set"));
    std::fs::write(&pause, "").unwrap();
    std::thread::scope(|scope| {
        let first =
            scope.spawn(|| vault.root("POST", "sys/rotation/rotate/secret/provider/prod", None));
        poll("the rotator to reach set", || paused.exists());

        // One rotation of a secret at a time.
        let second = vault.root("POST", "sys/rotation/rotate/secret/provider/prod", None);
        assert_eq!(second.status, 409, "{}", second.body);

        // An operator replaces the key by hand while the rotator is working.
        let written = vault.root(
            "POST",
            "secret/data/provider/prod",
            Some(json!({"data": {"api_key": "set-by-hand", "org": "acme"}})),
        );
        assert_eq!(written.status, 200, "{}", written.body);
        std::fs::remove_file(&pause).unwrap();

        let first = first.join().unwrap();
        assert!(first.status >= 400, "{}", first.body);
    });

    assert_eq!(
        current_key(&vault),
        "set-by-hand",
        "the rotation overwrote a newer write"
    );
    let minted = lines(&state.join("minted.jsonl"));
    assert_eq!(minted.len(), 1);
    assert_eq!(
        lines(&state.join("revoked.jsonl")),
        vec![json!({"rotation_id": minted[0]["rotation_id"], "key": minted[0]["key"]})],
        "the unused key was not revoked"
    );
    let status = vault.root("GET", "sys/rotation/policy/secret/provider/prod", None);
    assert_eq!(status.body["data"]["state"], "failing", "{}", status.body);
    assert!(
        status.body["data"]["in_progress"].is_null(),
        "{}",
        status.body
    );
    assert!(
        status.body["data"]["last_error"]
            .as_str()
            .unwrap_or_default()
            .contains("changed"),
        "{}",
        status.body
    );
}
