"""--engine auto (the default of `run` and `bench`): the regress engine where our networks run on a GPU, the
fit elsewhere or where the run asks for what only the fit gives (issue 21)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from facetrack.adapters.file_sinks import read_results
from facetrack.engines.backends import select_backend
from facetrack.tracker.cli.app import app
from facetrack.tracker.cli.common import GPU_BACKENDS, default_engine, resolve_engine


def test_auto_is_the_regress_engine_only_on_a_gpu_and_only_when_nothing_needs_the_fit() -> None:
    assert default_engine("tensorrt", needs_fit=False) == "regress"
    assert default_engine("cuda", needs_fit=False) == "regress"
    assert default_engine("cpu", needs_fit=False) == "mediapipe"
    assert default_engine("cuda", needs_fit=True) == "mediapipe"  # a mesh, another model, a saved neutral


def test_auto_resolves_what_it_is_given_or_what_this_machine_has() -> None:
    assert resolve_engine("auto", "cpu", None) == "mediapipe"  # --backend cpu: the fit, GPU or not
    assert resolve_engine("auto", "auto", Path("mine.onnx")) == "regress"  # a --regressor asks for it
    assert resolve_engine("litert", "auto", None) == "litert"  # an engine named is kept
    on_gpu = select_backend("auto").name in GPU_BACKENDS
    assert resolve_engine("auto", "auto", None) == ("regress" if on_gpu else "mediapipe")
    assert resolve_engine("auto", "auto", None, needs_fit=True) == "mediapipe"


@pytest.mark.media
def test_a_plain_run_uses_the_engine_auto_finds_here(short_face_clip: Path, tmp_path: Path) -> None:
    """On this machine's backend (a CPU in CI: the fit; a GPU: the regress engine), through the real CLI."""
    out = tmp_path / "take.jsonl"
    done = CliRunner().invoke(app, ["run", str(short_face_clip), "--max-frames", "3", "--out", str(out), "--quiet"])
    assert done.exit_code == 0, done.output
    models = {face.coefficients.model_id for r in read_results(out) for face in r.faces}
    if select_backend("auto").name in GPU_BACKENDS:
        assert models == {"regress"}
    else:
        assert len(models) == 1 and "regress" not in models  # the packaged face model, fitted
