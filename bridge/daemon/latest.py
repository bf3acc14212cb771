"""Latest-frame-wins mailboxes: one slot per client, taken fairly by one worker thread.

Putting a job into an occupied slot replaces it; the overtaken job is returned to the
caller so it can be counted and reported as dropped. Nothing here can grow without
bound: there is one slot per client and at most ``max_clients`` clients.

With ``exclusive=True`` (several workers, e.g. the Ray engine's dispatchers) a taken client is
*held* until :meth:`LatestMailboxes.release`: its next frame waits in its slot (and can still be
overtaken) instead of going to a second worker, so a client never has two frames in flight and
its replies keep their order.

A pipelined stage (pose and generator on their own threads, ``--pipeline-depth 2``) lets a
client have up to ``depth`` frames in flight, but only one in its first step: the client's next
frame is taken when the previous one has *left* the pose step (:meth:`LatestMailboxes.advance`),
so the pose of the newest frame runs beside the generator of the previous one, and a frame never
waits behind its own client's pose (where a newer frame could no longer replace it). The
pipeline keeps the replies in order (:mod:`bridge.daemon.reply_order`); the mailbox only counts.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Callable, Generic, Hashable, TypeVar

T = TypeVar("T")


class MailboxClosed(Exception):
    """The mailboxes were closed; the worker should exit."""


class LatestMailboxes(Generic[T]):
    """Thread-safe single-slot mailboxes keyed by client, served round-robin."""

    def __init__(self, exclusive: bool = False, on_take: Callable[[Hashable, T], None] | None = None) -> None:
        self._slots: OrderedDict[Hashable, T] = OrderedDict()
        self._ready: deque[Hashable] = deque()  # clients with a full slot, each at most once
        self._cond = threading.Condition()
        self._closed = False
        self._exclusive = exclusive
        self._held: dict[Hashable, int] = {}  # exclusive mode: frames in flight per client (> 0)
        self._in_flight = 0  # exclusive mode: the sum of _held
        self._entering: dict[Hashable, int] = {}  # exclusive mode: frames in flight not yet advanced
        self._depth = 1  # exclusive mode: frames a client may have in flight (set_limits)
        self._limit = 0  # exclusive mode: frames in flight in all (0 = no limit beyond the workers)
        self._on_take = on_take  # called under the lock with each taken job (take order = call order)

    @property
    def depth(self) -> int:
        """Frames one client may have in flight now (read under the lock by ``on_take`` hooks)."""
        return self._depth

    def set_limits(self, depth: int, total: int = 0) -> None:
        """Exclusive mode: from now on each client may have up to ``depth`` frames in flight, and
        all clients together ``total`` (0 = as many as there are workers). Lower limits let the
        frames already taken finish; only new takes wait."""
        with self._cond:
            self._depth, self._limit = max(1, depth), max(0, total)
            self._cond.notify_all()

    def put(self, key: Hashable, item: T) -> T | None:
        """Store ``item`` as ``key``'s newest job; return the job it overtook, if any."""
        with self._cond:
            if self._closed:
                raise MailboxClosed()
            overtaken = self._slots.pop(key, None)
            self._slots[key] = item
            if overtaken is None:
                self._ready.append(key)
                if self._exclusive:  # a woken worker may find only held clients: wake them all
                    self._cond.notify_all()
                else:
                    self._cond.notify()
            return overtaken

    def put_if_absent(self, key: Hashable, item: T) -> bool:
        """Store ``item`` only if ``key`` has no waiting job (a retry must not overtake a newer
        frame); True if stored."""
        with self._cond:
            if self._closed or key in self._slots:
                return False
            self._slots[key] = item
            self._ready.append(key)
            self._cond.notify_all()
            return True

    def take(self, timeout: float | None = None) -> T | None:
        """Block until some client has a job and return the oldest-waiting client's newest job.

        Returns None on timeout; raises MailboxClosed once closed and empty of interest.
        In exclusive mode held clients are skipped, and the returned job's client is held.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._closed or self._next_key() is not None, timeout):
                return None
            if self._closed:
                raise MailboxClosed()
            key = self._next_key()
            if self._exclusive:
                self._ready.remove(key)
                self._held[key] = self._held.get(key, 0) + 1
                self._entering[key] = self._entering.get(key, 0) + 1
                self._in_flight += 1
            else:
                self._ready.popleft()
            item = self._slots.pop(key)
            if self._on_take is not None:
                self._on_take(key, item)
            return item

    def _next_key(self) -> Hashable | None:
        if not self._exclusive:
            return self._ready[0] if self._ready else None
        if self._limit and self._in_flight >= self._limit:
            return None
        return next((k for k in self._ready if k not in self._entering and self._held.get(k, 0) < self._depth),
                    None)

    def advance(self, key: Hashable) -> None:
        """Exclusive mode: one of ``key``'s frames left the stage's first step; with ``depth`` > 1
        its next frame may be taken now. Call at most once per taken frame."""
        if not self._exclusive:
            return
        with self._cond:
            if _decrement(self._entering, key) and key in self._slots:
                self._cond.notify_all()

    def release(self, key: Hashable, advanced: bool = False) -> None:
        """Exclusive mode: one of ``key``'s frames is answered (``advanced``: :meth:`advance` was
        called for it); its next frame may be taken."""
        if not self._exclusive:
            return
        with self._cond:
            if _decrement(self._held, key):
                self._in_flight -= 1
            if not advanced:
                _decrement(self._entering, key)
            if self._slots:
                self._cond.notify_all()

    def in_flight(self) -> int:
        """Exclusive mode: frames taken and not yet released (all clients)."""
        with self._cond:
            return self._in_flight

    def discard(self, key: Hashable) -> T | None:
        """Remove ``key``'s pending job (a client that went away); return it if there was one."""
        with self._cond:
            item = self._slots.pop(key, None)
            if item is not None:
                self._ready.remove(key)
            return item

    def pending(self) -> int:
        with self._cond:
            return len(self._slots)

    def items(self) -> list[T]:
        """A snapshot of the waiting jobs (for status figures such as queue ages)."""
        with self._cond:
            return list(self._slots.values())

    def close(self) -> list[T]:
        """Wake the worker with MailboxClosed; return the jobs that were still waiting."""
        with self._cond:
            self._closed = True
            left = list(self._slots.values())
            self._slots.clear()
            self._ready.clear()
            self._cond.notify_all()
            return left


def _decrement(counts: dict[Hashable, int], key: Hashable) -> bool:
    """Count one off ``counts[key]``, dropping the key at zero; False if it was not there."""
    n = counts.pop(key, 0)
    if n > 1:
        counts[key] = n - 1
    return n > 0
