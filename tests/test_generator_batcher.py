"""BatchingStage in-process: pose and generator on their own threads, batches across callers."""

from __future__ import annotations

import threading

import numpy as np

from bridge.cards import ModelCard
from bridge.generator.batcher import BatchingStage
from bridge.generator.engine import GeneratorEngine
from bridge.generator.nets import GeneratorSpec, build_generator
from bridge.generator.processing import InputContract
from bridge.generator.stage import GeneratorStage


class SlowPose:
    """An image pose source that records which thread made each pose and waits for a release."""

    name = "image"

    def __init__(self) -> None:
        self.threads: set[str] = set()
        self.gate = threading.Event()

    def pose_image(self, rgb: np.ndarray) -> np.ndarray:
        self.threads.add(threading.current_thread().name)
        self.gate.wait(10)
        return rgb


def test_batches_across_callers_equal_one_by_one_and_poses_run_on_their_own_thread() -> None:
    spec = GeneratorSpec("resnet_6blocks", ngf=4)
    engine = GeneratorEngine(spec, build_generator(spec).state_dict(), device="cpu", accel="eager")
    pose = SlowPose()
    inner = GeneratorStage(ModelCard(name="tiny"), engine, InputContract(load_size=64, crop_size=64), pose, "dp_segm")
    stage = BatchingStage(inner, max_batch=4)
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 256, (48, 40, 3), dtype=np.uint8) for _ in range(4)]
    results: dict[int, np.ndarray] = {}

    def call(i: int) -> None:
        results[i] = stage.process(frames[i], "RGB8")

    callers = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in callers:
        t.start()
    pose.gate.set()  # let the poses through once every caller waits
    for t in callers:
        t.join(30)
    assert len(results) == 4
    pose.gate.set()
    for i, f in enumerate(frames):
        assert np.abs(results[i].astype(int) - inner.generate(f).astype(int)).max() <= 1
    assert pose.threads == {"p2p-pose-tiny"}  # never on a caller's or the generator's thread
    assert max(stage.batches) >= 2  # the callers' frames shared network calls
