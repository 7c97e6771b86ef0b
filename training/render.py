"""Differentiable rendering of a linear face model in pure torch (no rasteriser dependency).

Model -> vertices (`TorchFaceModel`), weak-perspective projection with an axis-angle
rotation (`project`), diffuse SH lighting with 9 bands x RGB plus one Blinn-Phong specular
light (`shade`), and a soft splat of per-vertex colours to the image (`splat`): each vertex
spreads a Gaussian over the pixels around it (scatter-add, O(V r^2), not O(V H W)), and a
soft z-weight lets the front surface win. Gradients reach colours, positions and depth.

Frames: head frame x = subject's left, y up, z toward the camera (the facemodel format);
image pixels x right, y down. The camera looks along -z, so the view vector is +z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

from facetrack.tracker.facemodel.format import MorphableModel

SH_CONST = (
    math.pi * 1 / (2 * math.sqrt(math.pi)),
    2 * math.pi / 3 * math.sqrt(3 / (4 * math.pi)),
    math.pi / 4 * 3 * math.sqrt(5 / (12 * math.pi)),
    math.pi / 4 * 0.5 * math.sqrt(5 / (4 * math.pi)),
)
"""Irradiance constants a_l * c_l of Ramamoorthi & Hanrahan (as in Deng et al.): the DC band
gives pi * Y00 = sqrt(pi)/2 ~ 0.886 per unit coefficient."""
POSE_SIZE = 6
"""Pose layout: axis-angle rotation (3), translation x, y in pixels (2), log scale (1)."""
SH_SIZE = 27
SPEC_SIZE = 5
"""Specular layout: light direction (3, normalised here), log intensity (1), log shininess (1)."""


@dataclass
class TorchFaceModel:
    """The linear model as tensors: shape, landmark embedding, albedo, vertex parts."""

    neutral: Tensor          # (V, 3)
    id_basis: Tensor         # (K_id, V, 3)
    exp_basis: Tensor        # (K_exp, V, 3)
    triangles: Tensor        # (F, 3) long
    lmk_vertices: Tensor     # (68, 3) long
    lmk_bary: Tensor         # (68, 3)
    albedo: Tensor           # (V, 3) mean diffuse albedo
    tex_basis: Tensor        # (K_tex, V, 3)
    skin: Tensor             # (V,) skin weight (0 on eyes, brows, inner mouth)

    @classmethod
    def from_morphable(cls, model: MorphableModel, albedo: float = 0.6) -> "TorchFaceModel":
        """A facetrack model (no albedo of its own): grey albedo, no texture basis, skin from part polygons."""
        v = model.n_vertices
        t = cls(torch.from_numpy(model.neutral), torch.from_numpy(model.id_basis), torch.from_numpy(model.exp_basis),
                torch.from_numpy(model.triangles.astype(np.int64)),
                torch.from_numpy(model.lmk68_vertices.astype(np.int64)),
                torch.from_numpy(model.lmk68_bary), torch.full((v, 3), albedo), torch.zeros(0, v, 3), torch.ones(v))
        t.skin = vertex_skin(t)
        return t

    @property
    def n_identity(self) -> int:
        return self.id_basis.shape[0]

    @property
    def n_expression(self) -> int:
        return self.exp_basis.shape[0]

    @property
    def n_texture(self) -> int:
        return self.tex_basis.shape[0]

    def vertices(self, identity: Tensor, expression: Tensor) -> Tensor:
        """(B, V, 3) head-frame vertices."""
        return (self.neutral + torch.einsum("bk,kvc->bvc", identity, self.id_basis)
                + torch.einsum("bk,kvc->bvc", expression, self.exp_basis))

    def colours(self, texture: Tensor) -> Tensor:
        """(B, V, 3) diffuse albedo."""
        if self.n_texture == 0:
            return self.albedo.expand(texture.shape[0], -1, -1)
        return self.albedo + torch.einsum("bk,kvc->bvc", texture, self.tex_basis)

    def landmarks(self, points: Tensor) -> Tensor:
        """iBUG-68 points (B, 68, D) on (B, V, D) vertices or projected vertices."""
        return (points[:, self.lmk_vertices] * self.lmk_bary[None, :, :, None]).sum(2)


def rodrigues(w: Tensor) -> Tensor:
    """Axis-angle (B, 3) -> rotation (B, 3, 3), smooth at zero (first-order series below 1e-6)."""
    theta2 = (w ** 2).sum(-1, keepdim=True)
    theta = theta2.clamp_min(1e-12).sqrt()
    small = theta2 < 1e-12
    a = torch.where(small, 1 - theta2 / 6, torch.sin(theta) / theta)[..., None]
    b = torch.where(small, 0.5 - theta2 / 24, (1 - torch.cos(theta)) / theta2.clamp_min(1e-12))[..., None]
    x, y, z = w.unbind(-1)
    zero = torch.zeros_like(x)
    k = torch.stack([zero, -z, y, z, zero, -x, -y, x, zero], -1).reshape(-1, 3, 3)
    eye = torch.eye(3, dtype=w.dtype).expand_as(k)
    return eye + a * k + b * (k @ k)


def euler_from_rotation(r: Tensor) -> Tensor:
    """(B, 3, 3) -> (pitch, yaw, roll) angles; only their cosines matter to SIR's confidence."""
    yaw = torch.asin((-r[:, 2, 0]).clamp(-1, 1))
    pitch = torch.atan2(r[:, 2, 1], r[:, 2, 2])
    roll = torch.atan2(r[:, 1, 0], r[:, 0, 0])
    return torch.stack([pitch, yaw, roll], -1)


