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
  keeps one worker thread; an engine with ``max_in_flight > 1`` (Ray) gets that many workers
  over exclusive mailboxes, so each client still has at most one frame in flight.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from typing import Hashable

from .config import EngineConfig, PipelineConfig
from .errors import ClientError, ModelLoadError
from .jobs import FrameJob, error_packet
from .latest import LatestMailboxes, MailboxClosed
from .osc import encode_message
from . import protocol, stages
from .engines import Engine, create_engine
from .monitor import FrameTap
from .stats import PipelineStats

log = logging.getLogger(__name__)

WORKER_JOIN_TIMEOUT_S = 1.0  # a stage stuck longer than this is abandoned at shutdown (daemon thread)


class Pipeline:
    """Owns the mailboxes, the worker thread, the active stage and the statistics."""

    def __init__(self, model: str, config: PipelineConfig | None = None, engine: EngineConfig | None = None) -> None:
        self.stats = PipelineStats()
        self._initial_model = model
        self.catalog = stages.Catalog(config)
        self.engine: Engine = create_engine(self.catalog, engine)
        self._workers_n = max(1, int(self.engine.max_in_flight))
        self._mailboxes: LatestMailboxes[FrameJob] = LatestMailboxes(exclusive=self._workers_n > 1)
        self._stage: stages.Stage | None = None
        self._workers: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self.monitor: FrameTap | None = None  # the monitor page's tap (bridge/monitor.py), when set

    @property
    def model_name(self) -> str:
        return self._stage.name if self._stage is not None else ""

    async def async_start(self) -> None:
        """Load the initial model (raises ModelLoadError) and start the worker thread(s)."""
        self._loop = asyncio.get_running_loop()
        self._stage = await self.engine.async_start(self._initial_model)
        for i in range(self._workers_n):
            name = "p2p-worker" if self._workers_n == 1 else f"p2p-worker-{i}"
            worker = threading.Thread(target=self._work, name=name, daemon=True)
            worker.start()
            self._workers.append(worker)
        log.info("pipeline ready: model %s (engine %s)", self.model_name, self.engine.kind)

    async def async_stop(self) -> None:
        """Stop taking frames; wait (bounded) for the frame in progress."""
        left = self._mailboxes.close()
        if left:
            log.info("shutdown: %d pending frame(s) discarded", len(left))
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
        """Drop a departed client's pending frame."""
        if self._mailboxes.discard(client) is not None:
            self.stats.count_dropped()

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
        self._stage = stage  # an atomic reference swap: the worker reads it once per frame
        log.info("model switched to %s (resident: %s)", stage.name, ", ".join(self.resident_models()))
        return stage.name

    # -- worker thread ------------------------------------------------------------------
    def _work(self) -> None:
        assert self._loop is not None
        loop = self._loop
        while True:
            try:
                job = self._mailboxes.take()
            except MailboxClosed:
                return
            if job is None:
                continue
            stage = self._stage
            assert stage is not None
            self.stats.frame_started(job.received_ns)  # stage timings of this frame (bridge/metrics.py)
            try:
                packet = job.run(stage)
                self.stats.count_processed(job.latency_ms)
                if self.monitor is not None:
                    self.monitor.offer(job, stage)
            except ClientError as exc:
                self.stats.count_error()
                # An engine's stage knows no frame ids (e.g. replica_lost): the error is this job's.
                frame_id = job.frame_id if exc.frame_id == protocol.NO_FRAME_ID else exc.frame_id
                log.info("frame %d from %s: %s: %s", frame_id, job.client, exc.code, exc.message)
                packet = error_packet(exc.code, exc.message, frame_id)
                if self.monitor is not None:
                    self.monitor.error(job.client, exc.code, exc.message, frame_id)
            except Exception as exc:  # a bug must not kill the worker: report it and go on
                self.stats.count_error()
                log.exception("frame %d from %s failed", job.frame_id, job.client)
                packet = error_packet("internal", f"{type(exc).__name__}: {exc}", job.frame_id)
            try:
                if job.reply_direct is None or not job.reply_direct(packet):
                    loop.call_soon_threadsafe(job.reply, packet)
            except RuntimeError:  # loop closed during shutdown
                return
            finally:
                # Only now may this client's next frame go: its reply is sent (or queued on the
                # loop, in order), so replies never overtake each other.
                self._mailboxes.release(job.client)


def _join_all(threads: list[threading.Thread], timeout_s: float) -> None:
    """Join ``threads`` within one shared ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    for t in threads:
        t.join(max(0.0, deadline - time.monotonic()))


def model_list_packet(catalog: stages.Catalog | None = None) -> bytes:
    return encode_message(protocol.MODELS_LIST, *(catalog.available() if catalog else stages.available()))


__all__ = ["Pipeline", "ModelLoadError", "model_list_packet"]
