"""The Ray engine: the model stage runs as a Ray Serve deployment; the daemon stays the front end.

``pose2person serve --engine ray`` keeps every transport, the discovery advert and the
latest-frame-wins mailboxes in the daemon. What changes is where ``stage.process`` runs: the
pipeline's workers (one per replica the deployment may have, :attr:`RayEngine.max_in_flight`)
each take one client's frame, convert it to the stage's input format as the local engine does,
put the pixels in Ray's object store (:func:`ray.put`; on one node the replica maps them
without a copy) and wait for a replica's answer. A client has at most one frame in flight (the
pipeline's exclusive mailboxes): its newer frames wait in its one slot, replacing older ones,
so a slow replica never builds a queue behind a client, while several clients' frames run on
several replicas at once. Only this module imports Ray.

The deployment (:class:`StageReplica`, one per replica process, ``max_ongoing_requests=1``):

* its Serve ``user_config`` is ``{"model": spec}``; ``reconfigure`` loads (and warms up) the
  model before the replica takes frames, for the first model, for a replica that Ray starts to
  replace a dead one, and for a switch. A switch first loads the model on one replica (a probe:
  a model that fails to load is refused and the old one keeps serving), then updates the
  ``user_config``: Serve reconfigures the replicas in place, one at a time (each out of
  rotation meanwhile), and :meth:`RayEngine.async_switch` returns only when every replica has
  it; then ``/pose2person/model/ready`` goes out. Replicas keep recently used models resident
  within ``--memory-budget-mb``, like the local engine.
* every request names the model it was prepared for, so a frame converted for the old model
  during a switch is processed by the old model (still resident), never by the new one.
* a replica that dies is replaced by Serve (health checks every ``HEALTH_CHECK_PERIOD_S``);
  the frames it held fail in the front end with :class:`ray.exceptions.RayActorError` and are
  answered ``replica_lost`` (docs/PROTOCOL.md); the other replicas keep serving.

Without ``--ray-address`` the engine starts a private local cluster on loopback and shuts it
down with the daemon (no Ray process is left behind); with one it joins that cluster and, at
shutdown, deletes only its own Serve application. docs/SCALING.md has the recipe and the
measurements. Ray itself is imported when the engine starts (:meth:`RayEngine._connect`),
because a private cluster's loopback setting must be in the environment before that.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import ctypes
import ctypes.util
import logging
import os
import sys
import threading
import time
from typing import Any

import numpy as np

from .. import __version__
from ..config import EngineConfig, PipelineConfig
from ..errors import ClientError, ModelLoadError
from ..stages import Catalog, Stage
from .local import ResidentStages

log = logging.getLogger(__name__)

DEPLOYMENT_NAME = "stage"
FRAME_TIMEOUT_S = 120.0  # a replica that holds a frame longer than this is taken as lost
HEALTH_CHECK_PERIOD_S = 2.0  # how often Serve checks each replica: bounds how soon a dead one is replaced
HEALTH_CHECK_TIMEOUT_S = 30.0
GRACEFUL_SHUTDOWN_S = 2.0  # a replica being stopped gets this long to finish its frame
STATUS_POLL_S = 1.0  # the front end's view of the deployment (replica states) for /health
# ... refreshed only while someone reads it: each serve.status() call leaves 1-2 KiB in the driver
# (measured in a loop), which polled once a second for hours adds up (docs/BENCHMARKS.md).
STATUS_DEMAND_S = 30.0
POLLER_JOIN_S = 5.0  # at shutdown, the status poller's last call gets this long
STOP_WAIT_S = 15.0  # at shutdown, the daemon waits this long for Ray to stop (process exit waits the rest)
MAX_REPLICA_ROWS = 64  # replicas remembered for /health (old ones go first)
AUTOSCALE_UP_DELAY_S = 5.0  # sustained demand this long adds replicas
AUTOSCALE_DOWN_DELAY_S = 120.0  # sustained idleness this long removes them
AUTOSCALE_LOOK_BACK_S = 5.0  # window the demand is averaged over
AUTOSCALE_METRICS_S = 1.0  # how often the handle and replicas report it
# Ray's switch for "this machine only": node addresses become 127.0.0.1 instead of the host's
# network address, so a private cluster's traffic never leaves loopback. Read when Ray is imported.
LOOPBACK_ONLY_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"
NO_AUTO_INIT_ENV = "RAY_ENABLE_AUTO_CONNECT"  # "0": Ray's API never calls ray.init() by itself
# glibc malloc arenas the daemon may use once it is a Ray driver (docs/BENCHMARKS.md, "Soak with the
# Ray engine"). Ray's client threads (core worker io, gRPC, Serve's router loop) each get an arena of
# their own by default (up to 8 per core); frames pass through several of them, and freed memory
# left behind in those arenas was not reused, so the daemon's RSS grew ~0.6 KiB per frame while
# the live heap (heaptrack) and Python objects (tracemalloc) stayed flat. Two arenas cut the soak's
# growth by more than half (a driver loop test: flat); they cost little, as frames are small here.
# MALLOC_ARENA_MAX in the environment, if set, wins (glibc reads it at start-up).
DRIVER_MALLOC_ARENAS = 2
M_ARENA_MAX = -8  # glibc mallopt parameter number (malloc.h)


def _ray_system_errors() -> tuple[type[BaseException], ...]:
    """Errors that mean "the replica or the cluster lost the frame", not "the model failed"."""
    import ray
    from ray import serve

    errors: list[type[BaseException]] = [ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError,
                                         ray.exceptions.ObjectLostError, ray.exceptions.RaySystemError,
                                         TimeoutError]
    for name in ("ActorUnavailableError", "NodeDiedError", "WorkerCrashedError", "OwnerDiedError"):
        cls = getattr(ray.exceptions, name, None)
        if isinstance(cls, type):
            errors.append(cls)
    serve_exc = getattr(serve, "exceptions", None)
    for name in ("BackPressureError", "DeploymentUnavailableError", "RayServeException"):
        cls = getattr(serve_exc, name, None) if serve_exc is not None else None
        if isinstance(cls, type):
            errors.append(cls)
    return tuple(errors)


def limit_malloc_arenas(arenas: int = DRIVER_MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for threads started from now on; True if applied.

    Call before Ray starts its threads (``import ray`` / ``ray.init``). A no-op (False) off glibc
    and when ``MALLOC_ARENA_MAX`` is set, so an operator's own setting is kept. Only this process
    is affected: Ray's own processes keep their defaults.
    """
    if not sys.platform.startswith("linux") or os.environ.get("MALLOC_ARENA_MAX"):
        return False
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # musl and other libcs have no mallopt
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    ok = bool(mallopt(M_ARENA_MAX, int(arenas)))
    if ok:
        log.debug("ray engine: malloc arenas capped at %d for the driver's threads", arenas)
    return ok


