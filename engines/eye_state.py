"""The eye-state engine: P(closed) for both eyes of a face in one batch.

The default engine (`engines/models/eye_state.onnx`, model card `engines/models/eye_state.md`)
is a small CNN trained by `facetrack train eye-state` (training/eye_state.py). Input: the
aligned grey crops of `facetrack.tracker.stages.eyes.cut_eye_crops` (left eye mirrored), size and
normalisation read from the engine's metadata. It runs on any backend of
`facetrack.engines.backends` (the CPU by default: two tiny crops per face are not worth a
trip to a GPU in live tracking; batch runs pick a GPU with `backend`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facetrack.engines.backends import BackendName, open_network
from facetrack.engines.engine_checks import check_network, input_size, normalisation
from facetrack.engines.onnx_runtime import EngineError

DEFAULT_ENGINE = Path(__file__).resolve().parent / "models" / "eye_state.onnx"


class EyeStateEngine:
    """(N, H, W) uint8 grey eye crops -> (N,) P(closed)."""

    name = "eye-state"

    def __init__(self, path: str | Path | None = None, threads: int = 1, backend: BackendName = "cpu") -> None:
        path = Path(path or DEFAULT_ENGINE)
        self.network = open_network(path, backend, threads=threads)
        meta = self.metadata = self.network.metadata
        if meta.get("engine") != "eye_state":
            self.network.close()
            raise EngineError(f"{path.name} is not an eye-state engine (engine={meta.get('engine')!r})")
        try:
            self.input_size = input_size(meta, path)  # (width, height)
            self._scale, self._offset = normalisation(meta, path)
            outputs = {self.network.outputs[0].name: 1} if self.network.outputs else {}
            check_network(self.network, path, (1, self.input_size[1], self.input_size[0]), outputs)
        except EngineError:
            self.network.close()
            raise
        crop = meta.get("crop", {})
        self.crop_scale = float(crop.get("scale", 1.9))
        self.crop_y_shift = float(crop.get("y_shift", -0.08))
        self.version = str(meta.get("version", "?"))

    def predict(self, crops: np.ndarray) -> np.ndarray:
        crops = np.asarray(crops)
        if crops.ndim != 3 or (crops.shape[2], crops.shape[1]) != self.input_size:
            raise ValueError(f"crops must be (N, {self.input_size[1]}, {self.input_size[0]}), got {crops.shape}")
        x = (crops.astype(np.float32) * self._scale + self._offset)[:, None]
        return self.network.infer(x)[0].reshape(-1).astype(np.float32)

    def predict_stored(self, crops: np.ndarray, batch: int = 256) -> np.ndarray:
        """P(closed) for crops of any size (resized to the input size): evaluation of stored datasets."""
        import cv2

        out = [self.predict(np.stack([cv2.resize(c, self.input_size, interpolation=cv2.INTER_AREA)
                                      for c in crops[i:i + batch]])) for i in range(0, len(crops), batch)]
        return np.concatenate(out) if out else np.zeros(0, np.float32)

