"""Landmark label files: iBUG `.pts`, AFLW2000-3D `.mat`, 478-point `.npy`, and images paired with them.

Coordinates are kept as the files write them. iBUG `.pts` (300W, menpo) and AFLW2000-3D
come from MATLAB tools and are 1-based: the top-left pixel's centre is (1, 1), so they sit
0.5 to 1 px right of and below 0-based pixel coordinates. That is below the annotation
noise and the same for every image, so the data builders use them unchanged.

A 478-point label is a mediapipe face mesh (x, y in pixels, optionally z in the same
scale); `to_ibug68` maps it to the 68 iBUG points the way the built-in model embeds them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facetrack.tracker.core.schema import LANDMARK_COUNT
from facetrack.tracker.facemodel.builtin_rig import ibug68_from_478

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm", ".tif", ".tiff", ".webp")


def read_pts(path: str | Path) -> np.ndarray:
    """An iBUG `.pts` file -> (N, 2) float32 as written (1-based pixels, see the module docstring)."""
    path = Path(path)
    text = path.read_text(errors="replace")
    head, brace, rest = text.partition("{")
    body, close, _ = rest.partition("}")
    if not brace or not close:
        raise ValueError(f"{path}: not an iBUG .pts file (expected 'version', 'n_points' and points in {{ }})")
    header = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in head.splitlines())}
    if not header.get("n_points", "").isdigit():
        raise ValueError(f"{path}: the header has no 'n_points: N' line")
    n = int(header["n_points"])
    rows = [line.split() for line in body.splitlines() if line.strip()]
    if len(rows) != n:
        raise ValueError(f"{path}: n_points says {n} but the braces hold {len(rows)} point lines")
    bad = next((i for i, r in enumerate(rows) if len(r) != 2), None)
    if bad is not None:
        raise ValueError(f"{path}: point {bad + 1} has {len(rows[bad])} values; expected one 'x y' line per point")
    try:
        pts = np.array(rows, np.float64)
    except ValueError as exc:
        raise ValueError(f"{path}: a point is not a number ({exc})") from None
    if not np.isfinite(pts).all():
        raise ValueError(f"{path}: a point is not finite")
    return pts.astype(np.float32)


def _loadmat(path: Path, names: list[str]) -> dict:
    from scipy.io import loadmat

    try:
        m = loadmat(str(path), variable_names=names)  # MATLAB data only: no pickles
    except (OSError, ValueError, NotImplementedError) as exc:
        raise ValueError(f"{path}: cannot read as a MATLAB v5/v7 file ({exc})") from exc
    missing = [k for k in names if k not in m]
    if missing:
        raise ValueError(f"{path}: no {', '.join(missing)} in the file (is it an AFLW2000-3D label?)")
    return m


def read_aflw2000_mat(path: str | Path) -> np.ndarray:
    """An AFLW2000-3D `.mat` -> (68, 2) float32: the x, y rows of `pt3d_68` (image pixels, 1-based).

    `pt3d_68` is the fitted 3D face's landmarks projected to the image, so it follows
    the jaw's 3D position on profile faces; the re-annotated 2D `.pts` (when present)
    follow the visible outline instead.
    """
    path = Path(path)
    p = np.asarray(_loadmat(path, ["pt3d_68"])["pt3d_68"], np.float64)
    if p.shape != (3, 68) and p.shape != (2, 68):
        raise ValueError(f"{path}: pt3d_68 has shape {p.shape}, expected (3, 68)")
    return p[:2].T.astype(np.float32)


def read_aflw2000_pose(path: str | Path) -> np.ndarray:
    """AFLW2000-3D's head pose: (pitch, yaw, roll) in degrees from `Pose_Para` (each of the opposite sign
    to `facetrack.tracker.stages.pose`'s angles)."""
    path = Path(path)
    p = np.asarray(_loadmat(path, ["Pose_Para"])["Pose_Para"], np.float64).ravel()
    if p.size < 3:
        raise ValueError(f"{path}: Pose_Para has {p.size} values, expected 7")
    return np.degrees(p[:3]).astype(np.float32)


def read_landmarks(path: str | Path) -> np.ndarray:
    """Any supported label file -> (N, 2) or (N, 3) float32: `.pts`, AFLW2000-3D `.mat`, or `.npy` (no pickles)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".pts":
        return read_pts(path)
    if suffix == ".mat":
        return read_aflw2000_mat(path)
    if suffix == ".npy":
        try:
            pts = np.load(path, allow_pickle=False)
        except (OSError, ValueError) as exc:
            raise ValueError(f"{path}: not a readable .npy array ({exc})") from exc
        if pts.ndim != 2 or pts.shape[1] not in (2, 3) or not np.issubdtype(pts.dtype, np.number):
            raise ValueError(f"{path}: shape {pts.shape} ({pts.dtype}); expected (N, 2) or (N, 3) numbers")
        if not np.isfinite(pts).all():
            raise ValueError(f"{path}: a point is not finite")
        return pts.astype(np.float32)
    raise ValueError(f"{path}: unknown label format {suffix!r} (expected .pts, .mat or .npy)")


def to_ibug68(landmarks: np.ndarray) -> np.ndarray:
    """A 68- or 478-point label -> its (68, 2) iBUG points."""
    n = len(landmarks)
    if n == 68:
        return np.asarray(landmarks, np.float32)[:, :2]
    if n == LANDMARK_COUNT:
        return ibug68_from_478(landmarks)
    raise ValueError(f"{n} points: expected 68 (iBUG) or {LANDMARK_COUNT} (mediapipe face mesh)")


def label_candidates(image: Path) -> list[Path]:
    """Where an image's label may be, best first: `STEM.pts`, AFLW2000-3D's re-annotated
    `labels/STEM_reannotated2d.pts`, `STEM.npy`, then AFLW2000-3D's fitted `STEM.mat`."""
    return [image.with_suffix(".pts"), image.parent / "labels" / f"{image.stem}_reannotated2d.pts",
            image.with_suffix(".npy"), image.with_suffix(".mat")]


@dataclass
class LabelledFolder:
    """Images of a folder (searched recursively) with their label file, and those without one."""

    root: Path
    pairs: list[tuple[Path, Path]] = field(default_factory=list)
    unlabelled: list[Path] = field(default_factory=list)


def pair_images(folder: str | Path) -> LabelledFolder:
    """Pair every image under `folder` with its first existing `label_candidates` file."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"{folder} is not a folder")
    out = LabelledFolder(folder)
    for image in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()):
        label = next((c for c in label_candidates(image) if c.is_file()), None)
        if label is None:
            out.unlabelled.append(image)
        else:
            out.pairs.append((image, label))
    return out
