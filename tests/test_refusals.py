"""A refused run loses nothing: every case of issue 25 through the real CLI, with the earlier file's sha256."""

from __future__ import annotations

import hashlib
import importlib.util
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import encode_clip

from facetrack.adapters.file_sinks import open_file_sink
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.core.errors import FacetrackError
from facetrack.tracker.pipeline import Tracker

CLI = [sys.executable, "-m", "facetrack.tracker.cli"]


def facetrack(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def _snapshot(folder: Path) -> dict[str, str]:
    """Every file under `folder` (names relative to it) with its sha256."""
    return {
        str(path.relative_to(folder)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(folder.rglob("*")) if path.is_file()
    }


@pytest.fixture()
def workdir(tmp_path: Path, blank_clip: Path) -> Path:
    """A folder with an earlier results file (1 MB of bytes no tracker writes), a plain file and a clip."""
    rng = np.random.default_rng(25)
    (tmp_path / "take.jsonl").write_bytes(rng.integers(0, 256, 1 << 20, dtype=np.uint8).tobytes())
    (tmp_path / "take.jsonl.partial").write_bytes(b"an interrupted run's partial file\n")
    (tmp_path / "notes.txt").write_text("a plain file, not a folder\n")
    (tmp_path / "bad.onnx").write_bytes(b"\x08\x07not a network")
    (tmp_path / "bad.json").write_text('{"sha256": "' + hashlib.sha256(b"\x08\x07not a network").hexdigest() + '"}')
    os.replace(blank_clip, tmp_path / "clip.mp4")
    return tmp_path


def _busy_port() -> socket.socket:
    held = socket.socket()
    held.bind(("127.0.0.1", 0))
    held.listen(1)
    return held


def _only_line(stderr: str) -> str:
    """stderr's one line: a native library's log line before it, a traceback or a wrapped message fails."""
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


REFUSALS = [
    (["--model", "nosuchmodel"], "nosuchmodel"),
    (["--vmc", "nosuchhost.invalid:39539"], "nosuchhost.invalid"),
    (["--livelink", "nosuchhost.invalid"], "nosuchhost.invalid"),
    (["--vmc", "127.0.0.1:notaport"], "notaport"),
    (["--eye-engine", "bad.onnx"], "bad.onnx"),
    (["--engine", "regress", "--regressor", "bad.onnx"], "bad.onnx"),
    (["--out", "notes.txt/second.csv"], "notes.txt is a file, not a folder"),
    (["--out", "second.txt"], "unknown extension '.txt'"),
    (["--out", "."], "is a directory"),
    (["--out", "take.jsonl"], "more than one output"),
    (["--render", "notes.txt/overlay.mp4"], "notes.txt is a file, not a folder"),
    (["--render", "overlay.avi"], ".mp4"),
    (["--mesh", "notes.txt/mesh.npz"], "notes.txt is a file, not a folder"),
    (["--mesh", "notes.txt"], "is a file, not a folder"),
    (["--model", "none", "--mesh", "mesh.npz"], "--mesh needs a face model"),
]


@pytest.mark.parametrize(("extra", "message"), REFUSALS, ids=[" ".join(a) for a, _ in REFUSALS])
def test_a_refused_run_leaves_every_file_as_it_was(workdir: Path, extra: list[str], message: str) -> None:
    before = _snapshot(workdir)
    done = facetrack("run", "clip.mp4", "--quiet", "--out", "take.jsonl", "--out", "new.parquet",
                     "--out", "new.csv", *extra, cwd=workdir)
    assert done.returncode == 2, done.stderr
    assert _only_line(done.stderr).startswith("error: ") and message in done.stderr
    assert _snapshot(workdir) == before


def test_a_busy_publish_port_is_refused_before_any_file(workdir: Path) -> None:
    before = _snapshot(workdir)
    with _busy_port() as held:
        port = held.getsockname()[1]
        done = facetrack("run", "clip.mp4", "--out", "take.jsonl", "--out", "new.npz",
                         "--publish", f"tcp://127.0.0.1:{port}", cwd=workdir)
    assert done.returncode == 2, done.stderr
    assert "already in use" in _only_line(done.stderr)
    assert _snapshot(workdir) == before


def test_an_empty_source_is_a_usage_error(workdir: Path) -> None:
    before = _snapshot(workdir)
    done = facetrack("run", "", "--out", "take.jsonl", cwd=workdir)
    assert done.returncode == 2 and "SOURCE is empty" in _only_line(done.stderr)
    assert _snapshot(workdir) == before


def test_error_messages_are_one_line_however_long(workdir: Path) -> None:
    deep = "d" * 150
    done = facetrack("run", "clip.mp4", "--out", f"notes.txt/{deep}/x.jsonl", cwd=workdir)
    assert done.returncode == 2
    assert deep in _only_line(done.stderr)


@pytest.mark.parametrize("engine", [
    pytest.param("litert", marks=pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is None,
                                                    reason="needs the [litert] extra (ai-edge-litert)")),
    "mediapipe",
])
def test_native_log_lines_never_surround_an_error(tmp_path: Path, engine: str) -> None:
    """A run that fails after its engines ran: stderr is our one line; -v lets the libraries' own lines through."""
    rng = np.random.default_rng(0)
    whole = encode_clip(tmp_path / "whole.ts", [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(30)])
    data = whole.read_bytes()
    (tmp_path / "cut.ts").write_bytes(data[: len(data) // 2 + 97])  # cut inside a TS packet: frames, then damage
    done = facetrack("run", "cut.ts", "--engine", engine, "--out", "cut.jsonl", "--quiet", cwd=tmp_path)
    assert done.returncode == 1, done.stderr
    line = _only_line(done.stderr)
    assert line.startswith("error: ") and "frames were tracked and written" in line
    if engine == "litert":  # its delegate's line is printed at every interpreter's creation
        loud = facetrack("-v", "run", "cut.ts", "--engine", engine, "--out", "cut.jsonl", "--quiet", cwd=tmp_path)
        assert "TensorFlow Lite" in loud.stderr and loud.returncode == 1


@pytest.mark.skipif(importlib.util.find_spec("ai_edge_litert") is not None,
                    reason="the [litert] extra is installed here; this is the refusal an install without it gives")
def test_an_engine_this_install_lacks_is_refused_before_anything_opens(workdir: Path) -> None:
    before = _snapshot(workdir)
    done = facetrack("run", "clip.mp4", "--engine", "litert", "--out", "take.jsonl", cwd=workdir)
    assert done.returncode == 2 and "pip install 'facetrack[litert]'" in _only_line(done.stderr), done.stderr
    assert _snapshot(workdir) == before


def test_missing_output_folders_are_created_when_the_run_goes_ahead(workdir: Path) -> None:
    done = facetrack("run", "clip.mp4", "--quiet", "--model", "none", "--no-eyes", "--max-frames", "3",
                     "--out", "results/day1/take.csv", "--render", "overlays/day1/take.mp4", cwd=workdir)
    assert done.returncode == 0, done.stderr
    assert len((workdir / "results" / "day1" / "take.csv").read_text().splitlines()) == 4
    assert (workdir / "overlays" / "day1" / "take.mp4").stat().st_size > 0


def test_a_run_that_fails_before_its_first_frame_discards_its_partial_files(workdir: Path) -> None:
    """The second line of defence: a failure after the sinks opened (here: the landmark engine) renames nothing."""

    def broken_engine(_config: TrackerConfig, _still: bool) -> None:
        raise FacetrackError("the landmark engine cannot start")

    before = _snapshot(workdir)
    sinks = [open_file_sink(workdir / "take.jsonl"), open_file_sink(workdir / "fresh.parquet")]
    tracker = Tracker(TrackerConfig(model=None), engine_factory=broken_engine)
    with pytest.raises(FacetrackError, match="cannot start"):
        tracker.run(str(workdir / "clip.mp4"), sinks)
    after = _snapshot(workdir)
    # the earlier take.jsonl is untouched; the run's own .partial files are gone (the earlier one was reused)
    assert after == {name: digest for name, digest in before.items() if not name.endswith(".partial")}


@pytest.fixture()
def keys(workdir: Path) -> Path:
    done = facetrack("keys", "init", "keys", "--client", "studio", cwd=workdir)
    assert done.returncode == 0, done.stderr
    return workdir / "keys"


SUBSCRIBE_REFUSALS = [
    (["--curve-key", "keys/server.key", "--server-key", "keys/server.key"], "holds no secret key"),
    (["--curve-key", "clip.mp4", "--server-key", "keys/server.key"], "cannot read CURVE key clip.mp4"),
    (["--curve-key", "keys/clients/studio.key_secret", "--server-key", "notes.txt"], "cannot read CURVE key"),
    (["tcp://127.0.0.1:notaport"], "cannot connect to 'tcp://127.0.0.1:notaport'"),
    (["--out", "notes.txt/take.jsonl"], "notes.txt is a file, not a folder"),
    (["--out", "take.txt"], "unknown extension"),
]


@pytest.mark.parametrize(("extra", "message"), SUBSCRIBE_REFUSALS, ids=[" ".join(a) for a, _ in SUBSCRIBE_REFUSALS])
def test_subscribe_refusals_are_one_line_and_change_nothing(workdir: Path, keys: Path, extra: list[str],
                                                           message: str) -> None:
    before = _snapshot(workdir)
    done = facetrack("subscribe", "--timeout", "0.2", *extra, cwd=workdir)
    assert done.returncode == 2, done.stderr
    assert message in done.stderr and "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert _snapshot(workdir) == before


def test_a_subscriber_that_receives_nothing_keeps_the_earlier_file(workdir: Path) -> None:
    before = _snapshot(workdir)
    with _busy_port() as held:  # a port nothing publishes on
        port = held.getsockname()[1]
    done = facetrack("subscribe", f"tcp://127.0.0.1:{port}", "--timeout", "0.3", "--out", "take.jsonl", cwd=workdir)
    assert done.returncode == 0 and "0 frames received" in done.stderr
    # the final-named file is as it was; an earlier run's leftover .partial is the one file a new run may reuse
    assert _snapshot(workdir) == {name: digest for name, digest in before.items() if not name.endswith(".partial")}


def test_a_busy_preview_port_is_refused_before_any_file(workdir: Path) -> None:
    before = _snapshot(workdir)
    with _busy_port() as held:
        port = held.getsockname()[1]
        env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        done = subprocess.run([*CLI, "run", "clip.mp4", "--out", "take.jsonl", "--out", "new.csv", "--preview",
                               "--preview-port", str(port)], capture_output=True, text=True, timeout=120,
                              cwd=workdir, env=env)
    assert done.returncode == 2, done.stderr
    assert f"cannot serve the preview on 127.0.0.1:{port}" in _only_line(done.stderr)
    assert _snapshot(workdir) == before


UNFORESEEN = [
    (["plot", "junk.csv", "--out", "plot.png"], "IndexError"),
    (["batch", "clip.mp4", "--out-dir", "notes.txt"], "FileExistsError"),
]


@pytest.mark.parametrize(("args", "kind"), UNFORESEEN, ids=[a[0] for a, _ in UNFORESEEN])
def test_a_failure_no_command_words_is_still_one_line(workdir: Path, args: list[str], kind: str) -> None:
    """The safety net in `main`: an exception no command turned into a message is one line, exit 1; -v shows it."""
    (workdir / "junk.csv").write_text("a,b\n")
    before = _snapshot(workdir)
    done = facetrack(*args, cwd=workdir)
    assert done.returncode == 1, done.stderr
    line = _only_line(done.stderr)
    assert line.startswith(f"error: {kind}: ") and "facetrack -v" in line
    assert _snapshot(workdir) == before
    loud = facetrack("-v", *args, cwd=workdir)
    assert loud.returncode == 1 and "Traceback" in loud.stderr
