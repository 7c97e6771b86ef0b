"""The landmark-engine interface: image in, faces with 478 landmarks out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True)
class DetectedFace:
    """One face found by a landmark engine in one image."""

    landmarks: np.ndarray
    """(478, 3) float32: x, y in pixels, z relative depth in the same pixel scale."""
    detection_score: float | None
    """Score of the detector when it ran on this frame for this face, else None (tracked from the last frame)."""


@runtime_checkable
class LandmarkEngine(Protocol):
    """Finds faces and their landmarks; stateful in video mode (tracks from the last frame)."""

    name: str

    def process(self, image: np.ndarray) -> list[DetectedFace]:
        """Landmarks of every face in an HxWx3 uint8 RGB image."""

    def close(self) -> None:
        """Release native resources."""


@runtime_checkable
class PipelinedLandmarkEngine(LandmarkEngine, Protocol):
    """An engine that runs on its own threads: landmarks of one frame while the caller finishes the last one."""

    def submit(self, image: np.ndarray) -> None:
        """Start on an HxWx3 uint8 RGB image and return at once (the image is copied)."""

    def collect(self) -> list[DetectedFace]:
        """The faces of the image submitted last; waits for them."""
