"""The face-model stage: fit the configured morphable model to each tracked face.

It fills a face's blendshapes, the model's own coefficients, the 68 iBUG points
projected from the fit, and replaces the rigid landmark pose with the model's pose.
"""

from __future__ import annotations

import numpy as np
import scipy.linalg  # noqa: F401  (loaded before the thread-pool controller looks for BLAS libraries)
from threadpoolctl import ThreadpoolController

from facetrack.tracker.facemodel.fitter import FaceModelFitter, FitResult
from facetrack.tracker.facemodel.registry import BUILTIN_ID, DEFAULT_MODEL_ID, RIG_ID, load_model
from facetrack.tracker.pose import pose_from_matrix
from facetrack.tracker.schema import ARKIT_BLENDSHAPES, FaceCoefficients, FaceResult, StreamMetadata

_BLAS = ThreadpoolController()


class FitStage:
    """Owns one fitter for one stream: per-track state (identity, warm start) lives inside it.

    The fit solves many small dense systems; a multi-threaded BLAS spends more time
    waking threads than computing (15x slower measured on 2 cores), so each fit runs
    with one BLAS thread.
    """

    def __init__(self, model_id: str, focal_px: float | None = None, mesh: bool = False) -> None:
        # `builtin` (the default) is the packaged model with identity modes; `rig` the generated rig without
        model = None if model_id == RIG_ID else load_model(DEFAULT_MODEL_ID if model_id == BUILTIN_ID else model_id)
        self.fitter = FaceModelFitter(model)
        self.focal_px = focal_px
        self.mesh = mesh
        if model is None:
            self.identity_size, self.expression_names = 0, list(ARKIT_BLENDSHAPES)
        else:
            self.identity_size, self.expression_names = len(model.id_basis), list(model.exp_names)

    def describe(self, metadata: StreamMetadata) -> StreamMetadata:
        """The stream metadata with this model's layout."""
        return metadata.model_copy(update={
            "model_id": self.fitter.model_id,
            "identity_size": self.identity_size,
            "expression_size": len(self.expression_names),
            "expression_names": self.expression_names,
        })

    def fit(self, face: FaceResult, image_size: tuple[int, int]) -> FitResult:
        """Fit one face (its landmarks as they are now: ELAM-corrected when the eye stage ran)."""
        with _BLAS.limit(limits=1, user_api="blas"):
            return self.fitter.fit(face.track_id, face.landmarks, image_size, self.focal_px)

    def write(self, face: FaceResult, fit: FitResult) -> None:
        """Write a fit (possibly refined by the dynamics stage) into the face's result."""
        face.blendshapes = fit.blendshapes
        face.coefficients = FaceCoefficients.model_construct(
            model_id=fit.model_id,
            identity=fit.identity.astype(np.float32),
            expression=fit.expression.astype(np.float32),
        )
        face.landmarks68 = fit.landmarks68.astype(np.float32)
        face.pose = pose_from_matrix(fit.rotation, fit.translation)
        if self.mesh:
            face._mesh = (fit.vertices().astype(np.float32), fit.model.triangles)

    def forget(self, track_ids: list[int]) -> None:
        for track_id in track_ids:
            self.fitter.forget(track_id)
