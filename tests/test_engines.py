"""The engine interface: backend selection, checksums, batch = items, PyTorch reference, TensorRT, crops."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from facetrack.engines import backends
from facetrack.engines.backends import open_network, select_backend
from facetrack.engines.eye_state import DEFAULT_ENGINE
from facetrack.engines.network import Network
from facetrack.engines.onnx_runtime import EngineError, OnnxEngine
from facetrack.engines.preprocess import crop_batch_cpu, crop_batch_xp, cupy_usable
from facetrack.tracker.core.errors import FacetrackError

TENSORRT = backends.tensorrt()
needs_tensorrt = pytest.mark.skipif(not TENSORRT.ok, reason=f"TensorRT backend unavailable: {TENSORRT.reason}")
needs_torch = pytest.mark.skipif(not backends.torch_reference().ok, reason=backends.torch_reference().reason)


def _crops(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, 1, (n, 1, 36, 48)).astype(np.float32)


def test_auto_picks_the_fastest_available_backend_and_says_why_not_the_others() -> None:
    choice = select_backend("auto")
    if not TENSORRT.ok and not backends.ort_cuda().ok:
        assert choice.name == "cpu"
        assert "tensorrt:" in choice.reason and "cuda:" in choice.reason
    else:
        assert choice.name in ("tensorrt", "cuda")
    assert select_backend("cpu").name == "cpu"
    with pytest.raises(EngineError, match="unknown backend"):
        select_backend("opencl")  # type: ignore[arg-type]


def test_an_unavailable_backend_is_refused_with_its_reason() -> None:
    for name, probe in backends.probes().items():
        if not probe.ok:
            with pytest.raises(EngineError, match="cannot run here") as info:
                select_backend(name)  # type: ignore[arg-type]
            assert probe.reason in str(info.value)
            assert isinstance(info.value, FacetrackError)  # the CLI reports it, no traceback


def test_network_describes_its_tensors_and_batch_equals_items() -> None:
    net = open_network(DEFAULT_ENGINE, "cpu")
    assert isinstance(net, Network) and net.backend == "cpu"
    assert [t.name for t in net.inputs] == ["crops"] and net.inputs[0].shape[1:] == (1, 36, 48)
    assert net.inputs[0].shape[0] is None and net.inputs[0].dtype == "float32"
    assert [t.name for t in net.outputs] == ["p_closed"]
    x = _crops(9)
    batched = net.infer(x)[0]
    singles = np.concatenate([net.infer(x[i:i + 1])[0] for i in range(len(x))])
    np.testing.assert_allclose(batched, singles, rtol=0, atol=1e-6)
    assert net.metadata["engine"] == "eye_state" and len(net.metadata["sha256"]) == 64


def test_tampered_network_file_is_refused(tmp_path: Path) -> None:
    onnx = tmp_path / "eye_state.onnx"
    shutil.copy(DEFAULT_ENGINE, onnx)
    shutil.copy(DEFAULT_ENGINE.with_suffix(".json"), onnx.with_suffix(".json"))
    OnnxEngine(onnx)  # the untouched copy loads
    data = bytearray(onnx.read_bytes())
    data[len(data) // 2] ^= 0x01  # one flipped bit in the weights
    onnx.write_bytes(bytes(data))
    for backend in ("cpu", "torch"):
        if backends.probes()[backend].ok:
            with pytest.raises(EngineError, match="sha256"):
                open_network(onnx, backend)  # type: ignore[arg-type]


@needs_torch
def test_pytorch_reference_agrees_with_onnx_runtime() -> None:
    x = _crops(6, seed=1)
    ref = open_network(DEFAULT_ENGINE, "torch")
    assert ref.backend == "torch" and ref.inputs[0].name == "crops"
    np.testing.assert_allclose(ref.infer(x)[0], open_network(DEFAULT_ENGINE, "cpu").infer(x)[0], atol=1e-5)


def test_cpu_crops_match_the_array_implementation_used_on_gpus() -> None:
    yy, xx = np.mgrid[0:90, 0:120].astype(np.float32)
    image = np.dstack([127 + 120 * np.sin(xx / 7 + k) * np.cos(yy / 9) for k in range(3)]).astype(np.uint8)
    theta = 0.3
    c, s = np.cos(theta), np.sin(theta)
    affines = np.array([[[c * 0.7, -s * 0.7, 30.0], [s * 0.7, c * 0.7, 10.0]],
                        [[1.5, 0.0, -20.0], [0.0, 1.5, 50.0]]], np.float32)  # the second runs off the image
    cpu = crop_batch_cpu(image, affines, 32, -1.0, 1.0)
    arrays = crop_batch_xp(image, affines, 32, -1.0, 1.0)
    assert cpu.shape == arrays.shape == (2, 32, 32, 3)
    # OpenCV interpolates at 1/32 pixel in fixed point and rounds to uint8: within 1.5 grey levels on a smooth image
    assert np.abs(cpu - arrays).max() <= 1.5 * 2 / 255


@pytest.mark.skipif(not cupy_usable(), reason="CuPy with a CUDA device is not available here")
def test_gpu_crops_match_cpu_crops() -> None:
    import cupy

    image = np.random.default_rng(3).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    affines = np.array([[[0.5, 0.1, 3.0], [-0.1, 0.5, 4.0]]], np.float32)
    gpu = cupy.asnumpy(crop_batch_xp(image, affines, 16, 0.0, 1.0, xp=cupy))
    np.testing.assert_allclose(gpu, crop_batch_xp(image, affines, 16, 0.0, 1.0), atol=1e-5)


@needs_tensorrt
def test_tensorrt_engine_matches_onnx_runtime_and_is_rebuilt_when_its_identity_changes(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facetrack.engines.tensorrt_engine import TensorRTEngine, build_plan, plan_paths

    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path))
    engine = TensorRTEngine.for_onnx(DEFAULT_ENGINE, max_batch=16)
    x = _crops(16, seed=4)
    np.testing.assert_allclose(engine.infer(x)[0], open_network(DEFAULT_ENGINE, "cpu").infer(x)[0], atol=1e-3)
    np.testing.assert_allclose(engine.infer(x[:3])[0], engine.infer(x)[0][:3], atol=1e-5)
    plan, meta = plan_paths(DEFAULT_ENGINE, fp16=False)
    built = plan.stat().st_mtime_ns
    assert build_plan(DEFAULT_ENGINE, max_batch=16) == plan and plan.stat().st_mtime_ns == built  # reused
    info = json.loads(meta.read_text())
    for key in ("source_sha256", "tensorrt", "gpu", "precision"):
        assert info[key]
    meta.write_text(json.dumps({**info, "tensorrt": "0.0"}))  # as if built by another TensorRT
    build_plan(DEFAULT_ENGINE, max_batch=16)
    assert json.loads(meta.read_text())["tensorrt"] == info["tensorrt"] and plan.stat().st_mtime_ns != built


@needs_tensorrt
def test_tensorrt_fp16_engine_is_close_to_fp32(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from facetrack.engines.tensorrt_engine import TensorRTEngine

    monkeypatch.setenv("FACETRACK_DATA", str(tmp_path))
    x = _crops(8, seed=5)
    fp16 = TensorRTEngine.for_onnx(DEFAULT_ENGINE, fp16=True, max_batch=8)
    assert fp16.metadata["precision"] == "fp16"
    np.testing.assert_allclose(fp16.infer(x)[0], open_network(DEFAULT_ENGINE, "cpu").infer(x)[0], atol=2e-2)


def test_engines_cli_lists_backends_with_reasons_and_refuses_an_unavailable_build() -> None:
    from click.testing import CliRunner

    from facetrack.tracker.cli.engines import engines_group

    listed = CliRunner().invoke(engines_group, ["list", "--json"])
    assert listed.exit_code == 0, listed.output
    report = json.loads(listed.output)
    assert report["auto"]["backend"] == select_backend("auto").name
    assert {"tensorrt", "cuda", "cpu", "torch"} <= set(report["backends"])
    assert any(e["name"] == "eye_state" for e in report["engines"])
    if not TENSORRT.ok:
        refused = CliRunner().invoke(engines_group, ["build", "--backend", "tensorrt"])
        assert refused.exit_code == 2 and "cannot run here" in refused.output


def test_fp16_rewrite_for_tensorrt_11_keeps_float32_edges_and_the_results(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (facetrack[convert])")
    import onnxruntime as ort

    from facetrack.engines.fp16 import onnx_to_fp16

    half = onnx_to_fp16(DEFAULT_ENGINE, tmp_path / "eye_state_fp16.onnx")
    model = onnx.load(str(half))
    assert {i.data_type for i in model.graph.initializer} <= {onnx.TensorProto.FLOAT16, onnx.TensorProto.INT64}
    x = _crops(5, seed=6)
    session = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].type == "tensor(float)" and session.get_outputs()[0].type == "tensor(float)"
    got = session.run(None, {"crops": x})[0]
    np.testing.assert_allclose(got, open_network(DEFAULT_ENGINE, "cpu").infer(x)[0], atol=2e-3)
