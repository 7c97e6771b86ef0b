"""The built-in model's online calibration: a track's neutral face from its still, near-frontal frames,
aligned on rigid points and reduced to a robust median (tracker/facemodel/builtin_rig.py generates the rig on it).
"""

from __future__ import annotations

import numpy as np

from facetrack.tracker.facemodel.builtin_rig import (
    L_BROW,
    L_EYE_CORNERS,
    R_BROW,
    R_EYE_CORNERS,
    RIGID,
    build_builtin_model,
    head_frame,
    head_frame_shape,
)
from facetrack.tracker.facemodel.format import MorphableModel


def align_rigid(shapes: np.ndarray, reference: np.ndarray) -> np.ndarray:
    """Rotate and shift each shape (T, 478, 3) onto the reference by its rigid landmarks (Kabsch).

    The head frame's y axis runs to the chin, which the jaw moves; aligning on points
    expressions leave alone keeps an open-mouth frame from tilting the whole face.
    """
    a = shapes[:, RIGID]
    ca, cb = a.mean(1, keepdims=True), reference[RIGID].mean(0)
    m = np.einsum("tni,nj->tij", a - ca, reference[RIGID] - cb)
    u, _, vt = np.linalg.svd(m)
    d = np.sign(np.linalg.det(u @ vt))
    u[:, :, 2] *= d[:, None]
    r = u @ vt  # (T, 3, 3): row-vector rotation a @ r ~ b
    return np.einsum("tni,tij->tnj", shapes - ca, r) + cb


def openness(shapes: np.ndarray) -> np.ndarray:
    """(T, 4) mouth gap, lid gap (mean of both eyes), brow height, mouth width; cm."""
    mouth = np.linalg.norm(shapes[:, 13] - shapes[:, 14], axis=-1)
    lids = 0.5 * (np.linalg.norm(shapes[:, 386] - shapes[:, 374], axis=-1)
                  + np.linalg.norm(shapes[:, 159] - shapes[:, 145], axis=-1))
    brows = shapes[:, L_BROW + R_BROW, 1].mean(1) - shapes[:, L_EYE_CORNERS + R_EYE_CORNERS, 1].mean(1)
    width = np.linalg.norm(shapes[:, 291] - shapes[:, 61], axis=-1)
    return np.stack([mouth, lids, brows, width], axis=1)


def robust_neutral(shapes: np.ndarray) -> np.ndarray:
    """A relaxed face from a stack of head-frame shapes (T, 478, 3).

    Frames are aligned on the rigid landmarks; those with the mouth at most as open as
    the median, the lids above their 20th percentile (no blink) and the brows and
    mouth width below their 80th (no raised brows, no smile) are kept (about a fifth),
    and the per-coordinate median of the kept frames is re-expressed in the head frame.
    """
    aligned = align_rigid(shapes, shapes[0])
    o = openness(aligned)
    p20, p50, p80 = np.percentile(o, [20, 50, 80], axis=0)
    keep = (o[:, 0] <= p50[0]) & (o[:, 1] >= p20[1]) & (o[:, 2] <= p80[2]) & (o[:, 3] <= p80[3])
    if keep.sum() < 3:
        keep = o[:, 0] <= p50[0]
    return head_frame(np.median(aligned[keep], axis=0))[0]

class BuiltinCalibration:
    """Online calibration of a track's neutral face for the built-in rig.

    Weights are displacements from the neutral, so a neutral caught mid-smile or
    mid-word makes every later frame read as its opposite. The first frame gives a
    provisional neutral (so fitting starts at once); then still (the landmarks moved
    less than `max_motion` of the eye-corner distance, RMS, since the previous frame:
    no motion blur, no expression in transit) and near-frontal (|yaw|, |pitch| <
    `max_angle`) frames are collected, and the rig is rebuilt from their robust median
    (`robust_neutral`) after `early` of them and, finally, after `frames`.
    """

    def __init__(self, frames: int = 40, early: int = 8, max_angle_deg: float = 20.0,
                 max_motion: float = 0.02) -> None:
        self.frames, self.early = frames, early
        self.max_angle = np.deg2rad(max_angle_deg)
        self.max_motion = max_motion
        self.shapes: list[np.ndarray] = []
        self.done = False
        self._previous: np.ndarray | None = None

    def update(self, landmarks: np.ndarray, image_size: tuple[int, int], focal_px: float) -> MorphableModel | None:
        """Feed one frame; returns a (new) model when the neutral changed, else None."""
        lm = np.asarray(landmarks, np.float64)
        first = self._previous is None
        if lm.shape[1] < 3 or not np.isfinite(lm).all():
            if not first:
                return None
            lm = np.nan_to_num(np.pad(lm[:, :3], ((0, 0), (0, max(0, 3 - lm.shape[1])))))
        previous, self._previous = self._previous, lm[:, :2]
        if not first:
            eyes = float(np.linalg.norm(lm[L_EYE_CORNERS[0], :2] - lm[R_EYE_CORNERS[0], :2]))
            moved = float(np.sqrt(((lm[:, :2] - previous) ** 2).sum(1).mean()))
            if self.done or moved > self.max_motion * eyes:
                return None
        shape, rot = head_frame_shape(lm, image_size, focal_px)
        yaw = np.arctan2(rot[0, 2], rot[2, 2])
        pitch = np.arcsin(np.clip(-rot[1, 2], -1, 1))
        if first:
            return build_builtin_model(shape)
        if abs(yaw) > self.max_angle or abs(pitch) > self.max_angle:
            return None
        self.shapes.append(shape)
        if len(self.shapes) in (self.early, self.frames):
            self.done = len(self.shapes) >= self.frames
            return build_builtin_model(robust_neutral(np.stack(self.shapes)))
        return None
