"""Identity stability with a model that has an identity basis (default ICT).

A track's identity should converge and then stay put while the person talks, turns
and blinks, and differ between people. Per clip (one person, one track): the
identity after convergence (the frames after `--settle` seconds) is compared with
its own mean: spread = RMS over frames of the distance to the mean, in coefficient
units (identity ~ N(0, 1)) and as the RMS vertex distance of the neutral faces (mm).
Across clips: the same distances between the clips' mean identities. Stable
identity = within-clip spread well below the between-people distances.

    python scripts/fit_identity.py                     # the dev clips, ICT
    python scripts/fit_identity.py CLIP CLIP --model ict
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from threadpoolctl import threadpool_limits

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fit_clips import DEV_CLIPS, clip_landmarks, resolve  # noqa: E402

from facetrack.tracker.facemodel.fitter import FaceModelFitter  # noqa: E402
from facetrack.tracker.facemodel.format import MorphableModel  # noqa: E402
from facetrack.tracker.facemodel.registry import load_model  # noqa: E402


def track_identities(model: MorphableModel, clip: str) -> tuple[np.ndarray, float]:
    """The track's identity estimate after every frame (T, K_id), and the clip's frame rate."""
    import av

    with av.open(str(resolve(clip))) as c:
        fps = float(c.streams.video[0].average_rate or 25)
    lms, size = clip_landmarks(clip)
    fitter = FaceModelFitter(model)
    out = []
    with threadpool_limits(1, "blas"):
        for lm in lms:
            if lm is not None:
                out.append(fitter.fit(0, lm, size).identity)
    return np.array(out, np.float64), fps


def vertex_rms_mm(model: MorphableModel, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """RMS vertex distance (mm) between the neutral faces of identities a and b (..., K_id)."""
    basis = model.id_basis.reshape(model.n_identity, -1).astype(np.float64)  # (K, 3V)
    d = (np.atleast_2d(a) - np.atleast_2d(b)) @ basis
    return 10.0 * np.sqrt((d.reshape(len(d), -1, 3) ** 2).sum(-1).mean(-1))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("clips", nargs="*", default=DEV_CLIPS, help="one-person clips (default: the dev clips)")
    ap.add_argument("--model", default="ict", help="installed model id with an identity basis")
    ap.add_argument("--settle", type=float, default=2.0, help="seconds before the identity counts as converged")
    args = ap.parse_args()
    model = load_model(args.model)
    means, names = [], []
    print(f"{'clip':42s} {'frames':>6s}  within-clip spread: coef RMS   mm RMS   (first-second drift mm)")
    for clip in args.clips:
        ids, fps = track_identities(model, clip)
        settled = ids[int(args.settle * fps):]
        if len(settled) < 10:
            print(f"{clip:42s} too short after {args.settle} s; skipped")
            continue
        mean = settled.mean(0)
        spread = float(np.sqrt(((settled - mean) ** 2).sum(1).mean()))
        mm = float(np.sqrt((vertex_rms_mm(model, settled, mean) ** 2).mean()))
        drift = float(vertex_rms_mm(model, ids[int(fps)], mean)[0])
        print(f"{clip:42s} {len(settled):6d}  {spread:28.3f} {mm:8.3f}   ({drift:.3f})")
        means.append(mean)
        names.append(clip)
    m = np.array(means)
    i, j = np.triu_indices(len(m), 1)
    coef = np.linalg.norm(m[i] - m[j], axis=1)
    mm = vertex_rms_mm(model, m[i], m[j])
    print(f"\nbetween clips ({len(i)} pairs): coef distance min {coef.min():.3f} median {np.median(coef):.3f}; "
          f"mm min {mm.min():.3f} median {np.median(mm):.3f}")
    k = int(np.argmin(mm))
    print(f"closest pair: {names[i[k]]} / {names[j[k]]} ({mm[k]:.3f} mm)")


if __name__ == "__main__":
    main()
