"""Latest-frame-wins mailboxes: one slot per client, taken fairly by one worker thread.

Putting a job into an occupied slot replaces it; the overtaken job is returned to the
caller so it can be counted and reported as dropped. Nothing here can grow without
bound: there is one slot per client and at most ``max_clients`` clients.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from typing import Generic, Hashable, TypeVar

T = TypeVar("T")


class MailboxClosed(Exception):
    """The mailboxes were closed; the worker should exit."""


class LatestMailboxes(Generic[T]):
    """Thread-safe single-slot mailboxes keyed by client, served round-robin."""

    def __init__(self) -> None:
        self._slots: OrderedDict[Hashable, T] = OrderedDict()
        self._ready: deque[Hashable] = deque()  # clients with a full slot, each at most once
        self._cond = threading.Condition()
        self._closed = False

    def put(self, key: Hashable, item: T) -> T | None:
        """Store ``item`` as ``key``'s newest job; return the job it overtook, if any."""
        with self._cond:
            if self._closed:
                raise MailboxClosed()
            overtaken = self._slots.pop(key, None)
            self._slots[key] = item
            if overtaken is None:
                self._ready.append(key)
                self._cond.notify()
            return overtaken

    def take(self, timeout: float | None = None) -> T | None:
        """Block until some client has a job and return the oldest-waiting client's newest job.

        Returns None on timeout; raises MailboxClosed once closed and empty of interest.
        """
        with self._cond:
            if not self._cond.wait_for(lambda: self._ready or self._closed, timeout):
                return None
            if self._closed:
                raise MailboxClosed()
            key = self._ready.popleft()
            return self._slots.pop(key)

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

    def close(self) -> list[T]:
        """Wake the worker with MailboxClosed; return the jobs that were still waiting."""
        with self._cond:
            self._closed = True
            left = list(self._slots.values())
            self._slots.clear()
            self._ready.clear()
            self._cond.notify_all()
            return left
