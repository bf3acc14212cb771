"""``serve --engine ray``: real daemons in front of a real local Ray cluster (CPU only, 2 replicas).

One cluster for the module (``ray start --head`` on loopback, joined with ``--ray-address``: the
two-machine recipe on one machine), tiny models (``invert``, ``throttle``, a 64x64 generator
card made here). Checked: several clients' frames spread over the replicas, each client's
replies in order with latest-frame-wins, outputs equal to the local engine's pixel for pixel, a
switch that reaches every replica before ``/model/ready``, a killed replica replaced while the
stream goes on (its frame answered ``replica_lost``), and no Ray process left behind.
Skips without Ray, except under CI=true (``pip install -e '.[ray]'``; .ci/run does).
"""

from __future__ import annotations

import json
import os
import platform
import re
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pytest

from bridge.client import RemoteError
from conftest import IN_CI, REPO, RunningBridge, start_bridge, wait_until
from pose_frames import pose_picture_bgr


def start_clients(run: Callable[[int], None], n: int) -> list[threading.Thread]:
    """``run(0)`` .. ``run(n - 1)``, each on its own thread, started."""
    threads = [threading.Thread(target=run, args=(c,)) for c in range(n)]
    for t in threads:
        t.start()
    return threads


def run_clients(run: Callable[[int], None], n: int, timeout: float) -> None:
    """:func:`start_clients`, then wait for all of them (each join bounded by ``timeout``)."""
    for t in start_clients(run, n):
        t.join(timeout)

def _find_spec_safe(name: str) -> object:
    import importlib.util

    try:
        return importlib.util.find_spec(name)
    except (ImportError, ValueError):
        return None


_MISSING = [m for m in ("ray", "ray.serve", "psutil") if _find_spec_safe(m) is None]
if _MISSING:  # pragma: no cover - depends on the environment
    if IN_CI:
        raise RuntimeError(f"CI needs ray[serve] and psutil (pip install -e '.[ray]'); missing: {_MISSING}")
    pytest.skip(f"ray[serve] is not installed (pip install -e '.[ray]'); missing: {_MISSING}",
                allow_module_level=True)
import psutil  # noqa: E402  (the daemons import Ray; the tests only look at processes)

P = "/pose2person"
# Loopback only (node addresses 127.0.0.1, not the host's network address) and Ray's token
# authentication with a token made for this module (nothing written to ~/.ray), for the head and
# for every daemon started here (which turn token mode on by themselves when they have a token);
# the head drains for 2 s, not 30, when the module ends.
RAY_ENV = {"RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER": "0", "RAY_AUTH_TOKEN": secrets.token_hex(32),
           "RAY_USAGE_STATS_ENABLED": "0", "RAY_GRACEFUL_SHUTDOWN_DRAIN_TIMEOUT_S": "2"}
HEAD_ENV = {"RAY_AUTH_MODE": "token"}
RAY_START_TIMEOUT_S = 240.0  # Ray's own start-up is slow on 2 shared cores
# Ray Serve's own pydantic models warn about pydantic 3 on import: not ours to fix.
pytestmark = [pytest.mark.timeout(600), pytest.mark.filterwarnings("ignore::DeprecationWarning:ray")]


# -- fixtures ------------------------------------------------------------------------------------

