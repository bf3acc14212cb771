"""Shared fixtures: a real daemon in a subprocess, clients, tool lookup.

Every test talks to real sockets on 127.0.0.1 and real files; nothing is mocked.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import pytest

from bridge.client import BridgeClient

REPO = Path(__file__).resolve().parent.parent
IN_CI = os.environ.get("CI", "").lower() == "true"

# The user's own data folder (models registered by `pose2person train`, the user models dir) is
# never touched by tests: every test, and every daemon or command it starts, sees a fresh one.
_USER_DATA = tempfile.mkdtemp(prefix="p2p-test-xdg-data-")
os.environ["XDG_DATA_HOME"] = _USER_DATA
atexit.register(shutil.rmtree, _USER_DATA, True)


def require_tool(name: str) -> str:
    """Path of an external tool; skip the test without it, but fail under CI=true."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install {name}); .ci/run installs it"
        if IN_CI:
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class RunningBridge:
    """A daemon started with ``python -m bridge serve``; ports parsed from its log lines."""

    proc: subprocess.Popen[str]
    osc_port: int
    http_port: int | None
    root: Path
    shm_dir: Path
    log_lines: list[str] = field(default_factory=list)
    monitor_key: str | None = None  # the random key of the monitor URL it logged (None with a control token)

    def url(self, path: str, key: str | None = None) -> str:
        """``http://127.0.0.1:PORT/path``, carrying the monitor key (or ``key``) for the private reads."""
        key = key or self.monitor_key
        sep = "&" if "?" in path else "?"
        return f"http://127.0.0.1:{self.http_port}{path}" + (f"{sep}key={key}" if key else "")

    def client(self, timeout: float = 5.0) -> BridgeClient:
        return BridgeClient("127.0.0.1", self.osc_port, timeout=timeout)

    def log_text(self) -> str:
        return "\n".join(self.log_lines)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def stop(self, sig: int = signal.SIGINT, timeout: float = 5.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_bridge(tmp_path: Path, *extra: str, zeroconf: bool = False, http: bool = False,
                 timeout: float = 20.0, preexec_fn: Callable[[], None] | None = None,
                 test_models: bool = True) -> RunningBridge:
    """Start a daemon on free ports, with its own allow-root and shm dir under ``tmp_path``.

    ``preexec_fn`` runs in the child before exec (fault tests set resource limits there).
    ``test_models``: pass ``--test-models``, so ``throttle:<ms>`` and ``fault:<kind>`` exist (most
    tests use them); tests of the refusal start a daemon without it."""
    root = tmp_path / "root"
    shm_dir = tmp_path / "shm"
    root.mkdir(exist_ok=True)
    shm_dir.mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1", "--osc-port", "0",
           "--allow-root", str(root), "--shm-dir", str(shm_dir), "--log-level", "info"]
    cmd += ["--http-port", "0"] if http else ["--no-http"]
    cmd += ["--zeroconf-interface", "127.0.0.1"] if zeroconf else ["--no-zeroconf"]
    if test_models:
        cmd += ["--test-models"]
    if "--model" not in extra:
        cmd += ["--model", "passthrough"]  # fast to start; the demo model's own tests ask for it
    cmd += list(extra)
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=REPO,
                            preexec_fn=preexec_fn,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    lines: list[str] = []
    ready = threading.Event()

    def pump() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line.rstrip("\n"))
            if "ready (model" in line:
                ready.set()
        ready.set()

    threading.Thread(target=pump, daemon=True).start()
    if not ready.wait(timeout) or proc.poll() is not None:
        proc.kill()
        raise RuntimeError("bridge did not start:\n" + "\n".join(lines))
    text = "\n".join(lines)
    osc = int(re.search(r"osc\.udp://127\.0\.0\.1:(\d+)", text).group(1))  # type: ignore[union-attr]
    http_match = re.search(r"http://127\.0\.0\.1:(\d+)", text)
    key_match = re.search(r"/monitor\?key=([A-Za-z0-9_-]+) ", text)
    return RunningBridge(proc, osc, int(http_match.group(1)) if http_match else None, root, shm_dir, lines,
                         key_match.group(1) if key_match else None)


@pytest.fixture
def bridge(tmp_path: Path) -> Iterator[RunningBridge]:
    """A passthrough daemon without HTTP or zeroconf (fast start)."""
    running = start_bridge(tmp_path)
    yield running
    running.stop()


@pytest.fixture
def invert_bridge(tmp_path: Path) -> Iterator[RunningBridge]:
    running = start_bridge(tmp_path, "--model", "invert")
    yield running
    running.stop()


def wait_until(predicate, timeout: float = 5.0, interval: float = 0.02) -> bool:  # type: ignore[no-untyped-def]
    """Poll ``predicate`` until true or ``timeout``; returns its last value. For conditions, not timing."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return bool(predicate())


def drain(sock: socket.socket, quiet_s: float = 0.3) -> list[bytes]:
    """Every datagram that arrives until ``quiet_s`` passes without one."""
    sock.settimeout(quiet_s)
    got = []
    try:
        while True:
            got.append(sock.recv(65536))
    except OSError:
        pass
    return got