def transform(vertices: Tensor, pose: Tensor) -> tuple[Tensor, Tensor]:
    """Rotated vertices (B, V, 3) and their pixel positions (B, V, 2) under a weak-perspective pose.

    x_px = s * (R v)_x + t_x, y_px = -s * (R v)_y + t_y (image y is down).
    """
    rot = rodrigues(pose[:, :3])
    cam = vertices @ rot.transpose(1, 2)
    s = pose[:, 5:6].exp()[..., None]
    px = torch.stack([cam[..., 0], -cam[..., 1]], -1) * s + pose[:, None, 3:5]
    return cam, px


def vertex_normals(vertices: Tensor, triangles: Tensor) -> Tensor:
    """Area-weighted unit vertex normals (B, V, 3) of counter-clockwise triangles."""
    a, b, c = (vertices[:, triangles[:, i]] for i in range(3))
    fn = torch.cross(b - a, c - a, dim=-1)
    n = torch.zeros_like(vertices)
    for i in range(3):
        n = n.index_add(1, triangles[:, i], fn)
    return torch.nn.functional.normalize(n, dim=-1, eps=1e-8)


def sh_basis(normals: Tensor) -> Tensor:
    """The 9 SH irradiance terms (.., 9) of unit normals, constants included."""
    x, y, z = normals.unbind(-1)
    c0, c1, c2, c3 = SH_CONST
    return torch.stack([
        torch.full_like(x, c0), -c1 * y, c1 * z, -c1 * x,
        c2 * x * y, -c2 * y * z, c3 * (3 * z * z - 1), -c2 * x * z, c2 * 0.5 * (x * x - y * y),
    ], -1)


def shade(albedo: Tensor, normals: Tensor, sh: Tensor, specular: Tensor | None = None,
          spec_albedo: float | Tensor = 0.2) -> Tensor:
    """Vertex colours: albedo * SH irradiance (sh (B, 27) as 9 bands x RGB) + Blinn-Phong highlight.

    The highlight is spec_albedo * I * max(0, n.h)^shininess with h = normalise(l + v), v = +z;
    specular (B, 5) = light direction (3), log I, log shininess.
    """
    irr = torch.einsum("bvk,bkc->bvc", sh_basis(normals), sh.reshape(-1, 9, 3))
    colour = albedo * irr
    if specular is not None:
        light = torch.nn.functional.normalize(specular[:, :3], dim=-1, eps=1e-8)
        view = torch.tensor([0.0, 0.0, 1.0], dtype=light.dtype)
        half = torch.nn.functional.normalize(light + view, dim=-1, eps=1e-8)
        ndh = (normals * half[:, None]).sum(-1).clamp_min(0)
        spec = specular[:, 3:4].exp() * (ndh + 1e-8) ** specular[:, 4:5].exp()
        colour = colour + spec_albedo * spec[..., None]
    return colour


