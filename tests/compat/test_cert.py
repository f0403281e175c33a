"""Service logins with `auth/cert`, driven by hvac, with the same assertions run against
vaultd and a real OpenBao server over TLS: the client certificate comes from the TLS
handshake, and only one that chains to a role's CA, is valid now, allows client
authentication and has an allowed name logs in.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass
from pathlib import Path

import hvac
import hvac.exceptions
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from conftest import RunningVault

INVALID = "invalid certificate or no client certificate supplied"
NOW = datetime.datetime.now(datetime.timezone.utc)
HOUR = datetime.timedelta(hours=1)


@dataclass
class Issuer:
    key: ec.EllipticCurvePrivateKey
    cert: x509.Certificate

    @property
    def pem(self) -> str:
        return self.cert.public_bytes(serialization.Encoding.PEM).decode()


def name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def make_ca(common_name: str) -> Issuer:
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(NOW - 24 * HOUR)
        .not_valid_after(NOW + 24 * HOUR)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return Issuer(key, cert)


def make_leaf(
    directory: Path,
    issuer: Issuer | None,
    common_name: str = "svc-billing.example",
    *,
    usages=(ExtendedKeyUsageOID.CLIENT_AUTH,),
    not_before: datetime.datetime = NOW - HOUR,
    not_after: datetime.datetime = NOW + HOUR,
) -> tuple[str, str]:
    """A client certificate and key as PEM files; self-signed when `issuer` is None."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = (
        x509.CertificateBuilder()
        .subject_name(name(common_name))
        .issuer_name(issuer.cert.subject if issuer else name(common_name))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(common_name)]), critical=False)
    )
    if usages:
        builder = builder.add_extension(x509.ExtendedKeyUsage(list(usages)), critical=False)
    cert = builder.sign(issuer.key if issuer else key, hashes.SHA256())
    stem = directory / f"{common_name}-{cert.serial_number}"
    cert_path, key_path = stem.with_suffix(".pem"), stem.with_suffix(".key")
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    return str(cert_path), str(key_path)


@dataclass
class Server:
    """A server under test: a root client, and how to reach it without a token."""

    root: hvac.Client

    def client(self, token: str = "") -> hvac.Client:
        return hvac.Client(url=self.root.url, token=token or None, verify=self.root.adapter._kwargs["verify"])


@pytest.fixture(params=["vaultd", "openbao"])
def server(request, dev_vault: RunningVault) -> Server:
    """vaultd, or a real OpenBao dev server over TLS with `auth/cert` enabled."""
    if request.param == "vaultd":
        return Server(dev_vault.client())
    return Server(request.getfixturevalue("openbao_tls"))


@pytest.fixture
def trusted(server: Server, unique: str) -> Issuer:
    """A CA, and a role `svc` that trusts it for common names svc-*.example."""
    ca = make_ca("services CA " + unique)
    root = server.root
    root.sys.create_or_update_acl_policy(name="svc-read", policy='path "secret/data/svc/*" { capabilities = ["read"] }')
    root.auth.cert.create_ca_certificate_role(
        name="svc",
        certificate=ca.pem,
        allowed_common_names=["svc-*.example"],
        token_policies=["svc-read"],
        token_ttl="20m",
    )
    return ca


def login(server: Server, cert: tuple[str, str] | None, **kwargs):
    client = server.client()
    if cert is None:
        return client.adapter.post("/v1/auth/cert/login", json={})
    return client.auth.cert.login(cert_pem=cert[0], key_pem=cert[1], **kwargs)


def test_a_good_certificate_logs_in(server: Server, trusted: Issuer, tmp_path: Path):
    auth = login(server, make_leaf(tmp_path, trusted), name="svc")["auth"]
    assert sorted(auth["policies"]) == ["default", "svc-read"]
    assert auth["lease_duration"] == 1200
    assert auth["renewable"] is True
    assert auth["metadata"]["cert_name"] == "svc"
    assert auth["metadata"]["common_name"] == "svc-billing.example"
    client = server.client(token=auth["client_token"])
    me = client.auth.token.lookup_self()["data"]
    assert me["path"] == "auth/cert/login"
    assert me["display_name"] == "cert-svc"


BAD = {
    "self-signed": lambda d, ca, other: make_leaf(d, None),
    "another CA": lambda d, ca, other: make_leaf(d, other),
    "expired": lambda d, ca, other: make_leaf(d, ca, not_before=NOW - 3 * HOUR, not_after=NOW - 2 * HOUR),
    "not yet valid": lambda d, ca, other: make_leaf(d, ca, not_before=NOW + 2 * HOUR, not_after=NOW + 3 * HOUR),
    "server-only usage": lambda d, ca, other: make_leaf(d, ca, usages=(ExtendedKeyUsageOID.SERVER_AUTH,)),
    "wrong name": lambda d, ca, other: make_leaf(d, ca, "intruder.example"),
}


