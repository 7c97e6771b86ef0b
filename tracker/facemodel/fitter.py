"""Per-frame fit of a morphable model to the 478 landmarks: pose, expression, identity.

One fitter serves every `MorphableModel` (and, with `model=None`, the built-in rig that
is generated per tracked person). Per frame and face:

1. pose (rotation, translation) by Gauss-Newton on the perspective reprojection error,
   warm-started from the track's previous frame (weak-perspective closed form on the
   first frame);
2. coefficients by regularised least squares: expression bounded to [0, 1] (a small
   active-set box QP on the normal equations), a temporal prior toward the previous
   frame and an L1/ridge prior toward neutral, with the track's identity held fixed;
3. identity per track (every frame until it is confident, then every n-th frame): on
   the converged frame, one Gauss-Newton step on pose, identity and the expression
   weights not at a bound (with a weak prior toward the track's estimate) measures the
   identity, and its information matrix (Schur complement: pose and expression
   marginalised) weighs it; the measurement is fused into the track's information-form
   estimate, scaled by the SIR confidence
   f = 1/8 (cos a + 1)(cos b + 1)(cos g + 1) exp(-lambda ||expr||), so frontal neutral
   frames count most; with an N(0, 1) prior this is the recursive least-squares
   posterior, which converges as frames accumulate and then stays stable.

Steps 1-2 are one joint step, repeated a few times. The normal equations come from
the exact perspective Jacobian through the landmark-level bases (precomputed once per
model, float32 for the Hessian), the box QP uses LAPACK's Cholesky directly, so a
frame costs a few small matrix products and dense solves (~1 ms with the built-in
model, one BLAS thread). A model may name the landmarks worth fitting
(`extra["fit_landmarks"]`; the built-in rig uses 185 of 478).
Landmarks are pixels (x right, y down); the camera frame is x right, y up, z toward
the viewer; the focal length is in pixels with the principal point at the centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
from pydantic import BaseModel, Field
from scipy.linalg.lapack import dposv

from facetrack.tracker.facemodel.builtin_rig import ibug68_from_478
from facetrack.tracker.facemodel.format import ModelError, MorphableModel
from facetrack.tracker.facemodel.neutral import RestCalibration, observed_shape
from facetrack.tracker.facemodel.priors import antagonist_pairs
from facetrack.tracker.schema import ARKIT_BLENDSHAPES, LANDMARK_COUNT

FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
                      148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109])
"""mediapipe's face-oval landmarks: they slide along the silhouette, so they get less weight."""
CHIN = np.array([152, 148, 377, 176, 400, 175, 199, 171, 396, 208, 428, 200])
"""Chin landmarks: the jaw is read from them (lips alone part without the jaw)."""