def splat(px: Tensor, depth: Tensor, values: Tensor, height: int, width: int, sigma: float = 1.0,
          radius: int = 2, depth_tau: float = 0.5) -> tuple[Tensor, Tensor]:
    """Soft-splat per-vertex values (B, V, C) at pixel positions (B, V, 2) into (B, C, H, W) plus coverage.

    Pixel (u, v) gets sum_k w_k c_k / sum_k w_k with g_k = exp(-d_k^2 / 2 sigma^2) and
    w_k = g_k exp((z_k - z_max(u, v)) / tau) over the vertices within `radius` pixels, z_max
    the nearest of them (a soft z-buffer); coverage is 1 - exp(-4 sum_k g_k), saturating once a
    pixel holds about one vertex's worth of weight (the render mask).
    Pixel centres sit at integer + 0.5.
    """
    b, v, c = values.shape
    base = torch.floor(px.detach())
    offs = torch.arange(-radius, radius + 1, dtype=px.dtype)
    oy, ox = torch.meshgrid(offs, offs, indexing="ij")
    off = torch.stack([ox.reshape(-1), oy.reshape(-1)], -1)  # (K, 2)
    cells = base[:, :, None, :] + off  # (B, V, K, 2)
    d2 = ((cells + 0.5 - px[:, :, None, :]) ** 2).sum(-1)
    inside = (cells[..., 0] >= 0) & (cells[..., 0] < width) & (cells[..., 1] >= 0) & (cells[..., 1] < height)
    g = torch.exp(-d2 / (2 * sigma ** 2)) * inside
    flat = (cells[..., 1].clamp(0, height - 1) * width + cells[..., 0].clamp(0, width - 1)).long()
    flat = (flat + (torch.arange(b) * height * width)[:, None, None]).reshape(-1)
    n_pix = b * height * width
    z = depth.detach()[:, :, None].expand_as(g).reshape(-1)
    zmax = torch.full((n_pix,), -torch.inf, dtype=px.dtype).scatter_reduce(0, flat, z, "amax")
    w = (g.reshape(-1) * ((depth[:, :, None].expand_as(g).reshape(-1) - zmax[flat]) / depth_tau).exp())
    acc_w = torch.zeros(n_pix, dtype=px.dtype).index_add(0, flat, w)
    acc_c = torch.zeros(n_pix, c, dtype=px.dtype).index_add(
        0, flat, w[:, None] * values[:, :, None, :].expand(-1, -1, g.shape[2], -1).reshape(-1, c))
    cover = (1 - torch.exp(-4 * torch.zeros(n_pix, dtype=px.dtype).index_add(0, flat, g.reshape(-1)))).reshape(
        b, 1, height, width)
    image = (acc_c / acc_w.clamp_min(1e-8)[:, None]).reshape(b, height, width, c).permute(0, 3, 1, 2)
    return image, cover


@dataclass
class Rendered:
    vertices: Tensor   # (B, V, 3) camera-rotated
    px: Tensor         # (B, V, 2)
    landmarks: Tensor  # (B, 68, 2)
    albedo: Tensor     # (B, V, 3)
    image: Tensor      # (B, 3, H, W)
    mask: Tensor       # (B, 1, H, W)
    skin: Tensor       # (B, 1, H, W) skin weight of the rendered surface


def render(model: TorchFaceModel, identity: Tensor, expression: Tensor, pose: Tensor, sh: Tensor,
           texture: Tensor, specular: Tensor | None, height: int, width: int, sigma: float = 1.0) -> Rendered:
    """The full forward model of the regressor's outputs."""
    verts = model.vertices(identity, expression)
    cam, px = transform(verts, pose)
    albedo = model.colours(texture)
    normals = vertex_normals(cam, model.triangles)
    colour = shade(albedo, normals, sh, specular)
    s = pose[:, 5].exp()
    depth = cam[..., 2] * s[:, None]  # pixels, so depth_tau is in pixels too
    values = torch.cat([colour, model.skin.expand(cam.shape[0], -1)[..., None]], -1)
    out, mask = splat(px, depth, values, height, width, sigma=sigma)
    return Rendered(cam, px, model.landmarks(px), albedo, out[:, :3], mask, out[:, 3:4])


def vertex_skin(model: TorchFaceModel) -> Tensor:
    """1 for vertices outside the eye and inner-mouth polygons of the neutral's 68 points (front view)."""
    import cv2

    xy = model.neutral[:, :2].numpy()
    lmk = model.landmarks(model.neutral[None, :, :2])[0].numpy()
    skin = np.ones(len(xy), np.float32)
    for part in (range(36, 42), range(42, 48), range(60, 68)):
        poly = lmk[list(part)].astype(np.float32)
        inside = np.array([cv2.pointPolygonTest(poly, (float(x), float(y)), False) >= 0 for x, y in xy])
        skin[inside] = 0
    return torch.from_numpy(skin)
