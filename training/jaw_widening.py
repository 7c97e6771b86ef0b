"""Wider jaws than the clips show: real faces' landmarks moved along the face model's jawOpen shape.

The fit's labels of the training clips hold few wide-open mouths (57 frames with jawOpen over
0.8, against 35% of one held-out clip's frames), so the regressor read the widest mouths of
people it never saw at about half the fit's jawOpen. For a fraction of each training clip's
frames this opens the jaw further by a random amount a in [0, 1 - jawOpen]: the packaged
model's jawOpen shape (cm, head frame) turned by the fit's head rotation and scaled by the
face's eye-corner distance over the model's, added to the image landmarks. The label's jawOpen
rises by a and the other weights stay as the fit gave them (a first-order label: the shape is
the model's own jawOpen, which the fit reads linearly until it saturates). The moved frames keep
their clip's own track context: the person is the same, only the jaw is wider.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial.transform import Rotation

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.training.landmark_regressor import FaceSet, concat, source_faces

JAW = ARKIT_BLENDSHAPES.index("jawOpen")
_EYE_OUTER = (33, 263)
_IMAGE_AXES = np.array([1.0, -1.0, -1.0])  # camera frame (y up, z toward the viewer) -> image (y down, z away)


def widen_jaw(z: dict[str, np.ndarray], amount: np.ndarray) -> dict[str, np.ndarray]:
    """`label_all`'s arrays of one source with each face's jaw opened by `amount` (N,) more, in jawOpen units."""
    from facetrack.tracker.facemodel.compact import load_default_model

    model = load_default_model()
    shape = model.exp_basis[int(np.argmax(model.arkit_map[JAW]))].astype(np.float64)  # (478, 3) cm per unit
    model_eyes = np.linalg.norm(model.neutral[_EYE_OUTER[0]] - model.neutral[_EYE_OUTER[1]])
    landmarks = z["landmarks"].astype(np.float64)
    px_per_cm = np.linalg.norm(landmarks[:, _EYE_OUTER[0]] - landmarks[:, _EYE_OUTER[1]], axis=1) / model_eyes
    rotation = Rotation.from_quat(z["rotation"].astype(np.float64)).as_matrix()  # head -> camera
    moved = np.einsum("nij,pj->npi", rotation, shape) * (amount * px_per_cm)[:, None, None] * _IMAGE_AXES
    weights = z["blendshapes"].copy()
    weights[:, JAW] = np.clip(weights[:, JAW] + amount, 0.0, 1.0)
    return {**z, "landmarks": (landmarks + moved).astype(np.float32), "blendshapes": weights}


def widened_faces(labels: dict[str, dict[str, np.ndarray]], identities: set[str], fraction: float,
                  seed: int = 0) -> FaceSet:
    """Jaw-widened copies of a random `fraction` of the frames of every clip (and mirrored clip) of `identities`,
    each with its clip's track context; the copies' source is the clip's name with '+jaw'."""
    rng = np.random.default_rng(seed)
    parts = []
    for name, z in labels.items():
        if not name.startswith("clip-") or not len(z["item"]) or str(z["item"][0]) not in identities:
            continue
        n = len(z["item"])
        amount = rng.uniform(0.0, 1.0, n) * (1.0 - z["blendshapes"][:, JAW]) * (rng.uniform(size=n) < fraction)
        chosen = amount > 0
        clip = source_faces(name, z)
        parts.append(source_faces(name + "+jaw", widen_jaw(z, amount), clip.context).take(chosen))
    if not parts:
        raise ValueError(f"no clip of these identities to widen: {sorted(identities)[:5]}")
    return concat(parts)
