//! Starting, initialising, unsealing, sealing and restarting the real daemon.

use serde_json::json;

use crate::support::{TestVault, init, unseal};

#[test]
fn dev_mode_prints_its_exports_and_keeps_secrets_across_restarts() {
    let mut vault = TestVault::dev();
    assert!(vault.addr.starts_with("https://127.0.0.1:"));
    assert!(vault.root_token.starts_with("vdt_"));
    let mode = std::fs::metadata(vault.path("insecure-root-token")).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777,
        0o600
    );

    let written = vault.root(
        "POST",
        "secret/data/openai/prod",
        Some(json!({"data": {"api_key": "sk-proj-abc"}})),
    );
    assert_eq!(written.status, 200, "{}", written.body);
    vault.restart();
    let read = vault.root("GET", "secret/data/openai/prod", None);
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["data"]["data"]["api_key"], "sk-proj-abc");
}

#[test]
fn production_lifecycle_init_unseal_restart_sealed_unseal() {
    let mut vault = TestVault::production("");
    let status = vault.call("GET", "sys/seal-status", None, None);
    assert_eq!(status.body["initialized"], false);
    assert_eq!(vault.call("GET", "sys/health", None, None).status, 501);

    let shares = init(&mut vault, 5, 3);
    assert_eq!(shares.len(), 5);
    assert!(
        shares.iter().all(|s| s.len() == 66),
        "shares are 33 bytes in hex"
    );
    assert_eq!(
        vault
            .call(
                "PUT",
                "sys/init",
                None,
                Some(json!({"secret_shares": 1, "secret_threshold": 1}))
            )
            .status,
        400
    );
    let status = vault.call("GET", "sys/seal-status", None, None);
    assert_eq!(
        (
            status.body["sealed"].clone(),
            status.body["t"].clone(),
            status.body["n"].clone()
        ),
        (json!(true), json!(3), json!(5))
    );
    assert_eq!(vault.root("GET", "secret/data/x", None).status, 503);

    unseal(&vault, &shares[1..4]);
    assert_eq!(vault.call("GET", "sys/health", None, None).status, 200);
    let written = vault.root(
        "POST",
        "secret/data/db",
        Some(json!({"data": {"password": "hunter2"}})),
    );
    assert_eq!(written.status, 200, "{}", written.body);

    vault.restart();
    let status = vault.call("GET", "sys/seal-status", None, None);
    assert_eq!(status.body["sealed"], true);
    assert_eq!(vault.call("GET", "sys/health", None, None).status, 503);
    let sealed = vault.root("GET", "secret/data/db", None);
    assert_eq!(sealed.status, 503);
    assert_eq!(sealed.error(), "Vault is sealed");

    // Shares are accepted as hex or base64, in any order.
    let as_base64 = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(hex::decode(&shares[4]).unwrap())
    };
    unseal(&vault, &[shares[2].clone(), as_base64, shares[0].clone()]);
    let read = vault.root("GET", "secret/data/db", None);
    assert_eq!(read.status, 200, "{}", read.body);
    assert_eq!(read.body["data"]["data"]["password"], "hunter2");

    // Sealing through the API needs a token and seals at once.
    assert_eq!(vault.call("PUT", "sys/seal", None, None).status, 403);
    assert_eq!(vault.root("PUT", "sys/seal", None).status, 204);
    assert_eq!(vault.root("GET", "secret/data/db", None).status, 503);
}

#[test]
fn wrong_shares_do_not_unseal() {
    let mut vault = TestVault::production("");
    let shares = init(&mut vault, 3, 2);
    let other = {
        let mut second = TestVault::production("");
        init(&mut second, 3, 2)
    };
    let first = vault.call("PUT", "sys/unseal", None, Some(json!({"key": shares[0]})));
    assert_eq!(first.body["progress"], 1);
    let wrong = vault.call("PUT", "sys/unseal", None, Some(json!({"key": other[1]})));
    assert_eq!(wrong.status, 400, "{}", wrong.body);
    let status = vault.call("GET", "sys/seal-status", None, None);
    assert_eq!(status.body["sealed"], true);
    assert_eq!(status.body["progress"], 0);
    // A reset forgets submitted shares.
    vault.call("PUT", "sys/unseal", None, Some(json!({"key": shares[0]})));
    let reset = vault.call("PUT", "sys/unseal", None, Some(json!({"reset": true})));
    assert_eq!(reset.body["progress"], 0);
}

