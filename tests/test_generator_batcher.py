"""BatchingStage in-process: pose and generator on their own threads, batches across callers."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np

from bridge.cards import ModelCard
from bridge.generator.batcher import BatchingStage
from bridge.generator.engine import GeneratorEngine
from bridge.generator.nets import GeneratorSpec, build_generator
from bridge.generator.processing import InputContract
from bridge.generator.stage import GeneratorStage, ImagePose


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


def tiny_densepose_stage(tmp_path: Any, depth: int) -> tuple[GeneratorStage, BatchingStage]:
    """A generator whose pose is real DensePose (random weights in the official R_50_FPN layout,
    tuned to find people, at a small short side) behind the two-thread stage."""
    from densepose_ckpt import official_arrays, write_pkl

    from bridge.densepose import load_predictor
    from bridge.densepose.settings import DensePoseSettings
    from bridge.generator.stage import DensePosePose

    weights = tmp_path / "model_final_000000.pkl"
    write_pkl(weights, official_arrays("densepose_rcnn_R_50_FPN_s1x", seed=1))
    predictor = load_predictor(weights, "densepose_rcnn_R_50_FPN_s1x",
                               settings=DensePoseSettings(short_side=128, max_side=160, max_people=1))
    spec = GeneratorSpec("resnet_6blocks", ngf=8)
    engine = GeneratorEngine(spec, build_generator(spec).state_dict(), device="cpu", accel="eager")
    inner = GeneratorStage(ModelCard(name="dp"), engine, InputContract(load_size=128, crop_size=128),
                           DensePosePose(predictor, "dp_segm"), "dp_segm")
    return inner, BatchingStage(inner, max_batch=1, depth=depth)


def test_depth_two_overlaps_densepose_of_the_next_frame_with_the_generator_of_this_one(tmp_path: Any) -> None:
    """One client, two frames in flight (as the pipeline's two workers hold them): the pose of
    frame k+1 runs while the generator works on frame k, and every frame gets its own picture."""
    from bridge.util import metrics

    inner, stage = tiny_densepose_stage(tmp_path, depth=2)
    rng = np.random.default_rng(3)
    frames = [rng.integers(0, 256, (96, 80, 3), dtype=np.uint8) for _ in range(6)]
    results: dict[int, np.ndarray] = {}
    timings: dict[int, dict[str, float]] = {}
    slots = threading.Semaphore(2)  # depth 2: at most two frames of the client in the stage
    posed = [threading.Event() for _ in frames]

    def call(i: int) -> None:
        metrics.begin_frame()
        try:
            results[i] = stage.process(frames[i], "RGB8", on_posed=posed[i].set)
        finally:
            timings[i] = metrics.end_frame() or {}
            slots.release()

    callers = []
    for i in range(len(frames)):  # as the pipeline does: the next frame once this one left its pose step
        slots.acquire()
        callers.append(threading.Thread(target=call, args=(i,)))
        callers[-1].start()
        assert posed[i].wait(60)
    for t in callers:
        t.join(60)
    stage.close()
    assert sorted(results) == list(range(len(frames)))
    for i, f in enumerate(frames):  # nothing mixed up between frames in flight
        assert np.abs(results[i].astype(int) - inner.process(f, "RGB8").astype(int)).max() <= 1
    poses = [(s, e) for kind, s, e in stage.trace if kind == "pose"]
    gens = [(s, e) for kind, s, e in stage.trace if kind == "generator"]
    assert len(poses) == len(gens) == len(frames)
    overlapped = sum(1 for k in range(len(frames) - 1) if poses[k + 1][0] < gens[k][1])
    assert overlapped >= 1, (poses, gens)  # pose k+1 started before generator k ended
    # Both threads' times are filed under the frame of the worker that asked.
    assert all(t.get("pose", 0) > 0 and t.get("generator", 0) > 0 for t in timings.values()), timings


def test_close_stops_both_threads_and_a_late_call_runs_on_its_caller(tmp_path: Any) -> None:
    spec = GeneratorSpec("resnet_6blocks", ngf=4)
    engine = GeneratorEngine(spec, build_generator(spec).state_dict(), device="cpu", accel="eager")
    inner = GeneratorStage(ModelCard(name="closing"), engine, InputContract(load_size=64, crop_size=64),
                           ImagePose(check=False), "dp_segm")  # noise frames: not the subject here
    stage = BatchingStage(inner, max_batch=2, depth=2)
    frame = np.random.default_rng(1).integers(0, 256, (40, 48, 3), dtype=np.uint8)
    want = inner.generate(frame)
    assert np.array_equal(stage.process(frame, "RGB8"), want)
    stage.close()
    for t in stage._threads:
        t.join(10)
        assert not t.is_alive()
    assert np.array_equal(stage.process(frame, "RGB8"), want)  # a frame that read the stage just before a swap


# -- a stall in a pipelined stage, in a real Pipeline ----------------------------------------------

class GatedPose:
    """An image pose that blocks until its gate opens: a stalled pose model."""

    name = "image"

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def pose_image(self, rgb: np.ndarray) -> np.ndarray:
        if not self.gate.wait(60):
            raise RuntimeError("the gate never opened")
        return rgb


class PipelinedEngine:
    """Serves a BatchingStage (2 clients per batch, 2 frames per client in flight) over a tiny
    generator; the first instance's pose hangs, reloads get a working one."""

    kind = "pipelined"
    max_in_flight = 4
    pipeline_depth = 2
    workers_at_start = 4

    def __init__(self, catalog: Any, config: Any = None) -> None:
        self.gates: list[threading.Event] = []

    def _make(self, working: bool) -> BatchingStage:
        spec = GeneratorSpec("resnet_6blocks", ngf=4)
        engine = GeneratorEngine(spec, build_generator(spec).state_dict(), device="cpu", accel="eager")
        gate = threading.Event()
        if working:
            gate.set()
        self.gates.append(gate)
        inner = GeneratorStage(ModelCard(name="gated"), engine, InputContract(load_size=64, crop_size=64),
                               GatedPose(gate), "dp_segm")
        return BatchingStage(inner, max_batch=2, depth=2)

    async def async_start(self, spec: str) -> BatchingStage:
        return self._make(working=False)

    async def async_switch(self, spec: str) -> BatchingStage:
        return self._make(working=True)

    async_reload = async_switch

    def resident_models(self) -> list[str]:
        return ["gated"]

    def describe(self) -> dict[str, Any]:
        return {"kind": self.kind}

    async def async_stop(self) -> None:
        for gate in self.gates:
            gate.set()


def test_a_stall_answers_every_frame_of_the_stuck_stage_not_only_the_oldest(monkeypatch: Any) -> None:
    """Client b's frame came later and waits behind a's stuck pose: when a's frame passes the
    stall timeout, b's must be answered too (it would otherwise hold b for ever), and after the
    restart both clients are served by the reloaded stage."""
    import asyncio
    from dataclasses import dataclass

    from bridge import engines
    from bridge.config import EngineConfig, SafetyConfig
    from bridge.daemon.jobs import FrameJob, run_stage
    from bridge.osc import decode_packet, encode_message
    from bridge.daemon.pipeline import Pipeline

    monkeypatch.setitem(engines.ENGINES, "pipelined", f"{__name__}:PipelinedEngine")

    @dataclass
    class ImageJob(FrameJob):
        def run(self, stage: Any) -> bytes:
            run_stage(stage, np.full((24, 32, 3), 7, np.uint8), "RGB8", 0, self.frame_id, self.safe)
            return encode_message("/done", self.frame_id)

    async def main() -> tuple[dict[str, list[tuple[str, int]]], int]:
        pipeline = Pipeline("gated", engine=EngineConfig(kind="pipelined"),  # type: ignore[arg-type]
                            safety=SafetyConfig(safe_output="off", stall_timeout_s=0.6))
        await pipeline.async_start()
        loop = asyncio.get_running_loop()
        replies: dict[str, list[tuple[str, int]]] = {"a": [], "b": []}

        def reply_for(client: str) -> Any:
            def reply(packet: bytes) -> None:
                msg = decode_packet(packet)[0]
                replies[client].append((msg.address, int(msg.args[0])))
            return reply

        pipeline.submit(ImageJob("a", 1, time.perf_counter_ns(), reply_for("a")))
        await asyncio.sleep(0.3)  # b arrives later: when a's frame is stuck past the timeout, b's is not yet
        pipeline.submit(ImageJob("b", 1, time.perf_counter_ns(), reply_for("b")))
        deadline = loop.time() + 20
        while loop.time() < deadline and not (replies["a"] and replies["b"]):
            await asyncio.sleep(0.05)
        while loop.time() < deadline and pipeline.stage is not None and pipeline.stage.name != "gated":
            await asyncio.sleep(0.05)  # the reload
        await asyncio.sleep(0.2)
        for client in "ab":
            pipeline.submit(ImageJob(client, 2, time.perf_counter_ns(), reply_for(client)))
        while loop.time() < deadline and not (len(replies["a"]) >= 2 and len(replies["b"]) >= 2):
            await asyncio.sleep(0.05)
        restarts = pipeline.restarts
        await pipeline.async_stop()  # opens the first gate: the stuck threads return, and must publish nothing
        await asyncio.sleep(0.3)
        return replies, restarts

    replies, restarts = asyncio.run(main())
    assert restarts == 1
    for client in "ab":
        assert replies[client] == [("/pose2person/error", 1), ("/done", 2)], (client, replies)


def test_auto_depth_overlaps_the_camera_tracker_and_densepose_only_on_an_accelerator() -> None:
    """--pipeline-depth auto: 1 for DensePose on a CPU (the networks would share the cores), 1 for
    keypoint poses without a camera tracker, 2 where the camera tracker poses frames (it runs
    beside the generator); a given depth applies to every generator."""
    from bridge.config import resolve_pipeline
    from bridge.engines.local import LocalEngine
    from bridge.generator.stage import DensePosePose, KeypointPose
    from bridge.stages import Catalog

    spec = GeneratorSpec("resnet_6blocks", ngf=4)
    engine = GeneratorEngine(spec, build_generator(spec).state_dict(), device="cpu", accel="eager")

    def stage_with(pose: Any) -> GeneratorStage:
        return GeneratorStage(ModelCard(name="g"), engine, InputContract(load_size=64, crop_size=64), pose, "dp_segm")

    densepose, keypoints = stage_with(DensePosePose(None, "dp_segm")), stage_with(KeypointPose("dp_segm", None))
    auto = LocalEngine(Catalog(resolve_pipeline()))
    assert (auto.depth_for(densepose), auto.depth_for(keypoints)) == (1, 1)
    tracked = stage_with(KeypointPose("dp_segm", object()))  # any poser: a tracker is loaded
    assert auto.depth_for(tracked) == 2
    assert auto.max_in_flight == 2 and auto.workers_at_start == 1  # room for a GPU model switched to later
    forced = LocalEngine(Catalog(resolve_pipeline(pipeline_depth=2)))
    assert (forced.depth_for(densepose), forced.depth_for(keypoints)) == (2, 2)
    wrapped = forced._batching(keypoints)
    assert isinstance(wrapped, BatchingStage) and wrapped.frames_in_flight == 2
    wrapped.close()
