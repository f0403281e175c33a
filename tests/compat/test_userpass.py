"""Operator logins with `auth/userpass`, driven by hvac and the bao CLI as against Vault:
Argon2id hashes, password rules, short renewable tokens, and brute force slowed per address
and user.
"""

from __future__ import annotations

import hvac
import hvac.exceptions
import pytest
import requests
from requests.adapters import HTTPAdapter

from conftest import RunningVault

PASSWORD = "Tangerine-Kettle-47-Orbit"
INVALID = "invalid username or password"


class FromAddress(HTTPAdapter):
    """Connects from a given local address, so a test can be another client machine."""

    def __init__(self, address: str):
        self.address = address
        super().__init__()

    def init_poolmanager(self, *args, **kwargs):
        kwargs["source_address"] = (self.address, 0)
        super().init_poolmanager(*args, **kwargs)


def client_from(vault: RunningVault, address: str) -> hvac.Client:
    session = requests.Session()
    session.mount("https://", FromAddress(address))
    session.verify = vault.cacert
    return hvac.Client(url=vault.addr, verify=vault.cacert, session=session, timeout=30)


def make_user(vault: RunningVault, name: str, password: str = PASSWORD, **fields):
    return vault.client().auth.userpass.create_or_update_user(username=name, password=password, **fields)


def test_a_user_logs_in_and_gets_a_short_renewable_token(dev_vault: RunningVault, unique: str):
    root = dev_vault.client()
    root.sys.create_or_update_acl_policy(name="ops-read", policy='path "secret/data/ops/*" { capabilities = ["read"] }')
    make_user(dev_vault, unique, policies=["ops-read"])
    user = root.auth.userpass.read_user(username=unique)["data"]
    assert user["token_policies"] == ["ops-read"]
    assert user["token_ttl"] == 1800
    assert user["token_max_ttl"] == 14 * 24 * 3600

    client = dev_vault.client(token="")
    response = client.auth.userpass.login(username=unique, password=PASSWORD)
    auth = response["auth"]
    assert client.token == auth["client_token"]
    assert sorted(auth["policies"]) == ["default", "ops-read"]
    assert auth["lease_duration"] == 1800
    assert auth["renewable"] is True
    assert auth["metadata"] == {"username": unique}

    me = client.auth.token.lookup_self()["data"]
    assert me["path"] == f"auth/userpass/login/{unique}"
    assert me["display_name"] == f"userpass-{unique}"
    assert me["explicit_max_ttl"] == 14 * 24 * 3600
    renewed = client.auth.token.renew_self(increment="1h")["auth"]
    assert renewed["lease_duration"] == 3600


def test_a_wrong_password_and_an_unknown_user_get_the_same_answer(dev_vault: RunningVault, unique: str):
    make_user(dev_vault, unique)
    client = dev_vault.client(token="")
    answers = []
    for name, password in [(unique, PASSWORD + "x"), (unique + "-nobody", PASSWORD)]:
        with pytest.raises(hvac.exceptions.InvalidRequest) as refused:
            client.auth.userpass.login(username=name, password=password)
        answers.append(refused.value.errors)
    assert answers == [[INVALID], [INVALID]]


@pytest.mark.parametrize(
    ("password", "rule"),
    [
        ("Sh0rt!pw", "at least 10 characters"),
        ("alllowercase-47", "upper-case"),
        ("NoSymbolsHere47", "symbol"),
        ("Password123!", "too easy to guess"),
    ],
)
def test_weak_passwords_are_refused(dev_vault: RunningVault, unique: str, password: str, rule: str):
    with pytest.raises(hvac.exceptions.InvalidRequest, match=rule) as refused:
        make_user(dev_vault, unique, password=password)
    assert password not in str(refused.value)
    with pytest.raises(hvac.exceptions.InvalidPath):
        dev_vault.client().auth.userpass.read_user(username=unique)


