//! Transit over the API: round trips, rotation and rewrap, and refusals that reveal nothing.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use serde_json::json;

use crate::support::TestVault;

fn encrypt(vault: &TestVault, key: &str, body: serde_json::Value) -> String {
    let reply = vault.root("POST", &format!("transit/encrypt/{key}"), Some(body));
    assert_eq!(reply.status, 200, "{}", reply.body);
    reply.body["data"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn decryption_refusals_return_400_and_no_plaintext() {
    let vault = TestVault::dev();
    let secret = BASE64.encode(b"the launch codes");
    vault.root("POST", "transit/keys/app", Some(json!({})));
    let v1 = encrypt(
        &vault,
        "app",
        json!({"plaintext": secret, "associated_data": BASE64.encode(b"tenant-1")}),
    );
    assert!(v1.starts_with("vault:v1:"));

    // Wrong associated data, a flipped bit, a forged version: 400 and no plaintext.
    let tampered = {
        let body = v1.trim_start_matches("vault:v1:");
        let mut bytes = BASE64.decode(body).unwrap();
        bytes[14] ^= 1;
        format!("vault:v1:{}", BASE64.encode(bytes))
    };
    for (ciphertext, aad, what) in [
        (v1.clone(), "tenant-2", "wrong associated data"),
        (tampered, "tenant-1", "tampered ciphertext"),
        (
            v1.replace("vault:v1:", "vault:v7:"),
            "tenant-1",
            "unknown version",
        ),
        ("vault:v1:not-base64!".to_string(), "tenant-1", "bad base64"),
    ] {
        let reply = vault.root(
            "POST",
            "transit/decrypt/app",
            Some(json!({"ciphertext": ciphertext, "associated_data": BASE64.encode(aad)})),
        );
        assert_eq!(reply.status, 400, "{what}: {}", reply.body);
        assert!(
            reply.body.get("data").is_none() || reply.body["data"].is_null(),
            "{what}: {}",
            reply.body
        );
    }

    // Rotate, rewrap, then refuse version 1 once it is below min_decryption_version.
    vault.root("POST", "transit/keys/app/rotate", None);
    let rewrapped = vault.root(
        "POST",
        "transit/rewrap/app",
        Some(json!({"ciphertext": v1, "associated_data": BASE64.encode(b"tenant-1")})),
    );
    let v2 = rewrapped.body["data"]["ciphertext"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(v2.starts_with("vault:v2:"), "{}", rewrapped.body);
    let config = vault.root(
        "POST",
        "transit/keys/app/config",
        Some(json!({"min_decryption_version": 2})),
    );
    assert_eq!(config.status, 200, "{}", config.body);
    let old = vault.root(
        "POST",
        "transit/decrypt/app",
        Some(json!({"ciphertext": v1, "associated_data": BASE64.encode(b"tenant-1")})),
    );
    assert_eq!(old.status, 400, "{}", old.body);
    let new = vault.root(
        "POST",
        "transit/decrypt/app",
        Some(json!({"ciphertext": v2, "associated_data": BASE64.encode(b"tenant-1")})),
    );
    assert_eq!(new.body["data"]["plaintext"], secret);
}

#[test]
fn derived_keys_need_the_same_context() {
    let vault = TestVault::dev();
    vault.root(
        "POST",
        "transit/keys/per-user",
        Some(json!({"derived": true, "type": "chacha20-poly1305"})),
    );
    let alice = BASE64.encode(b"alice");
    let ciphertext = encrypt(
        &vault,
        "per-user",
        json!({"plaintext": BASE64.encode(b"x"), "context": alice}),
    );
    let no_context = vault.root(
        "POST",
        "transit/encrypt/per-user",
        Some(json!({"plaintext": BASE64.encode(b"x")})),
    );
    assert_eq!(no_context.status, 400);
    let bob = vault.root(
        "POST",
        "transit/decrypt/per-user",
        Some(json!({"ciphertext": ciphertext, "context": BASE64.encode(b"bob")})),
    );
    assert_eq!(bob.status, 400);
    let right = vault.root(
        "POST",
        "transit/decrypt/per-user",
        Some(json!({"ciphertext": ciphertext, "context": alice})),
    );
    assert_eq!(right.body["data"]["plaintext"], BASE64.encode(b"x"));
}

#[test]
fn keys_never_leave_and_survive_a_restart() {
    let mut vault = TestVault::dev();
    vault.root(
        "POST",
        "transit/keys/app",
        Some(json!({"type": "aes256-gcm96"})),
    );
    let ciphertext = encrypt(
        &vault,
        "app",
        json!({"plaintext": BASE64.encode(b"persisted")}),
    );
    let key = vault.root("GET", "transit/keys/app", None);
    assert_eq!(key.body["data"]["type"], "aes256-gcm96");
    assert!(key.body["data"]["keys"]["1"].is_u64(), "{}", key.body);
    vault.restart();
    let reply = vault.root(
        "POST",
        "transit/decrypt/app",
        Some(json!({"ciphertext": ciphertext})),
    );
    assert_eq!(reply.body["data"]["plaintext"], BASE64.encode(b"persisted"));
    assert_eq!(
        vault.root("DELETE", "transit/keys/app", None).status,
        400,
        "deleted without deletion_allowed"
    );
    vault.root(
        "POST",
        "transit/keys/app/config",
        Some(json!({"deletion_allowed": true})),
    );
    assert_eq!(vault.root("DELETE", "transit/keys/app", None).status, 204);
    assert_eq!(
        vault
            .root(
                "POST",
                "transit/decrypt/app",
                Some(json!({"ciphertext": ciphertext}))
            )
            .status,
        400
    );
}

#[test]
fn a_key_version_at_its_encryption_limit_is_rotated_and_counts_survive_restarts() {
    let keys = tempfile::tempdir().unwrap();
    let mut vault = TestVault::production(&format!(
        "[seal]\ntype = \"keyfile\"\nkey_file = \"{}\"\n\n[crypto]\ntransit_encryptions_per_key_version = 10\n",
        keys.path().join("unseal.key").display()
    ));
    crate::support::init(&mut vault, 1, 1);
    vault.root("POST", "transit/keys/counted", Some(json!({})));
    let version_of = |vault: &TestVault, body: serde_json::Value| {
        let ciphertext = encrypt(vault, "counted", body);
        ciphertext.split(':').nth(1).unwrap().to_string()
    };
    let one = json!({"plaintext": BASE64.encode(b"x")});
    for _ in 0..6 {
        assert_eq!(version_of(&vault, one.clone()), "v1");
    }
    // The count survives a restart: four more, not ten, fit in version 1. (With a limit
    // this small a reserved block is one encryption, so a restart over-counts nothing.)
    vault.restart();
    for _ in 0..4 {
        assert_eq!(version_of(&vault, one.clone()), "v1");
    }
    assert_eq!(
        vault.root("GET", "transit/keys/counted", None).body["data"]["latest_version"],
        1
    );
    // The eleventh encryption rotates the key first.
    assert_eq!(version_of(&vault, one.clone()), "v2");
    assert_eq!(
        vault.root("GET", "transit/keys/counted", None).body["data"]["latest_version"],
        2
    );
    // Version 1 can still decrypt but no longer encrypt, even when asked for by number.
    let pinned = vault.root(
        "POST",
        "transit/encrypt/counted",
        Some(json!({"plaintext": BASE64.encode(b"x"), "key_version": 1})),
    );
    assert_eq!(pinned.status, 400, "{}", pinned.body);
    // A batch counts every item: nine more fit in version 2, the next batch rotates.
    let batch = |n: usize| json!({"batch_input": vec![one.clone(); n]});
    let reply = vault.root("POST", "transit/encrypt/counted", Some(batch(9)));
    assert_eq!(reply.status, 200, "{}", reply.body);
    let reply = vault.root("POST", "transit/encrypt/counted", Some(batch(5)));
    let results = reply.body["data"]["batch_results"].as_array().unwrap();
    assert!(
        results
            .iter()
            .all(|r| r["ciphertext"].as_str().unwrap().starts_with("vault:v3:")),
        "{}",
        reply.body
    );
    // A batch larger than the limit cannot fit in any version.
    let reply = vault.root("POST", "transit/encrypt/counted", Some(batch(11)));
    assert_eq!(reply.status, 400, "{}", reply.body);
}

/// `material` wrapped for import under the PEM wrapping key `pem`, as a Vault client wraps it.
fn wrap_for_import(pem: &str, material: &[u8]) -> String {
    use aws_lc_rs::key_wrap::{AES_256, AesKek, KeyWrapPadded as _};
    use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPublicEncryptingKey, PublicEncryptingKey};

    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let der = BASE64.decode(body).unwrap();
    let public =
        OaepPublicEncryptingKey::new(PublicEncryptingKey::from_der(&der).unwrap()).unwrap();
    let aes_key = [0x5a; 32];
    let mut wrapped_aes_key = vec![0; public.ciphertext_size()];
    let wrapped_aes_key = public
        .encrypt(
            &OAEP_SHA256_MGF1SHA256,
            &aes_key,
            &mut wrapped_aes_key,
            None,
        )
        .unwrap()
        .to_vec();
    let mut wrapped = vec![0; material.len() + 16];
    let wrapped = AesKek::new(&AES_256, &aes_key)
        .unwrap()
        .wrap_with_padding(material, &mut wrapped)
        .unwrap();
    BASE64.encode([wrapped_aes_key, wrapped.to_vec()].concat())
}

#[test]
fn an_imported_key_at_its_limit_refuses_until_a_new_version_is_imported() {
    let keys = tempfile::tempdir().unwrap();
    let mut vault = TestVault::production(&format!(
        "[seal]\ntype = \"keyfile\"\nkey_file = \"{}\"\n\n[crypto]\ntransit_encryptions_per_key_version = 3\n",
        keys.path().join("unseal.key").display()
    ));
    crate::support::init(&mut vault, 1, 1);
    let pem = |vault: &TestVault| {
        vault.root("GET", "transit/wrapping_key", None).body["data"]["public_key"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let wrapping = pem(&vault);
    let import = vault.root(
        "POST",
        "transit/keys/byok/import",
        Some(json!({"ciphertext": wrap_for_import(&wrapping, &[1; 32])})),
    );
    assert_eq!(import.status, 204, "{}", import.body);

    let one = json!({"plaintext": BASE64.encode(b"x")});
    let first: Vec<String> = (0..3)
        .map(|_| encrypt(&vault, "byok", one.clone()))
        .collect();
    // An imported key may not be rotated by the vault, so the fourth encryption is refused.
    let refused = vault.root("POST", "transit/encrypt/byok", Some(one.clone()));
    assert_eq!(refused.status, 400, "{}", refused.body);
    assert!(
        refused.error().contains("import a new version"),
        "{}",
        refused.body
    );

    // The wrapping key survives a restart, and a new imported version takes the encryptions.
    vault.restart();
    assert_eq!(pem(&vault), wrapping);
    let version = vault.root(
        "POST",
        "transit/keys/byok/import_version",
        Some(json!({"ciphertext": wrap_for_import(&wrapping, &[2; 32])})),
    );
    assert_eq!(version.status, 204, "{}", version.body);
    assert!(encrypt(&vault, "byok", one.clone()).starts_with("vault:v2:"));
    for ciphertext in first {
        let reply = vault.root(
            "POST",
            "transit/decrypt/byok",
            Some(json!({"ciphertext": ciphertext})),
        );
        assert_eq!(reply.body["data"]["plaintext"], BASE64.encode(b"x"));
    }
}

#[test]
fn a_restored_key_with_a_huge_version_number_is_handled_in_proportion() {
    let vault = TestVault::dev();
    // One entry, numbered near the top of the range: nothing may walk the versions below.
    let key = BASE64.encode([7u8; 32]);
    let backup = json!({"policy": {
        "name": "far", "type": 0, "exportable": true, "allow_plaintext_backup": true,
        "latest_version": 4_000_000_000u32, "min_available_version": 4_000_000_000u32,
        "min_decryption_version": 4_000_000_000u32, "min_encryption_version": 4_000_000_000u32,
        "keys": {"4000000000": {"key": key, "hmac_key": key, "creation_time": 1}},
    }});
    let text = BASE64.encode(serde_json::to_vec(&backup).unwrap());
    for force in [false, true] {
        let reply = vault.root(
            "POST",
            "transit/restore",
            Some(json!({"backup": text, "force": force})),
        );
        assert_eq!(reply.status, 204, "{}", reply.body);
    }
    let ciphertext = encrypt(&vault, "far", json!({"plaintext": BASE64.encode(b"x")}));
    assert!(ciphertext.starts_with("vault:v4000000000:"), "{ciphertext}");
    let backup = vault.root("GET", "transit/backup/far", None);
    assert!(backup.body["data"]["backup"].is_string(), "{}", backup.body);
    vault.root(
        "POST",
        "transit/keys/far/config",
        Some(json!({"deletion_allowed": true})),
    );
    assert_eq!(vault.root("DELETE", "transit/keys/far", None).status, 204);
}
