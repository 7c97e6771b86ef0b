"""Online lip/eyelid dynamics (LDL, "Eye Motion Matters"): refine lid and lip weights after the fit.

In the paper, LDL is a training loss: the L1 difference between predicted and target
*relative* distances of upper/lower lid and lip landmark pairs. Online it becomes a small
refinement after each frame's fit: with pose, identity and the other expression weights
held, the lid weights (eyeBlink, eyeWide, eyeSquint per eye) and the lip weights (jawOpen,
mouthClose) are moved so that the model's projected pair distances, relative to the eye's
width or the mouth's width, match those of the (ELAM-corrected) landmarks.

The fit's temporal prior and sparsity prior are what make whole-face fits stable, but they
also drag fast lid motion (a blink is over in 3-5 frames); the refinement has only a
weak pull toward the fit's own values, so a blink is a blink on the frame it happens.

Solved as one small linear least-squares problem (see LipLidDynamics) with iteratively
reweighted residuals for the L1 norm, weights kept in [0, 1].
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.linalg.lapack import dposv as _posv

from facetrack.tracker.core.schema import ARKIT_BLENDSHAPES
from facetrack.tracker.stages import eyes as E

LID_NAMES = (("eyeBlinkLeft", "eyeWideLeft", "eyeSquintLeft"), ("eyeBlinkRight", "eyeWideRight", "eyeSquintRight"))
LIP_NAMES = ("jawOpen", "mouthClose")


@dataclass
class _Groups:
    """One distance group: landmark pairs, a width pair, the model weights that move them."""

    upper: np.ndarray
    lower: np.ndarray
    width: tuple[int, int]
    params: np.ndarray  # model expression indices (eyeBlink first for the lids)
    prior: np.ndarray  # pull toward the fit's values, per parameter
    lid: bool = False
    side: int = 0  # 0 left, 1 right (lids)


class _PreparedModel:
    """The landmark-level expression basis of the points LDL measures, for one model."""

    def __init__(self, model) -> None:
        self.model = model
        pts = np.unique(np.concatenate([E.L_UPPER, E.L_LOWER, E.R_UPPER, E.R_LOWER, E.LIP_INNER_UPPER,
                                        E.LIP_INNER_LOWER, list(E.L_CORNERS), list(E.R_CORNERS),
                                        list(E.MOUTH_CORNERS)]))
        self.points = pts
        self.slot = {int(p): i for i, p in enumerate(pts)}
        vi = model.lmk_vertices[pts]  # (P, 3)
        bw = model.lmk_bary[pts].astype(np.float64)  # (P, 3)
        self.valid = bool(model.lmk_valid[pts].all())
        self.neutral = np.einsum("pkc,pk->pc", model.neutral[vi].astype(np.float64), bw)
        self.id_basis = np.einsum("npkc,pk->npc", model.id_basis[:, vi].astype(np.float64), bw) if len(
            model.id_basis) else np.zeros((0, len(pts), 3))
        self.exp_basis = np.einsum("npkc,pk->npc", model.exp_basis[:, vi].astype(np.float64), bw)
        # model expression index behind each ARKit name: the strongest column of arkit_map
        amap = np.asarray(model.arkit_map)
        self.index = {}
        for name in LID_NAMES[0] + LID_NAMES[1] + LIP_NAMES:
            row = amap[ARKIT_BLENDSHAPES.index(name)]
            if row.size and row.max() > 0.5:
                self.index[name] = int(row.argmax())
        s = self.slot
        self.groups: list[_Groups] = []
        for side, ((up, lo, corners), names) in enumerate(zip(
                ((E.L_UPPER, E.L_LOWER, E.L_CORNERS), (E.R_UPPER, E.R_LOWER, E.R_CORNERS)), LID_NAMES)):
            if all(n in self.index for n in names[:1]):
                have = [n for n in names if n in self.index]
                self.groups.append(_Groups(
                    np.array([s[int(i)] for i in up[E.OPENING_PAIRS]]),
                    np.array([s[int(i)] for i in lo[E.OPENING_PAIRS]]),
                    (s[corners[0]], s[corners[1]]), np.array([self.index[n] for n in have]),
                    np.array([0.02 if n.startswith("eyeBlink") else 0.3 for n in have]), True, side))
        lip = [n for n in LIP_NAMES if n in self.index]
        if lip:
            self.groups.append(_Groups(
                np.array([s[int(i)] for i in E.LIP_INNER_UPPER[1:4]]),
                np.array([s[int(i)] for i in E.LIP_INNER_LOWER[1:4]]),
                (s[E.MOUTH_CORNERS[0]], s[E.MOUTH_CORNERS[1]]), np.array([self.index[n] for n in lip]),
                np.array([0.05 if n == "jawOpen" else 0.3 for n in lip])))
        # all groups as one system: rows = pairs, columns = the refined weights
        self.sel = np.concatenate([g.params for g in self.groups]) if self.groups else np.zeros(0, int)
        self.exp_flat = self.exp_basis.reshape(len(self.exp_basis), -1)
        self.sel_basis = self.exp_basis[self.sel]
        self.prior = np.concatenate([g.prior for g in self.groups]) if self.groups else np.zeros(0)
        n_rows = sum(len(g.upper) for g in self.groups)
        self.rows_up = np.concatenate([g.upper for g in self.groups]) if self.groups else np.zeros(0, int)
        self.rows_lo = np.concatenate([g.lower for g in self.groups]) if self.groups else np.zeros(0, int)
        self.rows_wa = np.concatenate([np.full(len(g.upper), g.width[0]) for g in self.groups]) if self.groups else []
        self.rows_wb = np.concatenate([np.full(len(g.upper), g.width[1]) for g in self.groups]) if self.groups else []
        self.mask = np.zeros((n_rows, len(self.sel)))
        self.is_blink = np.zeros(len(self.sel))
        self.lid_rows = []
        r0 = c0 = 0
        for g in self.groups:
            nr, nc = len(g.upper), len(g.params)
            self.mask[r0:r0 + nr, c0:c0 + nc] = 1.0
            if g.lid:
                self.is_blink[c0] = 1.0
                self.lid_rows.append((g, np.arange(r0, r0 + nr), c0))
            r0 += nr
            c0 += nc


class LipLidDynamics:
    """Refines a FitResult's lid and lip weights against landmarks (one per stream, any model).

    Lid targets are generalised relative to the track's calibrated open eye: a model need
    not close its lids to exactly zero distance (the built-in rig leaves a millimetre, ICT
    its own amount), so the landmarks' lid opening as a fraction o of the calibrated open
    opening maps to the model's own range, per pair: target = d(closed) + o (d(open) - d(closed)),
    with d(open), d(closed) the model's relative distances at eyeBlink 0 and 1 (other weights
    as fitted). Without a calibration the landmark distances are matched directly.

    The model's pair distances are linear in the weights to well under a pixel here (a lid
    moves a centimetre at half a metre: perspective is affine over it), and each pair's
    distance is measured along the pair's direction in the open model, signed (a lid cannot
    pass through the other), so the refinement is one small linear least-squares problem
    with IRLS weights for the L1 norm, solved for all lids and lips at once.
    """

    def __init__(self, irls_iterations: int = 3, eps: float = 0.01) -> None:
        self.irls_iterations = irls_iterations
        self.eps = eps  # L1 smoothing (relative-distance units) in IRLS
        self._prepared: dict[int, _PreparedModel] = {}

    def _prepare(self, model) -> _PreparedModel:
        key = id(model)
        pm = self._prepared.get(key)
        if pm is None or pm.model is not model:
            if len(self._prepared) > 32:
                self._prepared.clear()
            pm = self._prepared[key] = _PreparedModel(model)
        return pm

    def refine(self, fit, landmarks: np.ndarray, open_opening: np.ndarray | None = None) -> np.ndarray:
        """The fit's expression with lid/lip weights refined; updates fit.expression and fit.blendshapes.

        open_opening: (2,) the track's calibrated open-eye opening (left, right; central lid gap
        over eye width, as `eyes.relative_openings`), or None.
        """
        pm = self._prepare(fit.model)
        expr = np.asarray(fit.expression, np.float64).copy()
        if not pm.valid or not pm.groups:
            return expr
        lm = np.asarray(landmarks, np.float64)[pm.points, :2]
        shape = pm.neutral + (expr @ pm.exp_flat).reshape(-1, 3)
        if len(pm.id_basis):
            shape += np.tensordot(np.asarray(fit.identity, np.float64), pm.id_basis, 1)
        rot = np.asarray(fit.rotation, np.float64)
        cam = shape @ rot.T + np.asarray(fit.translation, np.float64)
        iz = float(fit.focal_px) / -cam[:, 2]
        proj = cam[:, :2] * iz[:, None]
        proj[:, 1] *= -1.0  # pixels, centred, y down
        # d proj / d w for the refined weights (S, P, 2)
        dcam = pm.sel_basis @ rot.T
        xz, yz = cam[:, 0] * iz, cam[:, 1] * iz  # f x / z etc. (z = -cam_z)
        jac = np.empty(dcam.shape[:2] + (2,))
        jz = dcam[:, :, 2] * (iz / float(fit.focal_px))
        jac[:, :, 0] = dcam[:, :, 0] * iz + xz * jz
        jac[:, :, 1] = -(dcam[:, :, 1] * iz + yz * jz)
        up, lo, wa, wb = pm.rows_up, pm.rows_lo, pm.rows_wa, pm.rows_wb
        vec = proj[up] - proj[lo]  # (N, 2)
        dvec = jac[:, up] - jac[:, lo]  # (S, N, 2)
        wv = proj[wa] - proj[wb]
        width = np.maximum(np.sqrt((wv * wv).sum(1)), 1e-9)  # (N,)
        # each pair's direction in the open model (eyeBlink 0): its distance is signed along it
        cur = expr[pm.sel]
        open_vec = vec - np.tensordot(cur * pm.is_blink, dvec, 1)
        unit = open_vec / np.maximum(np.sqrt((open_vec * open_vec).sum(1)), 1e-9)[:, None]
        a = (unit * vec).sum(1) / width  # rel at the current weights
        b = ((dvec * unit).sum(2).T / width[:, None]) * pm.mask  # d rel / d w  (N, S)
        dl, wl = lm[up] - lm[lo], lm[wa] - lm[wb]
        target = np.sqrt((dl * dl).sum(1)) / np.maximum(np.sqrt((wl * wl).sum(1)), 1e-9)
        if open_opening is not None:
            for g, rows, col in pm.lid_rows:
                o = float(np.clip(target[rows].mean() / max(float(open_opening[g.side]), 1e-6), 0.0, 1.5))
                r0 = a[rows] - b[rows, col] * cur[col]  # rel at eyeBlink 0
                r1 = r0 + b[rows, col]  # rel at eyeBlink 1
                target[rows] = r1 + o * (r0 - r1)
        r = target - a
        prior = pm.prior
        step = np.zeros(len(cur))
        for _ in range(self.irls_iterations):
            res = r - b @ step
            wts = 1.0 / np.sqrt(res * res + self.eps * self.eps)  # L1 via reweighting
            bw = b.T * wts
            lhs = bw @ b
            lhs.flat[::len(prior) + 1] += prior
            # the prior pulls the step to 0, toward the fit; LAPACK's Cholesky solve directly: numpy's
            # solve wakes BLAS threads, 10-100x the cost of an 8x8 system on a busy machine
            _, step, info = _posv(lhs, bw @ r)
            if info != 0:
                return expr
        expr[pm.sel] = np.clip(cur + step, 0.0, 1.0)
        fit.expression = expr.astype(np.float32)
        fit.blendshapes = np.clip(np.asarray(fit.model.arkit_map) @ fit.expression, 0, 1).astype(np.float32)
        return expr
