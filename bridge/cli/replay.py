"""``pose2person replay``: rehearse a show without performers (``record`` is :mod:`bridge.cli.record`).

``pose2person record start FOLDER --to HOST:PORT [--source all|HOST|HOST:PORT]`` asks a running
bridge to record its clients' input (``/pose2person/record``, :mod:`bridge.daemon.recorder`) into FOLDER
(a new folder inside the bridge's ``--allow-root``); ``pose2person record stop FOLDER`` ends it.

``pose2person replay FOLDER --to HOST:PORT [--speed 1.0] [--loop]`` plays a recording
(:mod:`bridge.formats.recording`) back into a bridge at the recorded pace, over the same transports: each
recorded client gets its own UDP socket; keypoint messages are sent as they were (type tags and
values), to a shared-memory channel of their frame size that the replay opens as their target;
shared-memory frames are written into a channel of the recorded size, format and origin, then
announced with ``/pose2person/frame/shm``. Like a live client, the replay does not wait for
answers (latest frame wins in the bridge); it counts them and reports how closely it kept time.
"""

from __future__ import annotations

import argparse
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import protocol
from ..client import BridgeClient, RemoteError, ReplyTimeout, ShmSession
from ..errors import BridgeError
from ..formats.recording import Entry, KeypointEntry, ShmEntry, read_entries, read_meta
from ..osc import encode_message
from .options import add_log_level, add_to

log = logging.getLogger(__name__)

MAX_CLIENTS = 64  # recorded clients replayed at once (each one socket and its channels)
DRAIN_S = 2.0  # after the last entry, answers are awaited this long
P = protocol.PREFIX


def add_parser(sub: Any) -> None:
    replay = sub.add_parser("replay", help="play a recording (pose2person record) into a running bridge at real speed")
    replay.add_argument("folder", metavar="FOLDER", help="the recording folder (index.jsonl, frames/)")
    add_to(replay)
    replay.add_argument("--speed", type=float, default=1.0, help="playback speed (default 1.0 = as recorded)")
    replay.add_argument("--loop", action="store_true", help="start again at the end (until Ctrl-C or --max-seconds)")
    replay.add_argument("--max-seconds", type=float, default=None, help="stop after this many seconds")
    replay.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the bridge's answers")
    add_log_level(replay, "warning")


@dataclass
class ReplayFigures:
    sent: int = 0
    keypoints: int = 0
    frames: int = 0
    ready: int = 0
    dropped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)
    lateness_ms: list[float] = field(default_factory=list)  # how late each send was against the schedule
    seconds: float = 0.0
    recorded_s: float = 0.0
    passes: int = 0

    @property
    def answered(self) -> int:
        return self.ready + self.dropped + sum(self.errors.values())

    def summary(self) -> str:
        lat = np.asarray(self.latency_ms or [0.0])
        late = np.asarray(self.lateness_ms or [0.0])
        errors = ", ".join(f"{k} {v}" for k, v in sorted(self.errors.items())) or "none"
        return (f"{self.sent} sent ({self.keypoints} keypoint messages, {self.frames} shm frames) in {self.seconds:.2f} s "
                f"({self.passes} pass(es) of {self.recorded_s:.2f} s recorded); {self.ready} processed, {self.dropped} "
                f"dropped (latest frame wins), errors: {errors}; bridge latency p50 {np.percentile(lat, 50):.1f} ms "
                f"p95 {np.percentile(lat, 95):.1f} ms; send lateness p95 {np.percentile(late, 95):.2f} ms, "
                f"max {late.max():.2f} ms")


class _Player:
    """One recorded client: its socket, its channels and its keypoint target."""

    def __init__(self, index: int, host: str, port: int, timeout: float, prefix: str) -> None:
        self.index = index
        self.client = BridgeClient(host, port, timeout=timeout)
        self.prefix = prefix
        self.sessions: dict[str, ShmSession] = {}  # recorded channel name -> replay channel
        self.layouts: dict[str, tuple[int, int, str, int]] = {}
        self.target: tuple[int, int] | None = None

    def channel_name(self, recorded: str) -> str:
        return f"{self.prefix}{self.index}-{recorded}"[:64]

    def ensure_channel(self, recorded: str, width: int, height: int, fmt: str, origin: int) -> ShmSession:
        layout = (width, height, fmt, origin)
        if self.layouts.get(recorded) != layout:
            old = self.sessions.pop(recorded, None)
            if old is not None:
                old.close()
            self.sessions[recorded] = self.client.open_shm(self.channel_name(recorded), width, height, fmt, origin)
            self.layouts[recorded] = layout
        return self.sessions[recorded]

    def ensure_target(self, width: int, height: int) -> None:
        """Keypoint pictures go to an RGB8 channel of the (first) message's size."""
        if self.target is not None:
            return
        session = self.ensure_channel("kp", width, height, "RGB8", 0)
        self.client.request(f"{P}/keypoints/target", (session.name,), f"{P}/keypoints/target")
        self.target = (width, height)

    def close(self) -> None:
        for session in self.sessions.values():
            try:
                self.client.close_shm(session)
            except (ReplyTimeout, RemoteError, OSError):
                session.close()
        self.client.close()


