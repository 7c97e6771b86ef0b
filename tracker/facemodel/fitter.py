"""Per-frame fit of a morphable model to the 478 landmarks: pose, expression, identity.

One fitter serves every `MorphableModel` (and, with `model=None`, the built-in rig that
is generated per tracked person). Per frame and face:

1. pose (rotation, translation) by Gauss-Newton on the perspective reprojection error,
   warm-started from the track's previous frame (weak-perspective closed form on the
   first frame);
2. coefficients by regularised least squares: expression bounded to [0, 1] (a small
   active-set box QP on the normal equations), a temporal prior toward the previous
   frame and an L1/ridge prior toward neutral, with the track's identity held fixed;
3. identity per track (every frame until it is confident, then every n-th frame): the
   frame's identity measurement (a joint solve with a weak prior) and its information
   matrix (Schur complement: pose and expression marginalised) are fused into the
   track's information-form estimate, scaled by the SIR confidence
   f = 1/8 (cos a + 1)(cos b + 1)(cos g + 1) exp(-lambda ||expr||), so frontal neutral
   frames count most; with an N(0, 1) prior this is the recursive least-squares
   posterior, which converges as frames accumulate and then stays stable.

Steps 1-2 alternate a few times. The normal equations come from the exact perspective
Jacobian through the landmark-level bases (precomputed once per model, float32 for the
Hessian), so a frame costs a few small matrix products and dense solves.
Landmarks are pixels (x right, y down); the camera frame is x right, y up, z toward
the viewer; the focal length is in pixels with the principal point at the centre.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, Field

from facetrack.tracker.facemodel.format import ModelError, MorphableModel
from facetrack.tracker.schema import ARKIT_BLENDSHAPES, LANDMARK_COUNT

FACE_OVAL = np.array([10, 338, 297, 332, 284, 251, 389, 356, 454, 323, 361, 288, 397, 365, 379, 378, 400, 377, 152,
                      148, 176, 149, 150, 136, 172, 58, 132, 93, 234, 127, 162, 21, 54, 103, 67, 109])
"""mediapipe's face-oval landmarks: they slide along the silhouette, so they get less weight."""


