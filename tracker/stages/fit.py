"""The face-model stage: fit the configured morphable model to each tracked face.

It fills a face's blendshapes, the model's own coefficients, the 68 iBUG points
projected from the fit, and replaces the rigid landmark pose with the model's pose.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import numpy as np
import scipy.linalg  # noqa: F401  (loaded before the thread-pool controller looks for BLAS libraries)
from threadpoolctl import ThreadpoolController

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, FaceCoefficients, FaceResult, StreamMetadata
from facetrack.tracker.facemodel.fit_result import FitResult
from facetrack.tracker.facemodel.fitter import FaceModelFitter
from facetrack.tracker.facemodel.fitter_config import FitterConfig
from facetrack.tracker.facemodel.format import ModelError
from facetrack.tracker.facemodel.registry import BUILTIN_ID, DEFAULT_MODEL_ID, RIG_ID, load_model
from facetrack.tracker.facemodel.rest_face import RestFaceOptions, load_neutral, save_neutral
from facetrack.tracker.stages.pose import pose_from_matrix

_BLAS = ThreadpoolController()


class FitStage:
    """Owns one fitter for one stream: per-track state (identity, warm start) lives inside it.

    The fit solves many small dense systems; a multi-threaded BLAS spends more time
    waking threads than computing (15x slower measured on 2 cores), so each fit runs
    with one BLAS thread.
    """

    def __init__(self, model_id: str, focal_px: float | None = None, mesh: bool = False,
                 calibration: RestFaceOptions | None = None,
                 mediapipe_weights: Literal["off", "below_brows", "face"] = "off") -> None:
        # `builtin` (the default) is the packaged model with identity modes; `rig` the generated rig without
        model = None if model_id == RIG_ID else load_model(DEFAULT_MODEL_ID if model_id == BUILTIN_ID else model_id)
        self.calibration = calibration or RestFaceOptions()
        self.fps = 30.0
        self.fitter = FaceModelFitter(model, FitterConfig(mediapipe_weights=mediapipe_weights))
        if self.calibration.neutral is not None:  # read here, so a bad file fails before any output exists
            if model is None:
                raise ModelError("--neutral needs a model with identity modes (not the generated rig)")
            try:
                self.fitter.use_neutral(*load_neutral(self.calibration.neutral, model.id))
            except ValueError as exc:
                raise ModelError(str(exc)) from exc
        self.focal_px = focal_px
        self.mesh = mesh
        if model is None:
            self.identity_size, self.expression_names = 0, list(ARKIT_BLENDSHAPES)
        else:
            self.identity_size, self.expression_names = len(model.id_basis), list(model.exp_names)

    def start(self, fps: float | None) -> None:
        """Set the stream's frame rate (calibration windows are in seconds) before its first frame."""
        self.fps = fps or 30.0
        if self.calibration.seconds is not None:  # a neutral face for N seconds: the calm half of them
            self.fitter.config = self.fitter.config.model_copy(update={
                "rest_window": self.frames(self.calibration.seconds), "rest_early": 0, "rest_keep": 0.5,
                "rest_source": "on demand"})

    def frames(self, seconds: float) -> int:
        return max(1, round(seconds * self.fps))

    def recalibrate(self, track_ids: list[int], seconds: float) -> None:
        """Take these tracks' rest faces from their next `seconds` (the person holds a neutral face)."""
        for track_id in track_ids:
            self.fitter.recalibrate(track_id, self.frames(seconds))

    def save_neutral(self, path: Path) -> Path | None:
        """Write the first calibrated track's identity and rest face; None when no track was calibrated."""
        for track_id in self.fitter.track_ids():
            saved = self.fitter.neutral_of(track_id)
            if saved is not None:
                return save_neutral(path, self.fitter.model_id, *saved)
        return None

    def describe(self, metadata: StreamMetadata) -> StreamMetadata:
        """The stream metadata with this model's layout."""
        return metadata.model_copy(update={
            "model_id": self.fitter.model_id,
            "identity_size": self.identity_size,
            "expression_size": len(self.expression_names),
            "expression_names": self.expression_names,
            "calibration": None if self.identity_size == 0 else {
                "mode": "file" if self.calibration.neutral else "on demand" if self.calibration.seconds else "auto",
                "window_frames": self.fitter.config.rest_window,
                "neutral_file": str(self.calibration.neutral) if self.calibration.neutral else None,
                "mediapipe_weights": self.fitter.config.mediapipe_weights,  # what the rest's weights were read by
            },
        })

    def fit(self, face: FaceResult, image_size: tuple[int, int]) -> FitResult:
        """Fit one face (its landmarks as they are now: ELAM-corrected when the eye stage ran)."""
        with _BLAS.limit(limits=1, user_api="blas"):
            return self.fitter.fit(face.track_id, face.landmarks, image_size, self.focal_px)

    def write(self, face: FaceResult, fit: FitResult) -> None:
        """Write a fit (possibly refined by the dynamics stage) into the face's result."""
        face.blendshapes = fit.arkit()  # the expression head's weights survive the refinements after the fit
        face.coefficients = FaceCoefficients.model_construct(
            model_id=fit.model_id,
            identity=fit.identity.astype(np.float32),
            expression=fit.expression.astype(np.float32),
            calibration=(self.fitter.rest_face(face.track_id) or {}).get("source"),
        )
        face.landmarks68 = fit.landmarks68.astype(np.float32)
        face.pose = pose_from_matrix(fit.rotation, fit.translation)
        if self.mesh:
            face._mesh = (fit.vertices().astype(np.float32), fit.model.triangles)

    def forget(self, track_ids: list[int]) -> None:
        for track_id in track_ids:
            self.fitter.forget(track_id)
