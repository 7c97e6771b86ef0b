"""Tracking one clip of a batch into its result file, in whatever process runs it.

Shared by the process pool and Ray: `process_clip` is the only code that writes an
output. The sink writes into the run's `.work/` folder under a name unique to this
process (`<stem>.<host>-<pid><ext>`, `.partial` while open), and the finished file is
renamed onto `<stem><ext>` in one step, so an output is always a whole run of the clip,
never a mix of two attempts, even when a killed run's orphan and its resume overlap.
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from multiprocessing.queues import SimpleQueue
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from pydantic import BaseModel, Field

from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.errors import SinkError, SourceDecodeError, SourceOpenError
from facetrack.tracker.core.schema import FrameResult
from facetrack.tracker.core.sinks import PARTIAL_SUFFIX, SinkOpener

if TYPE_CHECKING:  # the parent process never needs mediapipe
    from facetrack.tracker.pipeline import Tracker

WORK_DIR = ".work"
"""Temporary outputs of clips in progress, inside the output folder (emptied at each start)."""
PROGRESS_INTERVAL = 0.5
"""Seconds between a worker's frame-count reports."""

Progress = Callable[[Literal["start", "frames"], str, int, int | None], None]
"""(event, clip name, frames so far, expected frames or None)."""


class ClipJob(BaseModel):
    """What a worker needs to track one clip (picklable, also across Ray nodes)."""

    name: str
    input: str
    extension: str
    out_dir: str
    tracker: TrackerConfig
    open_sink: SinkOpener = Field(description="Opens the clip's results file (a module-level function: it is pickled).")


class ClipOutcome(BaseModel):
    """What a worker reports back; the parent folds it into the clip's ClipRecord."""

    name: str
    status: Literal["ok", "partial", "failed"]
    output: str | None
    frames: int
    frames_with_face: int
    tracks: int
    blinks_per_minute: float | None
    fps: float | None
    seconds: float
    error: str | None
    worker: str | None = Field(default=None, description="host:pid; None when the parent reports the failure.")
    started_at: float | None = None
    ended_at: float | None = None


def failed_outcome(name: str, error: str) -> ClipOutcome:
    """A failure the batch process itself reports (worker died, task could not run)."""
    return ClipOutcome(
        name=name, status="failed", output=None, frames=0, frames_with_face=0, tracks=0, blinks_per_minute=None,
        fps=None, seconds=0.0, error=error,
    )  # fmt: skip


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class ClipStats:
    """Per-clip figures gathered while writing: frames, faces, distinct tracks, blinks."""

    frames: int = 0
    frames_with_face: int = 0
    track_ids: set[int] = field(default_factory=set)
    blinks: int = 0
    eye_frames: int = 0

    def add(self, result: FrameResult) -> None:
        self.frames += 1
        self.frames_with_face += bool(result.faces)
        for face in result.faces:
            self.track_ids.add(face.track_id)
            eyes = face.eyes
            if eyes is not None and (eyes.left.p_closed is not None or eyes.right.p_closed is not None):
                self.eye_frames += 1
        self.blinks += sum(event.kind == "blink" for event in result.eye_events or ())

    def blinks_per_minute(self, frame_seconds: float | None) -> float | None:
        """The pipeline's blink events per minute of face time with eye state; None without eye state."""
        if not self.eye_frames or not frame_seconds:
            return None
        return round(self.blinks / (self.eye_frames * frame_seconds / 60.0), 2)


def process_clip(job: ClipJob, tracker: Tracker, progress: Progress | None = None) -> ClipOutcome:
    """Track `job.input` with `tracker` (a Tracker, reused across clips) into `<out_dir>/<name><ext>`.

    Never raises for a bad clip: open failures, decode errors and sink errors become the
    outcome's status and error text; only KeyboardInterrupt/SystemExit propagate. An
    output URL goes through `batch/storage.py` (written locally, then committed).
    """
    if "://" in job.input:
        from facetrack.tracker.batch.storage import StorageError, local_copy

        try:
            with local_copy(job.input) as path:
                return process_clip(job.model_copy(update={"input": str(path)}), tracker, progress)
        except (OSError, StorageError) as exc:
            return failed_outcome(job.name, f"cannot read {job.input}: {type(exc).__name__}: {exc}")
    if "://" in job.out_dir:
        from facetrack.tracker.batch.storage import is_remote, process_remote

        if is_remote(job.out_dir):
            return process_remote(job, lambda local: _process_local(local, tracker, progress))
    return _process_local(job, tracker, progress)


