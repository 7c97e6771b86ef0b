"""Batch outputs (and inputs) on object storage: any fsspec URL (`s3://`, `gs://`, `az://`, `file://`).

Workers write a clip's result to a local temporary file, upload it to a temporary key
under `<out>/.work/` and then move it onto its final key, so nothing is at the final
name until the clip is complete (on S3 the move is a server-side copy: the final
object appears whole or not at all). Input URLs are downloaded by the worker that
tracks the clip. The driver keeps its lock, manifest and summary in a local staging
folder for the URL (one per URL, in the user cache) and copies the manifest and the
summary to the URL at the start and the end of each run; `--resume` reads the URL's
manifest when this machine has none. Credentials come from each library's usual
environment (AWS_*, GOOGLE_APPLICATION_CREDENTIALS, AZURE_STORAGE_*).

A string that looks like a URL with a scheme fsspec does not know is an error, never
a local folder named after it.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import tempfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import Any

from facetrack.tracker.core.errors import FacetrackError

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
LOCAL_SCHEMES = frozenset({"file", "local"})
CACHE = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "facetrack" / "batch"
"""Where the driver's staging folders for output URLs live."""
MIRRORED = ("manifest.json", "summary.csv", "summary.json")


class StorageError(FacetrackError):
    """A URL that cannot be used: unknown scheme, missing fsspec backend, unreachable storage."""


def url_scheme(text: str) -> str | None:
    """The scheme when `text` looks like a URL (`scheme://...`), else None (a local path)."""
    match = _URL.match(text)
    return match.group(1).lower() if match else None


def is_remote(text: str) -> bool:
    """Whether `text` is a URL for a non-local filesystem (file:// URLs are local paths)."""
    scheme = url_scheme(text)
    return scheme is not None and scheme not in LOCAL_SCHEMES


def local_path(text: str) -> str:
    """A `file://` URL as the path it names; other strings unchanged."""
    if url_scheme(text) in LOCAL_SCHEMES:
        return text.split("://", 1)[1]
    return text


def filesystem(url: str) -> tuple[Any, str]:
    """(fsspec filesystem, path inside it) for a URL, or a StorageError that says what to install."""
    scheme = url_scheme(url)
    try:
        import fsspec
        from fsspec.registry import known_implementations
    except ImportError:
        raise StorageError(
            f"{url}: URLs need fsspec and the backend for {scheme}://; install them with: "
            'pip install "facetrack[cloud]"'
        ) from None
    if scheme not in known_implementations and scheme not in fsspec.available_protocols():
        raise StorageError(
            f"{url}: unknown URL scheme {scheme}://; use a local path or an fsspec URL (s3://, gs://, az://, file://)"
        )
    try:
        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        raise StorageError(f"{url}: {exc}") from None
    return fs, path


def join(url: str, name: str) -> str:
    return url.rstrip("/") + "/" + name


def staging_dir(url: str) -> Path:
    """The local folder that holds the driver's lock, manifest and summary for an output URL."""
    return CACHE / hashlib.sha1(url.rstrip("/").encode()).hexdigest()[:16]


def pull_records(url: str, staging: Path) -> None:
    """Copy the URL's manifest to the staging folder when this machine has no run of it."""
    fs, path = filesystem(url)
    staging.mkdir(parents=True, exist_ok=True)
    manifest = join(path, MIRRORED[0])
    if not (staging / MIRRORED[0]).exists() and fs.exists(manifest):
        fs.get(manifest, str(staging / MIRRORED[0]))


def push_records(url: str, staging: Path) -> None:
    """Copy the manifest and the summary to the URL (each object is replaced whole)."""
    fs, path = filesystem(url)
    for name in MIRRORED:
        if (staging / name).exists():
            fs.put_file(str(staging / name), join(path, name))


