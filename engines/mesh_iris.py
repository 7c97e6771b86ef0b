"""Landmarks without mediapipe's graph runtime: the wheel's plain mesh + iris models, batched across faces.

mediapipe's own graph runs `face_landmark_with_attention.tflite`, which needs mediapipe's
custom ops. This engine runs the plain models of the same wheel, either as they are under
LiteRT (`ai-edge-litert`, runtime "litert") or as their ONNX conversions on any of our
backends (runtime "onnx": ONNX Runtime CPU/CUDA, TensorRT; see engines/builds.py), and
rebuilds what the graph does around them:

- `face_detection_short_range.tflite` (128x128, letterboxed) only while fewer faces than
  `max_faces` are tracked, SSD anchors, weighted NMS;
- a face ROI from the detection (eye keypoints give the roll) or, in video mode, from the
  previous frame's landmarks (box of the mesh, roll from landmarks 33->263, x1.5, square);
- `face_landmark.tflite` (192x192, 468 points and a face-presence score) on all ROIs in one batch;
- `iris_landmark.tflite` (64x64) on both eyes of every face in one batch (eye ROI from the eye
  corners, x2.3, one eye mirrored): 71 eye-contour points replace the mesh's eye region
  (x, y; the mesh keeps z) and 5 iris points per eye become points 468-477, their depth
  the mean of the eye's 16 lid points, as mediapipe's refinement does.

Model files are loaded from the installed mediapipe package and checked against the sha256
of mediapipe 0.10.21's files (`litert.MEDIAPIPE_MODELS`).
"""

from __future__ import annotations

import functools
import math
import os
from typing import Literal, Protocol

import numpy as np

from facetrack.engines.backends import BackendName
from facetrack.engines.base import DetectedFace
from facetrack.engines.litert import LiteRTModel, mediapipe_model
from facetrack.engines.preprocess import crop_batch

FACE_SIZE, IRIS_SIZE, DETECTOR_SIZE = 192, 64, 128

# Mesh indices of the 71 eye-contour points the iris model outputs, per eye, in its output order
# (mediapipe's UpdateFaceLandmarksCalculator / the attention mesh's refinement mapping).
EYE_A = np.array([
    33, 7, 163, 144, 145, 153, 154, 155, 133, 246, 161, 160, 159, 158, 157, 173,
    130, 25, 110, 24, 23, 22, 26, 112, 243, 247, 30, 29, 27, 28, 56, 190,
    226, 31, 228, 229, 230, 231, 232, 233, 244, 113, 225, 224, 223, 222, 221, 189,
    35, 124, 46, 53, 52, 65, 143, 111, 117, 118, 119, 120, 121, 128, 245,
    156, 70, 63, 105, 66, 107, 55, 193,
])
EYE_B = np.array([
    263, 249, 390, 373, 374, 380, 381, 382, 362, 466, 388, 387, 386, 385, 384, 398,
    359, 255, 339, 254, 253, 252, 256, 341, 463, 467, 260, 259, 257, 258, 286, 414,
    446, 261, 448, 449, 450, 451, 452, 453, 464, 342, 445, 444, 443, 442, 441, 413,
    265, 353, 276, 283, 282, 295, 372, 340, 346, 347, 348, 349, 350, 357, 465,
    383, 300, 293, 334, 296, 336, 285, 417,
])
# Eye corners (ROI of the iris model): eye A's iris becomes points 468-472, eye B's 473-477.
CORNERS_A, CORNERS_B = (33, 133), (362, 263)
ROLL_POINTS = (33, 263)
# The mirrored eye's iris points come back in mirrored order; mediapipe lists both irises in image order.
_MIRRORED_IRIS_ORDER = np.array([0, 3, 2, 1, 4])
_LID_POINTS = 16


class OnnxModel:
    """A converted model on one of our backends, fed NHWC batches like its TFLite original."""

    def __init__(self, name: str, backend: BackendName, threads: int = 1, max_batch: int = 256) -> None:
        from facetrack.engines.backends import open_network
        from facetrack.engines.builds import convert_tflite

        self.network = open_network(convert_tflite(name), backend, threads=threads, max_batch=max_batch)

    def run(self, batch) -> list[np.ndarray]:
        """(N, K) outputs; a CuPy batch stays on the device for TensorRT."""
        if not isinstance(batch, np.ndarray) and self.network.backend != "tensorrt":
            batch = batch.get()
        outputs = self.network.infer(batch.transpose(0, 3, 1, 2))
        return [o.reshape(len(batch), -1) for o in outputs]


class _Model(Protocol):
    """LiteRTModel or OnnxModel: an NHWC batch in, (N, K) outputs out."""

    def run(self, batch) -> list[np.ndarray]:
        """Outputs in the TFLite model's order."""


# --- rotated rectangles: (cx, cy, w, h, theta) in image pixels ---

