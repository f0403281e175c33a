//! Bad input gets a clear 4xx with `{"errors": [...]}` and changes nothing; every answer
//! carries the security headers; limits answer 413 and 429.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use serde_json::json;

use crate::support::{Reply, TestVault, init, raw_https, unseal};

fn assert_clear_error(reply: &Reply, status: u16, what: &str) {
    assert_eq!(reply.status, status, "{what}: {}", reply.body);
    assert_eq!(reply.headers["content-type"], "application/json", "{what}");
    let errors = reply.body["errors"]
        .as_array()
        .unwrap_or_else(|| panic!("{what}: no errors array in {}", reply.body));
    assert!(
        !errors.is_empty() && !errors[0].as_str().unwrap().is_empty(),
        "{what}: empty error"
    );
}

#[test]
fn bad_requests_get_clear_errors_and_change_nothing() {
    let vault = TestVault::dev();
    let token = vault.root_token.clone();
    vault.root(
        "POST",
        "secret/data/app",
        Some(json!({"data": {"v": "original"}})),
    );

    let cases: Vec<(&str, &str, Vec<u8>, u16)> = vec![
        (
            "malformed JSON",
            "secret/data/app",
            b"{\"data\": ".to_vec(),
            400,
        ),
        ("not an object", "secret/data/app", b"[1, 2]".to_vec(), 400),
        (
            "wrong type",
            "secret/data/app",
            br#"{"data": "a string"}"#.to_vec(),
            400,
        ),
        (
            "unconvertible number",
            "secret/metadata/app",
            br#"{"max_versions": "many"}"#.to_vec(),
            400,
        ),
        (
            "negative number",
            "secret/metadata/app",
            br#"{"max_versions": -3}"#.to_vec(),
            400,
        ),
        (
            "bad duration",
            "secret/metadata/app",
            br#"{"delete_version_after": "soon"}"#.to_vec(),
            400,
        ),
        (
            "deep nesting",
            "secret/data/app",
            format!("{{\"data\": {}1{}}}", "[".repeat(300), "]".repeat(300)).into_bytes(),
            400,
        ),
        (
            "body over 1 MiB",
            "secret/data/app",
            format!(
                "{{\"data\": {{\"v\": \"{}\"}}}}",
                "x".repeat(1024 * 1024 + 10)
            )
            .into_bytes(),
            413,
        ),
        (
            "record over 64 KiB",
            "secret/data/app",
            format!("{{\"data\": {{\"v\": \"{}\"}}}}", "x".repeat(70 * 1024)).into_bytes(),
            413,
        ),
        (
            "stale check-and-set",
            "secret/data/app",
            br#"{"data": {"v": "x"}, "options": {"cas": 7}}"#.to_vec(),
            400,
        ),
    ];
    for (what, path, body, status) in cases {
        let reply = vault.call_raw("POST", path, Some(&token), body);
        assert_clear_error(&reply, status, what);
    }
    // Sent raw: an HTTP client library would resolve `..` before sending.
    for (what, path) in [
        ("empty segment", "secret/data/a//b"),
        ("control character", "secret/data/a%07b"),
        ("dot-dot", "secret/data/a/../app"),
        ("encoded dot-dot", "secret/data/%2e%2e/app"),
        ("dot", "secret/data/./app"),
    ] {
        let body = r#"{"data": {"v": "x"}}"#;
        let request = format!(
            "POST /v1/{path} HTTP/1.1\r\nHost: localhost\r\nX-Vault-Token: {token}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let answer = raw_https(&vault, &request);
        assert!(answer.starts_with("HTTP/1.1 400"), "{what}: {answer}");
        assert!(
            answer.contains("content-type: application/json") && answer.contains("\"errors\""),
            "{what}: {answer}"
        );
    }
    let reply = vault.call(
        "PUT",
        "sys/unseal",
        None,
        Some(json!({"key": "!!not-base64!!"})),
    );
    assert_clear_error(&reply, 400, "bad base64 share");
    let reply = vault.call("PUT", "sys/init", None, Some(json!({"secret_shares": 300})));
    assert_clear_error(&reply, 400, "init after init / out of range");
    let reply = vault.call("PUT", "sys/seal-status", None, None);
    assert_clear_error(&reply, 405, "wrong method");
    let reply = vault.call("TRACE", "secret/data/app", Some(&token), None);
    assert_eq!(reply.status, 405, "TRACE");

    // Nothing changed.
    let read = vault.root("GET", "secret/data/app", None);
    assert_eq!(read.body["data"]["data"]["v"], "original");
    assert_eq!(read.body["data"]["metadata"]["version"], 1);
    let metadata = vault.root("GET", "secret/metadata/app", None);
    assert_eq!(metadata.body["data"]["max_versions"], 0);
}

#[test]
fn every_answer_carries_the_security_headers() {
    let vault = TestVault::dev();
    for reply in [
        vault.root("GET", "sys/mounts", None),
        vault.call("GET", "secret/data/x", None, None),
        vault.call("GET", "sys/health", None, None),
        vault.root("GET", "nowhere/x", None),
        vault.root("POST", "secret/data/x", Some(json!({"data": {"a": "b"}}))),
    ] {
        let h = &reply.headers;
        assert!(!h["x-request-id"].is_empty());
        assert_eq!(h["cache-control"], "no-store");
        assert_eq!(
            h["strict-transport-security"],
            "max-age=31536000; includeSubDomains"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["x-frame-options"], "DENY");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["content-security-policy"], "default-src 'none'");
    }
    let reply = vault.root("GET", "sys/mounts", None);
    assert_eq!(
        reply.body["request_id"],
        reply.headers["x-request-id"].to_str().unwrap()
    );
    for field in [
        "lease_id",
        "renewable",
        "lease_duration",
        "data",
        "wrap_info",
        "warnings",
        "auth",
    ] {
        assert!(reply.body.get(field).is_some(), "envelope lacks {field}");
    }
}

