"""The default face model: ICT Face Model Light sampled at mediapipe's 478 landmarks, mirror-symmetric.

A person's own face shape (lip thickness, mouth width, brow height) must be explained by
identity, never by expression weights, so the default model needs identity modes from
real scans. This converts the MIT-licensed ICT Face Model Light (its upstream release or
the converted narrow-face .npz) with the project's own landmark embedding
(`ict.compute_landmark_embedding`) into a compact model whose vertices are the 478
landmarks (the 68 iBUG points are defined on them as the rig defines them):

- identity: the leading `n_identity` modes of a mirror-closed basis (the principal
  directions of ICT's modes and their mirror images, each scaled to N(0, 1));
- expression: ICT's 53 ARKit-named shapes, each averaged with its mirror image
  (`_L` with the mirrored `_R`), so a face and its mirror image get mirrored weights;
- triangles: mediapipe's own tesselation; irises are not on ICT's surface (no
  eyeballs) and stay unfitted.

Rebuild: `python scripts/build_default_model.py --from <ICT-FaceKit folder, zip or .npz>`.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from facetrack.tracker.core.schema import LANDMARK_COUNT
from facetrack.tracker.facemodel.builtin_rig import IBUG68_FROM_MEDIAPIPE, fit_landmarks, jaw_embedding, mesh_triangles
from facetrack.tracker.facemodel.format import (
    ModelError,
    MorphableModel,
    arkit_map_for,
    packaged_data_path,
    vertex_embedding,
)

if TYPE_CHECKING:  # building the model needs these; loading the packaged one (every run's start) does not
    from facetrack.tracker.facemodel.ict import Embedding, IctData

DEFAULT_ID = "ict478"
DEFAULT_FILE = "ict478.npz"
ICT_ATTRIBUTION = "MIT (ICT Face Model Light, (c) 2020 USC ICT; LICENSE-ICT-FaceKit.txt)"

def landmark_mirror(neutral: np.ndarray, triangles: np.ndarray, size: int = 512) -> np.ndarray:
    """Index of each of the 478 landmarks' mirror image, as mediapipe itself pairs them.

    mediapipe runs on a frontal render of the (near-symmetric) face and on the same image
    flipped left-right; landmark i found on the flipped image, flipped back, lands where
    its mirror partner lies on the original, so the pairing is the one-to-one assignment
    of those two point sets (cost symmetrised, refined so that neighbours in mediapipe's
    mesh pair with neighbours). It must be an involution (i's partner's partner is i).
    """
    from scipy.optimize import linear_sum_assignment

    from facetrack.tracker.facemodel.ict import _detect
    from facetrack.tracker.facemodel.render import fill_holes, render

    mesh = fill_holes(neutral, triangles)
    mesh.vertices = mesh.vertices - neutral.mean(0)
    image = render(mesh, np.eye(3), 45.0, size).image
    det, det_flip = _detect([image, np.ascontiguousarray(image[:, ::-1])])
    if det is None or det_flip is None:
        raise ModelError("mediapipe found no face on the frontal render; cannot pair mirror landmarks")
    back = det_flip.copy()
    back[:, 0] = size - back[:, 0]
    back += det.mean(0) - back.mean(0)  # the face's midline need not be the image's centre line
    perm = np.empty(LANDMARK_COUNT, np.int64)
    for group in (np.arange(468), np.arange(468, 478)):
        cost = np.sqrt(((back[group, None, :] - det[None, group, :]) ** 2).sum(-1))
        perm[group] = group[linear_sum_assignment(cost + cost.T)[1]]
    # closed lips put points a fraction of a pixel apart: the mesh's edges decide those (a
    # mirror pairing maps neighbours to neighbours)
    tri = mesh_triangles()
    adj = np.zeros((468, 468))
    for a, b in ((0, 1), (1, 2), (0, 2)):
        adj[tri[:, a], tri[:, b]] = adj[tri[:, b], tri[:, a]] = 1.0
    cost = np.sqrt(((back[:468, None, :] - det[None, :468, :]) ** 2).sum(-1))
    for _ in range(3):
        pm = np.zeros((468, 468))
        pm[np.arange(468), perm[:468]] = 1.0
        missing = adj.sum(1)[:, None] - adj @ pm @ adj.T
        perm[:468] = linear_sum_assignment(cost + cost.T + 3.0 * (missing + missing.T))[1]
    if not np.array_equal(perm[perm], np.arange(LANDMARK_COUNT)):
        raise ModelError("mirror pairing of the landmarks is not an involution; the render is not a frontal face")
    return perm


def _mirror_names(names: list[str]) -> np.ndarray:
    """Index of each expression's mirror-image shape (`_L` <-> `_R`, Left <-> Right)."""
    pos = {n: i for i, n in enumerate(names)}
    out = []
    for n in names:
        m = (n[:-2] + "_R" if n.endswith("_L") else n[:-2] + "_L" if n.endswith("_R")
             else n.replace("Left", "@").replace("Right", "Left").replace("@", "Right"))
        out.append(pos.get(m, pos[n]))
    return np.array(out)


INNER_LIP_UPPER = np.array([191, 80, 81, 82, 13, 312, 311, 310, 415])
INNER_LIP_LOWER = np.array([95, 88, 178, 87, 14, 317, 402, 318, 324])
"""mediapipe's inner-lip landmarks between the mouth corners 78 and 308."""


