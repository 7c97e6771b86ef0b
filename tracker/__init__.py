"""facetrack's tracking pipeline: `from facetrack.tracker import Tracker, TrackerConfig`.

Names load on first use, so importing the schema alone (a client, a sink) does not
start mediapipe.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

_EXPORTS = {
    "Tracker": "facetrack.tracker.pipeline",
    "TrackerConfig": "facetrack.tracker.config",
    "SourceConfig": "facetrack.tracker.sources.config",
    "open_source": "facetrack.tracker.sources.frame_source",
    "FrameResult": "facetrack.tracker.core.schema",
    "FaceResult": "facetrack.tracker.core.schema",
    "StreamMetadata": "facetrack.tracker.core.schema",
    "ARKIT_BLENDSHAPES": "facetrack.tracker.core.schema",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'facetrack.tracker' has no attribute {name!r}")
    return getattr(import_module(_EXPORTS[name]), name)
