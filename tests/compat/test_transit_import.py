"""Bring your own key: key material wrapped as Vault's transit import takes it (RSA-OAEP of
a fresh AES key, then AES key wrap with padding), imported into vaultd and into a real
OpenBao server. The same material imported into both must work alike: what one encrypts,
signs or HMACs, the other decrypts, verifies or reproduces.

hvac has no import calls, so requests go through its adapter to the same routes; the
wrapping is done with the `cryptography` package, as Vault's documentation does it.
"""

from __future__ import annotations

import base64
import os

import hvac
import hvac.exceptions
import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.hazmat.primitives.keywrap import aes_key_wrap_with_padding

from conftest import RunningVault
from test_transit_backup import AEADS, b64, check, post, produce

HASHES = {"SHA1": hashes.SHA1, "SHA256": hashes.SHA256, "SHA384": hashes.SHA384, "SHA512": hashes.SHA512}


def wrapping_key(client: hvac.Client) -> rsa.RSAPublicKey:
    pem = client.adapter.get("/v1/transit/wrapping_key")["data"]["public_key"]
    key = serialization.load_pem_public_key(pem.encode())
    assert isinstance(key, rsa.RSAPublicKey)
    return key


def wrap(client: hvac.Client, material: bytes, hash_function: str = "SHA256") -> str:
    """`material` wrapped for `client`'s transit mount."""
    aes_key = os.urandom(32)
    algorithm = HASHES[hash_function]()
    wrapped_aes_key = wrapping_key(client).encrypt(
        aes_key, padding.OAEP(mgf=padding.MGF1(algorithm), algorithm=algorithm, label=None)
    )
    return b64(wrapped_aes_key + aes_key_wrap_with_padding(aes_key, material))