class FitterConfig(BaseModel):
    """Weights of the fit; the defaults suit mediapipe landmarks on 480p-1080p video."""

    landmark_sigma: float = Field(0.02, gt=0, description="Landmark noise as a fraction of the face's RMS radius.")
    outer_iterations: int = Field(2, ge=1, description="Joint Gauss-Newton steps per frame (warm-started).")
    max_iterations: int = Field(10, ge=1, description="More steps while the pose still moves (fast motion, re-acquired face).")
    tolerance: float = Field(1e-3, gt=0, description="Converged when the step is below this (rad, or depth fraction).")
    pose_iterations: int = Field(3, ge=1, description="Pose-only steps after a track's weak-perspective start.")
    first_frame_iterations: int = Field(8, ge=1, description="Joint steps on a track's first frame (no warm start).")
    exp_ridge: float = Field(0.05, ge=0, description="Ridge prior on expression weights (toward neutral).")
    exp_l1: float = Field(1.0, ge=0, description="L1 prior on expression weights (sparse, they are >= 0).")
    temporal: float = Field(1.0, ge=0, description="Pull of expression weights toward the previous frame.")
    id_prior: float = Field(1.0, ge=0, description="N(0, 1) prior on identity coefficients (precision).")
    id_measure_prior: float = Field(1.0, gt=0, description="Weak prior of the per-frame identity measurement.")
    id_max_weight: float = Field(150.0, gt=0, description="Cap on a track's accumulated confidence (adaptivity).")
    id_warmup_weight: float = Field(6.0, ge=0, description="Update identity every frame until this confidence.")
    id_every: int = Field(15, ge=1, description="Then update identity every n-th frame of the track.")
    sir_lambda: float = Field(1.0, ge=0, description="lambda in the SIR confidence exp(-lambda ||expr||).")
    contour_weight: float = Field(0.5, ge=0, description="Weight of face-oval landmarks (they slide).")
    max_tracks: int = Field(64, ge=1, description="Tracks kept; the least recently seen is forgotten first.")


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
    clamp the violators, release bounds whose gradient points inward. A few Cholesky
    solves per call; ends with a clip so the bounds always hold.
    """
    n = len(c)
    at_lo = np.zeros(n, bool) if x0 is None else x0 <= lo + 1e-9
    at_hi = np.zeros(n, bool) if x0 is None else x0 >= hi - 1e-9
    x = np.zeros(n) if x0 is None else np.clip(x0, lo, hi).astype(np.float64)
    for _ in range(max_iter):
        fixed = at_lo | at_hi
        x[at_lo], x[at_hi] = lo[at_lo], hi[at_hi]
        free = ~fixed
        if free.any():
            rhs = c[free] - h[np.ix_(free, fixed)] @ x[fixed] if fixed.any() else c[free]
            try:
                x[free] = np.linalg.solve(h[np.ix_(free, free)], rhs)
            except np.linalg.LinAlgError:
                x[free] = np.linalg.lstsq(h[np.ix_(free, free)], rhs, rcond=None)[0]
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

    def __init__(self, model: MorphableModel, contour_weight: float) -> None:
        self.model = model
        self.idx = np.nonzero(model.lmk_valid)[0]
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
        self.weight = w[self.idx]
        self.basis32c = np.ascontiguousarray(self.basis.transpose(1, 0, 2), dtype=np.float32)  # (3, N, K)
        self.basis32c_exp = np.ascontiguousarray(self.basis32c[:, :, self.k_id:])
        self.basis_flat = np.ascontiguousarray(self.basis.reshape(-1, self.k))  # (3N, K)
        self.radius = float(np.sqrt(((self.base - self.base.mean(0)) ** 2).sum(1).mean()))
        v68, b68 = model.lmk68_vertices, model.lmk68_bary.astype(np.float64)
        self.base68 = np.einsum("nkc,nk->nc", model.neutral[v68].astype(np.float64), b68)
        self.basis68 = np.einsum("knjc,nj->nck", basis[:, v68].astype(np.float64), b68) if len(basis) else np.zeros(
            (68, 3, 0))
        lo, hi = (float(b) for b in model.extra.get("exp_bounds", (0.0, 1.0)))
        self.exp_nonneg = lo >= 0.0
        self.lo = np.concatenate([np.full(self.k_id, -np.inf), np.full(self.k_exp, lo)])
        self.hi = np.concatenate([np.full(self.k_id, np.inf), np.full(self.k_exp, hi)])

    def shape(self, coef: np.ndarray) -> np.ndarray:
        """Landmark positions (N, 3) in the head frame for the coefficients [identity, expression]."""
        return self.base + (self.basis_flat @ coef).reshape(-1, 3)


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
    frames: int = 0
    calib: object | None = None  # built-in rig calibration state


# -- the fitter --------------------------------------------------------------------------
class FaceModelFitter:
    """Fits a morphable model to 478 landmarks per frame and per track.

    `model=None` selects the built-in rig: each track's neutral is calibrated from its
    first confident near-frontal frames and the 52 ARKit fields are generated from it.
    """

    def __init__(self, model: MorphableModel | None = None, config: FitterConfig | None = None) -> None:
        self.config = config or FitterConfig()
        self.model = model
        self._shared = PreparedModel(model, self.config.contour_weight) if model is not None else None
        self._tracks: dict[int, _Track] = {}
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
        ident = track.identity.copy() if track.identity is not None else np.zeros(k_id)
        expr_prev = track.expression
        expr = expr_prev.copy() if expr_prev is not None else np.zeros(pm.k_exp)
        first = track.rotation is None
        solve_id = k_id > 0 and (first or track.id_weight < cfg.id_warmup_weight or track.frames % cfg.id_every == 0)
        if first:
            rot, trans = _init_pose(pm.shape(np.concatenate([ident, np.zeros(pm.k_exp)])), p, wts)
        else:
            rot, trans = track.rotation.copy(), track.translation.copy()
        coef = np.concatenate([ident, expr])
        if first:
            shape0 = pm.shape(coef)
            for _ in range(cfg.pose_iterations):
                rot, trans = _pose_step(shape0, p, wts, rot, trans)
        # pose and expression with the track's identity fixed, until the steps are small
        n_fixed = cfg.first_frame_iterations if first else cfg.outer_iterations
        for it in range(cfg.max_iterations):
            rot, trans, coef, _, step = self._joint_step(pm, p, wts, rot, trans, coef, expr_prev, False)
            if it + 1 >= n_fixed and step < cfg.tolerance:
                break
        self.last_iterations = it + 1
        if solve_id:
            # identity measurement on the converged frame, fused into the track's estimate
            for _ in range(cfg.first_frame_iterations if first else 1):
                rot, trans, coef, info, _ = self._joint_step(pm, p, wts, rot, trans, coef, expr_prev, True,
                                                             track.identity)
            assert info is not None
            conf = sir_confidence(rot, coef[k_id:], cfg.sir_lambda)
            self._fuse_identity(track, coef[:k_id], info, conf)
            coef[:k_id] = track.identity
            for _ in range(cfg.max_iterations):
                rot, trans, coef, _, step = self._joint_step(pm, p, wts, rot, trans, coef, expr_prev, False)
                if step < cfg.tolerance:
                    break
        shape = pm.shape(coef)
        ident, expr = coef[:k_id], coef[k_id:]
        conf = sir_confidence(rot, expr, cfg.sir_lambda)
        track.rotation, track.translation, track.expression = rot, trans, expr
        track.frames += 1
        # outputs
        cam = shape @ rot.T + trans
        proj = cam[:, :2] / -cam[:, 2:3]
        rms = float(np.sqrt((((proj - p) ** 2).sum(1) * present).sum() / present.sum()) * f)
        s68 = pm.base68 + (pm.basis68.reshape(-1, pm.k) @ coef).reshape(-1, 3)
        c68 = s68 @ rot.T + trans
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
                t = _Track(PreparedModel(model, self.config.contour_weight), calib=calib)
            else:
                calib = t.calib
                assert isinstance(calib, BuiltinCalibration)
                if not calib.done:
                    model = calib.update(lm, (w, h), f)
                    if model is not None:
                        t.prepared = PreparedModel(model, self.config.contour_weight)
                        t.expression = None  # the neutral changed: the old weights mean nothing
        elif t is None:
            assert self._shared is not None
            t = _Track(self._shared)
        if track_id not in self._tracks and len(self._tracks) >= self.config.max_tracks:
            self._tracks.pop(next(iter(self._tracks)))
        self._tracks.pop(track_id, None)
        self._tracks[track_id] = t  # most recently seen last
        return t

    def _joint_step(self, pm: PreparedModel, p: np.ndarray, wts: np.ndarray, rot: np.ndarray,
                    trans: np.ndarray, coef: np.ndarray, expr_prev: np.ndarray | None,
                    solve_id: bool, id_anchor: np.ndarray | None = None,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, float]:
        """One regularised Gauss-Newton step on pose and coefficients together.

        Pose and shape are strongly coupled (depth vs. face size, pitch vs. profile),
        so they are solved in one system; expression stays in [0, 1] via the box QP.
        """
        cfg = self.config
        k_id = pm.k_id
        sel = slice(0 if solve_id else k_id, pm.k)
        shape = pm.shape(coef)
        y = shape @ rot.T
        cam = y + trans
        depth = -cam[:, 2]
        inv = 1.0 / depth
        px, py = cam[:, 0] * inv, cam[:, 1] * inv
        sw = np.sqrt(wts)
        r = (p - np.stack([px, py], axis=1)) * sw[:, None]
        # rows of D_i = d(projection)/dX: inv * [1, 0, px], inv * [0, 1, py]
        swi = (sw * inv)[:, None]
        dx = np.stack([np.ones_like(px), np.zeros_like(px), px], axis=1) * swi
        dy = np.stack([np.zeros_like(px), np.ones_like(px), py], axis=1) * swi
        b0, b1, b2 = pm.basis32c if solve_id else pm.basis32c_exp  # (N, K_sel) each, contiguous
        ax = (dx @ rot).astype(np.float32)  # D_i R, row 0
        ay = (dy @ rot).astype(np.float32)
        jc = np.empty((2 * len(px), b0.shape[1]), np.float32)
        n = len(px)
        jc[:n] = ax[:, :1] * b0 + ax[:, 1:2] * b1 + ax[:, 2:] * b2
        jc[n:] = ay[:, :1] * b0 + ay[:, 1:2] * b1 + ay[:, 2:] * b2
        jp = np.concatenate([np.concatenate([np.cross(y, dx), dx], 1),
                             np.concatenate([np.cross(y, dy), dy], 1)]).astype(np.float32)
        jac = np.concatenate([jp, jc], axis=1)
        res = np.concatenate([r[:, 0], r[:, 1]]).astype(np.float32)
        dm = float((wts * depth).sum() / wts.sum())
        prec = 1.0 / (cfg.landmark_sigma * pm.radius / dm) ** 2
        hmat = (jac.T @ jac).astype(np.float64) * prec
        g = (jac.T @ res).astype(np.float64) * prec
        cur = coef[sel]
        c = hmat[:, 6:] @ cur + g
        n_id = k_id if solve_id else 0
        diag = np.zeros(len(c))
        diag[:6] = 1e-9 * hmat[np.arange(6), np.arange(6)].max()
        # identity measurement: a weak prior toward the track's current estimate (so the
        # fused estimate's fixed point is unbiased); the estimate itself is fused afterwards
        if n_id:
            diag[6:6 + n_id] = cfg.id_measure_prior
            if id_anchor is not None:
                c[6:6 + n_id] += cfg.id_measure_prior * id_anchor
        # expression priors: ridge, L1 (linear since weights >= 0), temporal
        diag[6 + n_id:] = cfg.exp_ridge
        if pm.exp_nonneg:
            c[6 + n_id:] -= cfg.exp_l1
        if expr_prev is not None:
            diag[6 + n_id:] += cfg.temporal
            c[6 + n_id:] += cfg.temporal * expr_prev
        hmat[np.diag_indices(len(c))] += diag
        lo = np.concatenate([np.full(6, -np.inf), pm.lo[sel]])
        hi = np.concatenate([np.full(6, np.inf), pm.hi[sel]])
        x = box_qp(hmat, c, lo, hi, np.concatenate([np.zeros(6), cur]))
        out = coef.copy()
        out[sel] = x[6:]
        info = None
        if n_id:
            # identity information with pose and expression marginalised (Schur complement)
            ii = np.arange(6, 6 + n_id)
            rr = np.r_[0:6, 6 + n_id:len(c)]
            h_ir = hmat[np.ix_(ii, rr)]
            info = hmat[np.ix_(ii, ii)] - h_ir @ np.linalg.solve(hmat[np.ix_(rr, rr)], h_ir.T)
            info[np.diag_indices(n_id)] -= cfg.id_measure_prior
            info = 0.5 * (info + info.T)
        # step size: rotation (rad), translation relative to depth, coefficient change
        step = max(float(np.abs(x[:3]).max()), float(np.abs(x[3:6]).max()) / dm,
                   float(np.abs(x[6:] - cur).max()) * 0.01 if len(cur) else 0.0)
        return rodrigues(x[:3]) @ rot, trans + x[3:6], out, info, step

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