def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ours(temp_dir: str) -> list[psutil.Process]:
    """Processes whose command line names ``temp_dir`` (Ray puts its session paths there)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        try:
            if any(temp_dir in part for part in proc.info["cmdline"] or ()):
                found.append(proc)
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    return found


def _gone(pids: list[int], timeout: float) -> list[int]:
    """The pids still alive (zombies count as gone) after waiting up to ``timeout``."""
    def alive() -> list[int]:
        left = []
        for pid in pids:
            try:
                if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                    left.append(pid)
            except psutil.NoSuchProcess:
                pass
        return left

    wait_until(lambda: not alive(), timeout, 0.2)
    return alive()


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    """A head node on 127.0.0.1 (2 CPUs), as `ray start --head` on the GPU server in docs/SCALING.md."""
    saved = {k: os.environ.get(k) for k in (*RAY_ENV, *HEAD_ENV)}
    for k in HEAD_ENV:
        os.environ.pop(k, None)  # the daemons must find token mode themselves
    os.environ.update(RAY_ENV)  # start_bridge passes os.environ to the daemons
    port = _free_port()
    temp_dir = tempfile.mkdtemp(prefix="p2pray", dir="/tmp")  # short: Ray's socket paths must fit 107 bytes
    ray_cli = str(Path(sys.executable).with_name("ray"))
    log_path = Path(temp_dir) / "head.log"
    started = time.perf_counter()
    with open(log_path, "w") as log_file:
        head = subprocess.Popen([ray_cli, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(port),
                                 "--num-cpus", "2", "--num-gpus", "0", "--include-dashboard=false",
                                 "--temp-dir", temp_dir, "--disable-usage-stats", "--block"],
                                stdout=log_file, stderr=subprocess.STDOUT, cwd=REPO, env={**os.environ, **HEAD_ENV})
    try:
        ok = wait_until(lambda: "Ray runtime started" in log_path.read_text() or head.poll() is not None,
                        RAY_START_TIMEOUT_S, 0.2)
        assert ok and head.poll() is None, log_path.read_text()
        print(f"\nray start --head took {time.perf_counter() - started:.1f} s")
        yield f"127.0.0.1:{port}"
    finally:
        pids = [p.pid for p in psutil.Process(head.pid).children(recursive=True)] if head.poll() is None else []
        stopping = time.perf_counter()
        head.send_signal(signal.SIGTERM)  # `ray start --block` stops what it started
        try:
            head.wait(60)
        except subprocess.TimeoutExpired:
            head.kill()
            head.wait()
        left = _gone(pids, 30) + [p.pid for p in _ours(temp_dir)]
        print(f"\nray head stopped in {time.perf_counter() - stopping:.1f} s")
        shutil.rmtree(temp_dir, ignore_errors=True)
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        assert not left, f"Ray processes left behind: {left}"


def tiny_card(root: Path) -> Path:
    """A models/ dir with one 64x64 CycleGAN-style card ``tiny`` (4 filters: fast on a CPU)."""
    import torch

    from bridge.generator.checkpoint import write_train_opt
    from generator_reference import random_checkpoint, reference_keys

    folder = root / "checkpoints" / "tiny"
    folder.mkdir(parents=True)
    torch.save(random_checkpoint(reference_keys("resnet_6blocks", 4, "instance", False), seed=7),
               folder / "latest_net_G_A.pth")
    write_train_opt(folder / "train_opt.txt", {
        "netG": "resnet_6blocks", "ngf": 4, "norm": "instance", "no_dropout": True, "input_nc": 3, "output_nc": 3,
        "load_size": 72, "crop_size": 64, "preprocess": "resize_and_crop", "direction": "AtoB",
        "model": "cycle_gan", "name": "tiny"})
    dest = root / "models"
    done = subprocess.run([sys.executable, "-m", "bridge", "models", "import", str(folder), "--dest", str(dest),
                           "--pose-source", "image"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    return dest


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tiny_card(tmp_path_factory.mktemp("raycards"))


@pytest.fixture(scope="module")
def ray_bridge(cluster: str, models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBridge]:
    running = start_bridge(tmp_path_factory.mktemp("raybridge"), "--engine", "ray", "--ray-address", cluster,
                           "--replicas", "2", "--cpus-per-replica", "0.5", "--model", "invert",
                           "--models-dir", str(models), http=True, timeout=RAY_START_TIMEOUT_S)
    yield running
    stopping = time.perf_counter()
    assert running.stop(timeout=60) == 0, running.log_text()
    print(f"\nray daemon (joined cluster) stopped in {time.perf_counter() - stopping:.1f} s")


@pytest.fixture(scope="module")
def local_bridge(models: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningBridge]:
    running = start_bridge(tmp_path_factory.mktemp("localbridge"), "--model", "invert", "--models-dir", str(models),
                           timeout=120)
    yield running
    running.stop()


def health(bridge: RunningBridge) -> dict[str, Any]:
    with urllib.request.urlopen(bridge.url("/health"), timeout=5) as resp:
        return dict(json.loads(resp.read()))


def frame(h: int, w: int, seed: int, channels: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    img = rng.integers(0, 256, (h, w, channels), dtype=np.uint8)
    if channels == 4:
        img[..., 3] = 255
    return img


def pose_frame(h: int, w: int, seed: int) -> np.ndarray:
    """A BGRA pose image (what the ``tiny`` image-pose model accepts; it refuses random pixels)."""
    bgr = pose_picture_bgr(h, w, seed)
    return np.ascontiguousarray(np.concatenate([bgr, np.full((h, w, 1), 255, np.uint8)], axis=2))


def switch(bridge: RunningBridge, model: str) -> None:
    client = bridge.client(timeout=10)
    try:
        assert client.set_model(model, timeout=240) == model
    finally:
        client.close()


# -- tests -----------------------------------------------------------------------------------------

def test_several_clients_spread_over_replicas_in_order_equal_to_local(ray_bridge: RunningBridge,
                                                                       local_bridge: RunningBridge) -> None:
    """Bursts of path frames from three clients at once: every frame is answered once (done or
    dropped), each client's answers come in frame order, the newest frame is always done, both
    replicas worked, and every output file equals the local engine's, byte for byte."""
    import cv2

    results: dict[int, dict[str, Any]] = {}

    def client_run(c: int) -> None:
        client = ray_bridge.client(timeout=30)
        done: list[int] = []
        dropped: list[int] = []
        order: list[int] = []
        try:
            for i in range(12):
                src = ray_bridge.root / f"c{c}_{i}.png"
                cv2.imwrite(str(src), frame(48, 64, 100 * c + i, 3))
                client.send(f"{P}/frame/path", str(src), str(ray_bridge.root / f"c{c}_{i}.out.png"), i)
                time.sleep(0.01)
            while len(done) + len(dropped) < 12:
                msg = client.receive(30)
                assert msg is not None, (c, done, dropped)
                if msg.address == f"{P}/frame/done":
                    done.append(int(msg.args[0]))  # type: ignore[arg-type]
                    order.append(int(msg.args[0]))  # type: ignore[arg-type]
                elif msg.address == f"{P}/frame/dropped":
                    dropped.append(int(msg.args[0]))  # type: ignore[arg-type]
                else:
                    raise AssertionError(f"client {c}: unexpected {msg}")
            results[c] = {"done": done, "dropped": dropped, "order": order}
        finally:
            client.close()

    run_clients(client_run, 3, 120)
    assert sorted(results) == [0, 1, 2]
    local = local_bridge.client(timeout=30)
    try:
        for c, r in results.items():
            assert sorted(r["done"] + r["dropped"]) == list(range(12)), (c, r)  # each answered once
            assert r["order"] == sorted(r["order"]), (c, r)  # replies in frame order
            assert 11 in r["done"], (c, r)  # latest frame wins
            for i in r["done"]:
                src = ray_bridge.root / f"c{c}_{i}.png"
                shutil.copy(src, local_bridge.root / src.name)
                want = local_bridge.root / f"c{c}_{i}.local.png"
                local.process_path(str(local_bridge.root / src.name), str(want), frame_id=i, timeout=30)
                assert (ray_bridge.root / f"c{c}_{i}.out.png").read_bytes() == want.read_bytes(), (c, i)
    finally:
        local.close()
    replicas = health(ray_bridge)["engine"]["replicas"]
    assert len(replicas) == 2 and all(r["frames"] > 0 for r in replicas.values()), replicas


