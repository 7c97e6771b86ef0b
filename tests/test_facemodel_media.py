"""Face models on the shared assets and media: ICT install, recovery, built-in rig on a real face."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np
import pytest

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel import builtin_rig as rig
from facetrack.tracker.facemodel.fitter import FaceModelFitter
from facetrack.tracker.facemodel.format import ModelError, MorphableModel
from facetrack.tracker.facemodel.prepared import PreparedModel

pytestmark = pytest.mark.media
ROOT = Path(__file__).resolve().parents[1]


def _ict_dir(assets_dir: Path) -> Path:
    d = assets_dir / "ict-facekit"
    if not (d / "ict_face_narrow.npz").is_file():
        pytest.skip(f"ICT assets not found in {d} (set FACETRACK_ASSETS)")
    return d


@pytest.fixture(scope="module")
def ict_installed(assets_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[MorphableModel, object]:
    import os

    from facetrack.tracker.facemodel.ict import install_ict

    old = os.environ.get("FACETRACK_DATA")
    os.environ["FACETRACK_DATA"] = str(tmp_path_factory.mktemp("data"))
    try:
        path, report = install_ict(_ict_dir(assets_dir) / "ict_face_narrow.npz")
        return MorphableModel.load(path), report
    finally:
        if old is None:
            os.environ.pop("FACETRACK_DATA", None)
        else:
            os.environ["FACETRACK_DATA"] = old


def test_ict_install_and_embedding(ict_installed) -> None:
    model, report = ict_installed
    assert model.id == "ict" and model.n_identity == 100 and model.n_expression == 53
    # the landmark embedding, computed at install time, agrees with mediapipe on the renders
    assert report.valid_landmarks >= 460
    assert not model.lmk_valid[468:].any()  # no eyeballs in the narrow face: irises are off-surface
    assert max(report.reprojection_iod_pct_median) < 2.0
    assert report.symmetry_pairs > 100 and report.symmetry_mm_mean < 4.0
    row = ARKIT_BLENDSHAPES.index
    names = model.exp_names
    assert model.arkit_map[row("browInnerUp"), names.index("browInnerUp_L")] == pytest.approx(0.5)
    assert model.arkit_map[row("eyeBlinkLeft"), names.index("eyeBlink_L")] == 1.0
    assert model.arkit_map[row("tongueOut")].sum() == 0
    # landmarks sit where mediapipe says: eye corners left/right of the nose, subject's left = +x
    lm = model.embed(model.neutral)
    assert lm[263, 0] > lm[1, 0] > lm[33, 0]
    assert lm[10, 1] > lm[1, 1] > lm[152, 1]


def test_ict_release_reader(assets_dir: Path, tmp_path: Path) -> None:
    from facetrack.tracker.facemodel import ict

    d = _ict_dir(assets_dir)
    npz = ict.read_ict_npz(d / "ict_face_narrow.npz")
    neutral = ict.read_obj_vertices(d / "generic_neutral_mesh.obj")
    assert neutral.shape == (26719, 3)
    np.testing.assert_allclose(neutral[: ict.NARROW_FACE_VERTICES], npz.neutral, atol=1e-5)
    ident = (ict.read_obj_vertices(d / "identity000.obj")[: ict.NARROW_FACE_VERTICES]
             - neutral[: ict.NARROW_FACE_VERTICES])
    np.testing.assert_allclose(ident, npz.id_basis[0], atol=1e-5)
    tris = ict.triangulate(ict.read_obj_faces(d / "generic_neutral_mesh.obj"), ict.NARROW_FACE_VERTICES)
    np.testing.assert_array_equal(tris, npz.triangles)
    with pytest.raises(ModelError, match="incomplete"):
        ict.read_ict_release(d)  # the dev copy holds only a few expression OBJs
    with pytest.raises(ModelError, match="no ICT release"):
        ict.read_ict_release(tmp_path)


def _load_script(name: str):
    spec = importlib.util.spec_from_file_location(name, ROOT / "scripts" / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_ict_synthetic_recovery(ict_installed) -> None:
    model, _ = ict_installed
    out = _load_script("fit_synthetic").evaluate(model, people=2, frames=30, seed=1)
    assert out["blendshape_mae"] < 0.06
    assert out["vertex_rmse_mm"] < 2.5
    assert out["rotation_err_deg"] < 1.5


@pytest.fixture(scope="module")
def face_landmarks(face_clip: Path) -> tuple[list[np.ndarray], tuple[int, int]]:
    import mediapipe as mp

    out = []
    with av.open(str(face_clip)) as c, mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True) as fm:
        for frame in c.decode(video=0):
            img = frame.to_ndarray(format="rgb24")
            h, w = img.shape[:2]
            r = fm.process(img)
            if r.multi_face_landmarks:
                out.append(np.array([[p.x * w, p.y * h, p.z * w] for p in r.multi_face_landmarks[0].landmark]))
            if len(out) == 40:
                break
    return out, (w, h)


def test_builtin_rig_fields(face_landmarks) -> None:
    neutral, _ = rig.head_frame_shape(face_landmarks[0][0], face_landmarks[1], float(face_landmarks[1][0]))
    model = rig.build_builtin_model(neutral)
    assert model.exp_basis.shape == (52, 478, 3) and model.triangles.shape[0] > 800

    def shape(name: str) -> np.ndarray:
        e = np.zeros(52)
        e[ARKIT_BLENDSHAPES.index(name)] = 1.0
        return model.shape(expression=e)

    def lid_gap(v: np.ndarray, up: int, lo: int) -> float:
        return float(np.linalg.norm(v[up] - v[lo]))

    blink = shape("eyeBlinkLeft")
    assert lid_gap(blink, 386, 374) < 0.25 * lid_gap(neutral, 386, 374)  # subject's left lid closes
    assert lid_gap(blink, 159, 145) == pytest.approx(lid_gap(neutral, 159, 145), abs=1e-3)  # right one stays
    assert np.abs(blink[rig.R_EYE_UPPER + rig.R_EYE_LOWER] - neutral[rig.R_EYE_UPPER + rig.R_EYE_LOWER]).max() < 1e-3
    jaw = shape("jawOpen")
    assert lid_gap(jaw, 13, 14) > lid_gap(neutral, 13, 14) + 1.0  # mouth opens > 1 cm
    assert jaw[rig.CHIN, 1] < neutral[rig.CHIN, 1] - 1.5  # chin drops
    assert np.abs(jaw[rig.L_EYE_UPPER] - neutral[rig.L_EYE_UPPER]).max() < 1e-3  # eyes stay
    smile = shape("mouthSmileLeft")
    corner = 291
    assert smile[corner, 1] > neutral[corner, 1] + 0.2 and smile[corner, 0] > neutral[corner, 0]
    assert np.abs(smile[61] - neutral[61]).max() < 0.05
    assert np.abs(shape("tongueOut") - model.neutral).max() == 0


def test_builtin_fitter_on_real_clip(face_landmarks) -> None:
    lms, size = face_landmarks
    fitter = FaceModelFitter(None)
    for lm in lms:
        res = fitter.fit(3, lm, size)
        assert res.model_id == "builtin"
        assert np.all(res.blendshapes >= 0) and np.all(res.blendshapes <= 1)
        assert res.rms_px < 0.02 * size[0]
        d = np.linalg.norm(res.landmarks68 - lm[rig.IBUG68_FROM_MEDIAPIPE, :2], axis=1)
        assert np.median(d) < 0.01 * size[0]


def test_builtin_expression_recovery(face_landmarks) -> None:
    """Landmarks made by the rig itself are fitted back to the weights that made them."""
    lm0, size = face_landmarks[0][0], face_landmarks[1]
    fitter = FaceModelFitter(None)
    first = fitter.fit(0, lm0, size)
    model, rot, trans = first.model, first.rotation, first.translation
    rng = np.random.default_rng(0)
    names = ["eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight", "browInnerUp"]
    errs = []
    for _ in range(20):
        e = np.zeros(52)
        for n in names:
            e[ARKIT_BLENDSHAPES.index(n)] = rng.uniform(0, 1) if rng.random() < 0.5 else 0.0
        cam = model.shape(expression=e) @ rot.T + trans
        px = np.column_stack([size[0] / 2 + size[0] * cam[:, 0] / -cam[:, 2],
                              size[1] / 2 - size[0] * cam[:, 1] / -cam[:, 2]])
        res = fitter.fit(0, px, size)
        errs.append(np.abs(res.blendshapes - e)[[ARKIT_BLENDSHAPES.index(n) for n in names]].mean())
    assert np.mean(errs[3:]) < 0.08


def _render(shape: np.ndarray, rot: np.ndarray, trans: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Head-frame points -> mediapipe-style landmarks: pixels, and relative depth in pixels (z < 0 is nearer)."""
    cam = shape @ rot.T + trans
    f = float(size[0])
    depth = -cam[:, 2]
    u = size[0] / 2 + f * cam[:, 0] / depth
    v = size[1] / 2 - f * cam[:, 1] / depth
    z = (depth - depth.mean()) * f / depth.mean()
    return np.column_stack([u, v, z])


