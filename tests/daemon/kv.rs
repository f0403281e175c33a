//! KV version 2 over the API, as Vault documents it.

use serde_json::json;

use crate::support::TestVault;

fn is_rfc3339_nanos(value: &serde_json::Value) -> bool {
    let text = value.as_str().unwrap_or_default();
    text.len() == 30 && text.ends_with('Z') && text.as_bytes()[19] == b'.'
}

#[test]
fn versions_check_and_set_and_metadata() {
    let vault = TestVault::dev();
    let first = vault.root(
        "POST",
        "secret/data/app/db",
        Some(json!({"data": {"user": "app", "password": "p1"}})),
    );
    assert_eq!(first.status, 200, "{}", first.body);
    assert_eq!(first.body["data"]["version"], 1);
    assert!(
        is_rfc3339_nanos(&first.body["data"]["created_time"]),
        "{}",
        first.body
    );
    assert_eq!(first.body["data"]["deletion_time"], "");

    // Check-and-set: 0 means "must not exist"; a stale version is refused and changes nothing.
    let refused = vault.root(
        "POST",
        "secret/data/app/db",
        Some(json!({"data": {"password": "x"}, "options": {"cas": 0}})),
    );
    assert_eq!(refused.status, 400);
    assert!(
        refused.error().contains("check-and-set"),
        "{}",
        refused.body
    );
    let second = vault.root(
        "POST",
        "secret/data/app/db",
        Some(json!({"data": {"user": "app", "password": "p2"}, "options": {"cas": "1"}})),
    );
    assert_eq!(second.body["data"]["version"], 2, "{}", second.body);

    let latest = vault.root("GET", "secret/data/app/db", None);
    assert_eq!(latest.body["data"]["data"]["password"], "p2");
    assert_eq!(latest.body["data"]["metadata"]["version"], 2);
    let old = vault.root("GET", "secret/data/app/db?version=1", None);
    assert_eq!(old.body["data"]["data"]["password"], "p1");

    let patched = vault.call_with_content_type(
        "PATCH",
        "secret/data/app/db",
        &vault.root_token,
        json!({"data": {"password": "p3"}}),
        "application/merge-patch+json",
    );
    assert_eq!(patched.status, 200, "{}", patched.body);
    let latest = vault.root("GET", "secret/data/app/db", None);
    assert_eq!(
        latest.body["data"]["data"],
        json!({"user": "app", "password": "p3"})
    );

    let metadata = vault.root("GET", "secret/metadata/app/db", None);
    let data = &metadata.body["data"];
    assert_eq!(data["current_version"], 3);
    assert_eq!(
        data["oldest_version"], 0,
        "0 until versions are pruned, as in Vault"
    );
    assert_eq!(data["max_versions"], 0);
    assert_eq!(data["delete_version_after"], "0s");
    assert_eq!(data["cas_required"], false);
    assert_eq!(data["versions"].as_object().unwrap().len(), 3);

    // Lenient input: numbers as strings; unknown fields come back as warnings.
    let updated = vault.root("POST", "secret/metadata/app/db", Some(json!({"max_versions": "2", "custom_metadata": {"provider": "openai"}, "colour": "blue"})));
    assert_eq!(updated.status, 200, "{}", updated.body);
    assert!(
        updated.body["warnings"][0]
            .as_str()
            .unwrap()
            .contains("colour"),
        "{}",
        updated.body
    );
    let metadata = vault.root("GET", "secret/metadata/app/db", None);
    assert_eq!(metadata.body["data"]["max_versions"], 2);
    assert_eq!(
        metadata.body["data"]["custom_metadata"]["provider"],
        "openai"
    );
    assert_eq!(
        metadata.body["data"]["versions"].as_object().unwrap().len(),
        2,
        "pruned to max_versions"
    );
    assert_eq!(
        vault
            .root("GET", "secret/data/app/db?version=1", None)
            .status,
        404
    );
}

