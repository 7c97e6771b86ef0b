"""One verdict per eye: how well an eye is seen, the reported P(closed), and eyeBlink on the verdict's side
(synthetic inputs; the real photos and clips are in tests/test_eye_pipeline.py and tests/test_stills.py)."""

from __future__ import annotations

import numpy as np
import pytest
from test_eye_geometry import synthetic_face

from facetrack.tracker.stages import eyes as E
from facetrack.tracker.stages.events import BlinkDetector, blink_weight, decide, eye_quality
from facetrack.tracker.stages.eye_options import EyeOptions

OPTIONS = EyeOptions()
OPEN = np.ones(2)


def test_a_well_seen_eye_keeps_the_engines_probability() -> None:
    lm = synthetic_face()  # eyes 80 px wide, level
    quality = eye_quality(OPTIONS, lm, (640, 480))
    assert quality.tolist() == [1.0, 1.0]
    verdict = decide(OPTIONS, np.array([0.93, 0.02]), quality, OPEN)
    assert verdict.closed.tolist() == [True, False] and verdict.visible.all()
    np.testing.assert_allclose(verdict.p_closed, [0.93, 0.02], rtol=1e-6)


def test_a_tiny_eye_reports_a_probability_near_one_half() -> None:
    lm = synthetic_face()
    centre = lm[:, :2].mean(0)
    lm[:, :2] = centre + (lm[:, :2] - centre) * (6.5 / 80)  # eyes 6.5 px wide: between eye_min_px and eye_good_px
    quality = eye_quality(OPTIONS, lm, (640, 480))
    assert 0 < quality[0] < 1 and quality[0] == pytest.approx(quality[1])
    verdict = decide(OPTIONS, np.array([0.99, 0.01]), quality, OPEN)
    assert 0.5 < verdict.p_closed[0] < 0.99 and 0.01 < verdict.p_closed[1] < 0.5
    assert verdict.closed.tolist() == [True, False]  # pulled toward 0.5, not across it


def test_an_eye_turned_away_or_outside_the_picture_is_not_seen_and_follows_the_other() -> None:
    lm = synthetic_face()
    lm[E.R_CORNERS[0], 0] = lm[E.R_CORNERS[1], 0] - 12.0  # the right eye foreshortened to 12 px of the left's 80
    quality = eye_quality(OPTIONS, lm, (640, 480))
    assert quality[0] == 1.0 and quality[1] == 0.0
    verdict = decide(OPTIONS, np.array([0.97, 0.03]), quality, OPEN)
    assert verdict.visible.tolist() == [True, False] and np.isnan(verdict.p_closed[1])
    assert verdict.closed.tolist() == [True, True]  # an unseen eye closes with the seen one
    cut = synthetic_face()
    assert eye_quality(OPTIONS, cut, (300, 480))[0] == 0.0  # the left eye (image right, x 360-440) cut off


def test_blink_weights_take_the_verdicts_side() -> None:
    verdict = decide(OPTIONS, np.array([0.8, 0.1]), np.ones(2), OPEN)
    weights = blink_weight(OPTIONS, np.array([0.02, 0.9]), verdict)  # the fit said open / closed: wrong twice
    assert weights[0] == pytest.approx(0.8) and weights[1] == pytest.approx(OPTIONS.blink_weight_open_max)
    assert blink_weight(OPTIONS, np.array([0.95, 0.2]), verdict).tolist() == pytest.approx([0.95, 0.2])
    unsure = decide(OPTIONS, np.array([0.52, 0.52]), np.ones(2), OPEN)
    assert (blink_weight(OPTIONS, np.zeros(2), unsure) >= OPTIONS.blink_weight_closed).all()


def test_a_wink_stays_one_eyed() -> None:
    """The fit couples the lids (a wink pulls the open eye's weight up); the verdict keeps it below 0.5."""
    detector = BlinkDetector()
    events = []
    for frame, p in enumerate(([0.02, 0.03], [0.95, 0.04], [0.97, 0.05], [0.9, 0.03], [0.03, 0.02])):
        verdict = decide(OPTIONS, np.array(p), np.ones(2), OPEN)
        weights = blink_weight(OPTIONS, np.array([0.4, 0.62]) if p[0] > 0.5 else np.zeros(2), verdict)
        if p[0] > 0.5:
            assert weights[0] >= 0.9 and weights[1] < OPTIONS.blink_weight_closed
        events += detector.update(frame, tuple(verdict.closed.tolist()))
    assert [(e.kind, e.start_frame, e.end_frame) for e in events] == [("wink_left", 1, 3)]
