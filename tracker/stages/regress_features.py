"""The landmark regressor's input: each face's 478 landmarks in its own rigid head frame.

The regress engine (the shipped one, `engines/regress_landmarks.py`) reads expression and
the head rotation's remainder from landmarks that no longer carry where the face sits, how
big it is or how it is turned: points are moved to the camera axes, centred, divided by
their RMS radius and turned by the landmarks' rigid rotation R0 (`head_rotation`, the
pose stage's). What that drops and the fit still uses (the face's place on a pinhole
camera, its size against the focal length) comes back as three more numbers. The network
gives rotvec D with the fit's rotation = R0 @ exp(D), so it learns a small correction,
not a whole rotation. Training (training/landmark_regressor.py) imports these functions,
so its inputs and the run time's cannot drift apart.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import ArrayLike

from facetrack.tracker.stages.pose import head_rotation, to_camera_axes

N_POINTS = 478
N_FEATURES = 3 * N_POINTS + 3
"""Per face: the normalised points (x, y, z) and (centre x / f, centre y / f, RMS radius / f)."""


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

