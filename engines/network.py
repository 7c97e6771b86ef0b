"""The one interface of our networks, whatever runs them: describe inputs/outputs, infer a batch.

Every backend (ONNX Runtime on the CPU or CUDA, TensorRT, the PyTorch reference) loads a
network file whose sha256 is checked against its metadata first, then answers `infer` on
a batch (first axis) of the single input and returns the outputs in the order of
`outputs`. Callers pick a backend with `facetrack.engines.backends.open_network`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np


@dataclass(frozen=True, slots=True)
class TensorSpec:
    """One input or output: its name, shape (None or a name where dynamic) and element type."""

    name: str
    shape: tuple[int | str | None, ...]
    dtype: str


@runtime_checkable
class Network(Protocol):
    """A loaded network on one backend."""

    backend: str
    """'cpu', 'cuda', 'tensorrt' or 'torch'."""
    metadata: dict
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]

    def infer(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs (first axis = batch) for a batch of the single input, as host arrays."""

    def close(self) -> None:
        """Release native resources (device memory, sessions)."""
