"""Overlay drawing: what the tracker saw, drawn over the frame it saw it in.

Pure functions on HxWx3 uint8 RGB numpy images (colours are RGB): the video renderer
(`facetrack render`, `--render`), the live preview and the gallery all draw through
`draw_overlay`, so what an animator checks in one is what the others show.

Layers, each optional (`OverlayStyle`): the mesh (mediapipe's tessellation as a
wireframe, irises, and the fitted model's 68 points) or the 478 points, head axes
projected with the tracker's pinhole camera, the track id at the face, and a panel
per face with pose, eye state (P closed, openness), mouth openness and the main
blendshapes as bars.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import Literal

import cv2
import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, FaceResult, FrameResult, HeadPose

MAIN_BLENDSHAPES: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeBlinkRight", "eyeWideLeft", "eyeWideRight", "browInnerUp", "browDownLeft",
    "browDownRight", "jawOpen", "mouthSmileLeft", "mouthSmileRight", "mouthFunnel", "mouthPucker",
)  # fmt: skip
"""The weights an animator checks first: lids, brows, jaw, smile, rounded lips."""

AXIS_LENGTH_CM = 8.0
"""Drawn length of each head axis (about half a head's width)."""

_MESH_RGB = (200, 235, 255)
_IRIS_RGB = (255, 220, 0)
_POINT_RGB = (0, 255, 170)
_FIT68_RGB = (255, 60, 200)
_AXIS_RGB = ((255, 40, 40), (40, 220, 40), (60, 120, 255))  # x red, y green, z blue
_OPEN_RGB = (60, 220, 90)
_CLOSED_RGB = (255, 60, 60)
_BAR_RGB = (90, 180, 255)
_TEXT_RGB = (255, 255, 255)
_CLOSED_P = 0.5
TOP_ROWS = 3
"""Rows listing the frame's largest non-eye weights."""


@dataclass(frozen=True)
class OverlayStyle:
    """Which layers to draw; the defaults show everything."""

    landmarks: Literal["mesh", "points", "none"] = "mesh"
    axes: bool = True
    labels: bool = True
    panel: bool = True
    blendshapes: tuple[str, ...] = MAIN_BLENDSHAPES
    focal_px: float | None = None
    """The camera the tracker assumed (`--focal-px`); None: the image width, as the tracker's default."""
    mesh_opacity: float = 0.55


@lru_cache(maxsize=1)
def mesh_edges() -> tuple[np.ndarray, np.ndarray]:
    """(tessellation edges, iris edges) of mediapipe's face mesh as (E, 2) index arrays."""
    from mediapipe.python.solutions import face_mesh_connections as connections

    def edges(pairs: frozenset[tuple[int, int]]) -> np.ndarray:
        return np.array(sorted(pairs), dtype=np.int32)

    return edges(connections.FACEMESH_TESSELATION), edges(connections.FACEMESH_IRISES)


def _scale(image: np.ndarray) -> float:
    """Text and line size unit: 1 at 640 px on the long side, so small and 4K frames stay legible."""
    return float(np.clip(max(image.shape[:2]) / 640.0, 0.6, 2.5))


def _segments(image: np.ndarray, points: np.ndarray, edges: np.ndarray, rgb: tuple[int, int, int]) -> None:
    shift = 4  # sub-pixel precision of cv2 line drawing
    pairs = np.round(points[edges, :2] * (1 << shift)).astype(np.int32)
    cv2.polylines(image, list(pairs), False, rgb, 1, cv2.LINE_AA, shift)


def draw_landmarks(image: np.ndarray, face: FaceResult, mode: Literal["mesh", "points"], opacity: float = 0.55) -> None:
    """The mesh wireframe (or the 478 points) blended in, plus the fitted 68 points; in place."""
    points = np.asarray(face.landmarks, dtype=np.float32)
    x0, y0, x1, y1 = _clip_box(face.bbox, image.shape, pad=4)
    if x1 <= x0 or y1 <= y0:
        return
    region = image[y0:y1, x0:x1]
    layer = region.copy()
    local = points[:, :2] - np.array([x0, y0], dtype=np.float32)
    if mode == "mesh":
        tessellation, irises = mesh_edges()
        if len(points) > int(tessellation.max()):
            _segments(layer, local, tessellation, _MESH_RGB)
        if len(points) > int(irises.max()):
            _segments(layer, local, irises, _IRIS_RGB)
    else:
        for x, y in np.round(local).astype(int):
            cv2.circle(layer, (int(x), int(y)), 1, _POINT_RGB, -1, cv2.LINE_AA)
    cv2.addWeighted(layer, opacity, region, 1.0 - opacity, 0.0, dst=region)
    if face.landmarks68 is not None:
        radius = max(1, round(_scale(image) * 1.5))
        for x, y in np.round(np.asarray(face.landmarks68)[:, :2]).astype(int):
            cv2.circle(image, (int(x), int(y)), radius, _FIT68_RGB, -1, cv2.LINE_AA)


def _clip_box(bbox: tuple[float, float, float, float], shape: tuple[int, ...], pad: int) -> tuple[int, int, int, int]:
    height, width = shape[:2]
    x0, y0, x1, y1 = bbox
    return (max(0, int(x0) - pad), max(0, int(y0) - pad), min(width, int(np.ceil(x1)) + pad + 1),
            min(height, int(np.ceil(y1)) + pad + 1))


def rotation_matrix(pose: HeadPose) -> np.ndarray:
    """(3, 3) head-to-camera rotation from the pose's (x, y, z, w) quaternion."""
    x, y, z, w = pose.rotation
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip


def project_points(points_cm: np.ndarray, image_size: tuple[int, int], focal_px: float | None = None) -> np.ndarray:
    """Camera-frame points (cm; x right, y up, z toward the viewer) to pixels, by the tracker's pinhole.

    Principal point at the image centre, focal length the image width unless given:
    the camera `tracker/stages/pose.py` and the fitter assume.
    """
    width, height = image_size
    focal = float(focal_px or width)
    p = np.atleast_2d(np.asarray(points_cm, dtype=np.float64))
    depth = np.maximum(-p[:, 2], 1e-6)
    return np.column_stack([width / 2 + focal * p[:, 0] / depth, height / 2 - focal * p[:, 1] / depth])


def head_axes(pose: HeadPose, image_size: tuple[int, int], focal_px: float | None = None,
              length_cm: float = AXIS_LENGTH_CM) -> np.ndarray:
    """(4, 2) pixels: the head centre, then the tips of its x (subject's left), y (up) and z (out) axes."""
    centre = np.asarray(pose.translation, dtype=np.float64)
    tips = centre + length_cm * rotation_matrix(pose).T
    return project_points(np.vstack([centre, tips]), image_size, focal_px)


def draw_axes(image: np.ndarray, pose: HeadPose, focal_px: float | None = None) -> None:
    """Head axes at the head centre (x red, y green, z blue); in place."""
    height, width = image.shape[:2]
    if pose.translation[2] >= 0:  # behind the camera: nothing sensible to project
        return
    points = head_axes(pose, (width, height), focal_px)
    if not np.isfinite(points).all():
        return
    thickness = max(2, round(2 * _scale(image)))
    origin = tuple(int(v) for v in np.round(points[0]))
    for tip, rgb in zip(points[1:], _AXIS_RGB, strict=True):
        cv2.arrowedLine(image, origin, tuple(int(v) for v in np.round(tip)), rgb, thickness, cv2.LINE_AA,
                        tipLength=0.15)


def _text(image: np.ndarray, text: str, at: tuple[int, int], unit: float, rgb: tuple[int, int, int] = _TEXT_RGB,
          size: float = 1.0) -> None:
    scale = 0.42 * unit * size
    cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), max(2, round(3 * unit)), cv2.LINE_AA)
    cv2.putText(image, text, at, cv2.FONT_HERSHEY_SIMPLEX, scale, rgb, max(1, round(unit)), cv2.LINE_AA)


