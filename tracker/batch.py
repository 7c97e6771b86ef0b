"""`facetrack batch`: track many recorded clips, overnight, on a process pool or a Ray cluster.

One result file per clip, `summary.csv` / `summary.json` and `manifest.json` in the
output folder. Nothing is lost when a run dies: outputs appear only when complete
(see `batch_worker`), the manifest is replaced atomically after every clip, and
`--resume` skips the clips that are done and redoes the rest. docs/batch.md has the
user's guide.

>>> report = run_batch(BatchConfig(inputs=["shoot/"], out_dir=Path("results"), workers=2))
>>> report.exit_code
0
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import shutil
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from types import ModuleType
from typing import Literal

import click
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from facetrack.tracker.batch_inputs import InputError, absolute_spec, assign_stems, expand_inputs
from facetrack.tracker.batch_manifest import (
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
from facetrack.tracker.batch_worker import (
    WORK_DIR,
    ClipJob,
    ClipOutcome,
    failed_outcome,
    init_pool_worker,
    pool_task,
)
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.errors import FacetrackError

ResultFormat = Literal["parquet", "npz", "jsonl", "csv"]
EXIT_OK = 0
EXIT_CLIPS_FAILED = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
MAX_WORKER_CRASHES = 2
"""A clip whose worker process died this many times (OOM kill, native crash) is failed, not retried."""
MAX_BARREN_POOLS = 3
"""Pools in a row whose workers die before any clip starts: the installation is broken, stop."""
POLL_SECONDS = 0.2
WORKER_LOG = "workers.log"
"""Where worker processes' stderr goes, in the output folder (appended across runs)."""


def default_workers() -> int:
    """The CPUs this process may use: one tracker (about one core) per worker."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


class BatchConfig(BaseModel):
    """A batch run: what to track, where to, and on what."""

    model_config = ConfigDict(extra="forbid")

    inputs: list[str] = Field(description="Folders, globs, files and @list files; on --resume, added to the run's.")
    out_dir: Path | str = Field(description="A folder, or an fsspec URL (s3://, gs://, az://; see batch_storage).")
    workers: int = Field(default_factory=default_workers, ge=1, le=512, description="Pool size / local Ray CPUs.")
    format: ResultFormat = "parquet"
    resume: bool = False
    ray_address: str | None = Field(default=None, description='None: process pool; "auto": local Ray cluster.')
    max_faces: int = Field(default=1, ge=1, le=16)
    max_frames: int | None = Field(default=None, ge=1, description="Track at most this many frames of each clip.")
    cpus_per_clip: float = Field(default=1.0, gt=0, description="Ray: CPUs each clip task requests.")
    gpus_per_clip: float = Field(default=0.0, ge=0, description="Ray: GPUs each clip task requests.")
    memory_per_clip: float | None = Field(default=None, gt=0, description="Ray: GiB of memory each clip reserves.")
    clip_timeout: float | None = Field(default=None, gt=0, description="Ray: seconds one clip may run.")
    runtime_env: bool = Field(default=False, description="Ray: workers install this facetrack version themselves.")

    @field_validator("out_dir", mode="before")
    @classmethod
    def _local_or_url(cls, value: object) -> object:
        """URLs stay strings (a Path would fold `s3://b` into `s3:/b`); file:// and paths become Paths."""
        from facetrack.tracker.batch_storage import is_remote, local_path

        if isinstance(value, str):
            return value if is_remote(value) else Path(local_path(value))
        return value

    def tracker_config(self) -> TrackerConfig:
        return TrackerConfig(max_faces=self.max_faces, max_frames=self.max_frames)

    def run_options(self) -> RunOptions:
        return RunOptions(format=self.format, max_faces=self.max_faces, max_frames=self.max_frames)


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


# ---- progress ------------------------------------------------------------------------------


