"""Transit backup and restore, driven by hvac, and keys carried between vaultd and a real
OpenBao server in both directions.

A key made in one and restored into the other must decrypt what the first encrypted, verify
what it signed and give the same HMACs, and what the second makes with it must work in the
first. Status codes follow Vault's: backup and restore refusals are 500 with a message.
"""

from __future__ import annotations

import base64

import hvac
import hvac.exceptions
import pytest

from conftest import RunningVault

KEY_TYPES = [
    "aes256-gcm96",
    "chacha20-poly1305",
    "xchacha20-poly1305",
    "ed25519",
    "ecdsa-p256",
    "hmac",
]
AEADS = {"aes256-gcm96", "chacha20-poly1305", "xchacha20-poly1305"}
CONTEXT = base64.b64encode(b"tenant-42").decode()
ASSOCIATED = base64.b64encode(b"row 7").decode()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def post(client: hvac.Client, path: str, body: dict | None = None) -> dict:
    """POSTs to `path` under /v1/transit/ and gives the answer's `data` ({} for a 204)."""
    response = client.adapter.post(f"/v1/transit/{path}", json=body or {})
    return response["data"] if isinstance(response, dict) else {}


def make_key(client: hvac.Client, name: str, key_type: str, derived: bool = False) -> None:
    """A key that can be backed up, with two versions."""
    body = {"type": key_type, "exportable": True, "allow_plaintext_backup": True}
    if key_type == "hmac":
        body["key_size"] = 32
    if derived:
        body["derived"] = True
    post(client, f"keys/{name}", body)
    post(client, f"keys/{name}/rotate")


def backup(client: hvac.Client, name: str) -> str:
    return client.secrets.transit.backup_key(name=name)["data"]["backup"]


def restore(client: hvac.Client, text: str, name: str | None = None, force: bool | None = None):
    return client.secrets.transit.restore_key(backup=text, name=name, force=force)


def produce(client: hvac.Client, name: str, key_type: str, derived: bool) -> dict[int, dict]:
    """What the key makes at versions 1 and 2: ciphertexts, signatures or HMACs."""
    made = {}
    for version in (1, 2):
        message = f"message for v{version} of a {key_type} key".encode()
        item = {"input": b64(message)}
        if key_type in AEADS:
            body = {"plaintext": b64(message), "key_version": version}
            if derived:
                body["context"] = CONTEXT
            else:
                body["associated_data"] = ASSOCIATED
            item["ciphertext"] = post(client, f"encrypt/{name}", body)["ciphertext"]
            item["plaintext"] = b64(message)
        elif key_type == "hmac":
            item["hmac"] = post(client, f"hmac/{name}", {"input": b64(message), "key_version": version})["hmac"]
        else:
            item["signature"] = post(client, f"sign/{name}", {"input": b64(message), "key_version": version})[
                "signature"
            ]
        assert next(iter(v for k, v in item.items() if k not in ("input", "plaintext"))).startswith(
            f"vault:v{version}:"
        ), item
        made[version] = item
    return made


def check(client: hvac.Client, name: str, key_type: str, derived: bool, made: dict[int, dict]) -> None:
    """`client`'s key `name` opens, verifies or reproduces everything in `made`."""
    for version, item in made.items():
        if key_type in AEADS:
            body = {"ciphertext": item["ciphertext"]}
            if derived:
                body["context"] = CONTEXT
            else:
                body["associated_data"] = ASSOCIATED
            assert post(client, f"decrypt/{name}", body)["plaintext"] == item["plaintext"], version
        elif key_type == "hmac":
            again = post(client, f"hmac/{name}", {"input": item["input"], "key_version": version})["hmac"]
            assert again == item["hmac"], version
            assert post(client, f"verify/{name}", {"input": item["input"], "hmac": item["hmac"]})["valid"] is True
        else:
            verdict = post(client, f"verify/{name}", {"input": item["input"], "signature": item["signature"]})
            assert verdict["valid"] is True, (version, verdict)
            if key_type == "ed25519":
                # Ed25519 signatures are deterministic: the same key signs the same bytes alike.
                again = post(client, f"sign/{name}", {"input": item["input"], "key_version": version})
                assert again["signature"] == item["signature"], version


CASES = [(t, False) for t in KEY_TYPES] + [("aes256-gcm96", True), ("chacha20-poly1305", True)]
CASE_IDS = [f"{t}{'-derived' if d else ''}" for t, d in CASES]


@pytest.mark.parametrize("born_in", ["openbao", "vaultd"])
@pytest.mark.parametrize(("key_type", "derived"), CASES, ids=CASE_IDS)
def test_keys_carry_over_between_openbao_and_vaultd(
    dev_vault: RunningVault, openbao: hvac.Client, unique: str, key_type: str, derived: bool, born_in: str
):
    vaultd = dev_vault.client()
    source, target = (openbao, vaultd) if born_in == "openbao" else (vaultd, openbao)
    make_key(source, unique, key_type, derived)
    made_by_source = produce(source, unique, key_type, derived)

    restore(target, backup(source, unique), name=f"{unique}-copy")
    copy = target.secrets.transit.read_key(name=f"{unique}-copy")["data"]
    assert copy["type"] == key_type
    assert copy["latest_version"] == 2
    assert copy["derived"] is derived
    assert copy["exportable"] is True
    assert copy["restore_info"]["version"] == 2

    check(target, f"{unique}-copy", key_type, derived, made_by_source)
    check(source, unique, key_type, derived, produce(target, f"{unique}-copy", key_type, derived))


