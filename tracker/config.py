"""Tracker configuration: one pydantic model, validated once, shared by the CLI and the API."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from facetrack.tracker.eye_stage import EyeOptions
from facetrack.tracker.filters import FilterConfig
from facetrack.tracker.sources import SourceConfig


class TrackerConfig(BaseModel):
    """How to track: faces, thresholds, camera and the source's behaviour."""

    model_config = ConfigDict(extra="forbid")

    max_faces: int = Field(1, ge=1, le=16, description="Most faces tracked at once.")
    min_detection_confidence: float = Field(0.5, ge=0.0, le=1.0)
    min_tracking_confidence: float = Field(0.5, ge=0.0, le=1.0)
    landmark_engine: Literal["mediapipe", "litert", "onnx"] = Field(
        "mediapipe",
        description="mediapipe: its graph with the attention mesh (default: faster on a CPU); litert: the plain "
                    "mesh + iris models under LiteRT, faces batched; onnx: their ONNX conversions on `backend` "
                    "(docs/engines.md).",
    )
    backend: Literal["auto", "cpu", "cuda", "tensorrt"] = Field(
        "auto", description="Where our networks run: auto picks TensorRT, then ONNX Runtime CUDA, then the CPU.",
    )
    focal_px: float | None = Field(None, gt=0, description="Camera focal length in pixels; default: image width.")
    stream_id: str = Field("main", pattern=r"^[A-Za-z0-9_.-]{1,64}$", description="Names the stream on the wire.")
    max_frames: int | None = Field(None, ge=1, description="Stop after this many frames.")
    model: str | None = Field(
        "builtin",
        description="Morphable model fitted per face (`facetrack models list`); None tracks landmarks and rigid pose only.",
    )
    mesh: bool = Field(False, description="Also evaluate the fitted dense mesh per face (`FaceResult.mesh`).")
    eyes: EyeOptions = Field(default_factory=EyeOptions, description="Eye state, ELAM, lid/lip dynamics, gaze.")
    filter: FilterConfig = Field(default_factory=FilterConfig, description="Temporal smoothing that keeps blinks.")
    source: SourceConfig = Field(default_factory=SourceConfig)