def _have_ray_token() -> bool:
    """A Ray authentication token is set (``RAY_AUTH_TOKEN``), named or in its default file."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return True
    named = os.environ.get("RAY_AUTH_TOKEN_PATH")
    return os.path.isfile(named) if named else os.path.isfile(os.path.expanduser("~/.ray/auth_token"))


# -- replica side ------------------------------------------------------------------------------

class StageReplica:
    """One Serve replica: a catalog, its resident stages, one model thread (the local rules).

    Methods run on the replica's asyncio loop; model work runs on ``_model_thread`` (one
    thread owns the model, as in the daemon), loads on ``_loader`` so health checks and a
    switch never wait for a frame. Requests answer ``(result, info, error)`` tuples, never
    raise for model errors: ``error`` is ``(code, message)`` or None.
    """

    def __init__(self, pipeline: PipelineConfig) -> None:
        import ray
        from ray import serve

        self._catalog = Catalog(pipeline)
        self._resident = ResidentStages(pipeline.memory_budget_mb * 1024 * 1024)
        self._active: str | None = None
        self._model_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="p2p-replica-model")
        self._loader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="p2p-replica-loader")
        try:
            self._id = serve.get_replica_context().replica_id.unique_id
        except Exception:  # outside Serve (a unit test constructing it directly)
            self._id = f"pid{os.getpid()}"
        self._pid = os.getpid()
        self._node = ray.get_runtime_context().get_node_id() if ray.is_initialized() else ""
        self._frames = 0
        self._on_demand_loads = 0

    async def reconfigure(self, user_config: dict[str, Any]) -> None:
        """Serve calls this before the replica takes frames and on every model switch."""
        spec = str(user_config["model"])
        await self._async_load(spec, activate=True)
        self._active = spec

    async def _async_load(self, spec: str, activate: bool) -> Stage:
        stage = self._resident.get(spec)
        if stage is None:
            loop = asyncio.get_running_loop()
            stage = await loop.run_in_executor(self._loader, self._catalog.load, spec)
        active = None if activate or self._active is None else self._resident.get(self._active)
        self._resident.put(spec, stage, active)
        return stage

    async def probe(self, spec: str) -> tuple[dict[str, Any] | None, str | None]:
        """Load ``spec`` here (it stays resident): ``(stage facts, None)`` or ``(None, error)``."""
        try:
            stage = await self._async_load(spec, activate=False)
        except ModelLoadError as exc:
            return None, str(exc)
        except Exception as exc:
            return None, f"model {spec!r} failed to load: {type(exc).__name__}: {exc}"
        return stage_facts(stage), None

    async def process(self, spec: str, image: np.ndarray, fmt: str) -> tuple[Any, dict[str, Any], Any]:
        return await self._run(spec, "process", image, fmt)

    async def generate_from_pose(self, spec: str, pose: Any) -> tuple[Any, dict[str, Any], Any]:
        return await self._run(spec, "generate_from_pose", pose)

    async def _run(self, spec: str, method: str, *args: Any) -> tuple[Any, dict[str, Any], Any]:
        on_demand = self._resident.get(spec) is None  # e.g. a frame for the old model on a new replica
        try:
            stage = await self._async_load(spec, activate=False)
        except Exception as exc:
            return None, self._info(on_demand), ("model_failed", f"model {spec!r} is not loaded here and "
                                                 f"failed to load: {type(exc).__name__}: {exc}")
        if on_demand:
            self._on_demand_loads += 1
        loop = asyncio.get_running_loop()
        try:
            result = await loop.run_in_executor(self._model_thread, getattr(stage, method), *args)
        except ClientError as exc:
            return None, self._info(on_demand), (exc.code, exc.message)
        except Exception as exc:
            return None, self._info(on_demand), ("model_failed", f"{stage.name}: {type(exc).__name__}: {exc}")
        self._frames += 1
        return result, self._info(on_demand), None

    def _info(self, on_demand: bool) -> dict[str, Any]:
        return {"id": self._id, "pid": self._pid, "node": self._node, "model": self._active,
                "frames": self._frames, "on_demand_loads": self._on_demand_loads, "on_demand": on_demand}


def stage_facts(stage: Stage) -> dict[str, Any]:
    """What the front end needs to know of a replica's stage (JSON-able, small)."""
    return {"name": stage.name, "input_format": getattr(stage, "input_format", None),
            "nbytes": int(getattr(stage, "nbytes", 0)),
            "generate_from_pose": callable(getattr(stage, "generate_from_pose", None)),
            "pose_source": getattr(stage, "pose_source", None), "pose_style": getattr(stage, "pose_style", None)}



