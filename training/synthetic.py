"""A small random linear face model and images rendered from it: data with a known answer.

Used by the tests and by the `synthetic` data source of the recipes: the regressor must
recover coefficients the renderer used, which checks the whole chain (network, renderer,
losses, export) without any dataset. The model is a curved sheet in the head frame (cm)
whose vertices include an iBUG-68 layout, with hand-made expression modes (blink, jaw
open, smile, brow raise) so LDL and the mouth loss have something to measure.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.spatial import Delaunay
from torch import Tensor

from facetrack.training.render import SH_CONST, TorchFaceModel, render, vertex_skin


def ibug68_template() -> np.ndarray:
    """A schematic frontal iBUG-68 layout (68, 2) in cm, head frame (x = subject's left, y up)."""
    def arc(cx: float, cy: float, rx: float, ry: float, deg: list[float]) -> np.ndarray:
        t = np.radians(deg)
        return np.stack([cx + rx * np.cos(t), cy + ry * np.sin(t)], -1)

    jaw = arc(0, 1, 7, 8, list(np.linspace(180, 360, 17)))
    brow_r = np.stack([np.linspace(-5.5, -1.5, 5), 4 + 0.4 * np.sin(np.linspace(0, np.pi, 5))], -1)
    brow_l = brow_r * [-1, 1]
    brow_l = brow_l[::-1]
    bridge = np.stack([np.zeros(4), np.linspace(3, 0, 4)], -1)
    nostrils = np.stack([np.linspace(-1.2, 1.2, 5), np.full(5, -0.8)], -1)
    eye = [180, 120, 60, 0, -60, -120]
    eye_r = arc(-3, 2.2, 1.2, 0.5, eye)
    eye_l = arc(3, 2.2, 1.2, 0.5, eye)
    outer = arc(0, -3, 2.5, 1.0, [180, 150, 120, 90, 60, 30, 0, -30, -60, -90, -120, -150])
    inner = arc(0, -3, 1.6, 0.4, [180, 135, 90, 45, 0, -45, -90, -135])
    return np.concatenate([jaw, brow_r, brow_l, bridge, nostrils, eye_r, eye_l, outer, inner]).astype(np.float32)


def _field(xy: np.ndarray, centres: np.ndarray, disp: np.ndarray, radius: float) -> np.ndarray:
    """Smooth displacement (V, 3): Gaussian RBFs at the centres carrying the displacements."""
    w = np.exp(-((xy[:, None] - centres[None]) ** 2).sum(-1) / (2 * radius ** 2))
    return w @ disp


def synthetic_model(seed: int = 0, n_identity: int = 6, n_expression: int = 4, n_texture: int = 3,
                    spacing: float = 0.8) -> TorchFaceModel:
    """The random model: the same seed gives the same model on every machine (numpy's PCG64)."""
    rng = np.random.default_rng(seed)
    lmk = ibug68_template()
    gx, gy = np.meshgrid(np.arange(-7, 7.01, spacing), np.arange(-7, 6.01, spacing))
    grid = np.stack([gx.ravel(), gy.ravel()], -1)
    grid = grid[((grid[:, 0] / 7.5) ** 2 + ((grid[:, 1] - 0.5) / 8) ** 2) <= 1]
    grid = grid[np.min(np.linalg.norm(grid[:, None] - lmk[None], axis=-1), 1) > 0.3]
    xy = np.concatenate([lmk, grid]).astype(np.float32)
    tri = Delaunay(xy).simplices
    a, b, c = xy[tri[:, 0]], xy[tri[:, 1]], xy[tri[:, 2]]
    cw = ((b - a)[:, 0] * (c - a)[:, 1] - (b - a)[:, 1] * (c - a)[:, 0]) < 0
    tri[cw] = tri[cw][:, [0, 2, 1]]
    z = 5 * np.sqrt(np.clip(1 - (xy[:, 0] / 8) ** 2 - ((xy[:, 1] - 0.5) / 9) ** 2, 0, None))
    z += 1.5 * np.exp(-((xy[:, 0]) ** 2 + (xy[:, 1] - 0.5) ** 2) / 1.5)  # nose
    neutral = np.concatenate([xy, z[:, None]], 1).astype(np.float32)

    def mode(idx: list[int], d: tuple[float, float], r: float) -> np.ndarray:
        disp = np.zeros((len(idx), 3), np.float32)
        disp[:, :2] = d
        return _field(xy, lmk[idx], disp, r)

    gap = float(lmk[37, 1] - lmk[41, 1])
    designed = [
        mode([37, 38, 43, 44], (0, -gap), 0.35),                     # blink
        mode([5, 6, 7, 8, 9, 10, 11, 56, 57, 58, 65, 66, 67], (0, -1.5), 1.2),  # jaw open
        mode([48, 54], (0, 0.5), 0.9) + _field(xy, lmk[[48, 54]], np.array([[-0.5, 0, 0], [0.5, 0, 0]]), 0.9),
        mode(list(range(17, 27)), (0, 0.6), 1.0),                    # brows up
    ]
    exp = designed[:n_expression]
    for _ in range(n_expression - len(exp)):
        k = rng.choice(68, 4, replace=False)
        exp.append(_field(xy, lmk[k], rng.normal(0, 0.5, (4, 3)), 1.5))
    def smooth(k: int, amplitude: float) -> np.ndarray:
        return _field(xy, lmk[rng.choice(68, k, replace=False)], rng.normal(0, amplitude, (k, 3)), 3.0)

    ids = [smooth(8, 0.15) for _ in range(n_identity)]
    tex = [smooth(6, 0.05) for _ in range(n_texture)]
    albedo = np.tile(np.array([[0.75, 0.55, 0.45]], np.float32), (len(xy), 1))
    albedo[36:48] = [0.3, 0.25, 0.25]  # eyes darker, so the photometric loss sees them
    albedo[60:68] = [0.4, 0.15, 0.15]
    idx = np.arange(68)
    model = TorchFaceModel(
        torch.from_numpy(neutral), torch.tensor(np.array(ids, np.float32).reshape(n_identity, -1, 3)),
        torch.tensor(np.array(exp, np.float32).reshape(n_expression, -1, 3)), torch.from_numpy(tri.astype(np.int64)),
        torch.from_numpy(np.stack([idx, idx, idx], 1)), torch.tensor([[1.0, 0, 0]]).repeat(68, 1),
        torch.from_numpy(albedo), torch.tensor(np.array(tex, np.float32).reshape(n_texture, -1, 3)),
        torch.ones(len(xy)))
    model.skin = vertex_skin(model)
    return model


@dataclass
class SyntheticBatch:
    images: Tensor      # (N, 3, S, S) in [0, 1]
    landmarks: Tensor   # (N, 68, 2) pixels
    identity: Tensor
    expression: Tensor
    pose: Tensor
    sh: Tensor
    texture: Tensor
    skin: Tensor        # (N, 1, S, S)
    mask: Tensor        # (N, 1, S, S)
    subject: Tensor     # (N,) which identity (sample i shows subject i % subjects)


def sample_coefficients(model: TorchFaceModel, n: int, size: int, gen: torch.Generator) -> dict[str, Tensor]:
    """Plausible random coefficients: identity ~ N(0, 1), expression in [0, 1], small head turns,
    the face filling most of the crop, light mostly ambient from the front."""
    pose = torch.zeros(n, 6)
    pose[:, :3] = (torch.rand(n, 3, generator=gen) - 0.5) * 0.5
    pose[:, 3:5] = size / 2 + (torch.rand(n, 2, generator=gen) - 0.5) * size * 0.06
    pose[:, 5] = torch.log(torch.tensor(size * 0.85 / 16)) + (torch.rand(n, generator=gen) - 0.5) * 0.1
    sh = torch.zeros(n, 9, 3)
    sh[:, 0] = (0.9 + 0.3 * torch.rand(n, 1, generator=gen)) / SH_CONST[0]
    sh[:, 1:4] = (torch.rand(n, 3, 1, generator=gen) - 0.5) * 0.4
    return {"identity": torch.randn(n, model.n_identity, generator=gen),
            "expression": torch.rand(n, model.n_expression, generator=gen),
            "pose": pose, "sh": sh.reshape(n, 27),
            "texture": torch.randn(n, model.n_texture, generator=gen)}


@torch.no_grad()
def synthetic_batch(model: TorchFaceModel, n: int, size: int = 64, seed: int = 0, subjects: int | None = None,
                    background: float = 0.2, sigma: float = 1.0) -> SyntheticBatch:
    """n rendered faces on a flat background with their ground truth; with `subjects`, identities (and
    albedo) repeat across samples so identity-consistency losses (SIR) have several views per person."""
    gen = torch.Generator().manual_seed(seed)
    c = sample_coefficients(model, n, size, gen)
    subject = torch.arange(n) % (subjects or n)
    c["identity"], c["texture"] = c["identity"][subject], c["texture"][subject]
    r = render(model, c["identity"], c["expression"], c["pose"], c["sh"], c["texture"], None, size, size, sigma)
    images = (r.image * r.mask + background * (1 - r.mask)).clamp(0, 1)
    return SyntheticBatch(images, r.landmarks, c["identity"], c["expression"], c["pose"], c["sh"], c["texture"],
                          r.skin, r.mask, subject)
