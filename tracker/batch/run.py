"""`facetrack batch`: track many recorded clips, overnight, on a process pool or a Ray cluster.

One result file per clip, `summary.csv` / `summary.json` and `manifest.json` in the
output folder. Nothing is lost when a run dies: outputs appear only when complete
(see worker.py), the manifest is replaced atomically after every clip, and
`--resume` skips the clips that are done and redoes the rest. docs/batch.md has the
user's guide.

>>> from facetrack.adapters.file_sinks import open_file_sink
>>> report = run_batch(BatchConfig(inputs=["shoot/"], out_dir=Path("results"), workers=2), open_file_sink)
>>> report.exit_code
0
"""

from __future__ import annotations

import os
import platform
import shutil
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, field_validator

from facetrack.tracker.batch.dispatch import dispatch_pool, dispatch_ray
from facetrack.tracker.batch.inputs import InputError, absolute_spec, assign_stems, expand_inputs
from facetrack.tracker.batch.manifest import (
    ClipRecord,
    Manifest,
    ManifestError,
    RunEntry,
    RunOptions,
    input_stat,
    is_done,
    load_manifest,
    remove_stale_temporaries,
    save_manifest,
    write_summary,
)
from facetrack.tracker.batch.worker import (
    WORK_DIR,
    ClipJob,
    ClipOutcome,
)
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.sinks import SinkOpener
from facetrack.tracker.core.versions import package_version

ResultFormat = Literal["parquet", "npz", "jsonl", "csv"]
EXIT_OK = 0
EXIT_CLIPS_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130


def default_workers() -> int:
    """The CPUs this process may use: one tracker (about one core) per worker."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class BatchConfig(BaseModel):
    """A batch run: what to track, where to, and on what."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(description="Folders, globs, files and @list files; on --resume, added to the run's.")
    out_dir: Path | str = Field(description="A folder, or an fsspec URL (s3://, gs://, az://; see batch/storage.py).")
    workers: int = Field(default_factory=default_workers, ge=1, le=512, description="Pool size / local Ray CPUs.")
    format: ResultFormat = "parquet"
    resume: bool = False
    ray_address: str | None = Field(default=None, description='None: process pool; "auto": local Ray cluster.')
    max_faces: int = Field(default=1, ge=1, le=16)
    max_frames: int | None = Field(default=None, ge=1, description="Track at most this many frames of each clip.")
    coefficients: Literal["fit", "regress"] | None = Field(
        default=None, description="Blendshapes and pose from the model fit, or from the shipped regress engine "
                                  "(`TrackerConfig.coefficients`; its card: engines/models/regress_landmarks.md). "
                                  "None: the resumed run's, and for a new run the regress engine (it meets its "
                                  "targets against the fit at less cost per face).")
    cpus_per_clip: float = Field(default=1.0, gt=0, description="Ray: CPUs each clip task requests.")
    gpus_per_clip: float = Field(default=0.0, ge=0, description="Ray: GPUs each clip task requests.")
    memory_per_clip: float | None = Field(default=None, gt=0, description="Ray: GiB of memory each clip reserves.")
    clip_timeout: float | None = Field(default=None, gt=0, description="Ray: seconds one clip may run.")
    runtime_env: bool = Field(default=False, description="Ray: nodes get this facetrack and its pinned dependencies.")

    @field_validator("out_dir", mode="before")
    @classmethod
    def _local_or_url(cls, value: object) -> object:
        """URLs stay strings (a Path would fold `s3://b` into `s3:/b`); file:// and paths become Paths."""
        from facetrack.tracker.batch.storage import is_remote, local_path

        if isinstance(value, str):
            return value if is_remote(value) else Path(local_path(value))
        return value

    def tracker_config(self) -> TrackerConfig:
        return TrackerConfig(max_faces=self.max_faces, max_frames=self.max_frames, coefficients=self.coefficients)

    def run_options(self) -> RunOptions:
        return RunOptions(format=self.format, max_faces=self.max_faces, max_frames=self.max_frames,
                          coefficients=self.coefficients)


class BatchReport(BaseModel):
    """The run's outcome: every clip of this invocation (skipped ones included), in input order."""

    out_dir: Path | str
    clips: list[ClipRecord]
    skipped: int
    interrupted: bool
    wall_seconds: float

    @property
    def exit_code(self) -> int:
        """0 when every clip is ok, 130 when interrupted, 1 otherwise."""
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK if all(clip.status == "ok" for clip in self.clips) else EXIT_CLIPS_FAILED


class BatchProgress(Protocol):
    """What a run reports as it goes: tracker/cli/batch.py draws it, `QuietProgress` drops it."""

    def __enter__(self) -> Any: ...

    def __exit__(self, *exc: object) -> None: ...

    def begin(self, total: int, skipped: int, backend: str, out_dir: Path) -> None: ...

    def clip_started(self, name: str, worker: str, lane: str) -> None: ...

    def clip_frames(self, lane: str, frames: int, expected: int | None) -> None: ...

    def clip_done(self, record: ClipRecord) -> None: ...

    def overall(self, frames: int, fps: float, eta_seconds: float | None) -> None: ...