class FitterConfig(BaseModel):
    """Weights of the fit; the defaults suit mediapipe landmarks on 480p-1080p video."""

    landmark_sigma: float = Field(0.02, gt=0, description="Landmark noise as a fraction of the face's RMS radius.")
    outer_iterations: int = Field(2, ge=1, description="Joint Gauss-Newton steps per frame (warm-started).")
    max_iterations: int = Field(10, ge=1, description="More steps while the pose still moves (fast motion, re-acquired face).")
    tolerance: float = Field(3e-3, gt=0, description="Converged when the step is below this (rad, or depth fraction).")
    pose_iterations: int = Field(3, ge=1, description="Pose-only steps after a track's weak-perspective start.")
    first_frame_iterations: int = Field(8, ge=1, description="Joint steps on a track's first frame (no warm start).")
    exp_ridge: float = Field(0.05, ge=0, description="Ridge prior on expression weights (toward neutral).")
    exp_l1: float = Field(15.0, ge=0, description="L1 prior on expression weights (sparse; neutral reads 0).")
    temporal: float = Field(1.0, ge=0, description="Pull of expression weights toward the previous frame.")
    id_prior: float = Field(1.0, ge=0, description="N(0, 1) prior on identity coefficients (precision).")
    id_measure_prior: float = Field(0.3, gt=0, description="Weak prior of the per-frame identity measurement.")
    id_max_weight: float = Field(150.0, gt=0, description="Cap on a track's accumulated confidence (adaptivity).")
    id_warmup_weight: float = Field(6.0, ge=0, description="Update identity every frame until this confidence.")
    id_every: int = Field(15, ge=1, description="Then update identity every n-th frame of the track.")
    sir_lambda: float = Field(4.0, ge=0, description="lambda in the SIR confidence exp(-lambda ||expr||) (the "
                                                     "L1 prior keeps weights small: a larger lambda tells calm "
                                                     "frames from expressive ones).")
    contour_weight: float = Field(0.5, ge=0, description="Weight of face-oval landmarks (they slide).")
    chin_weight: float = Field(1.0, ge=0, description="Weight of the chin landmarks (the jaw is read from them).")
    max_tracks: int = Field(64, ge=1, description="Tracks kept; the least recently seen is forgotten first.")
    exclude_above: float = Field(0.2, gt=0, le=1, description="Antagonistic pairs both above this: the weaker "
                                                               "is held at 0 and the frame re-solved (1: off).")
    rest_window: int = Field(120, ge=0, description="Frames of a track's warm-up from which its rest face is "
                                                  "calibrated (neutral.py); 0: no rest calibration.")
    rest_cap: float = Field(0.1, gt=0, le=1, description="Most of one expression weight a rest face may "
                                                         "subtract (a held smile still reads).")
    rest_source: Literal["auto", "on demand"] = Field("auto", description="auto: the calmest warm-up frames; "
                                                      "on demand: the user holds a neutral face for the window.")
    rest_early: int = Field(30, ge=0, description="A provisional rest face after this many frames (0: none).")
    rest_keep: float = Field(0.15, gt=0, le=1, description="Fraction of the warm-up's calmest frames kept for rest.")


@dataclass
class FitResult:
    """One face's fit. `vertices()` evaluates the dense mesh only when asked."""

    model_id: str
    blendshapes: np.ndarray  # (52,) ARKit order, [0, 1]
    expression: np.ndarray  # (K_exp,) the model's own weights
    identity: np.ndarray  # (K_id,)
    rotation: np.ndarray  # (3, 3) head -> camera
    translation: np.ndarray  # (3,) cm, camera frame
    landmarks68: np.ndarray  # (68, 2) pixels
    focal_px: float
    image_size: tuple[int, int]
    confidence: float  # SIR confidence of this frame, 0..1
    rms_px: float  # reprojection RMS of the used landmarks, pixels
    model: MorphableModel = field(repr=False)

    def vertices(self, frame: str = "camera") -> np.ndarray:
        """Dense mesh (V, 3) in cm, in the camera frame (default) or the head frame."""
        v = self.model.shape(self.identity, self.expression)
        return v if frame == "head" else v @ self.rotation.T + self.translation

    def blendshape_dict(self) -> dict[str, float]:
        return dict(zip(ARKIT_BLENDSHAPES, self.blendshapes.tolist()))


# -- small maths -------------------------------------------------------------------------
def rodrigues(w: np.ndarray) -> np.ndarray:
    th = float(np.linalg.norm(w))
    if th < 1e-12:
        return np.eye(3)
    k = w / th
    kx = np.array([[0, -k[2], k[1]], [k[2], 0, -k[0]], [-k[1], k[0], 0]])
    return np.eye(3) + math.sin(th) * kx + (1 - math.cos(th)) * kx @ kx


def euler_yxz(r: np.ndarray) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in radians of a head->camera rotation (R = Ry Rx Rz)."""
    pitch = math.asin(max(-1.0, min(1.0, -r[1, 2])))
    return math.atan2(r[0, 2], r[2, 2]), pitch, math.atan2(r[1, 0], r[1, 1])


def sir_confidence(rotation: np.ndarray, expression: np.ndarray, lam: float) -> float:
    """SIR's sample confidence: 1 for a frontal neutral face, falling with pose and expression."""
    a, b, g = euler_yxz(rotation)
    return 0.125 * (math.cos(a) + 1) * (math.cos(b) + 1) * (math.cos(g) + 1) * math.exp(
        -lam * float(np.linalg.norm(expression)))


