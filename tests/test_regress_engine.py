"""The `regress` engine at run time: a tiny regressor trained here, exported, loaded by the runtime, and run
by `facetrack run --engine regress` on a real clip. Real training, real ONNX Runtime, no mocks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import av
import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from click.testing import CliRunner  # noqa: E402

from facetrack.adapters.file_sinks import read_metadata, read_results  # noqa: E402
from facetrack.engines.eye_state import DEFAULT_ENGINE as EYE_STATE_ENGINE  # noqa: E402
from facetrack.engines.onnx_runtime import EngineError, sidecar_path  # noqa: E402
from facetrack.engines.regress import CROP_SCALE, RegressEngine, crop_face  # noqa: E402
from facetrack.tracker.cli.app import app  # noqa: E402
from facetrack.tracker.config import TrackerConfig  # noqa: E402
from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES  # noqa: E402
from facetrack.tracker.facemodel.builtin_rig import ibug68_from_478  # noqa: E402
from facetrack.tracker.pipeline import Tracker  # noqa: E402
from facetrack.tracker.stages.regress import RegressStage  # noqa: E402
from facetrack.training.recipe import Recipe  # noqa: E402
from facetrack.training.regressor import export_onnx, normalise, train_regressor  # noqa: E402

SIZE = 64
# the synthetic model with 52 expression modes: the runtime reads the 52 weights as ARKit's, as it
# does for an engine trained on the built-in rig; one short epoch is enough to test the plumbing
TINY = {
    "name": "tiny-regress",
    "losses": {"lmk": 1e-2, "coef": 1.0},
    "model": {"expression": len(ARKIT_BLENDSHAPES)},
    "data": {"samples": 24, "subjects": 4},
    "net": {"width": 4, "input_size": SIZE},
    "train": {"epochs": 1, "batch_size": 8, "threads": 1},
}


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory):
    """(engine path, the trained torch model, its training images (N, 3, S, S) in [0, 1])."""
    out = tmp_path_factory.mktemp("regress")
    result = train_regressor(Recipe.model_validate(TINY))
    path = export_onnx(result.model, out / "regress.onnx", {"recipe": TINY["name"]})
    return path, result.model, result.data.images


def _copy(engine: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    shutil.copy(engine, folder / engine.name)
    shutil.copy(sidecar_path(engine), folder / sidecar_path(engine).name)
    return folder / engine.name


def test_engine_runs_a_batch_as_the_trained_network_does(trained) -> None:
    path, model, images = trained
    engine = RegressEngine(path, backend="cpu")
    assert engine.input_size == SIZE and engine.backend == "cpu"
    crops = (images[:5].permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    out = engine.predict(crops)
    assert set(out) == {"identity", "expression", "pose", "lighting", "texture", "specular"}
    assert all(v.shape == (5, engine.sizes[k]) and v.dtype == np.float32 for k, v in out.items())
    assert out["expression"].shape[1] == 52 and ((out["expression"] >= 0) & (out["expression"] <= 1)).all()
    assert all(np.isfinite(v).all() for v in out.values())
    with torch.no_grad():  # the engine's preprocessing is the training's normalisation
        ref = model(normalise(torch.from_numpy(crops).permute(0, 3, 1, 2).float() / 255))
    for name, r in zip(model.sizes, ref):
        np.testing.assert_allclose(out[name], r.numpy(), atol=1e-4)
    assert all(len(v) == 0 for v in engine.predict(np.zeros((0, SIZE, SIZE, 3), np.uint8)).values())
    with pytest.raises(ValueError, match="uint8"):
        engine.predict(crops.astype(np.float32))


def test_wrong_missing_or_malformed_engines_are_clear_errors(trained, tmp_path: Path) -> None:
    path = trained[0]
    with pytest.raises(EngineError, match="facetrack train regressor"):
        RegressEngine(tmp_path / "nope.onnx")
    with pytest.raises(EngineError, match="not a regress engine.*'eye_state'"):
        RegressEngine(EYE_STATE_ENGINE)
    no_sidecar = _copy(path, tmp_path / "a")
    sidecar_path(no_sidecar).unlink()
    with pytest.raises(EngineError, match="missing or has no sha256"):
        RegressEngine(no_sidecar)
    bad_json = _copy(path, tmp_path / "b")
    sidecar_path(bad_json).write_text("{not json")
    with pytest.raises(EngineError, match="not valid JSON"):
        RegressEngine(bad_json)
    truncated = _copy(path, tmp_path / "c")
    truncated.write_bytes(truncated.read_bytes()[:1000])
    with pytest.raises(EngineError, match="sha256"):
        RegressEngine(truncated)
    four = _copy(path, tmp_path / "d")  # a sidecar that disagrees with its network (tests/test_engine_checks.py
    meta = json.loads(sidecar_path(four).read_text())  # has an engine whose expressions are truly 4)
    meta["outputs"]["expression"] = 4
    sidecar_path(four).write_text(json.dumps(meta))
    with pytest.raises(EngineError, match=r"output expression is \(N, 52\), the sidecar says 4"):
        RegressStage(four, backend="cpu")


def test_default_engine_is_the_installed_one(trained, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path))
    assert RegressStage(backend="cpu").landmark_engine is not None  # none installed: the shipped one
    _copy(trained[0], tmp_path / "engines")
    assert RegressStage(backend="cpu").engine.path == tmp_path / "engines" / "regress.onnx"


def test_cli_refuses_contradicting_options_before_writing_anything(trained, tmp_path: Path) -> None:
    runner = CliRunner()
    out = tmp_path / "x.jsonl"
    missing = runner.invoke(app, ["run", "clip.mp4", "--engine", "regress", "--regressor", str(tmp_path / "no.onnx"),
                                  "--out", str(out)])
    assert missing.exit_code == 2 and "facetrack train regressor" in missing.output and not out.exists()
    assert missing.exception is None or isinstance(missing.exception, SystemExit)
    other = runner.invoke(app, ["run", "clip.mp4", "--engine", "mediapipe", "--regressor", str(trained[0])])
    assert other.exit_code == 2 and "--regressor goes with --engine regress" in other.output
    mesh = runner.invoke(app, ["run", "clip.mp4", "--engine", "regress", "--regressor", str(trained[0]),
                               "--mesh", str(tmp_path / "m.npz")])
    assert mesh.exit_code == 2 and "dense mesh" in mesh.output


def test_runtime_crop_is_the_training_crop() -> None:
    from facetrack.training import distil

    assert distil.crop_face is crop_face and distil.CROP_SCALE == CROP_SCALE
    image = np.zeros((200, 300, 3), np.uint8)
    lmk = np.array([[100.0, 50.0], [180.0, 50.0], [140.0, 150.0]])  # box 80 x 100, centre (140, 100)
    crop, out = crop_face(image, lmk, SIZE)
    np.testing.assert_allclose(out, (lmk - [140, 100]) * SIZE / (CROP_SCALE * 100) + SIZE / 2, atol=1e-4)


@pytest.mark.media
def test_landmark_68_points_cut_the_crops_the_fitter_s_points_cut(short_face_clip: Path) -> None:
    """Training crops are cut around the fitter's 68 points, run-time crops around the landmarks' own: same box."""
    with Tracker(TrackerConfig(max_frames=20)) as tracker:
        faces = [r.faces[0] for r in tracker.track(short_face_clip)]

    def box(points: np.ndarray) -> tuple[np.ndarray, float]:
        lo, hi = points.min(0), points.max(0)
        return (lo + hi) / 2, CROP_SCALE * float((hi - lo).max())

    shift, ratio = [], []
    for face in faces:
        (c_run, s_run), (c_fit, s_fit) = box(ibug68_from_478(face.landmarks)), box(np.asarray(face.landmarks68))
        shift.append(np.linalg.norm(c_run - c_fit) / s_fit)
        ratio.append(s_run / s_fit)
    assert np.mean(shift) < 0.015 and max(shift) < 0.03
    assert abs(np.mean(ratio) - 1) < 0.025 and max(abs(np.array(ratio) - 1)) < 0.06


@pytest.mark.media
def test_tracker_batches_faces_and_times_the_regress_stage(trained, short_face_clip: Path) -> None:
    config = TrackerConfig(coefficients="regress", regressor=trained[0], backend="cpu", max_frames=5, max_faces=2)
    with Tracker(config) as tracker:
        results = list(tracker.track(short_face_clip))
    stages = tracker.timings.summary()
    assert stages["regress"].frames == 5 and "fit" not in stages and "dynamics" not in stages
    assert "gaze" in stages and "eyes" in stages
    assert tracker.metadata.model_id == "regress" and tracker.metadata.expression_names == list(ARKIT_BLENDSHAPES)
    # two faces of one frame in one batch: the same face twice gives the same answer twice
    with av.open(str(short_face_clip)) as c:
        image = next(c.decode(video=0)).to_ndarray(format="rgb24")
    face = results[0].faces[0]
    twins = [face.model_copy(deep=True), face.model_copy(deep=True)]
    RegressStage(trained[0], backend="cpu", max_faces=2).write(image, twins)
    np.testing.assert_allclose(twins[0].blendshapes, twins[1].blendshapes)
    assert twins[0].pose == twins[1].pose


@pytest.mark.media
def test_run_engine_regress_writes_blendshapes_and_pose(trained, short_face_clip: Path, tmp_path: Path) -> None:
    out, npz = tmp_path / "take.jsonl", tmp_path / "take.npz"  # npz: the format that records the stream metadata
    done = CliRunner().invoke(app, ["run", str(short_face_clip), "--engine", "regress", "--regressor",
                                    str(trained[0]), "--backend", "cpu", "--out", str(out), "--out", str(npz),
                                    "--quiet"])
    assert done.exit_code == 0, done.output
    results = read_results(out)
    assert [r.frame_index for r in results] == list(range(40))
    for r in results:
        (face,) = r.faces
        assert face.blendshapes.shape == (52,) and ((face.blendshapes >= 0) & (face.blendshapes <= 1)).all()
        assert face.coefficients.model_id == "regress" and face.coefficients.expression.shape == (52,)
        assert np.isfinite([face.pose.yaw, face.pose.pitch, face.pose.roll, *face.pose.translation]).all()
        assert face.pose.translation[2] < 0  # in front of the camera
        assert face.eyes is not None
    meta = read_metadata(npz)
    assert meta.model_id == "regress" and meta.expression_size == 52
