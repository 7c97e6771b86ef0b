"""Temporal filtering: a One Euro filter that keeps blinks, per track, on landmarks, pose and weights.

The One Euro filter (Casiez, Roussel & Vogel, CHI 2012) is a first-order low-pass whose
cutoff rises with the signal's speed: f_c = min_cutoff + beta |dx/dt|. A still face gets a
low cutoff (jitter removed), a moving face a high one (no lag). One addition keeps fast,
large and meaningful changes intact however they compare with the speed estimate (whose
own low-pass needs a frame or two to react): a channel may have a `snap` threshold, and
when the raw value is further than that from the filtered one, the output jumps to the raw
value (a blink closing in one frame is a blink, not noise). The eyeBlink channels and the
lid landmarks use it, so a closure of 2 frames at 25 fps reaches its full weight.

Values are filtered in scale-free units: landmarks and translation divided by the face's
size (outer eye-corner distance), so the same parameters serve a face at any distance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, Field

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.stages.eye_options import EyeOptions


def _alpha(cutoff: np.ndarray | float, dt: float) -> np.ndarray | float:
    tau = 1.0 / (2.0 * math.pi * np.asarray(cutoff))
    return 1.0 / (1.0 + tau / dt)


class OneEuroFilter:
    """A One Euro filter on a vector, with per-channel min_cutoff, beta and snap thresholds."""

    def __init__(self, min_cutoff: float | np.ndarray = 1.0, beta: float | np.ndarray = 0.0,
                 d_cutoff: float = 1.0, snap: float | np.ndarray | None = None) -> None:
        self.min_cutoff = np.asarray(min_cutoff, np.float64)
        self.beta = np.asarray(beta, np.float64)
        self.d_cutoff = float(d_cutoff)
        self.snap = None if snap is None else np.asarray(snap, np.float64)
        self._x: np.ndarray | None = None
        self._dx: np.ndarray | None = None
        self._t: float | None = None

    def reset(self) -> None:
        self._x = self._dx = self._t = None

    def __call__(self, x: np.ndarray, t: float) -> np.ndarray:
        x = np.asarray(x, np.float64)
        if self._x is None or self._t is None or t <= self._t or self._x.shape != x.shape:
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dt = t - self._t
        if dt > 1.0:  # a long gap: start over rather than smear across it
            self._x, self._dx, self._t = x.copy(), np.zeros_like(x), t
            return x.copy()
        dx = (x - self._x) / dt
        self._dx = self._dx + _alpha(self.d_cutoff, dt) * (dx - self._dx)
        cutoff = self.min_cutoff + self.beta * np.abs(self._dx)
        a = _alpha(cutoff, dt)
        y = self._x + a * (x - self._x)
        if self.snap is not None:
            jump = np.abs(x - self._x) > self.snap
            y = np.where(jump, x, y)
        self._x, self._t = y, t
        return y.copy()


class FilterConfig(BaseModel):
    """Parameters of the face filter (cutoffs in Hz; betas per scale-free unit per second)."""

    enabled: bool = True
    landmark_min_cutoff: float = Field(0.5, gt=0)
    landmark_beta: float = Field(20.0, ge=0)
    lid_snap: float = Field(
        0.03, gt=0, description="Lid/lip landmark jump (in eye-corner distances) passed through at once."
    )
    pose_min_cutoff: float = Field(1.0, gt=0)
    pose_beta: float = Field(4.0, ge=0)
    weight_min_cutoff: float = Field(2.0, gt=0)
    weight_beta: float = Field(4.0, ge=0)
    mouth_snap: float = Field(0.25, gt=0, description="jawOpen/mouthClose jump passed through at once.")


BLINK_CHANNELS = [ARKIT_BLENDSHAPES.index(n) for n in ("eyeBlinkLeft", "eyeBlinkRight")]
FAST_CHANNELS = [ARKIT_BLENDSHAPES.index(n) for n in ("jawOpen", "mouthClose")]


def _fast_landmarks() -> np.ndarray:
    from facetrack.tracker.stages import eyes

    return np.unique(np.concatenate([eyes.L_UPPER, eyes.L_LOWER, eyes.R_UPPER, eyes.R_LOWER,
                                     eyes.L_UPPER_OUTER_ROW, eyes.R_UPPER_OUTER_ROW,
                                     eyes.LIP_INNER_UPPER, eyes.LIP_INNER_LOWER, eyes.L_IRIS, eyes.R_IRIS]))


@dataclass
class TrackFilter:
    """One track's filters: landmarks, pose (quaternion + translation), blendshapes, model weights."""

    config: FilterConfig
    blink_snap: float
    landmarks: OneEuroFilter | None = None
    rotation: OneEuroFilter | None = None
    translation: OneEuroFilter | None = None
    blendshapes: OneEuroFilter | None = None
    expression: OneEuroFilter | None = None
    last_quat: np.ndarray | None = field(default=None)
    snap_unit: np.ndarray | None = field(default=None)

    def __post_init__(self) -> None:
        c = self.config
        n = 478
        snap = np.full((n, 3), np.inf)
        snap[_fast_landmarks()] = c.lid_snap
        self.snap_unit = snap
        self.landmarks = OneEuroFilter(c.landmark_min_cutoff, c.landmark_beta, snap=snap)
        self.rotation = OneEuroFilter(c.pose_min_cutoff, c.pose_beta)
        self.translation = OneEuroFilter(c.pose_min_cutoff, c.pose_beta)
        bsnap = np.full(len(ARKIT_BLENDSHAPES), np.inf)
        bsnap[BLINK_CHANNELS] = self.blink_snap
        bsnap[FAST_CHANNELS] = c.mouth_snap
        self.blendshapes = OneEuroFilter(c.weight_min_cutoff, c.weight_beta, snap=bsnap)
        self.expression = OneEuroFilter(c.weight_min_cutoff, c.weight_beta)


