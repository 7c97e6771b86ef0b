"""Neutral calibration through the real tracker on a real face: on demand, saved, reused, in the outputs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from facetrack.tracker.cli.app import app
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.facemodel.rest_face import RestFaceOptions
from facetrack.tracker.pipeline import Tracker

pytestmark = pytest.mark.media


def test_calibrate_save_and_reuse(short_face_clip: Path, tmp_path: Path) -> None:
    saved = tmp_path / "actor.npz"
    cfg = TrackerConfig(calibration=RestFaceOptions(seconds=0.4, save_neutral=saved))
    with Tracker(cfg) as tracker:
        results = list(tracker.track(short_face_clip))
        meta = tracker.metadata
    assert meta.calibration == {"mode": "on demand", "window_frames": 10, "neutral_file": None,
                                "mediapipe_weights": "off"}
    marks = [r.faces[0].coefficients.calibration for r in results if r.faces]
    assert marks[0] is None and marks[-1] == "on demand"
    assert marks.index("on demand") == 9  # the 10th frame completes the window
    assert saved.is_file()
    with Tracker(TrackerConfig(calibration=RestFaceOptions(neutral=saved))) as tracker:
        again = list(tracker.track(short_face_clip))
        assert tracker.metadata.calibration["mode"] == "file"
    assert again[0].faces[0].coefficients.calibration == "file"
    # the same person read against the same rest: a calm face stays calm
    assert float(again[0].faces[0].blendshapes.max()) <= 1.0


def test_cli_calibration_flags(short_face_clip: Path, tmp_path: Path) -> None:
    out, npz, saved = tmp_path / "out.jsonl", tmp_path / "out.npz", tmp_path / "n.npz"
    r = CliRunner().invoke(app, ["run", str(short_face_clip), "--out", str(out), "--out", str(npz), "--calibrate",
                                 "0.5", "--save-neutral", str(saved), "--quiet"])
    assert r.exit_code == 0, r.output
    lines = [r for r in map(json.loads, out.read_text().splitlines()) if "frame_index" in r]  # no header record
    assert lines[0]["faces"][0]["coefficients"]["calibration"] is None
    assert lines[-1]["faces"][0]["coefficients"]["calibration"] == "on demand"
    with np.load(npz, allow_pickle=False) as z:
        assert json.loads(str(z["metadata_json"]))["calibration"]["mode"] == "on demand"
    assert saved.is_file()
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a neutral")
    r = CliRunner().invoke(app, ["run", str(short_face_clip), "--out", str(tmp_path / "o2.jsonl"), "--neutral",
                                 str(bad), "--quiet"])
    assert r.exit_code != 0 and "not a facetrack neutral file" in " ".join(r.output.split())
    assert not (tmp_path / "o2.jsonl").exists()  # refused before any output exists
    r = CliRunner().invoke(app, ["run", str(short_face_clip), "--out", str(tmp_path / "o3.jsonl"), "--model", "rig",
                                 "--neutral", str(saved), "--quiet"])
    assert r.exit_code != 0 and "identity modes" in r.output and not (tmp_path / "o3.jsonl").exists()
