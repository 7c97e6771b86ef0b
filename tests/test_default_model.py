"""The packaged default model and the solve's priors: mirror symmetry, antagonists, rest calibration."""

from __future__ import annotations

import numpy as np
import pytest

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.compact import load_default_model, packaged_model_path
from facetrack.tracker.facemodel.fitter import FaceModelFitter, FitterConfig
from facetrack.tracker.facemodel.label_checks import antagonistic
from facetrack.tracker.facemodel.priors import exclude_antagonists
from facetrack.tracker.facemodel.registry import BUILTIN_ID, load_model, model_info
from facetrack.tracker.facemodel.rest_face import load_neutral, save_neutral

W, H, F = 640, 480, 640.0
MODEL = load_default_model()
PERM = np.array(MODEL.extra["mirror"][:478])


def project(model, identity, expression, yaw=0.0, rest=None):
    """Pixels of the model's 478 landmarks for a head at 55 cm, turned by `yaw` degrees."""
    v = model.shape(identity, expression).astype(np.float64)[:478]
    if rest is not None:
        v = v + rest
    a = np.deg2rad(yaw)
    r = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    cam = (v - v.mean(0)) @ r.T + [0.0, 0.0, -55.0]
    px = np.stack([W / 2 + F * cam[:, 0] / -cam[:, 2], H / 2 - F * cam[:, 1] / -cam[:, 2]], axis=1)
    px[~model.lmk_valid] = np.nan
    return px


def expression(**weights):
    e = np.zeros(MODEL.n_expression)
    for name, v in weights.items():
        e[MODEL.exp_names.index(name)] = v
    return e


def arkit(name):
    return ARKIT_BLENDSHAPES.index(name)


def test_packaged_model_is_the_default_with_identity_modes():
    assert packaged_model_path().stat().st_size < 3e6
    assert (packaged_model_path().parent / "LICENSE-ICT-FaceKit.txt").is_file()
    assert load_model(BUILTIN_ID) is MODEL
    info = model_info(BUILTIN_ID)
    assert info.n_identity >= 30 and info.n_expression == 53 and "ICT" in info.licence


def test_model_is_its_own_mirror_image():
    assert np.array_equal(PERM[PERM], np.arange(478))
    flip = np.array([-1.0, 1.0, 1.0], np.float32)
    np.testing.assert_allclose(MODEL.neutral[:478][PERM] * flip, MODEL.neutral[:478], atol=1e-4)
    left, right = MODEL.exp_names.index("mouthSmile_L"), MODEL.exp_names.index("mouthSmile_R")
    np.testing.assert_allclose(MODEL.exp_basis[left, :478][PERM] * flip, MODEL.exp_basis[right, :478], atol=1e-4)
    # the identity subspace is mirror-closed: mirrored modes are explained by the modes
    b = MODEL.id_basis[:, :478].reshape(MODEL.n_identity, -1).T.astype(np.float64)
    m = (MODEL.id_basis[:, :478][:, PERM] * flip).reshape(MODEL.n_identity, -1).T
    resid = m - b @ np.linalg.lstsq(b, m, rcond=None)[0]
    assert np.linalg.norm(resid) < 1e-3 * np.linalg.norm(m)


def test_mirror_image_gets_mirrored_weights():
    rng = np.random.default_rng(3)
    ident = rng.normal(size=MODEL.n_identity) * 0.7
    e = expression(mouthSmile_L=0.7, browOuterUp_L=0.5, jawOpen=0.3)
    fit_a, fit_b = FaceModelFitter(MODEL), FaceModelFitter(MODEL)
    for k in range(6):
        px = project(MODEL, ident, e * min(1.0, k / 3), yaw=8.0)
        mirrored = px[PERM].copy()
        mirrored[:, 0] = W - mirrored[:, 0]
        a = fit_a.fit(0, px, (W, H), F).blendshapes
        b = fit_b.fit(0, mirrored, (W, H), F).blendshapes
    swap = [ARKIT_BLENDSHAPES.index(n.replace("Left", "@").replace("Right", "Left").replace("@", "Right"))
            for n in ARKIT_BLENDSHAPES]
    assert a[arkit("mouthSmileLeft")] > 0.4
    np.testing.assert_allclose(b, a[swap], atol=0.02)


def test_antagonists_are_not_both_on():
    """Landmarks of a smile and a frown on one side at once: the fit (without the head) keeps one of them."""
    e = expression(mouthSmile_L=0.8, mouthFrown_L=0.8, mouthPucker=0.6)
    for exclude, expect in ((1.0, True), (0.2, False)):
        fitter = FaceModelFitter(MODEL, FitterConfig(exclude_above=exclude, exp_l1=0.5, rest_window=0, head="off"))
        for _ in range(4):
            w = fitter.fit(0, project(MODEL, np.zeros(MODEL.n_identity), e), (W, H), F).blendshapes
        assert bool(antagonistic(w[None])[0]) is expect


def test_output_exclusion_keeps_the_stronger_of_a_pair():
    w = np.zeros(52, np.float32)
    w[arkit("mouthPucker")], w[arkit("mouthStretchLeft")], w[arkit("mouthSmileRight")] = 0.6, 0.4, 0.15
    w[arkit("eyeBlinkLeft")] = 0.9
    out = exclude_antagonists(w)
    assert out[arkit("mouthPucker")] == pytest.approx(0.6) and out[arkit("mouthStretchLeft")] == 0.0
    assert out[arkit("mouthSmileRight")] == pytest.approx(0.15)  # below 0.2: kept
    assert out[arkit("eyeBlinkLeft")] == pytest.approx(0.9) and w[arkit("mouthStretchLeft")] == pytest.approx(0.4)


