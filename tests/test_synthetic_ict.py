"""Not circular: faces drawn from the full ICT model (100 identity modes, dense mesh, noise), fitted by the default."""

from __future__ import annotations

from pathlib import Path

import pytest

from facetrack.tracker.facemodel.compact import load_default_model
from facetrack.tracker.facemodel.ict import compute_landmark_embedding, read_ict
from facetrack.tracker.facemodel.synthetic_check import run_check

pytestmark = pytest.mark.media


def test_ict_faces_recovered_and_identity_invariant(assets_dir: Path) -> None:
    path = assets_dir / "ict-facekit" / "ict_face_narrow.npz"
    if not path.is_file():
        pytest.skip(f"ICT assets not found at {path} (set FACETRACK_ASSETS)")
    data = read_ict(path)
    report = run_check(data, compute_landmark_embedding(data.neutral, data.triangles), load_default_model(),
                       people=3, tests=10, seed=11)
    assert report.frames == 30
    assert report.mae <= 0.08
    assert report.identity_shift_max <= 0.05
