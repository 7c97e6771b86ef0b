"""The perceptual loss's face feature network: the wheel's mesh network in torch, a user's ONNX, the loss term."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import av
import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

import onnxruntime as ort  # noqa: E402
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

from facetrack.engines.onnx_runtime import EngineError  # noqa: E402
from facetrack.training import face_features as FF  # noqa: E402

needs_conversion = pytest.mark.skipif(
    importlib.util.find_spec("tflite2onnx") is None or importlib.util.find_spec("ai_edge_litert") is None,
    reason="converting the wheel's face_landmark.tflite needs tflite2onnx (facetrack[convert]) and "
           "ai-edge-litert (facetrack[litert]), which checks the conversion")


def _cos(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(torch.nn.functional.cosine_similarity(a, b, dim=-1))


def _as_batch(*images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 255


@pytest.fixture(scope="module")
def mesh_net() -> FF.FaceFeatures:
    return FF.load_face_features("mediapipe")


@pytest.fixture(scope="module")
def face_crops(face_clip: Path) -> np.ndarray:
    """Frames 0 and 150 of the real clip (other mouth and head pose), 192 x 192 crops around the mesh."""
    from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh
    from facetrack.training.distil import crop_face

    with av.open(str(face_clip)) as c:
        frames = [f.to_ndarray(format="rgb24") for i, f in zip(range(151), c.decode(video=0)) if i in (0, 150)]
    with MediapipeFaceMesh(static_images=True) as mesh:
        return np.stack([crop_face(im, mesh.process(im)[0].landmarks[:, :2], 192)[0] for im in frames])


@needs_conversion
def test_mesh_network_loads_from_the_wheel_frozen(mesh_net: FF.FaceFeatures) -> None:
    assert mesh_net.size == (192, 192)
    assert list(mesh_net.parameters()) == []
    assert not any(b.requires_grad for b in mesh_net.buffers())
    mesh_net.train()
    assert not mesh_net.training
    assert mesh_net(torch.rand(3, 3, 100, 100)).shape == (3, 128)


@needs_conversion
@pytest.mark.media
def test_same_face_is_closer_than_non_faces(mesh_net: FF.FaceFeatures, face_crops: np.ndarray) -> None:
    a, b = face_crops
    ramp = np.linspace(0, 255, 192).astype(np.uint8)
    gradient = np.dstack([np.tile(ramp, (192, 1)), np.tile(ramp[:, None], (1, 192)), np.full_like(a[..., 0], 128)])
    shuffled = np.random.default_rng(0).permutation(a.reshape(-1, 3)).reshape(a.shape)  # a's colours, no face
    with torch.no_grad():
        e = mesh_net(_as_batch(a, b, gradient, shuffled))
    same = _cos(e[0], e[1])
    assert same > _cos(e[0], e[2]) and same > _cos(e[0], e[3])
    assert same > _cos(e[1], e[2]) and same > _cos(e[1], e[3])


@needs_conversion
@pytest.mark.media
def test_gradients_reach_the_input(mesh_net: FF.FaceFeatures, face_crops: np.ndarray) -> None:
    x = _as_batch(*face_crops)[:, :, ::2, ::2].contiguous().requires_grad_()  # 96 x 96: resized inside
    mesh_net(x).square().sum().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0


@needs_conversion
@pytest.mark.media
def test_perceptual_term(mesh_net: FF.FaceFeatures, face_crops: np.ndarray) -> None:
    images = _as_batch(*face_crops)
    mask = torch.zeros(2, 1, 192, 192)
    mask[..., 40:160, 40:160] = 1
    assert float(FF.perceptual_term(mesh_net, images, images.clone(), mask)) < 1e-6
    rendered = torch.full_like(images, 0.5).requires_grad_()
    assert FF.perceptual_term(mesh_net, images, rendered, torch.zeros_like(mask)).item() < 1e-6  # nothing pasted
    loss = FF.perceptual_term(mesh_net, images, rendered, mask)
    assert loss.item() > 1e-3
    loss.backward()
    assert torch.isfinite(rendered.grad).all() and rendered.grad[..., 40:160, 40:160].abs().sum() > 0
    assert rendered.grad[..., :40, :].abs().sum() == 0  # outside the mask the render is not seen


def _arcface_like(path: Path, op: str = "PRelu") -> Path:
    """A tiny ResNet-style recognition export (Conv, BN, PRelu, residual Add, Flatten, Gemm, BN), 16 x 16 input."""
    rng = np.random.default_rng(0)
    w = {"c1": rng.normal(0, 0.3, (8, 3, 3, 3)), "c2": rng.normal(0, 0.2, (8, 8, 3, 3)),
         "bn_s": rng.uniform(0.5, 1.5, 8), "bn_b": rng.normal(0, 0.1, 8), "bn_m": rng.normal(0, 0.1, 8),
         "bn_v": rng.uniform(0.5, 1.5, 8), "slope": rng.uniform(0.1, 0.3, (8, 1, 1)),
         "fc": rng.normal(0, 0.05, (16, 512)), "fc_b": rng.normal(0, 0.1, 16),
         "f_s": rng.uniform(0.5, 1.5, 16), "f_b": rng.normal(0, 0.1, 16), "f_m": np.zeros(16), "f_v": np.ones(16)}
    nodes = [
        helper.make_node("Conv", ["input", "c1"], ["x1"], pads=[1, 1, 1, 1], strides=[2, 2]),
        helper.make_node("BatchNormalization", ["x1", "bn_s", "bn_b", "bn_m", "bn_v"], ["x2"], epsilon=1e-5),
        helper.make_node(op, ["x2", "slope"] if op == "PRelu" else ["x2"], ["x3"]),
        helper.make_node("Conv", ["x3", "c2"], ["x4"], pads=[1, 1, 1, 1]),
        helper.make_node("Add", ["x3", "x4"], ["x5"]),
        helper.make_node("Flatten", ["x5"], ["x6"], axis=1),
        helper.make_node("Gemm", ["x6", "fc", "fc_b"], ["x7"], transB=1),
        helper.make_node("BatchNormalization", ["x7", "f_s", "f_b", "f_m", "f_v"], ["embedding"]),
    ]
    graph = helper.make_graph(
        nodes, "arcface_like",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["n", 3, 16, 16])],
        [helper.make_tensor_value_info("embedding", TensorProto.FLOAT, ["n", 16])],
        [numpy_helper.from_array(v.astype(np.float32), k) for k, v in w.items()])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


def test_user_onnx_network_matches_onnx_runtime(tmp_path: Path) -> None:
    path = _arcface_like(tmp_path / "arcface.onnx")
    net = FF.load_face_features(path)
    assert net.size == (16, 16) and (net.lo, net.hi) == FF.ARCFACE_RANGE
    x = torch.rand(4, 3, 16, 16)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    ref = session.run(None, {"input": (x * 2 - 1).numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(net(x).numpy(), ref, rtol=1e-4, atol=1e-4)
    assert net(torch.rand(2, 3, 40, 40)).shape == (2, 16)  # resized to the network's input


def test_a_wrong_op_is_caught_at_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _arcface_like(tmp_path / "arcface.onnx")
    monkeypatch.setitem(FF.OPS, "PRelu", lambda x, slope: torch.relu(x))
    with pytest.raises(EngineError, match="differs from ONNX Runtime"):
        FF.load_face_features(path)


def test_unsupported_ops_and_pickles_are_refused(tmp_path: Path) -> None:
    with pytest.raises(EngineError, match="Erf"):
        FF.load_face_features(_arcface_like(tmp_path / "gelu.onnx", op="Erf"))
    pickled = tmp_path / "arcface.pt"
    pickled.write_bytes(b"\x80\x04N.")  # a pickle of None: must never be opened
    with pytest.raises(EngineError, match="ONNX file"):
        FF.load_face_features(pickled)


@needs_conversion
def test_the_trainer_runs_the_perceptual_term_when_its_weight_is_set(tmp_path: Path) -> None:
    from facetrack.training.recipe import Recipe
    from facetrack.training.regressor import train_regressor

    recipe = Recipe.model_validate({
        "name": "per", "losses": {"lmk": 1e-2, "pho": 1.0, "per": 0.2, "coef": 0.0},
        "data": {"samples": 32, "subjects": 4}, "net": {"width": 8, "input_size": 64},
        "train": {"epochs": 3, "batch_size": 16, "lr": 3e-3}})
    history = train_regressor(recipe).history
    per = [row["per"] for row in history]
    assert all(np.isfinite(per)) and per[0] > 0
    assert min(per[1:]) < per[0]  # the network learns to render what the face network sees
