"""What an engine file must agree with before it runs: the sidecar's numbers, and the network's own shapes.

The sidecar's sha256 proves the two files belong together; these checks prove they agree: a
sane input size (a hostile 100000 would allocate tens of GB per crop), finite normalisation
with a non-zero std, one float input of the size the sidecar gives, the outputs it names with
their sizes, and one probe batch whose outputs are finite. Every message names the file.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from facetrack.engines.network import Network, TensorSpec
from facetrack.engines.onnx_runtime import EngineError

MIN_INPUT_SIDE = 8
MAX_INPUT_SIDE = 1024
"""Crop sides an engine may ask for: our networks take 24..256 px; beyond 1024 a batch cannot fit in memory."""
_FLOATS = ("float32", "float16")


def input_size(metadata: Mapping, path: Path) -> tuple[int, int]:
    """The sidecar's `input_size` (width, height), refused unless both are whole numbers in the sane range."""
    try:
        width, height = (int(v) for v in metadata["input_size"])
        exact = all(float(v) == int(v) for v in metadata["input_size"])
    except (KeyError, TypeError, ValueError) as exc:
        raise EngineError(f"{path}: the sidecar has no usable input_size ({exc!r}): re-export the engine") from None
    if not exact or not all(MIN_INPUT_SIDE <= v <= MAX_INPUT_SIDE for v in (width, height)):
        raise EngineError(f"{path}: the sidecar's input_size {metadata['input_size']} is not a crop size "
                          f"({MIN_INPUT_SIDE}..{MAX_INPUT_SIDE} px a side): re-export the engine")
    return width, height


def normalisation(metadata: Mapping, path: Path) -> tuple[float, float]:
    """(scale, offset) that map 0..255 pixels to the network's input, from finite mean/std/scale and std != 0."""
    try:
        norm = metadata["normalisation"]
        mean, std, scale = float(norm["mean"]), float(norm["std"]), float(norm.get("scale", 1 / 255))
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EngineError(f"{path}: the sidecar has no usable normalisation ({exc!r}): re-export the engine") from None
    if not all(math.isfinite(v) for v in (mean, std, scale)) or std == 0 or scale == 0:
        raise EngineError(f"{path}: the sidecar's normalisation (mean {mean}, std {std}, scale {scale}) needs "
                          "finite values and a non-zero std and scale: re-export the engine")
    return scale / std, -mean / std


def _static(dims: Sequence[int | str | None]) -> list[int | None]:
    return [d if isinstance(d, int) and d > 0 else None for d in dims]


def check_network(network: Network, path: Path, sample_shape: tuple[int, ...],
                  outputs: Mapping[str, int] | None = None) -> None:
    """Refuse a network whose one float input is not (batch, *sample_shape) where its shape is fixed, whose
    outputs are not float or (with `outputs`) not the names and per-sample sizes the sidecar gives, or whose
    outputs on a mid-grey probe batch are not finite."""
    if len(network.inputs) != 1:
        raise EngineError(f"{path}: the network has {len(network.inputs)} inputs; an engine has one")
    spec = network.inputs[0]
    dims = _static(spec.shape)
    if spec.dtype not in _FLOATS or len(dims) != 1 + len(sample_shape) or any(
            d is not None and d != want for d, want in zip(dims[1:], sample_shape)):
        raise EngineError(f"{path}: the network takes {spec.dtype} {_shape(spec)}; its sidecar says float "
                          f"(N, {', '.join(map(str, sample_shape))}): re-export the engine")
    bad = [o for o in network.outputs if o.dtype not in _FLOATS]
    if bad:
        raise EngineError(f"{path}: output {bad[0].name} is {bad[0].dtype}, not float")
    if outputs is not None:
        names = sorted(o.name for o in network.outputs)
        if names != sorted(outputs):
            raise EngineError(f"{path}: the network's outputs {names} are not the sidecar's {sorted(outputs)}")
        for o in network.outputs:
            fixed = _static(o.shape[1:])
            if all(d is not None for d in fixed) and math.prod(fixed) != outputs[o.name]:
                raise EngineError(f"{path}: output {o.name} is {_shape(o)}, the sidecar says {outputs[o.name]} "
                                  "values per face: re-export the engine")
    probe = np.zeros((1, *sample_shape), np.float32)
    try:
        results = network.infer(probe)
    except EngineError:
        raise
    except Exception as exc:  # the runtime's own error types differ by backend
        raise EngineError(f"{path}: the network fails on a probe batch of {probe.shape}: {exc}") from None
    for o, value in zip(network.outputs, results):
        value = np.asarray(value)
        if value.shape[:1] != (1,):
            raise EngineError(f"{path}: output {o.name} has shape {value.shape} for a batch of 1")
        if outputs is not None and value[0].size != outputs[o.name]:
            raise EngineError(f"{path}: output {o.name} gives {value[0].size} values per face, the sidecar says "
                              f"{outputs[o.name]}: re-export the engine")
        check_finite(value, o.name, path)


def check_finite(value: np.ndarray, name: str, path: Path) -> None:
    """NaN or infinite outputs are a broken network, not a result: refuse them, naming the file."""
    if not np.isfinite(value).all():
        raise EngineError(f"{path}: output {name} is not finite (NaN or infinity): the network is broken; "
                          "re-export or retrain it")


def _shape(spec: TensorSpec) -> str:
    return "(" + ", ".join("N" if d is None or isinstance(d, str) else str(d) for d in spec.shape) + ")"