def seat_inner_lips(data: IctData, emb: Embedding) -> Embedding:
    """Put each inner-lip landmark on its own lip.

    ICT's neutral mouth is closed (the lips touch), so casting a detected inner-lip point
    onto the surface lands on either lip; an upper-lip landmark embedded on the lower lip
    opens with the jaw, and the fit must then explain every open mouth with other shapes.
    The lips are told apart by what jawOpen does to them (it carries the lower lip down,
    the upper stays); each inner-lip landmark moves to the nearest vertex of its own lip.
    """
    from facetrack.tracker.facemodel.ict import Embedding

    pts = np.einsum("nkc,nk->nc", data.neutral[emb.vertices].astype(np.float64), emb.bary)
    drop = data.exp_basis[data.exp_names.index("jawOpen"), :, 1].astype(np.float64)
    lips = np.r_[INNER_LIP_UPPER, INNER_LIP_LOWER]
    near = np.nonzero(np.linalg.norm(data.neutral[:, None, :] - pts[None, lips], axis=2).min(1) < 1.5)[0]
    split = 0.5 * drop[near].min()  # lower-lip vertices drop more than half the most any near vertex drops
    vertices, bary = emb.vertices.copy(), emb.bary.copy()
    for marks, own in ((INNER_LIP_UPPER, near[drop[near] > split]), (INNER_LIP_LOWER, near[drop[near] <= split])):
        d = np.linalg.norm(data.neutral[own][None, :, :] - pts[marks][:, None, :], axis=2)
        vertices[marks] = own[np.argmin(d, axis=1)][:, None]
        bary[marks] = [1.0, 0.0, 0.0]
    return Embedding(vertices, bary, emb.valid, emb.report, emb.detections)


def _sample(emb: Embedding, arrays: np.ndarray) -> np.ndarray:
    """(..., V, 3) ICT vertex arrays -> (..., 478, 3) at the landmarks."""
    return np.einsum("...nkc,nk->...nc", arrays[..., emb.vertices, :], emb.bary).astype(np.float64)


def build_compact_model(data: IctData, n_identity: int = 40, embedding: Embedding | None = None) -> MorphableModel:
    """The compact, mirror-symmetric 478-point model from ICT arrays."""
    if not 1 <= n_identity <= data.id_basis.shape[0]:
        raise ModelError(f"n_identity must be 1..{data.id_basis.shape[0]}, got {n_identity}")
    from facetrack.tracker.facemodel.ict import ICT_ALIASES, compute_landmark_embedding

    emb = seat_inner_lips(data, embedding or compute_landmark_embedding(data.neutral, data.triangles))
    neutral = _sample(emb, data.neutral)
    neutral -= neutral[emb.valid].mean(0) * [1.0, 0.0, 0.0]  # the midline at x = 0
    perm = landmark_mirror(data.neutral, data.triangles)
    flip = np.array([-1.0, 1.0, 1.0])

    def mirror(a: np.ndarray) -> np.ndarray:
        return a[..., perm, :] * flip

    neutral = 0.5 * (neutral + mirror(neutral))
    exp = _sample(emb, data.exp_basis)
    exp = 0.5 * (exp + mirror(exp[_mirror_names(data.exp_names)]))
    ids = _sample(emb, data.id_basis)
    both = np.concatenate([ids, mirror(ids)]).reshape(2 * len(ids), -1) / np.sqrt(2.0)
    _, s, vt = np.linalg.svd(both, full_matrices=False)  # mirror-invariant covariance: closed subspace
    id_basis = (s[:n_identity, None] * vt[:n_identity]).reshape(n_identity, -1, 3)
    valid = emb.valid & emb.valid[perm]
    lv, lb = vertex_embedding(np.arange(LANDMARK_COUNT))
    # the 68 iBUG points as facetrack defines them on mediapipe's landmarks (as the rig does)
    v68, b68 = vertex_embedding(np.array(IBUG68_FROM_MEDIAPIPE))
    pairs, mix = jaw_embedding(neutral)
    v68[:17, :2], v68[:17, 2] = pairs, pairs[:, 1]
    b68[:17, :2], b68[:17, 2] = mix, 0.0
    used = np.array(sorted(set(fit_landmarks()) | {int(perm[i]) for i in fit_landmarks()}))
    return MorphableModel(
        id=DEFAULT_ID, name="ICT Face Model Light at mediapipe's 478 landmarks (facetrack default)",
        neutral=neutral, id_basis=id_basis, exp_basis=exp, exp_names=data.exp_names, triangles=mesh_triangles(),
        lmk_vertices=lv, lmk_bary=lb, lmk_valid=valid, lmk68_vertices=v68, lmk68_bary=b68,
        arkit_map=arkit_map_for(data.exp_names, ICT_ALIASES), licence=ICT_ATTRIBUTION, units="cm",
        source=data.source or "ICT Face Model Light",
        description=f"{n_identity} identity modes (~N(0,1), mirror-closed) and ICT's 53 ARKit-named expressions "
                    "(mirror-averaged), sampled at the 478 landmarks (embedding computed by facetrack); "
                    "irises unfitted.",
        extra={"fit_landmarks": used.tolist(), "mirror": perm.tolist(), "lmk68_on_landmarks": True,
               "embedding_report": emb.report.model_dump()},
    )


def packaged_model_path() -> Path:
    return packaged_data_path(DEFAULT_FILE)


@functools.cache
def load_default_model() -> MorphableModel:
    """The packaged default model (checksum verified once per process)."""
    path = packaged_model_path()
    if not path.is_file():
        raise ModelError(f"the default face model {path} is missing from this installation; rebuild it with "
                         "`python scripts/build_default_model.py --from <ICT-FaceKit release>` or reinstall facetrack")
    return MorphableModel.load(path)