def test_rest_calibration_makes_a_neutral_person_read_zero(tmp_path):
    """A face whose own shape no identity mode explains reads as expression without a rest face, and near zero
    once its rest is calibrated."""
    rng = np.random.default_rng(5)
    ident = rng.normal(size=MODEL.n_identity) * 0.5
    # a person-specific shape: a lowered brow and a narrower mouth, outside the identity modes
    rest = np.zeros((478, 3))
    brow = np.array([70, 63, 105, 66, 107, 300, 293, 334, 296, 336])
    rest[brow, 1] -= 0.25
    rest[[61, 291], 0] *= 0
    rest[61, 0], rest[291, 0] = 0.2, -0.2
    cfg = FitterConfig(rest_window=20, rest_cap=1.0)  # the whole rest subtracted, expression-like or not
    uncalibrated = FaceModelFitter(MODEL, cfg.model_copy(update={"rest_window": 0}))
    first = uncalibrated.fit(1, project(MODEL, ident, None, rest=rest), (W, H), F).blendshapes
    fitter = FaceModelFitter(MODEL, cfg)
    fitter.fit(1, project(MODEL, ident, None, rest=rest), (W, H), F)
    assert fitter.rest_face(1) is None
    for _ in range(25):
        w = fitter.fit(1, project(MODEL, ident, None, rest=rest), (W, H), F).blendshapes
    assert fitter.rest_face(1) == {"source": "auto", "frames": 3}
    non_eye = np.array([not n.startswith("eye") for n in ARKIT_BLENDSHAPES])
    assert w[non_eye].max() < 0.05 < first[non_eye].max()
    # and an expression on that face still reads
    for _ in range(4):
        w = fitter.fit(1, project(MODEL, ident, expression(jawOpen=0.6), rest=rest), (W, H), F).blendshapes
    assert w[arkit("jawOpen")] > 0.4
    # saved and reused: a new fitter starts calibrated
    saved = fitter.neutral_of(1)
    path = save_neutral(tmp_path / "actor.npz", MODEL.id, *saved)
    other = FaceModelFitter(MODEL, cfg)
    other.use_neutral(*load_neutral(path, MODEL.id))
    w = other.fit(7, project(MODEL, ident, None, rest=rest), (W, H), F).blendshapes
    assert other.rest_face(7) == {"source": "file", "frames": 0}
    assert w[non_eye].max() < 0.05
    with pytest.raises(ValueError, match="calibrates model"):
        load_neutral(path, "rig")


def test_a_smile_held_through_the_warm_up_still_reads():
    """The rest may subtract only a little of an expression: a person who smiles from the start still smiles."""
    ident = np.random.default_rng(8).normal(size=MODEL.n_identity) * 0.5
    smile = expression(mouthSmile_L=0.8, mouthSmile_R=0.8)
    fitter = FaceModelFitter(MODEL, FitterConfig(rest_window=20))
    for _ in range(25):
        w = fitter.fit(3, project(MODEL, ident, smile), (W, H), F).blendshapes
    assert fitter.rest_face(3) is not None
    assert min(w[arkit("mouthSmileLeft")], w[arkit("mouthSmileRight")]) >= 0.35


def test_a_persons_own_chin_is_part_of_the_rest_face():
    """Issue 23: a chin that the identity modes cannot place reads as mouthShrugLower on every frame; the warm-up
    takes it into the rest face in full (`rest_own_shape`), and a jaw opened later still reads. Until the rest
    face exists those shapes are taken for the person's own and not given out (before that, 54% of the first
    second of the media's clips read a chin or lip shrug over 0.3); with no rest face coming they are."""
    ident = np.random.default_rng(9).normal(size=MODEL.n_identity) * 0.5
    own = (MODEL.shape(np.zeros(MODEL.n_identity), expression(mouthShrugLower=0.7))
           - MODEL.shape(np.zeros(MODEL.n_identity), None))[:478]
    uncalibrated = FaceModelFitter(MODEL, FitterConfig(rest_window=0))
    seen = uncalibrated.fit(4, project(MODEL, ident, None, rest=own), (W, H), F).blendshapes
    fitter = FaceModelFitter(MODEL, FitterConfig(rest_window=20))
    first = fitter.fit(4, project(MODEL, ident, None, rest=own), (W, H), F).blendshapes
    for _ in range(25):
        w = fitter.fit(4, project(MODEL, ident, None, rest=own), (W, H), F).blendshapes
    assert seen[arkit("mouthShrugLower")] > 0.3 and first[arkit("mouthShrugLower")] == 0.0
    assert w[arkit("mouthShrugLower")] < 0.05  # 0.11 with the cap alone
    for _ in range(4):
        w = fitter.fit(4, project(MODEL, ident, expression(jawOpen=0.6), rest=own), (W, H), F).blendshapes
    assert w[arkit("jawOpen")] > 0.4


def test_recalibrate_on_demand():
    fitter = FaceModelFitter(MODEL, FitterConfig(rest_window=0))
    px = project(MODEL, np.zeros(MODEL.n_identity), None)
    fitter.fit(2, px, (W, H), F)
    assert fitter.rest_face(2) is None
    fitter.recalibrate(2, frames=5)
    for _ in range(5):
        fitter.fit(2, px, (W, H), F)
    assert fitter.rest_face(2)["source"] == "on demand"