def box_qp(h: np.ndarray, c: np.ndarray, lo: np.ndarray, hi: np.ndarray, x0: np.ndarray | None = None,
           max_iter: int = 12) -> np.ndarray:
    """min 1/2 x'Hx - c'x with lo <= x <= hi (H positive definite, small).

    Active-set iterations, warm-started from x0's active bounds: solve on the free set,
    clamp the violators, release bounds whose gradient points inward. One LAPACK
    Cholesky solve (dposv) per iteration on index-gathered blocks: at this size (~60
    variables, 2-4 iterations per call) numpy's per-call overhead was most of the
    cost. Ends with a clip so the bounds always hold.
    """
    n = len(c)
    at_lo = np.zeros(n, bool) if x0 is None else x0 <= lo + 1e-9
    at_hi = np.zeros(n, bool) if x0 is None else x0 >= hi - 1e-9
    x = np.zeros(n) if x0 is None else np.clip(x0, lo, hi).astype(np.float64)
    for _ in range(max_iter):
        fixed = at_lo | at_hi
        x[at_lo], x[at_hi] = lo[at_lo], hi[at_hi]
        free = ~fixed
        fi = np.flatnonzero(free)
        if len(fi):
            hf = h.take(fi, 0)
            rhs = c[fi] - hf @ x if len(fi) < n else c.copy()
            if len(fi) < n:
                rhs += hf.take(fi, 1) @ x[fi]
            _, sol, info = dposv(hf.take(fi, 1), rhs)
            x[fi] = sol if info == 0 else np.linalg.lstsq(hf.take(fi, 1), rhs, rcond=None)[0]
        vlo, vhi = free & (x < lo), free & (x > hi)
        if vlo.any() or vhi.any():
            at_lo |= vlo
            at_hi |= vhi
            continue
        grad = h @ x - c
        rel = (at_lo & (grad < -1e-9)) | (at_hi & (grad > 1e-9))
        if not rel.any():
            break
        at_lo &= ~rel
        at_hi &= ~rel
    return np.clip(x, lo, hi)


# -- per-model precomputation ------------------------------------------------------------
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
class _Track:
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
    calib: object | None = None  # built-in rig calibration state
    rest: RestCalibration | None = None  # rest-face collection while it runs
    rest_offset: np.ndarray | None = None  # (N, 3) calibrated rest minus the identity's neutral
    rest_info: dict | None = None  # how the rest face was found (source, frames)


