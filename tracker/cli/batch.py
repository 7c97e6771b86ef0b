"""`facetrack batch`: the command line, the progress display and the final report of tracker/batch/run.py.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
from pydantic import ValidationError
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from facetrack.adapters.file_sinks import open_file_sink
from facetrack.tracker.batch.manifest import (
    ClipRecord,
)
from facetrack.tracker.batch.run import EXIT_INTERRUPTED, EXIT_USAGE, BatchConfig, BatchReport, run_batch
from facetrack.tracker.cli.common import interrupt_on_signals
from facetrack.tracker.core.errors import FacetrackError


class ConsoleProgress:
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

    def __enter__(self) -> ConsoleProgress:
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
    help="Ray: send this facetrack to the nodes (runtime_env py_modules) with its dependencies pinned (pip), "
    "so nodes need only Python and Ray.",
)
@click.option("--max-faces", type=click.IntRange(1, 16), default=1, show_default=True)
@click.option("--max-frames", type=click.IntRange(min=1), default=None, help="Track at most N frames of each clip.")
@click.option("--engine", "coefficients", type=click.Choice(["fit", "regress"]), default=None,
              help="Blendshapes and pose from the shipped regress engine (the default: less time per face than the "
                   "fit, its agreement with the fit in engines/models/regress_landmarks.md), or from the model fit "
                   "(identity coefficients, lid and lip dynamics). --resume keeps the run's own.")
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
    coefficients: str | None,
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
            coefficients=coefficients, **({"workers": workers} if workers is not None else {}),
        )  # fmt: skip
    except ValidationError as exc:
        raise click.UsageError(str(exc)) from None
    interrupt_on_signals()
    try:
        report = run_batch(config, open_file_sink, ConsoleProgress(console, live=console.is_terminal, quiet=quiet))
    except KeyboardInterrupt:  # before any clip started
        sys.exit(EXIT_INTERRUPTED)
    except FacetrackError as exc:
        console.print(f"[red]error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(EXIT_USAGE)
    _print_report(console, report)
    sys.exit(report.exit_code)


def main() -> None:
    """`python -m facetrack.tracker.cli.batch ...`: the command without the `facetrack` group."""
    batch_command(prog_name="facetrack batch")


if __name__ == "__main__":
    main()
