#!/usr/bin/env python
"""Attack a running daemon the way issue 17 did, per class of attacker, and measure what it costs
everyone else (docs/SECURITY.md, "Network surfaces"; figures in docs/BENCHMARKS.md).

    .venv/bin/python bench/attack.py [--flood-s 5] [--json FILE]

Every daemon is a child process on loopback (``python -m bridge serve``, free ports); other
"hosts" are other loopback addresses (127.0.0.2 and up). Classes and what counts as a success:

* **web page** (a page in the user's browser, DNS rebinding, other origins): HTTP GETs and
  WebSocket handshakes with hostile ``Host`` and ``Origin`` headers, to every route, with the
  right monitor key (as if the page had it: only the name checks are tested). A success is any
  2xx or a 101.
* **LAN host** (``--allow-client 127.0.0.2/32 --token-file``): an unlisted host on every surface
  (success: any byte back); the listed host without the token: state-changing OSC from a second
  socket of a host whose other socket is authorised, private HTTP reads with no or wrong keys
  (success: the state changed, or a 2xx with data).
* **same-host client floods**: the budgets. One host sends maximal bundles (2,000 ``/models`` per
  datagram, 64-message bundles of ``/models``, ``/model s nosuchmodel``, unknown addresses) over
  UDP, 100 OSC-TCP connections do the same, a GET flood hits ``/monitor/state``; meanwhile another
  host pings every 10 ms. Reported: that client's ping delay p50/p99/max against a quiet baseline
  measured in the same run, and the flooder's reply bytes per request byte.
* **connection attacks** (with ``RLIMIT_NOFILE`` 1,024 in the daemon): 1,100 idle OSC-TCP
  connections, 300 WebSocket handshakes, 8 half-sent 32 MiB WebSocket messages, a WebSocket client
  that never reads 8 MiB results; reported: refused counts, the daemon's RSS before and at the
  worst, and whether a ping, a path frame and ``/health`` still work during each.
* **logs**: 3,000 wrong ``/auth``, 1,000 ``/register``, a path with a forged log line; reported:
  log lines written.

A crash is a daemon that exits, or a ``Traceback`` in its log. The table goes to stdout (markdown).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import resource
import socket
import statistics
import struct
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

import aiohttp  # noqa: E402

from bridge.client import BridgeClient  # noqa: E402
from bridge.daemon.proc import DaemonProcess  # noqa: E402
from bridge.osc import decode_packet, encode_bundle, encode_message  # noqa: E402

P = "/pose2person"
TOKEN = "attack-bench-token"


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    return -1.0


def http_status(port: int, path: str, headers: dict[str, str], source: str = "127.0.0.1") -> int:
    """Status of one raw GET (0: closed without an answer)."""
    lines = [f"GET {path} HTTP/1.1", "Connection: close", *[f"{k}: {v}" for k, v in headers.items()]]
    if "Host" not in headers:
        lines.insert(1, f"Host: 127.0.0.1:{port}")
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(source, 0)) as sock:
            sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
            data = sock.recv(64)
    except OSError:
        return 0
    m = re.match(rb"HTTP/1\.[01] (\d+)", data)
    return int(m.group(1)) if m else 0


async def ws_status(port: int, headers: dict[str, str], source: str = "127.0.0.1") -> int:
    connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as session:
        try:
            async with session.ws_connect(f"http://127.0.0.1:{port}/ws", headers=headers, timeout=5) as ws:
                await ws.close()
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status
        except (aiohttp.ClientError, asyncio.TimeoutError):
            return 0


class Tally:
    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, cls: str, probes: int, successes: int, daemon: DaemonProcess, note: str = "") -> None:
        crashed = daemon.proc.poll() is not None or any("Traceback" in ln for ln in daemon.lines)
        if crashed:  # show why, on stderr
            at = next((i for i, ln in enumerate(daemon.lines) if "Traceback" in ln), max(0, len(daemon.lines) - 10))
            print(f"{cls}: daemon exited or logged a traceback:\n" + "\n".join(daemon.lines[max(0, at - 3):at + 25]),
                  file=sys.stderr)
        self.rows.append({"class": cls, "probes": probes, "successes": successes, "crashes": int(crashed),
                          "note": note})


def start(tmp: Path, *args: str, http: bool = True, preexec: Callable[[], None] | None = None,
          src: Path | None = None) -> DaemonProcess:
    root = tmp / "root"
    root.mkdir(exist_ok=True)
    return DaemonProcess(["--model", "passthrough", "--allow-root", str(root), *args], shm_dir=tmp, http=http,
                         preexec_fn=preexec, src=src)


# -- classes ----------------------------------------------------------------------------------------

def web_page(tmp: Path, tally: Tally) -> None:
    d = start(tmp)
    try:
        port = d.http_port
        assert port is not None
        key = d.monitor_key
        evil_hosts = ["rebind.evil.example", "127.0.0.1.evil.example", "localhost.evil.example", "evil.local",
                      "10.9.8.7", "[2001:db8::1]", "", "127.0.0.1:99999", "[::1", "0x7f000001", "2130706433",
                      "localhost@evil.example", "evil.example#127.0.0.1"]
        evil_origins = ["http://rebind.evil.example", "null", "file://", "http://127.0.0.1.evil.example",
                        "https://evil.example", "http://localhost.evil.example", "chrome-extension://abc",
                        "http://10.9.8.7", "http://evil.example:80@127.0.0.1"]
        paths = [f"/monitor/state?key={key}", f"/health?key={key}", f"/metrics?key={key}", "/", "/?HOST_INFO",
                 "/web/index.html"]
        probes = successes = 0
        for host in evil_hosts:
            for path in paths:
                probes += 1
                status = http_status(port, path, {"Host": f"{host}:{port}" if host and ":" not in host[1:] else host})
                successes += 200 <= status < 300
            for origin in evil_origins[:3]:
                probes += 1
                hdr = {"Host": f"{host}:{port}", "Origin": origin}
                successes += asyncio.run(ws_status(port, hdr)) == 101
        for origin in evil_origins:
            for path in paths[:3]:
                probes += 1
                successes += 200 <= http_status(port, path, {"Origin": origin}) < 300
            probes += 1
            successes += asyncio.run(ws_status(port, {"Origin": origin})) == 101
        tally.add("web page (Host / Origin / rebinding)", probes, successes, d,
                  "HTTP GETs with the monitor key and WebSocket handshakes")
    finally:
        d.stop()


def lan_host(tmp: Path, tally: Tally) -> None:
    (tmp / "token").write_text(TOKEN + "\n")
    d = start(tmp, "--allow-client", "127.0.0.2/32", "--token-file", str(tmp / "token"))
    try:
        port, osc = d.http_port or 0, d.port
        probes = successes = 0
        # An unlisted host: every surface, nothing back.
        outsider = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        outsider.bind(("127.0.0.3", 0))
        outsider.settimeout(0.2)
        for msg in (encode_message(f"{P}/ping", 1), encode_message(f"{P}/models"), b"garbage!",
                    encode_message(f"{P}/auth", TOKEN), encode_message(f"{P}/model", "invert")):
            probes += 1
            outsider.sendto(msg, ("127.0.0.1", osc))
            try:
                outsider.recv(65536)
                successes += 1
            except OSError:
                pass
        for path in ("/", "/health", "/monitor/state", "/web/index.html", f"/metrics?key={TOKEN}"):
            probes += 1
            successes += http_status(port, path, {}, source="127.0.0.3") != 0
        probes += 1
        successes += asyncio.run(ws_status(port, {}, source="127.0.0.3")) == 101
        with socket.socket() as tcp:
            tcp.bind(("127.0.0.3", 0))
            tcp.settimeout(0.5)
            tcp.connect(("127.0.0.1", osc))
            packet = encode_message(f"{P}/ping", 1)
            try:
                tcp.sendall(struct.pack(">i", len(packet)) + packet)
                probes += 1
                successes += bool(tcp.recv(100))
            except OSError:
                pass
        # The listed host: one socket authorised, the others inherit nothing; private reads need the key.
        with BridgeClient("127.0.0.1", osc, timeout=5, bind=("127.0.0.2", 0)) as tool, \
                BridgeClient("127.0.0.1", osc, timeout=0.5, bind=("127.0.0.2", 0)) as page:
            tool.send(f"{P}/auth", TOKEN)
            tool.wait_for(lambda m: m.address == f"{P}/auth/ok")
            for spec in ("invert", "passthrough", "throttle:100", "fault:raise"):
                probes += 1
                page.send(f"{P}/model", spec)
            page.send(f"{P}/record", str(tmp / "root" / "rec"))
            page.send(f"{P}/shutdown")
            probes += 2
            time.sleep(0.5)
            successes += tool.model() != "passthrough" or (tmp / "root" / "rec").exists() or d.proc.poll() is not None
            for guess in range(30):
                probes += 1
                page.send(f"{P}/auth", f"guess-{guess:04d}-xx")
            time.sleep(0.2)
        for path, hdr in (("/monitor/state", {}), ("/metrics", {}), ("/monitor/state?key=wrong", {}),
                          ("/monitor/state", {"Authorization": "Bearer wrong"}), ("/metrics?key=", {})):
            probes += 1
            successes += 200 <= http_status(port, path, hdr, source="127.0.0.2") < 300
        tally.add("LAN host (unlisted; listed without token or key)", probes, successes, d,
                  "OSC UDP/TCP, HTTP, WebSocket; auth inheritance; 30 token guesses")
    finally:
        d.stop()


def _pinger(osc: int, stop: threading.Event, out: list[float]) -> None:
    with BridgeClient("127.0.0.1", osc, timeout=2.0) as c:
        token = 0
        while not stop.is_set():
            token += 1
            try:
                out.append(c.ping(token))
            except Exception:
                out.append(2000.0)
            time.sleep(0.01)


def _pct(values: list[float], q: float) -> float:
    v = sorted(values)
    return v[min(len(v) - 1, int(q * len(v)))] if v else float("nan")


# Flooders run in child processes: in the bench's own process they would hold its GIL and the
# pinger would measure its own waits, not the daemon's.

def _flood_udp(packet: bytes, dest: tuple[str, int], stop: Any, counts: Any) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.2", 0))
    s.setblocking(False)
    sent = sent_bytes = got = 0
    while not stop.is_set():
        for _ in range(64):
            try:
                s.sendto(packet, dest)
                sent += 1
                sent_bytes += len(packet)
            except BlockingIOError:
                time.sleep(0.0005)
        try:
            while True:
                got += len(s.recv(65536))
        except OSError:
            pass
    counts[0], counts[1], counts[2] = sent, sent_bytes, got


def _flood_tcp(packet: bytes, dest: tuple[str, int], stop: Any, counts: Any) -> None:
    framed = struct.pack(">i", len(packet)) + packet
    conns = []
    for i in range(100):
        c = socket.socket()
        c.bind((f"127.0.0.{2 + i % 3}", 0))
        c.connect(dest)
        c.setblocking(False)
        conns.append(c)
    sent = sent_bytes = got = 0
    while not stop.is_set():
        for c in conns:
            try:
                c.send(framed)
                sent += 1
                sent_bytes += len(framed)
            except OSError:
                pass
            try:
                got += len(c.recv(65536))
            except OSError:
                pass
        time.sleep(0.001)
    for c in conns:
        c.close()
    counts[0], counts[1], counts[2] = sent, sent_bytes, got


def _flood_get(url: str, dest: tuple[str, int], stop: Any, counts: Any) -> None:
    async def go() -> None:
        conn = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0), limit=16)
        async with aiohttp.ClientSession(connector=conn) as session:
            async def one() -> None:
                while not stop.is_set():
                    try:
                        async with session.get(url) as r:
                            counts[2] += len(await r.read())
                            counts[0] += 1
                    except aiohttp.ClientError:
                        pass
            await asyncio.gather(*(one() for _ in range(16)))
    asyncio.run(go())


def floods(tmp: Path, tally: Tally, seconds: float, results: dict[str, Any], src: Path | None = None) -> None:
    import multiprocessing as mp

    d = start(tmp, src=src)
    try:
        osc, port = d.port, d.http_port or 0
        dest = ("127.0.0.1", osc)
        models = encode_message(f"{P}/models")
        kinds: list[tuple[str, Callable[..., None], Any]] = [
            ("UDP: 2,000 /models per datagram", _flood_udp, encode_bundle([models] * 2000)),
            ("UDP: 64 x /models bundles", _flood_udp, encode_bundle([models] * 64)),
            ("UDP: 64 x /model s nosuchmodel", _flood_udp,
             encode_bundle([encode_message(f"{P}/model", "nosuchmodel")] * 64)),
            ("UDP: 5,000 x /a per datagram", _flood_udp, encode_bundle([encode_message("/a")] * 5000)),
            ("TCP: 100 connections x 2,000-message bundles", _flood_tcp, encode_bundle([models] * 2000)),
            ("HTTP: GET /monitor/state flood (16 at once)", _flood_get,
             f"http://127.0.0.1:{port}/monitor/state?key={d.monitor_key}"),
        ]
        ctx = mp.get_context("fork")
        table = []

        def measure(name: str, target: Callable[..., None] | None, arg: Any) -> None:
            stop = ctx.Event()
            counts = ctx.Array("d", 3)
            pings: list[float] = []
            proc = ctx.Process(target=target, args=(arg, dest, stop, counts)) if target else None
            if proc is not None:
                proc.start()
                time.sleep(0.5)
            tstop = threading.Event()
            pinger = threading.Thread(target=_pinger, args=(osc, tstop, pings))
            pinger.start()
            time.sleep(seconds)
            tstop.set()
            pinger.join()
            if proc is not None:
                stop.set()
                proc.join(10)
            sent, sent_bytes, got = counts[0], counts[1], counts[2]
            table.append({"flood": name, "p50_ms": statistics.median(pings), "p99_ms": _pct(pings, 0.99),
                          "max_ms": max(pings), "pings": len(pings), "requests": int(sent),
                          "amplification": got / sent_bytes if sent_bytes else 0.0})

        measure("none (baseline)", None, None)
        for name, target, arg in kinds:
            measure(name, target, arg)
            time.sleep(1.2)  # the flooder's bucket refills; the next flood starts from the same state
        results["floods" if src is None else "floods_other"] = table
        probes = sum(row["requests"] for row in table)
        slow = sum(row["p99_ms"] >= 50 for row in table[1:])
        if src is None:
            tally.add("same-host floods (budgets)", probes, slow, d,
                      "success = another client's ping p99 >= 50 ms")
    finally:
        d.stop()


def _fd_limit() -> None:
    resource.setrlimit(resource.RLIMIT_NOFILE, (1024, 1024))


def connections(tmp: Path, tally: Tally, results: dict[str, Any]) -> None:
    d = start(tmp, preexec=_fd_limit)
    rows = []
    probes = failures = 0
    try:
        osc, port = d.port, d.http_port or 0
        pid = d.proc.pid
        from PIL import Image

        Image.new("RGB", (32, 32), (1, 2, 3)).save(tmp / "root" / "in.png")

        def others_served() -> bool:
            try:
                with BridgeClient("127.0.0.1", osc, timeout=5) as c:
                    c.ping(1)
                    c.process_path(str(tmp / "root" / "in.png"), str(tmp / "root" / "out.png"), 3)
                return http_status(port, f"/health?key={d.monitor_key}", {}) == 200
            except Exception:
                return False

        # 1,100 idle OSC-TCP connections from three hosts.
        before = rss_mb(pid)
        socks = []
        for i in range(1100):
            try:
                socks.append(socket.create_connection(("127.0.0.1", osc), timeout=2,
                                                      source_address=(f"127.0.0.{2 + i % 3}", 0)))
            except OSError:
                pass
        time.sleep(0.5)
        ok = others_served()
        rows.append({"attack": "1,100 idle OSC-TCP connections (3 hosts)", "rss_before_mb": before,
                     "rss_worst_mb": rss_mb(pid), "others_served": ok})
        probes += len(socks)
        failures += not ok
        for s in socks:
            s.close()
        time.sleep(0.5)

        async def ws_many() -> tuple[int, int]:
            conns, refused = [], 0
            async with aiohttp.ClientSession() as session:
                for i in range(300):
                    try:
                        conns.append(await session.ws_connect(f"http://127.0.0.1:{port}/ws"))
                    except aiohttp.WSServerHandshakeError:
                        refused += 1
                await asyncio.sleep(0.2)
                peak = rss_mb(pid)
                for c in conns:
                    await c.close()
                return refused, int(peak)

        before = rss_mb(pid)
        refused, peak = asyncio.run(ws_many())
        rows.append({"attack": f"300 WebSocket handshakes ({refused} refused)", "rss_before_mb": before,
                     "rss_worst_mb": float(peak), "others_served": others_served()})
        probes += 300

        # Half-sent 32 MiB messages: a frame header announcing 32 MiB, then most of it, then silence;
        # 6 tries from each of two hosts (4 per host are let in).
        before = rss_mb(pid)
        half, accepted = [], 0
        for i in range(12):
            s = socket.create_connection(("127.0.0.1", port), timeout=5, source_address=(f"127.0.0.{2 + i % 2}", 0))
            half.append(s)
            try:
                s.sendall((f"GET /ws HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                           "Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                           "Sec-WebSocket-Version: 13\r\n\r\n").encode())
                if not s.recv(4096).startswith(b"HTTP/1.1 101"):
                    continue
                accepted += 1
                s.sendall(bytes([0x82, 0xFF]) + struct.pack(">Q", 32 * 1024 * 1024) + b"\0\0\0\0")
                chunk = bytes(1 << 20)
                for _ in range(31):
                    s.sendall(chunk)
            except OSError:
                pass
        time.sleep(1.0)
        worst = rss_mb(pid)
        ok = others_served()
        rows.append({"attack": f"12 half-sent 32 MiB WebSocket messages from 2 hosts ({accepted} let in)",
                     "rss_before_mb": before, "rss_worst_mb": worst, "others_served": ok})
        probes += 12
        failures += not ok
        for s in half:
            s.close()
        time.sleep(1.0)

        # A client that never reads 8 MiB results.
        async def never_reads() -> float:
            from bridge.transports.wsframe import pack_frame
            import numpy as np

            img = np.zeros((1024, 2048, 4), np.uint8)  # 8 MiB
            async with aiohttp.ClientSession() as session:
                ws = await session.ws_connect(f"http://127.0.0.1:{port}/ws", max_msg_size=0)
                worst = 0.0
                for fid in range(40):
                    await ws.send_bytes(pack_frame(1, "RGBA8", 0, fid, img))
                    await asyncio.sleep(0.05)
                    worst = max(worst, rss_mb(pid))
                await asyncio.sleep(1.0)
                worst = max(worst, rss_mb(pid))
                await ws.close()
                return worst

        before = rss_mb(pid)
        worst = asyncio.run(never_reads())
        ok = others_served()
        rows.append({"attack": "a WebSocket client that never reads 40 x 8 MiB results", "rss_before_mb": before,
                     "rss_worst_mb": worst, "others_served": ok})
        probes += 40
        failures += not ok
        results["connections"] = rows
        results["connection_limit_line"] = next((ln for ln in d.lines if "client connections at most" in ln), "")
        tally.add("connection attacks (fd limit 1,024)", probes, failures, d,
                  "success = a ping, a path frame or /health failed during the attack")
    finally:
        d.stop()


def logs(tmp: Path, tally: Tally, results: dict[str, Any]) -> None:
    (tmp / "token").write_text(TOKEN + "\n")
    d = start(tmp, "--token-file", str(tmp / "token"), http=False)
    try:
        before = len(d.lines)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("127.0.0.2", 0))
        dest = ("127.0.0.1", d.port)
        for i in range(3000):
            s.sendto(encode_message(f"{P}/auth", f"wrong-token-{i}"), dest)
            if i % 500 == 499:
                time.sleep(0.3)  # stay inside the rate budget: every one is handled
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r.bind(("127.0.0.3", 0))
        for i in range(1000):
            r.sendto(encode_message(f"{P}/register", 30000 + i % 100), dest)
        s.sendto(encode_message(f"{P}/frame/path", "/x\n05:00:00 WARNING bridge: forged", 1), dest)
        time.sleep(1.0)
        lines = d.lines[before:]
        forged = sum(ln.startswith("05:00:00") for ln in lines)
        results["logs"] = {"lines": len(lines), "forged_lines": forged}
        tally.add("logs (3,000 wrong /auth, 1,000 /register, a forged line)", 4001, forged + (len(lines) > 50), d,
                  f"{len(lines)} log lines written")
    finally:
        d.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--flood-s", type=float, default=5.0, help="seconds per flood (default 5)")
    ap.add_argument("--json", metavar="FILE")
    ap.add_argument("--compare", metavar="DIR", type=Path,
                    help="also flood the daemon of another checkout (e.g. main) in the same run, for a before/after")
    args = ap.parse_args(argv)
    tally = Tally()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="p2p-attack-") as tmp:
        for name, step in (("web", lambda t: web_page(t, tally)), ("lan", lambda t: lan_host(t, tally)),
                           ("flood", lambda t: floods(t, tally, args.flood_s, results)),
                           ("conn", lambda t: connections(t, tally, results)),
                           ("logs", lambda t: logs(t, tally, results))):
            folder = Path(tmp) / name
            folder.mkdir()
            step(folder)
        if args.compare is not None:
            folder = Path(tmp) / "other"
            folder.mkdir()
            floods(folder, tally, args.flood_s, results, src=args.compare.resolve())
    print("| class | probes | successes | crashes | note |\n|---|---:|---:|---:|---|")
    for row in tally.rows:
        print(f"| {row['class']} | {row['probes']:,} | {row['successes']} | {row['crashes']} | {row['note']} |")
    print("\n| flood (from 127.0.0.2) | requests | reply bytes / request byte | ping p50 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|")
    for row in results.get("floods", []):
        print(f"| {row['flood']} | {row['requests']:,} | {row['amplification']:.3f} | {row['p50_ms']:.2f} | "
              f"{row['p99_ms']:.2f} | {row['max_ms']:.2f} |")
    if results.get("floods_other"):
        print(f"\nThe same floods against {args.compare} (p99 ratio = that p99 / this branch's p99):\n")
        print("| flood | requests | reply bytes / request byte | ping p50 ms | p99 ms | max ms | p99 ratio |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for row, mine in zip(results["floods_other"], results.get("floods", [])):
            print(f"| {row['flood']} | {row['requests']:,} | {row['amplification']:.3f} | {row['p50_ms']:.2f} | "
                  f"{row['p99_ms']:.2f} | {row['max_ms']:.2f} | {row['p99_ms'] / max(mine['p99_ms'], 0.01):.1f} |")
    print("\n| connection attack | daemon RSS before MiB | worst MiB | others served |\n|---|---:|---:|---|")
    for row in results.get("connections", []):
        print(f"| {row['attack']} | {row['rss_before_mb']:.0f} | {row['rss_worst_mb']:.0f} | "
              f"{'yes' if row['others_served'] else 'NO'} |")
    print(f"\n{results.get('connection_limit_line', '')}")
    print(f"logs: {results.get('logs')}")
    if args.json:
        Path(args.json).write_text(json.dumps({"classes": tally.rows, **results}, indent=1))
    return 0 if all(r["successes"] == 0 and r["crashes"] == 0 for r in tally.rows) else 1


if __name__ == "__main__":
    sys.exit(main())