class QuietProgress:
    """No progress output (the API's default)."""

    def __enter__(self) -> QuietProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        """Nothing to release."""

    def begin(self, total: int, skipped: int, backend: str, out_dir: Path) -> None:
        """Nothing to show."""

    def clip_started(self, name: str, worker: str, lane: str) -> None:
        """Nothing to show."""

    def clip_frames(self, lane: str, frames: int, expected: int | None) -> None:
        """Nothing to show."""

    def clip_done(self, record: ClipRecord) -> None:
        """Nothing to show."""

    def overall(self, frames: int, fps: float, eta_seconds: float | None) -> None:
        """Nothing to show."""


@contextmanager
def _exclusive(out_dir: Path) -> Iterator[None]:
    """One batch per output folder at a time (a lock the OS drops when the process dies)."""
    try:
        import fcntl
    except ImportError:  # Windows: no advisory locks here; the user keeps runs apart
        yield
        return
    with open(out_dir / ".lock", "w") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise ManifestError(
                f"another facetrack batch is running in {out_dir}; wait for it or use another --out-dir"
            ) from None
        yield


def _versions(with_ray: bool) -> dict[str, str]:
    packages = ["facetrack", "mediapipe", "av", "numpy", "pyarrow", "pydantic"] + (["ray"] if with_ray else [])
    found = {"python": platform.python_version(), "platform": platform.platform()}
    for package in packages:
        found[package] = package_version(package) or "not installed"
    return found


def _check_resumable(manifest: Manifest | None, config: BatchConfig, out_dir: Path) -> None:
    if manifest is None:
        return
    if not config.resume:
        raise ManifestError(
            f"{out_dir} already holds a batch run (manifest.json): pass --resume to continue it, "
            "or use another --out-dir"
        )
    if manifest.options != config.run_options():
        used = manifest.options
        frames = f" --max-frames {used.max_frames}" if used.max_frames is not None else ""
        raise ManifestError(
            f"the run in {out_dir} used --format {used.format} --max-faces {used.max_faces}{frames} "
            f"--engine {used.coefficients}; resume it with the same --format, --max-faces, --max-frames and "
            "--engine, or use another --out-dir"
        )


class BatchRun:
    """The bookkeeping of one invocation: records, manifest writes, progress."""

    def __init__(self, config: BatchConfig, manifest: Manifest, progress: BatchProgress) -> None:
        self.config = config
        self.out_dir = config.out_dir
        self.manifest = manifest
        self.progress = progress

    def started(self, name: str, worker: str, lane: str) -> None:
        record = self.manifest.clips[name]
        if record.status == "running":  # Ray reran the clip after its worker died: another run
            record.worker = worker
            record.attempts += 1
            save_manifest(self.out_dir, self.manifest)
            return
        if record.status != "pending":  # a late event of a clip already finished
            return
        record.status, record.worker, record.started_at = "running", worker, time.time()
        record.attempts += 1
        save_manifest(self.out_dir, self.manifest)
        self.progress.clip_started(name, worker, lane)

    def finished(self, outcome: ClipOutcome) -> None:
        """Fold a clip's outcome into its record (None fields, as from the parent, leave it as is)."""
        record = self.manifest.clips[outcome.name]
        for key, value in outcome.model_dump(exclude={"name"}, exclude_none=True).items():
            setattr(record, key, value)
        save_manifest(self.out_dir, self.manifest)
        self.progress.clip_done(record)


def run_batch(config: BatchConfig, open_sink: SinkOpener, progress: BatchProgress | None = None) -> BatchReport:
    """Track every clip the config names; returns when all are done or on Ctrl-C / SIGTERM.

    Raises InputError / ManifestError / StorageError / RayUnavailableError /
    ClusterRefusedError before any clip starts (and before anything is written) when the
    inputs, the output folder or the backend are unusable. A clip's own failure is never
    raised: it is the clip's status in the report, the summary and the manifest.
    """
    t0 = time.time()
    given = [absolute_spec(spec) for spec in config.inputs]
    if given:
        expand_inputs(given)  # a typo fails here, before the output folder is made
    out_url = None
    if isinstance(config.out_dir, str):
        from facetrack.tracker.batch.storage import filesystem, staging_dir

        filesystem(config.out_dir)  # an unknown scheme or a missing backend fails here
        out_url, config = config.out_dir, config.model_copy(update={"out_dir": staging_dir(config.out_dir)})
    if config.ray_address is None:
        return _run_batch(config, open_sink, progress, given, None, t0, out_url)
    from facetrack.tracker.batch.cluster import ray_session, require_ray

    require_ray()
    with ExitStack() as stack:
        runtime_env = None
        if config.runtime_env:
            from facetrack.tracker.batch.runtime_env import facetrack_runtime_env

            runtime_env = stack.enter_context(facetrack_runtime_env())
        ray = stack.enter_context(ray_session(config.ray_address, config.workers, runtime_env))
        return _run_batch(config, open_sink, progress, given, ray, t0, out_url)


