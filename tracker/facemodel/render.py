"""A small shaded-mesh rasteriser, used at install time to find landmark correspondences.

Models do not come with a mapping from mediapipe's 478 landmarks to their surface, so
`ict.py` renders the model's neutral face from a few viewpoints, runs the landmark
engine on the renders and casts each landmark back onto the mesh. This module draws
the renders (painter's algorithm with OpenCV polygon fills, Lambert shading, simple
painted eyes and mouth in the mesh's holes so the detector sees a plausible face) and
keeps a triangle-id buffer for the back-projection.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

SKIN_RGB = np.array([225.0, 180.0, 150.0])
BACKGROUND = 90


def boundary_loops(triangles: np.ndarray) -> list[np.ndarray]:
    """Closed boundary loops of a triangle mesh, longest first (vertex index arrays)."""
    t = np.asarray(triangles)
    e = np.concatenate([t[:, [0, 1]], t[:, [1, 2]], t[:, [2, 0]]])
    _, inv, cnt = np.unique(np.sort(e, axis=1), axis=0, return_inverse=True, return_counts=True)
    b = e[cnt[inv.ravel()] == 1]
    nxt = dict(zip(b[:, 0].tolist(), b[:, 1].tolist()))
    seen: set[int] = set()
    loops = []
    for s in nxt:
        if s in seen:
            continue
        loop = [s]
        seen.add(s)
        c = nxt[s]
        while c != s and c not in seen and c in nxt:
            loop.append(c)
            seen.add(c)
            c = nxt[c]
        loops.append(np.array(loop, np.int64))
    return sorted(loops, key=len, reverse=True)


@dataclass
class FilledMesh:
    """A mesh with its holes (eyes, mouth) closed by fan triangles, labelled per hole."""

    vertices: np.ndarray  # (V + H, 3): original vertices then one centre per hole
    triangles: np.ndarray  # (F + sum(loop), 3)
    hole_of: np.ndarray  # (F + ...,) 0 for original triangles, k >= 1 for hole k
    n_orig_vertices: int
    n_orig_triangles: int
    hole_kind: list[str]  # per hole: "eye" or "mouth" or "other"


def fill_holes(vertices: np.ndarray, triangles: np.ndarray) -> FilledMesh:
    """Close every boundary loop but the outer one; name them eye/mouth by position."""
    v = np.asarray(vertices, np.float64)
    loops = boundary_loops(triangles)[1:]
    verts, tris, hole = [v], [np.asarray(triangles, np.int64)], [np.zeros(len(triangles), np.int64)]
    n = len(v)
    centres = [v[lp].mean(0) for lp in loops]
    kinds = []
    eye_y = max((c[1] for c in centres), default=0.0)
    for k, (lp, c) in enumerate(zip(loops, centres), start=1):
        verts.append(c[None])
        tris.append(np.stack([np.roll(lp, -1), lp, np.full(len(lp), n)], axis=1))
        hole.append(np.full(len(lp), k))
        n += 1
        kinds.append("eye" if abs(c[0]) > 1e-3 and abs(c[1] - eye_y) < 1.0 else "mouth" if abs(c[0]) < 0.5 else "other")
    return FilledMesh(np.concatenate(verts), np.concatenate(tris), np.concatenate(hole), len(v),
                      len(triangles), kinds)


@dataclass
class Render:
    image: np.ndarray  # (H, W, 3) uint8 RGB
    tri_ids: np.ndarray  # (H, W) int32, -1 = background
    cam_vertices: np.ndarray  # (V, 3) camera frame (x right, y up, z toward viewer)
    focal: float
    size: int


def project(cam: np.ndarray, focal: float, size: int) -> np.ndarray:
    """Pinhole projection to pixels (origin top-left, y down) of camera-frame points."""
    w = -cam[:, 2]
    return np.stack([size / 2 + focal * cam[:, 0] / w, size / 2 - focal * cam[:, 1] / w], axis=1)


def render(mesh: FilledMesh, rotation: np.ndarray, distance: float, size: int = 512,
           focal: float | None = None) -> Render:
    """Shade the mesh seen by a camera `distance` cm in front of the head origin."""
    focal = float(focal or 1.5 * size)
    cam = mesh.vertices @ np.asarray(rotation).T
    cam[:, 2] -= distance
    px = project(cam, focal, size)
    tris = mesh.triangles
    depth = -cam[tris, 2].mean(axis=1)
    ids = np.full((size, size), -1, np.int32)
    pts = np.round(px[tris] * 16).astype(np.int32)
    for t in np.argsort(-depth):  # far to near; ~13k cv2 calls, install time only
        cv2.fillConvexPoly(ids, pts[t], int(t), lineType=cv2.LINE_8, shift=4)
    a, b, c = cam[tris[:, 0]], cam[tris[:, 1]], cam[tris[:, 2]]
    n = np.cross(b - a, c - a)
    n /= np.linalg.norm(n, axis=1, keepdims=True) + 1e-12
    light = np.array([0.2, 0.4, 1.0]) / np.linalg.norm([0.2, 0.4, 1.0])
    lam = np.abs(n @ light)
    img = np.full((size, size, 3), BACKGROUND, np.uint8)
    mask = ids >= 0
    tid = ids[mask]
    col = (0.25 + 0.75 * lam[tid])[:, None] * SKIN_RGB
    hole = mesh.hole_of[tid]
    ys, xs = np.nonzero(mask)
    for k, kind in enumerate(mesh.hole_kind, start=1):
        sel = hole == k
        if kind == "eye":
            centre = cam[mesh.n_orig_vertices + k - 1]
            cu, cv_ = project(centre[None], focal, size)[0]
            r = np.hypot(xs[sel] - cu, ys[sel] - cv_)
            col[sel] = np.where((r < focal * 0.55 / -centre[2])[:, None], [70.0, 45.0, 30.0], [235.0, 230.0, 225.0])
        else:
            col[sel] = [90.0, 30.0, 30.0]
    img[mask] = np.clip(col, 0, 255).astype(np.uint8)
    return Render(img, ids, cam, focal, size)


def cast(rend: Render, mesh: FilledMesh, pixels: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Back-project pixels onto the rendered mesh.

    Returns (triangle index into the filled mesh or -1, barycentric (N, 3), hit point in
    the head frame (N, 3)); the barycentric is the exact ray/plane intersection, so it
    has no screen-space perspective error.
    """
    px = np.asarray(pixels, np.float64)
    h = rend.size
    ij = np.clip(np.round(px).astype(int), 0, h - 1)
    tri = rend.tri_ids[ij[:, 1], ij[:, 0]]
    ok = tri >= 0
    safe = np.where(ok, tri, 0)
    a, b, c = (rend.cam_vertices[mesh.triangles[safe, k]] for k in range(3))
    d = np.stack([(px[:, 0] - h / 2) / rend.focal, -(px[:, 1] - h / 2) / rend.focal, -np.ones(len(px))], axis=1)
    e1, e2 = b - a, c - a
    p = np.cross(d, e2)
    det = np.einsum("ij,ij->i", e1, p)
    det = np.where(np.abs(det) < 1e-12, 1e-12, det)
    s = -a
    u = np.einsum("ij,ij->i", s, p) / det
    q = np.cross(s, e1)
    v = np.einsum("ij,ij->i", d, q) / det
    bary = np.stack([1 - u - v, u, v], axis=1)
    head = np.einsum("nk,nkc->nc", bary, mesh.vertices[mesh.triangles[safe]])
    tri = np.where(ok, tri, -1)
    return tri, bary, head