def material_for(key_type: str) -> bytes:
    """Fresh key material in the form Vault's import takes for `key_type`."""
    if key_type in AEADS:
        return os.urandom(32)
    if key_type == "hmac":
        return os.urandom(64)
    private = ed25519.Ed25519PrivateKey.generate() if key_type == "ed25519" else ec.generate_private_key(ec.SECP256R1())
    return private.private_bytes(
        serialization.Encoding.DER, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def import_key(client: hvac.Client, name: str, material: bytes, **fields):
    return client.adapter.post(
        f"/v1/transit/keys/{name}/import", json={"ciphertext": wrap(client, material), **fields}
    )


def import_version(client: hvac.Client, name: str, material: bytes):
    return client.adapter.post(
        f"/v1/transit/keys/{name}/import_version", json={"ciphertext": wrap(client, material)}
    )


CASES = [(t, False) for t in ["aes256-gcm96", "chacha20-poly1305", "xchacha20-poly1305", "ed25519", "ecdsa-p256", "hmac"]]
CASES += [("aes256-gcm96", True), ("chacha20-poly1305", True)]
CASE_IDS = [f"{t}{'-derived' if d else ''}" for t, d in CASES]


@pytest.mark.parametrize(("key_type", "derived"), CASES, ids=CASE_IDS)
def test_the_same_imported_key_works_alike_in_openbao_and_vaultd(
    dev_vault: RunningVault, openbao: hvac.Client, unique: str, key_type: str, derived: bool
):
    vaultd = dev_vault.client()
    versions = [material_for(key_type), material_for(key_type)]
    for client in (vaultd, openbao):
        fields = {"type": key_type, "derived": derived}
        response = import_key(client, unique, versions[0], **fields)
        assert getattr(response, "status_code", 204) == 204
        assert import_version(client, unique, versions[1]).status_code == 204

    key = vaultd.secrets.transit.read_key(name=unique)["data"]
    assert key["type"] == key_type
    assert key["latest_version"] == 2
    assert key["imported_key"] is True
    assert key["imported_key_allow_rotation"] is False
    if derived:
        # Vault and OpenBao derive imported keys with the counter-mode KDF.
        assert key["kdf"] == "hmac-sha256-counter"
    if key_type in ("ed25519", "ecdsa-p256"):
        theirs = openbao.secrets.transit.read_key(name=unique)["data"]["keys"]
        assert {v: k["public_key"] for v, k in key["keys"].items()} == {
            v: k["public_key"] for v, k in theirs.items()
        }

    check(vaultd, unique, key_type, derived, produce(openbao, unique, key_type, derived))
    check(openbao, unique, key_type, derived, produce(vaultd, unique, key_type, derived))


@pytest.mark.parametrize("hash_function", list(HASHES))
def test_every_oaep_hash_vault_offers_unwraps(dev_vault: RunningVault, unique: str, hash_function: str):
    client = dev_vault.client()
    material = os.urandom(32)
    response = client.adapter.post(
        f"/v1/transit/keys/{unique}/import",
        json={"ciphertext": wrap(client, material, hash_function), "hash_function": hash_function},
    )
    assert response.status_code == 204
    ciphertext = post(client, f"encrypt/{unique}", {"plaintext": b64(b"x")})["ciphertext"]
    assert post(client, f"decrypt/{unique}", {"ciphertext": ciphertext})["plaintext"] == b64(b"x")


def test_the_wrapping_key_is_rsa_4096_and_stays_the_same(dev_vault: RunningVault):
    client = dev_vault.client()
    first = wrapping_key(client)
    assert first.key_size == 4096
    assert wrapping_key(client).public_numbers() == first.public_numbers()


def test_an_imported_key_rotates_only_when_allowed(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    import_key(client, unique, os.urandom(32))
    with pytest.raises(hvac.exceptions.InternalServerError, match="does not allow rotation"):
        client.secrets.transit.rotate_key(name=unique)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="cannot rotate automatically"):
        post(client, f"keys/{unique}/config", {"auto_rotate_period": "2h"})
    assert client.secrets.transit.read_key(name=unique)["data"]["latest_version"] == 1

    import_key(client, f"{unique}-r", os.urandom(32), allow_rotation=True)
    client.secrets.transit.rotate_key(name=f"{unique}-r")
    rotated = client.secrets.transit.read_key(name=f"{unique}-r")["data"]
    assert rotated["latest_version"] == 2
    # As in Vault, a rotated key is no longer an imported one, and takes no imported versions.
    assert rotated["imported_key"] is False
    with pytest.raises(hvac.exceptions.InternalServerError, match="only be used with an imported key"):
        import_version(client, f"{unique}-r", os.urandom(32))


def test_import_refusals_answer_as_vault_does(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    post(client, f"keys/{unique}-made")
    import_key(client, f"{unique}-imported", os.urandom(32))

    with pytest.raises(hvac.exceptions.InternalServerError, match="cannot be used with an existing key"):
        import_key(client, f"{unique}-imported", os.urandom(32))
    with pytest.raises(hvac.exceptions.InternalServerError, match="only be used with an imported key"):
        import_version(client, f"{unique}-made", os.urandom(32))
    with pytest.raises(hvac.exceptions.InternalServerError, match="no key found"):
        import_version(client, f"{unique}-missing", os.urandom(32))
    with pytest.raises(hvac.exceptions.InternalServerError, match="allow_rotation must be set"):
        import_key(client, f"{unique}-a", os.urandom(32), auto_rotate_period="2h")
    with pytest.raises(hvac.exceptions.InternalServerError, match="convergent encryption"):
        import_key(client, f"{unique}-c", os.urandom(32), convergent_encryption=True, derived=True)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="unknown key type"):
        import_key(client, f"{unique}-t", os.urandom(32), type="rsa-9000")


def test_bad_ciphertexts_are_refused_alike_and_create_nothing(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    good = wrap(client, os.urandom(32))
    raw = base64.b64decode(good)
    flipped_oaep = bytearray(raw)
    flipped_oaep[7] ^= 1
    flipped_kwp = bytearray(raw)
    flipped_kwp[-3] ^= 1
    # Whether the RSA or the key-wrap layer fails, the answer is the same.
    for bad in (bytes(flipped_oaep), bytes(flipped_kwp), os.urandom(600)):
        with pytest.raises(hvac.exceptions.InvalidRequest, match="does not unwrap") as refused:
            client.adapter.post(f"/v1/transit/keys/{unique}/import", json={"ciphertext": b64(bad)})
        assert "does not unwrap under this mount's wrapping key" in str(refused.value)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="does not unwrap"):
        client.adapter.post(
            f"/v1/transit/keys/{unique}/import", json={"ciphertext": good, "hash_function": "SHA512"}
        )
    for body, message in [
        ({"ciphertext": b64(b"short")}, "too short"),
        ({"ciphertext": "not base64!"}, "not base64"),
        ({}, "'ciphertext' is required"),
        ({"public_key": "-----BEGIN PUBLIC KEY-----"}, "private keys only"),
        ({"ciphertext": good, "hash_function": "MD5"}, "unknown hash function"),
        ({"ciphertext": wrap(client, os.urandom(16))}, "invalid key size 16 bytes"),
        ({"ciphertext": wrap(client, os.urandom(32)), "type": "ed25519"}, "not an ed25519 PKCS#8"),
    ]:
        with pytest.raises(hvac.exceptions.InvalidRequest, match=message):
            client.adapter.post(f"/v1/transit/keys/{unique}/import", json=body)
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.transit.read_key(name=unique)


def test_imported_material_stays_out_of_the_audit_log(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    material = os.urandom(32)
    wrapped = wrap(client, material)
    client.adapter.post(
        f"/v1/transit/keys/{unique}/import", json={"ciphertext": wrapped, "exportable": True}
    )
    exported = client.secrets.transit.export_key(name=unique, key_type="encryption-key")["data"]["keys"]
    assert exported == {"1": b64(material)}
    log = (dev_vault.data_dir / "audit.log").read_text()
    assert f"transit/keys/{unique}/import" in log
    assert b64(material) not in log
    assert wrapped[:40] not in log
