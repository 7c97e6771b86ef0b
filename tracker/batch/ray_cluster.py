"""Running a batch's clips as Ray tasks, on a cluster `cluster.py` connected to.

Each clip is one task with a CPU/GPU/memory request; the task runs the same
`process_clip` as the process pool, so outputs, statuses and resume behave the same.
Tasks report their start and frame counts to a small progress actor, so the driver
knows when each run of a clip really starts (Ray's own retry after a worker died is
a second run), can stop a clip that overruns `--clip-timeout`, and shows progress
over all clips. Tasks write their outputs themselves: on a multi-node cluster the
output folder must be storage every node sees at the same path (docs/batch.md); the
driver checks that each reported output is visible to it and fails the clip otherwise.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING, Any

from facetrack.tracker.batch.worker import ClipJob, ClipOutcome, failed_outcome, process_clip, worker_id
from facetrack.tracker.core.errors import FacetrackError

if TYPE_CHECKING:
    from facetrack.tracker.pipeline import Tracker

TASK_RETRIES = 1
"""Ray reruns a task once when its worker process dies (OOM kill, node lost); each run is counted."""
WAIT_SECONDS = 0.5
RESOURCES_SECONDS = 2.0
"""How often the cluster's resources are re-read (nodes join and leave)."""
OVERALL_SECONDS = 10.0
"""How often the driver reports frames done, rate and ETA over all clips."""
CANCEL_SECONDS = 10.0
"""How long the driver waits for force-cancelled tasks' workers to be gone."""

_task_tracker: Tracker | None = None


@dataclass(frozen=True)
class TaskShape:
    """What each clip's task asks the cluster for, and how long it may run."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_bytes: int | None = None
    clip_timeout: float | None = None


@dataclass
class RayCallbacks:
    """The driver's bookkeeping: a run of a clip started, frames advanced, a clip ended, the overall pace."""

    started: Callable[[str, str], None]
    frames: Callable[[str, int, int | None], None]
    done: Callable[[ClipOutcome], None]
    overall: Callable[[int, float, float | None], None]


class ProgressBoard:
    """A zero-CPU actor that collects the tasks' events until the driver drains them."""

    def __init__(self) -> None:
        self._events: list[tuple[str, str, str, int, int | None]] = []

    def report(self, event: str, worker: str, name: str, frames: int, expected: int | None) -> None:
        self._events.append((event, worker, name, frames, expected))

    def drain(self) -> list[tuple[str, str, str, int, int | None]]:
        events, self._events = self._events, []
        return events


def _ray_task(job: ClipJob, board: Any) -> ClipOutcome:
    """One clip in a Ray worker; the worker process keeps its Tracker for later clips."""
    global _task_tracker
    from facetrack.tracker.pipeline import Tracker

    if _task_tracker is None:
        _task_tracker = Tracker(job.tracker)

    def report(event: str, name: str, frames: int, expected: int | None) -> None:
        board.report.remote(event, worker_id(), name, frames, expected)

    return process_clip(job, _task_tracker, report)


def cluster_slots(resources: dict[str, float], shape: TaskShape) -> int:
    """How many clips fit on the cluster's resources at once."""
    slots = int(resources.get("CPU", 0.0) / shape.cpus)
    if shape.gpus > 0:
        slots = min(slots, int(resources.get("GPU", 0.0) / shape.gpus))
    if shape.memory_bytes:
        slots = min(slots, int(resources.get("memory", 0.0) / shape.memory_bytes))
    return slots


class _Dispatch:
    """The driver loop's state: what runs, since when, and the frame counts for the overall line."""

    def __init__(self, ray: ModuleType, jobs: list[ClipJob], shape: TaskShape, callbacks: RayCallbacks) -> None:
        self.ray, self.shape, self.callbacks = ray, shape, callbacks
        self.queue = list(reversed(jobs))
        self.running: dict[Any, ClipJob] = {}
        self.started: dict[str, float] = {}
        self.frames: dict[str, int] = {}
        self.expected: dict[str, int] = {}
        self.total = len(jobs)
        self.finished = 0
        self.t0 = time.monotonic()

    def events(self, events: list[tuple[str, str, str, int, int | None]]) -> None:
        live = {job.name for job in self.running.values()}
        for event, worker, name, frames, expected in events:
            if name not in live:
                continue
            if event == "start":
                self.started[name] = time.monotonic()
                self.frames[name] = 0
                self.callbacks.started(name, worker)
            else:
                self.frames[name] = frames
                if expected is not None:
                    self.expected[name] = expected
                self.callbacks.frames(name, frames, expected)

    def finish(self, ref: Any, outcome: ClipOutcome) -> None:
        job = self.running.pop(ref)
        if self.started.pop(job.name, None) is None and outcome.worker is not None:
            self.callbacks.started(job.name, outcome.worker)  # its start event had not arrived yet
        self.frames[job.name] = outcome.frames
        self.expected[job.name] = outcome.frames
        self.finished += 1
        self.callbacks.done(outcome)

    def overall(self) -> None:
        done = sum(self.frames.values())
        seconds = time.monotonic() - self.t0
        rate = done / seconds if seconds > 0 else 0.0
        eta = None
        if rate > 0 and self.expected:
            per_clip = sum(self.expected.values()) / len(self.expected)
            unseen = self.total - len(self.expected)
            remaining = sum(self.expected.values()) + unseen * per_clip - done
            eta = max(remaining, 0.0) / rate
        self.callbacks.overall(done, rate, eta)