def test_a_slow_replica_builds_no_queue_behind_a_client(ray_bridge: RunningBridge) -> None:
    """Ten frames sent at once to a 300 ms model: one is in flight, one waits in the mailbox and the
    rest are overtaken there (``/frame/dropped``), although a second replica is idle."""
    import cv2

    switch(ray_bridge, "throttle:300")
    client = ray_bridge.client(timeout=30)
    try:
        src = ray_bridge.root / "burst.png"
        cv2.imwrite(str(src), frame(24, 32, 5, 3))
        for i in range(10):
            client.send(f"{P}/frame/path", str(src), str(ray_bridge.root / f"burst_{i}.png"), i)
        done: list[int] = []
        dropped: list[int] = []
        while len(done) + len(dropped) < 10:
            msg = client.receive(30)
            assert msg is not None, (done, dropped)
            (done if msg.address == f"{P}/frame/done" else dropped).append(int(msg.args[0]))  # type: ignore[arg-type]
    finally:
        client.close()
    assert done[-1] == 9 and len(done) <= 3 and len(dropped) >= 7, (done, dropped)
    assert done == sorted(done)


def test_switch_reaches_every_replica_before_ready_and_generates_like_local(ray_bridge: RunningBridge,
                                                                            local_bridge: RunningBridge) -> None:
    """After ``/model/ready`` every replica serves the generator without loading it on demand; shm
    frames (BGRA, converted to RGB in the front end) and keypoint frames come back equal to the
    local engine's."""
    switch(ray_bridge, "tiny")
    switch(local_bridge, "tiny")
    outputs: dict[int, list[np.ndarray]] = {}

    def client_run(c: int) -> None:
        client = ray_bridge.client(timeout=60)
        session = client.open_shm(f"g{c}", 80, 60, "BGRA8")
        try:
            outputs[c] = [client.process_shm(session, pose_frame(60, 80, 10 * c + i), i, timeout=60)[0].copy()
                          for i in range(6)]
        finally:
            client.close_shm(session)
            client.close()

    run_clients(client_run, 3, 180)
    local = local_bridge.client(timeout=60)
    session = local.open_shm("want", 80, 60, "BGRA8")
    try:
        for c in range(3):
            for i in range(6):
                want, _ = local.process_shm(session, pose_frame(60, 80, 10 * c + i), 1000 + 10 * c + i, timeout=60)
                assert np.array_equal(outputs[c][i], want), (c, i)
    finally:
        local.close_shm(session)
        local.close()
    # Keypoint frames send the pose to the replica's generator (generate_from_pose), not a picture.
    coco = [(64, 20), (70, 15), (58, 15), (76, 18), (52, 18), (84, 45), (44, 45), (92, 72), (36, 72), (96, 98),
            (32, 98), (76, 95), (52, 95), (78, 125), (50, 125), (80, 155), (48, 155)]
    keypoints = ["coco17", 3, 128, 160, *[v for x, y in coco for v in (float(x), float(y), 0.9)]]
    pictures = []
    for bridge in (ray_bridge, local_bridge):
        client = bridge.client(timeout=60)
        try:
            out_path = bridge.root / "kp.png"
            client.request(f"{P}/keypoints/target/path", (str(out_path),), f"{P}/keypoints/target")
            client.send(f"{P}/keypoints", *keypoints)
            client.wait_for(lambda m: m.address == f"{P}/frame/done", 60)
            pictures.append(out_path.read_bytes())
        finally:
            client.close()
    assert pictures[0] == pictures[1]
    replicas = health(ray_bridge)["engine"]["replicas"]
    used = {k: v for k, v in replicas.items() if v["model"] == "tiny"}
    assert len(used) == 2, replicas  # both replicas had the new model when they answered
    assert all(v["on_demand_loads"] == 0 for v in used.values()), replicas  # loaded before ready, not on demand