# -- the fitter --------------------------------------------------------------------------
class FaceModelFitter:
    """Fits a morphable model to 478 landmarks per frame and per track.

    `model=None` selects the built-in rig: each track's neutral is calibrated from its
    first confident near-frontal frames and the 52 ARKit fields are generated from it.
    """

    def __init__(self, model: MorphableModel | None = None, config: FitterConfig | None = None) -> None:
        self.config = config or FitterConfig()
        self.model = model
        self._shared = (PreparedModel(model, self.config.contour_weight, self.config.chin_weight)
                        if model is not None else None)
        self._tracks: dict[int, _Track] = {}
        self._preset: tuple[np.ndarray, np.ndarray] | None = None  # a saved neutral for new tracks
        self.last_iterations = 0  # joint steps the last fit needed (diagnostics)

    @property
    def model_id(self) -> str:
        return self.model.id if self.model is not None else "builtin"

    def forget(self, track_id: int) -> None:
        """Drop a track's state (identity, warm start); call when the track ends."""
        self._tracks.pop(track_id, None)

    def track_identity(self, track_id: int) -> tuple[np.ndarray, float] | None:
        """The track's current identity estimate and its accumulated confidence."""
        t = self._tracks.get(track_id)
        return None if t is None or t.identity is None else (t.identity.copy(), t.id_weight)

    def track_ids(self) -> list[int]:
        """The tracks with state, least recently seen first."""
        return list(self._tracks)

    def recalibrate(self, track_id: int, frames: int) -> None:
        """Find the track's rest face again from its next `frames` frames (a neutral face, on demand)."""
        t = self._tracks.get(track_id)
        if t is None or self.model is None:
            raise ModelError(f"no fitted track {track_id} to calibrate (the built-in rig calibrates itself)")
        t.rest = RestCalibration(max(1, frames), self.config.rest_keep, source="on demand")

    def calibration(self, track_id: int) -> dict | None:
        """How the track's rest face was found ({source, frames}), None while it is not calibrated."""
        t = self._tracks.get(track_id)
        return None if t is None or t.rest_info is None else dict(t.rest_info)

    def neutral_of(self, track_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray] | None:
        """(identity, rest offsets, their landmark indices) of a calibrated track, for saving."""
        t = self._tracks.get(track_id)
        if t is None or t.rest_offset is None or t.identity is None:
            return None
        return t.identity.copy(), t.rest_offset.copy(), t.prepared.idx.copy()

    def use_neutral(self, identity: np.ndarray, rest: np.ndarray, landmarks: np.ndarray) -> None:
        """Start every new track from a saved calibration (same actor): identity and rest held, no warm-up."""
        pm = self._shared
        if pm is None or len(identity) != pm.k_id or not np.array_equal(landmarks, pm.idx):
            raise ModelError("the saved neutral was made with another model or landmark set: recalibrate")
        self._preset = (np.asarray(identity, np.float64), np.asarray(rest, np.float64))

    def fit(self, track_id: int, landmarks: np.ndarray, image_size: tuple[int, int],
            focal_px: float | None = None) -> FitResult:
        """Fit one face. landmarks: (478, 2 or 3) pixels, rows of NaN = missing points.

        image_size is (width, height); focal_px defaults to the image width.
        """
        lm = np.asarray(landmarks, np.float64)
        if lm.ndim != 2 or lm.shape[0] != LANDMARK_COUNT or lm.shape[1] < 2:
            raise ModelError(f"landmarks must be ({LANDMARK_COUNT}, 2|3) pixels, got {lm.shape}")
        w, h = int(image_size[0]), int(image_size[1])
        f = float(focal_px or w)
        track = self._track(track_id, lm, w, h, f)
        if track is None:
            raise ModelError("too few landmarks to fit (need a detected face with most of its 478 points)")
        pm = track.prepared
        obs = lm[pm.idx, :2]
        present = np.isfinite(obs).all(1)
        if present.sum() < 12:
            raise ModelError(f"only {int(present.sum())} usable landmarks; need at least 12 to fit a face")
        p = np.stack([(obs[:, 0] - w / 2) / f, -(obs[:, 1] - h / 2) / f], axis=1)
        p[~present] = 0.0
        wts = pm.weight * present
        cfg = self.config

        k_id = pm.k_id
        if track.id_shape is None:
            track.id_shape = pm.identity_shape(np.zeros(k_id))
        expr_prev = track.expression
        expr = expr_prev.copy() if expr_prev is not None else np.zeros(pm.k_exp)
        first = track.rotation is None
        solve_id = k_id > 0 and track.rest_offset is None and (
            first or track.id_weight < cfg.id_warmup_weight or track.frames % cfg.id_every == 0)
        if first:
            rot, trans = _init_pose(track.id_shape, p, wts)
            for _ in range(cfg.pose_iterations):
                rot, trans = _pose_step(track.id_shape, p, wts, rot, trans)
        else:
            rot, trans = track.rotation.copy(), track.translation.copy()
        # pose and expression with the track's identity fixed, until the steps are small
        n_fixed = cfg.first_frame_iterations if first else cfg.outer_iterations
        for it in range(cfg.max_iterations):
            rot, trans, expr, step = self._expression_step(track, p, wts, rot, trans, expr, expr_prev)
            if it + 1 >= n_fixed and step < cfg.tolerance:
                break
        self.last_iterations = it + 1
        if solve_id:
            # identity measurement on the converged frame, fused into the track's estimate;
            # a track's first frame iterates measurement and expression fit before fusing
            anchor = track.identity if track.identity is not None else np.zeros(k_id)
            for _ in range(cfg.first_frame_iterations if first else 1):
                measured, info = self._measure_identity(track, p, wts, rot, trans, expr, expr_prev, anchor)
                if first:
                    anchor = measured
                    track.id_shape = pm.identity_shape(measured)
                    for _ in range(cfg.max_iterations):
                        rot, trans, expr, step = self._expression_step(track, p, wts, rot, trans, expr, expr_prev)
                        if step < cfg.tolerance:
                            break
            self._fuse_identity(track, measured, info, sir_confidence(rot, expr, cfg.sir_lambda))
            assert track.identity is not None
            track.id_shape = self._neutral_shape(track)
            # a new track's pose and expression follow its fused identity at once; later
            # frames leave that to the next frame's steps (the identity moved a little)
            for _ in range(cfg.max_iterations if first else 0):
                rot, trans, expr, step = self._expression_step(track, p, wts, rot, trans, expr, expr_prev)
                if step < cfg.tolerance:
                    break
        if cfg.exclude_above < 1.0 and pm.exp_nonneg:
            # antagonistic pairs: the weaker of each pair both on is held at 0 and the frame re-solved
            arkit = pm.model.arkit_map @ expr
            both = (arkit[pm.pair_a] > cfg.exclude_above) & (arkit[pm.pair_b] > cfg.exclude_above)
            if both.any():
                losers = np.where(arkit[pm.pair_a] < arkit[pm.pair_b], pm.pair_a, pm.pair_b)[both]
                hi = pm.hi_pose_exp.copy()
                hi[6:][(pm.model.arkit_map[losers] > 0).any(0)] = 0.0
                for _ in range(2):
                    rot, trans, expr, _ = self._expression_step(track, p, wts, rot, trans, expr, expr_prev, hi)
        ident = track.identity if track.identity is not None else np.zeros(k_id)
        coef = np.concatenate([ident, expr])
        shape = track.id_shape + (pm.basis_flat_exp @ expr).reshape(-1, 3)
        conf = sir_confidence(rot, expr, cfg.sir_lambda)
        if self.model is not None and (track.rest is not None or (cfg.rest_window and track.rest_offset is None)):
            if track.rest is None:
                track.rest = RestCalibration(cfg.rest_window, cfg.rest_keep, early=cfg.rest_early,
                                             source=cfg.rest_source)
            rest = track.rest.add(observed_shape(shape, p, rot, trans, present),
                                  float(np.abs(expr[pm.energy_cols]).sum()))
            if rest is not None:
                track.rest_offset = self._rest_offset(pm, rest - pm.identity_shape(ident))
                track.rest_info = {"source": track.rest.source, "frames": track.rest.frames_used}
                if track.rest.done:
                    track.rest = None
                track.id_shape = self._neutral_shape(track)
        track.rotation, track.translation, track.expression = rot, trans, expr
        track.frames += 1
        # outputs
        cam = shape @ rot.T + trans
        proj = cam[:, :2] / -cam[:, 2:3]
        rms = float(np.sqrt((((proj - p) ** 2).sum(1) * present).sum() / present.sum()) * f)
        if pm.lmk68_on_landmarks and np.isfinite(lm).all():
            l68 = ibug68_from_478(lm)  # the 68 points are defined on the landmarks: read them there when all seen
        else:
            c68 = (pm.base68 + (pm.basis68.reshape(-1, pm.k) @ coef).reshape(-1, 3)) @ rot.T + trans
            l68 = np.stack([w / 2 + f * c68[:, 0] / -c68[:, 2], h / 2 - f * c68[:, 1] / -c68[:, 2]], axis=1)
        model = pm.model
        return FitResult(
            model_id=model.id, blendshapes=np.clip(model.arkit_map @ expr.astype(np.float32), 0, 1),
            expression=expr.astype(np.float32), identity=ident.astype(np.float32), rotation=rot.copy(),
            translation=trans.copy(), landmarks68=l68.astype(np.float32), focal_px=f, image_size=(w, h),
            confidence=conf, rms_px=rms, model=model,
        )

    # -- internals -----------------------------------------------------------------------
    def _track(self, track_id: int, lm: np.ndarray, w: int, h: int, f: float) -> _Track | None:
        t = self._tracks.get(track_id)
        if self.model is None:
            from facetrack.tracker.facemodel.builtin_rig import BuiltinCalibration

            if t is None:
                calib = BuiltinCalibration()
                model = calib.update(lm, (w, h), f)
                if model is None:
                    return None
                t = _Track(PreparedModel(model, self.config.contour_weight, self.config.chin_weight), calib=calib)
            else:
                calib = t.calib
                assert isinstance(calib, BuiltinCalibration)
                if not calib.done:
                    model = calib.update(lm, (w, h), f)
                    if model is not None:
                        t.prepared = PreparedModel(model, self.config.contour_weight, self.config.chin_weight)
                        t.expression = t.id_shape = None  # the neutral changed: the old weights mean nothing
        elif t is None:
            assert self._shared is not None
            t = _Track(self._shared)
            if self._preset is not None:
                t.identity, t.rest_offset = self._preset[0].copy(), self._preset[1].copy()
                t.id_weight, t.rest_info = self.config.id_max_weight, {"source": "file", "frames": 0}
                t.id_shape = self._neutral_shape(t)
        if track_id not in self._tracks and len(self._tracks) >= self.config.max_tracks:
            self._tracks.pop(next(iter(self._tracks)))
        self._tracks.pop(track_id, None)
        self._tracks[track_id] = t  # most recently seen last
        return t

    def _rest_offset(self, pm: PreparedModel, offset: np.ndarray) -> np.ndarray:
        """The rest offsets kept: all that no expression explains, and expressions only up to `rest_cap`.

        A calm face can look a little like an expression (thick lips, low brows) or be a
        held one (a person who smiles through the warm-up): a held expression must still
        read, so the part of the rest that the expression shapes explain (non-negative
        weights c) is subtracted only up to `rest_cap` per shape.
        """
        off = offset.copy()
        cap = self.config.rest_cap
        if cap >= 1.0 or not pm.exp_nonneg:
            return off
        b = pm.basis_flat_exp
        h = b.T @ b
        h[np.diag_indices(len(h))] += 1e-6 * float(np.trace(h)) / len(h)
        c = box_qp(h, b.T @ off.reshape(-1), np.zeros(pm.k_exp), np.ones(pm.k_exp))
        return off - (b @ (c - np.minimum(c, cap))).reshape(-1, 3)

    @staticmethod
    def _neutral_shape(track: _Track) -> np.ndarray:
        """The track's neutral landmarks: identity plus the calibrated rest offsets when there are some."""
        pm = track.prepared
        base = pm.identity_shape(track.identity if track.identity is not None else np.zeros(pm.k_id))
        return base if track.rest_offset is None else base + track.rest_offset

    def _normal_equations(self, pm: PreparedModel, shape: np.ndarray, basis: np.ndarray, p: np.ndarray,
                          wts: np.ndarray, rot: np.ndarray, trans: np.ndarray,
                          ) -> tuple[np.ndarray, np.ndarray, float]:
        """Gauss-Newton normal equations (H, g) of pose (6) and the coefficients of `basis` (3, N, K).

        Exact perspective Jacobian, built column-wise in float32 without temporaries
        (a fit is a few of these; numpy call overhead matters at this size), scaled
        by the landmark precision; also returns the mean depth.
        """
        y = shape @ rot.T
        cam = y + trans
        depth = -cam[:, 2]
        inv = 1.0 / depth
        px, py = cam[:, 0] * inv, cam[:, 1] * inv
        sw = np.sqrt(wts)
        swi = sw * inv
        n, k = len(px), basis.shape[2]
        jac = np.empty((2 * n, 6 + k), np.float32)
        jx, jy = jac[:n], jac[n:]
        y0, y1, y2 = y[:, 0], y[:, 1], y[:, 2]
        # rows of D = d(projection)/d(camera point): swi [1, 0, px], swi [0, 1, py]; the
        # rotation columns are y x D (a small rotation w moves y by w x y), translation D
        jx[:, 0], jx[:, 1], jx[:, 2] = y1 * px * swi, (y2 - y0 * px) * swi, -y1 * swi
        jy[:, 0], jy[:, 1], jy[:, 2] = (y1 * py - y2) * swi, -y0 * py * swi, y0 * swi
        jx[:, 3], jx[:, 4], jx[:, 5] = swi, 0.0, px * swi
        jy[:, 3], jy[:, 4], jy[:, 5] = 0.0, swi, py * swi
        ax = ((rot[0] + px[:, None] * rot[2]) * swi[:, None]).astype(np.float32)  # D R: head-frame derivative
        ay = ((rot[1] + py[:, None] * rot[2]) * swi[:, None]).astype(np.float32)
        b0, b1, b2 = basis
        np.multiply(ax[:, :1], b0, out=jx[:, 6:])
        jx[:, 6:] += ax[:, 1:2] * b1
        jx[:, 6:] += ax[:, 2:] * b2
        np.multiply(ay[:, :1], b0, out=jy[:, 6:])
        jy[:, 6:] += ay[:, 1:2] * b1
        jy[:, 6:] += ay[:, 2:] * b2
        res = np.empty(2 * n, np.float32)
        res[:n] = (p[:, 0] - px) * sw
        res[n:] = (p[:, 1] - py) * sw
        dm = float((wts * depth).sum() / wts.sum())
        prec = 1.0 / (self.config.landmark_sigma * pm.radius / dm) ** 2
        return (jac.T @ jac).astype(np.float64) * prec, (jac.T @ res).astype(np.float64) * prec, dm

    def _expression_step(self, track: _Track, p: np.ndarray, wts: np.ndarray, rot: np.ndarray,
                         trans: np.ndarray, expr: np.ndarray, expr_prev: np.ndarray | None,
                         hi: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
        """One regularised Gauss-Newton step on pose and expression together (identity fixed).

        Pose and expression are coupled (jaw drop vs. pitch, smile vs. depth), so they
        are solved in one system; expression stays in [0, 1] via the box QP.
        """
        cfg = self.config
        pm = track.prepared
        assert track.id_shape is not None
        shape = track.id_shape + (pm.basis_flat_exp @ expr).reshape(-1, 3)
        hmat, g, dm = self._normal_equations(pm, shape, pm.basis32_exp, p, wts, rot, trans)
        c = hmat[:, 6:] @ expr + g
        diag = np.empty(len(c))
        diag[:6] = 1e-9 * hmat[np.arange(6), np.arange(6)].max()
        # expression priors: ridge, L1 (linear since weights >= 0), temporal
        diag[6:] = cfg.exp_ridge
        if pm.exp_nonneg:
            c[6:] -= cfg.exp_l1
        if expr_prev is not None:
            diag[6:] += cfg.temporal
            c[6:] += cfg.temporal * expr_prev
        hmat[np.diag_indices(len(c))] += diag
        x = box_qp(hmat, c, pm.lo_pose_exp, pm.hi_pose_exp if hi is None else hi,
                   np.concatenate([np.zeros(6), np.minimum(expr, pm.hi_pose_exp[6:] if hi is None else hi[6:])]))
        # step size: rotation (rad), translation relative to depth, coefficient change
        step = max(float(np.abs(x[:3]).max()), float(np.abs(x[3:6]).max()) / dm,
                   float(np.abs(x[6:] - expr).max()) * 0.01 if len(expr) else 0.0)
        return rodrigues(x[:3]) @ rot, trans + x[3:6], x[6:], step

    def _measure_identity(self, track: _Track, p: np.ndarray, wts: np.ndarray, rot: np.ndarray,
                          trans: np.ndarray, expr: np.ndarray, expr_prev: np.ndarray | None,
                          anchor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The identity measured on this (converged) frame, and its information matrix.

        One Gauss-Newton step on pose, identity and expression from the converged
        pose and expression, with a weak prior toward the track's estimate, gives the
        measurement; its information is the identity block with pose and expression
        marginalised (Schur complement), so what an expression could explain does not
        count as identity. The expression weights at a bound (most are 0) stay there:
        the frame was just fitted, so its active set is known and the step is one
        dense solve instead of a box QP over all 159 coefficients (which made ICT's
        identity frames 3-4x the cost of the others).
        """
        cfg = self.config
        pm = track.prepared
        assert track.id_shape is not None
        k_id = pm.k_id
        shape = track.id_shape + (pm.basis_flat_exp @ expr).reshape(-1, 3)
        free = np.ones(pm.k_exp, bool)
        if pm.exp_nonneg:
            free = (expr > pm.lo_pose_exp[6:] + 1e-9) & (expr < pm.hi_pose_exp[6:] - 1e-9)
        # only the columns the step moves: pose, identity and the free expression weights
        basis = np.concatenate([pm.basis32[:, :, :k_id], pm.basis32_exp[:, :, free]], axis=2)
        h, rhs, _ = self._normal_equations(pm, shape, basis, p, wts, rot, trans)
        e = expr[free]
        prior = np.full(len(e), cfg.exp_ridge + (cfg.temporal if expr_prev is not None else 0.0))
        rhs[6 + k_id:] -= cfg.exp_ridge * e + (cfg.exp_l1 if pm.exp_nonneg else 0.0)
        if expr_prev is not None:
            rhs[6 + k_id:] -= cfg.temporal * (e - expr_prev[free])
        h[np.diag_indices(len(rhs))] += np.concatenate(
            [np.full(6, 1e-9 * h[np.arange(6), np.arange(6)].max()), np.zeros(k_id), prior])
        ii = np.arange(6, 6 + k_id)
        rr = np.r_[0:6, 6 + k_id:len(rhs)]
        h_ir = h[np.ix_(ii, rr)]
        info = h[np.ix_(ii, ii)] - h_ir @ np.linalg.solve(h[np.ix_(rr, rr)], h_ir.T)
        h[ii, ii] += cfg.id_measure_prior
        return anchor + np.linalg.solve(h, rhs)[6:6 + k_id], 0.5 * (info + info.T)

    def _fuse_identity(self, track: _Track, measured: np.ndarray, info: np.ndarray, conf: float) -> None:
        """Information-form fusion of one frame's identity, weighted by its SIR confidence."""
        cfg = self.config
        if track.id_info is None or track.id_eta is None:
            track.id_info = np.zeros_like(info)
            track.id_eta = np.zeros(len(measured))
        total = track.id_weight + conf
        keep = 1.0 if total <= cfg.id_max_weight else (cfg.id_max_weight - conf) / max(track.id_weight, 1e-12)
        track.id_info = keep * track.id_info + conf * info
        track.id_eta = keep * track.id_eta + conf * info @ measured
        track.id_weight = min(total, cfg.id_max_weight)
        a = track.id_info.copy()
        a[np.diag_indices(len(a))] += cfg.id_prior
        track.identity = np.linalg.solve(a, track.id_eta)


def _init_pose(shape: np.ndarray, p: np.ndarray, wts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Weak-perspective pose from 3D-2D points (affine camera, then nearest rotation)."""
    sw = np.sqrt(wts)[:, None]
    a = np.concatenate([shape, np.ones((len(shape), 1))], axis=1) * sw
    sol = np.linalg.lstsq(a, p * sw, rcond=None)[0]  # (4, 2)
    m = sol[:3].T  # (2, 3)
    u, s, vt = np.linalg.svd(m, full_matrices=False)
    r12 = u @ vt
    scale = s.mean()
    r = np.vstack([r12, np.cross(r12[0], r12[1])])
    if np.linalg.det(r) < 0:
        r[2] *= -1
    depth = 1.0 / scale
    t = np.array([sol[3, 0] * depth, sol[3, 1] * depth, -depth])
    return r, t


def _pose_step(shape: np.ndarray, p: np.ndarray, wts: np.ndarray, rot: np.ndarray,
               trans: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One Gauss-Newton step on (rotation, translation) for the perspective projection."""
    y = shape @ rot.T
    cam = y + trans
    inv = 1.0 / -cam[:, 2]
    px, py = cam[:, 0] * inv, cam[:, 1] * inv
    r = (p - np.stack([px, py], axis=1)) * np.sqrt(wts)[:, None]
    # dp/dX rows: [inv, 0, px*inv], [0, inv, py*inv]; dX/dw = -[y]x, dX/dt = I
    n = len(shape)
    jx = np.empty((n, 6))
    jy = np.empty((n, 6))
    dx = np.stack([inv, np.zeros(n), px * inv], axis=1)
    dy = np.stack([np.zeros(n), inv, py * inv], axis=1)
    jx[:, :3] = np.cross(y, dx)  # d/dw of dx . (w x y) = dx . (w x y) = w . (y x dx)
    jy[:, :3] = np.cross(y, dy)
    jx[:, 3:], jy[:, 3:] = dx, dy
    sw = np.sqrt(wts)[:, None]
    j = np.concatenate([jx * sw, jy * sw])
    res = np.concatenate([r[:, 0], r[:, 1]])
    jtj = j.T @ j
    jtj[np.diag_indices(6)] *= 1.0 + 1e-6
    delta = np.linalg.solve(jtj + 1e-12 * np.eye(6), j.T @ res)
    return rodrigues(delta[:3]) @ rot, trans + delta[3:]
