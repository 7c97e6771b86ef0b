"""Phone footage and folders: the display matrix applied (or --rotate), results in display orientation;
folders that skip a broken image, read subfolders on request, and warn about truncated JPEGs."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
from conftest import encode_clip

from facetrack.adapters.file_sinks import read_results
from facetrack.tracker.config import TrackerConfig
from facetrack.tracker.pipeline import Tracker
from facetrack.tracker.sources.config import SourceConfig
from facetrack.tracker.sources.frame_source import open_source, probe_source

CLI = [sys.executable, "-m", "facetrack.tracker.cli"]


def _rotated_clip(path: Path, coded: list[np.ndarray], clockwise: int) -> Path:
    """`coded` pictures with a display matrix that turns them `clockwise` degrees for display."""
    return encode_clip(path, coded, clockwise=clockwise)


def _marked(height: int = 96, width: int = 160) -> np.ndarray:
    """A picture whose top-left corner is white and everything else dark: where the corner goes tells the turn."""
    image = np.full((height, width, 3), 30, np.uint8)
    image[: height // 4, : width // 4] = 255
    return image


def _corner(image: np.ndarray) -> str:
    h, w = image.shape[:2]
    quads = {"top-left": image[: h // 4, : w // 4], "top-right": image[: h // 4, -w // 4:],
             "bottom-left": image[-h // 4:, : w // 4], "bottom-right": image[-h // 4:, -w // 4:]}
    return max(quads, key=lambda k: quads[k].mean())


@pytest.mark.parametrize(("clockwise", "corner"), [(90, "top-right"), (180, "bottom-right"), (270, "bottom-left")])
def test_the_display_matrix_turns_pictures_and_sizes(tmp_path: Path, clockwise: int, corner: str) -> None:
    clip = _rotated_clip(tmp_path / "phone.mp4", [_marked()] * 3, clockwise)
    info = probe_source(clip)
    assert info.rotation == clockwise and (info.coded_width, info.coded_height) == (160, 96)
    assert (info.width, info.height) == ((96, 160) if clockwise != 180 else (160, 96))
    with open_source(clip) as source:
        frames = list(source)
    assert len(frames) == 3
    assert all(f.image.shape == (info.height, info.width, 3) and f.image.flags.c_contiguous for f in frames)
    assert _corner(frames[0].image) == corner


def test_rotate_overrides_the_file(tmp_path: Path) -> None:
    phone = _rotated_clip(tmp_path / "phone.mp4", [_marked()] * 2, 90)
    with open_source(phone, SourceConfig(rotate=0)) as source:  # as coded
        assert source.info.rotation == 0 and _corner(next(iter(source)).image) == "top-left"
    plain = _rotated_clip(tmp_path / "plain.mp4", [_marked()] * 2, 0)
    with open_source(plain, SourceConfig(rotate=270)) as source:
        assert (source.info.width, source.info.height) == (96, 160)
        assert _corner(next(iter(source)).image) == "bottom-left"


def test_info_reports_coded_and_display_size_and_rotation(tmp_path: Path) -> None:
    clip = _rotated_clip(tmp_path / "phone.mp4", [_marked()] * 2, 90)
    done = subprocess.run([*CLI, "info", str(clip), "--json"], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    info = json.loads(done.stdout)
    assert (info["width"], info["height"], info["coded_width"], info["coded_height"], info["rotation"]) == (
        96, 160, 160, 96, 90)


@pytest.mark.media
def test_a_phone_clip_is_tracked_upright(face_clip: Path, tmp_path: Path) -> None:
    """A real upright face, recorded lying on its side with a display matrix, as phones record portrait video."""
    with av.open(str(face_clip)) as container:
        upright = [f.to_ndarray(format="rgb24")[:, 64:448] for _, f in zip(range(6), container.decode(video=0))]
    coded = [np.ascontiguousarray(np.rot90(image, k=1)) for image in upright]  # the face on its side
    clip = _rotated_clip(tmp_path / "portrait.mp4", coded, 90)

    def rolls(config: TrackerConfig) -> tuple[list[float], tuple[int, int]]:
        with Tracker(config) as tracker:
            results = list(tracker.track(clip))
        return [r.faces[0].pose.roll for r in results if r.faces], (results[0].width, results[0].height)

    displayed, size = rolls(TrackerConfig(model=None, eyes={"enabled": False}))
    assert size == (384, 512)  # width x height of the upright picture, not the coded 512 x 384
    assert len(displayed) == 6 and max(abs(r) for r in displayed) < 20
    coded_rolls, coded_size = rolls(TrackerConfig(model=None, eyes={"enabled": False},
                                                  source=SourceConfig(rotate=0)))
    assert coded_size == (512, 384)
    assert min(abs(r) for r in coded_rolls) > 60  # as coded, the face lies on its side


def _png(path: Path, value: int) -> None:
    with av.open(str(path), "w", format="image2") as out:
        stream = out.add_stream("png", rate=1)
        stream.width, stream.height, stream.pix_fmt = 32, 24, "rgb24"
        for packet in stream.encode(av.VideoFrame.from_ndarray(np.full((24, 32, 3), value, np.uint8), "rgb24")):
            out.mux(packet)


def test_a_folder_run_skips_a_broken_image_tracks_the_rest_and_exits_1(tmp_path: Path) -> None:
    folder = tmp_path / "shots"
    (folder / "day2").mkdir(parents=True)
    for i in range(4):
        _png(folder / f"{i}.png", 40 * i)
    (folder / "2.png").write_bytes(b"\x89PNG not really")
    _png(folder / "day2" / "9.png", 200)
    done = subprocess.run([*CLI, "run", str(folder), "--model", "none", "--no-eyes", "--quiet",
                           "--out", str(tmp_path / "shots.jsonl")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    assert "2.png" in done.stderr and "1 of 4 images" in done.stderr and "Traceback" not in done.stderr
    assert "--recursive" in done.stderr  # the subfolder is not ignored without a word
    assert [r.frame_index for r in read_results(tmp_path / "shots.jsonl")] == [0, 1, 3]
    done = subprocess.run([*CLI, "run", str(folder), "--recursive", "--model", "none", "--no-eyes", "--quiet",
                           "--out", str(tmp_path / "all.jsonl")], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert [r.frame_index for r in read_results(tmp_path / "all.jsonl")] == [0, 1, 3, 4]


def test_a_truncated_jpeg_is_tracked_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    whole = tmp_path / "whole.jpg"
    with av.open(str(whole), "w", format="image2") as out:
        stream = out.add_stream("mjpeg", rate=1)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuvj420p"
        noise = np.random.default_rng(1).integers(0, 256, (48, 64, 3), dtype=np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(noise, "rgb24")):
            out.mux(packet)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size * 2 // 3])
    with caplog.at_level(logging.WARNING, logger="facetrack.sources"), open_source(whole) as source:
        assert len(list(source)) == 1
    assert "truncated" not in caplog.text
    with caplog.at_level(logging.WARNING, logger="facetrack.sources"), open_source(cut) as source:
        assert len(list(source)) == 1
    assert "cut.jpg" in caplog.text and "truncated" in caplog.text


def test_render_draws_a_phone_clip_upright(tmp_path: Path) -> None:
    from facetrack.adapters.render_sink import render_video

    clip = _rotated_clip(tmp_path / "phone.mp4", [_marked()] * 3, 90)
    with Tracker(TrackerConfig(model=None, eyes={"enabled": False})) as tracker:
        results = list(tracker.track(clip))
    assert render_video(clip, results, tmp_path / "overlay.mp4") == 3
    with av.open(str(tmp_path / "overlay.mp4")) as container:
        frame = next(container.decode(video=0)).to_ndarray(format="rgb24")
    assert frame.shape == (160, 96, 3) and _corner(frame) == "top-right"
