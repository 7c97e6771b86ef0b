"""The `facetrack` command run as a user runs it: real subprocesses, files and sockets."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import encode_clip

from facetrack.adapters.file_sinks import read_results

CLI = [sys.executable, "-m", "facetrack.tracker.cli"]


def facetrack(*args: str, timeout: float = 120, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, **kwargs)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


@pytest.mark.media
def test_run_writes_every_format_with_one_result_per_frame(short_face_clip: Path, tmp_path: Path) -> None:
    outs = [tmp_path / "out" / f"take{ext}" for ext in (".jsonl", ".csv", ".parquet", ".npz")]
    args = ["run", str(short_face_clip), "--quiet"]
    for out in outs:
        args += ["--out", str(out)]
    done = facetrack(*args)
    assert done.returncode == 0, done.stderr
    assert "40 (40 with a face)" in done.stderr
    for out in outs:
        results = read_results(out)
        assert [r.frame_index for r in results] == list(range(40)), out.suffix
        assert all(len(r.faces) == 1 for r in results), out.suffix
        assert not out.with_name(out.name + ".partial").exists()


def test_missing_source_is_a_clear_usage_error(tmp_path: Path) -> None:
    done = facetrack("run", str(tmp_path / "nope.mp4"), "--out", str(tmp_path / "x.jsonl"))
    assert done.returncode == 2
    assert "nope.mp4" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "x.jsonl").exists()


def test_non_video_file_is_a_clear_usage_error(tmp_path: Path) -> None:
    text = tmp_path / "notes.mp4"
    text.write_text("this is not a video\n" * 100)
    done = facetrack("run", str(text))
    assert done.returncode == 2 and "Traceback" not in done.stderr and "notes.mp4" in done.stderr


def test_truncated_video_keeps_decodable_frames_and_exits_1(tmp_path: Path) -> None:
    # An MPEG-TS (streamable, no index at the end) cut in half: the first frames decode,
    # then the stream ends early.
    rng = np.random.default_rng(0)
    frames = [rng.integers(0, 255, (120, 160, 3), dtype=np.uint8) for _ in range(30)]
    whole = encode_clip(tmp_path / "whole.ts", frames)
    cut = tmp_path / "cut.ts"
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2 + 97])  # inside a 188-byte TS packet: detectably cut
    out = tmp_path / "cut.jsonl"
    done = facetrack("run", str(cut), "--out", str(out), "--quiet")
    assert done.returncode == 1, done.stderr
    assert "truncated" in done.stderr.lower() or "corrupt" in done.stderr.lower()
    kept = read_results(out)
    assert 0 < len(kept) < 30
    assert [r.frame_index for r in kept] == list(range(len(kept)))


def test_info_reports_the_container(blank_clip: Path) -> None:
    done = facetrack("info", str(blank_clip), "--json")
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert (info["width"], info["height"], info["live"]) == (160, 120, False)
    assert info["fps"] == pytest.approx(25)


@pytest.mark.media
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_flushes_and_closes_outputs(short_face_clip: Path, tmp_path: Path, signum: int) -> None:
    out = tmp_path / "loop.jsonl"
    proc = subprocess.Popen([*CLI, "run", str(short_face_clip), "--loop", "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    partial = out.with_name(out.name + ".partial")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not partial.exists() or partial.read_bytes().count(b"\n") < 21):  # + header
        time.sleep(0.2)
    proc.send_signal(signum)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert "Interrupted" in stderr
    results = read_results(out)
    assert len(results) >= 20
    assert [r.frame_index for r in results] == list(range(len(results)))


def _loads_mediapipe(pid: int) -> bool:
    """Whether the process has begun loading the landmark engine (mediapipe's native library is mapped)."""
    return "_framework_bindings" in Path(f"/proc/{pid}/maps").read_text()


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="watches the loaded libraries in Linux's /proc")
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_interrupt_while_starting_exits_130_and_keeps_earlier_results(blank_clip: Path, tmp_path: Path,
                                                                       signum: int) -> None:
    out = tmp_path / "take.jsonl"
    out.write_text("an earlier take\n")
    proc = subprocess.Popen([*CLI, "run", str(blank_clip), "--out", str(out), "--quiet"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 30
    while proc.poll() is None and not _loads_mediapipe(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.005)
    proc.send_signal(signum)  # the engines are loading: no frame has been read, no output opened
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "Interrupted" in stderr and "Traceback" not in stderr and "Aborted" not in stderr
    assert out.read_text() == "an earlier take\n"
    assert not out.with_name(out.name + ".partial").exists()


@pytest.mark.media
def test_subscriber_receives_every_frame_of_a_published_run(short_face_clip: Path, tmp_path: Path) -> None:
    endpoint = f"tcp://127.0.0.1:{_free_port()}"
    received = tmp_path / "received.jsonl"
    subscriber = subprocess.Popen([*CLI, "subscribe", endpoint, "--count", "40", "--out", str(received),
                                   "--timeout", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = facetrack("run", str(short_face_clip), "--publish", endpoint, "--wait-subscribers", "1", "--quiet")
    assert run.returncode == 0, run.stderr
    _, stderr = subscriber.communicate(timeout=60)
    assert subscriber.returncode == 0, stderr
    results = read_results(received)
    assert [r.frame_index for r in results] == list(range(_frame_count(short_face_clip)))


def test_endpoint_in_use_is_a_clear_error(blank_clip: Path) -> None:
    port = _free_port()
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", port))
        busy.listen()
        done = facetrack("run", str(blank_clip), "--publish", f"tcp://127.0.0.1:{port}")
    assert done.returncode == 2
    assert "in use" in done.stderr and "Traceback" not in done.stderr


def test_help_lists_the_commands() -> None:
    done = facetrack("--help")
    assert done.returncode == 0
    for command in ("run", "info", "subscribe", "bench"):
        assert command in done.stdout