def closest_on_mesh(points: np.ndarray, vertices: np.ndarray, triangles: np.ndarray,
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Nearest surface point for each point: (triangle, barycentric, position).

    Searches the triangles around the nearest few vertices (enough for points that are
    already close to the surface, as back-projected landmarks are).
    """
    pts = np.asarray(points, np.float64)
    v = np.asarray(vertices, np.float64)
    t = np.asarray(triangles)
    d2 = ((pts[:, None, :] - v[None]) ** 2).sum(-1)
    near = np.argsort(d2, axis=1)[:, :4]
    best_d = np.full(len(pts), np.inf)
    best_t = np.zeros(len(pts), np.int64)
    best_b = np.zeros((len(pts), 3))
    hit = np.isin(t, near)  # (F, 3)
    cand = np.nonzero(hit.any(1))[0]
    a, b, c = v[t[cand, 0]], v[t[cand, 1]], v[t[cand, 2]]
    for i in range(len(pts)):  # per landmark (478), install time only
        mine = np.isin(t[cand], near[i]).any(1)
        ta, tb, tc = a[mine], b[mine], c[mine]
        bary = _closest_bary(pts[i], ta, tb, tc)
        pos = bary[:, :1] * ta + bary[:, 1:2] * tb + bary[:, 2:] * tc
        dist = ((pos - pts[i]) ** 2).sum(1)
        j = int(np.argmin(dist))
        if dist[j] < best_d[i]:
            best_d[i], best_t[i], best_b[i] = dist[j], cand[mine][j], bary[j]
    pos = np.einsum("nk,nkc->nc", best_b, v[t[best_t]])
    return best_t, best_b, pos


def _closest_bary(p: np.ndarray, a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
    """Barycentric of the closest point to p on each triangle (projection, then clamp)."""
    e0, e1, d = b - a, c - a, p - a
    d00, d01, d11 = (e0 * e0).sum(1), (e0 * e1).sum(1), (e1 * e1).sum(1)
    d20, d21 = (d * e0).sum(1), (d * e1).sum(1)
    den = np.maximum(d00 * d11 - d01 * d01, 1e-18)
    v = (d11 * d20 - d01 * d21) / den
    w = (d00 * d21 - d01 * d20) / den
    bary = np.clip(np.stack([1 - v - w, v, w], axis=1), 0, None)
    return bary / np.maximum(bary.sum(1, keepdims=True), 1e-12)