#[test]
fn delete_undelete_destroy() {
    let vault = TestVault::dev();
    for value in ["a", "b"] {
        vault.root("POST", "secret/data/k", Some(json!({"data": {"v": value}})));
    }
    assert_eq!(vault.root("DELETE", "secret/data/k", None).status, 204);
    let deleted = vault.root("GET", "secret/data/k", None);
    assert_eq!(deleted.status, 404);
    assert_eq!(deleted.body["data"]["data"], json!(null));
    assert!(
        is_rfc3339_nanos(&deleted.body["data"]["metadata"]["deletion_time"]),
        "{}",
        deleted.body
    );
    assert_eq!(deleted.body["data"]["metadata"]["version"], 2);

    assert_eq!(
        vault
            .root("POST", "secret/undelete/k", Some(json!({"versions": [2]})))
            .status,
        204
    );
    assert_eq!(
        vault.root("GET", "secret/data/k", None).body["data"]["data"]["v"],
        "b"
    );

    assert_eq!(
        vault
            .root("POST", "secret/delete/k", Some(json!({"versions": [1]})))
            .status,
        204
    );
    assert_eq!(
        vault.root("GET", "secret/data/k?version=1", None).status,
        404
    );
    assert_eq!(
        vault
            .root("PUT", "secret/destroy/k", Some(json!({"versions": "1"})))
            .status,
        204
    );
    let destroyed = vault.root("GET", "secret/data/k?version=1", None);
    assert_eq!(destroyed.status, 404);
    assert_eq!(destroyed.body["data"]["metadata"]["destroyed"], true);
    // A destroyed version cannot come back.
    vault.root("POST", "secret/undelete/k", Some(json!({"versions": [1]})));
    assert_eq!(
        vault.root("GET", "secret/data/k?version=1", None).status,
        404
    );

    assert_eq!(vault.root("DELETE", "secret/metadata/k", None).status, 204);
    assert_eq!(vault.root("GET", "secret/metadata/k", None).status, 404);
    assert_eq!(vault.root("GET", "secret/data/k", None).status, 404);
}

#[test]
fn listing_and_subkeys() {
    let vault = TestVault::dev();
    for path in ["team/a", "team/b/c", "team/b/d", "other"] {
        vault.root(
            "POST",
            &format!("secret/data/{path}"),
            Some(json!({"data": {"k": {"nested": 1}, "x": 2}})),
        );
    }
    let list = vault.root("LIST", "secret/metadata/team/", None);
    assert_eq!(list.body["data"]["keys"], json!(["a", "b/"]));
    let list = vault.root("GET", "secret/metadata/?list=true", None);
    assert_eq!(list.body["data"]["keys"], json!(["other", "team/"]));
    assert_eq!(
        vault.root("LIST", "secret/metadata/none/", None).status,
        404
    );

    let subkeys = vault.root("GET", "secret/subkeys/team/a", None);
    assert_eq!(
        subkeys.body["data"]["subkeys"],
        json!({"k": {"nested": null}, "x": null})
    );
}

#[test]
fn mounts_at_any_path() {
    let vault = TestVault::dev();
    let mounted = vault.root(
        "POST",
        "sys/mounts/team-kv",
        Some(
            json!({"type": "kv", "options": {"version": "2"}, "local": false, "seal_wrap": false}),
        ),
    );
    // 204: hvac's fixed fields (local, seal_wrap, …) are known, so there is no warning to send.
    assert_eq!(mounted.status, 204, "{}", mounted.body);
    assert_eq!(
        vault
            .root("POST", "team-kv/data/x", Some(json!({"data": {"a": "b"}})))
            .status,
        200
    );
    let mounts = vault.root("GET", "sys/mounts", None);
    assert_eq!(mounts.body["data"]["team-kv/"]["type"], "kv");
    assert_eq!(mounts.body["data"]["team-kv/"]["options"]["version"], "2");
    let preflight = vault.root("GET", "sys/internal/ui/mounts/team-kv/data/x", None);
    assert_eq!(preflight.body["data"]["path"], "team-kv/");
    assert_eq!(
        vault
            .root("POST", "sys/mounts/v1kv", Some(json!({"type": "kv"})))
            .status,
        400
    );
    assert_eq!(
        vault
            .root("POST", "sys/mounts/sys/x", Some(json!({"type": "kv-v2"})))
            .status,
        400
    );
    assert_eq!(
        vault
            .root("POST", "sys/mounts/team-kv", Some(json!({"type": "kv-v2"})))
            .status,
        400
    );

    // A new mount at the old path does not see the old records.
    assert_eq!(vault.root("DELETE", "sys/mounts/team-kv", None).status, 204);
    vault.root("POST", "sys/mounts/team-kv", Some(json!({"type": "kv-v2"})));
    assert_eq!(vault.root("GET", "team-kv/data/x", None).status, 404);
}
