"""Is there an NVIDIA GPU, and does TensorRT run on it: the probes that backends.py and tensorrt_engine.py
share (apart, so that neither imports the other at module level).

The GPU probe asks the CUDA driver itself (libcuda) rather than CuPy: `cupy.cuda.is_available()`
raises instead of returning False where no driver is installed.
"""

from __future__ import annotations

import ctypes
import functools
from dataclasses import dataclass

from facetrack.engines.onnx_runtime import EngineError


@dataclass(frozen=True, slots=True)
class Probe:
    """Whether a backend can run here, and why not when it cannot."""

    ok: bool
    reason: str


@functools.cache
def gpu() -> Probe:
    """An NVIDIA GPU reachable through the CUDA driver; the reason names the GPU or the failure."""
    try:
        cuda = ctypes.CDLL("libcuda.so.1")
    except OSError:
        return Probe(False, "no NVIDIA driver (libcuda.so.1 not found)")
    if cuda.cuInit(0) != 0:
        return Probe(False, "the CUDA driver is installed but cuInit failed (no usable GPU)")
    count = ctypes.c_int(0)
    if cuda.cuDeviceGetCount(ctypes.byref(count)) != 0 or count.value == 0:
        return Probe(False, "the CUDA driver sees no GPU")
    device = ctypes.c_int(0)
    name = ctypes.create_string_buffer(256)
    cuda.cuDeviceGet(ctypes.byref(device), 0)
    cuda.cuDeviceGetName(name, 256, device)
    return Probe(True, name.value.decode(errors="replace"))


def gpu_name() -> str:
    """The first GPU's name (part of a TensorRT engine's identity: plans are built per GPU model)."""
    probe = gpu()
    if not probe.ok:
        raise EngineError(f"no GPU: {probe.reason}")
    return probe.reason


@functools.cache
def tensorrt() -> Probe:
    try:
        import tensorrt as trt
    except ImportError as exc:
        return Probe(False, f"`import tensorrt` fails ({exc}); see docs/engines.md to install it")
    if not gpu().ok:
        return Probe(False, f"TensorRT {trt.__version__} imports but {gpu().reason}")
    return Probe(True, f"TensorRT {trt.__version__} on {gpu().reason}")
