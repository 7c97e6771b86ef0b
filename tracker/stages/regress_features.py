"""The landmark regressor's input: each face's 478 landmarks in its own rigid head frame.

The regress engine (the shipped one, `engines/regress_landmarks.py`) reads expression and
the head rotation's remainder from landmarks that no longer carry where the face sits, how
big it is or how it is turned: points are moved to the camera axes, centred, divided by
their RMS radius and turned by the landmarks' rigid rotation R0 (`head_rotation`, the
pose stage's). What that drops and the fit still uses (the face's place on a pinhole
camera, its size against the focal length) comes back as three more numbers. The network
gives rotvec D with the fit's rotation = R0 @ exp(D), so it learns a small correction,
not a whole rotation.

One frame does not say whose face it is: lips that rest apart or brows that sit high look
like an expression. So the engine also gets each track's context (`TrackContext`): the
median of the track's own features over its first frames, a person's usual face. Training
(training/landmark_regressor.py) imports these functions and runs the same class over each
clip in frame order, so its inputs and the run time's cannot drift apart.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from facetrack.tracker.stages.pose import head_rotation, to_camera_axes

N_POINTS = 478
N_FEATURES = 3 * N_POINTS + 3
"""Per face: the normalised points (x, y, z) and (centre x / f, centre y / f, RMS radius / f)."""
CONTEXT_WINDOW = 120
"""Frames of a track its context is the median of (4 s at 30 fps, the fit's identity warm-up)."""


def landmark_features(landmarks: np.ndarray, image_size: ArrayLike, focal_px: ArrayLike
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(N, 478, 3) image-pixel landmarks -> (N, N_FEATURES) float32 inputs and (N, 3, 3) rigid rotations R0.

    `image_size` is (width, height) of all faces' image or (N, 2), `focal_px` one number or (N,)."""
    points = np.asarray(landmarks, np.float64)
    if points.ndim != 3 or points.shape[1:] != (N_POINTS, 3):
        raise ValueError(f"landmarks must be (N, {N_POINTS}, 3), got {points.shape}")
    r0 = np.stack([head_rotation(p) for p in points]) if len(points) else np.zeros((0, 3, 3))
    width, height = np.broadcast_to(np.asarray(image_size, np.float64), (len(points), 2)).T
    focal_px = np.broadcast_to(np.asarray(focal_px, np.float64), (len(points),))
    centre_px = points[:, :, :2].mean(axis=1)
    cam = to_camera_axes(points)
    cam -= cam.mean(axis=1, keepdims=True)
    radius = np.sqrt((cam ** 2).sum(axis=2).mean(axis=1))
    head = np.einsum("npi,nij->npj", cam, r0) / radius[:, None, None]  # R0^T p per point
    where = np.column_stack([(centre_px[:, 0] - width / 2) / focal_px, (centre_px[:, 1] - height / 2) / focal_px,
                             radius / focal_px])
    return np.concatenate([head.reshape(len(points), -1), where], axis=1).astype(np.float32), r0


class TrackContext:
    """Per track, the median of its features over its first `window` frames (so far, before it has them).

    The median is taken afresh when a track's count of frames is a power of two and at `window`, then
    held: a few medians per track instead of one per frame (one over 120 frames costs about 3 ms). A
    track of one frame (a photo) is its own context."""

    def __init__(self, window: int = CONTEXT_WINDOW) -> None:
        if window < 1:
            raise ValueError(f"the context window must be at least one frame, got {window}")
        self.window = window
        self._frames: dict[int, list[np.ndarray] | None] = {}  # None once the window is full
        self._median: dict[int, np.ndarray] = {}

    def update(self, track_ids: list[int], features: np.ndarray) -> np.ndarray:
        """(N, N_FEATURES) features of one frame's faces -> (N, N_FEATURES) their tracks' contexts."""
        out = np.empty_like(features)
        for row, track_id in enumerate(track_ids):
            frames = self._frames.setdefault(track_id, [])
            if frames is not None:
                frames.append(features[row].copy())
                n = len(frames)
                if n & (n - 1) == 0 or n == self.window:
                    self._median[track_id] = np.median(np.stack(frames), axis=0).astype(features.dtype)
                if n == self.window:
                    self._frames[track_id] = None
            out[row] = self._median[track_id]
        return out

    def forget(self, track_ids: list[int]) -> None:
        """Drop ended tracks (a track id seen again starts a new context)."""
        for track_id in track_ids:
            self._frames.pop(track_id, None)
            self._median.pop(track_id, None)


def engine_input(features: np.ndarray, context: np.ndarray) -> np.ndarray:
    """What the engine takes per face: its features, then its track's context (N, 2 * N_FEATURES)."""
    return np.concatenate([features, context], axis=1)
