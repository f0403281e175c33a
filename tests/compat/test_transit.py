"""The transit engine driven by hvac, expecting the answers Vault and OpenBao give.

A dev vault mounts transit at `transit/`. Expected values come from Vault's transit API
documentation and from what its transit backend returns for the same requests.
"""

from __future__ import annotations

import base64
import re
import time

import hvac
import hvac.exceptions
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from conftest import RunningVault

CIPHERTEXT = re.compile(r"^vault:v\d+:[A-Za-z0-9+/=]+$")
VERSIONED = re.compile(r"^vault:v(\d+):([A-Za-z0-9+/=]+)$")
TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")

# AES-GCM and ChaCha20-Poly1305 as transit uses them: a 96-bit nonce, then the sealed
# data, then a 128-bit tag.
NONCE_LEN = 12
TAG_LEN = 16

# FIPS 180-2 test vectors for the message "abc".
ABC_SHA256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
ABC_SHA256_BASE64 = "ungWv48Bz+pBQUDeXa4iI7ADYaOWF3qctBD/YfIAFa0="
ABC_SHA512 = (
    "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a"
    "2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
)


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def unb64(text: str) -> bytes:
    return base64.b64decode(text, validate=True)


def transit(client: hvac.Client):
    return client.secrets.transit


def data_of(response) -> dict:
    """The `data` of a 200 JSON answer; hvac hands back a Response object for anything else."""
    assert isinstance(response, dict), (
        f"expected HTTP 200 with a JSON body, got {getattr(response, 'status_code', response)!r}"
    )
    return response["data"]


def versioned(text: str) -> tuple[int, bytes]:
    """Version and decoded body of `vault:v<N>:<base64>`."""
    assert CIPHERTEXT.match(text), text
    match = VERSIONED.match(text)
    assert match, text
    return int(match.group(1)), unb64(match.group(2))


def create_key(client: hvac.Client, name: str, key_type: str, **kwargs) -> dict:
    if key_type in ("hmac", "xchacha20-poly1305"):
        # hvac checks key_type against a list that predates these types, so the request
        # goes through the adapter; it is the same POST transit/keys/:name.
        response = client.adapter.post(f"/v1/transit/keys/{name}", json={"type": key_type, **kwargs})
    else:
        response = transit(client).create_key(name=name, key_type=key_type, **kwargs)
    return data_of(response)


def encrypt(client: hvac.Client, name: str, plaintext: bytes, **kwargs) -> dict:
    return transit(client).encrypt_data(name=name, plaintext=b64(plaintext), **kwargs)["data"]


def decrypt(client: hvac.Client, name: str, ciphertext: str, **kwargs) -> bytes:
    return unb64(transit(client).decrypt_data(name=name, ciphertext=ciphertext, **kwargs)["data"]["plaintext"])


def tamper(ciphertext: str) -> str:
    """The same ciphertext with one bit of its sealed body flipped."""
    version, body = versioned(ciphertext)
    flipped = bytearray(body)
    flipped[NONCE_LEN] ^= 0x01
    return f"vault:v{version}:{b64(bytes(flipped))}"


# --- keys: create and read -----------------------------------------------------------------

# Vault's supports_* flags per key type (keysutil KeyType.*Supported).
SUPPORTS = {
    "aes256-gcm96": dict(encryption=True, decryption=True, signing=False, derivation=True),
    "chacha20-poly1305": dict(encryption=True, decryption=True, signing=False, derivation=True),
    "xchacha20-poly1305": dict(encryption=True, decryption=True, signing=False, derivation=True),
    # Vault derives ed25519 keys per context; vaultd does not, and says so (a deliberate
    # difference, documented in docs/transit.md).
    "ed25519": dict(encryption=False, decryption=False, signing=True, derivation=False),
    "ecdsa-p256": dict(encryption=False, decryption=False, signing=True, derivation=False),
    "hmac": dict(encryption=False, decryption=False, signing=False, derivation=False),
}


