"""The Blender add-on's take processing without Blender: resampling, neutral calibration, name map, bones."""

from __future__ import annotations

import math

import numpy as np
import pytest
from blender_addon import addon_module

_core = addon_module("core")
_processing = addon_module("processing")
ARKIT_BLENDSHAPES, FaceSample, TakeError = _core.ARKIT_BLENDSHAPES, _core.FaceSample, _core.TakeError
calibrate, eye_rotations, jaw_rotations = _processing.calibrate, _processing.eye_rotations, _processing.jaw_rotations
neutral_of, parse_name_map = _processing.neutral_of, _processing.parse_name_map
quat_multiply, resample = _processing.quat_multiply, _processing.resample

JAW = ARKIT_BLENDSHAPES.index("jawOpen")


def _yaw(deg: float) -> tuple[float, float, float, float]:
    return (0.0, math.sin(math.radians(deg) / 2), 0.0, math.cos(math.radians(deg) / 2))


def _take(fps: float, count: int, value=lambda i: i / 10, yaw=lambda i: 0.0, start: float = 3.0) -> list[FaceSample]:
    samples = []
    for i in range(count):
        w = [0.0] * 52
        w[JAW] = value(i)
        samples.append(FaceSample(i, start + i / fps, w, _yaw(yaw(i)), 1))
    return samples


def test_a_30_fps_take_in_a_25_fps_scene_is_interpolated_not_dropped() -> None:
    take = _take(30, 31, value=lambda i: i / 30)  # jawOpen ramps 0 -> 1 over one second
    track = resample(take, 25, 1)
    assert track.frames.tolist() == list(range(1, 27))  # one second at 25 fps: frames 1..26
    # A ramp resampled linearly stays the same ramp: frame k holds the value at k/25 s.
    np.testing.assert_allclose(track.weights[:, JAW], np.arange(26) / 25, atol=1e-9)
    # Nearest-sample keying would have put sample round(k * 30/25) there instead.
    assert not np.allclose(track.weights[:, JAW], [round(k * 1.2) / 30 for k in range(26)], atol=1e-6)


def test_a_slow_take_gets_in_between_frames_and_rotations_are_interpolated() -> None:
    take = _take(12.5, 3, value=lambda i: [0.0, 1.0, 0.0][i], yaw=lambda i: [0.0, 40.0, 0.0][i])
    track = resample(take, 25, 10)
    assert track.frames.tolist() == [10, 11, 12, 13, 14]
    np.testing.assert_allclose(track.weights[:, JAW], [0, 0.5, 1, 0.5, 0], atol=1e-9)
    halfway = track.rotations[1]
    assert np.linalg.norm(halfway) == pytest.approx(1.0)
    assert 2 * math.degrees(math.atan2(halfway[1], halfway[3])) == pytest.approx(20.0, abs=1e-6)


def test_quaternion_sign_flips_do_not_spin_the_head() -> None:
    take = _take(25, 2)
    take[1].rotation = tuple(-v for v in _yaw(10))  # the same rotation as +q
    track = resample(take, 50, 1)
    mid = track.rotations[1] * np.sign(track.rotations[1][3])
    assert 2 * math.degrees(math.atan2(mid[1], mid[3])) == pytest.approx(5.0, abs=1e-6)


def test_frames_without_blendshapes_keep_the_head_and_bridge_the_weights() -> None:
    take = _take(25, 3, value=lambda i: i / 2)
    take[1].blendshapes = None
    track = resample(take, 25, 1)
    np.testing.assert_allclose(track.weights[:, JAW], [0.0, 0.5, 1.0])
    take = [FaceSample(0, 0.0, None, _yaw(0), 1), FaceSample(1, 0.04, None, _yaw(0), 1)]
    assert resample(take, 25, 1).weights is None
    with pytest.raises(TakeError, match="no frame"):
        resample([], 25, 1)


def test_neutral_calibration_subtracts_the_rest_face_and_keeps_the_full_range() -> None:
    take = _take(25, 20, value=lambda i: 0.2 if i < 5 else 1.0, yaw=lambda i: 10.0 if i < 5 else 30.0)
    neutral = neutral_of(take, 0, 4)
    assert neutral.weights[JAW] == pytest.approx(0.2)
    track = calibrate(resample(take, 25, 1), neutral)
    np.testing.assert_allclose(track.weights[:5, JAW], 0.0, atol=1e-9)
    np.testing.assert_allclose(track.weights[10:, JAW], 1.0, atol=1e-9)  # a full jawOpen still reaches 1
    rest_relative = 2 * math.degrees(math.atan2(track.rotations[10][1], track.rotations[10][3]))
    assert rest_relative == pytest.approx(20.0, abs=1e-6)
    with pytest.raises(TakeError, match="no frame 50-60"):
        neutral_of(take, 50, 60)


def test_name_map_is_parsed_and_checked() -> None:
    assert parse_name_map(" jawOpen = MouthOpen , eyeBlinkLeft=Blink_L,") == {"jawOpen": "MouthOpen",
                                                                            "eyeBlinkLeft": "Blink_L"}
    assert parse_name_map("") == {}
    with pytest.raises(TakeError, match="not an ARKit"):
        parse_name_map("JawOpen=x")
    with pytest.raises(TakeError, match="ARKIT=KEY"):
        parse_name_map("jawOpen")


def test_jaw_and_eye_rotations_follow_the_weights() -> None:
    w = np.zeros((1, 52))
    w[0, JAW] = 1.0
    q = jaw_rotations(w, 25.0, 8.0)[0]
    assert 2 * math.degrees(math.atan2(q[0], q[3])) == pytest.approx(25.0)  # about +x: the chin goes down
    w[:] = 0
    w[0, ARKIT_BLENDSHAPES.index("eyeLookOutLeft")] = 1.0
    w[0, ARKIT_BLENDSHAPES.index("eyeLookInRight")] = 0.5
    left, right = eye_rotations(w)
    assert 2 * math.degrees(math.atan2(left[0][1], left[0][3])) == pytest.approx(30.0)  # toward the subject's left
    assert 2 * math.degrees(math.atan2(right[0][1], right[0][3])) == pytest.approx(15.0)
    identity = quat_multiply(left, left * np.array([-1, -1, -1, 1]))
    np.testing.assert_allclose(identity[0], [0, 0, 0, 1], atol=1e-12)
