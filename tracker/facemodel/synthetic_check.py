"""A synthetic check with exact answers that is not circular: ICT faces fitted by another model.

Faces are drawn from the full ICT Face Model Light (its dense narrow-face mesh, all 100
identity modes, random N(0, 1) identities), given known sparse expression weights and a
head pose, and their 478 landmarks (ICT's own surface points, found by the project's
embedding) are projected by a pinhole camera with Gaussian noise. The fitted model
(default: the packaged compact model, 40 mirror-averaged modes at the landmarks) never
saw these identities' remaining modes nor the noise. Each person is one track: a short
calm warm-up (rest calibration), then expressions held for a few frames each. Reports
the ARKit weights' mean absolute error and how far a weight moves when only the identity
changes (same expressions and poses, another person).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.fitter import FaceModelFitter, FitterConfig
from facetrack.tracker.facemodel.format import MorphableModel, arkit_map_for
from facetrack.tracker.facemodel.ict import ICT_ALIASES, Embedding, IctData
from facetrack.tracker.facemodel.label_checks import ANTAGONISTIC_PAIRS
from facetrack.tracker.facemodel.priors import EXTRA_PAIRS

SCORED = np.array([not (n.startswith("eyeLook") or n == "tongueOut") for n in ARKIT_BLENDSHAPES])
"""Weights scored: ICT has no tongue and its eyeLook shapes only move lids (no eyeballs to see)."""

DRAWN = ("jawOpen", "mouthSmile_L", "mouthSmile_R", "mouthFrown_L", "mouthFrown_R", "mouthPucker", "mouthFunnel",
         "browDown_L", "browDown_R", "browOuterUp_L", "browOuterUp_R", "browInnerUp", "mouthShrugLower",
         "mouthStretch_L", "mouthStretch_R", "eyeBlink_L", "eyeBlink_R", "cheekSquint_L", "cheekSquint_R",
         "mouthLeft", "mouthRight", "mouthPress_L", "mouthPress_R", "noseSneer_L", "noseSneer_R", "jawLeft",
         "jawRight", "mouthRollLower", "mouthUpperUp_L", "mouthUpperUp_R")
"""Expressions drawn (ICT names; browInnerUp sets both halves)."""


@dataclass
class SyntheticReport:
    mae: float  # all scored weights, all test frames
    mae_active: float  # the weights that were drawn non-zero
    identity_shift_max: float  # max over weights of the mean |w(person A) - w(person B)|
    identity_shift_p95: float  # 95th percentile of |w_A - w_B| over frames and weights
    frames: int


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    a, b, g = np.deg2rad([yaw, pitch, roll])
    ry = np.array([[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]])
    rx = np.array([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]])
    rz = np.array([[np.cos(g), -np.sin(g), 0], [np.sin(g), np.cos(g), 0], [0, 0, 1]])
    return ry @ rx @ rz


def _expression(rng: np.random.Generator, names: list[str], k: int) -> np.ndarray:
    """Sparse weights: 1-3 drawn shapes in [0.25, 0.9], never two antagonists together."""
    pos = {n: i for i, n in enumerate(names)}
    amap = arkit_map_for(names, ICT_ALIASES)
    pairs = [(ARKIT_BLENDSHAPES.index(a), ARKIT_BLENDSHAPES.index(b)) for a, b in ANTAGONISTIC_PAIRS + EXTRA_PAIRS]
    e = np.zeros(k)
    for name in rng.permutation(DRAWN)[: rng.integers(1, 4)]:
        trial = e.copy()
        for n in ([f"{name}_L", f"{name}_R"] if name == "browInnerUp" else [name]):
            trial[pos[n]] = rng.uniform(0.25, 0.9)
        w = amap @ trial
        if not any(w[a] > 0 and w[b] > 0 for a, b in pairs):
            e = trial
    return e


def run_check(data: IctData, embedding: Embedding, model: MorphableModel, people: int = 6, tests: int = 12,
              hold: int = 3, warmup: int = 40, noise: float = 0.003, seed: int = 0,
              config: FitterConfig | None = None) -> SyntheticReport:
    """Fit `people` pairs of random ICT persons (same expressions and poses within a pair)."""
    rng = np.random.default_rng(seed)
    k_id, k_exp = data.id_basis.shape[0], data.exp_basis.shape[0]
    amap = arkit_map_for(data.exp_names, ICT_ALIASES)
    width, height, focal = 640, 480, 640.0
    truth, got = [], {0: [], 1: []}
    for person in range(people):
        exprs = [np.zeros(k_exp)] * warmup + [_expression(rng, data.exp_names, k_exp) for _ in range(tests)]
        poses = [(rng.normal(0, 3), rng.normal(0, 3), rng.normal(0, 2)) for _ in range(warmup)]
        poses += [(rng.uniform(-20, 20), rng.uniform(-15, 15), rng.uniform(-10, 10)) for _ in range(tests)]
        noise_draws = rng.normal(size=(warmup + tests * hold, 478, 2))
        for twin in (0, 1):
            ident = rng.normal(size=k_id)
            fitter = FaceModelFitter(model, config)
            t = 0
            for j, (e, pose) in enumerate(zip(exprs, poses)):
                verts = data.neutral + np.tensordot(ident, data.id_basis, 1) + np.tensordot(e, data.exp_basis, 1)
                lmk = np.einsum("nkc,nk->nc", verts[embedding.vertices], embedding.bary)
                cam = (lmk - lmk.mean(0)) @ _rotation(*pose).T + [0.0, 0.0, -55.0]
                px = np.stack([width / 2 + focal * cam[:, 0] / -cam[:, 2],
                               height / 2 - focal * cam[:, 1] / -cam[:, 2]], axis=1)
                size = float(np.sqrt(np.ptp(px[:, 0]) * np.ptp(px[:, 1])))
                px[~embedding.valid] = np.nan
                for _ in range(1 if j < warmup else hold):
                    res = fitter.fit(person, px + noise * size * noise_draws[t], (width, height), focal)
                    t += 1
                if j >= warmup:
                    got[twin].append(res.blendshapes)
                    if twin == 0:
                        truth.append(amap @ e)
    tr, a, b = np.array(truth), np.array(got[0]), np.array(got[1])
    err = np.abs(a - tr)[:, SCORED]
    active = tr[:, SCORED] > 0
    shift = np.abs(a - b)[:, SCORED]
    return SyntheticReport(mae=float(err.mean()), mae_active=float(err[active].mean()),
                           identity_shift_max=float(shift.mean(0).max()),
                           identity_shift_p95=float(np.percentile(shift, 95)), frames=len(tr))
