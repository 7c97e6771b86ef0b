"""The expression-label rules on hand-made rows and weights with known verdicts."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.label_checks import LABELS, LabelRow, Summary, antagonistic, check_frame, read_labels


def row(**grades: int) -> LabelRow:
    g = {k: 0 for k in LABELS}
    g.update(grades)
    return LabelRow("T", "videos/x.mp4", 3, g)


def weights(**values: float) -> np.ndarray:
    w = np.zeros(52, np.float32)
    for k, v in values.items():
        w[ARKIT_BLENDSHAPES.index(k)] = v
    return w


def test_clear_smile_found_and_missed():
    r = row(smileL=2, smileR=2, jaw=1)
    v = check_frame(r, weights(mouthSmileLeft=0.35, mouthSmileRight=0.34))
    assert [ok for *_, ok in v.clear] == [True, False]
    assert v.neutral is None  # not all labels are 0


def test_group_takes_the_larger_weight():
    v = check_frame(row(pucker=2), weights(mouthFunnel=0.5, mouthPucker=0.1))
    assert v.clear == [("pucker", "mouthFunnel", pytest.approx(0.5), True)]
    v = check_frame(row(browUp=2), weights(browOuterUpRight=0.31))
    assert v.clear[0][3]
    v = check_frame(row(frown=2), weights(mouthFrownLeft=0.29))
    assert not v.clear[0][3]


def test_absent_thresholds_differ_per_label():
    # jaw 0 allows up to 0.2, smile 0.25, brows 0.3
    v = check_frame(row(jaw=1), weights(jawOpen=0.21))
    assert all(lab != "jaw" for lab, *_ in v.absent)  # label 1 is never checked
    r = row(jaw=0, smileL=1, smileR=1, pucker=1, frown=1, chin=1, browUp=1, browDown=1)
    assert not check_frame(r, weights(jawOpen=0.21)).absent[0][3]
    assert check_frame(r, weights(jawOpen=0.2)).absent[0][3]
    r = row(jaw=1, smileL=0, smileR=1, pucker=1, frown=1, chin=1, browUp=1, browDown=0)
    v = check_frame(r, weights(mouthSmileLeft=0.26, browDownRight=0.3))
    assert [(lab, ok) for lab, _, _, ok in v.absent] == [("smileL", False), ("browDown", True)]


def test_neutral_face_ignores_eyes_and_mouth_close():
    r = row()
    assert r.neutral
    v = check_frame(r, weights(eyeBlinkLeft=1.0, eyeSquintRight=0.8, mouthClose=0.5, cheekSquintLeft=0.29))
    assert v.neutral == ("cheekSquintLeft", pytest.approx(0.29), True)
    v = check_frame(r, weights(mouthShrugUpper=0.31))
    assert v.neutral[2] is False
    assert "neutral but mouthShrugUpper=0.31" in v.failures()


def test_antagonistic_pairs_need_both_above():
    w = np.stack([
        weights(mouthSmileLeft=0.9, mouthFrownLeft=0.31),  # same side: antagonistic
        weights(mouthSmileLeft=0.9, mouthFrownRight=0.9),  # other side: allowed
        weights(mouthPucker=0.5, mouthStretchRight=0.4),
        weights(browDownRight=0.3, browOuterUpRight=0.9),  # 0.3 is not above 0.3
        weights(eyeWideLeft=0.4, eyeSquintLeft=0.4),
    ])
    assert antagonistic(w).tolist() == [True, False, True, False, True]


def test_summary_counts(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("id,clip,frame,jaw,smileL,smileR,pucker,frown,chin,browUp,browDown\n"
                 "A,videos/a.mp4,0,2,2,2,0,0,0,1,1\n"
                 "B,videos/a.mp4,5,0,0,0,0,0,0,0,0\n")
    rows = read_labels(p)
    s = Summary()
    s.add(check_frame(rows[0], weights(jawOpen=0.6, mouthSmileLeft=0.8, mouthSmileRight=0.1, mouthPucker=0.3)))
    s.add(check_frame(rows[1], weights()))
    s.add_clip(np.stack([weights(), weights(jawLeft=0.5, jawRight=0.5)]))
    assert (s.clear_found, s.clear_total) == (2, 3)
    assert (s.absent_low, s.absent_total) == (10, 11)  # pucker 0.3 > 0.25 on A
    assert (s.neutral_ok, s.neutral_total) == (1, 1)
    assert (s.antagonistic_frames, s.frames) == (1, 2)
    assert list(s.failures) == ["A"]
    assert "clear expressions found: 2/3 (66.7%)" in s.lines()
    assert s.by_label["smileR"] == [0, 1, 1, 1] and s.by_label["pucker"] == [0, 0, 1, 2]
    assert s.by_label["jaw"] == [1, 1, 1, 1]
    assert "  smileR    clear   0/1   absent   1/1" in s.label_lines()


def test_bad_label_file_is_refused(tmp_path):
    p = tmp_path / "labels.csv"
    p.write_text("id,clip,frame,jaw\nA,x.mp4,0,2\n")
    with pytest.raises(ValueError, match="missing columns"):
        read_labels(p)
    p.write_text("id,clip,frame,jaw,smileL,smileR,pucker,frown,chin,browUp,browDown\nA,x.mp4,0,3,0,0,0,0,0,0,0\n")
    with pytest.raises(ValueError, match="outside 0/1/2"):
        read_labels(p)


def test_two_runs_compared_alone_combined_and_at_their_ceiling(tmp_path):
    """scripts/compare_expression_runs.py: each run's counts, their mean / larger / smaller, and what some run finds."""
    labels = tmp_path / "labels.csv"
    labels.write_text("id,clip,frame,jaw,smileL,smileR,pucker,frown,chin,browUp,browDown\n"
                      "A,videos/a.mp4,0,0,2,0,0,0,0,0,0\n"
                      "B,videos/a.mp4,1,0,0,2,0,0,0,0,0\n")
    first = np.stack([weights(mouthSmileLeft=0.9), weights(mouthSmileRight=0.2)])
    second = np.stack([weights(mouthSmileLeft=0.1), weights(mouthSmileRight=0.6, mouthFrownRight=0.5)])
    for name, run in (("first", first), ("second", second)):
        np.savez(tmp_path / f"{name}.npz", **{"videos__a.mp4": run})  # as eval_expressions --save names a clip
    script = Path(__file__).resolve().parents[1] / "scripts" / "compare_expression_runs.py"
    out = subprocess.run([sys.executable, str(script), str(tmp_path / "first.npz"), str(tmp_path / "second.npz"),
                          "--labels", str(labels)], capture_output=True, text=True, check=True).stdout
    lines = [line for line in out.splitlines() if not line.startswith("  ")]
    assert lines[1:] == [
        "first: 1/2, 14/14, 0/0, 0/2",
        "second: 1/2, 13/14, 0/0, 1/2",  # frown 0.5 where frown is absent, and beside a smile
        "mean of first, second: 2/2, 14/14, 0/0, 0/2",  # smiles 0.5 and 0.4, the frown 0.25: at the absent limit
        "larger of first, second: 2/2, 13/14, 0/0, 1/2",
        "smaller of first, second: 0/2, 14/14, 0/0, 0/2",
        "ceiling (found by some run on the frame): 2/2 jaw 0/0, smileL 1/1, smileR 1/1, pucker 0/0, frown 0/0, "
        "chin 0/0, browUp 0/0, browDown 0/0",
    ]
