"""vaultd driven by hvac, the Python client for Vault, expecting Vault's answers."""

from __future__ import annotations

import re
import time

import hvac
import hvac.exceptions
import pytest
import requests

from conftest import RunningVault

TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?Z$")


def kv(client: hvac.Client):
    return client.secrets.kv.v2


def read(client: hvac.Client, path: str, version: int | None = None, mount_point: str = "secret"):
    return kv(client).read_secret_version(
        path=path, version=version, mount_point=mount_point, raise_on_deleted_version=True
    )


# --- sys: status ---------------------------------------------------------------------------


def test_read_health_status(dev_vault: RunningVault):
    health = dev_vault.client().sys.read_health_status(method="GET")
    assert isinstance(health, dict), health
    assert health["initialized"] is True
    assert health["sealed"] is False
    assert health["standby"] is False
    assert isinstance(health["version"], str) and health["version"]
    assert abs(health["server_time_utc"] - time.time()) < 60


def test_read_health_status_head(dev_vault: RunningVault):
    response = dev_vault.client().sys.read_health_status(method="HEAD")
    assert response.status_code == 200
    assert response.content == b""


def test_is_initialized(dev_vault: RunningVault):
    assert dev_vault.client().sys.is_initialized() is True


def test_is_sealed(dev_vault: RunningVault):
    assert dev_vault.client().sys.is_sealed() is False


def test_read_seal_status(dev_vault: RunningVault):
    status = dev_vault.client().sys.read_seal_status()
    assert status["initialized"] is True
    assert status["sealed"] is False
    assert status["t"] == 1
    assert status["n"] == 1
    assert status["progress"] == 0
    assert isinstance(status["version"], str) and status["version"]


def test_read_leader(dev_vault: RunningVault):
    leader = dev_vault.client().sys.read_leader_status()
    assert leader["ha_enabled"] is False


# --- KV version 2 --------------------------------------------------------------------------


