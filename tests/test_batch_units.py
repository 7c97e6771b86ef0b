"""Batch building blocks without tracking: inputs, output names, manifest rules, blink rate."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path, PurePath

import numpy as np
import pytest

from facetrack.tracker.batch.inputs import (
    MAX_STEM,
    ClipInput,
    InputError,
    assign_stems,
    base_stem,
    expand_inputs,
    path_hash,
)
from facetrack.tracker.batch.manifest import (
    ClipRecord,
    is_done,
    load_manifest,
    remove_stale_temporaries,
    write_atomic,
)
from facetrack.tracker.batch.worker import ClipStats
from facetrack.tracker.core.schema import EyeEvent, Eyes, EyeState, FaceResult, FrameResult, HeadPose


def _touch(path: Path, data: bytes = b"x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_folders_globs_files_and_lists(tmp_path: Path) -> None:
    shoot = tmp_path / "shoot"
    a = _touch(shoot / "day1" / "a.mp4")
    b = _touch(shoot / "day2" / "b.MOV")
    _touch(shoot / "notes.txt")
    c = _touch(tmp_path / "other" / "c.mkv")
    odd = _touch(tmp_path / "other" / "d.bin")
    listing = tmp_path / "lists" / "todo.txt"
    _touch(listing, b"# clips for tomorrow\n\n../other/c.mkv\n../other/d.bin\n")

    clips = expand_inputs(["shoot", "other/*.mkv", f"@{listing}", str(a)], cwd=tmp_path)
    assert [clip.path for clip in clips] == [a.resolve(), b.resolve(), c.resolve(), odd.resolve()]
    assert [str(clip.relative) for clip in clips] == ["day1/a.mp4", "day2/b.MOV", "c.mkv", "d.bin"]
    assert [str(clip.relative) for clip in expand_inputs(["shoot/**/*.mp4"], cwd=tmp_path)] == ["day1/a.mp4"]


def test_inputs_that_match_nothing_are_all_named(tmp_path: Path) -> None:
    _touch(tmp_path / "empty" / "readme.txt")
    listing = _touch(tmp_path / "list.txt", b"missing.mp4\n")
    with pytest.raises(InputError) as error:
        expand_inputs(["nope.mp4", "empty", "*.avi", f"@{listing}"], cwd=tmp_path)
    for spec in ("nope.mp4", "empty", "*.avi", "missing.mp4 (in @"):
        assert spec in str(error.value)
    with pytest.raises(InputError, match="cannot read the list file"):
        expand_inputs(["@absent.txt"], cwd=tmp_path)


def test_stems_are_flat_safe_and_bounded() -> None:
    assert base_stem(PurePath("day 1/take#3.mp4")) == "day_1__take_3"
    assert base_stem(PurePath("../../etc/.hidden.mp4")) == "etc__.hidden"
    assert base_stem(PurePath(".mp4")) == "mp4"
    long = PurePath("x" * 200 + ".mp4")
    stems = assign_stems([ClipInput(Path("/data") / long, long)])
    (stem,) = stems.values()
    assert len(stem) <= MAX_STEM and stem.endswith(path_hash(Path("/data") / long))
    for name in stems.values():
        assert "/" not in name and "\\" not in name and not name.startswith(".")


def test_collisions_get_a_hash_and_names_are_stable() -> None:
    clips = [
        ClipInput(Path("/a/clip.mp4"), PurePath("clip.mp4")),
        ClipInput(Path("/b/clip.mp4"), PurePath("clip.mp4")),
        ClipInput(Path("/b/Clip.mov"), PurePath("Clip.mov")),
        ClipInput(Path("/c/summary.mp4"), PurePath("summary.mp4")),
        ClipInput(Path("/c/solo.mp4"), PurePath("solo.mp4")),
    ]
    stems = assign_stems(clips)
    assert stems[Path("/c/solo.mp4")] == "solo"
    assert stems[Path("/c/summary.mp4")] == f"summary-{path_hash(Path('/c/summary.mp4'))}"
    colliding = [stems[clip.path] for clip in clips[:3]]
    assert len({name.lower() for name in colliding}) == 3
    assert all(name.lower().startswith("clip-") for name in colliding)
    assert assign_stems(list(reversed(clips))) == stems  # order does not matter

    # A resumed run keeps the names it gave, and a new clip cannot take one of them.
    earlier = {Path("/a/clip.mp4"): "clip"}
    later = assign_stems([ClipInput(Path("/z/clip.mp4"), PurePath("clip.mp4")), clips[0]], earlier)
    assert later[Path("/a/clip.mp4")] == "clip"
    assert later[Path("/z/clip.mp4")] == f"clip-{path_hash(Path('/z/clip.mp4'))}"


def test_resume_trusts_only_ok_clips_with_their_output_and_unchanged_input(tmp_path: Path) -> None:
    clip = _touch(tmp_path / "clip.mp4", b"video")
    stat = clip.stat()
    _touch(tmp_path / "out" / "clip.jsonl")
    record = ClipRecord(
        name="clip", input=str(clip), output="clip.jsonl", size=stat.st_size, mtime_ns=stat.st_mtime_ns, status="ok"
    )
    out = tmp_path / "out"
    assert is_done(record, out)
    assert not is_done(record.model_copy(update={"status": "partial"}), out)
    assert not is_done(record.model_copy(update={"output": "other.jsonl"}), out)
    os.utime(clip, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert not is_done(record, out)


def test_manifest_writes_are_atomic_and_garbage_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "manifest.json"
    write_atomic(target, b"{}")
    write_atomic(target, b'{"schema": "something else"}')
    assert target.read_bytes() == b'{"schema": "something else"}'
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]  # no temporary left behind
    (tmp_path / ".manifest.json.4242.tmp").write_bytes(b"{")  # as a kill -9 mid-write leaves it
    remove_stale_temporaries(tmp_path)
    assert [p.name for p in tmp_path.iterdir()] == ["manifest.json"]
    with pytest.raises(Exception, match="not a facetrack batch manifest"):
        load_manifest(tmp_path)
    assert load_manifest(tmp_path / "nowhere") is None


def _frame(index: int, p_closed: float | None, blink_ends: bool = False) -> FrameResult:
    face = FaceResult(
        track_id=7, bbox=(0, 0, 1, 1), score=1.0, landmarks=np.zeros((478, 3), np.float32),
        pose=HeadPose(rotation=(0, 0, 0, 1), yaw=0, pitch=0, roll=0, translation=(0, 0, -50)),
        eyes=None if p_closed is None else Eyes(left=EyeState(p_closed=p_closed), right=EyeState(p_closed=p_closed)),
    )  # fmt: skip
    events = [EyeEvent(track_id=7, kind="blink", start_frame=index - 4, end_frame=index - 1)] if blink_ends else None
    return FrameResult(stream_id="s", frame_index=index, pts=index / 25, capture_time=time.time(), width=1, height=1,
                       faces=[face], eye_events=events)  # fmt: skip


def test_blinks_per_minute_counts_the_pipelines_blink_events() -> None:
    # 30 s at 25 fps with eye state, three blinks reported by the pipeline.
    stats = ClipStats()
    for i in range(750):
        stats.add(_frame(i, 0.1, blink_ends=i in (54, 254, 504)))
    assert stats.blinks == 3 and stats.track_ids == {7}
    assert stats.blinks_per_minute(1 / 25) == pytest.approx(6.0)


def test_blinks_per_minute_is_none_without_eye_state() -> None:
    stats = ClipStats()
    for i in range(10):
        stats.add(_frame(i, None))
    assert stats.frames == stats.frames_with_face == 10
    assert stats.blinks_per_minute(1 / 25) is None


def test_ray_missing_is_a_clear_usage_error(tmp_path: Path) -> None:
    _touch(tmp_path / "clip.mp4")
    hide_ray = "import sys; sys.modules['ray'] = None; from facetrack.tracker.cli.batch import main; main()"
    done = subprocess.run(
        [sys.executable, "-c", hide_ray, str(tmp_path), "--out-dir", str(tmp_path / "out"), "--ray"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    assert done.returncode == 2
    assert 'pip install "facetrack[ray]"' in done.stderr
    assert not (tmp_path / "out").exists()
