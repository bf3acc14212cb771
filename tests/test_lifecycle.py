"""Daemon lifecycle as an operator sees it: signals, exit codes, start-up failures, log lines.

Real ``python -m bridge serve`` subprocesses; ports bound by real sockets on 127.0.0.1.
Durations are only used as upper bounds (the documented 2 s shutdown, with margin).
"""

from __future__ import annotations

import re
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from bridge.osc import encode_message

from conftest import REPO, RunningBridge, start_bridge, wait_until

W, H = 64, 48
P = "/pose2person"
EXIT_BOUND_S = 2.5


def wait_exit(running: RunningBridge, bound: float = EXIT_BOUND_S) -> int:
    try:
        return running.proc.wait(bound)
    except subprocess.TimeoutExpired:
        running.proc.kill()
        running.proc.wait()
        pytest.fail(f"the daemon did not exit within {bound} s:\n{running.log_text()}")


def open_channels(running: RunningBridge) -> list[Path]:
    with running.client() as client:
        a = client.open_shm("cam1", W, H, "BGRA8")
        b = client.open_shm("cam2", W, H, "RGBAF32", 1)
        paths = [Path(s.input.path) for s in (a, b)] + [Path(s.output.path) for s in (a, b)]
        frame = np.full((H, W, 4), 5, np.uint8)
        pixels, _ = client.process_shm(a, frame, 1)
        assert np.array_equal(pixels, frame)
        a.close()
        b.close()
    assert all(p.exists() for p in paths)
    return paths


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_exits_cleanly_and_removes_channel_files(tmp_path: Path, sig: int) -> None:
    running = start_bridge(tmp_path)
    paths = open_channels(running)
    # An idle TCP client and an idle UDP client are connected: neither may hold up the exit.
    tcp = socket.create_connection(("127.0.0.1", running.osc_port), timeout=5)
    try:
        running.proc.send_signal(sig)
        assert wait_exit(running) == 0, running.log_text()
        assert tcp.recv(10) == b""  # the bridge closed the connection
    finally:
        tcp.close()
    assert not any(p.exists() for p in paths)
    assert sorted(running.shm_dir.iterdir()) == []
    # Let the stderr pump finish reading, then check the log tells what happened.
    assert wait_until(lambda: any("stopped" in ln for ln in running.log_lines), 2.0)
    text = running.log_text()
    assert f"{signal.Signals(sig).name} received" in text
    assert "Traceback" not in text


def test_signal_while_the_model_is_busy(tmp_path: Path) -> None:
    """A frame stuck in a slow model, another waiting, a TCP client waiting for its answer: still bounded."""
    running = start_bridge(tmp_path, "--model", "throttle:5000")
    with running.client() as client:
        session = client.open_shm("busy", W, H, "BGR8")
        session.input.write(np.zeros((H, W, 3), np.uint8), 1)
        session.input.write(np.ones((H, W, 3), np.uint8), 2)
        client.send(f"{P}/frame/shm", "busy", 1)
        # Frame 1 is taken by the worker (it is no longer overtakable) before frame 2 is sent.
        assert wait_until(lambda: "throttle" in client.status().model and client.status().received == 1, 2.0)
        time.sleep(0.1)
        client.send(f"{P}/frame/shm", "busy", 2)
        tcp = socket.create_connection(("127.0.0.1", running.osc_port), timeout=5)
        msg = encode_message(f"{P}/frame/shm", "busy", 2)
        tcp.sendall(struct.pack(">i", len(msg)) + msg)
        tcp.shutdown(socket.SHUT_WR)  # half-closed: the bridge is waiting to answer it
        try:
            running.proc.send_signal(signal.SIGTERM)
            assert wait_exit(running) == 0, running.log_text()
            tcp.settimeout(2)
            try:
                while tcp.recv(65536):
                    pass  # whatever it got, the connection ends
            except ConnectionResetError:
                pass  # closed with its request unread: ends as well
        finally:
            tcp.close()
        paths = [session.input.path, session.output.path]
        session.close()
    assert not any(Path(p).exists() for p in paths)


