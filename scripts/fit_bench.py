"""Fit time per face (median, p90) of the built-in rig and installed models on a real clip.

Landmarks come from mediapipe's face mesh (478 points, video mode; cached by
`fit_clips`); then each model fits every frame of the one track, timed alone
(landmark extraction is not counted), with one BLAS thread as the pipeline runs it
(`tracker/stages/fit.py`: a multi-threaded BLAS is far slower on these small systems).
Each model runs `--repeat` times on a fresh fitter; the spread over the runs is
printed, as the machine may be shared. Also prints a few blendshape ranges.

    python scripts/fit_bench.py                                  # SadTalker clip, builtin + ict
    python scripts/fit_bench.py --clip PATH --models builtin --repeat 5
    python scripts/fit_bench.py --models builtin --head face,off   # with and without the expression head
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_clips import clip_landmarks  # noqa: E402

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES  # noqa: E402
from facetrack.tracker.facemodel.fitter import FaceModelFitter, FitterConfig  # noqa: E402
from facetrack.tracker.facemodel.registry import RIG_ID, load_model  # noqa: E402

DEFAULT_CLIP = "SadTalker_ref/WDA_KatieHill_000.mp4"


def bench(fitter: FaceModelFitter, lms: list[np.ndarray | None],
          size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Wall time per fit (ms) and the blendshapes, one track over the clip."""
    times, shapes = [], []
    with threadpool_limits(1, "blas"):
        for lm in lms:
            if lm is None:
                continue
            t0 = time.perf_counter()
            res = fitter.fit(0, lm, size)
            times.append(time.perf_counter() - t0)
            shapes.append(res.blendshapes)
    fitter.forget(0)
    return np.array(times) * 1e3, np.array(shapes)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--clip", default=DEFAULT_CLIP, help="video with one face (path, or relative to media/videos)")
    ap.add_argument("--models", default="builtin,ict", help="comma-separated model ids")
    ap.add_argument("--frames", type=int, default=0, help="stop after this many frames (0 = all)")
    ap.add_argument("--repeat", type=int, default=3, help="timed runs per model")
    ap.add_argument("--head", default="face", help="FitterConfig.head, or several to compare in one run: face,off")
    args = ap.parse_args()
    lms, size = clip_landmarks(args.clip, args.frames)
    n = sum(lm is not None for lm in lms)
    print(f"clip={Path(args.clip).name} size={size[0]}x{size[1]} frames={len(lms)} with_face={n}")
    watch = ["eyeBlinkLeft", "eyeBlinkRight", "jawOpen", "mouthSmileLeft", "browInnerUp"]
    for mid, head in [(m, h) for m in args.models.split(",") for h in args.head.split(",")]:
        model = None if mid == RIG_ID else load_model(mid)
        config = FitterConfig(head=head)
        bench(FaceModelFitter(model, config), lms[:5], size)  # warm caches (numpy, BLAS)
        runs = [bench(FaceModelFitter(model, config), lms, size) for _ in range(args.repeat)]
        med = np.array([np.median(ms) for ms, _ in runs])
        p90 = np.array([np.percentile(ms, 90) for ms, _ in runs])
        print(f"{mid:8s} head={head:4s} fit ms over {args.repeat} runs: median {np.median(med):.3f} "
              f"(runs {med.min():.3f}-{med.max():.3f})  p90 {np.median(p90):.3f} "
              f"(runs {p90.min():.3f}-{p90.max():.3f})  max {max(ms.max() for ms, _ in runs):.2f}")
        bs = runs[0][1]
        for name in watch:
            col = bs[:, ARKIT_BLENDSHAPES.index(name)]
            print(f"    {name:16s} p5 {np.percentile(col, 5):.2f}  median {np.median(col):.2f}  p95 "
                  f"{np.percentile(col, 95):.2f}")


if __name__ == "__main__":
    main()
