//! Every route and method, while sealed, without a token, and with a token whose policy does
//! not grant it: 503, 403 and 403, never a success and never a server error.

use serde_json::{Value, json};

use crate::support::{TestVault, init, unseal};

/// The routes that answer without a token, and so also while sealed.
const UNAUTHENTICATED: [&str; 5] = [
    "sys/init",
    "sys/seal-status",
    "sys/unseal",
    "sys/health",
    "sys/leader",
];

/// Routes the `default` policy grants to every token.
const DEFAULT_POLICY: [&str; 3] = [
    "auth/token/lookup-self",
    "auth/token/renew-self",
    "auth/token/revoke-self",
];

/// Every route of the router, each with each method it takes.
fn routes() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "sys/mounts", None),
        ("GET", "sys/mounts/secret", None),
        (
            "POST",
            "sys/mounts/other",
            Some(json!({"type": "kv", "options": {"version": "2"}})),
        ),
        ("DELETE", "sys/mounts/secret", None),
        ("GET", "sys/internal/ui/mounts/secret", None),
        ("LIST", "sys/policies/acl", None),
        ("GET", "sys/policies/acl/default", None),
        (
            "PUT",
            "sys/policies/acl/p",
            Some(json!({"policy": "path \"x\" { capabilities = [\"read\"] }"})),
        ),
        ("DELETE", "sys/policies/acl/p", None),
        ("GET", "sys/policy", None),
        ("GET", "sys/policy/default", None),
        (
            "PUT",
            "sys/policy/p",
            Some(json!({"policy": "path \"x\" { capabilities = [\"read\"] }"})),
        ),
        ("DELETE", "sys/policy/p", None),
        ("GET", "sys/audit", None),
        (
            "PUT",
            "sys/audit/other",
            Some(json!({"type": "file", "options": {"file_path": "/tmp/vaultd-sweep.log"}})),
        ),
        ("DELETE", "sys/audit/other", None),
        ("PUT", "sys/audit-hash/file", Some(json!({"input": "x"}))),
        ("GET", "sys/audit-public-key", None),
        ("GET", "sys/key-status", None),
        ("PUT", "sys/rotate", None),
        ("PUT", "sys/seal", None),
        ("POST", "auth/token/create", Some(json!({}))),
        ("POST", "auth/token/create-orphan", Some(json!({}))),
        ("POST", "auth/token/lookup", Some(json!({"token": "vdt_x"}))),
        (
            "POST",
            "auth/token/lookup-accessor",
            Some(json!({"accessor": "x"})),
        ),
        ("POST", "auth/token/renew", Some(json!({"token": "vdt_x"}))),
        ("POST", "auth/token/revoke", Some(json!({"token": "vdt_x"}))),
        (
            "POST",
            "auth/token/revoke-accessor",
            Some(json!({"accessor": "x"})),
        ),
        ("GET", "secret/data/app", None),
        ("POST", "secret/data/app", Some(json!({"data": {"k": "v"}}))),
        (
            "PATCH",
            "secret/data/app",
            Some(json!({"data": {"k": "v"}})),
        ),
        ("DELETE", "secret/data/app", None),
        ("GET", "secret/metadata/app", None),
        (
            "POST",
            "secret/metadata/app",
            Some(json!({"max_versions": 3})),
        ),
        (
            "PATCH",
            "secret/metadata/app",
            Some(json!({"max_versions": 3})),
        ),
        ("DELETE", "secret/metadata/app", None),
        ("LIST", "secret/metadata/", None),
        ("POST", "secret/delete/app", Some(json!({"versions": [1]}))),
        (
            "POST",
            "secret/undelete/app",
            Some(json!({"versions": [1]})),
        ),
        ("POST", "secret/destroy/app", Some(json!({"versions": [1]}))),
        ("GET", "secret/subkeys/app", None),
        ("GET", "secret/config", None),
        ("LIST", "sys/rotation/policy", None),
        ("GET", "sys/rotation/policy/secret/app", None),
        (
            "PUT",
            "sys/rotation/policy/secret/app",
            Some(json!({"method": "generate", "period": "1h", "field": "k"})),
        ),
        ("DELETE", "sys/rotation/policy/secret/app", None),
        ("POST", "sys/rotation/rotate/secret/app", None),
        ("GET", "sys/rotate/config", None),
        ("POST", "sys/rotate/config", Some(json!({"enabled": false}))),
        ("GET", "sys/metrics", None),
        ("LIST", "transit/keys", None),
        ("POST", "transit/keys/k", Some(json!({}))),
        ("GET", "transit/keys/k", None),
        ("DELETE", "transit/keys/k", None),
        (
            "POST",
            "transit/keys/k/config",
            Some(json!({"deletion_allowed": true})),
        ),
        ("POST", "transit/keys/k/rotate", None),
        (
            "POST",
            "transit/keys/k/trim",
            Some(json!({"min_available_version": 1})),
        ),
        (
            "POST",
            "transit/encrypt/k",
            Some(json!({"plaintext": "aGk="})),
        ),
        (
            "POST",
            "transit/decrypt/k",
            Some(json!({"ciphertext": "vault:v1:AAAA"})),
        ),
        (
            "POST",
            "transit/rewrap/k",
            Some(json!({"ciphertext": "vault:v1:AAAA"})),
        ),
        ("POST", "transit/datakey/plaintext/k", None),
        ("POST", "transit/random/16", None),
        ("POST", "transit/hash", Some(json!({"input": "aGk="}))),
        ("POST", "transit/hmac/k", Some(json!({"input": "aGk="}))),
        ("POST", "transit/sign/k", Some(json!({"input": "aGk="}))),
        (
            "POST",
            "transit/verify/k",
            Some(json!({"input": "aGk=", "signature": "vault:v1:AAAA"})),
        ),
        ("POST", "secret/config", Some(json!({"max_versions": 5}))),
    ]
}

