"""Distillation data: video clips -> aligned face crops with the tracker's pseudo-labels.

The regressor learns to reproduce the per-frame fitter: each kept frame gives a square
crop around the face, the fitter's 68 iBUG points and the landmark engine's 478 mesh points
(x, y, z in crop pixels: for the mesh's own PRDL part polygons), its 52 ARKit weights
(the built-in rig's expression coefficients), the eye-state probabilities (ELAM targets
for LDL) and the clip index as the subject. `shared_model` builds one face model for all
clips: the built-in rig on the mean relaxed neutral, with an identity basis from the PCA
of the clips' neutrals (so the landmark loss can explain each person's shape).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetrack.engines.regress import CROP_SCALE, crop_face  # noqa: F401  (one crop for training and run time)
from facetrack.tracker.facemodel.builtin_rig import build_builtin_model, head_frame_shape
from facetrack.tracker.facemodel.calibration import align_rigid, robust_neutral
from facetrack.tracker.facemodel.format import MorphableModel


@dataclass
class ClipFrames:
    """What one clip gives: crops (N, S, S, 3) uint8 and per-crop pseudo-labels."""

    name: str
    images: list[np.ndarray] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    landmarks478: list[np.ndarray] = field(default_factory=list)
    expression: list[np.ndarray] = field(default_factory=list)
    p_closed: list[np.ndarray] = field(default_factory=list)
    head_shapes: list[np.ndarray] = field(default_factory=list)
    fit_seconds: float = 0.0


def track_clip(path: Path, size: int, every: int = 2, max_frames: int = 200) -> ClipFrames:
    """Run the tracker on a clip and keep every `every`-th frame with a fitted face (at most max_frames read)."""
    import av

    from facetrack.tracker import Tracker, TrackerConfig

    out = ClipFrames(path.stem)
    faces = {}
    with Tracker(TrackerConfig(max_faces=1, max_frames=max_frames)) as tracker:
        t0 = time.perf_counter()
        n = 0
        for res in tracker.track(str(path)):
            n += 1
            if res.frame_index % every == 0 and res.faces and res.faces[0].landmarks68 is not None:
                faces[res.frame_index] = (res.faces[0], (res.width, res.height))
        out.fit_seconds = (time.perf_counter() - t0) / max(n, 1)
    with av.open(str(path)) as c:
        for i, frame in enumerate(c.decode(video=0)):
            if i >= max_frames:
                break
            if i not in faces:
                continue
            face, wh = faces[i]
            lmk68 = np.asarray(face.landmarks68, np.float64)[:, :2]
            crop, lmk = crop_face(frame.to_ndarray(format="rgb24"), lmk68, size)
            out.images.append(crop)
            out.landmarks.append(lmk)
            out.landmarks478.append(to_crop(np.asarray(face.landmarks, np.float32), lmk68, lmk))
            out.expression.append(np.asarray(face.blendshapes, np.float32))
            pc = [face.eyes.right.p_closed, face.eyes.left.p_closed] if face.eyes is not None else [None, None]
            out.p_closed.append(np.array([np.nan if p is None else p for p in pc], np.float32))
            out.head_shapes.append(head_frame_shape(np.asarray(face.landmarks), wh, float(wh[0]))[0])
    return out


def to_crop(points: np.ndarray, lmk68: np.ndarray, crop68: np.ndarray) -> np.ndarray:
    """Image points (P, 2 or 3) -> crop pixels by the scale and shift `crop_face` gave the 68 points
    (recovered from them, so the two cannot drift apart); z is scaled like x and y."""
    scale = float(np.ptp(crop68, axis=0).max() / np.ptp(lmk68, axis=0).max())
    out = points * scale
    out[:, :2] += crop68.mean(0) - scale * lmk68.mean(0)
    return out.astype(np.float32)


def shared_model(clips: list[ClipFrames], n_identity: int = 8) -> MorphableModel:
    """The built-in rig on the mean neutral of the clips, with PCA identity modes scaled to N(0, 1)."""
    neutrals = np.stack([robust_neutral(np.stack(c.head_shapes)) for c in clips if len(c.head_shapes) >= 3])
    aligned = align_rigid(neutrals, neutrals[0])
    mean = aligned.mean(0)
    model = build_builtin_model(mean.astype(np.float32))
    k = min(n_identity, len(aligned) - 1)
    if k > 0:
        d = (aligned - mean).reshape(len(aligned), -1)
        _, sv, vt = np.linalg.svd(d, full_matrices=False)
        basis = (vt[:k] * (sv[:k, None] / np.sqrt(len(aligned)))).reshape(k, -1, 3)
        model.id_basis = basis.astype(np.float32)
    return model


def write_npz(clips: list[ClipFrames], path: Path) -> Path:
    """The `npz` data source of the recipes: images, landmarks, landmarks478, expression, p_closed,
    subject (= clip index)."""
    keep = [c for c in clips if c.images]
    np.savez_compressed(
        path, images=np.concatenate([np.stack(c.images) for c in keep]),
        landmarks=np.concatenate([np.stack(c.landmarks) for c in keep]),
        landmarks478=np.concatenate([np.stack(c.landmarks478) for c in keep]),
        expression=np.concatenate([np.stack(c.expression) for c in keep]),
        p_closed=np.concatenate([np.stack(c.p_closed) for c in keep]),
        subject=np.concatenate([np.full(len(c.images), i) for i, c in enumerate(keep)]),
        clips=np.array([c.name for c in keep]))
    return path