def expand_url(spec: str, suffixes: frozenset[str]) -> list[tuple[str, PurePosixPath]]:
    """(URL, path relative to the spec) of each video a URL names: an object, a prefix (recursively), a glob."""
    fs, path = filesystem(spec)
    scheme = url_scheme(spec)

    def url(key: str) -> str:
        return fs.unstrip_protocol(key) if hasattr(fs, "unstrip_protocol") else f"{scheme}://{key}"

    if any(char in path for char in "*?["):
        keys = sorted(fs.glob(path))
        root = PurePosixPath(path.split("*")[0].split("?")[0].split("[")[0]).parent
    elif fs.isdir(path):
        keys, root = sorted(fs.find(path)), PurePosixPath(path)
    elif fs.isfile(path):
        return [(url(path), PurePosixPath(PurePosixPath(path).name))]
    else:
        return []
    return [
        (url(key), PurePosixPath(key).relative_to(root))
        for key in keys
        if PurePosixPath(key).suffix.lower() in suffixes
    ]


def exists(url: str, name: str) -> bool:
    fs, path = filesystem(url)
    return bool(fs.isfile(join(path, name)))


def is_done_remote(record: Any, url: str) -> bool:
    """`manifest.is_done` for an output URL: ok, its object present, its input unchanged."""
    from facetrack.tracker.batch.manifest import input_stat as any_stat

    if record.status != "ok" or record.output is None or not exists(url, record.output):
        return False
    return any_stat(record.input) == (record.size, record.mtime_ns)


def process_remote(job: Any, run: Any) -> Any:
    """Run `run(job)` (worker.py's local tracking) into a scratch folder, then commit to the URL.

    The result is uploaded under `.work/` and moved onto its name only when the clip is
    complete; a failed clip removes an older object of the same name, as locally.
    """
    from facetrack.tracker.batch.worker import WORK_DIR, worker_id

    with tempfile.TemporaryDirectory(prefix="facetrack-out-") as scratch:
        (Path(scratch) / WORK_DIR).mkdir()
        outcome = run(job.model_copy(update={"out_dir": scratch}))
        try:
            if outcome.output is not None:
                unique = f"{job.name}.{worker_id().replace(':', '-')}{job.extension}"
                commit(Path(scratch) / outcome.output, job.out_dir, outcome.output, unique)
            else:
                remove(job.out_dir, f"{job.name}{job.extension}")
        except (OSError, StorageError) as exc:
            error = f"cannot write the result to {job.out_dir}: {type(exc).__name__}: {exc}"
            return outcome.model_copy(update={"status": "failed", "output": None, "error": error})
    return outcome


def input_stat(url: str) -> tuple[int, int] | None:
    """(size, modification time in ns) of an input URL, like `os.stat` gives for a file; None if unreadable."""
    try:
        fs, path = filesystem(url)
        info = fs.info(path)
    except (OSError, StorageError):
        return None
    modified = None
    with contextlib.suppress(NotImplementedError, OSError, AttributeError):  # not every filesystem keeps one
        modified = fs.modified(path)
    stamp = int(modified.timestamp() * 1e9) if modified is not None else 0
    return int(info.get("size") or 0), stamp


@contextlib.contextmanager
def local_copy(url: str) -> Iterator[Path]:
    """The input at `url` downloaded to a local temporary file, removed afterwards."""
    fs, path = filesystem(url)
    suffix = Path(path).suffix
    handle, name = tempfile.mkstemp(prefix="facetrack-in-", suffix=suffix)
    os.close(handle)
    try:
        fs.get_file(path, name)
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def commit(local: Path, url: str, name: str, temporary_name: str) -> None:
    """Upload `local` to `<url>/.work/<temporary_name>`, then move it onto `<url>/<name>`."""
    fs, path = filesystem(url)
    temporary = join(path, f".work/{temporary_name}")
    fs.put_file(str(local), temporary)
    fs.mv(temporary, join(path, name))


def remove(url: str, name: str) -> None:
    fs, path = filesystem(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(join(path, name))


def clear_work(url: str) -> None:
    """Remove the temporary keys a killed run left under `<url>/.work/`."""
    fs, path = filesystem(url)
    with contextlib.suppress(FileNotFoundError):
        fs.rm(join(path, ".work"), recursive=True)
