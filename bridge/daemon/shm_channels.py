"""The daemon's shared-memory channels: creation, re-opening and removal of channel files.

Each channel has two files in the shm directory: ``*.in`` (the client writes the frames,
the daemon reads them and only ever sets the closed flag) and ``*.out`` (the daemon writes, the client reads). Both have the client's size
and format. Re-opening with the same geometry returns the same files; another geometry
makes a new generation (new file names) and flags the old files closed. Lives on the
event-loop thread; the worker thread only reads :class:`Channel` objects it was handed.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ..config import SecurityConfig, ShmConfig
from ..shm import CHANNEL_NAME_RE, ChannelFile, Layout, ShmError, create_channel_file

log = logging.getLogger(__name__)


@dataclass
class Channel:
    """One open channel: its layout and both mapped files."""

    name: str
    layout: Layout
    input: ChannelFile
    output: ChannelFile

    @property
    def input_path(self) -> Path:
        return self.input.path

    @property
    def output_path(self) -> Path:
        return self.output.path


def _usable(channel: Channel) -> bool:
    """False when the client broke its channel's files (set the closed flag, truncated or deleted
    them): re-opening it with the same geometry then makes a new generation instead of handing
    back the broken files, so a client can always recover by re-opening."""
    try:
        for f in (channel.input, channel.output):
            f.check_size()
            if f.closed_flag or not f.path.exists():
                return False
    except (ShmError, ValueError, OSError):
        return False
    return True


class ChannelRegistry:
    """Bounded set of open channels, keyed by name."""

    def __init__(self, config: ShmConfig, security: SecurityConfig, tag: str) -> None:
        self._config = config
        self._security = security
        self.tag = tag  # distinguishes daemons sharing one shm directory (the OSC port)
        self._channels: dict[str, Channel] = {}
        self._generations: dict[str, int] = {}

    def get(self, name: str) -> Channel:
        try:
            return self._channels[name]
        except KeyError:
            raise ShmError("shm_unknown_channel", f"channel {name!r} is not open; send /pose2person/shm/open first"
                           ) from None

    def names(self) -> list[str]:
        return list(self._channels)

    def open(self, name: str, width: int, height: int, fmt: str, origin: int = 0) -> Channel:
        """Open or re-open ``name``; raises ShmError with the wire code on bad requests."""
        if not CHANNEL_NAME_RE.match(name):
            raise ShmError("shm_bad_channel", "channel names are 1-64 characters of A-Z a-z 0-9 _ -")
        current = self._channels.get(name)
        layout = Layout(width, height, fmt, self._config.slots, origin, self._generations.get(name, 0) + 1)
        layout.validate(self._security.max_pixels)
        if current is not None:
            same = current.layout
            if (same.width, same.height, same.format, same.origin) == (width, height, fmt, origin) \
                    and _usable(current):
                return current
        elif len(self._channels) >= self._config.max_channels:
            raise ShmError("too_many_channels", f"at most {self._config.max_channels} channels may be open")
        in_use = sum(2 * c.layout.file_size for n, c in self._channels.items() if n != name)
        if in_use + 2 * layout.file_size > self._config.max_bytes:
            raise ShmError("too_many_channels", f"a {width}x{height} {fmt} channel needs "
                           f"{2 * layout.file_size >> 20} MiB; {in_use >> 20} of the "
                           f"{self._config.max_bytes >> 20} MiB shared-memory budget are in use")
        stem = f"pose2person-{self.tag}-{name}-g{layout.generation}"
        paths = self._config.directory / f"{stem}.in", self._config.directory / f"{stem}.out"
        try:
            for path in paths:
                create_channel_file(path, layout, name)
            channel = Channel(name, layout, ChannelFile(paths[0], writable=True), ChannelFile(paths[1], writable=True))
            # The client only reads the .out file: read-only on disk (the daemon's own mapping and
            # descriptor stay writable), so a client that opens it for writing by mistake, and could
            # truncate it under a frame in progress, is refused by the OS instead.
            os.chmod(paths[1], 0o400)
        except OSError as exc:
            for path in paths:
                path.unlink(missing_ok=True)
            raise ShmError("internal", f"cannot create channel files in {self._config.directory}: {exc}") from None
        if current is not None:
            self._retire(current)
        self._channels[name] = channel
        self._generations[name] = layout.generation
        log.info("shm channel %s: %dx%d %s origin=%d generation %d (%s)", name, width, height, fmt, origin,
                 layout.generation, paths[0].parent)
        return channel

    def close(self, name: str) -> None:
        channel = self._channels.pop(name, None)
        if channel is None:
            raise ShmError("shm_unknown_channel", f"channel {name!r} is not open")
        self._retire(channel)

    def close_all(self) -> None:
        for name in list(self._channels):
            self.close(name)

    @staticmethod
    def _retire(channel: Channel) -> None:
        """Flag both files closed for readers still mapping them, then delete them."""
        for f in (channel.input, channel.output):
            try:
                f.mark_closed()
                f.path.unlink(missing_ok=True)
            except OSError as exc:
                log.warning("could not remove %s: %s", f.path, exc)
            f.close()
