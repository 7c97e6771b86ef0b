"""PRDL parts from the face mesh's own part polygons (`losses.prdl_parts = "mesh478"`): targets, model
vertices, training on `landmarks478` data, and the clips' `landmarks478` in crop pixels."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facetrack.tracker.facemodel import builtin_rig as rig  # noqa: E402
from facetrack.tracker.facemodel.format import MorphableModel  # noqa: E402
from facetrack.training.part_masks import PART_NAMES, part_landmarks_478, part_masks_478  # noqa: E402
from facetrack.training.recipe import Recipe  # noqa: E402
from facetrack.training.regressor import load_data, part_targets, train_regressor, vertex_parts  # noqa: E402
from facetrack.training.render import SH_CONST, TorchFaceModel, render  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def rig_model(assets_dir: Path) -> MorphableModel:
    """The built-in rig on mediapipe's canonical face (468 points + 2 x 5 iris points), as in
    tests/test_regressor_augment.py: its vertices are the 478 mesh points."""
    obj = (assets_dir / "mediapipe" / "canonical_face_model.obj").read_text().splitlines()
    v = np.array([[float(x) for x in line.split()[1:4]] for line in obj if line.startswith("v ")])
    offsets = np.array([[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [-0.5, 0, 0], [0, -0.5, 0]])
    iris = [v[idx].mean(0) + offsets for idx in (rig.R_EYE_UPPER + rig.R_EYE_LOWER, rig.L_EYE_UPPER + rig.L_EYE_LOWER)]
    return rig.build_builtin_model(rig.head_frame(np.concatenate([v, *iris]))[0].astype(np.float32))


@pytest.fixture(scope="module")
def face(rig_model: MorphableModel) -> TorchFaceModel:
    return TorchFaceModel.from_morphable(rig_model)


@pytest.fixture(scope="module")
def faces(face: TorchFaceModel) -> dict[str, np.ndarray]:
    """Six renders of the rig (small turns, a little expression): images, 68 points and the 478 mesh points
    (x, y crop pixels, z in the same scale), exactly as the data sources store them."""
    gen = torch.Generator().manual_seed(0)
    n = 6
    pose = torch.zeros(n, 6)
    pose[:, :3] = (torch.rand(n, 3, generator=gen) - 0.5) * 0.3
    pose[:, 3:5] = SIZE / 2
    extent = float(np.ptp(face.neutral[:, 0].numpy()))
    pose[:, 5] = float(np.log(0.6 * SIZE / extent))
    expression = torch.rand(n, face.n_expression, generator=gen) * 0.2
    sh = torch.zeros(n, 27)
    sh[:, 0] = 1.0 / SH_CONST[0]
    with torch.no_grad():
        r = render(face, torch.zeros(n, 0), expression, pose, sh, torch.zeros(n, 0), None, SIZE, SIZE, 1.0)
    scale = pose[:, 5].exp()[:, None, None]
    mesh = torch.cat([r.px, -r.vertices[..., 2:] * scale], -1)
    images = ((r.image * r.mask + 0.2 * (1 - r.mask)).clamp(0, 1) * 255).round().byte().permute(0, 2, 3, 1)
    return {"images": images.numpy(), "landmarks": r.landmarks.numpy(), "landmarks478": mesh.numpy()}


def test_mesh478_vertex_parts_hold_each_parts_mesh_points(face: TorchFaceModel):
    parts = vertex_parts(face, 120, "mesh478")
    own = part_landmarks_478()
    assert list(parts) == list(PART_NAMES)
    assert all(len(v) for v in parts.values()) and len(parts["skin"]) == 120
    for name in ("right_eye", "left_eye", "nose", "lips"):
        assert set(own[name].tolist()) <= set(parts[name].tolist()), name
        assert len(parts[name]) > len(own[name]) or name == "lips", name  # the inside too, not only the outline
    x = face.neutral[:, 0]
    assert (x[parts["right_eye"]] < 0).all() and (x[parts["left_eye"]] > 0).all()  # x is the subject's left
    assert not set(parts["skin"].tolist()) & set(np.concatenate([own[n] for n in own if n != "skin"]).tolist())


def test_mesh478_part_targets_lie_inside_the_mesh_masks(faces: dict[str, np.ndarray]):
    lmk, mesh = faces["landmarks"], faces["landmarks478"]
    t = part_targets(lmk, SIZE, SIZE, 16, 64, mesh)
    assert list(t) == list(PART_NAMES)
    for i, m in enumerate(mesh):
        masks = part_masks_478(m, SIZE, SIZE)
        for name, (pts, valid) in t.items():
            p = pts[i][valid[i]].numpy()
            assert len(p) == min(masks[name].sum(), 64 if name == "skin" else 16) > 0, name
            j, k = np.floor(p).astype(int).T
            assert masks[name][k, j].all(), name
    coarse = part_targets(lmk, SIZE, SIZE, 16, 64)
    assert not torch.equal(coarse["lips"][0], t["lips"][0])  # not the 68 points' polygons


def test_a_part_with_no_pixels_falls_back_to_its_mesh_points(faces: dict[str, np.ndarray]):
    mesh = faces["landmarks478"][:1].copy()
    eye = part_landmarks_478()["right_eye"]
    mesh[0, eye, 0] -= 2 * SIZE  # the eye's outline off the crop: no pixel inside it
    pts, valid = part_targets(faces["landmarks"][:1], SIZE, SIZE, 32, 64, mesh)["right_eye"]
    np.testing.assert_allclose(pts[0][valid[0]].numpy(), mesh[0, eye, :2], atol=1e-5)


def _recipe(path: Path, face_model: str, **losses: object) -> Recipe:
    return Recipe.model_validate({
        "name": "mesh478", "model": {"face_model": face_model},
        "losses": {"lmk": 1e-2, "prdl": 1e-2, "prdl_points": 8, "prdl_skin_points": 32, **losses},
        "data": {"kind": "npz", "path": str(path), "held_fraction": 0.34},
        "net": {"width": 4, "input_size": 32}, "train": {"epochs": 1, "batch_size": 2, "augment_flip": 0.5}})


def test_a_mesh478_prdl_run_trains(rig_model: MorphableModel, face: TorchFaceModel, faces: dict[str, np.ndarray],
                                   tmp_path: Path):
    model_path = rig_model.save(tmp_path / "rig.npz")
    np.savez(tmp_path / "d.npz", **faces)
    recipe = _recipe(tmp_path / "d.npz", str(model_path), prdl_parts="mesh478")
    data = load_data(recipe, face)
    assert torch.allclose(data.landmarks478, torch.from_numpy(faces["landmarks478"]) / 2)  # 64 -> 32 px crops
    res = train_regressor(recipe)
    assert len(res.history) == 1 and np.isfinite(res.history[0]["prdl"]) and res.history[0]["prdl"] > 0


def test_mesh478_parts_say_what_is_missing(rig_model: MorphableModel, faces: dict[str, np.ndarray],
                                           tmp_path: Path):
    model_path = str(rig_model.save(tmp_path / "rig.npz"))
    np.savez(tmp_path / "no_mesh.npz", images=faces["images"], landmarks=faces["landmarks"])
    with pytest.raises(ValueError, match="needs landmarks478 in the data: build it with `facetrack train data"):
        train_regressor(_recipe(tmp_path / "no_mesh.npz", model_path, prdl_parts="mesh478"))
    np.savez(tmp_path / "d.npz", **faces)
    with pytest.raises(ValueError, match=r"the 478 face mesh points \(the built-in rig.*this one has 296 vertices"):
        train_regressor(_recipe(tmp_path / "d.npz", "synthetic", prdl_parts="mesh478"))
    assert train_regressor(_recipe(tmp_path / "no_mesh.npz", model_path)).history  # ibug68 needs no mesh


def test_clip_npz_keeps_the_mesh_in_crop_pixels(short_face_clip: Path, tmp_path: Path):
    """The stored 478 points, mapped to iBUG-68 as the built-in model embeds them, land on the stored 68
    points (the fitter's, which follow the mesh): both went through the same crop transform."""
    from facetrack.training.distil import track_clip, write_npz

    clip = track_clip(short_face_clip, 96, every=4, max_frames=12)
    assert len(clip.landmarks478) == len(clip.images) == 3
    with np.load(write_npz([clip], tmp_path / "c.npz"), allow_pickle=False) as z:
        assert {"images", "landmarks", "landmarks478", "expression", "p_closed", "subject", "clips"} <= set(z.files)
        lmk, mesh = z["landmarks"], z["landmarks478"]
    assert mesh.shape == (3, 478, 3) and mesh.dtype == np.float32
    assert ((mesh[..., :2] > 0) & (mesh[..., :2] < 96)).all()
    err = np.linalg.norm(np.stack([rig.ibug68_from_478(m) for m in mesh]) - lmk, axis=-1)
    assert err.mean() < 1.0, err.mean()
    depth = np.ptp(mesh[..., 2], axis=1) / np.ptp(mesh[..., 0], axis=1)
    assert ((depth > 0.3) & (depth < 1.5)).all()  # z scaled like x and y, not left in image pixels
