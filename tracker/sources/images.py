"""The reader of still images: one file, a folder or a glob, in natural order.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from facetrack.tracker.core.errors import SourceDecodeError, SourceOpenError
from facetrack.tracker.core.schema import SourceInfo
from facetrack.tracker.sources.resolve import Target


def _decode_image(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        frame = next(container.decode(video=0))
        return np.ascontiguousarray(frame.to_ndarray(format="rgb24"))


class ImageReader:
    """A still image, a folder or a glob: index = position, no pts."""

    frame_duration = 0.0

    def __init__(self, target: Target, live: bool) -> None:
        self._target = target
        try:
            first = _decode_image(target.images[0])
        except (av.error.FFmpegError, StopIteration, IndexError) as exc:
            raise SourceOpenError(
                f"'{target.images[0]}' is not an image FFmpeg can decode ({exc or 'no picture'}); "
                "check the file or remove it from the sequence."
            ) from exc
        self.info = SourceInfo(
            uri=target.uri,
            live=live,
            width=first.shape[1],
            height=first.shape[0],
            container="images",
            frames=len(target.images),
        )

    def frames(self) -> Iterator[tuple[np.ndarray, None]]:
        """Images in order; a broken one ends the sequence (indices must stay positions)."""
        for position, path in enumerate(self._target.images):
            try:
                image = _decode_image(path)
            except (av.error.FFmpegError, StopIteration, IndexError) as exc:
                raise SourceDecodeError(
                    f"Image {position} of '{self._target.uri}', '{path}', cannot be decoded ({exc or 'no picture'}); "
                    f"the {position} images before it were delivered. Fix or remove it."
                ) from exc
            yield image, None

    def close(self) -> None:
        """Nothing stays open between images."""
