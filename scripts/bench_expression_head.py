"""Per-face cost of the packaged expression head (features in, 52 weights out, mirror-averaged).

    OPENBLAS_NUM_THREADS=1 python scripts/bench_expression_head.py [--network facetrack|mediapipe]
        [--repeat 7] [--calls 1000]

`--network mediapipe` times MediaPipe's blendshape network instead (146 image points in,
mirror-averaged: `FitterConfig.mediapipe_weights`).

Prints the median and range over the repeats of the mean time per call (one face).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from facetrack.tracker.facemodel.expression_head import packaged_head
from facetrack.tracker.facemodel.mediapipe_head import packaged_mediapipe_head


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--network", choices=["facetrack", "mediapipe"], default="facetrack")
    args = ap.parse_args()
    head = packaged_head() if args.network == "facetrack" else packaged_mediapipe_head()
    if head is None:
        raise SystemExit(f"no packaged {args.network} head (scripts/train_expression_head.py, "
                         "scripts/convert_mediapipe_blendshapes.py)")
    rng = np.random.default_rng(0)
    x = (rng.normal(0, 0.05, 3 * len(head.landmarks)) if args.network == "facetrack"
         else rng.normal(300, 40, (len(head.landmarks), 2))).astype(np.float32)
    for _ in range(100):
        head(x)
    ms = []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        for _ in range(args.calls):
            head(x)
        ms.append((time.perf_counter() - t0) / args.calls * 1e3)
    print(f"{args.network} head per face: median {np.median(ms):.3f} ms (range {min(ms):.3f}-{max(ms):.3f}, "
          f"{args.repeat} x {args.calls} calls)")


if __name__ == "__main__":
    main()
