"""The landmark-conditioned `regress` engine: each face's normalised landmarks -> ARKit weights and rotation.

The package ships one (`SHIPPED_ENGINE`, built by scripts/train_landmark_regressor.py; its
model card is `regress_landmarks.md` beside it), so `--engine regress` needs no user file.
Its sidecar says `input: "landmarks"`, the input's width and the frames of a track's context;
the inputs themselves are the regress stage's (tracker/stages/regress_features.py: a face's
features and its track's context), as engines/ may not import stages.
It runs a whole batch of faces in one call on any backend (`open_network`: ONNX Runtime CPU
or CUDA, TensorRT).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facetrack.engines.backends import BackendName, open_network
from facetrack.engines.engine_checks import check_finite, check_network
from facetrack.engines.onnx_runtime import EngineError, load_verified_metadata, sidecar_path
from facetrack.engines.regress import default_engine_path

SHIPPED_ENGINE = Path(__file__).with_name("models") / "regress_landmarks.onnx"
OUTPUTS = {"expression": 52, "rotation": 3}
"""What the regress stage reads: the 52 ARKit weights and the rotvec remainder over the rigid rotation."""


def regress_engine_path(path: Path | None = None) -> Path:
    """The regress engine to run: the one given, else one installed in the data directory, else the shipped one."""
    if path is not None:
        return Path(path)
    return default_engine_path() if default_engine_path().is_file() else SHIPPED_ENGINE


def is_landmark_engine(path: Path) -> bool:
    """Whether a regress engine's sidecar says it takes landmark features (rather than face crops)."""
    try:
        return json.loads(sidecar_path(Path(path)).read_text()).get("input") == "landmarks"
    except (OSError, ValueError, AttributeError):  # missing or not JSON: the crop engine's loader says so in full
        return False


class LandmarkRegressEngine:
    """(N, features) float32 -> {"expression": (N, 52), "rotation": (N, 3)}, on one backend."""

    name = "regress"

    def __init__(self, path: str | Path = SHIPPED_ENGINE, backend: BackendName = "auto", threads: int = 1,
                 max_batch: int = 256, fp16: bool = True) -> None:
        self.path = Path(path)
        try:
            meta = load_verified_metadata(self.path)
        except ValueError as exc:
            raise EngineError(f"{sidecar_path(self.path)} is not valid JSON ({exc}): re-export the engine") from exc
        if meta.get("engine") != "regress" or meta.get("input") != "landmarks":
            raise EngineError(f"{self.path.name} is not a landmark regress engine ({sidecar_path(self.path).name} "
                              f"says engine={meta.get('engine')!r}, input={meta.get('input')!r})")
        try:
            self.features = int(meta["features"])
            self.context_window = int(meta.get("context_window", 0))  # 0: built before the track context
            self.sizes = {str(k): int(v) for k, v in meta["outputs"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise EngineError(f"{sidecar_path(self.path).name}: malformed regress metadata ({exc!r}): "
                              "re-export the engine") from exc
        if self.sizes != OUTPUTS:
            raise EngineError(f"{self.path.name} gives {self.sizes}; the regress stage needs {OUTPUTS}")
        self.version = str(meta.get("version", "?"))
        self.metadata = meta
        # fp16: TensorRT builds its plan in half precision (the other backends run the file as it is)
        self.network = open_network(self.path, backend, threads=threads, fp16=fp16, max_batch=max_batch)
        self.backend = self.network.backend
        try:
            check_network(self.network, self.path, (self.features,), self.sizes)
        except EngineError:
            self.network.close()
            raise

    def predict(self, features: np.ndarray) -> dict[str, np.ndarray]:
        """Both outputs for a batch of faces' features (one network call; rows follow the faces)."""
        features = np.asarray(features)
        if features.ndim != 2 or features.shape[1] != self.features:
            raise ValueError(f"features must be (N, {self.features}), got {features.shape}")
        if len(features) == 0:
            return {k: np.zeros((0, n), np.float32) for k, n in self.sizes.items()}
        outs = self.network.infer(np.ascontiguousarray(features, np.float32))
        result = {o.name: np.asarray(v, np.float32).reshape(len(features), -1)
                  for o, v in zip(self.network.outputs, outs)}
        for name, value in result.items():
            check_finite(value, name, self.path)
        return result

    def close(self) -> None:
        self.network.close()