@pytest.mark.parametrize("key_type", list(SUPPORTS))
def test_create_and_read_key(dev_vault: RunningVault, unique: str, key_type: str):
    client = dev_vault.client()
    created = create_key(client, unique, key_type)
    assert created["name"] == unique
    assert created["type"] == key_type
    assert created["latest_version"] == 1

    key = data_of(transit(client).read_key(name=unique))
    assert key["name"] == unique
    assert key["type"] == key_type
    assert key["latest_version"] == 1
    assert key["min_available_version"] == 0
    assert key["min_decryption_version"] == 1
    assert key["min_encryption_version"] == 0
    assert key["deletion_allowed"] is False
    assert key["exportable"] is False
    assert key["allow_plaintext_backup"] is False
    assert key["derived"] is False
    assert key["auto_rotate_period"] == 0
    assert key["imported_key"] is False


@pytest.mark.parametrize("key_type", list(SUPPORTS))
def test_read_key_supports_flags(dev_vault: RunningVault, unique: str, key_type: str):
    client = dev_vault.client()
    create_key(client, unique, key_type)
    key = data_of(transit(client).read_key(name=unique))
    flags = SUPPORTS[key_type]
    assert {
        "encryption": key["supports_encryption"],
        "decryption": key["supports_decryption"],
        "signing": key["supports_signing"],
        "derivation": key["supports_derivation"],
    } == flags


@pytest.mark.parametrize("key_type", ["aes256-gcm96", "chacha20-poly1305"])
def test_read_key_versions_symmetric(dev_vault: RunningVault, unique: str, key_type: str):
    # Symmetric keys: version -> creation time in Unix seconds.
    client = dev_vault.client()
    create_key(client, unique, key_type)
    keys = data_of(transit(client).read_key(name=unique))["keys"]
    assert list(keys) == ["1"]
    created_at = keys["1"]
    assert isinstance(created_at, int) and not isinstance(created_at, bool)
    assert abs(created_at - time.time()) < 120


def test_read_key_versions_ed25519(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "ed25519")
    keys = data_of(transit(client).read_key(name=unique))["keys"]
    assert list(keys) == ["1"]
    entry = keys["1"]
    assert len(unb64(entry["public_key"])) == 32
    assert TIMESTAMP.match(entry["creation_time"]), entry["creation_time"]
    assert entry["name"] == "ed25519"


def test_read_key_versions_ecdsa_p256(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "ecdsa-p256")
    keys = data_of(transit(client).read_key(name=unique))["keys"]
    assert list(keys) == ["1"]
    entry = keys["1"]
    public = serialization.load_pem_public_key(entry["public_key"].encode())
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert public.curve.name == "secp256r1"
    assert TIMESTAMP.match(entry["creation_time"]), entry["creation_time"]
    # Vault names the version by its curve (Go's elliptic.P256().Params().Name).
    assert entry["name"] == "P-256"


def test_read_key_hmac_lists_no_versions(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "hmac")
    key = data_of(transit(client).read_key(name=unique))
    assert key["type"] == "hmac"
    assert "keys" not in key


