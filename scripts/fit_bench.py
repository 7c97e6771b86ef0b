"""Fit time per face (median, p90) of the built-in rig and installed models on a real clip.

Landmarks come from mediapipe's face mesh (478 points, video mode) on the clip's
frames; then each model fits every frame of the one track, timed alone (landmark
extraction is not counted). Also prints a few blendshape ranges as a sanity check.

    python scripts/fit_bench.py                                  # SadTalker clip, builtin + ict
    python scripts/fit_bench.py --clip PATH --models builtin
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import typer

from facetrack.tracker.facemodel.fitter import FaceModelFitter
from facetrack.tracker.facemodel.registry import BUILTIN_ID, load_model
from facetrack.tracker.schema import ARKIT_BLENDSHAPES

ROOT = Path(__file__).resolve().parents[1]
MEDIA = Path(os.environ.get("FACETRACK_MEDIA", ROOT.parent / "shared" / "media"))
DEFAULT_CLIP = MEDIA / "videos" / "SadTalker_ref" / "WDA_KatieHill_000.mp4"


def clip_landmarks(path: Path, max_frames: int = 0) -> tuple[list[np.ndarray | None], tuple[int, int]]:
    """mediapipe landmarks (478, 3) in pixels per frame (None where no face)."""
    import av
    import mediapipe as mp

    out: list[np.ndarray | None] = []
    size = (0, 0)
    with av.open(str(path)) as c, mp.solutions.face_mesh.FaceMesh(
            static_image_mode=False, max_num_faces=1, refine_landmarks=True) as fm:
        for frame in c.decode(video=0):
            img = frame.to_ndarray(format="rgb24")
            h, w = img.shape[:2]
            size = (w, h)
            r = fm.process(img)
            if r.multi_face_landmarks:
                lm = np.array([[p.x * w, p.y * h, p.z * w] for p in r.multi_face_landmarks[0].landmark], np.float32)
                out.append(lm)
            else:
                out.append(None)
            if max_frames and len(out) >= max_frames:
                break
    return out, size


def bench(fitter: FaceModelFitter, lms: list[np.ndarray | None], size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    times, shapes = [], []
    for lm in lms:
        if lm is None:
            continue
        t0 = time.perf_counter()
        res = fitter.fit(0, lm, size)
        times.append(time.perf_counter() - t0)
        shapes.append(res.blendshapes)
    return np.array(times) * 1e3, np.array(shapes)


def main(clip: Path = typer.Option(DEFAULT_CLIP, help="Video with one face."),
         models: str = typer.Option("builtin,ict", help="Comma-separated model ids."),
         frames: int = typer.Option(0, help="Stop after this many frames (0 = all).")) -> None:
    lms, size = clip_landmarks(clip, frames)
    n = sum(lm is not None for lm in lms)
    print(f"clip={clip.name} size={size[0]}x{size[1]} frames={len(lms)} with_face={n}")
    watch = ["eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "browInnerUp"]
    for mid in models.split(","):
        fitter = FaceModelFitter(None if mid == BUILTIN_ID else load_model(mid))
        bench(fitter, lms[:5], size)  # warm caches (numpy, BLAS)
        fitter.forget(0)
        ms, bs = bench(fitter, lms, size)
        print(f"{mid:8s} fit ms: median {np.median(ms):.3f}  p90 {np.percentile(ms, 90):.3f}  max {ms.max():.2f}")
        for name in watch:
            col = bs[:, ARKIT_BLENDSHAPES.index(name)]
            print(f"    {name:16s} p5 {np.percentile(col, 5):.2f}  median {np.median(col):.2f}  p95 "
                  f"{np.percentile(col, 95):.2f}")


if __name__ == "__main__":
    typer.run(main)
