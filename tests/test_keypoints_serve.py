"""Keypoint messages through a real daemon: targets, pictures in the shm ring and in files, errors."""

from __future__ import annotations

import numpy as np
import pytest

from bridge.client import BridgeClient, RemoteError
from bridge.pose.keypoints import keypoints_to_pose, parse_keypoint_args
from bridge.pose.render import render_pose
from conftest import RunningBridge

P = "/pose2person"
# A person standing, facing the camera, in COCO-17 order (x, y, score), in a 128x160 frame.
COCO = [(64, 20), (70, 15), (58, 15), (76, 18), (52, 18), (84, 45), (44, 45), (92, 72), (36, 72), (96, 98),
        (32, 98), (76, 95), (52, 95), (78, 125), (50, 125), (80, 155), (48, 155)]


def person(dx: float = 0.0) -> list[float]:
    return [v for x, y in COCO for v in (x + dx, y, 0.9)]


def wait(client: BridgeClient, address: str, timeout: float = 10.0):  # type: ignore[no-untyped-def]
    return client.wait_for(lambda m: m.address == address, timeout)


def test_keypoints_to_a_shm_target_give_the_pose_image(bridge: RunningBridge) -> None:
    with BridgeClient("127.0.0.1", bridge.osc_port, timeout=10) as client:
        session = client.open_shm("kp", 128, 160, "RGB8")
        client.send(f"{P}/keypoints/target", "kp")
        assert wait(client, f"{P}/keypoints/target").args == ("kp",)
        args = ["coco17", 5, 128, 160, *person()]
        client.send(f"{P}/keypoints", *args)
        ready = wait(client, f"{P}/frame/ready")
        assert ready.args[:2] == ("kp", 5)
        out = client.read_result(session, 5)
        expected = render_pose(keypoints_to_pose(parse_keypoint_args(args)), "dp_segm", None)
        assert np.array_equal(out, expected)  # passthrough shows the pose image itself
        assert len(np.unique(out.reshape(-1, 3), axis=0)) > 3  # body parts, not a blank frame
        # Two people, floats for the ints (as Pd sends them), normalised coordinates.
        two = ["coco17n", 6.0, 128.0, 160.0] + [v / (128 if i % 3 == 0 else 160) if i % 3 < 2 else v
                                                 for i, v in enumerate(person(-30) + person(30))]
        client.send(f"{P}/keypoints", *two)
        assert wait(client, f"{P}/frame/ready").args[1] == 6


def test_keypoint_errors_are_answered_and_the_daemon_keeps_serving(bridge: RunningBridge) -> None:
    with BridgeClient("127.0.0.1", bridge.osc_port, timeout=10) as client:
        client.send(f"{P}/keypoints", "coco17", 1, 128, 160, *person())
        with pytest.raises(RemoteError) as err:
            wait(client, f"{P}/frame/ready")
        assert err.value.code == "no_target"
        client.send(f"{P}/keypoints/target", "nope")
        with pytest.raises(RemoteError):
            wait(client, f"{P}/keypoints/target")
        client.send(f"{P}/keypoints/target/path", "/etc/passwd.png")
        with pytest.raises(RemoteError) as err:
            wait(client, f"{P}/keypoints/target")
        assert err.value.code == "path_not_allowed"
        out_path = bridge.root / "kp.png"
        client.send(f"{P}/keypoints/target/path", str(out_path))
        assert wait(client, f"{P}/keypoints/target").args == (str(out_path),)
        for bad in (["coco17", 2, 128, 160, 1.0, 2.0], ["stick9", 3, 128, 160, *person()],
                    ["coco17", 4, 128, 160, *person()[:-1], float("nan")], ["coco17", 5, 0, 160, *person()]):
            client.send(f"{P}/keypoints", *bad)
            with pytest.raises(RemoteError) as err:
                wait(client, f"{P}/frame/done")
            assert err.value.code in ("bad_keypoints", "bad_dimensions"), err.value
        client.send(f"{P}/keypoints", "coco17", 9, 128, 160, *person())
        done = wait(client, f"{P}/frame/done")
        assert done.args[:4] == (9, str(out_path), 128, 160) and out_path.is_file()
        assert client.ping(3) >= 0


def test_serve_with_no_model_flag_draws_the_puppet_from_keypoints(tmp_path) -> None:  # type: ignore[no-untyped-def]
    """The README's first command: the default model turns keypoint messages into the puppet."""
    from bridge.daemon.proc import DaemonProcess
    from bridge.puppet.eval import psnr
    from bridge.puppet.synth import SynthOptions, random_sample

    opts = SynthOptions(seed=4242, size=256)  # poses the demo model was not trained on
    with DaemonProcess([], shm_dir=tmp_path) as daemon, BridgeClient("127.0.0.1", daemon.port, timeout=60) as client:
        assert daemon.model == "puppet"
        session = client.open_shm("kp", 256, 256, "RGB8")
        client.send(f"{P}/keypoints/target", "kp")
        wait(client, f"{P}/keypoints/target")
        scores = []
        for i in range(4):
            sample = random_sample(opts, i)
            f = sample.frame
            client.send(f"{P}/keypoints", f.layout, i + 1, f.width, f.height,
                        *[float(v) for v in np.asarray(f.people).reshape(-1)])
            assert wait(client, f"{P}/frame/ready", 60).args[1] == i + 1
            out = client.read_result(session, i + 1)
            scores.append(psnr(out, sample.person_rgb))
        print(f"demo model over the daemon: PSNR {np.mean(scores):.2f} dB at 256x256 ({len(scores)} held-out poses)")
        assert np.mean(scores) >= 20.0, scores  # the puppet, in the pose sent (white frame: ~11.7 dB)
