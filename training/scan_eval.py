"""Evaluation of reconstructed meshes against 3D scans (NoW, REALY, MICC, FaceScape protocols).

The protocol the papers report (NoW: the ELAM paper's 1.336 / 1.848 / 2.291 mm median /
mean / std): align the predicted mesh to the scan with a similarity transform (rotation,
translation and one isotropic scale) from corresponding landmarks, refine it by ICP that
minimises the scan-to-mesh distance, then measure, for every scan point, the distance to
the closest point on the mesh surface (and the point-to-plane distance to that
triangle's plane). Closest points come from open3d's RaycastingScene (exact point-to-
triangle distances, not to vertices).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


def umeyama(src: np.ndarray, dst: np.ndarray, scale: bool = True) -> tuple[float, np.ndarray, np.ndarray]:
    """Least-squares similarity dst ~ s R src + t (Umeyama 1991): returns (s, R, t)."""
    mu_s, mu_d = src.mean(0), dst.mean(0)
    a, b = src - mu_s, dst - mu_d
    u, sig, vt = np.linalg.svd(b.T @ a / len(src))
    d = np.eye(3)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        d[2, 2] = -1
    rot = u @ d @ vt
    s = float(np.trace(np.diag(sig) @ d) / (a ** 2).sum(1).mean()) if scale else 1.0
    return s, rot, mu_d - s * rot @ mu_s


@dataclass
class ScanError:
    """Per-scan-point distances (in the scan's units times `to_mm`) and the alignment found."""

    scan_to_mesh: np.ndarray
    point_to_plane: np.ndarray
    scale: float
    rotation: np.ndarray
    translation: np.ndarray

    def summary(self) -> dict[str, float]:
        d = self.scan_to_mesh
        return {"median_mm": float(np.median(d)), "mean_mm": float(d.mean()), "std_mm": float(d.std()),
                "p2plane_median_mm": float(np.median(self.point_to_plane)), "scale": self.scale}


def _closest(vertices: np.ndarray, triangles: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Closest surface points (N, 3) on the mesh to the query points and those triangles' unit normals."""
    import open3d as o3d

    mesh = o3d.t.geometry.TriangleMesh()
    mesh.vertex.positions = o3d.core.Tensor(vertices.astype(np.float32))
    mesh.triangle.indices = o3d.core.Tensor(triangles.astype(np.int32))
    scene = o3d.t.geometry.RaycastingScene()
    scene.add_triangles(mesh)
    ans = scene.compute_closest_points(o3d.core.Tensor(points.astype(np.float32)))
    q = ans["points"].numpy().astype(np.float64)
    tri = triangles[ans["primitive_ids"].numpy().astype(np.int64)]
    a, b, c = vertices[tri[:, 0]], vertices[tri[:, 1]], vertices[tri[:, 2]]
    n = np.cross(b - a, c - a)
    return q, n / np.maximum(np.linalg.norm(n, axis=1, keepdims=True), 1e-12)


def evaluate_scan(vertices: np.ndarray, triangles: np.ndarray, scan: np.ndarray, mesh_landmarks: np.ndarray,
                  scan_landmarks: np.ndarray, scale: bool = True, iterations: int = 30, to_mm: float = 1.0,
                  tolerance: float = 1e-7) -> ScanError:
    """Align the predicted mesh to the scan (landmark similarity, then ICP) and measure scan-to-mesh errors.

    vertices (V, 3) / triangles (F, 3): the prediction; scan (N, 3) points (cropped as the
    benchmark prescribes); mesh_landmarks / scan_landmarks (K, 3) corresponding points for the
    start. `to_mm` converts the scan's units (10 for cm).
    """
    v = np.asarray(vertices, np.float64)
    scan = np.asarray(scan, np.float64)
    s, rot, t = umeyama(np.asarray(mesh_landmarks, np.float64), np.asarray(scan_landmarks, np.float64), scale)
    prev = np.inf
    for _ in range(iterations):
        cur = s * v @ rot.T + t
        q, _ = _closest(cur, triangles, scan)
        err = float(((q - scan) ** 2).sum(1).mean())
        if prev - err < tolerance * max(prev, 1e-12):
            break
        prev = err
        ds, dr, dt = umeyama(q, scan, scale)  # move the mesh's closest points onto the scan
        s, rot, t = ds * s, dr @ rot, ds * dr @ t + dt
    cur = s * v @ rot.T + t
    q, n = _closest(cur, triangles, scan)
    d = np.linalg.norm(scan - q, axis=1) * to_mm
    p2p = np.abs(((scan - q) * n).sum(1)) * to_mm
    return ScanError(d, p2p, s, rot, t)
