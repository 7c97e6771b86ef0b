"""A demo clip that every install can make: a public-domain portrait, animated.

The portrait is NASA's official photograph of astronaut Eileen Collins (a work of the U.S. federal
government, in the public domain), which scikit-image ships in its wheel as `skimage.data.astronaut`.
The clip moves the head a little and closes the eyelids by a piecewise-affine warp of the face mesh:
two blinks and a wink of the subject's left eye, so a first run shows tracking, eye state and blink
events without a webcam, a download or third-party media.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, Field

from facetrack.tracker.core.errors import FacetrackError

PORTRAIT_CREDIT = ("Eileen Collins, official NASA portrait (public domain), as shipped by scikit-image "
                   "(skimage.data.astronaut)")

# Mediapipe face-mesh eyelid contours, paired upper/lower point by point from the outer to the inner
# corner, and the ring of points above each upper lid (the lid's skin, which follows it halfway).
# "left" is the subject's left eye (the image's right side).
_UPPER_LID = {"left": [466, 388, 387, 386, 385, 384, 398], "right": [246, 161, 160, 159, 158, 157, 173]}
_LOWER_LID = {"left": [249, 390, 373, 374, 380, 381, 382], "right": [7, 163, 144, 145, 153, 154, 155]}
_ABOVE_LID = {"left": [467, 260, 259, 257, 258, 286, 414], "right": [247, 30, 29, 27, 28, 56, 190]}
_MESH_POINTS = 468  # the irises (468-477) stay out of the warp: a closing lid covers them
_LID_MEET = 0.8  # where closed lids meet, as a fraction of the way from the upper to the lower lid
_OUTER_CORNER = {"left": 263, "right": 33}
_INNER_CORNER = {"left": 362, "right": 133}
_LASH_COLOUR = (40, 28, 24)
_LASH_WIDTH = 0.1  # of the eye's width
_LID_GAP = 0.04  # closed lids keep this fraction of the opening, so no mesh triangle folds over


class Closure(BaseModel):
    """One eye closure in the demo clip: which eyes, when, and for how long."""

    eyes: tuple[str, ...] = Field(description="'left' and/or 'right' (the subject's).")
    start: float = Field(ge=0, description="Seconds into the clip when the lids start to close.")
    closed: float = Field(gt=0, description="Seconds the eyes stay fully closed.")
    ramp: float = Field(0.08, gt=0, description="Seconds to close (and to open again).")

    def amount(self, t: float) -> float:
        """How closed the eyes are at time t: 0 open .. 1 closed."""
        rising = (t - self.start) / self.ramp
        falling = (self.start + 2 * self.ramp + self.closed - t) / self.ramp
        return float(np.clip(min(rising, falling), 0.0, 1.0))


class DemoClip(BaseModel):
    """What the demo clip shows."""

    seconds: float = Field(6.0, gt=0, le=60)
    fps: int = Field(25, ge=5, le=60)
    closures: list[Closure] = Field(default_factory=lambda: [
        Closure(eyes=("left", "right"), start=1.0, closed=0.16),
        Closure(eyes=("left", "right"), start=2.6, closed=0.2),
        Closure(eyes=("left",), start=4.2, closed=0.5),
    ])


def portrait() -> np.ndarray:
    """The portrait as an HxWx3 uint8 RGB array, read from the installed scikit-image."""
    try:
        from skimage import data
    except ImportError as exc:
        raise FacetrackError("the demo portrait comes with scikit-image: pip install scikit-image") from exc
    return np.ascontiguousarray(data.astronaut()[..., :3])


def _portrait_landmarks(image: np.ndarray) -> np.ndarray:
    """(478, 2) pixel landmarks of the portrait's face, from the tracker's own landmark engine."""
    from facetrack.engines.landmarks import make_landmark_engine
    from facetrack.tracker.config import TrackerConfig

    engine = make_landmark_engine(TrackerConfig(), still_images=True)
    try:
        faces = engine.process(image)
    finally:
        engine.close()
    if not faces:
        raise FacetrackError("no face found in the demo portrait")
    return faces[0].landmarks[:, :2].astype(np.float64)


def _lid_targets(points: np.ndarray, closure: dict[str, float]) -> np.ndarray:
    """The mesh points with each eye's lids moved toward the line where they meet, by its closure."""
    moved = points.copy()
    for eye, amount in closure.items():
        upper, lower, above = _UPPER_LID[eye], _LOWER_LID[eye], _ABOVE_LID[eye]
        opening = points[lower] - points[upper]
        shift_up = amount * (_LID_MEET - _LID_GAP / 2) * opening
        moved[upper] = points[upper] + shift_up
        moved[above] = points[above] + 0.6 * shift_up
        moved[lower] = points[lower] - amount * (1 - _LID_MEET - _LID_GAP / 2) * opening
    return moved


