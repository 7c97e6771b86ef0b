"""What the fitter keeps per model (landmark-level bases, built once and shared) and per track."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facetrack.tracker.core.schema import LANDMARK_COUNT
from facetrack.tracker.facemodel.format import MorphableModel
from facetrack.tracker.facemodel.priors import antagonist_pairs
from facetrack.tracker.facemodel.rest_face import RestFaceCalibration

FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
                      148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109])
"""mediapipe's face-oval landmarks: they slide along the silhouette, so they get less weight."""
CHIN = np.array([152, 148, 377, 176, 400, 175, 199, 171, 396, 208, 428, 200])
"""Chin landmarks: the jaw is read from them (lips alone part without the jaw)."""


class PreparedModel:
    """Landmark-level bases of one model (built once, shared by the tracks that use it)."""

    def __init__(self, model: MorphableModel, contour_weight: float, chin_weight: float = 1.0) -> None:
        self.model = model
        used = model.lmk_valid.copy()
        if "fit_landmarks" in model.extra:  # the model names the landmarks worth fitting
            used &= np.isin(np.arange(LANDMARK_COUNT), model.extra["fit_landmarks"])
        self.idx = np.nonzero(used)[0]
        n = len(self.idx)
        vi, bw = model.lmk_vertices[self.idx], model.lmk_bary[self.idx].astype(np.float64)
        self.base = np.einsum("nkc,nk->nc", model.neutral[vi].astype(np.float64), bw)  # (N, 3)
        self.k_id, self.k_exp = model.n_identity, model.n_expression
        basis = np.concatenate([model.id_basis, model.exp_basis], axis=0) if self.k_id else model.exp_basis
        # (N, 3, K): landmark displacement per coefficient
        self.basis = np.einsum("knjc,nj->nck", basis[:, vi].astype(np.float64), bw) if len(basis) else np.zeros(
            (n, 3, 0))
        self.k = self.basis.shape[2]
        w = np.ones(LANDMARK_COUNT)
        w[FACE_OVAL] = contour_weight
        w[CHIN] = chin_weight
        self.weight = w[self.idx]
        self.basis_flat = np.ascontiguousarray(self.basis.reshape(-1, self.k))  # (3N, K)
        self.basis_flat_exp = np.ascontiguousarray(self.basis_flat[:, self.k_id:])
        b32 = self.basis.transpose(1, 0, 2).astype(np.float32)  # (3, N, K)
        self.basis32 = np.ascontiguousarray(b32)
        self.basis32_exp = np.ascontiguousarray(b32[:, :, self.k_id:])
        self.radius = float(np.sqrt(((self.base - self.base.mean(0)) ** 2).sum(1).mean()))
        v68, b68 = model.lmk68_vertices, model.lmk68_bary.astype(np.float64)
        self.base68 = np.einsum("nkc,nk->nc", model.neutral[v68].astype(np.float64), b68)
        self.basis68 = np.einsum("knjc,nj->nck", basis[:, v68].astype(np.float64), b68) if len(basis) else np.zeros(
            (68, 3, 0))
        lo, hi = (float(b) for b in model.extra.get("exp_bounds", (0.0, 1.0)))
        self.exp_nonneg = lo >= 0.0
        self.lo_pose_exp = np.concatenate([np.full(6, -np.inf), np.full(self.k_exp, lo)])
        self.hi_pose_exp = np.concatenate([np.full(6, np.inf), np.full(self.k_exp, hi)])
        self.pair_a, self.pair_b = antagonist_pairs()
        self.lmk68_on_landmarks = bool(model.extra.get("lmk68_on_landmarks", False))
        self.energy_cols = np.array([not n.startswith("eye") for n in model.exp_names], bool)

    def identity_shape(self, identity: np.ndarray) -> np.ndarray:
        """The neutral landmarks (N, 3) of a person; expression deltas are added to it per step."""
        return self.base + (self.basis_flat[:, : self.k_id] @ identity).reshape(-1, 3) if self.k_id else self.base


@dataclass
class TrackState:
    prepared: PreparedModel
    rotation: np.ndarray | None = None
    translation: np.ndarray | None = None
    expression: np.ndarray | None = None
    identity: np.ndarray | None = None
    id_weight: float = 0.0
    id_info: np.ndarray | None = None  # accumulated information matrix (K_id, K_id)
    id_eta: np.ndarray | None = None  # accumulated information vector
    id_shape: np.ndarray | None = None  # landmarks of the current identity, no expression
    frames: int = 0
    calib: object | None = None  # the generated rig's online neutral estimate (calibration.BuiltinCalibration)
    rest: RestFaceCalibration | None = None  # rest-face collection while it runs (rest_face.py)
    rest_offset: np.ndarray | None = None  # (N, 3) calibrated rest minus the identity's neutral
    rest_weights: np.ndarray | None = None  # (52,) ARKit weights a network reads on the rest face, subtracted
    rest_info: dict | None = None  # how the rest face was found (source, frames)

    def neutral_shape(self) -> np.ndarray:
        """The track's neutral landmarks: identity plus the calibrated rest offsets when there are some."""
        pm = self.prepared
        base = pm.identity_shape(self.identity if self.identity is not None else np.zeros(pm.k_id))
        return base if self.rest_offset is None else base + self.rest_offset

    def fuse_identity(self, measured: np.ndarray, info: np.ndarray, conf: float, prior: float,
                      max_weight: float) -> None:
        """Information-form fusion of one frame's identity, weighted by its SIR confidence (capped at
        `max_weight`, so the estimate stays adaptive), with an N(0, 1/prior) prior."""
        if self.id_info is None or self.id_eta is None:
            self.id_info = np.zeros_like(info)
            self.id_eta = np.zeros(len(measured))
        total = self.id_weight + conf
        keep = 1.0 if total <= max_weight else (max_weight - conf) / max(self.id_weight, 1e-12)
        self.id_info = keep * self.id_info + conf * info
        self.id_eta = keep * self.id_eta + conf * info @ measured
        self.id_weight = min(total, max_weight)
        a = self.id_info.copy()
        a[np.diag_indices(len(a))] += prior
        self.identity = np.linalg.solve(a, self.id_eta)
