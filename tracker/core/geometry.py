"""Small, pure box geometry shared by the engines and the track assigner."""

from __future__ import annotations

import numpy as np


def landmark_box(points: np.ndarray) -> np.ndarray:
    """(4,) x0, y0, x1, y1 enclosing the points' x, y."""
    xy = points[:, :2]
    return np.concatenate([xy.min(axis=0), xy.max(axis=0)])


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) intersection over union of x0, y0, x1, y1 boxes."""
    a = np.asarray(a, np.float64).reshape(-1, 4)[:, None, :]
    b = np.asarray(b, np.float64).reshape(-1, 4)[None, :, :]
    wh = np.clip(np.minimum(a[..., 2:], b[..., 2:]) - np.maximum(a[..., :2], b[..., :2]), 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area = lambda box: (box[..., 2] - box[..., 0]) * (box[..., 3] - box[..., 1])  # noqa: E731
    union = area(a) + area(b) - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