def draw_label(image: np.ndarray, face: FaceResult) -> None:
    """The track id above the face box; in place."""
    unit = _scale(image)
    x0, y0 = int(face.bbox[0]), int(face.bbox[1])
    _text(image, f"#{face.track_id}", (max(0, x0), max(int(14 * unit), y0 - int(6 * unit))), unit, size=1.2)


def panel_rows(face: FaceResult, names: tuple[str, ...]) -> int:
    """Rows of text and bars `draw_panel` uses for this face (lays out stacked panels)."""
    return 4 + (len(names) + TOP_ROWS if face.blendshapes is not None else 1)


def draw_panel(image: np.ndarray, face: FaceResult, origin: tuple[int, int],
               names: tuple[str, ...] = MAIN_BLENDSHAPES) -> int:
    """Pose, eye state, mouth and blendshape bars in a translucent box at `origin`; returns its height."""
    unit = _scale(image)
    row = round(15 * unit)
    width = round(205 * unit)
    rows = panel_rows(face, names)
    x0, y0 = origin
    x1, y1 = min(image.shape[1], x0 + width), min(image.shape[0], y0 + rows * row + row // 2)
    if x1 <= x0 or y1 <= y0:
        return 0
    box = image[y0:y1, x0:x1]
    box[:] = (box.astype(np.uint16) * 2 // 5).astype(np.uint8)  # darken: text stays readable on any frame
    pad = round(5 * unit)

    def baseline(i: int) -> int:
        return y0 + (i + 1) * row
    pose = face.pose
    _text(image, f"#{face.track_id}  yaw {pose.yaw:+.0f} pitch {pose.pitch:+.0f} roll {pose.roll:+.0f}",
          (x0 + pad, baseline(0)), unit)
    for i, (side, eye) in enumerate((("L", face.eyes.left if face.eyes else None),
                                     ("R", face.eyes.right if face.eyes else None)), start=1):
        _eye_row(image, side, eye.p_closed if eye else None, eye.openness if eye else None,
                 (x0 + pad, baseline(i)), unit)
    mouth = "-" if face.mouth_openness is None else f"{face.mouth_openness:.2f}"
    _text(image, f"mouth open {mouth}", (x0 + pad, baseline(3)), unit)
    weights = face.blendshape_dict()
    if not weights:
        _text(image, "no blendshapes (--model none)", (x0 + pad, baseline(4)), unit, size=0.9)
        return y1 - y0
    label_width = round(105 * unit)
    for i, name in enumerate(names, start=4):
        value = float(np.clip(weights.get(name, 0.0), 0.0, 1.0))
        _text(image, name, (x0 + pad, baseline(i)), unit, size=0.85)
        bx0, by1 = x0 + pad + label_width, baseline(i)
        bx1, by0 = x1 - pad, by1 - round(9 * unit)
        cv2.rectangle(image, (bx0, by0), (bx1, by1), (90, 90, 90), 1)
        cv2.rectangle(image, (bx0, by0), (bx0 + round((bx1 - bx0) * value), by1), _BAR_RGB, -1)
    # what this frame says most, whichever shapes those are (the bars above are a fixed set)
    top = sorted(((v, n) for n, v in weights.items() if not n.startswith("eye")), reverse=True)[:TOP_ROWS]
    for k, (v, n) in enumerate(top):
        _text(image, f"top {k + 1}: {n} {v:.2f}" if v >= 0.05 else f"top {k + 1}: -",
              (x0 + pad, baseline(4 + len(names) + k)), unit, size=0.85)
    return y1 - y0


def _eye_row(image: np.ndarray, side: str, p_closed: float | None, openness: float | None,
             at: tuple[int, int], unit: float) -> None:
    """`eye L P 0.02 open 0.97` with a dot that turns red when the eye counts as closed."""
    x, y = at
    closed = p_closed is not None and p_closed >= _CLOSED_P
    rgb = _CLOSED_RGB if closed else _OPEN_RGB if p_closed is not None else (150, 150, 150)
    radius = round(4 * unit)
    cv2.circle(image, (x + radius, y - radius), radius, rgb, -1, cv2.LINE_AA)
    p = "-" if p_closed is None else f"{p_closed:.2f}"
    o = "-" if openness is None else f"{openness:.2f}"
    _text(image, f"eye {side}  P closed {p}  open {o}", (x + 3 * radius, y), unit, rgb if closed else _TEXT_RGB)


def draw_events(image: np.ndarray, result: FrameResult) -> None:
    """Blinks and winks that ended on this frame, top right; in place."""
    if not result.eye_events:
        return
    unit = _scale(image)
    text = "  ".join(f"#{e.track_id} {e.kind.replace('_', ' ')}" for e in result.eye_events)
    (w, _), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.42 * unit * 1.3, max(1, round(unit)))
    _text(image, text, (max(0, image.shape[1] - w - int(8 * unit)), int(22 * unit)), unit, _CLOSED_RGB, size=1.3)


def draw_overlay(image: np.ndarray, result: FrameResult | None, style: OverlayStyle | None = None) -> np.ndarray:
    """A copy of `image` with `result` drawn over it (no result: an unchanged copy)."""
    style = style or OverlayStyle()
    out = np.ascontiguousarray(image, dtype=np.uint8).copy()
    if result is None:
        return out
    if style.panel:  # first: the face layers stay visible where a panel overlaps the face
        top = 0
        for face in result.faces:
            top += draw_panel(out, face, (0, top), style.blendshapes)
    for face in result.faces:
        if style.landmarks != "none":
            draw_landmarks(out, face, style.landmarks, style.mesh_opacity)
        if style.axes and face.pose is not None:
            draw_axes(out, face.pose, style.focal_px)
        if style.labels:
            draw_label(out, face)
    if style.labels:
        draw_events(out, result)
    return out


def blendshape_values(face: FaceResult) -> dict[str, float]:
    """All 52 weights by name, 0 where not fitted: what the preview page's bars show."""
    weights = face.blendshape_dict()
    return {name: float(weights.get(name, 0.0)) for name in ARKIT_BLENDSHAPES}
