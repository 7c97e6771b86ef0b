"""The coefficient regressor: recipes, a tiny CPU training run, resume, ONNX export and the runtime."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402
from pydantic import ValidationError  # noqa: E402

from facetrack.engines.onnx_runtime import OnnxEngine  # noqa: E402
from facetrack.tracker.cli.train import train_group  # noqa: E402
from facetrack.training.recipe import RECIPES_DIR, Recipe, load_recipe  # noqa: E402
from facetrack.training.regressor import export_onnx, normalise, part_targets, train_regressor, vertex_parts  # noqa: E402
from facetrack.training.synthetic import synthetic_batch, synthetic_model  # noqa: E402

TINY = {
    "name": "tiny",
    "losses": {"lmk": 1e-2, "hard_points": 5, "ldl": 1.0, "elam": True, "prdl": 1e-2, "prdl_points": 16,
               "prdl_skin_points": 64, "pho": 1.0, "mouth": 0.1, "uniform": 1.0, "sir_cos": 0.1, "sir_center": 0.01,
               "sir_kl": 0.01, "coef": 0.0},
    "data": {"samples": 96, "subjects": 8},
    "net": {"width": 8, "input_size": 64},
    "train": {"epochs": 6, "batch_size": 16, "lr": 3e-3},
}


def test_every_shipped_recipe_validates_and_carries_the_papers_weights():
    recipes = {p.stem: load_recipe(p) for p in sorted(RECIPES_DIR.glob("*.json"))}
    assert set(recipes) == {"elam_ldl", "prdl_3ddfa_v3", "specular_deng", "zhou_huang", "sir", "facetrack",
                            "distil_clips"}
    v3 = recipes["prdl_3ddfa_v3"].losses
    assert (v3.prdl, v3.lmk, v3.pho, v3.per, v3.reg_id, v3.prdl_skin_points) == (0.8e-3, 1.6e-3, 1.9, 0.2, 3e-4, 3000)
    deng = recipes["specular_deng"].losses
    assert (deng.per, deng.pho, deng.lmk, deng.mouth, deng.reg_id, deng.uniform) == (
        0.2, 1.92, 1.8e-3, 1.3e-3, 5e-4, 5.0)
    elam = recipes["elam_ldl"].losses
    assert (elam.ldl, elam.pho, elam.per, elam.lmk_eye_mouth, elam.elam) == (0.5, 1.8, 0.17, 1.5, True)
    zh = recipes["zhou_huang"].losses
    assert (zh.lmk_contour, zh.reg_id, zh.reg_exp, zh.reg_tex) == (0.5, 2e-5, 2e-2, 4e-4) and zh.hard_points > 0


def test_recipe_validation_rejects_typos_and_bad_values():
    with pytest.raises(ValidationError):
        Recipe.model_validate({"name": "x", "losses": {"lmkk": 1.0}})
    with pytest.raises(ValidationError):
        Recipe.model_validate({"name": "x", "losses": {"pho": -1.0}})
    with pytest.raises(ValidationError):
        Recipe.model_validate({"name": "x", "data": {"kind": "npz"}})


def test_prdl_parts_cover_the_face():
    face = synthetic_model()
    parts = vertex_parts(face, 50)
    assert set(parts) == {"right_eye", "left_eye", "nose", "lips", "skin"}
    assert len(parts["skin"]) == 50 and all(len(v) >= 6 for v in parts.values())
    b = synthetic_batch(face, 2, 64)
    t = part_targets(b.landmarks.numpy(), 64, 64, 16, 40)
    pts, mask = t["lips"]
    assert pts.shape[0] == 2 and mask.any(1).all() and t["skin"][1].sum(1).max() <= 40


def test_tiny_run_lowers_the_loss_resumes_and_exports_an_engine_the_runtime_runs(tmp_path: Path):
    recipe = Recipe.model_validate(TINY)
    recipe.train.epochs = 3
    first = train_regressor(recipe, tmp_path)
    assert len(first.history) == 3
    state = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert state["epoch"] == 3 and "sir" in state
    recipe.train.epochs = 6
    res = train_regressor(recipe, tmp_path, resume=True)
    h = res.history
    assert [r["epoch"] for r in h] == [1, 2, 3, 4, 5, 6]
    assert h[-1]["loss"] < 0.8 * h[0]["loss"]
    assert h[-1]["held_nme"] < h[0]["held_nme"]
    curves = (tmp_path / "curves.csv").read_text().splitlines()
    assert curves[0].startswith("epoch,step,loss") and len(curves) == 7

    path = export_onnx(res.model, tmp_path / "regress.onnx", {"recipe": recipe.name})
    engine = OnnxEngine(path)
    assert engine.metadata["engine"] == "regress" and engine.metadata["input_size"] == [64, 64]
    x = normalise(res.data.images[:3])
    outs = engine.run(x.numpy())
    with torch.no_grad():
        ref = res.model(x)
    assert [o.shape for o in outs] == [tuple(r.shape) for r in ref]
    for o, r in zip(outs, ref):
        np.testing.assert_allclose(o, r.numpy(), atol=1e-4)
    assert ((outs[1] >= 0) & (outs[1] <= 1)).all()  # expression is bounded inside the engine


def test_cli_trains_on_an_npz_dataset_and_writes_the_engine(tmp_path: Path):
    face = synthetic_model()
    b = synthetic_batch(face, 24, 64, seed=3)
    images = (b.images.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    np.savez(tmp_path / "faces.npz", images=images, landmarks=b.landmarks.numpy(), expression=b.expression.numpy(),
             p_closed=b.expression[:, 0].numpy())
    cfg = {"name": "npz", "losses": {"lmk": 1e-2, "ldl": 1.0, "elam": True, "coef": 1.0, "prdl": 1e-2,
                                     "prdl_points": 8, "prdl_skin_points": 16},
           "data": {"kind": "npz", "path": "faces.npz", "held_fraction": 0.25},
           "net": {"width": 4, "input_size": 64},
           "train": {"epochs": 1, "batch_size": 8, "augment_rotation_deg": 10, "augment_scale": 0.1,
                     "augment_colour": 0.1}}
    (tmp_path / "r.json").write_text(json.dumps(cfg))
    out = tmp_path / "run"
    result = CliRunner().invoke(train_group, ["regressor", "--config", str(tmp_path / "r.json"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "epoch   1" in result.output and (out / "regress.onnx").is_file()
    meta = json.loads((out / "regress.json").read_text())
    assert meta["engine"] == "regress" and meta["recipe"]["name"] == "npz" and "sha256" in meta


def test_crop_face_maps_the_landmark_box_to_the_crop_centre():
    from facetrack.training.distil import CROP_SCALE, crop_face

    image = np.zeros((200, 300, 3), np.uint8)
    lmk = np.array([[100.0, 50.0], [180.0, 50.0], [140.0, 150.0]])  # box 80 x 100, centre (140, 100)
    crop, out = crop_face(image, lmk, 64)
    s = 64 / (CROP_SCALE * 100)
    assert crop.shape == (64, 64, 3)
    np.testing.assert_allclose(out, (lmk - [140, 100]) * s + 32, atol=1e-4)


def test_held_subjects_keep_whole_clips_out(tmp_path: Path):
    face = synthetic_model()
    b = synthetic_batch(face, 6, 32, seed=0)
    np.savez(tmp_path / "d.npz", images=(b.images.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8),
             landmarks=b.landmarks.numpy(), subject=np.array([0, 0, 1, 1, 2, 2]),
             p_closed=np.array([[np.nan, 0.5]] * 6, np.float32))
    from facetrack.training.regressor import load_data

    recipe = Recipe.model_validate({"name": "h", "data": {"kind": "npz", "path": str(tmp_path / "d.npz"),
                                                          "held_subjects": [1]}, "net": {"input_size": 64}})
    data = load_data(recipe, face)
    assert data.held.tolist() == [False, False, True, True, False, False]
    assert data.images.shape[-1] == 64 and torch.allclose(data.landmarks, b.landmarks * 2)
    assert data.p_closed[0].tolist() == [0.0, 0.5]  # a missing reading means no correction


def test_augment_moves_the_points_with_the_pixels():
    from facetrack.training.regressor import augment

    img = torch.zeros(2, 3, 40, 40)
    img[:, :, 9:12, 24:27] = 1.0  # a 3x3 blob centred on pixel (25.5, 10.5)
    out, move, _ = augment(img, 30.0, 0.2, 0.0, torch.Generator().manual_seed(1))
    p = move(torch.tensor([[[25.5, 10.5]]] * 2))
    ys, xs = torch.meshgrid(torch.arange(40) + 0.5, torch.arange(40) + 0.5, indexing="ij")
    for i in range(2):
        m = out[i, 0]
        centroid = torch.stack([(m * xs).sum() / m.sum(), (m * ys).sum() / m.sum()])
        assert torch.allclose(centroid, p[i, 0], atol=0.3)
    assert not torch.allclose(p[0], p[1])  # each image gets its own transform
