"""Eye geometry: crops (mirrored left eye), lid openings, ELAM, gaze, blink/wink events."""

from __future__ import annotations

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.stages import eyes as E
from facetrack.tracker.stages.events import BlinkDetector, decide
from facetrack.tracker.stages.eye_options import EyeOptions


def synthetic_face(opening: tuple[float, float] = (0.3, 0.3), iris_shift: float = 0.0) -> np.ndarray:
    """478 points with two almond eyes (image coordinates, y down): the subject's right eye on the image's left."""
    lm = np.zeros((478, 3), np.float32)
    lm[:, :2] = (320.0, 300.0)
    t = np.linspace(0.1, 0.9, 7)  # along the eye, outer -> inner
    for (outer, inner), up, lo, row, iris, x_out, x_in, op in (
        (E.R_CORNERS, E.R_UPPER, E.R_LOWER, E.R_UPPER_OUTER_ROW, E.R_IRIS, 200.0, 280.0, opening[1]),
        (E.L_CORNERS, E.L_UPPER, E.L_LOWER, E.L_UPPER_OUTER_ROW, E.L_IRIS, 440.0, 360.0, opening[0]),
    ):
        w = abs(x_in - x_out)
        lm[outer, :2], lm[inner, :2] = (x_out, 200.0), (x_in, 200.0)
        xs = x_out + (x_in - x_out) * t
        half = np.sin(np.pi * t) / np.sin(np.pi * 0.5) * op * w / 2
        lm[up, 0], lm[up, 1] = xs, 200.0 - half
        lm[lo, 0], lm[lo, 1] = xs, 200.0 + half
        lm[row, 0], lm[row, 1] = xs, 200.0 - half - 8
        cx = (x_out + x_in) / 2 + iris_shift * w
        lm[iris, :2] = (cx, 200.0)
    lm[E.MOUTH_CORNERS[0], :2], lm[E.MOUTH_CORNERS[1], :2] = (280.0, 400.0), (360.0, 400.0)
    lm[E.LIP_INNER_UPPER, 1], lm[E.LIP_INNER_LOWER, 1] = 395.0, 405.0
    return lm


def test_relative_openings_and_ear() -> None:
    lm = synthetic_face((0.3, 0.1))
    op = E.relative_openings(lm)
    assert op[0] > 0.2 and op[1] < 0.1  # left (image right) open, right closed-ish
    ear = E.eye_aspect_ratio(lm)
    assert ear[0] > 2 * ear[1]


