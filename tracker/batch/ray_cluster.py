"""Running a batch's clips as Ray tasks, on a local cluster or an existing one.

Each clip is one task with a CPU/GPU request; the task runs the same `process_clip` as
the process pool, so outputs, statuses and resume behave the same. Tasks write their
outputs themselves: on a multi-node cluster the inputs and the output folder must be on
storage every node mounts at the same path (docs/batch.md); the driver checks that each
reported output is visible to it and fails the clip otherwise.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from facetrack.tracker.batch.worker import ClipJob, ClipOutcome, failed_outcome, process_clip
from facetrack.tracker.core.errors import FacetrackError

if TYPE_CHECKING:
    from facetrack.tracker.pipeline import Tracker

LOCAL = "auto"
"""`--ray` without an address, or `--ray auto`: start a private local cluster for this run."""
TASK_RETRIES = 1
"""Ray reruns a task once when its worker process dies (OOM kill, node lost)."""
WAIT_SECONDS = 0.5

_task_tracker: Tracker | None = None


class RayUnavailableError(FacetrackError):
    """`--ray` was asked for but Ray is not installed."""


def import_ray() -> ModuleType:
    """Ray, or an error that says how to install it (it is an optional extra)."""
    try:
        import ray
    except ImportError as exc:
        raise RayUnavailableError(
            f'--ray needs Ray, which is not installed ({exc}); install it with: pip install "facetrack[ray]"'
        ) from None
    return ray


@contextmanager
def ray_cluster(address: str, num_cpus: int) -> Iterator[ModuleType]:
    """Connected to `address`, or to a fresh local cluster bound to 127.0.0.1 for `auto`.

    The local cluster has `num_cpus` CPUs, no dashboard and no usage reporting, and is shut
    down on exit; an existing cluster is only disconnected from.
    """
    if address == LOCAL:
        # Read by Ray at import: keep every local-cluster socket on the loopback interface.
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    ray = import_ray()
    if address == LOCAL:
        ray.init(
            num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
            configure_logging=False, log_to_driver=False,
        )  # fmt: skip
    else:
        ray.init(address=address, configure_logging=False, log_to_driver=False)
    try:
        yield ray
    finally:
        ray.shutdown()


def _ray_task(job: ClipJob) -> ClipOutcome:
    """One clip in a Ray worker; the worker process keeps its Tracker for later clips."""
    global _task_tracker
    from facetrack.tracker.pipeline import Tracker

    if _task_tracker is None:
        _task_tracker = Tracker(job.tracker)
    return process_clip(job, _task_tracker)


def run_on_ray(
    ray: ModuleType,
    jobs: list[ClipJob],
    cpus_per_clip: float,
    gpus_per_clip: float,
    on_start: Callable[[ClipJob], None],
    on_done: Callable[[ClipOutcome], None],
) -> None:
    """Submit the clips as tasks, at most about two per free slot at a time, and report each result.

    Bounded submission keeps `running` in the manifest meaningful and lets Ctrl-C stop a
    run without thousands of queued tasks.
    """
    remote = ray.remote(_ray_task).options(
        num_cpus=cpus_per_clip, num_gpus=gpus_per_clip, max_retries=TASK_RETRIES, retry_exceptions=False
    )
    resources = ray.cluster_resources()
    slots = int(resources.get("CPU", 1.0) / cpus_per_clip)
    if gpus_per_clip > 0:
        slots = min(slots, int(resources.get("GPU", 0.0) / gpus_per_clip))
    if slots < 1:
        raise FacetrackError(
            f"the Ray cluster has {resources.get('CPU', 0)} CPUs and {resources.get('GPU', 0)} GPUs: no room for a "
            f"task asking for {cpus_per_clip} CPUs and {gpus_per_clip} GPUs (see --cpus-per-clip/--gpus-per-clip)"
        )
    queue = list(reversed(jobs))
    running: dict[object, ClipJob] = {}
    try:
        while queue or running:
            while queue and len(running) < 2 * slots:
                job = queue.pop()
                running[remote.remote(job)] = job
                on_start(job)
            done, _ = ray.wait(list(running), num_returns=1, timeout=WAIT_SECONDS)
            for ref in done:
                job = running.pop(ref)
                try:
                    outcome = ray.get(ref)
                except ray.exceptions.RayError as exc:
                    outcome = failed_outcome(job.name, f"Ray task failed: {type(exc).__name__}: {exc}")
                else:
                    if outcome.output is not None and not (Path(job.out_dir) / outcome.output).is_file():
                        outcome = failed_outcome(
                            job.name, f"{outcome.worker} wrote {outcome.output}, but it is not in {job.out_dir} here: "
                            "the output folder must be on storage shared by every node, at the same path",
                        )  # fmt: skip
                on_done(outcome)
    finally:
        for ref in running:
            ray.cancel(ref, force=True)
