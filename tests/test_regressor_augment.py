"""The regressor's left/right flip (points, ARKit weights, eye states, PRDL parts) and the distillation error."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES  # noqa: E402
from facetrack.training.recipe import Recipe  # noqa: E402
from facetrack.training.regressor import (  # noqa: E402
    IBUG68_MIRROR,
    augment,
    coefficient_error,
    mirror_permutation,
    mirror_targets,
    part_targets,
    train_regressor,
)
from facetrack.training.render import render  # noqa: E402
from facetrack.training.synthetic import ibug68_template, synthetic_batch, synthetic_model  # noqa: E402


def test_arkit_mirror_is_an_involution_that_maps_every_left_name_to_its_right_name():
    perm = mirror_permutation(ARKIT_BLENDSHAPES)
    assert torch.equal(perm[perm], torch.arange(52))
    names = [ARKIT_BLENDSHAPES[i] for i in perm]
    for name, mirrored in zip(ARKIT_BLENDSHAPES, names):
        if name.endswith("Left"):
            assert mirrored == name[:-4] + "Right"
        elif name.endswith("Right"):
            assert mirrored == name[:-5] + "Left"
        else:
            assert mirrored == name
    assert sum(n.endswith("Left") for n in ARKIT_BLENDSHAPES) == 20
    with pytest.raises(ValueError, match="no mirror partner"):
        mirror_permutation(["eyeBlinkLeft", "jawOpen"])


def test_ibug_mirror_maps_the_symmetric_template_onto_itself():
    t = ibug68_template()  # x is the subject's left: mirroring is x -> -x
    perm = list(IBUG68_MIRROR)
    assert sorted(perm) == list(range(68)) and [perm[i] for i in perm] == list(range(68))
    np.testing.assert_allclose((t * [-1, 1])[perm], t, atol=1e-5)


def _targets(n: int, size: int, gen: torch.Generator) -> tuple:
    face = synthetic_model()
    b = synthetic_batch(face, n, size, seed=2)
    parts = part_targets(b.landmarks.numpy(), size, size, 12, 30)
    return b.images, b.landmarks, torch.rand(n, 2, generator=gen), torch.rand(n, 52, generator=gen), parts


def test_flipping_twice_is_the_identity():
    gen = torch.Generator().manual_seed(0)
    images, lmk, p_closed, expr, parts = _targets(4, 48, gen)
    perm = mirror_permutation(ARKIT_BLENDSHAPES)
    state = (images, lmk, p_closed, expr, parts)
    for _ in range(2):
        img, move, flipped = augment(state[0], 0.0, 0.0, 0.0, gen, flip=1.0)
        assert flipped.all()
        moved = {k: (move(p), m) for k, (p, m) in state[4].items()}
        state = (img, *mirror_targets(flipped, move(state[1]), state[2], state[3], moved, perm))
    once, move, _ = augment(images, 0.0, 0.0, 0.0, gen, flip=1.0)
    assert torch.allclose(once, images.flip(-1), atol=1e-5)  # a mirror is an exact pixel flip
    assert torch.allclose(state[0], images, atol=1e-5)
    assert torch.allclose(state[1], lmk, atol=1e-4) and torch.equal(state[2], p_closed) and torch.equal(state[3], expr)
    for name, (p, m) in parts.items():
        assert torch.allclose(state[4][name][0], p, atol=1e-4) and torch.equal(state[4][name][1], m)


def test_a_flip_swaps_the_sides_of_one_sample_only():
    gen = torch.Generator().manual_seed(1)
    _, lmk, p_closed, expr, parts = _targets(2, 48, gen)
    flipped = torch.tensor([True, False])
    perm = mirror_permutation(ARKIT_BLENDSHAPES)
    out_lmk, out_p, out_e, out_parts = mirror_targets(flipped, lmk, p_closed, expr, parts, perm)
    left, right = ARKIT_BLENDSHAPES.index("eyeBlinkLeft"), ARKIT_BLENDSHAPES.index("eyeBlinkRight")
    assert out_e[0, left] == expr[0, right] and out_e[0, right] == expr[0, left] and torch.equal(out_e[1], expr[1])
    assert out_p[0].tolist() == p_closed[0].flip(0).tolist() and torch.equal(out_p[1], p_closed[1])
    assert torch.equal(out_lmk[0, 36], lmk[0, 45]) and torch.equal(out_lmk[1], lmk[1])
    assert torch.equal(out_parts["right_eye"][0][0], parts["left_eye"][0][0])
    assert torch.equal(out_parts["right_eye"][0][1], parts["right_eye"][0][1])
    assert torch.equal(out_parts["lips"][0], parts["lips"][0])


def test_a_flipped_synthetic_face_has_the_mirrored_faces_landmarks():
    """Render a face, flip the image: its moved and re-ordered points are those of the face rendered with the
    mirrored pose (the synthetic model's landmarks and designed expression modes are symmetric)."""
    face = synthetic_model()
    size = 64
    expr = torch.tensor([[0.8, 0.3, 0.6, 0.2]])
    pose = torch.tensor([[0.1, 0.25, -0.15, 30.0, 33.0, float(np.log(size * 0.85 / 16))]])
    mirrored = pose * torch.tensor([1.0, -1, -1, -1, 1, 1]) + torch.tensor([0.0, 0, 0, size, 0, 0])
    ident, sh = torch.zeros(1, face.n_identity), torch.zeros(1, 27)
    sh[:, 0] = 1.5
    tex = torch.zeros(1, face.n_texture)
    r = render(face, ident, expr, pose, sh, tex, None, size, size, 1.0)
    m = render(face, ident, expr, mirrored, sh, tex, None, size, size, 1.0)
    img, move, flipped = augment(r.image, 0.0, 0.0, 0.0, torch.Generator(), flip=1.0)
    lmk, *_ = mirror_targets(flipped, move(r.landmarks), None, None, None, torch.arange(4))
    assert torch.allclose(lmk, m.landmarks, atol=1e-3)
    assert (img - m.image.clamp(0, 1)).abs().mean() < 0.03  # the same face, bar the mesh grid's asymmetry


def test_flip_and_rotation_move_the_points_with_the_pixels():
    img = torch.zeros(6, 3, 40, 40)
    img[:, :, 9:12, 24:27] = 1.0  # a 3x3 blob centred on pixel (25.5, 10.5)
    out, move, flipped = augment(img, 30.0, 0.2, 0.0, torch.Generator().manual_seed(1), flip=0.5)
    assert flipped.any() and not flipped.all()
    p = move(torch.tensor([[[25.5, 10.5]]] * 6))
    ys, xs = torch.meshgrid(torch.arange(40) + 0.5, torch.arange(40) + 0.5, indexing="ij")
    for i in range(6):
        w = out[i, 0]
        centroid = torch.stack([(w * xs).sum() / w.sum(), (w * ys).sum() / w.sum()])
        assert torch.allclose(centroid, p[i, 0], atol=0.3)


def test_coefficient_error_l1_l2_and_dropped_rows():
    pred = torch.tensor([[0.0, 1.0], [0.5, 0.5]])
    target = torch.tensor([[0.5, 0.0], [0.5, 1.5]])
    assert coefficient_error(pred, target, "l2").item() == pytest.approx((0.25 + 1 + 0 + 1) / 4)
    assert coefficient_error(pred, target, "l1").item() == pytest.approx((0.5 + 1 + 0 + 1) / 4)
    assert coefficient_error(pred, target, "l1+l2").item() == pytest.approx((0.75 + 2 + 0 + 2) / 4)
    assert coefficient_error(pred, target, "l1", torch.tensor([True, False])).item() == pytest.approx(0.75)
    assert coefficient_error(pred, target, "l1", torch.tensor([False, False])).item() == 0.0


def test_a_run_with_flip_and_l1_distillation_trains():
    recipe = Recipe.model_validate({
        "name": "flip", "losses": {"lmk": 1e-2, "ldl": 1.0, "elam": True, "prdl": 1e-2, "prdl_points": 8,
                                   "prdl_skin_points": 16, "coef": 1.0, "coef_kind": "l1"},
        "data": {"samples": 32, "subjects": 4}, "net": {"width": 4, "input_size": 48},
        "train": {"epochs": 2, "batch_size": 8, "augment_flip": 0.5, "augment_rotation_deg": 10}})
    res = train_regressor(recipe)
    assert len(res.history) == 2 and all(np.isfinite(r["loss"]) for r in res.history)
    assert "coef" in res.history[0] and "prdl" in res.history[0]
    recipe.model.expression = 6
    with pytest.raises(ValueError, match="no mirror"):
        train_regressor(recipe)


def test_the_builtin_rig_is_arkit_ordered_and_mirrors_with_the_ibug_permutation(assets_dir):
    """On the (symmetric) mediapipe canonical face, every ARKit field of the built-in rig, mirrored and
    re-ordered, is its Left/Right partner's field: so a flipped crop's swapped targets are right."""
    from facetrack.tracker.facemodel import builtin_rig as rig

    obj = (assets_dir / "mediapipe" / "canonical_face_model.obj").read_text().splitlines()
    v = np.array([[float(x) for x in line.split()[1:4]] for line in obj if line.startswith("v ")])
    offsets = np.array([[0, 0, 0], [0.5, 0, 0], [0, 0.5, 0], [-0.5, 0, 0], [0, -0.5, 0]])
    iris = [v[idx].mean(0) + offsets for idx in (rig.R_EYE_UPPER + rig.R_EYE_LOWER, rig.L_EYE_UPPER + rig.L_EYE_LOWER)]
    model = rig.build_builtin_model(rig.head_frame(np.concatenate([v, *iris]))[0].astype(np.float32))
    assert list(model.exp_names) == list(ARKIT_BLENDSHAPES)

    def moved(i: int) -> np.ndarray:
        s = model.shape(expression=np.eye(52)[i]) - model.shape(expression=np.zeros(52))
        return (s[model.lmk68_vertices] * model.lmk68_bary[..., None]).sum(1)  # (68, 3), x = subject's left

    perm, exp_perm = list(IBUG68_MIRROR), mirror_permutation(ARKIT_BLENDSHAPES).tolist()
    for i, name in enumerate(ARKIT_BLENDSHAPES):
        d = moved(i)
        np.testing.assert_allclose((d * [-1, 1, 1])[perm], moved(exp_perm[i]), atol=0.02 * np.abs(d).max() + 1e-6,
                                   err_msg=name)
    blink = moved(ARKIT_BLENDSHAPES.index("eyeBlinkLeft"))
    assert np.abs(blink[36:42]).max() < 1e-6 < np.abs(blink[42:48]).max()  # iBUG 42-47 is the subject's left eye
