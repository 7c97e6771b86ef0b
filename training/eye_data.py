"""Eye-state datasets: the documented layout, face images cut into eye crops, held-back splits.

Layout of DATA_DIR (every part optional, names configurable on the command line):

```
DATA_DIR/
  eye_crops/Open/*.jpg       eye crops (any size, roughly 1.6-2 eye widths wide, eye centred),
  eye_crops/Closed/*.jpg     the folder is the label (open / closed, case-insensitive)
  cew_closed_faces/*.jpg     face images whose eyes are both closed ("--faces cew_closed_faces=closed")
  utkface_open_unverified/   face images whose eyes are both open   ("--faces utkface_open_unverified=open")
```

Eye crops are resized to the stored size. Face images go through the landmark engine
(mediapipe, still-image mode) and both eyes are cut with the runtime's own crop
(`facetrack.tracker.stages.eyes.cut_eye_crops`), so training sees what the tracker will feed the
network. Faces the landmark engine misses are counted and skipped. The cut crops are
cached (`--cache`, default ~/.cache/facetrack/eye-state) keyed by the file list.

Split: by a hash of each file's relative path (so a face's two eyes stay on one side and
the split is stable when files are added); `held_fraction` of each source is held back.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from facetrack.tracker.stages.eyes import CROP_SIZE, cut_eye_crops

log = logging.getLogger("facetrack.training")

STORE_SIZE = (CROP_SIZE[0] * 2, CROP_SIZE[1] * 2)
"""Crops are stored at twice the network's input size so augmentation can warp without blur."""
IMAGE_EXT = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}
LABELS = {"open": 0, "closed": 1}


@dataclass
class EyeSet:
    """Crops (N, H, W) uint8 at STORE_SIZE, labels (N,) 1 = closed, source name and split per crop."""

    crops: np.ndarray
    labels: np.ndarray
    source: np.ndarray  # (N,) str: which part of DATA_DIR
    held: np.ndarray  # (N,) bool: held back (never trained on)
    files: list[str] = field(default_factory=list)
    missed_faces: dict[str, int] = field(default_factory=dict)

    def subset(self, mask: np.ndarray) -> EyeSet:
        return EyeSet(self.crops[mask], self.labels[mask], self.source[mask], self.held[mask],
                      [f for f, m in zip(self.files, mask) if m], self.missed_faces)

    def summary(self) -> dict:
        out = {}
        for s in sorted(set(self.source.tolist())):
            m = self.source == s
            out[s] = {"train": {"open": int(((self.labels == 0) & m & ~self.held).sum()),
                                "closed": int(((self.labels == 1) & m & ~self.held).sum())},
                      "held": {"open": int(((self.labels == 0) & m & self.held).sum()),
                               "closed": int(((self.labels == 1) & m & self.held).sum())}}
        return out


def is_held(rel_path: str, fraction: float) -> bool:
    """Stable split: the file's path hashed to [0, 1)."""
    h = int.from_bytes(hashlib.sha1(rel_path.encode()).digest()[:4], "big") / 2**32
    return h < fraction


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXT) if folder.is_dir() else []


def _read_grey(path: Path) -> np.ndarray | None:
    img = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    return img


def load_crop_folder(root: Path, folder: str) -> tuple[list[np.ndarray], list[int], list[str]]:
    """Eye crops from root/folder/{Open,Closed}: resized to STORE_SIZE."""
    crops, labels, files = [], [], []
    base = root / folder
    if not base.is_dir():
        return crops, labels, files
    for sub in sorted(base.iterdir()):
        label = LABELS.get(sub.name.lower())
        if label is None or not sub.is_dir():
            continue
        for p in _images(sub):
            img = _read_grey(p)
            if img is None:
                continue
            crops.append(cv2.resize(img, STORE_SIZE, interpolation=cv2.INTER_AREA))
            labels.append(label)
            files.append(str(p.relative_to(root)))
    return crops, labels, files


def face_landmarks(paths: list[Path]) -> list[np.ndarray | None]:
    """478 landmarks per face image (the largest face), None where none is found."""
    from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh

    out: list[np.ndarray | None] = []
    with MediapipeFaceMesh(max_faces=1, static_images=True, min_detection_confidence=0.3) as mesh:
        for p in paths:
            img = cv2.imread(str(p), cv2.IMREAD_COLOR)
            if img is None:
                out.append(None)
                continue
            rgb = cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
            h, w = rgb.shape[:2]
            if max(h, w) < 192:  # small faces: the detector needs some context and size
                s = 192 / max(h, w)
                rgb = cv2.resize(rgb, (round(w * s), round(h * s)), interpolation=cv2.INTER_CUBIC)
                pad = max(rgb.shape[:2]) // 4
                rgb = cv2.copyMakeBorder(rgb, pad, pad, pad, pad, cv2.BORDER_REPLICATE)
                faces = mesh.process(np.ascontiguousarray(rgb))
                out.append(None if not faces else ((faces[0].landmarks - [pad, pad, 0]) / [s, s, s]).astype(np.float32))
            else:
                faces = mesh.process(np.ascontiguousarray(rgb))
                out.append(None if not faces else faces[0].landmarks)
    return out


