"""Pure geometry: boxes, IoU, track ids and the rigid head pose (no media needed)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from facetrack.tracker.core.geometry import iou_matrix, landmark_box
from facetrack.tracker.stages.pose import (
    EYE_CORNER_DISTANCE_CM,
    estimate_head_pose,
    head_rotation,
    head_translation,
    matrix_to_quaternion,
    matrix_to_yaw_pitch_roll,
    to_camera_axes,
)
from facetrack.tracker.stages.tracks import TrackAssigner


def test_iou_matrix_known_values() -> None:
    a = np.array([[0, 0, 10, 10], [20, 20, 30, 30]])
    b = np.array([[5, 0, 15, 10], [0, 0, 10, 10], [100, 100, 101, 101]])
    iou = iou_matrix(a, b)
    assert iou.shape == (2, 3)
    assert iou[0, 0] == pytest.approx(50 / 150)
    assert iou[0, 1] == pytest.approx(1.0)
    assert iou[1].max() == 0.0


def test_landmark_box_encloses_points() -> None:
    points = np.array([[3, 4, 0], [10, -2, 5], [7, 8, -1]], np.float32)
    assert landmark_box(points).tolist() == [3, -2, 10, 8]


def test_track_ids_stay_with_moving_faces_and_are_never_reused() -> None:
    tracks = TrackAssigner(min_iou=0.3, max_missed=2)
    left, right = np.array([0, 0, 100, 100.0]), np.array([300, 0, 400, 100.0])
    first = tracks.assign([left, right], [0.9, 0.8])
    assert [t.track_id for t in first] == [0, 1]
    # Faces move a little and come back in the other order: ids follow the faces.
    second = tracks.assign([right + 5, left + 5], [None, None])
    assert [t.track_id for t in second] == [1, 0]
    assert second[0].score == pytest.approx(0.8)  # no new detection: the score is kept
    # The right face leaves for longer than max_missed, then returns: a new id.
    for _ in range(3):
        tracks.assign([left], [None])
    back = tracks.assign([left, right], [None, 0.7])
    assert back[0].track_id == 0 and back[1].track_id == 2


def test_one_face_keeps_its_track_while_it_overlaps_and_gets_a_new_one_after_a_jump() -> None:
    tracks = TrackAssigner(min_iou=0.3)
    face = np.array([0, 0, 100, 100.0])
    assert tracks.assign([face], [0.9])[0].track_id == 0
    assert tracks.assign([face + 20], [None])[0].track_id == 0  # IoU 0.47: the same face
    jumped = tracks.assign([face + 300], [0.8])[0]
    assert jumped.track_id == 1 and jumped.score == pytest.approx(0.8)
    assert tracks.ended == [] and tracks.assign([face + 300], [None])[0].track_id == 1


def _synthetic_face() -> np.ndarray:
    """478 points (image pixels, y down) with a symmetric rigid skeleton at the indices the pose uses."""
    rng = np.random.default_rng(0)
    cam = rng.normal(0, 5, (478, 3))  # camera axes: y up, z toward the viewer
    pairs = {33: (45, 10, 0), 133: (15, 10, 5), 127: (70, 20, -40), 234: (72, -10, -45), 98: (12, -30, 8),
             46: (50, 25, -2), 226: (48, 8, -4)}
    mirror = {33: 263, 133: 362, 127: 356, 234: 454, 98: 327, 46: 276, 226: 446}
    for right, (x, y, z) in pairs.items():
        cam[right] = (-x, y, z)
        cam[mirror[right]] = (x, y, z)
    for index, (y, z) in {10: (70, -5), 151: (55, 0), 9: (40, 3), 2: (-40, 12), 94: (-38, 14),
                          168: (20, 5), 6: (0, 12)}.items():
        cam[index] = (0, y, z)
    return to_camera_axes(cam)  # the same flip maps camera axes back to image axes


@pytest.mark.parametrize("euler", [(0, 0, 0), (30, 0, 0), (0, -20, 0), (0, 0, 15), (-35, 15, -10)])
def test_head_rotation_follows_a_known_rotation(euler: tuple[float, float, float]) -> None:
    face = _synthetic_face()
    rotation = Rotation.from_euler("YXZ", euler, degrees=True).as_matrix()
    cam = to_camera_axes(face)
    centre = cam.mean(axis=0)
    turned = to_camera_axes((cam - centre) @ rotation.T + centre)
    estimate = head_rotation(turned) @ head_rotation(face).T
    angle = np.degrees(Rotation.from_matrix(estimate @ rotation.T).magnitude())
    assert angle < 1e-6


def test_yaw_sign_and_euler_order_match_the_schema() -> None:
    face = _synthetic_face()
    base = head_rotation(face)
    turned_left = Rotation.from_euler("YXZ", (25, 0, 0), degrees=True).as_matrix()
    cam = to_camera_axes(face)
    # Undo the reference rotation so the synthetic face is exactly frontal, then turn it.
    frontal = cam @ base
    pose = estimate_head_pose(to_camera_axes(frontal @ turned_left.T), (640, 480))
    assert pose.yaw == pytest.approx(25, abs=1e-6)
    assert pose.pitch == pytest.approx(0, abs=1e-6) and pose.roll == pytest.approx(0, abs=1e-6)
    assert np.linalg.norm(pose.rotation) == pytest.approx(1.0)


def test_translation_from_eye_corner_distance() -> None:
    face = _synthetic_face()
    eye_px = np.linalg.norm(face[263] - face[33])
    focal = 800.0
    t = head_translation(face, (640, 480), focal)
    assert t[2] == pytest.approx(-focal * EYE_CORNER_DISTANCE_CM / eye_px)
    # Moving the face right in the image moves it right (x up) in the camera frame.
    shifted = face + np.array([50, 0, 0])
    assert head_translation(shifted, (640, 480), focal)[0] > t[0]


def test_quaternion_and_euler_match_scipy_for_random_rotations() -> None:
    rotations = Rotation.random(500, random_state=1)
    for rot in rotations:
        matrix = rot.as_matrix()
        expected = rot.as_quat()
        expected = expected if expected[3] >= 0 else -expected
        assert np.allclose(matrix_to_quaternion(matrix), expected, atol=1e-9)
        assert np.allclose(matrix_to_yaw_pitch_roll(matrix), rot.as_euler("YXZ", degrees=True), atol=1e-6)
