"""Batch throughput (engines/throughput.py): real networks on a real face, every stage timed, bad input refused."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from facetrack.engines.onnx_runtime import EngineError
from facetrack.engines.throughput import ThroughputConfig, measure_throughput, render_throughput


def _regressor(tmp_path: Path) -> Path:
    """An untrained regressor of the shipped architecture: its speed does not depend on its weights."""
    pytest.importorskip("torch", reason="exporting a regress engine needs the train extra (PyTorch)")
    from facetrack.training.regressor import build_regressor, export_onnx
    from facetrack.training.synthetic import synthetic_model

    return export_onnx(build_regressor(synthetic_model(), 64, "small", 8), tmp_path / "regress.onnx")


def test_every_stage_is_timed_per_batch_and_faces_per_second_follow(face_clip: Path, tmp_path: Path) -> None:
    config = ThroughputConfig(image=str(face_clip), landmark_runtime="litert", backend="cpu", batches=(1, 4),
                              repeats=2, budget_s=0.05, regressor=_regressor(tmp_path))
    report = measure_throughput(config)
    assert report.backend == "cpu" and report.stages == ["landmarks", "eye_state", "regress"]
    assert [row.batch for row in report.rows] == [1, 4]
    for row in report.rows:
        assert set(row.stage_s) == set(report.stages) and all(s > 0 for s in row.stage_s.values())
        assert len(row.faces_per_s) == 2 and all(np.isfinite(row.faces_per_s)) and min(row.faces_per_s) > 0
        assert row.slowest in report.stages
    assert report.gpu_utilisation is None
    assert render_throughput(report).row_count == 2


def test_a_clip_without_a_face_and_a_wrong_engine_are_refused_with_the_reason(blank_clip: Path,
                                                                             face_clip: Path) -> None:
    with pytest.raises(EngineError, match="no face in the first frame"):
        measure_throughput(ThroughputConfig(image=str(blank_clip), landmark_runtime="litert", backend="cpu"))
    from facetrack.engines.eye_state import DEFAULT_ENGINE

    with pytest.raises(EngineError, match="not a regress engine"):
        measure_throughput(ThroughputConfig(image=str(face_clip), landmark_runtime="litert", backend="cpu",
                                            batches=(1,), repeats=1, budget_s=0.01, regressor=DEFAULT_ENGINE))


def test_a_file_that_is_not_a_video_is_refused(tmp_path: Path) -> None:
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"not a video at all")
    with pytest.raises(EngineError, match="no frame could be decoded"):
        measure_throughput(ThroughputConfig(image=str(junk), backend="cpu"))


def test_bench_throughput_command_reports_the_regressor_and_writes_json(face_clip: Path, tmp_path: Path) -> None:
    import json

    from click.testing import CliRunner

    from facetrack.tracker.cli.app import app

    out = tmp_path / "tp.json"
    result = CliRunner().invoke(app, ["bench", str(face_clip), "--throughput", "--batches", "1,2", "--repeats", "1",
                                      "--engine", "regress", "--regressor", str(_regressor(tmp_path)),
                                      "--backend", "cpu", "--json", str(out)])
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["landmark_runtime"] == "litert" and report["stages"] == ["landmarks", "eye_state", "regress"]
    assert [row["batch"] for row in report["rows"]] == [1, 2]
    bad = CliRunner().invoke(app, ["bench", str(face_clip), "--throughput", "--batches", "0"])
    assert bad.exit_code == 2 and "positive batch sizes" in bad.output
