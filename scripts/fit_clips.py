"""Shared by the fit_* scripts: the dev clips and their mediapipe landmarks, cached.

Running the face mesh on a clip costs far more than fitting it, and every fit script
needs the same landmarks, so they are computed once per clip (mediapipe video mode,
one face, 478 refined points, pixels) and cached as `.npz` outside the repository
(`$FACETRACK_CACHE`, default `/tmp/facetrack-landmarks`), keyed by the clip's path,
size and mtime. Third-party media is only read by path.

    python scripts/fit_clips.py              # fill the cache for the dev clips
    python scripts/fit_clips.py CLIP ...
"""

from __future__ import annotations

import argparse
import hashlib
import os
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("FACETRACK_MEDIA", ROOT.parent / "shared" / "media"))
CACHE = Path(os.environ.get("FACETRACK_CACHE", "/tmp/facetrack-landmarks"))
DEV_CLIPS = [
    "LivePortrait_driving/d6.mp4", "LivePortrait_driving/d9.mp4", "LivePortrait_driving/d10.mp4",
    "LivePortrait_driving/d11.mp4", "SadTalker_ref/WDA_KatieHill_000.mp4", "video-retalking/4.mp4",
    "spectre_MEAD/W040_level_3_happy_029.mp4",
]
"""Clips with blinks, smiles, jaw and brow motion (MANIFEST.csv notes), relative to media/videos."""


def resolve(clip: str | Path) -> Path:
    """A clip path as given, else relative to the media's videos folder."""
    p = Path(clip)
    return p if p.exists() else MEDIA / "videos" / p


def _extract(path: Path, max_frames: int) -> tuple[np.ndarray, tuple[int, int]]:
    import av
    import mediapipe as mp

    out: list[np.ndarray] = []
    size = (0, 0)
    missing = np.full((478, 3), np.nan, np.float32)
    with av.open(str(path)) as c, mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True) as fm:
        for frame in c.decode(video=0):
            img = frame.to_ndarray(format="rgb24")
            h, w = img.shape[:2]
            size = (w, h)
            r = fm.process(img)
            if r.multi_face_landmarks:
                out.append(np.array([[p.x * w, p.y * h, p.z * w] for p in r.multi_face_landmarks[0].landmark],
                                    np.float32))
            else:
                out.append(missing)
            if max_frames and len(out) >= max_frames:
                break
    return np.stack(out), size


def clip_landmarks(clip: str | Path, max_frames: int = 0) -> tuple[list[np.ndarray | None], tuple[int, int]]:
    """mediapipe landmarks (478, 3) in pixels per frame (None where no face), cached."""
    path = resolve(clip)
    st = path.stat()
    key = hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}|{max_frames}".encode()).hexdigest()[:16]
    cached = CACHE / f"{path.stem}-{key}.npz"
    if cached.is_file():
        with np.load(cached) as z:
            lms, size = z["landmarks"], (int(z["size"][0]), int(z["size"][1]))
    else:
        lms, size = _extract(path, max_frames)
        CACHE.mkdir(parents=True, exist_ok=True)
        tmp = cached.with_suffix(".part.npz")
        np.savez(tmp, landmarks=lms, size=np.array(size))
        os.replace(tmp, cached)
    return [None if np.isnan(lm[0, 0]) else lm for lm in lms], size


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", nargs="*", default=DEV_CLIPS, help="clip paths (default: the dev clips)")
    args = ap.parse_args()
    for clip in args.clips:
        lms, size = clip_landmarks(clip)
        print(f"{clip}: {size[0]}x{size[1]} frames={len(lms)} with_face={sum(lm is not None for lm in lms)}")


if __name__ == "__main__":
    main()
