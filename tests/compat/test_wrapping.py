"""Response wrapping through hvac and the bao CLI, with the same assertions run against
vaultd and a real OpenBao server: a wrapping token unwraps once, expires, and can be looked
up without unwrapping it.
"""

from __future__ import annotations

import time

import hvac
import hvac.exceptions
import pytest

from conftest import RunningVault

NOT_VALID = "wrapping token is not valid or does not exist"


@pytest.fixture(params=["vaultd", "openbao"])
def server(request, dev_vault: RunningVault, openbao: hvac.Client) -> hvac.Client:
    """A root client of vaultd or of OpenBao."""
    return dev_vault.client() if request.param == "vaultd" else openbao


def anonymous(client: hvac.Client, token: str | None = None) -> hvac.Client:
    """A client of the same server holding `token`, or no token at all."""
    return hvac.Client(url=client.url, token=token, verify=client.adapter._kwargs.get("verify", True))


def write_secret(client: hvac.Client, path: str, data: dict) -> None:
    client.secrets.kv.v2.create_or_update_secret(path=path, secret=data)


def test_a_wrapped_read_unwraps_once(server: hvac.Client, unique: str):
    write_secret(server, unique, {"api_key": "sk-wrapped-canary"})
    wrapped = server.read(f"secret/data/{unique}", wrap_ttl="60s")
    assert wrapped["data"] is None
    info = wrapped["wrap_info"]
    assert info["ttl"] == 60
    assert info["creation_path"] == f"secret/data/{unique}"
    assert info["token"] and info["accessor"] and info["creation_time"]

    # Lookup needs no other token and leaves the response in place.
    details = anonymous(server).adapter.post("/v1/sys/wrapping/lookup", json={"token": info["token"]})["data"]
    assert details["creation_path"] == f"secret/data/{unique}"
    assert details["creation_ttl"] == 60

    unwrapped = server.sys.unwrap(token=info["token"])
    assert unwrapped["data"]["data"] == {"api_key": "sk-wrapped-canary"}
    with pytest.raises(hvac.exceptions.InvalidRequest, match=NOT_VALID):
        server.sys.unwrap(token=info["token"])
    with pytest.raises(hvac.exceptions.InvalidRequest, match=NOT_VALID):
        anonymous(server).adapter.post("/v1/sys/wrapping/lookup", json={"token": info["token"]})


def test_the_wrapping_token_itself_can_unwrap_once(server: hvac.Client, unique: str):
    write_secret(server, unique, {"password": "hunter2-but-longer"})
    token = server.read(f"secret/data/{unique}", wrap_ttl=120)["wrap_info"]["token"]
    holder = anonymous(server, token)
    assert holder.sys.unwrap()["data"]["data"] == {"password": "hunter2-but-longer"}
    with pytest.raises(hvac.exceptions.InvalidRequest, match=NOT_VALID):
        holder.sys.unwrap()


def test_sys_wrap_wraps_any_value(server: hvac.Client):
    token = server.sys.wrap(payload={"anything": "at all", "n": 7}, ttl="5m")["wrap_info"]["token"]
    assert server.sys.unwrap(token=token)["data"] == {"anything": "at all", "n": 7}
    with pytest.raises(hvac.exceptions.InvalidRequest, match="requires response wrapping"):
        server.adapter.post("/v1/sys/wrapping/wrap", json={"x": "y"})


def test_an_expired_wrapping_token_fails(server: hvac.Client):
    token = server.sys.wrap(payload={"k": "v"}, ttl="1s")["wrap_info"]["token"]
    deadline = time.monotonic() + 10
    while True:
        try:
            anonymous(server).adapter.post("/v1/sys/wrapping/lookup", json={"token": token})
        except hvac.exceptions.InvalidRequest:
            break
        assert time.monotonic() < deadline, "the wrapping token did not expire"
        time.sleep(0.1)
    with pytest.raises(hvac.exceptions.InvalidRequest, match=NOT_VALID):
        server.sys.unwrap(token=token)


def test_a_wrapped_token_creation_names_the_new_token(server: hvac.Client):
    wrapped = server.adapter.post("/v1/auth/token/create", json={"policies": ["default"], "ttl": "1h"}, wrap_ttl="60s")
    info = wrapped["wrap_info"]
    assert info["creation_path"] == "auth/token/create"
    assert info["wrapped_accessor"]
    auth = server.sys.unwrap(token=info["token"])["auth"]
    assert auth["accessor"] == info["wrapped_accessor"]
    assert anonymous(server, auth["client_token"]).auth.token.lookup_self()["data"]["accessor"] == auth["accessor"]


def test_rewrap_moves_the_response_to_a_new_token(server: hvac.Client):
    old = server.sys.wrap(payload={"k": "v"}, ttl="5m")["wrap_info"]["token"]
    new = server.adapter.post("/v1/sys/wrapping/rewrap", json={"token": old})["wrap_info"]
    assert new["token"] != old
    assert new["ttl"] == 300
    with pytest.raises(hvac.exceptions.InvalidRequest, match=NOT_VALID):
        server.sys.unwrap(token=old)
    assert server.sys.unwrap(token=new["token"])["data"] == {"k": "v"}


def test_bad_wrap_ttls_and_tokens_are_refused(server: hvac.Client, unique: str):
    write_secret(server, unique, {"k": "v"})
    with pytest.raises(hvac.exceptions.InvalidRequest, match="X-Vault-Wrap-TTL"):
        server.read(f"secret/data/{unique}", wrap_ttl="bogus")
    with pytest.raises(hvac.exceptions.InvalidRequest, match=NOT_VALID):
        server.sys.unwrap(token="not-a-wrapping-token")


def test_wrapped_secrets_stay_out_of_the_audit_log(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    write_secret(client, unique, {"api_key": "sk-audit-canary-7731"})
    token = client.read(f"secret/data/{unique}", wrap_ttl="60s")["wrap_info"]["token"]
    client.sys.unwrap(token=token)
    log = (dev_vault.data_dir / "audit.log").read_text()
    assert "sk-audit-canary-7731" not in log
    assert token not in log
    unwraps = [
        e for e in dev_vault.audit_entries() if e["request"]["path"] == "sys/wrapping/unwrap"
    ]
    assert [e["type"] for e in unwraps] == ["request", "response"]
    assert unwraps[1]["response"]["data"]["data"]["api_key"].startswith("hmac-sha256:")


def test_the_bao_cli_wraps_and_unwraps(dev_vault: RunningVault, unique: str):
    write_secret(dev_vault.client(), unique, {"api_key": "sk-cli-canary"})
    wrapped = dev_vault.bao_json("kv", "get", "-wrap-ttl=60s", "-format=json", f"secret/{unique}")
    token = wrapped["wrap_info"]["token"]
    unwrapped = dev_vault.bao_json("unwrap", "-format=json", token)
    assert unwrapped["data"]["data"] == {"api_key": "sk-cli-canary"}
    again = dev_vault.bao("unwrap", token)
    assert again.returncode != 0
    assert NOT_VALID in again.stderr


def test_a_bad_wrap_ttl_stops_the_request_before_it_runs(dev_vault: RunningVault, unique: str):
    client = dev_vault.client()
    for ttl in ["0", "500ms", "1000h"]:
        with pytest.raises(hvac.exceptions.InvalidRequest, match="between 1s and 768h"):
            client.adapter.post(f"/v1/secret/data/{unique}", json={"data": {"k": "v"}}, wrap_ttl=ttl)
    # Nothing was written.
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.kv.v2.read_secret_version(path=unique)
