"""Training data and training of the landmark-to-weights head (facetrack.tracker.facemodel.expression_head).

Faces are drawn from the packaged model (`ict478`: ICT Face Model Light at the 478
landmarks) with known weights, so every sample has an exact answer:

- identity: N(0, 1) on its 40 modes;
- expression: sparse and realistic (`ExpressionSampler`): neutral, talking, a wide-open
  jaw, smiles with or without teeth, frowns, puckers and funnels, raised and lowered
  brows, a raised chin, single-sided versions of each, blinks and squints, and a faint
  background of other shapes; never two antagonists together;
- pose: yaw +-40 deg, pitch +-25, roll +-20, 40-120 cm from a pinhole camera;
- what the tracker gets wrong (`NoiseModel`): the landmarks carry noise (independent
  jitter of 0.2-1% of the face's radius and a correlated part shaped like identity modes),
  real faces do not move like the model's shapes (a smooth random gain on each sample's
  motion), the fitted pose is off by ~1.5 deg, and the track's neutral (identity plus rest
  face) is off by a little identity, by faint expressions caught in the rest face and by a
  smooth error of its shape and depth (never observed from the front).

The input is computed exactly as the tracker computes it (the observed landmarks
back-projected into the head frame at the fitted pose, minus the estimated neutral,
divided by the face's radius); the target is the 52 ARKit weights (jawOpen on ARKit's
scale, `JAW_SCALE`). The MLP is trained
with torch on fresh batches (no dataset is stored), with mirror augmentation (the mirror
image of a sample and its left/right-swapped target). Never trained on labelled real
frames: those are the test (scripts/eval_expressions.py).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.facemodel.expression_head import ExpressionHead, arkit_mirror
from facetrack.tracker.facemodel.format import MorphableModel
from facetrack.tracker.facemodel.prepared import PreparedModel
from facetrack.tracker.facemodel.priors import antagonist_pairs

_PAIR_A, _PAIR_B = antagonist_pairs()
_JAW = ARKIT_BLENDSHAPES.index("jawOpen")
JAW_SCALE = 2.0
"""ICT's jawOpen at 1 drops the chin 2.8 cm (a yawn); a mouth opened wide in video drops it 0.5-1.3 cm
(mediapipe's chin point on the labelled frames). ARKit's jawOpen reaches ~0.5-1 there, so the head's target
is twice ICT's weight (capped at 1)."""


def _both(base: str) -> list[str]:
    return [f"{base}_L", f"{base}_R"]


class ExpressionSampler:
    """Sparse, realistic expression weights in the model's own shape space (ICT names, `_L`/`_R`)."""

    def __init__(self, model: MorphableModel) -> None:
        self.names = list(model.exp_names)
        self.pos = {n: i for i, n in enumerate(self.names)}
        self.arkit_map = model.arkit_map.astype(np.float64)
        self.background = np.array([not n.startswith("eyeLook") and n != "mouthClose" for n in self.names])
        self.misc = [n for n in ("jawForward", "jawLeft", "jawRight", "mouthLeft", "mouthRight", "mouthRollUpper",
                                 "mouthRollLower", "mouthShrugUpper", "mouthClose", *_both("mouthDimple"),
                                 *_both("mouthStretch"), *_both("mouthPress"), *_both("mouthUpperUp"),
                                 *_both("mouthLowerDown"), *_both("cheekPuff"), *_both("noseSneer"))
                     if n in self.pos]

    def _set(self, e: np.ndarray, name: str, v: float) -> None:
        e[self.pos[name]] = max(e[self.pos[name]], v)

    def _pair(self, rng: np.random.Generator, e: np.ndarray, base: str, v: float) -> None:
        """Both sides: symmetric (70%) or one side weaker (30%), either side."""
        a = np.clip(1 + rng.normal(0, 0.1, 2), 0.6, 1.0)
        if rng.random() < 0.3:
            a[rng.integers(2)] = rng.uniform(0, 0.5)
        for n, s in zip(_both(base), a):
            self._set(e, n, v * s)

    def _component(self, rng: np.random.Generator, kind: str) -> np.ndarray:
        e = np.zeros(len(self.names))
        u = rng.uniform
        if kind == "talk":
            self._set(e, "jawOpen", u(0.05, 0.45))
            extra = rng.choice(["mouthFunnel", "mouthPucker", "mouthLowerDown", "mouthUpperUp", "mouthRollLower",
                                "mouthStretch", "none"])
            if extra in ("mouthLowerDown", "mouthUpperUp", "mouthStretch"):
                self._pair(rng, e, extra, u(0.1, 0.5))
            elif extra != "none":
                self._set(e, extra, u(0.1, 0.5))
        elif kind == "wide":
            self._set(e, "jawOpen", u(0.5, 1.0))
            if rng.random() < 0.4:
                self._set(e, "mouthFunnel", u(0.0, 0.4))
            if rng.random() < 0.3:
                self._pair(rng, e, "browInnerUp", u(0.3, 0.9))
        elif kind == "smile":
            s = u(0.3, 1.0)
            self._pair(rng, e, "mouthSmile", s)
            self._pair(rng, e, "cheekSquint", s * u(0.0, 0.6))
            if rng.random() < 0.5:
                self._set(e, "jawOpen", u(0.0, 0.35))
            if rng.random() < 0.3:
                self._pair(rng, e, "mouthUpperUp", u(0.0, 0.4))
            if rng.random() < 0.3:
                self._pair(rng, e, "eyeSquint", u(0.0, 0.5))
        elif kind == "frown":
            self._pair(rng, e, "mouthFrown", u(0.3, 1.0))
            if rng.random() < 0.5:
                self._set(e, "mouthShrugLower", u(0.1, 0.7))
            if rng.random() < 0.3:
                self._pair(rng, e, "browDown", u(0.2, 0.8))
            if rng.random() < 0.3:
                self._pair(rng, e, "mouthPress", u(0.1, 0.5))
        elif kind == "pucker":
            which = rng.choice(["mouthPucker", "mouthFunnel", "both"])
            for n in (["mouthPucker", "mouthFunnel"] if which == "both" else [which]):
                self._set(e, n, u(0.3, 1.0))
            if which != "mouthPucker" and rng.random() < 0.5:
                self._set(e, "jawOpen", u(0.0, 0.3))
        elif kind == "browsUp":
            self._pair(rng, e, "browInnerUp", u(0.3, 1.0))
            if rng.random() < 0.6:
                self._pair(rng, e, "browOuterUp", u(0.3, 1.0))
            if rng.random() < 0.3:
                self._pair(rng, e, "eyeWide", u(0.2, 0.8))
        elif kind == "browsDown":
            self._pair(rng, e, "browDown", u(0.3, 1.0))
            if rng.random() < 0.4:
                self._pair(rng, e, "noseSneer", u(0.1, 0.7))
            if rng.random() < 0.3:
                self._pair(rng, e, "eyeSquint", u(0.1, 0.6))
        elif kind == "chin":
            self._set(e, "mouthShrugLower", u(0.3, 1.0))
            if rng.random() < 0.4:
                self._set(e, "mouthShrugUpper", u(0.1, 0.6))
            if rng.random() < 0.3:
                self._pair(rng, e, "mouthPress", u(0.1, 0.6))
        else:  # misc: one or two of the other shapes
            for n in rng.choice(self.misc, rng.integers(1, 3), replace=False):
                if n == "mouthClose":
                    jaw = u(0.1, 0.6)
                    self._set(e, "jawOpen", jaw)
                    self._set(e, n, u(0.0, jaw))
                else:
                    self._set(e, str(n), u(0.2, 0.9))
        return e

    def _antagonists(self, e: np.ndarray) -> bool:
        w = self.arkit_map @ e
        return bool(((w[_PAIR_A] > 0.12) & (w[_PAIR_B] > 0.12)).any())

    def _eyes(self, rng: np.random.Generator, e: np.ndarray) -> None:
        if rng.random() < 0.2:
            self._pair(rng, e, "eyeBlink", rng.uniform(0.2, 1.0))
        if rng.random() < 0.3:
            for n in ("eyeLookDown", "eyeLookUp", "eyeLookIn", "eyeLookOut")[rng.integers(4):][:1]:
                self._pair(rng, e, n, rng.uniform(0.1, 0.8))
        if rng.random() < 0.1:
            self._pair(rng, e, "eyeWide", rng.uniform(0.1, 0.7))

    KINDS = ("talk", "wide", "smile", "frown", "pucker", "browsUp", "browsDown", "chin", "misc")
    KIND_P = (0.16, 0.1, 0.15, 0.1, 0.1, 0.1, 0.1, 0.07, 0.12)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        """(n, K) weights: 12% neutral, else 1-3 components that are not antagonists, eyes, faint background."""
        out = np.zeros((n, len(self.names)))
        for i in range(n):
            e = out[i]
            if rng.random() >= 0.12:
                for kind in rng.choice(self.KINDS, rng.choice([1, 2, 3], p=[0.6, 0.3, 0.1]), p=self.KIND_P):
                    c = np.maximum(e, self._component(rng, str(kind)))
                    if not self._antagonists(c):
                        e[:] = c
            self._eyes(rng, e)
            faint = self.background & (rng.random(len(e)) < 0.15)
            trial = e + faint * rng.uniform(0, 0.08, len(e))
            if not self._antagonists(trial):
                e[:] = trial
        return np.clip(out, 0, 1)


def _rotations(yaw: np.ndarray, pitch: np.ndarray, roll: np.ndarray) -> np.ndarray:
    """(n, 3, 3) head->camera rotations R = Ry Rx Rz (angles in radians)."""
    n = len(yaw)
    ry, rx, rz = (np.zeros((n, 3, 3)) for _ in range(3))
    ca, sa, cb, sb, cg, sg = np.cos(yaw), np.sin(yaw), np.cos(pitch), np.sin(pitch), np.cos(roll), np.sin(roll)
    ry[:, 0, 0], ry[:, 0, 2], ry[:, 1, 1], ry[:, 2, 0], ry[:, 2, 2] = ca, sa, 1, -sa, ca
    rx[:, 0, 0], rx[:, 1, 1], rx[:, 1, 2], rx[:, 2, 1], rx[:, 2, 2] = 1, cb, -sb, sb, cb
    rz[:, 0, 0], rz[:, 0, 1], rz[:, 1, 0], rz[:, 1, 1], rz[:, 2, 2] = cg, -sg, sg, cg, 1
    return ry @ rx @ rz


@dataclass
class NoiseModel:
    """What the tracker gets wrong, as fractions of the face's radius (or degrees)."""

    jitter: tuple[float, float] = (0.002, 0.01)  # independent landmark noise, range of its sigma
    correlated: float = 0.15  # landmark bias shaped like identity modes (sigma of the coefficients)
    pose_deg: float = 1.5  # fitted rotation error
    identity: float = 0.15  # error of the track's identity estimate (coefficients)
    rest_leak: float = 0.08  # most of one expression weight a rest face may hold
    shape_gain: float = 0.15  # real faces move unlike the model's shapes: a smooth random gain on their motion
    neutral_field: float = 0.005  # smooth error of the neutral the rest face leaves (fraction of the radius)
    depth: float = 0.06  # smooth depth error of the neutral (fraction of the radius): a rest face seen from the
    # front never corrects depth, and a turned head shows it as sideways motion (brows read as knitted)


class FaceSynth:
    """Faces of the model at its fitted landmarks, projected and read back as the head's input."""

    def __init__(self, model: MorphableModel, noise: NoiseModel | None = None, contour_weight: float = 0.5) -> None:
        pm = PreparedModel(model, contour_weight)
        self.idx = pm.idx
        self.radius = pm.radius
        self.base = pm.base
        self.id_basis = pm.basis[:, :, : pm.k_id].transpose(2, 0, 1)  # (K_id, L, 3)
        self.exp_basis = pm.basis[:, :, pm.k_id:].transpose(2, 0, 1)  # (K_exp, L, 3)
        self.arkit_map = model.arkit_map.astype(np.float64)
        self.sampler = ExpressionSampler(model)
        self.noise = noise or NoiseModel()
        d2 = ((self.base[:, None] - self.base[None]) ** 2).sum(-1)
        self._kernel = np.exp(-d2 / (2 * (0.3 * self.radius) ** 2))  # (L, L) bump at a landmark, seen at each

    def batch(self, rng: np.random.Generator, n: int, pool: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(n, 3L) inputs and (n, 52) target weights; expressions drawn from `pool` (rows of weights) when given
        (sampling them is the slow part; pose, identity and noise are always fresh)."""
        nz, r = self.noise, self.radius
        k_id = len(self.id_basis)
        e = self.sampler.sample(rng, n) if pool is None else pool[rng.integers(len(pool), size=n)]
        ident = rng.normal(size=(n, k_id))
        neutral = self.base + np.tensordot(ident, self.id_basis, 1)
        motion = np.tensordot(e, self.exp_basis, 1) * self._smooth_field(rng, n, 1)  # (n, L, 3)
        shape = neutral + motion
        # the landmarks the network reports: the face plus a correlated bias and jitter
        seen = shape + np.tensordot(rng.normal(0, nz.correlated, (n, k_id)), self.id_basis, 1)
        seen += rng.normal(size=seen.shape) * (r * rng.uniform(*nz.jitter, (n, 1, 1)))
        deg = np.deg2rad
        rot = _rotations(deg(rng.uniform(-40, 40, n)), deg(rng.uniform(-25, 25, n)), deg(rng.uniform(-20, 20, n)))
        trans = np.stack([rng.uniform(-8, 8, n), rng.uniform(-6, 6, n), -rng.uniform(40, 120, n)], 1)
        cam = seen @ rot.transpose(0, 2, 1) + trans[:, None]
        p = cam[..., :2] / -cam[..., 2:3]
        # the tracker's estimates: pose a little off, neutral = identity a little off + rest with faint expressions
        rot_est = rot @ _rotations(*(deg(rng.normal(0, nz.pose_deg, n)) for _ in range(3)))
        trans_est = trans + rng.normal(size=(n, 3)) * np.abs(trans[:, 2:3]) * [0.005, 0.005, 0.02]
        leak = rng.uniform(0, nz.rest_leak, (n, len(e[0]))) * (rng.random((n, len(e[0]))) < 0.2)
        neutral_est = (neutral + np.tensordot(rng.normal(0, nz.identity, (n, k_id)), self.id_basis, 1)
                       + np.tensordot(leak, self.exp_basis, 1)
                       + r * nz.neutral_field / nz.shape_gain * (self._smooth_field(rng, n, 3) - 1)
                       + r * nz.depth / nz.shape_gain * (self._smooth_field(rng, n, 3) - 1) * [0, 0, 1])
        fitted = neutral_est + np.tensordot(e, self.exp_basis, 1)  # depth of each point as the fit places it
        cam_fit = fitted @ rot_est.transpose(0, 2, 1) + trans_est[:, None]
        resid = np.zeros_like(cam_fit)
        resid[..., :2] = p * -cam_fit[..., 2:3] - cam_fit[..., :2]
        observed = fitted + resid @ rot_est  # rest_face.observed_shape, batched
        x = ((observed - neutral_est) / r).reshape(n, -1)
        return x.astype(np.float32), self.targets(e)

    def targets(self, e: np.ndarray) -> np.ndarray:
        """The 52 ARKit weights of model weights (n, K), jawOpen on ARKit's scale (JAW_SCALE)."""
        w = e @ self.arkit_map.T
        w[:, _JAW] *= JAW_SCALE
        return np.clip(w, 0, 1).astype(np.float32)


    def _smooth_field(self, rng: np.random.Generator, n: int, dims: int) -> np.ndarray:
        """(n, L, dims) fields 1 + sum of 8 Gaussian bumps (width 0.3 radius, heights N(0, shape_gain)) on the face."""
        bumps = self._kernel[:, rng.integers(len(self.base), size=(n, 8))].transpose(1, 0, 2)  # (n, L, 8)
        return 1 + bumps @ rng.normal(0, self.noise.shape_gain, (n, 8, dims))


class _Mlp(nn.Module):
    def __init__(self, n_in: int, hidden: tuple[int, ...], n_out: int) -> None:
        super().__init__()
        sizes = (n_in, *hidden)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.out = nn.Linear(sizes[-1], n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.hidden:
            x = nn.functional.silu(layer(x))
        return torch.sigmoid(self.out(x))


def train_head(model: MorphableModel, steps: int = 4000, batch: int = 256, hidden: tuple[int, ...] = (256, 256),
               chunk: int = 8192, passes: int = 4, pool: int = 40000, lr: float = 2e-3, seed: int = 0,
               noise: NoiseModel | None = None,
               log=print) -> ExpressionHead:
    """Train the head on fresh synthetic chunks (each seen `passes` times); returns it ready to save."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    synth = FaceSynth(model, noise)
    probe = ExpressionHead([(np.zeros((3 * len(synth.idx), 52)), np.zeros(52))], synth.idx,
                           np.asarray(model.extra["mirror"]), np.zeros(1), np.ones(1), model.id)
    expressions = synth.sampler.sample(rng, pool)
    log(f"{pool} expressions drawn ({time.perf_counter() - t0:.0f} s)")
    x0, _ = synth.batch(rng, 4096, expressions)
    x0 = np.concatenate([x0, probe.mirror_features(x0)])
    mean = x0.mean(0)
    std = np.float32(x0.std(0).mean()) * np.ones_like(mean)  # one scale: keeps the mirror symmetry exact
    mean = 0.5 * (mean + probe.mirror_features(mean[None])[0])
    net = _Mlp(x0.shape[1], hidden, 52)
    opt = torch.optim.AdamW(net.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps, pct_start=0.1)
    out_mirror = torch.as_tensor(arkit_mirror())
    weight = torch.as_tensor([0.3 if n.startswith("eye") else 1.0 for n in ARKIT_BLENDSHAPES])
    mean_t, std_t = torch.as_tensor(mean), torch.as_tensor(std)
    step, running = 0, 0.0
    while step < steps:
        x, y = synth.batch(rng, chunk, expressions)
        flip = rng.random(chunk) < 0.5  # mirror augmentation: the mirror image, left and right swapped
        x[flip] = probe.mirror_features(x[flip])
        xt, yt = torch.as_tensor(x), torch.as_tensor(y)
        yt[flip] = yt[flip][:, out_mirror]
        for i in [j for _ in range(passes) for j in range(0, chunk - batch + 1, batch)]:
            if step >= steps:
                break
            pred = net((xt[i:i + batch] - mean_t) / std_t)
            loss = (((pred - yt[i:i + batch]) ** 2) * weight).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            running = 0.98 * running + 0.02 * loss.item() if step else loss.item()
            step += 1
            if step % 1000 == 0:
                log(f"step {step}/{steps}: loss {running:.5f} ({time.perf_counter() - t0:.0f} s)")
    layers = [(lay.weight.detach().numpy().T.copy(), lay.bias.detach().numpy().copy())
              for lay in [*net.hidden, net.out]]
    meta = {"steps": steps, "batch": batch, "hidden": list(hidden), "seed": seed, "pool": pool,
            "noise": (noise or NoiseModel()).__dict__}
    return ExpressionHead(layers, synth.idx, np.asarray(model.extra["mirror"]), mean, std, model.id, meta)


def synthetic_error(head: ExpressionHead, model: MorphableModel, n: int = 4000, seed: int = 123,
                    noise: NoiseModel | None = None) -> dict[str, float]:
    """MAE of the head on fresh synthetic faces (all weights but eyeLook/tongue; and the drawn ones)."""
    x, y = FaceSynth(model, noise).batch(np.random.default_rng(seed), n)
    pred = head(x)
    scored = np.array([not (nm.startswith("eyeLook") or nm == "tongueOut") for nm in ARKIT_BLENDSHAPES])
    err = np.abs(pred - y)[:, scored]
    return {"mae": float(err.mean()), "mae_drawn": float(err[y[:, scored] > 0.05].mean())}