def test_a_trimmed_key_carries_over_from_openbao(dev_vault: RunningVault, openbao: hvac.Client, unique: str):
    vaultd = dev_vault.client()
    make_key(openbao, unique, "aes256-gcm96")
    post(openbao, f"keys/{unique}/rotate")
    post(openbao, f"keys/{unique}/rotate")
    made = {
        v: {"ciphertext": post(openbao, f"encrypt/{unique}", {"plaintext": b64(b"kept"), "key_version": v})["ciphertext"]}
        for v in (3, 4)
    }
    post(openbao, f"keys/{unique}/config", {"min_decryption_version": 3, "min_encryption_version": 3})
    post(openbao, f"keys/{unique}/trim", {"min_available_version": 3})

    restore(vaultd, backup(openbao, unique))
    key = vaultd.secrets.transit.read_key(name=unique)["data"]
    assert key["min_available_version"] == 3
    assert key["min_decryption_version"] == 3
    assert sorted(key["keys"]) == ["3", "4"]
    for version, item in made.items():
        assert post(vaultd, f"decrypt/{unique}", item)["plaintext"] == b64(b"kept"), version
    # And back again: OpenBao reads vaultd's archive of a trimmed key.
    restore(openbao, backup(vaultd, unique), name=f"{unique}-back")
    back = openbao.secrets.transit.read_key(name=f"{unique}-back")["data"]
    assert back["min_available_version"] == 3
    assert post(openbao, f"decrypt/{unique}-back", made[3])["plaintext"] == b64(b"kept")


def test_backup_needs_an_exportable_key_that_allows_plaintext_backup(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    post(client, f"keys/{unique}-plain")
    post(client, f"keys/{unique}-exportable", {"exportable": True})
    with pytest.raises(hvac.exceptions.InternalServerError, match="exporting is disallowed"):
        backup(client, f"{unique}-plain")
    with pytest.raises(hvac.exceptions.InternalServerError, match="plaintext backup is disallowed"):
        backup(client, f"{unique}-exportable")
    with pytest.raises(hvac.exceptions.InternalServerError, match="not found"):
        backup(client, f"{unique}-missing")


def test_backup_records_when_it_was_taken(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    make_key(client, unique, "aes256-gcm96")
    assert "backup_info" not in client.secrets.transit.read_key(name=unique)["data"]
    backup(client, unique)
    info = client.secrets.transit.read_key(name=unique)["data"]["backup_info"]
    assert info["version"] == 2
    assert info["time"].endswith("Z")


def test_restore_refuses_an_existing_key_unless_forced(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    make_key(client, f"{unique}-a", "aes256-gcm96")
    post(client, f"keys/{unique}-b", {"exportable": True})
    secret = post(client, f"encrypt/{unique}-a", {"plaintext": b64(b"from a")})["ciphertext"]
    text = backup(client, f"{unique}-a")

    with pytest.raises(hvac.exceptions.InternalServerError, match="already exists"):
        restore(client, text, name=f"{unique}-b")
    # Refused means unchanged: b still has its own single version.
    assert client.secrets.transit.read_key(name=f"{unique}-b")["data"]["latest_version"] == 1

    response = restore(client, text, name=f"{unique}-b", force=True)
    assert response.status_code == 204
    replaced = client.secrets.transit.read_key(name=f"{unique}-b")["data"]
    assert replaced["latest_version"] == 2
    assert replaced["allow_plaintext_backup"] is True
    assert post(client, f"decrypt/{unique}-b", {"ciphertext": secret})["plaintext"] == b64(b"from a")


def test_restore_takes_the_name_from_the_backup(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    make_key(client, unique, "ed25519")
    signed = post(client, f"sign/{unique}", {"input": b64(b"hello")})["signature"]
    text = backup(client, unique)
    post(client, f"keys/{unique}/config", {"deletion_allowed": True})
    client.secrets.transit.delete_key(name=unique)

    restore(client, text)
    assert post(client, f"verify/{unique}", {"input": b64(b"hello"), "signature": signed})["valid"] is True


def test_restore_refuses_bad_input_and_changes_nothing(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    with pytest.raises(hvac.exceptions.InvalidRequest, match="'backup' must be supplied"):
        client.adapter.post("/v1/transit/restore", json={})
    with pytest.raises(hvac.exceptions.InternalServerError, match="key names cannot be paths"):
        client.adapter.post(f"/v1/transit/restore/{unique}/sub", json={"backup": b64(b"{}")})
    # Vault answers a malformed backup with 500 (or, for an empty document, drops the
    # connection); vaultd answers 400 and names what is wrong.
    for bad in ["!!!", b64(b"{}"), b64(b"not json"), b64(b'{"policy": {"name": "k", "type": 3}}')]:
        with pytest.raises(hvac.exceptions.InvalidRequest):
            restore(client, bad, name=unique)
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.transit.read_key(name=unique)


def test_backups_stay_out_of_the_audit_log(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    make_key(client, unique, "aes256-gcm96")
    text = backup(client, unique)
    restore(client, text, name=f"{unique}-copy")
    exported = client.secrets.transit.export_key(name=unique, key_type="encryption-key")["data"]["keys"]
    log = (dev_vault.data_dir / "audit.log").read_text()
    assert f"transit/backup/{unique}" in log
    assert text[:24] not in log
    for material in exported.values():
        assert material not in log
