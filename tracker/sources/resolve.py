"""Resolving a source spec (file, image folder or glob, webcam:N, URL) to what to open and how.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from facetrack.tracker.core.errors import SourceOpenError
from facetrack.tracker.sources.config import IMAGE_SUFFIXES, LIVE_KINDS, NETWORK_SCHEMES, SourceConfig, SourceKind

_URL = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
_GLOB_CHARS = re.compile(r"[*?\[]")

logger = logging.getLogger("facetrack.sources")


@dataclass(frozen=True)
class Target:
    """A parsed spec: what to open and how."""

    kind: SourceKind
    uri: str
    url: str = ""
    format: str | None = None
    options: dict[str, str] = field(default_factory=dict)
    images: tuple[Path, ...] = ()
    root: Path | None = None
    """The folder an image source's names are relative to (the folder given, a glob's fixed part, an image's own)."""


def _natural_key(path: Path) -> list[int | str]:
    """Sort frame2.png before frame10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", str(path))]


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES and path.is_file()


def _image_folder(uri: str, folder: Path, recursive: bool = False) -> Target:
    found = folder.rglob("*") if recursive else folder.iterdir()
    images = sorted((p for p in found if _is_image(p)), key=lambda p: _natural_key(p.relative_to(folder)))
    if not recursive:
        nested = [d.name for d in folder.iterdir() if d.is_dir() and any(_is_image(p) for p in d.rglob("*"))]
        if nested:
            logger.warning("'%s': %d subfolders with images (%s) are not read; pass --recursive to track them too",
                           folder, len(nested), ", ".join(sorted(nested)[:3]) + (" ..." if len(nested) > 3 else ""))
    if not images:
        raise SourceOpenError(
            f"Folder '{folder}' contains no images ({', '.join(IMAGE_SUFFIXES)}). Put the frames there "
            "(e.g. 000001.png, 000002.png ...), or pass a video file, a glob such as 'frames/*.png', or webcam:0."
        )
    return Target(kind="images", uri=uri, images=tuple(images), root=folder)


def _image_glob(uri: str, pattern: str) -> Target:
    matches = [Path(p) for p in glob.glob(os.path.expanduser(pattern), recursive=True)]
    images = sorted((p for p in matches if _is_image(p)), key=_natural_key)
    if not images:
        found = f"{len(matches)} files match but none is an image" if matches else "nothing matches"
        raise SourceOpenError(
            f"No images for the pattern '{pattern}': {found} (image types: {', '.join(IMAGE_SUFFIXES)}). "
            "Check the pattern and quote it in a shell; a video file is passed by its own path."
        )
    fixed = os.path.expanduser(pattern[: _GLOB_CHARS.search(pattern).start()])
    root = Path(fixed) if fixed.endswith(("/", os.sep)) else Path(fixed).parent
    return Target(kind="images", uri=uri, images=tuple(images), root=root)


def _camera(uri: str, device: str, config: SourceConfig) -> Target:
    """Map `webcam:N` / a device path to the platform's capture format and device name."""
    if sys.platform.startswith("linux"):
        fmt, url = "v4l2", f"/dev/video{device}" if device.isdigit() else device
    elif sys.platform == "darwin":
        fmt, url = "avfoundation", device if ":" in device else f"{device}:none"
    elif sys.platform == "win32":
        if device.isdigit() and config.input_format is None:
            raise SourceOpenError(
                f"{uri}: DirectShow opens cameras by name, not number. Use webcam:NAME, e.g. "
                "webcam:\"Integrated Camera\" (list them with: ffmpeg -list_devices true -f dshow -i dummy)."
            )
        fmt, url = "dshow", device if device.startswith("video=") else f"video={device}"
    else:
        raise SourceOpenError(f"{uri}: no camera support on {sys.platform}; set SourceConfig.input_format.")
    return Target(
        kind="camera", uri=uri, url=url, format=config.input_format or fmt, options=dict(config.input_options)
    )


def _network(uri: str, scheme: str, config: SourceConfig) -> Target:
    if scheme not in NETWORK_SCHEMES:
        raise SourceOpenError(
            f"Unknown URL scheme '{scheme}://' in '{uri}'. Supported streams: "
            f"{', '.join(s + '://' for s in NETWORK_SCHEMES)}; a local file or folder is passed as a plain path, "
            "a camera as webcam:0."
        )
    # RTSP over UDP loses packets (smeared frames) on busy networks; TCP is the safer default.
    defaults = {"rtsp_transport": "tcp"} if scheme in ("rtsp", "rtsps") else {}
    return Target(
        kind="network", uri=uri, url=uri, format=config.input_format, options=defaults | config.input_options
    )


def resolve_spec(spec: str | os.PathLike[str], config: SourceConfig) -> Target:
    """Decide what kind of source a spec names; raises SourceOpenError for nonsense."""
    uri = os.fspath(spec)
    if match := _URL.match(uri):
        return _network(uri, match.group(1).lower(), config)
    if uri.startswith("webcam:"):
        return _camera(uri, uri.removeprefix("webcam:"), config)
    if uri.startswith("/dev/video"):
        return _camera(uri, uri, config)
    path = Path(uri).expanduser()
    if path.is_dir():
        return _image_folder(uri, path, config.recursive)
    if not path.exists():
        if _GLOB_CHARS.search(uri):
            return _image_glob(uri, uri)
        raise SourceOpenError(
            f"No such file or folder: '{path}' (relative paths start at {os.getcwd()}). Check the spelling; "
            "a camera is webcam:0, a stream a URL such as rtsp://host/path."
        )
    if path.suffix.lower() in IMAGE_SUFFIXES:
        return Target(kind="images", uri=uri, images=(path,), root=path.parent)
    return Target(
        kind="file", uri=uri, url=str(path), format=config.input_format, options=dict(config.input_options)
    )


def source_name(target: Target) -> str:
    """How results name a video source: the spec as given, a stream URL without its credentials."""
    if target.kind == "network":
        return re.sub(r"^([A-Za-z][A-Za-z0-9+.-]*://)[^/@]*@", r"\1", target.uri)
    return target.uri


def is_live(target: Target, config: SourceConfig) -> bool:
    if config.live is not None:
        return config.live
    return target.kind in LIVE_KINDS or (target.kind == "file" and config.realtime)
