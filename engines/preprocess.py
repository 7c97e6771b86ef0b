"""Crop, warp and normalise a batch of rotated regions of one image: OpenCV on the CPU, CuPy on a GPU.

A region is a 2x3 affine `A` taking output pixel centres (u, v, 1) to image pixel
coordinates (OpenCV's convention: integer = pixel centre). Both paths sample bilinearly
with the border replicated, as mediapipe's ImageToTensorCalculator does, and map 0..255
linearly onto [lo, hi].
"""

from __future__ import annotations

import functools

import cv2
import numpy as np


@functools.cache
def cupy_usable() -> bool:
    """CuPy imports and sees a device (its `is_available()` raises, not returns False, without a driver)."""
    try:
        import cupy

        return bool(cupy.cuda.is_available())
    except Exception:
        return False


def crop_batch_cpu(image: np.ndarray, affines: np.ndarray, size: int, lo: float, hi: float) -> np.ndarray:
    """(N, size, size, 3) float32 crops of an HxWx3 uint8 image."""
    out = np.empty((len(affines), size, size, 3), np.float32)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    for i, a in enumerate(affines):
        out[i] = cv2.warpAffine(image, a, (size, size), flags=flags, borderMode=cv2.BORDER_REPLICATE)
    out *= (hi - lo) / 255.0
    out += lo
    return out


def crop_batch_xp(image, affines: np.ndarray, size: int, lo: float, hi: float, xp=np):
    """The same crops with array operations only (`xp` = numpy or cupy): one gather for the whole batch."""
    img = xp.asarray(image).astype(xp.float32)
    h, w = img.shape[:2]
    a = xp.asarray(affines, dtype=xp.float32)
    grid = xp.arange(size, dtype=xp.float32)
    u, v = xp.meshgrid(grid, grid)
    x = a[:, 0, 0, None, None] * u + a[:, 0, 1, None, None] * v + a[:, 0, 2, None, None]
    y = a[:, 1, 0, None, None] * u + a[:, 1, 1, None, None] * v + a[:, 1, 2, None, None]
    x = xp.clip(x, 0, w - 1)
    y = xp.clip(y, 0, h - 1)
    x0 = xp.minimum(xp.floor(x), w - 2).astype(xp.int32)
    y0 = xp.minimum(xp.floor(y), h - 2).astype(xp.int32)
    fx = (x - x0)[..., None]
    fy = (y - y0)[..., None]
    top = img[y0, x0] * (1 - fx) + img[y0, x0 + 1] * fx
    bottom = img[y0 + 1, x0] * (1 - fx) + img[y0 + 1, x0 + 1] * fx
    return (top * (1 - fy) + bottom * fy) * ((hi - lo) / 255.0) + lo


def crop_batch(image: np.ndarray, affines: np.ndarray, size: int, lo: float, hi: float,
               device: str = "cpu") -> np.ndarray:
    """Crops on the CPU, or on the GPU when `device == 'gpu'` (returned as a CuPy array there)."""
    if device == "gpu":
        import cupy

        return crop_batch_xp(image, affines, size, lo, hi, xp=cupy)
    return crop_batch_cpu(image, affines, size, lo, hi)
