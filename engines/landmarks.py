"""The landmark engine a TrackerConfig asks for: mediapipe's graph (default), or the plain mesh + iris
models under LiteRT or as ONNX on our backends.

mediapipe's graph stays the default on a CPU: it runs the attention mesh (better lids, lips
and irises) in one pass and is faster per frame here than the plain mesh plus two iris
passes under LiteRT (docs/engines.md has the measurements). The mesh + iris engine batches
faces; as ONNX on a GPU backend it also crops on the GPU with CuPy.
"""

from __future__ import annotations

import importlib.util
from typing import Literal, Protocol

from facetrack.engines.base import LandmarkEngine


class LandmarkSettings(Protocol):
    """The fields of a TrackerConfig that pick and tune the landmark engine (engines/ does not import the
    tracker's config)."""

    landmark_engine: Literal["mediapipe", "litert", "onnx"]
    backend: str
    max_faces: int
    min_detection_confidence: float
    min_tracking_confidence: float


def crop_device(backend: str) -> str:
    """'gpu' where the networks run on a GPU backend and CuPy sees the device, else 'cpu'.

    An explicit backend that cannot run here raises with the reason.
    """
    from facetrack.engines.backends import select_backend
    from facetrack.engines.preprocess import cupy_usable

    return "gpu" if select_backend(backend).name in ("tensorrt", "cuda") and cupy_usable() else "cpu"


def require_runtime(config: LandmarkSettings) -> None:
    """Refuse an engine whose runtime this install lacks, before a run opens anything (the engine itself is
    made when the source is known)."""
    if config.landmark_engine == "litert" and importlib.util.find_spec("ai_edge_litert") is None:
        from facetrack.engines.onnx_runtime import EngineError

        raise EngineError("--engine litert needs LiteRT, which this install lacks: pip install 'facetrack[litert]' "
                          "(or leave out --engine: mediapipe's own runtime is always installed)")


def make_landmark_engine(config: LandmarkSettings, still_images: bool) -> LandmarkEngine:
    """The configured engine; `still_images` turns off tracking from the previous frame."""
    if config.landmark_engine in ("litert", "onnx"):
        from facetrack.engines.mesh_iris import FaceMeshIris

        return FaceMeshIris(
            max_faces=config.max_faces, min_detection_confidence=config.min_detection_confidence,
            min_tracking_confidence=config.min_tracking_confidence, static_images=still_images,
            runtime=config.landmark_engine, backend=config.backend,
            device=crop_device(config.backend) if config.landmark_engine == "onnx" else "cpu",
        )
    from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh

    return MediapipeFaceMesh(
        max_faces=config.max_faces, min_detection_confidence=config.min_detection_confidence,
        min_tracking_confidence=config.min_tracking_confidence, static_images=still_images,
    )