def test_crops_mirror_the_left_eye() -> None:
    lm = synthetic_face()
    img = np.zeros((480, 640, 3), np.uint8)
    img[150:250, 200:240] = 255  # bright patch at the subject's right eye's outer half (image left)
    img[150:250, 400:440] = 255  # and at the left eye's outer half (image right)
    crops = E.cut_eye_crops(img, lm)
    assert crops.shape == (2, E.CROP_SIZE[1], E.CROP_SIZE[0])
    # both crops show the bright outer half on the same side: the left eye is mirrored
    w = E.CROP_SIZE[0]
    for c in crops:
        assert c[:, : w // 2].mean() > c[:, w // 2:].mean() + 50


def test_elam_closes_an_open_eye_by_p() -> None:
    lm = synthetic_face((0.3, 0.3))
    ref = E.relative_openings(lm)
    out, openness = E.elam_correct(lm, np.array([1.0, 0.0]), ref)
    op = E.relative_openings(out)
    assert op[0] < 1e-6  # P = 1: the paper's rule, lids meet
    assert np.isclose(op[1], ref[1])  # P = 0: untouched
    assert np.isclose(openness[0], 0.0) and np.isnan(openness[1])
    # the lower lid never moves
    np.testing.assert_array_equal(out[E.L_LOWER], lm[E.L_LOWER])


def test_elam_partial_and_never_closes_twice() -> None:
    lm = synthetic_face((0.3, 0.3))
    ref = E.relative_openings(lm)
    out, _ = E.elam_correct(lm, np.array([0.7, 0.7]), ref)
    np.testing.assert_allclose(E.relative_openings(out), 0.3 * ref, rtol=1e-5)
    # landmarks already showing a nearly closed eye are not closed further
    lm_closed = synthetic_face((0.05, 0.05))
    out2, _ = E.elam_correct(lm_closed, np.array([0.7, 0.7]), ref)
    np.testing.assert_allclose(out2, lm_closed)
    # below the threshold nothing moves
    out3, _ = E.elam_correct(lm, np.array([0.4, 0.4]), ref)
    np.testing.assert_allclose(out3, lm)


def test_gaze_from_irises() -> None:
    centre = E.iris_gaze(synthetic_face(iris_shift=0.0))
    assert centre.max() < 0.05
    # iris shifted toward the image's right: the subject looks to their left, i.e. the left eye looks out
    # (away from the nose) and the right eye looks in
    g = E.iris_gaze(synthetic_face(iris_shift=0.15))
    down, inward, out, up = range(4)
    assert g[0, out] > 0.5 and g[1, inward] > 0.5
    assert g[0, inward] == 0 and g[1, out] == 0


def test_blink_and_wink_events() -> None:
    d = BlinkDetector()
    seq = [(0, 0), (1, 1), (1, 1), (0, 0), (0, 0), (1, 0), (1, 0), (0, 0), (0, 1), (0, 0)]
    events = []
    for i, (a, b) in enumerate(seq):
        events += d.update(i, (bool(a), bool(b)))
    assert [(e.kind, e.start_frame, e.end_frame) for e in events] == [
        ("blink", 1, 2), ("wink_left", 5, 6), ("wink_right", 8, 8)]
    d.update(20, (True, True))
    assert [(e.kind, e.start_frame, e.end_frame) for e in d.flush()] == [("blink", 20, 20)]


def test_mouth_openness() -> None:
    lm = synthetic_face()
    assert abs(E.mouth_openness(lm) - 10 / 80) < 1e-6


def test_gaze_up_and_down() -> None:
    lm = synthetic_face()
    for iris in (E.L_IRIS, E.R_IRIS):
        lm[iris, 1] += 0.1 * 80  # irises lower in the image: looking down
    g = E.iris_gaze(lm)
    down, inward, out, up = range(4)
    assert (g[:, down] > 0.5).all() and (g[:, up] == 0).all()


def test_the_closure_verdict_uses_the_best_evidence_and_the_options_thresholds() -> None:
    options = EyeOptions()
    weights = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)
    weights[ARKIT_BLENDSHAPES.index("eyeBlinkLeft")] = 0.6
    p, openness, seen = np.array([0.1, 0.9]), np.array([0.2, 0.9]), np.ones(2)
    none = np.full(2, np.nan)
    assert decide(options, p, seen, openness, weights).closed.tolist() == [False, True]  # the engine wins
    assert decide(options, none, seen, openness, weights).closed.tolist() == [True, False]  # then the weights
    assert decide(options, none, seen, openness).closed.tolist() == [True, False]  # then the opening
    assert decide(options.model_copy(update={"blink_weight_closed": 0.7}), none, seen, openness,
                  weights).closed.tolist() == [False, False]
    assert decide(options.model_copy(update={"p_closed_closed": 0.95}), p, seen, openness).closed.tolist() == [
        False, False]
    assert decide(options.model_copy(update={"openness_closed": 0.1}), none, seen, openness).closed.tolist() == [
        False, False]


def test_every_eye_closure_threshold_is_a_described_option() -> None:
    fields = EyeOptions.model_fields
    for name in ("closed_threshold", "blink_weight_closed", "blink_weight_open_max", "p_closed_closed",
                 "openness_closed", "blink_overlap", "calibrate_p_open", "calibrate_opening_open", "gaze_hold_p_closed",
                 "blink_snap", "eye_min_px", "eye_good_px", "eye_min_width_ratio", "eye_good_width_ratio"):
        assert fields[name].description, name
    assert BlinkDetector().min_overlap == fields["blink_overlap"].default
