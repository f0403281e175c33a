//! Tokens and policies over the API.

use std::time::{Duration, Instant};

use serde_json::json;

use crate::support::TestVault;

#[test]
fn token_lifecycle_and_child_revocation() {
    let vault = TestVault::dev();
    vault.write_policy(
        "app",
        r#"
        path "secret/data/app/*" { capabilities = ["read", "create", "update"] }
        path "auth/token/create" { capabilities = ["update"] }
        "#,
    );
    let created = vault.root(
        "POST",
        "auth/token/create",
        Some(
            json!({"policies": ["app"], "ttl": "1h", "display_name": "ci", "meta": {"team": "x"}}),
        ),
    );
    assert_eq!(created.status, 200, "{}", created.body);
    let auth = &created.body["auth"];
    assert_eq!(auth["policies"], json!(["app", "default"]));
    assert_eq!(auth["lease_duration"], 3600);
    assert_eq!(auth["renewable"], true);
    let parent = auth["client_token"].as_str().unwrap().to_string();
    let accessor = auth["accessor"].as_str().unwrap().to_string();
    assert!(parent.starts_with("vdt_") && !accessor.is_empty());

    let me = vault.call("GET", "auth/token/lookup-self", Some(&parent), None);
    assert_eq!(me.status, 200, "{}", me.body);
    assert_eq!(me.body["data"]["display_name"], "token-ci");
    assert_eq!(me.body["data"]["meta"]["team"], "x");
    assert!(me.body["data"]["ttl"].as_u64().unwrap() <= 3600);
    assert_eq!(me.body["data"]["accessor"], accessor.as_str());

    // The policy works: read and write inside, nothing outside.
    assert_eq!(
        vault
            .call(
                "POST",
                "secret/data/app/k",
                Some(&parent),
                Some(json!({"data": {"a": "b"}}))
            )
            .status,
        200
    );
    assert_eq!(
        vault
            .call("GET", "secret/data/app/k", Some(&parent), None)
            .status,
        200
    );
    assert_eq!(
        vault
            .call("GET", "secret/data/other", Some(&parent), None)
            .status,
        403
    );
    assert_eq!(
        vault.call("GET", "sys/mounts", Some(&parent), None).status,
        403
    );

    // A child cannot get a policy its parent lacks, and dies with its parent.
    let wider = vault.call(
        "POST",
        "auth/token/create",
        Some(&parent),
        Some(json!({"policies": ["root"]})),
    );
    assert_eq!(wider.status, 400, "{}", wider.body);
    let child = vault.call("POST", "auth/token/create", Some(&parent), Some(json!({})));
    let child = child.body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        vault
            .call("GET", "secret/data/app/k", Some(&child), None)
            .status,
        200
    );
    let by_accessor = vault.root(
        "POST",
        "auth/token/lookup-accessor",
        Some(json!({"accessor": accessor})),
    );
    assert_eq!(
        by_accessor.body["data"]["id"], "",
        "lookup by accessor never shows the token"
    );

    assert_eq!(
        vault
            .root("POST", "auth/token/revoke", Some(json!({"token": parent})))
            .status,
        204
    );
    assert_eq!(
        vault
            .call("GET", "auth/token/lookup-self", Some(&parent), None)
            .status,
        403
    );
    assert_eq!(
        vault
            .call("GET", "auth/token/lookup-self", Some(&child), None)
            .status,
        403
    );
}

