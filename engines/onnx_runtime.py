"""ONNX Runtime: the backend of our own engines (eye state, regressors), on the CPU or CUDA.

An engine is an ONNX file plus metadata: the ONNX file's `metadata_props` and a sidecar
`<name>.json` holding the same keys and the ONNX file's sha256. Loading checks the
checksum (a truncated or swapped file fails loudly, not with odd numbers) and runs the
network with one intra-op thread by default: our networks are tiny, and the tracker's
other stages own the other cores.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Literal

import numpy as np

from facetrack.engines.network import TensorSpec
from facetrack.tracker.core.errors import FacetrackError

_PROVIDERS = {"cpu": ["CPUExecutionProvider"], "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"]}


class EngineError(FacetrackError, RuntimeError):
    """An engine file is missing, corrupt or does not match its metadata, or its backend cannot run.

    A FacetrackError, so the command line reports it as a usage error rather than a crash.
    """


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def sidecar_path(path: Path) -> Path:
    return Path(path).with_suffix(".json")


def write_sidecar(path: Path, metadata: dict) -> Path:
    """Write `<name>.json` next to an ONNX file: its metadata plus sha256 and size."""
    path = Path(path)
    meta = dict(metadata)
    meta["sha256"] = sha256_file(path)
    meta["bytes"] = path.stat().st_size
    out = sidecar_path(path)
    out.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    return out


def verify_sha256(path: Path, expected: str, against: str) -> None:
    """Refuse a file whose sha256 is not the expected one (a truncated, swapped or altered file)."""
    got = sha256_file(path)
    if got != expected:
        raise EngineError(f"{path.name}: sha256 {got[:12]}... does not match {against} {expected[:12]}...")


def load_verified_metadata(path: Path, verify: bool = True) -> dict:
    """The sidecar metadata of a network file, after checking the file's sha256 against it."""
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"engine file not found: {path}")
    side = sidecar_path(path)
    metadata: dict = json.loads(side.read_text()) if side.is_file() else {}
    if verify:
        want = metadata.get("sha256")
        if want is None:
            raise EngineError(f"{side} is missing or has no sha256: cannot verify {path.name}")
        verify_sha256(path, want, "its metadata")
    return metadata


class OnnxEngine:
    """One ONNX network on ONNX Runtime's CPU (or CUDA) provider, with its metadata checked."""

    def __init__(self, path: str | Path, threads: int = 1, verify: bool = True,
                 device: Literal["cpu", "cuda"] = "cpu") -> None:
        import onnxruntime as ort

        self.path = Path(path)
        self.metadata: dict = load_verified_metadata(self.path, verify)
        if device == "cuda" and "CUDAExecutionProvider" not in ort.get_available_providers():
            raise EngineError("ONNX Runtime has no CUDA provider here (install onnxruntime-gpu: facetrack[gpu])")
        self.backend = device
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=_PROVIDERS[device])
        except Exception as exc:
            raise EngineError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc
        props = self.session.get_modelmeta().custom_metadata_map
        for k, v in props.items():
            if k not in self.metadata:
                try:
                    self.metadata[k] = json.loads(v)
                except ValueError:
                    self.metadata[k] = v
        self.inputs = [_spec(t) for t in self.session.get_inputs()]
        self.outputs = [_spec(t) for t in self.session.get_outputs()]
        self.input_name = self.inputs[0].name
        self.output_names = [o.name for o in self.outputs]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: x})

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        return self.run(np.ascontiguousarray(batch, np.float32))

    def close(self) -> None:
        self.session = None


def _spec(arg: object) -> TensorSpec:
    """ONNX Runtime's NodeArg as a TensorSpec ('tensor(float)' -> 'float32')."""
    kind = str(getattr(arg, "type", "")).removeprefix("tensor(").removesuffix(")")
    dtype = {"float": "float32", "float16": "float16", "int64": "int64", "int32": "int32"}.get(kind, kind)
    return TensorSpec(arg.name, tuple(d if isinstance(d, int) else None for d in arg.shape), dtype)
