"""Work budgets: what one client host may cost the daemon, per second and in open sockets.

* :class:`RateBudget`: a token bucket per client host, charged per OSC *message* (a bundle
  costs as many tokens as it holds) and per HTTP request, so one datagram packed with
  messages cannot buy more work than the same messages sent one by one.
* :class:`ConnectionBudget`: how many OSC-TCP, HTTP and WebSocket sockets are open, in all
  and per host, capped below the process's descriptor limit so that files, shared memory
  and new clients always find a descriptor.
* :func:`raise_fd_limit`, :func:`connection_room`: the soft ``RLIMIT_NOFILE`` raised to
  the hard one where allowed, and how many sockets then fit beside everything else.

Loop-thread only (no locks); every table keyed by hosts is bounded.
"""

from __future__ import annotations

import logging
import os
import time
from collections import OrderedDict

log = logging.getLogger(__name__)

#: Descriptors kept free for everything that is not a client socket: the listeners, log,
#: model and card files, frame files being read or written, recordings, the tracker.
FD_RESERVE = 96
FD_PER_CHANNEL = 2  # a shared-memory channel keeps its .in and .out files open
FD_TARGET = 65536  # the soft limit is raised to this (or the hard limit, if lower)


class RateBudget:
    """A token bucket per client host: ``rate`` tokens a second, a one-second burst.

    ``take(host, cost)`` spends ``cost`` tokens or none. ``rate`` 0 = unlimited. The table
    holds at most ``max_hosts`` hosts (least recently seen evicted)."""

    def __init__(self, rate: float, max_hosts: int) -> None:
        self.rate, self._max = rate, max_hosts
        self._buckets: OrderedDict[str, list[float]] = OrderedDict()  # host -> [tokens, last time, last notice]

    def take(self, host: str, cost: float = 1.0) -> bool:
        """Spend ``cost`` tokens of ``host``; False (and nothing spent) when it has fewer."""
        if self.rate <= 0:
            return True
        now = time.monotonic()
        bucket = self._buckets.pop(host, None) or [self.rate, now, 0.0]
        bucket[0] = min(self.rate, bucket[0] + (now - bucket[1]) * self.rate)
        bucket[1] = now
        self._buckets[host] = bucket
        while len(self._buckets) > self._max:
            self._buckets.popitem(last=False)
        if bucket[0] < cost:
            return False
        bucket[0] -= cost
        return True

    def refund(self, host: str, tokens: float) -> None:
        """Give back tokens charged in advance and not used (a bundle held fewer messages)."""
        bucket = self._buckets.get(host)
        if bucket is not None and tokens > 0:
            bucket[0] = min(self.rate, bucket[0] + tokens)

    def wait_s(self, host: str, cost: float = 1.0) -> float:
        """Seconds until ``host`` has ``cost`` tokens (0 now). Connection transports wait this
        long before reading the host's next packet, so a flood over TCP or WebSocket is slowed
        by the kernel's flow control instead of being read and dropped."""
        if self.rate <= 0:
            return 0.0
        bucket = self._buckets.get(host)
        if bucket is None:
            return 0.0
        tokens = min(self.rate, bucket[0] + (time.monotonic() - bucket[1]) * self.rate)
        return 0.0 if tokens >= cost else (cost - tokens) / self.rate

    def should_notify(self, host: str) -> bool:
        """True at most once a second per host: when to tell a flooding host it is being limited."""
        bucket = self._buckets.get(host)
        now = time.monotonic()
        if bucket is None or now - bucket[2] < 1.0:
            return False
        bucket[2] = now
        return True


class ConnectionBudget:
    """Open client sockets by surface (``"tcp"``, ``"http"``; WebSockets are HTTP connections)
    and by host. ``admit`` counts a new one or refuses it; ``release`` uncounts it.

    Contract: every ``admit`` that returned True is matched by exactly one ``release`` with the
    same arguments. ``total`` and ``per_host`` are fixed at construction (see
    :func:`connection_room`)."""

    def __init__(self, total: int, per_host: int) -> None:
        self.total = max(1, total)
        self.per_host = max(1, min(per_host, self.total))
        self.open = 0
        self.refused = 0
        self._by_host: dict[str, int] = {}  # bounded: only hosts with an open socket are keys
        self.by_surface: dict[str, int] = {}

    def admit(self, surface: str, host: str) -> bool:
        if self.open >= self.total or self._by_host.get(host, 0) >= self.per_host:
            self.refused += 1
            return False
        self.open += 1
        self._by_host[host] = self._by_host.get(host, 0) + 1
        self.by_surface[surface] = self.by_surface.get(surface, 0) + 1
        return True

    def release(self, surface: str, host: str) -> None:
        self.open = max(0, self.open - 1)
        left = self._by_host.get(host, 0) - 1
        if left > 0:
            self._by_host[host] = left
        else:
            self._by_host.pop(host, None)
        self.by_surface[surface] = max(0, self.by_surface.get(surface, 0) - 1)

    def of_host(self, host: str) -> int:
        return self._by_host.get(host, 0)


def raise_fd_limit(target: int = FD_TARGET) -> tuple[int, int]:
    """Raise the soft descriptor limit towards ``target`` (never above the hard limit); returns
    ``(soft, hard)`` as they are afterwards. Where the platform has no ``resource`` module or
    refuses, the limits stay as they were."""
    try:
        import resource
    except ImportError:  # Windows: no RLIMIT_NOFILE
        return (-1, -1)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = target if hard == resource.RLIM_INFINITY else min(target, hard)
    if soft != resource.RLIM_INFINITY and soft < want:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
            soft = want
        except (ValueError, OSError) as exc:
            log.debug("cannot raise the descriptor limit to %d: %s", want, exc)
    return soft, hard


def open_fds() -> int:
    """Descriptors this process has open now (-1 where unknown)."""
    for folder in ("/proc/self/fd", "/dev/fd"):
        try:
            return len(os.listdir(folder))
        except OSError:
            continue
    return -1


def connection_room(wanted: int, max_channels: int) -> int:
    """How many client sockets may be open at once: ``wanted``, lowered so that the sockets,
    the descriptors open now, the shared-memory channels and :data:`FD_RESERVE` fit under
    the soft ``RLIMIT_NOFILE`` (at least 8)."""
    try:
        import resource

        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except ImportError:
        return wanted
    if soft == resource.RLIM_INFINITY:
        return wanted
    used = max(open_fds(), 0)
    # On a small limit the reserve shrinks too, so that some sockets still fit.
    reserve = min(FD_RESERVE + FD_PER_CHANNEL * max_channels, max(soft // 3, 16))
    return max(8, min(wanted, int(soft) - used - reserve))


__all__ = ["RateBudget", "ConnectionBudget", "raise_fd_limit", "connection_room", "open_fds"]