@pytest.mark.parametrize("case", ["none", *BAD])
def test_a_bad_certificate_never_logs_in(server: Server, trusted: Issuer, tmp_path: Path, case: str):
    cert = None if case == "none" else BAD[case](tmp_path, trusted, make_ca("another CA"))
    # Refused by both. OpenBao answers 500 for an expired, not yet valid or server-only
    # certificate and 400 otherwise; vaultd answers 400 with Vault's words for every case
    # (see test_vaultd_refuses_any_bad_certificate_with_vaults_words).
    with pytest.raises(hvac.exceptions.VaultError):
        login(server, cert, **({} if cert is None else {"name": "svc"}))


def test_removing_the_role_revokes_its_logins(server: Server, trusted: Issuer, tmp_path: Path):
    cert = make_leaf(tmp_path, trusted)
    assert login(server, cert, name="svc")["auth"]["client_token"]
    server.root.auth.cert.delete_certificate_role(name="svc")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        login(server, cert, name="svc")


def test_a_login_can_name_its_role(server: Server, trusted: Issuer, tmp_path: Path, unique: str):
    other = make_ca("other CA")
    server.root.auth.cert.create_ca_certificate_role(name=f"other-{unique}", certificate=other.pem)
    cert = make_leaf(tmp_path, trusted)
    assert login(server, cert, name="svc")["auth"]["metadata"]["cert_name"] == "svc"
    with pytest.raises(hvac.exceptions.InvalidRequest):
        login(server, cert, name=f"other-{unique}")


def test_vaultd_refuses_any_bad_certificate_with_vaults_words(dev_vault: RunningVault, tmp_path: Path):
    server = Server(dev_vault.client())
    ca = make_ca("services CA")
    server.root.auth.cert.create_ca_certificate_role(name="svc", certificate=ca.pem, allowed_common_names=["svc-*"])
    for case, make in BAD.items():
        with pytest.raises(hvac.exceptions.InvalidRequest, match=INVALID):
            login(server, make(tmp_path, ca, make_ca("another CA")))
        # Each failure counts toward the address's back-off; a good login clears it.
        login(server, make_leaf(tmp_path, ca))


def test_roles_read_back_and_refuse_what_vaultd_does_not_check(dev_vault: RunningVault):
    root = dev_vault.client()
    trusted = make_ca("services CA")
    root.auth.cert.create_ca_certificate_role(
        name="svc", certificate=trusted.pem, allowed_common_names=["svc-*.example"], token_policies=["svc-read"], token_ttl="20m"
    )
    role = root.auth.cert.read_ca_certificate_role(name="svc")["data"]
    assert role["certificate"] == trusted.pem
    assert role["allowed_common_names"] == ["svc-*.example"]
    assert role["token_policies"] == ["svc-read"]
    assert role["token_ttl"] == 1200
    assert root.auth.cert.list_certificate_roles()["data"]["keys"] == ["svc"]
    with pytest.raises(hvac.exceptions.InvalidRequest, match="allowed_uri_sans is not supported"):
        root.auth.cert.create_ca_certificate_role(name="uri", certificate=trusted.pem, allowed_uri_sans=["spiffe://x/*"])
    with pytest.raises(hvac.exceptions.InvalidRequest, match="invalid certificate"):
        root.auth.cert.create_ca_certificate_role(name="junk", certificate="-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="root policy"):
        root.auth.cert.create_ca_certificate_role(name="rooted", certificate=trusted.pem, token_policies=["root"])


def test_tokens_still_work_on_a_connection_with_a_certificate(dev_vault: RunningVault, tmp_path: Path):
    cert = make_leaf(tmp_path, make_ca("unrelated CA"), "unrelated.example")
    response = requests.get(
        f"{dev_vault.addr}/v1/auth/token/lookup-self",
        headers={"X-Vault-Token": dev_vault.token},
        cert=cert,
        verify=dev_vault.cacert,
        timeout=30,
    )
    assert response.status_code == 200, response.text


def test_a_role_ca_outside_its_validity_vouches_for_no_one(dev_vault: RunningVault, tmp_path: Path):
    root = dev_vault.client()
    key = ec.generate_private_key(ec.SECP256R1())

    def ca(not_before, not_after) -> Issuer:
        cert = (
            x509.CertificateBuilder()
            .subject_name(name("dated CA"))
            .issuer_name(name("dated CA"))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(key, hashes.SHA256())
        )
        return Issuer(key, cert)

    expired = ca(NOW - 48 * HOUR, NOW - 24 * HOUR)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="expired"):
        root.auth.cert.create_ca_certificate_role(name="old", certificate=expired.pem)
    # A CA that is not valid yet may be stored ahead of time, but logs no one in until then.
    future = ca(NOW + 24 * HOUR, NOW + 48 * HOUR)
    root.auth.cert.create_ca_certificate_role(name="future", certificate=future.pem)
    leaf = make_leaf(tmp_path, future)
    with pytest.raises(hvac.exceptions.InvalidRequest, match=INVALID):
        login(Server(root), leaf)