#[test]
fn use_counts_and_expiry() {
    let vault = TestVault::dev();
    let limited = vault.root("POST", "auth/token/create", Some(json!({"num_uses": 2})));
    let token = limited.body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(
        vault
            .call("GET", "auth/token/lookup-self", Some(&token), None)
            .status,
        200
    );
    assert_eq!(
        vault
            .call("GET", "auth/token/lookup-self", Some(&token), None)
            .status,
        200
    );
    assert_eq!(
        vault
            .call("GET", "auth/token/lookup-self", Some(&token), None)
            .status,
        403
    );

    let short = vault.root("POST", "auth/token/create", Some(json!({"ttl": "1s"})));
    let token = short.body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let status = vault
            .call("GET", "auth/token/lookup-self", Some(&token), None)
            .status;
        if status == 403 {
            break;
        }
        assert_eq!(status, 200);
        assert!(
            Instant::now() < deadline,
            "a 1-second token still works after 10 seconds"
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    let renewable = vault.root(
        "POST",
        "auth/token/create",
        Some(json!({"ttl": "60s", "explicit_max_ttl": "90s"})),
    );
    let token = renewable.body["auth"]["client_token"]
        .as_str()
        .unwrap()
        .to_string();
    let renewed = vault.call(
        "POST",
        "auth/token/renew-self",
        Some(&token),
        Some(json!({"increment": "1h"})),
    );
    assert_eq!(renewed.status, 200, "{}", renewed.body);
    assert!(
        renewed.body["auth"]["lease_duration"].as_u64().unwrap() <= 90,
        "renewal stops at explicit_max_ttl"
    );
}

#[test]
fn policies_in_hcl_and_json() {
    let vault = TestVault::dev();
    vault.write_policy("hcl", "path \"secret/data/+/ro\" {\n  capabilities = [\"read\"]\n}\npath \"secret/data/team/locked\" { capabilities = [\"deny\"] }\npath \"secret/data/team/*\" { capabilities = [\"read\", \"create\"] }\n");
    let json_policy =
        json!({"path": {"secret/metadata/*": {"capabilities": ["list"]}}}).to_string();
    vault.write_policy("json", &json_policy);
    let read = vault.root("GET", "sys/policies/acl/hcl", None);
    assert!(
        read.body["data"]["policy"]
            .as_str()
            .unwrap()
            .contains("secret/data/+/ro")
    );
    let list = vault.root("LIST", "sys/policies/acl", None);
    assert_eq!(
        list.body["data"]["keys"],
        json!(["default", "hcl", "json", "root"])
    );

    let token = vault.token_with_policies(&["hcl", "json"]);
    vault.root(
        "POST",
        "secret/data/x/ro",
        Some(json!({"data": {"a": "b"}})),
    );
    vault.root(
        "POST",
        "secret/data/team/locked",
        Some(json!({"data": {"a": "b"}})),
    );
    assert_eq!(
        vault
            .call("GET", "secret/data/x/ro", Some(&token), None)
            .status,
        200
    );
    assert_eq!(
        vault
            .call(
                "POST",
                "secret/data/x/ro",
                Some(&token),
                Some(json!({"data": {}}))
            )
            .status,
        403
    );
    assert_eq!(
        vault
            .call("GET", "secret/data/team/locked", Some(&token), None)
            .status,
        403
    );
    // create, not update: a new path can be written, an existing one cannot.
    assert_eq!(
        vault
            .call(
                "POST",
                "secret/data/team/new",
                Some(&token),
                Some(json!({"data": {"a": "1"}}))
            )
            .status,
        200
    );
    assert_eq!(
        vault
            .call(
                "POST",
                "secret/data/team/new",
                Some(&token),
                Some(json!({"data": {"a": "2"}}))
            )
            .status,
        403
    );
    assert_eq!(
        vault
            .call("LIST", "secret/metadata/team/", Some(&token), None)
            .status,
        200
    );

    let bad = vault.root(
        "PUT",
        "sys/policies/acl/bad",
        Some(json!({"policy": "path \"x\" { capabilities = [\"fly\"] }"})),
    );
    assert_eq!(bad.status, 400);
    assert!(bad.error().contains("fly"), "{}", bad.body);
    assert_eq!(
        vault
            .root("DELETE", "sys/policies/acl/default", None)
            .status,
        400
    );
    assert_eq!(
        vault
            .root("PUT", "sys/policies/acl/root", Some(json!({"policy": ""})))
            .status,
        400
    );
    assert_eq!(
        vault.root("DELETE", "sys/policies/acl/hcl", None).status,
        204
    );
    assert_eq!(
        vault
            .call("GET", "secret/data/x/ro", Some(&token), None)
            .status,
        403,
        "a deleted policy grants nothing"
    );
}
