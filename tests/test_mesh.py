"""`--mesh`: the fitted dense mesh per face and frame, as .npz or a PLY/OBJ sequence."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from facetrack.adapters.mesh_sink import MeshNpzSink
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.errors import SinkError
from facetrack.tracker.pipeline import Tracker


def _project(vertices: np.ndarray, width: int, height: int) -> np.ndarray:
    """The tracker's pinhole camera (focal = width, centre principal point; y up, z toward the viewer)."""
    f = float(width)
    x = width / 2 + f * vertices[:, 0] / -vertices[:, 2]
    y = height / 2 - f * vertices[:, 1] / -vertices[:, 2]
    return np.stack([x, y], axis=1)


@pytest.mark.media
def test_npz_mesh_matches_the_frames_and_projects_onto_the_landmarks(short_face_clip: Path, tmp_path: Path) -> None:
    out = tmp_path / "mesh.npz"
    with Tracker(TrackerConfig(mesh=True, max_frames=20)) as tracker:
        results = []
        tracker.run(short_face_clip, [MeshNpzSink(out)], on_result=results.append)
    data = np.load(out, allow_pickle=False)
    assert data["frame_index"].tolist() == list(range(20)) and set(data["track_id"].tolist()) == {0}
    vertices, triangles = data["vertices"], data["triangles"]
    assert vertices.shape == (20, 478, 3) and triangles.max() < 478 and triangles.min() >= 0
    assert (vertices[:, :, 2] < 0).all(), "every vertex is in front of the camera"
    projected = _project(vertices[-1], 512, 512)
    landmarks = results[-1].faces[0].landmarks[:, :2]
    eye_distance = np.linalg.norm(landmarks[263] - landmarks[33])
    assert np.median(np.linalg.norm(projected - landmarks, axis=1)) < 0.1 * eye_distance


def test_mesh_sink_refuses_results_without_meshes(tmp_path: Path) -> None:
    from synthetic import synthetic_metadata, synthetic_result

    sink = MeshNpzSink(tmp_path / "m.npz")
    sink.start(synthetic_metadata())
    with pytest.raises(SinkError, match="mesh=True"):
        sink.write(synthetic_result(np.random.default_rng(0), 0))


@pytest.mark.media
def test_cli_writes_a_ply_sequence(short_face_clip: Path, tmp_path: Path) -> None:
    o3d = pytest.importorskip("open3d", reason="PLY/OBJ sequences need the mesh extra (open3d)")
    folder = tmp_path / "meshes"
    done = subprocess.run([sys.executable, "-m", "facetrack.tracker.cli", "run", str(short_face_clip),
                           "--max-frames", "5", "--mesh", str(folder), "--quiet"],
                          capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr
    files = sorted(folder.glob("*.ply"))
    assert [f.name for f in files] == [f"frame_{i:06d}_face0.ply" for i in range(5)]
    mesh = o3d.io.read_triangle_mesh(str(files[0]))
    assert len(mesh.vertices) == 478 and len(mesh.triangles) > 800
