"""Safe output: failing, loading and stalled models never leave a client without a picture."""

from __future__ import annotations

import time

import numpy as np
import pytest

from bridge.client import BridgeClient, RemoteError
from bridge.errors import ClientError
from bridge.daemon.safe_output import LastFrames, SafeOutput, black, colour_bars
from conftest import start_bridge, wait_until

P = "/pose2person"
W, H = 32, 24


def frame(i: int) -> np.ndarray:
    img = np.full((H, W, 4), (i * 37) % 256, np.uint8)
    img[..., 3] = 255
    img[0, 0, :3] = (1, 2, 3)
    return img


def test_black_and_pattern_in_every_format() -> None:
    b = black((2, 3, 4), "BGRA8")
    assert (b[..., :3] == 0).all() and (b[..., 3] == 255).all()
    f = black((2, 3, 4), "RGBAF32")
    assert f.dtype == np.float32 and (f[..., 3] == 1.0).all() and (f[..., :3] == 0).all()
    bars = colour_bars((4, 70, 3), "RGB8")
    assert bars.shape == (4, 70, 3) and tuple(bars[0, 0]) == (191, 191, 191) and tuple(bars[0, -1]) == (0, 0, 191)
    bgr = colour_bars((4, 70, 3), "BGR8")
    assert tuple(bgr[0, -1]) == (191, 0, 0)  # the same blue, in BGR order


def test_policies_choose_the_picture() -> None:
    store = LastFrames(max_clients=2)
    err = ClientError("model_failed", "boom", 3)
    img = np.full((2, 2, 3), 9, np.uint8)
    last = SafeOutput("last", "a", store)
    assert np.array_equal(last.substitute(img, "RGB8", err), img)  # no good frame yet: the input
    last.remember(np.full((2, 2, 3), 200, np.uint8), "RGB8")
    assert (last.substitute(img, "RGB8", err) == 200).all() and last.reason == "model_failed: boom"
    assert (SafeOutput("black", "a", store).substitute(img, "RGB8", err) == 0).all()
    assert np.array_equal(SafeOutput("input", "a", store).substitute(img, "RGB8", err), img)
    for c in "bcd":  # bounded: the oldest client's frame goes
        SafeOutput("last", c, store).remember(img, "RGB8")
    assert store.get("a") is None and store.get("d") is not None


@pytest.mark.parametrize("policy", ["last", "input", "black", "pattern", "off"])
def test_a_failing_model_gives_each_client_its_policy(tmp_path, policy: str) -> None:  # type: ignore[no-untyped-def]
    bridge = start_bridge(tmp_path, "--model", "fault:raise-every:2")
    try:
        with BridgeClient("127.0.0.1", bridge.osc_port, timeout=10) as client:
            client.send(f"{P}/safe", policy)
            assert client.wait_for(lambda m: m.address == f"{P}/safe", 5).args == (policy,)
            session = client.open_shm("s", W, H, "BGRA8")
            good, _ = client.process_shm(session, frame(1), 1)  # frame 1 passes through
            assert np.array_equal(good, frame(1))
            client.submit_shm(session, frame(2), 2)  # frame 2 fails in the model
            if policy == "off":
                with pytest.raises(RemoteError) as err:
                    client.wait_for(lambda m: m.address == f"{P}/frame/ready", 5)
                assert err.value.code == "model_failed"
            else:
                notice = client.wait_for(lambda m: m.address == f"{P}/frame/safe", 5)
                assert notice.args[:2] == (2, policy) and str(notice.args[2]).startswith("model_failed:")
                assert client.wait_for(lambda m: m.address == f"{P}/frame/ready", 5).args[1] == 2
                out = client.read_result(session, 2)
                want = {"last": frame(1), "input": frame(2), "black": black(out.shape, "BGRA8"),
                        "pattern": colour_bars(out.shape, "BGRA8")}[policy]
                assert np.array_equal(out, want)
            again, _ = client.process_shm(session, frame(3), 3)
            assert np.array_equal(again, frame(3))
    finally:
        bridge.stop()


def test_a_stalled_model_is_restarted_without_restarting_the_daemon(tmp_path) -> None:  # type: ignore[no-untyped-def]
    bridge = start_bridge(tmp_path, "--model", "fault:hang-after:2", "--stall-timeout", "1")
    try:
        with BridgeClient("127.0.0.1", bridge.osc_port, timeout=10) as client:
            session = client.open_shm("s", W, H, "BGRA8")
            for i in (1, 2):
                client.process_shm(session, frame(i), i)
            started = time.monotonic()
            client.submit_shm(session, frame(3), 3)  # the model hangs on this one
            notice = client.wait_for(lambda m: m.address == f"{P}/frame/safe", 10)
            assert notice.args[0] == 3 and "model_unavailable" in str(notice.args[2])
            assert client.wait_for(lambda m: m.address == f"{P}/frame/ready", 5).args[1] == 3
            assert 0.9 < time.monotonic() - started < 8
            assert np.array_equal(client.read_result(session, 3), frame(2))  # policy last: frame 2
            # The reloaded model (a fresh instance) serves again.
            assert wait_until(lambda: any("restarted" in line for line in bridge.log_lines), 10)
            out, _ = client.process_shm(session, frame(99), 99)
            assert np.array_equal(out, frame(99))
            assert client.ping(7) >= 0
        assert any("stalled" in line and "restarting" in line for line in bridge.log_lines)
        assert any("restarted" in line for line in bridge.log_lines)
    finally:
        bridge.stop()