def test_brute_force_is_delayed_per_address_not_for_everyone(dev_vault: RunningVault, unique: str):
    make_user(dev_vault, unique)
    attacker = client_from(dev_vault, "127.0.0.1")
    for _ in range(5):
        with pytest.raises(hvac.exceptions.InvalidRequest):
            attacker.auth.userpass.login(username=unique, password="Wrong-Guess-1234")
    # Even the right password waits now, from this address, with a Retry-After.
    response = requests.post(
        f"{dev_vault.addr}/v1/auth/userpass/login/{unique}",
        json={"password": PASSWORD},
        verify=dev_vault.cacert,
        timeout=30,
    )
    assert response.status_code == 429, response.text
    assert 800 < int(response.headers["Retry-After"]) <= 900
    # The same user, from another address, logs in at once.
    elsewhere = client_from(dev_vault, "127.0.0.2")
    assert elsewhere.auth.userpass.login(username=unique, password=PASSWORD)["auth"]["client_token"]


def test_password_and_policy_changes(dev_vault: RunningVault, unique: str):
    make_user(dev_vault, unique)
    root = dev_vault.client()
    root.auth.userpass.update_password_on_user(username=unique, password="Quiet-Harbour-92-Lantern")
    client = dev_vault.client(token="")
    with pytest.raises(hvac.exceptions.InvalidRequest, match=INVALID):
        client.auth.userpass.login(username=unique, password=PASSWORD)
    client.auth.userpass.login(username=unique, password="Quiet-Harbour-92-Lantern")

    assert unique in root.auth.userpass.list_user()["data"]["keys"]
    root.auth.userpass.delete_user(username=unique)
    with pytest.raises(hvac.exceptions.InvalidRequest, match=INVALID):
        client.auth.userpass.login(username=unique, password="Quiet-Harbour-92-Lantern")


def test_the_root_policy_cannot_be_handed_out(dev_vault: RunningVault, unique: str):
    with pytest.raises(hvac.exceptions.InvalidRequest, match="root policy"):
        make_user(dev_vault, unique, policies=["root"])


def test_passwords_stay_out_of_the_audit_log(dev_vault: RunningVault, unique: str):
    make_user(dev_vault, unique)
    dev_vault.client(token="").auth.userpass.login(username=unique, password=PASSWORD)
    log = (dev_vault.data_dir / "audit.log").read_text()
    assert f"auth/userpass/login/{unique}" in log
    assert PASSWORD not in log
    assert "$argon2id$" not in log


def test_the_bao_cli_logs_in_with_a_password(dev_vault: RunningVault, unique: str):
    make_user(dev_vault, unique)
    result = dev_vault.bao_json(
        "login", "-method=userpass", "-format=json", "-no-store", f"username={unique}", f"password={PASSWORD}", token=""
    )
    assert result["auth"]["metadata"] == {"username": unique}
    token = result["auth"]["client_token"]
    assert dev_vault.bao_json("token", "lookup", "-format=json", token=token)["data"]["path"] == (
        f"auth/userpass/login/{unique}"
    )
    methods = dev_vault.bao_json("auth", "list", "-format=json")
    assert methods["userpass/"]["type"] == "userpass"


def test_a_login_answers_as_openbao_does(dev_vault: RunningVault, openbao: hvac.Client, unique: str):
    try:
        openbao.sys.enable_auth_method("userpass")
    except hvac.exceptions.InvalidRequest:
        pass  # enabled by an earlier test of this session
    answers = []
    for admin, client in [(dev_vault.client(), dev_vault.client(token="")), (openbao, hvac.Client(url=openbao.url))]:
        admin.auth.userpass.create_or_update_user(username=unique, password=PASSWORD, policies=["default"])
        answers.append(client.auth.userpass.login(username=unique, password=PASSWORD)["auth"])
        with pytest.raises(hvac.exceptions.InvalidRequest, match=INVALID):
            client.auth.userpass.login(username=unique, password="Wrong-Guess-1234")
    ours, theirs = answers
    assert set(theirs) <= set(ours), set(theirs) - set(ours)
    for key in ("policies", "token_policies", "metadata", "renewable", "token_type", "orphan"):
        assert ours[key] == theirs[key], key
