"""Eye geometry on the 478 landmarks: aligned eye crops, lid openings, ELAM, gaze.

One responsibility per piece, all pure numpy except the crop (OpenCV warp):

- `cut_eye_crops`: both eyes of a face as aligned grey crops, the subject's left eye
  mirrored so that it looks like a right eye (one eye-state network serves both).
- `lid_openings` / `eye_aspect_ratio`: upper-lower lid distances (the ELAM pairs) and
  the classic EAR baseline.
- `elam_correct`: the paper's ELAM rule, generalised (see the function).
- `iris_gaze`: the eyeLook* weights from the iris centre within the eye opening.

"Left" is always the subject's left eye (the image's right side in a non-mirrored view).
"""

from __future__ import annotations

import math

import cv2
import numpy as np

# mediapipe landmark indices (subject's side). Upper/lower lid pairs, outer -> inner, matched
# by position along the eye (the iBUG 37/41, 38/40 pairs are 160/144 and 158/153 here).
R_UPPER = np.array([246, 161, 160, 159, 158, 157, 173])
R_LOWER = np.array([7, 163, 144, 145, 153, 154, 155])
L_UPPER = np.array([466, 388, 387, 386, 385, 384, 398])
L_LOWER = np.array([249, 390, 373, 374, 380, 381, 382])
R_CORNERS = (33, 133)  # outer, inner
L_CORNERS = (263, 362)
R_IRIS = np.array([468, 469, 470, 471, 472])  # centre first
L_IRIS = np.array([473, 474, 475, 476, 477])
# mediapipe's upper-lid ring also has a second row (above the lid line) that moves with the lid
R_UPPER_OUTER_ROW = np.array([247, 30, 29, 27, 28, 56, 190])
L_UPPER_OUTER_ROW = np.array([467, 260, 259, 257, 258, 286, 414])
# the lid pairs that measure the opening (central ones: the corners barely move)
OPENING_PAIRS = slice(1, 6)
# lips: inner upper / lower pairs (centre and two either side), mouth corners
LIP_INNER_UPPER = np.array([81, 82, 13, 312, 311])
LIP_INNER_LOWER = np.array([178, 87, 14, 317, 402])
LIP_OUTER_UPPER = np.array([39, 37, 0, 267, 269])
LIP_OUTER_LOWER = np.array([181, 84, 17, 314, 405])
MOUTH_CORNERS = (61, 291)

# Every (2, ...) array here holds the subject's left eye, then the right.

CROP_SIZE = (48, 36)
"""Eye crop (width, height) in pixels: the eye-state engine's input."""
CROP_SCALE = 1.9
"""Crop width as a multiple of the eye's width (corner to corner)."""
CROP_Y_SHIFT = -0.08
"""Vertical shift of the crop centre, in crop widths (negative = up, toward the brow)."""


def eye_crop_transforms(landmarks: np.ndarray, size: tuple[int, int] = CROP_SIZE, scale: float = CROP_SCALE,
                        y_shift: float = CROP_Y_SHIFT) -> np.ndarray:
    """(2, 2, 3) affine maps image -> crop pixels for the left and right eye.

    Per eye: x runs from the outer to the inner corner (so the left eye's frame is mirrored:
    its x points to the image's left), y points down the face for both; the crop is
    `scale` times the nearer eye's width wide (a turned head keeps the scale), centred
    on the corners' midpoint shifted by `y_shift` crop widths. Plain floats: six points.
    """
    lm = landmarks
    lox, loy = float(lm[L_CORNERS[0], 0]), float(lm[L_CORNERS[0], 1])
    lix, liy = float(lm[L_CORNERS[1], 0]), float(lm[L_CORNERS[1], 1])
    rox, roy = float(lm[R_CORNERS[0], 0]), float(lm[R_CORNERS[0], 1])
    rix, riy = float(lm[R_CORNERS[1], 0]), float(lm[R_CORNERS[1], 1])
    dx, dy = lox - rox, loy - roy
    n = max(math.hypot(dx, dy), 1e-9)
    dx, dy = dx / n, dy / n
    downx, downy = -dy, dx
    w = scale * max(math.hypot(lix - lox, liy - loy), math.hypot(rix - rox, riy - roy), 1e-6)
    cw, ch = size
    s = cw / w
    out = np.empty((2, 2, 3))
    centres = (((lox + lix) / 2, (loy + liy) / 2, -1.0), ((rox + rix) / 2, (roy + riy) / 2, 1.0))
    for k, (cx, cy, sx) in enumerate(centres):
        cx, cy = cx + y_shift * w * downx, cy + y_shift * w * downy
        ax, ay = sx * dx * s, sx * dy * s
        bx, by = downx * s, downy * s
        out[k, 0] = (ax, ay, cw / 2 - (ax * cx + ay * cy))
        out[k, 1] = (bx, by, ch / 2 - (bx * cx + by * cy))
    return out


def cut_eye_crops(image: np.ndarray, landmarks: np.ndarray, size: tuple[int, int] = CROP_SIZE,
                  scale: float = CROP_SCALE, y_shift: float = CROP_Y_SHIFT) -> np.ndarray:
    """(2, H, W) uint8 grey crops of the left and right eye (the left one mirrored).

    image: HxWx3 RGB or HxW grey. Only the crops are converted to grey (not the frame). An engine
    passes the size, scale and shift it was trained with (its metadata), not these defaults.
    """
    mats = eye_crop_transforms(landmarks, size, scale, y_shift)
    out = np.empty((2, size[1], size[0]), np.uint8)
    for k, m in enumerate(mats):
        shrink = m[0, 0] ** 2 + m[0, 1] ** 2 < 1
        crop = cv2.warpAffine(image, m, size, flags=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_REPLICATE)
        out[k] = crop if crop.ndim == 2 else cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    return out