# -- front-end side ----------------------------------------------------------------------------

class RemoteStage:
    """The :class:`~bridge.stages.Stage` the pipeline's workers call: each call is one remote frame.

    Thread-safe (several workers call it at once, one frame each). Input conversion happens in
    the front end (``input_format`` mirrors the replica's stage), so replicas get exactly the
    array the local engine's stage would get.
    """

    last_pose: np.ndarray | None = None  # the pose image stays on the replica (the monitor shows none)

    def __init__(self, engine: RayEngine, spec: str, facts: dict[str, Any]) -> None:
        self._engine, self.spec = engine, spec
        self.name: str = facts["name"]
        self.nbytes: int = facts["nbytes"]
        if facts.get("input_format"):
            self.input_format: str = facts["input_format"]
        self.facts = facts

    def process(self, image: np.ndarray, fmt: str) -> np.ndarray:
        import ray

        self._engine.check_running(self)  # ray.put would start a new local cluster once Ray is down
        ref = ray.put(image)  # the object store: the replica maps it (same node) or Ray ships it once
        return self._engine.call(self, "process", ref, fmt)


class RemoteGeneratorStage(RemoteStage):
    """A remote generator: keypoint frames send the pose (a few KiB), not a picture."""

    pose_source: str | None
    pose_style: str | None

    def __init__(self, engine: RayEngine, spec: str, facts: dict[str, Any]) -> None:
        super().__init__(engine, spec, facts)
        self.pose_source, self.pose_style = facts.get("pose_source"), facts.get("pose_style")

    def generate_from_pose(self, pose: Any) -> np.ndarray:
        return self._engine.call(self, "generate_from_pose", pose)


