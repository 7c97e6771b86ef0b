"""Which backend runs a network: `auto` picks TensorRT, then ONNX Runtime CUDA, then the CPU.

Each probe says why it fails, so `facetrack engines list` and the benchmark can report
the reason a faster backend was not used instead of silently running slower. The GPU
probe asks the CUDA driver itself (libcuda) rather than CuPy: `cupy.cuda.is_available()`
raises instead of returning False where no driver is installed.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from facetrack.engines.gpu import Probe, gpu, tensorrt
from facetrack.engines.network import Network
from facetrack.engines.onnx_runtime import EngineError, OnnxEngine

BackendName = Literal["auto", "cpu", "cuda", "tensorrt", "torch"]
BACKENDS: tuple[str, ...] = ("auto", "cpu", "cuda", "tensorrt", "torch")


@dataclass(frozen=True, slots=True)
class BackendChoice:
    """The backend picked for a request, and why the faster ones were passed over."""

    name: str
    reason: str


@functools.cache
def ort_cuda() -> Probe:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return Probe(False, "onnxruntime has no CUDAExecutionProvider (the CPU build is installed)")
    if not gpu().ok:
        return Probe(False, f"onnxruntime has CUDA but {gpu().reason}")
    return Probe(True, f"ONNX Runtime CUDA on {gpu().reason}")


@functools.cache
def torch_reference() -> Probe:
    try:
        import onnx  # noqa: F401  (the reference reads the graph with it)
        import torch
    except ImportError as exc:
        return Probe(False, f"{exc.name} is not installed "
                            "(facetrack[train] has torch and onnx for the PyTorch reference)")
    return Probe(True, f"PyTorch {torch.__version__} (reference, CPU)")


def _cpu() -> Probe:
    return Probe(True, "ONNX Runtime CPU")


# each probe runs only when asked: the PyTorch one imports torch (about 1.5 s), which `auto` never picks
_PROBES = {"tensorrt": tensorrt, "cuda": ort_cuda, "cpu": _cpu, "torch": torch_reference}


def probes() -> dict[str, Probe]:
    """Every backend's probe, fastest first (what `facetrack engines list` prints)."""
    return {name: probe() for name, probe in _PROBES.items()}


def select_backend(requested: BackendName = "auto") -> BackendChoice:
    """The backend for a request; an explicit one that cannot run here raises with the reason."""
    if requested not in BACKENDS:
        raise EngineError(f"unknown backend {requested!r} (one of {', '.join(BACKENDS)})")
    if requested != "auto":
        probe = _PROBES[requested]()
        if not probe.ok:
            raise EngineError(f"backend {requested!r} cannot run here: {probe.reason}")
        return BackendChoice(requested, probe.reason)
    passed_over = []
    for name in ("tensorrt", "cuda"):
        probe = _PROBES[name]()
        if probe.ok:
            return BackendChoice(name, probe.reason)
        passed_over.append(f"{name}: {probe.reason}")
    return BackendChoice("cpu", "ONNX Runtime CPU; " + "; ".join(passed_over))


def open_network(path: str | Path, backend: BackendName = "auto", threads: int = 1, fp16: bool = False,
                 max_batch: int = 256) -> Network:
    """Load an ONNX network (checksum checked) on the requested backend.

    TensorRT builds or reuses a serialised engine for this ONNX file, GPU, TensorRT
    version and precision (see `facetrack.engines.tensorrt_engine`).
    """
    choice = select_backend(backend)
    if choice.name == "tensorrt":
        from facetrack.engines.tensorrt_engine import TensorRTEngine

        return TensorRTEngine.for_onnx(Path(path), fp16=fp16, max_batch=max_batch)
    if choice.name == "torch":
        from facetrack.engines.torch_reference import TorchReference

        return TorchReference(Path(path))
    return OnnxEngine(path, threads=threads, device="cuda" if choice.name == "cuda" else "cpu")
