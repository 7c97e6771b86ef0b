"""Display orientation: phones record portrait video as landscape pictures plus a display matrix that says
how to turn them, and every player applies it. The tracker does too, so landmarks, poses and sizes are those
of the upright face a viewer sees; `--rotate` replaces what the file says."""

from __future__ import annotations

import logging

import av
import numpy as np

log = logging.getLogger("facetrack.sources")

ROTATIONS = (0, 90, 180, 270)
"""Clockwise quarter turns a picture can need."""


def display_rotation(url: str, format: str | None = None, options: dict[str, str] | None = None) -> int:
    """Clockwise degrees the file's display matrix turns its pictures by (0 without one, or unreadable).

    Read from the first decoded frame (PyAV's `VideoFrame.rotation`, counter-clockwise, from the
    stream's display matrix); flips in the matrix are not applied.
    """
    try:
        with av.open(url, format=format, options=options or {}) as container:
            frame = next(container.decode(video=0), None)
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        log.debug("%s: no display matrix read (%s)", url, exc)
        return 0
    if frame is None:
        return 0
    return quarter_turns(-float(frame.rotation or 0))


def quarter_turns(degrees: float) -> int:
    """Any angle -> the nearest of 0, 90, 180, 270 (clockwise)."""
    return int(round(degrees / 90.0)) % 4 * 90


def rotate_image(image: np.ndarray, clockwise: int) -> np.ndarray:
    """The picture turned `clockwise` degrees (a multiple of 90), C-contiguous."""
    if clockwise % 360 == 0:
        return image
    return np.ascontiguousarray(np.rot90(image, k=-(clockwise // 90)))


def display_size(width: int, height: int, clockwise: int) -> tuple[int, int]:
    """(width, height) once turned: a quarter turn swaps them."""
    return (height, width) if clockwise % 180 == 90 else (width, height)
