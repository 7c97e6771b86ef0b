"""Face models on the shared assets and media: ICT install, recovery, built-in rig on a real face."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np
import pytest

from facetrack.tracker.facemodel import builtin_rig as rig
from facetrack.tracker.facemodel.fitter import FaceModelFitter
from facetrack.tracker.facemodel.format import ModelError, MorphableModel
from facetrack.tracker.schema import ARKIT_BLENDSHAPES

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
    ident = ict.read_obj_vertices(d / "identity000.obj")[: ict.NARROW_FACE_VERTICES] - neutral[: ict.NARROW_FACE_VERTICES]
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
    neutral, _ = rig.head_frame_shape(face_landmarks[0][0])
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
    for i in range(20):
        e = np.zeros(52)
        for n in names:
            e[ARKIT_BLENDSHAPES.index(n)] = rng.uniform(0, 1) if rng.random() < 0.5 else 0.0
        cam = model.shape(expression=e) @ rot.T + trans
        px = np.column_stack([size[0] / 2 + size[0] * cam[:, 0] / -cam[:, 2],
                              size[1] / 2 - size[0] * cam[:, 1] / -cam[:, 2]])
        res = fitter.fit(0, px, size)
        errs.append(np.abs(res.blendshapes - e)[[ARKIT_BLENDSHAPES.index(n) for n in names]].mean())
    assert np.mean(errs[3:]) < 0.08
