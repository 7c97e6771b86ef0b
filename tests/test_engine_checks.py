"""Engine files that disagree with their sidecar, or are broken, are refused at load with a message naming
the file: real ONNX networks written here, loaded by ONNX Runtime, driven through the real CLI."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")
from onnx import TensorProto, helper  # noqa: E402

from facetrack.engines.eye_state import EyeStateEngine  # noqa: E402
from facetrack.engines.onnx_runtime import EngineError, write_sidecar  # noqa: E402
from facetrack.engines.regress import RegressEngine  # noqa: E402

CLI = [sys.executable, "-m", "facetrack.tracker.cli"]
SIZES = {"identity": 4, "expression": 52, "pose": 6}


def _save(graph: onnx.GraphProto, path: Path, meta: dict) -> Path:
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    onnx.save(model, str(path))
    write_sidecar(path, meta)
    return path


def regress_onnx(path: Path, side: int = 32, sizes: dict[str, int] | None = None, nan: bool = False,
                 **meta: object) -> Path:
    """(N, 3, side, side) -> the mean pixel times a weight row per output: a tiny but real regressor."""
    sizes = sizes or SIZES
    nodes = [helper.make_node("ReduceMean", ["crops"], ["mean"], axes=[1, 2, 3], keepdims=1),
             helper.make_node("Reshape", ["mean", "shape"], ["flat"])]
    inits = [helper.make_tensor("shape", TensorProto.INT64, [2], [-1, 1])]
    outputs = []
    for name, size in sizes.items():
        weights = np.full((1, size), np.nan if nan else 0.01, np.float32)
        inits.append(helper.make_tensor(f"w_{name}", TensorProto.FLOAT, weights.shape, weights.ravel()))
        nodes.append(helper.make_node("MatMul", ["flat", f"w_{name}"], [name]))
        outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, ["N", size]))
    graph = helper.make_graph(nodes, "regress", [helper.make_tensor_value_info(
        "crops", TensorProto.FLOAT, ["N", 3, side, side])], outputs, inits)
    sidecar = {"engine": "regress", "input_size": [side, side], "normalisation": {"mean": 0.5, "std": 0.25},
               "outputs": dict(SIZES), **meta}
    return _save(graph, path, sidecar)


def eye_onnx(path: Path, nan: bool = False, **meta: object) -> Path:
    """(N, 1, 36, 48) -> sigmoid(mean pixel x w): P(closed) per crop."""
    weight = helper.make_tensor("w", TensorProto.FLOAT, [], [np.nan if nan else 1.0])
    nodes = [helper.make_node("ReduceMean", ["crops"], ["mean"], axes=[1, 2, 3], keepdims=0),
             helper.make_node("Mul", ["mean", "w"], ["logit"]), helper.make_node("Sigmoid", ["logit"], ["p_closed"])]
    graph = helper.make_graph(nodes, "eye", [helper.make_tensor_value_info("crops", TensorProto.FLOAT,
                                                                            ["N", 1, 36, 48])],
                              [helper.make_tensor_value_info("p_closed", TensorProto.FLOAT, ["N"])], [weight])
    sidecar = {"engine": "eye_state", "input_size": [48, 36], "normalisation": {"mean": 0.5, "std": 0.25}, **meta}
    return _save(graph, path, sidecar)


def test_sound_engines_load_and_run(tmp_path: Path) -> None:
    engine = RegressEngine(regress_onnx(tmp_path / "regress.onnx"), backend="cpu")
    out = engine.predict(np.full((2, 32, 32, 3), 128, np.uint8))
    assert {k: v.shape for k, v in out.items()} == {k: (2, n) for k, n in SIZES.items()}
    eyes = EyeStateEngine(eye_onnx(tmp_path / "eye.onnx"))
    assert eyes.predict(np.zeros((3, 36, 48), np.uint8)).shape == (3,)


BROKEN_REGRESSORS = {
    "input size 100000": (dict(input_size=[100000, 100000]), "input_size"),
    "std 0": (dict(normalisation={"mean": 0.5, "std": 0}), "non-zero std"),
    "std NaN": (dict(normalisation={"mean": 0.5, "std": float("nan")}), "finite"),
    "input size not the network's": (dict(input_size=[64, 64]), "the network takes float32 (N, 3, 32, 32)"),
    "output sizes not the network's": (dict(outputs={"identity": 4, "expression": 52, "pose": 7}), "output pose"),
    "output names not the network's": (dict(outputs={"identity": 4, "expression": 52, "rot": 6}), "outputs"),
}


@pytest.mark.parametrize("case", BROKEN_REGRESSORS)
def test_a_regressor_that_disagrees_with_its_sidecar_is_refused_through_the_cli(
        tmp_path: Path, blank_clip: Path, case: str) -> None:
    meta, message = BROKEN_REGRESSORS[case]
    path = regress_onnx(tmp_path / "regress.onnx", **meta)
    earlier = tmp_path / "take.jsonl"
    earlier.write_bytes(b'{"an": "earlier take"}\n' * 1000)
    digest = hashlib.sha256(earlier.read_bytes()).hexdigest()
    done = subprocess.run([*CLI, "run", str(blank_clip), "--engine", "regress", "--regressor", str(path),
                           "--backend", "cpu", "--out", str(earlier)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and str(path) in done.stderr and "Traceback" not in done.stderr
    assert hashlib.sha256(earlier.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["blank.mp4", "regress.json", "regress.onnx", "take.jsonl"]


def test_nan_outputs_are_refused_at_load_not_written_as_null(tmp_path: Path, blank_clip: Path) -> None:
    regressor = regress_onnx(tmp_path / "regress.onnx", nan=True)
    with pytest.raises(EngineError, match="not finite"):
        RegressEngine(regressor, backend="cpu")
    eyes = eye_onnx(tmp_path / "eye.onnx", nan=True)
    done = subprocess.run([*CLI, "run", str(blank_clip), "--eye-engine", str(eyes), "--out",
                           str(tmp_path / "x.jsonl")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "p_closed is not finite" in done.stderr and str(eyes) in done.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_a_regressor_without_the_52_arkit_weights_is_refused(tmp_path: Path) -> None:
    from facetrack.tracker.stages.regress import RegressStage

    four = {"identity": 4, "expression": 4, "pose": 6}
    path = regress_onnx(tmp_path / "regress.onnx", sizes=four, outputs=four)
    with pytest.raises(EngineError, match="4 expression weights.*52 ARKit"):
        RegressStage(path, backend="cpu")


def test_an_eye_engine_of_another_crop_size_is_refused(tmp_path: Path) -> None:
    path = eye_onnx(tmp_path / "eye.onnx", input_size=[64, 64])
    with pytest.raises(EngineError, match=r"takes float32 \(N, 1, 36, 48\)"):
        EyeStateEngine(path)
    side = json.loads((tmp_path / "eye.json").read_text())
    assert side["input_size"] == [64, 64]
