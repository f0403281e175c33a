"""Fixtures that run the real vaultd binary for the compatibility tests.

The daemon is never built here: `target/debug/vaultd` must exist (scripts/compat-test
builds it), or VAULTD_BIN names another binary. Every daemon listens on an ephemeral
port of 127.0.0.1 and is stopped with SIGTERM when its test ends.
"""

from __future__ import annotations

import json
import os
import queue
import re
import shutil
import signal
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import hvac
import pytest
import requests

ROOT = Path(__file__).resolve().parents[2]
VAULTD = Path(os.environ.get("VAULTD_BIN") or ROOT / "target" / "debug" / "vaultd")
BAO = Path(os.environ.get("BAO_BIN") or ROOT / ".venv" / "bin" / "bao")

START_TIMEOUT = 30.0
STOP_TIMEOUT = 15.0
CLI_TIMEOUT = 60.0

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
EXPORT = re.compile(r"^export (VAULT_ADDR|VAULT_CACERT|VAULT_TOKEN)='([^']*)'\s*$")
LISTENING_TEXT = re.compile(r"listening\b.*?\baddress=\"?([0-9.]+:[0-9]+)")
LISTENING_JSON = re.compile(r"\"address\"\s*:\s*\"([0-9.]+:[0-9]+)\"")


def clean_env() -> dict[str, str]:
    """The environment without any client settings inherited from the caller."""
    return {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("VAULT_", "BAO_"))
    }


