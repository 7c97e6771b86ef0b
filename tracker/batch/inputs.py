"""Which clips a batch run covers, and the output name each one gets.

Inputs are folders (searched recursively for video files), glob patterns, files, and
list files (`@list.txt`: one input per line, relative to the list's own folder, `#`
comments). Output names are the clip's path relative to the input that found it,
flattened into one safe file stem, so they are readable, stable between runs and can
never point outside the output folder. When two clips would get the same stem (same
name in two folders, `clip.mp4` next to `clip.mov`, case-only differences, a stem that
is a reserved batch file name) every one of them gets a short hash of its absolute
path appended instead.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePath

from facetrack.tracker.core.errors import FacetrackError

VIDEO_SUFFIXES: frozenset[str] = frozenset({
    ".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".mpg", ".mpeg", ".ts", ".mts", ".m2ts",
    ".flv", ".wmv", ".3gp", ".ogv", ".mxf", ".dv",
})  # fmt: skip
"""Files a folder or glob contributes; a file named explicitly is taken whatever its suffix."""

RESERVED_STEMS: frozenset[str] = frozenset({"summary", "manifest"})
"""Stems the batch's own files use (summary.csv / summary.json / manifest.json)."""

MAX_STEM = 64
"""Longest output stem: it doubles as the results' `stream_id` (at most 64 characters)."""
HASH_LENGTH = 8
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")
_GLOB_CHARS = re.compile(r"[*?\[]")


class InputError(FacetrackError):
    """Inputs that match no clip, or an unreadable list file; the run does not start."""


@dataclass(frozen=True, slots=True)
class ClipInput:
    """One clip: its absolute path (or its URL: storage.py) and its path relative to the input that found it."""

    path: Path | str
    relative: PurePath


def _is_video(path: Path) -> bool:
    return path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()


def _glob_root(pattern: str) -> Path:
    """The folder part of a pattern before its first wildcard: names are relative to it."""
    parts = Path(pattern).parts
    first_wildcard = next(i for i, part in enumerate(parts) if _GLOB_CHARS.search(part))
    return Path(*parts[:first_wildcard]) if first_wildcard else Path(".")


def _expand_one(spec: str, base: Path) -> list[ClipInput]:
    if "://" in spec:
        from facetrack.tracker.batch.storage import expand_url, is_remote, local_path

        if is_remote(spec):
            return [ClipInput(url, relative) for url, relative in expand_url(spec, VIDEO_SUFFIXES)]
        spec = local_path(spec)
    path = Path(spec).expanduser()
    if not path.is_absolute():
        path = base / path
    if path.is_dir():
        found = sorted(p for p in path.rglob("*") if _is_video(p))
        return [ClipInput(p.resolve(), p.relative_to(path)) for p in found]
    if path.is_file():
        return [ClipInput(path.resolve(), PurePath(path.name))]
    if _GLOB_CHARS.search(spec):
        pattern = str(path)
        root = _glob_root(pattern)
        found = sorted(Path(p) for p in glob.glob(pattern, recursive=True) if _is_video(Path(p)))
        return [ClipInput(p.resolve(), p.relative_to(root)) for p in found]
    return []


def _list_entries(list_file: Path) -> list[str]:
    try:
        lines = list_file.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read the list file {list_file}: {exc}") from None
    return [line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")]


def expand_inputs(specs: Sequence[str], cwd: Path | None = None) -> list[ClipInput]:
    """Every clip the specs name, once each, in the order given (folders sorted by path).

    Raises InputError naming every spec (or list-file line) that matched nothing, so a
    typo fails before an overnight run starts rather than after it.
    """
    base = cwd or Path.cwd()
    clips: list[ClipInput] = []
    unmatched: list[str] = []
    for spec in specs:
        if spec.startswith("@"):
            list_file = Path(spec[1:]).expanduser()
            list_file = list_file if list_file.is_absolute() else base / list_file
            for entry in _list_entries(list_file):
                found = _expand_one(entry, list_file.parent)
                clips.extend(found)
                if not found:
                    unmatched.append(f"{entry} (in {spec})")
            continue
        found = _expand_one(spec, base)
        clips.extend(found)
        if not found:
            unmatched.append(spec)
    if unmatched:
        raise InputError(
            "no video found for: " + ", ".join(unmatched) + f" (relative paths start at {base}; folders and "
            f"globs contribute files ending in {', '.join(sorted(VIDEO_SUFFIXES))})"
        )
    unique: dict[Path | str, ClipInput] = {}
    for clip in clips:
        unique.setdefault(clip.path, clip)
    return list(unique.values())


def absolute_spec(spec: str, cwd: Path | None = None) -> str:
    """`spec` with a relative path made absolute, so a manifest's inputs work from any folder."""
    prefix, path = ("@", spec[1:]) if spec.startswith("@") else ("", spec)
    if "://" in path:
        return spec
    return prefix + os.path.join(cwd or Path.cwd(), os.path.expanduser(path))


def path_hash(path: Path | str) -> str:
    """A short, stable hash of an absolute path: the collision suffix."""
    return hashlib.sha1(os.fsencode(path)).hexdigest()[:HASH_LENGTH]


def base_stem(relative: PurePath) -> str:
    """`sub/dir/clip.mp4` -> `sub__dir__clip`: separators flattened, unsafe characters replaced."""
    parts = [*relative.parts[:-1], PurePath(relative.parts[-1]).stem or relative.parts[-1]]
    stem = "__".join(_UNSAFE.sub("_", part) for part in parts if part not in ("", ".", ".."))
    return stem.lstrip("._-") or "clip"


def _hashed(stem: str, path: Path | str) -> str:
    return f"{stem[: MAX_STEM - HASH_LENGTH - 1]}-{path_hash(path)}"


def assign_stems(clips: Iterable[ClipInput], taken: Mapping[Path | str, str] | None = None) -> dict[Path | str, str]:
    """A unique output stem per clip path (case-insensitively unique, never reserved).

    `taken` holds the stems an earlier run of the same output folder gave: those clips
    keep them, and no other clip may take one, so resuming never renames an output.
    """
    taken = dict(taken or {})
    stems: dict[Path | str, str] = {}
    used = {stem.lower() for stem in taken.values()} | RESERVED_STEMS
    groups: dict[str, list[Path | str]] = defaultdict(list)
    for clip in clips:
        if clip.path in taken:
            stems[clip.path] = taken[clip.path]
        elif clip.path not in stems:
            stem = base_stem(clip.relative)
            groups[stem.lower()].append(clip.path)
            stems[clip.path] = stem
    for key, paths in groups.items():
        if len(paths) > 1 or key in used or len(stems[paths[0]]) > MAX_STEM:
            for path in paths:
                stems[path] = _hashed(stems[path], path)
        used.update(stems[path].lower() for path in paths)
    return stems
