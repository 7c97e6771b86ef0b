"""Step 8 of a face, gaze: the eyeLook* weights from where the irises sit in the eye openings.

Both eyes look the same way, so their estimates are averaged (each alone is noisy); an eye that
the eye-state engine calls closed (`EyeOptions.gaze_hold_p_closed`) keeps its last gaze, since
its iris is not seen.
"""

from __future__ import annotations

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, FaceResult
from facetrack.tracker.stages import eyes as E
from facetrack.tracker.stages.eye_options import EyeOptions

LOOK = [[ARKIT_BLENDSHAPES.index(f"eyeLook{d}{s}") for d in ("Down", "In", "Out", "Up")] for s in ("Left", "Right")]


def eye_look(face: FaceResult, p_closed: np.ndarray, last: np.ndarray, options: EyeOptions) -> None:
    """Set the face's eyeLook* weights; `last` (2, 4) is the track's gaze per eye, updated in place."""
    g = E.iris_gaze(face.landmarks)
    for k in range(2):
        p = p_closed[k]
        if not np.isfinite(p) or p < options.gaze_hold_p_closed:
            last[k] = g[k]
    both = last.mean(0)
    bs = np.array(face.blendshapes, np.float32, copy=True)
    # In/Out are mirrored between the eyes: left eye In (toward the nose) = right eye Out
    lr = np.stack([last[0], last[1]])
    horiz_left = 0.5 * ((lr[0, 1] - lr[0, 2]) + (lr[1, 2] - lr[1, 1]))  # + = looking to the subject's right
    vert = both[0] - both[3]  # + = down
    for k, side in enumerate(("Left", "Right")):
        inward = horiz_left if side == "Left" else -horiz_left
        vals = [max(vert, 0.0), max(inward, 0.0), max(-inward, 0.0), max(-vert, 0.0)]
        bs[LOOK[k]] = np.clip(vals, 0.0, 1.0)
    face.blendshapes = bs
