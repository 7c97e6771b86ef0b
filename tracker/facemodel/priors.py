"""Antagonistic expression pairs: shapes a face does not make at once.

Antagonists (smile and frown on one side, pucker and smile, brow down and brow up...)
pull the same points in opposite directions, so a least-squares fit can switch both on
and let them cancel. The fitter holds the weaker of a pair that is both on at 0 and
re-solves the frame (a penalty on their product in the Hessian was tried: it makes the
problem indefinite at any useful strength).
"""

from __future__ import annotations

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.label_checks import ANTAGONISTIC_PAIRS

EXTRA_PAIRS: tuple[tuple[str, str], ...] = (
    ("mouthFunnel", "mouthSmileLeft"),
    ("mouthFunnel", "mouthSmileRight"),
    ("mouthFunnel", "mouthStretchLeft"),
    ("mouthFunnel", "mouthStretchRight"),
    ("browDownLeft", "browInnerUp"),
    ("browDownRight", "browInnerUp"),
    ("mouthShrugUpper", "mouthUpperUpLeft"),
    ("mouthShrugUpper", "mouthUpperUpRight"),
    ("mouthShrugLower", "jawOpen"),
    ("mouthPressLeft", "jawOpen"),
    ("mouthPressRight", "jawOpen"),
    ("mouthRollLower", "mouthLowerDownLeft"),
    ("mouthRollLower", "mouthLowerDownRight"),
)
"""Pairs that also cancel each other on a landmark fit (not checked by the labels' rules)."""


def antagonist_pairs() -> tuple[np.ndarray, np.ndarray]:
    """ARKit indices (a, b) of every antagonistic pair, checked or extra."""
    idx = {n: i for i, n in enumerate(ARKIT_BLENDSHAPES)}
    pairs = ANTAGONISTIC_PAIRS + EXTRA_PAIRS
    return np.array([idx[a] for a, _ in pairs]), np.array([idx[b] for _, b in pairs])


_A, _B = antagonist_pairs()


def exclude_antagonists(weights: np.ndarray, above: float = 0.2) -> np.ndarray:
    """52 ARKit weights with the weaker of every antagonistic pair that is both above `above` set to 0."""
    w = np.array(weights, np.float32, copy=True)
    a, b = w[_A], w[_B]
    both = (a > above) & (b > above)
    if both.any():
        w[np.where(a < b, _A, _B)[both]] = 0.0
    return w