def _warp_lids(image: np.ndarray, points: np.ndarray, closure: dict[str, float]) -> np.ndarray:
    """The image with its eyelids closed by `closure`: a piecewise-affine backward map on a fixed
    triangulation of the mesh, evaluated in a box around the eyes."""
    import cv2
    from matplotlib.tri import Triangulation
    from scipy.spatial import Delaunay

    if not any(closure.values()):
        return image
    target = _lid_targets(points, closure)
    triangles = Delaunay(points).simplices
    finder = Triangulation(target[:, 0], target[:, 1], triangles).get_trifinder()
    eye_points = np.concatenate([points[_UPPER_LID[e] + _LOWER_LID[e] + _ABOVE_LID[e]] for e in closure])
    pad = 0.5 * max(np.ptp(points[_UPPER_LID[e], 0]) for e in closure)
    x0, y0 = np.maximum(eye_points.min(0) - pad, 0).astype(int)
    x1, y1 = np.minimum(eye_points.max(0) + pad, np.array(image.shape[1::-1]) - 1).astype(int)
    grid_x, grid_y = np.meshgrid(np.arange(x0, x1 + 1, dtype=np.float64), np.arange(y0, y1 + 1, dtype=np.float64))
    found = finder(grid_x, grid_y)
    corners = triangles[np.maximum(found, 0)]  # (h, w, 3) point indices of each pixel's triangle
    a, b, c = (target[corners[..., k]] for k in range(3))
    pixel = np.stack([grid_x, grid_y], -1)
    v0, v1, v2 = b - a, c - a, pixel - a
    det = v0[..., 0] * v1[..., 1] - v0[..., 1] * v1[..., 0]
    det = np.where(np.abs(det) < 1e-9, 1e-9, det)
    u = (v2[..., 0] * v1[..., 1] - v2[..., 1] * v1[..., 0]) / det
    v = (v0[..., 0] * v2[..., 1] - v0[..., 1] * v2[..., 0]) / det
    src = (points[corners[..., 0]] + u[..., None] * (points[corners[..., 1]] - points[corners[..., 0]])
           + v[..., None] * (points[corners[..., 2]] - points[corners[..., 0]]))
    src = np.where((found >= 0)[..., None], src, pixel).astype(np.float32)
    out = image.copy()
    out[y0:y1 + 1, x0:x1 + 1] = cv2.remap(image, src[..., 0], src[..., 1], cv2.INTER_LINEAR,
                                          borderMode=cv2.BORDER_REFLECT)
    return _draw_lashes(out, points, target, closure)


def _draw_lashes(image: np.ndarray, points: np.ndarray, target: np.ndarray, closure: dict[str, float]) -> np.ndarray:
    """The dark line of the lashes where the closing lids meet, fading in with the closure."""
    import cv2

    for eye, amount in closure.items():
        if amount <= 0:
            continue
        lid = target[_LOWER_LID[eye]]
        line = np.vstack([points[_OUTER_CORNER[eye]], lid, points[_INNER_CORNER[eye]]])
        thickness = max(1, round(_LASH_WIDTH * np.ptp(lid[:, 0])))
        layer = image.copy()
        cv2.polylines(layer, [np.round(line * 4).astype(np.int32)], False, _LASH_COLOUR, thickness, cv2.LINE_AA,
                      shift=2)
        image = cv2.addWeighted(layer, amount, image, 1 - amount, 0)
    return image


def _head_motion(t: float, center: tuple[float, float]) -> np.ndarray:
    """A 2x3 similarity for time t: a slow nod of the head in the image plane, a slight sway and zoom."""
    import cv2

    angle = 4.0 * np.sin(2 * np.pi * t / 3.0)
    scale = 1.0 + 0.03 * np.sin(2 * np.pi * t / 4.0)
    matrix = cv2.getRotationMatrix2D(center, angle, scale)
    matrix[0, 2] += 8.0 * np.sin(2 * np.pi * t / 5.0)
    return matrix


def make_demo_clip(path: Path, clip: DemoClip | None = None) -> Path:
    """Write the demo clip (H.264 MP4) to `path` and return it."""
    import av
    import cv2

    clip = clip or DemoClip()
    image = portrait()
    points = _portrait_landmarks(image)[:_MESH_POINTS]
    height, width = image.shape[:2]
    center = (float(points[:, 0].mean()), float(points[:, 1].mean()))
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    with av.open(str(partial), "w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=clip.fps, options={"crf": "20", "preset": "veryfast"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        for index in range(round(clip.seconds * clip.fps)):
            t = index / clip.fps
            closure: dict[str, float] = {}
            for event in clip.closures:
                for eye in event.eyes:
                    closure[eye] = max(closure.get(eye, 0.0), event.amount(t))
            frame = _warp_lids(image, points, closure)
            frame = cv2.warpAffine(frame, _head_motion(t, center), (width, height), borderMode=cv2.BORDER_REPLICATE)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
        container.mux(stream.encode())
    partial.replace(path)
    return path
