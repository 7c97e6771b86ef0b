"""A frozen face feature network for the perceptual (identity) loss, built from ONNX without pickles.

We may not bundle third-party weights and only PyPI is reachable, so the default network is
one the mediapipe wheel ships: its face mesh model `face_landmark.tflite`, converted to ONNX
and cached by the engine builds (`engines/builds.py`, the `convert` extra). Its embedding is
the last 128-channel feature map before the landmark head narrows (`MEDIAPIPE_LAYER`),
averaged over its 3 x 3 cells. A face recognition network of the user's own (an ArcFace
export, say) is loaded from its ONNX file the same way; its output is the embedding.

ONNX graphs become torch by `OnnxGraph`, which runs the nodes with torch functions (onnx2torch
would need torchvision, whose wheels pull another torch); weights are read from the ONNX
protobuf, never from a pickle, and every load is checked against ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from torch import Tensor, nn

from facetrack.engines.onnx_runtime import EngineError
from facetrack.training.losses import perceptual_loss

MEDIAPIPE_LAYER = "p_re_lu_18"
"""face_landmark's (N, 128, 3, 3) map after its last full-width residual block, before the 32-channel landmark head."""
ARCFACE_RANGE = (-1.0, 1.0)
"""Input range of ArcFace-style exports: (RGB - 127.5) / 127.5."""
TOLERANCE = 1e-3
"""Largest difference from ONNX Runtime, relative to the largest output magnitude (as engines/builds.py checks)."""


def _pairs(pads: list[int], ndim: int) -> list[int]:
    """ONNX pads (all begins, then all ends, first axis first) -> F.pad's (last axis first) pairs."""
    return [v for d in reversed(range(ndim)) for v in (pads[d], pads[d + ndim])]


def _conv(x: Tensor, w: Tensor, b: Tensor | None = None, *, pads: list[int] | None = None,
          strides: list[int] | None = None, dilations: list[int] | None = None, group: int = 1,
          auto_pad: str = "NOTSET", **_: object) -> Tensor:
    if auto_pad not in ("NOTSET", "VALID"):
        raise EngineError(f"Conv auto_pad={auto_pad} is not supported")
    k = w.ndim - 2
    pads = pads if pads and auto_pad == "NOTSET" else [0] * 2 * k
    if pads[:k] != pads[k:]:  # asymmetric (TFLite's SAME with stride 2): pad first
        x, pads = F.pad(x, _pairs([0, 0, *pads[:k], 0, 0, *pads[k:]], x.ndim)), [0] * 2 * k
    conv = (F.conv1d, F.conv2d, F.conv3d)[k - 1]
    return conv(x, w, b, stride=strides or 1, padding=pads[:k], dilation=dilations or 1, groups=group)


def _pool(kind: str) -> Callable[..., Tensor]:
    def pool(x: Tensor, *, kernel_shape: list[int], strides: list[int] | None = None, pads: list[int] | None = None,
             auto_pad: str = "NOTSET", ceil_mode: int = 0, **_: object) -> Tensor:
        if auto_pad not in ("NOTSET", "VALID") or len(kernel_shape) != 2:
            raise EngineError(f"{kind} with auto_pad={auto_pad}, kernel {kernel_shape} is not supported")
        pads = pads if pads and auto_pad == "NOTSET" else [0] * 4
        if pads[:2] != pads[2:]:
            raise EngineError(f"{kind} with asymmetric pads {pads} is not supported")
        fn = F.max_pool2d if kind == "MaxPool" else F.avg_pool2d
        return fn(x, kernel_shape, strides or 1, pads[:2], ceil_mode=bool(ceil_mode))
    return pool


def _pad(x: Tensor, pads: Tensor | list[int], value: Tensor | float | None = None, *, mode: str = "constant",
         **_: object) -> Tensor:
    """`pads` and `value` are inputs since opset 11, attributes before."""
    p = _pairs([int(v) for v in pads], x.ndim)
    if mode == "constant":
        return F.pad(x, p, value=0.0 if value is None else float(value))
    while p[-2:] == [0, 0]:  # reflect/edge pad the trailing (spatial) axes only
        p = p[:-2]
    return F.pad(x, p, mode={"reflect": "reflect", "edge": "replicate"}[mode])


def _gemm(a: Tensor, b: Tensor, c: Tensor | None = None, *, alpha: float = 1.0, beta: float = 1.0,
          transA: int = 0, transB: int = 0) -> Tensor:
    y = alpha * (a.T if transA else a) @ (b.T if transB else b)
    return y if c is None else y + beta * c