def test_camera_shape_reprojects_exactly(face_landmarks) -> None:
    """The calibrated neutral is the landmarks cast into 3D: projecting it gives them back."""
    lm, size = face_landmarks[0][5], face_landmarks[1]
    cam = rig.camera_shape(lm, size, float(size[0]))
    px = np.column_stack([size[0] / 2 + size[0] * cam[:, 0] / -cam[:, 2],
                          size[1] / 2 - size[0] * cam[:, 1] / -cam[:, 2]])
    np.testing.assert_allclose(px, lm[:, :2], atol=1e-6)
    eye = np.linalg.norm(cam[263] - cam[33])
    assert eye == pytest.approx(rig.EYE_CORNER_CM)


def test_calibration_gives_neutral_weights_near_zero(face_landmarks) -> None:
    """A track that starts mid-smile with a blink still calibrates a relaxed neutral.

    The person's neutral (from a real frame) is animated with the rig's own fields:
    smiling with the mouth open for the first 12 frames, a blink at frames 20-22, then
    relaxed; the head moves a little throughout. After calibration the relaxed frames
    must read near 0 on every shape, and the smile frames must not have become the neutral.
    """
    lm0, size = face_landmarks[0][0], face_landmarks[1]
    neutral, _ = rig.head_frame_shape(lm0, size, float(size[0]))
    fields = rig.generate_rig(neutral)
    idx = ARKIT_BLENDSHAPES.index
    rng = np.random.default_rng(0)
    fitter = FaceModelFitter(None)
    late = []
    for i in range(90):
        e = np.zeros(52)
        if i < 12:
            e[[idx("mouthSmileLeft"), idx("mouthSmileRight")]] = 0.7
            e[idx("jawOpen")] = 0.3
        if 20 <= i < 23:
            e[[idx("eyeBlinkLeft"), idx("eyeBlinkRight")]] = 1.0
        shape = neutral + np.tensordot(e, fields, axes=1)
        yaw, pitch = np.deg2rad(4 * np.sin(i / 9)), np.deg2rad(3 * np.cos(i / 13))
        rot = np.array([[np.cos(yaw), 0, np.sin(yaw)], [0, 1, 0], [-np.sin(yaw), 0, np.cos(yaw)]]) @ np.array(
            [[1, 0, 0], [0, np.cos(pitch), -np.sin(pitch)], [0, np.sin(pitch), np.cos(pitch)]])
        lm = _render(shape, rot, np.array([0.5, -0.3, -45.0]), size)
        lm[:, :2] += rng.normal(0, 0.3, size=(478, 2))
        res = fitter.fit(1, lm, size)
        if i >= 60:
            late.append(res.blendshapes)
    late = np.array(late)
    assert fitter._tracks[1].calib.done
    assert np.median(late, axis=0).max() < 0.05
    assert np.percentile(late, 95, axis=0).max() < 0.15


def test_builtin_jaw_follows_the_face_oval(face_landmarks) -> None:
    """iBUG's 17 jaw points: evenly spaced along the oval from ear level to the chin."""
    neutral, _ = rig.head_frame_shape(face_landmarks[0][0], face_landmarks[1], float(face_landmarks[1][0]))
    model = rig.build_builtin_model(neutral)
    jaw = model.embed(model.neutral, which="68")[:17]
    np.testing.assert_allclose(jaw[0], neutral[127], atol=1e-5)
    np.testing.assert_allclose(jaw[8], neutral[152], atol=1e-5)
    np.testing.assert_allclose(jaw[16], neutral[356], atol=1e-5)
    for side in (jaw[:9], jaw[8:]):
        steps = np.linalg.norm(np.diff(side, axis=0), axis=1)
        assert steps.max() < 1.5 * steps.min()  # chords of equal arcs along a gently curved line
    # the fitter uses only the landmarks the model names (185 of 478 for the built-in rig)
    assert len(PreparedModel(model, 0.5).idx) == len(rig.fit_landmarks()) == 185
