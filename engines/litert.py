"""The mediapipe wheel's plain TFLite models, checked against the files they were validated with, under LiteRT.

Apart from mesh_iris.py (which runs them as a landmark engine) and builds.py (which converts them to
ONNX and compares the conversion with LiteRT), so that neither of those imports the other.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from facetrack.engines.onnx_runtime import EngineError, verify_sha256
from facetrack.tracker.core import native_logs

# The wheel files this engine was validated with (mediapipe 0.10.21, the last version that bundles them).
MEDIAPIPE_MODELS: dict[str, tuple[str, str]] = {
    "face_detection_short_range": ("modules/face_detection/face_detection_short_range.tflite",
                                   "bbff11cebd1eb27a1e004cae0b0e63ec8c551cbf34a4451148b4908b8db3eca8"),
    "face_landmark": ("modules/face_landmark/face_landmark.tflite",
                      "1055cb9d4a9ca8b8c688902a3a5194311138ba256bcc94e336d8373a5f30c814"),
    "iris_landmark": ("modules/iris_landmark/iris_landmark.tflite",
                      "d1744d2a09c25f501d39eba4faff47e53ecca8852c5ce19bce8eeac39357521f"),
}
MEDIAPIPE_VERSION = "0.10.21"


def mediapipe_model(name: str) -> Path:
    """Path of one of the wheel's models, after checking it is the file this engine was validated with."""
    import mediapipe

    if name not in MEDIAPIPE_MODELS:
        raise EngineError(f"unknown mediapipe model {name!r} (one of {', '.join(MEDIAPIPE_MODELS)})")
    relative, want = MEDIAPIPE_MODELS[name]
    path = Path(mediapipe.__file__).resolve().parent / relative
    if not path.is_file():
        raise EngineError(f"{path} not found: mediapipe {MEDIAPIPE_VERSION} bundles it, later versions do not")
    verify_sha256(path, want, f"mediapipe {MEDIAPIPE_VERSION}'s")
    return path


class LiteRTModel:
    """One TFLite model under LiteRT; an interpreter per batch size, made on first use."""

    def __init__(self, path: Path, threads: int = 1) -> None:
        self.path = path
        self.threads = threads
        self._interpreters: dict[int, object] = {}

    def _interpreter(self, batch: int):
        it = self._interpreters.get(batch)
        if it is None:
            from ai_edge_litert.interpreter import Interpreter

            with native_logs.silenced():  # "INFO: Created TensorFlow Lite XNNPACK delegate for CPU."
                it = Interpreter(model_path=str(self.path), num_threads=self.threads)
                shape = list(it.get_input_details()[0]["shape"])
                if shape[0] != batch:
                    it.resize_tensor_input(it.get_input_details()[0]["index"], [batch, *shape[1:]])
                it.allocate_tensors()
            self._interpreters[batch] = it
        return it

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """(N, K) outputs for an (N, H, W, 3) float32 batch (host or CuPy), in the model's output order.

        The mesh and iris models batch (tests/test_engines_landmarks.py checks batch = items);
        the detector's graph ends in reshapes to batch 1 that interleave items, so it runs one
        image at a time.
        """
        batch = np.ascontiguousarray(host_array(batch), np.float32)
        it = self._interpreter(len(batch))
        it.set_tensor(it.get_input_details()[0]["index"], batch)
        it.invoke()
        return [it.get_tensor(d["index"]).reshape(len(batch), -1) for d in it.get_output_details()]


def host_array(batch) -> np.ndarray:
    """A batch as a host array (a no-op for NumPy, a device-to-host copy for CuPy)."""
    return batch if isinstance(batch, np.ndarray) else batch.get()
