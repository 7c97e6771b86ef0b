"""Where facetrack keeps its data, and checks on where a run will write, made before anything is opened: a refusal
must leave every file as it was."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterable
from pathlib import Path

from facetrack.tracker.core.errors import SinkError


def data_dir() -> Path:
    """The user data directory for facetrack (created on demand by writers)."""
    env = os.environ.get("FACETRACK_DATA")
    if env:
        return Path(env).expanduser()
    home = Path.home()
    if sys.platform == "darwin":
        return home / "Library" / "Application Support" / "facetrack"
    if os.name == "nt":
        return Path(os.environ.get("LOCALAPPDATA", home / "AppData" / "Local")) / "facetrack"
    return Path(os.environ.get("XDG_DATA_HOME") or home / ".local" / "share") / "facetrack"



def _folder_problem(folder: Path) -> str | None:
    """Why files cannot be created in `folder` (None when they can: it exists, or the missing folders can be
    created in the nearest existing one)."""
    for above in (folder, *folder.parents):
        if above.exists():
            if not above.is_dir():
                return f"{above} is a file, not a folder"
            if not os.access(above, os.W_OK | os.X_OK):
                return f"the folder {above} is not writable"
            return None
    return f"the folder {folder} cannot be created"


def check_output_file(path: Path, option: str, extensions: Iterable[str]) -> None:
    """Refuse (SinkError) an output file that cannot be written: a folder, a read-only folder, a path under a
    file, or an extension no writer knows. Missing folders are fine: the run creates them when it opens the file."""
    allowed = tuple(extensions)
    if not str(path) or path.is_dir():
        raise SinkError(f"{option} {path}: is a folder; give a file name ({', '.join(allowed)})")
    if path.suffix.lower() not in allowed:
        raise SinkError(f"{option} {path}: unknown extension {path.suffix!r}; supported: {', '.join(allowed)}")
    problem = _folder_problem(path.absolute().parent)
    if problem is not None:
        raise SinkError(f"{option} {path}: {problem}")


def check_output_folder(folder: Path, option: str) -> None:
    """Refuse (SinkError) an output folder that is a file or cannot be created in an existing, writable parent."""
    if folder.exists() and not folder.is_dir():
        raise SinkError(f"{option} {folder}: is a file, not a folder")
    target = folder.absolute()
    problem = _folder_problem(target if target.exists() else target.parent)
    if problem is not None:
        raise SinkError(f"{option} {folder}: {problem}")


def check_distinct(paths: Iterable[Path]) -> None:
    """Two outputs with one name would overwrite each other: refuse."""
    seen: set[Path] = set()
    for path in paths:
        resolved = path.absolute().resolve()
        if resolved in seen:
            raise SinkError(f"{path} is given as more than one output")
        seen.add(resolved)
