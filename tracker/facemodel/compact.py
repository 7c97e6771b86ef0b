"""The default face model: ICT Face Model Light sampled at mediapipe's 478 landmarks, mirror-symmetric.

A person's own face shape (lip thickness, mouth width, brow height) must be explained by
identity, never by expression weights, so the default model needs identity modes from
real scans. This converts the MIT-licensed ICT Face Model Light (its upstream release or
the converted narrow-face .npz) with the project's own landmark embedding
(`ict.compute_landmark_embedding`) into a compact model whose vertices are the 478
landmarks plus the 68 iBUG points:

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
from importlib import resources
from pathlib import Path

import numpy as np
from scipy.optimize import linear_sum_assignment

from facetrack.tracker.facemodel.builtin_rig import IBUG68_FROM_MEDIAPIPE, fit_landmarks, mesh_triangles
from facetrack.tracker.facemodel.format import ModelError, MorphableModel, arkit_map_for, vertex_embedding
from facetrack.tracker.facemodel.ict import ICT_ALIASES, Embedding, IctData, compute_landmark_embedding
from facetrack.tracker.schema import LANDMARK_COUNT

DEFAULT_ID = "ict478"
DEFAULT_FILE = "ict478.npz"
ICT_ATTRIBUTION = ("MIT; derived from ICT Face Model Light, Copyright (c) 2020 USC Institute for Creative "
                   "Technologies (ICT-VGL/ICT-FaceKit); licence text in LICENSE-ICT-FaceKit.txt")

IBUG68_MIRROR = np.array([16, 15, 14, 13, 12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1, 0,
                          26, 25, 24, 23, 22, 21, 20, 19, 18, 17,
                          27, 28, 29, 30, 35, 34, 33, 32, 31,
                          45, 44, 43, 42, 47, 46, 39, 38, 37, 36, 41, 40,
                          54, 53, 52, 51, 50, 49, 48, 59, 58, 57, 56, 55,
                          64, 63, 62, 61, 60, 67, 66, 65])
"""iBUG-68 index of each point's mirror image (0-based)."""


def landmark_mirror(points: np.ndarray) -> np.ndarray:
    """Index of each of the 478 landmarks' mirror image, from a symmetric face's points (head frame).

    mediapipe's mesh is symmetric by construction; the pairing is the one-to-one
    assignment of the points to their x-mirrored positions (midline points pair with
    themselves). The irises pair ring for ring.
    """
    p = np.asarray(points, np.float64)[:468]
    q = p * [-1.0, 1.0, 1.0]
    cost = ((p[:, None, :] - q[None, :, :]) ** 2).sum(-1)
    _, col = linear_sum_assignment(cost)
    perm = np.concatenate([col, np.arange(473, 478), np.arange(468, 473)])
    if not np.array_equal(perm[perm], np.arange(LANDMARK_COUNT)):
        raise ModelError("the landmark embedding is too asymmetric to pair mirror landmarks")
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


def _sample(data: IctData, emb: Embedding, arrays: np.ndarray) -> np.ndarray:
    """(..., V, 3) ICT vertex arrays -> (..., 478 + 68, 3) at the landmarks and the iBUG points."""
    lmk = np.einsum("...nkc,nk->...nc", arrays[..., emb.vertices, :], emb.bary)
    return np.concatenate([lmk, arrays[..., data.lmk68, :]], axis=-2).astype(np.float64)


def build_compact_model(data: IctData, n_identity: int = 40, embedding: Embedding | None = None) -> MorphableModel:
    """The compact, mirror-symmetric 478-point model from ICT arrays."""
    if not 1 <= n_identity <= data.id_basis.shape[0]:
        raise ModelError(f"n_identity must be 1..{data.id_basis.shape[0]}, got {n_identity}")
    emb = embedding or compute_landmark_embedding(data.neutral, data.triangles)
    neutral = _sample(data, emb, data.neutral)
    centre = neutral[:LANDMARK_COUNT][emb.valid].mean(0) * [1.0, 0.0, 0.0]  # the midline at x = 0
    neutral -= centre
    perm = np.concatenate([landmark_mirror(neutral[:LANDMARK_COUNT]), LANDMARK_COUNT + IBUG68_MIRROR])
    flip = np.array([-1.0, 1.0, 1.0])

    def mirror(a: np.ndarray) -> np.ndarray:
        return a[..., perm, :] * flip

    neutral = 0.5 * (neutral + mirror(neutral))
    exp = _sample(data, emb, data.exp_basis)
    exp = 0.5 * (exp + mirror(exp[_mirror_names(data.exp_names)]))
    ids = _sample(data, emb, data.id_basis)
    both = np.concatenate([ids, mirror(ids)]).reshape(2 * len(ids), -1) / np.sqrt(2.0)
    _, s, vt = np.linalg.svd(both, full_matrices=False)  # mirror-invariant covariance: closed subspace
    id_basis = (s[:n_identity, None] * vt[:n_identity]).reshape(n_identity, -1, 3)
    valid = emb.valid & emb.valid[perm[:LANDMARK_COUNT]]
    lv, lb = vertex_embedding(np.arange(LANDMARK_COUNT))
    v68, b68 = vertex_embedding(LANDMARK_COUNT + np.arange(68))
    used = np.array(sorted(set(fit_landmarks()) | {int(perm[i]) for i in fit_landmarks()}))
    return MorphableModel(
        id=DEFAULT_ID, name="ICT Face Model Light at mediapipe's 478 landmarks (facetrack default)",
        neutral=neutral, id_basis=id_basis, exp_basis=exp, exp_names=data.exp_names, triangles=mesh_triangles(),
        lmk_vertices=lv, lmk_bary=lb, lmk_valid=valid, lmk68_vertices=v68, lmk68_bary=b68,
        arkit_map=arkit_map_for(data.exp_names, ICT_ALIASES), licence=ICT_ATTRIBUTION, units="cm",
        source=data.source or "ICT Face Model Light",
        description=f"{n_identity} identity modes (~N(0,1), mirror-closed) and ICT's 53 ARKit-named expressions "
                    "(mirror-averaged), sampled at the 478 landmarks (embedding computed by facetrack) and the "
                    "68 iBUG points; irises unfitted.",
        extra={"fit_landmarks": used.tolist(), "mirror": perm.tolist(), "ibug68_from_mediapipe":
               list(IBUG68_FROM_MEDIAPIPE), "embedding_report": emb.report.model_dump()},
    )


def packaged_model_path() -> Path:
    return Path(str(resources.files("facetrack.tracker.facemodel") / "data" / DEFAULT_FILE))


@functools.cache
def load_default_model() -> MorphableModel:
    """The packaged default model (checksum verified once per process)."""
    path = packaged_model_path()
    if not path.is_file():
        raise ModelError(f"the default face model {path} is missing from this installation; rebuild it with "
                         "`python scripts/build_default_model.py --from <ICT-FaceKit release>` or reinstall facetrack")
    return MorphableModel.load(path)
