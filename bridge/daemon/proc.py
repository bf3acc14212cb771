"""A bridge daemon in a child process, for commands that need a real one (``check``, ``demo``, benches).

``DaemonProcess(args)`` runs ``python -m bridge serve --osc-port 0 --no-zeroconf ... <args>``,
waits for its ``ready`` log line (bounded), and reads the OSC port from its ``listening`` line.
``stop()`` sends SIGINT and waits; the process is killed if it does not exit in time.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import Callable

from ..errors import BridgeError

START_TIMEOUT_S = 120.0  # loading and warming up a model can take a while on a CPU
STOP_TIMEOUT_S = 5.0


class DaemonProcess:
    """A running ``pose2person serve`` child process on loopback."""

    def __init__(self, args: list[str], *, shm_dir: Path | None = None, start_timeout: float = START_TIMEOUT_S,
                 src: Path | None = None, http: bool = False, preexec_fn: Callable[[], None] | None = None) -> None:
        cmd = [sys.executable, "-m", "bridge", "serve", "--host", "127.0.0.1", "--osc-port", "0", "--no-zeroconf",
               *(["--http-port", "0"] if http else ["--no-http"]), "--log-level", "info"]
        if shm_dir is not None:
            cmd += ["--shm-dir", str(shm_dir)]
        src_dir = str(src or Path(__file__).resolve().parent.parent)  # another checkout, to compare commits
        env = {**os.environ, "PYTHONUNBUFFERED": "1",
               "PYTHONPATH": os.pathsep.join(p for p in (src_dir, os.environ.get("PYTHONPATH", "")) if p)}
        self.proc = subprocess.Popen(cmd + list(args), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                                     env=env, cwd=src_dir, preexec_fn=preexec_fn)
        self.lines: list[str] = []
        ready = threading.Event()

        def pump() -> None:
            assert self.proc.stderr is not None
            for line in self.proc.stderr:
                self.lines.append(line.rstrip("\n"))
                if "ready (model" in line:
                    ready.set()
            ready.set()

        threading.Thread(target=pump, name="p2p-daemon-log", daemon=True).start()
        if not ready.wait(start_timeout) or self.proc.poll() is not None:
            self.stop()
            raise BridgeError("the bridge did not start:\n" + "\n".join(self.lines[-20:]))
        m = re.search(r"osc\.udp://127\.0\.0\.1:(\d+)", "\n".join(self.lines))
        if not m:
            self.stop()
            raise BridgeError("no osc.udp port in the bridge's log:\n" + "\n".join(self.lines[-20:]))
        self.port = int(m.group(1))
        http_m = re.search(r"http://127\.0\.0\.1:(\d+)", "\n".join(self.lines))
        self.http_port = int(http_m.group(1)) if http_m else None
        key = re.search(r"/monitor\?key=([A-Za-z0-9_-]+) ", "\n".join(self.lines))
        self.monitor_key = key.group(1) if key else None  # the private HTTP reads' key (None with a token)
        model = re.search(r"ready \(model ([^)]*)\)", "\n".join(self.lines))
        self.model = model.group(1) if model else "?"

    def stop(self) -> int | None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(STOP_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> "DaemonProcess":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
