"""The daemon's shared-memory channels: creation, ownership, re-opening and removal of channel files.

Each channel has two files in the channel folder: ``*.in`` (the client writes the frames, the
daemon reads them and only ever sets the closed flag) and ``*.out`` (the daemon writes, the client
reads). Both have the client's size and format. The folder is private to the daemon's user
(:func:`bridge.shm.channel_folder`); the registry keeps a descriptor of it and creates every file
relative to it, exclusively, so nothing planted in the folder or swapped for it is ever opened.

Ownership. A channel belongs to the client that opened it. Names are per client: two clients may
both open ``cam`` and get two channels, and a plain name in ``/frame/shm``, ``/keypoints/target``,
``/shm/close`` or ``/shm/open`` means the sender's own channel of that name. The ``/shm/opened``
reply names the channel ``<name>.<token>`` (the token: 64 random bits): that *handle* works from
any socket (a reconnected TCP client, a second socket of the same program), and only whoever got
the reply knows it. Naming another client's channel by its plain name, or with a wrong token, is
``shm_not_owner``.

Re-opening with the same geometry returns the same files; another geometry makes a new generation
(new file names, same handle) and flags the old files closed. A retired channel's files are
deleted and its descriptors closed as soon as no worker is inside them; until then they count
against the budget. When the channel table or the budget is full, channels nobody used for
:data:`IDLE_RECLAIM_S` (e.g. those of a sketch that was restarted) are closed to make room.
Lives on the event-loop thread; the worker thread only reads :class:`Channel` objects it was handed.
"""

from __future__ import annotations

import logging
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Hashable

from ..config import SecurityConfig, ShmConfig
from ..shm import CHANNEL_NAME_RE, ChannelFile, Layout, ShmError, create_channel_file
from ..util.logutil import RateLimitedLog

log = logging.getLogger(__name__)
_ratelog = RateLimitedLog(log)

IDLE_RECLAIM_S = 60.0  # a channel unused this long may be closed when a new one needs the room
HANDLE_SEPARATOR = "."  # never in a channel name (CHANNEL_NAME_RE), so "<name>.<token>" is unambiguous


