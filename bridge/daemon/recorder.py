"""The daemon's recorder: a client's incoming keypoint messages and shm frames, written to disk.

``/pose2person/record s path [s source]`` starts a recording into the new folder ``path`` (absolute,
inside an ``--allow-root``; it must not exist yet, its parent must). ``source`` says whose input:
``self`` (the default: the sender's own messages), ``all`` (every client), ``HOST`` (every client
on that host) or ``HOST:PORT`` (one client); each entry is tagged with its client.
``/pose2person/record/stop [s path]`` ends the sender's recording (or the one writing ``path``,
so a recording started by ``pose2person record start`` can be stopped from another process). The format is :mod:`bridge.formats.recording`;
``pose2person replay`` plays it back.

Thread contract: everything public runs on the event-loop thread and only copies and queues. A
shm frame is copied out of its input slot when its ``/frame/shm`` message arrives (the seqlock
is checked; a torn or missing frame is skipped and counted as dropped), which costs the loop one
memcpy per recorded frame. A writer thread writes the files. Bounds:

* at most :data:`MAX_RECORDINGS` at once, one per client;
* each recording stops by itself at ``max_bytes`` (frame bytes plus index) or
  :data:`MAX_ENTRIES` entries, answered ``/pose2person/record/stopped ... s size_limit``;
* at most :data:`MAX_QUEUED_BYTES` (frames and index lines) wait for the writer; beyond that
  entries are dropped (the disk is slower than the stream) and counted in the recording's
  ``dropped`` and in ``/health``.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Hashable

from .. import protocol
from ..errors import ClientError
from ..formats.paths import resolve_output
from ..formats.recording import FRAMES, INDEX, frame_file_name, write_meta
from ..formats.safefs import WALKS_BY_DESCRIPTOR, create_in, make_folder
from ..osc import encode_message
from ..shm import ShmError
from ..util.logutil import RateLimitedLog
from .monitor import client_label
from .shm_channels import Channel

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)  # start/stop lines: a client may loop them (suppressed ones are counted)

MAX_RECORDINGS = 4
MAX_ENTRIES = 5_000_000
DEFAULT_MAX_BYTES = 4 * 1024**3  # per recording: about 55 min of 640x480 BGRA8 at 30 fps is 100 GiB, so
# frame recordings are meant for short rehearsal takes; keypoints are ~1 KiB per message
MAX_QUEUED_BYTES = 256 * 1024**2  # waiting for the writer thread, all recordings together
CLOSE_TIMEOUT_S = 0.5  # at shutdown, the writer gets this long to finish (its files stay valid either way)

def source_matcher(source: str, owner: Hashable) -> Callable[[Hashable], bool]:
    """Which mailbox keys a recording with this ``source`` covers (see the module docstring).
    Keys are the transports' peer keys: (transport, host, port, ...)."""
    if source == "self":
        return lambda key: key == owner
    if source == "all":
        return lambda key: True
    host, port = source, ""
    if source.startswith("["):  # [IPv6] or [IPv6]:PORT
        host, _, rest = source[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else rest
    elif source.count(":") == 1:  # HOST:PORT (a bare IPv6 address has more colons)
        host, _, port = source.partition(":")
    if host and " " not in host and (port == "" or port.isdigit()):
        if port:
            number = int(port)
            return lambda key: isinstance(key, tuple) and len(key) >= 3 and key[1] == host and key[2] == number
        return lambda key: isinstance(key, tuple) and len(key) >= 3 and key[1] == host
    raise ClientError("bad_arguments", f"record source must be self, all, HOST or HOST:PORT, not {source!r}")



@dataclass
class _Recording:
    owner: Hashable
    covers: Callable[[Hashable], bool]  # which clients' input is recorded
    folder: Path
    reply: Callable[[bytes], None]
    started_mono: float = field(default_factory=time.monotonic)
    started_wall: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat())
    entries: int = 0
    frames: int = 0
    bytes: int = 0
    dropped: int = 0
    clients: set[str] = field(default_factory=set)
    index: Any = None  # the open index file (writer thread only)
    dir_fd: int | None = None  # the folder and its frames folder, opened without following links
    frames_fd: int | None = None
    failed: str = ""


