"""ARKit weights -> VRM 0.x blendshape presets, for avatars without ARKit ("Perfect Sync") shapes.

Most VRM 0.x models carry only the 12 presets below, which VMC receivers (VSeeFace,
Warudo, VNyan) drive by name. VRM presets add up on the mesh, so the mapping keeps
overlapping presets from doubling: a blink of both eyes is `Blink`, only the part of one
eye closing beyond the other is `Blink_L`/`Blink_R`, and the five vowels share one mouth.

    Blink    = min(eyeBlinkLeft, eyeBlinkRight)
    Blink_L  = eyeBlinkLeft - Blink              Blink_R = eyeBlinkRight - Blink
    O        = mouthFunnel                       U = mouthPucker
    A        = jawOpen x (1 - max(O, U))         (open, not rounded)
    stretch  = mean(mouthStretchLeft, mouthStretchRight) x (1 - max(O, U))
    I        = stretch x (1 - jawOpen)           E = stretch x jawOpen   (wide: closed / open)
             then A, I, U, E, O are scaled down together so that they sum to at most 1
    smile    = mean(mouthSmileLeft, mouthSmileRight)
    Joy      = min(smile, mean(cheekSquintLeft, cheekSquintRight))   (a smile that reaches the eyes)
    Fun      = smile - Joy                                            (a smile of the mouth only)
    Angry    = mean(browDownLeft, browDownRight)
    frown    = mean(mouthFrownLeft, mouthFrownRight)
    Sorrow   = max(min(frown, browInnerUp), frown / 2)   (a frown, sadder with the inner brows up)

All results are clipped to 0..1. `_L`/`_R` are the avatar's own left/right, as ARKit's
Left/Right are the subject's own.
"""

from __future__ import annotations

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES

VRM_PRESETS: tuple[str, ...] = ("Blink", "Blink_L", "Blink_R", "A", "I", "U", "E", "O", "Joy", "Angry", "Sorrow", "Fun")
"""The VRM 0.x preset names sent (VMC names are case-sensitive; VSeeFace expects these)."""

_I = {name: i for i, name in enumerate(ARKIT_BLENDSHAPES)}


def _mean(w: np.ndarray, *names: str) -> float:
    return float(np.mean(w[[_I[n] for n in names]]))


def vrm_presets(weights: np.ndarray) -> np.ndarray:
    """The 12 VRM preset weights, in `VRM_PRESETS` order, from 52 ARKit weights (module docstring)."""
    w = np.clip(np.asarray(weights, np.float64), 0.0, 1.0)
    left, right = w[_I["eyeBlinkLeft"]], w[_I["eyeBlinkRight"]]
    blink = min(left, right)
    funnel, pucker, jaw = w[_I["mouthFunnel"]], w[_I["mouthPucker"]], w[_I["jawOpen"]]
    spread = 1.0 - max(funnel, pucker)
    stretch = _mean(w, "mouthStretchLeft", "mouthStretchRight") * spread
    vowels = np.array([jaw * spread, stretch * (1.0 - jaw), pucker, stretch * jaw, funnel])  # A I U E O
    total = vowels.sum()
    if total > 1.0:
        vowels /= total
    smile = _mean(w, "mouthSmileLeft", "mouthSmileRight")
    joy = min(smile, _mean(w, "cheekSquintLeft", "cheekSquintRight"))
    frown = _mean(w, "mouthFrownLeft", "mouthFrownRight")
    sorrow = max(min(frown, w[_I["browInnerUp"]]), 0.5 * frown)
    out = np.array([blink, left - blink, right - blink, *vowels, joy, _mean(w, "browDownLeft", "browDownRight"),
                    sorrow, smile - joy])
    return np.clip(out, 0.0, 1.0).astype(np.float32)
