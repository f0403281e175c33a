"""The TLS configuration of the listener, as a real scanner (sslyze) sees it.

One dev vault is scanned once for the whole module: every SSL/TLS protocol version's
cipher suites, plus the certificate chain validated against the dev CA. The tests then
check the scan: only TLS 1.2 and 1.3, only ECDHE key exchange with AEAD ciphers, and an
ECDSA P-256 certificate for localhost and 127.0.0.1. The last tests need no scanner: a
plain-HTTP request to the TLS port, and ALPN.
"""

from __future__ import annotations

import socket
import ssl
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec
from sslyze import (
    CertificateInfoExtraArgument,
    CipherSuitesScanResult,
    Scanner,
    ScanCommand,
    ScanCommandAttemptStatusEnum,
    ScanCommandsExtraArguments,
    ServerConnectivityStatusEnum,
    ServerNetworkConfiguration,
    ServerNetworkLocation,
    ServerScanRequest,
    ServerScanResult,
    ServerScanStatusEnum,
)

from conftest import start_dev

# The scan commands and the attribute of the scan result that holds each one's outcome.
CIPHER_SUITE_SCANS = {
    "SSL 2.0": (ScanCommand.SSL_2_0_CIPHER_SUITES, "ssl_2_0_cipher_suites"),
    "SSL 3.0": (ScanCommand.SSL_3_0_CIPHER_SUITES, "ssl_3_0_cipher_suites"),
    "TLS 1.0": (ScanCommand.TLS_1_0_CIPHER_SUITES, "tls_1_0_cipher_suites"),
    "TLS 1.1": (ScanCommand.TLS_1_1_CIPHER_SUITES, "tls_1_1_cipher_suites"),
    "TLS 1.2": (ScanCommand.TLS_1_2_CIPHER_SUITES, "tls_1_2_cipher_suites"),
    "TLS 1.3": (ScanCommand.TLS_1_3_CIPHER_SUITES, "tls_1_3_cipher_suites"),
}
LEGACY_VERSIONS = ("SSL 2.0", "SSL 3.0", "TLS 1.0", "TLS 1.1")

# RFC 8446 cipher suites with IANA's "Recommended" mark; TLS_AES_128_CCM_8_SHA256 (a
# truncated tag) and the integrity-only suites of RFC 9150 are not among them.
TLS13_AEAD_SUITES = {
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
    "TLS_AES_128_CCM_SHA256",
}
# Parts of a TLS 1.2 suite name that mark a cipher, MAC or key exchange not wanted.
TLS12_FORBIDDEN_PARTS = ("CBC", "RC4", "3DES", "DES", "NULL", "EXPORT", "ANON", "MD5", "IDEA", "RC2", "SEED")

SCAN_TIMEOUT = 60.0
PLAIN_HTTP_TIMEOUT = 5.0

# sslyze's bundled public trust stores hold a root with a non-positive serial number.
pytestmark = pytest.mark.filterwarnings("ignore:Parsed a serial number which wasn't positive")


@dataclass
class TlsScan:
    host: str
    port: int
    cacert: Path
    result: ServerScanResult
    seconds: float

    def attempt(self, attribute: str):
        assert self.result.scan_result is not None
        attempt = getattr(self.result.scan_result, attribute)
        assert attempt.status == ScanCommandAttemptStatusEnum.COMPLETED, (
            f"sslyze could not complete {attribute}: {attempt.error_reason}\n"
            + ("".join(attempt.error_trace.format()) if attempt.error_trace else "")
        )
        return attempt.result

    def cipher_suites(self, version: str) -> CipherSuitesScanResult:
        return self.attempt(CIPHER_SUITE_SCANS[version][1])

    def accepted(self, version: str) -> list[str]:
        return [s.cipher_suite.name for s in self.cipher_suites(version).accepted_cipher_suites]


