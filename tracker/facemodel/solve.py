"""The small numerics of the fit: rotations, the SIR confidence, the bounded least-squares step (box QP on
the normal equations with LAPACK's Cholesky) and the pose steps (weak-perspective start, Gauss-Newton)."""

from __future__ import annotations

import math

import numpy as np
from scipy.linalg.lapack import dposv


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
        fi = free.nonzero()[0]
        if len(fi):
            hf = h.take(fi, 0)
            hff = hf.take(fi, 1)  # the free block, gathered once (dposv copies it)
            rhs = c[fi] - hf @ x if len(fi) < n else c.copy()
            if len(fi) < n:
                rhs += hff @ x[fi]
            _, sol, info = dposv(hff, rhs)
            x[fi] = sol if info == 0 else np.linalg.lstsq(hff, rhs, rcond=None)[0]
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

def init_pose(shape: np.ndarray, p: np.ndarray, wts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
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


def pose_step(shape: np.ndarray, p: np.ndarray, wts: np.ndarray, rot: np.ndarray,
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


def normal_equations(shape: np.ndarray, basis: np.ndarray, p: np.ndarray, wts: np.ndarray, rot: np.ndarray,
                     trans: np.ndarray, sigma: float) -> tuple[np.ndarray, np.ndarray, float]:
    """Gauss-Newton normal equations (H, g) of pose (6) and the coefficients of `basis` (3, N, K).

    Exact perspective Jacobian, built column-wise in float32 without temporaries
    (a fit is a few of these; numpy call overhead matters at this size), scaled
    by the landmark precision (`sigma`: landmark noise in head units); also returns the mean depth.
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
    dr = np.empty((n, 2, 3), np.float32)  # D R: head-frame derivative, both rows of each point
    dr[:, 0] = (rot[0] + px[:, None] * rot[2]) * swi[:, None]
    dr[:, 1] = (rot[1] + py[:, None] * rot[2]) * swi[:, None]
    coef = np.matmul(dr, basis.transpose(1, 0, 2))  # (N, 2, K): one batched product, not six passes
    jx[:, 6:], jy[:, 6:] = coef[:, 0], coef[:, 1]
    res = np.empty(2 * n, np.float32)
    res[:n] = (p[:, 0] - px) * sw
    res[n:] = (p[:, 1] - py) * sw
    dm = float((wts * depth).sum() / wts.sum())
    prec = 1.0 / (sigma / dm) ** 2
    return (jac.T @ jac).astype(np.float64) * prec, (jac.T @ res).astype(np.float64) * prec, dm
