"""The papers' training losses, batched and in pure torch (see ../shared/DESIGN.md, "The papers").

Conventions: landmarks are iBUG-68 in pixels, (B, 68, 2), x right, y DOWN (image
coordinates; the ELAM formula is written for y up, so its sign flips here). Every loss
returns a scalar averaged over the batch unless it says otherwise, so recipe weights are
per-sample weights as in the papers.

Index note: DESIGN.md lists the lid pairs as "37,38,43,44 / 41,40,47,46, 1-based"; on the
iBUG layout those are the upper/lower lid points only when read 0-based (1-based 38/42
etc.), so the constants below are 0-based and name the true lid points.
"""

from __future__ import annotations

import torch
from torch import Tensor

EYE_PAIRS: tuple[tuple[int, int], ...] = ((37, 41), (38, 40), (43, 47), (44, 46))
"""(upper lid, lower lid) iBUG-68 points, 0-based: right eye 37/41, 38/40; left eye 43/47, 44/46."""
LIP_PAIRS: tuple[tuple[int, int], ...] = ((61, 67), (62, 66), (63, 65))
"""(upper, lower) inner-lip iBUG-68 points, 0-based."""
INNER_LIP: tuple[int, ...] = tuple(range(60, 68))
CONTOUR: tuple[int, ...] = tuple(range(0, 17))
EYES: tuple[int, ...] = tuple(range(36, 48))
MOUTH: tuple[int, ...] = tuple(range(48, 68))
OUTER_EYE_CORNERS: tuple[int, int] = (36, 45)


# -- landmarks (Zhou & Huang; ELAM paper's weights) ------------------------------------------------

def landmark_weights(eye_mouth: float = 1.5, contour: float = 0.5, n: int = 68) -> Tensor:
    """Per-point weights: eyes and mouth up-weighted, the sliding jaw contour down-weighted."""
    w = torch.ones(n)
    w[list(EYES) + list(MOUTH)] = eye_mouth
    w[list(CONTOUR)] = contour
    return w


def landmark_loss(pred: Tensor, target: Tensor, weights: Tensor, hard: Tensor | None = None,
                  hard_weight: float = 1.0) -> Tensor:
    """Weighted mean squared point error, plus Zhou & Huang's extra term on the hard points.

    loss = mean_b [ sum_i w_i |p_bi - t_bi|^2 / n  +  hard_weight * mean_{i in hard} |p_bi - t_bi|^2 ];
    `hard` holds the indices with the largest error in the previous epoch (`HardPoints`).
    """
    err = ((pred - target) ** 2).sum(-1)  # (B, N)
    loss = (err * weights).mean(-1)
    if hard is not None and hard.numel():
        loss = loss + hard_weight * err[:, hard].mean(-1)
    return loss.mean()


class HardPoints:
    """Keeps the per-point error of the running epoch; `indices()` are the previous epoch's worst k."""

    def __init__(self, n: int, k: int) -> None:
        self.k = k
        self.sum = torch.zeros(n)
        self.count = 0
        self.previous = torch.zeros(0, dtype=torch.long)

    def add(self, pred: Tensor, target: Tensor) -> None:
        self.sum += ((pred.detach() - target) ** 2).sum(-1).sum(0)
        self.count += pred.shape[0]

    def end_epoch(self) -> None:
        if self.count and self.k:
            self.previous = torch.topk(self.sum / self.count, self.k).indices.sort().values
        self.sum.zero_()
        self.count = 0

    def indices(self) -> Tensor:
        return self.previous


# -- ELAM + LDL (Eye Motion Matters) ---------------------------------------------------------------