def rect_affine(rect: np.ndarray, size: int, mirror: bool = False) -> np.ndarray:
    """2x3 map from a size x size crop's pixels to image pixels, as mediapipe's ImageToTensorCalculator
    samples: crop pixel u at u/size across the rect, image coordinates are pixel indices (checked
    against mediapipe's graph running the same plain mesh: 0.44 px mean difference, no bias)."""
    cx, cy, w, h, theta = rect
    if mirror:
        w = -w
    c, s = math.cos(theta), math.sin(theta)
    a, b = w / size, h / size
    off = -size / 2
    return np.array([[c * a, -s * b, cx + (c * a - s * b) * off],
                     [s * a, c * b, cy + (s * a + c * b) * off]], np.float32)


def project(points: np.ndarray, rect: np.ndarray, size: int, mirror: bool = False) -> np.ndarray:
    """(K, 3) points in crop pixels to image pixels; z scales like x."""
    cx, cy, w, h, theta = rect
    if mirror:
        w = -w
    c, s = math.cos(theta), math.sin(theta)
    u = (points[:, 0] / size - 0.5) * w
    v = (points[:, 1] / size - 0.5) * h
    out = np.empty_like(points, dtype=np.float32)
    out[:, 0] = cx + c * u - s * v
    out[:, 1] = cy + s * u + c * v
    out[:, 2] = points[:, 2] * abs(w) / size
    return out


def roi(box: np.ndarray, start: np.ndarray, end: np.ndarray, scale: float) -> np.ndarray:
    """mediapipe's DetectionsToRects + RectTransformation: axis-aligned box, roll from start->end, scaled, square."""
    x0, y0, x1, y1 = box
    theta = math.atan2(float(end[1] - start[1]), float(end[0] - start[0]))
    side = max(x1 - x0, y1 - y0) * scale
    return np.array([(x0 + x1) / 2, (y0 + y1) / 2, side, side, theta], np.float64)


def points_roi(points: np.ndarray, start: int, end: int, scale: float) -> np.ndarray:
    xy = points[:, :2]
    box = np.array([*xy.min(axis=0), *xy.max(axis=0)])
    return roi(box, xy[start], xy[end], scale)


def _rect_iou(a: np.ndarray, b: np.ndarray) -> float:
    """IoU of the axis-aligned boxes of two rects (mediapipe's association ignores the roll too)."""
    ax0, ay0, ax1, ay1 = a[0] - a[2] / 2, a[1] - a[3] / 2, a[0] + a[2] / 2, a[1] + a[3] / 2
    bx0, by0, bx1, by1 = b[0] - b[2] / 2, b[1] - b[3] / 2, b[0] + b[2] / 2, b[1] + b[3] / 2
    iw, ih = max(0.0, min(ax1, bx1) - max(ax0, bx0)), max(0.0, min(ay1, by1) - max(ay0, by0))
    inter = iw * ih
    return inter / max(a[2] * a[3] + b[2] * b[3] - inter, 1e-9)


# --- the short-range face detector ---

@functools.cache
def _anchors() -> np.ndarray:
    """(896, 2) anchor centres of the short-range detector (SSD, strides 8, 16x3, fixed size)."""
    centres = []
    for grid, per_cell in ((16, 2), (8, 6)):
        ys, xs = np.meshgrid((np.arange(grid) + 0.5) / grid, (np.arange(grid) + 0.5) / grid, indexing="ij")
        centres.append(np.repeat(np.stack([xs.ravel(), ys.ravel()], 1), per_cell, axis=0))
    return np.concatenate(centres).astype(np.float32)