fn self_service() -> Vec<(&'static str, &'static str, Option<Value>)> {
    vec![
        ("GET", "auth/token/lookup-self", None),
        ("POST", "auth/token/renew-self", Some(json!({}))),
        ("POST", "auth/token/revoke-self", None),
    ]
}

#[test]
fn sealed_unauthenticated_and_denied_sweeps() {
    let mut vault = TestVault::production("");
    let shares = init(&mut vault, 1, 1);
    unseal(&vault, &shares);
    vault.root("POST", "secret/data/app", Some(json!({"data": {"k": "v"}})));
    vault.write_policy(
        "narrow",
        r#"path "elsewhere/data/x" { capabilities = ["read"] }"#,
    );
    let narrow = vault.token_with_policies(&["narrow"]);

    for (method, path, body) in routes().into_iter().chain(self_service()) {
        let reply = vault.call(method, path, None, body.clone());
        assert_eq!(
            reply.status, 403,
            "{method} {path} without a token: {}",
            reply.body
        );
        assert_eq!(reply.error(), "permission denied");
    }
    for (method, path, body) in routes() {
        let reply = vault.call(method, path, Some(&narrow), body.clone());
        assert_eq!(
            reply.status, 403,
            "{method} {path} with a denying policy: {}",
            reply.body
        );
    }
    // What the default policy grants works for the same token.
    for (method, path, body) in self_service() {
        assert!(DEFAULT_POLICY.contains(&path));
        let reply = vault.call(method, path, Some(&narrow), body);
        assert!(
            reply.status == 200 || reply.status == 204,
            "{method} {path}: {} {}",
            reply.status,
            reply.body
        );
    }

    vault.root("PUT", "sys/seal", None);
    for (method, path, body) in routes().into_iter().chain(self_service()) {
        let reply = vault.call(method, path, Some(&vault.root_token.clone()), body);
        assert_eq!(
            reply.status, 503,
            "{method} {path} while sealed: {}",
            reply.body
        );
        assert_eq!(reply.error(), "Vault is sealed");
    }
    for path in UNAUTHENTICATED {
        let method = if path == "sys/unseal" { "PUT" } else { "GET" };
        let body = (path == "sys/unseal").then(|| json!({"reset": true}));
        let reply = vault.call(method, path, None, body);
        assert!(
            reply.status < 500 || path == "sys/health",
            "{path} while sealed: {} {}",
            reply.status,
            reply.body
        );
    }
    // Unknown paths are 404 while unsealed too, and a method a route does not take is 405.
    unseal(&vault, &shares);
    assert_eq!(vault.root("GET", "sys/nothing-here", None).status, 404);
    assert_eq!(vault.root("GET", "nomount/x", None).status, 404);
    assert_eq!(vault.root("DELETE", "sys/seal-status", None).status, 405);
    assert_eq!(vault.root("GET", "auth/token/create", None).status, 405);
}
