"""bridge.daemon.reply_order: one client's frames in flight publish in frame order, whatever order
their worker threads wake in; a frame never waits on a predecessor that was given up."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from bridge.daemon.latest import LatestMailboxes
from bridge.daemon.reply_order import FrameView, ReplyOrder


@dataclass
class Job:
    client: str
    frame_id: int
    after: threading.Event | None = None
    answered: threading.Event | None = None


class ReversingStage:
    """A real two-step stage stand-in: frame 1's call takes longer than frame 2's, so without
    ordering frame 2 would return first."""

    name = "reversing"
    input_format = "RGB8"

    def process(self, frame_id: Any, fmt: str) -> Any:
        time.sleep(0.2 if frame_id == 1 else 0.01)
        return frame_id


def test_a_later_frame_returns_only_after_its_predecessor_is_answered() -> None:
    order = ReplyOrder(patience_s=5.0)
    box: LatestMailboxes[Job] = LatestMailboxes(exclusive=True, on_take=order.chain)
    box.set_limits(depth=2)
    published: list[int] = []
    lock = threading.Lock()

    def worker() -> None:
        job = box.take(5.0)
        assert job is not None
        result = order.stage_for(job, ReversingStage()).process(job.frame_id, "RGB8")
        with lock:
            published.append(result)  # what a job publishes right after the stage returns
        order.answered(job.client, job)
        box.release(job.client)

    box.put("a", Job("a", 1))
    first = threading.Thread(target=worker)
    first.start()
    time.sleep(0.02)  # frame 1 is in the stage
    box.put("a", Job("a", 2))
    second = threading.Thread(target=worker)
    second.start()
    first.join(5)
    second.join(5)
    assert published == [1, 2]
    assert box.in_flight() == 0
    assert not order._tails  # bounded: nothing is kept once a client's frames are answered


def test_chain_links_only_to_an_unanswered_predecessor() -> None:
    order = ReplyOrder(patience_s=5.0)
    first, second, third = Job("a", 1), Job("a", 2), Job("b", 1)
    order.chain("a", first)
    order.chain("a", second)
    order.chain("b", third)
    assert first.after is None and second.after is first.answered and third.after is None
    stage = ReversingStage()
    assert isinstance(order.stage_for(second, stage), FrameView)
    assert order.stage_for(first, stage) is stage
    order.answered("a", first)  # e.g. the stall watchdog gave frame 1 up
    assert order.stage_for(second, stage) is stage  # nothing left to wait for
    order.answered("a", first)  # idempotent
    assert order.stage_for(second, stage) is stage


def test_in_turn_waits_after_a_failing_call_too_and_passes_attributes_through() -> None:
    after = threading.Event()

    class Failing:
        name, input_format = "failing", "RGB8"

        def process(self, image: Any, fmt: str) -> Any:
            raise RuntimeError("model failed")

    view = FrameView(Failing(), after, patience_s=5.0)
    assert view.name == "failing" and view.input_format == "RGB8"
    assert getattr(view, "generate_from_pose", None) is None  # absent on the stage: absent here
    threading.Timer(0.1, after.set).start()
    try:
        view.process(None, "RGB8")
    except RuntimeError as exc:
        assert "model failed" in str(exc)
        # The error kept its place behind frame 1: it came out only once frame 1 was answered
        # (an event, not a duration: the machine may be busy).
        assert after.is_set()
    else:
        raise AssertionError("the stage's error must come through")


def test_patience_gives_up_on_a_predecessor_that_never_answers(caplog: Any) -> None:
    view = FrameView(ReversingStage(), threading.Event(), patience_s=0.05)
    assert view.process(2, "RGB8") == 2
    assert "was not answered within" in caplog.text
