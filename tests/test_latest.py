"""bridge.daemon.latest.LatestMailboxes: latest-wins slots, round-robin, close, and a bounded backlog."""

from __future__ import annotations

import threading
import time

import pytest

from bridge.daemon.latest import LatestMailboxes, MailboxClosed


def test_put_replaces_and_returns_overtaken() -> None:
    boxes: LatestMailboxes[str] = LatestMailboxes()
    assert boxes.put("a", "a1") is None
    assert boxes.pending() == 1
    assert boxes.put("a", "a2") == "a1"
    assert boxes.put("a", "a3") == "a2"
    assert boxes.pending() == 1
    assert boxes.take(timeout=0) == "a3"
    assert boxes.pending() == 0
    assert boxes.take(timeout=0) is None
    assert boxes.put("a", "a4") is None  # the slot is empty again


def test_round_robin_in_order_of_first_arrival() -> None:
    boxes: LatestMailboxes[str] = LatestMailboxes()
    boxes.put("a", "a1")
    boxes.put("b", "b1")
    boxes.put("c", "c1")
    boxes.put("a", "a2")  # replacing does not move "a" to the back
    assert boxes.take(0) == "a2"
    boxes.put("a", "a3")  # a refilled slot waits behind b and c
    assert [boxes.take(0), boxes.take(0), boxes.take(0)] == ["b1", "c1", "a3"]
    assert boxes.take(0) is None


def test_fairness_a_chatty_client_cannot_starve_another() -> None:
    boxes: LatestMailboxes[tuple[str, int]] = LatestMailboxes()
    taken: list[str] = []
    boxes.put("quiet", ("quiet", 0))
    for n in range(100):
        boxes.put("chatty", ("chatty", n))
        boxes.put("other", ("other", n))
        item = boxes.take(0)
        assert item is not None
        taken.append(item[0])
        if item[0] == "quiet":
            boxes.put("quiet", ("quiet", n))
    # every client is served within every window of three takes
    for i in range(len(taken) - 2):
        assert len(set(taken[i : i + 3])) == 3, taken[i : i + 3]


def test_take_times_out_with_none() -> None:
    boxes: LatestMailboxes[int] = LatestMailboxes()
    assert boxes.take(timeout=0.05) is None
    assert boxes.take(timeout=0) is None


def test_take_blocks_until_put() -> None:
    boxes: LatestMailboxes[int] = LatestMailboxes()
    got: list[int | None] = []
    taker = threading.Thread(target=lambda: got.append(boxes.take(timeout=10)))
    taker.start()
    time.sleep(0.05)
    boxes.put("k", 42)
    taker.join(10)
    assert not taker.is_alive()
    assert got == [42]


def test_close_wakes_a_blocked_taker() -> None:
    boxes: LatestMailboxes[int] = LatestMailboxes()
    outcome: list[object] = []
    started = threading.Event()

    def worker() -> None:
        started.set()
        try:
            outcome.append(boxes.take(timeout=30))
        except MailboxClosed as exc:
            outcome.append(exc)

    t = threading.Thread(target=worker)
    t.start()
    started.wait(5)
    time.sleep(0.05)  # let it block inside take()
    assert boxes.close() == []
    t.join(10)
    assert not t.is_alive()
    assert len(outcome) == 1 and isinstance(outcome[0], MailboxClosed)


def test_close_returns_waiting_jobs_and_refuses_more() -> None:
    boxes: LatestMailboxes[str] = LatestMailboxes()
    boxes.put("a", "a1")
    boxes.put("b", "b1")
    boxes.put("a", "a2")
    assert sorted(boxes.close()) == ["a2", "b1"]
    assert boxes.pending() == 0
    with pytest.raises(MailboxClosed):
        boxes.take(timeout=0)
    with pytest.raises(MailboxClosed):
        boxes.put("c", "c1")


def test_discard() -> None:
    boxes: LatestMailboxes[str] = LatestMailboxes()
    boxes.put("a", "a1")
    boxes.put("b", "b1")
    assert boxes.discard("a") == "a1"
    assert boxes.discard("a") is None
    assert boxes.discard("never") is None
    assert boxes.pending() == 1
    assert boxes.take(0) == "b1"
    assert boxes.take(0) is None  # "a" is not left in the ready queue
    boxes.put("a", "a2")
    assert boxes.take(0) == "a2"


def test_fast_producer_slow_consumer_stays_bounded() -> None:
    boxes: LatestMailboxes[tuple[int, int]] = LatestMailboxes()
    keys = 4
    total = 10_000
    overtaken = 0
    max_pending = 0
    taken: list[tuple[int, int]] = []
    done = threading.Event()

    def producer() -> None:
        nonlocal overtaken, max_pending
        for n in range(total):
            if boxes.put(n % keys, (n % keys, n)) is not None:
                overtaken += 1
            max_pending = max(max_pending, boxes.pending())
        done.set()

    def consumer() -> None:
        while True:
            try:
                item = boxes.take(timeout=0.05)
            except MailboxClosed:
                return
            if item is None:
                # done is set after the producer's last put: with nothing pending, nothing more comes
                if done.is_set() and boxes.pending() == 0:
                    return
                continue
            taken.append(item)
            time.sleep(0.0005)  # slow model

    c = threading.Thread(target=consumer)
    p = threading.Thread(target=producer)
    c.start()
    p.start()
    p.join(30)
    c.join(30)
    assert not p.is_alive() and not c.is_alive()
    assert max_pending <= keys
    assert boxes.pending() == 0
    # every item was either taken or reported as overtaken, exactly once
    assert len(taken) + overtaken == total
    assert overtaken > 0
    # per key, items come out in increasing order (latest wins, never an older one later)
    for key in range(keys):
        seq = [n for k, n in taken if k == key]
        assert seq == sorted(seq) and len(set(seq)) == len(seq)
    # the last item of every key is never lost
    assert {n for _, n in taken} >= set(range(total - keys, total))


