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
Antagonistic pairs both on (priors.py) keep the stronger and the frame is re-solved; a model
with identity modes adds each track's rest face (rest_face.py) to its identity's neutral, so a
calm face reads ~0 (the weights of all this are `FitterConfig`, fitter_config.py).
Landmarks are pixels (x right, y down); the camera frame is x right, y up, z toward
the viewer; the focal length is in pixels with the principal point at the centre.
"""

from __future__ import annotations

import numpy as np

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES, LANDMARK_COUNT
from facetrack.tracker.facemodel.builtin_rig import ibug68_from_478
from facetrack.tracker.facemodel.expression_head import ExpressionHead, head_for_model
from facetrack.tracker.facemodel.fit_result import FitResult
from facetrack.tracker.facemodel.fitter_config import FitterConfig
from facetrack.tracker.facemodel.format import ModelError, MorphableModel
from facetrack.tracker.facemodel.mediapipe_head import MediaPipeWeights
from facetrack.tracker.facemodel.prepared import PreparedModel, TrackState
from facetrack.tracker.facemodel.rest_face import (
    RestFaceCalibration,
    kept_rest_offset,
    kept_rest_weights,
    observed_shape,
)
from facetrack.tracker.facemodel.solve import box_qp, init_pose, normal_equations, pose_step, rodrigues, sir_confidence


class FaceModelFitter:
    """Fits a morphable model to 478 landmarks per frame and per track.

    `model=None` selects the built-in rig: each track's neutral is calibrated from its
    first confident near-frontal frames and the 52 ARKit fields are generated from it.
    """

    def __init__(self, model: MorphableModel | None = None, config: FitterConfig | None = None) -> None:
        self.config = config or FitterConfig()
        self.model = model
        self._shared = self._prepare(model) if model is not None else None
        self._tracks: dict[int, TrackState] = {}
        self._preset: tuple[np.ndarray, np.ndarray, np.ndarray | None] | None = None  # a saved neutral for new tracks
        self.head = self._load_head(model)
        # MediaPipe's network for the weights `mediapipe_weights` names, where a learned network speaks at all
        wanted = self.config.mediapipe_weights != "off" and self.config.head != "off" and model is not None
        self.mediapipe = MediaPipeWeights.load(self.config.mediapipe_weights) if wanted else None
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
            raise ModelError(f"no fitted track {track_id} to calibrate (the generated rig calibrates itself)")
        t.rest = RestFaceCalibration(max(1, frames), self.config.rest_keep, source="on demand")

    def rest_face(self, track_id: int) -> dict | None:
        """How the track's rest face was found ({source, frames}), None while it is not calibrated."""
        t = self._tracks.get(track_id)
        return None if t is None or t.rest_info is None else dict(t.rest_info)

    def neutral_of(self, track_id: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None] | None:
        """(identity, rest offsets, their landmark indices, the rest's weights as MediaPipe's network read them
        or None) of a calibrated track, for saving."""
        t = self._tracks.get(track_id)
        if t is None or t.rest_offset is None or t.identity is None:
            return None
        weights = None if t.rest_weights is None else t.rest_weights.copy()
        return t.identity.copy(), t.rest_offset.copy(), t.prepared.idx.copy(), weights

    def use_neutral(self, identity: np.ndarray, rest: np.ndarray, landmarks: np.ndarray,
                    rest_weights: np.ndarray | None = None) -> None:
        """Start every new track from a saved calibration (same actor): identity and rest held, no warm-up."""
        pm = self._shared
        if pm is None or len(identity) != pm.k_id or not np.array_equal(landmarks, pm.idx):
            raise ModelError("the saved neutral was made with another model or landmark set: recalibrate")
        if rest_weights is None and self.mediapipe is not None:
            raise ModelError("the saved neutral has no weights of MediaPipe's network (saved before they were "
                             "read): recalibrate and save it again")
        weights = None if rest_weights is None else np.asarray(rest_weights, np.float64)
        self._preset = (np.asarray(identity, np.float64), np.asarray(rest, np.float64), weights)

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
            conf = sir_confidence(rot, expr, cfg.sir_lambda)
            track.fuse_identity(measured, info, conf, cfg.id_prior, cfg.id_max_weight)
            assert track.identity is not None
            track.id_shape = track.neutral_shape()
            # a new track's pose and expression follow its fused identity at once; later
            # frames leave that to the next frame's steps (the identity moved a little)
            for _ in range(cfg.max_iterations if first else 0):
                rot, trans, expr, step = self._expression_step(track, p, wts, rot, trans, expr, expr_prev)
                if step < cfg.tolerance:
                    break
        if cfg.exclude_above < 1.0 and pm.exp_nonneg:
            rot, trans, expr = self._exclude_antagonists(track, p, wts, rot, trans, expr, expr_prev)
        ident = track.identity if track.identity is not None else np.zeros(k_id)
        coef = np.concatenate([ident, expr])
        shape = track.id_shape + (pm.basis_flat_exp @ expr).reshape(-1, 3)
        conf = sir_confidence(rot, expr, cfg.sir_lambda)
        collect = self.model is not None and (track.rest is not None or (cfg.rest_window and track.rest_offset is None))
        observed = observed_shape(shape, p, rot, trans, present) if collect or self.head is not None else None
        read = self.mediapipe.read(lm) if self.mediapipe is not None else None  # its rest is in weight space
        if collect:
            self._collect_rest(track, observed, expr, ident, read)
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
        blendshapes = np.clip(model.arkit_map @ expr.astype(np.float32), 0, 1)
        if track.rest_offset is None and cfg.rest_window:  # the shapes a rest face will absorb: the person's own
            blendshapes[np.isin(ARKIT_BLENDSHAPES, cfg.rest_own_shape)] = 0.0
        learned = None
        if self.head is not None or read is not None:
            # the project's head reads the face's displacement from its neutral (identity + rest face),
            # MediaPipe's network the image points less what it read on the rest face; before the rest face
            # exists either holds some of the person's own face: the fit's weights bound them
            out = self.head(self.head.features(observed, track.id_shape, pm.radius)) if self.head is not None \
                else np.full(len(ARKIT_BLENDSHAPES), np.nan, np.float32)
            if read is not None:
                out = self.mediapipe.given(out, read, track.rest_weights)
            out = out if track.rest_offset is not None else np.minimum(out, blendshapes)
            learned = np.where(self._head_mask, out, np.nan).astype(np.float32)
        return FitResult(
            model_id=model.id, blendshapes=blendshapes, learned=learned,
            expression=expr.astype(np.float32), identity=ident.astype(np.float32), rotation=rot.copy(),
            translation=trans.copy(), landmarks68=l68.astype(np.float32), focal_px=f, image_size=(w, h),
            confidence=conf, rms_px=rms, model=model,
        )

    def _load_head(self, model: MorphableModel | None) -> ExpressionHead | None:
        """The packaged landmark-to-weights head, when the config asks for it and it was trained on this model."""
        self._head_mask = np.array([self.config.head == "all" or not n.startswith("eye") for n in ARKIT_BLENDSHAPES])
        if self.config.head == "off" or model is None or self._shared is None:
            return None
        return head_for_model(model.id, self._shared.idx)

    def _track(self, track_id: int, lm: np.ndarray, w: int, h: int, f: float) -> TrackState | None:
        t = self._tracks.get(track_id)
        if self.model is None:
            from facetrack.tracker.facemodel.calibration import BuiltinCalibration

            if t is None:
                calib = BuiltinCalibration()
                model = calib.update(lm, (w, h), f)
                if model is None:
                    return None
                t = TrackState(self._prepare(model), calib=calib)
            else:
                calib = t.calib
                assert isinstance(calib, BuiltinCalibration)
                if not calib.done:
                    model = calib.update(lm, (w, h), f)
                    if model is not None:
                        t.prepared = self._prepare(model)
                        t.expression = t.id_shape = None  # the neutral changed: the old weights mean nothing
        elif t is None:
            assert self._shared is not None
            t = TrackState(self._shared)
            if self._preset is not None:
                t.identity, t.rest_offset = self._preset[0].copy(), self._preset[1].copy()
                t.rest_weights = None if self._preset[2] is None else self._preset[2].copy()
                t.id_weight, t.rest_info = self.config.id_max_weight, {"source": "file", "frames": 0}
                t.id_shape = t.neutral_shape()
        if track_id not in self._tracks and len(self._tracks) >= self.config.max_tracks:
            self._tracks.pop(next(iter(self._tracks)))
        self._tracks.pop(track_id, None)
        self._tracks[track_id] = t  # most recently seen last
        return t

    def _prepare(self, model: MorphableModel) -> PreparedModel:
        return PreparedModel(model, self.config.contour_weight, self.config.chin_weight)

    def _exclude_antagonists(self, track: TrackState, p: np.ndarray, wts: np.ndarray, rot: np.ndarray,
                             trans: np.ndarray, expr: np.ndarray, expr_prev: np.ndarray | None,
                             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Antagonistic pairs (priors.py) both on: the weaker of each is held at 0 and the frame re-solved
        (a second step only when the first was not below the tolerance)."""
        pm = track.prepared
        arkit_map = pm.model.arkit_map
        arkit = arkit_map @ expr
        both = (arkit[pm.pair_a] > self.config.exclude_above) & (arkit[pm.pair_b] > self.config.exclude_above)
        if not both.any():
            return rot, trans, expr
        losers = np.where(arkit[pm.pair_a] < arkit[pm.pair_b], pm.pair_a, pm.pair_b)[both]
        hi = pm.hi_pose_exp.copy()
        hi[6:][(arkit_map[losers] > 0).any(0)] = 0.0
        for _ in range(2):
            rot, trans, expr, step = self._expression_step(track, p, wts, rot, trans, expr, expr_prev, hi)
            if step < self.config.tolerance:
                break
        return rot, trans, expr

    def _collect_rest(self, track: TrackState, observed: np.ndarray, expr: np.ndarray, ident: np.ndarray,
                      read: np.ndarray | None = None) -> None:
        """Feed the track's rest-face collection one frame (and the weights a network read on it); take its rest
        face when one is ready."""
        cfg, pm = self.config, track.prepared
        if track.rest is None:
            track.rest = RestFaceCalibration(cfg.rest_window, cfg.rest_keep, early=cfg.rest_early,
                                             source=cfg.rest_source)
        rest = track.rest.add(observed, float(np.abs(expr[pm.energy_cols]).sum()), track.rotation, read)
        if rest is None:
            return
        off = rest - pm.identity_shape(ident)
        track.rest_offset = kept_rest_offset(pm, off, track.rest, cfg) if pm.exp_nonneg else off
        if track.rest.rest_weights is not None:
            track.rest_weights = kept_rest_weights(track.rest.rest_weights, track.rest, cfg)
        track.rest_info = {"source": track.rest.source, "frames": track.rest.frames_used}
        if track.rest.done:
            track.rest = None
        track.id_shape = track.neutral_shape()

    def _expression_step(self, track: TrackState, p: np.ndarray, wts: np.ndarray, rot: np.ndarray,
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
        hmat, g, dm = normal_equations(shape, pm.basis32_exp, p, wts, rot, trans, cfg.landmark_sigma * pm.radius)
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
        hi = pm.hi_pose_exp if hi is None else hi
        x = box_qp(hmat, c, pm.lo_pose_exp, hi, np.concatenate([np.zeros(6), np.minimum(expr, hi[6:])]))
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
        h, rhs, _ = normal_equations(shape, basis, p, wts, rot, trans, cfg.landmark_sigma * pm.radius)
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