class Recorder:
    """See the module docstring. ``roots`` are the allowed roots for recording folders."""

    def __init__(self, roots: tuple[Path, ...], max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._roots = roots
        self._max_bytes = max_bytes
        self._recordings: dict[Hashable, _Recording] = {}
        self._queue: deque[tuple[str, _Recording, Any]] = deque()
        self._queued_bytes = 0
        self._cond = threading.Condition()
        self._writer: threading.Thread | None = None
        self._closing = False
        self.total_entries = 0
        self.total_dropped = 0

    # -- control (loop thread) ------------------------------------------------------------------
    def start(self, owner: Hashable, raw_path: str, reply: Callable[[bytes], None], source: str = "self") -> Path:
        """Begin recording into the new folder ``raw_path``; raises ClientError (path_not_allowed,
        write_failed, bad_arguments, record_limit)."""
        covers = source_matcher(source, owner)
        if owner in self._recordings:
            raise ClientError("record_limit", f"this client records to {self._recordings[owner].folder} already; "
                              "send /pose2person/record/stop first")
        if len(self._recordings) >= MAX_RECORDINGS:
            raise ClientError("record_limit", f"{MAX_RECORDINGS} recordings are running; stop one first")
        folder = resolve_output(raw_path, Path(raw_path), self._roots, protocol.NO_FRAME_ID)
        rec = _Recording(owner, covers, folder, reply)
        self._create(rec)
        self._recordings[owner] = rec
        self._ensure_writer()
        _ratelog.log(logging.INFO, "recording started", "recording %s (for %s) into %s", source, client_label(owner),
                     folder)
        return folder

    def stop(self, owner: Hashable, reason: str = "stopped", folder: str | None = None) -> _Recording | None:
        """End ``owner``'s recording, or the one writing into ``folder`` (None if there is none);
        its reply is the caller's business."""
        if folder is not None:
            owner = next((k for k, r in self._recordings.items() if str(r.folder) == folder
                          or str(r.folder) == str(Path(folder).resolve(strict=False))), None)
        rec = self._recordings.pop(owner, None)
        if rec is not None:
            self._put("close", rec, reason, 0)
            _ratelog.log(logging.INFO, "recording stopped", "recording %s stopped (%s): %d entries, %d bytes, %d "
                         "dropped", rec.folder, reason, rec.entries, rec.bytes, rec.dropped)
        return rec

    def stopped_packet(self, rec: _Recording, reason: str) -> bytes:
        return encode_message(protocol.RECORD_STOPPED, str(rec.folder), min(rec.entries, 2**31 - 1),
                              min(rec.bytes, 2**31 - 1), reason)

    def forget(self, client: Hashable) -> None:
        """A client left: its own recording ends (``client_left``)."""
        rec = self.stop(client, "client_left")
        if rec is not None:
            rec.reply(self.stopped_packet(rec, "client_left"))

    @property
    def active(self) -> bool:
        return bool(self._recordings)

    # -- feeding (loop thread) -----------------------------------------------------------------
    def keypoints(self, client: Hashable, tags: str, args: tuple[Any, ...]) -> None:
        """A ``/pose2person/keypoints`` message arrived from ``client`` (already parsed as valid)."""
        if not self._recordings:
            return
        for rec in self._matching(client):
            line = {"t": 0.0, "client": client_label(client), "kind": "keypoints", "tags": tags, "args": list(args)}
            self._add(rec, line, None)

    def shm_frame(self, client: Hashable, channel: Channel, frame_id: int) -> None:
        """A ``/pose2person/frame/shm`` arrived: copy its pixels now (the ring moves on)."""
        if not self._recordings:
            return
        recs = self._matching(client)
        if not recs:
            return
        try:
            _, pixels = channel.input.read(frame_id)
        except (ShmError, ValueError):  # torn, overwritten, or the channel is being closed
            for rec in recs:
                rec.dropped += 1
                self.total_dropped += 1
            return
        layout = channel.layout
        for rec in recs:
            line = {"t": 0.0, "client": client_label(client), "kind": "shm", "channel": channel.name,
                    "frame_id": frame_id, "width": layout.width, "height": layout.height, "format": layout.format,
                    "origin": layout.origin, "file": "", "bytes": int(pixels.nbytes)}
            self._add(rec, line, pixels)

    def _matching(self, client: Hashable) -> list[_Recording]:
        return [r for r in self._recordings.values() if r.covers(client)]

    def _add(self, rec: _Recording, line: dict[str, Any], pixels: Any) -> None:
        line["t"] = round(time.monotonic() - rec.started_mono, 6)
        if pixels is not None:
            line["file"] = frame_file_name(rec.frames + 1)
        text = json.dumps(line, allow_nan=False, separators=(",", ":")).encode() + b"\n"
        size = (int(pixels.nbytes) if pixels is not None else 0) + len(text)
        if rec.bytes + size > self._max_bytes or rec.entries >= MAX_ENTRIES:
            self.stop(rec.owner, "size_limit")
            rec.reply(self.stopped_packet(rec, "size_limit"))
            return
        if self._queued_bytes + size > MAX_QUEUED_BYTES:  # the disk is behind: drop, count, go on
            rec.dropped += 1
            self.total_dropped += 1
            return
        if pixels is not None:
            rec.frames += 1
        rec.entries += 1
        rec.bytes += size
        rec.clients.add(str(line["client"]))
        self.total_entries += 1
        self._put("entry", rec, (text, line.get("file", ""), pixels, size), size)

    # -- writer thread -----------------------------------------------------------------------------
    def _put(self, op: str, rec: _Recording, payload: Any, size: int) -> None:
        with self._cond:
            self._queue.append((op, rec, payload))
            self._queued_bytes += size
            self._cond.notify()

    def _ensure_writer(self) -> None:
        if self._writer is None or not self._writer.is_alive():
            self._writer = threading.Thread(target=self._write_loop, name="p2p-recorder", daemon=True)
            self._writer.start()

    def _write_loop(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._queue or self._closing)
                if not self._queue:
                    return
                op, rec, payload = self._queue.popleft()
            try:
                if op == "entry":
                    text, name, pixels, _ = payload
                    if pixels is not None:
                        self._write_frame(rec, name, pixels)
                    if not rec.failed:
                        rec.index.write(text)
                        rec.index.flush()  # a crash loses at most the line being written
                else:
                    self._close(rec, str(payload))
            except OSError as exc:  # disk full, folder removed: this recording fails, the daemon goes on
                if not rec.failed:
                    rec.failed = exc.strerror or str(exc)
                    log.error("recording %s: write failed: %s; nothing more is written", rec.folder, rec.failed)
            finally:
                if op == "entry":
                    with self._cond:
                        self._queued_bytes -= int(payload[3])

    def _create(self, rec: _Recording) -> None:
        """Make the recording's folder, its ``frames`` folder and index. Where the platform allows it
        (bridge/formats/safefs.py) the folders are kept open by descriptor, reached from the root
        without following links, and every later file is created relative to them: a folder swapped
        for a link while the recording runs cannot redirect a frame outside the root."""
        folder = rec.folder
        if not WALKS_BY_DESCRIPTOR:
            try:
                folder.mkdir()
                (folder / FRAMES).mkdir()
                rec.index = open(folder / INDEX, "xb")
            except FileExistsError:
                raise ClientError("write_failed", f"{folder} exists already; a recording goes into a new folder"
                                  ) from None
            except OSError as exc:
                raise ClientError("write_failed", f"cannot create {folder}: {exc.strerror}") from None
            return
        try:
            rec.dir_fd = make_folder(folder, self._roots, protocol.NO_FRAME_ID)
        except ClientError as exc:
            if "exists already" in exc.message:
                raise ClientError("write_failed", f"{folder} exists already; a recording goes into a new folder"
                                  ) from None
            raise
        try:
            os.mkdir(FRAMES, dir_fd=rec.dir_fd)
            rec.frames_fd = os.open(FRAMES, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=rec.dir_fd)
            rec.index = os.fdopen(create_in(rec.dir_fd, INDEX), "wb")
        except OSError as exc:
            self._release(rec)
            raise ClientError("write_failed", f"cannot create {folder}: {exc.strerror}") from None

    @staticmethod
    def _release(rec: _Recording) -> None:
        for fd in (rec.frames_fd, rec.dir_fd):
            if fd is not None:
                os.close(fd)
        rec.frames_fd = rec.dir_fd = None

    @staticmethod
    def _write_frame(rec: _Recording, name: str, pixels: Any) -> None:
        if rec.failed:
            return
        if rec.frames_fd is None:
            with open(rec.folder / name, "xb") as f:
                f.write(memoryview(pixels.reshape(-1)).cast("B"))
            return
        with os.fdopen(create_in(rec.frames_fd, name.rsplit("/", 1)[-1]), "wb") as f:
            f.write(memoryview(pixels.reshape(-1)).cast("B"))

    @staticmethod
    def _close(rec: _Recording, reason: str) -> None:
        try:
            if rec.index is not None:
                rec.index.close()
        finally:
            try:
                write_meta(rec.folder, {"started": rec.started_wall, "clients": sorted(rec.clients),
                                        "entries": rec.entries, "frames": rec.frames, "bytes": rec.bytes,
                                        "dropped": rec.dropped,
                                        "duration_s": round(time.monotonic() - rec.started_mono, 3),
                                        "reason": reason if not rec.failed else f"write_failed: {rec.failed}"},
                           dir_fd=rec.dir_fd)
            finally:
                Recorder._release(rec)

    # -- figures and shutdown ----------------------------------------------------------------------
    def figures(self) -> dict[str, Any]:
        with self._cond:
            queued = self._queued_bytes
        return {"active": len(self._recordings), "entries": self.total_entries, "dropped": self.total_dropped,
                "queued_bytes": queued, "recordings": [str(r.folder) for r in self._recordings.values()]}

    def close(self) -> None:
        """Stop every recording and let the writer finish, bounded by :data:`CLOSE_TIMEOUT_S`."""
        for owner in list(self._recordings):
            self.stop(owner, "shutdown")
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        if self._writer is not None:
            self._writer.join(CLOSE_TIMEOUT_S)
            if self._writer.is_alive():
                log.warning("recorder: the writer is still busy after %.1f s; the last entries may be missing",
                            CLOSE_TIMEOUT_S)
