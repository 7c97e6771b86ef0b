"""Tracker configuration: one pydantic model, validated once, shared by the CLI and the API."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from facetrack.tracker.facemodel.registry import BUILTIN_ID, RIG_ID
from facetrack.tracker.facemodel.rest_face import RestFaceOptions
from facetrack.tracker.sources.config import SourceConfig
from facetrack.tracker.stages.eye_options import EyeOptions
from facetrack.tracker.stages.filter import FilterConfig


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
        description="Morphable model fitted per face (`facetrack models list`); None tracks landmarks and rigid "
                    "pose only.",
    )
    mesh: bool = Field(False, description="Also evaluate the fitted dense mesh per face (`FaceResult.mesh`).")
    mediapipe_weights: Literal["off", "below_brows", "face"] = Field(
        "off",
        description="Which ARKit weights MediaPipe's blendshape network (trained on real faces) gives instead of "
                    "the project's expression head, each less what it read on the track's rest face: below_brows "
                    "(mouth, jaw, cheeks, nose), face (all but eye*) or off. About 2 ms more per face on a CPU "
                    "core (BENCHMARKS.md, issue 23); the model fit only.",
    )
    coefficients: Literal["fit", "regress"] = Field(
        "fit",
        description="Where blendshapes, coefficients and pose come from. fit: `model` fitted to each face's "
                    "landmarks; regress: the regress engine (`regressor`) on each face's normalised landmarks "
                    "(or, for a crop engine, an aligned crop), all faces of a frame in one batch on `backend` "
                    "(built-in rig only, no dynamics, no mesh; docs/engines.md).",
    )
    regressor: Path | None = Field(
        None, description="The regress engine (.onnx with its .json) for coefficients='regress'; default: "
                          "regress.onnx in the user data directory's engines/ folder if there is one, else the "
                          "shipped landmark regressor (engines/models/regress_landmarks.onnx).",
    )
    overlap: bool = Field(
        True,
        description="Files and image folders: the landmark engine works on frame N+1 while frame N is finished "
                    "(fit, eyes, sinks), so two cores share the work. Live sources never wait for a next frame.",
    )
    eyes: EyeOptions = Field(default_factory=EyeOptions, description="Eye state, ELAM, lid/lip dynamics, gaze.")
    filter: FilterConfig = Field(default_factory=FilterConfig, description="Temporal smoothing that keeps blinks.")
    calibration: RestFaceOptions = Field(default_factory=RestFaceOptions,
                                            description="Each track's rest face (neutral calibration).")
    source: SourceConfig = Field(default_factory=SourceConfig)

    @model_validator(mode="after")
    def _coefficient_source(self) -> TrackerConfig:
        """Refuse settings the chosen coefficient source would silently ignore."""
        if self.coefficients == "fit":
            if self.regressor is not None:
                raise ValueError("regressor is used only with coefficients='regress' (--engine regress)")
            if self.mediapipe_weights != "off" and self.model in (None, RIG_ID):
                raise ValueError("mediapipe_weights needs a face model with a rest face (not the generated rig or "
                                 "no model)")
            return self
        if self.mediapipe_weights != "off":
            raise ValueError("mediapipe_weights is read in the model fit: not available with the regress engine")
        if self.mesh:
            raise ValueError("the dense mesh comes from the model fit: not available with the regress engine")
        if self.model not in (None, BUILTIN_ID):
            raise ValueError(f"model {self.model!r} is for the fitter; the regress engine brings its own "
                             "(the built-in rig): drop --model or use --engine mediapipe")
        if self.calibration.neutral is not None or self.calibration.save_neutral is not None:
            raise ValueError("a saved neutral (--neutral, --save-neutral) is the fit's identity and rest face: not "
                             "available with the regress engine (--calibrate N works with both)")
        return self
