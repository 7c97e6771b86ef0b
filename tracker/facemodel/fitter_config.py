"""The weights of the morphable-model fit (fitter.py), one validated configuration."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field


class FitterConfig(BaseModel):
    """Weights of the fit; the defaults suit mediapipe landmarks on 480p-1080p video."""

    landmark_sigma: float = Field(0.02, gt=0, description="Landmark noise as a fraction of the face's RMS radius.")
    outer_iterations: int = Field(1, ge=1, description="Least joint Gauss-Newton steps per frame (warm-started; "
                                                       "more until a step is below the tolerance).")
    max_iterations: int = Field(10, ge=1, description="More steps while the pose still moves (fast motion, "
                                                      "re-acquired face).")
    tolerance: float = Field(3e-3, gt=0, description="Converged when the step is below this (rad, or depth fraction).")
    pose_iterations: int = Field(3, ge=1, description="Pose-only steps after a track's weak-perspective start.")
    first_frame_iterations: int = Field(8, ge=1, description="Joint steps on a track's first frame (no warm start).")
    exp_ridge: float = Field(0.05, ge=0, description="Ridge prior on expression weights (toward neutral).")
    exp_l1: float = Field(15.0, ge=0, description="L1 prior on expression weights (sparse; neutral reads 0).")
    temporal: float = Field(1.0, ge=0, description="Pull of expression weights toward the previous frame.")
    id_prior: float = Field(1.0, ge=0, description="N(0, 1) prior on identity coefficients (precision).")
    id_measure_prior: float = Field(0.3, gt=0, description="Weak prior of the per-frame identity measurement.")
    id_max_weight: float = Field(150.0, gt=0, description="Cap on a track's accumulated confidence (adaptivity).")
    id_warmup_weight: float = Field(6.0, ge=0, description="Update identity every frame until this confidence.")
    id_every: int = Field(15, ge=1, description="Then update identity every n-th frame of the track.")
    sir_lambda: float = Field(4.0, ge=0, description="lambda in the SIR confidence exp(-lambda ||expr||) (the "
                                                     "L1 prior keeps weights small: a larger lambda tells calm "
                                                     "frames from expressive ones).")
    contour_weight: float = Field(0.5, ge=0, description="Weight of face-oval landmarks (they slide).")
    chin_weight: float = Field(1.0, ge=0, description="Weight of the chin landmarks (the jaw is read from them).")
    max_tracks: int = Field(64, ge=1, description="Tracks kept; the least recently seen is forgotten first.")
    exclude_above: float = Field(0.2, gt=0, le=1, description="Antagonistic pairs both above this: the weaker "
                                                               "is held at 0 and the frame re-solved (1: off).")
    rest_window: int = Field(120, ge=0, description="Frames of a track's warm-up from which its rest face is "
                                                  "calibrated (rest_face.py); 0: no rest calibration.")
    rest_cap: float = Field(0.1, gt=0, le=1, description="Most of one expression weight a rest face may "
                                                         "subtract (a held smile still reads).")
    rest_own_shape: list[str] = Field(["mouthShrugLower", "mouthShrugUpper"], description="Expression shapes a "
                                      "rest face absorbs in full: a person's own lips and chin read as them on "
                                      "every frame, and they are rarely held through a warm-up.")
    rest_turned_deg: float = Field(10.0, ge=0, description="A rest face taken at this yaw or more absorbs the one-"
                                   "sided part of a brow offset in full (mediapipe's bias on turned faces; 0: off).")
    rest_source: Literal["auto", "on demand"] = Field("auto", description="auto: the calmest warm-up frames; "
                                                      "on demand: the user holds a neutral face for the window.")
    rest_early: int = Field(30, ge=0, description="A provisional rest face after this many frames (0: none).")
    head: Literal["off", "face", "all"] = Field("face", description="Where the learned landmark-to-weights head "
                                               "(expression_head.py) gives the ARKit weights: face (all but eye*, "
                                               "which the eye stage owns), all, or off (the fit's own weights).")
    mediapipe_weights: Literal["off", "below_brows", "face"] = Field("off", description="Which of the "
                                                                   "head's weights MediaPipe's blendshape network "
                                                                   "(trained on real faces; mediapipe_head.py) gives "
                                                                   "instead of the project's head: below_brows (mouth, "
                                                                   "jaw, cheeks, nose), face (all but eye*) or off.")
    rest_weight_cap: float = Field(0.3, gt=0, le=1, description="Most of one weight read by MediaPipe's network on a "
                                   "track's calm warm-up frames that its rest face subtracts (a held expression "
                                   "still reads).")
    rest_keep: float = Field(0.15, gt=0, le=1, description="Fraction of the warm-up's calmest frames kept for rest.")