#[test]
fn plain_http_gets_no_http_answer() {
    let vault = TestVault::dev();
    let address = vault.addr.trim_start_matches("https://");
    let mut stream = TcpStream::connect(address).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(15)))
        .unwrap();
    stream
        .write_all(b"GET /v1/sys/health HTTP/1.1\r\nHost: localhost\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    assert!(
        !answer.starts_with(b"HTTP/"),
        "plain HTTP was answered: {:?}",
        String::from_utf8_lossy(&answer)
    );
}

#[test]
fn rate_limits_answer_429_with_retry_after() {
    let mut vault = TestVault::production(
        "[limits]\nrequests_per_second_per_address = 1\nburst_per_address = 3\n",
    );
    let shares = init(&mut vault, 1, 1);
    unseal(&vault, &shares);
    let mut refused = None;
    for _ in 0..20 {
        let reply = vault.call("GET", "sys/seal-status", None, None);
        if reply.status == 429 {
            refused = Some(reply);
            break;
        }
        assert_eq!(reply.status, 200);
        assert!(reply.headers.contains_key("x-ratelimit-remaining"));
    }
    let refused = refused.expect("no request was limited");
    assert!(
        refused.headers["retry-after"]
            .to_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            >= 1
    );
    assert_eq!(refused.headers["x-ratelimit-limit"], "3");
    assert_eq!(refused.error(), "rate limit exceeded; retry later");
}

#[test]
fn repeated_invalid_tokens_back_off() {
    let vault = TestVault::dev();
    let mut statuses = Vec::new();
    for _ in 0..8 {
        statuses.push(
            vault
                .call("GET", "secret/data/x", Some("vdt_guessed"), None)
                .status,
        );
    }
    assert_eq!(statuses[..5], [403; 5]);
    assert!(statuses[5..].contains(&429), "{statuses:?}");
    let limited = vault.call(
        "GET",
        "auth/token/lookup-self",
        Some(&vault.root_token.clone()),
        None,
    );
    assert_eq!(
        limited.status, 429,
        "the address is delayed whatever token it sends"
    );
    assert!(limited.headers.contains_key("retry-after"));
}
