"""The differentiable renderer on tiny meshes with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facetrack.training import render as R  # noqa: E402
from facetrack.training.synthetic import synthetic_batch, synthetic_model  # noqa: E402


def _plane(n: int = 9, extent: float = 4.0, albedo: float = 0.5) -> R.TorchFaceModel:
    """A flat n x n grid in the head frame's xy plane (facing the camera), one id and one exp mode."""
    g = np.linspace(-extent, extent, n, dtype=np.float32)
    xx, yy = np.meshgrid(g, g)
    verts = np.stack([xx.ravel(), yy.ravel(), np.zeros(n * n, np.float32)], -1)
    tris = []
    for r in range(n - 1):
        for c in range(n - 1):
            i = r * n + c
            tris += [[i, i + 1, i + n + 1], [i, i + n + 1, i + n]]  # CCW seen from +z
    v = n * n
    id_basis = torch.zeros(1, v, 3)
    id_basis[0, :, 2] = 1.0
    exp_basis = torch.zeros(1, v, 3)
    exp_basis[0, :, 0] = torch.from_numpy(verts[:, 0])  # widening
    return R.TorchFaceModel(torch.from_numpy(verts), id_basis, exp_basis, torch.tensor(tris), torch.zeros(68, 3,
                            dtype=torch.long), torch.tensor([[1.0, 0, 0]]).repeat(68, 1), torch.full((v, 3), albedo),
                            torch.zeros(0, v, 3), torch.ones(v))


def test_rodrigues_quarter_turn_and_zero():
    rot = R.rodrigues(torch.tensor([[0.0, 0.0, math.pi / 2], [0.0, 0.0, 0.0]]))
    assert rot[0] @ torch.tensor([1.0, 0, 0]) == pytest.approx(torch.tensor([0.0, 1.0, 0.0]), abs=1e-6)
    assert torch.allclose(rot[1], torch.eye(3))


def test_euler_of_a_yaw():
    e = R.euler_from_rotation(R.rodrigues(torch.tensor([[0.0, 0.3, 0.0]])))
    assert e[0].tolist() == pytest.approx([0.0, 0.3, 0.0], abs=1e-6)


def test_weak_perspective_projection_flips_y():
    pose = torch.tensor([[0.0, 0, 0, 10.0, 10.0, math.log(2.0)]])
    _, px = R.transform(torch.tensor([[[1.0, 1.0, 0.0]]]), pose)
    assert px[0, 0].tolist() == pytest.approx([12.0, 8.0])


def test_normals_of_a_front_facing_plane():
    m = _plane(3)
    n = R.vertex_normals(m.neutral[None], m.triangles)
    assert torch.allclose(n[0], torch.tensor([0.0, 0.0, 1.0]).expand_as(n[0]), atol=1e-6)


def test_dc_band_lights_a_constant_albedo_with_pi_y00():
    normals = torch.tensor([[[0.0, 0.0, 1.0], [1.0, 0.0, 0.0]]])
    sh = torch.zeros(1, 27)
    sh[0, :3] = 1.0
    c = R.shade(torch.full((1, 2, 3), 0.5), normals, sh)
    assert c.flatten().tolist() == pytest.approx([0.5 * math.sqrt(math.pi) / 2] * 6, rel=1e-6)


def test_blinn_phong_highlight_by_hand():
    normals = torch.tensor([[[0.0, 0.0, 1.0]]])
    sh = torch.zeros(1, 27)
    head_on = torch.tensor([[0.0, 0.0, 1.0, 0.0, math.log(8.0)]])  # I = 1, shininess 8
    c = R.shade(torch.zeros(1, 1, 3), normals, sh, head_on, spec_albedo=0.2)
    assert c[0, 0].tolist() == pytest.approx([0.2] * 3, rel=1e-5)
    side = torch.tensor([[1.0, 0.0, 0.0, 0.0, math.log(8.0)]])  # h = (1, 0, 1)/sqrt2 -> n.h = 0.7071
    c = R.shade(torch.zeros(1, 1, 3), normals, sh, side, spec_albedo=0.2)
    assert c[0, 0, 0].item() == pytest.approx(0.2 * math.sqrt(0.5) ** 8, rel=1e-4)