def _collect(players: list[_Player], figures: ReplayFigures) -> None:
    """Count every answer waiting on the sockets, without blocking."""
    for player in players:
        while True:
            msg = player.client.receive(0.0)
            if msg is None:
                break
            if msg.address in (protocol.FRAME_READY, protocol.FRAME_DONE):
                figures.ready += 1
                figures.latency_ms.append(float(msg.args[-1] if msg.address == protocol.FRAME_DONE
                                                else msg.args[2]))  # type: ignore[arg-type]
            elif msg.address == protocol.FRAME_DROPPED:
                figures.dropped += 1
            elif msg.address == protocol.ERROR and len(msg.args) == 3:
                code = str(msg.args[1])
                figures.errors[code] = figures.errors.get(code, 0) + 1


def _send(player: _Player, entry: Entry, figures: ReplayFigures) -> None:
    if isinstance(entry, KeypointEntry):
        args = entry.args
        player.ensure_target(int(args[2]), int(args[3]))
        # The recorded type tags decide each value's OSC type (Pd and Max send ints as floats).
        typed = [float(v) if tag == "f" else v for tag, v in zip(entry.tags, args)]
        player.client.send_raw(encode_message(f"{P}/keypoints", *typed))
        figures.keypoints += 1
    else:
        assert isinstance(entry, ShmEntry)
        session = player.ensure_channel(entry.channel, entry.width, entry.height, entry.format, entry.origin)
        session.input.write(entry.pixels(), entry.frame_id)
        player.client.send(f"{P}/frame/shm", session.name, entry.frame_id)
        figures.frames += 1
    figures.sent += 1


def replay(folder: Path, host: str, port: int, *, speed: float = 1.0, loop: bool = False, timeout: float = 10.0,
           max_seconds: float | None = None, prefix: str = "replay") -> ReplayFigures:
    """Play ``folder`` into the bridge at ``host:port``; see the module docstring."""
    if not speed > 0:
        raise BridgeError("--speed must be above 0")
    meta = read_meta(folder)
    log.info("replaying %s (%s entries recorded)", folder, meta.get("entries", "?"))
    figures = ReplayFigures()
    players: dict[str, _Player] = {}
    start = time.perf_counter()
    try:
        while True:
            figures.passes += 1
            pass_start = time.perf_counter()
            empty = True
            for entry in read_entries(folder):
                empty = False
                due = pass_start + entry.t / speed
                if max_seconds is not None and due - start > max_seconds:
                    break
                while True:  # wait for the entry's time, counting answers meanwhile
                    _collect(list(players.values()), figures)
                    left = due - time.perf_counter()
                    if left <= 0:
                        break
                    time.sleep(min(left, 0.002))
                player = players.get(entry.client)
                if player is None:
                    if len(players) >= MAX_CLIENTS:
                        raise BridgeError(f"the recording has more than {MAX_CLIENTS} clients")
                    player = players[entry.client] = _Player(len(players), host, port, timeout, prefix)
                figures.lateness_ms.append(max(0.0, (time.perf_counter() - due) * 1000.0))
                _send(player, entry, figures)
                figures.recorded_s = max(figures.recorded_s, entry.t)
            else:
                if loop and not empty:
                    continue
            break
        deadline = time.perf_counter() + DRAIN_S
        while figures.answered < figures.sent and time.perf_counter() < deadline:
            _collect(list(players.values()), figures)
            time.sleep(0.005)
        figures.seconds = time.perf_counter() - start
    finally:
        for player in players.values():
            player.close()
    return figures


def host_port(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    if not host or not port.isdigit():
        raise BridgeError(f"--to must be HOST:PORT, not {text!r}")
    return host.strip("[]"), int(port)


def run(args: argparse.Namespace) -> int:
    host, port = host_port(args.to)
    with BridgeClient(host, port, timeout=args.timeout) as probe:
        try:
            probe.ping()
        except ReplyTimeout:
            raise BridgeError(f"no bridge answers at {host}:{port}") from None
    figures = replay(Path(args.folder), host, port, speed=args.speed, loop=args.loop, timeout=args.timeout,
                     max_seconds=args.max_seconds)
    print(f"{args.folder}: {figures.summary()}")
    return 0


__all__ = ["ReplayFigures", "add_parser", "replay", "run"]