def scan(host: str, port: int, cacert: Path) -> TlsScan:
    location = ServerNetworkLocation(hostname="localhost", port=port, ip_address=host)
    request = ServerScanRequest(
        server_location=location,
        network_configuration=ServerNetworkConfiguration(
            tls_server_name_indication="localhost",
            network_timeout=5,
            network_max_retries=1,
        ),
        scan_commands={command for command, _ in CIPHER_SUITE_SCANS.values()} | {ScanCommand.CERTIFICATE_INFO},
        scan_commands_extra_arguments=ScanCommandsExtraArguments(
            certificate_info=CertificateInfoExtraArgument(custom_ca_file=cacert),
        ),
    )
    started = time.monotonic()
    scanner = Scanner()
    scanner.queue_scans([request])
    results = list(scanner.get_results())
    seconds = time.monotonic() - started
    assert len(results) == 1, f"sslyze returned {len(results)} results for one server"
    result = results[0]
    assert result.connectivity_status == ServerConnectivityStatusEnum.COMPLETED, (
        f"sslyze could not connect to {host}:{port}:\n"
        + ("".join(result.connectivity_error_trace.format()) if result.connectivity_error_trace else "")
    )
    assert result.scan_status == ServerScanStatusEnum.COMPLETED, f"sslyze scan ended with {result.scan_status}"
    return TlsScan(host=host, port=port, cacert=cacert, result=result, seconds=seconds)


@pytest.fixture(scope="module")
def tls_scan(tmp_path_factory) -> TlsScan:
    """A dev vault scanned once by sslyze; the daemon is stopped before the tests look at it."""
    base = tmp_path_factory.mktemp("tls-scan")
    daemon, exports = start_dev(base / "dev", base / "vaultd-dev.log")
    try:
        addr = urlsplit(exports["VAULT_ADDR"])
        assert addr.scheme == "https", f"dev vault address is not https: {exports['VAULT_ADDR']}"
        assert addr.hostname and addr.port
        result = scan(addr.hostname, addr.port, Path(exports["VAULT_CACERT"]))
    finally:
        daemon.stop()
    assert result.seconds < SCAN_TIMEOUT, f"the sslyze scan took {result.seconds:.1f} s"
    return result


@pytest.mark.parametrize("version", LEGACY_VERSIONS)
def test_legacy_protocol_versions_are_refused(tls_scan: TlsScan, version: str):
    accepted = tls_scan.accepted(version)
    assert not accepted, f"{version} must be refused, but the listener accepted these cipher suites: {accepted}"
    assert not tls_scan.cipher_suites(version).is_tls_version_supported


@pytest.mark.parametrize("version", ("TLS 1.2", "TLS 1.3"))
def test_modern_protocol_versions_are_offered(tls_scan: TlsScan, version: str):
    rejected = [s.cipher_suite.name for s in tls_scan.cipher_suites(version).rejected_cipher_suites]
    assert tls_scan.accepted(version), f"{version} must be offered, but every cipher suite was refused: {rejected}"


def test_tls12_suites_are_ecdhe_with_aead_only(tls_scan: TlsScan):
    suites = tls_scan.cipher_suites("TLS 1.2").accepted_cipher_suites
    problems = []
    for suite in suites:
        name = suite.cipher_suite.name
        upper = name.upper()
        if not upper.startswith("TLS_ECDHE_"):
            problems.append(f"{name}: key exchange is not ECDHE")
        if "_GCM_" not in upper and "CHACHA20_POLY1305" not in upper:
            problems.append(f"{name}: cipher is not AES-GCM or ChaCha20-Poly1305")
        bad = [part for part in TLS12_FORBIDDEN_PARTS if part in upper]
        if bad:
            problems.append(f"{name}: contains {', '.join(bad)}")
        if suite.cipher_suite.is_anonymous:
            problems.append(f"{name}: anonymous (no server authentication)")
        if suite.ephemeral_key is None or suite.ephemeral_key.type_name != "ECDH":
            got = suite.ephemeral_key.type_name if suite.ephemeral_key else None
            problems.append(f"{name}: ephemeral key is {got}, not elliptic-curve Diffie-Hellman")
    accepted = [s.cipher_suite.name for s in suites]
    assert not problems, "TLS 1.2 cipher suites not allowed:\n" + "\n".join(problems) + f"\naccepted: {accepted}"


