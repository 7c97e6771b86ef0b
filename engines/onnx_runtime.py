"""ONNX Runtime on the CPU: the backend of our own engines (eye state, regressors).

An engine is an ONNX file plus metadata: the ONNX file's `metadata_props` and a sidecar
`<name>.json` holding the same keys and the ONNX file's sha256. Loading checks the
checksum (a truncated or swapped file fails loudly, not with odd numbers) and runs the
network with one intra-op thread: our networks are tiny, and the tracker's other stages
own the other cores.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np


class EngineError(RuntimeError):
    """An engine file is missing, corrupt or does not match its metadata."""


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


class OnnxEngine:
    """One ONNX network on ONNX Runtime's CPU provider, with its metadata checked."""

    def __init__(self, path: str | Path, threads: int = 1, verify: bool = True) -> None:
        import onnxruntime as ort

        self.path = Path(path)
        if not self.path.is_file():
            raise EngineError(f"engine file not found: {self.path}")
        side = sidecar_path(self.path)
        self.metadata: dict = json.loads(side.read_text()) if side.is_file() else {}
        if verify:
            want = self.metadata.get("sha256")
            if want is None:
                raise EngineError(f"{side} is missing or has no sha256: cannot verify {self.path.name}")
            got = sha256_file(self.path)
            if got != want:
                raise EngineError(f"{self.path.name}: sha256 {got[:12]}... does not match its metadata {want[:12]}...")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        try:
            self.session = ort.InferenceSession(str(self.path), opts, providers=["CPUExecutionProvider"])
        except Exception as exc:
            raise EngineError(f"ONNX Runtime cannot load {self.path}: {exc}") from exc
        props = self.session.get_modelmeta().custom_metadata_map
        for k, v in props.items():
            if k not in self.metadata:
                try:
                    self.metadata[k] = json.loads(v)
                except ValueError:
                    self.metadata[k] = v
        self.input_name = self.session.get_inputs()[0].name
        self.output_names = [o.name for o in self.session.get_outputs()]

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        return self.session.run(self.output_names, {self.input_name: x})