class Daemon:
    """One vaultd process, its stderr kept in a log file."""

    def __init__(self, args: list[str], log_path: Path, capture_stdout: bool):
        if not VAULTD.is_file() or not os.access(VAULTD, os.X_OK):
            pytest.fail(f"{VAULTD} does not exist: build it (cargo build --bin vaultd) or set VAULTD_BIN")
        self.log_path = log_path
        self._log = open(log_path, "ab")
        self.process = subprocess.Popen(
            [str(VAULTD), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE if capture_stdout else subprocess.DEVNULL,
            stderr=self._log,
            env=clean_env(),
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        if capture_stdout:
            threading.Thread(target=self._read_stdout, daemon=True).start()

    def _read_stdout(self) -> None:
        assert self.process.stdout is not None
        for raw in self.process.stdout:
            self.lines.put(raw.decode("utf-8", "replace"))
        self.lines.put(None)

    def log_text(self) -> str:
        try:
            return ANSI.sub("", self.log_path.read_text("utf-8", "replace"))
        except FileNotFoundError:
            return ""

    def fail(self, why: str) -> None:
        self.stop(check=False)
        pytest.fail(f"{why}\n--- vaultd log ---\n{self.log_text()}")

    def export_lines(self, deadline: float) -> dict[str, str]:
        """The three `export` lines that dev mode prints, read before `deadline`."""
        found: dict[str, str] = {}
        while len(found) < 3:
            left = deadline - time.monotonic()
            if left <= 0:
                self.fail(f"vaultd dev printed only {sorted(found)} in time")
            try:
                line = self.lines.get(timeout=min(left, 0.5))
            except queue.Empty:
                continue
            if line is None:
                self.fail(f"vaultd dev exited with {self.process.wait()} before printing its exports")
            match = EXPORT.match(line.strip())
            if not match:
                self.fail(f"unexpected line on vaultd dev's stdout: {line!r}")
            found[match.group(1)] = match.group(2)
        return found

    def listening_address(self, deadline: float) -> str:
        """The address from the `listening` log line, read before `deadline`."""
        while time.monotonic() < deadline:
            for line in self.log_text().splitlines():
                if "listening" not in line:
                    continue
                match = LISTENING_TEXT.search(line) or LISTENING_JSON.search(line)
                if match:
                    return match.group(1)
            if self.process.poll() is not None:
                self.fail(f"vaultd exited with {self.process.returncode} before listening")
            time.sleep(0.02)
        self.fail("vaultd did not log its listening address in time")
        raise AssertionError("unreachable")

    def stop(self, check: bool = True) -> int | None:
        """SIGTERM, then wait; SIGKILL if it does not stop."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                if check:
                    pytest.fail("vaultd did not stop within 15 s of SIGTERM")
        self._log.close()
        if self.process.stdout is not None:
            self.process.stdout.close()
        code = self.process.returncode
        if check and code != 0:
            pytest.fail(f"vaultd exited with {code} after SIGTERM\n{self.log_text()}")
        return code


def wait_until_answering(daemon: Daemon, addr: str, cacert: str, deadline: float) -> None:
    """Polls sys/health until the daemon answers over TLS with any HTTP status."""
    last = None
    while time.monotonic() < deadline:
        if daemon.process.poll() is not None:
            daemon.fail(f"vaultd exited with {daemon.process.returncode} while starting")
        try:
            requests.get(f"{addr}/v1/sys/health", verify=cacert, timeout=2)
            return
        except requests.RequestException as e:
            last = e
            time.sleep(0.02)
    daemon.fail(f"vaultd did not answer on {addr} in time: {last}")


@dataclass
class RunningVault:
    """A running daemon and how to reach it."""

    addr: str
    cacert: str
    data_dir: Path
    daemon: Daemon
    token: str | None = None
    home: Path = field(default_factory=Path)

    def client(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(
            url=self.addr,
            token=self.token if token is None else token,
            verify=self.cacert,
            timeout=30,
        )

    def cli_env(self, token: str | None = None) -> dict[str, str]:
        env = clean_env()
        env["HOME"] = str(self.home)
        env["NO_COLOR"] = "1"
        for prefix in ("VAULT_", "BAO_"):
            env[prefix + "ADDR"] = self.addr
            env[prefix + "CACERT"] = self.cacert
            tok = self.token if token is None else token
            if tok:
                env[prefix + "TOKEN"] = tok
        return env

    def bao(self, *args: str, token: str | None = None, stdin: str | None = None) -> subprocess.CompletedProcess:
        """Runs the bao CLI against this vault; the result carries returncode, stdout, stderr."""
        return subprocess.run(
            [str(BAO), *args],
            env=self.cli_env(token),
            input=stdin,
            stdin=None if stdin is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            cwd=self.home,
        )

    def bao_json(self, *args: str, token: str | None = None) -> dict:
        """Runs `bao ... -format=json` style commands that must succeed, and parses stdout."""
        result = self.bao(*args, token=token)
        assert result.returncode == 0, f"bao {' '.join(args)} exited {result.returncode}: {result.stderr}"
        return json.loads(result.stdout)

    def audit_entries(self, path: Path | None = None) -> list[dict]:
        """Request and response entries of an audit file (signed checkpoints left out)."""
        text = (path or self.data_dir / "audit.log").read_text("utf-8")
        entries = [json.loads(line) for line in text.splitlines() if line.strip()]
        return [e for e in entries if e.get("type") in ("request", "response")]


def start_dev(data_dir: Path, log_path: Path) -> tuple[Daemon, dict[str, str]]:
    daemon = Daemon(
        ["dev", "--data-dir", str(data_dir), "--listen", "127.0.0.1:0"],
        log_path,
        capture_stdout=True,
    )
    deadline = time.monotonic() + START_TIMEOUT
    exports = daemon.export_lines(deadline)
    wait_until_answering(daemon, exports["VAULT_ADDR"], exports["VAULT_CACERT"], deadline)
    return daemon, exports


@pytest.fixture
def unique() -> str:
    """A name no other test uses."""
    return "t" + uuid.uuid4().hex[:10]


@pytest.fixture
def dev_vault(tmp_path: Path):
    """A dev-mode vault: initialised, unsealed, root token, file audit at DIR/audit.log."""
    data_dir = tmp_path / "dev"
    home = tmp_path / "dev-home"
    home.mkdir()
    daemon, exports = start_dev(data_dir, tmp_path / "vaultd-dev.log")
    vault = RunningVault(
        addr=exports["VAULT_ADDR"],
        cacert=exports["VAULT_CACERT"],
        token=exports["VAULT_TOKEN"],
        data_dir=data_dir,
        daemon=daemon,
        home=home,
    )
    try:
        yield vault
    finally:
        daemon.stop()


@pytest.fixture(scope="session")
def tls_files(tmp_path_factory) -> dict[str, Path]:
    """The CA, certificate and key that a dev run makes, for production configurations."""
    base = tmp_path_factory.mktemp("tls")
    daemon, _ = start_dev(base / "dev", base / "vaultd-dev.log")
    daemon.stop()
    files = {}
    for name in ("ca.pem", "server.pem", "server-key.pem"):
        target = base / name
        shutil.copyfile(base / "dev" / name, target)
        os.chmod(target, 0o600 if "key" in name else 0o644)
        files[name] = target
    return files


class ProductionVault(RunningVault):
    """A production-mode daemon (Shamir seal) that can be restarted on the same storage."""

    config_path: Path
    starts: int = 0

    def start(self) -> None:
        self.starts += 1
        self.daemon = Daemon(
            ["--config", str(self.config_path)],
            self.data_dir / f"vaultd-{self.starts}.log",
            capture_stdout=False,
        )
        deadline = time.monotonic() + START_TIMEOUT
        self.addr = "https://" + self.daemon.listening_address(deadline)
        wait_until_answering(self.daemon, self.addr, self.cacert, deadline)

    def restart(self) -> None:
        self.daemon.stop()
        self.start()


@pytest.fixture
def prod_vault(tmp_path: Path, tls_files):
    """A production vault: started from a TOML configuration, sealed and uninitialised."""
    data_dir = tmp_path / "prod"
    data_dir.mkdir(mode=0o700)
    home = tmp_path / "prod-home"
    home.mkdir()
    config = data_dir / "vault.toml"
    config.write_text(
        f"""
[listener]
address = "127.0.0.1:0"
tls_cert_file = "{tls_files['server.pem']}"
tls_key_file = "{tls_files['server-key.pem']}"

[storage]
path = "{data_dir / 'store'}"

[seal]
type = "shamir"

[[audit]]
type = "file"
file_path = "{data_dir / 'audit.log'}"

[security]
allow_root = true

[log]
format = "text"
level = "info"
"""
    )
    vault = ProductionVault(
        addr="",
        cacert=str(tls_files["ca.pem"]),
        data_dir=data_dir,
        daemon=None,  # type: ignore[arg-type]
        home=home,
    )
    vault.config_path = config
    vault.start()
    try:
        yield vault
    finally:
        vault.daemon.stop()


def free_port() -> int:
    """A port of 127.0.0.1 that nothing listens on at the moment."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def openbao(tmp_path_factory):
    """A real OpenBao server (`bao server -dev`: in memory, loopback only) with transit
    mounted at `transit/`, as the peer that keys and ciphertexts move to and from."""
    yield from run_openbao(tmp_path_factory.mktemp("openbao"), tls=False)


@pytest.fixture(scope="session")
def openbao_tls(tmp_path_factory):
    """A real OpenBao dev server over TLS (its own CA, at `.adapter._kwargs["verify"]`),
    which asks clients for certificates as vaultd does, with `auth/cert` enabled."""
    for client in run_openbao(tmp_path_factory.mktemp("openbao-tls"), tls=True):
        client.sys.enable_auth_method("cert")
        yield client


def run_openbao(base: Path, tls: bool):
    """Runs `bao server -dev` in `base` until the generator is closed; yields a root client."""
    token = "root-" + uuid.uuid4().hex
    port = free_port()
    log = open(base / "openbao.log", "ab")
    args = [
        str(BAO),
        "server",
        "-dev",
        f"-dev-root-token-id={token}",
        f"-dev-listen-address=127.0.0.1:{port}",
    ]
    if tls:
        args += ["-dev-tls", f"-dev-tls-cert-dir={base}"]
    process = subprocess.Popen(
        args,
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        env={**clean_env(), "HOME": str(base)},
        cwd=base,
    )
    scheme = "https" if tls else "http"
    verify = str(base / "vault-ca.pem") if tls else True
    client = hvac.Client(url=f"{scheme}://127.0.0.1:{port}", token=token, verify=verify, timeout=30)
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if process.poll() is not None:
            pytest.fail(f"bao server -dev exited with {process.returncode}; see {base / 'openbao.log'}")
        try:
            if client.sys.is_initialized() and not client.sys.is_sealed():
                break
        except (requests.RequestException, OSError):
            # Also while the TLS CA file is not written yet.
            pass
        if time.monotonic() > deadline:
            process.kill()
            pytest.fail("bao server -dev did not start in time")
        time.sleep(0.05)
    client.sys.enable_secrets_engine("transit", path="transit")
    try:
        yield client
    finally:
        process.terminate()
        try:
            process.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()