def test_tls13_suites_are_standard_aead(tls_scan: TlsScan):
    accepted = tls_scan.accepted("TLS 1.3")
    unexpected = sorted(set(accepted) - TLS13_AEAD_SUITES)
    assert not unexpected, (
        f"TLS 1.3 cipher suites outside the standard AEAD set {sorted(TLS13_AEAD_SUITES)}: {unexpected}"
    )


def certificate_deployments(tls_scan: TlsScan) -> list:
    info = tls_scan.attempt("certificate_info")
    assert info.hostname_used_for_server_name_indication == "localhost"
    assert info.certificate_deployments, "sslyze received no certificate chain with SNI"
    assert info.certificate_deployment_with_sni_disabled is not None, "sslyze received no certificate chain without SNI"
    return [*info.certificate_deployments, info.certificate_deployment_with_sni_disabled]


def test_certificate_is_ecdsa_p256_for_localhost(tls_scan: TlsScan):
    for deployment in certificate_deployments(tls_scan):
        leaf = deployment.received_certificate_chain[0]
        key = leaf.public_key()
        assert isinstance(key, ec.EllipticCurvePublicKey), f"leaf key is {type(key).__name__}, not ECDSA"
        assert key.curve.name == "secp256r1", f"leaf key curve is {key.curve.name}, not P-256"
        san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = san.get_values_for_type(x509.DNSName)
        ips = [str(ip) for ip in san.get_values_for_type(x509.IPAddress)]
        assert "localhost" in names, f"leaf certificate names {names}, not localhost"
        assert "127.0.0.1" in ips, f"leaf certificate addresses {ips}, not 127.0.0.1"
        assert deployment.received_chain_has_valid_order is not False, "the chain is sent out of order"


# cryptography's RFC 5280 check of the Authority Key Identifier that a CA-issued
# certificate must carry.


def test_certificate_chain_validates_against_dev_ca(tls_scan: TlsScan):
    """Path validation as sslyze does it (cryptography's RFC 5280 web PKI policy) for localhost."""
    errors = []
    for deployment in certificate_deployments(tls_scan):
        dev_ca = [r for r in deployment.path_validation_results if r.trust_store.path == tls_scan.cacert]
        assert len(dev_ca) == 1, "sslyze did not validate against the dev CA file"
        if not dev_ca[0].was_validation_successful:
            errors.append(dev_ca[0].validation_error or "no verified chain")
    assert not errors, "the chain does not validate against the dev CA for localhost:\n" + "\n".join(errors)


def test_plain_http_to_the_tls_port_gets_no_http_response(dev_vault):
    addr = urlsplit(dev_vault.addr)
    request = f"GET /v1/sys/health HTTP/1.1\r\nHost: {addr.netloc}\r\nConnection: close\r\n\r\n".encode()
    received = b""
    with socket.create_connection((addr.hostname, addr.port), timeout=PLAIN_HTTP_TIMEOUT) as sock:
        try:
            sock.sendall(request)
            deadline = time.monotonic() + PLAIN_HTTP_TIMEOUT
            while time.monotonic() < deadline:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                received += chunk
        except (ConnectionResetError, BrokenPipeError, socket.timeout):
            pass
    assert not received.lstrip().startswith(b"HTTP/"), (
        f"plain HTTP to the TLS port got an HTTP response: {received[:200]!r}"
    )
    assert b"HTTP/1." not in received, f"plain HTTP to the TLS port got HTTP text back: {received[:200]!r}"
    # Then the listener still serves TLS.
    context = ssl.create_default_context(cafile=dev_vault.cacert)
    with socket.create_connection((addr.hostname, addr.port), timeout=PLAIN_HTTP_TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            assert tls.version() in ("TLSv1.2", "TLSv1.3")


def test_alpn_selects_http11_only(dev_vault):
    addr = urlsplit(dev_vault.addr)
    context = ssl.create_default_context(cafile=dev_vault.cacert)
    context.set_alpn_protocols(["h2", "http/1.1"])
    with socket.create_connection((addr.hostname, addr.port), timeout=PLAIN_HTTP_TIMEOUT) as raw:
        with context.wrap_socket(raw, server_hostname="localhost") as tls:
            selected = tls.selected_alpn_protocol()
    assert selected == "http/1.1", f"offered h2 and http/1.1, the listener selected {selected!r}"