def test_create_existing_key_keeps_it_and_warns(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    again = transit(client).create_key(name=unique, key_type="chacha20-poly1305")
    assert again["data"]["type"] == "aes256-gcm96"
    assert again["data"]["latest_version"] == 1
    assert again["warnings"] == [f"key {unique} already existed"]


def test_read_missing_key_is_404(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    with pytest.raises(hvac.exceptions.InvalidPath):
        transit(client).read_key(name=unique)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="encryption key not found"):
        transit(client).decrypt_data(name=unique, ciphertext="vault:v1:" + b64(bytes(40)))


def test_list_keys(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    with pytest.raises(hvac.exceptions.InvalidPath):
        transit(client).list_keys()
    names = [f"{unique}-c", f"{unique}-a", f"{unique}-b"]
    for name in names:
        create_key(client, name, "aes256-gcm96")
    assert transit(client).list_keys()["data"]["keys"] == sorted(names)


def test_delete_key_needs_deletion_allowed(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="deletion is not allowed"):
        transit(client).delete_key(name=unique)
    assert data_of(transit(client).read_key(name=unique))["name"] == unique

    updated = data_of(transit(client).update_key_configuration(name=unique, deletion_allowed=True))
    assert updated["deletion_allowed"] is True
    assert data_of(transit(client).read_key(name=unique))["deletion_allowed"] is True

    deleted = transit(client).delete_key(name=unique)
    assert deleted.status_code == 204
    with pytest.raises(hvac.exceptions.InvalidPath):
        transit(client).read_key(name=unique)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).delete_key(name=unique)


# --- encrypt and decrypt --------------------------------------------------------------------


# XChaCha20-Poly1305 ciphertexts carry a 192-bit nonce.
@pytest.mark.parametrize(
    "key_type, nonce_len",
    [("aes256-gcm96", NONCE_LEN), ("chacha20-poly1305", NONCE_LEN), ("xchacha20-poly1305", 24)],
)
def test_encrypt_decrypt_round_trip(
    dev_vault: RunningVault, unique: str, key_type: str, nonce_len: int
):
    client = dev_vault.client()
    create_key(client, unique, key_type)
    plaintext = b"the quick brown fox \x00\xff"
    result = encrypt(client, unique, plaintext)
    assert result["key_version"] == 1
    version, body = versioned(result["ciphertext"])
    assert version == 1
    assert len(body) == nonce_len + len(plaintext) + TAG_LEN
    assert decrypt(client, unique, result["ciphertext"]) == plaintext

    # A fresh nonce each time: the same plaintext never gives the same ciphertext.
    assert encrypt(client, unique, plaintext)["ciphertext"] != result["ciphertext"]
    empty = encrypt(client, unique, b"")
    assert len(versioned(empty["ciphertext"])[1]) == nonce_len + TAG_LEN
    assert decrypt(client, unique, empty["ciphertext"]) == b""


def test_encrypt_creates_a_missing_key(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    result = encrypt(client, unique, b"upsert")
    assert result["key_version"] == 1
    assert decrypt(client, unique, result["ciphertext"]) == b"upsert"
    key = data_of(transit(client).read_key(name=unique))
    assert key["type"] == "aes256-gcm96"
    assert key["derived"] is False


def test_encrypt_upsert_uses_requested_type(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    result = encrypt(client, unique, b"upsert", type="chacha20-poly1305")
    assert decrypt(client, unique, result["ciphertext"]) == b"upsert"
    assert data_of(transit(client).read_key(name=unique))["type"] == "chacha20-poly1305"


def test_encrypt_upsert_with_context_creates_derived_key(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    context = b64(b"tenant-1")
    result = encrypt(client, unique, b"upsert", context=context)
    assert decrypt(client, unique, result["ciphertext"], context=context) == b"upsert"
    assert data_of(transit(client).read_key(name=unique))["derived"] is True


def test_decrypt_refuses_tampered_ciphertext(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    ciphertext = encrypt(client, unique, b"integrity")["ciphertext"]
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).decrypt_data(name=unique, ciphertext=tamper(ciphertext))
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).decrypt_data(name=unique, ciphertext="vault:v1:not base64!")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).decrypt_data(name=unique, ciphertext=ciphertext.replace("vault:v1:", "vault:v9:"))
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).encrypt_data(name=unique, plaintext="not base64!")
    assert decrypt(client, unique, ciphertext) == b"integrity"


def test_derived_key_needs_the_same_context(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    created = create_key(client, unique, "aes256-gcm96", derived=True)
    assert created["derived"] is True
    context = b64(b"user-42")
    ciphertext = encrypt(client, unique, b"per-user", context=context)["ciphertext"]
    assert decrypt(client, unique, ciphertext, context=context) == b"per-user"
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).decrypt_data(name=unique, ciphertext=ciphertext, context=b64(b"user-43"))
    with pytest.raises(hvac.exceptions.InvalidRequest, match="context"):
        transit(client).decrypt_data(name=unique, ciphertext=ciphertext)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="context"):
        transit(client).encrypt_data(name=unique, plaintext=b64(b"no context"))


def test_derived_key_reads_its_kdf(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "chacha20-poly1305", derived=True)
    key = data_of(transit(client).read_key(name=unique))
    assert key["derived"] is True
    assert key["kdf"] == "hkdf_sha256"
    assert key["convergent_encryption"] is False


