"""The learned landmark-to-weights head: packaged as plain arrays, mirror-exact, reads the model's faces,
and its weights reach the tracker's output through the refinements after the fit."""

from __future__ import annotations

import numpy as np
import pytest

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.compact import load_default_model
from facetrack.tracker.facemodel.expression_head import arkit_mirror, load_head, packaged_head
from facetrack.tracker.facemodel.fitter import FaceModelFitter, FitterConfig
from facetrack.tracker.facemodel.format import ModelError
from facetrack.tracker.facemodel.prepared import PreparedModel

MODEL = load_default_model()
HEAD = packaged_head()
W, H, F = 640, 480, 640.0


def arkit(name: str) -> int:
    return ARKIT_BLENDSHAPES.index(name)


def expression(**weights: float) -> np.ndarray:
    e = np.zeros(MODEL.n_expression)
    for name, v in weights.items():
        e[MODEL.exp_names.index(name)] = v
    return e


def project(identity: np.ndarray, e: np.ndarray, yaw: float = 0.0) -> np.ndarray:
    v = MODEL.shape(identity, e).astype(np.float64)[:478]
    a = np.deg2rad(yaw)
    r = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    cam = (v - v.mean(0)) @ r.T + [0.0, 0.0, -55.0]
    px = np.stack([W / 2 + F * cam[:, 0] / -cam[:, 2], H / 2 - F * cam[:, 1] / -cam[:, 2]], axis=1)
    px[~MODEL.lmk_valid] = np.nan
    return px


def test_packaged_head_is_small_plain_arrays_for_the_default_model(tmp_path):
    assert HEAD is not None and HEAD.model_id == MODEL.id
    assert np.array_equal(HEAD.landmarks, PreparedModel(MODEL, 0.5).idx)
    path = HEAD.save(tmp_path / "head.npz")
    assert path.stat().st_size < 3e6
    again = load_head(path)
    x = np.random.default_rng(0).normal(0, 0.05, (4, 3 * len(HEAD.landmarks))).astype(np.float32)
    np.testing.assert_allclose(again(x), HEAD(x), atol=1e-3)  # float16 weights round-trip
    bad = tmp_path / "bad.npz"
    np.savez(bad, metadata=np.array('{"format": "other"}'))
    with pytest.raises(ModelError, match="format"):
        load_head(bad)
    with pytest.raises(ModelError, match="does not exist"):
        load_head(tmp_path / "missing.npz")


def test_mirror_image_gets_exactly_the_mirrored_weights():
    x = np.random.default_rng(1).normal(0, 0.05, (8, 3 * len(HEAD.landmarks))).astype(np.float32)
    np.testing.assert_allclose(HEAD(HEAD.mirror_features(x)), HEAD(x)[:, arkit_mirror()], atol=1e-5)


def test_head_reads_the_model_s_expressions_and_a_calm_face():
    """Displacements of the packaged model's own shapes (at the fitted landmarks) read as those shapes."""
    pm = PreparedModel(MODEL, 0.5)
    neutral = pm.identity_shape(np.zeros(pm.k_id))

    def read(**weights: float) -> np.ndarray:
        e = expression(**weights)
        return HEAD(HEAD.features(neutral + (pm.basis_flat_exp @ e).reshape(-1, 3), neutral, pm.radius))

    calm = read()
    non_eye = np.array([not n.startswith("eye") for n in ARKIT_BLENDSHAPES])
    assert calm[non_eye].max() < 0.15
    assert read(mouthSmile_L=0.8, mouthSmile_R=0.8)[[arkit("mouthSmileLeft"), arkit("mouthSmileRight")]].min() > 0.5
    frown = read(mouthFrown_L=0.8, mouthFrown_R=0.8)
    assert frown[arkit("mouthFrownLeft")] > 0.5 and frown[arkit("mouthSmileLeft")] < 0.1
    assert read(jawOpen=0.4)[arkit("jawOpen")] > 0.5  # ARKit's scale: twice ICT's (training JAW_SCALE)
    assert read(browDown_L=0.8, browDown_R=0.8)[arkit("browDownLeft")] > 0.5


def test_fitter_gives_the_head_s_weights_and_the_smaller_until_the_rest_face_exists():
    ident = np.random.default_rng(2).normal(size=MODEL.n_identity) * 0.5
    fitter = FaceModelFitter(MODEL, FitterConfig(rest_window=20, rest_early=0))
    off = FaceModelFitter(MODEL, FitterConfig(rest_window=20, rest_early=0, head="off"))
    assert fitter.head is HEAD and off.head is None
    for _ in range(20):
        res = fitter.fit(0, project(ident, expression(), yaw=10.0), (W, H), F)
        fitted = off.fit(0, project(ident, expression(), yaw=10.0), (W, H), F).blendshapes
        assert fitter.rest_face(0) is None or res.learned is not None
        if fitter.rest_face(0) is None:  # still calibrating: the head may only lower the fit's weights
            assert (res.blendshapes <= fitted + 1e-6).all()
    smile = expression(mouthSmile_L=0.7, mouthSmile_R=0.7)
    for _ in range(4):
        res = fitter.fit(0, project(ident, smile, yaw=10.0), (W, H), F)
    assert res.learned is not None
    eye = np.array([n.startswith("eye") for n in ARKIT_BLENDSHAPES])
    assert np.isnan(res.learned[eye]).all() and np.isfinite(res.learned[~eye]).all()
    assert res.blendshapes[arkit("mouthSmileLeft")] == res.learned[arkit("mouthSmileLeft")] > 0.4
    # a stage after the fit rewrites `blendshapes` from the fit's own weights: the head's survive in arkit()
    res.blendshapes = np.zeros(52, np.float32)
    assert res.arkit()[arkit("mouthSmileLeft")] > 0.4 and res.arkit()[arkit("eyeBlinkLeft")] == 0.0


def test_a_face_far_from_any_training_face_gives_weights_without_warnings() -> None:
    """Tiny or broken faces (a 100-pixel photo, a bad landmark) drive the MLP far out; the weights stay in
    [0, 1] and nothing is printed (numpy's overflow warning reached users' stderr before)."""
    import warnings

    x = np.random.default_rng(0).normal(size=(4, HEAD.layers[0][0].shape[0])).astype(np.float32) * 200
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        w = HEAD(x)
    assert np.isfinite(w).all() and w.min() >= 0 and w.max() <= 1