def _process_local(job: ClipJob, tracker: Tracker, progress: Progress | None) -> ClipOutcome:
    out_dir = Path(job.out_dir)
    final = out_dir / f"{job.name}{job.extension}"
    temporary = out_dir / WORK_DIR / f"{job.name}.{worker_id().replace(':', '-')}{job.extension}"
    started_at, t0 = time.time(), time.perf_counter()
    if progress is not None:  # before anything can crash, so a dying worker's clip is known
        progress("start", job.name, 0, None)
    stats = ClipStats()
    error: str | None = None
    sink_failed = False
    frame_seconds: float | None = None

    def outcome(status: Literal["ok", "partial", "failed"], output: str | None) -> ClipOutcome:
        seconds = time.perf_counter() - t0
        return ClipOutcome(
            name=job.name, status=status, output=output, frames=stats.frames,
            frames_with_face=stats.frames_with_face, tracks=len(stats.track_ids),
            blinks_per_minute=stats.blinks_per_minute(frame_seconds),
            fps=round(stats.frames / seconds, 2) if stats.frames and seconds > 0 else None, seconds=round(seconds, 3),
            error=error, worker=worker_id(), started_at=started_at, ended_at=time.time(),
        )  # fmt: skip

    tracker.config = job.tracker  # this clip's stream_id and limits, on the worker's long-lived Tracker
    try:
        results = tracker.track(job.input)
    except SourceOpenError as exc:
        error = str(exc)
    except Exception as exc:  # e.g. an unreadable file: a bad clip must not end the batch
        error = f"{type(exc).__name__}: {exc}"
    if error is not None or tracker.metadata is None:
        final.unlink(missing_ok=True)
        return outcome("failed", None)
    info = tracker.metadata.source
    frame_seconds = 1.0 / info.fps if info.fps else None
    expected = info.frames or (round(info.duration * info.fps) if info.duration and info.fps else None)
    if expected is not None and job.tracker.max_frames is not None:
        expected = min(expected, job.tracker.max_frames)
    if progress is not None:
        progress("frames", job.name, 0, expected)
    try:
        sink = job.open_sink(temporary)
    except SinkError as exc:
        results.close()
        error = str(exc)
        return outcome("failed", None)
    try:
        sink.start(tracker.metadata)
        last_report = time.monotonic()
        for result in results:
            sink.write(result)
            stats.add(result)
            if progress is not None and time.monotonic() - last_report >= PROGRESS_INTERVAL:
                progress("frames", job.name, stats.frames, expected)
                last_report = time.monotonic()
    except SinkError as exc:
        sink_failed, error = True, str(exc)
    except SourceDecodeError as exc:
        error = str(exc)
    except Exception as exc:  # a bad clip must not end the batch; its frames so far are kept
        error = f"{type(exc).__name__}: {exc}"
    except BaseException:
        results.close()
        sink.close()
        temporary.unlink(missing_ok=True)
        raise
    finally:
        results.close()
    try:
        sink.close()
    except SinkError as exc:
        sink_failed, error = True, str(exc)
    if sink_failed or stats.frames == 0:
        temporary.unlink(missing_ok=True)
        temporary.with_name(temporary.name + PARTIAL_SUFFIX).unlink(missing_ok=True)
        final.unlink(missing_ok=True)
        return outcome("failed", None)
    os.replace(temporary, final)
    return outcome("ok" if error is None else "partial", final.name)


# ---- process-pool worker side -----------------------------------------------------------------

_worker_tracker: Tracker | None = None
_worker_events: SimpleQueue | None = None


def _exit_with_parent() -> None:
    """End this worker as soon as the batch process is gone (killed, even with SIGKILL).

    Otherwise an orphan would keep tracking while a resumed run redoes the same clip.
    """
    parent = multiprocessing.parent_process()
    if parent is None:
        return

    def watch() -> None:
        multiprocessing.connection.wait([parent.sentinel])
        os._exit(1)

    threading.Thread(target=watch, name="facetrack-parent-watch", daemon=True).start()


def init_pool_worker(config: TrackerConfig, events: SimpleQueue, log_file: str) -> None:
    """Process-pool initializer: one Tracker per worker, reused for every clip it gets.

    The worker's stderr (mediapipe's and TFLite's native logging included) is appended to
    `log_file`, where it cannot garble the progress display and stays for a post-mortem.

    Events go through a SimpleQueue: `put` writes to the pipe before returning, so a clip's
    start is known to the batch process even when the worker dies right after. Ctrl-C is
    ignored here: the batch process decides what happens to running clips.
    """
    global _worker_tracker, _worker_events
    from facetrack.tracker.pipeline import Tracker

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    log = os.open(log_file, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(log, 2)
    os.close(log)
    _exit_with_parent()
    _worker_tracker = Tracker(config)
    _worker_events = events
    events.put(("hello", worker_id(), os.getpid(), "", 0, None))


def _report(event: Literal["start", "frames"], name: str, frames: int, expected: int | None) -> None:
    if _worker_events is not None:
        _worker_events.put((event, worker_id(), os.getpid(), name, frames, expected))


def pool_task(job: ClipJob) -> ClipOutcome:
    """The function the pool runs per clip (module level, so `spawn` can pickle it)."""
    if _worker_tracker is None:
        raise RuntimeError("pool_task runs only in a worker started with init_pool_worker")
    return process_clip(job, _worker_tracker, _report)
