"""Synthetic recovery with a morphable model (default: the installed ICT model).

Random people (identity ~ N(0, 1)), smoothly varying random expressions and head
poses; the model's 478-landmark embedding is projected with a pinhole camera, Gaussian
noise of `--noise` x face size (sqrt of the landmark box area) is added and a fraction
of points is dropped (NaN); each person is one track of the fitter. Prints blendshape
MAE, vertex RMSE (head frame, mm) and rotation error (degrees).

    python scripts/fit_synthetic.py                      # installed `ict`
    python scripts/fit_synthetic.py --source ../shared/assets/ict-facekit/ict_face_narrow.npz
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np

from facetrack.tracker.facemodel.fitter import FaceModelFitter, FitterConfig
from facetrack.tracker.facemodel.format import MorphableModel
from facetrack.tracker.facemodel.registry import load_model


def rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """R = Ry(yaw) Rx(pitch) Rz(roll), degrees (the fitter's euler_yxz convention)."""
    a, b, g = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return ry @ rx @ rz


def smooth_keys(rng: np.random.Generator, frames: int, every: int, sample) -> np.ndarray:
    """Values sampled every `every` frames, linearly interpolated in between."""
    n_keys = frames // every + 2
    keys = np.stack([sample() for _ in range(n_keys)])
    t = np.arange(frames) / every
    i = np.floor(t).astype(int)
    a = (t - i)[:, None]
    return (1 - a) * keys[i] + a * keys[i + 1]


def random_expression(rng: np.random.Generator, k: int, active: int) -> np.ndarray:
    e = np.zeros(k)
    idx = rng.choice(k, size=active, replace=False)
    e[idx] = rng.uniform(0, 1, size=active)
    e[rng.random(k) < 0.3] = 0.0  # keep many exactly neutral
    return e


def make_sequence(model: MorphableModel, rng: np.random.Generator, frames: int, width: int, height: int,
                  focal: float, noise: float, drop: float, max_yaw: float) -> dict[str, np.ndarray]:
    ident = rng.standard_normal(model.n_identity)
    exprs = smooth_keys(rng, frames, 8, lambda: random_expression(rng, model.n_expression, 4))
    poses = smooth_keys(rng, frames, 15, lambda: np.array([rng.uniform(-max_yaw, max_yaw), rng.uniform(-20, 20),
                                                           rng.uniform(-10, 10), rng.uniform(-4, 4),
                                                           rng.uniform(-3, 3), rng.uniform(-70, -45)]))
    lms, rots, trans = [], [], []
    for e, ps in zip(exprs, poses):
        r = rotation(*ps[:3])
        t = ps[3:]
        v = model.shape(ident, e)
        cam = model.embed(v) @ r.T + t
        u = np.stack([width / 2 + focal * cam[:, 0] / -cam[:, 2], height / 2 - focal * cam[:, 1] / -cam[:, 2]], 1)
        valid = model.lmk_valid
        box = u[valid].max(0) - u[valid].min(0)
        u = u + rng.standard_normal(u.shape) * noise * np.sqrt(box[0] * box[1])
        u[~valid] = np.nan
        u[rng.random(len(u)) < drop] = np.nan
        lms.append(u)
        rots.append(r)
        trans.append(t)
    return {"identity": ident, "expression": exprs, "landmarks": np.stack(lms), "rotation": np.stack(rots),
            "translation": np.stack(trans)}


def evaluate(model: MorphableModel, people: int = 8, frames: int = 40, seed: int = 0, noise: float = 0.005,
             drop: float = 0.05, max_yaw: float = 30.0, width: int = 640, height: int = 480,
             warmup: int = 10, config: FitterConfig | None = None) -> dict[str, float]:
    """Run the synthetic recovery and return the figures (after `warmup` frames per track)."""
    rng = np.random.default_rng(seed)
    fitter = FaceModelFitter(model, config)
    focal = float(width)
    bs_err, v_err, rot_err, times = [], [], [], []
    for person in range(people):
        seq = make_sequence(model, rng, frames, width, height, focal, noise, drop, max_yaw)
        for i in range(frames):
            t0 = time.perf_counter()
            res = fitter.fit(person, seq["landmarks"][i], (width, height), focal)
            times.append(time.perf_counter() - t0)
            if i < warmup:
                continue
            true_bs = np.clip(model.arkit_map @ seq["expression"][i], 0, 1)
            bs_err.append(np.abs(res.blendshapes - true_bs).mean())
            vt = model.shape(seq["identity"], seq["expression"][i])
            v_err.append(np.sqrt(((res.vertices("head") - vt) ** 2).sum(1).mean()) * 10.0)
            d = res.rotation.T @ seq["rotation"][i]
            rot_err.append(np.degrees(np.arccos(np.clip((np.trace(d) - 1) / 2, -1, 1))))
        fitter.forget(person)
    return {
        "blendshape_mae": float(np.mean(bs_err)), "vertex_rmse_mm": float(np.mean(v_err)),
        "vertex_rmse_mm_median": float(np.median(v_err)), "rotation_err_deg": float(np.mean(rot_err)),
        "fit_ms_median": float(np.median(times) * 1e3), "fit_ms_p90": float(np.percentile(times, 90) * 1e3),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="ict", help="installed model id")
    ap.add_argument("--source", type=Path, help="build ICT from this npz/release instead of --model")
    ap.add_argument("--people", type=int, default=8)
    ap.add_argument("--frames", type=int, default=40)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--noise", type=float, default=0.005, help="landmark noise, fraction of the face size")
    ap.add_argument("--drop", type=float, default=0.05, help="fraction of landmarks dropped per frame")
    ap.add_argument("--max-yaw", type=float, default=30.0, help="degrees")
    ap.add_argument("--warmup", type=int, default=10, help="frames per track before the metrics count")
    a = ap.parse_args()
    if a.source is not None:
        from facetrack.tracker.facemodel.ict import build_ict_model, read_ict

        model = build_ict_model(read_ict(a.source))
    else:
        model = load_model(a.model)
    out = evaluate(model, a.people, a.frames, a.seed, a.noise, a.drop, a.max_yaw, warmup=a.warmup)
    print(f"model={model.id} people={a.people} frames={a.frames} noise={a.noise} drop={a.drop} "
          f"max_yaw={a.max_yaw} (metrics after {a.warmup} warm-up frames per track)")
    for k, v in out.items():
        print(f"{k:24s} {v:.4f}")


if __name__ == "__main__":
    main()
