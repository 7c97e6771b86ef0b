"""What a process loads before its first result: the command's modules only when run, mediapipe without
its Tasks API, no PyTorch for the automatic backend. Each check runs in a fresh interpreter (imports are
per process); timings are in BENCHMARKS.md, not here."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _modules_after(code: str) -> set[str]:
    """The names in sys.modules after running `code` in a fresh interpreter."""
    script = f"{code}\nimport json, sys\nprint(json.dumps(sorted(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    return set(json.loads(done.stdout.splitlines()[-1]))


def _loaded(modules: set[str], package: str) -> bool:
    return any(name == package or name.startswith(package + ".") for name in modules)


def test_the_command_imports_no_command_module_before_one_runs() -> None:
    modules = _modules_after("import facetrack.tracker.cli.app")
    for package in ("av", "cv2", "ray", "torch", "mediapipe", "onnxruntime", "zmq", "pyarrow",
                    "facetrack.tracker.batch", "facetrack.tracker.cli.batch", "facetrack.tracker.cli.engines",
                    "facetrack.tracker.cli.bench", "facetrack.tracker.cli.train", "facetrack.tracker.pipeline"):
        assert not _loaded(modules, package), package


def test_every_command_is_still_listed_and_found() -> None:
    from click.testing import CliRunner

    from facetrack.tracker.cli.app import _COMMANDS, app

    listing = CliRunner().invoke(app, ["--help"])
    assert listing.exit_code == 0, listing.output
    for name in _COMMANDS:
        assert f"  {name} " in listing.output
        assert CliRunner().invoke(app, [name, "--help"]).exit_code == 0, name
    assert CliRunner().invoke(app, ["no-such-command"]).exit_code == 2


def test_the_run_command_loads_neither_batch_nor_torch_nor_the_publisher_unasked() -> None:
    modules = _modules_after(
        "from facetrack.tracker.cli.app import app\n"
        "import click\n"
        "ctx = click.Context(app)\n"
        "app.get_command(ctx, 'run')\n"
        "from facetrack.engines.backends import select_backend\n"
        "select_backend('auto')")
    assert _loaded(modules, "facetrack.tracker.cli.run")
    for package in ("torch", "ray", "facetrack.tracker.batch", "facetrack.adapters.zmq_publisher"):
        assert not _loaded(modules, package), package


def test_the_mesh_engine_loads_mediapipe_without_its_tasks_api_and_matplotlib() -> None:
    pytest.importorskip("mediapipe")
    modules = _modules_after("import facetrack.engines.mediapipe_mesh")
    assert "mediapipe.python.solution_base" in modules
    for package in ("mediapipe.tasks", "matplotlib", "sounddevice"):
        assert not _loaded(modules, package), package


def test_mediapipe_is_whole_for_code_that_asks_for_it_after_the_engine() -> None:
    pytest.importorskip("mediapipe")
    script = (
        "import numpy as np\n"
        "from facetrack.engines.mediapipe_mesh import MediapipeFaceMesh\n"
        "with MediapipeFaceMesh() as engine:\n"
        "    assert engine.process(np.zeros((96, 96, 3), np.uint8)) == []\n"
        "import mediapipe as mp\n"
        "from mediapipe.python.solutions import face_mesh_connections\n"
        "mesh = mp.solutions.face_mesh.FaceMesh(refine_landmarks=True)\n"
        "mesh.close()\n"
        "print(mp.__version__, len(face_mesh_connections.FACEMESH_TESSELATION), mp.tasks.vision is not None)\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    version, edges, vision = done.stdout.split()
    assert version.startswith("0.10.")
    assert int(edges) > 2000
    assert vision == "True"


def test_bench_reports_start_up_and_steady_state_apart(short_face_clip, tmp_path) -> None:
    from click.testing import CliRunner

    from facetrack.tracker.cli.app import app
    from facetrack.tracker.cli.bench import STEADY_AFTER

    out = tmp_path / "bench.json"
    done = CliRunner().invoke(app, ["bench", str(short_face_clip), "--max-frames", "30", "--json", str(out)])
    assert done.exit_code == 0, done.output
    report = json.loads(out.read_text())
    assert report["frames"] == 30
    assert report["startup_s"] > 0
    assert report["steady_state_ms"] > 0
    # the steady state leaves out the first frames, so it is no slower than their whole stretch per frame
    assert report["steady_state_ms"] * (30 - STEADY_AFTER) <= 1e3 * (30 - 1) / report["end_to_end_fps"] + 1e-6
    for stage in ("landmarks", "eyes", "fit", "filter", "events", "publish"):
        assert report["stages"][stage]["frames"] == 30
        assert report["stages"][stage]["median_ms"] <= report["stages"][stage]["p90_ms"]
    assert "steady state" in " ".join(done.output.split())


def test_bench_has_no_steady_state_for_a_source_shorter_than_the_start_up(short_face_clip, tmp_path) -> None:
    from click.testing import CliRunner

    from facetrack.tracker.cli.app import app

    out = tmp_path / "bench.json"
    done = CliRunner().invoke(app, ["bench", str(short_face_clip), "--max-frames", "5", "--model", "none",
                                    "--no-eyes", "--json", str(out)])
    assert done.exit_code == 0, done.output
    assert json.loads(out.read_text())["steady_state_ms"] is None


def test_pyarrow_loads_with_the_first_parquet_file_only(tmp_path) -> None:
    code = (
        "import sys, time\n"
        "from facetrack.adapters.file_sinks import open_file_sink, read_results\n"
        "from facetrack.tracker.core.schema import FrameResult, SourceInfo, StreamMetadata\n"
        "meta = StreamMetadata(stream_id='s', source=SourceInfo(uri='x', width=4, height=4, fps=None, live=False),"
        " started_at=time.time())\n"
        "frame = FrameResult(stream_id='s', frame_index=0, pts=None, capture_time=1.0, width=4, height=4, faces=[])\n"
        "for suffix in ('.jsonl', '.csv', '.npz'):\n"
        f"    sink = open_file_sink({str(tmp_path)!r} + '/out' + suffix)\n"
        "    sink.start(meta); sink.write(frame); sink.close()\n"
        "assert 'pyarrow' not in sys.modules\n"
        f"sink = open_file_sink({str(tmp_path)!r} + '/out.parquet')\n"
        "sink.start(meta); sink.write(frame); sink.close()\n"
        f"assert [r.frame_index for r in read_results({str(tmp_path)!r} + '/out.parquet')] == [0]\n")
    assert _loaded(_modules_after(code), "pyarrow")


def test_the_default_pipeline_loads_neither_the_regressor_nor_scipy_matching_and_rotations() -> None:
    modules = _modules_after("import facetrack.tracker.pipeline")
    for package in ("facetrack.tracker.stages.regress", "scipy.spatial", "scipy.optimize", "torch", "pyarrow"):
        assert not _loaded(modules, package), package


def test_a_tracker_with_the_default_model_loads_no_model_building_code() -> None:
    # the packaged model is read, not built: no ICT converter, renderer or scipy.optimize on the way
    modules = _modules_after(
        "from facetrack.tracker.config import TrackerConfig\n"
        "from facetrack.tracker.pipeline import Tracker\n"
        "tracker = Tracker(TrackerConfig())\n"
        "assert tracker._fit is not None and tracker._fit.fitter.model is not None")
    for package in ("scipy.optimize", "scipy.spatial", "facetrack.tracker.facemodel.ict",
                    "facetrack.tracker.facemodel.render"):
        assert not _loaded(modules, package), package


def test_a_publisher_without_keys_loads_no_curve_support_and_the_version_still_prints() -> None:
    modules = _modules_after(
        "from facetrack.adapters.zmq_publisher import PublisherConfig, ZmqPublisher\n"
        "import facetrack.tracker.cli.app\n"
        "ZmqPublisher(PublisherConfig(endpoint='tcp://127.0.0.1:*')).close()")
    for package in ("facetrack.adapters.curve", "zmq.auth"):
        assert not _loaded(modules, package), package
    done = subprocess.run([sys.executable, "-m", "facetrack.tracker.cli", "--version"], capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.startswith("facetrack, version "), done.stderr