def test_a_killed_replica_is_replaced_and_its_frame_answered(ray_bridge: RunningBridge) -> None:
    """SIGKILL one replica while both hold frames: its frame is answered ``replica_lost``, the other
    clients' frames go on, Ray starts a replacement and frames flow through it."""
    switch(ray_bridge, "throttle:800")  # replicas are busy ~99 % of the time: the kill hits a frame
    before = health(ray_bridge)["engine"]["replicas"]
    stop = threading.Event()
    outcomes: dict[int, list[str]] = {0: [], 1: []}

    def client_run(c: int) -> None:
        client = ray_bridge.client(timeout=60)
        session = client.open_shm(f"k{c}", 32, 24, "BGRA8")
        try:
            i = 0
            while not stop.is_set() and i < 200:
                try:
                    client.process_shm(session, frame(24, 32, i), i, timeout=60)
                    outcomes[c].append("ok")
                except RemoteError as exc:
                    outcomes[c].append(exc.code)
                i += 1
        finally:
            client.close_shm(session)
            client.close()

    threads = start_clients(client_run, 2)
    assert wait_until(lambda: all(len(o) >= 2 for o in outcomes.values()), 60)
    rows = health(ray_bridge)["engine"]["replicas"]
    victim = next(iter(rows.values()))
    time.sleep(0.4)  # the replies just came: kill half-way through the next frames, not between them
    os.kill(int(victim["pid"]), signal.SIGKILL)
    killed_at = [len(o) for o in outcomes.values()]

    def replaced() -> bool:
        h = health(ray_bridge)["engine"]
        fresh = [k for k, v in h["replicas"].items() if k not in before and k not in rows and v["frames"] > 0]
        return bool(fresh) and h["deployment"].get("replica_states", {}).get("RUNNING") == 2

    try:
        assert wait_until(replaced, 120, 0.5), health(ray_bridge)
        assert wait_until(lambda: all(len(o) >= n + 3 for o, n in zip(outcomes.values(), killed_at)), 60)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
    everything = outcomes[0] + outcomes[1]
    assert set(everything) <= {"ok", "replica_lost"}, everything
    assert everything.count("replica_lost") >= 1, everything  # the frame the victim held
    assert all(o[-1] == "ok" for o in outcomes.values()), outcomes  # the stream goes on
    assert ray_bridge.alive()
    assert health(ray_bridge)["engine"]["lost_frames"] >= 1


