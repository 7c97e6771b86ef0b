"""Face-model format, registry, fitter and loaders on models the tests build themselves."""

from __future__ import annotations

import json
import os
import pickle
import sys
import types
from pathlib import Path

import numpy as np
import pytest

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel import registry
from facetrack.tracker.facemodel.fitter import FaceModelFitter, FitterConfig
from facetrack.tracker.facemodel.format import ModelError, MorphableModel, arkit_map_for, vertex_embedding
from facetrack.tracker.facemodel.loaders import read_bfm2009, read_bfm_front, read_flame, safe_unpickle
from facetrack.tracker.facemodel.solve import box_qp, euler_yxz, sir_confidence

N = 478


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    a, b, g = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return ry @ rx @ rz


def synthetic_model(seed: int = 0, k_id: int = 6, k_exp: int = 8) -> MorphableModel:
    """A face-sized dome of 478 points with smooth identity modes and local expression bumps."""
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-1, 1, size=(N, 2)) * [7.0, 9.0]
    z = 8.0 * np.sqrt(np.clip(1 - (xy[:, 0] / 8.5) ** 2 - (xy[:, 1] / 11.0) ** 2, 0.05, None))
    z += 2.0 * np.exp(-(xy[:, 0] ** 2 + (xy[:, 1] + 1) ** 2) / 4.0)  # a nose
    neutral = np.column_stack([xy, z])
    feats = np.column_stack([np.ones(N), xy / 8, z / 8, (xy / 8) ** 2, xy[:, 0] * xy[:, 1] / 64])
    id_basis = np.stack([feats @ rng.normal(0, 0.3, size=(feats.shape[1], 3)) for _ in range(k_id)])
    centres = neutral[rng.choice(N, k_exp, replace=False)]
    exp_basis = []
    for c in centres:
        w = np.exp(-((neutral - c) ** 2).sum(1) / (2 * 2.0**2))
        exp_basis.append(w[:, None] * rng.normal(0, 0.8, size=3))
    names = list(ARKIT_BLENDSHAPES[:k_exp])
    lv, lb = vertex_embedding(np.arange(N))
    v68, b68 = vertex_embedding(np.arange(68))
    return MorphableModel(
        id="synthetic", name="test dome", neutral=neutral, id_basis=id_basis, exp_basis=np.stack(exp_basis),
        exp_names=names, triangles=np.arange(477 * 3 // 3 * 3).reshape(-1, 3) % N, lmk_vertices=lv, lmk_bary=lb,
        lmk_valid=np.ones(N, bool), lmk68_vertices=v68, lmk68_bary=b68, arkit_map=arkit_map_for(names),
        licence="test", source="tests",
    )


def project(model: MorphableModel, ident, expr, rot, trans, size=(640, 480), focal=640.0) -> np.ndarray:
    cam = model.embed(model.shape(ident, expr)) @ rot.T + trans
    return np.column_stack([size[0] / 2 + focal * cam[:, 0] / -cam[:, 2], size[1] / 2 - focal * cam[:, 1] / -cam[:, 2]])


# -- format and registry ---------------------------------------------------------------
def test_roundtrip(tmp_path: Path) -> None:
    m = synthetic_model()
    p = m.save(tmp_path / "m.npz")
    back = MorphableModel.load(p)
    assert back.id == m.id and back.exp_names == m.exp_names and back.licence == "test"
    for name in ("neutral", "id_basis", "exp_basis", "triangles", "lmk_vertices", "lmk_bary", "arkit_map"):
        np.testing.assert_array_equal(getattr(back, name), getattr(m, name))
    with np.load(p, allow_pickle=False) as z:  # plain arrays: loadable without pickle
        assert json.loads(str(z["metadata"]))["format"] == "facetrack.facemodel/1"


def test_checksum_mismatch_is_reported(tmp_path: Path) -> None:
    p = synthetic_model().save(tmp_path / "m.npz")
    with np.load(p, allow_pickle=False) as z:
        data = {k: z[k] for k in z.files}
    data["neutral"] = data["neutral"] + np.float32(0.01)
    np.savez(p, **data)
    with pytest.raises(ModelError, match="checksum"):
        MorphableModel.load(p)
    assert MorphableModel.load(p, verify=False).n_vertices == N


def test_object_arrays_are_refused(tmp_path: Path) -> None:
    p = tmp_path / "evil.npz"
    np.savez(p, metadata=np.array([{"a": 1}], dtype=object))
    with pytest.raises(ModelError):
        MorphableModel.load(p)


def test_inconsistent_model_is_refused() -> None:
    m = synthetic_model()
    with pytest.raises(ModelError, match="exp_names"):
        MorphableModel(**{**m.__dict__, "exp_names": m.exp_names[:-1]})


def test_registry(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path / "data"))
    # the generated rig and the packaged default (`builtin` names it) are always there
    assert [m.id for m in registry.list_models()] == ["rig", "ict478"]
    assert registry.load_model("builtin").id == "ict478" and registry.model_info("builtin").n_identity == 40
    with pytest.raises(ModelError, match="not installed"):
        registry.load_model("synthetic")
    path = registry.install_model(synthetic_model())
    assert path == tmp_path / "data" / "models" / "synthetic.npz"
    infos = {m.id: m for m in registry.list_models()}
    assert infos["synthetic"].n_identity == 6 and infos["synthetic"].n_expression == 8
    assert registry.load_model("synthetic").n_vertices == N
    with pytest.raises(ModelError, match="invalid model id"):
        registry.model_path("../escape")


