//! Rotation through the API of the real daemon: policies, rotation on request and on the
//! schedule, the audit entries of every run, and the `rotate` capability.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::TestVault;

#[test]
fn a_generate_policy_rotates_on_request_and_on_schedule() {
    let vault = TestVault::dev();
    vault.root(
        "POST",
        "secret/data/openai/prod",
        Some(json!({"data": {"api_key": "sk-proj-old", "org": "acme"}})),
    );
    let set = vault.root("PUT", "sys/rotation/policy/secret/openai/prod", Some(json!({"method": "generate", "period": "1h", "field": "api_key", "prefix": "sk-proj-", "length": 40})));
    assert_eq!(set.status, 204, "{}", set.body);

    let run = vault.root("POST", "sys/rotation/rotate/secret/openai/prod", None);
    assert_eq!(run.status, 200, "{}", run.body);
    assert_eq!(
        run.body["data"],
        json!({"from_version": 1, "to_version": 2})
    );
    let read = vault.root("GET", "secret/data/openai/prod", None);
    let key = read.body["data"]["data"]["api_key"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(key.starts_with("sk-proj-") && key.len() == 48, "{key}");
    assert_eq!(read.body["data"]["data"]["org"], "acme");

    let status = vault.root("GET", "sys/rotation/policy/secret/openai/prod", None);
    assert_eq!(status.body["data"]["state"], "ok");
    assert_eq!(status.body["data"]["rotations"], 1);
    assert_eq!(status.body["data"]["period"], "1h0m0s");
    let list = vault.root("LIST", "sys/rotation/policy", None);
    assert_eq!(list.body["data"]["keys"], json!(["secret/openai/prod"]));

    // Every run is in the audit log, with the versions and never the new value.
    let log = std::fs::read_to_string(vault.path("audit.log")).unwrap();
    let runs: Vec<serde_json::Value> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|e| e["type"] == "rotation")
        .collect();
    assert_eq!(
        runs.iter()
            .map(|e| e["rotation"]["result"].as_str().unwrap())
            .collect::<Vec<_>>(),
        ["start", "ok"]
    );
    assert_eq!(runs[1]["rotation"]["to"], 2);
    assert!(!log.contains(&key), "the rotated value is in the audit log");

    // On a one-second schedule the daemon's own scheduler rotates it again.
    vault.root(
        "PUT",
        "sys/rotation/policy/secret/openai/prod",
        Some(json!({"method": "generate", "period": "1s", "field": "api_key"})),
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let version =
            vault.root("GET", "secret/metadata/openai/prod", None).body["data"]["current_version"]
                .as_u64()
                .unwrap();
        if version >= 4 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the scheduler did not rotate within 20 s (version {version})"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let metrics = vault.root("GET", "sys/metrics", None);
    assert_eq!(metrics.headers["content-type"], "text/plain; version=0.0.4");
}

#[test]
fn running_a_rotation_needs_the_rotate_capability() {
    let vault = TestVault::dev();
    vault.root(
        "POST",
        "secret/data/db",
        Some(json!({"data": {"password": "x"}})),
    );
    vault.root(
        "PUT",
        "sys/rotation/policy/secret/db",
        Some(json!({"method": "generate", "period": "1h", "field": "password"})),
    );
    vault.write_policy(
        "updater",
        r#"path "sys/rotation/rotate/*" { capabilities = ["update", "create", "sudo"] }"#,
    );
    vault.write_policy(
        "rotator",
        r#"path "sys/rotation/rotate/secret/*" { capabilities = ["rotate"] }"#,
    );
    let updater = vault.token_with_policies(&["updater"]);
    let rotator = vault.token_with_policies(&["rotator"]);
    assert_eq!(
        vault
            .call(
                "POST",
                "sys/rotation/rotate/secret/db",
                Some(&updater),
                None
            )
            .status,
        403
    );
    assert_eq!(
        vault
            .call(
                "POST",
                "sys/rotation/rotate/secret/db",
                Some(&rotator),
                None
            )
            .status,
        200
    );
}

#[test]
fn bad_policies_are_refused() {
    let vault = TestVault::dev();
    for (body, what) in [
        (json!({"period": "1h", "field": "k"}), "no method"),
        (
            json!({"method": "shuffle", "period": "1h", "field": "k"}),
            "unknown method",
        ),
        (json!({"method": "generate", "field": "k"}), "no period"),
        (
            json!({"method": "generate", "period": "500ms", "field": "k"}),
            "period under a second",
        ),
        (json!({"method": "generate", "period": "1h"}), "no field"),
        (
            json!({"method": "generate", "period": "1h", "field": "k", "length": 4}),
            "too short",
        ),
        (
            json!({"method": "generate", "period": "1h", "field": "k", "alphabet": "ab"}),
            "tiny alphabet",
        ),
        (
            json!({"method": "command", "period": "1h", "field": "k", "rotator": "x"}),
            "command rotators are not built",
        ),
    ] {
        let reply = vault.root("PUT", "sys/rotation/policy/secret/x", Some(body));
        assert_eq!(reply.status, 400, "{what}: {}", reply.body);
    }
    let reply = vault.root(
        "PUT",
        "sys/rotation/policy/nomount/x",
        Some(json!({"method": "manual", "period": "1h"})),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(vault.root("LIST", "sys/rotation/policy", None).status, 404);
}

/// The keyring rotates every second while the daemon is killed with SIGKILL at random
/// moments (before, during and after adding a term, recording it, and rewrapping): every
/// acknowledged secret stays readable after each restart, and the schedule goes on.
#[test]
fn keyring_rotation_survives_sigkill_at_random_moments() {
    let kills: u64 = std::env::var("VAULTD_KEYRING_KILLS")
        .ok()
        .and_then(|k| k.parse().ok())
        .unwrap_or(40);
    let keys = tempfile::tempdir().unwrap();
    let extra = format!(
        "[seal]\ntype = \"keyfile\"\nkey_file = \"{}\"\n",
        keys.path().join("unseal.key").display()
    );
    let mut vault = TestVault::production(&extra);
    crate::support::init(&mut vault, 1, 1);
    let config = vault.root(
        "POST",
        "sys/rotate/config",
        Some(json!({"enabled": true, "interval": "1s"})),
    );
    assert_eq!(config.status, 204, "{}", config.body);

    let mut seed = 0x2545_f491_4f6c_dd1du64 ^ u64::from(std::process::id());
    let mut written = Vec::new();
    let mut highest_term = 1;
    for round in 0..kills {
        // A few acknowledged writes, then a kill at a random moment up to 1.5 s later.
        for i in 0..3 {
            let path = format!("k/{round}-{i}");
            let reply = vault.root(
                "POST",
                &format!("secret/data/{path}"),
                Some(json!({"data": {"v": path}})),
            );
            assert_eq!(reply.status, 200, "{}", reply.body);
            written.push(path);
        }
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        std::thread::sleep(Duration::from_millis(100 + seed % 1400));
        vault.kill();
        vault.restart();

        for path in &written {
            let read = vault.root("GET", &format!("secret/data/{path}"), None);
            assert_eq!(
                read.status, 200,
                "round {round}: {path} unreadable: {}",
                read.body
            );
            assert_eq!(read.body["data"]["data"]["v"], path.as_str());
        }
        let status = vault.root("GET", "sys/key-status", None);
        let term = status.body["data"]["term"].as_u64().unwrap();
        assert!(
            term >= highest_term,
            "round {round}: the active term went back from {highest_term} to {term}"
        );
        highest_term = term;
    }
    // The schedule survived the restarts: the term keeps rising.
    let deadline = Instant::now() + Duration::from_secs(20);
    while vault.root("GET", "sys/key-status", None).body["data"]["term"]
        .as_u64()
        .unwrap()
        <= highest_term
    {
        assert!(
            Instant::now() < deadline,
            "the keyring stopped rotating after the restarts"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}
