"""One client's replies in frame order while it has several frames in flight.

With a pipelined stage (``--pipeline-depth 2``) two workers may hold frames k and k+1 of one
client at once. The stage finishes them in order (its threads are FIFO), but the two workers
wake in any order, so k+1 could publish its output slot and send ``/frame/ready`` first, and a
client reading "the newest result" would then see k. So frames are chained as they are taken:

* :meth:`ReplyOrder.chain` runs under the mailbox lock as a frame is taken (so chain order is
  take order) and links the frame to its client's previous frame;
* a frame sees a pipelined stage, or a stage while its predecessor is unanswered, through a
  :class:`FrameView`: the model call runs at once (that is the overlap) and tells the pipeline
  when the frame has left the stage's first step (``on_posed``: the client's next frame may be
  taken then), and only its *return* waits for the predecessor's reply, before the job
  publishes anything;
* :meth:`ReplyOrder.answered` marks a frame answered (its reply sent or queued, or the frame
  given up) and lets its successor go.

A predecessor that never answers (a stalled model) is given up by the stall watchdog, which
calls :meth:`ReplyOrder.answered` for it; a waiting successor also gives up by itself after
``patience_s`` (logged) rather than holding its worker forever.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable, Hashable

log = logging.getLogger(__name__)


class FrameView:
    """``stage`` as one frame sees it: ``process`` / ``generate_from_pose`` pass ``on_posed`` to
    the stage (when given) and return only once ``after`` (the client's previous frame is
    answered) is set (when given); every other attribute is the stage's own."""

    __slots__ = ("_stage", "_after", "_patience_s", "_on_posed")

    def __init__(self, stage: Any, after: threading.Event | None, patience_s: float,
                 on_posed: Callable[[], None] | None = None) -> None:
        self._stage, self._after, self._patience_s, self._on_posed = stage, after, patience_s, on_posed

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self._stage, name)
        if name not in ("process", "generate_from_pose"):
            return attr

        def in_turn(*args: Any) -> Any:
            try:
                return attr(*args) if self._on_posed is None else attr(*args, on_posed=self._on_posed)
            finally:  # a failed frame waits too: its error reply keeps its place
                if self._after is not None and not self._after.wait(self._patience_s):
                    log.warning("the previous frame of this client was not answered within %.1f s; "
                                "answering this one anyway", self._patience_s)

        return in_turn


class ReplyOrder:
    """Per-client chains of frames in flight (see the module docstring). Bounded: one entry per
    client with a frame in flight."""

    def __init__(self, patience_s: float) -> None:
        self.patience_s = patience_s
        self._tails: dict[Hashable, threading.Event] = {}  # client -> its newest taken frame's event
        self._lock = threading.Lock()

    def chain(self, client: Hashable, job: Any) -> None:
        """Link ``job`` (just taken) behind ``client``'s previous frame: sets ``job.after`` (None
        when there is nothing to wait for) and ``job.answered``."""
        event = threading.Event()
        with self._lock:
            before = self._tails.get(client)
            self._tails[client] = event
        job.after = before if before is not None and not before.is_set() else None
        job.answered = event

    def answered(self, client: Hashable, job: Any) -> None:
        """``job`` is answered (or given up): its successor may publish. Idempotent."""
        event: threading.Event | None = getattr(job, "answered", None)
        if event is None:
            return
        event.set()
        with self._lock:
            if self._tails.get(client) is event:
                del self._tails[client]

    def stage_for(self, job: Any, stage: Any, on_posed: Callable[[], None] | None = None) -> Any:
        """The stage ``job`` should call: ``stage`` itself, or a :class:`FrameView` of it (for a
        pipelined stage, which takes ``on_posed``, or to wait for the predecessor)."""
        after: threading.Event | None = getattr(job, "after", None)
        if after is not None and after.is_set():
            after = None
        hook = on_posed if int(getattr(stage, "pipeline_depth", 1)) > 1 else None
        if after is None and hook is None:
            return stage
        return FrameView(stage, after, self.patience_s, hook)