def test_arkit_map_merges_split_shapes() -> None:
    names = ["browInnerUp_L", "browInnerUp_R", "eyeBlink_L", "jawOpen"]
    m = arkit_map_for(names, {"browInnerUp": ["browInnerUp_L", "browInnerUp_R"]})
    row = ARKIT_BLENDSHAPES.index
    np.testing.assert_allclose(m[row("browInnerUp")], [0.5, 0.5, 0, 0])
    np.testing.assert_allclose(m[row("eyeBlinkLeft")], [0, 0, 1, 0])
    assert m[row("tongueOut")].sum() == 0


# -- solver and fitter -----------------------------------------------------------------
def test_box_qp_matches_bounded_least_squares() -> None:
    from scipy.optimize import lsq_linear

    rng = np.random.default_rng(1)
    for _ in range(20):
        a = rng.normal(size=(40, 12))
        b = rng.normal(size=40) * 3
        lo, hi = np.zeros(12), np.ones(12)
        ref = lsq_linear(a, b, bounds=(lo, hi)).x
        got = box_qp(a.T @ a, a.T @ b, lo, hi)
        assert np.all(got >= 0) and np.all(got <= 1)
        np.testing.assert_allclose(got, ref, atol=1e-6)


def test_sir_confidence() -> None:
    assert sir_confidence(np.eye(3), np.zeros(5), 1.0) == pytest.approx(1.0)
    turned = sir_confidence(_rotation(40, 0, 0), np.zeros(5), 1.0)
    smiling = sir_confidence(np.eye(3), np.full(5, 0.5), 1.0)
    assert turned < 1.0 and smiling < 1.0
    assert np.allclose(np.degrees(euler_yxz(_rotation(20, -10, 5))), [20, -10, 5])


def test_fitter_recovers_parameters() -> None:
    m = synthetic_model()
    rng = np.random.default_rng(2)
    # noise-free landmarks: weak priors, so the exact parameters are the optimum
    fitter = FaceModelFitter(m, FitterConfig(exp_l1=0.0, temporal=0.0, exp_ridge=1e-4, id_prior=1e-3,
                                             id_measure_prior=1e-3, exclude_above=1.0, rest_window=0))
    ident = rng.normal(size=m.n_identity)
    for i in range(6):
        expr = rng.uniform(0, 1, m.n_expression) * (rng.random(m.n_expression) < 0.6)
        rot, trans = _rotation(15 - 6 * i, 8, -4), np.array([1.0, -0.5, -55.0])
        res = fitter.fit(7, project(m, ident, expr, rot, trans), (640, 480), 640.0)
        assert res.blendshapes.shape == (52,) and res.blendshapes.dtype == np.float32
        np.testing.assert_allclose(res.expression, expr, atol=0.03)
        d = res.rotation.T @ rot
        assert np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1, 1))) < 0.3
        np.testing.assert_allclose(res.translation, trans, atol=0.3)
        assert res.rms_px < 0.05
        assert res.vertices().shape == (N, 3) and res.landmarks68.shape == (68, 2)
    np.testing.assert_allclose(res.identity, ident, atol=0.1)


def test_expression_stays_in_unit_box_and_missing_points() -> None:
    m = synthetic_model()
    fitter = FaceModelFitter(m)
    rng = np.random.default_rng(3)
    for _ in range(5):
        expr = rng.uniform(-0.8, 1.8, m.n_expression)  # outside what the model allows
        lm = project(m, np.zeros(m.n_identity), expr, _rotation(0, 0, 0), np.array([0, 0, -60.0]))
        lm[rng.random(N) < 0.2] = np.nan  # dropped points
        lm += rng.normal(0, 1.0, lm.shape)
        res = fitter.fit(1, lm, (640, 480))
        assert np.all(res.expression >= 0) and np.all(res.expression <= 1)
        assert np.all(res.blendshapes >= 0) and np.all(res.blendshapes <= 1)
        assert np.all(np.isfinite(res.translation))
    with pytest.raises(ModelError, match="landmarks must be"):
        fitter.fit(1, np.zeros((68, 2)), (640, 480))


