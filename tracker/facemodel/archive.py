"""Downloading and unpacking model archives without trusting them: HTTPS only, every entry kept inside its
target (or the whole archive refused), bounded sizes, and nothing left behind when an install fails."""

from __future__ import annotations

import hashlib
import shutil
import stat
import tempfile
import urllib.request
import zipfile
from collections.abc import Callable
from pathlib import Path, PurePosixPath

from facetrack.tracker.facemodel.format import ModelError

MAX_DOWNLOAD_BYTES = 2 << 30
"""Largest archive `download` accepts (the ICT release zip is about 0.1 GB)."""
MAX_UNPACKED_BYTES = 4 << 30
"""Largest total an archive may unpack to (ICT's FaceXModel/ is 0.4 GB): a zip bomb is refused up front."""


class _HttpsOnlyRedirects(urllib.request.HTTPRedirectHandler):
    """A redirect to plain http would undo the point of asking for https."""

    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201 - urllib's signature
        if not newurl.lower().startswith("https://"):
            raise ModelError(f"{req.full_url} redirects to {newurl}: only https:// downloads are accepted")
        return super().redirect_request(req, fp, code, msg, headers, newurl)


def check_https(url: str) -> None:
    """Refuse any URL but https:// (plain http can be read and replaced on the way)."""
    if not url.lower().startswith("https://"):
        raise ModelError(f"{url}: only https:// downloads are accepted (plain http can be read and replaced on "
                         "the way); download the archive yourself and pass its path instead")


def download(url: str, dest: Path, timeout: float = 60.0) -> Path:
    """Fetch `url` (https only, redirects included) into the file `dest`; a failed download leaves no file."""
    check_https(url)
    opener = urllib.request.build_opener(_HttpsOnlyRedirects())
    written = 0
    try:
        with opener.open(url, timeout=timeout) as response, open(dest, "wb") as out:
            while chunk := response.read(1 << 20):
                written += len(chunk)
                if written > MAX_DOWNLOAD_BYTES:
                    raise ModelError(f"{url} is larger than {MAX_DOWNLOAD_BYTES >> 20} MB: refused")
                out.write(chunk)
    except OSError as exc:
        dest.unlink(missing_ok=True)
        raise ModelError(f"cannot download {url} ({exc})") from None
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest


def _entry_path(name: str) -> PurePosixPath | None:
    """The relative path an entry may be written to; None for one that would leave the target."""
    if "\\" in name or "\x00" in name or "//" in name:  # `A//tmp/x`: absolute once split at `A/`
        return None
    path = PurePosixPath(name)
    if path.is_absolute() or name.startswith("/") or ".." in path.parts or (path.parts and ":" in path.parts[0]):
        return None
    return path


def safe_extract(archive: Path, target: Path, select: Callable[[str], str | None] | None = None) -> int:
    """Unpack the zip `archive` into the folder `target`; returns the files written.

    `select(name)` maps an entry's name to its path under `target` (None skips the entry). Every
    resulting path is checked before anything is written: an absolute one, one with `..`, a symbolic
    link, or one that resolves outside `target` refuses the whole archive (ModelError), as does an
    archive that would unpack to more than `MAX_UNPACKED_BYTES`.
    """
    root = target.resolve()
    try:
        with zipfile.ZipFile(archive) as z:
            plan: list[tuple[zipfile.ZipInfo, Path]] = []
            total = 0
            for info in z.infolist():
                if info.is_dir():
                    continue
                name = select(info.filename) if select is not None else info.filename
                if name is None:
                    continue
                relative = _entry_path(name)
                dest = None if relative is None else (root / relative).resolve()
                if dest is None or not dest.is_relative_to(root) or dest == root:
                    raise ModelError(f"{archive}: the entry {info.filename!r} points outside the folder it unpacks "
                                     "to; the archive is refused")
                if stat.S_ISLNK(info.external_attr >> 16):
                    raise ModelError(f"{archive}: the entry {info.filename!r} is a symbolic link; the archive is "
                                     "refused")
                total += info.file_size
                if total > MAX_UNPACKED_BYTES:
                    raise ModelError(f"{archive} unpacks to more than {MAX_UNPACKED_BYTES >> 20} MB: refused")
                plan.append((info, dest))
            for info, dest in plan:
                dest.parent.mkdir(parents=True, exist_ok=True)
                with z.open(info) as src, open(dest, "wb") as out:
                    shutil.copyfileobj(src, out)
    except (zipfile.BadZipFile, zipfile.LargeZipFile, EOFError) as exc:
        raise ModelError(f"{archive} is not a readable zip archive ({exc})") from None
    return len(plan)


def file_digest(path: Path) -> str:
    """sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def check_digest(expected: str | None, origin: str) -> str:
    """The pin for a download from `origin`, lower-cased; a missing or malformed one refuses it before any
    request (an unpinned archive could be swapped upstream or on the way, https or not)."""
    if expected is None:
        raise ModelError(f"{origin} is not the release facetrack pins: pass the archive's sha256 with --sha256 "
                         "(from a source you trust), or download it yourself and pass its path")
    pin = expected.strip().lower()
    if len(pin) != 64 or any(c not in "0123456789abcdef" for c in pin):
        raise ModelError(f"--sha256 {expected!r} is not a sha256 digest (64 hexadecimal digits)")
    return pin


def verify_file(path: Path, expected: str, origin: str) -> None:
    """Refuse (ModelError) a downloaded archive whose sha256 is not the pinned one."""
    digest = file_digest(path)
    if digest != expected:
        raise ModelError(f"the archive from {origin} is not the pinned one (sha256 {digest}, expected {expected}); "
                         "nothing was installed")


def tree_digest(folder: Path) -> str:
    """sha256 of the folder's `sha256sum`-style listing (`<sha256>  <relative path>` per file, sorted by path):
    what pins a release's content whatever zip it came in."""
    lines = []
    for path in sorted(folder.rglob("*"), key=lambda p: p.relative_to(folder).as_posix()):
        if path.is_file():
            lines.append(f"{file_digest(path)}  {path.relative_to(folder).as_posix()}\n")
    return hashlib.sha256("".join(lines).encode()).hexdigest()


def verify_tree(folder: Path, expected: str, origin: str) -> None:
    """Refuse (ModelError) a folder whose `tree_digest` is not the pinned one."""
    digest = tree_digest(folder)
    if digest != expected:
        raise ModelError(f"the files from {origin} are not the release facetrack pins (digest {digest}, expected "
                         f"{expected}); nothing was installed")


def scratch_folder(parent: Path, prefix: str) -> Path:
    """A fresh folder beside where the result will go (same file system: the final move is a rename)."""
    parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=parent))
