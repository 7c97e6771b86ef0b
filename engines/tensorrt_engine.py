"""TensorRT: serialised engines built from our ONNX files, run with device buffers.

A TensorRT plan is valid only for the TensorRT version and GPU model that built it, so a
plan is stored in the user data directory (`<data>/engines/tensorrt/`) next to a metadata
JSON naming the source ONNX file's sha256, TensorRT's version, the GPU, the precision and
the batch profile; `TensorRTEngine.for_onnx` rebuilds it when any of these differs. The
batch axis is dynamic: one optimisation profile spans batch 1 to `max_batch`. FP16 is a
builder flag on TensorRT 10 and an FP16 rewrite of the ONNX on TensorRT 11 (engines/fp16.py).

Buffers live on the GPU as CuPy arrays (facetrack[gpu]); `infer` accepts host or device
input and `infer_device` keeps the outputs on the device for the next stage.
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from facetrack.engines.fp16 import onnx_to_fp16
from facetrack.engines.gpu import gpu_name, tensorrt
from facetrack.engines.network import TensorSpec
from facetrack.engines.onnx_runtime import EngineError, load_verified_metadata, sha256_file
from facetrack.tracker.core.paths import data_dir

log = logging.getLogger("facetrack.engines")
_WORKSPACE = 1 << 30


def plans_dir() -> Path:
    return data_dir() / "engines" / "tensorrt"


def _trt():
    probe = tensorrt()
    if not probe.ok:
        raise EngineError(f"TensorRT cannot run here: {probe.reason}")
    import tensorrt as trt

    return trt


def plan_identity(onnx_path: Path, fp16: bool, max_batch: int) -> dict:
    """What a plan must match to be reused: source checksum, TensorRT, GPU, precision, batch profile."""
    trt = _trt()
    return {"source_sha256": sha256_file(onnx_path), "source": onnx_path.name, "tensorrt": trt.__version__,
            "gpu": gpu_name(), "precision": "fp16" if fp16 else "fp32", "max_batch": max_batch}


def plan_paths(onnx_path: Path, fp16: bool) -> tuple[Path, Path]:
    stem = f"{onnx_path.stem}.{'fp16' if fp16 else 'fp32'}"
    return plans_dir() / f"{stem}.plan", plans_dir() / f"{stem}.json"


def build_plan(onnx_path: Path, fp16: bool = False, max_batch: int = 256, force: bool = False) -> Path:
    """Build (or reuse) the serialised engine of an ONNX file; returns the plan's path."""
    trt = _trt()
    load_verified_metadata(onnx_path)
    plan, meta_path = plan_paths(onnx_path, fp16)
    want = plan_identity(onnx_path, fp16, max_batch)
    if not force and plan.is_file() and meta_path.is_file():
        have = json.loads(meta_path.read_text())
        same = all(have.get(k) == v for k, v in want.items() if k != "max_batch")
        # a plan built for larger batches serves smaller ones: no rebuild for a smaller max_faces
        if same and int(have.get("max_batch", 0)) >= max_batch and have.get("sha256") == sha256_file(plan):
            return plan
        log.info("rebuilding %s: %s", plan.name, {k: (have.get(k), v) for k, v in want.items() if have.get(k) != v})
    # TensorRT 10 chooses FP16 kernels under a builder flag; TensorRT 11 removed the flag and
    # builds strongly typed networks only, so there the ONNX itself is rewritten in FP16.
    weakly_typed = hasattr(trt.BuilderFlag, "FP16")
    with tempfile.TemporaryDirectory() as tmp:
        source = onnx_to_fp16(onnx_path, Path(tmp) / onnx_path.name) if fp16 and not weakly_typed else onnx_path
        onnx_bytes = source.read_bytes()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch: the only mode since TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_bytes):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise EngineError(f"TensorRT cannot parse {onnx_path.name}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, _WORKSPACE)
    if fp16 and weakly_typed:
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    for i in range(network.num_inputs):
        tensor = network.get_input(i)
        rest = tuple(tensor.shape)[1:]
        if any(d < 0 for d in rest):
            raise EngineError(f"{onnx_path.name}: only the batch axis may be dynamic, "
                              f"input {tensor.name} is {tensor.shape}")
        profile.set_shape(tensor.name, (1, *rest), (min(max_batch, 64), *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    started = time.perf_counter()
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise EngineError(f"TensorRT failed to build {onnx_path.name} (see its log above)")
    plan.parent.mkdir(parents=True, exist_ok=True)
    staged = plan.with_suffix(".plan.tmp")
    staged.write_bytes(bytes(serialized))
    staged.replace(plan)
    meta = {**want, "sha256": sha256_file(plan), "build_seconds": round(time.perf_counter() - started, 2),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return plan


class TensorRTEngine:
    """A serialised TensorRT engine with one dynamic-batch input, run on a CUDA stream."""

    backend = "tensorrt"

    def __init__(self, plan: Path, metadata: dict) -> None:
        trt = _trt()
        import cupy as cp

        self._cp = cp
        self.metadata = metadata
        self._runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        self._engine = self._runtime.deserialize_cuda_engine(Path(plan).read_bytes())
        if self._engine is None:
            raise EngineError(f"TensorRT cannot load {plan} (built by another TensorRT or GPU? rebuild it)")
        self._context = self._engine.create_execution_context()
        self._stream = cp.cuda.Stream(non_blocking=True)
        names = [self._engine.get_tensor_name(i) for i in range(self._engine.num_io_tensors)]
        is_input = {n: self._engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT for n in names}
        self._dtypes = {n: np.dtype(trt.nptype(self._engine.get_tensor_dtype(n))) for n in names}
        specs = {n: TensorSpec(n, tuple(d if d >= 0 else None for d in self._engine.get_tensor_shape(n)),
                               self._dtypes[n].name) for n in names}
        self.inputs = [specs[n] for n in names if is_input[n]]
        self.outputs = [specs[n] for n in names if not is_input[n]]
        if len(self.inputs) != 1:
            raise EngineError(f"{plan.name}: one input expected, found {len(self.inputs)}")
        self.max_batch = int(metadata.get("max_batch", 1))

    @classmethod
    def for_onnx(cls, onnx_path: Path, fp16: bool = False, max_batch: int = 256) -> TensorRTEngine:
        plan = build_plan(onnx_path, fp16=fp16, max_batch=max_batch)
        meta = {**load_verified_metadata(onnx_path), **json.loads(plan_paths(onnx_path, fp16)[1].read_text())}
        return cls(plan, meta)

    def infer_device(self, batch):
        """Outputs as CuPy arrays for a host or device batch (no copy back to the host)."""
        cp = self._cp
        n = int(batch.shape[0])
        if n > self.max_batch:
            raise ValueError(f"batch {n} exceeds the engine's profile (max {self.max_batch}); rebuild with --max-batch")
        name = self.inputs[0].name
        with self._stream:
            x = cp.ascontiguousarray(cp.asarray(batch, dtype=self._dtypes[name]))
            self._context.set_input_shape(name, tuple(x.shape))
            self._context.set_tensor_address(name, x.data.ptr)
            outs = []
            for spec in self.outputs:
                out = cp.empty(tuple(self._context.get_tensor_shape(spec.name)), self._dtypes[spec.name])
                self._context.set_tensor_address(spec.name, out.data.ptr)
                outs.append(out)
            if not self._context.execute_async_v3(self._stream.ptr):
                raise EngineError("TensorRT execution failed")
        self._stream.synchronize()
        return outs

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return [self._cp.asnumpy(o).astype(np.float32, copy=False) for o in self.infer_device(batch)]

    def close(self) -> None:
        self._context = None
        self._engine = None
