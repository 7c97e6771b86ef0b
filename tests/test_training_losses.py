"""The papers' losses against values computed by hand on tiny inputs."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from facetrack.training import losses as L  # noqa: E402


def _face(corner_dist: float = 10.0) -> torch.Tensor:
    """(1, 68, 2) zeros with the outer eye corners corner_dist apart (the relative-distance scale)."""
    lmk = torch.zeros(1, 68, 2)
    lmk[0, 45, 0] = corner_dist
    return lmk


def test_landmark_weights_up_weight_eyes_and_mouth_and_down_weight_the_contour():
    w = L.landmark_weights(1.5, 0.5)
    assert w[0] == 0.5 and w[16] == 0.5 and w[27] == 1.0 and w[36] == 1.5 and w[67] == 1.5


def test_landmark_loss_by_hand_with_hard_points():
    pred = torch.tensor([[[0.0, 0.0], [3.0, 4.0]]])
    target = torch.zeros(1, 2, 2)
    w = torch.tensor([1.0, 2.0])
    assert L.landmark_loss(pred, target, w).item() == pytest.approx((0 * 1 + 25 * 2) / 2)
    hard = torch.tensor([1])
    assert L.landmark_loss(pred, target, w, hard, 0.5).item() == pytest.approx(25 + 0.5 * 25)


def test_hard_points_are_the_previous_epochs_worst():
    hp = L.HardPoints(4, 2)
    assert hp.indices().numel() == 0  # nothing before the first epoch ends
    hp.add(torch.tensor([[[1.0, 0], [0, 0], [3, 0], [2, 0]]]), torch.zeros(1, 4, 2))
    hp.end_epoch()
    assert hp.indices().tolist() == [2, 3]


def test_elam_paper_rule_and_generalisation():
    lmk = _face()
    lmk[0, 37, 1], lmk[0, 41, 1] = 10.0, 14.0  # gap 4, image y down: the lower lid is below
    out = L.elam_correct(lmk, torch.tensor([0.5]))
    assert out[0, 37, 1].item() == pytest.approx(12.0)  # L_i <- L_i - P |L_i - L_j| with y up
    assert out[0, 41, 1].item() == 14.0  # the lower lid stays
    open_gap = torch.full((1, 4), 8.0)
    # calibrated open gap 8: P = 0.25 implies a gap of 6 > 4, already more closed -> not closed twice
    assert L.elam_correct(lmk, torch.tensor([0.25]), open_gap)[0, 37, 1].item() == pytest.approx(10.0)
    # P = 0.75 implies a gap of 2
    assert L.elam_correct(lmk, torch.tensor([0.75]), open_gap)[0, 37, 1].item() == pytest.approx(12.0)
    # one probability per eye: the right eye (pairs 37/41, 38/40) uses the first
    lmk[0, 43, 1], lmk[0, 47, 1] = 10.0, 14.0
    both = L.elam_correct(lmk, torch.tensor([[1.0, 0.0]]))
    assert both[0, 37, 1].item() == pytest.approx(14.0) and both[0, 43, 1].item() == pytest.approx(10.0)


def test_ldl_relative_distances_by_hand():
    pred, target = _face(), _face()
    pred[0, 37, 1], pred[0, 41, 1] = 0.0, 2.0      # relative distance 0.2
    target[0, 37, 1], target[0, 41, 1] = 0.0, 1.0  # 0.1
    pairs = ((37, 41),)
    assert L.relative_distances(pred, pairs).item() == pytest.approx(0.2)
    assert L.ldl_loss(pred, target, pairs=pairs).item() == pytest.approx(0.1)
    assert L.ldl_loss(pred, target, torch.tensor([0.0]), pairs=pairs).item() == 0.0
    # all seven pairs: only the first differs
    assert L.ldl_loss(pred, target).item() == pytest.approx(0.1)


def test_grid_anchors_are_cell_centres():
    assert L.grid_anchors(4, 4, 2).tolist() == [[1, 1], [3, 1], [1, 3], [3, 3]]


def test_prdl_descriptors_ignore_padding():
    pts = torch.tensor([[[3.0, 4.0], [6.0, 8.0], [100.0, 0.0]]])
    mask = torch.tensor([[True, True, False]])
    g = L.prdl_descriptors(pts, mask, torch.zeros(1, 2))
    assert g[0, 0].tolist() == pytest.approx([5.0, 10.0, 7.5])


def test_prdl_loss_value_and_eq11_gradient_by_hand():
    anchors = torch.zeros(1, 2)
    v = torch.tensor([[[3.0, 4.0]]], requires_grad=True)
    target = torch.tensor([[[6.0, 8.0]]])
    one = torch.ones(1, 1, dtype=torch.bool)
    loss = L.prdl_loss({"eye": (v, one)}, {"eye": (target, one)}, anchors, {"eye": 2.0}, 10, 10)
    # Gamma = (5, 5, 5), Gamma* = (10, 10, 10): 2 * 75 / (10 * 10)
    assert loss.item() == pytest.approx(1.5)
    loss.backward()
    # Eq. 11: dL/dv = sum_stat 2 w (Gamma - Gamma*) (v - a)/|v - a| / HW = 2*2*(-15)*(0.6, 0.8)/100
    assert v.grad[0, 0].tolist() == pytest.approx([-0.36, -0.48])
    # descending moves the point away from the anchor, toward the target's larger distances
    assert torch.dot(-v.grad[0, 0], v.detach()[0, 0] - anchors[0]) > 0


def test_prdl_gradient_step_reduces_the_mismatch_with_many_anchors():
    gen = torch.Generator().manual_seed(0)
    anchors = L.grid_anchors(32, 32, 4)
    target = torch.rand(2, 20, 2, generator=gen) * 10 + 8
    pred = (target + torch.randn(2, 20, 2, generator=gen) * 3).requires_grad_(True)
    mask = torch.ones(2, 20, dtype=torch.bool)
    before = L.prdl_loss({"p": (pred, mask)}, {"p": (target, mask)}, anchors, {"p": 1.0}, 32, 32)
    before.backward()
    after = L.prdl_loss({"p": (pred.detach() - 0.5 * pred.grad, mask)}, {"p": (target, mask)}, anchors,
                        {"p": 1.0}, 32, 32)
    assert after < before


def test_farthest_point_sampling_by_hand():
    pts = torch.tensor([[0.0, 0], [1, 0], [2, 0], [10, 0]])
    assert L.farthest_point_sampling(pts, 3).tolist() == [0, 3, 2]
    assert len(L.farthest_point_sampling(pts, 10)) == 4


def test_photometric_loss_is_skin_weighted_colour_distance():
    rendered = torch.zeros(1, 3, 1, 2)
    image = torch.tensor([[[[3.0, 1.0]], [[4.0, 0.0]], [[0.0, 0.0]]]])  # distances 5 and 1
    mask = torch.ones(1, 1, 1, 2)
    assert L.photometric_loss(rendered, image, mask).item() == pytest.approx(3.0, abs=1e-4)
    skin = torch.tensor([[[[1.0, 0.0]]]])
    assert L.photometric_loss(rendered, image, mask, skin).item() == pytest.approx(5.0, abs=1e-4)


def test_inner_mouth_area_loss_by_hand():
    def mouth(side: float) -> torch.Tensor:
        lmk = _face(2.0)
        h = side / 2
        lmk[0, 60:68] = torch.tensor([[-h, 0], [-h, -h], [0, -h], [h, -h], [h, 0], [h, h], [0, h], [-h, h]])
        return lmk

    assert L.polygon_area(mouth(1.0)[:, 60:68]).item() == pytest.approx(1.0)
    # |1 - 4| / (eye-corner distance 2)^2
    assert L.inner_mouth_area_loss(mouth(1.0), mouth(2.0)).item() == pytest.approx(0.75)


def test_uniform_albedo_loss_by_hand():
    albedo = torch.tensor([[[0.0, 0, 0], [1, 1, 1]]])
    assert L.uniform_albedo_loss(albedo, torch.ones(2)).item() == pytest.approx(0.75)
    assert L.uniform_albedo_loss(albedo, torch.tensor([1.0, 0.0])).item() == pytest.approx(0.0)


def test_feature_and_perceptual_losses():
    a, b = torch.full((1, 2, 4, 4), 1.0), torch.full((1, 2, 4, 4), 3.0)
    pts = torch.tensor([[[5.0, 5.0], [10.0, 3.0]]])
    assert L.feature_loss_at_points(a, b, pts, 16, 16).item() == pytest.approx(2 * 4.0)
    e = torch.tensor([[1.0, 2.0]])
    assert L.perceptual_loss(e, 3 * e).item() == pytest.approx(0.0, abs=1e-6)
    assert L.perceptual_loss(e, torch.tensor([[2.0, -1.0]])).item() == pytest.approx(1.0)


def test_cos_loss_by_hand():
    f = torch.tensor([[2.0, 0.0]])
    w = torch.tensor([[1.0, 0.0], [0.0, 3.0]])
    # cos = (1, 0); s = 1, m = 0.5: logits (0.5, 0)
    expect = -math.log(math.exp(0.5) / (math.exp(0.5) + 1))
    assert L.cos_loss(f, w, torch.tensor([0]), s=1.0, m=0.5).item() == pytest.approx(expect, rel=1e-6)


def test_sir_confidence_by_hand():
    zero = torch.zeros(1, 3)
    assert L.sir_confidence(zero, torch.zeros(1, 4), 1.0).item() == pytest.approx(1.0)
    assert L.sir_confidence(torch.tensor([[math.pi / 2, 0, 0]]), torch.zeros(1, 4), 1.0).item() == pytest.approx(0.5)
    assert L.sir_confidence(zero, torch.tensor([[0.6, 0.8]]), 2.0).item() == pytest.approx(math.exp(-2.0))


def test_weighted_center_loss_and_update_by_hand():
    x = torch.tensor([[1.0, 0.0], [3.0, 0.0]])
    y = torch.tensor([0, 0])
    c = torch.zeros(1, 2)
    f = torch.tensor([1.0, 0.5])
    assert L.weighted_center_loss(x, y, c, f).item() == pytest.approx(0.5 * (1 * 1 + 0.5 * 9) / 2)
    # delta = (1 (0 - 1) + 0.5 (0 - 3)) / (1 + 1.5) = -1: the center moves to x = 1, toward the confident sample
    L.update_centers(c, x, y, f, rate=1.0)
    assert c.tolist() == [[1.0, 0.0]]


def test_kl_standard_normal_by_hand():
    assert L.kl_standard_normal(torch.tensor([[1.0], [-1.0]]), torch.ones(1)).item() == pytest.approx(0.0, abs=1e-6)
    # z = (1, 3): mu 2, var 1 -> 0.5 (4 + 1 - 0 - 1)
    assert L.kl_standard_normal(torch.tensor([[2.0], [6.0]]), torch.tensor([2.0])).item() == pytest.approx(2.0)


def test_coefficient_regulariser_by_hand():
    r = L.coefficient_regulariser(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0]]), torch.tensor([[1.0]]), 1, 2, 3)
    assert r.item() == pytest.approx(5 + 18 + 3)