def test_private_cluster_starts_and_stops_without_leaving_processes(tmp_path: Path) -> None:
    """No --ray-address: the daemon starts its own cluster and takes every Ray process with it."""
    started = time.perf_counter()
    bridge = start_bridge(tmp_path, "--engine", "ray", "--replicas", "1", "--ray-local-cpus", "1",
                          "--model", "invert", timeout=RAY_START_TIMEOUT_S)
    try:
        startup = time.perf_counter() - started
        kids = psutil.Process(bridge.proc.pid).children(recursive=True)
        names = {k.name() for k in kids}
        assert "raylet" in names and "gcs_server" in names, names
        client = bridge.client(timeout=30)
        img = frame(24, 32, 1)
        session = client.open_shm("p", 32, 24, "BGRA8")
        out, _ = client.process_shm(session, img, 1, timeout=30)
        assert np.array_equal(out[..., :3], 255 - img[..., :3])
        client.close_shm(session)
        client.close()
        timing = re.search(r"Ray start ([\d.]+) s, deployment ([\d.]+) s", bridge.log_text())
        assert timing, bridge.log_text()
        print(f"\nprivate cluster: daemon ready in {startup:.1f} s (Ray start {timing.group(1)} s, "
              f"deployment {timing.group(2)} s)")
    finally:
        stopped = time.perf_counter()
        code = bridge.stop(timeout=90)
        print(f"daemon with private cluster stopped in {time.perf_counter() - stopped:.1f} s")
    assert code == 0, bridge.log_text()
    left = _gone([k.pid for k in kids], 30)
    assert not left, [(p, psutil.Process(p).name()) for p in left if psutil.pid_exists(p)]


# -- without a cluster: the replica's logic and the deployment's options ---------------------------

def test_replica_loads_before_frames_answers_errors_as_tuples_and_keeps_models_resident() -> None:
    import asyncio

    from bridge.config import PipelineConfig
    from bridge.engines.ray_engine import StageReplica

    async def main() -> None:
        replica = StageReplica(PipelineConfig(test_models=True))  # throttle: a test stage
        await replica.reconfigure({"model": "invert"})
        img = frame(4, 6, 3)
        out, info, error = await replica.process("invert", img, "BGRA8")
        assert error is None and info["model"] == "invert" and not info["on_demand"] and info["frames"] == 1
        want = 255 - img
        want[..., 3] = img[..., 3]
        assert np.array_equal(out, want)
        facts, error = await replica.probe("throttle:abc")
        assert facts is None and "milliseconds" in str(error)
        facts, error = await replica.probe("passthrough")
        assert error is None and facts == {"name": "passthrough", "input_format": None, "nbytes": 0,
                                           "generate_from_pose": False, "pose_source": None, "pose_style": None}
        await replica.reconfigure({"model": "passthrough"})  # resident after the probe: no load
        out, info, error = await replica.process("invert", img, "BGRA8")  # a frame sent before the switch
        assert error is None and np.array_equal(out, want) and not info["on_demand"]
        out, info, error = await replica.process("throttle:0", img, "BGRA8")  # unknown here: loaded on demand
        assert error is None and info["on_demand"] and info["on_demand_loads"] == 1
        out, info, error = await replica.process("nope", img, "BGRA8")
        assert out is None and error[0] == "model_failed"

    asyncio.run(main())