class BatchProgress:
    """An overall bar plus one line per worker on a terminal; plain log lines otherwise."""

    def __init__(self, console: Console, live: bool, quiet: bool = False) -> None:
        self._console = console
        self._live = live and not quiet
        self._quiet = quiet
        self._progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(), console=console, disable=not self._live,
        )  # fmt: skip
        self._overall: TaskID | None = None
        self._lanes: dict[str, TaskID] = {}
        self._done = 0
        self._total = 0

    def __enter__(self) -> BatchProgress:
        self._progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.__exit__(*exc)

    def _line(self, text: str) -> None:
        if not self._live and not self._quiet:
            self._console.print(text, markup=False, highlight=False, soft_wrap=True)

    def begin(self, total: int, skipped: int, backend: str, out_dir: Path) -> None:
        self._total, self._done = total, skipped
        self._overall = self._progress.add_task("[bold]clips", total=total, completed=skipped, note="")
        self._line(f"batch: {total} clips ({skipped} already done) on {backend} -> {out_dir}")

    def clip_started(self, name: str, worker: str, lane: str) -> None:
        """A clip began in `lane`: a worker process, or the clip itself on Ray (one line per task)."""
        self._line(f"start {name} on {worker}")
        task = self._lanes.get(lane)
        if task is None:
            self._lanes[lane] = self._progress.add_task(f"  {lane}", total=None, note=name)
        else:
            self._progress.reset(task, total=None, note=name)

    def clip_frames(self, lane: str, frames: int, expected: int | None) -> None:
        task = self._lanes.get(lane)
        if task is not None:
            self._progress.update(task, completed=frames, total=expected)

    def overall(self, frames: int, fps: float, eta_seconds: float | None) -> None:
        """Frames done over all clips, their rate and the time left (Ray's driver reports it)."""
        eta = f", about {eta_seconds / 60:.1f} min left" if eta_seconds is not None else ""
        self._line(f"progress: {frames} frames at {fps:.1f} fps{eta}")

    def clip_done(self, record: ClipRecord) -> None:
        self._done += 1
        fps = f"{record.fps:.1f} fps" if record.fps else "-"
        text = f"[{self._done}/{self._total}] {record.status:<7} {record.name}  {record.frames} frames  {fps}"
        self._line(text + (f"  error: {record.error}" if record.error else ""))
        if self._overall is not None:
            self._progress.update(self._overall, completed=self._done, note=f"last: {record.name} {record.status}")
        if (own := self._lanes.pop(record.name, None)) is not None:
            self._progress.remove_task(own)
        for task in self._progress.tasks:
            if task.fields.get("note") == record.name and task.id != self._overall:
                self._progress.update(task.id, completed=record.frames, note="idle")


# ---- the run -------------------------------------------------------------------------------


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
        try:
            found[package] = version(package)
        except PackageNotFoundError:
            found[package] = "not installed"
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
            f"the run in {out_dir} used --format {used.format} --max-faces {used.max_faces}{frames}; resume it "
            "with the same --format, --max-faces and --max-frames, or use another --out-dir"
        )


class _Run:
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


def run_batch(config: BatchConfig, progress: BatchProgress | None = None) -> BatchReport:
    """Track every clip the config names; returns when all are done or on Ctrl-C / SIGTERM.

    Raises InputError / ManifestError / RayUnavailableError / ClusterRefusedError before
    any clip starts (and before anything is written) when the inputs, the output folder
    or the backend are unusable. A clip's own failure is never raised: it is the clip's
    status in the report, the summary and the manifest.
    """
    t0 = time.time()
    given = [absolute_spec(spec) for spec in config.inputs]
    if given:
        expand_inputs(given)  # a typo fails here, before the output folder is made
    out_url = None
    if isinstance(config.out_dir, str):
        from facetrack.tracker.batch_storage import filesystem, staging_dir

        filesystem(config.out_dir)  # an unknown scheme or a missing backend fails here
        out_url, config = config.out_dir, config.model_copy(update={"out_dir": staging_dir(config.out_dir)})
    if config.ray_address is None:
        return _run_batch(config, progress, given, None, t0, out_url)
    from facetrack.tracker.batch_cluster import pinned_runtime_env, ray_session

    runtime_env = pinned_runtime_env() if config.runtime_env else None
    with ray_session(config.ray_address, config.workers, runtime_env) as ray:
        return _run_batch(config, progress, given, ray, t0, out_url)


