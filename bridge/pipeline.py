"""The pipeline: latest-frame-wins mailboxes feeding one worker thread that owns the model.

Thread contract:

* ``async_*`` methods and :meth:`submit` run on the event-loop thread.
* The worker thread is the only one that calls ``stage.process``; GPU work lives there.
* Results go back to the loop with ``call_soon_threadsafe``, except UDP replies, which the
  worker sends itself with one non-blocking ``sendto`` on the server socket (thread-safe at
  the OS level); if that would block, the loop sends them.
* Model loading runs on a separate loader thread, so a slow load never stalls frames;
  the worker picks up the new stage at the next frame boundary.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections import OrderedDict
from typing import Hashable

from .config import PipelineConfig
from .errors import ClientError, ModelLoadError
from .jobs import FrameJob, error_packet
from .latest import LatestMailboxes, MailboxClosed
from .osc import encode_message
from . import protocol, stages
from .monitor import FrameTap
from .stats import PipelineStats

log = logging.getLogger(__name__)

WORKER_JOIN_TIMEOUT_S = 1.0  # a stage stuck longer than this is abandoned at shutdown (daemon thread)


class Pipeline:
    """Owns the mailboxes, the worker thread, the active stage and the statistics."""

    def __init__(self, model: str, config: PipelineConfig | None = None) -> None:
        self.stats = PipelineStats()
        self._mailboxes: LatestMailboxes[FrameJob] = LatestMailboxes()
        self._initial_model = model
        self.catalog = stages.Catalog(config)
        self._stage: stages.Stage | None = None
        # Recently used models stay loaded (an artist flips between colour styles) within a
        # byte budget of weights; the active one is never evicted. Loop thread only.
        self._resident: OrderedDict[str, stages.Stage] = OrderedDict()
        self._budget_bytes = (config or PipelineConfig()).memory_budget_mb * 1024 * 1024
        self._loader = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="p2p-loader")
        self._worker: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.monitor: FrameTap | None = None  # the monitor page's tap (bridge/monitor.py), when set

    @property
    def model_name(self) -> str:
        return self._stage.name if self._stage is not None else ""

    async def async_start(self) -> None:
        """Load the initial model (raises ModelLoadError) and start the worker thread."""
        self._loop = asyncio.get_running_loop()
        self._stage = await self._loop.run_in_executor(self._loader, self.catalog.load, self._initial_model)
        self._resident[self._initial_model] = self._stage
        self._worker = threading.Thread(target=self._work, name="p2p-worker", daemon=True)
        self._worker.start()
        log.info("pipeline ready: model %s", self.model_name)

    async def async_stop(self) -> None:
        """Stop taking frames; wait (bounded) for the frame in progress."""
        left = self._mailboxes.close()
        if left:
            log.info("shutdown: %d pending frame(s) discarded", len(left))
        if self._worker is not None:
            await asyncio.to_thread(self._worker.join, WORKER_JOIN_TIMEOUT_S)
            if self._worker.is_alive():
                log.warning("model worker still busy after %.1f s; abandoning it", WORKER_JOIN_TIMEOUT_S)
        self._loader.shutdown(wait=False, cancel_futures=True)

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

    def forget_client(self, client: Hashable) -> None:
        """Drop a departed client's pending frame."""
        if self._mailboxes.discard(client) is not None:
            self.stats.count_dropped()

    @property
    def stage(self) -> stages.Stage | None:
        """The active stage (the worker reads it once per frame)."""
        return self._stage

    def resident_models(self) -> list[str]:
        return list(self._resident)

    async def async_switch_model(self, spec: str) -> str:
        """Make ``spec`` the active stage; returns its name.

        A resident model switches at once; otherwise it loads (and warms up) on the loader
        thread while the old model keeps serving, and the switch happens at the next frame
        boundary: no frame is dropped or blank during a swap.
        """
        self.catalog.validate(spec)
        assert self._loop is not None
        stage = self._resident.get(spec)
        if stage is None:
            stage = await self._loop.run_in_executor(self._loader, self.catalog.load, spec)
        self._resident[spec] = stage
        self._resident.move_to_end(spec)
        self._stage = stage  # an atomic reference swap: the worker reads it once per frame
        self._evict()
        log.info("model switched to %s (resident: %s)", stage.name, ", ".join(self._resident))
        return stage.name

    def _evict(self) -> None:
        """Unload least recently used models until the resident weights fit the budget."""
        def total() -> int:
            return sum(int(getattr(st, "nbytes", 0)) for st in self._resident.values())

        while total() > self._budget_bytes and len(self._resident) > 1:
            name = next(iter(self._resident))
            if self._resident[name] is self._stage:
                self._resident.move_to_end(name)
                continue
            del self._resident[name]
            log.info("model %s unloaded (memory budget %d MiB)", name, self._budget_bytes >> 20)

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
            try:
                packet = job.run(stage)
                self.stats.count_processed(job.latency_ms)
                if self.monitor is not None:
                    self.monitor.offer(job, stage)
            except ClientError as exc:
                self.stats.count_error()
                log.info("frame %d from %s: %s: %s", exc.frame_id, job.client, exc.code, exc.message)
                packet = error_packet(exc.code, exc.message, exc.frame_id)
                if self.monitor is not None:
                    self.monitor.error(job.client, exc.code, exc.message, exc.frame_id)
            except Exception as exc:  # a bug must not kill the worker: report it and go on
                self.stats.count_error()
                log.exception("frame %d from %s failed", job.frame_id, job.client)
                packet = error_packet("internal", f"{type(exc).__name__}: {exc}", job.frame_id)
            if job.reply_direct is not None and job.reply_direct(packet):
                continue
            try:
                loop.call_soon_threadsafe(job.reply, packet)
            except RuntimeError:  # loop closed during shutdown
                return


def model_list_packet(catalog: stages.Catalog | None = None) -> bytes:
    return encode_message(protocol.MODELS_LIST, *(catalog.available() if catalog else stages.available()))


__all__ = ["Pipeline", "ModelLoadError", "model_list_packet"]
