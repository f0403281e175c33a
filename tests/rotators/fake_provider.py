#!/usr/bin/env python3
"""A fake provider's rotator, for rotation tests: it mints keys and records revocations.

Usage: fake_provider.py STATE_DIR STEP, with the rotation's JSON on stdin; prints JSON.

Files in STATE_DIR:
  minted.jsonl   one line per key minted: {"rotation_id": ..., "key": ...}
  revoked.jsonl  one line per key revoked (the old one by finish, an unused one by abort)
  fail-STEP      while present, STEP fails (exit 1)
  pause-STEP     while present, STEP does its work, writes paused-STEP and waits, so a test
                 can kill the daemon at that point
"""

import json
import os
import secrets
import sys
import time


def lines(path):
    try:
        with open(path) as f:
            return [json.loads(line) for line in f if line.strip()]
    except FileNotFoundError:
        return []


def append(path, record):
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")
        f.flush()
        os.fsync(f.fileno())


def pause_if_asked(state, step):
    flag = os.path.join(state, "pause-" + step)
    if not os.path.exists(flag):
        return
    with open(os.path.join(state, "paused-" + step), "w") as f:
        f.write(str(os.getpid()))
    deadline = time.time() + 60
    while os.path.exists(flag) and time.time() < deadline:
        time.sleep(0.02)


def main():
    state, step = sys.argv[1], sys.argv[2]
    request = json.load(sys.stdin)
    rotation = request["rotation_id"]
    minted_path = os.path.join(state, "minted.jsonl")
    revoked_path = os.path.join(state, "revoked.jsonl")
    if os.path.exists(os.path.join(state, "fail-" + step)):
        print(f"{step} refused by the fake provider", file=sys.stderr)
        sys.exit(1)

    if step == "create":
        # The same rotation gets the same key: a repeated create never mints a second one.
        existing = [m["key"] for m in lines(minted_path) if m["rotation_id"] == rotation]
        key = existing[0] if existing else "fk-" + secrets.token_hex(16)
        if not existing:
            append(minted_path, {"rotation_id": rotation, "key": key})
        pause_if_asked(state, step)
        print(json.dumps({"credential": key, "state": {"minted_by": "fake"}}))
    elif step == "set":
        pause_if_asked(state, step)
        print("{}")
    elif step == "test":
        minted = {m["key"] for m in lines(minted_path)}
        revoked = {r["key"] for r in lines(revoked_path)}
        if request["new"] not in minted or request["new"] in revoked:
            print("the new key does not work", file=sys.stderr)
            sys.exit(1)
        pause_if_asked(state, step)
        print("{}")
    elif step == "finish":
        old = request.get("current")
        if old and old not in {r["key"] for r in lines(revoked_path)}:
            append(revoked_path, {"rotation_id": rotation, "key": old})
        pause_if_asked(state, step)
        print("{}")
    elif step == "abort":
        new = request.get("new")
        if new and new not in {r["key"] for r in lines(revoked_path)}:
            append(revoked_path, {"rotation_id": rotation, "key": new})
        print("{}")
    else:
        print(f"unknown step {step}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
