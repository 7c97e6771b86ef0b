"""Labelled image folders -> the recipes' `npz` data source (aligned square crops + landmarks).

Each labelled image (`landmark_files.pair_images`) is cut by `distil.crop_face` around its 68
iBUG points, so image and video data are aligned alike. The npz holds `images` (N, S, S, 3)
uint8, `landmarks` (N, 68, 2) float32 in crop pixels, `files` (N,) the images' paths
relative to the folder, and `landmarks478` (N, 478, 3: x, y in crop pixels, z in the same
scale or 0) when every label is a 478-point mesh (what `part_masks.part_masks_478` draws
the part masks from). There is no `subject`: a folder does not say who is who, so
held-out images are a random fraction.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from facetrack.tracker.core.schema import LANDMARK_COUNT
from facetrack.training.distil import crop_face
from facetrack.training.landmark_files import (
    IMAGE_SUFFIXES,
    LabelledFolder,
    label_candidates,
    pair_images,
    read_landmarks,
    to_ibug68,
)

MIN_FACE_PX = 8.0
"""Smallest landmark box side (image pixels) worth a crop."""


@dataclass
class ImageCrops:
    """Crops cut from a folder, plus what was left out and why."""

    images: list[np.ndarray] = field(default_factory=list)
    landmarks: list[np.ndarray] = field(default_factory=list)
    landmarks478: list[np.ndarray | None] = field(default_factory=list)
    files: list[str] = field(default_factory=list)
    unlabelled: list[Path] = field(default_factory=list)
    skipped: dict[str, str] = field(default_factory=dict)
    """Relative image path -> why it gave no crop (unreadable image or label, wrong point count...)."""


def read_image(path: Path) -> np.ndarray:
    """An image file -> (H, W, 3) uint8 RGB (grey images are repeated to 3 channels)."""
    import cv2

    bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if bgr is None:
        raise ValueError(f"{path}: not a readable image")
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _crop_one(image_path: Path, label_path: Path, size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    pts = read_landmarks(label_path)
    try:
        lmk68 = to_ibug68(pts)
    except ValueError as exc:
        raise ValueError(f"{label_path.name}: {exc}") from None
    if float(np.ptp(lmk68, axis=0).max()) < MIN_FACE_PX:
        raise ValueError(f"{label_path.name}: the landmarks span less than {MIN_FACE_PX:g} px")
    crop, crop68 = crop_face(read_image(image_path), lmk68, size)
    if len(pts) != LANDMARK_COUNT:
        return crop, crop68, None
    # crop_face scales and shifts: the same map, recovered from the 68 points, moves the mesh (z is scaled
    # alike, 0 when the label has none, so `to_ibug68` on the stored mesh gives the stored 68 points)
    scale = float(np.ptp(crop68, axis=0).max() / np.ptp(lmk68, axis=0).max())
    mesh = np.zeros((LANDMARK_COUNT, 3), np.float32)
    mesh[:, :pts.shape[1]] = pts * scale
    mesh[:, :2] += crop68.mean(0) - scale * lmk68.mean(0)
    return crop, crop68, mesh


def labelled_images(folder: str | Path) -> LabelledFolder:
    """`pair_images`, with an error a user can act on when the folder has no images or no labels at all."""
    found = pair_images(folder)
    if not found.pairs:
        if not found.unlabelled:
            raise ValueError(f"no images ({', '.join(IMAGE_SUFFIXES)}) under {folder}")
        first = found.unlabelled[0]
        where = ", ".join(str(p.relative_to(first.parent)) for p in label_candidates(first))
        raise ValueError(f"none of the {len(found.unlabelled)} images under {folder} has a landmark file "
                         f"(for {first.name}: looked for {where})")
    return found


def crop_images(found: LabelledFolder, size: int, progress: Callable[[], None] | None = None) -> ImageCrops:
    """Every labelled image as a `size` x `size` crop with its landmarks in crop pixels; a bad image or
    label is listed in `skipped` rather than stopping the run. `progress` is called once per image."""
    out = ImageCrops(unlabelled=found.unlabelled)
    for image_path, label_path in found.pairs:
        name = str(image_path.relative_to(found.root))
        try:
            crop, lmk, lmk478 = _crop_one(image_path, label_path, size)
        except ValueError as exc:
            out.skipped[name] = str(exc)
        else:
            out.images.append(crop)
            out.landmarks.append(lmk)
            out.landmarks478.append(lmk478)
            out.files.append(name)
        if progress is not None:
            progress()
    return out


def write_image_npz(crops: ImageCrops, path: str | Path) -> Path:
    """The `npz` data source (see the module docstring); `landmarks478` only when every crop has one."""
    if not crops.images:
        raise ValueError(f"no usable crops to write to {path}: {len(crops.skipped)} images skipped")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"images": np.stack(crops.images), "landmarks": np.stack(crops.landmarks).astype(np.float32),
              "files": np.array(crops.files)}
    meshes = [m for m in crops.landmarks478 if m is not None]
    if len(meshes) == len(crops.images):
        arrays["landmarks478"] = np.stack(meshes)
    with open(path, "wb") as f:  # a file object: numpy would add ".npz" to a path without it
        np.savez_compressed(f, **arrays)
    return path