@dataclass
class Channel:
    """One open channel: its layout, both files, its owner and its handle."""

    name: str
    layout: Layout
    input: ChannelFile
    output: ChannelFile
    owner: Hashable = None
    token: str = ""
    last_used: float = field(default_factory=time.monotonic)

    @property
    def handle(self) -> str:
        """``<name>.<token>``: the name that reaches this channel from any socket (the capability)."""
        return f"{self.name}{HANDLE_SEPARATOR}{self.token}"

    @property
    def input_path(self) -> Path:
        return self.input.path

    @property
    def output_path(self) -> Path:
        return self.output.path

    @property
    def bytes(self) -> int:
        return 2 * self.layout.file_size

    @property
    def released(self) -> bool:
        return self.input.released and self.output.released


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
    """Bounded set of open channels, keyed by owner and name (and reachable by handle)."""

    def __init__(self, config: ShmConfig, security: SecurityConfig, tag: str) -> None:
        self._config = config
        self._security = security
        self.tag = tag  # distinguishes daemons sharing one channel folder (the OSC port)
        self._by_handle: dict[str, Channel] = {}
        self._by_owner: dict[tuple[Hashable, str], str] = {}  # (owner, name) -> handle
        self._generations: dict[str, int] = {}  # per name over all owners: file names stay unique
        self._retired: list[Channel] = []  # closed, but a worker may still hold a descriptor
        self._dir_fd: int | None = None

    @property
    def directory(self) -> Path:
        return self._config.directory

    def _folder_fd(self) -> int | None:
        """The channel folder, opened once without following links (None where the platform
        cannot create files relative to a descriptor: then by path)."""
        if self._dir_fd is None and os.open in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW"):
            self._dir_fd = os.open(self._config.directory,
                                   os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0))
        return self._dir_fd

    # -- lookup ---------------------------------------------------------------------------
    def get(self, name: str, owner: Hashable = None) -> Channel:
        """The channel ``name`` (a plain name: ``owner``'s own; a handle: whoever holds it). Raises
        ShmError ``shm_not_owner`` (another client's channel, or a wrong token) or
        ``shm_unknown_channel``."""
        channel = self._find(name, owner)
        if channel is not None:
            channel.last_used = time.monotonic()
            return channel
        plain = name.split(HANDLE_SEPARATOR, 1)[0]
        if any(c.name == plain for c in self._by_handle.values()):
            raise ShmError("shm_not_owner", f"channel {plain!r} belongs to another client (or the token is wrong); "
                           "use the name from your own /pose2person/shm/opened reply")
        raise ShmError("shm_unknown_channel", f"channel {name!r} is not open; send /pose2person/shm/open first")

    def _find(self, name: str, owner: Hashable) -> Channel | None:
        if HANDLE_SEPARATOR in name:
            return self._by_handle.get(name)
        handle = self._by_owner.get((owner, name))
        return self._by_handle.get(handle) if handle is not None else None

    def names(self) -> list[str]:
        """The open channels' names (several clients may each have one of a name)."""
        return sorted({c.name for c in self._by_handle.values()})

    def channels(self) -> list[Channel]:
        return list(self._by_handle.values())

    # -- open / close ---------------------------------------------------------------------
    def open(self, name: str, width: int, height: int, fmt: str, origin: int = 0, owner: Hashable = None) -> Channel:
        """Open or re-open ``name`` for ``owner`` (a handle re-opens that channel for whoever holds it);
        raises ShmError with the wire code on bad requests."""
        plain, _, token = name.partition(HANDLE_SEPARATOR)
        if not CHANNEL_NAME_RE.match(plain):
            raise ShmError("shm_bad_channel", "channel names are 1-64 characters of A-Z a-z 0-9 _ -")
        current = self._by_handle.get(name) if token else self._find(plain, owner)
        if token and current is None and self._find(plain, owner) is not None:
            current = self._find(plain, owner)  # a stale handle of the sender's own channel: re-open that
        layout = Layout(width, height, fmt, self._config.slots, origin, self._generations.get(plain, 0) + 1)
        layout.validate(self._security.max_pixels)
        if current is not None:
            same = current.layout
            if (same.width, same.height, same.format, same.origin) == (width, height, fmt, origin) \
                    and _usable(current):
                current.last_used = time.monotonic()
                return current
        self._make_room(current, 2 * layout.file_size, width, height, fmt)
        stem = f"pose2person-{self.tag}-{plain}-g{layout.generation}"
        paths = self.directory / f"{stem}.in", self.directory / f"{stem}.out"
        dir_fd = self._folder_fd()
        try:
            for path in paths:
                create_channel_file(path, layout, plain, dir_fd)
            channel = Channel(plain, layout, ChannelFile(paths[0], writable=True, mapped=False, dir_fd=dir_fd),
                              ChannelFile(paths[1], writable=True, mapped=False, dir_fd=dir_fd),
                              owner=current.owner if current is not None else owner,
                              token=current.token if current is not None else secrets.token_hex(8))
            # The client only reads the .out file: read-only on disk (the daemon's own descriptor
            # stays writable), so a client that opens it for writing by mistake is refused by the OS.
            os.chmod(paths[1].name if dir_fd is not None else paths[1], 0o400, dir_fd=dir_fd)
        except OSError as exc:
            for path in paths:
                try:
                    os.unlink(path.name if dir_fd is not None else path, dir_fd=dir_fd)
                except OSError:
                    pass
            raise ShmError("internal", f"cannot create channel files in {self.directory}: {exc}") from None
        if current is not None:
            self._drop(current)
        self._by_handle[channel.handle] = channel
        self._by_owner[(channel.owner, plain)] = channel.handle
        self._generations[plain] = layout.generation
        # Rate limited: a client may open and close channels in a loop (docs/SECURITY.md, logs).
        _ratelog.log(logging.INFO, "shm open", "shm channel %s: %dx%d %s origin=%d generation %d (%s)", plain, width,
                     height, fmt, origin, layout.generation, self.directory)
        return channel

    def _pinned_bytes(self) -> int:
        """Bytes of retired channels whose files a worker still holds open (then freed)."""
        self._retired = [c for c in self._retired if not c.released]
        return sum(c.bytes for c in self._retired)

    def _make_room(self, replacing: Channel | None, needed: int, width: int, height: int, fmt: str) -> None:
        """Refuse (``too_many_channels``) unless the new files fit the count and byte budget, closing
        channels idle for :data:`IDLE_RECLAIM_S` (least recently used first) to make room."""
        while True:
            others = [c for c in self._by_handle.values() if c is not replacing]
            in_use = sum(c.bytes for c in others) + self._pinned_bytes()
            too_many = replacing is None and len(self._by_handle) >= self._config.max_channels
            too_big = in_use + needed > self._config.max_bytes
            if not too_many and not too_big:
                return
            idle = [c for c in others if time.monotonic() - c.last_used >= IDLE_RECLAIM_S]
            if not idle:
                break
            oldest = min(idle, key=lambda c: c.last_used)
            log.info("shm channel %s closed to make room: unused for %.0f s", oldest.name,
                     time.monotonic() - oldest.last_used)
            self._drop(oldest)
        if too_many:
            raise ShmError("too_many_channels", f"at most {self._config.max_channels} channels may be open")
        raise ShmError("too_many_channels", f"a {width}x{height} {fmt} channel needs {needed >> 20} MiB; "
                       f"{in_use >> 20} of the {self._config.max_bytes >> 20} MiB shared-memory budget are in use")

    def close(self, name: str, owner: Hashable = None) -> Channel:
        """Close the channel ``name`` (``owner``'s own, or a handle); raises like :meth:`get`."""
        channel = self.get(name, owner)
        self._drop(channel)
        return channel

    def close_all(self) -> None:
        for channel in list(self._by_handle.values()):
            self._drop(channel)
        if self._dir_fd is not None:
            os.close(self._dir_fd)
            self._dir_fd = None

    def _drop(self, channel: Channel) -> None:
        self._by_handle.pop(channel.handle, None)
        if self._by_owner.get((channel.owner, channel.name)) == channel.handle:
            del self._by_owner[(channel.owner, channel.name)]
        self._retire(channel)
        if not channel.released:
            self._retired.append(channel)

    def _retire(self, channel: Channel) -> None:
        """Flag both files closed for readers still mapping them, then delete and close them."""
        dir_fd = self._folder_fd()
        for f in (channel.input, channel.output):
            try:
                f.mark_closed()
            except (ValueError, OSError):
                pass
            try:
                os.unlink(f.path.name if dir_fd is not None else f.path, dir_fd=dir_fd)
            except FileNotFoundError:
                pass
            except OSError as exc:
                log.warning("could not remove %s: %s", f.path, exc)
            f.close()