def _reshape(x: Tensor, shape: Tensor, **_: object) -> Tensor:
    return x.reshape([x.shape[i] if s == 0 else s for i, s in enumerate(shape.tolist())])


def _batch_norm(x: Tensor, scale: Tensor, bias: Tensor, mean: Tensor, var: Tensor, *, epsilon: float = 1e-5,
                **_: object) -> Tensor:
    return F.batch_norm(x, mean, var, scale, bias, training=False, eps=epsilon)


def _clip(x: Tensor, lo: Tensor | None = None, hi: Tensor | None = None, *, min: float | None = None,
          max: float | None = None) -> Tensor:
    """Bounds are inputs since opset 11, attributes `min`/`max` before."""
    return x.clamp(min if lo is None else float(lo), max if hi is None else float(hi))


def _reduce_mean(x: Tensor, axes: Tensor | list[int] | None = None, *, keepdims: int = 1, **_: object) -> Tensor:
    """`axes` is an input since opset 18, an attribute before; none means all."""
    dims = list(range(x.ndim)) if axes is None else [int(a) for a in axes]
    return x.mean(dims, keepdim=bool(keepdims))


OPS: dict[str, Callable[..., Tensor]] = {
    "Conv": _conv,
    "MaxPool": _pool("MaxPool"),
    "AveragePool": _pool("AveragePool"),
    "GlobalAveragePool": lambda x: x.mean(tuple(range(2, x.ndim)), keepdim=True),
    "Pad": _pad,
    "BatchNormalization": _batch_norm,
    "PRelu": lambda x, slope: torch.where(x >= 0, x, x * slope),
    "Relu": lambda x: F.relu(x),
    "LeakyRelu": lambda x, alpha=0.01: F.leaky_relu(x, alpha),
    "Sigmoid": torch.sigmoid,
    "Clip": _clip,
    "Add": torch.add,
    "Sub": torch.sub,
    "Mul": torch.mul,
    "Div": torch.div,
    "Flatten": lambda x, axis=1: x.reshape(int(np.prod(x.shape[:axis])), -1),
    "Gemm": _gemm,
    "MatMul": torch.matmul,
    "Reshape": _reshape,
    "Transpose": lambda x, perm: x.permute(perm),
    "Concat": lambda *xs, axis: torch.cat(xs, axis),
    "ReduceMean": _reduce_mean,
    "Identity": lambda x: x,
    "Dropout": lambda x, *_, **__: x,
}
"""The ONNX ops `OnnxGraph` runs: those of the mesh network and of common face recognition exports
(ResNet/MobileFaceNet ArcFace: Conv, BatchNormalization, PRelu, Add, Flatten, Gemm)."""


class OnnxGraph(nn.Module):
    """An ONNX graph, cut at `output`, evaluated node by node with torch functions: differentiable,
    its initializers held as (non-persistent) buffers so `.to(device)` moves them."""

    def __init__(self, model: onnx.ModelProto, output: str) -> None:
        super().__init__()
        graph = model.graph
        self._names: dict[str, str] = {}  # ONNX tensor name -> buffer name (ONNX names may hold dots)
        for init in graph.initializer:
            self._add_constant(init.name, numpy_helper.to_array(init))
        nodes = []
        needed = {output}
        for node in reversed(graph.node):  # keep only what `output` depends on; ONNX lists nodes in order
            if not needed.intersection(node.output):
                continue
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            if node.op_type == "Constant":
                self._add_constant(node.output[0], numpy_helper.to_array(attrs["value"]))
                continue
            if node.op_type not in OPS:
                raise EngineError(f"ONNX op {node.op_type} (node {node.name!r}) is not supported by OnnxGraph")
            attrs = {k: v.decode() if isinstance(v, bytes) else v for k, v in attrs.items()}
            nodes.append((node.op_type, list(node.input), node.output[0], attrs))
            needed.update(node.input)
        self.nodes = nodes[::-1]
        inputs = [i.name for i in graph.input if i.name not in self._names]
        if len(inputs) != 1 or not self.nodes:
            raise EngineError(f"expected one image input and a tensor named {output!r}; got inputs {inputs}")
        self.input = inputs[0]
        self.output = output

    def _add_constant(self, name: str, value: np.ndarray) -> None:
        self._names[name] = f"c{len(self._names)}"
        self.register_buffer(self._names[name], torch.from_numpy(value.copy()), persistent=False)

    def forward(self, x: Tensor) -> Tensor:
        env: dict[str, Tensor | None] = {self.input: x, "": None}  # "" is ONNX's absent optional input
        for op, ins, out, attrs in self.nodes:
            args = [env[i] if i in env else getattr(self, self._names[i]) for i in ins]
            while args and args[-1] is None:
                args.pop()
            env[out] = OPS[op](*args, **attrs)
        return env[self.output]


