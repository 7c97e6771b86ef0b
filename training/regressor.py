"""The coefficient regressor: aligned face crop -> identity, expression, pose, lighting.

`build_regressor` makes the network (a small CNN by default, ResNet-50 as in the papers),
`train_regressor` trains it with a `Recipe`'s losses through the differentiable renderer
(training/render.py), writing a checkpoint per epoch (resumable) and a CSV of the loss
curves, and `export_onnx` writes the `regress` engine: ONNX plus metadata (sidecar with
sha256) that `facetrack.engines.onnx_runtime.OnnxEngine` loads.

Output decoding lives inside the network, so the engine's outputs are usable as they
are: expression in [0, 1] (sigmoid), pose = axis-angle (3), translation in crop pixels
(2), log scale in crop pixels per model unit (1), SH lighting 9 x RGB, specular
(direction 3, log intensity, log shininess), texture coefficients.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Literal

import numpy as np
import torch
from torch import Tensor, nn

from facetrack.training import losses as L
from facetrack.training.backbones import resnet50
from facetrack.training.export import attach_metadata, export_batched
from facetrack.training.face_features import load_face_features, perceptual_term
from facetrack.training.part_masks import part_landmarks_478, part_masks_478
from facetrack.training.recipe import Recipe
from facetrack.training.render import (
    POSE_SIZE,
    SH_CONST,
    SH_SIZE,
    SPEC_SIZE,
    TorchFaceModel,
    euler_from_rotation,
    render,
    rodrigues,
    transform,
)

log = logging.getLogger("facetrack.training")

MEAN, STD = 0.5, 0.25
"""Input normalisation: (rgb / 255 - MEAN) / STD."""
ENGINE_VERSION = "1.0.0"
PARTS: dict[str, tuple[int, ...]] = {
    "right_eye": tuple(range(36, 42)),
    "left_eye": tuple(range(42, 48)),
    "nose": (27, 31, 32, 33, 34, 35),
    "lips": tuple(range(48, 60)),
}
"""Part polygons on the iBUG-68 points (lips minus the inner-mouth polygon); `skin` is the face hull
(jaw + brows) minus these."""
PART_LANDMARKS_68: dict[str, tuple[int, ...]] = {**PARTS, "skin": tuple(range(27))}
"""The 68-point indices that stand in for a part squeezed to no pixels (skin: jaw and brows)."""
MIRROR_PARTS = {"right_eye": "left_eye", "left_eye": "right_eye"}
"""Parts that trade places in a mirrored image (the others map to themselves)."""


def _ibug68_mirror() -> tuple[int, ...]:
    """The standard iBUG-68 mirror permutation: jaw reversed, brows, nostrils, eyes and lips swapped."""
    pairs = ([(i, 16 - i) for i in range(8)] + [(17 + i, 26 - i) for i in range(5)] + [(31, 35), (32, 34)]
             + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
             + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58), (60, 64), (61, 63), (65, 67)])
    perm = list(range(68))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


IBUG68_MIRROR: tuple[int, ...] = _ibug68_mirror()
"""Point i of a mirrored face is point IBUG68_MIRROR[i] of the original, mirrored."""


def mirror_permutation(names: list[str] | tuple[str, ...]) -> Tensor:
    """Index permutation that swaps every ...Left name with its ...Right partner (ARKit's naming), so a
    mirrored face's expression weights are `weights[:, perm]`; names without a side map to themselves."""
    index = {n: i for i, n in enumerate(names)}
    swap = {"Left": "Right", "Right": "Left"}
    perm = []
    for n in names:
        side = next((k for k in swap if n.endswith(k)), None)
        partner = n if side is None else n[:-len(side)] + swap[side]
        if partner not in index:
            raise ValueError(f"expression {n!r} has no mirror partner {partner!r}")
        perm.append(index[partner])
    return torch.tensor(perm)


# -- network ---------------------------------------------------------------------------------------

def _small(width: int) -> tuple[nn.Module, int]:
    layers: list[nn.Module] = []
    cin = 3
    for i, cout in enumerate((width, 2 * width, 4 * width, 8 * width, 8 * width)):
        layers += [nn.Conv2d(cin, cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        if i >= 2:
            layers += [nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten()), cin


class Regressor(nn.Module):
    """Backbone + one linear head, decoded to the coefficient groups (see the module docstring)."""

    def __init__(self, n_identity: int, n_expression: int, n_texture: int, input_size: int, model_width: float,
                 backbone: str = "small", width: int = 16) -> None:
        super().__init__()
        self.sizes = {"identity": n_identity, "expression": n_expression, "pose": POSE_SIZE, "lighting": SH_SIZE,
                      "texture": n_texture, "specular": SPEC_SIZE}
        self.backbone, feat = _small(width) if backbone == "small" else resnet50()
        self.head = nn.Linear(feat, sum(self.sizes.values()))
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        bias = torch.zeros(sum(self.sizes.values()))
        bias[n_identity:n_identity + n_expression] = -2.0  # start near neutral
        self.head.bias.data.copy_(bias)
        self.input_size = input_size
        # the face spans ~85% of the crop at the start: log scale in crop pixels per model unit
        self.register_buffer("log_scale0", torch.tensor(math.log(0.85 * input_size / model_width)))
        sh0 = torch.zeros(SH_SIZE)
        sh0[:3] = 0.8 / SH_CONST[0]  # mostly ambient white light at the start
        self.register_buffer("sh0", sh0)
        self.register_buffer("spec0", torch.tensor([0.0, 0.0, 1.0, -3.0, math.log(20.0)]))  # dim frontal highlight

    def forward(self, x: Tensor) -> tuple[Tensor, ...]:
        raw = torch.split(self.head(self.backbone(x)), list(self.sizes.values()), dim=1)
        identity, expression, pose, sh, texture, spec = raw
        s = float(self.input_size)
        pose = torch.cat([pose[:, :3], s / 2 + s * pose[:, 3:5], self.log_scale0 + pose[:, 5:6]], 1)
        return identity, torch.sigmoid(expression), pose, sh + self.sh0, texture, spec + self.spec0


def build_regressor(face: TorchFaceModel, input_size: int, backbone: str = "small", width: int = 16) -> Regressor:
    extent = float((face.neutral[:, 0].max() - face.neutral[:, 0].min()).item())
    return Regressor(face.n_identity, face.n_expression, face.n_texture, input_size, extent, backbone, width)


def normalise(images: Tensor) -> Tensor:
    """(N, 3, H, W) RGB in [0, 1] -> network input."""
    return (images - MEAN) / STD


# -- parts for PRDL ---------------------------------------------------------------------------------

def _polygon_masks(lmk: np.ndarray, height: int, width: int) -> dict[str, np.ndarray]:
    """Boolean pixel masks per part drawn from a face's 68 points (no face parser needed)."""
    import cv2

    masks = {}
    for name, idx in PARTS.items():
        m = np.zeros((height, width), np.uint8)
        cv2.fillPoly(m, [np.round(lmk[list(idx)]).astype(np.int32)], 1)
        masks[name] = m.astype(bool)
    inner = np.zeros((height, width), np.uint8)
    cv2.fillPoly(inner, [np.round(lmk[60:68]).astype(np.int32)], 1)
    masks["lips"] &= ~inner.astype(bool)  # the lips, not the mouth opening
    hull = np.zeros((height, width), np.uint8)
    cv2.fillPoly(hull, [cv2.convexHull(np.round(lmk[:27]).astype(np.int32))], 1)
    skin = hull.astype(bool)
    for m in masks.values():
        skin &= ~m
    masks["skin"] = skin
    return masks


def part_targets(landmarks: np.ndarray, height: int, width: int, n_points: int, n_skin: int,
                 meshes: np.ndarray | None = None) -> dict[str, tuple[Tensor, Tensor]]:
    """PRDL target point sets per part from landmark polygons: (N, P, 2) pixel centres + masks, FPS-sampled.

    The polygons are the 68 points' (`landmarks`, (N, 68, 2)) or, with `meshes` ((N, 478, 2 or 3)
    in the same pixels), the face mesh's own (`part_masks_478`), which follow the lids, lips and
    face oval more closely; `landmarks` is then not read.
    """
    if meshes is None:
        faces = ((_polygon_masks(lmk, height, width), lmk, PART_LANDMARKS_68) for lmk in landmarks)
    else:
        stand_in = part_landmarks_478()
        faces = ((part_masks_478(mesh, height, width), mesh[:, :2], stand_in) for mesh in meshes)
    out: dict[str, list[np.ndarray]] = {}
    for masks, points, stand_ins in faces:
        for name, m in masks.items():
            ys, xs = np.nonzero(m)
            pts = np.stack([xs, ys], -1).astype(np.float32) + 0.5
            if len(pts) == 0:  # a part squeezed to nothing: its landmarks stand in
                pts = points[list(stand_ins[name])].astype(np.float32)
            k = n_skin if name == "skin" else n_points
            if len(pts) > k:
                pts = pts[L.farthest_point_sampling(torch.from_numpy(pts), k).numpy()]
            out.setdefault(name, []).append(pts)
    result = {}
    widths = {name: max(len(s) for s in sets) for name, sets in out.items()}
    for name, sets in out.items():
        p = max(widths[name], widths.get(MIRROR_PARTS.get(name, name), 0))  # mirrored parts can trade rows
        pts = torch.zeros(len(sets), p, 2)
        mask = torch.zeros(len(sets), p, dtype=torch.bool)
        for i, s in enumerate(sets):
            pts[i, :len(s)] = torch.from_numpy(s)
            mask[i, :len(s)] = True
        result[name] = (pts, mask)
    return result


def vertex_parts(face: TorchFaceModel, n_skin: int,
                 parts: Literal["ibug68", "mesh478"] = "ibug68") -> dict[str, Tensor]:
    """Vertex indices per part: the vertices inside the part polygons of the neutral's front view, plus
    the vertices of each non-skin part's landmarks (a thin part may hold no vertex inside).

    The polygons are those `part_targets` draws on the image, so predicted and target sets match:
    the 68 points' ("ibug68") or the face mesh's ("mesh478": the neutral's vertices are the 478
    mediapipe points, as in the built-in rig).
    """
    xy = face.neutral[:, :2].numpy() * [1, -1]  # y down like the image, so the polygons match the image masks
    lo = xy.min(0)
    scale = 200.0 / (xy.max(0) - lo).max()  # rasterise at ~200 px to reuse the pixel masks
    px = np.clip(((xy - lo) * scale).astype(int), 0, 219)
    if parts == "mesh478":
        masks = part_masks_478((xy - lo) * scale, 220, 220)
        own = part_landmarks_478()
    else:
        lmk = face.landmarks(torch.from_numpy(xy[None].astype(np.float32)))[0].numpy()
        masks = _polygon_masks((lmk - lo) * scale, 220, 220)
        own = {name: face.lmk_vertices[list(idx), 0].numpy() for name, idx in PARTS.items()}
    out = {}
    for name, m in masks.items():
        idx = np.nonzero(m[px[:, 1], px[:, 0]])[0]
        if name != "skin":
            idx = np.union1d(idx, own[name])
        elif len(idx) > n_skin:
            idx = idx[L.farthest_point_sampling(face.neutral[idx], n_skin).numpy()]
        out[name] = torch.from_numpy(np.asarray(idx, np.int64))
    return out


# -- data ------------------------------------------------------------------------------------------

@dataclass
class RegressionData:
    """Training images with their targets; optional fields are None when the data lacks them."""

    images: Tensor                     # (N, 3, S, S) in [0, 1]
    landmarks: Tensor                  # (N, 68, 2) crop pixels
    held: Tensor                       # (N,) bool
    p_closed: Tensor | None = None     # (N,) or (N, 2)
    subject: Tensor | None = None      # (N,) long
    targets: dict[str, Tensor] | None = None  # identity / expression / pose pseudo-labels
    landmarks478: Tensor | None = None  # (N, 478, 2 or 3) crop pixels: the face mesh, for mesh478 PRDL parts

    def __len__(self) -> int:
        return self.images.shape[0]


def _held_split(n: int, fraction: float, seed: int) -> Tensor:
    gen = torch.Generator().manual_seed(seed + 1)
    held = torch.zeros(n, dtype=torch.bool)
    held[torch.randperm(n, generator=gen)[:int(round(n * fraction))]] = True
    return held


def load_data(recipe: Recipe, face: TorchFaceModel) -> RegressionData:
    """The recipe's data at the network's input size (npz images must already be aligned square crops)."""
    cfg, size = recipe.data, recipe.net.input_size
    if cfg.kind == "synthetic":
        from facetrack.training.synthetic import synthetic_batch

        batch = synthetic_batch(face, cfg.samples, size, seed=cfg.seed, subjects=cfg.subjects,
                                sigma=recipe.train.splat_sigma)
        # the blink mode's weight stands in for an eye-state classifier's P(closed)
        return RegressionData(batch.images, batch.landmarks, _held_split(cfg.samples, cfg.held_fraction, cfg.seed),
                              p_closed=batch.expression[:, 0], subject=batch.subject,
                              targets={"identity": batch.identity, "expression": batch.expression, "pose": batch.pose})
    with np.load(cfg.path, allow_pickle=False) as z:
        images = torch.from_numpy(z["images"]).permute(0, 3, 1, 2).float() / 255
        f = size / images.shape[-1]
        if images.shape[-1] != size or images.shape[-2] != size:
            images = torch.nn.functional.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
        lmk = torch.from_numpy(z["landmarks"].astype(np.float32)) * f
        # a missing eye-state reading (NaN) means no lid correction
        p = torch.from_numpy(np.nan_to_num(z["p_closed"].astype(np.float32))) if "p_closed" in z else None
        subj = torch.from_numpy(z["subject"].astype(np.int64)) if "subject" in z else None
        targets = {k: torch.from_numpy(z[k].astype(np.float32)) for k in ("identity", "expression", "pose") if k in z}
        mesh = torch.from_numpy(z["landmarks478"].astype(np.float32)) * f if "landmarks478" in z else None
    if cfg.held_subjects is not None:
        if subj is None:
            raise ValueError("data.held_subjects needs a 'subject' array in the npz")
        held = torch.isin(subj, torch.tensor(cfg.held_subjects, dtype=torch.long))
    else:
        held = _held_split(len(images), cfg.held_fraction, cfg.seed)
    return RegressionData(images, lmk, held, p, subj, targets or None, mesh)


def load_face_model(recipe: Recipe) -> TorchFaceModel:
    m = recipe.model
    if m.face_model == "synthetic":
        from facetrack.training.synthetic import synthetic_model

        return synthetic_model(m.seed, m.identity, m.expression, m.texture)
    from facetrack.tracker.facemodel.format import MorphableModel

    return TorchFaceModel.from_morphable(MorphableModel.load(m.face_model))


def augment(images: Tensor, rotation_deg: float, scale: float, colour: float, gen: torch.Generator,
            flip: float = 0.0) -> tuple[Tensor, Callable[[Tensor], Tensor], Tensor]:
    """Random left/right mirror, in-plane rotation and zoom about the crop centre, and colour gain.

    Rotation, zoom and colour leave the coefficients the losses compare valid (identity and
    expression do not change; the pose is not a target); a mirror does not, so the caller
    swaps the targets of the flipped samples (`mirror_targets`). Returns the new images,
    the map that moves (N, P, 2) pixel points with them (mirrored, not re-ordered) and the
    (N,) bool mask of mirrored samples.
    """
    n, _, h, w = images.shape
    # no draw without flips: the rotation, zoom and colour of a seed stay those of runs before the flip
    flipped = torch.rand(n, generator=gen) < flip if flip else torch.zeros(n, dtype=torch.bool)
    ang = (torch.rand(n, generator=gen) * 2 - 1) * math.radians(rotation_deg)
    s = 1 + (torch.rand(n, generator=gen) * 2 - 1) * scale
    cos, sin = torch.cos(ang) * s, torch.sin(ang) * s
    mx = 1 - 2 * flipped.float()  # x -> -x about the centre first, then rotate and zoom
    fwd = torch.stack([torch.stack([cos * mx, -sin], -1), torch.stack([sin * mx, cos], -1)], -2)  # (N, 2, 2)
    centre = torch.tensor([w / 2, h / 2])
    # grid_sample pulls: output pixel p reads input fwd^-1 (p - c) + c, in normalised coordinates
    theta = torch.cat([torch.linalg.inv(fwd), torch.zeros(n, 2, 1)], -1)
    out = torch.nn.functional.grid_sample(
        images, torch.nn.functional.affine_grid(theta, list(images.shape), align_corners=False),
        padding_mode="border", align_corners=False)
    gain = 1 + (torch.rand(n, 3, 1, 1, generator=gen) * 2 - 1) * colour
    out = (out * gain + (torch.rand(n, 1, 1, 1, generator=gen) * 2 - 1) * colour * 0.5).clamp(0, 1)

    def move(points: Tensor) -> Tensor:
        return (points - centre) @ fwd.transpose(1, 2) + centre

    return out, move, flipped


def _rows(mask: Tensor, new: Tensor, old: Tensor) -> Tensor:
    return torch.where(mask.reshape(-1, *([1] * (old.ndim - 1))), new, old)


def mirror_targets(flipped: Tensor, lmk: Tensor, p_closed: Tensor | None, expression: Tensor | None,
                   parts: dict[str, tuple[Tensor, Tensor]] | None, exp_perm: Tensor
                   ) -> tuple[Tensor, Tensor | None, Tensor | None, dict[str, tuple[Tensor, Tensor]] | None]:
    """Targets of the mirrored samples, after `augment`'s point map: the 68 points re-ordered
    (the subject's right eye is now on the other side), the two eye states (right, left)
    swapped, the expression's Left/Right weights swapped (`exp_perm`) and the eyes' PRDL
    point sets exchanged. Mirroring twice gives the input back."""
    lmk = _rows(flipped, lmk[:, list(IBUG68_MIRROR)], lmk)
    if p_closed is not None and p_closed.ndim == 2:
        p_closed = _rows(flipped, p_closed.flip(1), p_closed)
    if expression is not None:
        expression = _rows(flipped, expression[:, exp_perm], expression)
    if parts is not None:
        other = {n: parts[MIRROR_PARTS.get(n, n)] for n in parts}
        parts = {n: (_rows(flipped, other[n][0], p), _rows(flipped, other[n][1], m)) for n, (p, m) in parts.items()}
    return lmk, p_closed, expression, parts


def expression_mirror(recipe: Recipe, face: TorchFaceModel) -> Tensor:
    """The Left/Right permutation of the model's expression modes: from the names in a facemodel
    file (ARKit's with the built-in rig); the synthetic model's designed modes are symmetric."""
    if recipe.model.face_model != "synthetic":
        from facetrack.tracker.facemodel.format import MorphableModel

        return mirror_permutation(MorphableModel.load(recipe.model.face_model).exp_names)
    if face.n_expression > 4:
        raise ValueError("train.augment_flip: the synthetic model's random modes (beyond 4) have no mirror")
    return torch.arange(face.n_expression)


# -- training --------------------------------------------------------------------------------------

class _Sir(nn.Module):
    """SIR's class weights (cos-loss) and weighted centers, trained alongside the regressor."""

    def __init__(self, n_subjects: int, dim: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(n_subjects, dim) * 0.1)
        self.register_buffer("centers", torch.zeros(n_subjects, dim))


def compute_losses(recipe: Recipe, face: TorchFaceModel, out: tuple[Tensor, ...], images: Tensor, lmk: Tensor,
                   step: int, ctx: dict) -> dict[str, Tensor]:
    """Every loss with a non-zero weight, unweighted; `ctx` carries the batch's extras and the trainer's state."""
    w = recipe.losses
    identity, expression, pose, sh, texture, spec = out
    size = images.shape[-1]
    r = render(face, identity, expression, pose, sh, texture, spec, size, size, recipe.train.splat_sigma)
    terms: dict[str, Tensor] = {}
    if w.lmk:
        terms["lmk"] = L.landmark_loss(r.landmarks, lmk, ctx["lmk_weights"], ctx["hard"].indices(), w.hard_weight)
        if w.lmk_normalise_hw:
            terms["lmk"] = terms["lmk"] / (size * size)
        ctx["hard"].add(r.landmarks, lmk)
    if w.ldl:
        target = lmk if not w.elam or ctx.get("p_closed") is None else L.elam_correct(lmk, ctx["p_closed"])
        terms["ldl"] = L.ldl_loss(r.landmarks, target)
    if w.prdl:
        pred = {n: (r.px[:, idx], torch.ones(r.px.shape[0], len(idx), dtype=torch.bool))
                for n, idx in ctx["vertex_parts"].items() if len(idx)}
        terms["prdl"] = L.prdl_loss(pred, ctx["part_targets"], ctx["anchors"], ctx["part_weights"], size, size)
    if w.pho:
        terms["pho"] = L.photometric_loss(r.image, images, r.mask, r.skin)
    if w.per:
        terms["per"] = perceptual_term(ctx["face_features"], images, r.image, r.mask)
    if w.mouth and step >= w.mouth_warmup_steps:
        terms["mouth"] = L.inner_mouth_area_loss(r.landmarks, lmk)
    if w.uniform and face.n_texture:
        terms["uniform"] = L.uniform_albedo_loss(r.albedo, face.skin)
    terms["reg"] = L.coefficient_regulariser(identity, expression, texture, w.reg_id, w.reg_exp, w.reg_tex)
    sir: _Sir | None = ctx.get("sir")
    if sir is not None and ctx.get("subject") is not None:
        subj = ctx["subject"]
        if w.sir_cos:
            terms["sir_cos"] = L.cos_loss(identity, sir.weight, subj)
        if w.sir_center:
            conf = L.sir_confidence(euler_from_rotation(rodrigues(pose[:, :3])), expression, w.sir_lambda).detach()
            terms["sir_center"] = L.weighted_center_loss(identity, subj, sir.centers, conf)
            L.update_centers(sir.centers, identity.detach(), subj, conf, w.sir_center_rate)
        if w.sir_kl:
            # the facemodel format scales identity modes so that sigma = 1: alpha itself should be N(0, 1)
            terms["sir_kl"] = L.kl_standard_normal(identity, torch.ones(identity.shape[1]))
    if w.coef and ctx.get("targets"):
        t = ctx["targets"]
        flipped = ctx.get("flipped")
        # a mirrored face has another identity (the basis is not symmetric): its identity target is dropped
        rows = {"identity": None if flipped is None else ~flipped, "expression": None}
        terms["coef"] = sum(coefficient_error(p, t[k], w.coef_kind, rows[k])
                            for k, p in (("identity", identity), ("expression", expression)) if k in t)
    return terms


def coefficient_error(pred: Tensor, target: Tensor, kind: str, rows: Tensor | None = None) -> Tensor:
    """Mean squared ("l2"), absolute ("l1") or absolute plus squared ("l1+l2") error over the rows kept
    by `rows` (all by default).

    L2 pulls a weight the image does not determine to its mean; L1 to its median, which for
    the mostly-zero blendshapes is near 0, and is the objective the agreement MAE measures,
    but it pushes a large miss (an unseen blink) no harder than a small one; the sum keeps
    L1's median for small errors and L2's pull on large ones."""
    e = pred - target
    d = {"l1": e.abs(), "l2": e ** 2, "l1+l2": e.abs() + e ** 2}[kind]
    if rows is None:
        return d.mean()
    return (d * rows[:, None]).sum() / (rows.sum() * d.shape[1]).clamp_min(1)


def _weight(recipe: Recipe, name: str) -> float:
    w = recipe.losses
    return {"reg": 1.0, "sir_cos": w.sir_cos, "sir_center": w.sir_center, "sir_kl": w.sir_kl}.get(
        name, getattr(w, name, 0.0))


@dataclass
class TrainResult:
    model: Regressor
    history: list[dict]
    face: TorchFaceModel
    data: RegressionData


def evaluate(model: Regressor, face: TorchFaceModel, data: RegressionData, mask: Tensor) -> dict[str, float]:
    """Landmark NME (mean point error / outer-eye-corner distance) and coefficient MAE where targets exist."""
    model.eval()
    if not bool(mask.any()):
        return {}
    with torch.no_grad():
        out = model(normalise(data.images[mask]))
        _, px = transform(face.vertices(out[0], out[1]), out[2])
        pred = face.landmarks(px)
        gt = data.landmarks[mask]
        iod = (gt[:, 36] - gt[:, 45]).norm(dim=-1)
        res = {"nme": float(((pred - gt).norm(dim=-1).mean(-1) / iod).mean())}
        if data.targets and "expression" in data.targets:
            res["exp_mae"] = float((out[1] - data.targets["expression"][mask]).abs().mean())
    return res


def _prdl_meshes(parts: str, data: RegressionData, face: TorchFaceModel) -> np.ndarray | None:
    """The face meshes the PRDL targets are drawn from (None: the 68 points'); mesh478 parts need a mesh
    per crop and a model whose vertices are the mesh points, or predicted and target parts differ."""
    if parts != "mesh478":
        return None
    if data.landmarks478 is None:
        raise ValueError("losses.prdl_parts='mesh478' needs landmarks478 in the data: build it with "
                         "`facetrack train data images` on 478-point labels or `facetrack train data clips`, "
                         "or set losses.prdl_parts to 'ibug68'")
    n = face.neutral.shape[0]
    if n != data.landmarks478.shape[1]:
        raise ValueError(f"losses.prdl_parts='mesh478' needs a face model whose vertices are the "
                         f"{data.landmarks478.shape[1]} face mesh points (the built-in rig: set model.face_model to "
                         f"the *_face_model.npz of `facetrack train data clips`); this one has {n} vertices, so "
                         "set losses.prdl_parts to 'ibug68'")
    return data.landmarks478.numpy()


def train_regressor(recipe: Recipe, out_dir: Path | None = None, resume: bool = False,
                    progress: Callable[[dict], None] | None = None) -> TrainResult:
    """Train per the recipe; with out_dir, write `checkpoint.pt` each epoch and `curves.csv`; resume from them."""
    cfg = recipe.train
    torch.manual_seed(cfg.seed)
    torch.set_num_threads(cfg.threads)
    face = load_face_model(recipe)
    data = load_data(recipe, face)
    size = recipe.net.input_size
    model = build_regressor(face, size, recipe.net.backbone, recipe.net.width)
    w = recipe.losses
    n_subjects = int(data.subject.max()) + 1 if data.subject is not None else 0
    sir = _Sir(n_subjects, face.n_identity) if n_subjects and (w.sir_cos or w.sir_center or w.sir_kl) else None
    params = list(model.parameters()) + (list(sir.parameters()) if sir is not None else [])
    opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    ctx: dict = {"lmk_weights": L.landmark_weights(w.lmk_eye_mouth, w.lmk_contour),
                 "hard": L.HardPoints(68, w.hard_points), "sir": sir}
    if w.per:
        ctx["face_features"] = load_face_features(w.per_network)
    train_idx = torch.nonzero(~data.held).flatten()
    exp_perm = expression_mirror(recipe, face) if cfg.augment_flip else torch.arange(face.n_expression)
    if w.prdl:
        ctx["anchors"] = L.grid_anchors(size, size, w.prdl_grid)
        meshes = _prdl_meshes(w.prdl_parts, data, face)
        ctx["vertex_parts"] = vertex_parts(face, w.prdl_skin_points, w.prdl_parts)
        all_targets = part_targets(data.landmarks.numpy(), size, size, w.prdl_points, w.prdl_skin_points, meshes)
        ctx["part_weights"] = {n: 1.0 for n in all_targets}
    start_epoch, step, history = 0, 0, []
    ckpt = out_dir / "checkpoint.pt" if out_dir is not None else None
    if resume and ckpt is not None and ckpt.is_file():
        state = torch.load(ckpt, weights_only=True)
        model.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        if sir is not None and "sir" in state:
            sir.load_state_dict(state["sir"])
        ctx["hard"].previous = state["hard_points"]
        start_epoch, step = int(state["epoch"]), int(state["step"])
        history = json.loads((out_dir / "history.json").read_text()) if (out_dir / "history.json").is_file() else []
        log.info("resumed from %s at epoch %d", ckpt, start_epoch)
    gen = torch.Generator().manual_seed(cfg.seed + 1000 * start_epoch)
    t0 = time.time()
    for epoch in range(start_epoch, cfg.epochs):
        model.train()
        if cfg.lr_schedule == "cosine":
            for group in opt.param_groups:
                group["lr"] = cfg.lr * 0.5 * (1 + math.cos(math.pi * epoch / cfg.epochs))
        order = train_idx[torch.randperm(len(train_idx), generator=gen)]
        sums: dict[str, float] = {}
        n_batches = max(1, len(order) // cfg.batch_size)
        for b in range(n_batches):
            sel = order[b * cfg.batch_size:(b + 1) * cfg.batch_size]
            images, lmk = data.images[sel], data.landmarks[sel]
            ctx["p_closed"] = data.p_closed[sel] if data.p_closed is not None else None
            ctx["subject"] = data.subject[sel] if data.subject is not None else None
            ctx["targets"] = {k: v[sel] for k, v in data.targets.items()} if data.targets else None
            if w.prdl:
                ctx["part_targets"] = {n: (p[sel], m[sel]) for n, (p, m) in all_targets.items()}
            if cfg.augment_rotation_deg or cfg.augment_scale or cfg.augment_colour or cfg.augment_flip:
                images, move, flipped = augment(images, cfg.augment_rotation_deg, cfg.augment_scale,
                                                cfg.augment_colour, gen, cfg.augment_flip)
                parts = {n: (move(p), m) for n, (p, m) in ctx["part_targets"].items()} if w.prdl else None
                t = ctx["targets"]
                lmk, ctx["p_closed"], exp, parts = mirror_targets(
                    flipped, move(lmk), ctx["p_closed"], t.get("expression") if t else None, parts, exp_perm)
                if exp is not None:
                    ctx["targets"] = {**t, "expression": exp}
                if parts is not None:
                    ctx["part_targets"] = parts
                ctx["flipped"] = flipped
            terms = compute_losses(recipe, face, model(normalise(images)), images, lmk, step, ctx)
            loss = sum(_weight(recipe, k) * v for k, v in terms.items())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 10.0)
            opt.step()
            step += 1
            sums["loss"] = sums.get("loss", 0.0) + loss.item()
            for k, v in terms.items():
                sums[k] = sums.get(k, 0.0) + v.item()
        ctx["hard"].end_epoch()
        row = {"epoch": epoch + 1, "step": step, **{k: v / n_batches for k, v in sums.items()}}
        row.update({f"held_{k}": v for k, v in evaluate(model, face, data, data.held).items()})
        row["seconds"] = time.time() - t0
        history.append(row)
        if progress is not None:
            progress(row)
        if out_dir is not None:
            _save(out_dir, model, opt, sir, ctx["hard"], epoch + 1, step, history)
        if cfg.max_seconds is not None and time.time() - t0 > cfg.max_seconds:
            log.warning("stopping after %d epochs: time limit", epoch + 1)
            break
    model.eval()
    return TrainResult(model, history, face, data)


def _save(out_dir: Path, model: Regressor, opt: torch.optim.Optimizer, sir: _Sir | None, hard: L.HardPoints,
          epoch: int, step: int, history: list[dict]) -> None:
    """State dicts only (tensors and numbers: loadable with weights_only=True), written via a temp file."""
    out_dir.mkdir(parents=True, exist_ok=True)
    state = {"model": model.state_dict(), "optimizer": opt.state_dict(), "epoch": epoch, "step": step,
             "hard_points": hard.previous}
    if sir is not None:
        state["sir"] = sir.state_dict()
    tmp = out_dir / "checkpoint.pt.part"
    torch.save(state, tmp)
    tmp.replace(out_dir / "checkpoint.pt")
    (out_dir / "history.json").write_text(json.dumps(history))
    keys = list(dict.fromkeys(k for row in history for k in row))
    with open(out_dir / "curves.csv", "w", newline="") as f:
        wr = csv.DictWriter(f, keys)
        wr.writeheader()
        wr.writerows(history)


# -- export ----------------------------------------------------------------------------------------

def export_onnx(model: Regressor, path: Path, metadata: dict | None = None) -> Path:
    """Write the `regress` engine: input `crops` (N, 3, S, S) normalised RGB; one output per coefficient group."""


    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.eval()
    names = list(model.sizes)
    s = model.input_size
    export_batched(model, torch.zeros(2, 3, s, s), path, names)
    meta = {
        "engine": "regress",
        "version": ENGINE_VERSION,
        "input": "crops",
        "input_layout": "NCHW RGB, aligned square face crop",
        "input_size": [s, s],
        "normalisation": {"mean": MEAN, "std": STD, "scale": 1 / 255},
        "outputs": model.sizes,
        "output_layout": {
            "identity": "N(0,1) identity coefficients", "expression": "expression weights in [0, 1]",
            "pose": "axis-angle (3), translation x, y in crop pixels (2), log(crop pixels per model unit) (1); "
                    "weak perspective, image y down",
            "lighting": "SH irradiance coefficients, 9 bands x RGB (band-major)", "texture": "albedo coefficients",
            "specular": "Blinn-Phong light direction (3), log intensity, log shininess"},
    }
    meta.update(metadata or {})
    return attach_metadata(path, meta)