def test_identity_converges_per_track() -> None:
    m = synthetic_model(k_id=6)
    rng = np.random.default_rng(4)
    cfg = FitterConfig()
    people = [rng.normal(size=m.n_identity) for _ in range(2)]
    finals = []
    for track, ident in enumerate(people):
        fitter = FaceModelFitter(m, cfg)
        errs, late = [], []
        for i in range(40):
            expr = np.clip(rng.normal(0.1, 0.2, m.n_expression), 0, 1)
            rot = _rotation(rng.uniform(-25, 25), rng.uniform(-10, 10), rng.uniform(-5, 5))
            lm = project(m, ident, expr, rot, np.array([0, 0, -60.0]))
            lm += rng.normal(0, 0.6, lm.shape)
            fitter.fit(track, lm, (640, 480))
            est, weight = fitter.track_identity(track)
            errs.append(np.linalg.norm(est - ident))
            if i >= 30:
                late.append(est)
        assert np.mean(errs[-5:]) < 0.5 * errs[0] or np.mean(errs[-5:]) < 0.2
        spread = np.linalg.norm(np.std(late, axis=0))
        finals.append(late[-1])
        assert spread < 0.1 * np.linalg.norm(people[0] - people[1])
    assert np.linalg.norm(finals[0] - finals[1]) > 0.5 * np.linalg.norm(people[0] - people[1])
    fitter.forget(1)
    assert fitter.track_identity(1) is None


# -- third-party formats ---------------------------------------------------------------
class _Evil:
    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


def test_restricted_unpickler_refuses_code() -> None:
    with pytest.raises(ModelError, match="refusing"):
        safe_unpickle(pickle.dumps(_Evil(), protocol=2))
    with pytest.raises(ModelError, match="refusing"):
        safe_unpickle(pickle.dumps({"v_template": np.zeros(3), "f": eval}, protocol=2))


def test_flame_reader_with_chumpy_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # write a FLAME-shaped pickle whose arrays are chumpy objects, as the real file has
    mod_pkg, mod = types.ModuleType("chumpy"), types.ModuleType("chumpy.ch")

    class Ch:
        def __init__(self, x):
            self.x = x

        def __getstate__(self):
            return {"x": self.x}

    Ch.__module__, Ch.__qualname__ = "chumpy.ch", "Ch"
    mod.Ch = Ch
    monkeypatch.setitem(sys.modules, "chumpy", mod_pkg)
    monkeypatch.setitem(sys.modules, "chumpy.ch", mod)
    rng = np.random.default_rng(5)
    v = rng.normal(size=(30, 3)) * 0.08  # metres, as FLAME
    v[:, 0] = np.linspace(-0.08, 0.08, 30)
    sd = rng.normal(size=(30, 3, 7)) * 0.001
    import scipy.sparse

    blob = pickle.dumps({"v_template": Ch(v), "shapedirs": Ch(sd), "f": np.array([[0, 1, 2], [2, 3, 4]]),
                         "J_regressor": scipy.sparse.csc_matrix(np.eye(5, 30))}, protocol=2)
    (tmp_path / "generic_model.pkl").write_bytes(blob)
    raw = read_flame(tmp_path / "generic_model.pkl", n_shape=4, n_expression=3)
    np.testing.assert_allclose(raw.neutral, v * 100)  # metres -> cm
    assert raw.id_basis.shape == (4, 30, 3) and raw.exp_basis.shape == (3, 30, 3)
    np.testing.assert_allclose(raw.exp_basis[1], sd[:, :, 5] * 100)


def test_bfm_readers(tmp_path: Path) -> None:
    from scipy.io import savemat

    rng = np.random.default_rng(6)
    nv = 20
    mu = rng.normal(size=(nv, 3)) * 3e4
    mu[:, 0] = np.linspace(-7e4, 7e4, nv)  # micrometres, as BFM 2009
    pcs, ev = rng.normal(size=(3 * nv, 5)), np.arange(1, 6, dtype=float)
    savemat(tmp_path / "01_MorphableModel.mat", {"shapeMU": mu.reshape(-1, 1), "shapePC": pcs,
                                                  "shapeEV": ev.reshape(-1, 1), "tl": np.array([[1, 2, 3]])})
    raw = read_bfm2009(tmp_path / "01_MorphableModel.mat")
    np.testing.assert_allclose(raw.neutral, mu * 1e-4)
    np.testing.assert_allclose(raw.id_basis[2], (pcs[:, 2] * ev[2]).reshape(nv, 3) * 1e-4)
    assert raw.triangles.tolist() == [[0, 1, 2]] and raw.exp_basis.shape[0] == 0

    mean = rng.normal(size=(nv, 3))
    mean[:, 0] = np.linspace(-0.8, 0.8, nv)  # decimetres
    savemat(tmp_path / "BFM_model_front.mat", {
        "meanshape": mean.reshape(1, -1), "idBase": rng.normal(size=(3 * nv, 80)),
        "exBase": rng.normal(size=(3 * nv, 64)), "tri": np.array([[1, 2, 3], [2, 3, 4]]),
        "keypoints": np.arange(1, 69).reshape(1, -1) % nv + 1})
    raw = read_bfm_front(tmp_path / "BFM_model_front.mat")
    assert raw.id_basis.shape == (80, nv, 3) and raw.exp_basis.shape == (64, nv, 3)
    np.testing.assert_allclose(raw.neutral, mean * 10)
    assert raw.exp_bounds == (-np.inf, np.inf) and raw.lmk68 is not None and raw.lmk68.min() >= 0
    with pytest.raises(ModelError, match="not a BFM 2009"):
        read_bfm2009(tmp_path / "BFM_model_front.mat")