def test_associated_data_must_match(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    aad = b64(b"header v1")
    result = encrypt(client, unique, b"payload", associated_data=aad)
    assert len(versioned(result["ciphertext"])[1]) == NONCE_LEN + len(b"payload") + TAG_LEN
    assert decrypt(client, unique, result["ciphertext"], associated_data=aad) == b"payload"
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).decrypt_data(name=unique, ciphertext=result["ciphertext"], associated_data=b64(b"header v2"))
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).decrypt_data(name=unique, ciphertext=result["ciphertext"])


def test_encrypt_refused_for_signing_and_hmac_keys(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    for key_type in ("ed25519", "hmac"):
        create_key(client, f"{unique}-{key_type}", key_type)
        with pytest.raises(hvac.exceptions.InvalidRequest):
            transit(client).encrypt_data(name=f"{unique}-{key_type}", plaintext=b64(b"x"))


# --- batches ---------------------------------------------------------------------------------


def test_batch_encrypt_and_decrypt(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    plaintexts = [b"first", b"", b"third item"]
    encrypted = transit(client).encrypt_data(
        name=unique,
        batch_input=[{"plaintext": b64(p), "reference": f"ref-{i}"} for i, p in enumerate(plaintexts)],
    )["data"]["batch_results"]
    assert len(encrypted) == 3
    for i, (item, plaintext) in enumerate(zip(encrypted, plaintexts)):
        assert "error" not in item, item
        assert item["reference"] == f"ref-{i}"
        assert item["key_version"] == 1
        assert len(versioned(item["ciphertext"])[1]) == NONCE_LEN + len(plaintext) + TAG_LEN

    decrypted = transit(client).decrypt_data(
        name=unique,
        batch_input=[{"ciphertext": item["ciphertext"], "reference": f"back-{i}"} for i, item in enumerate(encrypted)],
    )["data"]["batch_results"]
    assert [unb64(item["plaintext"]) for item in decrypted] == plaintexts
    assert [item["reference"] for item in decrypted] == ["back-0", "back-1", "back-2"]


def test_batch_results_always_carry_reference(dev_vault: RunningVault, unique: str):
    # Vault's batch result items serialise `reference` without omitempty.
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    encrypted = transit(client).encrypt_data(name=unique, batch_input=[{"plaintext": b64(b"a")}])
    assert encrypted["data"]["batch_results"][0]["reference"] == ""
    decrypted = transit(client).decrypt_data(
        name=unique, batch_input=[{"ciphertext": encrypted["data"]["batch_results"][0]["ciphertext"]}]
    )
    assert decrypted["data"]["batch_results"][0] == {"plaintext": b64(b"a"), "reference": ""}


def test_batch_with_a_failed_item_is_400(dev_vault: RunningVault, unique: str):
    # Without partial_failure_response_code, any failed item makes the answer a 400.
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    good = encrypt(client, unique, b"good")["ciphertext"]
    with pytest.raises(hvac.exceptions.InvalidRequest) as caught:
        transit(client).decrypt_data(name=unique, batch_input=[{"ciphertext": good}, {"ciphertext": tamper(good)}])
    results = caught.value.json["data"]["batch_results"]
    assert results[0]["plaintext"] == b64(b"good")
    assert results[1]["error"]


# --- rotation, minimum versions, rewrap, trim -----------------------------------------------


def test_rotate_key(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    old = encrypt(client, unique, b"before rotation")["ciphertext"]

    rotated = data_of(transit(client).rotate_key(name=unique))
    assert rotated["latest_version"] == 2
    key = data_of(transit(client).read_key(name=unique))
    assert key["latest_version"] == 2
    assert sorted(key["keys"]) == ["1", "2"]

    new = encrypt(client, unique, b"after rotation")
    assert new["key_version"] == 2
    assert new["ciphertext"].startswith("vault:v2:")
    assert decrypt(client, unique, old) == b"before rotation"
    assert decrypt(client, unique, new["ciphertext"]) == b"after rotation"
    pinned = encrypt(client, unique, b"pinned", key_version=1)
    assert pinned["key_version"] == 1
    assert pinned["ciphertext"].startswith("vault:v1:")


def test_rewrap_after_rotation(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    old = encrypt(client, unique, b"rewrap me")["ciphertext"]
    transit(client).rotate_key(name=unique)
    rewrapped = transit(client).rewrap_data(name=unique, ciphertext=old)["data"]
    assert rewrapped["key_version"] == 2
    version, body = versioned(rewrapped["ciphertext"])
    assert version == 2
    assert len(body) == NONCE_LEN + len(b"rewrap me") + TAG_LEN
    assert decrypt(client, unique, rewrapped["ciphertext"]) == b"rewrap me"


def test_min_decryption_version_refuses_older_ciphertext(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    v1 = encrypt(client, unique, b"old")["ciphertext"]
    transit(client).rotate_key(name=unique)
    v2 = encrypt(client, unique, b"new")["ciphertext"]

    configured = data_of(transit(client).update_key_configuration(name=unique, min_decryption_version=2))
    assert configured["min_decryption_version"] == 2
    with pytest.raises(hvac.exceptions.InvalidRequest) as caught:
        transit(client).decrypt_data(name=unique, ciphertext=v1)
    assert caught.value.errors and "too old" in caught.value.errors[0]
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).rewrap_data(name=unique, ciphertext=v1)
    assert decrypt(client, unique, v2) == b"new"

    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).update_key_configuration(name=unique, min_decryption_version=3)
    assert data_of(transit(client).read_key(name=unique))["min_decryption_version"] == 2


def test_read_key_lists_only_decryptable_versions(dev_vault: RunningVault, unique: str):
    # Versions below min_decryption_version move to the archive and leave `keys`.
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    transit(client).rotate_key(name=unique)
    transit(client).rotate_key(name=unique)
    transit(client).update_key_configuration(name=unique, min_decryption_version=2)
    key = data_of(transit(client).read_key(name=unique))
    assert key["latest_version"] == 3
    assert sorted(key["keys"]) == ["2", "3"]


def test_trim_key(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    ciphertexts = {1: encrypt(client, unique, b"v1")["ciphertext"]}
    for version in (2, 3, 4):
        transit(client).rotate_key(name=unique)
        ciphertexts[version] = encrypt(client, unique, f"v{version}".encode())["ciphertext"]
    transit(client).update_key_configuration(name=unique, min_decryption_version=3)
    transit(client).update_key_configuration(name=unique, min_encryption_version=3)

    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).trim_key(name=unique, min_version=4)

    transit(client).trim_key(name=unique, min_version=3)
    key = data_of(transit(client).read_key(name=unique))
    assert key["min_available_version"] == 3
    assert sorted(key["keys"]) == ["3", "4"]
    assert decrypt(client, unique, ciphertexts[3]) == b"v3"
    assert decrypt(client, unique, ciphertexts[4]) == b"v4"
    for version in (1, 2):
        with pytest.raises(hvac.exceptions.InvalidRequest):
            transit(client).decrypt_data(name=unique, ciphertext=ciphertexts[version])
    # Trimmed versions are gone: the minimum cannot go back down.
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).update_key_configuration(name=unique, min_decryption_version=2)


def test_trim_key_answers_with_the_key(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    transit(client).rotate_key(name=unique)
    transit(client).update_key_configuration(name=unique, min_decryption_version=2)
    transit(client).update_key_configuration(name=unique, min_encryption_version=2)
    trimmed = data_of(transit(client).trim_key(name=unique, min_version=2))
    assert trimmed["name"] == unique
    assert trimmed["min_available_version"] == 2
    assert sorted(trimmed["keys"]) == ["2"]


def test_trim_key_cannot_decrement(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    transit(client).rotate_key(name=unique)
    transit(client).rotate_key(name=unique)
    transit(client).update_key_configuration(name=unique, min_decryption_version=3)
    transit(client).update_key_configuration(name=unique, min_encryption_version=3)
    transit(client).trim_key(name=unique, min_version=3)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).trim_key(name=unique, min_version=2)


def test_trim_key_needs_min_encryption_version(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    transit(client).rotate_key(name=unique)
    transit(client).update_key_configuration(name=unique, min_decryption_version=2)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).trim_key(name=unique, min_version=2)
    assert data_of(transit(client).read_key(name=unique))["min_available_version"] == 0


# --- data keys -------------------------------------------------------------------------------


def test_generate_data_key_plaintext(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    result = transit(client).generate_data_key(name=unique, key_type="plaintext")["data"]
    assert result["key_version"] == 1
    data_key = unb64(result["plaintext"])
    assert len(data_key) == 32
    version, body = versioned(result["ciphertext"])
    assert version == 1
    assert len(body) == NONCE_LEN + 32 + TAG_LEN
    assert decrypt(client, unique, result["ciphertext"]) == data_key

    for bits, size in ((128, 16), (512, 64)):
        sized = transit(client).generate_data_key(name=unique, key_type="plaintext", bits=bits)["data"]
        assert len(unb64(sized["plaintext"])) == size
        assert decrypt(client, unique, sized["ciphertext"]) == unb64(sized["plaintext"])


def test_generate_data_key_wrapped(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    result = transit(client).generate_data_key(name=unique, key_type="wrapped")["data"]
    assert "plaintext" not in result
    assert result["key_version"] == 1
    assert CIPHERTEXT.match(result["ciphertext"])
    assert len(decrypt(client, unique, result["ciphertext"])) == 32


# --- random and hash -------------------------------------------------------------------------


def test_generate_random_bytes(dev_vault: RunningVault):
    client = dev_vault.client()
    default = transit(client).generate_random_bytes()["data"]["random_bytes"]
    assert len(unb64(default)) == 32

    as_hex = transit(client).generate_random_bytes(n_bytes=16, output_format="hex")["data"]["random_bytes"]
    assert re.fullmatch(r"[0-9a-f]{32}", as_hex), as_hex

    as_base64 = transit(client).generate_random_bytes(n_bytes=24, output_format="base64")["data"]["random_bytes"]
    assert len(as_base64) == 32
    assert len(unb64(as_base64)) == 24
    assert as_base64 != transit(client).generate_random_bytes(n_bytes=24)["data"]["random_bytes"]


def test_hash_data(dev_vault: RunningVault):
    client = dev_vault.client()
    abc = b64(b"abc")
    assert transit(client).hash_data(hash_input=abc)["data"]["sum"] == ABC_SHA256
    assert transit(client).hash_data(hash_input=abc, algorithm="sha2-256")["data"]["sum"] == ABC_SHA256
    assert transit(client).hash_data(hash_input=abc, output_format="base64")["data"]["sum"] == ABC_SHA256_BASE64
    assert transit(client).hash_data(hash_input=abc, algorithm="sha2-512")["data"]["sum"] == ABC_SHA512


# --- HMAC ------------------------------------------------------------------------------------


@pytest.mark.parametrize("key_type", ["hmac", "aes256-gcm96"])
def test_hmac_and_verify(dev_vault: RunningVault, unique: str, key_type: str):
    client = dev_vault.client()
    create_key(client, unique, key_type)
    message = b64(b"message to authenticate")

    mac = transit(client).generate_hmac(name=unique, hash_input=message)["data"]["hmac"]
    version, tag = versioned(mac)
    assert version == 1
    assert len(tag) == 32
    assert transit(client).generate_hmac(name=unique, hash_input=message)["data"]["hmac"] == mac

    verified = transit(client).verify_signed_data(name=unique, hash_input=message, hmac=mac)
    assert verified["data"]["valid"] is True
    tampered = transit(client).verify_signed_data(name=unique, hash_input=b64(b"message to authenticatE"), hmac=mac)
    assert tampered["data"]["valid"] is False

    mac512 = transit(client).generate_hmac(name=unique, hash_input=message, algorithm="sha2-512")["data"]["hmac"]
    assert len(versioned(mac512)[1]) == 64
    verified512 = client.adapter.post(f"/v1/transit/verify/{unique}/sha2-512", json={"input": message, "hmac": mac512})
    assert verified512["data"]["valid"] is True


# --- signing ---------------------------------------------------------------------------------


def test_sign_and_verify_ed25519(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "ed25519")
    message = b"signed by ed25519"
    signed = transit(client).sign_data(name=unique, hash_input=b64(message))["data"]
    assert signed["key_version"] == 1
    version, signature = versioned(signed["signature"])
    assert version == 1
    assert len(signature) == 64

    verified = transit(client).verify_signed_data(name=unique, hash_input=b64(message), signature=signed["signature"])
    assert verified["data"]["valid"] is True
    modified = transit(client).verify_signed_data(
        name=unique, hash_input=b64(message + b"!"), signature=signed["signature"]
    )
    assert modified["data"]["valid"] is False

    # The public key that read_key shows checks the signature too.
    public = data_of(transit(client).read_key(name=unique))["keys"]["1"]["public_key"]
    ed25519.Ed25519PublicKey.from_public_bytes(unb64(public)).verify(signature, message)


def test_sign_and_verify_ecdsa_p256(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "ecdsa-p256")
    message = b"signed by ecdsa-p256"
    signed = transit(client).sign_data(name=unique, hash_input=b64(message), hash_algorithm="sha2-256")["data"]
    assert signed["key_version"] == 1
    version, signature = versioned(signed["signature"])
    assert version == 1
    assert signature[0] == 0x30  # ASN.1 SEQUENCE

    verified = transit(client).verify_signed_data(
        name=unique, hash_input=b64(message), signature=signed["signature"], hash_algorithm="sha2-256"
    )
    assert verified["data"]["valid"] is True
    modified = transit(client).verify_signed_data(
        name=unique, hash_input=b64(b"Signed by ecdsa-p256"), signature=signed["signature"], hash_algorithm="sha2-256"
    )
    assert modified["data"]["valid"] is False

    pem = data_of(transit(client).read_key(name=unique))["keys"]["1"]["public_key"]
    public = serialization.load_pem_public_key(pem.encode())
    public.verify(signature, message, ec.ECDSA(hashes.SHA256()))
    with pytest.raises(InvalidSignature):
        public.verify(signature, message + b"!", ec.ECDSA(hashes.SHA256()))


def test_verify_takes_the_name_hvac_sends_without_warning(dev_vault: RunningVault, unique: str):
    # hvac puts `name` in the verify body too; it is a field of the verify path, so Vault
    # does not list it among ignored parameters.
    client = dev_vault.client()
    create_key(client, unique, "ed25519")
    message = b64(b"quiet")
    signature = transit(client).sign_data(name=unique, hash_input=message)["data"]["signature"]
    verified = transit(client).verify_signed_data(name=unique, hash_input=message, signature=signature)
    assert verified["data"]["valid"] is True
    assert not verified.get("warnings"), verified.get("warnings")


def test_sign_after_rotation_uses_new_version(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "ed25519")
    message = b64(b"rotating signer")
    v1 = transit(client).sign_data(name=unique, hash_input=message)["data"]["signature"]
    transit(client).rotate_key(name=unique)
    v2 = transit(client).sign_data(name=unique, hash_input=message)["data"]
    assert v2["key_version"] == 2
    assert v2["signature"].startswith("vault:v2:")
    for signature in (v1, v2["signature"]):
        assert transit(client).verify_signed_data(name=unique, hash_input=message, signature=signature)["data"]["valid"] is True

    transit(client).update_key_configuration(name=unique, min_decryption_version=2)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).verify_signed_data(name=unique, hash_input=message, signature=v1)


def test_sign_refused_for_encryption_keys(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).sign_data(name=unique, hash_input=b64(b"x"))


# --- export ------------------------------------------------------------------------------


def test_export_needs_exportable(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96")
    with pytest.raises(hvac.exceptions.InvalidRequest, match="not exportable"):
        transit(client).export_key(name=unique, key_type="encryption-key")


@pytest.mark.parametrize("key_type", ["aes256-gcm96", "chacha20-poly1305"])
def test_exported_encryption_key_opens_the_ciphertext(
    dev_vault: RunningVault, unique: str, key_type: str
):
    # The exported key and the ciphertext layout are exactly Vault's: an independent AEAD
    # opens what vaultd sealed.
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM, ChaCha20Poly1305

    client = dev_vault.client()
    create_key(client, unique, key_type, exportable=True)
    transit(client).rotate_key(name=unique)
    sealed = encrypt(client, unique, b"carried over", associated_data=b64(b"ctx"))["ciphertext"]
    exported = data_of(transit(client).export_key(name=unique, key_type="encryption-key"))
    assert exported["name"] == unique and exported["type"] == key_type
    assert sorted(exported["keys"]) == ["1", "2"]
    version, body = versioned(sealed)
    assert version == 2
    key = unb64(exported["keys"]["2"])
    assert len(key) == 32
    aead = AESGCM(key) if key_type == "aes256-gcm96" else ChaCha20Poly1305(key)
    assert aead.decrypt(body[:NONCE_LEN], body[NONCE_LEN:], b"ctx") == b"carried over"

    one = data_of(transit(client).export_key(name=unique, key_type="encryption-key", version="1"))
    assert list(one["keys"]) == ["1"] and one["keys"]["1"] == exported["keys"]["1"]
    latest = data_of(transit(client).export_key(name=unique, key_type="encryption-key", version="latest"))
    assert list(latest["keys"]) == ["2"]
    with pytest.raises(hvac.exceptions.InvalidRequest):
        transit(client).export_key(name=unique, key_type="signing-key")


def test_exported_hmac_key_computes_the_same_hmac(dev_vault: RunningVault, unique: str):
    import hmac as std_hmac
    import hashlib

    client = dev_vault.client()
    create_key(client, unique, "aes256-gcm96", exportable=True)
    mac = transit(client).generate_hmac(name=unique, hash_input=b64(b"message"))["data"]["hmac"]
    key = unb64(data_of(transit(client).export_key(name=unique, key_type="hmac-key"))["keys"]["1"])
    expected = std_hmac.new(key, b"message", hashlib.sha256).digest()
    assert versioned(mac) == (1, expected)


def test_exported_ed25519_key_is_seed_and_public_key(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "ed25519", exportable=True)
    raw = unb64(data_of(transit(client).export_key(name=unique, key_type="signing-key"))["keys"]["1"])
    assert len(raw) == 64
    private = ed25519.Ed25519PrivateKey.from_private_bytes(raw[:32])
    public = private.public_key().public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    assert public == raw[32:]
    assert b64(public) == data_of(transit(client).read_key(name=unique))["keys"]["1"]["public_key"]
    # A signature made with the exported key verifies in the vault.
    signature = "vault:v1:" + b64(private.sign(b"outside"))
    verified = transit(client).verify_signed_data(name=unique, hash_input=b64(b"outside"), signature=signature)
    assert verified["data"]["valid"] is True


def test_exported_ecdsa_key_is_a_sec1_pem(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    create_key(client, unique, "ecdsa-p256", exportable=True)
    text = data_of(transit(client).export_key(name=unique, key_type="signing-key"))["keys"]["1"]
    assert text.startswith("-----BEGIN EC PRIVATE KEY-----\n")
    assert text.endswith("\n-----END EC PRIVATE KEY-----")
    private = serialization.load_pem_private_key(text.encode(), password=None)
    assert isinstance(private, ec.EllipticCurvePrivateKey)
    assert private.curve.name == "secp256r1"
    # Byte for byte what Go's x509.MarshalECPrivateKey writes for this key.
    assert text == private.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    ).decode().strip()
    pem = data_of(transit(client).read_key(name=unique))["keys"]["1"]["public_key"]
    assert private.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    ).decode() == pem


def test_exported_hmac_key_of_an_hmac_key_computes_its_hmac(dev_vault: RunningVault, unique: str):
    import hmac as std_hmac
    import hashlib

    client = dev_vault.client()
    create_key(client, unique, "hmac", exportable=True)
    mac = transit(client).generate_hmac(name=unique, hash_input=b64(b"message"))["data"]["hmac"]
    key = unb64(data_of(transit(client).export_key(name=unique, key_type="hmac-key"))["keys"]["1"])
    assert versioned(mac) == (1, std_hmac.new(key, b"message", hashlib.sha256).digest())


def test_encrypt_upsert_refuses_a_type_that_cannot_encrypt(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.adapter.post(
            f"/v1/transit/encrypt/{unique}", json={"plaintext": b64(b"x"), "type": "ed25519"}
        )
    # Nothing was created.
    with pytest.raises(hvac.exceptions.InvalidPath):
        transit(client).read_key(name=unique)