def test_deployment_options_follow_the_flags() -> None:
    from bridge.config import EngineConfig
    from bridge.engines.ray_engine import RayEngine
    from bridge.stages import Catalog

    engine = RayEngine(Catalog(), EngineConfig(kind="ray", replicas=2, min_replicas=1, max_replicas=3, num_gpus=0.5,
                                               num_cpus=2.0))
    assert engine.max_in_flight == 3
    app = engine._application("invert")
    deployment = app._bound_deployment
    cfg = deployment._deployment_config
    assert cfg.user_config == {"model": "invert"} and cfg.max_ongoing_requests == 1
    assert cfg.autoscaling_config.min_replicas == 1 and cfg.autoscaling_config.max_replicas == 3
    assert cfg.autoscaling_config.initial_replicas == 2 and cfg.autoscaling_config.upscale_delay_s == 5.0
    assert deployment.ray_actor_options["num_gpus"] == 0.5 and deployment.ray_actor_options["num_cpus"] == 2.0
    assert deployment.version.startswith("pose2person-")  # pinned: a model switch reconfigures in place


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="malloc arenas are a glibc setting")
def test_driver_malloc_arenas_are_capped_unless_the_operator_set_them() -> None:
    """The driver's RSS creep (docs/BENCHMARKS.md): the cap applies on glibc, MALLOC_ARENA_MAX wins.
    Each case in its own interpreter, so the test process keeps its allocator settings."""
    code = "from bridge.engines.ray_engine import limit_malloc_arenas; print(limit_malloc_arenas())"
    env = {k: v for k, v in os.environ.items() if k != "MALLOC_ARENA_MAX"}
    glibc = platform.libc_ver()[0] == "glibc"
    for extra, want in (({}, "True" if glibc else "False"), ({"MALLOC_ARENA_MAX": "4"}, "False")):
        out = subprocess.run([sys.executable, "-c", code], env={**env, **extra}, cwd=REPO, capture_output=True,
                             text=True, timeout=60, check=True).stdout.strip()
        assert out == want, (extra, out)


def test_autoscaling_adds_a_replica_under_load(cluster: str, tmp_path: Path) -> None:
    """--min-replicas 1 --max-replicas 2: three clients on a 200 ms model make Serve start a second
    replica, which then takes frames (a second bridge, its own Serve application on the cluster)."""
    bridge = start_bridge(tmp_path, "--engine", "ray", "--ray-address", cluster, "--ray-app", "autoscaled",
                          "--replicas", "1", "--min-replicas", "1", "--max-replicas", "2", "--cpus-per-replica", "0.5",
                          "--model", "throttle:200", http=True, timeout=RAY_START_TIMEOUT_S)
    stop = threading.Event()
    errors: list[str] = []

    def client_run(c: int) -> None:
        client = bridge.client(timeout=30)
        session = client.open_shm(f"a{c}", 32, 24, "BGRA8")
        try:
            i = 0
            while not stop.is_set() and i < 1000:
                client.process_shm(session, frame(24, 32, i), i, timeout=30)
                i += 1
        except Exception as exc:
            errors.append(repr(exc))
        finally:
            client.close_shm(session)
            client.close()

    threads = start_clients(client_run, 3)
    try:
        def two_working() -> bool:
            engine = health(bridge)["engine"]
            return sum(v["frames"] > 0 for v in engine["replicas"].values()) == 2
        assert wait_until(two_working, 120, 0.5), health(bridge)
    finally:
        stop.set()
        for t in threads:
            t.join(60)
        assert bridge.stop(timeout=60) == 0, bridge.log_text()
    assert not errors, errors