def test_kv_create_and_read_versions(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    first = kv(client).create_or_update_secret(path=unique, secret={"user": "alice", "n": 1})
    assert first["data"]["version"] == 1
    assert first["data"]["destroyed"] is False
    assert first["data"]["deletion_time"] == ""
    assert TIMESTAMP.match(first["data"]["created_time"]), first["data"]["created_time"]
    second = kv(client).create_or_update_secret(path=unique, secret={"user": "bob"})
    assert second["data"]["version"] == 2

    latest = read(client, unique)
    assert latest["data"]["data"] == {"user": "bob"}
    assert latest["data"]["metadata"]["version"] == 2
    assert latest["data"]["metadata"]["destroyed"] is False
    assert latest["data"]["metadata"]["deletion_time"] == ""

    old = read(client, unique, version=1)
    assert old["data"]["data"] == {"user": "alice", "n": 1}
    assert old["data"]["metadata"]["version"] == 1


def test_kv_check_and_set(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    created = kv(client).create_or_update_secret(path=unique, secret={"v": "1"}, cas=0)
    assert created["data"]["version"] == 1
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set"):
        kv(client).create_or_update_secret(path=unique, secret={"v": "x"}, cas=0)
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set"):
        kv(client).create_or_update_secret(path=unique, secret={"v": "x"}, cas=5)
    updated = kv(client).create_or_update_secret(path=unique, secret={"v": "2"}, cas=1)
    assert updated["data"]["version"] == 2
    assert read(client, unique)["data"]["data"] == {"v": "2"}


def test_kv_list_secrets(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    for name in ("b", "a", "sub/c", "sub/deeper/d"):
        kv(client).create_or_update_secret(path=f"{unique}/{name}", secret={"k": name})
    listed = kv(client).list_secrets(path=unique)
    assert listed["data"]["keys"] == ["a", "b", "sub/"]
    assert kv(client).list_secrets(path=f"{unique}/sub")["data"]["keys"] == ["c", "deeper/"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(client).list_secrets(path=f"{unique}-nothing-here")


def test_kv_read_secret_metadata(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    kv(client).create_or_update_secret(path=unique, secret={"a": "1"})
    kv(client).create_or_update_secret(path=unique, secret={"a": "2"})
    meta = kv(client).read_secret_metadata(path=unique)["data"]
    assert meta["current_version"] == 2
    assert meta["max_versions"] == 0
    assert meta["cas_required"] is False
    assert meta["delete_version_after"] == "0s"
    assert meta["custom_metadata"] is None
    assert sorted(meta["versions"]) == ["1", "2"]
    for info in meta["versions"].values():
        assert TIMESTAMP.match(info["created_time"])
        assert info["deletion_time"] == ""
        assert info["destroyed"] is False
    assert TIMESTAMP.match(meta["created_time"])
    assert meta["updated_time"] == meta["versions"]["2"]["created_time"]
    assert meta["created_time"] == meta["versions"]["1"]["created_time"]


def test_kv_metadata_oldest_version_is_zero_until_versions_are_pruned(dev_vault: RunningVault, unique: str):
    # Vault's KV v2 leaves oldest_version at 0 until max_versions removes a version.
    client = dev_vault.client()
    kv(client).create_or_update_secret(path=unique, secret={"a": "1"})
    assert kv(client).read_secret_metadata(path=unique)["data"]["oldest_version"] == 0


def test_kv_update_metadata(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    kv(client).create_or_update_secret(path=unique, secret={"v": 1})
    kv(client).update_metadata(
        path=unique, max_versions=3, custom_metadata={"owner": "ops", "tier": "gold"}
    )
    meta = kv(client).read_secret_metadata(path=unique)["data"]
    assert meta["max_versions"] == 3
    assert meta["custom_metadata"] == {"owner": "ops", "tier": "gold"}

    for v in range(2, 6):
        kv(client).create_or_update_secret(path=unique, secret={"v": v})
    meta = kv(client).read_secret_metadata(path=unique)["data"]
    assert meta["current_version"] == 5
    assert sorted(meta["versions"], key=int) == ["3", "4", "5"]
    assert meta["oldest_version"] == 3
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(client, unique, version=1)
    assert read(client, unique, version=3)["data"]["data"] == {"v": 3}
    # Custom metadata is returned with each version.
    assert read(client, unique)["data"]["metadata"]["custom_metadata"] == {"owner": "ops", "tier": "gold"}


def test_kv_update_metadata_cas_required(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    kv(client).create_or_update_secret(path=unique, secret={"v": 1})
    kv(client).update_metadata(path=unique, cas_required=True)
    assert kv(client).read_secret_metadata(path=unique)["data"]["cas_required"] is True
    with pytest.raises(hvac.exceptions.InvalidRequest, match="check-and-set parameter required"):
        kv(client).create_or_update_secret(path=unique, secret={"v": 2})
    assert kv(client).create_or_update_secret(path=unique, secret={"v": 2}, cas=1)["data"]["version"] == 2


def test_kv_patch(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    kv(client).create_or_update_secret(path=unique, secret={"user": "alice", "password": "old"})
    patched = kv(client).patch(path=unique, secret={"password": "new", "extra": "x"})
    assert patched["data"]["version"] == 2
    assert read(client, unique)["data"]["data"] == {"user": "alice", "password": "new", "extra": "x"}
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(client).patch(path=f"{unique}-missing", secret={"a": "b"})


def test_kv_http_patch_merges(dev_vault: RunningVault, unique: str):
    # The HTTP PATCH that `bao kv patch` and newer clients send (JSON merge patch).
    client = dev_vault.client()
    kv(client).create_or_update_secret(path=unique, secret={"keep": "1", "drop": "2", "nest": {"a": 1, "b": 2}})
    response = client.adapter.request(
        "patch",
        f"/v1/secret/data/{unique}",
        json={"data": {"drop": None, "nest": {"b": 3}, "new": "n"}},
        headers={"Content-Type": "application/merge-patch+json"},
    )
    assert response["data"]["version"] == 2
    assert read(client, unique)["data"]["data"] == {"keep": "1", "nest": {"a": 1, "b": 3}, "new": "n"}


def test_kv_delete_latest_version(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    kv(client).create_or_update_secret(path=unique, secret={"v": 1})
    kv(client).create_or_update_secret(path=unique, secret={"v": 2})
    kv(client).delete_latest_version_of_secret(path=unique)
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(client, unique)
    # Version 1 is untouched.
    assert read(client, unique, version=1)["data"]["data"] == {"v": 1}
    meta = kv(client).read_secret_metadata(path=unique)["data"]
    assert TIMESTAMP.match(meta["versions"]["2"]["deletion_time"])
    assert meta["versions"]["1"]["deletion_time"] == ""


def test_kv_deleted_version_answers_404_with_metadata(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    kv(client).create_or_update_secret(path=unique, secret={"v": 1})
    kv(client).delete_latest_version_of_secret(path=unique)
    body = kv(client).read_secret_version(path=unique, raise_on_deleted_version=False)
    assert body["data"]["data"] is None
    assert body["data"]["metadata"]["version"] == 1
    assert TIMESTAMP.match(body["data"]["metadata"]["deletion_time"])
    assert body["data"]["metadata"]["destroyed"] is False


def test_kv_delete_and_undelete_versions(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    for v in (1, 2, 3):
        kv(client).create_or_update_secret(path=unique, secret={"v": v})
    kv(client).delete_secret_versions(path=unique, versions=[1, 2])
    for version in (1, 2):
        with pytest.raises(hvac.exceptions.InvalidPath):
            read(client, unique, version=version)
    assert read(client, unique)["data"]["data"] == {"v": 3}
    kv(client).undelete_secret_versions(path=unique, versions=[2])
    assert read(client, unique, version=2)["data"]["data"] == {"v": 2}
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(client, unique, version=1)
    meta = kv(client).read_secret_metadata(path=unique)["data"]
    assert meta["versions"]["2"]["deletion_time"] == ""
    assert meta["versions"]["1"]["deletion_time"] != ""


def test_kv_destroy_versions(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    kv(client).create_or_update_secret(path=unique, secret={"v": 1})
    kv(client).create_or_update_secret(path=unique, secret={"v": 2})
    kv(client).destroy_secret_versions(path=unique, versions=[1])
    with pytest.raises(hvac.exceptions.InvalidPath) as raised:
        read(client, unique, version=1)
    # Vault answers 404 with the version's metadata in the body.
    body = raised.value.json
    assert body["data"]["data"] is None
    assert body["data"]["metadata"]["destroyed"] is True
    assert body["data"]["metadata"]["version"] == 1
    meta = kv(client).read_secret_metadata(path=unique)["data"]
    assert meta["versions"]["1"]["destroyed"] is True
    assert meta["versions"]["2"]["destroyed"] is False
    # A destroyed version cannot be undeleted.
    kv(client).undelete_secret_versions(path=unique, versions=[1])
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(client, unique, version=1)
    assert read(client, unique)["data"]["data"] == {"v": 2}


def test_kv_delete_metadata_and_all_versions(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    kv(client).create_or_update_secret(path=f"{unique}/gone", secret={"v": 1})
    kv(client).create_or_update_secret(path=f"{unique}/gone", secret={"v": 2})
    kv(client).create_or_update_secret(path=f"{unique}/kept", secret={"v": 1})
    kv(client).delete_metadata_and_all_versions(path=f"{unique}/gone")
    with pytest.raises(hvac.exceptions.InvalidPath):
        kv(client).read_secret_metadata(path=f"{unique}/gone")
    for version in (None, 1, 2):
        with pytest.raises(hvac.exceptions.InvalidPath):
            read(client, f"{unique}/gone", version=version)
    assert kv(client).list_secrets(path=unique)["data"]["keys"] == ["kept"]
    # Writing again starts a new history at version 1.
    again = kv(client).create_or_update_secret(path=f"{unique}/gone", secret={"v": 9})
    assert again["data"]["version"] == 1


def test_kv_read_missing_secret(dev_vault: RunningVault, unique: str):
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(dev_vault.client(), f"{unique}/never-written")


def test_kv_configure_mount(dev_vault: RunningVault):
    client = dev_vault.client()
    kv(client).configure(max_versions=4, cas_required=False, delete_version_after="1h")
    config = kv(client).read_configuration()["data"]
    assert config["max_versions"] == 4
    assert config["cas_required"] is False
    assert config["delete_version_after"] == "1h0m0s"


def test_kv_read_secret_subkeys(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    kv(client).create_or_update_secret(path=unique, secret={"a": "1", "b": {"c": "x", "d": {"e": True}}})
    subkeys = client.adapter.get(f"/v1/secret/subkeys/{unique}")
    assert subkeys["data"]["subkeys"] == {"a": None, "b": {"c": None, "d": {"e": None}}}
    assert subkeys["data"]["metadata"]["version"] == 1
    shallow = client.adapter.get(f"/v1/secret/subkeys/{unique}", params={"depth": 1})
    assert shallow["data"]["subkeys"] == {"a": None, "b": None}


# --- tokens --------------------------------------------------------------------------------


def test_token_create(dev_vault: RunningVault):
    created = dev_vault.client().auth.token.create(policies=["reader"], ttl="1h")
    auth = created["auth"]
    assert auth["policies"] == ["default", "reader"]
    assert auth["token_policies"] == ["default", "reader"]
    assert auth["lease_duration"] == 3600
    assert auth["renewable"] is True
    assert auth["orphan"] is False
    assert auth["token_type"] == "service"
    assert isinstance(auth["client_token"], str) and len(auth["client_token"]) >= 24
    assert isinstance(auth["accessor"], str) and auth["accessor"]
    assert auth["accessor"] != auth["client_token"]


def test_token_lookup_self(dev_vault: RunningVault):
    created = dev_vault.client().auth.token.create(policies=["reader"], ttl="1h")["auth"]
    child = dev_vault.client(created["client_token"])
    data = child.auth.token.lookup_self()["data"]
    assert data["policies"] == ["default", "reader"]
    assert data["accessor"] == created["accessor"]
    assert data["creation_ttl"] == 3600
    assert 3500 < data["ttl"] <= 3600
    assert data["display_name"] == "token-token"
    assert data["path"] == "auth/token/create"
    assert data["num_uses"] == 0
    assert data["orphan"] is False
    assert data["renewable"] is True
    assert data["type"] == "service"
    assert data["explicit_max_ttl"] == 0
    assert TIMESTAMP.match(data["expire_time"])
    assert TIMESTAMP.match(data["issue_time"])
    assert abs(data["creation_time"] - time.time()) < 60


def test_token_lookup_self_reports_the_token_id(dev_vault: RunningVault):
    token = dev_vault.client().auth.token.create(ttl="1h")["auth"]["client_token"]
    assert dev_vault.client(token).auth.token.lookup_self()["data"]["id"] == token


def test_token_lookup(dev_vault: RunningVault):
    created = dev_vault.client().auth.token.create(policies=["reader"], ttl="10m")["auth"]
    data = dev_vault.client().auth.token.lookup(created["client_token"])["data"]
    assert data["accessor"] == created["accessor"]
    assert data["policies"] == ["default", "reader"]
    assert data["creation_ttl"] == 600
    assert data["id"] == created["client_token"]


def test_token_lookup_and_revoke_by_accessor(dev_vault: RunningVault):
    root = dev_vault.client()
    created = root.auth.token.create(policies=["reader"], ttl="10m")["auth"]
    data = root.auth.token.lookup_accessor(created["accessor"])["data"]
    assert data["accessor"] == created["accessor"]
    assert data["policies"] == ["default", "reader"]
    assert data["id"] == ""
    root.auth.token.revoke_accessor(created["accessor"])
    with pytest.raises(hvac.exceptions.Forbidden):
        dev_vault.client(created["client_token"]).auth.token.lookup_self()
    with pytest.raises(hvac.exceptions.InvalidRequest):
        root.auth.token.lookup_accessor(created["accessor"])


def test_token_renew_self(dev_vault: RunningVault):
    token = dev_vault.client().auth.token.create(ttl="1h")["auth"]["client_token"]
    child = dev_vault.client(token)
    renewed = child.auth.token.renew_self(increment="2h")["auth"]
    assert renewed["client_token"] == token
    assert renewed["lease_duration"] == 7200
    assert renewed["renewable"] is True
    assert 7100 < child.auth.token.lookup_self()["data"]["ttl"] <= 7200


def test_token_renew(dev_vault: RunningVault):
    root = dev_vault.client()
    token = root.auth.token.create(ttl="1h")["auth"]["client_token"]
    renewed = root.auth.token.renew(token, increment="30m")["auth"]
    assert renewed["lease_duration"] == 1800
    assert 1700 < root.auth.token.lookup(token)["data"]["ttl"] <= 1800


def test_token_not_renewable(dev_vault: RunningVault):
    token = dev_vault.client().auth.token.create(ttl="1h", renewable=False)["auth"]["client_token"]
    with pytest.raises(hvac.exceptions.InvalidRequest):
        dev_vault.client(token).auth.token.renew_self(increment="2h")


def test_token_num_uses(dev_vault: RunningVault):
    token = dev_vault.client().auth.token.create(ttl="1h", num_uses=2)["auth"]["client_token"]
    child = dev_vault.client(token)
    assert child.auth.token.lookup_self()["data"]["num_uses"] == 1
    child.auth.token.lookup_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        child.auth.token.lookup_self()


TOKEN_MAKER = 'path "auth/token/create" {\n  capabilities = ["update"]\n}\n'


def test_token_revoke_revokes_children(dev_vault: RunningVault, unique: str):
    root = dev_vault.client()
    root.sys.create_or_update_policy(name=unique, policy=TOKEN_MAKER)
    parent = root.auth.token.create(policies=[unique], ttl="1h")["auth"]["client_token"]
    child_auth = dev_vault.client(parent).auth.token.create(policies=[unique], ttl="30m")["auth"]
    child = child_auth["client_token"]
    assert child_auth["orphan"] is False
    grandchild = dev_vault.client(child).auth.token.create(ttl="10m")["auth"]["client_token"]
    assert dev_vault.client(child).auth.token.lookup_self()["data"]["policies"] == ["default", unique]
    assert dev_vault.client(grandchild).auth.token.lookup_self()["data"]["policies"] == ["default", unique]

    root.auth.token.revoke(parent)
    with pytest.raises(hvac.exceptions.Forbidden):
        dev_vault.client(parent).auth.token.lookup_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        dev_vault.client(child).auth.token.lookup_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        dev_vault.client(grandchild).auth.token.lookup_self()
    # The root token is untouched.
    assert root.auth.token.lookup_self()["data"]["policies"] == ["root"]


def test_token_lookup_of_revoked_token_is_403_bad_token(dev_vault: RunningVault):
    root = dev_vault.client()
    token = root.auth.token.create(ttl="1h")["auth"]["client_token"]
    root.auth.token.revoke(token)
    with pytest.raises(hvac.exceptions.Forbidden, match="bad token"):
        root.auth.token.lookup(token)


def test_token_revoke_self(dev_vault: RunningVault):
    token = dev_vault.client().auth.token.create(ttl="1h")["auth"]["client_token"]
    child = dev_vault.client(token)
    child.auth.token.revoke_self()
    with pytest.raises(hvac.exceptions.Forbidden):
        child.auth.token.lookup_self()


def test_token_create_orphan(dev_vault: RunningVault):
    root = dev_vault.client()
    parent = root.auth.token.create(ttl="1h")["auth"]["client_token"]
    orphan = root.auth.token.create_orphan(ttl="1h")["auth"]
    assert orphan["orphan"] is True
    root.auth.token.revoke(parent)
    assert dev_vault.client(orphan["client_token"]).auth.token.lookup_self()["data"]["orphan"] is True


def test_invalid_token_is_forbidden(dev_vault: RunningVault):
    with pytest.raises(hvac.exceptions.Forbidden):
        read(dev_vault.client("vdt_not-a-real-token"), "anything")
    assert dev_vault.client("vdt_not-a-real-token").is_authenticated() is False
    assert dev_vault.client().is_authenticated() is True


# --- policies ------------------------------------------------------------------------------


def narrow_policy(prefix: str) -> str:
    return f"""
path "secret/data/{prefix}/*" {{
  capabilities = ["read"]
}}

path "secret/metadata/{prefix}/*" {{
  capabilities = ["list"]
}}
"""


def test_policy_crud(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    text = narrow_policy(unique)
    client.sys.create_or_update_policy(name=unique, policy=text)
    read_back = client.sys.read_policy(name=unique)["data"]
    assert read_back["name"] == unique
    assert read_back["rules"] == text
    listed = client.sys.list_policies()["data"]["policies"]
    assert {unique, "default", "root"} <= set(listed)
    client.sys.delete_policy(name=unique)
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.sys.read_policy(name=unique)
    assert unique not in client.sys.list_policies()["data"]["policies"]


def test_acl_policy_crud(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    text = narrow_policy(unique)
    client.sys.create_or_update_acl_policy(name=unique, policy=text)
    read_back = client.sys.read_acl_policy(name=unique)["data"]
    assert read_back["name"] == unique
    assert read_back["policy"] == text
    assert unique in client.sys.list_acl_policies()["data"]["keys"]
    client.sys.delete_acl_policy(name=unique)
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.sys.read_acl_policy(name=unique)


def test_root_and_default_policies_are_protected(dev_vault: RunningVault):
    client = dev_vault.client()
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.delete_policy(name="root")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.delete_policy(name="default")
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.create_or_update_policy(name="root", policy='path "*" { capabilities = ["read"] }')
    assert "lookup-self" in client.sys.read_policy(name="default")["data"]["rules"]


def test_narrow_policy_is_enforced(dev_vault: RunningVault, unique: str):
    root = dev_vault.client()
    root.sys.create_or_update_policy(name=unique, policy=narrow_policy(unique) + TOKEN_MAKER)
    kv(root).create_or_update_secret(path=f"{unique}/app", secret={"password": "s3cret"})
    kv(root).create_or_update_secret(path=f"other-{unique}", secret={"password": "hidden"})
    token = root.auth.token.create(policies=[unique], ttl="10m")["auth"]["client_token"]
    narrow = dev_vault.client(token)

    assert read(narrow, f"{unique}/app")["data"]["data"] == {"password": "s3cret"}
    with pytest.raises(hvac.exceptions.Forbidden):
        read(narrow, f"other-{unique}")
    with pytest.raises(hvac.exceptions.Forbidden):
        kv(narrow).create_or_update_secret(path=f"{unique}/app", secret={"password": "changed"})
    with pytest.raises(hvac.exceptions.Forbidden):
        kv(narrow).delete_metadata_and_all_versions(path=f"{unique}/app")
    with pytest.raises(hvac.exceptions.Forbidden):
        narrow.sys.list_policies()
    with pytest.raises(hvac.exceptions.Forbidden):
        narrow.sys.create_or_update_policy(name=f"{unique}-mine", policy='path "*" { capabilities = ["sudo"] }')
    with pytest.raises(hvac.exceptions.Forbidden):
        narrow.sys.enable_secrets_engine("kv", path=f"{unique}-kv", options={"version": "2"})
    # A child token cannot be given a policy its parent lacks.
    with pytest.raises(hvac.exceptions.InvalidRequest):
        narrow.auth.token.create(policies=["root"], ttl="1m")
    assert read(root, f"{unique}/app")["data"]["data"] == {"password": "s3cret"}


def test_narrow_policy_allows_listing_its_folder(dev_vault: RunningVault, unique: str):
    # Vault adds the trailing slash to a LIST path before checking policies, so
    # `secret/metadata/PREFIX/*` grants LIST secret/metadata/PREFIX.
    root = dev_vault.client()
    root.sys.create_or_update_policy(name=unique, policy=narrow_policy(unique))
    kv(root).create_or_update_secret(path=f"{unique}/app", secret={"password": "s3cret"})
    token = root.auth.token.create(policies=[unique], ttl="10m")["auth"]["client_token"]
    assert kv(dev_vault.client(token)).list_secrets(path=unique)["data"]["keys"] == ["app"]


# --- mounts --------------------------------------------------------------------------------


def test_list_mounted_secrets_engines(dev_vault: RunningVault):
    mounts = dev_vault.client().sys.list_mounted_secrets_engines()["data"]
    assert mounts["secret/"]["type"] == "kv"
    assert mounts["secret/"]["options"] == {"version": "2"}
    assert mounts["secret/"]["description"] == "key/value secret storage"
    assert mounts["sys/"]["type"] == "system"


def test_enable_use_and_disable_kv_mount(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    client.sys.enable_secrets_engine(
        "kv", path=unique, description="team secrets", options={"version": "2"}
    )
    mounts = client.sys.list_mounted_secrets_engines()["data"]
    assert mounts[f"{unique}/"]["type"] == "kv"
    assert mounts[f"{unique}/"]["description"] == "team secrets"
    assert mounts[f"{unique}/"]["options"] == {"version": "2"}

    kv(client).create_or_update_secret(path="db", secret={"pw": "x"}, mount_point=unique)
    assert read(client, "db", mount_point=unique)["data"]["data"] == {"pw": "x"}
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(client, "db")  # not in secret/

    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.enable_secrets_engine("kv", path=unique, options={"version": "2"})

    client.sys.disable_secrets_engine(path=unique)
    assert f"{unique}/" not in client.sys.list_mounted_secrets_engines()["data"]
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(client, "db", mount_point=unique)


def test_remount_at_old_path_starts_empty(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    client.sys.enable_secrets_engine("kv", path=unique, options={"version": "2"})
    kv(client).create_or_update_secret(path="db", secret={"pw": "x"}, mount_point=unique)
    client.sys.disable_secrets_engine(path=unique)
    client.sys.enable_secrets_engine("kv", path=unique, options={"version": "2"})
    with pytest.raises(hvac.exceptions.InvalidPath):
        read(client, "db", mount_point=unique)


def test_read_single_mount(dev_vault: RunningVault, unique: str):
    # GET sys/mounts/:path returns the mount's description, as Vault 1.10+ and OpenBao do.
    client = dev_vault.client()
    client.sys.enable_secrets_engine("kv", path=unique, description="team", options={"version": "2"})
    data = client.adapter.get(f"/v1/sys/mounts/{unique}")["data"]
    assert data["type"] == "kv"
    assert data["description"] == "team"
    assert data["options"] == {"version": "2"}
    assert data["config"]["default_lease_ttl"] == 0


# --- audit ---------------------------------------------------------------------------------


def test_list_enabled_audit_devices(dev_vault: RunningVault):
    devices = dev_vault.client().sys.list_enabled_audit_devices()["data"]
    assert devices["file/"]["type"] == "file"
    assert devices["file/"]["options"]["file_path"] == str(dev_vault.data_dir / "audit.log")


def test_audit_hash_matches_the_audit_log(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    kv(client).create_or_update_secret(path=unique, secret={"password": "do-not-log-me"})
    hashed = client.adapter.post("/v1/sys/audit-hash/file", json={"input": dev_vault.token})
    token_hash = hashed["data"]["hash"]
    assert re.fullmatch(r"hmac-sha256:[0-9a-f]{64}", token_hash), token_hash
    value_hash = client.adapter.post("/v1/sys/audit-hash/file", json={"input": "do-not-log-me"})["data"]["hash"]

    entries = dev_vault.audit_entries()
    writes = [
        e for e in entries
        if e["request"]["path"] == f"secret/data/{unique}" and e["request"]["operation"] == "update"
    ]
    assert [e["type"] for e in writes] == ["request", "response"]
    for entry in writes:
        assert entry["auth"]["client_token"] == token_hash
        assert entry["request"]["client_token"] == token_hash
    assert writes[0]["request"]["data"]["data"]["password"] == value_hash
    # vaultd hashes numbers too (a secret can be a PIN), where Vault hashes only strings.
    version_hash = client.adapter.post("/v1/sys/audit-hash/file", json={"input": "1"})["data"]["hash"]
    assert writes[1]["response"]["data"]["version"] == version_hash
    assert "do-not-log-me" not in (dev_vault.data_dir / "audit.log").read_text()
    assert dev_vault.token not in (dev_vault.data_dir / "audit.log").read_text()


def test_audit_public_key_and_key_status(dev_vault: RunningVault):
    client = dev_vault.client()
    public = client.adapter.get("/v1/sys/audit-public-key")["data"]
    assert public["algorithm"] == "ed25519"
    assert public["public_key"]
    status = client.sys.get_encryption_key_status()["data"]
    assert status["term"] == 1
    assert TIMESTAMP.match(status["install_time"])
    client.sys.rotate_encryption_key()
    assert client.sys.get_encryption_key_status()["data"]["term"] == 2


# --- production mode (Shamir seal) ---------------------------------------------------------


def test_production_initialize_unseal_seal(prod_vault: RunningVault):
    client = prod_vault.client()
    assert client.sys.is_initialized() is False
    uninit = client.sys.read_health_status(method="GET")
    assert uninit.status_code == 501

    result = client.sys.initialize(5, 3)
    assert len(result["keys"]) == 5
    assert len(result["keys_base64"]) == 5
    assert len(set(result["keys"])) == 5
    root_token = result["root_token"]
    assert root_token

    client.token = root_token
    assert client.sys.is_initialized() is True
    assert client.sys.is_sealed() is True
    status = client.sys.read_seal_status()
    assert (status["type"], status["t"], status["n"], status["progress"]) == ("shamir", 3, 5, 0)
    sealed = client.sys.read_health_status(method="GET")
    assert sealed.status_code == 503
    assert sealed.json()["sealed"] is True
    with pytest.raises(hvac.exceptions.VaultDown):
        read(client, "app")

    first = client.sys.submit_unseal_key(result["keys"][0])
    assert first["sealed"] is True
    assert first["progress"] == 1
    unsealed = client.sys.submit_unseal_keys(result["keys"][1:3])
    assert unsealed["sealed"] is False
    assert unsealed["progress"] == 0
    assert client.sys.is_sealed() is False

    kv(client).create_or_update_secret(path="app", secret={"api_key": "sk-123"})
    assert read(client, "app")["data"]["data"] == {"api_key": "sk-123"}

    client.sys.seal()
    assert client.sys.is_sealed() is True
    with pytest.raises(hvac.exceptions.VaultDown):
        read(client, "app")
    with pytest.raises(hvac.exceptions.VaultDown):
        client.auth.token.lookup_self()

    # Any three shares unseal it again, in base64 as well as hex.
    client.sys.submit_unseal_keys(result["keys_base64"][2:5])
    assert client.sys.is_sealed() is False
    assert read(client, "app")["data"]["data"] == {"api_key": "sk-123"}


def test_production_initialize_twice_is_refused(prod_vault: RunningVault):
    client = prod_vault.client()
    client.sys.initialize(1, 1)
    with pytest.raises(hvac.exceptions.InvalidRequest):
        client.sys.initialize(5, 3)


def test_production_unseal_reset(prod_vault: RunningVault):
    client = prod_vault.client()
    keys = client.sys.initialize(3, 2)["keys"]
    assert client.sys.submit_unseal_key(keys[0])["progress"] == 1
    reset = client.sys.submit_unseal_key(reset=True)
    assert reset["progress"] == 0
    assert reset["sealed"] is True
    assert client.sys.submit_unseal_keys(keys[1:3])["sealed"] is False


def test_production_health_status_codes(prod_vault: RunningVault):
    client = prod_vault.client()
    assert client.sys.read_health_status(method="GET").status_code == 501
    # Query options turn any state into the status code asked for, as in Vault.
    assert client.sys.read_health_status(method="GET", uninit_code=299).status_code == 299
    requests.put(
        f"{prod_vault.addr}/v1/sys/init",
        json={"secret_shares": 1, "secret_threshold": 1},
        verify=prod_vault.cacert,
        timeout=30,
    ).raise_for_status()
    assert client.sys.read_health_status(method="GET").status_code == 503
    assert client.sys.read_health_status(method="GET", sealed_code=298).status_code == 298
    assert client.sys.read_health_status(method="HEAD").status_code == 503


def unseal_for_setup(vault: RunningVault, shares: int = 3, threshold: int = 2) -> list[str]:
    """Initialises and unseals over plain HTTP for tests whose subject comes after that.

    Accepts the keys at the top level (Vault) or inside `data`, so that later steps are still
    exercised; the shape itself is checked by test_production_initialize_unseal_seal.
    """
    body = requests.put(
        f"{vault.addr}/v1/sys/init",
        json={"secret_shares": shares, "secret_threshold": threshold},
        verify=vault.cacert,
        timeout=30,
    ).json()
    body = body.get("data") or body
    vault.token = body["root_token"]
    for key in body["keys"][:threshold]:
        requests.put(
            f"{vault.addr}/v1/sys/unseal", json={"key": key}, verify=vault.cacert, timeout=30
        ).raise_for_status()
    return body["keys"]


def test_production_sealed_vault_answers_503(prod_vault: RunningVault):
    unseal_for_setup(prod_vault)
    client = prod_vault.client()
    kv(client).create_or_update_secret(path="app", secret={"k": "v"})
    client.sys.seal()
    for call in (
        lambda: read(client, "app"),
        lambda: kv(client).create_or_update_secret(path="app", secret={"k": "w"}),
        lambda: client.sys.list_policies(),
        lambda: client.sys.list_mounted_secrets_engines(),
        lambda: client.auth.token.create(ttl="1m"),
    ):
        with pytest.raises(hvac.exceptions.VaultDown, match="sealed"):
            call()


def test_production_restart_keeps_data_and_starts_sealed(prod_vault):
    keys = unseal_for_setup(prod_vault)
    client = prod_vault.client()
    kv(client).create_or_update_secret(path="app", secret={"k": "v"})
    client.sys.create_or_update_policy(name="kept", policy='path "secret/data/app" { capabilities = ["read"] }')
    token = client.auth.token.create(policies=["kept"], ttl="1h")["auth"]["client_token"]

    prod_vault.restart()
    client = prod_vault.client()
    with pytest.raises(hvac.exceptions.VaultDown):
        read(client, "app")
    for key in keys[:2]:
        requests.put(
            f"{prod_vault.addr}/v1/sys/unseal", json={"key": key}, verify=prod_vault.cacert, timeout=30
        ).raise_for_status()
    assert read(client, "app")["data"]["data"] == {"k": "v"}
    assert read(prod_vault.client(token), "app")["data"]["data"] == {"k": "v"}
    assert "kept" in client.sys.list_policies()["data"]["policies"]


def test_production_audit_log_from_configuration(prod_vault):
    unseal_for_setup(prod_vault)
    client = prod_vault.client()
    kv(client).create_or_update_secret(path="app", secret={"api_key": "sk-live-abc"})
    devices = client.sys.list_enabled_audit_devices()["data"]
    assert devices["file/"]["options"]["file_path"] == str(prod_vault.data_dir / "audit.log")
    entries = prod_vault.audit_entries(prod_vault.data_dir / "audit.log")
    paths = [(e["type"], e["request"]["path"]) for e in entries]
    assert ("request", "secret/data/app") in paths
    assert ("response", "secret/data/app") in paths
    assert "sk-live-abc" not in (prod_vault.data_dir / "audit.log").read_text()
    # Devices declared in the configuration cannot be disabled through the API.
    with pytest.raises(hvac.exceptions.VaultError):
        client.sys.disable_audit_device("file")
    assert "file/" in client.sys.list_enabled_audit_devices()["data"]