def test_rest_face_taken_turned_absorbs_a_one_sided_brow_offset_only() -> None:
    """Issue 23: a one-sided brow offset of a turned warm-up is the landmark engine's bias (absorbed in full);
    a frontal warm-up keeps it beyond the cap, and a held frown of both brows still reads when turned."""
    from facetrack.tracker.facemodel.prepared import PreparedModel
    from facetrack.tracker.facemodel.rest_face import RestFaceCalibration, capped_rest_offset, turned_brows

    model = registry.load_model("builtin")
    pm = PreparedModel(model, 0.5)
    names = list(model.exp_names)
    basis = pm.basis_flat_exp
    one, both = np.zeros(len(names)), np.zeros(len(names))
    one[names.index("browDown_L")] = 0.5
    both[[names.index("browDown_L"), names.index("browDown_R")]] = 0.5

    def kept(weights: np.ndarray, yaw_deg: float) -> float:
        cal = RestFaceCalibration(window=3)
        for _ in range(3):
            rest = cal.add(np.zeros((len(pm.idx), 3)), 0.0, _rotation(yaw_deg, 0.0, 0.0))
        assert rest is not None and abs(cal.yaw - yaw_deg) < 1e-6
        offset = (basis @ weights).reshape(-1, 3)
        out = capped_rest_offset(basis, offset, 0.1, turned_brows(names, cal, 10.0))
        return float(np.linalg.norm(out) / np.linalg.norm(offset))

    # the share of the offset the rest face keeps (what is kept is not read as expression)
    assert kept(one, 0.0) == pytest.approx(0.2, abs=0.05)  # frontal: only the cap (0.1 of 0.5)
    assert kept(one, -5.0) == pytest.approx(0.7, abs=0.05)  # half-way: half the excess in full, the cap of the rest
    assert kept(one, -20.0) == pytest.approx(1.0, abs=0.05)  # turned: the one-sided offset in full
    assert kept(both, -20.0) == pytest.approx(0.2, abs=0.05)  # a held frown of both brows still reads


def test_rest_face_absorbs_the_own_shape_of_lips_and_chin_but_caps_a_held_smile() -> None:
    """Issue 23: a chin the identity modes place too low reads as mouthShrugLower on every frame; the rest face
    takes such an offset in full (`rest_own_shape`), while a smile held through the warm-up keeps reading."""
    from facetrack.tracker.facemodel.fitter_config import FitterConfig
    from facetrack.tracker.facemodel.prepared import PreparedModel
    from facetrack.tracker.facemodel.rest_face import capped_rest_offset, rest_caps

    model = registry.load_model("builtin")
    pm = PreparedModel(model, 0.5)
    names = list(model.exp_names)
    basis = pm.basis_flat_exp
    caps = rest_caps(names, 0.1, FitterConfig().rest_own_shape)
    assert caps[names.index("mouthShrugLower")] == 1.0 and caps[names.index("mouthSmile_L")] == 0.1

    def kept(**weights: float) -> float:
        w = np.zeros(len(names))
        for name, value in weights.items():
            w[names.index(name)] = value
        offset = (basis @ w).reshape(-1, 3)
        return float(np.linalg.norm(capped_rest_offset(basis, offset, caps)) / np.linalg.norm(offset))

    assert kept(mouthShrugLower=0.6) == pytest.approx(1.0, abs=0.05)  # the person's own chin: all of it
    assert kept(mouthSmile_L=0.5, mouthSmile_R=0.5) == pytest.approx(0.2, abs=0.05)  # a held smile: the cap only
    assert np.allclose(capped_rest_offset(basis, np.ones((len(pm.idx), 3)), np.ones(len(names))), 1.0)
