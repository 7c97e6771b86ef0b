"""The regress engine's per-track rest face: a person's own calm reading is taken off their weights, as the fit
solves against each person's rest face; the eyes and jawOpen are left alone. Real engine, real clip for the last."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.stages.regress_rest import RegressRest, RegressRestConfig

BROW, JAW, BLINK = (ARKIT_BLENDSHAPES.index(n) for n in ("browOuterUpLeft", "jawOpen", "eyeBlinkLeft"))
SMILE = ARKIT_BLENDSHAPES.index("mouthSmileLeft")


def _frame(brow: float = 0.0, smile: float = 0.0, jaw: float = 0.0, blink: float = 0.0) -> np.ndarray:
    w = np.zeros(len(ARKIT_BLENDSHAPES), np.float32)
    w[[BROW, SMILE, JAW, BLINK]] = brow, smile, jaw, blink
    return w


def test_a_persons_calm_reading_is_taken_off_after_the_warm_up_capped() -> None:
    """Brows that read 0.12 on every calm frame (a person's high brows) read 0 once the rest face exists; one that
    reads 0.5 at rest loses only the cap; a smile on top of the brows is kept; eyes and jaw are never changed."""
    rest = RegressRest(RegressRestConfig(window=20, early=5, keep=0.2, cap=0.2))
    calm = _frame(brow=0.12, jaw=0.1, blink=0.3)
    before = [rest.apply(0, calm) for _ in range(4)]
    assert all(np.array_equal(b, calm) for b in before)  # no rest face yet: weights as they are
    assert rest.rest_face(0) is None and rest.calibration(0) is None
    after = rest.apply(0, calm)  # the fifth frame: the provisional rest face
    assert after[BROW] == pytest.approx(0.0) and after[JAW] == pytest.approx(0.1) and after[BLINK] == pytest.approx(0.3)
    smiling = rest.apply(0, _frame(brow=0.12, smile=0.7, jaw=0.1, blink=0.3))
    assert smiling[SMILE] == pytest.approx(0.7) and smiling[BROW] == pytest.approx(0.0)
    assert rest.calibration(0) == "auto"

    high = RegressRest(RegressRestConfig(window=20, early=5, keep=0.2, cap=0.2))
    out = [high.apply(1, _frame(brow=0.5)) for _ in range(6)]
    assert out[-1][BROW] == pytest.approx(0.3)


def test_the_calmest_frames_make_the_rest_face_not_the_expressive_ones() -> None:
    """A warm-up that is mostly smiles: the rest face comes from its calm frames, so the smiles are kept."""
    rest = RegressRest(RegressRestConfig(window=10, early=0, keep=0.2, cap=0.2))
    frames = [_frame(smile=0.8)] * 8 + [_frame(brow=0.05)] * 2
    for w in frames:
        rest.apply(3, w)
    r = rest.rest_face(3)
    assert r[SMILE] == pytest.approx(0.0) and r[BROW] == pytest.approx(0.05)
    assert rest.apply(3, _frame(smile=0.8))[SMILE] == pytest.approx(0.8)


def test_recalibration_holds_the_old_rest_face_until_the_new_one_exists_and_tracks_are_apart() -> None:
    rest = RegressRest(RegressRestConfig(window=3, early=0, keep=1.0, cap=0.2))
    for _ in range(3):
        rest.apply(0, _frame(brow=0.1))
        rest.apply(1, _frame(brow=0.04))
    assert rest.rest_face(0)[BROW] == pytest.approx(0.1) and rest.rest_face(1)[BROW] == pytest.approx(0.04)
    rest.recalibrate([0], 2)
    assert rest.apply(0, _frame(brow=0.15))[BROW] == pytest.approx(0.05)  # the old rest face, while collecting
    assert rest.calibration(0) == "auto"
    rest.apply(0, _frame(brow=0.15))
    assert rest.rest_face(0)[BROW] == pytest.approx(0.15) and rest.calibration(0) == "on demand"
    assert rest.calibration(1) == "auto"
    rest.forget([0])
    assert rest.rest_face(0) is None and rest.track_ids() == [1]


def test_a_saved_neutral_is_refused_with_the_regress_engine(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="not available with the regress engine"):
        TrackerConfig(coefficients="regress", calibration={"neutral": tmp_path / "actor.json"})
    TrackerConfig(coefficients="regress", calibration={"seconds": 1.0})  # --calibrate N works with both


@pytest.mark.media
def test_engine_regress_reports_each_tracks_rest_face_on_a_real_clip(short_face_clip: Path) -> None:
    """Through the real pipeline: the metadata says how rest faces are found; frames before the warm-up's first
    rest face carry no calibration, later ones say it; --calibrate 1 takes it from the first second."""
    for calibration, mode, first in ((None, "auto", 30), ({"seconds": 1.0}, "on demand", None)):
        config = TrackerConfig(coefficients="regress", **({"calibration": calibration} if calibration else {}))
        with Tracker(config) as tracker:
            results = [r for r in tracker.track(str(short_face_clip)) if r.faces]
            metadata = tracker.metadata
        assert metadata.calibration["mode"] == mode
        calibrated = [r.frame_index for r in results if r.faces[0].coefficients.calibration == mode]
        assert calibrated, "no frame reported a rest face"
        assert all(r.faces[0].coefficients.calibration in (None, mode) for r in results)
        if first is not None:
            assert min(calibrated) == results[first - 1].frame_index
        frames = metadata.calibration["window_frames"]
        assert frames == (120 if first else round(metadata.source.fps or 30))
