"""The eye-state engine: the committed default, its checks, the trainer and ONNX export."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from facetrack.engines.eye_state import DEFAULT_ENGINE, EyeStateEngine
from facetrack.engines.onnx_runtime import EngineError
from facetrack.tracker.stages.eyes import CROP_SIZE


def test_default_engine_loads_with_metadata() -> None:
    eng = EyeStateEngine()
    assert eng.input_size == CROP_SIZE
    meta = eng.metadata
    for key in ("version", "normalisation", "input_size", "sha256", "metrics", "data"):
        assert key in meta
    p = eng.predict(np.full((2, CROP_SIZE[1], CROP_SIZE[0]), 128, np.uint8))
    assert p.shape == (2,) and ((p >= 0) & (p <= 1)).all()
    with pytest.raises(ValueError):
        eng.predict(np.zeros((2, 10, 10), np.uint8))


def test_corrupt_engine_is_refused(tmp_path: Path) -> None:
    onnx = tmp_path / "eye_state.onnx"
    shutil.copy(DEFAULT_ENGINE, onnx)
    side = json.loads(DEFAULT_ENGINE.with_suffix(".json").read_text())
    side["sha256"] = "0" * 64
    onnx.with_suffix(".json").write_text(json.dumps(side))
    with pytest.raises(EngineError, match="sha256"):
        EyeStateEngine(onnx)
    onnx.with_suffix(".json").unlink()
    with pytest.raises(EngineError, match="missing"):
        EyeStateEngine(onnx)
    with pytest.raises(EngineError, match="not found"):
        EyeStateEngine(tmp_path / "nope.onnx")


def _synthetic_crops(root: Path, n: int = 24) -> None:
    """Open eyes: a dark disc in a light almond; closed: a dark lash line."""
    rng = np.random.default_rng(0)
    for label in ("Open", "Closed"):
        (root / "eye_crops" / label).mkdir(parents=True)
        for i in range(n):
            img = np.full((60, 80), int(rng.integers(150, 220)), np.uint8)
            cx, cy = 40 + int(rng.integers(-4, 5)), 30 + int(rng.integers(-3, 4))
            if label == "Open":
                cv2.ellipse(img, (cx, cy), (24, 11), 0, 0, 360, 235, -1)
                cv2.circle(img, (cx, cy), 9, 40, -1)
            else:
                cv2.ellipse(img, (cx, cy), (24, 6), 0, 0, 180, 40, 2)
            cv2.imwrite(str(root / "eye_crops" / label / f"{i}.png"), img)


def test_train_export_and_run_tiny(tmp_path: Path) -> None:
    """The whole `facetrack train eye-state` path on a tiny synthetic set (a few seconds)."""
    from facetrack.tracker.cli.train import train_group

    pytest.importorskip("torch")
    data = tmp_path / "data"
    _synthetic_crops(data)
    out = tmp_path / "es.onnx"
    res = CliRunner().invoke(train_group, ["eye-state", str(data), "--out", str(out), "--epochs", "3",
                                           "--batch-size", "16", "--width", "4", "--held-fraction", "0.3",
                                           "--threads", "1", "--faces", "missing=closed"])
    assert res.exit_code == 0, res.output
    eng = EyeStateEngine(out)
    meta = eng.metadata
    assert meta["arch"] == "tiny" and meta["epochs"] == 3
    assert "held_all" in meta["metrics"]
    assert meta["data"]["eye_crops"]["held"]["open"] > 0
    p = eng.predict(np.zeros((3, CROP_SIZE[1], CROP_SIZE[0]), np.uint8))
    assert p.shape == (3,)


def test_export_matches_torch(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    from facetrack.training.eye_state import build_network, export_onnx, normalise

    net = build_network("tiny", 4).eval()
    out = export_onnx(net, tmp_path / "x.onnx", {"note": "test"})
    crops = np.random.default_rng(1).integers(0, 255, (5, CROP_SIZE[1], CROP_SIZE[0]), dtype=np.uint8)
    with torch.no_grad():
        ref = torch.sigmoid(net(torch.from_numpy(normalise(crops)))).numpy()
    np.testing.assert_allclose(EyeStateEngine(out).predict(crops), ref, atol=1e-5)


@pytest.mark.media
def test_default_engine_accuracy_on_held_back_crops(media_dir: Path) -> None:
    """The committed engine on the eye crops it never saw (same split as its training)."""
    from facetrack.training.eye_data import load_dataset

    meta = json.loads(DEFAULT_ENGINE.with_suffix(".json").read_text())
    data = load_dataset(media_dir / "eye_state", ["eye_crops"], [], meta["split"]["held_fraction"])
    held = data.subset(data.held)
    p = EyeStateEngine().predict_stored(held.crops)
    acc = float(((p >= 0.5) == held.labels).mean())
    assert len(held.labels) > 200 and acc >= 0.97, acc


def test_resnet50_option_builds_and_runs() -> None:
    torch = pytest.importorskip("torch")
    from facetrack.training.eye_state import build_network

    net = build_network("resnet50").eval()
    with torch.no_grad():
        out = net(torch.zeros(2, 1, CROP_SIZE[1], CROP_SIZE[0]))
    assert out.shape == (2,)
    with pytest.raises(ValueError):
        build_network("vgg")


def test_the_engine_runs_on_another_backend_with_the_same_answers() -> None:
    pytest.importorskip("torch", reason="the PyTorch reference backend needs the train extra")
    crops = np.random.default_rng(3).integers(0, 256, (6, 36, 48), dtype=np.uint8)
    reference = EyeStateEngine(backend="torch")
    assert reference.network.backend == "torch"
    np.testing.assert_allclose(reference.predict(crops), EyeStateEngine().predict(crops), atol=1e-4)


def test_the_eye_stage_cuts_crops_as_its_engine_was_trained(tmp_path: Path) -> None:
    """An engine trained on other crops (its metadata's `crop`) gets those crops, not the package defaults."""
    from facetrack.tracker.core.schema import FaceResult, HeadPose
    from facetrack.tracker.stages import eyes as E
    from facetrack.tracker.stages.eye_options import EyeOptions
    from facetrack.tracker.stages.eye_state import EyeStage

    onnx = tmp_path / "eye_state.onnx"
    shutil.copy(DEFAULT_ENGINE, onnx)
    side = json.loads(DEFAULT_ENGINE.with_suffix(".json").read_text())
    side["crop"] = {**side["crop"], "scale": 2.6, "y_shift": 0.12}
    onnx.with_suffix(".json").write_text(json.dumps(side))

    lm = np.zeros((478, 3), np.float32)
    lm[:, :2] = (320.0, 260.0)
    lm[E.R_CORNERS, :2] = [(200.0, 200.0), (280.0, 200.0)]
    lm[E.L_CORNERS, :2] = [(440.0, 200.0), (360.0, 200.0)]
    image = np.random.default_rng(3).integers(0, 256, (480, 640, 3), dtype=np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 4)  # structure at the scale of an eye crop
    face = FaceResult(track_id=0, bbox=(150.0, 100.0, 490.0, 420.0), score=1.0, landmarks=lm,
                      pose=HeadPose(rotation=(0.0, 0.0, 0.0, 1.0), yaw=0.0, pitch=0.0, roll=0.0,
                                    translation=(0.0, 0.0, -50.0)))
    stage = EyeStage(EyeOptions(engine=onnx, elam=False))
    assert (stage.engine.crop_scale, stage.engine.crop_y_shift) == (2.6, 0.12)
    measured = stage.measure(image, face).p_closed

    trained = stage.engine.predict(E.cut_eye_crops(image, lm, CROP_SIZE, scale=2.6, y_shift=0.12))
    defaults = stage.engine.predict(E.cut_eye_crops(image, lm, CROP_SIZE))
    np.testing.assert_allclose(measured, trained, atol=1e-6)
    assert not np.allclose(trained, defaults, atol=1e-4), "the test needs crops that change the engine's answer"