def load_face_folder(root: Path, folder: str, label: int, cache_dir: Path | None
                     ) -> tuple[list[np.ndarray], list[int], list[str], int]:
    """Both eyes of every face image in root/folder, cut by the landmark engine."""
    paths = _images(root / folder)
    if not paths:
        return [], [], [], 0
    listing = json.dumps([str(p.relative_to(root)) for p in paths] + [list(STORE_SIZE)])
    key = hashlib.sha1(listing.encode()).hexdigest()[:16]
    cache = cache_dir / f"{folder.replace('/', '_')}-{key}.npz" if cache_dir else None
    if cache is not None and cache.exists():
        z = np.load(cache, allow_pickle=False)
        crops, files, missed = list(z["crops"]), [str(f) for f in z["files"]], int(z["missed"])
    else:
        crops, files, missed = [], [], 0
        for p, lm in zip(paths, face_landmarks(paths)):
            if lm is None:
                missed += 1
                continue
            img = cv2.imread(str(p), cv2.IMREAD_GRAYSCALE)
            pair = cut_eye_crops(img, lm, STORE_SIZE)
            rel = str(p.relative_to(root))
            crops += [pair[0], pair[1]]
            files += [rel + "#left", rel + "#right"]
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(cache, crops=np.asarray(crops, np.uint8).reshape(-1, STORE_SIZE[1], STORE_SIZE[0]),
                                files=np.asarray(files), missed=missed)
    return crops, [label] * len(crops), files, missed


def load_dataset(root: Path, crop_folders: list[str], face_folders: list[tuple[str, str]],
                 held_fraction: float = 0.2, face_held_fraction: dict[str, float] | None = None,
                 cache_dir: Path | None = None) -> EyeSet:
    """Everything in DATA_DIR as one EyeSet with its split."""
    root = Path(root)
    crops, labels, sources, held, files = [], [], [], [], []
    missed: dict[str, int] = {}
    for folder in crop_folders:
        c, labs, f = load_crop_folder(root, folder)
        crops += c
        labels += labs
        files += f
        sources += [folder] * len(c)
        held += [is_held(x, held_fraction) for x in f]
    for folder, label_name in face_folders:
        label = LABELS[label_name.lower()]
        c, labs, f, m = load_face_folder(root, folder, label, cache_dir)
        frac = (face_held_fraction or {}).get(folder, held_fraction)
        crops += c
        labels += labs
        files += f
        sources += [folder] * len(c)
        held += [is_held(x.split("#")[0], frac) for x in f]
        missed[folder] = m
    if not crops:
        raise FileNotFoundError(
            f"no eye crops or face images found under {root} (see the layout in training/eye_data.py)"
        )
    return EyeSet(np.stack(crops).astype(np.uint8), np.asarray(labels, np.int64), np.asarray(sources),
                  np.asarray(held, bool), files, missed)


def augment(crop: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One random training view of a stored crop, at the network's input size.

    Geometry: scale 0.85-1.2, shift +-6% / +-8%, rotation +-12 deg, mirror 50%; photometric:
    contrast, brightness, gamma, blur or down-and-up sampling (small faces in video), noise.
    """
    h, w = crop.shape
    cw, ch = CROP_SIZE
    s = (cw / w) * rng.uniform(0.85, 1.2)
    ang = rng.uniform(-12, 12)
    m = cv2.getRotationMatrix2D((w / 2, h / 2), ang, s)
    m[0, 2] += cw / 2 - w / 2 + rng.uniform(-0.06, 0.06) * cw
    m[1, 2] += ch / 2 - h / 2 + rng.uniform(-0.08, 0.08) * ch
    out = cv2.warpAffine(crop, m, (cw, ch), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_REPLICATE)
    if rng.random() < 0.5:
        out = out[:, ::-1]
    x = out.astype(np.float32) / 255.0
    r = rng.random()
    if r < 0.2:
        k = rng.choice([3, 5])
        x = cv2.GaussianBlur(x, (k, k), 0)
    elif r < 0.45:
        f = rng.uniform(0.3, 0.7)
        small = cv2.resize(x, (max(4, round(cw * f)), max(3, round(ch * f))), interpolation=cv2.INTER_AREA)
        x = cv2.resize(small, (cw, ch), interpolation=cv2.INTER_LINEAR)
    x = np.clip(x, 0, 1) ** rng.uniform(0.6, 1.6)
    x = (x - x.mean()) * rng.uniform(0.6, 1.4) + x.mean() + rng.uniform(-0.15, 0.15)
    if rng.random() < 0.4:
        x = x + rng.normal(0, rng.uniform(0.01, 0.05), x.shape)
    return np.clip(x * 255.0, 0, 255).astype(np.uint8)

