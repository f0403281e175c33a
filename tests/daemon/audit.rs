//! The audit log: complete, with secrets only as HMACs, tamper-evident, and failing closed.

use std::collections::HashMap;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use serde_json::{Value, json};
use vaultd::barrier::{Barrier, MountId, RecordId, RecordKind};
use vaultd::crypto::shamir::UnsealShare;
use vaultd::keyring::KeyringConfig;
use vaultd::seal::{Seal, SealMechanism};
use vaultd::storage::SledStorage;

use crate::support::{TestVault, init, unseal};

fn entries(path: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn verify(public_key: &str, file: &std::path::Path) -> (bool, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_vaultd"))
        .args(["audit", "verify", "--public-key", public_key])
        .arg(file)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
    )
}

#[test]
fn every_request_is_audited_and_secrets_appear_only_as_hmacs() {
    let vault = TestVault::dev();
    let canary = "sk-ant-api03-CANARY-5e1f0a";
    let mut ids = Vec::new();
    let mut expect = |reply: crate::support::Reply, status: u16| {
        assert_eq!(reply.status, status, "{}", reply.body);
        ids.push(reply.headers["x-request-id"].to_str().unwrap().to_string());
    };
    expect(
        vault.root(
            "POST",
            "secret/data/anthropic",
            Some(json!({"data": {"api_key": canary}})),
        ),
        200,
    );
    expect(vault.root("GET", "secret/data/anthropic", None), 200);
    expect(vault.call("GET", "secret/data/anthropic", None, None), 403);
    expect(
        vault.call("GET", "secret/data/anthropic", Some("vdt_forged"), None),
        403,
    );
    expect(vault.root("GET", "secret/data/missing", None), 404);
    expect(
        vault.root("POST", "secret/data/bad", Some(json!({"nodata": 1}))),
        400,
    );
    expect(vault.call("GET", "sys/seal-status", None, None), 200);

    let hash = vault.root("PUT", "sys/audit-hash/file", Some(json!({"input": canary})));
    let hash = hash.body["data"]["hash"].as_str().unwrap().to_string();
    assert!(hash.starts_with("hmac-sha256:"));

    let log = std::fs::read_to_string(vault.path("audit.log")).unwrap();
    assert!(
        !log.contains(canary),
        "the secret value is in the audit log in the clear"
    );
    assert!(
        !log.contains(&vault.root_token),
        "the root token is in the audit log in the clear"
    );
    assert!(
        log.contains(&hash),
        "the HMAC of the secret value is not in the audit log"
    );

    let mut seen: HashMap<String, Vec<(String, Value)>> = HashMap::new();
    for entry in entries(&vault.path("audit.log")) {
        if let Some(id) = entry["request"]["id"].as_str() {
            seen.entry(id.to_string())
                .or_default()
                .push((entry["type"].as_str().unwrap().to_string(), entry));
        }
    }
    for id in &ids {
        let kinds: Vec<&str> = seen
            .get(id)
            .map(|e| e.iter().map(|(t, _)| t.as_str()).collect())
            .unwrap_or_default();
        assert_eq!(
            kinds,
            ["request", "response"],
            "request {id} is not fully audited"
        );
    }
    let denied = &seen[&ids[2]][1].1;
    assert_eq!(denied["response"]["status"], 403);
    assert_eq!(denied["error"], "permission denied");
    assert_eq!(denied["request"]["path"], "secret/data/anthropic");
    assert_eq!(denied["request"]["remote_address"], "127.0.0.1");
    let written = &seen[&ids[0]][0].1;
    assert!(
        written["auth"]["policies"]
            .as_array()
            .unwrap()
            .contains(&json!("root"))
    );
    assert!(
        written["request"]["client_token"]
            .as_str()
            .unwrap()
            .starts_with("hmac-sha256:")
    );
    assert!(!written["auth"]["accessor"].as_str().unwrap().is_empty());
}

#[test]
fn verify_finds_edits_deletions_reorderings_and_truncation() {
    let vault = TestVault::dev();
    for i in 0..5 {
        vault.root(
            "POST",
            &format!("secret/data/k{i}"),
            Some(json!({"data": {"v": i}})),
        );
    }
    let key = vault.root("GET", "sys/audit-public-key", None);
    let key = key.body["data"]["public_key"].as_str().unwrap().to_string();
    let original = std::fs::read_to_string(vault.path("audit.log")).unwrap();
    let lines: Vec<&str> = original.lines().collect();
    assert!(lines.len() > 12);
    let tampered = vault.path("tampered.log");
    let check = |text: String| {
        std::fs::write(&tampered, text).unwrap();
        verify(&key, &tampered)
    };

    let (ok, out) = verify(&key, &vault.path("audit.log"));
    assert!(ok, "{out}");

    let mut edited = lines.clone();
    let target = (4..lines.len())
        .find(|&i| lines[i].contains("\"remote_address\":\"127.0.0.1\""))
        .unwrap();
    let changed = edited[target].replacen("127.0.0.1", "10.9.9.9", 1);
    edited[target] = &changed;
    let (ok, out) = check(edited.join("\n") + "\n");
    assert!(
        !ok && out.contains(&format!(":{}:", target + 1)),
        "edit of line {} not named: {out}",
        target + 1
    );

    let mut deleted = lines.clone();
    deleted.remove(7);
    let (ok, out) = check(deleted.join("\n") + "\n");
    assert!(
        !ok && out.contains(":8:"),
        "deletion at line 8 not named: {out}"
    );

    let mut reordered = lines.clone();
    reordered.swap(3, 4);
    let (ok, out) = check(reordered.join("\n") + "\n");
    assert!(
        !ok && out.contains(":4:"),
        "reordering at line 4 not named: {out}"
    );

    // Cut inside the last group (before its signed checkpoint), and cut inside a line.
    let (ok, out) = check(lines[..lines.len() - 1].join("\n") + "\n");
    assert!(
        !ok && out.contains("checkpoint"),
        "truncation not found: {out}"
    );
    let (ok, out) = check(original[..original.len() - 10].to_string());
    assert!(
        !ok && out.contains("truncated"),
        "torn line not found: {out}"
    );

    let (ok, out) = verify(
        "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=",
        &vault.path("audit.log"),
    );
    assert!(
        !ok && out.contains("signature"),
        "a wrong key verified: {out}"
    );
}