def _run_batch(
    config: BatchConfig,
    open_sink: SinkOpener,
    progress: BatchProgress | None,
    given: list[str],
    ray: ModuleType | None,
    t0: float,
    out_url: str | None,
) -> BatchReport:
    """The run itself; `out_url`: the output URL, with `config.out_dir` its local staging folder."""
    from facetrack.tracker.batch import storage
    from facetrack.tracker.batch.cluster import cluster_label

    out_dir = Path(config.out_dir).resolve()
    config = config.model_copy(update={"out_dir": out_dir})
    progress = progress or QuietProgress()
    out_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(out_dir):
        if out_url is not None:
            storage.pull_records(out_url, out_dir)
        manifest = load_manifest(out_dir)
        if config.coefficients is None:  # the engine a resumed run used; a new run's default
            used = manifest.options.coefficients if manifest is not None and config.resume else "regress"
            config = config.model_copy(update={"coefficients": used})
        _check_resumable(manifest, config, out_dir)
        earlier = manifest.inputs if manifest is not None else []
        specs = earlier + [spec for spec in given if spec not in earlier]
        if not specs:
            raise InputError("no inputs: name folders, globs, files or @lists (or --resume an existing run)")
        clips = expand_inputs(specs)
        backend = (
            f"Ray ({cluster_label(config.ray_address, ray)})" if config.ray_address and ray is not None
            else f"{config.workers} worker process{'es' if config.workers > 1 else ''}"
        )  # fmt: skip
        versions = _versions(config.ray_address is not None)
        if manifest is None:
            manifest = Manifest(inputs=specs, options=config.run_options(), versions=versions, started_at=t0)
        else:
            manifest.inputs = specs
            manifest.ended_at = None
        earlier_stems = {(r.input if "://" in r.input else Path(r.input)): name for name, r in manifest.clips.items()}
        stems = assign_stems(clips, earlier_stems)
        records: list[ClipRecord] = []
        jobs: list[ClipJob] = []
        extension = f".{config.format}"
        for clip in clips:
            name = stems[clip.path]
            previous = manifest.clips.get(name)
            done = storage.is_done_remote if out_url is not None else is_done
            if previous is not None and previous.input == str(clip.path) and done(previous, out_url or out_dir):
                records.append(previous)
                continue
            size, mtime_ns = input_stat(clip.path) or (None, None)
            record = ClipRecord(
                name=name, input=str(clip.path), size=size, mtime_ns=mtime_ns,
                attempts=previous.attempts if previous is not None else 0,
            )  # fmt: skip
            manifest.clips[name] = record
            records.append(record)
            jobs.append(
                ClipJob(
                    name=name,
                    input=str(clip.path),
                    extension=extension,
                    out_dir=out_url or str(out_dir),
                    tracker=config.tracker_config().model_copy(update={"stream_id": name}),
                    open_sink=open_sink,
                )
            )
        entry = RunEntry(
            started_at=t0, resumed=bool(manifest.runs), backend=backend, workers=config.workers,
            clips_queued=len(jobs), clips_skipped=len(records) - len(jobs), versions=versions,
        )  # fmt: skip
        manifest.runs.append(entry)
        shutil.rmtree(out_dir / WORK_DIR, ignore_errors=True)  # a killed run's unfinished outputs
        (out_dir / WORK_DIR).mkdir()
        remove_stale_temporaries(out_dir)
        save_manifest(out_dir, manifest)
        if out_url is not None:
            storage.clear_work(out_url)
            storage.push_records(out_url, out_dir)
        run = BatchRun(config, manifest, progress)
        interrupted = False
        with progress:
            progress.begin(len(records), len(records) - len(jobs), backend, out_dir)
            try:
                if jobs and ray is not None:
                    dispatch_ray(ray, config, jobs, run)
                elif jobs:
                    dispatch_pool(config, jobs, run)
            except KeyboardInterrupt:
                interrupted = True
                for record in records:
                    if record.status == "running":
                        record.status = "pending"
        entry.ended_at = time.time()
        if not interrupted:
            manifest.ended_at = entry.ended_at
        save_manifest(out_dir, manifest)
        write_summary(out_dir, records, t0)
        shutil.rmtree(out_dir / WORK_DIR, ignore_errors=True)
        if out_url is not None:
            storage.push_records(out_url, out_dir)
    return BatchReport(
        out_dir=out_url or out_dir, clips=records, skipped=entry.clips_skipped, interrupted=interrupted,
        wall_seconds=time.time() - t0,
    )  # fmt: skip