def test_many_producers_one_consumer_every_item_accounted_for() -> None:
    boxes: LatestMailboxes[tuple[str, int]] = LatestMailboxes()
    producers = 4
    per_producer = 2000
    overtaken: list[tuple[str, int]] = []
    taken: list[tuple[str, int]] = []
    max_pending = [0]
    lock = threading.Lock()
    done = [0]

    def producer(name: str) -> None:
        try:
            for n in range(per_producer):
                old = boxes.put((name, "channel"), (name, n))
                pending = boxes.pending()
                with lock:
                    if old is not None:
                        overtaken.append(old)
                    max_pending[0] = max(max_pending[0], pending)
        finally:
            with lock:
                done[0] += 1

    threads = [threading.Thread(target=producer, args=(f"p{i}",)) for i in range(producers)]
    for t in threads:
        t.start()
    while True:
        item = boxes.take(timeout=0.01)
        if item is not None:
            taken.append(item)
            continue
        with lock:
            all_done = done[0] == producers
        if all_done and boxes.pending() == 0:
            break
    for t in threads:
        t.join(30)
    assert max_pending[0] <= producers
    assert len(taken) + len(overtaken) == producers * per_producer
    assert sorted(taken + overtaken) == sorted((f"p{i}", n) for i in range(producers) for n in range(per_producer))
    for i in range(producers):
        mine = [n for name, n in taken if name == f"p{i}"]
        assert mine == sorted(mine)
        assert mine[-1] == per_producer - 1  # each client's newest job is always served


def test_discarded_key_rejoins_at_the_back() -> None:
    boxes: LatestMailboxes[str] = LatestMailboxes()
    for key in "abc":
        boxes.put(key, key + "1")
    boxes.discard("a")
    boxes.put("a", "a2")
    assert [boxes.take(0), boxes.take(0), boxes.take(0)] == ["b1", "c1", "a2"]


def test_close_twice_is_harmless() -> None:
    boxes: LatestMailboxes[int] = LatestMailboxes()
    boxes.put("a", 1)
    assert boxes.close() == [1]
    assert boxes.close() == []
    assert boxes.discard("a") is None
    assert boxes.pending() == 0


# -- several frames of one client in flight (pipelined stages) --------------------------------------

def test_depth_two_takes_the_next_frame_once_the_previous_left_the_first_step() -> None:
    taken_order: list[str] = []
    box: LatestMailboxes[str] = LatestMailboxes(exclusive=True, on_take=lambda key, item: taken_order.append(item))
    box.set_limits(depth=2)
    box.put("a", "a1")
    assert box.take(0.1) == "a1"
    box.put("a", "a2")
    assert box.take(0.05) is None  # a1 is still in its pose step: a2 waits there (replaceable)
    box.advance("a")  # a1 went on to the generator
    assert box.take(0.1) == "a2"  # a second frame of the same client while a1 is in flight
    box.put("a", "a3")
    box.advance("a")
    assert box.take(0.05) is None  # two in flight: a3 waits (and can be overtaken)
    assert box.put("a", "a4") == "a3"
    assert box.in_flight() == 2
    box.release("a", advanced=True)
    assert box.take(0.1) == "a4"
    assert taken_order == ["a1", "a2", "a4"]  # the hook sees every take, in take order
    box.release("a", advanced=True)
    box.release("a")  # a4 failed before its pose step ended: released without advancing
    assert box.in_flight() == 0
    box.put("a", "a5")
    assert box.take(0.1) == "a5"  # nothing left over from the counts
    box.release("a")
    box.release("a")  # one release too many is harmless
    assert box.in_flight() == 0


def test_total_limit_caps_frames_in_flight_across_clients_and_a_release_wakes_the_others() -> None:
    box: LatestMailboxes[str] = LatestMailboxes(exclusive=True)
    box.set_limits(depth=1, total=1)
    box.put("a", "a1")
    box.put("b", "b1")
    assert box.take(0.1) == "a1"
    assert box.take(0.05) is None  # b waits: one frame in flight in all
    got: list[str | None] = []
    t = threading.Thread(target=lambda: got.append(box.take(5.0)))
    t.start()
    time.sleep(0.05)
    assert not got
    box.release("a")  # a has nothing waiting, but b does: the waiting worker must wake
    t.join(5.0)
    assert got == ["b1"]


def test_lowering_the_depth_lets_frames_in_flight_finish() -> None:
    box: LatestMailboxes[str] = LatestMailboxes(exclusive=True)
    box.set_limits(depth=2)
    box.put("a", "a1")
    box.take(0.1)
    box.advance("a")
    box.put("a", "a2")
    box.take(0.1)
    box.advance("a")
    box.set_limits(depth=1)  # e.g. a switch to a model that does not overlap frames
    box.put("a", "a3")
    box.release("a", advanced=True)
    assert box.take(0.05) is None  # still one in flight: depth 1 now
    box.release("a", advanced=True)
    assert box.take(0.1) == "a3"