def _box_iou(box: np.ndarray, boxes: np.ndarray) -> np.ndarray:
    iw = np.clip(np.minimum(box[2], boxes[:, 2]) - np.maximum(box[0], boxes[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], boxes[:, 3]) - np.maximum(box[1], boxes[:, 1]), 0, None)
    inter = iw * ih
    area = (box[2] - box[0]) * (box[3] - box[1]) + (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    return inter / np.maximum(area - inter, 1e-9)


def decode_detections(regressors: np.ndarray, logits: np.ndarray, min_score: float,
                      overlap: float = 0.3) -> list[tuple[np.ndarray, np.ndarray, float]]:
    """(box x0,y0,x1,y1; (6, 2) keypoints; score) in the detector's unit square, after weighted NMS."""
    scores = 1 / (1 + np.exp(-np.clip(logits.reshape(-1).astype(np.float64), -100, 100)))
    keep = np.flatnonzero(scores >= min_score)
    if not len(keep):
        return []
    raw = regressors.reshape(-1, 16)[keep] / DETECTOR_SIZE
    anchors = _anchors()[keep]
    centre = raw[:, :2] + anchors
    half = raw[:, 2:4] / 2
    boxes = np.concatenate([centre - half, centre + half], axis=1)
    keypoints = raw[:, 4:].reshape(-1, 6, 2) + anchors[:, None, :]
    scores = scores[keep]
    order = np.argsort(-scores)
    found = []
    while len(order):
        ious = _box_iou(boxes[order[0]], boxes[order])
        group = order[ious > overlap]
        weights = scores[group][:, None]
        box = (boxes[group] * weights).sum(0) / weights.sum()
        kps = (keypoints[group] * weights[:, :, None]).sum(0) / weights.sum()
        found.append((box, kps, float(scores[order[0]])))
        order = order[ious <= overlap]
    return found


class FaceMeshIris:
    """478 landmarks (mesh + irises) from the plain mesh and iris models, faces batched."""

    def __init__(self, max_faces: int = 1, min_detection_confidence: float = 0.5,
                 min_tracking_confidence: float = 0.5, static_images: bool = False, threads: int = 1,
                 runtime: Literal["litert", "onnx"] = "litert", backend: BackendName = "auto",
                 device: str = "cpu") -> None:
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        self.name = f"{runtime}-facemesh"
        self.max_faces = max_faces
        self.min_detection = min_detection_confidence
        self.min_tracking = min_tracking_confidence
        self.static_images = static_images
        self.device = device
        models: list[_Model] = [
            LiteRTModel(mediapipe_model(name), threads) if runtime == "litert"
            else OnnxModel(name, backend, threads, max_batch=max(2 * max_faces, 2))
            for name in ("face_detection_short_range", "face_landmark", "iris_landmark")
        ]
        self._detector, self._mesh, self._iris = models
        self._tracked: list[np.ndarray] = []

    def detect(self, image: np.ndarray) -> list[tuple[np.ndarray, float]]:
        """Face ROIs (rect, score) from the detector, best first, at most max_faces."""
        h, w = image.shape[:2]
        side = float(max(w, h))
        square = np.array([w / 2, h / 2, side, side, 0.0])
        crop = crop_batch(image, rect_affine(square, DETECTOR_SIZE)[None], DETECTOR_SIZE, -1.0, 1.0)
        regressors, logits = self._detector.run(crop)
        rois = []
        for box, kps, score in decode_detections(regressors, logits, self.min_detection)[: self.max_faces]:
            corners = project(np.c_[box.reshape(2, 2) * DETECTOR_SIZE, np.zeros(2)], square, DETECTOR_SIZE)
            eyes = project(np.c_[kps[:2] * DETECTOR_SIZE, np.zeros(2)], square, DETECTOR_SIZE)
            rois.append((roi(corners[:, :2].ravel(), eyes[0], eyes[1], 1.5), score))
        return rois

    def landmarks(self, image: np.ndarray, rects: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
        """(F, 478, 3) points and (F,) face-presence scores for face ROIs, all faces in one batch per model."""
        crops = crop_batch(image, np.stack([rect_affine(r, FACE_SIZE) for r in rects]), FACE_SIZE, 0.0, 1.0,
                           self.device)
        raw, flag = self._mesh.run(crops)
        presence = 1 / (1 + np.exp(-flag.reshape(-1).astype(np.float64)))
        mesh = [project(raw[i].reshape(468, 3), r, FACE_SIZE) for i, r in enumerate(rects)]
        eye_rects = []
        for points in mesh:
            for a, b in (CORNERS_A, CORNERS_B):
                eye_rects.append(points_roi(points[[a, b]], 0, 1, 2.3))
        mirrors = [False, True] * len(mesh)
        affines = np.stack([rect_affine(r, IRIS_SIZE, m) for r, m in zip(eye_rects, mirrors)])
        contours, irises = self._iris.run(crop_batch(image, affines, IRIS_SIZE, 0.0, 1.0, self.device))
        out = np.empty((len(mesh), 478, 3), np.float32)
        for i, points in enumerate(mesh):
            out[i, :468] = points
            for e, (index, first_iris) in enumerate(((EYE_A, 468), (EYE_B, 473))):
                k = 2 * i + e
                contour = project(contours[k].reshape(71, 3), eye_rects[k], IRIS_SIZE, mirrors[k])
                iris = project(irises[k].reshape(5, 3), eye_rects[k], IRIS_SIZE, mirrors[k])
                if mirrors[k]:
                    iris = iris[_MIRRORED_IRIS_ORDER]
                out[i, index, :2] = contour[:, :2]
                out[i, first_iris:first_iris + 5, :2] = iris[:, :2]
                out[i, first_iris:first_iris + 5, 2] = points[index[:_LID_POINTS], 2].mean()
        return out, presence

    def process(self, image: np.ndarray) -> list[DetectedFace]:
        rects: list[tuple[np.ndarray, float | None]] = [] if self.static_images else [
            (r, None) for r in self._tracked]
        if len(rects) < self.max_faces:
            for rect, score in self.detect(image):
                if len(rects) < self.max_faces and all(_rect_iou(rect, r) < 0.5 for r, _ in rects):
                    rects.append((rect, score))
        if not rects:
            self._tracked = []
            return []
        points, presence = self.landmarks(image, [r for r, _ in rects])
        faces = [DetectedFace(points[i], score) for i, (_, score) in enumerate(rects)
                 if presence[i] >= self.min_tracking]
        self._tracked = [points_roi(f.landmarks, *ROLL_POINTS, 1.5) for f in faces]
        return faces

    def close(self) -> None:
        self._tracked = []

    def __enter__(self) -> FaceMeshIris:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