class FaceFeatures(nn.Module):
    """A frozen network as an embedding of (N, 3, H, W) RGB [0, 1] face crops: (N, D), D = channels of the
    chosen layer (a feature map is averaged over its cells). Gradients reach the input, never the weights."""

    def __init__(self, graph: OnnxGraph, size: tuple[int, int], input_range: tuple[float, float]) -> None:
        super().__init__()
        self.graph = graph
        self.size = size
        self.lo, self.hi = input_range
        self.requires_grad_(False)
        self.eval()

    def train(self, mode: bool = True) -> FaceFeatures:
        """Stays in eval mode: the network is a fixed measure, `model.train()` of a parent must not change it."""
        return super().train(False)

    def forward(self, images: Tensor) -> Tensor:
        if tuple(images.shape[-2:]) != self.size:
            images = F.interpolate(images, self.size, mode="bilinear", align_corners=False, antialias=True)
        f = self.graph(images * (self.hi - self.lo) + self.lo)
        return f.mean(tuple(range(2, f.ndim))) if f.ndim > 2 else f


def _check(model: onnx.ModelProto, layer: str, net: FaceFeatures) -> None:
    """The torch graph's `layer` against ONNX Runtime's on a random batch: a wrong op shows here, not in training."""
    import onnxruntime as ort

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    if layer not in [o.name for o in probe.graph.output]:
        probe.graph.output.append(onnx.ValueInfoProto(name=layer))
    x = torch.rand(2, 3, *net.size, generator=torch.Generator().manual_seed(0))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    ref = session.run([layer], {net.graph.input: (x * (net.hi - net.lo) + net.lo).numpy()})[0]
    with torch.no_grad():
        got = net.graph(x * (net.hi - net.lo) + net.lo).numpy()
    worst = float(np.abs(got - ref).max() / max(np.abs(ref).max(), 1e-6))
    if worst > TOLERANCE:
        raise EngineError(f"the torch graph's {layer} differs from ONNX Runtime by {worst:.2e} (relative)")


def load_face_features(spec: str | Path = "mediapipe", input_range: tuple[float, float] = ARCFACE_RANGE,
                       layer: str | None = None) -> FaceFeatures:
    """"mediapipe": the wheel's face mesh network (converted and cached by `convert_tflite`, needs the
    `convert` extra on first use); otherwise the path of an ONNX face recognition model, whose first
    output (or `layer`) is the embedding and which takes `input_range` (ArcFace's [-1, 1] by default)."""
    if str(spec) == "mediapipe":
        from facetrack.engines.builds import TFLITE_INPUTS, convert_tflite

        path = convert_tflite("face_landmark")
        _, input_range = TFLITE_INPUTS["face_landmark"]
        layer = layer or MEDIAPIPE_LAYER
    else:
        path = Path(spec)
        if path.suffix.lower() != ".onnx" or not path.is_file():
            raise EngineError(f"{path}: a face feature network is an ONNX file (pickled checkpoints are never loaded)")
    model = onnx.load(str(path))
    dims = model.graph.input[0].type.tensor_type.shape.dim
    size = tuple(d.dim_value for d in dims[2:4])
    if len(size) != 2 or not all(size):
        shape = [d.dim_param or d.dim_value for d in dims]
        raise EngineError(f"{path}: the input needs a fixed (N, 3, H, W) size, got {shape}")
    layer = layer or model.graph.output[0].name
    net = FaceFeatures(OnnxGraph(model, layer), size, input_range)
    _check(model, layer, net)
    return net


def perceptual_term(net: FaceFeatures, images: Tensor, rendered: Tensor, mask: Tensor) -> Tensor:
    """Deng et al. 2019's perceptual loss: 1 - cos between the embeddings of the input and of the render
    pasted over it by the render mask, so only the face differs, not the background."""
    composite = images + mask * (rendered - images)  # exactly `images` where the render matches it
    emb = net(torch.cat([images, composite]))
    return perceptual_loss(*emb.chunk(2))