class RayEngine:
    """Ray Serve replicas behind the daemon (see the module docstring)."""

    kind = "ray"

    def __init__(self, catalog: Catalog, config: EngineConfig | None = None) -> None:
        self.catalog = catalog
        self.config = config or EngineConfig(kind="ray")
        self.max_in_flight = self.config.max_in_flight
        self._ray_thread = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="p2p-ray")
        self._handle: Any = None
        self._owns_cluster = False
        self._spec: str | None = None
        self._stage: RemoteStage | None = None
        self._lock = threading.Lock()
        self._replicas: dict[str, dict[str, Any]] = {}  # replica id -> last facts it reported
        self._lost_frames = 0
        self._deployment_state: dict[str, Any] = {}
        self._status_asked = time.monotonic()  # the last describe(): the poller runs while it is recent
        self._stopping = threading.Event()
        self._poller: threading.Thread | None = None
        self._teardown_thread: threading.Thread | None = None
        self._errors: tuple[type[BaseException], ...] = ()  # Ray's, once Ray is imported
        self._in_place_switch = True
        self.startup_s: float | None = None  # ray.init + serve start + first deployment, measured
        if catalog.config.device.startswith("cuda") and self.config.num_gpus <= 0:
            log.warning("--device %s with --gpus-per-replica 0: Ray hides the GPUs from replicas that reserve "
                        "none; give each replica a GPU (e.g. --gpus-per-replica 1)", catalog.config.device)

    # -- lifecycle ---------------------------------------------------------------------------
    async def async_start(self, spec: str) -> Stage:
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        await loop.run_in_executor(self._ray_thread, self._connect)
        connected = time.perf_counter()
        stage = await self.async_switch(spec)
        self.startup_s = time.perf_counter() - started
        log.info("ray engine ready: %s, app %r, %s; Ray start %.1f s, deployment %.1f s",
                 self.config.ray_address or "private local cluster", self.config.ray_app, self._scaling_text(),
                 connected - started, time.perf_counter() - connected)
        self._poller = threading.Thread(target=self._poll_status, name="p2p-ray-status", daemon=True)
        self._poller.start()
        return stage

    def _connect(self) -> None:
        cfg = self.config
        if not cfg.ray_address:
            os.environ.setdefault(LOOPBACK_ONLY_ENV, "0")  # before the first `import ray`
        # Ray's API calls ray.init() by itself when Ray is down; Serve's handle threads still poll
        # for a moment after ray.shutdown(), and would start a fresh local cluster in a daemon that
        # is stopping. This daemon always connects explicitly.
        os.environ.setdefault(NO_AUTO_INIT_ENV, "0")
        limit_malloc_arenas()  # before Ray's threads exist (see DRIVER_MALLOC_ARENAS)
        if cfg.ray_address and "RAY_AUTH_MODE" not in os.environ and _have_ray_token():
            # Ray enables token authentication on new clusters; a driver joining one needs token
            # mode set as well, or it is refused. With a token at hand, assume the cluster wants it.
            os.environ["RAY_AUTH_MODE"] = "token"
            log.info("ray engine: using Ray's authentication token to join %s", cfg.ray_address)
        try:
            import ray
            from ray import serve
        except ImportError as exc:
            raise ModelLoadError(f"--engine ray needs ray[serve]: pip install -e '.[ray]' ({exc})") from None

        self._errors = _ray_system_errors()
        common: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False, "configure_logging": False,
                                  "namespace": "pose2person"}
        try:
            if cfg.ray_address:
                ray.init(address=cfg.ray_address, **common)
            else:
                ray.init(num_cpus=cfg.local_cpus, **common)  # loopback only (LOOPBACK_ONLY_ENV)
                self._owns_cluster = True
            serve.start(proxy_location="Disabled")  # frames come through handles, not Serve's HTTP proxy
        except Exception as exc:
            where = cfg.ray_address or "a private local cluster"
            raise ModelLoadError(f"--engine ray: cannot start or join Ray ({where}): {type(exc).__name__}: {exc}") \
                from exc

    def _scaling_text(self) -> str:
        c = self.config
        if c.min_replicas is not None:
            size = f"{c.min_replicas}..{c.max_replicas} replicas (autoscaling, {c.replicas} at start)"
        else:
            size = f"{c.replicas} replica(s)"
        return f"{size}, {c.num_cpus:g} CPU + {c.num_gpus:g} GPU each"

    async def async_stop(self) -> None:
        """Tear Ray down on a non-daemon thread: the daemon waits up to ``STOP_WAIT_S`` (its own
        shutdown budget may give up sooner), and process exit waits for the rest, so a private
        cluster never outlives the daemon."""
        self._stopping.set()
        if self._teardown_thread is None:
            self._teardown_thread = threading.Thread(target=self._teardown, name="p2p-ray-teardown", daemon=False)
            self._teardown_thread.start()
        await asyncio.to_thread(self._teardown_thread.join, STOP_WAIT_S)
        self._ray_thread.shutdown(wait=False, cancel_futures=True)

    def _teardown(self) -> None:
        import ray
        from ray import serve

        # The status poller first: Serve's API calls ray.init() by itself when Ray is down, and a
        # status call racing ray.shutdown() would start a fresh local cluster.
        if self._poller is not None:
            self._poller.join(POLLER_JOIN_S)
        if not ray.is_initialized():
            return
        started = time.perf_counter()
        try:
            if self._handle is not None:
                self._handle.shutdown()  # the handle's router threads: metrics pushes, long polls
        except Exception:
            log.debug("ray engine: closing the Serve handle failed", exc_info=True)
        try:
            if not self._owns_cluster and self._handle is not None:
                serve.delete(self.config.ray_app)  # a shared cluster: remove only our application
        except Exception:
            log.warning("ray engine: deleting Serve application %r failed", self.config.ray_app, exc_info=True)
        try:
            ray.shutdown()  # a private cluster: stops every process it started
        except Exception:
            log.warning("ray engine: ray.shutdown failed", exc_info=True)
        log.info("ray engine stopped in %.1f s", time.perf_counter() - started)

    # -- models ------------------------------------------------------------------------------
    async def async_switch(self, spec: str) -> Stage:
        """Load ``spec`` on every replica (each warms up first) and return its remote stage."""
        loop = asyncio.get_running_loop()
        if self._spec == spec and self._stage is not None:
            return self._stage
        facts = await loop.run_in_executor(self._ray_thread, self._deploy, spec)
        cls = RemoteGeneratorStage if facts.get("generate_from_pose") else RemoteStage
        stage = cls(self, spec, facts)
        self._spec, self._stage = spec, stage
        return stage

    def _deploy(self, spec: str) -> dict[str, Any]:
        """Blocking (the Ray thread): probe, then roll the new ``user_config`` out to every replica."""
        from ray import serve

        if self._handle is not None:
            facts, error = self._handle.probe.remote(spec).result(timeout_s=FRAME_TIMEOUT_S)
            if error is not None:
                raise ModelLoadError(error)
        try:
            self._handle = serve.run(self._application(spec), name=self.config.ray_app, route_prefix=None)
        except Exception as exc:
            raise ModelLoadError(f"model {spec!r}: the Ray deployment failed: {type(exc).__name__}: {exc}") from exc
        facts, error = self._handle.probe.remote(spec).result(timeout_s=FRAME_TIMEOUT_S)  # resident: instant
        if error is not None:
            raise ModelLoadError(error)
        return facts

    def _application(self, spec: str) -> Any:
        from ray import serve

        c = self.config
        options: dict[str, Any] = {
            "user_config": {"model": spec},
            "max_ongoing_requests": 1,  # one frame per replica; the rest wait in client mailboxes
            "ray_actor_options": {"num_cpus": c.num_cpus, "num_gpus": c.num_gpus},
            "health_check_period_s": HEALTH_CHECK_PERIOD_S,
            "health_check_timeout_s": HEALTH_CHECK_TIMEOUT_S,
            "graceful_shutdown_timeout_s": GRACEFUL_SHUTDOWN_S,
            "graceful_shutdown_wait_loop_s": 0.2,
            "max_constructor_retry_count": 2,  # a model that cannot load fails the deployment soon
        }
        if c.min_replicas is not None:
            # Serve scales on frames running plus frames waiting at the handle (the front end keeps
            # up to --max-replicas in flight, so demand beyond the replicas shows there). Up soon:
            # an audience arrived; down slowly: a pause in the show should not cost a cold start.
            options["autoscaling_config"] = {"min_replicas": c.min_replicas, "max_replicas": c.max_replicas,
                                             "initial_replicas": c.replicas, "target_ongoing_requests": 1.0,
                                             "upscale_delay_s": AUTOSCALE_UP_DELAY_S,
                                             "downscale_delay_s": AUTOSCALE_DOWN_DELAY_S,
                                             "look_back_period_s": AUTOSCALE_LOOK_BACK_S,
                                             "metrics_interval_s": AUTOSCALE_METRICS_S}
        else:
            options["num_replicas"] = c.replicas
        deployment = serve.deployment(StageReplica, name=DEPLOYMENT_NAME).options(**options)
        if self._in_place_switch:
            # A fixed code version makes a user_config change a light, in-place reconfigure
            # (replicas keep their processes and resident models). Serve only offers this to its
            # own callers now; without it every switch restarts the replicas, which is slower
            # but still correct.
            try:
                deployment = deployment.options(version=f"pose2person-{__version__}", _internal=True)
            except (TypeError, ValueError):
                self._in_place_switch = False
                log.info("this Ray version restarts replicas on every model switch")
        return deployment.bind(self.catalog.config)

    def resident_models(self) -> list[str]:
        return [self._spec] if self._spec else []

    # -- frames (worker threads) ---------------------------------------------------------------
    def call(self, stage: RemoteStage, method: str, *args: Any) -> np.ndarray:
        """One remote frame; blocks the calling worker only. Raises ClientError (frame id filled in
        by the pipeline) for a lost replica or a model error."""
        handle = self._handle
        self.check_running(stage)
        try:
            response = getattr(handle, method).remote(stage.spec, *args)
            result, info, error = response.result(timeout_s=FRAME_TIMEOUT_S)
        except self._errors as exc:
            with self._lock:
                self._lost_frames += 1
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            raise ClientError("replica_lost", f"{stage.name}: the Ray replica holding this frame was lost "
                              f"({type(exc).__name__}: {first}); Ray replaces it, later frames go on") from None
        self._note(info)
        if error is not None:
            code, message = error
            raise ClientError(str(code), str(message))
        return result

    def check_running(self, stage: RemoteStage) -> None:
        """Raise ClientError once teardown began: Ray's API calls ``ray.init()`` by itself when Ray is
        down, which would start a fresh local cluster in a daemon that is stopping."""
        if self._stopping.is_set():
            raise ClientError("replica_lost", f"{stage.name}: the bridge is shutting down")

    def _note(self, info: dict[str, Any]) -> None:
        with self._lock:
            row = self._replicas.pop(info["id"], {})
            row.update({k: info[k] for k in ("pid", "node", "model", "frames", "on_demand_loads")})
            row["seen"] = time.time()
            self._replicas[info["id"]] = row
            while len(self._replicas) > MAX_REPLICA_ROWS:
                self._replicas.pop(next(iter(self._replicas)))

    def _poll_status(self) -> None:
        import ray
        from ray import serve

        while not self._stopping.wait(STATUS_POLL_S):
            if time.monotonic() - self._status_asked > STATUS_DEMAND_S:
                continue  # nobody reads /health now: spare the driver the call
            try:
                if not ray.is_initialized():
                    return
                app = serve.status().applications.get(self.config.ray_app)
                dep = app.deployments.get(DEPLOYMENT_NAME) if app is not None else None
                state = {"status": str(getattr(dep.status, "value", dep.status)),
                         "replica_states": {str(k): int(v) for k, v in dep.replica_states.items()}} if dep else {}
            except Exception:  # the cluster is going away, or a transient controller hiccup
                if self._stopping.is_set():
                    return
                state = {"status": "unknown", "replica_states": {}}
            with self._lock:
                self._deployment_state = state

    def describe(self) -> dict[str, Any]:
        """For ``/health``: where the replicas run, their states, what each reported last. The
        deployment state is refreshed every second while ``/health`` or ``/metrics`` is being read,
        so the first read after a quiet spell of over ``STATUS_DEMAND_S`` shows the state from
        before it (fresh again within a second)."""
        self._status_asked = time.monotonic()
        with self._lock:
            replicas = {k: dict(v) for k, v in self._replicas.items()}
            state = dict(self._deployment_state)
            lost = self._lost_frames
        return {"kind": self.kind, "address": self.config.ray_address or "local", "app": self.config.ray_app,
                "scaling": self._scaling_text(), "deployment": state, "replicas": replicas, "lost_frames": lost,
                "startup_s": round(self.startup_s, 2) if self.startup_s is not None else None}