#[test]
fn the_chain_continues_across_restarts() {
    let mut vault = TestVault::dev();
    vault.root("POST", "secret/data/a", Some(json!({"data": {"v": 1}})));
    vault.restart();
    vault.root("POST", "secret/data/b", Some(json!({"data": {"v": 2}})));
    let key = vault.root("GET", "sys/audit-public-key", None);
    let (ok, out) = verify(
        key.body["data"]["public_key"].as_str().unwrap(),
        &vault.path("audit.log"),
    );
    assert!(ok, "{out}");
}

#[test]
fn an_unwritable_only_sink_fails_closed_and_changes_nothing() {
    let mut vault = TestVault::production("");
    let shares = init(&mut vault, 1, 1);
    unseal(&vault, &shares);
    vault.root(
        "POST",
        "secret/data/k",
        Some(json!({"data": {"v": "before"}})),
    );
    // /dev/full accepts the open and fails every write with ENOSPC.
    vault.root(
        "PUT",
        "sys/audit/full",
        Some(json!({"type": "file", "options": {"file_path": "/dev/full"}})),
    );

    let write = vault.root(
        "POST",
        "secret/data/k",
        Some(json!({"data": {"v": "after"}})),
    );
    assert_eq!(write.status, 500, "{}", write.body);
    assert_eq!(write.error(), "audit log unavailable");
    let read = vault.root("GET", "secret/data/k", None);
    assert_eq!(read.status, 500);
    assert!(
        !read.body.to_string().contains("before"),
        "a secret was served unaudited"
    );
    vault.kill();

    // Look at the store directly: the refused write did not happen.
    let storage = Arc::new(SledStorage::open(&vault.path("store")).unwrap());
    let barrier = Arc::new(Barrier::new(storage));
    let seal = Seal::new(
        Arc::clone(&barrier),
        SealMechanism::Shamir,
        KeyringConfig::default(),
    );
    seal.submit_share(
        UnsealShare::parse(&shares[0]).unwrap(),
        None,
        Instant::now(),
    )
    .unwrap();
    let mount = barrier
        .get(&RecordId::new(RecordKind::Mount, MountId::SYSTEM, "secret/", 0).unwrap())
        .unwrap()
        .unwrap();
    let mount: Value = serde_json::from_slice(&mount.value).unwrap();
    let mount: MountId = mount["uuid"].as_str().unwrap().parse().unwrap();
    let metadata = barrier
        .get(&RecordId::new(RecordKind::SecretMetadata, mount, "k", 0).unwrap())
        .unwrap()
        .unwrap();
    let metadata: Value = serde_json::from_slice(&metadata.value).unwrap();
    assert_eq!(
        metadata["current_version"], 1,
        "the refused write was applied"
    );
}

#[test]
fn a_rotated_file_continues_the_chain() {
    let mut vault = TestVault::dev();
    vault.root("POST", "secret/data/a", Some(json!({"data": {"v": 1}})));
    vault.stop();
    std::fs::rename(vault.path("audit.log"), vault.path("audit.log.1")).unwrap();
    vault.restart();
    vault.root("POST", "secret/data/b", Some(json!({"data": {"v": 2}})));
    let key = vault.root("GET", "sys/audit-public-key", None);
    let key = key.body["data"]["public_key"].as_str().unwrap().to_string();
    let output = Command::new(env!("CARGO_BIN_EXE_vaultd"))
        .args(["audit", "verify", "--public-key", &key])
        .arg(vault.path("audit.log.1"))
        .arg(vault.path("audit.log"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stdout)
    );
    // Out of order, the files do not chain.
    let (ok, _) = verify(&key, &vault.path("audit.log"));
    assert!(ok, "a rotated file verifies on its own from its first line");
    let output = Command::new(env!("CARGO_BIN_EXE_vaultd"))
        .args(["audit", "verify", "--public-key", &key])
        .arg(vault.path("audit.log"))
        .arg(vault.path("audit.log.1"))
        .output()
        .unwrap();
    assert!(!output.status.success());
}