class FaceFilter:
    """Filters every tracked face's results in place; one per stream."""

    def __init__(self, config: FilterConfig | None = None,
                 blink_snap: float = EyeOptions.model_fields["blink_snap"].default) -> None:
        """`blink_snap` is the eye options' (TrackerConfig.eyes): every eye-closure threshold lives there."""
        self.config = config or FilterConfig()
        self.blink_snap = blink_snap
        self._tracks: dict[int, TrackFilter] = {}

    def forget(self, track_ids: list[int]) -> None:
        for t in track_ids:
            self._tracks.pop(t, None)

    def apply(self, face, t: float) -> None:
        """Filter one FaceResult in place at time t (seconds)."""
        if not self.config.enabled:
            return
        from facetrack.tracker.stages.eyes import L_CORNERS, R_CORNERS
        from facetrack.tracker.stages.pose import pose_from_matrix

        tf = self._tracks.get(face.track_id)
        if tf is None:
            tf = self._tracks[face.track_id] = TrackFilter(self.config, self.blink_snap)
        lm = np.asarray(face.landmarks, np.float64)
        scale = max(float(np.linalg.norm(lm[L_CORNERS[0], :2] - lm[R_CORNERS[0], :2])), 1e-6)
        # parameters in face widths: the speed term and the snap threshold scale with the face
        tf.landmarks.beta = np.asarray(self.config.landmark_beta / scale)
        tf.landmarks.snap = tf.snap_unit * scale
        face.landmarks = tf.landmarks(lm, t).astype(np.float32)
        if face.blendshapes is not None:
            face.blendshapes = np.clip(tf.blendshapes(face.blendshapes, t), 0, 1).astype(np.float32)
        if face.coefficients is not None and len(face.coefficients.expression):
            face.coefficients.expression = tf.expression(face.coefficients.expression, t).astype(np.float32)
        if face.pose is not None:
            q = np.asarray(face.pose.rotation, np.float64)
            if tf.last_quat is not None and q @ tf.last_quat < 0:
                q = -q  # the same rotation on the same side of the sphere as the last one
            qf = tf.rotation(q, t)
            qf /= max(np.linalg.norm(qf), 1e-12)
            tf.last_quat = qf
            depth = max(abs(face.pose.translation[2]), 1e-6)
            tr = tf.translation(np.asarray(face.pose.translation) / depth, t) * depth
            face.pose = pose_from_matrix(_quat_to_matrix(qf), tr)


def _quat_to_matrix(q: np.ndarray) -> np.ndarray:
    x, y, z, w = q
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])