def run_on_ray(ray: ModuleType, jobs: list[ClipJob], shape: TaskShape, callbacks: RayCallbacks) -> None:
    """Submit the clips as tasks, as many as fit the cluster now plus one waiting, and report each result.

    Slots are re-read from the cluster's resources as it runs, so nodes that join get
    work (and the waiting task is the demand an autoscaler sees). Ctrl-C / SIGTERM
    force-cancel the running tasks and wait until their workers are gone.
    """
    board = ray.remote(num_cpus=0)(ProgressBoard).remote()
    remote = ray.remote(_ray_task).options(
        num_cpus=shape.cpus, num_gpus=shape.gpus, memory=shape.memory_bytes, max_retries=TASK_RETRIES,
        retry_exceptions=False,
    )  # fmt: skip
    slots = cluster_slots(ray.cluster_resources(), shape)
    if slots < 1:
        resources = ray.cluster_resources()
        raise FacetrackError(
            f"the Ray cluster has {resources.get('CPU', 0)} CPUs, {resources.get('GPU', 0)} GPUs and "
            f"{resources.get('memory', 0) / 2**30:.1f} GiB of task memory: no room for a clip asking for {shape.cpus} "
            f"CPUs, {shape.gpus} GPUs and {(shape.memory_bytes or 0) / 2**30:.1f} GiB (see --cpus-per-clip, "
            "--gpus-per-clip, --memory-per-clip)"
        )
    state = _Dispatch(ray, jobs, shape, callbacks)
    checked = reported = time.monotonic()
    try:
        while state.queue or state.running:
            if time.monotonic() - checked > RESOURCES_SECONDS:
                slots, checked = max(1, cluster_slots(ray.cluster_resources(), shape)), time.monotonic()
            while state.queue and len(state.running) < slots + 1:
                job = state.queue.pop()
                state.running[remote.remote(job, board)] = job
            done, _ = ray.wait(list(state.running), num_returns=1, timeout=WAIT_SECONDS)
            state.events(ray.get(board.drain.remote()))
            for ref in done:
                state.finish(ref, _outcome(ray, ref, state.running[ref]))
            _stop_overruns(ray, state)
            if time.monotonic() - reported > OVERALL_SECONDS:
                state.overall()
                reported = time.monotonic()
        state.overall()
    finally:
        _cancel_all(ray, list(state.running))


def _outcome(ray: ModuleType, ref: Any, job: ClipJob) -> ClipOutcome:
    try:
        outcome = ray.get(ref)
    except ray.exceptions.RayError as exc:
        return failed_outcome(job.name, f"Ray task failed: {type(exc).__name__}: {exc}")
    if outcome.output is not None and not _visible(job.out_dir, outcome.output):
        return failed_outcome(
            job.name, f"{outcome.worker} wrote {outcome.output}, but it is not in {job.out_dir} here: the output "
            "folder must be on storage shared by every node, at the same path",
        )  # fmt: skip
    return outcome


def _visible(out_dir: str, name: str) -> bool:
    """Whether the driver sees the output a task reports (on a URL, or on shared storage)."""
    from facetrack.tracker.batch.storage import exists, is_remote

    return exists(out_dir, name) if is_remote(out_dir) else (Path(out_dir) / name).is_file()


def _stop_overruns(ray: ModuleType, state: _Dispatch) -> None:
    """Force-cancel the clips running longer than --clip-timeout; each is failed with that reason."""
    limit = state.shape.clip_timeout
    if limit is None:
        return
    now = time.monotonic()
    for ref, job in list(state.running.items()):
        started = state.started.get(job.name)
        if started is not None and now - started > limit:
            _cancel_all(ray, [ref])
            state.finish(ref, failed_outcome(job.name, f"stopped after --clip-timeout {limit:g} s"))


def _cancel_all(ray: ModuleType, refs: list[Any]) -> None:
    """Force-cancel tasks (their worker processes are killed) and wait until they are gone."""
    for ref in refs:
        try:
            ray.cancel(ref, force=True)
        except Exception:  # noqa: BLE001 - already finished, or the connection is gone: nothing left to stop
            continue
    if refs:
        ray.wait(refs, num_returns=len(refs), timeout=CANCEL_SECONDS)
