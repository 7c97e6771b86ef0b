"""Rigid head pose from the 478 landmarks alone, before (or without) a face-model fit.

The head frame is built from landmarks that expression barely moves: x from pairs of
symmetric points (eye corners, temples, cheek edges, nose wings), y from the facial
midline (subnasale to forehead), z = x cross y. Depth comes from the eye-corner
distance (average adult exocanthion width) under a pinhole camera.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from facetrack.tracker.schema import HeadPose

# (subject's right, subject's left) pairs of rigid landmarks in the face-mesh topology.
_RIGHT = np.array([33, 133, 127, 234, 98, 46, 226])
_LEFT = np.array([263, 362, 356, 454, 327, 276, 446])
_MIDLINE_TOP = np.array([10, 151, 9])
_MIDLINE_BOTTOM = np.array([2, 94])
_CENTRE = np.concatenate([_RIGHT, _LEFT, _MIDLINE_TOP, [168, 6]])
_EYE_OUTER = (33, 263)
EYE_CORNER_DISTANCE_CM = 9.0
"""Mean adult distance between the outer eye corners (Farkas: 8.7 F, 9.1 M)."""
# The midline from subnasale to forehead leans back from the vertical of a face looking
# straight ahead. Rotating the head frame about x by this angle puts pitch 0 at a level
# head: the median offset against the 16 AFLW2000-3D pose labels (scripts/eval_pose.py).
PITCH_CORRECTION_DEG = 9.4
_PITCH_CORRECTION = Rotation.from_euler("x", PITCH_CORRECTION_DEG, degrees=True).as_matrix()


def to_camera_axes(landmarks: np.ndarray) -> np.ndarray:
    """Image pixels (y down, z away) to the camera frame's axes (y up, z toward the viewer)."""
    return landmarks * np.array([1.0, -1.0, -1.0], dtype=landmarks.dtype)


def head_rotation(landmarks: np.ndarray) -> np.ndarray:
    """(3, 3) rotation taking head-frame vectors to the camera frame."""
    points = to_camera_axes(landmarks.astype(np.float64))
    x = (points[_LEFT] - points[_RIGHT]).sum(axis=0)
    x /= np.linalg.norm(x)
    up = points[_MIDLINE_TOP].mean(axis=0) - points[_MIDLINE_BOTTOM].mean(axis=0)
    y = up - x * (up @ x)
    y /= np.linalg.norm(y)
    return np.column_stack([x, y, np.cross(x, y)]) @ _PITCH_CORRECTION


def head_translation(landmarks: np.ndarray, image_size: tuple[int, int], focal_px: float) -> np.ndarray:
    """(3,) head centre in centimetres in the camera frame, from the eye-corner distance."""
    width, height = image_size
    right, left = landmarks[_EYE_OUTER[0]], landmarks[_EYE_OUTER[1]]
    px_per_cm = float(np.linalg.norm(left - right)) / EYE_CORNER_DISTANCE_CM
    depth = focal_px / px_per_cm
    u, v = landmarks[_CENTRE, :2].mean(axis=0)
    return np.array([(u - width / 2) * depth / focal_px, -(v - height / 2) * depth / focal_px, -depth])


def pose_from_matrix(rotation: np.ndarray, translation: np.ndarray) -> HeadPose:
    """A HeadPose from a head-to-camera rotation matrix and a translation in cm."""
    rot = Rotation.from_matrix(rotation)
    yaw, pitch, roll = rot.as_euler("YXZ", degrees=True)
    return HeadPose(
        rotation=tuple(rot.as_quat().tolist()),
        yaw=float(yaw),
        pitch=float(pitch),
        roll=float(roll),
        translation=tuple(translation.tolist()),
    )


def estimate_head_pose(landmarks: np.ndarray, image_size: tuple[int, int], focal_px: float | None = None) -> HeadPose:
    """Rigid pose of one face; `focal_px` defaults to the image width (about 53 degrees of view)."""
    focal = float(focal_px or image_size[0])
    return pose_from_matrix(head_rotation(landmarks), head_translation(landmarks, image_size, focal))
