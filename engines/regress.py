"""The `regress` engine at run time: aligned face crops -> the coefficient regressor's outputs.

`facetrack train regressor` (training/regressor.py: `export_onnx`) writes `regress.onnx`
plus its sidecar `regress.json` (engine "regress", input size, normalisation, one output
per coefficient group). `RegressEngine` loads it on any backend (`open_network`: ONNX
Runtime CPU or CUDA, TensorRT), after checking the sidecar's sha256 and that it is a
regress engine, and runs a whole batch of crops at once.

The network only gives good numbers on crops cut exactly as its training crops were:
`crop_face` is that one function. training/distil.py imports it from here, so the
training data and the runtime cannot drift apart, and the runtime needs no PyTorch.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facetrack.engines.backends import BackendName, open_network
from facetrack.engines.engine_checks import check_finite, check_network, input_size, normalisation
from facetrack.engines.onnx_runtime import EngineError, load_verified_metadata, sidecar_path
from facetrack.tracker.core.paths import data_dir

CROP_SCALE = 1.6
"""Crop side = CROP_SCALE x the larger side of the 68 points' box: the whole face and some margin."""
TRAIN_HINT = ("train and export one on the built-in rig (docs/training.md, 'Distilling the fitter'): "
              "`facetrack train regressor --config RECIPE --out runs/x`, then pass `--regressor runs/x/regress.onnx`")
"""How to get an engine: the end of every 'no usable engine' message."""


def default_engine_path() -> Path:
    """Where an installed regress engine lives: `<data>/engines/regress.onnx` (+ `regress.json`)."""
    return data_dir() / "engines" / "regress.onnx"


def crop_face(image: np.ndarray, lmk68: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """A square crop centred on the 68 points (border replicated), and the points in crop pixels."""
    import cv2

    lo, hi = lmk68.min(0), lmk68.max(0)
    centre, side = (lo + hi) / 2, CROP_SCALE * float((hi - lo).max())
    s = size / side
    m = np.array([[s, 0, size / 2 - s * centre[0]], [0, s, size / 2 - s * centre[1]]], np.float32)
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, (lmk68 * s + m[:, 2]).astype(np.float32)


class RegressEngine:
    """(N, S, S, 3) uint8 RGB face crops -> {output group: (N, size) float32}, on one backend."""

    name = "regress"

    def __init__(self, path: str | Path, backend: BackendName = "auto", threads: int = 1,
                 max_batch: int = 16) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise EngineError(f"regress engine not found: {self.path}; {TRAIN_HINT}")
        try:
            meta = load_verified_metadata(self.path)
        except ValueError as exc:  # the sidecar is not JSON
            raise EngineError(f"{sidecar_path(self.path)} is not valid JSON ({exc}): re-export the engine") from exc
        if meta.get("engine") != "regress":
            raise EngineError(f"{self.path.name} is not a regress engine ({sidecar_path(self.path).name} says "
                              f"engine={meta.get('engine')!r}); {TRAIN_HINT}")
        width, height = input_size(meta, self.path)
        self._scale, self._offset = normalisation(meta, self.path)
        try:
            self.sizes: dict[str, int] = {str(k): int(v) for k, v in meta["outputs"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EngineError(f"{sidecar_path(self.path).name}: malformed regress metadata ({exc!r}): "
                              "re-export the engine") from exc
        if not all(0 < n <= 100_000 for n in self.sizes.values()):
            raise EngineError(f"{self.path}: the sidecar's output sizes {self.sizes} are not per-face sizes")
        if width != height:
            raise EngineError(f"{self.path.name}: the regressor takes square crops, its metadata says {width}x{height}")
        self.input_size = width
        self.version = str(meta.get("version", "?"))
        self.metadata = meta
        self.network = open_network(self.path, backend, threads=threads, max_batch=max_batch)
        self.backend = self.network.backend
        try:
            check_network(self.network, self.path, (3, width, width), self.sizes)
        except EngineError:
            self.network.close()
            raise

    def predict(self, crops: np.ndarray) -> dict[str, np.ndarray]:
        """Every output group for a batch of crops (one network call; rows follow the crops)."""
        crops = np.asarray(crops)
        s = self.input_size
        if crops.ndim != 4 or crops.shape[1:] != (s, s, 3) or crops.dtype != np.uint8:
            raise ValueError(f"crops must be uint8 (N, {s}, {s}, 3) RGB, got {crops.dtype} {crops.shape}")
        if len(crops) == 0:
            return {k: np.zeros((0, n), np.float32) for k, n in self.sizes.items()}
        x = np.ascontiguousarray(crops.transpose(0, 3, 1, 2), np.float32) * self._scale + self._offset
        outs = self.network.infer(x)
        result = {o.name: np.asarray(v, np.float32).reshape(len(crops), -1) for o, v in zip(self.network.outputs, outs)}
        for name, value in result.items():  # NaN would be written as null blendshapes: a broken network says so
            check_finite(value, name, self.path)
        return result