def elam_correct(lmk: Tensor, p_closed: Tensor, open_gap: Tensor | None = None,
                 pairs: tuple[tuple[int, int], ...] = EYE_PAIRS) -> Tensor:
    """Move upper-lid points toward the lower lid by the closure the eye-state classifier sees.

    The paper's L_i <- L_i - P*|L_i - L_j| (y up) leaves a gap (1 - P) * gap. Generalised
    as DESIGN.md asks: the target gap is (1 - P) * open_gap (the track's calibrated open-eye
    gap, per pair; the current gap when None, which is the paper's rule) and a lid already
    at or below it is not moved, so a partly closed eye is not closed twice.
    lmk (B, 68, 2) y down; p_closed (B,) or (B, 2) per eye (right, left); open_gap (B, n_pairs).
    """
    out = lmk.clone()
    upper = torch.tensor([i for i, _ in pairs])
    lower = torch.tensor([j for _, j in pairs])
    gap = (lmk[:, lower, 1] - lmk[:, upper, 1]).abs()  # (B, P)
    p = p_closed.reshape(lmk.shape[0], -1)
    if p.shape[1] == 2:  # one probability per eye: first half of the pairs is the right eye
        p = p.repeat_interleave(len(pairs) // 2, dim=1)
    ref = gap if open_gap is None else open_gap
    new_gap = torch.minimum(gap, (1 - p) * ref)
    direction = torch.sign(lmk[:, lower, 1] - lmk[:, upper, 1])  # +1 in image coords: the lower lid is below
    out[:, upper, 1] = lmk[:, upper, 1] + direction * (gap - new_gap)
    return out


def relative_distances(lmk: Tensor, pairs: tuple[tuple[int, int], ...],
                       scale_pair: tuple[int, int] = OUTER_EYE_CORNERS) -> Tensor:
    """Pair distances divided by the outer-eye-corner distance: scale-free, so one weight suits every face size."""
    i = torch.tensor([a for a, _ in pairs])
    j = torch.tensor([b for _, b in pairs])
    d = (lmk[:, i] - lmk[:, j]).norm(dim=-1)
    s = (lmk[:, scale_pair[0]] - lmk[:, scale_pair[1]]).norm(dim=-1, keepdim=True)
    return d / s.clamp_min(1e-6)


def ldl_loss(pred: Tensor, target: Tensor, weights: Tensor | None = None,
             pairs: tuple[tuple[int, int], ...] = EYE_PAIRS + LIP_PAIRS) -> Tensor:
    """LDL: sum_k w_k |d_k(pred) - d_k(target)| over lid and lip pairs, w_k in {0, 1}, mean over the batch."""
    diff = (relative_distances(pred, pairs) - relative_distances(target, pairs)).abs()
    if weights is not None:
        diff = diff * weights
    return diff.sum(-1).mean()


# -- PRDL (3DDFA-V3) -------------------------------------------------------------------------------

def grid_anchors(height: int, width: int, n: int) -> Tensor:
    """n x n anchors on the image grid (pixel centres of an even subdivision), (n*n, 2) as (x, y)."""
    ys = (torch.arange(n, dtype=torch.float32) + 0.5) * height / n
    xs = (torch.arange(n, dtype=torch.float32) + 0.5) * width / n
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([gx.reshape(-1), gy.reshape(-1)], -1)


def prdl_descriptors(points: Tensor, mask: Tensor, anchors: Tensor) -> Tensor:
    """Gamma: min, max and mean distance from every anchor to a padded point set.

    points (B, P, 2), mask (B, P) bool (True = real point, at least one per row),
    anchors (A, 2) -> (B, A, 3).
    """
    d = (anchors[None, :, None, :] - points[:, None, :, :]).norm(dim=-1)  # (B, A, P)
    m = mask[:, None, :]
    big = torch.finfo(d.dtype).max / 4
    dmin = torch.where(m, d, torch.full_like(d, big)).amin(-1)
    dmax = torch.where(m, d, torch.full_like(d, -big)).amax(-1)
    dmean = (d * m).sum(-1) / m.sum(-1).clamp_min(1)
    return torch.stack([dmin, dmax, dmean], -1)


def prdl_loss(pred: dict[str, tuple[Tensor, Tensor]], target: dict[str, tuple[Tensor, Tensor]],
              anchors: Tensor, weights: dict[str, float], height: int, width: int) -> Tensor:
    """sum_p w_p ||Gamma_p - Gamma*_p||^2 / (H*W), mean over the batch.

    pred/target map a part name to (points, mask); predicted points are the re-projected
    model vertices of that part, targets the part's 2D pixels from a segmentation (or the
    landmark polygons). The gradient on a predicted point is, per anchor and statistic,
    2 (Gamma - Gamma*) * d(distance)/d(point): along the unit vector from the anchor to the
    point (Eq. 11), so a point whose distances are too large moves toward the anchors.
    """
    total = anchors.new_zeros(())
    for name, w in weights.items():
        if w == 0 or name not in pred:
            continue
        g = prdl_descriptors(*pred[name], anchors)
        g_star = prdl_descriptors(*target[name], anchors)
        total = total + w * ((g - g_star) ** 2).sum((-1, -2)).mean()
    return total / (height * width)


def farthest_point_sampling(points: Tensor, k: int, start: int = 0) -> Tensor:
    """Indices of k points, each the farthest from those already chosen (skin point down-sampling)."""
    n = points.shape[0]
    k = min(k, n)
    chosen = torch.empty(k, dtype=torch.long)
    dist = torch.full((n,), float("inf"))
    idx = start
    for s in range(k):
        chosen[s] = idx
        dist = torch.minimum(dist, ((points - points[idx]) ** 2).sum(-1))
        idx = int(torch.argmax(dist))
    return chosen


# -- photometric, mouth, albedo (Deng et al. MM'22, Zhou & Huang) -----------------------------------

def photometric_loss(rendered: Tensor, image: Tensor, mask: Tensor, skin: Tensor | None = None) -> Tensor:
    """Skin-weighted mean per-pixel colour distance ||I - R||_2 over the rendered face.

    rendered/image (B, 3, H, W), mask (B, 1, H, W) render coverage, skin (B, 1, H, W) skin
    probability (occluders, hair and beards count little).
    """
    w = mask if skin is None else mask * skin
    d = ((rendered - image) ** 2).sum(1, keepdim=True).add(1e-8).sqrt()
    return ((d * w).sum((1, 2, 3)) / w.sum((1, 2, 3)).clamp_min(1e-6)).mean()


def polygon_area(points: Tensor) -> Tensor:
    """Shoelace area of (B, N, 2) closed polygons (absolute value, any orientation)."""
    x, y = points[..., 0], points[..., 1]
    return 0.5 * (x * y.roll(-1, -1) - x.roll(-1, -1) * y).sum(-1).abs()


def inner_mouth_area_loss(pred: Tensor, target: Tensor) -> Tensor:
    """|area(inner-lip polygon) pred - target| / (eye-corner distance)^2: the mouth opening itself, not
    just its points, so an open mouth is not fitted by a closed one with stretched lips."""
    s = (target[:, OUTER_EYE_CORNERS[0]] - target[:, OUTER_EYE_CORNERS[1]]).norm(dim=-1).clamp_min(1e-6) ** 2
    idx = list(INNER_LIP)
    return ((polygon_area(pred[:, idx]) - polygon_area(target[:, idx])).abs() / s).mean()


def uniform_albedo_loss(albedo: Tensor, skin: Tensor) -> Tensor:
    """Skin-weighted variance of the diffuse albedo over vertices: keeps shading and specular
    highlights out of the albedo. albedo (B, V, 3), skin (V,) or (B, V) weights."""
    w = skin.expand(albedo.shape[:2])[..., None]
    mean = (albedo * w).sum(1, keepdim=True) / w.sum(1, keepdim=True).clamp_min(1e-6)
    return (((albedo - mean) ** 2).sum(-1, keepdim=True) * w).sum((1, 2)).div(w.sum((1, 2)).clamp_min(1e-6)).mean()


def feature_loss_at_points(feat_image: Tensor, feat_render: Tensor, points: Tensor, height: int, width: int) -> Tensor:
    """Zhou & Huang's deep-feature loss: feature maps (B, C, h, w) of the input and of the rendered
    face, sampled (bilinearly) at landmark pixels (B, N, 2) of an H x W image; mean squared difference."""
    grid = torch.stack([points[..., 0] / width * 2 - 1, points[..., 1] / height * 2 - 1], -1)[:, None]
    a = torch.nn.functional.grid_sample(feat_image, grid, align_corners=False)
    b = torch.nn.functional.grid_sample(feat_render, grid, align_corners=False)
    return ((a - b) ** 2).sum(1).mean()


def perceptual_loss(emb_image: Tensor, emb_render: Tensor) -> Tensor:
    """Identity/perceptual loss: 1 - cos between face-recognition embeddings of input and render."""
    return (1 - torch.nn.functional.cosine_similarity(emb_image, emb_render, dim=-1)).mean()


# -- SIR (recognizable shapes) ----------------------------------------------------------------------

def cos_loss(features: Tensor, weights: Tensor, labels: Tensor, s: float = 30.0, m: float = 0.35) -> Tensor:
    """Large-margin cosine loss: softmax over s*cos with the margin m taken off the true class."""
    cos = torch.nn.functional.normalize(features, dim=-1) @ torch.nn.functional.normalize(weights, dim=-1).T
    logits = s * (cos - m * torch.nn.functional.one_hot(labels, weights.shape[0]))
    return torch.nn.functional.cross_entropy(logits, labels)


def sir_confidence(euler: Tensor, expression: Tensor, lam: float) -> Tensor:
    """f = 1/8 (cos a + 1)(cos b + 1)(cos g + 1) exp(-lambda ||alpha_exp||): 1 for a frontal neutral face."""
    return (torch.cos(euler) + 1).prod(-1) / 8 * torch.exp(-lam * expression.norm(dim=-1))


def weighted_center_loss(features: Tensor, labels: Tensor, centers: Tensor, confidence: Tensor) -> Tensor:
    """1/2 sum_i f_i ||x_i - c_{y_i}||^2 / B: confident (frontal, neutral) samples pull hardest."""
    return 0.5 * (confidence * ((features - centers[labels]) ** 2).sum(-1)).sum() / features.shape[0]


@torch.no_grad()
def update_centers(centers: Tensor, features: Tensor, labels: Tensor, confidence: Tensor, rate: float) -> Tensor:
    """SIR's weighted center update, in place: c_j -= rate * sum_i f_i [y_i=j](c_j - x_i) / (1 + sum_i f_i [y_i=j]),
    so centers lean toward the neutral, frontal samples of their class."""
    num = torch.zeros_like(centers).index_add_(0, labels, confidence[:, None] * (centers[labels] - features))
    den = torch.zeros(centers.shape[0], dtype=centers.dtype).index_add_(0, labels, confidence)
    centers -= rate * num / (1 + den)[:, None]
    return centers


def kl_standard_normal(alpha: Tensor, sigma: Tensor) -> Tensor:
    """KL(N(mu, s^2) || N(0, 1)) of z = alpha / sigma, mu and s^2 per dimension over the batch, summed."""
    z = alpha / sigma
    mu = z.mean(0)
    var = z.var(0, unbiased=False).clamp_min(1e-8)
    return 0.5 * (mu ** 2 + var - var.log() - 1).sum()


# -- regularisation --------------------------------------------------------------------------------

def coefficient_regulariser(identity: Tensor, expression: Tensor, texture: Tensor | None = None,
                            w_id: float = 1.0, w_exp: float = 1.0, w_tex: float = 1.0) -> Tensor:
    """w_id ||alpha||^2 + w_exp ||beta||^2 + w_tex ||delta||^2 per sample, mean over the batch."""
    loss = w_id * (identity ** 2).sum(-1) + w_exp * (expression ** 2).sum(-1)
    if texture is not None and texture.numel():
        loss = loss + w_tex * (texture ** 2).sum(-1)
    return loss.mean()