def _run_batch(
    config: BatchConfig,
    progress: BatchProgress | None,
    given: list[str],
    ray: ModuleType | None,
    t0: float,
    out_url: str | None,
) -> BatchReport:
    """The run itself; `out_url`: the output URL, with `config.out_dir` its local staging folder."""
    from facetrack.tracker import batch_storage
    from facetrack.tracker.batch_cluster import cluster_label

    out_dir = Path(config.out_dir).resolve()
    config = config.model_copy(update={"out_dir": out_dir})
    progress = progress or BatchProgress(Console(stderr=True), live=False, quiet=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    with _exclusive(out_dir):
        if out_url is not None:
            batch_storage.pull_records(out_url, out_dir)
        manifest = load_manifest(out_dir)
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
            done = batch_storage.is_done_remote if out_url is not None else is_done
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
            batch_storage.clear_work(out_url)
            batch_storage.push_records(out_url, out_dir)
        run = _Run(config, manifest, progress)
        interrupted = False
        with progress:
            progress.begin(len(records), len(records) - len(jobs), backend, out_dir)
            try:
                if jobs and ray is not None:
                    _dispatch_ray(ray, config, jobs, run)
                elif jobs:
                    _dispatch_pool(config, jobs, run)
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
            batch_storage.push_records(out_url, out_dir)
    return BatchReport(
        out_dir=out_url or out_dir, clips=records, skipped=entry.clips_skipped, interrupted=interrupted,
        wall_seconds=time.time() - t0,
    )  # fmt: skip


def _dispatch_ray(ray: ModuleType, config: BatchConfig, jobs: list[ClipJob], run: _Run) -> None:
    from facetrack.tracker.batch_ray import RayCallbacks, TaskShape, run_on_ray

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

    def __init__(self, config: BatchConfig, remaining: dict[str, ClipJob], run: _Run) -> None:
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


def _dispatch_pool(config: BatchConfig, jobs: list[ClipJob], run: _Run) -> None:
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


# ---- command line --------------------------------------------------------------------------


def _raise_keyboard_interrupt(signum: int, _frame: object) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _print_report(console: Console, report: BatchReport) -> None:
    counts = {
        status: sum(c.status == status for c in report.clips) for status in ("ok", "partial", "failed", "pending")
    }
    frames = sum(c.frames for c in report.clips)
    console.print(
        f"{len(report.clips)} clips: {counts['ok']} ok, {counts['partial']} partial, {counts['failed']} failed"
        + (f", {counts['pending']} not done (interrupted: rerun with --resume)" if counts["pending"] else "")
        + f"; {report.skipped} skipped as already done; {frames} frames in {report.wall_seconds:.1f} s. "
        f"Summary: {str(report.out_dir).rstrip('/')}/summary.csv",
        markup=False, highlight=False, soft_wrap=True,
    )  # fmt: skip
    for clip in report.clips:
        if clip.status in ("partial", "failed"):
            console.print(f"  {clip.status}: {clip.input}: {clip.error}", markup=False, highlight=False, soft_wrap=True)


@click.command("batch", context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("inputs", nargs=-1)
@click.option(
    "-o",
    "--out-dir",
    required=True,
    help="Folder for the result files, summary.csv/.json and manifest.json; or an fsspec URL (s3://bucket/out, "
    'gs://, az://; needs "facetrack[cloud]").',
)
@click.option(
    "-j",
    "--workers",
    type=click.IntRange(1, 512),
    default=None,
    help="Worker processes (or local Ray CPUs); default: the CPUs available.",
)
@click.option(
    "--format",
    "result_format",
    type=click.Choice(["parquet", "npz", "jsonl", "csv"]),
    default="parquet",
    show_default=True,
    help="Result file format, one file per clip. jsonl and parquet hold every field; csv and npz leave out eye "
    "state, mouth openness, identity/expression coefficients, the 68 points and eye events (variable per face and "
    "frame; see docs/batch.md).",
)
@click.option("--resume", is_flag=True, help="Continue the run in --out-dir: skip finished clips, redo the rest.")
@click.option(
    "--ray",
    "ray_address",
    is_flag=False,
    flag_value="auto",
    default=None,
    metavar="[ADDRESS]",
    help="Run clips as Ray tasks. No value or 'auto': RAY_ADDRESS, else the cluster running on this machine, else a "
    "private loopback cluster for this run; or a cluster address (host:port, ray://host:port).",
)
@click.option(
    "--cpus-per-clip",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Ray: CPUs each clip's task requests.",
)
@click.option(
    "--gpus-per-clip",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Ray: GPUs each clip's task requests.",
)
@click.option(
    "--memory-per-clip",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Ray: GiB of memory each clip's task reserves (Ray schedules by it; default: none reserved).",
)
@click.option(
    "--clip-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Ray: seconds one clip may run before its task is cancelled and the clip failed.",
)
@click.option(
    "--runtime-env",
    is_flag=True,
    help="Ray: nodes install this facetrack version (pip runtime_env) instead of needing it installed.",
)
@click.option("--max-faces", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Track at most N frames of each clip.")
@click.option("--quiet", is_flag=True, help="No progress output, only the final report.")
def batch_command(
    inputs: tuple[str, ...],
    out_dir: str,
    workers: int | None,
    result_format: str,
    resume: bool,
    ray_address: str | None,
    cpus_per_clip: float,
    gpus_per_clip: float,
    memory_per_clip: float | None,
    clip_timeout: float | None,
    runtime_env: bool,
    max_faces: int,
    max_frames: int | None,
    quiet: bool,
) -> None:
    """Track every clip in INPUTS (folders, globs, files, @list.txt) into one result file each.

    Writes summary.csv/summary.json and manifest.json next to the results. Exit code 0
    when every clip is ok, 1 when any failed or is partial, 2 for unusable arguments,
    130 when interrupted (continue with --resume).
    """
    console = Console(stderr=True, soft_wrap=True)
    if ray_address is not None and ":" not in ray_address and ray_address != "auto" and Path(ray_address).exists():
        raise click.UsageError(
            f"--ray took {ray_address!r}, an input path, as its address: write --ray=auto or put --ray after the inputs"
        )
    try:
        config = BatchConfig(
            inputs=list(inputs), out_dir=out_dir, format=result_format, resume=resume, ray_address=ray_address,
            cpus_per_clip=cpus_per_clip, gpus_per_clip=gpus_per_clip, memory_per_clip=memory_per_clip,
            clip_timeout=clip_timeout, runtime_env=runtime_env, max_faces=max_faces, max_frames=max_frames,
            **({"workers": workers} if workers is not None else {}),
        )  # fmt: skip
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    signal.signal(signal.SIGTERM, _raise_keyboard_interrupt)
    try:
        report = run_batch(config, BatchProgress(console, live=console.is_terminal, quiet=quiet))
    except KeyboardInterrupt:  # before any clip started
        sys.exit(EXIT_INTERRUPTED)
    except FacetrackError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    _print_report(console, report)
    sys.exit(report.exit_code)


def main() -> None:
    """`python -m facetrack.tracker.batch ...`: the command without the `facetrack` group."""
    batch_command(prog_name="facetrack batch")


if __name__ == "__main__":
    main()
