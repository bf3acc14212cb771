"""Who a frame belongs to, for the code that runs it: a thread-local set around each frame.

Stages keep the :class:`bridge.stages.Stage` contract (``process(image, fmt)``), yet a few need
per-client state: the camera tracker follows each client's person across frames, mirrors the
frames of clients that show their camera mirrored, and answers with the pose image for clients
that asked to see it. The pipeline worker sets a :class:`FrameContext` around ``job.run`` and the
two-thread generator stage carries it to its pose thread; a stage reads :func:`current_frame`.

Outside a frame (offline ``pose2person run``, tests, a Ray replica) the context is
:data:`NO_CONTEXT`: no stream (the tracker then looks at every frame afresh), no mirror, the person.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Hashable, Iterator

VIEWS: tuple[str, ...] = ("person", "pose")


@dataclass(frozen=True)
class FrameContext:
    """``stream``: the tracking identity (a client, or a client's shm channel); None = none.
    ``mirror``: the client's picture is mirrored. ``view``: ``person`` (the generated picture) or
    ``pose`` (the pose image the generator would get). ``frame_id``: for error replies.
    ``time_s``: when the frame arrived (seconds on a monotonic clock; None = when it is posed),
    which times the camera tracker's smoothing. ``max_people``: the client's ``/people`` (None =
    the daemon's ``--max-people``). ``smoothing``: the client's ``/smoothing`` settings, a
    :class:`bridge.pose.tracker.smoothing.SmoothingSettings` (None = the tracker card's)."""

    stream: Hashable = None
    mirror: bool = False
    view: str = "person"
    frame_id: int = -1
    time_s: float | None = None
    max_people: int | None = None
    smoothing: Any = None


NO_CONTEXT = FrameContext()
_local = threading.local()


def current_frame() -> FrameContext:
    """The context of the frame this thread is running, or :data:`NO_CONTEXT`."""
    return getattr(_local, "context", NO_CONTEXT)


@contextmanager
def frame_context(context: FrameContext) -> Iterator[FrameContext]:
    """Run the block with ``context`` as this thread's frame context (restored afterwards)."""
    previous = getattr(_local, "context", NO_CONTEXT)
    _local.context = context
    try:
        yield context
    finally:
        _local.context = previous
