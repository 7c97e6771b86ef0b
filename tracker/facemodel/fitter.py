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

from dataclasses import dataclass, field

import numpy as np
from pydantic import BaseModel, Field

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, LANDMARK_COUNT
from facetrack.tracker.facemodel.format import ModelError, MorphableModel
from facetrack.tracker.facemodel.prepared import PreparedModel, TrackState
from facetrack.tracker.facemodel.solve import box_qp, init_pose, pose_step, rodrigues, sir_confidence


class FitterConfig(BaseModel):
    """Weights of the fit; the defaults suit mediapipe landmarks on 480p-1080p video."""

    landmark_sigma: float = Field(0.02, gt=0, description="Landmark noise as a fraction of the face's RMS radius.")
    outer_iterations: int = Field(2, ge=1, description="Joint Gauss-Newton steps per frame (warm-started).")
    max_iterations: int = Field(10, ge=1, description="More steps while the pose still moves (fast motion, re-acquired face).")
    tolerance: float = Field(3e-3, gt=0, description="Converged when the step is below this (rad, or depth fraction).")
    pose_iterations: int = Field(3, ge=1, description="Pose-only steps after a track's weak-perspective start.")
    first_frame_iterations: int = Field(8, ge=1, description="Joint steps on a track's first frame (no warm start).")
    exp_ridge: float = Field(0.05, ge=0, description="Ridge prior on expression weights (toward neutral).")
    exp_l1: float = Field(2.0, ge=0, description="L1 prior on expression weights (sparse; neutral reads 0).")
    temporal: float = Field(1.0, ge=0, description="Pull of expression weights toward the previous frame.")
    id_prior: float = Field(1.0, ge=0, description="N(0, 1) prior on identity coefficients (precision).")
    id_measure_prior: float = Field(0.3, gt=0, description="Weak prior of the per-frame identity measurement.")
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


class FaceModelFitter:
    """Fits a morphable model to 478 landmarks per frame and per track.

    `model=None` selects the built-in rig: each track's neutral is calibrated from its
    first confident near-frontal frames and the 52 ARKit fields are generated from it.
    """

    def __init__(self, model: MorphableModel | None = None, config: FitterConfig | None = None) -> None:
        self.config = config or FitterConfig()
        self.model = model
        self._shared = PreparedModel(model, self.config.contour_weight) if model is not None else None
        self._tracks: dict[int, TrackState] = {}
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
        if track.id_shape is None:
            track.id_shape = pm.identity_shape(np.zeros(k_id))
        expr_prev = track.expression
        expr = expr_prev.copy() if expr_prev is not None else np.zeros(pm.k_exp)
        first = track.rotation is None
        solve_id = k_id > 0 and (first or track.id_weight < cfg.id_warmup_weight or track.frames % cfg.id_every == 0)
        if first:
            rot, trans = init_pose(track.id_shape, p, wts)
            for _ in range(cfg.pose_iterations):
                rot, trans = pose_step(track.id_shape, p, wts, rot, trans)
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
            track.id_shape = pm.identity_shape(track.identity)
            # a new track's pose and expression follow its fused identity at once; later
            # frames leave that to the next frame's steps (the identity moved a little)
            for _ in range(cfg.max_iterations if first else 0):
                rot, trans, expr, step = self._expression_step(track, p, wts, rot, trans, expr, expr_prev)
                if step < cfg.tolerance:
                    break
        ident = track.identity if track.identity is not None else np.zeros(k_id)
        coef = np.concatenate([ident, expr])
        shape = track.id_shape + (pm.basis_flat_exp @ expr).reshape(-1, 3)
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
    def _track(self, track_id: int, lm: np.ndarray, w: int, h: int, f: float) -> TrackState | None:
        t = self._tracks.get(track_id)
        if self.model is None:
            from facetrack.tracker.facemodel.calibration import BuiltinCalibration

            if t is None:
                calib = BuiltinCalibration()
                model = calib.update(lm, (w, h), f)
                if model is None:
                    return None
                t = TrackState(PreparedModel(model, self.config.contour_weight), calib=calib)
            else:
                calib = t.calib
                assert isinstance(calib, BuiltinCalibration)
                if not calib.done:
                    model = calib.update(lm, (w, h), f)
                    if model is not None:
                        t.prepared = PreparedModel(model, self.config.contour_weight)
                        t.expression = t.id_shape = None  # the neutral changed: the old weights mean nothing
        elif t is None:
            assert self._shared is not None
            t = TrackState(self._shared)
        if track_id not in self._tracks and len(self._tracks) >= self.config.max_tracks:
            self._tracks.pop(next(iter(self._tracks)))
        self._tracks.pop(track_id, None)
        self._tracks[track_id] = t  # most recently seen last
        return t

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

    def _expression_step(self, track: TrackState, p: np.ndarray, wts: np.ndarray, rot: np.ndarray,
                         trans: np.ndarray, expr: np.ndarray, expr_prev: np.ndarray | None,
                         ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
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
        x = box_qp(hmat, c, pm.lo_pose_exp, pm.hi_pose_exp, np.concatenate([np.zeros(6), expr]))
        # step size: rotation (rad), translation relative to depth, coefficient change
        step = max(float(np.abs(x[:3]).max()), float(np.abs(x[3:6]).max()) / dm,
                   float(np.abs(x[6:] - expr).max()) * 0.01 if len(expr) else 0.0)
        return rodrigues(x[:3]) @ rot, trans + x[3:6], x[6:], step

    def _measure_identity(self, track: TrackState, p: np.ndarray, wts: np.ndarray, rot: np.ndarray,
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

    def _fuse_identity(self, track: TrackState, measured: np.ndarray, info: np.ndarray, conf: float) -> None:
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