def test_splat_of_one_vertex_and_its_gradients():
    px = torch.tensor([[[2.5, 2.5]]], requires_grad=True)
    val = torch.tensor([[[0.7]]], requires_grad=True)
    img, cover = R.splat(px, torch.zeros(1, 1), val, 5, 5, sigma=1.0, radius=1)
    assert img[0, 0, 2, 2].item() == pytest.approx(0.7)
    assert cover[0, 0, 2, 2].item() == pytest.approx(1 - math.exp(-4))
    assert cover[0, 0, 0, 0].item() == 0.0  # outside the radius
    (img.sum() + cover[0, 0, 2, 3]).backward()
    assert val.grad.item() == pytest.approx(9.0)  # nine pixels each carry the value
    assert px.grad[0, 0, 0].item() > 0  # moving right raises the coverage of the pixel on the right


def test_soft_z_buffer_lets_the_front_surface_win():
    px = torch.tensor([[[2.5, 2.5], [2.5, 2.5]]])
    depth = torch.tensor([[0.0, 5.0]])  # the second is nearer (z toward the camera)
    img, _ = R.splat(px, depth, torch.tensor([[[0.0], [1.0]]]), 5, 5, depth_tau=0.5)
    assert img[0, 0, 2, 2].item() == pytest.approx(1.0, abs=1e-4)


def test_constant_albedo_plane_lit_by_the_dc_band_renders_the_expected_colour():
    m = _plane()
    sh = torch.zeros(1, 27)
    sh[0, :3] = 1.0
    pose = torch.tensor([[0.0, 0, 0, 16.0, 16.0, math.log(3.0)]])
    z = torch.zeros(1, 1)
    r = R.render(m, z, z, pose, sh, torch.zeros(1, 0), None, 32, 32)
    centre = r.image[0, :, 12:20, 12:20]
    assert torch.allclose(centre, torch.full_like(centre, 0.5 * math.sqrt(math.pi) / 2), atol=1e-5)
    assert r.mask[0, 0, 16, 16] > 0.95 and r.mask[0, 0, 0, 0] == 0


def test_gradients_reach_every_coefficient_group():
    model = synthetic_model(0, 3, 4, 2)
    n = 2
    ident = torch.zeros(n, 3, requires_grad=True)
    exp = torch.full((n, 4), 0.2, requires_grad=True)
    pose = torch.tensor([[0.1, 0.1, 0.0, 24.0, 24.0, math.log(2.5)]] * n, requires_grad=True)
    sh = torch.zeros(n, 27)
    sh[:, :3] = 1.0
    sh.requires_grad_(True)
    tex = torch.zeros(n, 2, requires_grad=True)
    spec = torch.tensor([[0.0, 0.0, 1.0, -1.0, math.log(10.0)]] * n, requires_grad=True)
    target = torch.rand(n, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    r = R.render(model, ident, exp, pose, sh, tex, spec, 48, 48)
    ((r.image - target) ** 2 * r.mask).mean().add(r.landmarks.sum() * 1e-3).backward()
    for t in (ident, exp, pose, sh, tex, spec):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0


def test_synthetic_faces_have_their_landmarks_inside_the_image_and_skin_off_the_eyes():
    model = synthetic_model()
    assert model.skin[36:48].sum() == 0 and model.skin[60:68].sum() == 0 and model.skin.mean() > 0.8
    b = synthetic_batch(model, 4, 64, seed=1, subjects=2)
    assert b.images.shape == (4, 3, 64, 64) and 0 <= b.images.min() and b.images.max() <= 1
    assert (b.landmarks > 0).all() and (b.landmarks < 64).all()
    assert torch.equal(b.identity[0], b.identity[2]) and b.subject.tolist() == [0, 1, 0, 1]
