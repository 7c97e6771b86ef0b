"""The reader of still images: one file, a folder (optionally with its subfolders) or a glob, in natural
order; a broken image is skipped and named at the end.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from facetrack.tracker.core.errors import SourceDecodeError, SourceOpenError
from facetrack.tracker.core.schema import SourceInfo
from facetrack.tracker.sources.orientation import rotate_image
from facetrack.tracker.sources.resolve import Target

logger = logging.getLogger("facetrack.sources")


def _decode_image(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        image = np.ascontiguousarray(frame.to_ndarray(format="rgb24"))
    if path.suffix.lower() in (".jpg", ".jpeg") and not _jpeg_complete(path):
        logger.warning("'%s' is truncated (no JPEG end marker): tracked as decoded, its lower part may be grey; "
                       "re-copy or re-export it", path)
    return image


def _jpeg_complete(path: Path) -> bool:
    """A whole JPEG ends with its EOI marker (FFD9), give or take trailing padding."""
    with open(path, "rb") as f:
        f.seek(max(0, os.path.getsize(path) - 1024))
        return b"\xff\xd9" in f.read().rstrip(b"\x00\r\n ")[-64:]


def image_name(path: Path, root: Path | None) -> str:
    """An image's name in results: its path relative to the input (POSIX separators), else its file name."""
    if root is not None and path.is_relative_to(root):
        return path.relative_to(root).as_posix()
    return path.name


class ImageReader:
    """A still image, a folder or a glob: index = position, no pts (a sequence: `fps` gives the filter's time)."""

    frame_duration = 0.0

    def __init__(self, target: Target, live: bool, rotate: int | None = None, fps: float | None = None) -> None:
        self._target = target
        self.rotation = rotate or 0
        first = None
        for path in target.images:  # the first decodable image gives the size; broken ones are skipped later
            try:
                first = rotate_image(_decode_image(path), self.rotation)
                break
            except (av.error.FFmpegError, StopIteration, IndexError, OSError) as exc:
                error = exc
        if first is None:
            raise SourceOpenError(
                f"'{target.images[0]}'{' and the other images' if len(target.images) > 1 else ''} cannot be decoded "
                f"({error or 'no picture'}); check the files or remove them from the sequence."
            ) from error
        self.info = SourceInfo(
            uri=target.uri,
            live=live,
            width=first.shape[1],
            height=first.shape[0],
            fps=fps,
            container="images",
            frames=len(target.images),
            rotation=self.rotation,
            coded_width=first.shape[1] if self.rotation % 180 == 0 else first.shape[0],
            coded_height=first.shape[0] if self.rotation % 180 == 0 else first.shape[1],
        )

    def frames(self) -> Iterator[tuple[np.ndarray | None, None, str]]:
        """Images in order; a broken one is reported, skipped (None: its index stays unused, so indices stay
        positions) and the rest are read; at the end SourceDecodeError names the skipped ones."""
        skipped: list[str] = []
        for position, path in enumerate(self._target.images):
            try:
                image = rotate_image(_decode_image(path), self.rotation)
            except (av.error.FFmpegError, StopIteration, IndexError, OSError) as exc:
                logger.warning("image %d, '%s', cannot be decoded (%s): skipped", position, path, exc or "no picture")
                skipped.append(str(path))
                yield None, None, image_name(path, self._target.root)
                continue
            yield image, None, image_name(path, self._target.root)
        if skipped:
            count = len(self._target.images)
            raise SourceDecodeError(
                f"{len(skipped)} of {count} images of '{self._target.uri}' could not be decoded and were skipped "
                f"({', '.join(skipped[:3])}{' ...' if len(skipped) > 3 else ''}); the other {count - len(skipped)} "
                "were tracked. Fix or remove them."
            )

    def close(self) -> None:
        """Nothing stays open between images."""
