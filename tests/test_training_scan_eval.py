"""Scan evaluation (similarity ICP + scan-to-mesh distances) on synthetic meshes with a known answer."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("open3d")

from facetrack.training.scan_eval import evaluate_scan, umeyama  # noqa: E402


def _sphere(radius: float, n: int = 24) -> tuple[np.ndarray, np.ndarray]:
    import open3d as o3d

    m = o3d.geometry.TriangleMesh.create_sphere(radius, n)
    return np.asarray(m.vertices), np.asarray(m.triangles)


def _rot(angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    return np.array([[c, 0, s], [0, 1, 0], [-s, 0, c]]) @ np.array([[1, 0, 0], [0, c, -s], [0, s, c]])


def test_umeyama_recovers_a_similarity():
    rng = np.random.default_rng(0)
    src = rng.normal(size=(10, 3))
    r = _rot(0.4)
    s, rot, t = umeyama(src, 1.3 * src @ r.T + [1.0, 2.0, 3.0])
    assert s == pytest.approx(1.3) and np.allclose(rot, r) and np.allclose(t, [1, 2, 3])


def test_icp_recovers_a_moved_scaled_copy_from_a_rough_start():
    """The scan is the mesh under a known similarity; the landmarks are off by ~2 mm: ICP must get to ~0."""
    rng = np.random.default_rng(1)
    v, f = _sphere(50.0)
    v = v * [1.0, 1.3, 0.8]  # an ellipsoid: rotation is observable
    r, scale, t = _rot(0.2), 1.15, np.array([5.0, -3.0, 10.0])
    scan = scale * v @ r.T + t
    lm = rng.choice(len(v), 7, replace=False)
    res = evaluate_scan(v, f, scan, v[lm], scan[lm] + rng.normal(0, 2.0, (7, 3)))
    assert res.scale == pytest.approx(scale, rel=2e-3)
    assert np.allclose(res.rotation, r, atol=3e-3)
    assert res.summary()["median_mm"] < 0.05


def test_distances_are_the_true_gap_without_scale_and_vanish_with_it():
    v, f = _sphere(10.0, 40)
    scan = _sphere(10.5, 40)[0]  # a concentric sphere 0.5 units out
    lm = np.arange(0, len(v), len(v) // 8)
    rigid = evaluate_scan(v, f, scan, v[lm], scan[lm] * 10 / 10.5, scale=False, to_mm=10.0)
    s = rigid.summary()
    assert s["median_mm"] == pytest.approx(5.0, abs=0.15) and s["p2plane_median_mm"] == pytest.approx(5.0, abs=0.2)
    scaled = evaluate_scan(v, f, scan, v[lm], scan[lm], scale=True, to_mm=10.0)
    assert scaled.scale == pytest.approx(1.05, rel=3e-3) and scaled.summary()["median_mm"] < 0.15
