"""The pipeline: latest-frame-wins mailboxes feeding one worker thread that owns the model.

Thread contract:

* ``async_*`` methods and :meth:`submit` run on the event-loop thread.
* The worker thread is the only one that calls ``stage.process``; GPU work lives there.
* Results go back to the loop with ``call_soon_threadsafe``, except UDP replies, which the
  worker sends itself with one non-blocking ``sendto`` on the server socket (thread-safe at
  the OS level); if that would block, the loop sends them.
* Model loading runs on a separate loader thread, so a slow load never stalls frames;
  the worker picks up the new stage at the next frame boundary.
* Where the model runs is the engine's business (:mod:`bridge.engines`): the local engine
  keeps one worker thread; an engine with ``max_in_flight > 1`` (Ray, ``--max-batch``,
  ``--pipeline-depth``) gets that many workers over exclusive mailboxes. The active stage says
  how many frames it takes at once (``frames_in_flight``) and how many of one client
  (``pipeline_depth``, default 1); with more than one, :mod:`bridge.daemon.reply_order` keeps each
  client's replies in frame order.
* Nothing a model does stops the show (:mod:`bridge.daemon.safe_output`): workers start before the
  first model has loaded and answer with safe output meanwhile; a frame that fails in the
  model gets the client's safe picture; a frame that runs past ``stall_timeout_s`` makes a
  watchdog (loop task) abandon that worker generation, answer the frame with safe output on a
  fresh worker, and reload the model, all without restarting the daemon.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import threading
import time
from typing import Hashable

from .. import protocol, stages
from ..config import EngineConfig, PipelineConfig, SafetyConfig
from ..engines import Engine, create_engine
from ..errors import ClientError, ModelLoadError
from ..osc import encode_message
from ..util.frame_context import frame_context
from ..util.logutil import RateLimitedLog
from .jobs import AbandonedFrame, FrameJob, error_packet
from .latest import LatestMailboxes, MailboxClosed
from .monitor import FrameTap
from .reply_order import ReplyOrder
from .safe_output import LastFrames, SafeOutput, StageUnavailable
from .stats import PipelineStats

log = logging.getLogger(__name__)

WORKER_JOIN_TIMEOUT_S = 1.0  # a stage stuck longer than this is abandoned at shutdown (daemon thread)
WATCHDOG_PERIOD_S = 0.2  # how often the loop looks for a stalled frame
TAKE_TIMEOUT_S = 0.5  # workers wake this often to notice that their generation was retired


class UnavailableStage:
    """Stands in for the model while it loads or restarts: every frame gets safe output
    (or ``model_unavailable`` for clients with the ``off`` policy)."""

    def __init__(self, name: str, why: str) -> None:
        self.name, self.why = name, why

    def process(self, image: object, fmt: str) -> object:
        raise StageUnavailable(f"{self.name} is {self.why}")

    def generate_from_pose(self, pose: object) -> object:  # keypoint jobs ask for this
        raise StageUnavailable(f"{self.name} is {self.why}")


class Pipeline:
    """Owns the mailboxes, the worker thread, the active stage and the statistics."""

    def __init__(self, model: str, config: PipelineConfig | None = None, engine: EngineConfig | None = None,
                 safety: SafetyConfig | None = None) -> None:
        self.stats = PipelineStats()
        self.safety = safety or SafetyConfig()
        self.last_frames = LastFrames()  # the "last good frame" of each client, for safe output
        self._initial_model = model
        self._active_spec = model
        self._generation = 0  # bumped when a stall retires the running workers
        self._busy: dict[int, tuple[float, FrameJob, int]] = {}  # worker id -> (start, job, generation)
        self._busy_lock = threading.Lock()
        self._watchdog: asyncio.Task[None] | None = None
        self._reload: asyncio.Task[None] | None = None
        self._next_worker_id = 0
        self.restarts = 0
        self._ratelog = RateLimitedLog(log)  # lines a client can trigger per frame
        self.catalog = stages.Catalog(config, cached=True)  # messages never read model folders (refresh_catalog)
        self.engine: Engine = create_engine(self.catalog, engine)
        # Workers: as many as the active stage takes frames at once, up to the engine's bound (the
        # local engine starts with the fewest it may need and grows when a stage asks for more).
        self._max_workers = max(1, int(self.engine.max_in_flight))
        self._workers_n = min(self._max_workers, max(1, int(getattr(self.engine, "workers_at_start",
                                                                      self._max_workers))))
        # Several frames of one client at once (a pipelined stage): replies are chained in order.
        self._order: ReplyOrder | None = None
        if int(getattr(self.engine, "pipeline_depth", 1)) > 1:
            stall = self.safety.stall_timeout_s
            self._order = ReplyOrder(patience_s=2 * stall if stall > 0 else 30.0)
        self._mailboxes: LatestMailboxes[FrameJob] = LatestMailboxes(
            exclusive=self._max_workers > 1, on_take=self._chain if self._order is not None else None)
        self._stage: stages.Stage | None = None
        self._workers: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.monitor: FrameTap | None = None  # the monitor page's tap (bridge/daemon/monitor.py), when set

    @property
    def model_name(self) -> str:
        return self._stage.name if self._stage is not None else ""

    async def async_start(self) -> None:
        """Start the worker thread(s), then load the initial model (raises ModelLoadError).
        Frames that arrive while it loads get safe output."""
        self._loop = asyncio.get_running_loop()
        self._stage = UnavailableStage(self._initial_model, "loading")
        self._start_workers()
        self._activate(await self.engine.async_start(self._initial_model))
        if self.safety.stall_timeout_s > 0:
            self._watchdog = self._loop.create_task(self._async_watch(), name="p2p-stall-watchdog")
        log.info("pipeline ready: model %s (engine %s)", self.model_name, self.engine.kind)

    def _start_workers(self, count: int | None = None) -> None:
        gen = self._generation
        for _ in range(self._workers_n if count is None else count):
            wid = self._next_worker_id
            self._next_worker_id += 1
            name = "p2p-worker" if wid == 0 and self._workers_n == 1 else f"p2p-worker-{wid}"
            worker = threading.Thread(target=self._work, args=(wid, gen), name=name, daemon=True)
            worker.start()
            self._workers.append(worker)

    async def async_stop(self) -> None:
        """Stop taking frames; wait (bounded) for the frame in progress."""
        for task in (self._watchdog, self._reload):
            if task is not None:
                task.cancel()
        left = self._mailboxes.close()
        if left:
            log.info("shutdown: %d pending frame(s) discarded", len(left))
        self._workers = [w for w in self._workers if w.is_alive()]
        if self._workers:
            await asyncio.to_thread(_join_all, self._workers, WORKER_JOIN_TIMEOUT_S)
            busy = sum(w.is_alive() for w in self._workers)
            if busy:
                log.warning("%d model worker(s) still busy after %.1f s; abandoning them", busy,
                            WORKER_JOIN_TIMEOUT_S)
        await self.engine.async_stop()

    def submit(self, job: FrameJob) -> FrameJob | None:
        """Put ``job`` in its client's mailbox; returns the job it overtook (already counted)."""
        self.stats.count_received()
        try:
            overtaken = self._mailboxes.put(job.client, job)
        except MailboxClosed:
            job.reply(error_packet("internal", "the bridge is shutting down", job.frame_id))
            return None
        if overtaken is not None:
            self.stats.count_dropped()
            if self.monitor is not None:
                self.monitor.dropped(job.client)
        return overtaken

    def queued_ages_ms(self) -> list[float]:
        """How long each frame waiting in a mailbox now has waited, ms (at most one per client)."""
        now = time.perf_counter_ns()
        return [(now - job.received_ns) / 1e6 for job in self._mailboxes.items()]

    def forget_client(self, client: Hashable) -> None:
        """Drop a departed client's pending frame (and its last good frame)."""
        if self._mailboxes.discard(client) is not None:
            self.stats.count_dropped()
        self.last_frames.forget(client)

    def safe_output(self, policy: str, client: Hashable) -> SafeOutput:
        """A job's safe-output context for ``client`` under ``policy``."""
        return SafeOutput(policy, client, self.last_frames)

    def _activate(self, stage: stages.Stage) -> None:
        """Make ``stage`` the one the workers call (an atomic reference swap: a worker reads it
        once per frame), with the mailbox limits it asks for."""
        total = int(getattr(stage, "frames_in_flight", 0))
        self._mailboxes.set_limits(int(getattr(stage, "pipeline_depth", 1)), total)
        wanted = min(self._max_workers, total or self._max_workers)
        if wanted > self._workers_n:
            self._start_workers(wanted - self._workers_n)
            self._workers_n = wanted
        self._stage = stage

    @property
    def stage(self) -> stages.Stage | None:
        """The active stage (the worker reads it once per frame)."""
        return self._stage

    def resident_models(self) -> list[str]:
        return self.engine.resident_models()

    async def async_switch_model(self, spec: str) -> str:
        """Make ``spec`` the active stage; returns its name.

        A resident model switches at once; otherwise it loads (and warms up) while the old
        model keeps serving (the engine's business: a loader thread, or every Ray replica), and
        the switch happens at the next frame boundary: no frame is dropped or blank during a swap.
        """
        self.catalog.validate(spec)
        assert self._loop is not None
        stage = await self.engine.async_switch(spec)
        self._activate(stage)
        self._active_spec = spec
        log.info("model switched to %s (resident: %s)", stage.name, ", ".join(self.resident_models()))
        return stage.name

    # -- stall watchdog (loop thread) ---------------------------------------------------------
    async def _async_watch(self) -> None:
        while True:
            await asyncio.sleep(WATCHDOG_PERIOD_S)
            now = time.monotonic()
            with self._busy_lock:
                running = [(start, job) for start, job, gen in self._busy.values() if gen == self._generation]
            if any(now - start > self.safety.stall_timeout_s for start, _ in running):
                # Every frame of this generation goes, not only the stuck one: with several workers
                # on one stage (--max-batch, --pipeline-depth) the others wait behind the stuck
                # call and would otherwise hold their clients for ever.
                self._restart_after_stall(running)

    def _restart_after_stall(self, stuck: list[tuple[float, FrameJob]]) -> None:
        """Retire the running workers, answer their frames on new ones, reload the model."""
        name = self.model_name
        self._generation += 1
        self.restarts += 1
        log.warning("model %s stalled (a frame ran %.1f s > %.1f s): restarting it; %d frame(s) get safe output",
                    name, time.monotonic() - min(s for s, _ in stuck), self.safety.stall_timeout_s, len(stuck))
        self._stage = UnavailableStage(name, f"restarting after a stall of over {self.safety.stall_timeout_s:g} s")
        self._workers = [w for w in self._workers if w.is_alive()]
        # Newest first: where one client had several frames running, its newest gets the retry
        # and the older ones are answered as dropped (the latest frame wins).
        for _, job in sorted(stuck, key=lambda sj: sj[1].received_ns, reverse=True):
            job.abandoned = True  # if the stuck thread ever returns, it publishes nothing
            release = getattr(job, "release_output", None)  # shm jobs: free its output slot for the retry
            if release is not None:
                release()
            # The stuck thread keeps its job object; the retry is a copy, answered by a new worker
            # with safe output, unless a newer frame of that client already waits (then dropped).
            retry = dataclasses.replace(job, tap=None, abandoned=False, after=None, answered=None, advanced=False)
            if retry.safe is not None:
                retry.safe = dataclasses.replace(retry.safe, reason=None)
            if not self._mailboxes.put_if_absent(job.client, retry):
                self.stats.count_dropped()
                job.reply(encode_message(protocol.FRAME_DROPPED, job.frame_id, -1))
            if self._order is not None:  # its successor must not wait for the stuck call
                self._order.answered(job.client, job)
            advanced, job.advanced = job.advanced, True  # a late hook from the stuck thread counts nothing
            self._mailboxes.release(job.client, advanced)
        self._start_workers()
        if self._reload is None or self._reload.done():
            assert self._loop is not None
            self._reload = self._loop.create_task(self._async_reload(self._active_spec), name="p2p-reload")

    async def _async_reload(self, spec: str) -> None:
        reload = getattr(self.engine, "async_reload", None) or self.engine.async_switch
        try:
            stage = await reload(spec)
        except Exception as exc:  # the placeholder stays: clients keep getting safe output
            log.error("model %s could not be reloaded after a stall: %s; switch models to recover", spec, exc)
            return
        if self._active_spec == spec:
            self._activate(stage)
            log.info("model %s restarted", stage.name)

    def _chain(self, client: Hashable, job: FrameJob) -> None:
        """The mailboxes' take hook: chain ``job`` behind its client's previous frame, only while
        the active stage lets a client have several frames in flight (with one, a frame is taken
        only after the previous one was answered, so there is nothing to order)."""
        if self._mailboxes.depth > 1:
            assert self._order is not None
            self._order.chain(client, job)

    def _advance(self, job: FrameJob) -> None:
        """``job`` left its pipelined stage's pose step (called on the stage's pose thread): the
        client's next frame may be taken now (bridge/daemon/latest.py)."""
        if not job.advanced and not job.abandoned:
            job.advanced = True
            self._mailboxes.advance(job.client)

    # -- worker thread ------------------------------------------------------------------
    def _work(self, wid: int, generation: int) -> None:
        assert self._loop is not None
        loop = self._loop
        while generation == self._generation:
            try:
                job = self._mailboxes.take(TAKE_TIMEOUT_S)
            except MailboxClosed:
                return
            if job is None:
                continue
            if generation != self._generation:  # retired while waiting: hand the frame back
                if self._order is not None:
                    self._order.answered(job.client, job)
                    job.after = job.answered = None
                if not self._mailboxes.put_if_absent(job.client, job):
                    self.stats.count_dropped()
                self._mailboxes.release(job.client, job.advanced)
                return
            stage = self._stage
            assert stage is not None
            self.stats.frame_started(job.received_ns)  # stage timings of this frame (bridge/util/metrics.py)
            with self._busy_lock:
                self._busy[wid] = (time.monotonic(), job, generation)
            try:
                with frame_context(job.context()):
                    packet = job.run(stage if self._order is None else
                                     self._order.stage_for(job, stage, lambda job=job: self._advance(job)))
                self.stats.count_processed(job.latency_ms)
                if self.monitor is not None:
                    self.monitor.offer(job, stage)
            except AbandonedFrame:
                return  # this worker's generation was retired while the frame ran
            except ClientError as exc:
                self.stats.count_error()
                # An engine's stage knows no frame ids (e.g. replica_lost): the error is this job's.
                frame_id = job.frame_id if exc.frame_id == protocol.NO_FRAME_ID else exc.frame_id
                # Rate limited per code: a client can make every one of its frames fail.
                self._ratelog.log(logging.INFO, f"frame {exc.code}", "frame %d from %s: %s: %s", frame_id, job.client,
                                  exc.code, exc.message)
                packet = error_packet(exc.code, exc.message, frame_id)
                if self.monitor is not None:
                    self.monitor.error(job.client, exc.code, exc.message, frame_id)
            except Exception as exc:  # a bug must not kill the worker: report it and go on
                self.stats.count_error()
                self._ratelog.log(logging.ERROR, "frame internal", "frame %d from %s failed", job.frame_id, job.client,
                                  exc_info=exc)
                packet = error_packet("internal", f"{type(exc).__name__}: {exc}", job.frame_id)
            finally:
                with self._busy_lock:
                    self._busy.pop(wid, None)
            retired = generation != self._generation
            if retired and job.abandoned:
                return  # the stuck frame: the watchdog had it answered on a new worker
            # (A frame that was merely running beside the stuck one, with several workers, is
            # answered and its client released as usual; then this retired worker stops.)
            packets = [packet]
            if job.safe is not None and job.safe.reason is not None:
                self.stats.count_safe()
                packets.insert(0, encode_message(protocol.FRAME_SAFE, job.frame_id, job.safe.policy,
                                                 job.safe.reason))
            try:
                for pkt in packets:
                    if job.reply_direct is None or not job.reply_direct(pkt):
                        loop.call_soon_threadsafe(job.reply, pkt)
            except RuntimeError:  # loop closed during shutdown
                return
            finally:
                # Only now may this client's next frame go (or, pipelined, publish): its reply is
                # sent (or queued on the loop, in order), so replies never overtake each other.
                if self._order is not None:
                    self._order.answered(job.client, job)
                self._mailboxes.release(job.client, job.advanced)
            if retired:
                return


def _join_all(threads: list[threading.Thread], timeout_s: float) -> None:
    """Join ``threads`` within one shared ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))


def model_list_packet(catalog: stages.Catalog | None = None, active: str | None = None) -> bytes:
    """``/models/list``: the models that can run now (weights present, pose source usable), with the
    active one included, so a client cycling through the list always comes back to it."""
    return encode_message(protocol.MODELS_LIST, *(catalog or stages.Catalog()).runnable(active))


__all__ = ["Pipeline", "ModelLoadError", "model_list_packet"]