#[test]
fn a_second_daemon_on_the_same_directory_refuses_to_start() {
    let vault = TestVault::dev();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vaultd"))
        .args(["dev", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(vault.dir.path())
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("in use by another vaultd process"),
        "{stderr}"
    );
}

#[test]
fn invalid_configuration_is_refused_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("vault.toml");
    std::fs::write(&config, "[listener]\naddress = \"127.0.0.1:0\"\ntls_cert_file = \"/x\"\ntls_key_file = \"/y\"\n[storage]\npath = \"/tmp/z\"\n[limits]\nburst_per_adress = 3\n").unwrap();
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_vaultd"))
        .arg("--config")
        .arg(&config)
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("burst_per_adress"), "{stderr}");
}

#[test]
fn sighup_reloads_the_certificate_and_keeps_the_old_one_if_the_new_is_bad() {
    let vault = TestVault::dev();
    let fresh = tempfile::tempdir().unwrap();
    let (config, paths) =
        vaultd::dev::prepare(fresh.path(), "127.0.0.1:0".parse().unwrap()).unwrap();
    let new_client = vault.client_trusting(&paths.ca_cert);
    let health = format!("{}/v1/sys/health", vault.addr);
    assert!(
        new_client.get(&health).send().is_err(),
        "the new CA is trusted before the reload"
    );

    std::fs::copy(&config.listener.tls_cert_file, vault.path("server.pem")).unwrap();
    std::fs::copy(&config.listener.tls_key_file, vault.path("server-key.pem")).unwrap();
    vault.signal("HUP");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while new_client.get(&health).send().is_err() {
        assert!(
            std::time::Instant::now() < deadline,
            "the new certificate was not served after SIGHUP"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }

    // A broken certificate file is refused and the current one stays in service.
    std::fs::write(vault.path("server.pem"), "not a certificate").unwrap();
    vault.signal("HUP");
    for _ in 0..20 {
        let reply = new_client.get(&health).send().unwrap();
        assert_eq!(reply.status(), 200);
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
}

/// With `tls_client_ca_file` set, clients may present a certificate from that CA; a client
/// without one still works with a token, and one from another CA is refused at the handshake.
#[test]
fn client_certificates_are_requested_not_required() {
    use std::sync::Arc;

    use rcgen::{
        BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose,
        IsCa, KeyPair,
    };
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};

    fn ca(name: &str) -> CertifiedIssuer<'static, KeyPair> {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        CertifiedIssuer::self_signed(params, KeyPair::generate().unwrap()).unwrap()
    }
    fn client_cert(issuer: &CertifiedIssuer<'static, KeyPair>) -> (String, String) {
        let mut params = CertificateParams::new(vec!["service.example".to_string()]).unwrap();
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, issuer).unwrap();
        (cert.pem(), key.serialize_pem())
    }

    let clients = ca("clients");
    let stranger = ca("stranger");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("clients-ca.pem");
    std::fs::write(&ca_file, clients.pem()).unwrap();
    let mut vault = TestVault::production("");
    // The harness writes the [listener] section; add the client CA to it and restart.
    let config = std::fs::read_to_string(vault.path("vault.toml")).unwrap();
    let config = config.replacen(
        "[storage]",
        &format!(
            "tls_client_ca_file = \"{}\"\n\n[storage]",
            ca_file.display()
        ),
        1,
    );
    std::fs::write(vault.path("vault.toml"), config).unwrap();
    vault.restart();

    let server_ca = vault.ca.clone();
    let connect = |identity: Option<(String, String)>| {
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_file_iter(&server_ca).unwrap() {
            roots.add(cert.unwrap()).unwrap();
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
        let config = match identity {
            Some((cert, key)) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(cert.as_bytes())
                        .map(|c| c.unwrap())
                        .collect(),
                    PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        let client = reqwest::blocking::Client::builder()
            .use_preconfigured_tls(config)
            .build()
            .unwrap();
        client
            .get(format!("{}/v1/sys/seal-status", vault.addr))
            .send()
    };
    assert_eq!(
        connect(None).unwrap().status(),
        200,
        "a client without a certificate is refused"
    );
    assert_eq!(
        connect(Some(client_cert(&clients))).unwrap().status(),
        200,
        "a good client certificate is refused"
    );
    assert!(
        connect(Some(client_cert(&stranger))).is_err(),
        "a certificate from another CA was accepted"
    );
}
