"""One face's fit, as the fitter gives it and the stages after it read it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.format import MorphableModel


@dataclass
class FitResult:
    """One face's fit. `vertices()` evaluates the dense mesh only when asked."""

    model_id: str
    blendshapes: np.ndarray  # (52,) ARKit order, [0, 1]
    expression: np.ndarray  # (K_exp,) the model's own weights
    identity: np.ndarray  # (K_id,)
    rotation: np.ndarray  # (3, 3) head -> camera
    translation: np.ndarray  # (3,) cm, camera frame
    landmarks68: np.ndarray  # (68, 2) pixels
    focal_px: float
    image_size: tuple[int, int]
    confidence: float  # SIR confidence of this frame, 0..1
    rms_px: float  # reprojection RMS of the used landmarks, pixels
    model: MorphableModel = field(repr=False)
    learned: np.ndarray | None = None  # (52,) the expression head's weights where it speaks, NaN elsewhere

    def __post_init__(self) -> None:
        self.blendshapes = self.arkit()

    def arkit(self) -> np.ndarray:
        """The 52 ARKit weights given out: the head's where it speaks, the fit's elsewhere (stages after
        the fit rewrite `blendshapes` from the fit's own weights; the stage that writes calls this again)."""
        if self.learned is None:
            return self.blendshapes
        return np.where(np.isnan(self.learned), self.blendshapes, self.learned).astype(np.float32)

    def vertices(self, frame: str = "camera") -> np.ndarray:
        """Dense mesh (V, 3) in cm, in the camera frame (default) or the head frame."""
        v = self.model.shape(self.identity, self.expression)
        return v if frame == "head" else v @ self.rotation.T + self.translation

    def blendshape_dict(self) -> dict[str, float]:
        return dict(zip(ARKIT_BLENDSHAPES, self.blendshapes.tolist()))
