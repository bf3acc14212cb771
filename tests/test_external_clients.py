"""Real third-party OSC clients against a real daemon: liblo's oscsend/oscdump and vanilla Pure Data.

These are the tools artists use; the bridge is checked the way they see it: replies as printed
by ``oscdump`` and by Pd's ``[print]``, result files read back with PIL and compared pixel by
pixel. Skipped without the tools, failed under CI=true (see conftest.require_tool).
"""

from __future__ import annotations

import re
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import REPO, RunningBridge, require_tool, wait_until

W, H = 64, 48
P = "/pose2person"
PD_PATCH = REPO / "tests" / "pd" / "path_client.pd"

pytestmark = pytest.mark.external


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def source_image(root: Path, name: str, seed: int) -> np.ndarray:
    rgb = np.random.default_rng(seed).integers(0, 256, (H, W, 3), dtype=np.uint8)
    Image.fromarray(rgb, "RGB").save(root / name)
    return rgb


class Dump:
    """``oscdump -L <port>`` in the background; its lines without the timetag column."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.proc = subprocess.Popen([require_tool("oscdump"), "-L", str(port)], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, text=True)
        self.lines: list[str] = []
        threading.Thread(target=self._pump, daemon=True).start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            parts = line.rstrip("\n").split(" ", 1)
            # "<hex-sec>.<hex-frac> /path types args"
            if len(parts) == 2 and re.fullmatch(r"[0-9a-f]+\.[0-9a-f]+", parts[0]):
                self.lines.append(parts[1])
            else:
                self.lines.append(line.rstrip("\n"))

    def find(self, prefix: str, timeout: float = 5.0) -> str:
        found: list[str] = []

        def seen() -> bool:
            found[:] = [ln for ln in self.lines if ln.startswith(prefix)]
            return bool(found)

        assert wait_until(seen, timeout), f"oscdump never printed {prefix!r}; it printed {self.lines}"
        return found[0]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def oscsend(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([require_tool("oscsend"), *args], capture_output=True, text=True, timeout=10)


def test_liblo_oscsend_and_oscdump(invert_bridge: RunningBridge) -> None:
    require_tool("oscsend")
    dump = Dump(free_udp_port())
    try:
        host, port = "127.0.0.1", str(invert_bridge.osc_port)
        # oscsend sends every message from a new port: register a default for the whole host.
        # oscdump may need a moment to bind; repeat until its confirmation shows up.
        def registered() -> bool:
            assert oscsend(host, port, f"{P}/register/host", "i", str(dump.port)).returncode == 0
            return wait_until(lambda: any(ln.startswith(f"{P}/registered") for ln in dump.lines), 0.5)

        assert wait_until(registered, 10.0, interval=0.0), dump.lines
        assert dump.find(f"{P}/registered") == f"{P}/registered i {dump.port}"

        assert oscsend(host, port, f"{P}/ping", "i", "42").returncode == 0
        assert dump.find(f"{P}/pong") == f"{P}/pong i 42"

        rgb = source_image(invert_bridge.root, "liblo_in.png", 1)
        src, dst = invert_bridge.root / "liblo_in.png", invert_bridge.root / "liblo_out.png"
        assert oscsend(host, port, f"{P}/frame/path", "ssi", str(src), str(dst), "7").returncode == 0
        done = dump.find(f"{P}/frame/done")
        m = re.fullmatch(rf'{P}/frame/done isiif 7 "(.*)" 64 48 (\d+\.\d+)', done)
        assert m, done
        assert m.group(1) == str(dst)
        with Image.open(dst) as im:
            assert np.array_equal(np.asarray(im), 255 - rgb)

        # Bad requests: a path outside the root, and a type Pd and Max cannot send back.
        assert oscsend(host, port, f"{P}/frame/path", "si", "/etc/passwd", "8").returncode == 0
        err = dump.find(f"{P}/error iss 8 ")
        assert err.startswith(f'{P}/error iss 8 "path_not_allowed" "')
        assert oscsend(host, port, f"{P}/ping", "T").returncode == 0
        err = dump.find(f"{P}/error iss -1 ")
        assert err.startswith(f'{P}/error iss -1 "unsupported_type" "')

        # The host default also serves any other unregistered sender on this host.
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.bind(("127.0.0.1", 0))
            raw.sendto(b"/pose2person/ping\x00\x00\x00,i\x00\x00\x00\x00\x00\x4d", ("127.0.0.1", int(port)))
            assert dump.find(f"{P}/pong i 77") == f"{P}/pong i 77"
            raw.settimeout(0.3)
            with pytest.raises(socket.timeout):
                raw.recv(100)

        # OSC over TCP with liblo's framing (int32 length prefix).
        tcp = oscsend(f"osc.tcp://127.0.0.1:{port}", f"{P}/ping", "i", "5")
        assert tcp.returncode == 0, tcp.stderr
        # Proof that the bridge understood liblo's TCP framing: a frame sent that way is processed.
        tcp_dst = invert_bridge.root / "liblo_tcp_out.png"
        tcp = oscsend(f"osc.tcp://127.0.0.1:{port}", f"{P}/frame/path", "ssi", str(src), str(tcp_dst), "9")
        assert tcp.returncode == 0, tcp.stderr
        assert wait_until(tcp_dst.exists, 5.0)
        with Image.open(tcp_dst) as im:
            assert np.array_equal(np.asarray(im), 255 - rgb)
        assert invert_bridge.alive()
        assert oscsend(host, port, f"{P}/ping", "i", "6").returncode == 0
        assert dump.find(f"{P}/pong i 6") == f"{P}/pong i 6"
        assert "Traceback" not in invert_bridge.log_text()
    finally:
        dump.stop()


def run_pd(bridge: RunningBridge, reply_port: int, frame: tuple[str, str, int], bad: tuple[str, int]
           ) -> subprocess.CompletedProcess[str]:
    pd = require_tool("pd")
    cmd = [pd, "-nogui", "-nosound", "-nomidi", "-noprefs", "-stderr",
           "-send", f"p2p-reply-port {reply_port}",
           "-send", f"p2p-bridge-port {bridge.osc_port}",
           "-send", f"p2p-frame {frame[0]} {frame[1]} {frame[2]}",
           "-send", f"p2p-bad {bad[0]} {bad[1]}",
           "-send", "p2p-go bang",
           "-open", str(PD_PATCH)]
    # The patch quits by itself (700 ms after the last reply, 8 s at most).
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30, cwd=REPO)


def test_pure_data_path_client(invert_bridge: RunningBridge) -> None:
    require_tool("pd")
    rgb = source_image(invert_bridge.root, "pd_in.png", 2)
    src, dst = invert_bridge.root / "pd_in.png", invert_bridge.root / "pd_out.png"
    missing = invert_bridge.root / "nothing_here.png"
    reply_port = free_udp_port()
    proc = run_pd(invert_bridge, reply_port, (str(src), str(dst), 7), (str(missing), 8))
    assert proc.returncode == 0
    out = proc.stderr
    replies = [ln[len("reply: "):] for ln in out.splitlines() if ln.startswith("reply: ")]
    assert "error:" not in out and "couldn't create" not in out, out
    assert f"pose2person registered {reply_port}" in replies, out
    assert "pose2person pong 42" in replies, out
    done = [r for r in replies if r.startswith("pose2person frame done ")]
    assert len(done) == 1, out
    fields = done[0].split()
    assert fields[3:7] == ["7", str(dst), "64", "48"], done
    assert float(fields[7]) >= 0
    errors = [r for r in replies if r.startswith("pose2person error ")]
    assert len(errors) == 1 and errors[0].split()[2:4] == ["8", "file_not_found"], out
    # Registration order: the confirmation came first, before any other reply.
    assert replies[0] == f"pose2person registered {reply_port}"
    with Image.open(dst) as im:
        assert np.array_equal(np.asarray(im), 255 - rgb)
    assert invert_bridge.alive()
    with invert_bridge.client() as client:
        client.ping(3)
