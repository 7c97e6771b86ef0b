"""Online LDL: the lid and lip weights follow the landmarks' pair distances (built-in rig, a real face)."""

from __future__ import annotations

import copy

import av
import numpy as np
import pytest

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.stages import eyes as E
from facetrack.tracker.stages.dynamics import LipLidDynamics

BL, BR = ARKIT_BLENDSHAPES.index("eyeBlinkLeft"), ARKIT_BLENDSHAPES.index("eyeBlinkRight")
JAW = ARKIT_BLENDSHAPES.index("jawOpen")


@pytest.fixture(scope="module")
def fitted(face_clip):
    from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh
    from facetrack.tracker.facemodel.fitter import FaceModelFitter

    with av.open(str(face_clip)) as c:
        frames = [f.to_ndarray(format="rgb24") for _, f in zip(range(12), c.decode(video=0))]
    with MediapipeFaceMesh() as mesh:
        lms = [mesh.process(im)[0].landmarks for im in frames]
    fitter = FaceModelFitter()
    fits = [fitter.fit(0, lm, frames[0].shape[1::-1]) for lm in lms]
    return fits[-1], lms[-1]


def test_closed_lids_give_full_blink(fitted) -> None:
    fit, lm = fitted
    ref = E.relative_openings(lm)
    closed, _ = E.elam_correct(lm, np.array([1.0, 1.0]), ref)
    f = copy.copy(fit)
    LipLidDynamics().refine(f, closed, ref)
    assert f.blendshapes[BL] > 0.9 and f.blendshapes[BR] > 0.9
    # other weights untouched
    others = [i for i in range(52) if ARKIT_BLENDSHAPES[i].startswith(("brow", "cheek", "nose"))]
    np.testing.assert_allclose(f.blendshapes[others], fit.blendshapes[others], atol=1e-6)


def test_half_closed_and_wink(fitted) -> None:
    fit, lm = fitted
    ref = E.relative_openings(lm)
    half, _ = E.elam_correct(lm, np.array([0.5, 1.0]), ref, threshold=0.4)
    f = copy.copy(fit)
    LipLidDynamics().refine(f, half, ref)
    assert 0.35 < f.blendshapes[BL] < 0.65
    assert f.blendshapes[BR] > 0.9


def test_open_eyes_stay_open_and_weights_in_range(fitted) -> None:
    fit, lm = fitted
    f = copy.copy(fit)
    LipLidDynamics().refine(f, lm, E.relative_openings(lm))
    assert f.blendshapes[BL] < 0.15 and f.blendshapes[BR] < 0.15
    assert f.blendshapes.min() >= 0 and f.blendshapes.max() <= 1


def test_mouth_opening_follows_the_lips(fitted) -> None:
    fit, lm = fitted
    opened = np.array(lm, copy=True)
    width = np.linalg.norm(lm[E.MOUTH_CORNERS[0], :2] - lm[E.MOUTH_CORNERS[1], :2])
    opened[E.LIP_INNER_LOWER, 1] += 0.3 * width  # drop the lower lip
    f0, f1 = copy.copy(fit), copy.copy(fit)
    d = LipLidDynamics()
    d.refine(f0, lm)
    d.refine(f1, opened)
    assert f1.blendshapes[JAW] > f0.blendshapes[JAW] + 0.2
