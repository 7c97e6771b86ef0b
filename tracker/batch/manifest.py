"""The batch run's records on disk: `manifest.json` (what a resume trusts) and the summary table.

The manifest is rewritten atomically (temporary file, fsync, rename) after every clip
starts and ends, so a run killed at any instant leaves either the previous or the next
complete manifest, never a torn one. A clip counts as done for `--resume` only when the
manifest says `ok`, its output file exists, and its input still has the size and
modification time recorded when it was tracked.
"""

from __future__ import annotations

import csv
import io
import json
import os
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from facetrack.tracker.core.errors import FacetrackError

MANIFEST_SCHEMA = "facetrack.batch/1"
MANIFEST_NAME = "manifest.json"
SUMMARY_CSV = "summary.csv"
SUMMARY_JSON = "summary.json"

ClipStatus = Literal["pending", "running", "ok", "partial", "failed"]
"""pending: not started; running: in a worker; ok: every frame tracked; partial: the source
failed part-way and the frames before it were written; failed: no output."""

SUMMARY_COLUMNS: tuple[str, ...] = (
    "clip", "status", "frames", "frames_with_face", "tracks", "blinks_per_minute", "fps", "seconds",
    "input", "output", "error",
)  # fmt: skip


class ManifestError(FacetrackError):
    """The output folder holds a manifest this run cannot continue (or must not overwrite)."""


class RunOptions(BaseModel):
    """Options that decide what an output contains: a resume must use the same ones."""

    model_config = ConfigDict(extra="forbid")

    format: Literal["parquet", "npz", "jsonl", "csv"]
    max_faces: int
    max_frames: int | None
    coefficients: Literal["fit", "regress"] = "fit"  # a run's manifest from before the option: the fit


class ClipRecord(BaseModel):
    """One clip's state and figures; also a row of the summary."""

    name: str = Field(description="Output stem; the results' stream_id.")
    input: str = Field(description="Absolute path of the clip.")
    output: str | None = Field(default=None, description="Result file name inside the output folder, when written.")
    size: int | None = Field(default=None, description="Input size in bytes when it was queued.")
    mtime_ns: int | None = Field(default=None, description="Input modification time (ns) when it was queued.")
    status: ClipStatus = "pending"
    frames: int = 0
    frames_with_face: int = 0
    tracks: int = 0
    blinks_per_minute: float | None = Field(
        default=None, description="Blink events per minute of face time; None without eye state."
    )
    fps: float | None = Field(default=None, description="Frames tracked per second of this clip's wall time.")
    seconds: float | None = None
    error: str | None = None
    attempts: int = Field(default=0, description="Times a worker started this clip (across resumes).")
    worker: str | None = Field(default=None, description="host:pid of the process that tracked it.")
    started_at: float | None = None
    ended_at: float | None = None


class RunEntry(BaseModel):
    """One invocation (the first run, then each resume)."""

    started_at: float
    ended_at: float | None = None
    resumed: bool = False
    backend: str
    workers: int
    clips_queued: int
    clips_skipped: int
    versions: dict[str, str] = Field(default_factory=dict, description="Can differ from the first run's.")


class Manifest(BaseModel):
    """Everything a later `--resume` or a person auditing the run needs."""

    model_config = ConfigDict(populate_by_name=True)

    schema_id: Literal["facetrack.batch/1"] = Field(default=MANIFEST_SCHEMA, alias="schema")
    inputs: list[str]
    options: RunOptions
    versions: dict[str, str] = Field(description="Of the first run; each entry of `runs` has its own.")
    started_at: float
    ended_at: float | None = None
    runs: list[RunEntry] = Field(default_factory=list)
    clips: dict[str, ClipRecord] = Field(default_factory=dict, description="By output stem.")


def write_atomic(path: Path, data: bytes) -> None:
    """Replace `path` with `data` so that a crash leaves the old or the new file, whole."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(temporary, "wb") as handle:
        handle.write(data)
        handle.flush()
        os.fsync(handle.fileno())
    os.replace(temporary, path)
    if hasattr(os, "O_DIRECTORY"):  # make the rename itself durable (POSIX)
        directory = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


def remove_stale_temporaries(out_dir: Path) -> None:
    """Temporaries `write_atomic` left when a run was killed mid-write (only this module's)."""
    for name in (MANIFEST_NAME, SUMMARY_CSV, SUMMARY_JSON):
        for stale in out_dir.glob(f".{name}.*.tmp"):
            stale.unlink(missing_ok=True)


def load_manifest(out_dir: Path) -> Manifest | None:
    """The manifest in `out_dir`, None when there is none; ManifestError when it is unreadable."""
    path = out_dir / MANIFEST_NAME
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    try:
        return Manifest.model_validate_json(raw)
    except ValidationError as exc:
        raise ManifestError(
            f"{path} is not a facetrack batch manifest ({exc.error_count()} problems, first: "
            f"{exc.errors()[0]['msg']}); use another --out-dir"
        ) from None


def save_manifest(out_dir: Path, manifest: Manifest) -> None:
    write_atomic(out_dir / MANIFEST_NAME, manifest.model_dump_json(by_alias=True, indent=2).encode())


def input_stat(path: Path | str) -> tuple[int, int] | None:
    """(size, mtime_ns) of an input (a path, or a URL: see batch/storage.py), None when it cannot be read."""
    if "://" in str(path):
        from facetrack.tracker.batch.storage import input_stat as url_stat

        return url_stat(str(path))
    path = Path(path)
    try:
        stat = path.stat()
    except OSError:
        return None
    return stat.st_size, stat.st_mtime_ns


def is_done(record: ClipRecord, out_dir: Path) -> bool:
    """Whether `--resume` may skip this clip: ok, output present, input unchanged."""
    if record.status != "ok" or record.output is None or not (out_dir / record.output).is_file():
        return False
    return input_stat(record.input) == (record.size, record.mtime_ns)


def summary_rows(records: list[ClipRecord]) -> list[dict[str, object]]:
    """The summary's rows, in SUMMARY_COLUMNS order (the clip's name as `clip`)."""
    rows = []
    for record in records:
        values = record.model_dump()
        values["clip"] = values.pop("name")
        rows.append({column: values[column] for column in SUMMARY_COLUMNS})
    return rows


def summary_totals(records: list[ClipRecord], started_at: float) -> dict[str, object]:
    counts = {status: sum(r.status == status for r in records) for status in ("ok", "partial", "failed", "pending")}
    return {
        "clips": len(records),
        **counts,
        "frames": sum(r.frames for r in records),
        "frames_with_face": sum(r.frames_with_face for r in records),
        "wall_seconds": round(time.time() - started_at, 3),
    }


def write_summary(out_dir: Path, records: list[ClipRecord], started_at: float) -> None:
    """summary.csv (one row per clip; empty cell = None) and summary.json (rows plus totals)."""
    rows = summary_rows(records)
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=SUMMARY_COLUMNS, lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({key: "" if value is None else value for key, value in row.items()})
    write_atomic(out_dir / SUMMARY_CSV, text.getvalue().encode())
    document = {"totals": summary_totals(records, started_at), "clips": rows}
    write_atomic(out_dir / SUMMARY_JSON, json.dumps(document, indent=2).encode())
