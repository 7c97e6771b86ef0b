"""`facetrack batch` end to end: real clips, real worker processes, a real `kill -9`, Ray if installed."""

from __future__ import annotations

import contextlib
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import numpy as np
import psutil
import pytest
from conftest import encode_clip

from facetrack.adapters.file_sinks import read_results

pytestmark = pytest.mark.media

BATCH = [sys.executable, "-c", "from facetrack.tracker.cli.batch import main; main()"]
TIMEOUT = 120


def batch(*args: object, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*BATCH, *map(str, args)], capture_output=True, text=True, timeout=TIMEOUT, cwd=cwd, check=False
    )


def decoded_frames(path: Path) -> int:
    """Frames PyAV decodes from a clip, stopping at the first error (what a tracker can see)."""
    count = 0
    with av.open(str(path)) as container, contextlib.suppress(av.error.FFmpegError):
        for _ in container.decode(video=0):
            count += 1
    return count


def assert_complete(output: Path, frames: int) -> None:
    """An output holds exactly frames 0..frames-1, once each, in order."""
    results = read_results(output)
    assert [r.frame_index for r in results] == list(range(frames)), output


def _first_frames(path: Path, count: int) -> list[np.ndarray]:
    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if len(frames) == count:
                break
    return frames


@pytest.fixture(scope="session")
def second_clip(media_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The first 25 frames of another real talking head (700x700), re-encoded."""
    frames = _first_frames(media_dir / "videos" / "video-retalking" / "1.mp4", 25)
    return encode_clip(tmp_path_factory.mktemp("clips") / "talk25.mp4", frames)


@pytest.fixture(scope="session")
def truncated_clip(short_face_clip: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The short face clip as Matroska, cut in half: decodable frames, then the end is missing."""
    whole = encode_clip(tmp_path_factory.mktemp("clips") / "whole.mkv", _first_frames(short_face_clip, 40))
    cut = whole.with_name("cut.mkv")
    data = whole.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    return cut


def _summary(out: Path) -> dict[str, dict]:
    return {row["clip"]: row for row in json.loads((out / "summary.json").read_text())["clips"]}


def test_corrupt_clips_are_reported_and_the_others_finish(
    tmp_path: Path, short_face_clip: Path, second_clip: Path, truncated_clip: Path
) -> None:
    shoot = tmp_path / "shoot"
    (shoot / "talk").mkdir(parents=True)
    shutil.copy(short_face_clip, shoot / "face.mp4")
    shutil.copy(second_clip, shoot / "talk" / "second.mp4")
    shutil.copy(truncated_clip, shoot / "cut.mkv")
    (shoot / "broken.mp4").write_bytes(b"\x00not a video" * 500)
    (shoot / "notes.txt").write_text("not a clip")
    out = tmp_path / "out"

    done = batch(shoot, "--out-dir", out, "--workers", 2, "--format", "jsonl")
    assert done.returncode == 1, done.stderr
    rows = _summary(out)
    assert {name: row["status"] for name, row in rows.items()} == {
        "face": "ok", "talk__second": "ok", "cut": "partial", "broken": "failed",
    }  # fmt: skip
    for name, clip in (("face", short_face_clip), ("talk__second", second_clip), ("cut", truncated_clip)):
        frames = decoded_frames(clip)
        assert rows[name]["frames"] == frames
        assert_complete(out / f"{name}.jsonl", frames)
    assert rows["face"]["frames_with_face"] == rows["face"]["frames"] and rows["face"]["tracks"] == 1
    assert rows["face"]["fps"] > 0
    assert rows["face"]["blinks_per_minute"] is None or rows["face"]["blinks_per_minute"] >= 0  # None: no eye state
    assert "truncated" in rows["cut"]["error"] and "not a video" in rows["broken"]["error"]
    assert rows["broken"]["output"] is None and not (out / "broken.jsonl").exists()
    assert "partial: " in done.stderr and "failed: " in done.stderr

    manifest = json.loads((out / "manifest.json").read_text())
    # a new run's default engine: the regress engine, which meets its targets (engines/models/regress_landmarks.md)
    assert manifest["options"] == {"format": "jsonl", "max_faces": 1, "max_frames": None, "coefficients": "regress"}
    assert manifest["versions"]["mediapipe"] and manifest["ended_at"] is not None
    assert {name: clip["status"] for name, clip in manifest["clips"].items()} == {
        name: row["status"] for name, row in rows.items()
    }
    csv_header = (out / "summary.csv").read_text().splitlines()[0]
    assert csv_header.startswith("clip,status,frames,frames_with_face,tracks,blinks_per_minute,fps")
    assert not (out / ".work").exists() and not list(out.glob("*.partial"))

    # The folder holds a run: a plain rerun or a resume with other output options is refused.
    again = batch(shoot, "--out-dir", out)
    assert again.returncode == 2 and "--resume" in again.stderr
    other = batch(shoot, "--out-dir", out, "--resume", "--format", "csv")
    assert other.returncode == 2 and "same --format" in other.stderr


def test_kill_9_then_resume_loses_and_duplicates_nothing(
    tmp_path: Path, short_face_clip: Path, second_clip: Path
) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for name, source in (("a", short_face_clip), ("b", second_clip), ("c", short_face_clip), ("d", second_clip)):
        shutil.copy(source, clips / f"{name}.mp4")
    out = tmp_path / "out"
    manifest_path = out / "manifest.json"
    with open(tmp_path / "log.txt", "w") as log:
        run = subprocess.Popen([*BATCH, str(clips), "--out-dir", str(out), "--workers", "1"], stdout=log, stderr=log)
        deadline = time.monotonic() + 90
        manifest: dict = {}
        try:
            while time.monotonic() < deadline and run.poll() is None:
                if manifest_path.exists():
                    manifest = json.loads(manifest_path.read_text())
                    if any(clip["status"] == "ok" for clip in manifest["clips"].values()):
                        break
                time.sleep(0.05)
            assert run.poll() is None, "the run ended before it could be killed"
            run.send_signal(signal.SIGKILL)
        finally:
            run.kill()
            run.wait(10)
    finished = {
        name: (out / clip["output"]).stat().st_mtime_ns
        for name, clip in manifest["clips"].items()
        if clip["status"] == "ok"
    }
    assert 1 <= len(finished) < 4
    # The worker notices its parent is gone and ends too: no orphan keeps writing.
    workers = {int(clip["worker"].rsplit(":", 1)[1]) for clip in manifest["clips"].values() if clip["worker"]}
    for pid in workers:
        with contextlib.suppress(psutil.NoSuchProcess):
            psutil.Process(pid).wait(10)
    for output in out.glob("*.parquet"):  # whatever was renamed into place is whole
        assert_complete(output, decoded_frames(clips / f"{output.stem}.mp4"))

    resumed = batch("--out-dir", out, "--workers", 2, "--resume")  # the inputs come from the manifest
    assert resumed.returncode == 0, resumed.stderr
    manifest = json.loads(manifest_path.read_text())
    assert [run["resumed"] for run in manifest["runs"]] == [False, True]
    assert manifest["runs"][1]["clips_skipped"] >= len(finished)
    for name, mtime in finished.items():
        assert (out / f"{name}.parquet").stat().st_mtime_ns == mtime, f"{name} was redone"
    for name in "abcd":
        assert manifest["clips"][name]["status"] == "ok"
        assert_complete(out / f"{name}.parquet", decoded_frames(clips / f"{name}.mp4"))
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == [
        "a.parquet", "b.parquet", "c.parquet", "d.parquet", "manifest.json", "summary.csv", "summary.json",
        "workers.log",
    ]  # fmt: skip


def test_a_killed_worker_is_replaced_and_its_clip_redone(
    tmp_path: Path, short_face_clip: Path, second_clip: Path
) -> None:
    clips = tmp_path / "clips"
    clips.mkdir()
    for name, source in (("a", short_face_clip), ("b", second_clip), ("c", short_face_clip)):
        shutil.copy(source, clips / f"{name}.mp4")
    out = tmp_path / "out"
    with open(tmp_path / "log.txt", "w") as log:
        run = subprocess.Popen([*BATCH, str(clips), "--out-dir", str(out), "-j", "1"], stdout=log, stderr=log)
        try:
            deadline = time.monotonic() + 60
            victim = None
            while victim is None and time.monotonic() < deadline and run.poll() is None:
                if (out / "manifest.json").exists():
                    running = [(name, clip["worker"]) for name, clip in
                               json.loads((out / "manifest.json").read_text())["clips"].items()
                               if clip["status"] == "running"]  # fmt: skip
                    victim = running[0] if running else None
                time.sleep(0.05)
            assert victim is not None, "no clip was seen running"
            psutil.Process(int(victim[1].rsplit(":", 1)[1])).kill()  # as the out-of-memory killer would
            killed_at = time.time()
            assert run.wait(TIMEOUT) == 0, (tmp_path / "log.txt").read_text()
        finally:
            run.kill()
    clip = json.loads((out / "manifest.json").read_text())["clips"][victim[0]]
    assert clip["status"] == "ok"
    assert clip["attempts"] == 2 or clip["ended_at"] < killed_at  # redone, unless it had just finished
    for name in "abc":
        assert_complete(out / f"{name}.parquet", decoded_frames(clips / f"{name}.mp4"))


def test_colliding_names_lists_and_globs(tmp_path: Path, blank_clip: Path) -> None:
    work = tmp_path / "work"
    for folder in ("x", "y"):
        (work / folder).mkdir(parents=True)
        shutil.copy(blank_clip, work / folder / "clip.mp4")
    shutil.copy(blank_clip, work / "summary.mp4")
    (work / "todo.txt").write_text("# two clips with one name\nx/clip.mp4\ny/clip.mp4\n")

    done = batch("@todo.txt", "--out-dir", "out", "--format", "csv", "--max-frames", 5, "-j", 2, "--engine", "fit",
                 cwd=work)
    assert done.returncode == 0, done.stderr
    # a resume without --engine keeps the run's own (fit, not the regress default of a new run)
    done = batch("*.mp4", "--out-dir", "out", "--format", "csv", "--max-frames", 5, "-j", 2, "--resume", cwd=work)
    assert done.returncode == 0, done.stderr
    assert json.loads((work / "out" / "manifest.json").read_text())["options"]["coefficients"] == "fit"
    out = work / "out"
    rows = _summary(out)
    assert len(rows) == 3 and len({row["output"] for row in rows.values()}) == 3
    assert sorted(name.split("-")[0] for name in rows) == ["clip", "clip", "summary"]
    for name, row in rows.items():
        assert row["output"] == f"{name}.csv" and row["frames"] == 5 and row["frames_with_face"] == 0
        assert_complete(out / row["output"], 5)
        assert {result.stream_id for result in read_results(out / row["output"])} == {name}
    assert (out / "summary.csv").read_text().startswith("clip,status")
    manifest = json.loads((out / "manifest.json").read_text())
    assert all(Path(spec.lstrip("@")).is_absolute() for spec in manifest["inputs"])

    missing = batch("nothing-here/", "--out-dir", "out2", cwd=work)
    assert missing.returncode == 2 and "nothing-here" in missing.stderr
    assert not (work / "out2").exists()


@pytest.mark.slow
def test_ray_local_cluster_gives_the_same_outputs(tmp_path: Path, short_face_clip: Path, second_clip: Path) -> None:
    pytest.importorskip("ray", reason='Ray is an optional extra: pip install "facetrack[ray]"')
    clips = tmp_path / "clips"
    clips.mkdir()
    shutil.copy(short_face_clip, clips / "face.mp4")
    shutil.copy(second_clip, clips / "talk.mp4")
    out = tmp_path / "out"

    done = batch(clips, "--out-dir", out, "--max-frames", 12, "--workers", 2, "--ray")
    assert done.returncode == 0, done.stderr
    rows = _summary(out)
    assert {name: (row["status"], row["frames"]) for name, row in rows.items()} == {
        "face": ("ok", 12), "talk": ("ok", 12),
    }  # fmt: skip
    for name in rows:
        assert_complete(out / f"{name}.parquet", 12)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["runs"][0]["backend"].startswith("Ray (auto -> ")  # the private cluster it started
    assert manifest["versions"]["ray"].startswith("2.")

    mtimes = {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")}
    resumed = batch(clips, "--out-dir", out, "--max-frames", 12, "--ray=auto", "--resume")
    assert resumed.returncode == 0, resumed.stderr
    assert {p.name: p.stat().st_mtime_ns for p in out.glob("*.parquet")} == mtimes
