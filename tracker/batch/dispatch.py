"""Running the jobs: a `spawn` process pool rebuilt when a worker dies, or a Ray cluster."""

from __future__ import annotations

import multiprocessing
import os
import signal
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import suppress
from types import ModuleType
from typing import TYPE_CHECKING

from facetrack.tracker.batch.worker import (
    ClipJob,
    ClipOutcome,
    failed_outcome,
    init_pool_worker,
    pool_task,
)
from facetrack.tracker.core.errors import FacetrackError

if TYPE_CHECKING:
    from facetrack.tracker.batch.run import BatchConfig, BatchRun

MAX_WORKER_CRASHES = 2
"""A clip whose worker process died this many times (OOM kill, native crash) is failed, not retried."""
MAX_BARREN_POOLS = 3
"""Pools in a row whose workers die before any clip starts: the installation is broken, stop."""
POLL_SECONDS = 0.2
WORKER_LOG = "workers.log"
"""Where worker processes' stderr goes, in the output folder (appended across runs)."""


def dispatch_ray(ray: ModuleType, config: BatchConfig, jobs: list[ClipJob], run: BatchRun) -> None:
    """The clips as tasks on the cluster `ray` is connected to (batch/cluster.py's `ray_session`)."""
    from facetrack.tracker.batch.ray_cluster import RayCallbacks, TaskShape, run_on_ray

    memory = round(config.memory_per_clip * 2**30) if config.memory_per_clip else None
    shape = TaskShape(config.cpus_per_clip, config.gpus_per_clip, memory, config.clip_timeout)
    callbacks = RayCallbacks(
        started=lambda name, worker: run.started(name, worker, lane=name),
        frames=lambda name, frames, expected: run.progress.clip_frames(name, frames, expected),
        done=run.finished, overall=run.progress.overall,
    )  # fmt: skip
    run_on_ray(ray, jobs, shape, callbacks)


class _PoolRound:
    """One process pool over the clips still to do, until they are done or a worker dies."""

    def __init__(self, config: BatchConfig, remaining: dict[str, ClipJob], run: BatchRun) -> None:
        self._remaining = remaining
        self._run = run
        self._context = multiprocessing.get_context("spawn")
        self._events = self._context.SimpleQueue()
        self._pids: set[int] = set()
        self.in_progress: set[str] = set()
        self.finished = 0
        self._executor = ProcessPoolExecutor(
            max_workers=min(config.workers, len(remaining)), mp_context=self._context,
            initializer=init_pool_worker,
            initargs=(config.tracker_config(), self._events, str(run.out_dir / WORKER_LOG)),
        )  # fmt: skip

    def _drain(self) -> None:
        while not self._events.empty():
            kind, worker, pid, name, frames, expected = self._events.get()
            if kind == "hello":
                self._pids.add(pid)
            elif name in self._remaining and kind == "start":
                self.in_progress.add(name)
                self._run.started(name, worker, lane=worker)
            elif name in self._remaining:
                self._run.progress.clip_frames(worker, frames, expected)

    def _finish(self, job: ClipJob, outcome: ClipOutcome) -> None:
        self._remaining.pop(job.name, None)
        self.in_progress.discard(job.name)
        self.finished += 1
        self._run.finished(outcome)

    def run(self) -> bool:
        """Track until every clip is reported; False when the pool broke (a worker died) first."""
        futures = {self._executor.submit(pool_task, job): job for job in self._remaining.values()}
        broken = False
        try:
            while futures and not broken:
                done, _ = wait(futures, timeout=POLL_SECONDS, return_when=FIRST_COMPLETED)
                self._drain()
                for future in done:
                    job = futures.pop(future)
                    try:
                        self._finish(job, future.result())
                    except BrokenProcessPool:
                        broken = True
                    except Exception as exc:  # the task failed outside process_clip (e.g. pickling)
                        self._finish(job, failed_outcome(job.name, f"{type(exc).__name__}: {exc}"))
        except BaseException:
            for pid in self._pids:  # Ctrl-C / SIGTERM: stop now, unfinished files stay in .work/
                with suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGTERM)
            self._executor.shutdown(wait=True, cancel_futures=True)
            raise
        self._executor.shutdown(wait=True, cancel_futures=True)
        self._drain()
        for future, job in futures.items():  # finished between the break and the shutdown
            if future.done() and not future.cancelled() and future.exception() is None:
                self._finish(job, future.result())
        return not broken


def dispatch_pool(config: BatchConfig, jobs: list[ClipJob], run: BatchRun) -> None:
    """The clips on a `spawn` process pool; a pool broken by a dying worker is rebuilt.

    The clips in progress when a worker died count one crash each (MAX_WORKER_CRASHES and
    a clip is failed); the others are simply resubmitted. Ctrl-C / SIGTERM kill the
    workers; their unfinished files are in .work/ and discarded.
    """
    remaining = {job.name: job for job in jobs}
    crashes: dict[str, int] = {}
    barren = 0  # pools in a row that broke before finishing or starting any clip
    while remaining:
        pool = _PoolRound(config, remaining, run)
        if pool.run():
            continue
        suspects = pool.in_progress & remaining.keys()
        barren = 0 if suspects or pool.finished else barren + 1
        if barren >= MAX_BARREN_POOLS:
            raise FacetrackError(
                "the worker processes die before they start any clip; run `facetrack run` on one clip to see why "
                f"(and see {run.out_dir / WORKER_LOG})"
            )
        for name in suspects:
            crashes[name] = crashes.get(name, 0) + 1
            run.manifest.clips[name].status = "pending"
            if crashes[name] >= MAX_WORKER_CRASHES:
                error = (
                    f"the worker process died {crashes[name]} times while tracking this clip (killed, out of "
                    "memory, or a crash in native code)"
                )
                run.finished(failed_outcome(name, error))
                del remaining[name]
