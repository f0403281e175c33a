//! Regression tests, each named for what broke.

use serde_json::json;

use crate::support::TestVault;

fn create(vault: &TestVault, token: &str, body: serde_json::Value) -> crate::support::Reply {
    vault.call("POST", "auth/token/create", Some(token), Some(body))
}

#[test]
fn a_limited_use_token_cannot_mint_an_unlimited_child() {
    let vault = TestVault::dev();
    vault.write_policy(
        "minter",
        r#"path "auth/token/create" { capabilities = ["update"] }"#,
    );
    let limited = vault.root(
        "POST",
        "auth/token/create",
        Some(json!({"policies": ["minter"], "num_uses": 1})),
    );
    let limited = limited.body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let child = create(&vault, &limited, json!({}));
    assert_eq!(child.status, 400, "{}", child.body);
    assert!(child.body["auth"].is_null());
}

#[test]
fn a_trailing_slash_does_not_dodge_an_exact_deny() {
    let vault = TestVault::dev();
    vault.write_policy("admin", r#"path "secret/*" { capabilities = ["read"] }"#);
    vault.write_policy(
        "policy-editor",
        r#"
        path "sys/policies/acl/*" { capabilities = ["create", "update", "read"] }
        path "sys/policies/acl/admin" { capabilities = ["deny"] }
        "#,
    );
    let editor = vault.token_with_policies(&["policy-editor"]);
    let body = json!({"policy": r#"path "*" { capabilities = ["sudo", "read", "update", "create", "delete", "list"] }"#});
    for path in ["sys/policies/acl/admin", "sys/policies/acl/admin/"] {
        let reply = vault.call("PUT", path, Some(&editor), Some(body.clone()));
        assert_eq!(reply.status, 403, "{path}: {}", reply.body);
    }
    // Folded names are refused rather than mapped onto the denied one.
    let upper = vault.call(
        "PUT",
        "sys/policies/acl/ADMIN",
        Some(&editor),
        Some(body.clone()),
    );
    assert_eq!(upper.status, 400, "{}", upper.body);
    let spaced = vault.call(
        "PUT",
        "sys/policies/acl/admin%20",
        Some(&editor),
        Some(body),
    );
    assert_eq!(spaced.status, 400, "{}", spaced.body);
    let admin = vault.root("GET", "sys/policies/acl/admin", None);
    assert!(
        admin.body["data"]["policy"]
            .as_str()
            .unwrap()
            .contains("secret/*"),
        "the admin policy was overwritten"
    );
}

#[test]
fn renewal_never_outlives_the_parent_or_overflows() {
    let vault = TestVault::dev();
    vault.write_policy(
        "minter",
        r#"path "auth/token/create" { capabilities = ["update"] }"#,
    );
    let parent = vault.root(
        "POST",
        "auth/token/create",
        Some(json!({"policies": ["minter"], "ttl": "1h"})),
    );
    let parent = parent.body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let child = create(&vault, &parent, json!({"ttl": "30m"}));
    let child = child.body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let renewed = vault.call(
        "POST",
        "auth/token/renew-self",
        Some(&child),
        Some(json!({"increment": "87600h"})),
    );
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    assert!(
        renewed.body["auth"]["lease_duration"].as_u64().unwrap() <= 3600,
        "{}",
        renewed.body
    );

    let huge = vault.call(
        "POST",
        "auth/token/renew-self",
        Some(&child),
        Some(json!({"increment": "100000000h"})),
    );
    assert_eq!(huge.status, 400, "{}", huge.body);
    assert_eq!(
        vault
            .call("GET", "auth/token/lookup-self", Some(&child), None)
            .status,
        200
    );
    let forever = vault.root(
        "POST",
        "auth/token/create",
        Some(json!({"ttl": "18446744073709551615"})),
    );
    assert_eq!(forever.status, 400, "{}", forever.body);
    let meta = vault.root(
        "POST",
        "secret/metadata/x",
        Some(json!({"delete_version_after": "18446744073709551615"})),
    );
    assert_eq!(meta.status, 400, "{}", meta.body);
    assert_eq!(
        vault
            .root("POST", "secret/data/x", Some(json!({"data": {"a": "b"}})))
            .status,
        200
    );
}

#[test]
fn a_zero_ttl_means_the_default_not_forever() {
    let vault = TestVault::dev();
    let token = vault.root("POST", "auth/token/create", Some(json!({"ttl": 0})));
    assert_eq!(
        token.body["auth"]["lease_duration"],
        768 * 3600,
        "{}",
        token.body
    );
}

#[test]
fn a_limited_use_token_can_renew_itself() {
    let vault = TestVault::dev();
    let token = vault.root(
        "POST",
        "auth/token/create",
        Some(json!({"num_uses": 3, "ttl": "1h"})),
    );
    let token = token.body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let renewed = vault.call(
        "POST",
        "auth/token/renew-self",
        Some(&token),
        Some(json!({"increment": "2h"})),
    );
    assert_eq!(renewed.status, 200, "{}", renewed.body);
}

#[test]
fn numbers_and_booleans_are_not_audited_in_the_clear() {
    let vault = TestVault::dev();
    assert_eq!(
        vault
            .root(
                "POST",
                "secret/data/pin",
                Some(json!({"data": {"pin": 987654321, "armed": true}}))
            )
            .status,
        200
    );
    assert_eq!(vault.root("GET", "secret/data/pin", None).status, 200);
    let log = std::fs::read_to_string(vault.path("audit.log")).unwrap();
    assert!(
        !log.contains("987654321"),
        "a numeric secret is in the audit log in the clear"
    );
}

#[test]
fn max_versions_is_bounded_so_metadata_fits_a_record() {
    let vault = TestVault::dev();
    let reply = vault.root(
        "POST",
        "secret/metadata/many",
        Some(json!({"max_versions": 100000})),
    );
    assert_eq!(reply.status, 400, "{}", reply.body);
    assert_eq!(
        vault
            .root(
                "POST",
                "secret/config",
                Some(json!({"max_versions": 100000}))
            )
            .status,
        400
    );
    assert_eq!(
        vault
            .root(
                "POST",
                "secret/metadata/many",
                Some(json!({"max_versions": 200}))
            )
            .status,
        204
    );
}

#[test]
fn patch_respects_cas_required() {
    let vault = TestVault::dev();
    vault.root(
        "POST",
        "secret/data/guarded",
        Some(json!({"data": {"a": "1"}})),
    );
    vault.root(
        "POST",
        "secret/metadata/guarded",
        Some(json!({"cas_required": true})),
    );
    let patch = vault.call_with_content_type(
        "PATCH",
        "secret/data/guarded",
        &vault.root_token,
        json!({"data": {"a": "2"}}),
        "application/merge-patch+json",
    );
    assert_eq!(patch.status, 400, "{}", patch.body);
    let with_cas = vault.call_with_content_type(
        "PATCH",
        "secret/data/guarded",
        &vault.root_token,
        json!({"data": {"a": "2"}, "options": {"cas": 1}}),
        "application/merge-patch+json",
    );
    assert_eq!(with_cas.status, 200, "{}", with_cas.body);
}

#[test]
fn audit_hash_needs_sudo() {
    let vault = TestVault::dev();
    vault.write_policy(
        "hasher",
        r#"path "sys/audit-hash/*" { capabilities = ["update"] }"#,
    );
    let token = vault.token_with_policies(&["hasher"]);
    let reply = vault.call(
        "PUT",
        "sys/audit-hash/file",
        Some(&token),
        Some(json!({"input": "guess"})),
    );
    assert_eq!(reply.status, 403, "{}", reply.body);
}
