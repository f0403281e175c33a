//! A service logs in with its client certificate: `vaultctl login --method cert` saves the
//! token, and `vaultctl exec --login cert` uses it for the reads only.

use std::path::{Path, PathBuf};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

use crate::support::{Vault, describe};

/// A CA, and a client certificate and key it signed for `svc.example`, as files in `dir`.
fn client_identity(dir: &Path) -> (String, PathBuf, PathBuf) {
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name
        .push(DnType::CommonName, "services CA");
    ca.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let ca = CertifiedIssuer::self_signed(ca, KeyPair::generate().unwrap()).unwrap();

    let mut leaf = CertificateParams::new(vec!["svc.example".to_string()]).unwrap();
    leaf.distinguished_name
        .push(DnType::CommonName, "svc.example");
    leaf.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let key = KeyPair::generate().unwrap();
    let cert = leaf.signed_by(&key, &ca).unwrap();
    let (cert_path, key_path) = (dir.join("svc.pem"), dir.join("svc.key"));
    std::fs::write(&cert_path, cert.pem()).unwrap();
    std::fs::write(&key_path, key.serialize_pem()).unwrap();
    (ca.pem(), cert_path, key_path)
}

#[test]
fn a_service_logs_in_with_its_certificate_and_reads_its_keys() {
    let vault = Vault::dev();
    let dir = tempfile::tempdir().unwrap();
    let (ca, cert, key) = client_identity(dir.path());
    let root = vault.root_client();
    root.write(
        "sys/policies/acl/svc-read",
        &serde_json::json!({"policy": "path \"secret/data/svc/*\" { capabilities = [\"read\"] }"}),
    )
    .unwrap();
    root.write(
        "auth/cert/certs/svc",
        &serde_json::json!({"certificate": ca, "allowed_common_names": ["svc.example"], "token_policies": ["svc-read"]}),
    )
    .unwrap();
    vault.run(&["put", "secret/svc/openai", "api_key=sk-cert-canary"]);

    let with_identity = |args: &[&str]| {
        vault
            .vaultctl()
            .env("VAULT_TOKEN", "")
            .env("VAULT_CLIENT_CERT", &cert)
            .env("VAULT_CLIENT_KEY", &key)
            .args(args)
            .output()
            .unwrap()
    };
    let exec = with_identity(&[
        "exec",
        "--login",
        "cert",
        "--env",
        "OPENAI_API_KEY=secret/svc/openai#api_key",
        "--",
        "/bin/sh",
        "-c",
        "printf %s \"$OPENAI_API_KEY\"",
    ]);
    assert!(exec.status.success(), "{}", describe(&exec));
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "sk-cert-canary");

    let login = with_identity(&["login", "--method", "cert"]);
    assert!(login.status.success(), "{}", describe(&login));
    let name = with_identity(&["token", "lookup", "--field", "display_name"]);
    assert_eq!(String::from_utf8_lossy(&name.stdout), "cert-svc\n");

    // Without a certificate there is nothing to log in with.
    let bare = vault
        .vaultctl()
        .env("VAULT_TOKEN", "")
        .args(["login", "--method", "cert"])
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), Some(1), "{}", describe(&bare));
    assert!(
        describe(&bare).contains("VAULT_CLIENT_CERT"),
        "{}",
        describe(&bare)
    );
}
