#!/usr/bin/env python3
"""An example vaultd rotator: rotates an OpenAI project API key through the admin API.

Each rotation creates a project service account, whose API key becomes the new credential,
and `finish` deletes the service account that held the old key. It needs an admin key
(OPENAI_ADMIN_KEY) in a file only this rotator can read, because vaultd starts rotators
with an empty environment.

vault.toml:

    [[rotator]]
    name = "openai"
    command = "/etc/vaultd/rotators/openai-admin-rotator.py"
    args = ["--project", "proj_abc123", "--admin-key-file", "/etc/vaultd/rotators/openai-admin.key",
            "--state-dir", "/var/lib/vaultd-rotators/openai"]
    timeout = "30s"

This is an example to adapt, not a tested integration: check the provider's current API.
"""

import argparse
import json
import os
import sys
import urllib.request

API = "https://api.openai.com/v1/organization/projects"


def call(method, url, admin_key, body=None):
    request = urllib.request.Request(url, method=method, data=json.dumps(body).encode() if body else None)
    request.add_header("Authorization", f"Bearer {admin_key}")
    request.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(request, timeout=20) as response:
        return json.loads(response.read() or b"{}")


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--project", required=True)
    parser.add_argument("--admin-key-file", required=True)
    parser.add_argument("--state-dir", required=True)
    parser.add_argument("step", choices=["create", "set", "test", "finish"])
    args = parser.parse_args()
    request = json.load(sys.stdin)
    admin_key = open(args.admin_key_file).read().strip()
    os.makedirs(args.state_dir, mode=0o700, exist_ok=True)
    # rotation_id -> {"credential", "service_account"}: makes a repeated create idempotent.
    record_path = os.path.join(args.state_dir, request["rotation_id"] + ".json")

    if args.step == "create":
        if os.path.exists(record_path):
            record = json.load(open(record_path))
        else:
            account = call("POST", f"{API}/{args.project}/service_accounts", admin_key,
                           {"name": "vaultd-" + request["rotation_id"][:8]})
            record = {"credential": account["api_key"]["value"], "service_account": account["id"]}
            fd = os.open(record_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as f:
                json.dump(record, f)
                f.flush()
                os.fsync(f.fileno())
        print(json.dumps({"credential": record["credential"],
                          "state": {"service_account": record["service_account"]}}))
    elif args.step == "set":
        print("{}")  # the service account's key works as soon as it exists
    elif args.step == "test":
        probe = urllib.request.Request("https://api.openai.com/v1/models")
        probe.add_header("Authorization", f"Bearer {request['new']}")
        urllib.request.urlopen(probe, timeout=20).read()
        print("{}")
    elif args.step == "finish":
        # The previous rotation's record names the service account that holds `current`.
        for name in os.listdir(args.state_dir):
            path = os.path.join(args.state_dir, name)
            record = json.load(open(path))
            if record["credential"] == request["current"]:
                call("DELETE", f"{API}/{args.project}/service_accounts/{record['service_account']}", admin_key)
                os.remove(path)
        print("{}")


if __name__ == "__main__":
    main()
