"""How a source is read (SourceConfig), what it delivers (Frame), and the reading limits.

Free of PyAV and OpenCV: TrackerConfig validates a source configuration without loading a decoder.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

IMAGE_SUFFIXES: tuple[str, ...] = (
    ".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm", ".pnm",
)
"""Still-image files: a single one, a folder of them or a glob over them is an image source."""

NETWORK_SCHEMES: tuple[str, ...] = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https", "udp", "tcp", "srt", "rtp")
"""URL schemes opened as live network streams."""
OPEN_TIMEOUT = 10.0
"""Seconds a camera or network stream may take to open (PyAV interrupts FFmpeg after it)."""
READ_TIMEOUT = 5.0
"""Seconds without data before a live source counts as dropped (then it reconnects)."""
RETRY_INTERVAL = 0.25
"""Seconds between reconnection attempts of a live source."""
TRUNCATION_TOLERANCE = 0.1
"""Seconds of slack, on top of two frame durations, before a short file counts as truncated."""
MAX_PACING_LAG = 0.1
"""A real-time file more than this far behind its clock re-anchors instead of bursting."""
MIN_PTS_STEP = 1e-3
"""Seconds between the last frame of a pass and the first of the next when the rate is unknown."""
JOIN_TIMEOUT = 2.0
"""Longest `close()` waits for the decode thread (one blocked in a network read ends by itself)."""
SourceKind = Literal["file", "images", "camera", "network"]
LIVE_KINDS: frozenset[str] = frozenset({"camera", "network"})
class SourceConfig(BaseModel):
    """How a source is read; the defaults suit a file or a local webcam."""

    model_config = ConfigDict(extra="forbid")

    queue_size: int = Field(default=8, ge=1, description="Bounded queue between decode thread and consumer.")
    realtime: bool = Field(default=False, description="Pace a file by its pts, as a live source would deliver it.")
    live: bool | None = Field(
        default=None,
        description="Override: None decides from the spec (files False; webcam/network True; realtime file True).",
    )
    loop: bool = Field(
        default=False, description="Replay a file forever (soak tests); indices and pts keep increasing."
    )
    reconnect_seconds: float = Field(
        default=5.0, ge=0.0, description="Live: how long to retry after the source drops before SourceLostError."
    )
    input_format: str | None = Field(
        default=None, description='FFmpeg input format, e.g. "v4l2"; cameras default per platform.'
    )
    input_options: dict[str, str] = Field(
        default_factory=dict, description='Passed to av.open(options=...), e.g. {"video_size": "1280x720"}.'
    )
    rotate: Literal[0, 90, 180, 270] | None = Field(
        default=None, description="Clockwise degrees to turn every picture by; None: a file's own display matrix."
    )
    recursive: bool = Field(default=False, description="A folder source also takes the images in its subfolders.")
    sequence: bool = Field(
        default=False,
        description="Images (a folder, a glob) are the frames of one video: faces are tracked from image to image, "
                    "with the temporal filter. Off (the default), every image is a still of its own: no track, "
                    "calibration or smoothing is carried from one image to the next.",
    )
    still_pad: float = Field(
        default=0.25, ge=0, le=2,
        description="Stills: a photo in which no face is found is searched again with a black border this wide (a "
                    "fraction of its larger side), so face crops cut tight at the face are found; 0 turns it off.",
    )
    sequence_fps: float = Field(
        default=30.0, gt=0, description="Frame rate of an image sequence (`sequence`): the filter's time step.",
    )


@dataclass(frozen=True, slots=True)
class Frame:
    """One decoded frame, already RGB, as the tracker consumes it."""

    index: int
    """0-based index of the decoded frame (keeps increasing across loops and reconnects)."""
    pts: float | None
    """Presentation time in seconds, None if unknown (images, raw streams)."""
    capture_time: float
    """time.time() when the frame left the decoder."""
    image: np.ndarray
    """HxWx3 uint8 RGB, C-contiguous."""
    dropped: int
    """Cumulative frames the source dropped so far (live only; 0 for files)."""
    source: str | None = None
    """What the frame came from: an image's path relative to the input; the file (or camera, stream) of a video."""
