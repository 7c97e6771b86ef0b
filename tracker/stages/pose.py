"""Rigid head pose from the 478 landmarks alone, before (or without) a face-model fit.

The head frame is built from landmarks that expression barely moves: x from pairs of
symmetric points (eye corners, temples, cheek edges, nose wings), y from the facial
midline (subnasale to forehead), z = x cross y. Depth comes from the eye-corner
distance (average adult exocanthion width) under a pinhole camera.
"""

from __future__ import annotations

import numpy as np

from facetrack.tracker.core.schema import HeadPose

# (subject's right, subject's left) pairs of rigid landmarks in the face-mesh topology.
_RIGHT = np.array([33, 133, 127, 234, 98, 46, 226])
_LEFT = np.array([263, 362, 356, 454, 327, 276, 446])
_MIDLINE_TOP = np.array([10, 151, 9])
_MIDLINE_BOTTOM = np.array([2, 94])
_AXIS_POINTS = np.concatenate([_LEFT, _RIGHT, _MIDLINE_TOP, _MIDLINE_BOTTOM])
_AXIS_SPLITS = np.cumsum([len(_LEFT), len(_RIGHT), len(_MIDLINE_TOP)])
_CENTRE = np.concatenate([_RIGHT, _LEFT, _MIDLINE_TOP, [168, 6]])
_EYE_OUTER = (33, 263)
EYE_CORNER_DISTANCE_CM = 9.0
"""Mean adult distance between the outer eye corners (Farkas: 8.7 F, 9.1 M)."""
# The midline from subnasale to forehead leans back from the vertical of a face looking
# straight ahead. Rotating the head frame about x by this angle puts pitch 0 at a level
# head: the median offset against the 16 AFLW2000-3D pose labels (scripts/eval_pose.py).
PITCH_CORRECTION_DEG = 9.4
_c, _s = np.cos(np.radians(PITCH_CORRECTION_DEG)), np.sin(np.radians(PITCH_CORRECTION_DEG))
_PITCH_CORRECTION = np.array([[1.0, 0.0, 0.0], [0.0, _c, -_s], [0.0, _s, _c]])  # about x (numpy: no scipy.spatial)


def to_camera_axes(landmarks: np.ndarray) -> np.ndarray:
    """Image pixels (y down, z away) to the camera frame's axes (y up, z toward the viewer)."""
    return landmarks * np.array([1.0, -1.0, -1.0], dtype=landmarks.dtype)


def head_rotation(landmarks: np.ndarray) -> np.ndarray:
    """(3, 3) rotation taking head-frame vectors to the camera frame."""
    left, right, top, bottom = np.split(to_camera_axes(landmarks[_AXIS_POINTS].astype(np.float64)), _AXIS_SPLITS)
    x = (left - right).sum(axis=0)
    x /= np.linalg.norm(x)
    up = top.mean(axis=0) - bottom.mean(axis=0)
    y = up - x * (up @ x)
    y /= np.linalg.norm(y)
    return np.column_stack([x, y, np.cross(x, y)]) @ _PITCH_CORRECTION


def head_translation(landmarks: np.ndarray, image_size: tuple[int, int], focal_px: float) -> np.ndarray:
    """(3,) head centre in centimetres in the camera frame, from the eye-corner distance."""
    width, height = image_size
    right, left = landmarks[_EYE_OUTER[0]], landmarks[_EYE_OUTER[1]]
    px_per_cm = float(np.linalg.norm(left - right)) / EYE_CORNER_DISTANCE_CM
    depth = focal_px / px_per_cm
    u, v = landmarks[_CENTRE, :2].mean(axis=0, dtype=np.float64)
    return np.array([(u - width / 2) * depth / focal_px, -(v - height / 2) * depth / focal_px, -depth])


def matrix_to_quaternion(r: np.ndarray) -> tuple[float, float, float, float]:
    """(x, y, z, w) unit quaternion of a rotation matrix (Shepperd's method: stable for every angle)."""
    trace = r[0, 0] + r[1, 1] + r[2, 2]
    if trace > 0:
        s = 2.0 * np.sqrt(trace + 1.0)
        q = ((r[2, 1] - r[1, 2]) / s, (r[0, 2] - r[2, 0]) / s, (r[1, 0] - r[0, 1]) / s, 0.25 * s)
    elif r[0, 0] > r[1, 1] and r[0, 0] > r[2, 2]:
        s = 2.0 * np.sqrt(1.0 + r[0, 0] - r[1, 1] - r[2, 2])
        q = (0.25 * s, (r[0, 1] + r[1, 0]) / s, (r[0, 2] + r[2, 0]) / s, (r[2, 1] - r[1, 2]) / s)
    elif r[1, 1] > r[2, 2]:
        s = 2.0 * np.sqrt(1.0 + r[1, 1] - r[0, 0] - r[2, 2])
        q = ((r[0, 1] + r[1, 0]) / s, 0.25 * s, (r[1, 2] + r[2, 1]) / s, (r[0, 2] - r[2, 0]) / s)
    else:
        s = 2.0 * np.sqrt(1.0 + r[2, 2] - r[0, 0] - r[1, 1])
        q = ((r[0, 2] + r[2, 0]) / s, (r[1, 2] + r[2, 1]) / s, 0.25 * s, (r[1, 0] - r[0, 1]) / s)
    norm = float(np.sqrt(sum(c * c for c in q)))
    sign = 1.0 if q[3] >= 0 else -1.0
    return tuple(float(sign * c / norm) for c in q)


def matrix_to_yaw_pitch_roll(r: np.ndarray) -> tuple[float, float, float]:
    """Degrees of the intrinsic Y-X-Z decomposition R = Ry(yaw) Rx(pitch) Rz(roll)."""
    pitch = np.arcsin(np.clip(-r[1, 2], -1.0, 1.0))
    yaw = np.arctan2(r[0, 2], r[2, 2])
    roll = np.arctan2(r[1, 0], r[1, 1])
    return float(np.degrees(yaw)), float(np.degrees(pitch)), float(np.degrees(roll))


def pose_from_matrix(rotation: np.ndarray, translation: np.ndarray) -> HeadPose:
    """A HeadPose from a head-to-camera rotation matrix and a translation in cm."""
    yaw, pitch, roll = matrix_to_yaw_pitch_roll(rotation)
    return HeadPose.model_construct(
        rotation=matrix_to_quaternion(rotation),
        yaw=yaw,
        pitch=pitch,
        roll=roll,
        translation=tuple(float(t) for t in translation),
    )


def estimate_head_pose(landmarks: np.ndarray, image_size: tuple[int, int], focal_px: float | None = None) -> HeadPose:
    """Rigid pose of one face; `focal_px` defaults to the image width (about 53 degrees of view)."""
    focal = float(focal_px or image_size[0])
    return pose_from_matrix(head_rotation(landmarks), head_translation(landmarks, image_size, focal))
