"""PyTorch reference backend: executes an ONNX graph node by node with torch operators.

Slow, but it shares no kernel with ONNX Runtime or TensorRT, so
agreement with it checks the exported graph and the other backends independently. It
covers the operators of our networks (eye state, the converted iris and detector models)
and refuses any other with the operator's name.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facetrack.engines.network import TensorSpec
from facetrack.engines.onnx_runtime import EngineError, load_verified_metadata


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _pads(pads: list[int]) -> list[int]:
    """ONNX 2-D pads (top, left, bottom, right) as F.pad's (left, right, top, bottom)."""
    return [pads[1], pads[3], pads[0], pads[2]]


class TorchReference:
    """An ONNX network evaluated with torch on the CPU."""

    backend = "torch"

    def __init__(self, path: Path) -> None:
        import onnx
        import torch
        from onnx import numpy_helper

        self._torch = torch
        self.metadata = load_verified_metadata(Path(path))
        model = onnx.load(str(path))
        self._graph = model.graph
        self._weights = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in model.graph.initializer}
        inputs = [i for i in model.graph.input if i.name not in self._weights]
        self.inputs = [_spec(i) for i in inputs]
        self.outputs = [_spec(o) for o in model.graph.output]
        unknown = {n.op_type for n in model.graph.node} - set(_OPS)
        if unknown:
            raise EngineError(f"the PyTorch reference has no {', '.join(sorted(unknown))} ({Path(path).name})")

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        torch = self._torch
        values = dict(self._weights)
        values[self.inputs[0].name] = torch.from_numpy(np.ascontiguousarray(batch, np.float32))
        with torch.no_grad():
            for node in self._graph.node:
                args = [values[n] if n else None for n in node.input]
                out = _OPS[node.op_type](torch, args, _attrs(node))
                values[node.output[0]] = out
        return [values[o.name].numpy() for o in self.outputs]

    def close(self) -> None:
        self._weights = {}


def _spec(value) -> TensorSpec:
    dims = value.type.tensor_type.shape.dim
    return TensorSpec(value.name, tuple(d.dim_value if d.HasField("dim_value") else None for d in dims), "float32")


def _conv(torch, a, at):
    x = torch.nn.functional.pad(a[0], _pads(at.get("pads", [0, 0, 0, 0])))
    return torch.nn.functional.conv2d(x, a[1], a[2] if len(a) > 2 else None, stride=at.get("strides", 1),
                                      dilation=at.get("dilations", 1), groups=at.get("group", 1))


def _maxpool(torch, a, at):
    x = torch.nn.functional.pad(a[0], _pads(at.get("pads", [0, 0, 0, 0])), value=float("-inf"))
    return torch.nn.functional.max_pool2d(x, at["kernel_shape"], at.get("strides", at["kernel_shape"]))


def _gemm(torch, a, at):
    x = a[0].T if at.get("transA") else a[0]
    w = a[1].T if at.get("transB") else a[1]
    y = at.get("alpha", 1.0) * (x @ w)
    return y + at.get("beta", 1.0) * a[2] if len(a) > 2 and a[2] is not None else y


def _slice(torch, a, at):
    x, starts, ends = a[0], a[1].tolist(), a[2].tolist()
    axes = a[3].tolist() if len(a) > 3 and a[3] is not None else list(range(len(starts)))
    steps = a[4].tolist() if len(a) > 4 and a[4] is not None else [1] * len(starts)
    index = [slice(None)] * x.dim()
    for s, e, ax, st in zip(starts, ends, axes, steps):
        index[ax] = slice(s, min(e, x.shape[ax]), st)
    return x[tuple(index)]


def _reshape(torch, a, at):
    shape = [a[0].shape[i] if s == 0 else s for i, s in enumerate(a[1].tolist())]
    return a[0].reshape(shape)


def _flatten(torch, a, at):
    axis = at.get("axis", 1)
    return a[0].reshape(int(np.prod(a[0].shape[:axis])), -1)


def _constant(torch, a, at):
    from onnx import numpy_helper

    return torch.from_numpy(numpy_helper.to_array(at["value"]).copy())


def _pad(torch, a, at):
    pads = a[1].tolist()
    half = len(pads) // 2
    torch_pads = [p for i in reversed(range(half)) for p in (pads[i], pads[i + half])]
    return torch.nn.functional.pad(a[0], torch_pads, value=float(a[2]) if len(a) > 2 and a[2] is not None else 0.0)


def _prelu(torch, a, at):
    return torch.where(a[0] >= 0, a[0], a[0] * a[1])


_OPS = {
    "Add": lambda t, a, at: a[0] + a[1],
    "Concat": lambda t, a, at: t.cat(a, dim=at["axis"]),
    "Constant": _constant,
    "Conv": _conv,
    "Flatten": _flatten,
    "Gemm": _gemm,
    "GlobalAveragePool": lambda t, a, at: a[0].mean(dim=(2, 3), keepdim=True),
    "MaxPool": _maxpool,
    "Pad": _pad,
    "PRelu": _prelu,
    "Relu": lambda t, a, at: t.relu(a[0]),
    "Reshape": _reshape,
    "Shape": lambda t, a, at: t.tensor(a[0].shape, dtype=t.int64),
    "Sigmoid": lambda t, a, at: t.sigmoid(a[0]),
    "Slice": _slice,
    "Transpose": lambda t, a, at: a[0].permute(*at["perm"]),
}