_UP = np.concatenate([L_UPPER, R_UPPER])
_LO = np.concatenate([L_LOWER, R_LOWER])
_ROW = np.concatenate([L_UPPER_OUTER_ROW, R_UPPER_OUTER_ROW])
_CORNERS = np.array([L_CORNERS, R_CORNERS])


def eye_widths(lm: np.ndarray) -> np.ndarray:
    """(2,) corner-to-corner eye widths (left, right), pixels."""
    d = lm[_CORNERS[:, 0], :2] - lm[_CORNERS[:, 1], :2]
    return np.sqrt((d * d).sum(1))


def lid_gaps(lm: np.ndarray) -> np.ndarray:
    """(2, 7) distances of the upper/lower lid pairs (left, right), pixels."""
    d = np.asarray(lm)[_UP, :2] - np.asarray(lm)[_LO, :2]
    return np.sqrt((d * d).sum(1)).reshape(2, 7)


def relative_openings(lm: np.ndarray) -> np.ndarray:
    """(2,) mean central lid gap over the eye width (left, right): scale-free lid opening."""
    return lid_gaps(lm)[:, OPENING_PAIRS].mean(1) / np.maximum(eye_widths(lm), 1e-6)


def eye_aspect_ratio(lm: np.ndarray) -> np.ndarray:
    """(2,) Soukupova & Cech's EAR (|p2-p6| + |p3-p5|) / (2 |p1-p4|) per eye: the landmark-only baseline."""
    g = lid_gaps(lm)
    return (g[:, 2] + g[:, 4]) / (2.0 * np.maximum(eye_widths(lm), 1e-6))


def mouth_openness(lm: np.ndarray) -> float:
    """Inner-lip gap (centre pairs) over the mouth width: 0 closed, ~0.5-0.8 wide open."""
    lm = np.asarray(lm)
    gap = np.linalg.norm(lm[LIP_INNER_UPPER[1:4], :2] - lm[LIP_INNER_LOWER[1:4], :2], axis=1).mean()
    width = np.linalg.norm(lm[MOUTH_CORNERS[0], :2] - lm[MOUTH_CORNERS[1], :2])
    return float(gap / max(width, 1e-6))


def elam_correct(lm: np.ndarray, p_closed: np.ndarray, open_opening: np.ndarray,
                 threshold: float = 0.5) -> tuple[np.ndarray, np.ndarray]:
    """ELAM on the 478 landmarks: move the upper lids to the opening P implies.

    The paper's rule L_i <- L_i - P |L_i - L_j| (y up) moves an upper-lid point by P times
    its gap to the lower lid, which assumes the landmarks show an open eye. Generalised:
    the classifier's P implies a target opening (1 - P) * O_open relative to the track's
    calibrated open-eye opening O_open (gap over eye width); when the landmarks already
    show less than that, nothing moves (never close twice), otherwise each upper-lid point
    (and the row above it, so the lid keeps its shape) moves along its pair's direction
    toward the lower lid by the fraction that brings the opening to the target. Only eyes
    with P >= `threshold` are corrected: below it the landmarks are trusted. For an open
    track (opening = O_open) and P = 1 this is exactly the paper's rule.

    Returns the corrected copy and the per-eye target openness (0..1, NaN where uncorrected).
    """
    out = np.array(lm, dtype=np.float32, copy=True)
    p = np.asarray(p_closed, np.float64)
    openness = np.where(np.isfinite(p) & (p >= threshold), 1.0 - p, np.nan)
    act = np.isfinite(openness)
    if not act.any():
        return out, openness
    current = relative_openings(lm)
    target = (1.0 - np.where(act, p, 0.0)) * np.asarray(open_opening, np.float64)
    # fraction of each gap to close; 0 where the landmarks already show the target or less
    frac = np.where(act & (current > target) & (current > 1e-9), 1.0 - target / np.maximum(current, 1e-9), 0.0)
    if not frac.any():
        return out, openness
    f = np.repeat(frac, 7)[:, None]
    delta = (out[_LO, :2] - out[_UP, :2]) * f
    out[_UP, :2] += delta
    out[_ROW, :2] += delta
    return out, openness


def iris_gaze(lm: np.ndarray) -> np.ndarray:
    """(2, 4) eyeLook weights per eye (left, right) in the order Down, In, Out, Up, 0..1.

    The iris centre's offset from the eye centre, in the eye's own frame (x from the
    outer to the inner corner, y down), divided by the ranges an eye rotates over: about
    0.22 eye widths sideways and 0.12 eye widths up/down for full weight.
    """
    lm = np.asarray(lm, np.float64)
    out = np.zeros((2, 4))
    for k, ((outer, inner), iris, up, lo) in enumerate(((L_CORNERS, L_IRIS, L_UPPER, L_LOWER),
                                                         (R_CORNERS, R_IRIS, R_UPPER, R_LOWER))):
        o, i = lm[outer, :2], lm[inner, :2]
        w = np.linalg.norm(i - o)
        if w < 1e-6:
            continue
        ex = (i - o) / w
        ey = np.array([-ex[1], ex[0]])
        if k == 0:  # the left eye's x runs to the image's left: keep y pointing down the face
            ey = -ey
        centre = 0.5 * (o + i)
        # the lid midline is a better vertical reference than the corners
        mid = 0.5 * (lm[up[3], :2] + lm[lo[3], :2])
        c = lm[iris[0], :2]
        dx = float((c - centre) @ ex) / w
        dy = float((c - mid) @ ey) / w
        out[k] = [max(dy, 0) / 0.12, max(dx, 0) / 0.22, max(-dx, 0) / 0.22, max(-dy, 0) / 0.12]
    return np.clip(out, 0.0, 1.0)