def test_two_quick_sigints_force_the_exit(tmp_path: Path) -> None:
    running = start_bridge(tmp_path, "--model", "throttle:5000")
    with running.client() as client:
        session = client.open_shm("busy", W, H, "BGRA8")
        session.input.write(np.zeros((H, W, 4), np.uint8), 1)
        client.send(f"{P}/frame/shm", "busy", 1)
        assert wait_until(lambda: client.status().received == 1, 2.0)
        # Give the worker a moment to take the frame into the 5 s model (not an assertion: if it
        # has not, the shutdown is simply quick and the second SIGINT may come after it).
        time.sleep(0.2)
        session.close()
    running.proc.send_signal(signal.SIGINT)
    # The first SIGINT starts a shutdown that waits (bounded) for the busy model ...
    assert wait_until(lambda: any("shutting down" in ln for ln in running.log_lines), 2.0)
    started = time.monotonic()
    if running.alive():
        running.proc.send_signal(signal.SIGINT)
    rc = wait_exit(running, EXIT_BOUND_S)
    assert time.monotonic() - started < EXIT_BOUND_S
    # Its last log line is either the forced exit or the end of a normal shutdown.
    assert wait_until(lambda: any("forcing exit" in ln or "stopped" in ln for ln in running.log_lines), 2.0)
    if any("forcing exit" in ln for ln in running.log_lines):
        assert rc == 130  # ... and the second one cuts it short
        assert not running.log_lines[-1].endswith("stopped")
    else:
        # The shutdown had already finished. A SIGINT that lands after the bridge removed its
        # handlers (interpreter teardown) ends the process the Unix way: killed by SIGINT.
        assert rc in (0, 130, -signal.SIGINT)
    assert "Traceback" not in running.log_text()
    # Even a forced exit leaves no channel files behind in the shm directory.
    assert sorted(running.shm_dir.iterdir()) == []


def serve(tmp_path: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "root").mkdir(exist_ok=True)
    (tmp_path / "shm").mkdir(exist_ok=True)
    cmd = [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1", "--no-http", "--no-zeroconf",
           "--allow-root", str(tmp_path / "root"), "--shm-dir", str(tmp_path / "shm"),
           *(() if "--model" in extra else ("--model", "passthrough")), *extra]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=20, cwd=REPO)


def test_udp_port_in_use_exits_3(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        proc = serve(tmp_path, "--osc-port", str(port))
    assert proc.returncode == 3, proc.stderr
    assert f"cannot bind OSC UDP 127.0.0.1:{port}" in proc.stderr
    assert "in use" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
    assert "listening" not in proc.stderr
    assert sorted((tmp_path / "shm").iterdir()) == []


def test_tcp_port_in_use_exits_3(tmp_path: Path) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = serve(tmp_path, "--osc-port", str(port))
    assert proc.returncode == 3, proc.stderr
    assert f"cannot bind OSC TCP 127.0.0.1:{port}" in proc.stderr
    assert "in use" in proc.stderr.lower()
    assert "Traceback" not in proc.stderr
    # The UDP socket it had bound was released again.
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))


@pytest.mark.parametrize("model, flags, words", [("no-such-model", (), "unknown model"),
                                                 ("throttle:abc", ("--test-models",), "throttle needs milliseconds"),
                                                 ("throttle:20", (), "needs --test-models"),
                                                 ("fault:raise", (), "needs --test-models")])
def test_bad_model_exits_3(tmp_path: Path, model: str, flags: tuple[str, ...], words: str) -> None:
    proc = serve(tmp_path, "--osc-port", "0", "--model", model, *flags)
    assert proc.returncode == 3, proc.stderr
    error_lines = [ln for ln in proc.stderr.splitlines() if " ERROR " in ln]
    assert len(error_lines) == 1 and words in error_lines[0], proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("flags, endpoints", [((), ["osc.udp", "osc.tcp"]), (("--no-tcp",), ["osc.udp"])])
def test_one_listening_line_per_endpoint(tmp_path: Path, flags: tuple[str, ...], endpoints: list[str]) -> None:
    running = start_bridge(tmp_path, *flags)
    try:
        listening = [ln for ln in running.log_lines if " listening " in ln]
        urls = [re.search(r"listening (\S+)", ln).group(1) for ln in listening]  # type: ignore[union-attr]
        assert [u.split("://")[0] for u in urls] == endpoints
        assert all(u.endswith(f"://127.0.0.1:{running.osc_port}") for u in urls)
        assert sum("ready (model passthrough)" in ln for ln in running.log_lines) == 1
        # And each endpoint really answers.
        with running.client() as client:
            client.ping(1)
        ping = encode_message(f"{P}/ping", 2)
        if "osc.tcp" in endpoints:
            with socket.create_connection(("127.0.0.1", running.osc_port), timeout=5) as tcp:
                tcp.sendall(struct.pack(">i", len(ping)) + ping)
                pong = encode_message(f"{P}/pong", 2)
                got = b""
                while len(got) < 4 + len(pong):
                    chunk = tcp.recv(100)
                    assert chunk
                    got += chunk
                assert got == struct.pack(">i", len(pong)) + pong
        else:
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(("127.0.0.1", running.osc_port), timeout=5)
    finally:
        assert running.stop() == 0
    assert sum(" listening " in ln for ln in running.log_lines) == len(endpoints)
